//! Built-in HTTP/1.1 reverse proxy, one per (service, environment).
//!
//! Each request is sent to the canary with probability `canary_weight / 100`, otherwise to the
//! stable upstream. Per version the proxy records requests, errors (5xx answers from the upstream
//! and upstream failures, which the proxy answers with 502) and a latency histogram with the
//! Prometheus default buckets, in milliseconds.
//!
//! Latency is measured from the moment the proxy has the request head until the upstream's
//! response head has arrived (time to response headers). Bodies are streamed through and not
//! included.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::Authority;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Upper bounds of the latency buckets, in milliseconds (Prometheus defaults, scaled from
/// seconds), the last one being `+Inf`.
pub const LATENCY_BUCKETS_MS: [f64; 12] = [
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    f64::INFINITY,
];

/// How long the proxy waits for an upstream's response head before answering 502.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may take to send a request head (guards against idle half-open clients).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `shutdown` lets open connections finish their in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Response header naming the version that served the request.
pub const VERSION_HEADER: &str = "x-backstop-version";

/// Response header an application sets to say which side of its feature flags a request was
/// on: `x-backstop-flags: new-checkout=on, dark-mode=off`. The proxy counts each flag's
/// cohorts from it, so a staged re-enable can judge the on cohort against the off one.
pub const FLAGS_HEADER: &str = "x-backstop-flags";
/// Distinct flag cohorts counted at most (the header comes from applications).
const COHORTS_KEPT: usize = 512;

/// One running version of a service that the proxy can send traffic to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Upstream {
    pub version: String,
    pub addr: SocketAddr,
    /// The version's further instances (`run.instances`): the proxy spreads the version's
    /// share of traffic evenly over `addr` and these, and counts each instance apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<SocketAddr>,
}

impl Upstream {
    /// Every instance's address, `addr` first.
    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.addr).chain(self.replicas.iter().copied())
    }
}

/// Where the proxy sends traffic. `canary_weight` is a percentage in `0..=100` (values outside
/// are clamped, NaN counts as 0).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Routes {
    pub stable: Option<Upstream>,
    pub canary: Option<Upstream>,
    pub canary_weight: f64,
}

/// Cumulative counters for one version since the proxy started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionStats {
    pub version: String,
    pub requests: u64,
    pub errors: u64,
    /// Cumulative counts by upper bound in ms, the bounds of [`LATENCY_BUCKETS_MS`].
    pub latency_buckets_ms: Vec<(f64, u64)>,
    pub latency_sum_ms: f64,
    pub first_request_at: Option<SystemTime>,
    pub last_error_at: Option<SystemTime>,
}

impl VersionStats {
    /// Counts accumulated between `earlier` and `self` (two snapshots of the same version),
    /// i.e. one interval's increments, in the shape of a `backstop-scenario/v1` arm. Saturates
    /// at zero if `earlier` is not really earlier. Timestamps are those of `self`.
    pub fn since(&self, earlier: &VersionStats) -> VersionStats {
        let latency_buckets_ms = self
            .latency_buckets_ms
            .iter()
            .map(|(le, n)| {
                let before = earlier
                    .latency_buckets_ms
                    .iter()
                    .find(|(b, _)| b == le)
                    .map_or(0, |(_, m)| *m);
                (*le, n.saturating_sub(before))
            })
            .collect();
        VersionStats {
            version: self.version.clone(),
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            latency_buckets_ms,
            latency_sum_ms: (self.latency_sum_ms - earlier.latency_sum_ms).max(0.0),
            first_request_at: self.first_request_at,
            last_error_at: self.last_error_at,
        }
    }
}

