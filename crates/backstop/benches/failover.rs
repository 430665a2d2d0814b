//! The failover benchmark: three `backstop serve` replicas on one real PostgreSQL, rollouts and
//! recoveries one after another, and the replica holding the running one's lease killed
//! (`kill -9`) at a random point of it, again and again. Measures how long until another
//! replica holds the lease (it resumes the work at once), and checks what a failover must not
//! do: a finished step run again, a rollout lost, the audit chain broken.
//!
//! The peers' figure is their controllers' leader election: Argo Rollouts and Flagger run one
//! active controller behind a Kubernetes lease of 15 s (client-go's defaults: lease 15 s,
//! renew deadline 10 s, retry 2 s), so a controller that dies is replaced after up to 15 s plus
//! a retry period; Backstop's leases are per rollout and last 6 s.
//!
//! `cargo bench -p backstop --bench failover [-- --kills 50 --output json]`

use std::time::{Duration, Instant};

use backstop_testkit::servers::Postgres;
use backstop_testkit::{Daemon, Traffic, free_port, poll_until, shop_config};
use clap::{Parser, ValueEnum};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::ConnectOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Parser)]
#[command(
    about = "Kill the lease holder at random points of rollouts and recoveries; measure failover."
)]
struct Args {
    /// How many times the holder is killed.
    #[arg(long, default_value_t = 50)]
    kills: usize,
    /// Seed of the random points.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Passed by `cargo bench` to every bench target; nothing to do with it here.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The peers' controller lease (Argo Rollouts, Flagger: client-go leader election).
const PEER_LEASE: Duration = Duration::from_secs(15);
const DATABASE: &str = "backstop";

struct Store {
    rt: tokio::runtime::Runtime,
    conn: sqlx::PgConnection,
}

impl Store {
    /// The (replica id, pid) holding an unexpired `lease`, if any.
    fn holder(&mut self, lease: &str) -> Option<(String, u64)> {
        let Store { rt, conn } = self;
        rt.block_on(async {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT l.holder, r.pid FROM leases l JOIN replicas r ON r.id = l.holder \
                 WHERE l.key = $1 AND l.expires_at_ms > (extract(epoch from now()) * 1000)::bigint",
            )
            .bind(lease)
            .fetch_optional(&mut *conn)
            .await
            .unwrap()
            .map(|(id, pid)| (id, pid as u64))
        })
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `(kind, attempts, status)` of each step of a rollout's recovery.
fn steps(rollout: &Value) -> Vec<(String, u64, String)> {
    rollout["recovery"]["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    (
                        s["step"]["kind"].as_str().unwrap_or("?").to_string(),
                        s["attempts"].as_u64().unwrap_or(0),
                        s["status"].as_str().unwrap_or("?").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pg = rt.block_on(async {
        let pg = Postgres::start().await;
        pg.create_database(DATABASE).await;
        pg
    });
    let conn = rt.block_on(async {
        pg.cluster()
            .connect_options(DATABASE)
            .connect()
            .await
            .unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    let proxy_port = free_port();
    let url = pg.url(DATABASE);
    let first = Daemon::start_with_env(
        &dir.path().join("state"),
        // Half the releases are bad on purpose: the breaker must not pause the run.
        &format!(
            "defaults:\n  breaker: {{trips_after: 100000, within: 1m}}\n{}",
            shop_config(proxy_port, "[{weight: 50, for: 4s}, {weight: 100}]")
        ),
        proxy_port,
        &[("BACKSTOP_DATABASE_URL", &url)],
    );
    first.register("v0", 0.0);
    first.rollout_wait("v0", 0);
    let mut store = Store { rt, conn };
    let mut replicas = vec![first];
    for name in ["b", "c"] {
        let next = replicas[0].another_replica(name);
        replicas.push(next);
    }
    let traffic = Traffic::start(proxy_port, 50.0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut resumed = Vec::new();
    let (mut lost, mut duplicated, mut unresumed) = (0, 0, 0);
    let mut restarted_names = 0;
    for kill in 0..args.kills {
        let bad = kill % 2 == 1;
        let version = format!("v{}", kill + 1);
        let asked = &replicas[kill % replicas.len()];
        asked.register(&version, if bad { 0.6 } else { 0.0 });
        let id = asked.rollout_start(&version);
        let lease = format!("rollout/{id}");
        // A random point: of the canary's step for a good release; of the recovery for a bad one.
        if bad {
            let _ = poll_until(
                Duration::from_secs(60),
                || {
                    asked.rollout(&id)["rollout"]["phase"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                },
                |p| p == "failed" || p == "recovering" || p == "recovered",
            );
            std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        } else {
            std::thread::sleep(Duration::from_millis(rng.random_range(200..4_000)));
        }
        let Some((holder, pid)) = store.holder(&lease) else {
            // Finished before the kill: nothing to fail over; counted as a kill of nothing.
            eprintln!("kill {kill}: {id} had finished; skipped");
            continue;
        };
        let victim = replicas
            .iter()
            .position(|d| d.child.as_ref().is_some_and(|c| u64::from(c.id()) == pid))
            .expect("the holder is one of the bench's replicas");
        replicas[victim].kill9();
        let killed = Instant::now();
        let taken = poll_until(
            Duration::from_secs(60),
            || {
                let phase = replicas[(victim + 1) % 3].rollout(&id)["rollout"]["phase"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                (store.holder(&lease), phase)
            },
            |(h, phase)| {
                h.as_ref().is_some_and(|(id, _)| *id != holder)
                    || phase == "promoted"
                    || phase == "recovered"
            },
        );
        match taken {
            Ok((Some(_), _)) => resumed.push(killed.elapsed().as_secs_f64()),
            // Finished by the time anyone looked again: the work did not need a holder any more.
            Ok((None, _)) => resumed.push(killed.elapsed().as_secs_f64()),
            Err(_) => unresumed += 1,
        }
        // Back to three replicas (a restarted replica is a new one).
        restarted_names += 1;
        let again = replicas[(victim + 1) % 3].another_replica(&format!("r{restarted_names}"));
        replicas[victim] = again;
        let end = poll_until(
            Duration::from_secs(120),
            || replicas[(victim + 1) % 3].rollout(&id),
            |r| {
                matches!(
                    r["rollout"]["phase"].as_str(),
                    Some("promoted" | "recovered")
                )
            },
        );
        match end {
            Ok(r) => {
                let steps = steps(&r);
                // A step interrupted by the kill runs again (attempts 2); more than one such
                // step, or one attempted 3 times, would be a step applied twice.
                let again = steps.iter().filter(|(_, n, _)| *n > 1).count();
                if again > 1 || steps.iter().any(|(_, n, _)| *n > 2) {
                    duplicated += 1;
                    eprintln!("kill {kill}: {id} steps {steps:?}");
                }
            }
            Err(r) => {
                lost += 1;
                eprintln!(
                    "kill {kill}: {id} never finished: {}",
                    r["rollout"]["phase"]
                );
            }
        }
    }
    traffic.stop();
    let audit = replicas[0].cli_json(&["audit", "verify"], 0);
    let intact = audit["ok"] == true;
    resumed.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&resumed, 50.0),
        percentile(&resumed, 99.0),
        resumed.last().copied().unwrap_or(f64::NAN),
    );
    let result = json!({
        "kills": args.kills,
        "failovers": resumed.len(),
        "not_resumed": unresumed,
        "resume_s": {"p50": p50, "p99": p99, "max": max},
        "peer_lease_s": PEER_LEASE.as_secs_f64(),
        "p99_vs_peer_lease": PEER_LEASE.as_secs_f64() / p99,
        "duplicated_steps": duplicated,
        "lost_rollouts": lost,
        "audit_intact": intact,
        "audit": audit,
    });
    match args.output {
        Output::Json => println!("{result:#}"),
        Output::Text => {
            println!(
                "| failover (3 replicas, {} kills of the lease holder) | p50 | p99 | max |",
                args.kills
            );
            println!("|---|---|---|---|");
            println!(
                "| time until another replica holds the work | {p50:.1} s | {p99:.1} s | {max:.1} s |"
            );
            println!(
                "\nPeers' controller lease: {:.0} s, {:.1}× Backstop's p99. Duplicated steps: {duplicated}; lost rollouts: {lost}; not resumed: {unresumed}; audit chain intact: {intact}.",
                PEER_LEASE.as_secs_f64(),
                PEER_LEASE.as_secs_f64() / p99
            );
        }
    }
    if lost + duplicated + unresumed == 0 && intact {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
