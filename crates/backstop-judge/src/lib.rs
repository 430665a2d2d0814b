//! Canary judges: values in, verdicts with evidence out. No I/O besides reading scenario text
//! (the command-line front ends are the `backstop` binary's).
//!
//! The live controller and `backstop analyze` drive the same [`Judge`] through
//! [`Judge::observe`], one interval at a time; [`build`] makes the judge named in
//! [`JudgeSettings`] (the `analysis:` block of `backstop.yaml`).
//!
//! - [`sequential`] (default): anytime-valid, directional e-processes for the error ratio and the
//!   latency histogram; the false-alarm rate `alpha` holds however often the judge is asked.
//! - [`kayenta`]: Kayenta's NetflixACAJudge (Mann-Whitney, scoring) at fixed checkpoints.
//! - [`threshold`]: Flagger / Argo Rollouts semantics with their documented presets.
//! - [`scenario`]: the `backstop-scenario/v1` format and [`replay`].
//! - [`bench`](mod@bench) and [`sim`]: the seeded canary benchmark with an oracle SPRT.
//! - [`anytime`], [`mannwhitney`]: building blocks with reference values from savvi, confseq and R.

use serde::{Deserialize, Serialize};

pub mod anytime;
pub mod bake;
pub mod bench;
pub mod calibrate;
pub mod hist;
pub mod kayenta;
pub mod mannwhitney;
pub mod outlier;
mod report;
pub mod scenario;
pub mod scope;
pub mod sequential;
pub mod sim;
pub mod threshold;

pub use kayenta::{KayentaJudge, KayentaSettings};
pub use report::Verdict;
pub use scenario::{Replay, Scenario, ScenarioError, parse_scenario, read_scenario, replay};
pub use sequential::{OddsRatioTest, SequentialJudge, SequentialSettings, StartPrior, TiltTest};
pub use threshold::{ThresholdJudge, ThresholdPreset, ThresholdSettings};

/// Counts for one arm (baseline or canary) during one interval (increments, not totals).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmCounts {
    pub requests: u64,
    pub errors: u64,
    /// Cumulative histogram of this interval's latencies: (upper bound in ms, count),
    /// bounds strictly increasing, the last one `f64::INFINITY` with count == requests.
    /// JSON has no infinity: that bound is written `null` (and read back).
    #[serde(default, with = "infinite_as_null")]
    pub latency_le_ms: Option<Vec<(f64, u64)>>,
}

/// Histogram bounds in JSON: the infinite one as `null`.
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Histogram = Option<Vec<(f64, u64)>>;

    pub fn serialize<S: Serializer>(h: &Histogram, s: S) -> Result<S::Ok, S::Error> {
        h.as_ref()
            .map(|h| {
                h.iter()
                    .map(|(le, n)| (le.is_finite().then_some(*le), *n))
                    .collect::<Vec<_>>()
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram, D::Error> {
        let h: Option<Vec<(Option<f64>, u64)>> = Deserialize::deserialize(d)?;
        Ok(h.map(|h| {
            h.into_iter()
                .map(|(le, n)| (le.unwrap_or(f64::INFINITY), n))
                .collect()
        }))
    }
}

/// One interval of a canary: `t` = end of the interval, seconds since the canary started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub t: f64,
    pub baseline: ArmCounts,
    pub canary: ArmCounts,
    /// Error-log lines each arm's instances wrote during the interval (the `logs` signal),
    /// when the service's logs are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_lines: Option<LogLines>,
}

/// Error-log lines (lines matching the service's pattern) per arm during one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLines {
    pub baseline: u64,
    pub canary: u64,
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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
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
    /// False-alarm rate promised over the whole analysis (sequential judge), above 0 and at
    /// most 0.5.
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 0.5))]
    pub alpha: f64,
    /// How often the controller takes counts and asks the judge, e.g. `5s` (more than 0).
    #[serde(with = "humantime_serde_compat")]
    #[schemars(with = "String")]
    pub interval: std::time::Duration,
    /// Which signals the judge compares between the arms. `errors` = error ratio (higher is
    /// worse); `latency` = latency distribution from histogram buckets (slower is worse), used
    /// only when buckets are present.
    pub signals: Vec<SignalKind>,
    /// Options of the `sequential` judge (anytime-valid tests; the default).
    pub sequential: SequentialSettings,
    /// Options of the `kayenta` judge (Kayenta NetflixACAJudge semantics).
    pub kayenta: KayentaSettings,
    /// Options of the `threshold` judge (Flagger / Argo Rollouts semantics).
    pub threshold: ThresholdSettings,
    /// `act` (default): a failing verdict rolls the release back. `shadow`: the judge runs live
    /// and its verdicts are recorded with what they would have done, but it never acts, so a
    /// team can watch it before trusting it (health checks and the breaker still act).
    pub mode: AnalysisMode,
}

