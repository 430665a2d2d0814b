//! The built-in proxy as its own process: a data plane that fails static. The daemon spawns
//! `backstop proxy` per environment, configures it over a local Unix socket with versioned
//! route sets and reads its per-version counters back over the same socket. The proxy keeps
//! serving with its last routes while the daemon crashes, hangs or restarts (as Envoy does
//! under its xDS control plane), and keeps them in a file next to its socket so that it serves
//! them again at once if it is itself restarted. A restarted daemon adopts the running proxy.
//!
//! Protocol: one JSON request per connection, one line, answered by one JSON line
//! (`{"Ok": …}` or `{"Err": "…"}`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::proxy::{InstanceStats, LATENCY_BUCKETS_MS, Proxy, Routes, VersionStats, le_label};
use crate::router::{RouteFence, RouterError, TrafficRouter, describe, normalize};

/// How long one control call may take (connect, ask, answer).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the daemon asks the proxy.
// One message per call, built and dropped at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Who are you: [`Hello`].
    Hello,
    /// Serve `routes` from now on, unless a newer route set (`version`) was already applied,
    /// or `fence` names a lease at an older epoch than one this proxy has seen.
    SetRoutes {
        version: u64,
        routes: Routes,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fence: Option<RouteFence>,
    },
    /// The routes served now, with their version.
    Routes,
    /// Per-version counters since the proxy started.
    Stats,
    /// Per-flag-cohort counters since the proxy started (`KEY=on`, `KEY=off`).
    CohortStats,
    /// Per-instance counters of the versions routed now.
    InstanceStats,
    /// Stop serving (drain in-flight requests) and exit.
    Shutdown,
}

/// The proxy's answer to [`ControlRequest::Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub name: String,
    pub listen: SocketAddr,
    pub pid: u32,
    /// Version of the route set it serves (0: none yet).
    pub routes_version: u64,
}

/// A route set and its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionedRoutes {
    pub version: u64,
    pub routes: Routes,
}

/// Counters of one version as they cross the socket (the latency buckets by label, `+Inf`
/// included, since JSON has no infinity).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireStats {
    pub version: String,
    pub requests: u64,
    pub errors: u64,
    pub latency_buckets: Vec<(String, u64)>,
    pub latency_sum_ms: f64,
    pub first_request_at_ms: Option<u64>,
    pub last_error_at_ms: Option<u64>,
}

impl From<&VersionStats> for WireStats {
    fn from(s: &VersionStats) -> Self {
        let ms = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
        };
        WireStats {
            version: s.version.clone(),
            requests: s.requests,
            errors: s.errors,
            latency_buckets: s
                .latency_buckets_ms
                .iter()
                .map(|(le, n)| (le_label(*le), *n))
                .collect(),
            latency_sum_ms: s.latency_sum_ms,
            first_request_at_ms: ms(s.first_request_at),
            last_error_at_ms: ms(s.last_error_at),
        }
    }
}

impl WireStats {
    /// Back to [`VersionStats`]; buckets whose label is not one of the proxy's are dropped.
    pub fn into_stats(self) -> VersionStats {
        let at = |ms: Option<u64>| ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        VersionStats {
            version: self.version,
            requests: self.requests,
            errors: self.errors,
            latency_buckets_ms: self
                .latency_buckets
                .into_iter()
                .filter_map(|(label, n)| {
                    LATENCY_BUCKETS_MS
                        .iter()
                        .find(|le| le_label(**le) == label)
                        .map(|le| (*le, n))
                })
                .collect(),
            latency_sum_ms: self.latency_sum_ms,
            first_request_at: at(self.first_request_at_ms),
            last_error_at: at(self.last_error_at_ms),
        }
    }
}

/// Errors of the control channel, naming it (a socket, or a proxy on an agent).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{target}: {what}")]
    Unreachable { target: String, what: String },
    #[error("{target}: the proxy answered: {message}")]
    Refused { target: String, message: String },
}

