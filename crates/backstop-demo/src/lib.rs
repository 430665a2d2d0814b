//! backstop-demo: the sample service used by quickstart, tests and benchmarks.
//!
//! Every path except `/healthz` and `/version` answers `200 ok <version>` after a sampled
//! latency, or `500 error <version>` with probability `error_ratio`. Latency is lognormal with
//! median `latency_ms` and shape `latency_sigma`; with probability `tail_ratio` a request takes
//! `tail_ms` instead. Every setting can come from a flag or from its `DEMO_*` environment
//! variable (the flag wins).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::get;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;

/// Longest latency the app will ever sleep (guards against absurd samples or settings).
pub const MAX_LATENCY_MS: f64 = 60_000.0;

/// Behaviour of one running version of the sample service.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct DemoArgs {
    /// Port to listen on.
    #[arg(long, env = "DEMO_PORT")]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "DEMO_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// Version this instance reports (in answers and on /version).
    #[arg(long = "version", env = "DEMO_VERSION", default_value = "dev")]
    pub version: String,
    /// Probability (0..=1) that a request answers 500.
    #[arg(long, env = "DEMO_ERROR_RATIO", default_value_t = 0.0, value_parser = parse_ratio, allow_negative_numbers = true)]
    pub error_ratio: f64,
    /// Median latency in milliseconds.
    #[arg(long, env = "DEMO_LATENCY_MS", default_value_t = 20.0, value_parser = parse_non_negative, allow_negative_numbers = true)]
    pub latency_ms: f64,
    /// Shape (sigma) of the lognormal latency; 0 = always the median.
    #[arg(long, env = "DEMO_LATENCY_SIGMA", default_value_t = 0.3, value_parser = parse_non_negative, allow_negative_numbers = true)]
    pub latency_sigma: f64,
    /// Probability (0..=1) that a request takes `tail_ms` instead.
    #[arg(long, env = "DEMO_TAIL_RATIO", default_value_t = 0.0, value_parser = parse_ratio, allow_negative_numbers = true)]
    pub tail_ratio: f64,
    /// Latency of tail requests, in milliseconds.
    #[arg(long, env = "DEMO_TAIL_MS", default_value_t = 1000.0, value_parser = parse_non_negative, allow_negative_numbers = true)]
    pub tail_ms: f64,
    /// Seed of the random generator (reproducible behaviour); random when absent.
    #[arg(long, env = "DEMO_SEED")]
    pub seed: Option<u64>,
    /// While this file exists, the number in it (0..=1) is the error ratio instead: every
    /// version given the same file fails alike, like a shared dependency going down.
    #[arg(long, env = "DEMO_FAULT_FILE")]
    pub fault_file: Option<std::path::PathBuf>,
    /// Milliseconds to wait before listening, like a service that loads a cache or warms up
    /// before it opens its port.
    #[arg(long, env = "DEMO_START_DELAY_MS", default_value_t = 0)]
    pub start_delay_ms: u64,
    /// A feature flag to ask Backstop about on every request (OpenFeature remote evaluation,
    /// the unit being the `x-user` header or `user` query parameter, else a random one); the
    /// answer says which side the request was on in `x-backstop-flags`.
    #[arg(long, env = "DEMO_FLAG")]
    pub flag: Option<String>,
    /// Backstop's address for flag evaluation, e.g. `http://127.0.0.1:7878`.
    #[arg(long, env = "DEMO_FLAG_URL", requires = "flag")]
    pub flag_url: Option<String>,
    /// Token for flag evaluation (a viewer token is enough).
    #[arg(long, env = "DEMO_FLAG_TOKEN", hide_env_values = true)]
    pub flag_token: Option<String>,
    /// The environment to evaluate the flag in.
    #[arg(long, env = "DEMO_FLAG_ENV")]
    pub flag_env: Option<String>,
    /// Probability (0..=1) that a request whose flag is on answers 500: the flagged feature's
    /// bug.
    #[arg(long, env = "DEMO_FLAG_ERROR_RATIO", default_value_t = 0.0, value_parser = parse_ratio, allow_negative_numbers = true)]
    pub flag_error_ratio: f64,
    /// Probability (0..=1) that a request, answered as usual, writes an `ERROR` line to the
    /// log: a release that fails quietly (a write that is lost, a retry that gives up), seen
    /// only in its logs.
    #[arg(long, env = "DEMO_ERROR_LOG_RATIO", default_value_t = 0.0, value_parser = parse_ratio, allow_negative_numbers = true)]
    pub error_log_ratio: f64,
    /// The one bad instance: when the id Backstop started this process as
    /// (`BACKSTOP_INSTANCE_ID`, e.g. `shop-prod-v2-1a2b3c-r3`) ends with this (e.g. `-r3`), the
    /// error ratio is `bad_instance_error_ratio` instead: a version healthy on all its
    /// instances but one (a bad host, a corrupt local cache).
    #[arg(long, env = "DEMO_BAD_INSTANCE")]
    pub bad_instance: Option<String>,
    /// The error ratio of the bad instance (default 0.5).
    #[arg(long, env = "DEMO_BAD_INSTANCE_ERROR_RATIO", default_value_t = 0.5, value_parser = parse_ratio, allow_negative_numbers = true)]
    pub bad_instance_error_ratio: f64,
}

