//! Conformance of Eddy's `ChainSource` over bitcoind's RPC and of the chain watcher, run
//! against the lab's chain: the devnet by default, a real bitcoind when `BITCOIND_EXE` or
//! `BITCOIND_RPC_URL` is set (the lab's bitcoind runs without `-txindex`). The devnet-only step
//! (a faked fee estimate) is skipped on bitcoind and says so.

use std::sync::Arc;
use std::time::Duration;

use bitcoin::blockdata::opcodes::all::OP_PUSHNUM_16;
use bitcoin::hashes::Hash;
use bitcoin::script::Builder;
use bitcoin::transaction::Version;
use bitcoin::{
    absolute, Address, Amount, FeeRate, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};
use eddy_backends::bitcoind::{BitcoindAuth, BitcoindSource};
use eddy_backends::{BlockRef, BroadcastError, ChainSource, ChainWatcher, WatchEvent, WatchId, WatchStatus};
use eddy_core::types::SwapId;
use eddy_lab::{Lab, LabConfig};

/// Two watches of the test (swaps named by their whole ids).
const W42: WatchId = WatchId::Swap(SwapId([42; 32]));
const W43: WatchId = WatchId::Swap(SwapId([43; 32]));

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn source(rt: &tokio::runtime::Runtime, lab: &Lab, fallback: FeeRate) -> BitcoindSource {
    let (_, _, user, password) = lab.chain.rpc_credentials();
    rt.block_on(BitcoindSource::connect(
        &lab.chain.url(),
        &BitcoindAuth::UserPass(user, password),
        fallback,
    ))
    .expect("connect")
}

/// A script anyone can satisfy (OP_16), distinct from the faucet's OP_TRUE.
fn sixteen() -> ScriptBuf {
    Builder::new().push_opcode(OP_PUSHNUM_16).into_script()
}

fn spend_sixteen(prev: OutPoint, value: Amount, to: ScriptBuf, lock_time: u32) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: absolute::LockTime::from_consensus(lock_time),
        input: vec![TxIn {
            previous_output: prev,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::from_slice(&[sixteen().as_bytes()]),
        }],
        output: vec![TxOut {
            value: value - Amount::from_sat(500),
            script_pubkey: to,
        }],
    }
}

