//! The typed model of `backstop.yaml`, in its *effective* form: after [`crate::parse`] every
//! default is filled in (objectives from the tier, rollout steps, analysis merged from
//! `defaults.analysis`).
//!
//! Doc comments on these types become the descriptions of the JSON Schema.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use backstop_judge::JudgeSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Pattern of a service or environment name.
pub const NAME_PATTERN: &str = "^[a-z][a-z0-9-]{0,62}$";
/// Pattern of an environment variable name in `run.env`.
pub const ENV_KEY_PATTERN: &str = "^[A-Z_][A-Z0-9_]*$";
/// Pattern of a load balancer object name (HAProxy backend or server, nginx upstream).
pub const LB_NAME_PATTERN: &str = "^[A-Za-z0-9_.:-]+$";
/// Pattern (for editors) of a duration string; the exact check is humantime's parser.
pub const DURATION_PATTERN: &str = r"^\s*[0-9]+\s*[a-zA-Zµμ]+(\s*[0-9]+\s*[a-zA-Zµμ]+)*\s*$";

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
    /// The folder of the config file: relative `params` paths are resolved against it (set by
    /// [`crate::load`]; empty means the current folder).
    #[serde(skip)]
    #[schemars(skip)]
    pub base_dir: PathBuf,
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

/// One service: who owns it, how critical it is, how a release runs, rolls out and recovers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Unique name: lowercase letters, digits and `-`, starting with a letter, at most 63
    /// characters (e.g. `checkout`).
    #[schemars(pattern(NAME_PATTERN))]
    pub name: String,
    /// Who is responsible for the service (a team or a person).
    #[schemars(length(min = 1))]
    pub owner: String,
    /// Criticality from 0 (most critical) to 3; recovery objectives default from it.
    #[schemars(range(max = 3))]
    pub tier: u8,
    /// Recovery objectives; each defaults from the tier.
    #[serde(default)]
    pub objectives: Objectives,
    /// How a release of this service runs (process deployer).
    pub run: Run,
    /// How traffic reaches the versions of this service.
    #[serde(default)]
    pub traffic: Traffic,
    /// How a new release takes over traffic.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// How a canary is judged. Merged over `defaults.analysis`; every key is optional.
    #[serde(default)]
    pub analysis: JudgeSettings,
    /// Where the analysis reads per-version traffic. Default: the router (the built-in proxy
    /// and HAProxy see traffic; nginx and command routers do not, so give them a source here).
    #[serde(default, skip_serializing_if = "Signals::is_default")]
    pub signals: Signals,
    /// Per-rollout circuit breaker: the rollout halts when its checks breach the threshold.
    #[serde(default)]
    pub breaker: RolloutBreaker,
    /// What each severity of failed analysis does. Defaults by tier: tiers 0 and 1 roll back
    /// on every severity; tier 2: critical `rollback`, major `{rollback_unless_acknowledged:
    /// 5m}`, minor `notify`; tier 3: critical `{rollback_unless_acknowledged: 5m}`, major and
    /// minor `notify`. A service with a regulated environment rolls back on every severity.
    #[serde(default)]
    pub severity: SeverityPolicy,
    /// Webhooks told about rollout and recovery events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyTarget>,
    /// Commands run as journaled steps of every rollback (e.g. drain queues before, purge caches after).
    #[serde(default)]
    pub hooks: Hooks,
    /// The service's database migrations. With them, releases can declare the schema range
    /// they run on (`backstop release … --schema 0003..0005`) and rollbacks decide before
    /// touching anything whether proven downs must run or the way back is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<MigrationsSpec>,
    /// Where the service runs (at least one environment, unique names).
    #[schemars(length(min = 1))]
    pub environments: Vec<Environment>,
    /// Scheduled freeze windows of this service in every environment (UTC), e.g.
    /// `[{every: "Fri 16:00", for: 64h, reason: weekend}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<crate::freeze::FreezeWindow>,
    /// Stateful components (databases, queues): RPO, snapshot interval, restore command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stateful: Vec<crate::stateful::Stateful>,
    /// The known-bad variant `backstop drill` deploys in a non-production environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "crate::stateful::DrillSpec")]
    pub drill: Option<crate::stateful::DrillSpec>,
}

