//! Boltz API v2's request bodies as the `/v2` front door reads them:
//! `eddy_core::boltz::parse_reverse_request` and `parse_reverse_claim`, and the submarine
//! swap's `parse_submarine_request`, `parse_set_invoice`, `parse_claim_signature` and
//! `parse_refund_request`.
//! Asserts: an accepted creation names the BTC/BTC pair, exactly one amount, a description
//! within its bound and none of the fields Eddy refuses by name; an accepted claim's preimage
//! is the body's 64 hex characters and its co-signing parts come all together; a submarine
//! creation carries the body's invoice (within its bound) and refund key, and no webhook; the
//! signing bodies' nonce, partial signature and index are the body's.
#![no_main]

use eddy_core::boltz::{parse_reverse_claim, parse_reverse_request, submarine, ReverseAmount, MAX_DESCRIPTION_BYTES};
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
    if let Ok(req) = submarine::parse_submarine_request(data) {
        let v: Value = serde_json::from_slice(data).expect("accepted, so JSON");
        assert_eq!((v["from"].as_str(), v["to"].as_str()), (Some("BTC"), Some("BTC")));
        match &req.made_for {
            submarine::SubmarineFor::Invoice(i) => {
                assert_eq!(v["invoice"].as_str(), Some(i.as_str()));
                assert!(i.len() <= submarine::MAX_INVOICE_CHARS);
                assert!(v.get("preimageHash").is_none_or(Value::is_null), "both accepted");
            }
            submarine::SubmarineFor::Hash(h) => {
                assert!(v.get("invoice").is_none_or(Value::is_null), "both accepted");
                assert_eq!(
                    hex(&h.0),
                    v["preimageHash"].as_str().expect("hash").to_ascii_lowercase()
                );
            }
        }
        assert!(v.get("webhook").is_none_or(Value::is_null), "webhook accepted");
        assert_eq!(
            hex(&req.refund_key.serialize()),
            v["refundPublicKey"].as_str().expect("key").to_ascii_lowercase()
        );
    }
    if let Ok(set) = submarine::parse_set_invoice(data) {
        let v: Value = serde_json::from_slice(data).expect("accepted, so JSON");
        assert_eq!(v["invoice"].as_str(), Some(set.invoice.as_str()));
        assert!(set.invoice.len() <= submarine::MAX_INVOICE_CHARS);
    }
    if let Ok(sig) = submarine::parse_claim_signature(data) {
        let v: Value = serde_json::from_slice(data).expect("accepted, so JSON");
        assert_eq!(
            hex(&sig.nonce),
            v["pubNonce"].as_str().expect("nonce").to_ascii_lowercase()
        );
        assert_eq!(
            hex(&sig.partial),
            v["partialSignature"].as_str().expect("partial").to_ascii_lowercase()
        );
    }
    if let Ok(refund) = submarine::parse_refund_request(data) {
        let v: Value = serde_json::from_slice(data).expect("accepted, so JSON");
        assert_eq!(
            hex(&refund.nonce),
            v["pubNonce"].as_str().expect("nonce").to_ascii_lowercase()
        );
        assert_eq!(v["index"].as_u64(), Some(refund.index as u64));
    }
});

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
