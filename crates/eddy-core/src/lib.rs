//! # eddy-core
//!
//! The pure protocol of Eddy's Lightning ⇄ chain swaps: HTLC scripts and addresses
//! ([`htlc`]), claim/refund/cooperative transactions with exact size prediction ([`tx`]),
//! MuSig2 co-signing ([`musig`]), spend analysis and preimage extraction ([`spend`]), fee
//! math ([`fees`]), the one sweep record and plan of every claim and refund ([`sweep`]) and of a batch of them ([`batch`]), validation rules ([`validate`]), the server API's wire types and their
//! parsers ([`api`]), the safety constants they rest on
//! ([`constants`]), per-swap request signatures ([`auth`]) and the four swap state machines
//! ([`sm`]).
//!
//! Nothing here does I/O, spawns threads or is async: the daemons feed events in and run the
//! actions that come out.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod batch;
pub mod boltz;
pub mod constants;
pub mod fees;
pub mod htlc;
pub mod keyagg;
pub mod musig;
pub mod sm;
pub mod spend;
pub mod sweep;
pub mod tx;
pub mod types;
pub mod validate;

pub use htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams, SpendPathKind};
pub use types::{AmountMsat, BlockHeight, PaymentHash, Preimage, SwapDirection, SwapId};
