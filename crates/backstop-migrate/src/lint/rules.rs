//! The rules, each answering: *if this release is rolled back while the previous version still
//! serves traffic, what goes wrong?* Severities follow `spec/migrations-check.md`.
//!
//! | rule | severity | when |
//! |---|---|---|
//! | `missing-down` | error | no down, not declared irreversible |
//! | `noop-down` | error | a down that does nothing (empty, comments, `SELECT 1`) |
//! | `destructive-drop-table`, `destructive-drop-column` | error | an up drops a table/column that existed before it |
//! | `destructive-truncate`, `destructive-delete`, `destructive-update` | error | an up truncates, or deletes/updates without WHERE, a table that existed before it |
//! | `down-destroys-existing-data` | error | a down drops, truncates or wipes what existed before its up |
//! | `down-discards-new-data` | warning | a down drops what its own up created: rows written since the deployment are lost |
//! | `down-incomplete` | warning | the down does not undo something the up did (the proof decides) |
//! | `breaking-rename-table`, `breaking-rename-column` | error | the previous version still uses the old name |
//! | `breaking-not-null-without-default` | error | the previous version's INSERTs do not set the new column |
//! | `breaking-new-constraint` | error | NOT NULL / CHECK / UNIQUE / FK / unique index on existing data |
//! | `breaking-type-change` | error | a column type narrows (known from earlier migrations) |
//! | `type-change` | warning | a column type changes and the old type is unknown |
//! | `irreversible` | warning | declared irreversible / forward-only: rollback plans refuse to cross it |
//! | `non-transactional` | warning | a statement that cannot run inside a transaction |

use std::collections::{HashMap, HashSet};

use super::parse::script_line;
use super::sql::{Op, Stmt, ops, statements};
use crate::model::{Engine, Finding, Migration, MigrationSet, Script, Severity, finding};

/// An op with the file line of its statement.
struct Located {
    op: Op,
    line: u32,
}

fn located(script: &Script, engine: Engine) -> Vec<Located> {
    let stmts: Vec<Stmt> = statements(&script.sql, engine).unwrap_or_default();
    stmts
        .iter()
        .flat_map(|s| {
            let line = script_line(script, s.line);
            ops(s).into_iter().map(move |op| Located { op, line })
        })
        .collect()
}

fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn col(table: &str, column: &str) -> (String, String) {
    (key(table), key(column))
}

/// `ALTER TABLE t RENAME TO t_old; CREATE TABLE t …; INSERT INTO t … SELECT … FROM t_old; DROP
/// TABLE t_old`: among `ops`, the original name is created again, filled, and the old copy
/// dropped. Without the copy it loses every row; without the drop it is a plain rename.
fn renamed_rebuild(ops: &[Located], original: &str, old_copy: &str) -> bool {
    let has = |f: &dyn Fn(&Op) -> bool| ops.iter().any(|l| f(&l.op));
    has(&|o| matches!(o, Op::CreateTable { table, .. } if key(table) == key(original)))
        && has(&|o| matches!(o, Op::Insert(t) if key(t) == key(original)))
        && has(&|o| matches!(o, Op::DropTable(t) if key(t) == key(old_copy)))
}

/// A column rebuilt in place (to restore column order, or change a type): `ADD COLUMN x_new …;
/// UPDATE t SET x_new = x; DROP COLUMN x; RENAME COLUMN x_new TO x`. Its values are copied, not
/// lost; without the copy it is a drop.
fn column_rebuilt(ops: &[Located], table: &str, column: &str) -> bool {
    ops.iter().any(|l| match &l.op {
        Op::RenameColumn { table: t, from, to }
            if key(t) == key(table) && key(to) == key(column) =>
        {
            ops.iter().any(|u| {
                matches!(&u.op, Op::Update { table: ut, set, .. }
                    if key(ut) == key(table) && set.iter().any(|c| key(c) == key(from)))
            })
        }
        _ => false,
    })
}

