//! The audit chain's guard in the daemon: its key, the check at start, and the checks of what
//! every replica appends after.
//!
//! The key signs the chain's head ([`backstop_store::audit_chain`]); it comes from
//! `BACKSTOP_AUDIT_KEY` (64 hex digits: replicas on one database must share it) or from
//! `STATE_DIR/audit.key` (64 hex digits, 0600, made on first start). A break found here is
//! logged, reported by `/metrics` (`backstop_audit_chain_ok 0`) and written into the chain
//! itself (an `audit.chain_broken` record whose head carries the break on), so appending after
//! it never makes the chain look whole again.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use backstop_api::audit::AuditVerification;
use backstop_core::audit::{AuditEntry, AuditHead, AuditKey, BROKEN_ACTION, KEYED_ACTION};
use backstop_store::prelude::*;
use backstop_store::{Expect, Signature, StoreError, verify_audit_with};
use serde_json::json;

use crate::Ctx;

pub const KEY_FILE: &str = "audit.key";
pub const KEY_ENV: &str = "BACKSTOP_AUDIT_KEY";

/// How often the daemon checks the records appended since it last looked.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// The audit key and where it came from.
pub struct LoadedKey {
    pub key: AuditKey,
    /// The key file was there before: a daemon ran in this folder (never for a key from the
    /// environment).
    pub existed: bool,
    /// From `BACKSTOP_AUDIT_KEY`.
    pub from_env: bool,
}

/// The daemon's key: `BACKSTOP_AUDIT_KEY`, else `STATE_DIR/audit.key` (made when missing:
/// 64 hex digits, so `BACKSTOP_AUDIT_KEY=$(cat STATE_DIR/audit.key)` hands it to replicas).
///
/// # Errors
/// A variable or file that is not 64 hex digits; a key file that cannot be made.
pub fn load_key(state_dir: &Path) -> Result<LoadedKey> {
    if let Ok(text) = std::env::var(KEY_ENV) {
        let key = AuditKey::from_hex(&text).map_err(|e| anyhow::anyhow!("{KEY_ENV}: {e}"))?;
        // A key from the environment says nothing of whether this store was used before.
        return Ok(LoadedKey {
            key,
            existed: false,
            from_env: true,
        });
    }
    let path = state_dir.join(KEY_FILE);
    if let Some(key) = read_key_file(&path)? {
        return Ok(LoadedKey {
            key,
            existed: true,
            from_env: false,
        });
    }
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut f) => {
            f.write_all(format!("{}\n", hex::encode(raw)).as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing the audit key {}", path.display()))?;
            let key = AuditKey::from_bytes(&raw).map_err(|e| anyhow::anyhow!(e))?;
            Ok(LoadedKey {
                key,
                existed: false,
                from_env: false,
            })
        }
        // Another process made it first: that one is the key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let key = read_key_file(&path)?
                .with_context(|| format!("the audit key {} vanished", path.display()))?;
            Ok(LoadedKey {
                key,
                existed: true,
                from_env: false,
            })
        }
        Err(e) => Err(e).with_context(|| format!("creating the audit key {}", path.display())),
    }
}

fn read_key_file(path: &Path) -> Result<Option<AuditKey>> {
    match std::fs::read_to_string(path) {
        Ok(text) => AuditKey::from_hex(&text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading the audit key {}", path.display())),
    }
}

/// The key a command reading a state folder checks signatures with, if it can have one:
/// `BACKSTOP_AUDIT_KEY`, else `STATE_DIR/audit.key` when it exists (never made here).
///
/// # Errors
/// A variable or file that holds no key.
pub fn read_key(state_dir: &Path) -> Result<Option<AuditKey>> {
    if let Ok(text) = std::env::var(KEY_ENV) {
        return AuditKey::from_hex(&text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{KEY_ENV}: {e}"));
    }
    read_key_file(&state_dir.join(KEY_FILE))
}

/// Whether a daemon has used this store: it holds releases or environments. (A daemon also
/// records its every start in the chain, so such a store with an empty chain was emptied.)
pub async fn store_has_run(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(!store.environments().await?.is_empty() || !store.releases(None).await?.is_empty())
}

/// What the daemon last found of the chain, for `/metrics`.
#[derive(Default)]
pub struct ChainStatus(Mutex<Option<Checked>>);

/// The head up to which the chain held, or the break found.
#[derive(Clone)]
enum Checked {
    Holds(Option<AuditHead>),
    Broken,
}

impl ChainStatus {
    /// `Some(true)` while the chain holds, `Some(false)` once it was found broken, `None`
    /// before the first check.
    pub fn ok(&self) -> Option<bool> {
        self.get().map(|c| matches!(c, Checked::Holds(_)))
    }

    fn get(&self) -> Option<Checked> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, checked: Checked) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(checked);
    }
}

/// The whole chain checked with the key, as the API and the CLI report it.
///
/// # Errors
/// The store could not be read.
pub async fn verification(
    store: &dyn Store,
    expect: &Expect<'_>,
) -> Result<AuditVerification, StoreError> {
    let head = store.audit_head().await?;
    let records = head.as_ref().map_or(0, |h| h.seq as usize);
    Ok(match verify_audit_with(store, expect).await? {
        Ok(v) => AuditVerification {
            ok: true,
            records: v.records,
            broken_at: None,
            reason: None,
            signature: signature_name(v.signature).into(),
            checkpoint: expect.checkpoint.map(|c| c.seq),
        },
        Err(b) => AuditVerification {
            ok: false,
            records,
            broken_at: Some(b.seq),
            reason: Some(b.reason),
            signature: if expect.key.is_some() {
                "checked".into()
            } else {
                "unchecked".into()
            },
            checkpoint: expect.checkpoint.map(|c| c.seq),
        },
    })
}