/// A service's migration set and the database it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationsSpec {
    /// Folder of the migration set, any layout `backstop migrations check` reads (relative paths
    /// are taken from the daemon's working directory).
    #[schemars(length(min = 1))]
    pub dir: PathBuf,
    /// SQL dialect and the engine downs run on.
    #[serde(default)]
    pub engine: MigrationEngine,
    /// Name of the environment variable holding the database URL (e.g. `ORDERS_DB_URL`;
    /// `sqlite:///var/lib/app.db`, `postgres://…`). The URL itself never goes in this file.
    /// An environment can override it with its own `database_url_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub database_url_env: Option<String>,
}

/// The database engine of a migration set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MigrationEngine {
    #[default]
    Sqlite,
    Postgres,
}

/// Recovery objectives. Defaults by tier: `mttr` 15m / 1h / 4h / 24h and `rollback_sla`
/// 5m / 10m / 30m / 1h for tiers 0 / 1 / 2 / 3.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    /// Target mean time to restore service after a bad release (e.g. `15m`).
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub mttr: Option<Duration>,
    /// Longest allowed time from detection to traffic restored (e.g. `5m`); at most `mttr`.
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub rollback_sla: Option<Duration>,
}

impl Objectives {
    /// The default objectives of a tier (0..=3); tiers above 3 get the tier-3 values.
    #[must_use]
    pub fn for_tier(tier: u8) -> Self {
        let (mttr, sla) = match tier {
            0 => (15 * 60, 5 * 60),
            1 => (60 * 60, 10 * 60),
            2 => (4 * 60 * 60, 30 * 60),
            _ => (24 * 60 * 60, 60 * 60),
        };
        Self {
            mttr: Some(Duration::from_secs(mttr)),
            rollback_sla: Some(Duration::from_secs(sla)),
        }
    }
}

/// How a release runs. `kind: process` (default): a shell command started once per version on
/// a free port (`command`, `env`, `health`); `kind: command`: user scripts deploy, stop and check
/// a version (`deploy`, `stop`, `health_command`, `timeout`, `retries`).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// The deployer: `process` (default; Backstop starts and supervises the process) or
    /// `command` (your scripts deploy and stop versions).
    #[serde(default)]
    pub kind: DeployerKind,
    /// Shell command template (required for kind `process`, not allowed for kind `command`).
    /// Placeholders: `{artifact}` (shell-quoted), `{port}` (required), `{version}`, `{service}`,
    /// `{env}`. Write `{{` and `}}` for literal braces; `${VAR}` is left to the shell.
    /// Empty for kind `command`.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub command: String,
    /// Extra environment variables for the process or the scripts (names like `LOG_LEVEL`;
    /// values are strings, quote numbers and booleans).
    #[serde(default)]
    #[schemars(extend("propertyNames" = {"pattern": ENV_KEY_PATTERN}))]
    pub env: BTreeMap<String, String>,
    /// Health check of a starting and running version (kind `process`; kind `command` uses
    /// `health_command`).
    #[serde(default)]
    pub health: Health,
    /// How long the old version keeps running after a promotion (default `5s`).
    #[serde(default = "default_scale_down_delay", with = "duration")]
    #[schemars(with = "DurationString")]
    pub scale_down_delay: Duration,
    /// Kind `command`: shell command that deploys a version (required). Backstop passes the
    /// release in environment variables (`BACKSTOP_VERSION`, `BACKSTOP_ARTIFACT`, and
    /// `BACKSTOP_IDEMPOTENCY_KEY` so that the script can be made idempotent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "NonEmptyString")]
    pub deploy: Option<String>,
    /// Kind `command`: shell command that stops a version (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "NonEmptyString")]
    pub stop: Option<String>,
    /// Kind `command`: shell command that exits 0 when the deployed version is healthy
    /// (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "NonEmptyString")]
    pub health_command: Option<String>,
    /// Kind `command`: time limit of one script run (default `60s`); on expiry the script's
    /// process group gets SIGTERM, then SIGKILL.
    #[serde(default = "default_script_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
    /// Kind `command`: how many times a failed or timed-out script run is retried (default 2,
    /// at most 10).
    #[serde(default = "default_retries")]
    #[schemars(range(max = 10))]
    pub retries: u32,
}

