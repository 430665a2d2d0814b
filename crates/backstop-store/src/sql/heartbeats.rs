//! Heartbeats: one row per name, its last ping and how many.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`.

use async_trait::async_trait;
use backstop_core::Millis;
use backstop_core::heartbeat::Beat;

use super::Backend;
use crate::rows::beat_from;
use crate::{HeartbeatStore, Result, StoreError};

#[async_trait]
impl HeartbeatStore for Backend {
    async fn beat(&self, name: &str, by: &str, at: Millis) -> Result<Beat> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO heartbeats (name, last_at_ms, last_by, count) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (name) DO UPDATE SET last_at_ms = excluded.last_at_ms, \
             last_by = excluded.last_by, count = heartbeats.count + 1 RETURNING *",
        )
        .bind(name)
        .bind(at)
        .bind(by)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("heartbeat {name}")))?;
        let beat = beat_from(&row)?;
        tx.commit().await?;
        Ok(beat)
    }

    async fn heartbeats(&self) -> Result<Vec<Beat>> {
        self.fetch_all_as(
            sqlx::query("SELECT * FROM heartbeats ORDER BY name"),
            beat_from,
        )
        .await
    }
}
