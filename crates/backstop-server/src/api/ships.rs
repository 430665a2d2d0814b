//! `/ships`: take a release through its service's environment waves, follow the ship.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::rollouts::Reason;
use backstop_api::ships::{ShipQuery, StartShip};
use backstop_core::ship::Ship;

use super::{Acting, Body, Created, created, reason_given};
use crate::Ctx;
use crate::error::ApiResult;
use crate::releases::known_service;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/ships", get(list_ships).post(start_ship))
        .route("/ships/{id}", get(get_ship))
        .route("/ships/{id}/stop", post(stop_ship))
}

/// Ships a registered release through the service's waves: each wave's environments roll out
/// together, a promoted wave bakes (judged against its pre-deploy baselines) before the next
/// starts, a failed wave is rolled back and the ship stops (audited). The caller needs the
/// deployer role in every environment of the waves.
#[utoipa::path(post, path = "/api/v1/ships", request_body = StartShip,
    responses((status = 201, body = Ship), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn start_ship(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Body(req): Body<StartShip>,
) -> ApiResult<Created<Ship>> {
    let svc = known_service(&ctx, &req.service, "/service")?;
    for env in svc.waves.iter().flat_map(|w| &w.envs) {
        access.in_env(env)?;
    }
    created(crate::ships::start(&ctx, req, &caller).await?)
}

/// Ships still moving (with `all=true`, every ship), oldest first; of one service when given.
#[utoipa::path(get, path = "/api/v1/ships",
    params(("service" = Option<String>, Query), ("all" = Option<bool>, Query)),
    responses((status = 200, body = Vec<Ship>)))]
pub(super) async fn list_ships(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<ShipQuery>,
) -> ApiResult<Json<Vec<Ship>>> {
    let ships = ctx.store.ships(q.all, q.service.as_deref()).await?;
    Ok(Json(ships.into_iter().map(|(s, _)| s).collect()))
}

/// One ship: its phase, each wave's and environment's state, the bakes' evidence, and why it
/// stopped, waits or halted.
#[utoipa::path(get, path = "/api/v1/ships/{id}",
    responses((status = 200, body = Ship), (status = 404, body = ErrorBody)))]
pub(super) async fn get_ship(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Ship>> {
    Ok(Json(ctx.store.ship(&id).await?.0))
}

/// Stops a ship (audited): waves that have not started never will; a wave under way is left to
/// its rollouts (abort them with `/rollouts/{id}/abort`), nothing is rolled back. The caller
/// needs the deployer role in every environment of the ship.
#[utoipa::path(post, path = "/api/v1/ships/{id}/stop", request_body = Reason,
    responses((status = 200, body = Ship), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn stop_ship(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<Reason>,
) -> ApiResult<Json<Ship>> {
    reason_given(&req.reason, "stopping a ship")?;
    let (ship, _) = ctx.store.ship(&id).await?;
    for env in ship.waves.iter().flat_map(|w| &w.envs) {
        access.in_env(&env.env)?;
    }
    Ok(Json(
        crate::ships::stop(&ctx, &id, &req.reason, &caller).await?,
    ))
}
