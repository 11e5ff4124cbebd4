//! The CI-service emulators checked directly with a plain HTTP client: the trigger → poll →
//! outcome flow, status codes, bodies and headers as the vendors document them, fault
//! injection and request recording.

use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::support::buildkite::Buildkite;
use crate::support::github::{GitHub, Mode, Outcome, gaps};
use crate::support::gitlab::{GitLab, Source};
use crate::support::http_server::Fault;
use crate::support::jenkins::{Jenkins, QueueEnd};

const TOKEN: &str = "ci-token";
const SHA: &str = "4c1f6a2b9d8e7f60123456789abcdef012345678";

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .user_agent("rollout-emulator-tests")
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Status, headers and body (JSON when it parses, else the text).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn number(&self, name: &str) -> u64 {
        self.header(name).unwrap_or_else(|| panic!("header {name}")).parse().unwrap()
    }
}

fn send(request: RequestBuilder) -> Answer {
    let response: Response = request.send().expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    Answer { status, headers, body, text }
}

// --- GitHub ---------------------------------------------------------------------------------

const REPO: &str = "acme/app";

fn github() -> (GitHub, Client) {
    let gh = GitHub::start(TOKEN);
    gh.add_workflow(REPO, "deploy.yml");
    gh.add_branch(REPO, "main", SHA);
    (gh, client())
}

fn gh_get(gh: &GitHub, client: &Client, path: &str) -> RequestBuilder {
    client
        .get(format!("{}{path}", gh.url()))
        .bearer_auth(TOKEN)
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
}

fn gh_dispatch(gh: &GitHub, client: &Client, body: Value) -> Answer {
    let url = format!("{}/repos/{REPO}/actions/workflows/deploy.yml/dispatches", gh.url());
    send(client.post(url).bearer_auth(TOKEN).header("X-GitHub-Api-Version", "2022-11-28").json(&body))
}

fn gh_run(gh: &GitHub, client: &Client, id: u64) -> Answer {
    send(gh_get(gh, client, &format!("/repos/{REPO}/actions/runs/{id}")))
}

#[test]
fn github_dispatch_returns_run_details_and_the_run_goes_queued_in_progress_to_each_outcome() {
    let cases = [
        (Outcome::Success, "completed", json!("success")),
        (Outcome::Failure, "completed", json!("failure")),
        (Outcome::Cancelled, "completed", json!("cancelled")),
        (Outcome::NeedsHuman, "waiting", Value::Null),
        (Outcome::Other("timed_out".into()), "completed", json!("timed_out")),
    ];
    for (outcome, status, conclusion) in cases {
        let (gh, client) = github();
        gh.script(outcome.clone(), 2);
        let answer =
            gh_dispatch(&gh, &client, json!({"ref": "main", "inputs": {"flag": "x"}, "return_run_details": true}));
        assert_eq!(answer.status, 200, "{outcome:?}");
        let id = answer.body["workflow_run_id"].as_u64().expect("workflow_run_id");
        assert_eq!(answer.body["run_url"], json!(format!("{}/repos/{REPO}/actions/runs/{id}", gh.url())));
        assert_eq!(answer.body["html_url"], json!(format!("https://github.com/{REPO}/actions/runs/{id}")));
        assert_eq!(answer.body.as_object().unwrap().len(), 3);

        let first = gh_run(&gh, &client, id);
        assert_eq!(
            (first.status, first.body["status"].clone(), first.body["conclusion"].clone()),
            (200, json!("queued"), Value::Null)
        );
        let second = gh_run(&gh, &client, id);
        assert_eq!(second.body["status"], "in_progress");
        let third = gh_run(&gh, &client, id);
        assert_eq!(
            (third.body["status"].clone(), third.body["conclusion"].clone()),
            (json!(status), conclusion.clone()),
            "{outcome:?}"
        );
        assert_eq!(third.body["id"], id);
        assert_eq!(third.body["head_sha"], SHA);
        assert_eq!(third.body["head_branch"], "main");
        assert_eq!(third.body["event"], "workflow_dispatch");
        assert_eq!(gh.poll_count(id), 3);

        let run = &gh.runs()[0];
        assert_eq!((run.id, run.git_ref.as_str(), run.workflow.as_str()), (id, "main", "deploy.yml"));
        assert_eq!(run.inputs, json!({"flag": "x"}));
        assert!(run.return_run_details);
        assert_eq!(run.api_version.as_deref(), Some("2022-11-28"));
        assert_eq!(gh.non_get_count(), 1);
    }
}

