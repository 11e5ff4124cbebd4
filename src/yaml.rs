//! YAML documents read once into a tree that keeps the line and column of every key and value,
//! deserialized through serde with every problem of a file reported at `file:line:column`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};

use crate::echo;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

const START: Loc = Loc { line: 1, column: 1 };

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

/// The largest runbook or config file read (a 100,000-step runbook is about 11 MB).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The deepest nesting of mappings and sequences accepted (serde_yaml's limit too).
const MAX_DEPTH: usize = 128;
/// Aliases may add at most this many nodes beyond the document's own (against alias bombs).
const MAX_ALIAS_NODES: usize = 10_000;

/// One node of the document: where it starts and what it holds.
#[derive(Debug, Clone)]
struct Node {
    loc: Loc,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// A scalar's text and whether it was plain (unquoted, so `5` is a number); boxed, so that
    /// it holds no spare capacity.
    Scalar(Box<str>, bool),
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

/// The text of a YAML file, parsed once into a located tree.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    root: Result<Node, Diagnostic>,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, Diagnostic> {
        let cannot = |why: String| Diagnostic {
            file: path.to_path_buf(),
            loc: START,
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
        let root = Builder::default().build(&text).map_err(|(loc, message)| Diagnostic {
            file: path.clone(),
            loc,
            message: echo::clip_quoted(&message).into_owned(),
        });
        Source { path, text, root }
    }

    /// Deserialize the whole document; every structural problem found points at its place.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Diagnostics> {
        let root = self.root.as_ref().map_err(|d| Diagnostics(vec![d.clone()]))?;
        let sink = Sink::default();
        let result = T::deserialize(Deserializer { node: root, path: &Trail::Root, sink: &sink });
        if let Err(error) = &result {
            sink.record(error);
        }
        let mut found = sink.0.into_inner();
        found.sort_by_key(|(loc, _)| *loc);
        match result {
            Ok(value) if found.is_empty() => Ok(value),
            _ => Err(Diagnostics(found.into_iter().map(|(loc, message)| self.diagnostic_at(loc, message)).collect())),
        }
    }

    /// Whether the document has this path (e.g. `steps[0].flag`).
    pub fn has(&self, path: &str) -> bool {
        self.find(path).is_some_and(|(_, _, rest)| rest.is_empty())
    }

    /// A diagnostic at the key of `path` (or its nearest ancestor that exists).
    pub fn at_key(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let loc = self.find(path).map_or(START, |(node, key, _)| key.unwrap_or(node.loc));
        self.diagnostic_at(loc, message.into())
    }

    /// A diagnostic at the value of `path` (or its nearest ancestor that exists).
    pub fn at_value(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let loc = self.find(path).map_or(START, |(node, _, _)| node.loc);
        self.diagnostic_at(loc, message.into())
    }

    /// A diagnostic about the whole file, at its start.
    pub fn at_start(&self, message: impl Into<String>) -> Diagnostic {
        self.diagnostic_at(START, message.into())
    }

    /// The deepest node on `path`, its key's location (a list item has none), and what of
    /// the path is left unmatched.
    fn find<'p>(&self, path: &'p str) -> Option<(&Node, Option<Loc>, &'p str)> {
        let mut node = self.root.as_ref().ok()?;
        let (mut key, mut rest) = (None, path);
        while let Some((step, after)) = next_step(rest) {
            let Some((child, child_key)) = child(node, step) else { break };
            (node, key, rest) = (child, child_key, after);
        }
        Some((node, key, rest))
    }

    fn diagnostic_at(&self, loc: Loc, message: String) -> Diagnostic {
        Diagnostic { file: self.path.clone(), loc, message }
    }
}

/// One step of a path: a key (`flag`) or an index (`[2]`), and the rest after it.
enum Step<'p> {
    Key(&'p str),
    Index(usize),
}

fn next_step(path: &str) -> Option<(Step<'_>, &str)> {
    let path = path.strip_prefix('.').unwrap_or(path);
    if let Some(inner) = path.strip_prefix('[') {
        let close = inner.find(']')?;
        return Some((Step::Index(inner[..close].parse().ok()?), &inner[close + 1..]));
    }
    let end = path.find(['.', '[']).unwrap_or(path.len());
    (end > 0).then(|| (Step::Key(&path[..end]), &path[end..]))
}

