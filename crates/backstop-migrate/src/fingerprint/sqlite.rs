//! SQLite catalog fingerprint: `pragma_table_list`, `pragma_table_xinfo`, `pragma_index_list` /
//! `_xinfo`, `pragma_foreign_key_list`, plus what only the schema text holds (CHECK, COLLATE,
//! generated expressions, AUTOINCREMENT, partial-index WHERE, views, triggers), normalized so a
//! table rebuild that rewrites `CREATE TABLE t` as `CREATE TABLE "t"` is no difference.

use std::collections::BTreeMap;

use sqlx::{Row, SqliteConnection};

use super::{CatalogRow, Fingerprint, HISTORY_TABLES};
use crate::model::Engine;
use crate::scratch::lex::{Dialect, Token, lex, normalize};

/// Reads the fingerprint of the `main` schema of `conn` (five queries, whatever the schema size).
pub async fn fingerprint(conn: &mut SqliteConnection) -> Result<Fingerprint, sqlx::Error> {
    let mut rows = Vec::new();
    let skip = |name: &str| {
        let lower = name.to_ascii_lowercase();
        lower.starts_with("sqlite_") || HISTORY_TABLES.contains(&lower.as_str())
    };

    // (type, lower-cased name) → schema text; and the triggers.
    let mut sql_of: BTreeMap<(String, String), String> = BTreeMap::new();
    for r in
        sqlx::query("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL")
            .fetch_all(&mut *conn)
            .await?
    {
        let ty: String = r.try_get(0)?;
        let name: String = r.try_get(1)?;
        let table: String = r.try_get(2)?;
        let sql: String = r.try_get(3)?;
        if ty == "trigger" && !skip(&table) {
            let def = normalize(&lex(&sql, Dialect::Sqlite));
            rows.push(
                CatalogRow::new("trigger", name.clone())
                    .field("table", table.clone())
                    .field("def", def)
                    .in_table(table),
            );
        }
        sql_of.insert((ty, name.to_ascii_lowercase()), sql);
    }
    let text_of = |ty: &str, name: &str| {
        sql_of
            .get(&(ty.to_string(), name.to_ascii_lowercase()))
            .cloned()
            .unwrap_or_default()
    };

    let mut texts: BTreeMap<String, TableText> = BTreeMap::new();
    for t in
        sqlx::query("SELECT name, type, wr, strict FROM pragma_table_list WHERE schema = 'main'")
            .fetch_all(&mut *conn)
            .await?
    {
        let name: String = t.try_get(0)?;
        let ty: String = t.try_get(1)?;
        if skip(&name) {
            continue;
        }
        let tokens = lex(
            &text_of(if ty == "view" { "view" } else { "table" }, &name),
            Dialect::Sqlite,
        );
        if ty == "view" {
            rows.push(CatalogRow::new("view", name).field("def", normalize(&tokens)));
            continue;
        }
        let wr: i64 = t.try_get(2)?;
        let strict: i64 = t.try_get(3)?;
        let text = parse_create_table(&tokens);
        let mut table = CatalogRow::new("table", name.clone())
            .field("type", ty.clone())
            .field("strict", (strict != 0).to_string())
            .field("without_rowid", (wr != 0).to_string())
            .field("autoincrement", text.autoincrement.to_string());
        if ty == "virtual" {
            table = table.field("def", normalize(&tokens));
        }
        rows.push(table);
        for (cname, check) in &text.checks {
            let identity = match cname {
                Some(n) => format!("{name}.{n}"),
                None => format!("{name}.check ({check})"),
            };
            rows.push(
                CatalogRow::new("constraint", identity)
                    .field("def", format!("check ({check})"))
                    .in_table(name.clone()),
            );
        }
        texts.insert(name, text);
    }

    let mut ranks: BTreeMap<String, usize> = BTreeMap::new();
    for c in sqlx::query(
        "SELECT t.name, c.name, c.type, c.\"notnull\", c.dflt_value, c.pk, c.hidden \
         FROM pragma_table_list t, pragma_table_xinfo(t.name) c \
         WHERE t.schema = 'main' AND t.type <> 'view' ORDER BY t.name, c.cid",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        let table: String = c.try_get(0)?;
        let Some(text) = texts.get(&table) else {
            continue;
        };
        let name: String = c.try_get(1)?;
        let ty: String = c.try_get(2)?;
        let notnull: i64 = c.try_get(3)?;
        let default: Option<String> = c.try_get(4)?;
        let pk: i64 = c.try_get(5)?;
        let hidden: i64 = c.try_get(6)?;
        let rank = ranks.entry(table.clone()).or_default();
        *rank += 1;
        let rank = *rank;
        let extra = text.columns.get(&name.to_ascii_lowercase());
        rows.push(
            CatalogRow::new("column", format!("{table}.{name}"))
                .field("pos", rank.to_string())
                .field("type", ty.to_ascii_uppercase())
                .field("notnull", (notnull != 0).to_string())
                .field(
                    "default",
                    default
                        .map(|d| normalize(&lex(&d, Dialect::Sqlite)))
                        .unwrap_or_default(),
                )
                .field("pk", pk.to_string())
                .field("hidden", hidden.to_string())
                .field(
                    "collation",
                    extra.map(|e| e.collation.clone()).unwrap_or_default(),
                )
                .field(
                    "generated",
                    extra.map(|e| e.generated.clone()).unwrap_or_default(),
                )
                .in_table(table),
        );
    }

    // (table, index) → (unique, origin, partial, key columns)
    let mut indexes: BTreeMap<(String, String), IndexKeys> = BTreeMap::new();
    for k in sqlx::query(
        "SELECT t.name, il.name, il.\"unique\", il.origin, il.partial, ix.name, ix.\"desc\", ix.coll \
         FROM pragma_table_list t, pragma_index_list(t.name) il, pragma_index_xinfo(il.name) ix \
         WHERE t.schema = 'main' AND t.type = 'table' AND ix.key = 1 ORDER BY t.name, il.name, ix.seqno",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        let table: String = k.try_get(0)?;
        if !texts.contains_key(&table) {
            continue;
        }
        let index: String = k.try_get(1)?;
        let unique: i64 = k.try_get(2)?;
        let origin: String = k.try_get(3)?;
        let partial: i64 = k.try_get(4)?;
        let col: Option<String> = k.try_get(5)?;
        let desc: i64 = k.try_get(6)?;
        let coll: Option<String> = k.try_get(7)?;
        let e = indexes.entry((table, index)).or_insert_with(|| (unique != 0, origin, partial != 0, Vec::new()));
        e.3.push(format!(
            "{}{} collate {}",
            col.unwrap_or_else(|| "<expression>".to_string()),
            if desc != 0 { " desc" } else { "" },
            coll.unwrap_or_default().to_ascii_lowercase()
        ));
    }
    for ((table, name), (unique, origin, partial, cols)) in indexes {
        if origin == "c" {
            let def = normalize(&lex(&text_of("index", &name), Dialect::Sqlite));
            rows.push(
                CatalogRow::new("index", name)
                    .field("table", table.clone())
                    .field("unique", unique.to_string())
                    .field("partial", partial.to_string())
                    .field("columns", cols.join(", "))
                    .field("def", def)
                    .in_table(table),
            );
        } else {
            let what = if origin == "pk" {
                "primary key"
            } else {
                "unique"
            };
            let plain: Vec<&str> = cols
                .iter()
                .map(|c| c.split(' ').next().unwrap_or(c))
                .collect();
            rows.push(
                CatalogRow::new(
                    "constraint",
                    format!("{table}.{what} ({})", plain.join(", ")),
                )
                .field("def", format!("{what} ({})", cols.join(", ")))
                .in_table(table),
            );
        }
    }

    // (table, id) → (parent, from, to, on_update, on_delete, match)
    type Fk = (String, Vec<String>, Vec<String>, String, String, String);
    let mut fks: BTreeMap<(String, i64), Fk> = BTreeMap::new();
    for f in sqlx::query(
        "SELECT t.name, f.id, f.\"table\", f.\"from\", f.\"to\", f.on_update, f.on_delete, f.\"match\" \
         FROM pragma_table_list t, pragma_foreign_key_list(t.name) f \
         WHERE t.schema = 'main' AND t.type = 'table' ORDER BY t.name, f.id, f.seq",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        let table: String = f.try_get(0)?;
        if !texts.contains_key(&table) {
            continue;
        }
        let id: i64 = f.try_get(1)?;
        let from: String = f.try_get(3)?;
        let to: Option<String> = f.try_get(4)?;
        let e = match fks.entry((table, id)) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert((f.try_get(2)?, Vec::new(), Vec::new(), f.try_get(5)?, f.try_get(6)?, f.try_get(7)?))
            }
        };
        e.1.push(from);
        e.2.push(to.unwrap_or_default());
    }
    for ((table, _), (parent, from, to, on_update, on_delete, matching)) in fks {
        rows.push(
            CatalogRow::new(
                "constraint",
                format!(
                    "{table}.foreign key ({}) references {parent} ({})",
                    from.join(", "),
                    to.join(", ")
                ),
            )
            .field("on_update", on_update)
            .field("on_delete", on_delete)
            .field("match", matching)
            .in_table(table),
        );
    }

    for pragma in ["user_version", "application_id"] {
        let v: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {pragma}")))
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        rows.push(CatalogRow::new("pragma", pragma).field("value", v.to_string()));
    }
    Ok(Fingerprint::new(Engine::Sqlite, rows))
}

