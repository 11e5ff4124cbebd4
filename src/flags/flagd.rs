//! flagd (OpenFeature) flag files: on/off through the default variant, a share of users
//! through `fractional` targeting. Written atomically, since flagd watches the file: the
//! link's target when the path is a symlink, under a lock so that concurrent runs lose no
//! update, and only the changed flag's entry, every other byte as it was.

use std::collections::HashSet;
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use indexmap::IndexMap;
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::{FlagPlan, FlagService, FlagState, FlagTarget, Targeting};
use crate::config::FlagdConfig;
use crate::error::Precondition;
use crate::percent::Percent;

pub struct FlagdFile {
    path: PathBuf,
    shown: String,
}

impl FlagdFile {
    pub fn new(config: &FlagdConfig, config_dir: &Path) -> FlagdFile {
        FlagdFile { path: config_dir.join(&config.path), shown: config.path.display().to_string() }
    }

    /// The document, and the text of flag `name`'s entry as the file has it (None when the
    /// entry cannot be located, which `flag` then reports).
    fn load_with_entry(&self, name: &str) -> Result<(Value, Option<String>)> {
        let text = self.text(&self.path)?;
        let document = self.parse(&text, &self.path)?;
        Ok((document, entry_text(&text, name).ok().map(str::to_string)))
    }

    fn text(&self, file: &Path) -> Result<String> {
        std::fs::read_to_string(file).map_err(|e| {
            Precondition(format!("cannot read the flag file {}: {e}; check flags.path in rollout.yaml", file.display()))
                .into()
        })
    }

    /// The document, refused when it is not JSON, has no `flags` object, or has a key twice
    /// anywhere (which of the two flagd uses is unclear, so neither is read or written).
    fn parse(&self, text: &str, file: &Path) -> Result<Value> {
        let document: Value = serde_json::from_str(text)
            .map_err(|e| Precondition(format!("the flag file {} is not valid JSON: {e}", file.display())))?;
        Unique("").deserialize(&mut serde_json::Deserializer::from_str(text)).map_err(|e| {
            Precondition(format!(
                "the flag file {} has the key {e}; which one flagd uses is unclear, so rollout reads and writes neither: remove one",
                file.display()
            ))
        })?;
        if !document.get("flags").is_some_and(Value::is_object) {
            return Err(Precondition(format!("the flag file {} has no `flags` object", file.display())).into());
        }
        Ok(document)
    }

    /// The file flagd reads: the configured path with every symlink resolved, so that a write
    /// replaces the link's target and leaves the link in place.
    fn resolved(&self) -> Result<PathBuf> {
        std::fs::canonicalize(&self.path).map_err(|e| {
            Precondition(format!(
                "cannot read the flag file {}: {e}; check flags.path in rollout.yaml",
                self.path.display()
            ))
            .into()
        })
    }

