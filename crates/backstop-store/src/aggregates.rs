//! One trait per aggregate: what each part of Backstop's state offers, so a backend is written
//! (and read) one aggregate at a time. [`crate::Store`] is all of them together.

use async_trait::async_trait;
use backstop_core::Millis;
use backstop_core::access::TokenRecord;
use backstop_core::approval::{Approval, ApprovalStatus};
use backstop_core::audit::{AuditEntry, AuditHead, AuditKey, AuditRecord};
use backstop_core::breaker::TripScope;
use backstop_core::drill::Drill;
use backstop_core::flag::FlagState;
use backstop_core::incident::Incident;
use backstop_core::model::{
    BreakerTrip, EnvironmentState, Event, Freeze, InstanceRecord, Lease, Recovery, RecoveryStatus,
    Release, ReplicaRecord, Rollout, RoutedCommand,
};
use backstop_core::recovery::StepKind;
use backstop_core::runbook_run::RunbookRun;
use backstop_core::snapshot::{ConfigSnapshot, RolloutSafeguards};
use backstop_judge::Interval;

/// The PostgreSQL channel replicas listen on to be woken ([`ClusterStore::wake_replicas`]).
pub const WAKE_CHANNEL: &str = "backstop_wake";

use crate::{Result, StoreError};

/// Registered releases.
#[async_trait]
pub trait ReleaseStore: Send + Sync {
    /// Registers a release; `Conflict` if `service@version` exists.
    async fn create_release(&self, release: &Release) -> Result<()>;
    async fn release(&self, id: &str) -> Result<Release>;
    async fn releases(&self, service: Option<&str>) -> Result<Vec<Release>>;
    async fn mark_release_bad(&self, id: &str, reason: &str) -> Result<()>;
    /// Clears a release's bad mark (a false alarm); `Conflict` when it is not marked bad.
    async fn readmit_release(&self, id: &str) -> Result<()>;
}

/// What each environment runs: its state and the instances started for it.
#[async_trait]
pub trait EnvironmentStore: Send + Sync {
    async fn environment(&self, service: &str, env: &str) -> Result<Option<EnvironmentState>>;
    async fn put_environment(&self, state: &EnvironmentState) -> Result<()>;
    async fn environments(&self) -> Result<Vec<EnvironmentState>>;
    async fn put_instance(&self, instance: &InstanceRecord) -> Result<()>;
    async fn instance(&self, id: &str) -> Result<InstanceRecord>;
    async fn running_instances(&self) -> Result<Vec<InstanceRecord>>;
}

/// Rollouts with their judged intervals and timeline events.
#[async_trait]
pub trait RolloutStore: Send + Sync {
    /// Inserts a rollout; `Conflict` when the environment already has an unfinished one.
    async fn create_rollout(&self, rollout: &Rollout) -> Result<()>;
    async fn rollout(&self, id: &str) -> Result<Rollout>;
    /// Most recent first.
    async fn rollouts(&self, service: Option<&str>, limit: i64) -> Result<Vec<Rollout>>;
    async fn active_rollouts(&self) -> Result<Vec<Rollout>>;
    async fn active_rollout(&self, service: &str, env: &str) -> Result<Option<Rollout>>;
    /// Replaces the stored row (by id).
    async fn update_rollout(&self, rollout: &Rollout) -> Result<()>;
    /// Promotion in one transaction: the rollout's final row and the environment's new LKG and
    /// stable instance are written together, so a crash never leaves one without the other.
    async fn commit_promotion(&self, rollout: &Rollout, env: &EnvironmentState) -> Result<()>;
    async fn append_interval(&self, rollout_id: &str, interval: &Interval) -> Result<i64>;
    async fn intervals(&self, rollout_id: &str) -> Result<Vec<Interval>>;
    async fn add_event(&self, event: &Event) -> Result<()>;
    async fn events(&self, rollout_id: &str) -> Result<Vec<Event>>;
}

