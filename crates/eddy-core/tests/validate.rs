//! The validation rules against real BOLT11 invoices: a client refuses every bad loop-out offer
//! (wrong hash, fees over its limits, bad or wrong-network address, expiry outside its window,
//! over-long final CLTV, expired invoice), the server checks accepted HTLCs and loop-in requests.

mod common;

use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{Amount, Network};
use common::*;
use eddy_core::constants::*;
use eddy_core::fees::{FeeError, FeePolicy};
use eddy_core::htlc::{HtlcError, HtlcKind};
use eddy_core::types::PaymentHash;
use eddy_core::validate::*;
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};

const NOW: u64 = 1_790_000_000;
const TIP: u32 = 1_000;

fn invoice(currency: Currency, hash: PaymentHash, msat: u64, final_cltv: u64, node: u8, expiry_secs: u64) -> String {
    let secp = Secp256k1::new();
    InvoiceBuilder::new(currency)
        .description("eddy test".into())
        .payment_hash(sha256::Hash::from_byte_array(hash.0))
        .payment_secret(PaymentSecret([7; 32]))
        .duration_since_epoch(Duration::from_secs(NOW - 10))
        .min_final_cltv_expiry_delta(final_cltv)
        .amount_milli_satoshis(msat)
        .expiry_time(Duration::from_secs(expiry_secs))
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key(node)))
        .expect("invoice builds")
        .to_string()
}

fn request() -> LoopOutRequest {
    LoopOutRequest {
        amount: Amount::from_sat(100_000),
        payment_hash: preimage().payment_hash(),
        claim_key: pubkey(CLIENT),
        kind: HtlcKind::P2trOut,
        network: Network::Regtest,
        limits: LoopOutLimits::with_fees(Amount::from_sat(1_000), Amount::from_sat(300)),
    }
}

fn good_offer() -> LoopOutOffer {
    let expiry = TIP + DEFAULT_LOOP_OUT_EXPIRY_DELTA;
    let htlc = eddy_core::Htlc::new(eddy_core::HtlcParams {
        kind: HtlcKind::P2trOut,
        payment_hash: preimage().payment_hash(),
        claim_key: eddy_core::HtlcKey::Pubkey(pubkey(CLIENT)),
        refund_key: eddy_core::HtlcKey::Pubkey(pubkey(SERVER)),
        timeout: expiry,
    })
    .expect("htlc");
    let final_cltv = u64::from(DEFAULT_LOOP_OUT_EXPIRY_DELTA + SERVER_SETTLE_MARGIN);
    LoopOutOffer {
        swap_invoice: invoice(
            Currency::Regtest,
            preimage().payment_hash(),
            100_700_000,
            final_cltv,
            SERVER,
            600,
        ),
        prepay_invoice: Some(invoice(
            Currency::Regtest,
            PaymentHash([9; 32]),
            300_000,
            18,
            SERVER,
            600,
        )),
        server_key: pubkey(SERVER),
        expiry,
        htlc_address: htlc.address(Network::Regtest).to_string(),
    }
}

#[test]
fn accepts_a_good_offer() {
    let v = validate_loop_out_offer(&request(), &good_offer(), TIP, NOW).expect("valid");
    assert_eq!(v.swap_fee_msat, 1_000_000);
    assert_eq!(v.swap_invoice.amount_msat.map(|a| a.0), Some(100_700_000));
    assert_eq!(v.htlc.address(Network::Regtest).to_string(), good_offer().htlc_address);
}

