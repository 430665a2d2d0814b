//! Command router and built-in router.

use std::time::{Duration, Instant};

use backstop_drivers::proxy::{Proxy, Routes, Upstream};
use backstop_drivers::router::command::{
    CommandRouter, CommandRouterConfig, KILL_GRACE, routes_key,
};
use backstop_drivers::router::{BuiltinRouter, RouterError, TargetState, TrafficRouter};
use backstop_testkit::routing::canary_routes;
use backstop_testkit::upstream::{assert_served_by, versioned_pair};

fn routes(w: f64) -> Routes {
    Routes {
        stable: Some(Upstream {
            version: "v1".into(),
            addr: "127.0.0.1:8001".parse().unwrap(),
            replicas: Vec::new(),
        }),
        canary: Some(Upstream {
            version: "v2".into(),
            addr: "127.0.0.1:8002".parse().unwrap(),
            replicas: Vec::new(),
        }),
        canary_weight: w,
    }
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Whether `pid` is gone within 5 s: a signalled process dies when it is next scheduled, which on
/// a busy machine takes a moment.
async fn gone_soon(pid: u32) -> bool {
    for _ in 0..50 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    !alive(pid)
}

async fn wait_file(path: &std::path::Path) -> String {
    for _ in 0..200 {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never written", path.display());
}

#[tokio::test]
async fn the_command_gets_the_split_and_the_key_and_current_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut cfg = CommandRouterConfig::new(format!(
        "printf 'BACKSTOP_STABLE_ADDR=%s\\nBACKSTOP_CANARY_ADDR=%s\\nBACKSTOP_CANARY_WEIGHT=%s\\nKEY=%s\\nVERSIONS=%s,%s\\n' \
         \"$BACKSTOP_STABLE_ADDR\" \"$BACKSTOP_CANARY_ADDR\" \"$BACKSTOP_CANARY_WEIGHT\" \"$BACKSTOP_IDEMPOTENCY_KEY\" \
         \"$BACKSTOP_STABLE_VERSION\" \"$BACKSTOP_CANARY_VERSION\" > {}",
        state.display()
    ));
    cfg.read_command = Some(format!("cat {}", state.display()));
    let r = CommandRouter::new(cfg);
    r.apply_with_key(&routes(12.5), "step-7").await.unwrap();
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(text.contains("BACKSTOP_CANARY_WEIGHT=12.5\n"), "{text}");
    assert!(text.contains("KEY=step-7\n"), "{text}");
    assert!(text.contains("VERSIONS=v1,v2\n"), "{text}");
    assert_eq!(r.current().await.unwrap(), routes(12.5));

    // Through the trait the key is derived from the split: same split, same key.
    r.apply(&routes(40.0)).await.unwrap();
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(
        text.contains(&format!("KEY={}\n", routes_key(&routes(40.0)))),
        "{text}"
    );
    assert_eq!(r.stats().await.unwrap(), None);
}

#[tokio::test]
async fn a_failing_command_says_what_it_printed_and_what_state_is_known() {
    let r = CommandRouter::new(CommandRouterConfig::new(
        "echo 'dns api said no' >&2; exit 4",
    ));
    let err = r.apply(&routes(10.0)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("exit status 4") && text.contains("dns api said no"),
        "{text}"
    );
    // No read command: the router cannot know what the script did.
    assert_eq!(err.target_state(), TargetState::Unknown);
    assert!(matches!(
        r.current().await.unwrap_err(),
        RouterError::Config { .. }
    ));
}

/// Applies a command that backgrounds a child and outlives its 1 s timeout; `script` gets the
/// file to write the child's pid to. The error, how long the apply took, and the child's pid.
async fn apply_past_timeout(
    script: impl FnOnce(&std::path::Path) -> String,
) -> (RouterError, Duration, u32) {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let mut cfg = CommandRouterConfig::new(script(&pidfile));
    // Long enough for `sh` to install a trap and start the child even on a busy machine.
    cfg.timeout = Duration::from_millis(1000);
    let started = Instant::now();
    let err = CommandRouter::new(cfg)
        .apply(&routes(10.0))
        .await
        .unwrap_err();
    let took = started.elapsed();
    let child = wait_file(&pidfile).await.trim().parse().unwrap();
    (err, took, child)
}

#[tokio::test]
async fn a_timeout_kills_the_whole_group() {
    let (err, _, grandchild) = apply_past_timeout(|pidfile| {
        format!(
            "sleep 60 & echo $! > {}; echo started; wait",
            pidfile.display()
        )
    })
    .await;
    let RouterError::Apply { cause, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(matches!(**cause, RouterError::Timeout { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("within 1000ms") && text.contains("process group was killed"),
        "{text}"
    );
    assert!(text.contains("started"), "output kept: {text}");
    assert!(
        gone_soon(grandchild).await,
        "background child {grandchild} survived the timeout"
    );
}

#[tokio::test]
async fn a_command_ignoring_sigterm_gets_sigkill() {
    let (err, took, grandchild) = apply_past_timeout(|pidfile| {
        format!(
            "trap '' TERM; sleep 60 & echo $! > {}; wait; wait; wait",
            pidfile.display()
        )
    })
    .await;
    assert!(err.to_string().contains("within 1000ms"), "{err}");
    // SIGTERM was ignored, so the group was only gone after the grace period and SIGKILL.
    assert!(took >= Duration::from_millis(1000) + KILL_GRACE, "{took:?}");
    assert!(gone_soon(grandchild).await, "{grandchild} survived SIGKILL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_router_drives_the_proxy() {
    let (v1, v2) = versioned_pair().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::start(listener, "svc/test".into()).await;
    let r: Box<dyn TrafficRouter> = Box::new(BuiltinRouter::new(proxy.clone()));
    assert_eq!(r.kind(), "builtin");
    let want = canary_routes(v1, v2, 100.0);
    r.apply(&want).await.unwrap();
    assert_eq!(r.current().await.unwrap(), want);
    assert_served_by(proxy.local_addr(), 5, "v2").await;
    let stats = r.stats().await.unwrap().unwrap();
    let v2s = stats.iter().find(|s| s.version == "v2").unwrap();
    assert_eq!(v2s.requests, 5);
    proxy.shutdown().await;
}
