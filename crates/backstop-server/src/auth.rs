//! API tokens. The daemon creates an admin token on first start, writes it once to
//! `STATE_DIR/admin.token` (mode 0600) for the local CLI, and keeps only its sha256 in memory
//! and on disk (`admin.token.sha256`); requests are compared by hash in constant time.

use std::io::Write;
use std::path::Path;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;

use crate::Ctx;
use crate::error::ApiError;

pub const TOKEN_FILE: &str = "admin.token";
const TOKEN_HASH_FILE: &str = "admin.token.sha256";

pub use backstop_core::secret::hash_token;

/// Returns the admin token's hash, creating the token on first start.
pub fn ensure_admin_token(state_dir: &Path) -> std::io::Result<String> {
    let hash_path = state_dir.join(TOKEN_HASH_FILE);
    if let Ok(hash) = std::fs::read_to_string(&hash_path) {
        return Ok(hash.trim().to_string());
    }
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = format!("bst_{}", hex::encode(raw));
    write_private(&state_dir.join(TOKEN_FILE), &token)?;
    let hash = hash_token(&token);
    write_private(&hash_path, &hash)?;
    Ok(hash)
}

pub(crate) fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

/// Who is calling, as recorded in the audit log.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// Every `/api/v1` request needs `Authorization: Bearer <token>`.
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
    let Some(token) = header.strip_prefix("Bearer ") else {
        return Err(ApiError::unauthorized(
            "missing `Authorization: Bearer <token>`; the CLI reads it from STATE_DIR/admin.token or BACKSTOP_TOKEN",
        ));
    };
    if !backstop_core::secret::token_matches(token, &ctx.token_hash) {
        return Err(ApiError::unauthorized("invalid token"));
    }
    req.extensions_mut().insert(Caller("token:admin".into()));
    Ok(next.run(req).await)
}
