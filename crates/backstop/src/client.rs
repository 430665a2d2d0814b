//! The CLI's HTTP client for the daemon's API. Errors carry the server's message and map to
//! exit codes: 4xx → 2 (bad input: nothing changed), a refusal by the promotion gate → 1,
//! connection or 5xx → 3.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use backstop_api::ErrorBody;
use backstop_api::error::{APPROVAL_REQUIRED, GATE_BLOCKED};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::output::{OutputArgs, Render};

/// Where the daemon is and how to authenticate, from flags or the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address of the Backstop daemon's API.
    #[arg(
        long,
        env = "BACKSTOP_SERVER",
        default_value = "http://127.0.0.1:7300",
        global = true
    )]
    pub server: String,
    /// API token (default: read from STATE_DIR/admin.token, written by the daemon on first start).
    #[arg(long, env = "BACKSTOP_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// State folder of a local daemon: where its database and admin token live.
    #[arg(
        long,
        env = "BACKSTOP_STATE_DIR",
        default_value = ".backstop",
        global = true
    )]
    pub state_dir: PathBuf,
}

/// The flags of a command that calls the daemon and prints its answer.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

impl ApiArgs {
    pub fn client(&self) -> Result<Client> {
        Client::new(&self.server)
    }

    pub fn print<T: Render + ?Sized>(&self, value: &T) {
        self.out.output.print(value);
    }

    /// GETs `path` and prints the answer; returns it (for the exit code).
    pub async fn get_and_print<T: DeserializeOwned + Render>(&self, path: &str) -> Result<T> {
        let answer: T = self.client()?.get(path).await?;
        self.print(&answer);
        Ok(answer)
    }

    /// POSTs `body` to `path` and prints the answer; returns it (for the exit code).
    pub async fn post_and_print<T: DeserializeOwned + Render>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T> {
        let answer: T = self.client()?.post(path, body).await?;
        self.print(&answer);
        Ok(answer)
    }
}

/// An API path and its query string, a parameter at a time; values are percent-encoded.
pub struct Query(String);

impl Query {
    pub fn new(path: &str) -> Query {
        Query(path.to_owned())
    }

    /// Adds `key=value`.
    pub fn param(mut self, key: &str, value: impl std::fmt::Display) -> Query {
        let separator = if self.0.contains('?') { '&' } else { '?' };
        self.0 = format!("{}{separator}{key}={}", self.0, encode(&value.to_string()));
        self
    }

    /// Adds `key=value` when there is a value.
    pub fn param_if(self, key: &str, value: Option<impl std::fmt::Display>) -> Query {
        match value {
            Some(v) => self.param(key, v),
            None => self,
        }
    }

    /// Adds `key=true` when `on` (the API's default is false).
    pub fn flag(self, key: &str, on: bool) -> Query {
        self.param_if(key, on.then_some(true))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A failed API call, with the exit code it deserves.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub exit_code: i32,
    pub message: String,
}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

pub fn read_token(state_dir: &Path) -> Result<String> {
    let path = state_dir.join(backstop_server::auth::TOKEN_FILE);
    let token = std::fs::read_to_string(&path).with_context(|| {
        format!("no API token: pass --token or BACKSTOP_TOKEN, or point --state-dir at the daemon's state folder (cannot read {})", path.display())
    })?;
    Ok(token.trim().to_string())
}

impl Client {
    pub fn new(args: &ServerArgs) -> Result<Client> {
        let token = match &args.token {
            Some(t) => t.clone(),
            None => read_token(&args.state_dir)?,
        };
        Ok(Self::with(
            args.server.trim_end_matches('/').to_string(),
            token,
        ))
    }

    pub fn with(base: String, token: String) -> Client {
        Client {
            base,
            token,
            http: reqwest::Client::new(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await?;
        resp.json().await.context("decoding the server's answer")
    }

    pub async fn get_text(&self, path: &str) -> Result<String> {
        let resp = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await?;
        Ok(resp.text().await?)
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let resp = self
            .send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await?;
        resp.json().await.context("decoding the server's answer")
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| CallError {
            exit_code: 3,
            message: format!("cannot reach the Backstop daemon at {}: {e} (is `backstop serve` running? see --server)", self.base),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        let error = serde_json::from_slice::<ErrorBody>(&body)
            .ok()
            .map(|b| b.error);
        // OpenFeature's evaluation endpoints answer failures in their own shape.
        let ofrep = serde_json::from_slice::<backstop_api::flags::OfrepFailure>(&body)
            .ok()
            .map(|f| format!("{}: {}", f.error_code, f.error_details));
        let message = error
            .as_ref()
            .map(|e| e.message.as_str())
            .or(ofrep.as_deref())
            .unwrap_or("no error message");
        let pointer = error
            .as_ref()
            .and_then(|e| e.pointer.as_deref())
            .map(|p| format!(" (at {p})"))
            .unwrap_or_default();
        // The promotion gate said no, or an override waits for a second person: the check
        // failed (1), it was not bad input.
        let gate_blocked = error
            .as_ref()
            .is_some_and(|e| e.code == GATE_BLOCKED || e.code == APPROVAL_REQUIRED);
        Err(CallError {
            exit_code: if gate_blocked {
                1
            } else if status.is_client_error() {
                2
            } else {
                3
            },
            message: format!("{status}: {message}{pointer}"),
        }
        .into())
    }
}
