//! `/heartbeats`: batch jobs ping after each run; the list says which are late.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::heartbeats::HeartbeatView;
use backstop_core::heartbeat::status;

use super::Acting;
use backstop_core::duration::millis;

use crate::Ctx;
use crate::error::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/heartbeats", get(list_heartbeats))
        .route("/heartbeats/{name}", post(ping))
}

async fn views(ctx: &Ctx) -> ApiResult<Vec<HeartbeatView>> {
    let beats = ctx.store.heartbeats().await?;
    let now = ctx.clock.now_ms();
    let mut out = Vec::new();
    for svc in &ctx.config.services {
        for h in &svc.heartbeats {
            let beat = beats.iter().find(|b| b.name == h.name);
            out.push(HeartbeatView {
                name: h.name.clone(),
                service: svc.name.clone(),
                env: h.env.clone(),
                every_ms: millis(h.every),
                status: status(beat, millis(h.every), now).as_str().into(),
                last_at_ms: beat.map(|b| b.last_at_ms),
                last_by: beat.map(|b| b.last_by.clone()),
                count: beat.map_or(0, |b| b.count),
            });
        }
    }
    Ok(out)
}

/// Every declared heartbeat: its last ping and whether it is late.
#[utoipa::path(get, path = "/api/v1/heartbeats", responses((status = 200, body = Vec<HeartbeatView>)))]
pub(super) async fn list_heartbeats(
    State(ctx): State<Arc<Ctx>>,
) -> ApiResult<Json<Vec<HeartbeatView>>> {
    Ok(Json(views(&ctx).await?))
}

/// A batch job's ping after a run (only declared heartbeats are accepted).
#[utoipa::path(post, path = "/api/v1/heartbeats/{name}",
    responses((status = 200, body = HeartbeatView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn ping(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(name): Path<String>,
) -> ApiResult<Json<HeartbeatView>> {
    let declared = ctx
        .config
        .services
        .iter()
        .flat_map(|s| s.heartbeats.iter().map(move |h| (s, h)))
        .find(|(_, h)| h.name == name);
    let Some((svc, h)) = declared else {
        let known: Vec<&str> = ctx
            .config
            .services
            .iter()
            .flat_map(|s| s.heartbeats.iter().map(|h| h.name.as_str()))
            .collect();
        return Err(ApiError::not_found(format!(
            "no heartbeat {name} is declared (known: {}); declare it under a service's `heartbeats`",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    match &h.env {
        Some(env) => access.in_env(env)?,
        None => {
            for env in &svc.environments {
                access.in_env(&env.name)?;
            }
        }
    }
    ctx.store.beat(&name, &caller, ctx.clock.now_ms()).await?;
    let view = views(&ctx)
        .await?
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| ApiError::internal("the heartbeat vanished"))?;
    Ok(Json(view))
}
