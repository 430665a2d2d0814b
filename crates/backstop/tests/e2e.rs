//! End to end through the CLI and a real daemon: a good release is promoted, a bad one is caught
//! and rolled back, the audit chain verifies, and altering one stored record breaks it.

use backstop_testkit::{
    Daemon, Traffic, audit_actions, backstop_bin, rollout_start_args, step_kinds, texts_of,
};

#[test]
fn good_release_promoted_bad_release_rolled_back_audit_verifies_and_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_shop(
        dir.path(),
        "[{weight: 10, for: 3s}, {weight: 50, for: 3s}, {weight: 100}]",
    );
    let state = d.state_dir.clone();

    d.register("v1", 0.0);
    d.register("v2", 0.0);
    d.register("v3", 0.2);

    // First deployment: nothing to compare with, it becomes the baseline.
    let v1 = d.rollout_wait("v1", 0);
    assert_eq!(v1["rollout"]["phase"], "promoted");

    let traffic = Traffic::start(d.proxy_port, 80.0);

    let v2 = d.rollout_wait("v2", 0);
    assert_eq!(v2["rollout"]["phase"], "promoted", "{v2:#}");
    assert!(texts_of(&v2["events"], "kind").contains(&"step.advanced"));

    let v3 = d.rollout_wait("v3", 1);
    assert_eq!(v3["rollout"]["phase"], "recovered", "{v3:#}");
    assert_eq!(
        v3["rollout"]["verdict"]["verdict"], "fail",
        "the judge's report is the evidence: {v3:#}"
    );
    let timeline = &v3["timeline"];
    assert!(timeline["time_to_detect_ms"].as_i64().unwrap() > 0);
    assert!(
        timeline["traffic_restored_at_ms"].as_i64().unwrap()
            >= timeline["verdict_at_ms"].as_i64().unwrap()
    );
    let recovery = &v3["recovery"];
    assert_eq!(recovery["status"], "done");
    assert_eq!(
        step_kinds(recovery),
        [
            "wait_healthy",
            "shift_traffic",
            "stop_instance",
            "mark_release_bad",
            "wait_healthy",
            "verify_signals"
        ]
    );

    let (sent, _failed) = traffic.stop();
    assert!(sent > 100, "traffic flowed: {sent}");

    // `rollout explain`: the decision, the numbers it was made on, what would have changed it.
    let v3_id = v3["rollout"]["id"].as_str().unwrap();
    let why = d.cli_json(&["rollout", "explain", v3_id], 0);
    assert_eq!(why["decided_by"], "judge", "{why:#}");
    assert!(why["intervals"].as_u64().unwrap() > 0, "{why:#}");
    let errors = why["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["signal"] == "error_ratio")
        .unwrap_or_else(|| panic!("{why:#}"));
    assert_eq!(errors["verdict"], "fail", "{why:#}");
    assert!(
        errors["comparison"]
            .as_str()
            .unwrap()
            .starts_with("canary "),
        "{why:#}"
    );
    assert!(
        why["would_change"][0]
            .as_str()
            .unwrap()
            .contains("would not have failed"),
        "{why:#}"
    );
    let text = d.cli(&["rollout", "explain", v3_id, "-o", "text"]);
    let text = String::from_utf8_lossy(&text.stdout);
    for expected in [
        "decision: shop@v3 was rolled back",
        "error_ratio: FAIL",
        "what would have changed it:",
        "recovery step shift_traffic done",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
    let v2_why = d.cli_json(
        &["rollout", "explain", v2["rollout"]["id"].as_str().unwrap()],
        0,
    );
    assert_eq!(v2_why["phase"], "promoted", "{v2_why:#}");
    assert!(
        v2_why["signals"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["verdict"] == "pass"),
        "{v2_why:#}"
    );

    // /metrics counts the decisions; the rolled-back version's proxy series are gone.
    let metrics = backstop_testkit::http_get(d.api_port(), "/metrics").unwrap();
    for line in [
        "backstop_verdicts_total{judge=\"sequential\",result=\"fail\"} 1",
        "backstop_rollouts_finished_total{result=\"recovered\"} 1",
        "backstop_rollouts_finished_total{result=\"promoted\"} 2",
        "backstop_time_to_detect_seconds_count 1",
        "backstop_time_to_restore_seconds_count 1",
        "backstop_recoveries_total{trigger=\"rollout.failed\",outcome=\"done\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    // Three explanations were asked for above: each call is counted once, by its route.
    assert!(
        metrics.lines().any(|l| l
            == "backstop_api_requests_total{method=\"GET\",route=\"/api/v1/rollouts/{id}/explain\",status=\"200\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("process_resident_memory_bytes "),
        "{metrics}"
    );
    assert!(
        metrics.contains("version=\"v2\"") && !metrics.contains("version=\"v3\""),
        "only routed versions have proxy series:\n{metrics}"
    );
    // One access-log line per call: the route's template, the status, who called.
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("/api/v1/rollouts/{id}/explain")
                && l.contains("token:admin")
                && l.contains("\"status\":200")),
        "an access-log line for explain in the daemon's log"
    );
    // And one per decision and per recovery step.
    for decision in [
        "\"event\":\"judge.fail\"",
        "\"event\":\"recovery.step.done\"",
    ] {
        assert!(
            log.lines().any(|l| l.contains(decision)),
            "a log line with {decision}"
        );
    }

    // The environment is back on v2, and v3 is marked bad and refused.
    let services = d.cli_json(&["release", "show", "shop@v3"], 0);
    assert_eq!(services["status"], "bad");
    let again = d.cli(&rollout_start_args("v3", &[]));
    // Refused by the promotion gate: the check said no (exit 1), with the reason.
    assert_eq!(
        again.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("rolled back"));

    // The exported scenario replays to the same verdict offline.
    let id = v3["rollout"]["id"].as_str().unwrap();
    let export = d.cli(&["rollout", "export", id]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let file = dir.path().join("v3.jsonl");
    std::fs::write(&file, &export.stdout).unwrap();
    let analyze = std::process::Command::new(backstop_bin())
        .args(["analyze", "--output", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        analyze.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&analyze.stdout)
    );

    // Audit: intact through the API and on the state folder.
    let v = d.cli_json(&["audit", "verify"], 0);
    assert_eq!(v["ok"], true);
    let records = d.cli_json(&["audit", "list"], 0);
    let actions = audit_actions(&records);
    for expected in [
        "release.created",
        "rollout.created",
        "rollout.promoted",
        "rollout.failed",
        "recovery.started",
        "recovery.step.done",
        "recovery.done",
    ] {
        assert!(
            actions.contains(&expected),
            "audit lacks {expected}: {actions:?}"
        );
    }
    d.stop();

    // Alter one stored record the way someone with disk access would.
    let db = state.join("backstop.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE audit SET actor = 'someone-else' WHERE seq = 4")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let out = std::process::Command::new(backstop_bin())
        .args(["audit", "verify", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BROKEN at record 4"), "{text}");
}
