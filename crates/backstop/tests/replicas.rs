//! Several replicas on one PostgreSQL database, sharing one host's state folder (artifacts,
//! the proxy, instances): any replica answers the API, the work is split by leases, and the
//! holder of a rollout's lease can die or freeze without a step being applied twice.
//!
//! The `after_rollback` hook of these tests records each run and then waits for a file, so a
//! recovery can be caught with its first steps done and the hook running.

use std::path::Path;
use std::time::{Duration, Instant};

use backstop_testkit::servers::Postgres;
use backstop_testkit::{Daemon, Traffic, all_answers_from, free_port, shop_config};

const DATABASE: &str = "backstop";

/// A temporary PostgreSQL cluster with an empty [`DATABASE`].
fn postgres() -> Postgres {
    Postgres::blocking_with_database(DATABASE)
}

/// Three replicas on a fresh database, v1 promoted; the hook waits for `dir/go-<version>`.
fn three_replicas(dir: &Path, pg: &Postgres) -> [Daemon; 3] {
    let url = pg.url(DATABASE);
    let proxy_port = free_port();
    let hook = format!(
        "echo run >> {runs}; while [ ! -e {dir}/go ]; do sleep 0.1; done",
        runs = dir.join("hook-runs").display(),
        dir = dir.display(),
    );
    let config = shop_config(proxy_port, "[{weight: 50, for: 10m}, {weight: 100}]").replace(
        "    rollout:",
        &format!("    hooks:\n      after_rollback: \"{hook}\"\n    rollout:"),
    );
    let a = Daemon::start_with_env(
        &dir.join("state"),
        &config,
        proxy_port,
        &[("BACKSTOP_DATABASE_URL", &url)],
    );
    a.register("v1", 0.0);
    assert_eq!(a.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let b = a.another_replica("b");
    let c = a.another_replica("c");
    a.wait_until("three replicas are live", || {
        let list = a.cli_json(&["cluster", "status"], 0);
        let replicas = list["replicas"].as_array().cloned().unwrap_or_default();
        replicas.iter().filter(|r| r["state"] == "live").count() == 3
    });
    [a, b, c]
}

/// The pid of the live replica holding `lease`, asking `d`.
fn holder_of(d: &Daemon, lease: &str) -> Option<u64> {
    let list = d.cli_json_patient(&["cluster", "status"]);
    list["replicas"]
        .as_array()?
        .iter()
        .find(|r| {
            r["state"] == "live"
                && r["leases"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|k| k == lease))
        })
        .and_then(|r| r["pid"].as_u64())
}

/// The index (in `replicas`) of the one with `pid`.
fn index_of(replicas: &[Daemon], pid: u64) -> usize {
    replicas
        .iter()
        .position(|d| d.child.as_ref().is_some_and(|c| u64::from(c.id()) == pid))
        .expect("the holder is one of the test's replicas")
}

