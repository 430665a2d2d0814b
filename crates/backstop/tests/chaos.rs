//! Chaos: Backstop is never the cause of an outage. Against the sample service behind the
//! built-in proxy at 100 req/s, in one run:
//! - `kill -9` of the daemon at random moments (idle, mid-rollout of a good release, mid-recovery
//!   of a bad one), each followed by a restart after 0–3 s: no user request fails because of the
//!   kills (requests the bad releases themselves fail are counted apart);
//! - `SIGSTOP` of the daemon: no request fails or hangs;
//! - `kill -9` of the stable instance: traffic is back to 2xx, one `instance.restarted` record;
//! - a slow-starting release (4 s to listen) with a daemon kill mid-rollout and mid-rollback:
//!   the good release is promoted, the rollback loses no request;
//! - a second daemon on the same state folder: refused, naming the holder, the first unaffected;
//! - the state folder's disk full during a bad canary: the canary is out of traffic within an
//!   analysis interval or two (by its verdict or by the fail-safe, whichever comes first;
//!   `fail_safe.rs` tests each way on its own).
//!
//! The state folder is a small tmpfs, so that its disk can fill: mounting it needs root.
//!
//! The suite runs it small; `BACKSTOP_CHAOS_KILLS=20 BACKSTOP_CHAOS_STOP_S=10 cargo nextest run
//! -p backstop --test chaos --no-capture` is the full run. It prints its figures.

use std::time::{Duration, Instant};

use backstop_testkit::disk::{Tmpfs, fill};
use backstop_testkit::{
    Daemon, SplitMix, Traffic, all_answers_from, audit_actions, backstop_bin, env_or, free_port,
    http_get, instance_pids, rollback_args, shop_config,
};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

fn ended(r: &serde_json::Value) -> bool {
    ["promoted", "recovered", "failed", "aborted"]
        .contains(&r["rollout"]["phase"].as_str().unwrap_or(""))
}

