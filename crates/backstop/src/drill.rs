//! `backstop drill SERVICE --env ENV`: a known-bad variant of the environment's last known good
//! release rolled out under generated load, timed from Backstop's own records against the
//! objectives; `backstop drill list`.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use backstop_api::drills::{FinishDrill, StartDrill};
use backstop_api::rollouts::RolloutDetail;
use backstop_api::services::ServiceView;
use backstop_core::drill::{Drill, DrillLoad, DrillStatus};
use backstop_core::format_ms;
use backstop_drivers::load::{LoadConfig, LoadGen};
use serde::Serialize;

use crate::client::{CallError, Client, Query, ServerArgs};
use crate::output::{self, Output, OutputArgs, Render};
use crate::quickstart::Progress;

const DRILL_ABOUT: &str = "\
Rehearse a bad release: Backstop deploys a known-bad variant of the environment's last known good \
release (the same artifact plus the service's `drill.env`, e.g. a fault-injection flag) as a canary, \
this command drives generated load at the environment's listen address, and Backstop must detect it \
and roll it back on its own. Time to detect and time to restore come from the daemon's own rollout \
and recovery records and are compared with the service's `mttr` and the environment's rollback SLA; \
the result is stored (see `backstop drill list`) and `backstop validate` compares MTTR targets with it.

Only environments marked `kind: staging` (or development, test) that are not `regulated` can be \
drilled; production is refused. A variant still rolling out when the drill ends (timeout, Ctrl-C) is \
aborted; one that was promoted is rolled back.

Config:
  services:
    - name: shop
      drill: {env: {DEMO_ERROR_RATIO: \"0.2\"}}
      environments:
        - {name: staging, kind: staging, listen: 127.0.0.1:8081}

Examples:
  backstop drill shop --env staging
  backstop drill shop --env staging --rps 100 --timeout 5m --output json
  backstop drill list shop
  backstop drill finish DRILL_ID     # a drill whose CLI was killed: measure, store, clean up

Exit codes: 0 detected and restored within the objectives; 1 not detected, not restored or too \
slow; 2 refused or bad input (production environment, no drill variant, no last known good); 3 \
daemon unreachable.";

#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    long_about = DRILL_ABOUT
)]
pub struct DrillArgs {
    #[command(subcommand)]
    cmd: Option<DrillCmd>,
    /// The service to drill.
    #[arg(required = true)]
    service: Option<String>,
    /// The environment (must be non-production: `kind: staging|development|test`).
    #[arg(long, required = true)]
    env: Option<String>,
    /// Requests per second of generated load.
    #[arg(long, default_value_t = 50.0)]
    rps: f64,
    /// How long to wait for Backstop to detect and undo the variant (e.g. 90s, 10m).
    #[arg(long, default_value = "10m", value_parser = backstop_config::parse_duration)]
    timeout: Duration,
    /// Send the load here (IP:PORT) instead of the environment's `listen` address (needed with
    /// routers other than the built-in proxy).
    #[arg(long)]
    target: Option<SocketAddr>,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(clap::Subcommand)]
