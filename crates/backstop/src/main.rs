//! `backstop`: one binary for the daemon, the CLI, the quickstart and the offline tools.
//!
//! Exit codes: 0 success (or a passing verdict); 1 the thing checked failed (a failing verdict,
//! a broken audit chain, an invalid config, a rollout that ended rolled back with `--wait`);
//! 2 bad input or usage (nothing changed); 3 the daemon could not be reached or failed.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};

mod agent_cmd;
mod analyze;
mod bench_scale;
mod client;
mod commands;
mod config_cmd;
mod config_file;
mod drill;
mod embedded;
mod gate;
mod integrity;
mod migrations;
mod output;
mod quickstart;
mod runbook_cmd;
mod store_cmd;

#[derive(Parser)]
#[command(
    name = "backstop",
    version,
    about = "Release-recovery control plane: guard every deployment, detect a bad release in seconds, roll it back crash-safely, and keep a tamper-evident record.",
    long_about = None,
    after_help = "Start here: `backstop quickstart` shows the whole loop on this machine.\n\
                  Daemon: `backstop serve --config backstop.yaml`; the other commands talk to it (see --server).\n\
                  Exit codes: 0 ok, 1 check failed, 2 bad input or usage, 3 daemon unreachable or failed."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole loop on this machine: good release promoted, bad release caught and rolled back.
    Quickstart(quickstart::QuickstartArgs),
    /// Run the daemon: API, built-in proxies, controller (SQLite state in --state-dir).
    Serve(ServeArgs),
    /// Check a backstop.yaml and report every error at once with file:line:col (objectives
    /// against snapshot intervals and recorded drills included).
    Validate(config_file::ValidateCmd),
    /// Config helpers: JSON Schema, effective config, a starter file; params snapshots (history,
    /// diff, snapshot, restore).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Register and inspect releases (a version of a service and its artifact's sha256).
    #[command(subcommand)]
    Release(commands::ReleaseCmd),
    /// Start, watch, promote, abort and export rollouts.
    #[command(subcommand)]
    Rollout(commands::RolloutCmd),
    /// Roll an environment back to its last known good release now.
    Rollback(commands::RollbackArgs),
    // About and examples: on `gate::GateArgs`.
    Gate(gate::GateArgs),
    /// Freeze deployments: start, list and end manual freezes; see scheduled windows.
    #[command(subcommand)]
    Freeze(gate::FreezeCmd),
    /// The global circuit breaker: see open trips, reset one.
    #[command(subcommand)]
    Breaker(commands::BreakerCmd),
    /// Rehearse a bad release in a non-production environment and time detection and restore.
    Drill(drill::DrillArgs),
    /// Feature flags: sticky percentages, OpenFeature evaluation, staged re-enables judged
    /// like a canary.
    #[command(subcommand, long_about = commands::FLAG_HELP)]
    Flag(commands::FlagCmd),
    /// Alerts from your monitoring (Alertmanager's webhook) and what each started.
    #[command(subcommand)]
    Alerts(commands::AlertsCmd),
    /// A batch job's ping after a run (late heartbeats keep a recovery from resolving).
    Heartbeat(commands::HeartbeatArgs),
    /// Every declared heartbeat: its last ping, and whether it is late (exit 1 if one is).
    Heartbeats(commands::HeartbeatsArgs),
    /// Replay labelled rollouts through the judge at several settings; recommend one.
    Calibrate(commands::CalibrateArgs),
    /// Coverage gaps (what detection missed) and automation gaps (what people did by hand).
    Gaps(commands::GapsArgs),
    /// Readiness scorecards: bronze, silver, gold, and the checks behind each service's level.
    Scorecard(commands::ScorecardArgs),
    /// DORA's delivery figures per service and environment, graded against the clusters.
    Dora(commands::DoraArgs),
    /// Inspect recoveries: the journaled steps of every rollback.
    #[command(subcommand)]
    Recovery(commands::RecoveryCmd),
    /// Incidents: opened by a major or critical failure or by hand; status, roles, notes,
    /// updates, and the timeline of what people and the machine did.
    #[command(subcommand)]
    Incident(commands::IncidentCmd),
    /// Approve a request another person made (an override in a regulated environment), or
    /// review a break-glass rollback.
    #[command(long_about = commands::APPROVE_HELP)]
    Approve(commands::ApproveArgs),
    /// What waits for a second person: overrides to approve, break-glass rollbacks to review.
    Approvals(commands::ApprovalsArgs),
    /// API tokens for people and pipelines, each with a role (maybe in one environment).
    #[command(subcommand)]
    Token(commands::TokenCmd),
    /// Runbooks as code: check one, run it with tracked steps and deviations, steer a run.
    #[command(subcommand)]
    Runbook(runbook_cmd::RunbookCmd),
    /// Did the data survive? Row counts and checksums of a database, per table and key
    /// range; compare two snapshots or databases.
    #[command(subcommand)]
    Integrity(integrity::IntegrityCmd),
    /// The signed, hash-chained audit log: list, verify (also against a checkpoint or an
    /// export), checkpoint, export; reads a state folder read-only without a daemon.
    #[command(subcommand)]
    Audit(commands::AuditCmd),
    /// Replay a canary scenario file through a judge (see the backstop-scenario/v1 spec).
    Analyze(analyze::AnalyzeArgs),
    /// Database migrations: prove every down restores the schema; apply them keeping the downs
    /// that schema-aware rollbacks run.
    #[command(subcommand)]
    Migrations(MigrationsCmd),
    /// Benchmarks that compare Backstop with peer behaviour, side by side.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// The daemons sharing the store (replicas) and what each drives.
    #[command(subcommand)]
    Cluster(commands::ClusterCmd),
    /// One host's data plane (its proxies and instances), driven by the replicas.
    #[command(subcommand, long_about = agent_cmd::AGENT_LONG_ABOUT)]
    Agent(agent_cmd::AgentCmd),
    /// The state store: copy an embedded install into PostgreSQL.
    #[command(subcommand)]
    Store(store_cmd::StoreCmd),
    /// Print shell completions.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The sample service quickstart, the tests and the benchmarks deploy: an HTTP server whose
    /// error ratio and latency you choose, to try Backstop on (`run.command: "{artifact}
    /// demo-app --port {port} --version {version}"` with the backstop binary as the artifact).
    DemoApp(backstop_demo::DemoArgs),
    /// The built-in proxy of one environment as its own process (earlier versions ran one per
    /// environment; the daemon still adopts a running one; it now runs them in the host's agent).
    #[command(hide = true)]
    Proxy(ProxyArgs),
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Label of log lines and of the proxy (`service/environment`).
    #[arg(long)]
    name: String,
    /// Address users connect to.
    #[arg(long)]
    listen: SocketAddr,
    /// Unix socket the daemon configures it on (routes in, counters out).
    #[arg(long)]
    control: PathBuf,
    /// Log format: `pretty` on a terminal, `json` for collectors.
    #[arg(long, default_value = "json")]
    log_format: String,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the JSON Schema of backstop.yaml (for editors).
    Schema,
    /// Print a config, with `--effective` every default filled in.
    Show(config_file::ShowArgs),
    /// Print a commented starter backstop.yaml.
    Init,
    /// List an environment's config snapshots (taken before every rollout).
    #[command(long_about = config_cmd::HISTORY_HELP)]
    History(config_cmd::HistoryArgs),
    /// What changed in an environment's params: snapshot vs live files, or two snapshots.
    #[command(long_about = config_cmd::DIFF_HELP)]
    Diff(config_cmd::DiffArgs),
    /// Snapshot an environment's params now.
    #[command(long_about = config_cmd::SNAPSHOT_HELP)]
    Snapshot(config_cmd::SnapshotArgs),
    /// Write a snapshot's files and folders back (dry run without --yes).
    #[command(long_about = config_cmd::RESTORE_HELP)]
    Restore(config_cmd::RestoreArgs),
}

