//! The layout readers on the corpus and on hand-made broken folders: detection, order, section
//! line numbers, declared irreversibility, and input errors that name the file.

use std::path::{Path, PathBuf};

use backstop_migrate::{Engine, Layout, MigrationSet, load};
use proptest::prelude::*;

fn corpus(engine: &str, set: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(engine)
        .join(set)
}

fn versions(set: &MigrationSet) -> Vec<&str> {
    set.migrations.iter().map(|m| m.version.as_str()).collect()
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, text).unwrap();
    }
}

#[test]
fn every_good_set_is_read_in_its_layout() {
    let cases = [
        ("paired-good", Layout::Paired, 3),
        ("diesel-good", Layout::Diesel, 3),
        ("sqlx-good", Layout::SqlxSingle, 3),
        ("flyway-good", Layout::Flyway, 3),
        ("sqitch-good", Layout::Sqitch, 3),
        ("goose-good", Layout::Goose, 4),
        ("dbmate-good", Layout::Dbmate, 3),
        ("liquibase-good", Layout::Liquibase, 4),
    ];
    for engine in ["sqlite", "postgres"] {
        for (name, layout, count) in cases {
            let set =
                load(&corpus(engine, name)).unwrap_or_else(|e| panic!("{engine}/{name}: {e}"));
            assert_eq!(set.layout, layout, "{engine}/{name}");
            assert_eq!(set.migrations.len(), count, "{engine}/{name}");
            let first = &set.migrations[0];
            assert_eq!(
                first.name,
                if layout == Layout::Liquibase {
                    "ada"
                } else {
                    "users"
                },
                "{engine}/{name}"
            );
            assert!(
                first.up.sql.contains("CREATE TABLE users"),
                "{engine}/{name}"
            );
        }
    }
}

#[test]
fn paired_set_pairs_ups_with_downs_in_version_order() {
    let set = load(&corpus("sqlite", "paired-good")).unwrap();
    assert_eq!(versions(&set), ["0001", "0002", "0003"]);
    let m = &set.migrations[1];
    assert_eq!(m.up.file, Path::new("0002_city.up.sql"));
    assert_eq!(
        m.down.as_ref().unwrap().file,
        Path::new("0002_city.down.sql")
    );
    assert_eq!(m.irreversible, None);
}

#[test]
fn numeric_versions_sort_numerically() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("10_c.up.sql", "SELECT 1;"),
            ("10_c.down.sql", "SELECT 1;"),
            ("9_b.up.sql", "SELECT 1;"),
            ("9_b.down.sql", "SELECT 1;"),
            ("1_a.up.sql", "SELECT 1;"),
            ("1_a.down.sql", "SELECT 1;"),
        ],
    );
    assert_eq!(versions(&load(dir.path()).unwrap()), ["1", "9", "10"]);
}

/// The 0-based index of the first line of `text` that `is`.
fn line_index(text: &str, is: impl Fn(&str) -> bool) -> usize {
    text.lines()
        .position(is)
        .unwrap_or_else(|| panic!("no such line in:\n{text}"))
}

#[test]
fn section_scripts_start_at_their_file_line() {
    let set = load(&corpus("sqlite", "goose-good")).unwrap();
    let m = &set.migrations[0];
    // `-- +goose Up` is line 1, so the up starts on line 2.
    assert_eq!(m.up.line, 2);
    let down = m.down.as_ref().unwrap();
    let text =
        std::fs::read_to_string(corpus("sqlite", "goose-good").join("00001_users.sql")).unwrap();
    let marker = line_index(&text, |l| l.trim() == "-- +goose Down");
    assert_eq!(down.line as usize, marker + 2);
    assert!(down.sql.contains("DROP TABLE users"));
    assert!(!m.up.sql.contains("DROP TABLE"));

    let set = load(&corpus("sqlite", "liquibase-good")).unwrap();
    let second = &set.migrations[1];
    let text =
        std::fs::read_to_string(corpus("sqlite", "liquibase-good").join("changelog.sql")).unwrap();
    let header = line_index(&text, |l| l.trim() == "--changeset ada:2");
    assert_eq!(second.up.line as usize, header + 2);
    let down = second.down.as_ref().unwrap();
    let rollback = line_index(&text, |l| l.starts_with("--rollback DROP INDEX"));
    assert_eq!(down.line as usize, rollback + 1);
    assert!(down.sql.contains("DROP INDEX users_city"));
    assert!(
        !second.up.sql.contains("DROP INDEX"),
        "rollback lines are not part of the up"
    );
    // `--rollback not required` declares the last changeset irreversible.
    assert!(
        set.migrations[3]
            .irreversible
            .as_deref()
            .unwrap()
            .contains("not required")
    );
    assert!(set.migrations[3].down.is_none());
}

