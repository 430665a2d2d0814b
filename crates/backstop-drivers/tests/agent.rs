//! `backstop agent` in-process on loopback, with real processes and a real proxy: the token is
//! checked first, fenced requests with a stale epoch change nothing, artifacts arrive verified,
//! and a restarted agent serves its proxies' last routes before any replica calls.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use backstop_drivers::agent::{AgentClient, AgentError, AgentOptions, new_token, serve_agent};
use backstop_drivers::process::InstanceSpec;
use backstop_drivers::proxy::{Routes, Upstream};
use backstop_drivers::proxy_control::{ControlError, ProxyClient};
use backstop_drivers::router::RouteFence;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct RunningAgent {
    address: SocketAddr,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_agent(dir: &Path, address: Option<SocketAddr>) -> RunningAgent {
    // The address of a stopped agent may be held a moment longer by connections it was
    // serving (ended by their own tasks): try again for a while, as a restarted agent would.
    let want = address.unwrap_or("127.0.0.1:0".parse().unwrap());
    let mut tries = 0;
    let listener = loop {
        match TcpListener::bind(want).await {
            Ok(l) => break l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("bind {want}: {e}"),
        }
    };
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let opts = AgentOptions {
        name: "web1".into(),
        state_dir: dir.to_path_buf(),
    };
    let done = tokio::spawn(serve_agent(listener, opts, stop.clone()));
    RunningAgent {
        address,
        stop,
        done,
    }
}

impl RunningAgent {
    fn client(&self, token: &str) -> AgentClient {
        AgentClient::new(
            "web1",
            &self.address.to_string(),
            token,
            "BACKSTOP_AGENT_WEB1_TOKEN",
        )
    }

    async fn stop(self) {
        self.stop.cancel();
        self.done.await.unwrap().unwrap();
    }
}

/// Answers `200 ok` to every request, as an upstream.
async fn upstream(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

async fn get(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn fence(epoch: i64) -> RouteFence {
    RouteFence {
        lease: "env/shop/prod".into(),
        epoch,
    }
}

#[tokio::test]
async fn a_wrong_token_is_refused_naming_where_the_token_comes_from() {
    let dir = tempfile::tempdir().unwrap();
    let _token = new_token(dir.path()).unwrap();
    let agent = start_agent(dir.path(), None).await;
    let err = agent.client("bsa_wrong").hello().await.unwrap_err();
    assert!(matches!(err, AgentError::Unauthorized { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("agent web1"), "{message}");
    assert!(message.contains("BACKSTOP_AGENT_WEB1_TOKEN"), "{message}");
    // Nothing was started for the refused caller.
    let proxy = ProxyClient::on_agent(agent.client("bsa_wrong"), "shop/prod", free_addr());
    assert!(proxy.routes().await.is_err());
    assert!(!dir.path().join("proxies").exists());
    agent.stop().await;
}

#[tokio::test]
async fn an_agent_without_a_token_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let opts = AgentOptions {
        name: "web1".into(),
        state_dir: dir.path().to_path_buf(),
    };
    let err = serve_agent(listener, opts, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("backstop agent token"), "{err}");
}

#[tokio::test]
async fn stale_epochs_change_no_route_and_the_routes_survive_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let token = new_token(dir.path()).unwrap();
    let agent = start_agent(dir.path(), None).await;
    let listen = free_addr();
    let proxy = ProxyClient::on_agent(agent.client(&token), "shop/prod", listen);
    let v1 = upstream("v1").await;
    let v2 = upstream("v2").await;
    let routes = |addr: SocketAddr, version: &str| Routes {
        stable: Some(Upstream {
            version: version.into(),
            addr,
            replicas: Vec::new(),
        }),
        canary: None,
        canary_weight: 0.0,
    };
    // The new holder (epoch 2) routes to v2; the replaced one (epoch 1) cannot go back to v1.
    proxy
        .set_routes_fenced(1, &routes(v2, "v2"), Some(&fence(2)))
        .await
        .unwrap();
    let refused = proxy
        .set_routes_fenced(2, &routes(v1, "v1"), Some(&fence(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ControlError::Refused { message, .. } if message.contains("stale epoch")),
        "{refused}"
    );
    assert!(get(listen).await.ends_with("v2"));

    // Restarted, the agent serves the last routes before anyone calls it.
    let address = agent.address;
    agent.stop().await;
    let again = start_agent(dir.path(), Some(address)).await;
    let mut served = String::new();
    for _ in 0..100 {
        if let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(listen),
        )
        .await
        {
            s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            s.read_to_string(&mut served).await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served.ends_with("v2"), "{served}");
    let hello = again.client(&token).hello().await.unwrap();
    assert_eq!(hello.proxies.len(), 1);
    assert_eq!(hello.proxies[0].name, "shop/prod");
    again.stop().await;
}

#[tokio::test]
async fn instances_start_and_stop_only_for_the_current_epoch_and_artifacts_arrive_verified() {
    let dir = tempfile::tempdir().unwrap();
    let token = new_token(dir.path()).unwrap();
    let agent = start_agent(dir.path(), None).await;
    let client = agent.client(&token);

    // An artifact: uploaded once, verified, then found by digest.
    let local = dir.path().join("app.sh");
    std::fs::write(&local, "#!/bin/sh\nexec sleep 30\n").unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&local).unwrap()))
    };
    let path = client.ensure_artifact(&digest, &local).await.unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&local).unwrap()
    );
    assert_eq!(client.ensure_artifact(&digest, &local).await.unwrap(), path);
    let wrong = client
        .ensure_artifact(&"0".repeat(64), &local)
        .await
        .unwrap_err();
    assert!(wrong.to_string().contains("nothing kept"), "{wrong}");

    // The instance runs the artifact (`sleep`); its health answer comes from the test's own
    // server, so the test needs nothing but `sh`.
    let health = upstream("ok").await;
    let port = client.free_port().await.unwrap();
    assert_ne!(port, 0);
    let id = format!("agent-test-{}", std::process::id());
    let spec = InstanceSpec {
        instance_id: id.clone(),
        command: format!("{path} {port}"),
        port: health.port(),
        env: BTreeMap::new(),
        health_path: "/healthz".into(),
        health_timeout: Duration::from_millis(500),
        health_interval: Duration::from_millis(50),
        start_timeout: Duration::from_secs(10),
        log_path: "/nonexistent/ignored.log".into(),
    };
    let started = client.start(&spec, Some(&fence(7))).await.unwrap();
    assert!(client.is_running(&started).await.unwrap());
    assert_eq!(client.find_group(&id).await.unwrap(), Some(started.pid));
    // The log is the agent's, whatever the replica asked.
    assert!(dir.path().join("logs").join(format!("{id}.log")).exists());

    // A replaced replica (epoch 6) can neither stop it nor start another.
    let stale = client
        .stop(&started, Duration::from_secs(1), Some(&fence(6)))
        .await
        .unwrap_err();
    assert!(stale.to_string().contains("stale epoch"), "{stale}");
    assert!(client.is_running(&started).await.unwrap());
    let mut other = spec.clone();
    other.instance_id = format!("{id}-b");
    assert!(client.start(&other, Some(&fence(6))).await.is_err());
    assert_eq!(client.find_group(&other.instance_id).await.unwrap(), None);

    // The holder stops it.
    client
        .stop(&started, Duration::from_secs(1), Some(&fence(7)))
        .await
        .unwrap();
    assert!(!client.is_running(&started).await.unwrap());

    // An id that would leave the logs folder is refused.
    let mut bad = spec.clone();
    bad.instance_id = "../escape".into();
    assert!(client.start(&bad, Some(&fence(7))).await.is_err());
    agent.stop().await;
}

