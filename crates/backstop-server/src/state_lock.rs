//! One writer per state folder: an exclusive lock on `<state>/daemon.lock`, held for the
//! daemon's whole life. Two daemons driving one store would run every recovery step twice, so a
//! second one is refused at start, whatever ports it was given, with a message naming the
//! holder. The kernel drops the lock when the holder's process ends (also on `kill -9`), so a
//! crash never leaves a stale lock behind.
//!
//! Replicas on a shared PostgreSQL store may share a state folder on one host (artifacts,
//! proxy sockets, logs, the admin token): they hold the lock *shared*, which still keeps an
//! embedded daemon off the folder (and them off an embedded daemon's folder); which replica
//! drives what is settled by leases in the database.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The lock file's name inside the state folder.
pub const LOCK_FILE: &str = "daemon.lock";

/// Proof that this process is the state folder's only writer (or one of the replicas sharing
/// it); the lock is released on drop.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
    shared: bool,
}

impl StateLock {
    /// Takes the state folder's lock shared, for a replica of a PostgreSQL store: other
    /// replicas may hold it too; an embedded daemon may not.
    pub fn acquire_shared(state_dir: &Path) -> Result<StateLock> {
        let (file, path) = open(state_dir)?;
        match file.try_lock_shared() {
            // An embedded daemon's description, if one ran here before, is no longer true.
            Ok(()) => {
                file.set_len(0)
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(StateLock {
                    file,
                    path,
                    shared: true,
                })
            }
            Err(TryLockError::WouldBlock) => bail!(
                "the state folder {} is in use by an embedded Backstop daemon ({}); replicas on \
                 PostgreSQL cannot share it: stop that one (move its state with `backstop store \
                 copy`), or give this one its own --state-dir",
                state_dir.display(),
                holder_of(&file)
            ),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }

    /// Takes the state folder's lock (creating the folder), or says who holds it.
    pub fn acquire(state_dir: &Path) -> Result<StateLock> {
        let (file, path) = open(state_dir)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                bail!(
                    "the state folder {} is in use by another Backstop daemon ({}); \
                     one state folder has one daemon: stop that one, or give this one its own \
                     --state-dir",
                    state_dir.display(),
                    holder_of(&file)
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        let mut lock = StateLock {
            file,
            path,
            shared: false,
        };
        lock.describe(None)?;
        Ok(lock)
    }

    /// Records who holds the lock (pid, host, API address once known), for the message a
    /// refused second daemon prints.
    /// Replicas sharing the folder do not: they are listed by `backstop cluster status`.
    pub fn describe(&mut self, api: Option<SocketAddr>) -> Result<()> {
        if self.shared {
            return Ok(());
        }
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

/// Opens (creating the folder and the file) the lock file of `state_dir`.
fn open(state_dir: &Path) -> Result<(File, PathBuf)> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating the state folder {}", state_dir.display()))?;
    private_folder(state_dir)?;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok((file, path))
}

/// Who holds the lock, as its holder described itself.
fn holder_of(mut file: &File) -> String {
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    match holder.trim() {
        "" => "replicas on PostgreSQL, or a daemon that has not said who it is yet".to_string(),
        h => h.to_string(),
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

/// Makes `dir` its owner's only (0700): the state folder holds the database (with every
/// release's environment), tokens, keys and instance logs.
///
/// # Errors
/// The mode cannot be set (a folder the daemon does not own).
pub fn private_folder(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
    }
    Ok(())
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

    #[test]
    fn replicas_share_a_folder_that_an_embedded_daemon_cannot_take() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire_shared(dir.path()).unwrap();
        let second = StateLock::acquire_shared(dir.path()).expect("replicas share it");
        let err = StateLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("replicas on PostgreSQL"), "{err}");
        drop((first, second));
        let embedded = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire_shared(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in use by an embedded Backstop daemon"),
            "{err}"
        );
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(embedded);
    }
}
