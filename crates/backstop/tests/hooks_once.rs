//! Hooks are never run twice at once: a daemon killed during a 4 s `before_rollback` hook used
//! to leave it running while the restarted daemon started it again (the two overlapped by
//! ~2.8 s). Now the restarted daemon waits for the earlier attempt before its own.

use std::time::Duration;

use backstop_testkit::{Daemon, free_port, rollback_args, shop_config};

#[test]
fn a_hook_left_running_by_a_killed_daemon_is_waited_for_before_it_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let proxy = free_port();
    let log = dir.path().join("hook.log");
    // Each run writes when it starts and ends (nanoseconds), to a file: it must not depend on
    // the daemon that started it.
    let hook = format!(
        "echo start $(date +%s%N) >> {log}; sleep 4; echo end $(date +%s%N) >> {log}",
        log = log.display()
    );
    let config = shop_config(proxy, "[{weight: 100}]")
        .replace("strategy: canary", "strategy: all-at-once")
        .replace(
            "    rollout:",
            &format!("    hooks:\n      before_rollback: \"{hook}\"\n    rollout:"),
        );
    let mut d = Daemon::start(&state, &config, proxy);
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    d.register("v2", 0.0);
    d.rollout_wait("v2", 0);

    let mut cli = d.cli_background(&rollback_args("hook test"));
    d.wait_until("the hook has started", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("start"))
    });
    std::thread::sleep(Duration::from_millis(1000));
    d.kill9();
    let _ = cli.wait();
    d.restart();

    d.wait_until("the rollback completes after the restart", || {
        let list = d.cli_json(&["recovery", "list"], 0);
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "hook test" && r["status"] == "done")
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let mut runs: Vec<(u128, u128)> = Vec::new();
    let mut open: Vec<u128> = Vec::new();
    for line in text.lines() {
        let (what, at) = line.split_once(' ').unwrap();
        let at: u128 = at.trim().parse().unwrap();
        match what {
            "start" => open.push(at),
            _ => runs.push((open.remove(0), at)),
        }
    }
    assert!(open.is_empty(), "every run ended: {text}");
    runs.sort();
    for pair in runs.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two runs of the hook overlapped by {} ms:\n{text}",
            (pair[0].1 - pair[1].0) / 1_000_000
        );
    }
}
