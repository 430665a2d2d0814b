//! Artifacts in the database, so that every replica on every host can run any release: each
//! object is kept in chunks of [`CHUNK`] bytes (`blob_chunks`), and listed in `blobs` once all
//! its chunks are in (one transaction), so a half-uploaded object is never taken for a whole
//! one. Each replica keeps a verified copy in its state folder (`<state>/blobs`, a
//! [`FolderBlobs`]): instances run a local file, and a backup is fetched from the database only
//! the first time a replica needs it, or again when its local copy no longer verifies.
//!
//! Why the database rather than a shared folder: replicas already share it and its backups,
//! it needs no file system mounted alike on every host, and an upload is all or nothing. The
//! price is artifacts' size in the database; Backstop keeps releases' artifacts, which are
//! typically tens of megabytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sqlx::postgres::PgPool;

use crate::blobs::{BlobError, BlobStore, FolderBlobs};

/// The size of one stored chunk.
pub const CHUNK: usize = 1 << 20;

/// Objects in the database, with a verified local copy per replica.
pub struct DatabaseBlobs {
    local: FolderBlobs,
    pool: PgPool,
    /// The runtime the blocking [`BlobStore`] calls drive the database on (they run on
    /// `spawn_blocking` threads, as every blob store call does).
    rt: tokio::runtime::Handle,
}

impl super::PostgresStore {
    /// This database's artifact store, with its local copies under `local` (`<state>/blobs`).
    /// Must be called inside a Tokio runtime.
    pub fn blobs(&self, local: FolderBlobs) -> DatabaseBlobs {
        DatabaseBlobs {
            local,
            pool: self.pool.clone(),
            rt: tokio::runtime::Handle::current(),
        }
    }
}

fn database(e: sqlx::Error) -> BlobError {
    BlobError::Io {
        path: PathBuf::from("<database>"),
        source: std::io::Error::other(e),
    }
}

