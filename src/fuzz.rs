//! Entry points for the fuzz targets in fuzz/ (built with `--cfg fuzzing` only): each hands
//! arbitrary bytes to one of rollout's readers, which must read or refuse them, never panic.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::engine::journal;
use crate::engine::state::RunState;
use crate::engine::story::Story;
use crate::flags::FlagService;
use crate::percent::Percent;
use crate::runbook::template::Template;
use crate::runbook::{LoadedRunbook, inputs};
use crate::yaml::Source;

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// A runbook file: loaded and validated, or refused with diagnostics.
pub fn runbook(data: &[u8]) {
    let _ = LoadedRunbook::from_source(Source::new(PathBuf::from("/fuzz/runbooks/fuzz.yaml"), text(data)));
}

/// A rollout.yaml.
pub fn config(data: &[u8]) {
    let _ = Config::from_source(&Source::new(PathBuf::from("/fuzz/rollout.yaml"), text(data)));
}

/// A template: parsed, and rendered when it parses.
pub fn template(data: &[u8]) {
    if let Ok(template) = Template::parse(&text(data)) {
        let _ = template.render(|_| Some("value".into()));
    }
}

const TYPED: &str = "version: 1\ntitle: Typed\ninputs:\n  flag: { default: f }\n  share: { type: percent, default: 5 }\n  count: { type: integer }\n  commit: { type: commit }\n  on: { type: boolean, default: true }\nsteps:\n  - id: a\n    name: A\n    manual: { instructions: \"{{ inputs.flag }} {{ inputs.share }} {{ inputs.count }} {{ inputs.commit }} {{ inputs.on }}\" }\n";

/// `--var` values, one per line, against a runbook with an input of every type.
pub fn vars(data: &[u8]) {
    thread_local! {
        static RUNBOOK: LoadedRunbook =
            LoadedRunbook::from_source(Source::new(PathBuf::from("/fuzz/typed.yaml"), TYPED.into())).expect("a valid runbook");
    }
    let vars: Vec<String> = text(data).lines().map(str::to_string).collect();
    RUNBOOK.with(|runbook| {
        let _ = inputs::resolve(runbook, &vars);
    });
}

/// Percents and durations as a runbook, `--var` or a service writes them.
pub fn scalars(data: &[u8]) {
    let text = text(data);
    let _ = text.parse::<Percent>();
    let _ = Percent::parse_decimal(&text);
    for range in [
        &crate::duration::STEP_TIMEOUT,
        &crate::duration::GATE_INTERVAL,
        &crate::duration::GATE_SPAN,
        &crate::duration::HTTP_TIMEOUT,
        &crate::duration::HTTP_MAX_WAIT,
        &crate::duration::STATE_PATIENCE,
    ] {
        let _ = range.parse(&text);
    }
}

/// A journal, torn, reordered or foreign: read with warnings, then folded.
pub fn journal(data: &[u8]) {
    let read = journal::read_bytes(data, Path::new("/fuzz/runs/r.jsonl"));
    if let Some(state) = RunState::fold(&read.records) {
        let _ = state.tally(&["a", "b"]);
    }
    let _ = Story::fold(&read.records);
}

/// The flag services' readers of a flag's representation, as each service answers it.
pub fn flag_responses(data: &[u8]) {
    thread_local! {
        static SERVICES: RefCell<Vec<Box<dyn FlagService>>> = RefCell::new(services());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    SERVICES.with(|services| {
        for service in services.borrow().iter() {
            let _ = service.model("travel_pay_claim_status", &value);
        }
    });
}

/// Every flag service, set up against addresses nothing listens on (the fuzz target sets the
/// token variables they read).
fn services() -> Vec<Box<dyn FlagService>> {
    let configs = [
        "flags: { provider: flagd, path: flags.json }",
        "flags: { provider: flipper, url: 'http://127.0.0.1:9/flipper/api' }",
        "flags: { provider: unleash, url: 'http://127.0.0.1:9/api', token_env: FUZZ_TOKEN, environment: production }",
        "flags: { provider: launchdarkly, url: 'http://127.0.0.1:9', token_env: FUZZ_TOKEN, project: p, environment: production }",
    ];
    configs
        .iter()
        .filter_map(|yaml| {
            let source = Source::new(PathBuf::from("/fuzz/rollout.yaml"), format!("version: 1\n{yaml}\n"));
            let config = Config::from_source(&source).expect("a valid config");
            crate::flags::service(config.flags.as_ref()?, Path::new("/fuzz"), &config.http).ok()
        })
        .collect()
}

/// A flagd flag file: read, and its first flag rewritten in place.
pub fn flagd_file(data: &[u8]) {
    crate::flags::flagd::edit_for_fuzz(&text(data));
}