/// `(kind, attempts)` of each step of the rollout's recovery.
fn attempts(rollout: &serde_json::Value) -> Vec<(String, u64)> {
    rollout["recovery"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"]["kind"].as_str().unwrap_or("?").to_string(),
                s["attempts"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Starts a bad v2 through replica `via` and waits until a replica runs its recovery's hook;
/// answers the rollout's id and the index of the replica holding it.
fn bad_canary_in_recovery(dir: &Path, replicas: &[Daemon], via: usize) -> (String, usize) {
    let d = &replicas[via];
    d.register("v2", 0.6);
    let id = d.rollout_progressing("v2");
    d.wait_until("the recovery runs its after_rollback hook", || {
        std::fs::read_to_string(dir.join("hook-runs")).is_ok_and(|r| r.lines().count() == 1)
    });
    let lease = format!("rollout/{id}");
    let holder = holder_of(d, &lease).expect("a live replica holds the rollout");
    (id, index_of(replicas, holder))
}

#[test]
fn the_owner_killed_mid_recovery_is_replaced_and_no_step_runs_twice() {
    let pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = three_replicas(dir.path(), &pg);
    let traffic = Traffic::start(replicas[0].proxy_port, 50.0);
    let (id, owner) = bad_canary_in_recovery(dir.path(), &replicas, 1);

    replicas[owner].kill9();
    let killed_at = Instant::now();
    std::fs::write(dir.path().join("go"), "").unwrap();
    let other = &replicas[(owner + 1) % 3];
    let done = other.wait_rollout(&id, "another replica finishes the recovery", |r| {
        r["rollout"]["phase"] == "recovered"
    });
    let took = killed_at.elapsed();
    assert_eq!(done["recovery"]["status"], "done", "{done:#}");
    let runs = attempts(&done);
    for (kind, n) in &runs {
        // The hook was interrupted by the kill and runs again; every step before it had
        // finished, and none runs twice.
        let expected = if kind == "run_hook" { 2 } else { 1 };
        assert_eq!(*n, expected, "{kind}: {runs:?}");
    }
    assert!(
        took < Duration::from_secs(60),
        "resumed after {took:?} (lease 6 s)"
    );
    assert!(
        all_answers_from(
            other.proxy_port,
            "v1",
            Instant::now(),
            Duration::from_secs(5)
        )
        .is_some(),
        "users are on v1"
    );
    traffic.stop();
    other.assert_audit_verifies();
}

#[test]
fn a_frozen_owner_woken_after_its_lease_was_taken_over_changes_nothing() {
    let pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let replicas = three_replicas(dir.path(), &pg);
    let traffic = Traffic::start(replicas[0].proxy_port, 50.0);
    let (id, owner) = bad_canary_in_recovery(dir.path(), &replicas, 2);
    let frozen = nix::unistd::Pid::from_raw(replicas[owner].pid() as i32);
    nix::sys::signal::kill(frozen, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let other = &replicas[(owner + 1) % 3];
    let lease = format!("rollout/{id}");
    other.wait_until("another replica takes the rollout over", || {
        holder_of(other, &lease).is_some_and(|pid| pid != u64::from(replicas[owner].pid()))
    });
    // The frozen owner's hook run is released too: when it wakes it has a finished step to
    // journal, and more steps to run.
    std::fs::write(dir.path().join("go"), "").unwrap();
    let done = other.wait_rollout(&id, "the new owner finishes the recovery", |r| {
        r["rollout"]["phase"] == "recovered"
    });
    let journal = done["recovery"].clone();
    // The rollout's and the recovery's records: the woken replica may still record its own
    // view of the store (a wait that timed out across the freeze is a `store.*` record of its
    // own), which changes nothing of the work it lost.
    let work_audit = |d: &Daemon| -> Vec<serde_json::Value> {
        let all = d.cli_json_patient(&["audit", "list"]);
        all.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["target"] != "store")
            .cloned()
            .collect()
    };
    let audit_before = work_audit(other);

    nix::sys::signal::kill(frozen, nix::sys::signal::Signal::SIGCONT).unwrap();
    // It may notice in any of the three ways leases.rs reports it: its renewal finds the lease
    // taken, a lookup finds another holder, or a fenced write is refused.
    replicas[owner].wait_until("the woken owner notices it lost the lease", || {
        let log = replicas[owner].log();
        log.contains("This replica's lease was taken over")
            || log.contains("another replica took this lease over")
            || log.contains("Another replica holds this lease now")
    });
    std::thread::sleep(Duration::from_secs(3));
    let after = other.rollout(&id);
    assert_eq!(
        after["recovery"], journal,
        "the woken owner changed the journal"
    );
    assert_eq!(
        work_audit(other),
        audit_before,
        "the woken owner added to the audit of the work"
    );
    let runs = attempts(&after);
    for (kind, n) in &runs {
        let expected = if kind == "run_hook" { 2 } else { 1 };
        assert_eq!(*n, expected, "{kind}: {runs:?}");
    }
    traffic.stop();
    other.assert_audit_verifies();
}

/// Any replica answers the API: a command on a rollout another replica drives reaches it
/// through the database.
#[test]
fn a_command_sent_to_any_replica_reaches_the_owner() {
    let pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let replicas = three_replicas(dir.path(), &pg);
    replicas[0].register("v2", 0.0);
    let id = replicas[0].rollout_progressing("v2");
    let lease = format!("rollout/{id}");
    let mut owner = None;
    replicas[0].wait_until("a replica holds the rollout", || {
        owner = holder_of(&replicas[0], &lease);
        owner.is_some()
    });
    let owner = index_of(&replicas, owner.unwrap());
    let asked = &replicas[(owner + 1) % 3];
    let promoted = asked.cli_json(&["rollout", "promote", &id, "--reason", "looks good"], 0);
    assert_eq!(promoted["phase"], "promoted", "{promoted:#}");
    assert!(
        replicas[owner].log().contains("promoted") || asked.log().contains("Passed a command on"),
        "the command went through the database"
    );
    assert!(
        asked.log().contains("Passed a command on"),
        "{}",
        asked.log()
    );
    asked.assert_audit_verifies();
}

/// PostgreSQL restarts under three replicas and a running rollout: they reconnect (each beats
/// again), and a command sent to any of them reaches the rollout's holder.
#[test]
fn replicas_carry_on_after_postgresql_restarts() {
    let mut pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let replicas = three_replicas(dir.path(), &pg);
    replicas[1].register("v2", 0.0);
    let id = replicas[1].rollout_progressing("v2");
    pg.stop();
    std::thread::sleep(Duration::from_secs(3));
    pg.start_again();
    let back_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    replicas[0].wait_until("every replica beats again", || {
        let list = replicas[0].cli_json(&["cluster", "status"], 0);
        list["replicas"].as_array().is_some_and(|r| {
            r.iter()
                .filter(|r| r["last_heartbeat"].as_u64().is_some_and(|t| t >= back_at))
                .count()
                == 3
        })
    });
    let promoted = replicas[2].cli_json(
        &["rollout", "promote", &id, "--reason", "after the restart"],
        0,
    );
    assert_eq!(promoted["phase"], "promoted", "{promoted:#}");
    replicas[0].assert_audit_verifies();
}

/// Work taken by the first replica while it was alone spreads when others join: each
/// environment is supervised by one replica, and none keeps them all.
#[test]
fn environments_spread_over_the_replicas_that_join() {
    let pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let proxy_port = free_port();
    let mut config = shop_config(proxy_port, "[{weight: 100}]");
    for env in ["staging", "qa"] {
        config.push_str(&format!(
            "      - name: {env}\n        listen: 127.0.0.1:{}\n",
            free_port()
        ));
    }
    let a = Daemon::start_with_env(
        &dir.path().join("state"),
        &config,
        proxy_port,
        &[("BACKSTOP_DATABASE_URL", &pg.url(DATABASE))],
    );
    a.register("v1", 0.0);
    for env in ["prod", "staging", "qa"] {
        a.cli_json(
            &[
                "rollout",
                "start",
                "shop",
                "--env",
                env,
                "--version",
                "v1",
                "--wait",
            ],
            0,
        );
    }
    // Sorted, as each replica's leases are listed.
    let envs: Vec<String> = ["env/shop/prod", "env/shop/qa", "env/shop/staging"]
        .map(String::from)
        .to_vec();
    let held_by = |d: &Daemon| -> Vec<Vec<String>> {
        let list = d.cli_json(&["cluster", "status"], 0);
        list["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "live")
            .map(|r| {
                r["leases"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|l| {
                        l.as_str()
                            .filter(|l| l.starts_with("env/"))
                            .map(String::from)
                    })
                    .collect()
            })
            .collect()
    };
    a.wait_until("the lone replica supervises every environment", || {
        held_by(&a) == vec![envs.clone()]
    });
    let _b = a.another_replica("b");
    let _c = a.another_replica("c");
    a.wait_until("the environments spread, each supervised once", || {
        let held = held_by(&a);
        let mut all: Vec<String> = held.iter().flatten().cloned().collect();
        all.sort();
        held.len() == 3
            && held.iter().all(|h| h.len() < 3)
            && held.iter().filter(|h| !h.is_empty()).count() >= 2
            && all == envs
    });
}

/// The replica that promoted v2 keeps v1 warm for the scale-down delay, and is killed: the
/// environment's supervisor (another replica) scales v1 down all the same, instead of leaving
/// it running for good.
#[test]
fn the_previous_version_is_scaled_down_when_the_replica_that_promoted_dies() {
    let pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let proxy_port = free_port();
    let config = shop_config(proxy_port, "[{weight: 100}]")
        .replace("scale_down_delay: 1s", "scale_down_delay: 8s");
    let a = Daemon::start_with_env(
        &dir.path().join("state"),
        &config,
        proxy_port,
        &[("BACKSTOP_DATABASE_URL", &pg.url(DATABASE))],
    );
    a.register("v1", 0.0);
    a.register("v2", 0.0);
    a.rollout_wait("v1", 0);
    let mut replicas = vec![a];
    for name in ["b", "c"] {
        let next = replicas[0].another_replica(name);
        replicas.push(next);
    }
    let v1_instances = |state: &Path| {
        backstop_testkit::instance_pids(state)
            .into_iter()
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/fd/1"))
                    .is_ok_and(|log| log.to_string_lossy().contains("-v1-"))
            })
            .count()
    };
    let id = replicas[1].rollout_start("v2");
    let lease = format!("rollout/{id}");
    // Who drives the rollout (and so promotes it, keeping v1 warm): the last to take its lease.
    let mut promoter = None;
    replicas[1].wait_until("a replica drives the rollout", || {
        promoter = holder_of(&replicas[1], &lease);
        promoter.is_some()
    });
    let promoter = index_of(&replicas, promoter.unwrap());
    let other = (promoter + 1) % 3;
    replicas[other].wait_rollout(&id, "v2 is promoted", |r| {
        r["rollout"]["phase"] == "promoted"
    });
    let state = replicas[0].state_dir.clone();
    assert_eq!(v1_instances(&state), 1, "v1 is kept warm");
    replicas[promoter].kill9();
    replicas[other].wait_until("v1 is scaled down by another replica", || {
        v1_instances(&state) == 0
    });
}

/// The owner of a recovering rollout is cut off from the database (its link to PostgreSQL
/// drops, as in a partition): another replica takes the rollout over and finishes the
/// recovery; when the link is back, the former owner changes neither the journal nor the
/// audit, and users stay on the stable version.
#[test]
fn an_owner_cut_off_from_the_database_is_replaced_and_changes_nothing_when_it_is_back() {
    let pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let link_dir = dir.path().join("link");
    std::fs::create_dir_all(&link_dir).unwrap();
    let link = backstop_testkit::link::Link::start(
        &link_dir.join(".s.PGSQL.5432"),
        &pg.dir().join("sock").join(".s.PGSQL.5432"),
    );
    let through_link = format!(
        "postgres://postgres@localhost/{DATABASE}?host={}&port=5432",
        link_dir.display()
    );
    let proxy_port = free_port();
    let hook = format!(
        "echo run >> {runs}; while [ ! -e {dir}/go ]; do sleep 0.1; done",
        runs = dir.path().join("hook-runs").display(),
        dir = dir.path().display(),
    );
    let config = shop_config(proxy_port, "[{weight: 50, for: 10m}, {weight: 100}]").replace(
        "    rollout:",
        &format!("    hooks:\n      after_rollback: \"{hook}\"\n      timeout: 5m\n    rollout:"),
    );
    // The owner-to-be is the only replica when the rollout starts; the other joins after.
    let owner = Daemon::start_with_env(
        &dir.path().join("state"),
        &config,
        proxy_port,
        &[("BACKSTOP_DATABASE_URL", &through_link)],
    );
    owner.register("v1", 0.0);
    owner.rollout_wait("v1", 0);
    owner.register("v2", 0.6);
    let traffic = Traffic::start(proxy_port, 50.0);
    let id = owner.rollout_progressing("v2");
    owner.wait_until("the recovery runs its after_rollback hook", || {
        std::fs::read_to_string(dir.path().join("hook-runs")).is_ok_and(|r| r.lines().count() == 1)
    });
    let other =
        owner.another_replica_with("other", &[("BACKSTOP_DATABASE_URL", &pg.url(DATABASE))]);
    let lease = format!("rollout/{id}");
    assert_eq!(holder_of(&other, &lease), Some(u64::from(owner.pid())));

    link.cut();
    other.wait_until("the other replica takes the rollout over", || {
        holder_of(&other, &lease).is_some_and(|pid| pid != u64::from(owner.pid()))
    });
    // It does not run the hook while the former owner's run of it is still going (on this
    // host, in the shared state folder): it waits for that run to end.

    // The link is back while the former owner's hook still runs: when it ends, the former
    // owner has a finished step to journal, and more steps to run.
    link.restore();
    let back_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    other.wait_until("the former owner is back in touch (it beats again)", || {
        let list = other.cli_json(&["cluster", "status"], 0);
        list["replicas"].as_array().is_some_and(|r| {
            r.iter().any(|r| {
                r["pid"] == owner.pid() && r["last_heartbeat"].as_u64().is_some_and(|t| t > back_at)
            })
        })
    });
    std::fs::write(dir.path().join("go"), "").unwrap();
    let done = other.wait_rollout(&id, "the other replica finishes the recovery", |r| {
        r["rollout"]["phase"] == "recovered"
    });
    owner.wait_until("the former owner's writes are refused", || {
        let log = owner.log();
        log.contains("another replica took this lease over")
            || log.contains("Another replica holds this lease now")
    });
    std::thread::sleep(Duration::from_secs(3));
    let after = other.rollout(&id);
    assert_eq!(
        after["recovery"], done["recovery"],
        "the former owner changed the journal"
    );
    let runs = attempts(&after);
    for (kind, n) in &runs {
        let expected = if kind == "run_hook" { 2 } else { 1 };
        assert_eq!(*n, expected, "{kind}: {runs:?}");
    }
    // Each step is recorded done once: the former owner's finish of the hook was refused.
    let audit = other.cli_json(&["audit", "list"], 0);
    let done_records = backstop_testkit::audit_actions(&audit)
        .iter()
        .filter(|a| **a == "recovery.step.done")
        .count();
    assert_eq!(done_records, runs.len(), "{audit:#}");
    assert!(
        all_answers_from(proxy_port, "v1", Instant::now(), Duration::from_secs(5)).is_some(),
        "users are on v1"
    );
    traffic.stop();
    other.assert_audit_verifies();
    drop(link);
}
