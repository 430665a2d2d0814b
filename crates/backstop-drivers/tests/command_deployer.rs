//! Command deployer against real `sh` scripts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use backstop_drivers::command::{
    ACTION_VAR, ARTIFACT_VAR, ATTEMPT_VAR, Action, CommandDeployer, CommandError, CommandOutcome,
    IDEMPOTENCY_KEY_VAR, VERSION_VAR,
};

// Timeouts leave a loaded CI machine ample time to start `sh` and install traps before the
// deadline; nothing asserts how fast anything runs.
fn deployer(deploy: &str) -> CommandDeployer {
    CommandDeployer {
        deploy: deploy.to_owned(),
        stop: "true".to_owned(),
        health: None,
        timeout: Duration::from_secs(20),
        retries: 0,
        output_cap: 64 * 1024,
        grace: Duration::from_secs(2),
        retry_delay: Duration::from_millis(10),
    }
}

fn vars(dir: &Path) -> BTreeMap<String, String> {
    BTreeMap::from([
        (VERSION_VAR.to_owned(), "v1.5.0".to_owned()),
        (
            ARTIFACT_VAR.to_owned(),
            "registry.example/checkout:1.5.0".to_owned(),
        ),
        (IDEMPOTENCY_KEY_VAR.to_owned(), "rec-7/step-2".to_owned()),
        ("WORKDIR".to_owned(), dir.display().to_string()),
    ])
}

/// True iff `pid` is a live (non-zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("X");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// The last attempt of a command that failed by timing out.
fn timed_out(err: &CommandError) -> &CommandOutcome {
    let CommandError::Failed {
        timed_out, outcome, ..
    } = err
    else {
        panic!("expected Failed, got {err}");
    };
    assert!(timed_out, "{err}");
    outcome
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn success_captures_output_and_passes_env() {
    let dir = tempfile::tempdir().unwrap();
    let d = deployer(
        r#"echo "deploying $BACKSTOP_VERSION from $BACKSTOP_ARTIFACT key=$BACKSTOP_IDEMPOTENCY_KEY action=$BACKSTOP_ACTION attempt=$BACKSTOP_ATTEMPT"; echo warn >&2; test -d "$WORKDIR""#,
    );
    let out = d.deploy(&vars(dir.path())).await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.attempts, 1);
    assert_eq!(
        out.stdout,
        "deploying v1.5.0 from registry.example/checkout:1.5.0 key=rec-7/step-2 action=deploy attempt=1\n"
    );
    assert_eq!(out.stderr, "warn\n");
}

#[tokio::test]
async fn stop_and_health_run_their_own_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = deployer("exit 9");
    d.stop = format!("echo \"${ACTION_VAR} ${VERSION_VAR} ${ATTEMPT_VAR}\"");
    let out = d.stop(&vars(dir.path())).await.unwrap();
    assert_eq!(out.stdout, "stop v1.5.0 1\n");

    let err = d.health(&vars(dir.path())).await.unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::NotConfigured {
                action: Action::Health
            }
        ),
        "{err}"
    );
    d.health = Some("echo $BACKSTOP_ACTION; exit 0".to_owned());
    let out = d.health(&vars(dir.path())).await.unwrap();
    assert_eq!(out.stdout, "health\n");
}

#[tokio::test]
async fn nonzero_exit_is_retried_then_fails_with_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = deployer(
        r#"echo "attempt $BACKSTOP_ATTEMPT" >> "$WORKDIR/attempts"; echo "disk full on attempt $BACKSTOP_ATTEMPT" >&2; exit 3"#,
    );
    d.retries = 2;
    let err = d.deploy(&vars(dir.path())).await.unwrap_err();
    let CommandError::Failed {
        action,
        timed_out,
        outcome,
        ..
    } = &err
    else {
        panic!("expected Failed, got {err}");
    };
    assert_eq!(*action, Action::Deploy);
    assert!(!timed_out);
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.exit_code, 3);
    assert_eq!(outcome.stderr, "disk full on attempt 3\n");
    let attempts = std::fs::read_to_string(dir.path().join("attempts")).unwrap();
    assert_eq!(attempts, "attempt 1\nattempt 2\nattempt 3\n");
    let msg = err.to_string();
    assert!(msg.contains("deploy command"), "{msg}");
    assert!(msg.contains("exited with code 3"), "{msg}");
    assert!(msg.contains("disk full on attempt 3"), "{msg}");
}

#[tokio::test]
async fn a_retry_that_succeeds_reports_its_attempts_and_reuses_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // Fails until the marker exists; the key written on each attempt must be the same.
    let mut d = deployer(
        r#"echo "$BACKSTOP_IDEMPOTENCY_KEY" >> "$WORKDIR/keys"
if [ -e "$WORKDIR/done" ]; then echo ok; exit 0; fi
touch "$WORKDIR/done"; exit 1"#,
    );
    d.retries = 3;
    let out = d.deploy(&vars(dir.path())).await.unwrap();
    assert_eq!(out.attempts, 2);
    assert_eq!(out.stdout, "ok\n");
    let keys = std::fs::read_to_string(dir.path().join("keys")).unwrap();
    assert_eq!(keys, "rec-7/step-2\nrec-7/step-2\n");
}

