//! Release groups, end to end on real daemons: three sample services shipped as one group
//! (schema → api → web) where api's release is bad. The schema member is promoted first; api's
//! canary fails and its own recovery puts its traffic back; then the group recovers last member
//! first: api's compensation, then schema back on its last known good and its compensation.
//! web never starts. The same again with the daemon killed (`SIGKILL`) at seeded random moments
//! of the group's recovery: it ends the same way and no compensation's effect happens twice.
//!
//! `BACKSTOP_GROUP_KILLS` (default 4) and `BACKSTOP_CRASH_SEED` (default 7) choose the kills.

use std::path::Path;
use std::time::Duration;

use backstop_testkit::{
    DEMO_APP_RUN, Daemon, SplitMix, Traffic, audit_actions, backstop_bin, env_or, free_port,
    http_get,
};
use serde_json::Value;

const SERVICES: [&str; 3] = ["schema", "api", "web"];

/// Three services, each behind its own proxy, each compensating with a hook that logs every run
/// (`invoked.log`) and applies its effect once per idempotency key (`applied.log`), as a saga
/// step should.
fn config(ports: &[u16; 3], dir: &Path) -> String {
    let log = dir.display();
    let mut text = String::from("services:\n");
    for (name, port) in SERVICES.iter().zip(ports) {
        text.push_str(&format!(
            "  - name: {name}\n    owner: team-test\n    tier: 1\n{DEMO_APP_RUN}    hooks:\n      compensate: \"echo $BACKSTOP_SERVICE $BACKSTOP_IDEMPOTENCY_KEY >> {log}/invoked.log; grep -qx \\\"$BACKSTOP_SERVICE $BACKSTOP_IDEMPOTENCY_KEY\\\" {log}/applied.log 2>/dev/null || echo $BACKSTOP_SERVICE $BACKSTOP_IDEMPOTENCY_KEY >> {log}/applied.log\"\n    rollout:\n      strategy: canary\n      steps: [{{weight: 50, for: 3s}}, {{weight: 100}}]\n    analysis:\n      interval: 1s\n    environments:\n      - name: prod\n        listen: 127.0.0.1:{port}\n"
        ));
    }
    text
}

/// Registers `version` of `service` (the sample service, with `extra` arguments such as
/// `--env` or `--schema`); v1 is then rolled out and must be promoted.
fn release(d: &Daemon, service: &str, version: &str, extra: &[&str]) {
    d.register_service(service, version, extra);
    if version == "v1" {
        let first = d.rollout_service_wait(service, "v1", 0);
        assert_eq!(first["rollout"]["phase"], "promoted", "{first:#}");
    }
}

/// A daemon with v1 of every service promoted and traffic on each, v2 registered (api's bad),
/// and group `checkout` declared: the daemon, the traffic, the run's id once started.
fn shipped_group(dir: &Path) -> (Daemon, Vec<Traffic>, String) {
    let ports = [free_port(), free_port(), free_port()];
    let state = dir.join("state");
    let d = Daemon::start(&state, &config(&ports, dir), ports[0]);
    for name in SERVICES {
        for (version, errors) in [("v1", 0.0), ("v2", if name == "api" { 0.6 } else { 0.0 })] {
            release(
                &d,
                name,
                version,
                &["--env", &format!("DEMO_ERROR_RATIO={errors}")],
            );
        }
    }
    let traffic = ports.iter().map(|p| Traffic::start(*p, 40.0)).collect();
    let group = d.cli_json(
        &[
            "release",
            "group",
            "create",
            "checkout",
            "--service",
            "schema=v2",
            "--service",
            "api=v2",
            "--service",
            "web=v2",
        ],
        0,
    );
    assert_eq!(group["members"][2]["release_id"], "web@v2", "{group:#}");
    let run = d.cli_json(
        &[
            "rollout", "start", "--group", "checkout", "--env", "prod", "--reason", "test",
        ],
        0,
    );
    assert_eq!(run["phase"], "progressing", "{run:#}");
    let id = run["id"].as_str().unwrap().to_string();
    (d, traffic, id)
}

fn group_run(d: &Daemon, id: &str) -> Value {
    d.cli_json_patient(&["release", "group", "run", id])
}

