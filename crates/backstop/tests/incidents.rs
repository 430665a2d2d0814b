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

/// Runbooks from the daemon's folder, run as part of an incident: the runbook's role is needed
/// in the environment; a manual step waits for a person; a command step interrupted by
/// `kill -9` of the daemon is collected after the restart, not run twice; a failed step is
/// altered, a step skipped and an ad-hoc action recorded, each with its reason, and all of it
/// is in the incident's timeline and the audit log.
#[test]
fn a_runbook_run_survives_kill_9_mid_step_and_its_deviations_reach_the_incident() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let books = dir.path().join("runbooks");
    std::fs::create_dir_all(&books).unwrap();
    let marker = dir.path().join("restore.log");
    let runbook = r#"name: restore-orders
version: 3
role: releaser
inputs:
  - {name: log}
  - {name: snapshot, default: s-42}
steps:
  - {id: announce, kind: manual, title: "Tell #orders that writes stop"}
  - {id: restore, kind: command, title: Restore, run: "echo started {snapshot} >> {log}; sleep 3; echo finished >> {log}; echo key=$BACKSTOP_IDEMPOTENCY_KEY", timeout: 1m}
  - {id: rows, kind: verify, title: Orders are back, run: "grep -q finished {log}"}
  - {id: reindex, kind: command, title: Reindex, run: "echo old flag >&2; exit 7"}
  - {id: page, kind: verify, title: The shop page lists orders}