/// The recovery journal.
#[async_trait]
pub trait RecoveryStore: Send + Sync {
    /// Writes the recovery and its whole plan at once, before any step runs.
    async fn create_recovery(&self, recovery: &Recovery, plan: &[StepKind]) -> Result<()>;
    async fn recovery(&self, id: &str) -> Result<Recovery>;
    async fn recoveries(&self, limit: i64) -> Result<Vec<Recovery>>;
    async fn unfinished_recoveries(&self) -> Result<Vec<Recovery>>;
    /// Journals the intent to run a step (counts attempts).
    async fn step_started(&self, recovery_id: &str, index: i64, at: Millis) -> Result<()>;
    async fn step_finished(
        &self,
        recovery_id: &str,
        index: i64,
        at: Millis,
        ok: bool,
        outcome: &serde_json::Value,
    ) -> Result<()>;
    async fn finish_recovery(&self, id: &str, status: RecoveryStatus, at: Millis) -> Result<()>;
    /// Marks a failed recovery running again (its failed step will be retried); `Conflict` when
    /// the environment already has another running recovery.
    async fn reopen_recovery(&self, id: &str) -> Result<()>;
    /// Records the post-recovery validation of recovery `id`.
    async fn set_recovery_validation(
        &self,
        id: &str,
        validation: &backstop_core::validation::RecoveryValidation,
    ) -> Result<()>;
    /// Records what people did with recovery `id`'s post-mortem.
    async fn set_recovery_postmortem(
        &self,
        id: &str,
        postmortem: &backstop_core::postmortem::PostmortemRecord,
    ) -> Result<()>;
    /// Resolved recoveries whose post-mortem nobody marked written, oldest first (what may be
    /// overdue).
    async fn recoveries_awaiting_postmortem(&self) -> Result<Vec<Recovery>>;
    /// Done recoveries whose post-recovery suite is still pending, oldest first.
    async fn recoveries_validating(&self) -> Result<Vec<Recovery>>;
}

/// The daemons sharing this store: each says it is alive every few seconds.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Records (or refreshes) a replica's heartbeat.
    async fn heartbeat(&self, replica: &ReplicaRecord) -> Result<()>;
    /// Every replica that ever beat, most recent heartbeat first.
    async fn replicas(&self) -> Result<Vec<ReplicaRecord>>;

    /// Takes or renews the lease `key` for `holder` until `now + ttl`, and answers its epoch;
    /// `None` while another holder's lease has not expired. The epoch grows by one when the
    /// lease changes hands and stays while its holder renews it.
    async fn acquire_lease(
        &self,
        key: &str,
        holder: &str,
        now: Millis,
        ttl: Millis,
    ) -> Result<Option<i64>>;
    /// Renews every lease `holder` holds (not let go) until `now + ttl`, in one statement, and
    /// answers them with their epochs: a lease missing from the answer was taken over. One
    /// write per replica per renewal, whatever the number of rollouts it drives.
    async fn renew_leases(&self, holder: &str, now: Millis, ttl: Millis) -> Result<Vec<Lease>>;
    /// Lets `holder`'s lease `key` go now (others may take it at once); keeps its epoch.
    async fn release_lease(&self, key: &str, holder: &str) -> Result<()>;
    /// Lets every lease of `holder` go now (a graceful stop).
    async fn release_leases(&self, holder: &str) -> Result<()>;
    /// Lets every lease not held by `holder` go now: for a daemon that knows no other one can
    /// run (an embedded store behind its state folder's lock), so it resumes at once what a
    /// crashed predecessor held instead of waiting for those leases to expire.
    async fn expire_others_leases(&self, holder: &str) -> Result<()>;
    /// Every lease, by key.
    async fn leases(&self) -> Result<Vec<Lease>>;
    /// `Fenced` when the running task's fence ([`crate::fence`]) is stale, before an action
    /// on the world that no write precedes (stopping an instance, running a hook). A check, not
    /// a lock: it closes the long window of a replica that froze, not a race of milliseconds.
    async fn check_fence(&self) -> Result<()>;

    /// Wakes every replica's controller at once (PostgreSQL `NOTIFY` on [`WAKE_CHANNEL`]):
    /// desired state changed, or a command waits for its holder. Nothing on an embedded store,
    /// whose one daemon wakes its controller in memory.
    async fn wake_replicas(&self) -> Result<()>;
    /// Records a command for the holder of `lease_key` (and wakes the replicas).
    async fn route_command(&self, c: &RoutedCommand) -> Result<()>;
    /// Unclaimed, unanswered commands for the leases `holder` holds, oldest first.
    async fn commands_for(&self, holder: &str) -> Result<Vec<RoutedCommand>>;
    /// `holder` takes the command to run it; false when it was withdrawn or taken already.
    async fn claim_command(&self, id: &str, holder: &str) -> Result<bool>;
    /// Records a command's answer (once; `Conflict` if it was answered already).
    async fn answer_command(&self, id: &str, at: Millis, answer: &serde_json::Value) -> Result<()>;
    /// Answers an unclaimed command with `answer` in its sender's name (it waited too long);
    /// false when a holder claimed or answered it first.
    async fn withdraw_command(
        &self,
        id: &str,
        at: Millis,
        answer: &serde_json::Value,
    ) -> Result<bool>;
    /// One command, answered or not.
    async fn command(&self, id: &str) -> Result<RoutedCommand>;
}