/// Deployers: who starts and stops the versions of a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployerKind {
    /// Backstop starts each version as a process from `command` on a free port.
    #[default]
    Process,
    /// Your scripts (`deploy`, `stop`, `health_command`) deploy and stop versions.
    Command,
}

/// The scripts of a `kind: command` deployer, with their limits ([`Run::command_scripts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandScripts<'a> {
    /// Deploys a version.
    pub deploy: &'a str,
    /// Stops a version.
    pub stop: &'a str,
    /// Exits 0 when the version is healthy.
    pub health: Option<&'a str>,
    /// Time limit of one run.
    pub timeout: Duration,
    /// Retries after a failed or timed-out run.
    pub retries: u32,
}

impl Run {
    /// The scripts of a `kind: command` deployer; `None` for kind `process` (or an unvalidated
    /// value without `deploy`/`stop`).
    #[must_use]
    pub fn command_scripts(&self) -> Option<CommandScripts<'_>> {
        match (self.kind, &self.deploy, &self.stop) {
            (DeployerKind::Command, Some(deploy), Some(stop)) => Some(CommandScripts {
                deploy,
                stop,
                health: self.health_command.as_deref(),
                timeout: self.timeout,
                retries: self.retries,
            }),
            _ => None,
        }
    }
}

/// The effective form writes only the keys of its kind (so that it validates again).
impl Serialize for Run {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            kind: DeployerKind,
            #[serde(skip_serializing_if = "Option::is_none")]
            command: Option<&'a str>,
            env: &'a BTreeMap<String, String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            health: Option<&'a Health>,
            #[serde(with = "duration")]
            scale_down_delay: Duration,
            #[serde(skip_serializing_if = "Option::is_none")]
            deploy: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            stop: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            health_command: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none", with = "option_duration")]
            timeout: Option<Duration>,
            #[serde(skip_serializing_if = "Option::is_none")]
            retries: Option<u32>,
        }
        let process = self.kind == DeployerKind::Process;
        Out {
            kind: self.kind,
            command: process.then_some(self.command.as_str()),
            env: &self.env,
            health: process.then_some(&self.health),
            scale_down_delay: self.scale_down_delay,
            deploy: self.deploy.as_deref().filter(|_| !process),
            stop: self.stop.as_deref().filter(|_| !process),
            health_command: self.health_command.as_deref().filter(|_| !process),
            timeout: (!process).then_some(self.timeout),
            retries: (!process).then_some(self.retries),
        }
        .serialize(s)
    }
}

fn default_script_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_retries() -> u32 {
    2
}

fn default_scale_down_delay() -> Duration {
    Duration::from_secs(5)
}

/// HTTP health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// Path requested on the version's port; a 2xx answer means healthy (default `/healthz`).
    #[schemars(pattern("^/"))]
    pub http: String,
    /// Timeout of one health request (default `2s`).
    #[serde(with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
    /// Time between health requests (default `1s`).
    #[serde(with = "duration")]
    #[schemars(with = "DurationString")]
    pub interval: Duration,
    /// How long a new version may take to become healthy before the release fails (default
    /// `30s`).
    #[serde(with = "duration")]
    #[schemars(with = "DurationString")]
    pub start_timeout: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            http: "/healthz".to_owned(),
            timeout: Duration::from_secs(2),
            interval: Duration::from_secs(1),
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// How traffic reaches the versions of the service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// The router that splits traffic between stable and canary (default `builtin`):
    /// `builtin` | `haproxy` | `nginx` | `command`.
    #[serde(default)]
    pub router: Router,
    /// HAProxy settings (required with `router: haproxy`, not allowed otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "HaproxyRouter")]
    pub haproxy: Option<HaproxyRouter>,
    /// nginx settings (required with `router: nginx`, not allowed otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "NginxRouter")]
    pub nginx: Option<NginxRouter>,
    /// Command router settings (required with `router: command`, not allowed otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "CommandRouter")]
    pub command: Option<CommandRouter>,
}

