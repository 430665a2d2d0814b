//! `validation`: each journey step's request is `METHOD /path`, uses only the `{name}`s saved
//! by the steps before it, and its JSON pointers start with `/`.

use std::collections::HashSet;

use serde_json::Value;

use crate::model::validation::{placeholders, split_request};

/// The first definition of each name of a list that must be unique across the config:
/// `first_at` remembers where a name was first seen; a later one is reported there.
struct UniqueAcrossConfig<'a> {
    what: &'static str,
    first_at: std::collections::HashMap<&'a str, String>,
}

impl<'a> UniqueAcrossConfig<'a> {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            first_at: std::collections::HashMap::new(),
        }
    }

    /// Records `name` defined at `here`, or reports it as a duplicate.
    fn see(&mut self, name: &'a str, here: String, push: &mut impl FnMut(String, String)) {
        if let Some(first) = self.first_at.get(name) {
            let what = self.what;
            push(
                here,
                format!(
                    "duplicate {what} `{name}` (first at {first}); {what} names are unique across the config"
                ),
            );
        } else {
            self.first_at.insert(name, here);
        }
    }
}

/// Heartbeat names are unique across the config (the URL names one), and a heartbeat's `env`
/// is one of its service's environments.
pub(super) fn check_heartbeats(services: &[Value], push: &mut impl FnMut(String, String)) {
    let mut seen = UniqueAcrossConfig::new("heartbeat");
    for (i, svc) in services.iter().enumerate() {
        let Some(beats) = svc.get("heartbeats").and_then(Value::as_array) else {
            continue;
        };
        let envs: Vec<&str> = svc
            .get("environments")
            .and_then(Value::as_array)
            .map(|es| {
                es.iter()
                    .filter_map(|e| e.get("name").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        for (k, beat) in beats.iter().enumerate() {
            let here = format!("/services/{i}/heartbeats/{k}");
            if let Some(name) = beat.get("name").and_then(Value::as_str) {
                seen.see(name, format!("{here}/name"), push);
            }
            if let Some(env) = beat.get("env").and_then(Value::as_str)
                && !envs.contains(&env)
            {
                push(
                    format!("{here}/env"),
                    format!(
                        "the service has no environment `{env}` (it has {})",
                        envs.join(", ")
                    ),
                );
            }
        }
    }
}

/// Flag keys are unique across the config (evaluation names only the key), and a flag's
/// stages rise to 100.
pub(super) fn check_flags(services: &[Value], push: &mut impl FnMut(String, String)) {
    let mut seen = UniqueAcrossConfig::new("flag");
    for (i, svc) in services.iter().enumerate() {
        let Some(flags) = svc.get("flags").and_then(Value::as_array) else {
            continue;
        };
        for (k, flag) in flags.iter().enumerate() {
            let here = format!("/services/{i}/flags/{k}");
            if let Some(key) = flag.get("key").and_then(Value::as_str) {
                seen.see(key, format!("{here}/key"), push);
            }
            if let Some(stages) = flag.get("stages").and_then(Value::as_array) {
                let stages: Option<Vec<u8>> = stages
                    .iter()
                    .map(|s| s.as_u64().and_then(|n| u8::try_from(n).ok()))
                    .collect();
                match stages.map(|s| backstop_core::flag::check_stages(&s)) {
                    Some(Err(e)) => push(format!("{here}/stages"), e),
                    None => push(
                        format!("{here}/stages"),
                        "stages are whole percentages from 1 to 100".into(),
                    ),
                    Some(Ok(())) => {}
                }
            }
        }
    }
}

pub(super) fn check_validation(svc: &Value, sp: &str, push: &mut impl FnMut(String, String)) {
    if let Some(probes) = svc.pointer("/validation/probes").and_then(Value::as_array) {
        for (k, probe) in probes.iter().enumerate() {
            let here = format!("{sp}/validation/probes/{k}");
            let tcp = probe.get("tcp").and_then(Value::as_str);
            let http = probe.get("http").and_then(Value::as_str);
            match (tcp, http) {
                (Some(_), Some(_)) | (None, None) => {
                    push(here, "give one of `tcp: host:port` or `http: URL`".into())
                }
                (Some(addr), None)
                    if !addr
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
                {
                    push(
                        format!("{here}/tcp"),
                        format!("{addr:?} is not host:port (e.g. db.internal:5432)"),
                    )
                }
                (None, Some(url))
                    if !(url.starts_with("http://") || url.starts_with("https://")) =>
                {
                    push(
                        format!("{here}/http"),
                        format!("{url:?} is not an http:// or https:// URL"),
                    )
                }
                _ => {}
            }
        }
    }
    let Some(journeys) = svc
        .pointer("/validation/journeys")
        .and_then(Value::as_array)
    else {
        return;
    };
    for (j, journey) in journeys.iter().enumerate() {
        let jp = format!("{sp}/validation/journeys/{j}");
        let mut saved: HashSet<String> = HashSet::new();
        let Some(steps) = journey.get("steps").and_then(Value::as_array) else {
            continue;
        };
        for (k, step) in steps.iter().enumerate() {
            let kp = format!("{jp}/steps/{k}");
            let mut uses: Vec<(String, String)> = Vec::new();
            if let Some(request) = step.get("request").and_then(Value::as_str) {
                if let Err(why) = split_request(request) {
                    push(format!("{kp}/request"), why);
                }
                uses.push((format!("{kp}/request"), request.to_owned()));
            }
            if let Some(body) = step.get("body").and_then(Value::as_str) {
                uses.push((format!("{kp}/body"), body.to_owned()));
            }
            if let Some(headers) = step.get("headers").and_then(Value::as_object) {
                for (name, value) in headers {
                    if let Some(v) = value.as_str() {
                        uses.push((format!("{kp}/headers/{name}"), v.to_owned()));
                    }
                }
            }
            if let Some(text) = step
                .pointer("/expect/body_contains")
                .and_then(Value::as_str)
            {
                uses.push((format!("{kp}/expect/body_contains"), text.to_owned()));
            }
            for (at, text) in uses {
                for name in placeholders(&text) {
                    if !saved.contains(name) {
                        push(
                            at.clone(),
                            format!(
                                "`{{{name}}}` is not saved by an earlier step of this journey (add `save: {{{name}: /json/pointer}}` to one)"
                            ),
                        );
                    }
                }
            }
            if let Some(json) = step.pointer("/expect/json").and_then(Value::as_object) {
                for pointer in json.keys() {
                    if !pointer.starts_with('/') {
                        push(
                            format!("{kp}/expect/json"),
                            format!(
                                "{pointer:?} is not a JSON pointer (they start with `/`, e.g. `/status`)"
                            ),
                        );
                    }
                }
            }
            if let Some(save) = step.get("save").and_then(Value::as_object) {
                for (name, pointer) in save {
                    match pointer.as_str() {
                        Some(p) if p.starts_with('/') || p.is_empty() => {}
                        _ => push(
                            format!("{kp}/save/{name}"),
                            format!(
                                "{pointer} is not a JSON pointer (they start with `/`, e.g. `/id`)"
                            ),
                        ),
                    }
                    saved.insert(name.clone());
                }
            }
        }
    }
}

/// `hooks.sweeps`: one target each (`redis`, `redis_env` or `purge`), a pattern exactly with
/// Redis, no password in `redis`, and `purge` an http(s) URL.
pub(super) fn check_sweeps(svc: &Value, sp: &str, push: &mut impl FnMut(String, String)) {
    let Some(sweeps) = svc.pointer("/hooks/sweeps").and_then(Value::as_array) else {
        return;
    };
    for (k, sweep) in sweeps.iter().enumerate() {
        let here = format!("{sp}/hooks/sweeps/{k}");
        let get = |key: &str| sweep.get(key).and_then(Value::as_str);
        let targets = ["redis", "redis_env", "purge"]
            .iter()
            .filter(|key| get(key).is_some())
            .count();
        if targets != 1 {
            push(
                here.clone(),
                "give one of `redis` (with `pattern`), `redis_env` (with `pattern`) or `purge`"
                    .into(),
            );
            continue;
        }
        let redis = get("redis").is_some() || get("redis_env").is_some();
        match (redis, get("pattern")) {
            (true, None) => push(
                here.clone(),
                "a Redis sweep needs `pattern` (e.g. `product:*`)".into(),
            ),
            (false, Some(_)) => push(
                format!("{here}/pattern"),
                "`pattern` is for Redis sweeps; `purge` sends one PURGE to its URL".into(),
            ),
            _ => {}
        }
        if let Some(addr) = get("redis") {
            if addr.contains('@') {
                push(
                    format!("{here}/redis"),
                    "no password here (it would reach the journal): put the URL in a variable and name it with `redis_env`".into(),
                );
            } else {
                let hp = addr
                    .trim_start_matches("redis://")
                    .split('/')
                    .next()
                    .unwrap_or("");
                if !hp
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                {
                    push(
                        format!("{here}/redis"),
                        format!("{addr:?} is not HOST:PORT[/DB] (e.g. cache.internal:6379/0)"),
                    );
                }
            }
        }
        if let Some(url) = get("purge")
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            push(
                format!("{here}/purge"),
                format!("{url:?} is not an http:// or https:// URL"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journeys_use_only_what_earlier_steps_saved() {
        let svc = serde_json::json!({"validation": {"journeys": [{"name": "buy", "steps": [
            {"request": "GET /o/{order}"},
            {"request": "POST /o", "save": {"order": "/id", "bad": "id"}},
            {"request": "GET /o/{order}", "expect": {"json": {"status": "ok"}}},
            {"request": "FETCH /"},
        ]}]}});
        let mut found = Vec::new();
        check_validation(&svc, "/services/0", &mut |at, why| found.push((at, why)));
        let at: Vec<&str> = found.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            at,
            [
                "/services/0/validation/journeys/0/steps/0/request",
                "/services/0/validation/journeys/0/steps/1/save/bad",
                "/services/0/validation/journeys/0/steps/2/expect/json",
                "/services/0/validation/journeys/0/steps/3/request",
            ],
            "{found:?}"
        );
    }
}
