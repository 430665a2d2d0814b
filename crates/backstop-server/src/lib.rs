//! The Backstop daemon: REST API, OpenAPI, `/metrics`, built-in proxies, and the controller.
//!
//! Entry point: [`serve`] takes a bound listener and a shutdown future, so tests and the
//! quickstart run a real daemon on port 0.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use backstop_config::Config;
use backstop_core::Millis;
use backstop_core::audit::AuditEntry;
use backstop_core::clock::Clock;
use backstop_drivers::router::TrafficRouter;
use backstop_store::{SqliteStore, Store};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub mod access_log;
pub mod alerts;
pub mod api;
pub mod approvals;
pub mod audit_guard;
pub mod auth;
pub mod baseline;
pub mod controller;
pub mod dashboard;
pub mod data_plane;
pub mod dora;
pub mod drills;
pub mod error;
pub mod export;
pub mod flags;
pub mod gaps;
pub mod gate;
pub mod groups;
pub mod hosts;
pub mod incidents;
pub mod intake;
pub mod leased;
pub mod metrics;
pub mod postmortem;
pub mod preview;
pub mod releases;
pub mod rollouts;
pub mod runbooks;
pub mod runtime;
pub mod schema;
pub mod scope;
pub mod scorecard;
pub mod ships;
pub mod snapshots;
pub mod state_lock;
pub mod validation;

/// The wall clock, as the daemon's [`Clock`]: epoch milliseconds (UTC). Every decision reads
/// time through `ctx.clock`, so tests can hold it still.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis)
    }
}

/// Everything handlers and the controller share.
pub struct Ctx {
    pub store: Arc<dyn Store>,
    /// Where every decision reads "now" from.
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub state_dir: PathBuf,
    /// Verified backups of release artifacts (`<state>/blobs`): what instances actually run.
    pub blobs: Arc<dyn backstop_store::BlobStore>,
    pub token_hash: String,
    /// Signs the audit chain's head and checkpoints ([`audit_guard`]).
    pub audit_key: backstop_core::audit::AuditKey,
    /// What reaches the outside world per (service, environment).
    pub drivers: Drivers,
    pub commands: mpsc::Sender<controller::Command>,
    /// Wakes the controller when desired state changed.
    pub wake: Notify,
    /// What the daemon keeps in memory only (rebuilt or recomputed after a restart).
    pub caches: Caches,
    pub limits: Limits,
    /// This daemon as the cluster sees it (its heartbeat refreshes `last_heartbeat_ms`).
    pub replica: backstop_core::model::ReplicaRecord,
    /// True when no other daemon can use the store (the embedded one, behind the state
    /// folder's exclusive lock); false on a database replicas share.
    pub exclusive_store: bool,
}

/// Bounds on what the daemon takes in and how long it takes to stop.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest artifact file `POST /releases` accepts.
    pub max_artifact_bytes: u64,
    /// How long a graceful stop waits for requests in flight before it cuts them.
    pub stop_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_artifact_bytes: intake::DEFAULT_MAX_ARTIFACT_BYTES,
            stop_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// The drivers built from the config at start.
pub struct Drivers {
    /// The traffic router of each (service, environment).
    pub routers: BTreeMap<(String, String), Arc<dyn TrafficRouter>>,
    /// The built-in proxies among them (for `/metrics` and their listen addresses).
    pub proxies: BTreeMap<(String, String), data_plane::ProxyHandle>,
    /// Signal sources of the (service, environment)s whose config names one; the others read
    /// their router's counters.
    pub signal_sources: BTreeMap<(String, String), runtime::SignalSource>,
    /// Webhook notifiers per service (never block a recovery step).
    pub notifiers: BTreeMap<String, backstop_drivers::notify::Notifier>,
    /// The agents of other hosts, by name (`agents` in the config).
    pub agents: BTreeMap<String, backstop_drivers::agent::AgentClient>,
    /// This host's agent (its proxies and instances), unless everything runs in the daemon.
    pub local_agent: Option<backstop_drivers::agent::AgentClient>,
    /// Where this host's agent comes from (to start it again if it dies).
    pub data_plane: data_plane::DataPlane,
}

