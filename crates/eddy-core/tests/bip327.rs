//! The P2TR internal key checked against an independent, from-the-spec computation of BIP327
//! KeyAgg (tagged hashes and point arithmetic written out here, not taken from the musig2
//! crate), for keys in the order (server, client) without sorting, as the Boltz trees use.

mod common;

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::secp256k1::{PublicKey, Scalar, Secp256k1};
use common::*;
use eddy_core::htlc::{Htlc, HtlcKind};

fn tagged(tag: &str, msg: &[u8]) -> [u8; 32] {
    let t = sha256::Hash::hash(tag.as_bytes());
    let mut e = sha256::Hash::engine();
    e.input(t.as_ref());
    e.input(t.as_ref());
    e.input(msg);
    sha256::Hash::from_engine(e).to_byte_array()
}

/// BIP327 KeyAgg for two distinct keys: the second key's coefficient is 1.
fn key_agg(first: &PublicKey, second: &PublicKey) -> PublicKey {
    let secp = Secp256k1::new();
    let mut list = Vec::new();
    list.extend_from_slice(&first.serialize());
    list.extend_from_slice(&second.serialize());
    let l = tagged("KeyAgg list", &list);
    let mut coef_msg = l.to_vec();
    coef_msg.extend_from_slice(&first.serialize());
    let a1 = Scalar::from_be_bytes(tagged("KeyAgg coefficient", &coef_msg)).expect("below the group order");
    first
        .mul_tweak(&secp, &a1)
        .expect("tweak")
        .combine(second)
        .expect("sum")
}

#[test]
fn internal_key_is_bip327_keyagg_of_server_then_client() {
    for kind in [HtlcKind::P2trOut, HtlcKind::P2trIn] {
        let Htlc::Taproot(t) = htlc(kind) else {
            panic!("taproot")
        };
        assert_eq!(t.server_key, pubkey(SERVER));
        assert_eq!(t.client_key, pubkey(CLIENT));
        let q = key_agg(&pubkey(SERVER), &pubkey(CLIENT));
        assert_eq!(t.internal_key, q.x_only_public_key().0, "{kind}");
        // Order matters: the other order gives another key (no sorting).
        let swapped = key_agg(&pubkey(CLIENT), &pubkey(SERVER));
        assert_ne!(t.internal_key, swapped.x_only_public_key().0);

        // BIP341 tweak, also written out: Q' = lift_x(q) + H_TapTweak(q || root)·G.
        let secp = Secp256k1::new();
        let (xonly, _) = q.x_only_public_key();
        let mut msg = xonly.serialize().to_vec();
        msg.extend_from_slice(&t.merkle_root().expect("tree"));
        let tweak = Scalar::from_be_bytes(tagged("TapTweak", &msg)).expect("below order");
        let (out, _) = xonly.add_tweak(&secp, &tweak).expect("tweak");
        assert_eq!(out, t.spend_info.output_key().to_x_only_public_key());
    }
}

/// The leaves are the Boltz scripts, opcode for opcode.
#[test]
fn leaves_match_the_boltz_trees() {
    let Htlc::Taproot(out) = htlc(HtlcKind::P2trOut) else {
        panic!("taproot")
    };
    let h160 = preimage().payment_hash().ripemd160();
    let client_x = pubkey(CLIENT).x_only_public_key().0.serialize();
    let server_x = pubkey(SERVER).x_only_public_key().0.serialize();
    let mut claim = vec![0x82, 0x01, 0x20, 0x88, 0xa9, 0x14];
    claim.extend_from_slice(&h160);
    claim.extend_from_slice(&[0x88, 0x20]);
    claim.extend_from_slice(&client_x);
    claim.push(0xac);
    assert_eq!(out.claim_script.as_bytes(), &claim[..]);
    let mut refund = vec![0x20];
    refund.extend_from_slice(&server_x);
    refund.extend_from_slice(&[0xad, 0x02, 0xf4, 0x01, 0xb1]); // 500 = 0x01f4 little-endian
    assert_eq!(out.refund_script.as_bytes(), &refund[..]);

    let Htlc::Taproot(inn) = htlc(HtlcKind::P2trIn) else {
        panic!("taproot")
    };
    let mut claim = vec![0xa9, 0x14];
    claim.extend_from_slice(&h160);
    claim.extend_from_slice(&[0x88, 0x20]);
    claim.extend_from_slice(&server_x);
    claim.push(0xac);
    assert_eq!(inn.claim_script.as_bytes(), &claim[..]);
    let mut refund = vec![0x20];
    refund.extend_from_slice(&client_x);
    refund.extend_from_slice(&[0xad, 0x02, 0xf4, 0x01, 0xb1]);
    assert_eq!(inn.refund_script.as_bytes(), &refund[..]);
}