enum DrillCmd {
    /// Recorded drills, most recent first (of one service when given).
    List {
        /// The service, as named in the config.
        service: Option<String>,
        /// How many to show, most recent first.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Finish a drill left running (its CLI was killed): measure it, store the result and clean
    /// up the variant.
    Finish {
        /// The drill's id (`backstop drill list` shows them).
        id: String,
        #[command(flatten)]
        out: OutputArgs,
    },
}

fn bad_input(message: String) -> anyhow::Error {
    CallError {
        exit_code: 2,
        message,
    }
    .into()
}

pub async fn drill(args: DrillArgs) -> Result<i32> {
    if let Some(DrillCmd::List {
        service,
        limit,
        out,
    }) = args.cmd
    {
        return list(&args.server, service, limit, out.output).await;
    }
    if let Some(DrillCmd::Finish { id, out }) = args.cmd {
        let finished: Drill = Client::new(&args.server)?
            .post(
                &format!("/api/v1/drills/{id}/finish"),
                &FinishDrill::default(),
            )
            .await?;
        let ended = Ended {
            drill: finished,
            ended: "finished",
        };
        out.output.print(&ended);
        return Ok(ended.exit_code());
    }
    let (Some(service), Some(env)) = (args.service.clone(), args.env.clone()) else {
        return Err(bad_input(
            "give a service and --env (or `backstop drill list`)".to_owned(),
        ));
    };
    if !(args.rps.is_finite() && args.rps > 0.0) {
        return Err(bad_input(format!(
            "--rps must be a positive number of requests per second, got {}",
            args.rps
        )));
    }
    let client = Client::new(&args.server)?;
    let output = args.out.output;

    // Where the load goes: --target, else the environment's listen address.
    let services: Vec<ServiceView> = client.get("/api/v1/services").await?;
    let listen = services
        .iter()
        .find(|s| s.name == service)
        .and_then(|s| s.environments.iter().find(|e| e.name == env))
        .and_then(|e| e.listen.parse::<SocketAddr>().ok());
    let Some(target) = args.target.or(listen) else {
        return Err(bad_input(format!(
            "{service}/{env} has no listen address to send load to: pass --target IP:PORT (the load balancer's address) or check the service and environment names"
        )));
    };

    let drill: Drill = client
        .post("/api/v1/drills", &StartDrill { service, env })
        .await?;
    let progress = Progress::new(output);
    let variant = drill
        .release_id
        .split_once('@')
        .map_or(drill.release_id.as_str(), |(_, v)| v)
        .to_owned();
    progress.say(&format!(
        "drill {}: rolling out {} (last known good {} with {}) in {}/{}",
        drill.id,
        drill.release_id,
        drill.lkg_release_id,
        drill
            .variant_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        drill.service,
        drill.env
    ));
    progress.say(&format!(
        "sending {} requests/s to {target}; waiting up to {} for Backstop to detect and roll back",
        args.rps,
        backstop_config::format_duration(args.timeout)
    ));
    let load = LoadGen::start(LoadConfig {
        target,
        path: "/".into(),
        rate_per_s: args.rps,
        concurrency: 32,
    });

    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut last_phase = String::new();
    let ended = loop {
        let d: Result<RolloutDetail> = client
            .get(&format!("/api/v1/rollouts/{}", drill.rollout_id))
            .await;
        match d {
            Ok(d) => {
                let phase = d.rollout.phase.to_string();
                if phase != last_phase {
                    progress.say(&format!(
                        "  {}  rollout {phase}{}",
                        format_ms(d.rollout.updated_at_ms),
                        d.rollout
                            .reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ));
                    last_phase = phase;
                }
                let s = load.stats();
                progress.status(format!(
                    "{} · canary {}% · {} requests sent, {} failed",
                    d.rollout.phase, d.rollout.canary_weight, s.sent, s.failed
                ));
                if !d.rollout.phase.is_active() {
                    break "ended";
                }
            }
            Err(e) => progress.say(&format!("  (cannot read the rollout: {e:#})")),
        }
        if tokio::time::Instant::now() >= deadline {
            progress.say("  timeout: Backstop did not finish with the variant in time");
            break "timeout";
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = tokio::signal::ctrl_c() => {
                progress.say("  interrupted: ending the drill (the variant is cleaned up)");
                break "interrupted";
            }
        }
    };
    let stats = load.stop().await;
    progress.done();
    let served_ok = stats.ok_by_version.get(&variant).copied().unwrap_or(0);
    let failed_on_variant = stats.failed_by_version.get(&variant).copied().unwrap_or(0);
    let finished: Drill = client
        .post(
            &format!("/api/v1/drills/{}/finish", drill.id),
            &FinishDrill {
                load: Some(DrillLoad {
                    rate_per_s: args.rps,
                    sent: stats.sent,
                    failed: stats.failed,
                    served_by_variant: served_ok + failed_on_variant,
                    failed_on_variant,
                }),
            },
        )
        .await
        .context("finishing the drill")?;
    let ended = Ended {
        drill: finished,
        ended,
    };
    output.print(&ended);
    Ok(ended.exit_code())
}

/// A finished drill and how its run ended (`ended`, `timeout`, `interrupted`, `finished`).
#[derive(Serialize)]
struct Ended {
    drill: Drill,
    ended: &'static str,
}

impl Ended {
    /// 0 when the drill passed.
    fn exit_code(&self) -> i32 {
        if self.drill.status == DrillStatus::Passed {
            0
        } else {
            1
        }
    }
}

impl Render for Ended {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        self.drill.text(w)
    }

