//! flagd (OpenFeature) flag files: on/off through the default variant, a share of users
//! through `fractional` targeting. Written atomically, since flagd watches the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde_json::{Map, Value, json};

use super::{FlagService, FlagState, FlagTarget};
use crate::config::FlagsConfig;
use crate::error::Precondition;
use crate::percent::Percent;

pub struct FlagdFile {
    path: PathBuf,
    shown: String,
}

impl FlagdFile {
    pub fn new(config: &FlagsConfig, config_dir: &Path) -> Result<FlagdFile> {
        let relative = config.path.clone().ok_or_else(|| anyhow!("flags provider flagd needs `path`"))?;
        Ok(FlagdFile { path: config_dir.join(&relative), shown: relative.display().to_string() })
    }

    fn load(&self) -> Result<Value> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            Precondition(format!(
                "cannot read the flag file {}: {e}; check flags.path in rollout.yaml",
                self.path.display()
            ))
        })?;
        let document: Value = serde_json::from_str(&text)
            .map_err(|e| Precondition(format!("the flag file {} is not valid JSON: {e}", self.path.display())))?;
        if !document.get("flags").is_some_and(Value::is_object) {
            return Err(Precondition(format!("the flag file {} has no `flags` object", self.path.display())).into());
        }
        Ok(document)
    }

    fn flag<'d>(&self, document: &'d Value, name: &str) -> Result<&'d Map<String, Value>> {
        let flags = document["flags"].as_object().expect("checked by load");
        flags.get(name).and_then(Value::as_object).ok_or_else(|| {
            let known: Vec<&str> = flags.keys().map(String::as_str).collect();
            Precondition(format!(
                "flag {name} is not in {} (it has {})",
                self.path.display(),
                if known.is_empty() { "no flags".to_string() } else { known.join(", ") }
            ))
            .into()
        })
    }

    /// The variants that mean on and off: the ones whose values are `true` and `false`.
    fn variants(&self, name: &str, flag: &Map<String, Value>) -> Result<(String, String)> {
        let variants = flag.get("variants").and_then(Value::as_object);
        let find = |wanted: bool| {
            variants
                .and_then(|v| v.iter().find(|(_, value)| value.as_bool() == Some(wanted)).map(|(key, _)| key.clone()))
        };
        match (find(true), find(false)) {
            (Some(on), Some(off)) => Ok((on, off)),
            _ => Err(Precondition(format!(
                "flag {name} in {} is not a boolean toggle: it needs one variant whose value is true and one whose value is false",
                self.path.display()
            ))
            .into()),
        }
    }

    fn write_atomically(&self, document: &Value) -> Result<()> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut text = serde_json::to_string_pretty(document)?;
        text.push('\n');
        let permissions = std::fs::metadata(&self.path)?.permissions();
        let mut temp = tempfile::Builder::new()
            .prefix(".rollout-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        temp.write_all(text.as_bytes())?;
        temp.as_file().set_permissions(permissions)?;
        temp.as_file().sync_all()?;
        temp.persist(&self.path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot replace {}", self.path.display()))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }
}

/// `[[on, w], [off, w']]` (after an optional bucketing expression) as the share of `on`.
fn fractional_share(targeting: &Value, on: &str, off: &str) -> Option<Percent> {
    let buckets = targeting.as_object().filter(|t| t.len() == 1)?.get("fractional")?.as_array()?;
    let (mut on_weight, mut total) = (0.0, 0.0);
    for bucket in buckets.iter().filter(|b| b.is_array()) {
        let pair = bucket.as_array()?;
        let variant = pair.first()?.as_str()?;
        let weight = pair.get(1).map_or(Some(1.0), Value::as_f64)?;
        if variant != on && variant != off {
            return None;
        }
        total += weight;
        if variant == on {
            on_weight += weight;
        }
    }
    if total <= 0.0 {
        return None;
    }
    Percent::from_hundredths((on_weight / total * 10_000.0).round() as u32)
}

impl FlagService for FlagdFile {
    fn describe(&self) -> String {
        format!("flagd {}", self.shown)
    }

    fn read(&self, name: &str) -> Result<FlagState> {
        let document = self.load()?;
        let flag = self.flag(&document, name)?;
        let (on, off) = self.variants(name, flag)?;
        let raw = Value::Object(flag.clone());
        if flag.get("state").and_then(Value::as_str) == Some("DISABLED") {
            return Ok(FlagState::plain(false, None, raw));
        }
        let default_on = flag.get("defaultVariant").and_then(Value::as_str) == Some(on.as_str());
        let targeting = flag.get("targeting").filter(|t| !t.is_null() && t.as_object().is_none_or(|o| !o.is_empty()));
        Ok(match targeting {
            None => FlagState::plain(default_on, None, raw),
            Some(targeting) => match fractional_share(targeting, &on, &off) {
                Some(share) if share.hundredths() == 0 => FlagState::plain(false, None, raw),
                Some(share) => FlagState::plain(true, Some(share).filter(|p| !p.is_full()), raw),
                None => FlagState { other: Some("custom targeting rules".into()), ..FlagState::plain(true, None, raw) },
            },
        })
    }

    fn write(&self, name: &str, target: FlagTarget, _note: &str) -> Result<()> {
        let mut document = self.load()?;
        let (on, off) = self.variants(name, self.flag(&document, name)?)?;
        let flag = document["flags"][name].as_object_mut().expect("checked by flag()");
        flag.insert("state".into(), json!("ENABLED"));
        match (target.enabled, target.percent()) {
            (false, _) => {
                flag.insert("defaultVariant".into(), json!(off));
                flag.remove("targeting");
            }
            (true, None) => {
                flag.insert("defaultVariant".into(), json!(on));
                flag.remove("targeting");
            }
            (true, Some(share)) => {
                let h = share.hundredths();
                let (on_weight, off_weight) = if h % 100 == 0 { (h / 100, 100 - h / 100) } else { (h, 10_000 - h) };
                flag.insert("defaultVariant".into(), json!(off));
                flag.insert("targeting".into(), json!({ "fractional": [[on, on_weight], [off, off_weight]] }));
            }
        }
        self.write_atomically(&document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(flags: Value) -> (tempfile::TempDir, FlagdFile) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("flags.json"),
            serde_json::to_string_pretty(&json!({ "flags": flags })).unwrap(),
        )
        .unwrap();
        let config: FlagsConfig = serde_yaml::from_str("{ provider: flagd, path: flags.json }").unwrap();
        let service = FlagdFile::new(&config, dir.path()).unwrap();
        (dir, service)
    }

    fn toggle() -> Value {
        json!({ "state": "ENABLED", "variants": { "on": true, "off": false }, "defaultVariant": "on" })
    }

    #[test]
    fn off_percent_and_on_round_trip() {
        let (_dir, flags) = file(json!({ "t": toggle(), "other": toggle() }));
        assert_eq!(flags.read("t").unwrap().summary(), "on, 100%");
        for (target, shown) in [
            (FlagTarget::new(false, None), "off"),
            (FlagTarget::new(true, Some("5".parse().unwrap())), "on, 5%"),
            (FlagTarget::new(true, Some("2.5".parse().unwrap())), "on, 2.5%"),
            (FlagTarget::new(true, None), "on, 100%"),
        ] {
            flags.write("t", target, "test").unwrap();
            let state = flags.read("t").unwrap();
            assert_eq!(state.summary(), shown);
            assert!(target.is_met_by(&state));
        }
        assert_eq!(flags.read("other").unwrap().summary(), "on, 100%", "other flags are left alone");
    }

    #[test]
    fn unknown_flags_and_broken_files_are_preconditions() {
        let (dir, flags) = file(json!({ "t": toggle() }));
        let missing = flags.read("nope").unwrap_err();
        assert!(Precondition::is_in(&missing));
        assert!(missing.to_string().contains("flag nope is not in"), "{missing}");
        std::fs::write(dir.path().join("flags.json"), "{ not json").unwrap();
        assert!(Precondition::is_in(&flags.read("t").unwrap_err()));
    }

    #[test]
    fn custom_targeting_is_reported_not_guessed() {
        let mut flag = toggle();
        flag["targeting"] = json!({ "if": [{ "in": ["@va.gov", { "var": "email" }] }, "on", "off"] });
        let (_dir, flags) = file(json!({ "t": flag }));
        let state = flags.read("t").unwrap();
        assert_eq!(state.summary(), "on, custom targeting rules");
        assert!(!FlagTarget::new(true, None).is_met_by(&state));
    }
}
