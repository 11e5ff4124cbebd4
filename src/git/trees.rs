//! Two trees compared by id: only the subtrees whose ids differ are read, so a change to a few
//! files of a 100,000-file tree reads a few trees, and no index or attributes are consulted.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use git2::{ObjectType, Oid, Repository, Tree};

/// A path's entry on one side, if it is anything but a tree: its object id and file mode.
pub type Side = Option<(Oid, i32)>;

/// One path whose entry differs between the two trees.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub path: PathBuf,
    pub old: Side,
    pub new: Side,
}

/// Every path that differs between `old` and `new`, in byte order of the path.
pub fn changed(repo: &Repository, old: &Tree, new: &Tree) -> Result<Vec<Changed>> {
    let mut found = Vec::new();
    compare(repo, Some(old), Some(new), &[], &mut found)?;
    found.sort_by(|a, b| a.path.as_os_str().as_bytes().cmp(b.path.as_os_str().as_bytes()));
    Ok(found)
}

/// An entry as the comparison needs it: id, mode, and whether it is a tree.
type Entry = (Oid, i32, bool);

fn entries(tree: Option<&Tree>) -> Vec<(Vec<u8>, Entry)> {
    tree.into_iter()
        .flat_map(|t| t.iter())
        .map(|e| (e.name_bytes().to_vec(), (e.id(), e.filemode(), e.kind() == Some(ObjectType::Tree))))
        .collect()
}

fn compare(
    repo: &Repository,
    old: Option<&Tree>,
    new: Option<&Tree>,
    prefix: &[u8],
    found: &mut Vec<Changed>,
) -> Result<()> {
    let mut names: BTreeMap<Vec<u8>, (Option<Entry>, Option<Entry>)> = BTreeMap::new();
    for (name, entry) in entries(old) {
        names.entry(name).or_default().0 = Some(entry);
    }
    for (name, entry) in entries(new) {
        names.entry(name).or_default().1 = Some(entry);
    }
    for (name, (was, is)) in names {
        if was == is {
            continue;
        }
        let mut path = prefix.to_vec();
        path.extend_from_slice(&name);
        let tree = |entry: Option<Entry>| -> Result<Option<Tree<'_>>> {
            entry.filter(|e| e.2).map(|e| repo.find_tree(e.0)).transpose().map_err(Into::into)
        };
        let (old_tree, new_tree) = (tree(was)?, tree(is)?);
        if old_tree.is_some() || new_tree.is_some() {
            let mut inner = path.clone();
            inner.push(b'/');
            compare(repo, old_tree.as_ref(), new_tree.as_ref(), &inner, found)?;
        }
        let file = |entry: Option<Entry>| entry.filter(|e| !e.2).map(|e| (e.0, e.1));
        let (old_file, new_file) = (file(was), file(is));
        if old_file != new_file {
            found.push(Changed {
                path: Path::new(OsStr::from_bytes(&path)).to_path_buf(),
                old: old_file,
                new: new_file,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with two trees: files added, removed, changed, a file become a folder,
    /// and a large folder left alone.
    #[test]
    fn only_the_paths_that_differ_are_found_the_same_as_git_diff() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let tree = |files: &[(&str, &str)]| {
            let mut index = git2::Index::new().unwrap();
            for (path, text) in files {
                let id = repo.blob(text.as_bytes()).unwrap();
                let entry = git2::IndexEntry {
                    ctime: git2::IndexTime::new(0, 0),
                    mtime: git2::IndexTime::new(0, 0),
                    dev: 0,
                    ino: 0,
                    mode: 0o100644,
                    uid: 0,
                    gid: 0,
                    file_size: 0,
                    id,
                    flags: 0,
                    flags_extended: 0,
                    path: path.as_bytes().to_vec(),
                };
                index.add(&entry).unwrap();
            }
            repo.find_tree(index.write_tree_to(&repo).unwrap()).unwrap()
        };
        let mut old: Vec<(String, String)> = (0..200).map(|n| (format!("big/f{n}"), format!("{n}\n"))).collect();
        old.extend(
            [("a.txt", "a\n"), ("gone.txt", "x\n"), ("x", "file\n"), ("d/e.txt", "e\n")]
                .map(|(p, t)| (p.into(), t.into())),
        );
        let mut new: Vec<(String, String)> = (0..200).map(|n| (format!("big/f{n}"), format!("{n}\n"))).collect();
        new.extend(
            [("a.txt", "a2\n"), ("new.txt", "n\n"), ("x/y", "now a folder\n"), ("d/e.txt", "e\n")]
                .map(|(p, t)| (p.into(), t.into())),
        );
        fn as_refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
            files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect()
        }
        let (old, new) = (tree(&as_refs(&old)), tree(&as_refs(&new)));
        let found: Vec<String> =
            changed(&repo, &old, &new).unwrap().iter().map(|c| c.path.display().to_string()).collect();
        let diff = repo.diff_tree_to_tree(Some(&old), Some(&new), None).unwrap();
        let by_git: Vec<String> =
            diff.deltas().map(|d| d.new_file().path().or(d.old_file().path()).unwrap().display().to_string()).collect();
        assert_eq!(found, ["a.txt", "gone.txt", "new.txt", "x", "x/y"]);
        assert_eq!(found, by_git);
    }
}
