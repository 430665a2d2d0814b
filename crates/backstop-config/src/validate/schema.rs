//! JSON Schema validation, with each error rephrased for people and placed at its key or value.

use std::net::SocketAddr;
use std::sync::LazyLock;

use backstop_core::duration::{DURATION_PATTERN, parse_duration};
use backstop_core::env_var::{ENV_VAR_NAME_PATTERN, ENV_VAR_NAME_RULE};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::Problem;
use crate::model::{LB_NAME_PATTERN, NAME_PATTERN};
use crate::yaml::{Document, Pos, escape_token};

static SCHEMA: LazyLock<Value> = LazyLock::new(crate::schema);

static VALIDATOR: LazyLock<Result<Validator, String>> = LazyLock::new(|| {
    jsonschema::options()
        .should_validate_formats(true)
        .with_format("duration", |s: &str| parse_duration(s).is_ok())
        .with_format("socket-address", |s: &str| s.parse::<SocketAddr>().is_ok())
        .with_format("weekly-time", |s: &str| {
            crate::freeze::parse_weekly(s).is_ok()
        })
        .with_format("utc-time", |s: &str| crate::freeze::parse_utc(s).is_ok())
        .build(&SCHEMA)
        .map_err(|e| e.to_string())
});

/// Validates `value` against the schema of [`crate::Config`].
pub(crate) fn schema_problems(doc: &Document, value: &Value) -> Vec<Problem> {
    let validator = match &*VALIDATOR {
        Ok(v) => v,
        Err(e) => {
            return vec![Problem {
                pos: Pos { line: 1, col: 1 },
                path: String::new(),
                message: format!("internal error: the config schema does not compile: {e}"),
            }];
        }
    };
    let mut out = Vec::new();
    // Missing keys of one mapping are reported together: pointer → names.
    let mut missing: Vec<(String, Vec<String>)> = Vec::new();
    for error in validator.iter_errors(value) {
        if let ValidationErrorKind::Required { property } = error.kind() {
            let ptr = pointer_of(&error);
            let name = short(property);
            match missing.iter_mut().find(|(p, _)| *p == ptr) {
                Some((_, names)) => names.push(name),
                None => missing.push((ptr, vec![name])),
            }
            continue;
        }
        map_error(doc, &error, &mut out);
    }
    for (ptr, names) in missing {
        let message = match names.as_slice() {
            [one] => {
                let description = required_description(&ptr, one);
                match description {
                    Some(d) => format!("missing required key `{one}` ({d})"),
                    None => format!("missing required key `{one}`"),
                }
            }
            many => format!(
                "missing required keys {}",
                many.iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        out.push(Problem {
            pos: doc.value_pos(&ptr),
            path: ptr,
            message,
        });
    }
    out
}

/// The description of property `name` of the object at instance `ptr` (for hints).
fn required_description(ptr: &str, name: &str) -> Option<String> {
    // Walk the schema along the instance pointer: properties / items, following `$ref`s.
    let schema: &Value = &SCHEMA;
    let resolve = |mut s: &'static Value| -> &'static Value {
        for _ in 0..8 {
            match s
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
            {
                Some(r) => match schema.pointer(r) {
                    Some(next) => s = next,
                    None => break,
                },
                None => break,
            }
        }
        s
    };
    let mut cur = resolve(&SCHEMA);
    for token in ptr.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        cur = if token.parse::<usize>().is_ok() && cur.get("items").is_some() {
            resolve(cur.get("items")?)
        } else {
            resolve(cur.get("properties")?.get(&token)?)
        };
    }
    cur.get("properties")?
        .get(name)?
        .get("description")
        .and_then(Value::as_str)
        .map(first_sentence)
}

fn pointer_of(e: &ValidationError<'_>) -> String {
    e.instance_path().as_str().to_owned()
}

/// Resolves a schema location (following local `$ref`s where a segment is not found directly).
fn schema_at<'a>(root: &'a Value, location: &str) -> Option<&'a Value> {
    let mut cur = root;
    for raw in location.split('/').skip(1) {
        let token = raw.replace("~1", "/").replace("~0", "~");
        let mut hops = 0;
        loop {
            let next = match cur {
                Value::Object(m) => m.get(&token),
                Value::Array(a) => token.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            };
            if let Some(n) = next {
                cur = n;
                break;
            }
            let reference = cur.get("$ref").and_then(Value::as_str)?;
            cur = root.pointer(reference.strip_prefix('#')?)?;
            hops += 1;
            if hops > 8 {
                return None;
            }
        }
    }
    // A property schema may itself be a `$ref`: descriptions live on either.
    Some(cur)
}

