//! `backstop bench scale`: how many concurrent rollouts one controller keeps up with.
//!
//! Simulated services (synthetic counters, no processes) run through the controller's own
//! analysis path: at the end of each interval of each rollout, the interval is stored under the
//! rollout's lease (`fenced`, as the controller writes: the epoch checked in the transaction),
//! the rollout's judge observes it (the real sequential judge), [`backstop_core::rollout::next`]
//! decides, and a decision that changes the rollout is stored. Like the controller, each
//! replica is one task that wakes every 200 ms and handles the rollouts whose interval is due,
//! one after the other, and renews its leases in one statement every 2 s apart from that work.
//! What is not simulated here: reading the counters (a proxy's socket, Prometheus) and the
//! routers; those are per-environment I/O that replicas spread.

use std::collections::{BTreeMap, BinaryHeap};
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use backstop_core::Millis;
use backstop_core::model::{Artifact, EnvironmentState, Phase, Release, ReleaseStatus, Rollout};
use backstop_core::rollout::{Next, Observation, Step};
use backstop_judge::{ArmCounts, Interval, JudgeSettings};
use backstop_store::fence::{Fence, fenced};
use backstop_store::{PostgresStore, SqliteStore, Store};
use tokio::time::Instant;

use crate::output::{OutputArgs, Render};

pub const SCALE_LONG_ABOUT: &str = "\
How many concurrent rollouts one controller keeps up with, on SQLite (one daemon) and on \
PostgreSQL (1 and 3 replicas). Simulated services (synthetic counters, no processes) go through \
the controller's own analysis path: each interval is stored under the rollout's lease (epoch \
checked in the write), judged by the real sequential judge, decided by the real rollout logic, \
and a decision that changes the rollout is stored; each replica is one task waking every 200 ms, \
as the controller does, and renews its leases in one statement every 2 s.

Measured per run: analyses per second, analyses per CPU-second (per core) of this process, \
p50/p99 time from an interval's end to its stored decision, store writes per second, and memory \
per rollout (resident set growth over the rollouts' judges and state). Reading the counters \
(proxy sockets, Prometheus) and the routers are not simulated.

PostgreSQL: a temporary cluster (initdb and pg_ctl installed) unless --database-url names a \
server, where the bench creates a database per run.

Example:
  backstop bench scale                                  # 1k, 10k, 50k on every store (minutes)
  backstop bench scale --rollouts 10000 --stores sqlite --intervals 2";

#[derive(clap::Args)]
pub struct ScaleArgs {
    /// Concurrent rollouts of each run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
    rollouts: Vec<usize>,
    /// Stores: `sqlite` (one daemon), `postgres` (one replica), `postgres-3` (three replicas).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sqlite,postgres,postgres-3"
    )]
    stores: Vec<StoreKind>,
    /// Analysis interval of every rollout.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Intervals measured per rollout, after one that spreads their starts.
    #[arg(long, default_value_t = 3)]
    intervals: u32,
    /// A PostgreSQL server to run on (a database is created per run); default: a temporary
    /// cluster.
    #[arg(
        long,
        env = "BACKSTOP_BENCH_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    Sqlite,
    Postgres,
    #[value(name = "postgres-3")]
    #[serde(rename = "postgres-3")]
    Postgres3,
}

impl StoreKind {
    fn replicas(self) -> usize {
        if self == StoreKind::Postgres3 { 3 } else { 1 }
    }

    fn label(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres, 1 replica",
            StoreKind::Postgres3 => "postgres, 3 replicas",
        }
    }
}

/// One run's figures.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Run {
    store: StoreKind,
    rollouts: usize,
    replicas: usize,
    analyses: u64,
    analyses_per_s: f64,
    /// Analyses per CPU-second of this process (the controller's side; the database server's
    /// CPU is not counted).
    analyses_per_core_s: f64,
    /// CPU-seconds this process used per wall-second while measuring.
    cores_busy: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    store_writes_per_s: f64,
    kib_per_rollout: f64,
    /// Rollouts the judge failed (the simulated bad canaries, 1 in 100) during the run.
    failed: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Report {
    interval_s: f64,
    intervals: u32,
    runs: Vec<Run>,
    /// Argo Rollouts users report memory and reconcile trouble around 10k rollouts per
    /// controller (argo-rollouts#2855: ~11-13k rollouts in 11-14 GB, ~1 MiB per rollout).
    peer_kib_per_rollout: f64,
}

/// ~1 MiB per rollout: 11-14 GB for ~11-13k rollouts (argo-rollouts#2855).
const PEER_KIB_PER_ROLLOUT: f64 = 1024.0;

