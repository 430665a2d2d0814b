//! Supervision: a crashed stable instance is noticed and restarted. `kill -9` of the stable
//! instance's process group in steady state used to go unnoticed: the proxy answered 502 until
//! the next daemon restart, the gate said GO, and nothing was recorded.

use backstop_testkit::{Daemon, audit_actions, http_get, instance_pids};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

#[test]
fn a_crashed_stable_instance_is_restarted_recorded_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_shop(dir.path(), "[{weight: 100}]");
    let (state, proxy) = (d.state_dir.clone(), d.proxy_port);
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    let before = instance_pids(&state);
    assert_eq!(before.len(), 1, "{before:?}");

    killpg(Pid::from_raw(before[0] as i32), Signal::SIGKILL).unwrap();

    // Users get an answer from the proxy meanwhile, never a connection error: 502 on a pooled
    // connection the dying process reset, 503 while nothing listens; then v1 again from a new
    // process.
    let mut answers = Vec::new();
    d.wait_until("v1 serves again after its process was killed", || {
        let answer = http_get(proxy, "/").expect("the proxy always answers");
        let status = answer.lines().next().unwrap_or("").to_string();
        assert!(
            ["HTTP/1.1 200", "HTTP/1.1 502", "HTTP/1.1 503"]
                .iter()
                .any(|s| status.starts_with(s)),
            "{answer}"
        );
        answers.push(status.clone());
        status.starts_with("HTTP/1.1 200") && instance_pids(&state) != before
    });
    let after = instance_pids(&state);
    assert_eq!(after.len(), 1, "one v1 instance runs: {after:?}");

    let audit = d.cli_json(&["audit", "list"], 0);
    let restarts = audit_actions(&audit)
        .into_iter()
        .filter(|a| *a == "instance.restarted")
        .count();
    assert_eq!(restarts, 1, "{audit:#}");
    let record = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "instance.restarted")
        .unwrap();
    assert_eq!(record["evidence"]["role"], "stable", "{record:#}");
    assert_eq!(
        record["evidence"]["reason"], "its process exited",
        "{record:#}"
    );

    let services = d.api_get("/api/v1/services");
    let health = &services[0]["environments"][0]["health"];
    assert_eq!(health["status"], "healthy", "{services:#}");
    assert_eq!(health["restarts"], 1, "{services:#}");
    assert_eq!(health["last_problem"], "its process exited", "{services:#}");
    let metrics = http_get(d.api_port(), "/metrics").unwrap();
    assert_eq!(
        stable_series(&metrics, "backstop_instance_restarts_total"),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(
        stable_series(&metrics, "backstop_instance_healthy"),
        Some("1"),
        "{metrics}"
    );
}

/// The value of `name`'s one series for shop's stable instance in prod (labelled with its id).
fn stable_series<'a>(metrics: &'a str, name: &str) -> Option<&'a str> {
    let prefix =
        format!("{name}{{service=\"shop\",env=\"prod\",role=\"stable\",instance=\"shop-prod-v1-");
    let mut found = metrics.lines().filter(|l| l.starts_with(&prefix));
    let line = found.next()?;
    assert!(found.next().is_none(), "one series: {metrics}");
    line.rsplit_once(' ').map(|(_, v)| v)
}

/// A good release is not failed for the stable version's crash: with the stable instance
/// killed mid-rollout, a good canary used to be rolled back "severity critical", its latency
/// compared with the dead stable version's instant 502s.
#[test]
fn a_good_canary_is_not_failed_when_the_stable_version_crashes_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_shop(dir.path(), "[{weight: 30, for: 6s}, {weight: 100}]");
    let (state, proxy) = (d.state_dir.clone(), d.proxy_port);
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    let stable = instance_pids(&state);
    let traffic = backstop_testkit::Traffic::start(proxy, 40.0);
    d.register("v2", 0.0);
    let id = d.rollout_progressing("v2");
    std::thread::sleep(std::time::Duration::from_secs(1));
    killpg(Pid::from_raw(stable[0] as i32), Signal::SIGKILL).unwrap();
    let done = d.wait_rollout(&id, "the rollout ends", |r| {
        ["promoted", "recovered", "failed"].contains(&r["rollout"]["phase"].as_str().unwrap_or(""))
    });
    traffic.stop();
    assert_eq!(done["rollout"]["phase"], "promoted", "{done:#}");
    let v2 = d.cli_json(&["release", "show", "shop@v2"], 0);
    assert_ne!(v2["status"], "bad", "{v2:#}");
}

