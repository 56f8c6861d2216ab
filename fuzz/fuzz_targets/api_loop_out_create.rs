//! `POST /v1/loop-out`'s body as any caller sends it: `eddy_core::api::parse_loop_out_create`,
//! then the server's own check of the amount (`FeePolicy::loop_out_quote` with the default
//! pricing). Asserts: an accepted body's hash and key match the API document's patterns
//! (`HEX32_PATTERN`, `KEY_PATTERN`); the client's serialization of the parsed request parses
//! back to it; a quote, when given, adds up (swap invoice + prepay = amount + fee, prepay ≤ fee)
//! and lies inside the server's range.
#![no_main]

use bitcoin::Amount;
use eddy_core::api::{parse_loop_out_create, HEX32_PATTERN, KEY_PATTERN};
use eddy_core::fees::FeePolicy;
use eddy_fuzz::{field, matches};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse_loop_out_create(data) else { return };
    assert!(matches(
        HEX32_PATTERN,
        &field(data, "payment_hash", 1).expect("a string field")
    ));
    assert!(matches(
        KEY_PATTERN,
        &field(data, "claim_key", 2).expect("a string field")
    ));
    let json = serde_json::to_vec(&req).expect("serializes");
    assert_eq!(parse_loop_out_create(&json), Ok(req));
    let policy = FeePolicy {
        base_fee: Amount::from_sat(1_000),
        fee_ppm: 5_000,
        min_amount: Amount::from_sat(10_000),
        max_amount: Amount::from_sat(1_000_000),
        prepay: Amount::from_sat(1_000),
    };
    if let Ok(q) = policy.loop_out_quote(req.amount) {
        assert!(policy.min_amount <= req.amount && req.amount <= policy.max_amount);
        assert_eq!(q.swap_invoice_amount + q.prepay, req.amount + q.swap_fee);
        assert!(q.prepay <= q.swap_fee);
    }
});