/// What an up (or down) creates, drops and rebuilds.
#[derive(Default)]
struct Effects {
    tables: HashSet<String>,
    columns: HashSet<(String, String)>,
    indexes: HashSet<String>,
    views: HashSet<String>,
    triggers: HashSet<String>,
    dropped_tables: HashSet<String>,
    dropped_columns: HashSet<(String, String)>,
    dropped_indexes: HashSet<String>,
    dropped_views: HashSet<String>,
    dropped_triggers: HashSet<String>,
    renamed_tables: HashSet<(String, String)>,
    renamed_columns: HashSet<(String, String, String)>,
    /// Tables dropped and put back under the same name (SQLite's 12-step table rebuild).
    rebuilt: HashSet<String>,
}

fn effects(ops: &[Located]) -> Effects {
    let mut e = Effects::default();
    for (i, l) in ops.iter().enumerate() {
        match &l.op {
            Op::CreateTable { table, columns } => {
                e.tables.insert(key(table));
                for (c, _) in columns {
                    e.columns.insert(col(table, c));
                }
            }
            Op::AddColumn { table, column, .. } => {
                e.columns.insert(col(table, column));
            }
            Op::CreateIndex { name: Some(n), .. } => {
                e.indexes.insert(key(n));
            }
            Op::CreateView(v) => {
                e.views.insert(key(v));
            }
            Op::CreateTrigger { name, .. } => {
                e.triggers.insert(key(name));
            }
            Op::DropTable(t) => {
                let later_back = ops[i + 1..]
                    .iter()
                    .any(|o| matches!(&o.op, Op::RenameTable { to, .. } if key(to) == key(t)))
                    || ops[i + 1..].iter().any(
                        |o| matches!(&o.op, Op::CreateTable { table, .. } if key(table) == key(t)),
                    );
                let created_before = ops[..i].iter().any(
                    |o| matches!(&o.op, Op::CreateTable { table, .. } if key(table) == key(t)),
                );
                // `ALTER TABLE t RENAME TO t_old; CREATE TABLE t …; copy; DROP TABLE t_old`:
                // the old copy of a rebuilt table.
                let old_copy = ops[..i].iter().find_map(|o| match &o.op {
                    Op::RenameTable { from, to }
                        if key(to) == key(t) && renamed_rebuild(ops, from, to) =>
                    {
                        Some(key(from))
                    }
                    _ => None,
                });
                if later_back {
                    e.rebuilt.insert(key(t));
                } else if let Some(original) = old_copy {
                    e.rebuilt.insert(original);
                } else if !created_before {
                    e.dropped_tables.insert(key(t));
                }
            }
            Op::DropColumn { table, column } => {
                e.dropped_columns.insert(col(table, column));
            }
            Op::DropIndex(n) => {
                e.dropped_indexes.insert(key(n));
            }
            Op::DropView(v) => {
                e.dropped_views.insert(key(v));
            }
            Op::DropTrigger(n) => {
                e.dropped_triggers.insert(key(n));
            }
            Op::RenameTable { from, to } => {
                e.renamed_tables.insert((key(from), key(to)));
                if renamed_rebuild(&ops[i + 1..], from, to) {
                    e.rebuilt.insert(key(from));
                }
            }
            Op::RenameColumn { table, from, to } => {
                e.renamed_columns.insert((key(table), key(from), key(to)));
            }
            _ => {}
        }
    }
    // A table created under a temporary name and renamed onto a rebuilt one is the rebuild.
    let temp: Vec<String> = e
        .renamed_tables
        .iter()
        .filter(|(_, to)| e.rebuilt.contains(to))
        .map(|(from, _)| from.clone())
        .collect();
    for t in temp {
        e.tables.remove(&t);
    }
    e
}

/// Column types known from earlier ups, to tell whether a type change narrows.
#[derive(Default)]
pub(crate) struct KnownTypes(HashMap<(String, String), String>);

