//! The mixture every sequential test is: over alternatives (a grid) and over the interval at
//! which the regression starts ([`StartPrior`]).

pub(super) fn log_grid(lo: f64, hi: f64, points: usize) -> Vec<f64> {
    let k = points.clamp(2, 64);
    let (a, b) = (lo.ln(), hi.ln());
    (0..k)
        .map(|i| (a + (b - a) * i as f64 / (k - 1) as f64).exp())
        .collect()
}

pub(super) fn log_sum_exp(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + xs.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// Prior over when the regression starts, in seconds (so the judge behaves the same at any
/// interval length): mass `at_start` on "from the first interval on" (the usual case: the
/// canary *is* the new version), the rest spread over the time after the first interval with
/// density `(1 − at_start) · τ / (u + τ)²` at `u` seconds after it (half of that rest within the
/// first `τ` seconds, a quarter after `3τ`). The masses of any sequence of intervals sum to at
/// most 1, which is what keeps the mixture a test supermartingale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StartPrior {
    /// Mass on the first interval.
    pub at_start: f64,
    /// Scale of the spread after it, seconds.
    pub tau_s: f64,
}

impl Default for StartPrior {
    fn default() -> Self {
        Self {
            at_start: START_MASS,
            tau_s: START_TAU_S,
        }
    }
}

/// Default [`StartPrior::at_start`].
pub const START_MASS: f64 = 0.5;
/// Default [`StartPrior::tau_s`].
pub const START_TAU_S: f64 = 60.0;

impl StartPrior {
    /// Mass put on the first `u` seconds after the first interval (excluding `at_start`).
    pub fn spread(&self, u: f64) -> f64 {
        let u = u.max(0.0);
        (1.0 - self.at_start) * u / (u + self.tau_s)
    }
}

fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        m
    } else {
        m + ((a - m).exp() + (b - m).exp()).ln()
    }
}

/// A mixture over alternatives (grid components, equal weights) and over the interval at which
/// the regression starts (weights from [`StartPrior`]): `R_t = (R_{t−1} + π(t)) · f_t` per component,
/// `E_t = mean_k R_t^k`. An average of test supermartingales, so Ville's inequality holds; a
/// regression that starts late does not have to climb out of the evidence gathered before it.
#[derive(Debug, Clone)]
pub(super) struct Mixture {
    log_r: Vec<f64>,
    prior: StartPrior,
    /// End time of the first interval and of the latest one.
    first_t: Option<f64>,
    last_u: f64,
    pub(super) max_log_e: f64,
}

impl Mixture {
    pub(super) fn new(components: usize, prior: StartPrior) -> Self {
        Self {
            log_r: vec![f64::NEG_INFINITY; components],
            prior,
            first_t: None,
            last_u: 0.0,
            max_log_e: f64::NEG_INFINITY,
        }
    }

    /// Prior mass of "the regression starts in the interval ending at `t`".
    pub(super) fn start_mass(&mut self, t: f64) -> f64 {
        let t = if t.is_finite() { t } else { 0.0 };
        match self.first_t {
            None => {
                self.first_t = Some(t);
                self.prior.at_start
            }
            Some(first) => {
                let u = (t - first).max(self.last_u);
                let mass = self.prior.spread(u) - self.prior.spread(self.last_u);
                self.last_u = u;
                mass.max(0.0)
            }
        }
    }

    /// The interval ending at `t`; `log_factor(k)` is component k's log likelihood ratio for it.
    pub(super) fn push(&mut self, t: f64, mut log_factor: impl FnMut(usize) -> f64) {
        let log_pi = self.start_mass(t).ln();
        for (k, r) in self.log_r.iter_mut().enumerate() {
            *r = log_add_exp(*r, log_pi) + log_factor(k);
        }
        self.max_log_e = self.max_log_e.max(self.log_e());
    }

    pub(super) fn log_e(&self) -> f64 {
        log_sum_exp(&self.log_r) - (self.log_r.len() as f64).ln()
    }

    pub(super) fn best(&self) -> Option<usize> {
        (0..self.log_r.len()).max_by(|a, b| self.log_r[*a].total_cmp(&self.log_r[*b]))
    }
}
