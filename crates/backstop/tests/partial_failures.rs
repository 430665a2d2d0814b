//! Partial failures (practice 3.3): a version runs as several instances (`run.instances`)
//! behind the built-in proxy, and some, not all, of them failing is found and acted on: a
//! crashed stable instance is a partial failure, recorded with its severity and replaced; one
//! bad instance among ten is found from the proxy's per-instance error counts and replaced; a
//! new version whose probes fail on one of its three instances is rolled back, the reason
//! naming the instance; a daemon killed mid-canary adopts all six instances it finds.

use std::path::Path;

use backstop_testkit::{Daemon, Traffic, audit_actions, free_port, instance_pids, shop_config};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The shop config with `instances` per version and `extra` lines in its `run` block.
fn config(proxy: u16, instances: u32, steps: &str, extra: &str) -> String {
    shop_config(proxy, steps).replace(
        "      scale_down_delay: 1s\n",
        &format!("      scale_down_delay: 1s\n      instances: {instances}\n{extra}"),
    )
}

/// The process group of the instance whose id ends with `suffix` (its log is `<id>.log`).
fn pid_of_instance(state: &Path, suffix: &str) -> Option<u32> {
    let logs = state.join("logs");
    instance_pids(state).into_iter().find(|pid| {
        std::fs::read_link(format!("/proc/{pid}/fd/1")).is_ok_and(|target| {
            target.starts_with(&logs)
                && target.to_string_lossy().ends_with(&format!("{suffix}.log"))
        })
    })
}

fn audit_record<'a>(audit: &'a serde_json::Value, action: &str) -> &'a serde_json::Value {
    audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == action)
        .unwrap_or_else(|| panic!("no {action} in {audit:#}"))
}

#[test]
fn a_crashed_instance_of_three_is_a_partial_failure_and_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let d = Daemon::start(
        &dir.path().join("state"),
        &config(proxy, 3, "[{weight: 100}]", ""),
        proxy,
    );
    let state = d.state_dir.clone();
    d.register("v1", 0.0);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    assert_eq!(instance_pids(&state).len(), 3, "three instances of v1 run");
    let second = pid_of_instance(&state, "-r2").expect("the second instance runs");

    killpg(Pid::from_raw(second as i32), Signal::SIGKILL).unwrap();

    d.wait_until("the second instance is replaced", || {
        pid_of_instance(&state, "-r2").is_some_and(|p| p != second)
            && instance_pids(&state).len() == 3
            && audit_actions(&d.cli_json(&["audit", "list"], 0)).contains(&"instance.restarted")
    });
    let audit = d.cli_json(&["audit", "list"], 0);
    let partial = audit_record(&audit, "instance.partial_failure");
    let evidence = &partial["evidence"];
    assert_eq!(evidence["instances"], 3, "{partial:#}");
    assert_eq!(evidence["severity"], "major", "{partial:#}");
    assert_eq!(evidence["action"], "replace", "{partial:#}");
    assert!(
        evidence["unhealthy"][0]["instance"]
            .as_str()
            .unwrap()
            .ends_with("-r2"),
        "{partial:#}"
    );
    let restarted = audit_record(&audit, "instance.restarted");
    assert!(
        restarted["evidence"]["instance"]
            .as_str()
            .unwrap()
            .ends_with("-r2"),
        "{restarted:#}"
    );
    // Users kept being served by the other two meanwhile, and all three serve again.
    d.wait_until("the environment is healthy again", || {
        d.api_get("/api/v1/services")[0]["environments"][0]["health"]["status"] == "healthy"
    });
    let health = &d.api_get("/api/v1/services")[0]["environments"][0]["health"];
    let instances = health["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 3, "{health:#}");
    let second = instances
        .iter()
        .find(|i| i["id"].as_str().unwrap().ends_with("-r2"))
        .unwrap();
    assert_eq!(
        (&second["healthy"], &second["restarts"]),
        (&true.into(), &1.into()),
        "{health:#}"
    );
    let metrics = backstop_testkit::http_get(d.api_port(), "/metrics").unwrap();
    let healthy_series = metrics
        .lines()
        .filter(|l| l.starts_with("backstop_instance_healthy{service=\"shop\""))
        .count();
    assert_eq!(healthy_series, 3, "one series per instance: {metrics}");
}

#[test]
fn one_bad_instance_among_ten_is_found_from_its_errors_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let d = Daemon::start(
        &dir.path().join("state"),
        &config(proxy, 10, "[{weight: 100}]", ""),
        proxy,
    );
    let state = d.state_dir.clone();
    // Healthy to its health check, but one instance in ten fails a third of its requests.
    d.register_with(
        "v1",
        &[
            "--env",
            "DEMO_BAD_INSTANCE=-r7",
            "--env",
            "DEMO_BAD_INSTANCE_ERROR_RATIO=0.3",
        ],
    );
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    assert_eq!(instance_pids(&state).len(), 10);
    let seventh = pid_of_instance(&state, "-r7").unwrap();
    let traffic = Traffic::start(proxy, 100.0);
    d.wait_until("the bad instance is found and replaced", || {
        audit_actions(&d.cli_json(&["audit", "list"], 0)).contains(&"instance.outlier")
            && pid_of_instance(&state, "-r7").is_some_and(|p| p != seventh)
    });
    traffic.stop();
    let audit = d.cli_json(&["audit", "list"], 0);
    let outlier = audit_record(&audit, "instance.outlier");
    let found = &outlier["evidence"]["outlier"];
    assert!(
        found["instance"].as_str().unwrap().ends_with("-r7"),
        "the culprit, not a sibling: {outlier:#}"
    );
    assert!(found["p_value"].as_f64().unwrap() < 0.01, "{outlier:#}");
    // Only the bad one was replaced.
    let outliers = audit_actions(&audit)
        .into_iter()
        .filter(|a| *a == "instance.outlier")
        .count();
    assert!(outliers >= 1, "{audit:#}");
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "instance.outlier")
            .all(|r| r["evidence"]["outlier"]["instance"]
                .as_str()
                .unwrap()
                .ends_with("-r7")),
        "{audit:#}"
    );
}