/// Runs the control side of `proxy` on `socket` until `stop` is cancelled (also by a
/// [`ControlRequest::Shutdown`]). Serves the route set kept in `<socket>.routes.json` at once,
/// if there is one, and keeps every new set there.
pub async fn serve_control(
    proxy: Proxy,
    socket: &Path,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let controlled = Arc::new(ControlledProxy::new(proxy, routes_file(socket)));
    let epochs = Arc::new(Epochs::default());
    // A socket file left by a proxy that is gone; nobody answers on it.
    let _ = std::fs::remove_file(socket);
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(socket)?;
    // Whoever can connect can route users' traffic: only the daemon's own user may.
    std::fs::set_permissions(socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    loop {
        let (conn, _) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let controlled = controlled.clone();
        let epochs = epochs.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(conn, &controlled, &epochs, &stop).await {
                tracing::warn!(error = %e, "Proxy control request failed.");
            }
        });
    }
}

/// Where a proxy keeps its last route set.
fn routes_file(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".routes.json");
    PathBuf::from(name)
}

/// The newest epoch seen of each lease that routes were applied (or instances started and
/// stopped, on an agent) in the name of. In memory: a restarted proxy or agent learns them again
/// from the next fenced request.
#[derive(Default)]
pub struct Epochs(std::sync::Mutex<std::collections::HashMap<String, i64>>);

impl Epochs {
    /// Records `fence`, or says why it is stale.
    pub fn admit(&self, fence: &RouteFence) -> Result<(), String> {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let newest = seen.entry(fence.lease.clone()).or_insert(fence.epoch);
        if fence.epoch < *newest {
            return Err(format!(
                "stale epoch: lease {} is at epoch {} here, this replica holds epoch {}; \
                 another replica took it over, so this is refused",
                fence.lease, newest, fence.epoch
            ));
        }
        *newest = fence.epoch;
        Ok(())
    }
}

/// A proxy under control: the route set it serves, its version, and the file that keeps it
/// across restarts. One per `backstop proxy` process; an agent holds one per environment.
pub struct ControlledProxy {
    proxy: Proxy,
    version: AtomicU64,
    routes_file: PathBuf,
}

