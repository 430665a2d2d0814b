//! The `threshold` judge: Flagger and Argo Rollouts semantics.
//!
//! Counts are pooled into checks of `check_interval` (Flagger's `interval`, Argo's measurement
//! `interval`); each check compares the canary's error ratio and p99 latency (from the buckets)
//! with absolute limits (no baseline, like both tools). A failed check increments a counter:
//! cumulative (Flagger `failedChecks`, Argo `failureLimit`) or reset by a passing check
//! (`consecutive`). The judge fails when the counter reaches `threshold` (Flagger: rollback at
//! `failedChecks >= threshold`; Argo: `failed > failureLimit`, i.e. `threshold = failureLimit + 1`).
//! Unlike Flagger, a check with fewer than `min_requests` canary requests is skipped, not failed
//! (Flagger's "no values found" false positives, FL#1035).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::report::{Verdict, num, report_json, signal_json, time_json};
use crate::{Decision, Interval, Judge, JudgeSettings, SignalKind, hist};

/// Documented defaults of Flagger and Argo Rollouts (see `reference/argo_flagger.md`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ThresholdPreset {
    /// Flagger's Istio tutorial: interval 1m, threshold 5 (rollback after ~5 failed minutes).
    #[default]
    FlaggerTutorial,
    /// Flagger's code defaults: interval 60s, threshold 1.
    FlaggerDefault,
    /// Flagger README / how-it-works: interval 1m, threshold 10.
    FlaggerReadme,
    /// Flagger NGINX/Traefik/Skipper/APISIX tutorials: interval 10s, threshold 10.
    FlaggerFast,
    /// Argo Rollouts analysis docs: interval 5m, failureLimit 3 (fails on the 4th failed measurement).
    ArgoDocs,
    /// Argo Rollouts example templates: interval 5s, failureLimit 1.
    ArgoExample,
}

impl ThresholdPreset {
    /// (check interval, threshold) of the preset.
    pub fn values(self) -> (Duration, u32) {
        match self {
            ThresholdPreset::FlaggerTutorial => (Duration::from_secs(60), 5),
            ThresholdPreset::FlaggerDefault => (Duration::from_secs(60), 1),
            ThresholdPreset::FlaggerReadme => (Duration::from_secs(60), 10),
            ThresholdPreset::FlaggerFast => (Duration::from_secs(10), 10),
            ThresholdPreset::ArgoDocs => (Duration::from_secs(300), 4),
            ThresholdPreset::ArgoExample => (Duration::from_secs(5), 2),
        }
    }

    /// The preset's name as written in config and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ThresholdPreset::FlaggerTutorial => "flagger-tutorial",
            ThresholdPreset::FlaggerDefault => "flagger-default",
            ThresholdPreset::FlaggerReadme => "flagger-readme",
            ThresholdPreset::FlaggerFast => "flagger-fast",
            ThresholdPreset::ArgoDocs => "argo-docs",
            ThresholdPreset::ArgoExample => "argo-example",
        }
    }
}

/// How failed checks are counted.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Counting {
    /// Every failed check counts until the end (Flagger `failedChecks`, Argo `failureLimit`).
    #[default]
    Cumulative,
    /// A passing check resets the counter (only consecutive failures count).
    Consecutive,
}

/// Options of the `threshold` judge. `check_interval` and `threshold` come from `preset` unless
/// given explicitly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdSettings {
    /// Documented defaults to start from: flagger-tutorial (1m × 5), flagger-default (60s × 1),
    /// flagger-readme (1m × 10), flagger-fast (10s × 10), argo-docs (5m, failureLimit 3),
    /// argo-example (5s, failureLimit 1).
    pub preset: ThresholdPreset,
    /// Length of one check (counts are pooled over it), e.g. `1m`. Overrides the preset.
    #[serde(with = "crate::opt_humantime", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub check_interval: Option<Duration>,
    /// Failed checks that trigger a rollback. Overrides the preset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    /// Cumulative (Flagger, Argo) or consecutive failed checks.
    pub counting: Counting,
    /// A check fails when the canary's error ratio is above this (Flagger: success rate ≥ 99 %).
    pub max_error_ratio: f64,
    /// A check fails when the canary's p99 latency (ms, from the buckets) is above this
    /// (Flagger `request-duration` default 500 ms).
    pub max_latency_p99_ms: f64,
    /// Checks with fewer canary requests than this are skipped (neither pass nor fail).
    pub min_requests: u64,
}

