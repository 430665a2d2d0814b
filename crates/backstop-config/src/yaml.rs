//! YAML text → `serde_json::Value`, remembering where every value and every key came from.
//!
//! Built on saphyr's event parser so that duplicate keys are reported (all of them, not only the
//! first) and positions are kept for keys as well as values.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr::Scalar;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

/// A position in the source: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn from_marker(m: saphyr_parser::Marker) -> Self {
        Self {
            line: m.line().max(1),
            col: m.col() + 1,
        }
    }
}

/// A problem found while reading the YAML itself.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlProblem {
    pub pos: Pos,
    pub path: String,
    pub message: String,
}

/// The result of reading a YAML document.
#[derive(Debug, Default)]
pub struct Document {
    /// The value, `None` when the text had a syntax error or held no document.
    pub value: Option<Value>,
    /// JSON pointer → position of the value.
    pub values: HashMap<String, Pos>,
    /// JSON pointer → position of the key under which the value is stored.
    pub keys: HashMap<String, Pos>,
    /// Problems; `fatal` tells whether `value` can still be used.
    pub problems: Vec<YamlProblem>,
    pub fatal: bool,
    /// The source text, to point inside a scalar (see [`Document::find_after`]).
    pub source: String,
}

impl Document {
    /// Position of the value at `pointer`, else of its nearest ancestor that has one.
    pub fn value_pos(&self, pointer: &str) -> Pos {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Pos { line: 1, col: 1 },
            }
        }
    }

    /// Position of `needle` on the line of `pos`, at or after it (e.g. a placeholder inside a
    /// command); `pos` itself when not found there.
    pub fn find_after(&self, pos: Pos, needle: &str) -> Pos {
        let Some(line) = self.source.lines().nth(pos.line.saturating_sub(1)) else {
            return pos;
        };
        let skip = pos.col.saturating_sub(1);
        let Some((start_byte, _)) = line.char_indices().nth(skip) else {
            return pos;
        };
        match line[start_byte..].find(needle) {
            Some(offset) => {
                let col = line[..start_byte + offset].chars().count() + 1;
                Pos {
                    line: pos.line,
                    col,
                }
            }
            None => pos,
        }
    }

    /// Position of the key of the value at `pointer` (falls back to the value's position).
    pub fn key_pos(&self, pointer: &str) -> Pos {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.value_pos(pointer))
    }
}

