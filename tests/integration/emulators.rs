//! The flag-service emulators checked directly with a plain HTTP client: status codes, bodies
//! and headers as the vendors document them, fault injection and request recording.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::support::flipper::{Flipper, Gates};
use crate::support::http_server::Fault;
use crate::support::launchdarkly::{EnvState, Fallthrough, LaunchDarkly, SEMANTIC_PATCH};

const TOKEN: &str = "secret-token";
const FEATURE: &str = "travel_pay_claim_status";

fn client() -> Client {
    Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap()
}

fn send(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().expect("response");
    let status = response.status().as_u16();
    (status, json_of(response))
}

fn json_of(response: Response) -> Value {
    let text = response.text().unwrap();
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// The value of the gate with that key in a Flipper feature object.
fn gate(feature: &Value, key: &str) -> Value {
    feature["gates"].as_array().unwrap().iter().find(|g| g["key"] == key).expect("gate")["value"].clone()
}

fn flipper() -> (Flipper, Client) {
    let flipper = Flipper::start(TOKEN);
    flipper.add(FEATURE);
    (flipper, client())
}

fn flipper_call(flipper: &Flipper, client: &Client, method: &str, path: &str) -> RequestBuilder {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    client.request(method, format!("{}{path}", flipper.url())).bearer_auth(TOKEN)
}

#[test]
fn flipper_serves_the_gems_feature_shape_and_404_for_an_unknown_feature() {
    let (flipper, client) = flipper();
    assert!(flipper.url().ends_with("/flipper/api"));
    let (status, body) = send(flipper_call(&flipper, &client, "GET", &format!("/features/{FEATURE}")));
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"key": FEATURE, "state": "off", "gates": [
            {"key": "boolean", "name": "boolean", "value": null},
            {"key": "expression", "name": "expression", "value": null},
            {"key": "actors", "name": "actor", "value": []},
            {"key": "percentage_of_actors", "name": "percentage_of_actors", "value": null},
            {"key": "percentage_of_time", "name": "percentage_of_time", "value": null},
            {"key": "groups", "name": "group", "value": []},
        ]})
    );
    let (status, body) = send(flipper_call(&flipper, &client, "GET", "/features/no_such_feature"));
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"code": 1, "message": "Feature not found.",
               "more_info": "https://flippercloud.io/docs/api#error-code-reference"})
    );
    let (status, body) = send(flipper_call(&flipper, &client, "GET", "/features"));
    assert_eq!(status, 200);
    assert_eq!(body["features"][0]["key"], FEATURE);
}

#[test]
fn flipper_percentage_of_actors_round_trip_form_and_json() {
    let (flipper, client) = flipper();
    let path = format!("/features/{FEATURE}/percentage_of_actors");
    let (status, body) = send(flipper_call(&flipper, &client, "POST", &path).form(&[("percentage", "5")]));
    assert_eq!(status, 200);
    assert_eq!((body["state"].clone(), gate(&body, "percentage_of_actors")), (json!("conditional"), json!("5")));

    let (status, body) = send(flipper_call(&flipper, &client, "POST", &path).json(&json!({"percentage": 25})));
    assert_eq!((status, gate(&body, "percentage_of_actors")), (200, json!("25")));
    let (_, body) = send(flipper_call(&flipper, &client, "POST", &path).json(&json!({"percentage": "0.5"})));
    assert_eq!(gate(&body, "percentage_of_actors"), json!("0.5"));

    for bad in ["101", "-1", "abc", ""] {
        let (status, body) = send(flipper_call(&flipper, &client, "POST", &path).form(&[("percentage", bad)]));
        assert_eq!(status, 422, "percentage {bad:?}");
        assert_eq!(body["code"], 3);
        assert_eq!(body["message"], "Percentage must be a positive number less than or equal to 100.");
    }
    assert_eq!(flipper.gates(FEATURE).unwrap().percentage_of_actors.as_deref(), Some("0.5"));

    let (status, body) = send(flipper_call(&flipper, &client, "DELETE", &path));
    assert_eq!((status, body["state"].clone(), gate(&body, "percentage_of_actors")), (200, json!("off"), json!("0")));
}

fn launchdarkly() -> (LaunchDarkly, Client) {
    let ld = LaunchDarkly::start(TOKEN);
    ld.add_flag("default", FEATURE, &["production", "staging"]);
    (ld, client())
}

fn ld_flag(ld: &LaunchDarkly) -> String {
    format!("{}/api/v2/flags/default/{FEATURE}", ld.url())
}

