//! `backstop integrity snapshot|compare`: did the data survive a manual recovery?
//!
//! A snapshot is, per table, the row count and an order-independent checksum (the wrapping sum
//! of every row's hash, so the order rows come back in does not matter and a duplicated row
//! counts twice), and the same per key range (fixed-width ranges of an integer primary key,
//! else 64 buckets by the hash of the key, or of the row when there is none), so that a
//! difference found between two snapshots can be located. Rows are hashed from the engine's
//! own text of their values (PostgreSQL's row literal, SQLite's `quote()`): snapshots compare
//! within one engine.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::output::{OutputArgs, Render};

pub const FORMAT: &str = "backstop-integrity/v1";

/// Hash buckets of a table without an integer key.
const BUCKETS: u64 = 64;

const SNAPSHOT_HELP: &str = "Record, per table of a SQLite or PostgreSQL database, the row count \
and an order-independent checksum, also per key range (so a difference can be located). Take one \
before a manual recovery and compare after, or compare a restored backup with the primary.

DATABASE is a postgres:// URL or a SQLite file (a path, or sqlite:PATH). Only reads.

Examples:
  backstop integrity snapshot postgres://app@db/shop --out before.json
  backstop integrity snapshot ./data/app.db --out before.json --range-width 100000";

const COMPARE_HELP: &str = "Compare two snapshots, or a snapshot and a live database, or two live \
databases: the tables and key ranges that differ. Exit 0 when they are the same, 1 when they \
differ.

Examples:
  backstop integrity compare before.json postgres://app@db/shop
  backstop integrity compare postgres://app@primary/shop postgres://app@restored/shop -o json";

#[derive(clap::Subcommand)]
pub enum IntegrityCmd {
    /// Row counts and checksums (per table and per key range) of a database.
    #[command(long_about = SNAPSHOT_HELP)]
    Snapshot {
        /// The database: a `postgres://` URL or a SQLite file path.
        database: String,
        /// Write the snapshot here (JSON) as well.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Width of the ranges of an integer primary key.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
        range_width: u64,
        #[command(flatten)]
        out_args: OutputArgs,
    },
    /// What differs between two snapshots or databases (exit 1 when anything does).
    #[command(long_about = COMPARE_HELP)]
    Compare {
        /// A snapshot file or a database.
        a: String,
        /// A snapshot file or a database.
        b: String,
        /// Width of the ranges of an integer key, for a live database.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
        range_width: u64,
        #[command(flatten)]
        out_args: OutputArgs,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: String,
    pub engine: String,
    /// The database, without a password.
    pub database: String,
    pub taken_at: String,
    pub seconds: f64,
    pub tables: Vec<TableSum>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSum {
    pub table: String,
    pub rows: u64,
    pub checksum: String,
    /// The integer primary key the ranges are of; `None`: hash buckets.
    pub key: Option<String>,
    /// Width of the key ranges (`None` for buckets).
    pub range_width: Option<u64>,
    /// Range (`"10000..19999"`) or bucket (`"#17"`) to its rows and checksum.
    pub ranges: BTreeMap<String, Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub rows: u64,
    pub checksum: String,
}

/// A running sum: count and wrapping 128-bit sum of row hashes.
#[derive(Default, Clone, Copy)]
struct Sum {
    rows: u64,
    sum: u128,
}

impl Sum {
    fn add(&mut self, h: u128) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(h);
    }

    fn part(self) -> Part {
        Part {
            rows: self.rows,
            checksum: format!("{:032x}", self.sum),
        }
    }
}

fn row_hash(text: &str) -> u128 {
    let d = Sha256::digest(text.as_bytes());
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}

/// Where a part's rows go: the integer key's range, or a hash bucket.
fn part_of(key: Option<i64>, key_text: &str, width: u64) -> String {
    match key {
        Some(k) => {
            let w = i64::try_from(width).unwrap_or(i64::MAX);
            let start = k.div_euclid(w) * w;
            format!("{start}..{}", start.saturating_add(w - 1))
        }
        None => format!("#{}", (row_hash(key_text) % u128::from(BUCKETS))),
    }
}

/// A table's sums from its rows: `(integer key or None, key text, row text)`.
fn sum_rows(
    table: String,
    key: Option<String>,
    width: u64,
    rows: impl Iterator<Item = (Option<i64>, String, String)>,
) -> TableSum {
    let mut total = Sum::default();
    let mut parts: BTreeMap<String, Sum> = BTreeMap::new();
    let integer_key = key.is_some();
    for (k, key_text, row) in rows {
        let h = row_hash(&row);
        total.add(h);
        parts
            .entry(part_of(k, &key_text, width))
            .or_default()
            .add(h);
    }
    TableSum {
        table,
        rows: total.rows,
        checksum: total.part().checksum,
        range_width: integer_key.then_some(width),
        key,
        ranges: parts.into_iter().map(|(k, s)| (k, s.part())).collect(),
    }
}

enum Database {
    Postgres(String),
    Sqlite(PathBuf),
}

fn database(text: &str) -> Result<Database> {
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return Ok(Database::Postgres(text.to_string()));
    }
    let path = PathBuf::from(text.strip_prefix("sqlite:").unwrap_or(text));
    if !path.is_file() {
        bail!("{text}: neither a postgres:// URL nor a SQLite file (no such file)");
    }
    Ok(Database::Sqlite(path))
}

