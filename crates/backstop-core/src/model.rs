//! The nouns as stored and served by the API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::named::string_enum;

/// What a release runs: an executable file (hashed by content) or a command line (hashed as text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Artifact {
    File(String),
    Command(String),
}

impl Artifact {
    /// For people: `file /path` or `command the command line`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Artifact::File(p) => format!("file {p}"),
            Artifact::Command(c) => format!("command {c}"),
        }
    }

    /// What `{artifact}` expands to in the service's run command.
    pub fn as_str(&self) -> &str {
        match self {
            Artifact::File(p) | Artifact::Command(p) => p,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Registered; not known to be bad.
    Ok,
    /// Rolled back: never promoted again without a new release.
    Bad,
}

impl ReleaseStatus {
    /// The status as it reads on the wire: `ok` or `bad`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Ok => "ok",
            ReleaseStatus::Bad => "bad",
        }
    }
}

/// Where a secret's value comes from, never the value: the daemon reads it when it starts an
/// instance (`{"env": "VAR"}` from its own environment, `{"file": "/abs/path"}` from its host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    Env(String),
    File(String),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "env:{name}"),
            SecretSource::File(path) => write!(f, "file:{path}"),
        }
    }
}

impl std::str::FromStr for SecretSource {
    type Err = String;

    /// `env:VAR` or `file:/absolute/path`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("env", name)) if crate::env_var::is_env_var_name(name) => {
                Ok(SecretSource::Env(name.to_string()))
            }
            Some(("file", path)) if path.starts_with('/') => {
                Ok(SecretSource::File(path.to_string()))
            }
            _ => Err(format!(
                "{s:?} is not a secret reference: use env:VARIABLE (the daemon's environment) or file:/absolute/path (on the daemon's host)"
            )),
        }
    }
}

/// A version of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Release {
    pub id: String,
    pub service: String,
    pub version: String,
    pub artifact: Artifact,
    /// sha256 of the file's bytes, or of the command text.
    pub sha256: String,
    /// Release-specific environment, added to the service's `run.env`. Stored and shown as
    /// given: secrets go in `secrets`.
    pub env: BTreeMap<String, String>,
    /// Variables whose values are secrets, by reference: resolved when an instance starts,
    /// never stored, returned or logged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretSource>,
    pub status: ReleaseStatus,
    pub bad_reason: Option<String>,
    pub created_at_ms: Millis,
    /// The migration versions this release runs on (`0003..0005`), when it declared them:
    /// what schema-aware rollbacks compare the database's applied history with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<crate::schema::SchemaRange>,
}

impl Release {
    pub fn id_for(service: &str, version: &str) -> String {
        format!("{service}@{version}")
    }
}

/// A Backstop daemon (a replica) that has said it is alive, as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaRecord {
    /// Chosen at the daemon's start; a restarted daemon is a new replica.
    pub id: String,
    /// Where its API answers.
    pub address: String,
    pub host: String,
    pub pid: u32,
    pub started_at_ms: Millis,
    pub last_heartbeat_ms: Millis,
}

/// Who drives one piece of work (a rollout, a recovery, an environment's supervision) among
/// the replicas, until when, and at which epoch (it grows each time the lease changes hands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lease {
    /// `rollout/ID`, `recovery/ID` or `env/SERVICE/ENV`.
    pub key: String,
    /// The replica id of the holder.
    pub holder: String,
    pub epoch: i64,
    pub expires_at_ms: Millis,
}

/// A command a replica received for work another replica holds, passed on through the store:
/// the holder runs it and records the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutedCommand {
    pub id: String,
    /// The lease whose holder runs it.
    pub lease_key: String,
    pub body: serde_json::Value,
    pub created_at_ms: Millis,
    /// The replica that took it to run (its sender can no longer withdraw it).
    pub claimed_by: Option<String>,
    pub answered_at_ms: Option<Millis>,
    pub answer: Option<serde_json::Value>,
}

/// A supervised process running one release in one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceRecord {
    pub id: String,
    pub service: String,
    pub env: String,
    pub release_id: String,
    pub pid: u32,
    pub port: u16,
    pub started_at_ms: Millis,
    pub state: InstanceState,
}

string_enum! {
    /// Where a supervised instance is in its life.
    pub enum InstanceState {
        /// Spawned; not yet healthy.
        Starting = "starting",
        /// Healthy and (able to be) serving.
        Running = "running",
        Stopped = "stopped",
    }
}

/// What an environment runs right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnvironmentState {
    pub service: String,
    pub env: String,
    /// Last known good release: where a recovery goes back to.
    pub lkg_release_id: Option<String>,
    /// The instance serving stable traffic.
    pub stable_instance_id: Option<String>,
    /// The release that was LKG before the current one (target of a manual rollback after promotion).
    pub previous_lkg_release_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Requested; the new version is not running yet.
    Pending,
    /// The canary takes traffic step by step, watched by the judge.
    Progressing,
    /// Held for a human: the judge could not decide (e.g. both arms degraded).
    Paused,
    /// The new version took all traffic and is now the last known good.
    Promoted,
    /// The judge (or a person) said no; recovery is about to start.
    Failed,
    /// Recovery steps are running.
    Recovering,
    /// Traffic is back on the last known good; the new release is marked bad.
    Recovered,
}

