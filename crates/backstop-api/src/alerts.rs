//! `/api/v1/alerts`: alerts from monitoring as triggers (Alertmanager's webhook).

use std::collections::BTreeMap;

use backstop_core::alert::AlertRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What Alertmanager POSTs to a `webhook_configs` receiver (payload version 4). Fields
/// Backstop does not use are accepted and ignored, so newer Alertmanagers keep working.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerPayload {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub receiver: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    pub alerts: Vec<AlertmanagerAlert>,
}

/// One alert of the payload.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerAlert {
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default)]
    pub generator_url: Option<String>,
    /// Alertmanager's fingerprint of the label set (older senders may omit it: the labels are
    /// hashed instead).
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// The answer: each alert of the payload, as recorded, with what was done about it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertsReceived {
    pub alerts: Vec<AlertRecord>,
}

/// `POST /api/v1/alerts/{id}/acknowledge`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeAlert {
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
}

/// What PagerDuty POSTs to a v3 webhook subscription (`incident.*` events). Fields Backstop does
/// not use are accepted and ignored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PagerDutyWebhook {
    pub event: PagerDutyEvent,
}

/// One event of a PagerDuty v3 webhook.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PagerDutyEvent {
    #[serde(default)]
    pub id: Option<String>,
    /// `incident.triggered`, `incident.resolved`, …; others are recorded as not taken.
    pub event_type: String,
    #[serde(default)]
    pub occurred_at: Option<String>,
    pub data: PagerDutyIncident,
}

/// The incident an event is about.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PagerDutyIncident {
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    /// `high` or `low`.
    #[serde(default)]
    pub urgency: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    /// The PagerDuty service (its `id` is what `alerts.pagerduty` maps to an environment).
    pub service: PagerDutyRef,
    #[serde(default)]
    pub priority: Option<PagerDutyRef>,
}

/// A reference to a PagerDuty object.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PagerDutyRef {
    pub id: String,
    #[serde(default)]
    pub summary: Option<String>,
}
