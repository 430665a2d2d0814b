//! The rollout state machine's decisions, as pure functions of stored state, the clock and the
//! judge's latest decision. The controller persists whatever these return before acting on it.

use backstop_judge::Decision;
use serde::{Deserialize, Serialize};

use crate::Millis;

/// One canary step: the new version's share of traffic and how long to hold it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub weight: f64,
    pub hold_ms: Option<Millis>,
}

/// What the controller should do next with a progressing rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Keep the current weight and ask again at the next interval.
    Wait,
    /// Move to step `index`, sending `weight` percent of traffic to the new version.
    Advance { index: usize, weight: f64 },
    /// The last step held without a failure: the new version becomes the last known good.
    Promote,
    /// Roll back.
    Fail { reason: String },
    /// Hold the current weight and call a human.
    Pause { reason: String },
}

/// Decides the next move of a progressing rollout.
///
/// A `Fail` from the judge always wins, even when the step's time is up: evidence of harm is
/// never outrun by the schedule.
pub fn decide(
    steps: &[Step],
    step_index: usize,
    step_started_at: Millis,
    now: Millis,
    judge: Decision,
) -> Next {
    match judge {
        Decision::Fail => {
            return Next::Fail {
                reason: "the judge found the new version worse than the baseline".into(),
            };
        }
        Decision::Inconclusive => {
            return Next::Pause {
                reason: "the judge could not attribute the degradation to the new version (both arms moved); a person must decide".into(),
            };
        }
        Decision::Continue => {}
    }
    let Some(step) = steps.get(step_index) else {
        return Next::Promote;
    };
    let held = now.saturating_sub(step_started_at);
    if held < step.hold_ms.unwrap_or(0) {
        return Next::Wait;
    }
    match steps.get(step_index + 1) {
        Some(next) => Next::Advance {
            index: step_index + 1,
            weight: next.weight,
        },
        None => Next::Promote,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> Vec<Step> {
        vec![
            Step {
                weight: 10.0,
                hold_ms: Some(30_000),
            },
            Step {
                weight: 50.0,
                hold_ms: Some(30_000),
            },
            Step {
                weight: 100.0,
                hold_ms: None,
            },
        ]
    }

    #[test]
    fn holds_each_step_for_its_time() {
        assert_eq!(
            decide(&steps(), 0, 1_000, 30_999, Decision::Continue),
            Next::Wait
        );
        assert_eq!(
            decide(&steps(), 0, 1_000, 31_000, Decision::Continue),
            Next::Advance {
                index: 1,
                weight: 50.0
            }
        );
        assert_eq!(
            decide(&steps(), 1, 0, 30_000, Decision::Continue),
            Next::Advance {
                index: 2,
                weight: 100.0
            }
        );
        assert_eq!(decide(&steps(), 2, 0, 0, Decision::Continue), Next::Promote);
    }

    #[test]
    fn a_failure_wins_over_the_schedule() {
        assert!(matches!(
            decide(&steps(), 2, 0, 10_000_000, Decision::Fail),
            Next::Fail { .. }
        ));
        assert!(matches!(
            decide(&steps(), 0, 0, 0, Decision::Inconclusive),
            Next::Pause { .. }
        ));
    }

    #[test]
    fn all_at_once_promotes_at_once() {
        let s = [Step {
            weight: 100.0,
            hold_ms: None,
        }];
        assert_eq!(decide(&s, 0, 5, 5, Decision::Continue), Next::Promote);
    }

    #[test]
    fn a_stale_step_index_promotes_rather_than_panics() {
        assert_eq!(decide(&steps(), 7, 0, 0, Decision::Continue), Next::Promote);
    }
}
