//! The sequential judge: the error and latency tests, the fail threshold, and the evidence.

use serde_json::{Value, json};

use super::SequentialSettings;
use super::odds_ratio::OddsRatioTest;
use super::tails::LatencyTest;
use crate::report::{Verdict, num, report_json, signal_json, time_json};
use crate::{ArmCounts, Decision, Interval, Judge, JudgeSettings, SignalKind, hist};

/// A test's excess of canary outcomes over what the baseline predicts, with its confidence
/// sequence at level 1 − `alpha`.
fn excess_json(test: &OddsRatioTest, alpha: f64) -> Value {
    let (excess, lo, hi) = test.excess(alpha);
    json!({"estimate": num(excess), "confidence_sequence": [num(lo), num(hi)], "level": num(1.0 - alpha)})
}

/// Feeds one interval's `(canary bad, canary n, baseline bad, baseline n)` to a two-arm
/// proportion test (the error ratio, the error-log lines): true when its evidence reaches
/// `log_threshold`.
fn proportion_step(
    test: &mut OddsRatioTest,
    t: f64,
    (canary_bad, canary_n, baseline_bad, baseline_n): (u64, u64, u64, u64),
    log_threshold: f64,
) -> bool {
    test.update(t, canary_bad, canary_n, baseline_bad, baseline_n);
    let failed = test.log_e() >= log_threshold;
    if failed {
        tracing::debug!(
            t,
            e_value = test.log_e().exp(),
            "Canary failed a sequential proportion test."
        );
    }
    failed
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
    use_logs: bool,
    errors: OddsRatioTest,
    logs: OddsRatioTest,
    logs_failed_at: Option<f64>,
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
        let use_logs = settings.uses(SignalKind::Logs);
        let signals = usize::from(use_errors) + usize::from(use_latency) + usize::from(use_logs);
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
            logs: OddsRatioTest::new(&grid),
            logs_failed_at: None,
            use_logs,
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
        [
            self.errors_failed_at,
            self.latency_failed_at,
            self.logs_failed_at,
        ]
        .into_iter()
        .flatten()
        .min_by(f64::total_cmp)
    }

    /// A proportion test's evidence with each arm's totals, named `[count, ratio]`.
    fn proportion_json(&self, t: &OddsRatioTest, [count, ratio]: [&str; 2]) -> Value {
        let mut ev = self.test_json(t, t.log_e(), t.max_log_e());
        let of = |e: u64, n: u64| if n > 0 { e as f64 / n as f64 } else { f64::NAN };
        ev["canary"] = json!({"requests": t.totals[1], count: t.totals[0], ratio: num(of(t.totals[0], t.totals[1]))});
        ev["baseline"] = json!({"requests": t.totals[3], count: t.totals[2], ratio: num(of(t.totals[2], t.totals[3]))});
        ev
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
            let counts = (c.errors, c.requests, b.errors, b.requests);
            let threshold = self.log_threshold;
            let failed = proportion_step(&mut self.errors, interval.t, counts, threshold);
            self.errors_failed_at = self.errors_failed_at.or(failed.then_some(interval.t));
        }
        if self.use_logs
            && let Some(lines) = interval.log_lines
        {
            // A request counts as logging an error when a line matched: the same two-arm
            // test as the error ratio, on lines capped at the requests.
            let counts = (
                lines.canary.min(c.requests),
                c.requests,
                lines.baseline.min(b.requests),
                b.requests,
            );
            let threshold = self.log_threshold;
            let failed = proportion_step(&mut self.logs, interval.t, counts, threshold);
            self.logs_failed_at = self.logs_failed_at.or(failed.then_some(interval.t));
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
            let mut ev = self.proportion_json(&self.errors, ["errors", "error_ratio"]);
            ev["excess_canary_errors"] = excess_json(&self.errors, self.alpha);
            ev["baseline_degraded_intervals"] = json!(self.baseline_degraded_intervals);
            let (v, at) = signal_verdict(self.errors_failed_at);
            signals.push(signal_json("error_ratio", v, at, ev));
        }
        if self.use_logs {
            let mut ev = self.proportion_json(&self.logs, ["error_log_lines", "lines_per_request"]);
            ev["excess_canary_error_logs"] = excess_json(&self.logs, self.alpha);
            let (v, at) = signal_verdict(self.logs_failed_at);
            signals.push(signal_json("error_logs", v, at, ev));
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
