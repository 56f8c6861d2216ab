//! Boltz API v2's request bodies as the `/v2` front door reads them:
//! `eddy_core::boltz::parse_reverse_request` and `parse_reverse_claim`. Asserts: an accepted
//! creation names the BTC/BTC pair, exactly one amount, a description within its bound and none
//! of the fields Eddy refuses by name; an accepted claim's preimage is the body's 64 hex
//! characters and its co-signing parts come all together.
#![no_main]

use eddy_core::boltz::{parse_reverse_claim, parse_reverse_request, ReverseAmount, MAX_DESCRIPTION_BYTES};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_reverse_request(data) {
        let v: Value = serde_json::from_slice(data).expect("accepted, so JSON");
        assert_eq!((v["from"].as_str(), v["to"].as_str()), (Some("BTC"), Some("BTC")));
        let (i, o) = (v.get("invoiceAmount"), v.get("onchainAmount"));
        match req.amount {
            ReverseAmount::Invoice(a) => {
                assert!(o.is_none_or(Value::is_null));
                assert_eq!(i.and_then(Value::as_f64), Some(a.to_sat() as f64));
            }
            ReverseAmount::Onchain(a) => {
                assert!(i.is_none_or(Value::is_null));
                assert_eq!(o.and_then(Value::as_f64), Some(a.to_sat() as f64));
            }
        }
        assert!(req.description.is_none_or(|d| d.len() <= MAX_DESCRIPTION_BYTES));
        for refused in ["address", "addressSignature", "descriptionHash", "invoiceExpiry"] {
            assert!(v.get(refused).is_none_or(Value::is_null), "{refused} accepted");
        }
        assert_eq!(
            req.preimage_hash.to_string(),
            v["preimageHash"].as_str().expect("hash").to_ascii_lowercase()
        );
    }
    if let Ok(claim) = parse_reverse_claim(data) {
        let v: Value = serde_json::from_slice(data).expect("accepted, so JSON");
        assert_eq!(
            claim.preimage.expose_hex(),
            v["preimage"].as_str().expect("preimage").to_ascii_lowercase()
        );
        assert_eq!(claim.cosign.is_some(), v.get("pubNonce").is_some_and(|n| !n.is_null()));
    }
});
