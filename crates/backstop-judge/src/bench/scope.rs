//! `backstop bench scope`: five services changed together, one of them the culprit; how often
//! the failure-scope ranking ([`crate::scope::rank`]) names the culprit first, and how fast,
//! beside the loudest-first alert rule ([`crate::scope::first_alert`]) incident tools page on.
//!
//! Each trial draws, from its seed: each service's traffic (20–400 req/s, 10 % on the new
//! version) and error ratio (0.2–2 %); the culprit and its regression (errors ×3–×10 from the
//! canary's first request, or from a random onset up to 60 s); and how the harm spreads: one to
//! three other services call the culprit and fail on both arms (errors ×2–×8, 2–15 s after the
//! culprit's onset), as callers of a broken dependency do. A fifth of the trials add a
//! spike on every service at once (a shared database slowing down). Intervals are 1 s; the
//! ranking sees what was known each second and is scored at the first second any candidate
//! diverged; the alert rule (error ratio over the last minute ≥ 2× the service's own) is scored
//! on whom it paged first.

use serde::{Deserialize, Serialize};

use crate::scope::{Candidate, first_alert, rank};
use crate::sim::{Latency, Regression, Rng, SimSpec, Spike, simulate};
use crate::{Interval, JudgeSettings};

/// Services per trial.
pub const SERVICES: usize = 5;
const DURATION_S: f64 = 240.0;

/// One ranking method's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodScore {
    pub method: String,
    /// Trials where it named the culprit first.
    pub culprit_first: usize,
    /// Trials where it named another service first.
    pub wrong_first: usize,
    /// Trials where it named nobody within the window.
    pub silent: usize,
    /// Median seconds from the culprit's onset to naming it, over the trials it named it first.
    pub median_s_to_name: Option<f64>,
}

/// The whole benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeReport {
    pub trials: usize,
    pub seed: u64,
    pub services: usize,
    pub ranking: MethodScore,
    pub first_alert: MethodScore,
}

/// One trial's draw: the candidates and what the alert rule compares against.
struct Trial {
    candidates: Vec<Candidate>,
    before: Vec<f64>,
    culprit: usize,
    onset_s: f64,
}

fn draw(seed: u64) -> Trial {
    let mut rng = Rng::new(seed);
    let culprit = (rng.next_u64() % SERVICES as u64) as usize;
    let onset_s = if rng.f64() < 0.5 {
        0.0
    } else {
        (rng.f64() * 60.0).floor()
    };
    let callers = 1 + (rng.next_u64() % 3) as usize;
    let mut victims: Vec<usize> = (0..SERVICES).filter(|s| *s != culprit).collect();
    for i in (1..victims.len()).rev() {
        victims.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    victims.truncate(callers);
    let shared = (rng.f64() < 0.2).then(|| {
        let start = 20.0 + rng.f64() * 120.0;
        Spike {
            start_s: start,
            end_s: start + 20.0 + rng.f64() * 40.0,
            error_mult: 2.0 + rng.f64() * 3.0,
            latency_mult: 1.5,
        }
    });
    let mut candidates = Vec::with_capacity(SERVICES);
    let mut before = Vec::with_capacity(SERVICES);
    for s in 0..SERVICES {
        let error_ratio = 0.002 + rng.f64() * 0.018;
        let mut spec = SimSpec {
            interval_s: 1.0,
            duration_s: DURATION_S,
            rps: 20.0 + rng.f64() * 380.0,
            load_amplitude: 0.0,
            load_period_s: 600.0,
            split: vec![(0.0, 0.1)],
            error_ratio,
            latency: Latency::lognormal(50.0, 0.6),
            spike: shared,
            regression: Regression::NONE,
            applied: false,
        };
        if s == culprit {
            spec.regression = Regression {
                onset_s,
                error_mult: 3.0 + rng.f64() * 7.0,
                ..Regression::NONE
            };
            spec.applied = true;
        } else if victims.contains(&s) {
            // A caller of the culprit: both of its arms fail alike, a little after the onset.
            let start = onset_s + 2.0 + rng.f64() * 13.0;
            spec.spike = Some(Spike {
                start_s: start,
                end_s: DURATION_S,
                error_mult: 2.0 + rng.f64() * 6.0,
                latency_mult: 1.0,
            });
        }
        let intervals: Vec<Interval> = simulate(&spec, rng.next_u64()).0;
        candidates.push(Candidate {
            name: format!("svc-{s}"),
            started_s: 0.0,
            intervals,
        });
        before.push(error_ratio);
    }
    Trial {
        candidates,
        before,
        culprit,
        onset_s,
    }
}

/// What the ranking names at the first second any candidate diverged (ranked again on what
/// was known at that second), and when.
fn ranking_names(trial: &Trial, settings: &JudgeSettings) -> Option<(String, f64)> {
    let first = rank(&trial.candidates, settings, None)
        .first()?
        .diverged_at_s?;
    let then = rank(&trial.candidates, settings, Some(first));
    Some((then.first()?.name.clone(), first))
}

/// Runs `trials` trials from `seed`; `progress` is told after each.
pub fn run(trials: usize, seed: u64, mut progress: impl FnMut()) -> ScopeReport {
    let settings = JudgeSettings::default();
    let mut ranking = Tally::default();
    let mut alert = Tally::default();
    for k in 0..trials {
        let trial = draw(seed.wrapping_mul(1_000_003).wrapping_add(k as u64));
        let culprit = trial.candidates[trial.culprit].name.clone();
        ranking.add(ranking_names(&trial, &settings), &culprit, trial.onset_s);
        alert.add(
            first_alert(&trial.candidates, &trial.before, 2.0, 60.0),
            &culprit,
            trial.onset_s,
        );
        progress();
    }
    ScopeReport {
        trials,
        seed,
        services: SERVICES,
        ranking: ranking.score("failure-scope ranking (canary vs its baseline)"),
        first_alert: alert.score("first alert (error ratio over 1 min ≥ 2×)"),
    }
}

#[derive(Default)]
struct Tally {
    right: usize,
    wrong: usize,
    silent: usize,
    delays: Vec<f64>,
}

impl Tally {
    fn add(&mut self, named: Option<(String, f64)>, culprit: &str, onset_s: f64) {
        match named {
            Some((name, at)) if name == culprit => {
                self.right += 1;
                self.delays.push((at - onset_s).max(0.0));
            }
            Some(_) => self.wrong += 1,
            None => self.silent += 1,
        }
    }

    fn score(mut self, method: &str) -> MethodScore {
        self.delays.sort_by(f64::total_cmp);
        MethodScore {
            method: method.to_string(),
            culprit_first: self.right,
            wrong_first: self.wrong,
            silent: self.silent,
            median_s_to_name: (!self.delays.is_empty()).then(|| self.delays[self.delays.len() / 2]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranking_names_the_culprit_first_far_more_often_than_the_loudest_alert() {
        let report = run(40, 1, || {});
        assert_eq!(report.trials, 40);
        let r = &report.ranking;
        assert_eq!(r.culprit_first + r.wrong_first + r.silent, 40);
        assert!(r.culprit_first >= 34, "{report:#?}");
        assert!(
            r.culprit_first > report.first_alert.culprit_first + 10,
            "{report:#?}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_report() {
        assert_eq!(run(5, 9, || {}), run(5, 9, || {}));
    }
}