#[test]
fn github_without_details_answers_204_and_the_run_is_found_by_the_listing_filters() {
    let (gh, client) = github();
    gh.add_branch(REPO, "release", "aaaaaaa1111111111111111111111111111111111");
    gh.set_mode(Mode::NoDetails);
    let before = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(2);
    let answer = gh_dispatch(&gh, &client, json!({"ref": "main", "return_run_details": true}));
    assert_eq!((answer.status, answer.text.as_str()), (204, ""));
    let id = gh.runs()[0].id;

    let list = |query: &[(&str, &str)]| {
        send(gh_get(&gh, &client, &format!("/repos/{REPO}/actions/workflows/deploy.yml/runs")).query(query))
    };
    let created = format!(">={}", before.strftime("%Y-%m-%dT%H:%M:%SZ"));
    let found = list(&[("event", "workflow_dispatch"), ("branch", "main"), ("created", &created)]);
    assert_eq!(found.status, 200);
    assert_eq!(found.body["total_count"], 1);
    assert_eq!(found.body["workflow_runs"][0]["id"], id);
    assert_eq!(found.body["workflow_runs"][0]["status"], "queued");

    let later =
        format!(">={}", (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60)).strftime("%Y-%m-%dT%H:%M:%SZ"));
    for query in [
        vec![("branch", "release")],
        vec![("event", "push")],
        vec![("created", later.as_str())],
        vec![("created", "not-a-date")],
    ] {
        let none = list(&query);
        assert_eq!((none.status, none.body["total_count"].clone()), (200, json!(0)), "{query:?}");
    }
    // The workflow's numeric id works too, and the repository-wide listing sees the run.
    let by_id = send(gh_get(&gh, &client, &format!("/repos/{REPO}/actions/workflows/161335/runs")));
    assert_eq!(by_id.body["workflow_runs"][0]["id"], id);
    let by_repo = send(gh_get(&gh, &client, &format!("/repos/{REPO}/actions/runs")));
    assert_eq!(by_repo.body["workflow_runs"][0]["id"], id);
    assert_eq!(gh.poll_count(id), 0, "listings are not polls");
}

#[test]
fn github_enterprise_server_refuses_return_run_details_then_takes_the_plain_dispatch() {
    let (gh, client) = github();
    gh.set_mode(Mode::GhesOld);
    let refused = gh_dispatch(&gh, &client, json!({"ref": "main", "return_run_details": true}));
    assert_eq!(refused.status, 422);
    assert_eq!(
        refused.body,
        json!({
            "message": "Invalid request.\n\n\"return_run_details\" is not a permitted key.",
            "documentation_url": "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event",
            "status": "422",
        })
    );
    assert!(gh.runs().is_empty(), "a refused dispatch starts nothing");
    let plain = gh_dispatch(&gh, &client, json!({"ref": "main", "inputs": {}}));
    assert_eq!(plain.status, 204);
    assert_eq!(gh.runs().len(), 1);

    gh.set_mode(Mode::GhesOldBadRequest);
    let refused = gh_dispatch(&gh, &client, json!({"ref": "main", "return_run_details": true}));
    assert_eq!((refused.status, refused.body["status"].clone()), (400, json!("400")));
    assert!(refused.body["message"].as_str().unwrap().contains("\"return_run_details\" is not a permitted key."));
}

#[test]
fn github_hidden_runs_are_never_listed_and_a_listing_delay_hides_a_run_for_a_few_reads() {
    let (gh, client) = github();
    gh.hide_new_runs();
    assert_eq!(gh_dispatch(&gh, &client, json!({"ref": "main"})).status, 204);
    let id = gh.runs()[0].id;
    let path = format!("/repos/{REPO}/actions/workflows/deploy.yml/runs?event=workflow_dispatch&branch=main");
    for _ in 0..3 {
        assert_eq!(send(gh_get(&gh, &client, &path)).body["total_count"], 0);
    }
    assert_eq!(gh_run(&gh, &client, id).status, 200, "the hidden run still answers by id");

    let (gh, client) = github();
    gh.listing_delay(2);
    gh_dispatch(&gh, &client, json!({"ref": "main"}));
    let counts: Vec<Value> = (0..3).map(|_| send(gh_get(&gh, &client, &path)).body["total_count"].clone()).collect();
    assert_eq!(counts, vec![json!(0), json!(0), json!(1)]);
}

#[test]
fn github_answers_304_to_if_none_match_with_the_current_etag_without_spending_rate_limit() {
    let (gh, client) = github();
    gh.script(Outcome::Never, 0);
    let id = gh_dispatch(&gh, &client, json!({"ref": "main", "return_run_details": true})).body["workflow_run_id"]
        .as_u64()
        .unwrap();
    let first = gh_run(&gh, &client, id);
    assert_eq!((first.status, first.body["status"].clone()), (200, json!("in_progress")));
    let etag = first.header("etag").expect("ETag").to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    let used = first.number("x-ratelimit-used");

    let path = format!("/repos/{REPO}/actions/runs/{id}");
    let again = send(gh_get(&gh, &client, &path).header("If-None-Match", &etag));
    assert_eq!((again.status, again.text.as_str()), (304, ""));
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(again.number("x-ratelimit-used"), used, "a 304 is free");
    let stale = send(gh_get(&gh, &client, &path).header("If-None-Match", "W/\"0000\""));
    assert_eq!(stale.status, 200);
    assert_eq!(stale.number("x-ratelimit-used"), used + 1);
    assert_eq!(gh.poll_count(id), 3, "a 304 is still a status read");
}

