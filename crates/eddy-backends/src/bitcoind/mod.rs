//! [`ChainSource`] over bitcoind's JSON-RPC (user/password or cookie). Works against Bitcoin
//! Core 24+ and against Eddy's devnet, which answers in the same shapes.
//!
//! **No `-txindex` needed.** Without it bitcoind's `getrawtransaction <txid>` finds only mempool
//! transactions, yet Eddy looks up confirmed ones too (a funding or claim it saw mined, a claim
//! to re-broadcast). So [`BitcoindSource`] remembers which transactions were in each block read
//! through [`ChainSource::block`] — the chain watcher reads every block it follows — for the
//! last [`REMEMBERED_BLOCKS`] blocks, and looks a confirmed transaction up in its block
//! (`getrawtransaction <txid> true <blockhash>`, which needs no index); a transaction it has not
//! seen is searched in the last [`SCANNED_BLOCKS`] blocks of the best chain. A node with
//! `-txindex` answers the first call already. Fees come from the mempool entry or from the
//! block's undo data (`getblock <hash> 2`), not from the inputs' transactions.

pub mod rpc;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::hashes::Hash;
use bitcoin::{Amount, Block, BlockHash, FeeRate, Network, OutPoint, Transaction, Txid};
use serde_json::{json, Value};

use crate::chain::{BlockRef, BroadcastError, ChainSource, ChainSourceError, TxStatus};
use rpc::{ClientError, RpcClient};

/// bitcoind's "not found" code (unknown block, transaction, mempool entry).
const RPC_NOT_FOUND: i32 = -5;
/// bitcoind's "already in chain" code.
const RPC_ALREADY_IN_CHAIN: i32 = -27;

/// How to authenticate to bitcoind.
#[derive(Clone, Debug)]
pub enum BitcoindAuth {
    /// `rpcuser`/`rpcpassword`.
    UserPass(String, String),
    /// The `.cookie` file bitcoind writes in its data dir.
    Cookie(std::path::PathBuf),
}

/// Blocks whose transactions [`BitcoindSource`] remembers (a day: the watcher's history).
pub const REMEMBERED_BLOCKS: usize = 144;

/// Blocks below the tip searched for a transaction found neither in the mempool nor in a
/// remembered block (one block read from disk per call each; kept small on purpose).
pub const SCANNED_BLOCKS: u32 = 6;

/// Which block each transaction of the recently read blocks is in. Compact on purpose (a
/// mainnet day is ~600,000 transactions): 8 bytes of each txid name the block's sequence number;
/// a rare collision only sends one lookup to the wrong block, which then answers "not found".
#[derive(Debug, Default)]
struct SeenBlocks {
    /// (sequence number, hash, short txids), oldest first.
    order: VecDeque<(u64, BlockHash, Vec<u64>)>,
    block_of: HashMap<u64, u64>,
    next: u64,
}

