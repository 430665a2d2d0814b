//! Schema-aware rollbacks against a real daemon and a real SQLite database: a rollback to a
//! release that runs on an older schema runs the proven down (kept in the database's history at
//! apply time) before the old release starts, and a rollback whose way back crosses a contract
//! migration is refused before anything is touched, with the options.

use backstop_migrate::Engine;
use backstop_migrate::apply;
use backstop_testkit::{
    Daemon, Traffic, backstop_bin, free_port, item_with, rollback_args, shop_config, step_kinds,
};
use serde_json::Value;

/// Writes the paired-layout migration set the service declares.
fn write_migrations(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let files = [
        (
            "1_users.up.sql",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n",
        ),
        ("1_users.down.sql", "DROP TABLE users;\n"),
        (
            "2_email.up.sql",
            "-- backstop:phase expand\nALTER TABLE users ADD COLUMN email TEXT;\n",
        ),
        ("2_email.down.sql", "ALTER TABLE users DROP COLUMN email;\n"),
        (
            "3_drop_name.up.sql",
            "-- backstop:phase contract\n-- backstop:irreversible the names are gone\n-- backstop:forward-only\nALTER TABLE users DROP COLUMN name;\n",
        ),
    ];
    for (name, sql) in files {
        std::fs::write(dir.join(name), sql).unwrap();
    }
}

/// `backstop migrations apply` (a pipeline step: no daemon involved).
fn apply_to(dir: &std::path::Path, url: &str, to: &str, extra: &[&str]) -> Value {
    let out = std::process::Command::new(backstop_bin())
        .args(["migrations", "apply"])
        .arg(dir)
        .args(["--database-url", url, "--to", to, "--output", "json"])
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
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
    d.register_with(version, &["--schema", schema]);
}

fn deploy(d: &Daemon, version: &str) {
    let out = d.rollout_wait(version, 0);
    assert_eq!(out["rollout"]["phase"], "promoted", "{out:#}");
}

#[test]
fn rollbacks_run_proven_downs_first_or_refuse_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let url = format!("sqlite://{}", db.display());
    let migrations = dir.path().join("db");
    let proxy = free_port();
    let config = shop_config(proxy, "[{weight: 50, for: 2s}, {weight: 100}]").replace(
        "    environments:",
        "    migrations: {dir: db, engine: sqlite, database_url_env: SHOP_DB_URL}\n    stateful:\n      - {name: shop-db, rpo: 5m, snapshot_every: 5m, restore: \"restore-shop-db {snapshot}\"}\n    environments:",
    );
    let mut d = Daemon::start_with_env(
        &dir.path().join("state"),
        &config.replace("dir: db,", &format!("dir: {},", migrations.display())),
        proxy,
        &[("SHOP_DB_URL", &url)],
    );
    write_migrations(&migrations);

    // v1 runs on schema 1; v2 needs the expand migration 2.
    let applied_now = apply_to(&migrations, &url, "1", &[]);
    assert_eq!(applied_now["applied"], serde_json::json!(["1"]));
    register(&d, "v1", "1");
    register(&d, "v2", "2");
    deploy(&d, "v1");
    let traffic = Traffic::start(proxy, 40.0);
    apply_to(&migrations, &url, "2", &[]);
    let gate = d.cli_json(&["gate", "shop", "--env", "prod", "--release", "v2"], 0);
    let way_back = item_with(&gate["checks"], "name", "schema_way_back");
    assert!(
        way_back["reason"].as_str().unwrap().contains("proven down"),
        "{gate:#}"
    );
    // The gate's proof is remembered per version of the set: an edited down is proven again
    // (and blocks), the original text passes again.
    let down = migrations.join("2_email.down.sql");
    let original = std::fs::read_to_string(&down).unwrap();
    std::fs::write(&down, "SELECT 1;\n").unwrap();
    let blocked = d.cli_json(&["gate", "shop", "--env", "prod", "--release", "v2"], 1);
    let check = item_with(&blocked["checks"], "name", "migrations");
    assert_eq!(check["ok"], false, "{blocked:#}");
    std::fs::write(&down, original).unwrap();
    d.cli_json(&["gate", "shop", "--env", "prod", "--release", "v2"], 0);
    deploy(&d, "v2");
    assert_eq!(applied(&url), ["1", "2"]);

    // Back to v1: the database is past what v1 runs on, so the proven down of 2 runs before
    // v1 starts.
    let rec = d.rollback("bad v2", 0);
    let kinds = step_kinds(&rec);
    let down_at = kinds.iter().position(|k| *k == "run_migration_down");
    let start_at = kinds.iter().position(|k| *k == "start_instance");
    assert!(
        down_at.is_some() && down_at < start_at,
        "downs before the old release starts: {kinds:?}"
    );
    assert_eq!(rec["status"], "done", "{rec:#}");
    assert_eq!(applied(&url), ["1"]);
    assert_eq!(columns(&db), ["id", "name"]);

    // Expand/contract done right: v2c runs on 1..3 and is deployed first; then the pipeline
    // applies 2 and the irreversible contract step 3. Going back from v2c to v1 (schema 1)
    // would cross 3: the rollback is refused before anything is touched.
    register(&d, "v2c", "1..3");
    deploy(&d, "v2c");
    apply_to(&migrations, &url, "3", &[]);
    assert_eq!(applied(&url), ["1", "2", "3"]);
    let recoveries_before = d
        .cli_json(&["recovery", "list"], 0)
        .as_array()
        .unwrap()
        .len();
    let out = d.cli(&rollback_args("bad v2c"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("refused"), "{said}");
    assert!(
        said.contains("migration 3") && said.contains("irreversible"),
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
