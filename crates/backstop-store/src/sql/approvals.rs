//! Requests for a second person (approvals before, reviews after).
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`.

use async_trait::async_trait;
use backstop_core::Millis;
use backstop_core::approval::{Approval, ApprovalStatus};

use super::Backend;
use crate::rows::{approval_from, json};
use crate::{ApprovalStore, Result, StoreError};

#[async_trait]
impl ApprovalStore for Backend {
    async fn create_approval(&self, a: &Approval) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO approvals (id, kind, service, env, request, requester, reason, created_at_ms, expires_at_ms, status, decided_by, decided_at_ms, note, result) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(&a.id)
            .bind(a.kind.as_str())
            .bind(&a.service)
            .bind(&a.env)
            .bind(json(&a.request))
            .bind(&a.requester)
            .bind(&a.reason)
            .bind(a.created_at_ms)
            .bind(a.expires_at_ms)
            .bind(a.status.as_str())
            .bind(&a.decided_by)
            .bind(a.decided_at_ms)
            .bind(&a.note)
            .bind(a.result.as_ref().map(json)),
        )
        .await?;
        Ok(())
    }

    async fn approval(&self, id: &str) -> Result<Approval> {
        let row = self.row_by_id("approvals", "approval request", id).await?;
        approval_from(&row)
    }

    async fn approvals(&self, include_closed: bool) -> Result<Vec<Approval>> {
        let query = sqlx::query(
            "SELECT * FROM approvals WHERE $1 OR status IN ('pending', 'to_review') \
             ORDER BY created_at_ms, id",
        );
        self.fetch_all_as(query.bind(include_closed), approval_from)
            .await
    }

    async fn decide_approval(
        &self,
        id: &str,
        from: ApprovalStatus,
        to: ApprovalStatus,
        by: &str,
        at: Millis,
        note: Option<&str>,
        result: Option<&serde_json::Value>,
    ) -> Result<Approval> {
        let row = sqlx::query(
            "UPDATE approvals SET status = $3, decided_by = $4, decided_at_ms = $5, \
             note = COALESCE($6, note), result = COALESCE($7, result) \
             WHERE id = $1 AND status = $2 RETURNING *",
        )
        .bind(id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(by)
        .bind(at)
        .bind(note)
        .bind(result.map(json))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => approval_from(&row),
            None => {
                let now = self.approval(id).await?;
                Err(StoreError::Conflict(format!(
                    "approval request {id} is {}, not {from}",
                    now.status
                )))
            }
        }
    }
}
