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

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use statrs::distribution::{Continuous, ContinuousCDF, Normal};

use crate::report::{Verdict, num, report_json, signal_json, time_json};
use crate::{ArmCounts, Decision, Interval, Judge, JudgeSettings, SignalKind, hist};

/// Options of the `sequential` judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SequentialSettings {
    /// Smallest canary/baseline odds ratio the mixture is tuned for (> 1). Smaller regressions
    /// are still caught, only later.
    pub min_odds_ratio: f64,
    /// Largest odds ratio in the mixture (larger regressions are caught at least as fast as
    /// this one). The latency tail tests extend their grid to at least
    /// [`TAIL_MAX_ODDS_RATIO`].
    pub max_odds_ratio: f64,
    /// Number of log-spaced odds ratios in the mixture (2..=64).
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

fn log_grid(lo: f64, hi: f64, points: usize) -> Vec<f64> {
    let k = points.clamp(2, 64);
    let (a, b) = (lo.ln(), hi.ln());
    (0..k)
        .map(|i| (a + (b - a) * i as f64 / (k - 1) as f64).exp())
        .collect()
}

fn log_sum_exp(xs: &[f64]) -> f64 {
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
struct Mixture {
    log_r: Vec<f64>,
    prior: StartPrior,
    /// End time of the first interval and of the latest one.
    first_t: Option<f64>,
    last_u: f64,
    max_log_e: f64,
}

impl Mixture {
    fn new(components: usize, prior: StartPrior) -> Self {
        Self {
            log_r: vec![f64::NEG_INFINITY; components],
            prior,
            first_t: None,
            last_u: 0.0,
            max_log_e: f64::NEG_INFINITY,
        }
    }

    /// Prior mass of "the regression starts in the interval ending at `t`".
    fn start_mass(&mut self, t: f64) -> f64 {
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
    fn push(&mut self, t: f64, mut log_factor: impl FnMut(usize) -> f64) {
        let log_pi = self.start_mass(t).ln();
        for (k, r) in self.log_r.iter_mut().enumerate() {
            *r = log_add_exp(*r, log_pi) + log_factor(k);
        }
        self.max_log_e = self.max_log_e.max(self.log_e());
    }

    fn log_e(&self) -> f64 {
        log_sum_exp(&self.log_r) - (self.log_r.len() as f64).ln()
    }

    fn best(&self) -> Option<usize> {
        (0..self.log_r.len()).max_by(|a, b| self.log_r[*a].total_cmp(&self.log_r[*b]))
    }
}

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
fn normal_scores(pooled: &[f64]) -> Vec<f64> {
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

/// Where the tail tests look: the latency quantiles of the baseline (p90, p99, p99.9). Each tail
/// test asks, per interval, "is the canary more often slower than the bound at this quantile?".
/// The bound is picked from the baseline's earlier intervals plus this interval's pooled
/// histogram: both are fixed given the conditioning of the test (earlier data, this interval's
/// margins), so the choice costs no validity, and three tests dilute the evidence far less than
/// one test per bucket bound (a histogram has 10–20 of them).
pub const TAIL_QUANTILES: [f64; 3] = [0.9, 0.99, 0.999];

/// One tail test: exceedances of the bound at `quantile`.
#[derive(Debug)]
struct TailTest {
    quantile: f64,
    test: OddsRatioTest,
    /// The bound used in the latest interval with traffic, ms.
    bound: Option<f64>,
}

#[derive(Debug)]
struct LatencyTest {
    bounds: Vec<f64>,
    tilt: TiltTest,
    tails: Vec<TailTest>,
    merged_canary: Vec<(f64, u64)>,
    merged_baseline: Vec<(f64, u64)>,
}

/// Count at or under each finite bound (in `bounds` order) of a cumulative histogram.
fn finite_le(h: &[(f64, u64)]) -> impl Iterator<Item = u64> + '_ {
    h.iter().filter(|(b, _)| b.is_finite()).map(|(_, c)| *c)
}

impl LatencyTest {
    fn new(first: &[(f64, u64)], tail_grid: &[f64], grid_points: usize) -> Self {
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
    fn bound_at(q: f64, le: &[u64], total: u64) -> usize {
        // The epsilon keeps `1 − 0.9` (0.0999…98 in binary) from excluding exactly 10 %.
        let allowed = (1.0 - q) * total as f64 + 1e-9;
        le.iter()
            .position(|c| total.saturating_sub(*c) as f64 <= allowed)
            .unwrap_or(le.len().saturating_sub(1))
    }

    fn update(&mut self, t: f64, canary: &ArmCounts, baseline: &ArmCounts) {
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
    fn tails_log_e(&self) -> f64 {
        if self.tails.is_empty() {
            return 0.0;
        }
        let each: Vec<f64> = self.tails.iter().map(|t| t.test.log_e()).collect();
        log_sum_exp(&each) - (each.len() as f64).ln()
    }

    /// Half the tilt test (body shifts) plus half the mean of the tail tests, ln.
    fn log_e(&self) -> f64 {
        log_sum_exp(&[self.tilt.log_e(), self.tails_log_e()]) - 2.0_f64.ln()
    }
}

/// A test's excess of canary outcomes over what the baseline predicts, with its confidence
/// sequence at level 1 − `alpha`.
fn excess_json(test: &OddsRatioTest, alpha: f64) -> Value {
    let (excess, lo, hi) = test.excess(alpha);
    json!({"estimate": num(excess), "confidence_sequence": [num(lo), num(hi)], "level": num(1.0 - alpha)})
}

/// The sequential judge (see the module docs).
#[derive(Debug)]
pub struct SequentialJudge {
    alpha: f64,
    signals: usize,
    log_threshold: f64,
    grid: Vec<f64>,
    tail_grid: Vec<f64>,
    use_errors: bool,
    use_latency: bool,
    errors: OddsRatioTest,
    latency: Option<LatencyTest>,
    latency_max_log_e: f64,
    errors_failed_at: Option<f64>,
    latency_failed_at: Option<f64>,
    last_t: Option<f64>,
    canary_requests: u64,
    baseline_ref: (u64, u64),
    baseline_degraded_intervals: u32,
    settings: SequentialSettings,
}

impl SequentialJudge {
    /// A sequential judge promising `settings.alpha` over the whole analysis.
    pub fn new(settings: &JudgeSettings) -> Self {
        let use_errors = settings.uses(SignalKind::Errors);
        let use_latency = settings.uses(SignalKind::Latency);
        let signals = usize::from(use_errors) + usize::from(use_latency);
        let alpha = if settings.alpha.is_finite() && settings.alpha > 0.0 {
            settings.alpha.min(1.0)
        } else {
            0.01
        };
        let grid = settings.sequential.grid();
        Self {
            alpha,
            signals: signals.max(1),
            log_threshold: (signals.max(1) as f64 / alpha).ln(),
            errors: OddsRatioTest::new(&grid),
            grid,
            tail_grid: settings.sequential.tail_grid(),
            use_errors,
            use_latency,
            latency: None,
            latency_max_log_e: 0.0,
            errors_failed_at: None,
            latency_failed_at: None,
            last_t: None,
            canary_requests: 0,
            baseline_ref: (0, 0),
            baseline_degraded_intervals: 0,
            settings: settings.sequential.clone(),
        }
    }

    fn track_baseline(&mut self, b: &ArmCounts) {
        // Reference = the baseline's first 500 requests; then flag intervals where its error
        // ratio is well above its own start (shared degradations, reported as evidence).
        if self.baseline_ref.1 < 500 {
            self.baseline_ref.0 += b.errors;
            self.baseline_ref.1 += b.requests;
            return;
        }
        if b.requests >= 20 {
            let start = self.baseline_ref.0 as f64 / self.baseline_ref.1 as f64;
            let now = b.errors as f64 / b.requests as f64;
            if now > (3.0 * start).max(start + 0.02) {
                self.baseline_degraded_intervals += 1;
            }
        }
    }

    fn failed(&self) -> Option<f64> {
        match (self.errors_failed_at, self.latency_failed_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn test_json(&self, t: &OddsRatioTest, log_e: f64, max_log_e: f64) -> Value {
        json!({
            "e_value": num(log_e.exp()),
            "max_e_value": num(max_log_e.exp()),
            "p_value_anytime": num((-max_log_e).exp().min(1.0)),
            "fail_when_e_value_reaches": num(self.signals as f64 / self.alpha),
            "alpha_share": num(self.alpha / self.signals as f64),
            "odds_ratio_mantel_haenszel": num(t.mantel_haenszel()),
            "odds_ratio_most_supported": num(t.most_supported()),
        })
    }
}

impl Judge for SequentialJudge {
    fn observe(&mut self, interval: &Interval) -> Decision {
        if self.failed().is_some() {
            return Decision::Fail;
        }
        self.last_t = Some(interval.t);
        let (c, b) = (&interval.canary, &interval.baseline);
        self.canary_requests += c.requests;
        self.track_baseline(b);
        if self.use_errors {
            self.errors
                .update(interval.t, c.errors, c.requests, b.errors, b.requests);
            if self.errors.log_e() >= self.log_threshold {
                self.errors_failed_at = Some(interval.t);
                tracing::debug!(
                    t = interval.t,
                    signal = "error_ratio",
                    e_value = self.errors.log_e().exp(),
                    "Canary failed the sequential test."
                );
            }
        }
        if self.use_latency
            && let (Some(hc), Some(_)) = (&c.latency_le_ms, &b.latency_le_ms)
        {
            let (tail_grid, points) = (&self.tail_grid, self.grid.len());
            let test = self
                .latency
                .get_or_insert_with(|| LatencyTest::new(hc, tail_grid, points));
            test.update(interval.t, c, b);
            let log_e = test.log_e();
            self.latency_max_log_e = self.latency_max_log_e.max(log_e);
            if log_e >= self.log_threshold {
                self.latency_failed_at = Some(interval.t);
                tracing::debug!(
                    t = interval.t,
                    signal = "latency",
                    e_value = log_e.exp(),
                    "Canary failed the sequential test."
                );
            }
        }
        if self.failed().is_some() {
            Decision::Fail
        } else {
            Decision::Continue
        }
    }

    fn report(&self) -> Value {
        let no_traffic = self.canary_requests == 0;
        let signal_verdict = |failed_at: Option<f64>| match failed_at {
            Some(t) => (Verdict::Fail, Some(t)),
            None if no_traffic => (Verdict::Inconclusive, self.last_t),
            None => (Verdict::Pass, None),
        };
        let mut signals = Vec::new();
        if self.use_errors {
            let t = &self.errors;
            let mut ev = self.test_json(t, t.log_e(), t.max_log_e());
            let ratio = |e: u64, n: u64| if n > 0 { e as f64 / n as f64 } else { f64::NAN };
            ev["canary"] = json!({"requests": t.totals[1], "errors": t.totals[0], "error_ratio": num(ratio(t.totals[0], t.totals[1]))});
            ev["baseline"] = json!({"requests": t.totals[3], "errors": t.totals[2], "error_ratio": num(ratio(t.totals[2], t.totals[3]))});
            ev["excess_canary_errors"] = excess_json(t, self.alpha);
            ev["baseline_degraded_intervals"] = json!(self.baseline_degraded_intervals);
            let (v, at) = signal_verdict(self.errors_failed_at);
            signals.push(signal_json("error_ratio", v, at, ev));
        }
        if self.use_latency
            && let Some(l) = &self.latency
        {
            let log_e = l.log_e();
            let mut strongest = (f64::NEG_INFINITY, None);
            let mut tails = Vec::new();
            for tail in &l.tails {
                let test = &tail.test;
                let e = test.log_e();
                if e > strongest.0 {
                    strongest = (e, tail.bound);
                }
                let frac = |x: u64, n: u64| {
                    if n > 0 {
                        num(x as f64 / n as f64)
                    } else {
                        Value::Null
                    }
                };
                tails.push(json!({
                    "baseline_quantile": num(tail.quantile),
                    "le_ms": tail.bound.map_or(Value::Null, num),
                    "e_value": num(e.exp()),
                    "canary_slower_fraction": frac(test.totals[0], test.totals[1]),
                    "baseline_slower_fraction": frac(test.totals[2], test.totals[3]),
                    "odds_ratio_mantel_haenszel": num(test.mantel_haenszel()),
                    "excess_slower_canary_requests": excess_json(test, self.alpha),
                }));
            }
            let mut ev = json!({
                "e_value": num(log_e.exp()),
                "max_e_value": num(self.latency_max_log_e.exp()),
                "p_value_anytime": num((-self.latency_max_log_e).exp().min(1.0)),
                "fail_when_e_value_reaches": num(self.signals as f64 / self.alpha),
                "alpha_share": num(self.alpha / self.signals as f64),
                "strongest_tail_le_ms": strongest.1.map_or(Value::Null, num),
                "shift_test_e_value": num(l.tilt.log_e().exp()),
                "tail_tests_e_value": num(l.tails_log_e().exp()),
            });
            let q = |h: &[(f64, u64)], p: f64| hist::quantile(p, h).map_or(Value::Null, num);
            ev["canary"] = json!({"p50_ms": q(&l.merged_canary, 0.5), "p99_ms": q(&l.merged_canary, 0.99), "requests": l.merged_canary.last().map_or(0, |b| b.1)});
            ev["baseline"] = json!({"p50_ms": q(&l.merged_baseline, 0.5), "p99_ms": q(&l.merged_baseline, 0.99), "requests": l.merged_baseline.last().map_or(0, |b| b.1)});
            ev["tails"] = Value::Array(tails);
            let (v, at) = signal_verdict(self.latency_failed_at);
            signals.push(signal_json("latency", v, at, ev));
        }
        let (verdict, at) = match self.failed() {
            Some(t) => (Verdict::Fail, Some(t)),
            None if no_traffic => (Verdict::Inconclusive, self.last_t),
            None => (Verdict::Pass, None),
        };
        let mut report = report_json("sequential", verdict, at, signals);
        report["alpha"] = num(self.alpha);
        report["settings"] = json!({
            "min_odds_ratio": num(self.settings.min_odds_ratio),
            "max_odds_ratio": num(self.settings.max_odds_ratio),
            "grid_points": self.grid.len(),
        });
        if verdict == Verdict::Inconclusive {
            report["reason"] = json!("the canary received no requests");
            report["decided_at_s"] = time_json(at);
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Latency, Regression, SimSpec, Spike, simulate};
    use crate::{JudgeKind, scenario::replay};

    fn spec(regression: Regression, applied: bool) -> SimSpec {
        SimSpec {
            interval_s: 5.0,
            duration_s: 1800.0,
            rps: 200.0,
            load_amplitude: 0.0,
            load_period_s: 600.0,
            split: vec![(0.0, 0.1)],
            error_ratio: 0.005,
            latency: Latency::lognormal(50.0, 0.6),
            spike: None,
            regression,
            applied,
        }
    }

    fn run(spec: &SimSpec, seed: u64) -> crate::Replay {
        let (intervals, _) = simulate(spec, seed);
        let mut judge = crate::build(&JudgeSettings {
            judge: JudgeKind::Sequential,
            ..JudgeSettings::default()
        });
        replay(judge.as_mut(), &intervals)
    }

    #[test]
    fn error_regression_fails_quickly_with_checkable_evidence() {
        let r = Regression {
            onset_s: 60.0,
            error_mult: 6.0,
            ..Regression::NONE
        };
        let out = run(&spec(r, true), 11);
        assert_eq!(out.decision, Decision::Fail);
        let at = out.failed_at_s.unwrap_or(f64::INFINITY);
        assert!(at > 60.0 && at <= 180.0, "failed at {at}");
        let rep = &out.report;
        assert_eq!(rep["verdict"], "fail");
        assert_eq!(rep["signals"][0]["signal"], "error_ratio");
        assert_eq!(rep["signals"][0]["verdict"], "fail");
        let ev = &rep["signals"][0]["evidence"];
        assert!(ev["e_value"].as_f64().unwrap_or(0.0) >= 200.0);
        assert!(ev["p_value_anytime"].as_f64().unwrap_or(1.0) <= 0.005);
        assert!(ev["odds_ratio_mantel_haenszel"].as_f64().unwrap_or(0.0) > 2.0);
        let excess = &ev["excess_canary_errors"];
        let (est, lo) = (
            excess["estimate"].as_f64().unwrap_or(0.0),
            excess["confidence_sequence"][0]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
        assert!(est > 0.0 && lo < est, "excess {excess}");
    }

    #[test]
    fn better_canary_never_fails_and_e_value_shrinks() {
        let r = Regression {
            onset_s: 0.0,
            error_mult: 0.2,
            latency_mult: 0.7,
            ..Regression::NONE
        };
        let out = run(&spec(r, true), 12);
        assert_eq!(out.decision, Decision::Continue);
        assert_eq!(out.report["verdict"], "pass");
        assert!(
            out.report["signals"][0]["evidence"]["e_value"]
                .as_f64()
                .unwrap_or(1.0)
                < 0.01
        );
        // Latency averages over bucket bounds; bounds nobody crosses stay at 1.
        assert!(
            out.report["signals"][1]["evidence"]["e_value"]
                .as_f64()
                .unwrap_or(1.0)
                < 0.6
        );
    }

    #[test]
    fn shared_spike_does_not_fail_and_is_reported() {
        let mut s = spec(Regression::NONE, false);
        s.spike = Some(Spike {
            start_s: 300.0,
            end_s: 480.0,
            error_mult: 30.0,
            latency_mult: 4.0,
        });
        for seed in 0..5 {
            let out = run(&s, 100 + seed);
            assert_eq!(out.report["verdict"], "pass", "seed {seed}: {}", out.report);
            let degraded = out.report["signals"][0]["evidence"]["baseline_degraded_intervals"]
                .as_u64()
                .unwrap_or(0);
            assert!(degraded >= 20, "degraded intervals {degraded}");
        }
    }

    #[test]
    fn latency_body_shift_and_tail_only_regressions_fail_on_latency() {
        let shift = Regression {
            onset_s: 60.0,
            latency_mult: 1.25,
            ..Regression::NONE
        };
        let out = run(&spec(shift, true), 13);
        assert_eq!(out.decision, Decision::Fail);
        assert_eq!(out.report["signals"][1]["signal"], "latency");
        assert_eq!(out.report["signals"][1]["verdict"], "fail");
        assert_eq!(out.report["signals"][0]["verdict"], "pass");
        let tail = Regression {
            onset_s: 60.0,
            tail_fraction: 0.03,
            tail_factor: 10.0,
            ..Regression::NONE
        };
        let out = run(&spec(tail, true), 14);
        assert_eq!(out.decision, Decision::Fail);
        let tails = &out.report["signals"][1]["evidence"]["tails"];
        assert_eq!(tails.as_array().map(Vec::len), Some(TAIL_QUANTILES.len()));
        for tail in tails.as_array().into_iter().flatten() {
            let excess = &tail["excess_slower_canary_requests"];
            let (est, lo, hi) = (
                excess["estimate"].as_f64().unwrap_or(f64::NAN),
                excess["confidence_sequence"][0]
                    .as_f64()
                    .unwrap_or(f64::NAN),
                excess["confidence_sequence"][1]
                    .as_f64()
                    .unwrap_or(f64::NAN),
            );
            assert!(est > 0.0 && lo < est && est < hi, "tail {tail}");
        }
        let strongest = out.report["signals"][1]["evidence"]["strongest_tail_le_ms"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(
            strongest >= 250.0,
            "a tail regression shows in the top buckets, got {strongest}"
        );
    }

    #[test]
    fn normal_scores_are_centred_increasing_and_symmetric() {
        let pooled = [0.0, 0.1, 0.4, 0.4, 0.1, 0.0];
        let s = normal_scores(&pooled);
        let mean: f64 = pooled.iter().zip(&s).map(|(p, s)| p * s).sum();
        assert!(mean.abs() < 1e-9, "mean {mean}");
        assert!(s[1] < s[2] && s[2] < s[3] && s[3] < s[4], "{s:?}");
        assert!((s[1] + s[4]).abs() < 1e-9 && (s[2] + s[3]).abs() < 1e-9);
        // The lowest tenth of a standard normal has mean −φ(Φ⁻¹(0.1))/0.1 ≈ −1.7550.
        assert!((s[1] + 1.7550).abs() < 1e-3, "{}", s[1]);
        assert_eq!(normal_scores(&[1.0]), vec![0.0]);
    }

    #[test]
    fn tail_tests_pick_the_bound_at_their_quantile() {
        // 1000 requests: 900 at or under 50 ms, 990 under 100, 999 under 250, all under 500.
        let le = [900, 990, 999, 1000];
        assert_eq!(LatencyTest::bound_at(0.9, &le, 1000), 0);
        assert_eq!(LatencyTest::bound_at(0.99, &le, 1000), 1);
        assert_eq!(LatencyTest::bound_at(0.999, &le, 1000), 2);
        // Slower than every bound: the top one.
        assert_eq!(LatencyTest::bound_at(0.999, &[0, 0, 0, 0], 1000), 3);
        assert_eq!(LatencyTest::bound_at(0.999, &[], 0), 0);
    }

    #[test]
    fn zero_traffic_is_inconclusive_not_a_crash() {
        let mut judge = SequentialJudge::new(&JudgeSettings::default());
        let empty = ArmCounts {
            requests: 0,
            errors: 0,
            latency_le_ms: Some(vec![(10.0, 0), (f64::INFINITY, 0)]),
        };
        for i in 1..=20 {
            let iv = Interval {
                t: 5.0 * i as f64,
                baseline: empty.clone(),
                canary: empty.clone(),
            };
            assert_eq!(judge.observe(&iv), Decision::Continue);
        }
        let r = judge.report();
        assert_eq!(r["verdict"], "inconclusive");
        assert_eq!(r["decided_at_s"], 100);
    }

    #[test]
    fn start_prior_is_in_seconds_and_spends_at_most_one() {
        let masses = |step: f64, until: f64| {
            let mut m = Mixture::new(1, StartPrior::default());
            let mut out = Vec::new();
            let mut t = step;
            while t <= until + 1e-9 {
                out.push((t, m.start_mass(t)));
                t += step;
            }
            out
        };
        let (fine, coarse) = (masses(1.0, 7200.0), masses(5.0, 7200.0));
        assert_eq!(fine[0].1, START_MASS);
        assert_eq!(coarse[0].1, START_MASS);
        for series in [&fine, &coarse] {
            let total: f64 = series.iter().map(|x| x.1).sum();
            assert!(total <= 1.0 + 1e-12 && total > 0.95, "total {total}");
        }
        // The same mass by the same time after the first interval, whatever the interval.
        let by = |series: &[(f64, f64)], first: f64, u: f64| {
            series
                .iter()
                .skip(1)
                .filter(|x| x.0 - first <= u + 1e-9)
                .map(|x| x.1)
                .sum::<f64>()
        };
        for u in [60.0, 300.0, 1200.0] {
            let (a, b) = (by(&fine, 1.0, u), by(&coarse, 5.0, u));
            assert!((a - b).abs() < 1e-12, "by {u}s: {a} vs {b}");
        }
        assert!((by(&fine, 1.0, START_TAU_S) - 0.5 * (1.0 - START_MASS)).abs() < 1e-12);
        // Time going backwards or repeating puts no new mass.
        let mut m = Mixture::new(1, StartPrior::default());
        m.start_mass(10.0);
        assert!(m.start_mass(20.0) > 0.0);
        assert_eq!(m.start_mass(15.0), 0.0);
        assert_eq!(m.start_mass(20.0), 0.0);
        assert_eq!(m.start_mass(f64::NAN), 0.0);
    }

    #[test]
    fn tilt_test_factor_has_expectation_at_most_one_under_the_null() {
        // Pooled requests of one interval by bucket; the canary is a uniformly random subset of
        // size n_c. Enumerate every subset and average the e-value factor.
        for (pool, n_c) in [
            (vec![0usize, 0, 1, 1, 2, 2, 3], 2usize),
            (vec![0, 1, 1, 1, 2, 3, 3, 3], 3),
            (vec![0, 0, 0, 0, 0, 3], 1),
        ] {
            let n = pool.len();
            let (mut total, mut count) = (0.0, 0.0);
            for mask in 0u32..(1 << n) {
                if mask.count_ones() as usize != n_c {
                    continue;
                }
                let (mut c, mut b) = (vec![0u64; 4], vec![0u64; 4]);
                for (i, bucket) in pool.iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        c[*bucket] += 1
                    } else {
                        b[*bucket] += 1
                    }
                }
                let mut t = TiltTest::new(&[10.0, 100.0, 1000.0], 16);
                t.update(5.0, &c, &b);
                total += t.log_e().exp() / START_MASS;
                count += 1.0;
            }
            assert!(
                total / count <= 1.0 + 1e-9,
                "E[e] = {} for {pool:?}, n_c = {n_c}",
                total / count
            );
        }
    }

    #[test]
    fn odds_ratio_test_is_a_supermartingale_in_the_worst_null_case() {
        // Exact expectation of one interval's e-value under the null, by enumerating the
        // hypergeometric law of the canary's count: must be <= 1 for every margin.
        fn ln_choose(n: u64, k: u64) -> f64 {
            statrs::function::factorial::ln_binomial(n, k)
        }
        let grid = SequentialSettings::default().grid();
        for &(n_c, n_b, m) in &[
            (5u64, 45u64, 3u64),
            (10, 10, 10),
            (40, 60, 50),
            (3, 500, 200),
            (200, 20, 7),
            (1, 1, 1),
        ] {
            let n = n_c + n_b;
            let mut expectation = 0.0;
            for x in m.saturating_sub(n_b)..=m.min(n_c) {
                let p = (ln_choose(n_c, x) + ln_choose(n_b, m - x) - ln_choose(n, m)).exp();
                let mut t = OddsRatioTest::new(&grid);
                t.update(5.0, x, n_c, m - x, n_b);
                // Divide out the start-time weight of the first interval: the factor itself.
                expectation += p * t.log_e().exp() / START_MASS;
            }
            assert!(
                expectation <= 1.0 + 1e-9,
                "E[e] = {expectation} for ({n_c}, {n_b}, {m})"
            );
        }
    }
}
