//! Webhook notifications against a real local HTTP server that records every request.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use backstop_drivers::notify::{
    DELIVERY_HEADER, EVENT_HEADER, Notification, Notifier, NotifierConfig, SIGNATURE_HEADER,
    WebhookFormat, WebhookTarget,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<(HeaderMap, Bytes)>>,
    /// Statuses to answer, in order; 200 once exhausted.
    script: Mutex<VecDeque<u16>>,
}

impl Recorder {
    fn requests(&self) -> Vec<(HeaderMap, Bytes)> {
        self.requests.lock().unwrap().clone()
    }
}

async fn hook(State(rec): State<Arc<Recorder>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    rec.requests.lock().unwrap().push((headers, body));
    let code = rec.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(code).unwrap()
}

/// A recording webhook endpoint on loopback answering `script` statuses, then 200.
async fn endpoint(script: &[u16]) -> (String, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    rec.script.lock().unwrap().extend(script.iter().copied());
    let app = Router::new()
        .route("/hooks/T000/B000", post(hook))
        .with_state(Arc::clone(&rec));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hooks/T000/B000"), rec)
}

fn fast() -> NotifierConfig {
    NotifierConfig {
        queue_capacity: 64,
        max_attempts: 4,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        request_timeout: Duration::from_secs(5),
    }
}

fn event(id: &str) -> Notification {
    Notification {
        id: id.to_owned(),
        kind: "rollout.failed".to_owned(),
        service: "checkout".to_owned(),
        env: "prod".to_owned(),
        summary: "Canary v1.5.0 failed analysis (5xx ratio 4.1 % vs 0.2 %); rolling back."
            .to_owned(),
        detail: json!({"canary": "v1.5.0", "stable": "v1.4.2", "weight": 10, "verdict": {"judge": "sequential"}}),
        at_ms: 1_764_136_652_123,
    }
}

/// HMAC-SHA256 written out from RFC 2104 on top of SHA-256, independent of the `hmac` crate.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn target(url: impl Into<String>, format: WebhookFormat, secret: Option<&str>) -> WebhookTarget {
    WebhookTarget {
        url: url.into(),
        format,
        secret: secret.map(str::to_owned),
        routing_key: None,
    }
}

/// The delivery id of each request the endpoint got, in order.
fn delivery_ids(rec: &Recorder) -> Vec<String> {
    rec.requests()
        .iter()
        .map(|(h, _)| header(h, DELIVERY_HEADER).unwrap().to_owned())
        .collect()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn json_delivery_is_signed_and_carries_event_and_delivery_headers() {
    let (url, rec) = endpoint(&[]).await;
    let secret = "whsec-0123456789-a-fairly-long-shared-secret-for-the-hmac-key-0123456789";
    let notifier =
        Notifier::start_with(vec![target(url, WebhookFormat::Json, Some(secret))], fast());
    notifier.notify(event("rollout-17/failed"));
    assert!(notifier.flush(Duration::from_secs(20)).await);

    let reqs = rec.requests();
    assert_eq!(reqs.len(), 1);
    let (headers, body) = &reqs[0];
    let expected = format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    );
    assert_eq!(header(headers, SIGNATURE_HEADER), Some(expected.as_str()));
    // A different key would not verify.
    let wrong = format!("sha256={}", hex::encode(hmac_sha256(b"other", body)));
    assert_ne!(header(headers, SIGNATURE_HEADER), Some(wrong.as_str()));
    assert_eq!(header(headers, EVENT_HEADER), Some("rollout.failed"));
    assert_eq!(header(headers, DELIVERY_HEADER), Some("rollout-17/failed"));
    assert_eq!(header(headers, "content-type"), Some("application/json"));
    let got: Notification = serde_json::from_slice(body).unwrap();
    assert_eq!(got, event("rollout-17/failed"));

    let stats = notifier.delivered();
    assert_eq!((stats.accepted, stats.delivered, stats.failed), (1, 1, 0));
    assert_eq!((stats.retries, stats.dropped, stats.pending), (0, 0, 0));
}

