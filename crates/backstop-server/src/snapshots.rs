//! Config snapshots of an environment's `params`: captured before every rollout and on demand,
//! content-addressed in the blob store (`<state>/blobs`), versioned in the store, diffed, and
//! restored file by file (each write atomic: temp file, fsync, rename, fsync the folder).
//!
//! Secrets are never stored, printed or logged: a manifest keeps each secret's reference and an
//! HMAC-SHA256 of its value under a key that lives only in the state folder
//! (`config-hmac.key`, mode 0600), so a diff can say "changed" without revealing anything.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use backstop_api::config::{ConfigDiff, RestoreOutcome};
use backstop_config::{Params, SecretRef};
use backstop_core::snapshot::{
    ConfigSnapshot, FileEntry, Manifest, SecretEntry, changes, unified_diff,
};
use backstop_drivers::config_files::{self, resolve};
use backstop_store::{BlobStore, FolderBlobs};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::Ctx;

/// File (in the state folder) of the key that HMACs secret values.
pub const HMAC_KEY_FILE: &str = "config-hmac.key";

/// The environment's parameters as they are on disk now, with the bytes of every file.
/// A rollout's params snapshot and the live params, for a restore or a preview.
pub struct SnapshotVsLive {
    pub version: i64,
    /// The snapshot manifest's digest.
    pub digest: String,
    pub snapshot: Manifest,
    pub live: Manifest,
}

pub struct Live {
    pub manifest: Manifest,
    pub contents: BTreeMap<String, Vec<u8>>,
}

/// The value of a release's secret (`SecretSource`): the daemon's environment variable, or an
/// absolute file's content without one trailing newline. The error names the reference.
pub fn release_secret(source: &backstop_core::model::SecretSource) -> Result<String> {
    use backstop_core::model::SecretSource;
    let reference = match source {
        SecretSource::Env(name) => SecretRef::Env(name.clone()),
        SecretSource::File(path) => SecretRef::File(path.clone()),
    };
    secret_value(Path::new("/"), &reference)
}

/// A secret's value from its reference: the daemon's environment variable, or the file's
/// content without one trailing newline. The error names the reference, never a value.
pub fn secret_value(base: &Path, reference: &SecretRef) -> Result<String> {
    match reference {
        SecretRef::Env(name) => std::env::var(name)
            .map_err(|_| anyhow!("environment variable {name} is not set in the daemon")),
        SecretRef::File(path) => Ok(config_files::read_secret(&resolve(base, path))?),
    }
}

/// The variables `params` add to an instance's environment: env values, then secrets.
///
/// # Errors
/// A secret that cannot be read (named by its reference).
pub fn instance_env(base: &Path, params: &Params) -> Result<BTreeMap<String, String>> {
    let mut vars = params.env.clone();
    for (name, reference) in &params.secrets {
        let value = secret_value(base, reference)
            .with_context(|| format!("secret {name} ({reference})"))?;
        vars.insert(name.clone(), value);
    }
    Ok(vars)
}

/// The HMAC key of a state folder, created (32 random bytes, mode 0600) on first use.
pub fn hmac_key(state_dir: &Path) -> Result<Vec<u8>> {
    Ok(config_files::private_key(
        &state_dir.join(HMAC_KEY_FILE),
        32,
    )?)
}

