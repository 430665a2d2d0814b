//! The audit trail against someone who can write the database: each tampering the hash chain
//! alone let through (tail removed and the head moved back, everything deleted, records
//! rewritten with recomputed hashes, the signature removed, the database put back to an older
//! copy) is caught by `audit verify`, by the daemon at its start, and by a checkpoint kept
//! elsewhere; verifying never writes; an export verifies on its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use backstop_core::audit::{AuditEntry, record_hash};
use backstop_testkit::{Daemon, backstop_bin, shop_config};
use serde_json::Value;
use sqlx::Row;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `backstop ARGS --state-dir STATE` with no daemon around (and no key in the environment).
fn offline(state: &Path, args: &[&str]) -> Output {
    Command::new(backstop_bin())
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .args(["--server", "http://127.0.0.1:9"])
        .env_remove("BACKSTOP_AUDIT_KEY")
        .output()
        .unwrap()
}

/// `audit verify -o json` on a state folder: exit code and report.
fn verify(state: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["audit", "verify", "-o", "json"];
    args.extend_from_slice(extra);
    let out = offline(state, &args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs `statements` on the state folder's database, as an attacker with the file would.
fn tamper(state: &Path, statements: &[String]) {
    runtime().block_on(async {
        let url = format!("sqlite://{}", state.join("backstop.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        for s in statements {
            sqlx::query(sqlx::AssertSqlSafe(s.clone()))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    });
}

/// Every record's hash recomputed from `from_seq` on after changing record `from_seq`'s actor,
/// and the head moved to the new last hash: what the chain alone cannot tell from the truth.
fn rewrite_with_recomputed_hashes(state: &Path, from_seq: i64) {
    let rows = runtime().block_on(async {
        let url = format!("sqlite://{}", state.join("backstop.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let rows = sqlx::query("SELECT * FROM audit ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.iter()
            .map(|r| {
                (
                    r.get::<i64, _>("seq"),
                    r.get::<i64, _>("at_ms"),
                    AuditEntry {
                        actor: r.get("actor"),
                        action: r.get("action"),
                        target: r.get("target"),
                        trigger: r.get("trigger"),
                        evidence: serde_json::from_str(&r.get::<String, _>("evidence")).unwrap(),
                    },
                    r.get::<String, _>("prev_hash"),
                )
            })
            .collect::<Vec<_>>()
    });
    let mut statements = Vec::new();
    let mut prev = None::<String>;
    for (seq, at, mut entry, stored_prev) in rows {
        if seq < from_seq {
            prev = Some(record_hash(&stored_prev, seq, at, &entry));
            continue;
        }
        if seq == from_seq {
            entry.actor = "token:mallory".into();
        }
        let prev_hash = prev.clone().unwrap_or(stored_prev);
        let hash = record_hash(&prev_hash, seq, at, &entry);
        statements.push(format!(
            "UPDATE audit SET actor = '{}', prev_hash = '{prev_hash}', hash = '{hash}' WHERE seq = {seq}",
            entry.actor
        ));
        statements.push(format!(
            "UPDATE audit_head SET seq = {seq}, hash = '{hash}'"
        ));
        prev = Some(hash);
    }
    tamper(state, &statements);
}

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

fn reason(report: &Value) -> String {
    report["reason"].as_str().unwrap_or_default().to_string()
}

#[test]
fn each_tampering_is_caught_given_only_the_database_and_verifying_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = backstop_testkit::free_port();
    let mut d = Daemon::start(
        &dir.path().join("state"),
        &shop_config(proxy, "[{weight: 100}]"),
        proxy,
    );
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    d.rollout_wait("v1", 0);
    // A checkpoint kept elsewhere, and a copy of the database as it was then.
    let checkpoint = dir.path().join("elsewhere").join("checkpoint.json");
    std::fs::create_dir_all(checkpoint.parent().unwrap()).unwrap();
    let taken = d.cli_json(
        &["audit", "checkpoint", "--out", checkpoint.to_str().unwrap()],
        0,
    );
    assert!(taken["mac"].as_str().unwrap().len() == 64, "{taken}");
    d.rollout_wait("v2", 0);
    d.stop();
    let state = d.state_dir.clone();
    let key = std::fs::read_to_string(state.join("audit.key")).unwrap();
    assert_eq!(key.trim().len(), 64);
    let mode = std::fs::metadata(state.join("audit.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    let (code, whole) = verify(&state, &[]);
    assert_eq!(code, 0, "{whole}");
    assert_eq!(whole["signature"], "valid", "{whole}");
    let records = whole["records"].as_i64().unwrap();
    assert!(records > 8, "{whole}");
    let (code, report) = verify(&state, &["--checkpoint", checkpoint.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["checkpoint"], taken["seq"]);

    // Verifying reads only: nothing in the folder changes, and a read-only copy verifies.
    let before = files(&state);
    verify(&state, &[]);
    assert_eq!(
        files(&state),
        before,
        "audit verify changed the state folder"
    );
    let read_only = dir.path().join("read-only");
    copy_dir(&state, &read_only);
    let chmod = |mode: &str| {
        Command::new("chmod")
            .args(["-R", mode])
            .arg(&read_only)
            .status()
            .unwrap()
    };
    chmod("a-w");
    let (code, report) = verify(&read_only, &[]);
    chmod("u+w");
    assert_eq!(code, 0, "{report}");

    let case = |name: &str| {
        let copy = dir.path().join(name);
        copy_dir(&state, &copy);
        copy
    };

    // 1. The tail removed and the head moved back onto the last record left.
    let cut = case("tail-removed");
    tamper(
        &cut,
        &[
            format!("DELETE FROM audit WHERE seq > {}", records - 3),
            format!(
                "UPDATE audit_head SET seq = {0}, hash = (SELECT hash FROM audit WHERE seq = {0})",
                records - 3
            ),
        ],
    );
    let (code, report) = verify(&cut, &[]);
    assert_eq!(code, 1, "{report}");
    assert!(
        reason(&report).contains("signature does not match"),
        "{report}"
    );

    // 2. Everything deleted, head included.
    let emptied = case("emptied");
    tamper(
        &emptied,
        &["DELETE FROM audit".into(), "DELETE FROM audit_head".into()],
    );
    let (code, report) = verify(&emptied, &[]);
    assert_eq!(code, 1, "{report}");
    assert!(reason(&report).contains("emptied"), "{report}");

    // 3. A record rewritten, every later hash recomputed, the head moved to match.
    let rewritten = case("rewritten");
    rewrite_with_recomputed_hashes(&rewritten, 3);
    let (code, report) = verify(&rewritten, &[]);
    assert_eq!(code, 1, "{report}");
    assert!(
        reason(&report).contains("signature does not match"),
        "{report}"
    );
    // Without the key only the hashes can be checked, and they hold: say so, never "valid".
    let keyless = dir.path().join("keyless");
    copy_dir(&rewritten, &keyless);
    std::fs::remove_file(keyless.join("audit.key")).unwrap();
    let (code, report) = verify(&keyless, &[]);
    assert_eq!(
        (code, report["signature"].as_str()),
        (0, Some("unchecked")),
        "{report}"
    );

    // 4. The signature removed.
    let unsigned = case("unsigned");
    tamper(&unsigned, &["UPDATE audit_head SET mac = NULL".into()]);
    let (code, report) = verify(&unsigned, &[]);
    assert_eq!(code, 1, "{report}");
    assert!(reason(&report).contains("not signed"), "{report}");

    // 5. The database put back to a copy older than the checkpoint: a chain that holds and is
    //    signed, but the checkpoint kept elsewhere names a record it no longer has.
    let rolled_back = case("rolled-back");
    let records_then = taken["seq"].as_i64().unwrap();
    rewrite_to_older_copy(&rolled_back, records_then - 2);
    let (code, report) = verify(&rolled_back, &[]);
    assert_eq!(code, 0, "the old copy holds on its own: {report}");
    let (code, report) = verify(
        &rolled_back,
        &["--checkpoint", checkpoint.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{report}");
    assert!(reason(&report).contains("older copy"), "{report}");
    // A checkpoint that was altered is refused too.
    let mut forged: Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    forged["seq"] = Value::from(records_then - 1);
    let forged_path = dir.path().join("forged.json");
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    let (code, report) = verify(&state, &["--checkpoint", forged_path.to_str().unwrap()]);
    assert_eq!(code, 1, "{report}");
    assert!(
        reason(&report).contains("checkpoint's signature"),
        "{report}"
    );

    // The daemon notices at its start: it says so, reports it on /metrics, and writes the break
    // into the chain, so carrying on appending never makes the chain whole again.
    let mut tampered = Daemon::start(&rewritten, &shop_config(proxy, "[{weight: 100}]"), proxy);
    tampered.wait_until("the break logged", || {
        tampered.log().contains("The audit chain is broken")
    });
    let metrics = backstop_testkit::http_get(tampered.api_port(), "/metrics").unwrap();
    assert!(
        metrics.lines().any(|l| l == "backstop_audit_chain_ok 0"),
        "{metrics}"
    );
    let actions = tampered.cli_json(&["audit", "list", "--limit", "100000"], 0);
    assert!(
        actions
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "audit.chain_broken"),
        "{actions:#}"
    );
    tampered.stop();
    let (code, report) = verify(&rewritten, &[]);
    assert_eq!(code, 1, "{report}");
    assert!(reason(&report).contains("broken earlier"), "{report}");

    // The untouched folder's daemon says the chain holds.
    let mut good = Daemon::start(&state, &shop_config(proxy, "[{weight: 100}]"), proxy);
    let metrics = backstop_testkit::http_get(good.api_port(), "/metrics").unwrap();
    assert!(
        metrics.lines().any(|l| l == "backstop_audit_chain_ok 1"),
        "{metrics}"
    );
    good.assert_audit_verifies();
    good.stop();
}

/// Puts the database back to what it held when record `seq` was the last (a backup restored
/// over it): the later records gone, the head as the daemon signed it then (recomputed here
/// with the key, as the older copy would carry it).
fn rewrite_to_older_copy(state: &Path, seq: i64) {
    let key = std::fs::read_to_string(state.join("audit.key")).unwrap();
    let key = backstop_core::audit::AuditKey::from_hex(&key).unwrap();
    let hash = runtime().block_on(async {
        let url = format!("sqlite://{}", state.join("backstop.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let row = sqlx::query("SELECT hash FROM audit WHERE seq = $1")
            .bind(seq)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        row.get::<String, _>("hash")
    });
    let mac = key.sign_head(seq, &hash, None);
    tamper(
        state,
        &[
            format!("DELETE FROM audit WHERE seq > {seq}"),
            format!("UPDATE audit_head SET seq = {seq}, hash = '{hash}', mac = '{mac}'"),
        ],
    );
}

#[test]
fn an_export_verifies_on_its_own_and_any_edit_to_it_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = backstop_testkit::free_port();
    let mut d = Daemon::start(
        &dir.path().join("state"),
        &shop_config(proxy, "[{weight: 100}]"),
        proxy,
    );
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    // Through the daemon (its key signs the closing checkpoint).
    let export = dir.path().join("audit.jsonl");
    let out = Command::new(backstop_bin())
        .args(["audit", "export", "--out"])
        .arg(&export)
        .args(["--server", &d.api, "--state-dir"])
        .arg(dir.path().join("no-local-state"))
        .args([
            "--token",
            std::fs::read_to_string(d.state_dir.join("admin.token"))
                .unwrap()
                .trim(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    d.stop();
    let text = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.last().unwrap().starts_with("{\"checkpoint\""),
        "{text}"
    );

    let check = |file: &Path, state: &Path| {
        let (code, report) = verify(state, &["--file", file.to_str().unwrap()]);
        (code, report)
    };
    // With the key (the state folder's) the closing signature is checked; without, the hashes.
    let (code, report) = check(&export, &d.state_dir);
    assert_eq!(
        (code, report["signature"].as_str()),
        (0, Some("valid")),
        "{report}"
    );
    let (code, report) = check(&export, &dir.path().join("no-local-state"));
    assert_eq!(
        (code, report["signature"].as_str()),
        (0, Some("unchecked")),
        "{report}"
    );

    let edited = dir.path().join("edited.jsonl");
    std::fs::write(&edited, text.replacen("token:admin", "token:mallory", 1)).unwrap();
    let (code, report) = check(&edited, &d.state_dir);
    assert_eq!(code, 1, "{report}");

    let cut = dir.path().join("cut.jsonl");
    let mut kept: Vec<&str> = lines[..lines.len() - 2].to_vec();
    kept.push(lines[lines.len() - 1]);
    std::fs::write(&cut, kept.join("\n")).unwrap();
    let (code, report) = check(&cut, &d.state_dir);
    assert_eq!(code, 1, "{report}");
    assert!(reason(&report).contains("removed or changed"), "{report}");

    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "{\"seq\": 1,\n").unwrap();
    let out = offline(
        &d.state_dir,
        &["audit", "verify", "--file", garbage.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("garbage.jsonl:1:"));
}

#[test]
fn tampering_while_the_daemon_runs_is_noticed_by_its_checks() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = backstop_testkit::free_port();
    let mut d = Daemon::start(
        &dir.path().join("state"),
        &shop_config(proxy, "[{weight: 100}]"),
        proxy,
    );
    d.register("v1", 0.0);
    let chain_ok = |d: &Daemon| {
        backstop_testkit::http_get(d.api_port(), "/metrics")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("backstop_audit_chain_ok ")
                    .map(str::to_string)
            })
    };
    assert_eq!(chain_ok(&d).as_deref(), Some("1"));
    // Someone with the database file rewrites a record and recomputes every hash after it.
    rewrite_with_recomputed_hashes(&d.state_dir, 2);
    d.wait_until("the daemon's check finds the rewrite", || {
        chain_ok(&d).as_deref() == Some("0")
    });
    assert!(d.log().contains("The audit chain is broken"));
    let (code, report) = {
        let out = d.cli(&["audit", "verify", "-o", "json"]);
        (
            out.status.code().unwrap(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        )
    };
    assert_eq!(code, 1, "{report}");
    d.stop();
}
