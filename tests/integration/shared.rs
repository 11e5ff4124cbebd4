//! The shared state on the real PostgreSQL of scripts/services: two engineers' runs, each with
//! its own HOME, state folder, clone and hostname (a UTS namespace), one lock and one journal.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::background::Background;
use crate::support::{Env, Outcome};

const NEEDS: &str = "ROLLOUT_TEST_STATE_URL is not set: run scripts/test (scripts/services makes the database)";
const CRITICAL: [&str; 4] = ["incident", "--severity", "critical", "--yes"];

fn url() -> String {
    std::env::var("ROLLOUT_TEST_STATE_URL").expect(NEEDS)
}

/// A schema of its own for each test, so that tests share the database, never its tables.
fn schema(test: &str) -> String {
    format!("t_{}_{}", test, std::process::id())
}

/// One engineer's workspace on the team's shared state (schema `schema`), as `user`.
fn engineer(schema: &str, user: &str) -> Env {
    let env = Env::new().var("ROLLOUT_STATE_URL", &url()).var("USER", user);
    let config = env.read("rollout.yaml");
    env.write(
        "rollout.yaml",
        &format!("{config}state: {{ backend: postgres, url_env: ROLLOUT_STATE_URL, schema: {schema} }}\n"),
    );
    env
}

/// `env`'s command run on a machine named `host`: a UTS namespace of its own (root only).
fn on_host(env: &Env, host: &str, args: &[&str]) -> Command {
    let inner = env.command(args);
    let mut command = Command::new("unshare");
    command.args(["--uts", "sh", "-c", &format!("hostname {host} && exec \"$0\" \"$@\"")]);
    command.arg(inner.get_program()).args(inner.get_args());
    command.env_clear().envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))));
    command.current_dir(inner.get_current_dir().unwrap());
    command
}

fn run_on(env: &Env, host: &str, args: &[&str]) -> Outcome {
    Outcome::from(on_host(env, host, args).stdin(Stdio::null()).output().unwrap())
}

/// The newest journal's events, none before there is one.
fn events(env: &Env) -> Vec<serde_json::Value> {
    if env.state_dir().join("runs").read_dir().is_ok_and(|mut d| d.next().is_some()) {
        env.journal()
    } else {
        Vec::new()
    }
}

/// Wait until `done`, at most 30 s.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "not in 30 s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs postgres: run scripts/test"]
fn the_lock_is_the_teams_and_a_killed_holders_lock_goes_with_its_connection() {
    let schema = schema("lock");
    let (ann, bob) = (engineer(&schema, "ann"), engineer(&schema, "bob"));
    // A third machine watches the team's runs from before the first starts.
    let mut team = Background::spawn(on_host(&bob, "bob-desktop", &["watch"]));
    team.wait_for_stderr("the team's runs as they start and end");
    let mut first = Background::spawn({
        let mut command = on_host(&ann, "ann-laptop", &["incident", "--severity", "critical"]);
        command.env("ROLLOUT_FORCE_INTERACTIVE", "1");
        command
    });
    first.wait_for_stderr("[y]es / [s]kip / [a]bort / [d]etails");
    let refused = run_on(&bob, "bob-laptop", &CRITICAL);
    refused.code(5);
    assert!(refused.stderr.contains("is locked in the shared state by run "), "{}", refused.stderr);
    assert!(refused.stderr.contains("by ann@ann-laptop (pid "), "{}", refused.stderr);
    let journal = bob.journal();
    assert_eq!(journal.last().unwrap()["status"], "lock_refused");
    let held = run_on(&bob, "bob-laptop", &["unlock", "critical", "--yes"]);
    held.code(5);
    assert!(held.stderr.contains("unlock removes only a lock no connection holds"), "{}", held.stderr);

    // kill -9: the connection goes, and the lock with it; its holder row is left, which
    // unlock removes (journaled), so the next run takes nothing over.
    first.kill_hard();
    let removed = run_on(&bob, "bob-laptop", &["unlock", "critical", "--yes"]);
    removed.code(0);
    assert!(removed.stderr.contains("The lock of runbook critical names run "), "{}", removed.stderr);
    assert!(removed.stderr.contains("removed the lock of runbook critical"), "{}", removed.stderr);
    assert_eq!(count(&format!("SELECT count(*) FROM {schema}.locks")), 0);
    let unlocked = count(&format!("SELECT count(*) FROM {schema}.events WHERE event = 'lock_broken'"));
    assert_eq!(unlocked, 1, "the unlock is in the shared journal");
    let started = Instant::now();
    let taken = run_on(&bob, "bob-laptop", &CRITICAL);
    taken.code(0);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(!taken.stderr.contains("took over"), "{}", taken.stderr);

    // The team's watcher saw the runs start and end.
    eventually("the watcher saw bob's run end", || team.stdout().contains("ended: succeeded (exit 0)"));
    let seen = team.stdout();
    assert!(seen.contains("of runbook critical started by ann@ann-laptop"), "{seen}");
    assert!(seen.contains("of runbook critical started by bob@bob-laptop"), "{seen}");
    assert!(seen.contains("ended: lock_refused (exit 5)"), "{seen}");
    team.interrupt();
}

