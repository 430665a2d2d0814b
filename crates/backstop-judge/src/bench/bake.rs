//! `backstop bench bake`: a promoted release keeps being judged while its wave bakes, before the
//! next wave starts. Half the trials are releases as good as before; half turn worse at a random
//! moment of the bake (a leak, a cache that expires). Backstop's bake ([`crate::bake`]: the
//! pre-deploy baseline's upper bound as reference, an anytime-valid test read every 10 s) is
//! scored beside the Flagger tutorial preset applied to the same traffic (a check a minute, a
//! failure when the error ratio is above its limit, rollback on the fifth failed check,
//! cumulative), with its limit set generously at twice the service's true error ratio (an
//! operator who knows the service exactly; Flagger's own default is a fixed 1 %).
//!
//! Each trial draws, from its seed: the service's error ratio (0.2–2 %) and traffic (0.5–200
//! req/s, log-uniform: quiet services are where fixed limits cry wolf); a 5-minute pre-deploy
//! baseline; a 30-minute bake; for a bad release, its errors ×2–×8 from an onset up to
//! 20 minutes in. Scored: good releases failed (false alarms), bad ones caught, and the median
//! time from the onset to the failure.

use serde::{Deserialize, Serialize};

use crate::sim::Rng;
use crate::threshold::{ThresholdPreset, ThresholdSettings};
use crate::{ArmCounts, Decision, Interval, Judge, JudgeKind, JudgeSettings, ThresholdJudge};

const BASELINE_S: f64 = 300.0;
const BAKE_S: f64 = 1800.0;
const READ_S: f64 = 10.0;
/// The false-alarm rate asked of Backstop's bake (the starter config's `analysis.alpha`).
pub const ALPHA: f64 = 0.01;

/// One method's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BakeScore {
    pub method: String,
    /// Good releases failed during the bake.
    pub false_alarms: usize,
    /// Bad releases failed during the bake.
    pub caught: usize,
    /// Median seconds from the onset to the failure, over the bad releases caught.
    pub median_s_to_catch: Option<f64>,
}

/// Services at least this busy (req/s) are scored apart from the quiet ones.
pub const BUSY_RPS: f64 = 5.0;

/// The two methods' scores over some of the trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BakeScores {
    /// `all`, `quiet` (below [`BUSY_RPS`]) or `busy`.
    pub traffic: String,
    pub good: usize,
    pub bad: usize,
    pub backstop: BakeScore,
    pub flagger: BakeScore,
}

/// The whole benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BakeReport {
    pub trials: usize,
    pub seed: u64,
    /// All trials, then the quiet services, then the busy ones.
    pub scores: Vec<BakeScores>,
}

/// One trial: the baseline's counts and the bake's reads (requests, errors) every [`READ_S`].
struct Trial {
    baseline: (u64, u64),
    reads: Vec<(u64, u64)>,
    /// Seconds into the bake when a bad release turns worse (`None`: a good release).
    onset_s: Option<f64>,
    error_ratio: f64,
    rps: f64,
}

fn draw(seed: u64, bad: bool) -> Trial {
    let mut rng = Rng::new(seed);
    let error_ratio = 0.002 + rng.f64() * 0.018;
    let rps = (0.5_f64.ln() + rng.f64() * (200.0_f64.ln() - 0.5_f64.ln())).exp();
    let onset_s = bad.then(|| (rng.f64() * 1200.0 / READ_S).floor() * READ_S);
    let mult = 2.0 + rng.f64() * 6.0;
    let n = rng.poisson(rps * BASELINE_S);
    let baseline = (n, rng.binomial(n, error_ratio));
    let reads = (0..(BAKE_S / READ_S) as usize)
        .map(|k| {
            let t = k as f64 * READ_S;
            let p = match onset_s {
                Some(on) if t >= on => (error_ratio * mult).min(1.0),
                _ => error_ratio,
            };
            let n = rng.poisson(rps * READ_S);
            (n, rng.binomial(n, p))
        })
        .collect();
    Trial {
        baseline,
        reads,
        onset_s,
        error_ratio,
        rps,
    }
}

/// When Backstop's bake fails the release (seconds into the bake), if it does.
fn backstop_fails_at(trial: &Trial) -> Option<f64> {
    let p0 = crate::bake::reference_ratio(trial.baseline.0, trial.baseline.1, ALPHA);
    let (mut n, mut x) = (0, 0);
    for (k, (requests, errors)) in trial.reads.iter().enumerate() {
        n += requests;
        x += errors;
        if crate::bake::judge(n, x, p0, ALPHA).worse {
            return Some((k + 1) as f64 * READ_S);
        }
    }
    None
}