fn short_id(txid: &Txid) -> u64 {
    let b = txid.to_byte_array();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl SeenBlocks {
    fn add(&mut self, hash: BlockHash, block: &Block) {
        if self.order.iter().any(|(_, h, _)| *h == hash) {
            return;
        }
        let seq = self.next;
        self.next += 1;
        let ids: Vec<u64> = block.txdata.iter().map(|t| short_id(&t.compute_txid())).collect();
        for id in &ids {
            self.block_of.insert(*id, seq);
        }
        self.order.push_back((seq, hash, ids));
        while self.order.len() > REMEMBERED_BLOCKS {
            if let Some((old, _, ids)) = self.order.pop_front() {
                for id in ids {
                    if self.block_of.get(&id) == Some(&old) {
                        self.block_of.remove(&id);
                    }
                }
            }
        }
    }

    #[cfg(test)]
    fn block_of_len(&self) -> usize {
        self.block_of.len()
    }

    /// The remembered block holding `txid` (maybe, on a collision).
    fn block_of(&self, txid: &Txid) -> Option<BlockHash> {
        let seq = *self.block_of.get(&short_id(txid))?;
        let first = self.order.front()?.0;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.order.get(i).map(|(_, h, _)| *h)
    }
}

/// A bitcoind-backed chain source.
#[derive(Debug)]
pub struct BitcoindSource {
    rpc: RpcClient,
    network: Network,
    fallback_fee: FeeRate,
    seen: Mutex<SeenBlocks>,
}

fn unavailable(e: ClientError) -> ChainSourceError {
    match e {
        ClientError::Shape { .. } => ChainSourceError::Protocol(e.to_string()),
        _ => ChainSourceError::Unavailable(e.to_string()),
    }
}

fn protocol(what: &str) -> ChainSourceError {
    ChainSourceError::Protocol(what.to_string())
}

/// Maps bitcoind's `chain` name to a network.
pub fn network_from_chain(chain: &str) -> Option<Network> {
    match chain {
        "main" => Some(Network::Bitcoin),
        "test" => Some(Network::Testnet),
        "testnet4" => Some(Network::Testnet4),
        "signet" => Some(Network::Signet),
        "regtest" => Some(Network::Regtest),
        _ => None,
    }
}

impl BitcoindSource {
    /// Connects to `url` (`http://127.0.0.1:8332`), checks the node answers, and learns its
    /// network. `fallback_fee` is used when the node has no estimate (regtest, a fresh node).
    pub async fn connect(url: &str, auth: &BitcoindAuth, fallback_fee: FeeRate) -> Result<Self, ChainSourceError> {
        let rpc = match auth {
            BitcoindAuth::UserPass(u, p) => RpcClient::new(url, u, p),
            BitcoindAuth::Cookie(path) => RpcClient::with_cookie(url, Path::new(path)),
        }
        .map_err(unavailable)?;
        let info = rpc
            .call_raw("getblockchaininfo", json!([]))
            .await
            .map_err(unavailable)?;
        let network = info["chain"]
            .as_str()
            .and_then(network_from_chain)
            .ok_or_else(|| protocol("getblockchaininfo: unknown chain"))?;
        Ok(BitcoindSource {
            rpc,
            network,
            fallback_fee,
            seen: Mutex::new(SeenBlocks::default()),
        })
    }

    /// The RPC client.
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    async fn call_opt(&self, method: &str, params: Value) -> Result<Option<Value>, ChainSourceError> {
        match self.rpc.call_raw(method, params).await {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Rpc(e)) if e.code == RPC_NOT_FOUND => Ok(None),
            // bitcoind answers getblockhash above the tip with -8 "Block height out of range".
            Err(ClientError::Rpc(e)) if method == "getblockhash" && e.code == -8 => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, SeenBlocks> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `getrawtransaction <txid> true [<blockhash>]` as a [`TxStatus`]; `None` when unknown (or,
    /// with a block, not in it or that block is off the best chain).
    async fn raw_transaction(
        &self,
        txid: &Txid,
        in_block: Option<BlockHash>,
    ) -> Result<Option<TxStatus>, ChainSourceError> {
        let params = match in_block {
            None => json!([txid.to_string(), true]),
            Some(b) => json!([txid.to_string(), true, b.to_string()]),
        };
        let Some(v) = self.call_opt("getrawtransaction", params).await? else {
            return Ok(None);
        };
        if in_block.is_some() && v["in_active_chain"].as_bool() == Some(false) {
            return Ok(None);
        }
        let tx: Transaction = v["hex"]
            .as_str()
            .and_then(|s| deserialize_hex(s).ok())
            .ok_or_else(|| protocol("getrawtransaction: bad hex"))?;
        let block = match v["blockhash"].as_str() {
            None => None,
            Some(h) => {
                let hash = BlockHash::from_str(h).map_err(|_| protocol("bad blockhash"))?;
                match self.height_of(h).await? {
                    Some(height) => Some(BlockRef { height, hash }),
                    // Its block left the best chain: unconfirmed (if anywhere) as far as we know.
                    None if in_block.is_some() => return Ok(None),
                    None => None,
                }
            }
        };
        Ok(Some(TxStatus { tx, block }))
    }

    async fn height_of(&self, hash: &str) -> Result<Option<u32>, ChainSourceError> {
        let Some(h) = self.call_opt("getblockheader", json!([hash])).await? else {
            return Ok(None);
        };
        if h["confirmations"].as_i64() == Some(-1) {
            // Not on the best chain any more.
            return Ok(None);
        }
        h["height"]
            .as_u64()
            .map(|v| Some(v as u32))
            .ok_or_else(|| protocol("getblockheader: no height"))
    }
}

fn btc_per_kvb_to_rate(v: f64) -> Option<FeeRate> {
    let sat_per_kvb = Amount::from_btc(v).ok()?.to_sat();
    // sat/kvB ÷ 4 = sat/kWU, rounded up so we never undershoot.
    Some(FeeRate::from_sat_per_kwu(sat_per_kvb.div_ceil(4)))
}

#[async_trait]
impl ChainSource for BitcoindSource {
    fn network(&self) -> Network {
        self.network
    }

    async fn tip(&self) -> Result<BlockRef, ChainSourceError> {
        let info = self
            .rpc
            .call_raw("getblockchaininfo", json!([]))
            .await
            .map_err(unavailable)?;
        let height = info["blocks"].as_u64().ok_or_else(|| protocol("no blocks"))? as u32;
        let hash = info["bestblockhash"]
            .as_str()
            .and_then(|s| BlockHash::from_str(s).ok())
            .ok_or_else(|| protocol("no bestblockhash"))?;
        Ok(BlockRef { height, hash })
    }

    async fn block_hash(&self, height: u32) -> Result<Option<BlockHash>, ChainSourceError> {
        match self.call_opt("getblockhash", json!([height])).await? {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(|s| BlockHash::from_str(s).ok())
                .map(Some)
                .ok_or_else(|| protocol("getblockhash: not a hash")),
        }
    }

    async fn block(&self, hash: &BlockHash) -> Result<Option<(Block, u32)>, ChainSourceError> {
        let hex = hash.to_string();
        let Some(height) = self.height_of(&hex).await? else {
            return Ok(None);
        };
        let Some(raw) = self.call_opt("getblock", json!([hex, 0])).await? else {
            return Ok(None);
        };
        let block: Block = raw
            .as_str()
            .and_then(|s| deserialize_hex(s).ok())
            .ok_or_else(|| protocol("getblock: bad hex"))?;
        self.seen().add(*hash, &block);
        Ok(Some((block, height)))
    }

    async fn transaction(&self, txid: &Txid) -> Result<Option<TxStatus>, ChainSourceError> {
        // The mempool (or every transaction, on a node with -txindex).
        if let Some(found) = self.raw_transaction(txid, None).await? {
            return Ok(Some(found));
        }
        // Without -txindex: the block it was seen in, then the last few blocks.
        let hint = self.seen().block_of(txid);
        if let Some(hash) = hint {
            if let Some(found) = self.raw_transaction(txid, Some(hash)).await? {
                return Ok(Some(found));
            }
        }
        let tip = self.tip().await?;
        for height in (tip.height.saturating_sub(SCANNED_BLOCKS - 1)..=tip.height).rev() {
            let Some(hash) = self.block_hash(height).await? else {
                continue;
            };
            if Some(hash) == hint {
                continue;
            }
            if let Some(found) = self.raw_transaction(txid, Some(hash)).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    async fn tx_fee(&self, tx: &Transaction) -> Result<Amount, ChainSourceError> {
        let txid = tx.compute_txid();
        if let Some(entry) = self.call_opt("getmempoolentry", json!([txid.to_string()])).await? {
            if let Some(fee) = entry["fees"]["base"].as_f64().and_then(|v| Amount::from_btc(v).ok()) {
                return Ok(fee);
            }
        }
        // Confirmed: bitcoind reports each transaction's fee from the block's undo data.
        if let Some(TxStatus { block: Some(b), .. }) = self.transaction(&txid).await? {
            if let Some(block) = self.call_opt("getblock", json!([b.hash.to_string(), 2])).await? {
                let want = txid.to_string();
                let fee = block["tx"]
                    .as_array()
                    .and_then(|txs| txs.iter().find(|t| t["txid"].as_str() == Some(want.as_str())))
                    .and_then(|t| t["fee"].as_f64())
                    .and_then(|v| Amount::from_btc(v).ok());
                if let Some(fee) = fee {
                    return Ok(fee);
                }
            }
        }
        crate::chain::fee_from_inputs(self, tx).await
    }

    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, BroadcastError> {
        let txid = tx.compute_txid();
        // maxfeerate 0: Eddy's own fee policy decides (near the expiry it may pay a lot on
        // purpose); bitcoind's default cap would silently block such a claim.
        match self
            .rpc
            .call_raw("sendrawtransaction", json!([serialize_hex(tx), 0]))
            .await
        {
            Ok(_) => Ok(txid),
            Err(ClientError::Rpc(e)) => {
                let known = e.code == RPC_ALREADY_IN_CHAIN
                    || e.message.contains("txn-already-in-mempool")
                    || e.message.contains("txn-already-known")
                    || e.message.contains("txn-same-nonwitness-data-in-mempool");
                if known {
                    Ok(txid)
                } else {
                    Err(BroadcastError::Rejected {
                        code: e.code,
                        reason: e.message,
                    })
                }
            }
            Err(e) => Err(BroadcastError::Source(unavailable(e))),
        }
    }

    async fn fee_rate(&self, conf_target: u16) -> Result<FeeRate, ChainSourceError> {
        let target = conf_target.clamp(1, 1008);
        let est = self
            .rpc
            .call_raw("estimatesmartfee", json!([target, "economical"]))
            .await
            .map_err(unavailable)?;
        let estimated = est["feerate"].as_f64().and_then(btc_per_kvb_to_rate);
        let info = self
            .rpc
            .call_raw("getmempoolinfo", json!([]))
            .await
            .map_err(unavailable)?;
        let floor = info["mempoolminfee"]
            .as_f64()
            .and_then(btc_per_kvb_to_rate)
            .unwrap_or(FeeRate::BROADCAST_MIN);
        Ok(estimated.unwrap_or(self.fallback_fee).max(floor))
    }

    async fn mempool_txids(&self) -> Result<Vec<Txid>, ChainSourceError> {
        let v = self
            .rpc
            .call_raw("getrawmempool", json!([false]))
            .await
            .map_err(unavailable)?;
        v.as_array()
            .ok_or_else(|| protocol("getrawmempool: not an array"))?
            .iter()
            .map(|t| {
                t.as_str()
                    .and_then(|s| Txid::from_str(s).ok())
                    .ok_or_else(|| protocol("getrawmempool: not a txid"))
            })
            .collect()
    }

    async fn mempool_spender(&self, outpoint: &OutPoint) -> Result<Option<Txid>, ChainSourceError> {
        let v = self
            .rpc
            .call_raw(
                "gettxspendingprevout",
                json!([[{"txid": outpoint.txid.to_string(), "vout": outpoint.vout}]]),
            )
            .await
            .map_err(unavailable)?;
        Ok(v[0]["spendingtxid"].as_str().and_then(|s| Txid::from_str(s).ok()))
    }

    async fn wait_for_block(&self, current: &BlockHash, timeout: Duration) -> Result<BlockRef, ChainSourceError> {
        let tip = self.tip().await?;
        if tip.hash != *current {
            return Ok(tip);
        }
        let ms = timeout.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        let v = self
            .rpc
            .call_raw("waitfornewblock", json!([ms]))
            .await
            .map_err(unavailable)?;
        let height = v["height"]
            .as_u64()
            .ok_or_else(|| protocol("waitfornewblock: no height"))? as u32;
        let hash = v["hash"]
            .as_str()
            .and_then(|s| BlockHash::from_str(s).ok())
            .ok_or_else(|| protocol("waitfornewblock: no hash"))?;
        Ok(BlockRef { height, hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_blocks_remember_the_last_blocks_transactions() {
        let genesis = bitcoin::blockdata::constants::genesis_block(Network::Regtest);
        let block = |i: u32| {
            let tx = Transaction {
                version: bitcoin::transaction::Version::TWO,
                lock_time: bitcoin::absolute::LockTime::ZERO,
                input: vec![],
                output: vec![bitcoin::TxOut {
                    value: Amount::from_sat(u64::from(i)),
                    script_pubkey: bitcoin::ScriptBuf::new(),
                }],
            };
            let mut header = genesis.header;
            header.nonce = i;
            Block {
                header,
                txdata: vec![tx],
            }
        };
        let mut seen = SeenBlocks::default();
        let blocks: Vec<Block> = (0..=REMEMBERED_BLOCKS as u32).map(block).collect();
        for b in &blocks[..2] {
            seen.add(b.block_hash(), b);
        }
        seen.add(blocks[0].block_hash(), &blocks[0]);
        let first_tx = blocks[0].txdata[0].compute_txid();
        assert_eq!(seen.block_of(&first_tx), Some(blocks[0].block_hash()));
        assert_eq!(seen.order.len(), 2, "a block read twice is remembered once");
        for b in &blocks[2..] {
            seen.add(b.block_hash(), b);
        }
        assert_eq!(seen.order.len(), REMEMBERED_BLOCKS);
        assert_eq!(seen.block_of(&first_tx), None, "the oldest block is forgotten");
        let last = &blocks[REMEMBERED_BLOCKS];
        assert_eq!(seen.block_of(&last.txdata[0].compute_txid()), Some(last.block_hash()));
        let second = &blocks[1];
        assert_eq!(
            seen.block_of(&second.txdata[0].compute_txid()),
            Some(second.block_hash())
        );
        assert_eq!(seen.block_of_len(), REMEMBERED_BLOCKS);
    }

    #[test]
    fn fee_conversion_rounds_up() {
        // 0.00001 BTC/kvB = 1000 sat/kvB = 250 sat/kWU.
        assert_eq!(btc_per_kvb_to_rate(0.00001), Some(FeeRate::from_sat_per_kwu(250)));
        // 1001 sat/kvB → 250.25 → 251 sat/kWU.
        assert_eq!(btc_per_kvb_to_rate(0.00001001), Some(FeeRate::from_sat_per_kwu(251)));
        assert_eq!(network_from_chain("regtest"), Some(Network::Regtest));
        assert_eq!(network_from_chain("x"), None);
    }
}
