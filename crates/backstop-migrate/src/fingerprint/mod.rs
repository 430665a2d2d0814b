//! Catalog fingerprints: the schema of a scratch database as sorted rows
//! `kind|identity|definition` plus their SHA-256, and a structured diff between two of them that
//! says in words what differs. Read from the engine's catalog (SQLite pragmas, PostgreSQL
//! `pg_catalog`), never from dump text, so quoting, formatting and dropped-column slots do not count.

pub mod postgres;
pub mod sqlite;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::Engine;

/// Names of the history tables migration tools keep; never part of a fingerprint.
pub const HISTORY_TABLES: [&str; 9] = [
    "_sqlx_migrations",
    "schema_migrations",
    "__diesel_schema_migrations",
    "flyway_schema_history",
    "goose_db_version",
    "databasechangelog",
    "databasechangeloglock",
    "schema_version",
    "seaql_migrations",
];

/// One schema object (or one part of one, e.g. a column) as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogRow {
    /// `table`, `column`, `index`, `constraint`, `trigger`, `view`, `materialized view`,
    /// `sequence`, `type`, `function`, `aggregate`, `schema`, `extension`, `policy`, `pragma`, ...
    pub kind: String,
    /// The object's name, qualified: `users`, `users.email` (SQLite); `public.users.email` (PostgreSQL).
    pub identity: String,
    /// Named properties in a fixed order, e.g. `pos=2`, `type=text`, `notnull=true`.
    pub fields: Vec<(String, String)>,
    /// The table a column, index, constraint or trigger belongs to (same spelling as that
    /// table's identity), so a missing table is reported once rather than once per column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

impl CatalogRow {
    pub fn new(kind: &str, identity: impl Into<String>) -> Self {
        CatalogRow {
            kind: kind.to_string(),
            identity: identity.into(),
            fields: Vec::new(),
            table: None,
        }
    }

    /// Adds a field (builder style).
    pub fn field(mut self, name: &str, value: impl Into<String>) -> Self {
        self.fields.push((name.to_string(), value.into()));
        self
    }

    pub fn in_table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `k=v` pairs joined by spaces.
    pub fn definition(&self) -> String {
        self.fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The row as fingerprinted: `kind|identity|definition`.
    pub fn line(&self) -> String {
        format!("{}|{}|{}", self.kind, self.identity, self.definition())
    }
}

/// A database schema as sorted catalog rows and their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    pub engine: Engine,
    /// Sorted by (kind, identity).
    pub rows: Vec<CatalogRow>,
    /// Hex SHA-256 of the rows' lines, each followed by `\n`.
    pub sha256: String,
}

impl Fingerprint {
    /// Sorts the rows and computes the hash.
    pub fn new(engine: Engine, mut rows: Vec<CatalogRow>) -> Self {
        rows.sort_by(|a, b| {
            (&a.kind, &a.identity, a.definition()).cmp(&(&b.kind, &b.identity, b.definition()))
        });
        rows.dedup();
        let mut hasher = Sha256::new();
        for r in &rows {
            hasher.update(r.line().as_bytes());
            hasher.update(b"\n");
        }
        let sha256 = hex::encode(hasher.finalize());
        Fingerprint {
            engine,
            rows,
            sha256,
        }
    }

    /// The rows as `kind|identity|definition` lines, sorted.
    pub fn lines(&self) -> Vec<String> {
        self.rows.iter().map(CatalogRow::line).collect()
    }

    /// What differs from `self` (expected) to `actual`. Empty exactly when the hashes are equal.
    pub fn diff(&self, actual: &Fingerprint) -> Vec<Difference> {
        diff(self, actual)
    }
}

/// Whether a difference changes what the schema means, or only how columns are laid out
/// (column order matters to `SELECT *`, positional `INSERT` and `COPY`, not to named access).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Drift {
    Semantic,
    Layout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub expected: String,
    pub actual: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    /// Expected, not there.
    Missing,
    /// There, not expected.
    Extra,
    /// There with other properties.
    Changed { fields: Vec<FieldChange> },
    /// A column whose place among the table's columns differs (1-based positions).
    Moved { expected: u32, actual: u32 },
}