pub async fn run(args: ScaleArgs) -> Result<i32> {
    if args.rollouts.contains(&0) {
        bail!("--rollouts: every size must be at least 1");
    }
    if args.intervals == 0 {
        bail!("--intervals must be at least 1");
    }
    if args.interval < Duration::from_millis(200) {
        bail!("--interval must be at least 200ms (the controller's tick)");
    }
    let runs = if args.rollouts.len() * args.stores.len() == 1 {
        measure_here(&args).await?
    } else {
        measure_apart(&args).await?
    };
    args.out.output.print(&Report {
        interval_s: args.interval.as_secs_f64(),
        intervals: args.intervals,
        runs,
        peer_kib_per_rollout: PEER_KIB_PER_ROLLOUT,
    });
    Ok(0)
}

/// Each run in a process of its own (this executable again), so that one run's memory and
/// CPU are not another's; PostgreSQL is started once for all.
async fn measure_apart(args: &ScaleArgs) -> Result<Vec<Run>> {
    let (_cluster, server) = pg_server(args).await?;
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut runs = Vec::new();
    for &n in &args.rollouts {
        for &store in &args.stores {
            let kind = store_arg(store);
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.args([
                "bench",
                "scale",
                "--rollouts",
                &n.to_string(),
                "--stores",
                kind,
            ])
            .args([
                "--interval",
                &humantime::format_duration(args.interval).to_string(),
            ])
            .args(["--intervals", &args.intervals.to_string(), "-o", "json"])
            .stderr(std::process::Stdio::inherit());
            if let Some(url) = &server {
                cmd.env("BACKSTOP_BENCH_DATABASE_URL", url);
            }
            let out = cmd
                .stdout(std::process::Stdio::piped())
                .spawn()
                .context("running one size")?
                .wait_with_output()
                .await
                .context("running one size")?;
            if !out.status.success() {
                bail!(
                    "{n} rollouts on {}: the run failed ({})",
                    store.label(),
                    out.status
                );
            }
            let report: Report =
                serde_json::from_slice(&out.stdout).context("reading a run's figures")?;
            runs.extend(report.runs);
        }
    }
    Ok(runs)
}

/// The PostgreSQL server the runs use, as an admin URL: `--database-url`, else a temporary
/// cluster (kept while the returned guard lives); none when no run needs one.
async fn pg_server(
    args: &ScaleArgs,
) -> Result<(
    Option<backstop_migrate::scratch::TempCluster>,
    Option<String>,
)> {
    if args.database_url.is_some() || args.stores.iter().all(|s| *s == StoreKind::Sqlite) {
        return Ok((None, args.database_url.clone()));
    }
    let cluster = tokio::task::spawn_blocking(backstop_migrate::scratch::TempCluster::start)
        .await
        .context("starting PostgreSQL")?
        .context("starting a temporary PostgreSQL cluster (or give --database-url)")?;
    let url = format!(
        "postgres://postgres@localhost/postgres?host={}&port=5432",
        cluster
            .dir()
            .context("the cluster's folder")?
            .join("sock")
            .display()
    );
    Ok((Some(cluster), Some(url)))
}

fn store_arg(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::Sqlite => "sqlite",
        StoreKind::Postgres => "postgres",
        StoreKind::Postgres3 => "postgres-3",
    }
}

/// The one run asked for, in this process.
async fn measure_here(args: &ScaleArgs) -> Result<Vec<Run>> {
    let (_cluster, server) = pg_server(args).await?;
    let mut runs = Vec::new();
    for &n in &args.rollouts {
        for &store in &args.stores {
            eprintln!("== {n} rollouts on {}", store.label());
            let stores = open_stores(store, n, server.as_deref())
                .await
                .with_context(|| format!("opening the {} store", store.label()))?;
            let run = measure(store, n, &stores.stores, args.interval, args.intervals).await?;
            eprintln!(
                "   p99 {:.0} ms, {:.0} analyses/s, {:.0} per core",
                run.p99_ms, run.analyses_per_s, run.analyses_per_core_s
            );
            runs.push(run);
        }
    }
    Ok(runs)
}

struct Stores {
    stores: Vec<Arc<dyn Store>>,
    /// Kept until the run ends (the SQLite folder).
    _dir: Option<tempfile::TempDir>,
}