impl KnownTypes {
    /// The columns known for `table`.
    fn columns_of(&self, table: &str) -> Vec<String> {
        let t = key(table);
        let mut v: Vec<String> = self
            .0
            .keys()
            .filter(|(kt, _)| *kt == t)
            .map(|(_, c)| c.clone())
            .collect();
        v.sort();
        v
    }

    fn forget_table(&mut self, table: &str) {
        let t = key(table);
        self.0.retain(|(kt, _), _| *kt != t);
    }

    fn learn(&mut self, ops: &[Located]) {
        for l in ops {
            match &l.op {
                Op::CreateTable { table, columns } => {
                    self.forget_table(table);
                    for (c, ty) in columns {
                        self.0.insert(col(table, c), ty.clone());
                    }
                }
                Op::DropTable(t) => self.forget_table(t),
                Op::RenameTable { from, to } => {
                    self.forget_table(to);
                    let moved: Vec<(String, String)> = self
                        .0
                        .iter()
                        .filter(|((t, _), _)| *t == key(from))
                        .map(|((_, c), ty)| (c.clone(), ty.clone()))
                        .collect();
                    self.forget_table(from);
                    for (c, ty) in moved {
                        self.0.insert(col(to, &c), ty);
                    }
                }
                Op::DropColumn { table, column } => {
                    self.0.remove(&col(table, column));
                }
                Op::RenameColumn { table, from, to } => {
                    if let Some(ty) = self.0.remove(&col(table, from)) {
                        self.0.insert(col(table, to), ty);
                    }
                }
                Op::AddColumn {
                    table, column, ty, ..
                }
                | Op::AlterType { table, column, ty } => {
                    self.0.insert(col(table, column), ty.clone());
                }
                _ => {}
            }
        }
    }
}

/// Integer width rank, text length limit or numeric precision of a type.
enum TypeShape {
    Int(u8),
    Text(Option<u64>),
    Numeric(Option<u64>, Option<u64>),
    Other(String),
}

fn shape(ty: &str) -> TypeShape {
    let t = ty.trim().to_ascii_lowercase();
    let (base, args) = match t.split_once('(') {
        Some((b, a)) => (b.trim().to_string(), a.trim_end_matches(')').to_string()),
        None => (t.clone(), String::new()),
    };
    let nums: Vec<u64> = args
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    match base.as_str() {
        "smallint" | "int2" => TypeShape::Int(1),
        "integer" | "int" | "int4" | "mediumint" => TypeShape::Int(2),
        "bigint" | "int8" => TypeShape::Int(3),
        "text" | "clob" => TypeShape::Text(None),
        "varchar" | "character varying" | "char" | "character" | "nvarchar"
        | "varying character" => TypeShape::Text(nums.first().copied()),
        "numeric" | "decimal" => TypeShape::Numeric(nums.first().copied(), nums.get(1).copied()),
        _ => TypeShape::Other(t),
    }
}

/// `Some(true)` when `new` can hold fewer values than `old`, `Some(false)` when it clearly holds
/// at least as many, `None` when the rules cannot tell.
fn narrows(old: &str, new: &str) -> Option<bool> {
    match (shape(old), shape(new)) {
        (TypeShape::Int(a), TypeShape::Int(b)) => Some(b < a),
        (TypeShape::Text(a), TypeShape::Text(b)) => Some(match (a, b) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => b < a,
            (_, None) => false,
        }),
        (TypeShape::Numeric(p1, s1), TypeShape::Numeric(p2, s2)) => Some(match (p1, p2) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => b < a || s2.unwrap_or(0) < s1.unwrap_or(0),
            (_, None) => false,
        }),
        (TypeShape::Int(_), TypeShape::Text(None)) => Some(false),
        (TypeShape::Int(_), TypeShape::Numeric(None, _)) => Some(false),
        (TypeShape::Text(_), TypeShape::Int(_) | TypeShape::Numeric(..)) => Some(true),
        (TypeShape::Numeric(..), TypeShape::Int(_)) => Some(true),
        (TypeShape::Other(a), TypeShape::Other(b)) if a == b => Some(false),
        _ => None,
    }
}

