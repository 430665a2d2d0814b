//! The up → down → up proof on real SQLite scratch databases.

#[path = "fixtures/proof_common.rs"]
mod common;

use backstop_migrate::proof::prove;
use backstop_migrate::{Engine, Severity};
use common::*;

const USERS: &str = "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT);";

#[tokio::test]
async fn a_good_set_is_proven_migration_by_migration() {
    let set = set(vec![
        mig("0001", "users", USERS, Some("DROP TABLE users;")),
        mig(
            "0002",
            "posts",
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,\n\
             title TEXT COLLATE NOCASE CHECK (length(title) > 0), words INT GENERATED ALWAYS AS (length(title)) VIRTUAL);\n\
             CREATE UNIQUE INDEX posts_title ON posts (user_id, title) WHERE title IS NOT NULL;\n\
             CREATE VIEW post_titles AS SELECT title FROM posts;\n\
             CREATE TRIGGER posts_touch AFTER INSERT ON posts BEGIN UPDATE posts SET title = trim(title) WHERE id = new.id; END;",
            Some(
                "DROP TRIGGER posts_touch;\nDROP VIEW post_titles;\nDROP INDEX posts_title;\nDROP TABLE posts;",
            ),
        ),
        // SQLite's 12-step rebuild: the down recreates the table; its stored text becomes
        // CREATE TABLE "users" after the rename, which must not count as a difference.
        mig(
            "0003",
            "users_city",
            "ALTER TABLE users ADD COLUMN city TEXT;",
            Some(
                "CREATE TABLE users_new (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT);\n\
                 INSERT INTO users_new SELECT id, email, name FROM users;\n\
                 PRAGMA foreign_keys = OFF;\n\
                 DROP TABLE users;\n\
                 ALTER TABLE users_new RENAME TO users;",
            ),
        ),
    ]);
    let results = prove(&set, Engine::Sqlite, None).await.expect("proof runs");
    assert_eq!(results.len(), 3);
    for r in &results {
        assert_proven(r);
    }
    assert_eq!(
        results
            .iter()
            .map(|r| r.version.as_str())
            .collect::<Vec<_>>(),
        ["0001", "0002", "0003"]
    );
}

#[tokio::test]
async fn a_down_that_re_adds_a_column_at_the_end_is_column_order_drift() {
    let set = set(vec![
        mig("0001", "users", USERS, Some("DROP TABLE users;")),
        mig(
            "0002",
            "drop_email",
            "ALTER TABLE users DROP COLUMN email;",
            Some("ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';"),
        ),
    ]);
    let results = prove(&set, Engine::Sqlite, None).await.expect("proof runs");
    assert_proven(&results[0]);
    let r = &results[1];
    assert!(!r.proven && r.reversible);
    // Order alone is a warning; the changed default still fails the proof.
    assert_finding(
        r,
        "column-order",
        "after down: column users.email moved from position 2 to 3",
        "0002_drop_email.down.sql",
    );
    assert_finding(
        r,
        "proof-schema-differs",
        "after down: column users.email: default was (none) before the up, is '' now",
        "0002_drop_email.down.sql",
    );
    // The second up (drop again) matches the first: no reapply finding.
    assert!(
        messages(r, "proof-reapply-differs").is_empty(),
        "{:#?}",
        r.findings
    );
}

#[tokio::test]
async fn a_down_that_forgets_an_index_is_reported_and_later_migrations_are_still_proven() {
    let set = set(vec![
        mig("0001", "users", USERS, Some("DROP TABLE users;")),
        mig(
            "0002",
            "users_name",
            "CREATE INDEX users_name ON users (name);",
            Some("-- nothing to undo, surely\nSELECT 1;"),
        ),
        tags("0003"),
    ]);
    let results = prove(&set, Engine::Sqlite, None).await.expect("proof runs");
    let r = &results[1];
    assert!(!r.proven);
    assert_finding(
        r,
        "proof-schema-differs",
        "after down: index users_name remains",
        "0002_users_name.down.sql",
    );
    // The second up trips over the leftover index; it ran in a transaction, so the schema is
    // still the one after the first up and nothing needs rebuilding.
    assert_finding(
        r,
        "reapply-failed",
        "the second up (after the down) failed: index users_name already exists",
        "0002_users_name.up.sql",
    );
    assert!(
        with_rule(r, "proof-rebuilt").is_empty(),
        "{:#?}",
        r.findings
    );
    assert_proven(&results[2]);
}

#[tokio::test]
async fn a_down_that_leaves_a_view_a_trigger_and_a_check_is_reported() {
    let set = set(vec![
        mig(
            "0001",
            "users",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT);\n\
             CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT);",
            Some("DROP TABLE audit;\nDROP TABLE users;"),
        ),
        mig(
            "0002",
            "audit",
            "CREATE TABLE audit_new (id INTEGER PRIMARY KEY, what TEXT CHECK (what <> ''));\n\
             INSERT INTO audit_new SELECT id, what FROM audit;\n\
             DROP TABLE audit;\n\
             ALTER TABLE audit_new RENAME TO audit;\n\
             CREATE VIEW user_emails AS SELECT email FROM users;\n\
             CREATE TRIGGER users_touch AFTER INSERT ON users BEGIN UPDATE users SET name = trim(name) WHERE id = new.id; END;",
            Some("-- the view and trigger go with the app, surely\nSELECT 1;"),
        ),
        tags("0003"),
    ]);
    let results = prove(&set, Engine::Sqlite, None).await.expect("proof runs");
    assert_proven(&results[0]);
    let r = &results[1];
    let down = "0002_audit.down.sql";
    assert_finding(
        r,
        "proof-schema-differs",
        "after down: view user_emails remains",
        down,
    );
    assert_finding(
        r,
        "proof-schema-differs",
        "after down: trigger users_touch remains",
        down,
    );
    assert_finding(
        r,
        "proof-schema-differs",
        "after down: constraint audit.check (what <> '') remains",
        down,
    );
    assert_eq!(
        messages(r, "proof-schema-differs").len(),
        3,
        "{:#?}",
        r.findings
    );
    assert_finding(
        r,
        "reapply-failed",
        "the second up (after the down) failed: view user_emails already exists",
        "0002_audit.up.sql",
    );
    assert_proven(&results[2]);
}

