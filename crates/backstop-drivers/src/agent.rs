//! `backstop agent`: the data plane of one host. It hosts that host's built-in proxies (one per
//! environment placed there) and starts, stops and checks that host's instances, for whichever
//! replica holds the work. Users' traffic never waits on a replica: when every replica is gone
//! or cut off, the agent keeps serving with the last routes and the instances keep running
//! (they run in their own process groups and outlive even a restart of the agent).
//!
//! Replicas drive it over TCP. Each connection is one exchange:
//!
//! 1. the replica's token, one line (the agent keeps only its sha256, made by
//!    `backstop agent token`), checked before anything else is read;
//! 2. one JSON [`AgentRequest`], one line; [`AgentRequest::Artifact`] is followed by the
//!    artifact's bytes;
//! 3. one JSON answer line, `{"Ok": …}` or `{"Err": "…"}`.
//!
//! Requests that change the world (routes, starting and stopping instances) carry the fencing
//! epoch of the lease they are made under; the agent refuses an epoch older than one it has
//! seen for that lease, so a replica that was paused or cut off and has been replaced changes
//! nothing here. The channel is plain TCP: run agents on a private network (or a tunnel).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::process::{self, Instance, InstanceSpec};
use crate::proxy::Proxy;
use crate::proxy_control::{
    CONTROL_TIMEOUT, ControlRequest, ControlledProxy, Epochs, Hello, reply, write_atomically,
};
use crate::router::RouteFence;

/// The file in the agent's state folder that keeps its token's sha256.
pub const TOKEN_HASH_FILE: &str = "agent.token.sha256";
/// The longest token line read before the token is checked.
const MAX_TOKEN_LINE: u64 = 512;
/// The longest request line.
const MAX_REQUEST_LINE: u64 = 1 << 20;
/// The largest artifact an agent accepts.
pub const MAX_ARTIFACT_BYTES: u64 = 4 << 30;
/// How long an artifact upload may take.
const ARTIFACT_TIMEOUT: Duration = Duration::from_secs(300);
/// Extra time over an operation's own limit for the exchange around it.
const EXCHANGE_MARGIN: Duration = Duration::from_secs(10);

/// What a replica asks an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AgentRequest {
    /// Who are you: [`AgentHello`].
    Hello,
    /// A control request for the proxy `name`, started on `listen` when the agent has none.
    Proxy {
        name: String,
        listen: SocketAddr,
        request: ControlRequest,
    },
    /// A free port on the agent's host, for an instance.
    FreePort,
    /// The path of the artifact whose sha256 is `sha256` on the agent's host. With `len` > 0 the
    /// artifact's bytes follow and are stored (verified) first; with `len` 0 the answer is
    /// `null` when the agent does not have it.
    Artifact { sha256: String, len: u64 },
    /// Start an instance and wait until it is healthy.
    Start {
        spec: InstanceSpec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fence: Option<RouteFence>,
    },
    /// Stop an instance's process group (SIGTERM, `grace_ms`, SIGKILL).
    Stop {
        instance: Instance,
        grace_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fence: Option<RouteFence>,
    },
    /// Whether the instance's process still runs.
    Running { instance: Instance },
    /// The process group of instance `instance_id`, if one runs.
    FindGroup { instance_id: String },
    /// One health check on `127.0.0.1:port` of the agent's host.
    Health {
        port: u16,
        path: String,
        timeout_ms: u64,
    },
    /// Stop serving (the proxies drain) and exit; the instances keep running.
    Shutdown,
    /// Health checks of a running instance until it answers, for at most `within_ms`.
    AwaitHealthy {
        instance: Instance,
        path: String,
        timeout_ms: u64,
        interval_ms: u64,
        within_ms: u64,
    },
}

/// The agent's answer to [`AgentRequest::Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentHello {
    pub name: String,
    pub pid: u32,
    pub version: String,
    /// The proxies it hosts.
    pub proxies: Vec<Hello>,
}