async fn open_stores(kind: StoreKind, n: usize, server: Option<&str>) -> Result<Stores> {
    if kind == StoreKind::Sqlite {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(dir.path()).await?);
        return Ok(Stores {
            stores: vec![store],
            _dir: Some(dir),
        });
    }
    let database = format!(
        "backstop_bench_{n}_{}_{}",
        kind.replicas(),
        std::process::id()
    );
    let server = server.context("no PostgreSQL server")?;
    create_database(server, &database).await?;
    let url = with_database(server, &database);
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..kind.replicas() {
        stores.push(Arc::new(PostgresStore::connect(&url).await?));
    }
    Ok(Stores { stores, _dir: None })
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let server = match base.rsplit_once('/') {
        Some((server, _)) if server.contains("://") && !server.ends_with('/') => server,
        _ => base.trim_end_matches('/'),
    };
    match query {
        Some(q) => format!("{server}/{database}?{q}"),
        None => format!("{server}/{database}"),
    }
}

async fn create_database(url: &str, database: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to PostgreSQL: {e}"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{database}\""
    )))
    .execute(&mut conn)
    .await
    .with_context(|| format!("creating the database {database}"))?;
    conn.close().await.ok();
    Ok(())
}

/// One rollout as the controller keeps it between intervals.
struct Watched {
    rollout: Rollout,
    judge: Box<dyn backstop_judge::Judge>,
    fence: Fence,
    /// 1 in 100 rollouts is a bad release (its canary errs 20 times as often).
    bad: bool,
    rng: u64,
    intervals: u32,
}

/// Figures one replica gathers.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    analyses: u64,
    failed: u64,
}

