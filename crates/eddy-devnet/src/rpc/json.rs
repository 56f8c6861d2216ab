//! bitcoind's JSON shapes for blocks, headers, transactions, scripts and mempool entries, so
//! that clients written against Bitcoin Core (ldk-node's lightning-block-sync, LND's btcd-style
//! client, Eddy's own backend) parse the devnet's answers unchanged. Field names and types
//! follow Bitcoin Core 28; differences are listed where they exist.

use std::collections::HashMap;

use bitcoin::blockdata::opcodes::{self, Opcode};
use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::Hash;
use bitcoin::hex::DisplayHex;
use bitcoin::script::Instruction;
use bitcoin::{Address, Amount, Block, Network, OutPoint, Script, Transaction, Work};
use serde_json::{json, Map, Value};

use crate::chain::Utxo;

/// An amount as bitcoind prints it: a JSON number in BTC.
pub fn btc(amount: Amount) -> Value {
    json!(amount.to_btc())
}

/// Chain work as 64 hex digits.
pub fn work_hex(work: Work) -> String {
    work.to_be_bytes().to_lower_hex_string()
}

/// bitcoind's name for an opcode in `asm` strings.
fn opcode_name(op: Opcode) -> String {
    use opcodes::all::*;
    match op {
        OP_PUSHBYTES_0 => "0".into(),
        OP_PUSHNUM_NEG1 => "-1".into(),
        OP_CLTV => "OP_CHECKLOCKTIMEVERIFY".into(),
        OP_CSV => "OP_CHECKSEQUENCEVERIFY".into(),
        OP_NOP1 => "OP_NOP1".into(),
        _ => {
            let byte = op.to_u8();
            if (OP_PUSHNUM_1.to_u8()..=OP_PUSHNUM_16.to_u8()).contains(&byte) {
                return (byte - OP_PUSHNUM_1.to_u8() + 1).to_string();
            }
            op.to_string()
        }
    }
}

/// Decodes a minimally encoded script number of up to 4 bytes.
fn script_num(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 4 {
        return None;
    }
    let mut v: i64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        v |= i64::from(*b) << (8 * i);
    }
    let last = bytes[bytes.len() - 1];
    if last & 0x80 != 0 {
        v &= !(0x80_i64 << (8 * (bytes.len() - 1)));
        v = -v;
    }
    Some(v)
}

/// A script in bitcoind's `asm` notation: pushes of up to 4 bytes as numbers, longer ones as
/// hex, opcodes by name.
pub fn asm(script: &Script) -> String {
    let mut parts = vec![];
    for ins in script.instructions() {
        match ins {
            Ok(Instruction::PushBytes(b)) if b.is_empty() => parts.push("0".to_string()),
            Ok(Instruction::PushBytes(b)) => match script_num(b.as_bytes()) {
                Some(n) => parts.push(n.to_string()),
                None => parts.push(b.as_bytes().to_lower_hex_string()),
            },
            Ok(Instruction::Op(op)) => parts.push(opcode_name(op)),
            Err(_) => {
                parts.push("[error]".into());
                break;
            }
        }
    }
    parts.join(" ")
}

/// bitcoind's output type name.
pub fn script_type(spk: &Script) -> &'static str {
    let b = spk.as_bytes();
    if spk.is_p2wpkh() {
        "witness_v0_keyhash"
    } else if spk.is_p2wsh() {
        "witness_v0_scripthash"
    } else if spk.is_p2tr() {
        "witness_v1_taproot"
    } else if b == [0x51, 0x02, 0x4e, 0x73] {
        "anchor"
    } else if spk.is_p2pkh() {
        "pubkeyhash"
    } else if spk.is_p2sh() {
        "scripthash"
    } else if spk.is_p2pk() {
        "pubkey"
    } else if spk.is_op_return() {
        "nulldata"
    } else if spk.is_multisig() {
        "multisig"
    } else if spk.is_witness_program() {
        "witness_unknown"
    } else {
        "nonstandard"
    }
}

/// A `scriptPubKey` object. (bitcoind also prints a `desc` output descriptor; the devnet
/// leaves it out.)
pub fn script_pubkey(spk: &Script) -> Value {
    let mut o = Map::new();
    o.insert("asm".into(), json!(asm(spk)));
    o.insert("hex".into(), json!(spk.as_bytes().to_lower_hex_string()));
    if let Ok(addr) = Address::from_script(spk, Network::Regtest) {
        o.insert("address".into(), json!(addr.to_string()));
    }
    o.insert("type".into(), json!(script_type(spk)));
    Value::Object(o)
}

