//! Across hosts, on one machine: three replicas and two agents, each on a test host of its own
//! (a network namespace with its own address on a bridge), PostgreSQL reached over the network
//! from the test's own namespace. Links are cut by taking a host's veth down.
//!
//! - an agent cut off from every replica: its proxy keeps serving its users the last routes
//!   (fail static) and the replicas show it unreachable; back, it is driven again;
//! - the replica that supervises an environment cut off: another takes the environment over and
//!   a new release reaches users through the agent; when the link is back, the former holder
//!   changes nothing (its routes and instance commands carry a stale epoch), and the audit chain
//!   verifies.
//!
//! `kill -9` and `SIGSTOP` of an owner, and PostgreSQL restarting, are tested on loopback in
//! `replicas.rs` (the same code paths; only the addresses differ).

use std::time::Duration;

use backstop_testkit::link::Link;
use backstop_testkit::netns::{self, Host, Lab};
use backstop_testkit::servers::Postgres;
use backstop_testkit::{Agent, DEMO_APP_RUN, Daemon, free_port, poll_until};

const DATABASE: &str = "backstop";

fn postgres() -> Postgres {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let pg = Postgres::start().await;
            pg.create_database(DATABASE).await;
            pg
        })
}

fn config(agents: &[&Agent], prod_port: u16, staging_port: u16) -> String {
    let mut text = String::from("agents:\n");
    for a in agents {
        text.push_str(&a.config_entry(&token_env(a)));
    }
    text.push_str(&format!(
        r#"services:
  - name: shop
    owner: team-test
    tier: 1
{DEMO_APP_RUN}    rollout:
      strategy: canary
      steps: [{{weight: 100}}]
    analysis:
      interval: 1s
    environments:
      - name: prod
        agent: {east}
        listen: 0.0.0.0:{prod_port}
      - name: staging
        agent: {west}
        listen: 0.0.0.0:{staging_port}
"#,
        east = agents[0].name,
        west = agents[1].name,
    ));
    text
}

fn token_env(agent: &Agent) -> String {
    format!("BACKSTOP_AGENT_{}_TOKEN", agent.name.to_uppercase())
}

fn agent_state(d: &Daemon, name: &str) -> String {
    let status = d.cli_json(&["cluster", "status"], 0);
    status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .map(|a| a["state"].as_str().unwrap().to_string())
        .unwrap()
}

/// The replica (its index in `replicas`) that holds `lease`, asked of `ask`.
fn holder(ask: &Daemon, replicas: &[Daemon], lease: &str) -> Option<usize> {
    let status = ask.cli_json(&["cluster", "status"], 0);
    let pid = status["replicas"].as_array()?.iter().find_map(|r| {
        (r["state"] == "live"
            && r["leases"]
                .as_array()
                .is_some_and(|l| l.iter().any(|k| k == lease)))
        .then(|| r["pid"].as_u64())
        .flatten()
    })?;
    replicas
        .iter()
        .position(|d| d.child.as_ref().is_some_and(|c| u64::from(c.id()) == pid))
}

fn serves(host: &Host, port: u16, version: &str) -> bool {
    host.http_get_here(port)
        .is_some_and(|a| a.contains(&format!("x-backstop-version: {version}")))
}

fn rollout(d: &Daemon, env: &str, version: &str) {
    let out = d.cli_json(
        &[
            "rollout",
            "start",
            "shop",
            "--env",
            env,
            "--version",
            version,
            "--wait",
        ],
        0,
    );
    assert_eq!(out["rollout"]["phase"], "promoted", "{out:#}");
}

#[test]
fn replicas_and_agents_on_their_own_hosts_survive_cut_links() {
    if !netns::available() {
        // Developers' machines without root; CI runs as root and runs it.
        eprintln!("skipped: network namespaces need root and iproute2");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new();
    let hosts: Vec<Host> = ["r1", "r2", "r3", "east", "west"]
        .iter()
        .map(|n| lab.host(n))
        .collect();
    let pg = postgres();
    let db_port = free_port();
    let _db_link = Link::tcp(
        (lab.gateway(), db_port).into(),
        &pg.dir().join("sock").join(".s.PGSQL.5432"),
    );
    let url = format!("postgres://postgres@{}:{db_port}/{DATABASE}", lab.gateway());

    let east = Agent::start_in(
        &hosts[3]
            .prefix()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "east",
        &dir.path().join("east"),
        (hosts[3].ip, 7400).into(),
    );
    let west = Agent::start_in(
        &hosts[4]
            .prefix()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "west",
        &dir.path().join("west"),
        (hosts[4].ip, 7400).into(),
    );
    let (prod_port, staging_port) = (free_port(), free_port());
    let text = config(&[&east, &west], prod_port, staging_port);
    let (east_env, west_env) = (token_env(&east), token_env(&west));
    let env = [
        ("BACKSTOP_DATABASE_URL", url.as_str()),
        (east_env.as_str(), east.token.as_str()),
        (west_env.as_str(), west.token.as_str()),
    ];
    let replicas: Vec<Daemon> = hosts[..3]
        .iter()
        .map(|h| Daemon::start_on(h, &dir.path().join(&h.name), &text, &env))
        .collect();
    let [r1, r2, _r3] = [&replicas[0], &replicas[1], &replicas[2]];
    r1.register("v1", 0.0);
    rollout(r1, "prod", "v1");
    rollout(r2, "staging", "v1");
    let (east_host, west_host) = (&hosts[3], &hosts[4]);
    assert!(serves(east_host, prod_port, "v1"));
    assert!(serves(west_host, staging_port, "v1"));
    assert_eq!(agent_state(r2, "east"), "reachable");

    // The east agent cut off from every replica: its users keep the last routes; the
    // replicas see it unreachable (and nothing else changes: west is still driven).
    east_host.cut();
    r1.wait_until("east shows as unreachable", || {
        agent_state(r1, "east") == "unreachable"
    });
    assert_eq!(agent_state(r1, "west"), "reachable");
    for _ in 0..5 {
        assert!(
            serves(east_host, prod_port, "v1"),
            "east's users are served while it is cut off"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    east_host.restore();
    r1.wait_until("east is reachable again", || {
        agent_state(r1, "east") == "reachable"
    });

    // The replica that supervises prod cut off: another takes prod over and v2 reaches its
    // users through the agent.
    let lease = "env/shop/prod";
    let cut = poll_until(
        backstop_testkit::patience(),
        || holder(r1, &replicas, lease),
        Option::is_some,
    )
    .ok()
    .flatten()
    .expect("a replica supervises prod");
    let cut_host = &hosts[cut];
    let survivor = &replicas[(cut + 1) % 3];
    cut_host.cut();
    survivor.wait_until("another replica takes prod over", || {
        holder(survivor, &replicas, lease).is_some_and(|h| h != cut)
    });
    survivor.register("v2", 0.0);
    rollout(survivor, "prod", "v2");
    assert!(serves(east_host, prod_port, "v2"));

    // Back, the former holder changes nothing: users stay on v2, and the chain verifies.
    cut_host.restore();
    std::thread::sleep(Duration::from_secs(8));
    assert!(serves(east_host, prod_port, "v2"));
    survivor.assert_audit_verifies();
    let log = replicas[cut].log();
    assert!(!log.contains("panicked"), "the former holder's log:\n{log}");
}
