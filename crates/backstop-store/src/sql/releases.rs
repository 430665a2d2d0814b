//! Releases.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`, and their own `begin_write` and locks.

use async_trait::async_trait;
use backstop_core::model::Release;

use super::Backend;
use crate::rows::{changed_a_row, conflict_as, json, release_from, release_status};
use crate::{ReleaseStore, Result, StoreError};

#[async_trait]
impl ReleaseStore for Backend {
    async fn create_release(&self, r: &Release) -> Result<()> {
        self.write(sqlx::query(
            "INSERT INTO releases (id, service, version, artifact, sha256, env, status, bad_reason, created_at_ms, schema_range, secrets) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&r.id)
        .bind(&r.service)
        .bind(&r.version)
        .bind(json(&r.artifact))
        .bind(&r.sha256)
        .bind(json(&r.env))
        .bind(release_status(r.status))
        .bind(&r.bad_reason)
        .bind(r.created_at_ms)
        .bind(r.schema.as_ref().map(json))
        .bind(json(&r.secrets)))
        .await
        .map_err(conflict_as(|| format!("release {} already exists", r.id)))?;
        Ok(())
    }

    async fn release(&self, id: &str) -> Result<Release> {
        let row = self.row_by_id("releases", "release", id).await?;
        release_from(&row)
    }

    async fn releases(&self, service: Option<&str>) -> Result<Vec<Release>> {
        let query = sqlx::query(
            "SELECT * FROM releases WHERE ($1 IS NULL OR service = $1) ORDER BY created_at_ms, id",
        );
        self.fetch_all_as(query.bind(service), release_from).await
    }

    async fn mark_release_bad(&self, id: &str, reason: &str) -> Result<()> {
        let done = self
            .write(
                sqlx::query("UPDATE releases SET status = 'bad', bad_reason = $2 WHERE id = $1")
                    .bind(id)
                    .bind(reason),
            )
            .await?;
        changed_a_row(done.rows_affected(), || {
            StoreError::NotFound(format!("release {id}"))
        })
    }

    async fn readmit_release(&self, id: &str) -> Result<()> {
        let done = self
            .write(
                sqlx::query(
                    "UPDATE releases SET status = 'ok', bad_reason = NULL WHERE id = $1 AND status = 'bad'",
                )
                .bind(id),
            )
            .await?;
        if done.rows_affected() == 0 {
            // Unknown, or not marked bad: say which.
            self.release(id).await?;
            return Err(StoreError::Conflict(format!(
                "release {id} is not marked bad: there is nothing to readmit"
            )));
        }
        Ok(())
    }
}