/// Label of a bucket bound as written in scenario files and Prometheus `le`: `"5"`, `"2500"`,
/// `"+Inf"`.
pub fn le_label(le: f64) -> String {
    if le.is_infinite() {
        "+Inf".to_owned()
    } else {
        format!("{le}")
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: u64,
    errors: u64,
    /// Non-cumulative counts per bucket of [`LATENCY_BUCKETS_MS`].
    buckets: [u64; LATENCY_BUCKETS_MS.len()],
    sum_ms: f64,
    first_request_at: Option<SystemTime>,
    last_error_at: Option<SystemTime>,
}

impl Counters {
    fn record(&mut self, latency_ms: f64, error: bool) {
        self.count(error);
        let idx = LATENCY_BUCKETS_MS
            .iter()
            .position(|le| latency_ms <= *le)
            .unwrap_or(LATENCY_BUCKETS_MS.len() - 1);
        self.buckets[idx] += 1;
        self.sum_ms += latency_ms;
    }

    /// A request that never reached the version (nothing listened): a failure users saw, but
    /// not a latency sample, so a dead version's instant refusals never pass for fast answers
    /// when the judge compares latencies.
    fn record_unreachable(&mut self) {
        self.count(true);
    }

    fn count(&mut self, error: bool) {
        let now = SystemTime::now();
        self.requests += 1;
        if self.first_request_at.is_none() {
            self.first_request_at = Some(now);
        }
        if error {
            self.errors += 1;
            self.last_error_at = Some(now);
        }
    }

    fn snapshot(&self, version: &str) -> VersionStats {
        let mut acc = 0;
        let latency_buckets_ms = LATENCY_BUCKETS_MS
            .iter()
            .zip(self.buckets.iter())
            .map(|(le, n)| {
                acc += n;
                (*le, acc)
            })
            .collect();
        VersionStats {
            version: version.to_owned(),
            requests: self.requests,
            errors: self.errors,
            latency_buckets_ms,
            latency_sum_ms: self.sum_ms,
            first_request_at: self.first_request_at,
            last_error_at: self.last_error_at,
        }
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

type SharedCounters = Arc<Mutex<Counters>>;

/// One upstream of the active routes (a version), with everything a request needs resolved in
/// advance.
struct Target {
    version: String,
    header: Option<HeaderValue>,
    counters: SharedCounters,
    /// The version's instances; requests take them in turn.
    backends: Vec<Backend>,
    turn: AtomicUsize,
}

/// One instance of a version.
struct Backend {
    addr: SocketAddr,
    authority: Option<Authority>,
    counters: SharedCounters,
}

impl Target {
    /// The instance the next request goes to (round robin).
    fn next_backend(&self) -> &Backend {
        let i = self.turn.fetch_add(1, Ordering::Relaxed) % self.backends.len().max(1);
        &self.backends[i]
    }

    fn record(&self, backend: &Backend, latency_ms: f64, error: bool) {
        lock(&self.counters).record(latency_ms, error);
        lock(&backend.counters).record(latency_ms, error);
    }

    fn record_unreachable(&self, backend: &Backend) {
        lock(&self.counters).record_unreachable();
        lock(&backend.counters).record_unreachable();
    }
}

/// Cumulative counters of one instance of a version since the proxy started.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceStats {
    pub addr: SocketAddr,
    pub stats: VersionStats,
}

/// The routes as set, plus their resolved targets. Swapped as a whole.
struct Active {
    routes: Routes,
    stable: Option<Target>,
    canary: Option<Target>,
}

struct Inner {
    name: String,
    local_addr: SocketAddr,
    active: Mutex<Arc<Active>>,
    stats: Mutex<BTreeMap<String, SharedCounters>>,
    /// Counters per instance, by version and address.
    instance_stats: Mutex<BTreeMap<(String, SocketAddr), SharedCounters>>,
    /// Counters per flag cohort (`KEY=on`, `KEY=off`), from [`FLAGS_HEADER`].
    cohorts: Mutex<BTreeMap<String, Counters>>,
    unrouted: AtomicU64,
    client: Client<HttpConnector, Incoming>,
    stop_accepting: CancellationToken,
    stop_connections: CancellationToken,
    tracker: TaskTracker,
    accept_task: AsyncMutex<Option<JoinHandle<()>>>,
}

/// A running proxy. Cloning is cheap; all clones control the same proxy.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("name", &self.inner.name)
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Starts serving on `listener` (spawns the accept loop on the current tokio runtime).
    /// `name` labels log lines, e.g. `checkout/production`.
    pub async fn start(listener: TcpListener, name: String) -> Proxy {
        let local_addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        let inner = Arc::new(Inner {
            name,
            local_addr,
            active: Mutex::new(Arc::new(Active {
                routes: Routes::default(),
                stable: None,
                canary: None,
            })),
            stats: Mutex::new(BTreeMap::new()),
            instance_stats: Mutex::new(BTreeMap::new()),
            cohorts: Mutex::new(BTreeMap::new()),
            unrouted: AtomicU64::new(0),
            client,
            stop_accepting: CancellationToken::new(),
            stop_connections: CancellationToken::new(),
            tracker: TaskTracker::new(),
            accept_task: AsyncMutex::new(None),
        });
        let handle = tokio::spawn(accept_loop(listener, Arc::clone(&inner)));
        *inner.accept_task.lock().await = Some(handle);
        tracing::info!(proxy = %inner.name, addr = %local_addr, "Proxy listening.");
        Proxy { inner }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The name it was started with (e.g. `checkout/production`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Replaces the routes atomically. Requests already in flight finish on the upstream they
    /// were sent to; every later request uses the new routes. Versions named here appear in
    /// [`Proxy::stats`] from now on, with zero counts until they serve a request.
    pub fn set_routes(&self, routes: Routes) {
        let (stable, canary) = {
            let mut stats = lock(&self.inner.stats);
            let mut instance_stats = lock(&self.inner.instance_stats);
            let mut target = |up: &Option<Upstream>| {
                up.as_ref().map(|u| Target {
                    version: u.version.clone(),
                    header: HeaderValue::from_str(&u.version).ok(),
                    counters: Arc::clone(stats.entry(u.version.clone()).or_default()),
                    backends: u
                        .addrs()
                        .map(|addr| Backend {
                            addr,
                            authority: Authority::try_from(addr.to_string()).ok(),
                            counters: Arc::clone(
                                instance_stats.entry((u.version.clone(), addr)).or_default(),
                            ),
                        })
                        .collect(),
                    turn: AtomicUsize::new(0),
                })
            };
            (target(&routes.stable), target(&routes.canary))
        };
        tracing::info!(
            proxy = %self.inner.name,
            stable = ?routes.stable.as_ref().map(|u| (&u.version, u.addr)),
            canary = ?routes.canary.as_ref().map(|u| (&u.version, u.addr)),
            canary_weight = routes.canary_weight,
            "Routes updated."
        );
        *lock(&self.inner.active) = Arc::new(Active {
            routes,
            stable,
            canary,
        });
    }

    pub fn routes(&self) -> Routes {
        lock(&self.inner.active).routes.clone()
    }

    /// Cumulative counters since start, one entry per version ever routed, sorted by version.
    pub fn stats(&self) -> Vec<VersionStats> {
        lock(&self.inner.stats)
            .iter()
            .map(|(v, c)| lock(c).snapshot(v))
            .collect()
    }

    /// Cumulative counters per instance since start (by version, then address), for the
    /// instances of the versions routed now.
    pub fn instance_stats(&self) -> Vec<InstanceStats> {
        let active = Arc::clone(&lock(&self.inner.active));
        let routed: Vec<(String, SocketAddr)> = [&active.stable, &active.canary]
            .into_iter()
            .flatten()
            .flat_map(|t| t.backends.iter().map(|b| (t.version.clone(), b.addr)))
            .collect();
        lock(&self.inner.instance_stats)
            .iter()
            .filter(|(key, _)| routed.contains(key))
            .map(|((version, addr), c)| InstanceStats {
                addr: *addr,
                stats: lock(c).snapshot(version),
            })
            .collect()
    }

    /// Cumulative counters per flag cohort since start, named `KEY=on` / `KEY=off`.
    pub fn cohort_stats(&self) -> Vec<VersionStats> {
        lock(&self.inner.cohorts)
            .iter()
            .map(|(k, c)| c.snapshot(k))
            .collect()
    }

    /// Requests answered 503 because no upstream was configured (not attributed to a version).
    pub fn unrouted_requests(&self) -> u64 {
        self.inner.unrouted.load(Ordering::Relaxed)
    }

    /// Stops accepting connections, lets in-flight requests finish for a few seconds, then
    /// closes whatever is left. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.stop_accepting.cancel();
        if let Some(handle) = self.inner.accept_task.lock().await.take() {
            let _ = handle.await;
        }
        self.inner.tracker.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(proxy = %self.inner.name, "Connections still open after the drain period; closing them.");
            self.inner.stop_connections.cancel();
            self.inner.tracker.wait().await;
        }
        tracing::info!(proxy = %self.inner.name, "Proxy stopped.");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters stay consistent even if a holder panicked: every update is a few plain writes.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let accepted = tokio::select! {
            () = inner.stop_accepting.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(proxy = %inner.name, error = %e, "Accept failed; retrying.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_inner = Arc::clone(&inner);
        inner.tracker.spawn(async move {
            let svc_inner = Arc::clone(&conn_inner);
            let svc = service_fn(move |req| {
                let inner = Arc::clone(&svc_inner);
                async move { Ok::<_, Infallible>(handle(inner, req, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(proxy = %conn_inner.name, peer = %peer, error = %e, "Client connection ended with an error.");
                    }
                }
                () = conn_inner.stop_accepting.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        () = conn_inner.stop_connections.cancelled() => {}
                    }
                }
            }
        });
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers listed in `Connection` are hop-by-hop too.
    let listed: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(hyper::header::TRANSFER_ENCODING);
}

fn text_response(status: StatusCode, msg: String) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(msg))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arm {
    Stable,
    Canary,
}

fn choose(routes: &Routes) -> Option<Arm> {
    let weight = if routes.canary_weight.is_nan() {
        0.0
    } else {
        routes.canary_weight.clamp(0.0, 100.0)
    };
    match (&routes.stable, &routes.canary) {
        (None, None) => None,
        (Some(_), None) => Some(Arm::Stable),
        (None, Some(_)) => Some(Arm::Canary),
        (Some(_), Some(_)) => {
            let to_canary = if weight <= 0.0 {
                false
            } else if weight >= 100.0 {
                true
            } else {
                rand::random::<f64>() * 100.0 < weight
            };
            Some(if to_canary { Arm::Canary } else { Arm::Stable })
        }
    }
}

async fn handle(
    inner: Arc<Inner>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ProxyBody> {
    let started = tokio::time::Instant::now();
    let active = Arc::clone(&lock(&inner.active));
    let target = match choose(&active.routes) {
        Some(Arm::Stable) => active.stable.as_ref(),
        Some(Arm::Canary) => active.canary.as_ref(),
        None => None,
    };
    let Some(target) = target else {
        inner.unrouted.fetch_add(1, Ordering::Relaxed);
        return text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("backstop proxy {}: no upstream configured\n", inner.name),
        );
    };
    let version = target.version.as_str();
    let backend = target.next_backend();
    let addr = backend.addr;
    let Some(authority) = backend.authority.clone() else {
        return text_response(
            StatusCode::BAD_GATEWAY,
            format!(
                "backstop proxy {}: upstream address {addr} is not usable\n",
                inner.name
            ),
        );
    };

    let (mut parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let uri = match Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path_and_query.as_str())
        .build()
    {
        Ok(u) => u,
        Err(e) => {
            return text_response(
                StatusCode::BAD_REQUEST,
                format!("backstop proxy {}: bad request target: {e}\n", inner.name),
            );
        }
    };
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers);
    append_forwarded_for(&mut parts.headers, peer.ip());
    let upstream_req = Request::from_parts(parts, body);

    let result = tokio::time::timeout(UPSTREAM_TIMEOUT, inner.client.request(upstream_req)).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut resp = match result {
        Ok(Ok(resp)) => {
            let error = resp.status().is_server_error();
            target.record(backend, latency_ms, error);
            let (mut parts, body) = resp.into_parts();
            // Counted here and kept from clients: which side of a flag a user is on is the
            // service's business.
            for flags in parts.headers.get_all(FLAGS_HEADER) {
                count_cohorts(&inner, flags, latency_ms, error);
            }
            parts.headers.remove(FLAGS_HEADER);
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.boxed())
        }
        Ok(Err(e)) if e.is_connect() => {
            // Nothing listens where the version should be (crashed, or not started yet): a
            // clear 503 rather than a bare connection error, while supervision restarts it.
            target.record_unreachable(backend);
            tracing::warn!(proxy = %inner.name, version = %version, upstream = %addr, error = %e, "No instance of the version is reachable; answering 503.");
            let mut resp = text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "backstop proxy {}: no healthy instance of {version} is reachable at {addr}; it is being restarted\n",
                    inner.name
                ),
            );
            resp.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        Ok(Err(e)) => {
            target.record(backend, latency_ms, true);
            tracing::warn!(proxy = %inner.name, version = %version, upstream = %addr, error = %e, "Upstream request failed; answering 502.");
            text_response(
                StatusCode::BAD_GATEWAY,
                format!(
                    "backstop proxy {}: upstream {version} at {addr} failed: {e}\n",
                    inner.name
                ),
            )
        }
        Err(_) => {
            target.record(backend, latency_ms, true);
            tracing::warn!(proxy = %inner.name, version = %version, upstream = %addr, "Upstream timed out; answering 502.");
            text_response(
                StatusCode::BAD_GATEWAY,
                format!(
                    "backstop proxy {}: upstream {version} at {addr} did not answer within {}s\n",
                    inner.name,
                    UPSTREAM_TIMEOUT.as_secs()
                ),
            )
        }
    };
    if let Some(v) = &target.header {
        resp.headers_mut().insert(VERSION_HEADER, v.clone());
    }
    resp
}