#[tokio::test]
async fn a_second_up_that_diverges_from_the_first_is_reported() {
    let set = set(vec![
        mig(
            "0001",
            "notes",
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
            Some("ALTER TABLE notes DROP COLUMN body;"),
        ),
        mig(
            "0002",
            "after",
            "CREATE TABLE later (id INTEGER PRIMARY KEY);",
            Some("DROP TABLE later;"),
        ),
    ]);
    let results = prove(&set, Engine::Sqlite, None).await.expect("proof runs");
    let r = &results[0];
    assert_finding(
        r,
        "proof-schema-differs",
        "after down: table notes remains",
        "0001_notes.down.sql",
    );
    assert_finding(
        r,
        "proof-reapply-differs",
        "after the second up: column notes.body is missing (the first up created it)",
        "0001_notes.up.sql",
    );
    assert_eq!(with_rule(r, "proof-rebuilt").len(), 1);
    assert_proven(&results[1]);
}

#[tokio::test]
async fn an_up_that_fails_on_the_database_stops_the_proof_and_says_why() {
    let set = set(vec![
        mig("0001", "users", USERS, Some("DROP TABLE users;")),
        mig(
            "0002",
            "seed",
            "INSERT INTO users (email, name) VALUES ('a@example.com', 'a');",
            Some("DELETE FROM users WHERE email = 'a@example.com';"),
        ),
        mig(
            "0003",
            "city",
            "-- every user has a city\n\nALTER TABLE users ADD COLUMN city TEXT NOT NULL;",
            Some("ALTER TABLE users DROP COLUMN city;"),
        ),
        tags("0004"),
    ]);
    let results = prove(&set, Engine::Sqlite, None).await.expect("proof runs");
    assert_proven(&results[0]);
    assert_proven(&results[1]);
    let r = &results[2];
    assert!(!r.proven);
    assert_finding(
        r,
        "up-failed",
        "up failed: Cannot add a NOT NULL column with default value NULL",
        "0003_city.up.sql",
    );
    assert_eq!(errors(r).len(), 1, "{:#?}", r.findings);
    assert_eq!(
        with_rule(r, "up-failed")[0].line,
        Some(3),
        "the failing statement's line"
    );
    let later = &results[3];
    assert!(!later.proven);
    assert_finding(
        later,
        "not-proven",
        "not proven: the up of 0003 failed",
        "0004_tags.up.sql",
    );
}

#[tokio::test]
async fn a_failing_down_and_a_missing_down_are_not_proven_but_the_rest_is() {
    let mut irreversible = mig(
        "0003",
        "backfill",
        "UPDATE users SET name = email WHERE name IS NULL;",
        None,
    );
    irreversible.irreversible = Some("the old names are gone".to_string());
    let set = set(vec![
        mig("0001", "users", USERS, Some("DROP TABLE users;")),
        mig(
            "0002",
            "broken_down",
            "CREATE TABLE a (id INTEGER);",
            Some("DROP TABLE a;\nDROP TABLE does_not_exist;"),
        ),
        irreversible,
        mig("0004", "b", "CREATE TABLE b (id INTEGER);", None),
        mig(
            "0005",
            "c",
            "CREATE TABLE c (id INTEGER);",
            Some("DROP TABLE c;"),
        ),
    ]);
    let results = prove(&set, Engine::Sqlite, None).await.expect("proof runs");
    let r = &results[1];
    assert_finding(
        r,
        "down-failed",
        "down failed: no such table: does_not_exist",
        "0002_broken_down.down.sql",
    );
    // The failed down ran in a transaction: nothing to rebuild.
    assert!(
        with_rule(r, "proof-rebuilt").is_empty(),
        "{:#?}",
        r.findings
    );
    let declared = &results[2];
    assert!(!declared.reversible && !declared.proven);
    let f = &with_rule(declared, "not-proven")[0];
    assert_eq!(f.severity, Severity::Info);
    assert!(
        f.message
            .contains("declared irreversible: the old names are gone"),
        "{}",
        f.message
    );
    let missing = &results[3];
    assert_eq!(
        with_rule(missing, "not-proven")[0].severity,
        Severity::Warning
    );
    assert_proven(&results[4]);
}

#[tokio::test]
async fn two_hundred_small_migrations_are_proven_in_one_run() {
    assert_two_hundred_proven(Engine::Sqlite, "sqlite").await;
}

#[tokio::test]
async fn a_database_url_is_refused_for_sqlite() {
    let err = prove(&many(1), Engine::Sqlite, Some("postgres://localhost/x"))
        .await
        .expect_err("refused");
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string()
            .contains("--database-url is only used with --engine postgres"),
        "{err}"
    );
}
