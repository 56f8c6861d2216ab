//! The watch index: which scripts and outpoints Eddy's swaps care about, and what the chain
//! and mempool have shown about them — funding outputs with the height they confirmed at,
//! spends with their witnesses. Pure bookkeeping, no I/O: the [`crate::watcher::ChainWatcher`]
//! feeds it blocks (connected and disconnected) and mempool transactions.
//!
//! Cost per block is one hash lookup per output (by scriptPubKey) and one per input (by
//! outpoint), whatever the number of watched swaps; per-watch state is a few small vectors.

use std::collections::{HashMap, HashSet};

use bitcoin::{Amount, Block, BlockHash, OutPoint, ScriptBuf, Transaction, Txid, Witness};

/// Who a watch belongs to. Keys cannot collide: a swap is named by its whole id (the payment
/// hash, 32 bytes — a client chooses it, so no prefix of it may stand for the swap), and the
/// server's swap wallet has a variant of its own, outside the swaps' id space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchId {
    /// A swap's HTLC, by the swap's full id.
    Swap(eddy_core::types::SwapId),
    /// The server's swap wallet.
    Wallet,
}

/// The watch id the swap engines use for a swap: the swap's full id.
pub fn swap_watch_id(id: &eddy_core::types::SwapId) -> WatchId {
    WatchId::Swap(*id)
}

/// An output paying a watched script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Funding {
    /// The output.
    pub outpoint: OutPoint,
    /// The script it pays (every funding names the script it paid, so that a reader accepts
    /// only outputs paying its own script — see [`WatchStatus::paying`]).
    pub script_pubkey: ScriptBuf,
    /// Its value.
    pub value: Amount,
    /// Height of the block that confirmed it; `None` while only in the mempool.
    pub height: Option<u32>,
}

/// A transaction spending a watched outpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spend {
    /// The outpoint spent.
    pub outpoint: OutPoint,
    /// The spending transaction.
    pub txid: Txid,
    /// Which of its inputs spends it.
    pub input: usize,
    /// That input's witness (where a preimage or signature shows up).
    pub witness: Witness,
    /// Height of the block that confirmed the spend; `None` while only in the mempool.
    pub height: Option<u32>,
}

/// Something the index learnt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A watched script was paid (or the payment confirmed).
    Funded {
        /// Watch.
        id: WatchId,
        /// The output.
        funding: Funding,
    },
    /// A watched outpoint was spent (or the spend confirmed).
    Spent {
        /// Watch.
        id: WatchId,
        /// The spend.
        spend: Spend,
    },
    /// An unconfirmed transaction we had recorded for `id` left the mempool without
    /// confirming (replaced, or not re-accepted after a reorg); its records are gone.
    Dropped {
        /// Watch.
        id: WatchId,
        /// The transaction.
        txid: Txid,
    },
    /// A block was disconnected; fundings and spends it held are unconfirmed again (they may
    /// confirm again, return via the mempool, or vanish — the next events say which).
    Disconnected {
        /// Its height.
        height: u32,
        /// Its hash.
        hash: BlockHash,
    },
}

/// What a watch has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchStatus {
    /// Outputs paying the watched script.
    pub fundings: Vec<Funding>,
    /// Spends of watched outpoints (funding outputs are watched automatically).
    pub spends: Vec<Spend>,
}

impl WatchStatus {
    /// What this watch has seen of outputs paying `spk` exactly: those fundings, and the spends
    /// of those outputs. Engines read a swap's status through this, with the HTLC script they
    /// rebuilt from their own stored terms, so an output paying anything else (another swap's
    /// script, a wallet) can never be taken for this swap's funding.
    pub fn paying(&self, spk: &bitcoin::Script) -> WatchStatus {
        let fundings: Vec<Funding> = self
            .fundings
            .iter()
            .filter(|f| f.script_pubkey.as_script() == spk)
            .cloned()
            .collect();
        let spends = self
            .spends
            .iter()
            .filter(|s| fundings.iter().any(|f| f.outpoint == s.outpoint))
            .cloned()
            .collect();
        WatchStatus { fundings, spends }
    }

    /// Confirmations of `funding` at tip height `tip` (0 when unconfirmed).
    pub fn confirmations(height: Option<u32>, tip: u32) -> u32 {
        height.map_or(0, |h| tip.saturating_sub(h) + 1)
    }
}

/// The index.
#[derive(Debug, Default)]
pub struct WatchIndex {
    scripts: HashMap<ScriptBuf, Vec<WatchId>>,
    outpoints: HashMap<OutPoint, Vec<WatchId>>,
    status: HashMap<WatchId, WatchStatus>,
    /// Transactions we recorded something for, by txid (to undo on disconnect and to drop
    /// mempool-only records that vanished).
    touched: HashMap<Txid, HashSet<WatchId>>,
}

impl WatchIndex {
    /// Watches payments to `spk` (and spends of them) for `id`.
    pub fn watch_script(&mut self, id: WatchId, spk: ScriptBuf) {
        let ids = self.scripts.entry(spk).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
        self.status.entry(id).or_default();
    }

