//! The bake: after a wave of environments is promoted, each keeps being judged against the error
//! ratio it had before the deployment (its pre-deploy baseline), with no canary left to compare
//! with. A one-sample, one-sided, anytime-valid test: under the null the new version's requests
//! fail with probability `p ≤ p₀` (the reference); for any `q > p₀` the likelihood ratio
//! `(q/p₀)^x ((1−q)/(1−p₀))^(n−x)` has expectation at most 1 under every such `p` (it is linear in
//! `p` and equals 1 at `p₀`), so it and an average of it over a grid of `q` are e-processes, and
//! Ville's inequality keeps the false-alarm rate at `alpha` however often the bake looks. The
//! ratio depends on the totals only, so the bake stores two counters, not a history, and a
//! controller restarted mid-bake goes on with the same evidence.

use serde::{Deserialize, Serialize};

/// Smallest reference error ratio: below it, one error in a thousand requests would already
/// be news, which is noise for most services.
pub const MIN_REFERENCE: f64 = 0.001;

/// Largest reference: a baseline this bad (or unknown) leaves nothing to judge against.
pub const MAX_REFERENCE: f64 = 0.5;

/// Alternatives `q = p₀ × r`: from a quarter more errors to fifty times as many.
const RATIOS: [f64; 12] = [
    1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 25.0, 50.0,
];

/// The reference error ratio of a pre-deploy baseline of `requests` with `errors`: one error
/// more than seen over one request more (a baseline without errors does not promise none),
/// within [[`MIN_REFERENCE`], [`MAX_REFERENCE`]]. No traffic before: [`MAX_REFERENCE`].
#[must_use]
pub fn reference_ratio(requests: u64, errors: u64) -> f64 {
    let errors = errors.min(requests);
    ((errors + 1) as f64 / (requests + 1) as f64).clamp(MIN_REFERENCE, MAX_REFERENCE)
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
/// error ratio `p0`, at false-alarm rate `alpha`.
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
        (max + mean.ln()).exp()
    };
    BakeJudgement {
        e_value,
        error_ratio: (requests > 0).then(|| x / n),
        worse: alpha > 0.0 && e_value >= 1.0 / alpha,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_laplace_smoothed_and_bounded() {
        assert_eq!(reference_ratio(0, 0), MAX_REFERENCE);
        assert_eq!(reference_ratio(100_000, 0), MIN_REFERENCE);
        assert!((reference_ratio(999, 9) - 0.01).abs() < 1e-12);
        // More errors than requests (a counter reset between reads) is not a ratio above 1.
        assert!(reference_ratio(10, 50) <= MAX_REFERENCE);
    }

    #[test]
    fn a_version_as_good_as_before_is_not_failed_and_a_worse_one_is() {
        let p0 = reference_ratio(5_000, 25); // 0.5 %
        assert!(!judge(0, 0, p0, 0.05).worse);
        assert!(!judge(20_000, 100, p0, 0.05).worse);
        assert!(!judge(20_000, 0, p0, 0.05).worse);
        let bad = judge(2_000, 100, p0, 0.05);
        assert!(bad.worse, "{bad:?}");
        assert!((bad.error_ratio.unwrap() - 0.05).abs() < 1e-12);
        // A little worse is not enough on little traffic.
        assert!(!judge(200, 2, p0, 0.05).worse);
    }

    #[test]
    fn the_false_alarm_rate_holds_when_looked_at_after_every_request() {
        // A version exactly as bad as the reference, looked at after every request: the
        // share of runs that ever cry wolf stays under alpha (Ville).
        let (p0, alpha, runs, steps) = (0.02, 0.05, 400, 3_000);
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut alarms = 0;
        for _ in 0..runs {
            let mut errors = 0;
            for n in 1..=steps {
                if next() < p0 {
                    errors += 1;
                }
                if judge(n, errors, p0, alpha).worse {
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
