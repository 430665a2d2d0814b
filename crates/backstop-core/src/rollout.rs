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
    /// The judge failed the new version: its severity workflow decides what follows.
    Fail { reason: String },
    /// Hold the current weight and call a human.
    Pause { reason: String },
    /// The environment is degraded (not the new version's doing): keep the weight and start the
    /// step's time again, so the step is held in full once the environment is healthy.
    Hold,
    /// The new version stopped answering its health check: fail it at once (the per-rollout
    /// breaker), whatever the traffic statistics say.
    Break { reason: String },
}

/// What the controller observed of a progressing rollout at the end of an analysis interval.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub steps: &'a [Step],
    pub step_index: usize,
    pub step_started_at: Millis,
    /// The judge's decision on the intervals so far.
    pub judge: Decision,
    /// The stable version is far worse than before the rollout.
    pub degraded: bool,
    /// The stable version is down (supervision is restarting it): there is no baseline to
    /// judge against.
    pub baseline_down: bool,
    /// Consecutive failed health checks of the new version.
    pub failed_health_checks: u32,
    /// How many failed checks in a row the per-rollout breaker allows (at least 1).
    pub health_check_limit: u32,
    pub now: Millis,
}

/// Decides the next move of a progressing rollout from what was observed.
///
/// A failing health check breaks first (a partial failure the counts may not show yet); a
/// stable version that is down holds everything else (whatever the verdict: a comparison with a
/// dead baseline proves nothing); a degraded environment holds everything but a failing verdict
/// (a canary worse than the stable version still fails); then [`decide`].
pub fn next(o: &Observation<'_>) -> Next {
    let limit = o.health_check_limit.max(1);
    if o.failed_health_checks >= limit {
        return Next::Break {
            reason: format!(
                "the new version failed {limit} health checks in a row (per-rollout breaker)"
            ),
        };
    }
    if o.baseline_down || (o.degraded && o.judge != Decision::Fail) {
        return Next::Hold;
    }
    decide(o.steps, o.step_index, o.step_started_at, o.now, o.judge)
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

    fn observed(step_index: usize, started: Millis, now: Millis) -> Observation<'static> {
        static STEPS: std::sync::LazyLock<Vec<Step>> = std::sync::LazyLock::new(steps);
        Observation {
            steps: &STEPS,
            step_index,
            step_started_at: started,
            judge: Decision::Continue,
            degraded: false,
            baseline_down: false,
            failed_health_checks: 0,
            health_check_limit: 3,
            now,
        }
    }

    #[test]
    fn a_step_advances_after_its_minimum_time_and_not_before() {
        assert_eq!(next(&observed(0, 1_000, 1_000)), Next::Wait);
        assert_eq!(next(&observed(0, 1_000, 30_999)), Next::Wait);
        assert_eq!(
            next(&observed(0, 1_000, 31_000)),
            Next::Advance {
                index: 1,
                weight: 50.0
            }
        );
        assert_eq!(next(&observed(2, 0, 0)), Next::Promote);
    }

    #[test]
    fn a_failing_verdict_fails_and_an_inconclusive_one_pauses() {
        let fail = Observation {
            judge: Decision::Fail,
            ..observed(0, 0, 1)
        };
        assert!(matches!(next(&fail), Next::Fail { .. }));
        let unsure = Observation {
            judge: Decision::Inconclusive,
            ..observed(0, 0, 1)
        };
        assert!(matches!(next(&unsure), Next::Pause { .. }));
    }

    #[test]
    fn a_stable_version_that_is_down_holds_even_a_failing_verdict_but_not_the_breaker() {
        let down = Observation {
            baseline_down: true,
            judge: Decision::Fail,
            ..observed(0, 1_000, 60_000)
        };
        assert_eq!(next(&down), Next::Hold);
        let broken = Observation {
            failed_health_checks: 3,
            ..down
        };
        assert!(matches!(next(&broken), Next::Break { .. }));
    }

    #[test]
    fn a_degraded_environment_holds_and_the_step_time_restarts_after() {
        let degraded = Observation {
            degraded: true,
            ..observed(0, 0, 60_000)
        };
        assert_eq!(next(&degraded), Next::Hold);
        // A failing verdict is not held: the canary is worse than the stable version.
        let failing = Observation {
            judge: Decision::Fail,
            ..degraded
        };
        assert!(matches!(next(&failing), Next::Fail { .. }));
        // Held at 60 s, the step's 30 s count from then once the environment is healthy.
        assert_eq!(next(&observed(0, 60_000, 89_999)), Next::Wait);
        assert_eq!(
            next(&observed(0, 60_000, 90_000)),
            Next::Advance {
                index: 1,
                weight: 50.0
            }
        );
    }

    #[test]
    fn failed_health_checks_break_at_the_limit_whatever_the_judge_says() {
        let two = Observation {
            failed_health_checks: 2,
            ..observed(0, 0, 0)
        };
        assert_eq!(next(&two), Next::Wait);
        let three = Observation {
            failed_health_checks: 3,
            degraded: true,
            ..observed(0, 0, 0)
        };
        assert!(
            matches!(next(&three), Next::Break { reason } if reason.contains("3 health checks"))
        );
    }

    #[test]
    fn a_stale_step_index_promotes_rather_than_panics() {
        assert_eq!(decide(&steps(), 7, 0, 0, Decision::Continue), Next::Promote);
    }
}