#[test]
fn bitcoind_source_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(LabConfig::new(dir.path(), 0)).expect("lab");
    let rt = runtime();
    let fallback = FeeRate::from_sat_per_kwu(1_250);
    let src = source(&rt, &lab, fallback);
    assert_eq!(src.network(), Network::Regtest);

    let (height, hash) = lab.chain.tip().expect("tip");
    let tip = rt.block_on(src.tip()).expect("tip");
    assert_eq!(tip, BlockRef { height, hash });
    assert_eq!(rt.block_on(src.block_hash(height)).expect("hash"), Some(hash));
    assert_eq!(rt.block_on(src.block_hash(height + 1)).expect("above tip"), None);
    let (block, h) = rt.block_on(src.block(&hash)).expect("block").expect("known");
    assert_eq!((block.block_hash(), h), (hash, height));
    let unknown = bitcoin::BlockHash::from_byte_array([7; 32]);
    assert_eq!(rt.block_on(src.block(&unknown)).expect("unknown"), None);
    assert_eq!(
        rt.block_on(src.transaction(&Txid::from_byte_array([9; 32])))
            .expect("unknown"),
        None
    );

    // Broadcast is idempotent from the mempool to the chain.
    let addr = Address::p2wsh(&sixteen(), Network::Regtest);
    let txid = lab.chain.fund(&addr, Amount::from_sat(200_000)).expect("fund");
    let status = rt.block_on(src.transaction(&txid)).expect("tx").expect("known");
    assert_eq!(status.block, None);
    let funding = status.tx.clone();
    assert!(rt.block_on(src.mempool_txids()).expect("mempool").contains(&txid));
    let faucet_coin = funding.input[0].previous_output;
    assert_eq!(
        rt.block_on(src.mempool_spender(&faucet_coin)).expect("spender"),
        Some(txid)
    );
    assert_eq!(
        rt.block_on(src.broadcast(&funding)),
        Ok(txid),
        "already in the mempool = success"
    );
    let mined = lab.chain.mine(1).expect("mine");
    let status = rt.block_on(src.transaction(&txid)).expect("tx").expect("known");
    assert_eq!(
        status.block,
        Some(BlockRef {
            height: height + 1,
            hash: mined[0]
        })
    );
    assert_eq!(
        rt.block_on(src.broadcast(&funding)),
        Ok(txid),
        "already in the chain = success"
    );
    assert_eq!(rt.block_on(src.mempool_spender(&faucet_coin)).expect("spender"), None);

    // No -txindex needed (the lab's bitcoind runs without it): a confirmed transaction is found
    // in the last blocks, or in a block read through `block` (what the watcher does), and its
    // fee comes from the mempool entry or the block, not from its parents. The faucet pays
    // exactly 2 sat/vB.
    let fee = Amount::from_sat(funding.vsize() as u64 * 2);
    assert_eq!(rt.block_on(src.tx_fee(&funding)), Ok(fee), "confirmed: from the block");
    let indexed = lab.chain.is_devnet()
        || lab
            .chain
            .rpc::<serde_json::Value>("getindexinfo", serde_json::json!([]))
            .is_ok_and(|v| v.get("txindex").is_some());
    lab.chain
        .mine(eddy_backends::bitcoind::SCANNED_BLOCKS)
        .expect("bury it below the scanned blocks");
    let found = rt.block_on(src.transaction(&txid)).expect("tx");
    assert_eq!(
        found.is_some(),
        indexed,
        "only an index finds an old block's transaction unread"
    );
    rt.block_on(src.block(&mined[0])).expect("block").expect("known");
    let found = rt
        .block_on(src.transaction(&txid))
        .expect("tx")
        .expect("in a block read");
    assert_eq!(found.block.map(|b| (b.height, b.hash)), Some((height + 1, mined[0])));
    assert_eq!(rt.block_on(src.tx_fee(&funding)), Ok(fee));
    let spare = lab
        .chain
        .fund(&Address::p2wsh(&sixteen(), Network::Regtest), Amount::from_sat(10_000))
        .expect("fund");
    let spare = rt.block_on(src.transaction(&spare)).expect("tx").expect("mempool").tx;
    assert_eq!(
        rt.block_on(src.tx_fee(&spare)),
        Ok(Amount::from_sat(spare.vsize() as u64 * 2)),
        "in the mempool: from its entry"
    );

    // Rejections are classified.
    let vout = funding
        .output
        .iter()
        .position(|o| o.script_pubkey == addr.script_pubkey())
        .expect("vout") as u32;
    let coin = OutPoint { txid, vout };
    let locked = spend_sixteen(coin, Amount::from_sat(200_000), sixteen().to_p2wsh(), height + 10);
    let err = rt.block_on(src.broadcast(&locked)).expect_err("non-final");
    assert!(err.is_non_final(), "{err}");
    let missing = spend_sixteen(
        OutPoint {
            txid: Txid::from_byte_array([3; 32]),
            vout: 0,
        },
        Amount::from_sat(1_000),
        sixteen().to_p2wsh(),
        0,
    );
    let err = rt.block_on(src.broadcast(&missing)).expect_err("missing");
    assert!(err.is_missing_inputs(), "{err}");
    assert!(matches!(err, BroadcastError::Rejected { code: -25, .. }));

    // Fee estimate: fallback without data, never below the mempool minimum.
    if lab.chain.devnet().is_some() {
        assert_eq!(rt.block_on(src.fee_rate(6)).expect("fee"), fallback);
        lab.chain.set_fee_estimate(Some(20.0)).expect("set");
        assert_eq!(
            rt.block_on(src.fee_rate(2)).expect("fee"),
            FeeRate::from_sat_per_kwu(5_000)
        );
        lab.chain.set_fee_estimate(None).expect("unset");
        let low = source(&rt, &lab, FeeRate::from_sat_per_kwu(100));
        assert_eq!(
            rt.block_on(low.fee_rate(6)).expect("fee"),
            FeeRate::from_sat_per_kwu(250),
            "floor"
        );
    } else {
        eprintln!("skipping fee-estimate steps: only the devnet can set an estimate");
    }

    // wait_for_block: returns at once when the tip moved, waits otherwise.
    let now = rt.block_on(src.tip()).expect("tip");
    let same = rt
        .block_on(src.wait_for_block(&now.hash, Duration::from_millis(100)))
        .expect("wait");
    assert_eq!(same, now, "timeout: still the same tip");
    let url = lab.chain.url();
    let (_, _, user, password) = lab.chain.rpc_credentials();
    let miner = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let rt2 = runtime();
        let c = eddy_backends::bitcoind::rpc::RpcClient::new(&url, &user, &password).expect("client");
        let addr = Address::p2wsh(&sixteen(), Network::Regtest).to_string();
        rt2.block_on(c.call_raw("generatetoaddress", serde_json::json!([1, addr])))
            .expect("mine");
    });
    let next = rt
        .block_on(src.wait_for_block(&now.hash, Duration::from_secs(30)))
        .expect("wait");
    miner.join().expect("miner");
    assert_eq!(next.height, now.height + 1);
    lab.stop();
}

