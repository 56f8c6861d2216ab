//! # eddy-server
//!
//! The swap server ("loop service"): the loop-out engine ([`loop_out::LoopOutServer`]) that
//! turns the persisted `eddy-core` state machine into actions on a Lightning node and the
//! chain, with per-swap keys from a seed ([`SeedKeys`]), and its JSON HTTP API ([`http`]). The HTTP API and the daemon wrap this engine.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod http;
pub mod listener;
pub mod loop_in;
pub mod loop_out;
pub mod metrics;
pub mod wallet;

/// The server's seed file in its data dir.
pub const SEED_FILE: &str = "server-seed";

pub use eddy_store::SeedKeys;
pub use loop_out::{LoopOutRecord, LoopOutRequest, LoopOutServer, ServerConfig, ServerError};
