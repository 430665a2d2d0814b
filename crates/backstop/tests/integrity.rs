//! `backstop integrity` on real databases with a million-row table: a snapshot before, one row
//! changed and one deleted, and the comparison names the tables and the key ranges (or hash
//! buckets) that differ; SQLite and PostgreSQL. The time a snapshot takes is printed.

use std::path::Path;
use std::process::{Command, Output};

use backstop_testkit::backstop_bin;
use backstop_testkit::servers::Postgres;
use serde_json::Value;

const ROWS: i64 = 1_000_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn integrity(args: &[&str]) -> Output {
    Command::new(backstop_bin())
        .arg("integrity")
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output, code: i32) -> Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn table<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("no table {name} in {report:#}"))
}

/// Snapshot, change, compare: the same steps on either engine.
fn snapshot_change_compare(database: &str, dir: &Path, engine: &str, change: impl FnOnce()) {
    let before = dir.join(format!("{engine}-before.json"));
    let snap = json(
        &integrity(&[
            "snapshot",
            database,
            "--out",
            before.to_str().unwrap(),
            "-o",
            "json",
        ]),
        0,
    );
    eprintln!(
        "{engine}: snapshot of {} rows in {:.2} s",
        snap["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["rows"].as_u64().unwrap())
            .sum::<u64>(),
        snap["seconds"].as_f64().unwrap()
    );
    assert_eq!(table(&snap, "items")["rows"], ROWS);
    assert_eq!(table(&snap, "items")["key"], "id");

    // Nothing changed yet: the live database matches its snapshot.
    let same = json(
        &integrity(&["compare", before.to_str().unwrap(), database, "-o", "json"]),
        0,
    );
    assert_eq!(same["same"], true, "{same:#}");

    change();
    let diff = json(
        &integrity(&["compare", before.to_str().unwrap(), database, "-o", "json"]),
        1,
    );
    let tables: Vec<&str> = diff["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables, ["events", "items"], "{diff:#}");
    let items = table(&diff, "items");
    assert_eq!(items["rows_a"], items["rows_b"], "{items:#}");
    let ranges: Vec<&str> = items["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["range"].as_str().unwrap())
        .collect();
    assert_eq!(ranges, ["120000..129999"], "{diff:#}");
    let events = table(&diff, "events");
    assert_eq!(
        (events["rows_a"].as_u64(), events["rows_b"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(events["ranges"].as_array().unwrap().len(), 1, "{events:#}");
    assert!(
        events["ranges"][0]["range"]
            .as_str()
            .unwrap()
            .starts_with('#')
    );

    // The text says it plainly.
    let text = integrity(&["compare", before.to_str().unwrap(), database]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("DIFFERENT") && text.contains("120000..129999"),
        "{text}"
    );
}

#[test]
fn a_changed_row_in_a_million_is_located_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let exec = |statements: &[&str]| {
        runtime().block_on(async {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            for s in statements {
                sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        });
    };
    exec(&[
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER)",
        &format!(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {ROWS}) \
             INSERT INTO items SELECT x, 'item-' || x, x % 97 FROM n"
        ),
        "CREATE TABLE events (kind TEXT, at INTEGER)",
        "INSERT INTO events VALUES ('a', 1), ('b', 2), ('c', 3)",
        "CREATE TABLE tags (item INTEGER, tag TEXT, PRIMARY KEY (item, tag))",
        "INSERT INTO tags VALUES (1, 'x'), (2, 'y')",
    ]);
    snapshot_change_compare(db.to_str().unwrap(), dir.path(), "sqlite", || {
        exec(&[
            "UPDATE items SET qty = qty + 1 WHERE id = 123456",
            "DELETE FROM events WHERE kind = 'b'",
        ]);
    });

    // Bad input changes nothing and names the place.
    let out = integrity(&["snapshot", "/no/such/file.db"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.db"));
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"format\": 3,\n").unwrap();
    let out = integrity(&["compare", broken.to_str().unwrap(), db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.json:1:"));
}

#[test]
fn a_changed_row_in_a_million_is_located_in_postgresql() {
    let pg = Postgres::blocking_with_database("shop");
    let url = pg.url("shop");
    let exec = |statements: &[&str]| {
        runtime().block_on(async {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            for s in statements {
                sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        });
    };
    exec(&[
        "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty integer)",
        &format!(
            "INSERT INTO items SELECT x, 'item-' || x, x % 97 FROM generate_series(1, {ROWS}) x"
        ),
        "CREATE TABLE events (kind text, at integer)",
        "INSERT INTO events VALUES ('a', 1), ('b', 2), ('c', 3)",
    ]);
    let dir = tempfile::tempdir().unwrap();
    snapshot_change_compare(&url, dir.path(), "postgres", || {
        exec(&[
            "UPDATE items SET qty = qty + 1 WHERE id = 123456",
            "DELETE FROM events WHERE kind = 'b'",
        ]);
    });
}
