//! Bounded artifact intake: what `POST /releases` accepts as an artifact file. Only regular
//! files, up to a size limit, read against a deadline: a device (`/dev/zero`) would be copied
//! forever and a FIFO would hang the request (and with it a graceful stop). The file is hashed
//! first; when the store already holds that content, nothing is copied.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use backstop_store::BlobStore;
use sha2::{Digest, Sha256};

/// The largest artifact accepted unless the daemon is told otherwise (2 GiB).
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// How long reading one artifact may take.
pub const ARTIFACT_READ_DEADLINE: Duration = Duration::from_secs(120);

/// Why an artifact was not taken in.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The caller's fault: names the file and what is wrong with it.
    #[error("{0}")]
    Refused(String),
    /// The store's fault.
    #[error("backing up the artifact: {0}")]
    Store(String),
}

/// Hashes the regular file at `path` (at most `max_bytes`, within `deadline`) and backs it up
/// unless the store already holds that content. Returns its sha256 (hex).
pub fn take_in(
    blobs: &dyn BlobStore,
    path: &str,
    max_bytes: u64,
    deadline: Duration,
) -> Result<String, IntakeError> {
    let file = open_regular(path, max_bytes)?;
    let digest = hash_bounded(file, path, max_bytes, Instant::now() + deadline)?;
    if blobs.verify(&digest).is_ok() {
        tracing::debug!(artifact = path, sha256 = %digest, "Artifact already backed up; not copied again.");
        return Ok(digest);
    }
    let stored = blobs
        .put_file(Path::new(path))
        .map_err(|e| IntakeError::Store(e.to_string()))?;
    if stored != digest {
        return Err(IntakeError::Refused(format!(
            "artifact file {path} changed while it was read (sha256 {digest}, then {stored}): \
             register it once it is complete"
        )));
    }
    Ok(digest)
}

/// Opens `path` without blocking (a FIFO would wait for a writer) and accepts only a regular
/// file of at most `max_bytes`.
fn open_regular(path: &str, max_bytes: u64) -> Result<File, IntakeError> {
    let refuse = |why: String| IntakeError::Refused(format!("artifact file {path}: {why}"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| IntakeError::Refused(format!("cannot read artifact file {path}: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| refuse(format!("cannot be read: {e}")))?;
    let kind = meta.file_type();
    let what = if kind.is_dir() {
        Some("a folder")
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else if kind.is_socket() {
        Some("a socket")
    } else if !kind.is_file() {
        Some("not a regular file")
    } else {
        None
    };
    if let Some(what) = what {
        return Err(refuse(format!(
            "is {what}; an artifact must be a regular file (the build's output)"
        )));
    }
    if meta.len() > max_bytes {
        return Err(refuse(format!(
            "is {} bytes, over the limit of {max_bytes} bytes (`backstop serve --max-artifact-bytes`)",
            meta.len()
        )));
    }
    Ok(file)
}

/// Reads `file` to its end hashing it: at most `max_bytes` (a file still growing is refused)
/// and until `deadline`.
fn hash_bounded(
    mut file: File,
    path: &str,
    max_bytes: u64,
    deadline: Instant,
) -> Result<String, IntakeError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(IntakeError::Refused(format!(
                    "artifact file {path} cannot be read: {e}"
                )));
            }
        };
        total += n as u64;
        if total > max_bytes {
            return Err(IntakeError::Refused(format!(
                "artifact file {path} grew past the limit of {max_bytes} bytes while it was read"
            )));
        }
        if Instant::now() > deadline {
            return Err(IntakeError::Refused(format!(
                "artifact file {path} was not read within {}s",
                ARTIFACT_READ_DEADLINE.as_secs()
            )));
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_store::FolderBlobs;

    fn refused(r: Result<String, IntakeError>) -> String {
        match r {
            Err(IntakeError::Refused(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn devices_fifos_and_folders_are_refused_at_once_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(dir.path().join("blobs"));
        let fifo = dir.path().join("pipe");
        backstop_testkit::make_fifo(&fifo);
        let why = refused(take_in(
            &blobs,
            "/dev/zero",
            1 << 30,
            ARTIFACT_READ_DEADLINE,
        ));
        assert!(
            why.contains("/dev/zero") && why.contains("a device"),
            "{why}"
        );
        let why = refused(take_in(
            &blobs,
            fifo.to_str().unwrap(),
            1 << 30,
            ARTIFACT_READ_DEADLINE,
        ));
        assert!(why.contains("a FIFO"), "{why}");
        let why = refused(take_in(
            &blobs,
            dir.path().to_str().unwrap(),
            1 << 30,
            ARTIFACT_READ_DEADLINE,
        ));
        assert!(why.contains("a folder"), "{why}");
        assert!(!dir.path().join("blobs").exists(), "nothing stored");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_and_one_already_stored_is_not_copied_again() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(dir.path().join("blobs"));
        let file = dir.path().join("app.bin");
        std::fs::write(&file, vec![7u8; 4096]).unwrap();
        let path = file.to_str().unwrap();
        let why = refused(take_in(&blobs, path, 1000, ARTIFACT_READ_DEADLINE));
        assert!(why.contains("4096 bytes, over the limit of 1000"), "{why}");

        let digest = take_in(&blobs, path, 1 << 20, ARTIFACT_READ_DEADLINE).unwrap();
        assert_eq!(digest, hex::encode(Sha256::digest(vec![7u8; 4096])));
        let stored = blobs.local_path(&digest).unwrap();
        let first = std::fs::metadata(&stored).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            take_in(&blobs, path, 1 << 20, ARTIFACT_READ_DEADLINE).unwrap(),
            digest
        );
        let second = std::fs::metadata(&stored).unwrap().modified().unwrap();
        assert_eq!(first, second, "the stored copy was not written again");
    }
}