/// Asserts what a rolled-back group leaves: each member's state, every service back on v1,
/// web never started, each compensation applied once (api's before schema's), the audit intact.
fn assert_rolled_back(d: &Daemon, run: &Value, dir: &Path) {
    let states: Vec<&str> = run["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["rolled_back", "rolled_back", "skipped"], "{run:#}");
    assert_eq!(run["failed_member"], 1, "{run:#}");
    assert!(run["members"][2]["rollout_id"].is_null(), "{run:#}");
    let web = d.cli_json(&["rollout", "list", "--service", "web"], 0);
    assert_eq!(
        web.as_array().unwrap().len(),
        1,
        "web never started: {web:#}"
    );

    // Every service serves v1 again through its own proxy.
    let config = std::fs::read_to_string(&d.config).unwrap();
    for (name, port) in SERVICES.iter().zip(ports_of(&config)) {
        d.wait_until(&format!("{name} serves v1"), || {
            http_get(port, "/version").is_some_and(|b| b.contains("v1"))
        });
    }

    // Compensations: one effect each, api (the failed member) before schema.
    let applied = std::fs::read_to_string(dir.join("applied.log")).unwrap();
    let services: Vec<&str> = applied
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(services, ["api", "schema"], "applied.log:\n{applied}");
    let invoked = std::fs::read_to_string(dir.join("invoked.log")).unwrap();
    assert!(
        invoked
            .lines()
            .all(|l| l.starts_with("api ") || l.starts_with("schema ")),
        "web was never compensated:\n{invoked}"
    );

    // The schema member went back only after api's own recovery finished.
    let api_rollout = d.rollout(run["members"][1]["rollout_id"].as_str().unwrap());
    assert_eq!(
        api_rollout["rollout"]["phase"], "recovered",
        "{api_rollout:#}"
    );
    let schema_recovery = d.cli_json(
        &[
            "recovery",
            "show",
            run["members"][0]["recovery_id"].as_str().unwrap(),
        ],
        0,
    );
    let kinds = backstop_testkit::step_kinds(&schema_recovery);
    assert!(kinds.contains(&"shift_traffic"), "{schema_recovery:#}");
    assert_eq!(kinds.last(), Some(&"run_hook"), "{schema_recovery:#}");
    assert!(
        !kinds.contains(&"mark_release_bad"),
        "schema@v2 is not bad, the group failed: {schema_recovery:#}"
    );
    let schema_v2 = d.cli_json(&["release", "show", "schema@v2"], 0);
    assert_eq!(schema_v2["status"], "ok", "{schema_v2:#}");
    let api_v2 = d.cli_json(&["release", "show", "api@v2"], 0);
    assert_eq!(api_v2["status"], "bad", "{api_v2:#}");

    let audit = d.cli_json(&["audit", "list", "--limit", "500"], 0);
    let actions = audit_actions(&audit);
    for action in [
        "group.created",
        "group.started",
        "group.member_promoted",
        "group.failed",
        "group.member_rolled_back",
        "group.rolled_back",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    d.assert_audit_verifies();
}

/// The listen ports of the config's environments, in service order.
fn ports_of(config: &str) -> Vec<u16> {
    config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("listen: 127.0.0.1:"))
        .map(|p| p.parse().unwrap())
        .collect()
}

#[test]
fn a_group_whose_second_member_fails_is_rolled_back_last_first_and_its_third_never_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _traffic, id) = shipped_group(dir.path());
    let out = d.cli_json_output(&["release", "group", "run", &id, "--watch"], 1);
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["phase"], "rolled_back", "{run:#}");
    assert_rolled_back(&d, &run, dir.path());
    let invoked = std::fs::read_to_string(dir.path().join("invoked.log")).unwrap();
    assert_eq!(
        invoked.lines().count(),
        2,
        "each compensation ran once:\n{invoked}"
    );

    // The text view names the failure and each member's fate.
    let text = d.cli(&["release", "group", "show", "checkout"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("failed: api@v2 failed"), "{text}");
    assert!(text.contains("skipped"), "{text}");

    // The failed member's explanation ranks the group's changes: api's canary diverged, the
    // schema's did not.
    let api_rollout = run["members"][1]["rollout_id"].as_str().unwrap();
    let explained = d.cli_json(&["rollout", "explain", api_rollout], 0);
    let scope = explained["failure_scope"].as_array().unwrap();
    assert_eq!(scope.len(), 2, "{explained:#}");
    assert_eq!(scope[0]["name"], "api@v2", "{explained:#}");
    assert!(scope[0]["diverged_at_s"].is_number(), "{explained:#}");
    assert_eq!(scope[1]["name"], "schema@v2", "{explained:#}");
    assert!(scope[1]["diverged_at_s"].is_null(), "{explained:#}");

    // The dashboard shows the run, its members in order with their states.
    let admin = std::fs::read_to_string(d.state_dir.join("admin.token")).unwrap();
    let (status, page) = d.dashboard_page(admin.trim(), "/groups");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("checkout") && page.contains("rolled_back"),
        "{page}"
    );
    assert!(
        page.contains("schema@v2") && page.contains("skipped"),
        "{page}"
    );

    // A group is refused before anything moves when a member cannot ship: api@v2 is bad now.
    let again = d.cli(&["rollout", "start", "--group", "checkout", "--env", "prod"]);
    assert_eq!(again.status.code(), Some(1));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("api@v2"), "{said}");
}

