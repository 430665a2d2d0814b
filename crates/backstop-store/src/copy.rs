//! Moving an embedded install to PostgreSQL: every row of a SQLite state database copied into
//! an empty PostgreSQL database, table by table in one transaction (all of it lands or none),
//! values as they were stored (JSON is text on both sides, so the audit chain's hashed evidence
//! is copied byte for byte), then the audit chain verified on the target.

use sqlx::{AssertSqlSafe, Row};

use crate::{PostgresStore, Result, SqliteStore, StoreError};

/// Every table of the store, parents before children (the order of the schemas).
pub const TABLES: &[&str] = &[
    "releases",
    "environments",
    "instances",
    "rollouts",
    "rollout_intervals",
    "events",
    "recoveries",
    "recovery_steps",
    "audit",
    "audit_head",
    "breaker_trips",
    "freezes",
    "config_snapshots",
    "rollout_safeguards",
    "drills",
    "tokens",
    "approvals",
    "incidents",
    "runbook_runs",
    "heartbeats",
    "verdict_labels",
    "flags",
    "release_groups",
    "group_runs",
    "ships",
    "alerts",
];

/// What a copy moved: rows per table, and the verified length of the audit chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopyReport {
    pub tables: Vec<TableCopy>,
    pub audit_records_verified: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TableCopy {
    pub table: String,
    pub rows: u64,
}

/// A column of the target table and how its values are carried.
struct Column {
    name: String,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Integer,
    Real,
    Text,
}

/// Copies everything in `from` into `to`, which must be empty. On any error nothing is left in
/// the target (one transaction). `progress` is told each table as it is done.
pub async fn sqlite_to_postgres(
    from: &SqliteStore,
    to: &PostgresStore,
    mut progress: impl FnMut(&TableCopy),
) -> Result<CopyReport> {
    refuse_non_empty(to).await?;
    let mut tx = to.pool.begin().await?;
    let mut tables = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let columns = target_columns(to, table).await?;
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let select = format!("SELECT {} FROM {table}", names.join(", "));
        let rows = sqlx::query(AssertSqlSafe(select))
            .fetch_all(&from.pool)
            .await
            .map_err(|e| {
                StoreError::Corrupt(format!(
                    "reading {table} from the state folder ({e}); is it from a Backstop this \
                     binary knows?"
                ))
            })?;
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        // `events.id` is an identity column: the copy keeps the ids the rows had.
        let overriding = if *table == "events" {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        };
        let insert = format!(
            "INSERT INTO {table} ({}){overriding} VALUES ({})",
            names.join(", "),
            placeholders.join(", ")
        );
        for row in &rows {
            let mut query = sqlx::query(AssertSqlSafe(insert.clone()));
            for (i, column) in columns.iter().enumerate() {
                query = match column.kind {
                    Kind::Integer => query.bind(row.try_get::<Option<i64>, _>(i)?),
                    // SQLite may store a whole number in a REAL column as an integer.
                    Kind::Real => query.bind(row.try_get::<Option<f64>, _>(i).or_else(|_| {
                        row.try_get::<Option<i64>, _>(i)
                            .map(|v| v.map(|v| v as f64))
                    })?),
                    Kind::Text => query.bind(row.try_get::<Option<String>, _>(i)?),
                };
            }
            query.execute(&mut *tx).await?;
        }
        if *table == "events" {
            sqlx::query(
                "SELECT setval(pg_get_serial_sequence('events', 'id'), \
                 COALESCE((SELECT max(id) FROM events), 0) + 1, false)",
            )
            .execute(&mut *tx)
            .await?;
        }
        let done = TableCopy {
            table: (*table).to_string(),
            rows: rows.len() as u64,
        };
        progress(&done);
        tables.push(done);
    }
    tx.commit().await?;
    let audit_records_verified = match crate::verify_audit(to).await? {
        Ok(n) => n,
        Err(broken) => {
            return Err(StoreError::Corrupt(format!(
                "the audit chain does not verify on the target after the copy: record {}: {}",
                broken.seq, broken.reason
            )));
        }
    };
    Ok(CopyReport {
        tables,
        audit_records_verified,
    })
}

/// `Conflict` naming a table that has rows: a copy goes into an empty database only.
async fn refuse_non_empty(to: &PostgresStore) -> Result<()> {
    for table in TABLES {
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&to.pool)
            .await?;
        if count > 0 {
            return Err(StoreError::Conflict(format!(
                "the target database is not empty (table {table} has {count} rows): copy into \
                 an empty database, nothing was written"
            )));
        }
    }
    Ok(())
}

/// The columns of `table` in the target, in order, with how each is carried.
async fn target_columns(to: &PostgresStore, table: &str) -> Result<Vec<Column>> {
    let rows = sqlx::query(
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&to.pool)
    .await?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get("column_name")?;
            let data_type: String = row.try_get("data_type")?;
            let kind = match data_type.as_str() {
                "bigint" | "integer" | "smallint" => Kind::Integer,
                "double precision" | "real" | "numeric" => Kind::Real,
                "text" | "character varying" => Kind::Text,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "{table}.{name} has type {other}, which a copy does not carry"
                    )));
                }
            };
            Ok(Column { name, kind })
        })
        .collect()
}
