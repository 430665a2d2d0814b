//! `backstop config history|diff|snapshot|restore`: an environment's parameters (files,
//! folders, env values, secrets by reference) as snapshotted by the daemon.

use std::io::{self, Write};

use anyhow::Result;
use backstop_api::config::{
    ConfigDiff, RestoreOutcome, RestoreRequest, SnapshotTaken, TakeSnapshot,
};
use backstop_core::format_ms;
use backstop_core::snapshot::{Change, ConfigSnapshot};
use serde::Serialize;

use crate::client::{ApiArgs, Query};
use crate::output::Render;

/// Long help of `backstop config history`.
pub const HISTORY_HELP: &str = "List the config snapshots of an environment, newest first.\n\n\
A snapshot is taken before every rollout (and by `backstop config snapshot`); a capture equal to \
the latest snapshot reuses its version.\n\n\
Examples:\n  backstop config history checkout --env prod\n  backstop config history checkout --env prod --output json";

/// Long help of `backstop config diff`.
pub const DIFF_HELP: &str = "Show what changed in an environment's params.\n\n\
With no version: the latest snapshot against the files on disk now. With A: snapshot A against \
now. With A and B: snapshot A against snapshot B. Text files get a unified diff; binary files, \
env values and secrets say added, removed or changed (a secret's value is never shown).\n\n\
Exit codes: 0 no differences, 1 differences, 2 bad input, 3 daemon unreachable.\n\n\
Examples:\n  backstop config diff checkout --env prod\n  backstop config diff checkout --env prod 3\n  backstop config diff checkout --env prod 3 5 --output json";

/// Long help of `backstop config snapshot`.
pub const SNAPSHOT_HELP: &str = "Snapshot an environment's params now (audited).\n\n\
Nothing changed since the latest snapshot: its version is reused and no new one is made.\n\n\
Examples:\n  backstop config snapshot checkout --env prod --reason \"before the DB failover\"";

/// Long help of `backstop config restore`.
pub const RESTORE_HELP: &str = "Write a snapshot's files and folders back to disk (audited).\n\n\
Each file is written atomically (temp file, fsync, rename); files that already match are left \
alone, so restoring the same snapshot twice changes nothing. Files absent from the snapshot \
inside a snapshotted folder are removed. Env values and secrets come from backstop.yaml and \
their sources: a restore lists those that differ but cannot write them.\n\n\
Without --yes nothing is written: the command prints what would change and exits 1 (0 when \
nothing would change).\n\n\
Examples:\n  backstop config restore checkout --env prod 3            # what would change\n  backstop config restore checkout --env prod 3 --yes --reason \"bad flag in prod.toml\"";

/// Which environment's parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The service (as in backstop.yaml).
    pub service: String,
    /// The environment whose `params` are meant.
    #[arg(long)]
    pub env: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

impl Target {
    fn path(&self, tail: &str) -> String {
        format!("/api/v1/config/{}/{}/{tail}", self.service, self.env)
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub target: Target,
    /// Snapshot version to compare from (default: the latest).
    pub from: Option<i64>,
    /// Snapshot version to compare to (default: the live files).
    pub to: Option<i64>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub target: Target,
    /// Why: recorded with the snapshot and in the audit log.
    #[arg(long, default_value = "taken from the CLI")]
    pub reason: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub target: Target,
    /// The snapshot version to put back (see `backstop config history`).
    pub snapshot: i64,
    /// Write the files (without it: a dry run).
    #[arg(long)]
    pub yes: bool,
    /// Why: recorded in the audit log.
    #[arg(long, default_value = "restored from the CLI")]
    pub reason: String,
}

pub async fn history(a: HistoryArgs) -> Result<i32> {
    let t = &a.target;
    let list: Vec<ConfigSnapshot> = t.api.client()?.get(&t.path("snapshots")).await?;
    t.api.print(&History { target: t, list });
    Ok(0)
}

/// An environment's snapshots, newest first.
#[derive(Serialize)]
#[serde(transparent)]
struct History<'a> {
    #[serde(skip)]
    target: &'a Target,
    list: Vec<ConfigSnapshot>,
}

