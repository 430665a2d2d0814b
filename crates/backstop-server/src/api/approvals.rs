//! `/approvals`: requests for a second person, and `/rollback/break-glass`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::rollouts::{ApprovalQuery, Approve, RollbackRequest};
use backstop_core::approval::{Approval, ApprovalStatus};
use backstop_core::model::Recovery;

use super::{Acting, Body, environment, reason_given};
use crate::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::releases::known_service;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/approvals", get(list_approvals))
        .route("/approvals/{id}/approve", post(approve))
        .route("/rollback/break-glass", post(break_glass_rollback))
}

/// Requests waiting for a second person (with `all=true`, every request).
#[utoipa::path(get, path = "/api/v1/approvals", params(("all" = Option<bool>, Query)), responses((status = 200, body = Vec<Approval>)))]
pub(super) async fn list_approvals(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<ApprovalQuery>,
) -> ApiResult<Json<Vec<Approval>>> {
    let now = ctx.clock.now_ms();
    let mut list = ctx.store.approvals(q.all).await?;
    for a in &mut list {
        a.status = a.status_at(now);
    }
    if !q.all {
        list.retain(|a| matches!(a.status, ApprovalStatus::Pending | ApprovalStatus::ToReview));
    }
    Ok(Json(list))
}

/// A second person approves a request (it then runs, on the requester's behalf) or reviews a
/// break-glass rollback. Needs the role the request's action needs, in its environment, and
/// never the requester's own token.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/approve", request_body = Approve,
    responses((status = 200, body = Approval), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn approve(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<Approve>,
) -> ApiResult<Json<Approval>> {
    let approval = ctx.store.approval(&id).await?;
    access.holds(approval.kind.approver_role(), &approval.env)?;
    Ok(Json(
        crate::approvals::approve(&ctx, approval, &caller, req.note).await?,
    ))
}

/// A rollback by anyone with a token, in an emergency: it runs at once, is flagged
/// (`break_glass.used` in the audit, the recovery's reason, a notification) and waits for a
/// second person's review (`backstop approve ID --note …`).
#[utoipa::path(post, path = "/api/v1/rollback/break-glass", request_body = RollbackRequest,
    responses((status = 200, body = Recovery), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn break_glass_rollback(
    Acting { ctx, caller, .. }: Acting,
    Body(req): Body<RollbackRequest>,
) -> ApiResult<Json<Recovery>> {
    let svc = known_service(&ctx, &req.service, "/service")?;
    environment(svc, &req.env)?;
    reason_given(&req.reason, "a break-glass rollback").map_err(|e| {
        ApiError::bad_request(format!("{}: say why, it is reviewed", e.message)).at("/reason")
    })?;
    Ok(Json(
        crate::approvals::rollback(&ctx, req, &caller, true).await?,
    ))
}
