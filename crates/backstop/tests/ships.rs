//! Environment waves, end to end on real daemons: one service in `staging`, `prod-eu` and
//! `prod-us`, each behind its own built-in proxy with traffic, shipped with `backstop release
//! ship` through `[{envs: [staging], bake}, {envs: [prod-eu, prod-us]}]`.
//!
//! - A bad release fails its canary in the first wave: staging goes back, the ship stops (exit
//!   1) and neither production environment ever gets a rollout.
//! - A good release ships through both waves (exit 0), and the second wave starts only once the
//!   first has baked for its whole bake time, judged on real traffic.
//! - A release that passes its canary and turns bad during the bake fails the wave: staging is
//!   put back and the release marked bad; production never sees it.

use std::path::Path;

use backstop_testkit::{DEMO_APP_RUN, Daemon, Traffic, audit_actions, free_port, http_get};
use serde_json::Value;

const ENVS: [&str; 3] = ["staging", "prod-eu", "prod-us"];

/// `first_wave`: the first wave's settings besides its environments, e.g. `bake: 3s`.
fn config(ports: &[u16; 3], first_wave: &str) -> String {
    let mut text = format!(
        "services:\n  - name: shop\n    owner: team-test\n    tier: 1\n{DEMO_APP_RUN}    rollout:\n      strategy: canary\n      steps: [{{weight: 50, for: 3s}}, {{weight: 100}}]\n    analysis:\n      interval: 1s\n    waves:\n      - {{envs: [staging], {first_wave}}}\n      - {{envs: [prod-eu, prod-us]}}\n    environments:\n"
    );
    for (env, port) in ENVS.iter().zip(ports) {
        text.push_str(&format!(
            "      - name: {env}\n        listen: 127.0.0.1:{port}\n"
        ));
    }
    text
}

/// A daemon with v1 promoted in every environment and traffic on each.
fn deployed(dir: &Path, first_wave: &str) -> (Daemon, Vec<Traffic>, [u16; 3]) {
    deployed_with(dir, first_wave, &[])
}