    /// What preflight can tell about a write without making one: the (resolved) file is not
    /// read-only, and its folder takes a new file, as every write needs (a copy renamed over
    /// the file). Asked of the OS (`access`), so that a dry run creates nothing.
    fn writable(&self) -> Result<()> {
        use nix::errno::Errno;
        use nix::unistd::{AccessFlags, access};
        let file = self.resolved()?;
        refuse_read_only(&file)?;
        let dir = folder(&file);
        let (file, dir_shown) = (file.display(), dir.display());
        let how = "rollout writes a new copy beside the file and renames it over the file";
        match access(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
            Ok(()) => Ok(()),
            Err(Errno::EROFS) => Err(Precondition(format!(
                "the flag folder {dir_shown} is on a read-only file system, so {file} cannot be changed ({how}); \
                 remount it read-write, or point flags.path at a writable copy that flagd reads"
            ))
            .into()),
            Err(Errno::EACCES | Errno::EPERM) => Err(Precondition(format!(
                "rollout cannot create files in the flag folder {dir_shown} (permission denied), so {file} cannot be \
                 changed ({how}); give this user write access to the folder (chmod u+w {dir_shown}) or run rollout as its owner"
            ))
            .into()),
            Err(e) => Err(Precondition(format!(
                "rollout cannot tell whether the flag folder {dir_shown} takes a new file ({e}), so {file} may not \
                 be changeable ({how}); fix the folder, then retry"
            ))
            .into()),
        }
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

    /// Change flag `name`'s entry with `edit` (given the on and off variants) and write the
    /// file back. The file flagd reads is locked against other writers and read again under the
    /// lock: the change applies to what is there now, not to what a preview saw.
    fn rewrite(
        &self,
        name: &str,
        edit: impl FnOnce(&mut Map<String, Value>, (String, String)) -> Result<()>,
    ) -> Result<()> {
        self.rewrite_as(name, edit, None)
    }

    /// `rewrite`, with the entry written as `exact` (its text when it was read) rather than laid
    /// out anew: `exact` must read as the edited entry.
    fn rewrite_as(
        &self,
        name: &str,
        edit: impl FnOnce(&mut Map<String, Value>, (String, String)) -> Result<()>,
        exact: Option<&str>,
    ) -> Result<()> {
        let file = self.resolved()?;
        let _lock = lock_beside(&file)?;
        let text = self.text(&file)?;
        let mut document = self.parse(&text, &file)?;
        let variants = self.variants(name, self.flag(&document, name)?)?;
        edit(document["flags"][name].as_object_mut().expect("checked by flag()"), variants)?;
        let entry = document["flags"][name].as_object().expect("checked by flag()");
        let new_text = match exact {
            Some(exact) => entry_text(&text, name).map(|old| {
                let range = span(&text, old);
                format!("{}{exact}{}", &text[..range.start], &text[range.end..])
            }),
            None => splice_flag(&text, name, entry),
        }
        .with_context(|| format!("cannot locate flag {name}'s entry in {}", file.display()))?;
        // The splice may change nothing but this entry: the new file must read as the old
        // document with just this change, or nothing is written.
        if serde_json::from_str::<Value>(&new_text).ok().as_ref() != Some(&document) {
            bail!("rewriting flag {name}'s entry in {} went wrong; the file is unchanged", file.display());
        }
        refuse_read_only(&file)?;
        write_atomically(&file, &new_text)
    }
}

/// The folder a file is in (`.` for a bare name).
fn folder(file: &Path) -> &Path {
    file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A file whose mode says nobody may write it is left alone, even by root.
fn refuse_read_only(file: &Path) -> Result<()> {
    let metadata = std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if metadata.permissions().readonly() {
        return Err(Precondition(format!(
            "the flag file {0} is read-only; if rollout should change it, make it writable (chmod u+w {0})",
            file.display()
        ))
        .into());
    }
    Ok(())
}

/// `text` as the new content of `file`: a temp file in the same folder (same permissions,
/// and owner where allowed), synced, renamed over the file, and the folder synced.
fn write_atomically(file: &Path, text: &str) -> Result<()> {
    let dir = folder(file);
    let metadata = std::fs::metadata(file)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".rollout-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    temp.write_all(text.as_bytes())?;
    temp.as_file().set_permissions(metadata.permissions())?;
    {
        use std::os::unix::fs::MetadataExt;
        // Root writing a file that flagd's user owns keeps that owner; anyone else cannot, and
        // the new file is theirs, as any editor's would be.
        let _ = std::os::unix::fs::fchown(temp.as_file(), Some(metadata.uid()), Some(metadata.gid()));
    }
    temp.as_file().sync_all()?;
    temp.persist(file).map_err(|e| e.error).with_context(|| format!("cannot replace {}", file.display()))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// How long a write waits for another writer's lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The OS lock on `.<name>.lock` beside `file`, held until the returned file is dropped. Every
/// write takes it around its read-modify-write, so two runs never lose each other's change.
/// (The flag file itself cannot carry the lock: each write renames a new file over it.)
fn lock_beside(file: &Path) -> Result<File> {
    let name = file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let path = folder(file).join(format!(".{name}.lock"));
    let lock = match OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path) {
        Ok(lock) => Ok(lock),
        // Someone else's lock file: a descriptor opened for reading locks just as well.
        Err(_) if path.is_file() => File::open(&path),
        Err(e) => Err(e),
    }
    .with_context(|| format!("cannot create the lock file {}", path.display()))?;
    let started = Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(TryLockError::WouldBlock) => bail!(
                "another process has held the lock {} for over {}s while changing {}; let it finish or stop it, then retry",
                path.display(),
                LOCK_WAIT.as_secs(),
                file.display()
            ),
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

/// Walks a JSON text and fails at the first object that has a key twice, naming the key by its
/// path: `` `flags.t.defaultVariant` twice at line 9 column 25 ``.
struct Unique<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq.next_element_seed(Unique(&format!("{}[{index}]", self.0)))?.is_some() {
            index += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.0.is_empty() { key.clone() } else { format!("{}.{key}", self.0) };
            if !seen.insert(key) {
                return Err(A::Error::custom(format_args!("`{path}` twice")));
            }
            map.next_value_seed(Unique(&path))?;
        }
        Ok(())
    }
}

/// JSON's whitespace.
const WS: &[char] = &[' ', '\t', '\n', '\r'];

/// Where `part`, a slice of `text`, lies in it.
fn span(text: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize).expect("a slice of the text");
    assert!(start + part.len() <= text.len(), "a slice of the text");
    start..start + part.len()
}

