//! A small SQL lexer: enough to split a script into statements (dollar quotes, strings, quoted
//! identifiers, nested comments), to notice explicit transaction control, and to normalize SQLite
//! schema text so that quoting, case, comments and whitespace do not count as schema changes.

/// Which quoting rules apply: SQLite also quotes identifiers with `[…]` and backticks;
/// PostgreSQL has dollar quotes, `E'…'` strings and nested block comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// A bare word: keyword, identifier or number.
    Word,
    /// `"x"`, `` `x` `` or `[x]`; `text` is the identifier without quotes.
    QuotedIdent,
    /// A string literal, quotes included (`'it''s'`, `E'\n'`, `$f$…$f$`).
    Str,
    /// An operator or punctuation (`(`, `,`, `<=`, `::`).
    Punct,
    /// `;`
    Semicolon,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokKind,
    pub text: String,
    /// Byte offset of the token in the source.
    pub start: usize,
}

impl Token {
    /// The lower-cased word, or `""` for anything that is not a bare word.
    pub fn word(&self) -> String {
        if self.kind == TokKind::Word {
            self.text.to_ascii_lowercase()
        } else {
            String::new()
        }
    }

    pub fn is_word(&self, w: &str) -> bool {
        self.kind == TokKind::Word && self.text.eq_ignore_ascii_case(w)
    }

    pub fn is_punct(&self, p: &str) -> bool {
        self.kind == TokKind::Punct && self.text == p
    }

    /// The name this token stands for when it is an identifier (quoted or bare).
    pub fn ident(&self) -> Option<String> {
        match self.kind {
            TokKind::Word => Some(self.text.clone()),
            TokKind::QuotedIdent => Some(self.text.clone()),
            TokKind::Str if self.text.starts_with('\'') => {
                // SQLite accepts 'name' where an identifier is expected.
                Some(self.text.trim_matches('\'').replace("''", "'"))
            }
            _ => None,
        }
    }
}

const MULTI_PUNCT: [&str; 12] = [
    "->>", "<=", ">=", "<>", "!=", "==", "||", "<<", ">>", "->", "::", ":=",
];

/// Splits `sql` into tokens, dropping whitespace and comments. Unterminated strings, quoted
/// identifiers and comments run to the end of the input (the database reports the real error).
pub(crate) fn lex(sql: &str, dialect: Dialect) -> Vec<Token> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'-' && bytes.get(i + 1) == Some(&b'-') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            i += 2;
            let mut depth = 1;
            while i < bytes.len() && depth > 0 {
                if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                } else if dialect == Dialect::Postgres
                    && bytes[i] == b'/'
                    && bytes.get(i + 1) == Some(&b'*')
                {
                    depth += 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
        } else if c == b'\'' {
            i = end_of_quoted(bytes, i, b'\'', false);
            out.push(tok(TokKind::Str, &sql[start..i], start));
        } else if (c == b'e' || c == b'E')
            && dialect == Dialect::Postgres
            && bytes.get(i + 1) == Some(&b'\'')
        {
            i = end_of_quoted(bytes, i + 1, b'\'', true);
            out.push(tok(TokKind::Str, &sql[start..i], start));
        } else if c == b'"' || (dialect == Dialect::Sqlite && c == b'`') {
            i = end_of_quoted(bytes, i, c, false);
            let inner = &sql[start + 1..i.saturating_sub(1).max(start + 1)];
            let doubled = if c == b'"' { "\"\"" } else { "``" };
            let name = inner.replace(doubled, &doubled[..1]);
            out.push(Token {
                kind: TokKind::QuotedIdent,
                text: name,
                start,
            });
        } else if c == b'[' && dialect == Dialect::Sqlite {
            while i < bytes.len() && bytes[i] != b']' {
                i += 1;
            }
            let name = sql[start + 1..i].to_string();
            i = (i + 1).min(bytes.len());
            out.push(Token {
                kind: TokKind::QuotedIdent,
                text: name,
                start,
            });
        } else if c == b'$' && dialect == Dialect::Postgres && dollar_tag(sql, i).is_some() {
            let tag = dollar_tag(sql, i).unwrap_or_default();
            let body_start = i + tag.len();
            i = match sql[body_start..].find(&tag) {
                Some(p) => body_start + p + tag.len(),
                None => bytes.len(),
            };
            out.push(tok(TokKind::Str, &sql[start..i], start));
        } else if c == b';' {
            i += 1;
            out.push(tok(TokKind::Semicolon, ";", start));
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 || c == b'$' {
            i += 1;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric()
                    || bytes[i] == b'_'
                    || bytes[i] == b'$'
                    || bytes[i] >= 0x80
                    || (bytes[i] == b'.'
                        && bytes[start].is_ascii_digit()
                        && bytes[i - 1].is_ascii_digit()))
            {
                i += 1;
            }
            out.push(tok(TokKind::Word, &sql[start..i], start));
        } else {
            let rest = &sql[i..];
            let len = MULTI_PUNCT
                .iter()
                .find(|p| rest.starts_with(**p))
                .map_or_else(
                    || rest.chars().next().map_or(1, char::len_utf8),
                    |p| p.len(),
                );
            i += len;
            out.push(tok(TokKind::Punct, &sql[start..i], start));
        }
    }
    out
}

