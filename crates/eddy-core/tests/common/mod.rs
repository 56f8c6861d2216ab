//! Helpers for eddy-core's integration tests: keys, HTLC fixtures and verification of spends
//! by Bitcoin Core's own script interpreter (libbitcoinkernel).

#![allow(dead_code)]

use bitcoin::consensus::serialize;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use bitcoinkernel::{verify, PrecomputedTransactionData, ScriptPubkey, TxOut as KTxOut, VERIFY_ALL};
use eddy_core::htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams};
use eddy_core::types::Preimage;

/// A deterministic secret key.
pub fn key(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[31] = n;
    b[0] = 0x11;
    SecretKey::from_slice(&b).expect("valid key")
}

/// Its public key.
pub fn pubkey(n: u8) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), &key(n))
}

/// Roles in fixtures: server key 1, client key 2, stranger 3.
pub const SERVER: u8 = 1;
/// Client key index.
pub const CLIENT: u8 = 2;
/// A key that is neither party's.
pub const STRANGER: u8 = 3;

/// The fixture preimage.
pub fn preimage() -> Preimage {
    Preimage::from_bytes([0x42; 32])
}

/// Expiry used by fixtures.
pub const EXPIRY: u32 = 500;
/// CSV delay used by seed fixtures.
pub const CSV: u32 = 40;

/// The HTLC of `kind` with the fixture keys: claim key = client for loop-out kinds and P2WSH,
/// server for loop-in.
pub fn htlc(kind: HtlcKind) -> Htlc {
    let (claim, refund) = match kind {
        HtlcKind::P2trIn => (SERVER, CLIENT),
        _ => (CLIENT, SERVER),
    };
    let params = HtlcParams {
        kind,
        payment_hash: preimage().payment_hash(),
        claim_key: HtlcKey::Pubkey(pubkey(claim)),
        refund_key: HtlcKey::Pubkey(pubkey(refund)),
        timeout: if kind == HtlcKind::Seed { CSV } else { EXPIRY },
    };
    Htlc::new(params).expect("valid params")
}

/// The secret key index of the claim / refund party for `kind`.
pub fn claimer(kind: HtlcKind) -> u8 {
    if kind == HtlcKind::P2trIn {
        SERVER
    } else {
        CLIENT
    }
}

/// The secret key index of the refund party for `kind`.
pub fn refunder(kind: HtlcKind) -> u8 {
    if kind == HtlcKind::P2trIn {
        CLIENT
    } else {
        SERVER
    }
}

/// An outpoint with a recognisable txid.
pub fn outpoint(n: u8) -> OutPoint {
    use bitcoin::hashes::Hash;
    OutPoint {
        txid: Txid::from_byte_array([n; 32]),
        vout: u32::from(n),
    }
}

/// A P2WPKH destination.
pub fn destination() -> ScriptBuf {
    let pk = bitcoin::CompressedPublicKey(pubkey(9));
    ScriptBuf::new_p2wpkh(&pk.wpubkey_hash())
}

/// Verifies every input of `tx` against `prevouts` with libbitcoinkernel (all consensus flags).
pub fn kernel_verify(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), String> {
    let ktx = bitcoinkernel::Transaction::new(&serialize(tx)).map_err(|e| format!("parse: {e}"))?;
    let kouts: Vec<KTxOut> = prevouts
        .iter()
        .map(|o| {
            let spk = ScriptPubkey::new(o.script_pubkey.as_bytes()).expect("script");
            KTxOut::new(&spk, o.value.to_sat() as i64)
        })
        .collect();
    let data = PrecomputedTransactionData::new(&ktx, &kouts).map_err(|e| format!("precompute: {e}"))?;
    for (i, prevout) in prevouts.iter().enumerate() {
        let spk = ScriptPubkey::new(prevout.script_pubkey.as_bytes()).expect("script");
        verify(
            &spk,
            Some(prevout.value.to_sat() as i64),
            &ktx,
            i,
            Some(VERIFY_ALL),
            &data,
        )
        .map_err(|e| format!("input {i}: {e}"))?;
    }
    Ok(())
}

/// 100k sat.
pub fn value() -> Amount {
    Amount::from_sat(100_000)
}