fn parent(location: &str) -> &str {
    location.rfind('/').map_or("", |i| &location[..i])
}

/// The first sentence of a description, for hints.
fn first_sentence(text: &str) -> String {
    let text = text.trim();
    let end = text.find(". ").map_or(text.len(), |i| i + 1);
    text[..end]
        .replace('\n', " ")
        .trim_end_matches('.')
        .to_owned()
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({s:?})"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

fn type_name(t: jsonschema::JsonType) -> &'static str {
    match t.as_str() {
        "array" => "a list",
        "boolean" => "a boolean",
        "integer" => "an integer",
        "null" => "null",
        "number" => "a number",
        "object" => "a mapping",
        _ => "a string",
    }
}

/// The value at pointer `at` inside `instance`, itself at pointer `ptr` (null when absent).
fn doc_value(instance: &Value, ptr: &str, at: &str) -> Value {
    instance
        .pointer(at.strip_prefix(ptr).unwrap_or(""))
        .cloned()
        .unwrap_or(Value::Null)
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn map_error(doc: &Document, e: &ValidationError<'_>, out: &mut Vec<Problem>) {
    let ptr = pointer_of(e);
    let schema_path = e.schema_path().as_str().to_owned();
    let instance = e.instance();
    let here = doc.value_pos(&ptr);
    let property_schema = schema_at(&SCHEMA, parent(&schema_path));
    let hint_from_description = || {
        property_schema
            .and_then(|s| s.get("description"))
            .and_then(Value::as_str)
            .map(first_sentence)
    };
    let with_hint = |message: String, hint: Option<String>| match hint {
        Some(h) if !h.is_empty() => format!("{message} ({h})"),
        _ => message,
    };
    let mut push =
        |pos: Pos, path: String, message: String| out.push(Problem { pos, path, message });

    match e.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let allowed: Vec<String> = property_schema
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for key in unexpected {
                let key_ptr = format!("{ptr}/{}", escape_token(key));
                let suggestion = crate::suggest::closest(key, allowed.iter().map(String::as_str));
                let hint = match (suggestion, allowed.is_empty()) {
                    (Some(s), _) => {
                        format!("did you mean `{s}`? allowed here: {}", allowed.join(", "))
                    }
                    (None, false) => format!("allowed here: {}", allowed.join(", ")),
                    (None, true) => "no keys are allowed here".to_owned(),
                };
                push(
                    doc.key_pos(&key_ptr),
                    key_ptr,
                    format!("unknown key `{key}` ({hint})"),
                );
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = short(property);
            let description = property_schema
                .and_then(|s| s.get("properties"))
                .and_then(|p| p.get(&name))
                .and_then(|p| p.get("description"))
                .and_then(Value::as_str)
                .map(first_sentence);
            push(
                here,
                ptr,
                with_hint(format!("missing required key `{name}`"), description),
            );
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => type_name(*t).to_owned(),
                TypeKind::Multiple(set) => {
                    set.iter().map(type_name).collect::<Vec<_>>().join(" or ")
                }
            };
            let wants_string = matches!(kind, TypeKind::Single(t) if t.as_str() == "string");
            let hint = match instance.as_ref() {
                Value::Number(_) | Value::Bool(_) if wants_string => {
                    Some(format!("quote it: \"{}\"", short(instance)))
                }
                Value::Null => Some("the key has no value".to_owned()),
                _ => hint_from_description(),
            };
            push(
                here,
                ptr,
                with_hint(
                    format!("expected {expected}, found {}", describe(instance)),
                    hint,
                ),
            );
        }
        ValidationErrorKind::Enum { options } => {
            let allowed: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(short).collect())
                .unwrap_or_default();
            push(here, ptr, unknown_value(instance, &allowed));
        }
        ValidationErrorKind::Constant { expected_value } => {
            push(here, ptr, unknown_value(instance, &[short(expected_value)]));
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            // Enumerations with documented variants are `oneOf` of `const`s.
            let consts: Option<Vec<String>> = context
                .iter()
                .map(|branch| match branch.as_slice() {
                    [only] => match only.kind() {
                        ValidationErrorKind::Constant { expected_value } => {
                            Some(vec![short(expected_value)])
                        }
                        ValidationErrorKind::Enum { options } => {
                            options.as_array().map(|a| a.iter().map(short).collect())
                        }
                        _ => None,
                    },
                    _ => None,
                })
                .collect::<Option<Vec<Vec<String>>>>()
                .map(|v| v.concat());
            match consts {
                Some(allowed) if !allowed.is_empty() => {
                    push(here, ptr, unknown_value(instance, &allowed))
                }
                _ => {
                    // A branch rejects the value at its root when the type or the constant is
                    // wrong; among the others, report the one that came closest (fewest errors).
                    let at_root = |b: &Vec<ValidationError<'_>>| {
                        b.iter().any(|x| {
                            pointer_of(x) == ptr
                                && matches!(
                                    x.kind(),
                                    ValidationErrorKind::Type { .. }
                                        | ValidationErrorKind::Constant { .. }
                                        | ValidationErrorKind::Enum { .. }
                                )
                        })
                    };
                    // A tagged union (`{kind: tcp}`, `{kind: exec, command}`) whose tag is
                    // unknown: every branch refuses the same key's constant; name them all.
                    let tag: Vec<(String, String)> = context
                        .iter()
                        .filter_map(|b| {
                            b.iter().find_map(|x| match x.kind() {
                                ValidationErrorKind::Constant { expected_value }
                                    if pointer_of(x) != ptr =>
                                {
                                    Some((pointer_of(x), short(expected_value)))
                                }
                                _ => None,
                            })
                        })
                        .collect();
                    if tag.len() == context.len()
                        && tag.len() > 1
                        && tag.iter().all(|(p, _)| *p == tag[0].0)
                    {
                        let at = tag[0].0.clone();
                        let value = doc_value(instance, &ptr, &at);
                        let allowed: Vec<String> = tag.into_iter().map(|(_, c)| c).collect();
                        push(doc.value_pos(&at), at, unknown_value(&value, &allowed));
                        return;
                    }
                    // When the tag matched one branch, that branch says what is wrong.
                    let tag_refused = |b: &Vec<ValidationError<'_>>| {
                        b.iter().any(|x| {
                            matches!(x.kind(), ValidationErrorKind::Constant { .. })
                                && pointer_of(x) != ptr
                        })
                    };
                    let tagged = !tag.is_empty() && tag.len() + 1 == context.len();
                    let fitting = context
                        .iter()
                        .filter(|b| !b.is_empty() && !at_root(b))
                        .filter(|b| !tagged || !tag_refused(b))
                        .min_by_key(|b| b.len());
                    let forms: Vec<String> = context.iter().filter_map(|b| form_of(b)).collect();
                    match (fitting, forms.is_empty()) {
                        (Some(best), _) => {
                            for inner in best {
                                map_error(doc, inner, out);
                            }
                        }
                        (None, false) if instance.is_string() => {
                            push(here, ptr, unknown_value(instance, &forms));
                        }
                        (None, false) => push(
                            here,
                            ptr,
                            format!(
                                "expected one of {}, found {}",
                                forms
                                    .iter()
                                    .map(|f| format!("`{f}`"))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                describe(instance)
                            ),
                        ),
                        (None, true) => match context
                            .iter()
                            .filter(|b| !b.is_empty())
                            .min_by_key(|b| b.len())
                        {
                            Some(best) => {
                                for inner in best {
                                    map_error(doc, inner, out);
                                }
                            }
                            None => push(here, ptr, e.to_string()),
                        },
                    }
                }
            }
        }
        ValidationErrorKind::Format { format } => {
            let text = short(instance);
            let message = match format.as_str() {
                "duration" => parse_duration(&text)
                    .err()
                    .unwrap_or_else(|| format!("invalid duration {text:?}")),
                "socket-address" => format!(
                    "invalid listen address {text:?} (expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080; host names are not accepted)"
                ),
                "weekly-time" => crate::freeze::parse_weekly(&text).err().unwrap_or_default(),
                "utc-time" => crate::freeze::parse_utc(&text).err().unwrap_or_default(),
                other => format!("{text:?} is not a valid {other}"),
            };
            push(here, ptr, message);
        }
        ValidationErrorKind::Pattern { pattern } => {
            let text = short(instance);
            match pattern.as_str() {
                // Durations are checked by their format, with humantime's own message.
                DURATION_PATTERN => {}
                NAME_PATTERN => push(
                    here,
                    ptr,
                    format!(
                        "invalid name {text:?} (use lowercase letters, digits and '-', starting with a letter, at most 63 characters)"
                    ),
                ),
                ENV_VAR_NAME_PATTERN => push(
                    here,
                    ptr,
                    format!("invalid environment variable name {text:?} ({ENV_VAR_NAME_RULE})"),
                ),
                LB_NAME_PATTERN => push(
                    here,
                    ptr,
                    format!(
                        "invalid name {text:?} (letters, digits, '_', '.', ':' and '-' only, as in the load balancer's config)"
                    ),
                ),
                "^/" => push(
                    here,
                    ptr,
                    format!("invalid path {text:?} (must start with '/', e.g. /healthz)"),
                ),
                _ => push(
                    here,
                    ptr,
                    with_hint(
                        format!("{text:?} does not match `{pattern}`"),
                        hint_from_description(),
                    ),
                ),
            }
        }
        ValidationErrorKind::PropertyNames { error } => {
            let key = short(error.instance());
            let key_ptr = format!("{ptr}/{}", escape_token(&key));
            let message = if matches!(error.kind(), ValidationErrorKind::Pattern { pattern } if pattern == ENV_VAR_NAME_PATTERN)
            {
                format!("invalid environment variable name `{key}` ({ENV_VAR_NAME_RULE})")
            } else {
                format!("invalid key `{key}`: {error}")
            };
            push(doc.key_pos(&key_ptr), key_ptr, message);
        }
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => {
            let bound = match e.kind() {
                ValidationErrorKind::Maximum { .. } => "at most",
                ValidationErrorKind::Minimum { .. } => "at least",
                ValidationErrorKind::ExclusiveMaximum { .. } => "below",
                _ => "above",
            };
            push(
                here,
                ptr,
                with_hint(
                    format!("must be {bound} {limit}, found {}", short(instance)),
                    hint_from_description(),
                ),
            );
        }
        ValidationErrorKind::MinItems { limit } | ValidationErrorKind::MinProperties { limit } => {
            let (one, many) = match e.kind() {
                ValidationErrorKind::MinItems { .. } => ("item", "items"),
                _ => ("entry", "entries"),
            };
            let noun = if *limit == 1 { one } else { many };
            push(
                here,
                ptr,
                with_hint(
                    format!("needs at least {limit} {noun}"),
                    hint_from_description(),
                ),
            );
        }
        ValidationErrorKind::MinLength { limit } if *limit == 1 => {
            push(
                here,
                ptr,
                with_hint("must not be empty".to_owned(), hint_from_description()),
            );
        }
        _ => push(here, ptr, e.to_string()),
    }
}