#[test]
fn github_rate_limit_headers_count_down_and_limits_answer_403_or_429() {
    let (gh, client) = github();
    let path = format!("/repos/{REPO}/actions/workflows/deploy.yml");
    let first = send(gh_get(&gh, &client, &path));
    assert_eq!(first.status, 200);
    assert_eq!(first.body["path"], ".github/workflows/deploy.yml");
    assert_eq!(first.body["state"], "active");
    let second = send(gh_get(&gh, &client, &path));
    assert_eq!(first.number("x-ratelimit-limit"), 5000);
    assert_eq!(second.number("x-ratelimit-remaining"), first.number("x-ratelimit-remaining") - 1);
    assert_eq!(second.number("x-ratelimit-used"), 2);
    assert!(second.number("x-ratelimit-reset") > crate::support::github::epoch_seconds());
    assert_eq!(second.header("x-ratelimit-resource"), Some("core"));

    gh.fault(Fault::RateLimited { retry_after: 7 });
    let limited = send(gh_get(&gh, &client, &path));
    assert_eq!((limited.status, limited.header("retry-after")), (429, Some("7")));
    assert!(limited.body["message"].as_str().unwrap().starts_with("You have exceeded a secondary rate limit"));
    assert!(limited.header("x-ratelimit-remaining").is_some());
    gh.secondary_limit_status(403);
    gh.fault(Fault::RateLimited { retry_after: 3 });
    let limited = send(gh_get(&gh, &client, &path));
    assert_eq!(
        (limited.status, limited.body["status"].clone(), limited.header("retry-after")),
        (403, json!("403"), Some("3"))
    );

    gh.set_rate_limit(3);
    send(gh_get(&gh, &client, &path));
    let exhausted = send(gh_get(&gh, &client, &path));
    assert_eq!((exhausted.status, exhausted.header("x-ratelimit-remaining")), (403, Some("0")));
    assert!(exhausted.body["message"].as_str().unwrap().starts_with("API rate limit exceeded"));
}

#[test]
fn github_unknown_workflow_is_404_a_wrong_token_401_and_bad_dispatches_422() {
    let (gh, client) = github();
    let missing = send(gh_get(&gh, &client, &format!("/repos/{REPO}/actions/workflows/nope.yml")));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["message"], "Not Found");
    assert_eq!(missing.body["status"], "404");
    assert!(missing.body["documentation_url"].as_str().unwrap().starts_with("https://docs.github.com/"));
    let url = format!("{}/repos/{REPO}/actions/workflows/nope.yml/dispatches", gh.url());
    assert_eq!(send(client.post(&url).bearer_auth(TOKEN).json(&json!({"ref": "main"}))).status, 404);

    let path = format!("{}/repos/{REPO}/actions/workflows/deploy.yml", gh.url());
    let wrong = send(client.get(&path).bearer_auth("wrong"));
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.body,
        json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"})
    );
    assert_eq!(send(client.get(&path)).status, 404, "anonymous callers do not see private repositories");
    assert_eq!(send(client.get(&path).header("Authorization", format!("token {TOKEN}"))).status, 200);
    let no_agent = Client::builder().no_proxy().build().unwrap();
    let refused = send(no_agent.get(&path).bearer_auth(TOKEN));
    assert_eq!(refused.status, 403);
    assert!(refused.text.contains("User-Agent"));

    let cases = [
        (json!({"ref": "nope"}), 422, "No ref found for: nope"),
        (json!({"inputs": {}}), 422, "Invalid request.\n\n\"ref\" wasn't supplied."),
        (json!({"ref": "main", "extra": 1}), 422, "Invalid request.\n\n\"extra\" is not a permitted key."),
        (
            json!({"ref": "main", "return_run_details": "true"}),
            422,
            "Invalid request.\n\nFor 'properties/return_run_details', \"true\" is not a boolean.",
        ),
        (json!(["main"]), 400, "Body should be a JSON object"),
    ];
    for (body, status, message) in cases {
        let answer = gh_dispatch(&gh, &client, body.clone());
        assert_eq!((answer.status, answer.body["message"].as_str()), (status, Some(message)), "{body}");
    }
    let garbage = send(client.post(url.replace("nope.yml", "deploy.yml")).bearer_auth(TOKEN).body("{not json"));
    assert_eq!((garbage.status, garbage.body["message"].clone()), (400, json!("Problems parsing JSON")));
    gh.set_workflow_state(REPO, "deploy.yml", "disabled_manually");
    let disabled = gh_dispatch(&gh, &client, json!({"ref": "main"}));
    assert_eq!(
        (disabled.status, disabled.body["message"].clone()),
        (422, json!("Cannot trigger a 'workflow_dispatch' on a disabled workflow"))
    );
    assert!(gh.runs().is_empty());
}

