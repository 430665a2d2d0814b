//! Failure scope: when several services changed within one window and something went wrong,
//! which change is the likely culprit?
//!
//! Each candidate is judged the way its own canary is: its new version against its own
//! baseline, by the sequential judge, interval by interval. A service that merely suffers from
//! another's bad release degrades on both arms alike (its canary and baseline call the same
//! broken dependency), so its canary does not diverge; the culprit's does. Candidates are ranked
//! by when their canary first diverged (earliest first), then by how far (the canary's error
//! ratio over the baseline's, smoothed); candidates that never diverged come last, most
//! suspicious first. An alert on a service's overall error ratio, by contrast, fires first on
//! whichever service is loudest, often a victim downstream: [`first_alert`] is that rule, for
//! comparison (`backstop bench scope`).
//!
//! Pure: intervals in, a ranking with its evidence out.

use serde::{Deserialize, Serialize};

use crate::{ArmCounts, Decision, Interval, Judge, JudgeSettings, SequentialJudge};

/// A service that changed within the window: its canary's intervals (`t` in seconds since its
/// canary started), and when that was, in seconds since the window opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub name: String,
    pub started_s: f64,
    pub intervals: Vec<Interval>,
}

/// One candidate's place in the ranking, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspect {
    pub name: String,
    /// 1 is the likeliest culprit.
    pub rank: usize,
    /// When its canary first diverged from its baseline (window seconds), if it did by `at_s`.
    pub diverged_at_s: Option<f64>,
    /// Canary error ratio ÷ baseline error ratio (each with half an error added, so an arm
    /// without errors still compares), over the intervals judged.
    pub error_ratio_lift: f64,
    pub canary: ArmCounts,
    pub baseline: ArmCounts,
}

/// Ranks `candidates` on what was known at window time `at_s` (every interval when `None`),
/// judging each with `settings` (its own judge settings in practice; one for all here).
pub fn rank(candidates: &[Candidate], settings: &JudgeSettings, at_s: Option<f64>) -> Vec<Suspect> {
    let mut suspects: Vec<Suspect> = candidates
        .iter()
        .map(|c| judge_one(c, settings, at_s))
        .collect();
    suspects.sort_by(|a, b| {
        let when = |s: &Suspect| s.diverged_at_s.unwrap_or(f64::INFINITY);
        when(a)
            .total_cmp(&when(b))
            .then(b.error_ratio_lift.total_cmp(&a.error_ratio_lift))
            .then(a.name.cmp(&b.name))
    });
    for (i, s) in suspects.iter_mut().enumerate() {
        s.rank = i + 1;
    }
    suspects
}

fn judge_one(c: &Candidate, settings: &JudgeSettings, at_s: Option<f64>) -> Suspect {
    let mut judge = SequentialJudge::new(settings);
    let (mut canary, mut baseline) = (ArmCounts::default(), ArmCounts::default());
    let mut diverged_at_s = None;
    for i in &c.intervals {
        let at = c.started_s + i.t;
        if at_s.is_some_and(|limit| at > limit) {
            break;
        }
        add(&mut canary, &i.canary);
        add(&mut baseline, &i.baseline);
        if diverged_at_s.is_none() && judge.observe(i) == Decision::Fail {
            diverged_at_s = Some(at);
        }
    }
    Suspect {
        name: c.name.clone(),
        rank: 0,
        diverged_at_s,
        error_ratio_lift: lift(&canary, &baseline),
        canary,
        baseline,
    }
}

fn add(total: &mut ArmCounts, more: &ArmCounts) {
    total.requests += more.requests;
    total.errors += more.errors;
}

/// Canary error ratio over baseline's, each smoothed by half an error.
fn lift(canary: &ArmCounts, baseline: &ArmCounts) -> f64 {
    let ratio = |a: &ArmCounts| (a.errors as f64 + 0.5) / (a.requests as f64 + 1.0);
    ratio(canary) / ratio(baseline)
}

/// The loudest-first rule an alert on overall error ratios follows (a Prometheus rule on
/// `rate(errors[window]) / rate(requests[window])`): the first candidate whose error ratio over
/// the last `window_s` seconds, both arms together, reaches `factor` × its ratio `before` the
/// change, with when it fired (window seconds). `before` is per candidate, in `candidates`'
/// order.
pub fn first_alert(
    candidates: &[Candidate],
    before: &[f64],
    factor: f64,
    window_s: f64,
) -> Option<(String, f64)> {
    candidates
        .iter()
        .zip(before)
        .filter_map(|(c, base)| {
            c.intervals.iter().enumerate().find_map(|(k, i)| {
                let recent = c.intervals[..=k]
                    .iter()
                    .rev()
                    .take_while(|o| o.t > i.t - window_s);
                let (requests, errors) = recent.fold((0u64, 0u64), |(r, e), o| {
                    (
                        r + o.canary.requests + o.baseline.requests,
                        e + o.canary.errors + o.baseline.errors,
                    )
                });
                // Early on, the window still holds traffic from before the change, at the
                // same rate and the old error ratio.
                let seen_s = i.t.min(window_s);
                let before_requests = requests as f64 / seen_s * (window_s - seen_s);
                let ratio =
                    (errors as f64 + base * before_requests) / (requests as f64 + before_requests);
                (requests > 0 && ratio >= factor * base)
                    .then(|| (c.name.clone(), c.started_s + i.t))
            })
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimSpec, Spike, example_spec, simulate};

    fn candidate(name: &str, spec: &SimSpec, seed: u64) -> Candidate {
        Candidate {
            name: name.into(),
            started_s: 0.0,
            intervals: simulate(spec, seed).0,
        }
    }

    #[test]
    fn the_culprits_canary_diverges_first_while_a_victim_degrading_on_both_arms_does_not() {
        let mut culprit = example_spec(300.0, 8.0, 20.0);
        culprit.interval_s = 1.0;
        culprit.rps = 200.0;
        let mut victim = example_spec(300.0, 1.0, 0.0);
        victim.interval_s = 1.0;
        victim.rps = 2000.0;
        victim.applied = false;
        victim.spike = Some(Spike {
            start_s: 25.0,
            end_s: 300.0,
            error_mult: 6.0,
            latency_mult: 1.0,
        });
        let candidates = [
            candidate("victim", &victim, 1),
            candidate("culprit", &culprit, 2),
        ];
        let ranked = rank(&candidates, &JudgeSettings::default(), None);
        assert_eq!(ranked[0].name, "culprit", "{ranked:#?}");
        assert!(ranked[0].diverged_at_s.is_some());
        assert!(ranked[0].error_ratio_lift > 3.0, "{ranked:#?}");
        assert_eq!(ranked[1].diverged_at_s, None, "{ranked:#?}");
        // The loudest-first alert names the victim: its overall errors jumped sixfold.
        let alert = first_alert(&candidates, &[0.005, 0.005], 2.0, 60.0).unwrap();
        assert_eq!(alert.0, "victim");
    }

    #[test]
    fn the_ranking_only_uses_what_was_known_at_the_time() {
        let mut culprit = example_spec(120.0, 10.0, 60.0);
        culprit.interval_s = 1.0;
        culprit.rps = 500.0;
        let c = [candidate("culprit", &culprit, 3)];
        let early = rank(&c, &JudgeSettings::default(), Some(50.0));
        assert_eq!(early[0].diverged_at_s, None);
        let late = rank(&c, &JudgeSettings::default(), None);
        assert!(late[0].diverged_at_s.is_some_and(|t| t > 60.0), "{late:#?}");
    }
}
