//! The chain watcher: follows a [`ChainSource`]'s best chain block by block from a starting
//! block, unwinding through reorgs (it remembers the last `history` blocks and what it
//! recorded in each), then looks at the mempool, feeding everything to a [`WatchIndex`].
//! Callers `sync()` on every new block (or on a timer) and act on the returned events; the
//! index's [`WatchStatus`](crate::watch::WatchStatus) gives confirmation counts at any time.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bitcoin::Txid;

use crate::chain::{BlockRef, ChainSource, ChainSourceError};
use crate::watch::{WatchEvent, WatchIndex};

/// Blocks of history kept for reorgs by default (a day; reorgs deeper than the swap safety
/// depth of 6 are already handled as failures by the swap logic).
pub const DEFAULT_HISTORY: usize = 144;

struct Seen {
    block: BlockRef,
    touched: Vec<Txid>,
}

/// Follows the chain for a [`WatchIndex`].
pub struct ChainWatcher {
    source: Arc<dyn ChainSource>,
    index: WatchIndex,
    recent: VecDeque<Seen>,
    history: usize,
    mempool_seen: HashSet<Txid>,
    /// Whether the oldest block kept is still the one the watcher started after (never
    /// scanned): a reorg of it moves the start down instead of failing.
    anchored: bool,
}

/// How far below its start a watcher begins again when the block it started after is reorged
/// out (it was the tip then; a reorg that deep or deeper below it repeats the step).
pub const REANCHOR_BLOCKS: u32 = 6;

impl ChainWatcher {
    /// A watcher whose first block to scan is the one after `height` of the source's best chain
    /// (what every engine does at start: rescan from its oldest active swap), keeping
    /// [`DEFAULT_HISTORY`] blocks for reorgs.
    pub async fn starting_after(source: Arc<dyn ChainSource>, height: u32) -> Result<ChainWatcher, ChainSourceError> {
        let hash = source
            .block_hash(height)
            .await?
            .ok_or_else(|| ChainSourceError::Protocol(format!("no block at {height}")))?;
        Ok(ChainWatcher::new(source, BlockRef { height, hash }, DEFAULT_HISTORY))
    }

    /// A watcher that has seen `start` and scans what follows, remembering `history` blocks.
    pub fn new(source: Arc<dyn ChainSource>, start: BlockRef, history: usize) -> ChainWatcher {
        let mut recent = VecDeque::new();
        recent.push_back(Seen {
            block: start,
            touched: vec![],
        });
        ChainWatcher {
            source,
            index: WatchIndex::default(),
            recent,
            history: history.max(1),
            mempool_seen: HashSet::new(),
            anchored: true,
        }
    }

    /// The watch index.
    pub fn index(&self) -> &WatchIndex {
        &self.index
    }

    /// The watch index, to add or remove watches.
    pub fn index_mut(&mut self) -> &mut WatchIndex {
        &mut self.index
    }

    /// The last block processed.
    pub fn tip(&self) -> Option<BlockRef> {
        self.recent.back().map(|s| s.block)
    }

    /// Forgets the blocks above `height` as a reorg would (what they confirmed becomes
    /// unconfirmed), so that the next [`ChainWatcher::sync`] reads them again — with the
    /// watches added since. The mempool listing is kept: a new watch's unconfirmed transactions
    /// are the caller's to apply. Fails, changing nothing, when `height` is below the blocks of
    /// history kept.
    pub fn rewind_to(&mut self, height: u32) -> Result<Vec<WatchEvent>, ChainSourceError> {
        let oldest = self.recent.front().map_or(0, |s| s.block.height);
        if height < oldest {
            return Err(ChainSourceError::Protocol(format!(
                "cannot rewind to {height}: the history kept starts at {oldest}"
            )));
        }
        let mut events = vec![];
        while self.recent.back().is_some_and(|s| s.block.height > height) {
            let Some(gone) = self.recent.pop_back() else { break };
            events.push(self.index.disconnect(gone.block.height, gone.block.hash, &gone.touched));
        }
        Ok(events)
    }

    /// Brings the index up to the source's best chain and mempool; returns what changed, in
    /// order (disconnections first, then connected blocks, then mempool).
    pub async fn sync(&mut self) -> Result<Vec<WatchEvent>, ChainSourceError> {
        let mut events = vec![];
        // A block arriving while we sync can make us retry; bounded so a flapping source
        // cannot spin us forever.
        for _ in 0..8 {
            if self.sync_chain(&mut events).await? {
                break;
            }
        }
        self.sync_mempool(&mut events).await?;
        Ok(events)
    }