#[test]
fn github_serves_the_repository_and_commit_and_records_poll_times() {
    let (gh, client) = github();
    let repo = send(gh_get(&gh, &client, &format!("/repos/{REPO}")));
    assert_eq!(
        (repo.body["default_branch"].clone(), repo.body["permissions"]["push"].clone()),
        (json!("main"), json!(true))
    );
    let commit = send(gh_get(&gh, &client, &format!("/repos/{REPO}/commits/main")));
    assert_eq!(commit.body["sha"], SHA);
    let missing = send(gh_get(&gh, &client, &format!("/repos/{REPO}/commits/nope")));
    assert_eq!(missing.status, 422);
    assert_eq!(send(gh_get(&gh, &client, "/repos/acme/other/actions/workflows/deploy.yml")).status, 404);
    // The GHES prefix is accepted.
    assert_eq!(send(gh_get(&gh, &client, &format!("/api/v3/repos/{REPO}"))).status, 200);

    gh.script_for(Outcome::Success, Duration::from_millis(800));
    let id = gh_dispatch(&gh, &client, json!({"ref": "refs/heads/main", "return_run_details": true})).body["workflow_run_id"].as_u64().unwrap();
    let mut statuses = Vec::new();
    for pause in [0, 50, 100] {
        std::thread::sleep(Duration::from_millis(pause));
        statuses.push(gh_run(&gh, &client, id).body["status"].clone());
    }
    std::thread::sleep(Duration::from_millis(800));
    statuses.push(gh_run(&gh, &client, id).body["status"].clone());
    assert_eq!(statuses, vec![json!("queued"), json!("in_progress"), json!("in_progress"), json!("completed")]);
    let gaps = gaps(&gh.poll_times(id));
    assert_eq!(gaps.len(), 3);
    assert!(gaps[1] >= Duration::from_millis(100) && gaps[2] >= Duration::from_millis(800), "{gaps:?}");
    assert_eq!(gh.runs()[0].head_branch, "main");
}

// --- GitLab ---------------------------------------------------------------------------------

const PROJECT: &str = "group/app";
const PROJECT_ID: u64 = 42;

fn gitlab() -> (GitLab, Client) {
    let gl = GitLab::start(TOKEN);
    gl.add_project(PROJECT, PROJECT_ID);
    gl.add_branch(PROJECT, "main", SHA);
    gl.add_trigger_token(PROJECT, "glptt-trigger");
    (gl, client())
}

fn gl_url(gl: &GitLab, path: &str) -> String {
    format!("{}/projects/group%2Fapp{path}", gl.api_url())
}

#[test]
fn gitlab_created_pipeline_goes_pending_running_to_each_outcome() {
    let cases = [
        (Outcome::Success, "success"),
        (Outcome::Failure, "failed"),
        (Outcome::Cancelled, "canceled"),
        (Outcome::NeedsHuman, "manual"),
        (Outcome::Other("skipped".into()), "skipped"),
    ];
    for (outcome, last) in cases {
        let (gl, client) = gitlab();
        gl.script(outcome.clone(), 2);
        let body =
            json!({"ref": "main", "variables": [{"key": "FLAG", "value": "off"}, {"key": "WHY", "value": "rollback"}]});
        let created = send(client.post(gl_url(&gl, "/pipeline")).header("PRIVATE-TOKEN", TOKEN).json(&body));
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.body["id"].as_u64().unwrap();
        assert_eq!(created.body["status"], "created");
        assert_eq!(created.body["source"], "api");
        assert_eq!(created.body["sha"], SHA);
        assert_eq!(created.body["ref"], "main");
        assert_eq!(created.body["project_id"], PROJECT_ID);
        assert_eq!(created.body["web_url"], json!(format!("{}/{PROJECT}/-/pipelines/{id}", gl.url())));

        let poll = || {
            send(client.get(gl_url(&gl, &format!("/pipelines/{id}"))).header("PRIVATE-TOKEN", TOKEN)).body["status"]
                .clone()
        };
        assert_eq!([poll(), poll(), poll()], [json!("pending"), json!("running"), json!(last)], "{outcome:?}");
        assert_eq!(gl.poll_count(id), 3);
        let run = &gl.runs()[0];
        assert_eq!(
            run.variables,
            vec![("FLAG".to_string(), "off".to_string()), ("WHY".to_string(), "rollback".to_string())]
        );
        assert_eq!(run.source, Source::Api);
        let variables =
            send(client.get(gl_url(&gl, &format!("/pipelines/{id}/variables"))).header("PRIVATE-TOKEN", TOKEN));
        assert_eq!(variables.body[0], json!({"key": "FLAG", "variable_type": "env_var", "value": "off"}));
    }
}

#[test]
fn gitlab_trigger_token_pipeline_takes_form_variables_and_refuses_a_wrong_token() {
    let (gl, client) = gitlab();
    let form = [("token", "glptt-trigger"), ("ref", "main"), ("variables[FLAG]", "off"), ("variables[RUN]", "7")];
    let created = send(client.post(gl_url(&gl, "/trigger/pipeline")).form(&form));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!((created.body["source"].clone(), created.body["status"].clone()), (json!("trigger"), json!("created")));
    let run = &gl.runs()[0];
    assert_eq!(run.source, Source::Trigger("glptt-trigger".into()));
    assert_eq!(run.variables, vec![("FLAG".to_string(), "off".to_string()), ("RUN".to_string(), "7".to_string())]);

    let wrong = send(client.post(gl_url(&gl, "/trigger/pipeline")).form(&[("token", "nope"), ("ref", "main")]));
    assert_eq!((wrong.status, wrong.body.clone()), (404, json!({"message": "404 Not Found"})));
    let missing = send(client.post(gl_url(&gl, "/trigger/pipeline")).form(&[("ref", "main")]));
    assert_eq!((missing.status, missing.body.clone()), (400, json!({"error": "token is missing"})));
    let bad_ref =
        send(client.post(gl_url(&gl, "/trigger/pipeline")).form(&[("token", "glptt-trigger"), ("ref", "nope")]));
    assert_eq!((bad_ref.status, bad_ref.body.clone()), (400, json!({"message": {"base": ["Reference not found"]}})));
    // Query parameters work too, as in GitLab's own example.
    let by_query = send(client.post(gl_url(&gl, "/trigger/pipeline?token=glptt-trigger&ref=main")));
    assert_eq!(by_query.status, 201);
    assert_eq!(gl.runs().len(), 2);
}

