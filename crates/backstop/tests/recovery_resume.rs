//! A recovery whose step keeps failing stops in a state a person can resume from; after the
//! cause is fixed, `backstop recovery resume` finishes it from the failed step.

use std::time::Duration;

use backstop_testkit::{
    Daemon, backstop_bin, free_port, instance_pids, shop_config_all_at_once, texts_of,
};

#[test]
fn a_failed_recovery_stops_cleanly_and_resumes_after_the_cause_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let proxy = free_port();
    let mut d = Daemon::start(&state, &shop_config_all_at_once(proxy), proxy);

    // v0 runs from its own copy of the binary, which will go missing.
    let artifact = dir.path().join("app-v0");
    std::fs::copy(backstop_bin(), &artifact).unwrap();
    let v0 = d.register_file("v0", &artifact, &[]);
    let digest = v0["sha256"].as_str().unwrap();
    let backup = state
        .join("blobs/sha256")
        .join(&digest[..2])
        .join(&digest[2..]);
    d.rollout_wait("v0", 0);
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    // Wait for v0's scale-down, then take its artifact away: the original and its backup.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while instance_pids(&state).len() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::rename(&artifact, dir.path().join("moved-away")).unwrap();
    std::fs::remove_file(&backup).unwrap();

    let rec = d.rollback("v1 misbehaves", 1);
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let steps = rec["steps"].as_array().unwrap();
    assert_eq!(steps[0]["step"]["kind"], "start_instance");
    assert_eq!(steps[0]["status"], "failed");
    assert_eq!(steps[0]["attempts"], 3);
    assert!(
        steps[0]["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("app-v0"),
        "the error names the cause: {rec:#}"
    );
    assert!(
        steps[1..].iter().all(|s| s["status"] == "pending"),
        "nothing after the failed step ran: {rec:#}"
    );
    // Nothing half-switched: v1 still serves.
    let services = d.cli_json(&["release", "show", "shop@v1"], 0);
    assert_eq!(services["status"], "ok");

    std::fs::rename(dir.path().join("moved-away"), &artifact).unwrap();
    let id = rec["id"].as_str().unwrap();
    let resumed = d.cli_json(&["recovery", "resume", id], 0);
    assert_eq!(resumed["status"], "done", "{resumed:#}");
    assert!(
        texts_of(&resumed["steps"], "status")
            .iter()
            .all(|s| *s == "done")
    );
    assert_eq!(
        d.cli_json(&["release", "show", "shop@v1"], 0)["status"],
        "bad"
    );
    let again = d.cli(&["recovery", "resume", id]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "a finished recovery cannot be resumed"
    );
    d.assert_audit_verifies();
    d.stop();
}
