//! Putting back a recorded flag state exactly, as `undo` will: the state is read, changed by a
//! step's write, journaled and read back as JSON, then restored through the library.

use rollout::{
    FlagService, FlagTarget, Flipper, FlipperConfig, HttpSettings, LaunchDarkly, LaunchdarklyConfig, Unleash,
    UnleashConfig,
};
use serde_json::json;

use crate::support::flipper::{Flipper as Emulator, Gates};
use crate::support::launchdarkly::{EnvState, Fallthrough, LaunchDarkly as LdEmulator};
use crate::unleash::{NEEDS, Unleash as RealUnleash};

/// The token: a variable cargo sets for every test it runs (the tests may not set one).
const TOKEN_ENV: &str = "CARGO_PKG_NAME";
const TOKEN: &str = env!("CARGO_PKG_NAME");

fn flipper(emulator: &Emulator) -> Flipper {
    let config = FlipperConfig {
        url: emulator.url(),
        token_env: Some(TOKEN_ENV.into()),
        auth_header: None,
        auth_format: None,
        allow_insecure_http: true,
    };
    Flipper::new(&config, &HttpSettings::default()).unwrap()
}

/// The state as the journal holds it: written out and read back.
fn journaled<T: serde::Serialize + serde::de::DeserializeOwned>(state: &T) -> T {
    serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap()
}

#[test]
fn flipper_actors_groups_and_percentages_are_restored() {
    let emulator = Emulator::start(TOKEN);
    emulator.register_group("admins");
    emulator.register_group("beta");
    let recorded_gates = Gates {
        expression: Some(json!({ "Equal": [{ "Property": ["plan"] }, "basic"] })),
        actors: ["User;1", "User;2"].map(String::from).into(),
        groups: ["admins".to_string()].into(),
        percentage_of_actors: Some("33.333".into()),
        percentage_of_time: Some("5".into()),
        ..Gates::default()
    };
    emulator.set("checkout", recorded_gates.clone());
    let service = flipper(&emulator);
    let recorded = journaled(&service.read("checkout").unwrap());
    for target in [FlagTarget::OFF, FlagTarget::new(true, None), FlagTarget::new(true, Some("50".parse().unwrap()))] {
        service.write("checkout", target, "test").unwrap();
        let mut other = emulator.gates("checkout").unwrap();
        other.actors.insert("User;9".into());
        other.groups.insert("beta".into());
        emulator.set("checkout", other);
        service.restore("checkout", &recorded, "undo").unwrap();
        assert_eq!(emulator.gates("checkout").unwrap(), recorded_gates, "after {target:?}");
        assert_eq!(service.read("checkout").unwrap(), recorded);
    }
}

#[test]
fn flipper_on_for_everyone_is_restored_with_the_boolean_gate() {
    let emulator = Emulator::start(TOKEN);
    emulator.set("checkout", Gates::on());
    let service = flipper(&emulator);
    let recorded = journaled(&service.read("checkout").unwrap());
    service.write("checkout", FlagTarget::new(true, Some("5".parse().unwrap())), "test").unwrap();
    service.restore("checkout", &recorded, "undo").unwrap();
    assert_eq!(emulator.gates("checkout").unwrap(), Gates::on());
}

fn launchdarkly(emulator: &LdEmulator) -> LaunchDarkly {
    let config = LaunchdarklyConfig {
        url: Some(emulator.url()),
        token_env: TOKEN_ENV.into(),
        project: "va".into(),
        environment: "production".into(),
        allow_insecure_http: true,
    };
    LaunchDarkly::new(&config, &HttpSettings::default()).unwrap()
}

#[test]
fn launchdarkly_on_off_and_the_fallthrough_rollout_are_restored() {
    let emulator = LdEmulator::start(TOKEN);
    emulator.add_flag("va", "checkout", &["production", "staging"]);
    let service = launchdarkly(&emulator);
    for recorded_env in [
        EnvState { on: true, fallthrough: Fallthrough::Rollout(vec![(0, 33_333), (1, 66_667)]), off_variation: 1 },
        EnvState { on: false, fallthrough: Fallthrough::Variation(0), off_variation: 1 },
        EnvState { on: true, fallthrough: Fallthrough::Variation(0), off_variation: 1 },
    ] {
        emulator.set_env("va", "checkout", "production", recorded_env.clone());
        let recorded = journaled(&service.read("checkout").unwrap());
        let staging = emulator.env("va", "checkout", "staging");
        for target in [FlagTarget::OFF, FlagTarget::new(true, Some("5".parse().unwrap()))] {
            service.write("checkout", target, "test").unwrap();
            service.restore("checkout", &recorded, "undo").unwrap();
            assert_eq!(emulator.env("va", "checkout", "production").unwrap(), recorded_env, "after {target:?}");
            assert_eq!(emulator.env("va", "checkout", "staging"), staging, "other environments are left alone");
        }
    }
}

#[test]
#[ignore = "needs unleash: run scripts/test"]
fn unleash_strategies_with_constraints_and_the_switch_are_restored() {
    let real = RealUnleash::from_env();
    let constraints = json!([{ "contextName": "userId", "operator": "IN", "values": ["1", "2"] }]);
    let name = real.feature("restore", "33", constraints);
    let config = UnleashConfig {
        url: real.url.clone(),
        token_env: "UNLEASH_ADMIN_TOKEN".into(),
        project: Some("default".into()),
        environment: "development".into(),
        allow_insecure_http: true,
    };
    let service = Unleash::new(&config, &HttpSettings::default()).expect(NEEDS);
    let before = real.read(&name);
    let recorded = journaled(&service.read(&name).unwrap());
    let strategy_path = format!("{}/strategies", RealUnleash::feature_path(&name));
    for target in [FlagTarget::OFF, FlagTarget::new(true, Some("50".parse().unwrap()))] {
        service.write(&name, target, "test").unwrap();
        let extra = json!({ "name": "default", "constraints": [], "parameters": {} });
        real.call(reqwest::Method::POST, &strategy_path, Some(extra));
        service.restore(&name, &recorded, "undo").unwrap();
        let after = real.read(&name);
        assert_eq!(after["enabled"], before["enabled"], "after {target:?}");
        let strategies = |state: &serde_json::Value| state["strategies"].as_array().unwrap().clone();
        assert_eq!(strategies(&after).len(), 1, "{after}");
        for field in ["id", "name", "parameters", "constraints", "variants", "disabled"] {
            assert_eq!(strategies(&after)[0][field], strategies(&before)[0][field], "{field} after {target:?}");
        }
        assert_eq!(service.read(&name).unwrap().summary(), recorded.summary());
    }
}
