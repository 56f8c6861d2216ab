//! The RPC methods: argument parsing (positional or named, as bitcoind accepts), the calls
//! into the [`Devnet`], and bitcoind's error codes and messages for bad input.

use std::str::FromStr;

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Address, Amount, BlockHash, FeeRate, Network, OutPoint, Transaction, Txid};
use serde_json::{json, Value};

use crate::chain::{Chain, TxLocation, INCREMENTAL_RELAY_FEE, MIN_RELAY_FEE};
use crate::devnet::{anyone_can_spend_spk, Devnet};
use crate::mempool::MempoolEntry;
use crate::rpc::json::{self, btc, HeaderInfo};

/// bitcoind's error codes the devnet uses.
pub mod code {
    /// Unspecified problem / wrong number of parameters.
    pub const MISC: i32 = -1;
    /// A parameter has the wrong JSON type.
    pub const TYPE: i32 = -3;
    /// Invalid address or key / not found.
    pub const INVALID_ADDRESS_OR_KEY: i32 = -5;
    /// A parameter is out of range.
    pub const INVALID_PARAMETER: i32 = -8;
    /// Could not decode a transaction.
    pub const DESERIALIZATION: i32 = -22;
    /// Missing inputs / max fee exceeded.
    pub const VERIFY_ERROR: i32 = -25;
    /// Rejected by policy or consensus.
    pub const VERIFY_REJECTED: i32 = -26;
    /// Already in the chain.
    pub const VERIFY_ALREADY_IN_CHAIN: i32 = -27;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// Body is not JSON-RPC.
    pub const INVALID_REQUEST: i32 = -32600;
    /// Body is not JSON.
    pub const PARSE_ERROR: i32 = -32700;
}

/// An RPC error as bitcoind reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    /// bitcoind's error code.
    pub code: i32,
    /// The message.
    pub message: String,
}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

/// bitcoind's default `maxfeerate` for sendrawtransaction/testmempoolaccept: 0.10 BTC/kvB.
const DEFAULT_MAX_FEE_RATE_SAT_KVB: u64 = 10_000_000;

/// The methods the devnet serves with their parameter names (for named-argument calls).
pub const METHODS: &[(&str, &[&str])] = &[
    ("getblockchaininfo", &[]),
    ("getnetworkinfo", &[]),
    ("getblockcount", &[]),
    ("getbestblockhash", &[]),
    ("getblockhash", &["height"]),
    ("getblockheader", &["blockhash", "verbose"]),
    ("getblock", &["blockhash", "verbosity"]),
    ("gettxout", &["txid", "n", "include_mempool"]),
    ("getrawtransaction", &["txid", "verbose", "blockhash"]),
    ("decoderawtransaction", &["hexstring"]),
    ("sendrawtransaction", &["hexstring", "maxfeerate"]),
    ("testmempoolaccept", &["rawtxs", "maxfeerate"]),
    ("getrawmempool", &["verbose"]),
    ("getmempoolentry", &["txid"]),
    ("getmempoolinfo", &[]),
    ("gettxspendingprevout", &["outputs"]),
    ("waitfornewblock", &["timeout"]),
    ("waitforblockheight", &["height", "timeout"]),
    ("estimatesmartfee", &["conf_target", "estimate_mode"]),
    ("generatetoaddress", &["nblocks", "address", "maxtries"]),
    ("generateblock", &["output", "transactions"]),
    ("uptime", &[]),
    ("devnet_setfeeestimate", &["sat_per_vb"]),
    ("devnet_reorg", &["depth", "extra", "exclude", "add"]),
];

/// Turns named parameters into positional ones for `method`.
pub fn positional(method: &str, params: Value) -> Result<Vec<Value>, RpcError> {
    match params {
        Value::Null => Ok(vec![]),
        Value::Array(a) => Ok(a),
        Value::Object(mut m) => {
            let names = METHODS
                .iter()
                .find(|(n, _)| *n == method)
                .map(|(_, p)| *p)
                .unwrap_or(&[]);
            let mut out = vec![Value::Null; names.len()];
            for (i, name) in names.iter().enumerate() {
                if let Some(v) = m.remove(*name) {
                    out[i] = v;
                }
            }
            if let Some(k) = m.keys().next() {
                return Err(RpcError::new(code::MISC, format!("Unknown named parameter {k}")));
            }
            while out.last() == Some(&Value::Null) {
                out.pop();
            }
            Ok(out)
        }
        _ => Err(RpcError::new(
            code::INVALID_REQUEST,
            "Params must be an array or object",
        )),
    }
}

