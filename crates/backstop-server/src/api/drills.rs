//! `/drills`: start, finish, list and show drills (see [`crate::drills`]).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::drills::{FinishDrill, StartDrill};
use backstop_api::{ErrorBody, ListQuery};
use backstop_core::drill::Drill;

use super::{Acting, Body, Created, created, list_limit};
use crate::Ctx;
use crate::error::ApiResult;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/drills", post(start_drill).get(list_drills))
        .route("/drills/{id}", get(get_drill))
        .route("/drills/{id}/finish", post(finish_drill))
}

/// Starts a drill: checks the environment may be drilled, registers the known-bad variant of
/// its LKG and starts its canary rollout (through the same steps, checks and audit records as
/// `POST /releases` and `POST /rollouts`).
#[utoipa::path(post, path = "/api/v1/drills", request_body = StartDrill,
    responses((status = 201, body = Drill), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn start_drill(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Body(req): Body<StartDrill>,
) -> ApiResult<Created<Drill>> {
    access.in_env(&req.env)?;
    created(crate::drills::start(&ctx, req, &caller).await?)
}

/// Finishes a running drill: measures it from the rollout's events and recovery journal,
/// compares with the service's `mttr` and the environment's rollback SLA, stores and audits the
/// result, and cleans up a variant Backstop did not undo.
#[utoipa::path(post, path = "/api/v1/drills/{id}/finish", request_body = FinishDrill,
    responses((status = 200, body = Drill), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn finish_drill(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<FinishDrill>,
) -> ApiResult<Json<Drill>> {
    access.in_env(&ctx.store.drill(&id).await?.env)?;
    Ok(Json(crate::drills::finish(&ctx, &id, req, &caller).await?))
}

/// Drills, most recent first (`?service=` one service's, `?limit=` at most that many, default 50).
#[utoipa::path(get, path = "/api/v1/drills", params(("service" = Option<String>, Query), ("limit" = Option<i64>, Query)), responses((status = 200, body = Vec<Drill>)))]
pub(super) async fn list_drills(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Drill>>> {
    Ok(Json(
        ctx.store
            .drills(q.service.as_deref(), list_limit(&q))
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/drills/{id}", responses((status = 200, body = Drill), (status = 404, body = ErrorBody)))]
pub(super) async fn get_drill(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Drill>> {
    Ok(Json(ctx.store.drill(&id).await?))
}