#[tokio::test]
async fn timeout_kills_the_whole_group_including_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let mut d =
        deployer(r#"( sleep 300 & echo $! > "$WORKDIR/grandchild.pid"; wait ); echo never"#);
    d.timeout = Duration::from_secs(2);
    let err = d.deploy(&vars(dir.path())).await.unwrap_err();
    let outcome = timed_out(&err);
    assert_eq!(outcome.exit_code, 128 + 15, "killed by SIGTERM");
    assert!(!outcome.stdout.contains("never"));
    assert!(err.to_string().contains("timed out"), "{err}");
    let grandchild = read_pid(&pidfile);
    assert!(!alive(grandchild), "grandchild {grandchild} survived");
}

#[tokio::test]
async fn on_timeout_the_whole_group_gets_sigterm_first() {
    let dir = tempfile::tempdir().unwrap();
    // A subshell (grandchild of the deployer) that records SIGTERM; `wait` lets its trap run.
    let mut d = deployer(
        r#"( trap 'echo got-term > "$WORKDIR/term"; exit 0' TERM; sleep 300 & wait ); sleep 300"#,
    );
    d.timeout = Duration::from_secs(2);
    d.grace = Duration::from_secs(3);
    let err = d.deploy(&vars(dir.path())).await.unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::Failed {
                timed_out: true,
                ..
            }
        ),
        "{err}"
    );
    let term = std::fs::read_to_string(dir.path().join("term")).unwrap_or_default();
    assert_eq!(term, "got-term\n", "the grandchild was not sent SIGTERM");
}

#[tokio::test]
async fn sigterm_ignored_then_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = deployer(
        r#"trap '' TERM; sleep 300 & echo $! > "$WORKDIR/sleeper.pid"; while :; do sleep 1; done"#,
    );
    d.timeout = Duration::from_secs(2);
    d.grace = Duration::from_millis(300);
    d.retries = 1;
    let err = d.deploy(&vars(dir.path())).await.unwrap_err();
    let outcome = timed_out(&err);
    assert_eq!(outcome.attempts, 2);
    assert_eq!(outcome.exit_code, 128 + 9, "killed by SIGKILL");
    assert!(!alive(read_pid(&dir.path().join("sleeper.pid"))));
}

#[tokio::test]
async fn output_is_capped_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = deployer(
        r#"printf 'BEGIN'; i=0; while [ $i -lt 2000 ]; do printf '0123456789'; i=$((i+1)); done; printf 'END'"#,
    );
    d.output_cap = 100;
    let out = d.deploy(&vars(dir.path())).await.unwrap();
    // 5 + 20000 + 3 bytes written, 100 kept.
    assert!(out.stdout.starts_with("BEGIN"), "{}", out.stdout);
    assert!(out.stdout.ends_with("END"), "{}", out.stdout);
    assert!(out.stdout.contains("… 19908 bytes cut …"), "{}", out.stdout);
    assert!(out.stdout.len() < 200, "{}", out.stdout.len());
}

#[tokio::test]
async fn background_process_does_not_hold_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // The daemon keeps stdout open; the run still ends (after the drain window) and succeeds.
    let d = deployer(r#"sleep 300 & echo $! > "$WORKDIR/daemon.pid"; echo started"#);
    let out = d.deploy(&vars(dir.path())).await.unwrap();
    assert_eq!(out.stdout, "started\n");
    let daemon = read_pid(&dir.path().join("daemon.pid"));
    assert!(alive(daemon), "a daemon started by deploy keeps running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

#[tokio::test]
async fn dropping_the_future_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let d = deployer(r#"sleep 300 & echo $! > "$WORKDIR/child.pid"; wait"#);
    let v = vars(dir.path());
    let mut run = Box::pin(d.deploy(&v));
    // Poll until the script has written its child's pid, then drop the future.
    let pid = loop {
        tokio::select! {
            r = &mut run => panic!("deploy ended early: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if let Ok(s) = std::fs::read_to_string(&pidfile)
            && let Ok(pid) = s.trim().parse::<i32>()
        {
            break pid;
        }
    };
    assert!(alive(pid));
    drop(run);
    let mut gone = false;
    for _ in 0..250 {
        if !alive(pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "child {pid} survived the dropped deploy");
}

#[tokio::test]
async fn missing_script_and_bad_vars_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = deployer("   ");
    let err = d.deploy(&vars(dir.path())).await.unwrap_err();
    assert!(matches!(err, CommandError::NotConfigured { .. }), "{err}");

    let d = deployer("true");
    let mut bad = vars(dir.path());
    bad.insert("A=B".to_owned(), "x".to_owned());
    let err = d.deploy(&bad).await.unwrap_err();
    assert!(err.to_string().contains("\"A=B\""), "{err}");

    // A command not found is an ordinary nonzero exit (127) with sh's message.
    let d = deployer("definitely-not-a-command-backstop");
    let err = d.deploy(&vars(dir.path())).await.unwrap_err();
    let CommandError::Failed { outcome, .. } = &err else {
        panic!("expected Failed, got {err}");
    };
    assert_eq!(outcome.exit_code, 127);
    assert!(outcome.stderr.contains("not found"), "{}", outcome.stderr);
}
