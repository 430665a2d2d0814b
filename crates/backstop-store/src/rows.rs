//! What both backends share: reading a row into a domain record, JSON text columns, and the
//! mapping of sqlx errors to [`StoreError`]. The SQL differs per backend; the shape of a stored
//! record does not, so each `*_from` reader is written once here, for any backend's row.
//!
//! JSON is stored as text on both backends (not `jsonb`): the bytes written are the bytes read
//! back, so an audit record's evidence is stored exactly as it was hashed, and a database can be
//! copied from one backend to the other unchanged.

use std::str::FromStr;

use backstop_core::access::TokenRecord;
use backstop_core::approval::Approval;
use backstop_core::audit::{AuditHead, AuditRecord};
use backstop_core::drill::Drill;
use backstop_core::flag::FlagState;
use backstop_core::heartbeat::Beat;
use backstop_core::incident::Incident;
use backstop_core::label::VerdictLabel;
use backstop_core::model::{
    BreakerTrip, EnvironmentState, Event, Freeze, InstanceRecord, Lease, Phase, Recovery,
    RecoveryStep, Release, ReleaseStatus, ReplicaRecord, Rollout, RoutedCommand, StepStatus,
};
use backstop_core::runbook_run::RunbookRun;
use backstop_core::snapshot::{ConfigSnapshot, RolloutSafeguards};
use backstop_judge::Interval;
use sqlx::{Decode, Postgres, Row, Sqlite, Type};

use crate::{Result, StoreError};

/// A column value either backend can decode.
pub(crate) trait Column:
    Sized + for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Column for T where
    T: Sized
        + for<'r> Decode<'r, Sqlite>
        + Type<Sqlite>
        + for<'r> Decode<'r, Postgres>
        + Type<Postgres>
{
}

/// A row of either backend, read column by column.
pub(crate) trait Columns {
    fn col<T: Column>(&self, name: &str) -> Result<T>;
}

impl Columns for sqlx::sqlite::SqliteRow {
    fn col<T: Column>(&self, name: &str) -> Result<T> {
        Ok(self.try_get(name)?)
    }
}

impl Columns for sqlx::postgres::PgRow {
    fn col<T: Column>(&self, name: &str) -> Result<T> {
        Ok(self.try_get(name)?)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound("record".into()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            _ => StoreError::Database(e),
        }
    }
}

/// Maps a unique violation to a `Conflict` saying `message()` (what the caller can do about
/// it), any other error as usual.
pub(crate) fn conflict_as<E: Into<StoreError>>(
    message: impl FnOnce() -> String,
) -> impl FnOnce(E) -> StoreError {
    |e| match e.into() {
        StoreError::Conflict(_) => StoreError::Conflict(message()),
        other => other,
    }
}

/// `Ok` when a statement changed a row (`rows_affected` > 0), `missing()` when it matched none.
pub(crate) fn changed_a_row(
    rows_affected: u64,
    missing: impl FnOnce() -> StoreError,
) -> Result<()> {
    if rows_affected == 0 {
        return Err(missing());
    }
    Ok(())
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("domain types always serialize")
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A JSON text column; `Corrupt` naming it as `what` when it does not parse.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    row: &impl Columns,
    column: &str,
    what: &str,
) -> Result<T> {
    parse(&row.col::<String>(column)?, what)
}

/// A nullable JSON text column, as [`json_column`].
pub(crate) fn optional_json_column<T: serde::de::DeserializeOwned>(
    row: &impl Columns,
    column: &str,
    what: &str,
) -> Result<Option<T>> {
    row.col::<Option<String>>(column)?
        .map(|text| parse(&text, what))
        .transpose()
}

/// A text column holding one of a type's fixed values; `Corrupt` naming the column otherwise.
pub(crate) fn parse_column<T>(row: &impl Columns, table: &str, column: &str) -> Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    row.col::<String>(column)?
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("{table}.{column}: {e}")))
}

// ---- releases -------------------------------------------------------------------------------

pub(crate) fn release_status(status: ReleaseStatus) -> &'static str {
    match status {
        ReleaseStatus::Ok => "ok",
        ReleaseStatus::Bad => "bad",
    }
}

pub(crate) fn release_from(row: &impl Columns) -> Result<Release> {
    Ok(from_row!(row => Release {
        id, service, version, sha256, bad_reason, created_at_ms;
        artifact: json_column(row, "artifact", "release.artifact")?,
        env: json_column(row, "env", "release.env")?,
        secrets: json_column(row, "secrets", "release.secrets")?,
        status: match row.col::<String>("status")?.as_str() {
            "bad" => ReleaseStatus::Bad,
            _ => ReleaseStatus::Ok,
        },
        schema: optional_json_column(row, "schema_range", "release.schema_range")?,
    }))
}