fn signature_name(s: Signature) -> &'static str {
    match s {
        Signature::Valid => "valid",
        Signature::Unchecked => "unchecked",
        Signature::NotYetSigned => "not_yet_signed",
    }
}

/// At start, before anything appends: the store signs with `key` from now on, and the chain
/// is checked whole. A chain without the `audit.keyed` record (new, or kept before keys
/// existed) gets it: from it on every head must be signed. A broken chain is reported and the
/// break written into the chain.
///
/// An unsigned head is taken for a chain kept before keys existed only when the key file was
/// made just now or the key comes from the environment; with a key file that was already there,
/// it is a removed signature.
///
/// # Errors
/// The store could not be read or written.
pub async fn at_start(store: &dyn Store, loaded: &LoadedKey, status: &ChainStatus) -> Result<()> {
    store.set_audit_key(loaded.key.clone());
    let used = loaded.existed || store_has_run(store).await?;
    let expect = Expect {
        key: Some(&loaded.key),
        used,
        may_be_unsigned: loaded.from_env || !loaded.existed,
        checkpoint: None,
    };
    match verify_audit_with(store, &expect).await? {
        Ok(v) => {
            if !v.keyed {
                append(
                    store,
                    KEYED_ACTION,
                    json!({"records_before": v.records, "reason": "every head of the chain is signed with the audit key from here on"}),
                )
                .await?;
            }
            tracing::info!(
                records = v.records,
                "Audit chain verified; its head is signed with the audit key."
            );
        }
        Err(b) => {
            broken(store, &b.reason, b.seq).await?;
            status.set(Checked::Broken);
            return Ok(());
        }
    }
    status.set(Checked::Holds(store.audit_head().await?));
    Ok(())
}

/// Checks what was appended since the last check (every [`CHECK_EVERY`], until `stop`).
pub async fn keep_checking(ctx: std::sync::Arc<Ctx>, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        if let Err(e) = check_since_last(&ctx).await {
            tracing::debug!(
                error = format!("{e:#}"),
                "Could not check the audit chain now; next time."
            );
        }
    }
}

/// The records after the head last found whole link to it and end at a head the key signed.
/// Anything else is confirmed by a whole verification before it is called a break (another
/// replica may have appended while this one read).
async fn check_since_last(ctx: &Ctx) -> Result<()> {
    let Some(Checked::Holds(last)) = ctx.caches.audit_chain.get() else {
        return Ok(());
    };
    let store = ctx.store.as_ref();
    let before = store.audit_head().await?;
    if before == last {
        return Ok(());
    }
    let (after, after_hash) = last
        .as_ref()
        .map_or((0, backstop_core::audit::GENESIS), |h| {
            (h.seq, h.hash.as_str())
        });
    let records = store.audit(after, i64::MAX).await?;
    let head = store.audit_head().await?;
    let holds = before == head
        && head.as_ref().is_some_and(|h| {
            h.broken.is_none()
                && h.signed_by(&ctx.audit_key) == Some(true)
                && records
                    .last()
                    .is_some_and(|r| r.seq == h.seq && r.hash == h.hash)
        })
        && backstop_core::audit::verify_chain_after(after, after_hash, &records).is_ok();
    if holds {
        ctx.caches.audit_chain.set(Checked::Holds(head));
        return Ok(());
    }
    let expect = Expect {
        key: Some(&ctx.audit_key),
        used: true,
        may_be_unsigned: false,
        checkpoint: None,
    };
    match verify_audit_with(store, &expect).await? {
        Ok(_) => ctx
            .caches
            .audit_chain
            .set(Checked::Holds(store.audit_head().await?)),
        Err(b) => {
            broken(store, &b.reason, b.seq).await?;
            ctx.caches.audit_chain.set(Checked::Broken);
        }
    }
    Ok(())
}

/// Reports a break and writes it into the chain, once (a head already carrying a break needs
/// no second record).
async fn broken(store: &dyn Store, reason: &str, seq: i64) -> Result<()> {
    tracing::error!(
        broken_at = seq,
        reason,
        "The audit chain is broken: records were removed or rewritten, or the key is not the one that signed it. The break is recorded in the chain; run `backstop audit verify`."
    );
    let carried = store
        .audit_head()
        .await?
        .is_some_and(|h| h.broken.is_some());
    if !carried {
        append(
            store,
            BROKEN_ACTION,
            json!({"broken_at": seq, "reason": format!("record {seq}: {reason}")}),
        )
        .await?;
    }
    Ok(())
}

async fn append(store: &dyn Store, action: &str, evidence: serde_json::Value) -> Result<()> {
    use backstop_core::clock::Clock;
    let now = crate::SystemClock.now_ms();
    store
        .append_audit(
            now,
            &AuditEntry {
                actor: "controller".into(),
                action: action.into(),
                target: "audit".into(),
                trigger: "verification".into(),
                evidence,
            },
        )
        .await?;
    Ok(())
}

/// A signed checkpoint of `head` (of an empty chain: sequence 0) taken at `now`.
#[must_use]
pub fn checkpoint(
    head: Option<&AuditHead>,
    key: &AuditKey,
    now: backstop_core::Millis,
) -> backstop_core::audit::Checkpoint {
    let (seq, hash) = head.map_or((0, backstop_core::audit::GENESIS.to_string()), |h| {
        (h.seq, h.hash.clone())
    });
    backstop_core::audit::Checkpoint {
        mac: key.sign_checkpoint(seq, &hash, now),
        seq,
        hash,
        at_ms: now,
        at: backstop_core::format_ms(now),
    }
}
