//! The recovery benchmark: the same bad release against Backstop's default judge and the Flagger
//! tutorial policy (threshold judge, 1 min × 5), in one run, on a real harness on loopback: a
//! `backstop serve` process with the sample service behind a real HAProxy (or the built-in
//! proxy), steady load from the built-in generator, a bad release (a few percent of 5xx) as a
//! 10 % canary. Reports time to detect and to restore (from the first canary request) and the
//! failed requests users saw.
//!
//! `cargo bench -p backstop --bench recovery [-- --router builtin --rate 100 --output json]`
//!
//! A bench target rather than a `backstop` subcommand: it starts HAProxy itself, and starting
//! servers is test-kit work that shipped code must not carry.

use std::path::PathBuf;
use std::time::Duration;

use backstop_testkit::servers::{Server, haproxy, haproxy_socket};
use backstop_testkit::{DEMO_APP_RUN, Daemon, Traffic, free_port, poll_until};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchRouter {
    /// A real HAProxy (Debian package `haproxy`) driven through its runtime API.
    Haproxy,
    /// Backstop's built-in proxy.
    Builtin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Parser)]
#[command(
    about = "A bad canary on a real harness: Backstop's default judge vs the Flagger tutorial policy."
)]
struct Args {
    /// What stands in front of the sample service.
    #[arg(long, value_enum, default_value_t = BenchRouter::Haproxy)]
    router: BenchRouter,
    /// Requests per second of user traffic.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Error ratio of the bad release (the good one has 0.5 %).
    #[arg(long, default_value_t = 0.05)]
    bad_error_ratio: f64,
    /// Write the JSON result here as well.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Print text for people or JSON for programs.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Passed by `cargo bench` to every bench target; nothing to do with it here.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Serialize)]
struct RunResult {
    policy: String,
    time_to_detect_s: Option<f64>,
    time_to_restore_s: Option<f64>,
    /// Failed requests served by the bad version.
    user_errors: u64,
    /// Requests sent during the run.
    requests: u64,
    phase: String,
}

/// The bench service; `listen` only for the built-in proxy, `traffic` for other routers.
fn config(listen: Option<u16>, analysis: &str, traffic: &str) -> String {
    let listen = listen
        .map(|p| format!("\n        listen: 127.0.0.1:{p}"))
        .unwrap_or_default();
    format!(
        r#"services:
  - name: shop
    owner: bench
    tier: 1
{DEMO_APP_RUN}    rollout:
      steps:
        - {{weight: 10, for: 1h}}
        - {{weight: 100}}
{traffic}    analysis: {analysis}
    environments:
      - name: prod{listen}
"#
    )
}

/// How long one bad rollout may take (the Flagger policy needs about five minutes).
const ROLLOUT_LIMIT: Duration = Duration::from_secs(20 * 60);

fn run_policy(policy: &str, analysis: &str, args: &Args) -> RunResult {
    let dir = tempfile::Builder::new()
        .prefix("backstop-bench-")
        .tempdir()
        .expect("a temporary folder");
    // Lives until the run ends: HAProxy's process group is ended when it drops.
    let mut _haproxy: Option<Server> = None;
    let (config_text, proxy_port) = match args.router {
        BenchRouter::Builtin => {
            let port = free_port();
            (config(Some(port), analysis, ""), port)
        }
        BenchRouter::Haproxy => {
            let lb = tokio::runtime::Runtime::new()
                .expect("a runtime to start HAProxy")
                .block_on(haproxy());
            let traffic = format!(
                "    traffic:\n      router: haproxy\n      haproxy: {{socket: {}, backend: app}}\n",
                haproxy_socket(&lb).display()
            );
            let port = lb.port;
            _haproxy = Some(lb);
            (config(None, analysis, &traffic), port)
        }
    };
    let daemon = Daemon::start(&dir.path().join("state"), &config_text, proxy_port);
    daemon.register("good", 0.005);
    daemon.register("bad", args.bad_error_ratio);
    let first = daemon.rollout_wait("good", 0);
    assert_eq!(
        first["rollout"]["phase"], "promoted",
        "{policy}: the good release did not deploy"
    );
    let traffic = Traffic::start(proxy_port, args.rate);
    std::thread::sleep(Duration::from_secs(2));
    let id = daemon.rollout_start("bad");
    let mut last_seen = Value::Null;
    let ended = |d: &Value| {
        matches!(
            d["rollout"]["phase"].as_str(),
            Some("promoted" | "recovered" | "paused")
        )
    };
    let d = poll_until(
        ROLLOUT_LIMIT,
        || {
            let d = daemon.rollout(&id);
            let now = json!([d["rollout"]["phase"], d["rollout"]["canary_weight"]]);
            if now != last_seen {
                eprintln!("  [{policy}] bad release: {} ({}% canary)", now[0], now[1]);
                last_seen = now;
            }
            d
        },
        ended,
    )
    .unwrap_or_else(|d| {
        panic!("{policy}: rollout {id} did not finish within {ROLLOUT_LIMIT:?}: {d:#}")
    });
    assert_ne!(
        d["rollout"]["phase"], "paused",
        "{policy}: rollout {id} paused: {}",
        d["rollout"]["reason"]
    );
    std::thread::sleep(Duration::from_millis(500));
    let load = traffic.stop_stats();
    drop(daemon);
    let secs = |ms: &Value| ms.as_i64().map(|m| m as f64 / 1000.0);
    RunResult {
        policy: policy.to_string(),
        time_to_detect_s: secs(&d["timeline"]["time_to_detect_ms"]),
        time_to_restore_s: secs(&d["timeline"]["time_to_restore_ms"]),
        user_errors: load.failed_by_version.get("bad").copied().unwrap_or(0),
        requests: load.sent,
        phase: d["rollout"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let policies = [
        ("backstop", "{judge: sequential, alpha: 0.01, interval: 1s}"),
        (
            "flagger-tutorial",
            "{judge: threshold, interval: 5s, threshold: {preset: flagger-tutorial}}",
        ),
    ];
    let mut runs = Vec::new();
    for (policy, analysis) in policies {
        eprintln!("running policy {policy} …");
        runs.push(run_policy(policy, analysis, &args));
    }
    let ratio = |f: fn(&RunResult) -> Option<f64>| match (f(&runs[1]), f(&runs[0])) {
        (Some(peer), Some(ours)) if ours > 0.0 => Some(peer / ours),
        _ => None,
    };
    let restore_ratio = ratio(|r| r.time_to_restore_s);
    let detect_ratio = ratio(|r| r.time_to_detect_s);
    let errors_ratio = (runs[1].user_errors as f64) / (runs[0].user_errors.max(1) as f64);
    let result = json!({
        "runs": runs,
        "ratios": {"flagger_over_backstop": {"time_to_detect": detect_ratio, "time_to_restore": restore_ratio, "user_errors": errors_ratio}},
        "settings": {"rate_per_s": args.rate, "bad_error_ratio": args.bad_error_ratio, "canary_weight": 10, "router": format!("{:?}", args.router).to_lowercase()},
    });
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&result).unwrap())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    match args.output {
        Output::Json => println!("{result}"),
        Output::Text => {
            let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.2}"));
            println!(
                "{:<18} {:>16} {:>17} {:>12} {:>9}  outcome",
                "policy", "time_to_detect_s", "time_to_restore_s", "user_errors", "requests"
            );
            for r in &runs {
                println!(
                    "{:<18} {:>16} {:>17} {:>12} {:>9}  {}",
                    r.policy,
                    f(r.time_to_detect_s),
                    f(r.time_to_restore_s),
                    r.user_errors,
                    r.requests,
                    r.phase
                );
            }
            println!(
                "flagger-tutorial / backstop: {}× slower to detect, {}× slower to restore, {:.1}× more failed user requests",
                f(detect_ratio),
                f(restore_ratio),
                errors_ratio
            );
        }
    }
    if runs.iter().all(|r| r.phase == "recovered") {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
