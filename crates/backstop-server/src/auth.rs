//! Who is calling and what they may do. The daemon creates an admin token on first start,
//! writes it once to `STATE_DIR/admin.token` (mode 0600) for the local CLI, and keeps only its
//! sha256 in memory and on disk (`admin.token.sha256`). People get their own tokens from
//! `backstop token create` (kept in the store as their sha256, with a role, maybe one
//! environment, an expiry). Every call is authenticated, then checked against [`POLICY`].

use std::path::Path;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;

use backstop_core::access::{Grant, Role};

use crate::Ctx;
use crate::error::ApiError;

pub const TOKEN_FILE: &str = "admin.token";
const TOKEN_HASH_FILE: &str = "admin.token.sha256";

pub use backstop_core::secret::hash_token;

/// Returns the admin token's hash, creating the token on first start. A hash file that does
/// not hold a sha256 (an older version's crash left it empty) is written again from the token
/// file, or, with no token to read, a new token is made: nobody is locked out without a word.
pub fn ensure_admin_token(state_dir: &Path) -> std::io::Result<String> {
    let hash_path = state_dir.join(TOKEN_HASH_FILE);
    let token_path = state_dir.join(TOKEN_FILE);
    if let Ok(hash) = std::fs::read_to_string(&hash_path) {
        let hash = hash.trim();
        if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(hash.to_string());
        }
        tracing::warn!(
            file = %hash_path.display(),
            "The admin token's hash file is damaged; writing it again."
        );
        if let Ok(token) = std::fs::read_to_string(&token_path)
            && !token.trim().is_empty()
        {
            let hash = hash_token(&token);
            write_private(&hash_path, &hash)?;
            return Ok(hash);
        }
    }
    let token = new_token();
    write_private(&token_path, &token)?;
    let hash = hash_token(&token);
    write_private(&hash_path, &hash)?;
    Ok(hash)
}

/// A fresh bearer token: `bst_` and 256 random bits in hex.
#[must_use]
pub fn new_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    format!("bst_{}", hex::encode(raw))
}

/// Writes a file only its owner reads, atomically (temp file, fsync, rename): a crash leaves
/// the old content or the new one, never an empty file.
pub(crate) fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    backstop_drivers::config_files::write_atomic(path, content.as_bytes(), 0o600)
        .map_err(std::io::Error::other)
}

/// Who is calling: the name the audit records as the actor of whatever the call changes, and
/// what the caller may do.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `token:NAME` (`token:admin` for the state folder's admin token).
    pub actor: String,
    pub grant: Grant,
}

