//! The file-system side of config snapshots: reading the files and folders an environment
//! declares as they are now, writing one back atomically (temp file, fsync, rename, fsync the
//! folder), removing one, reading a secret file and the state folder's private key. What to
//! capture and what a restore changes is decided by the caller.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name prefix of the temp files [`write_atomic`] leaves only when it dies mid-write; a capture
/// skips them.
const TEMP_PREFIX: &str = ".backstop-restore-";

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// `action` is what was being done (`reading`, `writing`, `listing`, …).
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} has no parent folder", path.display())]
    NoParent { path: PathBuf },
    #[error("{} is shorter than {len} bytes", path.display())]
    ShortKey { path: PathBuf, len: usize },
}

/// The `map_err` of an I/O call on `path`.
fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError::Io {
        action,
        path,
        source,
    }
}

/// Resolves a declared path against the config file's folder.
pub fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A file as read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRead {
    pub bytes: Vec<u8>,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
}

/// What declared files and folders hold now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// By the declared path (a folder's files as `folder/relative`).
    pub files: BTreeMap<String, FileRead>,
    /// Declared files that are not regular files and folders that are not folders, in
    /// declaration order (files first).
    pub missing: Vec<String>,
}

/// Reads `files` and every regular file under `folders` (paths resolved against `base`).
pub fn capture(base: &Path, files: &[String], folders: &[String]) -> Result<Capture, FileError> {
    let mut out = Capture::default();
    for file in files {
        let path = resolve(base, file);
        if path.is_file() {
            out.files.insert(file.clone(), read(&path)?);
        } else {
            out.missing.push(file.clone());
        }
    }
    for folder in folders {
        let root = resolve(base, folder);
        if !root.is_dir() {
            out.missing.push(folder.clone());
            continue;
        }
        let prefix = folder.trim_end_matches('/');
        for rel in walk(&root)? {
            let file = read(&root.join(&rel))?;
            out.files.insert(format!("{prefix}/{rel}"), file);
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<FileRead, FileError> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let mode = std::fs::metadata(path)
        .map_err(io("reading", path))?
        .permissions()
        .mode()
        & 0o7777;
    Ok(FileRead { bytes, mode })
}

/// Regular files under `dir`, recursively, as `/`-separated relative paths, sorted. Symbolic
/// links are not followed (a snapshot holds files, not where links point).
fn walk(dir: &Path) -> Result<Vec<String>, FileError> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&path).map_err(io("listing", &path))? {
            let entry = entry.map_err(io("listing", &path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type().map_err(io("reading", &entry.path()))?;
            if kind.is_dir() {
                stack.push((entry.path(), child));
            } else if kind.is_file() && !name.starts_with(TEMP_PREFIX) {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `bytes` to `path` atomically with `mode`: temp file in the same folder (created when
/// missing), fsync, rename over, fsync the folder. On failure the temp file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = path.parent().ok_or_else(|| FileError::NoParent {
        path: path.to_path_buf(),
    })?;
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{TEMP_PREFIX}{name}"));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io("writing", path))
}

pub fn remove(path: &Path) -> Result<(), FileError> {
    std::fs::remove_file(path).map_err(io("removing", path))
}

/// A secret file's content without one trailing newline (`\n` or `\r\n`).
pub fn read_secret(path: &Path) -> Result<String, FileError> {
    let mut text = std::fs::read_to_string(path).map_err(io("cannot read secret file", path))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// The key in `path`, created (`len` random bytes, mode 0600, fsynced) when missing. When two
/// callers race to create it, both get the one that won.
pub fn private_key(path: &Path, len: usize) -> Result<Vec<u8>, FileError> {
    use rand::RngCore;
    match std::fs::read(path) {
        Ok(key) if key.len() >= len => return Ok(key),
        Ok(_) => {
            return Err(FileError::ShortKey {
                path: path.to_path_buf(),
                len,
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading", path)(e)),
    }
    let mut key = vec![0u8; len];
    rand::rng().fill_bytes(&mut key);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(mut f) => {
            f.write_all(&key)
                .and_then(|()| f.sync_all())
                .map_err(io("writing", path))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).map_err(io("reading", path))
        }
        Err(e) => Err(io("creating", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o7777
    }

    #[test]
    fn a_capture_reads_files_and_folders_and_names_what_is_missing() {
        let dir = tempfile::tempdir().expect("tmp");
        let base = dir.path();
        std::fs::write(base.join("app.toml"), "a = 1\n").expect("write");
        std::fs::set_permissions(
            base.join("app.toml"),
            std::fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        std::fs::create_dir_all(base.join("conf.d/sub")).expect("mkdir");
        std::fs::write(base.join("conf.d/sub/b.toml"), "b").expect("write");
        std::fs::write(base.join("conf.d/a.toml"), "a").expect("write");
        std::fs::write(base.join("conf.d/.backstop-restore-a.toml"), "half").expect("write");
        std::os::unix::fs::symlink(base.join("app.toml"), base.join("conf.d/link")).expect("ln");

        let files = ["app.toml".to_string(), "gone.toml".to_string()];
        let folders = ["conf.d/".to_string(), "nowhere".to_string()];
        let got = capture(base, &files, &folders).expect("capture");
        let names: Vec<_> = got.files.keys().map(String::as_str).collect();
        assert_eq!(names, ["app.toml", "conf.d/a.toml", "conf.d/sub/b.toml"]);
        assert_eq!(got.files["app.toml"].bytes, b"a = 1\n");
        assert_eq!(got.files["app.toml"].mode, 0o640);
        assert_eq!(got.missing, ["gone.toml", "nowhere"]);
    }

    #[test]
    fn an_atomic_write_creates_the_folder_sets_the_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("new/app.toml");
        write_atomic(&path, b"x = 1\n", 0o600).expect("write");
        write_atomic(&path, b"x = 2\n", 0o644).expect("overwrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"x = 2\n");
        assert_eq!(mode_of(&path), 0o644);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("new"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["app.toml"]);

        remove(&path).expect("remove");
        assert!(!path.exists());
        let err = remove(&path).expect_err("already gone").to_string();
        assert_eq!(err, format!("removing {}", path.display()));
    }

    #[test]
    fn a_failed_write_names_the_file_and_removes_its_temp_file() {
        let dir = tempfile::tempdir().expect("tmp");
        // A folder where the file should be: the rename over it fails.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).expect("mkdir");
        std::fs::write(path.join("inside"), "x").expect("write");
        let err = write_atomic(&path, b"x", 0o644).expect_err("a folder is in the way");
        assert_eq!(err.to_string(), format!("writing {}", path.display()));
        assert!(!dir.path().join(".backstop-restore-taken").exists());
    }

    #[test]
    fn a_secret_file_loses_one_trailing_newline() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("secret");
        std::fs::write(&path, "v\r\n").expect("write");
        assert_eq!(read_secret(&path).expect("read"), "v");
        std::fs::write(&path, "v\n\n").expect("write");
        assert_eq!(read_secret(&path).expect("read"), "v\n");
        let missing = dir.path().join("none");
        let err = read_secret(&missing).expect_err("missing").to_string();
        assert_eq!(
            err,
            format!("cannot read secret file {}", missing.display())
        );
    }

    #[test]
    fn the_private_key_is_created_once_with_mode_0600_and_a_short_one_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("key");
        let a = private_key(&path, 32).expect("create");
        assert_eq!(a.len(), 32);
        assert_eq!(private_key(&path, 32).expect("read"), a);
        assert_eq!(mode_of(&path), 0o600);
        std::fs::write(&path, [1u8; 8]).expect("write");
        let err = private_key(&path, 32).expect_err("short").to_string();
        assert_eq!(err, format!("{} is shorter than 32 bytes", path.display()));
    }
}
