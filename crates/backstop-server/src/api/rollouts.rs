//! `/rollouts`: start, list, show, promote, abort, acknowledge and export rollouts.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::rollouts::{CreateRollout, PromoteRequest, Reason, RolloutDetail, Timeline};
use backstop_api::{ErrorBody, ListQuery};
use backstop_core::model::Rollout;

use super::{Acting, Body, Created, created, list_limit};
use crate::Ctx;
use crate::controller::RolloutAction;
use crate::error::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/rollouts", post(create_rollout).get(list_rollouts))
        .route("/rollouts/{id}", get(get_rollout))
        .route("/rollouts/{id}/promote", post(promote_rollout))
        .route("/rollouts/{id}/abort", post(abort_rollout))
        .route("/rollouts/{id}/acknowledge", post(acknowledge_rollout))
        .route("/rollouts/{id}/export", get(export_rollout))
        .route("/rollouts/{id}/explain", get(explain_rollout))
}

#[utoipa::path(post, path = "/api/v1/rollouts", request_body = CreateRollout,
    responses((status = 201, body = Rollout), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_rollout(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Body(req): Body<CreateRollout>,
) -> ApiResult<Created<Rollout>> {
    access.in_env(&req.env)?;
    created(crate::rollouts::create(&ctx, req, &caller).await?)
}

#[utoipa::path(get, path = "/api/v1/rollouts", params(("service" = Option<String>, Query), ("limit" = Option<i64>, Query)), responses((status = 200, body = Vec<Rollout>)))]
pub(super) async fn list_rollouts(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Rollout>>> {
    Ok(Json(
        ctx.store
            .rollouts(q.service.as_deref(), list_limit(&q))
            .await?,
    ))
}

/// The recovery of rollout `id`, if it had one.
async fn recovery_of(ctx: &Ctx, id: &str) -> ApiResult<Option<backstop_core::model::Recovery>> {
    match ctx
        .store
        .recovery(&crate::controller::recovery_id_for(id))
        .await
    {
        Ok(r) => Ok(Some(r)),
        Err(backstop_store::StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Why the rollout ended where it did: the decision, each signal's numbers and evidence (the
/// judge replayed over the stored intervals), what happened next, and what would have changed
/// the decision.
#[utoipa::path(get, path = "/api/v1/rollouts/{id}/explain", responses((status = 200, body = backstop_core::explain::Explanation), (status = 404, body = ErrorBody)))]
pub(super) async fn explain_rollout(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<backstop_core::explain::Explanation>> {
    let rollout = ctx.store.rollout(&id).await?;
    let events = ctx.store.events(&id).await?;
    let intervals = ctx.store.intervals(&id).await?;
    let recovery = recovery_of(&ctx, &id).await?;
    let settings = ctx
        .config
        .service(&rollout.service)
        .map(|s| s.analysis.clone())
        .unwrap_or_default();
    let mut explanation = backstop_core::explain::explain(
        &rollout,
        &events,
        &intervals,
        recovery.as_ref(),
        &settings,
    );
    explanation.failure_scope = crate::scope::failure_scope(&ctx, &rollout, &settings).await?;
    Ok(Json(explanation))
}

#[utoipa::path(get, path = "/api/v1/rollouts/{id}", responses((status = 200, body = RolloutDetail), (status = 404, body = ErrorBody)))]
pub(super) async fn get_rollout(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<RolloutDetail>> {
    let rollout = ctx.store.rollout(&id).await?;
    let events = ctx.store.events(&id).await?;
    let recovery = recovery_of(&ctx, &id).await?;
    let timeline = Timeline::from_events(&rollout, &events);
    let safeguards = ctx.store.rollout_safeguards(&id).await?;
    Ok(Json(RolloutDetail {
        rollout,
        events,
        recovery,
        timeline,
        safeguards,
    }))
}

/// Promotes now, after the promotion gate (the same checks as a start; 409 `gate_blocked`
/// lists every reason).
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/promote", request_body = PromoteRequest,
    responses((status = 200, body = Rollout), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn promote_rollout(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<PromoteRequest>,
) -> ApiResult<Json<Rollout>> {
    access.in_env(&ctx.store.rollout(&id).await?.env)?;
    Ok(Json(crate::rollouts::promote(&ctx, id, req, caller).await?))
}

#[utoipa::path(post, path = "/api/v1/rollouts/{id}/abort", request_body = Reason,
    responses((status = 200, body = Rollout), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn abort_rollout(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<Reason>,
) -> ApiResult<Json<Rollout>> {
    access.in_env(&ctx.store.rollout(&id).await?.env)?;
    Ok(Json(
        crate::rollouts::act(&ctx, RolloutAction::Abort, id, caller, req.reason).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/rollouts/{id}/acknowledge", request_body = Reason,
    responses((status = 200, body = Rollout), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn acknowledge_rollout(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<Reason>,
) -> ApiResult<Json<Rollout>> {
    access.in_env(&ctx.store.rollout(&id).await?.env)?;
    Ok(Json(
        crate::rollouts::act(&ctx, RolloutAction::Acknowledge, id, caller, req.reason).await?,
    ))
}

/// The rollout's stored intervals as a `backstop-scenario/v1` file, replayable by `backstop analyze`.
#[utoipa::path(get, path = "/api/v1/rollouts/{id}/export", responses((status = 200, content_type = "application/x-ndjson", body = String), (status = 404, body = ErrorBody)))]
pub(super) async fn export_rollout(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let rollout = ctx.store.rollout(&id).await?;
    let settings = &ctx
        .service(&rollout.service)
        .map_err(|e| ApiError::internal(format!("{e:#}")))?
        .analysis;
    let intervals = ctx.store.intervals(&id).await?;
    let text = crate::export::scenario_text(&rollout, settings.interval.as_secs_f64(), &intervals);
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response())
}