/// A transaction as `decoderawtransaction` prints it; `prevouts` (when known) add each input's
/// `prevout` and the transaction's `fee`, as `getblock` verbosity 3 / 2 do.
pub fn transaction(tx: &Transaction, prevouts: Option<&HashMap<OutPoint, Utxo>>) -> Value {
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|i| {
            let mut o = Map::new();
            if tx.is_coinbase() {
                o.insert("coinbase".into(), json!(i.script_sig.as_bytes().to_lower_hex_string()));
            } else {
                o.insert("txid".into(), json!(i.previous_output.txid.to_string()));
                o.insert("vout".into(), json!(i.previous_output.vout));
                o.insert(
                    "scriptSig".into(),
                    json!({"asm": asm(&i.script_sig), "hex": i.script_sig.as_bytes().to_lower_hex_string()}),
                );
            }
            if !i.witness.is_empty() {
                let items: Vec<String> = i.witness.iter().map(|w| w.to_lower_hex_string()).collect();
                o.insert("txinwitness".into(), json!(items));
            }
            o.insert("sequence".into(), json!(i.sequence.0));
            Value::Object(o)
        })
        .collect();
    let vout: Vec<Value> = tx
        .output
        .iter()
        .enumerate()
        .map(|(n, o)| json!({"value": btc(o.value), "n": n, "scriptPubKey": script_pubkey(&o.script_pubkey)}))
        .collect();
    let mut o = Map::new();
    o.insert("txid".into(), json!(tx.compute_txid().to_string()));
    o.insert("hash".into(), json!(tx.compute_wtxid().to_string()));
    o.insert("version".into(), json!(tx.version.0));
    o.insert("size".into(), json!(tx.total_size()));
    o.insert("vsize".into(), json!(tx.vsize()));
    o.insert("weight".into(), json!(tx.weight().to_wu()));
    o.insert("locktime".into(), json!(tx.lock_time.to_consensus_u32()));
    o.insert("vin".into(), Value::Array(vin));
    o.insert("vout".into(), Value::Array(vout));
    if let (Some(prev), false) = (prevouts, tx.is_coinbase()) {
        let inputs: Option<Amount> = tx
            .input
            .iter()
            .map(|i| prev.get(&i.previous_output).map(|u| u.output.value))
            .sum();
        let outputs: Amount = tx.output.iter().map(|o| o.value).sum();
        if let Some(fee) = inputs.and_then(|i| i.checked_sub(outputs)) {
            o.insert("fee".into(), btc(fee));
        }
    }
    o.insert("hex".into(), json!(serialize_hex(tx)));
    Value::Object(o)
}

/// Header fields shared by `getblockheader` and `getblock`.
pub struct HeaderInfo<'a> {
    /// The block.
    pub block: &'a Block,
    /// Its height.
    pub height: u32,
    /// Confirmations (-1 for a block off the active chain).
    pub confirmations: i64,
    /// Median time past at this block.
    pub median_time: u32,
    /// Total work up to it.
    pub chainwork: Work,
    /// The next block in the active chain.
    pub next: Option<bitcoin::BlockHash>,
}

/// A `getblockheader` verbose object.
pub fn header(info: &HeaderInfo<'_>) -> Map<String, Value> {
    let h = &info.block.header;
    let mut o = Map::new();
    o.insert("hash".into(), json!(h.block_hash().to_string()));
    o.insert("confirmations".into(), json!(info.confirmations));
    o.insert("height".into(), json!(info.height));
    o.insert("version".into(), json!(h.version.to_consensus()));
    o.insert("versionHex".into(), json!(format!("{:08x}", h.version.to_consensus())));
    o.insert("merkleroot".into(), json!(h.merkle_root.to_string()));
    o.insert("time".into(), json!(h.time));
    o.insert("mediantime".into(), json!(info.median_time));
    o.insert("nonce".into(), json!(h.nonce));
    o.insert("bits".into(), json!(format!("{:08x}", h.bits.to_consensus())));
    o.insert("difficulty".into(), json!(h.difficulty_float()));
    o.insert("chainwork".into(), json!(work_hex(info.chainwork)));
    o.insert("nTx".into(), json!(info.block.txdata.len()));
    if h.prev_blockhash != bitcoin::BlockHash::all_zeros() {
        o.insert("previousblockhash".into(), json!(h.prev_blockhash.to_string()));
    }
    if let Some(next) = info.next {
        o.insert("nextblockhash".into(), json!(next.to_string()));
    }
    o
}

/// A `getblock` object at verbosity 1 (txids) or 2 (decoded transactions with fees).
pub fn block(info: &HeaderInfo<'_>, verbosity: u8, spent: Option<&HashMap<OutPoint, Utxo>>) -> Value {
    let mut o = header(info);
    let b = info.block;
    o.insert("size".into(), json!(b.total_size()));
    let stripped =
        80 + bitcoin::VarInt(b.txdata.len() as u64).size() + b.txdata.iter().map(|t| t.base_size()).sum::<usize>();
    o.insert("strippedsize".into(), json!(stripped));
    o.insert("weight".into(), json!(b.weight().to_wu()));
    let txs: Vec<Value> = if verbosity >= 2 {
        b.txdata.iter().map(|t| transaction(t, spent)).collect()
    } else {
        b.txdata.iter().map(|t| json!(t.compute_txid().to_string())).collect()
    };
    o.insert("tx".into(), Value::Array(txs));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::blockdata::opcodes::all::*;
    use bitcoin::script::Builder;

    #[test]
    fn asm_matches_bitcoind_notation() {
        let s = Builder::new()
            .push_opcode(OP_IF)
            .push_int(0)
            .push_int(16)
            .push_int(144)
            .push_int(-1)
            .push_opcode(OP_CLTV)
            .push_opcode(OP_DROP)
            .push_slice([0xab; 20])
            .push_opcode(OP_CSV)
            .push_opcode(OP_ENDIF)
            .into_script();
        assert_eq!(
            asm(&s),
            format!(
                "OP_IF 0 16 144 -1 OP_CHECKLOCKTIMEVERIFY OP_DROP {} OP_CHECKSEQUENCEVERIFY OP_ENDIF",
                "ab".repeat(20)
            )
        );
    }

    #[test]
    fn script_types() {
        let wsh = crate::devnet::anyone_can_spend_spk();
        assert_eq!(script_type(&wsh), "witness_v0_scripthash");
        let v = script_pubkey(&wsh);
        assert!(v["address"].as_str().is_some_and(|a| a.starts_with("bcrt1q")));
        assert_eq!(script_type(&bitcoin::ScriptBuf::new_op_return([1u8; 4])), "nulldata");
    }
}
