//! The records this crate's unit tests start from; a test overrides the fields it is about.

use crate::Millis;
use crate::event::EventKind;
use crate::model::{BreakerTrip, Event, Phase, Rollout};

/// Rollout `r1` of `svc@v2` in `svc/prod`, created at 0, its canary running at 10%.
pub(crate) fn rollout(phase: Phase) -> Rollout {
    Rollout {
        id: "r1".into(),
        service: "svc".into(),
        env: "prod".into(),
        from_release_id: Some("svc@v1".into()),
        to_release_id: "svc@v2".into(),
        phase,
        step_index: 0,
        step_started_at_ms: Some(0),
        canary_weight: 10.0,
        canary_instance_id: Some("i-canary".into()),
        created_at_ms: 0,
        updated_at_ms: 0,
        actor: "ci".into(),
        reason: None,
        verdict: None,
        severity: None,
        escalation_deadline_ms: None,
        acknowledged_by: None,
    }
}

/// An event of rollout `r1` with no detail.
pub(crate) fn event(at_ms: Millis, kind: EventKind) -> Event {
    Event {
        at_ms,
        rollout_id: "r1".into(),
        kind,
        detail: serde_json::json!({}),
    }
}

/// Open trip `t1` of `scope`, tripped at 0.
pub(crate) fn trip(scope: &str) -> BreakerTrip {
    BreakerTrip {
        id: "t1".into(),
        scope: scope.parse().expect("scope"),
        tripped_at_ms: 0,
        failures: serde_json::json!([]),
        reset_at_ms: None,
        reset_by: None,
        reset_reason: None,
    }
}
