//! A service: who owns it, how critical it is, and its per-service settings (migrations,
//! notifications, rollback hooks).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use backstop_core::duration::{
    DurationString, serde_duration as duration, serde_option_duration as option_duration,
};
use backstop_core::severity::Severity;
use backstop_core::tier::{Objectives, SeverityAction, SeverityPolicy};
use backstop_judge::JudgeSettings;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    EnvVarName, Environment, NAME_PATTERN, RolloutBreaker, RolloutSpec, Run, Signals, Traffic,
};

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
    /// Alerts from the team's monitoring about this service (Alertmanager's webhook to
    /// `/api/v1/alerts/alertmanager`, labels `service` and `env`): a firing alert while a
    /// release is new runs the service's `severity` policy on it.
    #[serde(default)]
    pub alerts: AlertSettings,
    /// Some, not all, of a version's instances failing (`run.instances` above 1): how many
    /// make a partial failure, its severity, and what is done about the new version's.
    #[serde(default)]
    pub partial_failures: PartialFailures,
    /// The service's database migrations. With them, releases can declare the schema range
    /// they run on (`backstop release … --schema 0003..0005`) and rollbacks decide before
    /// touching anything whether proven downs must run or the way back is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<MigrationsSpec>,
    /// The post-recovery suite: after a rollback has put traffic back (restored), the recovery
    /// is resolved only when these journeys and commands pass; until then non-critical
    /// deployments into the environment are frozen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<super::Validation>,
    /// Batch jobs of the service that ping Backstop after each run (see `backstop heartbeat`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heartbeats: Vec<super::validation::Heartbeat>,
    /// Feature flags of the service, with sticky percentages and staged re-enables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<super::validation::Flag>,
    /// Where the service runs (at least one environment, unique names).
    #[schemars(length(min = 1))]
    pub environments: Vec<Environment>,
    /// The environment waves `backstop release ship` takes a release through, in order, e.g.
    /// `[{envs: [staging], bake: 30m}, {envs: [prod-eu, prod-us]}]`: a wave's environments
    /// roll out together; after all are promoted, the bake keeps judging them against their
    /// pre-deploy baselines before the next wave starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<Wave>,
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

/// A notification target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    /// Webhook URL (`http://` or `https://`) that receives rollout and recovery events.
    #[schemars(length(min = 1))]
    pub webhook: String,
    /// Body format: `json` (default; the event as JSON), `slack` (Slack incoming-webhook
    /// compatible), `pagerduty` (Events API v2 alerts) or `pagerduty_change` (Events API v2
    /// change events: rollout starts, promotions and rollbacks only).
    #[serde(default)]
    pub format: WebhookFormat,
    /// Name of the environment variable holding the HMAC-SHA256 key that signs each body
    /// (`X-Backstop-Signature`); unsigned when absent. The secret itself never goes in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "EnvVarName")]
    pub secret_env: Option<String>,
    /// With `format: pagerduty` or `pagerduty_change`: the environment variable holding the
    /// Events API v2 integration (routing) key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "EnvVarName")]
    pub routing_key_env: Option<String>,
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
    /// PagerDuty Events API v2 (an incident's events are one alert, resolved with it).
    #[serde(rename = "pagerduty")]
    PagerDuty,
    /// PagerDuty Events API v2 change events (post to
    /// `https://events.pagerduty.com/v2/change/enqueue`): every rollout start, promotion and
    /// rollback shows on the service's change timeline beside its incidents; other events are
    /// not sent.
    #[serde(rename = "pagerduty_change")]
    PagerDutyChange,
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
        self.severity
            .action(severity, self.tier, self.is_regulated())
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
    /// Undoes what this service's release did to other services (`sh -c`), saga style: run once,
    /// journaled, when a release group this service is a member of fails, after the service
    /// is put back on its last known good (or, for the member that failed, after its own
    /// recovery). `BACKSTOP_IDEMPOTENCY_KEY` names the run, so the command can be idempotent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensate: Option<String>,
    /// Time limit of one hook run (and of one cache sweep); a hook that overruns is killed (its
    /// process group) and retried.
    #[serde(default = "default_hook_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
    /// Caches swept during every rollback once the bad version no longer serves (after
    /// `after_rollback`), each a journaled step: what it cached must not be served again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweeps: Vec<CacheSweep>,
}