    fn json(&self) -> serde_json::Result<String> {
        output::sorted_json(self)
    }
}

/// A target as the config writes it (`10m`, `1h`).
fn target(ms: i64) -> String {
    backstop_config::format_duration(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn secs(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |m| format!("{:.3}s", m as f64 / 1000.0))
}

/// The drill's timeline and its figures against the objectives.
impl Render for Drill {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let d = self;
        writeln!(w)?;
        writeln!(
            w,
            "drill {}  {}/{}  {}",
            d.id,
            d.service,
            d.env,
            d.status.as_str().to_uppercase()
        )?;
        writeln!(w, "  variant {} of {}", d.release_id, d.lkg_release_id)?;
        let Some(r) = &d.result else {
            writeln!(w, "  (no result yet)")?;
            return Ok(());
        };
        let start = d.started_at_ms;
        let at = |ms: Option<i64>| match ms {
            Some(ms) => format!("{}  +{:>8.3}s", format_ms(ms), (ms - start) as f64 / 1000.0),
            None => "(did not happen)".to_owned(),
        };
        writeln!(w, "  timeline:")?;
        writeln!(w, "    drill start            {}", at(Some(start)))?;
        writeln!(
            w,
            "    first canary request   {}",
            at(r.first_canary_request_at_ms)
        )?;
        writeln!(w, "    verdict: fail          {}", at(r.verdict_at_ms))?;
        writeln!(
            w,
            "    traffic restored       {}",
            at(r.traffic_restored_at_ms)
        )?;
        writeln!(w, "    recovery done          {}", at(r.recovered_at_ms))?;
        let verdict = |took: Option<i64>, target: i64| match took {
            Some(t) if t <= target => "met",
            Some(_) => "MISSED",
            None => "-",
        };
        writeln!(
            w,
            "  time to detect  (first canary request → verdict):         {}",
            secs(r.time_to_detect_ms)
        )?;
        writeln!(
            w,
            "  time to restore (first canary request → traffic back):    {}",
            secs(r.time_to_restore_ms)
        )?;
        writeln!(
            w,
            "  rollback        (verdict → traffic back):  {:>10}  rollback SLA {:<6} {}",
            secs(r.detection_to_restore_ms),
            target(r.rollback_sla_ms),
            verdict(r.detection_to_restore_ms, r.rollback_sla_ms)
        )?;
        writeln!(
            w,
            "  recovery        (first request → done):    {:>10}  MTTR target  {:<6} {}",
            secs(r.time_to_recover_ms),
            target(r.mttr_target_ms),
            verdict(r.time_to_recover_ms, r.mttr_target_ms)
        )?;
        if let Some(load) = &r.load {
            writeln!(
                w,
                "  load: {} requests at {}/s, {} failed; the variant served {} ({} failed)",
                load.sent,
                load.rate_per_s,
                load.failed,
                load.served_by_variant,
                load.failed_on_variant
            )?;
        }
        for f in &r.failures {
            writeln!(w, "  ✗ {f}")?;
        }
        if r.failures.is_empty() {
            writeln!(w, "  ✓ detected and restored within the objectives")?;
        }
        Ok(())
    }
}

async fn list(
    server: &ServerArgs,
    service: Option<String>,
    limit: i64,
    output: Output,
) -> Result<i32> {
    let path = Query::new("/api/v1/drills")
        .param("limit", limit)
        .param_if("service", service);
    let drills: Vec<Drill> = Client::new(server)?.get(path.as_str()).await?;
    output.print(&drills);
    Ok(0)
}

impl Render for Vec<Drill> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(w, "no drills recorded");
        }
        writeln!(
            w,
            "{:<38} {:<20} {:<8} {:>10} {:>10}  STARTED",
            "DRILL", "ENV", "STATUS", "DETECT", "RECOVER"
        )?;
        for d in self {
            let r = d.result.as_ref();
            writeln!(
                w,
                "{:<38} {:<20} {:<8} {:>10} {:>10}  {}",
                d.id,
                format!("{}/{}", d.service, d.env),
                d.status.as_str(),
                secs(r.and_then(|r| r.time_to_detect_ms)),
                secs(r.and_then(|r| r.time_to_recover_ms)),
                format_ms(d.started_at_ms)
            )?;
        }
        Ok(())
    }
}
