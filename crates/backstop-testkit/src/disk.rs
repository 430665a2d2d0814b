//! A real disk that fills: a small tmpfs mounted on a folder of the test's own, for tests of
//! what Backstop does when its state folder's disk is full. Mounting needs root
//! (CAP_SYS_ADMIN), as CI and the project's dev machines run; the message says so otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted at a folder, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `256m`) at `at` (created).
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test fills a real disk: it mounts a tmpfs, which needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    /// A tmpfs at `at` with room for a state folder and one backed-up copy of the sample
    /// service's artifact (the `backstop` binary) plus `spare_mb`.
    pub fn for_state(at: &Path, spare_mb: u64) -> Tmpfs {
        let artifact_mb = std::fs::metadata(crate::backstop_bin()).unwrap().len() / (1 << 20);
        Self::mount(at, &format!("{}m", artifact_mb + spare_mb))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the disk is full.
pub fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}
