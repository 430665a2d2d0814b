//! `backstop approve` and `backstop approvals`: the second person of the two-person rule.

use std::io::{self, Write};

use anyhow::Result;
use backstop_api::rollouts::Approve;
use backstop_core::approval::{Approval, ApprovalStatus};
use backstop_core::format_ms;

use crate::client::{ApiArgs, Query, encode};
use crate::output::Render;

pub const APPROVE_HELP: &str = "Approve a request another person made, or review a break-glass \\
rollback. In a regulated environment an override (--override-freeze, --critical) waits for a \\
second person: the refused command printed the request's id. Approving runs it, on the \\
requester's behalf, both names audited. You need the role its action needs there (deployer \\
to start a rollout, releaser to promote or to review a rollback); your own request is refused.

Examples:
  backstop approvals                                   # what waits for a second person
  backstop approve apr-0193… --note 'checked with the release manager'
  backstop approve apr-0193… --note 'db outage, rollback was right'   # a break-glass review";

#[derive(clap::Args)]
pub struct ApproveArgs {
    /// The request (`backstop approvals` lists them).
    id: String,
    /// Why (required to review a break-glass rollback).
    #[arg(long)]
    note: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(clap::Args)]
pub struct ApprovalsArgs {
    /// Also approved, failed, expired and reviewed requests.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn approve(a: ApproveArgs) -> Result<i32> {
    let path = format!("/api/v1/approvals/{}/approve", encode(&a.id));
    let done: Approval = a
        .api
        .post_and_print(&path, &Approve { note: a.note })
        .await?;
    Ok(i32::from(done.status == ApprovalStatus::Failed))
}

pub async fn approvals(a: ApprovalsArgs) -> Result<i32> {
    let path = Query::new("/api/v1/approvals").param("all", a.all);
    a.api.get_and_print::<Vec<Approval>>(path.as_str()).await?;
    Ok(0)
}

impl Render for Vec<Approval> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(w, "nothing waits for a second person");
        }
        for a in self {
            a.text(w)?;
        }
        Ok(())
    }
}

impl Render for Approval {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let by = self
            .decided_by
            .as_deref()
            .map_or(String::new(), |b| format!(" by {b}"));
        writeln!(
            w,
            "{}  {:<10} {:<22} {}/{}  asked by {} {}: {}{by}",
            self.id,
            self.status.as_str().to_uppercase(),
            self.kind,
            self.service,
            self.env,
            self.requester,
            format_ms(self.created_at_ms),
            self.reason
        )?;
        if let Some(result) = &self.result {
            writeln!(w, "    result: {result}")?;
        }
        Ok(())
    }
}
