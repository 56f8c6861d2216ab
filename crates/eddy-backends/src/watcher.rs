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
}

impl ChainWatcher {
    /// A watcher that has processed everything up to and including `start` (which must be in
    /// the best chain), keeping `history` blocks for reorgs.
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
            }
        }
        Ok(last.hash == tip.hash)
    }

    async fn sync_mempool(&mut self, events: &mut Vec<WatchEvent>) -> Result<(), ChainSourceError> {
        let txids: HashSet<Txid> = self.source.mempool_txids().await?.into_iter().collect();
        for txid in &txids {
            if self.mempool_seen.contains(txid) {
                continue;
            }
            // It may have been mined or replaced since the listing: then skip it.
            if let Some(status) = self.source.transaction(txid).await? {
                if status.block.is_none() {
                    self.index.apply_tx(&status.tx, None, events);
                }
            }
        }
        events.extend(self.index.prune_unconfirmed(|t| txids.contains(t)));
        self.mempool_seen = txids;
        Ok(())
    }
}
