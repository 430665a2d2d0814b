//! Config errors: each names the file, line, column and JSON pointer of the problem.

use std::fmt;

use serde::Serialize;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    /// The file name as given to [`crate::parse`] / [`crate::load`].
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file (e.g. it cannot be read).
    pub line: usize,
    /// 1-based column (in characters); 0 when `line` is 0.
    pub col: usize,
    /// JSON pointer of the value or key concerned (`/services/0/tier`); empty for the top level.
    pub path: String,
    /// What is wrong, then a hint in parentheses when there is one.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        if self.line == 0 {
            write!(f, "{}: {}: {}", self.file, path, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.col, path, self.message
            )
        }
    }
}

/// Every problem found in a config file, sorted by position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Sorts by position and drops exact duplicates.
    pub(crate) fn normalized(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by(|a, b| {
            (a.line, a.col, &a.path, &a.message).cmp(&(b.line, b.col, &b.path, &b.message))
        });
        errors.dedup();
        Self(errors)
    }

    /// Number of errors.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no error.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// The `--output json` shape: `{"valid": false, "errors": [{file, line, col, path, message}]}`.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "valid": false, "errors": self.0 })
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
