//! A shared degradation (the stable version fails as much as the new one: a dependency down)
//! is the environment's, not the release's: the rollout is not rolled back for it, does not
//! advance through it either, records and announces the hold, and goes on when the stable
//! version is back to its figures from before the rollout.

use std::time::Duration;

use backstop_testkit::{Daemon, Traffic, audit_actions, item_with, texts_of};

#[test]
fn a_shared_degradation_holds_the_rollout_then_it_goes_on_and_is_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let fault = dir.path().join("dependency-down");
    let d = Daemon::start_shop(dir.path(), "[{weight: 50, for: 4s}, {weight: 100}]");
    let fault_env = format!("DEMO_FAULT_FILE={}", fault.display());
    d.register_with("v1", &["--env", &fault_env]);
    d.register_with("v2", &["--env", &fault_env]);
    d.rollout_wait("v1", 0);
    let traffic = Traffic::start(d.proxy_port, 80.0);
    // The baseline window (5 intervals of 1 s) of v1 before the rollout.
    std::thread::sleep(Duration::from_secs(6));

    let id = d.rollout_start("v2");
    d.wait_rollout(&id, "the canary serving", |r| {
        texts_of(&r["events"], "kind").contains(&"canary.first_request")
    });
    std::fs::write(&fault, "0.4").unwrap();
    let held = d.wait_rollout(&id, "an environment.degraded event", |r| {
        texts_of(&r["events"], "kind").contains(&"environment.degraded")
    });
    let event = item_with(&held["events"], "kind", "environment.degraded");
    let reason = event["detail"]["reason"].as_str().unwrap();
    assert!(reason.contains("stable version's error ratio"), "{reason}");
    assert_eq!(event["detail"]["stable_version"], "v1");

    // Past the step's 4 s: neither advanced nor rolled back while both versions fail alike.
    d.assert_stays_on_first_step(&id, Duration::from_secs(7));

    std::fs::remove_file(&fault).unwrap();
    let done = d.wait_rollout(&id, "promotion after the environment recovered", |r| {
        r["rollout"]["phase"] != "progressing"
    });
    assert_eq!(done["rollout"]["phase"], "promoted", "{done:#}");
    let k = texts_of(&done["events"], "kind");
    let degraded = k.iter().position(|k| *k == "environment.degraded").unwrap();
    let recovered = k.iter().position(|k| *k == "environment.recovered");
    let advanced = k.iter().position(|k| *k == "step.advanced");
    assert!(
        recovered.is_some_and(|r| r > degraded) && advanced > recovered,
        "held, recovered, then advanced: {k:?}"
    );
    d.assert_audit_verifies();
    let records = d.cli_json(&["audit", "list"], 0);
    assert!(
        audit_actions(&records).contains(&"rollout.held"),
        "the hold is audited: {records:#}"
    );
    traffic.stop();
}
