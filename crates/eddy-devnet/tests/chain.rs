//! The devnet chain against consensus and mempool rules, with blocks judged by libbitcoinkernel:
//! coinbase maturity, CLTV and CSV locks rejected before their time and accepted after, double
//! spends, BIP125 replacement, reorgs that return a transaction to the mempool or drop it,
//! rejected blocks, and persistence across a restart.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{Amount, CompressedPublicKey, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use eddy_core::htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams};
use eddy_core::tx::{build_spend, FeeSpec, HtlcInput, SpendPath};
use eddy_core::types::Preimage;
use eddy_devnet::chain::{subsidy, Chain, ChainError, TxLocation};

fn key(n: u8) -> SecretKey {
    SecretKey::from_slice(&[n; 32]).expect("key")
}

fn pubkey(n: u8) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), &key(n))
}

fn wallet_spk() -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&CompressedPublicKey(pubkey(1)).wpubkey_hash())
}

/// Spends `outpoint` (a P2WPKH output of key 1 worth `value`) to `outputs`.
fn spend_p2wpkh(outpoint: OutPoint, value: Amount, outputs: Vec<TxOut>) -> Transaction {
    spend_p2wpkh_locked(
        outpoint,
        value,
        outputs,
        LockTime::ZERO,
        Sequence::ENABLE_RBF_NO_LOCKTIME,
    )
}

/// [`spend_p2wpkh`] with a lock time and an input sequence (a BIP68 relative lock).
fn spend_p2wpkh_locked(
    outpoint: OutPoint,
    value: Amount,
    outputs: Vec<TxOut>,
    lock_time: LockTime,
    sequence: Sequence,
) -> Transaction {
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence,
            witness: Witness::new(),
        }],
        output: outputs,
    };
    let secp = Secp256k1::new();
    let sighash = SighashCache::new(&tx)
        .p2wpkh_signature_hash(0, &wallet_spk(), value, EcdsaSighashType::All)
        .expect("sighash");
    // Low-R signatures: the size does not vary with the message (but for a 1-in-256 short s).
    let sig = secp.sign_ecdsa_low_r(&Message::from_digest(sighash.to_byte_array()), &key(1));
    let sig = bitcoin::ecdsa::Signature {
        signature: sig,
        sighash_type: EcdsaSighashType::All,
    };
    tx.input[0].witness = Witness::p2wpkh(&sig, &pubkey(1));
    tx
}

fn coinbase_outpoint(chain: &Chain, height: u32) -> OutPoint {
    OutPoint {
        txid: chain.block_at(height).expect("block").txdata[0].compute_txid(),
        vout: 0,
    }
}

fn fresh() -> (tempfile::TempDir, Chain) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::open(dir.path()).expect("opens");
    chain.mine(101, &wallet_spk()).expect("mines");
    (dir, chain)
}

fn htlc(kind: HtlcKind, timeout: u32) -> Htlc {
    Htlc::new(HtlcParams {
        kind,
        payment_hash: Preimage::from_bytes([5; 32]).payment_hash(),
        claim_key: HtlcKey::Pubkey(pubkey(2)),
        refund_key: HtlcKey::Pubkey(pubkey(3)),
        timeout,
    })
    .expect("htlc")
}