/// One object that differs between two fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub kind: String,
    pub identity: String,
    pub drift: Drift,
    #[serde(flatten)]
    pub change: Change,
}

/// Which comparison of the up → down → up proof a difference comes from; it picks the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The schema after the down, compared with the schema before the up.
    AfterDown,
    /// The schema after the second up, compared with the schema after the first.
    AfterReapply,
}

impl Difference {
    /// One sentence, e.g. `after down: index users_name remains`,
    /// `after down: column users.email moved from position 2 to 3 (…)`.
    pub fn describe(&self, stage: Stage) -> String {
        let what = format!("{} {}", self.kind, display_identity(&self.identity));
        let (prefix, reference) = match stage {
            Stage::AfterDown => ("after down", "before the up"),
            Stage::AfterReapply => ("after the second up", "after the first up"),
        };
        let body = match (&self.change, stage) {
            (Change::Missing, Stage::AfterDown) => {
                format!("{what} is missing (it existed before the up)")
            }
            (Change::Missing, Stage::AfterReapply) => {
                format!("{what} is missing (the first up created it)")
            }
            (Change::Extra, Stage::AfterDown) => format!("{what} remains"),
            (Change::Extra, Stage::AfterReapply) => {
                format!("{what} exists (the first up did not create it)")
            }
            (Change::Changed { fields }, _) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|f| {
                        if f.field == "def" && (f.expected.len() > 60 || f.actual.len() > 60) {
                            return definition_diff(&f.expected, &f.actual, reference);
                        }
                        format!(
                            "{} was {} {reference}, is {} now",
                            field_label(&f.field),
                            field_value(&f.field, &f.expected),
                            field_value(&f.field, &f.actual)
                        )
                    })
                    .collect();
                format!("{what}: {}", parts.join("; "))
            }
            (Change::Moved { expected, actual }, _) => format!(
                "{what} moved from position {expected} to {actual} (column order differs: layout drift \
                 for SELECT *, positional INSERT and COPY)"
            ),
        };
        format!("{prefix}: {body}")
    }
}

/// Two long definitions (views, functions, triggers) as a unified diff: a function body by its own
/// lines, a one-line definition one clause per line. When they differ only in a quoted literal,
/// say that the definition embeds a value fixed when it was created (`'now'::timestamp` becomes the creation time in a view's stored text).
fn definition_diff(expected: &str, actual: &str, reference: &str) -> String {
    let multi_line = expected.contains('\n') || actual.contains('\n');
    let lines = |def: &str| -> String {
        if multi_line {
            // A function body keeps its own lines.
            let mut out: String = def.lines().map(|l| format!("{}\n", l.trim_end())).collect();
            if out.is_empty() {
                out.push('\n');
            }
            return out;
        }
        let mut out = String::new();
        for word in def.split_whitespace() {
            let breaks = matches!(
                word.to_ascii_lowercase().as_str(),
                "select"
                    | "from"
                    | "where"
                    | "join"
                    | "left"
                    | "union"
                    | "group"
                    | "order"
                    | "having"
                    | "begin"
                    | "end;"
                    | "returns"
                    | "language"
                    | "as"
            );
            if breaks && !out.is_empty() {
                out.push('\n');
            } else if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
        out.push('\n');
        out
    };
    // The text outside quotes, and the quoted literals (comments left out: an apostrophe in
    // `-- don't` opens no literal).
    let split = |def: &str| -> (String, Vec<String>) {
        let mut outside = String::new();
        let mut literals = Vec::new();
        for line in def.lines() {
            let mut in_quote = false;
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                if !in_quote && c == '-' && chars.peek() == Some(&'-') {
                    break;
                }
                if c == '\'' {
                    in_quote = !in_quote;
                    outside.push(c);
                    if in_quote {
                        literals.push(String::new());
                    }
                } else if in_quote {
                    if let Some(l) = literals.last_mut() {
                        l.push(c);
                    }
                } else {
                    outside.push(c);
                }
            }
            outside.push('\n');
        }
        (outside, literals)
    };
    let is_time = |l: &str| {
        let b = l.as_bytes();
        b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
    };
    let (e, a) = (lines(expected), lines(actual));
    let diff = similar::TextDiff::from_lines(&e, &a)
        .unified_diff()
        .context_radius(1)
        .header(reference, "now")
        .to_string();
    let ((e_out, e_lit), (a_out, a_lit)) = (split(expected), split(actual));
    let constant = if e_out != a_out || e_lit.len() != a_lit.len() {
        ""
    } else if e_lit
        .iter()
        .zip(&a_lit)
        .filter(|(x, y)| x != y)
        .all(|(x, y)| is_time(x) && is_time(y))
    {
        " (only a timestamp literal differs: the definition embeds a time fixed when it was \
         created, such as 'now'::timestamp; compute it at query time instead, e.g. now())"
    } else {
        " (only a quoted literal differs)"
    };
    format!("definition differs{constant}:\n{}", diff.trim_end())
}

