//! The read-back views of the journal: `rollout runs` (live or crashed, dry runs hidden),
//! `rollout runs RUN` (one run's story) and `rollout timeline RUN...` (the postmortem record).

use serde_json::Value;

use crate::support::{Env, Outcome};

/// Patterns that change from run to run, each with what it is shown as; run ids first.
const REDACTIONS: [(&str, &str); 11] = [
    (r"\d{8}T\d{6}Z-[a-z0-9-]+-[0-9a-f]{4}", "[RUN_ID]"),
    (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[TIMESTAMP]"),
    (r"\d{4}-\d{2}-\d{2}", "[DATE]"),
    (r"\b\d{2}:\d{2}:\d{2}\b", "[TIME]"),
    (r"\b\d+(\.\d+)? (msecs?|secs?|mins?|hrs?)( \d+(\.\d+)? (msecs?|secs?|mins?))*", "[DURATION]"),
    (r#""(duration_ms|after_ms|time_to_mitigate_ms)": \d+"#, r#""$1": "[MS]""#),
    (r"\brun \d+\b", "run [CI_RUN]"),
    (r"\b[0-9a-f]{12}\b", "[COMMIT]"),
    (r"\b[0-9a-f]{7}\b", "[SHORT_COMMIT]"),
    (r"/tmp/[^\s'`\x22)|]*", "[TMP]"),
    (r"\b[A-Za-z0-9._-]+@[A-Za-z0-9._-]+\b", "[USER@HOST]"),
];

fn assert_redacted(name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in REDACTIONS {
        settings.add_filter(pattern, replacement);
    }
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

const CRITICAL: [&str; 4] = ["incident", "--severity", "critical", "--yes"];

/// The id of the newest run.
fn newest_run(env: &Env) -> String {
    env.journal()[0]["run_id"].as_str().unwrap().to_string()
}

/// Write `<state dir>/runs/<run>.jsonl`; `lines` are events without `run_id`, each with its `ts`.
fn write_journal(env: &Env, run: &str, lines: &[String]) {
    let dir = env.state_dir().join("runs");
    std::fs::create_dir_all(&dir).unwrap();
    let text: String = lines.iter().map(|l| format!("{{\"run_id\":\"{run}\",{l}}}\n")).collect();
    std::fs::write(dir.join(format!("{run}.jsonl")), text).unwrap();
}

/// `time` on 2026-12-02, UTC.
fn day(time: &str) -> String {
    format!("2026-12-02T{time}Z")
}

/// A `run_started` of `runbook` at `time` (on 2026-12-02, UTC) by `user@box`, with `extra` fields.
fn started(time: &str, runbook: &str, user: &str, extra: &str) -> String {
    started_at(&day(time), runbook, user, extra)
}

fn started_at(ts: &str, runbook: &str, user: &str, extra: &str) -> String {
    format!(
        r#""event":"run_started","ts":"{ts}","runbook":"{runbook}","severity":null,"dry_run":false,"inputs":{{}},"runbook_path":"/w/{runbook}.yaml","runbook_sha256":"00","config_path":"/w/rollout.yaml","config_sha256":null,"user":"{user}","host":"box","version":"0.1.0","from":null{extra}"#
    )
}

fn event(time: &str, body: &str) -> String {
    format!(r#""ts":"{}",{body}"#, day(time))
}

fn step(time: &str, id: &str, index: usize, total: usize, kind: &str) -> String {
    event(time, &format!(r#""event":"step_started","step":"{id}","index":{index},"total":{total},"kind":"{kind}""#))
}

fn preview(time: &str, id: &str, before: &str, after: &str, reach: &str) -> String {
    event(
        time,
        &format!(
            r#""event":"step_preview","step":"{id}","before":{{"summary":"{before}"}},"after":{{"summary":"{after}"}},"reach":"{reach}""#
        ),
    )
}

fn succeeded(time: &str, id: &str, outputs: &str) -> String {
    event(time, &format!(r#""event":"step_succeeded","step":"{id}","outputs":{outputs},"duration_ms":1000"#))
}

fn finished(time: &str, status: &str, code: i32) -> String {
    event(time, &format!(r#""event":"run_finished","status":"{status}","exit_code":{code}"#))
}

/// A one-step run that turns the flag off 2 min 14 s after it started.
fn one_step(env: &Env, run: &str) {
    write_journal(
        env,
        run,
        &[
            started("03:12:09", "kill", "ann", ""),
            step("03:12:10", "off", 1, 1, "flag"),
            preview("03:12:11", "off", "on, 100%", "off", "fewer"),
            event("03:12:12", r#""event":"step_confirmed","step":"off","by":"operator""#),
            succeeded("03:14:23", "off", r#"{"before":"on, 100%","after":"off","changed":"true"}"#),
            finished("03:14:24", "succeeded", 0),
        ],
    );
}

fn runs(env: &Env, args: &[&str]) -> Outcome {
    env.run(&[&["runs"], args].concat())
}

fn timeline_json(env: &Env, runs: &[&str]) -> Value {
    let out = env.run(&[&["timeline", "--format", "json"], runs].concat());
    out.code(0);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// The table's row of `run`, as cells split on runs of two spaces or more.
fn row_of(out: &Outcome, run: &str) -> Vec<String> {
    let line = out.stdout.lines().find(|l| l.starts_with(run)).unwrap_or_else(|| panic!("no {run}: {out:?}"));
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()
}

// ---------------------------------------------------------------------------------------------
// rollout runs

#[test]
fn runs_hides_dry_runs_unless_all_and_says_how_many() {
    let env = Env::new();
    env.run(&CRITICAL).code(0);
    let real = newest_run(&env);
    env.run(&["incident", "--severity", "critical", "--dry-run"]).code(0);
    let dry = newest_run(&env);
    assert_ne!(real, dry);

    let out = runs(&env, &[]);
    out.code(0);
    let header = out.stdout.lines().next().unwrap();
    let columns: Vec<&str> = header.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(columns, ["RUN", "RUNBOOK", "WHO", "STARTED (UTC)", "DURATION", "STATUS", "STEP REACHED"]);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    let row = row_of(&out, &real);
    assert_eq!((row[1].as_str(), row[5].as_str(), row[6].as_str()), ("critical", "succeeded", "4/4 reenable"));
    assert!(row[2].contains('@') && row[3].len() == "2026-12-02 03:12:09".len(), "{row:?}");
    assert!(out.stderr.contains("1 dry run not shown; `rollout runs --all` shows them"), "{}", out.stderr);

    let all = runs(&env, &["--all"]);
    assert_eq!(all.stdout.lines().count(), 3, "{}", all.stdout);
    assert!(row_of(&all, &dry)[5].contains("(dry run)"), "{}", all.stdout);
    assert!(!all.stderr.contains("not shown"), "{}", all.stderr);
    let story = runs(&env, &[&dry]);
    assert!(story.stdout.contains("1/4 disable (flag): previewed (dry run); on, 5% -> off"), "{}", story.stdout);
    assert!(!story.stdout.contains("next:"), "a dry run has nothing to resume or undo: {}", story.stdout);
}

#[test]
fn runs_tells_a_live_run_from_a_crashed_one() {
    let env = Env::new();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let locks = env.state_dir().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    // The OS lock says whether a run is going; its pid may name anything by now (0005: this
    // live process, but nothing holds the lock).
    let holders = [
        ("x", std::process::id(), host.as_str(), "20261202T031209Z-critical-0001", true),
        ("y", dead_pid, host.as_str(), "20261202T031209Z-critical-0002", false),
        ("z", 1, "elsewhere.example", "20261202T031209Z-critical-0004", true),
        ("w", std::process::id(), host.as_str(), "20261202T031209Z-critical-0005", false),
    ];
    let mut held = Vec::new();
    for (lock, pid, host, run, locked) in holders {
        let holder = serde_json::json!({"user": "ann", "host": host, "pid": pid, "started": "2026-12-02T03:12:09Z", "run_id": run});
        let path = locks.join(format!("{lock}-000000000000.lock"));
        std::fs::write(&path, holder.to_string()).unwrap();
        if locked {
            let file = std::fs::File::open(&path).unwrap();
            file.lock().unwrap();
            held.push(file);
        }
    }
    for (n, at) in
        [("0001", "03:12:09"), ("0002", "03:12:10"), ("0003", "03:12:11"), ("0004", "03:12:12"), ("0005", "03:12:13")]
    {
        write_journal(
            &env,
            &format!("20261202T031209Z-critical-{n}"),
            &[started(at, "critical", "ann", ""), step(at, "disable", 1, 4, "flag")],
        );
    }

    let out = runs(&env, &[]);
    out.code(0);
    let status = |n: &str| row_of(&out, &format!("20261202T031209Z-critical-{n}"))[5].clone();
    assert_eq!(status("0001"), "running");
    assert_eq!(status("0002"), "crashed");
    assert_eq!(status("0003"), "crashed", "no lock names it");
    assert_eq!(status("0004"), "running on elsewhere.example");
    assert_eq!(status("0005"), "crashed", "its pid is alive, but no process holds its lock");
    assert_eq!(row_of(&out, "20261202T031209Z-critical-0001")[6], "1/4 disable");

    let story = runs(&env, &["20261202T031209Z-critical-0002"]);
    story.code(0);
    let expected =
        "status    crashed (no process holds its lock; `rollout resume 20261202T031209Z-critical-0002` takes it up)";
    assert!(story.stdout.contains(expected), "{}", story.stdout);
    assert!(story.stdout.contains("1/4 disable (flag): running when it stopped"), "{}", story.stdout);
    assert!(story.stdout.contains("next: rollout resume 20261202T031209Z-critical-0002"), "{}", story.stdout);

    let json: Vec<Value> = runs(&env, &["--json"]).stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let states: Vec<&str> = json.iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["running", "crashed", "crashed", "running on elsewhere.example", "crashed"]);
    drop(held);
    assert!(json.iter().all(|r| r["status"].is_null()), "{json:?}");
}

// ---------------------------------------------------------------------------------------------
// rollout runs RUN

#[test]
fn runs_run_tells_a_real_runs_story() {
    let env = Env::new();
    env.run(&CRITICAL).code(0);
    let run = newest_run(&env);
    let out = runs(&env, &[&run[..20]]);
    out.code(0);
    assert!(out.stdout.contains(&format!("journal   {}", env.newest_journal().display())), "{}", out.stdout);
    assert_redacted("story", &out.stdout);

    let json = runs(&env, &["--json", &run]);
    json.code(0);
    let story: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(story["run_id"], run.as_str());
    let steps: Vec<(&str, &str, &str)> = story["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["result"].as_str().unwrap(), s["how"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("disable", "done", "yes-flag"),
            ("debug", "done", "yes-flag"),
            ("deploy-fix", "done", "yes-flag"),
            ("reenable", "done", "yes-flag")
        ]
    );
    assert_eq!(story["steps"][0]["before"], "on, 100%");
    assert_eq!(story["steps"][0]["after"], "off");
    assert_eq!(story["steps"][0]["reach"], "fewer");
    assert!(story["steps"][2]["pipeline_run"].as_str().is_some_and(|r| !r.is_empty()), "{story}");
    assert_eq!(story["mitigated"]["step"], "disable");
    assert_eq!(story["next"], serde_json::json!([format!("rollout undo {run}")]));
    assert_eq!(story["status"], "succeeded");
}

#[test]
fn runs_of_an_unknown_run_exits_2_and_names_the_folder() {
    let env = Env::new();
    env.run(&CRITICAL).code(0);
    let out = runs(&env, &["nope"]);
    out.code(2);
    let folder = env.state_dir().join("runs");
    let expected = format!("no run nope in {}; `rollout runs` lists them", folder.display());
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    env.run(&["timeline", "nope"]).code(2);
}

#[test]
fn a_torn_last_line_is_skipped_and_the_story_goes_on() {
    let env = Env::new();
    one_step(&env, "20261202T031209Z-kill-0001");
    let path = env.state_dir().join("runs/20261202T031209Z-kill-0001.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"run_id":"20261202T031209Z-kill-0001","ts":"2026-12-02T03:15:00Z","event":"step_sta"#);
    std::fs::write(&path, text).unwrap();
    let out = runs(&env, &["20261202T031209Z-kill-0001"]);
    out.code(0);
    assert!(out.stderr.contains("its last line was cut short"), "{}", out.stderr);
    assert!(
        out.stdout.contains("03:14:23  1/1 off (flag): done; on, 100% -> off  [by operator, 1.0 sec]"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("mitigated 2 mins 14 secs after the start, by off"), "{}", out.stdout);
}

/// A high run whose deploy failed, taken up again by bob with `--force`, the deploy retried.
fn resumed(env: &Env, run: &str) {
    write_journal(
        env,
        run,
        &[
            started("03:00:00", "high", "ann", ""),
            event("03:00:00", r#""event":"lock_taken_over","holder":"run r0 by ann@box (pid 7) since 02:00""#),
            step("03:00:01", "revert", 1, 2, "revert"),
            event("03:00:02", r#""event":"step_confirmed","step":"revert","by":"operator""#),
            succeeded("03:00:03", "revert", r#"{"commit":"0123456789abcdef0123456789abcdef01234567","branch":"main"}"#),
            step("03:00:04", "deploy", 2, 2, "ci"),
            event("03:00:05", r#""event":"step_confirmed","step":"deploy","by":"operator""#),
            event(
                "03:00:06",
                r#""event":"step_triggered","step":"deploy","pipeline_run":"41","url":"https://ci.example/41""#,
            ),
            event(
                "03:00:30",
                r#""event":"step_failed","step":"deploy","error":"run 41 failed: tests | lint\nsecond line""#,
            ),
            finished("03:00:31", "failed", 1),
            event(
                "03:10:00",
                r#""event":"run_resumed","user":"bob","host":"pc","version":"0.1.0","at":"deploy","forced":true,"drift":["flag changed"]"#,
            ),
            step("03:10:01", "deploy", 2, 2, "ci"),
            event("03:10:02", r#""event":"step_confirmed","step":"deploy","by":"yes-flag""#),
            event(
                "03:10:03",
                r#""event":"step_triggered","step":"deploy","pipeline_run":"42","url":"https://ci.example/42""#,
            ),
            succeeded("03:12:00", "deploy", r#"{"run_id":"42","url":"https://ci.example/42"}"#),
            finished("03:12:01", "succeeded", 0),
        ],
    );
}

#[test]
fn a_resumed_run_tells_both_attempts_the_resume_and_the_lock() {
    let env = Env::new();
    resumed(&env, "20261202T030000Z-high-0001");
    let out = runs(&env, &["20261202T030000Z-high-0001"]);
    out.code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let at = |needle: &str| {
        lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}: {}", out.stdout))
    };
    assert!(at("lock taken over from run r0") < at("1/2 revert"));
    assert!(at("run failed (exit 1)") < at("03:10:00  resumed by bob@pc at deploy (--force)"));
    assert!(at("drift: flag changed") < at("03:12:00  2/2 deploy (ci): done"));
    assert!(out.stdout.contains("https://ci.example/42"), "{}", out.stdout);
    assert!(out.stdout.contains("status    succeeded"), "{}", out.stdout);
    assert!(out.stdout.contains("mitigated 12 mins after the start, by deploy"), "{}", out.stdout);

    let timeline = timeline_json(&env, &["20261202T030000Z-high-0001"]);
    let rows = timeline["rows"].as_array().unwrap();
    let steps: Vec<&str> = rows.iter().map(|r| r["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["start", "lock", "1/2 revert", "2/2 deploy", "end", "resume", "2/2 deploy (attempt 2)", "end"]);
    assert_eq!(rows[6]["who"], "bob@pc (yes-flag)");
    assert_eq!(rows[3]["link"], "https://ci.example/41");
    assert_eq!(rows[2]["link"], "0123456789ab");
    assert_eq!(timeline["time_to_mitigate_ms"], 720_000);
    assert_eq!(timeline["errors"][0]["error"], "run 41 failed: tests | lint\nsecond line");
}

// ---------------------------------------------------------------------------------------------
// rollout timeline

#[test]
fn timeline_of_a_critical_run_markdown_and_json() {
    let env = Env::new();
    env.run(&CRITICAL).code(0);
    let run = newest_run(&env);
    let out = env.run(&["timeline", &run]);
    out.code(0);
    assert!(out.stdout.starts_with("# Postmortem: critical incident, 20"), "{}", out.stdout);
    assert!(out.stdout.contains("\n| Time (UTC) | Step | Who | What changed | Link |\n"), "{}", out.stdout);
    assert_redacted("timeline_critical", &out.stdout);

    let json = timeline_json(&env, &[&run]);
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "title",
            "summary",
            "time_to_mitigate_ms",
            "mitigated",
            "rows",
            "durations",
            "errors",
            "gates",
            "skipped",
            "went_well",
            "went_wrong",
            "questions"
        ]
    );
    assert_redacted("timeline_critical_json", &serde_json::to_string_pretty(&json).unwrap());
}

#[test]
fn time_to_mitigate_of_each_shipped_runbook() {
    let env = Env::new();
    let commit = format!("commit={}", env.sandbox.offending);
    let cases: [(&[&str], Option<&str>); 3] = [
        (&CRITICAL, Some("disable")),
        (&["incident", "--severity", "high", "--yes", "--var", &commit], Some("reduce")),
        (&["incident", "--severity", "low", "--yes"], None),
    ];
    for (args, mitigating) in cases {
        env.sandbox.write_flags(&[crate::support::FLAG.to_string()]).unwrap();
        env.run(args).code(0);
        let run = newest_run(&env);
        let json = timeline_json(&env, &[&run]);
        let markdown = env.run(&["timeline", &run]).stdout;
        match mitigating {
            Some(step) => {
                assert_eq!(json["mitigated"]["step"], step, "{args:?}: {json}");
                assert!(json["time_to_mitigate_ms"].as_u64().is_some_and(|ms| ms > 0), "{args:?}: {json}");
                assert!(markdown.contains(&format!("UTC: {step}, ")), "{markdown}");
            }
            None => {
                assert!(json["time_to_mitigate_ms"].is_null() && json["mitigated"].is_null(), "{json}");
                assert!(markdown.contains("Time to mitigate: not mitigated by these runs."), "{markdown}");
            }
        }
    }
}

#[test]
fn a_revert_mitigates_once_it_is_deployed() {
    let env = Env::new();
    let commit = format!("commit={}", env.sandbox.offending);
    // Skip the optional reduce step: only the revert and its deploy reduce exposure.
    env.answer(&["incident", "--severity", "high", "--var", &commit], "s\ny\ny\ny\ny\n").code(0);
    let run = newest_run(&env);
    let json = timeline_json(&env, &[&run]);
    assert_eq!(json["mitigated"]["step"], "deploy-revert", "{json}");
    assert_eq!(json["skipped"][0]["step"], "reduce", "{json}");
    assert_eq!(json["skipped"][0]["why"], "operator", "{json}");
    let revert = json["rows"].as_array().unwrap().iter().find(|r| r["step"] == "2/5 revert").unwrap();
    assert!(revert["what"].as_str().unwrap().contains("commit "), "{revert}");
}

#[test]
fn timeline_of_a_run_and_its_undo_merges_in_time_order() {
    let env = Env::new();
    env.run(&CRITICAL).code(0);
    let run = newest_run(&env);
    let start = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(60)).unwrap();
    let at = |s: i64| start.checked_add(jiff::SignedDuration::from_secs(s)).unwrap().to_string();
    let undo = "29991231T000000Z-critical-beef";
    let line = |s: i64, body: &str| format!(r#""ts":"{}",{body}"#, at(s));
    write_journal(
        &env,
        undo,
        &[
            started_at(&at(0), "critical", "bob", &format!(r#","purpose":{{"kind":"undo","run":"{run}"}}"#)),
            line(
                1,
                r#""event":"step_skipped","step":"deploy-fix","by":"rollout","reason":"a pipeline run cannot be taken back""#,
            ),
            line(2, r#""event":"step_started","step":"disable","index":1,"total":1,"kind":"flag""#),
            line(3, r#""event":"step_failed","step":"disable","error":"flagd refused""#),
            line(4, r#""event":"run_finished","status":"failed","exit_code":1"#),
        ],
    );
    // Given in reverse order, told in time order.
    let json = timeline_json(&env, &[undo, &run]);
    let rows = json["rows"].as_array().unwrap();
    let times: Vec<&str> = rows.iter().map(|r| r["time"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by_key(|t| t.parse::<jiff::Timestamp>().unwrap());
    assert_eq!(times, sorted);
    let runs: Vec<&str> = rows.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(runs.iter().position(|r| *r == undo), Some(6), "the critical run's 6 rows come first: {runs:?}");
    assert_eq!(json["summary"]["runs"][1]["runbook"], format!("undo of {run}"));
    assert_eq!(json["summary"]["status"], "failed");
    assert_eq!(json["mitigated"]["step"], "disable", "the critical run's flag off");
    assert_eq!(json["skipped"][0]["why"], "a pipeline run cannot be taken back");

    let markdown = env.run(&["timeline", &run, undo]).stdout;
    assert!(markdown.starts_with("# Postmortem: critical incident, "), "{markdown}");
    assert!(markdown.contains(&format!("Step disable of run {undo} failed: flagd refused")), "{markdown}");
    assert!(
        markdown.contains("- deploy-fix (run 29991231T000000Z-critical-beef): a pipeline run cannot be taken back")
    );
}

#[test]
fn timeline_of_two_overlapping_runs_interleaves_their_rows() {
    let env = Env::new();
    let (a, b) = ("20261202T030000Z-high-000a", "20261202T030200Z-low-000b");
    write_journal(
        &env,
        a,
        &[
            started("03:00:00", "high", "ann", ""),
            step("03:00:30", "one", 1, 2, "manual"),
            succeeded("03:01:00", "one", "{}"),
            step("03:04:30", "two", 2, 2, "manual"),
            succeeded("03:05:00", "two", "{}"),
            finished("03:06:00", "succeeded", 0),
        ],
    );
    write_journal(
        &env,
        b,
        &[
            started("03:02:00", "low", "bob", ""),
            step("03:02:30", "only", 1, 1, "manual"),
            succeeded("03:03:00", "only", "{}"),
            finished("03:04:00", "succeeded", 0),
        ],
    );
    let json = timeline_json(&env, &[b, a]);
    let rows: Vec<(&str, &str)> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["run_id"].as_str().unwrap().rsplit('-').next().unwrap(), r["step"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [
            ("000a", "start"),
            ("000a", "1/2 one"),
            ("000b", "start"),
            ("000b", "1/1 only"),
            ("000b", "end"),
            ("000a", "2/2 two"),
            ("000a", "end")
        ]
    );
    assert_eq!(json["title"], "Postmortem: high, low incident, 2026-12-02");
    assert!(json["time_to_mitigate_ms"].is_null(), "manual steps reduce nothing: {json}");
    assert_eq!(json["summary"]["status"], "succeeded");
}

#[test]
fn timeline_cells_escape_pipes_line_breaks_and_terminal_escapes() {
    let env = Env::new();
    resumed(&env, "20261202T030000Z-high-0001");
    let path = env.state_dir().join("runs/20261202T030000Z-high-0001.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("tests | lint", "tests | lint\\u001b[2K")
        .replace("second line", "second line </details><script>alert(1)</script> & more");
    std::fs::write(&path, text).unwrap();
    let out = env.run(&["timeline", "20261202T030000Z-high-0001"]);
    out.code(0);
    let row = out.stdout.lines().find(|l| l.contains("run 41 failed")).unwrap();
    assert!(row.contains(r"tests \| lint\u{1b}[2K<br>second line"), "{row}");
    // A log line is never markup in the postmortem.
    assert!(row.contains("&lt;/details>&lt;script>alert(1)&lt;/script> &amp; more"), "{row}");
    assert!(!out.stdout.contains("<script>"), "{}", out.stdout);
    let table: Vec<&str> =
        out.stdout.lines().skip_while(|l| !l.starts_with("| Time (UTC)")).take_while(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 10, "{}", out.stdout);
    for line in table {
        let unescaped = line.replace(r"\|", "").matches('|').count();
        assert_eq!(unescaped, 6, "{line}");
    }
    assert!(!out.stdout.contains('\x1b'));
}

#[test]
fn timeline_of_a_one_step_run_has_every_heading() {
    let env = Env::new();
    one_step(&env, "20261202T031209Z-kill-0001");
    let out = env.run(&["timeline", "20261202T031209Z-kill-0001"]);
    out.code(0);
    let expected = "Time to mitigate: 2 mins 14 secs (from 2026-12-02 03:12:09 UTC to 2026-12-02 03:14:23 UTC: off, done; on, 100% -> off)";
    assert!(out.stdout.contains(expected), "{}", out.stdout);
    assert!(out.stdout.starts_with("# Postmortem: kill incident, 2026-12-02\n"), "{}", out.stdout);
    for heading in [
        "## Summary",
        "## Impact",
        "## Timeline",
        "## Durations",
        "## Errors",
        "## Skipped steps",
        "## How do the KPIs you gathered compare to your pre-launch definition(s) of success?\n\n_To fill in._",
        "## What qualitative feedback have you gathered from users or other stakeholders?\n\n_To fill in._",
        "## Which of the assumptions you listed in your product outline were/were not validated?\n\n_To fill in._",
        "## How might your product evolve now or in the future based on these results?\n\n_To fill in._",
        "## Action items\n\n| Action | Owner | Due |\n|---|---|---|\n|  |  |  |",
        "## What went well\n\n- Mitigated 2 mins 14 secs after the first run started, by step off.",
        "## What went wrong",
    ] {
        assert!(out.stdout.contains(heading), "{heading}\n{}", out.stdout);
    }
    assert!(
        out.stdout.contains("| 2026-12-02 03:14:23 | 1/1 off | ann@box (operator) | done; on, 100% -> off |  |"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_revert_pushed_to_a_branch_of_its_own_is_no_mitigation() {
    let env = Env::new();
    env.write(
        "runbooks/review.yaml",
        "version: 1\ntitle: Revert onto a branch for review\ninputs: { commit: { type: commit } }\nsteps:\n  - id: revert\n    name: Revert it onto a branch\n    revert: { commit: \"{{ inputs.commit }}\", branch: rollback-review-1 }\n",
    );
    let commit = env.sandbox.offending.to_string();
    env.run(&["run", "review", "--yes", "--var", &format!("commit={commit}")]).code(0);
    let out = runs(&env, &["--json"]);
    let row: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert!(row["time_to_mitigate_ms"].is_null(), "main is as it was: {row}");
    let id = row["run_id"].as_str().unwrap();
    let timeline = env.run(&["timeline", id]);
    assert!(timeline.stdout.contains("not mitigated"), "{}", timeline.stdout);
}

#[test]
fn a_timeline_that_could_not_be_written_is_a_failure_a_closed_pipe_is_not() {
    let env = Env::new();
    env.run(&["incident", "--severity", "critical", "--yes"]).code(0);
    let id = env.journal()[0]["run_id"].as_str().unwrap().to_string();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = env.command(&["timeline", &id]).stdout(full).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not write the output: No space left on device"));
    let mut head = env.command(&["timeline", &id]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    drop(head.stdout.take());
    assert_eq!(head.wait().unwrap().code(), Some(0), "a reader that went away is no failure");
}
