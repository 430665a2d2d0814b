//! Every script must be valid SQL for its engine before anything else is checked: PostgreSQL
//! scripts go through squawk's parser (the PostgreSQL grammar, error-recovering), SQLite scripts
//! through sqlparser's SQLite dialect. Every script is parsed; the errors are one [`InputError`]
//! at the first `file:line`, listing the others, so a history is fixed in one pass.

use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

use super::sql::statements;
use crate::model::{Engine, InputError, MigrationSet, Script};

/// The file line of byte `offset` in a script.
pub(crate) fn file_line(script: &Script, offset: usize) -> u32 {
    let upto = offset.min(script.sql.len());
    let newlines = script.sql.as_bytes()[..upto]
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    script
        .line
        .saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX))
}

/// The file line of a 1-based line inside a script's SQL.
pub(crate) fn script_line(script: &Script, line_in_sql: u32) -> u32 {
    script.line.saturating_add(line_in_sql.saturating_sub(1))
}

/// Parse one script; `Err` names the file and the line of the first bad statement.
pub fn parse_script(script: &Script, engine: Engine) -> Result<(), InputError> {
    let errors = match engine {
        Engine::Postgres => parse_postgres(script).into_iter().collect(),
        Engine::Sqlite => parse_sqlite(std::slice::from_ref(script)),
    };
    combine(errors)
}

/// Words that start a statement: right after a line break, a parser's "missing comma" or
/// "syntax error near CREATE" means the statement before lacks its `;`.
const STATEMENT_WORDS: &[&str] = &[
    "create", "alter", "drop", "insert", "update", "delete", "select", "grant", "revoke",
    "comment", "truncate", "with", "do", "set", "begin", "commit", "pragma", "replace", "analyze",
    "vacuum", "reindex", "refresh", "cluster", "lock",
];

/// The identifier-like word `text` starts with, lowercased (`lock_version`, not `lock`).
fn first_word(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// `text` (what follows a parse error) starts, on a later line, with a statement word.
fn next_line_starts_statement(text: &str) -> bool {
    let trimmed = text.trim_start();
    let skipped = &text[..text.len() - trimmed.len()];
    let word = first_word(trimmed);
    skipped.contains('\n') && STATEMENT_WORDS.contains(&word.as_str())
}

fn parse_postgres(script: &Script) -> Option<InputError> {
    let parse = squawk_syntax::SourceFile::parse(&script.sql);
    let errors = parse.errors();
    let e = errors.first()?;
    let offset = usize::from(e.range().start()).min(script.sql.len());
    let after = script.sql.get(offset..).unwrap_or_default();
    let message = if e
        .message()
        .eq_ignore_ascii_case("missing semicolon between statements")
        || (matches!(e.message(), "missing comma" | "expected COMMA")
            && next_line_starts_statement(after))
    {
        "not valid PostgreSQL: missing `;` at the end of this line: the next statement starts on \
         the line after it"
            .to_string()
    } else {
        format!("not valid PostgreSQL: {}", e.message())
    };
    Some(InputError {
        file: script.file.clone(),
        line: Some(file_line(script, offset)),
        message,
    })
}

/// At most this many parse errors are listed; the rest are counted.
const MAX_LISTED_ERRORS: usize = 50;

/// One error for all: the first one's place, the others listed in its message.
fn combine(mut errors: Vec<InputError>) -> Result<(), InputError> {
    if errors.is_empty() {
        return Ok(());
    }
    let rest = errors.split_off(1);
    let mut first = errors.remove(0);
    if !rest.is_empty() {
        first.message.push_str(&format!(
            "\n{} more {} not parse:",
            rest.len(),
            if rest.len() == 1 {
                "script does"
            } else {
                "scripts do"
            }
        ));
        for e in rest.iter().take(MAX_LISTED_ERRORS) {
            first.message.push_str(&format!("\n  {e}"));
        }
        if rest.len() > MAX_LISTED_ERRORS {
            first.message.push_str(&format!(
                "\n  … and {} more",
                rest.len() - MAX_LISTED_ERRORS
            ));
        }
    }
    Err(first)
}

/// A statement of a script, to be confirmed by SQLite.
struct Pending<'a> {
    script: &'a Script,
    sql: String,
    /// File line of the statement, or of sqlparser's error inside it.
    line: u32,
}

