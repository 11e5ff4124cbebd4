//! Git through git2: the revert computed in memory onto the remote branch's tip, its commit,
//! and the push with every ref's status checked. The clone's work tree, index and branches are never touched.

pub mod message;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use git2::{Commit, Direction, FetchOptions, Oid, PushOptions, RemoteCallbacks, Repository, Signature};

use crate::config::GitConfig;
use crate::error::Precondition;

/// The configured clone and the remote branch reverts go to.
#[derive(Debug)]
pub struct GitRemote {
    repo: PathBuf,
    pub remote: String,
    pub branch: String,
}

/// One file a commit changes, with its line counts.
#[derive(Debug, Clone)]
pub struct FileChange {
    pub path: String,
    pub added: usize,
    pub removed: usize,
}

/// A revert worked out in memory, not yet committed.
#[derive(Debug, Clone)]
pub struct RevertPlan {
    pub original: Oid,
    pub subject: String,
    pub author: String,
    /// The remote branch tip the revert goes on top of.
    pub tip: Oid,
    pub files: Vec<FileChange>,
    pub conflicts: Vec<String>,
    pub message: String,
    pub mainline: Option<u32>,
}

impl RevertPlan {
    pub fn added(&self) -> usize {
        self.files.iter().map(|f| f.added).sum()
    }

    pub fn removed(&self) -> usize {
        self.files.iter().map(|f| f.removed).sum()
    }
}

pub fn short(oid: Oid) -> String {
    oid.to_string()[..7].to_string()
}

