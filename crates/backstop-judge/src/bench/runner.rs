//! Running the families: every contender and both oracles on the same seeded intervals.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::oracle::{oracle, oracle_unknown_onset};
use super::{BenchConfig, Family, FamilyKind, ORACLE_UNKNOWN_ONSET};
use crate::scenario::replay;
use crate::sim::{SimSpec, simulate};
use crate::threshold::ThresholdPreset;
use crate::{JudgeKind, JudgeSettings, build};

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
