//! Signals beyond HTTP: a queue consumer's releases canaried by per-version success and failure
//! counts it reports itself. A command printing the counts as JSON (`signals.command`) catches
//! a release whose jobs fail far more often and rolls it back; the same counts served over HTTP
//! by a real server (`signals.http`, Python's `http.server`) let a good release through.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backstop_testkit::{Daemon, free_port, shop_config};

/// Writes cumulative job counts for every version to `file` a few times a second, as the
/// workers' reporting would: each version's failure ratio as given.
struct Workers {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Workers {
    fn start(file: &Path, ratios: &[(&str, f64)]) -> Workers {
        let stop = Arc::new(AtomicBool::new(false));
        let (file, ratios): (std::path::PathBuf, Vec<(String, f64)>) = (
            file.to_path_buf(),
            ratios.iter().map(|(v, r)| ((*v).to_owned(), *r)).collect(),
        );
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut done = 0u64;
            while !flag.load(Ordering::Relaxed) {
                done += 20;
                let counts: serde_json::Map<String, serde_json::Value> = ratios
                    .iter()
                    .map(|(v, r)| {
                        let failed = (done as f64 * r) as u64;
                        (
                            v.clone(),
                            serde_json::json!({"succeeded": done - failed, "failed": failed}),
                        )
                    })
                    .collect();
                let tmp = file.with_extension("tmp");
                std::fs::write(&tmp, serde_json::Value::Object(counts).to_string()).unwrap();
                std::fs::rename(&tmp, &file).unwrap();
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Workers {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn config(proxy: u16, signals: &str) -> String {
    shop_config(proxy, "[{weight: 50, for: 8s}, {weight: 100}]").replace(
        "    environments:",
        &format!("    signals:\n{signals}    environments:"),
    )
}

#[test]
fn a_command_reporting_job_counts_rolls_back_a_release_whose_jobs_fail() {
    let dir = tempfile::tempdir().unwrap();
    let counts = dir.path().join("counts.json");
    let proxy = free_port();
    let signals = format!("      command: {{run: \"cat {}\"}}\n", counts.display());
    let d = Daemon::start(&dir.path().join("state"), &config(proxy, &signals), proxy);
    let _workers = Workers::start(&counts, &[("v1", 0.01), ("v2", 0.3)]);
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let v2 = d.rollout_wait("v2", 1);
    assert_eq!(v2["rollout"]["phase"], "recovered", "{v2:#}");
    let source = v2["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "analysis.source")
        .unwrap_or_else(|| panic!("the source is recorded: {v2:#}"));
    assert_eq!(source["detail"]["source"], "counts", "{source:#}");
    assert!(
        source["detail"]["asks"].as_str().unwrap().contains("cat "),
        "{source:#}"
    );
}

/// Python's HTTP server on `port`, serving `dir` (ended by pid on drop).
struct FileServer(Child);

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn counts_served_over_http_let_a_good_release_through() {
    let dir = tempfile::tempdir().unwrap();
    let counts = dir.path().join("counts.json");
    let _workers = Workers::start(&counts, &[("v1", 0.02), ("v2", 0.02)]);
    let port = free_port();
    let _server = FileServer(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs"),
    );
    backstop_testkit::assert_eventually!(
        backstop_testkit::http_get(port, "/counts.json"),
        |answer| answer.as_deref().is_some_and(|a| a.contains("200 OK")),
        "the file server answers"
    );
    let proxy = free_port();
    let signals = format!("      http: {{url: \"http://127.0.0.1:{port}/counts.json\"}}\n");
    let d = Daemon::start(&dir.path().join("state"), &config(proxy, &signals), proxy);
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let v2 = d.rollout_wait("v2", 0);
    assert_eq!(v2["rollout"]["phase"], "promoted", "{v2:#}");
    let id = v2["rollout"]["id"].as_str().unwrap();
    let explained = d.cli_json(&["rollout", "explain", id], 0);
    assert!(
        explained["intervals"].as_u64().unwrap() >= 5,
        "{explained:#}"
    );
}
