//! Webhook notifications on rollout and recovery events.
//!
//! A [`Notifier`] is a cheap, clone-able handle to background delivery tasks (one per target,
//! each with a bounded queue). [`Notifier::notify`] only enqueues: it never waits for the
//! network and never fails, so a slow or dead endpoint can never hold up a recovery step. When a
//! target's queue is full, its oldest undelivered notification is dropped (and counted, and
//! logged).
//!
//! Each delivery is an HTTP `POST` with:
//! - the body: the [`Notification`] as JSON ([`WebhookFormat::Json`]), or a Slack
//!   incoming-webhook message `{"text": …, "blocks": […]}` ([`WebhookFormat::Slack`]);
//! - `X-Backstop-Event: <kind>`, `X-Backstop-Delivery: <id>` (the idempotency key: the same for
//!   every attempt, so receivers can drop duplicates);
//! - `X-Backstop-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>` when the target has
//!   a secret.
//!
//! Attempts are retried with exponential backoff (plus jitter) on 5xx, 429 and transport errors
//! (connect, timeout); other answers (2xx excepted) are final. `Retry-After` (seconds) is
//! honoured as a lower bound on the next delay, up to [`MAX_RETRY_AFTER`].
//!
//! Secrets are never logged: `Debug` of a [`WebhookTarget`] redacts the secret and the URL's
//! path and query (Slack-style URLs carry their token in the path); logs name a target by its
//! index and `scheme://host:port` only.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Header carrying `sha256=<hex HMAC-SHA256 of the body>` when a target has a secret.
pub const SIGNATURE_HEADER: &str = "X-Backstop-Signature";
/// Header carrying the notification kind (e.g. `rollout.failed`).
pub const EVENT_HEADER: &str = "X-Backstop-Event";
/// Header carrying the notification id (idempotency key), identical on every attempt.
pub const DELIVERY_HEADER: &str = "X-Backstop-Delivery";
/// Longest `Retry-After` honoured; longer asks are shortened to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How much of a failing endpoint's answer goes into the log.
const LOGGED_BODY_CHARS: usize = 200;
/// Slack limits: section text 3000 characters, section field 2000, at most 10 fields.
const SLACK_TEXT_MAX: usize = 3000;
const SLACK_FIELD_MAX: usize = 2000;
const SLACK_MAX_FIELDS: usize = 10;

/// Body format of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The [`Notification`] itself as JSON.
    Json,
    /// A Slack incoming-webhook message (`text` + `blocks`).
    Slack,
    /// A PagerDuty Events API v2 event (`routing_key`, `event_action`, `dedup_key`,
    /// `payload`): an incident's events share its id as `dedup_key`, and its resolution
    /// resolves the alert.
    #[serde(rename = "pagerduty")]
    PagerDuty,
    /// A PagerDuty Events API v2 change event (`routing_key`, `payload`): only changes (see
    /// [`is_change`]) are sent to such a target.
    #[serde(rename = "pagerduty_change")]
    PagerDutyChange,
}

/// Whether a notification of `kind` is a change to a service (what a change-event target
/// takes): a rollout starting or promoted, a rollback starting or done.
#[must_use]
pub fn is_change(kind: &str) -> bool {
    matches!(
        kind,
        "rollout.started" | "rollout.promoted" | "recovery.started" | "recovery.done"
    )
}

/// Where to send notifications.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: String,
    pub format: WebhookFormat,
    /// HMAC-SHA256 key; when set, every delivery carries [`SIGNATURE_HEADER`].
    pub secret: Option<String>,
    /// The PagerDuty integration key of a [`WebhookFormat::PagerDuty`] target.
    pub routing_key: Option<String>,
}

impl fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &redact_url(&self.url))
            .field("format", &self.format)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field(
                "routing_key",
                &self.routing_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why a webhook target cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The URL does not parse (the URL itself is not repeated: it may hold a token).
    #[error("webhook URL is not a valid URL: {reason}")]
    InvalidUrl { reason: String },
    #[error("webhook URL {url}: scheme `{scheme}` is not supported (use http or https)")]
    UnsupportedScheme { url: String, scheme: String },
    #[error(
        "webhook URL {url}: https needs TLS support, which this build of backstop-drivers lacks (enable its `tls` feature)"
    )]
    NoTls { url: String },
    #[error("webhook secret is empty (omit it instead)")]
    EmptySecret,
    #[error("a pagerduty target needs its integration (routing) key")]
    NoRoutingKey,
}

