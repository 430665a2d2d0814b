//! Overhead of the built-in proxy, measured side by side with direct requests in one run.
//!
//! ```text
//! cargo run --release -p backstop-drivers --example proxy_bench -- [SECONDS] [CONCURRENCY] [JSON_OUT]
//! ```
//!
//! Closed loop: CONCURRENCY keep-alive clients send GETs as fast as they can for SECONDS per
//! case, against an in-process upstream that answers immediately. Cases: direct to the
//! upstream, through the proxy with one upstream, through the proxy with a 50 % canary split.
//! Prints a table (throughput, client-side p50/p99 latency, ratios to direct) and writes the
//! same as JSON when JSON_OUT is given. Everything shares the machine's cores, so read ratios,
//! not absolute numbers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use backstop_testkit::routing::{canary_routes, proxy, stable_routes};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

async fn upstream(version: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                        "ok {version}"
                    )))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

struct Case {
    name: &'static str,
    requests: u64,
    failed: u64,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
}

async fn run_case(name: &'static str, target: SocketAddr, secs: f64, concurrency: usize) -> Case {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    let uri: hyper::Uri = format!("http://{target}/").parse().expect("uri");
    // Warm up the connection pool.
    let warm_until = Instant::now() + Duration::from_millis(300);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let uri = uri.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0u64;
            let start = warm_until;
            let end = start + Duration::try_from_secs_f64(secs).unwrap_or_default();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let req = Request::get(uri.clone())
                    .body(Empty::new())
                    .expect("request");
                let ok = match client.request(req).await {
                    Ok(resp) => {
                        let good = resp.status().is_success();
                        resp.into_body().collect().await.is_ok() && good
                    }
                    Err(_) => false,
                };
                if t0 >= start {
                    if ok {
                        lat.push(t0.elapsed().as_micros() as u64);
                    } else {
                        failed += 1;
                    }
                }
            }
            (lat, failed)
        });
    }
    let mut all = Vec::new();
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        let (lat, f) = r.expect("worker");
        all.extend(lat);
        failed += f;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Case {
        name,
        requests: all.len() as u64,
        failed,
        rps: all.len() as f64 / secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let concurrency: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(16);
    let json_out = args.get(2).cloned();

    let v1 = upstream("v1").await;
    let v2 = upstream("v2").await;
    let single = proxy("bench/single", stable_routes("v1", v1)).await;
    let split = proxy("bench/split", canary_routes(v1, v2, 50.0)).await;

    let cases = vec![
        run_case("direct", v1, secs, concurrency).await,
        run_case("proxy", single.local_addr(), secs, concurrency).await,
        run_case("proxy 50% split", split.local_addr(), secs, concurrency).await,
    ];
    let base = &cases[0];
    println!(
        "proxy_bench: {secs}s per case, {concurrency} keep-alive clients, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<16} {:>9} {:>7} {:>10} {:>9} {:>9} {:>10} {:>10}",
        "case", "requests", "failed", "req/s", "p50 us", "p99 us", "rps/direct", "p50/direct"
    );
    for c in &cases {
        println!(
            "{:<16} {:>9} {:>7} {:>10.0} {:>9} {:>9} {:>10.2} {:>10.2}",
            c.name,
            c.requests,
            c.failed,
            c.rps,
            c.p50_us,
            c.p99_us,
            c.rps / base.rps.max(1e-9),
            c.p50_us as f64 / (base.p50_us.max(1)) as f64
        );
    }
    let split_stats = split.stats();
    let canary_share = {
        let total: u64 = split_stats.iter().map(|s| s.requests).sum();
        let v2n = split_stats
            .iter()
            .find(|s| s.version == "v2")
            .map_or(0, |s| s.requests);
        v2n as f64 / total.max(1) as f64
    };
    println!(
        "canary share in the split case: {:.3} (weight 0.500)",
        canary_share
    );
    if let Some(path) = json_out {
        let rows: Vec<String> = cases
            .iter()
            .map(|c| format!(
                "{{\"case\":\"{}\",\"requests\":{},\"failed\":{},\"rps\":{:.1},\"p50_us\":{},\"p99_us\":{},\"rps_ratio\":{:.3}}}",
                c.name, c.requests, c.failed, c.rps, c.p50_us, c.p99_us, c.rps / base.rps.max(1e-9)
            ))
            .collect();
        let json = format!(
            "{{\"seconds\":{secs},\"concurrency\":{concurrency},\"canary_share\":{canary_share:.4},\"cases\":[{}]}}\n",
            rows.join(",")
        );
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("proxy_bench: cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
    single.shutdown().await;
    split.shutdown().await;
}