#[derive(Subcommand)]
enum MigrationsCmd {
    /// Lint a migration set and prove up -> down -> up on a scratch SQLite or PostgreSQL database.
    #[command(long_about = migrations::CHECK_LONG_ABOUT)]
    Check(migrations::MigrationsCheckArgs),
    /// Check, then apply what a database has not applied yet, keeping each proven down in it.
    Apply(migrations::ApplyArgs),
    /// What a database's migration history says was applied (and which downs are proven).
    Status(migrations::StatusArgs),
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Judges against an oracle and the Flagger tutorial preset on seeded scenario families.
    Canary(analyze::BenchCanaryArgs),
    /// Five services changed together, one the culprit: how often the failure-scope ranking
    /// names it first, and how fast, beside the first alert on error ratios.
    Scope(analyze::BenchScopeArgs),
    /// A promoted wave baking: good releases failed and late regressions caught by Backstop's
    /// bake (anytime-valid, against the pre-deploy baseline), beside the Flagger tutorial preset.
    Bake(analyze::BenchBakeArgs),
    /// How many concurrent rollouts one controller keeps up with (SQLite, PostgreSQL with 1
    /// and 3 replicas): analyses per second and per core, decision latency, writes, memory.
    #[command(long_about = bench_scale::SCALE_LONG_ABOUT)]
    Scale(bench_scale::ScaleArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The declarative config (services, environments, rollout and analysis settings).
    #[arg(
        long,
        short = 'c',
        env = "BACKSTOP_CONFIG",
        default_value = "backstop.yaml"
    )]
    config: PathBuf,
    /// Folder for all state: the SQLite database, the admin token, instance logs.
    #[arg(long, env = "BACKSTOP_STATE_DIR", default_value = ".backstop")]
    state_dir: PathBuf,
    /// Keep the state (releases, rollouts, recovery journal, audit chain, snapshots) in this
    /// PostgreSQL database instead of STATE_DIR/backstop.db:
    /// `postgres://user:password@host:5432/database` (`?sslmode=require` for TLS). Any number
    /// of daemons (replicas) may share one database: leases split the work, and any replica
    /// answers the API (`backstop cluster status` lists them). Replicas on one host may share
    /// its state folder (proxy sockets, instance logs, the admin token, verified copies of the
    /// artifacts, which are kept in the database). Prefer the environment variable: a flag's
    /// password shows in the process list. The URL never reaches logs, the audit or /metrics.
    #[arg(
        long,
        env = "BACKSTOP_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,
    /// Address of the API.
    #[arg(long, env = "BACKSTOP_LISTEN", default_value = "127.0.0.1:7300")]
    listen: SocketAddr,
    /// Log format: `pretty` on a terminal, `json` for collectors.
    #[arg(long, env = "BACKSTOP_LOG_FORMAT", default_value = "json")]
    log_format: String,
    /// The largest artifact file `release create --file` accepts, in bytes (default 2 GiB).
    /// Only regular files are accepted (never devices, FIFOs or folders).
    #[arg(long, env = "BACKSTOP_MAX_ARTIFACT_BYTES", default_value_t = backstop_server::intake::DEFAULT_MAX_ARTIFACT_BYTES)]
    max_artifact_bytes: u64,
    /// How long a graceful stop (SIGTERM, Ctrl-C) waits for requests in flight, e.g. `10s`.
    #[arg(long, env = "BACKSTOP_STOP_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    stop_timeout: std::time::Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Config(ConfigCmd::Schema) => config_file::schema(),
        Cmd::Config(ConfigCmd::Show(args)) => config_file::show(&args),
        Cmd::Config(ConfigCmd::Init) => config_file::init(),
        Cmd::Analyze(args) => analyze::run_analyze(&args),
        Cmd::Bench(BenchCmd::Canary(args)) => analyze::run_bench_canary(&args),
        Cmd::Bench(BenchCmd::Scope(args)) => analyze::run_bench_scope(&args),
        Cmd::Bench(BenchCmd::Bake(args)) => analyze::run_bench_bake(&args),
        Cmd::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "backstop", &mut script);
            // A closed pipe (`| head`) ends it quietly.
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &script);
            0
        }
        other => run_async(other),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn run_async(cmd: Cmd) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 3;
        }
    };
    let result = rt.block_on(async move {
        match cmd {
            Cmd::Quickstart(args) => quickstart::run(args).await,
            Cmd::Serve(args) => serve(args).await.map(|()| 0),
            Cmd::Release(c) => commands::release(c).await,
            Cmd::Rollout(c) => commands::rollout(c).await,
            Cmd::Rollback(a) => commands::rollback(a).await,
            Cmd::Recovery(c) => commands::recovery(c).await,
            Cmd::Breaker(c) => commands::breaker(c).await,
            Cmd::Gate(a) => gate::gate(a).await,
            Cmd::Freeze(c) => gate::freeze(c).await,
            Cmd::Token(c) => commands::token(c).await,
            Cmd::Approve(a) => commands::approve(a).await,
            Cmd::Incident(c) => commands::incident(c).await,
            Cmd::Dora(a) => commands::dora(a).await,
            Cmd::Scorecard(a) => commands::scorecard(a).await,
            Cmd::Gaps(a) => commands::gaps(a).await,
            Cmd::Calibrate(a) => commands::calibrate(a).await,
            Cmd::Flag(c) => commands::flag(c).await,
            Cmd::Alerts(c) => commands::alerts(c).await,
            Cmd::Heartbeat(a) => commands::heartbeat(a).await,
            Cmd::Heartbeats(a) => commands::heartbeats(a).await,
            Cmd::Approvals(a) => commands::approvals(a).await,
            Cmd::Integrity(c) => integrity::run(c).await,
            Cmd::Runbook(c) => runbook_cmd::run(c).await,
            Cmd::Audit(c) => commands::audit(c).await,
            Cmd::Config(ConfigCmd::History(a)) => config_cmd::history(a).await,
            Cmd::Config(ConfigCmd::Diff(a)) => config_cmd::diff(a).await,
            Cmd::Config(ConfigCmd::Snapshot(a)) => config_cmd::snapshot(a).await,
            Cmd::Config(ConfigCmd::Restore(a)) => config_cmd::restore(a).await,
            Cmd::Drill(a) => drill::drill(a).await,
            Cmd::Validate(c) => config_file::validate(c).await,
            Cmd::Migrations(MigrationsCmd::Check(args)) => Ok(migrations::check(&args).await),
            Cmd::Migrations(MigrationsCmd::Apply(a)) => migrations::apply(a).await,
            Cmd::Migrations(MigrationsCmd::Status(a)) => migrations::status(a).await,
            Cmd::Proxy(args) => run_proxy(args).await.map(|()| 0),
            Cmd::Store(c) => store_cmd::store(c).await,
            Cmd::Cluster(c) => commands::cluster(c).await,
            Cmd::Agent(c) => agent_cmd::agent(c).await,
            Cmd::Bench(BenchCmd::Scale(a)) => bench_scale::run(a).await,
            Cmd::DemoApp(args) => {
                init_logs("pretty", "info");
                backstop_demo::run(args, backstop_demo::shutdown_signal())
                    .await
                    .map(|()| 0)
                    .context("sample service")
            }
            _ => unreachable!("handled synchronously"),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = e
                .downcast_ref::<client::CallError>()
                .map_or(2, |c| c.exit_code);
            eprintln!("error: {e:#}");
            code
        }
    }
}

