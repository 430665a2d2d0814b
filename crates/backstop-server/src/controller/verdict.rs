//! A failing verdict: how bad it is for users, and the severity workflow that follows (roll
//! back now, hold until acknowledged or a deadline, or only notify), as
//! [`backstop_core::severity`] decides.

use anyhow::Result;
use backstop_core::event::EventKind;
use backstop_core::model::{Phase, Rollout};
use backstop_core::severity::{self, Response};
use backstop_judge::Interval;
use serde_json::json;

use super::Controller;
use super::journal::Record;

impl Controller {
    /// The judge failed the rollout: classify how bad it is for users and run the configured
    /// workflow.
    pub(super) async fn judged_bad(
        &mut self,
        mut r: Rollout,
        reason: String,
        report: serde_json::Value,
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        let svc = ctx.service(&r.service)?;
        let impact = impact_of(&ctx.store.intervals(&r.id).await?);
        let severity = severity::classify(&impact, svc.tier);
        r.severity = Some(severity);
        let now = ctx.clock.now_ms();
        // At `now`: the breaker below counts failures up to `now`, this one included.
        self.record(
            Record::of(&r)
                .event(
                    EventKind::JudgeFail,
                    json!({"severity": severity, "impact": impact}),
                )
                .at(now),
        )
        .await?;
        self.record_failure_for_breaker(&r, now).await?;
        let action = svc.severity_action(severity);
        let (hold, deadline) = match severity::respond(action, severity, &reason, &r.id, now) {
            Response::RollBack { reason } => return self.fail(r, reason, "judge", report).await,
            Response::Hold { reason, deadline } => (reason, deadline),
        };
        if deadline.is_some() {
            r.escalation_deadline_ms = deadline;
        }
        r.phase = Phase::Paused;
        r.reason = Some(hold.clone());
        r.verdict = Some(report.clone());
        r.updated_at_ms = now;
        ctx.store.update_rollout(&r).await?;
        self.watches.remove(&r.id);
        self.record(
            Record::of(&r)
                .event(
                    EventKind::RolloutHeld,
                    json!({"reason": hold, "severity": severity}),
                )
                .audit(
                    "controller",
                    EventKind::RolloutHeld,
                    "judge",
                    json!({"reason": hold, "severity": severity, "judge": report}),
                )
                .notify(
                    EventKind::RolloutHeld,
                    format!("{} held in {}: {hold}", r.to_release_id, r.env),
                    json!({"severity": severity}),
                ),
        )
        .await
    }
}

impl Controller {
    /// `analysis.mode: shadow`: the judge said `decision`; record it, with the severity and
    /// what the workflow would have done, and act on nothing. The caller records it once per
    /// rollout.
    pub(super) async fn shadow_verdict(
        &mut self,
        r: &Rollout,
        decision: backstop_judge::Decision,
        reason: &str,
        report: &serde_json::Value,
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        let svc = ctx.service(&r.service)?;
        let now = ctx.clock.now_ms();
        let would = match decision {
            backstop_judge::Decision::Fail => {
                let impact = impact_of(&ctx.store.intervals(&r.id).await?);
                let severity = severity::classify(&impact, svc.tier);
                let action = svc.severity_action(severity);
                let did = match severity::respond(action, severity, reason, &r.id, now) {
                    Response::RollBack { reason } => format!("rolled back: {reason}"),
                    Response::Hold { reason, .. } => format!("held: {reason}"),
                };
                json!({"verdict": "fail", "severity": severity, "impact": impact, "would_have": did})
            }
            backstop_judge::Decision::Inconclusive => {
                json!({"verdict": "inconclusive", "would_have": "paused for a person"})
            }
            backstop_judge::Decision::Continue => return Ok(()),
        };
        let mut evidence = would;
        evidence["reason"] = json!(reason);
        evidence["judge"] = report.clone();
        let summary = format!(
            "shadow judge on {} in {}: {} (it acts on nothing; analysis.mode is shadow)",
            r.to_release_id,
            r.env,
            evidence["would_have"].as_str().unwrap_or_default()
        );
        self.record(
            Record::of(r)
                .event(EventKind::JudgeShadowVerdict, evidence.clone())
                .audit(
                    "controller",
                    EventKind::JudgeShadowVerdict,
                    "judge",
                    evidence.clone(),
                )
                .notify(EventKind::JudgeShadowVerdict, summary, evidence),
        )
        .await
    }
}

/// What the canary did versus the baseline over all stored intervals.
fn impact_of(intervals: &[Interval]) -> severity::Impact {
    let mut impact = severity::Impact::default();
    let mut hist: [Vec<(f64, u64)>; 2] = [Vec::new(), Vec::new()];
    for i in intervals {
        impact.canary_requests += i.canary.requests;
        impact.canary_errors += i.canary.errors;
        impact.baseline_requests += i.baseline.requests;
        impact.baseline_errors += i.baseline.errors;
        for (arm, h) in [&i.baseline, &i.canary].into_iter().zip(hist.iter_mut()) {
            if let Some(buckets) = &arm.latency_le_ms {
                if h.is_empty() {
                    *h = buckets.iter().map(|(le, _)| (*le, 0)).collect();
                }
                for ((_, total), (_, n)) in h.iter_mut().zip(buckets) {
                    *total += n;
                }
            }
        }
    }
    impact.baseline_p99_ms = backstop_judge::hist::quantile(0.99, &hist[0]);
    impact.canary_p99_ms = backstop_judge::hist::quantile(0.99, &hist[1]);
    impact
}
