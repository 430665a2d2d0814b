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
    s.regression = Regression {
        onset_s: 0.0,
        error_mult,
        latency_mult,
        tail_fraction: 0.0,
        tail_factor: 1.0,
    };
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
        Family {
            name: "aa-steady-3rps",
            kind: FamilyKind::AA,
            own_onset: false,
            runs: 200,
            spec: |i| steady(3.0, 3600.0, i),
        },
        Family {
            name: "aa-steady-30rps",
            kind: FamilyKind::AA,
            own_onset: false,
            runs: 200,
            spec: |i| steady(30.0, 3600.0, i),
        },
        Family {
            name: "aa-steady-300rps",
            kind: FamilyKind::AA,
            own_onset: false,
            runs: 200,
            spec: |i| steady(300.0, 1800.0, i),
        },
        Family {
            name: "aa-varying-load",
            kind: FamilyKind::AA,
            own_onset: false,
            runs: 200,
            spec: |_| {
                let mut s = base(100.0, 1800.0);
                s.load_amplitude = 0.8;
                s.split = vec![(0.0, 0.05), (600.0, 0.25), (1200.0, 0.5)];
                s
            },
        },
        Family {
            name: "aa-shared-spike",
            kind: FamilyKind::AA,
            own_onset: false,
            runs: 200,
            spec: |_| {
                let mut s = base(100.0, 1800.0);
                s.spike = Some(SPIKE);
                s
            },
        },
        Family {
            name: "aa-heavy-tail",
            kind: FamilyKind::AA,
            own_onset: false,
            runs: 200,
            spec: |_| {
                let mut s = base(100.0, 1800.0);
                s.latency = Latency {
                    median_ms: 40.0,
                    sigma: 1.2,
                    tail_fraction: 0.02,
                    tail_factor: 8.0,
                };
                s
            },
        },
        Family {
            name: "err-x1.5",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(1.5, 1.0),
        },
        Family {
            name: "err-x2",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(2.0, 1.0),
        },
        Family {
            name: "err-x3",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(3.0, 1.0),
        },
        Family {
            name: "err-x6",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(6.0, 1.0),
        },
        Family {
            name: "err-x3-low-traffic",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| {
                let mut s = regression(3.0, 1.0);
                s.rps = 10.0;
                s
            },
        },
        Family {
            name: "err-x3-delayed-onset",
            kind: FamilyKind::Regression,
            own_onset: true,
            runs: 100,
            spec: |_| {
                let mut s = regression(3.0, 1.0);
                s.regression.onset_s = 1200.0;
                s
            },
        },
        Family {
            name: "err-x3-during-spike",
            kind: FamilyKind::Regression,
            own_onset: true,
            runs: 100,
            spec: |_| {
                let mut s = regression(3.0, 1.0);
                s.spike = Some(SPIKE);
                s.regression.onset_s = SPIKE.start_s;
                s
            },
        },
        Family {
            name: "lat+10%",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(1.0, 1.10),
        },
        Family {
            name: "lat+25%",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(1.0, 1.25),
        },
        Family {
            name: "lat+60%",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| regression(1.0, 1.60),
        },
        Family {
            name: "lat-tail-3%x10",
            kind: FamilyKind::Regression,
            own_onset: false,
            runs: 100,
            spec: |_| {
                let mut s = regression(1.0, 1.0);
                s.regression.tail_fraction = 0.03;
                s.regression.tail_factor = 10.0;
                s
            },
        },
    ]
}
