//! The bake: after a wave of environments is promoted, each keeps being judged against the error
//! ratio it had before the deployment (its pre-deploy baseline), with no canary left to compare
//! with. A one-sample, one-sided, anytime-valid test: under the null the new version's requests
//! fail with probability `p ≤ p₀` (the reference); for any `q > p₀` the likelihood ratio
//! `(q/p₀)^x ((1−q)/(1−p₀))^(n−x)` has expectation at most 1 under every such `p` (it is linear in
//! `p` and equals 1 at `p₀`), so it and an average of it over a grid of `q` are e-processes, and
//! Ville's inequality keeps the false-alarm rate at `alpha` however often the bake looks. The
//! ratio depends on the totals only, so the bake stores two counters, not a history, and a
//! controller restarted mid-bake goes on with the same evidence.
//!
//! The reference `p₀` is itself estimated from the pre-deploy baseline, so it is taken as the
//! baseline's upper Clopper-Pearson bound at `alpha/2` and the bake tests at `alpha/2`: a
//! release exactly as good as before fails the bake with probability at most `alpha` (the
//! bound too low, or the test crying wolf against a right bound). Errors that come in bursts
//! (not independent requests) are outside that promise, as for every per-request test.

use serde::{Deserialize, Serialize};
use statrs::function::beta::beta_reg;

/// Smallest reference error ratio: below it, one error in a thousand requests would already
/// be news, which is noise for most services.
pub const MIN_REFERENCE: f64 = 0.001;

/// Largest reference: a baseline this bad (or unknown) leaves nothing to judge against.
pub const MAX_REFERENCE: f64 = 0.5;

/// Alternatives `q = p₀ × r`: from a quarter more errors to fifty times as many.
const RATIOS: [f64; 12] = [
    1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 25.0, 50.0,
];

/// The reference error ratio of a pre-deploy baseline of `requests` with `errors`: its upper
/// Clopper-Pearson bound at confidence `1 − alpha/2` (a baseline without errors does not
/// promise none), within [[`MIN_REFERENCE`], [`MAX_REFERENCE`]]. No traffic before:
/// [`MAX_REFERENCE`].
#[must_use]
pub fn reference_ratio(requests: u64, errors: u64, alpha: f64) -> f64 {
    let errors = errors.min(requests);
    if requests == 0 || errors == requests {
        return MAX_REFERENCE;
    }
    // The bound is where Beta(errors + 1, requests − errors)'s CDF reaches 1 − alpha/2: found
    // by bisection on the regularized incomplete beta, which is increasing in p.
    let (a, b, target) = (
        errors as f64 + 1.0,
        (requests - errors) as f64,
        1.0 - alpha / 2.0,
    );
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if beta_reg(a, b, mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi.clamp(MIN_REFERENCE, MAX_REFERENCE)
}

/// What the bake test says of `errors` among `requests` against reference `p0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BakeJudgement {
    /// The e-value: the mixture likelihood ratio (≥ `1/alpha` rejects).
    pub e_value: f64,
    /// The new version's error ratio over the bake (`None`: no requests yet).
    pub error_ratio: Option<f64>,
    /// True when the errors are significantly above the reference at `alpha`.
    pub worse: bool,
}

/// The bake test of `errors` among `requests` (totals since the bake began) against reference
/// error ratio `p0` ([`reference_ratio`] at the same `alpha`): it spends `alpha/2`, the
/// reference the other half.
#[must_use]
pub fn judge(requests: u64, errors: u64, p0: f64, alpha: f64) -> BakeJudgement {
    let x = errors.min(requests) as f64;
    let n = requests as f64;
    let p0 = p0.clamp(1e-9, 1.0 - 1e-9);
    let logs: Vec<f64> = RATIOS
        .iter()
        .map(|r| p0 * r)
        .filter(|q| *q < 1.0)
        .map(|q| x * (q / p0).ln() + (n - x) * ((1.0 - q) / (1.0 - p0)).ln())
        .collect();
    let e_value = if logs.is_empty() {
        1.0
    } else {
        let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = logs.iter().map(|l| (l - max).exp()).sum::<f64>() / logs.len() as f64;
        // Finite, so that it is stored and read back as a number.
        (max + mean.ln()).exp().min(1e300)
    };
    BakeJudgement {
        e_value,
        error_ratio: (requests > 0).then(|| x / n),
        worse: alpha > 0.0 && e_value >= 2.0 / alpha,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_the_baselines_upper_bound_within_limits() {
        assert_eq!(reference_ratio(0, 0, 0.05), MAX_REFERENCE);
        assert_eq!(reference_ratio(10_000_000, 0, 0.05), MIN_REFERENCE);
        // Clopper-Pearson, 97.5 % one-sided, 10 of 1000: 0.01827 (R: binom.test(10, 1000,
        // conf.level = 0.95)$conf.int[2]).
        assert!((reference_ratio(1_000, 10, 0.05) - 0.01827).abs() < 5e-5);
        // No errors in 1000: the rule of three's neighbour, 0.00368.
        assert!((reference_ratio(1_000, 0, 0.05) - 0.00368).abs() < 5e-5);
        // More errors than requests (a counter reset between reads) is not a ratio above 1.
        assert!(reference_ratio(10, 50, 0.05) <= MAX_REFERENCE);
    }

    #[test]
    fn a_version_as_good_as_before_is_not_failed_and_a_worse_one_is() {
        let p0 = reference_ratio(5_000, 25, 0.05); // 0.5 % seen, about 0.74 % at most
        assert!(!judge(0, 0, p0, 0.05).worse);
        assert!(!judge(20_000, 100, p0, 0.05).worse);
        assert!(!judge(20_000, 0, p0, 0.05).worse);
        let bad = judge(2_000, 100, p0, 0.05);
        assert!(bad.worse, "{bad:?}");
        assert!((bad.error_ratio.unwrap() - 0.05).abs() < 1e-12);
        // Twice as bad is found with enough traffic.
        assert!(judge(20_000, 200, p0, 0.05).worse);
        // Overwhelming evidence stays a finite number.
        assert!(judge(1_000_000, 1_000_000, p0, 0.05).e_value.is_finite());
        // A little worse is not enough on little traffic.
        assert!(!judge(200, 2, p0, 0.05).worse);
    }

    /// A seeded uniform in [0, 1).
    fn uniform(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Errors among `n` requests that each fail with probability `p`.
    fn errors(state: &mut u64, n: u64, p: f64) -> u64 {
        (0..n).map(|_| u64::from(uniform(state) < p)).sum()
    }

    #[test]
    fn the_false_alarm_rate_holds_with_the_reference_estimated_and_looked_at_often() {
        // A version exactly as good as before: its baseline is a sample of the same rate, and
        // the bake is looked at after every read of 500 requests, 120 reads (60 000 requests,
        // ten times the baseline). The share of runs that ever fail stays under alpha.
        let (p, alpha, runs) = (0.01, 0.05, 300);
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut alarms = 0;
        for _ in 0..runs {
            let p0 = reference_ratio(5_000, errors(&mut state, 5_000, p), alpha);
            let (mut n, mut x) = (0, 0);
            for _ in 0..120 {
                n += 500;
                x += errors(&mut state, 500, p);
                if judge(n, x, p0, alpha).worse {
                    alarms += 1;
                    break;
                }
            }
        }
        assert!(
            (alarms as f64) / (runs as f64) <= alpha,
            "{alarms} of {runs} runs cried wolf"
        );
    }
}
