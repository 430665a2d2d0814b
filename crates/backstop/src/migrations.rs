//! `backstop migrations apply` and `status`: apply a checked migration set to a real database,
//! keeping in that database what schema-aware rollbacks need (each down script, its digest, and
//! whether it was proven reversible).

use std::path::PathBuf;

use anyhow::{Context, Result};
use backstop_migrate::Engine;
use backstop_migrate::apply::{self, apply_up};
use backstop_migrate::report::{CheckOptions, check_with};
use clap::Args;
use serde_json::json;

use crate::commands::print_json;
use crate::{Output, OutputArgs};

/// Where the database is: a URL, or the environment variable holding it.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// The database engine.
    #[arg(long, value_enum, default_value = "sqlite")]
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
        match a.out.output {
            Output::Json => {
                print_json(&json!({"applied": [], "blocking": blocking, "check": report}))
            }
            Output::Text => {
                print!("{}", backstop_migrate::report::render_text(&report));
                eprintln!(
                    "nothing applied: migration(s) {} failed the check (fix the findings, or --allow-unproven to record them as unproven)",
                    blocking.join(", ")
                );
            }
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
    match a.out.output {
        Output::Json => print_json(&json!({
            "applied": applied, "error": error, "history": history,
        })),
        Output::Text => {
            if applied.is_empty() && error.is_none() {
                println!("nothing to apply: the database is at {}", current(&history));
            }
            for v in &applied {
                println!("applied {v}");
            }
            if let Some(e) = &error {
                eprintln!("error: {e}");
            }
            println!("database schema: {}", current(&history));
        }
    }
    Ok(if error.is_some() { 1 } else { 0 })
}

pub async fn status(a: StatusArgs) -> Result<i32> {
    let url = a.db.url()?;
    let history = apply::history(a.db.engine, &url).await?;
    match a.out.output {
        Output::Json => print_json(&history),
        Output::Text => {
            if history.is_empty() {
                println!("no migration applied by Backstop in this database");
            }
            for m in &history {
                let down = match (&m.irreversible, m.has_down, m.proven) {
                    (Some(reason), _, _) => format!("irreversible: {reason}"),
                    (None, false, _) => "no down".to_string(),
                    (None, true, true) => "down proven".to_string(),
                    (None, true, false) => "down NOT proven".to_string(),
                };
                let phase = m.phase.as_deref().unwrap_or("-");
                println!("{:<16} {:<32} {:<12} {down}", m.version, m.name, phase);
            }
        }
    }
    Ok(0)
}

fn current(history: &[backstop_core::schema::AppliedMigration]) -> String {
    history
        .last()
        .map_or_else(|| "(empty)".to_string(), |m| m.version.clone())
}