/// Whether the judge's verdicts act.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisMode {
    /// A failing verdict rolls back (or runs the severity workflow).
    #[default]
    Act,
    /// Verdicts are recorded, never acted on.
    Shadow,
}

/// A signal a judge can compare between baseline and canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// Error ratio (errors / requests): higher is worse.
    Errors,
    /// Latency distribution from histogram buckets: slower is worse.
    Latency,
    /// Error-log lines per request (`signals.logs`): more is worse. Judged like the error
    /// ratio, a request counting as logging an error when a line matched (at most one line per
    /// request counts).
    Logs,
}

impl JudgeSettings {
    /// True when `kind` is among the analysed signals.
    pub fn uses(&self, kind: SignalKind) -> bool {
        self.signals.contains(&kind)
    }
}

/// The judge named by `settings.judge`, configured by `settings`.
pub fn build(settings: &JudgeSettings) -> Box<dyn Judge> {
    match settings.judge {
        JudgeKind::Sequential => Box::new(SequentialJudge::new(settings)),
        JudgeKind::Kayenta => Box::new(KayentaJudge::new(settings)),
        JudgeKind::Threshold => Box::new(ThresholdJudge::new(settings)),
    }
}

impl Default for JudgeSettings {
    fn default() -> Self {
        Self {
            judge: JudgeKind::Sequential,
            alpha: 0.01,
            interval: std::time::Duration::from_secs(5),
            signals: vec![SignalKind::Errors, SignalKind::Latency],
            sequential: SequentialSettings::default(),
            kayenta: KayentaSettings::default(),
            threshold: ThresholdSettings::default(),
            mode: AnalysisMode::Act,
        }
    }
}

pub(crate) mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?}: {e} (expected e.g. 5s, 2m, 1h)"
            ))
        })
    }
}

/// `Option<Duration>` as a humantime string (`null`/absent = not set).
pub(crate) mod opt_humantime {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<std::time::Duration>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        humantime::parse_duration(&text).map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?}: {e} (expected e.g. 5s, 2m, 1h)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_settings_are_valid_and_the_sketch_parses() {
        let empty: JudgeSettings = serde_json::from_str("{}").expect("{} is valid");
        assert_eq!(empty, JudgeSettings::default());
        let sketch: JudgeSettings =
            serde_json::from_str(r#"{"judge":"sequential","alpha":0.01,"interval":"5s"}"#)
                .expect("the config sketch parses");
        assert_eq!(sketch.interval, std::time::Duration::from_secs(5));
        let nested: JudgeSettings = serde_json::from_str(
            r#"{"judge":"threshold","signals":["errors"],"threshold":{"preset":"argo-docs"},"kayenta":{"checkpoint":"10m"},"sequential":{"grid_points":8}}"#,
        )
        .expect("nested settings parse");
        assert_eq!(nested.threshold.preset, ThresholdPreset::ArgoDocs);
        assert_eq!(
            nested.kayenta.checkpoint,
            std::time::Duration::from_secs(600)
        );
        assert!(!nested.uses(SignalKind::Latency));
        assert!(serde_json::from_str::<JudgeSettings>(r#"{"kayenta":{"nope":1}}"#).is_err());
        assert!(serde_json::from_str::<JudgeSettings>(r#"{"interval":"soon"}"#).is_err());
        // Round trip through the serialised form.
        let text = serde_json::to_string(&nested).expect("serialises");
        assert_eq!(
            serde_json::from_str::<JudgeSettings>(&text).expect("round trip"),
            nested
        );
    }

    #[test]
    fn json_schema_documents_every_block() {
        let schema = serde_json::to_value(schemars::schema_for!(JudgeSettings)).expect("schema");
        let text = schema.to_string();
        for key in [
            "threshold",
            "kayenta",
            "sequential",
            "signals",
            "min_odds_ratio",
            "check_interval",
            "marginal_score",
        ] {
            assert!(text.contains(key), "schema lacks {key}");
        }
        assert!(text.contains("False-alarm rate promised"));
    }

    #[test]
    fn build_gives_each_judge_its_report_name() {
        for (kind, name) in [
            (JudgeKind::Sequential, "sequential"),
            (JudgeKind::Kayenta, "kayenta"),
            (JudgeKind::Threshold, "threshold"),
        ] {
            let judge = build(&JudgeSettings {
                judge: kind,
                ..JudgeSettings::default()
            });
            assert_eq!(judge.report()["judge"], name);
        }
    }
}