fn child<'n>(node: &'n Node, step: Step<'_>) -> Option<(&'n Node, Option<Loc>)> {
    match (&node.kind, step) {
        (Kind::Sequence(items), Step::Index(i)) => items.get(i).map(|item| (item, None)),
        (Kind::Mapping(entries), Step::Key(name)) => entries
            .iter()
            .find(|(key, _)| matches!(&key.kind, Kind::Scalar(text, _) if &**text == name))
            .map(|(key, value)| (value, Some(key.loc))),
        _ => None,
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

type Problem = (Loc, String);

/// Builds the tree from parser events, keeping anchors for aliases.
#[derive(Default)]
struct Builder {
    /// Open mappings and sequences: the node and its anchor id.
    stack: Vec<(Node, usize)>,
    /// A mapping's key waiting for its value, one slot per open container.
    keys: Vec<Option<Node>>,
    anchors: Vec<(usize, Node)>,
    alias_nodes: usize,
    root: Option<Node>,
}

impl Builder {
    fn build(mut self, text: &str) -> Result<Node, Problem> {
        let mut parser = Parser::new_from_str(text);
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|e| scan_problem(&e))?;
            self.event(event, span)?;
        }
        Ok(self.root.unwrap_or(Node { loc: START, kind: Kind::Scalar(Box::default(), true) }))
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Problem> {
        let loc = Loc { line: span.start.line(), column: span.start.col() + 1 };
        match event {
            Event::DocumentStart(_) if self.root.is_some() => {
                return Err((loc, "deserializing from YAML containing more than one document is not supported".into()));
            }
            Event::Scalar(text, style, anchor, _) => {
                let node = Node { loc, kind: Kind::Scalar(text.into(), style == ScalarStyle::Plain) };
                self.add(node, anchor)?;
            }
            Event::Alias(id) => self.alias(id, loc)?,
            Event::SequenceStart(anchor, _) => self.open(Node { loc, kind: Kind::Sequence(Vec::new()) }, anchor)?,
            Event::MappingStart(anchor, _) => self.open(Node { loc, kind: Kind::Mapping(Vec::new()) }, anchor)?,
            Event::SequenceEnd | Event::MappingEnd => {
                let (mut node, anchor) = self.stack.pop().expect("the parser balances its events");
                node.kind.shrink();
                self.keys.pop();
                self.add(node, anchor)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn open(&mut self, node: Node, anchor: usize) -> Result<(), Problem> {
        if self.stack.len() >= MAX_DEPTH {
            return Err((node.loc, format!("nested more than {MAX_DEPTH} levels deep")));
        }
        self.stack.push((node, anchor));
        self.keys.push(None);
        Ok(())
    }

    fn alias(&mut self, id: usize, loc: Loc) -> Result<(), Problem> {
        let Some((_, target)) = self.anchors.iter().rev().find(|(anchor, _)| *anchor == id) else {
            return Err((loc, "unknown anchor".into()));
        };
        let mut node = target.clone();
        self.alias_nodes += count(&node);
        if self.alias_nodes > MAX_ALIAS_NODES {
            return Err((loc, format!("aliases expand to more than {MAX_ALIAS_NODES} nodes")));
        }
        relocate(&mut node, loc);
        self.add(node, 0)
    }

    /// Put a finished node into its parent (or make it the root).
    fn add(&mut self, node: Node, anchor: usize) -> Result<(), Problem> {
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        let Some((parent, _)) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match &mut parent.kind {
            Kind::Sequence(items) => items.push(node),
            Kind::Mapping(entries) => {
                let slot = self.keys.last_mut().expect("one key slot per container");
                match slot.take() {
                    None => {
                        if entries.is_empty() {
                            // A mapping is located at its first key (as the key of a list item).
                            parent.loc = node.loc;
                        }
                        *slot = Some(node);
                    }
                    Some(key) => entries.push((key, node)),
                }
            }
            Kind::Scalar(..) => unreachable!("a scalar is never open"),
        }
        Ok(())
    }
}

impl Kind {
    /// Drop a finished container's spare capacity, so that memory follows the file's size.
    fn shrink(&mut self) {
        match self {
            Kind::Scalar(..) => {}
            Kind::Sequence(items) => items.shrink_to_fit(),
            Kind::Mapping(entries) => entries.shrink_to_fit(),
        }
    }
}

/// Every node of an alias's copy is located at the alias (the anchor's places would mislead).
fn relocate(node: &mut Node, loc: Loc) {
    node.loc = loc;
    match &mut node.kind {
        Kind::Scalar(..) => {}
        Kind::Sequence(items) => items.iter_mut().for_each(|item| relocate(item, loc)),
        Kind::Mapping(entries) => entries.iter_mut().for_each(|(key, value)| {
            relocate(key, loc);
            relocate(value, loc);
        }),
    }
}

fn count(node: &Node) -> usize {
    1 + match &node.kind {
        Kind::Scalar(..) => 0,
        Kind::Sequence(items) => items.iter().map(count).sum(),
        Kind::Mapping(entries) => entries.iter().map(|(k, v)| count(k) + count(v)).sum(),
    }
}

fn scan_problem(error: &ScanError) -> Problem {
    let marker = error.marker();
    (Loc { line: marker.line(), column: marker.col() + 1 }, error.info().to_string())
}

/// Where a node sits, rendered only for a message: `steps[0].flag`.
enum Trail<'a> {
    Root,
    Key(&'a Trail<'a>, &'a str),
    Index(&'a Trail<'a>, usize),
}

impl fmt::Display for Trail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trail::Root => Ok(()),
            Trail::Key(Trail::Root, key) => f.write_str(key),
            Trail::Key(parent, key) => write!(f, "{parent}.{key}"),
            Trail::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// The problems found so far in one document.
#[derive(Default)]
struct Sink(RefCell<Vec<Problem>>);

impl Sink {
    fn record(&self, error: &Error) {
        if let Error::Located(loc, message) = error {
            self.0.borrow_mut().push((*loc, echo::clip_quoted(message).into_owned()));
        }
    }
}

/// A deserialization error: not yet placed, placed, or already recorded in the sink.
#[derive(Debug)]
enum Error {
    Loose(String),
    /// A struct's missing field, left out where the struct also had an unknown key (its typo).
    Missing(String),
    Located(Loc, String),
    Recorded,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Loose(message) | Error::Missing(message) | Error::Located(_, message) => f.write_str(message),
            Error::Recorded => f.write_str("recorded"),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Error {
        Error::Loose(message.to_string())
    }

    fn missing_field(field: &'static str) -> Error {
        Error::Missing(format!("missing field `{field}`"))
    }
}

/// Deserializes one node; an error from below is placed at the innermost node it came from.
#[derive(Clone, Copy)]
struct Deserializer<'a> {
    node: &'a Node,
    path: &'a Trail<'a>,
    sink: &'a Sink,
}

impl<'a> Deserializer<'a> {
    fn place<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        result.map_err(|error| match error {
            Error::Loose(message) | Error::Missing(message) => {
                let message = match self.path {
                    Trail::Root => message,
                    path => format!("{path}: {message}"),
                };
                Error::Located(self.node.loc, message)
            }
            other => other,
        })
    }

    fn any<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.kind {
            Kind::Scalar(text, true) => plain(text, visitor),
            Kind::Scalar(text, false) => visitor.visit_str(text),
            Kind::Sequence(items) => visitor.visit_seq(SeqAccess { items: items.iter().enumerate(), of: self }),
            Kind::Mapping(entries) => {
                visitor.visit_map(MapAccess { entries: entries.iter(), fields: None, value: None, of: self })
            }
        }
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// A plain scalar read as YAML 1.2's core schema: null, boolean, integer, float or string.
fn plain<'de, V: Visitor<'de>>(text: &str, visitor: V) -> Result<V::Value, Error> {
    if is_null(text) {
        return visitor.visit_unit();
    }
    match text {
        "true" | "True" | "TRUE" => return visitor.visit_bool(true),
        "false" | "False" | "FALSE" => return visitor.visit_bool(false),
        _ => {}
    }
    if let Some(value) = integer(text) {
        return match u64::try_from(value) {
            Ok(unsigned) => visitor.visit_u64(unsigned),
            Err(_) => match i64::try_from(value) {
                Ok(signed) => visitor.visit_i64(signed),
                Err(_) => visitor.visit_str(text),
            },
        };
    }
    match float(text) {
        Some(value) => visitor.visit_f64(value),
        None => visitor.visit_str(text),
    }
}

fn integer(text: &str) -> Option<i128> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = match digits.get(..2) {
        Some("0x") => (16, &digits[2..]),
        Some("0o") => (8, &digits[2..]),
        Some("0b") => (2, &digits[2..]),
        _ => (10, digits),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let value = i128::from_str_radix(digits, radix).ok()?;
    Some(if negative { -value } else { value })
}

fn float(text: &str) -> Option<f64> {
    let unsigned = text.trim_start_matches(['-', '+']);
    match unsigned {
        ".inf" | ".Inf" | ".INF" => return Some(if text.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY }),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let numeric = unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if !numeric || !unsigned.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')) {
        return None;
    }
    text.parse().ok()
}

macro_rules! through_any {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.place(self.any(visitor))
        })*
    };
}