/// A stable instance that cannot come back is a crash loop: restarted with backoff, reported
/// once (audit, metric), shown on the environment, and the gate refuses rollouts meanwhile;
/// once it can start again, it serves and the environment is healthy.
#[test]
fn a_stable_instance_that_keeps_crashing_is_a_crash_loop_until_it_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_shop(dir.path(), "[{weight: 100}]");
    let (state, proxy) = (d.state_dir.clone(), d.proxy_port);
    // The release's artifact refuses to start while a flag file exists.
    let flag = dir.path().join("crash");
    let artifact = dir.path().join("app.sh");
    std::fs::write(
        &artifact,
        format!(
            "#!/bin/sh\n[ -e {} ] && {{ echo crashing >&2; exit 1; }}\nexec {} \"$@\"\n",
            flag.display(),
            backstop_testkit::backstop_bin().display()
        ),
    )
    .unwrap();
    d.register_file("v1", &artifact, &[]);
    d.rollout_wait("v1", 0);

    std::fs::write(&flag, "").unwrap();
    let stable = instance_pids(&state);
    killpg(Pid::from_raw(stable[0] as i32), Signal::SIGKILL).unwrap();
    d.wait_until("the crash loop is reported", || {
        audit_actions(&d.cli_json(&["audit", "list"], 0)).contains(&"instance.crash_loop")
    });
    let services = d.api_get("/api/v1/services");
    assert_eq!(
        services[0]["environments"][0]["health"]["status"], "crash_loop",
        "{services:#}"
    );
    let metrics = http_get(d.api_port(), "/metrics").unwrap();
    assert_eq!(
        stable_series(&metrics, "backstop_instance_crash_loop"),
        Some("1"),
        "{metrics}"
    );
    d.register("v2", 0.0);
    let gate = d.cli_json_output(&["gate", "shop", "--env", "prod", "--release", "v2"], 1);
    let report: serde_json::Value = serde_json::from_slice(&gate.stdout).unwrap();
    let check = backstop_testkit::item_with(&report["checks"], "name", "stable_healthy");
    assert_eq!(check["ok"], false, "{report:#}");

    // It can start again: the next restart (after its backoff) brings users back.
    std::fs::remove_file(&flag).unwrap();
    d.wait_until("the stable instance serves again", || {
        http_get(proxy, "/").is_some_and(|a| a.starts_with("HTTP/1.1 200"))
    });
    let crash_loops = audit_actions(&d.cli_json(&["audit", "list"], 0))
        .into_iter()
        .filter(|a| *a == "instance.crash_loop")
        .count();
    assert_eq!(crash_loops, 1, "reported once");
}

/// The colour kept warm after a blue-green switch (for a rollback in one switch) is supervised
/// too: it survives a daemon restart, killed it is restarted and recorded, and a rollback still
/// switches back to it at once.
#[test]
fn the_warm_colour_is_restarted_and_a_rollback_still_switches_back_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = backstop_testkit::free_port();
    let config = backstop_testkit::shop_config(proxy, "[{weight: 100}]").replace(
        "strategy: canary",
        "strategy: blue-green\n      rollback_window: 10m",
    );
    let mut d = Daemon::start(&dir.path().join("state"), &config, proxy);
    let state = d.state_dir.clone();
    d.register("blue", 0.0);
    d.register("green", 0.0);
    d.rollout_wait("blue", 0);
    d.rollout_wait("green", 0);
    let of_blue = |pids: Vec<u32>| -> Vec<u32> {
        pids.into_iter()
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/fd/1"))
                    .is_ok_and(|log| log.to_string_lossy().contains("-blue-"))
            })
            .collect()
    };
    let warm = of_blue(instance_pids(&state));
    assert_eq!(
        warm.len(),
        1,
        "blue stays warm: {:?}",
        instance_pids(&state)
    );
    // A daemon restart keeps it warm (it used to stop it as unreferenced).
    d.kill9();
    d.restart();
    d.wait_until("the restarted daemon has looked at its instances", || {
        audit_actions(&d.cli_json(&["audit", "list"], 0))
            .iter()
            .filter(|a| **a == "controller.started")
            .count()
            == 2
    });
    assert_eq!(
        of_blue(instance_pids(&state)),
        warm,
        "still warm after a restart"
    );

    killpg(Pid::from_raw(warm[0] as i32), Signal::SIGKILL).unwrap();
    d.wait_until("the warm colour's restart is recorded", || {
        audit_actions(&d.cli_json(&["audit", "list"], 0)).contains(&"instance.restarted")
    });
    let audit = d.cli_json(&["audit", "list"], 0);
    let record = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "instance.restarted")
        .unwrap_or_else(|| panic!("{audit:#}"));
    assert_eq!(record["evidence"]["role"], "warm", "{record:#}");
    let restarted = of_blue(instance_pids(&state));
    assert!(restarted.len() == 1 && restarted != warm, "{restarted:?}");

    let rec = d.rollback("late failure", 0);
    assert_eq!(rec["status"], "done", "{rec:#}");
    assert_eq!(
        instance_pids(&state),
        restarted,
        "switched back to the restarted warm instance, not a new one"
    );
    assert!(http_get(proxy, "/").is_some_and(|a| a.contains("x-backstop-version: blue")));
}