/// `public.users` reads as `users`; other schemas stay.
fn display_identity(identity: &str) -> &str {
    identity.strip_prefix("public.").unwrap_or(identity)
}

fn field_label(field: &str) -> &str {
    match field {
        "notnull" => "nullability",
        "def" => "definition",
        "pk" => "primary key position",
        "hidden" => "hidden/generated kind",
        "inc" => "increment",
        "min" => "minimum",
        "max" => "maximum",
        "rls" => "row level security",
        "force_rls" => "forced row level security",
        other => other,
    }
}

fn field_value(field: &str, value: &str) -> String {
    match (field, value) {
        ("notnull", "true") => "NOT NULL".to_string(),
        ("notnull", "false") => "nullable".to_string(),
        (_, "") => "(none)".to_string(),
        _ => value.to_string(),
    }
}

/// Column-position field name; handled as order drift, not as a changed property.
const POS: &str = "pos";

fn diff(expected: &Fingerprint, actual: &Fingerprint) -> Vec<Difference> {
    if expected.sha256 == actual.sha256 {
        return Vec::new();
    }
    let index = |f: &Fingerprint| -> BTreeMap<(String, String), CatalogRow> {
        f.rows
            .iter()
            .map(|r| ((r.kind.clone(), r.identity.clone()), r.clone()))
            .collect()
    };
    let exp = index(expected);
    let act = index(actual);
    let mut out = Vec::new();
    let mut gone_tables: BTreeSet<String> = BTreeSet::new();
    for (kind, id) in exp.keys() {
        if !act.contains_key(&(kind.clone(), id.clone())) && is_table_kind(kind) {
            gone_tables.insert(id.clone());
        }
    }
    for (kind, id) in act.keys() {
        if !exp.contains_key(&(kind.clone(), id.clone())) && is_table_kind(kind) {
            gone_tables.insert(id.clone());
        }
    }
    let belongs_to_gone =
        |r: &CatalogRow| r.table.as_ref().is_some_and(|t| gone_tables.contains(t));
    for (key, e) in &exp {
        match act.get(key) {
            None if belongs_to_gone(e) => {}
            None => out.push(Difference {
                kind: e.kind.clone(),
                identity: e.identity.clone(),
                drift: Drift::Semantic,
                change: Change::Missing,
            }),
            Some(a) => {
                let fields = field_changes(e, a);
                if !fields.is_empty() {
                    out.push(Difference {
                        kind: e.kind.clone(),
                        identity: e.identity.clone(),
                        drift: Drift::Semantic,
                        change: Change::Changed { fields },
                    });
                }
            }
        }
    }
    for (key, a) in &act {
        if !exp.contains_key(key) && !belongs_to_gone(a) {
            out.push(Difference {
                kind: a.kind.clone(),
                identity: a.identity.clone(),
                drift: Drift::Semantic,
                change: Change::Extra,
            });
        }
    }
    out.extend(order_drift(&exp, &act));
    if out.is_empty() {
        // Same objects and properties but another hash: only possible through rows that share
        // a kind and identity; say so rather than claim equality.
        out.push(Difference {
            kind: "schema".to_string(),
            identity: "(catalog)".to_string(),
            drift: Drift::Semantic,
            change: Change::Changed {
                fields: vec![FieldChange {
                    field: "sha256".to_string(),
                    expected: expected.sha256.clone(),
                    actual: actual.sha256.clone(),
                }],
            },
        });
    }
    out
}

