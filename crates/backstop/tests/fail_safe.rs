//! Fail safe when the store fails: with the state folder's disk full, no verdict could be
//! written, so a canary with 30 % errors used to keep 30 % of traffic for as long as the disk
//! stayed full, while `/healthz` said ok. Now the canary is taken out of traffic, `/healthz`
//! says why, and once the disk has room again the daemon records the outage and carries on.
//!
//! The disk is real: the state folder is a small tmpfs that the test fills (mounting needs
//! root, as CI and this project's dev machines run; the test says so if it cannot).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use backstop_testkit::{Daemon, Traffic, free_port, http_get, shop_config};

/// A tmpfs mounted on a folder of the test's own, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test fills a real disk: it mounts a tmpfs, which needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the disk is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

fn api_port(d: &Daemon) -> u16 {
    d.api.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn a_full_disk_takes_the_canary_out_of_traffic_and_the_daemon_carries_on_after() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Room for the state and one backed-up copy of the artifact (this test's backstop binary).
    let artifact_mb = std::fs::metadata(backstop_testkit::backstop_bin())
        .unwrap()
        .len()
        / (1 << 20);
    let _disk = Tmpfs::mount(&state, &format!("{}m", artifact_mb + 64));
    let proxy = free_port();
    let d = Daemon::start(
        &state,
        &shop_config(proxy, "[{weight: 30, for: 10m}, {weight: 100}]"),
        proxy,
    );
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    d.register("v2", 0.3);
    let id = d.rollout_progressing("v2");

    // The disk fills before users reach the canary: no verdict can be written.
    let filler = state.join("filler");
    fill(&filler);
    let traffic = Traffic::start(proxy, 40.0);
    d.wait_until("/healthz reports the store failing", || {
        http_get(api_port(&d), "/healthz").is_some_and(|a| a.starts_with("HTTP/1.1 503"))
    });
    let health = http_get(api_port(&d), "/healthz").unwrap();
    assert!(health.contains("the store refuses writes"), "{health}");
    // All traffic is on v1 now.
    for _ in 0..30 {
        let answer = http_get(proxy, "/").unwrap();
        assert!(answer.contains("x-backstop-version: v1"), "{answer}");
    }
    let metrics = http_get(api_port(&d), "/metrics").unwrap();
    assert!(metrics.contains("backstop_store_writable 0"), "{metrics}");

    // Room again: the outage is recorded and the rollout carries on to its verdict.
    std::fs::remove_file(&filler).unwrap();
    let done = d.wait_rollout(&id, "the bad canary is rolled back", |r| {
        r["rollout"]["phase"] == "recovered"
    });
    traffic.stop();
    assert_eq!(done["rollout"]["to_release_id"], "shop@v2");
    let audit = d.cli_json(&["audit", "list"], 0);
    let outage = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "store.write_failed")
        .unwrap_or_else(|| panic!("the outage is recorded: {audit:#}"));
    assert_eq!(
        outage["evidence"]["canaries_withdrawn"],
        serde_json::json!(["shop/prod"]),
        "{outage:#}"
    );
    assert!(
        http_get(api_port(&d), "/healthz")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
}
