//! The reference no judge can beat: a Wald SPRT told the truth (with and without the onset).

use crate::Interval;
use crate::sequential::StartPrior;
use crate::sim::Truth;

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