/// Every statement is tokenized and parsed by sqlparser's SQLite dialect, then prepared by
/// SQLite itself on an empty in-memory database, which has the final word: sqlparser both
/// rejects valid SQLite (`PRAGMA foreign_keys = ON`) and accepts invalid SQLite
/// (`ALTER TABLE t ADD COLUMN;`). Only SQLite's syntax errors count (a missing table does not:
/// nothing exists in that database).
fn parse_sqlite(scripts: &[Script]) -> Vec<InputError> {
    let dialect = SQLiteDialect {};
    let mut pending: Vec<Pending> = Vec::new();
    let mut errors = Vec::new();
    for script in scripts {
        let whole = Parser::parse_sql(&dialect, &script.sql);
        let Some(stmts) = statements(&script.sql, Engine::Sqlite) else {
            // The tokenizer itself failed (an unterminated string or quote): no engine takes it.
            let text = whole.err().map(|e| e.to_string()).unwrap_or_default();
            let line = error_line(&text).map_or(script.line, |l| script_line(script, l));
            errors.push(InputError {
                file: script.file.clone(),
                line: Some(line),
                message: format!("not valid SQLite SQL: {}", clean(&text)),
            });
            continue;
        };
        for st in stmts {
            let text = script.sql.get(st.start..st.end).unwrap_or("").to_string();
            let mut line = script_line(script, st.line);
            if whole.is_err()
                && let Err(e) = Parser::parse_sql(&dialect, &text)
            {
                let msg = e.to_string();
                line = line.saturating_add(error_line(&msg).map_or(0, |l| l.saturating_sub(1)));
            }
            pending.push(Pending {
                script,
                sql: text,
                line,
            });
        }
    }
    if pending.is_empty() {
        return errors;
    }
    let verdicts = sqlite_syntax_errors(pending.iter().map(|r| r.sql.clone()).collect());
    let mut seen_scripts = std::collections::HashSet::new();
    for (r, verdict) in pending.iter().zip(verdicts) {
        let message = match verdict {
            SqliteVerdict::Accepted => continue,
            SqliteVerdict::SyntaxError(m) => {
                // `near "CREATE": syntax error` on a later line: the `;` before it is missing.
                let near = m
                    .strip_prefix("near \"")
                    .and_then(|rest| rest.split_once('"'))
                    .map(|(word, _)| word.to_ascii_lowercase());
                // A line starting with that word after a line that ends a statement (not a
                // column list: `update TEXT` after `id INTEGER,` is a column).
                let missing_semicolon = near.as_ref().is_some_and(|w| {
                    let lines: Vec<&str> = r.sql.lines().collect();
                    STATEMENT_WORDS.contains(&w.as_str())
                        && (1..lines.len()).any(|i| {
                            let first = first_word(lines[i].trim_start());
                            let before = lines[..i]
                                .iter()
                                .rev()
                                .map(|l| l.split("--").next().unwrap_or("").trim_end())
                                .find(|l| !l.is_empty())
                                .unwrap_or("");
                            first == *w && !before.ends_with(',') && !before.ends_with('(')
                        })
                });
                if missing_semicolon {
                    format!(
                        "not valid SQLite SQL: {m}: missing `;` before the {} on this line",
                        near.unwrap_or_default().to_ascii_uppercase()
                    )
                } else {
                    format!("not valid SQLite SQL: {m}")
                }
            }
            SqliteVerdict::Unavailable(why) => {
                format!("cannot check the SQL: SQLite is not available here: {why}")
            }
        };
        // The first error of each script (later ones often follow from it).
        if !seen_scripts.insert((r.script.file.clone(), r.script.line)) {
            continue;
        }
        errors.push(InputError {
            file: r.script.file.clone(),
            line: Some(r.line),
            message,
        });
    }
    errors
}

