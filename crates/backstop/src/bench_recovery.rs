//! `backstop bench recovery`: the same bad release against Backstop's default judge and the
//! Flagger tutorial policy (threshold judge, 1 min × 5), in one run, on a real harness on
//! loopback: the sample service behind the router, steady load from the built-in generator, a
//! bad release (a few percent of 5xx) as a 10 % canary. Reports time to detect and to restore
//! (from the first canary request) and the failed requests users saw.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{Result, bail};
use backstop_core::model::Phase;
use backstop_drivers::load::{LoadConfig, LoadGen};
use serde::Serialize;
use serde_json::json;

use crate::embedded::Embedded;
use crate::output::{OutputArgs, Render};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchRouter {
    /// A real HAProxy (Debian package `haproxy`) driven through its runtime API.
    Haproxy,
    /// Backstop's built-in proxy.
    Builtin,
}

#[derive(clap::Args)]
pub struct RecoveryBenchArgs {
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
    json_out: Option<std::path::PathBuf>,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Debug, Serialize)]
pub struct RunResult {
    pub policy: String,
    pub time_to_detect_s: Option<f64>,
    pub time_to_restore_s: Option<f64>,
    /// Failed requests served by the bad version.
    pub user_errors: u64,
    /// Requests sent during the run.
    pub requests: u64,
    pub phase: Phase,
}

const SERVICE: &str = "shop";

/// HAProxy in the foreground in a temp dir: frontend on a free port, backend `app` with the
/// placeholder servers `stable` and `canary` that Backstop points at the versions.
struct Haproxy {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    port: u16,
    socket: std::path::PathBuf,
}

async fn start_haproxy() -> Result<Haproxy> {
    let bin = [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists());
    let Some(bin) = bin else {
        bail!(
            "haproxy not found: install it with `apt-get install -y haproxy`, or run with --router builtin"
        );
    };
    let dir = tempfile::Builder::new()
        .prefix("backstop-haproxy-")
        .tempdir()?;
    let port = backstop_drivers::process::free_port()?;
    let socket = dir.path().join("admin.sock");
    let cfg = format!(
        "global\n  stats socket {} level admin\n  maxconn 4000\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  timeout http-keep-alive 30s\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend app\n\
         backend app\n  balance roundrobin\n  server stable 127.0.0.1:1 weight 100 disabled\n  server canary 127.0.0.1:1 weight 0 disabled\n",
        socket.display()
    );
    let cfg_path = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg)?;
    let child = tokio::process::Command::new(&bin)
        .arg("-f")
        .arg(&cfg_path)
        .arg("-db")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    for _ in 0..100 {
        if socket.exists()
            && tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        {
            return Ok(Haproxy {
                _child: child,
                _dir: dir,
                port,
                socket,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("haproxy did not start on port {port}")
}

/// The bench service; `listen` only for the built-in proxy, `traffic` for other routers.
fn config(listen: Option<u16>, analysis: &str, traffic: &str) -> String {
    let listen = listen
        .map(|p| format!("\n        listen: 127.0.0.1:{p}"))
        .unwrap_or_default();
    format!(
        r#"services:
  - name: {SERVICE}
    owner: bench
    tier: 1
    run:
      command: "{{artifact}} demo-app --port {{port}} --version {{version}}"
      health: {{http: /healthz, start_timeout: 20s}}
      scale_down_delay: 1s
    rollout:
      steps:
        - {{weight: 10, for: 1h}}
        - {{weight: 100}}
{traffic}    analysis: {analysis}
    environments:
      - name: prod{listen}
"#
    )
}

async fn run_policy(policy: &str, analysis: &str, args: &RecoveryBenchArgs) -> Result<RunResult> {
    let dir = tempfile::Builder::new()
        .prefix("backstop-bench-")
        .tempdir()?;
    let (config_text, proxy_port, _haproxy) = match args.router {
        BenchRouter::Builtin => {
            let port = backstop_drivers::process::free_port()?;
            (config(Some(port), analysis, ""), port, None)
        }
        BenchRouter::Haproxy => {
            let h = start_haproxy().await?;
            let traffic = format!(
                "    traffic:\n      router: haproxy\n      haproxy: {{socket: {}, backend: app}}\n",
                h.socket.display()
            );
            (config(None, analysis, &traffic), h.port, Some(h))
        }
    };
    let daemon = Embedded::start(dir.path(), &config_text).await?;
    daemon.register(SERVICE, "good", 0.005).await?;
    daemon
        .register(SERVICE, "bad", args.bad_error_ratio)
        .await?;
    let first = daemon
        .rollout_to_end(SERVICE, "prod", "good", Duration::from_secs(60), |_| {})
        .await?;
    if first.rollout.phase != Phase::Promoted {
        bail!("{policy}: the good release did not deploy");
    }
    let load = LoadGen::start(LoadConfig {
        target: ([127, 0, 0, 1], proxy_port).into(),
        path: "/".into(),
        rate_per_s: args.rate,
        concurrency: 64,
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = daemon.rollout_to_end(SERVICE, "prod", "bad", Duration::from_secs(20 * 60), |d| {
        eprintln!(
            "  [{policy}] bad release: {} ({}% canary)",
            d.rollout.phase, d.rollout.canary_weight
        );
    });
    let d = d.await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let traffic = load.stop().await;
    daemon.stop().await?;
    let secs = |ms: Option<i64>| ms.map(|m| m as f64 / 1000.0);
    Ok(RunResult {
        policy: policy.to_string(),
        time_to_detect_s: secs(d.timeline.time_to_detect_ms),
        time_to_restore_s: secs(d.timeline.time_to_restore_ms),
        user_errors: traffic.failed_by_version.get("bad").copied().unwrap_or(0),
        requests: traffic.sent,
        phase: d.rollout.phase,
    })
}

pub async fn run(args: RecoveryBenchArgs) -> Result<i32> {
    crate::init_logs("pretty", "error");
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
        runs.push(run_policy(policy, analysis, &args).await?);
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
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    let ok = runs.iter().all(|r| r.phase == Phase::Recovered);
    args.out.output.print(&BenchReport {
        result,
        runs,
        detect_ratio,
        restore_ratio,
        errors_ratio,
    });
    Ok(if ok { 0 } else { 1 })
}

/// The runs side by side and how the peer policy compares with Backstop's.
#[derive(Serialize)]
#[serde(transparent)]
struct BenchReport {
    result: serde_json::Value,
    #[serde(skip)]
    runs: Vec<RunResult>,
    #[serde(skip)]
    detect_ratio: Option<f64>,
    #[serde(skip)]
    restore_ratio: Option<f64>,
    #[serde(skip)]
    errors_ratio: f64,
}

impl Render for BenchReport {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.2}"));
        writeln!(
            w,
            "{:<18} {:>16} {:>17} {:>12} {:>9}  outcome",
            "policy", "time_to_detect_s", "time_to_restore_s", "user_errors", "requests"
        )?;
        for r in &self.runs {
            writeln!(
                w,
                "{:<18} {:>16} {:>17} {:>12} {:>9}  {}",
                r.policy,
                f(r.time_to_detect_s),
                f(r.time_to_restore_s),
                r.user_errors,
                r.requests,
                r.phase
            )?;
        }
        writeln!(
            w,
            "flagger-tutorial / backstop: {}× slower to detect, {}× slower to restore, {:.1}× more failed user requests",
            f(self.detect_ratio),
            f(self.restore_ratio),
            self.errors_ratio
        )
    }

    /// One line: the shape benchmark scripts read.
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(&self.result)
    }
}