impl Default for ThresholdSettings {
    fn default() -> Self {
        Self {
            preset: ThresholdPreset::FlaggerTutorial,
            check_interval: None,
            threshold: None,
            counting: Counting::Cumulative,
            max_error_ratio: 0.01,
            max_latency_p99_ms: 500.0,
            min_requests: 10,
        }
    }
}

impl ThresholdSettings {
    /// Check interval after applying the preset.
    pub fn effective_check_interval(&self) -> Duration {
        self.check_interval.unwrap_or(self.preset.values().0)
    }

    /// Threshold after applying the preset (at least 1).
    pub fn effective_threshold(&self) -> u32 {
        self.threshold.unwrap_or(self.preset.values().1).max(1)
    }
}

/// Per-signal state of the threshold judge.
#[derive(Debug, Default)]
struct SignalTally {
    failed: u32,
    last_value: Option<f64>,
    decisive: bool,
}

/// The threshold judge (see the module docs).
#[derive(Debug)]
pub struct ThresholdJudge {
    cfg: ThresholdSettings,
    check_s: f64,
    threshold: u32,
    use_errors: bool,
    use_latency: bool,
    window_start: f64,
    win_requests: u64,
    win_errors: u64,
    win_hist: Vec<(f64, u64)>,
    win_hist_ok: bool,
    checks: u32,
    skipped: u32,
    counter: u32,
    errors: SignalTally,
    latency: SignalTally,
    saw_latency: bool,
    decided: Option<(Verdict, f64)>,
    last_t: Option<f64>,
}

impl ThresholdJudge {
    /// A threshold judge with `settings.threshold`, analysing `settings.signals`.
    pub fn new(settings: &JudgeSettings) -> Self {
        let cfg = settings.threshold.clone();
        let check_s = cfg.effective_check_interval().as_secs_f64().max(1e-3);
        let threshold = cfg.effective_threshold();
        Self {
            cfg,
            check_s,
            threshold,
            use_errors: settings.uses(SignalKind::Errors),
            use_latency: settings.uses(SignalKind::Latency),
            window_start: 0.0,
            win_requests: 0,
            win_errors: 0,
            win_hist: Vec::new(),
            win_hist_ok: true,
            checks: 0,
            skipped: 0,
            counter: 0,
            errors: SignalTally::default(),
            latency: SignalTally::default(),
            saw_latency: false,
            decided: None,
            last_t: None,
        }
    }

    fn run_check(&mut self, t: f64) -> Decision {
        let requests = std::mem::take(&mut self.win_requests);
        let errors = std::mem::take(&mut self.win_errors);
        let buckets = std::mem::take(&mut self.win_hist);
        let hist_ok = std::mem::replace(&mut self.win_hist_ok, true);
        if requests < self.cfg.min_requests.max(1) {
            self.skipped += 1;
            return Decision::Continue;
        }
        self.checks += 1;
        let mut failed_now = false;
        let mut err_failed = false;
        let mut lat_failed = false;
        if self.use_errors {
            let ratio = errors as f64 / requests as f64;
            self.errors.last_value = Some(ratio);
            if ratio > self.cfg.max_error_ratio {
                self.errors.failed += 1;
                err_failed = true;
                failed_now = true;
            }
        }
        if self.use_latency
            && hist_ok
            && let Some(p99) = hist::quantile(0.99, &buckets)
        {
            self.latency.last_value = Some(p99);
            if p99 > self.cfg.max_latency_p99_ms {
                self.latency.failed += 1;
                lat_failed = true;
                failed_now = true;
            }
        }
        if failed_now {
            self.counter += 1;
        } else if self.cfg.counting == Counting::Consecutive {
            self.counter = 0;
        }
        if self.counter >= self.threshold {
            self.errors.decisive = err_failed;
            self.latency.decisive = lat_failed;
            self.decided = Some((Verdict::Fail, t));
            return Decision::Fail;
        }
        Decision::Continue
    }