impl DemoArgs {
    /// Settings with the documented defaults, for the given port and version.
    pub fn new(port: u16, version: impl Into<String>) -> DemoArgs {
        DemoArgs {
            port,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            version: version.into(),
            error_ratio: 0.0,
            latency_ms: 20.0,
            latency_sigma: 0.3,
            tail_ratio: 0.0,
            tail_ms: 1000.0,
            seed: None,
            fault_file: None,
            start_delay_ms: 0,
            flag: None,
            flag_url: None,
            flag_token: None,
            flag_env: None,
            flag_error_ratio: 0.0,
            error_log_ratio: 0.0,
            bad_instance: None,
            bad_instance_error_ratio: 0.5,
        }
    }

    /// Checks the ranges (clap already does for command lines; this covers values built in
    /// code). The error names the setting.
    pub fn validate(&self) -> io::Result<()> {
        let bad = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        for (name, v) in [
            ("--error-ratio", self.error_ratio),
            ("--tail-ratio", self.tail_ratio),
            ("--flag-error-ratio", self.flag_error_ratio),
            ("--error-log-ratio", self.error_log_ratio),
            ("--bad-instance-error-ratio", self.bad_instance_error_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} must be between 0 and 1, got {v}"));
            }
        }
        for (name, v) in [
            ("--latency-ms", self.latency_ms),
            ("--latency-sigma", self.latency_sigma),
            ("--tail-ms", self.tail_ms),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be a finite number >= 0, got {v}"));
            }
        }
        Ok(())
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a number between 0 and 1, got `{s}`"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("expected a number between 0 and 1, got {v}"))
    }
}

fn parse_non_negative(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a number >= 0, got `{s}`"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("expected a finite number >= 0, got {v}"))
    }
}

/// What one request will do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub latency_ms: f64,
    pub error: bool,
}

/// Draws the behaviour of one request from the settings.
pub fn sample<R: Rng + ?Sized>(args: &DemoArgs, rng: &mut R) -> Outcome {
    let error = args.error_ratio > 0.0 && rng.random::<f64>() < args.error_ratio;
    let latency_ms = if args.tail_ratio > 0.0 && rng.random::<f64>() < args.tail_ratio {
        args.tail_ms
    } else if args.latency_sigma > 0.0 {
        args.latency_ms * (args.latency_sigma * standard_normal(rng)).exp()
    } else {
        args.latency_ms
    };
    Outcome {
        latency_ms: latency_ms.clamp(0.0, MAX_LATENCY_MS),
        error,
    }
}

/// Box-Muller transform.
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

struct AppState {
    args: DemoArgs,
    rng: Mutex<StdRng>,
    http: reqwest::Client,
}

/// The HTTP routes of the sample service.
pub fn router(args: DemoArgs) -> Router {
    let rng = match args.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    let state = Arc::new(AppState {
        args,
        rng: Mutex::new(rng),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default(),
    });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/version",
            get(|State(s): State<Arc<AppState>>| async move { s.args.version.clone() }),
        )
        .fallback(serve_request)
        .with_state(state)
}

