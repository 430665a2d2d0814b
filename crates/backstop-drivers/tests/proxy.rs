//! The built-in proxy, exercised over real sockets on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use backstop_drivers::load::{LoadConfig, LoadGen};
use backstop_drivers::process::free_port;
use backstop_drivers::proxy::{Proxy, VersionStats};
use backstop_testkit::routing::{self, routes, stable_routes};
use backstop_testkit::upstream;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use tokio::net::TcpListener;

async fn proxy() -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Proxy::start(listener, "demo/test".to_owned()).await
}

/// A proxy sending every request to `version` at `addr`.
async fn proxy_to(version: &str, addr: SocketAddr) -> Proxy {
    routing::proxy("demo/test", stable_routes(version, addr)).await
}

fn stats_of(p: &Proxy, version: &str) -> VersionStats {
    p.stats()
        .into_iter()
        .find(|s| s.version == version)
        .unwrap_or_else(|| panic!("no stats for {version}: {:?}", p.stats()))
}

fn bucket(s: &VersionStats, le: f64) -> u64 {
    s.latency_buckets_ms
        .iter()
        .find(|(b, _)| *b == le)
        .unwrap()
        .1
}

/// Flag cohorts are counted from every `x-backstop-flags` header of an answer (malformed
/// entries skipped), and the header never reaches the client.
#[tokio::test]
async fn flag_cohorts_are_counted_from_the_answers_and_kept_from_clients() {
    let v1 = upstream::upstream("v1").await;
    let p = proxy_to("v1", v1).await;
    let client = upstream::client();
    for (path, n) in [("/flags/on", 3), ("/flags/off", 2)] {
        for _ in 0..n {
            let req = Request::get(format!("http://{}{path}", p.local_addr()))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = client.request(req).await.unwrap();
            assert!(resp.headers().get("x-backstop-flags").is_none(), "{resp:?}");
        }
    }
    let cohorts: Vec<(String, u64, u64)> = p
        .cohort_stats()
        .into_iter()
        .map(|s| (s.version, s.requests, s.errors))
        .collect();
    assert_eq!(
        cohorts,
        [
            ("dark-mode=on".to_owned(), 5, 2),
            ("new-checkout=off".to_owned(), 2, 2),
            ("new-checkout=on".to_owned(), 3, 0),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_matches_the_canary_weight() {
    let v1 = upstream::upstream("v1").await;
    let v2 = upstream::upstream("v2").await;
    let p = routing::proxy("demo/test", routes(("v1", v1), Some(("v2", v2)), 20.0)).await;
    let client = upstream::client();
    let n = 2000;
    let mut canary = 0;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let client = client.clone();
        let addr = p.local_addr();
        tasks.spawn(async move {
            let mut c = 0;
            for _ in 0..(n / 8) {
                let (status, version, body) = upstream::get(&client, addr, "/").await;
                assert_eq!(status, 200, "worker {w}: {body}");
                let version = version.expect("x-backstop-version header");
                assert_eq!(body, format!("ok {version}"));
                if version == "v2" {
                    c += 1;
                }
            }
            c
        });
    }
    while let Some(c) = tasks.join_next().await {
        canary += c.unwrap();
    }
    // Binomial(2000, 0.2): sd ~ 17.9; allow 5 sd.
    assert!(
        (400 - 90..=400 + 90).contains(&canary),
        "canary got {canary} of {n}"
    );
    let (s1, s2) = (stats_of(&p, "v1"), stats_of(&p, "v2"));
    assert_eq!(s2.requests, canary as u64);
    assert_eq!(s1.requests + s2.requests, n as u64);
    assert_eq!(s1.errors + s2.errors, 0);
    assert!(s1.first_request_at.is_some() && s1.last_error_at.is_none());

    // 0 % sends nothing to the canary, 100 % everything; without a canary the weight is moot.
    for (canary, weight, serves) in [
        (Some(("v2", v2)), 0.0, "v1"),
        (Some(("v2", v2)), 100.0, "v2"),
        (None, 50.0, "v1"),
    ] {
        p.set_routes(routes(("v1", v1), canary, weight));
        upstream::assert_served_by(p.local_addr(), 50, serves).await;
    }
    assert_eq!(p.routes().canary, None);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_errors_and_latency_per_version() {
    let p = proxy_to("v1", upstream::upstream("v1").await).await;
    // A version named in the routes is listed before it serves anything.
    let s = stats_of(&p, "v1");
    assert_eq!((s.requests, s.errors, s.first_request_at), (0, 0, None));
    assert_eq!(s.latency_buckets_ms.len(), 12);
    assert_eq!(s.latency_buckets_ms.last().unwrap().0, f64::INFINITY);

    let client = upstream::client();
    for _ in 0..5 {
        let (status, version, _) = upstream::get(&client, p.local_addr(), "/fail").await;
        assert_eq!((status, version.as_deref()), (500, Some("v1")));
    }
    for _ in 0..6 {
        let (status, _, _) = upstream::get(&client, p.local_addr(), "/slow?sleep_ms=60").await;
        assert_eq!(status, 200);
    }
    let s = stats_of(&p, "v1");
    assert_eq!(s.requests, 11);
    assert_eq!(s.errors, 5);
    assert!(s.last_error_at.is_some());
    // The six slow requests took at least 60 ms each, so at most the five failures are <= 50 ms.
    assert!(bucket(&s, 50.0) <= 5, "{:?}", s.latency_buckets_ms);
    assert_eq!(bucket(&s, f64::INFINITY), 11);
    assert!(s.latency_sum_ms >= 6.0 * 60.0, "sum {}", s.latency_sum_ms);
    let counts: Vec<u64> = s.latency_buckets_ms.iter().map(|b| b.1).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {counts:?}"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_method_target_headers_and_body() {
    let p = proxy_to("v1", upstream::upstream("v1").await).await;
    let client = upstream::client();
    let req = Request::post(format!("http://{}/echo?a=1&b=two", p.local_addr()))
        .header("x-custom", "hello")
        .header("x-forwarded-for", "10.0.0.9")
        .body(Full::new(Bytes::from("payload")))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-backstop-version"], "v1");
    assert_eq!(resp.headers()["x-upstream"], "v1");
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(body.contains("method=POST"), "{body}");
    assert!(body.contains("target=/echo?a=1&b=two"), "{body}");
    assert!(body.contains("xff=10.0.0.9, 127.0.0.1"), "{body}");
    assert!(body.contains("custom=hello"), "{body}");
    assert!(body.contains(&format!("host={}", p.local_addr())), "{body}");
    assert!(body.ends_with("body=payload"), "{body}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_a_503_counted_for_its_version_but_not_as_latency() {
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let p = proxy_to("v9", dead).await;
    let client = upstream::client();
    for _ in 0..3 {
        let (status, version, body) = upstream::get(&client, p.local_addr(), "/").await;
        assert_eq!(
            status, 503,
            "nothing listens: a clear 503, not a bare 502: {body}"
        );
        assert_eq!(version.as_deref(), Some("v9"));
        assert!(body.contains("no healthy instance of v9"), "{body}");
    }
    let s = stats_of(&p, "v9");
    assert_eq!((s.requests, s.errors), (3, 3));
    // Refused connections are failures users saw, not answers: no latency samples, so a dead
    // version's instant refusals never look fast to the judge.
    assert_eq!(s.latency_buckets_ms.last().map(|(_, n)| *n), Some(0));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_upstream_is_a_503_not_attributed() {
    let p = proxy().await;
    let client = upstream::client();
    let (status, version, _) = upstream::get(&client, p.local_addr(), "/").await;
    assert_eq!((status, version), (503, None));
    assert!(p.stats().is_empty());
    assert_eq!(p.unrouted_requests(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_routes_under_load_fails_no_request() {
    let v1 = upstream::upstream("v1").await;
    let v2 = upstream::upstream("v2").await;
    let v3 = upstream::upstream("v3").await;
    let p = proxy_to("v1", v1).await;
    // Each request takes ~5 ms upstream, so switches happen with requests in flight.
    let load = LoadGen::start(LoadConfig {
        target: p.local_addr(),
        path: "/?sleep_ms=5".to_owned(),
        rate_per_s: 400.0,
        concurrency: 16,
    });
    let plans = [
        routes(("v1", v1), Some(("v2", v2)), 10.0),
        routes(("v1", v1), Some(("v2", v2)), 50.0),
        routes(("v2", v2), None, 0.0),
        routes(("v2", v2), Some(("v3", v3)), 25.0),
        routes(("v1", v1), None, 0.0),
    ];
    for round in 0..12 {
        tokio::time::sleep(Duration::from_millis(80)).await;
        p.set_routes(plans[round % plans.len()].clone());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = load.stop().await;
    assert!(
        stats.sent >= 100,
        "load too small to mean anything: {stats:?}"
    );
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_eq!(stats.ok, stats.sent, "{stats:?}");
    for v in ["v1", "v2", "v3"] {
        assert!(
            stats.ok_by_version.get(v).copied().unwrap_or(0) > 0,
            "{v} never served: {stats:?}"
        );
    }
    let served: u64 = p.stats().iter().map(|s| s.requests).sum();
    assert_eq!(served, stats.sent);
    assert!(p.stats().iter().all(|s| s.errors == 0));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_then_refuses() {
    let p = proxy_to("v1", upstream::upstream("v1").await).await;
    let client = upstream::client();
    let addr = p.local_addr();
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { upstream::get(&client, addr, "/?sleep_ms=300").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    p.shutdown().await;
    let (status, version, _) = slow.await.unwrap();
    assert_eq!((status, version.as_deref()), (200, Some("v1")));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    p.shutdown().await; // idempotent
}

/// A version of three instances: requests take them in turn, and each instance's requests and
/// errors are counted apart (what finds one bad instance among many).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spreads_a_version_over_its_instances_and_counts_each() {
    let addrs = [
        upstream::upstream("v1").await,
        upstream::upstream("v1").await,
        upstream::upstream("v1").await,
    ];
    let mut routes = stable_routes("v1", addrs[0]);
    routes.stable.as_mut().unwrap().replicas = addrs[1..].to_vec();
    let p = routing::proxy("demo/test", routes).await;
    let client = upstream::client();
    for i in 0..30 {
        // Every third request, the one the third instance gets, fails.
        let path = if i % 3 == 2 { "/fail" } else { "/" };
        upstream::get(&client, p.local_addr(), path).await;
    }
    let per_instance = p.instance_stats();
    assert_eq!(per_instance.len(), 3, "{per_instance:?}");
    for addr in addrs {
        let s = &per_instance.iter().find(|i| i.addr == addr).unwrap().stats;
        assert_eq!((s.version.as_str(), s.requests), ("v1", 10), "{addr}");
    }
    let errors: Vec<u64> = addrs
        .iter()
        .map(|a| {
            per_instance
                .iter()
                .find(|i| i.addr == *a)
                .unwrap()
                .stats
                .errors
        })
        .collect();
    assert_eq!(errors, [0, 0, 10]);
    assert_eq!(stats_of(&p, "v1").requests, 30);
    assert_eq!(stats_of(&p, "v1").errors, 10);
    // Instances no longer routed are not reported.
    p.set_routes(stable_routes("v1", addrs[0]));
    assert_eq!(p.instance_stats().len(), 1);
    p.shutdown().await;
}
