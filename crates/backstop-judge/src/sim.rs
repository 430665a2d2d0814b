//! Seeded canary simulator: per-interval counts and latency histograms for two arms, with the
//! ground truth the oracle needs. Used by the bench and by the statistical tests.

use statrs::function::erf::erfc;

use crate::{ArmCounts, Interval};

/// Histogram bounds in ms (Prometheus-style, as in the scenario spec example).
pub const BOUNDS_MS: [f64; 11] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// xoshiro256** seeded through splitmix64: small, fast, reproducible on every platform.
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self([next(), next(), next(), next()])
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1].
    fn open01(&mut self) -> f64 {
        1.0 - self.f64()
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        (-2.0 * self.open01().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.f64()).cos()
    }

    /// Poisson(`lambda`): exact (Knuth) below 30, rounded normal above (only used for totals,
    /// whose law does not matter to the judges).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut k = 0;
            let mut p = self.open01();
            while p > limit {
                k += 1;
                p *= self.open01();
            }
            return k;
        }
        (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64
    }

    /// Binomial(`n`, `p`), exact (geometric waiting times; cost O(n·min(p, 1−p))).
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if p > 0.5 {
            return n - self.binomial(n, 1.0 - p);
        }
        let log_q = (1.0 - p).ln();
        let mut count = 0;
        let mut pos: u64 = 0;
        loop {
            let gap = (self.open01().ln() / log_q).floor();
            if !gap.is_finite() || gap >= (n - pos) as f64 {
                return count;
            }
            pos += gap as u64 + 1;
            if pos > n {
                return count;
            }
            count += 1;
        }
    }
}

/// A latency distribution: lognormal body plus an optional slow tail.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Median of the body in ms.
    pub median_ms: f64,
    /// Log-scale standard deviation of the body.
    pub sigma: f64,
    /// Fraction of requests in the slow tail.
    pub tail_fraction: f64,
    /// The tail is the body scaled by this factor.
    pub tail_factor: f64,
}

impl Latency {
    /// A lognormal without tail.
    pub fn lognormal(median_ms: f64, sigma: f64) -> Self {
        Self {
            median_ms,
            sigma,
            tail_fraction: 0.0,
            tail_factor: 1.0,
        }
    }

    fn cdf(&self, x: f64) -> f64 {
        let phi = |z: f64| 0.5 * erfc(-z / std::f64::consts::SQRT_2);
        let body = phi((x.ln() - self.median_ms.ln()) / self.sigma);
        let tail = phi((x.ln() - (self.median_ms * self.tail_factor).ln()) / self.sigma);
        (1.0 - self.tail_fraction) * body + self.tail_fraction * tail
    }

    /// Probability of each bucket of [`BOUNDS_MS`] plus `+Inf` (not cumulative; sums to 1).
    pub fn bucket_probs(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(BOUNDS_MS.len() + 1);
        let mut prev = 0.0;
        for b in BOUNDS_MS {
            let c = self.cdf(b);
            out.push((c - prev).max(0.0));
            prev = c;
        }
        out.push((1.0 - prev).max(0.0));
        out
    }

    /// Scaled by `factor` (every request `factor` times slower).
    pub fn scaled(&self, factor: f64) -> Self {
        Self {
            median_ms: self.median_ms * factor,
            ..*self
        }
    }
}

/// A degradation of both arms between `start_s` and `end_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spike {
    pub start_s: f64,
    pub end_s: f64,
    pub error_mult: f64,
    pub latency_mult: f64,
}

/// A regression of the canary from `onset_s` on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Regression {
    pub onset_s: f64,
    /// Canary error ratio = baseline's × this.
    pub error_mult: f64,
    /// Canary body latency × this.
    pub latency_mult: f64,
    /// Extra slow tail of the canary: fraction of requests …
    pub tail_fraction: f64,
    /// … that are this many times slower.
    pub tail_factor: f64,
}

