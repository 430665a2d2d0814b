//! Fail safe when the store fails: with the state folder's disk full, no verdict could be
//! written, so a canary with 30 % errors used to keep 30 % of traffic for as long as the disk
//! stayed full, while `/healthz` said ok. Now the canary is taken out of traffic, `/healthz`
//! says why, and once the disk has room again the daemon records the outage and carries on.
//!
//! The disk is real: the state folder is a small tmpfs that the test fills (mounting needs
//! root, as CI and this project's dev machines run; the test says so if it cannot).

use backstop_testkit::disk::{Tmpfs, fill};
use backstop_testkit::{Daemon, Traffic, free_port, http_get, shop_config};

#[test]
fn a_full_disk_takes_the_canary_out_of_traffic_and_the_daemon_carries_on_after() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _disk = Tmpfs::for_state(&state, 64);
    let proxy = free_port();
    let d = Daemon::start(
        &state,
        &shop_config(proxy, "[{weight: 30, for: 10m}, {weight: 100}]"),
        proxy,
    );
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    d.register("v2", 0.3);
    let id = d.rollout_progressing("v2");

    // The disk fills before users reach the canary: no verdict can be written.
    let filler = state.join("filler");
    fill(&filler);
    let traffic = Traffic::start(proxy, 40.0);
    d.wait_until("/healthz reports the store failing", || {
        http_get(d.api_port(), "/healthz").is_some_and(|a| a.starts_with("HTTP/1.1 503"))
    });
    let health = http_get(d.api_port(), "/healthz").unwrap();
    assert!(health.contains("the store refuses writes"), "{health}");
    // All traffic is on v1 now.
    for _ in 0..30 {
        let answer = http_get(proxy, "/").unwrap();
        assert!(answer.contains("x-backstop-version: v1"), "{answer}");
    }
    let metrics = http_get(d.api_port(), "/metrics").unwrap();
    assert!(metrics.contains("backstop_store_writable 0"), "{metrics}");

    // Room again: the outage is recorded and the rollout carries on to its verdict.
    std::fs::remove_file(&filler).unwrap();
    let done = d.wait_rollout(&id, "the bad canary is rolled back", |r| {
        r["rollout"]["phase"] == "recovered"
    });
    traffic.stop();
    assert_eq!(done["rollout"]["to_release_id"], "shop@v2");
    let audit = d.cli_json(&["audit", "list"], 0);
    let outage = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "store.write_failed")
        .unwrap_or_else(|| panic!("the outage is recorded: {audit:#}"));
    assert_eq!(
        outage["evidence"]["canaries_withdrawn"],
        serde_json::json!(["shop/prod"]),
        "{outage:#}"
    );
    assert!(
        http_get(d.api_port(), "/healthz")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
}
