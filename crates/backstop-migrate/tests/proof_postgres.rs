//! The up → down → up proof on real PostgreSQL: every test starts a temporary cluster with the
//! crate's own code (initdb + pg_ctl as a non-root user) and fails loudly if it cannot.

#[path = "fixtures/proof_common.rs"]
mod common;

use backstop_migrate::proof::prove;
use backstop_migrate::{Engine, Severity};
use backstop_testkit::servers::Postgres;
use common::*;
use sqlx::{Connection, PgConnection, Row};

const USERS: &str =
    "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, name text);";

async fn prove_pg(
    set: &backstop_migrate::MigrationSet,
) -> Vec<backstop_migrate::proof::ProofResult> {
    prove(set, Engine::Postgres, None)
        .await
        .expect("a temporary PostgreSQL cluster starts and the proof runs")
}

#[tokio::test]
async fn a_good_set_is_proven_migration_by_migration() {
    let mut concurrent = mig(
        "0004",
        "posts_title",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS posts_title ON posts (title);",
        Some("DROP INDEX CONCURRENTLY IF EXISTS posts_title;"),
    );
    concurrent.no_transaction = true;
    let set = set(vec![
        mig("0001", "users", USERS, Some("DROP TABLE users;")),
        mig(
            "0002",
            "posts",
            "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');\n\
             CREATE TABLE posts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n\
               user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,\n\
               title text COLLATE \"C\" CHECK (length(title) > 0), mood mood DEFAULT 'ok',\n\
               words int GENERATED ALWAYS AS (length(title)) STORED);\n\
             CREATE UNIQUE INDEX posts_user_title ON posts (user_id, title) WHERE title IS NOT NULL;\n\
             CREATE VIEW post_titles AS SELECT title FROM posts;\n\
             CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.title := trim(NEW.title); RETURN NEW; END $$;\n\
             CREATE TRIGGER posts_touch BEFORE INSERT ON posts FOR EACH ROW EXECUTE FUNCTION touch();\n\
             CREATE SEQUENCE tickets START 100 INCREMENT 5;",
            Some(
                "DROP SEQUENCE tickets;\nDROP TRIGGER posts_touch ON posts;\nDROP FUNCTION touch();\n\
                 DROP VIEW post_titles;\nDROP TABLE posts;\nDROP TYPE mood;",
            ),
        ),
        // Consuming a sequence value is not a schema change (last_value is never fingerprinted).
        mig(
            "0003",
            "ticket",
            "SELECT nextval('tickets');",
            Some("SELECT 1;"),
        ),
        concurrent,
    ]);
    let results = prove_pg(&set).await;
    assert_eq!(results.len(), 4);
    for r in &results {
        assert_proven(r);
    }
}

#[tokio::test]
async fn a_down_that_re_adds_a_dropped_column_is_column_order_drift() {
    let set = set(vec![
        mig("0001", "users", USERS, Some("DROP TABLE users;")),
        mig(
            "0002",
            "drop_email",
            "ALTER TABLE users DROP COLUMN email;",
            Some(
                "ALTER TABLE users ADD COLUMN email text NOT NULL DEFAULT '';\nALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);\nALTER TABLE users ALTER COLUMN email DROP DEFAULT;",
            ),
        ),
    ]);
    let results = prove_pg(&set).await;
    assert_proven(&results[0]);
    let r = &results[1];
    // Exactly one difference: the dropped attribute slot does not count, the order does, and
    // order alone is a warning: the schema is back, so the migration is proven.
    assert!(r.proven, "{:#?}", r.findings);
    assert!(
        messages(r, "proof-schema-differs").is_empty(),
        "{:#?}",
        r.findings
    );
    assert_eq!(messages(r, "column-order").len(), 1, "{:#?}", r.findings);
    assert_finding(
        r,
        "column-order",
        "after down: column users.email moved from position 2 to 3",
        "0002_drop_email.down.sql",
    );
}

#[tokio::test]
async fn a_down_that_forgets_an_index_a_constraint_a_view_and_a_trigger_is_reported() {
    let set = set(vec![
        mig("0001", "users", USERS, Some("DROP TABLE users;")),
        mig(
            "0002",
            "extras",
            "CREATE INDEX users_name ON users (name) WHERE name IS NOT NULL;\n\
             ALTER TABLE users ADD CONSTRAINT users_name_len CHECK (length(name) > 0);\n\
             CREATE VIEW user_emails AS SELECT email FROM users;\n\
             CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n\
             CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();",
            Some("DROP FUNCTION touch() CASCADE;"),
        ),
        tags("0003"),
    ]);
    let results = prove_pg(&set).await;
    let r = &results[1];
    let down = "0002_extras.down.sql";
    assert_finding(
        r,
        "proof-schema-differs",
        "after down: index users_name remains",
        down,
    );
    assert_finding(
        r,
        "proof-schema-differs",
        "after down: constraint users.users_name_len remains",
        down,
    );
    assert_finding(
        r,
        "proof-schema-differs",
        "after down: view user_emails remains",
        down,
    );
    assert_eq!(
        messages(r, "proof-schema-differs").len(),
        3,
        "{:#?}",
        r.findings
    );
    // The second up fails on the leftovers (rolled back), but the down did drop the function and
    // its trigger: the state after 0002 is rebuilt from the ups so 0003 is still proven.
    assert_finding(
        r,
        "reapply-failed",
        "the second up (after the down) failed: relation \"users_name\" already exists",
        "0002_extras.up.sql",
    );
    assert_eq!(with_rule(r, "proof-rebuilt").len(), 1, "{:#?}", r.findings);
    assert_proven(&results[2]);
}

