//! The global circuit breaker: its trips and the failures it counts.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`, and their own `begin_write` and locks.

use async_trait::async_trait;
use backstop_core::Millis;
use backstop_core::breaker::TripScope;
use backstop_core::event::EventKind;
use backstop_core::model::BreakerTrip;

use super::Backend;
use crate::rows::{Columns, json, trip_from};
use crate::{BreakerStore, Result, StoreError};

#[async_trait]
impl BreakerStore for Backend {
    async fn failures_since(&self, since: Millis) -> Result<Vec<(Millis, String)>> {
        let query = sqlx::query(Backend::FAILURES_SINCE)
            .bind(since)
            .bind(EventKind::JudgeFail.as_str())
            .bind(EventKind::RolloutFailed.as_str());
        self.fetch_all_as(query, |r| Ok((r.col("at_ms")?, r.col("env")?)))
            .await
    }

    async fn create_trip(&self, t: &BreakerTrip) -> Result<()> {
        self.write(sqlx::query(
            "INSERT INTO breaker_trips (id, scope, tripped_at_ms, failures, reset_at_ms, reset_by, reset_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.id)
        .bind(t.scope.to_string())
        .bind(t.tripped_at_ms)
        .bind(json(&t.failures))
        .bind(t.reset_at_ms)
        .bind(&t.reset_by)
        .bind(&t.reset_reason))
        .await?;
        Ok(())
    }

    async fn open_trips(&self) -> Result<Vec<BreakerTrip>> {
        let query = sqlx::query(
            "SELECT * FROM breaker_trips WHERE reset_at_ms IS NULL ORDER BY tripped_at_ms",
        );
        self.fetch_all_as(query, trip_from).await
    }

    async fn reset_trip(
        &self,
        scope: &TripScope,
        by: &str,
        reason: &str,
        at: Millis,
    ) -> Result<BreakerTrip> {
        let row = sqlx::query(
            "UPDATE breaker_trips SET reset_at_ms = $2, reset_by = $3, reset_reason = $4 \
             WHERE scope = $1 AND reset_at_ms IS NULL RETURNING *",
        )
        .bind(scope.to_string())
        .bind(at)
        .bind(by)
        .bind(reason)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::no_open_trip(scope))?;
        trip_from(&row)
    }
}
