//! `backstop store copy`: moves an embedded install's state (SQLite in a state folder) into an
//! empty PostgreSQL database, for `serve --database-url`.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use backstop_store::copy::{CopyReport, TableCopy};
use backstop_store::postgres::redact;
use backstop_store::{PostgresStore, SqliteStore};

use crate::output::{OutputArgs, Render};

pub const COPY_LONG_ABOUT: &str = "\
Copy everything a state folder's database holds (releases, environments, rollouts with their \
intervals and events, the recovery journal, breaker trips, freezes, config snapshots, drills and \
the audit chain) into an empty PostgreSQL database, in one transaction, then verify the audit \
chain there. The daemon of that state folder must be stopped (the copy takes its lock); the \
target must be empty (nothing is written otherwise).

The artifact backups (STATE_DIR/blobs) are uploaded into the database first, each verified \
by its sha256, so replicas on any host (any --state-dir) can run every release.

Example:
  backstop store copy --from .backstop --to 'postgres://backstop@db:5432/backstop'
  backstop serve --state-dir .backstop --database-url 'postgres://backstop@db:5432/backstop'";

#[derive(clap::Subcommand)]
pub enum StoreCmd {
    /// Copy a state folder's database into an empty PostgreSQL database and verify it.
    #[command(long_about = COPY_LONG_ABOUT)]
    Copy(CopyArgs),
}

#[derive(clap::Args)]
pub struct CopyArgs {
    /// The state folder to copy from (its daemon stopped).
    #[arg(long, value_name = "STATE_DIR")]
    from: PathBuf,
    /// The PostgreSQL database to copy into: `postgres://user:password@host:5432/database`.
    /// Prefer BACKSTOP_DATABASE_URL: a flag's password shows in the process list.
    #[arg(
        long,
        env = "BACKSTOP_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    to: String,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(serde::Serialize)]
struct Copied {
    from: PathBuf,
    to: String,
    /// Artifact backups the state folder holds, all of them now in the database.
    artifacts: usize,
    #[serde(flatten)]
    report: CopyReport,
}

pub async fn store(cmd: StoreCmd) -> Result<i32> {
    let StoreCmd::Copy(args) = cmd;
    let db = args.from.join(backstop_store::sqlite::DB_FILE);
    if !db.is_file() {
        bail!(
            "--from {}: no state database there ({} is missing)",
            args.from.display(),
            db.display()
        );
    }
    // The folder's own daemon must not write while its state is copied.
    let _lock = backstop_server::state_lock::StateLock::acquire(&args.from)
        .context("the state folder's daemon must be stopped before its state is copied")?;
    let from = SqliteStore::open_existing_dir(&args.from)
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    let to = PostgresStore::connect(&args.to).await?;
    let text = matches!(args.out.output, crate::output::Output::Text);
    // Artifacts first (idempotent, outside the tables' transaction): a copy that fails later
    // can be run again, and the target never lists a release whose artifact it lacks.
    let blobs = to.blobs(backstop_store::FolderBlobs::new(args.from.join("blobs")));
    let artifacts = tokio::task::spawn_blocking(move || blobs.upload_folder())
        .await?
        .with_context(|| format!("copying the artifact backups into {}", redact(&args.to)))?;
    if text {
        crate::output::say_line(&format!("  {:<20} {:>8} objects", "artifacts", artifacts));
    }
    let report = backstop_store::copy::sqlite_to_postgres(&from, &to, |t: &TableCopy| {
        if text {
            crate::output::say_line(&format!("  {:<20} {:>8} rows", t.table, t.rows));
        }
    })
    .await
    .with_context(|| format!("copying into {}", redact(&args.to)))?;
    args.out.output.print(&Copied {
        from: args.from.clone(),
        to: redact(&args.to),
        artifacts,
        report,
    });
    Ok(0)
}

impl Render for Copied {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let rows: u64 = self.report.tables.iter().map(|t| t.rows).sum();
        writeln!(
            w,
            "Copied {rows} rows from {} to {}; the audit chain verifies there ({} records).",
            self.from.display(),
            self.to,
            self.report.audit_records_verified
        )?;
        writeln!(
            w,
            "{} artifact backups are in the database too: start replicas with --database-url (any --state-dir; this one keeps its copies).",
            self.artifacts
        )
    }
}