// ---- replicas --------------------------------------------------------------------------------

pub(crate) fn replica_from(row: &impl Columns) -> Result<ReplicaRecord> {
    Ok(from_row!(row => ReplicaRecord {
        id, address, host, started_at_ms, last_heartbeat_ms;
        pid: u32::try_from(row.col::<i64>("pid")?)
            .map_err(|e| StoreError::Corrupt(format!("replicas.pid: {e}")))?,
    }))
}

pub(crate) fn lease_from(row: &impl Columns) -> Result<Lease> {
    Ok(from_row!(row => Lease { key, holder, epoch, expires_at_ms }))
}

pub(crate) fn command_from(row: &impl Columns) -> Result<RoutedCommand> {
    Ok(from_row!(row => RoutedCommand {
        id, lease_key, created_at_ms, claimed_by, answered_at_ms;
        body: json_column(row, "body", "commands.body")?,
        answer: optional_json_column(row, "answer", "commands.answer")?,
    }))
}

// ---- environments ---------------------------------------------------------------------------

pub(crate) fn env_from(row: &impl Columns) -> Result<EnvironmentState> {
    Ok(from_row!(row => EnvironmentState {
        service, env, lkg_release_id, stable_instance_id, previous_lkg_release_id,
    }))
}

pub(crate) fn instance_from(row: &impl Columns) -> Result<InstanceRecord> {
    Ok(from_row!(row => InstanceRecord {
        id, service, env, release_id, started_at_ms;
        pid: u32::try_from(row.col::<i64>("pid")?)
            .map_err(|e| StoreError::Corrupt(format!("instances.pid: {e}")))?,
        port: u16::try_from(row.col::<i64>("port")?)
            .map_err(|e| StoreError::Corrupt(format!("instances.port: {e}")))?,
        state: parse_column(row, "instances", "state")?,
    }))
}

// ---- rollouts -------------------------------------------------------------------------------

/// An interval as stored (the judge's JSON writes the infinite latency bound as `null`).
pub(crate) fn interval_json(i: &Interval) -> String {
    json(i)
}

pub(crate) fn interval_from(row: &impl Columns) -> Result<Interval> {
    json_column(row, "interval", "rollout interval")
}

pub(crate) fn rollout_from(row: &impl Columns) -> Result<Rollout> {
    let phase: String = row.col("phase")?;
    Ok(from_row!(row => Rollout {
        id, service, env, from_release_id, to_release_id, step_index, step_started_at_ms,
        canary_weight, canary_instance_id, created_at_ms, updated_at_ms, actor, reason,
        escalation_deadline_ms, acknowledged_by;
        phase: Phase::parse(&phase)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown phase {phase:?}")))?,
        verdict: optional_json_column(row, "verdict", "rollout.verdict")?,
        severity: row
            .col::<Option<String>>("severity")?
            .map(|s| parse(&format!("\"{s}\""), "rollout.severity"))
            .transpose()?,
    }))
}

pub(crate) fn event_from(row: &impl Columns) -> Result<Event> {
    Ok(from_row!(row => Event {
        at_ms, rollout_id;
        kind: parse_column(row, "events", "kind")?,
        detail: json_column(row, "detail", "event detail")?,
    }))
}

// ---- recoveries -----------------------------------------------------------------------------

pub(crate) fn step_from(row: &impl Columns) -> Result<RecoveryStep> {
    let status: String = row.col("status")?;
    Ok(from_row!(row => RecoveryStep {
        idempotency_key, attempts, started_at_ms, finished_at_ms;
        index: row.col("idx")?,
        step: json_column(row, "step", "recovery step")?,
        status: StepStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown step status {status:?}")))?,
        outcome: optional_json_column(row, "outcome", "step outcome")?,
    }))
}

/// A recovery row with its steps (read separately, ordered by index).
pub(crate) fn recovery_from(row: &impl Columns, steps: Vec<RecoveryStep>) -> Result<Recovery> {
    Ok(from_row!(row => Recovery {
        id, rollout_id, service, env, actor, trigger, reason, created_at_ms, finished_at_ms;
        status: parse_column(row, "recoveries", "status")?,
        steps,
        validation: optional_json_column(row, "validation", "recoveries.validation")?,
        postmortem: optional_json_column(row, "postmortem", "recoveries.postmortem")?,
    }))
}

// ---- the rest -------------------------------------------------------------------------------

pub(crate) fn trip_from(row: &impl Columns) -> Result<BreakerTrip> {
    Ok(from_row!(row => BreakerTrip {
        id, tripped_at_ms, reset_at_ms, reset_by, reset_reason;
        scope: parse_column(row, "breaker_trips", "scope")?,
        failures: json_column(row, "failures", "breaker failures")?,
    }))
}