/// Where the analysis reads per-version traffic (requests, errors, latency histogram).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signals {
    /// A Prometheus server: instant queries at every analysis interval, summed by version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "PrometheusSignals")]
    pub prometheus: Option<PrometheusSignals>,
}

impl Signals {
    fn is_default(&self) -> bool {
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

/// Traffic routers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Router {
    /// Backstop's built-in HTTP reverse proxy, listening on each environment's `listen`.
    #[default]
    Builtin,
    /// HAProxy, driven live through its runtime API (no reload).
    Haproxy,
    /// nginx: the upstream file is rewritten, tested and reloaded.
    Nginx,
    /// A command of yours applies the split (DNS or anything else).
    Command,
}

/// HAProxy through its runtime API: one backend with a stable and a canary server whose
/// addresses, weights and states Backstop sets live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HaproxyRouter {
    /// The runtime API (`stats socket ... level admin`): an absolute unix socket path
    /// (`/run/haproxy/admin.sock`) or `host:port`. Reachability is checked at run time.
    pub socket: HaproxySocket,
    /// The backend holding the two servers, such as `checkout`.
    #[schemars(pattern(LB_NAME_PATTERN))]
    pub backend: String,
    /// The server of the backend that carries the stable version (default `stable`).
    #[serde(default = "default_stable_server")]
    #[schemars(pattern(LB_NAME_PATTERN))]
    pub stable_server: String,
    /// The server of the backend that carries the canary (default `canary`).
    #[serde(default = "default_canary_server")]
    #[schemars(pattern(LB_NAME_PATTERN))]
    pub canary_server: String,
}

fn default_stable_server() -> String {
    "stable".to_owned()
}

fn default_canary_server() -> String {
    "canary".to_owned()
}

/// Where HAProxy's runtime API listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HaproxySocket {
    /// An absolute unix socket path.
    Unix(PathBuf),
    /// `host:port` (an IP or a host name, then a port).
    Tcp(String),
}

impl HaproxySocket {
    /// Reads `/abs/path.sock` or `host:port`.
    ///
    /// # Errors
    /// A relative path, or a `host:port` without a valid port, with a hint.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(text)));
        }
        if let Some((host, port)) = text.rsplit_once(':')
            && !host.is_empty()
            && !host.contains('/')
            && !host.contains(char::is_whitespace)
        {
            return match port.parse::<u16>() {
                Ok(p) if p != 0 => Ok(Self::Tcp(text.to_owned())),
                _ => Err(format!(
                    "invalid port {port:?} in HAProxy socket {text:?} (expected host:port with a port from 1 to 65535)"
                )),
            };
        }
        Err(format!(
            "HAProxy socket {text:?} is a relative path (use an absolute unix socket path like /run/haproxy/admin.sock, or host:port)"
        ))
    }
}

impl std::fmt::Display for HaproxySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "{}", p.display()),
            Self::Tcp(a) => f.write_str(a),
        }
    }
}

impl Serialize for HaproxySocket {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HaproxySocket {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HaproxySocket {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "HaproxySocket".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "examples": ["/run/haproxy/admin.sock", "127.0.0.1:9999"],
        })
    }
}