/// One member of an object as written: its key (with the quotes), what stands between key and
/// value (`": "`), and the value.
struct Member<'a> {
    key: &'a str,
    separator: &'a str,
    value: &'a RawValue,
}

/// The members of `object`, an object's text inside `text`, by key (duplicates are refused
/// before this).
fn members<'a>(text: &'a str, object: &'a str) -> Result<IndexMap<String, Member<'a>>> {
    let values: IndexMap<String, &'a RawValue> = serde_json::from_str(object)?;
    let mut members = IndexMap::new();
    for (name, value) in values {
        let start = span(text, value.get()).start;
        // Back from the value: whitespace, `:`, whitespace, the closing quote, and the opening
        // quote, the first `"` not escaped (inside a key every `"` follows an odd run of `\`).
        let before_colon = text[..start].trim_end_matches(WS).strip_suffix(':').context("a `:` before a value")?;
        let close = before_colon.trim_end_matches(WS).len().checked_sub(1).context("a key before a value")?;
        let bytes = text.as_bytes();
        let mut open = close;
        loop {
            open = bytes[..open].iter().rposition(|&b| b == b'"').context("a key's opening quote")?;
            if bytes[..open].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0 {
                break;
            }
        }
        members.insert(name, Member { key: &text[open..=close], separator: &text[close + 1..start], value });
    }
    Ok(members)
}

/// The spaces and tabs that start the line `pos` is on.
fn indent_at(text: &str, pos: usize) -> &str {
    let line = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let rest = &text[line..];
    &rest[..rest.len() - rest.trim_start_matches([' ', '\t']).len()]
}

/// The file's indent unit: how the first indented line starts.
fn indent_unit(text: &str) -> &str {
    text.lines()
        .skip(1)
        .map(|l| &l[..l.len() - l.trim_start_matches([' ', '\t']).len()])
        .find(|i| !i.is_empty())
        .unwrap_or("  ")
}

/// The text of `flags.<name>`'s value in the file's `text`.
fn entry_text<'t>(text: &'t str, name: &str) -> Result<&'t str> {
    let top = members(text, text)?;
    let flags = members(text, top.get("flags").context("a `flags` object")?.value.get())?;
    Ok(flags.get(name).with_context(|| format!("flag {name}"))?.value.get())
}

