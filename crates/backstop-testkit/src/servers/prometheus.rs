//! A real Prometheus server on loopback scraping given targets every second.

use std::path::PathBuf;
use std::process::Command;

use super::{Server, spawn};

/// A real Prometheus server on loopback (Debian package `prometheus`), scraping `targets`'
/// `/metrics` every second, its data in a temp folder. Its process group ends on drop.
pub struct Prometheus {
    pub server: Server,
    pub url: String,
}

impl Prometheus {
    /// Starts Prometheus on `port` and waits (blocking) until it answers `/-/ready`.
    pub fn start(port: u16, targets: &[String]) -> Prometheus {
        Self::start_alerting(port, targets, None)
    }

    /// [`Prometheus::start`] that also evaluates `rules` (a rule file's YAML, every second) and
    /// sends what fires to the Alertmanager on `alertmanager_port`.
    pub fn start_alerting(
        port: u16,
        targets: &[String],
        alerting: Option<(&str, u16)>,
    ) -> Prometheus {
        let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect(
                "prometheus is not installed: apt-get install -y prometheus (scripts/test.sh does)",
            );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let quoted: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let mut text = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: backstop\n    static_configs: [{{targets: [{}]}}]\n",
            quoted.join(", ")
        );
        if let Some((rules, am_port)) = alerting {
            let rules_file = dir.path().join("rules.yml");
            std::fs::write(&rules_file, rules).unwrap();
            text.push_str(&format!(
                "rule_files: ['{}']\nalerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]\n",
                rules_file.display()
            ));
        }
        std::fs::write(&config, text).unwrap();
        let log = dir.path().join("prometheus.log");
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let child = spawn(cmd, &log);
        let mut server = Server { child, dir, port };
        server.wait_ready("prometheus", "prometheus.log");
        Prometheus {
            server,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}
