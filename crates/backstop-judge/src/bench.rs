//! `backstop bench canary`: seeded scenario families, every judge plus an oracle, a table per
//! family and overall, and JSON.
//!
//! The oracle is a one-sided Wald SPRT told the truth (per-interval error ratios and latency
//! bucket probabilities of the null and of the actual regression, and the onset): the floor no
//! real judge can beat. On A/A families it tests against a reference regression (errors ×2,
//! latency +25 %) to show its own false-alarm rate. A second reference,
//! [`oracle_unknown_onset`], is told the same truth except the onset: the gap between the two
//! oracles is the price of not knowing when a regression starts.
//!
//! **What the ratios measure.** Per regression family and judge, the median delay is taken over
//! all runs that did not fail before the onset: a run the judge never failed counts as censored
//! at the time left after the onset, so a judge that misses most runs gets a median that is a
//! lower bound (printed `≥`) instead of dropping those runs (which used to favour the Flagger
//! preset, whose absolute p99 limit never sees the latency regressions). "vs oracle" is the
//! judge's median / the oracle's, "vs flagger-t" the Flagger tutorial preset's median / the
//! judge's, both per family; the overall figures are their geometric means over the regression
//! families, so every family of the mix weighs the same. Every judge and both oracles
//! see the same intervals (`--interval`, default 5 s = the controller's default
//! `analysis.interval`); the threshold presets pool them into their own checks (1 min).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::report::num;
use crate::scenario::replay;
use crate::sequential::StartPrior;
use crate::sim::{Latency, Regression, SimSpec, Spike, Truth, simulate};
use crate::threshold::ThresholdPreset;
use crate::{Interval, JudgeKind, JudgeSettings, build};

/// Bench options.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// About one minute instead of the full size.
    pub quick: bool,
    /// Base seed; every run derives its own.
    pub seed: u64,
    /// Runs per family (overrides the size from `quick`).
    pub runs: Option<usize>,
    /// The sequential judge's alpha and the oracle's.
    pub alpha: f64,
    /// Worker threads (0 = available parallelism).
    pub threads: usize,
    /// Length of the intervals every judge and the oracle see, seconds (the controller's
    /// `analysis.interval`; threshold presets pool intervals into their own checks).
    pub interval_s: f64,
    /// When the regression starts in the families whose regression comes with the canary (all
    /// but the delayed-onset and during-spike ones), seconds; 0 = from the canary's first
    /// request, as a bad release is bad from its first request.
    pub onset_s: f64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            quick: false,
            seed: 1,
            runs: None,
            alpha: 0.01,
            threads: 0,
            interval_s: DEFAULT_INTERVAL_S,
            onset_s: 0.0,
        }
    }
}

/// Row name of [`oracle_unknown_onset`].
pub const ORACLE_UNKNOWN_ONSET: &str = "oracle-onset-unknown";

/// The bench's interval: the default `analysis.interval` of the live controller.
pub const DEFAULT_INTERVAL_S: f64 = 5.0;

/// A/A (no regression) or a regression from `onset_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    AA,
    Regression,
}

/// One scenario family.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub kind: FamilyKind,
    /// Runs at full size.
    pub runs: usize,
    /// The spec of run `i` (families cycle through splits and error ratios).
    pub spec: fn(usize) -> SimSpec,
    /// The family's regression has its own onset (delayed onset, during a spike); the others'
    /// regression comes with the canary, at [`BenchConfig::onset_s`].
    pub own_onset: bool,
}

impl Family {
    /// The scenario of run `i` under `cfg` (interval length and onset applied).
    pub fn spec_for(&self, i: usize, cfg: &BenchConfig) -> SimSpec {
        let mut spec = (self.spec)(i);
        if cfg.interval_s.is_finite() && cfg.interval_s > 0.0 {
            spec.interval_s = cfg.interval_s;
        }
        if self.kind == FamilyKind::Regression && !self.own_onset {
            spec.regression.onset_s = cfg.onset_s.clamp(0.0, spec.duration_s / 2.0);
        }
        spec
    }
}