/// A down that does nothing: no statement other than `SELECT <constants>`.
fn is_noop(ops: &[Located]) -> bool {
    ops.iter().all(|l| l.op == Op::Trivial)
}

/// All findings of the rules for one migration (`known` holds the column types of earlier ups
/// and learns this one's).
pub(crate) fn lint_migration(
    m: &Migration,
    engine: Engine,
    known: &mut KnownTypes,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let up_ops = located(&m.up, engine);
    let up = effects(&up_ops);

    // Declared irreversibility and missing / no-op downs.
    let down_ops = m.down.as_ref().map(|d| (d, located(d, engine)));
    let declared = m.irreversible.is_some() || m.forward_only;
    if m.irreversible.as_deref() == Some(crate::model::UP_ONLY) {
        // Info here: the report says it once for the set (an up-only history is a choice).
        out.push(finding(
            Severity::Info,
            "irreversible",
            "has no down (a sqlx up-only migration): rollback plans refuse to cross it; add a \
             .down.sql to make it reversible"
                .into(),
            &m.up,
            None,
        ));
    } else if let Some(reason) = &m.irreversible {
        let why = if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        };
        let accept = if m.forward_only {
            "forward-only accepted"
        } else {
            "add `-- backstop:forward-only` to record that this is accepted"
        };
        out.push(finding(
            Severity::Warning,
            "irreversible",
            format!("declared irreversible{why}: rollback plans refuse to cross it; {accept}"),
            &m.up,
            None,
        ));
    } else if m.forward_only && m.down.is_none() {
        out.push(finding(
            Severity::Warning,
            "irreversible",
            "forward-only without a down: rollback plans refuse to cross it".into(),
            &m.up,
            None,
        ));
    }
    match &down_ops {
        None if !declared => out.push(finding(
            Severity::Error,
            "missing-down",
            "no down script: this migration cannot be rolled back (write a down, or declare \
             `-- backstop:irreversible <reason>`)"
                .into(),
            &m.up,
            None,
        )),
        // A no-op down is right for an up that does nothing either (`SELECT 1`, comments).
        Some((d, ops)) if is_noop(ops) && !declared && !is_noop(&up_ops) => out.push(finding(
            Severity::Error,
            "noop-down",
            "the down does nothing: a rollback would report success and leave the up's changes \
             in place"
                .into(),
            d,
            Some(d.line),
        )),
        _ => {}
    }

    // The up: destructive and breaking operations on what existed before it.
    let pre = |t: &str| !up.tables.contains(&key(t));
    for (idx, l) in up_ops.iter().enumerate() {
        let line = Some(l.line);
        let s = &m.up;
        match &l.op {
            Op::DropTable(t) if up.dropped_tables.contains(&key(t)) && pre(t) => out.push(finding(
                Severity::Error,
                "destructive-drop-table",
                format!(
                    "drops table {t}, which existed before this migration: its rows cannot come \
                     back with the down, and the previous version still reads it"
                ),
                s,
                line,
            )),
            Op::DropColumn { table, column }
                if pre(table)
                    && !up.columns.contains(&col(table, column))
                    && !column_rebuilt(&up_ops, table, column) =>
            {
                out.push(finding(
                    Severity::Error,
                    "destructive-drop-column",
                    format!(
                        "drops column {table}.{column}, which existed before this migration: its \
                         values cannot come back with the down, and the previous version still \
                         reads it"
                    ),
                    s,
                    line,
                ));
            }
            Op::Truncate(t) if pre(t) => out.push(finding(
                Severity::Error,
                "destructive-truncate",
                format!(
                    "truncates {t}: rows that existed before the up cannot come back with the down"
                ),
                s,
                line,
            )),
            Op::Delete {
                table,
                has_where: false,
            } if pre(table) => out.push(finding(
                Severity::Error,
                "destructive-delete",
                format!(
                    "deletes every row of {table} (no WHERE): they cannot come back with the down"
                ),
                s,
                line,
            )),
            // A backfill of columns this up added destroys nothing.
            Op::Update {
                table,
                has_where: false,
                set,
            } if pre(table)
                && (set.is_empty() || !set.iter().all(|c| up.columns.contains(&col(table, c)))) =>
            {
                out.push(finding(
                    Severity::Error,
                    "destructive-update",
                    format!(
                        "updates every row of {table} (no WHERE): the old values cannot come back \
                     with the down"
                    ),
                    s,
                    line,
                ));
            }
            // Existed before the up: not created earlier in it (a table of the same name created
            // after the rename is a new one).
            Op::RenameTable { from, to }
                if !up_ops[..idx].iter().any(
                    |o| matches!(&o.op, Op::CreateTable { table, .. } if key(table) == key(from)),
                ) && !up.rebuilt.contains(&key(from))
                    && !up.rebuilt.contains(&key(to)) =>
            {
                out.push(finding(
                    Severity::Error,
                    "breaking-rename-table",
                    format!(
                        "renames table {from}: the previous version, still serving traffic, \
                         queries it by its old name (expand: add a view or copy, contract later)"
                    ),
                    s,
                    line,
                ));
            }
            // A column added earlier in this script (`x_new` of a rebuild) is nobody's yet.
            Op::RenameColumn { table, from, to }
                if pre(table) && !up.columns.contains(&col(table, from)) =>
            {
                out.push(finding(
                Severity::Error,
                "breaking-rename-column",
                format!(
                    "renames column {table}.{from} to {to}: the previous version still reads and \
                     writes {from} (expand: add {to}, backfill, drop {from} in a later release)"
                ),
                s,
                line,
            ));
            }
            Op::AddColumn {
                table,
                column,
                not_null: true,
                has_default: false,
                ..
            } if pre(table) => out.push(finding(
                Severity::Error,
                "breaking-not-null-without-default",
                format!(
                    "adds NOT NULL column {table}.{column} without a default: it fails on a table \
                     with rows, and the previous version's INSERTs do not set it"
                ),
                s,
                line,
            )),
            Op::SetNotNull { table, column } if pre(table) => out.push(finding(
                Severity::Error,
                "breaking-new-constraint",
                format!(
                    "sets {table}.{column} NOT NULL: existing NULLs make the up fail, and the \
                     previous version may still write NULL"
                ),
                s,
                line,
            )),
            Op::AddConstraint { table, kind }
                if pre(table) && !up.rebuilt.contains(&key(table)) =>
            {
                out.push(finding(
                    Severity::Error,
                    "breaking-new-constraint",
                    format!(
                        "adds a {kind} constraint to existing table {table}: existing rows may \
                         violate it, and the previous version's writes may be rejected"
                    ),
                    s,
                    line,
                ));
            }
            Op::CreateIndex {
                name,
                table,
                unique: true,
            } if pre(table) && !up.views.contains(&key(table)) => out.push(finding(
                Severity::Error,
                "breaking-new-constraint",
                format!(
                    "adds unique index {} to existing table {table}: duplicates in existing rows \
                     make the up fail, and the previous version's writes may be rejected",
                    name.as_deref().unwrap_or("(unnamed)")
                ),
                s,
                line,
            )),
            Op::AlterType { table, column, ty } if pre(table) => {
                match known
                    .0
                    .get(&col(table, column))
                    .map(|old| (old.clone(), narrows(old, ty)))
                {
                    Some((old, Some(true))) => out.push(finding(
                        Severity::Error,
                        "breaking-type-change",
                        format!(
                            "changes {table}.{column} from {old} to {ty}, which holds fewer \
                             values: existing rows may not fit and the previous version may \
                             write values that no longer fit"
                        ),
                        s,
                        line,
                    )),
                    Some((_, Some(false))) => {}
                    Some((old, None)) => out.push(finding(
                        Severity::Warning,
                        "type-change",
                        format!(
                            "changes {table}.{column} from {old} to {ty}: check that the \
                             previous version reads and writes the new type"
                        ),
                        s,
                        line,
                    )),
                    None => out.push(finding(
                        Severity::Warning,
                        "type-change",
                        format!(
                            "changes the type of {table}.{column} to {ty} (its old type is not \
                             known here): check that it does not narrow"
                        ),
                        s,
                        line,
                    )),
                }
            }
            _ => {}
        }
    }
    out.extend(rebuild_drops(&m.up, &up_ops, &up, known));
    known.learn(&up_ops);

    // Statements that cannot run in a transaction, in any script.
    let scripts = std::iter::once((&m.up, &up_ops)).chain(down_ops.iter().map(|(d, o)| (*d, o)));
    for (s, ops) in scripts {
        for l in ops.iter() {
            if let Op::NonTransactional(what) = &l.op {
                let hint = if m.no_transaction {
                    "the migration runs without a transaction: a failure halfway leaves it \
                     partly applied"
                } else {
                    "mark the migration `-- no-transaction` (or your tool's equivalent), or it \
                     fails inside the migration's transaction"
                };
                out.push(finding(
                    Severity::Warning,
                    "non-transactional",
                    format!("{what} cannot run inside a transaction; {hint}"),
                    s,
                    Some(l.line),
                ));
            }
        }
    }

    // The down: what it destroys, and what it forgets to undo.
    if let Some((d, ops)) = &down_ops {
        let down = effects(ops);
        // The up's own tables and columns, under the names the up left them with (a table it
        // renamed keeps what it added).
        let up_names = |t: &str| -> Vec<String> {
            let mut names = vec![key(t)];
            names.extend(
                up.renamed_tables
                    .iter()
                    .filter(|(_, to)| *to == key(t))
                    .map(|(from, _)| from.clone()),
            );
            names
        };
        let own_table = |t: &str| up_names(t).iter().any(|n| up.tables.contains(n));
        let own_column =
            |t: &str, c: &str| up_names(t).iter().any(|n| up.columns.contains(&col(n, c)));
        let up_updated: HashSet<(String, String)> = up_ops
            .iter()
            .filter_map(|l| match &l.op {
                Op::Update {
                    table,
                    set,
                    has_where: false,
                } => Some(set.iter().map(move |c| col(table, c))),
                _ => None,
            })
            .flatten()
            .collect();
        for l in ops.iter() {
            let line = Some(l.line);
            let (target, what) = match &l.op {
                Op::DropTable(t) if down.dropped_tables.contains(&key(t)) => {
                    (Some((t.clone(), None)), format!("drops table {t}"))
                }
                Op::DropColumn { table, column } => (
                    Some((table.clone(), Some(column.clone()))),
                    format!("drops column {table}.{column}"),
                ),
                Op::Truncate(t) => (Some((t.clone(), None)), format!("truncates {t}")),
                Op::Delete {
                    table,
                    has_where: false,
                } => (
                    Some((table.clone(), None)),
                    format!("deletes every row of {table}"),
                ),
                Op::Update {
                    table,
                    has_where: false,
                    ..
                } => (
                    Some((table.clone(), None)),
                    format!("updates every row of {table}"),
                ),
                _ => (None, String::new()),
            };
            let Some((table, column)) = target else {
                continue;
            };
            let created_by_down = down.tables.contains(&key(&table));
            if created_by_down {
                continue;
            }
            // Writing back the columns the up overwrote (or added) restores, not destroys; so
            // does filling columns the down itself adds (a column-order rebuild's `x_new`).
            if let Op::Update { set, .. } = &l.op
                && !set.is_empty()
                && set.iter().all(|c| {
                    let c = col(&table, c);
                    up_updated.contains(&c) || up.columns.contains(&c) || down.columns.contains(&c)
                })
            {
                continue;
            }
            if let Op::DropColumn { table, column } = &l.op
                && column_rebuilt(ops, table, column)
            {
                continue;
            }
            let own = own_table(&table) || column.as_ref().is_some_and(|c| own_column(&table, c));
            let is_drop = matches!(l.op, Op::DropTable(_) | Op::DropColumn { .. });
            if own && is_drop {
                out.push(finding(
                    Severity::Warning,
                    "down-discards-new-data",
                    format!(
                        "{what}, created by its up: expected, but data written since the \
                         deployment is lost on rollback (copy it out first, or keep it until a \
                         later contract step)"
                    ),
                    d,
                    line,
                ));
            } else if !own {
                out.push(finding(
                    Severity::Error,
                    "down-destroys-existing-data",
                    format!(
                        "{what}, which existed before the up: a rollback destroys data the \
                         previous version needs"
                    ),
                    d,
                    line,
                ));
            }
        }
        if !declared {
            for missing in forgotten(&up, &down) {
                out.push(finding(
                    Severity::Warning,
                    "down-incomplete",
                    format!("the up {missing}, but the down does not undo it"),
                    d,
                    None,
                ));
            }
        }
    }
    out
}

