//! A YAML file kept with the line and column of every key and value,
//! so that every error can point at `file:line:column`.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::echo;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

/// One problem in one file, printed as `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub loc: Loc,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.loc.line, self.loc.column, self.message)
    }
}

/// Every diagnostic found in a check; displayed one per line.
#[derive(Debug, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

/// The text of a YAML file and where each of its paths (`steps[2].flag.name`) sits.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    places: HashMap<String, Place>,
}

/// Where a path's key and its value start (a sequence item has no key).
#[derive(Debug, Clone, Copy, Default)]
struct Place {
    key: Option<Loc>,
    value: Option<Loc>,
}

/// The largest runbook or config file read (a 100,000-step runbook is about 11 MB).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

impl Source {
    pub fn read(path: &Path) -> Result<Source, Diagnostic> {
        let cannot = |why: String| Diagnostic {
            file: path.to_path_buf(),
            loc: Loc { line: 1, column: 1 },
            message: format!("cannot read this file: {why}"),
        };
        let text = read_text(path).map_err(cannot)?;
        Ok(Source::new(path.to_path_buf(), text))
    }

    /// A leading UTF-8 byte order mark (some Windows editors write one) is dropped.
    pub fn new(path: PathBuf, text: String) -> Source {
        let text = match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_string(),
            None => text,
        };
        let mut index = Indexer::default();
        // A syntax error is reported by `parse`; the index is then simply partial.
        let _ = Parser::new_from_str(&text).load(&mut index, false);
        Source { path, text, places: index.places }
    }

    /// Deserialize the whole document; a structural error points at its line and column.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Diagnostic> {
        serde_yaml::from_str(&self.text).map_err(|e| {
            let loc =
                e.location().map(|l| Loc { line: l.line(), column: l.column() }).unwrap_or(Loc { line: 1, column: 1 });
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(at) => &message[..at],
                None => &message,
            };
            self.diagnostic_at(loc, echo::clip_quoted(message).into_owned())
        })
    }

    /// Whether the document has this path (e.g. `steps[0].flag`).
    pub fn has(&self, path: &str) -> bool {
        self.places.contains_key(path)
    }

    /// A diagnostic at the key of `path` (or its nearest ancestor that exists).
    pub fn at_key(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let loc = self.lookup(path, |place| place.key.or(place.value));
        self.diagnostic_at(loc, message.into())
    }

    /// A diagnostic at the value of `path` (or its nearest ancestor that exists).
    pub fn at_value(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let loc = self.lookup(path, |place| place.value.or(place.key));
        self.diagnostic_at(loc, message.into())
    }

    /// A diagnostic about the whole file, at its start.
    pub fn at_start(&self, message: impl Into<String>) -> Diagnostic {
        self.diagnostic_at(Loc { line: 1, column: 1 }, message.into())
    }

    fn lookup(&self, path: &str, pick: impl Fn(&Place) -> Option<Loc>) -> Loc {
        let mut path = path;
        loop {
            if let Some(loc) = self.places.get(path).and_then(&pick) {
                return loc;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None if !path.is_empty() => path = "",
                None => return Loc { line: 1, column: 1 },
            }
        }
    }

    fn diagnostic_at(&self, loc: Loc, message: String) -> Diagnostic {
        Diagnostic { file: self.path.clone(), loc, message }
    }
}