/// Answers like a real service would, naming its version in the `x-backstop-version` header
/// (the built-in proxy sets the same header; behind HAProxy or nginx this one reaches clients)
/// and, with a flag, the side of it the request was on in `x-backstop-flags`.
async fn serve_request(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> (StatusCode, HeaderMap, String) {
    let fault = match &s.args.fault_file {
        Some(path) => tokio::fs::read_to_string(path)
            .await
            .ok()
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r)),
        None => None,
    };
    let unit = unit_of(&req);
    drop(req);
    let flag_on = match &s.args.flag {
        Some(key) => Some((key, flag_is_on(&s, key, unit).await)),
        None => None,
    };
    let outcome = {
        let mut rng = s.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let error_ratio = match (fault, flag_on) {
            (Some(ratio), _) => ratio,
            (None, Some((_, true))) => {
                1.0 - (1.0 - s.args.error_ratio) * (1.0 - s.args.flag_error_ratio)
            }
            (None, _) => s.args.error_ratio,
        };
        sample(
            &DemoArgs {
                error_ratio,
                ..s.args.clone()
            },
            &mut *rng,
        )
    };
    let logs_error = s.args.error_log_ratio > 0.0 && {
        let mut rng = s.rng.lock().unwrap_or_else(PoisonError::into_inner);
        rng.random::<f64>() < s.args.error_log_ratio
    };
    if logs_error {
        eprintln!(
            "ERROR {}: the order event was not written (queue full); the request still answered",
            s.args.version
        );
    }
    if outcome.latency_ms > 0.0 {
        tokio::time::sleep(
            Duration::try_from_secs_f64(outcome.latency_ms / 1000.0).unwrap_or_default(),
        )
        .await;
    }
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&s.args.version) {
        headers.insert("x-backstop-version", v);
    }
    if let Some((key, on)) = flag_on
        && let Ok(v) = HeaderValue::from_str(&format!("{key}={}", if on { "on" } else { "off" }))
    {
        headers.insert("x-backstop-flags", v);
    }
    if outcome.error {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            headers,
            format!("error {}", s.args.version),
        )
    } else {
        (StatusCode::OK, headers, format!("ok {}", s.args.version))
    }
}

/// The unit a flag is evaluated for: the `x-user` header, else the `user` query parameter.
fn unit_of(req: &axum::extract::Request) -> Option<String> {
    req.headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("user=").map(str::to_owned))
            })
        })
}

