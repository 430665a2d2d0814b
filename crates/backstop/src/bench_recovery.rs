//! `backstop bench recovery`: the same bad release against Backstop's default judge and the
//! Flagger tutorial policy (threshold judge, 1 min × 5), in one run, on a real harness on
//! loopback: the sample service behind the router, steady load from the built-in generator, a
//! bad release (a few percent of 5xx) as a 10 % canary. Reports time to detect and to restore
//! (from the first canary request) and the failed requests users saw.

use std::time::Duration;

use anyhow::{Result, bail};
use backstop_core::model::Phase;
use backstop_drivers::load::{LoadConfig, LoadGen};
use serde::Serialize;
use serde_json::json;

use crate::embedded::Embedded;
use crate::{Output, OutputArgs};

#[derive(clap::Args)]
pub struct RecoveryBenchArgs {
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

fn config(proxy_port: u16, analysis: &str) -> String {
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
    analysis: {analysis}
    environments:
      - name: prod
        listen: 127.0.0.1:{proxy_port}
"#
    )
}

async fn run_policy(policy: &str, analysis: &str, args: &RecoveryBenchArgs) -> Result<RunResult> {
    let dir = tempfile::Builder::new()
        .prefix("backstop-bench-")
        .tempdir()?;
    let proxy_port = backstop_drivers::process::free_port()?;
    let daemon = Embedded::start(dir.path(), &config(proxy_port, analysis)).await?;
    daemon
        .register(SERVICE, "good", json!({"DEMO_ERROR_RATIO": "0.005"}))
        .await?;
    daemon
        .register(
            SERVICE,
            "bad",
            json!({"DEMO_ERROR_RATIO": args.bad_error_ratio.to_string()}),
        )
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
        "settings": {"rate_per_s": args.rate, "bad_error_ratio": args.bad_error_ratio, "canary_weight": 10, "router": "builtin"},
    });
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    match args.out.output {
        Output::Json => println!("{}", serde_json::to_string(&result)?),
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
    let ok = runs.iter().all(|r| r.phase == Phase::Recovered);
    Ok(if ok { 0 } else { 1 })
}
