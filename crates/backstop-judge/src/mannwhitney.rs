//! Mann-Whitney / Wilcoxon rank-sum with the Hodges-Lehmann shift and its confidence interval,
//! normal approximation with tie and continuity correction: a port of R's
//! `wilcox.test(x, y, conf.int = TRUE, exact = FALSE, correct = TRUE)` as used by Kayenta's
//! `MannWhitney.scala` (roots by Brent's method on `[min(x) − max(y), max(x) − min(y)]`,
//! clamped at the ends).

use statrs::distribution::{ContinuousCDF, Normal};

/// Result of [`mann_whitney`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// Lower end of the confidence interval of the shift `x − y`.
    pub lower: f64,
    /// Upper end.
    pub upper: f64,
    /// Hodges-Lehmann estimate of the shift (root at `zq = 0`).
    pub estimate: f64,
}

/// Why the test cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MannWhitneyError {
    #[error("Mann-Whitney needs at least one value in each sample")]
    Empty,
    #[error("cannot compute a confidence interval when all observations are tied")]
    AllTied,
}

/// Samples sorted once; NaN values (ranked above everything, Kayenta's NaN MAXIMAL) counted
/// apart.
struct Sorted {
    x: Vec<f64>,
    y: Vec<f64>,
    x_nan: usize,
    y_nan: usize,
}

impl Sorted {
    fn new(x: &[f64], y: &[f64]) -> Self {
        let prep = |v: &[f64]| {
            let mut s: Vec<f64> = v.iter().copied().filter(|a| !a.is_nan()).collect();
            s.sort_by(f64::total_cmp);
            let nan = v.len() - s.len();
            (s, nan)
        };
        let (x, x_nan) = prep(x);
        let (y, y_nan) = prep(y);
        Self { x, y, x_nan, y_nan }
    }

    /// Sum of the average ranks of `x − mu` in `c(x − mu, y)` and `Σ (t³ − t)` over tie groups:
    /// one merge, O(n).
    fn rank_sum(&self, mu: f64) -> (f64, f64) {
        let (x, y) = (&self.x, &self.y);
        let (mut i, mut j) = (0, 0);
        let mut pos = 0.0;
        let mut sum_x = 0.0;
        let mut ties = 0.0;
        while i < x.len() || j < y.len() {
            let v = match (x.get(i), y.get(j)) {
                (Some(a), Some(b)) => (a - mu).min(*b),
                (Some(a), None) => a - mu,
                (None, Some(b)) => *b,
                (None, None) => break,
            };
            let mut cx = 0.0;
            while i < x.len() && x[i] - mu == v {
                i += 1;
                cx += 1.0;
            }
            let mut cy = 0.0;
            while j < y.len() && y[j] == v {
                j += 1;
                cy += 1.0;
            }
            let t: f64 = cx + cy;
            sum_x += cx * (pos + (t + 1.0) / 2.0);
            ties += t * t * t - t;
            pos += t;
        }
        let t = (self.x_nan + self.y_nan) as f64;
        sum_x += self.x_nan as f64 * (pos + (t + 1.0) / 2.0);
        ties += t * t * t - t;
        (sum_x, ties)
    }
}

fn wdiff(s: &Sorted, mu: f64, zq: f64, correct: bool) -> Result<f64, MannWhitneyError> {
    let nx = (s.x.len() + s.x_nan) as f64;
    let ny = (s.y.len() + s.y_nan) as f64;
    let (rank_sum, ties) = s.rank_sum(mu);
    let dz = rank_sum - nx * (nx + 1.0) / 2.0 - nx * ny / 2.0;
    let correction = if !correct {
        0.0
    } else if dz > 0.0 {
        0.5
    } else if dz < 0.0 {
        -0.5
    } else {
        0.0
    };
    let sigma =
        ((nx * ny / 12.0) * ((nx + ny + 1.0) - ties / ((nx + ny) * (nx + ny - 1.0)))).sqrt();
    if sigma == 0.0 || !sigma.is_finite() {
        return Err(MannWhitneyError::AllTied);
    }
    Ok((dz - correction) / sigma - zq)
}