/// Asks Backstop whether `key` is on for this request's unit; off when it cannot tell (the
/// OpenFeature default on error).
async fn flag_is_on(s: &AppState, key: &str, unit: Option<String>) -> bool {
    let Some(url) = &s.args.flag_url else {
        return false;
    };
    let unit = unit.unwrap_or_else(|| {
        let n: u32 = s
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random();
        format!("anonymous-{n}")
    });
    let mut context = serde_json::json!({"targetingKey": unit});
    if let Some(env) = &s.args.flag_env {
        context["env"] = serde_json::json!(env);
    }
    let mut call = s
        .http
        .post(format!(
            "{}/ofrep/v1/evaluate/flags/{key}",
            url.trim_end_matches('/')
        ))
        .json(&serde_json::json!({ "context": context }));
    if let Some(token) = &s.args.flag_token {
        call = call.bearer_auth(token);
    }
    let Ok(resp) = call.send().await else {
        return false;
    };
    resp.json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v.get("value").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

/// Serves on an already bound listener until `shutdown` resolves, then finishes in-flight
/// requests and returns.
pub async fn serve(
    listener: TcpListener,
    args: DemoArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    args.validate()?;
    let mut args = args;
    let instance = std::env::var("BACKSTOP_INSTANCE_ID").unwrap_or_default();
    if let Some(suffix) = args.bad_instance.as_deref()
        && !suffix.is_empty()
        && instance.ends_with(suffix)
    {
        tracing::warn!(instance = %instance, error_ratio = args.bad_instance_error_ratio, "This is the bad instance (DEMO_BAD_INSTANCE).");
        args.error_ratio = args.bad_instance_error_ratio;
    }
    let addr = listener.local_addr()?;
    let version = args.version.clone();
    tracing::info!(%addr, version = %version, error_ratio = args.error_ratio, latency_ms = args.latency_ms, "Demo app listening.");
    axum::serve(listener, router(args))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!(version = %version, "Demo app stopped.");
    Ok(())
}

/// Binds `host:port` from the settings and serves until `shutdown` resolves.
pub async fn run(
    args: DemoArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    args.validate()?;
    let addr = SocketAddr::new(args.host, args.port);
    if args.start_delay_ms > 0 {
        tracing::info!(
            delay_ms = args.start_delay_ms,
            "Demo app warming up before it listens."
        );
        tokio::time::sleep(std::time::Duration::from_millis(args.start_delay_ms)).await;
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("demo app: cannot listen on {addr}: {e}")))?;
    serve(listener, args, shutdown).await
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C): pass it to [`run`] for a graceful stop.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot listen for SIGTERM; only Ctrl-C stops the app.");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = term => tracing::info!("SIGTERM received; shutting down."),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DemoArgs,
    }

    #[test]
    fn latency_median_and_tail_follow_the_settings() {
        let mut args = DemoArgs::new(1, "v1");
        args.latency_ms = 40.0;
        args.latency_sigma = 0.5;
        args.tail_ratio = 0.1;
        args.tail_ms = 2000.0;
        let mut rng = StdRng::seed_from_u64(7);
        let n = 20_000;
        let mut normal: Vec<f64> = Vec::new();
        let mut tails = 0;
        for _ in 0..n {
            let o = sample(&args, &mut rng);
            assert!(!o.error);
            if o.latency_ms == 2000.0 {
                tails += 1;
            } else {
                normal.push(o.latency_ms);
            }
        }
        normal.sort_by(f64::total_cmp);
        let median = normal[normal.len() / 2];
        assert!((38.0..42.0).contains(&median), "median {median}");
        // sigma 0.5: the 84th percentile is about median * e^0.5.
        let p84 = normal[normal.len() * 841 / 1000];
        assert!((62.0..70.0).contains(&p84), "p84 {p84}");
        let tail_share = f64::from(tails) / f64::from(n);
        assert!(
            (0.09..0.11).contains(&tail_share),
            "tail share {tail_share}"
        );
    }

    #[test]
    fn error_ratio_is_honoured() {
        let mut args = DemoArgs::new(1, "v1");
        args.error_ratio = 0.05;
        let mut rng = StdRng::seed_from_u64(1);
        let errors = (0..20_000)
            .filter(|_| sample(&args, &mut rng).error)
            .count();
        assert!((850..1150).contains(&errors), "errors {errors}");
        args.error_ratio = 0.0;
        assert!((0..1000).all(|_| !sample(&args, &mut rng).error));
        args.error_ratio = 1.0;
        assert!((0..1000).all(|_| sample(&args, &mut rng).error));
        args.latency_sigma = 0.0;
        assert_eq!(sample(&args, &mut rng).latency_ms, 20.0);
    }

    #[test]
    fn flags_parse_with_defaults_and_reject_out_of_range() {
        let cli = Cli::try_parse_from(["demo", "--port", "8080", "--version", "v2"]).unwrap();
        let mut want = DemoArgs::new(8080, "v2");
        want.seed = None;
        // DEMO_* variables from the environment would change the defaults; none are set here.
        if std::env::vars().all(|(k, _)| !k.starts_with("DEMO_")) {
            assert_eq!(cli.args, want);
        }
        let cli = Cli::try_parse_from([
            "demo",
            "--port",
            "1",
            "--error-ratio",
            "0.25",
            "--latency-ms",
            "5",
            "--tail-ratio",
            "0.5",
            "--tail-ms",
            "300",
            "--latency-sigma",
            "0",
            "--seed",
            "9",
        ])
        .unwrap();
        assert_eq!(cli.args.error_ratio, 0.25);
        assert_eq!(cli.args.tail_ms, 300.0);
        assert_eq!(cli.args.seed, Some(9));
        for bad in [
            vec!["demo", "--port", "1", "--error-ratio", "1.5"],
            vec!["demo", "--port", "1", "--error-ratio", "x"],
            vec!["demo", "--port", "1", "--latency-ms", "-3"],
            vec!["demo", "--port", "1", "--tail-ratio", "NaN"],
            vec!["demo", "--port", "70000"],
        ] {
            let err = Cli::try_parse_from(&bad)
                .err()
                .unwrap_or_else(|| panic!("accepted {bad:?}"));
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn validate_names_the_setting() {
        let mut args = DemoArgs::new(1, "v1");
        assert!(args.validate().is_ok());
        args.tail_ratio = 2.0;
        let err = args.validate().unwrap_err();
        assert!(err.to_string().contains("--tail-ratio"), "{err}");
        args.tail_ratio = 0.0;
        args.latency_ms = f64::INFINITY;
        assert!(
            args.validate()
                .unwrap_err()
                .to_string()
                .contains("--latency-ms")
        );
    }
}
