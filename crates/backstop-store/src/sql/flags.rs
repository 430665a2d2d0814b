//! Feature flags: one row per flag and environment, stored whole as JSON, changed by
//! compare-and-set on a version, every write fenced.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`.

use async_trait::async_trait;
use backstop_core::flag::FlagState;

use super::Backend;
use crate::rows::{flag_from, flag_percentage_from, json};
use crate::{FlagStore, Result, StoreError};

#[async_trait]
impl FlagStore for Backend {
    async fn flag(&self, key: &str, env: &str) -> Result<Option<(FlagState, i64)>> {
        let query = sqlx::query("SELECT * FROM flags WHERE key = $1 AND env = $2");
        self.fetch_optional_as(query.bind(key).bind(env), flag_from)
            .await
    }

    async fn flag_percentage(&self, key: &str, env: &str) -> Result<Option<u8>> {
        let query = sqlx::query("SELECT percentage FROM flags WHERE key = $1 AND env = $2");
        self.fetch_optional_as(query.bind(key).bind(env), flag_percentage_from)
            .await
    }

    async fn flags(&self) -> Result<Vec<(FlagState, i64)>> {
        self.fetch_all_as(
            sqlx::query("SELECT * FROM flags ORDER BY key, env"),
            flag_from,
        )
        .await
    }

    async fn put_flag(&self, f: &FlagState, read_version: Option<i64>) -> Result<i64> {
        let percentage = i64::from(f.percentage);
        let (done, version) = match read_version {
            None => (
                self.write(
                    sqlx::query(
                        "INSERT INTO flags (key, env, service, percentage, version, record) \
                         VALUES ($1, $2, $3, $4, 1, $5) ON CONFLICT (key, env) DO NOTHING",
                    )
                    .bind(&f.key)
                    .bind(&f.env)
                    .bind(&f.service)
                    .bind(percentage)
                    .bind(json(f)),
                )
                .await?,
                1,
            ),
            Some(v) => (
                self.write(
                    sqlx::query(
                        "UPDATE flags SET percentage = $3, record = $4, version = version + 1 \
                         WHERE key = $1 AND env = $2 AND version = $5",
                    )
                    .bind(&f.key)
                    .bind(&f.env)
                    .bind(percentage)
                    .bind(json(f))
                    .bind(v),
                )
                .await?,
                v + 1,
            ),
        };
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "flag {} in {} changed meanwhile; read it again",
                f.key, f.env
            )));
        }
        Ok(version)
    }
}
