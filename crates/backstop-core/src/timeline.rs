//! A rollout's key moments, read once from its events: what the API shows, the quickstart
//! prints, and drills and the controller measure against their objectives.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::event::EventKind;
use crate::model::{Event, Rollout};

/// When the first event of `kind` happened.
pub fn first_at(events: &[Event], kind: EventKind) -> Option<Millis> {
    events.iter().find(|e| e.kind == kind).map(|e| e.at_ms)
}

/// Key moments of a rollout and the durations between them.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema, Default)]
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
        let at = |kind| first_at(events, kind);
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

    /// When users first met the new version: its first request, else when the canary started
    /// (a source without per-request data), else when the rollout was created.
    pub fn exposed_at_ms(events: &[Event], r: &Rollout) -> Millis {
        first_at(events, EventKind::CanaryFirstRequest)
            .or_else(|| first_at(events, EventKind::CanaryStarted))
            .unwrap_or(r.created_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Phase;

    use crate::fixtures::event;

    fn rollout() -> Rollout {
        Rollout {
            created_at_ms: 100,
            ..crate::fixtures::rollout(Phase::Recovered)
        }
    }

    #[test]
    fn key_moments_and_durations_come_from_the_first_event_of_each_kind() {
        let events = [
            event(200, EventKind::CanaryStarted),
            event(300, EventKind::CanaryFirstRequest),
            event(900, EventKind::RolloutFailed),
            event(950, EventKind::RecoveryStarted),
            event(1_400, EventKind::TrafficRestored),
            event(1_500, EventKind::TrafficRestored),
        ];
        let t = Timeline::from_events(&rollout(), &events);
        assert_eq!(t.started_at_ms, 100);
        assert_eq!(t.time_to_detect_ms, Some(600));
        assert_eq!(t.time_to_restore_ms, Some(1_100));
        assert_eq!(t.rollback_started_at_ms, Some(950));
        assert_eq!(t.promoted_at_ms, None);
        assert_eq!(Timeline::exposed_at_ms(&events, &rollout()), 300);
        assert_eq!(Timeline::exposed_at_ms(&events[..1], &rollout()), 200);
        assert_eq!(Timeline::exposed_at_ms(&[], &rollout()), 100);
    }
}
