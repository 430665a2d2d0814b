//! The audit chain: every record carries the hash of the one before it, so altering, removing or
//! reordering any stored record breaks verification from that point on.

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
    #[schema(value_type = Object)]
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
    #[schema(value_type = Object)]
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
    let mut prev = GENESIS.to_string();
    for (i, r) in records.iter().enumerate() {
        let expected_seq = i as i64 + 1;
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
