//! Gate steps on Google Analytics 4, against the emulator of its Data API and token endpoint:
//! service-account tokens cached and renewed, realtime reports, no rows, quotas, charts.

use std::time::Duration;

use serde_json::Value;

use super::gates::with_gate;
use crate::support::Env;
use crate::support::ga4::{CLIENT_EMAIL, Ga4, PROPERTY};

const REALTIME: &str = "/v1beta/properties/419143770:runRealtimeReport";
const QUERY: &str = r#"query: 'activeUsers where unifiedScreenName begins_with "Travel Pay"'"#;

/// The source `users` on the emulator, its key file in the workspace, and fields for its gate.
fn ga4_workspace(ga4: &Ga4, fields: &str) -> Env {
    let env = Env::new();
    let key = ga4.key_file(env.dir());
    let yaml = format!(
        "{{ provider: ga4, url: \"{}\", property: \"{PROPERTY}\", credentials_env: GA_CREDENTIALS }}",
        ga4.url()
    );
    with_gate(env.var("GA_CREDENTIALS", key.to_str().unwrap()), "users", &yaml, fields)
}

fn realtime_calls(ga4: &Ga4) -> Vec<crate::support::http_server::Request> {
    ga4.requests().into_iter().filter(|r| r.path == REALTIME).collect()
}

fn samples(env: &Env) -> Vec<Value> {
    env.journal().into_iter().filter(|e| e["event"] == "step_sampled").collect()
}

#[test]
fn a_ga4_gate_reads_realtime_reports_with_one_token_for_the_whole_gate() {
    let ga4 = Ga4::start();
    ga4.set_realtime(Some(vec![42.0]));
    let env = ga4_workspace(&ga4, &format!("{QUERY}\nabove: 10\ncount: 3\ninterval: 1s\nwindow: 5m\nno_data: fail\n"));
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("ga4 property 419143770 users: 42"), "{}", out.stderr);
    assert!(out.stderr.contains("passed at 42 after 3 samples"), "{}", out.stderr);
    assert_eq!(ga4.tokens_issued(), 1, "the token is kept until it nears its expiry");
    let calls = realtime_calls(&ga4);
    assert_eq!(calls.len(), 4, "the preview's read and three samples");
    let body = calls[0].json().unwrap();
    assert_eq!(body["minuteRanges"], serde_json::json!([{ "startMinutesAgo": 4, "endMinutesAgo": 0 }]));
    assert_eq!(body["dimensionFilter"]["filter"]["fieldName"], "unifiedScreenName");
    assert_eq!(body["returnPropertyQuota"], true);
    let bearer = calls[0].header("Authorization").unwrap().to_string();
    assert!(bearer.starts_with("Bearer ya29."), "{bearer}");
    let token = bearer.trim_start_matches("Bearer ");
    let seen = format!("{}{}{}", out.stdout, out.stderr, env.journal_text());
    assert!(!seen.contains(token) && !seen.contains("PRIVATE KEY"), "the token and the key are never shown");
    assert_eq!(samples(&env).len(), 3);

    // A token that would expire within a minute of its use is renewed first, never refused.
    let short = Ga4::start();
    short.set_realtime(Some(vec![42.0]));
    short.token_lifetime(62);
    let env = ga4_workspace(&short, &format!("{QUERY}\nabove: 10\ncount: 4\ninterval: 1s\nno_data: fail\n"));
    env.run(&["run", "gate", "--yes"]).code(0);
    assert!(short.tokens_issued() >= 2, "renewed {} times", short.tokens_issued());
    assert_eq!(realtime_calls(&short).len(), 5, "none refused, so none sent again");
}