impl<'de> de::Deserializer<'de> for Deserializer<'_> {
    type Error = Error;

    through_any! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_seq deserialize_map deserialize_ignored_any
    }

    /// Any scalar as its source text: `0x10` stays `0x10`.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.kind {
            Kind::Scalar(text, _) => visitor.visit_str(text),
            _ => self.any(visitor),
        };
        self.place(result)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.kind {
            Kind::Scalar(text, true) if is_null(text) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        };
        self.place(result)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.place(visitor.visit_newtype_struct(self))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // An empty value (or an empty file) is an empty mapping, so that its missing fields are named.
        let entries = match &self.node.kind {
            Kind::Mapping(entries) => entries.as_slice(),
            Kind::Scalar(text, true) if text.is_empty() => &[],
            _ => return self.place(self.any(visitor)),
        };
        let unknown = Cell::new(false);
        let access = MapAccess { entries: entries.iter(), fields: Some((fields, &unknown)), value: None, of: self };
        let result = match visitor.visit_map(access) {
            Err(Error::Missing(_)) if unknown.get() => Err(Error::Recorded),
            other => other,
        };
        self.place(result)
    }

    /// A scalar names a unit variant; a one-entry mapping a variant with content.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let result = match &self.node.kind {
            Kind::Scalar(..) => visitor.visit_enum(Variant { name: self, value: None }),
            Kind::Mapping(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                let name = Deserializer { node: key, ..self };
                visitor.visit_enum(Variant { name, value: Some(Deserializer { node: value, ..self }) })
            }
            _ => self.any(visitor),
        };
        self.place(result)
    }
}

