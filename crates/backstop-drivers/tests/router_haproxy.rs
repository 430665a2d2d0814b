//! HAProxy router against a real `haproxy` on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use backstop_drivers::router::haproxy::{HaproxyAddress, HaproxyConfig, HaproxyRouter};
use backstop_drivers::router::{RouterError, TargetState, TrafficRouter};
use backstop_testkit::free_port;
use backstop_testkit::routing::{canary_routes, stable_routes, switch_under_load};
use backstop_testkit::servers::*;
use backstop_testkit::upstream::{self, assert_served_by, versioned_pair, versioned_upstream};

fn router(s: &Server) -> HaproxyRouter {
    HaproxyRouter::new(HaproxyConfig::new(
        HaproxyAddress::Unix(haproxy_socket(s)),
        "app",
    ))
}

/// HAProxy, a router for its `app` backend, and the v1 and v2 upstreams.
async fn haproxy_and_versions() -> (Server, HaproxyRouter, SocketAddr, SocketAddr) {
    let lb = haproxy().await;
    let (v1, v2) = versioned_pair().await;
    let r = router(&lb);
    (lb, r, v1, v2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_under_load_drops_nothing_and_splits_by_weight() {
    let (lb, r, v1, v2) = haproxy_and_versions().await;
    let (sent, measured) = switch_under_load(&r, lb.addr(), v1, v2).await;
    eprintln!("haproxy: {sent} requests, measured split per step: {measured:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_is_idempotent_and_current_reads_the_servers() {
    let (lb, r, v1, v2) = haproxy_and_versions().await;
    r.apply(&canary_routes(v1, v2, 25.0)).await.unwrap();
    let before = r.servers().await.unwrap();
    r.apply(&canary_routes(v1, v2, 25.0)).await.unwrap();
    let (s, c) = r.servers().await.unwrap();
    assert_eq!((s.weight, c.weight), (75, 25));
    assert_eq!((s, c), before);
    let cur = r.current().await.unwrap();
    assert_eq!(cur, canary_routes(v1, v2, 25.0));

    // A fresh router (e.g. after a restart), here over the TCP runtime API, reads the same
    // split, labelling by address.
    let fresh = HaproxyRouter::new(HaproxyConfig::new(
        haproxy_tcp_api(&lb).parse().unwrap(),
        "app",
    ));
    let cur = fresh.current().await.unwrap();
    assert_eq!(cur.canary_weight, 25.0);
    assert_eq!(cur.stable.unwrap().version, v1.to_string());

    // Only stable: canary goes to maintenance and gets nothing.
    let only = stable_routes("v1", v1);
    r.apply(&only).await.unwrap();
    assert_eq!(r.current().await.unwrap(), only);
    assert_served_by(lb.addr(), 20, "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_requests_and_errors_per_server() {
    let (lb, r, v1, v2) = haproxy_and_versions().await;
    r.apply(&canary_routes(v1, v2, 50.0)).await.unwrap();
    let client = upstream::client();
    for i in 0..100 {
        let path = if i % 10 == 0 { "/fail" } else { "/" };
        upstream::get(&client, lb.addr(), path).await;
    }
    let stats = r.stats().await.unwrap().expect("haproxy observes traffic");
    let get = |v: &str| stats.iter().find(|s| s.version == v).cloned().unwrap();
    let (s1, s2) = (get("v1"), get("v2"));
    assert_eq!(s1.requests + s2.requests, 100, "{stats:?}");
    assert_eq!(s1.errors + s2.errors, 10, "{stats:?}");
    // Weighted round robin at 50/50 alternates.
    assert!((40..=60).contains(&s2.requests), "{stats:?}");
    assert!(s1.first_request_at.is_some() && s2.first_request_at.is_some());
    for s in [&s1, &s2] {
        assert_eq!(s.last_error_at.is_some(), s.errors > 0, "{s:?}");
    }
    assert!(s1.latency_buckets_ms.is_empty());

    // Promotion: the stable server now runs v2's address; v1 keeps what it counted.
    let promoted = stable_routes("v2", v2);
    r.apply(&promoted).await.unwrap();
    assert_served_by(lb.addr(), 10, "v2").await;
    let after = r.stats().await.unwrap().unwrap();
    let get = |v: &str| after.iter().find(|s| s.version == v).cloned().unwrap();
    assert_eq!(get("v1").requests, s1.requests, "{after:?}");
    assert_eq!(get("v2").requests, s2.requests + 10, "{after:?}");
}

#[tokio::test]
async fn unreachable_socket_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nope.sock");
    let r = HaproxyRouter::new(HaproxyConfig::new(
        HaproxyAddress::Unix(sock.clone()),
        "app",
    ));
    let v = "127.0.0.1:9".parse().unwrap();
    let err = r.apply(&canary_routes(v, v, 10.0)).await.unwrap_err();
    assert!(matches!(err, RouterError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&sock.display().to_string()),
        "{err}"
    );
    assert_eq!(err.target_state(), TargetState::Unchanged);

    let port = free_port();
    let mut cfg = HaproxyConfig::new(format!("127.0.0.1:{port}").parse().unwrap(), "app");
    cfg.command_timeout = Duration::from_secs(2);
    let err = HaproxyRouter::new(cfg).current().await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("tcp 127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_backend_or_server_is_named() {
    let lb = haproxy().await;
    let v = "127.0.0.1:9".parse().unwrap();
    let mut cfg = HaproxyConfig::new(HaproxyAddress::Unix(haproxy_socket(&lb)), "nosuch");
    let err = HaproxyRouter::new(cfg.clone())
        .apply(&canary_routes(v, v, 1.0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("find backend"), "{err}");
    cfg.backend = "app".into();
    cfg.canary_server = "blue".into();
    let err = HaproxyRouter::new(cfg)
        .apply(&canary_routes(v, v, 1.0))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no server named blue") && text.contains("stable, canary"),
        "{text}"
    );
    assert_eq!(err.target_state(), TargetState::Unchanged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_never_comes_up_takes_no_traffic_from_stable() {
    let lb = haproxy_with("check inter 100ms rise 1 fall 1").await;
    let v1 = versioned_upstream("v1").await;
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cfg = HaproxyConfig::new(HaproxyAddress::Unix(haproxy_socket(&lb)), "app");
    cfg.ready_timeout = Duration::from_millis(800);
    let r = HaproxyRouter::new(cfg);
    let only_stable = stable_routes("v1", v1);
    r.apply(&only_stable).await.unwrap();
    assert_eq!(r.current().await.unwrap(), only_stable);

    // The canary's port is closed: HAProxy's checks keep it down, so the router stops before
    // taking anything from stable and says so.
    let err = r.apply(&canary_routes(v1, dead, 100.0)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not up after 800ms"), "{text}");
    let TargetState::Now(now) = err.target_state() else {
        panic!("state should be re-read: {err:?}");
    };
    assert_eq!(now.stable.as_ref().map(|u| u.addr), Some(v1), "{text}");
    assert_eq!(now.canary_weight, 0.0, "{text}");
    assert_served_by(lb.addr(), 10, "v1").await;

    // A healthy canary passes its first check, then takes all the traffic.
    let v2 = versioned_upstream("v2").await;
    r.apply(&canary_routes(v1, v2, 100.0)).await.unwrap();
    assert_eq!(r.current().await.unwrap(), canary_routes(v1, v2, 100.0));
    assert_served_by(lb.addr(), 10, "v2").await;
}
