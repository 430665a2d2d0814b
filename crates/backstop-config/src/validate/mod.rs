//! Validation of the parsed YAML value: JSON Schema errors turned into readable messages
//! ([`schema`]), then the checks a schema cannot express ([`semantic`], one file per section of
//! a service). Every check runs on the raw value and tolerates what other checks reject, so one
//! pass reports every problem.

mod environment;
mod notify;
mod rollout;
mod run;
mod schema;
mod semantic;
mod severity;
mod traffic;
mod validation;

pub(crate) use schema::schema_problems;
pub(crate) use semantic::semantic_problems;

use crate::yaml::Pos;

/// A problem located by JSON pointer; the position is looked up in the [`Document`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub pos: Pos,
    pub path: String,
    pub message: String,
}
