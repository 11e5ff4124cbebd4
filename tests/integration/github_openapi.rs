//! Every request rollout sends to GitHub, checked against GitHub's official OpenAPI description
//! (npm @octokit/openapi, installed by scripts/test): path, method, query and body.

use serde_json::{Value, json};

use crate::support::Env;
use crate::support::github::{GitHub, Mode, Outcome};
use crate::support::http_server::Request;

const SPEC: &str = "tests/services/github-openapi/node_modules/@octokit/openapi/generated/api.github.com.json";
const TOKEN: &str = "ghp_openapi_check_123456";

fn spec() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SPEC);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: needs @octokit/openapi: run scripts/test", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A `$ref` within the description, followed.
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(pointer) => {
            spec.pointer(pointer.trim_start_matches('#')).unwrap_or_else(|| panic!("unresolved {pointer}"))
        }
        None => value,
    }
}

/// The operation a request is for: its path template matched segment by segment.
fn operation<'a>(spec: &'a Value, request: &Request) -> Option<(&'a str, &'a Value)> {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    spec["paths"].as_object()?.iter().find_map(|(template, item)| {
        let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
        let matches = parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(part, segment)| part.starts_with('{') || part == segment);
        let op = item.get(request.method.to_ascii_lowercase())?;
        matches.then_some((template.as_str(), op))
    })
}

/// What is wrong with one request, by the description.
fn problems(spec: &Value, request: &Request) -> Vec<String> {
    let shown = format!("{} {}", request.method, request.path);
    let Some((template, op)) = operation(spec, request) else {
        return vec![format!("{shown}: no such operation in GitHub's API")];
    };
    let mut found = Vec::new();
    let parameters: Vec<&Value> = op["parameters"].as_array().into_iter().flatten().map(|p| resolve(spec, p)).collect();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(request.query.as_bytes()).into_owned().collect();
    for (name, _) in &query {
        if !parameters.iter().any(|p| p["in"] == "query" && p["name"] == name.as_str()) {
            found.push(format!("{shown}: query parameter {name} is not one of {template}'s"));
        }
    }
    for required in parameters.iter().filter(|p| p["in"] == "query" && p["required"] == true) {
        if !query.iter().any(|(name, _)| required["name"] == name.as_str()) {
            found.push(format!("{shown}: misses the required query parameter {}", required["name"]));
        }
    }
    if let Some(schema) = op.pointer("/requestBody/content/application~1json/schema") {
        let body = request.json().unwrap_or(Value::Null);
        let mut root = resolve(spec, schema).clone();
        root["components"] = spec["components"].clone();
        let validator = jsonschema::validator_for(&root).expect("a valid schema");
        found.extend(validator.iter_errors(&body).map(|e| format!("{shown}: body {body}: {e}")));
    } else if !request.body.is_empty() {
        found.push(format!("{shown}: sends a body the operation does not take"));
    }
    if request.header("accept") != Some("application/vnd.github+json") {
        found.push(format!("{shown}: Accept is {:?}, not application/vnd.github+json", request.header("accept")));
    }
    if request.header("x-github-api-version") != Some("2022-11-28") {
        found.push(format!("{shown}: no X-GitHub-Api-Version: 2022-11-28"));
    }
    found
}

#[test]
#[ignore = "needs the GitHub OpenAPI description: run scripts/test"]
fn every_request_to_github_matches_its_openapi_description() {
    let spec = spec();
    let mut checked = 0;
    let mut all = Vec::new();
    for mode in [Mode::Details, Mode::NoDetails] {
        let server = GitHub::start(TOKEN);
        server.add_branch("va/vets-website", "main", "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
        server.add_workflow("va/vets-website", "deploy.yml");
        server.set_mode(mode);
        server.script(Outcome::Success, 2);
        let env = Env::new();
        env.write(
            "rollout.yaml",
            &format!(
                "version: 1\nci: {{ provider: github, repo: va/vets-website, token_env: GITHUB_TOKEN, url: \"{}\" }}\n",
                server.url()
            ),
        );
        env.write(
            "runbooks/deploy.yaml",
            "version: 1\ntitle: Deploy\nsteps:\n  - id: deploy\n    name: Deploy\n    ci: { pipeline: deploy.yml, ref: main, inputs: { reason: incident }, timeout: 30s }\n",
        );
        env.run_with(&["run", "deploy", "--yes"], &[("GITHUB_TOKEN", TOKEN)]).code(0);
        for request in server.requests() {
            checked += 1;
            all.extend(problems(&spec, &request));
        }
    }
    assert!(checked >= 12, "only {checked} requests were checked");
    assert!(all.is_empty(), "requests that GitHub's description does not allow:\n{}", all.join("\n"));
}

#[test]
#[ignore = "needs the GitHub OpenAPI description: run scripts/test"]
fn the_check_itself_catches_a_request_github_would_refuse() {
    let spec = spec();
    let bad = Request {
        method: "POST".into(),
        path: "/repos/va/app/actions/workflows/deploy.yml/dispatches".into(),
        query: "colour=red".into(),
        headers: vec![
            ("accept".into(), "application/vnd.github+json".into()),
            ("x-github-api-version".into(), "2022-11-28".into()),
        ],
        body: json!({ "branch": "main", "return_run_details": "yes" }).to_string().into_bytes(),
    };
    let found = problems(&spec, &bad);
    assert!(found.iter().any(|p| p.contains("query parameter colour")), "{found:?}");
    assert!(found.iter().any(|p| p.contains("\"ref\" is a required property")), "{found:?}");
    assert!(found.iter().any(|p| p.contains("is not of type \"boolean\"")), "{found:?}");
    let unknown = Request { path: "/repos/va/app/actions/workflows/deploy.yml/launch".into(), ..bad };
    assert_eq!(
        problems(&spec, &unknown),
        ["POST /repos/va/app/actions/workflows/deploy.yml/launch: no such operation in GitHub's API"]
    );
}