#[test]
fn an_expired_token_is_renewed_once_and_a_refused_key_or_property_exits_3() {
    let ga4 = Ga4::start();
    ga4.set_realtime(Some(vec![42.0]));
    let env = ga4_workspace(&ga4, &format!("{QUERY}\nabove: 10\ncount: 3\ninterval: 1s\nno_data: fail\n"));
    let mut child = env.command(&["run", "gate", "--yes"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Once the gate has sampled, every token issued so far stops being accepted.
    while !env.state_dir().join("runs").exists() || samples(&env).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    ga4.expire_tokens();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(ga4.tokens_issued(), 2, "one new token after the refusal, then kept");
    assert_eq!(realtime_calls(&ga4).len(), 5, "the preview, three samples, and the one refused");

    // A key file for another account: Google refuses the JWT, and the run is refused.
    let stranger = ga4_workspace(&ga4, &format!("{QUERY}\nabove: 10\ncount: 1\ninterval: 1s\nno_data: fail\n"));
    let key_path = stranger.dir().read_dir().unwrap().map(|e| e.unwrap().path());
    let key_path = key_path
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "json") && p.to_string_lossy().contains("va-gov-analytics"))
        .unwrap();
    let key = std::fs::read_to_string(&key_path).unwrap().replace(CLIENT_EMAIL, "someone@else.iam.gserviceaccount.com");
    std::fs::write(&key_path, key).unwrap();
    let out = stranger.run(&["run", "gate", "--yes"]);
    out.code(3);
    assert!(out.stderr.contains("Google refused a token for someone@else.iam.gserviceaccount.com (the key file in GA_CREDENTIALS): invalid_grant"), "{}", out.stderr);

    // Another property: GA4 answers 403, which names the account to add to it.
    let other = ga4_workspace(&ga4, &format!("{QUERY}\nabove: 10\ncount: 1\ninterval: 1s\nno_data: fail\n"));
    other.write("rollout.yaml", &other.read("rollout.yaml").replace(PROPERTY, "111111111"));
    let out = other.run(&["run", "gate", "--yes"]);
    out.code(3);
    assert!(
        out.stderr.contains(&format!(
            "check that {CLIENT_EMAIL} (the key file in GA_CREDENTIALS) is a user of property 111111111"
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn no_rows_are_no_data_a_429_is_retried_and_a_low_quota_is_warned_about_once() {
    let ga4 = Ga4::start();
    ga4.set_realtime(None);
    ga4.set_quota_remaining(3_000);
    ga4.exhaust(1);
    let env = ga4_workspace(&ga4, &format!("{QUERY}\nabove: 10\ncount: 2\ninterval: 1s\nno_data: pass\n"));
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("no data (the report has no rows)"), "{}", out.stderr);
    // The preview's read warns (the plan and the step show it); the samples after it do not.
    let warned: std::collections::BTreeSet<&str> =
        out.stderr.lines().filter(|l| l.contains("GA4 property 419143770: ")).map(str::trim).collect();
    assert_eq!(warned.len(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("2990 of 40000 tokens per hour left (7%)"), "{}", out.stderr);
    let preview = env.journal().into_iter().find(|e| e["event"] == "step_preview").unwrap();
    assert!(preview["before"]["warnings"][0].as_str().unwrap().contains("tokens per day left"), "{preview}");
    assert!(samples(&env).iter().all(|s| s.get("warnings").is_none()), "each quota is warned about once");
    assert_eq!(realtime_calls(&ga4).len(), 4, "the 429, its retry (the preview), two samples");
    let values: Vec<Value> = samples(&env).iter().map(|s| s["value"].clone()).collect();
    assert_eq!(values, [Value::Null, Value::Null], "no rows is never zero");

    // A quota that runs low while the gate waits is warned about at that sample, journaled
    // with it, as the event schema says.
    let later = Ga4::start();
    later.set_realtime(Some(vec![42.0]));
    let env = ga4_workspace(&later, &format!("{QUERY}\nabove: 10\ncount: 3\ninterval: 1s\nno_data: fail\n"));
    let mut child = env.command(&["run", "gate", "--yes"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    while !env.state_dir().join("runs").exists() || samples(&env).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    later.set_quota_remaining(1_000);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let warned: Vec<Value> = samples(&env).into_iter().filter(|s| s.get("warnings").is_some()).collect();
    assert_eq!(warned.len(), 1, "{:?}", samples(&env));
    assert!(warned[0]["warnings"][0].as_str().unwrap().contains("of 40000 tokens per hour left (2%)"), "{}", warned[0]);
    let schema = super::contract::schema();
    for event in env.journal() {
        assert!(schema.is_valid(&event), "{event}");
    }

    // The same with `no_data: fail` fails the gate.
    let env = ga4_workspace(&ga4, &format!("{QUERY}\nabove: 10\ncount: 2\ninterval: 1s\nno_data: fail\n"));
    env.run(&["run", "gate", "--yes"]).code(1);
}

#[test]
fn a_ga4_gate_on_what_realtime_reports_lack_is_refused_before_anything_runs() {
    let ga4 = Ga4::start();
    let page = r#"query: 'activeUsers where pagePath begins_with "/my-health/travel-pay"'"#;
    let env = ga4_workspace(&ga4, &format!("{page}\nabove: 10\ncount: 1\nno_data: fail\n"));
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("steps[0].gate.query: GA4's realtime reports, which gates read (standard reports lag hours), do not have the dimension `pagePath`"), "{}", out.stderr);
    let env = ga4_workspace(&ga4, &format!("{QUERY}\nabove: 10\ncount: 1\nwindow: 45m\nno_data: fail\n"));
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("steps[0].gate.window: a ga4 gate's window is at most 30m"), "{}", out.stderr);
    assert!(ga4.requests().is_empty(), "nothing was asked of GA4");
}

#[test]
#[ignore = "needs rsvg-convert: run scripts/test"]
fn the_timeline_charts_each_gate_beside_the_markdown_with_the_flag_changes_and_ga4_reports() {
    let ga4 = Ga4::start();
    ga4.set_realtime(Some(vec![42.0]));
    ga4.set_report(Some(vec![1234.0]), true);
    let env = ga4_workspace(&ga4, "");
    let report = r#"report: 'totalUsers where pagePath begins_with "/my-health/travel-pay"'"#;
    env.write(
        "runbooks/gate.yaml",
        &format!(
            "version: 1\ntitle: Stage\nsteps:\n  - id: dark\n    name: Off first\n    flag: {{ name: {0}, state: off }}\n  - id: stage-1\n    name: Five percent\n    flag: {{ name: {0}, state: on, percent: 5, direction: up }}\n  - id: users\n    name: Users keep coming\n    gate:\n      source: users\n      {QUERY}\n      {report}\n      above: 10\n      count: 2\n      interval: 1s\n      no_data: fail\n",
            crate::support::FLAG
        ),
    );
    env.run(&["run", "gate", "--yes"]).code(0);
    let run = env.journal()[0]["run_id"].as_str().unwrap().to_string();
    let out_dir = tempfile::tempdir().unwrap();
    let markdown = out_dir.path().join("postmortem.md");
    let out = env.run(&["timeline", &run, "--output", markdown.to_str().unwrap()]);
    out.code(0);
    assert!(out.stderr.contains("wrote") && out.stdout.is_empty(), "{}{}", out.stdout, out.stderr);
    let text = std::fs::read_to_string(&markdown).unwrap();
    let chart = "postmortem-gate-1-users.svg";
    assert!(text.contains(&format!("![users, run {run}]({chart})")), "{text}");
    assert!(text.contains("`totalUsers where pagePath begins_with \"/my-health/travel-pay\"` = 1234"), "{text}");
    assert!(text.contains("subject to thresholding"), "{text}");
    let report = ga4.requests().into_iter().find(|r| r.path.ends_with(":runReport")).unwrap().json().unwrap();
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    assert_eq!(report["dateRanges"][0]["startDate"], today.as_str());
    let svg = std::fs::read_to_string(out_dir.path().join(chart)).unwrap();
    assert!(svg.contains("passes above 10") && svg.contains("flag off") && svg.contains("flag on, 5%"), "{svg}");
    // It draws: rsvg-convert renders it to a PNG of the chart's size.
    let png = out_dir.path().join("chart.png");
    let rendered = std::process::Command::new("rsvg-convert")
        .args(["-o", png.to_str().unwrap(), out_dir.path().join(chart).to_str().unwrap()])
        .output()
        .expect("rsvg-convert (apt librsvg2-bin; scripts/services installs it)");
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let (width, height) =
        (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()));
    assert_eq!((width, height), (960, 440));
}
