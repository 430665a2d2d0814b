//! The latency body test: a shift of the whole canary histogram, as a rank test.

use statrs::distribution::{Continuous, ContinuousCDF, Normal};

use super::mixture::{Mixture, StartPrior, log_sum_exp};

/// Smallest tilt λ of the body-shift test. The growth-optimal λ is about the shift in pooled
/// standard deviations of log latency: +10 % to +60 % at a log-sd of 0.4–1.0 is λ ≈ 0.1–1.2;
/// [0.05, 1.5] leaves room on both sides (the former [0.02, 3] spent mass on shifts nobody
/// waits for or that any λ catches in one interval).
pub const TILT_MIN: f64 = 0.05;
/// Largest tilt λ of the body-shift test (see [`TILT_MIN`]).
pub const TILT_MAX: f64 = 1.5;

/// Anytime-valid, one-sided test that the canary's requests are slower than the baseline's,
/// on the whole histogram at once: each interval, the canary's requests are (under the null) a
/// random sample without replacement from the pooled requests of the interval; the sum `T` of
/// their standardised bucket scores ([`normal_scores`] of the pooled histogram: a rank test, so
/// the bucket bounds' values do not matter) has `E[exp(λT)] ≤ (mean_pool exp(λ z))^{n_c}`
/// (Hoeffding 1963), so `exp(λT) / (mean_pool exp(λ z))^{n_c}` is an e-value for every λ > 0.
/// Mixed over a grid of λ in [[`TILT_MIN`], [`TILT_MAX`]] and over start times. Sensitive to
/// shifts of the body.
#[derive(Debug, Clone)]
pub struct TiltTest {
    lambdas: Vec<f64>,
    /// Buckets per arm, `+Inf` included.
    buckets: usize,
    mix: Mixture,
}

impl TiltTest {
    /// Buckets with finite upper bounds `bounds` (ms) plus `+Inf`; `points` tilts.
    pub fn new(bounds: &[f64], points: usize) -> Self {
        let k = points.clamp(2, 64);
        let (a, b) = (TILT_MIN.ln(), TILT_MAX.ln());
        let lambdas = (0..k)
            .map(|i| (a + (b - a) * i as f64 / (k - 1) as f64).exp())
            .collect();
        Self {
            lambdas,
            buckets: bounds.len() + 1,
            mix: Mixture::new(k, StartPrior::default()),
        }
    }

    /// The interval ending at `t` (seconds): per-bucket (not cumulative) counts of each arm,
    /// same buckets as `new`.
    pub fn update(&mut self, t: f64, canary: &[u64], baseline: &[u64]) {
        let n_c: u64 = canary.iter().sum();
        let n_b: u64 = baseline.iter().sum();
        if n_c == 0 || n_b == 0 || canary.len() != self.buckets || baseline.len() != self.buckets {
            self.mix.push(t, |_| 0.0);
            return;
        }
        let n = (n_c + n_b) as f64;
        let pooled: Vec<f64> = canary
            .iter()
            .zip(baseline)
            .map(|(c, b)| (c + b) as f64 / n)
            .collect();
        let scores = normal_scores(&pooled);
        let mean: f64 = pooled.iter().zip(&scores).map(|(p, s)| p * s).sum();
        let var: f64 = pooled
            .iter()
            .zip(&scores)
            .map(|(p, s)| p * (s - mean) * (s - mean))
            .sum();
        if var <= 1e-12 {
            self.mix.push(t, |_| 0.0);
            return;
        }
        let sd = var.sqrt();
        let z: Vec<f64> = scores.iter().map(|s| (s - mean) / sd).collect();
        let stat: f64 = canary.iter().zip(&z).map(|(c, z)| *c as f64 * z).sum();
        let (lambdas, nc) = (&self.lambdas, n_c as f64);
        self.mix.push(t, |k| {
            let l = lambdas[k];
            let log_mgf = log_sum_exp(
                &pooled
                    .iter()
                    .zip(&z)
                    .filter(|(p, _)| **p > 0.0)
                    .map(|(p, z)| p.ln() + l * z)
                    .collect::<Vec<_>>(),
            );
            l * stat - nc * log_mgf
        });
    }

    /// ln of the current e-value.
    pub fn log_e(&self) -> f64 {
        self.mix.log_e()
    }
}

/// Normal scores of the buckets for the pooled bucket fractions `pooled`: the mean of a standard
/// normal variable over the stretch of quantiles the bucket covers,
/// `(φ(Φ⁻¹(F_{k−1})) − φ(Φ⁻¹(F_k))) / p_k`. The locally most powerful rank scores for a shift
/// of (log-)normal latencies, whatever the bucket bounds are; bounded (a few units), so one
/// extreme bucket cannot dominate.
pub(super) fn normal_scores(pooled: &[f64]) -> Vec<f64> {
    let normal = Normal::standard();
    let mut cumulative = 0.0_f64;
    let mut prev_density = 0.0;
    pooled
        .iter()
        .map(|&p| {
            if p <= 0.0 {
                return 0.0;
            }
            cumulative = (cumulative + p).min(1.0);
            let x = if cumulative >= 1.0 - 1e-12 {
                f64::INFINITY
            } else {
                normal.inverse_cdf(cumulative)
            };
            let d = normal.pdf(x);
            let score = (prev_density - d) / p;
            prev_density = d;
            score
        })
        .collect()
}
