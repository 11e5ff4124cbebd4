//! Secrets read from the environment are registered here, and every line rollout prints,
//! emits or journals is scrubbed of them: a last line of defence behind careful messages.

use std::borrow::Cow;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remember a secret so that it never appears in output; very short values are ignored.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < 4 {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret replaced by `***`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut clean = text.to_string();
    for secret in secrets.iter() {
        clean = clean.replace(secret.as_str(), "***");
    }
    Cow::Owned(clean)
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
}
