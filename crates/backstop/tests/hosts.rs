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
//! - the replica driving a bad release's recovery killed (`kill -9`) mid-way, and the one
//!   driving a rollout frozen (`SIGSTOP`) past its lease: another replica finishes each; the
//!   frozen one, woken, changes nothing; PostgreSQL restarting under the replicas: they
//!   reconnect and carry on.

use std::time::Duration;

use backstop_testkit::link::Link;
use backstop_testkit::netns::{self, Host, Lab};
use backstop_testkit::servers::Postgres;
use backstop_testkit::{Agent, DEMO_APP_RUN, Daemon, Traffic, free_port, poll_until};

const DATABASE: &str = "backstop";

fn postgres() -> Postgres {
    Postgres::blocking_with_database(DATABASE)
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

/// Three replicas and two agents on hosts of their own, PostgreSQL reached over the network;
/// v1 promoted in prod (on `east`) and staging (on `west`). Fields drop in order: the
/// processes first, the lab (namespaces, bridge) last.
struct Site {
    replicas: Vec<Daemon>,
    _agents: Vec<Agent>,
    _db_link: Link,
    pg: Postgres,
    hosts: Vec<Host>,
    prod_port: u16,
    staging_port: u16,
    _lab: Lab,
    _dir: tempfile::TempDir,
}

impl Site {
    /// `None` where network namespaces cannot be made (not root): the caller skips.
    /// `hold_rollbacks`: each rollback's `after_rollback` hook records its run in
    /// `dir/hook-runs` and waits for the file `dir/go`, so a test can act mid-recovery.
    fn start(steps: &str, hold_rollbacks: bool) -> Option<Site> {
        if !netns::available() {
            // Developers' machines without root; CI runs as root and runs it.
            eprintln!("skipped: network namespaces need root and iproute2");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut lab = Lab::new();
        let hosts: Vec<Host> = ["r1", "r2", "r3", "east", "west"]
            .iter()
            .map(|n| lab.host(n))
            .collect();
        let pg = postgres();
        let db_port = free_port();
        let db_link = Link::tcp(
            (lab.gateway(), db_port).into(),
            &pg.dir().join("sock").join(".s.PGSQL.5432"),
        );
        let url = format!("postgres://postgres@{}:{db_port}/{DATABASE}", lab.gateway());
        let agents: Vec<Agent> = hosts[3..]
            .iter()
            .map(|h| {
                let prefix = h.prefix();
                let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
                Agent::start_in(
                    &prefix,
                    &h.name,
                    &dir.path().join(&h.name),
                    (h.ip, 7400).into(),
                )
            })
            .collect();
        let (prod_port, staging_port) = (free_port(), free_port());
        let mut text = config(&[&agents[0], &agents[1]], prod_port, staging_port)
            .replace("steps: [{weight: 100}]", &format!("steps: {steps}"));
        if hold_rollbacks {
            let hook = format!(
                "echo run >> {d}/hook-runs; while [ ! -e {d}/go ]; do sleep 0.1; done",
                d = dir.path().display()
            );
            text = text.replace(
                "    rollout:",
                &format!("    hooks:\n      after_rollback: \"{hook}\"\n    rollout:"),
            );
        }
        let tokens: Vec<(String, String)> = agents
            .iter()
            .map(|a| (token_env(a), a.token.clone()))
            .collect();
        let mut env: Vec<(&str, &str)> = vec![("BACKSTOP_DATABASE_URL", url.as_str())];
        env.extend(tokens.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let replicas: Vec<Daemon> = hosts[..3]
            .iter()
            .map(|h| Daemon::start_on(h, &dir.path().join(&h.name), &text, &env))
            .collect();
        replicas[0].register("v1", 0.0);
        rollout(&replicas[0], "prod", "v1");
        rollout(&replicas[1], "staging", "v1");
        Some(Site {
            replicas,
            _agents: agents,
            _db_link: db_link,
            pg,
            hosts,
            prod_port,
            staging_port,
            _lab: lab,
            _dir: dir,
        })
    }
}

#[test]
fn replicas_and_agents_on_their_own_hosts_survive_cut_links() {
    let Some(site) = Site::start("[{weight: 100}]", false) else {
        return;
    };
    let (replicas, hosts) = (&site.replicas, &site.hosts);
    let (prod_port, staging_port) = (site.prod_port, site.staging_port);
    let r1 = &replicas[0];
    let (east_host, west_host) = (&hosts[3], &hosts[4]);
    assert!(serves(east_host, prod_port, "v1"));
    assert!(serves(west_host, staging_port, "v1"));
    assert_eq!(agent_state(&replicas[1], "east"), "reachable");

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
        || holder(r1, replicas, lease),
        Option::is_some,
    )
    .ok()
    .flatten()
    .expect("a replica supervises prod");
    let cut_host = &hosts[cut];
    let survivor = &replicas[(cut + 1) % 3];
    cut_host.cut();
    survivor.wait_until("another replica takes prod over", || {
        holder(survivor, replicas, lease).is_some_and(|h| h != cut)
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

#[test]
fn owners_killed_or_frozen_on_their_hosts_are_replaced_and_postgresql_restarting_is_survived() {
    let Some(mut site) = Site::start("[{weight: 50, for: 15s}, {weight: 100}]", true) else {
        return;
    };
    let (east_host, west_host) = (site.hosts[3].clone(), site.hosts[4].clone());
    let (prod_port, staging_port) = (site.prod_port, site.staging_port);
    let dir = site._dir.path().to_path_buf();

    // kill -9 of the replica driving a bad release's recovery, mid-way (its rollback hook
    // running): another replica finishes the recovery; no step is done twice (the hook, whose
    // first run was cut with its replica, runs again).
    site.replicas[0].register("v2", 0.6);
    let traffic = Traffic::start_at(east_host.ip, prod_port, 50.0);
    let id = site.replicas[0].rollout_start("v2");
    site.replicas[0].wait_until("the rollback hook runs", || {
        std::fs::read_to_string(dir.join("hook-runs")).is_ok_and(|r| r.lines().count() == 1)
    });
    let lease = format!("rollout/{id}");
    let owner = poll_until(
        backstop_testkit::patience(),
        || holder(&site.replicas[0], &site.replicas, &lease),
        Option::is_some,
    )
    .ok()
    .flatten()
    .expect("a replica drives the recovery");
    site.replicas[owner].kill9();
    let other = &site.replicas[(owner + 1) % 3];
    other.wait_until("another replica takes the recovery over", || {
        holder(other, &site.replicas, &lease).is_some_and(|h| h != owner)
    });
    std::fs::write(dir.join("go"), "").unwrap();
    let done = other.wait_rollout(&id, "another replica finishes the recovery", |r| {
        r["rollout"]["phase"] == "recovered"
    });
    traffic.stop();
    for step in done["recovery"]["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "done", "{step:#}");
    }
    assert!(serves(&east_host, prod_port, "v1"));
    other.assert_audit_verifies();

    // SIGSTOP of the replica driving a staging rollout past its lease: another takes over and
    // finishes; the frozen one, woken, changes nothing (users stay on v3 there).
    let live: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let asker = &site.replicas[live[0]];
    asker.register("v3", 0.0);
    let started = asker.cli_json(
        &[
            "rollout",
            "start",
            "shop",
            "--env",
            "staging",
            "--version",
            "v3",
        ],
        0,
    );
    let id = started["id"].as_str().unwrap().to_string();
    let lease = format!("rollout/{id}");
    let frozen = poll_until(
        backstop_testkit::patience(),
        || holder(asker, &site.replicas, &lease),
        Option::is_some,
    )
    .ok()
    .flatten()
    .expect("a replica drives the staging rollout");
    let pid = nix::unistd::Pid::from_raw(site.replicas[frozen].pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let awake = &site.replicas[*live.iter().find(|i| **i != frozen).unwrap()];
    awake.wait_rollout(&id, "another replica finishes it", |r| {
        r["rollout"]["phase"] == "promoted"
    });
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    std::thread::sleep(Duration::from_secs(8));
    assert!(serves(&west_host, staging_port, "v3"));
    awake.assert_audit_verifies();

    // PostgreSQL restarts under the replicas: they reconnect and carry on.
    site.pg.stop();
    std::thread::sleep(Duration::from_secs(2));
    site.pg.start_again();
    awake.register("v4", 0.0);
    let started = awake.cli_json(
        &[
            "rollout",
            "start",
            "shop",
            "--env",
            "prod",
            "--version",
            "v4",
        ],
        0,
    );
    let id = started["id"].as_str().unwrap().to_string();
    awake.wait_rollout(&id, "promoted after PostgreSQL restarted", |r| {
        r["rollout"]["phase"] == "promoted"
    });
    assert!(serves(&east_host, prod_port, "v4"));
    awake.assert_audit_verifies();
}
