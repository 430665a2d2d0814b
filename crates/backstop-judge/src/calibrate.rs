//! Threshold calibration (practice 7.5): the stored intervals of rollouts people labelled
//! replayed through the judge at several settings, each measured for false alarms on the good
//! ones and detections (and how fast) on the bad ones. It recommends; it never changes a
//! setting.

use serde::{Deserialize, Serialize};

use crate::scenario::replay;
use crate::{Decision, Interval, JudgeKind, JudgeSettings, build};

/// What a labelled rollout really was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truth {
    /// The release was bad (a confirmed failure, or a miss found later).
    Bad,
    /// The release was fine (a false alarm, or promoted without complaint).
    Good,
}

/// One rollout to replay.
#[derive(Debug, Clone)]
pub struct Case {
    pub rollout_id: String,
    pub truth: Truth,
    pub intervals: Vec<Interval>,
}

/// How one setting did on the cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// The setting, as `key=value` (e.g. `alpha=0.005`).
    pub setting: String,
    pub alpha: f64,
    /// This is the setting the service runs with now.
    pub current: bool,
    pub good: usize,
    pub false_alarms: usize,
    pub false_alarm_rate: Option<f64>,
    pub bad: usize,
    pub detected: usize,
    pub detection_rate: Option<f64>,
    /// Seconds from the canary's start to the failing verdict, median over detected bad cases.
    pub median_delay_s: Option<f64>,
    /// The good rollouts it would have failed and the bad ones it would have let through.
    pub wrong: Vec<String>,
}

/// The trials and the recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub cases: usize,
    pub trials: Vec<Trial>,
    /// The setting recommended, if the cases support one; `None` with too few cases.
    pub recommended: Option<String>,
    /// Why that one (or why none).
    pub because: String,
}

/// The alphas tried for the sequential judge.
pub const ALPHAS: &[f64] = &[0.001, 0.005, 0.01, 0.02, 0.05, 0.1];

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

fn trial(settings: &JudgeSettings, cases: &[Case], current: bool) -> Trial {
    let mut t = Trial {
        setting: format!("alpha={}", settings.alpha),
        alpha: settings.alpha,
        current,
        good: 0,
        false_alarms: 0,
        false_alarm_rate: None,
        bad: 0,
        detected: 0,
        detection_rate: None,
        median_delay_s: None,
        wrong: vec![],
    };
    let mut delays = Vec::new();
    for case in cases {
        let mut judge = build(settings);
        let r = replay(judge.as_mut(), &case.intervals);
        let failed = r.decision == Decision::Fail;
        match case.truth {
            Truth::Good => {
                t.good += 1;
                if failed {
                    t.false_alarms += 1;
                    t.wrong.push(format!("{} (false alarm)", case.rollout_id));
                }
            }
            Truth::Bad => {
                t.bad += 1;
                if failed {
                    t.detected += 1;
                    delays.extend(r.failed_at_s);
                } else {
                    t.wrong.push(format!("{} (missed)", case.rollout_id));
                }
            }
        }
    }
    t.false_alarm_rate = (t.good > 0).then(|| t.false_alarms as f64 / t.good as f64);
    t.detection_rate = (t.bad > 0).then(|| t.detected as f64 / t.bad as f64);
    t.median_delay_s = median(delays);
    t
}