/// A sequence's items; an item that fails is recorded, and a visitor may go on to the next.
struct SeqAccess<'a, I> {
    items: I,
    of: Deserializer<'a>,
}

impl<'de, 'a, I: Iterator<Item = (usize, &'a Node)>> de::SeqAccess<'de> for SeqAccess<'a, I> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        let Some((i, node)) = self.items.next() else { return Ok(None) };
        let path = Trail::Index(self.of.path, i);
        seed.deserialize(Deserializer { node, path: &path, sink: self.of.sink }).map(Some).map_err(|error| {
            self.of.sink.record(&error);
            Error::Recorded
        })
    }
}

/// A mapping's entries. For a struct, a key it does not know is recorded and skipped, so
/// that every unknown key is reported (every struct read here denies unknown keys).
struct MapAccess<'a, I> {
    entries: I,
    /// A struct's fields, and whether a key outside them was found.
    fields: Option<(&'static [&'static str], &'a Cell<bool>)>,
    value: Option<&'a (Node, Node)>,
    of: Deserializer<'a>,
}

impl<'de, 'a, I: Iterator<Item = &'a (Node, Node)>> de::MapAccess<'de> for MapAccess<'a, I> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        for entry in self.entries.by_ref() {
            let key = Deserializer { node: &entry.0, ..self.of };
            if let (Some((fields, unknown)), Kind::Scalar(name, _)) = (self.fields, &entry.0.kind)
                && !fields.contains(&&**name)
            {
                unknown.set(true);
                self.of.sink.record(&key.place::<()>(Err(de::Error::unknown_field(name, fields))).unwrap_err());
                continue;
            }
            self.value = Some(entry);
            return seed.deserialize(key).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        let (key, value) = self.value.take().expect("serde asks for a value after its key");
        let name = match &key.kind {
            Kind::Scalar(text, _) => &**text,
            _ => "?",
        };
        let path = Trail::Key(self.of.path, name);
        seed.deserialize(Deserializer { node: value, path: &path, sink: self.of.sink })
    }
}

/// `deserialize_with` for a list whose items are all checked: an item that fails does not
/// hide the problems of the next ones.
pub fn every<'de, D: de::Deserializer<'de>, T: de::Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    struct Every<T>(std::marker::PhantomData<T>);
    impl<'de, T: de::Deserialize<'de>> Visitor<'de> for Every<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let (mut items, mut failed) = (Vec::new(), None);
            loop {
                match seq.next_element() {
                    Ok(Some(item)) => items.push(item),
                    Ok(None) => break,
                    Err(error) => failed = failed.or(Some(error)),
                }
            }
            failed.map_or(Ok(items), Err)
        }
    }
    deserializer.deserialize_seq(Every(std::marker::PhantomData))
}

/// An enum's variant name and, for a variant with content, its value.
struct Variant<'a> {
    name: Deserializer<'a>,
    value: Option<Deserializer<'a>>,
}