/// Brent's root finder, R's `R_zeroin2` (the `uniroot` behind `wilcox.test`): `f(a)` and
/// `f(b)` must have opposite signs; stops when the bracket is within `tol`.
pub(crate) fn brent<F: FnMut(f64) -> Result<f64, E>, E>(
    mut f: F,
    ax: f64,
    bx: f64,
    tol: f64,
) -> Result<f64, E> {
    let (mut a, mut b) = (ax, bx);
    let mut fa = f(a)?;
    let mut fb = f(b)?;
    if fa == 0.0 {
        return Ok(a);
    }
    if fb == 0.0 {
        return Ok(b);
    }
    let (mut c, mut fc) = (a, fa);
    for _ in 0..1000 {
        let prev_step = b - a;
        if fc.abs() < fb.abs() {
            a = b;
            b = c;
            c = a;
            fa = fb;
            fb = fc;
            fc = fa;
        }
        let tol_act = 2.0 * f64::EPSILON * b.abs() + tol / 2.0;
        let mut new_step = (c - b) / 2.0;
        if new_step.abs() <= tol_act || fb == 0.0 {
            return Ok(b);
        }
        if prev_step.abs() >= tol_act && fa.abs() > fb.abs() {
            let cb = c - b;
            let (mut p, mut q);
            if a == c {
                let t1 = fb / fa;
                p = cb * t1;
                q = 1.0 - t1;
            } else {
                let qq = fa / fc;
                let t1 = fb / fc;
                let t2 = fb / fa;
                p = t2 * (cb * qq * (qq - t1) - (b - a) * (t1 - 1.0));
                q = (qq - 1.0) * (t1 - 1.0) * (t2 - 1.0);
            }
            if p > 0.0 {
                q = -q;
            } else {
                p = -p;
            }
            if p < (0.75 * cb * q - (tol_act * q).abs() / 2.0) && p < (prev_step * q / 2.0).abs() {
                new_step = p / q;
            }
        }
        if new_step.abs() < tol_act {
            new_step = if new_step > 0.0 { tol_act } else { -tol_act };
        }
        a = b;
        fa = fb;
        b += new_step;
        fb = f(b)?;
        if (fb > 0.0 && fc > 0.0) || (fb < 0.0 && fc < 0.0) {
            c = a;
            fc = fa;
        }
    }
    Ok(b)
}

