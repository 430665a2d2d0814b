//! One log line per HTTP call (method, route, status, actor, latency; refused sign-ins
//! included) and the per-route request counts `/metrics` reports.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::Ctx;

/// Who made a call, put on the answer by [`crate::auth::require_token`] for the access log.
#[derive(Debug, Clone)]
pub struct CallerName(pub String);

/// Calls by (method, route template, status): bounded by the routes the daemon serves.
#[derive(Debug, Default)]
pub struct ApiRequests(Mutex<BTreeMap<(String, String, u16), u64>>);

impl ApiRequests {
    fn count(&self, method: &str, route: &str, status: u16) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
    }

    /// Every count so far.
    #[must_use]
    pub fn snapshot(&self) -> Vec<((String, String, u16), u64)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// The access-log layer: wraps each router so the route it matched is known.
pub async fn access_log(State(ctx): State<Arc<Ctx>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    // The template, never the concrete path: ids would make the label set unbounded.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let actor = resp
        .extensions()
        .get::<CallerName>()
        .map_or("-", |c| c.0.as_str())
        .to_owned();
    ctx.caches.api_requests.count(&method, &route, status);
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    // Scrapes and health probes come every few seconds: only at debug, unless they fail.
    let routine = matches!(route.as_str(), "/metrics" | "/healthz") && status < 400;
    if routine {
        tracing::debug!(target: "backstop::access", %method, %route, status, %actor, latency_ms, "HTTP call.");
    } else if status == 401 {
        tracing::warn!(target: "backstop::access", %method, %route, status, %actor, latency_ms, "HTTP call refused: no usable token.");
    } else {
        tracing::info!(target: "backstop::access", %method, %route, status, %actor, latency_ms, "HTTP call.");
    }
    resp
}
