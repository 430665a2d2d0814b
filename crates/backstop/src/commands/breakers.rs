//! `backstop breaker status|reset`: the global circuit breaker.

use std::io::{self, Write};

use anyhow::Result;
use backstop_api::breakers::BreakerReset;
use backstop_core::format_ms;
use backstop_core::model::BreakerTrip;

use crate::client::ApiArgs;
use crate::output::Render;

#[derive(clap::Subcommand)]
pub enum BreakerCmd {
    /// Open circuit-breaker trips (every progressive rollout in their scope is paused).
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Close a trip: rollouts it paused resume.
    Reset {
        /// `env:<name>` or `all`.
        #[arg(long)]
        scope: String,
        /// Why, in words: kept in the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub async fn breaker(cmd: BreakerCmd) -> Result<i32> {
    match cmd {
        BreakerCmd::Status { api } => {
            api.get_and_print::<Vec<BreakerTrip>>("/api/v1/breakers")
                .await?;
        }
        BreakerCmd::Reset { scope, reason, api } => {
            let body = BreakerReset { scope, reason };
            api.post_and_print::<BreakerTrip>("/api/v1/breakers/reset", &body)
                .await?;
        }
    }
    Ok(0)
}

impl Render for Vec<BreakerTrip> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(w, "no circuit breaker is open");
        }
        for t in self {
            writeln!(
                w,
                "OPEN  {}  since {}  failures: {}",
                t.scope,
                format_ms(t.tripped_at_ms),
                t.failures
            )?;
        }
        Ok(())
    }
}

/// A trip just reset.
impl Render for BreakerTrip {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "breaker {} reset; paused rollouts in scope resume",
            self.scope
        )
    }
}
