//! Validation of the parsed YAML value: JSON Schema errors turned into readable messages, then
//! the checks a schema cannot express (uniqueness, placeholders, step order, objectives).
//! Every check runs on the raw value and tolerates what other checks reject, so one pass reports
//! every problem.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use crate::model::{
    DURATION_PATTERN, ENV_KEY_PATTERN, LB_NAME_PATTERN, NAME_PATTERN, Objectives, format_duration,
    parse_duration,
};
use crate::yaml::{Document, Pos, escape_token};

/// A problem located by JSON pointer; the position is looked up in the [`Document`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub pos: Pos,
    pub path: String,
    pub message: String,
}

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
                    let fitting = context
                        .iter()
                        .filter(|b| !b.is_empty() && !at_root(b))
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
                ENV_KEY_PATTERN => push(
                    here,
                    ptr,
                    format!(
                        "invalid environment variable name {text:?} (use A-Z, 0-9 and _, not starting with a digit)"
                    ),
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
            let message = if matches!(error.kind(), ValidationErrorKind::Pattern { pattern } if pattern == ENV_KEY_PATTERN)
            {
                format!(
                    "invalid environment variable name `{key}` (use A-Z, 0-9 and _, not starting with a digit)"
                )
            } else {
                format!("invalid key `{key}`: {error}")
            };
            push(doc.key_pos(&key_ptr), key_ptr, message);
        }
        ValidationErrorKind::Maximum { limit } => {
            push(
                here,
                ptr,
                with_hint(
                    format!("must be at most {limit}, found {}", short(instance)),
                    hint_from_description(),
                ),
            );
        }
        ValidationErrorKind::Minimum { limit } => {
            push(
                here,
                ptr,
                with_hint(
                    format!("must be at least {limit}, found {}", short(instance)),
                    hint_from_description(),
                ),
            );
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            push(
                here,
                ptr,
                with_hint(
                    format!("must be below {limit}, found {}", short(instance)),
                    hint_from_description(),
                ),
            );
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            push(
                here,
                ptr,
                with_hint(
                    format!("must be above {limit}, found {}", short(instance)),
                    hint_from_description(),
                ),
            );
        }
        ValidationErrorKind::MinItems { limit } => {
            let noun = if *limit == 1 { "item" } else { "items" };
            push(
                here,
                ptr,
                with_hint(
                    format!("needs at least {limit} {noun}"),
                    hint_from_description(),
                ),
            );
        }
        ValidationErrorKind::MinProperties { limit } => {
            let noun = if *limit == 1 { "entry" } else { "entries" };
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

/// Checks the schema cannot express. Tolerates values of the wrong type (the schema reports those).
pub(crate) fn semantic_problems(doc: &Document, root: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    let within_ptr = "/defaults/breaker/within";
    positive_duration(
        root.pointer(within_ptr),
        within_ptr,
        &mut |path: String, message: String| {
            out.push(Problem {
                pos: doc.value_pos(&path),
                path,
                message,
            });
        },
    );
    let Some(services) = root.get("services").and_then(Value::as_array) else {
        return out;
    };
    // Problems positioned more precisely than their value (inside a command).
    let mut direct: Vec<Problem> = Vec::new();
    let mut push = |path: String, message: String| {
        out.push(Problem {
            pos: doc.value_pos(&path),
            path,
            message,
        });
    };
    let mut names: HashMap<&str, String> = HashMap::new();
    // listen address → (service, environment, pointer)
    let mut listens: HashMap<SocketAddr, (String, String, String)> = HashMap::new();
    // Load balancer objects Backstop rewrites → (service, pointer): two services must not
    // drive the same one.
    let mut lb_objects: HashMap<String, (String, String)> = HashMap::new();

    for (i, svc) in services.iter().enumerate() {
        let sp = format!("/services/{i}");
        let svc_name = svc.get("name").and_then(Value::as_str).unwrap_or("");
        if let Some(name) = svc.get("name").and_then(Value::as_str) {
            let here = format!("{sp}/name");
            if let Some(first) = names.get(name) {
                let at = doc.value_pos(first);
                push(
                    here,
                    format!(
                        "duplicate service name `{name}` (first defined at line {}, column {})",
                        at.line, at.col
                    ),
                );
            } else {
                names.insert(name, here);
            }
        }

        // Objectives, with tier defaults.
        let tier = svc.get("tier").and_then(Value::as_u64).filter(|t| *t <= 3);
        let defaults = tier.map(|t| Objectives::for_tier(u8::try_from(t).unwrap_or(3)));
        let mttr_ptr = format!("{sp}/objectives/mttr");
        let sla_ptr = format!("{sp}/objectives/rollback_sla");
        let given_mttr = positive_duration(svc.pointer("/objectives/mttr"), &mttr_ptr, &mut push);
        let given_sla =
            positive_duration(svc.pointer("/objectives/rollback_sla"), &sla_ptr, &mut push);
        let mttr = given_mttr.or(defaults.as_ref().and_then(|d| d.mttr));
        let sla = given_sla.or(defaults.as_ref().and_then(|d| d.rollback_sla));
        if let (Some(m), Some(s)) = (mttr, sla)
            && s > m
            && (given_mttr.is_some() || given_sla.is_some())
        {
            let (at, what) = if given_sla.is_some() {
                (sla_ptr, "")
            } else {
                (mttr_ptr, " (the tier default)")
            };
            push(
                at,
                format!(
                    "rollback_sla ({}) must not exceed mttr ({}){what} (restoring traffic is part of restoring service)",
                    format_duration(s),
                    format_duration(m)
                ),
            );
        }

        // Run.
        let kind = svc
            .pointer("/run/kind")
            .and_then(Value::as_str)
            .unwrap_or("process");
        check_run_kind(doc, svc, &sp, kind, &mut push, &mut direct);
        if kind == "process"
            && let Some(command) = svc.pointer("/run/command").and_then(Value::as_str)
        {
            let ptr = format!("{sp}/run/command");
            for (needle, message) in crate::command::check(command) {
                let at = doc.value_pos(&ptr);
                let pos = needle.map_or(at, |n| doc.find_after(at, &n));
                direct.push(Problem {
                    pos,
                    path: ptr.clone(),
                    message,
                });
            }
        }
        for field in [
            "health/timeout",
            "health/interval",
            "health/start_timeout",
            "timeout",
        ] {
            let ptr = format!("{sp}/run/{field}");
            positive_duration(svc.pointer(&format!("/run/{field}")), &ptr, &mut push);
        }

        // Traffic.
        let router = svc
            .pointer("/traffic/router")
            .and_then(Value::as_str)
            .unwrap_or("builtin");
        check_traffic(doc, svc, &sp, router, &mut push, &mut direct);
        let haproxy_backend = svc
            .pointer("/traffic/haproxy/socket")
            .and_then(Value::as_str)
            .zip(
                svc.pointer("/traffic/haproxy/backend")
                    .and_then(Value::as_str),
            )
            .map(|(socket, backend)| {
                (
                    format!("haproxy {} backend {backend}", socket.trim()),
                    format!("HAProxy backend `{backend}` on {}", socket.trim()),
                    format!("{sp}/traffic/haproxy/backend"),
                )
            });
        let nginx_file = svc
            .pointer("/traffic/nginx/upstream_file")
            .and_then(Value::as_str)
            .map(|file| {
                (
                    format!("nginx {file}"),
                    format!("nginx upstream_file {file}"),
                    format!("{sp}/traffic/nginx/upstream_file"),
                )
            });
        for (key, what, here) in haproxy_backend.into_iter().chain(nginx_file) {
            if let Some((first_svc, first)) = lb_objects.get(&key) {
                let at = doc.value_pos(first);
                push(
                    here,
                    format!(
                        "{what} is already driven by service `{first_svc}` (line {}); each service needs its own",
                        at.line
                    ),
                );
            } else {
                lb_objects.insert(key, (svc_name.to_owned(), here));
            }
        }

        // Severity and notifications.
        check_severity(svc, &sp, tier, &mut push);
        check_notify(svc, &sp, &mut push);

        // Rollout.
        check_rollout(doc, svc, &sp, &mut push, &mut direct);

        // Stateful components: RPO against the snapshot interval.
        crate::stateful::check_stateful(doc, svc, &sp, &mut push, &mut direct);

        // Environments.
        if let Some(envs) = svc.get("environments").and_then(Value::as_array) {
            let mut env_names: HashMap<&str, String> = HashMap::new();
            for (j, env) in envs.iter().enumerate() {
                let ep = format!("{sp}/environments/{j}");
                let env_name = env.get("name").and_then(Value::as_str).unwrap_or("");
                check_params(env, &ep, &mut push);
                if let Some(name) = env.get("name").and_then(Value::as_str) {
                    let here = format!("{ep}/name");
                    if let Some(first) = env_names.get(name) {
                        let at = doc.value_pos(first);
                        push(
                            here,
                            format!(
                                "duplicate environment `{name}` in service `{svc_name}` (first defined at line {})",
                                at.line
                            ),
                        );
                    } else {
                        env_names.insert(name, here);
                    }
                }
                if router == "builtin" && env.is_object() && env.get("listen").is_none() {
                    push(
                        ep.clone(),
                        "missing required key `listen` (the address the built-in proxy listens on; required with `router: builtin`)".to_owned(),
                    );
                }
                if let Some(addr) = env
                    .get("listen")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<SocketAddr>().ok())
                    && addr.port() != 0
                {
                    let here = format!("{ep}/listen");
                    if let Some((s, e, first)) = listens.get(&addr) {
                        let at = doc.value_pos(first);
                        push(
                            here,
                            format!(
                                "listen address {addr} is already used by service `{s}`, environment `{e}` (line {}); each environment needs its own",
                                at.line
                            ),
                        );
                    } else {
                        listens.insert(addr, (svc_name.to_owned(), env_name.to_owned(), here));
                    }
                }
                let env_sla_ptr = format!("{ep}/rollback_sla");
                if let Some(env_sla) =
                    positive_duration(env.get("rollback_sla"), &env_sla_ptr, &mut push)
                    && let Some(m) = mttr
                    && env_sla > m
                {
                    push(
                        env_sla_ptr,
                        format!(
                            "rollback_sla ({}) must not exceed the service's mttr ({})",
                            format_duration(env_sla),
                            format_duration(m)
                        ),
                    );
                }
            }
        }
    }
    out.extend(direct);
    out
}

