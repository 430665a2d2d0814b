//! `/rollback` and `/recoveries`: roll an environment back now, list, show and resume recoveries.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::rollouts::{RollbackPreview, RollbackPreviewQuery, RollbackRequest};
use backstop_api::{ErrorBody, ListQuery};
use backstop_core::model::Recovery;

use super::{Acting, Body, environment, list_limit, reason_given};
use crate::Ctx;
use crate::controller::Command;
use crate::error::ApiResult;
use crate::releases::known_service;
use crate::rollouts::send_command;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/rollback", post(rollback))
        .route("/rollback/preview", get(rollback_preview))
        .route("/recoveries", get(list_recoveries))
        .route("/recoveries/{id}", get(get_recovery))
        .route("/recoveries/{id}/resume", post(resume_recovery))
        .route(
            "/recoveries/{id}/postmortem",
            get(get_postmortem).post(postmortem_done),
        )
}

/// The post-mortem draft of a recovery, written from what the store holds now: phases and
/// their durations, impact, timeline, detection, steps, deviations, action items.
#[utoipa::path(get, path = "/api/v1/recoveries/{id}/postmortem", responses((status = 200, body = backstop_core::postmortem::Draft), (status = 404, body = ErrorBody)))]
pub(super) async fn get_postmortem(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<backstop_core::postmortem::Draft>> {
    Ok(Json(crate::postmortem::of(&ctx, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/rollback", request_body = RollbackRequest,
    responses((status = 200, body = Recovery), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn rollback(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Body(req): Body<RollbackRequest>,
) -> ApiResult<Json<Recovery>> {
    access.in_env(&req.env)?;
    let svc = known_service(&ctx, &req.service, "/service")?;
    environment(svc, &req.env)?;
    reason_given(&req.reason, "a rollback")?;
    Ok(Json(
        crate::approvals::rollback(&ctx, req, &caller, false).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/recoveries", responses((status = 200, body = Vec<Recovery>)))]
pub(super) async fn list_recoveries(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Recovery>>> {
    Ok(Json(ctx.store.recoveries(list_limit(&q)).await?))
}

#[utoipa::path(get, path = "/api/v1/recoveries/{id}", responses((status = 200, body = Recovery), (status = 404, body = ErrorBody)))]
pub(super) async fn get_recovery(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Recovery>> {
    Ok(Json(ctx.store.recovery(&id).await?))
}

/// Re-runs a failed recovery from its failed step (each step is idempotent).
#[utoipa::path(post, path = "/api/v1/recoveries/{id}/resume",
    responses((status = 200, body = Recovery), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn resume_recovery(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
) -> ApiResult<Json<Recovery>> {
    access.in_env(&ctx.store.recovery(&id).await?.env)?;
    let rec = send_command(&ctx, |reply| Command::Resume {
        recovery_id: id,
        actor: caller,
        reply,
    })
    .await?;
    Ok(Json(rec))
}

/// Marks the recovery's post-mortem written (with where it is): it is no longer overdue.
#[utoipa::path(post, path = "/api/v1/recoveries/{id}/postmortem", request_body = backstop_api::dora::PostmortemDone,
    responses((status = 200, body = Recovery), (status = 404, body = ErrorBody)))]
pub(super) async fn postmortem_done(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<backstop_api::dora::PostmortemDone>,
) -> ApiResult<Json<Recovery>> {
    let rec = ctx.store.recovery(&id).await?;
    access.in_env(&rec.env)?;
    let mut record = rec.postmortem.clone().unwrap_or_default();
    record.done_at_ms = Some(ctx.clock.now_ms());
    record.done_by = Some(caller.clone());
    record.link = req.link.clone();
    ctx.store.set_recovery_postmortem(&id, &record).await?;
    crate::audit(
        &ctx,
        &caller,
        backstop_core::event::EventKind::PostmortemDone,
        &format!("recovery/{id}"),
        "manual",
        serde_json::json!({"link": req.link}),
    )
    .await?;
    Ok(Json(ctx.store.recovery(&id).await?))
}

/// What rolling the environment back now would undo: the releases taken away (who shipped
/// them, why, incidents since), the params written back, the schema step or why it is
/// refused. Changes nothing.
#[utoipa::path(get, path = "/api/v1/rollback/preview", params(("service" = String, Query), ("env" = String, Query)),
    responses((status = 200, body = RollbackPreview), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn rollback_preview(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<RollbackPreviewQuery>,
) -> ApiResult<Json<RollbackPreview>> {
    Ok(Json(ctx.rollback_preview(&q.service, &q.env).await?))
}
