//! The devnet chain: libbitcoinkernel's regtest chainstate (the only judge of block validity),
//! plus the indices the RPC needs, kept in step with the kernel's active chain across reorgs,
//! plus the mempool's acceptance rules and the miner.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::blockdata::opcodes::all::OP_RETURN;
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::script::Builder;
use bitcoin::transaction::Version;
use bitcoin::{
    absolute, Amount, Block, BlockHash, CompactTarget, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxMerkleNode, TxOut, Txid, Witness, Work,
};
use bitcoinkernel::prelude::*;
use bitcoinkernel::{
    verify, ChainType, ChainstateManager, Context, ContextBuilder, PrecomputedTransactionData, ScriptPubkey,
    ValidationMode, VERIFY_ALL,
};

use crate::mempool::{Mempool, MempoolEntry, RejectReason};

/// Coinbase outputs are spendable after this many blocks.
pub const COINBASE_MATURITY: u32 = 100;
/// bitcoind's default minimum relay fee rate.
pub const MIN_RELAY_FEE: FeeRate = FeeRate::from_sat_per_kwu(250);
/// bitcoind's default incremental relay fee rate (BIP125 rule 4).
pub const INCREMENTAL_RELAY_FEE: FeeRate = FeeRate::from_sat_per_kwu(250);
/// Regtest's proof-of-work limit, in compact form.
pub const REGTEST_BITS: u32 = 0x207f_ffff;
const MAX_BLOCK_WEIGHT: u64 = 4_000_000;
const COINBASE_RESERVE_WEIGHT: u64 = 4_000;

/// Errors of the devnet chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The kernel failed (opening the data dir, reading a block).
    #[error("kernel: {0}")]
    Kernel(String),
    /// A block was not accepted by the kernel.
    #[error("block {hash} rejected: {reason}")]
    BlockRejected {
        /// The block.
        hash: BlockHash,
        /// The kernel's verdict.
        reason: String,
    },
    /// A request about something unknown.
    #[error("{0}")]
    NotFound(String),
}

impl From<bitcoinkernel::KernelError> for ChainError {
    fn from(e: bitcoinkernel::KernelError) -> Self {
        ChainError::Kernel(e.to_string())
    }
}

/// An unspent output with what BIP68 and coinbase maturity need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Utxo {
    /// The output.
    pub output: TxOut,
    /// Height of the block that created it.
    pub height: u32,
    /// Whether it is a coinbase output.
    pub coinbase: bool,
}

/// Where a transaction is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxLocation {
    /// In the active chain at this height.
    Block(u32),
    /// In the mempool.
    Mempool,
}

/// Kernel verdicts by block hash (`None` = valid).
type Verdicts = Arc<Mutex<HashMap<[u8; 32], Option<String>>>>;

/// The regtest chain.
pub struct Chain {
    chainman: ChainstateManager,
    _context: Context,
    verdicts: Verdicts,
    blocks: Vec<Block>,
    heights: HashMap<BlockHash, u32>,
    work: Vec<Work>,
    stale: HashMap<BlockHash, (u32, Block)>,
    utxos: HashMap<OutPoint, Utxo>,
    undo: Vec<Vec<(OutPoint, Utxo)>>,
    txindex: HashMap<Txid, u32>,
    mempool: Mempool,
    fee_estimate: Option<FeeRate>,
    journal: Option<std::fs::File>,
}

/// The devnet's block journal: every block the kernel accepted, appended and synced to disk
/// before the submitter hears "accepted". libbitcoinkernel flushes its block index and
/// chainstate lazily (on clean shutdown, or when its caches fill), and offers no flush call, so
/// after `kill -9` the kernel may come back at an older tip; replaying the journal brings back
/// every acknowledged block.
const JOURNAL_FILE: &str = "eddy-blocks.journal";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Block subsidy on regtest (halving every 150 blocks).
pub fn subsidy(height: u32) -> Amount {
    let halvings = height / 150;
    if halvings >= 64 {
        Amount::ZERO
    } else {
        Amount::from_sat((50 * 100_000_000) >> halvings)
    }
}

