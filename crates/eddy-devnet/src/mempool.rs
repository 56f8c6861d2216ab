//! The devnet mempool: transactions waiting for a block, with the bookkeeping for parents
//! (unconfirmed chains), conflicts (which input is spent by which transaction) and
//! replacement. Acceptance rules live in `Chain::accept` (crate::chain), which has the UTXO view.

use std::collections::{HashMap, HashSet};

use bitcoin::{Amount, OutPoint, Transaction, TxOut, Txid};

/// Why a transaction was refused, with bitcoind's RPC error code and reject reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RejectReason {
    /// bitcoind's RPC error code: -25 missing inputs, -26 rejected by policy or consensus,
    /// -27 already in the chain.
    pub code: i32,
    /// bitcoind's reject reason string, e.g. `non-final`.
    pub message: String,
}

impl RejectReason {
    pub(crate) fn new(code: i32, message: impl Into<String>) -> Self {
        RejectReason {
            code,
            message: message.into(),
        }
    }
}

/// One mempool transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolEntry {
    /// The transaction.
    pub tx: Transaction,
    /// Its fee.
    pub fee: Amount,
    /// Its virtual size.
    pub vsize: u64,
    /// Unix time it entered.
    pub time: u64,
    /// Tip height when it entered.
    pub height: u32,
}

impl MempoolEntry {
    /// Fee rate in sat/kvB (for ordering without floats).
    pub fn fee_rate_kvb(&self) -> u64 {
        self.fee.to_sat() * 1000 / self.vsize.max(1)
    }
}

/// The set of unconfirmed transactions.
#[derive(Default, Debug)]
pub struct Mempool {
    pub(crate) entries: HashMap<Txid, MempoolEntry>,
    pub(crate) spends: HashMap<OutPoint, Txid>,
}

impl Mempool {
    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// An entry.
    pub fn get(&self, txid: &Txid) -> Option<&MempoolEntry> {
        self.entries.get(txid)
    }

    /// All txids.
    pub fn txids(&self) -> Vec<Txid> {
        self.entries.keys().copied().collect()
    }

    /// The mempool transaction spending `outpoint`, if any.
    pub fn spender(&self, outpoint: &OutPoint) -> Option<Txid> {
        self.spends.get(outpoint).copied()
    }

    /// An unconfirmed output.
    pub(crate) fn output(&self, outpoint: &OutPoint) -> Option<TxOut> {
        self.entries
            .get(&outpoint.txid)
            .and_then(|e| e.tx.output.get(outpoint.vout as usize).cloned())
    }

    pub(crate) fn insert(&mut self, entry: MempoolEntry) {
        let txid = entry.tx.compute_txid();
        for input in &entry.tx.input {
            self.spends.insert(input.previous_output, txid);
        }
        self.entries.insert(txid, entry);
    }

    /// `txid` and every mempool descendant of it.
    pub(crate) fn with_descendants(&self, txid: Txid) -> Vec<Txid> {
        let mut out = vec![];
        let mut seen = HashSet::new();
        let mut stack = vec![txid];
        while let Some(t) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            let Some(e) = self.entries.get(&t) else { continue };
            out.push(t);
            for vout in 0..e.tx.output.len() as u32 {
                if let Some(child) = self.spends.get(&OutPoint { txid: t, vout }) {
                    stack.push(*child);
                }
            }
        }
        out
    }

    /// Removes `txid` and its descendants; returns what was removed.
    pub(crate) fn remove_with_descendants(&mut self, txid: Txid) -> Vec<MempoolEntry> {
        let ids = self.with_descendants(txid);
        ids.into_iter().filter_map(|t| self.remove_one(&t)).collect()
    }

    fn remove_one(&mut self, txid: &Txid) -> Option<MempoolEntry> {
        let e = self.entries.remove(txid)?;
        for input in &e.tx.input {
            if self.spends.get(&input.previous_output) == Some(txid) {
                self.spends.remove(&input.previous_output);
            }
        }
        Some(e)
    }

    /// Removes a transaction that was mined (keeps its descendants, whose parent is now
    /// confirmed) and every transaction conflicting with it (with descendants).
    pub(crate) fn remove_for_block(&mut self, tx: &Transaction) {
        let txid = tx.compute_txid();
        self.remove_one(&txid);
        for input in &tx.input {
            if let Some(conflict) = self.spends.get(&input.previous_output).copied() {
                if conflict != txid {
                    self.remove_with_descendants(conflict);
                }
            }
        }
    }

    /// Transactions in an order a block can include them (parents first), highest fee rate
    /// first among those whose parents are already placed, up to `max_weight`.
    pub fn block_template(&self, max_weight: u64) -> Vec<Transaction> {
        let mut by_rate: Vec<&MempoolEntry> = self.entries.values().collect();
        by_rate.sort_by(|a, b| b.fee_rate_kvb().cmp(&a.fee_rate_kvb()).then(a.time.cmp(&b.time)));
        let mut placed: HashSet<Txid> = HashSet::new();
        let mut out = vec![];
        let mut weight = 0u64;
        loop {
            let mut progressed = false;
            for e in &by_rate {
                let txid = e.tx.compute_txid();
                if placed.contains(&txid) {
                    continue;
                }
                let parents_ready = e.tx.input.iter().all(|i| {
                    !self.entries.contains_key(&i.previous_output.txid) || placed.contains(&i.previous_output.txid)
                });
                let w = e.tx.weight().to_wu();
                if parents_ready && weight + w <= max_weight {
                    placed.insert(txid);
                    weight += w;
                    out.push(e.tx.clone());
                    progressed = true;
                }
            }
            if !progressed {
                return out;
            }
        }
    }
}
