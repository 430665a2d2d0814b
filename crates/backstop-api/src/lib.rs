//! The wire types of the daemon's `/api/v1`: what the server answers and accepts, and what the
//! CLI sends and reads, in one place so the two cannot drift apart.
//!
//! Domain types (`Rollout`, `Release`, `Recovery`, …) live in `backstop-core` and are used here
//! as they are; this crate holds only the requests, queries and views of the API. It has no I/O.

pub mod alerts;
pub mod audit;
pub mod breakers;
pub mod calibration;
pub mod cluster;
pub mod config;
pub mod dora;
pub mod drills;
pub mod error;
pub mod flags;
pub mod freezes;
pub mod gate;
pub mod groups;
pub mod heartbeats;
pub mod incidents;
pub mod releases;
pub mod rollouts;
pub mod runbooks;
pub mod services;
pub mod ships;
pub mod tokens;

pub use error::{ErrorBody, ErrorDetail};

use serde::{Deserialize, Serialize};

/// `?service=&limit=` of the lists of releases, rollouts, recoveries and drills.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ListQuery {
    pub service: Option<String>,
    pub limit: Option<i64>,
}
