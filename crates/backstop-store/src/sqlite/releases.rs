//! Releases.

use async_trait::async_trait;
use backstop_core::model::{Release, ReleaseStatus};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, json, parse};
use crate::{ReleaseStore, Result, StoreError};

fn release_from(row: &SqliteRow) -> Result<Release> {
    Ok(Release {
        id: row.try_get("id")?,
        service: row.try_get("service")?,
        version: row.try_get("version")?,
        artifact: parse(&row.try_get::<String, _>("artifact")?, "release.artifact")?,
        sha256: row.try_get("sha256")?,
        env: parse(&row.try_get::<String, _>("env")?, "release.env")?,
        status: match row.try_get::<String, _>("status")?.as_str() {
            "bad" => ReleaseStatus::Bad,
            _ => ReleaseStatus::Ok,
        },
        bad_reason: row.try_get("bad_reason")?,
        created_at_ms: row.try_get("created_at_ms")?,
        schema: row
            .try_get::<Option<String>, _>("schema_range")?
            .map(|s| parse(&s, "release.schema_range"))
            .transpose()?,
    })
}

#[async_trait]
impl ReleaseStore for SqliteStore {
    async fn create_release(&self, r: &Release) -> Result<()> {
        sqlx::query(
            "INSERT INTO releases (id, service, version, artifact, sha256, env, status, bad_reason, created_at_ms, schema_range) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&r.id)
        .bind(&r.service)
        .bind(&r.version)
        .bind(json(&r.artifact))
        .bind(&r.sha256)
        .bind(json(&r.env))
        .bind(match r.status {
            ReleaseStatus::Ok => "ok",
            ReleaseStatus::Bad => "bad",
        })
        .bind(&r.bad_reason)
        .bind(r.created_at_ms)
        .bind(r.schema.as_ref().map(json))
        .execute(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("release {} already exists", r.id)),
            other => other,
        })?;
        Ok(())
    }

    async fn release(&self, id: &str) -> Result<Release> {
        let row = self.row_by_id("releases", "release", id).await?;
        release_from(&row)
    }

    async fn releases(&self, service: Option<&str>) -> Result<Vec<Release>> {
        let rows = sqlx::query(
            "SELECT * FROM releases WHERE ($1 IS NULL OR service = $1) ORDER BY created_at_ms, id",
        )
        .bind(service)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(release_from).collect()
    }

    async fn mark_release_bad(&self, id: &str, reason: &str) -> Result<()> {
        let done = sqlx::query("UPDATE releases SET status = 'bad', bad_reason = $2 WHERE id = $1")
            .bind(id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("release {id}")));
        }
        Ok(())
    }
}
