//! Manual freezes.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`, and their own `begin_write` and locks.

use async_trait::async_trait;
use backstop_core::Millis;
use backstop_core::model::Freeze;

use super::Backend;
use crate::rows::freeze_from;
use crate::{FreezeStore, Result, StoreError};

#[async_trait]
impl FreezeStore for Backend {
    async fn create_freeze(&self, f: &Freeze) -> Result<()> {
        self.write(sqlx::query(
            "INSERT INTO freezes (id, service, env, reason, actor, started_at_ms, until_ms, ended_at_ms, ended_by, end_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&f.id)
        .bind(&f.service)
        .bind(&f.env)
        .bind(&f.reason)
        .bind(&f.actor)
        .bind(f.started_at_ms)
        .bind(f.until_ms)
        .bind(f.ended_at_ms)
        .bind(&f.ended_by)
        .bind(&f.end_reason))
        .await?;
        Ok(())
    }

    async fn freezes(&self, include_ended: bool) -> Result<Vec<Freeze>> {
        let query = sqlx::query(
            "SELECT * FROM freezes WHERE $1 OR ended_at_ms IS NULL ORDER BY started_at_ms, id",
        );
        self.fetch_all_as(query.bind(include_ended), freeze_from)
            .await
    }

    async fn end_freeze(&self, id: &str, by: &str, reason: &str, at: Millis) -> Result<Freeze> {
        let row = sqlx::query(
            "UPDATE freezes SET ended_at_ms = $2, ended_by = $3, end_reason = $4 \
             WHERE id = $1 AND ended_at_ms IS NULL RETURNING *",
        )
        .bind(id)
        .bind(at)
        .bind(by)
        .bind(reason)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => freeze_from(&row),
            None => {
                let exists = sqlx::query("SELECT 1 FROM freezes WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .is_some();
                Err(if exists {
                    StoreError::Conflict(format!("freeze {id} has already ended"))
                } else {
                    StoreError::NotFound(format!("freeze {id}"))
                })
            }
        }
    }
}
