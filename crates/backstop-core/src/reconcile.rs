//! What one controller tick does with a stored rollout, decided from its stored state, an open
//! breaker trip covering it and the time, before anything is measured or touched (kube-rs'
//! reconcile → `Action`). The controller executes the action; what it then measures of a
//! progressing rollout is decided by [`crate::rollout::next`].

use crate::Millis;
use crate::model::{BreakerTrip, Phase, Rollout};
use crate::{breaker, severity};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do this tick.
    Wait,
    /// Start the new version and give it its first weight.
    StartCanary,
    /// Take an interval of traffic when one is due and decide with [`crate::rollout::next`].
    Analyse,
    /// An open breaker (trip `trip_id` of `scope`) covers a progressing rollout: pause it
    /// where it is (no rollback).
    PauseForBreaker {
        reason: String,
        trip_id: String,
        scope: breaker::TripScope,
    },
    /// The breaker that paused it was reset: carry on.
    ResumeAfterBreaker,
    /// Held past its acknowledgement deadline: roll it back.
    Escalate { reason: String },
    /// Failed: journal its recovery plan and run it.
    BeginRecovery,
    /// Its recovery is journaled: run what is left of it.
    ContinueRecovery,
}

/// Decides what to do with `r` at `now`, given the open breaker trip covering it, if any.
pub fn act(r: &Rollout, trip: Option<&BreakerTrip>, now: Millis) -> Action {
    match (r.phase, trip) {
        // An open breaker holds progressive rollouts where they are; the rest carry on.
        (Phase::Pending, Some(_)) => Action::Wait,
        (Phase::Progressing, Some(t)) => Action::PauseForBreaker {
            reason: breaker::pause_reason(t),
            trip_id: t.id.clone(),
            scope: t.scope.clone(),
        },
        (Phase::Paused, None) if breaker::paused_by_breaker(r.reason.as_deref()) => {
            Action::ResumeAfterBreaker
        }
        (Phase::Pending, None) => Action::StartCanary,
        (Phase::Progressing, None) => Action::Analyse,
        (Phase::Paused, _) => severity::escalation_due(
            r.escalation_deadline_ms,
            r.acknowledged_by.is_some(),
            r.severity,
            now,
        )
        .map_or(Action::Wait, |reason| Action::Escalate { reason }),
        (Phase::Failed, _) => Action::BeginRecovery,
        (Phase::Recovering, _) => Action::ContinueRecovery,
        (Phase::Promoted | Phase::Recovered, _) => Action::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{rollout, trip};
    use crate::severity::Severity;

    #[test]
    fn each_phase_has_its_action() {
        assert_eq!(act(&rollout(Phase::Pending), None, 0), Action::StartCanary);
        assert_eq!(act(&rollout(Phase::Progressing), None, 0), Action::Analyse);
        assert_eq!(act(&rollout(Phase::Paused), None, 0), Action::Wait);
        assert_eq!(act(&rollout(Phase::Failed), None, 0), Action::BeginRecovery);
        assert_eq!(
            act(&rollout(Phase::Recovering), None, 0),
            Action::ContinueRecovery
        );
        assert_eq!(act(&rollout(Phase::Promoted), None, 0), Action::Wait);
    }

    #[test]
    fn an_open_breaker_pauses_progress_and_its_reset_resumes_it() {
        let t = trip("env:prod");
        assert_eq!(act(&rollout(Phase::Pending), Some(&t), 0), Action::Wait);
        let Action::PauseForBreaker { reason, .. } = act(&rollout(Phase::Progressing), Some(&t), 0)
        else {
            panic!("paused")
        };
        let paused = Rollout {
            reason: Some(reason),
            ..rollout(Phase::Paused)
        };
        assert_eq!(act(&paused, Some(&t), 0), Action::Wait);
        assert_eq!(act(&paused, None, 0), Action::ResumeAfterBreaker);
        // A failed rollout rolls back even under an open breaker.
        assert_eq!(
            act(&rollout(Phase::Failed), Some(&t), 0),
            Action::BeginRecovery
        );
    }

    #[test]
    fn an_acknowledgement_deadline_rolls_back_not_before_and_not_when_acknowledged() {
        let held = Rollout {
            escalation_deadline_ms: Some(10_000),
            severity: Some(Severity::Major),
            ..rollout(Phase::Paused)
        };
        assert_eq!(act(&held, None, 9_999), Action::Wait);
        assert!(matches!(act(&held, None, 10_000), Action::Escalate { .. }));
        let acknowledged = Rollout {
            acknowledged_by: Some("user:alice".into()),
            ..held
        };
        assert_eq!(act(&acknowledged, None, 60_000), Action::Wait);
    }
}
