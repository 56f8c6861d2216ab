//! The hex value types as they arrive in paths and bodies (`PaymentHash`, `SwapId`, `Preimage`),
//! from text and from JSON. Asserts: accepted text is exactly 64 hex digits and prints back as
//! its lower-case self; JSON round-trips; a refused preimage's error never echoes the input.
#![no_main]

use eddy_core::types::{PaymentHash, Preimage, SwapId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let hex64 = s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match s.parse::<PaymentHash>() {
        Ok(h) => {
            assert!(hex64, "{s:?}");
            assert_eq!(h.to_string(), s.to_ascii_lowercase());
            assert_eq!(h.to_string().parse::<PaymentHash>(), Ok(h));
            let json = serde_json::to_string(&h).expect("serializes");
            assert_eq!(serde_json::from_str::<PaymentHash>(&json).expect("parses back"), h);
            assert_eq!(s.parse::<SwapId>().map(|i| i.0), Ok(h.0));
        }
        Err(_) => {
            assert!(!hex64, "{s:?}");
            assert!(s.parse::<SwapId>().is_err());
        }
    }
    match Preimage::from_hex(s) {
        Ok(p) => {
            assert!(hex64);
            assert_eq!(p.expose_hex(), s.to_ascii_lowercase());
            assert!(p.payment_hash().matches(&p));
            assert_eq!(format!("{p:?}"), "Preimage(<redacted>)");
        }
        Err(e) => {
            assert!(!hex64);
            // Whatever was sent, the error says the same (it never echoes a would-be secret).
            assert_eq!(e.to_string(), "expected 64 hex characters, got \"<redacted>\"");
        }
    }
    // The same values inside JSON bodies.
    if let Ok(h) = serde_json::from_slice::<PaymentHash>(data) {
        let back = serde_json::to_string(&h).expect("serializes");
        assert_eq!(serde_json::from_str::<PaymentHash>(&back).expect("parses back"), h);
    }
    if let Ok(p) = serde_json::from_slice::<Preimage>(data) {
        assert_eq!(
            serde_json::to_string(&p).expect("serializes"),
            format!("\"{}\"", p.expose_hex())
        );
    }
});