fn tok(kind: TokKind, text: &str, start: usize) -> Token {
    Token {
        kind,
        text: text.to_string(),
        start,
    }
}

/// Index just past the closing `quote` of the literal opened at `open`.
fn end_of_quoted(bytes: &[u8], open: usize, quote: u8, backslash: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if backslash && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// `$tag$` or `$$` starting at `i`, if that is what is there (`$1` is a parameter).
fn dollar_tag(sql: &str, i: usize) -> Option<String> {
    let rest = &sql[i + 1..];
    let end = rest.find('$')?;
    let tag = &rest[..end];
    let ok = tag.is_empty()
        || (tag
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && tag.chars().all(|c| c.is_alphanumeric() || c == '_'));
    ok.then(|| format!("${tag}$"))
}

/// The statements of a script: `(byte offset, source text without the `;`)`, skipping empty ones.
/// Semicolons inside a body that a `CREATE` statement opens with `BEGIN` (SQLite triggers,
/// PostgreSQL `BEGIN ATOMIC` functions) do not end the statement; its `END` does (`CASE … END`
/// inside the body is counted).
pub(crate) fn split_statements(sql: &str, dialect: Dialect) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut from: Option<usize> = None;
    let mut creating = false;
    let mut in_body = false;
    let mut case_depth = 0u32;
    for t in lex(sql, dialect) {
        if t.kind == TokKind::Semicolon {
            if in_body {
                continue;
            }
            if let Some(f) = from.take() {
                out.push((f, sql[f..t.start].trim_end().to_string()));
            }
            creating = false;
            continue;
        }
        if from.is_none() {
            from = Some(t.start);
            creating = t.is_word("create");
            continue;
        }
        if !creating {
            continue;
        }
        if !in_body && t.is_word("begin") {
            in_body = true;
            case_depth = 0;
        } else if in_body && t.is_word("case") {
            case_depth += 1;
        } else if in_body && t.is_word("end") {
            if case_depth == 0 {
                in_body = false;
            } else {
                case_depth -= 1;
            }
        }
    }
    if let Some(f) = from {
        out.push((f, sql[f..].trim_end().to_string()));
    }
    out
}

/// Whether the script manages its own transactions (`BEGIN`, `COMMIT`, `ROLLBACK`,
/// `START TRANSACTION`, and PostgreSQL's `END`), so it must not be wrapped in another one.
pub(crate) fn has_transaction_control(sql: &str, dialect: Dialect) -> bool {
    let toks = lex(sql, dialect);
    let mut at_start = true;
    for (i, t) in toks.iter().enumerate() {
        if t.kind == TokKind::Semicolon {
            at_start = true;
            continue;
        }
        if at_start {
            let w = t.word();
            let next = toks.get(i + 1).map(Token::word).unwrap_or_default();
            let ends_here = toks.get(i + 1).is_none_or(|n| n.kind == TokKind::Semicolon);
            let control = match w.as_str() {
                "commit" | "rollback" => true,
                "end" => dialect == Dialect::Postgres && ends_here,
                "start" => next == "transaction",
                "begin" => {
                    ends_here
                        || matches!(
                            next.as_str(),
                            "transaction"
                                | "work"
                                | "deferred"
                                | "immediate"
                                | "exclusive"
                                | "isolation"
                                | "read"
                        )
                }
                _ => false,
            };
            if control {
                return true;
            }
        }
        at_start = false;
    }
    false
}

