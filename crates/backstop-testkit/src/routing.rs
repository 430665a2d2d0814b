//! Routes between two versions and the switch-under-load check every router must pass.

use std::net::SocketAddr;
use std::time::Duration;

use backstop_drivers::load::{LoadConfig, LoadGen, LoadStats};
use backstop_drivers::proxy::{Proxy, Routes, Upstream};
use backstop_drivers::router::TrafficRouter;
use tokio::net::TcpListener;

/// Everything to `stable` (version, address) but `canary_weight` percent to `canary`, if any.
pub fn routes(
    stable: (&str, SocketAddr),
    canary: Option<(&str, SocketAddr)>,
    canary_weight: f64,
) -> Routes {
    let upstream = |(version, addr): (&str, SocketAddr)| Upstream {
        version: version.into(),
        addr,
        replicas: Vec::new(),
    };
    Routes {
        stable: Some(upstream(stable)),
        canary: canary.map(upstream),
        canary_weight,
    }
}

/// Stable `v1` at `v1`, canary `v2` at `v2` with `canary_weight` percent.
pub fn canary_routes(v1: SocketAddr, v2: SocketAddr, canary_weight: f64) -> Routes {
    routes(("v1", v1), Some(("v2", v2)), canary_weight)
}

/// Everything to `version` at `addr`, no canary.
pub fn stable_routes(version: &str, addr: SocketAddr) -> Routes {
    routes((version, addr), None, 0.0)
}

/// A built-in proxy named `name` on a free loopback port, sending traffic by `routes`.
pub async fn proxy(name: &str, routes: Routes) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port on 127.0.0.1");
    let proxy = Proxy::start(listener, name.to_owned()).await;
    proxy.set_routes(routes);
    proxy
}

/// Puts `router` through 0 → 10 → 50 → 100 → 0 % under a steady 300 req/s through `front` and
/// asserts zero failed requests and, per step, a measured split within 6 points of the weight
/// (after 150 ms for the switch to settle). Returns (requests sent, per-step measured %).
pub async fn switch_under_load(
    router: &dyn TrafficRouter,
    front: SocketAddr,
    v1: SocketAddr,
    v2: SocketAddr,
) -> (u64, Vec<(f64, f64)>) {
    router
        .apply(&canary_routes(v1, v2, 0.0))
        .await
        .expect("initial apply");
    let load = LoadGen::start(LoadConfig {
        target: front,
        path: "/".into(),
        rate_per_s: 300.0,
        concurrency: 32,
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut measured = Vec::new();
    for w in [10.0, 50.0, 100.0, 0.0] {
        router
            .apply(&canary_routes(v1, v2, w))
            .await
            .unwrap_or_else(|e| panic!("apply {w}%: {e}"));
        let cur = router.current().await.expect("current");
        assert_eq!(cur.canary_weight, w, "current after apply {w}%: {cur:?}");
        assert_eq!(cur.canary.as_ref().map(|u| u.version.as_str()), Some("v2"));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let before = load.stats();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let after = load.stats();
        let n = |s: &LoadStats, v: &str| s.ok_by_version.get(v).copied().unwrap_or(0);
        let c = n(&after, "v2") - n(&before, "v2");
        let s = n(&after, "v1") - n(&before, "v1");
        assert!(c + s > 150, "too few requests in the window: {}", c + s);
        let pct = c as f64 * 100.0 / (c + s) as f64;
        assert!(
            (pct - w).abs() <= 6.0,
            "weight {w}%: measured {pct:.1}% to canary ({c} of {})",
            c + s
        );
        measured.push((w, pct));
    }
    let stats = load.stop().await;
    assert_eq!(
        stats.failed, 0,
        "failed requests during the switches: {stats:?}"
    );
    assert!(stats.ok > 1000, "load too small: {stats:?}");
    (stats.sent, measured)
}
