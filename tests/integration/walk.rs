//! Walking the shipped runbooks: rehearse, --yes, dry runs.

use crate::support::{Env, FLAG};

#[test]
fn rehearse_critical_turns_the_flag_off_deploys_and_reenables_at_five_percent() {
    let env = Env::new();
    let out = env.run(&["rehearse", "--severity", "critical", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains(&format!("flag {FLAG}: on, 100% -> on, 5%")), "{}", out.stderr);
    assert!(out.stderr.contains("remote main: ") && out.stderr.contains("(unchanged)"), "{}", out.stderr);
    assert!(out.stderr.contains("pipeline deploy.yml: deployed main"), "{}", out.stderr);
}

#[test]
fn dry_run_changes_nothing_and_asks_nothing() {
    let env = Env::new();
    let before = env.fingerprint();
    let commit = env.sandbox.offending.to_string();
    for args in [
        vec!["incident", "--severity", "critical", "--dry-run"],
        vec!["incident", "--severity", "high", "--dry-run", "--var", &format!("commit={commit}")],
        vec!["incident", "--severity", "low", "--dry-run"],
    ] {
        let out = env.run(&args);
        out.code(0);
        assert!(out.stderr.contains("Dry run passed"), "{}", out.stderr);
    }
    assert_eq!(env.fingerprint(), before);
}
