//! `backstop rollout explain`: one screen saying what was decided about a rollout, when, why
//! (each signal's canary and baseline numbers, the test's evidence against its threshold, the
//! effect with its confidence bounds), what happened next, and what would have changed the
//! decision. Built from the records: the judge is replayed over the stored intervals, so the
//! numbers are the ones it decided on.

use backstop_judge::{Interval, JudgeSettings};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Millis;
use crate::event::EventKind;
use crate::model::{Event, Phase, Recovery, Rollout};
use crate::timeline::Timeline;

/// Why a rollout ended where it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Explanation {
    pub rollout_id: String,
    pub service: String,
    pub env: String,
    pub release: String,
    pub phase: String,
    /// In one sentence: what was decided, by whom or what, when.
    pub decision: String,
    /// `judge`, `smoke`, `deploy`, `breaker`, `escalation`, a person, or none yet.
    pub decided_by: Option<String>,
    pub decided_at_ms: Option<Millis>,
    /// Seconds from the canary's first request to the decision.
    pub decided_after_s: Option<f64>,
    /// The judge and its settings.
    pub judge: String,
    pub alpha: f64,
    pub interval_ms: Millis,
    pub intervals: usize,
    pub signals: Vec<SignalExplanation>,
    /// What happened, in order, with seconds from the start.
    pub steps: Vec<String>,
    /// Counterfactuals: what would have changed the decision.
    pub would_change: Vec<String>,
    /// For a failed rollout, when other services changed in the same environment within the
    /// window before its decision: every change, ranked likeliest culprit first by when and how
    /// far its canary diverged from its own baseline (`backstop_judge::scope`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub failure_scope: Vec<backstop_judge::scope::Suspect>,
    /// With `analysis.mode: shadow`: what the judge said and would have done, beside what was
    /// done (it acted on nothing), in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow_verdicts: Vec<String>,
}

/// One signal the judge compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignalExplanation {
    pub signal: String,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    pub decided_at_s: Option<f64>,
    /// Canary against baseline, in words.
    pub comparison: String,
    /// The test's evidence against its threshold, in words.
    pub evidence: String,
    /// The judge's own numbers for the signal.
    #[schema(value_type = Value)]
    pub numbers: Value,
}

/// What the records say about rollout `r`.
#[must_use]
pub fn explain(
    r: &Rollout,
    events: &[Event],
    intervals: &[Interval],
    recovery: Option<&Recovery>,
    settings: &JudgeSettings,
) -> Explanation {
    let mut judge = backstop_judge::build(settings);
    for i in intervals {
        judge.observe(i);
    }
    let report = judge.report();
    let timeline = Timeline::from_events(r, events);
    let failed = events.iter().find(|e| e.kind == EventKind::RolloutFailed);
    let decided_by = failed
        .and_then(|e| e.detail["trigger"].as_str().map(str::to_owned))
        .or_else(|| (r.phase == Phase::Promoted).then(|| "judge".to_owned()));
    let decided_at_ms = timeline.verdict_at_ms.or(timeline.promoted_at_ms);
    let decided_after_s = match (decided_at_ms, timeline.first_canary_request_at_ms) {
        (Some(d), Some(f)) => Some((d - f).max(0) as f64 / 1000.0),
        _ => None,
    };
    let release = r.to_release_id.clone();
    let decision = match r.phase {
        Phase::Promoted => format!("{release} was promoted: no signal was worse than the baseline"),
        Phase::Recovered | Phase::Recovering | Phase::Failed => format!(
            "{release} was rolled back: {}",
            r.reason.as_deref().unwrap_or("it failed")
        ),
        Phase::Paused => format!(
            "{release} is held for a person: {}",
            r.reason.as_deref().unwrap_or("paused")
        ),
        Phase::Pending | Phase::Progressing => {
            format!("{release} is still being judged (step {})", r.step_index)
        }
    };
    let alpha = report["alpha"].as_f64().unwrap_or(settings.alpha);
    let signals: Vec<SignalExplanation> = report["signals"]
        .as_array()
        .map(|s| s.iter().map(signal).collect())
        .unwrap_or_default();
    let mut would_change = Vec::new();
    for s in &signals {
        if let Some(w) = counterfactual(s, alpha) {
            would_change.push(w);
        }
    }
    if intervals.is_empty() {
        would_change.push(
            "no interval was judged: the decision did not come from the judge's numbers".into(),
        );
    }
    let mut steps: Vec<(Millis, String)> = events
        .iter()
        .map(|e| (e.at_ms, format!("{}{}", e.kind.as_str(), step_detail(e))))
        .collect();
    if let Some(rec) = recovery {
        for s in &rec.steps {
            let took = match (s.started_at_ms, s.finished_at_ms) {
                (Some(a), Some(b)) => format!(" in {} ms", b - a),
                _ => String::new(),
            };
            steps.push((
                s.started_at_ms.unwrap_or(rec.created_at_ms),
                format!(
                    "recovery step {} {} ({} attempt(s){took})",
                    s.step.name(),
                    s.status.as_str(),
                    s.attempts
                ),
            ));
        }
    }
    // In time order; at the same moment, records keep the order they were made in.
    steps.sort_by_key(|(at, _)| *at);
    let steps = steps
        .into_iter()
        .map(|(at, text)| format!("{:>7.1}s  {text}", (at - r.created_at_ms) as f64 / 1000.0))
        .collect();
    Explanation {
        rollout_id: r.id.clone(),
        service: r.service.clone(),
        env: r.env.clone(),
        release,
        phase: r.phase.as_str().into(),
        decision,
        decided_by,
        decided_at_ms,
        decided_after_s,
        judge: report["judge"].as_str().unwrap_or("?").to_owned(),
        alpha,
        interval_ms: crate::duration::millis(settings.interval),
        intervals: intervals.len(),
        signals,
        steps,
        would_change,
        failure_scope: Vec::new(),
        shadow_verdicts: events
            .iter()
            .filter(|e| e.kind == EventKind::JudgeShadowVerdict)
            .map(|e| {
                format!(
                    "at {:.1}s the shadow judge said {} and would have {} (severity {}); nothing was acted on",
                    (e.at_ms - r.created_at_ms) as f64 / 1000.0,
                    e.detail["verdict"].as_str().unwrap_or("?"),
                    e.detail["would_have"].as_str().unwrap_or("?"),
                    e.detail["severity"].as_str().unwrap_or("none"),
                )
            })
            .collect(),
    }
}