/// Errors of a replica's calls to an agent, naming the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{agent} is unreachable: {what}")]
    Unreachable { agent: String, what: String },
    #[error(
        "{agent} refused the token from {source_of_token}: it is not the one `backstop agent token` made on that host; put that token in {source_of_token}"
    )]
    Unauthorized {
        agent: String,
        source_of_token: String,
    },
    #[error("{agent}: {message}")]
    Refused { agent: String, message: String },
}

/// A replica's handle on one agent.
#[derive(Clone)]
pub struct AgentClient {
    name: String,
    address: String,
    token: Arc<str>,
    /// Where the token came from (an environment variable's name), for messages.
    token_source: String,
    /// This host's own agent: it reads the artifacts where they are, nothing is uploaded.
    same_host: bool,
}

impl fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentClient")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl AgentClient {
    /// The agent `name` at `address` (`HOST:PORT`), called with `token` (read from
    /// `token_source`).
    pub fn new(name: &str, address: &str, token: &str, token_source: &str) -> AgentClient {
        AgentClient {
            name: name.to_string(),
            address: address.to_string(),
            token: Arc::from(token.trim()),
            token_source: token_source.to_string(),
            same_host: false,
        }
    }

    /// This host's own agent at `address`, called with `token` (kept by the daemon in its
    /// state folder).
    pub fn local(address: &str, token: &str) -> AgentClient {
        AgentClient {
            same_host: true,
            ..AgentClient::new("local", address, token, "STATE_DIR/agent.token")
        }
    }

    /// Whether it is this host's own agent.
    pub fn is_local(&self) -> bool {
        self.same_host
    }

    /// Asks the agent to stop (its proxies drain; its instances keep running).
    pub async fn shutdown(&self) -> Result<(), AgentError> {
        self.call(&AgentRequest::Shutdown).await
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// `agent NAME (ADDRESS)`, for messages.
    pub fn describe(&self) -> String {
        format!("agent {} ({})", self.name, self.address)
    }

    pub async fn hello(&self) -> Result<AgentHello, AgentError> {
        self.call(&AgentRequest::Hello).await
    }

    pub async fn free_port(&self) -> Result<u16, AgentError> {
        self.call(&AgentRequest::FreePort).await
    }

    /// The path on the agent's host of the artifact at `local` (sha256 `sha256`), uploaded
    /// first when the agent does not have it yet.
    pub async fn ensure_artifact(&self, sha256: &str, local: &Path) -> Result<String, AgentError> {
        if self.same_host {
            return Ok(local.display().to_string());
        }
        let ask = AgentRequest::Artifact {
            sha256: sha256.to_string(),
            len: 0,
        };
        if let Some(path) = self.call::<Option<String>>(&ask).await? {
            return Ok(path);
        }
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| self.refused(format!("cannot read {}: {e}", local.display())))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| self.refused(format!("cannot read {}: {e}", local.display())))?
            .len();
        let put = AgentRequest::Artifact {
            sha256: sha256.to_string(),
            len,
        };
        let stored: Option<String> = self
            .exchange(&put, Some((file, len)), ARTIFACT_TIMEOUT)
            .await?;
        stored.ok_or_else(|| self.refused("the artifact was not kept".into()))
    }

    /// Starts an instance on the agent's host and waits until it is healthy.
    pub async fn start(
        &self,
        spec: &InstanceSpec,
        fence: Option<&RouteFence>,
    ) -> Result<Instance, AgentError> {
        let req = AgentRequest::Start {
            spec: spec.clone(),
            fence: fence.cloned(),
        };
        self.exchange(&req, None, spec.start_timeout + EXCHANGE_MARGIN)
            .await
    }

    pub async fn stop(
        &self,
        instance: &Instance,
        grace: Duration,
        fence: Option<&RouteFence>,
    ) -> Result<(), AgentError> {
        let req = AgentRequest::Stop {
            instance: instance.clone(),
            grace_ms: millis(grace),
            fence: fence.cloned(),
        };
        self.exchange(&req, None, grace * 2 + EXCHANGE_MARGIN).await
    }

    pub async fn is_running(&self, instance: &Instance) -> Result<bool, AgentError> {
        self.call(&AgentRequest::Running {
            instance: instance.clone(),
        })
        .await
    }

    pub async fn find_group(&self, instance_id: &str) -> Result<Option<u32>, AgentError> {
        self.call(&AgentRequest::FindGroup {
            instance_id: instance_id.to_string(),
        })
        .await
    }

    pub async fn check_health(
        &self,
        port: u16,
        path: &str,
        timeout: Duration,
    ) -> Result<(), AgentError> {
        let req = AgentRequest::Health {
            port,
            path: path.to_string(),
            timeout_ms: millis(timeout),
        };
        self.exchange(&req, None, timeout + EXCHANGE_MARGIN).await
    }

    pub async fn await_healthy(
        &self,
        instance: &Instance,
        path: &str,
        timeout: Duration,
        interval: Duration,
        within: Duration,
    ) -> Result<(), AgentError> {
        let req = AgentRequest::AwaitHealthy {
            instance: instance.clone(),
            path: path.to_string(),
            timeout_ms: millis(timeout),
            interval_ms: millis(interval),
            within_ms: millis(within),
        };
        self.exchange(&req, None, within + timeout + EXCHANGE_MARGIN)
            .await
    }

    /// One exchange bounded by the control timeout.
    pub async fn call<T: DeserializeOwned>(&self, req: &AgentRequest) -> Result<T, AgentError> {
        self.exchange(req, None, CONTROL_TIMEOUT).await
    }

    fn refused(&self, message: String) -> AgentError {
        AgentError::Refused {
            agent: self.describe(),
            message,
        }
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        req: &AgentRequest,
        body: Option<(tokio::fs::File, u64)>,
        limit: Duration,
    ) -> Result<T, AgentError> {
        let unreachable = |what: String| AgentError::Unreachable {
            agent: self.describe(),
            what,
        };
        let exchange = async {
            let mut conn = TcpStream::connect(&self.address)
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            let mut head = format!("{}\n", self.token);
            head.push_str(&serde_json::to_string(req).map_err(|e| e.to_string())?);
            head.push('\n');
            conn.write_all(head.as_bytes())
                .await
                .map_err(|e| format!("cannot send: {e}"))?;
            if let Some((file, len)) = body {
                let copied = tokio::io::copy(&mut file.take(len), &mut conn)
                    .await
                    .map_err(|e| format!("cannot send the artifact: {e}"))?;
                if copied != len {
                    return Err(format!(
                        "the artifact shrank while sent ({copied} of {len} bytes)"
                    ));
                }
            }
            let mut answer = String::new();
            BufReader::new(conn.take(MAX_REQUEST_LINE * 16))
                .read_line(&mut answer)
                .await
                .map_err(|e| format!("cannot read the answer: {e}"))?;
            Ok::<String, String>(answer)
        };
        let answer = tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {limit:?}")))?
            .map_err(unreachable)?;
        if answer.is_empty() {
            return Err(unreachable(
                "the connection closed without an answer".into(),
            ));
        }
        let parsed: Result<T, String> = serde_json::from_str(&answer)
            .map_err(|e| unreachable(format!("unreadable answer {answer:?}: {e}")))?;
        parsed.map_err(|message| {
            if message.starts_with(UNAUTHORIZED) {
                AgentError::Unauthorized {
                    agent: self.describe(),
                    source_of_token: self.token_source.clone(),
                }
            } else {
                self.refused(message)
            }
        })
    }
}