impl Chain {
    /// Opens (or creates) the chain in `datadir`; the kernel keeps blocks and chainstate there,
    /// so the chain survives a restart.
    pub fn open(datadir: &Path) -> Result<Chain, ChainError> {
        std::fs::create_dir_all(datadir).map_err(|e| ChainError::Kernel(e.to_string()))?;
        let verdicts: Verdicts = Arc::default();
        let sink = verdicts.clone();
        let context = ContextBuilder::new()
            .chain_type(ChainType::Regtest)
            .with_block_checked_validation(
                move |block: bitcoinkernel::Block, state: bitcoinkernel::BlockValidationStateRef<'_>| {
                    let verdict = match state.mode() {
                        ValidationMode::Valid => None,
                        _ => Some(format!("{:?}", state.result())),
                    };
                    if let Ok(mut v) = sink.lock() {
                        v.insert(block.hash().to_bytes(), verdict);
                    }
                },
            )
            .build()?;
        let data = datadir.join("chainstate");
        let blocks = datadir.join("blocks");
        let path = |p: &Path| {
            p.to_str()
                .map(str::to_owned)
                .ok_or_else(|| ChainError::Kernel("non-UTF-8 path".into()))
        };
        let chainman = ChainstateManager::builder(&context, &path(&data)?, &path(&blocks)?)?.build()?;
        chainman.import_blocks()?;
        let mut chain = Chain {
            chainman,
            _context: context,
            verdicts,
            blocks: vec![],
            heights: HashMap::new(),
            work: vec![],
            stale: HashMap::new(),
            utxos: HashMap::new(),
            undo: vec![],
            txindex: HashMap::new(),
            mempool: Mempool::default(),
            fee_estimate: None,
            journal: None,
        };
        chain.sync()?;
        chain.replay_journal(&datadir.join(JOURNAL_FILE))?;
        Ok(chain)
    }

    /// Height of the best block.
    pub fn height(&self) -> u32 {
        self.blocks.len().saturating_sub(1) as u32
    }

    /// The best block's hash.
    pub fn tip_hash(&self) -> BlockHash {
        self.blocks
            .last()
            .map(|b| b.block_hash())
            .unwrap_or_else(BlockHash::all_zeros)
    }

    /// The block at `height` in the active chain.
    pub fn block_at(&self, height: u32) -> Option<&Block> {
        self.blocks.get(height as usize)
    }

    /// A block of the active chain by hash, with its height.
    pub fn block_by_hash(&self, hash: &BlockHash) -> Option<(u32, &Block)> {
        let height = *self.heights.get(hash)?;
        self.blocks.get(height as usize).map(|b| (height, b))
    }

    /// A block this process saw in the active chain that a reorg has since disconnected, with
    /// its height (kept in memory so chain followers can walk back to the fork point).
    pub fn stale_block(&self, hash: &BlockHash) -> Option<(u32, &Block)> {
        self.stale.get(hash).map(|(h, b)| (*h, b))
    }

    /// Re-submits journaled blocks the kernel lost in a crash, truncates a torn last record,
    /// and opens the journal for appending.
    fn replay_journal(&mut self, path: &Path) -> Result<(), ChainError> {
        use std::io::{Seek, SeekFrom};
        let io = |e: std::io::Error| ChainError::Kernel(format!("journal {}: {e}", path.display()));
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(io(e)),
        };
        let mut pos = 0usize;
        let mut replayed = false;
        while pos + 4 <= data.len() {
            let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
            let Some(raw) = data.get(pos + 4..pos + 4 + len) else {
                break;
            };
            let Ok(block) = deserialize::<Block>(raw) else { break };
            pos += 4 + len;
            if self.heights.contains_key(&block.block_hash()) {
                continue;
            }
            let kblock = bitcoinkernel::Block::new(raw)?;
            // A block the kernel already holds (e.g. on a side branch) comes back as a
            // duplicate; either way the kernel decides which chain is best.
            let _ = self.chainman.process_block(&kblock);
            replayed = true;
        }
        if replayed {
            self.sync()?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(io)?;
        if pos < data.len() {
            // A record torn by a crash mid-write was never acknowledged: drop it.
            file.set_len(pos as u64).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        self.journal = Some(file);
        Ok(())
    }

    fn journal_append(&mut self, raw: &[u8]) -> Result<(), ChainError> {
        use std::io::Write;
        if let Some(f) = self.journal.as_mut() {
            let mut rec = Vec::with_capacity(raw.len() + 4);
            rec.extend_from_slice(&(raw.len() as u32).to_le_bytes());
            rec.extend_from_slice(raw);
            f.write_all(&rec)
                .and_then(|()| f.sync_data())
                .map_err(|e| ChainError::Kernel(format!("journal: {e}")))?;
        }
        Ok(())
    }

    /// Total proof of work of the active chain up to `height`.
    pub fn chainwork(&self, height: u32) -> Option<Work> {
        self.work.get(height as usize).copied()
    }

    /// The coins block `height` spent, keyed by outpoint (what `getblock` needs for fees).
    pub fn spent_by_block(&self, height: u32) -> HashMap<OutPoint, Utxo> {
        self.undo
            .get(height as usize)
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The unspent output at `outpoint` in the active chain (not counting mempool spends).
    pub fn utxo(&self, outpoint: &OutPoint) -> Option<&Utxo> {
        self.utxos.get(outpoint)
    }

    /// A transaction in the active chain or the mempool.
    pub fn transaction(&self, txid: &Txid) -> Option<(Transaction, TxLocation)> {
        if let Some(e) = self.mempool.get(txid) {
            return Some((e.tx.clone(), TxLocation::Mempool));
        }
        let height = *self.txindex.get(txid)?;
        let block = self.blocks.get(height as usize)?;
        block
            .txdata
            .iter()
            .find(|t| t.compute_txid() == *txid)
            .map(|t| (t.clone(), TxLocation::Block(height)))
    }

    /// The mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// Sets (or clears) the fee rate `estimatesmartfee` answers with.
    pub fn set_fee_estimate(&mut self, rate: Option<FeeRate>) {
        self.fee_estimate = rate;
    }

    /// The configured fee estimate.
    pub fn fee_estimate(&self) -> Option<FeeRate> {
        self.fee_estimate
    }

    /// Median time past of the tip (BIP113).
    pub fn median_time_past(&self) -> u32 {
        let mut times: Vec<u32> = self.blocks.iter().rev().take(11).map(|b| b.header.time).collect();
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or(0)
    }

    fn read_kernel_block(&self, height: u32) -> Result<Block, ChainError> {
        let active = self.chainman.active_chain();
        let entry = active
            .at_height(height as usize)
            .ok_or_else(|| ChainError::NotFound(format!("no block at height {height}")))?;
        let raw = self.chainman.read_block_data(&entry)?.consensus_encode()?;
        deserialize(&raw).map_err(|e| ChainError::Kernel(e.to_string()))
    }

    /// Brings the indices in line with the kernel's active chain: disconnects our blocks
    /// above the fork point (their transactions go back to the mempool when still valid), then
    /// connects the kernel's.
    fn sync(&mut self) -> Result<(), ChainError> {
        let kernel_height = self.chainman.active_chain().height().max(0) as u32;
        let mut fork = (self.blocks.len() as i64 - 1).min(i64::from(kernel_height));
        while fork >= 0 {
            let ours = self.blocks[fork as usize].block_hash().to_byte_array();
            let theirs = self
                .chainman
                .active_chain()
                .at_height(fork as usize)
                .map(|e| e.block_hash().to_bytes());
            if theirs == Some(ours) {
                break;
            }
            fork -= 1;
        }
        let mut resurrect = vec![];
        let disconnected = (self.blocks.len() as i64 - 1) > fork;
        while self.blocks.len() as i64 - 1 > fork {
            resurrect.extend(self.disconnect_tip());
        }
        for height in (fork + 1) as u32..=kernel_height {
            let block = self.read_kernel_block(height)?;
            self.connect(block);
        }
        if disconnected {
            // As bitcoind after a reorg: the disconnected blocks' transactions come back first,
            // then everything that was waiting is checked again against the new chain;
            // whatever became invalid (inputs gone, no longer final) is dropped.
            let waiting = self.mempool.block_template(u64::MAX);
            self.mempool = Mempool::default();
            for tx in resurrect.into_iter().chain(waiting) {
                let _ = self.accept(tx);
            }
        }
        Ok(())
    }

    fn connect(&mut self, block: Block) {
        let height = self.blocks.len() as u32;
        let mut spent = vec![];
        for (i, tx) in block.txdata.iter().enumerate() {
            let txid = tx.compute_txid();
            if i > 0 {
                for input in &tx.input {
                    if let Some(u) = self.utxos.remove(&input.previous_output) {
                        spent.push((input.previous_output, u));
                    }
                }
            }
            for (vout, out) in tx.output.iter().enumerate() {
                if out.script_pubkey.is_op_return() {
                    continue;
                }
                let utxo = Utxo {
                    output: out.clone(),
                    height,
                    coinbase: i == 0,
                };
                self.utxos.insert(
                    OutPoint {
                        txid,
                        vout: vout as u32,
                    },
                    utxo,
                );
            }
            self.txindex.insert(txid, height);
            self.mempool.remove_for_block(tx);
        }
        self.undo.push(spent);
        let hash = block.block_hash();
        let work = self
            .work
            .last()
            .map_or(block.header.work(), |w| *w + block.header.work());
        self.work.push(work);
        self.heights.insert(hash, height);
        self.stale.remove(&hash);
        self.blocks.push(block);
    }

    fn disconnect_tip(&mut self) -> Vec<Transaction> {
        let (Some(block), Some(spent)) = (self.blocks.pop(), self.undo.pop()) else {
            return vec![];
        };
        let height = self.blocks.len() as u32;
        let hash = block.block_hash();
        self.work.pop();
        self.heights.remove(&hash);
        for tx in block.txdata.iter().rev() {
            let txid = tx.compute_txid();
            for vout in 0..tx.output.len() as u32 {
                self.utxos.remove(&OutPoint { txid, vout });
            }
            self.txindex.remove(&txid);
        }
        for (op, u) in spent {
            self.utxos.insert(op, u);
        }
        let txs = block.txdata.iter().skip(1).cloned().collect();
        self.stale.insert(hash, (height, block));
        txs
    }

    /// Hands a block to the kernel. Succeeds only if the kernel made it the new tip, or it is a
    /// valid block of a side branch; a block the kernel rejects is an error with its verdict.
    pub fn submit_block(&mut self, block: &Block) -> Result<(), ChainError> {
        let hash = block.block_hash();
        let extends_tip = block.header.prev_blockhash == self.tip_hash();
        let raw = serialize(block);
        let kblock = bitcoinkernel::Block::new(&raw)?;
        let result = self.chainman.process_block(&kblock);
        let verdict = self
            .verdicts
            .lock()
            .ok()
            .and_then(|v| v.get(&hash.to_byte_array()).cloned());
        if result.is_rejected() || matches!(verdict, Some(Some(_))) {
            let reason = verdict.flatten().unwrap_or_else(|| "rejected".into());
            return Err(ChainError::BlockRejected { hash, reason });
        }
        self.sync()?;
        if extends_tip && self.tip_hash() != hash && result.is_new_block() {
            return Err(ChainError::BlockRejected {
                hash,
                reason: "block did not become the tip".into(),
            });
        }
        self.journal_append(&raw)
    }

    /// Checks `tx` against the mempool rules and, unless `dry_run`, adds it (replacing
    /// conflicts per BIP125 with full RBF). Returns its txid, fee and vsize.
    pub fn accept_tx(&mut self, tx: Transaction, dry_run: bool) -> Result<(Txid, Amount, u64), RejectReason> {
        let txid = tx.compute_txid();
        if self.mempool.get(&txid).is_some() {
            return Err(RejectReason::new(-27, "txn-already-in-mempool"));
        }
        let unspent_output =
            || (0..tx.output.len() as u32).any(|vout| self.utxos.contains_key(&OutPoint { txid, vout }));
        if self.txindex.contains_key(&txid) && unspent_output() {
            return Err(RejectReason::new(-27, "Transaction outputs already in utxo set"));
        }
        if tx.is_coinbase() {
            return Err(RejectReason::new(-26, "coinbase"));
        }
        if tx.input.is_empty() || tx.output.is_empty() {
            return Err(RejectReason::new(-26, "bad-txns-vin-empty"));
        }
        let next_height = self.height() + 1;
        let mut prevouts = Vec::with_capacity(tx.input.len());
        let mut conflicts = vec![];
        for input in &tx.input {
            let op = input.previous_output;
            let (output, coin_height) = if let Some(u) = self.utxos.get(&op) {
                if u.coinbase && next_height - u.height < COINBASE_MATURITY {
                    return Err(RejectReason::new(-26, "bad-txns-premature-spend-of-coinbase"));
                }
                (u.output.clone(), u.height)
            } else if let Some(out) = self.mempool.output(&op) {
                (out, next_height)
            } else {
                return Err(RejectReason::new(-25, "bad-txns-inputs-missingorspent"));
            };
            if let Some(other) = self.mempool.spender(&op) {
                conflicts.push(other);
            }
            // BIP68 relative lock (height-based only; the devnet does not mine time locks).
            let seq = input.sequence;
            if tx.version >= Version::TWO && seq.is_relative_lock_time() {
                match seq.to_relative_lock_time() {
                    Some(bitcoin::relative::LockTime::Blocks(b)) => {
                        if coin_height + u32::from(b.value()) > next_height {
                            return Err(RejectReason::new(-26, "non-BIP68-final"));
                        }
                    }
                    _ => return Err(RejectReason::new(-26, "non-BIP68-final")),
                }
            }
            prevouts.push(output);
        }
        // nLockTime finality against the next block (BIP113 time locks against MTP).
        if tx.is_lock_time_enabled() && tx.lock_time != absolute::LockTime::ZERO {
            let final_ok = match tx.lock_time {
                absolute::LockTime::Blocks(h) => h.to_consensus_u32() < next_height,
                absolute::LockTime::Seconds(t) => t.to_consensus_u32() < self.median_time_past(),
            };
            if !final_ok {
                return Err(RejectReason::new(-26, "non-final"));
            }
        }
        let total_in = prevouts.iter().map(|o| o.value).fold(Amount::ZERO, |a, b| a + b);
        let total_out = tx.output.iter().map(|o| o.value).fold(Amount::ZERO, |a, b| a + b);
        let fee = total_in
            .checked_sub(total_out)
            .ok_or_else(|| RejectReason::new(-26, "bad-txns-in-belowout"))?;
        let vsize = tx.vsize() as u64;
        if fee < MIN_RELAY_FEE.fee_vb(vsize).unwrap_or(Amount::MAX) {
            return Err(RejectReason::new(-26, "min relay fee not met"));
        }
        verify_scripts(&tx, &prevouts)?;
        // BIP125 (full RBF): pay more in total and per vbyte than everything replaced, plus the
        // incremental relay fee for the new transaction's own size.
        conflicts.sort();
        conflicts.dedup();
        let mut replaced = vec![];
        for c in &conflicts {
            for t in self.mempool.with_descendants(*c) {
                if !replaced.contains(&t) {
                    replaced.push(t);
                }
            }
        }
        if !replaced.is_empty() {
            let old_fee: Amount = replaced
                .iter()
                .filter_map(|t| self.mempool.get(t))
                .map(|e| e.fee)
                .fold(Amount::ZERO, |a, b| a + b);
            let new_rate = fee.to_sat() * 1000 / vsize.max(1);
            for c in &conflicts {
                if let Some(e) = self.mempool.get(c) {
                    if new_rate <= e.fee_rate_kvb() {
                        return Err(RejectReason::new(-26, format!("insufficient fee, rejecting replacement {txid}; new feerate {new_rate} sat/kvB <= old feerate {} sat/kvB", e.fee_rate_kvb())));
                    }
                }
            }
            let needed = old_fee + INCREMENTAL_RELAY_FEE.fee_vb(vsize).unwrap_or(Amount::MAX);
            if fee < needed {
                return Err(RejectReason::new(
                    -26,
                    format!(
                        "insufficient fee, rejecting replacement {txid}, not enough additional fees to relay; {} < {}",
                        fee.to_sat() - old_fee.to_sat().min(fee.to_sat()),
                        needed.to_sat() - old_fee.to_sat()
                    ),
                ));
            }
            if replaced.len() > 100 {
                return Err(RejectReason::new(-26, "too many potential replacements"));
            }
        }
        if dry_run {
            return Ok((txid, fee, vsize));
        }
        for c in conflicts {
            self.mempool.remove_with_descendants(c);
        }
        self.mempool.insert(MempoolEntry {
            tx,
            fee,
            vsize,
            time: now_secs(),
            height: self.height(),
        });
        Ok((txid, fee, vsize))
    }

    fn accept(&mut self, tx: Transaction) -> Result<Txid, RejectReason> {
        self.accept_tx(tx, false).map(|(t, _, _)| t)
    }

    /// Builds a block on the tip paying the coinbase to `payout` with the mempool's best
    /// transactions (or exactly `txs` when given), and submits it.
    pub fn mine_block(&mut self, payout: &ScriptBuf, txs: Option<Vec<Transaction>>) -> Result<BlockHash, ChainError> {
        let txs = txs.unwrap_or_else(|| self.mempool.block_template(MAX_BLOCK_WEIGHT - COINBASE_RESERVE_WEIGHT));
        let block = self.build_block(self.tip_hash(), self.height() + 1, self.median_time_past(), payout, txs)?;
        self.submit_block(&block)?;
        Ok(block.block_hash())
    }

    /// Mines `n` blocks to `payout`.
    pub fn mine(&mut self, n: u32, payout: &ScriptBuf) -> Result<Vec<BlockHash>, ChainError> {
        (0..n).map(|_| self.mine_block(payout, None)).collect()
    }

    /// Replaces the last `depth` blocks by a branch of `depth + extra` new blocks (at least one
    /// more, so the kernel switches to it). The new branch's first block carries the
    /// disconnected blocks' transactions except `exclude` (and anything spending their outputs),
    /// followed by `add` (e.g. double spends of excluded ones); left-out transactions go back to
    /// the mempool when still valid, as in bitcoind. Returns the new blocks' hashes.
    pub fn reorg(
        &mut self,
        depth: u32,
        extra: u32,
        exclude: &[Txid],
        add: Vec<Transaction>,
        payout: &ScriptBuf,
    ) -> Result<Vec<BlockHash>, ChainError> {
        if depth == 0 || depth > self.height() {
            return Err(ChainError::NotFound(format!(
                "cannot reorg {depth} blocks at height {}",
                self.height()
            )));
        }
        let fork = self.height() - depth;
        let mut dropped: std::collections::HashSet<Txid> = exclude.iter().copied().collect();
        let mut carried = vec![];
        for block in &self.blocks[fork as usize + 1..] {
            for tx in block.txdata.iter().skip(1) {
                let txid = tx.compute_txid();
                if dropped.contains(&txid) || tx.input.iter().any(|i| dropped.contains(&i.previous_output.txid)) {
                    dropped.insert(txid);
                } else {
                    carried.push(tx.clone());
                }
            }
        }
        carried.extend(add);
        let mut prev = self.blocks[fork as usize].block_hash();
        let mtp = self.median_time_past();
        let mut hashes = vec![];
        let branch = depth + extra.max(1);
        let mut per_block = self.place_on_branch(fork, branch, mtp, carried);
        for i in 0..branch {
            let txs = std::mem::take(&mut per_block[i as usize]);
            let mut block = self.build_block(prev, fork + 1 + i, mtp + i, payout, txs)?;
            // Distinguish the branch from the blocks it replaces even when both are empty.
            block.header.time = block.header.time.wrapping_add(1 + i);
            block.header.nonce = 0;
            let target = block.header.target();
            while block.header.validate_pow(target).is_err() {
                block.header.nonce = block.header.nonce.wrapping_add(1);
            }
            self.submit_block(&block)?;
            prev = block.block_hash();
            hashes.push(prev);
        }
        if self.tip_hash() != prev {
            return Err(ChainError::BlockRejected {
                hash: prev,
                reason: "reorg branch did not become the active chain".into(),
            });
        }
        Ok(hashes)
    }

    /// Spreads the disconnected (and added) transactions over a new branch of `branch` blocks
    /// on top of block `fork`: each goes into the first block where it is valid — its parents
    /// placed before it, its absolute lock time (height or time) passed, its BIP68 relative
    /// locks and coinbase maturity met — a wallet's anti-fee-sniping lock time at the old tip, or
    /// a claim that waited out a CSV delay, would make the branch's first block invalid. One that
    /// cannot be placed (a time-based relative lock) goes back to the mempool, as in bitcoind.
    fn place_on_branch(&self, fork: u32, branch: u32, mtp: u32, txs: Vec<Transaction>) -> Vec<Vec<Transaction>> {
        // Where each coin a carried transaction spends was created: below the fork (the undo
        // data of the disconnected blocks, or the UTXO set), or on the branch (placed here).
        let mut below: HashMap<OutPoint, Utxo> = HashMap::new();
        for h in fork + 1..=self.height() {
            below.extend(self.spent_by_block(h));
        }
        let mut placed: HashMap<Txid, u32> = HashMap::new();
        let mut per_block: Vec<Vec<Transaction>> = vec![vec![]; branch as usize];
        let first = fork + 1;
        let last = fork + branch;
        for tx in txs {
            let mut earliest = first;
            let mut ok = true;
            let relative = tx.version.0 >= 2;
            for input in &tx.input {
                let op = &input.previous_output;
                let (height, coinbase) = match placed.get(&op.txid) {
                    Some(h) => (*h, false),
                    None => match below.get(op).or_else(|| self.utxos.get(op)) {
                        Some(u) if u.height <= fork => (u.height, u.coinbase),
                        _ => {
                            ok = false;
                            break;
                        }
                    },
                };
                earliest = earliest.max(height);
                if coinbase {
                    earliest = earliest.max(height + COINBASE_MATURITY);
                }
                let seq = input.sequence.0;
                if relative && seq & (1 << 31) == 0 {
                    if seq & (1 << 22) != 0 {
                        // Time-based relative lock: left to the mempool.
                        ok = false;
                        break;
                    }
                    earliest = earliest.max(height + (seq & 0xffff));
                }
            }
            let lock = tx.lock_time.to_consensus_u32();
            if ok && lock != 0 && tx.input.iter().any(|i| i.sequence.0 != u32::MAX) {
                if tx.lock_time.is_block_height() {
                    earliest = earliest.max(lock + 1);
                } else if lock >= mtp {
                    ok = false;
                }
            }
            if !ok || earliest > last {
                continue;
            }
            placed.insert(tx.compute_txid(), earliest);
            per_block[(earliest - first) as usize].push(tx);
        }
        per_block
    }

    /// A valid block at `height` on `prev` (coinbase with BIP34 height and witness commitment,
    /// proof of work ground for regtest's target).
    pub fn build_block(
        &self,
        prev: BlockHash,
        height: u32,
        prev_mtp: u32,
        payout: &ScriptBuf,
        txs: Vec<Transaction>,
    ) -> Result<Block, ChainError> {
        // Fees: the mempool already knows them; other transactions (side branches) are priced
        // from the UTXO set and earlier transactions of the same block, hashed once.
        let in_block: HashMap<Txid, &Transaction> = txs.iter().map(|t| (t.compute_txid(), t)).collect();
        let prevout_value = |op: &OutPoint| {
            self.utxos.get(op).map(|u| u.output.value).or_else(|| {
                in_block
                    .get(&op.txid)
                    .and_then(|p| p.output.get(op.vout as usize))
                    .map(|o| o.value)
            })
        };
        let fees = in_block
            .iter()
            .map(|(txid, t)| match self.mempool.get(txid) {
                Some(e) => e.fee,
                None => {
                    let inputs: Amount = t.input.iter().filter_map(|i| prevout_value(&i.previous_output)).sum();
                    let outputs: Amount = t.output.iter().map(|o| o.value).sum();
                    inputs.checked_sub(outputs).unwrap_or(Amount::ZERO)
                }
            })
            .sum::<Amount>();
        let script_sig = Builder::new()
            .push_int(i64::from(height))
            .push_slice(now_secs().to_le_bytes())
            .into_script();
        let mut coinbase = Transaction {
            version: Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig,
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[[0u8; 32]]),
            }],
            output: vec![TxOut {
                value: subsidy(height) + fees,
                script_pubkey: payout.clone(),
            }],
        };
        let mut block = Block {
            header: Header {
                version: BlockVersion::from_consensus(0x2000_0000),
                prev_blockhash: prev,
                merkle_root: TxMerkleNode::all_zeros(),
                time: (now_secs() as u32).max(prev_mtp + 1),
                bits: CompactTarget::from_consensus(REGTEST_BITS),
                nonce: 0,
            },
            txdata: vec![coinbase.clone()],
        };
        block.txdata.extend(txs);
        let witness_root = block
            .witness_root()
            .ok_or_else(|| ChainError::Kernel("no witness root".into()))?;
        let commitment = Block::compute_witness_commitment(&witness_root, &[0u8; 32]);
        let mut spk = vec![OP_RETURN.to_u8(), 0x24, 0xaa, 0x21, 0xa9, 0xed];
        spk.extend_from_slice(commitment.as_byte_array());
        coinbase.output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::from_bytes(spk),
        });
        block.txdata[0] = coinbase;
        block.header.merkle_root = block
            .compute_merkle_root()
            .ok_or_else(|| ChainError::Kernel("no merkle root".into()))?;
        let target = block.header.target();
        while block.header.validate_pow(target).is_err() {
            block.header.nonce = block.header.nonce.wrapping_add(1);
        }
        Ok(block)
    }
}

/// Verifies every input's script with libbitcoinkernel (all consensus flags, spent outputs
/// given for taproot).
pub fn verify_scripts(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), RejectReason> {
    let fail = |m: String| RejectReason::new(-26, format!("mandatory-script-verify-flag-failed ({m})"));
    let ktx = bitcoinkernel::Transaction::new(&serialize(tx)).map_err(|e| fail(e.to_string()))?;
    let spks: Vec<ScriptPubkey> = prevouts
        .iter()
        .map(|o| ScriptPubkey::new(o.script_pubkey.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| fail(e.to_string()))?;
    let outs: Vec<bitcoinkernel::TxOut> = spks
        .iter()
        .zip(prevouts)
        .map(|(s, o)| bitcoinkernel::TxOut::new(s, o.value.to_sat() as i64))
        .collect();
    let data = PrecomputedTransactionData::new(&ktx, &outs).map_err(|e| fail(e.to_string()))?;
    for (i, o) in prevouts.iter().enumerate() {
        verify(
            &spks[i],
            Some(o.value.to_sat() as i64),
            &ktx,
            i,
            Some(VERIFY_ALL),
            &data,
        )
        .map_err(|e| fail(format!("input {i}: {e}")))?;
    }
    Ok(())
}