/// Escapes one JSON pointer token (RFC 6901).
#[must_use]
pub fn escape_token(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

enum KeyState {
    /// The next node is a key.
    Expect,
    /// The next node is the value of this key.
    Have(String),
    /// The next node is the value of a rejected key: drop it.
    Discard,
}

enum Frame {
    Seq {
        items: Vec<Value>,
        ptr: String,
        anchor: usize,
    },
    Map {
        obj: Map<String, Value>,
        ptr: String,
        anchor: usize,
        key: KeyState,
    },
    /// A collection used as a mapping key: skipped, `depth` nested levels open.
    SkipKey { depth: usize },
}

impl Frame {
    /// A new, empty sequence or mapping at `ptr`.
    fn open(seq: bool, ptr: String, anchor: usize) -> Self {
        if seq {
            Self::Seq {
                items: Vec::new(),
                ptr,
                anchor,
            }
        } else {
            Self::Map {
                obj: Map::new(),
                ptr,
                anchor,
                key: KeyState::Expect,
            }
        }
    }
}

/// How many nodes alias expansion may produce overall (billion-laughs guard).
const ALIAS_BUDGET: usize = 100_000;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 128;

struct Builder {
    doc: Document,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    alias_budget: usize,
    documents: usize,
}

/// Reads `text` as one YAML document.
#[must_use]
pub fn read(text: &str) -> Document {
    let mut b = Builder {
        doc: Document {
            source: text.to_owned(),
            ..Document::default()
        },
        stack: Vec::new(),
        anchors: HashMap::new(),
        alias_budget: ALIAS_BUDGET,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_event() {
            None => break,
            Some(Err(e)) => {
                let gave_up = Pos::from_marker(*e.marker());
                let (pos, message) = match broken_construct(text, gave_up, e.info()) {
                    // Where the mistake is, not where the parser noticed it.
                    Some((start, what)) => (
                        start,
                        format!(
                            "YAML syntax error: {what} (the parser gave up at {}:{}: {})",
                            gave_up.line,
                            gave_up.col,
                            e.info()
                        ),
                    ),
                    None => (gave_up, syntax_message(e.info())),
                };
                b.fatal(pos, String::new(), message);
                break;
            }
            Some(Ok((event, span))) => {
                if matches!(event, Event::StreamEnd) {
                    break;
                }
                if !b.on_event(event, span) {
                    break;
                }
            }
        }
    }
    if !b.doc.fatal && b.doc.value.is_none() {
        b.fatal(
            Pos { line: 1, col: 1 },
            String::new(),
            "the file holds no YAML document".to_owned(),
        );
    }
    b.doc
}

impl Builder {
    fn fatal(&mut self, pos: Pos, path: String, message: String) {
        self.doc.problems.push(YamlProblem { pos, path, message });
        self.doc.fatal = true;
        self.doc.value = None;
    }

    fn problem(&mut self, pos: Pos, path: String, message: String) {
        self.doc.problems.push(YamlProblem { pos, path, message });
    }

    /// The pointer of the node that starts now (as a value), or `None` if it is a key / dropped.
    fn child_pointer(&self) -> ChildRole {
        match self.stack.last() {
            None => ChildRole::Value(String::new()),
            Some(Frame::Seq { ptr, .. } | Frame::Map { ptr, .. }) if ptr.starts_with('\u{0}') => {
                ChildRole::Dropped
            }
            Some(Frame::Seq { items, ptr, .. }) => {
                ChildRole::Value(format!("{ptr}/{}", items.len()))
            }
            Some(Frame::Map {
                key: KeyState::Expect,
                ..
            }) => ChildRole::Key,
            Some(Frame::Map {
                key: KeyState::Have(k),
                ptr,
                ..
            }) => ChildRole::Value(format!("{ptr}/{}", escape_token(k))),
            Some(Frame::Map {
                key: KeyState::Discard,
                ..
            })
            | Some(Frame::SkipKey { .. }) => ChildRole::Dropped,
        }
    }

    /// Handles one event; `false` stops the parse.
    fn on_event(&mut self, event: Event<'_>, span: Span) -> bool {
        let pos = Pos::from_marker(span.start);
        // Inside a collection used as a key: only track nesting.
        if let Some(Frame::SkipKey { depth }) = self.stack.last_mut() {
            match event {
                Event::SequenceStart(..) | Event::MappingStart(..) => *depth += 1,
                Event::SequenceEnd | Event::MappingEnd => {
                    if *depth == 0 {
                        self.stack.pop();
                        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                            *key = KeyState::Discard;
                        }
                    } else {
                        *depth -= 1;
                    }
                }
                _ => {}
            }
            return true;
        }
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => true,
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fatal(
                        pos,
                        String::new(),
                        "only one YAML document is allowed (found a second `---`)".to_owned(),
                    );
                    return false;
                }
                true
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.on_scalar(&text, style, anchor, tag.as_deref(), pos);
                true
            }
            Event::Alias(id) => {
                match self.child_pointer() {
                    ChildRole::Key => {
                        self.problem(
                            pos,
                            self.current_ptr(),
                            "an alias (`*name`) cannot be used as a key".to_owned(),
                        );
                        self.set_key(KeyState::Discard);
                    }
                    ChildRole::Dropped => self.finish(Value::Null, 0),
                    ChildRole::Value(ptr) => {
                        let value = self.anchors.get(&id).cloned();
                        match value {
                            Some(v) => {
                                let size = count_nodes(&v);
                                if size > self.alias_budget {
                                    self.fatal(
                                        pos,
                                        ptr,
                                        "aliases expand to too many nodes (alias bomb?)".to_owned(),
                                    );
                                    return false;
                                }
                                self.alias_budget -= size;
                                self.doc.values.insert(ptr, pos);
                                self.finish(v, 0);
                            }
                            None => {
                                self.problem(pos, ptr.clone(), "unknown alias".to_owned());
                                self.doc.values.insert(ptr, pos);
                                self.finish(Value::Null, 0);
                            }
                        }
                    }
                }
                true
            }
            Event::SequenceStart(anchor, tag) => self.open(true, anchor, tag.as_deref(), pos),
            Event::MappingStart(anchor, tag) => self.open(false, anchor, tag.as_deref(), pos),
            Event::SequenceEnd | Event::MappingEnd => {
                match self.stack.pop() {
                    Some(Frame::Seq { items, anchor, .. }) => {
                        self.finish(Value::Array(items), anchor)
                    }
                    Some(Frame::Map { obj, anchor, .. }) => self.finish(Value::Object(obj), anchor),
                    Some(Frame::SkipKey { .. }) | None => {}
                }
                true
            }
        }
    }

    fn current_ptr(&self) -> String {
        match self.stack.last() {
            Some(Frame::Seq { ptr, .. } | Frame::Map { ptr, .. }) => ptr.clone(),
            _ => String::new(),
        }
    }

    fn set_key(&mut self, state: KeyState) {
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
            *key = state;
        }
    }

    fn check_tag(&mut self, tag: Option<&Tag>, pos: Pos, ptr: &str, collection: bool) {
        if let Some(tag) = tag {
            let core = tag.is_yaml_core_schema();
            let ok = core && (!collection || matches!(tag.suffix.as_str(), "map" | "seq"));
            if !ok {
                self.problem(
                    pos,
                    ptr.to_owned(),
                    format!("unsupported YAML tag `{tag}` (remove it)"),
                );
            }
        }
    }

    fn open(&mut self, seq: bool, anchor: usize, tag: Option<&Tag>, pos: Pos) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            self.fatal(
                pos,
                self.current_ptr(),
                format!("nesting deeper than {MAX_DEPTH} levels"),
            );
            return false;
        }
        match self.child_pointer() {
            ChildRole::Key => {
                self.problem(
                    pos,
                    self.current_ptr(),
                    "keys must be plain scalars, not a sequence or mapping".to_owned(),
                );
                self.stack.push(Frame::SkipKey { depth: 0 });
            }
            ChildRole::Dropped => {
                // The value of a rejected key: build it anyway (cheap) and drop it on finish.
                let ptr = String::from("\u{0}dropped");
                self.stack.push(Frame::open(seq, ptr, anchor));
            }
            ChildRole::Value(ptr) => {
                self.check_tag(tag, pos, &ptr, true);
                self.doc.values.insert(ptr.clone(), pos);
                self.stack.push(Frame::open(seq, ptr, anchor));
            }
        }
        true
    }

    fn on_scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
        pos: Pos,
    ) {
        match self.child_pointer() {
            ChildRole::Key => {
                let Some(Frame::Map { obj, ptr, .. }) = self.stack.last() else {
                    return;
                };
                let key_ptr = format!("{ptr}/{}", escape_token(text));
                if obj.contains_key(text) {
                    let first = self.doc.keys.get(&key_ptr).copied().unwrap_or_default();
                    self.problem(
                        pos,
                        key_ptr,
                        format!(
                            "duplicate key `{text}` (first defined at line {}, column {})",
                            first.line, first.col
                        ),
                    );
                    self.set_key(KeyState::Discard);
                } else {
                    self.doc.keys.insert(key_ptr, pos);
                    self.set_key(KeyState::Have(text.to_owned()));
                }
            }
            ChildRole::Dropped => self.finish(Value::Null, 0),
            ChildRole::Value(ptr) => {
                self.check_tag(tag, pos, &ptr, false);
                let tag_cow = tag.map(|t| Cow::Owned(t.clone()));
                let value = match Scalar::parse_from_cow_and_metadata(
                    Cow::Borrowed(text),
                    style,
                    tag_cow.as_ref(),
                ) {
                    Some(Scalar::Null) => Value::Null,
                    Some(Scalar::Boolean(b)) => Value::Bool(b),
                    Some(Scalar::Integer(i)) => Value::Number(Number::from(i)),
                    Some(Scalar::FloatingPoint(f)) => Number::from_f64(f.into_inner())
                        .map_or_else(|| Value::String(text.to_owned()), Value::Number),
                    Some(Scalar::String(s)) => Value::String(s.into_owned()),
                    None => {
                        if let Some(t) = tag {
                            self.problem(
                                pos,
                                ptr.clone(),
                                format!("{text:?} is not a valid `{t}`"),
                            );
                        }
                        Value::String(text.to_owned())
                    }
                };
                self.doc.values.insert(ptr, pos);
                self.finish(value, anchor);
            }
        }
    }

    /// A node is complete: store it in its parent (or as the document).
    fn finish(&mut self, value: Value, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => {
                if !self.doc.fatal {
                    self.doc.value = Some(value);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { obj, key, .. }) => match std::mem::replace(key, KeyState::Expect) {
                KeyState::Have(k) => {
                    obj.insert(k, value);
                }
                KeyState::Discard | KeyState::Expect => {}
            },
            Some(Frame::SkipKey { .. }) => {}
        }
    }
}

