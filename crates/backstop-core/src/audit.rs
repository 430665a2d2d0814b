//! The audit chain: every record carries the hash of the one before it, so altering, removing or
//! reordering any stored record breaks verification from that point on.
//!
//! The hashes alone stop nobody who can write the database: they can be recomputed. So the
//! chain's head (the last record's sequence and hash) is signed with a key kept outside the
//! database ([`AuditKey`], HMAC-SHA256): rewriting records, or removing the tail, changes the
//! head, and a new head cannot be signed without the key. Signed checkpoints ([`Checkpoint`])
//! kept elsewhere also catch a whole database put back to an older copy.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Millis;

/// The hash the first record links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What is about to be appended: the store assigns `seq`, `prev_hash` and `hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Who or what acted: `user:alice`, `controller`, `cli`.
    pub actor: String,
    /// What was done, e.g. `rollout.start`, `recovery.step.done`.
    pub action: String,
    /// What it was done to, e.g. `rollout/0193…` or `service/checkout/prod`.
    pub target: String,
    /// Why: `api`, `judge`, `manual`, `restart`…
    pub trigger: String,
    /// The numbers behind the decision (for automatic rollbacks: the judge's report).
    #[schema(value_type = Value)]
    pub evidence: serde_json::Value,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    pub at_ms: Millis,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub trigger: String,
    #[schema(value_type = Value)]
    pub evidence: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// sha256 over a canonical, length-prefixed encoding of every field but `hash`.
/// Length prefixes make field boundaries unambiguous ("ab"+"c" never equals "a"+"bc").
pub fn record_hash(prev_hash: &str, seq: i64, at_ms: Millis, entry: &AuditEntry) -> String {
    let evidence = canonical_json(&entry.evidence);
    let mut h = Sha256::new();
    for field in [
        prev_hash,
        &seq.to_string(),
        &at_ms.to_string(),
        &entry.actor,
        &entry.action,
        &entry.target,
        &entry.trigger,
        &evidence,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// JSON with object keys sorted at every level, so the hash does not depend on how a database
/// round-trips key order.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn sort(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<_> = map.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&map[k]));
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sort).collect())
            }
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

impl AuditRecord {
    pub fn entry(&self) -> AuditEntry {
        AuditEntry {
            actor: self.actor.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            trigger: self.trigger.clone(),
            evidence: self.evidence.clone(),
        }
    }

    pub fn seal(prev_hash: &str, seq: i64, at_ms: Millis, entry: AuditEntry) -> AuditRecord {
        let hash = record_hash(prev_hash, seq, at_ms, &entry);
        AuditRecord {
            seq,
            at_ms,
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
            trigger: entry.trigger,
            evidence: entry.evidence,
            prev_hash: prev_hash.to_string(),
            hash,
        }
    }
}

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("audit chain broken at record {seq}: {reason}")]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

/// Checks records in storage order: consecutive sequence numbers from 1, each linking to the
/// previous hash, each hash matching its content.
pub fn verify_chain(records: &[AuditRecord]) -> Result<usize, ChainBreak> {
    verify_chain_after(0, GENESIS, records)
}

/// [`verify_chain`] for the records that follow record `after` (whose hash is `after_hash`):
/// what a daemon checks of the records appended since it last looked, or a partial export.
pub fn verify_chain_after(
    after: i64,
    after_hash: &str,
    records: &[AuditRecord],
) -> Result<usize, ChainBreak> {
    let mut prev = after_hash.to_string();
    for (i, r) in records.iter().enumerate() {
        let expected_seq = after + i as i64 + 1;
        if r.seq != expected_seq {
            return Err(ChainBreak {
                seq: r.seq,
                reason: format!(
                    "expected sequence number {expected_seq} (a record was removed or reordered)"
                ),
            });
        }
        if r.prev_hash != prev {
            return Err(ChainBreak {
                seq: r.seq,
                reason: "prev_hash does not match the previous record's hash".into(),
            });
        }
        let actual = record_hash(&r.prev_hash, r.seq, r.at_ms, &r.entry());
        if actual != r.hash {
            return Err(ChainBreak {
                seq: r.seq,
                reason: format!(
                    "content does not match its hash (stored {}, computed {actual})",
                    short(&r.hash)
                ),
            });
        }
        prev = r.hash.clone();
    }
    Ok(records.len())
}

