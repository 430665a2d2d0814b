//! `backstop audit list|verify|checkpoint|export`: over the daemon's API, or straight from a
//! state folder (read-only).

use std::io::{self, Write};

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use backstop_api::audit::{AuditVerification, VerifyRequest};
use backstop_core::audit::{AuditKey, AuditRecord, Checkpoint};
use backstop_core::clock::Clock;
use backstop_core::format_ms;
use backstop_server::audit_guard;
use backstop_store::prelude::*;
use backstop_store::{Expect, SqliteStore};

use crate::client::{ApiArgs, Query, ServerArgs};
use crate::output::Render;

const VERIFY_HELP: &str = "Verify the audit chain: every record's hash and link, the head \
against the last record, and the head's signature with the audit key (STATE_DIR/audit.key or \
BACKSTOP_AUDIT_KEY). Exit 1 and the first broken record if anything was altered, removed, \
reordered or rewritten with recomputed hashes.

Reads the state folder's database read-only when it is there (nothing is written, a read-only \
copy works), else asks the daemon.

Examples:
  backstop audit verify
  backstop audit verify --checkpoint /mnt/worm/backstop-2026-12-04.json   # nothing before it removed or rewritten
  backstop audit verify --file audit-2026-12.jsonl                        # an export, on its own";

#[derive(clap::Subcommand)]
pub enum AuditCmd {
    /// List audit records (reads the state folder directly when its database is there).
    List {
        /// Only records after this sequence number (for paging).
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// How many records to show.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Verify the chain, its signed head, and maybe a checkpoint or an export: exit 1 if
    /// anything was altered, removed, reordered or rewritten.
    #[command(long_about = VERIFY_HELP)]
    Verify {
        /// A checkpoint kept elsewhere (`backstop audit checkpoint`): the record it names must
        /// still be in the chain, unchanged.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Verify an export (`backstop audit export`) instead of the store.
        #[arg(long, conflicts_with = "checkpoint")]
        file: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Export the chain's head, signed with the audit key, to keep elsewhere (a file on other
    /// storage, a webhook): later `audit verify --checkpoint` proves nothing up to it was
    /// removed or rewritten, even if the whole database is put back to an older copy.
    Checkpoint {
        /// Also write it to this file (atomically).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also POST it (JSON) to this URL.
        #[arg(long)]
        webhook: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Write the whole chain as JSON Lines, ending with a signed checkpoint line: the file
    /// verifies on its own (`audit verify --file`).
    Export {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Opens the state folder read-only when it holds a database; `None` means "ask the daemon".
async fn local_store(server: &ServerArgs) -> Result<Option<SqliteStore>> {
    if server
        .state_dir
        .join(backstop_store::sqlite::DB_FILE)
        .exists()
    {
        return Ok(Some(
            SqliteStore::open_read_only_dir(&server.state_dir).await?,
        ));
    }
    Ok(None)
}

/// A JSON file given on the command line, with errors naming it (and the line and column).
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(format!(
            "{}:{}:{}: not a {what}: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

pub async fn audit(cmd: AuditCmd) -> Result<i32> {
    match cmd {
        AuditCmd::List { after, limit, api } => {
            let records: Vec<AuditRecord> = match local_store(&api.server).await? {
                Some(store) => store.audit(after, limit).await?,
                None => {
                    let path = Query::new("/api/v1/audit")
                        .param("after", after)
                        .param("limit", limit);
                    api.client()?.get(path.as_str()).await?
                }
            };
            api.print(&records);
            Ok(0)
        }
        AuditCmd::Verify {
            checkpoint,
            file: Some(file),
            api,
        } => {
            debug_assert!(checkpoint.is_none());
            let key = audit_guard::read_key(&api.server.state_dir)?;
            let v = verify_export(&file, key.as_ref())?;
            api.print(&v);
            Ok(if v.ok { 0 } else { 1 })
        }
        AuditCmd::Verify {
            checkpoint,
            file: None,
            api,
        } => {
            let checkpoint: Option<Checkpoint> = checkpoint
                .map(|p| read_json(&p, "checkpoint"))
                .transpose()?;
            let v: AuditVerification = match local_store(&api.server).await? {
                Some(store) => {
                    let key = audit_guard::read_key(&api.server.state_dir)?;
                    // A daemon made the key file at its first start, signed the chain then,
                    // and records its every start.
                    let key_file = api.server.state_dir.join(audit_guard::KEY_FILE).exists();
                    let used = key_file || audit_guard::store_has_run(&store).await?;
                    let expect = Expect {
                        key: key.as_ref(),
                        used,
                        may_be_unsigned: std::env::var_os(audit_guard::KEY_ENV).is_some()
                            || !key_file,
                        checkpoint: checkpoint.as_ref(),
                    };
                    backstop_server::verification(&store, &expect).await?
                }
                None => {
                    let body = VerifyRequest { checkpoint };
                    api.client()?.post("/api/v1/audit/verify", &body).await?
                }
            };
            api.print(&v);
            Ok(if v.ok { 0 } else { 1 })
        }
        AuditCmd::Checkpoint { out, webhook, api } => {
            let cp = take_checkpoint(&api).await?;
            if let Some(path) = &out {
                let text = serde_json::to_string_pretty(&cp)? + "\n";
                backstop_drivers::config_files::write_atomic(path, text.as_bytes(), 0o644)?;
            }
            if let Some(url) = &webhook {
                let resp = reqwest::Client::new()
                    .post(url)
                    .json(&cp)
                    .timeout(std::time::Duration::from_secs(10))
                    .send()
                    .await
                    .with_context(|| format!("sending the checkpoint to {url}"))?;
                if !resp.status().is_success() {
                    anyhow::bail!("the webhook {url} answered {}", resp.status());
                }
            }
            api.print(&cp);
            Ok(0)
        }
        AuditCmd::Export { out, api } => {
            // The checkpoint first: the records exported are then exactly those up to it.
            let cp = take_checkpoint(&api).await?;
            let records: Vec<AuditRecord> = match local_store(&api.server).await? {
                Some(store) => store.audit(0, cp.seq).await?,
                None => fetch_records(&api, cp.seq).await?,
            };
            let mut text = String::new();
            for r in &records {
                text.push_str(&serde_json::to_string(r)?);
                text.push('\n');
            }
            text.push_str(&serde_json::to_string(
                &serde_json::json!({"checkpoint": cp}),
            )?);
            text.push('\n');
            match &out {
                Some(path) => {
                    backstop_drivers::config_files::write_atomic(path, text.as_bytes(), 0o644)?;
                    eprintln!(
                        "{} records and a signed checkpoint written to {}",
                        records.len(),
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(0)
        }
    }
}

/// The head signed: by the daemon, or here with the state folder's key (a stopped daemon).
async fn take_checkpoint(api: &ApiArgs) -> Result<Checkpoint> {
    if let Some(store) = local_store(&api.server).await? {
        if let Some(key) = audit_guard::read_key(&api.server.state_dir)? {
            let head = store.audit_head().await?;
            let now = backstop_server::SystemClock.now_ms();
            return Ok(audit_guard::checkpoint(head.as_ref(), &key, now));
        }
        anyhow::bail!(
            "no audit key in {} nor {}: a checkpoint is signed with it (or run this against the daemon with --server)",
            api.server.state_dir.join(audit_guard::KEY_FILE).display(),
            audit_guard::KEY_ENV
        );
    }
    api.client()?.get("/api/v1/audit/checkpoint").await
}

/// Records 1..=`upto` from the daemon, page by page.
async fn fetch_records(api: &ApiArgs, upto: i64) -> Result<Vec<AuditRecord>> {
    let client = api.client()?;
    let mut out: Vec<AuditRecord> = Vec::new();
    while out.last().map_or(0, |r| r.seq) < upto {
        let after = out.last().map_or(0, |r| r.seq);
        let path = Query::new("/api/v1/audit")
            .param("after", after)
            .param("limit", (upto - after).min(100_000));
        let page: Vec<AuditRecord> = client.get(path.as_str()).await?;
        if page.is_empty() {
            break;
        }
        out.extend(page.into_iter().filter(|r| r.seq <= upto));
    }
    Ok(out)
}

/// An export checked on its own: the records link (from genesis, or from the first record's
/// link for a partial export), and the closing checkpoint names the last record and is signed
/// by `key` (when there is one to check with).
fn verify_export(path: &Path, key: Option<&AuditKey>) -> Result<AuditVerification> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the export {}", path.display()))?;
    let mut records = Vec::new();
    let mut checkpoint: Option<Checkpoint> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |e: serde_json::Error| {
            anyhow::anyhow!(format!(
                "{}:{}:{}: not an audit record: {e}",
                path.display(),
                i + 1,
                e.column()
            ))
        };
        let value: serde_json::Value = serde_json::from_str(line).map_err(bad)?;
        if let Some(cp) = value.get("checkpoint") {
            checkpoint = Some(serde_json::from_value(cp.clone()).map_err(bad)?);
        } else if checkpoint.is_some() {
            return Ok(broken(
                records.len(),
                0,
                format!(
                    "line {}: records after the closing checkpoint (lines were added)",
                    i + 1
                ),
            ));
        } else {
            records.push(serde_json::from_value::<AuditRecord>(value).map_err(bad)?);
        }
    }
    let (after, after_hash) = match records.first() {
        Some(first) if first.seq > 1 => (first.seq - 1, first.prev_hash.clone()),
        _ => (0, backstop_core::audit::GENESIS.to_string()),
    };
    if let Err(b) = backstop_core::audit::verify_chain_after(after, &after_hash, &records) {
        return Ok(broken(records.len(), b.seq, b.reason));
    }
    let Some(cp) = checkpoint else {
        return Ok(broken(
            records.len(),
            records.last().map_or(0, |r| r.seq),
            "no closing checkpoint line: the end of the export may have been cut".into(),
        ));
    };
    let last = records
        .last()
        .map_or((0, backstop_core::audit::GENESIS), |r| {
            (r.seq, r.hash.as_str())
        });
    if (cp.seq, cp.hash.as_str()) != last {
        return Ok(broken(
            records.len(),
            cp.seq,
            format!(
                "the closing checkpoint names record {} but the export ends at record {} (records were removed or changed)",
                cp.seq, last.0
            ),
        ));
    }
    let signature = match key {
        Some(key) if !cp.signed_by(key) => {
            return Ok(broken(records.len(), cp.seq, "the closing checkpoint's signature does not match the audit key (the export was rewritten, or another key made it)".into()));
        }
        Some(_) => "valid",
        None => "unchecked",
    };
    Ok(AuditVerification {
        ok: true,
        records: records.len(),
        broken_at: None,
        reason: None,
        signature: signature.into(),
        checkpoint: Some(cp.seq),
    })
}

fn broken(records: usize, seq: i64, reason: String) -> AuditVerification {
    AuditVerification {
        ok: false,
        records,
        broken_at: Some(seq),
        reason: Some(reason),
        signature: "checked".into(),
        checkpoint: None,
    }
}

impl Render for Checkpoint {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "checkpoint: record {} ({}) at {}, signed {}",
            self.seq,
            &self.hash[..self.hash.len().min(12)],
            self.at,
            &self.mac[..self.mac.len().min(12)]
        )
    }
}

impl Render for Vec<AuditRecord> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|r| {
                vec![
                    r.seq.to_string(),
                    format_ms(r.at_ms),
                    r.actor.clone(),
                    r.action.clone(),
                    r.target.clone(),
                    r.trigger.clone(),
                ]
            })
            .collect();
        crate::output::table(
            w,
            &[">SEQ", "AT", "ACTOR", "ACTION", "TARGET", "TRIGGER"],
            &rows,
        )
    }
}

impl Render for AuditVerification {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.ok {
            let signature = match self.signature.as_str() {
                "valid" => "head signature valid",
                "not_yet_signed" => "not signed yet (the daemon signs it at its next start)",
                _ => "signature NOT checked (no audit key here: only the hashes)",
            };
            let checkpoint = self.checkpoint.map_or(String::new(), |s| {
                format!(", checkpoint at record {s} holds")
            });
            writeln!(
                w,
                "audit chain intact: {} records verified, {signature}{checkpoint}",
                self.records
            )
        } else {
            writeln!(
                w,
                "audit chain BROKEN at record {}: {}",
                self.broken_at.unwrap_or(0),
                self.reason.clone().unwrap_or_default()
            )
        }
    }
}
