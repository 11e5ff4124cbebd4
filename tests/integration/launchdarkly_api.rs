//! Every request the LaunchDarkly emulator takes from a flag step, checked against LaunchDarkly's
//! published API description, as its generated client carries it (npm
//! launchdarkly-api-typescript, installed by scripts/test): method, path template, query
//! parameter names, and the semantic-patch Content-Type the description documents.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::http_server::Request;
use crate::support::launchdarkly::LaunchDarkly;
use crate::support::{Env, FLAG};

const CLIENT: &str = "tests/services/launchdarkly-api/node_modules/launchdarkly-api-typescript/api.ts";
const TOKEN: &str = "api-ld-openapi-check-7d31c0";

/// Each published operation: (method, path template) → the query parameters it takes.
type Operations = BTreeMap<(String, String), BTreeSet<String>>;

fn client() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CLIENT);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: needs launchdarkly-api-typescript: run scripts/test", path.display()))
}

/// The operations, as the generated client writes each one: ``const localVarPath =
/// `/api/v2/flags/{projectKey}/{featureFlagKey}` `` then `{ method: 'PATCH', ...}` and
/// `localVarQueryParameter['env']` for each query parameter, up to the next operation.
fn operations(source: &str) -> Operations {
    const PATH: &str = "const localVarPath = `";
    let mut found = Operations::new();
    let starts: Vec<usize> = source.match_indices(PATH).map(|(at, _)| at + PATH.len()).collect();
    for (n, &start) in starts.iter().enumerate() {
        let block = &source[start..starts.get(n + 1).copied().unwrap_or(source.len())];
        let template = &block[..block.find('`').expect("a closed path template")];
        let method = block.split_once("method: '").and_then(|(_, rest)| rest.split_once('\'')).map(|(m, _)| m);
        let method = method.unwrap_or_else(|| panic!("{template}: no method"));
        let query = block
            .split("localVarQueryParameter['")
            .skip(1)
            .filter_map(|rest| rest.split_once('\'').map(|(name, _)| name.to_string()));
        found.entry((method.to_string(), template.to_string())).or_default().extend(query);
    }
    found
}

/// The semantic-patch Content-Type the description documents (its "Updates using semantic
/// patch" section: ``` Content-Type: application/json; domain-model=launchdarkly.semanticpatch ```).
fn documented_semantic_patch(source: &str) -> String {
    source
        .split("Content-Type: ")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .map(str::trim)
        .find(|value| value.contains("domain-model=launchdarkly.semanticpatch"))
        .expect("the description documents the semantic-patch Content-Type")
        .to_string()
}

/// The published operation a request is for: its template matched segment by segment, a
/// `{name}` segment matching any one non-empty segment.
fn operation<'a>(operations: &'a Operations, request: &Request) -> Option<(&'a str, &'a BTreeSet<String>)> {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    operations.iter().find_map(|((method, template), query)| {
        let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
        let matches = method.eq_ignore_ascii_case(&request.method)
            && parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(part, segment)| {
                if part.starts_with('{') && part.ends_with('}') { !segment.is_empty() } else { part == segment }
            });
        matches.then_some((template.as_str(), query))
    })
}

/// What is wrong with one request, by the description.
fn problems(operations: &Operations, semantic_patch: &str, request: &Request) -> Vec<String> {
    let shown = format!("{} {}", request.method, request.path);
    let Some((template, query)) = operation(operations, request) else {
        return vec![format!("{shown}: no such operation in LaunchDarkly's API")];
    };
    let mut found = Vec::new();
    for (name, _) in url::form_urlencoded::parse(request.query.as_bytes()) {
        if !query.contains(name.as_ref()) {
            found.push(format!("{shown}: query parameter {name} is not one of {template}'s"));
        }
    }
    if request.method == "PATCH" {
        let normal = |value: &str| value.replace(' ', "").to_ascii_lowercase();
        let sent = request.header("content-type").unwrap_or("");
        if normal(sent) != normal(semantic_patch) {
            found.push(format!("{shown}: Content-Type is {sent:?}, not the documented {semantic_patch:?}"));
        }
    }
    found
}