#[test]
fn gitlab_errors_have_gitlabs_shapes_and_every_answer_carries_ratelimit_headers() {
    let (gl, client) = gitlab();
    let unknown = send(client.get(format!("{}/projects/999", gl.api_url())).header("PRIVATE-TOKEN", TOKEN));
    assert_eq!((unknown.status, unknown.body.clone()), (404, json!({"message": "404 Project Not Found"})));
    let wrong = send(client.get(gl_url(&gl, "")).header("PRIVATE-TOKEN", "wrong"));
    assert_eq!((wrong.status, wrong.body.clone()), (401, json!({"message": "401 Unauthorized"})));
    assert_eq!(send(client.get(gl_url(&gl, ""))).status, 404, "anonymous GETs do not see private projects");
    let anonymous_post = send(client.post(gl_url(&gl, "/pipeline")).json(&json!({"ref": "main"})));
    assert_eq!((anonymous_post.status, anonymous_post.body.clone()), (401, json!({"message": "401 Unauthorized"})));
    let no_ref = send(client.post(gl_url(&gl, "/pipeline")).bearer_auth(TOKEN).json(&json!({})));
    assert_eq!((no_ref.status, no_ref.body.clone()), (400, json!({"error": "ref is missing"})));
    let bad_ref = send(client.post(gl_url(&gl, "/pipeline?ref=nope")).header("PRIVATE-TOKEN", TOKEN));
    assert_eq!((bad_ref.status, bad_ref.body.clone()), (400, json!({"message": {"base": ["Reference not found"]}})));
    let no_pipeline = send(client.get(gl_url(&gl, "/pipelines/5")).header("PRIVATE-TOKEN", TOKEN));
    assert_eq!((no_pipeline.status, no_pipeline.body.clone()), (404, json!({"message": "404 Pipeline Not Found"})));
    let unencoded = send(client.get(format!("{}/projects/group/app", gl.api_url())).header("PRIVATE-TOKEN", TOKEN));
    assert_eq!((unencoded.status, unencoded.body.clone()), (404, json!({"error": "404 Not Found"})));

    let project = send(client.get(gl_url(&gl, "")).header("PRIVATE-TOKEN", TOKEN));
    assert_eq!(
        (project.body["id"].clone(), project.body["default_branch"].clone()),
        (json!(PROJECT_ID), json!("main"))
    );
    assert_eq!(project.body["path_with_namespace"], PROJECT);
    let by_id = send(
        client
            .get(format!("{}/projects/{PROJECT_ID}/repository/commits/main", gl.api_url()))
            .header("PRIVATE-TOKEN", TOKEN),
    );
    assert_eq!((by_id.status, by_id.body["id"].clone()), (200, json!(SHA)));
    let no_commit = send(client.get(gl_url(&gl, "/repository/commits/nope")).header("PRIVATE-TOKEN", TOKEN));
    assert_eq!((no_commit.status, no_commit.body.clone()), (404, json!({"message": "404 Commit Not Found"})));

    let remaining = project.number("ratelimit-remaining");
    assert_eq!(project.number("ratelimit-limit"), 2000);
    assert_eq!(by_id.number("ratelimit-remaining"), remaining - 1);
    assert!(project.number("ratelimit-reset") > crate::support::github::epoch_seconds());
    assert!(project.header("ratelimit-resettime").unwrap().ends_with("GMT"));

    gl.fault(Fault::RateLimited { retry_after: 9 });
    let limited = send(client.get(gl_url(&gl, "")).header("PRIVATE-TOKEN", TOKEN));
    assert_eq!(
        (limited.status, limited.text.as_str(), limited.header("retry-after")),
        (429, "Retry later\n", Some("9"))
    );
    assert!(limited.header("ratelimit-remaining").is_some());
    gl.set_rate_limit(1);
    let over = send(client.get(gl_url(&gl, "")).header("PRIVATE-TOKEN", TOKEN));
    assert_eq!((over.status, over.header("ratelimit-remaining")), (429, Some("0")));
    assert!(over.header("retry-after").is_some());
}

// --- Jenkins --------------------------------------------------------------------------------

const USER: &str = "deployer";

fn jenkins() -> (Jenkins, Client) {
    let jenkins = Jenkins::start(USER, TOKEN);
    jenkins.add_job("deploy");
    jenkins.add_job("team/prod/deploy");
    (jenkins, client())
}

fn jk(client: &Client, method: reqwest::Method, url: &str) -> RequestBuilder {
    client.request(method, url).basic_auth(USER, Some(TOKEN))
}

