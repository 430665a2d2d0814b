//! Where the built-in proxies run. In production each environment's proxy is its own
//! `backstop proxy` process (in its own process group, so signals to the daemon do not reach
//! it): the daemon spawns it, configures it over its control socket, and a restarted daemon
//! adopts it. Users are served with the last routes while the daemon is down or hung: the data
//! plane fails static. In-process proxies remain for tests of the API alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use backstop_drivers::agent::AgentClient;
use backstop_drivers::proxy::{Proxy, VersionStats};
use backstop_drivers::proxy_control::{ProcessProxyRouter, ProxyClient};
use backstop_drivers::router::{BuiltinRouter, TrafficRouter};

/// How long a spawned proxy may take to answer on its control socket.
const PROXY_START_TIMEOUT: Duration = Duration::from_secs(10);
/// The environment variable that marks a proxy process (its `service/env`).
pub const PROXY_ENV: &str = "BACKSTOP_PROXY";

/// Where the built-in proxies run.
#[derive(Debug, Clone, Default)]
pub enum DataPlane {
    /// Inside the daemon: they stop with it (tests of the API alone).
    #[default]
    InProcess,
    /// Each as a `backstop proxy` process spawned from `exe`, adopted after a restart.
    Process { exe: PathBuf },
}

/// A running built-in proxy, wherever it runs.
pub enum ProxyHandle {
    InProcess(Proxy),
    Process {
        client: ProxyClient,
        listen: SocketAddr,
        /// Hosted by another host's agent, which keeps it when this daemon stops.
        on_agent: bool,
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
            ProxyHandle::Process { on_agent: true, .. } => {}
            ProxyHandle::Process { client, .. } => {
                if let Err(e) = client.shutdown().await {
                    tracing::warn!(error = %e, "Could not stop the proxy process.");
                }
            }
        }
    }
}

/// Starts (or adopts) the built-in proxy of `name` (`service/env`) on `listen`.
pub async fn start_builtin(
    plane: &DataPlane,
    state_dir: &Path,
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
        DataPlane::Process { exe } => {
            let file_name = name.replace('/', "-");
            let socket = state_dir.join("proxies").join(format!("{file_name}.sock"));
            let client = ProxyClient::new(&socket);
            match client.hello().await {
                Ok(hello) if hello.listen == listen => {
                    tracing::info!(proxy = name, pid = hello.pid, %listen, routes_version = hello.routes_version, "Built-in proxy already running; adopted.");
                }
                Ok(hello) => bail!(
                    "the proxy process {} (pid {}) listens on {}, not on {listen} as configured: stop it, or put `listen` back",
                    socket.display(),
                    hello.pid,
                    hello.listen
                ),
                Err(_) => {
                    // Beside its socket, not among the instances' logs.
                    let log = state_dir.join("proxies").join(format!("{file_name}.log"));
                    spawn_proxy(exe, name, listen, &socket, &log).await?;
                }
            }
            let router = ProcessProxyRouter::connect(client.clone()).await?;
            Ok((
                Arc::new(router),
                ProxyHandle::Process {
                    client,
                    listen,
                    on_agent: false,
                },
            ))
        }
    }
}

/// The built-in proxy of `name` (`service/env`) hosted by `agent` on its host, listening on
/// `listen` there. Nothing is asked of the agent yet: the proxy starts there with the first
/// route set, so a replica starts while an agent is down and drives it once it is back.
pub fn on_agent(
    agent: &AgentClient,
    name: &str,
    listen: SocketAddr,
) -> (Arc<dyn TrafficRouter>, ProxyHandle) {
    let client = ProxyClient::on_agent(agent.clone(), name, listen);
    (
        Arc::new(ProcessProxyRouter::unchecked(client.clone())),
        ProxyHandle::Process {
            client,
            listen,
            on_agent: true,
        },
    )
}

/// Spawns `exe proxy …` in its own process group (so it outlives the daemon) and waits until it
/// answers on its control socket.
async fn spawn_proxy(
    exe: &Path,
    name: &str,
    listen: SocketAddr,
    socket: &Path,
    log: &Path,
) -> Result<()> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let mut child =
        backstop_drivers::without_daemon_secrets(&mut tokio::process::Command::new(exe))
            .arg("proxy")
            .args(["--name", name, "--listen", &listen.to_string(), "--control"])
            .arg(socket)
            .env(PROXY_ENV, name)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .with_context(|| format!("starting `{} proxy`", exe.display()))?;
    let pid = child.id().unwrap_or(0);
    let client = ProxyClient::new(socket);
    let deadline = tokio::time::Instant::now() + PROXY_START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the proxy for {name} exited with {status} before it answered; last log lines ({}):\n{}",
                log.display(),
                backstop_drivers::process::log_tail(log)
            );
        }
        if client.hello().await.is_ok() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the proxy for {name} (pid {pid}) did not answer on {} within {PROXY_START_TIMEOUT:?}",
                socket.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(proxy = name, pid, %listen, "Built-in proxy process started.");
    // Reap it when it exits while this daemon lives (no zombie); it outlives the daemon
    // otherwise.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(())
}
