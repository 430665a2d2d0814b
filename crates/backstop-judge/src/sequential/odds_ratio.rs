//! The error-ratio signal's test (and each latency tail test's): canary odds of an outcome vs
//! the baseline's, conditioned per interval.

use super::mixture::{Mixture, StartPrior};

/// Anytime-valid, one-sided test that the canary's odds of an outcome exceed the baseline's,
/// with per-interval conditioning (see the module docs). Public for the bench and tests.
#[derive(Debug, Clone)]
pub struct OddsRatioTest {
    psi: Vec<f64>,
    mix: Mixture,
    mh_num: f64,
    mh_den: f64,
    excess: f64,
    excess_var: f64,
    /// Canary (yes, requests), baseline (yes, requests), summed over the analysis.
    pub totals: [u64; 4],
}

impl OddsRatioTest {
    /// A test mixing over the odds ratios `grid` (each > 1) with equal weights.
    pub fn new(grid: &[f64]) -> Self {
        Self {
            psi: grid.to_vec(),
            mix: Mixture::new(grid.len(), StartPrior::default()),
            mh_num: 0.0,
            mh_den: 0.0,
            excess: 0.0,
            excess_var: 0.0,
            totals: [0; 4],
        }
    }

    /// The interval ending at `t` (seconds): `x_c` of `n_c` canary requests and `x_b` of `n_b`
    /// baseline requests had the outcome.
    pub fn update(&mut self, t: f64, x_c: u64, n_c: u64, x_b: u64, n_b: u64) {
        let x_c = x_c.min(n_c);
        let x_b = x_b.min(n_b);
        self.totals[0] += x_c;
        self.totals[1] += n_c;
        self.totals[2] += x_b;
        self.totals[3] += n_b;
        let n = n_c + n_b;
        let m = x_c + x_b;
        if n_c == 0 || n_b == 0 || m == 0 || m == n {
            // The conditional law is a point mass: no information (factor 1).
            self.mix.push(t, |_| 0.0);
            return;
        }
        let (nc, nb, mf, nf, x) = (n_c as f64, n_b as f64, m as f64, n as f64, x_c as f64);
        self.mh_num += x * (nb - x_b as f64) / nf;
        self.mh_den += (nc - x) * x_b as f64 / nf;
        self.excess += x - nc * mf / nf;
        self.excess_var += nc * nb * mf * (nf - mf) / (nf * nf * (nf - 1.0));
        // Form A: Bin(n_c, m/N) (tighter when the canary has fewer requests than there are
        // outcomes); form B: Bin(m, n_c/N) (Lindon & Malek, rare outcomes).
        let form_a = n_c <= m;
        let (trials, theta0) = if form_a { (nc, mf / nf) } else { (mf, nc / nf) };
        let psi = &self.psi;
        self.mix.push(t, |k| {
            let psi = psi[k];
            // Baseline ratio p_b under "odds ratio psi, same pooled total".
            let a = nb * (psi - 1.0);
            let b = nc * psi + nb - mf * (psi - 1.0);
            let p_b = 2.0 * mf / (b + (b * b + 4.0 * a * mf).sqrt());
            let p_c = psi * p_b / (1.0 - p_b + psi * p_b);
            let theta1 = if form_a { p_c } else { nc * p_c / mf };
            let theta1 = theta1.clamp(1e-300, 1.0 - 1e-15);
            x * (theta1 / theta0).ln() + (trials - x) * ((1.0 - theta1) / (1.0 - theta0)).ln()
        });
    }

    /// ln of the current e-value (mixture over the grid).
    pub fn log_e(&self) -> f64 {
        self.mix.log_e()
    }

    /// ln of the largest e-value so far.
    pub fn max_log_e(&self) -> f64 {
        self.mix.max_log_e.max(0.0)
    }

    /// Always-valid p-value: `min(1, 1 / max_t E_t)`.
    pub fn p_value(&self) -> f64 {
        (-self.max_log_e()).exp().min(1.0)
    }

    /// Mantel-Haenszel odds ratio pooled over the intervals (canary vs baseline).
    pub fn mantel_haenszel(&self) -> f64 {
        if self.mh_den > 0.0 {
            self.mh_num / self.mh_den
        } else {
            f64::NAN
        }
    }

    /// Canary outcomes above what the baseline's ratio predicts (sum over intervals of
    /// `x_c − n_c·m/N`), with a two-sided (1 − `alpha`) confidence sequence from the normal
    /// mixture boundary (asymptotic: the hypergeometric variance is the intrinsic time).
    pub fn excess(&self, alpha: f64) -> (f64, f64, f64) {
        let radius =
            crate::anytime::normal_mixture_bound(self.excess_var, alpha, 100.0, alpha, false);
        (self.excess, self.excess - radius, self.excess + radius)
    }

    /// The grid odds ratio with the largest likelihood so far.
    pub fn most_supported(&self) -> f64 {
        self.mix.best().map_or(f64::NAN, |k| self.psi[k])
    }
}
