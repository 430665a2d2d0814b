use super::mixture::Mixture;
use super::tails::LatencyTest;
use super::tilt::normal_scores;
use super::*;
use crate::sim::{Regression, SimSpec, Spike, example_spec, simulate};
use crate::{ArmCounts, Decision, Interval, Judge, JudgeSettings};
use crate::{JudgeKind, scenario::replay};

fn spec(regression: Regression, applied: bool) -> SimSpec {
    SimSpec {
        rps: 200.0,
        regression,
        applied,
        ..example_spec(1800.0, 1.0, 0.0)
    }
}

fn run(spec: &SimSpec, seed: u64) -> crate::Replay {
    let (intervals, _) = simulate(spec, seed);
    let mut judge = crate::build(&JudgeSettings {
        judge: JudgeKind::Sequential,
        ..JudgeSettings::default()
    });
    replay(judge.as_mut(), &intervals)
}

#[test]
fn error_regression_fails_quickly_with_checkable_evidence() {
    let r = Regression {
        onset_s: 60.0,
        error_mult: 6.0,
        ..Regression::NONE
    };
    let out = run(&spec(r, true), 11);
    assert_eq!(out.decision, Decision::Fail);
    let at = out.failed_at_s.unwrap_or(f64::INFINITY);
    assert!(at > 60.0 && at <= 180.0, "failed at {at}");
    let rep = &out.report;
    assert_eq!(rep["verdict"], "fail");
    assert_eq!(rep["signals"][0]["signal"], "error_ratio");
    assert_eq!(rep["signals"][0]["verdict"], "fail");
    let ev = &rep["signals"][0]["evidence"];
    assert!(ev["e_value"].as_f64().unwrap_or(0.0) >= 200.0);
    assert!(ev["p_value_anytime"].as_f64().unwrap_or(1.0) <= 0.005);
    assert!(ev["odds_ratio_mantel_haenszel"].as_f64().unwrap_or(0.0) > 2.0);
    let excess = &ev["excess_canary_errors"];
    let (est, lo) = (
        excess["estimate"].as_f64().unwrap_or(0.0),
        excess["confidence_sequence"][0]
            .as_f64()
            .unwrap_or(f64::NAN),
    );
    assert!(est > 0.0 && lo < est, "excess {excess}");
}

#[test]
fn better_canary_never_fails_and_e_value_shrinks() {
    let r = Regression {
        onset_s: 0.0,
        error_mult: 0.2,
        latency_mult: 0.7,
        ..Regression::NONE
    };
    let out = run(&spec(r, true), 12);
    assert_eq!(out.decision, Decision::Continue);
    assert_eq!(out.report["verdict"], "pass");
    assert!(
        out.report["signals"][0]["evidence"]["e_value"]
            .as_f64()
            .unwrap_or(1.0)
            < 0.01
    );
    // Latency averages over bucket bounds; bounds nobody crosses stay at 1.
    assert!(
        out.report["signals"][1]["evidence"]["e_value"]
            .as_f64()
            .unwrap_or(1.0)
            < 0.6
    );
}

#[test]
fn shared_spike_does_not_fail_and_is_reported() {
    let mut s = spec(Regression::NONE, false);
    s.spike = Some(Spike {
        start_s: 300.0,
        end_s: 480.0,
        error_mult: 30.0,
        latency_mult: 4.0,
    });
    for seed in 0..5 {
        let out = run(&s, 100 + seed);
        assert_eq!(out.report["verdict"], "pass", "seed {seed}: {}", out.report);
        let degraded = out.report["signals"][0]["evidence"]["baseline_degraded_intervals"]
            .as_u64()
            .unwrap_or(0);
        assert!(degraded >= 20, "degraded intervals {degraded}");
    }
}