/// nginx: Backstop renders the upstream block into `upstream_file`, runs `test_command`, renames
/// the file into place atomically and runs `reload_command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NginxRouter {
    /// Absolute path of the file holding the upstream block, included by nginx's config, such
    /// as `/etc/nginx/conf.d/checkout-upstream.conf`.
    #[schemars(with = "NonEmptyString")]
    pub upstream_file: PathBuf,
    /// Name of the upstream block, such as `checkout`.
    #[schemars(pattern(LB_NAME_PATTERN))]
    pub upstream: String,
    /// Checks the configuration before it goes live (default `nginx -t`).
    #[serde(default = "default_nginx_test")]
    #[schemars(length(min = 1))]
    pub test_command: String,
    /// Makes nginx load the new configuration (default `nginx -s reload`).
    #[serde(default = "default_nginx_reload")]
    #[schemars(length(min = 1))]
    pub reload_command: String,
}

fn default_nginx_test() -> String {
    "nginx -t".to_owned()
}

fn default_nginx_reload() -> String {
    "nginx -s reload".to_owned()
}

/// A command of yours applies the split. It receives `BACKSTOP_STABLE_ADDR`,
/// `BACKSTOP_CANARY_ADDR`, `BACKSTOP_CANARY_WEIGHT` and `BACKSTOP_IDEMPOTENCY_KEY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRouter {
    /// Shell command that applies the split, such as `./route.sh`.
    #[schemars(length(min = 1))]
    pub apply: String,
    /// Time limit of one run (default `30s`); on expiry its process group is killed.
    #[serde(default = "default_router_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
}

fn default_router_timeout() -> Duration {
    Duration::from_secs(30)
}

/// How a new release takes over traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// `canary` (default): traffic moves by steps while the judge watches; `blue-green`: the new
    /// colour is warmed and checked, then takes all traffic at once; `all-at-once`: the new
    /// version takes 100 % at once.
    #[serde(default)]
    pub strategy: Strategy,
    /// Canary steps, weights strictly increasing, the last one 100; every step but the last
    /// holds for `for`. Default: 10 % for 30s, 50 % for 30s, 100 %.
    #[serde(default)]
    #[schemars(extend("default" = [{"weight": 10, "for": "30s"}, {"weight": 50, "for": "30s"}, {"weight": 100}]))]
    pub steps: Vec<Step>,
    /// Blue-green only (default `5m`): how long the old colour is kept after promotion, so that
    /// a late failure switches back in one step; then it is scaled down.
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub rollback_window: Option<Duration>,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            strategy: Strategy::Canary,
            steps: Step::default_canary(),
            rollback_window: None,
        }
    }
}

/// Default blue-green rollback window.
pub const DEFAULT_ROLLBACK_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Rollout strategies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Traffic moves to the new version by steps while the judge watches.
    #[default]
    Canary,
    /// The new colour is warmed and checked, then takes all traffic at once; the old colour is
    /// kept for `rollback_window`.
    BlueGreen,
    /// The new version takes all traffic at once.
    AllAtOnce,
}

/// One canary step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Percentage of traffic sent to the new version, above 0 and at most 100.
    #[schemars(range(max = 100.0), extend("exclusiveMinimum" = 0))]
    pub weight: f64,
    /// Minimum time at this weight before the next step (required on every step but the last).
    #[serde(
        rename = "for",
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub hold: Option<Duration>,
}

impl Step {
    /// The default canary steps: 10 % for 30s, 50 % for 30s, 100 %.
    #[must_use]
    pub fn default_canary() -> Vec<Step> {
        vec![
            Step {
                weight: 10.0,
                hold: Some(Duration::from_secs(30)),
            },
            Step {
                weight: 50.0,
                hold: Some(Duration::from_secs(30)),
            },
            Step {
                weight: 100.0,
                hold: None,
            },
        ]
    }
}

/// Per-rollout circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutBreaker {
    /// How many failed checks of the new version (health checks, analysis thresholds) halt the
    /// rollout (at least 1, default 3).
    #[schemars(range(min = 1))]
    pub failed_checks: u32,
}

impl Default for RolloutBreaker {
    fn default() -> Self {
        Self { failed_checks: 3 }
    }
}

