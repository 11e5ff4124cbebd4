//! Input echoed in a message is cut to a readable length, so that a 20 MB value or a whole
//! file read by mistake never becomes a 20 MB line: `aaaa… (20000000 characters)`.

use std::borrow::Cow;

/// How many characters of an echoed value are shown.
pub const SHOWN: usize = 80;

/// `text` as it is when it is short, else its first [`SHOWN`] characters, `…` and its length.
pub fn clip(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(SHOWN) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}… ({} characters)", &text[..cut], text.chars().count())),
    }
}

/// A parser's message with every value it quotes (between backticks or double quotes)
/// clipped, e.g. serde's ``invalid type: string "…", expected u32``.
pub fn clip_quoted(message: &str) -> Cow<'_, str> {
    if message.chars().count() <= SHOWN {
        return Cow::Borrowed(message);
    }
    let mut out = String::new();
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest.as_bytes()[open];
        let inner = &rest[open + 1..];
        let Some(close) = closing(inner, quote) else { break };
        out.push_str(&rest[..=open]);
        out.push_str(&clip(&inner[..close]));
        out.push(char::from(quote));
        rest = &inner[close + 1..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Where `quote` closes `text`; a double quote escaped with `\` (Rust's `{:?}`) does not.
fn closing(text: &str, quote: u8) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b if b == quote => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The first 7 characters of a commit id (or all of a shorter text), never cut inside a character.
pub fn short_id(id: &str) -> &str {
    id.char_indices().nth(7).map_or(id, |(at, _)| &id[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_kept_and_long_ones_cut_with_their_length() {
        assert_eq!(clip("main"), "main");
        let exact = "é".repeat(SHOWN);
        assert_eq!(clip(&exact), exact);
        let long = format!("{}{}", "é".repeat(SHOWN), "x".repeat(1000));
        assert_eq!(clip(&long), format!("{}… (1080 characters)", "é".repeat(SHOWN)));
    }

    #[test]
    fn quoted_values_in_a_parser_message_are_cut_and_the_rest_kept() {
        let passwd = format!("root:x:0:0:\\\"root\\\":/root:/bin/bash\\n{}", "daemon:x:1:1\\n".repeat(100));
        let message = format!("invalid type: string \"{passwd}\", expected struct Runbook");
        let clipped = clip_quoted(&message);
        assert!(clipped.starts_with("invalid type: string \"root:x:0:0:\\\"root\\\""), "{clipped}");
        assert!(clipped.ends_with(" characters)\", expected struct Runbook"), "{clipped}");
        assert!(clipped.len() < 200, "{clipped}");
        let field = format!("unknown field `{}`, expected `version`", "k".repeat(5000));
        assert_eq!(
            clip_quoted(&field),
            format!("unknown field `{}… (5000 characters)`, expected `version`", "k".repeat(SHOWN))
        );
        assert_eq!(clip_quoted("missing field `title`"), "missing field `title`");
    }
}
