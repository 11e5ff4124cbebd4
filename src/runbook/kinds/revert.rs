//! The `revert` step kind: its YAML fields, checks and rendering into a [`RevertRequest`].
//! Its service is the git remote of the config's `git` section.

use serde::Deserialize;

use super::{Kind, Service, yes};
use crate::echo;
use crate::runbook::resolve::{Renderer, Unresolved};
use crate::runbook::validate::{Checker, LiteralCheck};
use crate::runbook::{InputType, StepCommon, Text, inputs};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevertSpec {
    /// One commit, or a range `A..B`.
    #[serde(default)]
    pub commit: Option<Text>,
    /// Several commits (or ranges); reverted newest first, like `git revert`.
    #[serde(default)]
    pub commits: Option<Vec<Text>>,
    /// One combined revert commit instead of one per commit.
    #[serde(default)]
    pub squash: bool,
    #[serde(default)]
    pub mainline: Option<Text>,
    #[serde(default = "yes")]
    pub push: bool,
    #[serde(default)]
    pub branch: Option<Text>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RevertRequest {
    /// Revisions or ranges, as written.
    pub commits: Vec<String>,
    pub squash: bool,
    pub mainline: Option<u32>,
    pub push: bool,
    pub branch: Option<String>,
}

/// A merge commit's parent number, 1-based as in `git revert -m`.
pub fn parse_mainline(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => {
            Err(format!("`{}` is not a parent number: mainline counts from 1, like git revert -m 1", echo::clip(text)))
        }
    }
}

fn check_branch(name: &str) -> Result<(), String> {
    if git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
        Ok(())
    } else {
        Err(format!("`{}` is not a valid branch name", echo::clip(name)))
    }
}

impl Kind for RevertSpec {
    const NAME: &'static str = "revert";
    const SUMMARY: &'static str = "revert commits in memory, byte-identical to git revert, and push them";
    const OUTPUTS: &'static [&'static str] = &["commit", "commits", "reverted", "remote", "branch", "previous"];
    const SERVICE: Option<Service> = Some(Service::Git);
    type Request = RevertRequest;

    fn check(&self, c: &mut Checker, i: usize, p: &str) {
        let commit_check: &LiteralCheck = &|v| inputs::check_value(InputType::Commit, v).map(drop);
        match (&self.commit, &self.commits) {
            (Some(commit), None) => c.text(i, &format!("{p}.commit"), commit, Some(commit_check)),
            (None, Some(commits)) if !commits.is_empty() => {
                for (n, commit) in commits.iter().enumerate() {
                    c.text(i, &format!("{p}.commits[{n}]"), commit, Some(commit_check));
                }
            }
            (None, Some(_)) => c.at_key(&format!("{p}.commits"), "name at least one commit".into()),
            _ => c.at_key(
                p,
                "a revert names `commit` (one commit or a range A..B) or `commits` (a list), not both".into(),
            ),
        }
        if let Some(mainline) = &self.mainline {
            c.text(i, &format!("{p}.mainline"), mainline, Some(&|v| parse_mainline(v).map(drop)));
        }
        if let Some(branch) = &self.branch {
            c.text(i, &format!("{p}.branch"), branch, Some(&check_branch));
        }
    }

    fn resolve(&self, r: &Renderer, _: &StepCommon) -> Result<RevertRequest, Unresolved> {
        let mut commits = Vec::new();
        if let Some(commit) = &self.commit {
            commits.push(r.text("commit", commit)?);
        }
        for (i, commit) in self.commits.iter().flatten().enumerate() {
            commits.push(r.text(&format!("commits[{i}]"), commit)?);
        }
        Ok(RevertRequest {
            commits,
            squash: self.squash,
            mainline: self.mainline.as_ref().map(|m| r.typed("mainline", m, parse_mainline)).transpose()?,
            push: self.push,
            branch: self.branch.as_ref().map(|b| r.text("branch", b)).transpose()?,
        })
    }
}