    fn signal_report(&self, name: &str, tally: &SignalTally, limit: f64) -> serde_json::Value {
        let (verdict, at) = match self.decided {
            Some((Verdict::Fail, t)) if tally.decisive => (Verdict::Fail, Some(t)),
            _ if self.checks == 0 => (Verdict::Inconclusive, self.last_t),
            _ => (Verdict::Pass, None),
        };
        signal_json(
            name,
            verdict,
            at,
            json!({"failed_checks": tally.failed, "last_value": tally.last_value.map(num), "limit": num(limit)}),
        )
    }
}

impl Judge for ThresholdJudge {
    fn observe(&mut self, interval: &Interval) -> Decision {
        if let Some((Verdict::Fail, _)) = self.decided {
            return Decision::Fail;
        }
        self.last_t = Some(interval.t);
        let canary = &interval.canary;
        self.win_requests += canary.requests;
        self.win_errors += canary.errors.min(canary.requests);
        if let Some(b) = &canary.latency_le_ms {
            self.saw_latency = true;
            if !hist::add_into(&mut self.win_hist, b) {
                self.win_hist_ok = false;
            }
        }
        let mut decision = Decision::Continue;
        // Close every check window that this interval completes (a long gap closes one check:
        // the counts of the gap are all in this interval).
        if interval.t - self.window_start >= self.check_s - 1e-9 {
            decision = self.run_check(interval.t);
            let elapsed = ((interval.t - self.window_start) / self.check_s)
                .floor()
                .max(1.0);
            self.window_start += elapsed * self.check_s;
        }
        decision
    }

