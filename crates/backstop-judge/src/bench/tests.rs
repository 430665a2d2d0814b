use super::families::{SPIKE, regression};
use super::summary::{censored_median, geomean};
use super::*;
use crate::sim::simulate;

#[test]
fn onset_option_moves_only_the_regressions_that_come_with_the_canary() {
    let fams = families();
    let find = |name: &str| fams.iter().find(|f| f.name == name).expect(name);
    let at = |cfg: &BenchConfig, name: &str| find(name).spec_for(0, cfg).regression.onset_s;
    let default = BenchConfig::default();
    let late = BenchConfig {
        onset_s: 60.0,
        interval_s: 1.0,
        ..BenchConfig::default()
    };
    assert_eq!(at(&default, "err-x2"), 0.0);
    assert_eq!(at(&late, "err-x2"), 60.0);
    assert_eq!(at(&late, "lat-tail-3%x10"), 60.0);
    assert_eq!(at(&default, "err-x3-delayed-onset"), 1200.0);
    assert_eq!(at(&late, "err-x3-delayed-onset"), 1200.0);
    assert_eq!(at(&late, "err-x3-during-spike"), SPIKE.start_s);
    assert_eq!(find("err-x2").spec_for(0, &late).interval_s, 1.0);
}

#[test]
fn oracle_detects_a_clear_regression_and_not_before_onset() {
    let mut s = regression(6.0, 1.0);
    s.duration_s = 600.0;
    s.regression.onset_s = 60.0;
    let (iv, truth) = simulate(&s, 5);
    let t = oracle(&iv, &truth, 0.01).unwrap_or(f64::INFINITY);
    assert!(t > 60.0 && t < 200.0, "oracle at {t}");
}

#[test]
fn misses_are_censored_and_ratios_say_when_they_are_bounds() {
    let stats = |delays: Vec<Option<f64>>, early: usize| JudgeStats {
        judge: "x".into(),
        runs: delays.len() + early,
        false_fails: early,
        detections: delays.iter().flatten().count(),
        delays: delays
            .into_iter()
            .chain(std::iter::repeat_n(None, early))
            .collect(),
    };
    // Two detections and three misses: the median is a censored run, a lower bound.
    let m = censored_median(
        &stats(vec![Some(10.0), Some(20.0), None, None, None], 0),
        100.0,
    );
    assert_eq!(
        m,
        Some(Bounded {
            value: 100.0,
            bound: Bound::AtLeast
        })
    );
    // Three detections, two misses: the median is a real delay; early fails are left out.
    let m = censored_median(
        &stats(vec![Some(10.0), Some(20.0), Some(30.0), None, None], 4),
        100.0,
    );
    assert_eq!(
        m,
        Some(Bounded {
            value: 30.0,
            bound: Bound::Exact
        })
    );
    // Only early fails: no delay at all.
    assert_eq!(censored_median(&stats(vec![], 3), 100.0), None);
    let exact = |v| Bounded {
        value: v,
        bound: Bound::Exact,
    };
    let least = |v| Bounded {
        value: v,
        bound: Bound::AtLeast,
    };
    let r = Bounded::ratio(least(300.0), exact(10.0)).map(|r| (r.value, r.bound));
    assert_eq!(r, Some((30.0, Bound::AtLeast)));
    let r = Bounded::ratio(exact(10.0), least(300.0)).map(|r| r.bound);
    assert_eq!(r, Some(Bound::AtMost));
    assert_eq!(Bounded::ratio(least(1.0), least(2.0)), None);
    let g = geomean(&[exact(4.0), least(16.0)]).expect("a mean");
    assert!(
        (g.value - 8.0).abs() < 1e-9 && g.bound == Bound::AtLeast,
        "{g:?}"
    );
    let mixed = [
        least(2.0),
        Bounded {
            value: 2.0,
            bound: Bound::AtMost,
        },
    ];
    assert_eq!(geomean(&mixed), None);
}

#[test]
fn small_bench_is_seeded_and_summarises() {
    let fams: Vec<Family> = families()
        .into_iter()
        .filter(|f| f.name == "err-x6" || f.name == "aa-steady-30rps")
        .collect();
    let cfg = BenchConfig {
        runs: Some(3),
        threads: 2,
        ..BenchConfig::default()
    };
    let a = run_bench(&cfg, &fams, &|| {});
    let b = run_bench(&cfg, &fams, &|| {});
    assert_eq!(a, b, "same seed, same results");
    let overall = a.overall();
    let seq = overall
        .iter()
        .find(|s| s.judge == "sequential")
        .expect("sequential row");
    assert_eq!(seq.reg_runs, 3);
    assert_eq!(seq.detections, 3);
    let text = a.render_text();
    assert!(text.contains("err-x6") && text.contains("overall"));
    assert!(text.contains("censored"), "the table says what it measures");
    let json = a.to_json();
    assert_eq!(json["families"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["interval_s"], 5.0);
    let flagger = overall
        .iter()
        .find(|s| s.judge == "flagger-tutorial")
        .expect("flagger row");
    assert_eq!(flagger.speedup_vs_flagger.map(|b| b.value), Some(1.0));
}
