//! The rehearsal sandbox: a temp folder with a git clone whose history holds an offending
//! commit, its bare remote, a flagd flag file, a deploy script as the CI command, and a config.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::{IndexAddOption, Oid, PushOptions, Repository, RepositoryInitOptions, Signature};
use serde_json::json;
use tempfile::TempDir;

pub const IDENTITY: (&str, &str) = ("rollout rehearsal", "rehearsal@rollout.invalid");
pub const OFFENDING_SUBJECT: &str = "Add claim list pagination";

const CONFIG: &str = "\
# Rehearsal sandbox: every path below is inside this folder.
version: 1
runbooks: runbooks
flags: { provider: flagd, path: flags.json }
git: { repo: app, remote: origin, branch: main }
ci: { provider: command, command: [sh, deploy.sh] }
";

const DEPLOY: &str = "\
#!/bin/sh
# Rehearsal pipeline: stands in for the team's CI/CD and records what it deployed.
set -eu
echo \"$ROLLOUT_PIPELINE: testing $ROLLOUT_REF\"
sleep \"${ROLLOUT_REHEARSAL_DEPLOY_SECONDS:-1}\"
echo \"$ROLLOUT_PIPELINE: deploying $ROLLOUT_REF\"
echo \"$ROLLOUT_PIPELINE $ROLLOUT_REF\" >> deployments.log
echo \"$ROLLOUT_PIPELINE: deployed $ROLLOUT_REF\"
";

/// The app's history: (subject, files written). The third commit is the offending one.
const HISTORY: [(&str, &[(&str, &str)]); 4] = [
    (
        "Create the claim status app",
        &[
            ("README.md", "# Travel pay claim status\n\nShows veterans where their travel pay claims stand.\n"),
            (
                "src/app.js",
                "import { listClaims } from './claims.js';\n\nexport function render(user) {\n  return listClaims(user).map((c) => c.title).join('\\n');\n}\n",
            ),
            ("src/claims.js", "export function listClaims(user) {\n  return user.claims;\n}\n"),
        ],
    ),
    (
        "Show claim status behind travel_pay_claim_status",
        &[(
            "src/app.js",
            "import { listClaims } from './claims.js';\n\nexport function render(user, flags) {\n  if (!flags.travel_pay_claim_status) return '';\n  return listClaims(user).map((c) => `${c.title}: ${c.status}`).join('\\n');\n}\n",
        )],
    ),
    (
        OFFENDING_SUBJECT,
        &[
            (
                "src/claims.js",
                "import { paginate } from './pagination.js';\n\nexport function listClaims(user, page = 1) {\n  return paginate(user.claims, page, 10);\n}\n",
            ),
            (
                "src/pagination.js",
                "export function paginate(items, page, size) {\n  const start = page * size;\n  return items.slice(start, start + size);\n}\n",
            ),
            (
                "src/app.js",
                "import { listClaims } from './claims.js';\n\nexport function render(user, flags, page) {\n  if (!flags.travel_pay_claim_status) return '';\n  return listClaims(user, page).map((c) => `${c.title}: ${c.status}`).join('\\n');\n}\n",
            ),
        ],
    ),
    (
        "Add on-call contacts to the README",
        &[(
            "README.md",
            "# Travel pay claim status\n\nShows veterans where their travel pay claims stand.\n\nOn call: #travel-pay-oncall\n",
        )],
    ),
];

#[derive(Debug)]
pub struct Sandbox {
    root: TempDir,
    pub offending: Oid,
    pub tip: Oid,
}