impl WebhookTarget {
    /// Checks the URL (http or https, the latter only with TLS support) and the secret.
    /// Config validation calls this; [`Notifier::start`] also does, and a target that fails it
    /// has each of its deliveries counted as failed.
    pub fn validate(&self) -> Result<(), NotifyError> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| NotifyError::InvalidUrl {
            reason: e.to_string(),
        })?;
        match url.scheme() {
            "http" => {}
            "https" if cfg!(feature = "tls") => {}
            "https" => {
                return Err(NotifyError::NoTls {
                    url: redact_url(&self.url),
                });
            }
            other => {
                return Err(NotifyError::UnsupportedScheme {
                    url: redact_url(&self.url),
                    scheme: other.to_owned(),
                });
            }
        }
        if self.secret.as_deref() == Some("") {
            return Err(NotifyError::EmptySecret);
        }
        if matches!(
            self.format,
            WebhookFormat::PagerDuty | WebhookFormat::PagerDutyChange
        ) && self.routing_key.as_deref().is_none_or(str::is_empty)
        {
            return Err(NotifyError::NoRoutingKey);
        }
        Ok(())
    }
}

/// A rollout or recovery event to tell people about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency key: unique per event, identical across retries ([`DELIVERY_HEADER`]).
    pub id: String,
    /// Event kind, e.g. `rollout.failed`, `recovery.started`, `recovery.done`.
    pub kind: String,
    pub service: String,
    pub env: String,
    /// One sentence for humans.
    pub summary: String,
    /// Structured facts (verdict, versions, weights, links…).
    pub detail: Value,
    /// When the event happened, Unix milliseconds.
    pub at_ms: i64,
}

/// Counters since [`Notifier::start`]. A *delivery* is one notification to one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryStats {
    /// Notifications passed to [`Notifier::notify`].
    pub accepted: u64,
    /// Deliveries answered with 2xx.
    pub delivered: u64,
    /// Deliveries given up: a final answer (4xx other than 429, 3xx), an unusable target, or
    /// attempts exhausted.
    pub failed: u64,
    /// Deliveries dropped unsent because the target's queue was full.
    pub dropped: u64,
    /// Attempts beyond the first, over all deliveries.
    pub retries: u64,
    /// Deliveries queued or in flight now.
    pub pending: u64,
}

/// Tuning of a [`Notifier`]; [`Default`] is right for production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierConfig {
    /// Queued deliveries per target before the oldest is dropped (at least 1).
    pub queue_capacity: usize,
    /// Attempts per delivery, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each retry (plus up to 100 % jitter).
    pub initial_backoff: Duration,
    /// Cap of the delay between attempts (before jitter).
    pub max_backoff: Duration,
    /// Timeout of one attempt (connect, send, answer).
    pub request_timeout: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            queue_capacity: 1024,
            max_attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Clone-able handle to the webhook delivery tasks. Dropping the last handle lets the tasks
/// finish what is queued and exit.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
    _closer: Arc<Closer>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("targets", &self.shared.queues.len())
            .field("stats", &self.delivered())
            .finish()
    }
}

struct Shared {
    queues: Vec<TargetQueue>,
    accepted: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    /// Deliveries queued or in flight.
    pending: AtomicU64,
    /// Woken whenever `pending` reaches zero.
    idle: Notify,
    closed: AtomicBool,
    capacity: usize,
}

struct TargetQueue {
    queue: Mutex<VecDeque<Arc<Notification>>>,
    wake: Notify,
}

impl TargetQueue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Notification>>> {
        // A panic while holding this lock cannot leave the deque inconsistent: keep going.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Marks the notifier closed when the last handle goes away.
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
        for q in &self.0.queues {
            q.wake.notify_one();
        }
    }
}