#[derive(Default)]
pub struct Caches {
    /// Recent traffic samples per environment, for rollout baselines.
    pub traffic_history: baseline::History,
    /// Results of the gate's `migrations` check by input (see `schema::check_key`): the proof
    /// runs once per version of a migration set, not on every rollout start.
    pub migration_checks: schema::CheckCache,
    /// What supervision last found of each instance that should be serving.
    pub supervision: controller::SupervisionState,
    /// Set while the store refuses writes (see `controller::fail_safe`).
    pub store_health: controller::StoreHealth,
    /// The routes last applied to each `(service, env)`: what the fail-safe withdraws a canary
    /// from when the store cannot even be read (a database server that is down).
    pub applied_routes: std::sync::Mutex<
        std::collections::HashMap<(String, String), backstop_drivers::proxy::Routes>,
    >,
    /// What the daemon last found of the audit chain (`backstop_audit_chain_ok`).
    pub audit_chain: audit_guard::ChainStatus,
    /// The runbook runs this daemon is driving now.
    pub runbook_runs: leased::Busy,
    /// The post-recovery validations this daemon runs now.
    pub validations: leased::Busy,
    /// The staged flag re-enables this daemon drives now.
    pub flag_reenables: leased::Busy,
    /// The alerts whose rollback this daemon is settling now.
    pub alerts: leased::Busy,
    /// HTTP calls this daemon answered, by route and status (`backstop_api_requests_total`).
    pub api_requests: access_log::ApiRequests,
}

impl Ctx {
    /// Wakes this daemon's controller and, on a shared store, every replica's: desired state
    /// changed.
    pub async fn wake_controllers(&self) {
        self.wake.notify_one();
        if let Err(e) = self.store.wake_replicas().await {
            tracing::debug!(error = %e, "Could not wake the other replicas; their tick will.");
        }
    }
}

/// Appends an audit record, attributing it to `actor`.
pub async fn audit(
    ctx: &Ctx,
    actor: &str,
    action: backstop_core::event::EventKind,
    target: &str,
    trigger: &str,
    evidence: serde_json::Value,
) -> Result<()> {
    ctx.store
        .append_audit(
            ctx.clock.now_ms(),
            &AuditEntry {
                actor: actor.into(),
                action: action.as_str().into(),
                target: target.into(),
                trigger: trigger.into(),
                evidence,
            },
        )
        .await?;
    Ok(())
}

/// Verifies the audit chain and says where it breaks.
pub use audit_guard::verification;

pub struct ServeOptions {
    pub config: Config,
    pub state_dir: PathBuf,
    pub limits: Limits,
    /// Where the built-in proxies run (in-process unless told).
    pub data_plane: data_plane::DataPlane,
    /// The state folder's writer lock, taken before anything binds or opens the store.
    lock: state_lock::StateLock,
    /// The PostgreSQL store replicas share ([`ServeOptions::with_database`]); without one,
    /// the store is `STATE_DIR/backstop.db`.
    database: Option<backstop_store::PostgresStore>,
}

impl ServeOptions {
    /// Takes the state folder's lock (see [`state_lock`]): a second daemon on a folder in use is
    /// refused here, before it binds a port or touches the store.
    pub fn new(config: Config, state_dir: PathBuf) -> Result<ServeOptions> {
        let lock = state_lock::StateLock::acquire(&state_dir)?;
        Ok(Self::with_lock(config, state_dir, lock, None))
    }

    /// A replica keeping the state in the PostgreSQL database at `url` instead of
    /// `STATE_DIR/backstop.db`: connects and migrates; any number of replicas may run on one
    /// database (leases split the work), and replicas on one host may share the state folder
    /// (artifacts, proxy sockets, logs, the admin token). Errors show the URL redacted.
    pub async fn with_database(
        config: Config,
        state_dir: PathBuf,
        url: &str,
    ) -> Result<ServeOptions> {
        let lock = state_lock::StateLock::acquire_shared(&state_dir)?;
        let store = backstop_store::PostgresStore::connect(url).await?;
        Ok(Self::with_lock(config, state_dir, lock, Some(store)))
    }

    fn with_lock(
        config: Config,
        state_dir: PathBuf,
        lock: state_lock::StateLock,
        database: Option<backstop_store::PostgresStore>,
    ) -> ServeOptions {
        ServeOptions {
            config,
            state_dir,
            limits: Limits::default(),
            data_plane: data_plane::DataPlane::default(),
            lock,
            database,
        }
    }
}