#[test]
fn latency_body_shift_and_tail_only_regressions_fail_on_latency() {
    let shift = Regression {
        onset_s: 60.0,
        latency_mult: 1.25,
        ..Regression::NONE
    };
    let out = run(&spec(shift, true), 13);
    assert_eq!(out.decision, Decision::Fail);
    assert_eq!(out.report["signals"][1]["signal"], "latency");
    assert_eq!(out.report["signals"][1]["verdict"], "fail");
    assert_eq!(out.report["signals"][0]["verdict"], "pass");
    let tail = Regression {
        onset_s: 60.0,
        tail_fraction: 0.03,
        tail_factor: 10.0,
        ..Regression::NONE
    };
    let out = run(&spec(tail, true), 14);
    assert_eq!(out.decision, Decision::Fail);
    let tails = &out.report["signals"][1]["evidence"]["tails"];
    assert_eq!(tails.as_array().map(Vec::len), Some(TAIL_QUANTILES.len()));
    for tail in tails.as_array().into_iter().flatten() {
        let excess = &tail["excess_slower_canary_requests"];
        let (est, lo, hi) = (
            excess["estimate"].as_f64().unwrap_or(f64::NAN),
            excess["confidence_sequence"][0]
                .as_f64()
                .unwrap_or(f64::NAN),
            excess["confidence_sequence"][1]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
        assert!(est > 0.0 && lo < est && est < hi, "tail {tail}");
    }
    let strongest = out.report["signals"][1]["evidence"]["strongest_tail_le_ms"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        strongest >= 250.0,
        "a tail regression shows in the top buckets, got {strongest}"
    );
}

#[test]
fn normal_scores_are_centred_increasing_and_symmetric() {
    let pooled = [0.0, 0.1, 0.4, 0.4, 0.1, 0.0];
    let s = normal_scores(&pooled);
    let mean: f64 = pooled.iter().zip(&s).map(|(p, s)| p * s).sum();
    assert!(mean.abs() < 1e-9, "mean {mean}");
    assert!(s[1] < s[2] && s[2] < s[3] && s[3] < s[4], "{s:?}");
    assert!((s[1] + s[4]).abs() < 1e-9 && (s[2] + s[3]).abs() < 1e-9);
    // The lowest tenth of a standard normal has mean −φ(Φ⁻¹(0.1))/0.1 ≈ −1.7550.
    assert!((s[1] + 1.7550).abs() < 1e-3, "{}", s[1]);
    assert_eq!(normal_scores(&[1.0]), vec![0.0]);
}

#[test]
fn tail_tests_pick_the_bound_at_their_quantile() {
    // 1000 requests: 900 at or under 50 ms, 990 under 100, 999 under 250, all under 500.
    let le = [900, 990, 999, 1000];
    assert_eq!(LatencyTest::bound_at(0.9, &le, 1000), 0);
    assert_eq!(LatencyTest::bound_at(0.99, &le, 1000), 1);
    assert_eq!(LatencyTest::bound_at(0.999, &le, 1000), 2);
    // Slower than every bound: the top one.
    assert_eq!(LatencyTest::bound_at(0.999, &[0, 0, 0, 0], 1000), 3);
    assert_eq!(LatencyTest::bound_at(0.999, &[], 0), 0);
}

#[test]
fn zero_traffic_is_inconclusive_not_a_crash() {
    let mut judge = SequentialJudge::new(&JudgeSettings::default());
    let empty = ArmCounts {
        requests: 0,
        errors: 0,
        latency_le_ms: Some(vec![(10.0, 0), (f64::INFINITY, 0)]),
    };
    for i in 1..=20 {
        let iv = Interval {
            t: 5.0 * i as f64,
            baseline: empty.clone(),
            canary: empty.clone(),
            log_lines: None,
        };
        assert_eq!(judge.observe(&iv), Decision::Continue);
    }
    let r = judge.report();
    assert_eq!(r["verdict"], "inconclusive");
    assert_eq!(r["decided_at_s"], 100);
}

#[test]
fn start_prior_is_in_seconds_and_spends_at_most_one() {
    let masses = |step: f64, until: f64| {
        let mut m = Mixture::new(1, StartPrior::default());
        let mut out = Vec::new();
        let mut t = step;
        while t <= until + 1e-9 {
            out.push((t, m.start_mass(t)));
            t += step;
        }
        out
    };
    let (fine, coarse) = (masses(1.0, 7200.0), masses(5.0, 7200.0));
    assert_eq!(fine[0].1, START_MASS);
    assert_eq!(coarse[0].1, START_MASS);
    for series in [&fine, &coarse] {
        let total: f64 = series.iter().map(|x| x.1).sum();
        assert!(total <= 1.0 + 1e-12 && total > 0.95, "total {total}");
    }
    // The same mass by the same time after the first interval, whatever the interval.
    let by = |series: &[(f64, f64)], first: f64, u: f64| {
        series
            .iter()
            .skip(1)
            .filter(|x| x.0 - first <= u + 1e-9)
            .map(|x| x.1)
            .sum::<f64>()
    };
    for u in [60.0, 300.0, 1200.0] {
        let (a, b) = (by(&fine, 1.0, u), by(&coarse, 5.0, u));
        assert!((a - b).abs() < 1e-12, "by {u}s: {a} vs {b}");
    }
    assert!((by(&fine, 1.0, START_TAU_S) - 0.5 * (1.0 - START_MASS)).abs() < 1e-12);
    // Time going backwards or repeating puts no new mass.
    let mut m = Mixture::new(1, StartPrior::default());
    m.start_mass(10.0);
    assert!(m.start_mass(20.0) > 0.0);
    assert_eq!(m.start_mass(15.0), 0.0);
    assert_eq!(m.start_mass(20.0), 0.0);
    assert_eq!(m.start_mass(f64::NAN), 0.0);
}

#[test]
fn tilt_test_factor_has_expectation_at_most_one_under_the_null() {
    // Pooled requests of one interval by bucket; the canary is a uniformly random subset of
    // size n_c. Enumerate every subset and average the e-value factor.
    for (pool, n_c) in [
        (vec![0usize, 0, 1, 1, 2, 2, 3], 2usize),
        (vec![0, 1, 1, 1, 2, 3, 3, 3], 3),
        (vec![0, 0, 0, 0, 0, 3], 1),
    ] {
        let n = pool.len();
        let (mut total, mut count) = (0.0, 0.0);
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize != n_c {
                continue;
            }
            let (mut c, mut b) = (vec![0u64; 4], vec![0u64; 4]);
            for (i, bucket) in pool.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    c[*bucket] += 1
                } else {
                    b[*bucket] += 1
                }
            }
            let mut t = TiltTest::new(&[10.0, 100.0, 1000.0], 16);
            t.update(5.0, &c, &b);
            total += t.log_e().exp() / START_MASS;
            count += 1.0;
        }
        assert!(
            total / count <= 1.0 + 1e-9,
            "E[e] = {} for {pool:?}, n_c = {n_c}",
            total / count
        );
    }
}