/// A regular file's text, up to [`MAX_FILE_BYTES`]: a device or a FIFO is never read.
fn read_text(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("it is not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("it is larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024)));
    }
    String::from_utf8(bytes).map_err(|e| format!("it is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

/// Walks parser events and records where each path's key and value start: one entry per
/// node, so that indexing stays linear in the size of the file.
#[derive(Default)]
struct Indexer {
    stack: Vec<Frame>,
    places: HashMap<String, Place>,
}

enum Frame {
    /// `key`: the path and location of the key whose value comes next. `located`: whether
    /// the mapping's own location is known yet (block mappings take their first key's, since
    /// the parser marks them oddly).
    Mapping {
        path: String,
        key: Option<(String, Loc)>,
        located: bool,
    },
    Sequence {
        path: String,
        next: usize,
    },
}

impl Indexer {
    /// The path of the node that starts now and where its key is, or None when the node is
    /// a mapping key (then remembered for its value).
    fn next_node(&mut self, loc: Loc, scalar: Option<&str>) -> Option<(String, Option<Loc>)> {
        match self.stack.last_mut() {
            None => Some((String::new(), None)),
            Some(Frame::Sequence { path, next }) => {
                let child = format!("{path}[{next}]");
                *next += 1;
                Some((child, None))
            }
            Some(Frame::Mapping { path, key, located }) => match key.take() {
                Some((child, key_loc)) => Some((child, Some(key_loc))),
                None => {
                    if !*located {
                        *located = true;
                        if let Some(place) = self.places.get_mut(path.as_str()) {
                            place.key.get_or_insert(loc);
                            place.value.get_or_insert(loc);
                        }
                    }
                    let name = scalar.unwrap_or_default();
                    let child = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
                    *key = Some((child, loc));
                    None
                }
            },
        }
    }

    /// Record a mapping or a sequence that starts now and return its path; a mapping's own
    /// location is its first key's.
    fn container(&mut self, loc: Loc, mapping: bool) -> Option<String> {
        let (path, key) = self.next_node(loc, None)?;
        let value = (!mapping).then_some(loc);
        self.places.insert(path.clone(), Place { key, value });
        Some(path)
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, event: Event, marker: Marker) {
        let loc = Loc { line: marker.line(), column: marker.col() + 1 };
        match event {
            Event::Scalar(..) | Event::Alias(_) => {
                let scalar = match &event {
                    Event::Scalar(value, ..) => Some(value.as_str()),
                    _ => None,
                };
                if let Some((path, key)) = self.next_node(loc, scalar) {
                    self.places.insert(path, Place { key, value: Some(loc) });
                }
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.container(loc, true) {
                    self.stack.push(Frame::Mapping { path, key: None, located: false });
                }
            }
            Event::SequenceStart(..) => {
                if let Some(path) = self.container(loc, false) {
                    self.stack.push(Frame::Sequence { path, next: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source::new(PathBuf::from("r.yaml"), text.to_string())
    }

    #[test]
    fn keys_and_values_have_one_based_locations() {
        let s = source("version: 1\nsteps:\n  - id: a\n    flag: { name: x, state: off }\n");
        assert_eq!(s.at_key("steps[0].flag.state", "m").loc, Loc { line: 4, column: 22 });
        assert_eq!(s.at_value("steps[0].flag.state", "m").loc, Loc { line: 4, column: 29 });
        assert_eq!(s.at_key("steps[0].id", "m").loc, Loc { line: 3, column: 5 });
        assert_eq!(s.at_key("steps[0]", "m").loc, Loc { line: 3, column: 5 });
    }

    #[test]
    fn a_byte_order_mark_is_dropped_and_counts_for_no_column() {
        let s = source("\u{feff}version: 1\ntitle: t\n");
        assert!(s.text.starts_with("version"));
        assert_eq!(s.at_value("version", "m").loc, Loc { line: 1, column: 10 });
    }

    #[test]
    fn only_regular_files_are_read() {
        let d = Source::read(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(d.message, "cannot read this file: it is not a regular file");
    }

    #[test]
    fn a_missing_path_points_at_its_nearest_ancestor() {
        let s = source("steps:\n  - id: a\n    flag:\n      name: x\n");
        assert_eq!(s.at_key("steps[0].flag.percent", "m").loc, Loc { line: 3, column: 5 });
        assert_eq!(s.at_key("nothing.here", "m").loc, Loc { line: 1, column: 1 });
    }

    #[test]
    fn structural_errors_carry_serde_locations_without_repeating_them() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Top {
            version: u32,
        }
        let d = source("version: 1\nverison: 2\n").parse::<Top>().unwrap_err();
        assert_eq!(d.to_string(), "r.yaml:2:1: unknown field `verison`, expected `version`");
    }
}