struct Args<'a> {
    method: &'a str,
    params: &'a [Value],
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(v: &Value, expected: &str) -> RpcError {
    RpcError::new(
        code::TYPE,
        format!("JSON value of type {} is not of expected type {expected}", type_name(v)),
    )
}

impl<'a> Args<'a> {
    fn max(&self, n: usize) -> Result<(), RpcError> {
        if self.params.len() > n {
            return Err(RpcError::new(
                code::MISC,
                format!("{}: too many parameters ({} > {n})", self.method, self.params.len()),
            ));
        }
        Ok(())
    }

    fn opt(&self, i: usize) -> Option<&'a Value> {
        self.params.get(i).filter(|v| !v.is_null())
    }

    fn req(&self, i: usize, name: &str) -> Result<&'a Value, RpcError> {
        self.opt(i).ok_or_else(|| {
            RpcError::new(
                code::MISC,
                format!("{}: missing required parameter {name}", self.method),
            )
        })
    }

    fn u64(&self, i: usize, name: &str) -> Result<u64, RpcError> {
        let v = self.req(i, name)?;
        v.as_u64().ok_or_else(|| {
            if v.is_number() {
                RpcError::new(code::INVALID_PARAMETER, format!("{name} out of range"))
            } else {
                wrong_type(v, "number")
            }
        })
    }

    fn opt_u64(&self, i: usize, name: &str) -> Result<Option<u64>, RpcError> {
        self.opt(i).map(|_| self.u64(i, name)).transpose()
    }

    fn str(&self, i: usize, name: &str) -> Result<&'a str, RpcError> {
        let v = self.req(i, name)?;
        v.as_str().ok_or_else(|| wrong_type(v, "string"))
    }

    fn hash<T: FromStr>(&self, i: usize, name: &str) -> Result<T, RpcError> {
        let s = self.str(i, name)?;
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RpcError::new(
                code::INVALID_PARAMETER,
                format!("{name} must be of length 64 (not {}, for '{s}')", s.len()),
            ));
        }
        s.parse()
            .map_err(|_| RpcError::new(code::INVALID_PARAMETER, format!("{name} must be hexadecimal string")))
    }

    /// A verbosity given as a bool or a number.
    fn verbosity(&self, i: usize, default: u8) -> Result<u8, RpcError> {
        match self.opt(i) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(u8::from(*b)),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(|v| v.min(3) as u8)
                .ok_or_else(|| RpcError::new(code::INVALID_PARAMETER, "verbosity out of range")),
            Some(v) => Err(wrong_type(v, "number")),
        }
    }

    /// A fee rate in BTC/kvB, as sat/kvB.
    fn fee_rate_kvb(&self, i: usize, default: u64) -> Result<u64, RpcError> {
        match self.opt(i) {
            None => Ok(default),
            Some(v) => {
                let btc = v
                    .as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| wrong_type(v, "number"))?;
                if !(0.0..=1.0).contains(&btc) {
                    return Err(RpcError::new(
                        code::TYPE,
                        "Fee rates larger than or equal to 1BTC/kvB are not accepted",
                    ));
                }
                Ok((btc * 1e8).round() as u64)
            }
        }
    }
}

fn decode_tx(hex: &str) -> Result<Transaction, RpcError> {
    deserialize_hex(hex).map_err(|_| {
        RpcError::new(
            code::DESERIALIZATION,
            "TX decode failed. Make sure the tx has at least one input.",
        )
    })
}

fn regtest_address(s: &str) -> Result<Address, RpcError> {
    Address::from_str(s)
        .ok()
        .and_then(|a| a.require_network(Network::Regtest).ok())
        .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Error: Invalid address"))
}