/// [`deployed`] with `env` given to the daemon (a PostgreSQL store).
fn deployed_with(
    dir: &Path,
    first_wave: &str,
    env: &[(&str, &str)],
) -> (Daemon, Vec<Traffic>, [u16; 3]) {
    let ports = [free_port(), free_port(), free_port()];
    let d = Daemon::start_with_env(
        &dir.join("state"),
        &config(&ports, first_wave),
        ports[0],
        env,
    );
    d.register("v1", 0.0);
    for env in ENVS {
        let first = d.cli_json(
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
        assert_eq!(first["rollout"]["phase"], "promoted", "{first:#}");
    }
    let traffic = ports.iter().map(|p| Traffic::start(*p, 40.0)).collect();
    (d, traffic, ports)
}

/// `backstop release ship shop --version VERSION --wait`, expecting exit `code`: the ship.
fn ship(d: &Daemon, version: &str, code: i32) -> Value {
    let out = d.cli_json_output(
        &["release", "ship", "shop", "--version", version, "--wait"],
        code,
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wave_states(ship: &Value) -> Vec<&str> {
    ship["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["state"].as_str().unwrap())
        .collect()
}

/// The rollouts stored in `env`, by version.
fn versions_rolled_out(d: &Daemon, env: &str) -> Vec<String> {
    let all = d.cli_json(&["rollout", "list", "--service", "shop"], 0);
    all.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["env"] == env)
        .map(|r| r["to_release_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Registers v2, good until its fault file appears (then half its requests fail), and ships
/// it; the fault appears once the first wave is in state `then`. The ship as it ended (stopped).
fn ship_turning_bad(d: &Daemon, dir: &Path, then: &str) -> Value {
    let fault = dir.join("v2-fault");
    d.register_with(
        "v2",
        &["--env", &format!("DEMO_FAULT_FILE={}", fault.display())],
    );
    let started = d.cli_json(&["release", "ship", "shop", "--version", "v2"], 0);
    let id = started["id"].as_str().unwrap().to_string();
    d.wait_until(&format!("the first wave is {then}"), || {
        d.cli_json_patient(&["release", "ships", &id])["waves"][0]["state"] == then
    });
    std::fs::write(&fault, "0.5").unwrap();
    let out = d.cli_json_output(&["release", "ships", &id, "--watch"], 1);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The production environments never got a rollout of `release`.
fn production_never_saw(d: &Daemon, release: &str, ship: &Value) {
    for env in ["prod-eu", "prod-us"] {
        let seen = versions_rolled_out(d, env);
        assert!(
            !seen.iter().any(|r| r == release),
            "{env} got {release}: {seen:?}"
        );
    }
    assert_eq!(wave_states(ship)[1], "skipped", "{ship:#}");
    for e in ship["waves"][1]["envs"].as_array().unwrap() {
        assert!(e["rollout_id"].is_null(), "{ship:#}");
        assert_eq!(e["state"], "skipped", "{ship:#}");
    }
}

#[test]
fn a_bad_release_is_stopped_in_the_first_wave_and_never_reaches_the_second() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _traffic, ports) = deployed(dir.path(), "bake: 3s");
    d.register("v2", 0.6);
    let shipped = ship(&d, "v2", 1);
    assert_eq!(shipped["phase"], "stopped", "{shipped:#}");
    assert_eq!(
        wave_states(&shipped),
        ["rolled_back", "skipped"],
        "{shipped:#}"
    );
    assert_eq!(shipped["failed_wave"], 0, "{shipped:#}");
    let failure = shipped["failure"].as_str().unwrap();
    assert!(failure.contains("staging"), "{failure}");
    production_never_saw(&d, "shop@v2", &shipped);
    d.wait_until("staging serves v1 again", || {
        http_get(ports[0], "/version").is_some_and(|b| b.contains("v1"))
    });
    let v2 = d.cli_json(&["release", "show", "shop@v2"], 0);
    assert_eq!(v2["status"], "bad", "{v2:#}");

    // The text view and the list say what happened.
    let text = d.cli(&["release", "ships", shipped["id"].as_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("stopped: wave 1 failed"), "{text}");
    let listed = d.cli_json(&["release", "ships", "--all", "--service", "shop"], 0);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    let moving = d.cli_json(&["release", "ships"], 0);
    assert!(moving.as_array().unwrap().is_empty(), "{moving:#}");

    let audit = d.cli_json(&["audit", "list", "--limit", "500"], 0);
    let actions = audit_actions(&audit);
    for action in [
        "ship.started",
        "ship.wave_started",
        "ship.wave_failed",
        "ship.wave_rolled_back",
        "ship.stopped",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    d.assert_audit_verifies();

    // A bad release is refused before anything moves.
    let again = d.cli(&["release", "ship", "shop", "--version", "v2"]);
    assert_ne!(again.status.code(), Some(0));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("was rolled back"), "{said}");
}

#[test]
fn a_good_release_ships_through_both_waves_and_the_second_waits_for_the_bake() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _traffic, ports) = deployed(dir.path(), "bake: 6s");
    d.register("v2", 0.0);
    let shipped = ship(&d, "v2", 0);
    assert_eq!(shipped["phase"], "shipped", "{shipped:#}");
    assert_eq!(wave_states(&shipped), ["passed", "passed"], "{shipped:#}");

    // The bake: all of its time, on real traffic, before the second wave started.
    let first = &shipped["waves"][0];
    let (began, until) = (
        first["bake_started_at_ms"].as_i64().unwrap(),
        first["bake_until_ms"].as_i64().unwrap(),
    );
    assert_eq!(until - began, 6_000, "{shipped:#}");
    assert!(
        first["finished_at_ms"].as_i64().unwrap() >= until,
        "{shipped:#}"
    );
    let second_started = shipped["waves"][1]["started_at_ms"].as_i64().unwrap();
    assert!(second_started >= until, "{shipped:#}");
    let bake = &first["envs"][0]["bake"];
    assert!(bake["requests"].as_u64().unwrap() > 0, "{shipped:#}");
    assert!(bake["e_value"].as_f64().unwrap() < 20.0, "{shipped:#}");

    // Both production environments were rolled out in the second wave and serve v2.
    for (env, port) in ENVS.iter().zip(ports) {
        d.wait_until(&format!("{env} serves v2"), || {
            http_get(port, "/version").is_some_and(|b| b.contains("v2"))
        });
    }
    for e in shipped["waves"][1]["envs"].as_array().unwrap() {
        assert_eq!(e["state"], "promoted", "{shipped:#}");
        let id = e["rollout_id"].as_str().unwrap();
        let r = d.rollout(id);
        assert_eq!(r["rollout"]["phase"], "promoted", "{r:#}");
        assert!(
            r["rollout"]["created_at_ms"].as_i64().unwrap() >= until,
            "{r:#}"
        );
    }
    let audit = d.cli_json(&["audit", "list", "--limit", "500"], 0);
    let actions = audit_actions(&audit);
    for action in ["ship.wave_baking", "ship.wave_passed", "ship.shipped"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }

    // The dashboard draws the ship as its waves in order, each with its environments.
    let admin = std::fs::read_to_string(d.state_dir.join("admin.token")).unwrap();
    let (status, page) = d.dashboard_page(admin.trim(), "/ships");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("shop@v2") && page.contains("b-shipped"),
        "{page}"
    );
    let staging = page.find(">staging<").expect("staging on the page");
    let prod = page.find(">prod-eu<").expect("prod-eu on the page");
    assert!(staging < prod, "waves in order: {page}");
    assert!(page.contains("class=\"bake\""), "{page}");

    // Shipped everywhere already: nothing to ship.
    let again = d.cli(&["release", "ship", "shop", "--version", "v2"]);
    assert_ne!(again.status.code(), Some(0));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("nothing to ship"), "{said}");
}

#[test]
fn a_release_that_turns_bad_during_the_bake_is_put_back_and_never_reaches_production() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _traffic, ports) = deployed(dir.path(), "bake: 10m");
    // Good until the fault appears: one that shows only after the canary (a leak, a cache
    // that expires, a nightly job).
    let shipped = ship_turning_bad(&d, dir.path(), "baking");
    assert_eq!(shipped["phase"], "stopped", "{shipped:#}");
    assert_eq!(
        wave_states(&shipped),
        ["rolled_back", "skipped"],
        "{shipped:#}"
    );
    let staging = &shipped["waves"][0]["envs"][0];
    let note = staging["note"].as_str().unwrap();
    assert!(note.contains("the bake of staging failed"), "{note}");
    assert!(staging["recovery_id"].is_string(), "{shipped:#}");
    production_never_saw(&d, "shop@v2", &shipped);
    d.wait_until("staging serves v1 again", || {
        http_get(ports[0], "/version").is_some_and(|b| b.contains("v1"))
    });
    let recovery = d.cli_json(
        &["recovery", "show", staging["recovery_id"].as_str().unwrap()],
        0,
    );
    let kinds = backstop_testkit::step_kinds(&recovery);
    assert!(kinds.contains(&"mark_release_bad"), "{recovery:#}");
    let v2 = d.cli_json(&["release", "show", "shop@v2"], 0);
    assert_eq!(v2["status"], "bad", "{v2:#}");
    d.assert_audit_verifies();
}

