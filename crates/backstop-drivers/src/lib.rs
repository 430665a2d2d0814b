//! backstop-drivers: the parts of Backstop that touch the world.
//!
//! - [`proxy`]: built-in HTTP reverse proxy splitting traffic between stable and canary and
//!   recording per-version requests, errors and latency histograms;
//! - [`process`]: process deployer (supervised children in their own process groups);
//! - [`load`]: paced load generator used by quickstart, tests and benchmarks.

pub mod load;
pub mod notify;
pub mod process;
pub mod proxy;
pub mod router;
