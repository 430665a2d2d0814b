//! Steady, paced load generator (quickstart, tests, benchmarks).
//!
//! Open loop: requests are started on a fixed schedule (`rate_per_s`) whatever the latency, with
//! at most `concurrency` in flight; when that many are in flight, the schedule waits (ticks that
//! fall behind are skipped, not bursted). Connections are kept alive and reused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proxy::VERSION_HEADER;

/// Per-request timeout of the load generator.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    pub target: SocketAddr,
    /// Path and query, e.g. `/` or `/checkout?x=1`.
    pub path: String,
    /// Requests started per second (values <= 0 or NaN send nothing).
    pub rate_per_s: f64,
    /// Maximum requests in flight (at least 1).
    pub concurrency: usize,
}

/// Counters since start. `failed` = non-2xx answers and transport errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failed requests by the `x-backstop-version` response header (failures without that
    /// header, e.g. transport errors, are only in `failed`).
    pub failed_by_version: BTreeMap<String, u64>,
    /// Successful requests by the `x-backstop-version` response header.
    pub ok_by_version: BTreeMap<String, u64>,
    pub first_failure_at: Option<SystemTime>,
    pub last_failure_at: Option<SystemTime>,
}

/// A running load generator; stop it with [`LoadGen::stop`] (dropping it also stops the pacing).
#[derive(Debug)]
pub struct LoadGen {
    stats: Arc<Mutex<LoadStats>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    pacer: Option<JoinHandle<()>>,
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn lock(m: &Mutex<LoadStats>) -> std::sync::MutexGuard<'_, LoadStats> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LoadGen {
    /// Starts sending on the current tokio runtime.
    pub fn start(cfg: LoadConfig) -> LoadGen {
        let stats = Arc::new(Mutex::new(LoadStats::default()));
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let pacer = tokio::spawn(pace(
            cfg,
            Arc::clone(&stats),
            cancel.clone(),
            tracker.clone(),
        ));
        LoadGen {
            stats,
            cancel,
            tracker,
            pacer: Some(pacer),
        }
    }

    pub fn stats(&self) -> LoadStats {
        lock(&self.stats).clone()
    }

    /// Stops sending, waits for requests in flight (at most [`REQUEST_TIMEOUT`]), returns the
    /// final counters.
    pub async fn stop(mut self) -> LoadStats {
        self.cancel.cancel();
        if let Some(p) = self.pacer.take() {
            let _ = p.await;
        }
        self.tracker.close();
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, self.tracker.wait()).await;
        self.stats()
    }
}

async fn pace(
    cfg: LoadConfig,
    stats: Arc<Mutex<LoadStats>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    if !(cfg.rate_per_s.is_finite() && cfg.rate_per_s > 0.0) {
        tracing::warn!(
            rate = cfg.rate_per_s,
            "Load generator rate is not positive; sending nothing."
        );
        return;
    }
    let uri: Uri = match format!("http://{}{}", cfg.target, normalize_path(&cfg.path)).parse() {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(path = %cfg.path, error = %e, "Load generator path is not a valid request target; sending nothing.");
            return;
        }
    };
    let concurrency = cfg.concurrency.max(1);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let permits = Arc::new(Semaphore::new(concurrency));
    let period = Duration::try_from_secs_f64((1.0 / cfg.rate_per_s).max(1e-6))
        .unwrap_or(Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let permit = tokio::select! {
            () = cancel.cancelled() => return,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        lock(&stats).sent += 1;
        let client = client.clone();
        let uri = uri.clone();
        let stats = Arc::clone(&stats);
        tracker.spawn(async move {
            let outcome = one_request(&client, uri).await;
            drop(permit);
            let mut s = lock(&stats);
            match outcome {
                (true, version) => {
                    s.ok += 1;
                    if let Some(v) = version {
                        *s.ok_by_version.entry(v).or_default() += 1;
                    }
                }
                (false, version) => {
                    let now = SystemTime::now();
                    s.failed += 1;
                    s.first_failure_at.get_or_insert(now);
                    s.last_failure_at = Some(now);
                    if let Some(v) = version {
                        *s.failed_by_version.entry(v).or_default() += 1;
                    }
                }
            }
        });
    }
}

fn normalize_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// (success, version that served it).
async fn one_request(
    client: &Client<HttpConnector, Empty<Bytes>>,
    uri: Uri,
) -> (bool, Option<String>) {
    let Ok(req) = Request::get(uri)
        .header(hyper::header::USER_AGENT, "backstop-load")
        .body(Empty::new())
    else {
        return (false, None);
    };
    let attempt = async {
        let resp = client.request(req).await.ok()?;
        let version = resp
            .headers()
            .get(VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let ok = resp.status().is_success();
        // Read the body so the connection goes back to the pool.
        let body_ok = resp.into_body().collect().await.is_ok();
        Some((ok && body_ok, version))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
        Ok(Some(r)) => r,
        Ok(None) | Err(_) => (false, None),
    }
}