#[test]
fn jenkins_trigger_answers_201_then_the_queue_item_becomes_a_build_with_each_result() {
    let cases = [
        (Outcome::Success, "SUCCESS"),
        (Outcome::Failure, "FAILURE"),
        (Outcome::Cancelled, "ABORTED"),
        (Outcome::Other("UNSTABLE".into()), "UNSTABLE"),
    ];
    for (outcome, result) in cases {
        let (jenkins, client) = jenkins();
        jenkins.script(outcome.clone(), 1);
        let url = format!("{}/job/team/job/prod/job/deploy/buildWithParameters", jenkins.url());
        let form = [("FLAG", "off"), ("ROLLOUT_REF", "main"), ("delay", "0sec")];
        let answer = send(jk(&client, reqwest::Method::POST, &url).form(&form));
        assert_eq!((answer.status, answer.text.as_str()), (201, ""), "{outcome:?}");
        let location = answer.header("location").unwrap().to_string();
        assert_eq!(location, format!("{}/queue/item/41/", jenkins.url()));
        assert!(answer.header("x-jenkins").is_some());

        let item = |c: &Client| send(jk(c, reqwest::Method::GET, &format!("{location}api/json"))).body;
        let waiting = item(&client);
        assert_eq!(waiting["_class"], "hudson.model.Queue$WaitingItem");
        assert!(waiting["why"].is_string());
        assert!(waiting.get("executable").is_none());
        assert_eq!(waiting["params"], "\nFLAG=off\nROLLOUT_REF=main");
        let left = item(&client);
        assert_eq!(left["_class"], "hudson.model.Queue$LeftItem");
        assert_eq!(left["cancelled"], false);
        assert_eq!(left["executable"]["number"], 1);
        let build_url = left["executable"]["url"].as_str().unwrap().to_string();
        assert_eq!(build_url, format!("{}/job/team/job/prod/job/deploy/1/", jenkins.url()));

        let build = |c: &Client| {
            send(jk(c, reqwest::Method::GET, &format!("{build_url}api/json")).query(&[("tree", "building,result,url")]))
                .body
        };
        let running = build(&client);
        assert_eq!(
            running,
            json!({"_class": "hudson.model.FreeStyleBuild", "building": true, "result": null, "url": build_url})
        );
        let done = build(&client);
        assert_eq!((done["building"].clone(), done["result"].clone()), (json!(false), json!(result)), "{outcome:?}");

        let run = &jenkins.runs()[0];
        assert_eq!((run.queue_id, run.job.as_str(), run.number), (41, "team/prod/deploy", Some(1)));
        assert_eq!(
            run.params,
            vec![("FLAG".to_string(), "off".to_string()), ("ROLLOUT_REF".to_string(), "main".to_string())]
        );
        assert_eq!((jenkins.queue_poll_count(41), jenkins.build_poll_count(41), jenkins.poll_count(41)), (2, 2, 4));
    }
}

#[test]
fn jenkins_needs_human_stays_blocked_in_the_queue_and_a_cancelled_item_says_so() {
    let (jenkins, client) = jenkins();
    jenkins.script(Outcome::NeedsHuman, 0);
    let url = format!("{}/job/deploy/buildWithParameters?FLAG=off", jenkins.url());
    let location = send(jk(&client, reqwest::Method::POST, &url)).header("location").unwrap().to_string();
    for _ in 0..3 {
        let item = send(jk(&client, reqwest::Method::GET, &format!("{location}api/json"))).body;
        assert_eq!(
            (item["_class"].clone(), item["blocked"].clone()),
            (json!("hudson.model.Queue$BlockedItem"), json!(true))
        );
        assert_eq!(item["why"], "Waiting for approval");
    }
    assert_eq!(jenkins.runs()[0].params, vec![("FLAG".to_string(), "off".to_string())]);

    jenkins.script(Outcome::Success, 0);
    jenkins.queue_script(0, QueueEnd::Cancelled);
    let location = send(jk(&client, reqwest::Method::POST, &url)).header("location").unwrap().to_string();
    let item = send(
        jk(&client, reqwest::Method::GET, &format!("{location}api/json"))
            .query(&[("tree", "cancelled,executable[number],why")]),
    )
    .body;
    assert_eq!(
        item,
        json!({"_class": "hudson.model.Queue$LeftItem", "cancelled": true, "executable": null, "why": null})
    );
}

#[test]
fn jenkins_merges_an_identical_trigger_into_the_queued_item_with_303() {
    let (jenkins, client) = jenkins();
    let url = format!("{}/job/deploy/buildWithParameters", jenkins.url());
    let first = send(jk(&client, reqwest::Method::POST, &url).form(&[("FLAG", "off")]));
    assert_eq!(first.status, 201);
    jenkins.merge_next_trigger();
    let merged = send(jk(&client, reqwest::Method::POST, &url).form(&[("FLAG", "off")]));
    assert_eq!(merged.status, 303);
    assert_eq!(merged.header("location"), first.header("location"));
    assert_eq!(jenkins.runs().len(), 1);
    assert_eq!(jenkins.runs()[0].merged, 1);
    let third = send(jk(&client, reqwest::Method::POST, &url).form(&[("FLAG", "off")]));
    assert_eq!(
        (third.status, third.header("location").map(str::to_string)),
        (201, Some(format!("{}/queue/item/42/", jenkins.url())))
    );
    assert_eq!(jenkins.non_get_count(), 3);
}