"#;
    std::fs::write(books.join("restore-orders.yaml"), runbook).unwrap();
    let config = format!(
        "runbooks: {}\n{}",
        books.display(),
        shop_config(proxy, "[{weight: 100}]")
    );
    let mut d = Daemon::start(&dir.path().join("state"), &config, proxy);
    let token = |name: &str, role: &str| {
        d.cli_json(
            &[
                "token", "create", "--name", name, "--role", role, "--env", "prod",
            ],
            0,
        )["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (alice, bob) = (token("alice", "releaser"), token("bob", "viewer"));
    let listed = d.cli_json(&["runbook", "list"], 0);
    assert_eq!(listed[0]["name"], "restore-orders", "{listed:#}");
    let digest = listed[0]["digest"].as_str().unwrap().to_string();
    let incident = d.cli_json(
        &[
            "incident",
            "open",
            "--service",
            "shop",
            "--env",
            "prod",
            "--severity",
            "SEV3",
            "--title",
            "orders lost",
        ],
        0,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let log_input = format!("log={}", marker.display());
    let start = |who: &str| {
        d.cli(&[
            "runbook",
            "run",
            "restore-orders",
            "--incident",
            &incident,
            "--input",
            &log_input,
            "--token",
            who,
            "--output",
            "json",
        ])
    };

    // A viewer may not run a releaser's runbook: told which role is missing, nothing started.
    let refused = start(&bob);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("releaser"),
        "{refused:?}"
    );
    assert_eq!(
        d.cli_json(&["runbook", "runs", "--all"], 0),
        serde_json::json!([])
    );

    // The first step is manual: the run waits for a person (exit 4 off a terminal).
    let started = start(&alice);
    assert_eq!(started.status.code(), Some(4), "{started:?}\n{}", d.log());
    let run: Value = serde_json::from_slice(&started.stdout).unwrap();
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(run["digest"], digest.as_str());
    assert_eq!(run["inputs"]["snapshot"], "s-42");
    assert_eq!(run["steps"][0]["status"], "waiting", "{run:#}");
    let not_bob = d.cli(&["runbook", "confirm", &id, "announce", "--token", &bob]);
    assert_eq!(not_bob.status.code(), Some(2), "{not_bob:?}");
    as_token(
        &d,
        &alice,
        &["runbook", "confirm", &id, "announce", "--note", "posted"],
        0,
    );

    // kill -9 while the restore command runs; it finishes unwatched and is collected.
    backstop_testkit::assert_eventually!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        |log| log.contains("started"),
        "the restore step started"
    );
    d.kill9();
    d.restart();
    let run_path = format!("/api/v1/runbook-runs/{id}");
    backstop_testkit::assert_eventually!(
        d.api_get(&run_path),
        |r| r["status"] == "waiting",
        "the run goes on after the restart and stops at the failing step"
    );
    let run = d.cli_json(&["runbook", "show", &id], 4);
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "started s-42\nfinished\n",
        "the restore ran once"
    );
    let restore = &run["steps"][1];
    assert_eq!(
        (restore["status"].as_str(), restore["attempts"].as_u64()),
        (Some("done"), Some(1)),
        "{run:#}"
    );
    assert_eq!(
        restore["stdout"],
        format!("key=runbook-run/{id}/restore\n").as_str()
    );
    assert_eq!(run["steps"][2]["status"], "done", "the verify step held");
    let reindex = &run["steps"][3];
    assert_eq!(
        (reindex["status"].as_str(), reindex["exit_code"].as_i64()),
        (Some("failed"), Some(7))
    );
    assert_eq!(reindex["stderr"], "old flag\n");

    // Past the failure: altered (a reason is required), an ad-hoc action, a skip.
    let no_reason = d.cli(&[
        "runbook",
        "alter",
        &id,
        "reindex",
        "--command",
        "true",
        "--reason",
        " ",
        "--token",
        &alice,
    ]);
    assert_eq!(no_reason.status.code(), Some(2), "{no_reason:?}");
    as_token(
        &d,
        &alice,
        &[
            "runbook",
            "alter",
            &id,
            "reindex",
            "--command",
            "echo reindexed",
            "--reason",
            "the flag was renamed",
        ],
        0,
    );
    as_token(
        &d,
        &alice,
        &[
            "runbook",
            "ad-hoc",
            &id,
            "--title",
            "Told support",
            "--reason",
            "customers asked",
        ],
        0,
    );
    backstop_testkit::assert_eventually!(
        d.api_get(&run_path),
        |r| r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "page" && s["status"] == "waiting"),
        "the altered step ran and the last manual step waits"
    );
    as_token(
        &d,
        &alice,
        &[
            "runbook",
            "skip",
            &id,
            "page",
            "--reason",
            "support confirmed it",
        ],
        0,
    );
    backstop_testkit::assert_eventually!(
        d.api_get(&run_path),
        |r| r["status"] == "succeeded",
        "the run succeeds"
    );
    let run = d.cli_json(&["runbook", "show", &id], 0);
    let deviations: Vec<(String, String)> = run["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_string(),
                d["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        deviations,
        [
            ("altered".to_string(), "the flag was renamed".to_string()),
            ("ad-hoc".to_string(), "customers asked".to_string()),
            ("skipped".to_string(), "support confirmed it".to_string()),
        ]
    );
    let reindex = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "reindex")
        .unwrap();
    assert_eq!(
        (reindex["stdout"].as_str(), reindex["actor"].as_str()),
        (Some("reindexed\n"), Some("token:alice"))
    );

    // The incident's timeline carries the run, deviations with their reasons.
    let detail = d.cli_json(&["incident", "show", &incident], 0);
    let runbook_lines: Vec<String> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["source"] == "runbook")
        .map(|t| {
            format!(
                "{} {}",
                t["kind"].as_str().unwrap(),
                t["text"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "started",
        "confirmed",
        "step-done",
        "deviation",
        "the flag was renamed",
        "customers asked",
        "support confirmed it",
        "succeeded",
    ] {
        assert!(
            runbook_lines.iter().any(|l| l.contains(expected)),
            "{expected} in {runbook_lines:#?}"
        );
    }
    // And the audit log, with who did it.
    let audit = d.api_get("/api/v1/audit?limit=500");
    let deviations: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "runbook.deviation")
        .collect();
    assert_eq!(deviations.len(), 3, "{audit:#}");
    assert!(deviations.iter().all(|r| r["actor"] == "token:alice"));
    // The manual step and each deviation are automation gaps of the service.
    let gaps = d.cli_json(&["gaps", "shop"], 0);
    let actions: Vec<&str> = gaps[0]["automation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"automate: Tell #orders that writes stop"),
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.starts_with("update the runbook:"))
            .count(),
        3,
        "{actions:?}"
    );
}

/// `backstop ARGS… --token TOKEN --output json`, asserting the exit code.
fn as_token(d: &Daemon, token: &str, args: &[&str], code: i32) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--token", token]);
    d.cli_json(&all, code)
}

