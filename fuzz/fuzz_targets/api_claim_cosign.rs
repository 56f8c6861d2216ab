//! `POST /v1/swaps/{id}/claim-cosign`'s body: `eddy_core::api::parse_claim_cosign`, then the
//! loop-in server's aggregation of the client's partial signature into its claim. Asserts:
//! accepted values match the document's `NONCE_PATTERN` and 64 hex, and re-encode to what was
//! sent; a partial signature from the body never completes the server's session (only the
//! client's key could make one).
#![no_main]

use bitcoin::hex::DisplayHex;
use eddy_core::api::{parse_claim_cosign, NONCE_PATTERN};
use eddy_core::htlc::{Htlc, HtlcKind};
use eddy_core::musig::Signer;
use eddy_fuzz::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((nonce, partial)) = parse_claim_cosign(data) else {
        return;
    };
    let (n, p) = (
        field(data, "nonce", 0).expect("nonce"),
        field(data, "partial_sig", 1).expect("partial_sig"),
    );
    assert!(matches(NONCE_PATTERN, &n), "{n:?}");
    assert!(matches("^[0-9a-fA-F]{64}$", &p), "{p:?}");
    assert_eq!(nonce.to_lower_hex_string(), n.to_ascii_lowercase());
    assert_eq!(partial.to_lower_hex_string(), p.to_ascii_lowercase());
    let Some(Htlc::Taproot(h)) = htlc(HtlcKind::P2trIn, hash(), EXPIRY) else {
        panic!("fixture")
    };
    let mut server = Signer::new(&h, &key(SERVER), [3; 32], b"fuzz").expect("server session");
    let Ok(ours) = server.sign(&nonce) else { return };
    assert!(
        server.aggregate(&nonce, &ours, &partial).is_err(),
        "a body's partial signature completed the claim"
    );
});
