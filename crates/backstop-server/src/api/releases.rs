//! `/releases`: register a release, list and show them.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::ListQuery;
use backstop_api::releases::{CreateRelease, ReadmitRelease};
use backstop_core::model::Release;

use super::{Acting, Body, Created, created};
use crate::Ctx;
use crate::error::ApiResult;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/releases", post(create_release).get(list_releases))
        .route("/releases/{id}", get(get_release))
        .route("/releases/{id}/readmit", post(readmit_release))
}

#[utoipa::path(post, path = "/api/v1/releases", request_body = CreateRelease,
    responses((status = 201, body = Release), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_release(
    Acting { ctx, caller, .. }: Acting,
    Body(req): Body<CreateRelease>,
) -> ApiResult<Created<Release>> {
    created(crate::releases::register(&ctx, req, &caller).await?)
}

#[utoipa::path(get, path = "/api/v1/releases", params(("service" = Option<String>, Query)), responses((status = 200, body = Vec<Release>)))]
pub(super) async fn list_releases(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Release>>> {
    Ok(Json(ctx.store.releases(q.service.as_deref()).await?))
}

#[utoipa::path(get, path = "/api/v1/releases/{id}", responses((status = 200, body = Release), (status = 404, body = ErrorBody)))]
pub(super) async fn get_release(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Release>> {
    Ok(Json(ctx.store.release(&id).await?))
}

/// Clears a release's bad mark after a false alarm, so the same artifact can be rolled out
/// again; the rollout that rolled it back is labelled `false-alarm` for calibration.
#[utoipa::path(post, path = "/api/v1/releases/{id}/readmit", request_body = ReadmitRelease,
    responses((status = 200, body = Release), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn readmit_release(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<ReadmitRelease>,
) -> ApiResult<Json<Release>> {
    // A release is one artifact for every environment: readmitting it needs the role in all.
    access.in_scope(None)?;
    Ok(Json(
        crate::releases::readmit(&ctx, &id, &caller, &req.reason).await?,
    ))
}