/// An offer without a prepay (a Boltz reverse swap): the one invoice carries the whole fee,
/// checked against the fee limit as the total of two would be; everything else as before.
#[test]
fn an_offer_without_a_prepay_is_checked_on_its_one_invoice() {
    let mut o = good_offer();
    o.prepay_invoice = None;
    let v = validate_loop_out_offer(&request(), &o, TIP, NOW).expect("valid");
    assert!(v.prepay_invoice.is_none());
    assert_eq!(v.swap_fee_msat, 700_000, "100,700 sat invoice for a 100,000 sat HTLC");
    // The whole fee in the one invoice is still held to the limit.
    let mut greedy = o.clone();
    greedy.swap_invoice = invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        100_000_000 + request().limits.max_swap_fee.to_sat() * 1000 + 1_000,
        u64::from(DEFAULT_LOOP_OUT_EXPIRY_DELTA + SERVER_SETTLE_MARGIN),
        SERVER,
        600,
    );
    assert!(matches!(
        validate_loop_out_offer(&request(), &greedy, TIP, NOW),
        Err(OfferError::FeeTooHigh { .. })
    ));
    // And below the amount is a server that cannot count.
    let mut short = o.clone();
    short.swap_invoice = invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        99_999_000,
        95,
        SERVER,
        600,
    );
    assert!(matches!(
        validate_loop_out_offer(&request(), &short, TIP, NOW),
        Err(OfferError::InvoicesBelowAmount { .. })
    ));
    // The stored form of an offer without one has no prepay field; one with it reads back.
    let json = serde_json::to_value(&o).expect("json");
    assert!(json.get("prepay_invoice").is_none(), "{json}");
    let back: LoopOutOffer = serde_json::from_value(serde_json::to_value(good_offer()).expect("json")).expect("read");
    assert_eq!(back, good_offer());
}

#[test]
fn refuses_bad_offers() {
    let req = request();
    let check = |offer: LoopOutOffer| validate_loop_out_offer(&req, &offer, TIP, NOW);

    let mut o = good_offer();
    o.swap_invoice = invoice(Currency::Regtest, PaymentHash([1; 32]), 100_700_000, 95, SERVER, 600);
    assert!(matches!(check(o), Err(OfferError::WrongHash { .. })));

    let mut o = good_offer();
    o.prepay_invoice = Some(invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        300_000,
        18,
        SERVER,
        600,
    ));
    assert_eq!(check(o).err(), Some(OfferError::PrepayReusesHash));

    let mut o = good_offer();
    o.swap_invoice = invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        100_700_001,
        95,
        SERVER,
        600,
    );
    assert_eq!(
        check(o).err(),
        Some(OfferError::FeeTooHigh {
            fee_msat: 1_000_001,
            max_msat: 1_000_000
        })
    );

    let mut o = good_offer();
    o.swap_invoice = invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        99_000_000,
        95,
        SERVER,
        600,
    );
    assert!(matches!(check(o), Err(OfferError::InvoicesBelowAmount { .. })));

    let mut o = good_offer();
    o.prepay_invoice = Some(invoice(
        Currency::Regtest,
        PaymentHash([9; 32]),
        400_000,
        18,
        SERVER,
        600,
    ));
    o.swap_invoice = invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        100_500_000,
        95,
        SERVER,
        600,
    );
    assert_eq!(
        check(o).err(),
        Some(OfferError::PrepayTooHigh {
            prepay_msat: 400_000,
            max_msat: 300_000
        })
    );

    let mut o = good_offer();
    o.prepay_invoice = Some(invoice(
        Currency::Regtest,
        PaymentHash([9; 32]),
        300_000,
        18,
        STRANGER,
        600,
    ));
    assert_eq!(check(o).err(), Some(OfferError::PayeeMismatch));

    let mut o = good_offer();
    o.swap_invoice = invoice(
        Currency::Bitcoin,
        preimage().payment_hash(),
        100_700_000,
        95,
        SERVER,
        600,
    );
    assert!(matches!(
        check(o),
        Err(OfferError::Invoice(InvoiceError::Network { .. }))
    ));

    let mut o = good_offer();
    o.swap_invoice = invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        100_700_000,
        95,
        SERVER,
        30,
    );
    assert!(matches!(
        check(o),
        Err(OfferError::Invoice(InvoiceError::Expiry { .. }))
    ));

    let mut o = good_offer();
    o.swap_invoice = "lnbcrt1garbage".into();
    assert!(matches!(check(o), Err(OfferError::Invoice(InvoiceError::Parse { .. }))));

    let mut o = good_offer();
    o.swap_invoice = invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        100_700_000,
        80 + 15 + 144 + 1,
        SERVER,
        600,
    );
    assert_eq!(
        check(o).err(),
        Some(OfferError::FinalCltvTooLong { got: 240, max: 239 })
    );

    // Expiry outside the window (too close, too far): rejected before the address is checked.
    for expiry in [TIP + MIN_LOOP_OUT_EXPIRY_DELTA - 1, TIP + MAX_LOOP_OUT_EXPIRY_DELTA + 1] {
        let mut o = good_offer();
        o.expiry = expiry;
        assert!(matches!(check(o), Err(OfferError::ExpiryWindow { .. })), "{expiry}");
    }
    // Same window, but the address was built for another expiry: the rebuilt address differs.
    let mut o = good_offer();
    o.expiry += 1;
    assert!(matches!(
        check(o),
        Err(OfferError::Htlc(HtlcError::AddressMismatch { .. }))
    ));
    // A server key that is not the one the address was built with.
    let mut o = good_offer();
    o.server_key = pubkey(STRANGER);
    assert!(matches!(
        check(o),
        Err(OfferError::Htlc(HtlcError::AddressMismatch { .. }))
    ));
    // The right HTLC's address on another network.
    let mut o = good_offer();
    let htlc = eddy_core::Htlc::new(eddy_core::HtlcParams {
        kind: HtlcKind::P2trOut,
        payment_hash: preimage().payment_hash(),
        claim_key: eddy_core::HtlcKey::Pubkey(pubkey(CLIENT)),
        refund_key: eddy_core::HtlcKey::Pubkey(pubkey(SERVER)),
        timeout: o.expiry,
    })
    .expect("htlc");
    o.htlc_address = htlc.address(Network::Bitcoin).to_string();
    assert!(matches!(
        check(o),
        Err(OfferError::Htlc(HtlcError::WrongNetwork { .. }))
    ));
    let mut o = good_offer();
    o.htlc_address = "not-an-address".into();
    assert!(matches!(check(o), Err(OfferError::Htlc(HtlcError::BadAddress(_)))));
}