/// A duration string that parses (bad ones are reported by the schema) and must be above zero.
fn positive_duration(
    v: Option<&Value>,
    ptr: &str,
    push: &mut impl FnMut(String, String),
) -> Option<Duration> {
    let d = parse_duration(v?.as_str()?).ok()?;
    if d.is_zero() {
        push(ptr.to_owned(), "must be greater than 0".to_owned());
        return None;
    }
    Some(d)
}

fn check_rollout(
    doc: &Document,
    svc: &Value,
    sp: &str,
    push: &mut impl FnMut(String, String),
    direct: &mut Vec<Problem>,
) {
    let Some(rollout) = svc.get("rollout") else {
        return;
    };
    let strategy = rollout
        .get("strategy")
        .and_then(Value::as_str)
        .unwrap_or("canary");
    let window_ptr = format!("{sp}/rollout/rollback_window");
    if rollout.get("rollback_window").is_some() && strategy != "blue-green" {
        direct.push(Problem {
            pos: doc.key_pos(&window_ptr),
            path: window_ptr.clone(),
            message: format!(
                "`rollback_window` is only for `strategy: blue-green` (this rollout is `{strategy}`)"
            ),
        });
    } else {
        positive_duration(rollout.get("rollback_window"), &window_ptr, push);
    }
    let Some(steps) = rollout.get("steps").and_then(Value::as_array) else {
        return;
    };
    let steps_ptr = format!("{sp}/rollout/steps");
    match strategy {
        "all-at-once" | "blue-green" => {
            let only_full = matches!(steps.as_slice(), [s] if s.get("weight").and_then(Value::as_f64) == Some(100.0) && s.get("for").is_none());
            if !steps.is_empty() && !only_full {
                let why = if strategy == "blue-green" {
                    "a blue-green rollout has no steps (traffic switches at once when the new colour is warm and healthy; remove `steps`, or use `strategy: canary`)"
                } else {
                    "an all-at-once rollout has no steps (remove `steps`, or use `strategy: canary`)"
                };
                push(steps_ptr, why.to_owned());
            }
        }
        "canary" => {
            if steps.is_empty() {
                push(
                    steps_ptr,
                    "a canary needs at least one step (remove `steps` for the default 10% → 50% → 100%)".to_owned(),
                );
                return;
            }
            let mut previous: Option<f64> = None;
            let last = steps.len() - 1;
            for (j, step) in steps.iter().enumerate() {
                let weight = step.get("weight").and_then(Value::as_f64);
                let wp = format!("{steps_ptr}/{j}/weight");
                if let (Some(w), Some(p)) = (weight, previous)
                    && w <= p
                {
                    push(
                        wp.clone(),
                        format!("step weights must increase: {w} comes after {p}"),
                    );
                }
                if j == last
                    && let Some(w) = weight
                    && w != 100.0
                {
                    push(
                        wp,
                        format!("the last step must send all traffic: weight 100, found {w}"),
                    );
                }
                if j < last && step.get("for").is_none_or(Value::is_null) {
                    let w = weight.map(|w| format!(" at {w}%")).unwrap_or_default();
                    push(
                        format!("{steps_ptr}/{j}"),
                        format!(
                            "step {} needs `for`: how long to hold{w} before the next step (e.g. `for: 1m`)",
                            j + 1
                        ),
                    );
                }
                previous = weight.or(previous);
            }
        }
        _ => {}
    }
}

