//! From a script to the schema operations the rules reason about.
//!
//! The script has already been parsed by the engine's real parser (squawk for PostgreSQL,
//! sqlparser for SQLite) before it gets here. This module tokenizes it with sqlparser's tokenizer
//! for the engine's dialect, splits it into statements (trigger and `BEGIN ATOMIC` bodies kept
//! whole) and reads each statement's head into an [`Op`]: one engine-neutral vocabulary, so each
//! rule is written once for both engines.

use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::model::Engine;

/// A token reduced to what the rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Unquoted word, lowercased.
    Word(String),
    /// Quoted identifier, as written.
    Quoted(String),
    Str,
    Num(String),
    LParen,
    RParen,
    Comma,
    Dot,
    Semi,
    Other,
}

#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    /// 1-based line within the script's SQL where the statement starts.
    pub line: u32,
    /// Byte range of the statement in the script's SQL (first token to the end of the last).
    pub start: usize,
    pub end: usize,
    pub toks: Vec<Tok>,
}

/// Byte offset of a tokenizer location (1-based line, 1-based column in characters).
fn byte_offset(sql: &str, line_starts: &[usize], line: u64, column: u64) -> usize {
    let Some(&start) = usize::try_from(line)
        .ok()
        .and_then(|l| l.checked_sub(1))
        .and_then(|l| line_starts.get(l))
    else {
        return sql.len();
    };
    let col = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
    sql[start..]
        .char_indices()
        .nth(col)
        .map_or(sql.len(), |(i, _)| start + i)
}

/// What a statement does to the schema or the data, as far as the rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    CreateTable {
        table: String,
        /// (column, type text) for columns declared inline.
        columns: Vec<(String, String)>,
    },
    DropTable(String),
    RenameTable {
        from: String,
        to: String,
    },
    AddColumn {
        table: String,
        column: String,
        ty: String,
        not_null: bool,
        has_default: bool,
    },
    DropColumn {
        table: String,
        column: String,
    },
    RenameColumn {
        table: String,
        from: String,
        to: String,
    },
    AlterType {
        table: String,
        column: String,
        ty: String,
    },
    SetNotNull {
        table: String,
        column: String,
    },
    AddConstraint {
        table: String,
        kind: String,
    },
    CreateIndex {
        name: Option<String>,
        table: String,
        unique: bool,
    },
    DropIndex(String),
    CreateView(String),
    DropView(String),
    CreateTrigger {
        name: String,
        table: String,
    },
    DropTrigger(String),
    Truncate(String),
    Delete {
        table: String,
        has_where: bool,
    },
    Update {
        table: String,
        has_where: bool,
        /// The columns it sets (lowercased unless quoted).
        set: Vec<String>,
    },
    Insert(String),
    /// A statement that cannot run inside a transaction (what it is, for the message).
    NonTransactional(String),
    /// `SELECT <constants>` and friends: does nothing to the schema or data.
    Trivial,
    Other,
}

fn dialect(engine: Engine) -> Box<dyn Dialect> {
    match engine {
        Engine::Sqlite => Box::new(SQLiteDialect {}),
        Engine::Postgres => Box::new(PostgreSqlDialect {}),
    }
}