/// Mann-Whitney shift `x − y` (x = experiment/canary, y = control/baseline) with a two-sided
/// `conf_level` interval.
/// Root tolerance: `tol` (R uses an absolute 1e-4; the judge passes a tolerance relative to
/// the data's range).
pub fn mann_whitney(
    x: &[f64],
    y: &[f64],
    conf_level: f64,
    tol: f64,
) -> Result<MannWhitney, MannWhitneyError> {
    if x.is_empty() || y.is_empty() {
        return Err(MannWhitneyError::Empty);
    }
    let sorted = Sorted::new(x, y);
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mu_min = min(x) - max(y);
    let mu_max = max(x) - min(y);
    let root = |zq: f64| -> Result<f64, MannWhitneyError> {
        let f_lower = wdiff(&sorted, mu_min, zq, true)?;
        if f_lower <= 0.0 {
            return Ok(mu_min);
        }
        let f_upper = wdiff(&sorted, mu_max, zq, true)?;
        if f_upper >= 0.0 {
            return Ok(mu_max);
        }
        brent(|mu| wdiff(&sorted, mu, zq, true), mu_min, mu_max, tol)
    };
    let alpha = 1.0 - conf_level;
    let z = Normal::standard().inverse_cdf(1.0 - alpha / 2.0);
    let (lower, upper) = (root(z)?, root(-z)?);
    // R sets `correct <- FALSE` before the estimate: no continuity correction for the shift.
    let estimate = brent(|mu| wdiff(&sorted, mu, 0.0, false), mu_min, mu_max, tol)?;
    Ok(MannWhitney {
        lower,
        upper,
        estimate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(x: &[f64], y: &[f64], want: [f64; 3], tol: f64) {
        let got = mann_whitney(x, y, 0.98, 1e-4).expect("test runs");
        for (name, g, w) in [
            ("lower", got.lower, want[0]),
            ("upper", got.upper, want[1]),
            ("estimate", got.estimate, want[2]),
        ] {
            assert!((g - w).abs() <= tol, "{name}: got {g}, R says {w}");
        }
    }

    // Reference values: R 4.x `wilcox.test(x, y, conf.int=TRUE, conf.level=0.98, exact=FALSE,
    // correct=TRUE)` ($conf.int, $estimate); R's uniroot runs with tol = 1e-4.
    #[test]
    fn matches_r_hollander_wolfe_example() {
        let x = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46];
        let y = [1.15, 0.88, 0.90, 0.74, 1.21];
        check(&x, &y, [-0.3199972132, 0.9899461821, 0.3025083390], 1e-6);
    }

    #[test]
    fn matches_kayenta_suite_and_r_when_clamped() {
        // Kayenta MannWhitneySuite: CI clamped to [min(x)-max(y), max(x)-min(y)] = [6, 39].
        check(
            &[10.0, 20.0, 30.0, 40.0],
            &[1.0, 2.0, 3.0, 4.0],
            [6.0, 39.0, 22.5],
            1e-9,
        );
    }

    #[test]
    fn matches_r_with_ties() {
        let x = [1.1, 2.2, 2.2, 3.5, 4.0, 4.0, 4.0, 5.1, 6.3, 7.7, 8.0, 9.9];
        let y = [0.5, 1.0, 2.2, 2.2, 3.0, 3.1, 4.0, 4.4, 5.0];
        check(&x, &y, [-0.8000386452, 4.8999643781, 1.7999342124], 1e-6);
        let x = [0.0, 0.0, 0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 0.0, 3.0];
        let y = [
            0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0,
        ];
        check(&x, &y, [-0.0000051010, 0.9999833471, 0.0000051091], 1e-4);
    }

    #[test]
    fn matches_r_on_lognormal_samples() {
        let a = [
            108.36, 41.17, 65.47, 74.92, 66.83, 51.78, 116.25, 52.07, 149.79, 52.91, 104.84,
            171.28, 27.26, 47.49, 51.08, 75.04, 47.36, 14.47, 16.12, 105.64, 46.84, 22.41, 50.1,
            100.22, 140.84, 44.03, 48.01, 22.61, 68.72, 39.65, 68.56, 77.67, 91.61, 40.27, 70.28,
            23.14, 36.88, 35.68, 16.33, 55.59,
        ];
        let b = [
            73.92, 55.67, 97.42, 46.37, 33.64, 82.8, 44.45, 137.28, 53.75, 92.56, 78.33, 45.06,
            146.62, 91.97, 69.75, 76.58, 93.66, 69.75, 14.93, 76.9, 55.5, 73.16, 89.2, 134.27,
            46.36, 127.9, 78.88, 112.08, 105.67, 95.63, 39.58, 63.75, 91.08, 41.4, 50.84,
        ];
        check(&b, &a, [-1.7600305735, 32.8900628848, 17.5748026346], 1e-6);
    }

    #[test]
    fn all_tied_and_empty_are_errors() {
        assert_eq!(
            mann_whitney(&[1.0, 1.0], &[1.0], 0.98, 1e-4),
            Err(MannWhitneyError::AllTied)
        );
        assert_eq!(
            mann_whitney(&[], &[1.0], 0.98, 1e-4),
            Err(MannWhitneyError::Empty)
        );
    }
}