/// Replays `cases` at the current settings and at each of [`ALPHAS`] (the sequential judge's
/// false-alarm budget; other judges are replayed at their current settings only), and
/// recommends the setting that detects the most bad releases, then raises the fewest false
/// alarms, then detects soonest, then promises the lowest false-alarm rate.
#[must_use]
pub fn calibrate(current: &JudgeSettings, cases: &[Case]) -> Calibration {
    let mut trials = vec![trial(current, cases, true)];
    if current.judge == JudgeKind::Sequential {
        for &alpha in ALPHAS {
            if (alpha - current.alpha).abs() < f64::EPSILON {
                continue;
            }
            let s = JudgeSettings {
                alpha,
                ..current.clone()
            };
            trials.push(trial(&s, cases, false));
        }
        trials.sort_by(|a, b| a.alpha.total_cmp(&b.alpha));
    }
    let bad = cases.iter().filter(|c| c.truth == Truth::Bad).count();
    let good = cases.len() - bad;
    if bad == 0 || good == 0 {
        return Calibration {
            cases: cases.len(),
            trials,
            recommended: None,
            because: format!(
                "need labelled rollouts of both kinds to weigh detections against false alarms ({bad} bad, {good} good)"
            ),
        };
    }
    let best = trials
        .iter()
        .min_by(|a, b| {
            b.detected
                .cmp(&a.detected)
                .then(a.false_alarms.cmp(&b.false_alarms))
                .then(
                    a.median_delay_s
                        .unwrap_or(f64::INFINITY)
                        .total_cmp(&b.median_delay_s.unwrap_or(f64::INFINITY)),
                )
                .then(a.alpha.total_cmp(&b.alpha))
        })
        .cloned();
    let Some(best) = best else {
        return Calibration {
            cases: cases.len(),
            trials,
            recommended: None,
            because: "no setting was tried".into(),
        };
    };
    let because = format!(
        "{} detects {} of {} bad releases (median {} s) with {} false alarm(s) on {} good ones{}",
        best.setting,
        best.detected,
        best.bad,
        best.median_delay_s
            .map_or_else(|| "n/a".to_owned(), |d| format!("{d:.0}")),
        best.false_alarms,
        best.good,
        if best.current {
            "; it is the current setting: keep it"
        } else {
            "; change `analysis` in backstop.yaml to use it"
        }
    );
    Calibration {
        cases: cases.len(),
        trials,
        recommended: Some(best.setting),
        because,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ArmCounts;

    fn arm(requests: u64, errors: u64) -> ArmCounts {
        ArmCounts {
            requests,
            errors,
            latency_le_ms: None,
        }
    }

    /// 60 intervals of 5 s: the baseline at 1 % errors, the canary at `canary_ratio`.
    fn case(id: &str, truth: Truth, canary_ratio: f64) -> Case {
        let intervals = (1..=60)
            .map(|i| Interval {
                t: f64::from(i) * 5.0,
                baseline: arm(900, 9),
                canary: arm(100, (100.0 * canary_ratio).round() as u64),
                log_lines: None,
            })
            .collect();
        Case {
            rollout_id: id.into(),
            truth,
            intervals,
        }
    }

    #[test]
    fn every_alpha_is_measured_and_the_best_trade_is_recommended_never_applied() {
        let current = JudgeSettings::default();
        let cases = vec![
            case("bad-loud", Truth::Bad, 0.20),
            case("bad-subtle", Truth::Bad, 0.03),
            case("good", Truth::Good, 0.01),
            case("good-2", Truth::Good, 0.012),
        ];
        let c = calibrate(&current, &cases);
        assert_eq!(c.cases, 4);
        assert_eq!(c.trials.len(), ALPHAS.len());
        assert_eq!(c.trials.iter().filter(|t| t.current).count(), 1);
        for t in &c.trials {
            assert_eq!((t.good, t.bad), (2, 2));
            assert_eq!(t.false_alarms, 0, "{t:?}");
            assert!(
                t.detected >= 1,
                "the loud regression is caught at {}",
                t.setting
            );
        }
        // A looser alpha never detects less, nor later.
        let strict = &c.trials[0];
        let loose = c.trials.last().unwrap();
        assert!(loose.detected >= strict.detected);
        let rec = c.recommended.as_deref().unwrap();
        assert!(c.because.starts_with(rec), "{}", c.because);
        // One kind of label only: no recommendation, and why.
        let c = calibrate(&current, &cases[..2]);
        assert_eq!(c.recommended, None);
        assert!(c.because.contains("both kinds"), "{}", c.because);
    }
}
