//! The co-signing requests' body (`POST /v1/swaps/{id}/cosign` and `…/refund-cosign`):
//! `eddy_core::api::cosign_request`, then what the loop-out server does with it (one input
//! spending the swap's HTLC → key-path sighash → its partial signature over the client's
//! nonce). Asserts: an accepted nonce matches the document's `NONCE_PATTERN` and the tx
//! `TX_PATTERN`; nonce and transaction re-encode to what was sent (lower-cased); the server
//! co-signs exactly when the nonce decodes and the transaction spends only the swap's HTLC.
#![no_main]

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hex::DisplayHex;
use eddy_core::api::{cosign_request, NONCE_PATTERN, TX_PATTERN};
use eddy_core::htlc::{Htlc, HtlcKind};
use eddy_core::musig::cosign;
use eddy_core::tx::cooperative_sighash;
use eddy_fuzz::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((nonce, tx)) = cosign_request(data) else { return };
    let (n, t) = (
        field(data, "nonce", 0).expect("nonce"),
        field(data, "tx", 1).expect("tx"),
    );
    assert!(matches(NONCE_PATTERN, &n), "{n:?}");
    assert!(matches(TX_PATTERN, &t), "{t:?}");
    assert_eq!(nonce.to_lower_hex_string(), n.to_ascii_lowercase());
    assert_eq!(serialize_hex(&tx), t.to_ascii_lowercase());
    let Some(Htlc::Taproot(h)) = htlc(HtlcKind::P2trOut, hash(), EXPIRY) else {
        panic!("fixture")
    };
    if tx.input.len() != 1 || tx.input[0].previous_output != funding(0) {
        return;
    }
    let msg = cooperative_sighash(&tx, &Htlc::Taproot(h.clone()), HTLC_VALUE).expect("one input: a sighash");
    let decodes = musig2::PubNonce::from_bytes(&nonce).is_ok();
    assert_eq!(cosign(&h, &key(SERVER), msg, b"fuzz", &nonce).is_ok(), decodes);
});
