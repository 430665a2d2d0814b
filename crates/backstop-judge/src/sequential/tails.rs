//! The latency signal: the body test plus the tail tests at the baseline's p90 / p99 / p99.9.

use super::mixture::log_sum_exp;
use super::odds_ratio::OddsRatioTest;
use super::tilt::TiltTest;
use crate::{ArmCounts, hist};

/// Where the tail tests look: the latency quantiles of the baseline (p90, p99, p99.9). Each tail
/// test asks, per interval, "is the canary more often slower than the bound at this quantile?".
/// The bound is picked from the baseline's earlier intervals plus this interval's pooled
/// histogram: both are fixed given the conditioning of the test (earlier data, this interval's
/// margins), so the choice costs no validity, and three tests dilute the evidence far less than
/// one test per bucket bound (a histogram has 10–20 of them).
pub const TAIL_QUANTILES: [f64; 3] = [0.9, 0.99, 0.999];

/// One tail test: exceedances of the bound at `quantile`.
#[derive(Debug)]
pub(super) struct TailTest {
    pub(super) quantile: f64,
    pub(super) test: OddsRatioTest,
    /// The bound used in the latest interval with traffic, ms.
    pub(super) bound: Option<f64>,
}

#[derive(Debug)]
pub(super) struct LatencyTest {
    bounds: Vec<f64>,
    pub(super) tilt: TiltTest,
    pub(super) tails: Vec<TailTest>,
    pub(super) merged_canary: Vec<(f64, u64)>,
    pub(super) merged_baseline: Vec<(f64, u64)>,
}

/// Count at or under each finite bound (in `bounds` order) of a cumulative histogram.
fn finite_le(h: &[(f64, u64)]) -> impl Iterator<Item = u64> + '_ {
    h.iter().filter(|(b, _)| b.is_finite()).map(|(_, c)| *c)
}

impl LatencyTest {
    pub(super) fn new(first: &[(f64, u64)], tail_grid: &[f64], grid_points: usize) -> Self {
        let bounds: Vec<f64> = first
            .iter()
            .map(|b| b.0)
            .filter(|b| b.is_finite())
            .collect();
        let tails = TAIL_QUANTILES
            .iter()
            .map(|&quantile| TailTest {
                quantile,
                test: OddsRatioTest::new(tail_grid),
                bound: None,
            })
            .collect();
        let tilt = TiltTest::new(&bounds, grid_points);
        Self {
            bounds,
            tilt,
            tails,
            merged_canary: Vec::new(),
            merged_baseline: Vec::new(),
        }
    }

    /// Index of the smallest bound with at most `1 − q` of the reference requests above it
    /// (the top bound when none has), from `le` counts out of `total`.
    pub(super) fn bound_at(q: f64, le: &[u64], total: u64) -> usize {
        // The epsilon keeps `1 − 0.9` (0.0999…98 in binary) from excluding exactly 10 %.
        let allowed = (1.0 - q) * total as f64 + 1e-9;
        le.iter()
            .position(|c| total.saturating_sub(*c) as f64 <= allowed)
            .unwrap_or(le.len().saturating_sub(1))
    }

    pub(super) fn update(&mut self, t: f64, canary: &ArmCounts, baseline: &ArmCounts) {
        let (Some(hc), Some(hb)) = (&canary.latency_le_ms, &baseline.latency_le_ms) else {
            return;
        };
        let finite = |h: &[(f64, u64)]| {
            h.iter()
                .filter(|b| b.0.is_finite())
                .map(|b| b.0)
                .eq(self.bounds.iter().copied())
        };
        if !finite(hc) || !finite(hb) || self.bounds.is_empty() {
            return;
        }
        hist::add_into(&mut self.merged_canary, hc);
        hist::add_into(&mut self.merged_baseline, hb);
        let (le_c, le_b): (Vec<u64>, Vec<u64>) = (finite_le(hc).collect(), finite_le(hb).collect());
        // Reference for picking the bounds: every baseline interval so far (this one included)
        // plus this interval's canary, i.e. earlier baseline intervals + this interval pooled.
        let total = |h: &[(f64, u64)]| h.last().map_or(0, |b| b.1);
        let reference: Vec<u64> = finite_le(&self.merged_baseline)
            .zip(&le_c)
            .map(|(b, c)| b + c)
            .collect();
        let reference_total = total(&self.merged_baseline) + total(hc);
        for tail in &mut self.tails {
            let j = Self::bound_at(tail.quantile, &reference, reference_total);
            let xc = canary.requests.saturating_sub(le_c[j]);
            let xb = baseline.requests.saturating_sub(le_b[j]);
            tail.test
                .update(t, xc, canary.requests, xb, baseline.requests);
            if canary.requests > 0 && baseline.requests > 0 {
                tail.bound = Some(self.bounds[j]);
            }
        }
        let per_bucket = |h: &[(f64, u64)]| {
            let mut prev = 0;
            h.iter()
                .map(|(_, c)| {
                    let d = c.saturating_sub(prev);
                    prev = *c;
                    d
                })
                .collect::<Vec<u64>>()
        };
        self.tilt.update(t, &per_bucket(hc), &per_bucket(hb));
    }

    /// Mean of the tail tests, ln.
    pub(super) fn tails_log_e(&self) -> f64 {
        if self.tails.is_empty() {
            return 0.0;
        }
        let each: Vec<f64> = self.tails.iter().map(|t| t.test.log_e()).collect();
        log_sum_exp(&each) - (each.len() as f64).ln()
    }

    /// Half the tilt test (body shifts) plus half the mean of the tail tests, ln.
    pub(super) fn log_e(&self) -> f64 {
        log_sum_exp(&[self.tilt.log_e(), self.tails_log_e()]) - 2.0_f64.ln()
    }
}