/// The global circuit breaker: its trips and the failures it counts.
#[async_trait]
pub trait BreakerStore: Send + Sync {
    /// (time, environment) of failing verdicts (`judge.fail` events) and failed deployments
    /// (`rollout.failed` with trigger `deploy`) since `since`: what the global breaker counts.
    async fn failures_since(&self, since: Millis) -> Result<Vec<(Millis, String)>>;
    /// Opens a trip; `Conflict` when the scope already has an open one.
    async fn create_trip(&self, trip: &BreakerTrip) -> Result<()>;
    async fn open_trips(&self) -> Result<Vec<BreakerTrip>>;
    /// Closes the open trip of `scope`; `NotFound` when there is none.
    async fn reset_trip(
        &self,
        scope: &TripScope,
        by: &str,
        reason: &str,
        at: Millis,
    ) -> Result<BreakerTrip>;
}

impl StoreError {
    /// What [`BreakerStore::reset_trip`] answers when `scope` has no open trip.
    pub fn no_open_trip(scope: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("open circuit-breaker trip for scope {scope}"))
    }
}

/// Manual freezes.
#[async_trait]
pub trait FreezeStore: Send + Sync {
    async fn create_freeze(&self, freeze: &Freeze) -> Result<()>;
    /// Freezes not ended by a person (expired ones included), oldest first; with
    /// `include_ended` every freeze.
    async fn freezes(&self, include_ended: bool) -> Result<Vec<Freeze>>;
    /// Ends a freeze; `NotFound` when there is no such freeze, `Conflict` when it already ended.
    async fn end_freeze(&self, id: &str, by: &str, reason: &str, at: Millis) -> Result<Freeze>;
}

/// Requests for a second person: approvals before an override runs, reviews after a
/// break-glass rollback.
#[async_trait]
pub trait ApprovalStore: Send + Sync {
    async fn create_approval(&self, approval: &Approval) -> Result<()>;
    /// `NotFound` when there is no such request.
    async fn approval(&self, id: &str) -> Result<Approval>;
    /// Pending and to-review requests, oldest first; with `include_closed` every request.
    async fn approvals(&self, include_closed: bool) -> Result<Vec<Approval>>;
    /// Moves a request from `from` to `to` (one decision wins: `Conflict` when it is no longer
    /// `from`), recording who, when, a note and a result (each kept when `None`).
    #[allow(clippy::too_many_arguments)]
    async fn decide_approval(
        &self,
        id: &str,
        from: ApprovalStatus,
        to: ApprovalStatus,
        by: &str,
        at: Millis,
        note: Option<&str>,
        result: Option<&serde_json::Value>,
    ) -> Result<Approval>;
}

/// Incidents, each changed by compare-and-set on its version.
#[async_trait]
pub trait IncidentStore: Send + Sync {
    /// Stores a new incident; its version is 1.
    async fn create_incident(&self, incident: &Incident) -> Result<i64>;
    /// The incident and its version; `NotFound` when there is none.
    async fn incident(&self, id: &str) -> Result<(Incident, i64)>;
    /// Incidents not resolved (with `include_resolved`, all), oldest first.
    async fn incidents(&self, include_resolved: bool) -> Result<Vec<(Incident, i64)>>;
    /// Writes `incident` if it is still at `read_version` (`Conflict` when someone changed
    /// it meanwhile): the new version.
    async fn update_incident(&self, incident: &Incident, read_version: i64) -> Result<i64>;
}

/// API tokens people hold (only their sha256 is stored).
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// `Conflict` when the name was ever used.
    async fn create_token(&self, token: &TokenRecord) -> Result<()>;
    /// Every token, revoked and expired ones included, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    /// `NotFound` when there is no such token, `Conflict` when it is already revoked.
    async fn revoke_token(&self, name: &str, by: &str, at: Millis) -> Result<TokenRecord>;
}

/// Config snapshots and the safeguards captured for each rollout.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Records a snapshot as the next version of its (service, env), unless the latest version
    /// has the same manifest: then that one is returned. `.1` says whether a version was added.
    /// `version` of the argument is ignored.
    async fn record_config_snapshot(
        &self,
        snapshot: &ConfigSnapshot,
    ) -> Result<(ConfigSnapshot, bool)>;
    /// Newest first.
    async fn config_snapshots(&self, service: &str, env: &str) -> Result<Vec<ConfigSnapshot>>;
    async fn config_snapshot(
        &self,
        service: &str,
        env: &str,
        version: i64,
    ) -> Result<ConfigSnapshot>;
    /// Written once per rollout; `Conflict` when it already has them.
    async fn put_rollout_safeguards(&self, safeguards: &RolloutSafeguards) -> Result<()>;
    async fn rollout_safeguards(&self, rollout_id: &str) -> Result<Option<RolloutSafeguards>>;
}

