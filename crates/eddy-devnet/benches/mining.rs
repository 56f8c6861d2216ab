//! Devnet throughput: 100 blocks of 1,000 transactions each (under `cargo bench`; a 2 × 50
//! smoke run under `cargo test`). Each block's transactions are one fan-out transaction and
//! 999 children spending its outputs, so blocks carry parent/child chains as real ones do.
//! Prints: transactions accepted per second (kernel script checks included) and blocks mined
//! per second (template, assembly, kernel validation, index update, journal fsync), as JSON.

use std::time::{Duration, Instant};

use bitcoin::transaction::Version;
use bitcoin::{absolute, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use eddy_devnet::{anyone_can_spend_script, anyone_can_spend_spk, Devnet};

fn spend(inputs: Vec<OutPoint>, outputs: Vec<TxOut>) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: inputs
            .into_iter()
            .map(|previous_output| TxIn {
                previous_output,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::from_slice(&[anyone_can_spend_script().as_bytes()]),
            })
            .collect(),
        output: outputs,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let full = std::env::args().any(|a| a == "--bench");
    let (blocks, per_block) = if full { (100u32, 1000usize) } else { (2, 50) };
    let dir = tempfile::tempdir()?;
    let devnet = Devnet::open(dir.path())?;
    // Mature coinbases: one per benchmark block.
    devnet.mine(100 + blocks, None)?;
    let coins: Vec<(OutPoint, Amount)> = devnet.with_chain(|c| {
        (1..=blocks)
            .filter_map(|h| c.block_at(h))
            .map(|b| {
                let cb = &b.txdata[0];
                (
                    OutPoint {
                        txid: cb.compute_txid(),
                        vout: 0,
                    },
                    cb.output[0].value,
                )
            })
            .collect()
    });
    let spk = anyone_can_spend_spk();
    let fee = Amount::from_sat(200);
    let mut accept = Duration::ZERO;
    let mut mine = Duration::ZERO;
    let mut txs = 0usize;
    for (coin, value) in coins {
        let children = per_block - 1;
        // ~43 vB per P2WSH output: 50 sat per output keeps the fan-out above 1 sat/vB.
        let fan_fee = Amount::from_sat(50 * children as u64 + 1_000);
        let each = (value - fan_fee).to_sat() / children as u64;
        let fan = spend(
            vec![coin],
            (0..children)
                .map(|_| TxOut {
                    value: Amount::from_sat(each),
                    script_pubkey: spk.clone(),
                })
                .collect(),
        );
        let fan_id = fan.compute_txid();
        let mut batch = vec![fan];
        for vout in 0..children as u32 {
            batch.push(spend(
                vec![OutPoint { txid: fan_id, vout }],
                vec![TxOut {
                    value: Amount::from_sat(each) - fee,
                    script_pubkey: spk.clone(),
                }],
            ));
        }
        let t = Instant::now();
        devnet.with_chain(|c| -> Result<(), eddy_devnet::RejectReason> {
            for tx in batch {
                c.accept_tx(tx, false)?;
            }
            Ok(())
        })?;
        accept += t.elapsed();
        txs += per_block;
        let t = Instant::now();
        let mined = devnet.with_chain(|c| c.mine(1, &spk))?;
        mine += t.elapsed();
        let n = devnet.with_chain(|c| c.block_by_hash(&mined[0]).map(|(_, b)| b.txdata.len()));
        assert_eq!(n, Some(per_block + 1), "every transaction mined");
    }
    println!(
        "{{\"bench\":\"devnet_mining\",\"mode\":\"{}\",\"blocks\":{blocks},\"txs_per_block\":{per_block},\
         \"accept_txs_per_sec\":{:.0},\"mine_blocks_per_sec\":{:.2},\"mine_ms_per_block\":{:.1},\
         \"end_to_end_blocks_per_sec\":{:.2}}}",
        if full { "full" } else { "smoke" },
        txs as f64 / accept.as_secs_f64(),
        f64::from(blocks) / mine.as_secs_f64(),
        mine.as_secs_f64() * 1000.0 / f64::from(blocks),
        f64::from(blocks) / (mine + accept).as_secs_f64(),
    );
    Ok(())
}