    /// Watches spends of `outpoint` for `id`.
    pub fn watch_outpoint(&mut self, id: WatchId, outpoint: OutPoint) {
        let ids = self.outpoints.entry(outpoint).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
        self.status.entry(id).or_default();
    }

    /// Stops watching everything of `id`.
    pub fn unwatch(&mut self, id: WatchId) {
        self.scripts.retain(|_, v| {
            v.retain(|x| *x != id);
            !v.is_empty()
        });
        self.outpoints.retain(|_, v| {
            v.retain(|x| *x != id);
            !v.is_empty()
        });
        self.status.remove(&id);
        self.touched.retain(|_, ids| {
            ids.remove(&id);
            !ids.is_empty()
        });
    }

    /// Number of watches.
    pub fn len(&self) -> usize {
        self.status.len()
    }

    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.status.is_empty()
    }

    /// The watches transaction `txid` paid or spent from (as recorded).
    pub fn touched_by(&self, txid: &Txid) -> Vec<WatchId> {
        self.touched
            .get(txid)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// What `id` has seen.
    pub fn status(&self, id: WatchId) -> Option<&WatchStatus> {
        self.status.get(&id)
    }

    /// Applies one transaction seen at `height` (`None` = mempool).
    pub fn apply_tx(&mut self, tx: &Transaction, height: Option<u32>, out: &mut Vec<WatchEvent>) {
        self.apply_tx_with_id(tx, tx.compute_txid(), height, out);
    }

    fn apply_tx_with_id(&mut self, tx: &Transaction, txid: Txid, height: Option<u32>, out: &mut Vec<WatchEvent>) {
        for (vin, input) in tx.input.iter().enumerate() {
            let Some(ids) = self.outpoints.get(&input.previous_output) else {
                continue;
            };
            for id in ids.clone() {
                let spend = Spend {
                    outpoint: input.previous_output,
                    txid,
                    input: vin,
                    witness: input.witness.clone(),
                    height,
                };
                if self.record_spend(id, &spend) {
                    self.touched.entry(txid).or_default().insert(id);
                    out.push(WatchEvent::Spent { id, spend });
                }
            }
        }
        for (vout, output) in tx.output.iter().enumerate() {
            let Some(ids) = self.scripts.get(&output.script_pubkey) else {
                continue;
            };
            let outpoint = OutPoint {
                txid,
                vout: vout as u32,
            };
            for id in ids.clone() {
                let funding = Funding {
                    outpoint,
                    script_pubkey: output.script_pubkey.clone(),
                    value: output.value,
                    height,
                };
                if self.record_funding(id, &funding) {
                    self.touched.entry(txid).or_default().insert(id);
                    out.push(WatchEvent::Funded { id, funding });
                }
                let watchers = self.outpoints.entry(outpoint).or_default();
                if !watchers.contains(&id) {
                    watchers.push(id);
                }
            }
        }
    }

    /// Records a funding; true when it is new or its height changed.
    fn record_funding(&mut self, id: WatchId, f: &Funding) -> bool {
        let st = self.status.entry(id).or_default();
        match st.fundings.iter_mut().find(|x| x.outpoint == f.outpoint) {
            Some(x) if x.height == f.height || (f.height.is_none() && x.height.is_some()) => false,
            Some(x) => {
                x.height = f.height;
                true
            }
            None => {
                st.fundings.push(f.clone());
                true
            }
        }
    }

    /// Records a spend; true when it is new (a different spender replaces an unconfirmed one)
    /// or it confirmed.
    fn record_spend(&mut self, id: WatchId, s: &Spend) -> bool {
        let st = self.status.entry(id).or_default();
        match st.spends.iter_mut().find(|x| x.outpoint == s.outpoint) {
            Some(x) if x.txid == s.txid && (x.height == s.height || s.height.is_none()) => false,
            Some(x) if x.txid != s.txid && x.height.is_some() && s.height.is_none() => false,
            Some(x) => {
                *x = s.clone();
                true
            }
            None => {
                st.spends.push(s.clone());
                true
            }
        }
    }

    /// Applies a connected block at `height`; returns the events and the block's txids this
    /// index recorded something for (what [`WatchIndex::disconnect`] needs to undo it).
    pub fn connect_block(&mut self, block: &Block, height: u32) -> (Vec<WatchEvent>, Vec<Txid>) {
        let mut out = vec![];
        let mut touched = vec![];
        for tx in &block.txdata {
            let txid = tx.compute_txid();
            let before = out.len();
            self.apply_tx_with_id(tx, txid, Some(height), &mut out);
            if out.len() > before || self.touched.contains_key(&txid) {
                touched.push(txid);
            }
        }
        (out, touched)
    }

    /// Undoes what a disconnected block confirmed: the fundings and spends of `txids` (the
    /// block's transactions this index recorded something for) become unconfirmed.
    pub fn disconnect(&mut self, height: u32, hash: BlockHash, txids: &[Txid]) -> WatchEvent {
        for txid in txids {
            let Some(ids) = self.touched.get(txid) else { continue };
            for id in ids {
                if let Some(st) = self.status.get_mut(id) {
                    for f in st.fundings.iter_mut().filter(|f| f.outpoint.txid == *txid) {
                        f.height = None;
                    }
                    for s in st.spends.iter_mut().filter(|s| s.txid == *txid) {
                        s.height = None;
                    }
                }
            }
        }
        WatchEvent::Disconnected { height, hash }
    }

    /// Forgets unconfirmed fundings and spends whose transaction is no longer in the mempool
    /// (replaced, or dropped after a reorg). `in_mempool` says whether a txid still is.
    pub fn prune_unconfirmed(&mut self, mut in_mempool: impl FnMut(&Txid) -> bool) -> Vec<WatchEvent> {
        let mut events = vec![];
        let mut gone = vec![];
        for (txid, ids) in &self.touched {
            let unconfirmed_only = ids.iter().all(|id| {
                self.status.get(id).is_none_or(|st| {
                    st.fundings
                        .iter()
                        .filter(|f| f.outpoint.txid == *txid)
                        .all(|f| f.height.is_none())
                        && st.spends.iter().filter(|s| s.txid == *txid).all(|s| s.height.is_none())
                })
            });
            if unconfirmed_only && !in_mempool(txid) {
                gone.push(*txid);
            }
        }
        for txid in gone {
            if let Some(ids) = self.touched.remove(&txid) {
                for id in ids {
                    if let Some(st) = self.status.get_mut(&id) {
                        st.fundings.retain(|f| f.outpoint.txid != txid);
                        st.spends.retain(|s| s.txid != txid);
                    }
                    events.push(WatchEvent::Dropped { id, txid });
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{absolute, transaction, TxOut};
    use eddy_core::types::SwapId;

    fn paying(outputs: &[(&ScriptBuf, u64)]) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![],
            output: outputs
                .iter()
                .map(|(spk, v)| TxOut {
                    value: Amount::from_sat(*v),
                    script_pubkey: (*spk).clone(),
                })
                .collect(),
        }
    }

    /// Two swaps whose ids share their first 8 bytes (a client chooses the hash, so it can make
    /// that happen), and the wallet: three watches that never see each other's outputs.
    #[test]
    fn colliding_prefixes_and_the_wallet_never_share_a_watch() {
        let mut a = [7u8; 32];
        let mut b = [7u8; 32];
        a[31] = 1;
        b[31] = 2;
        let (wa, wb) = (swap_watch_id(&SwapId(a)), swap_watch_id(&SwapId(b)));
        assert_ne!(wa, wb);
        assert_ne!(wa, WatchId::Wallet);
        let (sa, sb, sw) = (
            ScriptBuf::new_op_return([1u8; 4]),
            ScriptBuf::new_op_return([2u8; 4]),
            ScriptBuf::new_op_return([3u8; 4]),
        );
        let mut index = WatchIndex::default();
        index.watch_script(wa, sa.clone());
        index.watch_script(wb, sb.clone());
        index.watch_script(WatchId::Wallet, sw.clone());
        let mut ev = vec![];
        index.apply_tx(&paying(&[(&sa, 50_000)]), Some(10), &mut ev);
        assert_eq!(ev.len(), 1);
        let st = |id| index.status(id).cloned().unwrap_or_default();
        assert_eq!(st(wa).fundings.len(), 1);
        assert_eq!(st(wa).fundings[0].script_pubkey, sa);
        assert!(
            st(wb).fundings.is_empty(),
            "the other swap saw a funding it was not paid"
        );
        assert!(st(WatchId::Wallet).fundings.is_empty());
    }

    /// A status read through `paying` keeps only outputs to that script and their spends.
    #[test]
    fn paying_keeps_only_outputs_to_the_script() {
        let (mine, other) = (ScriptBuf::new_op_return([1u8; 4]), ScriptBuf::new_op_return([2u8; 4]));
        let id = swap_watch_id(&SwapId([9; 32]));
        let mut index = WatchIndex::default();
        // One watch, two scripts (what a shared id used to amount to).
        index.watch_script(id, mine.clone());
        index.watch_script(id, other.clone());
        let tx = paying(&[(&other, 90_000), (&mine, 10_000)]);
        let txid = tx.compute_txid();
        let mut ev = vec![];
        index.apply_tx(&tx, Some(5), &mut ev);
        let spend = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![bitcoin::TxIn {
                previous_output: OutPoint { txid, vout: 0 },
                ..Default::default()
            }],
            output: vec![],
        };
        index.apply_tx(&spend, None, &mut ev);
        let all = index.status(id).cloned().unwrap_or_default();
        assert_eq!((all.fundings.len(), all.spends.len()), (2, 1));
        let only = all.paying(&mine);
        assert_eq!(only.fundings.len(), 1);
        assert_eq!(only.fundings[0].value, Amount::from_sat(10_000));
        assert_eq!(only.fundings[0].outpoint, OutPoint { txid, vout: 1 });
        assert!(
            only.spends.is_empty(),
            "a spend of the other script's output is not this swap's"
        );
    }
}
