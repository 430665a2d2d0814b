//! Migration safety: read a migration set in any common layout, lint it, and prove on a scratch
//! database that every down restores the schema its up started from (up → down → up, compared
//! by catalog fingerprints, not dump text).

pub mod apply;
pub mod checksum;
pub mod fingerprint;
#[cfg(test)]
mod fixtures;
pub mod layout;
pub mod lint;
pub mod model;
pub mod proof;
pub mod report;
pub mod scratch;

pub use layout::load;
pub use model::*;
pub use report::{CheckError, CheckOptions, MigrationReport, Report, check, check_with};