#[test]
fn a_failure_in_the_second_wave_takes_back_a_first_wave_that_asks_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _traffic, ports) = deployed(dir.path(), "bake: 1s, on_later_failure: roll_back");
    // Good in staging; bad from the moment its wave passed.
    let shipped = ship_turning_bad(&d, dir.path(), "passed");
    assert_eq!(shipped["phase"], "stopped", "{shipped:#}");
    assert_eq!(shipped["failed_wave"], 1, "{shipped:#}");
    assert_eq!(
        wave_states(&shipped),
        ["rolled_back", "rolled_back"],
        "{shipped:#}"
    );
    // Staging went back by the ship's recovery, without blaming the release there.
    let staging = &shipped["waves"][0]["envs"][0];
    let recovery = d.cli_json(
        &["recovery", "show", staging["recovery_id"].as_str().unwrap()],
        0,
    );
    let kinds = backstop_testkit::step_kinds(&recovery);
    assert!(kinds.contains(&"shift_traffic"), "{recovery:#}");
    assert!(!kinds.contains(&"mark_release_bad"), "{recovery:#}");
    for (env, port) in ENVS.iter().zip(ports) {
        d.wait_until(&format!("{env} serves v1 again"), || {
            http_get(port, "/version").is_some_and(|b| b.contains("v1"))
        });
    }
    d.assert_audit_verifies();
}

