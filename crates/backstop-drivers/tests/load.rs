//! The load generator against real servers on loopback.

use std::time::Duration;

use backstop_drivers::load::{LoadConfig, LoadGen};
use backstop_drivers::process::free_port;
use backstop_drivers::proxy::{Proxy, Routes, Upstream};
use backstop_testkit::upstream;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_ok_and_failures_by_version() {
    let good = upstream::upstream("v1").await;
    let p = Proxy::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        "load/test".into(),
    )
    .await;
    p.set_routes(Routes {
        stable: Some(Upstream {
            version: "v1".into(),
            addr: good,
        }),
        canary: None,
        canary_weight: 0.0,
    });
    let load = LoadGen::start(LoadConfig {
        target: p.local_addr(),
        path: "/".into(),
        rate_per_s: 200.0,
        concurrency: 4,
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mid = load.stats();
    assert!(mid.sent > 0 && mid.failed == 0, "{mid:?}");
    assert!(mid.first_failure_at.is_none());
    // Now everything goes to a canary that is down.
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    p.set_routes(Routes {
        stable: Some(Upstream {
            version: "v1".into(),
            addr: good,
        }),
        canary: Some(Upstream {
            version: "v3".into(),
            addr: dead,
        }),
        canary_weight: 100.0,
    });
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
    let load = LoadGen::start(LoadConfig {
        target: up,
        path: "/fail".into(),
        rate_per_s: 100.0,
        concurrency: 2,
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = load.stop().await;
    assert!(s.sent > 0 && s.failed == s.sent && s.ok == 0, "{s:?}");
    assert!(s.failed_by_version.is_empty(), "{s:?}");

    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let load = LoadGen::start(LoadConfig {
        target: dead,
        path: "/".into(),
        rate_per_s: 100.0,
        concurrency: 2,
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = load.stop().await;
    assert!(s.sent > 0 && s.failed == s.sent, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paces_at_the_requested_rate() {
    let up = upstream::upstream("v1").await;
    let load = LoadGen::start(LoadConfig {
        target: up,
        path: "/".into(),
        rate_per_s: 50.0,
        concurrency: 4,
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = load.stop().await;
    // 50/s over 0.5 s is 25 requests (+1 for the immediate first tick); never a burst beyond it.
    assert!(s.sent <= 27, "sent more than the schedule allows: {s:?}");
    assert!(s.sent >= 5, "{s:?}");
    assert_eq!(s.ok, s.sent);

    let idle = LoadGen::start(LoadConfig {
        target: up,
        path: "/".into(),
        rate_per_s: 0.0,
        concurrency: 4,
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(idle.stop().await.sent, 0);
}
