//! `validation`: the post-recovery suite of a service (practice 6.1). A recovery is *restored*
//! when traffic is back on the last known good, and *resolved* only once this suite passes
//! against the environment's address.

use std::collections::BTreeMap;
use std::time::Duration;

use backstop_core::duration::{DurationString, serde_duration as duration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How long the suite may keep failing after a restore before the recovery is reported
/// unresolved.
pub const DEFAULT_VALIDATION_WITHIN: Duration = Duration::from_secs(120);
/// How long one journey step or command may take.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// The post-recovery suite: synthetic journeys through the environment's address and commands.
/// Every check must pass in one attempt; attempts repeat until then, for at most `within`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    /// How long after the restore the suite may keep failing before the recovery is reported
    /// unresolved (default 2m).
    #[serde(default = "default_within", with = "duration")]
    #[schemars(with = "DurationString")]
    pub within: Duration,
    /// Where journeys send their requests, e.g. `https://shop.example` (default: the
    /// environment's `listen` address, the built-in proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Ordered HTTP requests with assertions, as a user would go through the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journeys: Vec<Journey>,
    /// Commands whose exit 0 means the check holds (a regression suite, a queue depth check).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<ValidationCommand>,
    /// Dependencies that must answer: a TCP connect or an HTTP GET (integrations, databases,
    /// queues the service needs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<Probe>,
    /// Business KPIs read from Prometheus, compared with their value just before the bad
    /// version reached users (e.g. orders per request).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kpis: Vec<Kpi>,
}

/// A business KPI: a PromQL query whose value after the recovery must be back within
/// `tolerance` of its value before the failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Kpi {
    #[schemars(length(min = 1))]
    pub name: String,
    /// The Prometheus to ask (default: the service's `signals.prometheus.url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// A PromQL query giving one number, e.g.
    /// `sum(rate(orders_total[1m])) / sum(rate(http_requests_total[1m]))`.
    #[schemars(length(min = 1))]
    pub query: String,
    /// `higher` (default: the KPI must not have dropped) or `lower` (must not have risen).
    #[serde(default)]
    pub better: Better,
    /// The share it may be worse than before (default 0.1: 10 %).
    #[serde(default = "default_tolerance")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tolerance: f64,
}

/// Which way a KPI is better.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    #[default]
    Higher,
    Lower,
}

fn default_tolerance() -> f64 {
    0.1
}

/// A dependency check: give `tcp` (`host:port`, connects) or `http` (a URL, GET, a 2xx or
/// `status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// The status the HTTP answer must have (default: any 2xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub status: Option<u16>,
    /// How long it may take (default 5s).
    #[serde(default = "default_probe_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
}

fn default_probe_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_within() -> Duration {
    DEFAULT_VALIDATION_WITHIN
}

fn default_timeout() -> Duration {
    DEFAULT_CHECK_TIMEOUT
}

/// A synthetic journey: requests in order, each checked; values saved from one answer are
/// used by the next requests as `{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Journey {
    /// Names the journey in reports (e.g. `checkout`).
    #[schemars(length(min = 1))]
    pub name: String,
    /// The requests, in order (at least one).
    #[schemars(length(min = 1))]
    pub steps: Vec<JourneyStep>,
    /// Also sent straight to each canary right after it starts and before it takes any
    /// traffic (default true): a failure fails the rollout with no user having met the
    /// version. Set false for a journey that only holds for the last known good (e.g. one
    /// checking its version).
    #[serde(default = "on_canary_default", skip_serializing_if = "is_true")]
    pub canary: bool,
}

fn on_canary_default() -> bool {
    true
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde passes a reference"
)]
fn is_true(v: &bool) -> bool {
    *v
}

/// One request of a journey and what its answer must be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JourneyStep {
    /// `METHOD /path?query` against the environment's address, e.g. `GET /api/orders/{order}`.
    #[schemars(length(min = 1))]
    pub request: String,
    /// Request headers (values may use saved `{name}`s).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body (may use saved `{name}`s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// What the answer must be (default: a 2xx status).
    #[serde(default)]
    pub expect: Expect,
    /// Values to keep for later steps: name → JSON pointer into the answer's body
    /// (e.g. `{order: /id}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub save: BTreeMap<String, String>,
    /// How long the request may take (default 30s).
    #[serde(default = "default_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
}

/// Assertions on an answer; every one given must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The status code (default: any 2xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub status: Option<u16>,
    /// Headers that must be present with these values (names are case-insensitive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Values in the JSON body: JSON pointer → expected value (e.g. `{/status: ok}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub json: BTreeMap<String, serde_json::Value>,
    /// Text the body must contain (may use saved `{name}`s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// The answer must come within this (e.g. `500ms`).
    #[serde(
        default,
        with = "backstop_core::duration::serde_option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub max_latency: Option<Duration>,
}

