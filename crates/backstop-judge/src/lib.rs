//! Canary judges: values in, verdicts with evidence out. No I/O.
//!
//! The live controller and `backstop analyze` drive the same [`Judge`] through
//! [`Judge::observe`], one interval at a time.

use serde::{Deserialize, Serialize};

/// Counts for one arm (baseline or canary) during one interval (increments, not totals).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmCounts {
    pub requests: u64,
    pub errors: u64,
    /// Cumulative histogram of this interval's latencies: (upper bound in ms, count),
    /// bounds strictly increasing, the last one `f64::INFINITY` with count == requests.
    pub latency_le_ms: Option<Vec<(f64, u64)>>,
}

/// One interval of a canary: `t` = end of the interval, seconds since the canary started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub t: f64,
    pub baseline: ArmCounts,
    pub canary: ArmCounts,
}

/// What the judge says after an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// No decision yet: keep watching. At the end of an analysis this reads as `pass`.
    Continue,
    /// The canary is worse than the baseline: roll back.
    Fail,
    /// The judge cannot decide and escalates to a human (e.g. both arms degraded alike).
    Inconclusive,
}

/// Which judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JudgeKind {
    #[default]
    Sequential,
    Kayenta,
    Threshold,
}

/// A judge: fed one interval at a time, in order.
pub trait Judge: Send {
    /// Feed the next interval; returns the decision so far. After `Fail` the caller stops.
    fn observe(&mut self, interval: &Interval) -> Decision;
    /// The report in the `backstop analyze --output json` shape (see the scenario spec).
    fn report(&self) -> serde_json::Value;
}

/// Analysis settings as written in `backstop.yaml` (`analysis:`) and taken by `backstop analyze`.
/// Every field has a default, so `{}` is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeSettings {
    /// Which judge decides.
    pub judge: JudgeKind,
    /// False-alarm rate promised over the whole analysis (sequential judge).
    pub alpha: f64,
    /// How often the controller takes counts and asks the judge, e.g. `5s`.
    #[serde(with = "humantime_serde_compat")]
    #[schemars(with = "String")]
    pub interval: std::time::Duration,
}

impl Default for JudgeSettings {
    fn default() -> Self {
        Self { judge: JudgeKind::Sequential, alpha: 0.01, interval: std::time::Duration::from_secs(5) }
    }
}

mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e} (expected e.g. 5s, 2m, 1h)")))
    }
}