impl DatabaseBlobs {
    /// Uploads every object of the local folder the database does not have (moving an
    /// embedded install: `backstop store copy`); answers how many objects the folder holds.
    /// An object that does not verify locally is refused, never uploaded.
    pub fn upload_folder(&self) -> Result<usize, BlobError> {
        let root = self.local.root().join("sha256");
        let mut count = 0;
        let Ok(prefixes) = std::fs::read_dir(&root) else {
            return Ok(0); // no artifact was ever backed up
        };
        for prefix in prefixes {
            let prefix = prefix.map_err(|source| BlobError::Io {
                path: root.clone(),
                source,
            })?;
            let entries = std::fs::read_dir(prefix.path()).map_err(|source| BlobError::Io {
                path: prefix.path(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| BlobError::Io {
                    path: prefix.path(),
                    source,
                })?;
                let digest = format!(
                    "{}{}",
                    prefix.file_name().to_string_lossy(),
                    entry.file_name().to_string_lossy()
                );
                self.upload(&digest)?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// Uploads the local object `digest` unless the database has it.
    fn upload(&self, digest: &str) -> Result<(), BlobError> {
        let path = self.local.local_path(digest)?;
        self.rt.block_on(async {
            let mut tx = self.pool.begin().await.map_err(database)?;
            // Two replicas uploading the same object take turns; the second finds it listed.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(digest)
                .execute(&mut *tx)
                .await
                .map_err(database)?;
            let listed: Option<i64> =
                sqlx::query_scalar("SELECT size FROM blobs WHERE sha256 = $1")
                    .bind(digest)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(database)?;
            if listed.is_some() {
                return Ok(());
            }
            sqlx::query("DELETE FROM blob_chunks WHERE sha256 = $1")
                .bind(digest)
                .execute(&mut *tx)
                .await
                .map_err(database)?;
            let mut file = std::fs::File::open(&path).map_err(|source| BlobError::Io {
                path: path.clone(),
                source,
            })?;
            let mut buf = vec![0u8; CHUNK];
            let (mut idx, mut size) = (0i64, 0i64);
            loop {
                let n = read_full(&mut file, &mut buf).map_err(|source| BlobError::Io {
                    path: path.clone(),
                    source,
                })?;
                if n == 0 {
                    break;
                }
                sqlx::query("INSERT INTO blob_chunks (sha256, idx, data) VALUES ($1, $2, $3)")
                    .bind(digest)
                    .bind(idx)
                    .bind(&buf[..n])
                    .execute(&mut *tx)
                    .await
                    .map_err(database)?;
                idx += 1;
                size += n as i64;
            }
            sqlx::query("INSERT INTO blobs (sha256, size, chunks) VALUES ($1, $2, $3)")
                .bind(digest)
                .bind(size)
                .bind(idx)
                .execute(&mut *tx)
                .await
                .map_err(database)?;
            tx.commit().await.map_err(database)
        })
    }

    /// Makes sure the local copy of `digest` exists and verifies, fetching it from the
    /// database when it does not; `Missing` when the database does not have it either,
    /// `Corrupt` when the database's chunks do not hash to it.
    fn fetch(&self, digest: &str) -> Result<(), BlobError> {
        match self.local.verify(digest) {
            Ok(()) => return Ok(()),
            Err(BlobError::Missing(_) | BlobError::Corrupt { .. }) => {}
            Err(other) => return Err(other),
        }
        let tmp_dir = self.local.root().join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(|source| BlobError::Io {
            path: tmp_dir.clone(),
            source,
        })?;
        let mut tmp =
            tempfile::NamedTempFile::new_in(&tmp_dir).map_err(|source| BlobError::Io {
                path: tmp_dir.clone(),
                source,
            })?;
        let mut hasher = Sha256::new();
        let found = self.rt.block_on(async {
            let chunks: Option<i64> =
                sqlx::query_scalar("SELECT chunks FROM blobs WHERE sha256 = $1")
                    .bind(digest)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database)?;
            let Some(chunks) = chunks else {
                return Ok(false);
            };
            // One chunk at a time: an artifact never has to fit in memory.
            for idx in 0..chunks {
                let data: Vec<u8> = sqlx::query_scalar(
                    "SELECT data FROM blob_chunks WHERE sha256 = $1 AND idx = $2",
                )
                .bind(digest)
                .bind(idx)
                .fetch_optional(&self.pool)
                .await
                .map_err(database)?
                .unwrap_or_default();
                hasher.update(&data);
                tmp.write_all(&data).map_err(|source| BlobError::Io {
                    path: tmp.path().to_path_buf(),
                    source,
                })?;
            }
            Ok::<_, BlobError>(true)
        })?;
        if !found {
            return Err(BlobError::Missing(digest.to_string()));
        }
        let actual = hex::encode(hasher.finalize());
        if actual != digest {
            return Err(BlobError::Corrupt {
                expected: digest.to_string(),
                actual,
            });
        }
        tmp.flush().map_err(|source| BlobError::Io {
            path: tmp.path().to_path_buf(),
            source,
        })?;
        self.local.put_file(tmp.path()).map(|_| ())
    }
}

/// Reads until `buf` is full or the end: chunks are whole but the last.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl BlobStore for DatabaseBlobs {
    fn put_bytes(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let digest = self.local.put_bytes(bytes)?;
        self.upload(&digest)?;
        Ok(digest)
    }

    fn put_file(&self, path: &Path) -> Result<String, BlobError> {
        let digest = self.local.put_file(path)?;
        self.upload(&digest)?;
        Ok(digest)
    }

    fn get(&self, digest: &str) -> Result<Vec<u8>, BlobError> {
        self.fetch(digest)?;
        self.local.get(digest)
    }

    fn verify(&self, digest: &str) -> Result<(), BlobError> {
        self.fetch(digest)
    }

    fn local_path(&self, digest: &str) -> Result<PathBuf, BlobError> {
        self.fetch(digest)?;
        self.local.local_path(digest)
    }
}