/// A problem pointing at a key (a key that is not allowed where it is).
fn key_problem(doc: &Document, path: String, message: String) -> Problem {
    Problem {
        pos: doc.key_pos(&path),
        path,
        message,
    }
}

/// `run.kind`: the keys each deployer needs and the keys it does not take.
fn check_run_kind(
    doc: &Document,
    svc: &Value,
    sp: &str,
    kind: &str,
    push: &mut impl FnMut(String, String),
    direct: &mut Vec<Problem>,
) {
    let Some(run) = svc.get("run").and_then(Value::as_object) else {
        return;
    };
    let rp = format!("{sp}/run");
    match kind {
        "process" => {
            if !run.contains_key("command") {
                push(
                    rp.clone(),
                    "missing required key `command` (the shell command that starts a version, e.g. `./app --port {port}`; or set `kind: command` to use deploy/stop scripts)".to_owned(),
                );
            }
            for key in ["deploy", "stop", "health_command", "timeout", "retries"] {
                if run.contains_key(key) {
                    direct.push(key_problem(
                        doc,
                        format!("{rp}/{key}"),
                        format!(
                            "`{key}` is only for `kind: command` (user scripts); this run is `kind: process`, which starts `command`"
                        ),
                    ));
                }
            }
        }
        "command" => {
            if run.contains_key("command") {
                direct.push(key_problem(
                    doc,
                    format!("{rp}/command"),
                    "`command` is not allowed with `kind: command` (the `deploy` and `stop` scripts run the versions)".to_owned(),
                ));
            }
            if run.contains_key("health") {
                direct.push(key_problem(
                    doc,
                    format!("{rp}/health"),
                    "`health` is for `kind: process`; with `kind: command` use `health_command`"
                        .to_owned(),
                ));
            }
            let missing: Vec<&str> = ["deploy", "stop"]
                .into_iter()
                .filter(|k| !run.contains_key(*k))
                .collect();
            if !missing.is_empty() {
                let (noun, list) = match missing.as_slice() {
                    [one] => ("key", format!("`{one}`")),
                    _ => ("keys", "`deploy`, `stop`".to_owned()),
                };
                push(
                    rp,
                    format!(
                        "missing required {noun} {list} (required for `kind: command`: the scripts that deploy and stop a version)"
                    ),
                );
            }
        }
        _ => {}
    }
}

