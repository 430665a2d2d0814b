//! The README's main command, `backstop quickstart`, as a new user runs it: the whole loop on
//! this machine (a real daemon, its proxy process, instances, traffic, a good release promoted
//! and a bad one rolled back), and nothing left running afterwards.

use backstop_testkit::backstop_bin;

#[test]
fn quickstart_promotes_the_good_release_rolls_back_the_bad_one_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = std::process::Command::new(backstop_bin())
        .args(["quickstart", "-o", "json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("quickstart -o json prints JSON ({e}): {stdout}"));
    assert_eq!(summary["audit"]["ok"], true, "{summary:#}");
    assert!(
        summary["traffic"]["sent"].as_u64().unwrap() > 0,
        "{summary:#}"
    );

    // Nothing it started is left: no process writes into its state folder any more.
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/fd/1"))
                .or_else(|_| std::fs::read_link(format!("/proc/{pid}/fd/2")))
                .is_ok_and(|target| target.starts_with(&state))
        })
        .map(|pid| pid.to_string())
        .collect();
    assert!(left.is_empty(), "still running: {left:?}");
}
