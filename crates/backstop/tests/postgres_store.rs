//! `backstop serve --database-url postgres://…` (here through BACKSTOP_DATABASE_URL, as the
//! help advises): a daemon whose state lives in a real temporary PostgreSQL cluster promotes a
//! good release and recovers from a bad one, and survives `kill -9` with its state (several
//! replicas on one database: `tests/replicas.rs`). A wrong password is refused with a message
//! that says what to fix and never shows it. The password reaches neither the log, nor /metrics, nor the processes the daemon
//! starts.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use backstop_testkit::servers::Postgres;
use backstop_testkit::{
    Daemon, Traffic, all_answers_from, backstop_bin, free_port, http_get, instance_pids, patience,
    shop_config, step_kinds,
};
use sqlx::{ConnectOptions, Connection};

const PASSWORD: &str = "correct-horse-battery";
const DATABASE: &str = "backstop";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A cluster with an empty database and a user that must give [`PASSWORD`].
fn cluster(rt: &tokio::runtime::Runtime) -> Postgres {
    rt.block_on(async {
        let pg = Postgres::start().await;
        pg.create_database(DATABASE).await;
        pg.add_password_user("backstop", PASSWORD).await;
        pg
    })
}

/// Runs `backstop serve` until it exits (it is expected to be refused), with `url` in its
/// environment, its own state folder and ports.
fn serve_refused(dir: &std::path::Path, url: &str) -> Output {
    let state = dir.join("refused-state");
    std::fs::create_dir_all(&state).unwrap();
    let config = dir.join("refused.yaml");
    std::fs::write(&config, shop_config(free_port(), "[{weight: 100}]")).unwrap();
    let mut child = Command::new(backstop_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("BACKSTOP_DATABASE_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + patience();
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("a daemon that should be refused kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn count(rt: &tokio::runtime::Runtime, pg: &Postgres, sql: &'static str) -> i64 {
    rt.block_on(async {
        let mut conn = pg
            .cluster()
            .connect_options(DATABASE)
            .connect()
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        n
    })
}

#[test]
fn a_daemon_on_postgres_promotes_recovers_and_survives_kill_9() {
    let rt = runtime();
    let pg = cluster(&rt);
    let url = pg.url_as("backstop", PASSWORD, DATABASE);
    let dir = tempfile::tempdir().unwrap();
    let proxy_port = free_port();
    let mut d = Daemon::start_with_env(
        &dir.path().join("state"),
        &shop_config(
            proxy_port,
            "[{weight: 10, for: 3s}, {weight: 50, for: 3s}, {weight: 100}]",
        ),
        proxy_port,
        &[("BACKSTOP_DATABASE_URL", &url)],
    );

    d.register("v1", 0.0);
    d.register("v2", 0.0);
    d.register("v3", 0.2);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let traffic = Traffic::start(d.proxy_port, 80.0);
    let v2 = d.rollout_wait("v2", 0);
    assert_eq!(v2["rollout"]["phase"], "promoted", "{v2:#}");
    let v3 = d.rollout_wait("v3", 1);
    assert_eq!(v3["rollout"]["phase"], "recovered", "{v3:#}");
    assert_eq!(v3["recovery"]["status"], "done", "{v3:#}");
    assert_eq!(
        step_kinds(&v3["recovery"]),
        [
            "wait_healthy",
            "shift_traffic",
            "stop_instance",
            "mark_release_bad",
            "wait_healthy",
            "verify_signals"
        ]
    );
    traffic.stop();
    d.assert_audit_verifies();

    // The state is in PostgreSQL, not in the state folder (which keeps artifacts, logs and
    // the admin token).
    assert!(!d.state_dir.join("backstop.db").exists());
    assert!(d.state_dir.join("admin.token").exists());
    assert_eq!(count(&rt, &pg, "SELECT count(*) FROM rollouts"), 3);
    assert!(count(&rt, &pg, "SELECT count(*) FROM rollout_intervals") > 0);
    let audited = count(&rt, &pg, "SELECT count(*) FROM audit");
    let listed = d.cli_json(&["audit", "list", "--limit", "10000"], 0);
    assert_eq!(listed.as_array().unwrap().len() as i64, audited);

    // The password reaches neither the log, nor /metrics, nor the instances it started.
    let metrics = http_get(d.api_port(), "/metrics").expect("/metrics answers");
    assert!(!metrics.contains(PASSWORD) && !metrics.contains("postgres://"));
    for pid in instance_pids(&d.state_dir) {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let env = String::from_utf8_lossy(&env);
        assert!(!env.contains("BACKSTOP_DATABASE_URL"), "instance {pid}");
        assert!(!env.contains("BACKSTOP_AUDIT_KEY"), "instance {pid}");
        assert!(!env.contains(PASSWORD), "instance {pid}");
    }

    // kill -9, then a restart: the state is all there and the chain still verifies.
    d.kill9();
    d.restart();
    let list = d.cli_json(&["rollout", "list"], 0);
    assert_eq!(list.as_array().unwrap().len(), 3, "{list:#}");
    let v3_after = d.rollout(v3["rollout"]["id"].as_str().unwrap());
    assert_eq!(v3_after["rollout"]["phase"], "recovered");
    d.assert_audit_verifies();
    assert_eq!(
        d.cli_json(&["release", "show", "shop@v3"], 0)["status"],
        "bad"
    );

    // Restarted (a new replica id): it resumes what the store holds.
    d.restart();
    assert_eq!(
        d.cli_json(&["rollout", "list"], 0)
            .as_array()
            .unwrap()
            .len(),
        3
    );
    d.assert_audit_verifies();

    d.stop();
    assert!(!d.log().contains(PASSWORD), "the password is not logged");
    let log = d.log();
    let with_url: Vec<&str> = log.lines().filter(|l| l.contains("postgres://")).collect();
    assert!(with_url.is_empty(), "nor is the URL: {with_url:#?}");
}

#[test]
fn a_wrong_password_or_no_server_is_refused_naming_what_to_fix_and_never_the_password() {
    let rt = runtime();
    let pg = cluster(&rt);
    let dir = tempfile::tempdir().unwrap();

    let wrong = pg.url_as("backstop", "not-the-password", DATABASE);
    let out = serve_refused(dir.path(), &wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("check the user name and password in --database-url"),
        "{stderr}"
    );
    assert!(stderr.contains("backstop:***@localhost"), "{stderr}");
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    assert_eq!(
        count(
            &rt,
            &pg,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'rollouts'"
        ),
        0,
        "nothing was created"
    );

    let socketless = tempfile::tempdir().unwrap();
    let nowhere = format!(
        "postgres://backstop:{PASSWORD}@localhost/{DATABASE}?host={}",
        socketless.path().display()
    );
    let out = serve_refused(dir.path(), &nowhere);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("cannot reach PostgreSQL"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

/// The database server goes down while a canary takes traffic (issue 11's fail-safe, for a
/// store that is a server): no verdict or step can be written, so the canary is taken out of
/// traffic and `/healthz` says why; when the server is back the daemon reconnects, records the
/// outage and the rollout carries on, its canary back in traffic.
#[test]
fn a_database_that_goes_down_takes_the_canary_out_and_the_daemon_carries_on_when_it_is_back() {
    let rt = runtime();
    let mut pg = cluster(&rt);
    let url = pg.url_as("backstop", PASSWORD, DATABASE);
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let d = Daemon::start_with_env(
        &dir.path().join("state"),
        &shop_config(proxy, "[{weight: 30, for: 10m}, {weight: 100}]"),
        proxy,
        &[("BACKSTOP_DATABASE_URL", &url)],
    );
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    d.register("v2", 0.0);
    let id = d.rollout_progressing("v2");
    let traffic = Traffic::start(proxy, 40.0);
    d.wait_until("the canary takes traffic", || {
        http_get(proxy, "/").is_some_and(|a| a.contains("x-backstop-version: v2"))
    });

    pg.stop();
    let down_at = Instant::now();
    let out_after = all_answers_from(proxy, "v1", down_at, patience())
        .unwrap_or_else(|| panic!("the canary stays in traffic; daemon log:\n{}", d.log()));
    println!(
        "database down: canary out of traffic after {} ms",
        out_after.as_millis()
    );
    let health = http_get(d.api_port(), "/healthz").unwrap();
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(!health.contains(PASSWORD), "{health}");

    pg.start_again();
    d.wait_until("the daemon takes writes again", || {
        http_get(d.api_port(), "/healthz").is_some_and(|a| a.starts_with("HTTP/1.1 200"))
    });
    d.wait_until("the canary is back in traffic", || {
        http_get(proxy, "/").is_some_and(|a| a.contains("x-backstop-version: v2"))
    });
    traffic.stop();
    assert_eq!(d.rollout(&id)["rollout"]["phase"], "progressing");
    let audit = d.cli_json(&["audit", "list"], 0);
    assert!(
        backstop_testkit::audit_actions(&audit).contains(&"store.write_failed"),
        "{audit:#}"
    );
    assert!(!d.log().contains(PASSWORD));
}

/// Moving an embedded install: `store copy` refuses while the folder's daemon runs, copies
/// everything into an empty database and verifies the audit chain there; a daemon on that
/// database with the same state folder carries on where the embedded one stopped; a second
/// copy into the now non-empty database is refused, changing nothing.
#[test]
fn store_copy_moves_an_embedded_install_to_postgres_and_the_daemon_carries_on_there() {
    let rt = runtime();
    let pg = cluster(&rt);
    let url = pg.url_as("backstop", PASSWORD, DATABASE);
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    // The bad release is plainly bad and its canary step long: this test is about the copy,
    // not about how fast a judge decides.
    let mut d = Daemon::start(
        &dir.path().join("state"),
        &shop_config(proxy, "[{weight: 50, for: 30s}, {weight: 100}]"),
        proxy,
    );
    d.register("v1", 0.0);
    d.register("v2", 0.6);
    d.rollout_wait("v1", 0);
    let traffic = Traffic::start(proxy, 60.0);
    let v2 = d.rollout_wait("v2", 1);
    traffic.stop();
    assert_eq!(v2["rollout"]["phase"], "recovered", "{v2:#}");
    let state = d.state_dir.clone();
    let copy = |extra: &[&str]| {
        let mut cmd = Command::new(backstop_bin());
        cmd.args(["store", "copy", "--from"])
            .arg(&state)
            .args(extra)
            .env("BACKSTOP_DATABASE_URL", &url);
        cmd.output().unwrap()
    };

    let refused = copy(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("must be stopped"), "{stderr}");
    assert_eq!(
        count(
            &rt,
            &pg,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        0,
        "nothing was written"
    );

    d.stop();
    let copied = copy(&["-o", "json"]);
    let stdout = String::from_utf8_lossy(&copied.stdout);
    assert!(
        copied.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(!stdout.contains(PASSWORD), "{stdout}");
    let rows = |table: &str| {
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap()["rows"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(rows("rollouts"), 2, "{report:#}");
    assert!(
        rows("events") > 0 && rows("recovery_steps") > 0,
        "{report:#}"
    );
    assert_eq!(
        report["audit_records_verified"].as_u64().unwrap() as i64,
        count(&rt, &pg, "SELECT count(*) FROM audit")
    );

    // The daemon on PostgreSQL, same state folder: everything is there and it carries on.
    // Every replica signs the audit chain with the install's key, as the README says.
    let audit_key = std::fs::read_to_string(state.join("audit.key")).unwrap();
    let audit_key = audit_key.trim().to_string();
    d.env.push(("BACKSTOP_DATABASE_URL".into(), url.clone()));
    d.env.push(("BACKSTOP_AUDIT_KEY".into(), audit_key.clone()));
    d.restart();
    assert_eq!(
        d.cli_json(&["rollout", "list"], 0)
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        d.cli_json(&["release", "show", "shop@v2"], 0)["status"],
        "bad"
    );
    d.assert_audit_verifies();
    d.register("v3", 0.0);
    assert_eq!(d.rollout_wait("v3", 0)["rollout"]["phase"], "promoted");
    d.assert_audit_verifies();
    d.stop();

    // Another host: a replica with a state folder of its own, which never held an artifact,
    // rolls v1 out again, starting it from the backup it fetches from the database (and
    // verifies).
    let other_proxy = free_port();
    let mut other = Daemon::start_with_env(
        &dir.path().join("other-host"),
        &shop_config(other_proxy, "[{weight: 100}]"),
        other_proxy,
        &[
            ("BACKSTOP_DATABASE_URL", &url),
            ("BACKSTOP_AUDIT_KEY", &audit_key),
        ],
    );
    let v1_digest = other.cli_json(&["release", "show", "shop@v1"], 0)["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let local = |state: &std::path::Path| {
        state
            .join("blobs/sha256")
            .join(&v1_digest[..2])
            .join(&v1_digest[2..])
    };
    assert!(local(&state).exists() && !local(&other.state_dir).exists());
    let again = other.rollout_wait("v1", 0);
    assert_eq!(again["rollout"]["phase"], "promoted", "{again:#}");
    assert!(
        local(&other.state_dir).exists(),
        "fetched from the database"
    );
    other.assert_audit_verifies();
    other.stop();

    // Into a database that is not empty: refused, nothing written.
    let rollouts = count(&rt, &pg, "SELECT count(*) FROM rollouts");
    let again = copy(&[]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert_eq!(count(&rt, &pg, "SELECT count(*) FROM rollouts"), rollouts);
}