/// When the Flagger tutorial preset fails the release, its limit twice the true error ratio.
fn flagger_fails_at(trial: &Trial) -> Option<f64> {
    let settings = JudgeSettings {
        judge: JudgeKind::Threshold,
        threshold: ThresholdSettings {
            preset: ThresholdPreset::FlaggerTutorial,
            max_error_ratio: 2.0 * trial.error_ratio,
            ..ThresholdSettings::default()
        },
        ..JudgeSettings::default()
    };
    let mut judge = ThresholdJudge::new(&settings);
    for (k, (requests, errors)) in trial.reads.iter().enumerate() {
        let t = (k + 1) as f64 * READ_S;
        let interval = Interval {
            t,
            canary: ArmCounts {
                requests: *requests,
                errors: *errors,
                ..ArmCounts::default()
            },
            ..Interval::default()
        };
        if judge.observe(&interval) == Decision::Fail {
            return Some(t);
        }
    }
    None
}

/// Runs `trials` trials from `seed` (the even ones good, the odd ones bad); `progress` is told
/// after each.
pub fn run(trials: usize, seed: u64, mut progress: impl FnMut()) -> BakeReport {
    // (all, quiet, busy) × (backstop, flagger).
    let mut tallies: [[Tally; 2]; 3] = Default::default();
    for k in 0..trials {
        let trial = draw(
            seed.wrapping_mul(1_000_003).wrapping_add(k as u64),
            k % 2 == 1,
        );
        let (b, f) = (backstop_fails_at(&trial), flagger_fails_at(&trial));
        let class = if trial.rps < BUSY_RPS { 1 } else { 2 };
        for t in [0, class] {
            tallies[t][0].add(&trial, b);
            tallies[t][1].add(&trial, f);
        }
        progress();
    }
    let scores = tallies
        .into_iter()
        .zip(["all", "quiet", "busy"])
        .map(|([backstop, flagger], traffic)| BakeScores {
            traffic: traffic.to_string(),
            good: backstop.good,
            bad: backstop.bad,
            backstop: backstop.score("backstop bake (anytime-valid vs pre-deploy baseline)"),
            flagger: flagger.score("flagger tutorial (1 min checks, 5 failures, limit 2× true)"),
        })
        .collect();
    BakeReport {
        trials,
        seed,
        scores,
    }
}

#[derive(Default)]
struct Tally {
    good: usize,
    bad: usize,
    false_alarms: usize,
    caught: usize,
    delays: Vec<f64>,
}

impl Tally {
    fn add(&mut self, trial: &Trial, failed_at: Option<f64>) {
        if trial.onset_s.is_some() {
            self.bad += 1;
        } else {
            self.good += 1;
        }
        match (trial.onset_s, failed_at) {
            (None, Some(_)) => self.false_alarms += 1,
            // Failed before the release turned worse: a false alarm too.
            (Some(on), Some(at)) if at <= on => self.false_alarms += 1,
            (Some(on), Some(at)) => {
                self.caught += 1;
                self.delays.push(at - on);
            }
            _ => {}
        }
    }

    fn score(mut self, method: &str) -> BakeScore {
        self.delays.sort_by(f64::total_cmp);
        BakeScore {
            method: method.to_string(),
            false_alarms: self.false_alarms,
            caught: self.caught,
            median_s_to_catch: (!self.delays.is_empty())
                .then(|| self.delays[self.delays.len() / 2]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bake_keeps_its_false_alarm_rate_and_catches_most_late_regressions() {
        let report = run(200, 1, || {});
        let [all, quiet, busy] = &report.scores[..] else {
            panic!("{report:#?}")
        };
        assert_eq!(all.good + all.bad, 200);
        assert_eq!(quiet.good + busy.good, all.good);
        let b = &all.backstop;
        assert!(
            (b.false_alarms as f64) <= 3.0 * ALPHA * all.good as f64 + 2.0,
            "{report:#?}"
        );
        // On busy services nearly every late regression is caught.
        assert!(busy.backstop.caught * 10 >= busy.bad * 8, "{report:#?}");
        // The fixed-limit preset cries wolf on quiet services far more often.
        assert!(
            quiet.flagger.false_alarms > quiet.backstop.false_alarms + 5,
            "{report:#?}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_report() {
        assert_eq!(run(6, 9, || {}), run(6, 9, || {}));
    }
}
