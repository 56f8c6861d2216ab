//! A loop-in server's answer as the client checks it before funding:
//! `eddy_core::validate::validate_loop_in_offer` on a fuzzer-chosen server key, expiry, fee,
//! address and tip. Asserts on an accepted answer: the fee within the client's limit, `E − tip`
//! inside `MIN_LOOP_IN_EXPIRY_DELTA..=MAX_LOOP_IN_EXPIRY_DELTA`, and the returned HTLC exactly
//! the one rebuilt from our hash, our refund key, the server's key and `E`, at the address given.
#![no_main]

use arbitrary::Arbitrary;
use bitcoin::Amount;
use eddy_core::constants::{MAX_LOOP_IN_EXPIRY_DELTA, MIN_LOOP_IN_EXPIRY_DELTA};
use eddy_core::htlc::{Htlc, HtlcKey, HtlcParams};
use eddy_core::validate::{validate_loop_in_offer, LoopInOffer};
use eddy_fuzz::*;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Case {
    kind: u8,
    network: u8,
    max_swap_fee_sat: u64,
    swap_fee_sat: u64,
    server_key: KeyChoice,
    expiry_delta: i16,
    tip_offset: i16,
    address: AddressChoice,
}

fuzz_target!(|c: Case| {
    let net = network(c.network);
    let kind = kind(c.kind);
    let Some(server_key) = c.server_key.key() else { return };
    let expiry = TIP.saturating_add_signed(i32::from(c.expiry_delta));
    let tip = TIP.saturating_add_signed(i32::from(c.tip_offset));
    let rebuilt = Htlc::new(HtlcParams {
        kind,
        payment_hash: hash(),
        claim_key: HtlcKey::Pubkey(server_key),
        refund_key: HtlcKey::Pubkey(pubkey(CLIENT)),
        timeout: expiry,
    })
    .ok();
    let offer = LoopInOffer {
        server_key,
        expiry,
        htlc_address: c.address.text(rebuilt.as_ref(), kind, net),
        swap_fee: Amount::from_sat(c.swap_fee_sat),
    };
    // The answer as it travels: its JSON form parses back to the same answer.
    let json = serde_json::to_vec(&offer).expect("serializes");
    assert_eq!(
        serde_json::from_slice::<LoopInOffer>(&json).expect("parses back"),
        offer
    );
    let max = Amount::from_sat(c.max_swap_fee_sat);
    let Ok(htlc) = validate_loop_in_offer(kind, hash(), pubkey(CLIENT), max, net, &offer, tip) else {
        return;
    };
    assert!(offer.swap_fee <= max);
    assert!(expiry > tip);
    assert!((MIN_LOOP_IN_EXPIRY_DELTA..=MAX_LOOP_IN_EXPIRY_DELTA).contains(&(expiry - tip)));
    let rebuilt = rebuilt.expect("accepted, so the HTLC builds");
    assert_eq!(htlc.params(), rebuilt.params());
    let parsed: bitcoin::Address<bitcoin::address::NetworkUnchecked> = offer.htlc_address.parse().expect("address");
    assert_eq!(
        parsed.require_network(net).expect("network").script_pubkey(),
        htlc.script_pubkey()
    );
});
