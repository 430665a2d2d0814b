//! Change events out: every rollout start, promotion and rollback reaches an incident tool's
//! change timeline (PagerDuty Events API v2 change events, `format: pagerduty_change`, here a
//! local receiver), with the routing key and the facts; nothing else goes there. A generic
//! signed JSON webhook beside it hears the rollout start as well.

use backstop_testkit::webhook::webhook_sink;
use backstop_testkit::{Daemon, Traffic, free_port, shop_config};
use serde_json::Value;

#[test]
fn rollout_starts_promotions_and_rollbacks_reach_the_change_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let (change_port, changes) = webhook_sink();
    let (json_port, all) = webhook_sink();
    let config = shop_config(proxy, "[{weight: 50, for: 4s}, {weight: 100}]").replace(
        "    rollout:\n",
        &format!(
            "    notify:\n      - {{webhook: \"http://127.0.0.1:{change_port}/v2/change/enqueue\", format: pagerduty_change, routing_key_env: PD_CHANGE_KEY}}\n      - {{webhook: \"http://127.0.0.1:{json_port}/hook\", secret_env: HOOK_SECRET}}\n    rollout:\n"
        ),
    );
    let d = Daemon::start_with_env(
        &dir.path().join("state"),
        &config,
        proxy,
        &[("PD_CHANGE_KEY", "change-key-1"), ("HOOK_SECRET", "s3cret")],
    );
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    d.register("v3", 0.5);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let _traffic = Traffic::start(proxy, 60.0);
    assert_eq!(d.rollout_wait("v2", 0)["rollout"]["phase"], "promoted");
    assert_eq!(d.rollout_wait("v3", 1)["rollout"]["phase"], "recovered");

    let summaries = |got: &[Value]| -> Vec<String> {
        got.iter()
            .map(|e| e["payload"]["summary"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    d.wait_until("the rollback's change arrives", || {
        summaries(&changes.lock().unwrap())
            .iter()
            .any(|s| s.starts_with("recovery.done"))
    });
    let got = changes.lock().unwrap().clone();
    assert!(
        got.iter().all(|e| e["routing_key"] == "change-key-1"),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .all(|e| e["payload"]["source"] == "backstop/shop/prod"
                && e["payload"]["timestamp"].is_string()),
        "{got:#?}"
    );
    let kinds: Vec<String> = summaries(&got)
        .iter()
        .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
        .collect();
    for (kind, at_least) in [
        ("rollout.started", 3),
        ("rollout.promoted", 2),
        ("recovery.done", 1),
    ] {
        assert!(
            kinds.iter().filter(|k| *k == kind).count() >= at_least,
            "{kind}: {kinds:?}"
        );
    }
    assert!(
        kinds.iter().all(|k| [
            "rollout.started",
            "rollout.promoted",
            "recovery.started",
            "recovery.done"
        ]
        .contains(&k.as_str())),
        "only changes: {kinds:?}"
    );
    let v3_start = got
        .iter()
        .find(|e| {
            e["payload"]["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("rollout.started") && s.contains("shop@v3"))
        })
        .unwrap_or_else(|| panic!("v3's start: {got:#?}"));
    assert_eq!(v3_start["payload"]["custom_details"]["from"], "shop@v2");
    // The generic webhook heard the start too, with everything else.
    d.wait_until("the JSON webhook hears a start", || {
        all.lock()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "rollout.started")
    });
}
