//! nginx router against a real `nginx` on loopback.

use std::net::SocketAddr;

use backstop_drivers::router::nginx::NginxRouter;
use backstop_drivers::router::{RouterError, TargetState, TrafficRouter};
use backstop_testkit::routing::{canary_routes, switch_under_load};
use backstop_testkit::servers::*;
use backstop_testkit::upstream::{assert_served_by, versioned_pair};

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".backstop-"))
        .collect()
}

/// nginx in front of v1, and the v1 and v2 upstreams.
async fn nginx_and_versions() -> (Server, SocketAddr, SocketAddr) {
    let (v1, v2) = versioned_pair().await;
    (nginx(v1).await, v1, v2)
}

/// A router for `lb`'s upstream file, as the server was configured.
fn router(lb: &Server) -> NginxRouter {
    NginxRouter::new(nginx_router_config(lb)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_under_load_drops_nothing_and_splits_by_weight() {
    let (lb, v1, v2) = nginx_and_versions().await;
    let r = router(&lb);
    let (sent, measured) = switch_under_load(&r, lb.addr(), v1, v2).await;
    eprintln!("nginx: {sent} requests, measured split per step: {measured:?}");
    assert!(
        leftovers(lb.dir.path()).is_empty(),
        "{:?}",
        leftovers(lb.dir.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_failing_the_test_leaves_the_live_file_as_it_was() {
    let (lb, v1, v2) = nginx_and_versions().await;
    let good = router(&lb);
    good.apply(&canary_routes(v1, v2, 10.0)).await.unwrap();
    let live = lb.dir.path().join("upstream.conf");
    let before = std::fs::read(&live).unwrap();

    // This router's commands are in the config file's shell form.
    let argv = nginx_router_config(&lb);
    let mut cfg = backstop_drivers::router::nginx::NginxConfig::with_shell_commands(
        "app",
        lb.dir.path().join("upstream.conf"),
        &argv.test_command.display(),
        &argv.reload_command.display(),
    );
    cfg.extra_directives = vec!["no_such_directive on".into()];
    let bad = NginxRouter::new(cfg).unwrap();
    let err = bad.apply(&canary_routes(v1, v2, 50.0)).await.unwrap_err();
    assert!(matches!(err, RouterError::ConfigTest { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("unknown directive \"no_such_directive\""),
        "{text}"
    );
    assert!(text.contains("upstream.conf is unchanged"), "{text}");
    assert_eq!(err.target_state(), TargetState::Unchanged);
    assert_eq!(std::fs::read(&live).unwrap(), before);
    assert!(
        leftovers(lb.dir.path()).is_empty(),
        "{:?}",
        leftovers(lb.dir.path())
    );
    assert_eq!(good.current().await.unwrap(), canary_routes(v1, v2, 10.0));

    // nginx still serves with the good config.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let resp = client
        .get(format!("http://{}/", lb.addr()).parse().unwrap())
        .await
        .unwrap();
    assert!(resp.status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_is_idempotent_and_a_pending_reload_is_finished() {
    let (lb, v1, v2) = nginx_and_versions().await;
    let r = router(&lb);
    let live = lb.dir.path().join("upstream.conf");
    r.apply(&canary_routes(v1, v2, 0.0)).await.unwrap();
    let text = std::fs::read_to_string(&live).unwrap();
    assert!(text.contains(&format!("server {v2} down;")), "{text}");
    let mtime = std::fs::metadata(&live).unwrap().modified().unwrap();
    r.apply(&canary_routes(v1, v2, 0.0)).await.unwrap();
    assert_eq!(std::fs::metadata(&live).unwrap().modified().unwrap(), mtime);

    // A crash after the rename but before the reload: the file is right, the marker says a
    // reload is pending; the next apply reloads instead of skipping.
    let pending = canary_routes(v1, v2, 100.0);
    std::fs::write(
        &live,
        backstop_drivers::router::nginx::render(r.config(), &pending).unwrap(),
    )
    .unwrap();
    std::fs::write(
        lb.dir.path().join(".upstream.conf.backstop-reload-pending"),
        "",
    )
    .unwrap();
    r.apply(&pending).await.unwrap();
    assert!(leftovers(lb.dir.path()).is_empty());
    assert_served_by(lb.addr(), 10, "v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_nginx_rejects_is_reported() {
    let (lb, v1, v2) = nginx_and_versions().await;
    let mut cfg = nginx_router_config(&lb);
    // Test passes, reload goes to a master that does not exist: nothing is confirmed.
    cfg.reload_command = backstop_drivers::router::command::Cmd::Shell("true".into());
    cfg.reload_timeout = std::time::Duration::from_millis(300);
    let r = NginxRouter::new(cfg).unwrap();
    let err = r.apply(&canary_routes(v1, v2, 50.0)).await.unwrap_err();
    assert_eq!(err.target_state(), TargetState::Unknown, "{err}");
    assert!(err.to_string().contains("no new worker"), "{err}");
    // The marker stays, so the next apply (with a working reload) finishes the job.
    let r = router(&lb);
    r.apply(&canary_routes(v1, v2, 50.0)).await.unwrap();
    assert!(leftovers(lb.dir.path()).is_empty());
}
