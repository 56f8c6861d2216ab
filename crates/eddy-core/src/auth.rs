//! Per-swap request authorization: a call that acts on a swap (co-signing, claim sessions,
//! status with outpoints) must come from the swap's counterparty, proven by a BIP340 signature
//! with the key that counterparty gave when it created the swap (loop-out: its claim key;
//! loop-in: its refund key). Nothing new is stored on either side: the server checks against the
//! key in its swap record, the client signs with the key it derives for the swap anyway.
//!
//! Wire form: the header [`HEADER`] carries `<unix seconds>:<signature hex>`. The signed message
//! is the BIP340 tagged hash (tag [`TAG`]) of
//! `swap id (32 bytes) ‖ unix seconds (u64 BE) ‖ method ‖ 0x00 ‖ path ‖ 0x00 ‖ sha256(body)`,
//! so a signature is good for one swap, one endpoint and one body only, and for
//! [`MAX_SKEW_SECS`] either side of the server's clock (a captured request cannot be replayed
//! later against another endpoint or with another body).

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::secp256k1::{schnorr, Keypair, Message, PublicKey, Secp256k1, SecretKey};

use crate::types::SwapId;

/// The HTTP header that carries the authorization.
pub const HEADER: &str = "x-eddy-swap-auth";

/// The BIP340 tag of the signed message.
pub const TAG: &str = "eddy/swap-auth/v1";

/// How far (seconds) a request's timestamp may be from the server's clock.
pub const MAX_SKEW_SECS: u64 = 300;

/// Why a request is not authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No authorization header.
    #[error("missing {HEADER} header: calls on a swap are signed with the key given at its creation")]
    Missing,
    /// The header does not parse.
    #[error("malformed {HEADER} header (expected <unix seconds>:<64-byte signature hex>)")]
    Malformed,
    /// The timestamp is too far from the server's clock.
    #[error("{HEADER} timestamp {at} is more than {MAX_SKEW_SECS} s from the server's clock ({now})")]
    Stale {
        /// The request's timestamp.
        at: u64,
        /// The server's clock.
        now: u64,
    },
    /// The signature does not verify against the swap's key.
    #[error("{HEADER} signature does not verify against this swap's key")]
    BadSignature,
}

fn message(id: &SwapId, at: u64, method: &str, path: &str, body: &[u8]) -> Message {
    let tag = sha256::Hash::hash(TAG.as_bytes());
    let mut e = sha256::Hash::engine();
    e.input(tag.as_byte_array());
    e.input(tag.as_byte_array());
    e.input(&id.0);
    e.input(&at.to_be_bytes());
    e.input(method.to_ascii_uppercase().as_bytes());
    e.input(&[0]);
    e.input(path.as_bytes());
    e.input(&[0]);
    e.input(sha256::Hash::hash(body).as_byte_array());
    Message::from_digest(sha256::Hash::from_engine(e).to_byte_array())
}

/// The header value authorizing `method path` with `body` on swap `id`, signed at unix time
/// `at` with `key` (the key whose public half the swap was created with).
pub fn sign(key: &SecretKey, id: &SwapId, at: u64, method: &str, path: &str, body: &[u8]) -> String {
    let secp = Secp256k1::signing_only();
    let kp = Keypair::from_secret_key(&secp, key);
    let sig = secp.sign_schnorr_no_aux_rand(&message(id, at, method, path, body), &kp);
    let hex: String = sig.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{at}:{hex}")
}

/// Checks `header` (the value of [`HEADER`], if any) for `method path` with `body` on swap `id`
/// against `key` (from the swap's record) at the server's unix time `now`.
pub fn verify(
    header: Option<&str>,
    key: &PublicKey,
    id: &SwapId,
    method: &str,
    path: &str,
    body: &[u8],
    now: u64,
) -> Result<(), AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let (at, sig) = header.trim().split_once(':').ok_or(AuthError::Malformed)?;
    // Digits and hex digits only: `u64::from_str` and `u8::from_str_radix` also take a leading
    // `+` ("+1000", "+f"), which let one signed header be written several ways; and no leading
    // zero ("01000" is the time "1000" signed for, written another way — found by fuzzing).
    if at.is_empty() || !at.bytes().all(|b| b.is_ascii_digit()) || (at.len() > 1 && at.starts_with('0')) {
        return Err(AuthError::Malformed);
    }
    let at: u64 = at.parse().map_err(|_| AuthError::Malformed)?;
    if sig.len() != 128 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::Malformed);
    }
    let mut bytes = [0u8; 64];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&sig[2 * i..2 * i + 2], 16).map_err(|_| AuthError::Malformed)?;
    }
    if at.abs_diff(now) > MAX_SKEW_SECS {
        return Err(AuthError::Stale { at, now });
    }
    let sig = schnorr::Signature::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    let (xonly, _) = key.x_only_public_key();
    Secp256k1::verification_only()
        .verify_schnorr(&sig, &message(id, at, method, path, body), &xonly)
        .map_err(|_| AuthError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> (SecretKey, PublicKey) {
        let sk = SecretKey::from_slice(&[n; 32]).expect("key");
        (sk, PublicKey::from_secret_key(&Secp256k1::new(), &sk))
    }

    #[test]
    fn signed_requests_verify_and_nothing_else_does() {
        let (sk, pk) = key(3);
        let (_, other) = key(4);
        let id = SwapId([9; 32]);
        let path = "/v1/swaps/0909/refund-cosign";
        let h = sign(&sk, &id, 1_000, "POST", path, b"{}");
        assert_eq!(verify(Some(&h), &pk, &id, "POST", path, b"{}", 1_100), Ok(()));
        assert_eq!(verify(Some(&h), &pk, &id, "post", path, b"{}", 1_000), Ok(()));
        // Another key, swap, method, path, body, or a stale clock: refused.
        assert_eq!(
            verify(Some(&h), &other, &id, "POST", path, b"{}", 1_000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(Some(&h), &pk, &SwapId([8; 32]), "POST", path, b"{}", 1_000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(Some(&h), &pk, &id, "GET", path, b"{}", 1_000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(Some(&h), &pk, &id, "POST", "/v1/swaps/0909/claim-cosign", b"{}", 1_000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(Some(&h), &pk, &id, "POST", path, b"{ }", 1_000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(Some(&h), &pk, &id, "POST", path, b"{}", 1_000 + MAX_SKEW_SECS + 1),
            Err(AuthError::Stale {
                at: 1_000,
                now: 1_000 + MAX_SKEW_SECS + 1
            })
        );
        assert_eq!(
            verify(None, &pk, &id, "POST", path, b"{}", 1_000),
            Err(AuthError::Missing)
        );
        // Only the canonical form: a `+` before the time or inside the hex, or a leading zero
        // before the time, is refused, even where it would spell the same numbers (regression:
        // all three were accepted).
        let (at, hex) = h.split_once(':').expect("canonical");
        let i = (0..hex.len())
            .step_by(2)
            .find(|i| hex.as_bytes()[*i] == b'0')
            .expect("a byte below 0x10 in this fixture signature");
        // "+f" reads as 0x0f with `from_str_radix`: the same signature, written another way.
        let plus_hex = format!("{at}:{}+{}", &hex[..i], &hex[i + 1..]);
        for bad in [
            "",
            "1000",
            "x:00",
            "1000:zz",
            &format!("1000:{}", "0".repeat(127)),
            &format!("+{h}"),
            &plus_hex,
            &format!("0{h}"),
        ] {
            assert_eq!(
                verify(Some(bad), &pk, &id, "POST", path, b"{}", 1_000),
                Err(AuthError::Malformed),
                "{bad}"
            );
        }
    }
}
