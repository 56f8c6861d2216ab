//! The quote queries (`GET /v1/quote/loop-out?…`, `…/loop-in?…`) and the per-swap path id:
//! `eddy_core::api::parse_quote_query` and `parse_id` on any text. Asserts: an accepted amount
//! is what the document admits (a whole number of satoshis; written as a float, at most
//! 2^53 − 1) and `amount=<it>` parses back to it; quotes for it add up; an accepted id is 64
//! hex characters (`HEX32_PATTERN`) and prints back as its lower-case self.
#![no_main]

use bitcoin::Amount;
use eddy_core::api::{parse_id, parse_quote_query, sat, HEX32_PATTERN};
use eddy_core::fees::FeePolicy;
use eddy_fuzz::matches;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(amount) = parse_quote_query(text) {
        let written = format!("amount={}", amount.to_sat());
        assert_eq!(parse_quote_query(&written), Ok(amount));
        let policy = FeePolicy {
            base_fee: Amount::from_sat(1_000),
            fee_ppm: 5_000,
            min_amount: Amount::from_sat(10_000),
            max_amount: Amount::from_sat(1_000_000),
            prepay: Amount::from_sat(1_000),
        };
        if let Ok(q) = policy.loop_in_quote(amount) {
            assert_eq!(q.invoice_amount + q.swap_fee, amount);
        }
        // A float form is only exact up to 2^53 − 1.
        if let Some(v) = text.split('&').filter_map(|kv| kv.strip_prefix("amount=")).next() {
            if !v.bytes().all(|b| b.is_ascii_digit()) && !v.contains('%') && !v.contains('+') {
                assert!(amount.to_sat() <= sat::MAX_FLOAT_EXACT, "{text:?}");
            }
        }
    }
    match parse_id(text) {
        Ok(id) => {
            assert!(matches(HEX32_PATTERN, text));
            assert_eq!(id.to_string(), text.to_ascii_lowercase());
        }
        Err(_) => assert!(!matches(HEX32_PATTERN, text)),
    }
});
