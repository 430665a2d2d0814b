//! Health before traffic, also across a daemon crash: an instance found running after a restart
//! (adopted) gets traffic only once it passes its health check. A service that needs 4 s to
//! listen, with the daemon killed while it starts, used to be adopted as healthy: a good canary
//! got 30 % of traffic on a port nobody listened on and was failed and marked bad, and a manual
//! rollback moved all traffic to the not-yet-listening instance (a total outage).

use std::time::Duration;

use backstop_testkit::{
    Daemon, Traffic, http_get, instance_pids, rollback_args, shop_config_all_at_once,
};

const SLOW_START: &[&str] = &["--env", "DEMO_START_DELAY_MS=6000"];

/// Restarts a killed daemon and waits until its proxy serves again (the routes are restored
/// from the store), so the traffic counted afterwards measures only what the restarted daemon
/// does with the instance it found starting.
fn restart_and_wait_for_users(d: &mut Daemon) {
    d.restart();
    let proxy = d.proxy_port;
    d.wait_until("the proxy serves again after the restart", || {
        http_get(proxy, "/").is_some_and(|answer| answer.starts_with("HTTP/1.1 200"))
    });
}

#[test]
fn a_canary_adopted_while_still_starting_gets_traffic_only_once_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_shop(dir.path(), "[{weight: 30, for: 3s}, {weight: 100}]");
    let proxy = d.proxy_port;
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    d.register_with("v2", SLOW_START);
    let id = d.rollout_start("v2");
    // The daemon dies while v2 is still starting (it listens after 6 s).
    std::thread::sleep(Duration::from_millis(1500));
    d.kill9();
    restart_and_wait_for_users(&mut d);

    let traffic = Traffic::start(proxy, 40.0);
    let done = d.wait_rollout(&id, "the rollout ends", |r| {
        ["promoted", "recovered", "failed", "aborted"]
            .contains(&r["rollout"]["phase"].as_str().unwrap_or(""))
    });
    let (sent, failed) = traffic.stop();
    assert_eq!(
        done["rollout"]["phase"],
        "promoted",
        "the good release is promoted: {done:#}\n{}",
        d.log()
    );
    let v2 = d.cli_json(&["release", "show", "shop@v2"], 0);
    assert_ne!(v2["status"], "bad", "{v2:#}");
    assert!(sent > 50, "traffic flowed: {sent}");
    assert_eq!(
        failed, 0,
        "no request reached the still-starting instance ({sent} sent)"
    );
}

#[test]
fn a_rollback_interrupted_while_the_old_version_starts_loses_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let proxy = backstop_testkit::free_port();
    let mut d = Daemon::start(&state, &shop_config_all_at_once(proxy), proxy);
    d.register_with("v1", SLOW_START);
    d.rollout_wait("v1", 0);
    d.register("v2", 0.0);
    d.rollout_wait("v2", 0);
    d.wait_until("v1's instance is scaled down", || {
        instance_pids(&state).len() == 1
    });

    // Roll back to v1 (started anew: 6 s before it listens) and kill the daemon meanwhile.
    let mut cli = d.cli_background(&rollback_args("slow start"));
    std::thread::sleep(Duration::from_millis(1500));
    d.kill9();
    let _ = cli.wait();
    restart_and_wait_for_users(&mut d);

    let traffic = Traffic::start(proxy, 40.0);
    let mut recovery = serde_json::Value::Null;
    d.wait_until("the rollback completes after the restart", || {
        let list = d.cli_json(&["recovery", "list"], 0);
        recovery = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["reason"] == "slow start")
            .cloned()
            .unwrap_or_default();
        assert_ne!(recovery["status"], "failed", "{recovery:#}");
        recovery["status"] == "done"
    });
    // Users keep being served by v2 until v1 answers, then by v1.
    std::thread::sleep(Duration::from_millis(500));
    let (sent, failed) = traffic.stop();
    assert!(sent > 50, "traffic flowed: {sent}");
    assert_eq!(failed, 0, "{recovery:#}");
    let answer = http_get(proxy, "/version").unwrap();
    assert!(
        answer.contains("v1"),
        "v1 serves after the rollback: {answer}"
    );
}