#[test]
fn mines_pays_subsidy_and_fees_and_enforces_coinbase_maturity() {
    let (_dir, mut chain) = fresh();
    assert_eq!(chain.height(), 101);
    let cb = chain
        .utxo(&coinbase_outpoint(&chain, 1))
        .expect("coinbase utxo")
        .clone();
    assert_eq!(cb.output.value, Amount::from_sat(50 * 100_000_000));
    // Block 3's coinbase is 99 blocks deep at the next height: immature.
    let immature = spend_p2wpkh(
        coinbase_outpoint(&chain, 3),
        cb.output.value,
        vec![TxOut {
            value: Amount::from_sat(1_000_000),
            script_pubkey: wallet_spk(),
        }],
    );
    let err = chain.accept_tx(immature, false).expect_err("immature");
    assert_eq!(
        (err.code, err.message.as_str()),
        (-26, "bad-txns-premature-spend-of-coinbase")
    );

    let tx = spend_p2wpkh(
        coinbase_outpoint(&chain, 1),
        cb.output.value,
        vec![TxOut {
            value: cb.output.value - Amount::from_sat(1_410),
            script_pubkey: wallet_spk(),
        }],
    );
    // Its vsize is 109 or 110: the ECDSA signature is 71 or 72 bytes depending on the coinbase
    // it signs for (its txid moves with the block's time). The devnet must report the exact one.
    let want_vsize = tx.vsize() as u64;
    assert!(matches!(want_vsize, 109 | 110), "{want_vsize}");
    let (txid, fee, vsize) = chain.accept_tx(tx, false).expect("accepted");
    assert_eq!(fee, Amount::from_sat(1_410));
    assert_eq!(vsize, want_vsize);
    assert_eq!(
        chain
            .accept_tx(chain.transaction(&txid).expect("tx").0, false)
            .expect_err("dup")
            .message,
        "txn-already-in-mempool"
    );
    chain.mine(1, &wallet_spk()).expect("mines");
    assert_eq!(chain.transaction(&txid).map(|t| t.1), Some(TxLocation::Block(102)));
    assert!(chain.mempool().is_empty());
    let coinbase = &chain.block_at(102).expect("block").txdata[0];
    assert_eq!(coinbase.output[0].value, subsidy(102) + Amount::from_sat(1_410));
    // Subsidy halves every 150 blocks on regtest.
    assert_eq!(subsidy(150), Amount::from_sat(25 * 100_000_000));
}

#[test]
fn cltv_refund_is_non_final_before_expiry_and_valid_after() {
    let (_dir, mut chain) = fresh();
    let expiry = chain.height() + 5;
    let h = htlc(HtlcKind::P2wsh, expiry);
    let value = Amount::from_sat(50 * 100_000_000);
    let fund = spend_p2wpkh(
        coinbase_outpoint(&chain, 1),
        value,
        vec![TxOut {
            value: Amount::from_sat(1_000_000),
            script_pubkey: h.script_pubkey(),
        }],
    );
    let (fund_txid, _, _) = chain.accept_tx(fund, false).expect("funding accepted");
    chain.mine(1, &wallet_spk()).expect("mined");
    let input = HtlcInput {
        outpoint: OutPoint {
            txid: fund_txid,
            vout: 0,
        },
        value: Amount::from_sat(1_000_000),
        htlc: h,
        path: SpendPath::Refund,
    };
    let mut refund =
        build_spend(vec![input], wallet_spk(), FeeSpec::Rate(FeeRate::from_sat_per_kwu(500))).expect("builds");
    refund.sign(0, &key(3)).expect("signs");
    let refund = refund.finalize().expect("final").tx;
    // nLockTime = E: not final until the next block is E + 1.
    while chain.height() < expiry {
        let err = chain.accept_tx(refund.clone(), false).expect_err("too early");
        assert_eq!(
            (err.code, err.message.as_str()),
            (-26, "non-final"),
            "at {}",
            chain.height()
        );
        chain.mine(1, &wallet_spk()).expect("mined");
    }
    let (txid, fee, vsize) = chain.accept_tx(refund, false).expect("valid at E");
    assert_eq!(fee.to_sat(), vsize * 2);
    chain.mine(1, &wallet_spk()).expect("mined");
    assert_eq!(
        chain.transaction(&txid).map(|t| t.1),
        Some(TxLocation::Block(expiry + 1))
    );
    assert_eq!(
        chain.utxo(&OutPoint { txid, vout: 0 }).map(|u| u.output.value),
        Some(Amount::from_sat(1_000_000) - fee)
    );
}

