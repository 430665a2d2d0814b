//! The `kayenta` judge: Kayenta's NetflixACAJudge-v1.0 semantics on per-interval values.
//!
//! Metrics (one value per interval and arm): `error_ratio` (group `errors`), `latency_p50` and
//! `latency_p99` (group `latency`, from each interval's buckets, only when buckets are present).
//! At every checkpoint the judge classifies each metric on all values so far (or the last
//! `lookback`) with the Mann-Whitney classifier (98 % CI, Hodges-Lehmann shift, ±25 % tolerance
//! of the estimate, effect-size gates, direction, NaN strategy, optional IQR outlier removal),
//! scores the groups (weighted sum, 2 decimals, critical and no-data overrides) and, like
//! Kayenta's `MonitorCanaryTask`, ends the analysis as failed when a score is at or below the
//! marginal threshold. A fixed-horizon test re-run on growing data: its false-alarm rate grows
//! with the number of checkpoints (that is the point of comparing it).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::mannwhitney::mann_whitney;
use crate::report::{Verdict, num, report_json, signal_json, time_json};
use crate::sim::Rng;
use crate::{Decision, Interval, Judge, JudgeSettings, SignalKind, hist};

/// Which direction of change is a problem.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Only a higher canary value fails (the default here: improvements never fail).
    #[default]
    Increase,
    /// Only a lower canary value fails.
    Decrease,
    /// Both (Kayenta's default).
    Either,
}

/// What to do with NaN values (intervals without requests).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NanStrategy {
    /// Drop them (Kayenta's default).
    #[default]
    Remove,
    /// Replace them with 0.
    Replace,
}

/// Outlier handling.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Outliers {
    /// Keep everything (Kayenta's default).
    #[default]
    Keep,
    /// Remove per arm with the IQR detector (factor 3, R-7 quantiles, ≤ 1 % per tail).
    Remove,
}

/// Effect-size measure for the allowed/critical gates.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EffectSize {
    /// mean(canary) / mean(baseline).
    #[default]
    MeanRatio,
    /// Vargha-Delaney common-language effect size.
    Cles,
}

/// Options of the `kayenta` judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KayentaSettings {
    /// How often the canary is scored (Kayenta's canary analysis interval), e.g. `5m`.
    #[serde(with = "crate::humantime_serde_compat")]
    #[schemars(with = "String")]
    pub checkpoint: Duration,
    /// Score only the last this-long of data (Kayenta `lookbackMins`); absent = all data so far.
    #[serde(with = "crate::opt_humantime", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub lookback: Option<Duration>,
    /// A checkpoint score at or below this fails the canary.
    pub marginal_score: f64,
    /// A score at or above this passes; between marginal and pass is marginal.
    pub pass_score: f64,
    /// Confidence level of the Mann-Whitney interval (Kayenta hard-codes 0.98).
    pub confidence_level: f64,
    /// The interval must clear ± this fraction of its own estimate (Kayenta: 0.25).
    pub tolerance: f64,
    /// Which direction fails.
    pub direction: Direction,
    pub nan_strategy: NanStrategy,
    pub outliers: Outliers,
    pub effect_size: EffectSize,
    /// A high metric counts only if its effect size is at least this (default 1.0).
    pub allowed_increase: f64,
    /// A low metric counts only if its effect size is at most this (default 1.0).
    pub allowed_decrease: f64,
    /// Weight of the `errors` group (percent).
    pub errors_weight: f64,
    /// Weight of the `latency` group (percent).
    pub latency_weight: f64,
    /// Make `error_ratio` a critical metric: any non-pass scores the canary 0.
    pub critical_errors: bool,
}

impl Default for KayentaSettings {
    fn default() -> Self {
        Self {
            checkpoint: Duration::from_secs(300),
            lookback: None,
            marginal_score: 50.0,
            pass_score: 75.0,
            confidence_level: 0.98,
            tolerance: 0.25,
            direction: Direction::Increase,
            nan_strategy: NanStrategy::Remove,
            outliers: Outliers::Keep,
            effect_size: EffectSize::MeanRatio,
            allowed_increase: 1.0,
            allowed_decrease: 1.0,
            errors_weight: 50.0,
            latency_weight: 50.0,
            critical_errors: false,
        }
    }
}

/// Classification of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Classification {
    Pass,
    High,
    Low,
    Nodata,
    Error,
}

/// One metric's result.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricResult {
    pub classification: Classification,
    pub lower: f64,
    pub upper: f64,
    pub estimate: f64,
    pub effect: f64,
    pub n_canary: usize,
    pub n_baseline: usize,
    pub reason: Option<String>,
}