#[tokio::test]
async fn enum_labels_in_another_order_and_a_diverging_second_up_are_reported() {
    let set = set(vec![
        mig(
            "0001",
            "mood",
            "CREATE TYPE mood AS ENUM ('sad', 'ok');",
            Some("DROP TYPE mood;"),
        ),
        mig(
            "0002",
            "happy",
            "ALTER TYPE mood ADD VALUE 'happy' BEFORE 'sad';",
            Some("DROP TYPE mood;\nCREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');"),
        ),
        // An up that depends on what the down left: the second up differs from the first.
        mig(
            "0003",
            "notes",
            "CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, body text NOT NULL);",
            Some("ALTER TABLE notes DROP COLUMN body;"),
        ),
        tags("0004"),
    ]);
    let results = prove_pg(&set).await;
    assert_finding(
        &results[1],
        "proof-schema-differs",
        "after down: type mood: definition was 'sad', 'ok' before the up, is 'sad', 'ok', 'happy' now",
        "0002_happy.down.sql",
    );
    // ADD VALUE on the recreated type fails; the state after 0002 is rebuilt from the ups.
    assert_finding(
        &results[1],
        "reapply-failed",
        "the second up (after the down) failed: enum label \"happy\" already exists",
        "0002_happy.up.sql",
    );
    assert_eq!(
        with_rule(&results[1], "proof-rebuilt").len(),
        1,
        "{:#?}",
        results[1].findings
    );
    let r = &results[2];
    assert_finding(
        r,
        "proof-schema-differs",
        "after down: table notes remains",
        "0003_notes.down.sql",
    );
    assert_finding(
        r,
        "proof-reapply-differs",
        "after the second up: column notes.body is missing (the first up created it)",
        "0003_notes.up.sql",
    );
    assert_eq!(with_rule(r, "proof-rebuilt").len(), 1, "{:#?}", r.findings);
    assert_proven(&results[3]);
}

#[tokio::test]
async fn an_up_that_fails_on_real_rows_names_the_database_error_and_line() {
    let set = set(vec![
        mig("0001", "users", USERS, Some("DROP TABLE users;")),
        mig(
            "0002",
            "seed",
            "INSERT INTO users (email) VALUES ('a@example.com');",
            Some("DELETE FROM users WHERE email = 'a@example.com';"),
        ),
        mig(
            "0003",
            "city",
            "-- every user has a city\n\nALTER TABLE users ADD COLUMN city text NOT NULL;",
            Some("ALTER TABLE users DROP COLUMN city;"),
        ),
        mig(
            "0004",
            "typo",
            "CREATE TABLE t (a int);",
            Some("DROP TABLE t;"),
        ),
    ]);
    let results = prove_pg(&set).await;
    assert_proven(&results[0]);
    assert_proven(&results[1]);
    let r = &results[2];
    assert_finding(
        r,
        "up-failed",
        "up failed: column \"city\" of relation \"users\" contains null values",
        "0003_city.up.sql",
    );
    assert!(
        r.findings
            .iter()
            .any(|f| f.message.contains("SQLSTATE 23502")),
        "{:#?}",
        r.findings
    );
    assert_eq!(
        with_rule(r, "up-failed")[0].line,
        Some(3),
        "the failing statement's line"
    );
    assert_finding(
        &results[3],
        "not-proven",
        "not proven: the up of 0003 failed",
        "0004_typo.up.sql",
    );
    assert_eq!(results[3].findings[0].severity, Severity::Warning);

    // A syntax error is located: line 3 of the file.
    let bad = set_of_one("CREATE TABLE a (id int);\n\nCREATE TABLEE b (id int);");
    let results = prove_pg(&bad).await;
    let f = &with_rule(&results[0], "up-failed")[0];
    assert!(
        f.message.contains("syntax error at or near \"TABLEE\""),
        "{}",
        f.message
    );
    assert_eq!(f.line, Some(3));
}

fn set_of_one(up: &str) -> backstop_migrate::MigrationSet {
    set(vec![mig("0001", "one", up, Some("SELECT 1;"))])
}

#[tokio::test]
async fn two_hundred_small_migrations_are_proven_in_one_run() {
    assert_two_hundred_proven(Engine::Postgres, "postgres (cluster start included)").await;
}

#[tokio::test]
async fn a_database_url_gets_a_scratch_database_that_is_dropped_afterwards() {
    let postgres = Postgres::start().await;
    let dir = postgres.dir().to_path_buf();
    let url = postgres.url("postgres");
    let set = set(vec![mig("0001", "users", USERS, Some("DROP TABLE users;"))]);
    let results = prove(&set, Engine::Postgres, Some(&url))
        .await
        .expect("proof runs");
    assert_proven(&results[0]);
    let mut conn = PgConnection::connect_with(&postgres.cluster().connect_options("postgres"))
        .await
        .expect("connect");
    let left: i64 =
        sqlx::query("SELECT count(*) FROM pg_database WHERE datname LIKE 'backstop_scratch%'")
            .fetch_one(&mut conn)
            .await
            .expect("query")
            .get(0);
    assert_eq!(left, 0, "the scratch database is dropped");
    conn.close().await.expect("close");
    drop(postgres);
    assert!(
        !dir.exists(),
        "the cluster folder {} is removed on drop",
        dir.display()
    );

    let err = prove(&set, Engine::Postgres, Some("not a url"))
        .await
        .expect_err("bad url");
    assert_eq!(err.exit_code(), 2);
    assert!(
        !err.to_string().contains("not a url"),
        "the URL is not echoed: {err}"
    );
}
