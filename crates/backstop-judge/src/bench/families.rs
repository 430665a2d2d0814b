//! The seeded scenario families: A/A with spikes and the regressions of the mix.

use super::{BenchConfig, DEFAULT_INTERVAL_S};
use crate::sim::{Latency, Regression, SimSpec, Spike};

/// A/A (no regression) or a regression from `onset_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    AA,
    Regression,
}

/// One scenario family.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub kind: FamilyKind,
    /// Runs at full size.
    pub runs: usize,
    /// The spec of run `i` (families cycle through splits and error ratios).
    pub spec: fn(usize) -> SimSpec,
    /// The family's regression has its own onset (delayed onset, during a spike); the others'
    /// regression comes with the canary, at [`BenchConfig::onset_s`].
    pub own_onset: bool,
}

impl Family {
    /// The scenario of run `i` under `cfg` (interval length and onset applied).
    pub fn spec_for(&self, i: usize, cfg: &BenchConfig) -> SimSpec {
        let mut spec = (self.spec)(i);
        if cfg.interval_s.is_finite() && cfg.interval_s > 0.0 {
            spec.interval_s = cfg.interval_s;
        }
        if self.kind == FamilyKind::Regression && !self.own_onset {
            spec.regression.onset_s = cfg.onset_s.clamp(0.0, spec.duration_s / 2.0);
        }
        spec
    }
}

fn base(rps: f64, duration_s: f64) -> SimSpec {
    SimSpec {
        interval_s: DEFAULT_INTERVAL_S,
        duration_s,
        rps,
        load_amplitude: 0.0,
        load_period_s: 900.0,
        split: vec![(0.0, 0.1)],
        error_ratio: 0.005,
        latency: Latency::lognormal(50.0, 0.6),
        spike: None,
        regression: Regression {
            onset_s: 0.0,
            error_mult: 2.0,
            latency_mult: 1.25,
            tail_fraction: 0.0,
            tail_factor: 1.0,
        },
        applied: false,
    }
}

const SPLITS: [f64; 3] = [0.1, 0.25, 0.5];
const ERROR_RATIOS: [f64; 3] = [0.002, 0.005, 0.02];

fn steady(rps: f64, duration_s: f64, i: usize) -> SimSpec {
    let mut s = base(rps, duration_s);
    s.split = vec![(0.0, SPLITS[i % 3])];
    s.error_ratio = ERROR_RATIOS[(i / 3) % 3];
    s
}

pub(super) fn regression(error_mult: f64, latency_mult: f64) -> SimSpec {
    let mut s = base(200.0, 3600.0);
    s.regression.error_mult = error_mult;
    s.regression.latency_mult = latency_mult;
    s.applied = true;
    s
}

pub(super) const SPIKE: Spike = Spike {
    start_s: 600.0,
    end_s: 780.0,
    error_mult: 20.0,
    latency_mult: 3.0,
};

/// The families of issue 3.
pub fn families() -> Vec<Family> {
    vec![
        aa("aa-steady-3rps", |i| steady(3.0, 3600.0, i)),
        aa("aa-steady-30rps", |i| steady(30.0, 3600.0, i)),
        aa("aa-steady-300rps", |i| steady(300.0, 1800.0, i)),
        aa("aa-varying-load", |_| {
            let mut s = base(100.0, 1800.0);
            s.load_amplitude = 0.8;
            s.split = vec![(0.0, 0.05), (600.0, 0.25), (1200.0, 0.5)];
            s
        }),
        aa("aa-shared-spike", |_| {
            let mut s = base(100.0, 1800.0);
            s.spike = Some(SPIKE);
            s
        }),
        aa("aa-heavy-tail", |_| {
            let mut s = base(100.0, 1800.0);
            s.latency = Latency {
                median_ms: 40.0,
                sigma: 1.2,
                tail_fraction: 0.02,
                tail_factor: 8.0,
            };
            s
        }),
        regression_from_canary("err-x1.5", |_| regression(1.5, 1.0)),
        regression_from_canary("err-x2", |_| regression(2.0, 1.0)),
        regression_from_canary("err-x3", |_| regression(3.0, 1.0)),
        regression_from_canary("err-x6", |_| regression(6.0, 1.0)),
        regression_from_canary("err-x3-low-traffic", |_| {
            let mut s = regression(3.0, 1.0);
            s.rps = 10.0;
            s
        }),
        regression_with_own_onset("err-x3-delayed-onset", |_| {
            let mut s = regression(3.0, 1.0);
            s.regression.onset_s = 1200.0;
            s
        }),
        regression_with_own_onset("err-x3-during-spike", |_| {
            let mut s = regression(3.0, 1.0);
            s.spike = Some(SPIKE);
            s.regression.onset_s = SPIKE.start_s;
            s
        }),
        regression_from_canary("lat+10%", |_| regression(1.0, 1.10)),
        regression_from_canary("lat+25%", |_| regression(1.0, 1.25)),
        regression_from_canary("lat+60%", |_| regression(1.0, 1.60)),
        regression_from_canary("lat-tail-3%x10", |_| {
            let mut s = regression(1.0, 1.0);
            s.regression.tail_fraction = 0.03;
            s.regression.tail_factor = 10.0;
            s
        }),
    ]
}

/// An A/A family: 200 runs.
fn aa(name: &'static str, spec: fn(usize) -> SimSpec) -> Family {
    Family {
        name,
        kind: FamilyKind::AA,
        runs: 200,
        spec,
        own_onset: false,
    }
}

/// A regression family (100 runs) whose regression comes with the canary.
fn regression_from_canary(name: &'static str, spec: fn(usize) -> SimSpec) -> Family {
    Family {
        name,
        kind: FamilyKind::Regression,
        runs: 100,
        spec,
        own_onset: false,
    }
}

/// A regression family (100 runs) whose spec sets its own onset.
fn regression_with_own_onset(name: &'static str, spec: fn(usize) -> SimSpec) -> Family {
    Family {
        own_onset: true,
        ..regression_from_canary(name, spec)
    }
}
