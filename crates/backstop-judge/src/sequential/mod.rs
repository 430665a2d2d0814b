//! The `sequential` judge (the default): anytime-valid, directional tests of canary vs baseline.
//!
//! **The test.** In every interval and for every binary outcome of a request ("was an error",
//! "was slower than bucket bound `le`"), the 2×2 table canary/baseline × yes/no is looked at
//! *conditionally on its margins* (requests per arm, total "yes" in the interval). Under the null
//! hypothesis (within an interval both arms draw from the same distribution, whatever it is and
//! however it changes over time) the canary's count is hypergeometric, whatever the traffic, the
//! split or a spike that hits both arms. The hypergeometric law is dominated in the convex order
//! by two binomials (Hoeffding 1963): `Bin(canary requests, pooled ratio)` and
//! `Bin(total yes, canary share of requests)`; the second one is the Lindon & Malek (2022)
//! multinomial/Poisson-process form with the observed split of the interval. A binomial
//! likelihood ratio is convex in the count, so its expectation under the null is at most 1:
//! the product over intervals is a test supermartingale (an e-process). The judge uses, per
//! interval, whichever binomial is tighter (smaller variance).
//!
//! The alternative is "the canary's odds are ψ times the baseline's", for ψ on a log-spaced grid
//! in `[min_odds_ratio, max_odds_ratio]` (ψ > 1 only: directional, a better canary never fails);
//! the e-value is the uniform mixture over the grid. The default prior, ψ in 1.3–8, covers the
//! error-ratio regressions of interest (×1.5 to ×6, issue 3; a larger regression is caught at
//! least as fast as ψ = 8 would be, a smaller one later), without spending mass on ψ close to 1
//! or beyond 8 (measured: 1.2–10 was about 1 % slower on the bench, on two seeds).
//! The latency exceedance tests reach further, to [`TAIL_MAX_ODDS_RATIO`]: a tail regression puts
//! requests where the baseline almost never goes. Latency: half a whole-histogram tilt test
//! ([`TiltTest`], shifts of the body) and half the mean of three such e-processes on "slower
//! than the bound at the baseline's p90 / p99 / p99.9" ([`TAIL_QUANTILES`], tail-only
//! regressions); the bound is re-picked every interval from data the test conditions on, so it
//! adapts to the service's latency without costing validity. By Ville's inequality,
//! `P(sup_t E_t ≥ S/α) ≤ α/S` for each of the S analysed signals: the chance of any false `fail`
//! over the whole analysis, across all signals, is at most α however often it is looked at.
//!
//! **Unknown onset.** A regression may show from the first interval (the canary *is* the new
//! version) or later (a leak, a time-triggered bug). Every test mixes over the start time with
//! the [`StartPrior`], defined in seconds so the judge behaves alike at any `analysis.interval`
//! (1 s or 5 s): the price of not knowing the onset is about `ln(1 / prior mass near it)` nats
//! of evidence, the main gap to an oracle that is told the onset.
//!
//! **Shared degradations.** A spike of errors or latency that hits both arms alike leaves the
//! conditional law unchanged, so it cannot fail the canary; the judge keeps watching (it does
//! not pause the rollout) and records in the evidence how many intervals the baseline itself
//! was degraded against its own start.
//!
//! Cost per update: O(grid × buckets); memory: fixed per analysis (no history is kept).

mod judge;
mod mixture;
mod odds_ratio;
mod tails;
#[cfg(test)]
mod tests;
mod tilt;

use serde::{Deserialize, Serialize};

pub use judge::SequentialJudge;
pub use mixture::{START_MASS, START_TAU_S, StartPrior};
pub use odds_ratio::OddsRatioTest;
pub use tails::TAIL_QUANTILES;
pub use tilt::{TILT_MAX, TILT_MIN, TiltTest};

use mixture::log_grid;

/// Options of the `sequential` judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SequentialSettings {
    /// Smallest canary/baseline odds ratio the mixture is tuned for (> 1). Smaller regressions
    /// are still caught, only later.
    #[schemars(extend("exclusiveMinimum" = 1))]
    pub min_odds_ratio: f64,
    /// Largest odds ratio in the mixture (larger regressions are caught at least as fast as
    /// this one; at least `min_odds_ratio`). The latency tail tests extend their grid to at
    /// least [`TAIL_MAX_ODDS_RATIO`].
    #[schemars(extend("exclusiveMinimum" = 1))]
    pub max_odds_ratio: f64,
    /// Number of log-spaced odds ratios in the mixture (2..=64).
    #[schemars(range(min = 2, max = 64))]
    pub grid_points: usize,
}

impl Default for SequentialSettings {
    fn default() -> Self {
        Self {
            min_odds_ratio: 1.3,
            max_odds_ratio: 8.0,
            grid_points: 16,
        }
    }
}

impl SequentialSettings {
    /// The mixture grid (log-spaced, all > 1). Bad values fall back to the defaults' range.
    pub fn grid(&self) -> Vec<f64> {
        let (lo, hi) = self.range();
        log_grid(lo, hi, self.grid_points)
    }

    /// The grid of the latency exceedance ("slower than `le`") tests: from `min_odds_ratio` to
    /// at least [`TAIL_MAX_ODDS_RATIO`]. A tail regression puts requests into buckets the
    /// baseline almost never reaches, so odds ratios in the hundreds are the plausible ones there.
    pub fn tail_grid(&self) -> Vec<f64> {
        let (lo, hi) = self.range();
        log_grid(lo, hi.max(TAIL_MAX_ODDS_RATIO), self.grid_points)
    }

    fn range(&self) -> (f64, f64) {
        let lo = if self.min_odds_ratio.is_finite() && self.min_odds_ratio > 1.0 {
            self.min_odds_ratio
        } else {
            1.3
        };
        let hi = if self.max_odds_ratio.is_finite() && self.max_odds_ratio > lo {
            self.max_odds_ratio
        } else {
            lo.max(8.0)
        };
        (lo, hi)
    }
}

/// Smallest upper end of the latency exceedance tests' odds-ratio grid.
pub const TAIL_MAX_ODDS_RATIO: f64 = 300.0;
