//! Environments and their instances.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`, and their own `begin_write` and locks.

use async_trait::async_trait;
use backstop_core::model::{EnvironmentState, InstanceRecord};

use super::Backend;
use crate::rows::{env_from, instance_from};
use crate::{EnvironmentStore, Result};

/// Inserts or replaces an environment's state.
pub(super) async fn write_environment<'e>(
    db: impl sqlx::Executor<'e, Database = super::Db>,
    s: &EnvironmentState,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO environments (service, env, lkg_release_id, stable_instance_id, previous_lkg_release_id) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (service, env) DO UPDATE SET \
         lkg_release_id = excluded.lkg_release_id, stable_instance_id = excluded.stable_instance_id, \
         previous_lkg_release_id = excluded.previous_lkg_release_id",
    )
    .bind(&s.service)
    .bind(&s.env)
    .bind(&s.lkg_release_id)
    .bind(&s.stable_instance_id)
    .bind(&s.previous_lkg_release_id)
    .execute(db)
    .await?;
    Ok(())
}

#[async_trait]
impl EnvironmentStore for Backend {
    async fn environment(&self, service: &str, env: &str) -> Result<Option<EnvironmentState>> {
        let query = sqlx::query("SELECT * FROM environments WHERE service = $1 AND env = $2");
        self.fetch_optional_as(query.bind(service).bind(env), env_from)
            .await
    }

    async fn put_environment(&self, s: &EnvironmentState) -> Result<()> {
        let mut tx = self.begin_write().await?;
        write_environment(&mut *tx, s).await?;
        Ok(tx.commit().await?)
    }

    async fn environments(&self) -> Result<Vec<EnvironmentState>> {
        let query = sqlx::query("SELECT * FROM environments ORDER BY service, env");
        self.fetch_all_as(query, env_from).await
    }

    async fn put_instance(&self, i: &InstanceRecord) -> Result<()> {
        self.write(sqlx::query(
            "INSERT INTO instances (id, service, env, release_id, pid, port, started_at_ms, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET \
             pid = excluded.pid, port = excluded.port, started_at_ms = excluded.started_at_ms, state = excluded.state",
        )
        .bind(&i.id)
        .bind(&i.service)
        .bind(&i.env)
        .bind(&i.release_id)
        .bind(i64::from(i.pid))
        .bind(i64::from(i.port))
        .bind(i.started_at_ms)
        .bind(i.state.as_str()))
        .await?;
        Ok(())
    }

    async fn instance(&self, id: &str) -> Result<InstanceRecord> {
        let row = self.row_by_id("instances", "instance", id).await?;
        instance_from(&row)
    }

    async fn running_instances(&self) -> Result<Vec<InstanceRecord>> {
        let query =
            sqlx::query("SELECT * FROM instances WHERE state = 'running' ORDER BY started_at_ms");
        self.fetch_all_as(query, instance_from).await
    }
}