/// The key that signs the chain's head and checkpoints: 32 bytes, kept outside the database
/// (`STATE_DIR/audit.key`, 0600, or `BACKSTOP_AUDIT_KEY` in hex).
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(…)")
    }
}

impl AuditKey {
    /// A key from its 32 bytes (more are ignored).
    ///
    /// # Errors
    /// Fewer than 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let key: [u8; 32] = bytes
            .get(..32)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("an audit key has 32 bytes, this one {}", bytes.len()))?;
        Ok(Self(key))
    }

    /// A key written as 64 hex digits.
    ///
    /// # Errors
    /// Not 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = hex::decode(text).map_err(|_| {
            "an audit key is 64 hex digits (e.g. from `openssl rand -hex 32`)".to_string()
        })?;
        if bytes.len() != 32 {
            return Err("an audit key is 64 hex digits (e.g. from `openssl rand -hex 32`)".into());
        }
        Self::from_bytes(&bytes)
    }

    fn mac(&self, fields: &[&str]) -> String {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        for field in fields {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// The signature of a chain head: its sequence, hash, and the break it carries forward
    /// (empty when none).
    #[must_use]
    pub fn sign_head(&self, seq: i64, hash: &str, broken: Option<&str>) -> String {
        self.mac(&[
            "backstop-audit-head-v1",
            &seq.to_string(),
            hash,
            broken.unwrap_or(""),
        ])
    }

    /// The signature of a checkpoint (a head exported at `at_ms`).
    #[must_use]
    pub fn sign_checkpoint(&self, seq: i64, hash: &str, at_ms: Millis) -> String {
        self.mac(&[
            "backstop-audit-checkpoint-v1",
            &seq.to_string(),
            hash,
            &at_ms.to_string(),
        ])
    }
}

/// Compares two hex strings in time independent of where they differ.
#[must_use]
pub fn same_signature(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The stored head of the chain: the last record's sequence and hash, its signature, and a
/// break found earlier, carried forward (signed) so that later appends cannot hide it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
    /// `None`: written without a key (before keys existed, or by a tool without one).
    pub mac: Option<String>,
    pub broken: Option<String>,
}

impl AuditHead {
    /// Whether `key` signed this head; `None` when it is not signed at all.
    #[must_use]
    pub fn signed_by(&self, key: &AuditKey) -> Option<bool> {
        let mac = self.mac.as_deref()?;
        Some(same_signature(
            mac,
            &key.sign_head(self.seq, &self.hash, self.broken.as_deref()),
        ))
    }
}

/// The action of the record a daemon appends when it first signs a chain that was kept
/// without a key; after it, an unsigned head means someone removed the signature.
pub const KEYED_ACTION: &str = "audit.keyed";

/// The action of the record a daemon appends when it finds the chain broken: its head then
/// carries the break (`AuditHead::broken`, signed) into every later head, so appending after a
/// removal or a rewrite can never make the chain look whole again. Its evidence has `reason`.
pub const BROKEN_ACTION: &str = "audit.chain_broken";

/// The head as it was at `at_ms`, signed: kept elsewhere (a file, a webhook), it proves later
/// that nothing up to `seq` was removed or rewritten since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at_ms: Millis,
    /// RFC 3339 (UTC) of `at_ms`, for people.
    pub at: String,
    /// HMAC-SHA256 of the fields above (`sign_checkpoint`), hex.
    pub mac: String,
}

impl Checkpoint {
    /// Whether `key` signed this checkpoint.
    #[must_use]
    pub fn signed_by(&self, key: &AuditKey) -> bool {
        same_signature(
            &self.mac,
            &key.sign_checkpoint(self.seq, &self.hash, self.at_ms),
        )
    }

