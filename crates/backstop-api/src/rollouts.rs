//! `/api/v1/rollouts` and `/api/v1/rollback`.

use backstop_core::model::{Event, Recovery, Rollout};
/// Key moments of a rollout, computed once in core.
pub use backstop_core::timeline::Timeline;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRollout {
    pub service: String,
    pub env: String,
    /// Version of a registered release of the service.
    pub version: String,
    /// A critical change (e.g. a fix-forward): passes the automatic freeze while a recovery is
    /// active in the environment. Needs `reason`; audited.
    #[serde(default)]
    pub critical: bool,
    /// Override scheduled and manual freezes. Needs `reason`; audited; refused in a regulated
    /// environment.
    #[serde(default)]
    pub override_freeze: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// Why, in words: recorded in the audit log (and the reason of any override).
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
    #[serde(default)]
    pub critical: bool,
    #[serde(default)]
    pub override_freeze: bool,
}

/// `POST /api/v1/approvals/{id}/approve`
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// Why, in words (required to review a break-glass rollback).
    #[serde(default)]
    pub note: Option<String>,
}

/// `GET /api/v1/approvals?all=`
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ApprovalQuery {
    /// Also approved, failed, expired and reviewed requests.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why, in words: recorded in the audit log.
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub service: String,
    pub env: String,
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RolloutDetail {
    pub rollout: Rollout,
    pub events: Vec<Event>,
    pub recovery: Option<Recovery>,
    /// Times derived from the events (null until they happen).
    pub timeline: Timeline,
    /// The config snapshot and baseline captured before it started.
    #[serde(default)]
    pub safeguards: Option<backstop_core::snapshot::RolloutSafeguards>,
}

/// `GET /api/v1/rollback/preview?service=&env=`: what a rollback of the environment would undo,
/// before anyone confirms it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RollbackPreviewQuery {
    pub service: String,
    pub env: String,
}

/// What a rollback would undo: the releases taken away, the config files written back, the
/// migrations run down (or why it would be refused), in words and as data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RollbackPreview {
    pub service: String,
    pub env: String,
    /// What serves now, and what would serve after.
    pub from_release: Option<String>,
    pub to_release: Option<String>,
    /// The releases taken away, newest first.
    pub undone: Vec<UndoneRelease>,
    /// Params files and values written back to the target's snapshot (empty: none change).
    #[schema(value_type = Vec<Object>)]
    pub config: Vec<backstop_core::snapshot::Change>,
    /// The schema step: downs to run, or why the way back is refused (absent without
    /// migrations or a declared schema range).
    #[schema(value_type = Option<Object>)]
    pub schema: Option<backstop_core::schema::SchemaDecision>,
    /// Whether the rollback would be refused (the schema has no safe way back).
    pub refused: bool,
    /// The same, one line each, for people.
    pub summary: Vec<String>,
}

/// A release a rollback would take away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UndoneRelease {
    pub release: String,
    pub rollout_id: String,
    /// `promoted` (serving now) or the phase of a rollout under way.
    pub phase: String,
    pub started_at_ms: i64,
    pub promoted_at_ms: Option<i64>,
    /// Who started its rollout, and why when they said.
    pub started_by: String,
    pub started_reason: Option<String>,
    /// Incidents in the environment opened since it went out (it may be their fix, or their
    /// cause).
    pub incidents: Vec<String>,
}
