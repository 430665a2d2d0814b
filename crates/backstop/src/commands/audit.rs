//! `backstop audit list|verify`: over the daemon's API, or straight from a state folder.

use std::io::{self, Write};

use anyhow::Result;
use backstop_api::audit::AuditVerification;
use backstop_core::audit::AuditRecord;
use backstop_core::format_ms;
use backstop_store::SqliteStore;
use backstop_store::prelude::*;

use crate::client::{ApiArgs, Query, ServerArgs};
use crate::output::Render;

#[derive(clap::Subcommand)]
pub enum AuditCmd {
    /// List audit records (reads the state folder directly when its database is there).
    List {
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Verify the hash chain: exit 1 and the first broken record if anything was altered,
    /// removed or reordered.
    Verify {
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
            SqliteStore::open_existing_dir(&server.state_dir).await?,
        ));
    }
    Ok(None)
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
        AuditCmd::Verify { api } => {
            let v: AuditVerification = match local_store(&api.server).await? {
                Some(store) => backstop_server::verification(&store).await?,
                None => api.client()?.get("/api/v1/audit/verify").await?,
            };
            api.print(&v);
            Ok(if v.ok { 0 } else { 1 })
        }
    }
}

impl Render for Vec<AuditRecord> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        for r in self {
            writeln!(
                w,
                "{:>5}  {}  {:<22} {:<26} {:<40} {}",
                r.seq,
                format_ms(r.at_ms),
                r.actor,
                r.action,
                r.target,
                r.trigger
            )?;
        }
        Ok(())
    }
}

impl Render for AuditVerification {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.ok {
            writeln!(w, "audit chain intact: {} records verified", self.records)
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
