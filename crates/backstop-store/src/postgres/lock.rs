//! One active daemon per database, until per-rollout leases exist: a session-level advisory
//! lock held on a connection of its own for the daemon's whole life. PostgreSQL drops it when
//! that connection ends (the daemon exits, is killed, or loses the server), so a crash never
//! leaves a stale lock. The holder writes who it is in `daemon_holder`, which a refused second
//! daemon reads for its message.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use super::{DAEMON_LOCK, connect_error, redact};
use crate::{Result, StoreError};

/// Proof that this process is the database's only active daemon; released on drop (or
/// [`DaemonLock::release`]).
pub struct DaemonLock {
    conn: PgConnection,
}

impl DaemonLock {
    /// Takes the database's daemon lock and records `holder` (pid, host, API address), or
    /// answers `Conflict` naming the current holder. The schema must exist
    /// ([`super::PostgresStore::connect`] first).
    pub async fn acquire(url: &str, holder: &str, now_ms: i64) -> Result<DaemonLock> {
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Open(format!("{} is not a PostgreSQL URL ({e})", redact(url)))
        })?;
        let mut conn = options
            .connect()
            .await
            .map_err(|e| connect_error(url, &options, &e))?;
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(DAEMON_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if !held {
            let current: Option<String> =
                sqlx::query_scalar("SELECT holder FROM daemon_holder WHERE id = 1")
                    .fetch_optional(&mut conn)
                    .await?;
            conn.close().await.ok();
            return Err(StoreError::Conflict(format!(
                "the database {} is in use by another Backstop daemon ({}); until leases let \
                 several replicas share it, one database has one active daemon: stop that \
                 one, or give this one its own database",
                redact(url),
                current
                    .as_deref()
                    .unwrap_or("it has not said who it is yet")
            )));
        }
        let mut lock = DaemonLock { conn };
        lock.describe(holder, now_ms).await?;
        Ok(lock)
    }

    /// Records who holds the lock, for the message a refused second daemon prints.
    pub async fn describe(&mut self, holder: &str, now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO daemon_holder (id, holder, since_ms) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, since_ms = excluded.since_ms",
        )
        .bind(holder)
        .bind(now_ms)
        .execute(&mut self.conn)
        .await?;
        Ok(())
    }

    /// Releases the lock now (a graceful stop); dropping it does the same when the connection
    /// closes.
    pub async fn release(self) {
        let mut conn = self.conn;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(DAEMON_LOCK)
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}