#[tokio::test]
async fn slack_variant_has_text_and_blocks_and_no_signature_without_secret() {
    let (url, rec) = endpoint(&[]).await;
    let notifier = Notifier::start_with(vec![target(url, WebhookFormat::Slack, None)], fast());
    notifier.notify(event("e1"));
    assert!(notifier.flush(Duration::from_secs(20)).await);
    let reqs = rec.requests();
    assert_eq!(reqs.len(), 1);
    let (headers, body) = &reqs[0];
    assert_eq!(header(headers, SIGNATURE_HEADER), None);
    assert_eq!(header(headers, DELIVERY_HEADER), Some("e1"));
    let msg: Value = serde_json::from_slice(body).unwrap();
    let obj = msg.as_object().unwrap();
    assert_eq!(
        obj.keys().collect::<Vec<_>>(),
        ["blocks", "text"],
        "only Slack's keys"
    );
    let text = msg["text"].as_str().unwrap();
    assert!(text.contains("rollout.failed"), "{text}");
    assert!(text.contains("checkout"), "{text}");
    assert!(text.contains("Canary v1.5.0 failed analysis"), "{text}");
    let blocks = msg["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty());
    for b in blocks {
        let kind = b["type"].as_str().unwrap();
        assert!(["section", "context"].contains(&kind), "{b}");
        if kind == "section" {
            let mrkdwn = b.get("text").map(|t| t["type"].as_str().unwrap());
            let fields = b.get("fields").map(|f| f.as_array().unwrap().len());
            assert!(
                mrkdwn == Some("mrkdwn") || fields.is_some_and(|n| n <= 10),
                "{b}"
            );
        }
    }
}

#[tokio::test]
async fn server_errors_and_429_are_retried_with_the_same_delivery_id() {
    let (url, rec) = endpoint(&[500, 429, 503]).await;
    let notifier = Notifier::start_with(vec![target(url, WebhookFormat::Json, Some("k"))], fast());
    notifier.notify(event("rec-3/notify"));
    assert!(notifier.flush(Duration::from_secs(20)).await);
    let reqs = rec.requests();
    assert_eq!(reqs.len(), 4, "three failures, then success");
    for (headers, body) in &reqs {
        assert_eq!(header(headers, DELIVERY_HEADER), Some("rec-3/notify"));
        assert_eq!(body, &reqs[0].1, "same body on every attempt");
        assert_eq!(
            header(headers, SIGNATURE_HEADER),
            header(&reqs[0].0, SIGNATURE_HEADER)
        );
    }
    let stats = notifier.delivered();
    assert_eq!((stats.delivered, stats.failed, stats.retries), (1, 0, 3));
}

#[tokio::test]
async fn attempts_are_bounded() {
    let (url, rec) = endpoint(&[500, 500, 500, 500, 500, 500]).await;
    let notifier = Notifier::start_with(vec![target(url, WebhookFormat::Json, None)], fast());
    notifier.notify(event("x"));
    assert!(notifier.flush(Duration::from_secs(20)).await);
    assert_eq!(rec.requests().len(), 4, "max_attempts");
    let stats = notifier.delivered();
    assert_eq!((stats.delivered, stats.failed, stats.retries), (0, 1, 3));
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (url, rec) = endpoint(&[400]).await;
    let notifier = Notifier::start_with(vec![target(url, WebhookFormat::Slack, None)], fast());
    notifier.notify(event("bad"));
    notifier.notify(event("good"));
    assert!(notifier.flush(Duration::from_secs(20)).await);
    let ids = delivery_ids(&rec);
    assert_eq!(
        ids,
        ["bad", "good"],
        "the 400 is final; the next one goes out"
    );
    let stats = notifier.delivered();
    assert_eq!((stats.delivered, stats.failed, stats.retries), (1, 1, 0));
}

#[tokio::test]
async fn refused_connections_are_retried_then_given_up() {
    // Bind then drop: nothing listens on this port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let notifier = Notifier::start_with(
        vec![target(
            format!("http://127.0.0.1:{port}/hook"),
            WebhookFormat::Json,
            None,
        )],
        fast(),
    );
    notifier.notify(event("x"));
    assert!(notifier.flush(Duration::from_secs(20)).await);
    let stats = notifier.delivered();
    assert_eq!((stats.delivered, stats.failed, stats.retries), (0, 1, 3));
}

/// Runs on one thread: if `notify()` waited for the network (or for the delivery tasks), the
/// burst below could never finish.
#[tokio::test(flavor = "current_thread")]
async fn a_dead_endpoint_never_blocks_notify_and_the_queue_drops_the_oldest() {
    // Accepts connections (kernel backlog) but never answers.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/hook", blackhole.local_addr().unwrap());
    let (live, rec) = endpoint(&[]).await;
    let notifier = Notifier::start_with(
        vec![
            target(dead, WebhookFormat::Json, None),
            target(live, WebhookFormat::Json, None),
        ],
        NotifierConfig {
            queue_capacity: 4,
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            request_timeout: Duration::from_millis(300),
        },
    );
    let handle = notifier.clone();
    for i in 0..1000 {
        handle.notify(event(&format!("n{i}")));
    }
    let stats = notifier.delivered();
    assert_eq!(stats.accepted, 1000);
    assert_eq!(
        stats.dropped,
        2 * (1000 - 4),
        "each target keeps its 4 newest"
    );
    assert_eq!(stats.pending, 8);
    // The dead endpoint cannot be done quickly.
    assert!(!notifier.flush(Duration::from_millis(100)).await);

    // The live target is not held up by the dead one: it gets the newest four, in order.
    assert!(notifier.flush(Duration::from_secs(60)).await);
    let ids = delivery_ids(&rec);
    assert_eq!(ids, ["n996", "n997", "n998", "n999"]);
    let stats = notifier.delivered();
    assert_eq!((stats.delivered, stats.failed, stats.pending), (4, 4, 0));
    drop(blackhole);
}

#[tokio::test]
async fn unusable_targets_count_as_failed_without_blocking_others() {
    let (url, rec) = endpoint(&[]).await;
    let notifier = Notifier::start_with(
        vec![
            target("gopher://example/hook", WebhookFormat::Json, None),
            target(url, WebhookFormat::Json, None),
        ],
        fast(),
    );
    notifier.notify(event("a"));
    assert!(notifier.flush(Duration::from_secs(20)).await);
    assert_eq!(rec.requests().len(), 1);
    let stats = notifier.delivered();
    assert_eq!((stats.delivered, stats.failed), (1, 1));
}

#[tokio::test]
async fn no_targets_is_fine() {
    let notifier = Notifier::start(Vec::new());
    notifier.notify(event("a"));
    assert!(notifier.flush(Duration::from_millis(10)).await);
    assert_eq!(notifier.delivered().accepted, 1);
}
