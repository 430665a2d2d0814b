//! Anytime-valid building blocks with published reference implementations:
//! the Lindon & Malek (2022) Dirichlet-multinomial test as in `savvi` (fixed split), and the
//! normal-mixture uniform boundaries of Howard et al. (2021) as in `confseq`.

use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::gamma::ln_gamma;

fn log_beta(a: &[f64]) -> f64 {
    a.iter().map(|x| ln_gamma(*x)).sum::<f64>() - ln_gamma(a.iter().sum())
}

/// Lindon & Malek's sequential multinomial test (savvi `Multinomial` /
/// `InhomogeneousPoissonProcess`): events fall into arms with probabilities `rho` under the null
/// (the traffic split, any time-varying load); Dirichlet(`k`·`rho`) mixture Bayes factor.
#[derive(Debug, Clone)]
pub struct DirichletMultinomial {
    rho: Vec<f64>,
    prior: Vec<f64>,
    counts: Vec<f64>,
    log_bf: f64,
    max_log_bf: f64,
}

impl DirichletMultinomial {
    /// `rho`: null probabilities (positive, summing to 1); `k`: prior concentration (savvi: 100).
    pub fn new(rho: &[f64], k: f64) -> Self {
        Self {
            rho: rho.to_vec(),
            prior: rho.iter().map(|r| k * r).collect(),
            counts: vec![0.0; rho.len()],
            log_bf: 0.0,
            max_log_bf: 0.0,
        }
    }

    /// Adds counts of new events per arm.
    pub fn update(&mut self, x: &[u64]) {
        for (c, x) in self.counts.iter_mut().zip(x) {
            *c += *x as f64;
        }
        let posterior = self.posterior();
        let null: f64 = self
            .counts
            .iter()
            .zip(&self.rho)
            .map(|(c, r)| c * r.ln())
            .sum();
        self.log_bf = log_beta(&posterior) - log_beta(&self.prior) - null;
        self.max_log_bf = self.max_log_bf.max(self.log_bf);
    }

    /// The Dirichlet posterior: the prior plus the counts seen so far.
    fn posterior(&self) -> Vec<f64> {
        self.prior
            .iter()
            .zip(&self.counts)
            .map(|(a, c)| a + c)
            .collect()
    }

    /// ln of the current Bayes factor (an e-value).
    pub fn log_bayes_factor(&self) -> f64 {
        self.log_bf
    }

    /// savvi's p-value, `1 / BF` (capped at 1).
    pub fn p_value(&self) -> f64 {
        (-self.log_bf).exp().min(1.0)
    }

    /// Always-valid p-value `min_s 1/BF_s`.
    pub fn p_value_anytime(&self) -> f64 {
        (-self.max_log_bf).exp().min(1.0)
    }

    /// Confidence sequence (level 1 − `alpha`) for the log rate ratio δ₁ − δ₀ of two arms
    /// (savvi `InhomogeneousPoissonProcess` with weights `[-1, 1]`). `None` with other than
    /// two arms or no events in an arm.
    pub fn log_ratio_interval(&self, alpha: f64) -> Option<(f64, f64)> {
        if self.rho.len() != 2 || self.counts.iter().any(|c| *c <= 0.0) {
            return None;
        }
        let posterior = self.posterior();
        let floor = log_beta(&posterior) - log_beta(&self.prior) + alpha.ln();
        let (r0, r1) = (self.rho[0], self.rho[1]);
        let (n0, n1) = (self.counts[0], self.counts[1]);
        let loglik = |d: f64| {
            let log_norm =
                (r0.ln()).max(r1.ln() + d) + (1.0 + (-(r0.ln() - (r1.ln() + d)).abs()).exp()).ln();
            n0 * (r0.ln() - log_norm) + n1 * (r1.ln() + d - log_norm)
        };
        let mle = (n1 / r1 / (n0 / r0)).ln();
        if loglik(mle) < floor {
            return None;
        }
        let solve = |mut inside: f64, mut outside: f64| {
            for _ in 0..200 {
                let mid = 0.5 * (inside + outside);
                if loglik(mid) >= floor {
                    inside = mid
                } else {
                    outside = mid
                }
            }
            0.5 * (inside + outside)
        };
        let mut lo = mle - 1.0;
        while loglik(lo) >= floor && lo > mle - 1e3 {
            lo -= 1.0;
        }
        let mut hi = mle + 1.0;
        while loglik(hi) >= floor && hi < mle + 1e3 {
            hi += 1.0;
        }
        Some((solve(mle, lo), solve(mle, hi)))
    }
}

fn best_rho_two_sided(v: f64, alpha: f64) -> f64 {
    let l = (1.0 / alpha).ln();
    v / (2.0 * l + (1.0 + 2.0 * l).ln())
}

