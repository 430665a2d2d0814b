//! `GET /cluster`: the replicas sharing this store, from their heartbeats, with the leases
//! each holds (the work it drives).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use backstop_api::cluster::{AgentStatus, ClusterStatus, ReplicaStatus};

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
    Ok(Json(ClusterStatus {
        replicas,
        agents: agents_status(&ctx).await,
    }))
}

/// Each agent of the config, asked now (all at once, each within the control timeout).
async fn agents_status(ctx: &Ctx) -> Vec<AgentStatus> {
    let mut asked = tokio::task::JoinSet::new();
    // This host's own agent hosts the environments placed on no other.
    let local = ctx.drivers.local_agent.iter().map(|a| (None, a));
    let others = ctx
        .drivers
        .agents
        .iter()
        .map(|(n, a)| (Some(n.as_str()), a));
    for (name, client) in local.chain(others) {
        let environments: Vec<String> = ctx
            .config
            .services
            .iter()
            .flat_map(|s| {
                s.environments
                    .iter()
                    .filter(|e| e.agent.as_deref() == name)
                    .map(|e| format!("{}/{}", s.name, e.name))
            })
            .collect();
        let client = client.clone();
        asked.spawn(async move {
            let hello = client.hello().await;
            let (state, error, pid, proxies) = match hello {
                Ok(h) => (
                    "reachable",
                    None,
                    Some(h.pid),
                    h.proxies.into_iter().map(|p| p.name).collect(),
                ),
                Err(e) => ("unreachable", Some(e.to_string()), None, Vec::new()),
            };
            AgentStatus {
                name: client.name().to_string(),
                address: client.address().to_string(),
                state: state.into(),
                error,
                environments,
                pid,
                proxies,
            }
        });
    }
    let mut out: Vec<AgentStatus> = asked.join_all().await;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
