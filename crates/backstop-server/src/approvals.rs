//! The two-person rule. In a regulated environment an override (a freeze overridden, a
//! critical change during a recovery) does not run on one person's word: the refused call
//! becomes a request that another person approves with `backstop approve ID`, which then runs
//! it on the requester's behalf, both names audited. A break-glass rollback runs at once, by
//! anyone with a token, and waits for a second person's review afterwards.

use backstop_api::error::APPROVAL_REQUIRED;
use backstop_api::gate::GateReport;
use backstop_api::rollouts::{CreateRollout, PromoteRequest, RollbackRequest};
use backstop_core::approval::{APPROVAL_TTL_MS, Approval, ApprovalKind, ApprovalStatus};
use backstop_core::event::EventKind;
use backstop_core::model::Recovery;
use serde_json::json;

use crate::Ctx;
use crate::controller::Command;
use crate::error::{ApiError, ApiResult};

/// Whether the gate refused only for overrides waiting for a second person.
#[must_use]
pub fn waits_for_approval(report: &GateReport) -> bool {
    let mut blocking = report.checks.iter().filter(|c| !c.ok).peekable();
    blocking.peek().is_some() && blocking.all(|c| c.details["approval_required"] == true)
}

/// What one person asks a second to approve.
pub struct Asked<'a> {
    pub kind: ApprovalKind,
    pub service: &'a str,
    pub env: &'a str,
    /// What runs once approved (the API request).
    pub request: serde_json::Value,
    pub requester: &'a str,
    pub reason: &'a str,
}

/// Records the request for a second person and answers 409 `approval_required` naming it.
pub async fn request(ctx: &Ctx, asked: Asked<'_>, report: &GateReport) -> ApiError {
    let Asked {
        kind,
        service,
        env,
        request,
        requester,
        reason,
    } = asked;
    let now = ctx.clock.now_ms();
    let approval = Approval {
        id: format!("apr-{}", uuid::Uuid::now_v7()),
        kind,
        service: service.into(),
        env: env.into(),
        request,
        requester: requester.into(),
        reason: reason.into(),
        created_at_ms: now,
        expires_at_ms: Some(now + APPROVAL_TTL_MS),
        status: ApprovalStatus::Pending,
        decided_by: None,
        decided_at_ms: None,
        note: None,
        result: None,
    };
    let made = async {
        ctx.store.create_approval(&approval).await?;
        crate::audit(
            ctx,
            requester,
            EventKind::ApprovalRequested,
            &format!("approval/{}", approval.id),
            "manual",
            json!({"kind": kind, "service": service, "env": env, "reason": reason, "blocking": report.blocking()}),
        )
        .await
    };
    if let Err(e) = made.await {
        return ApiError::internal(format!("recording the approval request: {e:#}"));
    }
    let mut e = ApiError::conflict(format!(
        "{kind} in {service}/{env} needs a second person's approval ({}): request {} waits; another person with the role {} there runs `backstop approve {}` within an hour",
        report.blocking().join("; "),
        approval.id,
        kind.approver_role(),
        approval.id
    ));
    e.code = APPROVAL_REQUIRED;
    e.details = Some(json!({"approval": approval, "report": report}));
    e
}

/// A second person's decision: a pending request is approved and run (on the requester's
/// behalf, with `approved_by`); a break-glass rollback is marked reviewed. Never the
/// requester's own token; the approver's role is checked by the caller.
pub async fn approve(
    ctx: &Ctx,
    approval: Approval,
    approver: &str,
    note: Option<String>,
) -> ApiResult<Approval> {
    let now = ctx.clock.now_ms();
    if approval.requester == approver {
        return Err(ApiError::forbidden(format!(
            "{} was requested by {approver}: a second person approves it, never the requester's own token",
            approval.id
        )));
    }
    let id = approval.id.as_str();
    match approval.status_at(now) {
        ApprovalStatus::Pending => {}
        ApprovalStatus::ToReview => {
            let note = note.filter(|n| !n.trim().is_empty()).ok_or_else(|| {
                ApiError::bad_request("reviewing a break-glass rollback needs a note").at("/note")
            })?;
            let reviewed = ctx
                .store
                .decide_approval(
                    id,
                    ApprovalStatus::ToReview,
                    ApprovalStatus::Reviewed,
                    approver,
                    now,
                    Some(&note),
                    None,
                )
                .await?;
            crate::audit(
                ctx,
                approver,
                EventKind::BreakGlassReviewed,
                &format!("approval/{id}"),
                "manual",
                json!({"requester": reviewed.requester, "note": note, "result": reviewed.result}),
            )
            .await?;
            return Ok(reviewed);
        }
        other => {
            return Err(ApiError::conflict(format!(
                "approval request {id} is {other}: nothing to approve (ask again)"
            )));
        }
    }
    // Claimed first: of two approvers at once, one runs it.
    ctx.store
        .decide_approval(
            id,
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            approver,
            now,
            note.as_deref(),
            None,
        )
        .await?;
    let ran = run(ctx, &approval, approver).await;
    let (status, result) = match &ran {
        Ok(result) => (ApprovalStatus::Approved, result.clone()),
        Err(e) => (ApprovalStatus::Failed, json!({"error": e.message})),
    };
    let decided = ctx
        .store
        .decide_approval(
            id,
            ApprovalStatus::Approved,
            status,
            approver,
            now,
            None,
            Some(&result),
        )
        .await?;
    crate::audit(
        ctx,
        approver,
        EventKind::ApprovalGranted,
        &format!("approval/{id}"),
        "manual",
        json!({"kind": approval.kind, "requester": approval.requester, "note": note, "status": status, "result": result}),
    )
    .await?;
    ran.map(|_| decided)
}

