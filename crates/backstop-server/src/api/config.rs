//! `/config/{service}/{env}/…`: config snapshot history, on-demand snapshots, diffs and
//! restores. Taking and restoring are audited; secrets never appear in any answer (only their
//! reference and whether they changed).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::config::{
    ConfigDiff, DiffQuery, RestoreOutcome, RestoreRequest, SnapshotTaken, TakeSnapshot,
};
use backstop_core::event::EventKind;
use backstop_core::snapshot::ConfigSnapshot;
use serde_json::json;

use super::{Acting, Body, environment, reason_given};
use crate::Ctx;
use crate::error::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route(
            "/config/{service}/{env}/snapshots",
            get(list_snapshots).post(take_snapshot),
        )
        .route("/config/{service}/{env}/diff", get(diff))
        .route("/config/{service}/{env}/restore", post(restore))
}

fn known_env(ctx: &Ctx, service: &str, env: &str) -> ApiResult<()> {
    let svc = ctx.config.service(service).ok_or_else(|| {
        ApiError::not_found(format!("unknown service {service:?}")).at("/service")
    })?;
    if environment(svc, env)?.params.is_empty() {
        return Err(ApiError::not_found(format!(
            "{service}/{env} declares no params (add `params:` with files, folders, env or secrets to the environment in backstop.yaml)"
        ))
        .at("/env"));
    }
    Ok(())
}

/// Snapshot versions of an environment's params, newest first.
#[utoipa::path(get, path = "/api/v1/config/{service}/{env}/snapshots",
    responses((status = 200, body = Vec<ConfigSnapshot>), (status = 404, body = ErrorBody)))]
pub(super) async fn list_snapshots(
    State(ctx): State<Arc<Ctx>>,
    Path((service, env)): Path<(String, String)>,
) -> ApiResult<Json<Vec<ConfigSnapshot>>> {
    known_env(&ctx, &service, &env)?;
    Ok(Json(ctx.store.config_snapshots(&service, &env).await?))
}

/// Takes a snapshot now (201 with a new version, 200 when nothing changed since the latest).
#[utoipa::path(post, path = "/api/v1/config/{service}/{env}/snapshots", request_body = TakeSnapshot,
    responses((status = 201, body = SnapshotTaken), (status = 200, body = SnapshotTaken), (status = 404, body = ErrorBody)))]
pub(super) async fn take_snapshot(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path((service, env)): Path<(String, String)>,
    Body(req): Body<TakeSnapshot>,
) -> ApiResult<(StatusCode, Json<SnapshotTaken>)> {
    access.in_env(&env)?;
    known_env(&ctx, &service, &env)?;
    reason_given(&req.reason, "a snapshot")?;
    let (snapshot, new_version) = ctx
        .take_snapshot(
            &service,
            &env,
            &caller,
            &format!("on demand: {}", req.reason),
            None,
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{service}/{env} declares no params")))?;
    crate::audit(
        &ctx,
        &caller,
        EventKind::ConfigSnapshotTaken,
        &format!("config/{service}/{env}"),
        "manual",
        json!({"version": snapshot.version, "manifest": snapshot.manifest, "new_version": new_version, "reason": req.reason}),
    )
    .await?;
    let status = if new_version {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(SnapshotTaken {
            snapshot,
            new_version,
        }),
    ))
}

/// What changed between two snapshots, or between one (default: the latest) and the live files.
#[utoipa::path(get, path = "/api/v1/config/{service}/{env}/diff",
    params(("from" = Option<i64>, Query), ("to" = Option<i64>, Query)),
    responses((status = 200, body = ConfigDiff), (status = 404, body = ErrorBody)))]
pub(super) async fn diff(
    State(ctx): State<Arc<Ctx>>,
    Path((service, env)): Path<(String, String)>,
    Query(q): Query<DiffQuery>,
) -> ApiResult<Json<ConfigDiff>> {
    known_env(&ctx, &service, &env)?;
    Ok(Json(ctx.diff_params(&service, &env, q.from, q.to).await?))
}

/// Writes a snapshot's files and folders back (each file atomically; matching files are left
/// alone, so restoring twice is a no-op). Env values and secrets are reported, not written.
#[utoipa::path(post, path = "/api/v1/config/{service}/{env}/restore", request_body = RestoreRequest,
    responses((status = 200, body = RestoreOutcome), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn restore(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path((service, env)): Path<(String, String)>,
    Body(req): Body<RestoreRequest>,
) -> ApiResult<Json<RestoreOutcome>> {
    access.in_env(&env)?;
    known_env(&ctx, &service, &env)?;
    if !req.dry_run {
        reason_given(&req.reason, "a restore")?;
    }
    ctx.store
        .config_snapshot(&service, &env, req.snapshot)
        .await
        .map_err(|e| ApiError::from(e).at("/snapshot"))?;
    let out = ctx
        .restore_params(&service, &env, req.snapshot, !req.dry_run)
        .await?;
    if !req.dry_run {
        crate::audit(
            &ctx,
            &caller,
            EventKind::ConfigRestored,
            &format!("config/{service}/{env}"),
            "manual",
            json!({"snapshot": req.snapshot, "reason": req.reason, "written": out.written, "removed": out.removed, "unchanged": out.unchanged}),
        )
        .await?;
    }
    Ok(Json(out))
}
