//! The daemon is killed with SIGKILL in the middle of a rollout and started again: the rollout
//! continues from stored state and ends correctly, running instances are adopted rather than
//! started twice, the audit chain still verifies, and nothing is left running at the end.

use backstop_testkit::{Daemon, Traffic, audit_actions, instance_pids};

const STEPS: &str = "[{weight: 10, for: 4s}, {weight: 50, for: 4s}, {weight: 100}]";

/// A shop daemon with `steps` in `dir`, v1 promoted, v2 registered failing `v2_error_ratio`
/// of its requests, and traffic of `rps` through the proxy.
fn v1_live_and_v2_registered(
    dir: &std::path::Path,
    steps: &str,
    v2_error_ratio: f64,
    rps: f64,
) -> (Daemon, Traffic) {
    let d = Daemon::start_shop(dir, steps);
    d.register("v1", 0.0);
    let v1 = d.rollout_wait("v1", 0);
    assert_eq!(v1["rollout"]["phase"], "promoted");
    d.register("v2", v2_error_ratio);
    let traffic = Traffic::start(d.proxy_port, rps);
    (d, traffic)
}

#[test]
fn killed_mid_rollout_the_daemon_resumes_and_promotes_without_restarting_instances() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, traffic) = v1_live_and_v2_registered(dir.path(), STEPS, 0.0, 50.0);
    let state = d.state_dir.clone();

    let id = d.rollout_start("v2");
    d.wait_rollout(&id, "second step (50 %)", |r| {
        r["rollout"]["canary_weight"] == 50.0
    });
    let before = instance_pids(&state);
    assert_eq!(before.len(), 2, "v1 and the v2 canary run: {before:?}");

    d.kill9();
    assert_eq!(
        instance_pids(&state),
        before,
        "instances outlive the controller (own process groups)"
    );
    d.restart();

    let done = d.wait_phase(&id, "promoted", "promotion after restart");
    assert!(
        done["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "step.advanced" && e["detail"]["weight"] == 100.0)
    );
    let after = instance_pids(&state);
    assert!(
        after.iter().all(|p| before.contains(p)),
        "no instance was started twice: before {before:?}, after {after:?}"
    );

    let (sent, _) = traffic.stop();
    assert!(sent > 0);
    d.assert_audit_verifies();
    let audit = d.cli_json(&["audit", "list"], 0);
    let actions = audit_actions(&audit);
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "controller.started")
            .count(),
        2
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "rollout.promoted").count(),
        2,
        "v1 and v2 each promoted once: {actions:?}"
    );

    d.stop();
    // Scale-down of v1 may still be pending at stop; either way nothing may outlive the daemon.
    assert!(
        instance_pids(&state).is_empty(),
        "a graceful stop leaves no orphans"
    );
}

#[test]
fn killed_while_a_bad_canary_is_live_the_restarted_daemon_still_rolls_it_back() {
    let dir = tempfile::tempdir().unwrap();
    // Long steps: only the judge can end this rollout in time.
    let (mut d, traffic) = v1_live_and_v2_registered(
        dir.path(),
        "[{weight: 20, for: 10m}, {weight: 100}]",
        0.3,
        60.0,
    );
    let state = d.state_dir.clone();

    let id = d.rollout_progressing("v2");
    d.kill9();
    d.restart();

    let done = d.wait_phase(&id, "recovered", "rollback after restart");
    assert_eq!(done["recovery"]["status"], "done");
    for step in done["recovery"]["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "done");
        assert_eq!(step["attempts"], 1, "each step ran once: {step:#}");
    }
    assert_eq!(
        d.cli_json(&["release", "show", "shop@v2"], 0)["status"],
        "bad"
    );
    traffic.stop();
    d.assert_audit_verifies();
    assert_eq!(
        instance_pids(&state).len(),
        1,
        "only v1 runs after the rollback"
    );
    d.stop();
    assert!(instance_pids(&state).is_empty());
}
