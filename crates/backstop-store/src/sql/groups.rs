//! Release groups and their runs: stored whole as JSON; a run is changed by compare-and-set on
//! its version, every write fenced (a replica that lost the run's lease changes nothing).
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`.

use async_trait::async_trait;
use backstop_core::group::{GroupRun, ReleaseGroup};

use super::Backend;
use crate::rows::{group_run_from, json, release_group_from};
use crate::{GroupStore, Result, StoreError};

#[async_trait]
impl GroupStore for Backend {
    async fn create_release_group(&self, g: &ReleaseGroup) -> Result<()> {
        let done = self
            .write(
                sqlx::query(
                    "INSERT INTO release_groups (name, created_at_ms, record) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(&g.name)
                .bind(g.created_at_ms)
                .bind(json(g)),
            )
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "release group {} already exists",
                g.name
            )));
        }
        Ok(())
    }

    async fn release_group(&self, name: &str) -> Result<ReleaseGroup> {
        self.fetch_optional_as(
            sqlx::query("SELECT * FROM release_groups WHERE name = $1").bind(name),
            release_group_from,
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("release group {name}")))
    }

    async fn release_groups(&self) -> Result<Vec<ReleaseGroup>> {
        self.fetch_all_as(
            sqlx::query("SELECT * FROM release_groups ORDER BY name"),
            release_group_from,
        )
        .await
    }

    async fn create_group_run(&self, r: &GroupRun) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO group_runs (id, group_name, env, phase, created_at_ms, version, record) \
                 VALUES ($1, $2, $3, $4, $5, 1, $6)",
            )
            .bind(&r.id)
            .bind(&r.group)
            .bind(&r.env)
            .bind(r.phase.as_str())
            .bind(r.created_at_ms)
            .bind(json(r)),
        )
        .await?;
        Ok(())
    }

    async fn group_run(&self, id: &str) -> Result<(GroupRun, i64)> {
        let row = self.row_by_id("group_runs", "group run", id).await?;
        group_run_from(&row)
    }

    async fn group_runs(&self, all: bool, group: Option<&str>) -> Result<Vec<(GroupRun, i64)>> {
        let query = sqlx::query(
            "SELECT * FROM group_runs WHERE ($1 OR phase IN ('progressing', 'recovering')) \
             AND ($2 IS NULL OR group_name = $2) ORDER BY created_at_ms, id",
        );
        self.fetch_all_as(query.bind(all).bind(group), group_run_from)
            .await
    }

    async fn update_group_run(&self, r: &GroupRun, read_version: i64) -> Result<i64> {
        let done = self
            .write(
                sqlx::query(
                    "UPDATE group_runs SET phase = $2, record = $3, version = version + 1 \
                     WHERE id = $1 AND version = $4",
                )
                .bind(&r.id)
                .bind(r.phase.as_str())
                .bind(json(r))
                .bind(read_version),
            )
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "group run {} changed meanwhile; read it again",
                r.id
            )));
        }
        Ok(read_version + 1)
    }
}
