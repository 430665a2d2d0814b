//! `run.command` templates: `{artifact}`, `{port}`, `{version}`, `{service}`, `{env}`.
//!
//! `{{` and `}}` are literal braces; `${VAR}` is left to the shell; a `{` that does not start
//! `{identifier}` (awk's `{print $1}`, brace expansion `{a,b}`) is literal too.

/// The placeholders a command template may use.
pub const PLACEHOLDERS: [&str; 5] = ["artifact", "port", "version", "service", "env"];

/// Values substituted into a command template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandVars {
    /// The release artifact (a file path or command); always shell-quoted.
    pub artifact: String,
    /// The port the version must listen on.
    pub port: u16,
    /// The release version.
    pub version: String,
    /// The service name.
    pub service: String,
    /// The environment name.
    pub env: String,
}

#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    Placeholder(&'a str),
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Splits a template into literal text and placeholders.
fn pieces(template: &str) -> Vec<Piece<'_>> {
    let bytes = template.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                out.push(Piece::Literal(&template[start..=i]));
                i += 2;
                start = i;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                out.push(Piece::Literal(&template[start..=i]));
                i += 2;
                start = i;
            }
            b'{' if i > 0 && bytes[i - 1] == b'$' => i += 1,
            b'{' if bytes.get(i + 1).is_some_and(|c| is_ident_start(*c)) => {
                let mut j = i + 1;
                while j < bytes.len() && is_ident(bytes[j]) {
                    j += 1;
                }
                if bytes.get(j) == Some(&b'}') {
                    out.push(Piece::Literal(&template[start..i]));
                    out.push(Piece::Placeholder(&template[i + 1..j]));
                    i = j + 1;
                    start = i;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push(Piece::Literal(&template[start..]));
    out.retain(|p| *p != Piece::Literal(""));
    out
}

/// The placeholders used by a template, in order (repeats included).
#[must_use]
pub fn placeholders(template: &str) -> Vec<&str> {
    pieces(template)
        .into_iter()
        .filter_map(|p| match p {
            Piece::Placeholder(name) => Some(name),
            Piece::Literal(_) => None,
        })
        .collect()
}

/// Problems of a template: unknown placeholders, missing `{port}`. Each comes with the text it
/// concerns, when there is one (to point at it).
pub(crate) fn check(template: &str) -> Vec<(Option<String>, String)> {
    let mut problems = Vec::new();
    let used = placeholders(template);
    for name in &used {
        if !PLACEHOLDERS.contains(name) {
            let hint = match crate::suggest::closest(name, PLACEHOLDERS.iter().copied()) {
                Some(s) => format!("did you mean `{{{s}}}`? "),
                None => String::new(),
            };
            problems.push((
                Some(format!("{{{name}}}")),
                format!(
                    "unknown placeholder `{{{name}}}` ({hint}allowed: {}; write `{{{{` for a literal brace)",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                ),
            ));
        }
    }
    if !used.contains(&"port") {
        problems.push((
            None,
            "the command must contain `{port}`: each version is started on its own free port (e.g. `./app --port {port}`)"
                .to_owned(),
        ));
    }
    problems
}

/// Quotes `s` for a POSIX shell; strings made only of safe characters are left as they are.
#[must_use]
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | '.' | '/' | ':' | '=' | '@' | '%' | '+' | ',')
        });
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Substitutes the placeholders of `template`. Every value is shell-quoted when it holds anything
/// but safe characters (`{artifact}` always is: it comes from the user). Unknown placeholders
/// (rejected by validation) are kept as written.
#[must_use]
pub fn render_command(template: &str, vars: &CommandVars) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    for piece in pieces(template) {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Placeholder(name) => match name {
                "artifact" => out.push_str(&shell_quote(&vars.artifact)),
                "port" => out.push_str(&vars.port.to_string()),
                "version" => out.push_str(&shell_quote(&vars.version)),
                "service" => out.push_str(&shell_quote(&vars.service)),
                "env" => out.push_str(&shell_quote(&vars.env)),
                other => {
                    out.push('{');
                    out.push_str(other);
                    out.push('}');
                }
            },
        }
    }
    out
}

/// Substitutes placeholders with `value(name)` (shell-quoted when needed); names it does not
/// know are kept as written. For the other command templates (stateful components).
pub(crate) fn render_with(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    for piece in pieces(template) {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Placeholder(name) => match value(name) {
                Some(v) => out.push_str(&shell_quote(&v)),
                None => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> CommandVars {
        CommandVars {
            artifact: "./my app's.bin".into(),
            port: 8081,
            version: "v2".into(),
            service: "checkout".into(),
            env: "prod".into(),
        }
    }

    #[test]
    fn renders_and_quotes() {
        let out = render_command(
            "{artifact} --port {port} --v {version} {service}/{env}",
            &vars(),
        );
        assert_eq!(out, r"'./my app'\''s.bin' --port 8081 --v v2 checkout/prod");
    }

    #[test]
    fn braces_shell_vars_and_awk_are_literal() {
        let out = render_command(
            "echo {{x}} ${HOME} {a,b} awk '{print $1}' --port={port}",
            &vars(),
        );
        assert_eq!(out, "echo {x} ${HOME} {a,b} awk '{print $1}' --port=8081");
        assert_eq!(placeholders("${PORT} {port} {{port}}"), vec!["port"]);
    }

    #[test]
    fn check_reports_unknown_and_missing_port() {
        assert!(check("./app --port {port}").is_empty());
        let problems = check("./app --listen {prot}");
        assert_eq!(problems.len(), 2, "{problems:?}");
        let (needle, message) = &problems[0];
        assert_eq!(needle.as_deref(), Some("{prot}"));
        assert!(
            message.contains("unknown placeholder `{prot}`"),
            "{message}"
        );
        assert!(message.contains("did you mean `{port}`"), "{message}");
        assert!(problems[1].1.contains("must contain `{port}`"));
    }

    #[test]
    fn shell_quote_cases() {
        assert_eq!(shell_quote("abc-1.2/x"), "abc-1.2/x");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
