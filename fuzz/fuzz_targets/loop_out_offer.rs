//! A loop-out server's offer as the client checks it before paying anything:
//! `eddy_core::validate::validate_loop_out_offer` on an offer whose invoices are built and
//! signed from fuzzer-chosen fields (hash, amounts, expiry, final CLTV, route hints, payee,
//! network) and whose key, expiry and address are chosen too, against fuzzer-chosen limits.
//! Asserts every documented bound on an accepted offer: both invoices for our network and
//! payable for a minute, the swap invoice on our hash and the prepay not, one payee, fee and
//! prepay within the limits (and the fee exactly what the invoices ask beyond the amount),
//! `E − tip` inside the window, the final CLTV and route-hint bounds, and the HTLC address the
//! one rebuilt from our data.
#![no_main]

use arbitrary::Arbitrary;
use bitcoin::Amount;
use eddy_core::constants::*;
use eddy_core::htlc::{Htlc, HtlcKey, HtlcParams};
use eddy_core::validate::{validate_loop_out_offer, LoopOutLimits, LoopOutOffer, LoopOutRequest};
use eddy_fuzz::*;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Case {
    amount_sat: u32,
    kind: u8,
    network: u8,
    max_swap_fee_sat: u32,
    max_prepay_sat: u32,
    min_expiry_delta: u16,
    max_expiry_delta: u16,
    tip_offset: i16,
    swap: InvoiceSpec,
    prepay: InvoiceSpec,
    server_key: KeyChoice,
    expiry_delta: i16,
    address: AddressChoice,
}

fuzz_target!(|c: Case| {
    let net = network(c.network);
    let kind = kind(c.kind);
    // Zero bytes pick the client's defaults (a bijection: every value stays reachable).
    let min_expiry_delta = u32::from(c.min_expiry_delta) ^ MIN_LOOP_OUT_EXPIRY_DELTA;
    let max_expiry_delta = u32::from(c.max_expiry_delta) ^ MAX_LOOP_OUT_EXPIRY_DELTA;
    let req = LoopOutRequest {
        amount: Amount::from_sat(u64::from(c.amount_sat)),
        payment_hash: hash(),
        claim_key: pubkey(CLIENT),
        kind,
        network: net,
        limits: LoopOutLimits {
            max_swap_fee: Amount::from_sat(u64::from(c.max_swap_fee_sat)),
            max_prepay: Amount::from_sat(u64::from(c.max_prepay_sat)),
            min_expiry_delta,
            max_expiry_delta,
        },
    };
    let (Some(swap_invoice), Some(prepay_invoice), Some(server_key)) = (
        c.swap.build(net, u64::from(c.amount_sat) * 1000),
        c.prepay.build(net, 0),
        c.server_key.key(),
    ) else {
        return;
    };
    let tip = TIP.saturating_add_signed(i32::from(c.tip_offset));
    let expiry = TIP.saturating_add_signed(i32::from(c.expiry_delta ^ DEFAULT_LOOP_OUT_EXPIRY_DELTA as i16));
    let rebuilt = Htlc::new(HtlcParams {
        kind,
        payment_hash: hash(),
        claim_key: HtlcKey::Pubkey(pubkey(CLIENT)),
        refund_key: HtlcKey::Pubkey(server_key),
        timeout: expiry,
    })
    .ok();
    let offer = LoopOutOffer {
        swap_invoice,
        prepay_invoice: Some(prepay_invoice),
        server_key,
        expiry,
        htlc_address: c.address.text(rebuilt.as_ref(), kind, net),
    };
    let Ok(v) = validate_loop_out_offer(&req, &offer, tip, NOW) else {
        return;
    };
    let Some(p) = &v.prepay_invoice else {
        panic!("a prepay was offered and none validated");
    };
    let s = &v.swap_invoice;
    let currency = lightning_invoice::Currency::from(net).to_string();
    assert_eq!((&s.currency, &p.currency), (&currency, &currency));
    assert!(s.expires_at_unix >= NOW + 60 && p.expires_at_unix >= NOW + 60);
    assert_eq!(s.payment_hash, hash());
    assert_ne!(p.payment_hash, hash());
    assert_eq!(s.payee, p.payee);
    let (sm, pm) = (
        s.amount_msat.expect("swap amount").0,
        p.amount_msat.expect("prepay amount").0,
    );
    let amount_msat = u64::from(c.amount_sat) * 1000;
    assert_eq!(
        u128::from(v.swap_fee_msat),
        u128::from(sm) + u128::from(pm) - u128::from(amount_msat)
    );
    assert!(v.swap_fee_msat <= u64::from(c.max_swap_fee_sat) * 1000);
    assert!(pm <= u64::from(c.max_prepay_sat) * 1000);
    assert!(expiry > tip);
    let delta = expiry - tip;
    assert!((min_expiry_delta..=max_expiry_delta).contains(&delta));
    assert!(s.min_final_cltv_delta <= u64::from(delta) + u64::from(SERVER_SETTLE_MARGIN + MAX_FINAL_CLTV_SLACK));
    let max_route = u64::from(loop_out_max_payment_cltv(expiry) - tip);
    assert!(s.min_final_cltv_delta + s.route_hint_cltv <= max_route);
    assert!(p.min_final_cltv_delta + p.route_hint_cltv <= max_route);
    let rebuilt = rebuilt.expect("accepted, so the HTLC builds");
    assert_eq!(v.htlc.params(), rebuilt.params());
    assert_eq!(v.htlc.script_pubkey(), rebuilt.script_pubkey());
    let parsed: bitcoin::Address<bitcoin::address::NetworkUnchecked> = offer.htlc_address.parse().expect("address");
    assert_eq!(
        parsed.require_network(net).expect("network").script_pubkey(),
        rebuilt.script_pubkey()
    );
});
