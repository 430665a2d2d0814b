//! One active daemon per PostgreSQL database, until per-rollout leases let several replicas
//! share one: a session-level advisory lock held on a connection of its own for the daemon's
//! whole life (`backstop_store::postgres::DaemonLock`), taken before the daemon binds its API.
//! A second daemon on the same database is refused with a message naming the holder (pid, host,
//! API address), as [`crate::state_lock`] does for a state folder.
//!
//! This is the seam leases replace: the daemon asks here whether it may drive the database's
//! rollouts, and holds the answer for as long as it runs.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use backstop_core::clock::Clock;
use backstop_store::PostgresStore;
use backstop_store::postgres::{DaemonLock, redact};

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