    fn report(&self) -> serde_json::Value {
        let (verdict, at) = match self.decided {
            Some((v, t)) => (v, Some(t)),
            None if self.checks == 0 => (Verdict::Inconclusive, self.last_t),
            None => (Verdict::Pass, None),
        };
        let mut signals = Vec::new();
        if self.use_errors {
            signals.push(self.signal_report("error_ratio", &self.errors, self.cfg.max_error_ratio));
        }
        if self.use_latency && self.saw_latency {
            signals.push(self.signal_report("latency", &self.latency, self.cfg.max_latency_p99_ms));
        }
        let mut report = report_json("threshold", verdict, at, signals);
        report["settings"] = json!({
            "preset": self.cfg.preset.name(),
            "check_interval_s": num(self.check_s),
            "threshold": self.threshold,
            "counting": self.cfg.counting,
            "min_requests": self.cfg.min_requests,
        });
        report["checks"] = json!({"evaluated": self.checks, "skipped_low_traffic": self.skipped, "counter": self.counter});
        if verdict == Verdict::Inconclusive {
            report["reason"] = json!("no check had enough canary requests");
            report["decided_at_s"] = time_json(at);
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ArmCounts;

    fn arm(requests: u64, errors: u64) -> ArmCounts {
        ArmCounts {
            requests,
            errors,
            latency_le_ms: None,
        }
    }

    fn iv(t: f64, requests: u64, errors: u64) -> Interval {
        Interval {
            t,
            baseline: arm(1000, 1),
            canary: arm(requests, errors),
            log_lines: None,
        }
    }

    fn settings(preset: ThresholdPreset) -> JudgeSettings {
        let mut s = JudgeSettings {
            judge: crate::JudgeKind::Threshold,
            ..JudgeSettings::default()
        };
        s.threshold.preset = preset;
        s
    }

    #[test]
    fn flagger_tutorial_fails_on_the_fifth_failed_minute() {
        let mut j = ThresholdJudge::new(&settings(ThresholdPreset::FlaggerTutorial));
        let mut failed_at = None;
        for i in 1..=120 {
            let t = 5.0 * i as f64;
            if j.observe(&iv(t, 50, 5)) == Decision::Fail {
                failed_at = Some(t);
                break;
            }
        }
        assert_eq!(failed_at, Some(300.0));
        let r = j.report();
        assert_eq!(r["verdict"], "fail");
        assert_eq!(r["decided_at_s"], 300);
        assert_eq!(r["signals"][0]["verdict"], "fail");
    }

    #[test]
    fn zero_traffic_is_neither_failure_nor_crash() {
        let mut j = ThresholdJudge::new(&settings(ThresholdPreset::FlaggerDefault));
        for i in 1..=60 {
            assert_eq!(j.observe(&iv(5.0 * i as f64, 0, 0)), Decision::Continue);
        }
        let r = j.report();
        assert_eq!(r["verdict"], "inconclusive");
        assert_eq!(r["checks"]["skipped_low_traffic"], 5);
    }

    #[test]
    fn healthy_canary_passes_and_consecutive_counting_resets() {
        let mut s = settings(ThresholdPreset::FlaggerDefault);
        s.threshold.threshold = Some(2);
        s.threshold.counting = Counting::Consecutive;
        let mut j = ThresholdJudge::new(&s);
        // bad minute, good minute, bad minute: never two in a row.
        for (minute, errors) in [(1, 10), (2, 0), (3, 10)] {
            let d = j.observe(&iv(60.0 * minute as f64, 100, errors));
            assert_eq!(d, Decision::Continue);
        }
        assert_eq!(j.observe(&iv(240.0, 100, 10)), Decision::Fail);
        let mut cumulative = settings(ThresholdPreset::FlaggerDefault);
        cumulative.threshold.threshold = Some(2);
        let mut j = ThresholdJudge::new(&cumulative);
        assert_eq!(j.observe(&iv(60.0, 100, 10)), Decision::Continue);
        assert_eq!(j.observe(&iv(120.0, 100, 0)), Decision::Continue);
        assert_eq!(j.observe(&iv(180.0, 100, 10)), Decision::Fail);
        let mut ok = ThresholdJudge::new(&settings(ThresholdPreset::FlaggerDefault));
        assert_eq!(ok.observe(&iv(60.0, 100, 1)), Decision::Continue);
        assert_eq!(ok.report()["verdict"], "pass");
    }

    #[test]
    fn latency_limit_uses_p99_from_buckets() {
        let mut j = ThresholdJudge::new(&settings(ThresholdPreset::ArgoExample));
        let slow = vec![(100.0, 90), (1000.0, 95), (f64::INFINITY, 100)];
        let mut i = iv(5.0, 100, 0);
        i.canary.latency_le_ms = Some(slow);
        assert_eq!(j.observe(&i), Decision::Continue);
        i.t = 10.0;
        assert_eq!(j.observe(&i), Decision::Fail);
        let r = j.report();
        assert_eq!(r["signals"][1]["signal"], "latency");
        assert_eq!(r["signals"][1]["verdict"], "fail");
        assert_eq!(r["signals"][0]["verdict"], "pass");
    }

    #[test]
    fn presets_and_overrides() {
        let mut s = ThresholdSettings {
            preset: ThresholdPreset::ArgoDocs,
            ..ThresholdSettings::default()
        };
        assert_eq!(s.effective_check_interval(), Duration::from_secs(300));
        assert_eq!(s.effective_threshold(), 4);
        s.threshold = Some(0);
        assert_eq!(s.effective_threshold(), 1);
        let parsed: ThresholdSettings =
            serde_json::from_str(r#"{"preset":"flagger-tutorial","check_interval":"30s"}"#)
                .unwrap_or_default();
        assert_eq!(parsed.effective_check_interval(), Duration::from_secs(30));
        assert!(serde_json::from_str::<ThresholdSettings>(r#"{"bogus":1}"#).is_err());
    }
}