#[test]
fn server_checks_accepted_htlc() {
    let e = TIP + 80;
    assert_eq!(check_accepted_htlc(100, 100, e + SERVER_SETTLE_MARGIN, e, TIP), Ok(()));
    assert!(matches!(
        check_accepted_htlc(99, 100, e + 100, e, TIP),
        Err(AcceptedHtlcError::Underpaid { .. })
    ));
    assert!(matches!(
        check_accepted_htlc(100, 100, e + SERVER_SETTLE_MARGIN - 1, e, TIP),
        Err(AcceptedHtlcError::DeadlineTooEarly { .. })
    ));
    assert!(matches!(
        check_accepted_htlc(100, 100, e + 100, e, e - MIN_BLOCKS_LEFT_AT_PUBLICATION + 1),
        Err(AcceptedHtlcError::TooLateToPublish { .. })
    ));
}

fn policy() -> FeePolicy {
    FeePolicy {
        base_fee: Amount::from_sat(500),
        fee_ppm: 2_000,
        min_amount: Amount::from_sat(10_000),
        max_amount: Amount::from_sat(1_000_000),
        prepay: Amount::ZERO,
    }
}

#[test]
fn server_checks_loop_in_requests() {
    let amount = Amount::from_sat(100_000);
    // fee = 500 + 200 = 700 → invoice 99_300 sat.
    let good = invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        99_300_000,
        18,
        CLIENT,
        7_200,
    );
    let v = validate_loop_in_request(
        &good,
        amount,
        &policy(),
        Network::Regtest,
        DEFAULT_LOOP_IN_EXPIRY_DELTA,
        NOW,
    )
    .expect("valid");
    assert_eq!(v.quote.swap_fee, Amount::from_sat(700));
    assert_eq!(v.invoice.payment_hash, preimage().payment_hash());

    let off_by_one = invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        99_300_001,
        18,
        CLIENT,
        7_200,
    );
    assert!(matches!(
        validate_loop_in_request(&off_by_one, amount, &policy(), Network::Regtest, 144, NOW),
        Err(LoopInRequestError::InvoiceAmount {
            got_msat: 99_300_001,
            expected_msat: 99_300_000
        })
    ));
    let short = invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        99_300_000,
        18,
        CLIENT,
        600,
    );
    assert!(matches!(
        validate_loop_in_request(&short, amount, &policy(), Network::Regtest, 144, NOW),
        Err(LoopInRequestError::Invoice(InvoiceError::Expiry { .. }))
    ));
    assert!(matches!(
        validate_loop_in_request(&good, Amount::from_sat(5_000), &policy(), Network::Regtest, 144, NOW),
        Err(LoopInRequestError::Fee(_))
    ));
    let long_cltv = invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        99_300_000,
        200,
        CLIENT,
        7_200,
    );
    assert!(matches!(
        validate_loop_in_request(&long_cltv, amount, &policy(), Network::Regtest, 144, NOW),
        Err(LoopInRequestError::FinalCltvTooLong { got: 200, max: 112 })
    ));
    assert!(matches!(
        validate_loop_in_request(&good, amount, &policy(), Network::Testnet, 144, NOW),
        Err(LoopInRequestError::Invoice(InvoiceError::Network { .. }))
    ));
}