/// One-step runbooks that set the flag (off, a percentage, on), against the emulator.
fn workspace(server: &LaunchDarkly) -> Env {
    let runbook = |name: &str, change: &str| {
        format!(
            "version: 1\ntitle: {name}\ninputs:\n  percent: {{ type: percent, default: 5 }}\nsteps:\n  - id: {name}\n    name: Set the flag\n    flag: {{ name: {FLAG}, {change} }}\n"
        )
    };
    Env::workspace(&format!(
        "version: 1\nflags: {{ provider: launchdarkly, url: \"{}\", project: va, environment: production, token_env: LD_TOKEN }}\nhttp: {{ timeout: 1s, connect_timeout: 1s, retries: 2, max_wait: 5s }}\n",
        server.url()
    ))
    .runbook("off", &runbook("off", "state: off"))
    .runbook("on", &runbook("on", "state: on"))
    .runbook("share", &runbook("share", "state: on, percent: \"{{ inputs.percent }}\""))
    .var("LD_TOKEN", TOKEN)
}

#[test]
#[ignore = "needs the LaunchDarkly API description: run scripts/test"]
fn every_request_the_launchdarkly_emulator_takes_is_a_published_operation() {
    let source = client();
    let operations = operations(&source);
    assert!(operations.len() >= 150, "only {} operations found in {CLIENT}", operations.len());
    let semantic_patch = documented_semantic_patch(&source);
    assert_eq!(semantic_patch, crate::support::launchdarkly::SEMANTIC_PATCH);

    let server = LaunchDarkly::start(TOKEN);
    server.add_flag("va", FLAG, &["production", "staging"]);
    let env = workspace(&server);
    env.run(&["run", "share", "--yes", "--var", "percent=5"]).code(0);
    env.run(&["run", "off", "--yes"]).code(0);
    env.run(&["run", "on", "--yes"]).code(0);

    let requests = server.requests();
    let patches = requests.iter().filter(|r| r.method == "PATCH").count();
    assert!(patches >= 3 && requests.len() > patches, "{} requests, {patches} patches", requests.len());
    let all: Vec<String> = requests.iter().flat_map(|r| problems(&operations, &semantic_patch, r)).collect();
    assert!(all.is_empty(), "requests that LaunchDarkly's description does not allow:\n{}", all.join("\n"));
}

#[test]
#[ignore = "needs the LaunchDarkly API description: run scripts/test"]
fn the_check_itself_catches_a_request_launchdarkly_does_not_publish() {
    let source = client();
    let operations = operations(&source);
    let semantic_patch = documented_semantic_patch(&source);
    let patch = Request {
        method: "PATCH".into(),
        path: format!("/api/v2/flags/va/{FLAG}"),
        query: String::new(),
        headers: vec![("content-type".into(), semantic_patch.clone())],
        body: b"{\"environmentKey\":\"production\",\"instructions\":[{\"kind\":\"turnFlagOn\"}]}".to_vec(),
    };
    assert_eq!(problems(&operations, &semantic_patch, &patch), Vec::<String>::new());

    let unknown = Request { path: format!("/api/v2/flags/va/{FLAG}/toggle"), ..patch.clone() };
    assert_eq!(
        problems(&operations, &semantic_patch, &unknown),
        [format!("PATCH /api/v2/flags/va/{FLAG}/toggle: no such operation in LaunchDarkly's API")]
    );
    let wrong_method = Request { method: "PUT".into(), ..patch.clone() };
    assert_eq!(
        problems(&operations, &semantic_patch, &wrong_method),
        [format!("PUT /api/v2/flags/va/{FLAG}: no such operation in LaunchDarkly's API")]
    );
    let query = Request { query: "colour=red".into(), ..patch.clone() };
    let found = problems(&operations, &semantic_patch, &query);
    assert!(found.iter().any(|p| p.contains("query parameter colour")), "{found:?}");
    let json_patch = Request { headers: vec![("content-type".into(), "application/json".into())], ..patch };
    let found = problems(&operations, &semantic_patch, &json_patch);
    assert!(found.iter().any(|p| p.contains("not the documented")), "{found:?}");
}
