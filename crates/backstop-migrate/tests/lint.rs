//! The whole check on the corpus, data-driven: every set under tests/corpus/{sqlite,postgres}
//! carries an `expect.json` (`{"exit": 0|1|2, "rules": [...], "absent": [...], "error": "..."}`)
//! and must produce exactly that exit code, every listed rule id, none of the absent ones, and
//! for exit 2 an error containing the expected text (`file:line`; a list: every one of them). Optional keys: `since` (the
//! `--since` version), `info` (rules that must appear, and only as info: accepted or moot),
//! `summary` (counts the summary must have, e.g. `{"proven": 3, "failed": 1}`), `messages` (text
//! some finding's message must contain). Plus the rules on
//! their own, with the lines they name.

use std::path::{Path, PathBuf};

use backstop_migrate::report::{CheckOptions, check_with};
use backstop_migrate::{Engine, Severity, load};
use serde_json::Value;

fn corpus_dir(engine: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(engine)
}

fn sets(engine: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(corpus_dir(engine))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// Check one set against its expect.json; returns a description of every mismatch.
async fn check_set(dir: &Path, engine: Engine) -> Vec<String> {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let expect: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expect.json")).unwrap()).unwrap();
    let want_exit = expect["exit"].as_i64().unwrap();
    let opts = CheckOptions {
        engine,
        database_url: None,
        write_sum: false,
        progress: None,
        since: expect["since"].as_str(),
    };
    let mut problems = Vec::new();
    match check_with(dir, &opts).await {
        Ok(report) => {
            let got_exit = i64::from(report.exit_code());
            let rules: Vec<String> = report
                .migrations
                .iter()
                .flat_map(|m| &m.findings)
                .chain(&report.findings)
                .filter(|f| f.severity != Severity::Info)
                .map(|f| f.rule.clone())
                .collect();
            let describe = || {
                report
                    .migrations
                    .iter()
                    .flat_map(|m| &m.findings)
                    .filter(|f| f.severity != Severity::Info)
                    .map(|f| format!("    {:?} {} {}", f.severity, f.rule, f.message))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            if got_exit != want_exit {
                problems.push(format!(
                    "{name}: exit {got_exit}, expected {want_exit}\n{}",
                    describe()
                ));
            }
            for r in expect["rules"].as_array().unwrap() {
                let r = r.as_str().unwrap();
                if !rules.iter().any(|g| g == r) {
                    problems.push(format!("{name}: rule {r} missing; got:\n{}", describe()));
                }
            }
            for r in expect["absent"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                if rules.iter().any(|g| g == r) {
                    problems.push(format!("{name}: rule {r} must not appear\n{}", describe()));
                }
            }
            for r in expect["info"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                let all: Vec<&Severity> = report
                    .migrations
                    .iter()
                    .flat_map(|m| &m.findings)
                    .chain(&report.findings)
                    .filter(|f| f.rule == r)
                    .map(|f| &f.severity)
                    .collect();
                if all.is_empty() || all.iter().any(|s| **s != Severity::Info) {
                    problems.push(format!(
                        "{name}: rule {r} must appear as info only, got {all:?}\n{}",
                        describe()
                    ));
                }
            }
            for want in expect["messages"].as_array().into_iter().flatten() {
                let want = want.as_str().unwrap();
                let found = report
                    .migrations
                    .iter()
                    .flat_map(|m| &m.findings)
                    .any(|f| f.message.contains(want));
                if !found {
                    problems.push(format!("{name}: no finding says {want:?}\n{}", describe()));
                }
            }
            if let Some(want) = expect["summary"].as_object() {
                let got = serde_json::to_value(&report.summary).unwrap();
                for (k, v) in want {
                    if &got[k] != v {
                        problems.push(format!(
                            "{name}: summary.{k} is {}, expected {v}\n{}",
                            got[k],
                            describe()
                        ));
                    }
                }
            }
            if want_exit == 0 {
                let errors: Vec<&str> = report
                    .migrations
                    .iter()
                    .flat_map(|m| &m.findings)
                    .filter(|f| f.severity == Severity::Error)
                    .map(|f| f.rule.as_str())
                    .collect();
                if !errors.is_empty() {
                    problems.push(format!("{name}: a passing set has errors {errors:?}"));
                }
            }
        }
        Err(e) => {
            let got_exit = i64::from(e.exit_code());
            if got_exit != want_exit {
                problems.push(format!(
                    "{name}: exit {got_exit} ({e}), expected {want_exit}"
                ));
            }
            let texts: Vec<&str> = match &expect["error"] {
                Value::String(t) => vec![t.as_str()],
                Value::Array(all) => all.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            for text in texts {
                if !e.to_string().contains(text) {
                    problems.push(format!("{name}: error {e:?} does not contain {text:?}"));
                }
            }
        }
    }
    problems
}

async fn check_corpus(engine_dir: &str, engine: Engine) {
    let all = sets(engine_dir);
    assert!(
        all.len() >= 20,
        "the {engine_dir} corpus has {} sets",
        all.len()
    );
    let mut problems = Vec::new();
    for dir in &all {
        problems.extend(check_set(dir, engine).await);
    }
    assert!(
        problems.is_empty(),
        "{} of {} {engine_dir} sets differ from expect.json:\n{}",
        problems.len(),
        all.len(),
        problems.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_corpus_matches_expectations() {
    check_corpus("sqlite", Engine::Sqlite).await;
}

/// Runs on a real PostgreSQL (a temporary cluster per set, started by the checker). Fails, with
/// the checker's message, when PostgreSQL is not installed: CI installs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_corpus_matches_expectations() {
    check_corpus("postgres", Engine::Postgres).await;
}

/// Every layout has a good set on both engines, and the broken cases the issue lists exist.
#[test]
fn corpus_covers_every_layout_and_case() {
    for engine in ["sqlite", "postgres"] {
        let names: Vec<String> = sets(engine)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        for want in [
            "paired-good",
            "diesel-good",
            "sqlx-good",
            "flyway-good",
            "sqitch-good",
            "goose-good",
            "dbmate-good",
            "liquibase-good",
            "paired-missing-down",
            "paired-noop-down",
            "paired-destructive-up",
            "paired-destructive-down",
            "paired-column-order",
            "paired-forgets-index",
            "paired-up-fails-on-data",
            "paired-rename",
            "paired-unparsable",
            "paired-collision",
            "paired-checksum-edited",
            "paired-irreversible",
            // Issue 16: real histories.
            "diesel-version-order",
            "paired-created-in-script",
            "paired-noop-up",
            "paired-since",
            "paired-allow",
            "paired-allow-unknown-rule",
        ] {
            assert!(names.iter().any(|n| n == want), "{engine}: no {want} set");
        }
        for dir in sets(engine) {
            assert!(
                dir.join("expect.json").is_file(),
                "{} has no expect.json",
                dir.display()
            );
        }
    }
}

fn lint_rules(engine_dir: &str, set: &str, engine: Engine) -> Vec<(String, Severity, String)> {
    let set = load(&corpus_dir(engine_dir).join(set)).unwrap();
    backstop_migrate::lint::lint(&set, engine)
        .unwrap()
        .into_iter()
        .flatten()
        .map(|f| {
            let at = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{}:{line}", file.display()),
                (Some(file), None) => file.display().to_string(),
                _ => String::new(),
            };
            (f.rule, f.severity, at)
        })
        .collect()
}

#[test]
fn destructive_up_names_each_statement_line() {
    let got = lint_rules("sqlite", "paired-destructive-up", Engine::Sqlite);
    assert!(
        got.contains(&(
            "destructive-drop-column".into(),
            Severity::Error,
            "0002_cleanup.up.sql:1".into()
        )),
        "{got:?}"
    );
    assert!(
        got.contains(&(
            "destructive-delete".into(),
            Severity::Error,
            "0002_cleanup.up.sql:2".into()
        )),
        "{got:?}"
    );
    // The first migration's down drops only what its own up created: a warning, not an error.
    assert!(
        got.contains(&(
            "down-discards-new-data".into(),
            Severity::Warning,
            "0001_users.down.sql:1".into()
        )),
        "{got:?}"
    );
    assert!(
        !got.iter()
            .any(|(r, _, at)| r.starts_with("destructive") && at.starts_with("0001"))
    );
}

#[test]
fn sqlite_table_rebuild_is_not_a_destructive_drop() {
    let got = lint_rules("sqlite", "paired-column-order", Engine::Sqlite);
    let errors: Vec<_> = got
        .iter()
        .filter(|(_, s, _)| *s == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn section_layouts_report_file_lines() {
    let got = lint_rules("sqlite", "dbmate-destructive-down", Engine::Sqlite);
    // `DROP TABLE users;` is line 6 of the second file (after the down marker on line 4).
    assert!(
        got.contains(&(
            "down-destroys-existing-data".into(),
            Severity::Error,
            "20240102120000_archive.sql:6".into()
        )),
        "{got:?}"
    );
    assert!(
        got.contains(&(
            "down-discards-new-data".into(),
            Severity::Warning,
            "20240102120000_archive.sql:5".into()
        )),
        "{got:?}"
    );
}

#[test]
fn postgres_runs_squawk_rules_as_warnings() {
    let got = lint_rules("postgres", "paired-locking", Engine::Postgres);
    assert!(
        got.contains(&(
            "squawk:require-concurrent-index-creation".into(),
            Severity::Warning,
            "0002_name_index.up.sql:1".into()
        )),
        "{got:?}"
    );
    // Rules Backstop reports itself are not repeated by squawk.
    let got = lint_rules("postgres", "paired-rename", Engine::Postgres);
    assert!(
        got.iter()
            .any(|(r, s, _)| r == "breaking-rename-column" && *s == Severity::Error)
    );
    assert!(
        !got.iter().any(|(r, _, _)| r == "squawk:renaming-column"),
        "{got:?}"
    );
}

#[test]
fn narrowing_type_change_is_known_from_earlier_migrations() {
    let got = lint_rules("postgres", "paired-narrowing", Engine::Postgres);
    assert!(
        got.contains(&(
            "breaking-type-change".into(),
            Severity::Error,
            "0002_short_names.up.sql:1".into()
        )),
        "{got:?}"
    );
}

#[test]
fn unparsable_sql_is_an_input_error_at_the_bad_line() {
    for (engine_dir, engine) in [("sqlite", Engine::Sqlite), ("postgres", Engine::Postgres)] {
        let set = load(&corpus_dir(engine_dir).join("paired-unparsable")).unwrap();
        let e = backstop_migrate::lint::lint(&set, engine).unwrap_err();
        assert_eq!(e.file, Path::new("0002_city.up.sql"), "{engine_dir}: {e}");
        assert_eq!(e.line, Some(4), "{engine_dir}: {e}");
    }
}
