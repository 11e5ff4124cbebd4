//! Reverts worked out in memory: which commits (a list or ranges, newest first), which the
//! branch already reverted, the trees and messages `git revert` would produce, and conflicts.

use std::collections::{HashMap, HashSet};

use anyhow::{Result, anyhow};
use git2::{Commit, Oid, Repository};

use super::{identity, message, short, trees};
use crate::error::Precondition;

/// A commit to revert.
#[derive(Debug, Clone)]
pub struct Original {
    pub id: Oid,
    pub subject: String,
    pub author: String,
    /// For a merge: the parent the revert goes back to (`mainline`).
    pub mainline_parent: Option<Oid>,
    pub message: String,
}

/// One file the revert changes, with its line counts.
#[derive(Debug, Clone)]
pub struct FileChange {
    pub path: String,
    pub added: usize,
    pub removed: usize,
}

/// A revert of one or more commits onto a tip, worked out but not committed.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The remote branch tip the revert goes on top of.
    pub tip: Oid,
    /// What to revert, newest first.
    pub originals: Vec<Original>,
    /// Commits the branch already reverts: (original, the revert on the branch).
    pub already: Vec<(Oid, Oid)>,
    /// What the revert changes, from the tip to the result.
    pub files: Vec<FileChange>,
    /// Paths that conflict, and the commit whose revert conflicts.
    pub conflicts: Vec<String>,
    pub conflicting: Option<Oid>,
    pub squash: bool,
}

impl Plan {
    pub fn added(&self) -> usize {
        self.files.iter().map(|f| f.added).sum()
    }

    pub fn removed(&self) -> usize {
        self.files.iter().map(|f| f.removed).sum()
    }

    /// The messages of the commits to make: one per original, or one for a squash.
    pub fn messages(&self) -> Vec<String> {
        if !self.squash || self.originals.len() < 2 {
            return self.originals.iter().map(|o| o.message.clone()).collect();
        }
        let first = &self.originals[0];
        let mut text = format!("Revert \"{}\" and {} more commits\n\n", first.subject, self.originals.len() - 1);
        for original in &self.originals {
            text.push_str(&format!("This reverts commit {} (\"{}\").\n", original.id, original.subject));
        }
        vec![text]
    }
}

/// Every full commit id a message says it reverts.
fn reverted_ids(message: &str) -> Vec<Oid> {
    let marker = "This reverts commit ";
    message
        .match_indices(marker)
        .filter_map(|(at, _)| message.get(at + marker.len()..at + marker.len() + 40))
        .filter_map(|hex| Oid::from_str(hex).ok())
        .collect()
}

