//! Break-glass: someone without the releaser role rolls back in an emergency. It runs at once,
//! is flagged in the audit and the recovery, is announced to the webhook, and waits for a
//! second person's review, which the one who broke the glass cannot give.

use backstop_testkit::webhook::webhook_sink;
use backstop_testkit::{Daemon, free_port, item_with, shop_config_all_at_once};

#[test]
fn a_viewer_breaks_the_glass_the_rollback_runs_flagged_and_a_second_person_reviews_it() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let (hook_port, received) = webhook_sink();
    let config = shop_config_all_at_once(proxy).replace(
        "    rollout:\n",
        &format!("    notify:\n      - {{webhook: \"http://127.0.0.1:{hook_port}/hook\"}}\n    rollout:\n"),
    );
    let d = Daemon::start(&dir.path().join("state"), &config, proxy);
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    d.rollout_wait("v1", 0);
    d.rollout_wait("v2", 0);
    let token = |name: &str, role: &str| {
        d.cli_json(&["token", "create", "--name", name, "--role", role], 0)["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let dave = token("dave", "viewer");
    let erin = token("erin", "releaser");

    // Without the role, a plain rollback is refused, naming it.
    let rollback = [
        "rollback",
        "shop",
        "--env",
        "prod",
        "--reason",
        "checkout 5xx at 40%",
    ];
    let mut plain = rollback.to_vec();
    plain.extend_from_slice(&["--token", &dave]);
    let out = d.cli(&plain);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("role releaser"));

    // Breaking the glass runs it.
    let mut glass = plain.clone();
    glass.push("--break-glass");
    glass.extend_from_slice(&["-o", "json"]);
    let out = d.cli(&glass);
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", d.log());
    let recovery: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(recovery["status"], "done", "{recovery:#}");
    assert!(
        recovery["reason"]
            .as_str()
            .unwrap()
            .starts_with("BREAK-GLASS by token:dave"),
        "{recovery:#}"
    );
    let audit = d.cli_json(&["audit", "list"], 0);
    let used = item_with(&audit, "action", "break_glass.used");
    assert_eq!(used["actor"], "token:dave");
    assert_eq!(used["trigger"], "break-glass");
    d.wait_until("the webhook hears of it", || {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "break_glass.used")
    });

    // It waits for a review: not by the one who broke the glass, not without a note.
    let waiting = d.cli_json(&["approvals"], 0);
    let review = item_with(&waiting, "kind", "break_glass.rollback");
    assert_eq!(review["status"], "to_review");
    assert_eq!(review["result"]["recovery"], recovery["id"]);
    let id = review["id"].as_str().unwrap();
    let out = d.cli(&["approve", id, "--note", "fine", "--token", &dave]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
    let out = d.cli(&["approve", id, "--token", &erin]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a note"));
    let reviewed = d.cli_json(
        &[
            "approve",
            id,
            "--note",
            "5xx confirmed in the logs",
            "--token",
            &erin,
        ],
        0,
    );
    assert_eq!(reviewed["status"], "reviewed");
    assert_eq!(reviewed["decided_by"], "token:erin");
    assert!(d.cli_json(&["approvals"], 0).as_array().unwrap().is_empty());
    let audit = d.cli_json(&["audit", "list"], 0);
    assert_eq!(
        item_with(&audit, "action", "break_glass.reviewed")["actor"],
        "token:erin"
    );
    d.assert_audit_verifies();
}