fn base(rps: f64, duration_s: f64) -> SimSpec {
    SimSpec {
        interval_s: DEFAULT_INTERVAL_S,
        duration_s,
        rps,
        load_amplitude: 0.0,
        load_period_s: 900.0,
        split: vec![(0.0, 0.1)],
        error_ratio: 0.005,
        latency: Latency::lognormal(50.0, 0.6),
        spike: None,
        regression: Regression {
            onset_s: 0.0,
            error_mult: 2.0,
            latency_mult: 1.25,
            tail_fraction: 0.0,
            tail_factor: 1.0,
        },
        applied: false,
    }
}

const SPLITS: [f64; 3] = [0.1, 0.25, 0.5];
const ERROR_RATIOS: [f64; 3] = [0.002, 0.005, 0.02];

fn steady(rps: f64, duration_s: f64, i: usize) -> SimSpec {
    let mut s = base(rps, duration_s);
    s.split = vec![(0.0, SPLITS[i % 3])];
    s.error_ratio = ERROR_RATIOS[(i / 3) % 3];
    s
}

fn regression(error_mult: f64, latency_mult: f64) -> SimSpec {
    let mut s = base(200.0, 3600.0);
    s.regression = Regression {
        onset_s: 0.0,
        error_mult,
        latency_mult,
        tail_fraction: 0.0,
        tail_factor: 1.0,
    };
    s.applied = true;
    s
}

const SPIKE: Spike = Spike {
    start_s: 600.0,
    end_s: 780.0,
    error_mult: 20.0,
    latency_mult: 3.0,
};

/// The families of issue 3.
pub fn families() -> Vec<Family> {
    vec![
        Family {
            name: "aa-steady-3rps",
            kind: FamilyKind::AA,
            own_onset: false,
            runs: 200,
            spec: |i| steady(3.0, 3600.0, i),
        },
        Family {
            name: "aa-steady-30rps",
            kind: FamilyKind::AA,
            own_onset: false,
            runs: 200,
            spec: |i| steady(30.0, 3600.0, i),
        },
        Family {
            name: "aa-steady-300rps",
            kind: FamilyKind::AA,
            own_onset: false,
            runs: 200,
            spec: |i| steady(300.0, 1800.0, i),
        },
        Family {
            name: "aa-varying-load",
            kind: FamilyKind::AA,
            own_onset: false,
            runs: 200,
            spec: |_| {
                let mut s = base(100.0, 1800.0);
                s.load_amplitude = 0.8;
                s.split = vec![(0.0, 0.05), (600.0, 0.25), (1200.0, 0.5)];
                s
            },
        },
        Family {
            name: "aa-shared-spike",
            kind: FamilyKind::AA,
            own_onset: false,
            runs: 200,
            spec: |_| {
                let mut s = base(100.0, 1800.0);
                s.spike = Some(SPIKE);
                s
            },
        },
        Family {
            name: "aa-heavy-tail",
            kind: FamilyKind::AA,
            own_onset: false,
            runs: 200,
            spec: |_| {
                let mut s = base(100.0, 1800.0);
                s.latency = Latency {
                    median_ms: 40.0,
                    sigma: 1.2,
                    tail_fraction: 0.02,
                    tail_factor: 8.0,
                };
                s
            },
        },
        Family {
            name: "err-x1.5",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(1.5, 1.0),
        },
        Family {
            name: "err-x2",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(2.0, 1.0),
        },
        Family {
            name: "err-x3",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(3.0, 1.0),
        },
        Family {
            name: "err-x6",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(6.0, 1.0),
        },
        Family {
            name: "err-x3-low-traffic",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| {
                let mut s = regression(3.0, 1.0);
                s.rps = 10.0;
                s
            },
        },
        Family {
            name: "err-x3-delayed-onset",
            kind: FamilyKind::Regression,
            own_onset: true,
            runs: 100,
            spec: |_| {
                let mut s = regression(3.0, 1.0);
                s.regression.onset_s = 1200.0;
                s
            },
        },
        Family {
            name: "err-x3-during-spike",
            kind: FamilyKind::Regression,
            own_onset: true,
            runs: 100,
            spec: |_| {
                let mut s = regression(3.0, 1.0);
                s.spike = Some(SPIKE);
                s.regression.onset_s = SPIKE.start_s;
                s
            },
        },
        Family {
            name: "lat+10%",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(1.0, 1.10),
        },
        Family {
            name: "lat+25%",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(1.0, 1.25),
        },
        Family {
            name: "lat+60%",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(1.0, 1.60),
        },
        Family {
            name: "lat-tail-3%x10",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| {
                let mut s = regression(1.0, 1.0);
                s.regression.tail_fraction = 0.03;
                s.regression.tail_factor = 10.0;
                s
            },
        },
    ]
}

