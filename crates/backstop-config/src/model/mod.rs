//! The typed model of `backstop.yaml`, in its *effective* form: after [`crate::parse`] every
//! default is filled in (objectives from the tier, rollout steps, analysis merged from
//! `defaults.analysis`). One file per section of the file.
//!
//! Doc comments on these types become the descriptions of the JSON Schema.

mod environment;
mod rollout;
mod run;
mod schema;
mod service;
mod signals;
mod traffic;
pub mod validation;

use std::path::PathBuf;
use std::time::Duration;

use backstop_core::duration::{
    DurationString, serde_duration as duration, serde_option_duration as option_duration,
};
use backstop_judge::JudgeSettings;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use environment::{Environment, Params, SecretRef};
pub use rollout::{DEFAULT_ROLLBACK_WINDOW, RolloutBreaker, RolloutSpec, Strategy};
pub use run::{CommandScripts, Deployer, DeployerKind, Health, MAX_INSTANCES, Probe, Run};
pub(crate) use schema::{EnvVarName, NonEmptyString, SocketAddrString};
pub use service::{
    AlertBlame, Hooks, LaterFailure, MigrationEngine, MigrationsSpec, NewVersionPartialFailure,
    NotifyTarget, PartialFailures, Service, Wave, WebhookFormat,
};
pub use signals::{CommandSignals, HttpSignals, LogSignals, LokiLogs, PrometheusSignals, Signals};
pub use traffic::{CommandRouter, HaproxyRouter, HaproxySocket, NginxRouter, Router, Traffic};
pub use validation::Validation;

/// Pattern of a service or environment name.
pub const NAME_PATTERN: &str = "^[a-z][a-z0-9-]{0,62}$";
/// Pattern of a load balancer object name (HAProxy backend or server, nginx upstream).
pub const LB_NAME_PATTERN: &str = "^[A-Za-z0-9_.:-]+$";

/// A `backstop.yaml` file: the services Backstop protects and how their releases roll out and
/// recover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "backstop.yaml")]
pub struct Config {
    /// Settings every service inherits unless it overrides them.
    #[serde(default)]
    pub defaults: Defaults,
    /// The services Backstop manages (at least one).
    #[schemars(length(min = 1))]
    pub services: Vec<Service>,
    /// The agents of other hosts (`backstop agent`) that replicas drive: each runs the built-in
    /// proxies and the instances of the environments that name it with `agent`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentRef>,
    /// How incidents are run.
    #[serde(default)]
    pub incidents: IncidentSettings,
    /// Runbooks the daemon may run (`backstop runbook run NAME`): one runbook file, or a folder
    /// of them (each `*.yaml`/`*.yml`), relative to this file. Read again at every run, which
    /// records the sha256 of the file it followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbooks: Option<PathBuf>,
    /// The folder of the config file: relative `params` paths are resolved against it (set by
    /// [`crate::load`]; empty means the current folder).
    #[serde(skip)]
    #[schemars(skip)]
    pub base_dir: PathBuf,
}

/// How incidents are run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentSettings {
    /// How often a status update is due while an incident is open, by severity (defaults:
    /// SEV1 15m, SEV2 30m, SEV3 1h, SEV4 4h; SEV5 none). An overdue one is reminded about
    /// through the service's webhooks.
    #[serde(default)]
    pub update_every: UpdateCadence,
    /// How long after a recovery resolves its post-mortem is due (default 48h). One not marked
    /// done by then (`backstop recovery postmortem ID --done`) is overdue: the service's
    /// webhooks are told once, `/metrics` counts it and the scorecard misses gold.
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub postmortem_due: Option<Duration>,
}

impl IncidentSettings {
    /// How long after resolution a post-mortem is due, in ms.
    #[must_use]
    pub fn postmortem_due_ms(&self) -> backstop_core::Millis {
        self.postmortem_due.map_or(
            backstop_core::postmortem::DUE_AFTER_MS,
            backstop_core::duration::millis,
        )
    }
}