fn ld_patch(ld: &LaunchDarkly, client: &Client, body: Value) -> (u16, Value) {
    let request = client.patch(ld_flag(ld)).header("Authorization", TOKEN);
    send(request.header("Content-Type", SEMANTIC_PATCH).body(body.to_string()))
}

#[test]
fn launchdarkly_get_flag_shape_env_filter_and_404s() {
    let (ld, client) = launchdarkly();
    let (status, body) = send(client.get(ld_flag(&ld)).query(&[("env", "production")]).header("Authorization", TOKEN));
    assert_eq!(status, 200);
    assert_eq!(body["key"], FEATURE);
    assert_eq!(body["_version"], 1);
    assert_eq!(
        body["variations"][0],
        json!({"_id": ld.variation_id("default", FEATURE, 0), "value": true, "name": "true"})
    );
    assert_eq!(body["variations"][1]["value"], false);
    let production = &body["environments"]["production"];
    assert_eq!(production["on"], true);
    assert_eq!(production["fallthrough"], json!({"variation": 0}));
    assert_eq!(production["offVariation"], 1);
    assert_eq!(production["version"], 1);
    assert_eq!((production["rules"].clone(), production["targets"].clone()), (json!([]), json!([])));
    assert!(body["environments"].get("staging").is_none(), "env= keeps only that environment");

    let (_, all) = send(client.get(ld_flag(&ld)).header("Authorization", TOKEN));
    assert_eq!(all["environments"].as_object().unwrap().len(), 2);

    for path in ["/api/v2/flags/default/no-such-flag".to_string(), format!("/api/v2/flags/no-such-project/{FEATURE}")] {
        let (status, body) = send(client.get(format!("{}{path}", ld.url())).header("Authorization", TOKEN));
        assert_eq!((status, body["code"].clone()), (404, json!("not_found")), "{path}");
        assert!(body["message"].is_string());
    }
}

#[test]
fn launchdarkly_answers_401_without_the_exact_token() {
    let (ld, client) = launchdarkly();
    for request in [
        client.get(ld_flag(&ld)),
        client.get(ld_flag(&ld)).header("Authorization", "wrong"),
        client.get(ld_flag(&ld)).bearer_auth(TOKEN),
    ] {
        let (status, body) = send(request);
        assert_eq!(status, 401);
        assert_eq!(
            (body["code"].clone(), body["message"].clone()),
            (json!("unauthorized"), json!("Invalid account ID header"))
        );
    }
    let (status, _) = send(
        client
            .patch(ld_flag(&ld))
            .header("Content-Type", SEMANTIC_PATCH)
            .body(json!({"environmentKey": "production", "instructions": [{"kind": "turnFlagOff"}]}).to_string()),
    );
    assert_eq!(status, 401);
    assert!(ld.env("default", FEATURE, "production").unwrap().on, "a refused patch changes nothing");
}

#[test]
fn launchdarkly_semantic_patch_turns_off_and_on_and_bumps_versions() {
    let (ld, client) = launchdarkly();
    let off = json!({"environmentKey": "production", "comment": "incident", "instructions": [{"kind": "turnFlagOff"}]});
    let (status, body) = ld_patch(&ld, &client, off.clone());
    assert_eq!(status, 200);
    assert_eq!((body["environments"]["production"]["on"].clone(), body["_version"].clone()), (json!(false), json!(2)));
    assert_eq!(body["environments"]["production"]["version"], 2);
    assert_eq!(body["environments"]["staging"]["on"], true, "only the named environment changes");

    let (_, body) = ld_patch(&ld, &client, off);
    assert_eq!(body["_version"], 2, "an instruction that changes nothing does not bump the version");

    let on = json!({"environmentKey": "production", "instructions": [{"kind": "turnFlagOn"}]});
    let (status, body) = ld_patch(&ld, &client, on);
    assert_eq!(
        (status, body["environments"]["production"]["on"].clone(), body["_version"].clone()),
        (200, json!(true), json!(3))
    );
}