fn is_table_kind(kind: &str) -> bool {
    matches!(
        kind,
        "table" | "view" | "materialized view" | "foreign table" | "type"
    )
}

fn field_changes(e: &CatalogRow, a: &CatalogRow) -> Vec<FieldChange> {
    let mut names: Vec<&str> = e.fields.iter().map(|(k, _)| k.as_str()).collect();
    for (k, _) in &a.fields {
        if !names.contains(&k.as_str()) {
            names.push(k);
        }
    }
    names
        .into_iter()
        .filter(|n| *n != POS || e.kind != "column")
        .filter_map(|n| {
            let ev = e.get(n).unwrap_or_default();
            let av = a.get(n).unwrap_or_default();
            (ev != av).then(|| FieldChange {
                field: n.to_string(),
                expected: ev.to_string(),
                actual: av.to_string(),
            })
        })
        .collect()
}

/// Columns present on both sides whose order relative to each other changed. The longest common
/// subsequence of the two orders stays put; the other columns are reported as moved (ties keep
/// the expected order's earlier columns, so a dropped and re-added column is the one that moved).
fn order_drift(
    exp: &BTreeMap<(String, String), CatalogRow>,
    act: &BTreeMap<(String, String), CatalogRow>,
) -> Vec<Difference> {
    let columns =
        |m: &BTreeMap<(String, String), CatalogRow>| -> BTreeMap<String, Vec<(u32, String)>> {
            let mut by_table: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
            for r in m.values().filter(|r| r.kind == "column") {
                if let (Some(t), Some(pos)) =
                    (&r.table, r.get(POS).and_then(|p| p.parse::<u32>().ok()))
                {
                    by_table
                        .entry(t.clone())
                        .or_default()
                        .push((pos, r.identity.clone()));
                }
            }
            for v in by_table.values_mut() {
                v.sort();
            }
            by_table
        };
    let e_cols = columns(exp);
    let a_cols = columns(act);
    let mut out = Vec::new();
    for (table, e) in &e_cols {
        let Some(a) = a_cols.get(table) else { continue };
        let a_names: BTreeSet<&String> = a.iter().map(|(_, n)| n).collect();
        let e_names: BTreeSet<&String> = e.iter().map(|(_, n)| n).collect();
        let e_common: Vec<&(u32, String)> = e.iter().filter(|(_, n)| a_names.contains(n)).collect();
        let a_common: Vec<&(u32, String)> = a.iter().filter(|(_, n)| e_names.contains(n)).collect();
        let kept = lcs(
            &e_common.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
            &a_common.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
        );
        // Positions among the columns both sides have: attribute numbers keep the slots of
        // dropped columns, and "moved from 13 to 13" tells nobody anything.
        let rank = |v: &[&(u32, String)], name: &str| {
            v.iter()
                .position(|(_, n)| n == name)
                .map_or(0, |i| u32::try_from(i + 1).unwrap_or(u32::MAX))
        };
        for (_, name) in &e_common {
            if kept.contains(name.as_str()) {
                continue;
            }
            let (pos, actual) = (rank(&e_common, name), rank(&a_common, name));
            if pos == actual {
                continue;
            }
            out.push(Difference {
                kind: "column".to_string(),
                identity: name.clone(),
                drift: Drift::Layout,
                change: Change::Moved {
                    expected: pos,
                    actual,
                },
            });
        }
    }
    out
}