#[test]
fn a_group_recovery_killed_at_random_moments_ends_the_same_and_compensates_once() {
    let kills = env_or("BACKSTOP_GROUP_KILLS", 4);
    let mut rng = SplitMix(env_or("BACKSTOP_CRASH_SEED", 7));
    let dir = tempfile::tempdir().unwrap();
    let (mut d, _traffic, id) = shipped_group(dir.path());
    // The group's recovery starts once api's canary fails.
    d.wait_until("api's canary fails", || {
        let api = &group_run(&d, &id)["members"][1]["state"];
        api != "waiting" && api != "rolling_out"
    });
    for _ in 0..kills {
        let run = group_run(&d, &id);
        if run["phase"] != "progressing" && run["phase"] != "recovering" {
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 1500));
        d.kill9();
        d.restart();
    }
    let run = backstop_testkit::assert_eventually!(
        group_run(&d, &id),
        |r: &Value| r["phase"] == "rolled_back",
        "the group is rolled back\ndaemon log:\n{}",
        d.log()
    );
    assert_rolled_back(&d, &run, dir.path());
}

/// `backstop migrations apply DIR --database-url URL --to VERSION` (a pipeline step).
fn migrate(dir: &Path, url: &str, to: &str) {
    let out = std::process::Command::new(backstop_bin())
        .args(["migrations", "apply"])
        .arg(dir)
        .args(["--database-url", url, "--to", to])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_member_that_cannot_go_back_halts_the_group_there_with_the_options() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    for (name, sql) in [
        (
            "1_users.up.sql",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);\n",
        ),
        ("1_users.down.sql", "DROP TABLE users;\n"),
        (
            "2_drop_name.up.sql",
            "-- backstop:phase contract\n-- backstop:irreversible the names are gone\n-- backstop:forward-only\nALTER TABLE users DROP COLUMN name;\n",
        ),
    ] {
        std::fs::write(db.join(name), sql).unwrap();
    }
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let ports = [free_port(), free_port()];
    // schema ships all at once; api stays on its first step until a person aborts it.
    let config = format!(
        "services:\n  - name: schema\n    owner: team-test\n    tier: 1\n{DEMO_APP_RUN}    migrations: {{dir: {}, engine: sqlite, database_url_env: APP_DB_URL}}\n    rollout: {{strategy: all-at-once, steps: [{{weight: 100}}]}}\n    environments:\n      - {{name: prod, listen: 127.0.0.1:{}}}\n  - name: api\n    owner: team-test\n    tier: 1\n{DEMO_APP_RUN}    rollout: {{strategy: canary, steps: [{{weight: 50, for: 1h}}, {{weight: 100}}]}}\n    environments:\n      - {{name: prod, listen: 127.0.0.1:{}}}\n",
        db.display(),
        ports[0],
        ports[1]
    );
    let d = Daemon::start_with_env(
        &dir.path().join("state"),
        &config,
        ports[0],
        &[("APP_DB_URL", &url)],
    );
    migrate(&db, &url, "1");
    release(&d, "schema", "v1", &["--schema", "1"]);
    release(&d, "schema", "v2", &["--schema", "1..2"]);
    release(&d, "api", "v1", &[]);
    release(&d, "api", "v2", &[]);
    d.cli_json(
        &[
            "release",
            "group",
            "create",
            "names",
            "--service",
            "schema=v2",
            "--service",
            "api=v2",
        ],
        0,
    );
    let run = d.cli_json(
        &["rollout", "start", "--group", "names", "--env", "prod"],
        0,
    );
    let id = run["id"].as_str().unwrap().to_string();
    let api = backstop_testkit::assert_eventually!(
        group_run(&d, &id),
        |r: &Value| r["members"][1]["state"] == "rolling_out",
        "api's canary starts\ndaemon log:\n{}",
        d.log()
    );
    // The pipeline contracts the schema once schema@v2 is out; then api is aborted.
    migrate(&db, &url, "2");
    let api_rollout = api["members"][1]["rollout_id"].as_str().unwrap();
    d.cli_json(&["rollout", "abort", api_rollout, "--reason", "test"], 0);

    let halted = backstop_testkit::assert_eventually!(
        group_run(&d, &id),
        |r: &Value| r["phase"] == "halted",
        "the group halts at schema\ndaemon log:\n{}",
        d.log()
    );
    assert_eq!(halted["halt"]["member"], 0, "{halted:#}");
    assert_eq!(halted["members"][0]["state"], "halted", "{halted:#}");
    assert_eq!(halted["members"][1]["state"], "rolled_back", "{halted:#}");
    let reason = halted["halt"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("refused") && reason.contains("migration 2"),
        "{reason}"
    );
    let options = halted["halt"]["options"].to_string();
    assert!(options.contains("fix forward"), "{options}");
    // Safe: schema@v2 still serves, on the contracted schema, and nothing was journaled for it.
    assert!(halted["members"][0]["recovery_id"].is_null(), "{halted:#}");
    d.wait_until("schema@v2 still serves", || {
        http_get(ports[0], "/version").is_some_and(|b| b.contains("v2"))
    });
    let text =
        String::from_utf8_lossy(&d.cli(&["release", "group", "run", &id]).stdout).into_owned();
    assert!(text.contains("halted at schema@v2"), "{text}");
    assert!(text.contains("option: fix forward"), "{text}");
    let audit = d.cli_json(&["audit", "list", "--limit", "500"], 0);
    assert!(audit_actions(&audit).contains(&"group.halted"), "{audit:#}");
}