#[test]
fn watcher_follows_funding_spend_and_reorgs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(LabConfig::new(dir.path(), 0)).expect("lab");
    let rt = runtime();
    let src: Arc<dyn ChainSource> = Arc::new(source(&rt, &lab, FeeRate::from_sat_per_kwu(500)));
    let start = rt.block_on(src.tip()).expect("tip");
    let mut w = ChainWatcher::new(src.clone(), start, 144);
    let spk = sixteen().to_p2wsh();
    w.index_mut().watch_script(W42, spk.clone());
    w.index_mut().watch_script(W43, ScriptBuf::new_op_return([1u8; 4]));
    assert_eq!(rt.block_on(w.sync()).expect("sync"), vec![]);

    // Funding: seen in the mempool, then confirmed, then deeper.
    let addr = Address::p2wsh(&sixteen(), Network::Regtest);
    let txid = lab.chain.fund(&addr, Amount::from_sat(300_000)).expect("fund");
    let ev = rt.block_on(w.sync()).expect("sync");
    let funded = |ev: &[WatchEvent]| -> Option<(OutPoint, Amount, Option<u32>)> {
        ev.iter().find_map(|e| match e {
            WatchEvent::Funded { id: W42, funding } => Some((funding.outpoint, funding.value, funding.height)),
            _ => None,
        })
    };
    let (coin, value, h) = funded(&ev).expect("funded in mempool");
    assert_eq!((coin.txid, value, h), (txid, Amount::from_sat(300_000), None));
    let b1 = lab.chain.mine(1).expect("mine")[0];
    let ev = rt.block_on(w.sync()).expect("sync");
    assert_eq!(funded(&ev).map(|f| f.2), Some(Some(start.height + 1)));
    lab.chain.mine(2).expect("mine");
    assert_eq!(rt.block_on(w.sync()).expect("sync"), vec![], "deeper: nothing new");
    let tip = w.tip().expect("tip").height;
    let st = w.index().status(W42).expect("status").clone();
    assert_eq!(WatchStatus::confirmations(st.fundings[0].height, tip), 3);
    assert!(w.index().status(W43).expect("other").fundings.is_empty());

    // Spend: the witness is reported (where a preimage would be), then confirmation.
    let spend = spend_sixteen(
        coin,
        value,
        ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([5; 32])),
        0,
    );
    let spend_id = rt.block_on(src.broadcast(&spend)).expect("spend");
    let ev = rt.block_on(w.sync()).expect("sync");
    let spent = |ev: &[WatchEvent]| {
        ev.iter().find_map(|e| match e {
            WatchEvent::Spent { id: W42, spend } => Some(spend.clone()),
            _ => None,
        })
    };
    let s = spent(&ev).expect("spend in mempool");
    assert_eq!((s.txid, s.input, s.height), (spend_id, 0, None));
    assert_eq!(s.witness.nth(0), Some(sixteen().as_bytes()));
    lab.chain.mine(1).expect("mine");
    let ev = rt.block_on(w.sync()).expect("sync");
    assert_eq!(spent(&ev).map(|s| s.height), Some(Some(tip + 1)));

    // Reorg out the spend's block leaving it out: disconnected, spend back to unconfirmed.
    lab.chain.reorg(1, 1, &[spend_id], &[]).expect("reorg");
    let ev = rt.block_on(w.sync()).expect("sync");
    assert!(ev
        .iter()
        .any(|e| matches!(e, WatchEvent::Disconnected { height, .. } if *height == tip + 1)));
    let st = w.index().status(W42).expect("status").clone();
    assert_eq!(st.spends.len(), 1);
    assert_eq!(st.spends[0].height, None, "back in the mempool");
    assert!(rt.block_on(src.mempool_txids()).expect("mempool").contains(&spend_id));

    // A deeper reorg that double-spends the funding's own input: the funding output never
    // existed on the new chain; the watcher drops it and the spend.
    let depth = w.tip().expect("tip").height - start.height;
    let funding_tx = rt.block_on(src.transaction(&txid)).expect("tx").expect("funding").tx;
    let faucet_in = funding_tx.input[0].previous_output;
    // The faucet coin's value: the funding's outputs plus its fee (no -txindex to look it up).
    let prev_value =
        funding_tx.output.iter().map(|o| o.value).sum::<Amount>() + rt.block_on(src.tx_fee(&funding_tx)).expect("fee");
    let double = Transaction {
        version: Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: faucet_in,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::from_slice(&[eddy_devnet::anyone_can_spend_script().as_bytes()]),
        }],
        output: vec![TxOut {
            value: prev_value - Amount::from_sat(1_000),
            script_pubkey: eddy_devnet::anyone_can_spend_spk(),
        }],
    };
    lab.chain.reorg(depth, 1, &[txid], &[double]).expect("deep reorg");
    let ev = rt.block_on(w.sync()).expect("sync");
    let disconnected = ev
        .iter()
        .filter(|e| matches!(e, WatchEvent::Disconnected { .. }))
        .count();
    assert_eq!(disconnected as u32, depth);
    assert!(ev.contains(&WatchEvent::Dropped { id: W42, txid }), "{ev:?}");
    assert!(
        ev.contains(&WatchEvent::Dropped {
            id: W42,
            txid: spend_id
        }),
        "{ev:?}"
    );
    let st = w.index().status(W42).expect("status");
    assert!(st.fundings.is_empty() && st.spends.is_empty(), "{st:?}");
    assert_eq!(w.tip(), Some(rt.block_on(src.tip()).expect("tip")));
    let _ = b1;
    lab.stop();
}

