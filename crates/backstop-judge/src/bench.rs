//! `backstop bench canary`: seeded scenario families, every judge plus an oracle, a table per
//! family and overall, and JSON.
//!
//! The oracle is a one-sided Wald SPRT told the truth (per-interval error ratios and latency
//! bucket probabilities of the null and of the actual regression, and the onset): the floor no
//! real judge can beat. On A/A families it tests against a reference regression (errors ×2,
//! latency +25 %) to show its own false-alarm rate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::report::num;
use crate::scenario::replay;
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
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            quick: false,
            seed: 1,
            runs: None,
            alpha: 0.01,
            threads: 0,
        }
    }
}

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
}

fn base(rps: f64, duration_s: f64) -> SimSpec {
    SimSpec {
        interval_s: 5.0,
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
        onset_s: 60.0,
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
            runs: 200,
            spec: |i| steady(3.0, 3600.0, i),
        },
        Family {
            name: "aa-steady-30rps",
            kind: FamilyKind::AA,
            runs: 200,
            spec: |i| steady(30.0, 3600.0, i),
        },
        Family {
            name: "aa-steady-300rps",
            kind: FamilyKind::AA,
            runs: 200,
            spec: |i| steady(300.0, 1800.0, i),
        },
        Family {
            name: "aa-varying-load",
            kind: FamilyKind::AA,
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
            runs: 100,
            spec: |_| regression(1.5, 1.0),
        },
        Family {
            name: "err-x2",
            kind: FamilyKind::Regression,
            runs: 100,
            spec: |_| regression(2.0, 1.0),
        },
        Family {
            name: "err-x3",
            kind: FamilyKind::Regression,
            runs: 100,
            spec: |_| regression(3.0, 1.0),
        },
        Family {
            name: "err-x6",
            kind: FamilyKind::Regression,
            runs: 100,
            spec: |_| regression(6.0, 1.0),
        },
        Family {
            name: "err-x3-low-traffic",
            kind: FamilyKind::Regression,
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
            runs: 100,
            spec: |_| regression(1.0, 1.10),
        },
        Family {
            name: "lat+25%",
            kind: FamilyKind::Regression,
            runs: 100,
            spec: |_| regression(1.0, 1.25),
        },
        Family {
            name: "lat+60%",
            kind: FamilyKind::Regression,
            runs: 100,
            spec: |_| regression(1.0, 1.60),
        },
        Family {
            name: "lat-tail-3%x10",
            kind: FamilyKind::Regression,
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
        let Some((p1, q1)) = &truth.alt else { continue };
        let c = &iv.canary;
        let (x, n) = (c.errors as f64, c.requests as f64);
        let p0 = truth.p0.clamp(1e-12, 1.0 - 1e-12);
        let p1 = p1.clamp(1e-12, 1.0 - 1e-12);
        llr += x * (p1 / p0).ln() + (n - x) * ((1.0 - p1) / (1.0 - p0)).ln();
        if let Some(h) = &c.latency_le_ms {
            let mut prev = 0;
            for ((_, cum), (a, b)) in h.iter().zip(q1.iter().zip(&truth.q0)) {
                let count = cum - prev;
                prev = *cum;
                if count > 0 && *a > 0.0 && *b > 0.0 {
                    llr += count as f64 * (a / b).ln();
                }
            }
        }
        if llr >= threshold {
            return Some(iv.t);
        }
    }
    None
}

