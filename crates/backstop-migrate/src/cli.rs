//! `backstop migrations check` (wired into the `backstop` binary).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::model::Engine;
use crate::report::{CheckOptions, check_with, render_text};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// A table per migration for people.
    #[default]
    Text,
    /// One JSON object on stdout (the shape in spec/migrations-check.md).
    Json,
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
expand|backfill|contract|irreversible`, `-- no-transaction`.

Examples:
  backstop migrations check db/migrations
  backstop migrations check db/migrations --engine postgres            # temporary PostgreSQL cluster
  backstop migrations check db/migrations --engine postgres --database-url postgres://u:p@host/db
  backstop migrations check db/migrations --write-sum                  # record checksums
  backstop migrations check db/migrations --output json | jq '.migrations[] | select(.proven | not)'

Exit codes: 0 every migration proven (or declared irreversible) and no error finding; 1 an error \
finding or a failed proof; 2 bad input (unreadable layout, SQL that does not parse: file:line, \
colliding versions, PostgreSQL not installed); 3 the scratch database cannot be reached or started.";

/// `backstop migrations check DIR`: lint a migration set and prove every down on a scratch database.
#[derive(Debug, Clone, Args)]
#[command(long_about = CHECK_LONG_ABOUT)]
pub struct MigrationsCheckArgs {
    /// The folder holding the migration set.
    pub dir: PathBuf,
    /// The database engine the migrations are written for (and proven on).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub engine: Engine,
    /// PostgreSQL server to create the scratch database in (default: start a temporary cluster).
    /// The password in it is never printed.
    #[arg(long, env = "BACKSTOP_MIGRATIONS_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Print text for people or JSON for programs.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Write (refresh) DIR/backstop.sum with the checksums of every script instead of comparing.
    #[arg(long)]
    pub write_sum: bool,
}

/// Run the check and print the report; returns the exit code (see the long help).
pub async fn run_check(args: &MigrationsCheckArgs) -> i32 {
    let opts = CheckOptions {
        engine: args.engine,
        database_url: args.database_url.as_deref(),
        write_sum: args.write_sum,
    };
    match check_with(&args.dir, &opts).await {
        Ok(report) => {
            match args.output {
                OutputFormat::Json => match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: cannot encode the report: {e}");
                        return 3;
                    }
                },
                OutputFormat::Text => print!("{}", render_text(&report)),
            }
            report.exit_code()
        }
        Err(e) => {
            let code = e.exit_code();
            match args.output {
                OutputFormat::Json => {
                    let (file, line) = match &e {
                        crate::report::CheckError::Input(i) => {
                            (Some(i.file.display().to_string()), i.line)
                        }
                        crate::report::CheckError::Proof(_) => (None, None),
                    };
                    let message = match &e {
                        crate::report::CheckError::Input(i) => i.message.clone(),
                        crate::report::CheckError::Proof(p) => p.to_string(),
                    };
                    println!(
                        "{}",
                        serde_json::json!({
                            "engine": args.engine,
                            "ok": false,
                            "error": {"file": file, "line": line, "message": message},
                        })
                    );
                }
                OutputFormat::Text => {}
            }
            eprintln!("error: {e}");
            code
        }
    }
}
