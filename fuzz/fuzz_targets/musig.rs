//! MuSig2 public nonces and partial signatures as the other party sends them
//! (`eddy_core::musig`: `PubNonceBytes`, `PartialSigBytes`, `cosign`, `Signer::verify_theirs`,
//! `Signer::aggregate`), over a fuzzer-chosen message and session id. Asserts: the responder
//! (`cosign`) refuses exactly the nonces that do not decode, and what it returns completes an
//! honest session; a partial signature the fuzzer wrote never verifies and never aggregates; an
//! honest session's aggregate is a valid BIP340 signature for the HTLC's output key.
#![no_main]

use arbitrary::Arbitrary;
use bitcoin::secp256k1::{Message, Secp256k1};
use eddy_core::htlc::{Htlc, HtlcKind};
use eddy_core::musig::{cosign, MusigError, Signer, PUB_NONCE_LEN};
use eddy_fuzz::*;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Case {
    nonce: [u8; PUB_NONCE_LEN],
    partial: [u8; 32],
    message: [u8; 32],
    session: Vec<u8>,
    loop_in: bool,
}

fuzz_target!(|c: Case| {
    let kind = if c.loop_in { HtlcKind::P2trIn } else { HtlcKind::P2trOut };
    let Some(Htlc::Taproot(h)) = htlc(kind, hash(), TIP + 100) else {
        panic!("the fixture HTLC builds")
    };
    let decodes = musig2::PubNonce::from_bytes(&c.nonce).is_ok();
    // The server answering a co-signing request with the client's (fuzzed) nonce.
    match cosign(&h, &key(SERVER), c.message, &c.session, &c.nonce) {
        Ok((server_nonce, _)) => {
            assert!(decodes);
            assert!(musig2::PubNonce::from_bytes(&server_nonce).is_ok());
        }
        Err(e) => {
            assert!(!decodes, "a decodable nonce was refused: {e}");
            assert_eq!(e, MusigError::InvalidNonce);
        }
    }
    // The client holding a session: the fuzzed nonce and partial signature as the server's.
    let client = Signer::new(&h, &key(CLIENT), c.message, &c.session).expect("client session");
    assert!(
        client.verify_theirs(&c.nonce, &c.partial).is_err(),
        "a forged partial signature verified"
    );
    assert!(client.aggregate(&c.nonce, &c.partial, &c.partial).is_err());
    // An honest session on the same message completes to a signature for the output key.
    let mut client = client;
    let (server_nonce, server_partial) =
        cosign(&h, &key(SERVER), c.message, &c.session, &client.public_nonce()).expect("honest cosign");
    let ours = client.sign(&server_nonce).expect("client signs");
    assert_eq!(client.sign(&server_nonce), Err(MusigError::NonceAlreadyUsed));
    client
        .verify_theirs(&server_nonce, &server_partial)
        .expect("the server's partial verifies");
    let sig = client
        .aggregate(&server_nonce, &ours, &server_partial)
        .expect("honest partials aggregate");
    let spk = Htlc::Taproot(h.clone()).script_pubkey();
    let output_key = bitcoin::XOnlyPublicKey::from_slice(&spk.as_bytes()[2..34]).expect("P2TR output key");
    Secp256k1::verification_only()
        .verify_schnorr(&sig, &Message::from_digest(c.message), &output_key)
        .expect("the aggregate signature is valid for the HTLC's output key");
    // The fuzzed partial in place of the server's: refused.
    if c.partial != server_partial {
        assert!(client.aggregate(&server_nonce, &ours, &c.partial).is_err());
    }
});