#[test]
fn sqitch_reads_plan_order_with_verify_scripts() {
    let set = load(&corpus("postgres", "sqitch-good")).unwrap();
    let names: Vec<&str> = set.migrations.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["users", "city", "orders"]);
    assert!(
        set.migrations
            .iter()
            .all(|m| m.verify.is_some() && m.down.is_some())
    );
    assert_eq!(
        set.migrations[2].down.as_ref().unwrap().file,
        Path::new("revert/orders.sql")
    );
}

#[test]
fn sqitch_reworked_change_uses_tagged_scripts() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "sqitch.plan",
                "%project=x\nf 2024-01-01T00:00:00Z A <a@x>\n@v1 2024-01-02T00:00:00Z A <a@x>\nf [f@v1] 2024-01-03T00:00:00Z A <a@x>\n",
            ),
            ("deploy/f@v1.sql", "CREATE TABLE old (id INTEGER);"),
            ("revert/f@v1.sql", "DROP TABLE old;"),
            ("deploy/f.sql", "CREATE TABLE new (id INTEGER);"),
            ("revert/f.sql", "DROP TABLE new;"),
        ],
    );
    let set = load(dir.path()).unwrap();
    assert_eq!(set.migrations[0].up.file, Path::new("deploy/f@v1.sql"));
    assert_eq!(set.migrations[1].up.file, Path::new("deploy/f.sql"));
}

#[test]
fn sqlx_single_files_are_irreversible_unless_a_down_exists() {
    let set = load(&corpus("sqlite", "sqlx-good")).unwrap();
    let irreversible: Vec<bool> = set
        .migrations
        .iter()
        .map(|m| m.irreversible.is_some())
        .collect();
    assert_eq!(irreversible, [true, false, true]);
}

#[test]
fn annotations_and_no_transaction_markers_are_read() {
    let set = load(&corpus("sqlite", "paired-irreversible")).unwrap();
    let m = &set.migrations[1];
    assert_eq!(
        m.irreversible.as_deref(),
        Some("names are normalised; the old spelling is not kept")
    );
    assert!(m.forward_only);
    assert_eq!(m.phase, Some(backstop_migrate::Phase::Backfill));

    let set = load(&corpus("postgres", "paired-concurrent-index")).unwrap();
    assert!(set.migrations[1].no_transaction);

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "20240101_a.sql",
                "-- migrate:up transaction:false\nSELECT 1;\n-- migrate:down\nSELECT 1;\n",
            ),
            (
                "20240102_b.sql",
                "-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 1;\n",
            ),
        ],
    );
    let set = load(dir.path()).unwrap();
    assert_eq!(set.layout, Layout::Dbmate);
    assert!(set.migrations[0].no_transaction);
    assert!(!set.migrations[1].no_transaction);
}

fn load_err(files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), files);
    load(dir.path()).unwrap_err().to_string()
}