fn hmac_hex(key: &[u8], value: &str) -> Result<String> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|_| anyhow!("invalid HMAC key"))?;
    mac.update(value.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

fn is_text(bytes: &[u8]) -> bool {
    !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

/// Reads the parameters as they are now.
pub fn read_live(base: &Path, params: &Params, key: &[u8]) -> Result<Live> {
    let mut manifest = Manifest {
        folders: params.folders.clone(),
        env: params.env.clone(),
        ..Manifest::default()
    };
    let captured = config_files::capture(base, &params.files, &params.folders)?;
    manifest.missing = captured.missing;
    let mut contents = BTreeMap::new();
    for (name, file) in captured.files {
        manifest.files.insert(
            name.clone(),
            FileEntry {
                sha256: hex::encode(Sha256::digest(&file.bytes)),
                size: file.bytes.len() as u64,
                text: is_text(&file.bytes),
                mode: file.mode,
            },
        );
        contents.insert(name, file.bytes);
    }
    for (name, reference) in &params.secrets {
        let hmac = match secret_value(base, reference) {
            Ok(value) => Some(hmac_hex(key, &value)?),
            Err(_) => None,
        };
        manifest.secrets.insert(
            name.clone(),
            SecretEntry {
                reference: reference.to_string(),
                hmac,
            },
        );
    }
    Ok(Live { manifest, contents })
}

/// Makes the files and folders on disk equal to `target` (whose contents come from `blobs`).
/// Files that already match are not touched, so running it again changes nothing.
pub fn restore_files(
    base: &Path,
    target: &Manifest,
    live: &Manifest,
    blobs: &dyn BlobStore,
    apply: bool,
) -> Result<(Vec<String>, Vec<String>, usize)> {
    let (mut written, mut removed, mut unchanged) = (Vec::new(), Vec::new(), 0);
    for (name, entry) in &target.files {
        if live.files.get(name) == Some(entry) {
            unchanged += 1;
            continue;
        }
        if apply {
            let bytes = blobs
                .get(&entry.sha256)
                .with_context(|| format!("content of {name}"))?;
            config_files::write_atomic(&resolve(base, name), &bytes, entry.mode)?;
        }
        written.push(name.clone());
    }
    // Files the snapshot did not have: inside a snapshotted folder, or a listed file/folder
    // that was missing then.
    let in_scope = |name: &str| {
        target
            .folders
            .iter()
            .chain(&target.missing)
            .any(|f| name == f || name.starts_with(&format!("{}/", f.trim_end_matches('/'))))
    };
    for name in live.files.keys() {
        if !target.files.contains_key(name) && in_scope(name) {
            if apply {
                config_files::remove(&resolve(base, name))?;
            }
            removed.push(name.clone());
        }
    }
    Ok((written, removed, unchanged))
}

impl Ctx {
    fn blobs(&self) -> FolderBlobs {
        FolderBlobs::new(self.state_dir.join("blobs"))
    }

    fn params(&self, service: &str, env: &str) -> Result<&Params> {
        let svc = self.service(service)?;
        Ok(&svc
            .environment(env)
            .ok_or_else(|| anyhow!("service {service} has no environment {env:?}"))?
            .params)
    }

    /// The variables an instance of `service` in `env` gets from `params` (env values and
    /// resolved secrets).
    pub fn param_env(&self, service: &str, env: &str) -> Result<BTreeMap<String, String>> {
        instance_env(&self.config.base_dir, self.params(service, env)?)
    }

    /// The parameters on disk now (`None`: the environment declares none).
    pub async fn live_params(&self, service: &str, env: &str) -> Result<Option<Live>> {
        let params = self.params(service, env)?.clone();
        if params.is_empty() {
            return Ok(None);
        }
        let base = self.config.base_dir.clone();
        let state = self.state_dir.clone();
        tokio::task::spawn_blocking(move || {
            let key = hmac_key(&state)?;
            read_live(&base, &params, &key)
        })
        .await
        .context("reading config params")?
        .map(Some)
    }

    /// Takes a snapshot of `service/env`'s parameters: contents into the blob store, the
    /// manifest as a blob, a version in the store (reused when nothing changed since the
    /// latest). `None` when the environment declares no `params`.
    pub async fn take_snapshot(
        &self,
        service: &str,
        env: &str,
        actor: &str,
        reason: &str,
        rollout_id: Option<&str>,
    ) -> Result<Option<(ConfigSnapshot, bool)>> {
        let Some(live) = self.live_params(service, env).await? else {
            return Ok(None);
        };
        let blobs = self.blobs();
        let manifest = tokio::task::spawn_blocking(move || -> Result<String> {
            for bytes in live.contents.values() {
                blobs.put_bytes(bytes)?;
            }
            let doc = serde_json::to_vec(&live.manifest)?;
            Ok(blobs.put_bytes(&doc)?)
        })
        .await
        .context("storing the snapshot")??;
        let snap = ConfigSnapshot {
            service: service.into(),
            env: env.into(),
            version: 0,
            manifest,
            created_at_ms: self.clock.now_ms(),
            actor: actor.into(),
            reason: reason.into(),
            rollout_id: rollout_id.map(str::to_string),
        };
        Ok(Some(self.store.record_config_snapshot(&snap).await?))
    }

    /// The params snapshot taken before rollout `rollout_id` of `service/env`, beside what is
    /// live now; `None` when none was taken (no params, or before snapshots existed).
    pub async fn rollout_snapshot_vs_live(
        &self,
        service: &str,
        env: &str,
        rollout_id: &str,
    ) -> Result<Option<SnapshotVsLive>> {
        let Some(version) = self
            .store
            .rollout_safeguards(rollout_id)
            .await?
            .and_then(|g| g.config_snapshot)
        else {
            return Ok(None);
        };
        let snap = self.store.config_snapshot(service, env, version).await?;
        let snapshot = self.snapshot_manifest(&snap.manifest)?;
        let live = self
            .live_params(service, env)
            .await?
            .map(|l| l.manifest)
            .unwrap_or_default();
        Ok(Some(SnapshotVsLive {
            version,
            digest: snap.manifest,
            snapshot,
            live,
        }))
    }

    /// A stored snapshot's manifest (its blob re-verified).
    pub fn snapshot_manifest(&self, digest: &str) -> Result<Manifest> {
        let bytes = self.blobs().get(digest).context("snapshot manifest")?;
        serde_json::from_slice(&bytes).context("snapshot manifest is not a manifest")
    }

    /// Changes from snapshot `from` (default: the latest) to snapshot `to` (default: the live
    /// files now). Text files get a unified diff; binaries, env values and secrets a status.
    pub async fn diff_params(
        &self,
        service: &str,
        env: &str,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<ConfigDiff, crate::error::ApiError> {
        use crate::error::ApiError;
        let internal = |e: anyhow::Error| ApiError::internal(format!("{e:#}"));
        let a = match from {
            Some(v) => self.store.config_snapshot(service, env, v).await?,
            None => self
                .store
                .config_snapshots(service, env)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    ApiError::not_found(format!("{service}/{env} has no config snapshot yet"))
                })?,
        };
        let a_manifest = self.snapshot_manifest(&a.manifest).map_err(internal)?;
        let blobs = self.blobs();
        let (to_label, b_manifest, b_contents) = match to {
            Some(v) => {
                let b = self.store.config_snapshot(service, env, v).await?;
                (
                    format!("snapshot {v}"),
                    self.snapshot_manifest(&b.manifest).map_err(internal)?,
                    None,
                )
            }
            None => {
                let live = self
                    .live_params(service, env)
                    .await
                    .map_err(internal)?
                    .unwrap_or(Live {
                        manifest: Manifest::default(),
                        contents: BTreeMap::new(),
                    });
                ("live".to_string(), live.manifest, Some(live.contents))
            }
        };
        let from_label = format!("snapshot {}", a.version);
        let mut list = changes(&a_manifest, &b_manifest);
        for c in list.iter_mut().filter(|c| c.kind == "file") {
            let text_of = |m: &Manifest, contents: Option<&BTreeMap<String, Vec<u8>>>| {
                let entry = m.files.get(&c.name)?;
                if !entry.text {
                    return None;
                }
                let bytes = match contents {
                    Some(map) => map.get(&c.name).cloned()?,
                    None => blobs.get(&entry.sha256).ok()?,
                };
                String::from_utf8(bytes).ok()
            };
            let before = match c.status.as_str() {
                "added" => Some(String::new()),
                _ => text_of(&a_manifest, None),
            };
            let after = match c.status.as_str() {
                "removed" => Some(String::new()),
                _ => text_of(&b_manifest, b_contents.as_ref()),
            };
            if let (Some(x), Some(y)) = (before, after) {
                c.diff = unified_diff(
                    &x,
                    &y,
                    &format!("{} ({from_label})", c.name),
                    &format!("{} ({to_label})", c.name),
                );
            }
        }
        Ok(ConfigDiff {
            service: service.into(),
            env: env.into(),
            from: from_label,
            to: to_label,
            changes: list,
        })
    }

    /// Puts snapshot `version` back on disk (`apply: false`: only says what it would do).
    pub async fn restore_params(
        &self,
        service: &str,
        env: &str,
        version: i64,
        apply: bool,
    ) -> Result<RestoreOutcome> {
        let snap = self.store.config_snapshot(service, env, version).await?;
        self.restore_manifest(service, env, version, &snap.manifest, apply)
            .await
    }

    /// [`Ctx::restore_params`] by manifest digest (what the recovery step journals).
    pub async fn restore_manifest(
        &self,
        service: &str,
        env: &str,
        version: i64,
        digest: &str,
        apply: bool,
    ) -> Result<RestoreOutcome> {
        let target = self.snapshot_manifest(digest)?;
        let live = self
            .live_params(service, env)
            .await?
            .map(|l| l.manifest)
            .unwrap_or_default();
        let base = self.config.base_dir.clone();
        let blobs = self.blobs();
        let (t, l) = (target.clone(), live.clone());
        let (written, removed, unchanged) =
            tokio::task::spawn_blocking(move || restore_files(&base, &t, &l, &blobs, apply))
                .await
                .context("restoring config files")??;
        let not_restorable = changes(&live, &target)
            .into_iter()
            .filter(|c| c.kind != "file")
            .collect();
        Ok(RestoreOutcome {
            service: service.into(),
            env: env.into(),
            snapshot: version,
            applied: apply,
            written,
            removed,
            unchanged,
            not_restorable,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn params() -> Params {
        let mut p = Params {
            files: vec!["app.toml".into()],
            folders: vec!["conf.d".into()],
            ..Params::default()
        };
        p.env.insert("LOG_LEVEL".into(), "info".into());
        p.secrets
            .insert("DB".into(), SecretRef::File("secret.txt".into()));
        p
    }

    #[test]
    fn restoring_puts_bytes_back_and_a_second_restore_is_a_no_op() {
        let dir = tempfile::tempdir().expect("tmp");
        let base = dir.path();
        std::fs::write(base.join("app.toml"), "a = 1\n").expect("write");
        std::fs::create_dir_all(base.join("conf.d/sub")).expect("mkdir");
        std::fs::write(base.join("conf.d/sub/bin.dat"), [0u8, 159, 146, 150]).expect("write");
        std::fs::write(base.join("secret.txt"), "s3cret-value\n").expect("write");
        let blobs = FolderBlobs::new(base.join("blobs"));
        let key = [7u8; 32];
        let snap = read_live(base, &params(), &key).expect("live");
        for bytes in snap.contents.values() {
            blobs.put_bytes(bytes).expect("put");
        }
        assert!(!snap.manifest.files["conf.d/sub/bin.dat"].text);
        let printed = serde_json::to_string(&snap.manifest).expect("json");
        assert!(!printed.contains("s3cret-value"), "{printed}");

        std::fs::write(base.join("app.toml"), "a = 2\n").expect("write");
        std::fs::write(base.join("conf.d/sub/bin.dat"), [1u8, 2]).expect("write");
        std::fs::write(base.join("conf.d/new.toml"), "x").expect("write");
        std::fs::write(base.join("secret.txt"), "other\n").expect("write");
        let now = read_live(base, &params(), &key).expect("live");
        let diff: Vec<_> = changes(&snap.manifest, &now.manifest)
            .into_iter()
            .map(|c| format!("{} {} {}", c.kind, c.name, c.status))
            .collect();
        assert_eq!(
            diff,
            [
                "file app.toml changed",
                "file conf.d/new.toml added",
                "file conf.d/sub/bin.dat changed",
                "secret DB changed"
            ]
        );

        let (written, removed, unchanged) =
            restore_files(base, &snap.manifest, &now.manifest, &blobs, true).expect("restore");
        assert_eq!(written, ["app.toml", "conf.d/sub/bin.dat"]);
        assert_eq!(removed, ["conf.d/new.toml"]);
        assert_eq!(unchanged, 0);
        assert_eq!(
            std::fs::read(base.join("app.toml")).expect("read"),
            b"a = 1\n"
        );
        assert_eq!(
            std::fs::read(base.join("conf.d/sub/bin.dat")).expect("read"),
            [0u8, 159, 146, 150]
        );
        assert!(!base.join("conf.d/new.toml").exists());

        let again = read_live(base, &params(), &key).expect("live");
        assert!(snap.manifest.same_files(&again.manifest));
        let (written, removed, unchanged) =
            restore_files(base, &snap.manifest, &again.manifest, &blobs, true).expect("again");
        assert!(written.is_empty() && removed.is_empty());
        assert_eq!(unchanged, 2);
    }

    #[test]
    fn secrets_resolve_by_reference_and_a_missing_one_is_named_not_shown() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("secret.txt"), "v\r\n").expect("write");
        let vars = instance_env(dir.path(), &params()).expect("env");
        assert_eq!(vars.get("DB").map(String::as_str), Some("v"));
        assert_eq!(vars.get("LOG_LEVEL").map(String::as_str), Some("info"));
        let mut p = params();
        p.secrets.insert(
            "TOKEN".into(),
            SecretRef::Env("BACKSTOP_TEST_SURELY_UNSET_VAR".into()),
        );
        let err = format!("{:#}", instance_env(dir.path(), &p).expect_err("unset"));
        assert!(
            err.contains("TOKEN") && err.contains("BACKSTOP_TEST_SURELY_UNSET_VAR"),
            "{err}"
        );
    }

    #[test]
    fn the_hmac_key_is_private_and_stable() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = hmac_key(dir.path()).expect("key");
        let b = hmac_key(dir.path()).expect("key");
        assert_eq!(a, b);
        let mode = std::fs::metadata(dir.path().join(HMAC_KEY_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_ne!(
            hmac_hex(&a, "x").expect("mac"),
            hmac_hex(&a, "y").expect("mac")
        );
    }
}
