//! The `revert` step: the offending commits reverted in memory onto the remote branch, committed
//! with git's own messages, pushed (prepared again if the branch moved), and read back.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::{Applied, Change, Context, Done, Held, Landed, Preview, Services, Step, journaled};
use crate::echo::short_id;
use crate::error::Precondition;
use crate::git::revert::{self, Plan};
use crate::git::{GitRemote, PushError, identity, short};
use crate::runbook::kinds::revert::RevertRequest;
use crate::runbook::resolve::Outputs;

/// The branch as a revert finds it: the step's journaled `before`, and its `after` when there is
/// nothing to change. `commit` is null for a branch the revert would create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevertState {
    pub remote: String,
    pub branch: String,
    pub commit: Option<String>,
}

/// What a revert leads to, the step's journaled `after`: commits reverting `reverts` on `parent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevertResult {
    pub remote: String,
    pub branch: String,
    pub parent: String,
    pub reverts: Vec<String>,
    pub pushed: bool,
}

pub struct RevertStep<'s> {
    git: &'s GitRemote,
    request: RevertRequest,
}

/// The step that reverts `request`'s commits on the configured git remote.
pub fn build<'s>(services: &'s Services, request: RevertRequest) -> Result<Box<dyn Step + 's>> {
    Ok(Box::new(RevertStep { git: services.git()?, request }))
}

impl RevertStep<'_> {
    /// The branch `branch` as the preview found it: at `commit`, or not there yet.
    fn found(&self, branch: &str, commit: Option<git2::Oid>) -> RevertState {
        RevertState {
            remote: self.git.remote.clone(),
            branch: branch.to_string(),
            commit: commit.map(|c| c.to_string()),
        }
    }

    fn destination(&self) -> &str {
        self.request.branch.as_deref().unwrap_or(&self.git.branch)
    }

    fn plan(&self, repo: &git2::Repository, tip: git2::Oid) -> Result<Plan> {
        let branch = self.git.target(&self.git.branch);
        revert::plan(repo, tip, &self.request.commits, self.request.mainline, self.request.squash, &branch)
    }

    fn outputs(&self, plan: &Plan, made: &[git2::Oid], pushed: bool) -> Outputs {
        let newest = made.last().copied().or_else(|| plan.already.first().map(|(_, by)| *by));
        let reverted: Vec<String> = plan
            .originals
            .iter()
            .map(|o| o.id)
            .chain(plan.already.iter().map(|(o, _)| *o))
            .map(|o| o.to_string())
            .collect();
        Outputs::from([
            ("commit".to_string(), newest.map(|c| c.to_string()).unwrap_or_default()),
            ("commits".to_string(), made.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" ")),
            ("reverted".to_string(), reverted.join(" ")),
            ("remote".to_string(), self.git.remote.clone()),
            ("branch".to_string(), if pushed { self.destination().to_string() } else { String::new() }),
            // The tip the revert went on top of: what the branch was before.
            ("previous".to_string(), plan.tip.to_string()),
        ])
    }

    /// What `apply` leaves: the outputs, and the commit the destination now has if it pushed one.
    fn applied(&self, plan: &Plan, made: &[git2::Oid], pushed: bool) -> Applied {
        let outputs = self.outputs(plan, made, pushed);
        let landed = match made.last() {
            Some(newest) if pushed => Landed::Pushed(*newest),
            _ => Landed::Nothing,
        };
        Applied { outputs, landed }
    }

    fn what(plan: &Plan) -> String {
        match plan.originals.as_slice() {
            [one] => format!("{} \"{}\"", short(one.id), one.subject),
            many => {
                let listed: Vec<String> = many.iter().map(|o| format!("{} \"{}\"", short(o.id), o.subject)).collect();
                let how = if plan.squash { "as one commit" } else { "newest first" };
                format!("{} commits ({}) {how}", many.len(), listed.join(", "))
            }
        }
    }
}