impl ControlledProxy {
    /// Takes `proxy` under control and serves the route set kept in `routes_file` at once, if
    /// there is one.
    pub fn new(proxy: Proxy, routes_file: PathBuf) -> ControlledProxy {
        let version = AtomicU64::new(0);
        if let Ok(text) = std::fs::read_to_string(&routes_file)
            && let Ok(kept) = serde_json::from_str::<VersionedRoutes>(&text)
        {
            tracing::info!(proxy = proxy.name(), version = kept.version, routes = %describe(&kept.routes), "Serving the routes kept from before the restart.");
            proxy.set_routes(kept.routes);
            version.store(kept.version, Ordering::SeqCst);
        }
        ControlledProxy {
            proxy,
            version,
            routes_file,
        }
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    pub fn routes_file(&self) -> &Path {
        &self.routes_file
    }

    /// The answer line to `req`; [`ControlRequest::Shutdown`] is the caller's to carry out.
    pub fn answer(&self, req: ControlRequest, epochs: &Epochs) -> String {
        let proxy = &self.proxy;
        let version = &self.version;
        match req {
            ControlRequest::Hello => reply(&Ok(Hello {
                name: proxy.name().to_string(),
                listen: proxy.local_addr(),
                pid: std::process::id(),
                routes_version: version.load(Ordering::SeqCst),
            })),
            ControlRequest::Routes => reply(&Ok(VersionedRoutes {
                version: version.load(Ordering::SeqCst),
                routes: proxy.routes(),
            })),
            ControlRequest::SetRoutes {
                version: wanted,
                routes,
                fence,
            } => {
                let now = version.load(Ordering::SeqCst);
                if let Some(Err(stale)) = fence.as_ref().map(|f| epochs.admit(f)) {
                    reply::<u64>(&Err(stale))
                } else if wanted < now {
                    reply::<u64>(&Err(format!(
                        "route set {wanted} is older than the one served ({now})"
                    )))
                } else {
                    let kept = VersionedRoutes {
                        version: wanted,
                        routes: routes.clone(),
                    };
                    // Kept before it is served: a restarted proxy must not go back to older
                    // routes.
                    let written = serde_json::to_vec(&kept)
                        .map_err(std::io::Error::other)
                        .and_then(|bytes| write_atomically(&self.routes_file, &bytes));
                    if let Err(e) = written {
                        tracing::warn!(error = %e, file = %self.routes_file.display(), "Cannot keep the route set on disk; serving it anyway.");
                    }
                    proxy.set_routes(routes);
                    version.store(wanted, Ordering::SeqCst);
                    reply(&Ok(wanted))
                }
            }
            ControlRequest::Stats => reply(&Ok((
                proxy
                    .stats()
                    .iter()
                    .map(WireStats::from)
                    .collect::<Vec<_>>(),
                proxy.unrouted_requests(),
            ))),
            ControlRequest::CohortStats => reply(&Ok(proxy
                .cohort_stats()
                .iter()
                .map(WireStats::from)
                .collect::<Vec<_>>())),
            ControlRequest::InstanceStats => reply(&Ok(proxy
                .instance_stats()
                .iter()
                .map(|i| (i.addr, WireStats::from(&i.stats)))
                .collect::<Vec<_>>())),
            ControlRequest::Shutdown => reply(&Ok(())),
        }
    }
}

async fn answer(
    conn: UnixStream,
    controlled: &ControlledProxy,
    epochs: &Epochs,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(1 << 20));
    tokio::time::timeout(CONTROL_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::other("no request within the control timeout"))??;
    let reply = match serde_json::from_str::<ControlRequest>(&line) {
        Err(e) => reply::<()>(&Err(format!("not a control request: {e}"))),
        Ok(req) => {
            if matches!(req, ControlRequest::Shutdown) {
                stop.cancel();
            }
            controlled.answer(req, epochs)
        }
    };
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

pub(crate) fn reply<T: Serialize>(r: &Result<T, String>) -> String {
    serde_json::to_string(r).unwrap_or_else(|e| format!("{{\"Err\":\"cannot encode: {e}\"}}"))
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The daemon's side of a proxy's control channel: the local proxy process's Unix socket, or
/// a proxy hosted by a `backstop agent` on another host.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    transport: Transport,
}

#[derive(Debug, Clone)]
enum Transport {
    Unix(PathBuf),
    /// Proxy `name` of an agent, started there on `listen` when the agent has none yet.
    Agent {
        agent: crate::agent::AgentClient,
        name: String,
        listen: SocketAddr,
    },
}

impl ProxyClient {
    pub fn new(socket: impl Into<PathBuf>) -> ProxyClient {
        ProxyClient {
            transport: Transport::Unix(socket.into()),
        }
    }

    /// The proxy `name` (`service/env`) on `agent`, listening on `listen` there.
    pub fn on_agent(agent: crate::agent::AgentClient, name: &str, listen: SocketAddr) -> Self {
        ProxyClient {
            transport: Transport::Agent {
                agent,
                name: name.to_string(),
                listen,
            },
        }
    }

    /// What this client talks to, for messages.
    pub fn target(&self) -> String {
        match &self.transport {
            Transport::Unix(socket) => format!("proxy control socket {}", socket.display()),
            Transport::Agent { agent, name, .. } => format!("proxy {name} on {}", agent.describe()),
        }
    }

    pub async fn hello(&self) -> Result<Hello, ControlError> {
        self.call(&ControlRequest::Hello).await
    }

    pub async fn routes(&self) -> Result<VersionedRoutes, ControlError> {
        self.call(&ControlRequest::Routes).await
    }