/// Recovery drills.
#[async_trait]
pub trait DrillStore: Send + Sync {
    /// Stores a started drill; `Conflict` if the id exists.
    async fn create_drill(&self, drill: &Drill) -> Result<()>;
    /// Replaces a stored drill (status, finish time, results); `NotFound` when missing.
    async fn update_drill(&self, drill: &Drill) -> Result<()>;
    async fn drill(&self, id: &str) -> Result<Drill>;
    /// Most recent first, optionally of one service.
    async fn drills(&self, service: Option<&str>, limit: i64) -> Result<Vec<Drill>>;
}

/// The audit log, a hash chain.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends to the hash chain atomically (sequence, link and head in one transaction).
    async fn append_audit(&self, at: Millis, entry: &AuditEntry) -> Result<AuditRecord>;
    /// Records with `seq > after`, oldest first.
    async fn audit(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>>;
    /// The head written with the last record.
    async fn audit_head(&self) -> Result<Option<AuditHead>>;
    /// The key later appends sign the head with.
    fn set_audit_key(&self, key: AuditKey);
}

/// Runbook runs, each changed by compare-and-set on its version.
#[async_trait]
pub trait RunbookRunStore: Send + Sync {
    /// Stores a new run; its version is 1.
    async fn create_runbook_run(&self, run: &RunbookRun) -> Result<i64>;
    /// The run and its version; `NotFound` when there is none.
    async fn runbook_run(&self, id: &str) -> Result<(RunbookRun, i64)>;
    /// Runs, oldest first: every one, or only those not over (running or waiting).
    async fn runbook_runs(&self, include_over: bool) -> Result<Vec<(RunbookRun, i64)>>;
    /// The runs that are part of incident `incident_id`, oldest first.
    async fn incident_runbook_runs(&self, incident_id: &str) -> Result<Vec<RunbookRun>>;
    /// Writes `run` if it is still at `read_version` (`Conflict` when someone changed it
    /// meanwhile); the new version. Fenced like every write of a lease's work.
    async fn update_runbook_run(&self, run: &RunbookRun, read_version: i64) -> Result<i64>;
}

/// Feature flags per environment, stored whole and changed by compare-and-set.
#[async_trait]
pub trait FlagStore: Send + Sync {
    /// Flag `key` in `env` and its version; `None` when it was never changed.
    async fn flag(&self, key: &str, env: &str) -> Result<Option<(FlagState, i64)>>;
    /// Only the percentage of flag `key` in `env` (what evaluation needs, without reading the
    /// re-enable's evidence); `None` when it was never changed.
    async fn flag_percentage(&self, key: &str, env: &str) -> Result<Option<u8>>;
    /// Every flag ever changed, by key then environment.
    async fn flags(&self) -> Result<Vec<(FlagState, i64)>>;
    /// Writes `flag`: new when `read_version` is `None`, else only if still at that version
    /// (`Conflict` when someone changed or created it meanwhile); the new version. Fenced.
    async fn put_flag(&self, flag: &FlagState, read_version: Option<i64>) -> Result<i64>;
}

/// Release groups and their runs; a run is changed by compare-and-set on its version.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Stores a new group; `Conflict` when the name is taken.
    async fn create_release_group(&self, group: &backstop_core::group::ReleaseGroup) -> Result<()>;
    /// The group named `name`; `NotFound` when there is none.
    async fn release_group(&self, name: &str) -> Result<backstop_core::group::ReleaseGroup>;
    /// Every group, by name.
    async fn release_groups(&self) -> Result<Vec<backstop_core::group::ReleaseGroup>>;
    /// Stores a new run; its version is 1.
    async fn create_group_run(&self, run: &backstop_core::group::GroupRun) -> Result<()>;
    /// The run and its version; `NotFound` when there is none.
    async fn group_run(&self, id: &str) -> Result<(backstop_core::group::GroupRun, i64)>;
    /// Runs, oldest first: those still moving (progressing or recovering), or with `all` every
    /// one (of `group` when given).
    async fn group_runs(
        &self,
        all: bool,
        group: Option<&str>,
    ) -> Result<Vec<(backstop_core::group::GroupRun, i64)>>;
    /// Writes `run` if it is still at `read_version` (`Conflict` when someone changed it
    /// meanwhile); the new version. Fenced like every write of a lease's work.
    async fn update_group_run(
        &self,
        run: &backstop_core::group::GroupRun,
        read_version: i64,
    ) -> Result<i64>;
}

