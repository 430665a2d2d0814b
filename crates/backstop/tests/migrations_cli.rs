//! `backstop migrations check` as a real process on corpus sets: exit codes, the JSON shape of
//! the spec, the text table, `--write-sum` then an edit caught as `checksum-mismatch`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use backstop_testkit::{backstop_bin, item_with};
use serde_json::Value;

fn corpus(engine: &str, set: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../backstop-migrate/tests/corpus")
        .join(engine)
        .join(set)
}

fn run(args: &[&str]) -> Output {
    Command::new(backstop_bin())
        .args(["migrations", "check"])
        .args(args)
        .output()
        .expect("run backstop")
}

fn json(args: &[&str], code: i32) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let out = run(&all);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn rules(v: &Value) -> Vec<String> {
    v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["findings"].as_array().unwrap().iter())
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn good_set_passes_with_the_spec_json_shape() {
    let dir = corpus("sqlite", "paired-good");
    let v = json(&[dir.to_str().unwrap()], 0);
    assert_eq!(v["engine"], "sqlite");
    assert_eq!(v["ok"], true);
    let m = &v["migrations"][1];
    assert_eq!(m["version"], "0002");
    assert_eq!(m["name"], "city");
    assert_eq!(m["up"], "0002_city.up.sql");
    assert_eq!(m["down"], "0002_city.down.sql");
    assert_eq!(m["reversible"], true);
    assert_eq!(m["proven"], true);
    let f = &m["findings"][0];
    for key in ["severity", "rule", "message", "file", "line"] {
        assert!(f.get(key).is_some(), "finding without {key}: {f}");
    }
    assert_eq!(m["checksum"]["up"].as_str().unwrap().len(), 64);
}

#[test]
fn broken_set_exits_1_and_text_names_the_rule_and_line() {
    let dir = corpus("sqlite", "paired-destructive-up");
    let v = json(&[dir.to_str().unwrap()], 1);
    assert_eq!(v["ok"], false);
    assert!(
        rules(&v).iter().any(|r| r == "destructive-drop-column"),
        "{v}"
    );

    let out = run(&[dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("✗ 0002 cleanup"), "{text}");
    assert!(
        text.contains("destructive-drop-column  0002_cleanup.up.sql:1"),
        "{text}"
    );
    assert!(text.contains("FAILED: 2 migrations"), "{text}");
}

#[test]
fn forgotten_index_is_caught_by_the_proof() {
    let dir = corpus("sqlite", "paired-forgets-index");
    let v = json(&[dir.to_str().unwrap()], 1);
    let m = &v["migrations"][1];
    assert_eq!(m["proven"], false);
    let messages: Vec<&str> = m["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "proof-schema-differs")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("users_name")),
        "{messages:?}"
    );
}

#[test]
fn unparsable_sql_exits_2_naming_file_and_line() {
    let dir = corpus("sqlite", "paired-unparsable");
    let out = run(&[dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0002_city.up.sql:4: not valid SQLite SQL"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing else is reported");

    let v = json(&[dir.to_str().unwrap()], 2);
    assert_eq!(v["error"]["file"], "0002_city.up.sql");
    assert_eq!(v["error"]["line"], 4);
}

#[test]
fn write_sum_then_an_edited_down_is_a_checksum_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let src = corpus("sqlite", "paired-good");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "expect.json" {
            std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
        }
    }
    let dir = tmp.path().to_str().unwrap();
    let v = json(&[dir, "--write-sum"], 0);
    assert_eq!(v["sum"], "written");
    assert!(tmp.path().join("backstop.sum").is_file());
    let v = json(&[dir], 0);
    assert_eq!(v["sum"], "checked");

    let down = tmp.path().join("0002_city.down.sql");
    let text = std::fs::read_to_string(&down).unwrap();
    std::fs::write(&down, format!("-- reviewed\n{text}")).unwrap();
    let v = json(&[dir], 1);
    let m = &v["migrations"][1];
    let f = item_with(&m["findings"], "rule", "checksum-mismatch");
    assert_eq!(f["file"], "0002_city.down.sql");
    assert_eq!(f["severity"], "error");
}

#[test]
fn postgres_set_runs_on_a_temporary_cluster() {
    let dir = corpus("postgres", "paired-rename");
    let v = json(&[dir.to_str().unwrap(), "--engine", "postgres"], 1);
    assert_eq!(v["engine"], "postgres");
    assert_eq!(v["migrations"][1]["proven"], true);
    assert!(
        rules(&v).iter().any(|r| r == "breaking-rename-column"),
        "{v}"
    );
}

#[test]
fn help_teaches_with_examples() {
    let out = Command::new(backstop_bin())
        .args(["migrations", "check", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("backstop migrations check db/migrations --engine postgres"),
        "{text}"
    );
    assert!(text.contains("Exit codes"), "{text}");
}

/// Adopting the check on a long history: `--since` accepts the old findings, `--quiet` shows only
/// what fails with a tally per rule, `--severity error` hides warnings in JSON too, and the
/// header names the server the proof ran on.
#[test]
fn an_old_history_is_adopted_with_since_and_read_with_quiet_and_severity() {
    let dir = corpus("sqlite", "paired-since");
    let d = dir.to_str().unwrap();

    // Without --since: the placeholder down of 0001 and the drop in 0002 fail the check.
    let out = run(&[d, "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("proven on SQLite 3."), "{text}");
    assert!(text.contains("✗ 0001 users"), "{text}");
    assert!(
        !text.contains("0003 city"),
        "--quiet shows only failing migrations: {text}"
    );
    assert!(text.contains("noop-down"), "{text}");
    let tally = text
        .lines()
        .find(|l| l.starts_with("destructive-drop-column"))
        .unwrap_or_else(|| panic!("no tally row for destructive-drop-column: {text}"));
    assert_eq!(
        tally.split_whitespace().collect::<Vec<_>>(),
        ["destructive-drop-column", "1", "0", "0"]
    );
    assert!(
        text.contains("failing (2): 0001 users, 0002 drop_legacy"),
        "{text}"
    );

    // --since 0002 (inclusive): accepted as info with the reason; the proofs still ran.
    let v = json(&[d, "--since", "0002"], 0);
    assert_eq!(v["since"], "0002");
    assert!(v["server"].as_str().unwrap().starts_with("SQLite "), "{v}");
    let s = &v["summary"];
    assert_eq!(
        (s["proven"].as_u64(), s["accepted"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    assert_eq!(s["failed"], 0, "{s}");
    let drop = v["migrations"][1]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "destructive-drop-column")
        .unwrap();
    assert_eq!(drop["severity"], "info");
    assert!(
        drop["message"]
            .as_str()
            .unwrap()
            .contains("(allowed: history up to --since)")
    );

    // --severity error: no warnings or info left in the JSON, the summary still counts them.
    let v = json(&[d, "--since", "0002", "--severity", "error"], 0);
    let left: Vec<String> = v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["findings"].as_array().unwrap())
        .map(|f| f["severity"].as_str().unwrap().to_string())
        .collect();
    assert!(left.iter().all(|s| s == "error"), "{left:?}");
    assert!(v["summary"]["warnings"].as_u64().unwrap() > 0);

    // A version that is not there, in a set ordered by version, still works: every migration
    // not after it is accepted. One past the last, or a word, is refused, naming the flag.
    let v = json(&[d, "--since", "0002.5"], 0);
    assert_eq!(v["summary"]["accepted"], 1);
    let out = run(&[d, "--since", "9999"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is after the last migration (0003)"), "{err}");
    let out = run(&[d, "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--since \"yesterday\""), "{err}");
}
