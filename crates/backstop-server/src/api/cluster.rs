//! `GET /cluster`: the replicas sharing this store, from their heartbeats, with the leases
//! each holds (the work it drives).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use backstop_api::cluster::{ClusterStatus, ReplicaStatus};

use crate::Ctx;
use crate::controller::LIVE_WITHIN;
use crate::error::ApiResult;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new().route("/cluster", get(cluster_status))
}

#[utoipa::path(get, path = "/api/v1/cluster", responses((status = 200, body = ClusterStatus)))]
pub(super) async fn cluster_status(State(ctx): State<Arc<Ctx>>) -> ApiResult<Json<ClusterStatus>> {
    let now = ctx.clock.now_ms();
    let live_within = i64::try_from(LIVE_WITHIN.as_millis()).unwrap_or(i64::MAX);
    let leases = ctx.store.leases().await?;
    let mut replicas = Vec::new();
    for r in ctx.store.replicas().await? {
        let live = now - r.last_heartbeat_ms <= live_within;
        let leases = leases
            .iter()
            .filter(|l| l.holder == r.id && l.expires_at_ms > now)
            .map(|l| l.key.clone())
            .collect();
        replicas.push(ReplicaStatus {
            state: if live { "live" } else { "gone" }.into(),
            id: r.id,
            address: r.address,
            host: r.host,
            pid: r.pid,
            last_heartbeat: r.last_heartbeat_ms,
            leases,
        });
    }
    Ok(Json(ClusterStatus { replicas }))
}