enum SqliteVerdict {
    Accepted,
    SyntaxError(String),
    Unavailable(String),
}

/// Prepare each statement on a fresh in-memory SQLite (on a thread of its own, so this works
/// inside or outside an async runtime).
fn sqlite_syntax_errors(stmts: Vec<String>) -> Vec<SqliteVerdict> {
    let count = stmts.len();
    let joined = std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().build() {
            Ok(rt) => rt,
            Err(e) => {
                return stmts
                    .iter()
                    .map(|_| SqliteVerdict::Unavailable(e.to_string()))
                    .collect();
            }
        };
        rt.block_on(async move {
            use sqlx::{AssertSqlSafe, Connection, Executor, SqlSafeStr};
            let mut conn = match sqlx::SqliteConnection::connect("sqlite::memory:").await {
                Ok(c) => c,
                Err(e) => {
                    return stmts
                        .iter()
                        .map(|_| SqliteVerdict::Unavailable(e.to_string()))
                        .collect::<Vec<_>>();
                }
            };
            let mut out = Vec::with_capacity(stmts.len());
            for sql in &stmts {
                let verdict = match conn
                    .prepare(AssertSqlSafe(sql.clone()).into_sql_str())
                    .await
                {
                    Ok(_) => SqliteVerdict::Accepted,
                    Err(e) => {
                        let m = e
                            .as_database_error()
                            .map_or_else(|| e.to_string(), |d| d.message().to_string());
                        if m.contains("syntax error")
                            || m.contains("incomplete input")
                            || m.contains("unrecognized token")
                        {
                            SqliteVerdict::SyntaxError(m)
                        } else {
                            SqliteVerdict::Accepted
                        }
                    }
                };
                out.push(verdict);
            }
            let _ = conn.close().await;
            out
        })
    })
    .join();
    joined.unwrap_or_else(|_| {
        (0..count)
            .map(|_| SqliteVerdict::Unavailable("the SQLite check stopped".into()))
            .collect()
    })
}

/// sqlparser's message without its prefix and location (the line is reported separately).
fn clean(text: &str) -> String {
    text.split(" at Line: ")
        .next()
        .unwrap_or(text)
        .trim_start_matches("sql parser error: ")
        .to_string()
}