/// Counts a response in the cohorts its [`FLAGS_HEADER`] names; malformed entries are skipped.
fn count_cohorts(inner: &Inner, header: &HeaderValue, latency_ms: f64, error: bool) {
    let Ok(text) = header.to_str() else {
        return;
    };
    let mut cohorts = lock(&inner.cohorts);
    for entry in text.split(',') {
        let Some(cohort) = cohort_name(entry) else {
            continue;
        };
        if !cohorts.contains_key(&cohort) && cohorts.len() >= COHORTS_KEPT {
            continue;
        }
        cohorts.entry(cohort).or_default().record(latency_ms, error);
    }
}

/// `KEY=on` / `KEY=off` from one entry of [`FLAGS_HEADER`], if well formed.
fn cohort_name(entry: &str) -> Option<String> {
    let (key, side) = entry.trim().split_once('=')?;
    let (key, side) = (key.trim(), side.trim());
    let key_ok = !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    (key_ok && matches!(side, "on" | "off")).then(|| format!("{key}={side}"))
}

fn append_forwarded_for(headers: &mut HeaderMap, ip: IpAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
        _ => ip.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_cohorts_are_read_from_well_formed_entries_only() {
        assert_eq!(
            cohort_name(" new-checkout=on"),
            Some("new-checkout=on".into())
        );
        assert_eq!(cohort_name("a.b_c = off "), Some("a.b_c=off".into()));
        for bad in ["", "x", "=on", "x=maybe", "x y=on", "x=on=off"] {
            assert_eq!(cohort_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn buckets_are_cumulative_and_end_with_inf() {
        let mut c = Counters::default();
        for ms in [1.0, 5.0, 7.0, 30.0, 20000.0] {
            c.record(ms, false);
        }
        c.record(120.0, true);
        let s = c.snapshot("v1");
        assert_eq!(s.requests, 6);
        assert_eq!(s.errors, 1);
        assert!(s.last_error_at.is_some());
        let get = |le: f64| {
            s.latency_buckets_ms
                .iter()
                .find(|(b, _)| *b == le)
                .map(|x| x.1)
        };
        assert_eq!(get(5.0), Some(2)); // 1 and 5 (le is inclusive)
        assert_eq!(get(10.0), Some(3));
        assert_eq!(get(50.0), Some(4));
        assert_eq!(get(250.0), Some(5));
        assert_eq!(get(10000.0), Some(5));
        assert_eq!(get(f64::INFINITY), Some(6));
        assert!((s.latency_sum_ms - 20163.0).abs() < 1e-9);
    }

    #[test]
    fn since_gives_interval_increments() {
        let mut c = Counters::default();
        c.record(3.0, false);
        c.record(30.0, true);
        let before = c.snapshot("v2");
        c.record(7.0, false);
        c.record(700.0, true);
        c.record(4.0, false);
        let d = c.snapshot("v2").since(&before);
        assert_eq!((d.requests, d.errors), (3, 1));
        let counts: Vec<u64> = d.latency_buckets_ms.iter().map(|b| b.1).collect();
        assert_eq!(counts, [1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3]);
        assert!((d.latency_sum_ms - 711.0).abs() < 1e-9);
        // Reversed arguments saturate instead of wrapping.
        assert_eq!(before.since(&c.snapshot("v2")).requests, 0);
        let labels: Vec<String> = LATENCY_BUCKETS_MS.iter().map(|b| le_label(*b)).collect();
        assert_eq!(
            labels,
            [
                "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "+Inf"
            ]
        );
    }

    #[test]
    fn pick_honours_edges() {
        let s = Upstream {
            version: "v1".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            replicas: Vec::new(),
        };
        let c = Upstream {
            version: "v2".into(),
            addr: "127.0.0.1:2".parse().unwrap(),
            replicas: Vec::new(),
        };
        let mut r = Routes {
            stable: Some(s),
            canary: Some(c),
            canary_weight: 0.0,
        };
        for _ in 0..200 {
            assert_eq!(choose(&r), Some(Arm::Stable));
        }
        r.canary_weight = 100.0;
        for _ in 0..200 {
            assert_eq!(choose(&r), Some(Arm::Canary));
        }
        r.canary_weight = f64::NAN;
        assert_eq!(choose(&r), Some(Arm::Stable));
        r.canary_weight = 250.0;
        assert_eq!(choose(&r), Some(Arm::Canary));
        r.stable = None;
        r.canary_weight = 0.0;
        assert_eq!(choose(&r), Some(Arm::Canary));
        r.canary = None;
        assert!(choose(&r).is_none());
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h.get("x-kept").unwrap(), "yes");
    }
}