const ROUTERS_WITH_BLOCKS: [&str; 3] = ["haproxy", "nginx", "command"];

/// `traffic`: the block of the chosen router is required, the others are not allowed; socket
/// and file paths are absolute.
fn check_traffic(
    doc: &Document,
    svc: &Value,
    sp: &str,
    router: &str,
    push: &mut impl FnMut(String, String),
    direct: &mut Vec<Problem>,
) {
    let tp = format!("{sp}/traffic");
    let traffic = svc.get("traffic").and_then(Value::as_object);
    let known = router == "builtin" || ROUTERS_WITH_BLOCKS.contains(&router);
    if known {
        for block in ROUTERS_WITH_BLOCKS {
            let present = traffic.is_some_and(|t| t.contains_key(block));
            if block == router && !present {
                let what = match block {
                    "haproxy" => "socket, backend",
                    "nginx" => "upstream_file, upstream",
                    _ => "apply",
                };
                push(
                    format!("{tp}/router"),
                    format!("`router: {block}` needs a `{block}` block under `traffic` ({what})"),
                );
            } else if block != router && present {
                direct.push(key_problem(
                    doc,
                    format!("{tp}/{block}"),
                    format!(
                        "`{block}` settings are only used with `router: {block}` (the router here is `{router}`)"
                    ),
                ));
            }
        }
    }
    let socket_ptr = format!("{tp}/haproxy/socket");
    if let Some(socket) = svc
        .pointer("/traffic/haproxy/socket")
        .and_then(Value::as_str)
        && !socket.trim().is_empty()
        && let Err(message) = crate::model::HaproxySocket::parse(socket)
    {
        push(socket_ptr, message);
    }
    if let Some(file) = svc
        .pointer("/traffic/nginx/upstream_file")
        .and_then(Value::as_str)
        && !file.is_empty()
        && !file.starts_with('/')
    {
        push(
            format!("{tp}/nginx/upstream_file"),
            format!(
                "upstream_file {file:?} must be an absolute path (e.g. /etc/nginx/conf.d/checkout-upstream.conf)"
            ),
        );
    }
    let timeout_ptr = format!("{tp}/command/timeout");
    positive_duration(svc.pointer("/traffic/command/timeout"), &timeout_ptr, push);
}