/// (unique, origin, partial, key columns) of one index.
type IndexKeys = (bool, String, bool, Vec<String>);

/// What a `CREATE TABLE` text says that the pragmas do not.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TableText {
    /// Lower-cased column name → its text-only properties.
    pub columns: BTreeMap<String, ColumnText>,
    /// `(constraint name, normalized expression)` of every CHECK, column or table level.
    pub checks: Vec<(Option<String>, String)>,
    pub autoincrement: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ColumnText {
    pub collation: String,
    pub generated: String,
}

pub(crate) fn parse_create_table(tokens: &[Token]) -> TableText {
    let mut out = TableText::default();
    let Some(open) = tokens.iter().position(|t| t.is_punct("(")) else {
        return out;
    };
    let close = matching(tokens, open);
    let body = &tokens[open + 1..close];
    let mut items: Vec<&[Token]> = Vec::new();
    let (mut depth, mut from) = (0i32, 0usize);
    for (i, t) in body.iter().enumerate() {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
        } else if t.is_punct(",") && depth == 0 {
            items.push(&body[from..i]);
            from = i + 1;
        }
    }
    items.push(&body[from..]);
    for item in items.into_iter().filter(|i| !i.is_empty()) {
        let first = item[0].word();
        if matches!(
            first.as_str(),
            "constraint" | "primary" | "unique" | "check" | "foreign"
        ) {
            let (name, rest) = if first == "constraint" && item.len() > 2 {
                (item[1].ident(), &item[2..])
            } else {
                (None, item)
            };
            if rest[0].is_word("check")
                && let Some(expr) = paren_group(rest, 1)
            {
                out.checks.push((name, expr));
            }
            continue;
        }
        let Some(col) = item[0].ident() else { continue };
        let mut c = ColumnText::default();
        let mut pending_name: Option<String> = None;
        let mut i = 1;
        while i < item.len() {
            let t = &item[i];
            if t.is_word("constraint") {
                pending_name = item.get(i + 1).and_then(Token::ident);
                i += 2;
                continue;
            }
            if t.is_word("collate") {
                c.collation = item
                    .get(i + 1)
                    .and_then(Token::ident)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                i += 2;
                continue;
            }
            if t.is_word("autoincrement") {
                out.autoincrement = true;
            }
            if t.is_word("check") {
                if let Some(expr) = paren_group(item, i + 1) {
                    out.checks.push((pending_name.take(), expr));
                }
                i = skip_group(item, i + 1);
                continue;
            }
            if t.is_word("as") && item.get(i + 1).is_some_and(|n| n.is_punct("(")) {
                let expr = paren_group(item, i + 1).unwrap_or_default();
                let after = skip_group(item, i + 1);
                let storage = match item.get(after) {
                    Some(s) if s.is_word("stored") => "stored",
                    _ => "virtual",
                };
                c.generated = format!("({expr}) {storage}");
                i = after;
                continue;
            }
            if t.is_punct("(") {
                i = skip_group(item, i);
                continue;
            }
            i += 1;
        }
        out.columns.insert(col.to_ascii_lowercase(), c);
    }
    out
}

