//! A real Alertmanager on loopback (Debian package `prometheus-alertmanager`) whose one
//! receiver is a webhook with a bearer token.

use std::path::PathBuf;
use std::process::Command;

use super::{Server, spawn};

/// A real Alertmanager: every alert goes to one webhook, grouped by alert, service and
/// environment, sent after 1 s and again on changes; resolved alerts are sent too. Its process
/// group ends on drop.
pub struct Alertmanager {
    pub server: Server,
    pub port: u16,
}

impl Alertmanager {
    /// Starts it on `port`, sending to `webhook_url` with `Authorization: Bearer token`, and
    /// waits (blocking) until it answers `/-/ready`.
    pub fn start(port: u16, webhook_url: &str, token: &str) -> Alertmanager {
        let binary = [
            "/usr/bin/prometheus-alertmanager",
            "/usr/local/bin/alertmanager",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "alertmanager is not installed: apt-get install -y prometheus-alertmanager (scripts/test.sh does)",
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: backstop\n  group_by: [alertname, service, env]\n  \
                 group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: backstop\n    webhook_configs:\n      - url: '{webhook_url}'\n        \
                 send_resolved: true\n        http_config:\n          authorization:\n            \
                 credentials: '{token}'\n"
            ),
        )
        .unwrap();
        let log = dir.path().join("alertmanager.log");
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // One instance, no gossip port of its own.
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn");
        let child = spawn(cmd, &log);
        let mut server = Server { child, dir, port };
        server.wait_ready("alertmanager", "alertmanager.log");
        Alertmanager { server, port }
    }
}