/// Takes a snapshot of a live database, telling `progress` each table as it is done.
pub async fn snapshot(
    text: &str,
    width: u64,
    mut progress: impl FnMut(&TableSum),
) -> Result<Snapshot> {
    let started = Instant::now();
    let (engine, shown, tables) = match database(text)? {
        Database::Postgres(url) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
                .with_context(|| {
                    format!("connecting to {}", backstop_store::postgres::redact(&url))
                })?;
            let tables = postgres_tables(&pool, width, &mut progress).await?;
            pool.close().await;
            ("postgres", backstop_store::postgres::redact(&url), tables)
        }
        Database::Sqlite(path) => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .read_only(true);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            let tables = sqlite_tables(&pool, width, &mut progress).await?;
            pool.close().await;
            ("sqlite", path.display().to_string(), tables)
        }
    };
    Ok(Snapshot {
        format: FORMAT.into(),
        engine: engine.into(),
        database: shown,
        taken_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        seconds: started.elapsed().as_secs_f64(),
        tables,
    })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn sqlite_tables(
    pool: &sqlx::SqlitePool,
    width: u64,
    progress: &mut impl FnMut(&TableSum),
) -> Result<Vec<TableSum>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for name in names {
        let columns = sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA table_info({})",
            quote_ident(&name)
        )))
        .fetch_all(pool)
        .await?;
        let cols: Vec<(String, String, i64)> = columns
            .iter()
            .map(|c| (c.get("name"), c.get::<String, _>("type"), c.get("pk")))
            .collect();
        let pks: Vec<&(String, String, i64)> = cols.iter().filter(|c| c.2 > 0).collect();
        let integer_key = match pks.as_slice() {
            [(name, ty, _)] if ty.eq_ignore_ascii_case("integer") => Some(name.clone()),
            _ => None,
        };
        let row_expr = cols
            .iter()
            .map(|c| format!("quote({})", quote_ident(&c.0)))
            .collect::<Vec<_>>()
            .join(" || char(31) || ");
        let key_expr = if pks.is_empty() {
            row_expr.clone()
        } else {
            pks.iter()
                .map(|c| format!("quote({})", quote_ident(&c.0)))
                .collect::<Vec<_>>()
                .join(" || char(31) || ")
        };
        let int_expr = integer_key
            .as_deref()
            .map_or("NULL".to_string(), quote_ident);
        let sql = format!(
            "SELECT {int_expr} AS k, {key_expr} AS kt, {row_expr} AS r FROM {}",
            quote_ident(&name)
        );
        let mut rows = Vec::new();
        let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
        while let Some(row) = stream.try_next().await? {
            rows.push((
                row.try_get::<Option<i64>, _>("k")?,
                row.try_get::<String, _>("kt")?,
                row.try_get::<String, _>("r")?,
            ));
        }
        let sum = sum_rows(name, integer_key, width, rows.into_iter());
        progress(&sum);
        out.push(sum);
    }
    Ok(out)
}

