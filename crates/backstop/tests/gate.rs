//! The promotion gate, freezes and artifact backups, through the CLI and a real daemon: a
//! refusal for each reason (with its text, and nothing changed), overrides that need a reason
//! and are audited, the automatic freeze during a recovery, and a rollback that runs the
//! verified backup after the original artifact was deleted.

use std::path::{Path, PathBuf};
use std::process::Output;

use backstop_testkit::{DEMO_APP_RUN, Daemon, backstop_bin, free_port, item_with};
use serde_json::Value;

fn text(out: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the CLI, asserts the exit code, returns stdout + stderr.
fn run(d: &Daemon, args: &[&str], code: i32) -> String {
    let out = d.cli(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "backstop {args:?}\n{}\ndaemon log:\n{}",
        text(&out),
        d.log()
    );
    text(&out)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    item_with(&report["checks"], "name", name)
}

/// The reason check `name` of a gate report gives.
fn reason<'a>(report: &'a Value, name: &str) -> &'a str {
    check(report, name)["reason"].as_str().unwrap()
}

fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn gate(d: &Daemon, service: &str, env: &str, version: &str, extra: &[&str], code: i32) -> Value {
    let mut args = vec!["gate", service, "--env", env, "--release", version];
    args.extend(extra);
    d.cli_json(&args, code)
}

fn audit_list(d: &Daemon) -> Value {
    d.cli_json(&["audit", "list"], 0)
}

fn rollout_count(d: &Daemon) -> usize {
    d.cli_json(&["rollout", "list"], 0)
        .as_array()
        .unwrap()
        .len()
}

fn blob_path(state: &Path, digest: &str) -> PathBuf {
    state
        .join("blobs")
        .join("sha256")
        .join(&digest[..2])
        .join(&digest[2..])
}

