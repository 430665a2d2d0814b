//! Tiny HTTP upstreams on 127.0.0.1:0 that say which version answered, and a client for them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use backstop_drivers::proxy::VERSION_HEADER;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// An upstream that answers `ok <version>`; path `/fail` answers 500; query `sleep_ms=N` delays
/// the answer; `/echo` answers with a description of the request (and header
/// `x-upstream: <version>`). No version header: Backstop's built-in proxy adds its own.
pub async fn upstream(version: &str) -> SocketAddr {
    serve(version, false).await
}

/// [`upstream`] that also sets `x-backstop-version: <version>` itself, as a release behind an
/// external router (HAProxy, nginx) must for the load generator to count by version.
pub async fn versioned_upstream(version: &str) -> SocketAddr {
    serve(version, true).await
}

async fn serve(version: &str, tags_version: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let version = version.to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let version = version.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let version = version.clone();
                    async move {
                        let mut r = answer(&version, req).await;
                        if tags_version {
                            r.headers_mut()
                                .insert(VERSION_HEADER, version.parse().unwrap());
                        }
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn answer(version: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let sleep_ms: u64 = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("sleep_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match parts.uri.path() {
        "/fail" => {
            let mut r = Response::new(Full::new(Bytes::from("boom")));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
        "/echo" => {
            let header = |n: &str| {
                parts
                    .headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            let text = format!(
                "method={} target={} xff={} custom={} host={} body={}",
                parts.method,
                parts.uri.path_and_query().map_or("", |p| p.as_str()),
                header("x-forwarded-for"),
                header("x-custom"),
                header("host"),
                String::from_utf8_lossy(&body)
            );
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut()
                .insert("x-upstream", version.parse().unwrap());
            r
        }
        // `/flags/on` and `/flags/off`: an application telling which side of its flags the
        // request was on, one header per flag (`new-checkout` as asked, `dark-mode` on); the
        // `off` side fails.
        path if path.starts_with("/flags/") => {
            let side = path.trim_start_matches("/flags/");
            let mut r = Response::new(Full::new(Bytes::from(format!("ok {version}"))));
            if side == "off" {
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            }
            let h = r.headers_mut();
            h.append(
                "x-backstop-flags",
                format!("new-checkout={side}").parse().unwrap(),
            );
            h.append(
                "x-backstop-flags",
                "dark-mode=on, bad entry".parse().unwrap(),
            );
            r
        }
        _ => Response::new(Full::new(Bytes::from(format!("ok {version}")))),
    }
}

/// A [`versioned_upstream`] for `v1` and one for `v2`.
pub async fn versioned_pair() -> (SocketAddr, SocketAddr) {
    (
        versioned_upstream("v1").await,
        versioned_upstream("v2").await,
    )
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET through a client; returns (status, x-backstop-version, body).
pub async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> (u16, Option<String>, String) {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client
        .request(req)
        .await
        .expect("request through the proxy");
    let status = resp.status().as_u16();
    let version = resp
        .headers()
        .get(VERSION_HEADER)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, version, String::from_utf8_lossy(&body).into_owned())
}

/// Sends `n` requests for `/` to `front` and asserts that `version` answered every one (its
/// `x-backstop-version` header).
pub async fn assert_served_by(front: SocketAddr, n: usize, version: &str) {
    let client = client();
    for i in 0..n {
        let (_, served, body) = get(&client, front, "/").await;
        assert_eq!(
            served.as_deref(),
            Some(version),
            "request {i} to {front}: {body}"
        );
    }
}
