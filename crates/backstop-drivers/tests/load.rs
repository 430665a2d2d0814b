//! The load generator against real servers on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use backstop_drivers::load::{LoadConfig, LoadGen, LoadStats};
use backstop_drivers::process::free_port;
use backstop_testkit::routing::{self, routes, stable_routes};
use backstop_testkit::upstream;

fn start_load(target: SocketAddr, path: &str, rate_per_s: f64, concurrency: usize) -> LoadGen {
    LoadGen::start(LoadConfig {
        target,
        path: path.into(),
        rate_per_s,
        concurrency,
    })
}

/// The stats of [`start_load`] stopped after `time`.
async fn load_for(
    target: SocketAddr,
    path: &str,
    rate_per_s: f64,
    concurrency: usize,
    time: Duration,
) -> LoadStats {
    let load = start_load(target, path, rate_per_s, concurrency);
    tokio::time::sleep(time).await;
    load.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_ok_and_failures_by_version() {
    let good = upstream::upstream("v1").await;
    let p = routing::proxy("load/test", stable_routes("v1", good)).await;
    let load = start_load(p.local_addr(), "/", 200.0, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mid = load.stats();
    assert!(mid.sent > 0 && mid.failed == 0, "{mid:?}");
    assert!(mid.first_failure_at.is_none());
    // Now everything goes to a canary that is down.
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    p.set_routes(routes(("v1", good), Some(("v3", dead)), 100.0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let end = load.stop().await;
    assert_eq!(end.sent, end.ok + end.failed, "{end:?}");
    assert!(end.failed > 0, "{end:?}");
    assert_eq!(
        end.failed_by_version.get("v3").copied(),
        Some(end.failed),
        "{end:?}"
    );
    assert_eq!(
        end.ok_by_version.get("v1").copied(),
        Some(end.ok),
        "{end:?}"
    );
    assert!(end.first_failure_at.is_some() && end.first_failure_at <= end.last_failure_at);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_2xx_and_transport_errors_are_failures() {
    let up = upstream::upstream("v1").await;
    // Directly against an upstream that answers 500: failures without a version header.
    let s = load_for(up, "/fail", 100.0, 2, Duration::from_millis(200)).await;
    assert!(s.sent > 0 && s.failed == s.sent && s.ok == 0, "{s:?}");
    assert!(s.failed_by_version.is_empty(), "{s:?}");

    let dead = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let s = load_for(dead, "/", 100.0, 2, Duration::from_millis(200)).await;
    assert!(s.sent > 0 && s.failed == s.sent, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paces_at_the_requested_rate() {
    let up = upstream::upstream("v1").await;
    let s = load_for(up, "/", 50.0, 4, Duration::from_millis(500)).await;
    // 50/s over 0.5 s is 25 requests (+1 for the immediate first tick); never a burst beyond it.
    assert!(s.sent <= 27, "sent more than the schedule allows: {s:?}");
    assert!(s.sent >= 5, "{s:?}");
    assert_eq!(s.ok, s.sent);

    let idle = load_for(up, "/", 0.0, 4, Duration::from_millis(50)).await;
    assert_eq!(idle.sent, 0);
}
