//! Content-addressed storage for what a rollback needs byte for byte: release artifacts and
//! config snapshot contents. Objects are named by the sha256 of their bytes, written once
//! (temp file, fsync, rename, fsync the folder) and re-hashed on every read that matters, so a
//! backup that rotted or was tampered with is refused instead of deployed.
//!
//! [`BlobStore`] is the seam for other backends (an object store can implement it later);
//! [`FolderBlobs`] keeps objects under `<root>/sha256/<2 hex>/<62 hex>`.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no stored object sha256:{0}")]
    Missing(String),
    #[error("stored object sha256:{expected} is corrupt: its bytes hash to sha256:{actual}")]
    Corrupt { expected: String, actual: String },
    #[error("{0:?} is not a sha256 digest (64 lowercase hex characters)")]
    BadDigest(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A place that keeps immutable objects by the sha256 of their content.
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` (idempotent) and returns their sha256 in lowercase hex.
    fn put_bytes(&self, bytes: &[u8]) -> Result<String, BlobError>;
    /// Stores a file's bytes, streaming; returns their sha256.
    fn put_file(&self, path: &Path) -> Result<String, BlobError>;
    /// The object's bytes, re-verified against the digest.
    fn get(&self, digest: &str) -> Result<Vec<u8>, BlobError>;
    /// Re-hashes the stored object; `Missing` or `Corrupt` when it cannot be trusted.
    fn verify(&self, digest: &str) -> Result<(), BlobError>;
    /// A local path holding exactly the verified object (for deployers that run a file).
    fn local_path(&self, digest: &str) -> Result<PathBuf, BlobError>;
}

/// Objects in a folder on local disk (the embedded default: `<state>/blobs`).
#[derive(Debug, Clone)]
pub struct FolderBlobs {
    root: PathBuf,
}

impl FolderBlobs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn object_path(&self, digest: &str) -> Result<PathBuf, BlobError> {
        check_digest(digest)?;
        Ok(self
            .root
            .join("sha256")
            .join(&digest[..2])
            .join(&digest[2..]))
    }

    /// Writes `reader` to a temp file in the store while hashing it, then moves it into place.
    fn put_reader(&self, reader: &mut dyn Read, origin: &Path) -> Result<String, BlobError> {
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(io_at(&tmp_dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_at(&tmp_dir))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_at(origin)(e)),
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io_at(tmp.path()))?;
        }
        let digest = hex::encode(hasher.finalize());
        let dest = self.object_path(&digest)?;
        if dest.exists() && self.verify(&digest).is_ok() {
            return Ok(digest);
        }
        tmp.as_file().sync_all().map_err(io_at(tmp.path()))?;
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io_at(&parent))?;
        tmp.persist(&dest).map_err(|e| io_at(&dest)(e.error))?;
        // The rename is durable only once the folder entry is.
        std::fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(io_at(&parent))?;
        Ok(digest)
    }
}

impl BlobStore for FolderBlobs {
    fn put_bytes(&self, bytes: &[u8]) -> Result<String, BlobError> {
        self.put_reader(&mut io::Cursor::new(bytes), Path::new("<bytes>"))
    }

    fn put_file(&self, path: &Path) -> Result<String, BlobError> {
        let mut f = std::fs::File::open(path).map_err(io_at(path))?;
        self.put_reader(&mut f, path)
    }

    fn get(&self, digest: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.object_path(digest)?;
        let bytes = std::fs::read(&path).map_err(|e| missing_or_io(digest, &path, e))?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != digest {
            return Err(BlobError::Corrupt {
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    fn verify(&self, digest: &str) -> Result<(), BlobError> {
        let path = self.object_path(digest)?;
        let mut f = std::fs::File::open(&path).map_err(|e| missing_or_io(digest, &path, e))?;
        let actual = sha256_reader(&mut f).map_err(io_at(&path))?;
        if actual != digest {
            return Err(BlobError::Corrupt {
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(())
    }

    fn local_path(&self, digest: &str) -> Result<PathBuf, BlobError> {
        self.verify(digest)?;
        self.object_path(digest)
    }
}

/// sha256 of everything `reader` yields, in lowercase hex.
pub fn sha256_reader(reader: &mut dyn Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

fn check_digest(digest: &str) -> Result<(), BlobError> {
    let ok = digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BlobError::BadDigest(digest.to_string()))
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn missing_or_io(digest: &str, path: &Path, e: io::Error) -> BlobError {
    if e.kind() == io::ErrorKind::NotFound {
        BlobError::Missing(digest.to_string())
    } else {
        io_at(path)(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_idempotent_and_named_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderBlobs::new(dir.path());
        let a = store.put_bytes(b"release v1").unwrap();
        assert_eq!(a, hex::encode(Sha256::digest(b"release v1")));
        assert_eq!(store.put_bytes(b"release v1").unwrap(), a);
        assert_eq!(store.get(&a).unwrap(), b"release v1");
        store.verify(&a).unwrap();
        let file = dir.path().join("artifact.bin");
        std::fs::write(&file, b"release v1").unwrap();
        assert_eq!(store.put_file(&file).unwrap(), a);
    }

    #[test]
    fn tampered_and_missing_objects_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderBlobs::new(dir.path());
        let d = store.put_bytes(b"good bytes").unwrap();
        let path = store.object_path(&d).unwrap();
        std::fs::write(&path, b"evil bytes").unwrap();
        assert!(matches!(store.verify(&d), Err(BlobError::Corrupt { .. })));
        assert!(matches!(store.get(&d), Err(BlobError::Corrupt { .. })));
        assert!(store.local_path(&d).is_err());
        // A later put of the genuine bytes repairs the object.
        store.put_bytes(b"good bytes").unwrap();
        store.verify(&d).unwrap();
        let other = hex::encode(Sha256::digest(b"never stored"));
        assert!(matches!(store.verify(&other), Err(BlobError::Missing(_))));
        assert!(matches!(
            store.verify("../../etc/passwd"),
            Err(BlobError::BadDigest(_))
        ));
    }
}