/// Severity of a failed analysis, classified from the evidence and the service tier.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Users are clearly hurt.
    Critical,
    /// A significant regression.
    Major,
    /// A small regression.
    Minor,
}

impl Severity {
    /// Every severity, most severe first.
    pub const ALL: [Severity; 3] = [Severity::Critical, Severity::Major, Severity::Minor];

    /// The name used in the config (`critical`, `major`, `minor`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Major => "major",
            Self::Minor => "minor",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a failed analysis of a given severity does: `rollback`, `notify`, or
/// `{rollback_unless_acknowledged: 2m}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeverityAction {
    /// Roll back now.
    Rollback,
    /// Roll back unless a human acknowledges within this time (e.g. `2m`).
    RollbackUnlessAcknowledged(
        #[serde(with = "duration")]
        #[schemars(with = "DurationString")]
        Duration,
    ),
    /// Notify only; nothing is rolled back automatically.
    Notify,
}

impl SeverityAction {
    /// The name used in the config (`rollback`, `rollback_unless_acknowledged`, `notify`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Rollback => "rollback",
            Self::RollbackUnlessAcknowledged(_) => "rollback_unless_acknowledged",
            Self::Notify => "notify",
        }
    }
}

/// What each severity of failed analysis does; unset ones take the tier default (all three are
/// set after parsing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeverityPolicy {
    /// Workflow for a critical failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SeverityAction")]
    pub critical: Option<SeverityAction>,
    /// Workflow for a major failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SeverityAction")]
    pub major: Option<SeverityAction>,
    /// Workflow for a minor failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SeverityAction")]
    pub minor: Option<SeverityAction>,
}

impl SeverityPolicy {
    /// The defaults of a tier: tiers 0 and 1 roll back on everything; tier 2: critical
    /// rollback, major rollback unless acknowledged within 5m, minor notify; tier 3 (and above):
    /// critical rollback unless acknowledged within 5m, major and minor notify.
    #[must_use]
    pub fn for_tier(tier: u8) -> Self {
        use SeverityAction::{Notify, Rollback, RollbackUnlessAcknowledged};
        let ack = RollbackUnlessAcknowledged(Duration::from_secs(5 * 60));
        let (critical, major, minor) = match tier {
            0 | 1 => (Rollback, Rollback, Rollback),
            2 => (Rollback, ack, Notify),
            _ => (ack, Notify, Notify),
        };
        Self {
            critical: Some(critical),
            major: Some(major),
            minor: Some(minor),
        }
    }

    /// Every severity rolls back (regulated services).
    #[must_use]
    pub fn all_rollback() -> Self {
        Self {
            critical: Some(SeverityAction::Rollback),
            major: Some(SeverityAction::Rollback),
            minor: Some(SeverityAction::Rollback),
        }
    }

    /// The action written for `severity`, if any.
    #[must_use]
    pub fn get(&self, severity: Severity) -> Option<SeverityAction> {
        match severity {
            Severity::Critical => self.critical,
            Severity::Major => self.major,
            Severity::Minor => self.minor,
        }
    }
}

/// A notification target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    /// Webhook URL (`http://` or `https://`) that receives rollout and recovery events.
    #[schemars(length(min = 1))]
    pub webhook: String,
    /// Body format: `json` (default; the event as JSON) or `slack` (Slack incoming-webhook
    /// compatible).
    #[serde(default)]
    pub format: WebhookFormat,
    /// Name of the environment variable holding the HMAC-SHA256 key that signs each body
    /// (`X-Backstop-Signature`); unsigned when absent. The secret itself never goes in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "EnvVarName")]
    pub secret_env: Option<String>,
}

/// Webhook body formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The event as a JSON document.
    #[default]
    Json,
    /// Slack-compatible `{"text": ..., "blocks": [...]}`.
    Slack,
}