/// The statements of `sql`, or `None` if the tokenizer cannot read it (the caller has already
/// reported real parse errors; the rules then simply have nothing to say).
pub(crate) fn statements(sql: &str, engine: Engine) -> Option<Vec<Stmt>> {
    let d = dialect(engine);
    let tokens = Tokenizer::new(d.as_ref(), sql)
        .tokenize_with_location()
        .ok()?;
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut out: Vec<Stmt> = Vec::new();
    let mut cur: Vec<Tok> = Vec::new();
    let mut start_line = 0u32;
    let mut start = 0usize;
    let mut end = 0usize;
    let mut depth = 0i32;
    // Inside a `BEGIN … END` body (triggers, `BEGIN ATOMIC`): count nested CASE … END.
    let mut body = false;
    let mut case_depth = 0u32;
    for t in tokens {
        let tok = match &t.token {
            Token::Whitespace(_) | Token::EOF => continue,
            Token::Word(w) => {
                if w.quote_style.is_some() {
                    Tok::Quoted(w.value.clone())
                } else {
                    Tok::Word(w.value.to_ascii_lowercase())
                }
            }
            Token::DoubleQuotedString(s) => Tok::Quoted(s.clone()),
            Token::Number(n, _) => Tok::Num(n.clone()),
            Token::LParen => Tok::LParen,
            Token::RParen => Tok::RParen,
            Token::Comma => Tok::Comma,
            Token::Period => Tok::Dot,
            Token::SemiColon => Tok::Semi,
            Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_) => Tok::Str,
            _ => Tok::Other,
        };
        if cur.is_empty() {
            if tok == Tok::Semi {
                continue;
            }
            start_line = u32::try_from(t.span.start.line).unwrap_or(u32::MAX);
            start = byte_offset(sql, &line_starts, t.span.start.line, t.span.start.column);
            depth = 0;
            body = false;
            case_depth = 0;
        }
        match &tok {
            Tok::LParen => depth += 1,
            Tok::RParen => depth -= 1,
            Tok::Word(w) if w == "begin" && starts_body(&cur) => body = true,
            Tok::Word(w) if body && w == "case" => case_depth += 1,
            Tok::Word(w) if body && w == "end" => {
                if case_depth > 0 {
                    case_depth -= 1;
                } else {
                    body = false;
                }
            }
            _ => {}
        }
        end = byte_offset(sql, &line_starts, t.span.end.line, t.span.end.column).max(start);
        if tok == Tok::Semi && depth <= 0 && !body {
            out.push(Stmt {
                line: start_line.max(1),
                start,
                end,
                toks: std::mem::take(&mut cur),
            });
            continue;
        }
        cur.push(tok);
    }
    if !cur.is_empty() {
        out.push(Stmt {
            line: start_line.max(1),
            start,
            end,
            toks: cur,
        });
    }
    Some(out)
}

/// `BEGIN` opens a body (not a transaction) inside `CREATE … TRIGGER` and `CREATE FUNCTION …
/// BEGIN ATOMIC`.
fn starts_body(cur: &[Tok]) -> bool {
    let words: Vec<&str> = cur
        .iter()
        .take(6)
        .filter_map(|t| match t {
            Tok::Word(w) => Some(w.as_str()),
            _ => None,
        })
        .collect();
    words.first() == Some(&"create")
        && words
            .iter()
            .any(|w| matches!(*w, "trigger" | "function" | "procedure"))
}

/// A cursor over a statement's tokens.
struct Cur<'a> {
    t: &'a [Tok],
    i: usize,
}

impl<'a> Cur<'a> {
    fn peek_word(&self) -> Option<&'a str> {
        match self.t.get(self.i) {
            Some(Tok::Word(w)) => Some(w.as_str()),
            _ => None,
        }
    }
    fn eat(&mut self, w: &str) -> bool {
        if self.peek_word() == Some(w) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn eat_seq(&mut self, ws: &[&str]) -> bool {
        let save = self.i;
        for w in ws {
            if !self.eat(w) {
                self.i = save;
                return false;
            }
        }
        true
    }
    /// A possibly qualified name (`schema.table`, quoted parts kept as written): the last part.
    fn name(&mut self) -> Option<String> {
        let mut last = None;
        loop {
            match self.t.get(self.i) {
                Some(Tok::Word(w)) => last = Some(w.clone()),
                Some(Tok::Quoted(q)) => last = Some(q.clone()),
                _ => return last,
            }
            self.i += 1;
            if self.t.get(self.i) == Some(&Tok::Dot) {
                self.i += 1;
            } else {
                return last;
            }
        }
    }
    fn rest(&self) -> &'a [Tok] {
        &self.t[self.i.min(self.t.len())..]
    }
}