/// The least role each `/api/v1` route needs, by method and route template. One table, read by
/// [`require_token`] before any handler runs; a handler acting in one environment also checks
/// the caller's grant there (a token can be limited to one environment). A route missing here
/// needs `admin`: new routes are closed until someone decides who may call them.
pub const POLICY: &[(&str, &str, Role)] = &[
    ("GET", "/services", Role::Viewer),
    ("GET", "/cluster", Role::Viewer),
    ("GET", "/releases", Role::Viewer),
    ("POST", "/releases", Role::Deployer),
    ("GET", "/releases/{id}", Role::Viewer),
    ("POST", "/releases/{id}/readmit", Role::Releaser),
    ("GET", "/rollouts", Role::Viewer),
    ("POST", "/rollouts", Role::Deployer),
    ("GET", "/rollouts/{id}", Role::Viewer),
    ("POST", "/rollouts/{id}/promote", Role::Releaser),
    ("POST", "/rollouts/{id}/abort", Role::Releaser),
    ("POST", "/rollouts/{id}/acknowledge", Role::Releaser),
    ("GET", "/rollouts/{id}/export", Role::Viewer),
    ("GET", "/rollouts/{id}/explain", Role::Viewer),
    ("POST", "/rollback", Role::Releaser),
    ("GET", "/rollback/preview", Role::Viewer),
    // Anyone with a token, in an emergency: flagged, notified, reviewed afterwards.
    ("POST", "/rollback/break-glass", Role::Viewer),
    ("GET", "/approvals", Role::Viewer),
    // The role of what it runs is checked in the handler (deployer or releaser).
    ("POST", "/approvals/{id}/approve", Role::Deployer),
    ("GET", "/recoveries", Role::Viewer),
    ("GET", "/recoveries/{id}", Role::Viewer),
    ("POST", "/recoveries/{id}/resume", Role::Releaser),
    ("GET", "/recoveries/{id}/postmortem", Role::Viewer),
    ("POST", "/recoveries/{id}/postmortem", Role::Releaser),
    ("GET", "/breakers", Role::Viewer),
    ("POST", "/breakers/reset", Role::IncidentCommander),
    ("GET", "/audit", Role::Viewer),
    ("GET", "/audit/verify", Role::Viewer),
    ("POST", "/audit/verify", Role::Viewer),
    ("GET", "/audit/checkpoint", Role::Viewer),
    ("GET", "/gate", Role::Viewer),
    ("GET", "/freezes", Role::Viewer),
    ("POST", "/freezes", Role::IncidentCommander),
    ("POST", "/freezes/{id}/end", Role::IncidentCommander),
    ("GET", "/groups", Role::Viewer),
    ("POST", "/groups", Role::Deployer),
    ("GET", "/groups/{name}", Role::Viewer),
    ("POST", "/groups/{name}/runs", Role::Deployer),
    ("GET", "/group-runs/{id}", Role::Viewer),
    ("GET", "/ships", Role::Viewer),
    ("POST", "/ships", Role::Deployer),
    ("GET", "/ships/{id}", Role::Viewer),
    ("POST", "/ships/{id}/stop", Role::Deployer),
    ("GET", "/alerts", Role::Viewer),
    ("POST", "/alerts/alertmanager", Role::Releaser),
    ("POST", "/alerts/pagerduty", Role::Releaser),
    ("GET", "/alerts/{id}", Role::Viewer),
    ("POST", "/alerts/{id}/acknowledge", Role::Releaser),
    ("GET", "/config/{service}/{env}/snapshots", Role::Viewer),
    ("POST", "/config/{service}/{env}/snapshots", Role::Deployer),
    ("GET", "/config/{service}/{env}/diff", Role::Viewer),
    ("POST", "/config/{service}/{env}/restore", Role::Releaser),
    ("GET", "/drills", Role::Viewer),
    ("POST", "/drills", Role::Releaser),
    ("GET", "/drills/{id}", Role::Viewer),
    ("POST", "/drills/{id}/finish", Role::Releaser),
    ("GET", "/incidents", Role::Viewer),
    ("GET", "/incidents/{id}", Role::Viewer),
    ("POST", "/incidents", Role::Releaser),
    ("POST", "/incidents/{id}/status", Role::IncidentCommander),
    ("POST", "/incidents/{id}/roles", Role::IncidentCommander),
    ("POST", "/incidents/{id}/updates", Role::IncidentCommander),
    // Anyone working the incident writes in its log.
    ("POST", "/incidents/{id}/notes", Role::Deployer),
    // Runbooks: the route lets every token in; the handler checks the runbook's own role in
    // the run's environment (no route knows which runbook it acts on).
    ("GET", "/runbooks", Role::Viewer),
    ("POST", "/runbooks/{name}/runs", Role::Viewer),
    ("GET", "/runbook-runs", Role::Viewer),
    ("GET", "/runbook-runs/{id}", Role::Viewer),
    (
        "POST",
        "/runbook-runs/{id}/steps/{step}/confirm",
        Role::Viewer,
    ),
    (
        "POST",
        "/runbook-runs/{id}/steps/{step}/retry",
        Role::Viewer,
    ),
    ("POST", "/runbook-runs/{id}/steps/{step}/skip", Role::Viewer),
    (
        "POST",
        "/runbook-runs/{id}/steps/{step}/alter",
        Role::Viewer,
    ),
    ("POST", "/runbook-runs/{id}/ad-hoc", Role::Viewer),
    ("POST", "/runbook-runs/{id}/abort", Role::Viewer),
    ("GET", "/dora", Role::Viewer),
    ("GET", "/scorecards", Role::Viewer),
    ("GET", "/gaps", Role::Viewer),
    ("POST", "/rollouts/{id}/label", Role::Releaser),
    ("GET", "/calibrate/{service}", Role::Viewer),
    // Flags: reading and evaluating needs a viewer (applications evaluate with a viewer token,
    // best limited to their environment); changing one, a deployer in its environment.
    ("GET", "/flags", Role::Viewer),
    ("POST", "/flags/{name}/set", Role::Deployer),
    ("POST", "/flags/{name}/reenable", Role::Deployer),
    ("POST", "/flags/{name}/abort", Role::Deployer),
    ("POST", "/ofrep/v1/evaluate/flags/{key}", Role::Viewer),
    ("POST", "/ofrep/v1/evaluate/flags", Role::Viewer),
    ("GET", "/heartbeats", Role::Viewer),
    ("POST", "/heartbeats/{name}", Role::Deployer),
    ("GET", "/tokens", Role::Admin),
    ("POST", "/tokens", Role::Admin),
    ("POST", "/tokens/{name}/revoke", Role::Admin),
];

/// The least role `method route` needs ([`POLICY`]); `admin` for a route not listed.
#[must_use]
pub fn needed_role(method: &str, route: &str) -> Role {
    let route = route.strip_prefix("/api/v1").unwrap_or(route);
    POLICY
        .iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map_or(Role::Admin, |(_, _, role)| *role)
}

/// Every `/api/v1` request needs `Authorization: Bearer <token>` (401 without a usable one),
/// and the role its route needs (403 naming it).
pub async fn require_token(
    State(ctx): State<std::sync::Arc<Ctx>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The scheme's name is case-insensitive (RFC 7235): `bearer` and `BEARER` are accepted.
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let Some(token) = token else {
        return Err(ApiError::unauthorized(
            "missing `Authorization: Bearer <token>`; the CLI reads it from --token, BACKSTOP_TOKEN or STATE_DIR/admin.token",
        ));
    };
    let caller = authenticate(&ctx, token).await?;
    if let Some(route) = req.extensions().get::<MatchedPath>() {
        let needed = needed_role(req.method().as_str(), route.as_str());
        if let Err(missing) = caller.grant.allows(needed, None) {
            return Err(ApiError::forbidden(missing));
        }
    }
    let name = crate::access_log::CallerName(caller.actor.clone());
    req.extensions_mut().insert(caller);
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(name);
    Ok(resp)
}

/// The caller a bearer token stands for: the state folder's admin token, or a token made with
/// `backstop token create` (found by its hash; refused when revoked or expired).
async fn authenticate(ctx: &Ctx, token: &str) -> Result<Caller, ApiError> {
    if backstop_core::secret::token_matches(token, &ctx.token_hash) {
        return Ok(Caller {
            actor: "token:admin".into(),
            grant: Grant {
                role: Role::Admin,
                env: None,
            },
        });
    }
    let Some(record) = ctx.store.token_by_hash(&hash_token(token)).await? else {
        return Err(ApiError::unauthorized("invalid token"));
    };
    if let Some(why) = record.unusable(ctx.clock.now_ms()) {
        return Err(ApiError::unauthorized(format!(
            "token {} is {why}; ask an admin for a new one",
            record.name
        )));
    }
    Ok(Caller {
        actor: format!("token:{}", record.name),
        grant: Grant {
            role: record.role,
            env: record.env,
        },
    })
}