impl Step for RevertStep<'_> {
    fn preview(&self, _cx: &Context) -> Result<Preview> {
        let repo = self.git.open()?;
        // Trees worked out here stay in memory: a preview writes nothing to the clone.
        let odb = repo.odb()?;
        let _scratch = odb.add_new_mempack_backend(1000)?;
        let base = self.git.target(&self.git.branch);
        let tip = self.git.remote_tip(&repo, &self.git.branch)?;
        let plan = self.plan(&repo, tip)?;
        if let Some(conflicting) = plan.conflicting {
            let original = plan.originals.iter().find(|o| o.id == conflicting).expect("a planned commit");
            return Err(Precondition(format!(
                "the revert of {} \"{}\" does not apply cleanly onto {base} ({}): conflicts in {}",
                short(original.id),
                original.subject,
                short(tip),
                plan.conflicts.join(", ")
            ))
            .into());
        }
        let already: Vec<String> =
            plan.already.iter().map(|(o, by)| format!("{} already reverted by {}", short(*o), short(*by))).collect();
        let destination = self.destination();
        if plan.originals.is_empty() {
            let outputs = self.outputs(&plan, &[], self.request.push);
            return Ok(Preview {
                effect: format!("revert onto {base}: {}, nothing to change", already.join(", ")),
                before: journaled(format!("{base} at {}", short(tip)), &self.found(&self.git.branch, Some(tip))),
                after: journaled(format!("{base} at {}", short(tip)), &self.found(&self.git.branch, Some(tip))),
                details: already,
                unchanged: Some(outputs),
                projection: None,
                ..Preview::default()
            });
        }
        identity(&repo, "AUTHOR")?;
        let branch_mode = destination != self.git.branch;
        if branch_mode && let Some(existing) = self.git.remote_head(&repo, destination)? {
            return Err(Precondition(format!(
                "branch {destination} already exists on {} (at {}): pick a new branch name for the revert",
                self.git.remote,
                short(existing)
            ))
            .into());
        }
        let files = plan.files.len();
        let mut effect = format!(
            "revert {} onto {base}: {files} file{} (+{} -{}), applies cleanly",
            Self::what(&plan),
            if files == 1 { "" } else { "s" },
            plan.added(),
            plan.removed()
        );
        if !already.is_empty() {
            effect.push_str(&format!("; {} (skipped)", already.join(", ")));
        }
        if !self.request.push {
            effect.push_str("; not pushed (push: false)");
        } else if branch_mode {
            effect.push_str(&format!("; pushed to new branch {destination}"));
        }
        let mut details: Vec<String> =
            plan.originals.iter().map(|o| format!("commit {} by {}: {}", o.id, o.author, o.subject)).collect();
        details.extend(plan.files.iter().map(|f| format!("  {}  +{} -{}", f.path, f.added, f.removed)));
        for message in plan.messages() {
            details.push("message:".into());
            details.extend(message.lines().map(|l| format!("  {l}")));
        }
        let found = if branch_mode {
            format!("{} does not exist", self.git.target(destination))
        } else {
            format!("{base} at {}", short(tip))
        };
        let before = journaled(found, &self.found(destination, (!branch_mode).then_some(tip)));
        let subjects: Vec<String> =
            plan.messages().iter().map(|m| crate::git::message::subject(m).to_string()).collect();
        let result = RevertResult {
            remote: self.git.remote.clone(),
            branch: destination.to_string(),
            parent: tip.to_string(),
            reverts: plan.originals.iter().map(|o| o.id.to_string()).collect(),
            pushed: self.request.push,
        };
        let after = journaled(format!("{} at {}", self.git.target(destination), subjects.join(", then ")), &result);
        Ok(Preview { effect, before, after, details, change: Change::Revert(plan), ..Preview::default() })
    }

    /// The plan is kept while the remote branch is still at the tip it was made on (one
    /// listing of the remote's heads, and a fetch only if this thread's clone lacks that tip:
    /// a preflight in the background fetched into services of its own); otherwise it is made
    /// again.
    fn refresh(&self, cx: &Context, planned: Preview) -> Result<Preview> {
        let Change::Revert(plan) = &planned.change else { return self.preview(cx) };
        let repo = self.git.open()?;
        if self.git.remote_tip_if_new(&repo, &self.git.branch)? == plan.tip { Ok(planned) } else { self.preview(cx) }
    }

    /// The revert still on the branch it was pushed to, and not reverted since. Reads the
    /// history only: nothing is planned again.
    fn holds(&self, _cx: &Context, done: Done) -> Result<Held> {
        let get = |key: &str| done.outputs.get(key).map(String::as_str).unwrap_or_default();
        let (commit, branch) = (get("commit"), get("branch"));
        if branch.is_empty() || commit.is_empty() {
            return Ok(Held::Unchecked("the revert was not pushed".into()));
        }
        let repo = self.git.open()?;
        let tip = self.git.remote_tip_if_new(&repo, branch)?;
        let revert = git2::Oid::from_str(commit)?;
        let place = self.git.target(branch);
        if revert != tip && !repo.graph_descendant_of(tip, revert).unwrap_or(false) {
            return Ok(Held::Drifted(format!(
                "the revert {} is no longer on {place} (now at {})",
                short(revert),
                short(tip)
            )));
        }
        Ok(match revert::reverted_on_branch(&repo, tip, revert)? {
            Some(by) => {
                Held::Drifted(format!("the revert {} was itself reverted on {place} by {}", short(revert), short(by)))
            }
            None => Held::Holds(format!("the revert {} is on {place} (at {})", short(revert), short(tip))),
        })
    }

    fn apply(&self, cx: &Context, preview: &Preview) -> Result<Applied> {
        let repo = self.git.open()?;
        let base = self.git.target(&self.git.branch);
        let mut plan = match &preview.change {
            Change::Revert(plan) => plan.clone(),
            _ => self.plan(&repo, self.git.remote_tip(&repo, &self.git.branch)?)?,
        };
        let attempts = self.git.push_attempts;
        for attempt in 1..=attempts {
            if plan.originals.is_empty() {
                cx.ui.say(format!("  {base} already has the revert: nothing to push"));
                return Ok(self.applied(&plan, &[], self.request.push));
            }
            self.git.keep_fetched(&repo)?;
            let made = revert::commit(&repo, &plan)?;
            let newest = *made.last().expect("at least one commit made");
            if !self.request.push {
                cx.ui.say(format!(
                    "  not pushed: git push {} {newest}:{} publishes it",
                    self.git.remote,
                    self.destination()
                ));
                return Ok(self.applied(&plan, &made, false));
            }
            match self.git.push(&repo, newest, self.destination()) {
                Ok(warning) => {
                    if let Some(warning) = warning {
                        cx.ui.warn(warning);
                    }
                    return Ok(self.applied(&plan, &made, true));
                }
                Err(PushError::Moved(what)) if attempt < attempts => {
                    if self.destination() != self.git.branch {
                        bail!(
                            "branch {} was created on {} while the revert was prepared",
                            self.destination(),
                            self.git.remote
                        );
                    }
                    let tip = self.git.remote_tip(&repo, &self.git.branch)?;
                    cx.ui.warn(format!(
                        "{what} moved while the revert was prepared (now at {}); re-applying the revert onto it (attempt {} of {attempts})",
                        short(tip),
                        attempt + 1
                    ));
                    plan = self.plan(&repo, tip)?;
                    if let Some(conflicting) = plan.conflicting {
                        bail!(
                            "the revert of {} no longer applies cleanly onto {base} ({}): conflicts in {}",
                            short(conflicting),
                            short(tip),
                            plan.conflicts.join(", ")
                        );
                    }
                }
                Err(PushError::Moved(what)) => {
                    bail!("{what} {attempts} times in a row; stopped trying: run the step again")
                }
                Err(PushError::Other(error)) => return Err(error),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn verify(&self, _cx: &Context, applied: &Applied) -> Result<()> {
        let Landed::Pushed(expected) = applied.landed else { return Ok(()) };
        let repo = self.git.open()?;
        let destination = self.destination();
        match self.git.remote_head(&repo, destination)? {
            Some(head) if head == expected => Ok(()),
            Some(head) => {
                bail!("pushed {} but {} now points at {}", short(expected), self.git.target(destination), short(head))
            }
            None => {
                bail!("pushed {} but {} does not exist on the remote", short(expected), self.git.target(destination))
            }
        }
    }

    /// `pushed 69a913a onto origin/main (was a3593e9)`, `pushed branch origin/x at 69a913a`.
    fn outcome(&self, outputs: &Outputs) -> String {
        let get = |key: &str| outputs.get(key).map(String::as_str).unwrap_or_default();
        let (commit, previous, branch) = (short_id(get("commit")), short_id(get("previous")), get("branch"));
        let made = get("commits").split_whitespace().count();
        let what = if made > 1 { format!("{made} commits, newest {commit},") } else { commit.to_string() };
        let base = self.git.target(&self.git.branch);
        match (made, branch) {
            (0, _) => format!("nothing to push: {base} already has the revert ({commit})"),
            (_, "") => format!("committed {what} on top of {base} ({previous}); not pushed"),
            (_, branch) if branch == self.git.branch => format!("pushed {what} onto {base} (was {previous})"),
            (_, branch) => format!("pushed branch {} at {commit} (from {base} at {previous})", self.git.target(branch)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revert_states_read_back_from_the_journal_shape_they_are_written_in() {
        let before = RevertState { remote: "origin".into(), branch: "revert-x".into(), commit: None };
        let written = journaled("origin/revert-x does not exist", &before);
        assert_eq!(
            written.to_string(),
            r#"{"summary":"origin/revert-x does not exist","remote":"origin","branch":"revert-x","commit":null}"#
        );
        assert_eq!(serde_json::from_value::<RevertState>(written).unwrap(), before);
        let after = RevertResult {
            remote: "origin".into(),
            branch: "main".into(),
            parent: "a3593e9".into(),
            reverts: vec!["69a913a".into()],
            pushed: true,
        };
        let written = journaled("origin/main at Revert \"x\"", &after);
        let keys: Vec<&String> = written.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["summary", "remote", "branch", "parent", "reverts", "pushed"]);
        assert_eq!(serde_json::from_value::<RevertResult>(written).unwrap(), after);
    }
}