/// The columns of `[alias] SET a = …, (b, c) = …` up to a top-level FROM, WHERE or RETURNING.
fn set_columns(toks: &[Tok]) -> Vec<String> {
    let Some(at) = toks.iter().position(|t| *t == Tok::Word("set".into())) else {
        return Vec::new();
    };
    let mut depth = 0i32;
    let mut end = toks.len();
    for (i, t) in toks.iter().enumerate().skip(at + 1) {
        match t {
            Tok::LParen => depth += 1,
            Tok::RParen => depth -= 1,
            Tok::Word(w) if depth == 0 && matches!(w.as_str(), "from" | "where" | "returning") => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for part in split_commas(&toks[at + 1..end]) {
        if part.first() == Some(&Tok::LParen) {
            for inner in split_commas(paren_body(part)) {
                out.extend(Cur { t: inner, i: 0 }.name());
            }
        } else {
            out.extend(Cur { t: part, i: 0 }.name());
        }
    }
    out
}

fn has_word_at_depth0(toks: &[Tok], word: &str) -> bool {
    let mut depth = 0i32;
    for t in toks {
        match t {
            Tok::LParen => depth += 1,
            Tok::RParen => depth -= 1,
            Tok::Word(w) if depth == 0 && w == word => return true,
            _ => {}
        }
    }
    false
}

/// Split at top-level commas.
fn split_commas(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut from = 0;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::LParen => depth += 1,
            Tok::RParen => depth -= 1,
            Tok::Comma if depth == 0 => {
                out.push(&toks[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(&toks[from..]);
    out
}

fn render(toks: &[Tok]) -> String {
    let mut s = String::new();
    for t in toks {
        let piece = match t {
            Tok::Word(w) => w.clone(),
            Tok::Quoted(q) => q.to_ascii_lowercase(),
            Tok::Num(n) => n.clone(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Dot => ".".into(),
            _ => continue,
        };
        if !s.is_empty()
            && !matches!(t, Tok::LParen | Tok::RParen | Tok::Comma | Tok::Dot)
            && !s.ends_with(['(', '.'])
        {
            s.push(' ');
        }
        s.push_str(&piece);
    }
    s
}

const COLUMN_CONSTRAINT_WORDS: &[&str] = &[
    "not",
    "null",
    "default",
    "primary",
    "references",
    "check",
    "unique",
    "collate",
    "generated",
    "constraint",
    "as",
    "autoincrement",
    "on",
];

/// A column definition `name type constraints…` → (name, type text, not null, has default).
fn column_def(toks: &[Tok]) -> Option<(String, String, bool, bool)> {
    let mut c = Cur { t: toks, i: 0 };
    let name = match toks.first()? {
        Tok::Word(w) => w.clone(),
        Tok::Quoted(q) => q.clone(),
        _ => return None,
    };
    c.i = 1;
    let ty_start = c.i;
    let mut depth = 0i32;
    while let Some(t) = toks.get(c.i) {
        match t {
            Tok::LParen => depth += 1,
            Tok::RParen => depth -= 1,
            Tok::Word(w) if depth == 0 && COLUMN_CONSTRAINT_WORDS.contains(&w.as_str()) => break,
            _ => {}
        }
        c.i += 1;
    }
    let ty = render(&toks[ty_start..c.i]);
    let rest = &toks[c.i..];
    let mut not_null = false;
    let mut has_default = false;
    for (i, t) in rest.iter().enumerate() {
        if let Tok::Word(w) = t {
            match w.as_str() {
                "not" if rest.get(i + 1) == Some(&Tok::Word("null".into())) => not_null = true,
                "primary" => not_null = true,
                "default" | "generated" | "as" => has_default = true,
                _ => {}
            }
        }
    }
    // `serial` types and identity columns fill themselves.
    if matches!(ty.as_str(), "serial" | "bigserial" | "smallserial") {
        has_default = true;
    }
    Some((name, ty, not_null, has_default))
}

const TABLE_CONSTRAINT_WORDS: &[&str] = &[
    "constraint",
    "primary",
    "unique",
    "check",
    "foreign",
    "exclude",
];

/// Read one statement into the operations it performs (ALTER TABLE can do several).
pub(crate) fn ops(stmt: &Stmt) -> Vec<Op> {
    let mut c = Cur {
        t: &stmt.toks,
        i: 0,
    };
    let Some(first) = c.peek_word() else {
        return vec![Op::Other];
    };
    c.i += 1;
    match first {
        "create" => create(&mut c),
        "drop" => drop(&mut c),
        "alter" => alter(&mut c),
        "truncate" => {
            c.eat("table");
            c.eat("only");
            let rest = c.rest();
            split_commas(rest)
                .into_iter()
                .filter_map(|part| Cur { t: part, i: 0 }.name())
                .filter(|n| !matches!(n.as_str(), "cascade" | "restrict"))
                .map(Op::Truncate)
                .collect()
        }
        "delete" => {
            c.eat("from");
            c.eat("only");
            match c.name() {
                Some(table) => vec![Op::Delete {
                    table,
                    has_where: has_word_at_depth0(c.rest(), "where"),
                }],
                None => vec![Op::Other],
            }
        }
        "update" => {
            if c.eat("or") {
                c.i += 1;
            }
            c.eat("only");
            match c.name() {
                Some(table) => vec![Op::Update {
                    table,
                    has_where: has_word_at_depth0(c.rest(), "where"),
                    set: set_columns(c.rest()),
                }],
                None => vec![Op::Other],
            }
        }
        "insert" | "replace" => {
            if c.eat("or") {
                c.i += 1;
            }
            c.eat("into");
            c.name().map_or(vec![Op::Other], |t| vec![Op::Insert(t)])
        }
        "select" => {
            let rest = c.rest();
            let trivial = !rest
                .iter()
                .any(|t| matches!(t, Tok::Word(w) if w == "from"))
                && !rest.iter().any(|t| matches!(t, Tok::LParen));
            vec![if trivial { Op::Trivial } else { Op::Other }]
        }
        "vacuum" => vec![Op::NonTransactional("VACUUM".into())],
        "reindex" if stmt.toks.contains(&Tok::Word("concurrently".into())) => {
            vec![Op::NonTransactional("REINDEX CONCURRENTLY".into())]
        }
        _ => vec![Op::Other],
    }
}

fn create(c: &mut Cur) -> Vec<Op> {
    c.eat_seq(&["or", "replace"]);
    for w in [
        "temp",
        "temporary",
        "unlogged",
        "global",
        "local",
        "virtual",
    ] {
        c.eat(w);
    }
    let unique = c.eat("unique");
    match c.peek_word() {
        Some("table") => {
            c.i += 1;
            c.eat_seq(&["if", "not", "exists"]);
            let Some(table) = c.name() else {
                return vec![Op::Other];
            };
            let mut columns = Vec::new();
            if c.t.get(c.i) == Some(&Tok::LParen) {
                let inner = paren_body(c.rest());
                for part in split_commas(inner) {
                    let is_constraint = matches!(part.first(), Some(Tok::Word(w)) if TABLE_CONSTRAINT_WORDS.contains(&w.as_str()));
                    if is_constraint {
                        continue;
                    }
                    if let Some((col, ty, _, _)) = column_def(part) {
                        columns.push((col, ty));
                    }
                }
            }
            vec![Op::CreateTable { table, columns }]
        }
        Some("index") => {
            c.i += 1;
            let concurrently = c.eat("concurrently");
            c.eat_seq(&["if", "not", "exists"]);
            let name = if c.peek_word() == Some("on") {
                None
            } else {
                c.name()
            };
            if !c.eat("on") {
                return vec![Op::Other];
            }
            c.eat("only");
            let Some(table) = c.name() else {
                return vec![Op::Other];
            };
            let mut out = vec![Op::CreateIndex {
                name,
                table,
                unique,
            }];
            if concurrently {
                out.push(Op::NonTransactional("CREATE INDEX CONCURRENTLY".into()));
            }
            out
        }
        Some("materialized") | Some("view") | Some("recursive") => {
            c.eat("recursive");
            c.eat("materialized");
            c.eat("view");
            c.eat_seq(&["if", "not", "exists"]);
            c.name()
                .map_or(vec![Op::Other], |v| vec![Op::CreateView(v)])
        }
        Some("trigger") | Some("constraint") => {
            c.eat("constraint");
            c.eat("trigger");
            c.eat_seq(&["if", "not", "exists"]);
            let Some(name) = c.name() else {
                return vec![Op::Other];
            };
            // … {BEFORE|AFTER|INSTEAD OF} event ON table
            while let Some(t) = c.t.get(c.i) {
                c.i += 1;
                if t == &Tok::Word("on".into()) {
                    break;
                }
            }
            let table = c.name().unwrap_or_default();
            vec![Op::CreateTrigger { name, table }]
        }
        Some("database") => vec![Op::NonTransactional("CREATE DATABASE".into())],
        _ => vec![Op::Other],
    }
}

/// The tokens inside the parenthesis `toks` starts with.
fn paren_body(toks: &[Tok]) -> &[Tok] {
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::LParen => depth += 1,
            Tok::RParen => {
                depth -= 1;
                if depth == 0 {
                    return &toks[1..i];
                }
            }
            _ => {}
        }
    }
    if toks.is_empty() { toks } else { &toks[1..] }
}

fn names_list(c: &mut Cur) -> Vec<String> {
    split_commas(c.rest())
        .into_iter()
        .filter_map(|part| Cur { t: part, i: 0 }.name())
        .filter(|n| !matches!(n.as_str(), "cascade" | "restrict"))
        .collect()
}

fn drop(c: &mut Cur) -> Vec<Op> {
    let kind = c.peek_word().unwrap_or("").to_string();
    c.i += 1;
    if kind == "materialized" {
        c.eat("view");
    }
    let concurrently = c.eat("concurrently");
    c.eat_seq(&["if", "exists"]);
    match kind.as_str() {
        "table" => names_list(c).into_iter().map(Op::DropTable).collect(),
        "view" | "materialized" => names_list(c).into_iter().map(Op::DropView).collect(),
        "index" => {
            let mut out: Vec<Op> = names_list(c).into_iter().map(Op::DropIndex).collect();
            if concurrently {
                out.push(Op::NonTransactional("DROP INDEX CONCURRENTLY".into()));
            }
            out
        }
        "trigger" => c
            .name()
            .map_or(vec![Op::Other], |n| vec![Op::DropTrigger(n)]),
        "database" => vec![Op::NonTransactional("DROP DATABASE".into())],
        _ => vec![Op::Other],
    }
}

fn alter(c: &mut Cur) -> Vec<Op> {
    if c.eat("type") {
        // ALTER TYPE … ADD VALUE cannot be undone, and before PostgreSQL 12 not in a transaction.
        if c.rest()
            .windows(2)
            .any(|w| w[0] == Tok::Word("add".into()) && w[1] == Tok::Word("value".into()))
        {
            return vec![Op::NonTransactional("ALTER TYPE … ADD VALUE".into())];
        }
        return vec![Op::Other];
    }
    if c.eat("system") {
        return vec![Op::NonTransactional("ALTER SYSTEM".into())];
    }
    if !c.eat("table") {
        return vec![Op::Other];
    }
    c.eat_seq(&["if", "exists"]);
    c.eat("only");
    let Some(table) = c.name() else {
        return vec![Op::Other];
    };
    let mut out = Vec::new();
    for action in split_commas(c.rest()) {
        out.push(alter_action(&table, action));
    }
    out
}

fn alter_action(table: &str, toks: &[Tok]) -> Op {
    let mut c = Cur { t: toks, i: 0 };
    let table = table.to_string();
    if c.eat("rename") {
        if c.eat("to") {
            return c
                .name()
                .map_or(Op::Other, |to| Op::RenameTable { from: table, to });
        }
        if c.eat("constraint") {
            return Op::Other;
        }
        c.eat("column");
        let Some(from) = c.name() else {
            return Op::Other;
        };
        if !c.eat("to") {
            return Op::Other;
        }
        return c
            .name()
            .map_or(Op::Other, |to| Op::RenameColumn { table, from, to });
    }
    if c.eat("add") {
        if matches!(c.peek_word(), Some(w) if TABLE_CONSTRAINT_WORDS.contains(&w)) {
            let mut kind = c.peek_word().unwrap_or("").to_string();
            if kind == "constraint" {
                c.i += 1;
                c.name();
                kind = c.peek_word().unwrap_or("constraint").to_string();
            }
            if kind == "foreign" {
                kind = "foreign key".into();
            } else if kind == "primary" {
                kind = "primary key".into();
            }
            return Op::AddConstraint { table, kind };
        }
        c.eat("column");
        c.eat_seq(&["if", "not", "exists"]);
        return match column_def(c.rest()) {
            Some((column, ty, not_null, has_default)) => Op::AddColumn {
                table,
                column,
                ty,
                not_null,
                has_default,
            },
            None => Op::Other,
        };
    }
    if c.eat("drop") {
        if c.eat("constraint") {
            return Op::Other;
        }
        c.eat("column");
        c.eat_seq(&["if", "exists"]);
        return c
            .name()
            .map_or(Op::Other, |column| Op::DropColumn { table, column });
    }
    if c.eat("alter") {
        c.eat("column");
        let Some(column) = c.name() else {
            return Op::Other;
        };
        if c.eat_seq(&["set", "not", "null"]) {
            return Op::SetNotNull { table, column };
        }
        c.eat_seq(&["set", "data"]);
        if c.eat("type") {
            let rest = c.rest();
            let end = rest
                .iter()
                .position(|t| matches!(t, Tok::Word(w) if w == "using" || w == "collate"))
                .unwrap_or(rest.len());
            return Op::AlterType {
                table,
                column,
                ty: render(&rest[..end]),
            };
        }
    }
    Op::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_ops(sql: &str, engine: Engine) -> Vec<Op> {
        statements(sql, engine)
            .unwrap()
            .iter()
            .flat_map(ops)
            .collect()
    }

    #[test]
    fn statements_keep_trigger_bodies_whole_and_count_lines() {
        let sql = "CREATE TABLE a (id INTEGER);\n\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n  UPDATE a SET id = CASE WHEN id > 1 THEN 1 ELSE 2 END;\n  DELETE FROM a WHERE id = 0;\nEND;\nDROP TABLE a;\n";
        let s = statements(sql, Engine::Sqlite).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.iter().map(|s| s.line).collect::<Vec<_>>(), vec![1, 3, 7]);
        assert_eq!(&sql[s[2].start..s[2].end], "DROP TABLE a;");
        assert!(sql[s[1].start..s[1].end].ends_with("END;"));
        assert_eq!(
            ops(&s[1]),
            vec![Op::CreateTrigger {
                name: "t".into(),
                table: "a".into()
            }]
        );
    }

    #[test]
    fn alter_table_actions_become_ops() {
        let got = all_ops(
            "ALTER TABLE public.users ADD COLUMN email varchar(200) NOT NULL, DROP COLUMN name, RENAME COLUMN a TO b;\n\
             ALTER TABLE users ALTER COLUMN age TYPE smallint USING age::smallint;\n\
             ALTER TABLE users ADD CONSTRAINT u UNIQUE (email);\n\
             ALTER TABLE users RENAME TO people;",
            Engine::Postgres,
        );
        assert_eq!(
            got,
            vec![
                Op::AddColumn {
                    table: "users".into(),
                    column: "email".into(),
                    ty: "varchar(200)".into(),
                    not_null: true,
                    has_default: false
                },
                Op::DropColumn {
                    table: "users".into(),
                    column: "name".into()
                },
                Op::RenameColumn {
                    table: "users".into(),
                    from: "a".into(),
                    to: "b".into()
                },
                Op::AlterType {
                    table: "users".into(),
                    column: "age".into(),
                    ty: "smallint".into()
                },
                Op::AddConstraint {
                    table: "users".into(),
                    kind: "unique".into()
                },
                Op::RenameTable {
                    from: "users".into(),
                    to: "people".into()
                },
            ]
        );
    }

    #[test]
    fn data_statements_know_their_where() {
        let got = all_ops(
            "DELETE FROM t; DELETE FROM t WHERE id IN (SELECT 1); UPDATE t SET a = (SELECT 1 WHERE true); TRUNCATE TABLE a, b CASCADE; SELECT 1; -- done",
            Engine::Postgres,
        );
        assert_eq!(
            got,
            vec![
                Op::Delete {
                    table: "t".into(),
                    has_where: false
                },
                Op::Delete {
                    table: "t".into(),
                    has_where: true
                },
                Op::Update {
                    table: "t".into(),
                    has_where: false,
                    set: vec!["a".into()]
                },
                Op::Truncate("a".into()),
                Op::Truncate("b".into()),
                Op::Trivial,
            ]
        );
    }

    #[test]
    fn create_table_columns_and_indexes() {
        let got = all_ops(
            "CREATE TABLE IF NOT EXISTS \"Users\" (id bigint PRIMARY KEY, name text NOT NULL DEFAULT '', CONSTRAINT pk UNIQUE (name));\n\
             CREATE UNIQUE INDEX CONCURRENTLY users_name ON users (name);\n\
             CREATE INDEX ON users (id);",
            Engine::Postgres,
        );
        assert_eq!(
            got,
            vec![
                Op::CreateTable {
                    table: "Users".into(),
                    columns: vec![
                        ("id".into(), "bigint".into()),
                        ("name".into(), "text".into())
                    ]
                },
                Op::CreateIndex {
                    name: Some("users_name".into()),
                    table: "users".into(),
                    unique: true
                },
                Op::NonTransactional("CREATE INDEX CONCURRENTLY".into()),
                Op::CreateIndex {
                    name: None,
                    table: "users".into(),
                    unique: false
                },
            ]
        );
    }
}