/// For the fuzz targets: any flag file's text is read, and its first flag's entry rewritten
/// off, or refused; never a panic.
#[cfg(fuzzing)]
pub fn edit_for_fuzz(text: &str) {
    let Ok(top) = members(text, text) else { return };
    let Some(flags) = top.get("flags").and_then(|f| members(text, f.value.get()).ok()) else { return };
    let Some(name) = flags.keys().next().cloned() else { return };
    if let Ok(old) = entry_text(text, &name)
        && let Ok(mut entry) = serde_json::from_str::<Map<String, Value>>(old)
    {
        entry.insert("defaultVariant".into(), json!("off"));
        let _ = splice_flag(text, &name, &entry);
    }
}

/// `text` with the value of `flags.<name>` replaced by `entry`, every byte outside that value
/// kept. The entry keeps its layout: one line stays one line; otherwise each member goes on its
/// own line at the entry's member indent, with the entry's line ending. Members whose value is
/// unchanged keep their text as written (numbers like `1E2`, their own layout).
fn splice_flag(text: &str, name: &str, entry: &Map<String, Value>) -> Result<String> {
    let old = entry_text(text, name)?;
    let range = span(text, old);
    let old_members = members(text, old)?;
    let first = old_members.values().next();
    let colon = first.map_or(": ", |m| m.separator);
    let layout = match old.find('\n') {
        Some(newline_at) => {
            let newline = if old[..newline_at].ends_with('\r') { "\r\n" } else { "\n" };
            let outer = indent_at(text, range.start);
            let indent = first
                .map(|m| span(text, m.key).start)
                .filter(|&start| text[..start].trim_end_matches([' ', '\t']).ends_with('\n'))
                .map(|start| indent_at(text, start))
                .filter(|indent| indent.len() > outer.len() && indent.starts_with(outer))
                .map_or_else(|| format!("{outer}{}", indent_unit(text)), str::to_string);
            Layout::Lines { newline, outer, indent }
        }
        None => {
            let comma = match (first, old_members.values().nth(1)) {
                (Some(first), Some(second)) => &text[span(text, first.value.get()).end..span(text, second.key).start],
                _ => ", ",
            };
            Layout::OneLine { colon, comma }
        }
    };
    let mut items = Vec::new();
    for (key, value) in entry {
        let kept = old_members.get(key);
        let key = kept.map_or_else(|| serde_json::to_string(key), |m| Ok(m.key.to_string()))?;
        let value = match kept {
            Some(m) if serde_json::from_str::<Value>(m.value.get())? == *value => m.value.get().to_string(),
            _ => layout.serialize(value)?,
        };
        items.push(format!("{key}{colon}{value}"));
    }
    let new = match (&layout, items.is_empty()) {
        (_, true) => "{}".to_string(),
        (Layout::Lines { newline, outer, indent }, false) => {
            format!("{{{newline}{indent}{}{newline}{outer}}}", items.join(&format!(",{newline}{indent}")))
        }
        (Layout::OneLine { comma, .. }, false) => {
            // The spaces inside the braces stay as they were: `{ "a": 1 }` or `{"a": 1}`.
            let (open, close) = match (old_members.values().next(), old_members.values().last()) {
                (Some(first), Some(last)) => (
                    &text[range.start + 1..span(text, first.key).start],
                    &text[span(text, last.value.get()).end..range.end - 1],
                ),
                _ => ("", ""),
            };
            format!("{{{open}{}{close}}}", items.join(comma))
        }
    };
    Ok(format!("{}{new}{}", &text[..range.start], &text[range.end..]))
}

/// How a flag entry is laid out, so that a new value is written to match.
enum Layout<'a> {
    /// One member a line, at `indent`, with the closing brace at `outer`.
    Lines { newline: &'static str, outer: &'a str, indent: String },
    /// All on one line, members apart by `comma`, keys and values by `colon`.
    OneLine { colon: &'a str, comma: &'a str },
}