impl Regression {
    /// No change at all (an A/A run).
    pub const NONE: Regression = Regression {
        onset_s: 0.0,
        error_mult: 1.0,
        latency_mult: 1.0,
        tail_fraction: 0.0,
        tail_factor: 1.0,
    };
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSpec {
    pub interval_s: f64,
    pub duration_s: f64,
    /// Mean requests per second over both arms.
    pub rps: f64,
    /// Load varies as `rps · (1 + amplitude · sin(2πt / period))`.
    pub load_amplitude: f64,
    pub load_period_s: f64,
    /// Canary share of traffic: `(from t, fraction)` steps, the first from 0.
    pub split: Vec<(f64, f64)>,
    /// Baseline error ratio outside spikes.
    pub error_ratio: f64,
    pub latency: Latency,
    pub spike: Option<Spike>,
    /// Applied to the canary when `applied`; otherwise only the oracle's alternative.
    pub regression: Regression,
    pub applied: bool,
}

/// Ground truth of one interval for the oracle: error ratios and bucket probabilities of the
/// baseline-like null and of the alternative the oracle tests (`None` before the onset).
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub p0: f64,
    pub q0: Vec<f64>,
    pub alt: Option<(f64, Vec<f64>)>,
    /// The alternative of this interval had the regression already started (also before the
    /// onset): what an oracle that is not told the onset tests.
    pub if_regressed: (f64, Vec<f64>),
}

fn sample_hist(rng: &mut Rng, n: u64, probs: &[f64]) -> Vec<(f64, u64)> {
    let mut cum = Vec::with_capacity(probs.len());
    let mut acc = 0.0;
    for p in probs {
        acc += p;
        cum.push(acc);
    }
    let mut counts = vec![0u64; probs.len()];
    for _ in 0..n {
        let u = rng.f64() * acc;
        let idx = cum.partition_point(|c| *c <= u).min(probs.len() - 1);
        counts[idx] += 1;
    }
    let mut out = Vec::with_capacity(probs.len());
    let mut running = 0;
    for (i, c) in counts.iter().enumerate() {
        running += c;
        let bound = BOUNDS_MS.get(i).copied().unwrap_or(f64::INFINITY);
        out.push((bound, running));
    }
    out
}

/// Simulates `spec` with `seed`.
pub fn simulate(spec: &SimSpec, seed: u64) -> (Vec<Interval>, Vec<Truth>) {
    let mut rng = Rng::new(seed);
    let steps = (spec.duration_s / spec.interval_s).round().max(1.0) as usize;
    let mut intervals = Vec::with_capacity(steps);
    let mut truths = Vec::with_capacity(steps);
    for i in 1..=steps {
        let t = i as f64 * spec.interval_s;
        let mid = t - spec.interval_s / 2.0;
        let load = spec.rps
            * (1.0
                + spec.load_amplitude
                    * (2.0 * std::f64::consts::PI * mid / spec.load_period_s).sin());
        let total = rng.poisson(load.max(0.0) * spec.interval_s);
        let split = spec
            .split
            .iter()
            .rev()
            .find(|(from, _)| mid >= *from)
            .map_or(0.1, |s| s.1);
        let n_c = rng.binomial(total, split);
        let n_b = total - n_c;
        let (mut p0, mut lat0) = (spec.error_ratio, spec.latency);
        if let Some(s) = spec.spike
            && mid >= s.start_s
            && mid < s.end_s
        {
            p0 = (p0 * s.error_mult).min(1.0);
            lat0 = lat0.scaled(s.latency_mult);
        }
        let r = spec.regression;
        let mut alt_lat = lat0.scaled(r.latency_mult);
        if r.tail_fraction > 0.0 {
            alt_lat.tail_fraction = r.tail_fraction;
            alt_lat.tail_factor = r.tail_factor;
        }
        let p_alt = (p0 * r.error_mult).min(1.0);
        let q0 = lat0.bucket_probs();
        let q_alt = alt_lat.bucket_probs();
        let regressed = spec.applied && mid >= r.onset_s;
        let (p_c, q_c) = if regressed {
            (p_alt, &q_alt)
        } else {
            (p0, &q0)
        };
        let baseline = ArmCounts {
            requests: n_b,
            errors: rng.binomial(n_b, p0),
            latency_le_ms: Some(sample_hist(&mut rng, n_b, &q0)),
        };
        let canary = ArmCounts {
            requests: n_c,
            errors: rng.binomial(n_c, p_c),
            latency_le_ms: Some(sample_hist(&mut rng, n_c, q_c)),
        };
        intervals.push(Interval {
            t,
            baseline,
            canary,
            log_lines: None,
        });
        let alt = (mid >= r.onset_s).then(|| (p_alt, q_alt.clone()));
        truths.push(Truth {
            p0,
            q0: q0.clone(),
            alt,
            if_regressed: (p_alt, q_alt),
        });
    }
    (intervals, truths)
}

