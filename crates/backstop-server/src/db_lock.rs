//! One active daemon per PostgreSQL database, until per-rollout leases let several replicas
//! share one: a session-level advisory lock held on a connection of its own for the daemon's
//! whole life (`backstop_store::postgres::DaemonLock`), taken before the daemon binds its API.
//! A second daemon on the same database is refused with a message naming the holder (pid, host,
//! API address), as [`crate::state_lock`] does for a state folder.
//!
//! The lock is checked every [`CHECK_EVERY`] while the daemon runs ([`hold`]): after its
//! session was lost (a server restart) it is taken again; when another daemon took it meanwhile,
//! this one stops at once, as after a crash (instances and proxies keep running for whoever
//! drives the database now), instead of driving the same rollouts as another.
//!
//! This is the seam leases replace: the daemon asks here whether it may drive the database's
//! rollouts, and holds the answer for as long as it runs.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use backstop_core::clock::Clock;
use backstop_store::PostgresStore;
use backstop_store::StoreError;
use backstop_store::postgres::{DaemonLock, redact};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// How often a running daemon checks that it still holds the database's lock.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// A PostgreSQL store this daemon may drive, and the lock that says so.
pub struct Database {
    pub(crate) store: PostgresStore,
    lock: DaemonLock,
}

impl Database {
    /// Connects to `url` (migrating its schema) and takes the database's daemon lock, or says
    /// why not: what to fix, or who holds it. Errors show the URL redacted.
    pub async fn open(url: &str) -> Result<Database> {
        let store = PostgresStore::connect(url).await?;
        let lock = DaemonLock::acquire(
            url,
            &crate::state_lock::holder(None),
            crate::SystemClock.now_ms(),
        )
        .await
        .with_context(|| format!("taking the daemon lock of {}", redact(url)))?;
        Ok(Database { store, lock })
    }

    /// Records the API address in the lock's holder, once the daemon listens.
    pub(crate) async fn describe(&mut self, api: SocketAddr) -> Result<()> {
        self.lock
            .describe(
                &crate::state_lock::holder(Some(api)),
                crate::SystemClock.now_ms(),
            )
            .await
            .context("recording this daemon as the database's holder")
    }

    /// Splits into the store (shared by the daemon) and the lock (held until it stops).
    pub(crate) fn into_parts(self) -> (PostgresStore, DaemonLock) {
        (self.store, self.lock)
    }
}

/// Holds the lock until `stop`, checking it every [`CHECK_EVERY`]; answers it for release. When
/// another daemon has taken it, says why on `lost` (the daemon then stops) and ends.
pub(crate) async fn hold(
    mut lock: DaemonLock,
    stop: CancellationToken,
    lost: oneshot::Sender<String>,
) -> Option<DaemonLock> {
    loop {
        tokio::select! {
            () = stop.cancelled() => return Some(lock),
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        match lock.ensure_held(crate::SystemClock.now_ms()).await {
            Ok(()) => {}
            Err(StoreError::Conflict(taken)) => {
                tracing::error!(reason = %taken, "Another daemon took the database's lock; stopping.");
                let _ = lost.send(format!(
                    "this daemon lost the database's lock to another daemon and stopped: {taken}"
                ));
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "The database's daemon lock cannot be checked; retrying.");
            }
        }
    }
}