impl Layout<'_> {
    fn serialize(&self, value: &Value) -> Result<String> {
        let mut out = Vec::new();
        match self {
            Layout::Lines { newline, outer, indent } => {
                let unit = &indent[outer.len()..];
                let formatter = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
                serde::Serialize::serialize(value, &mut serde_json::Serializer::with_formatter(&mut out, formatter))?;
                Ok(String::from_utf8(out)?.replace('\n', &format!("{newline}{indent}")))
            }
            Layout::OneLine { colon, comma } => {
                let formatter = OneLine { colon: colon.as_bytes(), comma: comma.as_bytes() };
                serde::Serialize::serialize(value, &mut serde_json::Serializer::with_formatter(&mut out, formatter))?;
                Ok(String::from_utf8(out)?)
            }
        }
    }
}

/// JSON on one line with the entry's own spacing: `{"on": true, "off": false}`.
struct OneLine<'a> {
    colon: &'a [u8],
    comma: &'a [u8],
}

impl serde_json::ser::Formatter for OneLine<'_> {
    fn begin_array_value<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { writer.write_all(self.comma) }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { writer.write_all(self.comma) }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(self.colon)
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
    Percent::from_ratio((on_weight * 1e6).round() as u128, (total * 1e6).round() as u128)
}

/// Who gets the feature as the entry `flag` says, its JSON `raw`.
fn entry_state(flag: &Map<String, Value>, raw: Value, on: &str, off: &str) -> FlagState {
    if flag.get("state").and_then(Value::as_str) == Some("DISABLED") {
        return FlagState::off(raw);
    }
    let default_on = flag.get("defaultVariant").and_then(Value::as_str) == Some(on);
    let targeting = flag.get("targeting").filter(|t| !t.is_null() && t.as_object().is_none_or(|o| !o.is_empty()));
    match targeting {
        None => FlagState::plain(FlagTarget::new(default_on, None), raw),
        Some(targeting) => match fractional_share(targeting, on, off) {
            Some(share) => FlagState::plain(FlagTarget::new(true, Some(share)), raw),
            // Rules rollout does not model: on for someone, shown as they are.
            None => FlagState {
                targeting: vec![Targeting::new(format!("targeting {targeting}"), targeting)],
                ..FlagState::off(raw)
            },
        },
    }
}

impl FlagService for FlagdFile {
    fn describe(&self) -> String {
        format!("flagd {}", self.shown)
    }

    fn location(&self) -> String {
        let path = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        format!("flagd file {}", path.display())
    }

    fn read(&self, name: &str) -> Result<FlagState> {
        let (document, source) = self.load_with_entry(name)?;
        let flag = self.flag(&document, name)?;
        let (on, off) = self.variants(name, flag)?;
        let raw = Value::Object(flag.clone());
        let state = entry_state(flag, raw, &on, &off);
        Ok(FlagState { source, ..state })
    }

    fn model(&self, name: &str, raw: &Value) -> Result<FlagState> {
        let flag = raw.as_object().with_context(|| format!("the state of flag {name} is not an entry"))?;
        let (on, off) = self.variants(name, flag)?;
        Ok(entry_state(flag, raw.clone(), &on, &off))
    }

    /// Every write replaces the targeting: rules rollout cannot read are cleared.
    fn plan(&self, _flag: &str, target: FlagTarget, current: &FlagState) -> Result<FlagPlan> {
        Ok(FlagPlan::replacing(current, target))
    }

    fn write(&self, name: &str, target: FlagTarget, _note: &str) -> Result<()> {
        self.rewrite(name, |flag, (on, off)| {
            flag.insert("state".into(), json!("ENABLED"));
            match (target.is_on(), target.partial()) {
                (false, _) => {
                    flag.insert("defaultVariant".into(), json!(off));
                    flag.shift_remove("targeting");
                }
                (true, None) => {
                    flag.insert("defaultVariant".into(), json!(on));
                    flag.shift_remove("targeting");
                }
                (true, Some(share)) => {
                    let h =
                        share.hundredths().ok_or_else(|| anyhow!("{share}% is finer than a flag file's hundredths"))?;
                    let (on_weight, off_weight) = if h % 100 == 0 { (h / 100, 100 - h / 100) } else { (h, 10_000 - h) };
                    flag.insert("defaultVariant".into(), json!(off));
                    flag.insert("targeting".into(), json!({ "fractional": [[on, on_weight], [off, off_weight]] }));
                }
            }
            Ok(())
        })
    }

