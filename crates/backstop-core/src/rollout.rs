//! The rollout state machine's decisions, as pure functions of stored state, the clock and the
//! judge's latest decision. The controller persists whatever these return before acting on it.

use std::time::Duration;

use backstop_judge::Decision;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::duration::{DurationString, serde_option_duration};

/// One canary step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Percentage of traffic sent to the new version, above 0 and at most 100.
    #[schemars(range(max = 100.0), extend("exclusiveMinimum" = 0))]
    pub weight: f64,
    /// Minimum time at this weight before the next step (required on every step but the last).
    #[serde(
        rename = "for",
        default,
        with = "serde_option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub hold: Option<Duration>,
}

impl Step {
    /// The default canary steps: 10 % for 30s, 50 % for 30s, 100 %.
    #[must_use]
    pub fn default_canary() -> Vec<Step> {
        vec![
            Step {
                weight: 10.0,
                hold: Some(Duration::from_secs(30)),
            },
            Step {
                weight: 50.0,
                hold: Some(Duration::from_secs(30)),
            },
            Step {
                weight: 100.0,
                hold: None,
            },
        ]
    }

    /// The single step of a strategy that moves all traffic at once.
    #[must_use]
    pub fn all_at_once() -> Vec<Step> {
        vec![Step {
            weight: 100.0,
            hold: None,
        }]
    }
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
    if held < step.hold.map_or(0, |d| d.as_millis() as Millis) {
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
        // 10 % for 30s, 50 % for 30s, 100 %.
        Step::default_canary()
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
            hold: None,
        }];
        assert_eq!(decide(&s, 0, 5, 5, Decision::Continue), Next::Promote);
    }

    #[test]
    fn a_stale_step_index_promotes_rather_than_panics() {
        assert_eq!(decide(&steps(), 7, 0, 0, Decision::Continue), Next::Promote);
    }
}
