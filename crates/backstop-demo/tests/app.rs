//! The sample service over real sockets, in process.

use std::net::SocketAddr;
use std::time::Duration;

use backstop_demo::DemoArgs;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn get(client: &HttpClient, addr: SocketAddr, path: &str) -> (u16, String) {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.expect("request to the demo app");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Starts the app on a free port; returns its address, a shutdown trigger and the serve task.
async fn app(
    args: DemoArgs,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(backstop_demo::serve(listener, args, async move {
        let _ = rx.await;
    }));
    (addr, tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_with_the_configured_error_ratio() {
    let mut args = DemoArgs::new(0, "v2");
    args.error_ratio = 0.3;
    args.latency_ms = 1.0;
    args.latency_sigma = 0.0;
    args.seed = Some(3);
    let (addr, stop, task) = app(args).await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let n = 300;
    let mut errors = 0;
    for i in 0..n {
        let path = if i % 2 == 0 {
            "/"
        } else {
            "/checkout/cart?id=1"
        };
        match get(&client, addr, path).await {
            (200, body) => assert_eq!(body, "ok v2"),
            (500, body) => {
                assert_eq!(body, "error v2");
                errors += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // Binomial(300, 0.3): mean 90, sd ~ 7.9; allow 5 sd.
    assert!((50..=130).contains(&errors), "errors {errors} of {n}");
    // Health and version never fail and never wait.
    for _ in 0..20 {
        assert_eq!(get(&client, addr, "/healthz").await, (200, "ok".to_owned()));
    }
    assert_eq!(get(&client, addr, "/version").await, (200, "v2".to_owned()));
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let mut args = DemoArgs::new(0, "v1");
    args.latency_ms = 300.0;
    args.latency_sigma = 0.0;
    let (addr, stop, task) = app(args).await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let slow = tokio::spawn({
        let client = client.clone();
        async move { get(&client, addr, "/").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    assert_eq!(slow.await.unwrap(), (200, "ok v1".to_owned()));
    task.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening"
    );
}

#[tokio::test]
async fn run_reports_a_busy_port_and_bad_settings() {
    let busy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = busy.local_addr().unwrap().port();
    let err = backstop_demo::run(DemoArgs::new(port, "v1"), std::future::pending())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    let mut args = DemoArgs::new(0, "v1");
    args.error_ratio = -0.1;
    let err = backstop_demo::run(args, std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("--error-ratio"), "{err}");
}
