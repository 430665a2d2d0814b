//! `signals`: where the analysis reads per-version traffic when the router cannot.

use std::time::Duration;

use backstop_core::duration::{DurationString, serde_duration as duration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the analysis reads per-version traffic (requests, errors, latency histogram).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signals {
    /// A Prometheus server: instant queries at every analysis interval, summed by version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "PrometheusSignals")]
    pub prometheus: Option<PrometheusSignals>,
    /// Error-log lines as a signal: every analysis interval, the new lines of each arm's
    /// instance logs (the output Backstop captures under `STATE/logs`) that match `pattern` are
    /// counted, and the `logs` signal judges the canary's error lines per request against the
    /// baseline's with the same sequential test as the error ratio. Configuring it adds `logs`
    /// to the service's `analysis.signals`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "LogSignals")]
    pub logs: Option<LogSignals>,
    /// Work that is not HTTP (queue consumers, batch workers): a command printing per-version
    /// success and failure counts as JSON, `{"v42": {"succeeded": 480, "failed": 31}, …}`
    /// (cumulative), run every analysis interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "CommandSignals")]
    pub command: Option<CommandSignals>,
    /// The same counts served as JSON by an HTTP endpoint (`GET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "HttpSignals")]
    pub http: Option<HttpSignals>,
}

/// Per-version counts from a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSignals {
    /// The shell command; it runs with `BACKSTOP_SERVICE` and `BACKSTOP_ENV` set (and `{service}`,
    /// `{env}` replaced), such as `./bin/job-counts --queue {service}-{env}`.
    #[schemars(length(min = 1))]
    pub run: String,
    /// Time limit of one run (default `10s`).
    #[serde(default = "default_counts_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
}

/// Per-version counts from an HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSignals {
    /// The URL (`{service}` and `{env}` replaced), such as `http://worker:9000/counts`.
    #[schemars(pattern(r"^https?://[^\s/]+"))]
    pub url: String,
    /// Timeout of one request (default `10s`).
    #[serde(default = "default_counts_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
}

fn default_counts_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Which log lines are errors, and where they are read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSignals {
    /// A regular expression (Rust `regex` syntax; with `loki`, RE2 as LogQL reads it) a line
    /// must match to count, such as `"level=error|ERROR|panicked"`.
    #[schemars(length(min = 1))]
    pub pattern: String,
    /// Read the lines from a Loki-compatible log store instead of the captured instance logs
    /// (instances on other hosts, logs shipped away): every interval, one LogQL query counts the
    /// lines matching `pattern` per version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "LokiLogs")]
    pub loki: Option<LokiLogs>,
}

/// A Loki-compatible log store holding the service's logs, each stream labelled with the
/// version that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LokiLogs {
    /// Base URL of the HTTP API, such as `http://loki:3100`.
    #[schemars(pattern(r"^https?://[^\s/]+"))]
    pub url: String,
    /// LogQL stream selector of the service's logs in one environment; `{service}` and `{env}`
    /// are replaced, such as `{app="{service}",env="{env}"}`.
    #[schemars(pattern(r"^\{.*\}$"))]
    pub selector: String,
    /// The stream label whose values are the versions (default `version`).
    #[serde(default = "default_version_label")]
    #[schemars(pattern("^[a-zA-Z_][a-zA-Z0-9_]*$"))]
    pub version_label: String,
    /// The tenant sent as `X-Scope-OrgID` to a multi-tenant Loki.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub tenant: Option<String>,
    /// Timeout of one query (default `5s`).
    #[serde(default = "default_prometheus_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
}

impl Signals {
    pub(crate) fn is_default(&self) -> bool {
        *self == Signals::default()
    }
}

/// Per-version counters from Prometheus. Selectors may use `{service}` and `{env}`, replaced by
/// the service's and the environment's names; Backstop asks for `sum by (<version_label>)`
/// of each (and `sum by (<version_label>, le)` of the buckets), so any number of instances and
/// series per version add up. The version label's values must be the release versions
/// (`backstop release … v2` ↔ `version="v2"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSignals {
    /// Base URL of the Prometheus HTTP API, such as `http://prometheus:9090`.
    #[schemars(pattern(r"^https?://[^\s/]+"))]
    pub url: String,
    /// Counter of all requests, such as `http_requests_total{job="{service}",env="{env}"}`.
    #[schemars(length(min = 1))]
    pub requests: String,
    /// Counter of failed requests, such as
    /// `http_requests_total{job="{service}",env="{env}",code=~"5.."}`.
    #[schemars(length(min = 1))]
    pub errors: String,
    /// Histogram buckets of the request duration (`le` in seconds, the Prometheus convention),
    /// such as `http_request_duration_seconds_bucket{job="{service}",env="{env}"}`. Without it
    /// only the error signal is judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub latency: Option<String>,
    /// The label whose values are the versions (default `version`).
    #[serde(default = "default_version_label")]
    #[schemars(pattern("^[a-zA-Z_][a-zA-Z0-9_]*$"))]
    pub version_label: String,
    /// Timeout of one query (default `5s`).
    #[serde(default = "default_prometheus_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
}

fn default_version_label() -> String {
    "version".to_owned()
}

fn default_prometheus_timeout() -> Duration {
    Duration::from_secs(5)
}

impl PrometheusSignals {
    /// `selector` with `{service}` and `{env}` replaced.
    pub fn render(selector: &str, service: &str, env: &str) -> String {
        selector.replace("{service}", service).replace("{env}", env)
    }
}