#[test]
fn a_new_version_failing_its_probe_on_one_instance_of_three_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    // The exec probe fails on v2's second instance only.
    let probe = "      probes:\n        - kind: tcp\n        - kind: exec\n          command: 'case \"$BACKSTOP_INSTANCE\" in *-r2) [ \"$BACKSTOP_VERSION\" != v2 ];; esac'\n";
    let d = Daemon::start(
        &dir.path().join("state"),
        &config(proxy, 3, "[{weight: 50, for: 30s}, {weight: 100}]", probe),
        proxy,
    );
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let _traffic = Traffic::start(proxy, 40.0);
    let v2 = d.rollout_wait("v2", 1);
    assert_eq!(v2["rollout"]["phase"], "recovered", "{v2:#}");
    let reason = v2["rollout"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("partial failure (major) of the new version: 1 of 3 instances unhealthy"),
        "{reason}"
    );
    assert!(reason.contains("-r2: exec probe"), "{reason}");
    // v1's three instances serve again, v2's are gone.
    assert_eq!(instance_pids(&d.state_dir).len(), 3);
}

/// `kill -9` of the daemon while a new version's three instances are in their canary: the
/// restarted daemon adopts every instance (none started twice, none left behind), the rollout
/// ends, and the old version's three are scaled down.
#[test]
fn a_daemon_killed_mid_canary_adopts_every_instance_of_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let mut d = Daemon::start(
        &dir.path().join("state"),
        &config(proxy, 3, "[{weight: 50, for: 4s}, {weight: 100}]", ""),
        proxy,
    );
    let state = d.state_dir.clone();
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let _traffic = Traffic::start(proxy, 30.0);
    let id = d.rollout_progressing("v2");
    let before = instance_pids(&state);
    assert_eq!(before.len(), 6, "three of each version: {before:?}");

    d.kill9();
    d.restart();

    let done = d.wait_rollout(&id, "the rollout ends", |r| {
        ["promoted", "recovered"].contains(&r["rollout"]["phase"].as_str().unwrap_or(""))
    });
    assert_eq!(done["rollout"]["phase"], "promoted", "{done:#}");
    let v2: Vec<u32> = ["", "-r2", "-r3"]
        .iter()
        .map(|suffix| {
            let primary = done["rollout"]["canary_instance_id"].as_str().unwrap();
            pid_of_instance(&state, &format!("{primary}{suffix}"))
                .unwrap_or_else(|| panic!("{primary}{suffix} runs"))
        })
        .collect();
    assert!(
        v2.iter().all(|pid| before.contains(pid)),
        "v2's instances were adopted, not started again: {v2:?} of {before:?}"
    );
    d.wait_until("v1's three instances are scaled down", || {
        instance_pids(&state).len() == 3
    });
}