/// The judges compared (name, settings); the oracle comes on top.
pub fn contenders(alpha: f64) -> Vec<(&'static str, JudgeSettings)> {
    let with = |judge: JudgeKind, preset: Option<ThresholdPreset>| {
        let mut s = JudgeSettings {
            judge,
            alpha,
            ..JudgeSettings::default()
        };
        if let Some(p) = preset {
            s.threshold.preset = p;
        }
        s
    };
    vec![
        ("sequential", with(JudgeKind::Sequential, None)),
        ("kayenta", with(JudgeKind::Kayenta, None)),
        (
            "flagger-tutorial",
            with(JudgeKind::Threshold, Some(ThresholdPreset::FlaggerTutorial)),
        ),
        (
            "flagger-fast",
            with(JudgeKind::Threshold, Some(ThresholdPreset::FlaggerFast)),
        ),
        (
            "argo-docs",
            with(JudgeKind::Threshold, Some(ThresholdPreset::ArgoDocs)),
        ),
    ]
}

/// The oracle: Wald SPRT on the canary's counts with the true null and alternative.
pub fn oracle(intervals: &[Interval], truths: &[Truth], alpha: f64) -> Option<f64> {
    let threshold = (1.0 / alpha).ln();
    let mut llr = 0.0;
    for (iv, truth) in intervals.iter().zip(truths) {
        let Some(alt) = &truth.alt else { continue };
        llr += interval_llr(iv, truth.p0, &truth.q0, alt);
        if llr >= threshold {
            return Some(iv.t);
        }
    }
    None
}

/// A reference between the oracle and the real judges: told the true rates and distributions
/// like the oracle, but *not* the onset. It mixes the same SPRT over the start time with the
/// sequential judge's [`StartPrior`] (`R_t = (R_{t−1} + π(t))·LR_t`, fail at `R_t ≥ 1/α`:
/// valid like the judge), so its distance to the oracle is the price of not knowing when the
/// regression starts, which no real judge escapes.
pub fn oracle_unknown_onset(intervals: &[Interval], truths: &[Truth], alpha: f64) -> Option<f64> {
    let threshold = (1.0 / alpha).ln();
    let prior = StartPrior::default();
    let mut log_r = f64::NEG_INFINITY;
    let mut first: Option<f64> = None;
    let mut last_u = 0.0;
    for (iv, truth) in intervals.iter().zip(truths) {
        let mass = match first {
            None => {
                first = Some(iv.t);
                prior.at_start
            }
            Some(t0) => {
                let u = (iv.t - t0).max(last_u);
                let m = prior.spread(u) - prior.spread(last_u);
                last_u = u;
                m
            }
        };
        let llr = interval_llr(iv, truth.p0, &truth.q0, &truth.if_regressed);
        // ln(exp(log_r) + mass) + llr, without overflow.
        let m = log_r.max(mass.ln());
        if m > f64::NEG_INFINITY {
            log_r = m + ((log_r - m).exp() + (mass.ln() - m).exp()).ln() + llr;
        }
        if log_r >= threshold {
            return Some(iv.t);
        }
    }
    None
}

/// The canary's log likelihood ratio of one interval: alternative `(p1, q1)` against the null
/// `(p0, q0)` (error ratio, latency bucket probabilities).
fn interval_llr(iv: &Interval, p0: f64, q0: &[f64], (p1, q1): &(f64, Vec<f64>)) -> f64 {
    let c = &iv.canary;
    let (x, n) = (c.errors as f64, c.requests as f64);
    let p0 = p0.clamp(1e-12, 1.0 - 1e-12);
    let p1 = p1.clamp(1e-12, 1.0 - 1e-12);
    let mut llr = x * (p1 / p0).ln() + (n - x) * ((1.0 - p1) / (1.0 - p0)).ln();
    if let Some(h) = &c.latency_le_ms {
        let mut prev = 0;
        for ((_, cum), (a, b)) in h.iter().zip(q1.iter().zip(q0)) {
            let count = cum - prev;
            prev = *cum;
            if count > 0 && *a > 0.0 && *b > 0.0 {
                llr += count as f64 * (a / b).ln();
            }
        }
    }
    llr
}