/// Restored is not resolved: after the bad release is rolled back, its recovery waits for the
/// service's post-recovery suite (a journey through the proxy and a command), the environment
/// stays frozen meanwhile, and once the suite passes the recovery is resolved, the incident
/// told, and the post-mortem draft carries the measured phases and the residual instability.
#[test]
fn a_recovery_is_resolved_only_when_its_post_recovery_suite_passes() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let ready = dir.path().join("downstream-ready");
    let (hook_port, received) = webhook_sink();
    let config = shop_config(proxy, "[{weight: 50, for: 8s}, {weight: 100}]").replace(
        "    environments:\n",
        &format!(
            "    notify:\n      - {{webhook: \"http://127.0.0.1:{hook_port}/hook\"}}\n    heartbeats:\n      - {{name: export, every: 1h}}\n    validation:\n      within: 2m\n      journeys:\n        - name: storefront\n          canary: false\n          steps:\n            - {{request: GET /version, expect: {{body_contains: v1}}}}\n      commands:\n        - {{name: downstream, run: 'test -f {}'}}\n    environments:\n",
            ready.display()
        ),
    ) + &format!(
        "      - name: staging\n        listen: 127.0.0.1:{}\n        readiness: gold\n",
        free_port()
    );
    // Post-mortems are due 3 s after resolution here, so that being overdue can be seen.
    let config = format!("incidents:\n  postmortem_due: 3s\n{config}");
    let d = Daemon::start(&dir.path().join("state"), &config, proxy);
    d.register("v1", 0.0);
    d.register("v2", 0.6);
    d.register("v3", 0.0);
    d.rollout_wait("v1", 0);
    let traffic = Traffic::start(proxy, 60.0);
    let v2 = d.rollout_wait("v2", 1);
    traffic.stop();
    let rec_id = v2["recovery"]["id"].as_str().unwrap().to_string();
    let rec_path = format!("/api/v1/recoveries/{rec_id}");

    // Restored, validating: the journey passes, the downstream check does not (yet).
    let rec = backstop_testkit::assert_eventually!(
        d.api_get(&rec_path),
        |r| r["validation"]["attempts"].as_u64().unwrap_or(0) >= 2,
        "the suite is attempted again and again"
    );
    assert_eq!(rec["status"], "done", "{rec:#}");
    assert_eq!(rec["validation"]["status"], "pending", "{rec:#}");
    let checks = rec["validation"]["checks"].as_array().unwrap();
    assert_eq!(checks[0]["passed"], true, "{rec:#}");
    assert_eq!(checks[1]["passed"], false, "{rec:#}");
    // Meanwhile the environment is frozen for non-critical rollouts.
    let refused = d.cli(&backstop_testkit::rollout_start_args("v3", &[]));
    assert_ne!(refused.status.code(), Some(0), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("restored, validating"),
        "{refused:?}"
    );

    assert_eq!(checks[2]["kind"], "heartbeat", "{rec:#}");
    assert_eq!(checks[2]["passed"], false, "never pinged: {rec:#}");
    let beats = d.cli(&["heartbeats"]);
    assert_eq!(
        beats.status.code(),
        Some(1),
        "a heartbeat never pinged: {beats:?}"
    );

    // The dependency comes back; the batch job has not run yet, so still not resolved.
    std::fs::write(&ready, "").unwrap();
    let rec = backstop_testkit::assert_eventually!(
        d.api_get(&rec_path),
        |r| r["validation"]["checks"][1]["passed"] == true,
        "the downstream check passes"
    );
    assert_eq!(rec["validation"]["status"], "pending", "{rec:#}");
    // The job runs and pings: the recovery is resolved.
    let pinged = d.cli_json(&["heartbeat", "export"], 0);
    assert_eq!(
        (pinged["status"].as_str(), pinged["count"].as_i64()),
        (Some("ok"), Some(1)),
        "{pinged:#}"
    );
    let unknown = d.cli(&["heartbeat", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    let rec = backstop_testkit::assert_eventually!(
        d.api_get(&rec_path),
        |r| r["validation"]["status"] == "passed",
        "the recovery is resolved"
    );
    assert!(
        rec["validation"]["attempts"].as_u64().unwrap() >= 3,
        "{rec:#}"
    );
    let draft = d.cli_json(&["recovery", "postmortem", &rec_id], 0);
    let md = draft["markdown"].as_str().unwrap();
    for expected in [
        "# Post-mortem (draft): shop@v2 in shop/prod",
        "Detected automatically (judge)",
        "| resolved (validated) |",
        "The post-recovery suite needed",
        "- command `downstream`: passed",
        "owner: team-test",
    ] {
        assert!(md.contains(expected), "{expected:?} in\n{md}");
    }
    assert!(
        draft["phases"]["time_to_resolve_ms"].as_i64().unwrap()
            > draft["phases"]["time_to_mitigate_ms"].as_i64().unwrap()
    );
    let written = d.state_dir.join("postmortems").join(format!("{rec_id}.md"));
    assert!(
        std::fs::read_to_string(&written)
            .unwrap()
            .contains("| resolved (validated) |")
    );
    // Not marked written 3 s after resolution: overdue, told once, counted, then done.
    d.wait_until("the webhook hears the post-mortem is overdue", || {
        received.lock().unwrap().iter().any(|n| {
            n["kind"] == "postmortem.overdue" && n["detail"]["recovery"] == rec_id.as_str()
        })
    });
    let metrics = backstop_testkit::http_get(d.api_port(), "/metrics").unwrap();
    assert!(
        metrics.contains("backstop_postmortems_overdue 1"),
        "{metrics}"
    );
    let done = d.cli_json(
        &[
            "recovery",
            "postmortem",
            &rec_id,
            "--done",
            "--link",
            "https://wiki.example/pm/42",
        ],
        0,
    );
    assert_eq!(
        done["postmortem"]["link"], "https://wiki.example/pm/42",
        "{done:#}"
    );
    let metrics = backstop_testkit::http_get(d.api_port(), "/metrics").unwrap();
    assert!(
        metrics.contains("backstop_postmortems_overdue 0"),
        "{metrics}"
    );
    // The incident was told, and the freeze is lifted.
    let incidents = d.cli_json(&["incident", "list", "--all"], 0);
    let incident = incidents[0]["id"].as_str().unwrap().to_string();
    let detail = d.cli_json(&["incident", "show", &incident], 0);
    assert!(
        detail["incident"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["text"]
                .as_str()
                .unwrap()
                .contains("resolved: the post-recovery suite passed")),
        "{detail:#}"
    );
    d.rollout_wait("v3", 0);

    // The delivery figures of the environment: three deployments, one rolled back, v3 shipped
    // while the incident was still open (rework), recovery and resolution times measured.
    let dora = d.cli_json(&["dora", "--env", "prod"], 0);
    let prod = &dora[0];
    assert_eq!(
        (prod["deployments"].as_u64(), prod["failed"].as_u64()),
        (Some(3), Some(1)),
        "{dora:#}"
    );
    assert!((prod["change_fail_rate"]["value"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(prod["change_fail_rate"]["level"], "low");
    assert_eq!(prod["failed_deployment_recovery_ms"]["level"], "elite");
    assert!(
        prod["time_to_resolve_ms"].as_f64().unwrap()
            > prod["failed_deployment_recovery_ms"]["value"]
                .as_f64()
                .unwrap()
    );
    assert!(
        (prod["rework_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9,
        "{dora:#}"
    );
    // People label what the verdicts were; calibration replays them at several settings.
    let v2_id = v2["rollout"]["id"].as_str().unwrap();
    let wrong = d.cli(&["rollout", "label", v2_id, "missed"]);
    assert_eq!(
        wrong.status.code(),
        Some(2),
        "a rollback is not `missed`: {wrong:?}"
    );
    let labelled = d.cli_json(
        &[
            "rollout",
            "label",
            v2_id,
            "confirmed",
            "--note",
            "v2 broke checkout",
        ],
        0,
    );
    assert_eq!(labelled["label"], "confirmed");
    let calibration = d.cli_json(&["calibrate", "shop"], 0);
    let trials = calibration["trials"].as_array().unwrap();
    assert!(trials.len() >= 5, "{calibration:#}");
    assert_eq!(trials.iter().filter(|t| t["current"] == true).count(), 1);
    for t in trials {
        assert_eq!(
            (t["bad"].as_u64(), t["good"].as_u64()),
            (Some(1), Some(1)),
            "{t:#}"
        );
        if t["current"] == true {
            assert_eq!(
                t["detected"], 1,
                "the setting that caught it live catches it replayed: {t:#}"
            );
        }
    }
    assert!(calibration["recommended"].is_string(), "{calibration:#}");
    // Readiness: backups verified and a suite declared (bronze); no drill yet, so not silver.
    let cards = d.cli_json(&["scorecard", "shop"], 0);
    let card = &cards[0];
    assert_eq!(card["level"], "bronze", "{card:#}");
    let check = |name: &str| {
        card["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(check("lkg_backup")["passed"], true, "{card:#}");
    assert_eq!(check("drill")["passed"], false, "{card:#}");
    assert_eq!(check("mttr")["passed"], true, "{card:#}");
    assert_eq!(check("resolved")["passed"], true, "{card:#}");
    // An environment that requires gold refuses a rollout of a bronze service, unless critical.
    let gate = |extra: &[&str], code: i32| {
        let mut args = vec!["gate", "shop", "--env", "staging", "--release", "v3"];
        args.extend_from_slice(extra);
        let report = d.cli_json(&args, code);
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "readiness")
            .unwrap()
            .clone()
    };
    let refused = gate(&[], 1);
    assert_eq!(refused["ok"], false, "{refused:#}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("shop is bronze, staging requires gold"),
        "{refused:#}"
    );
    let critical = gate(&["--critical", "--reason", "fix-forward"], 0);
    assert_eq!(critical["ok"], true, "{critical:#}");

    // The judge caught v2 in time: no coverage gap. A person then rolls v3 back: that one is.
    let gaps = d.cli_json(&["gaps", "shop"], 0);
    assert_eq!(gaps[0]["coverage"], serde_json::json!([]), "{gaps:#}");
    let back = d.cli(&backstop_testkit::rollback_args(
        "checkout totals look wrong",
    ));
    assert_eq!(back.status.code(), Some(0), "{back:?}");
    let gaps = backstop_testkit::assert_eventually!(
        d.cli_json(&["gaps", "shop"], 0),
        |g| g[0]["coverage"].as_array().is_some_and(|c| !c.is_empty()),
        "the manual rollback is a coverage gap"
    );
    let gap = &gaps[0]["coverage"][0];
    assert!(
        gap["why"].as_str().unwrap().contains("started by a person"),
        "{gap:#}"
    );
    let bad = d.cli(&["dora", "--window", "soon"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("/window"),
        "{bad:?}"
    );
}

/// A rollback sweeps what the bad version cached: every Redis key of the pattern (and only
/// those) goes, as a journaled step after the bad version is stopped.
#[test]
fn a_rollback_sweeps_the_cache_entries_of_the_bad_version() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = rt.block_on(backstop_testkit::servers::redis());
    let ask = |line: &str| -> String {
        use std::io::{BufRead, BufReader, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
        s.write_all(format!("SELECT 2\r\n{line}\r\n").as_bytes())
            .unwrap();
        let mut r = BufReader::new(s);
        let mut ok = String::new();
        r.read_line(&mut ok).unwrap();
        let mut answer = String::new();
        r.read_line(&mut answer).unwrap();
        answer.trim().to_string()
    };
    for i in 0..300 {
        assert_eq!(ask(&format!("SET page:{i} cached-by-v2")), "+OK");
    }
    assert_eq!(ask("SET session:1 keep"), "+OK");
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let config = shop_config(proxy, "[{weight: 50, for: 8s}, {weight: 100}]").replace(
        "    rollout:\n",
        &format!(
            "    hooks:\n      sweeps:\n        - {{name: pages, redis: '127.0.0.1:{}/2', pattern: 'page:*', batch: 50}}\n    rollout:\n",
            redis.port
        ),
    );
    let d = Daemon::start(&dir.path().join("state"), &config, proxy);
    d.register("v1", 0.0);
    d.register("v2", 0.6);
    d.rollout_wait("v1", 0);
    let traffic = Traffic::start(proxy, 60.0);
    let v2 = d.rollout_wait("v2", 1);
    traffic.stop();
    let steps = v2["recovery"]["steps"].as_array().unwrap();
    let names: Vec<&str> = steps
        .iter()
        .map(|s| s["step"]["kind"].as_str().unwrap_or(""))
        .collect();
    let sweep = steps
        .iter()
        .find(|s| s["outcome"]["sweep"] == "pages")
        .unwrap_or_else(|| panic!("a sweep step in {names:?}: {v2:#}"));
    assert_eq!(sweep["outcome"]["removed"], 300, "{sweep:#}");
    assert_eq!(ask("DBSIZE"), ":1", "only the pattern's keys went");
}

/// The flags of `shop` in `prod`, by key.
fn flag(d: &Daemon, key: &str) -> Value {
    let all = d.api_get("/api/v1/flags?env=prod");
    backstop_testkit::item_with(&all, "key", key).clone()
}

/// A feature switched off during an incident comes back in stages: applications evaluate it
/// through OpenFeature's remote protocol (sticky buckets), the built-in proxy counts the on and
/// off cohorts from the application's header, a broken feature goes back to 0 % at its first
/// stage, and the fixed one climbs every stage to 100 %, across a `kill -9` of the daemon.
#[test]
fn a_flag_comes_back_in_stages_and_a_broken_one_goes_back_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let config = shop_config(proxy, "[{weight: 100}]")
        .replace("strategy: canary", "strategy: all-at-once")
        .replace(
            "    environments:\n",
            "    flags:\n      - {key: new-checkout, description: the one-page checkout, stages: [10, 50, 100], hold: 2s, min_requests: 30}\n    environments:\n",
        );
    let mut d = Daemon::start(&dir.path().join("state"), &config, proxy);
    let api = d.api_port();
    let app = d.cli_json(
        &[
            "token", "create", "--name", "shop-app", "--role", "viewer", "--env", "prod",
        ],
        0,
    );
    let app_token = app["token"].as_str().unwrap().to_owned();
    let flag_env = |ratio: &str| {
        vec![
            "--env".to_owned(),
            "DEMO_FLAG=new-checkout".to_owned(),
            "--env".to_owned(),
            format!("DEMO_FLAG_URL=http://127.0.0.1:{api}"),
            "--env".to_owned(),
            format!("DEMO_FLAG_TOKEN={app_token}"),
            "--env".to_owned(),
            format!("DEMO_FLAG_ERROR_RATIO={ratio}"),
        ]
    };
    let args = flag_env("0.6");
    d.register_with("v1", &args.iter().map(String::as_str).collect::<Vec<_>>());
    d.rollout_wait("v1", 0);

    // Evaluation: off until set; a split needs a unit; a unit keeps its bucket as it grows.
    let off = d.cli_json(&["flag", "eval", "new-checkout", "--unit", "user-42"], 0);
    assert_eq!(
        (off["value"].as_bool(), off["reason"].as_str()),
        (Some(false), Some("DISABLED")),
        "{off:#}"
    );
    let unknown = d.cli(&["flag", "eval", "nope", "--unit", "u"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("FLAG_NOT_FOUND"),
        "{unknown:?}"
    );
    // The application's viewer token may evaluate but not change a flag.
    let denied = d.cli(&[
        "flag",
        "set",
        "new-checkout",
        "--env",
        "prod",
        "--percent",
        "100",
        "--reason",
        "x",
        "--token",
        &app_token,
    ]);
    assert_eq!(denied.status.code(), Some(2), "{denied:?}");
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("deployer"),
        "{denied:?}"
    );
    let set = d.cli_json(
        &[
            "flag",
            "set",
            "new-checkout",
            "--env",
            "prod",
            "--percent",
            "30",
            "--reason",
            "try it",
        ],
        0,
    );
    assert_eq!(set["percentage"], 30, "{set:#}");
    let no_unit = d.cli(&["flag", "eval", "new-checkout"]);
    assert!(
        String::from_utf8_lossy(&no_unit.stderr).contains("TARGETING_KEY_MISSING"),
        "{no_unit:?}"
    );
    let on_at_30: Vec<bool> = (0..200)
        .map(|i| {
            let unit = format!("user-{i}");
            let e = as_token(
                &d,
                &app_token,
                &["flag", "eval", "new-checkout", "--unit", &unit],
                0,
            );
            assert_eq!(e["reason"], "SPLIT", "{e:#}");
            e["value"].as_bool().unwrap()
        })
        .collect();
    // OFREP straight: the bulk endpoint, and failures in OFREP's shape.
    let (status, bulk) = d.api_call(
        "POST",
        "/ofrep/v1/evaluate/flags",
        Some(&app_token),
        Some(&serde_json::json!({"context": {"targetingKey": "user-1"}})),
    );
    assert_eq!(status, 200, "{bulk:#}");
    assert_eq!(bulk["flags"][0]["key"], "new-checkout", "{bulk:#}");
    assert_eq!(bulk["flags"][0]["reason"], "SPLIT", "{bulk:#}");
    let (status, missing) = d.api_call(
        "POST",
        "/ofrep/v1/evaluate/flags/new-checkout",
        Some(&app_token),
        Some(&serde_json::json!({"context": {"targetingKey": 7}})),
    );
    assert_eq!(
        (status, missing["errorCode"].as_str()),
        (400, Some("INVALID_CONTEXT")),
        "{missing:#}"
    );
    let (status, _) = d.api_call("POST", "/ofrep/v1/evaluate/flags/new-checkout", None, None);
    assert_eq!(status, 401, "evaluation needs a token");
    let share = on_at_30.iter().filter(|v| **v).count();
    assert!((35..=85).contains(&share), "{share} of 200 units on at 30%");
    // A major incident is open in prod: the flag change lands on its timeline, and a
    // re-enable holds at its first stage until the incident is mitigated.
    let opened = d.cli_json(
        &[
            "incident",
            "open",
            "--service",
            "shop",
            "--env",
            "prod",
            "--severity",
            "SEV2",
            "--title",
            "checkout failing",
        ],
        0,
    );
    let incident = opened["id"].as_str().unwrap().to_owned();
    d.cli_json(
        &[
            "flag",
            "set",
            "new-checkout",
            "--env",
            "prod",
            "--percent",
            "0",
            "--reason",
            "INC-1: checkout fails",
        ],
        0,
    );
    let timeline = d.cli_json(&["incident", "show", &incident], 0);
    assert!(
        timeline["incident"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["text"]
                .as_str()
                .is_some_and(|t| t.contains("flag new-checkout in prod set to 0%"))),
        "{timeline:#}"
    );
    // The feature is still broken: the first stage (10 %) fails and the flag goes back to 0 %
    // (a hold never stops a failing stage from being rolled back).
    let traffic = Traffic::start(proxy, 80.0);
    let broken = d.cli_json(
        &[
            "flag",
            "reenable",
            "new-checkout",
            "--env",
            "prod",
            "--wait",
        ],
        1,
    );
    assert_eq!(broken["percentage"], 0, "{broken:#}");
    assert_eq!(broken["reenable"]["status"], "rolled_back", "{broken:#}");
    let failed = &broken["reenable"]["stages_done"][0];
    assert_eq!(
        (failed["percentage"].as_u64(), failed["outcome"].as_str()),
        (Some(10), Some("failed")),
        "{broken:#}"
    );
    assert!(
        failed["on_errors"].as_u64().unwrap() > failed["off_errors"].as_u64().unwrap(),
        "{broken:#}"
    );

    // Fixed in v2 (a fix-forward passes the incident's freeze): the re-enable holds at its
    // first stage while the incident is open, then every stage holds, across a kill -9 of
    // the daemon mid-way.
    let args = flag_env("0");
    d.register_with("v2", &args.iter().map(String::as_str).collect::<Vec<_>>());
    d.cli_json(
        &backstop_testkit::rollout_start_args("v2", &["--wait", "--critical", "--reason", "fix"]),
        0,
    );
    d.cli_json(&["flag", "reenable", "new-checkout", "--env", "prod"], 0);
    let held = backstop_testkit::assert_eventually!(
        flag(&d, "new-checkout"),
        |f| f["reenable"]["blocked"]
            .as_str()
            .is_some_and(|b| b.contains("incident")),
        "the re-enable holds while the incident is open"
    );
    assert_eq!(held["percentage"], 10, "{held:#}");
    assert_eq!(held["reenable"]["status"], "running", "{held:#}");
    d.cli_json(&["incident", "status", &incident, "resolved"], 0);
    backstop_testkit::assert_eventually!(
        flag(&d, "new-checkout"),
        |f| f["percentage"] == 50,
        "once the incident is resolved, the first stage holds and the flag goes on to 50%"
    );
    d.kill9();
    d.restart_on_same_port();
    let done = backstop_testkit::assert_eventually!(
        flag(&d, "new-checkout"),
        |f| f["reenable"]["status"] != "running",
        "the re-enable carries on after the restart and ends"
    );
    traffic.stop();
    assert_eq!(done["reenable"]["status"], "promoted", "{done:#}");
    assert_eq!(done["percentage"], 100, "{done:#}");
    let outcomes: Vec<(u64, &str)> = done["reenable"]["stages_done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["percentage"].as_u64().unwrap(),
                s["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [(10, "held"), (50, "held"), (100, "held")],
        "{done:#}"
    );
    let changes: Vec<u64> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["to"].as_u64().unwrap())
        .collect();
    assert_eq!(changes, [30, 0, 10, 0, 10, 50, 100], "{done:#}");
    // Every change is in the audit chain.
    let audit = d.cli_json(&["audit", "list"], 0);
    let actions = backstop_testkit::audit_actions(&audit);
    for kind in [
        "flag.set",
        "flag.reenable.started",
        "flag.rolled_back",
        "flag.stage_held",
        "flag.promoted",
    ] {
        assert!(actions.contains(&kind), "{kind} in {actions:?}");
    }
    d.assert_audit_verifies();
}

/// Journeys run against a canary right after it starts (practice 3.1): one that passes lets the
/// canary take traffic; one that fails fails the rollout before any user meets the version,
/// and the post-mortem says how it was caught. A journey marked `canary: false` is kept for
/// after a recovery.
#[test]
fn a_canary_failing_its_journeys_is_rolled_back_before_it_takes_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let config = shop_config(proxy, "[{weight: 50, for: 2s}, {weight: 100}]").replace(
        "    environments:\n",
        "    validation:\n      journeys:\n        - name: buy\n          steps:\n            - {request: GET /cart, expect: {status: 200, body_contains: ok}}\n        - name: lkg-only\n          canary: false\n          steps:\n            - {request: GET /version, expect: {body_contains: v1}}\n    environments:\n",
    );
    let d = Daemon::start(&dir.path().join("state"), &config, proxy);
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    d.register("v3", 1.0);
    d.rollout_wait("v1", 0);
    let v2 = d.rollout_wait("v2", 0);
    let smoke: Vec<&Value> = v2["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "canary.smoke")
        .collect();
    assert_eq!(
        smoke.len(),
        1,
        "only the journey meant for canaries: {v2:#}"
    );
    assert_eq!(
        (
            smoke[0]["detail"]["journey"].as_str(),
            smoke[0]["detail"]["passed"].as_bool()
        ),
        (Some("buy"), Some(true)),
        "{v2:#}"
    );

    let traffic = Traffic::start(proxy, 40.0);
    let v3 = d.rollout_wait("v3", 1);
    let stats = traffic.stop_stats();
    assert_eq!(v3["rollout"]["phase"], "recovered", "{v3:#}");
    assert!(
        v3["rollout"]["reason"]
            .as_str()
            .unwrap()
            .contains("journey buy failed against the canary"),
        "{v3:#}"
    );
    let kinds: Vec<&str> = v3["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"canary.smoke"), "{kinds:?}");
    assert!(
        !kinds.contains(&"canary.started"),
        "it never took traffic: {kinds:?}"
    );
    assert_eq!(stats.failed, 0, "no user met v3: {stats:?}");
    let rec_id = v3["recovery"]["id"].as_str().unwrap();
    let draft = d.cli_json(&["recovery", "postmortem", rec_id], 0);
    let md = draft["markdown"].as_str().unwrap();
    assert!(
        md.contains("a synthetic journey failed against the canary before it took traffic"),
        "{md}"
    );
}

/// After a rollback, the restored version is judged against its own traffic from before the
/// rollout (practice 6.2): while a shared fault keeps it worse, the recovery is restored but
/// not resolved and the check says why; once the fault ends, it resolves.
#[test]
fn residual_instability_after_a_restore_keeps_the_recovery_unresolved() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let fault = dir.path().join("fault");
    let config = shop_config(proxy, "[{weight: 50, for: 8s}, {weight: 100}]").replace(
        "    environments:\n",
        "    validation:\n      within: 2m\n      journeys:\n        - name: up\n          steps:\n            - {request: GET /healthz}\n    environments:\n",
    );
    let d = Daemon::start(&dir.path().join("state"), &config, proxy);
    let fault_env = format!("DEMO_FAULT_FILE={}", fault.display());
    d.register_with("v1", &["--env", &fault_env]);
    d.register("v2", 0.6);
    d.rollout_wait("v1", 0);
    let traffic = Traffic::start(proxy, 60.0);
    // A baseline needs traffic before the rollout.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let v2 = d.rollout_wait("v2", 1);
    let rec_path = format!(
        "/api/v1/recoveries/{}",
        v2["recovery"]["id"].as_str().unwrap()
    );
    // A shared dependency fails after the restore: v1 is worse than before the rollout.
    std::fs::write(&fault, "0.4").unwrap();
    let baseline_check = |r: &Value| -> Value {
        r["validation"]["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["kind"] == "baseline").cloned())
            .unwrap_or(Value::Null)
    };
    let rec = backstop_testkit::assert_eventually!(
        d.api_get(&rec_path),
        |r| baseline_check(r)["detail"]
            .as_str()
            .is_some_and(|d| d.contains("residual instability")),
        "the restored version is found worse than before the rollout"
    );
    assert_eq!(rec["validation"]["status"], "pending", "{rec:#}");
    assert!(
        baseline_check(&rec)["detail"]
            .as_str()
            .unwrap()
            .contains("residual instability"),
        "{rec:#}"
    );
    std::fs::remove_file(&fault).unwrap();
    let rec = backstop_testkit::assert_eventually!(
        d.api_get(&rec_path),
        |r| r["validation"]["status"] == "passed",
        "once the fault ends, the recovery resolves"
    );
    traffic.stop();
    assert!(
        baseline_check(&rec)["detail"]
            .as_str()
            .unwrap()
            .starts_with("as before the rollout"),
        "{rec:#}"
    );
}
