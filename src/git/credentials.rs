//! Credentials for a remote, each method tried once in order: ssh-agent, the configured key
//! file, a token from the environment, git's credential helpers; then one message listing all.

use std::cell::RefCell;
use std::path::PathBuf;

use git2::{Cred, CredentialType, RemoteCallbacks};

/// What the config offers for authenticating to the remote.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub ssh_key: Option<PathBuf>,
    /// (variable name, token): sent as the password over https.
    pub token: Option<(String, String)>,
    pub username: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Agent,
    KeyFile,
    Token,
    Helper,
}

const ORDER: [Method; 4] = [Method::Agent, Method::KeyFile, Method::Token, Method::Helper];

/// The state of one remote operation's authentication.
#[derive(Debug, Default)]
struct Attempts {
    next: usize,
    /// What was tried or skipped, and why, in order.
    log: Vec<String>,
    /// The method whose credential libgit2 is trying now (a call back means it was refused).
    pending: Option<String>,
}

impl Credentials {
    fn describe(&self, method: Method, user: &str) -> String {
        match method {
            Method::Agent => "ssh-agent".into(),
            Method::KeyFile => {
                format!("ssh key {}", self.ssh_key.as_ref().map(|k| k.display().to_string()).unwrap_or_default())
            }
            Method::Token => {
                format!("token from {} as user {user}", self.token.as_ref().map(|t| t.0.as_str()).unwrap_or_default())
            }
            Method::Helper => "git credential helper".into(),
        }
    }

    /// The next credential to offer, or a summary of everything that was tried.
    fn next(
        &self,
        state: &mut Attempts,
        url: &str,
        from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        if let Some(pending) = state.pending.take() {
            state.log.push(format!("{pending}: refused"));
        }
        let ssh_user = from_url.unwrap_or("git");
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(ssh_user);
        }
        let https_user = self.username.as_deref().or(from_url).unwrap_or("git").to_string();
        while state.next < ORDER.len() {
            let method = ORDER[state.next];
            state.next += 1;
            let name = self.describe(method, &https_user);
            let offered = match method {
                Method::Agent if allowed.contains(CredentialType::SSH_KEY) => match std::env::var_os("SSH_AUTH_SOCK") {
                    Some(_) => Cred::ssh_key_from_agent(ssh_user).map_err(|e| e.message().to_string()),
                    None => Err("SSH_AUTH_SOCK is not set".into()),
                },
                Method::KeyFile if allowed.contains(CredentialType::SSH_KEY) => match &self.ssh_key {
                    Some(key) if key.is_file() => {
                        Cred::ssh_key(ssh_user, None, key, None).map_err(|e| e.message().to_string())
                    }
                    Some(_) => Err("no such file".into()),
                    None => continue,
                },
                Method::Token if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => match &self.token {
                    Some((_, token)) => {
                        // libgit2 sends it as HTTP Basic: that form is a secret too.
                        crate::redact::register_basic(&https_user, token);
                        Cred::userpass_plaintext(&https_user, token).map_err(|e| e.message().to_string())
                    }
                    None => continue,
                },
                Method::Helper if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => git2::Config::open_default()
                    .and_then(|config| Cred::credential_helper(&config, url, from_url))
                    .map_err(|_| "no helper gave credentials".to_string()),
                _ => continue,
            };
            match offered {
                Ok(credential) => {
                    state.pending = Some(name);
                    return Ok(credential);
                }
                Err(why) => state.log.push(format!("{name}: {why}")),
            }
        }
        let tried = if state.log.is_empty() { "nothing applies to this URL".to_string() } else { state.log.join(", ") };
        Err(git2::Error::from_str(&format!("authentication to {} failed; tried: {tried}", crate::redact::url(url))))
    }

    /// Remote callbacks that offer these credentials, each at most once.
    pub fn callbacks(&self) -> RemoteCallbacks<'_> {
        let state = RefCell::new(Attempts::default());
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |url, from_url, allowed| self.next(&mut state.borrow_mut(), url, from_url, allowed));
        callbacks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_is_offered_once_then_one_message_lists_them() {
        let credentials = Credentials {
            ssh_key: Some(PathBuf::from("/nonexistent/id_ed25519")),
            token: Some(("GIT_TOKEN".into(), "t0ken-value".into())),
            username: Some("deploy".into()),
        };
        let mut state = Attempts::default();
        let https = CredentialType::USER_PASS_PLAINTEXT;
        assert!(credentials.next(&mut state, "https://git.example.gov/app.git", None, https).is_ok());
        let last = loop {
            match credentials.next(&mut state, "https://git.example.gov/app.git", None, https) {
                Ok(_) => continue,
                Err(e) => break e.message().to_string(),
            }
        };
        assert!(last.starts_with("authentication to https://git.example.gov/app.git failed; tried: "), "{last}");
        assert!(last.contains("token from GIT_TOKEN as user deploy: refused"), "{last}");
        assert!(!last.contains("t0ken-value"), "{last}");
        assert!(
            credentials.next(&mut state, "https://git.example.gov/app.git", None, https).is_err(),
            "never starts over"
        );
    }
}
