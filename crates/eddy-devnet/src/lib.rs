//! # eddy-devnet
//!
//! Eddy's own regtest, for tests and the demo on machines where no bitcoind can be installed.
//! Blocks are connected by Bitcoin Core's consensus engine (libbitcoinkernel); around it this
//! crate keeps a UTXO and transaction index in step with the kernel's active chain (reorgs
//! included), a mempool that checks what bitcoind's does for Eddy's transactions (inputs,
//! scripts via the kernel, finality, BIP68, RBF, min relay fee), a miner (on demand or on a
//! timer), and a bitcoind-compatible JSON-RPC server.
//!
//! A development tool, not a production node: no P2P, no policy beyond what swaps exercise.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod chain;
pub mod devnet;
pub mod mempool;
pub mod rpc;

pub use chain::{Chain, ChainError};
pub use devnet::{anyone_can_spend_script, anyone_can_spend_spk, Devnet, Miner, Tip};
pub use mempool::{MempoolEntry, RejectReason};
pub use rpc::{Auth, RpcConfig, RpcError, RpcServer};
