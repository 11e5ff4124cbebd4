//! The revert commit message exactly as `git revert --no-edit` writes it, including
//! merge commits (`reversing changes made to`) and reverts of reverts (`Reapply`).

/// The subject git uses: the first line that is not blank, where blank means only spaces,
/// tabs and line ends (git's own `isspace`, narrower than Unicode's).
pub fn subject(message: &str) -> &str {
    message
        .split_inclusive('\n')
        .find(|line| !line.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')))
        .map(|line| line.strip_suffix('\n').unwrap_or(line))
        .unwrap_or("")
}

/// `Revert "<subject>"` (or `Reapply "<...>"`), then `This reverts commit <id>` and, for a
/// merge, the mainline parent it goes back to.
pub fn revert_message(original_message: &str, original_id: &str, mainline_parent: Option<&str>) -> String {
    let subject = subject(original_message);
    let mut message = match subject.strip_prefix("Revert \"") {
        Some(rest) if !rest.starts_with("Revert \"") => format!("Reapply \"{rest}"),
        _ => format!("Revert \"{subject}\""),
    };
    message.push_str("\n\nThis reverts commit ");
    message.push_str(original_id);
    if let Some(parent) = mainline_parent {
        message.push_str(", reversing\nchanges made to ");
        message.push_str(parent);
    }
    message.push_str(".\n");
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1e0b5d4c6a8f7e9d0c1b2a3f4e5d6c7b8a";
    const PARENT: &str = "1111111111111111111111111111111111111111";

    #[test]
    fn plain_commit() {
        assert_eq!(
            revert_message("Add claim list pagination\n\nLong body.\n", ID, None),
            format!("Revert \"Add claim list pagination\"\n\nThis reverts commit {ID}.\n")
        );
    }

    #[test]
    fn merge_commit_names_the_mainline_parent() {
        assert_eq!(
            revert_message("Merge branch 'feature'\n", ID, Some(PARENT)),
            format!(
                "Revert \"Merge branch 'feature'\"\n\nThis reverts commit {ID}, reversing\nchanges made to {PARENT}.\n"
            )
        );
    }

    #[test]
    fn revert_of_a_revert_is_a_reapply_but_not_deeper() {
        assert_eq!(
            subject(&revert_message("Revert \"Add x\"\n\nThis reverts commit a.\n", ID, None)),
            "Reapply \"Add x\""
        );
        assert_eq!(
            subject(&revert_message("Revert \"Revert \"Add x\"\"\n", ID, None)),
            "Revert \"Revert \"Revert \"Add x\"\"\""
        );
    }

    #[test]
    fn subject_is_the_first_non_blank_line_only() {
        assert_eq!(subject("\n  \nFix a\nand b\n\nbody"), "Fix a");
        assert_eq!(subject(""), "");
        assert_eq!(subject("\x0c\nPaginate\n"), "\x0c", "a form feed is not blank to git");
        assert_eq!(subject("\u{a0}\nPaginate\n"), "\u{a0}");
    }

    /// `git revert --no-edit` of a commit whose message is `message`, in a throwaway repo: the
    /// revert's message as git wrote it, and the original's id.
    fn git_revert(message: &str) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=T", "-c", "user.email=t@rollout.invalid", "-c", "commit.gpgsign=false"])
                .args(args)
                .current_dir(dir.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        git(&["init", "-q", "-b", "main"]);
        std::fs::write(dir.path().join("f"), "a\n").unwrap();
        git(&["add", "f"]);
        git(&["commit", "-q", "-m", "base"]);
        std::fs::write(dir.path().join("f"), "b\n").unwrap();
        std::fs::write(dir.path().join("message"), message).unwrap();
        git(&["commit", "-q", "-a", "--cleanup=verbatim", "-F", "message"]);
        let id = git(&["rev-parse", "HEAD"]).trim().to_string();
        git(&["revert", "--no-edit", "HEAD"]);
        (git(&["log", "-1", "--format=%B"]), id)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// The message is git's own for any message a commit may have: blank lines first,
        /// quotes, a `Revert "` subject, tabs, non-ASCII.
        #[test]
        fn the_message_is_the_one_git_revert_writes(
            blank in proptest::sample::select(vec!["", "\n", " \n\t\n"]),
            subject in "(Revert \"){0,2}[A-Za-z0-9 \"'é→_.:-]{1,30}",
            body in proptest::option::of("[A-Za-z0-9 \n]{0,40}"),
        ) {
            let message = match &body {
                Some(body) => format!("{blank}{subject}\n\n{body}\n"),
                None => format!("{blank}{subject}\n"),
            };
            let (theirs, id) = git_revert(&message);
            // git log prints the message with one newline more at its end.
            proptest::prop_assert_eq!(format!("{}\n", revert_message(&message, &id, None)), theirs);
        }
    }
}
