//! Shared fixtures of Eddy's fuzz targets: fixed keys, the fixture HTLCs and a BOLT11 invoice
//! built (and signed) from fuzzer-chosen fields, so that a target can reach the validation
//! rules behind the signature check instead of stopping at the parser. Where a field has an
//! honest value, zero bytes pick it (a value is XORed with the default, a bijection), so the
//! fuzzer starts from accepted inputs and every other value stays reachable. Every target lives in
//! `fuzz_targets/`; docs/fuzzing.md says what each one asserts.

use std::time::Duration;

use arbitrary::Arbitrary;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::Network;
use eddy_core::htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams};
use eddy_core::types::{PaymentHash, Preimage};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret, RouteHint, RouteHintHop, RoutingFees};

/// The fuzzers' clock (unix seconds).
pub const NOW: u64 = 1_800_000_000;
/// The fuzzers' chain tip.
pub const TIP: u32 = 900_000;

/// Fixture roles: the server's key.
pub const SERVER: u8 = 1;
/// The client's key.
pub const CLIENT: u8 = 2;
/// A key that is neither party's.
pub const STRANGER: u8 = 3;

/// A deterministic secret key (never zero, always valid).
pub fn key(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[0] = 0x11;
    b[31] = n;
    SecretKey::from_slice(&b).unwrap_or_else(|_| unreachable!("0x11.. is below the curve order"))
}

/// Its public key.
pub fn pubkey(n: u8) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), &key(n))
}

/// The fixture preimage.
pub fn preimage() -> Preimage {
    Preimage::from_bytes([0x42; 32])
}

/// The fixture payment hash.
pub fn hash() -> PaymentHash {
    preimage().payment_hash()
}

/// A network picked by a fuzzer byte.
pub fn network(b: u8) -> Network {
    match b % 4 {
        0 => Network::Bitcoin,
        1 => Network::Testnet,
        2 => Network::Signet,
        _ => Network::Regtest,
    }
}

/// An HTLC kind picked by a fuzzer byte.
pub fn kind(b: u8) -> HtlcKind {
    HtlcKind::ALL[usize::from(b) % HtlcKind::ALL.len()]
}

/// The HTLC the fixture parties build for `kind` (the client claims on a loop-out, the server
/// on a loop-in) with timeout `expiry`.
pub fn htlc(kind: HtlcKind, payment_hash: PaymentHash, expiry: u32) -> Option<Htlc> {
    let (claim, refund) = match kind {
        HtlcKind::P2trIn => (SERVER, CLIENT),
        _ => (CLIENT, SERVER),
    };
    Htlc::new(HtlcParams {
        kind,
        payment_hash,
        claim_key: HtlcKey::Pubkey(pubkey(claim)),
        refund_key: HtlcKey::Pubkey(pubkey(refund)),
        timeout: expiry,
    })
    .ok()
}

/// A payment hash as a fuzzer picks it: the swap's own, or any other.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum HashChoice {
    /// The fixture hash (the swap's).
    Ours,
    /// Any 32 bytes.
    Other([u8; 32]),
}

impl HashChoice {
    /// The hash.
    pub fn hash(self) -> PaymentHash {
        match self {
            HashChoice::Ours => hash(),
            HashChoice::Other(b) => PaymentHash(b),
        }
    }
}

/// An invoice amount as a fuzzer picks it: the honest one (given by the target) plus a
/// small offset, or any.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum AmountPick {
    /// `honest + offset` msat.
    Honest(u16),
    /// `honest − offset` msat (saturating).
    Under(u16),
    /// Any amount, or none.
    Raw(Option<u64>),
}

impl AmountPick {
    /// The amount for an honest value of `honest_msat`.
    pub fn msat(self, honest_msat: u64) -> Option<u64> {
        match self {
            AmountPick::Honest(o) => Some(honest_msat.saturating_add(u64::from(o))),
            AmountPick::Under(o) => Some(honest_msat.saturating_sub(u64::from(o))),
            AmountPick::Raw(a) => a,
        }
    }
}

/// The fields of a BOLT11 invoice a counterparty chooses; [`InvoiceSpec::build`] signs it.
#[derive(Clone, Debug, Arbitrary)]
pub struct InvoiceSpec {
    /// Another network (see [`network`]) than the swap's, if any.
    pub network: Option<u8>,
    /// Amount.
    pub amount: AmountPick,
    /// Payment hash.
    pub hash: HashChoice,
    /// Seconds before [`NOW`] it was made (negative: in the future).
    pub age_secs: i32,
    /// Its expiry, seconds, XOR 3600 (zero bytes: an hour).
    pub expiry_secs: u32,
    /// `min_final_cltv_expiry_delta`.
    pub min_final_cltv: u16,
    /// Route hints, each a list of hop CLTV deltas (at most 3 hints of 3 hops are used).
    pub hints: Vec<Vec<u16>>,
    /// Signed by a stranger's key (else by the server's).
    pub by_stranger: bool,
}

