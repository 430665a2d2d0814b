//! The global circuit breaker: three failing verdicts in one environment pause progressive
//! rollouts there (the promotion gate refuses new ones) until a person resets it; the reset is audited and the rollout carries on.

use backstop_testkit::{
    Daemon, Traffic, audit_actions, free_port, rollout_start_args, shop_config,
};

#[test]
fn three_failed_rollouts_trip_the_breaker_and_a_reset_lets_rollouts_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_shop(dir.path(), "[{weight: 50, for: 2s}, {weight: 100}]");
    d.register("v0", 0.0);
    d.rollout_wait("v0", 0);
    let traffic = Traffic::start(d.proxy_port, 60.0);

    for bad in ["b1", "b2", "b3"] {
        d.register(bad, 0.5);
        let r = d.rollout_wait(bad, 1);
        assert_eq!(r["rollout"]["phase"], "recovered", "{r:#}");
        assert_eq!(
            r["rollout"]["severity"], "critical",
            "half the requests failing is critical: {r:#}"
        );
    }
    let trips = d.cli_json(&["breaker", "status"], 0);
    assert_eq!(trips.as_array().unwrap().len(), 1, "{trips:#}");
    assert_eq!(trips[0]["scope"], "env:prod");

    // While the breaker is open the promotion gate refuses new rollouts in scope (exit 1,
    // with the reason); nothing is created.
    d.register("good", 0.0);
    let start = rollout_start_args("good", &[]);
    let refused = d.cli(&start);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("breaker: circuit breaker open for env:prod"),
        "{stderr}"
    );

    let bad_reset = d.cli(&[
        "breaker",
        "reset",
        "--scope",
        "env:staging",
        "--reason",
        "x",
    ]);
    assert_eq!(bad_reset.status.code(), Some(2), "no open trip there");
    d.cli_json(
        &[
            "breaker",
            "reset",
            "--scope",
            "env:prod",
            "--reason",
            "root cause fixed",
        ],
        0,
    );
    let started = d.cli_json(&start, 0);
    let id = started["id"].as_str().unwrap().to_string();
    let done = d.wait_phase(&id, "promoted", "promotion after the reset");
    assert_eq!(done["rollout"]["phase"], "promoted");
    traffic.stop();

    let audit = d.cli_json(&["audit", "list"], 0);
    let actions = audit_actions(&audit);
    assert!(
        actions.contains(&"breaker.tripped") && actions.contains(&"breaker.reset"),
        "{actions:?}"
    );
    d.assert_audit_verifies();
    d.stop();
}

#[test]
fn a_canary_that_stops_answering_health_checks_trips_the_per_rollout_breaker() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let proxy = free_port();
    let config = shop_config(proxy, "[{weight: 10, for: 1h}, {weight: 100}]").replace(
        "    rollout:",
        "    breaker: {failed_checks: 2}\n    rollout:",
    );
    let mut d = Daemon::start(&state, &config, proxy);
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    let stable = backstop_testkit::instance_pids(&state);
    d.register("v2", 0.0);
    let id = d.rollout_progressing("v2");
    // The canary dies (no traffic flows, so the error counts cannot show it).
    let canary: Vec<u32> = backstop_testkit::instance_pids(&state)
        .into_iter()
        .filter(|p| !stable.contains(p))
        .collect();
    assert_eq!(canary.len(), 1);
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(canary[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let done = d.wait_phase(&id, "recovered", "breaker rollback");
    assert!(
        done["rollout"]["reason"]
            .as_str()
            .unwrap()
            .contains("health checks in a row"),
        "{done:#}"
    );
    d.assert_audit_verifies();
    d.stop();
}
