//! `backstop cluster status`: the daemons sharing a store, from their heartbeats. A running
//! daemon is `live` and drives the active rollout; after a `kill -9` and a restart the killed
//! one is `gone` once its heartbeat has lapsed, and the new one is live.

use backstop_testkit::Daemon;

fn replicas(d: &Daemon) -> Vec<serde_json::Value> {
    d.cli_json(&["cluster", "status"], 0)["replicas"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn replicas_beat_show_what_they_drive_and_a_killed_one_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_shop(dir.path(), "[{weight: 30, for: 10m}, {weight: 100}]");
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    d.register("v2", 0.0);
    let id = d.rollout_progressing("v2");

    let first_pid = d.child.as_ref().unwrap().id();
    d.wait_until("the daemon is live and drives the rollout", || {
        let list = replicas(&d);
        list.len() == 1
            && list[0]["state"] == "live"
            && list[0]["pid"] == first_pid
            && list[0]["address"] == d.api
            && list[0]["leases"] == serde_json::json!(["env/shop/prod", format!("rollout/{id}")])
    });

    d.kill9();
    d.restart();
    let second_pid = d.child.as_ref().unwrap().id();
    d.wait_until("the killed daemon is gone and the new one live", || {
        let list = replicas(&d);
        let state_of = |pid: u32| {
            list.iter()
                .find(|r| r["pid"] == pid)
                .map(|r| r["state"].as_str().unwrap_or("").to_string())
        };
        list.len() == 2
            && state_of(second_pid).as_deref() == Some("live")
            && state_of(first_pid).as_deref() == Some("gone")
    });
    let list = replicas(&d);
    let gone = list.iter().find(|r| r["pid"] == first_pid).unwrap();
    assert_eq!(gone["leases"], serde_json::json!([]), "{list:?}");
    let text = d.cli(&["cluster", "status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("live") && text.contains("gone"), "{text}");
}