#[test]
fn csv_refund_waits_for_relative_depth_and_bad_scripts_are_rejected() {
    let (_dir, mut chain) = fresh();
    let h = htlc(HtlcKind::Seed, 3);
    let fund = spend_p2wpkh(
        coinbase_outpoint(&chain, 1),
        Amount::from_sat(50 * 100_000_000),
        vec![TxOut {
            value: Amount::from_sat(500_000),
            script_pubkey: h.script_pubkey(),
        }],
    );
    let (fund_txid, _, _) = chain.accept_tx(fund, false).expect("funding");
    chain.mine(1, &wallet_spk()).expect("mined");
    let op = OutPoint {
        txid: fund_txid,
        vout: 0,
    };
    let build = |path: SpendPath, who: u8| {
        let input = HtlcInput {
            outpoint: op,
            value: Amount::from_sat(500_000),
            htlc: h.clone(),
            path,
        };
        let mut s =
            build_spend(vec![input], wallet_spk(), FeeSpec::Rate(FeeRate::from_sat_per_kwu(250))).expect("builds");
        s.sign(0, &key(who)).expect("signs");
        s.finalize().expect("final").tx
    };
    let refund = build(SpendPath::Refund, 3);
    // Confirmed at height 102; 3-block CSV: valid in block 105.
    for _ in 0..2 {
        let err = chain.accept_tx(refund.clone(), false).expect_err("csv");
        assert_eq!(err.message, "non-BIP68-final");
        chain.mine(1, &wallet_spk()).expect("mined");
    }
    // A claim with a corrupted signature fails script verification, with bitcoind's code.
    let mut bad = build(SpendPath::Claim(Preimage::from_bytes([5; 32])), 2);
    let mut items: Vec<Vec<u8>> = bad.input[0].witness.iter().map(|i| i.to_vec()).collect();
    items[0][10] ^= 1;
    bad.input[0].witness = Witness::from_slice(&items);
    let err = chain.accept_tx(bad, false).expect_err("bad sig");
    assert_eq!(err.code, -26);
    assert!(
        err.message.starts_with("mandatory-script-verify-flag-failed"),
        "{}",
        err.message
    );
    chain.accept_tx(refund, false).expect("csv satisfied");
}

#[test]
fn double_spend_needs_bip125_fees_and_replaces() {
    let (_dir, mut chain) = fresh();
    let op = coinbase_outpoint(&chain, 1);
    let value = Amount::from_sat(50 * 100_000_000);
    let pay = |fee: u64| {
        spend_p2wpkh(
            op,
            value,
            vec![TxOut {
                value: value - Amount::from_sat(fee),
                script_pubkey: wallet_spk(),
            }],
        )
    };
    let (first, _, _) = chain.accept_tx(pay(200), false).expect("first");
    // Same fee: not a valid replacement.
    let err = chain.accept_tx(pay(200), false);
    assert!(err.is_err());
    // Rule 4 counts the replacement's own size (at 1 sat/vB): a replacement must pay 200 + its
    // own vsize. That size moves by a vbyte with the signature's length (a short s), which
    // itself depends on the fee, so there may be no fee exactly one sat short: take the highest
    // fee that is short of its own relay and the lowest that pays it (adjacent when the size
    // holds still).
    let pays_own_relay = |f: u64| f >= 200 + pay(f).vsize() as u64;
    let short = (201..600u64).rev().find(|f| !pays_own_relay(*f)).expect("a short fee");
    let enough = (201..600u64).find(|f| pays_own_relay(*f)).expect("a fee that pays");
    assert!(short > 200 && enough <= short + 2, "{short} {enough}");
    // Higher rate but short of paying its own relay.
    let err = chain.accept_tx(pay(short), false).expect_err("rule 4");
    assert!(err.message.starts_with("insufficient fee"), "{}", err.message);
    let (second, fee, _) = chain.accept_tx(pay(enough), false).expect("replacement");
    assert_eq!(fee, Amount::from_sat(enough));
    assert!(chain.mempool().get(&first).is_none());
    assert!(chain.mempool().get(&second).is_some());
    assert_eq!(chain.mempool().len(), 1);
    // Spending a missing output.
    let err = chain
        .accept_tx(
            spend_p2wpkh(
                OutPoint { txid: first, vout: 0 },
                value,
                vec![TxOut {
                    value: Amount::from_sat(1_000),
                    script_pubkey: wallet_spk(),
                }],
            ),
            false,
        )
        .expect_err("missing");
    assert_eq!(
        (err.code, err.message.as_str()),
        (-25, "bad-txns-inputs-missingorspent")
    );
}

