//! How every command prints its result: text for people or JSON for programs, from the same
//! value. A printable value implements [`Render`] (its text; its JSON comes from `Serialize`),
//! and a command hands it to [`Output::print`].

use std::io::{self, Write};

use serde::Serialize;

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Print text for people or JSON for programs.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// A result a command prints.
pub trait Render: Serialize {
    /// The text for people.
    fn text(&self, w: &mut dyn Write) -> io::Result<()>;

    /// The JSON for programs: pretty-printed unless a command's documented shape says otherwise.
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }
}

/// Prints one line on stdout; like [`Output::print`], a closed pipe ends nothing.
pub fn say_line(line: &str) {
    let _ = writeln!(io::stdout().lock(), "{line}");
}

impl Output {
    /// Prints `value` on stdout in this format. A closed pipe (`| head`) is not worth a panic,
    /// so a failed write is dropped.
    pub fn print<T: Render + ?Sized>(self, value: &T) {
        let _ = self.write(value, &mut io::stdout().lock());
    }

    /// Writes `value` to `w` in this format.
    pub fn write<T: Render + ?Sized>(self, value: &T, w: &mut dyn Write) -> io::Result<()> {
        match self {
            Output::Text => value.text(w),
            Output::Json => {
                let text = value
                    .json()
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                writeln!(w, "{text}")
            }
        }
    }
}

/// A parser for `--output` whose help describes each value, for the commands whose help always
/// did (`value_parser = output::described("…", "…")`, `default_value = "text"`).
pub fn described(
    text: &'static str,
    json: &'static str,
) -> impl clap::builder::TypedValueParser<Value = Output> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("text").help(text),
        PossibleValue::new("json").help(json),
    ])
    .map(|v| {
        if v == "json" {
            Output::Json
        } else {
            Output::Text
        }
    })
}

/// Pretty JSON with every object's keys in alphabetical order: the shape of the documents that
/// were built with `json!`, whose nested values were sorted too.
pub fn sorted_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&serde_json::to_value(value)?)
}

/// A text table whose columns are as wide as their widest value (header included), two spaces
/// apart; the last column is not padded. Columns named with a leading `>` are right-aligned.
pub fn table(w: &mut dyn Write, head: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let right: Vec<bool> = head.iter().map(|h| h.starts_with('>')).collect();
    let head: Vec<&str> = head.iter().map(|h| h.trim_start_matches('>')).collect();
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(wd) = widths.get_mut(i) {
                *wd = (*wd).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &[&str]| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            if i > 0 {
                out.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                out.push_str(&format!("{cell:>width$}"));
            } else if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}"));
            }
        }
        out
    };
    writeln!(w, "{}", line(&head))?;
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(w, "{}", line(&cells))?;
    }
    Ok(())
}

#[cfg(test)]
mod table_tests {
    #[test]
    fn columns_fit_their_widest_value() {
        let mut out = Vec::new();
        super::table(
            &mut out,
            &["NAME", ">N", "NOTE"],
            &[
                vec!["a-very-long-name".into(), "7".into(), "x".into()],
                vec!["b".into(), "123".into(), "longer note".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME                N  NOTE\na-very-long-name    7  x\nb                 123  longer note\n"
        );
    }
}