impl Phase {
    pub fn is_active(self) -> bool {
        !matches!(self, Phase::Promoted | Phase::Recovered)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Promoted => "promoted",
            Phase::Failed => "failed",
            Phase::Recovering => "recovering",
            Phase::Recovered => "recovered",
        }
    }
    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "pending" => Phase::Pending,
            "progressing" => Phase::Progressing,
            "paused" => Phase::Paused,
            "promoted" => Phase::Promoted,
            "failed" => Phase::Failed,
            "recovering" => Phase::Recovering,
            "recovered" => Phase::Recovered,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Moving an environment from its LKG release to a new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rollout {
    pub id: String,
    pub service: String,
    pub env: String,
    /// The LKG the rollout started from (`None` for a service's first deployment).
    pub from_release_id: Option<String>,
    pub to_release_id: String,
    pub phase: Phase,
    /// Index into the service's rollout steps.
    pub step_index: i64,
    pub step_started_at_ms: Option<Millis>,
    /// Percent of traffic the new version gets now.
    pub canary_weight: f64,
    /// The new version's instance once started.
    pub canary_instance_id: Option<String>,
    pub created_at_ms: Millis,
    pub updated_at_ms: Millis,
    /// Who asked for it.
    pub actor: String,
    /// Why it failed or was paused, in words.
    pub reason: Option<String>,
    /// The judge's last report.
    #[schema(value_type = Value)]
    pub verdict: Option<serde_json::Value>,
    /// How bad the failure was for users, once the judge failed it.
    pub severity: Option<crate::severity::Severity>,
    /// A held rollout is rolled back at this time unless a person acknowledges it first.
    pub escalation_deadline_ms: Option<Millis>,
    /// Who acknowledged a held rollout (it then waits for their promote or abort).
    pub acknowledged_by: Option<String>,
}

/// One timeline event of a rollout or recovery (what the quickstart and post-mortems plot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub at_ms: Millis,
    pub rollout_id: String,
    pub kind: crate::event::EventKind,
    #[schema(value_type = Value)]
    pub detail: serde_json::Value,
}

/// Per-interval counts stored with the rollout, replayable as a `backstop-scenario/v1` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredInterval {
    pub rollout_id: String,
    pub seq: i64,
    pub interval: backstop_judge::Interval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    /// Intent journaled; the side effect may or may not have happened.
    Started,
    Done,
    Failed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Started => "started",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<StepStatus> {
        Some(match s {
            "pending" => StepStatus::Pending,
            "started" => StepStatus::Started,
            "done" => StepStatus::Done,
            "failed" => StepStatus::Failed,
            _ => return None,
        })
    }
}

/// One journaled recovery step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecoveryStep {
    pub index: i64,
    pub idempotency_key: String,
    pub step: crate::recovery::StepKind,
    pub status: StepStatus,
    /// How many times the intent was journaled (more than 1 = resumed after a crash or retried).
    pub attempts: i64,
    pub started_at_ms: Option<Millis>,
    pub finished_at_ms: Option<Millis>,
    #[schema(value_type = Value)]
    pub outcome: Option<serde_json::Value>,
}

/// A recovery: the journal of a plan being executed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recovery {
    pub id: String,
    pub rollout_id: Option<String>,
    pub service: String,
    pub env: String,
    pub actor: String,
    /// `judge`, `manual`, `abort`.
    pub trigger: String,
    pub reason: String,
    pub status: RecoveryStatus,
    pub created_at_ms: Millis,
    pub finished_at_ms: Option<Millis>,
    pub steps: Vec<RecoveryStep>,
    /// After the steps: the post-recovery suite (`None` for a recovery not done, or done
    /// before validation existed).
    #[serde(default)]
    pub validation: Option<crate::validation::RecoveryValidation>,
    /// Whether its post-mortem was written, and whether people were reminded it is overdue.
    #[serde(default)]
    pub postmortem: Option<crate::postmortem::PostmortemRecord>,
}

string_enum! {
    /// Where a recovery is: its steps run until all are done or one fails.
    pub enum RecoveryStatus {
        Running = "running",
        Done = "done",
        /// A step failed; a person may retry it (the recovery then runs again).
        Failed = "failed",
    }
}

/// An open (or past) trip of the global circuit breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BreakerTrip {
    pub id: String,
    #[schema(value_type = String)]
    pub scope: crate::breaker::TripScope,
    pub tripped_at_ms: Millis,
    /// The failed rollouts that tripped it.
    #[schema(value_type = Value)]
    pub failures: serde_json::Value,
    pub reset_at_ms: Option<Millis>,
    pub reset_by: Option<String>,
    pub reset_reason: Option<String>,
}

/// A manual freeze: rollouts into its scope are refused by the gate until it ends (at
/// `until_ms`, or when a person ends it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Freeze {
    pub id: String,
    /// Only this service (every service when `None`).
    pub service: Option<String>,
    /// Only this environment (every environment when `None`).
    pub env: Option<String>,
    pub reason: String,
    /// Who started it.
    pub actor: String,
    pub started_at_ms: Millis,
    /// Ends by itself at this time; `None` = until a person ends it.
    pub until_ms: Option<Millis>,
    pub ended_at_ms: Option<Millis>,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
}

impl Freeze {
    /// In effect at `now` (started, not ended, not expired).
    #[must_use]
    pub fn in_effect(&self, now: Millis) -> bool {
        self.ended_at_ms.is_none()
            && self.started_at_ms <= now
            && self.until_ms.is_none_or(|u| now < u)
    }

    /// Covers rollouts of `service` into `env`.
    #[must_use]
    pub fn covers(&self, service: &str, env: &str) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
            && self.env.as_deref().is_none_or(|e| e == env)
    }
}
