//! Git through git2: remote operations (tip, fetch, push with every ref's status checked,
//! credentials), and in-memory reverts (revert.rs). The clone's work tree, index and branches are never touched.

pub mod credentials;
pub mod message;
pub mod revert;
mod scratch;
pub use scratch::remove_left;
pub mod trees;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use git2::{Direction, FetchOptions, Oid, PushOptions, RemoteCallbacks, Repository};

use crate::config::{GitConfig, HttpSettings};
use crate::error::Precondition;
use credentials::Credentials;

/// The configured clone, the remote branch reverts go to, and how to authenticate.
#[derive(Debug)]
pub struct GitRemote {
    repo: PathBuf,
    pub remote: String,
    pub branch: String,
    pub push_attempts: u32,
    credentials: Credentials,
    /// What fetches brought, aside from the clone until a real run's revert needs it.
    fetched: RefCell<Vec<scratch::Store>>,
}

/// Why a push did not land.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The branch moved since the revert was prepared: prepare it again on the new tip.
    #[error("{0} moved after the revert was prepared")]
    Moved(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub fn short(oid: Oid) -> String {
    crate::echo::short_id(&oid.to_string()).to_string()
}

/// The most of the remote's `remote:` output kept, and the lines of it a message shows.
const REMOTE_KEEPS: usize = 64 * 1024;
const REMOTE_LINES: usize = 20;

/// Append to what the remote said, keeping only its last `REMOTE_KEEPS` bytes or so.
fn keep_last(said: &mut String, more: &str) {
    said.push_str(more);
    if said.len() > 2 * REMOTE_KEEPS {
        let mut from = said.len() - REMOTE_KEEPS;
        while !said.is_char_boundary(from) {
            from += 1;
        }
        said.drain(..from);
    }
}

/// The last lines the remote said, each as `remote: ...` on a line of its own, made printable
/// (a hook's output must not move the cursor or draw over rollout's own lines).
fn remote_lines(said: &str) -> String {
    let lines: Vec<&str> = said.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect();
    let shown = &lines[lines.len().saturating_sub(REMOTE_LINES)..];
    shown.iter().map(|l| format!("\nremote: {}", crate::untrusted::printable(l))).collect()
}

/// A libgit2 error made readable. Refused credentials and an unknown ssh host key mean the
/// step cannot succeed (a failed precondition); the host key error says how to fix it.
fn explain(error: git2::Error, what: String, url: &str) -> anyhow::Error {
    // The message may quote the server (`remote error: ...`).
    let message = crate::untrusted::printable(error.message()).into_owned();
    if error.class() == git2::ErrorClass::Ssh && message.to_ascii_lowercase().contains("hostkey") {
        let (host, port) = url::Url::parse(url)
            .ok()
            .map(|u| (u.host_str().unwrap_or_default().to_string(), u.port().unwrap_or(22)))
            .unwrap_or_else(|| (url.split(['@', ':']).nth(1).unwrap_or(url).to_string(), 22));
        return Precondition(format!(
            "{what}: {message}; the server's ssh host key is not in ~/.ssh/known_hosts: check its fingerprint, then add it (ssh-keyscan -p {port} {host} >> ~/.ssh/known_hosts)"
        ))
        .into();
    }
    if error.code() == git2::ErrorCode::Auth || message.starts_with("authentication to ") {
        return Precondition(format!("{what}: {message}")).into();
    }
    anyhow!("{what}: {message}")
}

/// Bound libgit2's network waits by the `http` settings: a connection by `connect_timeout`, and
/// each read or write of one by `timeout`, so a git server that stops sending fails the step
/// instead of holding it. libgit2 keeps these in process-wide globals, so they are set once, by
/// the first caller: rollout's main thread, before the run's first git call.
#[allow(unsafe_code)]
pub fn bound_network_waits(http: &HttpSettings) {
    static BOUND: std::sync::Once = std::sync::Once::new();
    BOUND.call_once(|| {
        let millis =
            |wait: std::time::Duration| std::ffi::c_int::try_from(wait.as_millis()).unwrap_or(std::ffi::c_int::MAX);
        // SAFETY: git2 asks that these globals be written while no other thread uses libgit2.
        // The one write (`Once`) comes from `Services::new` on the main thread, before the run's
        // first git call and before the background checks' thread, the only other one that
        // uses libgit2, starts.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(millis(http.connect_timeout));
            let _ = git2::opts::set_server_timeout_in_milliseconds(millis(http.timeout));
        }
    });
}

