//! `GET /api/v1/cluster`: the daemons (replicas) sharing this store.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    /// Every replica that ever beat, most recent heartbeat first.
    pub replicas: Vec<ReplicaStatus>,
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
    /// What it drives (`rollout/<id>`, `recovery/<id>`). Until per-rollout leases exist, the
    /// one active daemon of a store drives every rollout and recovery.
    pub leases: Vec<String>,
}