/// A canonical rendering of SQLite schema text: comments and whitespace dropped, words and
/// identifiers lower-cased (SQLite compares names case-insensitively), identifier quotes removed
/// where the name needs none. `CREATE TABLE "t"` and `create table t` render the same.
pub(crate) fn normalize(tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut prev: Option<&Token> = None;
    for t in tokens {
        let text = match t.kind {
            TokKind::Word => t.text.to_ascii_lowercase(),
            TokKind::QuotedIdent => render_ident(&t.text),
            TokKind::Str | TokKind::Punct | TokKind::Semicolon => t.text.clone(),
        };
        let glue = match prev {
            None => false,
            Some(p) => {
                p.is_punct("(")
                    || p.is_punct(".")
                    || t.is_punct(")")
                    || t.is_punct(",")
                    || t.is_punct(".")
                    || t.kind == TokKind::Semicolon
                    || (t.is_punct("(") && p.kind != TokKind::Punct && !is_keyword_before_paren(p))
            }
        };
        if !glue && prev.is_some() {
            out.push(' ');
        }
        out.push_str(&text);
        prev = Some(t);
    }
    out
}

/// Keywords after which `(` reads better with a space (`check (a > 0)`, `as (select …)`).
fn is_keyword_before_paren(t: &Token) -> bool {
    t.kind == TokKind::Word
        && matches!(
            t.word().as_str(),
            "check"
                | "as"
                | "in"
                | "on"
                | "using"
                | "values"
                | "and"
                | "or"
                | "not"
                | "exists"
                | "key"
                | "unique"
        )
}

/// An identifier as it should be written: bare when it is a plain lower-case name, quoted otherwise.
pub(crate) fn render_ident(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let plain = lower
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && lower.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        lower
    } else {
        format!("\"{}\"", lower.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_around_dollar_quotes_strings_and_comments() {
        let sql = "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                   -- a comment; with a semicolon\n\
                   INSERT INTO t VALUES ('a;b', E'c\\';d');\n\
                   /* outer /* nested; */ still; */ CREATE INDEX CONCURRENTLY i ON t (a)";
        let stmts: Vec<String> = split_statements(sql, Dialect::Postgres)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(stmts.len(), 3, "{stmts:?}");
        assert!(stmts[0].ends_with("LANGUAGE sql"));
        assert_eq!(stmts[1], "INSERT INTO t VALUES ('a;b', E'c\\';d')");
        assert_eq!(stmts[2], "CREATE INDEX CONCURRENTLY i ON t (a)");
    }

    #[test]
    fn trigger_and_begin_atomic_bodies_stay_one_statement() {
        let sql = "CREATE TABLE t (a int);\n\
                   CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  UPDATE t SET a = CASE WHEN a > 0 THEN 1 ELSE 0 END;\n  DELETE FROM t WHERE a < 0;\nEND;\n\
                   INSERT INTO t VALUES (1)";
        let stmts = split_statements(sql, Dialect::Sqlite);
        assert_eq!(stmts.len(), 3, "{stmts:?}");
        assert!(
            stmts[1].1.starts_with("CREATE TRIGGER") && stmts[1].1.ends_with("END"),
            "{stmts:?}"
        );
        assert_eq!(stmts[2].0, sql.rfind("INSERT").unwrap_or_default());
        let pg = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT f()";
        assert_eq!(split_statements(pg, Dialect::Postgres).len(), 2);
    }

    #[test]
    fn transaction_control_is_found_at_statement_starts_only() {
        assert!(has_transaction_control(
            "BEGIN;\nCREATE TABLE t (a int);\nCOMMIT;",
            Dialect::Sqlite
        ));
        assert!(has_transaction_control(
            "start transaction; select 1; end;",
            Dialect::Postgres
        ));
        let trigger = "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = 1; END;";
        assert!(!has_transaction_control(trigger, Dialect::Sqlite));
        let body = "DO $$ BEGIN PERFORM 1; END $$;";
        assert!(!has_transaction_control(body, Dialect::Postgres));
    }

    #[test]
    fn normalization_ignores_quoting_case_comments_and_spacing() {
        let a = normalize(&lex(
            "CREATE TABLE \"users\" (\n  id INTEGER, -- key\n  [Name] text CHECK(length(name)>0))",
            Dialect::Sqlite,
        ));
        let b = normalize(&lex(
            "create table users (id integer, name TEXT check (length( name ) > 0))",
            Dialect::Sqlite,
        ));
        assert_eq!(a, b);
        assert_eq!(
            b,
            "create table users(id integer, name text check (length(name) > 0))"
        );
        let c = normalize(&lex(
            "create table users (id integer, name text check (length(name) >= 0))",
            Dialect::Sqlite,
        ));
        assert_ne!(b, c);
        // String literals keep their case and quotes.
        assert_eq!(
            normalize(&lex("DEFAULT 'Ab'", Dialect::Sqlite)),
            "default 'Ab'"
        );
    }
}
