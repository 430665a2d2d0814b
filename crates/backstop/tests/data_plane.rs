//! The data plane fails static: the built-in proxy is its own process, so users are served
//! while the daemon is killed, restarted or stopped (`SIGSTOP`). It used to live in the daemon:
//! `kill -9` under 50 req/s gave 149 connection errors in ~3 s, and `SIGSTOP` hung every request.

use std::time::Duration;

use backstop_testkit::{Daemon, Traffic, http_get};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[test]
fn users_are_served_while_the_daemon_is_killed_restarted_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_shop(dir.path(), "[{weight: 100}]");
    let proxy = d.proxy_port;
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);

    let traffic = Traffic::start(proxy, 50.0);
    std::thread::sleep(Duration::from_secs(1));
    d.kill9();
    std::thread::sleep(Duration::from_secs(3));
    d.restart(); // adopts the running proxy
    std::thread::sleep(Duration::from_secs(1));
    let daemon = Pid::from_raw(d.child.as_ref().unwrap().id() as i32);
    kill(daemon, Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    kill(daemon, Signal::SIGCONT).unwrap();
    let (sent, failed) = traffic.stop();
    assert!(sent > 300, "traffic flowed: {sent}");
    assert_eq!(
        failed, 0,
        "no user request failed while the daemon was down or stopped"
    );

    // The restarted daemon drives the adopted proxy: a new release reaches users.
    d.register("v2", 0.0);
    d.rollout_wait("v2", 0);
    let answer = http_get(proxy, "/").unwrap();
    assert!(answer.contains("x-backstop-version: v2"), "{answer}");
}

/// The proxies live in this host's agent, which the daemon starts itself: killed, it is started
/// again (on its address, with its token), serves the kept routes again, and the instances,
/// in process groups of their own, never stopped.
#[test]
fn the_hosts_agent_is_started_by_the_daemon_and_started_again_when_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_shop(dir.path(), "[{weight: 100}]");
    let proxy = d.proxy_port;
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    let local = |d: &Daemon| {
        let status = d.cli_json(&["cluster", "status"], 0);
        status["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "local")
            .cloned()
            .unwrap_or_else(|| panic!("this host's agent in {status:#}"))
    };
    let agent = local(&d);
    assert_eq!(agent["state"], "reachable", "{agent:#}");
    assert_eq!(agent["environments"][0], "shop/prod");
    assert_eq!(agent["proxies"][0], "shop/prod");
    let pid = agent["pid"].as_u64().unwrap();
    let instances = backstop_testkit::instance_pids(&d.state_dir);
    assert_eq!(instances.len(), 1);

    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    d.wait_until("the daemon starts its agent again", || {
        let agent = local(&d);
        agent["state"] == "reachable" && agent["pid"].as_u64() != Some(pid)
    });
    d.wait_until("users are served again", || {
        http_get(proxy, "/").is_some_and(|a| a.contains("x-backstop-version: v1"))
    });
    assert_eq!(backstop_testkit::instance_pids(&d.state_dir), instances);
}