#[test]
fn odds_ratio_test_is_a_supermartingale_in_the_worst_null_case() {
    // Exact expectation of one interval's e-value under the null, by enumerating the
    // hypergeometric law of the canary's count: must be <= 1 for every margin.
    fn ln_choose(n: u64, k: u64) -> f64 {
        statrs::function::factorial::ln_binomial(n, k)
    }
    let grid = SequentialSettings::default().grid();
    for &(n_c, n_b, m) in &[
        (5u64, 45u64, 3u64),
        (10, 10, 10),
        (40, 60, 50),
        (3, 500, 200),
        (200, 20, 7),
        (1, 1, 1),
    ] {
        let n = n_c + n_b;
        let mut expectation = 0.0;
        for x in m.saturating_sub(n_b)..=m.min(n_c) {
            let p = (ln_choose(n_c, x) + ln_choose(n_b, m - x) - ln_choose(n, m)).exp();
            let mut t = OddsRatioTest::new(&grid);
            t.update(5.0, x, n_c, m - x, n_b);
            // Divide out the start-time weight of the first interval: the factor itself.
            expectation += p * t.log_e().exp() / START_MASS;
        }
        assert!(
            expectation <= 1.0 + 1e-9,
            "E[e] = {expectation} for ({n_c}, {n_b}, {m})"
        );
    }
}

/// Intervals where both arms answer alike but the canary's instances log an error line for
/// `canary_share` of their requests (the baseline's for 1 %).
fn quietly_failing(canary_share: f64, seed: u64) -> Vec<Interval> {
    let (mut intervals, _) = simulate(&spec(Regression::NONE, false), seed);
    for i in &mut intervals {
        i.log_lines = Some(crate::LogLines {
            baseline: (i.baseline.requests as f64 * 0.01).round() as u64,
            canary: (i.canary.requests as f64 * canary_share).round() as u64,
        });
    }
    intervals
}

#[test]
fn error_log_lines_fail_a_canary_whose_answers_look_fine_only_when_logs_are_judged() {
    use crate::SignalKind;
    let with_logs = JudgeSettings {
        signals: vec![SignalKind::Errors, SignalKind::Latency, SignalKind::Logs],
        ..JudgeSettings::default()
    };
    let mut judge = SequentialJudge::new(&with_logs);
    let intervals = quietly_failing(0.3, 5);
    let failed = intervals
        .iter()
        .position(|i| judge.observe(i) == Decision::Fail);
    assert!(
        failed.is_some_and(|k| k < 20),
        "failed at interval {failed:?}"
    );
    let report = judge.report();
    let logs = report["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["signal"] == "error_logs")
        .unwrap();
    assert_eq!(logs["verdict"], "fail", "{report:#}");

    // Without the logs signal the same run passes; with it, equal log rates pass too.
    let mut blind = SequentialJudge::new(&JudgeSettings::default());
    assert!(intervals.iter().all(|i| blind.observe(i) != Decision::Fail));
    let mut fair = SequentialJudge::new(&with_logs);
    assert!(
        quietly_failing(0.01, 6)
            .iter()
            .all(|i| fair.observe(i) != Decision::Fail)
    );
}
