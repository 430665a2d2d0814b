//! A small YAML emitter for `serde_json::Value` (block style, `name` first in every mapping),
//! used to print the effective config. Strings that could be read back as anything else are
//! double-quoted (JSON escapes are valid YAML).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Renders `value` as a YAML document.
#[must_use]
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => emit_map(&mut out, m, 0, false),
        Value::Array(a) if !a.is_empty() => emit_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn ordered(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by_key(|(k, _)| (k.as_str() != "name", k.as_str()));
    entries
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn emit_map(out: &mut String, map: &Map<String, Value>, indent: usize, first_inline: bool) {
    for (i, (k, v)) in ordered(map).into_iter().enumerate() {
        if !(first_inline && i == 0) {
            pad(out, indent);
        }
        out.push_str(&string(k));
        out.push(':');
        emit_value(out, v, indent, false);
    }
}

fn emit_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push('-');
        emit_value(out, item, indent, true);
    }
}

/// Writes what follows `key:` or `-`: a nested block, or ` scalar`. A mapping that is a
/// sequence item starts on the dash's line.
fn emit_value(out: &mut String, value: &Value, indent: usize, seq_item: bool) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push(if seq_item { ' ' } else { '\n' });
            emit_map(out, m, indent + 2, seq_item);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            emit_seq(out, a, indent + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value) -> Cow<'static, str> {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < 1e15
            {
                let mut s = String::new();
                // Integral floats print without a fraction (`weight: 10`).
                let _ = write!(s, "{}", f as i64);
                s.into()
            } else {
                n.to_string().into()
            }
        }
        Value::String(s) => string(s).into_owned().into(),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string as a plain scalar when that reads back as the same string, else double-quoted.
fn string(s: &str) -> Cow<'_, str> {
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '/' | '.' | '_'));
    let chars_ok = s.chars().all(|c| {
        c.is_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | ':' | '@' | ' ' | '+' | ',')
    });
    let plain = first_ok
        && chars_ok
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && matches!(
            saphyr::Scalar::parse_from_cow(Cow::Borrowed(s)),
            saphyr::Scalar::String(_)
        );
    if plain {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_the_reader() {
        let value = json!({
            "services": [{"tier": 0, "name": "a", "steps": [{"weight": 10.0, "for": "30s"}, {"weight": 100.0}],
                          "env": {"X": "true", "Y": "8080", "Z": "a: b", "E": "", "Q": "it's \"q\"\n"}}],
            "empty": {}, "list": [], "nested": [[1, 2], []], "f": 0.5, "n": null
        });
        let text = to_yaml(&value);
        assert!(text.starts_with("empty: {}\n"), "{text}");
        assert!(text.contains("- name: a\n"), "{text}");
        let back = crate::yaml::read(&text);
        assert!(back.problems.is_empty(), "{:?}\n{text}", back.problems);
        let mut expected = value;
        expected["services"][0]["steps"][0]["weight"] = json!(10);
        expected["services"][0]["steps"][1]["weight"] = json!(100);
        assert_eq!(back.value, Some(expected), "{text}");
    }
}
