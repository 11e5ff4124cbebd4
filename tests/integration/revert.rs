//! Reverts through git2 against `git revert`.
