//! Incidents end to end: a critical failure opens one whose timeline holds the rollout's events
//! and the recovery's steps, and which the restored traffic mitigates; a major incident opened
//! by hand freezes the environment until mitigated; roles are handed over, notes and status
//! updates taken, the status only moves forward; every change reaches the webhook.

use backstop_testkit::webhook::webhook_sink;
use backstop_testkit::{Daemon, Traffic, free_port, shop_config};
use serde_json::Value;

fn kinds(detail: &Value) -> Vec<String> {
    detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["source"].as_str().unwrap(),
                t["kind"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_bad_release_opens_an_incident_and_people_run_it_to_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let (hook_port, received) = webhook_sink();
    let config = shop_config(proxy, "[{weight: 50, for: 30s}, {weight: 100}]").replace(
        "    rollout:\n",
        &format!("    notify:\n      - {{webhook: \"http://127.0.0.1:{hook_port}/hook\"}}\n    rollout:\n"),
    );
    let d = Daemon::start(&dir.path().join("state"), &config, proxy);
    d.register("v1", 0.0);
    d.register("v2", 0.6);
    d.register("v3", 0.0);
    d.rollout_wait("v1", 0);
    let traffic = Traffic::start(proxy, 60.0);
    let v2 = d.rollout_wait("v2", 1);
    traffic.stop();
    assert_eq!(v2["rollout"]["severity"], "critical", "{v2:#}");

    // The failure opened an incident; the restored traffic mitigated it.
    let open = d.cli_json(&["incident", "list"], 0);
    let incident = &open[0];
    assert_eq!(incident["severity"], "SEV2", "{open:#}");
    assert_eq!(incident["status"], "monitoring", "{open:#}");
    assert_eq!(incident["rollout_id"], v2["rollout"]["id"]);
    let id = incident["id"].as_str().unwrap().to_string();
    let detail = d.cli_json(&["incident", "show", &id], 0);
    let timeline = kinds(&detail);
    for expected in [
        "rollout:rollout.failed",
        "incident:opened",
        "recovery:shift_traffic",
        "incident:status",
    ] {
        assert!(
            timeline.iter().any(|k| k == expected),
            "{expected} in {timeline:?}"
        );
    }
    let at: Vec<i64> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["at_ms"].as_i64().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "in time order: {at:?}");
    // Mitigated, so it does not freeze: the next good release goes out.
    d.rollout_wait("v3", 0);

    // People run it: roles handed over, a note, an update, forward-only status.
    let ic = d.cli_json(
        &[
            "token",
            "create",
            "--name",
            "alice",
            "--role",
            "incident-commander",
        ],
        0,
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let as_ic = |args: &[&str], code: i32| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--token", &ic]);
        d.cli_json(&all, code)
    };
    as_ic(&["incident", "role", &id, "commander", "token:alice"], 0);
    let handed = as_ic(&["incident", "role", &id, "commander", "token:bob"], 0);
    assert_eq!(handed["roles"]["commander"], "token:bob");
    as_ic(&["incident", "note", &id, "error ratio 60% on v2 only"], 0);
    let updated = as_ic(&["incident", "update", &id, "rolled back; watching"], 0);
    assert!(updated["update_due_ms"].as_i64().unwrap() > updated["opened_at_ms"].as_i64().unwrap());
    let back = d.cli(&["incident", "status", &id, "identified", "--token", &ic]);
    assert_eq!(back.status.code(), Some(2), "{back:?}");
    assert!(String::from_utf8_lossy(&back.stderr).contains("only moves forward"));
    let resolved = as_ic(
        &[
            "incident",
            "status",
            &id,
            "resolved",
            "--note",
            "baseline for 30 min",
        ],
        0,
    );
    assert_eq!(resolved["status"], "resolved");
    assert!(resolved["update_due_ms"].is_null());
    let detail = d.cli_json(&["incident", "show", &id], 0);
    let texts: Vec<&str> = detail["incident"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.contains(&"commander handed from token:alice to token:bob"),
        "{texts:?}"
    );
    assert!(
        d.cli_json(&["incident", "list"], 0)
            .as_array()
            .unwrap()
            .is_empty()
    );
    let text = String::from_utf8_lossy(&d.cli(&["incident", "show", &id]).stdout).to_string();
    assert!(
        text.contains("timeline (from the opening)") && text.contains("shift_traffic"),
        "{text}"
    );

    // A releaser cannot move the status; every change was audited and announced.
    let releaser = d.cli_json(
        &["token", "create", "--name", "rel", "--role", "releaser"],
        0,
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let out = d.cli(&["incident", "update", &id, "x", "--token", &releaser]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("role incident-commander"));
    let audit = d.cli_json(&["audit", "list", "--limit", "10000"], 0);
    let updates = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "incident.updated" && r["actor"] == "token:alice")
        .count();
    assert_eq!(updates, 5, "{audit:#}");
    d.wait_until("the webhook hears of the incident", || {
        let got = received.lock().unwrap();
        got.iter().any(|n| n["kind"] == "incident.opened")
            && got.iter().any(|n| n["kind"] == "incident.updated")
    });
    d.assert_audit_verifies();
}

