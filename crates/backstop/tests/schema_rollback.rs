//! Schema-aware rollbacks against a real daemon and a real SQLite database: a rollback to a
//! release that runs on an older schema runs the proven down (kept in the database's history at
//! apply time) before the old release starts, and a rollback whose way back crosses a contract
//! migration is refused before anything is touched, with the options.

mod support;

use backstop_migrate::apply::{self, apply_up};
use backstop_migrate::{Engine, Layout, Migration, MigrationSet, Phase, Script};
use serde_json::Value;
use support::{Daemon, Traffic, bin, free_port};

fn migration(version: &str, up: &str, down: &str, phase: Option<Phase>) -> Migration {
    let script = |kind: &str, sql: &str| Script {
        file: format!("{version}_m.{kind}.sql").into(),
        line: 1,
        sql: sql.into(),
    };
    Migration {
        version: version.into(),
        name: format!("m{version}"),
        up: script("up", up),
        down: Some(script("down", down)),
        verify: None,
        irreversible: None,
        forward_only: false,
        phase,
        no_transaction: false,
    }
}

fn set(migrations: Vec<Migration>) -> MigrationSet {
    MigrationSet {
        dir: "db".into(),
        layout: Layout::Paired,
        migrations,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn applied(url: &str) -> Vec<String> {
    rt().block_on(apply::history(Engine::Sqlite, url))
        .unwrap()
        .into_iter()
        .map(|m| m.version)
        .collect()
}

fn columns(db: &std::path::Path) -> Vec<String> {
    rt().block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let rows: Vec<(String,)> = sqlx::query_as("SELECT name FROM pragma_table_info('users')")
            .fetch_all(&mut c)
            .await
            .unwrap();
        rows.into_iter().map(|r| r.0).collect()
    })
}

fn register(d: &Daemon, version: &str, schema: &str) {
    let bin = bin();
    d.cli_json(
        &[
            "release",
            "create",
            "shop",
            "--version",
            version,
            "--file",
            bin.to_str().unwrap(),
            "--schema",
            schema,
        ],
        0,
    );
}

fn deploy(d: &Daemon, version: &str) {
    let out = d.cli_json(
        &[
            "rollout",
            "start",
            "shop",
            "--env",
            "prod",
            "--version",
            version,
            "--wait",
        ],
        0,
    );
    assert_eq!(out["rollout"]["phase"], "promoted", "{out:#}");
}

#[test]
fn rollbacks_run_proven_downs_first_or_refuse_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let url = format!("sqlite://{}", db.display());
    let proxy = free_port();
    let config = support::config(proxy, "[{weight: 50, for: 2s}, {weight: 100}]").replace(
        "    environments:",
        "    migrations: {dir: db, engine: sqlite, database_url_env: SHOP_DB_URL}\n    stateful:\n      - {name: shop-db, rpo: 5m, snapshot_every: 5m, restore: \"restore-shop-db {snapshot}\"}\n    environments:",
    );
    let mut d = Daemon::start_with_env(
        &dir.path().join("state"),
        &config,
        proxy,
        &[("SHOP_DB_URL", &url)],
    );
    let m1 = migration(
        "1",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
        "DROP TABLE users;",
        None,
    );
    let m2 = migration(
        "2",
        "ALTER TABLE users ADD COLUMN email TEXT;",
        "ALTER TABLE users DROP COLUMN email;",
        Some(Phase::Expand),
    );
    let m3 = migration(
        "3",
        "ALTER TABLE users DROP COLUMN name;",
        "ALTER TABLE users ADD COLUMN name TEXT NOT NULL DEFAULT '';",
        Some(Phase::Contract),
    );
    let all = set(vec![m1, m2, m3]);
    let up_to = |to: &str| {
        rt().block_on(apply_up(Engine::Sqlite, &url, &all, Some(to), &|_| true, 1))
            .unwrap()
    };

    // v1 runs on schema 1; v2 needs the expand migration 2.
    up_to("1");
    register(&d, "v1", "1");
    register(&d, "v2", "2");
    deploy(&d, "v1");
    let traffic = Traffic::start(proxy, 40.0);
    up_to("2");
    deploy(&d, "v2");
    assert_eq!(applied(&url), ["1", "2"]);

    // Back to v1: the database is past what v1 runs on, so the proven down of 2 runs before
    // v1 starts.
    let rec = d.cli_json(
        &["rollback", "shop", "--env", "prod", "--reason", "bad v2"],
        0,
    );
    let kinds: Vec<&str> = rec["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"]["kind"].as_str().unwrap())
        .collect();
    let down_at = kinds.iter().position(|k| *k == "run_migration_down");
    let start_at = kinds.iter().position(|k| *k == "start_instance");
    assert!(
        down_at.is_some() && down_at < start_at,
        "downs before the old release starts: {kinds:?}"
    );
    assert_eq!(rec["status"], "done", "{rec:#}");
    assert_eq!(applied(&url), ["1"]);
    assert_eq!(columns(&db), ["id", "name"]);

    // Forward again through the contract migration 3 (v3 runs on 3), then ask to go back to
    // v1 (schema 1): the way back crosses a contract step, so the rollback is refused and
    // nothing changes.
    up_to("3");
    register(&d, "v3", "3");
    deploy(&d, "v3");
    let recoveries_before = d
        .cli_json(&["recovery", "list"], 0)
        .as_array()
        .unwrap()
        .len();
    let out = d.cli(&["rollback", "shop", "--env", "prod", "--reason", "bad v3"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("refused"), "{said}");
    assert!(
        said.contains("migration 3") && said.contains("contract"),
        "{said}"
    );
    assert!(said.contains("roll forward"), "{said}");
    assert!(said.contains("shop-db") && said.contains("5m"), "{said}");
    assert_eq!(applied(&url), ["1", "2", "3"]);
    assert_eq!(columns(&db), ["id", "email"]);
    assert_eq!(
        d.cli_json(&["recovery", "list"], 0)
            .as_array()
            .unwrap()
            .len(),
        recoveries_before,
        "a refused rollback journals no recovery"
    );
    let audit = d.cli_json(&["audit", "list"], 0);
    let refused: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "rollback.refused")
        .collect();
    assert_eq!(refused.len(), 1, "{audit:#}");
    traffic.stop();
    d.stop();
}
