//! A loop-in client's request as the server checks it: `validate_loop_in_request` on an invoice
//! built and signed from fuzzer-chosen fields, any amount, pricing and expiry delta. Asserts on
//! an accepted request: the amount within the server's limits, the invoice for our network,
//! payable for `MIN_LOOP_IN_INVOICE_REMAINING_SECS`, asking exactly `amount − fee` (and
//! `fee + invoice = amount`, both positive), with a final CLTV that leaves the claim margin,
//! the spend budget and the confirmations before `E`.
#![no_main]

use arbitrary::Arbitrary;
use bitcoin::Amount;
use eddy_core::constants::{LOOP_IN_CLAIM_MARGIN, MAX_HTLC_CONFS, SPEND_CONFIRM_BUDGET};
use eddy_core::fees::FeePolicy;
use eddy_core::validate::{validate_loop_in_request, MIN_LOOP_IN_INVOICE_REMAINING_SECS};
use eddy_fuzz::*;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Case {
    invoice: InvoiceSpec,
    network: u8,
    amount_sat: u64,
    base_fee_sat: u32,
    fee_ppm: u32,
    min_amount_sat: u64,
    max_amount_sat: u64,
    expiry_delta: u16,
}

fuzz_target!(|c: Case| {
    let net = network(c.network);
    let policy = FeePolicy {
        base_fee: Amount::from_sat(u64::from(c.base_fee_sat)),
        fee_ppm: c.fee_ppm,
        min_amount: Amount::from_sat(c.min_amount_sat),
        max_amount: Amount::from_sat(c.max_amount_sat),
        prepay: Amount::ZERO,
    };
    let amount = Amount::from_sat(c.amount_sat);
    // The honest client's invoice asks amount − fee.
    let honest = policy
        .loop_in_quote(amount)
        .map_or(0, |q| q.invoice_amount.to_sat().saturating_mul(1000));
    let Some(invoice) = c.invoice.build(net, honest) else {
        return;
    };
    let delta = u32::from(c.expiry_delta);
    let Ok(v) = validate_loop_in_request(&invoice, amount, &policy, net, delta, NOW) else {
        return;
    };
    assert!(policy.min_amount <= amount && amount <= policy.max_amount);
    assert_eq!(v.invoice.currency, lightning_invoice::Currency::from(net).to_string());
    assert!(v.invoice.expires_at_unix >= NOW + MIN_LOOP_IN_INVOICE_REMAINING_SECS);
    assert_eq!(v.quote.amount, amount);
    assert!(v.quote.swap_fee >= policy.base_fee);
    assert!(v.quote.invoice_amount > Amount::ZERO);
    assert_eq!(v.quote.swap_fee + v.quote.invoice_amount, amount);
    assert_eq!(
        v.invoice.amount_msat.map(|a| a.0),
        Some(v.quote.invoice_amount.to_sat() * 1000)
    );
    let margin = LOOP_IN_CLAIM_MARGIN + SPEND_CONFIRM_BUDGET + MAX_HTLC_CONFS;
    // (An expiry delta below the margin is a server misconfiguration: nothing fits then but a
    // final CLTV of 0.)
    assert!(v.invoice.min_final_cltv_delta <= u64::from(delta.saturating_sub(margin)));
});
