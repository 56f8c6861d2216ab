//! # eddy-engine
//!
//! What every swap engine — the server's loop-out and loop-in, the client's loop-out and
//! loop-in — shares, written once: the generic [`runner`] (load a swap of the engine's kind,
//! apply an event through its state machine, persist the new state version-guarded *before*
//! any action, hand the actions to the engine's effects) and the one [`sweep`] path (plan,
//! build, sign, persist, broadcast and bump the claims and refunds of both kinds). An engine is
//! then its effects — paying, publishing, co-signing — and the events it reads from the world.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod runner;
pub mod sweep;