#[test]
fn jenkins_with_a_password_needs_the_crumb_and_its_session_cookie() {
    let jenkins = Jenkins::with_password(USER, "hunter2");
    jenkins.add_job("deploy");
    let client = client();
    let trigger = format!("{}/job/deploy/buildWithParameters", jenkins.url());
    let post = || client.post(&trigger).basic_auth(USER, Some("hunter2")).form(&[("FLAG", "off")]);
    let refused = send(post());
    assert_eq!(refused.status, 403);
    assert!(refused.text.contains("No valid crumb was included in the request"), "{}", refused.text);

    let issued = send(client.get(format!("{}/crumbIssuer/api/json", jenkins.url())).basic_auth(USER, Some("hunter2")));
    assert_eq!(issued.status, 200);
    assert_eq!(issued.body["crumbRequestField"], "Jenkins-Crumb");
    assert_eq!(issued.body["_class"], "hudson.security.csrf.DefaultCrumbIssuer");
    let crumb = issued.body["crumb"].as_str().unwrap().to_string();
    assert_eq!(crumb.len(), 64);
    let cookie = issued.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("JSESSIONID."), "{cookie}");

    assert_eq!(
        send(post().header("Jenkins-Crumb", &crumb)).status,
        403,
        "the crumb alone, without its session, is refused"
    );
    assert_eq!(send(post().header("Cookie", &cookie).header("Jenkins-Crumb", "0".repeat(64))).status, 403);
    let accepted = send(post().header("Cookie", &cookie).header("Jenkins-Crumb", &crumb));
    assert_eq!(accepted.status, 201);
    assert_eq!(jenkins.runs().len(), 1);
    // The API token path of another instance needs no crumb at all.
    let (token_jenkins, client) = self::jenkins();
    let url = format!("{}/job/deploy/buildWithParameters", token_jenkins.url());
    assert_eq!(send(jk(&client, reqwest::Method::POST, &url)).status, 201);
}

#[test]
fn jenkins_refuses_bad_credentials_and_unknown_or_disabled_jobs() {
    let (jenkins, client) = jenkins();
    let job = format!("{}/job/deploy/api/json", jenkins.url());
    let wrong = send(client.get(&job).basic_auth(USER, Some("wrong")));
    assert_eq!(wrong.status, 401);
    assert!(wrong.text.contains("Invalid password/token for user: deployer"));
    assert_eq!(wrong.header("www-authenticate"), Some("Basic realm=\"Jenkins\""));
    let anonymous = send(client.get(&job));
    assert_eq!((anonymous.status, anonymous.header("x-you-are-authenticated-as")), (403, Some("anonymous")));
    assert!(anonymous.text.contains("Authentication required"));

    let unknown = send(jk(&client, reqwest::Method::GET, &format!("{}/job/nope/api/json", jenkins.url())));
    assert_eq!(unknown.status, 404);
    let unknown_post =
        send(jk(&client, reqwest::Method::POST, &format!("{}/job/nope/buildWithParameters", jenkins.url())));
    assert_eq!(unknown_post.status, 404);

    let details = send(jk(&client, reqwest::Method::GET, &job).query(&[("tree", "buildable,fullName,url")]));
    assert_eq!(
        details.body,
        json!({"_class": "hudson.model.FreeStyleProject", "buildable": true, "fullName": "deploy", "url": format!("{}/job/deploy/", jenkins.url())})
    );
    let folder = send(jk(&client, reqwest::Method::GET, &format!("{}/job/team/api/json", jenkins.url())));
    assert_eq!(folder.body["_class"], "com.cloudbees.hudson.plugins.folder.Folder");
    assert_eq!(folder.body["jobs"][0]["name"], "prod");
    let nested =
        send(jk(&client, reqwest::Method::GET, &format!("{}/job/team/job/prod/job/deploy/api/json", jenkins.url())));
    assert_eq!(nested.body["fullName"], "team/prod/deploy");

    jenkins.disable_job("deploy");
    let disabled =
        send(jk(&client, reqwest::Method::POST, &format!("{}/job/deploy/buildWithParameters", jenkins.url())));
    assert_eq!(disabled.status, 409);
    assert!(disabled.text.contains("deploy is not buildable!"));
    let details = send(jk(&client, reqwest::Method::GET, &job));
    assert_eq!((details.body["buildable"].clone(), details.body["color"].clone()), (json!(false), json!("disabled")));
    let get = send(jk(
        &client,
        reqwest::Method::GET,
        &format!("{}/job/team/job/prod/job/deploy/buildWithParameters", jenkins.url()),
    ));
    assert_eq!(get.status, 405);
    assert!(jenkins.runs().is_empty());

    jenkins.fault(Fault::Status(503));
    let down = send(jk(&client, reqwest::Method::GET, &job));
    assert_eq!(down.status, 503);
    assert!(down.text.contains("HTTP ERROR 503"));
}

// --- Buildkite ------------------------------------------------------------------------------

const ORG: &str = "acme";
const PIPELINE: &str = "deploy";

fn buildkite() -> (Buildkite, Client) {
    let bk = Buildkite::start(TOKEN);
    bk.add_pipeline(ORG, PIPELINE);
    (bk, client())
}

fn bk_url(bk: &Buildkite, rest: &str) -> String {
    format!("{}/v2/organizations/{ORG}/pipelines/{PIPELINE}{rest}", bk.url())
}

