//! Walking the shipped runbooks: rehearse, --yes, dry runs.

use crate::support::{Env, FLAG};

#[test]
fn rehearse_critical_turns_the_flag_off_deploys_and_reenables_at_five_percent() {
    let env = Env::new();
    let out = env.run(&["rehearse", "--severity", "critical", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains(&format!("flag {FLAG}: on, 100% -> on, 5%")), "{}", out.stderr);
    assert!(out.stderr.contains("remote main: ") && out.stderr.contains("(unchanged)"), "{}", out.stderr);
    assert!(out.stderr.contains("pipeline deploy.yml (step deploy-fix): success at "), "{}", out.stderr);
    assert_eq!(env.read("deployments.log"), "", "rehearse works in its own sandbox, not the current workspace");
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

#[test]
fn rehearse_high_reverts_the_offending_commit_on_the_sandbox_remote() {
    let env = Env::new();
    let out = env.run(&["rehearse", "--severity", "high", "--yes", "--keep"]);
    out.code(0);
    assert!(out.stderr.contains(&format!("flag {FLAG}: on, 100% -> on, 50%")), "{}", out.stderr);
    assert!(out.stderr.contains("(1 new commit: Revert \"Add claim list pagination\")"), "{}", out.stderr);
    assert_eq!(out.stderr.matches(": success at ").count(), 2, "{}", out.stderr);
    let kept = out.stderr.lines().find_map(|l| l.trim().strip_prefix("sandbox kept at ")).expect("kept path");
    let kept = std::path::PathBuf::from(kept.split(' ').next().unwrap());
    let log = std::fs::read_to_string(kept.join("deployments.log")).unwrap();
    assert_eq!(log, "deploy.yml main\ndeploy.yml main\n");
    std::fs::remove_dir_all(kept).unwrap();
}