    pub async fn set_routes(&self, version: u64, routes: &Routes) -> Result<u64, ControlError> {
        self.set_routes_fenced(version, routes, None).await
    }

    /// [`ProxyClient::set_routes`] in the name of a lease at an epoch
    /// ([`TrafficRouter::apply_fenced`]).
    pub async fn set_routes_fenced(
        &self,
        version: u64,
        routes: &Routes,
        fence: Option<&RouteFence>,
    ) -> Result<u64, ControlError> {
        self.call(&ControlRequest::SetRoutes {
            version,
            routes: routes.clone(),
            fence: fence.cloned(),
        })
        .await
    }

    /// Per-version counters and the requests answered 503 for want of routes.
    pub async fn stats(&self) -> Result<(Vec<VersionStats>, u64), ControlError> {
        let (stats, unrouted): (Vec<WireStats>, u64) = self.call(&ControlRequest::Stats).await?;
        Ok((
            stats.into_iter().map(WireStats::into_stats).collect(),
            unrouted,
        ))
    }

    /// Per-flag-cohort counters (`KEY=on`, `KEY=off`).
    pub async fn cohort_stats(&self) -> Result<Vec<VersionStats>, ControlError> {
        let stats: Vec<WireStats> = self.call(&ControlRequest::CohortStats).await?;
        Ok(stats.into_iter().map(WireStats::into_stats).collect())
    }

    /// Per-instance counters of the versions routed now.
    pub async fn instance_stats(&self) -> Result<Vec<InstanceStats>, ControlError> {
        let stats: Vec<(SocketAddr, WireStats)> = self.call(&ControlRequest::InstanceStats).await?;
        Ok(stats
            .into_iter()
            .map(|(addr, s)| InstanceStats {
                addr,
                stats: s.into_stats(),
            })
            .collect())
    }

    pub async fn shutdown(&self) -> Result<(), ControlError> {
        self.call(&ControlRequest::Shutdown).await
    }

    async fn call<T: DeserializeOwned>(&self, req: &ControlRequest) -> Result<T, ControlError> {
        let target = self.target();
        let socket = match &self.transport {
            Transport::Unix(socket) => socket,
            Transport::Agent {
                agent,
                name,
                listen,
            } => {
                let op = crate::agent::AgentRequest::Proxy {
                    name: name.clone(),
                    listen: *listen,
                    request: req.clone(),
                };
                return agent.call(&op).await.map_err(|e| match e {
                    crate::agent::AgentError::Refused { message, .. } => {
                        ControlError::Refused { target, message }
                    }
                    other => ControlError::Unreachable {
                        target,
                        what: other.to_string(),
                    },
                });
            }
        };
        let unreachable = |what: String| ControlError::Unreachable {
            target: target.clone(),
            what,
        };
        let exchange = async {
            let mut conn = UnixStream::connect(socket)
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
            line.push('\n');
            conn.write_all(line.as_bytes())
                .await
                .map_err(|e| format!("cannot send: {e}"))?;
            let mut answer = String::new();
            BufReader::new(conn)
                .read_line(&mut answer)
                .await
                .map_err(|e| format!("cannot read the answer: {e}"))?;
            Ok::<String, String>(answer)
        };
        let answer = tokio::time::timeout(CONTROL_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {CONTROL_TIMEOUT:?}")))?
            .map_err(unreachable)?;
        let parsed: Result<T, String> = serde_json::from_str(&answer)
            .map_err(|e| unreachable(format!("unreadable answer {answer:?}: {e}")))?;
        parsed.map_err(|message| ControlError::Refused { target, message })
    }
}

/// The [`TrafficRouter`] of a built-in proxy running as its own process.
pub struct ProcessProxyRouter {
    client: ProxyClient,
    /// The version of the last route set this daemon applied (starts from the proxy's).
    version: AtomicU64,
    /// The last fence this daemon applied routes under: a new one is sent even when the routes
    /// are unchanged, so the proxy learns the new epoch before a former holder can act.
    fence: std::sync::Mutex<Option<RouteFence>>,
}

impl ProcessProxyRouter {
    /// A router for the proxy behind `client`, which must answer.
    pub async fn connect(client: ProxyClient) -> Result<ProcessProxyRouter, ControlError> {
        let hello = client.hello().await?;
        Ok(ProcessProxyRouter {
            client,
            version: AtomicU64::new(hello.routes_version),
            fence: std::sync::Mutex::new(None),
        })
    }

