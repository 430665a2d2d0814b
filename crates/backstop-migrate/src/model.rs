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
    /// [`UP_ONLY`] for a sqlx up-only file, which declares nothing but cannot have a down.
    pub irreversible: Option<String>,
    /// `-- backstop:forward-only`: the irreversibility is accepted (a warning, not an error).
    pub forward_only: bool,
    /// `-- backstop:phase expand|backfill|contract|irreversible`.
    pub phase: Option<Phase>,
    /// `-- no-transaction` (sqlx) / `-- +goose NO TRANSACTION` / `transaction:false` (dbmate):
    /// the scripts cannot run inside a transaction.
    pub no_transaction: bool,
    /// Findings its author accepted: `-- backstop:allow RULE[,RULE] reason` and
    /// `-- safety-assured:start` … `-- safety-assured:end` blocks.
    #[serde(default)]
    pub allows: Vec<Allow>,
}

/// Findings accepted in a script: the rules named (every lint rule when empty) at the lines
/// given (the whole script when `None`), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allow {
    pub file: PathBuf,
    pub rules: Vec<String>,
    /// First and last file line covered.
    pub lines: Option<(u32, u32)>,
    pub reason: String,
}

impl Allow {
    /// Does it cover `f`? A rule-less block (`safety-assured`) covers lint findings only: the
    /// proof's findings are facts about the database, accepted only by naming their rule.
    pub fn covers(&self, f: &Finding) -> bool {
        if f.file.as_ref() != Some(&self.file) {
            return false;
        }
        let rule_ok = if self.rules.is_empty() {
            is_lint_rule(&f.rule)
        } else {
            self.rules.contains(&f.rule)
        };
        let line_ok = match (self.lines, f.line) {
            (None, _) => true,
            (Some((from, to)), Some(l)) => (from..=to).contains(&l),
            (Some(_), None) => false,
        };
        rule_ok && line_ok
    }
}

/// Rules about what a script's text says (as opposed to what the proof saw the database do, or
/// checksums).
pub fn is_lint_rule(rule: &str) -> bool {
    !(rule.starts_with("proof-")
        || rule.starts_with("checksum")
        || matches!(
            rule,
            "up-failed"
                | "down-failed"
                | "reapply-failed"
                | "verify-failed"
                | "not-proven"
                | "missing-extension"
                | "ignored-file"
        ))
}

/// The [`Migration::irreversible`] of a sqlx up-only migration: its layout has no place for a
/// down, so it passes without a proof, but nobody declared it irreversible ("has no down").
pub const UP_ONLY: &str = "sqlx up-only migration";

impl Migration {
    /// Its author said so (`backstop:irreversible`, a phase, a layout's own marker), as opposed
    /// to a layout without a down.
    pub fn declared_irreversible(&self) -> bool {
        self.irreversible.as_deref().is_some_and(|r| r != UP_ONLY)
    }
}

/// A whole migration set, in apply order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationSet {
    pub dir: PathBuf,
    pub layout: Layout,
    pub migrations: Vec<Migration>,
    /// What reading the folder noticed and set aside (e.g. a loose `.sql` file beside diesel
    /// folders, which diesel itself ignores): info findings about the set.
    #[serde(default)]
    pub notes: Vec<Finding>,
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