/// Outcome of one run: the fail time of every contender (in `contenders` order), the oracle
/// and the oracle that is not told the onset.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub judges: Vec<Option<f64>>,
    pub oracle: Option<f64>,
    pub oracle_unknown_onset: Option<f64>,
}

/// Runs one seeded scenario through every contender and the oracle.
pub fn run_one(
    spec: &SimSpec,
    seed: u64,
    judges: &[(&'static str, JudgeSettings)],
    alpha: f64,
) -> RunOutcome {
    let (intervals, truths) = simulate(spec, seed);
    let fails = judges
        .iter()
        .map(|(_, settings)| {
            let mut judge = build(settings);
            replay(judge.as_mut(), &intervals).failed_at_s
        })
        .collect();
    RunOutcome {
        judges: fails,
        oracle: oracle(&intervals, &truths, alpha),
        oracle_unknown_onset: oracle_unknown_onset(&intervals, &truths, alpha),
    }
}

/// Per-family, per-judge statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeStats {
    pub judge: String,
    pub runs: usize,
    /// A/A: runs failed; regression: runs failed before the onset.
    pub false_fails: usize,
    /// Regression: runs failed after the onset.
    pub detections: usize,
    /// Delays after the onset of the detections, seconds (per run; `None` = not detected).
    pub delays: Vec<Option<f64>>,
}

/// Results of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyResult {
    pub family: String,
    pub kind: FamilyKind,
    pub onset_s: f64,
    /// Run time left after the onset (where a missed run is censored).
    pub horizon_s: f64,
    pub judges: Vec<JudgeStats>,
}

/// The whole bench.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub config: BenchConfig,
    pub families: Vec<FamilyResult>,
}

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z ^ (z >> 33)
}

/// Runs per family for `cfg`.
pub fn runs_for(family: &Family, cfg: &BenchConfig) -> usize {
    match cfg.runs {
        Some(r) => r.max(1),
        None if cfg.quick => (family.runs / 5).max(4),
        None => family.runs,
    }
}

/// Runs the bench over `families`; `progress` is called after every run.
pub fn run_bench(
    cfg: &BenchConfig,
    families: &[Family],
    progress: &(dyn Fn() + Sync),
) -> BenchReport {
    let judges = contenders(cfg.alpha);
    let jobs: Vec<(usize, usize)> = families
        .iter()
        .enumerate()
        .flat_map(|(f, fam)| (0..runs_for(fam, cfg)).map(move |i| (f, i)))
        .collect();
    let results: Mutex<Vec<Option<RunOutcome>>> = Mutex::new(vec![None; jobs.len()]);
    let next = AtomicUsize::new(0);
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.threads
    };
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(f, i)) = jobs.get(k) else { break };
                    let spec = families[f].spec_for(i, cfg);
                    let outcome =
                        run_one(&spec, mix(cfg.seed, f as u64, i as u64), &judges, cfg.alpha);
                    if let Ok(mut r) = results.lock() {
                        r[k] = Some(outcome);
                    }
                    progress();
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_default();
    let mut out = Vec::new();
    for (f, fam) in families.iter().enumerate() {
        let spec0 = fam.spec_for(0, cfg);
        let onset = spec0.regression.onset_s;
        let horizon = (spec0.duration_s - onset).max(0.0);
        let outcomes: Vec<&RunOutcome> = jobs
            .iter()
            .zip(&results)
            .filter(|((jf, _), _)| *jf == f)
            .filter_map(|(_, r)| r.as_ref())
            .collect();
        let mut stats = Vec::new();
        let names = judges
            .iter()
            .map(|j| j.0)
            .chain([ORACLE_UNKNOWN_ONSET, "oracle"]);
        for (j, name) in names.enumerate() {
            let mut s = JudgeStats {
                judge: name.to_string(),
                runs: outcomes.len(),
                false_fails: 0,
                detections: 0,
                delays: Vec::new(),
            };
            for o in &outcomes {
                let fail = match j.checked_sub(judges.len()) {
                    None => o.judges[j],
                    Some(0) => o.oracle_unknown_onset,
                    Some(_) => o.oracle,
                };
                let delay = match (fam.kind, fail) {
                    (FamilyKind::AA, Some(_)) => {
                        s.false_fails += 1;
                        None
                    }
                    (FamilyKind::Regression, Some(t)) if t <= onset => {
                        s.false_fails += 1;
                        None
                    }
                    (FamilyKind::Regression, Some(t)) => {
                        s.detections += 1;
                        Some(t - onset)
                    }
                    (_, None) => None,
                };
                s.delays.push(delay);
            }
            stats.push(s);
        }
        out.push(FamilyResult {
            family: fam.name.to_string(),
            kind: fam.kind,
            onset_s: onset,
            horizon_s: horizon,
            judges: stats,
        });
    }
    BenchReport {
        config: cfg.clone(),
        families: out,
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

/// How a number relates to the quantity it stands for: exact, or only a bound (a run a judge
/// never failed is censored at the run's end, so a median over such runs is a lower bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Exact,
    AtLeast,
    AtMost,
}