impl Sandbox {
    pub fn create() -> Result<Sandbox> {
        let root = tempfile::Builder::new()
            .prefix("rollout-rehearsal-")
            .tempdir()
            .context("cannot create the sandbox folder")?;
        let dir = root.path();
        let mut init = RepositoryInitOptions::new();
        init.initial_head("main").bare(true);
        Repository::init_opts(dir.join("remote.git"), &init).context("cannot create the sandbox remote")?;
        let mut init = RepositoryInitOptions::new();
        init.initial_head("main");
        let app = Repository::init_opts(dir.join("app"), &init).context("cannot create the sandbox clone")?;
        let mut config = app.config()?;
        config.set_str("user.name", IDENTITY.0)?;
        config.set_str("user.email", IDENTITY.1)?;
        app.remote("origin", &dir.join("remote.git").to_string_lossy())?;
        let mut commits = Vec::new();
        for (subject, files) in HISTORY {
            commits.push(commit_files(&app, files, subject)?);
        }
        let mut origin = app.find_remote("origin")?;
        origin.push(&["refs/heads/main:refs/heads/main"], Some(&mut PushOptions::new()))?;
        app.reference("refs/remotes/origin/main", commits[3], true, "sandbox: initial push")?;
        std::fs::write(dir.join("rollout.yaml"), CONFIG)?;
        std::fs::write(dir.join("deploy.sh"), DEPLOY)?;
        std::fs::create_dir_all(dir.join("runbooks"))?;
        Ok(Sandbox { root, offending: commits[2], tip: commits[3] })
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    pub fn config_file(&self) -> PathBuf {
        self.path().join("rollout.yaml")
    }

    pub fn flags_file(&self) -> PathBuf {
        self.path().join("flags.json")
    }

    pub fn remote(&self) -> PathBuf {
        self.path().join("remote.git")
    }

    pub fn app(&self) -> PathBuf {
        self.path().join("app")
    }

    /// A flagd file with each flag on for everyone.
    pub fn write_flags(&self, names: &[String]) -> Result<()> {
        let flags: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    json!({ "state": "ENABLED", "variants": { "on": true, "off": false }, "defaultVariant": "on" }),
                )
            })
            .collect();
        let document = json!({ "$schema": "https://flagd.dev/schema/v0/flags.json", "flags": flags });
        std::fs::write(self.flags_file(), serde_json::to_string_pretty(&document)? + "\n")?;
        Ok(())
    }

    /// `abc1234 -> def5678 (1 new commit: Revert "...")` or `abc1234 (unchanged)`.
    pub fn remote_summary(&self) -> Result<String> {
        let remote = Repository::open_bare(self.remote())?;
        let mut summary = String::new();
        let tip = remote.refname_to_id("refs/heads/main")?;
        if tip == self.tip {
            return Ok(format!("{} (unchanged)", crate::git::short(tip)));
        }
        let mut walk = remote.revwalk()?;
        walk.push(tip)?;
        walk.hide(self.tip)?;
        let subjects: Vec<String> = walk
            .filter_map(|oid| oid.ok().and_then(|oid| remote.find_commit(oid).ok()))
            .map(|c| c.summary().ok().flatten().unwrap_or_default().to_string())
            .collect();
        summary.push_str(&format!(
            "{} -> {} ({} new commit{}: {})",
            crate::git::short(self.tip),
            crate::git::short(tip),
            subjects.len(),
            if subjects.len() == 1 { "" } else { "s" },
            subjects.join("; ")
        ));
        let branches: Vec<String> = remote
            .branches(Some(git2::BranchType::Local))?
            .filter_map(|b| b.ok().and_then(|(b, _)| b.name().ok().flatten().map(str::to_string)))
            .filter(|name| name != "main")
            .collect();
        if !branches.is_empty() {
            summary.push_str(&format!("; new branches: {}", branches.join(", ")));
        }
        Ok(summary)
    }

    /// Keep the folder after the sandbox is dropped; returns its path.
    pub fn keep(self) -> PathBuf {
        self.root.keep()
    }
}

fn commit_files(repo: &Repository, files: &[(&str, &str)], message: &str) -> Result<Oid> {
    let workdir = repo.workdir().context("the sandbox clone has no work tree")?;
    for (path, text) in files {
        let path = workdir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    let mut index = repo.index()?;
    index.add_all(["*"], IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let signature = Signature::now(IDENTITY.0, IDENTITY.1)?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    Ok(repo.commit(Some("HEAD"), &signature, &signature, &format!("{message}\n"), &tree, &parents)?)
}
