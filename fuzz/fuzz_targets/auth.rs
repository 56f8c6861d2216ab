//! The per-swap authorization header (`x-eddy-swap-auth`) as any caller sends it:
//! `eddy_core::auth::verify` on any header text for a request (method, path, body) on a swap.
//! Input: one byte picking the method and path, two bytes of clock offset, the header up to the
//! first newline, the body after it (so seeds are real signed headers the fuzzer mutates).
//! Asserts: a header is accepted only in its canonical form (`<digits, no leading zero>:<128
//! hex>`), fresh
//! (within `MAX_SKEW_SECS`), and as exactly the signature the swap's key makes for that request
//! (a fuzzer cannot forge BIP340); a timestamp or signature is only ever read from the canonical
//! form; every header `sign` makes verifies for exactly its request (else `Stale` out of the
//! skew) and is `BadSignature` after any change of body, path, key or swap.
#![no_main]

use eddy_core::auth::{sign, verify, AuthError, MAX_SKEW_SECS};
use eddy_core::types::SwapId;
use eddy_fuzz::*;
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 4] = ["POST", "GET", "post", "PUT"];

fn canonical(header: &str) -> bool {
    let Some((at, sig)) = header.trim().split_once(':') else {
        return false;
    };
    !at.is_empty()
        && at.bytes().all(|b| b.is_ascii_digit())
        && !(at.len() > 1 && at.starts_with('0'))
        && sig.len() == 128
        && sig.bytes().all(|b| b.is_ascii_hexdigit())
}

fuzz_target!(|data: &[u8]| {
    let [sel, o1, o2, rest @ ..] = data else { return };
    let method = METHODS[usize::from(sel % 4)];
    let id = SwapId([7; 32]);
    let path = match (sel / 4) % 3 {
        0 => format!("/v1/swaps/{id}/cosign"),
        1 => format!("/v1/swaps/{id}"),
        _ => format!("/v1/swaps/{id}/claim-cosign"),
    };
    let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let Ok(header) = std::str::from_utf8(&rest[..split]) else {
        return;
    };
    let body = rest.get(split + 1..).unwrap_or_default();
    let pk = pubkey(CLIENT);
    match verify(Some(header), &pk, &id, method, &path, body, NOW) {
        Ok(()) => {
            assert!(canonical(header), "accepted a non-canonical header: {header:?}");
            let (at, _) = header.trim().split_once(':').expect("canonical");
            let at: u64 = at.parse().expect("digits");
            assert!(at.abs_diff(NOW) <= MAX_SKEW_SECS);
            let signed = sign(&key(CLIENT), &id, at, method, &path, body);
            assert_eq!(header.trim().to_ascii_lowercase(), signed, "accepted another signature");
        }
        Err(AuthError::Stale { at, now }) => {
            assert!(
                canonical(header),
                "non-canonical header read as a timestamp: {header:?}"
            );
            assert_eq!(now, NOW);
            assert!(at.abs_diff(NOW) > MAX_SKEW_SECS);
        }
        Err(AuthError::BadSignature) => {
            assert!(
                canonical(header),
                "non-canonical header checked as a signature: {header:?}"
            )
        }
        Err(AuthError::Malformed) | Err(AuthError::Missing) => {}
    }
    // What the client makes verifies exactly for its own request.
    let at = NOW.saturating_add_signed(i64::from(i16::from_le_bytes([*o1, *o2])));
    let h = sign(&key(CLIENT), &id, at, method, &path, body);
    assert!(canonical(&h), "{h}");
    let fresh = at.abs_diff(NOW) <= MAX_SKEW_SECS;
    let expect = if fresh {
        Ok(())
    } else {
        Err(AuthError::Stale { at, now: NOW })
    };
    assert_eq!(verify(Some(&h), &pk, &id, method, &path, body, NOW), expect);
    if !fresh {
        return;
    }
    let mut changed = body.to_vec();
    match changed.first_mut() {
        Some(b) => *b ^= 1,
        None => changed.push(0),
    }
    let bad = Err(AuthError::BadSignature);
    assert_eq!(verify(Some(&h), &pk, &id, method, &path, &changed, NOW), bad);
    assert_eq!(verify(Some(&h), &pk, &id, method, &format!("{path}/"), body, NOW), bad);
    assert_eq!(verify(Some(&h), &pubkey(SERVER), &id, method, &path, body, NOW), bad);
    assert_eq!(verify(Some(&h), &pk, &SwapId([8; 32]), method, &path, body, NOW), bad);
});