#[test]
#[ignore = "needs postgres: run scripts/test"]
fn a_run_killed_on_one_machine_is_resumed_on_another_without_a_second_deploy_and_watched() {
    let schema = schema("resume");
    let (ann, bob) = (engineer(&schema, "ann"), engineer(&schema, "bob"));
    let mut first = Background::spawn({
        let mut command = on_host(&ann, "ann-laptop", &CRITICAL);
        command.env("ROLLOUT_REHEARSAL_DEPLOY_SECONDS", "30");
        command
    });
    first.wait_for_stderr("deploy-fix");
    eventually("the deploy triggered", || events(&ann).iter().any(|e| e["event"] == "step_triggered"));
    let run = ann.journal()[0]["run_id"].as_str().unwrap().to_string();
    first.kill_hard();

    // Bob's machine has no journal of it: `runs` shows it from the shared journal.
    let listed = run_on(&bob, "bob-laptop", &["runs"]);
    listed.code(0);
    assert!(listed.stdout.contains(&run), "{}", listed.stdout);
    let story = run_on(&bob, "bob-laptop", &["runs", &run]);
    assert!(story.stdout.contains("ann@ann-laptop"), "{}", story.stdout);

    // While Ann holds the lock with another run, Bob's resume is refused and writes nothing.
    let mut holding = Background::spawn({
        let mut command = on_host(&ann, "ann-laptop", &["incident", "--severity", "critical"]);
        command.env("ROLLOUT_FORCE_INTERACTIVE", "1");
        command
    });
    holding.wait_for_stderr("[y]es / [s]kip / [a]bort / [d]etails");
    let events_of = |run: &str| count(&format!("SELECT count(*) FROM {schema}.events WHERE run_id = '{run}'"));
    let before = events_of(&run);
    let refused = run_on(&bob, "bob-laptop", &["resume", &run, "--yes"]);
    refused.code(5);
    assert_eq!(events_of(&run), before, "a refused resume adds nothing to the run's journal");
    holding.kill_hard();

    // Bob watches from his machine while he resumes it on another shell.
    let watcher = Background::spawn(on_host(&bob, "bob-desktop", &["watch", &run]));
    let resumed = run_on(&bob, "bob-laptop", &["resume", &run, "--yes"]);
    // The deploy Ann's run started is followed or left to the operator, never started again.
    resumed.code(1);
    assert!(resumed.stderr.contains("took over the shared lock left by run "), "{}", resumed.stderr);
    assert!(resumed.stderr.contains("it is not triggered again"), "{}", resumed.stderr);
    let triggers =
        count(&format!("SELECT count(*) FROM {schema}.events WHERE run_id = '{run}' AND event = 'step_triggered'"));
    assert_eq!(triggers, 1);
    let local = std::fs::read_to_string(bob.state_dir().join(format!("runs/{run}.jsonl"))).unwrap();
    let shared = count(&format!("SELECT count(*) FROM {schema}.events WHERE run_id = '{run}'"));
    assert_eq!(shared, local.lines().count() as i64, "the shared journal has every event of both machines");
    eventually("the watcher saw the resume", || watcher.stdout().contains("resumed by bob@bob-laptop"));
    let shown = watcher.stdout();
    assert!(shown.contains("Step 1/4 · disable · flag"), "{shown}");
    assert!(shown.contains("started by ann@ann-laptop"), "{shown}");
    watcher.interrupt();
}

