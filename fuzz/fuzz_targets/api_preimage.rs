//! `POST /v1/swaps/{id}/preimage`'s body: `eddy_core::api::parse_preimage`. Asserts: an
//! accepted preimage is the body's 64 hex characters (document's `HEX32_PATTERN`) and
//! round-trips; a refusal never echoes any 64-hex-character run of the body (a preimage sent
//! in the wrong shape must not come back in an error, which may be logged or shown).
#![no_main]

use eddy_core::api::{parse_preimage, HEX32_PATTERN};
use eddy_fuzz::{field, matches};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_preimage(data) {
        Ok(p) => {
            let text = field(data, "preimage", 0).expect("a string field");
            assert!(matches(HEX32_PATTERN, &text));
            assert_eq!(p.expose_hex(), text.to_ascii_lowercase());
            let body = format!("{{\"preimage\":\"{}\"}}", p.expose_hex());
            assert_eq!(parse_preimage(body.as_bytes()), Ok(p));
        }
        Err(e) => {
            let shown = e.to_string().to_ascii_lowercase();
            let body = String::from_utf8_lossy(data).to_ascii_lowercase();
            let hex = regex::Regex::new("[0-9a-f]{64}").expect("regex");
            for m in hex.find_iter(&body) {
                assert!(
                    !shown.contains(m.as_str()),
                    "the error echoes a 64-hex run of the body: {shown}"
                );
            }
        }
    }
});