#[test]
fn kills_stops_and_crashes_fail_no_user_request() {
    let kills = env_or("BACKSTOP_CHAOS_KILLS", 4);
    let stop_s = env_or("BACKSTOP_CHAOS_STOP_S", 3);
    let seed = env_or("BACKSTOP_CHAOS_SEED", 0x5eed_cafe);
    let mut rng = SplitMix(seed);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _disk = Tmpfs::for_state(&state, 256);
    let proxy = free_port();
    let mut d = Daemon::start(
        &state,
        &shop_config(proxy, "[{weight: 30, for: 2s}, {weight: 100}]"),
        proxy,
    );
    d.register("v0", 0.0);
    d.rollout_wait("v0", 0);
    let traffic = Traffic::start(proxy, 100.0);

    let mut bad_versions = Vec::new();
    let mut moments = Vec::new();
    for i in 1..=kills {
        let version = format!("v{i}");
        let moment = match i % 3 {
            0 => {
                std::thread::sleep(Duration::from_millis(rng.below(1000)));
                "idle"
            }
            1 => {
                d.register(&version, 0.0);
                d.rollout_start(&version);
                std::thread::sleep(Duration::from_millis(200 + rng.below(2000)));
                "mid-rollout"
            }
            _ => {
                d.register(&version, 0.5);
                bad_versions.push(version.clone());
                let id = d.rollout_start(&version);
                d.wait_rollout(&id, "the bad release is being rolled back", |r| {
                    ["failed", "recovering", "recovered"]
                        .contains(&r["rollout"]["phase"].as_str().unwrap_or(""))
                });
                "mid-recovery"
            }
        };
        moments.push(moment);
        d.kill9();
        std::thread::sleep(Duration::from_millis(rng.below(3000)));
        d.restart();
        // Whatever was under way finishes after the restart.
        for r in d.cli_json(&["rollout", "list"], 0).as_array().unwrap() {
            let id = r["id"].as_str().unwrap();
            d.wait_rollout(id, "every rollout ends after the restart", ended);
        }
        // Three bad releases trip the environment's breaker, as they should; this run is
        // about the kills, so a person resets it.
        if !d
            .cli_json(&["breaker", "status"], 0)
            .as_array()
            .unwrap()
            .is_empty()
        {
            d.cli_json(
                &[
                    "breaker",
                    "reset",
                    "--scope",
                    "env:prod",
                    "--reason",
                    "chaos run",
                ],
                0,
            );
        }
    }

    // The daemon stopped (SIGSTOP): the data plane does not wait for it.
    let daemon = Pid::from_raw(d.child.as_ref().unwrap().id() as i32);
    kill(daemon, Signal::SIGSTOP).unwrap();
    let stopped_at = Instant::now();
    let mut slowest = Duration::ZERO;
    while stopped_at.elapsed() < Duration::from_secs(stop_s) {
        let asked = Instant::now();
        // A hung request would end in `http_get`'s read timeout, without an answer.
        let answer = http_get(proxy, "/").expect("the proxy answers while the daemon is stopped");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    kill(daemon, Signal::SIGCONT).unwrap();

    // A slow-starting release (4 s to listen), the daemon killed while it starts: promoted.
    let slow = ["--env", "DEMO_START_DELAY_MS=4000"];
    d.register_with("slow1", &slow);
    let id = d.rollout_start("slow1");
    std::thread::sleep(Duration::from_millis(1500));
    d.kill9();
    d.restart();
    let slow_rollout = d.wait_rollout(&id, "the slow release's rollout ends", ended);
    assert_eq!(
        slow_rollout["rollout"]["phase"], "promoted",
        "{slow_rollout:#}"
    );
    // … and a rollback to it, the daemon killed while it starts again: no request lost.
    d.register("fast2", 0.0);
    d.rollout_wait("fast2", 0);
    d.wait_until("slow1's instance is scaled down", || {
        instance_pids(&d.state_dir).len() == 1
    });
    let mut rollback = d.cli_background(&rollback_args("chaos: slow rollback"));
    std::thread::sleep(Duration::from_millis(1500));
    d.kill9();
    let _ = rollback.wait();
    d.restart();
    d.wait_until("the rollback to the slow release completes", || {
        d.cli_json(&["recovery", "list"], 0)
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "chaos: slow rollback" && r["status"] == "done")
    });

    // A second daemon on the same state folder, on other ports: refused, naming the holder.
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, shop_config(free_port(), "[{weight: 100}]")).unwrap();
    let second = std::process::Command::new(backstop_bin())
        .args(["serve", "--config"])
        .arg(&other)
        .arg("--state-dir")
        .arg(&d.state_dir)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    let refusal = String::from_utf8_lossy(&second.stderr).to_string();
    let holder = format!("pid {}", d.child.as_ref().unwrap().id());
    assert!(
        !second.status.success() && refusal.contains(&holder),
        "{refusal}"
    );

    let stats = traffic.stop_stats();

    // The stable instance crashes: supervision brings users back to 2xx. (A release that
    // starts at once: the slow one would add its own 4 s.)
    d.register("fast3", 0.0);
    d.rollout_wait("fast3", 0);
    d.wait_until("one stable instance runs", || {
        instance_pids(&state).len() == 1
    });
    let before = instance_pids(&state);
    killpg(Pid::from_raw(before[0] as i32), Signal::SIGKILL).unwrap();
    let killed_at = Instant::now();
    d.wait_until(
        "users get 2xx again after the stable instance was killed",
        || {
            http_get(proxy, "/").is_some_and(|a| a.starts_with("HTTP/1.1 200"))
                && instance_pids(&state) != before
        },
    );
    let back_after = killed_at.elapsed();
    let restarts = audit_actions(&d.cli_json(&["audit", "list", "--limit", "1000"], 0))
        .into_iter()
        .filter(|a| *a == "instance.restarted")
        .count();

    // The disk fills while a bad canary takes traffic.
    d.register("full1", 0.5);
    let traffic = Traffic::start(proxy, 100.0);
    let id = d.rollout_progressing("full1");
    std::thread::sleep(Duration::from_millis(rng.below(1500)));
    let filler = state.join("filler");
    fill(&filler);
    let full_at = Instant::now();
    let out_after = all_answers_from(proxy, "fast3", full_at, Duration::from_secs(5));
    let full_disk = traffic.stop_stats();
    std::fs::remove_file(&filler).unwrap();
    // `failed` is the moment before its recovery starts: wait for the end of that too.
    let full_rollout = d.wait_rollout(
        &id,
        "the bad canary's rollout is rolled back once there is room",
        |r| ended(r) && r["rollout"]["phase"] != "failed",
    );
    let fail_safe_entered = audit_actions(&d.cli_json(&["audit", "list", "--limit", "1000"], 0))
        .contains(&"store.write_failed");

    let failed_by_bad: u64 = bad_versions
        .iter()
        .map(|v| stats.failed_by_version.get(v).copied().unwrap_or(0))
        .sum();
    let failed_by_kills = stats.failed - failed_by_bad;
    println!(
        "chaos (seed {seed:#x}): {kills} daemon kills ({moments:?}), each restarted after 0-3 s"
    );
    println!(
        "  user requests: {} sent, {} failed",
        stats.sent, stats.failed
    );
    println!("  failed because of the kills and stops: {failed_by_kills}");
    println!("  failed by the bad releases themselves ({bad_versions:?}): {failed_by_bad}");
    println!(
        "  daemon stopped {stop_s} s: slowest answer {} ms",
        slowest.as_millis()
    );
    println!(
        "  stable instance killed: 2xx again after {:.2} s, instance.restarted records: {restarts}",
        back_after.as_secs_f64()
    );
    println!(
        "  slow-starting release (4 s) with a daemon kill mid-rollout: {}; rollback to it with a kill mid-start: done",
        slow_rollout["rollout"]["phase"]
    );
    println!(
        "  second daemon on the state folder: refused (exit {:?}): {}",
        second.status.code(),
        refusal.lines().last().unwrap_or("")
    );
    println!(
        "  disk full during a bad canary: all traffic on the stable version {} ms after; the rollout {} ({}); {} of {} requests failed meanwhile (by the bad canary)",
        out_after.map_or("never".into(), |d| d.as_millis().to_string()),
        full_rollout["rollout"]["phase"],
        if fail_safe_entered {
            "the fail-safe took the canary out"
        } else {
            "its verdict came first"
        },
        full_disk.failed,
        full_disk.sent,
    );
    assert_eq!(failed_by_kills, 0, "{stats:?}");
    let out_after = out_after.expect("the canary is taken out of traffic while the disk is full");
    // An analysis interval is 1 s; a verdict or the fail-safe may need one more.
    assert!(out_after < Duration::from_secs(3), "{out_after:?}");
    assert_eq!(
        full_rollout["rollout"]["phase"], "recovered",
        "{full_rollout:#}"
    );
    assert_eq!(restarts, 1);
}
