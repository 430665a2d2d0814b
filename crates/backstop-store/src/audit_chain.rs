//! What both backends share about the audit chain: the key that signs its head, the next head
//! an append writes, and verification.

use std::sync::RwLock;

use backstop_core::audit::{
    AuditHead, AuditKey, AuditRecord, BROKEN_ACTION, ChainBreak, KEYED_ACTION,
};

use crate::{AuditStore, Result, StoreError};

/// The audit key a store signs heads with, set once the daemon has read it
/// ([`AuditStore::set_audit_key`]); a store without one writes unsigned heads.
#[derive(Default)]
pub(crate) struct KeySlot(RwLock<Option<AuditKey>>);

impl KeySlot {
    pub(crate) fn set(&self, key: AuditKey) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(key);
    }

    pub(crate) fn get(&self) -> Option<AuditKey> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The head written with `record`, after `prev`. A break is carried forward from `prev`, or
/// found in it: a head the key did not sign, or one left unsigned after the chain was keyed
/// (only the daemon's own [`KEYED_ACTION`] record may follow an unsigned head: that is how a
/// chain kept before keys existed gets signed).
pub(crate) fn next_head(
    prev: Option<&AuditHead>,
    record: &AuditRecord,
    key: Option<&AuditKey>,
) -> AuditHead {
    let found = match (prev, key) {
        (Some(p), Some(k)) if p.broken.is_none() => match p.signed_by(k) {
            Some(true) => None,
            Some(false) => Some(format!(
                "record {} was the head but this key did not sign it (records were rewritten or removed, or another key signed it); found before record {}",
                p.seq, record.seq
            )),
            None if record.action == KEYED_ACTION => None,
            None => Some(format!(
                "record {} was the head without a signature (it was removed); found before record {}",
                p.seq, record.seq
            )),
        },
        _ => None,
    };
    let declared = (record.action == BROKEN_ACTION).then(|| {
        record.evidence["reason"]
            .as_str()
            .unwrap_or("the daemon found the chain broken")
            .to_string()
    });
    let broken = prev.and_then(|p| p.broken.clone()).or(found).or(declared);
    AuditHead {
        seq: record.seq,
        hash: record.hash.clone(),
        mac: key.map(|k| k.sign_head(record.seq, &record.hash, broken.as_deref())),
        broken,
    }
}

/// How a verification went when the chain holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    /// The head is signed by the key given.
    Valid,
    /// No key was given: only the hashes were checked.
    Unchecked,
    /// A chain kept before keys existed; the daemon signs it at its next start.
    NotYetSigned,
}

/// A chain that holds: its length and what is known of its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub records: usize,
    pub signature: Signature,
    /// The chain holds a daemon's `audit.keyed` record: from it on, heads are signed.
    pub keyed: bool,
}

/// What to verify against.
#[derive(Debug, Clone, Default)]
pub struct Expect<'a> {
    /// Checks the head's signature with this key.
    pub key: Option<&'a AuditKey>,
    /// The store has been used by a daemon (which appends at every start): an empty chain means
    /// it was emptied.
    pub used: bool,
    /// An unsigned head may be a chain kept before keys existed (when the key is new to this
    /// store, or comes from the environment), rather than a removed signature. Even then, a
    /// chain holding an `audit.keyed` record must be signed.
    pub may_be_unsigned: bool,
    /// A checkpoint kept elsewhere: the chain must still hold the record it names, unchanged.
    pub checkpoint: Option<&'a backstop_core::audit::Checkpoint>,
}

/// Verifies the whole chain plus its stored head (hashes only; see [`verify_audit_with`]).
pub async fn verify_audit(
    store: &(impl AuditStore + ?Sized),
) -> Result<std::result::Result<usize, ChainBreak>> {
    Ok(verify_audit_with(store, &Expect::default())
        .await?
        .map(|v| v.records))
}

/// Verifies the whole chain, its stored head, the head's signature with `expect.key`, and a
/// checkpoint.
///
/// The records and the head are separate reads, and a running daemon keeps appending: the head
/// is read before and after the records, and the read is repeated until both agree. Every append
/// moves the head forward, so equal heads mean no append landed in between and the records seen
/// end where the head says, unless records were removed from the end.
pub async fn verify_audit_with(
    store: &(impl AuditStore + ?Sized),
    expect: &Expect<'_>,
) -> Result<std::result::Result<Verified, ChainBreak>> {
    const ATTEMPTS: usize = 50;
    for _ in 0..ATTEMPTS {
        let before = store.audit_head().await?;
        let records = store.audit(0, i64::MAX).await?;
        let head = store.audit_head().await?;
        if before != head {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        return Ok(check(&records, head.as_ref(), expect));
    }
    Err(StoreError::Conflict(format!(
        "the audit log kept growing while it was read ({ATTEMPTS} attempts); try again"
    )))
}

/// The checks of [`verify_audit_with`] on records and the head read together (also what an
/// exported file is checked with).
pub fn check(
    records: &[AuditRecord],
    head: Option<&AuditHead>,
    expect: &Expect<'_>,
) -> std::result::Result<Verified, ChainBreak> {
    let verified = backstop_core::audit::verify_chain(records)?;
    if records.is_empty() && head.is_none() && expect.used {
        return Err(ChainBreak {
            seq: 0,
            reason: "the chain and its head are gone, but this store has been used (a daemon records its every start): the audit log was emptied".into(),
        });
    }
    let last = records.last().map(|r| (r.seq, r.hash.as_str()));
    let stored = head.map(|h| (h.seq, h.hash.as_str()));
    if stored != last {
        let seq = head.map_or(0, |h| h.seq);
        let reason = match head {
            None => "records are stored without a head (the head was removed)".to_string(),
            Some(_) => format!(
                "the chain head records {seq} records but {} are stored (records were removed from the end)",
                records.len()
            ),
        };
        return Err(ChainBreak { seq, reason });
    }
    if let Some(cp) = expect.checkpoint {
        if let Some(key) = expect.key
            && !cp.signed_by(key)
        {
            return Err(ChainBreak {
                seq: cp.seq,
                reason: "the checkpoint's signature does not match this key (the checkpoint was altered, or another key made it)".into(),
            });
        }
        cp.covers(records)?;
    }
    let keyed = records.iter().any(|r| r.action == KEYED_ACTION);
    let holds = |signature| Verified {
        records: verified,
        signature,
        keyed,
    };
    let Some(head) = head else {
        return Ok(holds(if expect.key.is_some() {
            Signature::Valid
        } else {
            Signature::Unchecked
        }));
    };
    if let Some(broken) = &head.broken {
        return Err(ChainBreak {
            seq: head.seq,
            reason: format!("the daemon found the chain broken earlier: {broken}"),
        });
    }
    let Some(key) = expect.key else {
        return Ok(holds(Signature::Unchecked));
    };
    match head.signed_by(key) {
        Some(true) => Ok(holds(Signature::Valid)),
        Some(false) => Err(ChainBreak {
            seq: head.seq,
            reason: "the head's signature does not match: records were rewritten or removed (hashes recomputed), or another key signed it".into(),
        }),
        None if keyed || !expect.may_be_unsigned => Err(ChainBreak {
            seq: head.seq,
            reason: "the head is not signed although this store's audit key signs every head (its signature was removed)".into(),
        }),
        None => Ok(holds(Signature::NotYetSigned)),
    }
}
