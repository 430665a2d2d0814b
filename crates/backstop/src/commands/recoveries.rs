//! `backstop rollback` and `backstop recovery resume|list|show`.

use std::io::{self, Write};

use anyhow::Result;
use backstop_api::rollouts::RollbackRequest;
use backstop_core::format_ms;
use backstop_core::model::{Recovery, RecoveryStatus};

use crate::client::{Client, ServerArgs};
use crate::output::{OutputArgs, Render};

#[derive(clap::Args)]
pub struct RollbackArgs {
    service: String,
    #[arg(long)]
    env: String,
    /// Why: recorded in the audit log.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn rollback(a: RollbackArgs) -> Result<i32> {
    let rec: Recovery = Client::new(&a.server)?
        .post(
            "/api/v1/rollback",
            &RollbackRequest {
                service: a.service,
                env: a.env,
                reason: a.reason,
            },
        )
        .await?;
    a.out.output.print(&rec);
    Ok(if rec.status == RecoveryStatus::Done {
        0
    } else {
        1
    })
}

#[derive(clap::Subcommand)]
pub enum RecoveryCmd {
    /// Re-run a recovery that stopped on a failed step (after fixing the cause), from that step.
    Resume {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Recent recoveries.
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// One recovery with its journaled steps.
    #[command(alias = "status")]
    Show {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
}

pub async fn recovery(cmd: RecoveryCmd) -> Result<i32> {
    match cmd {
        RecoveryCmd::Resume { id, server, out } => {
            let rec: Recovery = Client::new(&server)?
                .post(
                    &format!("/api/v1/recoveries/{id}/resume"),
                    &serde_json::Map::new(),
                )
                .await?;
            out.output.print(&rec);
            return Ok(if rec.status == RecoveryStatus::Done {
                0
            } else {
                1
            });
        }
        RecoveryCmd::List { server, out } => {
            let list: Vec<Recovery> = Client::new(&server)?.get("/api/v1/recoveries").await?;
            out.output.print(&list);
        }
        RecoveryCmd::Show { id, server, out } => {
            let rec: Recovery = Client::new(&server)?
                .get(&format!("/api/v1/recoveries/{id}"))
                .await?;
            out.output.print(&rec);
        }
    }
    Ok(0)
}

impl Render for Recovery {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let rec = self;
        writeln!(
            w,
            "recovery {}  {}/{}  {}  ({})",
            rec.id, rec.service, rec.env, rec.status, rec.reason
        )?;
        for s in &rec.steps {
            writeln!(
                w,
                "  {}. {:<18} {:<8} attempts {}  key {}",
                s.index + 1,
                s.step.name(),
                s.status.as_str(),
                s.attempts,
                s.idempotency_key
            )?;
        }
        Ok(())
    }
}

impl Render for Vec<Recovery> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        for rec in self {
            writeln!(
                w,
                "{}  {}/{}  {}  {}  {}",
                rec.id,
                rec.service,
                rec.env,
                rec.status,
                format_ms(rec.created_at_ms),
                rec.reason
            )?;
        }
        Ok(())
    }
}
