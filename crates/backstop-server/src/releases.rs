//! Registering a release: its artifact is checked, backed up (content-addressed) and hashed,
//! then the release is stored and audited. Used by `POST /releases` and by drills.

use backstop_api::releases::CreateRelease;
use backstop_core::env_var;
use backstop_core::event::EventKind;
use backstop_core::label::{Label, VerdictLabel};
use backstop_core::model::{Artifact, Release, ReleaseStatus};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Ctx;
use crate::error::{ApiError, ApiResult};

/// The configured service `name`; else 404 at `pointer`, listing the configured ones.
pub fn known_service<'a>(
    ctx: &'a Ctx,
    name: &str,
    pointer: &str,
) -> ApiResult<&'a backstop_config::Service> {
    ctx.config.service(name).ok_or_else(|| {
        let known: Vec<_> = ctx
            .config
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        ApiError::not_found(format!(
            "unknown service {name:?} (configured: {})",
            known.join(", ")
        ))
        .at(pointer)
    })
}

/// Registers `req` on behalf of `actor`.
pub async fn register(ctx: &Ctx, req: CreateRelease, actor: &str) -> ApiResult<Release> {
    known_service(ctx, &req.service, "/service")?;
    if req.version.is_empty()
        || req.version.len() > 128
        || !req
            .version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
    {
        return Err(ApiError::bad_request(
            "version must be 1-128 characters of letters, digits and . _ - +",
        )
        .at("/version"));
    }
    for (field, key) in req
        .env
        .keys()
        .map(|k| ("env", k))
        .chain(req.secrets.keys().map(|k| ("secrets", k)))
    {
        if !env_var::is_env_var_name(key) {
            return Err(ApiError::bad_request(format!(
                "environment variable name {key:?} must match {} ({})",
                env_var::ENV_VAR_NAME_PATTERN,
                env_var::ENV_VAR_NAME_RULE
            ))
            .at(format!("/{field}/{key}")));
        }
    }
    // A reference that does not resolve here would fail every instance start: refused now,
    // naming the reference (never a value).
    for (key, source) in &req.secrets {
        if let backstop_core::model::SecretSource::File(path) = source
            && !path.starts_with('/')
        {
            return Err(ApiError::bad_request(format!(
                "secret {key}: a file reference is an absolute path on the daemon's host, not {path:?}"
            ))
            .at(format!("/secrets/{key}")));
        }
        crate::snapshots::release_secret(source).map_err(|e| {
            ApiError::bad_request(format!("secret {key} ({source}): {e:#}"))
                .at(format!("/secrets/{key}"))
        })?;
    }
    // The artifact is backed up (content-addressed) as it is hashed: instances always run the
    // verified stored copy, so a rollback does not depend on the build folder.
    let (artifact, sha256) = match (req.file, req.command) {
        (Some(path), None) => {
            let blobs = ctx.blobs.clone();
            let p = path.clone();
            let max_bytes = ctx.limits.max_artifact_bytes;
            let sha = tokio::task::spawn_blocking(move || {
                crate::intake::take_in(
                    blobs.as_ref(),
                    &p,
                    max_bytes,
                    crate::intake::ARTIFACT_READ_DEADLINE,
                )
            })
            .await
            .map_err(|e| ApiError::internal(format!("backing up the artifact: {e}")))?
            .map_err(|e| match e {
                crate::intake::IntakeError::Refused(why) => ApiError::bad_request(why).at("/file"),
                store @ crate::intake::IntakeError::Store(_) => {
                    ApiError::internal(format!("artifact file {path}: {store}"))
                }
            })?;
            (Artifact::File(path), sha)
        }
        (None, Some(cmd)) if !cmd.trim().is_empty() => {
            let sha = ctx
                .blobs
                .put_bytes(cmd.as_bytes())
                .map_err(|e| ApiError::internal(format!("backing up the command: {e}")))?;
            debug_assert_eq!(sha, hex::encode(Sha256::digest(cmd.as_bytes())));
            (Artifact::Command(cmd), sha)
        }
        _ => {
            return Err(
                ApiError::bad_request("give exactly one of `file` and `command`").at("/file"),
            );
        }
    };
    let schema = match req.schema.as_deref() {
        Some(text) => Some(
            backstop_core::schema::SchemaRange::parse(text)
                .map_err(|e| ApiError::bad_request(e).at("/schema"))?,
        ),
        None => None,
    };
    let release = Release {
        id: Release::id_for(&req.service, &req.version),
        service: req.service,
        version: req.version,
        artifact,
        sha256,
        env: req.env,
        secrets: req.secrets,
        status: ReleaseStatus::Ok,
        bad_reason: None,
        created_at_ms: ctx.clock.now_ms(),
        schema,
    };
    ctx.store.create_release(&release).await?;
    crate::audit(
        ctx,
        actor,
        EventKind::ReleaseCreated,
        &format!("release/{}", release.id),
        "api",
        json!({
            "sha256": release.sha256, "artifact": release.artifact, "schema": release.schema,
            "secrets": release.secrets,
        }),
    )
    .await?;
    Ok(release)
}

/// Clears the bad mark of release `id` after a false alarm, on behalf of `actor`, so the same
/// artifact can be rolled out again: audited, and the rollout that rolled it back is labelled
/// `false-alarm` for calibration (with `reason` as the label's note).
pub async fn readmit(ctx: &Ctx, id: &str, actor: &str, reason: &str) -> ApiResult<Release> {
    if reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "say why the release is readmitted (`--reason`)".to_owned(),
        )
        .at("/reason"));
    }
    let before = ctx.store.release(id).await?;
    ctx.store.readmit_release(id).await?;
    let rolled_back = ctx
        .store
        .rollouts(Some(&before.service), 1_000)
        .await?
        .into_iter()
        .filter(|r| r.to_release_id == id)
        .find(|r| Label::FalseAlarm.fits(r).is_ok());
    if let Some(r) = &rolled_back {
        let label = VerdictLabel {
            rollout_id: r.id.clone(),
            service: r.service.clone(),
            env: r.env.clone(),
            label: Label::FalseAlarm,
            by: actor.to_owned(),
            at_ms: ctx.clock.now_ms(),
            note: reason.to_owned(),
        };
        ctx.store.set_label(&label).await?;
        crate::audit(
            ctx,
            actor,
            EventKind::VerdictLabelled,
            &format!("rollout/{}", r.id),
            "readmit",
            json!({"label": label.label, "note": reason, "release": id}),
        )
        .await?;
    }
    crate::audit(
        ctx,
        actor,
        EventKind::ReleaseReadmitted,
        &format!("release/{id}"),
        "manual",
        json!({
            "release": id, "reason": reason, "was_bad_because": before.bad_reason,
            "labelled_rollout": rolled_back.map(|r| r.id),
        }),
    )
    .await?;
    Ok(ctx.store.release(id).await?)
}