async fn measure(
    kind: StoreKind,
    n: usize,
    stores: &[Arc<dyn Store>],
    interval: Duration,
    intervals: u32,
) -> Result<Run> {
    let replicas = stores.len();
    let steps = vec![
        Step {
            weight: 10.0,
            hold: Some(Duration::from_secs(3600)),
        },
        Step {
            weight: 100.0,
            hold: None,
        },
    ];
    let settings = JudgeSettings {
        interval,
        ..JudgeSettings::default()
    };
    let progress = indicatif::ProgressBar::new(n as u64)
        .with_message("rollouts set up")
        .with_style(
            indicatif::ProgressStyle::with_template("   {msg}: {pos}/{len} {bar:30}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    let rss_before = rss_kib();
    let mut shares: Vec<Vec<Watched>> = (0..replicas).map(|_| Vec::new()).collect();
    let now = now_ms();
    for i in 0..n {
        let replica = i % replicas;
        let store = &stores[replica];
        let holder = format!("bench-replica-{replica}");
        let rollout = seed(store.as_ref(), i, now).await?;
        let key = format!("rollout/{}", rollout.id);
        let epoch = store
            .acquire_lease(&key, &holder, now, 3_600_000)
            .await?
            .context("a fresh lease is free")?;
        shares[replica].push(Watched {
            rollout,
            judge: backstop_judge::build(&settings),
            fence: Fence { key, epoch },
            bad: i % 100 == 99,
            rng: 0x9e37_79b9_7f4a_7c15 ^ (i as u64),
            intervals: 0,
        });
        progress.inc(1);
    }
    progress.finish_and_clear();
    let kib_per_rollout = (rss_kib().saturating_sub(rss_before)) as f64 / n as f64;

    let writes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measured_from = start + interval;
    let end = start + interval * (intervals + 1);
    let cpu_before = cpu_seconds();
    let mut tasks = tokio::task::JoinSet::new();
    for (replica, share) in shares.into_iter().enumerate() {
        let store = stores[replica].clone();
        let writes = writes.clone();
        let steps = steps.clone();
        tasks.spawn(async move {
            let holder = format!("bench-replica-{replica}");
            let renewals = renew(store.clone(), holder, writes.clone(), end);
            let work = drive(
                store,
                share,
                &steps,
                interval,
                start,
                measured_from,
                end,
                writes,
            );
            let (tally, ()) = tokio::join!(work, renewals);
            tally
        });
    }
    let mut tally = Tally::default();
    for done in tasks.join_all().await {
        let done = done?;
        tally.latencies_us.extend(done.latencies_us);
        tally.analyses += done.analyses;
        tally.failed += done.failed;
    }
    let wall = (Instant::now() - measured_from).as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    tally.latencies_us.sort_unstable();
    let q = |p: f64| -> f64 {
        let v = &tally.latencies_us;
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i.min(v.len() - 1)] as f64 / 1000.0
    };
    let measured_s = (end - measured_from).as_secs_f64().max(wall.min(f64::MAX));
    Ok(Run {
        store: kind,
        rollouts: n,
        replicas,
        analyses: tally.analyses,
        analyses_per_s: tally.analyses as f64 / measured_s,
        analyses_per_core_s: if cpu > 0.0 {
            tally.analyses as f64 / cpu
        } else {
            0.0
        },
        cores_busy: cpu / (Instant::now() - start).as_secs_f64(),
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        max_ms: q(1.0),
        store_writes_per_s: writes.load(Ordering::Relaxed) as f64 / measured_s,
        kib_per_rollout,
        failed: tally.failed,
    })
}

/// One replica's controller: every 200 ms, the rollouts whose interval is due, one by one.
#[allow(clippy::too_many_arguments)]
async fn drive(
    store: Arc<dyn Store>,
    mut share: Vec<Watched>,
    steps: &[Step],
    interval: Duration,
    start: Instant,
    measured_from: Instant,
    end: Instant,
    writes: Arc<AtomicU64>,
) -> Result<Tally> {
    let mut tally = Tally::default();
    // Due times spread over the first interval, as rollouts started at different times are.
    let count = share.len().max(1);
    let mut due: BinaryHeap<std::cmp::Reverse<(Instant, usize)>> = (0..share.len())
        .map(|i| std::cmp::Reverse((start + interval.mul_f64(i as f64 / count as f64), i)))
        .collect();
    let tick = Duration::from_millis(200);
    let mut next_tick = start;
    while Instant::now() < end {
        next_tick += tick;
        tokio::time::sleep_until(next_tick).await;
        while let Some(std::cmp::Reverse((at, i))) = due.peek().copied() {
            if at > Instant::now() || at >= end {
                break;
            }
            due.pop();
            let w = &mut share[i];
            let more = analyse(store.as_ref(), w, steps, &writes).await?;
            let decided = Instant::now();
            if at >= measured_from {
                tally.analyses += 1;
                tally.latencies_us.push((decided - at).as_micros() as u64);
            }
            match more {
                true => due.push(std::cmp::Reverse((at + interval, i))),
                false => tally.failed += 1,
            }
        }
    }
    Ok(tally)
}

/// Renews the replica's leases every 2 s until `end`, as the lease keeper does.
async fn renew(store: Arc<dyn Store>, holder: String, writes: Arc<AtomicU64>, end: Instant) {
    while Instant::now() + Duration::from_secs(2) < end {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if store
            .renew_leases(&holder, now_ms(), 3_600_000)
            .await
            .is_ok()
        {
            writes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One interval of one rollout, as the controller handles it; false once the rollout ended.
async fn analyse(
    store: &dyn Store,
    w: &mut Watched,
    steps: &[Step],
    writes: &AtomicU64,
) -> Result<bool> {
    w.intervals += 1;
    let interval = synthetic_interval(w);
    let fence = w.fence.clone();
    fenced(
        fence.clone(),
        store.append_interval(&w.rollout.id, &interval),
    )
    .await?;
    writes.fetch_add(1, Ordering::Relaxed);
    let decision = w.judge.observe(&interval);
    let now = now_ms();
    let next = backstop_core::rollout::next(&Observation {
        steps,
        step_index: usize::try_from(w.rollout.step_index).unwrap_or(0),
        step_started_at: w.rollout.step_started_at_ms.unwrap_or(now),
        judge: decision,
        degraded: false,
        baseline_down: false,
        failed_health_checks: 0,
        health_check_limit: 3,
        now,
    });
    let (changed, more) = match next {
        Next::Wait => (false, true),
        Next::Advance { index, weight } => {
            w.rollout.step_index = i64::try_from(index).unwrap_or(0);
            w.rollout.canary_weight = weight;
            w.rollout.step_started_at_ms = Some(now);
            (true, true)
        }
        Next::Hold | Next::Pause { .. } => (false, true),
        Next::Promote => {
            w.rollout.phase = Phase::Promoted;
            (true, false)
        }
        Next::Fail { reason } | Next::Break { reason } => {
            w.rollout.phase = Phase::Failed;
            w.rollout.reason = Some(reason);
            w.rollout.verdict = Some(w.judge.report());
            (true, false)
        }
    };
    if changed {
        w.rollout.updated_at_ms = now;
        fenced(fence, store.update_rollout(&w.rollout)).await?;
        writes.fetch_add(1, Ordering::Relaxed);
    }
    Ok(more)
}

/// Counts of one interval: ~100 requests per arm, 0.5 % errors (10 % on a bad canary), latency
/// buckets around 20 ms.
fn synthetic_interval(w: &mut Watched) -> Interval {
    let mut arm = |error_ratio: f64| {
        let requests = 80 + next_random(&mut w.rng) % 41;
        let errors = (0..requests)
            .filter(|_| (next_random(&mut w.rng) % 10_000) as f64 / 10_000.0 < error_ratio)
            .count() as u64;
        let fast = requests * 6 / 10;
        let buckets = vec![
            (10.0, requests / 10),
            (25.0, fast),
            (50.0, requests * 95 / 100),
            (100.0, requests * 99 / 100),
            (f64::INFINITY, requests),
        ];
        ArmCounts {
            requests,
            errors,
            latency_le_ms: Some(buckets),
        }
    };
    let baseline = arm(0.005);
    let canary = arm(if w.bad { 0.1 } else { 0.005 });
    Interval {
        t: f64::from(w.intervals) * 5.0,
        baseline,
        canary,
        log_lines: None,
    }
}

/// splitmix64: a fast, seedable stream (the bench needs no cryptographic randomness).
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Service `s{i}` with its last known good `v1` and a rollout of `v2` under way.
async fn seed(store: &dyn Store, i: usize, now: Millis) -> Result<Rollout> {
    let service = format!("s{i:06}");
    for version in ["v1", "v2"] {
        let command = format!("simulated {service} {version}");
        store
            .create_release(&Release {
                id: Release::id_for(&service, version),
                service: service.clone(),
                version: version.to_string(),
                sha256: backstop_core::secret::hash_token(&command),
                artifact: Artifact::Command(command),
                env: BTreeMap::new(),
                secrets: BTreeMap::new(),
                status: ReleaseStatus::Ok,
                bad_reason: None,
                created_at_ms: now,
                schema: None,
            })
            .await?;
    }
    store
        .put_environment(&EnvironmentState {
            service: service.clone(),
            env: "prod".into(),
            lkg_release_id: Some(Release::id_for(&service, "v1")),
            stable_instance_id: None,
            previous_lkg_release_id: None,
        })
        .await?;
    let rollout = Rollout {
        id: format!("bench-{i:06}"),
        service: service.clone(),
        env: "prod".into(),
        from_release_id: Some(Release::id_for(&service, "v1")),
        to_release_id: Release::id_for(&service, "v2"),
        phase: Phase::Progressing,
        step_index: 0,
        step_started_at_ms: Some(now),
        canary_weight: 10.0,
        canary_instance_id: None,
        created_at_ms: now,
        updated_at_ms: now,
        actor: "bench".into(),
        reason: None,
        verdict: None,
        severity: None,
        escalation_deadline_ms: None,
        acknowledged_by: None,
    };
    store.create_rollout(&rollout).await?;
    Ok(rollout)
}

fn now_ms() -> Millis {
    backstop_core::clock::Clock::now_ms(&backstop_server::SystemClock)
}

/// This process's resident set, in KiB (`VmRSS` of `/proc/self/status`).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU-seconds this process used (user + system, from `/proc/self/stat`, in the kernel's
/// 100 Hz ticks).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

impl Render for Report {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "Concurrent rollouts, one analysis every {:.0} s each, {} intervals measured\n",
            self.interval_s, self.intervals
        )?;
        writeln!(
            w,
            "{:<22} {:>8} {:>11} {:>10} {:>6} {:>8} {:>8} {:>9} {:>11}",
            "store",
            "rollouts",
            "analyses/s",
            "per core",
            "cores",
            "p50 ms",
            "p99 ms",
            "writes/s",
            "KiB/rollout"
        )?;
        for r in &self.runs {
            writeln!(
                w,
                "{:<22} {:>8} {:>11.0} {:>10.0} {:>6.2} {:>8.1} {:>8.1} {:>9.0} {:>11.1}",
                r.store.label(),
                r.rollouts,
                r.analyses_per_s,
                r.analyses_per_core_s,
                r.cores_busy,
                r.p50_ms,
                r.p99_ms,
                r.store_writes_per_s,
                r.kib_per_rollout
            )?;
        }
        writeln!(w)?;
        for r in &self.runs {
            let on_time = r.p99_ms < 1000.0;
            writeln!(
                w,
                "{} × {}: p99 {} 1 s{}; memory {:.0}× less per rollout than Argo Rollouts' ~1 MiB (argo-rollouts#2855)",
                r.rollouts,
                r.store.label(),
                if on_time { "under" } else { "OVER" },
                if on_time {
                    String::new()
                } else {
                    format!(
                        " ({:.0} analyses/s asked, {:.0}/s done: {})",
                        r.rollouts as f64 / self.interval_s,
                        r.analyses_per_s,
                        if r.cores_busy > 0.9 * r.replicas as f64 {
                            "CPU-bound"
                        } else {
                            "waiting on the store's writes"
                        }
                    )
                },
                self.peer_kib_per_rollout / r.kib_per_rollout.max(0.1)
            )?;
        }
        Ok(())
    }
}
