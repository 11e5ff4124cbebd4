//! A YAML file kept with the line and column of every key and value,
//! so that every error can point at `file:line:column`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

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
    keys: HashMap<String, Loc>,
    values: HashMap<String, Loc>,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, Diagnostic> {
        let text = std::fs::read_to_string(path).map_err(|e| Diagnostic {
            file: path.to_path_buf(),
            loc: Loc { line: 1, column: 1 },
            message: format!("cannot read this file: {e}"),
        })?;
        Ok(Source::new(path.to_path_buf(), text))
    }

    pub fn new(path: PathBuf, text: String) -> Source {
        let mut index = Indexer::default();
        // A syntax error is reported by `parse`; the index is then simply partial.
        let _ = Parser::new_from_str(&text).load(&mut index, false);
        Source { path, text, keys: index.keys, values: index.values }
    }

    /// Deserialize the whole document; a structural error points at its line and column.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Diagnostic> {
        serde_yaml::from_str(&self.text).map_err(|e| {
            let loc =
                e.location().map(|l| Loc { line: l.line(), column: l.column() }).unwrap_or(Loc { line: 1, column: 1 });
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(at) => message[..at].to_string(),
                None => message,
            };
            self.diagnostic_at(loc, message)
        })
    }

    /// Whether the document has this path (e.g. `steps[0].flag`).
    pub fn has(&self, path: &str) -> bool {
        self.keys.contains_key(path) || self.values.contains_key(path)
    }

    /// A diagnostic at the key of `path` (or its nearest ancestor that exists).
    pub fn at_key(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let loc = self.lookup(path, &self.keys, &self.values);
        self.diagnostic_at(loc, message.into())
    }

    /// A diagnostic at the value of `path` (or its nearest ancestor that exists).
    pub fn at_value(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let loc = self.lookup(path, &self.values, &self.keys);
        self.diagnostic_at(loc, message.into())
    }

    fn lookup(&self, path: &str, first: &HashMap<String, Loc>, second: &HashMap<String, Loc>) -> Loc {
        let mut path = path;
        loop {
            if let Some(loc) = first.get(path).or_else(|| second.get(path)) {
                return *loc;
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

/// Walks parser events and records where each path's key and value start.
#[derive(Default)]
struct Indexer {
    stack: Vec<Frame>,
    keys: HashMap<String, Loc>,
    values: HashMap<String, Loc>,
}

enum Frame {
    /// `located`: whether the mapping's own location is known yet (block mappings take
    /// their first key's, since the parser marks them oddly).
    Mapping {
        path: String,
        key: Option<String>,
        located: bool,
    },
    Sequence {
        path: String,
        next: usize,
    },
}

impl Indexer {
    /// The path of the node that starts now, or None when it is a mapping key.
    fn place_node(&mut self, marker: Marker, scalar: Option<&str>, mapping: bool) -> Option<String> {
        let loc = Loc { line: marker.line(), column: marker.col() + 1 };
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { path, next }) => {
                let child = format!("{path}[{next}]");
                *next += 1;
                if !mapping {
                    self.values.insert(child.clone(), loc);
                    self.keys.entry(child.clone()).or_insert(loc);
                }
                Some(child)
            }
            Some(Frame::Mapping { path, key, located }) => match key.take() {
                None => {
                    let name = scalar.unwrap_or_default();
                    if !*located {
                        *located = true;
                        self.values.entry(path.clone()).or_insert(loc);
                        self.keys.entry(path.clone()).or_insert(loc);
                    }
                    let child = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
                    self.keys.insert(child.clone(), loc);
                    *key = Some(child);
                    None
                }
                Some(child) => {
                    if !mapping {
                        self.values.insert(child.clone(), loc);
                    }
                    Some(child)
                }
            },
        }
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, event: Event, marker: Marker) {
        match event {
            Event::Scalar(value, ..) => {
                self.place_node(marker, Some(&value), false);
            }
            Event::Alias(_) => {
                self.place_node(marker, None, false);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.place_node(marker, None, true) {
                    self.stack.push(Frame::Mapping { path, key: None, located: false });
                }
            }
            Event::SequenceStart(..) => {
                if let Some(path) = self.place_node(marker, None, false) {
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