/// A check run as `sh -c`; exit 0 means it holds. It gets `BACKSTOP_SERVICE`, `BACKSTOP_ENV`
/// and `BACKSTOP_URL` (the environment's address).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidationCommand {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub run: String,
    /// How long it may run (default 30s).
    #[serde(default = "default_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
}

/// A batch job's heartbeat: the job pings `POST /api/v1/heartbeats/NAME` (or `backstop
/// heartbeat NAME`) after each run. One that has not pinged within `every` is late; after a
/// recovery, a late heartbeat of the service keeps it from being resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Unique across the config: lowercase letters, digits, `-` and `_`.
    #[schemars(pattern(r"^[a-z0-9_-]{1,64}$"))]
    pub name: String,
    /// The longest expected time between two pings, e.g. `15m`.
    #[serde(with = "duration")]
    #[schemars(with = "DurationString")]
    pub every: Duration,
    /// The environment whose recoveries it gates (default: every environment of the service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// The methods a journey step may use.
pub const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Splits `METHOD /path` into its parts.
///
/// # Errors
/// What is wrong with it, for the config's error message.
pub fn split_request(request: &str) -> Result<(&str, &str), String> {
    let mut parts = request.split_whitespace();
    let (Some(method), Some(path), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "{request:?} is not `METHOD /path` (e.g. `GET /healthz`)"
        ));
    };
    if !METHODS.contains(&method) {
        return Err(format!(
            "unknown method {method:?} (one of {})",
            METHODS.join(", ")
        ));
    }
    if !path.starts_with('/') {
        return Err(format!(
            "the path {path:?} must start with `/` (it is relative to the environment's address)"
        ));
    }
    Ok((method, path))
}

/// The `{name}` placeholders of a text.
#[must_use]
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    out.push(name);
                }
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    out
}

/// `text` with each `{name}` of `vars` replaced by its value (others left as written).
#[must_use]
pub fn fill(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_split_and_placeholders_are_found() {
        assert_eq!(split_request("GET /a?b=1"), Ok(("GET", "/a?b=1")));
        assert!(split_request("GET").is_err());
        assert!(
            split_request("FETCH /")
                .unwrap_err()
                .contains("unknown method")
        );
        assert!(
            split_request("GET a")
                .unwrap_err()
                .contains("must start with")
        );
        assert_eq!(
            placeholders("/o/{order}/{x-y}?{} {bad name}"),
            ["order", "x-y"]
        );
        let vars = BTreeMap::from([("order".to_owned(), "42".to_owned())]);
        assert_eq!(fill("/o/{order}/{other}", &vars), "/o/42/{other}");
    }
}

/// A feature flag of the service (practice 6.6): on for a sticky percentage of units, asked by
/// applications through `POST /ofrep/v1/evaluate/flags/KEY` (OpenFeature's remote evaluation
/// protocol). Each environment keeps its own percentage, 0 until someone sets it. `backstop
/// flag reenable KEY` brings it back in `stages`, each held `hold` and judged like a canary
/// (the on cohort against the off cohort, with the service's `analysis`), back to 0 % when the
/// on cohort does worse. The cohorts are counted from the response header
/// `x-backstop-flags: KEY=on` (or `=off`) the application sets, by the built-in proxy, or from
/// Prometheus series carrying the label `cohort_label` (`on`/`off`) under the service's
/// `signals.prometheus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    /// Unique across the config: letters, digits, `.`, `_` and `-` (e.g. `new-checkout`).
    #[schemars(pattern(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"))]
    pub key: String,
    /// What the flag turns on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Units sharing a group share their bucket across flags (default: the key), so two
    /// flags of one feature reach the same users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Percentages of a staged re-enable, rising to 100 (default `[1, 5, 25, 100]`).
    #[serde(default = "default_stages")]
    #[schemars(length(min = 1))]
    pub stages: Vec<u8>,
    /// How long each stage is held before the next (default `1m`).
    #[serde(default = "default_hold", with = "duration")]
    #[schemars(with = "DurationString")]
    pub hold: Duration,
    /// Requests of the on cohort a stage needs before it may end (default 100): no evidence,
    /// no next stage.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// The Prometheus label whose values `on`/`off` tell the cohorts apart (default
    /// `flag_` + the key with `-` and `.` as `_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern("^[a-zA-Z_][a-zA-Z0-9_]*$"))]
    pub cohort_label: Option<String>,
}

fn default_stages() -> Vec<u8> {
    backstop_core::flag::DEFAULT_STAGES.to_vec()
}

fn default_hold() -> Duration {
    Duration::from_secs(60)
}

fn default_min_requests() -> u64 {
    100
}

impl Flag {
    /// The bucketing group.
    #[must_use]
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.key)
    }

    /// The Prometheus label of the cohorts.
    #[must_use]
    pub fn cohort_label(&self) -> String {
        self.cohort_label
            .clone()
            .unwrap_or_else(|| format!("flag_{}", self.key.replace(['-', '.'], "_")))
    }
}