/// SQLite drops a column by rebuilding its table (create the new shape, copy, drop, rename):
/// columns the table had before (known from earlier ups) that the new shape lacks are dropped,
/// and reported like `DROP COLUMN`.
fn rebuild_drops(s: &Script, ops: &[Located], up: &Effects, known: &KnownTypes) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut rebuilt: Vec<&String> = up.rebuilt.iter().collect();
    rebuilt.sort();
    for t in rebuilt {
        // The new shape: `CREATE TABLE t` itself, or the table renamed onto t.
        let shape = ops.iter().find_map(|l| match &l.op {
            Op::CreateTable { table, columns } if key(table) == *t => Some((columns, l.line)),
            Op::CreateTable { table, columns }
                if up.renamed_tables.contains(&(key(table), t.clone())) =>
            {
                Some((columns, l.line))
            }
            _ => None,
        });
        let Some((columns, line)) = shape else {
            continue;
        };
        if columns.is_empty() {
            continue;
        }
        for c in known.columns_of(t) {
            if !columns.iter().any(|(n, _)| key(n) == c) {
                out.push(finding(
                    Severity::Error,
                    "destructive-drop-column",
                    format!(
                        "rebuilds table {t} without column {c}, which existed before this \
                         migration: this drops it, its values cannot come back with the down, \
                         and the previous version still reads it"
                    ),
                    s,
                    Some(line),
                ));
            }
        }
    }
    out
}

