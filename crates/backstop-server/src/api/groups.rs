//! `/groups` and `/group-runs`: declare release groups, ship one in an environment, follow its
//! run.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::groups::{CreateGroup, GroupView, StartGroupRun};
use backstop_core::group::{GroupRun, ReleaseGroup};

use super::{Acting, Body, Created, created};
use crate::Ctx;
use crate::error::ApiResult;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/groups", post(create_group).get(list_groups))
        .route("/groups/{name}", get(get_group))
        .route("/groups/{name}/runs", post(start_group_run))
        .route("/group-runs/{id}", get(get_group_run))
}

/// Declares a release group: registered releases of different services, in shipping order
/// (audited).
#[utoipa::path(post, path = "/api/v1/groups", request_body = CreateGroup,
    responses((status = 201, body = ReleaseGroup), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_group(
    Acting { ctx, caller, .. }: Acting,
    Body(req): Body<CreateGroup>,
) -> ApiResult<Created<ReleaseGroup>> {
    created(crate::groups::create(&ctx, req, &caller).await?)
}

/// Every release group, by name.
#[utoipa::path(get, path = "/api/v1/groups", responses((status = 200, body = Vec<ReleaseGroup>)))]
pub(super) async fn list_groups(State(ctx): State<Arc<Ctx>>) -> ApiResult<Json<Vec<ReleaseGroup>>> {
    Ok(Json(ctx.store.release_groups().await?))
}

/// A release group and its runs, oldest first.
#[utoipa::path(get, path = "/api/v1/groups/{name}",
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_group(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
) -> ApiResult<Json<GroupView>> {
    let group = ctx.store.release_group(&name).await?;
    let runs = ctx
        .store
        .group_runs(true, Some(&name))
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    Ok(Json(GroupView { group, runs }))
}

/// Ships a group in one environment: every member passes the gate first, then they roll out
/// one after the other; a failure rolls the group back, last member first.
#[utoipa::path(post, path = "/api/v1/groups/{name}/runs", request_body = StartGroupRun,
    responses((status = 201, body = GroupRun), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn start_group_run(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(name): Path<String>,
    Body(req): Body<StartGroupRun>,
) -> ApiResult<Created<GroupRun>> {
    access.in_env(&req.env)?;
    created(crate::groups::start(&ctx, &name, req, &caller).await?)
}

/// One run of a group: its phase, each member's state, and why it failed or halted.
#[utoipa::path(get, path = "/api/v1/group-runs/{id}",
    responses((status = 200, body = GroupRun), (status = 404, body = ErrorBody)))]
pub(super) async fn get_group_run(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<GroupRun>> {
    Ok(Json(ctx.store.group_run(&id).await?.0))
}
