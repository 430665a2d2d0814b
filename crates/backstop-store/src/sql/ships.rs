//! Ships: stored whole as JSON; changed by compare-and-set on their version, every write fenced
//! (a replica that lost the ship's lease changes nothing).
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`.

use async_trait::async_trait;
use backstop_core::ship::Ship;

use super::Backend;
use crate::rows::{conflict_as, json, ship_from};
use crate::{Result, ShipStore, StoreError};

#[async_trait]
impl ShipStore for Backend {
    async fn create_ship(&self, s: &Ship) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO ships (id, service, phase, created_at_ms, version, record) \
                 VALUES ($1, $2, $3, $4, 1, $5)",
            )
            .bind(&s.id)
            .bind(&s.service)
            .bind(s.phase.as_str())
            .bind(s.created_at_ms)
            .bind(json(s)),
        )
        .await
        .map_err(conflict_as(|| {
            format!(
                "{} is already being shipped; one ship of a service at a time",
                s.service
            )
        }))?;
        Ok(())
    }

    async fn ship(&self, id: &str) -> Result<(Ship, i64)> {
        let row = self.row_by_id("ships", "ship", id).await?;
        ship_from(&row)
    }

    async fn ships(&self, all: bool, service: Option<&str>) -> Result<Vec<(Ship, i64)>> {
        let query = sqlx::query(
            "SELECT * FROM ships WHERE ($1 OR phase IN ('shipping', 'rolling_back')) \
             AND ($2 IS NULL OR service = $2) ORDER BY created_at_ms, id",
        );
        self.fetch_all_as(query.bind(all).bind(service), ship_from)
            .await
    }

    async fn update_ship(&self, s: &Ship, read_version: i64) -> Result<i64> {
        let done = self
            .write(
                sqlx::query(
                    "UPDATE ships SET phase = $2, record = $3, version = version + 1 \
                     WHERE id = $1 AND version = $4",
                )
                .bind(&s.id)
                .bind(s.phase.as_str())
                .bind(json(s))
                .bind(read_version),
            )
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "ship {} changed meanwhile; read it again",
                s.id
            )));
        }
        Ok(read_version + 1)
    }
}
