//! The `migrations check` benchmark: a generated history of 500 PostgreSQL migrations (tables,
//! columns, indexes, views, triggers with their functions, data backfills, each with its exact
//! down) checked by the real binary on a temporary PostgreSQL cluster, as a user runs it.
//! Prints the wall time, the time per migration and the peak memory of the `backstop` process
//! for the full check (parse, lint, up → down → up of every migration), as a ratio to the budget:
//! about 0.1 s per migration, the order measured on real histories (342 PostgreSQL migrations
//! proven in 25–37 s).
//!
//! `cargo bench -p backstop --bench migrations [-- --migrations 500 --output json]`

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Parser)]
#[command(about = "Time `backstop migrations check` on a generated PostgreSQL history.")]
struct Args {
    /// How many migrations the generated history has.
    #[arg(long, default_value_t = 500)]
    migrations: usize,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Ignored: cargo bench passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The seconds per migration the issue calls today's order of magnitude.
const BUDGET_PER_MIGRATION_S: f64 = 0.1;

/// Writes migration `i` (1-based) of the history: one of six kinds in turn, each acting on
/// tables created earlier, each with the down that undoes it exactly.
fn write_migration(dir: &Path, i: usize) {
    // Tables are made by every sixth migration; the others work on the latest one.
    let table = format!("t{}", (i - 1) / 6 * 6 + 1);
    let (name, up, down) = match (i - 1) % 6 {
        0 => (
            format!("create_{table}"),
            format!(
                "CREATE TABLE {table} (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    \
                 name text NOT NULL DEFAULT '',\n    created_at timestamptz NOT NULL DEFAULT now()\n);\n"
            ),
            format!("DROP TABLE {table};\n"),
        ),
        1 => (
            format!("add_{table}_note"),
            format!("ALTER TABLE {table} ADD COLUMN note text;\n"),
            format!("ALTER TABLE {table} DROP COLUMN note;\n"),
        ),
        2 => (
            format!("index_{table}_name"),
            format!("CREATE INDEX {table}_name ON {table} (name);\n"),
            format!("DROP INDEX {table}_name;\n"),
        ),
        3 => (
            format!("view_{table}"),
            format!(
                "CREATE VIEW {table}_named AS SELECT id, name FROM {table} WHERE name <> '';\n"
            ),
            format!("DROP VIEW {table}_named;\n"),
        ),
        4 => (
            format!("trigger_{table}"),
            format!(
                "CREATE FUNCTION {table}_touch() RETURNS trigger LANGUAGE plpgsql AS $$\n\
                 BEGIN\n    NEW.name := trim(NEW.name);\n    RETURN NEW;\nEND\n$$;\n\
                 CREATE TRIGGER {table}_touch BEFORE INSERT OR UPDATE ON {table}\n    \
                 FOR EACH ROW EXECUTE FUNCTION {table}_touch();\n"
            ),
            format!("DROP TRIGGER {table}_touch ON {table};\nDROP FUNCTION {table}_touch();\n"),
        ),
        _ => (
            format!("backfill_{table}_note"),
            format!("UPDATE {table} SET note = 'none' WHERE note IS NULL;\n"),
            format!("UPDATE {table} SET note = NULL WHERE note = 'none';\n"),
        ),
    };
    let stem = format!("{i:05}_{name}");
    std::fs::write(dir.join(format!("{stem}.up.sql")), up).unwrap();
    std::fs::write(dir.join(format!("{stem}.down.sql")), down).unwrap();
}

/// The peak resident memory (VmHWM) of a running process, in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One run of the binary: its report, wall time and peak memory.
struct Run {
    report: Value,
    seconds: f64,
    peak_mib: f64,
}

fn check(dir: &Path) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["migrations", "check"])
        .arg(dir)
        .args(["--engine", "postgres", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run backstop");
    let pid = child.id();
    let mut peak = 0;
    // VmHWM only grows: the last reading before the process ends is its peak.
    let reader = {
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
            s
        })
    };
    loop {
        if let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    let text = reader.join().unwrap();
    let report: Value = serde_json::from_str(&text).expect("the check prints its JSON report");
    Run {
        report,
        seconds,
        peak_mib: peak as f64 / 1024.0,
    }
}

fn main() {
    let args = Args::parse();
    let n = args.migrations.max(6);
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=n {
        write_migration(dir.path(), i);
    }
    let full = check(dir.path());
    let s = &full.report["summary"];
    assert_eq!(
        s["proven"].as_u64(),
        Some(n as u64),
        "every generated migration is proven: {s:#}"
    );

    let per = full.seconds / n as f64;
    let result = json!({
        "migrations": n,
        "server": full.report["server"],
        "full_proof": {
            "seconds": full.seconds,
            "seconds_per_migration": per,
            "peak_mib": full.peak_mib,
        },
        "budget_seconds_per_migration": BUDGET_PER_MIGRATION_S,
        "budget_ratio": BUDGET_PER_MIGRATION_S / per,
    });
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&result).unwrap()),
        Output::Text => {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "backstop migrations check: {n} generated PostgreSQL migrations on {}",
                full.report["server"].as_str().unwrap_or("?")
            );
            let _ = writeln!(
                out,
                "  full proof (up, down, up each)  {:>7.1} s  {:>6.3} s/migration  peak {:>6.1} MiB",
                full.seconds, per, full.peak_mib
            );
            let _ = writeln!(
                out,
                "  budget {BUDGET_PER_MIGRATION_S} s/migration: {:.1}x under it",
                BUDGET_PER_MIGRATION_S / per,
            );
            print!("{out}");
        }
    }
}