/// Credentials for one remote operation: each method at most once, then a clear failure.
fn callbacks<'a>() -> RemoteCallbacks<'a> {
    let mut tried = 0;
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(move |url, username, allowed| {
        tried += 1;
        if tried > 2 {
            return Err(git2::Error::from_str(&format!(
                "no credentials accepted for {url}: tried ssh-agent and git's credential helpers"
            )));
        }
        if allowed.contains(git2::CredentialType::SSH_KEY) && tried == 1 {
            return git2::Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        let config = git2::Config::open_default()?;
        git2::Cred::credential_helper(&config, url, username)
    });
    callbacks
}

impl GitRemote {
    pub fn new(config: &GitConfig, config_dir: &Path) -> GitRemote {
        GitRemote { repo: config_dir.join(&config.repo), remote: config.remote.clone(), branch: config.branch.clone() }
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

    /// The remote branch's tip, its objects fetched into the clone if missing; no ref is written.
    pub fn remote_tip(&self, repo: &Repository, branch: &str) -> Result<Oid> {
        let mut remote = repo.find_remote(&self.remote).map_err(|e| {
            Precondition(format!(
                "the repository {} has no remote {}: {}",
                self.repo.display(),
                self.remote,
                e.message()
            ))
        })?;
        let wanted = format!("refs/heads/{branch}");
        let tip = {
            let connection = remote
                .connect_auth(Direction::Fetch, Some(callbacks()), None)
                .with_context(|| format!("cannot reach remote {} ({})", self.remote, remote_url(repo, &self.remote)))?;
            let heads = connection.list()?;
            heads.iter().find(|head| head.name() == wanted).map(|head| head.oid())
        };
        let tip = tip.ok_or_else(|| Precondition(format!("remote {} has no branch {branch}", self.remote)))?;
        if repo.find_commit(tip).is_err() {
            let mut options = FetchOptions::new();
            options.remote_callbacks(callbacks());
            remote
                .download(&[wanted.as_str()], Some(&mut options))
                .with_context(|| format!("cannot fetch {} from remote {}", wanted, self.remote))?;
            remote.disconnect()?;
        }
        Ok(tip)
    }

    /// The revert of `commit` onto the remote branch's tip, computed in memory.
    pub fn plan(&self, repo: &Repository, commit: &str, mainline: Option<u32>) -> Result<RevertPlan> {
        let tip = self.remote_tip(repo, &self.branch)?;
        let original = repo.revparse_single(commit).and_then(|object| object.peel_to_commit()).map_err(|_| {
            Precondition(format!(
                "unknown commit {commit} in {}: check the id, or push it to {} first",
                self.repo.display(),
                self.target(&self.branch)
            ))
        })?;
        if original.id() != tip && !repo.graph_descendant_of(tip, original.id())? {
            return Err(Precondition(format!(
                "commit {} is not on {}: there is nothing to revert there",
                short(original.id()),
                self.target(&self.branch)
            ))
            .into());
        }
        let parents = original.parent_count();
        let mainline_parent = match (parents, mainline) {
            (0, _) => return Err(Precondition(format!("commit {} is the repository's first commit: it cannot be reverted", short(original.id()))).into()),
            (1, None) => None,
            (1, Some(_)) => return Err(Precondition(format!("commit {} is not a merge: remove `mainline` from the step", short(original.id()))).into()),
            (n, None) => return Err(Precondition(format!("commit {} is a merge of {n} parents: set `mainline` (1 keeps the branch it was merged into, like git revert -m 1)", short(original.id()))).into()),
            (n, Some(m)) if m as usize > n => return Err(Precondition(format!("commit {} has {n} parents; mainline {m} does not exist", short(original.id()))).into()),
            (_, Some(m)) => Some(original.parent_id(m as usize - 1)?),
        };
        let onto = repo.find_commit(tip)?;
        let index = repo.revert_commit(&original, &onto, mainline.unwrap_or(0), None)?;
        let mut conflicts: Vec<String> = index
            .conflicts()?
            .filter_map(|c| c.ok())
            .filter_map(|c| c.our.or(c.their).or(c.ancestor).map(|e| String::from_utf8_lossy(&e.path).into_owned()))
            .collect();
        conflicts.dedup();
        let message_text = String::from_utf8_lossy(original.message_raw_bytes()).into_owned();
        Ok(RevertPlan {
            original: original.id(),
            subject: message::subject(&message_text).to_string(),
            author: format!(
                "{} <{}>",
                String::from_utf8_lossy(original.author().name_bytes()),
                String::from_utf8_lossy(original.author().email_bytes())
            ),
            tip,
            files: changes(repo, &original, mainline_parent.unwrap_or_else(|| original.parent_id(0).unwrap_or(tip)))?,
            conflicts,
            message: message::revert_message(
                &message_text,
                &original.id().to_string(),
                mainline_parent.map(|p| p.to_string()).as_deref(),
            ),
            mainline,
        })
    }

    /// Write the revert commit as planned; no ref is updated.
    pub fn commit(&self, repo: &Repository, plan: &RevertPlan) -> Result<Oid> {
        let original = repo.find_commit(plan.original)?;
        let onto = repo.find_commit(plan.tip)?;
        let mut index = repo.revert_commit(&original, &onto, plan.mainline.unwrap_or(0), None)?;
        if index.has_conflicts() {
            bail!("the revert of {} no longer applies cleanly onto {}", short(plan.original), short(plan.tip));
        }
        let tree = repo.find_tree(index.write_tree_to(repo)?)?;
        let author = identity(repo, "AUTHOR")?;
        let committer = identity(repo, "COMMITTER")?;
        Ok(repo.commit(None, &author, &committer, &plan.message, &tree, &[&onto])?)
    }

    /// Push `commit` to `branch` on the remote and check the server accepted it.
    pub fn push(&self, repo: &Repository, commit: Oid, branch: &str) -> Result<()> {
        let staging = format!("refs/rollout/push/{commit}");
        repo.reference(&staging, commit, true, "rollout: stage revert for push")?;
        let result = self.push_staged(repo, &staging, branch);
        if let Ok(mut reference) = repo.find_reference(&staging) {
            let _ = reference.delete();
        }
        result?;
        let tracking = format!("refs/remotes/{}/{branch}", self.remote);
        repo.reference(&tracking, commit, true, "rollout: pushed revert")?;
        Ok(())
    }

    fn push_staged(&self, repo: &Repository, staging: &str, branch: &str) -> Result<()> {
        let destination = format!("refs/heads/{branch}");
        let statuses: RefCell<Vec<(String, Option<String>)>> = RefCell::new(Vec::new());
        let remote_lines: RefCell<String> = RefCell::new(String::new());
        let mut remote = repo.find_remote(&self.remote)?;
        {
            let mut cb = callbacks();
            cb.push_update_reference(|name, status| {
                statuses.borrow_mut().push((name.to_string(), status.map(str::to_string)));
                Ok(())
            });
            cb.sideband_progress(|data| {
                remote_lines.borrow_mut().push_str(&String::from_utf8_lossy(data));
                true
            });
            let mut options = PushOptions::new();
            options.remote_callbacks(cb);
            let pushed = remote.push(&[format!("{staging}:{destination}")], Some(&mut options));
            if let Err(e) = pushed {
                if e.code() == git2::ErrorCode::NotFastForward {
                    bail!(
                        "{} moved after the revert was prepared (someone pushed); run the step again to revert onto the new tip",
                        self.target(branch)
                    );
                }
                return Err(anyhow!(e)).with_context(|| format!("push to {} failed", self.target(branch)));
            }
        }
        let said = remote_lines.into_inner();
        let said: Vec<String> =
            said.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| format!("remote: {l}")).collect();
        match statuses.into_inner().into_iter().find(|(name, _)| *name == destination) {
            Some((_, None)) => Ok(()),
            Some((_, Some(why))) => bail!("{} rejected the push to {branch}: {why}{}", self.remote, join_lines(&said)),
            None => bail!("{} did not confirm the push to {branch}{}", self.remote, join_lines(&said)),
        }
    }

    /// The remote branch's tip as the server reports it now, if the branch exists.
    pub fn remote_head(&self, repo: &Repository, branch: &str) -> Result<Option<Oid>> {
        let mut remote = repo.find_remote(&self.remote)?;
        let connection = remote.connect_auth(Direction::Fetch, Some(callbacks()), None)?;
        let wanted = format!("refs/heads/{branch}");
        Ok(connection.list()?.iter().find(|head| head.name() == wanted).map(|head| head.oid()))
    }
}

fn join_lines(lines: &[String]) -> String {
    lines.iter().map(|l| format!("\n{l}")).collect()
}

fn remote_url(repo: &Repository, name: &str) -> String {
    repo.find_remote(name).ok().and_then(|r| r.url().ok().map(redact_url)).unwrap_or_default()
}

/// A remote URL without any password it carries.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}***@{}", &url[..scheme + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// The identity git would use: GIT_AUTHOR_* / GIT_COMMITTER_* first, then user.name and user.email.
fn identity(repo: &Repository, role: &str) -> Result<Signature<'static>> {
    let name = std::env::var(format!("GIT_{role}_NAME")).ok();
    let email = std::env::var(format!("GIT_{role}_EMAIL")).ok();
    let configured = repo.signature().ok();
    let name = name.or_else(|| configured.as_ref().map(|s| String::from_utf8_lossy(s.name_bytes()).into_owned()));
    let email = email.or_else(|| configured.as_ref().map(|s| String::from_utf8_lossy(s.email_bytes()).into_owned()));
    match (name, email) {
        (Some(name), Some(email)) => Ok(Signature::now(&name, &email)?),
        _ => Err(Precondition("git has no identity for the revert commit: set user.name and user.email (git config --global user.name \"Your Name\")".into()).into()),
    }
}

/// Files the commit changed relative to `parent`, with added and removed line counts.
fn changes(repo: &Repository, commit: &Commit, parent: Oid) -> Result<Vec<FileChange>> {
    let old = repo.find_commit(parent)?.tree()?;
    let new = commit.tree()?;
    let diff = repo.diff_tree_to_tree(Some(&old), Some(&new), None)?;
    let mut files = Vec::new();
    for index in 0..diff.deltas().len() {
        let delta = diff.get_delta(index).expect("index within deltas");
        let path =
            delta.new_file().path().or(delta.old_file().path()).map(|p| p.display().to_string()).unwrap_or_default();
        let (added, removed) = match git2::Patch::from_diff(&diff, index)? {
            Some(patch) => {
                let (_, added, removed) = patch.line_stats()?;
                (added, removed)
            }
            None => (0, 0),
        };
        files.push(FileChange { path, added, removed });
    }
    Ok(files)
}
