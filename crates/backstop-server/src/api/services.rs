//! `GET /services`: the configured services and the state of their environments.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use backstop_api::services::{EnvironmentView, ServiceView};

use crate::Ctx;
use crate::error::ApiResult;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new().route("/services", get(list_services))
}

#[utoipa::path(get, path = "/api/v1/services", responses((status = 200, body = Vec<ServiceView>)))]
pub(super) async fn list_services(
    State(ctx): State<Arc<Ctx>>,
) -> ApiResult<Json<Vec<ServiceView>>> {
    let mut out = Vec::new();
    for svc in &ctx.config.services {
        let mut environments = Vec::new();
        for env in &svc.environments {
            environments.push(EnvironmentView {
                name: env.name.clone(),
                listen: ctx
                    .drivers
                    .proxies
                    .get(&(svc.name.clone(), env.name.clone()))
                    .ok_or(())
                    .map(|p| p.listen_addr().to_string())
                    .unwrap_or_default(),
                state: ctx.store.environment(&svc.name, &env.name).await?,
                active_rollout: ctx
                    .store
                    .active_rollout(&svc.name, &env.name)
                    .await?
                    .map(|r| r.id),
                health: ctx.stable_health(&svc.name, &env.name),
            });
        }
        out.push(ServiceView {
            name: svc.name.clone(),
            owner: svc.owner.clone(),
            tier: svc.tier,
            environments,
        });
    }
    Ok(Json(out))
}