impl Bound {
    fn prefix(self) -> &'static str {
        match self {
            Bound::Exact => "",
            Bound::AtLeast => "≥",
            Bound::AtMost => "≤",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bound::Exact => "exact",
            Bound::AtLeast => "at_least",
            Bound::AtMost => "at_most",
        }
    }

    /// The bound of `a / b` given the bounds of `a` and `b` (`None` = no bound follows).
    fn ratio(a: Bound, b: Bound) -> Option<Bound> {
        match (a, b) {
            (Bound::Exact, Bound::Exact) => Some(Bound::Exact),
            (Bound::AtLeast | Bound::Exact, Bound::AtMost | Bound::Exact) => Some(Bound::AtLeast),
            (Bound::AtMost | Bound::Exact, Bound::AtLeast | Bound::Exact) => Some(Bound::AtMost),
            _ => None,
        }
    }

    /// The bound of a product (or geometric mean) of terms with bounds `a` and `b`.
    fn combine(a: Bound, b: Bound) -> Option<Bound> {
        match (a, b) {
            (x, Bound::Exact) | (Bound::Exact, x) => Some(x),
            (x, y) if x == y => Some(x),
            _ => None,
        }
    }
}

/// A value with its [`Bound`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounded {
    pub value: f64,
    pub bound: Bound,
}

impl Bounded {
    fn text(&self, suffix: &str) -> String {
        format!("{}{:.1}{suffix}", self.bound.prefix(), self.value)
    }

    fn json(&self) -> Value {
        json!({"value": num(self.value), "bound": self.bound.name()})
    }

    fn ratio(a: Bounded, b: Bounded) -> Option<Bounded> {
        (b.value > 0.0 && a.value > 0.0).then_some(())?;
        Some(Bounded {
            value: a.value / b.value,
            bound: Bound::ratio(a.bound, b.bound)?,
        })
    }
}

/// Median delay of one judge on one regression family: over the runs it failed after the
/// onset (their delays) and the runs it never failed (censored at `horizon_s`, the run's time
/// left after the onset). Runs failed before the onset are false alarms, not delays, and are
/// left out. A median that falls on a censored run is a lower bound.
fn censored_median(j: &JudgeStats, horizon_s: f64) -> Option<Bounded> {
    let misses = j.runs.saturating_sub(j.detections + j.false_fails);
    let mut sample: Vec<(f64, bool)> = j
        .delays
        .iter()
        .flatten()
        .map(|d| (*d, false))
        .chain(std::iter::repeat_n((horizon_s, true), misses))
        .collect();
    if sample.is_empty() {
        return None;
    }
    sample.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let n = sample.len();
    let (lo, hi) = if n % 2 == 1 {
        (sample[n / 2], sample[n / 2])
    } else {
        (sample[n / 2 - 1], sample[n / 2])
    };
    Some(Bounded {
        value: 0.5 * (lo.0 + hi.0),
        bound: if lo.1 || hi.1 {
            Bound::AtLeast
        } else {
            Bound::Exact
        },
    })
}