/// One environment the service runs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Name, unique within the service (e.g. `staging`, `prod`).
    #[schemars(pattern(NAME_PATTERN))]
    pub name: String,
    /// Address the built-in proxy listens on for this environment, `IP:PORT`
    /// (e.g. `127.0.0.1:8080`); unique across the file. Required with `router: builtin`,
    /// optional with the other routers (the load balancer is the entry point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SocketAddrString")]
    pub listen: Option<SocketAddr>,
    /// Regulated environments: overrides need a second approver; automatic rollback is
    /// mandatory.
    #[serde(default)]
    pub regulated: bool,
    /// Overrides the service's `objectives.rollback_sla` in this environment.
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub rollback_sla: Option<Duration>,
    /// Overrides the service's `migrations.database_url_env` in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub database_url_env: Option<String>,
    /// Scheduled freeze windows of this environment, for every service (UTC), e.g.
    /// `[{from: 2026-12-20T00:00:00Z, until: 2027-01-03T00:00:00Z, reason: holidays}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<crate::freeze::FreezeWindow>,
    /// The environment-specific parameters of the service here (config files and folders, env
    /// values, secrets by reference). Backstop snapshots them before every rollout
    /// (`backstop config history|diff|restore`); `env` values and secrets reach the instances.
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub params: Params,
    /// What the environment is: `production` (default), `staging`, `development` or `test`.
    /// `backstop drill` runs only in non-production, non-regulated environments.
    #[serde(default)]
    pub kind: crate::stateful::EnvKind,
}

/// Environment-specific parameters of a service. Paths are relative to the config file's
/// folder (or absolute).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Config files of this environment (e.g. `config/prod.toml`), snapshotted by content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<NonEmptyString>")]
    pub files: Vec<String>,
    /// Folders of config files (e.g. `config/prod.d`), snapshotted file by file, recursively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<NonEmptyString>")]
    pub folders: Vec<String>,
    /// Environment values given to every instance in this environment (names like `LOG_LEVEL`;
    /// values are strings). They override `run.env`; a release's own env overrides them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": ENV_KEY_PATTERN}))]
    pub env: BTreeMap<String, String>,
    /// Secrets given to instances as environment variables, by reference only: `{env: VAR}`
    /// (read from the daemon's environment) or `{file: PATH}` (one trailing newline dropped).
    /// The value is never stored, printed or logged; snapshots keep a keyed HMAC of it so a
    /// diff can say "changed".
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": ENV_KEY_PATTERN}))]
    #[schemars(with = "BTreeMap<String, SecretRefSchema>")]
    pub secrets: BTreeMap<String, SecretRef>,
}

impl Params {
    /// No files, folders, env values or secrets.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.folders.is_empty()
            && self.env.is_empty()
            && self.secrets.is_empty()
    }
}

/// Where a secret's value comes from (never the value itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRef {
    /// An environment variable of the daemon, e.g. `{env: PROD_DB_PASSWORD}`.
    Env(#[schemars(with = "EnvVarName")] String),
    /// A file holding the value, relative to the config file's folder, e.g.
    /// `{file: secrets/db_password}`.
    File(#[schemars(with = "NonEmptyString")] String),
}

/// Where a secret's value comes from: exactly one of `env` and `file`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
#[allow(dead_code)] // schema only
pub(crate) struct SecretRefSchema {
    /// An environment variable of the daemon holding the value, e.g. `PROD_DB_PASSWORD`.
    #[serde(default)]
    #[schemars(with = "EnvVarName")]
    env: Option<String>,
    /// A file holding the value, relative to the config file's folder, e.g.
    /// `secrets/db_password`.
    #[serde(default)]
    #[schemars(with = "NonEmptyString")]
    file: Option<String>,
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{path}"),
        }
    }
}