/// Status update cadence per severity; a severity left out keeps its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCadence {
    #[serde(
        rename = "SEV1",
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub sev1: Option<Duration>,
    #[serde(
        rename = "SEV2",
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub sev2: Option<Duration>,
    #[serde(
        rename = "SEV3",
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub sev3: Option<Duration>,
    #[serde(
        rename = "SEV4",
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub sev4: Option<Duration>,
    #[serde(
        rename = "SEV5",
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub sev5: Option<Duration>,
}

impl UpdateCadence {
    /// The configured cadence of `sev` (`"SEV1"` …), if any.
    #[must_use]
    pub fn of(&self, sev: &str) -> Option<Duration> {
        match sev {
            "SEV1" => self.sev1,
            "SEV2" => self.sev2,
            "SEV3" => self.sev3,
            "SEV4" => self.sev4,
            "SEV5" => self.sev5,
            _ => None,
        }
    }
}

/// One host's agent, as the replicas reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRef {
    /// Name, as given to `backstop agent serve --name` (unique in the file).
    #[schemars(pattern(NAME_PATTERN))]
    pub name: String,
    /// Where replicas reach it: `HOST:PORT` (e.g. `10.0.0.11:7400`).
    #[schemars(length(min = 1))]
    pub address: String,
    /// The environment variable of the replicas that holds its token (made by
    /// `backstop agent token` on that host), e.g. `BACKSTOP_AGENT_WEB1_TOKEN`.
    #[schemars(with = "EnvVarName")]
    pub token_env: String,
}

/// Settings every service inherits unless it overrides them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Analysis settings merged (deeply) under every service's own `analysis` block.
    /// Same keys as a service's `analysis`; every key is optional.
    #[serde(default = "empty_object")]
    #[schemars(with = "JudgeSettings")]
    pub analysis: serde_json::Value,
    /// Global circuit breaker for progressive rollouts: when `trips_after` rollouts fail
    /// within `within` in one scope, every progressive rollout in that scope pauses (it is not
    /// rolled back) until an authorised reset.
    #[serde(default)]
    pub breaker: Breaker,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            analysis: empty_object(),
            breaker: Breaker::default(),
        }
    }
}

/// Global circuit breaker: `trips_after` failed rollouts within `within` in one scope pause
/// every progressive rollout in that scope until an authorised reset. Defaults: scope
/// `environment`, 3 failures within 30m.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Breaker {
    /// What one breaker covers: `environment` (default; failures in one environment pause
    /// rollouts in that environment, whatever the service) or `all` (every environment).
    pub scope: BreakerScope,
    /// How many failed rollouts within `within` trip the breaker (at least 1, default 3).
    #[schemars(range(min = 1))]
    pub trips_after: u32,
    /// The sliding window in which failures are counted (default `30m`).
    #[serde(with = "duration")]
    #[schemars(with = "DurationString")]
    pub within: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            scope: BreakerScope::Environment,
            trips_after: 3,
            within: Duration::from_secs(30 * 60),
        }
    }
}

/// Scope of the global circuit breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerScope {
    /// One breaker per environment name (every service's `prod` shares one).
    #[default]
    Environment,
    /// One breaker for every rollout of the file.
    All,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl Config {
    /// The global circuit breaker (`defaults.breaker`, defaults filled in).
    #[must_use]
    pub fn breaker(&self) -> &Breaker {
        &self.defaults.breaker
    }

    /// The agent named `name` in `agents`.
    #[must_use]
    pub fn agent(&self, name: &str) -> Option<&AgentRef> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// The service named `name`.
    #[must_use]
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The effective configuration (every default filled in) as YAML that parses back to the
    /// same configuration.
    #[must_use]
    pub fn to_yaml_effective(&self) -> String {
        match serde_json::to_value(self) {
            Ok(value) => crate::emit::to_yaml(&value),
            // Serializing plain data into a `Value` cannot fail; keep a readable fallback anyway.
            Err(e) => format!("# cannot render the effective config: {e}\n"),
        }
    }

    /// The effective configuration as pretty JSON.
    #[must_use]
    pub fn to_json_effective(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            format!("{{\"error\": \"cannot render the effective config: {e}\"}}")
        })
    }
}