/// Runs what was asked, as the requester, approved by `approver`.
async fn run(ctx: &Ctx, a: &Approval, approver: &str) -> ApiResult<serde_json::Value> {
    let bad = |e: serde_json::Error| ApiError::internal(format!("stored request {}: {e}", a.id));
    match a.kind {
        ApprovalKind::RolloutStart => {
            let req: CreateRollout = serde_json::from_value(a.request.clone()).map_err(bad)?;
            let r =
                crate::rollouts::create_approved(ctx, req, &a.requester, Some(approver)).await?;
            Ok(json!({"rollout": r.id}))
        }
        ApprovalKind::RolloutPromote => {
            let id = a.request["rollout_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let req: PromoteRequest =
                serde_json::from_value(a.request["promote"].clone()).map_err(bad)?;
            let r = crate::rollouts::promote_approved(
                ctx,
                id,
                req,
                a.requester.clone(),
                Some(approver),
            )
            .await?;
            Ok(json!({"rollout": r.id, "phase": r.phase}))
        }
        ApprovalKind::BreakGlassRollback => Err(ApiError::conflict(format!(
            "{} is a break-glass rollback: it ran already and is reviewed, not approved",
            a.id
        ))),
    }
}

/// A rollback of `req.service`/`req.env` by `actor`: audited (`trigger`: `manual`, or
/// `break-glass` for a caller without the role), then run by the controller.
pub async fn rollback(
    ctx: &Ctx,
    req: RollbackRequest,
    actor: &str,
    break_glass: bool,
) -> ApiResult<Recovery> {
    let trigger = if break_glass { "break-glass" } else { "manual" };
    crate::audit(
        ctx,
        actor,
        if break_glass {
            EventKind::BreakGlassUsed
        } else {
            EventKind::RollbackRequested
        },
        &format!("service/{}/{}", req.service, req.env),
        trigger,
        json!({"reason": req.reason, "break_glass": break_glass}),
    )
    .await?;
    let reason = if break_glass {
        format!("BREAK-GLASS by {actor}: {}", req.reason)
    } else {
        req.reason.clone()
    };
    let rec = crate::rollouts::send_command(ctx, |reply| Command::Rollback {
        service: req.service.clone(),
        env: req.env.clone(),
        actor: actor.to_string(),
        reason: reason.clone(),
        reply,
    })
    .await?;
    if break_glass {
        let now = ctx.clock.now_ms();
        let review = Approval {
            id: format!("apr-{}", uuid::Uuid::now_v7()),
            kind: ApprovalKind::BreakGlassRollback,
            service: req.service.clone(),
            env: req.env.clone(),
            request: serde_json::to_value(&req).unwrap_or_default(),
            requester: actor.into(),
            reason: req.reason.clone(),
            created_at_ms: now,
            expires_at_ms: None,
            status: ApprovalStatus::ToReview,
            decided_by: None,
            decided_at_ms: None,
            note: None,
            result: Some(json!({"recovery": rec.id, "status": rec.status})),
        };
        ctx.store.create_approval(&review).await?;
        ctx.notify(backstop_drivers::notify::Notification {
            id: format!("break-glass/{}", review.id),
            kind: EventKind::BreakGlassUsed.as_str().into(),
            service: req.service.clone(),
            env: req.env.clone(),
            summary: format!(
                "BREAK-GLASS rollback of {}/{} by {actor}: {} (review: backstop approve {})",
                req.service, req.env, req.reason, review.id
            ),
            detail: json!({"recovery": rec.id, "review": review.id, "actor": actor}),
            at_ms: now,
        });
        tracing::warn!(actor, service = %req.service, env = %req.env, review = %review.id, "Break-glass rollback: it runs, and waits for a second person's review.");
    }
    Ok(rec)
}