fn header_info<'a>(chain: &'a Chain, hash: &BlockHash) -> Option<HeaderInfo<'a>> {
    if let Some((height, block)) = chain.block_by_hash(hash) {
        return Some(HeaderInfo {
            block,
            height,
            confirmations: i64::from(chain.height() - height) + 1,
            median_time: median_time_at(chain, height),
            chainwork: chain.chainwork(height)?,
            next: chain.block_at(height + 1).map(|b| b.block_hash()),
        });
    }
    let (height, block) = chain.stale_block(hash)?;
    // Work of a stale block: the work up to its parent's height on the active chain plus its
    // own (all regtest blocks carry the same target).
    let parent_work = height.checked_sub(1).and_then(|h| chain.chainwork(h));
    let chainwork = parent_work.map_or(block.header.work(), |w| w + block.header.work());
    Some(HeaderInfo {
        block,
        height,
        confirmations: -1,
        median_time: block.header.time,
        chainwork,
        next: None,
    })
}

fn median_time_at(chain: &Chain, height: u32) -> u32 {
    let mut times: Vec<u32> = (height.saturating_sub(10)..=height)
        .filter_map(|h| chain.block_at(h).map(|b| b.header.time))
        .collect();
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or(0)
}

fn mempool_entry_json(chain: &Chain, e: &MempoolEntry) -> Value {
    let txid = e.tx.compute_txid();
    let pool = chain.mempool();
    let depends: Vec<String> =
        e.tx.input
            .iter()
            .filter(|i| pool.get(&i.previous_output.txid).is_some())
            .map(|i| i.previous_output.txid.to_string())
            .collect();
    let spentby: Vec<String> = (0..e.tx.output.len() as u32)
        .filter_map(|vout| pool.spender(&OutPoint { txid, vout }))
        .map(|t| t.to_string())
        .collect();
    json!({
        "vsize": e.vsize,
        "weight": e.tx.weight().to_wu(),
        "time": e.time,
        "height": e.height,
        "descendantcount": 1 + spentby.len(),
        "ancestorcount": 1 + depends.len(),
        "wtxid": e.tx.compute_wtxid().to_string(),
        "fees": {"base": btc(e.fee), "modified": btc(e.fee)},
        "depends": depends,
        "spentby": spentby,
        "bip125-replaceable": true,
        "unbroadcast": false,
    })
}

fn fee_rate_btc_kvb(rate: FeeRate) -> Value {
    // sat/kwu × 4 = sat/kvB.
    btc(Amount::from_sat(rate.to_sat_per_kwu() * 4))
}

fn not_found_tx() -> RpcError {
    RpcError::new(
        code::INVALID_ADDRESS_OR_KEY,
        "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
    )
}

fn block_not_found() -> RpcError {
    RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found")
}

/// Whether `method` blocks waiting for a block (served asynchronously).
pub fn is_wait(method: &str) -> bool {
    matches!(method, "waitfornewblock" | "waitforblockheight")
}

/// The arguments of the waiting methods: (target height, or any new block; timeout in ms, 0 = none).
pub fn wait_args(method: &str, params: &[Value]) -> Result<(Option<u32>, u64), RpcError> {
    let a = Args { method, params };
    if method == "waitforblockheight" {
        a.max(2)?;
        let h = a.u64(0, "height")?;
        Ok((
            Some(u32::try_from(h).unwrap_or(u32::MAX)),
            a.opt_u64(1, "timeout")?.unwrap_or(0),
        ))
    } else {
        a.max(1)?;
        Ok((None, a.opt_u64(0, "timeout")?.unwrap_or(0)))
    }
}