impl Shared {
    fn finish_one(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl Notifier {
    /// Starts one delivery task per target with [`NotifierConfig::default`].
    ///
    /// # Panics
    /// Outside a Tokio runtime (the tasks are spawned on the current one).
    pub fn start(targets: Vec<WebhookTarget>) -> Notifier {
        Self::start_with(targets, NotifierConfig::default())
    }

    /// Like [`Notifier::start`] with explicit tuning.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start_with(targets: Vec<WebhookTarget>, config: NotifierConfig) -> Notifier {
        let capacity = config.queue_capacity.max(1);
        let shared = Arc::new(Shared {
            queues: targets
                .iter()
                .map(|_| TargetQueue {
                    queue: Mutex::new(VecDeque::new()),
                    wake: Notify::new(),
                })
                .collect(),
            accepted: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            idle: Notify::new(),
            closed: AtomicBool::new(false),
            capacity,
        });
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("backstop/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"));
        let config = Arc::new(config);
        for (index, target) in targets.into_iter().enumerate() {
            let usable = match (&client, target.validate()) {
                (Err(e), _) => Err(e.clone()),
                (Ok(_), Err(e)) => Err(e.to_string()),
                (Ok(c), Ok(())) => Ok(c.clone()),
            };
            if let Err(reason) = &usable {
                tracing::error!(target_index = index, url = %redact_url(&target.url), %reason, "Webhook target is unusable; its notifications will be counted as failed.");
            }
            let worker = Worker {
                shared: Arc::clone(&shared),
                index,
                target,
                client: usable,
                config: Arc::clone(&config),
            };
            tokio::spawn(worker.run());
        }
        Notifier {
            _closer: Arc::new(Closer(Arc::clone(&shared))),
            shared,
        }
    }

    /// Queues `n` for every target and returns at once. Never blocks on the network and never
    /// fails: when a target's queue is full, its oldest queued notification is dropped (warned
    /// and counted in [`DeliveryStats::dropped`]).
    pub fn notify(&self, n: Notification) {
        let shared = &self.shared;
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        if shared.queues.is_empty() {
            tracing::debug!(id = %n.id, kind = %n.kind, "No webhook targets; notification not sent.");
            return;
        }
        let n = Arc::new(n);
        for (index, q) in shared.queues.iter().enumerate() {
            let dropped = {
                let mut queue = q.lock();
                shared.pending.fetch_add(1, Ordering::SeqCst);
                let dropped = if queue.len() >= shared.capacity {
                    queue.pop_front()
                } else {
                    None
                };
                queue.push_back(Arc::clone(&n));
                dropped
            };
            if let Some(old) = dropped {
                let before = shared.dropped.fetch_add(1, Ordering::Relaxed);
                shared.finish_one();
                // A burst against a dead endpoint would log once per notification: log the
                // first drop and every hundredth after it.
                if before.is_multiple_of(100) {
                    tracing::warn!(target_index = index, dropped_id = %old.id, dropped_kind = %old.kind, capacity = shared.capacity, dropped_total = before + 1, "Webhook queue full; dropped the oldest notification.");
                }
            }
            q.wake.notify_one();
        }
    }

    /// Counters so far.
    pub fn delivered(&self) -> DeliveryStats {
        let s = &self.shared;
        DeliveryStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            delivered: s.delivered.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            pending: s.pending.load(Ordering::SeqCst),
        }
    }

    /// Waits until every queued delivery has been delivered or given up, at most `timeout`.
    /// Returns whether nothing is pending any more (false: timed out with work left).
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.shared.pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            tokio::select! {
                () = idle => {}
                () = tokio::time::sleep_until(deadline) => {
                    return self.shared.pending.load(Ordering::SeqCst) == 0;
                }
            }
        }
    }
}

struct Worker {
    shared: Arc<Shared>,
    index: usize,
    target: WebhookTarget,
    /// The client, or why this target cannot be used.
    client: Result<reqwest::Client, String>,
    config: Arc<NotifierConfig>,
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// Worth another try; `retry_after` from the answer, if any.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Final(String),
}

impl Worker {
    async fn run(self) {
        let queue = &self.shared.queues[self.index];
        loop {
            let wake = queue.wake.notified();
            let next = queue.lock().pop_front();
            match next {
                Some(n) => {
                    self.deliver(&n).await;
                    self.shared.finish_one();
                }
                None if self.shared.closed.load(Ordering::SeqCst) => return,
                None => wake.await,
            }
        }
    }

