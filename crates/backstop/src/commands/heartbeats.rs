//! `backstop heartbeat NAME` (a batch job's ping) and `backstop heartbeats` (which are late).

use std::io::{self, Write};

use anyhow::Result;
use backstop_api::heartbeats::HeartbeatView;
use backstop_core::format_ms;
use backstop_core::postmortem::human;

use crate::client::{ApiArgs, encode};
use crate::output::Render;

const HEARTBEAT_HELP: &str = "\
Pings a heartbeat: a batch job calls this after each successful run. Declare it under its
service in backstop.yaml:

  heartbeats:
    - {name: nightly-export, every: 25h}      # the longest expected time between two pings

A heartbeat not pinged within `every` is late (`backstop heartbeats`); after a rollback, a
late heartbeat of the service keeps the recovery from being resolved. Needs the deployer role
in the heartbeat's environment (a scoped token for the job: `backstop token create`).

Examples:
  ./export.sh && backstop heartbeat nightly-export
  curl -X POST -H \"Authorization: Bearer $TOKEN\" $BACKSTOP_SERVER/api/v1/heartbeats/nightly-export";

#[derive(clap::Args)]
#[command(long_about = HEARTBEAT_HELP)]
pub struct HeartbeatArgs {
    /// The heartbeat's name.
    name: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(clap::Args)]
pub struct HeartbeatsArgs {
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn heartbeat(args: HeartbeatArgs) -> Result<i32> {
    let path = format!("/api/v1/heartbeats/{}", encode(&args.name));
    args.api
        .post_and_print::<HeartbeatView>(&path, &serde_json::json!({}))
        .await?;
    Ok(0)
}

/// Exit 0 when none is late or never pinged, else 1 (for monitoring scripts).
pub async fn heartbeats(args: HeartbeatsArgs) -> Result<i32> {
    let all: Vec<HeartbeatView> = args.api.get_and_print("/api/v1/heartbeats").await?;
    Ok(i32::from(all.iter().any(|h| h.status != "ok")))
}

impl Render for HeartbeatView {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let last = match (self.last_at_ms, &self.last_by) {
            (Some(at), Some(by)) => {
                format!("last ping {} by {by} ({} pings)", format_ms(at), self.count)
            }
            _ => "never pinged".to_owned(),
        };
        writeln!(
            w,
            "{:<24} {:<5} {}/{}  every {}  {last}",
            self.name,
            self.status,
            self.service,
            self.env.as_deref().unwrap_or("*"),
            human(self.every_ms)
        )
    }
}

impl Render for Vec<HeartbeatView> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(
                w,
                "no heartbeat is declared (`heartbeats:` under a service)"
            );
        }
        for h in self {
            h.text(w)?;
        }
        Ok(())
    }
}
