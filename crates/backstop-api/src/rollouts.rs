//! `/api/v1/rollouts` and `/api/v1/rollback`.

use backstop_core::Millis;
use backstop_core::event::EventKind;
use backstop_core::model::{Event, Recovery, Rollout};
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
    pub reason: String,
    #[serde(default)]
    pub critical: bool,
    #[serde(default)]
    pub override_freeze: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why, in words: recorded in the audit log.
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub service: String,
    pub env: String,
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

/// Key moments of a rollout and the durations between them.
#[derive(Debug, Serialize, Deserialize, ToSchema, Default)]
pub struct Timeline {
    pub started_at_ms: Millis,
    pub first_canary_request_at_ms: Option<Millis>,
    pub verdict_at_ms: Option<Millis>,
    pub rollback_started_at_ms: Option<Millis>,
    pub traffic_restored_at_ms: Option<Millis>,
    pub promoted_at_ms: Option<Millis>,
    /// First canary request → failing verdict.
    pub time_to_detect_ms: Option<Millis>,
    /// First canary request → traffic back on the last known good.
    pub time_to_restore_ms: Option<Millis>,
}

impl Timeline {
    pub fn from_events(r: &Rollout, events: &[Event]) -> Timeline {
        let at = |kind: EventKind| events.iter().find(|e| e.kind == kind).map(|e| e.at_ms);
        let first = at(EventKind::CanaryFirstRequest);
        let verdict = at(EventKind::RolloutFailed);
        let restored = at(EventKind::TrafficRestored);
        Timeline {
            started_at_ms: r.created_at_ms,
            first_canary_request_at_ms: first,
            verdict_at_ms: verdict,
            rollback_started_at_ms: at(EventKind::RecoveryStarted),
            traffic_restored_at_ms: restored,
            promoted_at_ms: at(EventKind::RolloutPromoted),
            time_to_detect_ms: first.zip(verdict).map(|(a, b)| b - a),
            time_to_restore_ms: first.zip(restored).map(|(a, b)| b - a),
        }
    }
}
