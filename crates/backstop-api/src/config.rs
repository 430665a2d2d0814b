//! `/api/v1/config/{service}/{env}/…`: config snapshots, diffs and restores.

use backstop_core::snapshot::{Change, ConfigSnapshot};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TakeSnapshot {
    /// Why, in words: recorded with the snapshot and in the audit log.
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SnapshotTaken {
    pub snapshot: ConfigSnapshot,
    /// False when nothing changed since the latest snapshot (its version is reused).
    pub new_version: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The snapshot version to put back.
    pub snapshot: i64,
    /// Why, in words: recorded in the audit log.
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
    /// Only say what would be written.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DiffQuery {
    /// Snapshot version to compare from (default: the latest).
    pub from: Option<i64>,
    /// Snapshot version to compare to (default: the live files now).
    pub to: Option<i64>,
}

/// The differences between two states of an environment's parameters.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigDiff {
    pub service: String,
    pub env: String,
    /// `snapshot N`.
    pub from: String,
    /// `snapshot N` or `live`.
    pub to: String,
    pub changes: Vec<Change>,
}

/// What a restore wrote (or, as a dry run, would write).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RestoreOutcome {
    pub service: String,
    pub env: String,
    pub snapshot: i64,
    /// False for a dry run.
    pub applied: bool,
    /// Files written back (content or mode differed, or they were gone).
    pub written: Vec<String>,
    /// Files removed (absent from the snapshot, inside a snapshotted folder or listed missing).
    pub removed: Vec<String>,
    /// Files that already matched.
    pub unchanged: usize,
    /// Env values and secrets that differ from the snapshot: they come from backstop.yaml and
    /// the secret sources, so a restore cannot write them; change them there.
    pub not_restorable: Vec<Change>,
}
