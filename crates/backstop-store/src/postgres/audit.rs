//! The audit hash chain and its head. Appends are serialized by a transaction-scoped advisory
//! lock, across connections and processes alike, before the head is read: two appends never
//! link to the same record, also before the first record (when there is no head row to lock).

use async_trait::async_trait;
use backstop_core::Millis;
use backstop_core::audit::{AuditEntry, AuditHead, AuditKey, AuditRecord, GENESIS};

use super::{AUDIT_LOCK, PostgresStore};
use crate::audit_chain::next_head;
use crate::rows::{audit_from, head_from};
use crate::{AuditStore, Result};

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, at: Millis, entry: &AuditEntry) -> Result<AuditRecord> {
        let mut tx = self.begin_write().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_LOCK)
            .execute(&mut *tx)
            .await?;
        let mut prev = sqlx::query("SELECT * FROM audit_head WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| head_from(&row))
            .transpose()?;
        if prev.is_none() {
            // Records without a head: the head row was removed. The chain goes on from its
            // last record (unsigned, so the next head records the break) instead of every
            // append failing on a sequence number taken.
            prev = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| head_from(&row))
                .transpose()?;
        }
        let (prev_seq, prev_hash) = prev
            .as_ref()
            .map_or((0, GENESIS), |h| (h.seq, h.hash.as_str()));
        let record = AuditRecord::seal(prev_hash, prev_seq + 1, at, entry.clone());
        let head = next_head(prev.as_ref(), &record, self.audit_key.get().as_ref());
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
            "INSERT INTO audit_head (id, seq, hash, mac, broken) VALUES (1, $1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, \
             mac = excluded.mac, broken = excluded.broken",
        )
        .bind(head.seq)
        .bind(&head.hash)
        .bind(&head.mac)
        .bind(&head.broken)
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

    async fn audit_head(&self) -> Result<Option<AuditHead>> {
        let query = sqlx::query("SELECT * FROM audit_head WHERE id = 1");
        self.fetch_optional_as(query, head_from).await
    }

    fn set_audit_key(&self, key: AuditKey) {
        self.audit_key.set(key);
    }
}
