//! Text that came from outside (service messages, CI logs, git's `remote:` lines), made safe to
//! show: control characters, terminal escapes and bidi overrides are shown as `\u{1b}`, not obeyed.

use std::borrow::Cow;

/// `text` with every character a terminal would act on written as a visible escape: the C0
/// and C1 controls but newline and tab (ESC, so every escape sequence, CR, BEL, DEL...) and
/// the bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069).
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(obeyed) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if obeyed(c) {
            shown.extend(c.escape_unicode());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

/// `printable`, and on one line: newlines and tabs shown as `\n` and `\t` too, for a table
/// cell or a one-line field, which a newline would otherwise split (or forge a row in).
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.contains(['\n', '\t', '\r']) {
        return printable(text);
    }
    Cow::Owned(printable(&text.replace('\n', "\\n").replace('\t', "\\t")).into_owned())
}

/// A text from outside as a message quotes it: secrets scrubbed first (so that the cut never
/// leaves a prefix the scrubber no longer knows), then cut (`echo::clip`), then made printable.
pub fn excerpt(text: &str) -> String {
    printable(&crate::echo::clip(&crate::redact::scrub(text))).into_owned()
}

fn obeyed(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_and_plain_text_is_borrowed() {
        assert_eq!(printable("\x1b[2K\r✓ Run succeeded"), "\\u{1b}[2K\\u{d}✓ Run succeeded");
        assert_eq!(printable("a\u{85}b\u{9b}c\u{7f}\0"), "a\\u{85}b\\u{9b}c\\u{7f}\\u{0}");
        assert_eq!(printable("abc\u{202e}txt.exe\u{2066}"), "abc\\u{202e}txt.exe\\u{2066}");
        assert!(matches!(printable("line one\n\tline two: é ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn one_line_shows_line_breaks() {
        assert_eq!(one_line("mallory\n2026  critical\tx\r"), "mallory\\n2026  critical\\tx\\u{d}");
        assert!(matches!(one_line("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn excerpts_are_cut_after_scrubbing() {
        crate::redact::register("excerpt-secret-0123456789");
        let body = format!("{}excerpt-secret-0123456789 and more", "x".repeat(70));
        assert_eq!(excerpt(&body), format!("{}*** and mo… (82 characters)", "x".repeat(70)));
        assert_eq!(excerpt("short\x1b"), "short\\u{1b}");
    }
}