impl GitRemote {
    pub fn new(config: &GitConfig, config_dir: &Path) -> Result<GitRemote> {
        let token = match &config.token_env {
            Some(env) => Some((
                env.clone(),
                crate::redact::secret_from_env(env).ok_or_else(|| {
                    anyhow!("{env} is not set: export it with the git token (rollout.yaml names it in git.token_env)")
                })?,
            )),
            None => None,
        };
        let ssh_key = config.ssh_key.as_ref().map(|key| match key.strip_prefix("~") {
            Ok(rest) => dirs::home_dir().unwrap_or_default().join(rest),
            Err(_) => config_dir.join(key),
        });
        Ok(GitRemote {
            repo: config_dir.join(&config.repo),
            remote: config.remote.clone(),
            branch: config.branch.clone(),
            push_attempts: config.push_attempts.max(1),
            credentials: Credentials { ssh_key, token, username: config.username.clone() },
            fetched: RefCell::default(),
        })
    }

    pub fn open(&self) -> Result<Repository> {
        Repository::open(&self.repo).map_err(|e| {
            Precondition(format!(
                "cannot open the git repository {}: {}; check git.repo in rollout.yaml",
                self.repo.display(),
                e.message()
            ))
            .into()
        })
    }

    /// `origin/main`.
    pub fn target(&self, branch: &str) -> String {
        format!("{}/{branch}", self.remote)
    }

    /// `remote origin https://github.com/o/r.git (clone /srv/app)`, for the run header.
    pub fn describe(&self) -> String {
        let url = self.open().map(|repo| self.url(&repo)).unwrap_or_default();
        format!("remote {} {url} (clone {})", self.remote, self.repo.display())
    }

    fn url(&self, repo: &Repository) -> String {
        repo.find_remote(&self.remote)
            .ok()
            .and_then(|r| r.url().ok().map(|url| crate::redact::url(url).into_owned()))
            .unwrap_or_default()
    }

