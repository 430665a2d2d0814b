//! API tokens, by name, kept as their sha256.
//!
//! One file for both backends: `sqlite/` and `postgres/` each compile it with their own
//! `Backend`, `Db` and `Row`.

use async_trait::async_trait;
use backstop_core::Millis;
use backstop_core::access::TokenRecord;

use super::Backend;
use crate::rows::{conflict_as, token_from};
use crate::{Result, StoreError, TokenStore};

#[async_trait]
impl TokenStore for Backend {
    async fn create_token(&self, t: &TokenRecord) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO tokens (name, role, env, hash, created_at_ms, created_by, expires_at_ms, revoked_at_ms, revoked_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&t.name)
            .bind(t.role.as_str())
            .bind(&t.env)
            .bind(&t.hash)
            .bind(t.created_at_ms)
            .bind(&t.created_by)
            .bind(t.expires_at_ms)
            .bind(t.revoked_at_ms)
            .bind(&t.revoked_by),
        )
        .await
        .map_err(conflict_as(|| {
            format!(
                "a token named {} exists (revoked names are not reused): pick another name",
                t.name
            )
        }))?;
        Ok(())
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let query = sqlx::query("SELECT * FROM tokens ORDER BY created_at_ms, name");
        self.fetch_all_as(query, token_from).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let query = sqlx::query("SELECT * FROM tokens WHERE hash = $1");
        self.fetch_optional_as(query.bind(hash), token_from).await
    }

    async fn revoke_token(&self, name: &str, by: &str, at: Millis) -> Result<TokenRecord> {
        let row = sqlx::query(
            "UPDATE tokens SET revoked_at_ms = $2, revoked_by = $3 \
             WHERE name = $1 AND revoked_at_ms IS NULL RETURNING *",
        )
        .bind(name)
        .bind(at)
        .bind(by)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => token_from(&row),
            None => {
                let exists = sqlx::query("SELECT 1 FROM tokens WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?
                    .is_some();
                Err(if exists {
                    StoreError::Conflict(format!("token {name} is already revoked"))
                } else {
                    StoreError::NotFound(format!("token {name}"))
                })
            }
        }
    }
}
