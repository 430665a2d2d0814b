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