impl Render for History<'_> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let t = self.target;
        if self.list.is_empty() {
            writeln!(w, "{}/{}: no config snapshot yet", t.service, t.env)?;
        }
        writeln!(
            w,
            "{:>7}  {:<24}  {:<14}  {:<14}  REASON",
            "VERSION", "TAKEN", "BY", "MANIFEST"
        )?;
        for s in &self.list {
            writeln!(
                w,
                "{:>7}  {:<24}  {:<14}  {:<14}  {}",
                s.version,
                format_ms(s.created_at_ms),
                s.actor,
                &s.manifest[..12.min(s.manifest.len())],
                s.reason
            )?;
        }
        Ok(())
    }
}

fn write_change(w: &mut dyn Write, c: &Change) -> io::Result<()> {
    let note = if c.kind == "secret" {
        " (value not shown)"
    } else {
        ""
    };
    writeln!(w, "  {:<6} {:<8} {}{note}", c.kind, c.status, c.name)?;
    if let Some(d) = &c.diff {
        for line in d.lines() {
            writeln!(w, "    {line}")?;
        }
    }
    Ok(())
}

pub async fn diff(a: DiffArgs) -> Result<i32> {
    let t = &a.target;
    let path = Query::new(&t.path("diff"))
        .param_if("from", a.from)
        .param_if("to", a.to);
    let d: ConfigDiff = t.api.get_and_print(path.as_str()).await?;
    Ok(i32::from(!d.changes.is_empty()))
}

impl Render for ConfigDiff {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "{}/{}: {} → {}",
            self.service, self.env, self.from, self.to
        )?;
        if self.changes.is_empty() {
            writeln!(w, "  no differences")?;
        }
        for c in &self.changes {
            write_change(w, c)?;
        }
        Ok(())
    }
}

pub async fn snapshot(a: SnapshotArgs) -> Result<i32> {
    let t = &a.target;
    let body = TakeSnapshot { reason: a.reason };
    t.api
        .post_and_print::<SnapshotTaken>(&t.path("snapshots"), &body)
        .await?;
    Ok(0)
}

impl Render for SnapshotTaken {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let (service, env) = (&self.snapshot.service, &self.snapshot.env);
        if self.new_version {
            writeln!(
                w,
                "{service}/{env}: snapshot {} taken (manifest sha256 {})",
                self.snapshot.version, self.snapshot.manifest
            )
        } else {
            writeln!(
                w,
                "{service}/{env}: nothing changed since snapshot {}; no new version",
                self.snapshot.version
            )
        }
    }
}

pub async fn restore(a: RestoreArgs) -> Result<i32> {
    let t = &a.target;
    let body = RestoreRequest {
        snapshot: a.snapshot,
        reason: a.reason,
        dry_run: !a.yes,
    };
    let out: RestoreOutcome = t.api.post_and_print(&t.path("restore"), &body).await?;
    Ok(i32::from(pending(&out)))
}

/// A dry run that found files to write or remove.
fn pending(out: &RestoreOutcome) -> bool {
    !out.applied && (!out.written.is_empty() || !out.removed.is_empty())
}

impl Render for RestoreOutcome {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let (write, remove) = if self.applied {
            ("written", "removed")
        } else {
            ("would write", "would remove")
        };
        writeln!(
            w,
            "{}/{}: snapshot {} ({} file(s) already match)",
            self.service, self.env, self.snapshot, self.unchanged
        )?;
        for f in &self.written {
            writeln!(w, "  {write}: {f}")?;
        }
        for f in &self.removed {
            writeln!(w, "  {remove}: {f}")?;
        }
        for c in &self.not_restorable {
            writeln!(
                w,
                "  not restorable ({} {} {}): change it in backstop.yaml or its source",
                c.kind, c.name, c.status
            )?;
        }
        if pending(self) {
            writeln!(w, "nothing was written; run again with --yes to restore")?;
        }
        Ok(())
    }
}
