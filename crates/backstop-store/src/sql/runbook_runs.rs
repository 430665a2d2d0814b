//! Runbook runs: stored whole as JSON, changed by compare-and-set on a version, every write
//! fenced (a replica that lost the run's lease changes nothing).
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`.

use async_trait::async_trait;
use backstop_core::runbook_run::RunbookRun;

use super::Backend;
use crate::rows::{json, runbook_run_from};
use crate::{Result, RunbookRunStore, StoreError};

#[async_trait]
impl RunbookRunStore for Backend {
    async fn create_runbook_run(&self, r: &RunbookRun) -> Result<i64> {
        self.write(
            sqlx::query(
                "INSERT INTO runbook_runs (id, runbook, env, incident_id, status, started_at_ms, version, record) \
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
            )
            .bind(&r.id)
            .bind(&r.runbook)
            .bind(&r.env)
            .bind(&r.incident_id)
            .bind(r.status.as_str())
            .bind(r.started_at_ms)
            .bind(json(r)),
        )
        .await?;
        Ok(1)
    }

    async fn runbook_run(&self, id: &str) -> Result<(RunbookRun, i64)> {
        let row = self.row_by_id("runbook_runs", "runbook run", id).await?;
        runbook_run_from(&row)
    }

    async fn runbook_runs(&self, include_over: bool) -> Result<Vec<(RunbookRun, i64)>> {
        let query = sqlx::query(
            "SELECT * FROM runbook_runs WHERE $1 OR status IN ('running', 'waiting') \
             ORDER BY started_at_ms, id",
        );
        self.fetch_all_as(query.bind(include_over), runbook_run_from)
            .await
    }

    async fn incident_runbook_runs(&self, incident_id: &str) -> Result<Vec<RunbookRun>> {
        let query = sqlx::query(
            "SELECT * FROM runbook_runs WHERE incident_id = $1 ORDER BY started_at_ms, id",
        );
        let runs = self
            .fetch_all_as(query.bind(incident_id), runbook_run_from)
            .await?;
        Ok(runs.into_iter().map(|(r, _)| r).collect())
    }

    async fn update_runbook_run(&self, r: &RunbookRun, read_version: i64) -> Result<i64> {
        let done = self
            .write(
                sqlx::query(
                    "UPDATE runbook_runs SET status = $2, record = $3, version = version + 1 \
                     WHERE id = $1 AND version = $4",
                )
                .bind(&r.id)
                .bind(r.status.as_str())
                .bind(json(r))
                .bind(read_version),
            )
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "runbook run {} changed meanwhile; read it again",
                r.id
            )));
        }
        Ok(read_version + 1)
    }
}