fn step_detail(e: &Event) -> String {
    let d = &e.detail;
    let pick = ["weight", "reason", "journey", "error", "trigger"]
        .iter()
        .find_map(|k| d.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v.clone())));
    match pick {
        Some((k, Value::String(s))) => format!(" ({k}: {s})"),
        Some((k, v)) => format!(" ({k}: {v})"),
        None => String::new(),
    }
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// One signal of the judge's report in words.
fn signal(s: &Value) -> SignalExplanation {
    let name = s["signal"].as_str().unwrap_or("?").to_owned();
    let ev = &s["evidence"];
    let (c, b) = (&ev["canary"], &ev["baseline"]);
    let comparison = if c.get("error_ratio").is_some() {
        format!(
            "canary {} errors in {} requests ({}), baseline {} in {} ({})",
            c["errors"],
            c["requests"],
            pct(f(&c["error_ratio"])),
            b["errors"],
            b["requests"],
            pct(f(&b["error_ratio"]))
        )
    } else if c.get("lines_per_request").is_some() {
        format!(
            "canary {} error-log lines over {} requests ({} per request), baseline {} over {} ({})",
            c["error_log_lines"],
            c["requests"],
            num(f(&c["lines_per_request"]).unwrap_or(0.0)),
            b["error_log_lines"],
            b["requests"],
            num(f(&b["lines_per_request"]).unwrap_or(0.0))
        )
    } else if c.get("p99_ms").is_some() {
        format!(
            "canary p50 {} / p99 {} over {} requests, baseline p50 {} / p99 {} over {}",
            ms(f(&c["p50_ms"])),
            ms(f(&c["p99_ms"])),
            c["requests"],
            ms(f(&b["p50_ms"])),
            ms(f(&b["p99_ms"])),
            b["requests"]
        )
    } else {
        String::new()
    };
    let evidence = match (f(&ev["max_e_value"]), f(&ev["fail_when_e_value_reaches"])) {
        (Some(e), Some(t)) => {
            let mut text = format!(
                "evidence (e-value) reached {} against the {} that fails it (anytime p = {})",
                num(e),
                num(t),
                num(f(&ev["p_value_anytime"]).unwrap_or(1.0))
            );
            let excess = &ev["excess_canary_errors"];
            if let (Some(est), Some(lo), Some(hi)) = (
                f(&excess["estimate"]),
                f(&excess["confidence_sequence"][0]),
                f(&excess["confidence_sequence"][1]),
            ) {
                text.push_str(&format!(
                    "; the canary had {est:.0} more errors than the baseline's rate gives ({}% confidence: {lo:.0} to {hi:.0})",
                    num(100.0 * f(&excess["level"]).unwrap_or(0.0))
                ));
            }
            text
        }
        _ => ev
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(_, v)| v.is_number() || v.is_string())
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default(),
    };
    SignalExplanation {
        signal: name,
        verdict: s["verdict"].as_str().unwrap_or("?").to_owned(),
        decided_at_s: f(&s["decided_at_s"]),
        comparison,
        evidence,
        numbers: ev.clone(),
    }
}

/// What would have changed a sequential judge's decision on `s`: the false-alarm rate at
/// which its evidence crosses (or stops crossing) the line.
fn counterfactual(s: &SignalExplanation, alpha: f64) -> Option<String> {
    let p = f(&s.numbers["p_value_anytime"])?;
    let share = f(&s.numbers["alpha_share"]).unwrap_or(alpha);
    let signals = (alpha / share).round().max(1.0);
    let needed = p * signals;
    match s.verdict.as_str() {
        "fail" => Some(format!(
            "{}: with alpha below {} it would not have failed on this evidence (it is {})",
            s.signal,
            num(needed),
            num(alpha)
        )),
        "pass" if needed < 0.5 => Some(format!(
            "{}: with alpha at {} or above it would have failed (it is {})",
            s.signal,
            num(needed),
            num(alpha)
        )),
        "pass" => Some(format!(
            "{}: no false-alarm rate up to 0.5 would have failed it: the canary was not worse",
            s.signal
        )),
        _ => None,
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |r| format!("{:.2} %", 100.0 * r))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |m| format!("{m:.0} ms"))
}

/// A number in few significant digits.
fn num(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 1e6 || (a > 0.0 && a < 1e-3) {
        return format!("{v:.2e}");
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::num;

    #[test]
    fn numbers_read_in_few_digits() {
        assert_eq!(num(34_451.355_5), "34451");
        assert_eq!(num(200.0), "200");
        assert_eq!(num(1.0), "1");
        assert_eq!(num(0.01), "0.01");
        assert_eq!(num(5.81e-5), "5.81e-5");
        assert_eq!(num(0.0), "0");
    }
}