impl MetricResult {
    fn simple(
        classification: Classification,
        n_canary: usize,
        n_baseline: usize,
        reason: &str,
    ) -> Self {
        Self {
            classification,
            lower: f64::NAN,
            upper: f64::NAN,
            estimate: f64::NAN,
            effect: f64::NAN,
            n_canary,
            n_baseline,
            reason: Some(reason.to_string()),
        }
    }
}

/// R-7 quantile of sorted values.
fn quantile_r7(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Kayenta `IQRDetector(outlierFactor = 3.0, reduceSensitivity = true)`.
fn remove_outliers(values: &[f64]) -> Vec<f64> {
    if values.len() < 3 {
        return values.to_vec();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (q1, q3) = (quantile_r7(&sorted, 0.25), quantile_r7(&sorted, 0.75));
    let iqr = q3 - q1;
    let lower = (q1 - 3.0 * iqr).min(quantile_r7(&sorted, 0.01));
    let upper = (q3 + 3.0 * iqr).max(quantile_r7(&sorted, 0.99));
    values
        .iter()
        .copied()
        .filter(|v| *v >= lower && *v <= upper)
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Vargha-Delaney A of canary over baseline.
fn cles(x: &[f64], y: &[f64]) -> f64 {
    let mut greater = 0.0;
    for a in x {
        for b in y {
            greater += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    greater / (x.len() * y.len()) as f64
}

/// Kayenta's `MannWhitneyClassifier.classify` for canary (`experiment`) vs baseline (`control`).
pub fn classify(experiment: &[f64], control: &[f64], cfg: &KayentaSettings) -> MetricResult {
    let clean = |v: &[f64]| -> Vec<f64> {
        let v: Vec<f64> = match cfg.nan_strategy {
            NanStrategy::Remove => v.iter().copied().filter(|x| !x.is_nan()).collect(),
            NanStrategy::Replace => v
                .iter()
                .map(|x| if x.is_nan() { 0.0 } else { *x })
                .collect(),
        };
        match cfg.outliers {
            Outliers::Keep => v,
            Outliers::Remove => remove_outliers(&v),
        }
    };
    let mut x = clean(experiment);
    let mut y = clean(control);
    let (nx, ny) = (x.len(), y.len());
    if x.is_empty() || y.is_empty() {
        let class = if cfg.nan_strategy == NanStrategy::Replace {
            Classification::Pass
        } else {
            Classification::Nodata
        };
        return MetricResult::simple(class, nx, ny, "an arm has no data");
    }
    let mut sx = x.clone();
    sx.sort_by(f64::total_cmp);
    let mut sy = y.clone();
    sy.sort_by(f64::total_cmp);
    if sx == sy {
        return MetricResult::simple(
            Classification::Pass,
            nx,
            ny,
            "identical values in both arms",
        );
    }
    let first = sx[0];
    if sx.iter().chain(&sy).all(|v| *v == first) {
        return MetricResult::simple(Classification::Pass, nx, ny, "a single distinct value");
    }
    if sx.first() == sx.last() && sy.first() == sy.last() {
        // Both arms constant but different: Kayenta adds Gaussian noise σ = value × 1e-5.
        let mut rng = Rng::new(0x004b_6179_656e_7461);
        for v in x.iter_mut().chain(y.iter_mut()) {
            *v += *v * 1e-5 * rng.normal();
        }
    }
    let range = x
        .iter()
        .chain(&y)
        .fold(0.0_f64, |m, v| m.max(v.abs()))
        .max(1e-300);
    let mw = match mann_whitney(&x, &y, cfg.confidence_level, range * 1e-9) {
        Ok(mw) => mw,
        Err(e) => {
            return MetricResult::simple(
                Classification::Error,
                nx,
                ny,
                &format!("Metric Classification Failed: {e}"),
            );
        }
    };
    let effect = match cfg.effect_size {
        EffectSize::MeanRatio => {
            let (mx, my) = (mean(&x), mean(&y));
            if mx == 0.0 || my == 0.0 {
                f64::NAN
            } else {
                mx / my
            }
        }
        EffectSize::Cles => cles(&x, &y),
    };
    let bound = cfg.tolerance * mw.estimate.abs();
    let high = matches!(cfg.direction, Direction::Increase | Direction::Either)
        && mw.lower > bound
        && (effect.is_nan() || effect >= cfg.allowed_increase);
    let low = matches!(cfg.direction, Direction::Decrease | Direction::Either)
        && mw.upper < -bound
        && (effect.is_nan() || effect <= cfg.allowed_decrease);
    let classification = if high {
        Classification::High
    } else if low {
        Classification::Low
    } else {
        Classification::Pass
    };
    MetricResult {
        classification,
        lower: mw.lower,
        upper: mw.upper,
        estimate: mw.estimate,
        effect,
        n_canary: nx,
        n_baseline: ny,
        reason: None,
    }
}

const METRICS: [(&str, &str); 3] = [
    ("error_ratio", "errors"),
    ("latency_p50", "latency"),
    ("latency_p99", "latency"),
];

/// Kayenta's weighted-sum score of classified metrics (name, group, result).
fn score(results: &[(&str, &str, MetricResult)], cfg: &KayentaSettings) -> (f64, Option<String>) {
    if results.is_empty() {
        return (100.0, None);
    }
    let nodata = results
        .iter()
        .filter(|r| r.2.classification == Classification::Nodata)
        .count();
    if nodata * 2 >= results.len() {
        return (
            0.0,
            Some(format!(
                "{nodata} of {} metrics have no data",
                results.len()
            )),
        );
    }
    if cfg.critical_errors
        && let Some(r) = results.iter().find(|r| r.0 == "error_ratio")
        && r.2.classification != Classification::Pass
    {
        return (0.0, Some("critical metric error_ratio did not pass".into()));
    }
    let mut groups: Vec<(&str, f64)> = Vec::new();
    for (_, group, _) in results {
        if !groups.iter().any(|g| g.0 == *group) {
            let w = if *group == "errors" {
                cfg.errors_weight
            } else {
                cfg.latency_weight
            };
            groups.push((group, w.max(0.0)));
        }
    }
    let total_weight: f64 = groups.iter().map(|g| g.1).sum();
    let mut summary = 0.0;
    for (group, weight) in &groups {
        let members: Vec<&MetricResult> = results
            .iter()
            .filter(|r| r.1 == *group)
            .map(|r| &r.2)
            .collect();
        let counted = members
            .iter()
            .filter(|m| {
                matches!(
                    m.classification,
                    Classification::Pass | Classification::High | Classification::Low
                )
            })
            .count();
        let passed = members
            .iter()
            .filter(|m| m.classification == Classification::Pass)
            .count();
        let group_score = if counted == 0 {
            100.0
        } else {
            100.0 * passed as f64 / counted as f64
        };
        let share = if total_weight > 0.0 {
            weight / total_weight
        } else {
            1.0 / groups.len() as f64
        };
        summary += group_score * share;
    }
    ((summary * 100.0).round() / 100.0, None)
}

/// The last checkpoint: (t, score, metric results, override reason).
type Scored = (
    f64,
    f64,
    Vec<(&'static str, &'static str, MetricResult)>,
    Option<String>,
);

/// The kayenta judge (see the module docs).
#[derive(Debug)]
pub struct KayentaJudge {
    cfg: KayentaSettings,
    use_errors: bool,
    use_latency: bool,
    checkpoint_s: f64,
    next_checkpoint: f64,
    times: Vec<f64>,
    canary: [Vec<f64>; 3],
    baseline: [Vec<f64>; 3],
    saw_latency: bool,
    last: Option<Scored>,
    checkpoints: u32,
    failed_at: Option<f64>,
    last_t: Option<f64>,
}

impl KayentaJudge {
    /// A kayenta judge with `settings.kayenta`, analysing `settings.signals`.
    pub fn new(settings: &JudgeSettings) -> Self {
        let cfg = settings.kayenta.clone();
        let checkpoint_s = cfg.checkpoint.as_secs_f64().max(1e-3);
        Self {
            cfg,
            use_errors: settings.uses(SignalKind::Errors),
            use_latency: settings.uses(SignalKind::Latency),
            checkpoint_s,
            next_checkpoint: checkpoint_s,
            times: Vec::new(),
            canary: Default::default(),
            baseline: Default::default(),
            saw_latency: false,
            last: None,
            checkpoints: 0,
            failed_at: None,
            last_t: None,
        }
    }

    fn values(arm: &crate::ArmCounts) -> [f64; 3] {
        let ratio = if arm.requests > 0 {
            arm.errors as f64 / arm.requests as f64
        } else {
            f64::NAN
        };
        let q = |p: f64| {
            arm.latency_le_ms
                .as_deref()
                .and_then(|h| hist::quantile(p, h))
                .unwrap_or(f64::NAN)
        };
        [ratio, q(0.5), q(0.99)]
    }

    fn evaluate(&mut self, t: f64) -> Decision {
        self.checkpoints += 1;
        let from = self
            .cfg
            .lookback
            .map_or(f64::NEG_INFINITY, |l| t - l.as_secs_f64());
        let start = self.times.partition_point(|x| *x <= from);
        let mut results = Vec::new();
        for (i, (name, group)) in METRICS.iter().enumerate() {
            let wanted = if i == 0 {
                self.use_errors
            } else {
                self.use_latency && self.saw_latency
            };
            if wanted {
                results.push((
                    *name,
                    *group,
                    classify(
                        &self.canary[i][start..],
                        &self.baseline[i][start..],
                        &self.cfg,
                    ),
                ));
            }
        }
        let (s, why) = score(&results, &self.cfg);
        self.last = Some((t, s, results, why));
        if s <= self.cfg.marginal_score {
            self.failed_at = Some(t);
            return Decision::Fail;
        }
        Decision::Continue
    }
}

impl Judge for KayentaJudge {
    fn observe(&mut self, interval: &Interval) -> Decision {
        if self.failed_at.is_some() {
            return Decision::Fail;
        }
        self.last_t = Some(interval.t);
        if interval.canary.latency_le_ms.is_some() && interval.baseline.latency_le_ms.is_some() {
            self.saw_latency = true;
        }
        self.times.push(interval.t);
        let (c, b) = (
            Self::values(&interval.canary),
            Self::values(&interval.baseline),
        );
        for i in 0..3 {
            self.canary[i].push(c[i]);
            self.baseline[i].push(b[i]);
        }
        if interval.t >= self.next_checkpoint - 1e-9 {
            let steps = ((interval.t - self.next_checkpoint) / self.checkpoint_s)
                .floor()
                .max(0.0)
                + 1.0;
            self.next_checkpoint += steps * self.checkpoint_s;
            return self.evaluate(interval.t);
        }
        Decision::Continue
    }

    fn report(&self) -> Value {
        let Some((t, s, results, why)) = &self.last else {
            let mut r = report_json("kayenta", Verdict::Inconclusive, self.last_t, Vec::new());
            r["reason"] = json!("no checkpoint was reached");
            r["decided_at_s"] = time_json(self.last_t);
            return r;
        };
        let verdict = if self.failed_at.is_some() {
            Verdict::Fail
        } else if *s >= self.cfg.pass_score {
            Verdict::Pass
        } else {
            Verdict::Inconclusive
        };
        let at = match verdict {
            Verdict::Pass => None,
            _ => Some(*t),
        };
        let metric_json = |r: &MetricResult| {
            json!({
                "classification": r.classification,
                "ci": [num(r.lower), num(r.upper)],
                "estimate": num(r.estimate),
                "effect_size": num(r.effect),
                "points": {"canary": r.n_canary, "baseline": r.n_baseline},
                "reason": r.reason,
            })
        };
        let mut signals = Vec::new();
        for (signal, group) in [("error_ratio", "errors"), ("latency", "latency")] {
            let members: Vec<_> = results.iter().filter(|r| r.1 == group).collect();
            if members.is_empty() {
                continue;
            }
            let bad = members.iter().any(|r| {
                matches!(
                    r.2.classification,
                    Classification::High | Classification::Low
                )
            });
            let v = match (bad, verdict) {
                (true, Verdict::Fail) => Verdict::Fail,
                (true, _) => Verdict::Inconclusive,
                (false, _) => Verdict::Pass,
            };
            let mut ev = serde_json::Map::new();
            for r in members {
                ev.insert(r.0.to_string(), metric_json(&r.2));
            }
            signals.push(signal_json(
                signal,
                v,
                if v == Verdict::Pass { None } else { Some(*t) },
                Value::Object(ev),
            ));
        }
        let mut r = report_json("kayenta", verdict, at, signals);
        r["score"] = num(*s);
        r["scored_at_s"] = time_json(Some(*t));
        r["checkpoints"] = json!(self.checkpoints);
        r["thresholds"] =
            json!({"pass": num(self.cfg.pass_score), "marginal": num(self.cfg.marginal_score)});
        if let Some(why) = why {
            r["score_override"] = json!(why);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_follows_kayenta_rules() {
        let cfg = KayentaSettings::default();
        let base: Vec<f64> = (0..40).map(|i| 100.0 + (i % 10) as f64).collect();
        let slow: Vec<f64> = base.iter().map(|v| v * 1.5).collect();
        assert_eq!(
            classify(&slow, &base, &cfg).classification,
            Classification::High
        );
        // Improvements never fail with direction = increase; they do with `either`.
        let fast: Vec<f64> = base.iter().map(|v| v * 0.5).collect();
        assert_eq!(
            classify(&fast, &base, &cfg).classification,
            Classification::Pass
        );
        let either = KayentaSettings {
            direction: Direction::Either,
            ..KayentaSettings::default()
        };
        assert_eq!(
            classify(&fast, &base, &either).classification,
            Classification::Low
        );
        assert_eq!(
            classify(&base, &base, &cfg).classification,
            Classification::Pass
        );
        assert_eq!(
            classify(&[f64::NAN], &base, &cfg).classification,
            Classification::Nodata
        );
        let replace = KayentaSettings {
            nan_strategy: NanStrategy::Replace,
            ..KayentaSettings::default()
        };
        assert_eq!(
            classify(&[], &base, &replace).classification,
            Classification::Pass
        );
        // Constant arms that differ get jitter and are then compared.
        assert_eq!(
            classify(&[2.0; 20], &[1.0; 20], &cfg).classification,
            Classification::High
        );
        // Effect-size gate: a high shift with a mean ratio below allowed_increase passes.
        let gated = KayentaSettings {
            allowed_increase: 2.0,
            ..KayentaSettings::default()
        };
        assert_eq!(
            classify(&slow, &base, &gated).classification,
            Classification::Pass
        );
    }

    #[test]
    fn outlier_removal_uses_iqr_fences() {
        let mut v: Vec<f64> = (0..200).map(|i| 10.0 + (i % 7) as f64).collect();
        v.push(1000.0);
        let kept = remove_outliers(&v);
        assert_eq!(kept.len(), 200);
        assert!(kept.iter().all(|x| *x < 100.0));
    }

    #[test]
    fn scoring_weights_groups_and_applies_overrides() {
        let cfg = KayentaSettings::default();
        let pass = MetricResult::simple(Classification::Pass, 1, 1, "");
        let high = MetricResult {
            reason: None,
            ..MetricResult::simple(Classification::High, 1, 1, "")
        };
        let nodata = MetricResult::simple(Classification::Nodata, 0, 1, "");
        let r = [
            ("error_ratio", "errors", high.clone()),
            ("latency_p50", "latency", pass.clone()),
            ("latency_p99", "latency", pass.clone()),
        ];
        assert_eq!(score(&r, &cfg).0, 50.0);
        let r = [
            ("error_ratio", "errors", pass.clone()),
            ("latency_p50", "latency", high.clone()),
            ("latency_p99", "latency", pass.clone()),
        ];
        assert_eq!(score(&r, &cfg).0, 75.0);
        let r = [
            ("error_ratio", "errors", nodata.clone()),
            ("latency_p50", "latency", nodata),
            ("latency_p99", "latency", pass.clone()),
        ];
        assert_eq!(score(&r, &cfg).0, 0.0);
        let critical = KayentaSettings {
            critical_errors: true,
            errors_weight: 10.0,
            latency_weight: 90.0,
            ..KayentaSettings::default()
        };
        let r = [
            ("error_ratio", "errors", high),
            ("latency_p50", "latency", pass.clone()),
            ("latency_p99", "latency", pass),
        ];
        assert_eq!(score(&r, &critical).0, 0.0);
        let r = [(
            "error_ratio",
            "errors",
            MetricResult::simple(Classification::Pass, 3, 3, ""),
        )];
        assert_eq!(
            score(
                &r,
                &KayentaSettings {
                    errors_weight: 30.0,
                    ..KayentaSettings::default()
                }
            )
            .0,
            100.0
        );
    }

    #[test]
    fn judge_scores_at_checkpoints_and_fails_at_marginal() {
        let settings = JudgeSettings {
            judge: crate::JudgeKind::Kayenta,
            ..JudgeSettings::default()
        };
        let mut judge = KayentaJudge::new(&settings);
        let arm = |requests, errors| crate::ArmCounts {
            requests,
            errors,
            latency_le_ms: None,
        };
        let mut decision = Decision::Continue;
        let mut at = 0.0;
        for i in 1..=120 {
            let t = 5.0 * i as f64;
            let iv = Interval {
                t,
                baseline: arm(1000, 5 + (i % 3) as u64),
                canary: arm(100, 5 + (i % 4) as u64),
                log_lines: None,
            };
            decision = judge.observe(&iv);
            if decision == Decision::Fail {
                at = t;
                break;
            }
        }
        assert_eq!(decision, Decision::Fail);
        assert_eq!(at, 300.0, "first checkpoint at 5m");
        let r = judge.report();
        assert_eq!(r["verdict"], "fail");
        assert_eq!(r["score"], 0.0);
        assert_eq!(
            r["signals"][0]["evidence"]["error_ratio"]["classification"],
            "High"
        );
    }
}
