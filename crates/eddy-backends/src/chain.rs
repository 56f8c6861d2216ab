//! The [`ChainSource`] trait: everything Eddy needs from a Bitcoin node, stated so that an
//! implementation over bitcoind's RPC, Esplora or a light client can satisfy it.
//!
//! Contract highlights (the conformance suite in `tests/chain_source.rs` checks each):
//! - `broadcast` is idempotent: a transaction already in the mempool or the chain is success.
//!   A broadcast is never final — mempools forget — so callers re-broadcast until buried.
//! - `fee_rate` never fails for lack of estimator data: it falls back to the configured rate,
//!   and never answers below the node's mempool minimum.
//! - Lookups of unknown blocks or transactions return `Ok(None)`; `Err` means the source could
//!   not answer (retry later), never "does not exist".
//! - `transaction` finds every mempool transaction, and confirmed ones at least in the blocks
//!   the caller read through `block` (what the chain watcher does for every block it follows)
//!   and in the last few blocks: no full transaction index (bitcoind's `-txindex`) is needed.

use std::time::Duration;

use async_trait::async_trait;
use bitcoin::{Block, BlockHash, FeeRate, Network, OutPoint, Transaction, Txid};

/// A block by height and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockRef {
    /// Its height.
    pub height: u32,
    /// Its hash.
    pub hash: BlockHash,
}

/// A transaction and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxStatus {
    /// The transaction.
    pub tx: Transaction,
    /// The block holding it in the best chain; `None` while in the mempool.
    pub block: Option<BlockRef>,
}

/// The source could not answer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ChainSourceError {
    /// Not reachable or timed out; try again.
    #[error("chain source unavailable: {0}")]
    Unavailable(String),
    /// It answered something we do not understand.
    #[error("chain source protocol error: {0}")]
    Protocol(String),
}

/// Why a broadcast failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BroadcastError {
    /// The node refused the transaction (bitcoind's code and reason, e.g. -26 `non-final`).
    #[error("rejected ({code}): {reason}")]
    Rejected {
        /// bitcoind's RPC error code.
        code: i32,
        /// Its reject reason.
        reason: String,
    },
    /// The node could not be asked; try again.
    #[error(transparent)]
    Source(#[from] ChainSourceError),
}

impl BroadcastError {
    /// Whether the inputs are missing or already spent (a conflicting transaction won).
    pub fn is_missing_inputs(&self) -> bool {
        matches!(self, BroadcastError::Rejected { code: -25, reason } if reason.contains("missingorspent"))
    }

    /// Whether the node refused the transaction for its fee: under the relay or mempool
    /// minimum, or too little to replace what it conflicts with (BIP125). A higher fee may be
    /// accepted; any other refusal is about the transaction itself.
    pub fn is_fee_refusal(&self) -> bool {
        matches!(self, BroadcastError::Rejected { reason, .. } if reason.contains("fee not met") || reason.starts_with("insufficient fee") || reason.contains("mempool full"))
    }

    /// Whether the transaction is not final yet (lock time or relative lock not reached).
    pub fn is_non_final(&self) -> bool {
        matches!(self, BroadcastError::Rejected { reason, .. } if reason.starts_with("non-final") || reason.starts_with("non-BIP68-final"))
    }
}

/// The fee `tx` (in the mempool or the best chain) paid, as `chain` knows it
/// ([`ChainSource::tx_fee`]).
pub async fn fee_paid(chain: &dyn ChainSource, tx: &Transaction) -> Result<bitcoin::Amount, ChainSourceError> {
    chain.tx_fee(tx).await
}

/// The fee `tx` paid: its inputs' values, each looked up with [`ChainSource::transaction`],
/// minus its outputs (the default [`ChainSource::tx_fee`]; needs every parent findable).
pub async fn fee_from_inputs<C: ChainSource + ?Sized>(
    chain: &C,
    tx: &Transaction,
) -> Result<bitcoin::Amount, ChainSourceError> {
    let mut inputs = bitcoin::Amount::ZERO;
    for i in &tx.input {
        let prev = chain
            .transaction(&i.previous_output.txid)
            .await?
            .ok_or_else(|| ChainSourceError::Protocol(format!("input {} unknown", i.previous_output)))?;
        let out = prev
            .tx
            .output
            .get(i.previous_output.vout as usize)
            .ok_or_else(|| ChainSourceError::Protocol(format!("no output {}", i.previous_output)))?;
        inputs += out.value;
    }
    let outputs: bitcoin::Amount = tx.output.iter().map(|o| o.value).sum();
    inputs
        .checked_sub(outputs)
        .ok_or_else(|| ChainSourceError::Protocol("outputs exceed inputs".into()))
}

/// A view of the Bitcoin network.
#[async_trait]
pub trait ChainSource: Send + Sync {
    /// The network the node runs.
    fn network(&self) -> Network;

    /// The best block.
    async fn tip(&self) -> Result<BlockRef, ChainSourceError>;

    /// Hash of the best chain's block at `height`, `None` above the tip.
    async fn block_hash(&self, height: u32) -> Result<Option<BlockHash>, ChainSourceError>;

    /// A block with its height, `None` if unknown.
    async fn block(&self, hash: &BlockHash) -> Result<Option<(Block, u32)>, ChainSourceError>;

    /// A transaction in the mempool or the best chain, `None` if unknown. Confirmed ones must be
    /// found at least in the blocks read through [`ChainSource::block`] and in the last few
    /// blocks (see the module docs); older ones may be `None` without a transaction index.
    async fn transaction(&self, txid: &Txid) -> Result<Option<TxStatus>, ChainSourceError>;

    /// The fee `tx` paid (it is in the mempool or the best chain). By default from its inputs'
    /// values ([`fee_from_inputs`]); bitcoind answers from its mempool entry or block undo data,
    /// which needs no transaction index.
    async fn tx_fee(&self, tx: &Transaction) -> Result<bitcoin::Amount, ChainSourceError> {
        fee_from_inputs(self, tx).await
    }

    /// Sends a transaction to the network; success if already known.
    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, BroadcastError>;

    /// A fee rate to confirm within `conf_target` blocks (see the module docs for fallbacks).
    async fn fee_rate(&self, conf_target: u16) -> Result<FeeRate, ChainSourceError>;

    /// Txids in the mempool.
    async fn mempool_txids(&self) -> Result<Vec<Txid>, ChainSourceError>;

    /// The mempool transaction spending `outpoint`, if any.
    async fn mempool_spender(&self, outpoint: &OutPoint) -> Result<Option<Txid>, ChainSourceError>;

    /// Waits until the best block is no longer `current` or `timeout` passes; returns the tip.
    async fn wait_for_block(&self, current: &BlockHash, timeout: Duration) -> Result<BlockRef, ChainSourceError>;
}
