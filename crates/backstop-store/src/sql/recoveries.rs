//! The recovery journal: each recovery with its planned steps.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`, and their own `begin_write` and locks.

use async_trait::async_trait;
use backstop_core::Millis;
use backstop_core::model::{Recovery, RecoveryStatus, RecoveryStep};
use backstop_core::recovery::{StepKind, idempotency_key};

use super::Backend;
use crate::rows::{Columns, changed_a_row, conflict_as, json, recovery_from, step_from};
use crate::{RecoveryStore, Result, StoreError};

impl Backend {
    async fn recovery_steps(&self, id: &str) -> Result<Vec<RecoveryStep>> {
        let query = sqlx::query(
            "SELECT idx, idempotency_key, step, status, attempts, started_at_ms, finished_at_ms, outcome \
             FROM recovery_steps WHERE recovery_id = $1 ORDER BY idx",
        );
        self.fetch_all_as(query.bind(id), step_from).await
    }

    async fn recovery_from(&self, row: &super::Row) -> Result<Recovery> {
        let id: String = row.col("id")?;
        let steps = self.recovery_steps(&id).await?;
        recovery_from(row, steps)
    }

    async fn recoveries_where(&self, sql: &'static str, limit: i64) -> Result<Vec<Recovery>> {
        let rows = sqlx::query(sql).bind(limit).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.recovery_from(row).await?);
        }
        Ok(out)
    }
}

#[async_trait]
impl RecoveryStore for Backend {
    async fn create_recovery(&self, r: &Recovery, plan: &[StepKind]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO recoveries (id, rollout_id, service, env, actor, trigger, reason, status, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&r.id)
        .bind(&r.rollout_id)
        .bind(&r.service)
        .bind(&r.env)
        .bind(&r.actor)
        .bind(&r.trigger)
        .bind(&r.reason)
        .bind(r.status.as_str())
        .bind(r.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as(|| {
            format!("{}/{} already has a recovery running", r.service, r.env)
        }))?;
        for (i, step) in plan.iter().enumerate() {
            sqlx::query(
                "INSERT INTO recovery_steps (recovery_id, idx, idempotency_key, step, status) \
                 VALUES ($1, $2, $3, $4, 'pending')",
            )
            .bind(&r.id)
            .bind(i as i64)
            .bind(idempotency_key(&r.id, i, step))
            .bind(json(step))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn recovery(&self, id: &str) -> Result<Recovery> {
        let row = self.row_by_id("recoveries", "recovery", id).await?;
        self.recovery_from(&row).await
    }

    async fn recoveries(&self, limit: i64) -> Result<Vec<Recovery>> {
        self.recoveries_where(
            "SELECT * FROM recoveries ORDER BY created_at_ms DESC, id DESC LIMIT $1",
            limit,
        )
        .await
    }

    async fn unfinished_recoveries(&self) -> Result<Vec<Recovery>> {
        self.recoveries_where(
            "SELECT * FROM recoveries WHERE status = 'running' ORDER BY created_at_ms LIMIT $1",
            i64::MAX,
        )
        .await
    }

    async fn step_started(&self, recovery_id: &str, index: i64, at: Millis) -> Result<()> {
        self.write(
            sqlx::query(
                "UPDATE recovery_steps SET status = 'started', attempts = attempts + 1, \
             started_at_ms = COALESCE(started_at_ms, $3) WHERE recovery_id = $1 AND idx = $2",
            )
            .bind(recovery_id)
            .bind(index)
            .bind(at),
        )
        .await?;
        Ok(())
    }

    async fn step_finished(
        &self,
        recovery_id: &str,
        index: i64,
        at: Millis,
        ok: bool,
        outcome: &serde_json::Value,
    ) -> Result<()> {
        self.write(
            sqlx::query(
                "UPDATE recovery_steps SET status = $3, finished_at_ms = $4, outcome = $5 \
             WHERE recovery_id = $1 AND idx = $2",
            )
            .bind(recovery_id)
            .bind(index)
            .bind(if ok { "done" } else { "failed" })
            .bind(at)
            .bind(json(outcome)),
        )
        .await?;
        Ok(())
    }

    async fn finish_recovery(&self, id: &str, status: RecoveryStatus, at: Millis) -> Result<()> {
        self.write(
            sqlx::query("UPDATE recoveries SET status = $2, finished_at_ms = $3 WHERE id = $1")
                .bind(id)
                .bind(status.as_str())
                .bind(at),
        )
        .await?;
        Ok(())
    }

    async fn set_recovery_validation(
        &self,
        id: &str,
        validation: &backstop_core::validation::RecoveryValidation,
    ) -> Result<()> {
        self.write(
            sqlx::query(
                "UPDATE recoveries SET validation = $2, validation_status = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(crate::rows::json(validation))
            .bind(validation.status.as_str()),
        )
        .await?;
        Ok(())
    }

    async fn set_recovery_postmortem(
        &self,
        id: &str,
        postmortem: &backstop_core::postmortem::PostmortemRecord,
    ) -> Result<()> {
        let done = self
            .write(
                sqlx::query("UPDATE recoveries SET postmortem = $2 WHERE id = $1")
                    .bind(id)
                    .bind(crate::rows::json(postmortem)),
            )
            .await?;
        changed_a_row(done.rows_affected(), || {
            StoreError::NotFound(format!("recovery {id}"))
        })
    }

    async fn recoveries_awaiting_postmortem(&self) -> Result<Vec<Recovery>> {
        // `postmortem` is our own JSON (`PostmortemRecord`): written means `done_at_ms` is set.
        self.recoveries_where(
            "SELECT * FROM recoveries WHERE validation_status IN ('passed', 'not-declared') \
             AND (postmortem IS NULL OR postmortem LIKE '%\"done_at_ms\":null%') \
             ORDER BY created_at_ms LIMIT $1",
            10_000,
        )
        .await
    }

    async fn recoveries_validating(&self) -> Result<Vec<Recovery>> {
        self.recoveries_where(
            "SELECT * FROM recoveries WHERE validation_status = 'pending' ORDER BY created_at_ms LIMIT $1",
            1000,
        )
        .await
    }

    async fn reopen_recovery(&self, id: &str) -> Result<()> {
        let done = self.write(sqlx::query("UPDATE recoveries SET status = 'running', finished_at_ms = NULL WHERE id = $1 AND status = 'failed'")
            .bind(id))
            .await?;
        changed_a_row(done.rows_affected(), || {
            StoreError::Conflict(format!("recovery {id} is not failed"))
        })
    }
}
