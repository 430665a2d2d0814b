//! `backstop migrations check`: lint a migration set and prove every down on a scratch
//! database; `apply` and `status`: apply a checked migration set to a real database, keeping in
//! that database what schema-aware rollbacks need (each down script, its digest, and whether it
//! was proven reversible).

use std::io::IsTerminal as _;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use backstop_core::schema::AppliedMigration;
use backstop_migrate::Engine;
use backstop_migrate::Severity;
use backstop_migrate::apply::{self, apply_up};
use backstop_migrate::report::{
    CheckError, CheckOptions, Report, TextOptions, check_with, render_text, render_text_with,
};
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use serde::Serialize;

use crate::output::{self, Output, OutputArgs, Render};

/// `--engine`: the [`Engine`] migrations are written for.
fn engine() -> impl TypedValueParser<Value = Engine> {
    PossibleValuesParser::new(["sqlite", "postgres"]).map(|v| {
        if v == "postgres" {
            Engine::Postgres
        } else {
            Engine::Sqlite
        }
    })
}

/// The long help of `backstop migrations check` (the binary puts it on its subcommand too,
/// since a doc comment there would replace it).
pub const CHECK_LONG_ABOUT: &str = "Read the migration set in DIR (paired .up.sql/.down.sql, diesel, sqlx, Flyway V/U, \
sqitch, goose, dbmate or Liquibase formatted SQL; detected from the files), parse every script with \
the engine's parser, lint it (missing or no-op downs, destructive operations, changes that break the \
previous version, non-transactional statements, squawk's PostgreSQL rules), compare checksums with \
DIR/backstop.sum if there is one, and prove on a scratch database that for every migration \
up -> down -> up gives back the schema it started from.

Annotations in any script: `-- backstop:irreversible [reason]` (no down expected; rollback plans \
refuse to cross it), `-- backstop:forward-only` (accept it), `-- backstop:phase \
expand|backfill|contract|irreversible`, `-- no-transaction` (diesel: `run_in_transaction = false` \
in the migration's metadata.toml).

Adopting the check on an existing history: `--since VERSION` accepts the findings of the \
migrations up to and including VERSION (their proofs still run); `-- backstop:allow RULE[,RULE] \
reason` in a script accepts those rules' findings in that script; `-- safety-assured:start` ... \
`-- safety-assured:end` accepts every lint finding between the two lines. Accepted findings stay \
in the report as info, with the reason.

Examples:
  backstop migrations check db/migrations
  backstop migrations check db/migrations --engine postgres            # temporary PostgreSQL cluster
  backstop migrations check db/migrations --engine postgres --database-url postgres://u:p@host/db
  backstop migrations check db/migrations --write-sum                  # record checksums
  backstop migrations check db/migrations --since 20240101000000 --quiet   # adopt on old history
  backstop migrations check db/migrations --output json | jq '.migrations[] | select(.proven | not)'

Exit codes: 0 every migration proven (or declared irreversible) and no error finding; 1 an error \
finding or a failed proof; 2 bad input (unreadable layout, SQL that does not parse: file:line, \
colliding versions, PostgreSQL not installed); 3 the scratch database cannot be reached or started, \
or it lacks an extension a migration creates (rule missing-extension).";

/// `backstop migrations check DIR`: lint a migration set and prove every down on a scratch database.
#[derive(Debug, Clone, Args)]
#[command(long_about = CHECK_LONG_ABOUT)]
pub struct MigrationsCheckArgs {
    /// The folder holding the migration set.
    pub dir: PathBuf,
    /// The database engine the migrations are written for (and proven on).
    #[arg(long, value_parser = engine(), default_value = "sqlite")]
    pub engine: Engine,
    /// PostgreSQL server to create the scratch database in (default: start a temporary cluster).
    /// The password in it is never printed.
    #[arg(long, env = "BACKSTOP_MIGRATIONS_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Print text for people or JSON for programs.
    #[arg(
        long,
        short = 'o',
        value_parser = output::described(
            "A table per migration for people",
            "One JSON object on stdout (the shape in spec/migrations-check.md)"
        ),
        default_value = "text"
    )]
    pub output: Output,
    /// Write (refresh) DIR/backstop.sum with the checksums of every script instead of comparing.
    #[arg(long)]
    pub write_sum: bool,
    /// Accept the findings (not the proofs) of the migrations up to and including this version:
    /// they are kept as info; the proofs still run.
    #[arg(long, value_name = "VERSION")]
    pub since: Option<String>,
    /// Show findings at this severity and above (default: warning in text, info in JSON).
    #[arg(long, value_enum)]
    pub severity: Option<SeverityArg>,
    /// Text: show only failing migrations, the tally per rule and the summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// `--severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeverityArg {
    /// Everything, checksums and timings included.
    Info,
    /// Warnings and errors.
    Warning,
    /// Errors only.
    Error,
}

