//! One active daemon per database, until per-rollout leases exist: a session-level advisory
//! lock held on a connection of its own for the daemon's whole life. PostgreSQL drops it when
//! that connection ends (the daemon exits, is killed, or loses the server), so a crash never
//! leaves a stale lock. The holder writes who it is in `daemon_holder`, which a refused second
//! daemon reads for its message.
//!
//! A lost connection (the server restarted, the session was cut) loses the lock too:
//! [`DaemonLock::ensure_held`], called periodically, notices and takes it again, or says that
//! another daemon took it meanwhile, so this one stops. (Until then both may act: fencing every
//! write with a lease's epoch is what per-rollout leases bring.)

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use super::{DAEMON_LOCK, connect_error, redact};
use crate::{Result, StoreError};

/// Proof that this process is the database's only active daemon; released on drop (or
/// [`DaemonLock::release`]).
pub struct DaemonLock {
    conn: PgConnection,
    /// To take the lock again after its connection was lost; never shown (it may hold a
    /// password), which is why this type has no `Debug`.
    url: String,
    holder: String,
}

impl DaemonLock {
    /// Takes the database's daemon lock and records `holder` (pid, host, API address), or
    /// answers `Conflict` naming the current holder. The schema must exist
    /// ([`super::PostgresStore::connect`] first).
    pub async fn acquire(url: &str, holder: &str, now_ms: i64) -> Result<DaemonLock> {
        Self::take(url, holder, now_ms).await?.map_err(|current| {
            StoreError::Conflict(format!(
                "the database {} is in use by another Backstop daemon ({current}); until leases \
                 let several replicas share it, one database has one active daemon: stop that \
                 one, or give this one its own database",
                redact(url)
            ))
        })
    }

    /// The lock, or who holds it (`Err`).
    async fn take(
        url: &str,
        holder: &str,
        now_ms: i64,
    ) -> Result<std::result::Result<DaemonLock, String>> {
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
            return Ok(Err(
                current.unwrap_or_else(|| "it has not said who it is yet".to_string())
            ));
        }
        let mut lock = DaemonLock {
            conn,
            url: url.to_string(),
            holder: holder.to_string(),
        };
        lock.describe(holder, now_ms).await?;
        Ok(Ok(lock))
    }

    /// Records who holds the lock, for the message a refused second daemon prints.
    pub async fn describe(&mut self, holder: &str, now_ms: i64) -> Result<()> {
        holder.clone_into(&mut self.holder);
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

    /// `Ok` while the lock is held: its session is alive (a session lock is only released when
    /// the session ends). After the session was lost, takes the lock again on a new connection;
    /// `Conflict` naming the holder when another daemon took it meanwhile, any other error when
    /// the server cannot be reached yet (check again later).
    pub async fn ensure_held(&mut self, now_ms: i64) -> Result<()> {
        if sqlx::query("SELECT 1")
            .execute(&mut self.conn)
            .await
            .is_ok()
        {
            return Ok(());
        }
        match Self::take(&self.url, &self.holder, now_ms).await? {
            Ok(lock) => {
                *self = lock;
                Ok(())
            }
            Err(current) => Err(StoreError::Conflict(format!(
                "another Backstop daemon holds the database's lock now ({current})"
            ))),
        }
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
