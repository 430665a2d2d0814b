//! Crash safety of recovery: the daemon is killed with SIGKILL at seeded random points while a
//! rollback runs (re-deploy the last known good, shift traffic, stop the bad version, mark it
//! bad, set LKG), then started again. Every recovery must complete, no step's side effect may
//! happen twice (exactly one instance process group runs afterwards: a double start would leave
//! two), and the audit chain must verify.
//!
//! `BACKSTOP_CRASH_POINTS` (default 20) and `BACKSTOP_CRASH_SEED` (default 7) choose the points.

use std::process::{Command, Stdio};
use std::time::Duration;

use backstop_testkit::{
    Daemon, SplitMix, backstop_bin, env_or, free_port, instance_pids, rollback_args, shop_config,
};

#[test]
fn recovery_survives_sigkill_at_random_points_and_never_applies_a_step_twice() {
    let points = env_or("BACKSTOP_CRASH_POINTS", 20);
    let mut rng = SplitMix(env_or("BACKSTOP_CRASH_SEED", 7));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let proxy = free_port();
    // Hooks are the counted side effects: each run appends its idempotency key to invoked.log;
    // an idempotent hook (as users should write them) applies each key once to applied.log.
    let log = dir.path().display().to_string();
    let hook = |name: &str| {
        format!(
            "echo $BACKSTOP_IDEMPOTENCY_KEY >> {log}/invoked.log; sleep 0.2; grep -qx $BACKSTOP_IDEMPOTENCY_KEY {log}/applied.log 2>/dev/null || echo $BACKSTOP_IDEMPOTENCY_KEY >> {log}/applied.log # {name}"
        )
    };
    let hooks = format!(
        "    hooks:\n      before_rollback: \"{}\"\n      after_rollback: \"{}\"\n    rollout:",
        hook("before"),
        hook("after")
    );
    let config = shop_config(proxy, "[{weight: 100}]")
        .replace("strategy: canary", "strategy: all-at-once")
        .replace("    rollout:", &hooks);
    let mut d = Daemon::start(&state, &config, proxy);
    d.register("v0", 0.0);
    assert_eq!(d.rollout_wait("v0", 0)["rollout"]["phase"], "promoted");

    let mut recoveries = Vec::new();
    for i in 1..=points {
        let version = format!("v{i}");
        d.register(&version, 0.0);
        let r = d.rollout_wait(&version, 0);
        assert_eq!(r["rollout"]["phase"], "promoted", "{r:#}");

        // Ask for a rollback and kill the daemon somewhere inside it.
        let delay = Duration::from_millis(rng.next() % 700);
        let mut cli = Command::new(backstop_bin())
            .args(rollback_args(&format!("crash point {i}")))
            .args(["--server", &d.api, "--state-dir"])
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        d.kill9();
        let _ = cli.wait();
        d.restart();

        // Whatever was interrupted completes after the restart (or the request never arrived,
        // in which case nothing changed and the release is still good).
        let deadline = std::time::Instant::now() + backstop_testkit::patience();
        let rec = loop {
            let list = d.cli_json(&["recovery", "list"], 0);
            let found = list
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["reason"] == format!("crash point {i}"))
                .cloned();
            match found {
                Some(rec) if rec["status"] == "done" => break Some(rec),
                Some(rec) => assert_ne!(
                    rec["status"],
                    "failed",
                    "recovery failed after a crash at {delay:?}: {rec:#}\n{}",
                    d.log()
                ),
                None if std::time::Instant::now() > deadline - backstop_testkit::patience() / 2 => {
                    break None;
                }
                None => {}
            }
            assert!(
                std::time::Instant::now() < deadline,
                "recovery for crash point {i} did not finish:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let Some(rec) = rec else {
            // Killed before the request was journaled: roll back now, without a crash.
            d.rollback(&format!("crash point {i}"), 0);
            recoveries.push((i, delay, 0));
            continue;
        };
        let steps = rec["steps"].as_array().unwrap();
        assert!(steps.iter().all(|s| s["status"] == "done"), "{rec:#}");
        // Every hook ran exactly as often as its intent was journaled, and (being idempotent by
        // its key) applied once.
        let invoked = std::fs::read_to_string(dir.path().join("invoked.log")).unwrap_or_default();
        let applied = std::fs::read_to_string(dir.path().join("applied.log")).unwrap_or_default();
        for s in steps.iter().filter(|s| s["step"]["kind"] == "run_hook") {
            let key = s["idempotency_key"].as_str().unwrap();
            let runs = invoked.lines().filter(|l| *l == key).count() as u64;
            assert!(
                runs >= 1 && runs <= s["attempts"].as_u64().unwrap(),
                "hook {key}: {runs} runs for {} journaled attempts",
                s["attempts"]
            );
            assert_eq!(
                applied.lines().filter(|l| *l == key).count(),
                1,
                "hook {key} applied once"
            );
        }
        let retried: u64 = steps
            .iter()
            .map(|s| s["attempts"].as_u64().unwrap() - 1)
            .sum();
        recoveries.push((i, delay, retried));

        // The target counts side effects: exactly one instance runs (the re-deployed LKG);
        // a start applied twice would leave two process groups.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while instance_pids(&state).len() > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            instance_pids(&state).len(),
            1,
            "crash point {i} at {delay:?}: {rec:#}"
        );
        assert_eq!(
            d.cli_json(&["release", "show", &format!("shop@{version}")], 0)["status"],
            "bad"
        );
    }
    eprintln!("crash points (iteration, delay, steps re-run after restart): {recoveries:?}");
    assert!(
        recoveries.iter().any(|(_, _, retried)| *retried > 0) || points < 5,
        "no kill landed inside a step: widen the delays"
    );
    d.assert_audit_verifies();
    d.stop();
    assert!(instance_pids(&state).is_empty());
}
