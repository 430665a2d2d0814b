//! Secrets and the state folder's files: a release's secret given by reference reaches its
//! instance and nothing else (not the API, the audit, the log, the database); the state folder
//! and what holds secrets in it are their owner's only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use backstop_testkit::{Daemon, free_port, instance_pids, shop_config};

const VALUE: &str = "s3cr3t-Zq81-value";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_secret_by_reference_reaches_the_instance_only_and_the_state_folder_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let secret_file = dir.path().join("api-key");
    std::fs::write(&secret_file, "file-held-Kx7\n").unwrap();
    let mut d = Daemon::start_with_env(
        &dir.path().join("state"),
        &shop_config(proxy, "[{weight: 100}]"),
        proxy,
        &[("SHOP_DB_PASSWORD", VALUE)],
    );
    let file_ref = format!("API_KEY=file:{}", secret_file.display());
    let made = d.register_with(
        "v1",
        &[
            "--env",
            "DEMO_ERROR_RATIO=0",
            "--secret",
            "DB_PASSWORD=env:SHOP_DB_PASSWORD",
            "--secret",
            &file_ref,
        ],
    );
    assert_eq!(
        made["secrets"]["DB_PASSWORD"]["env"], "SHOP_DB_PASSWORD",
        "{made}"
    );
    d.rollout_wait("v1", 0);

    // The instance has the values.
    let pids = instance_pids(&d.state_dir);
    assert!(!pids.is_empty());
    let environ = std::fs::read(format!("/proc/{}/environ", pids[0])).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains(&format!("DB_PASSWORD={VALUE}")),
        "{environ}"
    );
    assert!(environ.contains("API_KEY=file-held-Kx7"), "{environ}");

    // Nothing else does.
    let releases = d.api_get("/api/v1/releases").to_string();
    assert!(
        !releases.contains(VALUE) && !releases.contains("file-held"),
        "{releases}"
    );
    let audit = d.cli_json(&["audit", "list"], 0).to_string();
    assert!(!audit.contains(VALUE) && !audit.contains("file-held"));
    assert!(
        audit.contains("SHOP_DB_PASSWORD"),
        "the reference is audited"
    );
    assert!(!d.log().contains(VALUE));
    for name in ["backstop.db", "backstop.db-wal"] {
        let path = d.state_dir.join(name);
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
                "{name} holds the value"
            );
        }
    }

    // A reference that does not resolve on the daemon is refused, naming it; nothing is made.
    let out = d.cli(&[
        "release",
        "create",
        "shop",
        "--version",
        "v2",
        "--command",
        "true",
        "--secret",
        "DB_PASSWORD=env:NOT_SET_ANYWHERE",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/secrets/DB_PASSWORD") && err.contains("NOT_SET_ANYWHERE"),
        "{err}"
    );
    let out = d.cli(&[
        "release",
        "create",
        "shop",
        "--version",
        "v2",
        "--command",
        "true",
        "--secret",
        "DB_PASSWORD=file:relative/path",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--secret"));
    assert_eq!(d.api_get("/api/v1/releases").as_array().unwrap().len(), 1);

    // The state folder and what holds secrets in it are the owner's only.
    let state = d.state_dir.clone();
    assert_eq!(mode(&state), 0o700);
    for file in [
        "backstop.db",
        "backstop.db-wal",
        "backstop.db-shm",
        "admin.token",
        "admin.token.sha256",
        "audit.key",
    ] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&state.join("logs")), 0o700);
    for log in std::fs::read_dir(state.join("logs")).unwrap() {
        let log = log.unwrap().path();
        assert_eq!(mode(&log), 0o600, "{}", log.display());
    }

    // A folder an older version left open is closed at the next start.
    d.stop();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        state.join("backstop.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    d.restart();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("backstop.db")), 0o600);
    d.stop();
}