/// Serves one (non-waiting) call.
pub fn dispatch(
    devnet: &Devnet,
    started: std::time::Instant,
    method: &str,
    params: &[Value],
) -> Result<Value, RpcError> {
    let a = Args { method, params };
    match method {
        "getblockchaininfo" => {
            a.max(0)?;
            devnet.with_chain(|c| {
                let tip = c.block_at(c.height()).map(|b| b.header.time).unwrap_or(0);
                Ok(json!({
                    "chain": "regtest",
                    "blocks": c.height(),
                    "headers": c.height(),
                    "bestblockhash": c.tip_hash().to_string(),
                    "bits": "207fffff",
                    "target": "7fffff0000000000000000000000000000000000000000000000000000000000",
                    "difficulty": c.block_at(0).map(|b| b.header.difficulty_float()).unwrap_or(0.0),
                    "time": tip,
                    "mediantime": c.median_time_past(),
                    "verificationprogress": 1,
                    "initialblockdownload": false,
                    "chainwork": c.chainwork(c.height()).map(json::work_hex),
                    "size_on_disk": 0,
                    "pruned": false,
                    "warnings": [],
                }))
            })
        }
        "getnetworkinfo" => {
            a.max(0)?;
            Ok(json!({
                // Reported as Bitcoin Core 28.0 so clients gating features by version accept it.
                "version": 280000,
                "subversion": concat!("/eddy-devnet:", env!("CARGO_PKG_VERSION"), "/"),
                "protocolversion": 70016,
                "localservices": "0000000000000409",
                "localservicesnames": ["NETWORK", "WITNESS", "NETWORK_LIMITED"],
                "localrelay": true,
                "timeoffset": 0,
                "networkactive": true,
                "connections": 0,
                "connections_in": 0,
                "connections_out": 0,
                "networks": [],
                "relayfee": fee_rate_btc_kvb(MIN_RELAY_FEE),
                "incrementalfee": fee_rate_btc_kvb(INCREMENTAL_RELAY_FEE),
                "localaddresses": [],
                "warnings": [],
            }))
        }
        "getblockcount" => {
            a.max(0)?;
            Ok(json!(devnet.tip().height))
        }
        "getbestblockhash" => {
            a.max(0)?;
            Ok(json!(devnet.tip().hash.to_string()))
        }
        "uptime" => Ok(json!(started.elapsed().as_secs())),
        "getblockhash" => {
            a.max(1)?;
            let h = a.req(0, "height")?;
            let height = h.as_i64().ok_or_else(|| wrong_type(h, "number"))?;
            devnet.with_chain(|c| {
                u32::try_from(height)
                    .ok()
                    .and_then(|h| c.block_at(h))
                    .map(|b| json!(b.block_hash().to_string()))
                    .ok_or_else(|| RpcError::new(code::INVALID_PARAMETER, "Block height out of range"))
            })
        }
        "getblockheader" => {
            a.max(2)?;
            let hash: BlockHash = a.hash(0, "hash")?;
            let verbose = a.verbosity(1, 1)? > 0;
            devnet.with_chain(|c| {
                let info = header_info(c, &hash).ok_or_else(block_not_found)?;
                if verbose {
                    Ok(Value::Object(json::header(&info)))
                } else {
                    Ok(json!(serialize_hex(&info.block.header)))
                }
            })
        }
        "getblock" => {
            a.max(2)?;
            let hash: BlockHash = a.hash(0, "blockhash")?;
            let verbosity = a.verbosity(1, 1)?;
            devnet.with_chain(|c| {
                let info = header_info(c, &hash).ok_or_else(block_not_found)?;
                if verbosity == 0 {
                    return Ok(json!(serialize_hex(info.block)));
                }
                let spent = (info.confirmations >= 0).then(|| c.spent_by_block(info.height));
                Ok(json::block(&info, verbosity, spent.as_ref()))
            })
        }
        "gettxout" => {
            a.max(3)?;
            let txid: Txid = a.hash(0, "txid")?;
            let vout =
                u32::try_from(a.u64(1, "n")?).map_err(|_| RpcError::new(code::INVALID_PARAMETER, "n out of range"))?;
            let include_mempool = a
                .opt(2)
                .map(|v| v.as_bool().ok_or_else(|| wrong_type(v, "bool")))
                .transpose()?
                .unwrap_or(true);
            let op = OutPoint { txid, vout };
            devnet.with_chain(|c| {
                let best = c.tip_hash().to_string();
                if include_mempool && c.mempool().spender(&op).is_some() {
                    return Ok(Value::Null);
                }
                if let Some(u) = c.utxo(&op) {
                    return Ok(json!({
                        "bestblock": best,
                        "confirmations": c.height() - u.height + 1,
                        "value": btc(u.output.value),
                        "scriptPubKey": json::script_pubkey(&u.output.script_pubkey),
                        "coinbase": u.coinbase,
                    }));
                }
                if include_mempool {
                    if let Some(out) = c.mempool().get(&txid).and_then(|e| e.tx.output.get(vout as usize)) {
                        return Ok(json!({
                            "bestblock": best,
                            "confirmations": 0,
                            "value": btc(out.value),
                            "scriptPubKey": json::script_pubkey(&out.script_pubkey),
                            "coinbase": false,
                        }));
                    }
                }
                Ok(Value::Null)
            })
        }
        "getrawtransaction" => {
            a.max(3)?;
            let txid: Txid = a.hash(0, "txid")?;
            let verbose = a.verbosity(1, 0)?;
            devnet.with_chain(|c| {
                let (tx, loc) = c.transaction(&txid).ok_or_else(not_found_tx)?;
                if verbose == 0 {
                    return Ok(json!(serialize_hex(&tx)));
                }
                let mut v = json::transaction(&tx, None);
                if let (TxLocation::Block(h), Some(o)) = (loc, v.as_object_mut()) {
                    if let Some(b) = c.block_at(h) {
                        o.insert("blockhash".into(), json!(b.block_hash().to_string()));
                        o.insert("confirmations".into(), json!(c.height() - h + 1));
                        o.insert("time".into(), json!(b.header.time));
                        o.insert("blocktime".into(), json!(b.header.time));
                    }
                }
                Ok(v)
            })
        }
        "decoderawtransaction" => {
            a.max(1)?;
            let tx = decode_tx(a.str(0, "hexstring")?)?;
            let mut v = json::transaction(&tx, None);
            if let Some(o) = v.as_object_mut() {
                o.remove("hex");
            }
            Ok(v)
        }
        "sendrawtransaction" => {
            a.max(2)?;
            let tx = decode_tx(a.str(0, "hexstring")?)?;
            let max_rate = a.fee_rate_kvb(1, DEFAULT_MAX_FEE_RATE_SAT_KVB)?;
            let txid = tx.compute_txid();
            devnet.with_chain(|c| {
                // Already in the mempool: success, as bitcoind answers a re-broadcast.
                if c.mempool().get(&txid).is_some() {
                    return Ok(json!(txid.to_string()));
                }
                let (_, fee, vsize) = c
                    .accept_tx(tx.clone(), true)
                    .map_err(|r| RpcError::new(r.code, r.message))?;
                if max_rate > 0 && fee.to_sat() * 1000 > max_rate * vsize {
                    return Err(RpcError::new(
                        code::VERIFY_ERROR,
                        "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)",
                    ));
                }
                c.accept_tx(tx, false)
                    .map(|(t, _, _)| json!(t.to_string()))
                    .map_err(|r| RpcError::new(r.code, r.message))
            })
        }
        "testmempoolaccept" => {
            a.max(2)?;
            let raw = a.req(0, "rawtxs")?;
            let list = raw.as_array().ok_or_else(|| wrong_type(raw, "array"))?;
            if list.is_empty() || list.len() > 25 {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "Array must contain between 1 and 25 transactions.",
                ));
            }
            let max_rate = a.fee_rate_kvb(1, DEFAULT_MAX_FEE_RATE_SAT_KVB)?;
            let txs = list
                .iter()
                .map(|v| v.as_str().ok_or_else(|| wrong_type(v, "string")).and_then(decode_tx))
                .collect::<Result<Vec<_>, _>>()?;
            // Each transaction is judged on its own against the current mempool (bitcoind
            // judges a multi-transaction list as a package; the devnet does not).
            devnet.with_chain(|c| {
                Ok(Value::Array(
                    txs.into_iter()
                        .map(|tx| {
                            let txid = tx.compute_txid().to_string();
                            let wtxid = tx.compute_wtxid().to_string();
                            match c.accept_tx(tx, true) {
                                Ok((_, fee, vsize)) if max_rate > 0 && fee.to_sat() * 1000 > max_rate * vsize => json!({
                                    "txid": txid, "wtxid": wtxid, "allowed": false, "reject-reason": "max-fee-exceeded"
                                }),
                                Ok((_, fee, vsize)) => json!({
                                    "txid": txid, "wtxid": wtxid, "allowed": true, "vsize": vsize,
                                    "fees": {
                                        "base": btc(fee),
                                        "effective-feerate": btc(Amount::from_sat(fee.to_sat() * 1000 / vsize.max(1))),
                                        "effective-includes": [wtxid.clone()],
                                    }
                                }),
                                Err(r) => json!({"txid": txid, "wtxid": wtxid, "allowed": false, "reject-reason": r.message}),
                            }
                        })
                        .collect(),
                ))
            })
        }
        "getrawmempool" => {
            a.max(2)?;
            let verbose = a.verbosity(0, 0)? > 0;
            devnet.with_chain(|c| {
                let pool = c.mempool();
                if verbose {
                    let mut m = serde_json::Map::new();
                    for t in pool.txids() {
                        if let Some(e) = pool.get(&t) {
                            m.insert(t.to_string(), mempool_entry_json(c, e));
                        }
                    }
                    Ok(Value::Object(m))
                } else {
                    Ok(json!(pool.txids().iter().map(|t| t.to_string()).collect::<Vec<_>>()))
                }
            })
        }
        "getmempoolentry" => {
            a.max(1)?;
            let txid: Txid = a.hash(0, "txid")?;
            devnet.with_chain(|c| {
                c.mempool()
                    .get(&txid)
                    .map(|e| mempool_entry_json(c, e))
                    .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool"))
            })
        }
        "getmempoolinfo" => {
            a.max(0)?;
            devnet.with_chain(|c| {
                let pool = c.mempool();
                let ids = pool.txids();
                let entries: Vec<&MempoolEntry> = ids.iter().filter_map(|t| pool.get(t)).collect();
                Ok(json!({
                    "loaded": true,
                    "size": entries.len(),
                    "bytes": entries.iter().map(|e| e.vsize).sum::<u64>(),
                    "usage": entries.iter().map(|e| e.tx.total_size() as u64).sum::<u64>(),
                    "total_fee": btc(entries.iter().map(|e| e.fee).sum()),
                    "maxmempool": 300_000_000,
                    "mempoolminfee": fee_rate_btc_kvb(MIN_RELAY_FEE),
                    "minrelaytxfee": fee_rate_btc_kvb(MIN_RELAY_FEE),
                    "incrementalrelayfee": fee_rate_btc_kvb(INCREMENTAL_RELAY_FEE),
                    "unbroadcastcount": 0,
                    "fullrbf": true,
                }))
            })
        }
        "gettxspendingprevout" => {
            a.max(1)?;
            let outs = a.req(0, "outputs")?;
            let list = outs.as_array().ok_or_else(|| wrong_type(outs, "array"))?;
            if list.is_empty() {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "Invalid parameter, outputs are missing",
                ));
            }
            let ops = list
                .iter()
                .map(|o| {
                    let txid = o
                        .get("txid")
                        .and_then(Value::as_str)
                        .and_then(|s| Txid::from_str(s).ok());
                    let vout = o
                        .get("vout")
                        .and_then(Value::as_u64)
                        .and_then(|v| u32::try_from(v).ok());
                    match (txid, vout) {
                        (Some(txid), Some(vout)) => Ok(OutPoint { txid, vout }),
                        _ => Err(RpcError::new(
                            code::INVALID_PARAMETER,
                            "Invalid parameter, expected {\"txid\": hex, \"vout\": n}",
                        )),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            devnet.with_chain(|c| {
                Ok(Value::Array(
                    ops.iter()
                        .map(|op| {
                            let mut v = json!({"txid": op.txid.to_string(), "vout": op.vout});
                            if let (Some(s), Some(o)) = (c.mempool().spender(op), v.as_object_mut()) {
                                o.insert("spendingtxid".into(), json!(s.to_string()));
                            }
                            v
                        })
                        .collect(),
                ))
            })
        }
        "estimatesmartfee" => {
            a.max(2)?;
            let target = a.u64(0, "conf_target")?;
            if !(1..=1008).contains(&target) {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "Invalid conf_target, must be between 1 and 1008",
                ));
            }
            if let Some(v) = a.opt(1) {
                let mode = v.as_str().ok_or_else(|| wrong_type(v, "string"))?;
                if !["unset", "economical", "conservative"].contains(&mode.to_ascii_lowercase().as_str()) {
                    return Err(RpcError::new(
                        code::INVALID_PARAMETER,
                        "Invalid estimate_mode parameter, must be one of: \"unset\", \"economical\", \"conservative\"",
                    ));
                }
            }
            let blocks = target.max(2);
            Ok(match devnet.with_chain(|c| c.fee_estimate()) {
                Some(rate) => json!({"feerate": fee_rate_btc_kvb(rate), "blocks": blocks}),
                None => json!({"errors": ["Insufficient data or no feerate found"], "blocks": 0}),
            })
        }
        "generatetoaddress" => {
            a.max(3)?;
            let n = a.u64(0, "nblocks")?;
            let addr = regtest_address(a.str(1, "address")?)?;
            let n = u32::try_from(n).map_err(|_| RpcError::new(code::INVALID_PARAMETER, "nblocks out of range"))?;
            let hashes = devnet
                .mine(n, Some(&addr.script_pubkey()))
                .map_err(|e| RpcError::new(code::MISC, e.to_string()))?;
            Ok(json!(hashes.iter().map(|h| h.to_string()).collect::<Vec<_>>()))
        }
        "generateblock" => {
            a.max(2)?;
            let payout = regtest_address(a.str(0, "output")?)?.script_pubkey();
            let list = a.req(1, "transactions")?;
            let list = list.as_array().ok_or_else(|| wrong_type(list, "array"))?;
            devnet.with_chain(|c| {
                let mut txs = vec![];
                for v in list {
                    let s = v.as_str().ok_or_else(|| wrong_type(v, "string"))?;
                    if let Ok(txid) = Txid::from_str(s) {
                        let e = c.mempool().get(&txid).ok_or_else(|| {
                            RpcError::new(
                                code::INVALID_ADDRESS_OR_KEY,
                                format!("Transaction {txid} not in mempool."),
                            )
                        })?;
                        txs.push(e.tx.clone());
                    } else {
                        txs.push(decode_tx(s)?);
                    }
                }
                let hash = c
                    .mine_block(&payout, Some(txs))
                    .map_err(|e| RpcError::new(code::VERIFY_ERROR, format!("TestBlockValidity failed: {e}")))?;
                Ok(json!({"hash": hash.to_string()}))
            })
        }
        "devnet_setfeeestimate" => {
            a.max(1)?;
            let rate = match a.opt(0) {
                None => None,
                Some(v) => {
                    let sat_vb = v.as_f64().ok_or_else(|| wrong_type(v, "number"))?;
                    if !(0.25..=100_000.0).contains(&sat_vb) {
                        return Err(RpcError::new(
                            code::INVALID_PARAMETER,
                            "sat_per_vb must be between 0.25 and 100000",
                        ));
                    }
                    Some(FeeRate::from_sat_per_kwu((sat_vb * 250.0).round() as u64))
                }
            };
            devnet.with_chain(|c| c.set_fee_estimate(rate));
            Ok(Value::Null)
        }
        "devnet_reorg" => {
            a.max(4)?;
            let depth = u32::try_from(a.u64(0, "depth")?).unwrap_or(u32::MAX);
            let extra = u32::try_from(a.opt_u64(1, "extra")?.unwrap_or(1))
                .unwrap_or(u32::MAX)
                .min(1000);
            let exclude = match a.opt(2) {
                None => vec![],
                Some(v) => v
                    .as_array()
                    .ok_or_else(|| wrong_type(v, "array"))?
                    .iter()
                    .map(|t| {
                        t.as_str()
                            .and_then(|s| Txid::from_str(s).ok())
                            .ok_or_else(|| RpcError::new(code::INVALID_PARAMETER, "exclude: txids expected"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let add = match a.opt(3) {
                None => vec![],
                Some(v) => v
                    .as_array()
                    .ok_or_else(|| wrong_type(v, "array"))?
                    .iter()
                    .map(|t| t.as_str().ok_or_else(|| wrong_type(t, "string")).and_then(decode_tx))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let hashes = devnet
                .with_chain(|c| c.reorg(depth, extra, &exclude, add, &anyone_can_spend_spk()))
                .map_err(|e| RpcError::new(code::MISC, e.to_string()))?;
            Ok(json!(hashes.iter().map(|h| h.to_string()).collect::<Vec<_>>()))
        }
        _ => Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found")),
    }
}
