//! The process deployer with real processes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use backstop_drivers::process::{
    self, DeployError, INSTANCE_ENV, Instance, InstanceSpec, free_port,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `200 ok` on every request (the "instance" under test does not listen itself; this
/// stands in for its HTTP server so the test only depends on `sh` and `sleep`).
async fn health_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    port
}

fn spec(id: &str, command: &str, port: u16, dir: &Path) -> InstanceSpec {
    InstanceSpec {
        instance_id: id.to_owned(),
        command: command.to_owned(),
        port,
        env: BTreeMap::new(),
        health_path: "/healthz".to_owned(),
        health_timeout: Duration::from_millis(500),
        health_interval: Duration::from_millis(50),
        start_timeout: Duration::from_secs(10),
        log_path: dir.join("logs").join(format!("{id}.log")),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Live (non-zombie) processes whose environment carries this instance's marker.
fn marked_processes(instance_id: &str) -> Vec<i32> {
    let want = format!("{INSTANCE_ENV}={instance_id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rfind(')')
                .is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z'));
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            !zombie && env.split(|b| *b == 0).any(|e| e == want.as_bytes())
        })
        .collect()
}

/// The health answer comes from the test's own server, so the shell may not have forked its
/// children yet when `start` returns: wait for them.
async fn eventually_count(instance_id: &str, n: usize) -> Vec<i32> {
    for _ in 0..250 {
        let procs = marked_processes(instance_id);
        if procs.len() == n {
            return procs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    marked_processes(instance_id)
}

async fn eventually_none(instance_id: &str) -> Vec<i32> {
    for _ in 0..100 {
        let left = marked_processes(instance_id);
        if left.is_empty() {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    marked_processes(instance_id)
}

#[tokio::test]
async fn start_waits_for_health_and_stop_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let port = health_server().await;
    let id = unique("grp");
    let mut s = spec(
        &id,
        "echo \"booted $GREETING $BACKSTOP_INSTANCE_ID\"; sleep 1000 & exec sleep 1001",
        port,
        dir.path(),
    );
    s.env.insert("GREETING".into(), "hello".into());
    let inst = process::start(&s).await.expect("instance starts");
    assert_eq!(inst.instance_id, id);
    assert_eq!(inst.port, port);
    assert!(process::is_running(&inst));
    // The shell became `sleep 1001`; its background `sleep 1000` is a grandchild in the group.
    let procs = eventually_count(&id, 2).await;
    assert_eq!(procs.len(), 2, "expected two processes, got {procs:?}");
    let log = std::fs::read_to_string(&s.log_path).unwrap();
    assert!(log.contains(&format!("booted hello {id}")), "{log}");
    assert!(
        log.starts_with(&format!("--- backstop: starting instance {id}")),
        "{log}"
    );

    process::stop(&inst, Duration::from_secs(3))
        .await
        .expect("stop");
    assert_eq!(
        eventually_none(&id).await,
        Vec::<i32>::new(),
        "orphans left behind"
    );
    assert!(!process::is_running(&inst));
    // Idempotent.
    process::stop(&inst, Duration::from_secs(1))
        .await
        .expect("second stop");

    // The record survives a JSON round trip (a restarted controller adopts from the store).
    let json = serde_json::to_string(&inst).unwrap();
    let back: Instance = serde_json::from_str(&json).unwrap();
    assert_eq!(back, inst);
}

#[tokio::test]
async fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let port = health_server().await;
    let id = unique("stubborn");
    let s = spec(
        &id,
        "trap '' TERM; sleep 1000 & sleep 1001; echo never",
        port,
        dir.path(),
    );
    let inst = process::start(&s).await.expect("instance starts");
    assert_eq!(eventually_count(&id, 3).await.len(), 3);
    let begun = std::time::Instant::now();
    process::stop(&inst, Duration::from_millis(300))
        .await
        .expect("stop");
    assert!(
        begun.elapsed() >= Duration::from_millis(300),
        "SIGKILL before the grace period ended"
    );
    assert_eq!(eventually_none(&id).await, Vec::<i32>::new());
    assert!(!process::is_running(&inst));
}

#[tokio::test]
async fn start_timeout_kills_the_group_and_reports_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap(); // nobody answers here
    let id = unique("slow");
    let mut s = spec(
        &id,
        "echo warming-up-forever; sleep 1000 & sleep 1001",
        port,
        dir.path(),
    );
    s.start_timeout = Duration::from_millis(600);
    let err = process::start(&s).await.expect_err("never healthy");
    let msg = err.to_string();
    assert!(matches!(err, DeployError::StartTimeout { .. }), "{msg}");
    assert!(msg.contains("warming-up-forever"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}/healthz")), "{msg}");
    assert_eq!(
        eventually_none(&id).await,
        Vec::<i32>::new(),
        "group not killed"
    );
}

#[tokio::test]
async fn exiting_before_healthy_is_reported_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let id = unique("crash");
    let s = spec(&id, "echo 'fatal: no config' >&2; exit 3", port, dir.path());
    let err = process::start(&s).await.expect_err("exits");
    let msg = err.to_string();
    assert!(matches!(err, DeployError::ExitedEarly { .. }), "{msg}");
    assert!(msg.contains("fatal: no config"), "{msg}");
    assert!(msg.contains("exit status: 3"), "{msg}");
}

#[tokio::test]
async fn a_foreign_or_recycled_pid_is_never_ours() {
    // A process that is alive but not started by us (no marker): not running, not signalled.
    let mut foreign = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let inst = Instance {
        instance_id: unique("ghost"),
        pid: foreign.id(),
        port: 1,
    };
    assert!(!process::is_running(&inst));
    process::stop(&inst, Duration::from_millis(100))
        .await
        .expect("stop of a foreign pid is a no-op");
    assert!(
        foreign.try_wait().unwrap().is_none(),
        "stop killed a process that is not ours"
    );
    foreign.kill().unwrap();
    foreign.wait().unwrap();

    // A marked process under another instance id is not this instance either.
    let dir = tempfile::tempdir().unwrap();
    let port = health_server().await;
    let id = unique("real");
    let real = process::start(&spec(&id, "exec sleep 1000", port, dir.path()))
        .await
        .unwrap();
    let impostor = Instance {
        instance_id: unique("other"),
        ..real.clone()
    };
    assert!(!process::is_running(&impostor));
    process::stop(&impostor, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(
        process::is_running(&real),
        "stop under another id killed it"
    );
    process::stop(&real, Duration::from_secs(2)).await.unwrap();
    assert!(!process::is_running(&real));
}

#[tokio::test]
async fn check_health_reports_status_and_refusal() {
    let port = health_server().await;
    process::check_health(port, "/healthz", Duration::from_secs(1))
        .await
        .unwrap();
    process::check_health(port, "healthz", Duration::from_secs(1))
        .await
        .unwrap();
    let closed = free_port().unwrap();
    let err = process::check_health(closed, "/healthz", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{closed}/healthz")),
        "{err}"
    );

    // A server answering 503 is unhealthy and the status is named.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port503 = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let err = process::check_health(port503, "/healthz", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn adopted_instance_log_is_capped_until_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let port = health_server().await;
    let id = unique("adopted");
    let s = spec(&id, "exec sleep 1000", port, dir.path());
    let inst = process::start(&s).await.unwrap();
    // A restarted controller only has the stored record.
    let adopted: Instance = serde_json::from_str(&serde_json::to_string(&inst).unwrap()).unwrap();
    assert!(process::is_running(&adopted));
    let big = vec![b'x'; (process::MAX_LOG_BYTES + 1) as usize];
    std::fs::write(&s.log_path, &big).unwrap();
    let watcher = process::supervise_adopted(adopted.clone(), s.log_path.clone());
    let mut rotated = dir
        .path()
        .join("logs")
        .join(format!("{id}.log"))
        .into_os_string();
    rotated.push(".1");
    for _ in 0..200 {
        if std::fs::metadata(&rotated).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        std::fs::metadata(&rotated).unwrap().len(),
        process::MAX_LOG_BYTES + 1
    );
    assert!(std::fs::metadata(&s.log_path).unwrap().len() < 1024);
    process::stop(&adopted, Duration::from_secs(2))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("watcher ends once the instance is gone")
        .unwrap();
}

#[tokio::test]
async fn abandoning_start_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap(); // never healthy
    let id = unique("abandoned");
    let s = spec(&id, "sleep 1000 & exec sleep 1001", port, dir.path());
    let res = tokio::time::timeout(Duration::from_millis(400), process::start(&s)).await;
    assert!(res.is_err(), "start should still be waiting for health");
    assert_eq!(
        eventually_none(&id).await,
        Vec::<i32>::new(),
        "orphans after a cancelled start"
    );
}

#[tokio::test]
async fn find_group_recovers_an_unrecorded_instance_and_stop_accepts_a_member_pid() {
    let dir = tempfile::tempdir().unwrap();
    let port = health_server().await;
    let id = unique("lost");
    let inst = process::start(&spec(&id, "sleep 1000 & exec sleep 1001", port, dir.path()))
        .await
        .unwrap();
    let procs = eventually_count(&id, 2).await;
    assert_eq!(procs.len(), 2);
    assert_eq!(process::find_group(&id), Some(inst.pid));
    assert_eq!(process::find_group(&unique("nobody")), None);

    // A record holding the pid of a group member that is not the leader still stops everything.
    let member = procs
        .iter()
        .copied()
        .find(|p| *p as u32 != inst.pid)
        .unwrap();
    let by_member = Instance {
        pid: member as u32,
        ..inst.clone()
    };
    process::stop(&by_member, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(eventually_none(&id).await, Vec::<i32>::new());
    assert!(!process::is_running(&inst));
    assert_eq!(process::find_group(&id), None);
}