    async fn deliver(&self, n: &Notification) {
        // Changes go to change-event targets, alerts to alert targets: a rollout starting
        // pages nobody.
        let skip = match self.target.format {
            WebhookFormat::PagerDutyChange => !is_change(&n.kind),
            WebhookFormat::PagerDuty => n.kind == "rollout.started",
            WebhookFormat::Json | WebhookFormat::Slack => false,
        };
        if skip {
            return;
        }
        let host = redact_url(&self.target.url);
        let client = match &self.client {
            Ok(c) => c,
            Err(reason) => {
                self.shared.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target_index = self.index, url = %host, id = %n.id, kind = %n.kind, %reason, "Webhook not delivered: target unusable.");
                return;
            }
        };
        let body = render_body(n, self.target.format, self.target.routing_key.as_deref());
        let signature = self
            .target
            .secret
            .as_deref()
            .map(|secret| signature_header(secret.as_bytes(), &body));
        let max_attempts = self.config.max_attempts.max(1);
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(self.config.initial_backoff)
            .with_max_delay(self.config.max_backoff.max(self.config.initial_backoff))
            .with_max_times(max_attempts as usize - 1)
            .with_jitter()
            .build();
        let started = Instant::now();
        let mut attempt = 1u32;
        loop {
            let mut req = client
                .post(&self.target.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(EVENT_HEADER, &n.kind)
                .header(DELIVERY_HEADER, &n.id)
                .body(body.clone());
            if let Some(sig) = &signature {
                req = req.header(SIGNATURE_HEADER, sig);
            }
            let outcome = match req.send().await {
                Ok(resp) => classify(resp).await,
                Err(e) if e.is_builder() => Attempt::Final(format!("invalid request: {e}")),
                Err(e) => Attempt::Retry {
                    reason: transport_reason(&e),
                    retry_after: None,
                },
            };
            match outcome {
                Attempt::Delivered => {
                    self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target_index = self.index, url = %host, id = %n.id, kind = %n.kind, attempt, elapsed_ms = started.elapsed().as_millis() as u64, "Webhook delivered.");
                    return;
                }
                Attempt::Final(reason) => {
                    self.shared.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target_index = self.index, url = %host, id = %n.id, kind = %n.kind, attempt, %reason, "Webhook rejected; not retrying.");
                    return;
                }
                Attempt::Retry {
                    reason,
                    retry_after,
                } => match delays.next() {
                    Some(delay) => {
                        let delay =
                            retry_after.map_or(delay, |ra| delay.max(ra.min(MAX_RETRY_AFTER)));
                        tracing::info!(target_index = self.index, url = %host, id = %n.id, kind = %n.kind, attempt, %reason, retry_in_ms = delay.as_millis() as u64, "Webhook attempt failed; retrying.");
                        tokio::time::sleep(delay).await;
                        self.shared.retries.fetch_add(1, Ordering::Relaxed);
                        attempt += 1;
                    }
                    None => {
                        self.shared.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(target_index = self.index, url = %host, id = %n.id, kind = %n.kind, attempts = attempt, %reason, "Webhook not delivered; attempts exhausted.");
                        return;
                    }
                },
            }
        }
    }
}

async fn classify(resp: reqwest::Response) -> Attempt {
    let status = resp.status();
    if status.is_success() {
        return Attempt::Delivered;
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    let reason = if text.trim().is_empty() {
        format!("answered {status}")
    } else {
        format!(
            "answered {status}: {}",
            truncate_chars(text.trim(), LOGGED_BODY_CHARS)
        )
    };
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Attempt::Retry {
            reason,
            retry_after,
        }
    } else {
        Attempt::Final(reason)
    }
}