pub fn init_logs(format: &str, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        // Colour only on a terminal, and never when NO_COLOR is set (no-color.org).
        let colour = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        builder.with_ansi(colour).try_init()
    };
}

async fn serve(args: ServeArgs) -> Result<()> {
    init_logs(&args.log_format, "info");
    let config = match backstop_config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            anyhow::bail!(
                "{} has {} error(s); nothing was started",
                args.config.display(),
                errors.0.len()
            );
        }
    };
    // The state folder's lock first: a second daemon on it is refused naming the holder,
    // whatever port it was given.
    let mut opts = match &args.database_url {
        Some(url) => {
            backstop_server::ServeOptions::with_database(config, args.state_dir, url).await?
        }
        None => backstop_server::ServeOptions::new(config, args.state_dir)?,
    };
    opts.limits = backstop_server::Limits {
        max_artifact_bytes: args.max_artifact_bytes,
        stop_timeout: args.stop_timeout,
    };
    opts.data_plane = data_plane()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (see --listen)", args.listen))?;
    backstop_server::serve(listener, opts, shutdown_signal()).await
}

/// The host's agent (`backstop agent serve`) runs from this very executable, so users are
/// served while the daemon restarts, crashes or hangs.
pub fn data_plane() -> Result<backstop_server::data_plane::DataPlane> {
    Ok(backstop_server::data_plane::DataPlane::Process {
        exe: std::env::current_exe()
            .context("locating the backstop binary (it runs this host's agent)")?,
    })
}

/// `backstop proxy`: serves until SIGTERM/SIGINT or the daemon's `shutdown`, then drains.
async fn run_proxy(args: ProxyArgs) -> Result<()> {
    init_logs(&args.log_format, "info");
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (see --listen)", args.listen))?;
    let proxy = backstop_drivers::proxy::Proxy::start(listener, args.name).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        on_signal.cancel();
    });
    let served = backstop_drivers::proxy_control::serve_control(proxy.clone(), &args.control, stop)
        .await
        .with_context(|| format!("control socket {}", args.control.display()));
    proxy.shutdown().await;
    served
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("Shutting down.");
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    /// Every argument of every command says what it is for in `--help`, and every `--output`
    /// is also `-o`.
    #[test]
    fn every_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(
                    arg.get_action(),
                    clap::ArgAction::Help | clap::ArgAction::Version
                ) {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
                if arg.get_long() == Some("output") && arg.get_short() != Some('o') {
                    missing.push(format!("{path} --output without -o"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "backstop", &mut missing);
        assert!(
            missing.is_empty(),
            "arguments without a description:\n{}",
            missing.join("\n")
        );
    }
}
