//! Incidents: stored whole as JSON, changed by compare-and-set on a version.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`.

use async_trait::async_trait;
use backstop_core::incident::Incident;

use super::Backend;
use crate::rows::{incident_from, json};
use crate::{IncidentStore, Result, StoreError};

#[async_trait]
impl IncidentStore for Backend {
    async fn create_incident(&self, i: &Incident) -> Result<i64> {
        self.write(
            sqlx::query(
                "INSERT INTO incidents (id, service, env, status, opened_at_ms, version, record) \
                 VALUES ($1, $2, $3, $4, $5, 1, $6)",
            )
            .bind(&i.id)
            .bind(&i.service)
            .bind(&i.env)
            .bind(i.status.as_str())
            .bind(i.opened_at_ms)
            .bind(json(i)),
        )
        .await?;
        Ok(1)
    }

    async fn incident(&self, id: &str) -> Result<(Incident, i64)> {
        let row = self.row_by_id("incidents", "incident", id).await?;
        incident_from(&row)
    }

    async fn incidents(&self, include_resolved: bool) -> Result<Vec<(Incident, i64)>> {
        let query = sqlx::query(
            "SELECT * FROM incidents WHERE $1 OR status <> 'resolved' ORDER BY opened_at_ms, id",
        );
        self.fetch_all_as(query.bind(include_resolved), incident_from)
            .await
    }

    async fn update_incident(&self, i: &Incident, read_version: i64) -> Result<i64> {
        let done = sqlx::query(
            "UPDATE incidents SET status = $2, record = $3, version = version + 1 \
             WHERE id = $1 AND version = $4",
        )
        .bind(&i.id)
        .bind(i.status.as_str())
        .bind(json(i))
        .bind(read_version)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "incident {} changed meanwhile; read it again",
                i.id
            )));
        }
        Ok(read_version + 1)
    }
}
