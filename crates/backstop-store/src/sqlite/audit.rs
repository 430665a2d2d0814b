//! The audit hash chain and its head.

use async_trait::async_trait;
use backstop_core::Millis;
use backstop_core::audit::{AuditEntry, AuditRecord, GENESIS};

use super::SqliteStore;
use crate::rows::{audit_from, head_from};
use crate::{AuditStore, Result};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, at: Millis, entry: &AuditEntry) -> Result<AuditRecord> {
        let _guard = self.audit_lock.lock().await;
        let mut tx = self.begin_write().await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (prev_seq, prev_hash) = match head {
            Some(row) => head_from(&row)?,
            None => (0, GENESIS.to_string()),
        };
        let record = AuditRecord::seal(&prev_hash, prev_seq + 1, at, entry.clone());
        sqlx::query(
            "INSERT INTO audit (seq, at_ms, actor, action, target, trigger, evidence, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(record.seq)
        .bind(record.at_ms)
        .bind(&record.actor)
        .bind(&record.action)
        .bind(&record.target)
        .bind(&record.trigger)
        .bind(backstop_core::audit::canonical_json(&record.evidence))
        .bind(&record.prev_hash)
        .bind(&record.hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(record.seq)
        .bind(&record.hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn audit(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        let query = sqlx::query("SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2");
        self.fetch_all_as(query.bind(after).bind(limit), audit_from)
            .await
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>> {
        let query = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1");
        self.fetch_optional_as(query, head_from).await
    }
}