    fn find_remote<'r>(&self, repo: &'r Repository) -> Result<git2::Remote<'r>> {
        repo.find_remote(&self.remote).map_err(|e| {
            Precondition(format!(
                "the repository {} has no remote {}: {}",
                self.repo.display(),
                self.remote,
                e.message()
            ))
            .into()
        })
    }

    /// Connect `remote` (the clone's, or a fetch store's to the same URL) to fetch from it.
    fn connect<'r, 'c>(
        &'c self,
        remote: &'c mut git2::Remote<'r>,
        repo: &Repository,
    ) -> Result<git2::RemoteConnection<'r, 'c, 'c>> {
        remote.connect_auth(Direction::Fetch, Some(self.credentials.callbacks()), None).map_err(|e| {
            explain(e, format!("cannot reach remote {} ({})", self.remote, self.url(repo)), &self.url(repo))
        })
    }

    fn no_branch(&self, branch: &str) -> anyhow::Error {
        Precondition(format!("remote {} has no branch {branch}", self.remote)).into()
    }

    /// The remote's branches as it reports them now.
    fn heads(&self, repo: &Repository) -> Result<Vec<(String, Oid)>> {
        let mut remote = self.find_remote(repo)?;
        let connection = self.connect(&mut remote, repo)?;
        Ok(connection.list()?.iter().map(|head| (head.name().to_string(), head.oid())).collect())
    }

    /// A branch's tip on the remote, if the branch exists.
    pub fn remote_head(&self, repo: &Repository, branch: &str) -> Result<Option<Oid>> {
        let wanted = format!("refs/heads/{branch}");
        Ok(self.heads(repo)?.into_iter().find(|(name, _)| *name == wanted).map(|(_, oid)| oid))
    }

    /// The remote branch's tip. Objects the clone lacks are fetched into a throwaway store
    /// that `repo` reads from: the clone itself gains nothing until `keep_fetched`. One
    /// connection, the store's, both lists the remote's branches and downloads what is missing;
    /// it goes to the clone's remote URL as the clone's config rewrites it.
    pub fn remote_tip(&self, repo: &Repository, branch: &str) -> Result<Oid> {
        let wanted = format!("refs/heads/{branch}");
        let (store, aside) = match scratch::Store::new(repo) {
            Ok(made) => made,
            // No room for a store (a full or read-only temp folder): the clone lists the
            // branches, and a tip it lacks cannot be fetched.
            Err(error) => {
                let tip = self.remote_head(repo, branch)?.ok_or_else(|| self.no_branch(branch))?;
                if repo.find_commit(tip).is_err() {
                    return Err(error.context(format!("cannot fetch {wanted} from remote {}", self.remote)));
                }
                return Ok(tip);
            }
        };
        let url = self.find_remote(repo)?.url().map(str::to_string).unwrap_or_default();
        let mut remote = aside.remote_anonymous(&url)?;
        let mut connection = self.connect(&mut remote, repo)?;
        let listed = connection.list()?.iter().find(|head| head.name() == wanted).map(|head| head.oid());
        let tip = listed.ok_or_else(|| self.no_branch(branch))?;
        if repo.find_commit(tip).is_err() {
            scratch::know_branches(repo, &aside)?;
            let mut options = FetchOptions::new();
            options.remote_callbacks(self.credentials.callbacks());
            let downloaded = connection.remote().download(&[wanted.as_str()], Some(&mut options));
            // Disconnected while the callbacks it was last given are still there.
            drop(connection);
            downloaded.map_err(|e| {
                explain(e, format!("cannot fetch {wanted} from remote {}", self.remote), &self.url(repo))
            })?;
            store.lend_to(repo)?;
            self.fetched.borrow_mut().push(store);
        }
        Ok(tip)
    }

    /// [`GitRemote::remote_tip`] for a check that usually finds the clone has the tip already
    /// (the revert it pushed): listed from the clone, with a fetch (and its throwaway store)
    /// only when the tip is new to it.
    pub fn remote_tip_if_new(&self, repo: &Repository, branch: &str) -> Result<Oid> {
        match self.remote_head(repo, branch)? {
            Some(tip) if repo.find_commit(tip).is_ok() => Ok(tip),
            Some(_) => self.remote_tip(repo, branch),
            None => Err(self.no_branch(branch)),
        }
    }

    /// Copy what `remote_tip` fetched aside into the clone: a revert about to be committed
    /// there builds on it. Dry runs never call this.
    pub fn keep_fetched(&self, repo: &Repository) -> Result<()> {
        for store in self.fetched.borrow_mut().drain(..) {
            store.give_to(repo)?;
        }
        Ok(())
    }

    /// Push `commit` to `branch`. The remote's answer decides: once it accepted the ref the push
    /// is a success, and what could not be recorded in the clone afterwards (its remote-tracking
    /// ref, e.g. behind a stale `.lock` file) comes back as a warning.
    pub fn push(&self, repo: &Repository, commit: Oid, branch: &str) -> Result<Option<String>, PushError> {
        let staging = format!("refs/rollout/push/{commit}");
        repo.reference(&staging, commit, true, "rollout: stage revert for push").map_err(anyhow::Error::from)?;
        let result = self.push_staged(repo, &staging, branch);
        if let Ok(mut reference) = repo.find_reference(&staging) {
            let _ = reference.delete();
        }
        result?;
        let tracking = format!("refs/remotes/{}/{branch}", self.remote);
        Ok(repo.reference(&tracking, commit, true, "rollout: pushed revert").err().map(|e| {
            format!(
                "the push landed on {}, but the clone's {tracking} could not be updated ({}); `git fetch {}` in {} puts it right (remove a stale {tracking}.lock first if no git command is running)",
                self.target(branch),
                e.message(),
                self.remote,
                self.repo.display()
            )
        }))
    }

    fn push_staged(&self, repo: &Repository, staging: &str, branch: &str) -> Result<(), PushError> {
        let destination = format!("refs/heads/{branch}");
        let statuses: RefCell<Vec<(String, Option<String>)>> = RefCell::new(Vec::new());
        let said: RefCell<String> = RefCell::new(String::new());
        let mut remote = self.find_remote(repo)?;
        let pushed = {
            let mut callbacks: RemoteCallbacks = self.credentials.callbacks();
            callbacks.push_update_reference(|name, status| {
                statuses.borrow_mut().push((name.to_string(), status.map(str::to_string)));
                Ok(())
            });
            callbacks.sideband_progress(|data| {
                keep_last(&mut said.borrow_mut(), &String::from_utf8_lossy(data));
                true
            });
            let mut options = PushOptions::new();
            options.remote_callbacks(callbacks);
            remote.push(&[format!("{staging}:{destination}")], Some(&mut options))
        };
        let said = said.into_inner();
        let remote_lines = remote_lines(&said);
        match statuses.into_inner().into_iter().find(|(name, _)| *name == destination) {
            // Accepted. An error libgit2 reports after that comes from updating the clone's
            // remote-tracking ref, which `push` does again (and warns about) itself.
            Some((_, None)) => Ok(()),
            // Moved between the advertisement and the update: the client sees non-fast-forward
            // or "fetch first", or receive-pack loses the ref lock ("is at X but expected Y").
            Some((_, Some(why)))
                if why.contains("non-fast-forward")
                    || why.contains("fetch first")
                    || (why.contains("failed to") && said.contains("but expected")) =>
            {
                Err(PushError::Moved(self.target(branch)))
            }
            Some((_, Some(why))) => {
                let why = crate::untrusted::printable(&why);
                Err(anyhow!("{} rejected the push to {branch}: {why}{remote_lines}", self.remote).into())
            }
            None => match pushed {
                Err(e) if e.code() == git2::ErrorCode::NotFastForward => Err(PushError::Moved(self.target(branch))),
                Err(e) => Err(explain(e, format!("push to {} failed", self.target(branch)), &self.url(repo)).into()),
                Ok(()) => Err(anyhow!("{} did not confirm the push to {branch}{remote_lines}", self.remote).into()),
            },
        }
    }
}

