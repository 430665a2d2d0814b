//! `/rollback` and `/recoveries`: roll an environment back now, list, show and resume recoveries.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use backstop_api::rollouts::RollbackRequest;
use backstop_api::{ErrorBody, ListQuery};
use backstop_core::event::EventKind;
use backstop_core::model::Recovery;
use serde_json::json;

use super::{Body, limit};
use crate::Ctx;
use crate::auth::Caller;
use crate::controller::Command;
use crate::error::{ApiError, ApiResult};
use crate::releases::known_service;
use crate::rollouts::send_command;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/rollback", post(rollback))
        .route("/recoveries", get(list_recoveries))
        .route("/recoveries/{id}", get(get_recovery))
        .route("/recoveries/{id}/resume", post(resume_recovery))
}

#[utoipa::path(post, path = "/api/v1/rollback", request_body = RollbackRequest,
    responses((status = 200, body = Recovery), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn rollback(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Body(req): Body<RollbackRequest>,
) -> ApiResult<Json<Recovery>> {
    let svc = known_service(&ctx, &req.service, "/service")?;
    if svc.environment(&req.env).is_none() {
        return Err(ApiError::not_found(format!(
            "service {} has no environment {:?}",
            svc.name, req.env
        ))
        .at("/env"));
    }
    if req.reason.trim().is_empty() {
        return Err(ApiError::bad_request("a rollback needs a reason").at("/reason"));
    }
    crate::audit(
        &ctx,
        &caller.0,
        EventKind::RollbackRequested,
        &format!("service/{}/{}", req.service, req.env),
        "manual",
        json!({"reason": req.reason}),
    )
    .await?;
    let rec = send_command(&ctx, |reply| Command::Rollback {
        service: req.service,
        env: req.env,
        actor: caller.0,
        reason: req.reason,
        reply,
    })
    .await?;
    Ok(Json(rec))
}

#[utoipa::path(get, path = "/api/v1/recoveries", responses((status = 200, body = Vec<Recovery>)))]
pub(super) async fn list_recoveries(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Recovery>>> {
    Ok(Json(ctx.store.recoveries(limit(q.limit, 50, 1000)).await?))
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
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Recovery>> {
    let rec = send_command(&ctx, |reply| Command::Resume {
        recovery_id: id,
        actor: caller.0,
        reply,
    })
    .await?;
    Ok(Json(rec))
}
