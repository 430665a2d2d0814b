//! `/api/v1/incidents`.

use backstop_core::Millis;
use backstop_core::incident::Incident;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/incidents`
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenIncident {
    pub service: String,
    pub env: String,
    /// `SEV1` (worst) to `SEV5`.
    pub severity: String,
    pub title: String,
}

/// `POST /api/v1/incidents/{id}/status`
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStatus {
    /// `identified`, `monitoring` or `resolved` (forward only).
    pub status: String,
    #[serde(default)]
    pub note: String,
}

/// `POST /api/v1/incidents/{id}/roles`
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRole {
    /// `commander`, `operations`, `communications` or `scribe`.
    pub role: String,
    /// Who takes it (e.g. `token:alice`, or a name).
    pub person: String,
}

/// `POST /api/v1/incidents/{id}/notes` and `/updates`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentText {
    pub text: String,
}

/// `GET /api/v1/incidents?all=`
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct IncidentQuery {
    #[serde(default)]
    pub all: bool,
}

/// One line of an incident's timeline: what people did and what the machine did, in time order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TimelineItem {
    pub at_ms: Millis,
    /// `incident` (people, and the daemon for the incident), `rollout` (its events),
    /// `recovery` (its journaled steps) or `runbook` (runs' steps and deviations, with reasons).
    pub source: String,
    pub actor: String,
    pub kind: String,
    pub text: String,
}

/// `GET /api/v1/incidents/{id}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IncidentDetail {
    pub incident: Incident,
    pub timeline: Vec<TimelineItem>,
}