/// The identity git would use: GIT_AUTHOR_* / GIT_COMMITTER_* first, then user.name and user.email.
pub fn identity(repo: &Repository, role: &str) -> Result<git2::Signature<'static>> {
    let name = std::env::var(format!("GIT_{role}_NAME")).ok();
    let email = std::env::var(format!("GIT_{role}_EMAIL")).ok();
    let configured = repo.signature().ok();
    let name = name.or_else(|| configured.as_ref().map(|s| String::from_utf8_lossy(s.name_bytes()).into_owned()));
    let email = email.or_else(|| configured.as_ref().map(|s| String::from_utf8_lossy(s.email_bytes()).into_owned()));
    match (name, email) {
        (Some(name), Some(email)) => Ok(git2::Signature::now(&name, &email)?),
        _ => Err(Precondition(
            "git has no identity for the revert commit: set user.name and user.email (git config --global user.name \"Your Name\")"
                .into(),
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_lines_are_the_last_ones_and_printable() {
        let mut said = String::new();
        for i in 0..100_000 {
            keep_last(&mut said, &format!("line {i}\n"));
        }
        assert!(said.len() <= 2 * REMOTE_KEEPS, "{} bytes kept", said.len());
        keep_last(&mut said, "hook says \x1b[2K\r\u{202e}no\n");
        let shown = remote_lines(&said);
        assert_eq!(shown.lines().filter(|l| !l.is_empty()).count(), REMOTE_LINES, "{shown}");
        assert!(shown.ends_with("\nremote: hook says \\u{1b}[2K\nremote: \\u{202e}no"), "{shown}");
        assert!(shown.contains("\nremote: line 99999\n"), "{shown}");
    }
}