/// A transport error without the URL (which may hold a token).
fn transport_reason(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `sha256=<hex HMAC-SHA256(key, body)>`, the value of [`SIGNATURE_HEADER`].
pub fn signature_header(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        unreachable_key_length()
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cold]
fn unreachable_key_length() -> ! {
    panic!("HMAC-SHA256 rejected a key length, which HMAC defines for every length")
}

/// The exact bytes sent for `n` in `format` (`routing_key`: a PagerDuty target's).
pub fn render_body(n: &Notification, format: WebhookFormat, routing_key: Option<&str>) -> Vec<u8> {
    let value = match format {
        WebhookFormat::Json => return serde_json::to_vec(n).unwrap_or_else(|_| b"{}".to_vec()),
        WebhookFormat::Slack => slack_message(n),
        WebhookFormat::PagerDuty => pagerduty_event(n, routing_key.unwrap_or_default()),
        WebhookFormat::PagerDutyChange => pagerduty_change(n, routing_key.unwrap_or_default()),
    };
    value.to_string().into_bytes()
}

/// A PagerDuty Events API v2 event. An incident's notifications (`detail.incident`) share its
/// id as `dedup_key`, so they update one alert, and its resolution resolves it; other events
/// are alerts of their own. Severity: SEV1 critical, SEV2 error, SEV3 warning, else info; a
/// failed rollout or recovery is an error.
pub fn pagerduty_event(n: &Notification, routing_key: &str) -> Value {
    let incident = n.detail["incident"].as_str();
    let resolved = n.detail["status"] == "resolved";
    let severity = match n.detail["severity"].as_str() {
        Some("SEV1") => "critical",
        Some("SEV2") => "error",
        Some("SEV3") => "warning",
        Some(_) => "info",
        None if n.kind.ends_with(".failed") => "error",
        None => "info",
    };
    serde_json::json!({
        "routing_key": routing_key,
        "event_action": if incident.is_some() && resolved { "resolve" } else { "trigger" },
        "dedup_key": incident.map_or_else(|| n.id.clone(), |i| format!("backstop/{i}")),
        "payload": {
            "summary": truncate_chars(&n.summary, 1024),
            "source": format!("backstop/{}/{}", n.service, n.env),
            "severity": severity,
            "timestamp": format_time(n.at_ms),
            "component": n.service,
            "group": n.env,
            "class": n.kind,
            "custom_details": n.detail,
        },
    })
}

/// A PagerDuty Events API v2 change event: the change's summary, when, where from, and its
/// facts, for the service's change timeline.
pub fn pagerduty_change(n: &Notification, routing_key: &str) -> Value {
    serde_json::json!({
        "routing_key": routing_key,
        "payload": {
            "summary": truncate_chars(&format!("{} {}/{}: {}", n.kind, n.service, n.env, n.summary), 1024),
            "timestamp": format_time(n.at_ms),
            "source": format!("backstop/{}/{}", n.service, n.env),
            "custom_details": n.detail,
        },
    })
}

/// A Slack incoming-webhook message: `text` (the notification fallback) and `blocks`.
pub fn slack_message(n: &Notification) -> Value {
    let when = format_time(n.at_ms);
    let text = truncate_chars(
        &format!(
            "{} {} · {} in {}: {}",
            kind_emoji(&n.kind),
            slack_escape(&n.kind),
            slack_escape(&n.service),
            slack_escape(&n.env),
            slack_escape(&n.summary)
        ),
        SLACK_TEXT_MAX,
    );
    let headline = truncate_chars(
        &format!(
            "{} *{}* · *{}* in *{}*\n{}",
            kind_emoji(&n.kind),
            slack_escape(&n.kind),
            slack_escape(&n.service),
            slack_escape(&n.env),
            slack_escape(&n.summary)
        ),
        SLACK_TEXT_MAX,
    );
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": headline},
    })];
    if let Value::Object(detail) = &n.detail {
        let fields: Vec<Value> = detail
            .iter()
            .filter_map(|(k, v)| {
                let shown = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(x) => x.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                let text = format!("*{}*\n{}", slack_escape(k), slack_escape(&shown));
                Some(json!({"type": "mrkdwn", "text": truncate_chars(&text, SLACK_FIELD_MAX)}))
            })
            .take(SLACK_MAX_FIELDS)
            .collect();
        if !fields.is_empty() {
            blocks.push(json!({"type": "section", "fields": fields}));
        }
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{
            "type": "mrkdwn",
            "text": format!("backstop · {when} · delivery `{}`", slack_escape(&n.id)),
        }],
    }));
    json!({"text": text, "blocks": blocks})
}

fn kind_emoji(kind: &str) -> &'static str {
    let k = kind.to_ascii_lowercase();
    if ["fail", "breach", "trip", "abort", "error"]
        .iter()
        .any(|w| k.contains(w))
    {
        ":red_circle:"
    } else if ["done", "succeeded", "promoted", "completed", "restored"]
        .iter()
        .any(|w| k.contains(w))
    {
        ":large_green_circle:"
    } else {
        ":large_blue_circle:"
    }
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters; a cut ends with `…`.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// RFC 3339 UTC time of Unix milliseconds (the raw number if out of range).
fn format_time(at_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{at_ms} ms since epoch"))
}