async fn postgres_tables(
    pool: &sqlx::PgPool,
    width: u64,
    progress: &mut impl FnMut(&TableSum),
) -> Result<Vec<TableSum>> {
    let names: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') \
         ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for (schema, name) in names {
        let qualified = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
        let pks: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY a.attnum",
        )
        .bind(&qualified)
        .fetch_all(pool)
        .await?;
        let integer_key = match pks.as_slice() {
            [(name, ty)] if matches!(ty.as_str(), "integer" | "bigint" | "smallint") => {
                Some(name.clone())
            }
            _ => None,
        };
        let key_expr = if pks.is_empty() {
            "t::text".to_string()
        } else {
            format!(
                "ROW({})::text",
                pks.iter()
                    .map(|p| format!("t.{}", quote_ident(&p.0)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let int_expr = integer_key
            .as_deref()
            .map_or("NULL::bigint".to_string(), |k| {
                format!("t.{}::bigint", quote_ident(k))
            });
        let sql =
            format!("SELECT {int_expr} AS k, {key_expr} AS kt, t::text AS r FROM {qualified} t");
        let mut rows = Vec::new();
        let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
        while let Some(row) = stream.try_next().await? {
            rows.push((
                row.try_get::<Option<i64>, _>("k")?,
                row.try_get::<String, _>("kt")?,
                row.try_get::<String, _>("r")?,
            ));
        }
        let shown = if schema == "public" {
            name
        } else {
            format!("{schema}.{name}")
        };
        let sum = sum_rows(shown, integer_key, width, rows.into_iter());
        progress(&sum);
        out.push(sum);
    }
    Ok(out)
}

/// What differs between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub same: bool,
    pub a: String,
    pub b: String,
    pub tables: Vec<TableDiff>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableDiff {
    pub table: String,
    /// `only_in_a`, `only_in_b`, or `differs`.
    pub what: String,
    pub rows_a: Option<u64>,
    pub rows_b: Option<u64>,
    /// The ranges (or buckets) whose rows or checksums differ, with their counts.
    pub ranges: Vec<RangeDiff>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RangeDiff {
    pub range: String,
    pub rows_a: u64,
    pub rows_b: u64,
}

#[must_use]
pub fn compare(a: &Snapshot, b: &Snapshot) -> Comparison {
    let by_name = |s: &Snapshot| -> BTreeMap<String, TableSum> {
        s.tables
            .iter()
            .map(|t| (t.table.clone(), t.clone()))
            .collect()
    };
    let (ta, tb) = (by_name(a), by_name(b));
    let mut tables = Vec::new();
    let names: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
    for name in names {
        match (ta.get(name), tb.get(name)) {
            (Some(x), None) => tables.push(TableDiff {
                table: name.clone(),
                what: "only_in_a".into(),
                rows_a: Some(x.rows),
                rows_b: None,
                ranges: vec![],
            }),
            (None, Some(y)) => tables.push(TableDiff {
                table: name.clone(),
                what: "only_in_b".into(),
                rows_a: None,
                rows_b: Some(y.rows),
                ranges: vec![],
            }),
            (Some(x), Some(y)) if x.rows != y.rows || x.checksum != y.checksum => {
                let keys: std::collections::BTreeSet<&String> =
                    x.ranges.keys().chain(y.ranges.keys()).collect();
                let ranges = keys
                    .into_iter()
                    .filter(|k| x.ranges.get(*k) != y.ranges.get(*k))
                    .map(|k| RangeDiff {
                        range: k.clone(),
                        rows_a: x.ranges.get(k).map_or(0, |p| p.rows),
                        rows_b: y.ranges.get(k).map_or(0, |p| p.rows),
                    })
                    .collect();
                tables.push(TableDiff {
                    table: name.clone(),
                    what: "differs".into(),
                    rows_a: Some(x.rows),
                    rows_b: Some(y.rows),
                    ranges,
                });
            }
            _ => {}
        }
    }
    Comparison {
        same: tables.is_empty(),
        a: a.database.clone(),
        b: b.database.clone(),
        tables,
    }
}

/// A snapshot file, or a snapshot taken now of a database.
async fn load(text: &str, width: u64) -> Result<Snapshot> {
    let path = Path::new(text);
    if path.is_file() && std::fs::read(path).is_ok_and(|b| b.first() == Some(&b'{')) {
        let bytes = std::fs::read(path)?;
        let snap: Snapshot = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}:{}: not an integrity snapshot: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        if snap.format != FORMAT {
            bail!(
                "{}: format {:?}, expected {FORMAT}",
                path.display(),
                snap.format
            );
        }
        return Ok(snap);
    }
    snapshot(text, width, report_progress).await
}

fn report_progress(t: &TableSum) {
    eprintln!("  {:<40} {:>12} rows", t.table, t.rows);
}

pub async fn run(cmd: IntegrityCmd) -> Result<i32> {
    match cmd {
        IntegrityCmd::Snapshot {
            database,
            out,
            range_width,
            out_args,
        } => {
            let snap = snapshot(&database, range_width, report_progress).await?;
            if let Some(path) = &out {
                let text = serde_json::to_string_pretty(&snap)? + "\n";
                backstop_drivers::config_files::write_atomic(path, text.as_bytes(), 0o644)?;
            }
            out_args.output.print(&snap);
            Ok(0)
        }
        IntegrityCmd::Compare {
            a,
            b,
            range_width,
            out_args,
        } => {
            let (sa, sb) = (load(&a, range_width).await?, load(&b, range_width).await?);
            if sa.engine != sb.engine {
                bail!(
                    "{a} is {} and {b} is {}: rows are hashed from each engine's own text, so only snapshots of one engine compare",
                    sa.engine,
                    sb.engine
                );
            }
            let c = compare(&sa, &sb);
            out_args.output.print(&c);
            Ok(i32::from(!c.same))
        }
    }
}

impl Render for Snapshot {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let rows: u64 = self.tables.iter().map(|t| t.rows).sum();
        writeln!(
            w,
            "{} ({}): {} tables, {rows} rows, in {:.2} s",
            self.database,
            self.engine,
            self.tables.len(),
            self.seconds
        )?;
        for t in &self.tables {
            writeln!(
                w,
                "  {:<40} {:>12} rows  {}  {} {}",
                t.table,
                t.rows,
                &t.checksum[..16],
                t.ranges.len(),
                if t.key.is_some() {
                    "key ranges"
                } else {
                    "hash buckets"
                }
            )?;
        }
        Ok(())
    }
}

impl Render for Comparison {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.same {
            return writeln!(w, "same: every table's rows and checksums match");
        }
        writeln!(w, "DIFFERENT ({} vs {}):", self.a, self.b)?;
        for t in &self.tables {
            match t.what.as_str() {
                "only_in_a" => writeln!(w, "  {}: only in {}", t.table, self.a)?,
                "only_in_b" => writeln!(w, "  {}: only in {}", t.table, self.b)?,
                _ => {
                    writeln!(
                        w,
                        "  {}: {} rows vs {}; differing ranges:",
                        t.table,
                        t.rows_a.unwrap_or(0),
                        t.rows_b.unwrap_or(0)
                    )?;
                    for r in &t.ranges {
                        writeln!(w, "    {:<24} {} rows vs {}", r.range, r.rows_a, r.rows_b)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(i64, &str)]) -> TableSum {
        sum_rows(
            "t".into(),
            Some("id".into()),
            10,
            rows.iter()
                .map(|(k, r)| (Some(*k), k.to_string(), (*r).to_string())),
        )
    }

    #[test]
    fn order_does_not_matter_but_every_row_and_duplicate_does() {
        let a = table(&[(1, "a"), (2, "b"), (15, "c")]);
        let b = table(&[(15, "c"), (1, "a"), (2, "b")]);
        assert_eq!(a, b);
        let dup = table(&[(1, "a"), (1, "a"), (2, "b"), (15, "c")]);
        assert_ne!(a.checksum, dup.checksum);
        let changed = table(&[(1, "a"), (2, "B"), (15, "c")]);
        assert_ne!(a.checksum, changed.checksum);
        assert_eq!(a.ranges["10..19"], changed.ranges["10..19"]);
        assert_ne!(a.ranges["0..9"], changed.ranges["0..9"]);
    }

    #[test]
    fn a_comparison_names_the_table_and_the_range() {
        let snap = |t: TableSum| Snapshot {
            format: FORMAT.into(),
            engine: "sqlite".into(),
            database: "x".into(),
            taken_at: String::new(),
            seconds: 0.0,
            tables: vec![t],
        };
        let a = snap(table(&[(1, "a"), (25, "b")]));
        let b = snap(table(&[(1, "a"), (25, "changed")]));
        let c = compare(&a, &b);
        assert!(!c.same);
        assert_eq!(c.tables[0].table, "t");
        assert_eq!(c.tables[0].ranges.len(), 1);
        assert_eq!(c.tables[0].ranges[0].range, "20..29");
        assert!(compare(&a, &a).same);
        assert_eq!(part_of(Some(-1), "", 10), "-10..-1");
    }
}