#[test]
fn a_major_incident_freezes_its_environment_reminds_and_pages_until_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let (hook_port, received) = webhook_sink();
    let config = format!(
        "incidents:\n  update_every: {{SEV1: 2s}}\n{}",
        shop_config(proxy, "[{weight: 100}]").replace(
            "    rollout:\n",
            &format!(
                "    notify:\n      - {{webhook: \"http://127.0.0.1:{hook_port}/v2/enqueue\", format: pagerduty, routing_key_env: PD_ROUTING_KEY}}\n    rollout:\n"
            ),
        )
    );
    let d = Daemon::start_with_env(
        &dir.path().join("state"),
        &config,
        proxy,
        &[("PD_ROUTING_KEY", "r-key-123")],
    );
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    d.rollout_wait("v1", 0);
    let opened = d.cli_json(
        &[
            "incident",
            "open",
            "--service",
            "shop",
            "--env",
            "prod",
            "--severity",
            "SEV1",
            "--title",
            "payments failing",
        ],
        0,
    );
    let id = opened["id"].as_str().unwrap().to_string();
    assert_eq!(opened["opened_by"], "token:admin");

    let refused = d.cli(&[
        "rollout",
        "start",
        "shop",
        "--env",
        "prod",
        "--version",
        "v2",
    ]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("a major incident is open in prod") && err.contains(&id),
        "{err}"
    );

    // A fix-forward passes as a critical change; mitigation lifts the freeze for everyone.
    let gate = d.cli_json(
        &[
            "gate",
            "shop",
            "--env",
            "prod",
            "--release",
            "v2",
            "--critical",
            "--reason",
            "fix",
        ],
        0,
    );
    assert_eq!(gate["go"], true, "{gate:#}");
    // No update within the configured 2 s: the daemon reminds, once, and pages.
    d.wait_until("a reminder", || {
        d.cli_json(&["incident", "show", &id], 0)["incident"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "reminder")
    });
    d.cli_json(
        &[
            "incident",
            "status",
            &id,
            "monitoring",
            "--note",
            "failover done",
        ],
        0,
    );
    d.rollout_wait("v2", 0);
    d.cli_json(&["incident", "status", &id, "resolved"], 0);

    // PagerDuty got Events API v2 events: one alert (the incident), triggered then resolved.
    let dedup = format!("backstop/{id}");
    d.wait_until("PagerDuty hears the resolution", || {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["event_action"] == "resolve" && e["dedup_key"] == dedup.as_str())
    });
    let events = received.lock().unwrap().clone();
    let ours: Vec<&Value> = events
        .iter()
        .filter(|e| e["dedup_key"] == dedup.as_str())
        .collect();
    assert!(
        ours.iter().all(|e| e["routing_key"] == "r-key-123"),
        "{events:#?}"
    );
    let opened = ours
        .iter()
        .find(|e| e["payload"]["class"] == "incident.opened")
        .expect("the opening was paged");
    assert_eq!(opened["event_action"], "trigger");
    assert_eq!(opened["payload"]["severity"], "critical");
    assert_eq!(opened["payload"]["source"], "backstop/shop/prod");
    assert!(
        ours.iter()
            .any(|e| e["payload"]["class"] == "incident.update_due")
    );

    // Bad input names the place.
    let out = d.cli(&[
        "incident",
        "open",
        "--service",
        "shop",
        "--env",
        "prod",
        "--severity",
        "SEV9",
        "--title",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/severity"));
}
