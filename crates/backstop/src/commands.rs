//! The CLI's nouns and verbs over the daemon's API (and, for audit, over a state folder).

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use backstop_api::audit::AuditVerification;
use backstop_api::breakers::BreakerReset;
use backstop_api::releases::CreateRelease;
use backstop_api::rollouts::{
    CreateRollout, PromoteRequest, Reason, RollbackRequest, RolloutDetail,
};
use backstop_core::audit::AuditRecord;
use backstop_core::format_ms;
use backstop_core::model::{BreakerTrip, Phase, Recovery, Release, Rollout};
use backstop_store::{SqliteStore, Store};
use serde::Serialize;

use crate::client::{Client, ServerArgs};
use crate::output::{Output, OutputArgs, Render};

#[derive(clap::Subcommand)]
pub enum ReleaseCmd {
    /// Register a release: its artifact is hashed (sha256) and kept with it.
    Create {
        service: String,
        #[arg(long)]
        version: String,
        /// An executable file: hashed by content; `{artifact}` in run.command becomes its path.
        #[arg(long, conflicts_with = "command", required_unless_present = "command")]
        file: Option<PathBuf>,
        /// A command line: hashed as text; `{artifact}` in run.command becomes this command.
        #[arg(long)]
        command: Option<String>,
        /// Environment for this release, KEY=VALUE (repeatable), added to run.env.
        #[arg(long = "env", value_parser = parse_key_value)]
        env: Vec<(String, String)>,
        /// The migration versions this release runs on, MIN..MAX or one version (e.g.
        /// `0003..0005`). A rollback to it then checks the database's applied migrations first:
        /// nothing to do inside the range; proven downs run when the database is past it; the
        /// rollback is refused, with the options, when the way back is not proven safe.
        #[arg(long, value_parser = parse_schema_range)]
        schema: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List releases.
    List {
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show one release (`service@version`).
    Show {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
}

fn parse_schema_range(s: &str) -> Result<String, String> {
    backstop_core::schema::SchemaRange::parse(s).map(|r| r.to_string())
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    Ok((k.to_string(), v.to_string()))
}

pub async fn release(cmd: ReleaseCmd) -> Result<i32> {
    match cmd {
        ReleaseCmd::Create {
            service,
            version,
            file,
            command,
            env,
            schema,
            server,
            out,
        } => {
            let file = file
                .map(|f| std::path::absolute(&f).with_context(|| format!("--file {}", f.display())))
                .transpose()?;
            let body = CreateRelease {
                service,
                version,
                file: file.map(|f| f.display().to_string()),
                command,
                env: env.into_iter().collect(),
                schema,
            };
            let r: Release = Client::new(&server)?
                .post("/api/v1/releases", &body)
                .await?;
            out.output.print(&Registered(r));
            Ok(0)
        }
        ReleaseCmd::List {
            service,
            server,
            out,
        } => {
            let path = match &service {
                Some(s) => format!("/api/v1/releases?service={s}"),
                None => "/api/v1/releases".into(),
            };
            let list: Vec<Release> = Client::new(&server)?.get(&path).await?;
            out.output.print(&list);
            Ok(0)
        }
        ReleaseCmd::Show { id, server, out } => {
            let r: Release = Client::new(&server)?
                .get(&format!("/api/v1/releases/{id}"))
                .await?;
            out.output.print(&r);
            Ok(0)
        }
    }
}

/// A release just registered.
#[derive(Serialize)]
#[serde(transparent)]
struct Registered(Release);

impl Render for Registered {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w, "registered {} (sha256 {})", self.0.id, self.0.sha256)
    }
}

impl Render for Vec<Release> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "{:<28} {:<6} {:<14} CREATED",
            "RELEASE", "STATUS", "SHA256"
        )?;
        for r in self {
            writeln!(
                w,
                "{:<28} {:<6} {:<14} {}",
                r.id,
                format!("{:?}", r.status).to_lowercase(),
                &r.sha256[..12.min(r.sha256.len())],
                format_ms(r.created_at_ms)
            )?;
        }
        Ok(())
    }
}

impl Render for Release {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "{}\n  artifact: {:?}\n  sha256:   {}\n  status:   {:?}",
            self.id, self.artifact, self.sha256, self.status
        )?;
        if let Some(reason) = &self.bad_reason {
            writeln!(w, "  bad:      {reason}")?;
        }
        Ok(())
    }
}

