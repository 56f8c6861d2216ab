//! A transaction the other side hands us or puts on the chain, as raw consensus bytes: the
//! unsigned claim a loop-out client asks the server to co-sign (`POST /v1/swaps/{id}/cosign`),
//! the refund a loop-in client asks to co-sign, the claim a loop-in server asks its client to
//! co-sign (`check_claim_request`), and any spend of a watched HTLC (`spend::analyze`,
//! `spend::find_preimage`, how a loop-out server learns the preimage). Asserts: bytes that
//! decode re-encode to exactly themselves; a co-signed sighash exists exactly for a transaction
//! with one input spending the swap's HTLC, and commits to the HTLC's value; the client co-signs
//! only a claim whose input named spends the one output the server paid for, no other input
//! spending an output of its HTLC; every spend found is of a watched output
//! at that input, and a preimage found always hashes to the swap's hash.
#![no_main]

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::{Amount, Transaction};
use eddy_core::htlc::{Htlc, HtlcKind, SpendPathKind};
use eddy_core::musig::{cosign, Signer};
use eddy_core::sm::loop_in_client::{check_claim_request, Chain, ClaimRequestError, HtlcOutput, Terms};
use eddy_core::spend::{analyze, find_preimage};
use eddy_core::tx::cooperative_sighash;
use eddy_fuzz::*;
use libfuzzer_sys::fuzz_target;

const AMOUNT: Amount = HTLC_VALUE;
fn outpoint(vout: u32) -> bitcoin::OutPoint {
    funding(vout)
}

fuzz_target!(|data: &[u8]| {
    let Ok(tx) = deserialize::<Transaction>(data) else {
        return;
    };
    assert_eq!(serialize(&tx), data, "decoded bytes re-encode to themselves");
    let expiry = EXPIRY;
    let out_htlc = htlc(HtlcKind::P2trOut, hash(), expiry).expect("loop-out HTLC");
    let in_htlc = htlc(HtlcKind::P2trIn, hash(), expiry).expect("loop-in HTLC");
    let wsh = htlc(HtlcKind::P2wsh, hash(), expiry).expect("P2WSH HTLC");
    let seed = htlc(HtlcKind::Seed, hash(), eddy_core::constants::SEED_CSV_DELAY).expect("seed HTLC");

    // Loop-out server, asked to co-sign the client's claim of the HTLC at outpoint(0): the
    // engine's check (one input, that output), then the key-path sighash and a partial signature.
    let spends_htlc = tx.input.len() == 1 && tx.input[0].previous_output == outpoint(0);
    if spends_htlc {
        let msg = cooperative_sighash(&tx, &out_htlc, AMOUNT).expect("a one-input spend has a key-path sighash");
        assert_eq!(cooperative_sighash(&tx, &out_htlc, AMOUNT), Ok(msg));
        assert_ne!(cooperative_sighash(&tx, &out_htlc, AMOUNT + Amount::ONE_SAT), Ok(msg));
        let Htlc::Taproot(t) = &out_htlc else {
            unreachable!("P2TR")
        };
        let client = Signer::new(t, &key(CLIENT), msg, b"fuzz").expect("client session");
        let (server_nonce, partial) =
            cosign(t, &key(SERVER), msg, b"fuzz", &client.public_nonce()).expect("the server co-signs");
        client
            .verify_theirs(&server_nonce, &partial)
            .expect("over the same message");
    }

    // Loop-in client, asked to co-sign the server's claim: outputs 1 (exact, 3 confs), 5
    // (exact, 1 conf), 6 (short), 7 (exact, unconfirmed) pay its HTLC; only outpoint(1) is
    // the server's.
    let terms = Terms { amount: AMOUNT, expiry };
    let output = |vout, value, confs| HtlcOutput {
        outpoint: outpoint(vout),
        value,
        confs,
        spend: None,
    };
    let chain = Chain {
        height: TIP,
        outputs: vec![
            output(5, AMOUNT, 1),
            output(1, AMOUNT, 3),
            output(6, AMOUNT - Amount::ONE_SAT, 9),
            output(7, AMOUNT, 0),
        ],
        missing: vec![],
    };
    // The input named: the server's claim batch (several loop-ins) names ours by its index; the
    // last byte of the transaction (its lock time's) picks one.
    let index = usize::from(data.last().copied().unwrap_or(0)) % (tx.input.len() + 1);
    let ours = |o: &bitcoin::OutPoint| chain.outputs.iter().any(|x| x.outpoint == *o);
    match check_claim_request(&terms, &chain, &tx, index) {
        Ok(paid) => {
            assert_eq!(paid, outpoint(1));
            assert_eq!(tx.input[index].previous_output, outpoint(1));
            assert!(tx.input.len() <= eddy_core::batch::MAX_BATCH_INPUTS);
            // No other input spends an output of our HTLC.
            assert!(tx
                .input
                .iter()
                .enumerate()
                .all(|(i, x)| i == index || !ours(&x.previous_output)));
            if tx.input.len() == 1 {
                assert!(cooperative_sighash(&tx, &in_htlc, AMOUNT).is_ok());
            }
        }
        Err(ClaimRequestError::Inputs) => assert!(
            index >= tx.input.len()
                || tx.input.len() > eddy_core::batch::MAX_BATCH_INPUTS
                || tx
                    .input
                    .iter()
                    .enumerate()
                    .any(|(i, x)| i != index && ours(&x.previous_output))
        ),
        Err(ClaimRequestError::WrongOutput { spends, paid }) => {
            assert_eq!(paid, outpoint(1));
            assert_ne!(spends, paid);
            assert_eq!(tx.input[index].previous_output, spends);
        }
        Err(e @ ClaimRequestError::NoServerOutput) => panic!("the fixture chain has one: {e}"),
    }

    // Spend analysis of any transaction against the watched HTLCs.
    let watched = [
        (outpoint(0), &out_htlc),
        (outpoint(1), &in_htlc),
        (outpoint(2), &wsh),
        (outpoint(3), &seed),
    ];
    let found = analyze(&tx, &watched);
    let mut last = None;
    for s in &found {
        assert!(last < Some(s.input_index), "one result per input, in order");
        last = Some(s.input_index);
        let txin = &tx.input[s.input_index];
        assert_eq!(txin.previous_output, s.outpoint);
        let (_, h) = watched
            .iter()
            .find(|(o, _)| *o == s.outpoint)
            .expect("a watched output");
        match s.path {
            SpendPathKind::Claim => {
                let p = s.preimage.expect("a claim carries the preimage");
                assert_eq!(p.payment_hash(), hash());
            }
            SpendPathKind::Refund => assert!(s.preimage.is_none()),
            SpendPathKind::Cooperative => {
                assert!(matches!(h, Htlc::Taproot(_)));
                assert!(s.preimage.is_none());
                assert_eq!(txin.witness.len(), 1);
            }
        }
    }
    for txin in &tx.input {
        if let Some(p) = find_preimage(&txin.witness, &hash()) {
            assert_eq!(p, preimage());
        }
    }
});