impl InvoiceSpec {
    /// The signed invoice for the swap's network `net` (unless the spec picks another) where
    /// the honest amount is `honest_msat`, or `None` when the builder refuses the fields.
    pub fn build(&self, net: Network, honest_msat: u64) -> Option<String> {
        let secp = Secp256k1::new();
        let currency = Currency::from(self.network.map_or(net, network));
        let created = NOW.checked_add_signed(-i64::from(self.age_secs))?;
        let mut b = InvoiceBuilder::new(currency)
            .description("eddy fuzz".into())
            .payment_hash(sha256::Hash::from_byte_array(self.hash.hash().0))
            .payment_secret(PaymentSecret([7; 32]))
            .duration_since_epoch(Duration::from_secs(created))
            .min_final_cltv_expiry_delta(u64::from(self.min_final_cltv))
            .expiry_time(Duration::from_secs(u64::from(self.expiry_secs ^ 3_600)));
        for (i, hops) in self.hints.iter().take(3).enumerate() {
            let hops = hops
                .iter()
                .take(3)
                .enumerate()
                .map(|(j, cltv)| RouteHintHop {
                    src_node_id: pubkey(10 + j as u8),
                    short_channel_id: (i * 8 + j) as u64 + 1,
                    fees: RoutingFees {
                        base_msat: 0,
                        proportional_millionths: 0,
                    },
                    cltv_expiry_delta: *cltv,
                    htlc_minimum_msat: None,
                    htlc_maximum_msat: None,
                })
                .collect();
            b = b.private_route(RouteHint(hops));
        }
        let signer = key(if self.by_stranger { STRANGER } else { SERVER });
        let inv = match self.amount.msat(honest_msat) {
            Some(msat) => b
                .amount_milli_satoshis(msat)
                .build_signed(|m| secp.sign_ecdsa_recoverable(m, &signer)),
            None => b.build_signed(|m| secp.sign_ecdsa_recoverable(m, &signer)),
        };
        inv.ok().map(|i| i.to_string())
    }
}

/// A bitcoin address as a fuzzer picks it for an offer: the one rebuilt from the swap, the
/// same HTLC on another network, or any text.
#[derive(Clone, Debug, Arbitrary)]
pub enum AddressChoice {
    /// The HTLC's address on the swap's network.
    Right,
    /// The HTLC's address on the network picked by the byte.
    OtherNetwork(u8),
    /// The address of the HTLC with another timeout.
    OtherTimeout(u32),
    /// Any text.
    Text(String),
}

impl AddressChoice {
    /// The address text for `htlc` (built for the swap) on `net`.
    pub fn text(&self, htlc: Option<&Htlc>, kind: HtlcKind, net: Network) -> String {
        match (self, htlc) {
            (AddressChoice::Right, Some(h)) => h.address(net).to_string(),
            (AddressChoice::OtherNetwork(b), Some(h)) => h.address(network(*b)).to_string(),
            (AddressChoice::OtherTimeout(t), _) => htlc_or_text(kind, *t, net),
            (AddressChoice::Text(s), _) => s.clone(),
            (_, None) => String::new(),
        }
    }
}

fn htlc_or_text(kind: HtlcKind, t: u32, net: Network) -> String {
    htlc(kind, hash(), t)
        .map(|h| h.address(net).to_string())
        .unwrap_or_default()
}

/// A public key as a fuzzer picks it: a fixture role or any 33 bytes that decode.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum KeyChoice {
    /// A fixture key by role (see [`key`]).
    Role(u8),
    /// Any bytes (a key only if they decode).
    Bytes([u8; 33]),
}

impl KeyChoice {
    /// The key, if these bytes are one.
    pub fn key(self) -> Option<PublicKey> {
        match self {
            KeyChoice::Role(n) => Some(pubkey(n % 4)),
            KeyChoice::Bytes(b) => PublicKey::from_slice(&b).ok(),
        }
    }
}

/// The outputs the fixtures fund: vout 0 the loop-out HTLC, 1 the loop-in HTLC (the output the
/// server paid for), 2 a P2WSH HTLC, 3 a seed HTLC; others are other outputs paying them.
pub fn funding(vout: u32) -> bitcoin::OutPoint {
    bitcoin::OutPoint {
        txid: bitcoin::Txid::from_byte_array([0x55; 32]),
        vout,
    }
}

/// The value of every fixture HTLC output.
pub const HTLC_VALUE: bitcoin::Amount = bitcoin::Amount::from_sat(250_000);

/// The fixture HTLCs' expiry.
pub const EXPIRY: u32 = TIP + 100;

/// Whether `text` matches `pattern` (a pattern of the API document, `eddy_core::api::*_PATTERN`).
pub fn matches(pattern: &str, text: &str) -> bool {
    thread_local! {
        static COMPILED: std::cell::RefCell<std::collections::HashMap<String, regex::Regex>> =
            Default::default();
    }
    COMPILED.with(|c| {
        c.borrow_mut()
            .entry(pattern.to_owned())
            .or_insert_with(|| {
                regex::Regex::new(pattern).unwrap_or_else(|e| panic!("the document's pattern {pattern:?}: {e}"))
            })
            .is_match(text)
    })
}

/// The string field `name` of a JSON object body, or item `index` of an array body (serde
/// reads a struct from either; the API now refuses arrays, as its document only shows objects). Read the way serde's
/// derived parsers read: the other fields are skipped, not parsed (so a body whose ignored
/// field holds a number out of `f64` range, or bytes that are not UTF-8, is read as the API
/// reads it, though `serde_json::Value` would refuse it).
pub fn field(body: &[u8], name: &str, index: usize) -> Option<String> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct Field<'a>(&'a str, usize);
    impl<'de> Visitor<'de> for Field<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object or an array")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(k) = map.next_key::<String>()? {
                if k == self.0 {
                    found = Some(map.next_value::<String>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            let mut i = 0;
            loop {
                if i == self.1 {
                    match seq.next_element::<String>()? {
                        Some(v) => found = Some(v),
                        None => break,
                    }
                } else if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                i += 1;
            }
            Ok(found)
        }
    }
    impl<'de> DeserializeSeed<'de> for Field<'_> {
        type Value = Option<String>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    Field(name, index).deserialize(&mut de).ok().flatten()
}
