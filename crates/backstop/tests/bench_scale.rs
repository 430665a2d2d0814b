//! `backstop bench scale` at a tiny size: every store runs the analysis path (the real judge and
//! rollout logic, fenced writes) and reports its figures; bad sizes are refused. What it
//! measures at scale is in the README, from the bench itself.

use std::process::Command;

use backstop_testkit::backstop_bin;

#[test]
fn a_small_scale_run_reports_every_store() {
    let out = Command::new(backstop_bin())
        .args([
            "bench",
            "scale",
            "--rollouts",
            "100",
            "--interval",
            "1s",
            "--intervals",
            "2",
            "--stores",
            "sqlite,postgres-3",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{report:#}");
    for (run, (store, replicas)) in runs.iter().zip([("sqlite", 1), ("postgres-3", 3)]) {
        assert_eq!(run["store"], store, "{run:#}");
        assert_eq!(run["replicas"], replicas);
        assert_eq!(run["rollouts"], 100);
        // About 100 analyses a second for two seconds, less the bad canaries failed early.
        let analyses = run["analyses"].as_u64().unwrap();
        assert!((100..=200).contains(&analyses), "{run:#}");
        // The one bad release in 100 is caught by the judge within the run.
        assert!(run["failed"].as_u64().unwrap() >= 1, "{run:#}");
        let (p50, p99) = (
            run["p50_ms"].as_f64().unwrap(),
            run["p99_ms"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99, "{run:#}");
        // At least one stored interval per analysis.
        assert!(run["store_writes_per_s"].as_f64().unwrap() >= analyses as f64 / 2.0 * 0.9);
    }
}

#[test]
fn bad_sizes_are_refused_naming_the_flag() {
    let out = Command::new(backstop_bin())
        .args(["bench", "scale", "--rollouts", "0", "--stores", "sqlite"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rollouts"));
}