/// `scheme://host[:port]/…`: what may be logged of a webhook URL (path and query can hold
/// tokens, as in Slack's `/services/T…/B…/<token>`).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path() != "/" || u.query().is_some() {
                "/…"
            } else {
                ""
            };
            format!("{}://{host}{port}{rest}", u.scheme())
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Notification {
        Notification {
            id: "rec-42/notify".into(),
            kind: "recovery.done".into(),
            service: "checkout".into(),
            env: "prod".into(),
            summary: "Traffic restored to v1.4.2 <stable> & canary stopped.".into(),
            detail: json!({"from": "v1.5.0", "to": "v1.4.2", "weight": 0, "ok": true, "nested": {"x": 1}}),
            at_ms: 1_764_136_652_000,
        }
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature_header(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn slack_message_escapes_and_lists_scalar_detail() {
        let msg = slack_message(&sample());
        let text = msg["text"].as_str().unwrap();
        assert!(text.contains("recovery.done"), "{text}");
        assert!(text.contains("&lt;stable&gt; &amp; canary"), "{text}");
        let blocks = msg["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0]["type"], "section");
        let fields = blocks[1]["fields"].as_array().unwrap();
        // Objects are skipped; scalars are shown.
        assert_eq!(fields.len(), 4);
        assert!(fields.iter().any(|f| f["text"] == "*weight*\n0"));
        let ctx = blocks[2]["elements"][0]["text"].as_str().unwrap();
        assert!(ctx.contains("2025-11-26T05:57:32Z"), "{ctx}");
        assert!(ctx.contains("rec-42/notify"), "{ctx}");
    }

    #[test]
    fn long_summaries_are_cut_to_slack_limits() {
        let mut n = sample();
        n.summary = "x".repeat(10_000);
        let msg = slack_message(&n);
        let text = msg["text"].as_str().unwrap();
        assert_eq!(text.chars().count(), SLACK_TEXT_MAX);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn debug_and_logs_never_show_secrets() {
        let t = WebhookTarget {
            url: "https://hooks.example/services/T000/B000/tok3n?key=abc".into(),
            format: WebhookFormat::Slack,
            secret: Some("s3cr3t".into()),
            routing_key: Some("r0utek3y".into()),
        };
        let shown = format!("{t:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("r0utek3y"), "{shown}");
        assert!(!shown.contains("tok3n"), "{shown}");
        assert!(!shown.contains("abc"), "{shown}");
        assert!(shown.contains("https://hooks.example/…"), "{shown}");
        assert_eq!(redact_url("http://127.0.0.1:9/"), "http://127.0.0.1:9");
        assert_eq!(redact_url("not a url"), "<invalid URL>");
    }

    #[test]
    fn an_incident_is_one_pagerduty_alert_that_its_resolution_resolves() {
        let n = |status: &str| Notification {
            id: "incident/inc-1/incident.updated/5".into(),
            kind: "incident.updated".into(),
            service: "shop".into(),
            env: "prod".into(),
            summary: "inc-1: status".into(),
            detail: serde_json::json!({"incident": "inc-1", "severity": "SEV1", "status": status}),
            at_ms: 0,
        };
        let open = pagerduty_event(&n("investigating"), "key-1");
        assert_eq!(open["routing_key"], "key-1");
        assert_eq!(open["event_action"], "trigger");
        assert_eq!(open["dedup_key"], "backstop/inc-1");
        assert_eq!(open["payload"]["severity"], "critical");
        assert_eq!(open["payload"]["source"], "backstop/shop/prod");
        assert_eq!(open["payload"]["timestamp"], "1970-01-01T00:00:00Z");
        let done = pagerduty_event(&n("resolved"), "key-1");
        assert_eq!(done["event_action"], "resolve");
        assert_eq!(done["dedup_key"], open["dedup_key"]);
        let t = WebhookTarget {
            url: "http://127.0.0.1:9/v2/enqueue".into(),
            format: WebhookFormat::PagerDuty,
            secret: None,
            routing_key: None,
        };
        assert!(matches!(t.validate(), Err(NotifyError::NoRoutingKey)));
    }

    #[test]
    fn validate_names_the_problem() {
        let mut t = WebhookTarget {
            url: "ftp://x.example/hook".into(),
            format: WebhookFormat::Json,
            secret: None,
            routing_key: None,
        };
        assert!(matches!(
            t.validate(),
            Err(NotifyError::UnsupportedScheme { ref scheme, .. }) if scheme == "ftp"
        ));
        t.url = "::".into();
        assert!(matches!(t.validate(), Err(NotifyError::InvalidUrl { .. })));
        t.url = "http://127.0.0.1:8080/hook".into();
        assert_eq!(t.validate(), Ok(()));
        t.secret = Some(String::new());
        assert_eq!(t.validate(), Err(NotifyError::EmptySecret));
        t.secret = None;
        t.url = "https://x.example/hook".into();
        assert_eq!(t.validate().is_ok(), cfg!(feature = "tls"));
    }

    #[test]
    fn json_body_is_the_notification() {
        let n = sample();
        let body = render_body(&n, WebhookFormat::Json, None);
        let back: Notification = serde_json::from_slice(&body).unwrap();
        assert_eq!(back, n);
    }
}