fn lcs<'a>(a: &[&'a str], b: &[&'a str]) -> BTreeSet<&'a str> {
    let (n, m) = (a.len(), b.len());
    let mut dp = vec![vec![0usize; m + 1]; n + 1];
    for i in 1..=n {
        for j in 1..=m {
            dp[i][j] = if a[i - 1] == b[j - 1] {
                dp[i - 1][j - 1] + 1
            } else {
                dp[i - 1][j].max(dp[i][j - 1])
            };
        }
    }
    let mut kept = BTreeSet::new();
    let (mut i, mut j) = (n, m);
    while i > 0 && j > 0 {
        if a[i - 1] == b[j - 1] {
            kept.insert(a[i - 1]);
            i -= 1;
            j -= 1;
        } else if dp[i][j - 1] >= dp[i - 1][j] {
            // Prefer dropping the later element of the actual order: a re-added column lands last.
            j -= 1;
        } else {
            i -= 1;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(table: &str, name: &str, pos: u32, ty: &str, notnull: bool) -> CatalogRow {
        CatalogRow::new("column", format!("{table}.{name}"))
            .field("pos", pos.to_string())
            .field("type", ty)
            .field("notnull", notnull.to_string())
            .field("default", "")
            .in_table(table)
    }

    fn users(order: &[&str]) -> Vec<CatalogRow> {
        let mut rows = vec![CatalogRow::new("table", "users").field("strict", "false")];
        for (i, n) in order.iter().enumerate() {
            rows.push(col("users", n, i as u32 + 1, "TEXT", false));
        }
        rows
    }

    fn fp(rows: Vec<CatalogRow>) -> Fingerprint {
        Fingerprint::new(Engine::Sqlite, rows)
    }

    /// Every difference from `before` to `after`, worded for `stage`.
    fn described(before: &Fingerprint, after: &Fingerprint, stage: Stage) -> Vec<String> {
        before
            .diff(after)
            .iter()
            .map(|d| d.describe(stage))
            .collect()
    }

    /// The difference from `before` to `after`, asserting there is exactly one.
    fn one_difference(before: Vec<CatalogRow>, after: Vec<CatalogRow>) -> Difference {
        let d = fp(before).diff(&fp(after));
        assert_eq!(d.len(), 1, "{d:?}");
        d.into_iter().next().expect("one difference")
    }

    #[test]
    fn equal_schemas_have_equal_hashes_and_no_differences() {
        let a = fp(users(&["id", "email", "name"]));
        let mut rows = users(&["id", "email", "name"]);
        rows.reverse();
        let b = fp(rows);
        assert_eq!(a.sha256, b.sha256);
        assert!(a.diff(&b).is_empty());
        assert_eq!(
            a.lines()[0],
            "column|users.email|pos=2 type=TEXT notnull=false default="
        );
    }

    #[test]
    fn a_re_added_column_is_reported_as_moved_once_as_layout_drift() {
        let d = one_difference(
            users(&["id", "email", "name"]),
            users(&["id", "name", "email"]),
        );
        assert_eq!(d.drift, Drift::Layout);
        let msg = d.describe(Stage::AfterDown);
        assert!(
            msg.starts_with("after down: column users.email moved from position 2 to 3"),
            "{msg}"
        );
    }

    #[test]
    fn a_dropped_middle_column_is_missing_without_shifting_the_others_into_moves() {
        let d = one_difference(users(&["id", "email", "name"]), users(&["id", "name"]));
        assert_eq!(
            d.describe(Stage::AfterDown),
            "after down: column users.email is missing (it existed before the up)"
        );
    }

    #[test]
    fn leftover_index_and_changed_nullability_are_worded() {
        let before = fp(users(&["id", "email"]));
        let mut rows = users(&["id"]);
        rows.push(col("users", "email", 2, "TEXT", true));
        rows.push(
            CatalogRow::new("index", "users_name")
                .field("table", "users")
                .in_table("users"),
        );
        let after = fp(rows);
        let msgs = described(&before, &after, Stage::AfterDown);
        assert_eq!(
            msgs,
            vec![
                "after down: column users.email: nullability was nullable before the up, is NOT NULL now".to_string(),
                "after down: index users_name remains".to_string(),
            ]
        );
    }

    #[test]
    fn a_missing_table_is_one_difference_not_one_per_column() {
        let d = one_difference(users(&["id", "email"]), Vec::new());
        assert_eq!(
            d.describe(Stage::AfterReapply),
            "after the second up: table users is missing (the first up created it)"
        );
    }

    #[test]
    fn reapply_wording_names_what_the_second_up_added_and_every_changed_property() {
        let col = |ty: &str, default: &str| {
            CatalogRow::new("column", "public.users.email")
                .field("pos", "2")
                .field("type", ty)
                .field("notnull", "true")
                .field("default", default)
                .in_table("public.users")
        };
        let table = CatalogRow::new("table", "public.users").field("relkind", "r");
        let first = Fingerprint::new(
            Engine::Postgres,
            vec![table.clone(), col("text", "''::text")],
        );
        let second = Fingerprint::new(
            Engine::Postgres,
            vec![
                table,
                col("character varying(20)", ""),
                CatalogRow::new("index", "public.users_email_idx").in_table("public.users"),
            ],
        );
        let msgs = described(&first, &second, Stage::AfterReapply);
        assert_eq!(
            msgs,
            vec![
                "after the second up: column users.email: type was text after the first up, is \
                 character varying(20) now; default was ''::text after the first up, is (none) now"
                    .to_string(),
                "after the second up: index users_email_idx exists (the first up did not create it)"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn postgres_public_schema_is_left_out_of_messages() {
        let before = fp(vec![
            CatalogRow::new("type", "public.mood").field("enum", "'sad','ok'"),
        ]);
        let after = fp(vec![
            CatalogRow::new("type", "public.mood").field("enum", "'sad','ok','happy'"),
        ]);
        let d = before.diff(&after);
        assert_eq!(
            d[0].describe(Stage::AfterReapply),
            "after the second up: type mood: enum was 'sad','ok' after the first up, is 'sad','ok','happy' now"
        );
    }

    #[test]
    fn long_definitions_differ_as_a_unified_diff_and_constants_are_named() {
        let body = |x: &str| {
            format!(
                "CREATE OR REPLACE FUNCTION public.touch()\n RETURNS trigger\n LANGUAGE plpgsql\nAS $function$\nBEGIN\n    NEW.name := {x};\n    RETURN NEW;\nEND\n$function$\n"
            )
        };
        let d = definition_diff(&body("trim(NEW.name)"), &body("lower(NEW.name)"), "before");
        assert!(
            d.starts_with("definition differs:\n--- before\n+++ now"),
            "{d}"
        );
        assert!(
            d.contains("\n-    NEW.name := trim(NEW.name);\n+    NEW.name := lower(NEW.name);"),
            "{d}"
        );
        assert!(!d.contains("constant"), "{d}");

        let view = |at: &str| {
            format!(
                "SELECT e.id, e.at FROM events e WHERE e.at > ('{at}'::timestamp with time zone - '1 day'::interval)"
            )
        };
        let d = definition_diff(
            &view("2026-12-04 22:28:14.73+00"),
            &view("2026-12-04 22:28:14.89+00"),
            "after the first up",
        );
        assert!(d.contains("only a timestamp literal differs"), "{d}");
        assert!(
            d.contains("\n-WHERE e.at > ('2026-12-04 22:28:14.73+00'"),
            "{d}"
        );

        // Another literal is another value, not a creation time; an apostrophe in a comment
        // opens no literal.
        let status = |s: &str| {
            format!("SELECT e.id FROM events e WHERE e.status = '{s}' AND e.id > 100000000")
        };
        let d = definition_diff(&status("active"), &status("enabled"), "before");
        assert!(d.contains("(only a quoted literal differs)"), "{d}");
        let f = |x: &str| format!("BEGIN\n  -- don't\n  RETURN {x};\nEND\n");
        let d = definition_diff(&f("1"), &f("2"), "before");
        assert!(!d.contains("only a"), "{d}");
    }
}