#[test]
fn reorg_returns_or_drops_transactions() {
    let (_dir, mut chain) = fresh();
    let value = Amount::from_sat(50 * 100_000_000);
    let tx_a = spend_p2wpkh(
        coinbase_outpoint(&chain, 1),
        value,
        vec![TxOut {
            value: value - Amount::from_sat(500),
            script_pubkey: wallet_spk(),
        }],
    );
    let tx_b = spend_p2wpkh(
        coinbase_outpoint(&chain, 2),
        value,
        vec![TxOut {
            value: value - Amount::from_sat(500),
            script_pubkey: wallet_spk(),
        }],
    );
    let (a, _, _) = chain.accept_tx(tx_a, false).expect("a");
    let (b, _, _) = chain.accept_tx(tx_b, false).expect("b");
    chain.mine(1, &wallet_spk()).expect("mined");
    assert_eq!(chain.transaction(&a).map(|t| t.1), Some(TxLocation::Block(102)));
    let old_tip = chain.tip_hash();

    // A longer branch from 101 that leaves out `a` and double-spends `b`'s input.
    let b_conflict = spend_p2wpkh(
        coinbase_outpoint(&chain, 2),
        value,
        vec![TxOut {
            value: value - Amount::from_sat(900),
            script_pubkey: wallet_spk(),
        }],
    );
    let fork = chain.block_at(101).expect("block").block_hash();
    let mtp = chain.median_time_past();
    let b1 = chain
        .build_block(
            fork,
            102,
            mtp,
            &ScriptBuf::new_op_return([1u8]),
            vec![b_conflict.clone()],
        )
        .expect("b1");
    chain.submit_block(&b1).expect("side branch accepted");
    assert_eq!(chain.tip_hash(), old_tip, "equal work: no reorg yet");
    let b2 = chain
        .build_block(b1.block_hash(), 103, mtp, &ScriptBuf::new_op_return([2u8]), vec![])
        .expect("b2");
    chain.submit_block(&b2).expect("reorg");
    assert_eq!(chain.height(), 103);
    assert_eq!(chain.tip_hash(), b2.block_hash());
    // `a` is back in the mempool; `b` was double-spent by the new chain and is gone.
    assert_eq!(chain.transaction(&a).map(|t| t.1), Some(TxLocation::Mempool));
    assert!(chain.transaction(&b).is_none());
    assert_eq!(
        chain.transaction(&b_conflict.compute_txid()).map(|t| t.1),
        Some(TxLocation::Block(102))
    );
}