/// Summary numbers of one judge over a set of families.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub judge: String,
    pub aa_runs: usize,
    pub aa_fails: usize,
    pub reg_runs: usize,
    pub early_fails: usize,
    pub detections: usize,
    /// Median delay over the detected runs of all the families (pooled).
    pub median_delay_s: Option<f64>,
    /// One family: its censored median delay (see [`censored_median`]).
    pub family_median_s: Option<Bounded>,
    /// This judge's median delay / the oracle's, per family; over several families their
    /// geometric mean.
    pub vs_oracle: Option<Bounded>,
    /// The Flagger tutorial preset's median delay / this judge's, per family; over several
    /// families their geometric mean.
    pub speedup_vs_flagger: Option<Bounded>,
    /// This judge's median delay / the oracle-not-told-the-onset's, like `vs_oracle`.
    pub vs_oracle_unknown_onset: Option<Bounded>,
    /// Regression families summarised (the geometric means are over all of them, or absent).
    pub families_in_ratios: usize,
}

fn geomean(values: &[Bounded]) -> Option<Bounded> {
    let first = values.first()?;
    let mut bound = first.bound;
    for v in &values[1..] {
        bound = Bound::combine(bound, v.bound)?;
    }
    let logs: Vec<f64> = values.iter().map(|v| v.value.ln()).collect();
    Some(Bounded {
        value: (logs.iter().sum::<f64>() / logs.len() as f64).exp(),
        bound,
    })
}

/// Per family: (vs oracle, speedup vs flagger-tutorial, vs the oracle not told the onset).
fn family_ratios(
    f: &FamilyResult,
    judge_index: usize,
) -> (Option<Bounded>, Option<Bounded>, Option<Bounded>) {
    let median_of = |name: &str| {
        f.judges
            .iter()
            .find(|x| x.judge == name)
            .and_then(|x| censored_median(x, f.horizon_s))
    };
    let me = &f.judges[judge_index];
    let mine = censored_median(me, f.horizon_s);
    let same = |name: &str| {
        (me.judge == name).then_some(Bounded {
            value: 1.0,
            bound: Bound::Exact,
        })
    };
    let oracle = median_of("oracle");
    let flagger = median_of("flagger-tutorial");
    let unknown = median_of(ORACLE_UNKNOWN_ONSET);
    (
        same("oracle").or_else(|| mine.zip(oracle).and_then(|(m, o)| Bounded::ratio(m, o))),
        same("flagger-tutorial")
            .or_else(|| flagger.zip(mine).and_then(|(fl, m)| Bounded::ratio(fl, m))),
        same(ORACLE_UNKNOWN_ONSET)
            .or_else(|| mine.zip(unknown).and_then(|(m, o)| Bounded::ratio(m, o))),
    )
}

fn summarize(families: &[&FamilyResult], judge_index: usize) -> Summary {
    let mut s = Summary {
        judge: families
            .first()
            .map_or(String::new(), |f| f.judges[judge_index].judge.clone()),
        aa_runs: 0,
        aa_fails: 0,
        reg_runs: 0,
        early_fails: 0,
        detections: 0,
        median_delay_s: None,
        family_median_s: None,
        vs_oracle: None,
        speedup_vs_flagger: None,
        vs_oracle_unknown_onset: None,
        families_in_ratios: 0,
    };
    let mut delays = Vec::new();
    let (mut vs_oracle, mut vs_flagger, mut vs_unknown) =
        (Some(Vec::new()), Some(Vec::new()), Some(Vec::new()));
    for f in families {
        let j = &f.judges[judge_index];
        match f.kind {
            FamilyKind::AA => {
                s.aa_runs += j.runs;
                s.aa_fails += j.false_fails;
            }
            FamilyKind::Regression => {
                s.reg_runs += j.runs;
                s.early_fails += j.false_fails;
                s.detections += j.detections;
                delays.extend(j.delays.iter().flatten().copied());
                s.families_in_ratios += 1;
                let (o, fl, u) = family_ratios(f, judge_index);
                vs_unknown = vs_unknown.zip(u).map(|(mut v, u)| {
                    v.push(u);
                    v
                });
                // A family without a ratio leaves the geometric mean undefined.
                vs_oracle = vs_oracle.zip(o).map(|(mut v, o)| {
                    v.push(o);
                    v
                });
                vs_flagger = vs_flagger.zip(fl).map(|(mut v, fl)| {
                    v.push(fl);
                    v
                });
                if families.len() == 1 {
                    s.family_median_s = censored_median(j, f.horizon_s);
                }
            }
        }
    }
    s.median_delay_s = median(delays);
    s.vs_oracle = vs_oracle.and_then(|v| geomean(&v));
    s.speedup_vs_flagger = vs_flagger.and_then(|v| geomean(&v));
    s.vs_oracle_unknown_onset = vs_unknown.and_then(|v| geomean(&v));
    s
}