/// What the up did that the down neither undoes directly nor by dropping or rebuilding the table.
fn forgotten(up: &Effects, down: &Effects) -> Vec<String> {
    let gone = |t: &String| {
        down.dropped_tables.contains(t)
            || down.rebuilt.contains(t)
            || down.renamed_tables.iter().any(|(from, _)| from == t)
    };
    let mut out = Vec::new();
    let mut tables: Vec<&String> = up
        .tables
        .iter()
        .filter(|t| !up.rebuilt.contains(*t))
        .collect();
    tables.sort();
    for t in tables {
        if !gone(t) {
            out.push(format!("creates table {t}"));
        }
    }
    let mut cols: Vec<&(String, String)> = up
        .columns
        .iter()
        .filter(|(t, _)| !up.tables.contains(t))
        .collect();
    cols.sort();
    for (t, c) in cols {
        if !gone(t) && !down.dropped_columns.contains(&(t.clone(), c.clone())) {
            out.push(format!("adds column {t}.{c}"));
        }
    }
    let mut simple = |created: &HashSet<String>, dropped: &HashSet<String>, what: &str| {
        let mut v: Vec<&String> = created.iter().filter(|n| !dropped.contains(*n)).collect();
        v.sort();
        for n in v {
            out.push(format!("creates {what} {n}"));
        }
    };
    // Indexes, views and triggers on a table the down drops go with it; only named ones on tables
    // that stay are checked (their table is unknown here, so only when no table is dropped).
    if down.dropped_tables.is_empty() && down.rebuilt.is_empty() {
        simple(&up.indexes, &down.dropped_indexes, "index");
        simple(&up.triggers, &down.dropped_triggers, "trigger");
    }
    simple(&up.views, &down.dropped_views, "view");
    for (from, to) in &up.renamed_tables {
        if !down.renamed_tables.contains(&(to.clone(), from.clone())) {
            out.push(format!("renames table {from} to {to}"));
        }
    }
    for (t, from, to) in &up.renamed_columns {
        if !down.renamed_columns.iter().any(|(dt, dfrom, dto)| {
            dfrom == to
                && dto == from
                && (dt == t || up.renamed_tables.iter().any(|(_, nt)| nt == dt))
        }) {
            out.push(format!("renames column {t}.{from} to {to}"));
        }
    }
    out
}