/// **A watcher whose start block is reorged out starts again below it** (found by the soak: a
/// daemon restarted with no swap starts its watcher at the tip; a reorg of that very block
/// then failed every sync — "reorg deeper than the history kept" — forever, so that daemon
/// would never have funded, claimed or refunded again). The watcher starts after the tip, the
/// chain replaces the last two blocks (a funding moved into the new branch), and the next sync
/// succeeds, follows the new tip and sees the funding at its new height; a watcher whose
/// history is full still refuses a reorg deeper than it.
#[test]
fn a_watcher_whose_start_block_is_reorged_out_starts_again_below_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(LabConfig::new(dir.path(), 0)).expect("lab");
    let rt = runtime();
    let src: Arc<dyn ChainSource> = Arc::new(source(&rt, &lab, FeeRate::from_sat_per_kwu(500)));
    let addr = Address::p2wsh(&sixteen(), Network::Regtest);
    let txid = lab.chain.fund(&addr, Amount::from_sat(200_000)).expect("fund");
    lab.chain.mine(1).expect("mine");
    let start = rt.block_on(src.tip()).expect("tip");
    let mut w = rt
        .block_on(ChainWatcher::starting_after(src.clone(), start.height))
        .expect("watcher");
    w.index_mut().watch_script(W42, sixteen().to_p2wsh());
    // The start block and the one below it are replaced; the funding lands one block higher.
    lab.chain.reorg(2, 1, &[txid], &[]).expect("reorg");
    let ev = rt.block_on(w.sync()).expect("the watcher follows the new chain");
    let new_tip = rt.block_on(src.tip()).expect("tip");
    assert_eq!(new_tip.height, start.height + 1);
    assert_eq!(w.tip(), Some(new_tip));
    let st = w.index().status(W42).expect("status");
    assert!(
        st.fundings.iter().any(|f| f.outpoint.txid == txid),
        "the funding, in the mempool or the new branch: {st:?} {ev:?}"
    );
    lab.chain.mine(1).expect("mine");
    rt.block_on(w.sync()).expect("sync");
    let st = w.index().status(W42).expect("status");
    let height = st
        .fundings
        .iter()
        .find(|f| f.outpoint.txid == txid)
        .and_then(|f| f.height);
    assert!(
        height.is_some_and(|h| h > start.height - 2),
        "confirmed in the new branch: {height:?}"
    );

    // With its history full (two blocks kept), a reorg below it is still refused.
    let tip = rt.block_on(src.tip()).expect("tip");
    let mut small = ChainWatcher::new(src.clone(), tip, 2);
    lab.chain.mine(3).expect("mine");
    rt.block_on(small.sync()).expect("sync");
    lab.chain.reorg(3, 1, &[], &[]).expect("reorg");
    assert!(rt.block_on(small.sync()).is_err(), "deeper than the history kept");
    lab.stop();
}
