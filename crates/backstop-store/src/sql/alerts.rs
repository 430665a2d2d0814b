//! Alerts received from monitoring: one row per firing, stored whole as JSON; the first
//! insert of a firing wins, so a resend never acts twice.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`.

use async_trait::async_trait;
use backstop_core::alert::AlertRecord;

use super::Backend;
use crate::rows::{alert_from, json};
use crate::{AlertStore, Result, StoreError};

#[async_trait]
impl AlertStore for Backend {
    async fn insert_alert(&self, a: &AlertRecord) -> Result<bool> {
        let done = self
            .write(
                sqlx::query(
                    "INSERT INTO alerts (id, action, received_at_ms, record) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&a.id)
                .bind(a.action.as_str())
                .bind(a.received_at_ms)
                .bind(json(a)),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn alert(&self, id: &str) -> Result<AlertRecord> {
        let row = self.row_by_id("alerts", "alert", id).await?;
        alert_from(&row)
    }

    async fn update_alert(&self, a: &AlertRecord) -> Result<()> {
        let done = self
            .write(
                sqlx::query("UPDATE alerts SET action = $2, record = $3 WHERE id = $1")
                    .bind(&a.id)
                    .bind(a.action.as_str())
                    .bind(json(a)),
            )
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("alert {}", a.id)));
        }
        Ok(())
    }

    async fn alerts(&self, limit: i64) -> Result<Vec<AlertRecord>> {
        self.fetch_all_as(
            sqlx::query("SELECT * FROM alerts ORDER BY received_at_ms DESC, id LIMIT $1")
                .bind(limit),
            alert_from,
        )
        .await
    }

    async fn held_alerts(&self) -> Result<Vec<AlertRecord>> {
        self.fetch_all_as(
            sqlx::query("SELECT * FROM alerts WHERE action IN ('held', 'rolling_back') ORDER BY received_at_ms, id"),
            alert_from,
        )
        .await
    }
}
