//! A failing verdict: how bad it is for users, and the severity workflow that follows (roll
//! back now, hold until acknowledged or a deadline, or only notify).

use anyhow::Result;
use backstop_config::SeverityAction;
use backstop_core::Millis;
use backstop_core::event::EventKind;
use backstop_core::model::{Phase, Rollout};
use backstop_core::severity;
use backstop_judge::Interval;
use serde_json::json;

use super::Controller;
use super::journal::target;
use crate::{now_ms, policy};

impl Controller {
    /// The judge failed the rollout: classify how bad it is for users and run the configured
    /// workflow (roll back now, hold until acknowledged or a deadline, or only notify).
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
        let now = now_ms();
        self.event(
            &r.id,
            EventKind::JudgeFail,
            json!({"severity": severity, "impact": impact}),
        )
        .await?;
        self.record_failure_for_breaker(&r, now).await?;
        let action = policy::action_for(svc, &r.env, severity);
        let hold = match action {
            SeverityAction::Rollback => {
                return self
                    .fail(
                        r,
                        format!("{reason} (severity {})", severity.as_str()),
                        "judge",
                        report,
                    )
                    .await;
            }
            SeverityAction::RollbackUnlessAcknowledged(within) => {
                r.escalation_deadline_ms = Some(now + within.as_millis() as Millis);
                format!(
                    "severity {}: rolls back at {} unless acknowledged (`backstop rollout acknowledge {}`)",
                    severity.as_str(),
                    backstop_core::format_ms(now + within.as_millis() as Millis),
                    r.id
                )
            }
            SeverityAction::Notify => {
                format!(
                    "severity {}: held for a person to promote or abort (policy: notify)",
                    severity.as_str()
                )
            }
        };
        r.phase = Phase::Paused;
        r.reason = Some(hold.clone());
        r.verdict = Some(report.clone());
        r.updated_at_ms = now;
        ctx.store.update_rollout(&r).await?;
        self.watches.remove(&r.id);
        self.event(
            &r.id,
            EventKind::RolloutHeld,
            json!({"reason": hold, "severity": severity}),
        )
        .await?;
        self.audit(
            "controller",
            EventKind::RolloutHeld,
            &target(&r),
            "judge",
            json!({"reason": hold, "severity": severity, "judge": report}),
        )
        .await?;
        self.notify(
            &r,
            EventKind::RolloutHeld,
            format!("{} held in {}: {hold}", r.to_release_id, r.env),
            json!({"severity": severity}),
        );
        Ok(())
    }

    /// A held rollout whose acknowledgement deadline passed is rolled back.
    pub(super) async fn check_escalation(&mut self, r: Rollout) -> Result<()> {
        let (Some(deadline), None) = (r.escalation_deadline_ms, &r.acknowledged_by) else {
            return Ok(());
        };
        if now_ms() < deadline {
            return Ok(());
        }
        let evidence = r.verdict.clone().unwrap_or(json!({}));
        let reason = format!(
            "not acknowledged by {}: rolled back per the severity policy ({})",
            backstop_core::format_ms(deadline),
            r.severity.map_or("unknown", |s| s.as_str())
        );
        self.fail(r, reason, "escalation", evidence).await
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
    impact.baseline_p99_ms = severity::p99_from_buckets(&hist[0]);
    impact.canary_p99_ms = severity::p99_from_buckets(&hist[1]);
    impact
}
