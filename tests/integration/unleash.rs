//! The flag step against a real Unleash (started by scripts/services on 127.0.0.1): on, off,
//! percentages through the flexibleRollout strategy's JSON Patch, and Unleash's own refusals.

use serde_json::{Value, json};

use crate::support::{Env, Outcome};

pub(crate) const NEEDS: &str = "needs unleash: run scripts/test";

/// The running Unleash, set up by scripts/services (UNLEASH_URL, UNLEASH_ADMIN_TOKEN).
pub(crate) struct Unleash {
    pub(crate) url: String,
    pub(crate) token: String,
    http: reqwest::blocking::Client,
}

impl Unleash {
    pub(crate) fn from_env() -> Unleash {
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {NEEDS}"));
        Unleash { url: var("UNLEASH_URL"), token: var("UNLEASH_ADMIN_TOKEN"), http: reqwest::blocking::Client::new() }
    }

    pub(crate) fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request =
            self.http.request(method.clone(), format!("{}{path}", self.url)).header("Authorization", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().unwrap();
        let status = response.status();
        let text = response.text().unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub(crate) fn feature_path(name: &str) -> String {
        format!("/api/admin/projects/default/features/{name}/environments/development")
    }

    /// A new kill switch, unique to the test, on for `rollout`% with an optional constraint.
    pub(crate) fn feature(&self, test: &str, rollout: &str, constraints: Value) -> String {
        let name = format!("{test}_{:08x}", rand_suffix());
        self.call(
            reqwest::Method::POST,
            "/api/admin/projects/default/features",
            Some(json!({ "name": name, "type": "kill-switch" })),
        );
        let strategy = json!({ "name": "flexibleRollout", "constraints": constraints, "parameters": { "rollout": rollout, "stickiness": "default", "groupId": name } });
        self.call(reqwest::Method::POST, &format!("{}/strategies", Self::feature_path(&name)), Some(strategy));
        self.call(reqwest::Method::POST, &format!("{}/on", Self::feature_path(&name)), None);
        name
    }

    pub(crate) fn read(&self, name: &str) -> Value {
        self.call(reqwest::Method::GET, &Self::feature_path(name), None)
    }

    pub(crate) fn events(&self, name: &str) -> usize {
        self.call(reqwest::Method::GET, &format!("/api/admin/events/{name}"), None)["events"].as_array().unwrap().len()
    }

    pub(crate) fn workspace(&self) -> Env {
        let env = Env::new();
        env.write(
            "rollout.yaml",
            &format!(
                "version: 1\nflags: {{ provider: unleash, url: \"{}\", project: default, environment: development, token_env: UNLEASH_TOKEN }}\n",
                self.url
            ),
        );
        let runbook = |name: &str, change: &str| {
            format!(
                "version: 1\ntitle: {name}\ninputs:\n  flag: {{}}\n  percent: {{ type: percent, default: 5 }}\nsteps:\n  - id: {name}\n    name: Set the flag\n    flag: {{ name: \"{{{{ inputs.flag }}}}\", {change} }}\n"
            )
        };
        env.write("runbooks/off.yaml", &runbook("off", "state: off"));
        env.write("runbooks/on.yaml", &runbook("on", "state: on"));
        env.write("runbooks/share.yaml", &runbook("share", "percent: \"{{ inputs.percent }}\""));
        env
    }

    pub(crate) fn run(&self, env: &Env, args: &[&str]) -> Outcome {
        env.run_with(args, &[("UNLEASH_TOKEN", &self.token)])
    }
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}

fn rollout(state: &Value) -> &str {
    state["strategies"][0]["parameters"]["rollout"].as_str().unwrap()
}

#[test]
#[ignore = "needs unleash: run scripts/test"]
fn unleash_off_percent_and_on() {
    let unleash = Unleash::from_env();
    let name = unleash.feature("cycle", "100", json!([]));
    let env = unleash.workspace();
    let flag = format!("flag={name}");

    let out = unleash.run(&env, &["run", "off", "--yes", "--var", &flag]);
    out.code(0);
    assert!(
        out.stderr.contains(&format!("flag {name} (Unleash default/development): on, 100% -> off")),
        "{}",
        out.stderr
    );
    assert_eq!(unleash.read(&name)["enabled"], false);

    let out = unleash.run(&env, &["run", "share", "--yes", "--var", &flag, "--var", "percent=5"]);
    out.code(0);
    assert!(out.stderr.contains("off -> on, 5%"), "{}", out.stderr);
    let state = unleash.read(&name);
    assert_eq!((state["enabled"].as_bool(), rollout(&state)), (Some(true), "5"));
    assert_eq!(state["strategies"].as_array().unwrap().len(), 1, "the strategy was patched, not added");

    let out = unleash.run(&env, &["run", "on", "--yes", "--var", &flag]);
    out.code(0);
    assert!(out.stderr.contains("on, 5% -> on, 100%"), "{}", out.stderr);
    assert_eq!(rollout(&unleash.read(&name)), "100");
}

#[test]
#[ignore = "needs unleash: run scripts/test"]
fn unleash_percent_keeps_the_strategy_constraints() {
    let unleash = Unleash::from_env();
    let constraint = json!([{ "contextName": "userId", "operator": "IN", "values": ["42"], "caseInsensitive": false, "inverted": false }]);
    let name = unleash.feature("constraints", "50", constraint);
    let env = unleash.workspace();
    unleash.run(&env, &["run", "share", "--yes", "--var", &format!("flag={name}"), "--var", "percent=10"]).code(0);
    let state = unleash.read(&name);
    assert_eq!(rollout(&state), "10");
    assert_eq!(
        state["strategies"][0]["constraints"][0]["values"],
        json!(["42"]),
        "JSON Patch, never a PUT that drops constraints"
    );
}

#[test]
#[ignore = "needs unleash: run scripts/test"]
fn unleash_already_in_state_and_dry_run_write_nothing() {
    let unleash = Unleash::from_env();
    let name = unleash.feature("quiet", "100", json!([]));
    let env = unleash.workspace();
    let events = unleash.events(&name);
    let out = unleash.run(&env, &["run", "on", "--yes", "--var", &format!("flag={name}")]);
    out.code(0);
    assert!(out.stderr.contains("already on, 100%, nothing to change"), "{}", out.stderr);
    let out = unleash.run(&env, &["run", "off", "--dry-run", "--var", &format!("flag={name}")]);
    out.code(0);
    assert!(out.stderr.contains("on, 100% -> off"), "{}", out.stderr);
    assert_eq!(unleash.events(&name), events, "Unleash recorded no change");
    assert_eq!(unleash.read(&name)["enabled"], true);
}

#[test]
#[ignore = "needs unleash: run scripts/test"]
fn unleash_unknown_flag_fails_preflight() {
    let unleash = Unleash::from_env();
    let env = unleash.workspace();
    for mode in ["--yes", "--dry-run"] {
        let out = unleash.run(&env, &["run", "off", mode, "--var", "flag=no_such_flag_anywhere"]);
        out.code(3);
        assert!(
            out.stderr.contains("flag no_such_flag_anywhere was not found in Unleash project default environment development: There's no feature named \"no_such_flag_anywhere\" in project \"default\"."),
            "{}",
            out.stderr
        );
    }
}

#[test]
#[ignore = "needs unleash: run scripts/test"]
fn unleash_wrong_token_is_named_and_never_shown() {
    let unleash = Unleash::from_env();
    let name = unleash.feature("token", "100", json!([]));
    let env = unleash.workspace();
    let wrong = "*:*.not-the-right-token-0000";
    let out =
        env.run_with(&["--json", "run", "off", "--yes", "--var", &format!("flag={name}")], &[("UNLEASH_TOKEN", wrong)]);
    out.code(3);
    assert!(out.stderr.contains("401 Unauthorized: You must log in to use Unleash."), "{}", out.stderr);
    assert!(out.stderr.contains("check UNLEASH_TOKEN"), "{}", out.stderr);
    for text in [&out.stdout, &out.stderr, &env.journal_text()] {
        assert!(!text.contains("not-the-right-token"), "the token leaked: {text}");
    }
    assert_eq!(unleash.read(&name)["enabled"], true);
}

#[test]
#[ignore = "needs unleash: run scripts/test"]
fn unleash_refuses_to_guess_between_several_strategies() {
    let unleash = Unleash::from_env();
    let name = unleash.feature("several", "100", json!([]));
    let second = json!({ "name": "flexibleRollout", "constraints": [], "parameters": { "rollout": "20", "stickiness": "default", "groupId": name } });
    unleash.call(reqwest::Method::POST, &format!("{}/strategies", Unleash::feature_path(&name)), Some(second));
    let env = unleash.workspace();
    let out = unleash.run(&env, &["run", "share", "--yes", "--var", &format!("flag={name}")]);
    out.code(3);
    assert!(out.stderr.contains("has 2 strategies (flexibleRollout "), "{}", out.stderr);
    assert!(out.stderr.contains("never guesses which one you mean"), "{}", out.stderr);
    let out = unleash.run(&env, &["run", "share", "--yes", "--var", &format!("flag={name}"), "--var", "percent=2.5"]);
    out.code(3);
    assert!(out.stderr.contains("Unleash rollouts are whole percentages; 2.5% cannot be set"), "{}", out.stderr);
}

#[test]
#[ignore = "needs unleash: run scripts/test"]
fn regression_reenabling_after_disabling_failed_unleash_preflight() {
    let unleash = Unleash::from_env();
    let name = unleash.feature("critical", "100", json!([]));
    let env = unleash.workspace();
    env.write(
        "runbooks/cycle.yaml",
        "version: 1\ntitle: Cycle\ninputs:\n  flag: {}\nsteps:\n  - id: disable\n    name: Off\n    flag: { name: \"{{ inputs.flag }}\", state: off }\n  - id: reenable\n    name: Back at 5%\n    flag: { name: \"{{ inputs.flag }}\", state: on, percent: 5 }\n",
    );
    let flag = format!("flag={name}");
    let out = unleash.run(&env, &["run", "cycle", "--dry-run", "--var", &flag]);
    out.code(0);
    assert!(out.stderr.contains("2/2 reenable: flag") && out.stderr.contains("off -> on, 5%"), "{}", out.stderr);
    unleash.run(&env, &["run", "cycle", "--yes", "--var", &flag]).code(0);
    let state = unleash.read(&name);
    assert_eq!((state["enabled"].as_bool(), rollout(&state)), (Some(true), "5"));
}

#[test]
#[ignore = "needs unleash: run scripts/test"]
fn unleash_strategies_rollout_does_not_model_are_shown_count_as_on_and_are_never_guessed() {
    let unleash = Unleash::from_env();
    let name = unleash.feature("unmodelled", "10", json!([]));
    // A strategy type of the team's own (Unleash 7 has no userWithId any more).
    let kind = json!({ "name": "pilotUsers", "description": "", "parameters": [{ "name": "userIds", "type": "list", "description": "", "required": false }] });
    let created = unleash
        .http
        .post(format!("{}/api/admin/strategies", unleash.url))
        .header("Authorization", &unleash.token)
        .json(&kind)
        .send()
        .unwrap();
    assert!(created.status().is_success() || created.status() == 409, "{}", created.status());
    let users = json!({ "name": "pilotUsers", "constraints": [], "parameters": { "userIds": "42,43" } });
    unleash.call(reqwest::Method::POST, &format!("{}/strategies", Unleash::feature_path(&name)), Some(users));
    let env = unleash.workspace();
    env.write(
        "runbooks/down.yaml",
        "version: 1\ntitle: down\ninputs:\n  flag: {}\nsteps:\n  - id: down\n    name: Lower\n    flag: { name: \"{{ inputs.flag }}\", percent: 5, direction: down }\n",
    );
    let flag = format!("flag={name}");
    let out = unleash.run(&env, &["run", "down", "--yes", "--var", &flag]);
    out.code(3);
    assert!(out.stderr.contains("has 2 strategies (flexibleRollout "), "{}", out.stderr);
    assert!(out.stderr.contains(", pilotUsers "), "{}", out.stderr);
    assert_eq!(rollout(&unleash.read(&name)), "10", "nothing was written");

    let out = unleash.run(&env, &["--json", "run", "off", "--yes", "--var", &flag]);
    out.code(0);
    assert!(
        out.stderr.contains(r#"on, 10% + strategy pilotUsers {"userIds":"42,43"} -> off  [▼ fewer users]"#),
        "{}",
        out.stderr
    );
    assert_eq!(unleash.read(&name)["enabled"], false);
    assert_eq!(unleash.read(&name)["strategies"].as_array().unwrap().len(), 2, "turning off keeps the strategies");
}

#[test]
#[ignore = "needs unleash: run scripts/test"]
fn unleash_a_client_token_is_refused_before_anything_is_written() {
    let unleash = Unleash::from_env();
    let name = unleash.feature("client_token", "100", json!([]));
    let created = unleash.call(
        reqwest::Method::POST,
        "/api/admin/api-tokens",
        Some(json!({ "tokenName": format!("client-{name}"), "type": "client", "environment": "development", "projects": ["*"] })),
    );
    let client = created["secret"].as_str().expect("a client token").to_string();
    let env = unleash.workspace();
    let out = env.run_with(&["run", "off", "--yes", "--var", &format!("flag={name}")], &[("UNLEASH_TOKEN", &client)]);
    out.code(3);
    assert!(out.stderr.contains("check UNLEASH_TOKEN"), "{}", out.stderr);
    assert!(!out.stderr.contains(&client), "the token leaked: {}", out.stderr);
    assert_eq!(unleash.read(&name)["enabled"], true);
}