#[test]
fn bad_folders_are_input_errors_naming_the_file() {
    let e = load(&corpus("sqlite", "paired-collision"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("collides"), "{e}");
    assert!(e.starts_with("0002_") || e.starts_with("002_"), "{e}");

    let e = load(&corpus("sqlite", "paired-down-without-up"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("0002_city.down.sql: a down without an up"),
        "{e}"
    );

    let e = load(&corpus("sqlite", "mixed-layouts"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("mixed layouts"), "{e}");

    let e = load_err(&[("0001.up.sql", "SELECT 1;"), ("0001.down.sql", "SELECT 1;")]);
    assert!(
        e.starts_with("0001.") && e.contains("without a migration name"),
        "{e}"
    );

    let e = load_err(&[(
        "00001_a.sql",
        "CREATE TABLE a (id INTEGER);\n-- +goose Up\nSELECT 1;\n",
    )]);
    assert!(
        e.contains("00001_a.sql:1: SQL before the first section marker"),
        "{e}"
    );

    let e = load_err(&[(
        "00001_a.sql",
        "CREATE TABLE a (id INTEGER);\n-- +goose Down\nDROP TABLE a;\n",
    )]);
    assert_eq!(
        e,
        "00001_a.sql: no up section: expected a `-- +goose Up` line"
    );

    let e = load_err(&[(
        "a.sql",
        "--liquibase formatted sql\n--changeset alice\nSELECT 1;\n",
    )]);
    assert_eq!(
        e,
        "a.sql:2: a changeset needs `author:id` (e.g. `--changeset alice:1`)"
    );

    let e = load_err(&[(
        "sqitch.plan",
        "%project=x\nusers 2024-01-01T00:00:00Z A <a@x>\n",
    )]);
    assert_eq!(
        e,
        "sqitch.plan:2: change users has no deploy script deploy/users.sql"
    );

    let e = load_err(&[("0001_a.up.sql", "-- backstop:phase sideways\nSELECT 1;")]);
    assert!(e.starts_with("0001_a.up.sql:1: unknown phase"), "{e}");

    let e = load_err(&[("V1__a.sql", "SELECT 1;"), ("U2__b.sql", "SELECT 1;")]);
    assert!(e.starts_with("U2__b.sql: a down without an up"), "{e}");

    let e = load_err(&[("README.md", "nothing here")]);
    assert!(e.contains("no migrations found"), "{e}");
}

/// Names a fuzzed folder may hold: every layout's patterns, plus nonsense.
fn file_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,3}_[a-z]{0,3}\\.(up|down)\\.sql",
        "[0-9]{1,3}(_[a-z]{1,3})?\\.sql",
        "[VUR][0-9._]{0,3}__[a-z]{0,2}\\.sql",
        "[a-z@.]{1,4}\\.sql",
        Just("sqitch.plan".to_string()),
        "(deploy|revert|verify)/[a-z@]{1,3}\\.sql",
        "[0-9-]{1,4}_[a-z]{1,2}/(up|down)\\.sql",
        "[0-9-]{1,4}_[a-z]{1,2}/metadata\\.toml",
    ]
}

/// Contents a fuzzed file may hold: markers of every layout mixed with SQL and junk.
fn contents() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("-- +goose Up".to_string()),
        Just("-- +goose Down".to_string()),
        Just("-- +goose StatementBegin".to_string()),
        Just("-- migrate:up transaction:false".to_string()),
        Just("-- migrate:down".to_string()),
        Just("--liquibase formatted sql".to_string()),
        Just("--changeset a:1".to_string()),
        Just("--rollback not required".to_string()),
        Just("/* liquibase rollback".to_string()),
        Just("*/".to_string()),
        Just("-- backstop:irreversible".to_string()),
        Just("-- backstop:phase contract".to_string()),
        Just("-- backstop:allow destructive-drop-table,squawk:prefer-robust-stmts why".to_string()),
        Just("-- backstop:allow".to_string()),
        Just("-- safety-assured:start".to_string()),
        Just("-- safety-assured:end".to_string()),
        Just("run_in_transaction = false".to_string()),
        Just("run_in_transaction = [".to_string()),
        Just("%project=x".to_string()),
        Just("@v1 2024-01-01T00:00:00Z A <a@x>".to_string()),
        Just("CREATE TABLE t (id INTEGER);".to_string()),
        Just("CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END;".to_string()),
        Just("DROP TABLE t;".to_string()),
        Just("$$ ' \" ( ;".to_string()),
        "[ -~]{0,30}",
        "\\PC{0,10}",
    ];
    prop::collection::vec(line, 0..8).prop_map(|v| v.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The readers and both parse paths return a result or an input error on anything; they never panic.
    #[test]
    fn readers_and_parsers_never_panic(files in prop::collection::vec((file_name(), contents()), 0..6)) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in &files {
            let p = dir.path().join(name);
            if let Some(parent) = p.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(&p, text);
        }
        if let Ok(set) = load(dir.path()) {
            for engine in [Engine::Sqlite, Engine::Postgres] {
                let _ = backstop_migrate::lint::lint(&set, engine);
            }
        }
    }

    /// The SQL paths (parse, statement split, rules) never panic on arbitrary text.
    #[test]
    fn sql_paths_never_panic(sql in contents(), junk in "\\PC{0,40}") {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{sql}\n{junk}");
        std::fs::write(dir.path().join("0001_a.up.sql"), &text).unwrap();
        std::fs::write(dir.path().join("0001_a.down.sql"), &junk).unwrap();
        // An unknown `-- backstop:` word in the junk is an input error; anything else loads.
        if let Ok(set) = load(dir.path()) {
            for engine in [Engine::Sqlite, Engine::Postgres] {
                let _ = backstop_migrate::lint::lint(&set, engine);
                let _ = backstop_migrate::lint::rules_only(&set, engine);
            }
        }
    }
}