impl From<SeverityArg> for Severity {
    fn from(s: SeverityArg) -> Severity {
        match s {
            SeverityArg::Info => Severity::Info,
            SeverityArg::Warning => Severity::Warning,
            SeverityArg::Error => Severity::Error,
        }
    }
}

/// Runs the check and prints the report; returns the exit code (see the long help).
pub async fn check(args: &MigrationsCheckArgs) -> i32 {
    // A bar on a terminal: proving a long history up→down→up takes a while.
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "proving {bar:30} {pos}/{len} migrations  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let tell = |i: usize, total: usize, version: &str| {
        if let Some(b) = &bar {
            b.set_length(total as u64);
            b.set_position(i as u64);
            b.set_message(version.to_owned());
        }
    };
    let opts = CheckOptions {
        engine: args.engine,
        database_url: args.database_url.as_deref(),
        write_sum: args.write_sum,
        progress: Some(&tell),
        since: args.since.as_deref(),
    };
    let checked = check_with(&args.dir, &opts).await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match checked {
        Ok(mut report) => {
            let code = report.exit_code();
            if let Some(min) = args.severity {
                report.retain_severity(min.into());
            }
            let text = TextOptions {
                min_severity: args.severity.map_or(Severity::Warning, Into::into),
                quiet: args.quiet,
            };
            args.output.print(&Shown { report, text });
            code
        }
        Err(e) => {
            let (file, line, message) = match &e {
                CheckError::Input(i) => (
                    Some(i.file.display().to_string()),
                    i.line,
                    i.message.clone(),
                ),
                CheckError::Proof(p) => (None, None, p.to_string()),
            };
            args.output.print(&CheckFailed {
                engine: args.engine,
                error: FailedAt {
                    file,
                    line,
                    message,
                },
                ok: false,
            });
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// The report as `--severity` and `--quiet` show it (the JSON is the report itself).
#[derive(Serialize)]
#[serde(transparent)]
struct Shown {
    report: Report,
    #[serde(skip)]
    text: TextOptions,
}

impl Render for Shown {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        write!(w, "{}", render_text_with(&self.report, self.text))
    }
}

/// A check that could not run: JSON says where it stopped; the text is the error on stderr.
#[derive(Serialize)]
struct CheckFailed {
    engine: Engine,
    error: FailedAt,
    ok: bool,
}

#[derive(Serialize)]
struct FailedAt {
    file: Option<String>,
    line: Option<u32>,
    message: String,
}

impl Render for CheckFailed {
    fn text(&self, _: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }

    /// One line.
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

/// Where the database is: a URL, or the environment variable holding it.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// The database engine.
    #[arg(long, value_parser = engine(), default_value = "sqlite")]
    pub engine: Engine,
    /// The database URL (`sqlite:///var/lib/app.db`, `postgres://user@host/db`). Prefer
    /// --database-url-env so the password is not in your shell history.
    #[arg(
        long,
        conflicts_with = "database_url_env",
        required_unless_present = "database_url_env"
    )]
    pub database_url: Option<String>,
    /// Name of the environment variable holding the database URL (as `migrations.database_url_env`
    /// in backstop.yaml).
    #[arg(long)]
    pub database_url_env: Option<String>,
}

impl DatabaseArgs {
    fn url(&self) -> Result<String> {
        match (&self.database_url, &self.database_url_env) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(var)) => std::env::var(var).with_context(|| {
                format!("--database-url-env: environment variable {var} is not set")
            }),
            (None, None) => anyhow::bail!("give --database-url or --database-url-env"),
        }
    }
}

/// `backstop migrations apply DIR`: check, then apply what the database has not applied yet.
#[derive(Debug, Clone, Args)]
#[command(
    long_about = "Check the migration set in DIR (the same check as `migrations check`: lint \
and the up -> down -> up proof on a scratch database), then apply every migration the database has \
not applied yet, in order, each in one transaction with its row in the database's \
`backstop_schema_history` table. That row keeps the migration's down script, its sha256 and whether \
the proof passed, so a rollback to a release that runs on an older schema runs exactly that down \
(`backstop release create ... --schema MIN..MAX` declares what a release runs on).

Nothing is applied when a migration this run would apply fails the check, unless \
--allow-unproven: then unproven migrations are recorded as such and rollback plans refuse to \
cross them.

Examples:
  backstop migrations apply db/migrations --database-url-env SHOP_DB_URL
  backstop migrations apply db/migrations --engine postgres --database-url-env ORDERS_DB_URL --to 0007
  backstop migrations status --database-url sqlite:///var/lib/shop.db

