//! A warm way back after a canary's promotion (`rollout.rollback_window`): the previous
//! version keeps running, supervised, for the window instead of stopping after the scale-down
//! delay, so a late rollback is one traffic switch to the instance that is already warm, with
//! no failed request, rather than a cold start.

use std::time::Duration;

use backstop_testkit::{Daemon, Traffic, free_port, instance_pids, shop_config};

#[test]
fn a_late_rollback_within_the_window_switches_to_the_warm_instance_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let config = shop_config(proxy, "[{weight: 50, for: 2s}, {weight: 100}]").replace(
        "strategy: canary",
        "strategy: canary\n      rollback_window: 10m",
    );
    let d = Daemon::start(&dir.path().join("state"), &config, proxy);
    let state = d.state_dir.clone();
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let v1 = instance_pids(&state);
    assert_eq!(v1.len(), 1);
    assert_eq!(d.rollout_wait("v2", 0)["rollout"]["phase"], "promoted");
    // Well past the scale-down delay (1 s): v1 is still there, warm.
    std::thread::sleep(Duration::from_secs(3));
    let both = instance_pids(&state);
    assert_eq!(both.len(), 2, "v1 kept warm beside v2: {both:?}");
    assert!(
        both.contains(&v1[0]),
        "the same v1 process: {both:?} vs {v1:?}"
    );

    let traffic = Traffic::start(proxy, 50.0);
    std::thread::sleep(Duration::from_millis(500));
    let recovery = d.rollback("a late problem with v2", 0);
    assert_eq!(recovery["status"], "done", "{recovery:#}");
    std::thread::sleep(Duration::from_millis(500));
    let (sent, failed) = traffic.stop();
    assert!(sent > 20, "{sent} requests sent");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the switch"
    );
    let state_now = d.api_get("/api/v1/services");
    assert_eq!(
        state_now[0]["environments"][0]["state"]["lkg_release_id"], "shop@v1",
        "{state_now:#}"
    );
    d.wait_until("v2 is stopped; v1's warm process serves", || {
        instance_pids(&state) == v1
    });
}
