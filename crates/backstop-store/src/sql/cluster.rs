//! The replicas: each daemon's heartbeat.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`, and their own `begin_write` and locks.

use async_trait::async_trait;
use backstop_core::model::ReplicaRecord;

use super::Backend;
use crate::rows::replica_from;
use crate::{ClusterStore, Result};

#[async_trait]
impl ClusterStore for Backend {
    async fn heartbeat(&self, r: &ReplicaRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO replicas (id, address, host, pid, started_at_ms, last_heartbeat_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET \
             address = excluded.address, last_heartbeat_ms = excluded.last_heartbeat_ms",
        )
        .bind(&r.id)
        .bind(&r.address)
        .bind(&r.host)
        .bind(i64::from(r.pid))
        .bind(r.started_at_ms)
        .bind(r.last_heartbeat_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn replicas(&self) -> Result<Vec<ReplicaRecord>> {
        let query = sqlx::query("SELECT * FROM replicas ORDER BY last_heartbeat_ms DESC, id");
        self.fetch_all_as(query, replica_from).await
    }
}
