//! One writer per state folder: an exclusive lock on `<state>/daemon.lock`, held for the
//! daemon's whole life. Two daemons driving one store would run every recovery step twice, so a
//! second one is refused at start, whatever ports it was given, with a message naming the
//! holder. The kernel drops the lock when the holder's process ends (also on `kill -9`), so a
//! crash never leaves a stale lock behind.
//!
//! This is the embedded (SQLite) seam of writer exclusivity; a daemon on PostgreSQL also holds
//! [`crate::db_lock`] (one active daemon per database), which per-rollout leases will replace.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The lock file's name inside the state folder.
pub const LOCK_FILE: &str = "daemon.lock";

/// Proof that this process is the state folder's only writer; the lock is released on drop.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the state folder's lock (creating the folder), or says who holds it.
    pub fn acquire(state_dir: &Path) -> Result<StateLock> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating the state folder {}", state_dir.display()))?;
        let path = state_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                bail!(
                    "the state folder {} is in use by another Backstop daemon ({}); \
                     one state folder has one daemon: stop that one, or give this one its own \
                     --state-dir",
                    state_dir.display(),
                    if holder.is_empty() {
                        "it has not said who it is yet".to_string()
                    } else {
                        holder.to_string()
                    }
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        let mut lock = StateLock { file, path };
        lock.describe(None)?;
        Ok(lock)
    }

    /// Records who holds the lock (pid, host, API address once known), for the message a
    /// refused second daemon prints.
    pub fn describe(&mut self, api: Option<SocketAddr>) -> Result<()> {
        let text = holder(api);
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_data()
        };
        write(&mut self.file).with_context(|| format!("writing {}", self.path.display()))
    }
}

/// This machine's name (empty when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Who this daemon is, for a refused second one: `pid N on HOST, API http://ADDR`.
pub fn holder(api: Option<SocketAddr>) -> String {
    let host = hostname();
    let mut text = format!("pid {}", std::process::id());
    if !host.is_empty() {
        text.push_str(&format!(" on {host}"));
    }
    if let Some(api) = api {
        text.push_str(&format!(", API http://{api}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_folder_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = StateLock::acquire(dir.path()).unwrap();
        first
            .describe(Some("127.0.0.1:7700".parse().unwrap()))
            .unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another Backstop daemon"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("API http://127.0.0.1:7700"), "{err}");
        drop(first);
        StateLock::acquire(dir.path()).expect("the lock is free once its holder is gone");
    }
}