    /// One pass; false when the chain moved under us and another pass is needed.
    async fn sync_chain(&mut self, events: &mut Vec<WatchEvent>) -> Result<bool, ChainSourceError> {
        let tip = self.source.tip().await?;
        // Unwind blocks no longer in the best chain.
        while let Some(top) = self.recent.back() {
            let still = top.block.height <= tip.height
                && self.source.block_hash(top.block.height).await? == Some(top.block.hash);
            if still {
                break;
            }
            let Some(gone) = self.recent.pop_back() else { break };
            if self.recent.is_empty() && self.anchored {
                // The block we started after is no longer in the best chain (a reorg right
                // after a start at the tip: a daemon restarted with no swap, say). It was never
                // scanned, so nothing is undone: start again a few blocks below it, on the best
                // chain, and scan forward from there — never a watcher stuck on an error.
                let height = gone.block.height.saturating_sub(REANCHOR_BLOCKS);
                let hash = self
                    .source
                    .block_hash(height)
                    .await?
                    .ok_or_else(|| ChainSourceError::Protocol(format!("no block at {height}")))?;
                self.recent.push_back(Seen {
                    block: BlockRef { height, hash },
                    touched: vec![],
                });
                continue;
            }
            if self.recent.is_empty() {
                self.recent.push_back(gone);
                return Err(ChainSourceError::Protocol(format!(
                    "reorg deeper than the {} blocks of history kept (below height {})",
                    self.history,
                    self.recent.back().map_or(0, |s| s.block.height)
                )));
            }
            events.push(self.index.disconnect(gone.block.height, gone.block.hash, &gone.touched));
        }
        let Some(mut last) = self.tip() else {
            return Ok(true);
        };
        while last.height < tip.height {
            let height = last.height + 1;
            let Some(hash) = self.source.block_hash(height).await? else {
                return Ok(false);
            };
            let Some((block, _)) = self.source.block(&hash).await? else {
                return Ok(false);
            };
            if block.header.prev_blockhash != last.hash {
                return Ok(false);
            }
            let (ev, touched) = self.index.connect_block(&block, height);
            events.extend(ev);
            last = BlockRef { height, hash };
            self.recent.push_back(Seen { block: last, touched });
            while self.recent.len() > self.history {
                self.recent.pop_front();
                self.anchored = false;
            }
        }
        Ok(last.hash == tip.hash)
    }

    async fn sync_mempool(&mut self, events: &mut Vec<WatchEvent>) -> Result<(), ChainSourceError> {
        let txids: HashSet<Txid> = self.source.mempool_txids().await?.into_iter().collect();
        let mut new = vec![];
        for txid in &txids {
            if self.mempool_seen.contains(txid) {
                continue;
            }
            // It may have been mined or replaced since the listing: then skip it.
            if let Some(status) = self.source.transaction(txid).await? {
                if status.block.is_none() {
                    new.push(status.tx);
                }
            }
        }
        // Parents before children (the listing has no order): a child spending a watched
        // output created by its parent in this same pass must see that output watched already.
        for tx in topological(new) {
            self.index.apply_tx(&tx, None, events);
        }
        events.extend(self.index.prune_unconfirmed(|t| txids.contains(t)));
        self.mempool_seen = txids;
        Ok(())
    }
}

/// `txs` ordered so that every transaction comes after those of `txs` it spends.
fn topological(txs: Vec<bitcoin::Transaction>) -> Vec<bitcoin::Transaction> {
    let mut pending: Vec<(Txid, bitcoin::Transaction)> = txs.into_iter().map(|t| (t.compute_txid(), t)).collect();
    let mut out = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let waiting: HashSet<Txid> = pending.iter().map(|(id, _)| *id).collect();
        let (ready, rest): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(_, t)| !t.input.iter().any(|i| waiting.contains(&i.previous_output.txid)));
        if ready.is_empty() {
            // A cycle cannot happen between valid transactions; keep the rest as listed.
            out.extend(rest.into_iter().map(|(_, t)| t));
            break;
        }
        out.extend(ready.into_iter().map(|(_, t)| t));
        pending = rest;
    }
    out
}

#[cfg(test)]
mod order_tests {
    use super::*;
    use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Witness};

    fn tx(spends: Option<Txid>, tag: u8) -> bitcoin::Transaction {
        bitcoin::Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: spends.unwrap_or_else(|| <Txid as bitcoin::hashes::Hash>::from_byte_array([tag; 32])),
                    vout: 0,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(1000 + u64::from(tag)),
                script_pubkey: ScriptBuf::new(),
            }],
        }
    }

    #[test]
    fn parents_come_first() {
        let a = tx(None, 1);
        let b = tx(Some(a.compute_txid()), 2);
        let c = tx(Some(b.compute_txid()), 3);
        let ordered = topological(vec![c.clone(), b.clone(), a.clone()]);
        assert_eq!(ordered, vec![a, b, c]);
    }
}