/// Runs the daemon until `shutdown` resolves. On a graceful stop the supervised instances are
/// stopped too (the built-in proxies that feed them traffic stop with the daemon); their
/// desired state stays in the store, so the next start brings them back. After `kill -9` they
/// keep running and the next start adopts them.
pub async fn serve(
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let mut lock = opts.lock;
    lock.describe(Some(listener.local_addr()?))?;
    let exclusive_store = opts.database.is_none();
    let shared = opts.database.map(Arc::new);
    // On a shared database the artifacts are in it (every replica, on any host, runs any
    // release); the state folder keeps each replica's verified copies.
    let local_blobs = backstop_store::FolderBlobs::new(opts.state_dir.join("blobs"));
    let blobs: Arc<dyn backstop_store::BlobStore> = match &shared {
        Some(pg) => Arc::new(pg.blobs(local_blobs)),
        None => Arc::new(local_blobs),
    };
    let store: Arc<dyn Store> = match shared.clone() {
        Some(store) => {
            // Never the URL: it may carry a password.
            tracing::info!(store = "postgres", "State is kept in PostgreSQL.");
            store
        }
        None => Arc::new(
            SqliteStore::open_dir(&opts.state_dir)
                .await
                .with_context(|| {
                    format!("opening the state folder {}", opts.state_dir.display())
                })?,
        ),
    };
    let token_hash =
        auth::ensure_admin_token(&opts.state_dir).context("creating the admin token")?;
    let audit_key = audit_guard::load_key(&opts.state_dir)?;
    if !exclusive_store && std::env::var_os(audit_guard::KEY_ENV).is_none() {
        tracing::warn!(
            key = %opts.state_dir.join(audit_guard::KEY_FILE).display(),
            "Replicas sharing a database must sign the audit chain with one key: set {} on every replica (this one uses its state folder's key).",
            audit_guard::KEY_ENV
        );
    }
    std::fs::create_dir_all(opts.state_dir.join("logs")).context("creating the logs folder")?;
    state_lock::private_folder(&opts.state_dir.join("logs"))?;
    let agents = hosts::build_agents(&opts.config)?;
    let local_agent = match &opts.data_plane {
        data_plane::DataPlane::Process { exe } => Some(
            data_plane::local_agent(exe, &opts.state_dir)
                .await
                .context("this host's agent")?,
        ),
        data_plane::DataPlane::InProcess => None,
    };
    let mut proxies = BTreeMap::new();
    let mut routers = BTreeMap::new();
    let mut signal_sources = BTreeMap::new();
    for svc in &opts.config.services {
        for env in &svc.environments {
            let key = (svc.name.clone(), env.name.clone());
            let router = runtime::build_router(
                svc,
                env,
                &opts.data_plane,
                &opts.state_dir,
                &agents,
                local_agent.as_ref(),
                &mut proxies,
            )
            .await
            .with_context(|| {
                format!(
                    "service {} environment {}: traffic router",
                    svc.name, env.name
                )
            })?;
            if let Some(source) = runtime::build_signal_source(svc, env).with_context(|| {
                format!("service {} environment {}: signals", svc.name, env.name)
            })? {
                signal_sources.insert(key.clone(), source);
            }
            routers.insert(key, router);
        }
    }
    let notifiers = runtime::build_notifiers(&opts.config)?;
    let (tx, rx) = mpsc::channel(64);
    let ctx = Arc::new(Ctx {
        store,
        clock: Arc::new(SystemClock),
        config: Arc::new(opts.config),
        blobs,
        state_dir: opts.state_dir,
        token_hash,
        audit_key: audit_key.key.clone(),
        drivers: Drivers {
            routers,
            proxies,
            signal_sources,
            notifiers,
            agents,
            local_agent,
            data_plane: opts.data_plane.clone(),
        },
        commands: tx,
        wake: Notify::new(),
        caches: Caches::default(),
        limits: opts.limits,
        replica: backstop_core::model::ReplicaRecord {
            id: uuid::Uuid::now_v7().to_string(),
            address: format!("http://{}", listener.local_addr()?),
            host: state_lock::hostname(),
            pid: std::process::id(),
            started_at_ms: SystemClock.now_ms(),
            last_heartbeat_ms: 0,
        },
        exclusive_store,
    });
    audit_guard::at_start(ctx.store.as_ref(), &audit_key, &ctx.caches.audit_chain)
        .await
        .context("checking the audit chain")?;
    let cancel = CancellationToken::new();
    tokio::spawn(audit_guard::keep_checking(ctx.clone(), cancel.clone()));
    tokio::spawn(incidents::keep_reminding(ctx.clone(), cancel.clone()));
    tokio::spawn(runbooks::keep_driving(ctx.clone(), cancel.clone()));
    tokio::spawn(validation::keep_validating(ctx.clone(), cancel.clone()));
    tokio::spawn(flags::keep_reenabling(ctx.clone(), cancel.clone()));
    tokio::spawn(alerts::keep_settling(ctx.clone(), cancel.clone()));
    if let Some(pg) = shared {
        // Other replicas wake this one's controller through the database.
        let (woken, stop) = (ctx.clone(), cancel.clone());
        tokio::spawn(async move {
            let wake = || woken.wake.notify_one();
            if let Err(e) = pg.listen_for_wakes(wake, stop.cancelled()).await {
                tracing::warn!(error = %e, "Cannot listen for other replicas' wake-ups; the controller's tick will notice their changes.");
            }
        });
    }
    let controller = tokio::spawn(controller::Controller::new(ctx.clone(), rx).run(cancel.clone()));
    let app = api::router(ctx.clone());
    let local = listener.local_addr()?;
    tracing::info!(
        listen = %local,
        dashboard = %format!("http://{local}/"),
        admin_token = %ctx.state_dir.join(auth::TOKEN_FILE).display(),
        "Backstop API and dashboard listening; sign in with a token (the admin one is in admin_token)."
    );
    let stop = cancel.clone();
    let stop_timeout = ctx.limits.stop_timeout;
    let stop_by = Arc::new(std::sync::OnceLock::new());
    let stop_by_set = stop_by.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        stop_by_set.get_or_init(|| tokio::time::Instant::now() + stop_timeout);
        stop.cancel();
    });
    // A graceful stop waits for requests in flight and for the controller's current step, but
    // only so long: both must be done within `stop_timeout` of the stop, whatever a client does.
    let stopping = cancel.clone();
    let deadline = move || *stop_by.get_or_init(|| tokio::time::Instant::now() + stop_timeout);
    let server_deadline = deadline.clone();
    tokio::select! {
        served = server => served.context("serving the API")?,
        () = async move {
            stopping.cancelled().await;
            tokio::time::sleep_until(server_deadline()).await;
        } => {
            tracing::warn!(timeout_s = stop_timeout.as_secs_f64(), "Requests still in flight after the stop timeout; cutting them.");
        }
    }
    cancel.cancel();
    // The controller stops between steps; one in the middle of a long step (a hook, an
    // instance that takes its time to start, a store that hangs) is cut at the deadline:
    // what it was doing is journaled and resumes at the next start.
    let controller_abort = controller.abort_handle();
    if tokio::time::timeout_at(deadline(), controller)
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_s = stop_timeout.as_secs_f64(),
            "The controller did not stop within the stop timeout; cutting it (its step resumes at the next start)."
        );
        controller_abort.abort();
    }
    if !ctx.exclusive_store {
        // Other replicas drive this host's proxies and instances on: they keep running, and the
        // work this replica held is theirs to take at once.
        if let Err(e) = ctx.store.release_leases(&ctx.replica.id).await {
            tracing::warn!(error = %e, "Could not release this replica's leases; they expire by themselves.");
        }
        tracing::info!("Stopped; the proxies and instances keep running for the other replicas.");
        drop(lock);
        return Ok(());
    }
    for proxy in ctx.drivers.proxies.values() {
        proxy.shutdown().await;
    }
    for inst in ctx.store.running_instances().await? {
        let host = match ctx.host(&inst.service, &inst.env) {
            Ok(hosts::Host::Agent(a)) if !a.is_local() => continue, // another host's: it keeps serving
            Ok(host) => host,
            Err(_) => continue,
        };
        let handle = backstop_drivers::process::Instance {
            instance_id: inst.id.clone(),
            pid: inst.pid,
            port: inst.port,
        };
        if inst.pid != 0
            && host.is_running(&handle).await.unwrap_or(false)
            && let Err(e) = host.stop(&handle, runtime::STOP_GRACE).await
        {
            tracing::warn!(instance = %inst.id, error = format!("{e:#}"), "Could not stop an instance on shutdown.");
        }
    }
    // One machine, one daemon: its agent stops with it (instances and proxies are stopped).
    if let Some(local) = &ctx.drivers.local_agent
        && let Err(e) = local.shutdown().await
    {
        tracing::warn!(error = %e, "Could not stop this host's agent.");
    }
    drop(lock);
    Ok(())
}
