//! `/breakers`: open circuit-breaker trips and their reset.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::breakers::BreakerReset;
use backstop_core::breaker::TripScope;
use backstop_core::event::EventKind;
use backstop_core::model::BreakerTrip;
use backstop_store::StoreError;
use serde_json::json;

use super::{Acting, Body, reason_given};
use crate::Ctx;
use crate::error::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/breakers", get(list_breakers))
        .route("/breakers/reset", post(reset_breaker))
}

#[utoipa::path(get, path = "/api/v1/breakers", responses((status = 200, body = Vec<BreakerTrip>)))]
pub(super) async fn list_breakers(
    State(ctx): State<Arc<Ctx>>,
) -> ApiResult<Json<Vec<BreakerTrip>>> {
    Ok(Json(ctx.store.open_trips().await?))
}

/// Closes an open breaker trip; rollouts it paused resume.
#[utoipa::path(post, path = "/api/v1/breakers/reset", request_body = BreakerReset,
    responses((status = 200, body = BreakerTrip), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn reset_breaker(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Body(req): Body<BreakerReset>,
) -> ApiResult<Json<BreakerTrip>> {
    reason_given(&req.reason, "a breaker reset")?;
    let at_scope = |e: StoreError| ApiError::from(e).at("/scope");
    // A scope that does not parse has no open trip either.
    let scope: TripScope = req
        .scope
        .parse()
        .map_err(|_| at_scope(StoreError::no_open_trip(&req.scope)))?;
    match &scope {
        TripScope::Env(env) => access.in_env(env)?,
        TripScope::All => access.in_scope(None)?,
    }
    let trip = ctx
        .store
        .reset_trip(&scope, &caller, &req.reason, ctx.clock.now_ms())
        .await
        .map_err(at_scope)?;
    crate::audit(
        &ctx,
        &caller,
        EventKind::BreakerReset,
        &format!("breaker/{}", trip.scope),
        "manual",
        json!({"reason": req.reason, "trip": trip.id}),
    )
    .await?;
    ctx.wake_controllers().await;
    Ok(Json(trip))
}
