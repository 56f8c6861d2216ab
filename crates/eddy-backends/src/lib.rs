//! # eddy-backends
//!
//! What Eddy's server and client run on, behind two traits so neither cares which:
//! [`lightning::LightningNode`] (hold invoices, payments, channels, on-chain wallet),
//! implemented on an embedded ldk-node in [`ldk`]; and [`chain::ChainSource`] (a view of the
//! best chain, the mempool, broadcast and fee estimates), implemented over bitcoind's JSON-RPC
//! in [`bitcoind`], with the [`watcher::ChainWatcher`] on top of it that follows the best chain
//! through reorgs and reports the funding outputs and spends of watched swap scripts.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod bitcoind;
pub mod chain;
pub mod health;
pub mod ldk;
pub mod lightning;
pub mod lnd;
pub mod watch;
pub mod watcher;

pub use chain::{fee_from_inputs, fee_paid, BlockRef, BroadcastError, ChainSource, ChainSourceError, TxStatus};
pub use lightning::{HoldInvoiceState, LightningNode, LnError, LnEvent, PayParams, PaymentStatus};
pub use watch::{swap_watch_id, Funding, Spend, WatchEvent, WatchId, WatchIndex, WatchStatus};
pub use watcher::ChainWatcher;
