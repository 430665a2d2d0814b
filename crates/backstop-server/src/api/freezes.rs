//! `/freezes`: start, list and end manual freezes; the config's scheduled windows.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::post;
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::freezes::{CreateFreeze, EndFreeze, FreezeList, FreezeQuery, ScheduledFreeze};
use backstop_core::event::EventKind;
use backstop_core::model::Freeze;
use serde_json::json;

use super::{Acting, Body, Created, created, reason_given};
use crate::Ctx;
use crate::error::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/freezes", post(create_freeze).get(list_freezes))
        .route("/freezes/{id}/end", post(end_freeze))
}

/// Starts a manual freeze (audited).
#[utoipa::path(post, path = "/api/v1/freezes", request_body = CreateFreeze,
    responses((status = 201, body = Freeze), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn create_freeze(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Body(req): Body<CreateFreeze>,
) -> ApiResult<Created<Freeze>> {
    access.in_scope(req.env.as_deref())?;
    if req.service.is_none() && req.env.is_none() {
        return Err(
            ApiError::bad_request("a freeze needs a scope: `env`, `service` or both").at("/env"),
        );
    }
    reason_given(&req.reason, "a freeze")?;
    if let Some(name) = &req.service
        && ctx.config.service(name).is_none()
    {
        return Err(ApiError::not_found(format!("unknown service {name:?}")).at("/service"));
    }
    if let Some(env) = &req.env {
        let known = ctx
            .config
            .services
            .iter()
            .filter(|s| req.service.as_deref().is_none_or(|n| n == s.name))
            .any(|s| s.environment(env).is_some());
        if !known {
            return Err(
                ApiError::not_found(format!("no configured environment {env:?}")).at("/env"),
            );
        }
    }
    let now = ctx.clock.now_ms();
    let until_ms = match &req.length {
        None => None,
        Some(text) => {
            let d = backstop_config::parse_duration(text)
                .map_err(|e| ApiError::bad_request(e).at("/for"))?;
            if d.is_zero() {
                return Err(ApiError::bad_request("`for` must be greater than 0").at("/for"));
            }
            Some(now.saturating_add(backstop_core::duration::millis(d)))
        }
    };
    let freeze = Freeze {
        id: format!("frz-{}", uuid::Uuid::now_v7()),
        service: req.service,
        env: req.env,
        reason: req.reason,
        actor: caller.clone(),
        started_at_ms: now,
        until_ms,
        ended_at_ms: None,
        ended_by: None,
        end_reason: None,
    };
    ctx.store.create_freeze(&freeze).await?;
    crate::audit(
        &ctx,
        &caller,
        EventKind::FreezeStarted,
        &format!("freeze/{}", freeze.id),
        "manual",
        json!({"service": freeze.service, "env": freeze.env, "reason": freeze.reason, "until_ms": freeze.until_ms}),
    )
    .await?;
    created(freeze)
}

/// Manual freezes in effect (all with `all=true`) and the config's scheduled windows.
#[utoipa::path(get, path = "/api/v1/freezes", params(("all" = Option<bool>, Query)),
    responses((status = 200, body = FreezeList)))]
pub(super) async fn list_freezes(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<FreezeQuery>,
) -> ApiResult<Json<FreezeList>> {
    let now = ctx.clock.now_ms();
    let manual = ctx
        .store
        .freezes(q.all)
        .await?
        .into_iter()
        .filter(|f| q.all || f.in_effect(now))
        .collect();
    let mut scheduled = Vec::new();
    for svc in &ctx.config.services {
        let windows = svc.freeze.iter().map(|w| (None, w)).chain(
            svc.environments
                .iter()
                .flat_map(|e| e.freeze.iter().map(|w| (Some(e.name.clone()), w))),
        );
        for (env, w) in windows {
            let Some(sch) = w.schedule() else { continue };
            let current = sch.occurrence_at(now);
            scheduled.push(ScheduledFreeze {
                service: svc.name.clone(),
                env,
                reason: w.reason.clone(),
                window: w.describe(),
                in_effect: current.is_some(),
                from_ms: current.map(|c| c.0).or_else(|| sch.next_start_after(now)),
                until_ms: current.map(|c| c.1),
            });
        }
    }
    Ok(Json(FreezeList { manual, scheduled }))
}

/// Ends a manual freeze (audited).
#[utoipa::path(post, path = "/api/v1/freezes/{id}/end", request_body = EndFreeze,
    responses((status = 200, body = Freeze), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn end_freeze(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<EndFreeze>,
) -> ApiResult<Json<Freeze>> {
    let scope = ctx
        .store
        .freezes(true)
        .await?
        .into_iter()
        .find(|f| f.id == id);
    if let Some(freeze) = scope {
        access.in_scope(freeze.env.as_deref())?;
    }
    let reason = req
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| format!("ended by {caller}"));
    let freeze = ctx
        .store
        .end_freeze(&id, &caller, &reason, ctx.clock.now_ms())
        .await?;
    crate::audit(
        &ctx,
        &caller,
        EventKind::FreezeEnded,
        &format!("freeze/{id}"),
        "manual",
        json!({"reason": reason, "service": freeze.service, "env": freeze.env}),
    )
    .await?;
    Ok(Json(freeze))
}