/// How alerts about a service are taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// How long after a promotion a firing alert is blamed on the new release (default
    /// `30m`); an alert during a rollout always is. `0s` ignores alerts after promotion.
    #[serde(default = "default_alert_watch", with = "duration")]
    #[schemars(with = "DurationString")]
    pub watch: Duration,
    /// Which release an alert about this service is blamed on: `labelled` (default: the
    /// release of the service its labels name) or `ranked` (the likeliest culprit among the
    /// releases that changed the environment within 30 minutes, ranked by how early and how
    /// far each one's canary diverged from its baseline; the labelled service's release when
    /// none diverged). A bad release often hurts its callers loudest: `ranked` recovers the
    /// culprit first, not the service that alerted.
    #[serde(default)]
    pub blame: AlertBlame,
    /// PagerDuty services whose incidents are about this service, by PagerDuty service id, each
    /// with the environment it watches (e.g. `{PABC123: prod}`): an incident triggered there
    /// (PagerDuty v3 webhook to `/api/v1/alerts/pagerduty`) is taken like an alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pagerduty: BTreeMap<String, String>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            watch: default_alert_watch(),
            blame: AlertBlame::default(),
            pagerduty: BTreeMap::new(),
        }
    }
}

/// Which release an alert is blamed on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertBlame {
    /// The release of the service the alert's labels name.
    #[default]
    Labelled,
    /// The likeliest culprit by failure scope.
    Ranked,
}

fn default_alert_watch() -> Duration {
    Duration::from_secs(30 * 60)
}

/// When some of a version's instances fail, and what is done. An unhealthy or crashed instance
/// of the serving version is always replaced (restarted); the new version's are evidence
/// against its release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartialFailures {
    /// How many of a version's instances unhealthy at once (not all of them: that is a plain
    /// failure) make a partial failure (default 1).
    #[serde(default = "default_unhealthy")]
    #[schemars(range(min = 1))]
    pub unhealthy: u32,
    /// The severity a partial failure is recorded and notified with (default `major`).
    #[serde(default = "default_partial_severity")]
    pub severity: Severity,
    /// What a partial failure of the new version does during its rollout: `rollback`
    /// (default: the release is bad on some instances, so it is bad) or `replace` (restart its
    /// unhealthy instances and go on; all of them failing still rolls back).
    #[serde(default)]
    pub new_version: NewVersionPartialFailure,
    /// Judge each instance's error ratio against its version's other instances, so one bad
    /// instance among many is found (default `true`; needs two or more instances). A bad
    /// instance of the serving version is replaced; one of the new version counts as its
    /// partial failure.
    #[serde(default = "default_true")]
    pub outliers: bool,
}

impl Default for PartialFailures {
    fn default() -> Self {
        Self {
            unhealthy: default_unhealthy(),
            severity: default_partial_severity(),
            new_version: NewVersionPartialFailure::default(),
            outliers: true,
        }
    }
}

/// What a partial failure of the new version does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NewVersionPartialFailure {
    /// Roll the release back.
    #[default]
    Rollback,
    /// Restart the unhealthy instances and go on.
    Replace,
}

fn default_unhealthy() -> u32 {
    1
}

fn default_partial_severity() -> Severity {
    Severity::Major
}

fn default_true() -> bool {
    true
}

/// One cache to sweep: `redis` (or `redis_env`) with `pattern`, or `purge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheSweep {
    /// Names the step in the journal (e.g. `product-cache`).
    #[schemars(length(min = 1))]
    pub name: String,
    /// `HOST:PORT[/DB]` of a Redis server. A password does not go here: use `redis_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// A variable of the daemon's environment holding `redis://[:PASSWORD@]HOST:PORT[/DB]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub redis_env: Option<String>,
    /// The keys to remove, a Redis glob (e.g. `product:*`); found with SCAN, never KEYS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Keys per SCAN and UNLINK (default 500).
    #[serde(default = "default_sweep_batch")]
    #[schemars(range(min = 1))]
    pub batch: u32,
    /// A URL sent `PURGE` (a CDN or HTTP cache); 2xx or 404 is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge: Option<String>,
}

fn default_sweep_batch() -> u32 {
    500
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            before_rollback: None,
            after_rollback: None,
            compensate: None,
            timeout: default_hook_timeout(),
            sweeps: Vec::new(),
        }
    }
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(60)
}

/// One wave of `backstop release ship`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    /// Environments of the service rolled out together in this wave (each in one wave at most).
    #[schemars(length(min = 1))]
    pub envs: Vec<String>,
    /// How long the wave, once every environment of it is promoted, keeps being judged against
    /// each environment's pre-deploy baseline before the next wave starts (default: none).
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub bake: Option<Duration>,
    /// What this wave does when a later wave fails: `keep` the release (default: it passed
    /// here) or `roll_back` with it (e.g. regions that must run the same version).
    #[serde(default)]
    pub on_later_failure: LaterFailure,
}

/// What a wave does when a later wave of the same ship fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LaterFailure {
    /// Keep the release: it passed this wave's canary and bake.
    #[default]
    Keep,
    /// Go back to the previous last known good too.
    RollBack,
}