    fn check_writable(&self, _flag: &str) -> Result<()> {
        self.writable()
    }

    /// Put back a state read earlier (for `undo`): the flag's entry becomes the recorded one,
    /// member for member, with every byte outside the entry kept.
    /// The entry's recorded text is written back as it was when it still reads as the recorded
    /// entry; otherwise the entry is laid out anew.
    fn restore(&self, name: &str, state: &FlagState, _note: &str) -> Result<()> {
        let recorded =
            state.raw.as_object().with_context(|| format!("the recorded state of flag {name} is not an entry"))?;
        let exact = state
            .source
            .as_deref()
            .filter(|text| serde_json::from_str::<Value>(text).ok().as_ref() == Some(&state.raw));
        self.rewrite_as(
            name,
            |flag, _| {
                *flag = recorded.clone();
                Ok(())
            },
            exact,
        )
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
        let service = FlagdFile::new(&FlagdConfig { path: "flags.json".into() }, dir.path());
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
            assert_eq!(state.share, target.share());
            crate::flags::assert_reads_back(&state);
        }
        assert_eq!(flags.read("other").unwrap().summary(), "on, 100%", "other flags are left alone");
    }

    #[test]
    fn a_recorded_entry_is_put_back_byte_for_byte() {
        let mut split = toggle();
        split["defaultVariant"] = json!("off");
        split["targeting"] = json!({ "fractional": [["on", 33], ["off", 67]] });
        let (dir, flags) = file(json!({ "t": split, "other": toggle() }));
        let original = std::fs::read_to_string(dir.path().join("flags.json")).unwrap();
        let recorded = flags.read("t").unwrap();
        for target in [FlagTarget::OFF, FlagTarget::new(true, None)] {
            flags.write("t", target, "test").unwrap();
            flags.restore("t", &recorded, "undo").unwrap();
            assert_eq!(std::fs::read_to_string(dir.path().join("flags.json")).unwrap(), original);
        }
        assert_eq!(flags.read("t").unwrap(), recorded);
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
        assert!(state.summary().starts_with(r#"on for some: targeting {"if":"#), "{}", state.summary());
        assert!(state.is_on());
        crate::flags::assert_reads_back(&state);
    }

    fn service(dir: &Path, path: &str) -> FlagdFile {
        FlagdFile::new(&FlagdConfig { path: path.into() }, dir)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_chain_of_links_writes_the_final_target_with_its_lock_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        for folder in ["a", "b", "c"] {
            std::fs::create_dir(dir.path().join(folder)).unwrap();
        }
        std::fs::write(dir.path().join("c/flags.json"), toggle_file()).unwrap();
        std::os::unix::fs::symlink("../c/flags.json", dir.path().join("b/flags.json")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("b/flags.json"), dir.path().join("a/link.json")).unwrap();
        let flags = service(dir.path(), "a/link.json");
        flags.write("t", FlagTarget::OFF, "test").unwrap();
        assert_eq!(flags.read("t").unwrap().summary(), "off");
        assert!(
            std::fs::read_to_string(dir.path().join("c/flags.json")).unwrap().contains("\"defaultVariant\": \"off\"")
        );
        assert_eq!(names(&dir.path().join("a")), ["link.json"]);
        assert_eq!(names(&dir.path().join("b")), ["flags.json"]);
        assert_eq!(names(&dir.path().join("c")), [".flags.json.lock", "flags.json"]);
        assert!(std::fs::symlink_metadata(dir.path().join("b/flags.json")).unwrap().file_type().is_symlink());
    }

    fn toggle_file() -> String {
        serde_json::to_string_pretty(&json!({ "flags": { "t": toggle(), "u": toggle() } })).unwrap()
    }

    #[test]
    fn a_write_waits_for_the_lock_and_applies_its_change_to_what_is_there_then() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        std::fs::write(&path, toggle_file()).unwrap();
        let flags = service(dir.path(), "flags.json");
        let held = lock_beside(&path.canonicalize().unwrap()).unwrap();
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| flags.write("t", FlagTarget::OFF, "test"));
            std::thread::sleep(Duration::from_millis(200));
            assert!(!writer.is_finished(), "the writer waits for the lock");
            // What another run holding the lock writes meanwhile is what the waiting write builds on.
            let other = toggle_file().replacen("\"defaultVariant\": \"on\"", "\"defaultVariant\": \"off\"", 2);
            std::fs::write(&path, other.replacen("\"defaultVariant\": \"off\"", "\"defaultVariant\": \"on\"", 1))
                .unwrap();
            assert_eq!(flags.read("u").unwrap().summary(), "off");
            drop(held);
            writer.join().unwrap().unwrap();
        });
        assert_eq!(flags.read("t").unwrap().summary(), "off");
        assert_eq!(flags.read("u").unwrap().summary(), "off", "the change made under the other lock is kept");
    }

    #[test]
    fn escaped_keys_are_found_and_kept_as_written() {
        let text = "{\"flags\": {\"a\\\"b\\\\\": {\"x\": 1}, \"t\": {\"variants\": {\"on\": true, \"off\": false}, \"d\\u0065faultVariant\": \"on\", \"state\": \"ENABLED\"}}}";
        let document: Value = serde_json::from_str(text).unwrap();
        let top = members(text, text).unwrap();
        let flags = members(text, top["flags"].value.get()).unwrap();
        assert_eq!(flags["a\"b\\"].key, "\"a\\\"b\\\\\"");
        assert_eq!(flags["a\"b\\"].separator, ": ");
        let mut entry = document["flags"]["t"].as_object().unwrap().clone();
        entry.insert("defaultVariant".into(), json!("off"));
        let new = splice_flag(text, "t", &entry).unwrap();
        assert_eq!(
            new,
            "{\"flags\": {\"a\\\"b\\\\\": {\"x\": 1}, \"t\": {\"variants\": {\"on\": true, \"off\": false}, \"d\\u0065faultVariant\": \"off\", \"state\": \"ENABLED\"}}}"
        );
    }

    #[test]
    fn added_members_take_the_entrys_indent_and_an_empty_entry_is_filled() {
        let text = "{\n\t\"flags\": {\n\t\t\"t\": {\n\t\t\t\"variants\": {\"on\": true, \"off\": false}\n\t\t},\n\t\t\"e\": {}\n\t}\n}";
        let mut entry = Map::new();
        entry.insert("variants".into(), json!({ "on": true, "off": false }));
        entry.insert("state".into(), json!("ENABLED"));
        let new = splice_flag(text, "t", &entry).unwrap();
        assert!(new.contains("\t\t\"t\": {\n\t\t\t\"variants\": {\"on\": true, \"off\": false},\n\t\t\t\"state\": \"ENABLED\"\n\t\t},"), "{new}");
        let new = splice_flag(text, "e", &entry).unwrap();
        assert!(
            new.ends_with("\"e\": {\"variants\": {\"on\": true, \"off\": false}, \"state\": \"ENABLED\"}\n\t}\n}"),
            "{new}"
        );
    }

    #[test]
    fn a_read_only_flag_file_is_refused_by_check_and_by_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        std::fs::write(&path, toggle_file()).unwrap();
        let flags = service(dir.path(), "flags.json");
        flags.check_writable("t").unwrap();
        assert_eq!(names(dir.path()), ["flags.json"], "the probe leaves nothing behind");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
        for error in [flags.check_writable("t").unwrap_err(), flags.write("t", FlagTarget::OFF, "test").unwrap_err()] {
            assert!(Precondition::is_in(&error), "{error:#}");
            assert!(error.to_string().contains("is read-only") && error.to_string().contains("chmod u+w"), "{error}");
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), toggle_file());
    }

    #[test]
    fn a_missing_or_dangling_flag_file_is_a_precondition_for_check_and_write() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("gone.json", dir.path().join("flags.json")).unwrap();
        let flags = service(dir.path(), "flags.json");
        for error in [flags.check_writable("t").unwrap_err(), flags.write("t", FlagTarget::OFF, "test").unwrap_err()] {
            assert!(Precondition::is_in(&error), "{error:#}");
            assert!(error.to_string().contains("check flags.path"), "{error}");
        }
    }

    /// A flag file of `names` written by hand with `indent`, `colon` and one line or several
    /// per entry, as people write them.
    fn hand_written(names: &[String], indent: &str, colon: &str, one_line: bool, crlf: bool) -> String {
        let nl = if crlf { "\r\n" } else { "\n" };
        let entry = |i: usize| {
            let members = [
                format!("\"state\"{colon}\"ENABLED\""),
                format!("\"variants\"{colon}{{\"on\"{colon}true, \"off\"{colon}false}}"),
                format!("\"defaultVariant\"{colon}\"{}\"", if i.is_multiple_of(2) { "on" } else { "off" }),
            ];
            if one_line {
                format!("{{ {} }}", members.join(", "))
            } else {
                let inner = indent.repeat(3);
                format!("{{{nl}{inner}{}{nl}{}}}", members.join(&format!(",{nl}{inner}")), indent.repeat(2))
            }
        };
        let flags: Vec<String> =
            names.iter().enumerate().map(|(i, n)| format!("{}\"{n}\"{colon}{}", indent.repeat(2), entry(i))).collect();
        format!("{{{nl}{indent}\"flags\"{colon}{{{nl}{}{nl}{indent}}}{nl}}}{nl}", flags.join(&format!(",{nl}")))
    }

    proptest::proptest! {
        /// A write changes the named entry's value and nothing else: every byte before and
        /// after it stays as written, whatever the file's layout.
        #[test]
        fn only_the_named_entry_changes_byte_for_byte(
            names in proptest::collection::btree_set("[a-z][a-z0-9_-]{0,8}", 1..6),
            pick in 0usize..6,
            indent in proptest::sample::select(vec!["  ", "    ", "\t"]),
            colon in proptest::sample::select(vec![":", ": ", " : "]),
            one_line: bool,
            crlf: bool,
            off: bool,
        ) {
            let names: Vec<String> = names.into_iter().collect();
            let name = &names[pick % names.len()];
            let text = hand_written(&names, indent, colon, one_line, crlf);
            let old = entry_text(&text, name).unwrap();
            let range = span(&text, old);
            let mut entry: Map<String, Value> = serde_json::from_str(old).unwrap();
            entry.insert("defaultVariant".into(), json!(if off { "off" } else { "on" }));
            entry.insert("targeting".into(), json!({ "fractional": [["on", 5], ["off", 95]] }));
            let written = splice_flag(&text, name, &entry).unwrap();
            let new = entry_text(&written, name).unwrap();
            let new_range = span(&written, new);
            proptest::prop_assert_eq!(&written[..new_range.start], &text[..range.start]);
            proptest::prop_assert_eq!(&written[new_range.end..], &text[range.end..]);
            proptest::prop_assert_eq!(serde_json::from_str::<Map<String, Value>>(new).unwrap(), entry);
            for other in names.iter().filter(|n| *n != name) {
                proptest::prop_assert_eq!(entry_text(&written, other).unwrap(), entry_text(&text, other).unwrap());
            }
        }
    }
}