/// Regression (fuzz/loop_in_request): an amount whose msat value does not fit a u64, let
/// through by a server limit that high, was multiplied unchecked (a panic in debug builds, a
/// wrapped comparison in release); it is an overflow error.
#[test]
fn loop_in_amount_beyond_u64_msat_is_an_overflow_not_a_panic() {
    let huge = Amount::from_sat(u64::MAX);
    let lax = FeePolicy {
        max_amount: Amount::from_sat(u64::MAX),
        ..policy()
    };
    let good = invoice(
        Currency::Regtest,
        preimage().payment_hash(),
        99_300_000,
        18,
        CLIENT,
        7_200,
    );
    assert_eq!(
        validate_loop_in_request(&good, huge, &lax, Network::Regtest, 144, NOW).err(),
        Some(LoopInRequestError::Fee(FeeError::Overflow))
    );
}

#[test]
fn client_checks_loop_in_offer() {
    let e = TIP + DEFAULT_LOOP_IN_EXPIRY_DELTA;
    let htlc = eddy_core::Htlc::new(eddy_core::HtlcParams {
        kind: HtlcKind::P2trIn,
        payment_hash: preimage().payment_hash(),
        claim_key: eddy_core::HtlcKey::Pubkey(pubkey(SERVER)),
        refund_key: eddy_core::HtlcKey::Pubkey(pubkey(CLIENT)),
        timeout: e,
    })
    .expect("htlc");
    let offer = LoopInOffer {
        server_key: pubkey(SERVER),
        expiry: e,
        htlc_address: htlc.address(Network::Regtest).to_string(),
        swap_fee: Amount::from_sat(700),
    };
    let check = |o: &LoopInOffer, max_fee: u64| {
        validate_loop_in_offer(
            HtlcKind::P2trIn,
            preimage().payment_hash(),
            pubkey(CLIENT),
            Amount::from_sat(max_fee),
            Network::Regtest,
            o,
            TIP,
        )
    };
    assert_eq!(check(&offer, 700).expect("valid"), htlc);
    assert!(matches!(check(&offer, 699), Err(LoopInOfferError::FeeTooHigh { .. })));
    let mut o = offer.clone();
    o.expiry = TIP + MIN_LOOP_IN_EXPIRY_DELTA - 1;
    assert!(matches!(check(&o, 700), Err(LoopInOfferError::ExpiryWindow { .. })));
    let mut o = offer.clone();
    o.server_key = pubkey(STRANGER);
    assert!(matches!(
        check(&o, 700),
        Err(LoopInOfferError::Htlc(HtlcError::AddressMismatch { .. }))
    ));
    assert_eq!(
        check_funding(Amount::from_sat(5), Amount::from_sat(5)),
        FundingCheck::Exact
    );
    assert_eq!(
        check_funding(Amount::from_sat(4), Amount::from_sat(5)),
        FundingCheck::Under
    );
    assert_eq!(
        check_funding(Amount::from_sat(6), Amount::from_sat(5)),
        FundingCheck::Over
    );
}

/// An invoice like [`invoice`] with one route hint of `hint_cltv` blocks (one hop).
fn invoice_with_hint(hash: PaymentHash, msat: u64, final_cltv: u64, hint_cltv: u16) -> String {
    use lightning_invoice::{RouteHint, RouteHintHop, RoutingFees};
    let secp = Secp256k1::new();
    InvoiceBuilder::new(Currency::Regtest)
        .description("eddy test".into())
        .payment_hash(sha256::Hash::from_byte_array(hash.0))
        .payment_secret(PaymentSecret([7; 32]))
        .duration_since_epoch(Duration::from_secs(NOW - 10))
        .min_final_cltv_expiry_delta(final_cltv)
        .amount_milli_satoshis(msat)
        .expiry_time(Duration::from_secs(600))
        .private_route(RouteHint(vec![RouteHintHop {
            src_node_id: pubkey(STRANGER),
            short_channel_id: 42,
            fees: RoutingFees {
                base_msat: 0,
                proportional_millionths: 0,
            },
            cltv_expiry_delta: hint_cltv,
            htlc_minimum_msat: None,
            htlc_maximum_msat: None,
        }]))
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key(SERVER)))
        .expect("invoice builds")
        .to_string()
}

