//! Environments on another host's agent (`backstop agent`), on loopback: the daemon drives the
//! agent's proxy and instances (the release's artifact uploaded there, verified); users are
//! served by the agent while the daemon is killed; an agent the daemon cannot reach shows as
//! unreachable and a wrong token is named; the daemon's own stop leaves the agent serving.

use std::time::Duration;

use backstop_testkit::{Agent, Daemon, free_port, http_get, instance_pids, shop_config};
use nix::sys::signal::Signal;

const TOKEN_ENV: &str = "BACKSTOP_AGENT_WEB1_TOKEN";

fn config_on(agent: &Agent, proxy_port: u16) -> String {
    let base = shop_config(proxy_port, "[{weight: 100}]");
    let placed = base.replace(
        &format!("listen: 127.0.0.1:{proxy_port}"),
        &format!(
            "agent: {}\n        listen: 127.0.0.1:{proxy_port}",
            agent.name
        ),
    );
    format!("agents:\n{}{placed}", agent.config_entry(TOKEN_ENV))
}

/// An agent `web1` in `dir/agent` and a daemon in `dir/state` whose `shop/prod` runs there,
/// v1 promoted.
fn v1_on_an_agent(dir: &std::path::Path) -> (Agent, Daemon) {
    let address = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let agent = Agent::start("web1", &dir.join("agent"), address);
    let proxy = free_port();
    let d = Daemon::start_with_env(
        &dir.join("state"),
        &config_on(&agent, proxy),
        proxy,
        &[(TOKEN_ENV, &agent.token)],
    );
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    (agent, d)
}

fn agent_status(d: &Daemon) -> serde_json::Value {
    let status = d.cli_json(&["cluster", "status"], 0);
    status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "web1")
        .cloned()
        .unwrap_or_else(|| panic!("agent web1 in {status:#}"))
}

#[test]
fn a_daemon_drives_an_agents_proxy_and_instances_and_users_outlive_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, mut d) = v1_on_an_agent(dir.path());
    let (agent_dir, proxy) = (agent.state_dir.clone(), d.proxy_port);
    let answer = http_get(proxy, "/").unwrap();
    assert!(answer.contains("x-backstop-version: v1"), "{answer}");

    // The instance runs on the agent's host: its log and its artifact are in the agent's
    // folder, none in the daemon's.
    assert_eq!(instance_pids(&agent_dir).len(), 1, "{}", agent.log());
    assert!(instance_pids(&d.state_dir).is_empty());
    let artifacts: Vec<_> = std::fs::read_dir(agent_dir.join("artifacts"))
        .unwrap()
        .collect();
    assert_eq!(artifacts.len(), 1);

    let status = agent_status(&d);
    assert_eq!(status["state"], "reachable", "{status:#}");
    assert_eq!(status["environments"][0], "shop/prod");
    assert_eq!(status["proxies"][0], "shop/prod");

    // Users are served by the agent while the daemon is gone.
    d.kill9();
    std::thread::sleep(Duration::from_secs(1));
    let answer = http_get(proxy, "/").unwrap();
    assert!(answer.contains("x-backstop-version: v1"), "{answer}");

    // A restarted daemon drives the same agent on: v2 reaches users, v1 is scaled down there.
    d.restart();
    d.register("v2", 0.0);
    d.rollout_wait("v2", 0);
    let answer = http_get(proxy, "/").unwrap();
    assert!(answer.contains("x-backstop-version: v2"), "{answer}");
    d.wait_until("v1 scaled down on the agent", || {
        instance_pids(&agent_dir).len() == 1
    });

    // Stopped, the daemon leaves the agent's proxy and instance serving (another host's).
    d.stop();
    let answer = http_get(proxy, "/").unwrap();
    assert!(answer.contains("x-backstop-version: v2"), "{answer}");
    assert_eq!(instance_pids(&agent_dir).len(), 1);
}

#[test]
fn an_agent_out_of_reach_or_refusing_the_token_shows_as_unreachable_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, mut d) = v1_on_an_agent(dir.path());
    let proxy = d.proxy_port;

    // Frozen: it answers nobody; its environment shows as unreachable, users keep the kernel's
    // queued connections (they are served once it is back).
    agent.signal(Signal::SIGSTOP);
    let status = agent_status(&d);
    assert_eq!(status["state"], "unreachable", "{status:#}");
    assert!(
        status["error"].as_str().unwrap().contains("agent web1"),
        "{status:#}"
    );
    let text = d.cli(&["cluster", "status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("agent web1") && text.contains("UNREACHABLE") && text.contains("shop/prod"),
        "{text}"
    );
    agent.signal(Signal::SIGCONT);
    assert_eq!(agent_status(&d)["state"], "reachable");

    // A wrong token: refused, and the message names the variable to fix.
    d.stop();
    d.env = vec![(TOKEN_ENV.into(), "bsa_not_the_token".into())];
    d.restart();
    let status = agent_status(&d);
    assert_eq!(status["state"], "unreachable", "{status:#}");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("refused the token") && error.contains(TOKEN_ENV),
        "{error}"
    );
    // …and it changed nothing there: users are still served v1.
    let answer = http_get(proxy, "/").unwrap();
    assert!(answer.contains("x-backstop-version: v1"), "{answer}");

    // No token at all: the daemon does not start, naming the variable.
    d.stop();
    let out = std::process::Command::new(backstop_testkit::backstop_bin())
        .args(["serve", "--config"])
        .arg(&d.config)
        .arg("--state-dir")
        .arg(&d.state_dir)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env_remove(TOKEN_ENV)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(TOKEN_ENV) && stderr.contains("backstop agent token"),
        "{stderr}"
    );
}
