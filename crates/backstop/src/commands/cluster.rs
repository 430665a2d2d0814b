//! `backstop cluster status`: the daemons (replicas) sharing the store, from their heartbeats.

use std::io::{self, Write};

use anyhow::Result;
use backstop_api::cluster::ClusterStatus;
use backstop_core::format_ms;

use crate::client::ApiArgs;
use crate::output::Render;

#[derive(clap::Subcommand)]
pub enum ClusterCmd {
    /// The replicas sharing this daemon's store: id, address, live or gone (its heartbeat,
    /// every 2 s, lapsed for 10 s), last heartbeat, and what each drives; then the agents of
    /// the config, reachable or not from the replica that answers, and the environments each
    /// hosts.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub async fn cluster(cmd: ClusterCmd) -> Result<i32> {
    let ClusterCmd::Status { api } = cmd;
    api.get_and_print::<ClusterStatus>("/api/v1/cluster")
        .await?;
    Ok(0)
}

impl Render for ClusterStatus {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.replicas.is_empty() {
            writeln!(w, "no replica has beaten yet")?;
        }
        for r in &self.replicas {
            writeln!(
                w,
                "{:<5} {}  {}  pid {} on {}  last heartbeat {}  leases: {}",
                r.state,
                r.id,
                r.address,
                r.pid,
                r.host,
                format_ms(r.last_heartbeat),
                if r.leases.is_empty() {
                    "none".to_string()
                } else {
                    r.leases.join(", ")
                }
            )?;
        }
        for a in &self.agents {
            let hosts = if a.environments.is_empty() {
                "no environment".to_string()
            } else {
                a.environments.join(", ")
            };
            match &a.error {
                None => writeln!(w, "agent {} ({}) reachable: {hosts}", a.name, a.address)?,
                Some(e) => writeln!(
                    w,
                    "agent {} ({}) UNREACHABLE: {hosts} serve their last routes and cannot be changed: {e}",
                    a.name, a.address
                )?,
            }
        }
        Ok(())
    }
}
