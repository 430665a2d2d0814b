//! The checks a schema cannot express, walking each service: unique names and addresses,
//! objectives against the tier, then each section's own checks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use backstop_core::duration::{format_duration, parse_duration};
use backstop_core::tier::Objectives;
use serde_json::Value;

use super::Problem;
use super::environment::check_params;
use super::notify::check_notify;
use super::rollout::check_rollout;
use super::run::check_run_kind;
use super::severity::check_severity;
use super::traffic::check_traffic;
use super::validation::{check_flags, check_heartbeats, check_sweeps, check_validation};
use crate::yaml::{Document, Pos};

/// Where `name` was first defined when `seen` has it already; otherwise records it as defined at
/// `here` (a JSON pointer).
fn earlier_definition<'v>(
    doc: &Document,
    seen: &mut HashMap<&'v str, String>,
    name: &'v str,
    here: &str,
) -> Option<Pos> {
    if let Some(first) = seen.get(name) {
        return Some(doc.value_pos(first));
    }
    seen.insert(name, here.to_owned());
    None
}

/// Checks the schema cannot express. Tolerates values of the wrong type (the schema reports those).
pub(crate) fn semantic_problems(doc: &Document, root: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    let within_ptr = "/defaults/breaker/within";
    let mut push = |path: String, message: String| {
        out.push(Problem {
            pos: doc.value_pos(&path),
            path,
            message,
        });
    };
    positive_duration(root.pointer(within_ptr), within_ptr, &mut push);
    check_analysis(
        root.pointer("/defaults/analysis"),
        "/defaults/analysis",
        &mut push,
    );
    if let Some(services) = root.get("services").and_then(Value::as_array) {
        for (i, svc) in services.iter().enumerate() {
            check_analysis(
                svc.get("analysis"),
                &format!("/services/{i}/analysis"),
                &mut push,
            );
        }
    }
    // Agents by name → pointer of their definition.
    let mut agent_names: HashMap<&str, String> = HashMap::new();
    if let Some(agents) = root.get("agents").and_then(Value::as_array) {
        for (i, agent) in agents.iter().enumerate() {
            if let Some(name) = agent.get("name").and_then(Value::as_str) {
                let here = format!("/agents/{i}/name");
                if let Some(at) = earlier_definition(doc, &mut agent_names, name, &here) {
                    push(
                        here,
                        format!(
                            "duplicate agent `{name}` (first defined at line {}, column {})",
                            at.line, at.col
                        ),
                    );
                }
            }
        }
    }
    let Some(services) = root.get("services").and_then(Value::as_array) else {
        return out;
    };
    check_heartbeats(services, &mut push);
    check_flags(services, &mut push);
    // Problems positioned more precisely than their value (inside a command).
    let mut direct: Vec<Problem> = Vec::new();
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
            if let Some(at) = earlier_definition(doc, &mut names, name, &here) {
                push(
                    here,
                    format!(
                        "duplicate service name `{name}` (first defined at line {}, column {})",
                        at.line, at.col
                    ),
                );
            }
        }

        // PagerDuty services map to environments of this service.
        if let Some(map) = svc.pointer("/alerts/pagerduty").and_then(Value::as_object) {
            let envs = env_names(svc);
            for (pd, env) in map {
                if let Some(env) = env.as_str()
                    && !envs.contains(&env)
                {
                    push(
                        format!("{sp}/alerts/pagerduty/{pd}"),
                        format!(
                            "PagerDuty service {pd} watches environment {env:?}, which this service does not have (it has: {})",
                            envs.join(", ")
                        ),
                    );
                }
            }
        }

        // One source of per-version counts.
        let sources: Vec<&str> = ["prometheus", "command", "http"]
            .into_iter()
            .filter(|k| svc.pointer(&format!("/signals/{k}")).is_some())
            .collect();
        if let [first, second, ..] = sources.as_slice() {
            push(
                format!("{sp}/signals/{second}"),
                format!(
                    "one source of per-version counts: `signals.{first}` is given already (the judge compares one set of counts)"
                ),
            );
        }

        if let Some(pattern) = svc.pointer("/signals/logs/pattern").and_then(Value::as_str)
            && let Err(e) = regex::Regex::new(pattern)
        {
            // The parser's message is several lines (the pattern, a caret); its last says why.
            let text = e.to_string();
            let why = text.lines().last().unwrap_or_default();
            push(
                format!("{sp}/signals/logs/pattern"),
                format!(
                    "not a regular expression: {}",
                    why.trim_start_matches("error: ")
                ),
            );
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
        check_instances(svc, &sp, kind, router, &mut push);
        check_waves(svc, &sp, &mut push);
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
        check_validation(svc, &sp, &mut push);
        check_sweeps(svc, &sp, &mut push);

        // Rollout.
        check_rollout(svc, &sp, &mut push);

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
                    if let Some(at) = earlier_definition(doc, &mut env_names, name, &here) {
                        push(
                            here,
                            format!(
                                "duplicate environment `{name}` in service `{svc_name}` (first defined at line {})",
                                at.line
                            ),
                        );
                    }
                }
                if let Some(agent) = env.get("agent").and_then(Value::as_str) {
                    let here = format!("{ep}/agent");
                    if !agent_names.contains_key(agent) {
                        let known: Vec<&str> = agent_names.keys().copied().collect();
                        push(
                            here,
                            if known.is_empty() {
                                format!("unknown agent `{agent}`: the file has no `agents` list")
                            } else {
                                format!(
                                    "unknown agent `{agent}` (the `agents` list has: {})",
                                    sorted_list(known)
                                )
                            },
                        );
                    } else if router != "builtin" || kind != "process" {
                        push(
                            here,
                            format!(
                                "`agent` needs `traffic.router: builtin` and `run.kind: process` (this service has router `{router}` and kind `{kind}`): the agent runs the built-in proxy and the instances of its host"
                            ),
                        );
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
pub(super) fn positive_duration(
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

/// Judge settings the judge would otherwise clamp or ignore: an interval of 0, a check
/// interval of 0, a mixture whose largest odds ratio is below its smallest.
fn check_analysis(analysis: Option<&Value>, ptr: &str, push: &mut impl FnMut(String, String)) {
    let Some(a) = analysis else {
        return;
    };
    positive_duration(a.get("interval"), &format!("{ptr}/interval"), push);
    positive_duration(
        a.pointer("/threshold/check_interval"),
        &format!("{ptr}/threshold/check_interval"),
        push,
    );
    let ratio = |k: &str| {
        a.pointer(&format!("/sequential/{k}"))
            .and_then(Value::as_f64)
    };
    if let (Some(lo), Some(hi)) = (ratio("min_odds_ratio"), ratio("max_odds_ratio"))
        && hi < lo
    {
        push(
            format!("{ptr}/sequential/max_odds_ratio"),
            format!("must be at least min_odds_ratio ({lo})"),
        );
    }
}

/// The names of a service's environments, as written.
fn env_names(svc: &Value) -> Vec<&str> {
    svc.get("environments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("name").and_then(Value::as_str))
        .collect()
}

/// Waves name environments the service has, each in one wave at most, and bake a while.
fn check_waves(svc: &Value, sp: &str, push: &mut impl FnMut(String, String)) {
    let Some(waves) = svc.get("waves").and_then(Value::as_array) else {
        return;
    };
    let envs = env_names(svc);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (w, wave) in waves.iter().enumerate() {
        let wp = format!("{sp}/waves/{w}");
        positive_duration(wave.get("bake"), &format!("{wp}/bake"), push);
        let names = wave
            .get("envs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for (k, name) in names.enumerate() {
            let Some(name) = name.as_str() else { continue };
            let here = format!("{wp}/envs/{k}");
            if !envs.contains(&name) {
                push(
                    here,
                    format!(
                        "wave {} names environment {name:?}, which this service does not have (it has: {})",
                        w + 1,
                        envs.join(", ")
                    ),
                );
            } else if let Some(first) = seen.insert(name, w) {
                push(
                    here,
                    format!(
                        "environment {name:?} is in wave {} already; a release reaches an environment once per ship",
                        first + 1
                    ),
                );
            }
        }
    }
}

/// A problem pointing at a key (a key that is not allowed where it is).
/// `run.instances` above 1 and `run.probes`: Backstop starts the instances (kind `process`) and
/// its built-in proxy spreads traffic over them (the HAProxy, nginx and command routers route
/// to one server per version).
fn check_instances(
    svc: &Value,
    sp: &str,
    kind: &str,
    router: &str,
    push: &mut impl FnMut(String, String),
) {
    let instances = svc
        .pointer("/run/instances")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    if instances > 1 && (kind != "process" || router != "builtin") {
        push(
            format!("{sp}/run/instances"),
            format!(
                "`instances: {instances}` needs `run.kind: process` and `traffic.router: builtin` (this service has kind `{kind}` and router `{router}`): Backstop starts the instances and its proxy spreads traffic over them"
            ),
        );
    }
    if kind != "process"
        && svc
            .pointer("/run/probes")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty())
    {
        push(
            format!("{sp}/run/probes"),
            "`probes` are for `kind: process`; with `kind: command` the `health_command` checks a version".to_owned(),
        );
    }
}

pub(super) fn key_problem(doc: &Document, path: String, message: String) -> Problem {
    Problem {
        pos: doc.key_pos(&path),
        path,
        message,
    }
}

fn sorted_list(mut names: Vec<&str>) -> String {
    names.sort_unstable();
    names.join(", ")
}