/// Ships (a release through its service's waves); a ship is changed by compare-and-set on its
/// version.
#[async_trait]
pub trait ShipStore: Send + Sync {
    /// Stores a new ship; its version is 1.
    async fn create_ship(&self, ship: &backstop_core::ship::Ship) -> Result<()>;
    /// The ship and its version; `NotFound` when there is none.
    async fn ship(&self, id: &str) -> Result<(backstop_core::ship::Ship, i64)>;
    /// Ships, oldest first: those still moving (shipping or rolling back), or with `all` every
    /// one (of `service` when given).
    async fn ships(
        &self,
        all: bool,
        service: Option<&str>,
    ) -> Result<Vec<(backstop_core::ship::Ship, i64)>>;
    /// Writes `ship` if it is still at `read_version` (`Conflict` when someone changed it
    /// meanwhile); the new version. Fenced like every write of a lease's work.
    async fn update_ship(&self, ship: &backstop_core::ship::Ship, read_version: i64)
    -> Result<i64>;
}

/// Alerts received from monitoring, one per firing.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Stores a firing seen for the first time: true; false (and nothing written) when it is
    /// already stored (a resend).
    async fn insert_alert(&self, alert: &backstop_core::alert::AlertRecord) -> Result<bool>;
    /// The alert `id`; `NotFound` when there is none.
    async fn alert(&self, id: &str) -> Result<backstop_core::alert::AlertRecord>;
    /// Replaces the stored alert (by id).
    async fn update_alert(&self, alert: &backstop_core::alert::AlertRecord) -> Result<()>;
    /// The latest `limit` alerts, newest first.
    async fn alerts(&self, limit: i64) -> Result<Vec<backstop_core::alert::AlertRecord>>;
    /// Alerts whose rollback is pending (held for an acknowledgement, or due now), oldest
    /// first.
    async fn held_alerts(&self) -> Result<Vec<backstop_core::alert::AlertRecord>>;
}

/// The last ping of each heartbeat.
#[async_trait]
pub trait HeartbeatStore: Send + Sync {
    /// Records a ping of `name` by `by` at `at`; the heartbeat as it is now.
    async fn beat(
        &self,
        name: &str,
        by: &str,
        at: Millis,
    ) -> Result<backstop_core::heartbeat::Beat>;
    /// Every heartbeat that ever pinged, by name.
    async fn heartbeats(&self) -> Result<Vec<backstop_core::heartbeat::Beat>>;
}

/// What people said verdicts really were.
#[async_trait]
pub trait LabelStore: Send + Sync {
    /// Stores `label`, replacing the rollout's earlier one.
    async fn set_label(&self, label: &backstop_core::label::VerdictLabel) -> Result<()>;
    /// The labels of `service` (every service with `None`), oldest first.
    async fn labels(
        &self,
        service: Option<&str>,
    ) -> Result<Vec<backstop_core::label::VerdictLabel>>;
}

/// Upper bounds (seconds) of the time-to-detect and time-to-restore histograms: seconds, the
/// range Backstop works in, up to the half hour peers need.
pub const TIME_BUCKETS_S: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// A histogram counted by the database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurationCounts {
    pub count: u64,
    pub sum_s: f64,
    /// How many took at most each bound of [`TIME_BUCKETS_S`] (cumulative).
    pub at_most: Vec<u64>,
}

/// The decisions Backstop made, counted (what `/metrics` reports).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecisionCounts {
    /// (phase, rollouts).
    pub rollouts_by_phase: Vec<(String, i64)>,
    /// (judge, verdict, rollouts) of decided rollouts, from each one's last report.
    pub verdicts: Vec<(String, String, i64)>,
    /// (trigger, status, recoveries).
    pub recoveries: Vec<(String, String, i64)>,
    pub breaker_trips: i64,
    pub sla_breaches: i64,
    /// First canary request → failing verdict.
    pub time_to_detect: DurationCounts,
    /// First canary request → traffic back on the last known good.
    pub time_to_restore: DurationCounts,
    /// (phase, release group runs).
    pub group_runs_by_phase: Vec<(String, i64)>,
    /// (phase, ships).
    pub ships_by_phase: Vec<(String, i64)>,
    /// (action, alerts received): what each firing started.
    pub alerts_by_action: Vec<(String, i64)>,
}

/// Counts for `/metrics`.
#[async_trait]
pub trait MetricsStore: Send + Sync {
    async fn decision_counts(&self) -> Result<DecisionCounts>;
}
