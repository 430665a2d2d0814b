//! The command deployer end to end: user scripts deploy and stop versions (here: the sample
//! service started in the background on the port Backstop chose), a bad canary is rolled back,
//! and every script run carries a stable idempotency key.

use backstop_testkit::{Daemon, Traffic, free_port, shop_config};

#[test]
fn scripts_deploy_and_stop_versions_and_a_bad_canary_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let proxy = free_port();
    let w = work.display();
    let run = format!(
        r#"run:
      kind: command
      deploy: "echo $BACKSTOP_IDEMPOTENCY_KEY >> {w}/deploys.log; nohup $BACKSTOP_ARTIFACT demo-app --port $BACKSTOP_PORT --version $BACKSTOP_VERSION > {w}/$BACKSTOP_INSTANCE_ID.out 2>&1 & echo $! > {w}/$BACKSTOP_INSTANCE_ID.pid"
      stop: "echo $BACKSTOP_IDEMPOTENCY_KEY >> {w}/stops.log; kill $(cat {w}/$BACKSTOP_INSTANCE_ID.pid) 2>/dev/null; true"
      timeout: 20s"#
    );
    let base = shop_config(proxy, "[{weight: 50, for: 2s}, {weight: 100}]");
    let start = base.find("run:").unwrap();
    let end = base.find("    rollout:").unwrap();
    let config = format!("{}{run}\n{}", &base[..start], &base[end..]);
    let mut d = Daemon::start(&state, &config, proxy);

    d.register("v1", 0.0);
    d.register("v2", 0.5);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let traffic = Traffic::start(proxy, 60.0);
    let v2 = d.rollout_wait("v2", 1);
    assert_eq!(v2["rollout"]["phase"], "recovered", "{v2:#}");
    let (sent, _) = traffic.stop();
    assert!(sent > 0);

    let deploys = std::fs::read_to_string(work.join("deploys.log")).unwrap();
    let stops = std::fs::read_to_string(work.join("stops.log")).unwrap();
    let deploy_keys: Vec<&str> = deploys.lines().collect();
    assert_eq!(deploy_keys.len(), 2, "one deploy per version: {deploys}");
    assert!(
        deploy_keys.iter().all(|k| k.ends_with("/deploy")),
        "{deploys}"
    );
    let canary = v2["rollout"]["canary_instance_id"].as_str().unwrap();
    assert_eq!(
        stops.lines().collect::<Vec<_>>(),
        [format!("{canary}/stop")],
        "the bad canary was stopped by the stop script"
    );
    d.assert_audit_verifies();
    d.stop();
    // Script-deployed instances are the user's to run: stop v1 ourselves.
    for entry in std::fs::read_dir(&work).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "pid") {
            let pid: i32 = std::fs::read_to_string(&p).unwrap().trim().parse().unwrap();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
