//! Error-log lines as a signal (`signals.logs`): a release that answers every request as usual
//! but writes an `ERROR` line for a third of them is caught by the same sequential judge, from
//! the instance logs Backstop captures, and rolled back; its explanation names the signal. A
//! release that logs no more errors than the stable one is promoted.

use backstop_testkit::{Daemon, Traffic, free_port, shop_config};

#[test]
fn a_release_that_only_logs_its_failures_is_rolled_back_on_its_error_lines() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let config = shop_config(proxy, "[{weight: 50, for: 8s}, {weight: 100}]").replace(
        "    environments:",
        "    signals:\n      logs: {pattern: \"^ERROR \"}\n    environments:",
    );
    let d = Daemon::start(&dir.path().join("state"), &config, proxy);
    // The stable version logs an error now and then, as real services do.
    d.register_with("v1", &["--env", "DEMO_ERROR_LOG_RATIO=0.02"]);
    d.register_with("v2", &["--env", "DEMO_ERROR_LOG_RATIO=0.3"]);
    d.register_with("v3", &["--env", "DEMO_ERROR_LOG_RATIO=0.02"]);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let _traffic = Traffic::start(proxy, 80.0);

    let v2 = d.rollout_wait("v2", 1);
    assert_eq!(v2["rollout"]["phase"], "recovered", "{v2:#}");
    let id = v2["rollout"]["id"].as_str().unwrap();
    let explained = d.cli_json(&["rollout", "explain", id], 0);
    let logs = explained["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["signal"] == "error_logs")
        .unwrap_or_else(|| panic!("an error_logs signal in {explained:#}"));
    assert_eq!(logs["verdict"], "fail", "{explained:#}");
    assert!(
        logs["comparison"]
            .as_str()
            .unwrap()
            .contains("error-log lines"),
        "{explained:#}"
    );
    // Users saw no errors: only the logs told.
    let errors = explained["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["signal"] == "error_ratio")
        .unwrap();
    assert_ne!(errors["verdict"], "fail", "{explained:#}");

    // A release that logs errors as often as the stable one is promoted.
    let v3 = d.rollout_wait("v3", 0);
    assert_eq!(v3["rollout"]["phase"], "promoted", "{v3:#}");
}
