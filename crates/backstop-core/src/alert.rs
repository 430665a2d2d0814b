//! Alerts from the team's own monitoring as triggers: a firing alert whose labels name a service
//! and environment (`service`, `env`) while a release there is new (a rollout under way, or
//! promoted within the service's watch window) starts the service's severity workflow, linked
//! to that release: roll back, hold for a person's acknowledgement (rolled back when the time
//! is up), or notify. Alertmanager sends an alert again while it fires: one firing (one
//! fingerprint from one start) acts once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Millis;
use crate::named::string_enum;
use crate::severity::Severity;

string_enum! {
    /// Whether the alert still fires.
    pub enum AlertStatus {
        Firing = "firing",
        Resolved = "resolved",
    }
}

string_enum! {
    /// What Backstop did about an alert.
    pub enum AlertAction {
        /// Nothing: no `service`/`env` labels, an unknown service, or no new release there.
        Ignored = "ignored",
        /// Recorded and sent to the service's webhooks (its severity policy says notify).
        Notified = "notified",
        /// Waiting for a person's acknowledgement until `deadline_ms`, rolled back after.
        Held = "held",
        /// Its rollback is due now (the policy says roll back); `rolled_back` follows.
        RollingBack = "rolling_back",
        /// A person took it over before the deadline; nothing is rolled back.
        Acknowledged = "acknowledged",
        /// The release was rolled back (`recovery_id`).
        RolledBack = "rolled_back",
        /// A rollback was asked for and refused (e.g. by the schema); `detail` says why.
        Refused = "refused",
    }
}

/// One firing of one alert (a fingerprint from one `startsAt`), and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertRecord {
    /// `alt-` and 16 hex digits of sha256(fingerprint, startsAt): stable across resends.
    pub id: String,
    pub name: String,
    pub fingerprint: String,
    pub starts_at: String,
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    pub summary: Option<String>,
    pub service: Option<String>,
    pub env: Option<String>,
    pub severity: Severity,
    /// The release it was linked to, and its rollout.
    pub release_id: Option<String>,
    pub rollout_id: Option<String>,
    pub action: AlertAction,
    /// Why, in a sentence.
    pub detail: String,
    pub recovery_id: Option<String>,
    /// For a held alert: when it is rolled back unless acknowledged.
    pub deadline_ms: Option<Millis>,
    pub acknowledged_by: Option<String>,
    pub received_at_ms: Millis,
    pub resolved_at_ms: Option<Millis>,
}

/// The id of one firing: the same for every resend of it.
pub fn alert_id(fingerprint: &str, starts_at: &str) -> String {
    format!("alt-{}", short_hash(&format!("{fingerprint}\n{starts_at}")))
}

/// A fingerprint of a label set, for senders that give none (Alertmanager always does).
pub fn labels_fingerprint(labels: &BTreeMap<String, String>) -> String {
    let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    short_hash(&text.join("\n"))
}

/// 16 hex digits of the sha256 of `text`.
fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// The severity an alert's `severity` label names: `critical`/`page` → critical,
/// `major`/`error`/`high` → major, anything else (or none) → minor.
pub fn severity_of(labels: &BTreeMap<String, String>) -> Severity {
    match labels
        .get("severity")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        Some("critical" | "page") => Severity::Critical,
        Some("major" | "error" | "high") => Severity::Major,
        _ => Severity::Minor,
    }
}

/// Whether a release promoted at `promoted_at_ms` is still in its watch window at `now`.
pub fn in_watch_window(promoted_at_ms: Millis, watch_ms: Millis, now: Millis) -> bool {
    now >= promoted_at_ms && now - promoted_at_ms <= watch_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_firing_has_one_id_and_severity_follows_the_label() {
        assert_eq!(alert_id("abc", "t1"), alert_id("abc", "t1"));
        assert_ne!(alert_id("abc", "t1"), alert_id("abc", "t2"));
        assert_eq!(alert_id("abc", "t1").len(), 20);
        let labels = |s: &str| BTreeMap::from([("severity".to_string(), s.to_string())]);
        assert_eq!(severity_of(&labels("Critical")), Severity::Critical);
        assert_eq!(severity_of(&labels("error")), Severity::Major);
        assert_eq!(severity_of(&labels("warning")), Severity::Minor);
        assert_eq!(severity_of(&BTreeMap::new()), Severity::Minor);
    }

    #[test]
    fn the_watch_window_starts_at_the_promotion() {
        assert!(in_watch_window(1_000, 60_000, 61_000));
        assert!(!in_watch_window(1_000, 60_000, 61_001));
        assert!(!in_watch_window(1_000, 60_000, 999));
    }
}