#[test]
fn buildkite_build_is_created_then_goes_scheduled_running_to_each_state() {
    let cases = [
        (Outcome::Success, "passed"),
        (Outcome::Failure, "failed"),
        (Outcome::Cancelled, "canceled"),
        (Outcome::NeedsHuman, "blocked"),
        (Outcome::Other("not_run".into()), "not_run"),
    ];
    for (outcome, last) in cases {
        let (bk, client) = buildkite();
        bk.script(outcome.clone(), 2);
        let body = json!({"commit": SHA, "branch": "main", "message": "Roll back flag", "env": {"FLAG": "off"}});
        let created = send(client.post(bk_url(&bk, "/builds")).bearer_auth(TOKEN).json(&body));
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.body["number"], 1);
        assert_eq!(created.body["state"], "scheduled");
        assert_eq!(created.body["commit"], SHA);
        assert_eq!(created.body["web_url"], "https://buildkite.com/acme/deploy/builds/1");
        assert_eq!(created.body["url"], json!(bk_url(&bk, "/builds/1")));
        assert_eq!(created.body["env"], json!({"FLAG": "off"}));

        let poll = || send(client.get(bk_url(&bk, "/builds/1")).bearer_auth(TOKEN)).body;
        let states: Vec<Value> = (0..3).map(|_| poll()["state"].clone()).collect();
        assert_eq!(states, vec![json!("scheduled"), json!("running"), json!(last)], "{outcome:?}");
        assert_eq!(poll()["blocked"], json!(last == "blocked"));
        assert_eq!(bk.poll_count(PIPELINE, 1), 4);
        let run = &bk.runs()[0];
        assert_eq!(
            (run.commit.as_str(), run.branch.as_str(), run.message.as_deref()),
            (SHA, "main", Some("Roll back flag"))
        );
        assert_eq!(run.env, json!({"FLAG": "off"}));
    }
}

#[test]
fn buildkite_unknown_things_are_404_a_wrong_token_401_and_a_bad_build_422() {
    let (bk, client) = buildkite();
    let pipeline = send(client.get(bk_url(&bk, "")).bearer_auth(TOKEN));
    assert_eq!((pipeline.status, pipeline.body["slug"].clone()), (200, json!(PIPELINE)));
    assert_eq!(pipeline.body["builds_url"], json!(bk_url(&bk, "/builds")));
    let other = send(client.get(format!("{}/v2/organizations/{ORG}/pipelines/nope", bk.url())).bearer_auth(TOKEN));
    assert_eq!((other.status, other.body.clone()), (404, json!({"message": "No pipeline found"})));
    let org = send(client.get(format!("{}/v2/organizations/nope/pipelines/{PIPELINE}", bk.url())).bearer_auth(TOKEN));
    assert_eq!((org.status, org.body.clone()), (404, json!({"message": "No organization found"})));
    let build = send(client.get(bk_url(&bk, "/builds/9")).bearer_auth(TOKEN));
    assert_eq!((build.status, build.body.clone()), (404, json!({"message": "No build found"})));
    let wrong = send(client.get(bk_url(&bk, "")).bearer_auth("wrong"));
    assert_eq!(wrong.status, 401);
    assert!(wrong.body["message"].as_str().unwrap().starts_with("Authentication required."));
    assert_eq!(send(client.get(bk_url(&bk, ""))).status, 401);
    let invalid = send(client.post(bk_url(&bk, "/builds")).bearer_auth(TOKEN).json(&json!({"branch": "main"})));
    assert_eq!(invalid.status, 422);
    assert_eq!(
        invalid.body,
        json!({"message": "Validation Failed", "errors": [{"field": "commit", "code": "missing"}]})
    );
    assert!(bk.runs().is_empty());
}

#[test]
fn buildkite_rate_limit_headers_count_down_and_an_exhausted_limit_answers_429() {
    let (bk, client) = buildkite();
    let first = send(client.get(bk_url(&bk, "")).bearer_auth(TOKEN));
    let second = send(client.get(bk_url(&bk, "")).bearer_auth(TOKEN));
    assert_eq!(first.number("ratelimit-limit"), 200);
    assert_eq!(first.header("ratelimit-scope"), Some("rest"));
    assert_eq!(second.number("ratelimit-remaining"), first.number("ratelimit-remaining") - 1);
    assert!((1..=60).contains(&first.number("ratelimit-reset")), "seconds until the window ends");
    assert_eq!(first.number("ratelimit-user-limit"), 50);
    assert_eq!(second.number("ratelimit-user-remaining"), first.number("ratelimit-user-remaining") - 1);

    bk.fault(Fault::RateLimited { retry_after: 4 });
    let limited = send(client.get(bk_url(&bk, "")).bearer_auth(TOKEN));
    assert_eq!((limited.status, limited.header("retry-after")), (429, Some("4")));
    assert_eq!(limited.body["scope"], "rest");

    bk.set_rate_limits(200, 3);
    let over = send(client.get(bk_url(&bk, "")).bearer_auth(TOKEN));
    assert_eq!((over.status, over.header("ratelimit-user-remaining")), (429, Some("0")));
    assert_eq!(over.body["scope"], "rest_user");
    assert!(over.body["message"].as_str().unwrap().starts_with("You have exceeded your API rate limit."));
    assert_eq!((over.body["limit"].clone(), over.body["current"].clone()), (json!(3), json!(4)));
}