/// Index of the `)` closing the `(` at `open` (or the last token).
fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
            if depth == 0 {
                return i;
            }
        }
    }
    tokens.len()
}

/// The normalized text inside the parenthesized group starting at `at`.
fn paren_group(tokens: &[Token], at: usize) -> Option<String> {
    if !tokens.get(at)?.is_punct("(") {
        return None;
    }
    let close = matching(tokens, at);
    Some(normalize(&tokens[at + 1..close.min(tokens.len())]))
}

/// Index just past the group starting at `at` (or `at` itself when no group starts there).
fn skip_group(tokens: &[Token], at: usize) -> usize {
    match tokens.get(at) {
        Some(t) if t.is_punct("(") => (matching(tokens, at) + 1).min(tokens.len()),
        _ => at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_table_text_yields_checks_collations_generated_and_autoincrement() {
        let sql = "CREATE TABLE \"t\" (id INTEGER PRIMARY KEY AUTOINCREMENT, \
                   name TEXT COLLATE NOCASE CONSTRAINT name_len CHECK (length(name) > 0), \
                   total INT GENERATED ALWAYS AS (id * 2) STORED, price NUMERIC(10, 2) DEFAULT (1 + 1), \
                   CONSTRAINT pos CHECK(id>0), CHECK (total >= 0))";
        let t = parse_create_table(&lex(sql, Dialect::Sqlite));
        assert!(t.autoincrement);
        assert_eq!(t.columns["name"].collation, "nocase");
        assert_eq!(t.columns["total"].generated, "(id * 2) stored");
        assert_eq!(t.columns["price"], ColumnText::default());
        assert_eq!(
            t.checks,
            vec![
                (Some("name_len".to_string()), "length(name) > 0".to_string()),
                (Some("pos".to_string()), "id > 0".to_string()),
                (None, "total >= 0".to_string()),
            ]
        );
    }
}