impl<'de, 'a> de::EnumAccess<'de> for Variant<'a> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let name = seed.deserialize(self.name)?;
        Ok((name, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.value {
            None => Ok(()),
            Some(value) => de::Deserialize::deserialize(value),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self.value.unwrap_or(self.name))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self.value.unwrap_or(self.name), visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, _: &'static [&'static str], visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(self.value.unwrap_or(self.name), visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source::new(PathBuf::from("r.yaml"), text.to_string())
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Top {
        version: u32,
        #[serde(default)]
        title: Option<String>,
        #[serde(default, deserialize_with = "every")]
        items: Vec<Item>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        id: String,
        #[serde(default)]
        retries: u32,
    }

    fn problems(text: &str) -> Vec<String> {
        source(text).parse::<Top>().unwrap_err().0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn keys_and_values_have_one_based_locations() {
        let s = source("version: 1\nsteps:\n  - id: a\n    flag: { name: x, state: off }\n");
        assert_eq!(s.at_key("steps[0].flag.state", "m").loc, Loc { line: 4, column: 22 });
        assert_eq!(s.at_value("steps[0].flag.state", "m").loc, Loc { line: 4, column: 29 });
        assert_eq!(s.at_key("steps[0].id", "m").loc, Loc { line: 3, column: 5 });
        assert_eq!(s.at_key("steps[0]", "m").loc, Loc { line: 3, column: 5 });
        assert!(s.has("steps[0].flag") && !s.has("steps[1]") && !s.has("steps[0].flag.percent"));
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
    fn structural_errors_carry_their_location_and_path_once() {
        assert_eq!(
            problems("version: 1\nverison: 2\n"),
            ["r.yaml:2:1: unknown field `verison`, expected one of `version`, `title`, `items`"]
        );
        assert_eq!(
            problems("version: 1\nitems:\n  - { id: a, retries: many }\n"),
            ["r.yaml:3:23: items[0].retries: invalid type: string \"many\", expected u32"]
        );
        assert_eq!(problems("title: t\n"), ["r.yaml:1:1: missing field `version`"]);
        assert_eq!(problems(""), ["r.yaml:1:1: missing field `version`"]);
    }

    #[test]
    fn a_failed_item_does_not_hide_the_problems_of_the_next() {
        let text = "version: 1\nitems:\n  - { di: b }\n  - { id: c, retries: x }\n  - { id: d, retires: 1 }\n";
        assert_eq!(
            problems(text),
            [
                "r.yaml:3:7: items[0]: unknown field `di`, expected `id` or `retries`",
                "r.yaml:4:23: items[1].retries: invalid type: string \"x\", expected u32",
                "r.yaml:5:14: items[2]: unknown field `retires`, expected `id` or `retries`",
            ]
        );
    }

    #[test]
    fn scalars_read_as_yaml_1_2_except_as_text() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Values {
            hex: u32,
            text: String,
            quoted: String,
            none: Option<u32>,
            yes: bool,
        }
        let text = "hex: 0x10\ntext: 0x10\nquoted: '5'\nnone: ~\nyes: true\n";
        let values: Values = source(text).parse().unwrap();
        let expected = Values { hex: 16, text: "0x10".into(), quoted: "5".into(), none: None, yes: true };
        assert_eq!(values, expected);
        assert!(problems("version: '1'\n")[0].contains("invalid type: string \"1\", expected u32"));
    }

    #[test]
    fn aliases_are_expanded_within_a_limit_and_nesting_is_bounded() {
        let aliased = "version: &v 1\ntitle: t\nitems: [ &i { id: a }, *i ]\n";
        assert_eq!(source(aliased).parse::<Top>().unwrap().items.len(), 2);
        assert_eq!(source(aliased).at_value("items[1].id", "m").loc, Loc { line: 3, column: 24 });
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..9 {
            let previous = (b'a' + level - 1) as char;
            let name = (b'a' + level) as char;
            bomb.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{previous}"); 10].join(", ")));
        }
        assert!(problems(&bomb)[0].contains("aliases expand to more than 10000 nodes"), "{:?}", problems(&bomb));
        let deep = format!("version: {}{}", "[".repeat(200), "]".repeat(200));
        assert!(problems(&deep)[0].contains("nested more than 128 levels deep"));
    }

    #[test]
    fn syntax_errors_and_second_documents_are_located() {
        assert!(
            problems("version: 1\n  title: [t\n")[0].starts_with("r.yaml:2:"),
            "{:?}",
            problems("version: 1\n  title: [t\n")
        );
        assert_eq!(
            problems("version: 1\n---\nversion: 2\n"),
            ["r.yaml:2:1: deserializing from YAML containing more than one document is not supported"]
        );
    }
}