/// A commit's message in UTF-8, re-encoded from its `encoding` header like git does.
fn decoded_message(commit: &Commit) -> String {
    let bytes = commit.message_raw_bytes();
    match commit.message_encoding().ok().flatten().and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
    {
        Some(encoding) => encoding.decode_without_bom_handling(bytes).0.into_owned(),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The commit after `original` on the branch that reverts it, unless that revert was itself
/// reverted (reapplied) later.
pub fn reverted_on_branch(repo: &Repository, tip: Oid, original: Oid) -> Result<Option<Oid>> {
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    walk.hide(original)?;
    let mut reverts_of: HashMap<Oid, Vec<Oid>> = HashMap::new();
    for oid in walk {
        let oid = oid?;
        for id in reverted_ids(&String::from_utf8_lossy(repo.find_commit(oid)?.message_raw_bytes())) {
            reverts_of.entry(id).or_default().push(oid);
        }
    }
    let candidates = reverts_of.get(&original).cloned().unwrap_or_default();
    Ok(candidates.into_iter().find(|revert| !reverts_of.contains_key(revert)))
}

/// The commits a spec names: one revision, or every commit of a range `A..B`.
fn resolve(repo: &Repository, spec: &str, where_: &str, branch: &str) -> Result<Vec<Oid>> {
    let unknown = |what: &str| {
        Precondition(format!("unknown commit {what} in {where_}: check the id, or push it to {branch} first"))
    };
    let commit = |what: &str| {
        repo.revparse_single(what).and_then(|o| o.peel_to_commit()).map(|c| c.id()).map_err(|_| unknown(what))
    };
    match spec.split_once("..") {
        Some((from, to)) if !to.starts_with('.') => {
            let (from, to) = (commit(from)?, commit(if to.is_empty() { "HEAD" } else { to })?);
            let mut walk = repo.revwalk()?;
            walk.push(to)?;
            walk.hide(from)?;
            let ids: Vec<Oid> = walk.collect::<Result<_, _>>()?;
            if ids.is_empty() {
                return Err(Precondition(format!("the range {spec} names no commits")).into());
            }
            Ok(ids)
        }
        _ => Ok(vec![commit(spec)?]),
    }
}

fn original(commit: &Commit, mainline: Option<u32>) -> Result<Original> {
    let id = short(commit.id());
    let parents = commit.parent_count();
    let mainline_parent = match (parents, mainline) {
        (0, _) => {
            return Err(
                Precondition(format!("commit {id} is the repository's first commit: it cannot be reverted")).into()
            );
        }
        (1, None) => None,
        (1, Some(_)) => {
            return Err(Precondition(format!("commit {id} is not a merge: remove `mainline` from the step")).into());
        }
        (n, None) => {
            return Err(Precondition(format!(
                "commit {id} is a merge of {n} parents: set `mainline` (1 keeps the branch it was merged into, like git revert -m 1)"
            ))
            .into());
        }
        (n, Some(m)) if m as usize > n => {
            return Err(Precondition(format!("commit {id} has {n} parents; mainline {m} does not exist")).into());
        }
        (_, Some(m)) => Some(commit.parent_id(m as usize - 1)?),
    };
    let text = decoded_message(commit);
    let author = commit.author();
    Ok(Original {
        id: commit.id(),
        subject: message::subject(&text).to_string(),
        author: format!(
            "{} <{}>",
            String::from_utf8_lossy(author.name_bytes()),
            String::from_utf8_lossy(author.email_bytes())
        ),
        message: message::revert_message(
            &text,
            &commit.id().to_string(),
            mainline_parent.map(|p| p.to_string()).as_deref(),
        ),
        mainline_parent,
    })
}

/// Work out the revert of `specs` onto `tip`: which commits, newest first, which are already
/// reverted on the branch, and what the result changes. `branch` names the branch in messages.
pub fn plan(
    repo: &Repository,
    tip: Oid,
    specs: &[String],
    mainline: Option<u32>,
    squash: bool,
    branch: &str,
) -> Result<Plan> {
    let where_ = repo.path().parent().map(|p| p.display().to_string()).unwrap_or_default();
    let mut wanted: HashSet<Oid> = HashSet::new();
    for spec in specs {
        wanted.extend(resolve(repo, spec, &where_, branch)?);
    }
    // Every wanted commit must be on the branch; the ones a later commit on the branch already
    // reverts (and nothing reapplied since) are set aside. Only the commits after each one are
    // read, whatever their dates say.
    let mut order: Vec<Oid> = Vec::new();
    let mut already = Vec::new();
    let mut missing = Vec::new();
    for oid in &wanted {
        if *oid != tip && !repo.graph_descendant_of(tip, *oid)? {
            missing.push(short(*oid));
            continue;
        }
        match reverted_on_branch(repo, tip, *oid)? {
            Some(revert) => already.push((*oid, revert)),
            None => order.push(*oid),
        }
    }
    if !missing.is_empty() {
        missing.sort();
        return Err(Precondition(format!(
            "commit {} is not on {branch}: there is nothing to revert there",
            missing.join(", ")
        ))
        .into());
    }
    // Newest first by ancestry, whatever the dates say, as `git revert` does.
    order.sort_by(|a, b| {
        if repo.graph_descendant_of(*a, *b).unwrap_or(false) {
            std::cmp::Ordering::Less
        } else if repo.graph_descendant_of(*b, *a).unwrap_or(false) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let originals: Vec<Original> =
        order.iter().map(|id| original(&repo.find_commit(*id)?, mainline)).collect::<Result<_>>()?;
    let mut plan =
        Plan { tip, originals, already, files: Vec::new(), conflicts: Vec::new(), conflicting: None, squash };
    let tip_tree = repo.find_commit(tip)?.tree()?;
    let mut tree = tip_tree.clone();
    for original in &plan.originals {
        match revert_tree(repo, original, &tree)? {
            Ok(next) => tree = next,
            Err(conflicts) => {
                plan.conflicts = conflicts;
                plan.conflicting = Some(original.id);
                return Ok(plan);
            }
        }
    }
    plan.files = changes(repo, &tip_tree, &tree)?;
    Ok(plan)
}

/// The tree `ours` with `original` reverted, or the paths that conflict. When every path the
/// commit touched is unchanged on `ours` since, the old versions are put back directly and
/// only the trees on those paths are rewritten; otherwise a full three-way merge decides.
fn revert_tree<'r>(
    repo: &'r Repository,
    original: &Original,
    ours: &git2::Tree<'r>,
) -> Result<Result<git2::Tree<'r>, Vec<String>>> {
    let commit = repo.find_commit(original.id)?;
    let parent = match original.mainline_parent {
        Some(parent) => repo.find_commit(parent)?,
        None => commit.parent(0)?,
    };
    let (ancestor, theirs) = (commit.tree()?, parent.tree()?);
    let mut updates = git2::build::TreeUpdateBuilder::new();
    let mut direct = true;
    for change in trees::changed(repo, &ancestor, &theirs)? {
        let current = ours.get_path(&change.path).ok().map(|e| (e.id(), e.filemode()));
        let (was, will) = (change.old, change.new);
        if current == was {
            match will {
                Some((id, mode)) => updates.upsert(&change.path, id, file_mode(mode)),
                None => updates.remove(&change.path),
            };
        } else if current != will {
            direct = false;
            break;
        }
    }
    if direct {
        return Ok(Ok(repo.find_tree(updates.create_updated(repo, ours)?)?));
    }
    let mut index = repo.merge_trees(&ancestor, ours, &theirs, None)?;
    if index.has_conflicts() {
        let mut paths: Vec<String> = index
            .conflicts()?
            .filter_map(|c| c.ok())
            .filter_map(|c| c.our.or(c.their).or(c.ancestor).map(|e| String::from_utf8_lossy(&e.path).into_owned()))
            .collect();
        paths.dedup();
        return Ok(Err(paths));
    }
    Ok(Ok(repo.find_tree(index.write_tree_to(repo)?)?))
}

fn file_mode(mode: i32) -> git2::FileMode {
    match mode {
        0o100755 => git2::FileMode::BlobExecutable,
        0o120000 => git2::FileMode::Link,
        0o160000 => git2::FileMode::Commit,
        0o040000 => git2::FileMode::Tree,
        _ => git2::FileMode::Blob,
    }
}

/// Make the revert commits the plan describes, on its tip; no ref is updated. Returns the new
/// commits in the order made (the last is the new tip).
pub fn commit(repo: &Repository, plan: &Plan) -> Result<Vec<Oid>> {
    if let Some(conflicting) = plan.conflicting {
        return Err(anyhow!("the revert of {} conflicts in {}", short(conflicting), plan.conflicts.join(", ")));
    }
    let author = identity(repo, "AUTHOR")?;
    let committer = identity(repo, "COMMITTER")?;
    let mut head = repo.find_commit(plan.tip)?;
    let mut tree = head.tree()?;
    let messages = plan.messages();
    let mut made = Vec::new();
    for (i, original) in plan.originals.iter().enumerate() {
        tree = revert_tree(repo, original, &tree)?.map_err(|paths| {
            anyhow!(
                "the revert of {} no longer applies cleanly onto {}: conflicts in {}",
                short(original.id),
                short(plan.tip),
                paths.join(", ")
            )
        })?;
        let last = i + 1 == plan.originals.len();
        if !plan.squash || last {
            let text = if plan.squash { &messages[0] } else { &messages[i] };
            let id = repo.commit(None, &author, &committer, text, &tree, &[&head])?;
            head = repo.find_commit(id)?;
            made.push(id);
        }
    }
    Ok(made)
}

/// Files that differ between two trees, with added and removed line counts from their blobs
/// (no index, no attributes: binary files by their content).
fn changes(repo: &Repository, old: &git2::Tree, new: &git2::Tree) -> Result<Vec<FileChange>> {
    let blob = |side: trees::Side| -> Result<Option<git2::Blob<'_>>> {
        // A submodule's entry is a commit of another repository: no lines to count.
        side.filter(|(_, mode)| *mode != 0o160000).map(|(id, _)| repo.find_blob(id)).transpose().map_err(Into::into)
    };
    let mut files = Vec::new();
    for change in trees::changed(repo, old, new)? {
        let (before, after) = (blob(change.old)?, blob(change.new)?);
        let content = |blob: &Option<git2::Blob>| blob.as_ref().map(|b| b.content().to_vec()).unwrap_or_default();
        let (old_text, new_text) = (content(&before), content(&after));
        let patch = git2::Patch::from_buffers(&old_text, None, &new_text, None, None)?;
        let (_, added, removed) = patch.line_stats()?;
        files.push(FileChange { path: change.path.display().to_string(), added, removed });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverted_ids_are_read_from_git_and_squashed_messages() {
        let a = "3f2a9c1e0b5d4c6a8f7e9d0c1b2a3f4e5d6c7b8a";
        let b = "1111111111111111111111111111111111111111";
        let text = format!(
            "Revert \"x\" and 1 more commits\n\nThis reverts commit {a} (\"x\").\nThis reverts commit {b} (\"y\").\n"
        );
        assert_eq!(reverted_ids(&text), [Oid::from_str(a).unwrap(), Oid::from_str(b).unwrap()]);
        assert_eq!(reverted_ids("This reverts commit 3f2a9c1."), []);
    }
}
