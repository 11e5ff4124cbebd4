//! The `revert` step: the offending commit reverted in memory onto the remote branch,
//! committed with git's own message, pushed, and read back from the remote.

use std::cell::RefCell;

use anyhow::{Result, bail};
use serde_json::json;

use super::{Context, Preview, Step, snapshot};
use crate::error::Precondition;
use crate::git::{GitRemote, RevertPlan, short};
use crate::runbook::resolve::{Outputs, RevertRequest};

pub struct RevertStep<'s> {
    pub git: &'s GitRemote,
    pub request: RevertRequest,
    pub(super) plan: RefCell<Option<RevertPlan>>,
}

impl<'s> RevertStep<'s> {
    pub fn new(git: &'s GitRemote, request: RevertRequest) -> Self {
        RevertStep { git, request, plan: RefCell::new(None) }
    }

    fn destination(&self) -> &str {
        self.request.branch.as_deref().unwrap_or(&self.git.branch)
    }
}

impl Step for RevertStep<'_> {
    fn preview(&self, _cx: &Context) -> Result<Preview> {
        let repo = self.git.open()?;
        let plan = self.git.plan(&repo, &self.request.commit, self.request.mainline)?;
        let what = format!("{} \"{}\"", short(plan.original), plan.subject);
        let base = self.git.target(&self.git.branch);
        if !plan.conflicts.is_empty() {
            return Err(Precondition(format!(
                "the revert of {what} does not apply cleanly onto {base} ({}): conflicts in {}",
                short(plan.tip),
                plan.conflicts.join(", ")
            ))
            .into());
        }
        let destination = self.destination();
        let branch_mode = destination != self.git.branch;
        let before_tip = if branch_mode {
            if let Some(existing) = self.git.remote_head(&repo, destination)? {
                return Err(Precondition(format!(
                    "branch {destination} already exists on {} (at {}): pick a new branch name for the revert",
                    self.git.remote,
                    short(existing)
                ))
                .into());
            }
            None
        } else {
            Some(plan.tip)
        };
        let files = plan.files.len();
        let mut effect = format!(
            "revert {what} onto {base}: {files} file{} (+{} -{}), applies cleanly",
            if files == 1 { "" } else { "s" },
            plan.removed(),
            plan.added()
        );
        if !self.request.push {
            effect.push_str("; not pushed (push: false)");
        } else if branch_mode {
            effect.push_str(&format!("; pushed to new branch {destination}"));
        }
        let mut details = vec![format!("commit {} by {}", plan.original, plan.author)];
        details.extend(plan.files.iter().map(|f| format!("  {}  (+{} -{} in the revert)", f.path, f.removed, f.added)));
        details.push("message:".into());
        details.extend(plan.message.lines().map(|l| format!("  {l}")));
        let before = snapshot(
            match before_tip {
                Some(tip) => format!("{} at {}", self.git.target(destination), short(tip)),
                None => format!("{} does not exist", self.git.target(destination)),
            },
            json!({ "remote": self.git.remote, "branch": destination, "commit": before_tip.map(|t| t.to_string()) }),
        );
        let after = snapshot(
            format!("{} at a new commit {}", self.git.target(destination), message_subject(&plan.message)),
            json!({ "remote": self.git.remote, "branch": destination, "parent": plan.tip.to_string(), "reverts": plan.original.to_string(), "pushed": self.request.push }),
        );
        *self.plan.borrow_mut() = Some(plan);
        Ok(Preview { effect, before, after, details, unchanged: None, projection: None })
    }

    fn apply(&self, _cx: &Context, _preview: &Preview) -> Result<Outputs> {
        let repo = self.git.open()?;
        let plan = match self.plan.borrow().clone() {
            Some(plan) => plan,
            None => self.git.plan(&repo, &self.request.commit, self.request.mainline)?,
        };
        let commit = self.git.commit(&repo, &plan)?;
        let destination = self.destination();
        if self.request.push {
            self.git.push(&repo, commit, destination)?;
        }
        Ok(Outputs::from([
            ("commit".to_string(), commit.to_string()),
            ("reverted".to_string(), plan.original.to_string()),
            ("remote".to_string(), self.git.remote.clone()),
            ("branch".to_string(), if self.request.push { destination.to_string() } else { String::new() }),
        ]))
    }

    fn verify(&self, _cx: &Context, outputs: &Outputs) -> Result<()> {
        if !self.request.push {
            return Ok(());
        }
        let repo = self.git.open()?;
        let destination = self.destination();
        let head = self.git.remote_head(&repo, destination)?;
        let expected = outputs.get("commit").map(String::as_str).unwrap_or_default();
        match head {
            Some(head) if head.to_string() == expected => Ok(()),
            Some(head) => bail!(
                "pushed {} but {} now points at {}",
                &expected[..7.min(expected.len())],
                self.git.target(destination),
                short(head)
            ),
            None => bail!(
                "pushed {} but {} does not exist on the remote",
                &expected[..7.min(expected.len())],
                self.git.target(destination)
            ),
        }
    }
}

fn message_subject(message: &str) -> &str {
    crate::git::message::subject(message)
}
