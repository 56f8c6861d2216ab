//! `POST /v1/loop-in`'s body as any caller sends it: `eddy_core::api::parse_loop_in_create`,
//! then the server's checks of the request (`validate_loop_in_request`, default pricing,
//! regtest). Asserts: accepted keys match the document's `KEY_PATTERN`; the client's
//! serialization of the parsed request parses back to it; an accepted request's invoice asks
//! exactly `amount − fee`.
#![no_main]

use bitcoin::{Amount, Network};
use eddy_core::api::{parse_loop_in_create, KEY_PATTERN};
use eddy_core::fees::FeePolicy;
use eddy_core::validate::validate_loop_in_request;
use eddy_fuzz::{field, matches, NOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse_loop_in_create(data) else { return };
    assert!(matches(
        KEY_PATTERN,
        &field(data, "refund_key", 2).expect("a string field")
    ));
    if req.last_hop.is_some() {
        assert!(matches(
            KEY_PATTERN,
            &field(data, "last_hop", 3).expect("a string field")
        ));
    }
    let json = serde_json::to_vec(&req).expect("serializes");
    assert_eq!(parse_loop_in_create(&json).as_ref(), Ok(&req));
    let policy = FeePolicy {
        base_fee: Amount::from_sat(1_000),
        fee_ppm: 5_000,
        min_amount: Amount::from_sat(10_000),
        max_amount: Amount::from_sat(1_000_000),
        prepay: Amount::ZERO,
    };
    if let Ok(v) = validate_loop_in_request(&req.invoice, req.amount, &policy, Network::Regtest, 144, NOW) {
        assert_eq!(v.quote.invoice_amount + v.quote.swap_fee, req.amount);
        assert_eq!(
            v.invoice.amount_msat.map(|a| a.0),
            Some(v.quote.invoice_amount.to_sat() * 1000)
        );
    }
});