const UNAUTHORIZED: &str = "unauthorized";

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A new agent token for `state_dir`: its sha256 replaces the stored one (so an older token
/// stops working), the token itself is returned to be shown once and given to the replicas.
pub fn new_token(state_dir: &Path) -> std::io::Result<String> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = format!("bsa_{}", hex::encode(raw));
    std::fs::create_dir_all(state_dir)?;
    let path = state_dir.join(TOKEN_HASH_FILE);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(backstop_core::secret::hash_token(&token).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}

/// How an agent runs.
pub struct AgentOptions {
    pub name: String,
    /// Its state folder: the token's hash, kept proxies and their routes, artifacts, logs.
    pub state_dir: PathBuf,
}

/// Runs the agent on `listener` until `stop` is cancelled; proxies kept from before a restart
/// serve their last routes at once, before any replica calls.
pub async fn serve_agent(
    listener: TcpListener,
    opts: AgentOptions,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let hash_path = opts.state_dir.join(TOKEN_HASH_FILE);
    let token_hash = std::fs::read_to_string(&hash_path).map_err(|e| {
        std::io::Error::other(format!(
            "{}: {e}; run `backstop agent token --state-dir {}` first and give the token it prints to the replicas",
            hash_path.display(),
            opts.state_dir.display()
        ))
    })?;
    let agent = Arc::new(Agent {
        stop: stop.clone(),
        name: opts.name,
        token_hash: token_hash.trim().to_string(),
        proxies: tokio::sync::Mutex::new(BTreeMap::new()),
        epochs: Epochs::default(),
        state_dir: opts.state_dir,
    });
    agent.restart_kept_proxies().await;
    loop {
        let (conn, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted?,
        };
        let agent = agent.clone();
        tokio::spawn(async move {
            if let Err(e) = agent.answer(conn).await {
                tracing::warn!(%peer, error = %e, "Agent request failed.");
            }
        });
    }
    for hosted in agent.proxies.lock().await.values() {
        hosted.controlled.proxy().shutdown().await;
    }
    Ok(())
}

struct Agent {
    stop: CancellationToken,
    name: String,
    state_dir: PathBuf,
    token_hash: String,
    proxies: tokio::sync::Mutex<BTreeMap<String, Arc<HostedProxy>>>,
    /// One record of epochs for routes and instances alike: they are fenced by the same leases.
    epochs: Epochs,
}

struct HostedProxy {
    controlled: ControlledProxy,
    listen: SocketAddr,
}

/// What the agent keeps of a proxy to start it again after its own restart.
#[derive(Serialize, Deserialize)]
struct KeptProxy {
    name: String,
    listen: SocketAddr,
}

impl Agent {
    fn proxies_dir(&self) -> PathBuf {
        self.state_dir.join("proxies")
    }

    fn kept_file(&self, name: &str) -> PathBuf {
        self.proxies_dir()
            .join(format!("{}.json", name.replace('/', "-")))
    }

    async fn restart_kept_proxies(&self) {
        let Ok(dir) = std::fs::read_dir(self.proxies_dir()) else {
            return;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            let is_kept = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".json") && !n.ends_with(".routes.json"));
            if !is_kept {
                continue;
            }
            let kept = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<KeptProxy>(&t).ok());
            match kept {
                Some(kept) => {
                    if let Err(e) = self.proxy(&kept.name, kept.listen).await {
                        tracing::warn!(proxy = kept.name, listen = %kept.listen, error = e, "Cannot start a kept proxy again.");
                    }
                }
                None => tracing::warn!(file = %path.display(), "Unreadable kept proxy; skipped."),
            }
        }
    }

    /// The hosted proxy `name`, started on `listen` when there is none.
    async fn proxy(&self, name: &str, listen: SocketAddr) -> Result<Arc<HostedProxy>, String> {
        let mut proxies = self.proxies.lock().await;
        if let Some(hosted) = proxies.get(name) {
            if hosted.listen != listen {
                return Err(format!(
                    "proxy {name} listens on {} here, not on {listen}: stop it first",
                    hosted.listen
                ));
            }
            return Ok(hosted.clone());
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("proxy {name}: cannot listen on {listen}: {e}"))?;
        let dir = self.proxies_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let kept = serde_json::to_vec(&KeptProxy {
            name: name.to_string(),
            listen,
        })
        .map_err(|e| e.to_string())?;
        let file = self.kept_file(name);
        write_atomically(&file, &kept).map_err(|e| format!("{}: {e}", file.display()))?;
        let proxy = Proxy::start(listener, name.to_string()).await;
        let routes_file = dir.join(format!("{}.routes.json", name.replace('/', "-")));
        tracing::info!(proxy = name, %listen, "Proxy started.");
        let hosted = Arc::new(HostedProxy {
            controlled: ControlledProxy::new(proxy, routes_file),
            listen,
        });
        proxies.insert(name.to_string(), hosted.clone());
        Ok(hosted)
    }

    async fn answer(&self, conn: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = conn.into_split();
        let mut reader = BufReader::new(read);
        let mut token = String::new();
        let mut line = String::new();
        let read_head = async {
            (&mut reader)
                .take(MAX_TOKEN_LINE)
                .read_line(&mut token)
                .await?;
            if !backstop_core::secret::token_matches(&token, &self.token_hash) {
                return Ok::<bool, std::io::Error>(false);
            }
            (&mut reader)
                .take(MAX_REQUEST_LINE)
                .read_line(&mut line)
                .await?;
            Ok(true)
        };
        let authorized = tokio::time::timeout(CONTROL_TIMEOUT, read_head)
            .await
            .map_err(|_| std::io::Error::other("no request within the control timeout"))??;
        let reply = if authorized {
            match serde_json::from_str::<AgentRequest>(&line) {
                Err(e) => reply::<()>(&Err(format!("not an agent request: {e}"))),
                Ok(req) => self.handle(req, &mut reader).await,
            }
        } else {
            tracing::warn!(agent = self.name, "Refused a request with a wrong token.");
            reply::<()>(&Err(format!(
                "{UNAUTHORIZED}: wrong token for agent {}",
                self.name
            )))
        };
        write.write_all(reply.as_bytes()).await?;
        write.write_all(b"\n").await?;
        write.shutdown().await
    }

    async fn handle<R: AsyncRead + Unpin>(&self, req: AgentRequest, body: &mut R) -> String {
        let admit = |fence: &Option<RouteFence>| match fence {
            Some(f) => self.epochs.admit(f),
            None => Ok(()),
        };
        match req {
            AgentRequest::Hello => {
                let proxies = self.proxies.lock().await;
                let hellos = proxies
                    .values()
                    .map(|h| {
                        serde_json::from_str::<Result<Hello, String>>(
                            &h.controlled.answer(ControlRequest::Hello, &self.epochs),
                        )
                    })
                    .filter_map(|r| r.ok().and_then(Result::ok))
                    .collect();
                reply(&Ok(AgentHello {
                    name: self.name.clone(),
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    proxies: hellos,
                }))
            }
            AgentRequest::Proxy {
                name,
                listen,
                request,
            } => {
                if matches!(request, ControlRequest::Shutdown) {
                    return reply(&self.stop_proxy(&name).await);
                }
                match self.proxy(&name, listen).await {
                    Ok(hosted) => hosted.controlled.answer(request, &self.epochs),
                    Err(e) => reply::<()>(&Err(e)),
                }
            }
            AgentRequest::Shutdown => {
                self.stop.cancel();
                reply::<()>(&Ok(()))
            }
            AgentRequest::FreePort => reply(&process::free_port().map_err(|e| e.to_string())),
            AgentRequest::Artifact { sha256, len } => {
                reply(&self.artifact(&sha256, len, body).await)
            }
            AgentRequest::Start { mut spec, fence } => {
                if let Err(stale) = admit(&fence) {
                    return reply::<()>(&Err(stale));
                }
                if !valid_instance_id(&spec.instance_id) {
                    return reply::<()>(&Err(format!(
                        "invalid instance id {:?}",
                        spec.instance_id
                    )));
                }
                // Logs stay on the host that runs the instance, in the agent's folder.
                spec.log_path = self
                    .state_dir
                    .join("logs")
                    .join(format!("{}.log", spec.instance_id));
                reply(&process::start(&spec).await.map_err(|e| e.to_string()))
            }
            AgentRequest::Stop {
                instance,
                grace_ms,
                fence,
            } => {
                if let Err(stale) = admit(&fence) {
                    return reply::<()>(&Err(stale));
                }
                let grace = Duration::from_millis(grace_ms);
                reply(
                    &process::stop(&instance, grace)
                        .await
                        .map_err(|e| e.to_string()),
                )
            }
            AgentRequest::Running { instance } => {
                reply::<bool>(&Ok(process::is_running(&instance)))
            }
            AgentRequest::FindGroup { instance_id } => {
                reply::<Option<u32>>(&Ok(process::find_group(&instance_id)))
            }
            AgentRequest::Health {
                port,
                path,
                timeout_ms,
            } => reply(
                &process::check_health(port, &path, Duration::from_millis(timeout_ms))
                    .await
                    .map_err(|e| e.to_string()),
            ),
            AgentRequest::AwaitHealthy {
                instance,
                path,
                timeout_ms,
                interval_ms,
                within_ms,
            } => reply(
                &process::await_healthy(
                    &instance,
                    &path,
                    Duration::from_millis(timeout_ms),
                    Duration::from_millis(interval_ms),
                    Duration::from_millis(within_ms),
                )
                .await
                .map_err(|e| e.to_string()),
            ),
        }
    }

    async fn stop_proxy(&self, name: &str) -> Result<(), String> {
        let hosted = self.proxies.lock().await.remove(name);
        if let Some(hosted) = hosted {
            hosted.controlled.proxy().shutdown().await;
            let _ = std::fs::remove_file(hosted.controlled.routes_file());
        }
        let _ = std::fs::remove_file(self.kept_file(name));
        Ok(())
    }

    /// The stored artifact `sha256`, storing the `len` bytes that follow first when `len` > 0.
    async fn artifact<R: AsyncRead + Unpin>(
        &self,
        sha256: &str,
        len: u64,
        body: &mut R,
    ) -> Result<Option<String>, String> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("invalid sha256 {sha256:?}"));
        }
        let dir = self.state_dir.join("artifacts");
        let path = dir.join(sha256);
        if file_has_digest(&path, sha256) {
            return Ok(Some(path.display().to_string()));
        }
        if len == 0 {
            return Ok(None);
        }
        if len > MAX_ARTIFACT_BYTES {
            return Err(format!(
                "artifact of {len} bytes is over this agent's limit of {MAX_ARTIFACT_BYTES}"
            ));
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tmp = dir.join(format!("{sha256}.{}.part", std::process::id()));
        let received = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut hasher = Sha256::new();
            let mut left = body.take(len);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = left.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n]).await?;
            }
            file.sync_all().await?;
            Ok::<String, std::io::Error>(hex::encode(hasher.finalize()))
        };
        let got = tokio::time::timeout(ARTIFACT_TIMEOUT, received)
            .await
            .map_err(|_| "the artifact did not arrive in time".to_string())
            .and_then(|r| r.map_err(|e| format!("receiving the artifact: {e}")));
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if got != sha256 {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!(
                "the artifact received has sha256 {got}, not {sha256}; nothing kept"
            ));
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(sha256, bytes = len, "Artifact stored.");
        Ok(Some(path.display().to_string()))
    }
}

/// An instance id names its log file: no path separators, no hidden or parent names.
fn valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && !id.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

fn file_has_digest(path: &Path, sha256: &str) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    use std::io::Read;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    hex::encode(hasher.finalize()) == sha256
}