#[test]
#[ignore = "needs postgres: run scripts/test"]
fn a_wrong_password_is_exit_3_never_printed_and_a_newer_schema_is_refused() {
    let schema = schema("refusals");
    let ann = engineer(&schema, "ann");
    let wrong = url().replacen("rollout:", "rollout:not-the-password-", 1);
    let out = ann.run_with(&CRITICAL, &[("ROLLOUT_STATE_URL", &wrong)]);
    out.code(3);
    assert!(out.stderr.contains("refused the login"), "{}", out.stderr);
    assert!(out.stderr.contains("check ROLLOUT_STATE_URL"), "{}", out.stderr);
    assert!(!out.stderr.contains("not-the-password") && !ann.journal_text().contains("not-the-password"));

    let migrated = ann.run(&["state", "migrate"]);
    migrated.code(0);
    assert!(migrated.stderr.contains("is at version 2 (it was at 0)"), "{}", migrated.stderr);
    let again = ann.run(&["state", "migrate"]);
    assert!(again.stderr.contains("is at version 2: nothing to do"), "{}", again.stderr);

    // A schema an older rollout made (version 1: no approvals) is brought up to date.
    let older = format!("{schema}_v1");
    psql(&format!(
        "CREATE SCHEMA {older};
         CREATE TABLE {older}.schema_version (version integer NOT NULL);
         INSERT INTO {older}.schema_version VALUES (1);
         CREATE TABLE {older}.events (run_id text NOT NULL, seq integer NOT NULL, ts timestamptz NOT NULL,
             event text NOT NULL, host text NOT NULL, line text NOT NULL, PRIMARY KEY (run_id, seq));
         CREATE TABLE {older}.locks (runbook text PRIMARY KEY, lock_key bigint NOT NULL, run_id text NOT NULL,
             user_name text NOT NULL, host text NOT NULL, pid integer NOT NULL, started timestamptz NOT NULL,
             heartbeat timestamptz NOT NULL)"
    ));
    let old = engineer(&older, "ann");
    let upgraded = old.run(&["state", "migrate"]);
    assert!(upgraded.stderr.contains("is at version 2 (it was at 1)"), "{}", upgraded.stderr);
    assert_eq!(count(&format!("SELECT count(*) FROM {older}.approvals")), 0);

    psql(&format!("INSERT INTO {schema}.schema_version VALUES (99)"));
    let newer = ann.run(&CRITICAL);
    newer.code(3);
    assert!(newer.stderr.contains("is at version 99, made by a newer rollout"), "{}", newer.stderr);
}

/// A count from the test database.
fn count(sql: &str) -> i64 {
    let mut client = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    client.query_one(sql, &[]).unwrap().get(0)
}

/// One statement on the test database.
fn psql(sql: &str) {
    let mut client = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    client.batch_execute(sql).unwrap();
}