#[test]
fn launchdarkly_fallthrough_rollout_weights_and_back_to_a_variation() {
    let (ld, client) = launchdarkly();
    let (on, off) = (ld.variation_id("default", FEATURE, 0), ld.variation_id("default", FEATURE, 1));
    let rollout = json!({"environmentKey": "production", "instructions": [
        {"kind": "updateFallthroughVariationOrRollout", "rolloutWeights": {on.clone(): 5000, off.clone(): 95000}}]});
    let (status, body) = ld_patch(&ld, &client, rollout);
    assert_eq!(status, 200);
    assert_eq!(
        body["environments"]["production"]["fallthrough"],
        json!({"rollout": {"variations": [{"variation": 0, "weight": 5000}, {"variation": 1, "weight": 95000}]}})
    );
    assert_eq!(
        ld.env("default", FEATURE, "production").unwrap().fallthrough,
        Fallthrough::Rollout(vec![(0, 5000), (1, 95000)])
    );

    let back = json!({"environmentKey": "production", "instructions": [
        {"kind": "updateFallthroughVariationOrRollout", "variationId": on}]});
    let (status, body) = ld_patch(&ld, &client, back);
    assert_eq!((status, body["environments"]["production"]["fallthrough"].clone()), (200, json!({"variation": 0})));
}

#[test]
fn launchdarkly_rejects_bad_patches_with_400_and_changes_nothing() {
    let (ld, client) = launchdarkly();
    let on = ld.variation_id("default", FEATURE, 0);
    let off_patch = json!({"environmentKey": "production", "instructions": [{"kind": "turnFlagOff"}]});
    let plain_json = client
        .patch(ld_flag(&ld))
        .header("Authorization", TOKEN)
        .header("Content-Type", "application/json")
        .body(off_patch.to_string());
    let (status, body) = send(plain_json);
    assert_eq!(
        (status, body["code"].clone()),
        (400, json!("invalid_request")),
        "semantic patch needs its content type"
    );

    let malformed = client
        .patch(ld_flag(&ld))
        .header("Authorization", TOKEN)
        .header("Content-Type", SEMANTIC_PATCH)
        .body("{\"instructions\": [");
    assert_eq!(send(malformed).0, 400);

    let bad_bodies = [
        json!({"environmentKey": "production", "instructions": [{"kind": "turnFlagOff"}, {"kind": "deleteFlag"}]}),
        json!({"instructions": [{"kind": "turnFlagOff"}]}),
        json!({"environmentKey": "no-such-env", "instructions": [{"kind": "turnFlagOff"}]}),
        json!({"environmentKey": "production"}),
        json!({"environmentKey": "production", "instructions": [
            {"kind": "updateFallthroughVariationOrRollout", "rolloutWeights": {on.clone(): 5000}}]}),
        json!({"environmentKey": "production", "instructions": [
            {"kind": "updateFallthroughVariationOrRollout", "variationId": "not-a-variation"}]}),
    ];
    for bad in bad_bodies {
        let (status, body) = ld_patch(&ld, &client, bad.clone());
        assert_eq!((status, body["code"].clone()), (400, json!("invalid_request")), "{bad}");
        assert!(body["message"].is_string());
    }
    assert_eq!(
        ld.env("default", FEATURE, "production"),
        Some(EnvState { on: true, fallthrough: Fallthrough::Variation(0), off_variation: 1 }),
        "a rejected patch applies no instruction, not even the valid ones before the bad one"
    );
    assert_eq!(ld.version("default", FEATURE), Some(1));
}

#[test]
fn a_queued_500_fails_once_then_the_service_answers_normally() {
    let (flipper, client) = flipper();
    flipper.fault(Fault::Status(500));
    let url = format!("{}/features/{FEATURE}", flipper.url());
    let first = client.get(&url).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(first.status().as_u16(), 500);
    assert_eq!(send(client.get(&url).bearer_auth(TOKEN)).0, 200);

    let (ld, client) = launchdarkly();
    ld.fault(Fault::Status(500));
    ld.fault(Fault::Status(503));
    let (status, body) = send(client.get(ld_flag(&ld)).header("Authorization", TOKEN));
    assert_eq!((status, body["code"].clone()), (500, json!("internal_server_error")));
    assert_eq!(send(client.get(ld_flag(&ld)).header("Authorization", TOKEN)).0, 503);
    assert_eq!(send(client.get(ld_flag(&ld)).header("Authorization", TOKEN)).0, 200);
}

#[test]
fn a_rate_limit_fault_sends_retry_after_and_launchdarklys_reset_in_epoch_ms() {
    let (ld, client) = launchdarkly();
    ld.fault(Fault::RateLimited { retry_after: 2 });
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let response = client.get(ld_flag(&ld)).header("Authorization", TOKEN).send().unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
    assert_eq!(header("Retry-After"), "2");
    let reset: u64 = header("X-Ratelimit-Reset").parse().unwrap();
    assert!((before + 2000..before + 3000).contains(&reset), "reset {reset} is about now + 2 s in ms");
    assert_eq!(json_of(response)["code"], "rate_limited");
    assert_eq!(send(client.get(ld_flag(&ld)).header("Authorization", TOKEN)).0, 200);

    let (flipper, client) = flipper();
    flipper.fault(Fault::RateLimited { retry_after: 7 });
    let response = client.get(format!("{}/features", flipper.url())).bearer_auth(TOKEN).send().unwrap();
    assert_eq!((response.status().as_u16(), response.headers()["retry-after"].to_str().unwrap()), (429, "7"));
}