Exit codes: 0 applied (or nothing to apply); 1 the check failed or a migration failed on the \
database (it rolled back; earlier ones stay applied); 2 bad input."
)]
pub struct ApplyArgs {
    /// The folder holding the migration set.
    pub dir: PathBuf,
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Apply up to and including this version (default: all).
    #[arg(long)]
    pub to: Option<String>,
    /// Apply even when the check fails; unproven migrations are recorded as such.
    #[arg(long)]
    pub allow_unproven: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `backstop migrations status`: what the database's history says was applied.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

pub async fn apply(a: ApplyArgs) -> Result<i32> {
    let url = a.db.url()?;
    let opts = CheckOptions {
        engine: a.db.engine,
        database_url: None,
        write_sum: false,
        progress: None,
        since: None,
    };
    let report = match check_with(&a.dir, &opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(e.exit_code());
        }
    };
    // Only what this run would apply has to pass: a broken migration after --to, or one the
    // database already has, does not block the others.
    let already: Vec<String> = apply::history(a.db.engine, &url)
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    let pending = |v: &str| {
        !already.iter().any(|x| x == v)
            && a.to.as_deref().is_none_or(|to| {
                backstop_core::schema::version_cmp(v, to) != std::cmp::Ordering::Greater
            })
    };
    let blocking: Vec<String> = report
        .migrations
        .iter()
        .filter(|m| pending(&m.version))
        .filter(|m| m.has_errors() || (!m.proven && !m.declared_irreversible()))
        .map(|m| m.version.clone())
        .collect();
    if !blocking.is_empty() && !a.allow_unproven {
        a.out.output.print(&Refused {
            applied: [],
            blocking: &blocking,
            check: &report,
        });
        if a.out.output == Output::Text {
            eprintln!(
                "nothing applied: migration(s) {} failed the check (fix the findings, or --allow-unproven to record them as unproven)",
                blocking.join(", ")
            );
        }
        return Ok(1);
    }
    let proven = |v: &str| {
        report
            .migrations
            .iter()
            .any(|m| m.version == v && m.proven && !m.has_errors())
    };
    let set = backstop_migrate::layout::load(&a.dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let result = apply_up(a.db.engine, &url, &set, a.to.as_deref(), &proven, now).await;
    let history = apply::history(a.db.engine, &url).await.unwrap_or_default();
    let (applied, error) = match result {
        Ok(v) => (v, None),
        Err(e) => (vec![], Some(e.to_string())),
    };
    let outcome = Applied {
        applied,
        error,
        history,
    };
    a.out.output.print(&outcome);
    if let (Output::Text, Some(e)) = (a.out.output, &outcome.error) {
        eprintln!("error: {e}");
    }
    Ok(if outcome.error.is_some() { 1 } else { 0 })
}

/// Nothing applied: migrations this run would apply failed the check.
#[derive(Serialize)]
struct Refused<'a> {
    applied: [String; 0],
    blocking: &'a [String],
    check: &'a Report,
}

impl Render for Refused<'_> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        write!(w, "{}", render_text(self.check))
    }

    fn json(&self) -> serde_json::Result<String> {
        output::sorted_json(self)
    }
}

/// What a run applied (the error it stopped on, if any) and the database's history after it.
#[derive(Serialize)]
struct Applied {
    applied: Vec<String>,
    error: Option<String>,
    history: Vec<AppliedMigration>,
}

impl Render for Applied {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.applied.is_empty() && self.error.is_none() {
            writeln!(
                w,
                "nothing to apply: the database is at {}",
                current(&self.history)
            )?;
        }
        for v in &self.applied {
            writeln!(w, "applied {v}")?;
        }
        writeln!(w, "database schema: {}", current(&self.history))
    }

    fn json(&self) -> serde_json::Result<String> {
        output::sorted_json(self)
    }
}

pub async fn status(a: StatusArgs) -> Result<i32> {
    let url = a.db.url()?;
    let history = apply::history(a.db.engine, &url).await?;
    a.out.output.print(&history);
    Ok(0)
}

impl Render for Vec<AppliedMigration> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            writeln!(w, "no migration applied by Backstop in this database")?;
        }
        for m in self {
            let down = match (&m.irreversible, m.has_down, m.proven) {
                (Some(reason), _, _) => format!("irreversible: {reason}"),
                (None, false, _) => "no down".to_string(),
                (None, true, true) => "down proven".to_string(),
                (None, true, false) => "down NOT proven".to_string(),
            };
            let phase = m.phase.as_deref().unwrap_or("-");
            writeln!(w, "{:<16} {:<32} {:<12} {down}", m.version, m.name, phase)?;
        }
        Ok(())
    }
}

fn current(history: &[AppliedMigration]) -> String {
    history
        .last()
        .map_or_else(|| "(empty)".to_string(), |m| m.version.clone())
}