#[test]
#[ignore = "needs postgres: run scripts/test"]
fn a_database_restarted_mid_run_loses_nothing_and_one_that_stays_down_stops_the_run_for_state_sync() {
    use crate::support::postgres::Cluster;
    let mut cluster = Cluster::start();
    let ann = Env::new().var("ROLLOUT_STATE_URL", &cluster.url()).var("USER", "ann");
    let config = ann.read("rollout.yaml");
    ann.write(
        "rollout.yaml",
        &format!("{config}state: {{ backend: postgres, url_env: ROLLOUT_STATE_URL, schema: team, patience: 20s }}\n"),
    );
    let shared_count = |cluster: &Cluster, run: &str| -> i64 {
        let mut client = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
        client.query_one("SELECT count(*) FROM team.events WHERE run_id = $1", &[&run]).unwrap().get(0)
    };

    // Restarted while the deploy runs: the run keeps its lock, and the shared journal catches up.
    let mut command = ann.command(&CRITICAL);
    command.env("ROLLOUT_REHEARSAL_DEPLOY_SECONDS", "12");
    let first = Background::spawn(command);
    eventually("the deploy triggered", || events(&ann).iter().any(|e| e["event"] == "step_triggered"));
    cluster.down();
    std::thread::sleep(Duration::from_secs(1));
    cluster.up();
    // The run took its lock back on a new connection while its deploy went on.
    let mut holder = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    eventually("the lock taken back", || {
        let held: i64 = holder
            .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted", &[])
            .unwrap()
            .get(0);
        held == 1
    });
    let out = first.finish(Duration::from_secs(90));
    out.code(0);
    let run = ann.journal()[0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(shared_count(&cluster, &run), ann.journal().len() as i64, "{}", out.stderr);

    // Down for longer than `patience`: the run stops before its next step, its local journal
    // complete; once the database is back, `state sync` sends what the shared one lacks.
    ann.sandbox.write_flags(&[crate::support::FLAG.to_string()]).unwrap();
    let mut command = ann.command(&CRITICAL);
    command.env("ROLLOUT_REHEARSAL_DEPLOY_SECONDS", "2");
    let second = Background::spawn(command);
    eventually("the second deploy triggered", || {
        ann.journal().iter().filter(|e| e["event"] == "step_triggered").count() == 1
            && ann.journal()[0]["run_id"] != run.as_str()
    });
    cluster.down();
    let out = second.finish(Duration::from_secs(90));
    out.code(1);
    assert!(
        out.stderr
            .contains("could not be reached for 20 s: this run stops before step reenable, its local journal complete"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("`rollout state sync` sends the shared journal the"), "{}", out.stderr);
    let stopped = ann.journal()[0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(ann.journal().last().unwrap()["event"], "run_finished");
    cluster.up();
    assert!(shared_count(&cluster, &stopped) < ann.journal().len() as i64);
    let synced = ann.run(&["state", "sync"]);
    synced.code(0);
    assert!(synced.stderr.contains("sent "), "{}", synced.stderr);
    assert_eq!(shared_count(&cluster, &stopped), ann.journal().len() as i64);
}

/// A runbook `gated` whose one step turns the flag off once another engineer approved it.
fn gated(env: Env) -> Env {
    let runbook = format!(
        "version: 1\ntitle: Gated\nsteps:\n  - id: off\n    name: Turn it off\n    approval: {{ min: 1 }}\n    flag: {{ name: {}, state: off }}\n",
        crate::support::FLAG
    );
    env.runbook("gated", &runbook)
}

#[test]
#[ignore = "needs postgres: run scripts/test"]
fn a_step_acts_once_a_second_engineer_approved_its_plan_and_an_approval_binds_to_its_digest() {
    let schema = schema("approve");
    let (ann, bob) = (gated(engineer(&schema, "ann")), gated(engineer(&schema, "bob")));
    let mut waiting = Background::spawn(on_host(&ann, "ann-laptop", &["run", "gated", "--yes"]));
    waiting.wait_for_stderr("waiting for 1 other engineer(s) to approve plan ");
    let run = ann.journal()[0]["run_id"].as_str().unwrap().to_string();
    let first = ann.journal().into_iter().find(|e| e["event"] == "approval_requested").unwrap();

    // Ann cannot approve her own run.
    let own = run_on(&ann, "ann-laptop", &["approve", &run, "--yes"]);
    own.code(4);
    assert!(own.stderr.contains("needs another engineer's (allow_self: false)"), "{}", own.stderr);

    // The flag moves before Bob approves: his approval is of what it was, and is asked again.
    let mut flags: serde_json::Value = serde_json::from_str(&ann.read("flags.json")).unwrap();
    flags["flags"][crate::support::FLAG]["targeting"] = serde_json::json!({ "fractional": [["on", 50], ["off", 50]] });
    ann.write("flags.json", &flags.to_string());
    let approved = run_on(&bob, "bob-laptop", &["approve", &run, "--yes"]);
    approved.code(0);
    assert!(
        approved.stderr.contains("asks one engineer for approval of step off (asked by ann@ann-laptop)"),
        "{}",
        approved.stderr
    );
    assert!(
        approved.stderr.contains(&format!("plan digest {}", first["digest"].as_str().unwrap())),
        "{}",
        approved.stderr
    );
    assert!(approved.stderr.contains("now:   on, 100%"), "{}", approved.stderr);
    waiting.wait_for_stderr("it changed since it was approved");
    // Asked again, once the new request is in the shared journal.
    eventually("the second request", || waiting.stderr().matches("waiting for 1 other engineer(s)").count() == 2);
    let second = ann.journal().into_iter().filter(|e| e["event"] == "approval_requested").nth(1).unwrap();
    assert_ne!(second["digest"], first["digest"], "the plan changed, and so did its digest");
    let again = run_on(&bob, "bob-laptop", &["approve", &run, "--yes"]);
    again.code(0);
    assert!(again.stderr.contains("now:   on, 50%"), "{}", again.stderr);

    let out = waiting.finish(Duration::from_secs(60));
    out.code(0);
    let journal = ann.journal();
    let approvals: Vec<&serde_json::Value> = journal.iter().filter(|e| e["event"] == "step_approved").collect();
    assert_eq!(approvals.len(), 2);
    assert_eq!(approvals[1]["by"], serde_json::json!(["bob@bob-laptop"]));
    assert_eq!(approvals[1]["digest"], second["digest"]);
    assert_eq!(ann.flag()["defaultVariant"], "off");
    let schema_check = super::contract::schema();
    for event in &journal {
        assert!(schema_check.is_valid(event), "{event}");
    }
    let timeline = run_on(&bob, "bob-laptop", &["timeline", &run]);
    assert!(timeline.stdout.contains("step off approved by bob@bob-laptop"), "{}", timeline.stdout);
}

#[test]
#[ignore = "needs postgres: run scripts/test"]
fn a_rejected_step_does_not_act_and_break_glass_is_journaled_loudly() {
    let schema = schema("reject");
    let (ann, bob) = (gated(engineer(&schema, "ann")), gated(engineer(&schema, "bob")));
    let mut waiting = Background::spawn(on_host(&ann, "ann-laptop", &["run", "gated", "--yes"]));
    waiting.wait_for_stderr("waiting for 1 other engineer(s)");
    let run = ann.journal()[0]["run_id"].as_str().unwrap().to_string();
    let rejected = run_on(&bob, "bob-laptop", &["reject", &run, "--reason", "the error spike is a dashboard bug"]);
    rejected.code(0);
    let out = waiting.finish(Duration::from_secs(60));
    out.code(4);
    assert!(out.stderr.contains("rejected by bob@bob-laptop: the error spike is a dashboard bug"), "{}", out.stderr);
    assert_eq!(ann.flag()["defaultVariant"], "on", "nothing was written");

    let glass =
        run_on(&ann, "ann-laptop", &["run", "gated", "--yes", "--break-glass", "bob is unreachable, errors at 40%"]);
    glass.code(0);
    assert!(
        glass.stderr.contains("BREAK GLASS: step off needs 1 approval(s) and acts without them"),
        "{}",
        glass.stderr
    );
    let overridden = ann.journal().into_iter().find(|e| e["event"] == "approval_overridden").unwrap();
    assert_eq!(overridden["reason"], "bob is unreachable, errors at 40%");
    assert_eq!(overridden["by"], "ann@ann-laptop");
}

#[test]
fn a_step_that_needs_approval_on_local_state_is_refused_before_anything_runs() {
    let env = gated(Env::new());
    let out = env.run(&["run", "gated", "--yes"]);
    out.code(2);
    assert!(
        out.stderr.contains(
            "steps[0].approval: step `off` needs approval, which another engineer gives through a shared state backend"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(env.flag()["defaultVariant"], "on");
}

#[test]
#[ignore = "needs postgres: run scripts/test"]
fn two_machines_in_network_namespaces_share_the_lock_over_a_link_and_a_cut_link_frees_it() {
    use crate::support::netns::Link;
    use crate::support::postgres::Cluster;
    assert!(nix::unistd::Uid::effective().is_root(), "network namespaces need root: run scripts/test as root");
    let (ann_link, bob_link) = (Link::new("a", 0), Link::new("b", 1));
    let cluster = Cluster::listening(&[&ann_link.host_ip, &bob_link.host_ip]);
    let machine = |user: &str, link: &Link| {
        let env = Env::new().var("ROLLOUT_STATE_URL", &cluster.url_at(&link.host_ip)).var("USER", user);
        let config = env.read("rollout.yaml");
        env.write(
            "rollout.yaml",
            &format!("{config}state: {{ backend: postgres, url_env: ROLLOUT_STATE_URL, schema: team }}\n"),
        );
        env
    };
    let (ann, bob) = (machine("ann", &ann_link), machine("bob", &bob_link));
    let mut holder = Background::spawn({
        let mut command = ann_link.wrap(&on_host(&ann, "ann-laptop", &["incident", "--severity", "critical"]));
        command.env("ROLLOUT_FORCE_INTERACTIVE", "1");
        command
    });
    holder.wait_for_stderr("[y]es / [s]kip / [a]bort / [d]etails");
    let bob_runs = |args: &[&str]| {
        Outcome::from(bob_link.wrap(&on_host(&bob, "bob-laptop", args)).stdin(Stdio::null()).output().unwrap())
    };
    let refused = bob_runs(&CRITICAL);
    refused.code(5);
    assert!(refused.stderr.contains("by ann@ann-laptop (pid "), "{}", refused.stderr);
    assert!(refused.stderr.contains(&format!("on {}:", bob_link.host_ip)), "{}", refused.stderr);

    // Ann's laptop loses its network: nothing tells the server, until its keepalives give up.
    ann_link.cut();
    let cut = Instant::now();
    let taken = loop {
        let out = bob_runs(&CRITICAL);
        if out.code != 5 {
            break out;
        }
        assert!(cut.elapsed() < Duration::from_secs(60), "the lock was still held a minute after the cut");
        std::thread::sleep(Duration::from_millis(500));
    };
    taken.code(0);
    assert!(taken.stderr.contains("took over the shared lock left by run "), "{}", taken.stderr);
    eprintln!("the lock was free {:?} after the link was cut", cut.elapsed());
    drop(holder.kill_hard());
}