/// The script writes rows (INSERT, UPDATE, DELETE, TRUNCATE): a data change no schema
/// fingerprint shows.
pub(crate) fn writes_data(script: &Script, engine: Engine) -> bool {
    // One pass over the statements: their ops, else their first word.
    statements(&script.sql, engine)
        .unwrap_or_default()
        .iter()
        .any(|s| {
            if ops(s).iter().any(|op| {
                matches!(
                    op,
                    Op::Insert(_) | Op::Update { .. } | Op::Delete { .. } | Op::Truncate(_)
                )
            }) {
                return true;
            }
            let Some(super::sql::Tok::Word(first)) = s.toks.first() else {
                return false;
            };
            match first.as_str() {
                // Statements whose effect no catalog fingerprint shows: data written through
                // a procedure, COPY or MERGE; privileges, comments, ownership.
                "call" | "copy" | "merge" | "grant" | "revoke" | "comment" | "security"
                | "reassign" => true,
                // A CTE or a block writes when its text says so (a read-only `DO` assertion
                // does not).
                "with" | "do" => {
                    let text = script
                        .sql
                        .get(s.start..s.end)
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                        .any(|w| {
                            matches!(
                                w,
                                "insert"
                                    | "update"
                                    | "delete"
                                    | "truncate"
                                    | "merge"
                                    | "execute"
                                    | "copy"
                                    | "grant"
                                    | "revoke"
                                    | "comment"
                            )
                        })
                }
                _ => false,
            }
        })
}

/// The rule findings of every migration of `set`, one list per migration, in order.
pub fn lint_set(set: &MigrationSet, engine: Engine) -> Vec<Vec<Finding>> {
    let mut known = KnownTypes::default();
    set.migrations
        .iter()
        .map(|m| lint_migration(m, engine, &mut known))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_is_recognised() {
        assert_eq!(narrows("bigint", "integer"), Some(true));
        assert_eq!(narrows("integer", "bigint"), Some(false));
        assert_eq!(narrows("varchar(200)", "varchar(50)"), Some(true));
        assert_eq!(narrows("text", "varchar(50)"), Some(true));
        assert_eq!(narrows("varchar(50)", "text"), Some(false));
        assert_eq!(narrows("numeric(10,2)", "numeric(10,0)"), Some(true));
        assert_eq!(narrows("text", "integer"), Some(true));
        assert_eq!(narrows("timestamp", "jsonb"), None);
    }
}