pub(crate) fn approval_from(row: &impl Columns) -> Result<Approval> {
    Ok(from_row!(row => Approval {
        id, service, env, requester, reason, created_at_ms, expires_at_ms, decided_by,
        decided_at_ms, note;
        kind: parse_column(row, "approvals", "kind")?,
        status: parse_column(row, "approvals", "status")?,
        request: json_column(row, "request", "approvals.request")?,
        result: optional_json_column(row, "result", "approvals.result")?,
    }))
}

/// An incident is stored whole in its `record` column, with its version.
pub(crate) fn incident_from(row: &impl Columns) -> Result<(Incident, i64)> {
    Ok((
        json_column(row, "record", "incidents.record")?,
        row.col("version")?,
    ))
}

/// A runbook run is stored whole in its `record` column, with its version.
pub(crate) fn runbook_run_from(row: &impl Columns) -> Result<(RunbookRun, i64)> {
    Ok((
        json_column(row, "record", "runbook_runs.record")?,
        row.col("version")?,
    ))
}

pub(crate) fn beat_from(row: &impl Columns) -> Result<Beat> {
    Ok(from_row!(row => Beat {
        name, last_at_ms, last_by, count;
    }))
}

pub(crate) fn label_from(row: &impl Columns) -> Result<VerdictLabel> {
    Ok(from_row!(row => VerdictLabel {
        rollout_id, service, env, at_ms, note;
        label: parse_column(row, "verdict_labels", "label")?,
        by: row.col("by_actor")?,
    }))
}

pub(crate) fn token_from(row: &impl Columns) -> Result<TokenRecord> {
    Ok(from_row!(row => TokenRecord {
        name, env, hash, created_at_ms, created_by, expires_at_ms, revoked_at_ms, revoked_by;
        role: parse_column(row, "tokens", "role")?,
    }))
}

pub(crate) fn freeze_from(row: &impl Columns) -> Result<Freeze> {
    Ok(from_row!(row => Freeze {
        id, service, env, reason, actor, started_at_ms, until_ms, ended_at_ms, ended_by, end_reason,
    }))
}

pub(crate) fn snapshot_from(row: &impl Columns) -> Result<ConfigSnapshot> {
    Ok(from_row!(row => ConfigSnapshot {
        service, env, version, manifest, created_at_ms, actor, reason, rollout_id,
    }))
}

pub(crate) fn safeguards_from(row: &impl Columns) -> Result<RolloutSafeguards> {
    Ok(from_row!(row => RolloutSafeguards {
        rollout_id, config_snapshot, captured_at_ms;
        baseline: optional_json_column(row, "baseline", "rollout baseline")?,
    }))
}

/// A drill is stored whole in its `record` column; the other columns index it.
pub(crate) fn drill_from(row: &impl Columns) -> Result<Drill> {
    json_column(row, "record", "drill")
}

pub(crate) fn audit_from(row: &impl Columns) -> Result<AuditRecord> {
    Ok(from_row!(row => AuditRecord {
        seq, at_ms, actor, action, target, trigger, prev_hash, hash;
        evidence: json_column(row, "evidence", "audit.evidence")?,
    }))
}

/// The audit head row. `mac` and `broken` are read as absent from a database older than
/// them (opened read-only, so not migrated).
pub(crate) fn head_from(row: &impl Columns) -> Result<AuditHead> {
    Ok(AuditHead {
        seq: row.col("seq")?,
        hash: row.col("hash")?,
        mac: row.col("mac").unwrap_or(None),
        broken: row.col("broken").unwrap_or(None),
    })
}

pub(crate) fn flag_from(row: &impl Columns) -> Result<(FlagState, i64)> {
    Ok((
        json_column(row, "record", "flags.record")?,
        row.col("version")?,
    ))
}

pub(crate) fn flag_percentage_from(row: &impl Columns) -> Result<u8> {
    let p: i64 = row.col("percentage")?;
    Ok(u8::try_from(p.clamp(0, 100)).unwrap_or(0))
}

pub(crate) fn release_group_from(row: &impl Columns) -> Result<backstop_core::group::ReleaseGroup> {
    json_column(row, "record", "release_groups.record")
}

pub(crate) fn group_run_from(row: &impl Columns) -> Result<(backstop_core::group::GroupRun, i64)> {
    Ok((
        json_column(row, "record", "group_runs.record")?,
        row.col("version")?,
    ))
}

pub(crate) fn ship_from(row: &impl Columns) -> Result<(backstop_core::ship::Ship, i64)> {
    Ok((
        json_column(row, "record", "ships.record")?,
        row.col("version")?,
    ))
}

pub(crate) fn alert_from(row: &impl Columns) -> Result<backstop_core::alert::AlertRecord> {
    json_column(row, "record", "alerts.record")
}
