//! What a client reads from a server it does not control: the JSON answers of the swap API
//! (`Terms`, `Quote`, `QuoteIn`, `LoopOutOffer`, `LoopInOffer`, `SwapStatus`, `CosignResponse`,
//! `ClaimOffer`, `SeedLoopOutResponse`, `ErrorBody`) parsed as the client parses them.
//! Asserts: whatever parses re-serializes to JSON that parses back to the same value.
#![no_main]

use eddy_core::api::*;
use eddy_core::validate::{LoopInOffer, LoopOutOffer};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<T: Serialize + DeserializeOwned + std::fmt::Debug>(data: &[u8], eq: impl Fn(&T, &T) -> bool) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let json = serde_json::to_vec(&v).expect("serializes");
        let back: T = serde_json::from_slice(&json).expect("its own JSON parses");
        assert!(eq(&v, &back), "{v:?} != {back:?}");
    }
}

fn json_eq<T: Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Terms>(data, |a, b| a == b);
    round_trip::<Quote>(data, |a, b| a == b);
    round_trip::<QuoteIn>(data, |a, b| a == b);
    round_trip::<LoopOutOffer>(data, |a, b| a == b);
    round_trip::<LoopInOffer>(data, |a, b| a == b);
    round_trip::<SwapStatus>(data, |a, b| a == b);
    round_trip::<CosignResponse>(data, json_eq);
    round_trip::<ClaimOffer>(data, json_eq);
    round_trip::<SeedLoopOutResponse>(data, json_eq);
    round_trip::<ErrorBody>(data, json_eq);
});
