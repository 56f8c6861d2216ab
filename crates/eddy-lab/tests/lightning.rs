//! Two real ldk-node nodes on the lab chain (the devnet, or bitcoind when `BITCOIND_EXE` /
//! `BITCOIND_RPC_URL` is set): exact faucet funding, a channel opened with a push amount,
//! an ordinary payment, a hold invoice claimed with `claim_for_hash` and one failed with
//! `fail_for_hash` — with every balance asserted to the satoshi.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{Amount, Txid};
use eddy_lab::{wait_until, Lab, LabConfig, WAIT};
use ldk_node::lightning::events::PaymentFailureReason;
use ldk_node::lightning_invoice::{Bolt11InvoiceDescription, Description};
use ldk_node::lightning_types::payment::{PaymentHash, PaymentPreimage};
use ldk_node::{Event, LightningBalance};

fn fee_of(lab: &Lab, txid: &Txid) -> u64 {
    lab.chain.fee(txid).expect("fee").to_sat()
}

fn desc(s: &str) -> Bolt11InvoiceDescription {
    Bolt11InvoiceDescription::Direct(Description::new(s.to_string()).expect("description"))
}

#[test]
fn channel_payment_and_hold_invoices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(LabConfig::new(dir.path(), 2)).expect("lab");
    let (a, b) = (lab.node(0), lab.node(1));

    // Exact funding from the faucet.
    lab.fund_node(0, Amount::from_sat(1_000_000)).expect("fund");
    assert_eq!(a.node().list_balances().total_onchain_balance_sats, 1_000_000);
    assert_eq!(b.node().list_balances().total_onchain_balance_sats, 0);

    // Channel a→b of 500k with 100k pushed to b.
    lab.open_channel(0, 1, Amount::from_sat(500_000), 100_000_000)
        .expect("channel");
    let chans = a.node().list_channels();
    assert_eq!(chans.len(), 1);
    let chan = &chans[0];
    assert_eq!(chan.channel_value_sats, 500_000);
    assert!(chan.is_usable && chan.is_outbound);
    let funding = chan.funding_txo.expect("funding").txid;
    let funding_fee = fee_of(&lab, &funding);
    assert!(funding_fee > 0);
    let a_onchain = a.node().list_balances().total_onchain_balance_sats;
    assert_eq!(
        a_onchain,
        1_000_000 - 500_000 - funding_fee,
        "funder's wallet paid capacity + fee"
    );
    let b_ln = || b.node().list_balances().total_lightning_balance_sats;
    assert_eq!(b_ln(), 100_000, "the push amount");
    let b_in_chan = &b.node().list_channels()[0];
    assert_eq!(b_in_chan.channel_value_sats, 500_000);
    assert!(!b_in_chan.is_outbound);
    // The payer's side moves by exactly what it pays (its commitment fee and anchors stay put).
    let a_ln = || a.node().list_balances().total_lightning_balance_sats;
    let a_start = a_ln();
    let a_settles_at = |want: u64| {
        wait_until(&format!("payer balance {want}"), WAIT, || a_ln() == want).expect("payer balance");
    };

    // An ordinary invoice.
    let inv = b
        .node()
        .bolt11_payment()
        .receive(20_000_000, &desc("plain"), 3600)
        .expect("invoice");
    a.node().bolt11_payment().send(&inv, None).expect("send");
    let fee = a
        .wait_event("PaymentSuccessful", WAIT, |e| match e {
            Event::PaymentSuccessful { fee_paid_msat, .. } => Some(*fee_paid_msat),
            _ => None,
        })
        .expect("paid");
    assert_eq!(fee, Some(0), "direct channel: no routing fee");
    let got = b
        .wait_event("PaymentReceived", WAIT, |e| match e {
            Event::PaymentReceived { amount_msat, .. } => Some(*amount_msat),
            _ => None,
        })
        .expect("received");
    assert_eq!(got, 20_000_000);
    assert_eq!(b_ln(), 120_000);
    a_settles_at(a_start - 20_000);

    // Hold invoice → accepted (held with a visible expiry) → claimed with the preimage.
    let preimage = [7u8; 32];
    let hash = PaymentHash(sha256::Hash::hash(&preimage).to_byte_array());
    let height = lab.chain.tip().expect("tip").0;
    let hold = b
        .node()
        .bolt11_payment()
        .receive_for_hash(30_000_000, &desc("hold"), 3600, hash)
        .expect("hold invoice");
    a.node().bolt11_payment().send(&hold, None).expect("send hold");
    let (amount, deadline) = b
        .wait_event("PaymentClaimable", WAIT, |e| match e {
            Event::PaymentClaimable {
                payment_hash,
                claimable_amount_msat,
                claim_deadline,
                ..
            } if *payment_hash == hash => Some((*claimable_amount_msat, *claim_deadline)),
            _ => None,
        })
        .expect("claimable");
    assert_eq!(amount, 30_000_000);
    let deadline = deadline.expect("claim deadline");
    assert!(
        deadline > height,
        "deadline {deadline} after the current height {height}"
    );
    let expiry = b
        .node()
        .list_balances()
        .lightning_balances
        .iter()
        .find_map(|l| match l {
            LightningBalance::MaybePreimageClaimableHTLC {
                payment_hash,
                expiry_height,
                amount_satoshis,
                ..
            } if *payment_hash == hash => Some((*expiry_height, *amount_satoshis)),
            _ => None,
        })
        .expect("held HTLC visible in balances");
    assert_eq!(expiry.1, 30_000);
    assert!(
        expiry.0 > deadline,
        "HTLC expiry {} after the claim deadline {deadline}",
        expiry.0
    );
    b.node()
        .bolt11_payment()
        .claim_for_hash(hash, 30_000_000, PaymentPreimage(preimage))
        .expect("claim");
    let revealed = a
        .wait_event("hold PaymentSuccessful", WAIT, |e| match e {
            Event::PaymentSuccessful {
                payment_hash,
                payment_preimage,
                ..
            } if *payment_hash == hash => Some(*payment_preimage),
            _ => None,
        })
        .expect("payer learns preimage");
    assert_eq!(revealed, Some(PaymentPreimage(preimage)));
    b.wait_event("hold PaymentReceived", WAIT, |e| match e {
        Event::PaymentReceived {
            payment_hash,
            amount_msat,
            ..
        } if *payment_hash == hash => Some(*amount_msat),
        _ => None,
    })
    .map(|m| assert_eq!(m, 30_000_000))
    .expect("settled");
    assert_eq!(b_ln(), 150_000);
    a_settles_at(a_start - 50_000);

    // Hold invoice → accepted → failed back: the payer is told, nothing moves.
    let hash2 = PaymentHash(sha256::Hash::hash(&[8u8; 32]).to_byte_array());
    let hold2 = b
        .node()
        .bolt11_payment()
        .receive_for_hash(40_000_000, &desc("hold 2"), 3600, hash2)
        .expect("hold invoice 2");
    // The acceptor of an ldk-node channel takes at most 10% of the capacity in flight (LDK's
    // default; ldk-node lifts it to 100% only for the opener's side): the settled HTLC must be
    // fully removed from both commitments before 40k more can be sent.
    wait_until("40k sendable", WAIT, || {
        a.node().list_channels()[0].next_outbound_htlc_limit_msat >= 40_000_000
    })
    .expect("limit");
    assert_eq!(
        a.node().list_channels()[0].next_outbound_htlc_limit_msat,
        50_000_000,
        "10% of 500k"
    );
    a.node().bolt11_payment().send(&hold2, None).expect("send hold 2");
    b.wait_event("PaymentClaimable 2", WAIT, |e| match e {
        Event::PaymentClaimable { payment_hash, .. } if *payment_hash == hash2 => Some(()),
        _ => None,
    })
    .expect("claimable 2");
    b.node().bolt11_payment().fail_for_hash(hash2).expect("fail");
    let reason = a
        .wait_event("PaymentFailed", WAIT, |e| match e {
            Event::PaymentFailed {
                payment_hash, reason, ..
            } if *payment_hash == Some(hash2) => Some(*reason),
            _ => None,
        })
        .expect("failed back");
    assert_eq!(reason, Some(PaymentFailureReason::RecipientRejected));
    assert_eq!(b_ln(), 150_000, "a failed hold invoice moves nothing");
    a_settles_at(a_start - 50_000);
    lab.stop();
}
