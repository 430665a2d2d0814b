//! The real `backstop-demo` binary run by the process deployer behind the built-in proxy, with
//! the load generator in front: a good stable and a bad canary, end to end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use backstop_drivers::load::{LoadConfig, LoadGen};
use backstop_drivers::process::{self, Instance, InstanceSpec, free_port};
use backstop_drivers::proxy::{Proxy, Routes, Upstream};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_backstop-demo");

async fn deploy(version: &str, env: &[(&str, &str)], dir: &Path) -> Instance {
    let port = free_port().unwrap();
    let spec = InstanceSpec {
        instance_id: format!("demo-{version}-{}", std::process::id()),
        command: format!("exec '{BIN}' --port {port} --version {version}"),
        port,
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        health_path: "/healthz".to_owned(),
        health_timeout: Duration::from_millis(500),
        health_interval: Duration::from_millis(50),
        start_timeout: Duration::from_secs(20),
        log_path: dir.join(format!("{version}.log")),
    };
    process::start(&spec)
        .await
        .unwrap_or_else(|e| panic!("{version} did not start: {e}"))
}

fn addr(inst: &Instance) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], inst.port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_stable_and_bad_canary_behind_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = deploy("v1", &[("DEMO_LATENCY_MS", "2")], dir.path()).await;
    // Settings from DEMO_* variables: every request fails.
    let v2 = deploy(
        "v2",
        &[("DEMO_LATENCY_MS", "2"), ("DEMO_ERROR_RATIO", "1")],
        dir.path(),
    )
    .await;
    assert!(process::is_running(&v1) && process::is_running(&v2));

    let proxy = Proxy::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        "demo/test".into(),
    )
    .await;
    proxy.set_routes(Routes {
        stable: Some(Upstream {
            version: "v1".into(),
            addr: addr(&v1),
            replicas: Vec::new(),
        }),
        canary: Some(Upstream {
            version: "v2".into(),
            addr: addr(&v2),
            replicas: Vec::new(),
        }),
        canary_weight: 30.0,
    });
    let load = LoadGen::start(LoadConfig {
        target: proxy.local_addr(),
        path: "/".into(),
        rate_per_s: 200.0,
        concurrency: 8,
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Roll the canary back: from now on nothing fails.
    proxy.set_routes(Routes {
        stable: Some(Upstream {
            version: "v1".into(),
            addr: addr(&v1),
            replicas: Vec::new(),
        }),
        canary: None,
        canary_weight: 0.0,
    });
    let failed_at_rollback = load.stats().failed;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = load.stop().await;

    assert!(stats.failed > 0, "{stats:?}");
    assert_eq!(
        stats.failed_by_version.keys().collect::<Vec<_>>(),
        ["v2"],
        "{stats:?}"
    );
    assert_eq!(stats.failed_by_version["v2"], stats.failed);
    assert!(stats.ok_by_version["v1"] > 0);
    assert!(
        stats.failed <= failed_at_rollback + 8,
        "failures went on after the rollback: {stats:?}"
    );
    let by_version: BTreeMap<_, _> = proxy
        .stats()
        .into_iter()
        .map(|s| (s.version.clone(), s))
        .collect();
    assert_eq!(by_version["v1"].errors, 0);
    assert_eq!(by_version["v2"].errors, by_version["v2"].requests);
    assert_eq!(by_version["v2"].requests, stats.failed);
    proxy.shutdown().await;

    // SIGTERM stops the app gracefully (well within the grace period), leaving nothing behind.
    for (inst, version) in [(&v1, "v1"), (&v2, "v2")] {
        process::stop(inst, Duration::from_secs(10)).await.unwrap();
        assert!(!process::is_running(inst));
        let log = std::fs::read_to_string(dir.path().join(format!("{version}.log"))).unwrap();
        assert!(log.contains("Demo app listening"), "{log}");
        assert!(log.contains("SIGTERM received"), "{log}");
        assert!(log.contains("Demo app stopped"), "{log}");
    }
}

#[tokio::test]
async fn bad_flags_fail_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let spec = InstanceSpec {
        instance_id: format!("demo-bad-{}", std::process::id()),
        command: format!("exec '{BIN}' --port {port} --error-ratio 7"),
        port,
        env: BTreeMap::new(),
        health_path: "/healthz".to_owned(),
        health_timeout: Duration::from_millis(500),
        health_interval: Duration::from_millis(50),
        start_timeout: Duration::from_secs(20),
        log_path: dir.path().join("bad.log"),
    };
    let err = process::start(&spec).await.unwrap_err().to_string();
    assert!(err.contains("--error-ratio"), "{err}");
    assert!(err.contains("between 0 and 1"), "{err}");
}
