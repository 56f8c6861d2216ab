//! The per-swap authorization header (`x-eddy-swap-auth`) as any caller sends it:
//! `eddy_core::auth::verify` on any header text, method, path and body. Asserts: a header is
//! accepted only in its canonical form (`<decimal seconds>:<128 hex>`) with a timestamp within
//! `MAX_SKEW_SECS` of the clock; every header `sign` makes verifies for exactly its swap,
//! method, path and body (and is `Stale` outside the skew); changing any byte of the body, or
//! the path, or the key, makes it `BadSignature`.
#![no_main]

use arbitrary::Arbitrary;
use eddy_core::auth::{sign, verify, AuthError, MAX_SKEW_SECS};
use eddy_core::types::SwapId;
use eddy_fuzz::*;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Case {
    header: String,
    method: String,
    path: String,
    body: Vec<u8>,
    at_offset: i16,
    flip: u16,
}

fn canonical(header: &str) -> bool {
    let Some((at, sig)) = header.trim().split_once(':') else {
        return false;
    };
    !at.is_empty()
        && at.bytes().all(|b| b.is_ascii_digit())
        && sig.len() == 128
        && sig.bytes().all(|b| b.is_ascii_hexdigit())
}

fuzz_target!(|c: Case| {
    let id = SwapId([7; 32]);
    let pk = pubkey(CLIENT);
    // Whatever the caller sends: accepted only if canonical, fresh and signed by the key (a
    // fuzzer cannot forge a BIP340 signature, so any acceptance of its text is a bug).
    match verify(Some(&c.header), &pk, &id, &c.method, &c.path, &c.body, NOW) {
        Ok(()) => panic!("accepted a header the fuzzer wrote: {:?}", c.header),
        Err(AuthError::Stale { at, now }) => {
            assert!(
                canonical(&c.header),
                "non-canonical header read as a timestamp: {:?}",
                c.header
            );
            assert_eq!(now, NOW);
            assert!(at.abs_diff(NOW) > MAX_SKEW_SECS);
        }
        Err(AuthError::BadSignature) => {
            assert!(
                canonical(&c.header),
                "non-canonical header checked as a signature: {:?}",
                c.header
            )
        }
        Err(AuthError::Malformed) | Err(AuthError::Missing) => {}
    }
    // What the client makes: verifies exactly for its own request.
    let at = NOW.saturating_add_signed(i64::from(c.at_offset));
    let h = sign(&key(CLIENT), &id, at, &c.method, &c.path, &c.body);
    assert!(canonical(&h), "{h}");
    let fresh = at.abs_diff(NOW) <= MAX_SKEW_SECS;
    let expect = if fresh {
        Ok(())
    } else {
        Err(AuthError::Stale { at, now: NOW })
    };
    assert_eq!(verify(Some(&h), &pk, &id, &c.method, &c.path, &c.body, NOW), expect);
    if !fresh {
        return;
    }
    let mut body = c.body.clone();
    if body.is_empty() {
        body.push(0);
    } else {
        let i = usize::from(c.flip) % body.len();
        body[i] ^= 1;
    }
    let bad = Err(AuthError::BadSignature);
    assert_eq!(verify(Some(&h), &pk, &id, &c.method, &c.path, &body, NOW), bad);
    let path = format!("{}/", c.path);
    assert_eq!(verify(Some(&h), &pk, &id, &c.method, &path, &c.body, NOW), bad);
    assert_eq!(
        verify(Some(&h), &pubkey(SERVER), &id, &c.method, &c.path, &c.body, NOW),
        bad
    );
    assert_eq!(
        verify(Some(&h), &pk, &SwapId([8; 32]), &c.method, &c.path, &c.body, NOW),
        bad
    );
});