/// The form a `oneOf` branch accepts, for messages: its constant, or `{key: …}` for a mapping
/// with required keys.
fn form_of(branch: &[ValidationError<'_>]) -> Option<String> {
    branch.iter().find_map(|x| match x.kind() {
        ValidationErrorKind::Constant { expected_value } => Some(short(expected_value)),
        ValidationErrorKind::Enum { options } => options
            .as_array()
            .map(|a| a.iter().map(short).collect::<Vec<_>>().join("`, `")),
        ValidationErrorKind::Type { .. } => {
            let location = x.schema_path().as_str().to_owned();
            let branch_schema = schema_at(&SCHEMA, parent(&location))?;
            let keys: Vec<String> = branch_schema
                .get("required")?
                .as_array()?
                .iter()
                .map(|k| format!("{}: …", short(k)))
                .collect();
            (!keys.is_empty()).then(|| format!("{{{}}}", keys.join(", ")))
        }
        _ => None,
    })
}

fn unknown_value(instance: &Value, allowed: &[String]) -> String {
    let text = short(instance);
    let quoted: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
    match crate::suggest::closest(&text, allowed.iter().map(String::as_str)) {
        Some(s) if s != text => format!(
            "unknown value `{text}` (did you mean `{s}`? allowed: {})",
            quoted.join(", ")
        ),
        _ => format!("unknown value `{text}` (allowed: {})", quoted.join(", ")),
    }
}