impl Config {
    /// The global circuit breaker (`defaults.breaker`, defaults filled in).
    #[must_use]
    pub fn breaker(&self) -> &Breaker {
        &self.defaults.breaker
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

impl Service {
    /// The environment named `name`.
    #[must_use]
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// The rollback SLA in environment `env`: the environment's override, else the service's
    /// objective, else the tier default.
    #[must_use]
    pub fn rollback_sla_for(&self, env: &str) -> Duration {
        self.environment(env)
            .and_then(|e| e.rollback_sla)
            .or(self.objectives.rollback_sla)
            .or(Objectives::for_tier(self.tier).rollback_sla)
            .unwrap_or(Duration::from_secs(60 * 60))
    }

    /// The environment variable naming the database URL of `env`: the environment's override,
    /// else the service's `migrations.database_url_env`.
    #[must_use]
    pub fn database_url_env_for(&self, env: &str) -> Option<&str> {
        self.environment(env)
            .and_then(|e| e.database_url_env.as_deref())
            .or(self
                .migrations
                .as_ref()
                .and_then(|m| m.database_url_env.as_deref()))
    }

    /// Whether any environment of the service is regulated (automatic rollback mandatory).
    #[must_use]
    pub fn is_regulated(&self) -> bool {
        self.environments.iter().any(|e| e.regulated)
    }

    /// What a failed analysis of `severity` does for this service: the configured action, else
    /// the tier default (after [`crate::parse`] it is always configured); always
    /// [`SeverityAction::Rollback`] when an environment is regulated.
    #[must_use]
    pub fn severity_action(&self, severity: Severity) -> SeverityAction {
        if self.is_regulated() {
            return SeverityAction::Rollback;
        }
        self.severity
            .get(severity)
            .or_else(|| SeverityPolicy::for_tier(self.tier).get(severity))
            .unwrap_or(SeverityAction::Rollback)
    }

    /// The MTTR objective (the tier default if not set).
    #[must_use]
    pub fn mttr(&self) -> Duration {
        self.objectives
            .mttr
            .or(Objectives::for_tier(self.tier).mttr)
            .unwrap_or(Duration::from_secs(24 * 60 * 60))
    }
}

/// Parses a humantime duration (`30s`, `5m`, `1h 30m`), with an error that says what was expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (expected e.g. 30s, 5m, 1h 30m)"))
}

/// Formats a duration the way the config writes it (`30s`, `1h 30m`).
#[must_use]
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub(crate) mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

pub(crate) mod option_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    // serde's `with` hands the field by reference.
    #[allow(clippy::ref_option)]
    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => super::parse_duration(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// Schema of a duration string (`30s`, `5m`, `1h 30m`).
pub(crate) struct DurationString;

impl JsonSchema for DurationString {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "duration",
            "pattern": DURATION_PATTERN,
            "examples": ["30s", "5m", "1h 30m"],
        })
    }
}

/// Schema of a non-empty string.
pub(crate) struct NonEmptyString;

impl JsonSchema for NonEmptyString {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "NonEmptyString".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "minLength": 1})
    }
}

/// Schema of an environment variable name.
pub(crate) struct EnvVarName;

impl JsonSchema for EnvVarName {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "EnvVarName".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "pattern": ENV_KEY_PATTERN, "examples": ["SLACK_HMAC"]})
    }
}

/// Schema of a socket address string (`127.0.0.1:8080`, `[::1]:8080`).
pub(crate) struct SocketAddrString;

impl JsonSchema for SocketAddrString {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "SocketAddr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "socket-address",
            "examples": ["127.0.0.1:8080", "[::1]:8080"],
        })
    }
}

/// Commands run as steps of a rollback plan, each journaled with an idempotency key
/// (`BACKSTOP_IDEMPOTENCY_KEY`) that stays the same if the step is re-run after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Runs before traffic is shifted back (`sh -c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_rollback: Option<String>,
    /// Runs after the bad version is stopped (`sh -c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_rollback: Option<String>,
    /// Time limit of one hook run; a hook that overruns is killed (its process group) and retried.
    #[serde(default = "default_hook_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            before_rollback: None,
            after_rollback: None,
            timeout: default_hook_timeout(),
        }
    }
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(60)
}
