//! # eddy-server
//!
//! The swap server ("loop service"): the loop-out engine ([`loop_out::LoopOutServer`]) that
//! turns the persisted `eddy-core` state machine into actions on a Lightning node and the
//! chain, and its key derivation ([`keys`]). The HTTP API and the daemon wrap this engine.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod keys;
pub mod loop_out;

pub use keys::ServerKeys;
pub use loop_out::{LoopOutRecord, LoopOutRequest, LoopOutServer, ServerConfig, ServerError};
