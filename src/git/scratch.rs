//! A throwaway object store for fetches: a temporary bare repository that borrows the clone's
//! objects as its alternate and keeps what a fetch brings, so a preview writes nothing to the clone.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow};
use git2::{ConfigLevel, Repository};
use tempfile::TempDir;

/// Removed with its folder when dropped, or by [`remove_left`] as the process ends.
#[derive(Debug)]
pub struct Store {
    dir: TempDir,
}

/// The folders of the stores not yet dropped: a preflight in the background may still hold one
/// when the run ends, and the process does not wait for it. None once the process is ending.
static LEFT: Mutex<Option<Vec<PathBuf>>> = Mutex::new(Some(Vec::new()));

/// Remove the folders of the stores still held (by a preflight the run did not wait for); none
/// is made after this.
pub fn remove_left() {
    let left = LEFT.lock().unwrap_or_else(|e| e.into_inner()).take();
    for dir in left.into_iter().flatten() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(left) = LEFT.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            left.retain(|dir| dir != self.dir.path());
        }
    }
}

impl Store {
    /// A store that fetches as the clone would (its config is included: remotes, URL rewrites,
    /// proxies); [`know_branches`] before a download, so that the remote sends only what
    /// the clone lacks.
    pub fn new(clone: &Repository) -> Result<(Store, Repository)> {
        // Made whole under the lock, so that `remove_left` never meets one half made.
        let mut left = LEFT.lock().unwrap_or_else(|e| e.into_inner());
        let left = left.as_mut().ok_or_else(|| anyhow!("not fetched: the run is ending"))?;
        let dir = tempfile::Builder::new().prefix("rollout-fetch-").tempdir().context("cannot create a temp folder")?;
        let clone_config = clone.commondir().join("config");
        let clone_config = clone_config
            .to_str()
            .ok_or_else(|| anyhow!("cannot fetch aside: the clone's path {} is not UTF-8", clone_config.display()))?;
        Repository::init_bare(dir.path())?
            .config()?
            .open_level(ConfigLevel::Local)?
            .set_str("include.path", clone_config)?;
        let mut alternate = clone.commondir().join("objects").into_os_string().into_encoded_bytes();
        alternate.push(b'\n');
        std::fs::write(dir.path().join("objects/info/alternates"), alternate)?;
        let repo = Repository::open_bare(dir.path())?;
        left.push(dir.path().to_path_buf());
        Ok((Store { dir }, repo))
    }

    fn objects(&self) -> PathBuf {
        self.dir.path().join("objects")
    }

    /// Let `repo` read what this store holds, in memory only: nothing is written to `repo`.
    pub fn lend_to(&self, repo: &Repository) -> Result<()> {
        let objects = self.objects();
        let path = objects.to_str().ok_or_else(|| anyhow!("the temp folder {} is not UTF-8", objects.display()))?;
        Ok(repo.odb()?.add_disk_alternate(path)?)
    }

    /// Copy what this store fetched into `repo`'s own object database, through libgit2's
    /// pack writer (which indexes it as a fetch would).
    pub fn give_to(&self, repo: &Repository) -> Result<()> {
        let odb = repo.odb()?;
        for entry in std::fs::read_dir(self.objects().join("pack"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "pack") {
                let mut writer = odb.packwriter()?;
                std::io::copy(&mut std::fs::File::open(&path)?, &mut writer)?;
                writer.commit()?;
            }
        }
        Ok(())
    }
}

/// Give a store's repository (`aside`) the clone's branches, so that a download into it asks
/// the remote only for what the clone lacks.
pub fn know_branches(clone: &Repository, aside: &Repository) -> Result<()> {
    for reference in clone.references()? {
        if let Ok(reference) = reference
            && let (Ok(name), Some(target)) = (reference.name(), reference.target())
            && (name.starts_with("refs/heads/") || name.starts_with("refs/remotes/"))
        {
            // A ref that cannot be copied only makes the fetch ask for more.
            let _ = aside.reference(name, target, true, "rollout: what the clone has");
        }
    }
    Ok(())
}