#[test]
fn a_delay_fault_makes_the_server_slow_and_a_short_client_timeout_fires() {
    let (flipper, _) = flipper();
    let url = format!("{}/features/{FEATURE}", flipper.url());
    flipper.fault(Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(send(client().get(&url).bearer_auth(TOKEN)).0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    flipper.fault(Fault::Delay(Duration::from_millis(1500)));
    let impatient = Client::builder().no_proxy().timeout(Duration::from_millis(200)).build().unwrap();
    let error = impatient.get(&url).bearer_auth(TOKEN).send().unwrap_err();
    assert!(error.is_timeout(), "{error}");
}

#[test]
fn malformed_json_and_a_closed_connection_reach_the_client() {
    let (ld, client) = launchdarkly();
    ld.fault(Fault::MalformedJson);
    ld.fault(Fault::Close);
    let response = client.get(ld_flag(&ld)).header("Authorization", TOKEN).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.json::<Value>().is_err(), "the body is not JSON");
    let error = client.get(ld_flag(&ld)).header("Authorization", TOKEN).send().unwrap_err();
    assert!(!error.is_timeout(), "the connection closed at once: {error}");
    assert_eq!(send(client.get(ld_flag(&ld)).header("Authorization", TOKEN)).0, 200);
}

#[test]
fn a_failing_path_fails_every_time_while_other_paths_work() {
    let (flipper, client) = flipper();
    flipper.fail_path(&format!("/features/{FEATURE}/boolean"), Fault::Status(503));
    for _ in 0..3 {
        assert_eq!(send(flipper_call(&flipper, &client, "POST", &format!("/features/{FEATURE}/boolean"))).0, 503);
    }
    assert_eq!(send(flipper_call(&flipper, &client, "GET", &format!("/features/{FEATURE}"))).0, 200);
    assert_eq!(flipper.gates(FEATURE), Some(Gates::default()));
}

#[test]
fn every_request_is_recorded_with_method_path_query_headers_and_body() {
    let (ld, client) = launchdarkly();
    ld.fault(Fault::Status(500));
    let get = || client.get(ld_flag(&ld)).query(&[("env", "production")]).header("Authorization", TOKEN);
    assert_eq!(send(get()).0, 500);
    assert_eq!(send(get()).0, 200);
    let patch =
        json!({"environmentKey": "production", "comment": "rollback", "instructions": [{"kind": "turnFlagOff"}]});
    assert_eq!(ld_patch(&ld, &client, patch.clone()).0, 200);

    let requests = ld.requests();
    assert_eq!(requests.len(), 3, "faulted requests are recorded too");
    assert_eq!((requests[0].method.as_str(), requests[0].query.as_str()), ("GET", "env=production"));
    assert_eq!(requests[0].path, format!("/api/v2/flags/default/{FEATURE}"));
    assert_eq!(requests[0].query_param("env").as_deref(), Some("production"));
    assert_eq!(requests[2].method, "PATCH");
    assert_eq!(requests[2].header("content-type"), Some(SEMANTIC_PATCH));
    assert_eq!(requests[2].header("Authorization"), Some(TOKEN));
    assert_eq!(requests[2].json(), Some(patch));
    assert_eq!((ld.count("GET"), ld.count("patch"), ld.non_get_count()), (2, 1, 1));
    ld.clear_requests();
    assert!(ld.requests().is_empty());

    let (flipper, client) = flipper();
    send(
        flipper_call(&flipper, &client, "POST", &format!("/features/{FEATURE}/percentage_of_actors"))
            .form(&[("percentage", "5")]),
    );
    let recorded = &flipper.requests()[0];
    assert_eq!(recorded.path, format!("/flipper/api/features/{FEATURE}/percentage_of_actors"));
    assert_eq!(
        (recorded.text(), recorded.header("authorization")),
        ("percentage=5".to_string(), Some(&*format!("Bearer {TOKEN}")))
    );
    assert_eq!(flipper.non_get_count(), 1);
}
