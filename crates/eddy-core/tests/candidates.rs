//! `htlc::candidates`: a client that learns `E` from the chain rebuilds every address in its
//! window from its own data; each candidate is exactly the HTLC for that expiry.

mod common;

use eddy_core::htlc::{candidates, Htlc, HtlcKind, HtlcParams};

#[test]
fn every_candidate_is_the_htlc_for_its_expiry() {
    for kind in [HtlcKind::P2trOut, HtlcKind::P2wsh] {
        let base: HtlcParams = *common::htlc(kind).params();
        let window = 1_000..=1_256;
        let map = candidates(&base, window.clone()).expect("candidates");
        assert_eq!(map.len(), 257, "{kind:?}: one distinct scriptPubKey per expiry");
        for e in [1_000u32, 1_128, 1_256] {
            let h = Htlc::new(HtlcParams { timeout: e, ..base }).expect("htlc");
            assert_eq!(map.get(&h.script_pubkey()), Some(&e));
        }
        let outside = Htlc::new(HtlcParams { timeout: 1_257, ..base }).expect("htlc");
        assert_eq!(map.get(&outside.script_pubkey()), None);
        // A different hash gives none of them.
        let other = HtlcParams {
            payment_hash: eddy_core::types::PaymentHash([0xee; 32]),
            ..base
        };
        let h = Htlc::new(HtlcParams {
            timeout: 1_100,
            ..other
        })
        .expect("htlc");
        assert_eq!(map.get(&h.script_pubkey()), None);
    }
}