#[derive(clap::Subcommand)]
pub enum RolloutCmd {
    /// Start moving an environment to a release, after the promotion gate (exit 1 with every
    /// reason when it refuses; see `backstop gate`); `--wait` follows it to the end.
    Start {
        service: String,
        #[arg(long)]
        env: String,
        #[arg(long)]
        version: String,
        /// Follow the rollout until it is promoted (exit 0) or rolled back (exit 1).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        gate: crate::gate::GateFlags,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show a rollout: phase, weight, verdict, timeline.
    Status {
        id: String,
        /// Keep following it until it ends.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List recent rollouts.
    List {
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Promote now, skipping the remaining steps (after the promotion gate: exit 1 with every
    /// reason when it refuses).
    Promote {
        id: String,
        #[arg(long)]
        reason: String,
        /// Promote during a scheduled or manual freeze (audited; refused in a regulated environment).
        #[arg(long)]
        override_freeze: bool,
        /// A critical change: passes the automatic freeze while a recovery is active (audited).
        #[arg(long)]
        critical: bool,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Abort: traffic goes back to the last known good and the release is marked bad.
    Abort {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Take over a held rollout: its escalation deadline no longer applies; promote or abort it.
    Acknowledge {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Print the rollout's per-interval counts as a backstop-scenario/v1 file (for `backstop analyze`).
    Export {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn rollout(cmd: RolloutCmd) -> Result<i32> {
    match cmd {
        RolloutCmd::Start {
            service,
            env,
            version,
            wait,
            gate,
            server,
            out,
        } => {
            let client = Client::new(&server)?;
            let r: Rollout = client
                .post(
                    "/api/v1/rollouts",
                    &CreateRollout {
                        service,
                        env,
                        version,
                        critical: gate.critical,
                        override_freeze: gate.override_freeze,
                        reason: gate.reason,
                    },
                )
                .await?;
            if !wait {
                out.output.print(&Started(r));
                return Ok(0);
            }
            follow(&client, &r.id, out.output).await
        }
        RolloutCmd::Status {
            id,
            watch,
            server,
            out,
        } => {
            let client = Client::new(&server)?;
            if watch {
                return follow(&client, &id, out.output).await;
            }
            let d: RolloutDetail = client.get(&format!("/api/v1/rollouts/{id}")).await?;
            out.output.print(&d);
            Ok(0)
        }
        RolloutCmd::List {
            service,
            limit,
            server,
            out,
        } => {
            let mut path = format!("/api/v1/rollouts?limit={limit}");
            if let Some(s) = service {
                path.push_str(&format!("&service={s}"));
            }
            let list: Vec<Rollout> = Client::new(&server)?.get(&path).await?;
            out.output.print(&list);
            Ok(0)
        }
        RolloutCmd::Promote {
            id,
            reason,
            override_freeze,
            critical,
            server,
            out,
        } => {
            let r: Rollout = Client::new(&server)?
                .post(
                    &format!("/api/v1/rollouts/{id}/promote"),
                    &PromoteRequest {
                        reason,
                        critical,
                        override_freeze,
                    },
                )
                .await?;
            out.output.print(&r);
            Ok(0)
        }
        RolloutCmd::Abort {
            id,
            reason,
            server,
            out,
        } => act(&server, &id, "abort", &reason, out.output).await,
        RolloutCmd::Acknowledge {
            id,
            reason,
            server,
            out,
        } => act(&server, &id, "acknowledge", &reason, out.output).await,
        RolloutCmd::Export { id, server } => {
            let text = Client::new(&server)?
                .get_text(&format!("/api/v1/rollouts/{id}/export"))
                .await?;
            print!("{text}");
            Ok(0)
        }
    }
}

async fn act(
    server: &ServerArgs,
    id: &str,
    verb: &str,
    reason: &str,
    output: Output,
) -> Result<i32> {
    let r: Rollout = Client::new(server)?
        .post(
            &format!("/api/v1/rollouts/{id}/{verb}"),
            &Reason {
                reason: reason.to_owned(),
            },
        )
        .await?;
    output.print(&r);
    Ok(0)
}

/// A rollout just started.
#[derive(Serialize)]
#[serde(transparent)]
struct Started(Rollout);

impl Render for Started {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let r = &self.0;
        writeln!(
            w,
            "rollout {} started: {} → {}",
            r.id,
            r.from_release_id.as_deref().unwrap_or("(nothing)"),
            r.to_release_id
        )
    }
}

/// A rollout a person acted on.
impl Render for Rollout {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w, "rollout {}: {}", self.id, self.phase)
    }
}

impl Render for Vec<Rollout> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "{:<38} {:<12} {:<24} {:<12} {:>6}  CREATED",
            "ROLLOUT", "ENV", "RELEASE", "PHASE", "WEIGHT"
        )?;
        for r in self {
            writeln!(
                w,
                "{:<38} {:<12} {:<24} {:<12} {:>5}%  {}",
                r.id,
                format!("{}/{}", r.service, r.env),
                r.to_release_id,
                r.phase.as_str(),
                r.canary_weight,
                format_ms(r.created_at_ms)
            )?;
        }
        Ok(())
    }
}

/// Follows a rollout until it ends, printing each change (a live line on a terminal).
pub async fn follow(client: &Client, id: &str, output: Output) -> Result<i32> {
    let live = output == Output::Text && std::io::stdout().is_terminal();
    let bar = live.then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let mut last = String::new();
    loop {
        let d: RolloutDetail = client.get(&format!("/api/v1/rollouts/{id}")).await?;
        let line = format!(
            "{} · {} · canary {}%",
            d.rollout.to_release_id, d.rollout.phase, d.rollout.canary_weight
        );
        if line != last && output == Output::Text {
            match &bar {
                Some(b) => b.println(&line),
                None => println!("{line}"),
            }
            last = line;
        }
        if let Some(b) = &bar {
            b.set_message(format!(
                "{} {}",
                d.rollout.phase,
                d.rollout.reason.clone().unwrap_or_default()
            ));
        }
        if !d.rollout.phase.is_active() || d.rollout.phase == Phase::Paused {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            output.print(&d);
            return Ok(if d.rollout.phase == Phase::Promoted {
                0
            } else {
                1
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Render for RolloutDetail {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let d = self;
        let r = &d.rollout;
        writeln!(w, "rollout {}  {}/{}", r.id, r.service, r.env)?;
        writeln!(
            w,
            "  {} → {}",
            r.from_release_id.as_deref().unwrap_or("(nothing)"),
            r.to_release_id
        )?;
        writeln!(
            w,
            "  phase: {}   canary weight: {}%",
            r.phase, r.canary_weight
        )?;
        if let Some(reason) = &r.reason {
            writeln!(w, "  reason: {reason}")?;
        }
        if let Some(g) = &d.safeguards {
            if let Some(v) = g.config_snapshot {
                writeln!(
                    w,
                    "  config snapshot: {v} (`backstop config diff {} --env {} {v}`)",
                    r.service, r.env
                )?;
            }
            if let Some(b) = &g.baseline {
                let pct = |x: Option<f64>| x.map_or("-".into(), |v| format!("{:.2}%", v * 100.0));
                let ms = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v}ms"));
                writeln!(
                    w,
                    "  baseline ({} over {:.1}s of {:.1}s): {} requests, {} errors ({}), p50 {}, p99 {}",
                    b.version.as_deref().unwrap_or("no stable version"),
                    b.window_ms as f64 / 1000.0,
                    b.requested_window_ms as f64 / 1000.0,
                    b.requests,
                    b.errors,
                    pct(b.error_ratio),
                    ms(b.latency_p50_ms),
                    ms(b.latency_p99_ms)
                )?;
            }
        }
        writeln!(w, "  timeline:")?;
        for e in &d.events {
            writeln!(
                w,
                "    {}  +{:>7.3}s  {}",
                format_ms(e.at_ms),
                (e.at_ms - r.created_at_ms) as f64 / 1000.0,
                e.kind
            )?;
        }
        let t = &d.timeline;
        if let Some(ms) = t.time_to_detect_ms {
            writeln!(
                w,
                "  time to detect (first canary request → verdict): {:.3}s",
                ms as f64 / 1000.0
            )?;
        }
        if let Some(ms) = t.time_to_restore_ms {
            writeln!(
                w,
                "  time to restore (first canary request → traffic restored): {:.3}s",
                ms as f64 / 1000.0
            )?;
        }
        Ok(())
    }
}

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
    Ok(if rec.status == "done" { 0 } else { 1 })
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
            return Ok(if rec.status == "done" { 0 } else { 1 });
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

#[derive(clap::Subcommand)]
pub enum AuditCmd {
    /// List audit records (reads the state folder directly when its database is there).
    List {
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Verify the hash chain: exit 1 and the first broken record if anything was altered,
    /// removed or reordered.
    Verify {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
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
        AuditCmd::List {
            after,
            limit,
            server,
            out,
        } => {
            let records: Vec<AuditRecord> = match local_store(&server).await? {
                Some(store) => store.audit(after, limit).await?,
                None => {
                    Client::new(&server)?
                        .get(&format!("/api/v1/audit?after={after}&limit={limit}"))
                        .await?
                }
            };
            out.output.print(&records);
            Ok(0)
        }
        AuditCmd::Verify { server, out } => {
            let v: AuditVerification = match local_store(&server).await? {
                Some(store) => backstop_server::verification(&store).await?,
                None => Client::new(&server)?.get("/api/v1/audit/verify").await?,
            };
            out.output.print(&v);
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

#[derive(clap::Subcommand)]
pub enum BreakerCmd {
    /// Open circuit-breaker trips (every progressive rollout in their scope is paused).
    Status {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Close a trip: rollouts it paused resume.
    Reset {
        /// `env:<name>` or `all`.
        #[arg(long)]
        scope: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
}

pub async fn breaker(cmd: BreakerCmd) -> Result<i32> {
    match cmd {
        BreakerCmd::Status { server, out } => {
            let trips: Vec<BreakerTrip> = Client::new(&server)?.get("/api/v1/breakers").await?;
            out.output.print(&trips);
        }
        BreakerCmd::Reset {
            scope,
            reason,
            server,
            out,
        } => {
            let trip: BreakerTrip = Client::new(&server)?
                .post("/api/v1/breakers/reset", &BreakerReset { scope, reason })
                .await?;
            out.output.print(&trip);
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