/// `severity`: acknowledgement windows above zero and shorter than the rollback SLA; regulated
/// services roll back on every severity.
fn check_severity(svc: &Value, sp: &str, tier: Option<u64>, push: &mut impl FnMut(String, String)) {
    let Some(policy) = svc.get("severity").and_then(Value::as_object) else {
        return;
    };
    let envs = svc
        .get("environments")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let regulated = envs
        .iter()
        .find(|e| e.get("regulated").and_then(Value::as_bool) == Some(true))
        .map(|e| e.get("name").and_then(Value::as_str).unwrap_or("?"));
    // The strictest rollback SLA over the environments, and where it applies.
    let service_sla = svc
        .pointer("/objectives/rollback_sla")
        .and_then(Value::as_str)
        .and_then(|s| parse_duration(s).ok())
        .filter(|d| !d.is_zero())
        .or_else(|| {
            tier.and_then(|t| Objectives::for_tier(u8::try_from(t).unwrap_or(3)).rollback_sla)
        });
    let strictest = envs
        .iter()
        .filter_map(|e| {
            let own = e
                .get("rollback_sla")
                .and_then(Value::as_str)
                .and_then(|s| parse_duration(s).ok())
                .filter(|d| !d.is_zero());
            let name = e.get("name").and_then(Value::as_str).unwrap_or("?");
            own.or(service_sla).map(|d| (d, name))
        })
        .min_by_key(|(d, _)| *d);
    for severity in ["critical", "major", "minor"] {
        let Some(action) = policy.get(severity) else {
            continue;
        };
        let ptr = format!("{sp}/severity/{severity}");
        let name = match action {
            Value::String(s) => s.as_str(),
            Value::Object(m) if m.len() == 1 && m.contains_key("rollback_unless_acknowledged") => {
                "rollback_unless_acknowledged"
            }
            // Anything else is reported by the schema.
            _ => continue,
        };
        if let Some(env) = regulated
            && name != "rollback"
        {
            push(
                ptr.clone(),
                format!(
                    "`{name}` is not allowed: environment `{env}` is regulated, so automatic rollback is mandatory (use `rollback`)"
                ),
            );
            continue;
        }
        let ack_ptr = format!("{ptr}/rollback_unless_acknowledged");
        if let Some(ack) =
            positive_duration(action.get("rollback_unless_acknowledged"), &ack_ptr, push)
            && let Some((sla, env)) = strictest
            && ack >= sla
        {
            push(
                ack_ptr,
                format!(
                    "the acknowledgement window ({}) must be shorter than the rollback SLA ({} in environment `{env}`): an unacknowledged failure would breach the SLA before the rollback starts",
                    format_duration(ack),
                    format_duration(sla)
                ),
            );
        }
    }
}

