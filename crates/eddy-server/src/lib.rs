//! # eddy-server
//!
//! The swap server ("loop service"): [`SwapServer`] holds the parts every swap kind shares
//! ([`ServerCore`]: settings, store, Lightning node, chain watcher, swap wallet, watchdog,
//! metrics) and one engine per swap kind ([`LoopOutEngine`], [`LoopInEngine`]), each turning
//! its persisted `eddy-core` state machine into actions on the node and the chain through the
//! generic runner (`eddy_engine::runner`), with per-swap keys from a seed ([`SeedKeys`]). The
//! JSON HTTP API ([`http`]) and the operator's admin API ([`admin`]) wrap it.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod admin;
pub mod http;
pub mod listener;
pub mod loop_in;
pub mod loop_in_claims;
pub mod loop_out;
pub mod metrics;
pub mod publisher;
pub mod server;
pub mod server_core;
pub mod wallet;

/// The server's seed file in its data dir.
pub const SEED_FILE: &str = "server-seed";

pub use eddy_store::SeedKeys;
pub use loop_in::{LoopInEngine, ServerLoopIn};
pub use loop_out::{LoopOutEngine, LoopOutRequest, ServerLoopOut};
pub use server::SwapServer;
pub use server_core::{ServerConfig, ServerCore, ServerError};
