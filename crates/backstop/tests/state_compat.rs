//! A state folder written by an earlier Backstop (`tests/fixtures/state-0bc492e`, see its README)
//! opens with today's binary: the stored rollouts, the recovery journal and the audit chain read
//! back as they were, the stable version is brought back up behind the proxy, and a new rollout
//! runs on top of the old state.

use std::path::Path;

use backstop_testkit::{Daemon, assert_eventually, free_port, http_get, texts_of};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state-0bc492e");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_state_folder_from_before_the_reshape_opens_serves_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    copy_dir(&Path::new(FIXTURE).join("state"), &state);
    // The config's parameters file sits next to it (the harness writes backstop.yaml into the
    // state folder); only the proxy's port changes from the fixture's config.
    std::fs::copy(Path::new(FIXTURE).join("app.toml"), state.join("app.toml")).unwrap();
    let proxy = free_port();
    let config = std::fs::read_to_string(Path::new(FIXTURE).join("backstop.yaml"))
        .unwrap()
        .replace("127.0.0.1:18931", &format!("127.0.0.1:{proxy}"));
    let mut d = Daemon::start(&state, &config, proxy);

    let verify = d.cli_json(&["audit", "verify"], 0);
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["records"].as_u64().unwrap() >= 23, "{verify}");

    let list = d.cli_json(&["rollout", "list"], 0);
    let phases: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["to_release_id"].as_str().unwrap(),
                r["phase"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        phases,
        [
            ("shop@v3", "recovered"),
            ("shop@v2", "promoted"),
            ("shop@v1", "promoted")
        ]
    );

    // The bad release's story reads back whole: its timeline and its recovery journal.
    let v3 = list[0]["id"].as_str().unwrap();
    let detail = d.rollout(v3);
    let kinds = texts_of(&detail["events"], "kind");
    for kind in [
        "rollout.started",
        "canary.first_request",
        "judge.fail",
        "rollout.failed",
        "recovery.started",
        "traffic.restored",
        "rollout.recovered",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let timeline = &detail["timeline"];
    assert!(
        timeline["time_to_restore_ms"].as_i64().unwrap() > 0,
        "{timeline}"
    );
    let recoveries = d.cli_json(&["recovery", "list"], 0);
    let recovery = &recoveries.as_array().unwrap()[0];
    assert_eq!(recovery["status"], "done", "{recovery}");
    assert!(
        recovery["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "done" && s["attempts"] == 1),
        "{recovery}"
    );
    let history = d.cli_json(&["config", "history", "shop", "--env", "prod"], 0);
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");

    // The stable version (v2) comes back up from its verified backup, behind the proxy. (The
    // sample service speaks HTTP/1.0; the proxy passes its status line through.)
    assert_eventually!(
        http_get(proxy, "/"),
        |answer| answer
            .as_deref()
            .is_some_and(|a| a.split_whitespace().nth(1) == Some("200")),
        "the stable version answers 200 behind the proxy"
    );

    // And the old state carries a new rollout to its end.
    let svc = Path::new(FIXTURE).join("svc.py");
    d.cli_json(
        &[
            "release",
            "create",
            "shop",
            "--version",
            "v4",
            "--file",
            svc.to_str().unwrap(),
        ],
        0,
    );
    let v4 = d.rollout_wait("v4", 0);
    assert_eq!(v4["rollout"]["phase"], "promoted", "{v4}");
    d.assert_audit_verifies();
    d.stop();
}
