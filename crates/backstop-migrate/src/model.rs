//! The nouns every part of the checker shares: a migration set read from disk, and findings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The database engine migrations are written for and proven on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The on-disk convention a migration set was written in (detected from its files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `{version}_{name}.up.sql` + `{version}_{name}.down.sql` (golang-migrate, sqlx reversible).
    Paired,
    /// `{version}_{name}/up.sql` + `down.sql`.
    Diesel,
    /// `{version}_{name}.sql`, up only.
    SqlxSingle,
    /// `V{version}__{desc}.sql` + `U{version}__{desc}.sql`.
    Flyway,
    /// `sqitch.plan` + `deploy/`, `revert/`, `verify/`.
    Sqitch,
    /// One file per migration with `-- +goose Up` / `-- +goose Down`.
    Goose,
    /// One file per migration with `-- migrate:up` / `-- migrate:down`.
    Dbmate,
    /// Liquibase formatted SQL: `--changeset` blocks with `--rollback`.
    Liquibase,
}

/// Where a migration stands in an expand/contract schema change. Rollback plans use it: a
/// release can roll back across an expand (the old app ignores what was added) but not across a
/// contract or an irreversible step without running a proven down first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Expand,
    Backfill,
    Contract,
    Irreversible,
}

/// One SQL script and where it came from, so findings and parse errors can name `file:line`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    /// Path relative to the migration set's folder, e.g. `0002_city.down.sql`.
    pub file: PathBuf,
    /// 1-based line in `file` where `sql` starts (files holding several sections start later).
    pub line: u32,
    pub sql: String,
}

/// One migration: an up, maybe a down (and a sqitch verify), and what its author declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// As written in the file name or plan, e.g. `0002`, `20240101120000`, `1.1`.
    pub version: String,
    pub name: String,
    pub up: Script,
    pub down: Option<Script>,
    pub verify: Option<Script>,
    /// `-- backstop:irreversible [reason]` (or a layout's own way of saying so, e.g. Liquibase
    /// `--rollback not required`): no down is expected; rollback plans refuse to cross it.
    pub irreversible: Option<String>,
    /// `-- backstop:forward-only`: the irreversibility is accepted (a warning, not an error).
    pub forward_only: bool,
    /// `-- backstop:phase expand|backfill|contract|irreversible`.
    pub phase: Option<Phase>,
    /// `-- no-transaction` (sqlx) / `-- +goose NO TRANSACTION` / `transaction:false` (dbmate):
    /// the scripts cannot run inside a transaction.
    pub no_transaction: bool,
}

/// A whole migration set, in apply order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationSet {
    pub dir: PathBuf,
    pub layout: Layout,
    pub migrations: Vec<Migration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// One thing worth knowing about a migration, in the JSON shape of the spec:
/// `{"severity":"error","rule":"proof-schema-differs","message":"…","file":"0002_city.down.sql","line":null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable kebab-case rule id, e.g. `missing-down`, `proof-schema-differs`, `drop-column`.
    pub rule: String,
    pub message: String,
    pub file: Option<PathBuf>,
    pub line: Option<u32>,
}

/// A finding about `script` (the lints' and the proof's), at `line` of it when known.
pub(crate) fn finding(
    severity: Severity,
    rule: &str,
    message: String,
    script: &Script,
    line: Option<u32>,
) -> Finding {
    Finding {
        severity,
        rule: rule.to_string(),
        message,
        file: Some(script.file.clone()),
        line,
    }
}

/// Input that cannot be checked at all (exit code 2): the place and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct InputError {
    pub file: PathBuf,
    pub line: Option<u32>,
    pub message: String,
}