/// Replaces a stored object's bytes (objects are read-only: 0555).
fn overwrite(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn register_command(d: &Daemon, service: &str, version: &str, command: &str) -> String {
    let r = d.cli_json(
        &[
            "release",
            "create",
            service,
            "--version",
            version,
            "--command",
            command,
        ],
        0,
    );
    r["sha256"].as_str().unwrap().to_string()
}

fn start(d: &Daemon, service: &str, env: &str, version: &str, extra: &[&str], code: i32) -> String {
    let mut args = vec![
        "rollout",
        "start",
        service,
        "--env",
        env,
        "--version",
        version,
    ];
    args.extend(extra);
    run(d, &args, code)
}

#[test]
fn the_gate_refuses_for_each_reason_and_overrides_are_reasoned_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let hook_go = dir.path().join("hook-go");
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let bin = backstop_bin();
    let bin = bin.to_str().unwrap();
    let config = format!(
        r#"defaults:
  breaker: {{trips_after: 1, within: 30m}}
services:
  - name: shop
    owner: team-test
    tier: 1
{DEMO_APP_RUN}    rollout:
      strategy: canary
      steps: [{{weight: 50, for: 1h}}, {{weight: 100}}]
    analysis:
      interval: 1s
    hooks:
      before_rollback: "while [ ! -f {hook} ]; do sleep 0.1; done"
      timeout: 5m
    environments:
      - name: prod
        listen: 127.0.0.1:{p1}
      - name: vault
        listen: 127.0.0.1:{p2}
        regulated: true
        freeze:
          - {{from: 2020-01-01T00:00:00Z, until: 2999-01-01T00:00:00Z, reason: audit season}}
  - name: cart
    owner: team-test
    tier: 2
    run:
      command: "{{artifact}} demo-app --port {{port}} --version {{version}}"
      health: {{http: /healthz, start_timeout: 20s}}
    environments:
      - name: prod
        listen: 127.0.0.1:{p3}
"#,
        hook = hook_go.display()
    );
    let d = Daemon::start(&state, &config, p1);
    let v1 = register_command(&d, "shop", "v1", bin);
    let v2 = register_command(&d, "shop", "v2", &format!("env REL=2 {bin}"));
    let v3 = register_command(&d, "shop", "v3", &format!("env REL=3 {bin}"));
    register_command(&d, "shop", "v4", "false");
    register_command(&d, "shop", "v5", &format!("env REL=5 {bin}"));
    register_command(&d, "cart", "c1", bin);
    assert_ne!(v1, v2);
    assert!(blob_path(&state, &v1).exists(), "the command is backed up");

    // First deployment: go, with a note that there is no last known good yet.
    let go = gate(&d, "shop", "prod", "v1", &[], 0);
    assert_eq!(go["go"], true, "{go:#}");
    assert!(
        reason(&go, "lkg_backup").contains("first deployment"),
        "{go:#}"
    );
    // Bad input is exit 2, not "blocked".
    run(
        &d,
        &["gate", "shop", "--env", "prod", "--release", "nope"],
        2,
    );
    run(&d, &["gate", "shop", "--env", "moon", "--release", "v1"], 2);

    start(&d, "shop", "prod", "v1", &["--wait"], 0);

    // An active rollout blocks another one in the same environment.
    let v2_id = d.rollout_progressing("v2");
    let before = rollout_count(&d);
    let refused = start(&d, "shop", "prod", "v3", &[], 1);
    assert!(refused.contains("active_rollout:"), "{refused}");
    assert!(refused.contains("is still progressing"), "{refused}");
    assert_eq!(rollout_count(&d), before, "a refused start changes nothing");

    // A manual freeze blocks the promotion; an override with a reason passes and is audited.
    let frz = d.cli_json(
        &[
            "freeze",
            "start",
            "--env",
            "prod",
            "--service",
            "shop",
            "--reason",
            "incident review",
            "--for",
            "2h",
        ],
        0,
    );
    let frz_id = frz["id"].as_str().unwrap().to_string();
    let refused = run(
        &d,
        &["rollout", "promote", &v2_id, "--reason", "looks good"],
        1,
    );
    assert!(refused.contains("freeze:"), "{refused}");
    assert!(refused.contains("incident review"), "{refused}");
    assert!(refused.contains(&frz_id), "{refused}");
    assert_eq!(d.rollout(&v2_id)["rollout"]["phase"], "progressing");
    // An override without a reason is bad input.
    start(&d, "shop", "prod", "v3", &["--override-freeze"], 2);
    let promoted = d.cli_json(
        &[
            "rollout",
            "promote",
            &v2_id,
            "--reason",
            "hotfix approved by CAB",
            "--override-freeze",
        ],
        0,
    );
    assert_eq!(promoted["phase"], "promoted", "{promoted:#}");
    let audit = audit_list(&d);
    let overridden = item_with(&audit, "action", "freeze.overridden");
    assert_eq!(overridden["target"], format!("rollout/{v2_id}"));
    assert_eq!(overridden["evidence"]["reason"], "hotfix approved by CAB");
    item_with(&audit, "action", "freeze.started"); // the freeze's start is audited too

    // The freeze also blocks the gate, listed with every other reason: a corrupt backup of the
    // last known good and of the candidate, each naming its digest.
    overwrite(&blob_path(&state, &v2), b"rotten");
    overwrite(&blob_path(&state, &v3), b"tampered");
    let blocked = gate(&d, "shop", "prod", "v3", &[], 1);
    assert_eq!(blocked["go"], false);
    assert_eq!(
        failed(&blocked),
        ["lkg_backup", "candidate_backup", "freeze"],
        "{blocked:#}"
    );
    let lkg = reason(&blocked, "lkg_backup");
    assert!(
        lkg.contains(&format!("sha256:{v2}")) && lkg.contains("corrupt"),
        "{lkg}"
    );
    let cand = reason(&blocked, "candidate_backup");
    assert!(cand.contains(&format!("sha256:{v3}")), "{cand}");
    let text_out = run(&d, &["gate", "shop", "--env", "prod", "--release", "v3"], 1);
    assert!(
        text_out.contains("BLOCKED") && text_out.contains("FAIL lkg_backup"),
        "{text_out}"
    );
    // Repair the backups (the genuine bytes), end the freeze: go.
    overwrite(
        &blob_path(&state, &v2),
        format!("env REL=2 {bin}").as_bytes(),
    );
    overwrite(
        &blob_path(&state, &v3),
        format!("env REL=3 {bin}").as_bytes(),
    );
    let ended = d.cli_json(&["freeze", "end", &frz_id, "--reason", "review done"], 0);
    assert_eq!(ended["ended_by"], "token:admin", "{ended:#}");
    run(&d, &["freeze", "end", &frz_id], 2);
    assert_eq!(gate(&d, "shop", "prod", "v3", &[], 0)["go"], true);

    // Automatic freeze: while shop's recovery runs in prod, cart cannot deploy there unless the
    // change is critical (and says why).
    let v3_id = d.rollout_progressing("v3");
    let mut abort = std::process::Command::new(backstop_bin())
        .args(["rollout", "abort", &v3_id, "--reason", "wrong build"])
        .args(["--server", &d.api, "--state-dir"])
        .arg(&state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    d.wait_until("the recovery is running (held by its hook)", || {
        d.cli_json(&["recovery", "list"], 0)
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "running")
    });
    let blocked = gate(&d, "cart", "prod", "c1", &[], 1);
    assert_eq!(failed(&blocked), ["recovery"], "{blocked:#}");
    assert!(
        reason(&blocked, "recovery").contains("non-critical rollouts there are frozen"),
        "{blocked:#}"
    );
    let before = rollout_count(&d);
    let refused = start(&d, "cart", "prod", "c1", &[], 1);
    assert!(refused.contains("recovery:"), "{refused}");
    assert_eq!(rollout_count(&d), before);
    start(
        &d,
        "cart",
        "prod",
        "c1",
        &["--critical", "--reason", "fix-forward for INC-7"],
        0,
    );
    let audit = audit_list(&d);
    let bypass = item_with(&audit, "action", "recovery_freeze.bypassed");
    assert_eq!(bypass["evidence"]["reason"], "fix-forward for INC-7");
    std::fs::write(&hook_go, b"go").unwrap();
    assert!(abort.wait().unwrap().success());
    d.wait_phase(&v3_id, "recovered", "rolled back");

    // A rolled-back release is refused.
    let bad = gate(&d, "shop", "prod", "v3", &[], 1);
    assert_eq!(failed(&bad), ["release"], "{bad:#}");
    assert!(
        reason(&bad, "release").contains("was rolled back"),
        "{bad:#}"
    );

    // A release that cannot start fails its deployment, which trips the breaker for prod
    // (trips_after: 1): the gate refuses until it is reset.
    let v4_id = d.rollout_start("v4");
    d.wait_phase(&v4_id, "recovered", "deployment failure rolled back");
    let before = rollout_count(&d);
    let refused = start(&d, "shop", "prod", "v5", &[], 1);
    assert!(
        refused.contains("breaker: circuit breaker open for env:prod"),
        "{refused}"
    );
    assert_eq!(rollout_count(&d), before);

    // Regulated environment: the scheduled freeze cannot be overridden by one person. The
    // refused start becomes a request that a second person approves; it then runs.
    let vault = gate(&d, "shop", "vault", "v1", &[], 1);
    assert_eq!(failed(&vault), ["freeze"], "{vault:#}");
    assert!(
        reason(&vault, "freeze").contains("audit season"),
        "{vault:#}"
    );
    let urgent = ["--override-freeze", "--reason", "urgent"];
    let vault = gate(&d, "shop", "vault", "v1", &urgent, 1);
    assert!(
        reason(&vault, "freeze").contains("the override waits: vault is regulated"),
        "{vault:#}"
    );
    let in_vault = |d: &Daemon| {
        d.cli_json(&["rollout", "list"], 0)
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["env"] == "vault")
            .count()
    };
    let refused = start(&d, "shop", "vault", "v1", &urgent, 1);
    assert!(
        refused.contains("needs a second person's approval"),
        "{refused}"
    );
    assert_eq!(in_vault(&d), 0);
    let waiting = d.cli_json(&["approvals"], 0);
    let request = item_with(&waiting, "kind", "rollout.start");
    assert_eq!(request["requester"], "token:admin");
    assert_eq!(request["status"], "pending");
    let id = request["id"].as_str().unwrap().to_string();
    // Never the requester's own token; never a role too low there.
    let own = run(&d, &["approve", &id], 2);
    assert!(own.contains("never the requester's own token"), "{own}");
    let token = |name: &str, role: &str, env: &str| {
        d.cli_json(
            &[
                "token", "create", "--name", name, "--role", role, "--env", env,
            ],
            0,
        )["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let carol = token("carol", "deployer", "prod");
    let low = run(&d, &["approve", &id, "--token", &carol], 2);
    assert!(low.contains("deployer in environment vault"), "{low}");
    let bob = token("bob", "deployer", "vault");
    let approved = d.cli_json(&["approve", &id, "--note", "checked", "--token", &bob], 0);
    assert_eq!(approved["status"], "approved", "{approved:#}");
    assert_eq!(approved["decided_by"], "token:bob");
    assert_eq!(in_vault(&d), 1);
    let again = run(&d, &["approve", &id, "--token", &bob], 2);
    assert!(again.contains("is approved"), "{again}");
    let audit = audit_list(&d);
    assert_eq!(
        item_with(&audit, "action", "approval.requested")["actor"],
        "token:admin"
    );
    let granted = item_with(&audit, "action", "approval.granted");
    assert_eq!(granted["actor"], "token:bob");
    assert_eq!(granted["evidence"]["requester"], "token:admin");
    let overridden = item_with(&audit, "action", "freeze.overridden");
    assert_eq!(overridden["actor"], "token:admin");
    let list = d.cli_json(&["freeze", "list"], 0);
    let scheduled = list["scheduled"].as_array().unwrap();
    assert_eq!(scheduled.len(), 1, "{list:#}");
    assert_eq!(scheduled[0]["in_effect"], true);
    assert_eq!(scheduled[0]["env"], "vault");
    assert!(list["manual"].as_array().unwrap().is_empty(), "{list:#}");
    d.assert_audit_verifies();
}

/// A release artifact: a script that records where it was run from, then runs the sample service.
fn script(dir: &Path, version: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("build-{version}.sh"));
    let log = dir.join("ran.log");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n# release {version}\necho \"{version} $0\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            backstop_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn register_file(d: &Daemon, version: &str, file: &Path) -> String {
    let r = d.register_file(version, file, &[]);
    r["sha256"].as_str().unwrap().to_string()
}

