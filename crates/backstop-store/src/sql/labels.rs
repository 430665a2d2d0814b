//! Verdict labels: one per rollout, the latest wins.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`.

use async_trait::async_trait;
use backstop_core::label::VerdictLabel;

use super::Backend;
use crate::rows::label_from;
use crate::{LabelStore, Result};

#[async_trait]
impl LabelStore for Backend {
    async fn set_label(&self, l: &VerdictLabel) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO verdict_labels (rollout_id, service, env, label, by_actor, at_ms, note) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (rollout_id) DO UPDATE SET label = excluded.label, \
                 by_actor = excluded.by_actor, at_ms = excluded.at_ms, note = excluded.note",
            )
            .bind(&l.rollout_id)
            .bind(&l.service)
            .bind(&l.env)
            .bind(l.label.as_str())
            .bind(&l.by)
            .bind(l.at_ms)
            .bind(&l.note),
        )
        .await?;
        Ok(())
    }

    async fn labels(&self, service: Option<&str>) -> Result<Vec<VerdictLabel>> {
        let query = sqlx::query(
            "SELECT * FROM verdict_labels WHERE $1 IS NULL OR service = $1 ORDER BY at_ms, rollout_id",
        );
        self.fetch_all_as(query.bind(service), label_from).await
    }
}
