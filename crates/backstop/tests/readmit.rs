//! Re-admitting a release after a false alarm: v2 is rolled back while a dependency only it
//! calls is failing (the judge was right about what users saw, but the release was fine). Once
//! the dependency is back, a releaser readmits v2 with a reason: its bad mark is cleared
//! (audited; a deployer may not, a reason is required, a second readmit is refused), the
//! rollout that rolled it back is labelled `false-alarm` for calibration, and the same artifact
//! rolls out and is promoted.

use backstop_testkit::{Daemon, Traffic, audit_actions};

#[test]
fn a_release_rolled_back_by_a_false_alarm_is_readmitted_and_ships() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_shop(dir.path(), "[{weight: 50, for: 6s}, {weight: 100}]");
    let fault = dir.path().join("payments-down");
    std::fs::write(&fault, "0.5").unwrap();
    d.register("v1", 0.0);
    d.register_with(
        "v2",
        &["--env", &format!("DEMO_FAULT_FILE={}", fault.display())],
    );
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let _traffic = Traffic::start(d.proxy_port, 60.0);
    let first = d.rollout_wait("v2", 1);
    assert_eq!(first["rollout"]["phase"], "recovered", "{first:#}");
    let rollout_id = first["rollout"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        d.cli_json(&["release", "show", "shop@v2"], 0)["status"],
        "bad"
    );
    // The dependency is back.
    std::fs::remove_file(&fault).unwrap();

    // A reason is required, and a deployer may not readmit.
    let no_reason = d.cli(&["release", "readmit", "shop@v2", "--reason", " "]);
    assert_eq!(no_reason.status.code(), Some(2), "{no_reason:?}");
    let deployer = d.cli_json(
        &["token", "create", "--name", "ci", "--role", "deployer"],
        0,
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = d.cli(&[
        "release", "readmit", "shop@v2", "--reason", "x", "--token", &deployer,
    ]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("releaser"), "{said}");
    assert_eq!(
        d.cli_json(&["release", "show", "shop@v2"], 0)["status"],
        "bad"
    );

    let readmitted = d.cli_json(
        &[
            "release",
            "readmit",
            "shop@v2",
            "--reason",
            "the payment provider was down, not v2",
        ],
        0,
    );
    assert_eq!(readmitted["status"], "ok", "{readmitted:#}");
    assert!(readmitted["bad_reason"].is_null(), "{readmitted:#}");
    let again = d.cli(&["release", "readmit", "shop@v2", "--reason", "again"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not marked bad"),
        "{again:?}"
    );

    let audit = d.cli_json(&["audit", "list"], 0);
    let actions = audit_actions(&audit);
    assert!(actions.contains(&"release.readmitted"), "{audit:#}");
    let label = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "verdict.labelled")
        .unwrap_or_else(|| panic!("a verdict label in {audit:#}"));
    assert_eq!(
        label["target"],
        format!("rollout/{rollout_id}"),
        "{label:#}"
    );
    assert_eq!(label["evidence"]["label"], "false-alarm", "{label:#}");

    // The same artifact ships now.
    let second = d.rollout_wait("v2", 0);
    assert_eq!(second["rollout"]["phase"], "promoted", "{second:#}");
}
