//! Exceptions to the gate: the reason they need, the audited refusal of one, and the audit
//! record of the checks a rollout passed only by one.

use backstop_api::error::GATE_BLOCKED;
use backstop_api::gate::{Action, GateReport};
use backstop_core::event::EventKind;
use serde_json::json;

use super::Intent;
use crate::Ctx;
use crate::error::{ApiError, ApiResult};

/// `critical` and `override_freeze` need a non-empty reason.
pub fn require_reason(
    critical: bool,
    override_freeze: bool,
    reason: Option<&str>,
) -> ApiResult<()> {
    if (critical || override_freeze) && reason.is_none_or(|r| r.trim().is_empty()) {
        let flag = if override_freeze {
            "override_freeze"
        } else {
            "critical"
        };
        return Err(ApiError::bad_request(format!("`{flag}` needs a reason")).at("/reason"));
    }
    Ok(())
}

/// 409 `gate_blocked` listing every reason, with the whole report as `details`.
fn refusal(report: &GateReport) -> ApiError {
    let verb = match report.action {
        Action::Promote => "promote",
        Action::Start | Action::Check => "start a rollout of",
    };
    let mut e = ApiError::conflict(format!(
        "the gate refuses to {verb} {} in {}: {}",
        report.release_id,
        report.env,
        report.blocking().join("; ")
    ));
    e.code = GATE_BLOCKED;
    e.details = serde_json::to_value(report).ok();
    e
}

/// The refusal, audited when it refused an override or a critical change (someone tried to
/// get past a freeze: `gate.override_refused`).
pub async fn refuse(ctx: &Ctx, report: &GateReport, intent: &Intent, target: &str) -> ApiError {
    if intent.override_freeze || intent.critical {
        let logged = crate::audit(
            ctx,
            &intent.actor,
            EventKind::GateOverrideRefused,
            target,
            "manual",
            json!({
                "reason": intent.reason, "critical": intent.critical, "override_freeze": intent.override_freeze,
                "release": report.release_id, "env": report.env, "blocking": report.blocking(),
            }),
        )
        .await;
        if let Err(e) = logged {
            return ApiError::internal(format!("auditing the refused override: {e:#}"));
        }
    }
    refusal(report)
}

/// Audits the checks a rollout passed only by an override or as a critical change.
pub async fn audit_overrides(
    ctx: &Ctx,
    report: &GateReport,
    intent: &Intent,
    target: &str,
) -> anyhow::Result<()> {
    let overridden = report.overridden();
    if overridden.is_empty() {
        return Ok(());
    }
    let action = if overridden.iter().any(|c| c.name == "freeze") {
        EventKind::FreezeOverridden
    } else {
        EventKind::RecoveryFreezeBypassed
    };
    crate::audit(
        ctx,
        &intent.actor,
        action,
        target,
        "manual",
        json!({
            "reason": intent.reason, "critical": intent.critical, "override_freeze": intent.override_freeze,
            "approved_by": intent.approved_by,
            "release": report.release_id, "env": report.env, "checks": overridden,
        }),
    )
    .await
}
