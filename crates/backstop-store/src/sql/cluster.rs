//! The replicas: each daemon's heartbeat, the leases that split the work between them (see
//! [`crate::fence`]), and the commands passed on to a lease's holder.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`, and their own `begin_write` and locks.

use async_trait::async_trait;
use backstop_core::Millis;
use backstop_core::model::{Lease, ReplicaRecord, RoutedCommand};

use super::Backend;
use crate::rows::{changed_a_row, command_from, json, lease_from, replica_from};
use crate::{ClusterStore, Result, StoreError};

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

    async fn acquire_lease(
        &self,
        key: &str,
        holder: &str,
        now: Millis,
        ttl: Millis,
    ) -> Result<Option<i64>> {
        // One statement, so two replicas racing for a free lease cannot both win: the row
        // (or the key's uniqueness) serializes them and the second sees the first's holder.
        let epoch = sqlx::query_scalar(
            "INSERT INTO leases (key, holder, epoch, expires_at_ms) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (key) DO UPDATE SET \
             epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch ELSE leases.epoch + 1 END, \
             holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms <= $4 \
             RETURNING epoch",
        )
        .bind(key)
        .bind(holder)
        .bind(now.saturating_add(ttl))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(epoch)
    }

    async fn renew_leases(&self, holder: &str, now: Millis, ttl: Millis) -> Result<Vec<Lease>> {
        // A released lease has expired at 0; one taken over has another holder.
        let query = sqlx::query(
            "UPDATE leases SET expires_at_ms = $1 WHERE holder = $2 AND expires_at_ms > 0 \
             RETURNING *",
        )
        .bind(now.saturating_add(ttl))
        .bind(holder);
        self.fetch_all_as(query, lease_from).await
    }

    async fn release_lease(&self, key: &str, holder: &str) -> Result<()> {
        sqlx::query("UPDATE leases SET expires_at_ms = 0 WHERE key = $1 AND holder = $2")
            .bind(key)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release_leases(&self, holder: &str) -> Result<()> {
        sqlx::query("UPDATE leases SET expires_at_ms = 0 WHERE holder = $1")
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn expire_others_leases(&self, holder: &str) -> Result<()> {
        sqlx::query("UPDATE leases SET expires_at_ms = 0 WHERE holder <> $1")
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        self.fetch_all_as(sqlx::query("SELECT * FROM leases ORDER BY key"), lease_from)
            .await
    }

    async fn wake_replicas(&self) -> Result<()> {
        self.notify_replicas().await
    }

    async fn check_fence(&self) -> Result<()> {
        let Some(fence) = crate::fence::current() else {
            return Ok(());
        };
        let stored: Option<i64> = sqlx::query_scalar("SELECT epoch FROM leases WHERE key = $1")
            .bind(&fence.key)
            .fetch_optional(&self.pool)
            .await?;
        crate::fence::admit(&fence, stored)
    }

    async fn route_command(&self, c: &RoutedCommand) -> Result<()> {
        sqlx::query(
            "INSERT INTO commands (id, lease_key, body, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&c.id)
        .bind(&c.lease_key)
        .bind(json(&c.body))
        .bind(c.created_at_ms)
        .execute(&self.pool)
        .await?;
        self.notify_replicas().await
    }

    async fn commands_for(&self, holder: &str) -> Result<Vec<RoutedCommand>> {
        let query = sqlx::query(
            "SELECT c.* FROM commands c JOIN leases l ON l.key = c.lease_key \
             WHERE l.holder = $1 AND c.claimed_by IS NULL AND c.answered_at_ms IS NULL ORDER BY c.created_at_ms, c.id",
        )
        .bind(holder);
        self.fetch_all_as(query, command_from).await
    }

    async fn answer_command(&self, id: &str, at: Millis, answer: &serde_json::Value) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE commands SET answered_at_ms = $2, answer = $3 \
             WHERE id = $1 AND answered_at_ms IS NULL",
        )
        .bind(id)
        .bind(at)
        .bind(json(answer))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        changed_a_row(done.rows_affected(), || {
            StoreError::Conflict(format!("command {id} was answered already"))
        })
    }

    async fn claim_command(&self, id: &str, holder: &str) -> Result<bool> {
        let done = self
            .write(
                sqlx::query(
                    "UPDATE commands SET claimed_by = $2 \
                     WHERE id = $1 AND claimed_by IS NULL AND answered_at_ms IS NULL",
                )
                .bind(id)
                .bind(holder),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn withdraw_command(
        &self,
        id: &str,
        at: Millis,
        answer: &serde_json::Value,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE commands SET answered_at_ms = $2, answer = $3 \
             WHERE id = $1 AND claimed_by IS NULL AND answered_at_ms IS NULL",
        )
        .bind(id)
        .bind(at)
        .bind(json(answer))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn command(&self, id: &str) -> Result<RoutedCommand> {
        command_from(&self.row_by_id("commands", "command", id).await?)
    }
}
