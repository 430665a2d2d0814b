//! Where the built-in proxies and the instances run. In production they belong to a host's
//! agent (`backstop agent`, in its own process group, so signals to the daemon do not reach
//! it): the first daemon of a state folder spawns this host's agent, the next ones (a restart,
//! replicas sharing the folder) adopt it, and an environment placed on another host is driven
//! through that host's agent. Users are served with the last routes while the daemon is down or
//! hung: the data plane fails static. A per-environment `backstop proxy` process left by an
//! earlier version is adopted as it is. In-process proxies remain for tests of the API alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use backstop_drivers::agent::{AgentClient, AgentError};
use backstop_drivers::proxy::{Proxy, VersionStats};
use backstop_drivers::proxy_control::{ProcessProxyRouter, ProxyClient};
use backstop_drivers::router::{BuiltinRouter, TrafficRouter};

/// How long a spawned agent may take to answer.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the daemon keeps this host's agent's token (mode 0600) and address.
pub const LOCAL_AGENT_TOKEN: &str = "agent.token";
pub const LOCAL_AGENT_ADDR: &str = "agent.addr";

/// Where the built-in proxies and instances run.
#[derive(Debug, Clone, Default)]
pub enum DataPlane {
    /// Proxies inside the daemon, instances its own children: they stop with it (tests of the
    /// API alone).
    #[default]
    InProcess,
    /// On this host's agent, spawned from `exe` (`exe agent serve`) or adopted.
    Process { exe: PathBuf },
}

/// A running built-in proxy, wherever it runs.
pub enum ProxyHandle {
    InProcess(Proxy),
    Process {
        client: ProxyClient,
        listen: SocketAddr,
        /// On another host's agent, which keeps it serving when this daemon stops.
        keep_on_stop: bool,
    },
}

impl ProxyHandle {
    pub fn listen_addr(&self) -> SocketAddr {
        match self {
            ProxyHandle::InProcess(p) => p.local_addr(),
            ProxyHandle::Process { listen, .. } => *listen,
        }
    }

    /// Per-version counters since the proxy started (empty when it cannot be reached).
    pub async fn stats(&self) -> Vec<VersionStats> {
        match self {
            ProxyHandle::InProcess(p) => p.stats(),
            ProxyHandle::Process { client, .. } => match client.stats().await {
                Ok((stats, _)) => stats,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot read the proxy's counters.");
                    Vec::new()
                }
            },
        }
    }

    /// Stops it (drains in-flight requests); one on another host's agent is left serving.
    pub async fn shutdown(&self) {
        match self {
            ProxyHandle::InProcess(p) => p.shutdown().await,
            ProxyHandle::Process {
                keep_on_stop: true, ..
            } => {}
            ProxyHandle::Process { client, .. } => {
                if let Err(e) = client.shutdown().await {
                    tracing::warn!(error = %e, "Could not stop the proxy.");
                }
            }
        }
    }
}

/// This host's agent: adopted when one answers at the address kept in `STATE_DIR/agent.addr`
/// with the token kept in `STATE_DIR/agent.token` (mode 0600, like the admin token), else
/// spawned from `exe` in its own process group with a new token. Daemons sharing the folder
/// decide one at a time (`agent.lock`), so a host has one agent.
pub async fn local_agent(exe: &Path, state_dir: &Path) -> Result<AgentClient> {
    let lock_path = state_dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let lock = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .context("locking agent.lock")?
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let token_path = state_dir.join(LOCAL_AGENT_TOKEN);
    let addr_path = state_dir.join(LOCAL_AGENT_ADDR);
    let hash_path = state_dir.join(backstop_drivers::agent::TOKEN_HASH_FILE);
    let kept = match (
        std::fs::read_to_string(&token_path),
        std::fs::read_to_string(&addr_path),
        std::fs::read_to_string(&hash_path),
    ) {
        (Ok(token), Ok(addr), Ok(hash)) if backstop_core::secret::token_matches(&token, &hash) => {
            Some((token.trim().to_string(), addr.trim().to_string()))
        }
        _ => None,
    };
    if let Some((token, addr)) = &kept {
        let agent = AgentClient::local(addr, token);
        match agent.hello().await {
            Ok(hello) => {
                tracing::info!(pid = hello.pid, address = %addr, "This host's agent is running; adopted.");
                drop(lock);
                return Ok(agent);
            }
            Err(AgentError::Unauthorized { .. }) => bail!(
                "the agent at {addr} does not take the token in {}: stop that agent (another folder's, or one whose token was made again)",
                token_path.display()
            ),
            Err(_) => {} // gone: started again below, on the same address with the same token
        }
    }
    let (token, addr) = match kept {
        Some(kept) => kept,
        None => {
            let token = backstop_drivers::agent::new_token(state_dir)
                .with_context(|| format!("making the agent's token in {}", state_dir.display()))?;
            crate::auth::write_private(&token_path, &token)
                .with_context(|| format!("writing {}", token_path.display()))?;
            let port =
                backstop_drivers::process::free_port().context("choosing the agent's port")?;
            (token, format!("127.0.0.1:{port}"))
        }
    };
    spawn_agent(exe, state_dir, &addr, &token).await?;
    crate::auth::write_private(&addr_path, &addr)
        .with_context(|| format!("writing {}", addr_path.display()))?;
    drop(lock);
    Ok(AgentClient::local(&addr, &token))
}

