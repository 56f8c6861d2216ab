//! Seed 000's `POST /api/loop/out` body: `eddy_core::api::parse_seed_loop_out` on every
//! network. Asserts: an accepted request's claim address is a P2WPKH address of that network
//! whose program is the parsed pubkey hash, its hash the body's 64 hex characters, its amount
//! the body's; the camelCase field names are the only ones accepted.
#![no_main]

use std::str::FromStr;

use bitcoin::hashes::Hash;

use eddy_core::api::{parse_seed_loop_out, HEX32_PATTERN};
use eddy_fuzz::{field, matches, network};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for n in 0..4 {
        let net = network(n);
        let Ok(req) = parse_seed_loop_out(data, net) else {
            continue;
        };
        let address = field(data, "htlcClaimAddress", 0).expect("htlcClaimAddress");
        let hash = field(data, "hash", 1).expect("hash");
        assert!(matches(HEX32_PATTERN, &hash));
        assert_eq!(req.hash.to_string(), hash.to_ascii_lowercase());
        let parsed = bitcoin::Address::from_str(address.trim())
            .expect("accepted, so an address")
            .require_network(net)
            .expect("of this network");
        let wpkh = bitcoin::WPubkeyHash::from_byte_array(req.claim_pkh.to_byte_array());
        assert_eq!(parsed.script_pubkey(), bitcoin::ScriptBuf::new_p2wpkh(&wpkh));
        if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(data) {
            let known = ["htlcClaimAddress", "hash", "loopOutSats"];
            assert!(object.keys().all(|k| known.contains(&k.as_str())), "{object:?}");
        }
    }
});