enum ChildRole {
    Key,
    Value(String),
    Dropped,
}

/// Where the construct a syntax error broke on starts, when that is elsewhere than where the
/// parser gave up (at `gave_up`), as PyYAML reports it: a tab that indents a line (reported by
/// the parser at the end of the line before), or a `[` / `{` never closed (reported at the end
/// of the file or the next line that does not fit).
fn broken_construct(text: &str, gave_up: Pos, info: &str) -> Option<(Pos, String)> {
    // A tab in the indentation of a line up to the one the parser stopped on (or the next).
    let lines = text.lines().enumerate().take(gave_up.line + 1);
    for (i, line) in lines.filter(|(_, l)| info.contains("tab") && !l.trim().is_empty()) {
        let indent: &str = &line[..line.len() - line.trim_start_matches([' ', '\t']).len()];
        if let Some(col) = indent.find('\t') {
            return Some((
                Pos {
                    line: i + 1,
                    col: col + 1,
                },
                "a tab indents this line (indent with spaces, not tabs)".into(),
            ));
        }
    }
    // Flow brackets still open where the parser gave up; quotes and comments skipped.
    let mut open: Vec<(char, Pos)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line_no > gave_up.line {
            break;
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (col, c) in line.chars().enumerate() {
            if line_no == gave_up.line && col + 1 >= gave_up.col {
                break;
            }
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') if prev == ' ' || col == 0 => break,
                (None, '[' | '{') => open.push((
                    c,
                    Pos {
                        line: line_no,
                        col: col + 1,
                    },
                )),
                (None, ']' | '}') => {
                    open.pop();
                }
                _ => {}
            }
            prev = c;
        }
    }
    let (c, pos) = open.pop()?;
    let close = if c == '[' { ']' } else { '}' };
    Some((
        pos,
        format!("the `{c}` opened here is never closed (add `{close}`)"),
    ))
}