/// A simulated run as a [`Scenario`](crate::Scenario) (header extras `truth` = `"aa"` or
/// `"regression"` and `onset_s`, which judges ignore): for end-to-end tests of
/// `backstop analyze` and for writing example files with [`crate::scenario::to_jsonl`].
pub fn scenario(spec: &SimSpec, seed: u64, name: &str) -> crate::Scenario {
    let (intervals, _) = simulate(spec, seed);
    let mut extra = serde_json::Map::new();
    extra.insert(
        "truth".into(),
        serde_json::json!(if spec.applied { "regression" } else { "aa" }),
    );
    if spec.applied {
        extra.insert(
            "onset_s".into(),
            crate::report::num(spec.regression.onset_s),
        );
    }
    extra.insert("seed".into(), serde_json::json!(seed));
    crate::Scenario {
        name: name.to_string(),
        interval_s: spec.interval_s,
        intervals,
        extra,
    }
}

/// A ready-made spec: 100 req/s, 10 % canary, 0.5 % errors, lognormal latency (median 50 ms),
/// `duration_s` long; with `error_mult` ≠ 1 the canary's error ratio is multiplied from
/// `onset_s` on.
pub fn example_spec(duration_s: f64, error_mult: f64, onset_s: f64) -> SimSpec {
    SimSpec {
        interval_s: 5.0,
        duration_s,
        rps: 100.0,
        load_amplitude: 0.0,
        load_period_s: 600.0,
        split: vec![(0.0, 0.1)],
        error_ratio: 0.005,
        latency: Latency::lognormal(50.0, 0.6),
        spike: None,
        regression: Regression {
            onset_s,
            error_mult,
            ..Regression::NONE
        },
        applied: error_mult != 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_scenarios_round_trip_through_the_file_format() {
        let s = scenario(&example_spec(120.0, 8.0, 30.0), 4, "example");
        let text = crate::scenario::to_jsonl(&s);
        let back = crate::parse_scenario(&text).expect("writes a valid file");
        assert_eq!(back, s);
        assert_eq!(
            back.extra.get("truth"),
            Some(&serde_json::json!("regression"))
        );
        let mut judge = crate::build(&crate::JudgeSettings::default());
        let out = crate::replay(judge.as_mut(), &back.intervals);
        assert_eq!(out.report["verdict"], "fail");
    }

    #[test]
    fn samplers_have_the_right_means() {
        let mut rng = Rng::new(7);
        let n = 20_000;
        let bin: u64 = (0..n).map(|_| rng.binomial(100, 0.03)).sum();
        assert!((bin as f64 / n as f64 - 3.0).abs() < 0.08);
        let bin_hi: u64 = (0..n).map(|_| rng.binomial(10, 0.8)).sum();
        assert!((bin_hi as f64 / n as f64 - 8.0).abs() < 0.05);
        let poi: u64 = (0..n).map(|_| rng.poisson(4.0)).sum();
        assert!((poi as f64 / n as f64 - 4.0).abs() < 0.08);
        let probs = Latency::lognormal(50.0, 0.6).bucket_probs();
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Half of the requests are below the median (50 ms bound).
        assert!((probs[..4].iter().sum::<f64>() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn simulation_is_seeded_and_consistent() {
        let spec = SimSpec {
            interval_s: 5.0,
            duration_s: 60.0,
            rps: 40.0,
            load_amplitude: 0.0,
            load_period_s: 600.0,
            split: vec![(0.0, 0.25)],
            error_ratio: 0.01,
            latency: Latency::lognormal(50.0, 0.6),
            spike: None,
            regression: Regression::NONE,
            applied: false,
        };
        let (a, _) = simulate(&spec, 3);
        let (b, truth) = simulate(&spec, 3);
        assert_eq!(a, b);
        assert_eq!(a.len(), 12);
        assert_eq!(truth.len(), 12);
        for iv in &a {
            for arm in [&iv.baseline, &iv.canary] {
                let h = arm.latency_le_ms.as_ref().expect("buckets");
                assert_eq!(h.last().map(|b| b.1), Some(arm.requests));
                assert!(arm.errors <= arm.requests);
            }
        }
    }
}
