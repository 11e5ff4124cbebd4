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
}