/// Whatever bytes reach the agent (no token, a wrong one, the right one followed by garbage or
/// by a request cut short), it answers or closes, keeps serving, and changes nothing.
#[tokio::test]
async fn arbitrary_bytes_change_nothing_and_the_agent_keeps_answering() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let dir = tempfile::tempdir().unwrap();
    let token = new_token(dir.path()).unwrap();
    let agent = start_agent(dir.path(), None).await;
    let address = agent.address;
    let mut inputs: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    let tokens = prop_oneof![Just(0u8), Just(1u8), Just(2u8)];
    let garbage = proptest::collection::vec(any::<u8>(), 0..300);
    let near_requests = "[{]\"op\":\"(proxy|start|stop|artifact|free_port)\"[ -~]{0,120}"
        .prop_map(|s: String| s.into_bytes());
    let bodies = prop_oneof![garbage, near_requests];
    for _ in 0..200 {
        let with_token = tokens.new_tree(&mut runner).unwrap().current();
        let body: Vec<u8> = bodies.new_tree(&mut runner).unwrap().current();
        inputs.push((with_token, body));
    }
    for (with_token, body) in inputs {
        let mut bytes = match with_token {
            0 => Vec::new(),
            1 => b"bsa_wrong\n".to_vec(),
            _ => format!("{token}\n").into_bytes(),
        };
        bytes.extend_from_slice(&body);
        let Ok(mut s) = tokio::net::TcpStream::connect(address).await else {
            panic!("the agent stopped accepting connections");
        };
        let _ = s.write_all(&bytes).await;
        let _ = s.shutdown().await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    }
    let hello = agent.client(&token).hello().await.unwrap();
    assert!(hello.proxies.is_empty(), "{hello:?}");
    assert!(
        !dir.path().join("artifacts").exists()
            || std::fs::read_dir(dir.path().join("artifacts"))
                .unwrap()
                .next()
                .is_none()
    );
    agent.stop().await;
}