fn std_normal_cdf(x: f64) -> f64 {
    Normal::standard().cdf(x)
}

/// confseq `normal_log_mixture(s, v, v_opt, alpha_opt, is_one_sided)`: ln of the normal-mixture
/// supermartingale for a sum `s` with intrinsic time (variance) `v`.
pub fn normal_log_mixture(s: f64, v: f64, v_opt: f64, alpha_opt: f64, one_sided: bool) -> f64 {
    if one_sided {
        let rho = best_rho_two_sided(v_opt, 2.0 * alpha_opt);
        0.5 * (4.0 * rho / (v + rho)).ln()
            + s * s / (2.0 * (v + rho))
            + std_normal_cdf(s / (v + rho).sqrt()).ln()
    } else {
        let rho = best_rho_two_sided(v_opt, alpha_opt);
        0.5 * (rho / (v + rho)).ln() + s * s / (2.0 * (v + rho))
    }
}

/// confseq `normal_mixture_bound(v, alpha, v_opt, alpha_opt, is_one_sided)`: the uniform
/// boundary on `s` crossed with probability at most `alpha` at any `v`.
pub fn normal_mixture_bound(
    v: f64,
    alpha: f64,
    v_opt: f64,
    alpha_opt: f64,
    one_sided: bool,
) -> f64 {
    let log_threshold = (1.0 / alpha).ln();
    if !one_sided {
        let rho = best_rho_two_sided(v_opt, alpha_opt);
        return ((v + rho) * ((1.0 + v / rho).ln() + 2.0 * log_threshold)).sqrt();
    }
    let f = |s: f64| normal_log_mixture(s, v, v_opt, alpha_opt, true) - log_threshold;
    let mut hi = v.max(1e-9);
    for _ in 0..60 {
        if f(hi) > 0.0 {
            break;
        }
        hi *= 2.0;
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > 0.0 { hi = mid } else { lo = mid }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// savvi `examples/InhomogeneousPoissonProcess.qmd`: rho = [0.8, 0.2], delta = [1.5, 2],
    /// `np.random.seed(1); np.random.multinomial(1, theta, size=1500)`; the arm of each of the
    /// first 210 events (1 = second arm), regenerated with numpy.
    const SAVVI_EVENTS: &str = "010000000000010000001100110001001000010111010010000000000000000000001010010010111010010100010000100000101001010010011110000010010001001010110000000100010001001100010000000100010000001001000100111100011010000011";

    #[test]
    fn savvi_inhomogeneous_poisson_process_vector() {
        let mut test = DirichletMultinomial::new(&[0.8, 0.2], 100.0);
        let mut stop = None;
        // savvi intersects the intervals over time (a running intersection stays valid).
        let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
        for (n, c) in SAVVI_EVENTS.chars().enumerate() {
            let x = if c == '1' { [0, 1] } else { [1, 0] };
            test.update(&x);
            if let Some((l, h)) = test.log_ratio_interval(0.05) {
                lo = lo.max(l);
                hi = hi.min(h);
            }
            if test.p_value() <= 0.05 {
                stop = Some(n + 1);
                break;
            }
        }
        assert_eq!(stop, Some(210), "savvi stops at n = 210");
        assert!(
            (test.p_value() - 0.045579631759249686).abs() < 1e-9,
            "p = {}",
            test.p_value()
        );
        assert!((lo - 0.00464625).abs() < 1e-4, "lo = {lo}");
        assert!((hi - 0.75493987).abs() < 1e-4, "hi = {hi}");
    }

    #[test]
    fn confseq_normal_mixture_reference_values() {
        // canary_stats.md: normal_mixture_bound(v=1000, alpha=0.05, v_opt=1000) = 87.47.
        let b = normal_mixture_bound(1000.0, 0.05, 1000.0, 0.05, true);
        assert!((b - 87.47).abs() < 0.01, "bound = {b}");
        // confseq's own unit tests (values from its R reference implementation).
        assert!((best_rho_two_sided(100.0, 0.05) - 12.60056).abs() < 1e-5);
        assert!((normal_log_mixture(10.0, 100.0, 100.0, 0.05, false) - -0.6510052).abs() < 1e-5);
        assert!((normal_mixture_bound(100.0, 0.05, 100.0, 0.05, false) - 30.35209).abs() < 1e-5);
        assert!((normal_log_mixture(10.0, 100.0, 100.0, 0.05, true) - -0.06502391).abs() < 1e-5);
        assert!((normal_mixture_bound(100.0, 0.05, 100.0, 0.05, true) - 27.66071).abs() < 1e-5);
    }
}
