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
