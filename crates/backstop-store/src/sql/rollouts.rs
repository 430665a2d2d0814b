//! Rollouts, their judged intervals and their timeline events.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`, and their own `begin_write` and locks.

use async_trait::async_trait;
use backstop_core::model::{EnvironmentState, Event, Rollout};
use backstop_judge::Interval;

use super::Backend;
use super::environments::write_environment;
use crate::rows::{
    Columns, changed_a_row, conflict_as, event_from, interval_from, interval_json, json,
    rollout_from,
};
use crate::{Result, RolloutStore, StoreError};

const UPDATE_ROLLOUT: &str = "UPDATE rollouts SET phase = $2, step_index = $3, step_started_at_ms = $4, \
     canary_weight = $5, canary_instance_id = $6, updated_at_ms = $7, reason = $8, verdict = $9, severity = $10, \
     escalation_deadline_ms = $11, acknowledged_by = $12 WHERE id = $1";

/// Replaces a rollout's mutable fields (by id); `NotFound` when there is no such rollout.
async fn write_rollout<'e>(
    db: impl sqlx::Executor<'e, Database = super::Db>,
    r: &Rollout,
) -> Result<()> {
    let done = sqlx::query(UPDATE_ROLLOUT)
        .bind(&r.id)
        .bind(r.phase.as_str())
        .bind(r.step_index)
        .bind(r.step_started_at_ms)
        .bind(r.canary_weight)
        .bind(&r.canary_instance_id)
        .bind(r.updated_at_ms)
        .bind(&r.reason)
        .bind(r.verdict.as_ref().map(json))
        .bind(r.severity.map(|s| s.as_str()))
        .bind(r.escalation_deadline_ms)
        .bind(&r.acknowledged_by)
        .execute(db)
        .await?;
    changed_a_row(done.rows_affected(), || {
        StoreError::NotFound(format!("rollout {}", r.id))
    })
}

#[async_trait]
impl RolloutStore for Backend {
    async fn create_rollout(&self, r: &Rollout) -> Result<()> {
        self.write(sqlx::query(
            "INSERT INTO rollouts (id, service, env, from_release_id, to_release_id, phase, step_index, \
             step_started_at_ms, canary_weight, canary_instance_id, created_at_ms, updated_at_ms, actor, reason, verdict) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&r.id)
        .bind(&r.service)
        .bind(&r.env)
        .bind(&r.from_release_id)
        .bind(&r.to_release_id)
        .bind(r.phase.as_str())
        .bind(r.step_index)
        .bind(r.step_started_at_ms)
        .bind(r.canary_weight)
        .bind(&r.canary_instance_id)
        .bind(r.created_at_ms)
        .bind(r.updated_at_ms)
        .bind(&r.actor)
        .bind(&r.reason)
        .bind(r.verdict.as_ref().map(json)))
        .await
        .map_err(conflict_as(|| {
            format!(
                "{}/{} already has a rollout in progress; wait for it, or abort it first",
                r.service, r.env
            )
        }))?;
        Ok(())
    }

    async fn rollout(&self, id: &str) -> Result<Rollout> {
        let row = self.row_by_id("rollouts", "rollout", id).await?;
        rollout_from(&row)
    }

    async fn rollouts(&self, service: Option<&str>, limit: i64) -> Result<Vec<Rollout>> {
        let query = sqlx::query(
            "SELECT * FROM rollouts WHERE ($1 IS NULL OR service = $1) ORDER BY created_at_ms DESC, id DESC LIMIT $2",
        );
        self.fetch_all_as(query.bind(service).bind(limit), rollout_from)
            .await
    }

    async fn active_rollouts(&self) -> Result<Vec<Rollout>> {
        let query = sqlx::query(
            "SELECT * FROM rollouts WHERE phase NOT IN ('promoted', 'recovered') ORDER BY created_at_ms",
        );
        self.fetch_all_as(query, rollout_from).await
    }

    async fn active_rollout(&self, service: &str, env: &str) -> Result<Option<Rollout>> {
        let query = sqlx::query(
            "SELECT * FROM rollouts WHERE service = $1 AND env = $2 AND phase NOT IN ('promoted', 'recovered')",
        );
        self.fetch_optional_as(query.bind(service).bind(env), rollout_from)
            .await
    }

    async fn update_rollout(&self, r: &Rollout) -> Result<()> {
        let mut tx = self.begin_write().await?;
        write_rollout(&mut *tx, r).await?;
        Ok(tx.commit().await?)
    }

    async fn commit_promotion(&self, r: &Rollout, env: &EnvironmentState) -> Result<()> {
        let mut tx = self.begin_write().await?;
        write_rollout(&mut *tx, r).await?;
        write_environment(&mut *tx, env).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append_interval(&self, rollout_id: &str, interval: &Interval) -> Result<i64> {
        // Appends to one rollout take turns, so two never compute the same next `seq`.
        let mut tx = self.begin_write().await?;
        Self::lock_rollout(&mut tx, rollout_id).await?;
        let row = sqlx::query(
            "INSERT INTO rollout_intervals (rollout_id, seq, \"interval\") \
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM rollout_intervals WHERE rollout_id = $1), $2) \
             RETURNING seq",
        )
        .bind(rollout_id)
        .bind(interval_json(interval))
        .fetch_one(&mut *tx)
        .await?;
        let seq = row.col("seq")?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn intervals(&self, rollout_id: &str) -> Result<Vec<Interval>> {
        let query = sqlx::query(
            "SELECT \"interval\" FROM rollout_intervals WHERE rollout_id = $1 ORDER BY seq",
        );
        self.fetch_all_as(query.bind(rollout_id), interval_from)
            .await
    }

    async fn add_event(&self, e: &Event) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO events (rollout_id, at_ms, kind, detail) VALUES ($1, $2, $3, $4)",
            )
            .bind(&e.rollout_id)
            .bind(e.at_ms)
            .bind(e.kind.as_str())
            .bind(json(&e.detail)),
        )
        .await?;
        Ok(())
    }

    async fn events(&self, rollout_id: &str) -> Result<Vec<Event>> {
        let query = sqlx::query("SELECT * FROM events WHERE rollout_id = $1 ORDER BY at_ms, id");
        self.fetch_all_as(query.bind(rollout_id), event_from).await
    }
}
