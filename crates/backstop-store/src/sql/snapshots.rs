//! Config snapshots (versioned per service and environment) and rollout safeguards.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`, and their own `begin_write` and locks.

use async_trait::async_trait;
use backstop_core::snapshot::{ConfigSnapshot, RolloutSafeguards};

use super::Backend;
use crate::rows::{json, safeguards_from, snapshot_from};
use crate::{Result, SnapshotStore, StoreError};

async fn latest_version_after(
    tx: &mut sqlx::Transaction<'_, super::Db>,
    service: &str,
    env: &str,
) -> Result<i64> {
    let next: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM config_snapshots WHERE service = $1 AND env = $2",
    )
    .bind(service)
    .bind(env)
    .fetch_one(&mut **tx)
    .await?;
    Ok(next)
}

#[async_trait]
impl SnapshotStore for Backend {
    async fn record_config_snapshot(&self, s: &ConfigSnapshot) -> Result<(ConfigSnapshot, bool)> {
        // Versions are numbered by reading the latest: recordings take turns.
        let mut tx = self.begin_write().await?;
        Self::lock_snapshot_versions(&mut tx).await?;
        let latest = sqlx::query(
            "SELECT * FROM config_snapshots WHERE service = $1 AND env = $2 ORDER BY version DESC LIMIT 1",
        )
        .bind(&s.service)
        .bind(&s.env)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| snapshot_from(&row))
        .transpose()?;
        if let Some(latest) = latest.filter(|l| l.manifest == s.manifest) {
            tx.commit().await?;
            return Ok((latest, false));
        }
        let mut new = s.clone();
        new.version = latest_version_after(&mut tx, &s.service, &s.env).await?;
        sqlx::query(
            "INSERT INTO config_snapshots (service, env, version, manifest, created_at_ms, actor, reason, rollout_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&new.service)
        .bind(&new.env)
        .bind(new.version)
        .bind(&new.manifest)
        .bind(new.created_at_ms)
        .bind(&new.actor)
        .bind(&new.reason)
        .bind(&new.rollout_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((new, true))
    }

    async fn config_snapshots(&self, service: &str, env: &str) -> Result<Vec<ConfigSnapshot>> {
        let query = sqlx::query(
            "SELECT * FROM config_snapshots WHERE service = $1 AND env = $2 ORDER BY version DESC",
        );
        self.fetch_all_as(query.bind(service).bind(env), snapshot_from)
            .await
    }

    async fn config_snapshot(
        &self,
        service: &str,
        env: &str,
        version: i64,
    ) -> Result<ConfigSnapshot> {
        let row = sqlx::query(
            "SELECT * FROM config_snapshots WHERE service = $1 AND env = $2 AND version = $3",
        )
        .bind(service)
        .bind(env)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!("config snapshot {version} of {service}/{env}"))
        })?;
        snapshot_from(&row)
    }

    async fn put_rollout_safeguards(&self, s: &RolloutSafeguards) -> Result<()> {
        self.write(sqlx::query(
            "INSERT INTO rollout_safeguards (rollout_id, config_snapshot, baseline, captured_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&s.rollout_id)
        .bind(s.config_snapshot)
        .bind(s.baseline.as_ref().map(json))
        .bind(s.captured_at_ms))
        .await?;
        Ok(())
    }

    async fn rollout_safeguards(&self, rollout_id: &str) -> Result<Option<RolloutSafeguards>> {
        let query = sqlx::query("SELECT * FROM rollout_safeguards WHERE rollout_id = $1");
        self.fetch_optional_as(query.bind(rollout_id), safeguards_from)
            .await
    }
}
