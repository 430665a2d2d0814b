//! `backstop_server::serve` in this process on 127.0.0.1:0, in a temp state folder, and an
//! authenticated JSON client for its API.

use std::time::Duration;

use serde_json::Value;

/// One service `shop` (tier 2) with environment `prod`: enough to exercise the API.
const CONFIG: &str = r#"
services:
  - name: shop
    owner: team
    tier: 2
    run: {command: "true {port}"}
    environments:
      - {name: prod, listen: "127.0.0.1:0"}
"#;

pub struct ApiServer {
    pub base: String,
    /// The admin token.
    pub token: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl ApiServer {
    /// Serves, and waits until the admin token is written.
    pub async fn start() -> ApiServer {
        let dir = tempfile::tempdir().unwrap();
        let config = backstop_config::parse(CONFIG, "test.yaml").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let opts = backstop_server::ServeOptions::new(config, dir.path().to_path_buf()).unwrap();
        let task = tokio::spawn(backstop_server::serve(listener, opts, async move {
            let _ = rx.await;
        }));
        let token_path = dir.path().join("admin.token");
        for _ in 0..200 {
            if token_path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let token = std::fs::read_to_string(&token_path).unwrap();
        ApiServer {
            base,
            token,
            http: reqwest::Client::new(),
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    /// `method path` with the admin token and an optional JSON body: (status, JSON or null).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Ends the server the way a signal would and asserts it stopped cleanly.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}