    /// A router for the proxy behind `client` that is not asked anything until routes are
    /// applied (a proxy on an agent that may be unreachable now); it starts from the version the
    /// proxy reports then.
    pub fn unchecked(client: ProxyClient) -> ProcessProxyRouter {
        ProcessProxyRouter {
            client,
            version: AtomicU64::new(0),
            fence: std::sync::Mutex::new(None),
        }
    }

    pub fn client(&self) -> &ProxyClient {
        &self.client
    }
}

fn control_error(e: ControlError) -> RouterError {
    let (target, message) = match e {
        ControlError::Unreachable { target, what } => (target, what),
        ControlError::Refused { target, message } => (target, message),
    };
    RouterError::Rejected {
        router: "builtin",
        target,
        command: "control".into(),
        message,
    }
}

#[async_trait]
impl TrafficRouter for ProcessProxyRouter {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn apply(&self, routes: &Routes) -> Result<(), RouterError> {
        self.apply_fenced(routes, None).await
    }

    async fn apply_fenced(
        &self,
        routes: &Routes,
        fence: Option<&RouteFence>,
    ) -> Result<(), RouterError> {
        let want = normalize(routes);
        let served = self.client.routes().await.map_err(control_error)?;
        let new_fence = fence.is_some_and(|f| {
            self.fence
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                != Some(f)
        });
        if normalize(&served.routes) == want && !new_fence {
            return Ok(());
        }
        let next = self.version.load(Ordering::SeqCst).max(served.version) + 1;
        let applied = self
            .client
            .set_routes_fenced(next, &want, fence)
            .await
            .map_err(control_error)?;
        self.version.store(applied, Ordering::SeqCst);
        if let Some(f) = fence {
            *self.fence.lock().unwrap_or_else(|p| p.into_inner()) = Some(f.clone());
        }
        Ok(())
    }

    async fn current(&self) -> Result<Routes, RouterError> {
        Ok(normalize(
            &self.client.routes().await.map_err(control_error)?.routes,
        ))
    }

    async fn stats(&self) -> Result<Option<Vec<VersionStats>>, RouterError> {
        Ok(Some(self.client.stats().await.map_err(control_error)?.0))
    }

    async fn cohort_stats(&self) -> Result<Option<Vec<VersionStats>>, RouterError> {
        Ok(Some(
            self.client.cohort_stats().await.map_err(control_error)?,
        ))
    }

