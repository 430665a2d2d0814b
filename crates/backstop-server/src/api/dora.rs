//! `/dora`, `/scorecards` and `/gaps`: DORA's delivery figures per service and environment over a
//! window, each service's readiness scorecard, and its coverage and automation gaps.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::dora::DoraQuery;
use backstop_core::dora::Figures;

use crate::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::releases::known_service;

/// The window when none is asked for.
pub const DEFAULT_WINDOW: &str = "30d";

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/dora", get(dora))
        .route("/scorecards", get(scorecards))
        .route("/gaps", get(gaps))
}

/// Coverage gaps (recoveries a person started or detection came late, with the signal that
/// diverged first) and automation gaps (manual runbook steps and deviations, counted) of every
/// service, or of `service`, over 90 days.
#[utoipa::path(get, path = "/api/v1/gaps", params(("service" = Option<String>, Query)),
    responses((status = 200, body = Vec<backstop_api::dora::Gaps>), (status = 404, body = ErrorBody)))]
pub(super) async fn gaps(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<DoraQuery>,
) -> ApiResult<Json<Vec<backstop_api::dora::Gaps>>> {
    if let Some(s) = &q.service {
        known_service(&ctx, s, "/service")?;
    }
    let mut out = Vec::new();
    for svc in &ctx.config.services {
        if q.service.as_deref().is_none_or(|s| s == svc.name) {
            out.push(crate::gaps::of(&ctx, svc).await?);
        }
    }
    Ok(Json(out))
}

/// The readiness scorecard of every service (or of `service`): its checks and the level they
/// reach (bronze, silver, gold).
#[utoipa::path(get, path = "/api/v1/scorecards", params(("service" = Option<String>, Query)),
    responses((status = 200, body = Vec<backstop_core::scorecard::Scorecard>), (status = 404, body = ErrorBody)))]
pub(super) async fn scorecards(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<DoraQuery>,
) -> ApiResult<Json<Vec<backstop_core::scorecard::Scorecard>>> {
    let mut out = Vec::new();
    for svc in &ctx.config.services {
        if q.service.as_deref().is_some_and(|s| s != svc.name) {
            continue;
        }
        out.push(crate::scorecard::of(&ctx, svc).await?);
    }
    if let Some(s) = &q.service
        && out.is_empty()
    {
        known_service(&ctx, s, "/service")?;
    }
    Ok(Json(out))
}

/// Deployment frequency, lead time (release registered → promoted), change fail rate, failed
/// deployment recovery time and rework rate, each graded against the DORA clusters.
#[utoipa::path(get, path = "/api/v1/dora",
    params(("service" = Option<String>, Query), ("env" = Option<String>, Query), ("window" = Option<String>, Query, description = "e.g. 30d (default), 12w, 24h")),
    responses((status = 200, body = Vec<Figures>), (status = 400, body = ErrorBody)))]
pub(super) async fn dora(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<DoraQuery>,
) -> ApiResult<Json<Vec<Figures>>> {
    if let Some(s) = &q.service {
        known_service(&ctx, s, "/service")?;
    }
    let text = q.window.as_deref().unwrap_or(DEFAULT_WINDOW);
    let window = backstop_core::duration::parse_duration(text)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "window {text:?} is not a positive duration (e.g. 30d, 12w, 24h)"
            ))
            .at("/window")
        })?;
    let window_ms = backstop_core::duration::millis(window);
    Ok(Json(
        crate::dora::of(&ctx, q.service.as_deref(), q.env.as_deref(), window_ms).await?,
    ))
}
