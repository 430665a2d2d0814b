//! `backstop rollback` and `backstop recovery resume|list|show`.

use std::io::{self, Write};

use anyhow::Result;
use backstop_api::rollouts::{RollbackPreview, RollbackRequest};
use backstop_core::format_ms;
use backstop_core::model::{Recovery, RecoveryStatus};
use backstop_core::postmortem::Draft;

use crate::client::ApiArgs;
use crate::output::Render;

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// The service, as named in the config.
    service: String,
    /// The environment, as named in the service's config.
    #[arg(long)]
    env: String,
    /// Why: recorded in the audit log.
    #[arg(long, required_unless_present = "preview")]
    reason: Option<String>,
    /// Show what the rollback would undo (the releases taken away, the params written back,
    /// the migrations run down or why it would be refused) and change nothing. Exit 0, or 1
    /// when the rollback would be refused.
    #[arg(long, conflicts_with = "break_glass")]
    preview: bool,
    /// An emergency, without the releaser role: the rollback runs at once, is flagged in the
    /// audit and the recovery, notifies, and waits for a second person's review
    /// (`backstop approvals`, then `backstop approve ID --note …`).
    #[arg(long)]
    break_glass: bool,
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn rollback(a: RollbackArgs) -> Result<i32> {
    if a.preview {
        let path = crate::client::Query::new("/api/v1/rollback/preview")
            .param("service", &a.service)
            .param("env", &a.env);
        let preview: RollbackPreview = a.api.client()?.get(path.as_str()).await?;
        a.api.print(&preview);
        return Ok(i32::from(preview.refused));
    }
    let body = RollbackRequest {
        service: a.service,
        env: a.env,
        reason: a.reason.unwrap_or_default(),
    };
    let path = if a.break_glass {
        "/api/v1/rollback/break-glass"
    } else {
        "/api/v1/rollback"
    };
    let rec: Recovery = a.api.post_and_print(path, &body).await?;
    Ok(exit_code(&rec))
}

impl Render for RollbackPreview {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "rolling {} back in {}: {} → {}",
            self.service,
            self.env,
            self.from_release.as_deref().unwrap_or("nothing"),
            self.to_release.as_deref().unwrap_or("nothing")
        )?;
        for line in &self.summary {
            writeln!(w, "  - {line}")?;
        }
        if self.refused {
            writeln!(w, "the rollback would be refused")?;
        }
        Ok(())
    }
}

/// The exit code of a recovery: 0 done, 1 stopped short.
fn exit_code(rec: &Recovery) -> i32 {
    if rec.status == RecoveryStatus::Done {
        0
    } else {
        1
    }
}

#[derive(clap::Subcommand)]
pub enum RecoveryCmd {
    /// Re-run a recovery that stopped on a failed step (after fixing the cause), from that step.
    Resume {
        /// The recovery's id (`backstop recovery list` shows them).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Recent recoveries.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One recovery with its journaled steps and its post-recovery validation.
    #[command(alias = "status")]
    Show {
        /// The recovery's id (`backstop recovery list` shows them).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The post-mortem draft of a recovery (Markdown; with --output json, its numbers too):
    /// phases and durations, impact, timeline, detection, steps, deviations, action items.
    Postmortem {
        /// The recovery's id (`backstop recovery list` shows them).
        id: String,
        /// Mark it written (it stops being overdue), with --link to the final document.
        #[arg(long)]
        done: bool,
        /// Where the post-mortem is written (a URL or path).
        #[arg(long, requires = "done")]
        link: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub async fn recovery(cmd: RecoveryCmd) -> Result<i32> {
    match cmd {
        RecoveryCmd::Resume { id, api } => {
            let path = format!("/api/v1/recoveries/{id}/resume");
            let rec: Recovery = api.post_and_print(&path, &serde_json::Map::new()).await?;
            return Ok(exit_code(&rec));
        }
        RecoveryCmd::List { api } => {
            api.get_and_print::<Vec<Recovery>>("/api/v1/recoveries")
                .await?;
        }
        RecoveryCmd::Show { id, api } => {
            api.get_and_print::<Recovery>(&format!("/api/v1/recoveries/{id}"))
                .await?;
        }
        RecoveryCmd::Postmortem {
            id,
            done: false,
            api,
            ..
        } => {
            api.get_and_print::<Draft>(&format!("/api/v1/recoveries/{id}/postmortem"))
                .await?;
        }
        RecoveryCmd::Postmortem {
            id,
            done: true,
            link,
            api,
        } => {
            let body = backstop_api::dora::PostmortemDone { link };
            api.post_and_print::<Recovery>(&format!("/api/v1/recoveries/{id}/postmortem"), &body)
                .await?;
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
        if let Some(p) = &rec.postmortem
            && let Some(at) = p.done_at_ms
        {
            writeln!(
                w,
                "  post-mortem: written {} by {}{}",
                format_ms(at),
                p.done_by.as_deref().unwrap_or("?"),
                p.link
                    .as_deref()
                    .map_or(String::new(), |l| format!(": {l}"))
            )?;
        }
        if let Some(v) = &rec.validation {
            let resolved = v
                .resolved_at_ms()
                .map_or_else(String::new, |at| format!(", resolved {}", format_ms(at)));
            writeln!(
                w,
                "  validation: {} after {} attempt(s){resolved}",
                v.status, v.attempts
            )?;
            for c in &v.checks {
                writeln!(
                    w,
                    "    {} {:<7} {}: {}",
                    if c.passed { "ok  " } else { "FAIL" },
                    c.kind,
                    c.name,
                    c.detail
                )?;
            }
        }
        Ok(())
    }
}

impl Render for Draft {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(self.markdown.as_bytes())
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