#[test]
fn a_freeze_on_the_second_wave_holds_the_ship_until_it_ends_or_a_person_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _traffic, _ports) = deployed(dir.path(), "bake: 1s");
    d.register("v2", 0.0);
    let freeze = d.cli_json(
        &[
            "freeze",
            "start",
            "--env",
            "prod-eu",
            "--reason",
            "change window",
        ],
        0,
    );
    let started = d.cli_json(&["release", "ship", "shop", "--version", "v2"], 0);
    let id = started["id"].as_str().unwrap().to_string();
    let held = backstop_testkit::assert_eventually!(
        d.cli_json_patient(&["release", "ships", &id]),
        |s: &Value| s["held"].as_str().is_some_and(|h| h.contains("freeze")),
        "the second wave is held by the freeze\ndaemon log:\n{}",
        d.log()
    );
    assert_eq!(held["phase"], "shipping", "{held:#}");
    assert_eq!(wave_states(&held), ["passed", "waiting"], "{held:#}");
    assert!(
        held["held"].as_str().unwrap().contains("change window"),
        "{held:#}"
    );
    assert!(
        versions_rolled_out(&d, "prod-us")
            .iter()
            .all(|r| r != "shop@v2")
    );
    d.cli_json(
        &[
            "freeze",
            "end",
            freeze["id"].as_str().unwrap(),
            "--reason",
            "done",
        ],
        0,
    );
    let out = d.cli_json_output(&["release", "ships", &id, "--watch"], 0);
    let shipped: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shipped["phase"], "shipped", "{shipped:#}");
    assert!(shipped["held"].is_null(), "{shipped:#}");
    let audit = d.cli_json(&["audit", "list", "--limit", "500"], 0);
    assert!(audit_actions(&audit).contains(&"ship.held"), "{audit:#}");

    // Held again, then stopped by a person: the held wave never starts, nothing goes back.
    d.register("v3", 0.0);
    d.cli_json(
        &[
            "freeze",
            "start",
            "--env",
            "prod-us",
            "--reason",
            "audit week",
        ],
        0,
    );
    let started = d.cli_json(&["release", "ship", "shop", "--version", "v3"], 0);
    let id = started["id"].as_str().unwrap().to_string();
    backstop_testkit::assert_eventually!(
        d.cli_json_patient(&["release", "ships", &id]),
        |s: &Value| s["held"].as_str().is_some_and(|h| h.contains("audit week")),
        "held by the second freeze\ndaemon log:\n{}",
        d.log()
    );
    let stopped = d.cli_json(
        &["release", "stop-ship", &id, "--reason", "v4 supersedes it"],
        0,
    );
    assert_eq!(stopped["phase"], "stopped", "{stopped:#}");
    assert_eq!(wave_states(&stopped), ["passed", "skipped"], "{stopped:#}");
    assert!(
        stopped["failure"]
            .as_str()
            .unwrap()
            .contains("v4 supersedes it"),
        "{stopped:#}"
    );
    assert!(
        versions_rolled_out(&d, "prod-eu")
            .iter()
            .all(|r| r != "shop@v3")
    );
    let staging = d.cli_json(&["rollout", "list", "--service", "shop"], 0);
    assert!(
        staging
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["env"] == "staging"
                && r["to_release_id"] == "shop@v3"
                && r["phase"] == "promoted"),
        "staging keeps v3: {staging:#}"
    );
    let again = d.cli(&["release", "stop-ship", &id, "--reason", "twice"]);
    assert_ne!(again.status.code(), Some(0));
}

#[test]
fn a_ship_killed_at_random_moments_ends_shipped_with_one_rollout_per_environment() {
    let kills = backstop_testkit::env_or("BACKSTOP_SHIP_KILLS", 4);
    let mut rng = backstop_testkit::SplitMix(backstop_testkit::env_or("BACKSTOP_CRASH_SEED", 7));
    let dir = tempfile::tempdir().unwrap();
    let (mut d, _traffic, ports) = deployed(dir.path(), "bake: 3s");
    d.register("v2", 0.0);
    let started = d.cli_json(&["release", "ship", "shop", "--version", "v2"], 0);
    let id = started["id"].as_str().unwrap().to_string();
    for _ in 0..kills {
        let s = d.cli_json_patient(&["release", "ships", &id]);
        if s["phase"] != "shipping" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(rng.next() % 3000));
        d.kill9();
        d.restart();
    }
    let shipped = backstop_testkit::assert_eventually!(
        d.cli_json_patient(&["release", "ships", &id]),
        |s: &Value| s["phase"] == "shipped",
        "the ship ends shipped\ndaemon log:\n{}",
        d.log()
    );
    assert_eq!(wave_states(&shipped), ["passed", "passed"], "{shipped:#}");
    for (env, port) in ENVS.iter().zip(ports) {
        let v2 = versions_rolled_out(&d, env)
            .into_iter()
            .filter(|r| r == "shop@v2")
            .count();
        assert_eq!(v2, 1, "one rollout of v2 in {env}");
        d.wait_until(&format!("{env} serves v2"), || {
            http_get(port, "/version").is_some_and(|b| b.contains("v2"))
        });
    }
    d.assert_audit_verifies();
}

#[test]
fn two_replicas_on_postgresql_share_a_ship_and_each_environment_gets_one_rollout() {
    let pg = backstop_testkit::servers::Postgres::blocking_with_database("backstop");
    let url = pg.url("backstop");
    let dir = tempfile::tempdir().unwrap();
    let (a, _traffic, ports) =
        deployed_with(dir.path(), "bake: 2s", &[("BACKSTOP_DATABASE_URL", &url)]);
    let b = a.another_replica("b");
    a.register("v2", 0.0);
    // Started through one replica, followed through the other.
    let started = a.cli_json(&["release", "ship", "shop", "--version", "v2"], 0);
    let id = started["id"].as_str().unwrap().to_string();
    let out = b.cli_json_output(&["release", "ships", &id, "--watch"], 0);
    let shipped: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shipped["phase"], "shipped", "{shipped:#}");
    for (env, port) in ENVS.iter().zip(ports) {
        let v2 = versions_rolled_out(&b, env)
            .into_iter()
            .filter(|r| r == "shop@v2")
            .count();
        assert_eq!(v2, 1, "one rollout of v2 in {env}");
        a.wait_until(&format!("{env} serves v2"), || {
            http_get(port, "/version").is_some_and(|b| b.contains("v2"))
        });
    }
    a.assert_audit_verifies();
}
