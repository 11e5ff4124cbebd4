//! Secrets read from the environment are registered here, in every form they travel in, and
//! every text rollout prints, emits or journals is scrubbed of them and of URL userinfo.

use std::borrow::Cow;
use std::sync::RwLock;

use base64::Engine;

/// Every registered form of every secret, longest first (so that a form holding another goes first).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// What a secret is replaced by.
const MASK: &str = "***";

/// Remember a secret so that it never appears in output, in any of the forms it takes on the way
/// (see `forms`); very short values are ignored.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < 4 {
        return;
    }
    remember(forms(secret));
}

/// Remember the HTTP Basic credential `base64(user:secret)` (a git token over https, Jenkins
/// `username:token`), besides the secret itself.
pub fn register_basic(user: &str, secret: &str) {
    register(secret);
    remember(vec![base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))]);
}

fn remember(forms: Vec<String>) {
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for form in forms {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// A secret as it is, JSON-escaped (`"` and `\` in a journal line, `--json`, or a service's JSON
/// echo; also with `\/`), and percent-encoded (in a query or form, `+` or `%20` for a space).
/// Scrubbing runs on text, whatever encoded it, so each encoding's form is registered.
fn forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json[1..json.len() - 1].to_string();
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    vec![secret.to_string(), json.replace('/', "\\/"), json, form.replace('+', "%20"), form]
}

/// `text` with the userinfo of every URL in it replaced by `***` (see `url`) and every
/// registered secret replaced by `***`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let text = urls_in(text);
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return text;
    }
    let mut clean = text.into_owned();
    for secret in secrets.iter() {
        clean = clean.replace(secret.as_str(), MASK);
    }
    Cow::Owned(clean)
}

/// Scrub every string in a JSON value, keys included, before it is encoded: no escaping can
/// then hide a secret from the scrubber.
pub fn scrub_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let Cow::Owned(clean) = scrub(text) {
                *text = clean;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub_json),
        serde_json::Value::Object(fields) => {
            *fields = std::mem::take(fields)
                .into_iter()
                .map(|(key, mut value)| {
                    scrub_json(&mut value);
                    (scrub(&key).into_owned(), value)
                })
                .collect();
        }
        _ => {}
    }
}

/// A URL fit to show: its userinfo (user name and password) replaced by `***`. It is found
/// without parsing, as everything between `://` and the last `@`, so that a URL that does not
/// parse (a space or a slash in its password) keeps nothing of it either.
pub fn url(url: &str) -> Cow<'_, str> {
    let Some(scheme) = url.find("://") else { return Cow::Borrowed(url) };
    let start = scheme + 3;
    match url[start..].rfind('@') {
        Some(at) if &url[start..start + at] != MASK => {
            Cow::Owned(format!("{}{MASK}{}", &url[..start], &url[start + at..]))
        }
        _ => Cow::Borrowed(url),
    }
}

/// Every URL in a text without its userinfo; a URL ends at white space or a quote.
fn urls_in(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let ends = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>');
    let clean: String = text.split_inclusive(ends).map(url).collect();
    if clean == text { Cow::Borrowed(text) } else { Cow::Owned(clean) }
}

/// Read a secret from the environment and register it.
pub fn secret_from_env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
    register(&value);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_scrubbed_everywhere_in_a_line() {
        register("s3cr3t-token-value");
        assert_eq!(
            scrub("Authorization: s3cr3t-token-value, again s3cr3t-token-value"),
            "Authorization: ***, again ***"
        );
        assert_eq!(scrub("nothing here"), "nothing here");
    }

    #[test]
    fn every_encoded_form_of_a_secret_is_scrubbed() {
        register(r#"sek"rit\TOK/a b+c"#);
        for form in [
            r#"sek"rit\TOK/a b+c"#,
            r#"sek\"rit\\TOK/a b+c"#,
            r#"sek\"rit\\TOK\/a b+c"#,
            "sek%22rit%5CTOK%2Fa+b%2Bc",
            "sek%22rit%5CTOK%2Fa%20b%2Bc",
        ] {
            assert_eq!(scrub(&format!("[{form}]")), "[***]", "{form}");
        }
        register_basic("deploy", "basic-secret-42");
        let basic = base64::engine::general_purpose::STANDARD.encode("deploy:basic-secret-42");
        assert_eq!(scrub(&format!("Authorization: Basic {basic}")), "Authorization: Basic ***");
    }

    #[test]
    fn json_values_are_scrubbed_before_they_are_encoded() {
        register(r#"json"secret\value"#);
        let mut value =
            serde_json::json!({ "error": r#"refused json"secret\value"#, "list": [r#"json"secret\value"#] });
        scrub_json(&mut value);
        assert_eq!(value, serde_json::json!({ "error": "refused ***", "list": ["***"] }));
    }

    #[test]
    fn urls_lose_all_their_userinfo_even_when_they_do_not_parse() {
        assert_eq!(url("https://user:s3cret@git.example.gov/app.git"), "https://***@git.example.gov/app.git");
        assert_eq!(url("https://ghp_abcdef123456@github.com/o/r.git"), "https://***@github.com/o/r.git");
        assert_eq!(url("https://user:pa ss/w@rd@host/r.git"), "https://***@host/r.git");
        assert_eq!(url("ssh://git@127.0.0.1:2222/app.git"), "ssh://***@127.0.0.1:2222/app.git");
        assert_eq!(url("https://github.com/o/r.git"), "https://github.com/o/r.git");
        assert_eq!(url("git@github.com:va/app.git"), "git@github.com:va/app.git");
        assert_eq!(
            scrub("cannot reach remote origin (https://tok3n@h/r.git): 'http://u:p@h/x' failed"),
            "cannot reach remote origin (https://***@h/r.git): 'http://***@h/x' failed"
        );
    }
}
