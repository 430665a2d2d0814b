//! `GET /api/v1/cluster`: the daemons (replicas) sharing this store.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    /// Every replica that ever beat, most recent heartbeat first.
    pub replicas: Vec<ReplicaStatus>,
    /// The agents of the config (one per host), as this replica reaches them now.
    #[serde(default)]
    pub agents: Vec<AgentStatus>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentStatus {
    pub name: String,
    pub address: String,
    /// `reachable` when it answered this replica just now, else `unreachable`: its proxies
    /// keep serving the last routes and its instances keep running, but nothing there can be
    /// changed until it is back.
    pub state: String,
    /// Why it is unreachable (no answer, a refused token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The environments placed on its host (`service/env`).
    pub environments: Vec<String>,
    /// The agent's pid and the proxies it hosts, when reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default)]
    pub proxies: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplicaStatus {
    /// Chosen at the daemon's start: a restarted daemon is a new replica.
    pub id: String,
    /// Where its API answers.
    pub address: String,
    pub host: String,
    pub pid: u32,
    /// `live` while it beats (every 2 s); `gone` once its heartbeat has lapsed (10 s).
    pub state: String,
    /// Its last heartbeat (ms since the epoch).
    pub last_heartbeat: i64,
    /// The leases it holds: what it drives (`rollout/<id>`, `recovery/<id>`,
    /// `env/<service>/<env>`).
    pub leases: Vec<String>,
}
