//! What `/metrics` reports of decisions, counted by the database: a scrape reads a handful of
//! grouped counts, never every rollout row, and every replica of one database reports the same.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend` and their own [`super::json_text`] (how each reads a field of a JSON column).

use async_trait::async_trait;

use super::Backend;
use crate::aggregates::{DecisionCounts, DurationCounts, TIME_BUCKETS_S};
use crate::rows::Columns;
use crate::{MetricsStore, Result};

/// The first event of `kind` of each rollout: `(rollout_id, at)`.
fn first(kind: &str) -> String {
    format!(
        "(SELECT rollout_id, MIN(at_ms) AS at FROM events WHERE kind = '{kind}' GROUP BY rollout_id)"
    )
}

/// Bucket counts, count and sum (seconds) of the time from the first `from` event to the first
/// `to` event of each rollout that has both.
fn durations_sql(from: &str, to: &str) -> String {
    let mut sql = String::from(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(d), 0) AS BIGINT) AS sum_ms",
    );
    for (i, le) in TIME_BUCKETS_S.iter().enumerate() {
        let le_ms = (le * 1000.0) as i64;
        sql.push_str(&format!(
            ", CAST(COALESCE(SUM(CASE WHEN d <= {le_ms} THEN 1 ELSE 0 END), 0) AS BIGINT) AS b{i}"
        ));
    }
    sql.push_str(&format!(
        " FROM (SELECT t.at - f.at AS d FROM {} f JOIN {} t ON t.rollout_id = f.rollout_id WHERE t.at >= f.at) durations",
        first(from),
        first(to)
    ));
    sql
}

#[async_trait]
impl MetricsStore for Backend {
    async fn decision_counts(&self) -> Result<DecisionCounts> {
        let pool = &self.pool;
        let rollouts_by_phase = sqlx::query(
            "SELECT phase, CAST(COUNT(*) AS BIGINT) AS n FROM rollouts GROUP BY phase ORDER BY phase",
        )
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok((r.col::<String>("phase")?, r.col::<i64>("n")?)))
        .collect::<Result<Vec<_>>>()?;
        let judge = super::json_text("verdict", "judge");
        let verdict = super::json_text("verdict", "verdict");
        let verdicts = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE({judge}, '') AS judge, COALESCE({verdict}, '') AS verdict, \
             CAST(COUNT(*) AS BIGINT) AS n FROM rollouts \
             WHERE verdict IS NOT NULL AND phase IN ('promoted', 'failed', 'recovering', 'recovered', 'paused') \
             GROUP BY 1, 2 ORDER BY 1, 2"
        )))
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.col::<String>("judge")?,
                r.col::<String>("verdict")?,
                r.col::<i64>("n")?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
        let recoveries = sqlx::query(
            "SELECT trigger, status, CAST(COUNT(*) AS BIGINT) AS n FROM recoveries \
             GROUP BY trigger, status ORDER BY trigger, status",
        )
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.col::<String>("trigger")?,
                r.col::<String>("status")?,
                r.col::<i64>("n")?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
        let breaker_trips: i64 =
            sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM breaker_trips")
                .fetch_one(pool)
                .await?
                .col("n")?;
        let sla_breaches: i64 = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM events WHERE kind = 'rollback_sla.breached'",
        )
        .fetch_one(pool)
        .await?
        .col("n")?;
        let mut times = Vec::new();
        for (from, to) in [
            ("canary.first_request", "rollout.failed"),
            ("canary.first_request", "traffic.restored"),
        ] {
            let row = sqlx::query(sqlx::AssertSqlSafe(durations_sql(from, to)))
                .fetch_one(pool)
                .await?;
            let mut at_most = Vec::with_capacity(TIME_BUCKETS_S.len());
            for i in 0..TIME_BUCKETS_S.len() {
                at_most.push(u64::try_from(row.col::<i64>(&format!("b{i}"))?).unwrap_or(0));
            }
            times.push(DurationCounts {
                count: u64::try_from(row.col::<i64>("n")?).unwrap_or(0),
                sum_s: row.col::<i64>("sum_ms")? as f64 / 1000.0,
                at_most,
            });
        }
        let mut by = Vec::new();
        for sql in [
            "SELECT phase AS k, CAST(COUNT(*) AS BIGINT) AS n FROM group_runs GROUP BY phase ORDER BY phase",
            "SELECT phase AS k, CAST(COUNT(*) AS BIGINT) AS n FROM ships GROUP BY phase ORDER BY phase",
            "SELECT action AS k, CAST(COUNT(*) AS BIGINT) AS n FROM alerts GROUP BY action ORDER BY action",
        ] {
            by.push(
                sqlx::query(sql)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|r| Ok((r.col::<String>("k")?, r.col::<i64>("n")?)))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        let alerts_by_action = by.pop().unwrap_or_default();
        let ships_by_phase = by.pop().unwrap_or_default();
        let group_runs_by_phase = by.pop().unwrap_or_default();
        let time_to_restore = times.pop().unwrap_or_default();
        let time_to_detect = times.pop().unwrap_or_default();
        Ok(DecisionCounts {
            rollouts_by_phase,
            verdicts,
            recoveries,
            breaker_trips,
            sla_breaches,
            time_to_detect,
            time_to_restore,
            group_runs_by_phase,
            ships_by_phase,
            alerts_by_action,
        })
    }
}
