//! `backstop gate` (every pre-deployment check, for pipelines) and `backstop freeze`.

use std::io::{self, Write};

use anyhow::Result;
use backstop_api::freezes::{CreateFreeze, EndFreeze, FreezeList};
use backstop_api::gate::GateReport;
use backstop_core::format_ms;
use backstop_core::model::Freeze;

use crate::client::{ApiArgs, Query, encode};
use crate::output::Render;

/// Exceptions to the gate, each needing `--reason` and audited when a rollout acts on them.
#[derive(Debug, Clone, clap::Args)]
pub struct GateFlags {
    /// Deploy during a scheduled or manual freeze. Needs --reason; audited; refused in a
    /// regulated environment (a second approver cannot be told apart yet).
    #[arg(long)]
    pub override_freeze: bool,
    /// A critical change (e.g. a fix-forward): passes the automatic freeze while a recovery is
    /// active in the environment. Needs --reason; audited.
    #[arg(long)]
    pub critical: bool,
    /// Why: required with --override-freeze or --critical.
    #[arg(long, required_if_eq_any = [("override_freeze", "true"), ("critical", "true")])]
    pub reason: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(
    about = "Run every pre-deployment check for a release (for pipelines): exit 0 go, 1 blocked.",
    long_about = "Run every pre-deployment check for a release without starting anything: \
the release exists and is not marked bad; the environment's last known good artifact is backed up \
and its sha256 re-verifies (so a rollback can run it); the candidate's backup verifies; no freeze \
is in effect (scheduled windows from the config, manual freezes); no circuit breaker is open; the \
stable version passes its health checks (it is not crashed or crash-looping); no \
rollout is running in the environment; no recovery is active there (automatic freeze). Every check \
is reported, not just the first that fails.

Exit codes: 0 go, 1 blocked (every reason printed), 2 bad input (unknown service, environment or \
release), 3 daemon unreachable.

Examples:
  backstop gate checkout --env prod --release 1.4.2
  backstop gate checkout --env prod --release 1.4.2 --output json | jq '.checks[] | select(.ok | not)'
  backstop gate checkout --env prod --release 1.4.3 --critical --reason 'fix-forward for INC-42'"
)]
pub struct GateArgs {
    /// The service, as named in the config.
    pub service: String,
    /// The environment, as named in the service's config.
    #[arg(long)]
    pub env: String,
    /// Version of the release (or `service@version`).
    #[arg(long)]
    pub release: String,
    #[command(flatten)]
    pub flags: GateFlags,
    #[command(flatten)]
    pub api: ApiArgs,
}

pub async fn gate(a: GateArgs) -> Result<i32> {
    let path = Query::new("/api/v1/gate")
        .param("service", &a.service)
        .param("env", &a.env)
        .param("release", &a.release)
        .flag("critical", a.flags.critical)
        .flag("override_freeze", a.flags.override_freeze)
        .param_if("reason", a.flags.reason.as_ref());
    let report: GateReport = a.api.get_and_print(path.as_str()).await?;
    Ok(if report.go { 0 } else { 1 })
}

impl Render for GateReport {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let r = self;
        writeln!(
            w,
            "{}: {} into {}/{}",
            if r.go { "GO" } else { "BLOCKED" },
            r.release_id,
            r.service,
            r.env
        )?;
        for c in &r.checks {
            let mark = match (c.ok, c.overridden) {
                (true, false) => "ok  ",
                (true, true) => "ok* ",
                (false, _) => "FAIL",
            };
            writeln!(w, "  {mark} {:<17} {}", c.name, c.reason)?;
        }
        if r.checks.iter().any(|c| c.overridden) {
            writeln!(
                w,
                "  (* passed by an override or as a critical change; audited when a rollout uses it)"
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum FreezeCmd {
    /// Freeze deployments into an environment (and/or of one service) now.
    #[command(
        long_about = "Start a manual freeze: the gate refuses rollouts into its scope until \
it ends (after --for, or `backstop freeze end ID`). Stored and audited. Give --env, --service or both.

Examples:
  backstop freeze start --env prod --reason 'incident INC-42' --for 2h
  backstop freeze start --env prod --service checkout --reason 'payment provider migration'"
    )]
    Start {
        /// The environment, as named in the service's config.
        #[arg(long, required_unless_present = "service")]
        env: Option<String>,
        /// The service, as named in the config.
        #[arg(long)]
        service: Option<String>,
        /// Why (shown in every refusal).
        #[arg(long)]
        reason: String,
        /// Ends by itself after this long (e.g. 2h, 30m); default: until ended.
        #[arg(long = "for")]
        length: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Manual freezes in effect and the config's scheduled windows (UTC).
    List {
        /// Include ended and expired manual freezes.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End a manual freeze (audited).
    End {
        /// The freeze's id (`backstop freeze list` shows them).
        id: String,
        /// Why, in words: kept in the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn scope(service: Option<&str>, env: Option<&str>) -> String {
    match (service, env) {
        (Some(s), Some(e)) => format!("{s}/{e}"),
        (Some(s), None) => format!("{s}/*"),
        (None, Some(e)) => format!("*/{e}"),
        (None, None) => "*".into(),
    }
}

impl Render for Freeze {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let f = self;
        let until = match (f.ended_at_ms, f.until_ms) {
            (Some(e), _) => format!("ended {}", format_ms(e)),
            (None, Some(u)) => format!("until {}", format_ms(u)),
            (None, None) => "until ended".into(),
        };
        writeln!(
            w,
            "{}  {:<20} {}  by {}  {}",
            f.id,
            scope(f.service.as_deref(), f.env.as_deref()),
            until,
            f.actor,
            f.reason
        )
    }
}

pub async fn freeze(cmd: FreezeCmd) -> Result<i32> {
    match cmd {
        FreezeCmd::Start {
            env,
            service,
            reason,
            length,
            api,
        } => {
            let body = CreateFreeze {
                service,
                env,
                reason,
                length,
            };
            api.post_and_print::<Freeze>("/api/v1/freezes", &body)
                .await?;
        }
        FreezeCmd::List { all, api } => {
            let path = Query::new("/api/v1/freezes").param("all", all);
            api.get_and_print::<FreezeList>(path.as_str()).await?;
        }
        FreezeCmd::End { id, reason, api } => {
            let path = format!("/api/v1/freezes/{}/end", encode(&id));
            api.post_and_print::<Freeze>(&path, &EndFreeze { reason })
                .await?;
        }
    }
    Ok(0)
}

impl Render for FreezeList {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.manual.is_empty() {
            writeln!(w, "no manual freeze in effect")?;
        }
        for f in &self.manual {
            f.text(w)?;
        }
        for window in &self.scheduled {
            let when = match (window.in_effect, window.from_ms, window.until_ms) {
                (true, _, Some(u)) => format!("IN EFFECT until {}", format_ms(u)),
                (_, Some(next), _) => format!("next {}", format_ms(next)),
                _ => "past".into(),
            };
            writeln!(
                w,
                "scheduled  {:<20} {}  ({})  {}",
                scope(Some(&window.service), window.env.as_deref()),
                when,
                window.window,
                window.reason
            )?;
        }
        Ok(())
    }
}