/// Starts `exe agent serve` on `addr` in its own process group and waits until it answers.
async fn spawn_agent(exe: &Path, state_dir: &Path, addr: &str, token: &str) -> Result<()> {
    let log = state_dir.join("agent.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let mut child =
        backstop_drivers::without_daemon_secrets(&mut tokio::process::Command::new(exe))
            .args(["agent", "serve", "--name", "local", "--listen", addr])
            .arg("--state-dir")
            .arg(state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .with_context(|| format!("starting `{} agent serve`", exe.display()))?;
    let agent = AgentClient::local(addr, token);
    let deadline = tokio::time::Instant::now() + AGENT_START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "this host's agent exited with {status} before it answered; last log lines ({}):\n{}",
                log.display(),
                backstop_drivers::process::log_tail(&log)
            );
        }
        if agent.hello().await.is_ok() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("this host's agent did not answer on {addr} within {AGENT_START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(pid = child.id().unwrap_or(0), address = %addr, "This host's agent started.");
    // Reaped when it exits while this daemon lives; it outlives the daemon otherwise.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(())
}

/// Starts (or adopts) the built-in proxy of `name` (`service/env`) on `listen`, on this host:
/// in the daemon (`InProcess`) or on this host's agent `local`.
pub async fn start_builtin(
    plane: &DataPlane,
    state_dir: &Path,
    local: Option<&AgentClient>,
    name: &str,
    listen: SocketAddr,
) -> Result<(Arc<dyn TrafficRouter>, ProxyHandle)> {
    match plane {
        DataPlane::InProcess => {
            let l = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let proxy = Proxy::start(l, name.to_string()).await;
            Ok((
                Arc::new(BuiltinRouter::new(proxy.clone())),
                ProxyHandle::InProcess(proxy),
            ))
        }
        DataPlane::Process { .. } => {
            let local = local.ok_or_else(|| anyhow!("this host's agent is not running"))?;
            // A `backstop proxy` process an earlier version started for this environment keeps
            // serving: adopted as it is, so an upgrade cuts no user off.
            let file_name = name.replace('/', "-");
            let socket = state_dir.join("proxies").join(format!("{file_name}.sock"));
            let client = ProxyClient::new(&socket);
            if let Ok(hello) = client.hello().await {
                if hello.listen != listen {
                    bail!(
                        "the proxy process {} (pid {}) listens on {}, not on {listen} as configured: stop it, or put `listen` back",
                        socket.display(),
                        hello.pid,
                        hello.listen
                    );
                }
                tracing::info!(proxy = name, pid = hello.pid, %listen, routes_version = hello.routes_version, "Built-in proxy process already running; adopted.");
                let router = ProcessProxyRouter::connect(client.clone()).await?;
                return Ok((
                    Arc::new(router),
                    ProxyHandle::Process {
                        client,
                        listen,
                        keep_on_stop: false,
                    },
                ));
            }
            Ok(on_agent(local, name, listen, false))
        }
    }
}

/// The built-in proxy of `name` (`service/env`) hosted by `agent`, listening on `listen` on
/// its host. Nothing is asked of the agent yet: the proxy starts there with the first route
/// set, so a replica starts while an agent is down and drives it once it is back.
/// `keep_on_stop`: another host's agent, which keeps the proxy serving when this daemon stops.
pub fn on_agent(
    agent: &AgentClient,
    name: &str,
    listen: SocketAddr,
    keep_on_stop: bool,
) -> (Arc<dyn TrafficRouter>, ProxyHandle) {
    let client = ProxyClient::on_agent(agent.clone(), name, listen);
    (
        Arc::new(ProcessProxyRouter::unchecked(client.clone())),
        ProxyHandle::Process {
            client,
            listen,
            keep_on_stop,
        },
    )
}