/// Outcome of one run: the fail time of every contender (in `contenders` order) and the oracle.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub judges: Vec<Option<f64>>,
    pub oracle: Option<f64>,
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
                    let spec = (families[f].spec)(i);
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
        let onset = (fam.spec)(0).regression.onset_s;
        let outcomes: Vec<&RunOutcome> = jobs
            .iter()
            .zip(&results)
            .filter(|((jf, _), _)| *jf == f)
            .filter_map(|(_, r)| r.as_ref())
            .collect();
        let mut stats = Vec::new();
        let names = judges.iter().map(|j| j.0).chain(std::iter::once("oracle"));
        for (j, name) in names.enumerate() {
            let mut s = JudgeStats {
                judge: name.to_string(),
                runs: outcomes.len(),
                false_fails: 0,
                detections: 0,
                delays: Vec::new(),
            };
            for o in &outcomes {
                let fail = if j < judges.len() {
                    o.judges[j]
                } else {
                    o.oracle
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

/// Median delays of `a` and `b` over the runs both detected (paired), and how many.
fn paired(a: &[Option<f64>], b: &[Option<f64>]) -> (Option<f64>, Option<f64>, usize) {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
        .collect();
    let n = pairs.len();
    (
        median(pairs.iter().map(|p| p.0).collect()),
        median(pairs.iter().map(|p| p.1).collect()),
        n,
    )
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
    pub median_delay_s: Option<f64>,
    /// Median delay / oracle's median delay, over runs both detected.
    pub vs_oracle: Option<f64>,
    /// Flagger tutorial's median delay / this judge's, over runs both detected.
    pub speedup_vs_flagger: Option<f64>,
    /// Geometric mean over regression families of the per-family `vs_oracle`.
    pub vs_oracle_geomean: Option<f64>,
    /// Geometric mean over regression families of the per-family `speedup_vs_flagger`.
    pub speedup_vs_flagger_geomean: Option<f64>,
}

fn geomean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let logs: Vec<f64> = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .map(f64::ln)
        .collect();
    (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
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
        vs_oracle: None,
        speedup_vs_flagger: None,
        vs_oracle_geomean: None,
        speedup_vs_flagger_geomean: None,
    };
    let (mut mine, mut oracle, mut flagger) = (Vec::new(), Vec::new(), Vec::new());
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
                mine.extend_from_slice(&j.delays);
                if let Some(o) = f.judges.iter().find(|x| x.judge == "oracle") {
                    oracle.extend_from_slice(&o.delays);
                }
                if let Some(o) = f.judges.iter().find(|x| x.judge == "flagger-tutorial") {
                    flagger.extend_from_slice(&o.delays);
                }
            }
        }
    }
    s.median_delay_s = median(mine.iter().flatten().copied().collect());
    let (m, o, _) = paired(&mine, &oracle);
    s.vs_oracle = m.zip(o).and_then(|(m, o)| (o > 0.0).then_some(m / o));
    let (m, fl, _) = paired(&mine, &flagger);
    s.speedup_vs_flagger = m.zip(fl).and_then(|(m, fl)| (m > 0.0).then_some(fl / m));
    if families.len() > 1 {
        let per_family: Vec<Summary> = families
            .iter()
            .filter(|f| f.kind == FamilyKind::Regression)
            .map(|f| summarize(&[*f], judge_index))
            .collect();
        s.vs_oracle_geomean = geomean(per_family.iter().filter_map(|x| x.vs_oracle));
        s.speedup_vs_flagger_geomean =
            geomean(per_family.iter().filter_map(|x| x.speedup_vs_flagger));
    }
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
                    out.push_str(&format!("  {:<18} {:>12}\n", "judge", "false fails"));
                    for j in &f.judges {
                        out.push_str(&format!(
                            "  {:<18} {:>5} {:>6}\n",
                            j.judge,
                            j.false_fails,
                            pct(j.false_fails, j.runs)
                        ));
                    }
                }
                FamilyKind::Regression => {
                    out.push_str(&format!(
                        "\n{} (regression at {}s, {runs} runs)\n",
                        f.family, f.onset_s
                    ));
                    out.push_str(&format!(
                        "  {:<18} {:>9} {:>7} {:>12} {:>10} {:>12}\n",
                        "judge", "detected", "early", "median delay", "vs oracle", "vs flagger-t"
                    ));
                    let fam = [f];
                    for (idx, j) in f.judges.iter().enumerate() {
                        let s = summarize(&fam, idx);
                        out.push_str(&format!(
                            "  {:<18} {:>9} {:>7} {:>12} {:>10} {:>12}\n",
                            j.judge,
                            pct(j.detections, j.runs),
                            j.false_fails,
                            fmt_opt(s.median_delay_s, "s"),
                            fmt_opt(s.vs_oracle, "x"),
                            fmt_opt(s.speedup_vs_flagger, "x faster"),
                        ));
                    }
                }
            }
        }
        out.push_str("\noverall\n");
        out.push_str(&format!(
            "  {:<18} {:>16} {:>10} {:>7} {:>12} {:>10} {:>14}\n",
            "judge",
            "A/A false fails",
            "detected",
            "early",
            "median delay",
            "vs oracle",
            "vs flagger-t"
        ));
        for s in self.overall() {
            out.push_str(&format!(
                "  {:<18} {:>5}/{:<5} {:>5} {:>10} {:>7} {:>12} {:>10} {:>14}\n",
                s.judge,
                s.aa_fails,
                s.aa_runs,
                pct(s.aa_fails, s.aa_runs),
                pct(s.detections, s.reg_runs),
                s.early_fails,
                fmt_opt(s.median_delay_s, "s"),
                fmt_opt(s.vs_oracle, "x"),
                fmt_opt(s.speedup_vs_flagger, "x faster"),
            ));
        }
        out.push_str("\nper-family geometric means (regression families)\n");
        out.push_str(&format!(
            "  {:<18} {:>10} {:>14}\n",
            "judge", "vs oracle", "vs flagger-t"
        ));
        for s in self.overall() {
            out.push_str(&format!(
                "  {:<18} {:>10} {:>14}\n",
                s.judge,
                fmt_opt(s.vs_oracle_geomean, "x"),
                fmt_opt(s.speedup_vs_flagger_geomean, "x faster")
            ));
        }
        out.push_str(&format!(
            "\nalpha {} · seed {} · delays in seconds after onset (5 s intervals) · 'vs' ratios use runs both judges detected\n",
            self.config.alpha, self.config.seed
        ));
        out
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let summary_json = |s: &Summary| {
            json!({
                "judge": s.judge,
                "aa_runs": s.aa_runs,
                "aa_false_fails": s.aa_fails,
                "aa_false_fail_rate": if s.aa_runs > 0 { num(s.aa_fails as f64 / s.aa_runs as f64) } else { Value::Null },
                "regression_runs": s.reg_runs,
                "early_fails": s.early_fails,
                "detection_rate": if s.reg_runs > 0 { num(s.detections as f64 / s.reg_runs as f64) } else { Value::Null },
                "median_delay_s": s.median_delay_s.map_or(Value::Null, num),
                "median_delay_vs_oracle": s.vs_oracle.map_or(Value::Null, num),
                "speedup_vs_flagger_tutorial": s.speedup_vs_flagger.map_or(Value::Null, num),
                "median_delay_vs_oracle_family_geomean": s.vs_oracle_geomean.map_or(Value::Null, num),
                "speedup_vs_flagger_tutorial_family_geomean": s.speedup_vs_flagger_geomean.map_or(Value::Null, num),
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
                    "judges": (0..f.judges.len()).map(|j| summary_json(&summarize(&fam, j))).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "bench": "canary",
            "alpha": num(self.config.alpha),
            "seed": self.config.seed,
            "quick": self.config.quick,
            "families": families,
            "overall": self.overall().iter().map(summary_json).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle_detects_a_clear_regression_and_not_before_onset() {
        let mut s = regression(6.0, 1.0);
        s.duration_s = 600.0;
        let (iv, truth) = simulate(&s, 5);
        let t = oracle(&iv, &truth, 0.01).unwrap_or(f64::INFINITY);
        assert!(t > 60.0 && t < 200.0, "oracle at {t}");
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
        let json = a.to_json();
        assert_eq!(json["families"].as_array().map(Vec::len), Some(2));
    }
}
