//! Recovery drills, stored whole as JSON records.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`, and their own `begin_write` and locks.

use async_trait::async_trait;
use backstop_core::drill::Drill;

use super::Backend;
use crate::rows::{changed_a_row, drill_from, json};
use crate::{DrillStore, Result, StoreError};

#[async_trait]
impl DrillStore for Backend {
    async fn create_drill(&self, d: &Drill) -> Result<()> {
        self.write(sqlx::query(
            "INSERT INTO drills (id, service, env, rollout_id, status, started_at_ms, finished_at_ms, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&d.id)
        .bind(&d.service)
        .bind(&d.env)
        .bind(&d.rollout_id)
        .bind(d.status.as_str())
        .bind(d.started_at_ms)
        .bind(d.finished_at_ms)
        .bind(json(d)))
        .await?;
        Ok(())
    }

    async fn update_drill(&self, d: &Drill) -> Result<()> {
        let done = self
            .write(
                sqlx::query(
                    "UPDATE drills SET status = $2, finished_at_ms = $3, record = $4 WHERE id = $1",
                )
                .bind(&d.id)
                .bind(d.status.as_str())
                .bind(d.finished_at_ms)
                .bind(json(d)),
            )
            .await?;
        changed_a_row(done.rows_affected(), || {
            StoreError::NotFound(format!("drill {}", d.id))
        })
    }

    async fn drill(&self, id: &str) -> Result<Drill> {
        let row = self.row_by_id("drills", "drill", id).await?;
        drill_from(&row)
    }

    async fn drills(&self, service: Option<&str>, limit: i64) -> Result<Vec<Drill>> {
        let query = sqlx::query(
            "SELECT record FROM drills WHERE ($1 IS NULL OR service = $1) \
             ORDER BY started_at_ms DESC, id DESC LIMIT $2",
        );
        self.fetch_all_as(query.bind(service).bind(limit), drill_from)
            .await
    }
}