    async fn instance_stats(&self) -> Result<Option<Vec<InstanceStats>>, RouterError> {
        Ok(Some(
            self.client.instance_stats().await.map_err(control_error)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Upstream;

    async fn started(socket: &Path) -> (Proxy, CancellationToken) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy::start(listener, "shop/prod".into()).await;
        let stop = CancellationToken::new();
        let (p, s, path) = (proxy.clone(), stop.clone(), socket.to_path_buf());
        tokio::spawn(async move { serve_control(p, &path, s).await });
        let client = ProxyClient::new(socket);
        for _ in 0..100 {
            if client.hello().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (proxy, stop)
    }

    /// Two replicas' routers on one proxy: once the new holder of a lease applied routes at
    /// its epoch, the former holder's routes (older epoch) are refused and change nothing.
    #[tokio::test]
    async fn a_former_lease_holder_cannot_move_traffic() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("shop-prod.sock");
        let (proxy, _stop) = started(&socket).await;
        let upstream = |version: &str, port: u16| Upstream {
            version: version.into(),
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            replicas: Vec::new(),
        };
        let stable_only = Routes {
            stable: Some(upstream("v1", 9)),
            canary: None,
            canary_weight: 0.0,
        };
        let with_canary = Routes {
            canary: Some(upstream("v2", 10)),
            canary_weight: 50.0,
            ..stable_only.clone()
        };
        let fence = |epoch| RouteFence {
            lease: "rollout/r1".into(),
            epoch,
        };
        let old = ProcessProxyRouter::connect(ProxyClient::new(&socket))
            .await
            .unwrap();
        let new = ProcessProxyRouter::connect(ProxyClient::new(&socket))
            .await
            .unwrap();
        old.apply_fenced(&with_canary, Some(&fence(1)))
            .await
            .unwrap();
        // The new holder's routes happen to be the same: they are sent anyway, so the proxy
        // learns the epoch.
        new.apply_fenced(&with_canary, Some(&fence(2)))
            .await
            .unwrap();
        new.apply_fenced(&stable_only, Some(&fence(2)))
            .await
            .unwrap();
        let err = old
            .apply_fenced(&with_canary, Some(&fence(1)))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("stale epoch"), "{err}");
        assert_eq!(normalize(&proxy.routes()), normalize(&stable_only));
        // Other leases and unfenced callers are not affected.
        old.apply_fenced(
            &with_canary,
            Some(&RouteFence {
                lease: "env/shop/prod".into(),
                epoch: 1,
            }),
        )
        .await
        .unwrap();
        assert_eq!(normalize(&proxy.routes()), normalize(&with_canary));
    }

    #[tokio::test]
    async fn routes_are_versioned_kept_across_a_restart_and_counters_cross_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("shop-prod.sock");
        let (proxy, stop) = started(&socket).await;
        let client = ProxyClient::new(&socket);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&socket).unwrap().permissions(),
        );
        assert_eq!(
            mode & 0o777,
            0o600,
            "only the daemon's user may route traffic"
        );
        let hello = client.hello().await.unwrap();
        assert_eq!(
            (hello.name.as_str(), hello.listen, hello.routes_version),
            ("shop/prod", proxy.local_addr(), 0)
        );

        let routes = Routes {
            stable: Some(Upstream {
                version: "v1".into(),
                addr: "127.0.0.1:9".parse().unwrap(),
                replicas: Vec::new(),
            }),
            canary: None,
            canary_weight: 0.0,
        };
        assert_eq!(client.set_routes(3, &routes).await.unwrap(), 3);
        let refused = client.set_routes(2, &routes).await.unwrap_err().to_string();
        assert!(
            refused.contains("older than the one served (3)"),
            "{refused}"
        );
        assert_eq!(proxy.routes(), routes);
        let (stats, unrouted) = client.stats().await.unwrap();
        assert_eq!(
            (stats.len(), stats[0].version.as_str(), unrouted),
            (1, "v1", 0)
        );
        assert_eq!(stats[0].latency_buckets_ms.len(), LATENCY_BUCKETS_MS.len());

        // A restarted proxy serves the kept routes before anyone tells it anything.
        client.shutdown().await.unwrap();
        assert!(stop.is_cancelled());
        proxy.shutdown().await;
        let (again, _stop) = started(&socket).await;
        assert_eq!(again.routes(), routes);
        assert_eq!(client.routes().await.unwrap().version, 3);
    }

    #[tokio::test]
    async fn a_bad_request_gets_an_error_answer_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("p.sock");
        let (proxy, _stop) = started(&socket).await;
        let mut conn = UnixStream::connect(&socket).await.unwrap();
        conn.write_all(b"{\"op\":\"explode\"}\n").await.unwrap();
        let mut answer = String::new();
        BufReader::new(conn).read_line(&mut answer).await.unwrap();
        assert!(
            answer.contains("\"Err\"") && answer.contains("not a control request"),
            "{answer}"
        );
        assert_eq!(proxy.routes(), Routes::default());
    }
}