/// A YAML syntax error with a hint for the usual causes.
fn syntax_message(info: &str) -> String {
    let hint = if info.contains("mapping values are not allowed") {
        Some("a value containing ': ' must be quoted, or a key is indented wrongly")
    } else if info.contains("tab") {
        Some("indent with spaces, not tabs")
    } else if info.contains("quoted scalar") {
        Some("a quote is not closed")
    } else if info.contains("flow sequence") || info.contains("flow mapping") {
        Some("a `[` or `{` is not closed")
    } else if info.contains("block collection") || info.contains("block mapping") {
        Some("check the indentation of this line against the lines above")
    } else {
        None
    };
    match hint {
        Some(h) => format!("YAML syntax error: {info} ({h})"),
        None => format!("YAML syntax error: {info}"),
    }
}

fn count_nodes(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(count_nodes).sum::<usize>(),
        Value::Object(o) => 1 + o.values().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_positions() {
        let doc = read("a: 1\nb:\n  - x\n  - {c: true, d: 1.5}\n");
        assert!(doc.problems.is_empty(), "{:?}", doc.problems);
        assert_eq!(
            doc.value,
            Some(json!({"a": 1, "b": ["x", {"c": true, "d": 1.5}]}))
        );
        assert_eq!(doc.values["/a"], Pos { line: 1, col: 4 });
        assert_eq!(doc.keys["/b"], Pos { line: 2, col: 1 });
        assert_eq!(doc.values["/b/0"], Pos { line: 3, col: 5 });
        assert_eq!(doc.keys["/b/1/d"], Pos { line: 4, col: 15 });
    }

    #[test]
    fn every_duplicate_key_is_reported() {
        let doc = read("a: 1\nb: 2\na: 3\nb: 4\n");
        let lines: Vec<_> = doc.problems.iter().map(|p| p.pos.line).collect();
        assert_eq!(lines, vec![3, 4]);
        assert!(
            doc.problems[0]
                .message
                .contains("duplicate key `a` (first defined at line 1")
        );
        assert_eq!(doc.value, Some(json!({"a": 1, "b": 2})));
        assert!(!doc.fatal);
    }

    #[test]
    fn the_value_of_a_duplicate_key_is_dropped_whole() {
        let doc = read("a: 1\na: {b: [1, {c: 2}], d: 3}\ne: 2\n");
        assert_eq!(doc.problems.len(), 1, "{:?}", doc.problems);
        assert_eq!(doc.value, Some(json!({"a": 1, "e": 2})));
        assert!(
            doc.values
                .keys()
                .all(|k| k.is_empty() || k.starts_with('/')),
            "{:?}",
            doc.values
        );
        assert_eq!(doc.values["/e"], Pos { line: 3, col: 4 });
    }

    #[test]
    fn syntax_errors_carry_hints() {
        let doc = read("a: b: c\n");
        assert!(
            doc.problems[0].message.contains("must be quoted"),
            "{:?}",
            doc.problems
        );
        let doc = read("a: [1\n");
        assert!(
            doc.problems[0].message.contains("is never closed"),
            "{:?}",
            doc.problems
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let doc = read("a: [1, 2\nb: 3\n");
        assert!(doc.fatal);
        assert_eq!(doc.problems.len(), 1);
        assert!(doc.problems[0].message.starts_with("YAML syntax error"));
    }

    #[test]
    fn quoted_scalars_stay_strings_and_aliases_resolve() {
        let doc = read("a: &x '8080'\nb: *x\nc: !!str 12\n");
        assert_eq!(
            doc.value,
            Some(json!({"a": "8080", "b": "8080", "c": "12"}))
        );
    }

    #[test]
    fn complex_keys_and_second_documents_are_errors() {
        let doc = read("? [a, b]\n: 1\nc: 2\n");
        assert_eq!(doc.problems.len(), 1);
        assert_eq!(doc.value, Some(json!({"c": 2})));
        let doc = read("a: 1\n---\nb: 2\n");
        assert!(doc.fatal);
        assert!(doc.problems[0].message.contains("only one YAML document"));
    }

    #[test]
    fn empty_text_is_reported() {
        let doc = read("");
        assert!(doc.fatal);
        let doc = read("# only a comment\n");
        assert!(doc.fatal);
    }

    #[test]
    fn syntax_errors_point_at_the_broken_construct_not_where_the_parser_gave_up() {
        let unclosed = "services:\n  - name: shop\n    rollout:\n      steps: [{weight: 10, for: 3s},\n    environments: []\n";
        let doc = read(unclosed);
        let p = &doc.problems[0];
        assert_eq!((p.pos.line, p.pos.col), (4, 14), "{}", p.message);
        assert!(
            p.message.contains("`[` opened here is never closed"),
            "{}",
            p.message
        );
        assert!(
            p.message.contains("the parser gave up at 5:"),
            "{}",
            p.message
        );

        let tab = "services:\n  - name: shop\n\towner: x\n";
        let p = &read(tab).problems[0];
        assert_eq!((p.pos.line, p.pos.col), (3, 1), "{}", p.message);
        assert!(p.message.contains("tab"), "{}", p.message);

        // A bracket inside quotes or a comment is not a bracket.
        let quoted = "a: \"[not a list\"  # [neither\nb: [1, 2\n";
        let p = &read(quoted).problems[0];
        assert_eq!(p.pos.line, 2, "{}", p.message);
    }
}