    /// Checks `records` (the whole chain, already verified as a chain) against this
    /// checkpoint: the record at `seq` must still be there with the same hash.
    ///
    /// # Errors
    /// Where the records and the checkpoint disagree.
    pub fn covers(&self, records: &[AuditRecord]) -> Result<(), ChainBreak> {
        if self.seq == 0 {
            return Ok(());
        }
        let Some(record) = records.iter().find(|r| r.seq == self.seq) else {
            return Err(ChainBreak {
                seq: self.seq,
                reason: format!(
                    "the checkpoint of {} records record {} but the chain ends at {} (records were removed, or the database was put back to an older copy)",
                    self.at,
                    self.seq,
                    records.last().map_or(0, |r| r.seq)
                ),
            });
        };
        if record.hash != self.hash {
            return Err(ChainBreak {
                seq: self.seq,
                reason: format!(
                    "record {} differs from the checkpoint of {} (records up to it were rewritten)",
                    self.seq, self.at
                ),
            });
        }
        Ok(())
    }
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: usize) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let prev = out.last().map_or(GENESIS.to_string(), |r| r.hash.clone());
            out.push(AuditRecord::seal(
                &prev,
                i as i64 + 1,
                1_000 + i as i64,
                AuditEntry {
                    actor: "controller".into(),
                    action: format!("a{i}"),
                    target: "t".into(),
                    trigger: "test".into(),
                    evidence: json!({"b": i, "a": [1, 2]}),
                },
            ));
        }
        out
    }

    #[test]
    fn a_head_is_signed_only_by_its_key_and_over_every_field() {
        let key = AuditKey::from_bytes(&[7; 32]).unwrap();
        let other = AuditKey::from_hex(&"ab".repeat(32)).unwrap();
        let head = AuditHead {
            seq: 3,
            hash: "h".into(),
            mac: Some(key.sign_head(3, "h", None)),
            broken: None,
        };
        assert_eq!(head.signed_by(&key), Some(true));
        assert_eq!(head.signed_by(&other), Some(false));
        let moved = AuditHead {
            seq: 2,
            ..head.clone()
        };
        assert_eq!(moved.signed_by(&key), Some(false));
        let unflagged = AuditHead {
            mac: Some(key.sign_head(3, "h", Some("tampered"))),
            ..head.clone()
        };
        assert_eq!(unflagged.signed_by(&key), Some(false));
        assert_eq!(AuditHead { mac: None, ..head }.signed_by(&key), None);
        assert!(AuditKey::from_hex("abc").is_err());
        assert!(AuditKey::from_bytes(&[1; 8]).is_err());
    }

    #[test]
    fn a_checkpoint_catches_removed_and_rewritten_records() {
        let key = AuditKey::from_bytes(&[9; 32]).unwrap();
        let c = chain(5);
        let cp = Checkpoint {
            seq: 4,
            hash: c[3].hash.clone(),
            at_ms: 1,
            at: "t".into(),
            mac: key.sign_checkpoint(4, &c[3].hash, 1),
        };
        assert!(cp.signed_by(&key));
        assert!(cp.covers(&c).is_ok());
        assert!(cp.covers(&c[..3]).unwrap_err().reason.contains("removed"));
        let mut rewritten = chain(5);
        rewritten[3].hash = "x".into();
        assert!(
            cp.covers(&rewritten)
                .unwrap_err()
                .reason
                .contains("rewritten")
        );
        let forged = Checkpoint { seq: 5, ..cp };
        assert!(!forged.signed_by(&key));
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)), Ok(5));
        assert_eq!(verify_chain(&[]), Ok(0));
    }

    #[test]
    fn altered_field_is_caught_at_that_record() {
        let mut c = chain(5);
        c[2].evidence = json!({"b": 99});
        assert_eq!(verify_chain(&c).unwrap_err().seq, 3);
        let mut c = chain(5);
        c[3].actor = "mallory".into();
        assert_eq!(verify_chain(&c).unwrap_err().seq, 4);
    }

    #[test]
    fn removed_or_reordered_records_are_caught() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify_chain(&c).unwrap_err().seq, 3);
        let mut c = chain(5);
        c.swap(1, 2);
        assert!(verify_chain(&c).is_err());
        // Removing the tail cannot be seen from the records alone; the store also keeps the
        // head hash, checked separately.
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a = canonical_json(&json!({"x": 1, "y": {"b": 2, "a": 1}}));
        let b = canonical_json(&serde_json::from_str(r#"{"y":{"a":1,"b":2},"x":1}"#).unwrap());
        assert_eq!(a, b);
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let e = |actor: &str, action: &str| AuditEntry {
            actor: actor.into(),
            action: action.into(),
            target: String::new(),
            trigger: String::new(),
            evidence: json!(null),
        };
        assert_ne!(
            record_hash(GENESIS, 1, 0, &e("ab", "c")),
            record_hash(GENESIS, 1, 0, &e("a", "bc"))
        );
    }
}