/// Finding 7: the offer check bounds the whole route's CLTV — the final CLTV plus what the
/// route hints alone add — on both invoices, by `loop_out_max_payment_cltv(E) − tip`.
#[test]
fn refuses_route_hints_that_lock_the_payment_too_long() {
    let req = request();
    let o = good_offer();
    let bound = u64::from(loop_out_max_payment_cltv(o.expiry) - TIP);
    assert_eq!(bound, 80 + 15 + 144 + 144);
    let final_cltv = u64::from(DEFAULT_LOOP_OUT_EXPIRY_DELTA + SERVER_SETTLE_MARGIN);
    // A hint of 1,000 blocks on the swap invoice.
    let mut bad = o.clone();
    bad.swap_invoice = invoice_with_hint(preimage().payment_hash(), 100_700_000, final_cltv, 1000);
    assert_eq!(
        validate_loop_out_offer(&req, &bad, TIP, NOW).err(),
        Some(OfferError::RouteCltvTooLong {
            which: "swap",
            got: final_cltv + 1000,
            max: bound
        })
    );
    // The same on the prepay.
    let mut bad = o.clone();
    bad.prepay_invoice = Some(invoice_with_hint(PaymentHash([9; 32]), 300_000, 18, 1000));
    assert_eq!(
        validate_loop_out_offer(&req, &bad, TIP, NOW).err(),
        Some(OfferError::RouteCltvTooLong {
            which: "prepay",
            got: 1018,
            max: bound
        })
    );
    // Exactly at the bound passes; one more is refused.
    let room = u16::try_from(bound - final_cltv).expect("small");
    let mut ok = o.clone();
    ok.swap_invoice = invoice_with_hint(preimage().payment_hash(), 100_700_000, final_cltv, room);
    let v = validate_loop_out_offer(&req, &ok, TIP, NOW).expect("at the bound");
    assert_eq!(v.swap_invoice.route_hint_cltv, u64::from(room));
    let mut bad = o;
    bad.swap_invoice = invoice_with_hint(preimage().payment_hash(), 100_700_000, final_cltv, room + 1);
    assert!(matches!(
        validate_loop_out_offer(&req, &bad, TIP, NOW),
        Err(OfferError::RouteCltvTooLong { .. })
    ));
}

/// Review finding 7: the one rule both sides use for "which loop-in output did the server pay
/// for": exactly the amount, confirmed at least the required times, the earliest confirmed,
/// the lowest outpoint on a tie.
#[test]
fn loop_in_server_output_is_the_earliest_confirmed_exact_output() {
    use bitcoin::hashes::Hash;
    use eddy_core::validate::loop_in_server_output;
    let op = |vout| bitcoin::OutPoint {
        txid: bitcoin::Txid::all_zeros(),
        vout,
    };
    let amt = Amount::from_sat(100_000);
    let more = Amount::from_sat(100_001);
    assert_eq!(loop_in_server_output([(op(1), amt, 0)], amt, 1), None, "unconfirmed");
    assert_eq!(
        loop_in_server_output([(op(1), amt, 0)], amt, 0),
        None,
        "never fewer than one"
    );
    assert_eq!(loop_in_server_output([(op(1), more, 9)], amt, 1), None, "not exact");
    assert_eq!(
        loop_in_server_output([(op(1), amt, 2)], amt, 3),
        None,
        "too few confirmations"
    );
    assert_eq!(
        loop_in_server_output([(op(1), amt, 2), (op(2), amt, 5), (op(3), more, 9)], amt, 1),
        Some(op(2)),
        "the earliest confirmed"
    );
    assert_eq!(
        loop_in_server_output([(op(4), amt, 5), (op(2), amt, 5)], amt, 1),
        Some(op(2)),
        "tie: the lowest outpoint"
    );
}