/// A reorg puts each returned transaction where it is final, not all into the branch's first
/// block: a wallet's anti-fee-sniping lock time (the old tip) and a CSV-delayed spend would make
/// that block invalid (a soak run found the reorg refused with "Consensus").
#[test]
fn reorg_places_time_locked_transactions_where_they_are_final() {
    let (_dir, mut chain) = fresh();
    let value = Amount::from_sat(50 * 100_000_000);
    let out = |v: Amount| {
        vec![TxOut {
            value: v,
            script_pubkey: wallet_spk(),
        }]
    };
    // 102: `parent`; 103: nothing of ours; 104: `sniping` (lock time 103, final from 104) and
    // `csv` (2 blocks after `parent`, final from 104).
    let parent = spend_p2wpkh(coinbase_outpoint(&chain, 1), value, out(value - Amount::from_sat(500)));
    let (parent_id, _, _) = chain.accept_tx(parent, false).expect("parent");
    chain.mine(2, &wallet_spk()).expect("mined");
    let v1 = value - Amount::from_sat(500);
    let csv = spend_p2wpkh_locked(
        OutPoint::new(parent_id, 0),
        v1,
        out(v1 - Amount::from_sat(500)),
        LockTime::ZERO,
        Sequence::from_height(2),
    );
    let sniping = spend_p2wpkh_locked(
        coinbase_outpoint(&chain, 2),
        value,
        out(value - Amount::from_sat(500)),
        LockTime::from_height(103).expect("height"),
        Sequence::ENABLE_RBF_NO_LOCKTIME,
    );
    // Final only at 106: too late for the branch below.
    let later = spend_p2wpkh_locked(
        coinbase_outpoint(&chain, 3),
        value,
        out(value - Amount::from_sat(500)),
        LockTime::from_height(105).expect("height"),
        Sequence::ENABLE_RBF_NO_LOCKTIME,
    );
    let (csv_id, _, _) = chain.accept_tx(csv, false).expect("csv");
    let (sniping_id, _, _) = chain.accept_tx(sniping, false).expect("sniping");
    chain.mine(1, &wallet_spk()).expect("mined");
    assert_eq!(chain.height(), 104);
    assert_eq!(chain.transaction(&csv_id).map(|t| t.1), Some(TxLocation::Block(104)));
    chain.mine(1, &wallet_spk()).expect("mined");
    let (later_id, _, _) = chain.accept_tx(later, false).expect("later");
    chain.mine(1, &wallet_spk()).expect("mined");
    assert_eq!(chain.transaction(&later_id).map(|t| t.1), Some(TxLocation::Block(106)));

    // Blocks 103..=106 replaced by five new ones.
    let hashes = chain.reorg(4, 1, &[], vec![], &wallet_spk()).expect("reorg accepted");
    assert_eq!(hashes.len(), 5);
    assert_eq!(chain.height(), 107);
    // `parent` stayed below the fork; the others land where they are final.
    assert_eq!(chain.transaction(&parent_id).map(|t| t.1), Some(TxLocation::Block(102)));
    assert_eq!(chain.transaction(&csv_id).map(|t| t.1), Some(TxLocation::Block(104)));
    assert_eq!(
        chain.transaction(&sniping_id).map(|t| t.1),
        Some(TxLocation::Block(104))
    );
    assert_eq!(chain.transaction(&later_id).map(|t| t.1), Some(TxLocation::Block(106)));
}

#[test]
fn rejected_block_is_an_error_and_state_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tip;
    {
        let mut chain = Chain::open(dir.path()).expect("opens");
        chain.mine(120, &wallet_spk()).expect("mines");
        tip = chain.tip_hash();
        // Coinbase claiming more than subsidy + fees.
        let mut block = chain
            .build_block(tip, 121, chain.median_time_past(), &wallet_spk(), vec![])
            .expect("block");
        block.txdata[0].output[0].value += Amount::ONE_SAT;
        block.header.merkle_root = block.compute_merkle_root().expect("root");
        while block.header.validate_pow(block.header.target()).is_err() {
            block.header.nonce += 1;
        }
        match chain.submit_block(&block) {
            Err(ChainError::BlockRejected { hash, .. }) => assert_eq!(hash, block.block_hash()),
            other => panic!("overpaying coinbase accepted: {other:?}"),
        }
        assert_eq!(chain.tip_hash(), tip);
    }
    let chain = Chain::open(dir.path()).expect("reopens");
    assert_eq!(chain.height(), 120);
    assert_eq!(chain.tip_hash(), tip);
    assert!(chain.utxo(&coinbase_outpoint(&chain, 20)).is_some());
}