/// `notify`: webhook URLs are http(s).
/// `params`: each path once (a file and a folder must not overlap), and no variable both a
/// plain value and a secret.
fn check_params(env: &Value, ep: &str, push: &mut impl FnMut(String, String)) {
    let mut seen: Vec<(String, String)> = Vec::new();
    for kind in ["files", "folders"] {
        let Some(list) = env
            .pointer(&format!("/params/{kind}"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for (k, p) in list.iter().enumerate() {
            let Some(path) = p.as_str() else { continue };
            let norm = path.trim_end_matches('/').to_owned();
            let here = format!("{ep}/params/{kind}/{k}");
            let clash = seen.iter().find(|(other, _)| {
                *other == norm
                    || norm.starts_with(&format!("{other}/"))
                    || other.starts_with(&format!("{norm}/"))
            });
            if let Some((other, at)) = clash {
                push(
                    here,
                    format!("`{path}` overlaps `{other}` (at {at}); list each file or folder once"),
                );
            } else {
                seen.push((norm, here));
            }
        }
    }
    if let (Some(vals), Some(secrets)) = (
        env.pointer("/params/env").and_then(Value::as_object),
        env.pointer("/params/secrets").and_then(Value::as_object),
    ) {
        for key in secrets.keys().filter(|k| vals.contains_key(*k)) {
            push(
                format!("{ep}/params/secrets/{}", escape_token(key)),
                format!("`{key}` is both in params.env and params.secrets; keep one"),
            );
        }
    }
}

fn check_notify(svc: &Value, sp: &str, push: &mut impl FnMut(String, String)) {
    let Some(targets) = svc.get("notify").and_then(Value::as_array) else {
        return;
    };
    for (k, target) in targets.iter().enumerate() {
        if let Some(url) = target.get("webhook").and_then(Value::as_str)
            && !url.is_empty()
            && !is_http_url(url)
        {
            push(
                format!("{sp}/notify/{k}/webhook"),
                format!(
                    "invalid webhook URL {url:?} (expected http:// or https:// then a host, e.g. https://chat.example/hooks/T000)"
                ),
            );
        }
    }
}

/// `http://HOST...` or `https://HOST...`, without whitespace.
fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    !host.is_empty() && !host.starts_with(':') && !url.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        assert!(is_http_url("https://chat.example/hooks/T000"));
        assert!(is_http_url("http://127.0.0.1:9000"));
        assert!(is_http_url("HTTPS://user@host?x=1"));
        assert!(!is_http_url("ftp://host/x"));
        assert!(!is_http_url("https://"));
        assert!(!is_http_url("https://:80/x"));
        assert!(!is_http_url("https://host/a b"));
        assert!(!is_http_url("chat.example/hooks"));
    }
}
