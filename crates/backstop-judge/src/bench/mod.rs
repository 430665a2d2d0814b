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

pub mod bake;
mod families;
mod oracle;
mod runner;
pub mod scope;
mod summary;
mod table;
#[cfg(test)]
mod tests;

pub use families::{Family, FamilyKind, families};
pub use oracle::{oracle, oracle_unknown_onset};
pub use runner::{
    BenchReport, FamilyResult, JudgeStats, RunOutcome, contenders, run_bench, run_one, runs_for,
};
pub use summary::{Bound, Bounded, Summary};

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
