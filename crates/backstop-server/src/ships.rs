//! Ships: `backstop release ship SERVICE --version V` takes a registered release through the
//! service's environment waves. Starting one checks what can be checked at once (the service
//! declares waves, the release exists, no other ship of the service moves, the first wave's
//! environments pass the gate), so a ship that cannot start is refused before anything moves.
//! The controller moves it (`controller/ships.rs`); a later wave blocked only by the gate's
//! checks about the environment (`gate::ENVIRONMENT_CHECKS`, which waiting cures) is held, not
//! refused.

use backstop_api::gate::Action;
use backstop_api::ships::StartShip;
use backstop_config::LaterFailure;
use backstop_core::Millis;
use backstop_core::event::EventKind;
use backstop_core::model::Release;
use backstop_core::ship::{Ship, ShipPhase, StopRequest, WavePlan};
use serde_json::json;

use crate::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::releases::known_service;

/// The waves `service` declares, as a ship takes them.
pub fn wave_plans(svc: &backstop_config::Service) -> Vec<WavePlan> {
    svc.waves
        .iter()
        .map(|w| WavePlan {
            envs: w.envs.clone(),
            bake_ms: w.bake.map(|d| d.as_millis() as Millis),
            roll_back_with_later: w.on_later_failure == LaterFailure::RollBack,
        })
        .collect()
}

/// Starts a ship of `req.version` of `req.service` on behalf of `actor` (audited).
pub async fn start(ctx: &Ctx, req: StartShip, actor: &str) -> ApiResult<Ship> {
    let svc = known_service(ctx, &req.service, "/service")?;
    if svc.waves.is_empty() {
        return Err(ApiError::bad_request(format!(
            "service {} declares no waves (`waves: [{{envs: [staging], bake: 30m}}, {{envs: [prod]}}]` in backstop.yaml); one environment is rolled out with `backstop rollout start`",
            svc.name
        ))
        .at("/service"));
    }
    let release = ctx
        .store
        .release(&Release::id_for(&req.service, &req.version))
        .await
        .map_err(|e| ApiError::from(e).at("/version"))?;
    if let Some((other, _)) = ctx
        .store
        .ships(false, Some(&svc.name))
        .await?
        .into_iter()
        .next()
    {
        return Err(ApiError::conflict(format!(
            "{} is already being shipped ({}, {}, {}); one ship of a service at a time",
            svc.name, other.id, other.release_id, other.phase
        ))
        .at("/service"));
    }
    let mut running = Vec::new();
    for env in svc.waves.iter().flat_map(|w| &w.envs) {
        if runs(ctx, &svc.name, env, &release.id).await? {
            running.push(env);
        }
    }
    if running.len() == svc.waves.iter().map(|w| w.envs.len()).sum::<usize>() {
        return Err(ApiError::conflict(format!(
            "{} already runs in every environment of its waves; nothing to ship",
            release.id
        ))
        .at("/version"));
    }
    // The first wave's environments must pass the gate now: a ship refused there never moves.
    for env in svc.waves[0].envs.iter().filter(|e| !running.contains(e)) {
        let intent = crate::gate::Intent {
            action: Action::Start,
            actor: actor.to_owned(),
            reason: req.reason.clone(),
            ..crate::gate::Intent::default()
        };
        let report = crate::gate::evaluate(ctx, &svc.name, env, &release.id, &intent).await;
        if !report.go {
            let target = format!("ship/{}/{env}", release.id);
            return Err(crate::gate::refuse(ctx, &report, &intent, &target).await);
        }
    }
    let now = ctx.clock.now_ms();
    let id = format!("shp-{}", uuid::Uuid::now_v7());
    let ship = Ship::new(
        id,
        &svc.name,
        &release.id,
        &release.version,
        &wave_plans(svc),
        actor,
        req.reason,
        now,
    );
    ctx.store.create_ship(&ship).await?;
    crate::audit(
        ctx,
        actor,
        EventKind::ShipStarted,
        &target(&ship.id),
        "api",
        json!({
            "service": ship.service,
            "release": ship.release_id,
            "waves": svc.waves.iter().map(|w| &w.envs).collect::<Vec<_>>(),
            "reason": ship.reason,
        }),
    )
    .await?;
    ctx.wake_controllers().await;
    Ok(ship)
}

/// Asks the controller to stop ship `id` on behalf of `actor` (audited): at its next pass,
/// waves not started never will; a wave under way is left to its rollouts. Only a ship still
/// shipping can be stopped (one rolling back a failed wave finishes that first, then stops by
/// itself). Asking twice is asking once.
pub async fn stop(ctx: &Ctx, id: &str, reason: &str, actor: &str) -> ApiResult<Ship> {
    // Compare-and-set against the controller moving it meanwhile: read again and retry. The
    // controller applies the request under the ship's lease, after what it did is stored.
    for _ in 0..10 {
        let (mut ship, version) = ctx.store.ship(id).await?;
        if ship.phase != ShipPhase::Shipping {
            return Err(ApiError::conflict(format!(
                "ship {id} is {}; only a ship still shipping can be stopped (one rolling back stops by itself)",
                ship.phase
            )));
        }
        if ship.stop_requested.is_some() {
            return Ok(ship);
        }
        ship.stop_requested = Some(StopRequest {
            actor: actor.to_string(),
            reason: reason.to_string(),
            at_ms: ctx.clock.now_ms(),
        });
        match ctx.store.update_ship(&ship, version).await {
            Ok(_) => {
                crate::audit(
                    ctx,
                    actor,
                    EventKind::ShipStopped,
                    &target(id),
                    "manual",
                    json!({"service": ship.service, "release": ship.release_id, "requested": reason}),
                )
                .await?;
                ctx.wake_controllers().await;
                return Ok(ship);
            }
            Err(backstop_store::StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(format!(
        "ship {id} kept changing while the stop was being asked for; try again"
    )))
}

/// Whether `service/env` runs release `release_id` now (its last known good).
pub async fn runs(
    ctx: &Ctx,
    service: &str,
    env: &str,
    release_id: &str,
) -> backstop_store::Result<bool> {
    let state = ctx.store.environment(service, env).await?;
    Ok(state.and_then(|e| e.lkg_release_id).as_deref() == Some(release_id))
}

/// The audit target of a ship.
pub fn target(id: &str) -> String {
    format!("ship/{id}")
}