#[test]
fn a_rollback_runs_the_verified_backup_and_refuses_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_shop(dir.path(), "[{weight: 100}]");
    let state = d.state_dir.clone();
    let v1_file = script(dir.path(), "v1");
    let v1 = register_file(&d, "v1", &v1_file);
    register_file(&d, "v2", &script(dir.path(), "v2"));
    register_file(&d, "v3", &script(dir.path(), "v3"));
    start(&d, "shop", "prod", "v1", &["--wait"], 0);
    start(&d, "shop", "prod", "v2", &["--wait"], 0);
    d.wait_until("v1 scaled down", || {
        backstop_testkit::instance_pids(&state).len() == 1
    });

    // The build folder is cleaned: the rollback still brings v1 back, from its backup.
    std::fs::remove_file(&v1_file).unwrap();
    let rec = d.rollback("v2 is slow", 0);
    assert_eq!(rec["status"], "done", "{rec:#}");
    let ran = std::fs::read_to_string(dir.path().join("ran.log")).unwrap();
    let last = ran.lines().last().unwrap();
    let stored = blob_path(&state, &v1);
    assert_eq!(
        last,
        format!("v1 {}", stored.display()),
        "v1 ran from its verified backup:\n{ran}"
    );
    let services = d.cli_json(&["release", "show", "shop@v1"], 0);
    assert_eq!(services["sha256"], v1.as_str());

    // v3 goes out; then v1's backup rots. Rolling back to it is refused loudly, naming the
    // digest, and audited; traffic stays on v3.
    start(&d, "shop", "prod", "v3", &["--wait"], 0);
    d.wait_until("v1 scaled down again", || {
        backstop_testkit::instance_pids(&state).len() == 1
    });
    overwrite(&stored, b"#!/bin/sh\necho pwned\n");
    let rec = d.rollback("v3 is slow", 1);
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let step = item_with(&rec["steps"], "status", "failed");
    let error = step["outcome"]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("sha256:{v1}")) && error.contains("corrupt"),
        "{error}"
    );
    let audit = audit_list(&d);
    let failed = item_with(&audit, "action", "recovery.failed");
    assert!(
        failed["evidence"]["error"]
            .as_str()
            .unwrap()
            .contains(&format!("sha256:{v1}"))
    );
    assert!(
        !std::fs::read_to_string(dir.path().join("ran.log"))
            .unwrap()
            .contains("pwned"),
        "the corrupt backup never ran"
    );
    let shop = d.cli_json(&["release", "show", "shop@v3"], 0);
    assert_eq!(shop["status"], "ok");
}