impl BenchReport {
    /// Per-judge summary over all families.
    pub fn overall(&self) -> Vec<Summary> {
        let all: Vec<&FamilyResult> = self.families.iter().collect();
        let n = all.first().map_or(0, |f| f.judges.len());
        (0..n).map(|j| summarize(&all, j)).collect()
    }

    /// The tables as text.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let fmt_opt =
            |v: Option<f64>, suffix: &str| v.map_or("-".to_string(), |x| format!("{x:.1}{suffix}"));
        let fmt_b =
            |v: Option<Bounded>, suffix: &str| v.map_or("-".to_string(), |x| x.text(suffix));
        let pct = |a: usize, b: usize| {
            if b == 0 {
                "-".to_string()
            } else {
                format!("{:.1}%", 100.0 * a as f64 / b as f64)
            }
        };
        for f in &self.families {
            let runs = f.judges.first().map_or(0, |j| j.runs);
            match f.kind {
                FamilyKind::AA => {
                    out.push_str(&format!("\n{} (A/A, {runs} runs)\n", f.family));
                    out.push_str(&format!("  {:<20} {:>12}\n", "judge", "false fails"));
                    for j in &f.judges {
                        out.push_str(&format!(
                            "  {:<20} {:>5} {:>6}\n",
                            j.judge,
                            j.false_fails,
                            pct(j.false_fails, j.runs)
                        ));
                    }
                }
                FamilyKind::Regression => {
                    out.push_str(&format!(
                        "\n{} (regression at {}s, {runs} runs, {}s left after it)\n",
                        f.family, f.onset_s, f.horizon_s
                    ));
                    out.push_str(&format!(
                        "  {:<20} {:>9} {:>7} {:>12} {:>10} {:>15}\n",
                        "judge", "detected", "early", "median delay", "vs oracle", "vs flagger-t"
                    ));
                    let fam = [f];
                    for (idx, j) in f.judges.iter().enumerate() {
                        let s = summarize(&fam, idx);
                        out.push_str(&format!(
                            "  {:<20} {:>9} {:>7} {:>12} {:>10} {:>15}\n",
                            j.judge,
                            pct(j.detections, j.runs),
                            j.false_fails,
                            fmt_b(s.family_median_s, "s"),
                            fmt_b(s.vs_oracle, "x"),
                            fmt_b(s.speedup_vs_flagger, "x faster"),
                        ));
                    }
                }
            }
        }
        let overall = self.overall();
        let fams = overall.first().map_or(0, |s| s.families_in_ratios);
        out.push_str("\noverall\n");
        out.push_str(&format!(
            "  {:<20} {:>16} {:>10} {:>7} {:>12} {:>10} {:>15} {:>17}\n",
            "judge",
            "A/A false fails",
            "detected",
            "early",
            "median delay",
            "vs oracle",
            "vs flagger-t",
            "vs onset-unknown"
        ));
        for s in &overall {
            out.push_str(&format!(
                "  {:<20} {:>5}/{:<5} {:>5} {:>10} {:>7} {:>12} {:>10} {:>15} {:>17}\n",
                s.judge,
                s.aa_fails,
                s.aa_runs,
                pct(s.aa_fails, s.aa_runs),
                pct(s.detections, s.reg_runs),
                s.early_fails,
                fmt_opt(s.median_delay_s, "s"),
                fmt_b(s.vs_oracle, "x"),
                fmt_b(s.speedup_vs_flagger, "x faster"),
                fmt_b(s.vs_oracle_unknown_onset, "x"),
            ));
        }
        out.push_str(&format!(
            "\nalpha {} · seed {} · {} s intervals for every judge and the oracle (threshold presets pool them into their own checks, flagger-tutorial: 1 min)\n\
             onset: regressions start {} (delayed-onset and during-spike families: at their own onset)\n\
             median delay (per family): seconds from the onset to the judge's fail, median over the runs; a run the judge never failed counts as\n\
             \x20 censored at the time left after the onset (≥: the median is a lower bound); fails before the onset are false alarms ('early'), not delays\n\
             vs oracle: judge's median delay / oracle's · vs flagger-t: flagger-tutorial's median delay / judge's (≥: a lower bound, flagger missed)\n\
             overall: those ratios' geometric mean over the {fams} regression families (each family weighs the same); median delay: over detected runs, pooled\n\
             oracle: Wald SPRT told the true rates, distributions and onset · {ORACLE_UNKNOWN_ONSET}: told the same but not the onset (start-time mixture, same prior as sequential)\n\
             vs onset-unknown: judge's median delay / {ORACLE_UNKNOWN_ONSET}'s (what is left once the price of not knowing the onset is paid)\n",
            self.config.alpha,
            self.config.seed,
            self.config.interval_s,
            if self.config.onset_s > 0.0 {
                format!("{} s after the canary's start", self.config.onset_s)
            } else {
                "with the canary's first interval".to_string()
            }
        ));
        out
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let bounded = |b: Option<Bounded>| b.map_or(Value::Null, |b| b.json());
        let summary_json = |s: &Summary| {
            json!({
                "judge": s.judge,
                "aa_runs": s.aa_runs,
                "aa_false_fails": s.aa_fails,
                "aa_false_fail_rate": if s.aa_runs > 0 { num(s.aa_fails as f64 / s.aa_runs as f64) } else { Value::Null },
                "regression_runs": s.reg_runs,
                "early_fails": s.early_fails,
                "detection_rate": if s.reg_runs > 0 { num(s.detections as f64 / s.reg_runs as f64) } else { Value::Null },
                "median_delay_detected_s": s.median_delay_s.map_or(Value::Null, num),
                "median_delay_censored_s": bounded(s.family_median_s),
                "median_delay_vs_oracle": bounded(s.vs_oracle),
                "speedup_vs_flagger_tutorial": bounded(s.speedup_vs_flagger),
                "median_delay_vs_oracle_onset_unknown": bounded(s.vs_oracle_unknown_onset),
                "families_in_ratios": s.families_in_ratios,
            })
        };
        let families: Vec<Value> = self
            .families
            .iter()
            .map(|f| {
                let fam = [f];
                json!({
                    "family": f.family,
                    "kind": match f.kind { FamilyKind::AA => "aa", FamilyKind::Regression => "regression" },
                    "onset_s": num(f.onset_s),
                    "horizon_after_onset_s": num(f.horizon_s),
                    "judges": (0..f.judges.len()).map(|j| summary_json(&summarize(&fam, j))).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "bench": "canary",
            "alpha": num(self.config.alpha),
            "seed": self.config.seed,
            "quick": self.config.quick,
            "interval_s": num(self.config.interval_s),
            "onset_s": num(self.config.onset_s),
            "definitions": {
                "median_delay_censored_s": "per family: median over runs of (fail time - onset); a run never failed counts as censored at (duration - onset), so the median is then a lower bound; fails before the onset are excluded (early_fails)",
                "median_delay_vs_oracle": "per family: judge's censored median / oracle's; overall: geometric mean over regression families",
                "speedup_vs_flagger_tutorial": "per family: flagger-tutorial's censored median / judge's; overall: geometric mean over regression families",
                "median_delay_detected_s": "median delay over the detected runs of the families, pooled",
                "median_delay_vs_oracle_onset_unknown": "like median_delay_vs_oracle against the oracle that is told the rates and distributions but not the onset",
            },
            "families": families,
            "overall": self.overall().iter().map(summary_json).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