/// `… at Line: 3, Column: 7` → 3.
fn error_line(text: &str) -> Option<u32> {
    let (_, rest) = text.rsplit_once("Line: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|l| *l > 0)
}

/// Parse every script of the set (ups, downs, verifies) in apply order.
pub fn parse_set(set: &MigrationSet, engine: Engine) -> Result<(), InputError> {
    let mut scripts: Vec<Script> = Vec::new();
    for m in &set.migrations {
        scripts.push(m.up.clone());
        if let Some(d) = &m.down {
            scripts.push(d.clone());
        }
        if let Some(v) = &m.verify {
            scripts.push(v.clone());
        }
    }
    let mut errors: Vec<InputError> = match engine {
        Engine::Postgres => scripts.iter().filter_map(parse_postgres).collect(),
        Engine::Sqlite => parse_sqlite(&scripts),
    };
    // The default engine is SQLite: a PostgreSQL history checked without --engine postgres
    // fails here first, so say so when the other engine takes the script.
    if let Some(first) = errors.first_mut() {
        // The script the error is in: several sections of one file (goose, dbmate) are several
        // scripts.
        let line = first.line.unwrap_or(0);
        let script = scripts
            .iter()
            .filter(|s| s.file == first.file && s.line <= line.max(1))
            .max_by_key(|s| s.line);
        let other_takes_it = script.is_some_and(|s| match engine {
            Engine::Sqlite => parse_postgres(s).is_none(),
            Engine::Postgres => parse_sqlite(std::slice::from_ref(s)).is_empty(),
        });
        if other_takes_it {
            first.message.push_str(match engine {
                Engine::Sqlite => " (this script is valid PostgreSQL: pass --engine postgres)",
                Engine::Postgres => " (this script is valid SQLite: pass --engine sqlite)",
            });
        }
    }
    combine(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(sql: &str, line: u32) -> Script {
        Script {
            file: "0002_x.up.sql".into(),
            line,
            sql: sql.into(),
        }
    }

    #[test]
    fn sqlite_error_names_the_line_in_the_file() {
        let s = script(
            "CREATE TABLE a (id INTEGER);\n\nCREATE TABLE b (id INTEGER,, x);\n",
            5,
        );
        let e = parse_script(&s, Engine::Sqlite).unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        assert!(
            e.to_string()
                .starts_with("0002_x.up.sql:7: not valid SQLite SQL: near \",\": syntax error"),
            "{e}"
        );
    }

    #[test]
    fn postgres_error_names_the_line_in_the_file() {
        let s = script(
            "CREATE TABLE a (id bigint);\nALTER TABLE a ADD COLUMN;\n",
            1,
        );
        let e = parse_script(&s, Engine::Postgres).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn valid_scripts_pass_on_both_engines() {
        let sqlite = script(
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL DEFAULT '') STRICT;\n\
             CREATE INDEX IF NOT EXISTS t_name ON t (name);\n\
             CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET name = 'x' WHERE id = NEW.id; END;\n\
             ALTER TABLE t DROP COLUMN name;\nPRAGMA foreign_keys = ON;\n-- only a comment\n",
            1,
        );
        parse_script(&sqlite, Engine::Sqlite).unwrap();
        let pg = script(
            "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);\n\
             CREATE INDEX CONCURRENTLY IF NOT EXISTS t_name ON t (name);\n\
             DO $$ BEGIN RAISE NOTICE 'x'; END $$;\nALTER TYPE mood ADD VALUE 'ok' BEFORE 'sad';\n",
            1,
        );
        parse_script(&pg, Engine::Postgres).unwrap();
    }

    #[test]
    fn a_missing_semicolon_is_named_as_such() {
        let pg = script(
            "ALTER TABLE a ADD COLUMN x int\nALTER TABLE a ADD COLUMN y int;\n",
            1,
        );
        let e = parse_script(&pg, Engine::Postgres).unwrap_err();
        assert!(e.message.contains("missing `;`"), "{e}");
        assert_eq!(e.line, Some(1), "{e}");
        let lite = script(
            "CREATE TABLE a (id INTEGER)\nCREATE TABLE b (id INTEGER);\n",
            1,
        );
        let e = parse_script(&lite, Engine::Sqlite).unwrap_err();
        assert!(e.message.contains("missing `;`"), "{e}");
    }

    #[test]
    fn a_missing_semicolon_is_not_claimed_where_it_is_not() {
        let pg = script("UPDATE t SET a = 1\nUPDATE t SET b = 2;\n", 1);
        let e = parse_script(&pg, Engine::Postgres).unwrap_err();
        assert!(e.message.contains("missing `;`"), "{e}");
        // A keyword as a column name is another error.
        let lite = script("CREATE TABLE t (\n  id INTEGER,\n  update TEXT\n);\n", 1);
        if let Err(e) = parse_script(&lite, Engine::Sqlite) {
            assert!(!e.message.contains("missing `;`"), "{e}");
        }
    }

    #[test]
    fn every_bad_script_of_a_set_is_listed_and_the_other_engine_is_suggested() {
        let m = |v: &str, up: &str| crate::fixtures::paired(v, "x", up, None);
        let set = crate::fixtures::set(
            "set",
            vec![
                m("0001", "CREATE INDEX CONCURRENTLY i ON t (c);\n"),
                m("0002", "CREATE TABLE ok (id INTEGER);\n"),
                m("0003", "CREATE TABLE b (id INTEGER,, x);\n"),
            ],
        );
        let e = parse_set(&set, Engine::Sqlite).unwrap_err();
        assert_eq!(e.file, std::path::PathBuf::from("0001_x.up.sql"));
        assert!(e.message.contains("pass --engine postgres"), "{e}");
        assert!(e.message.contains("1 more script does not parse"), "{e}");
        assert!(e.message.contains("0003_x.up.sql:1"), "{e}");
    }
}
