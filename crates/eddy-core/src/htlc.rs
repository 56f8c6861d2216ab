//! On-chain HTLC scripts: the three kinds Eddy supports, their addresses, the witness each
//! spend path needs (and its exact weight), and the "rebuild and compare" check a party runs
//! on an address the other party sent.
//!
//! - **P2TR** (default): internal key = BIP327 MuSig2 aggregate of (server, client) in that
//!   order, no sorting; two tapscript leaves (claim, refund) at depth one, byte-for-byte the
//!   Boltz reverse-swap (loop-out) and submarine-swap (loop-in) trees.
//! - **P2WSH** with an absolute timeout (`OP_SIZE 32` guards the preimage length).
//! - **Seed-compatible P2WSH**: BIP199-style with pubkey hashes and a relative (CSV) timeout,
//!   as in seed 000, so the seed's walkthrough client works against an Eddy server unchanged.

use core::fmt;
use core::str::FromStr;

use bitcoin::blockdata::opcodes::all::*;
use bitcoin::key::{PublicKey as BitcoinPublicKey, Secp256k1};
use bitcoin::script::Builder;
use bitcoin::secp256k1::{self, PublicKey, XOnlyPublicKey};
use bitcoin::taproot::{LeafVersion, TaprootBuilder, TaprootSpendInfo};
use bitcoin::{Address, Network, PubkeyHash, ScriptBuf};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::keyagg;
use bitcoin::hashes::Hash as _;

use crate::types::{PaymentHash, SwapDirection};

/// Errors building or checking an HTLC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HtlcError {
    /// A key of the wrong form for this kind (e.g. a key hash for P2TR).
    #[error("the {role} key must be a {expected} for a {kind} HTLC")]
    KeyForm {
        /// `claim` or `refund`.
        role: &'static str,
        /// What the kind needs.
        expected: &'static str,
        /// The HTLC kind.
        kind: HtlcKind,
    },
    /// MuSig2 key aggregation or tweaking failed (only for adversarial keys).
    #[error("musig2 key aggregation failed: {0}")]
    KeyAggregation(String),
    /// The timeout is out of range for this kind.
    #[error("timeout {timeout} is out of range for a {kind} HTLC")]
    Timeout {
        /// The given timeout.
        timeout: u32,
        /// The HTLC kind.
        kind: HtlcKind,
    },
    /// The address sent by the other party is not the one rebuilt from the swap's data.
    #[error("HTLC address mismatch: expected {expected}, got {got}")]
    AddressMismatch {
        /// Rebuilt from our own data.
        expected: String,
        /// Sent by the other party.
        got: String,
    },
    /// The address is for another network.
    #[error("address {address} is not valid on {network}")]
    WrongNetwork {
        /// The address.
        address: String,
        /// The swap's network.
        network: Network,
    },
    /// The text is not an address.
    #[error("cannot parse address {0:?}")]
    BadAddress(String),
}

/// Which script an HTLC uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HtlcKind {
    /// P2TR, loop-out tree (client claims with the preimage, server refunds after E).
    P2trOut,
    /// P2TR, loop-in tree (server claims with the preimage, client refunds after E).
    P2trIn,
    /// P2WSH with `OP_SIZE 32` and an absolute CLTV timeout.
    P2wsh,
    /// Seed 000's BIP199 P2WSH with pubkey hashes and a CSV timeout.
    Seed,
}

impl HtlcKind {
    /// Every kind, for help texts and tests.
    pub const ALL: [HtlcKind; 4] = [HtlcKind::P2trOut, HtlcKind::P2trIn, HtlcKind::P2wsh, HtlcKind::Seed];

    /// Stable name used in the CLI, JSON and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            HtlcKind::P2trOut => "p2tr-out",
            HtlcKind::P2trIn => "p2tr-in",
            HtlcKind::P2wsh => "p2wsh",
            HtlcKind::Seed => "seed",
        }
    }

    /// Whether the timeout is an absolute height (`false`: a relative CSV delay).
    pub fn absolute_timeout(self) -> bool {
        !matches!(self, HtlcKind::Seed)
    }
}

impl fmt::Display for HtlcKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HtlcKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HtlcKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown HTLC kind {s:?} (expected p2tr-out, p2tr-in, p2wsh or seed)"))
    }
}

/// A party's key as the HTLC commits to it: a full public key, or (seed kind only) its hash160.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HtlcKey {
    /// A compressed secp256k1 public key.
    Pubkey(PublicKey),
    /// `hash160(compressed pubkey)`.
    Hash(PubkeyHash),
}

impl HtlcKey {
    /// The key hash, computing it from a full key.
    pub fn pubkey_hash(&self) -> PubkeyHash {
        match self {
            HtlcKey::Pubkey(pk) => BitcoinPublicKey::new(*pk).pubkey_hash(),
            HtlcKey::Hash(h) => *h,
        }
    }
}

impl fmt::Display for HtlcKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HtlcKey::Pubkey(pk) => write!(f, "{pk}"),
            HtlcKey::Hash(h) => write!(f, "{h}"),
        }
    }
}

impl FromStr for HtlcKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.len() {
            66 => PublicKey::from_str(s)
                .map(HtlcKey::Pubkey)
                .map_err(|e| format!("bad public key: {e}")),
            40 => PubkeyHash::from_str(s)
                .map(HtlcKey::Hash)
                .map_err(|e| format!("bad key hash: {e}")),
            _ => Err(format!(
                "a key is 66 hex characters (compressed public key) or 40 (hash160), got {}",
                s.len()
            )),
        }
    }
}

impl Serialize for HtlcKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HtlcKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything that determines an HTLC: what is stored with a swap and exchanged between the
/// parties. `claim_key` spends with the preimage; `refund_key` after the timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtlcParams {
    /// The script kind.
    pub kind: HtlcKind,
    /// The payment hash the claim path is locked to.
    pub payment_hash: PaymentHash,
    /// Key of the party that claims with the preimage.
    pub claim_key: HtlcKey,
    /// Key of the party that refunds after the timeout.
    pub refund_key: HtlcKey,
    /// Absolute expiry height `E`, or for [`HtlcKind::Seed`] the relative CSV delay in blocks.
    pub timeout: u32,
}

/// Which way out of an HTLC a spend takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendPathKind {
    /// Script path with the preimage.
    Claim,
    /// Script path after the timeout.
    Refund,
    /// P2TR key path, signed by both parties with MuSig2.
    Cooperative,
}

/// A built HTLC: its scripts and output, ready to fund, watch and spend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Htlc {
    /// P2TR with a MuSig2 internal key.
    Taproot(Box<TaprootHtlc>),
    /// P2WSH: both the absolute-timeout kind and the seed-compatible kind.
    Wsh(WshHtlc),
}

/// A P2TR HTLC (Boltz-compatible swap tree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaprootHtlc {
    /// The parameters it was built from.
    pub params: HtlcParams,
    /// Server's key (first in key aggregation).
    pub server_key: PublicKey,
    /// Client's key (second in key aggregation).
    pub client_key: PublicKey,
    /// The claim leaf script.
    pub claim_script: ScriptBuf,
    /// The refund leaf script.
    pub refund_script: ScriptBuf,
    /// Untweaked MuSig2 aggregate key.
    pub internal_key: XOnlyPublicKey,
    /// Taproot tree, output key and control blocks.
    pub spend_info: TaprootSpendInfo,
}

/// A P2WSH HTLC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WshHtlc {
    /// The parameters it was built from.
    pub params: HtlcParams,
    /// The witness script.
    pub witness_script: ScriptBuf,
}

fn full_key(key: HtlcKey, role: &'static str, kind: HtlcKind) -> Result<PublicKey, HtlcError> {
    match key {
        HtlcKey::Pubkey(pk) => Ok(pk),
        HtlcKey::Hash(_) => Err(HtlcError::KeyForm {
            role,
            expected: "public key",
            kind,
        }),
    }
}

/// Witness weight of a stack: the item count varint plus each item with its length varint.
pub(crate) fn witness_weight(item_lens: &[usize]) -> u64 {
    fn varint(n: usize) -> u64 {
        match n {
            0..=0xfc => 1,
            0xfd..=0xffff => 3,
            _ => 5,
        }
    }
    varint(item_lens.len()) + item_lens.iter().map(|l| varint(*l) + *l as u64).sum::<u64>()
}

/// Serialized length of a Schnorr signature with the default sighash type.
pub const SCHNORR_SIG_LEN: usize = 64;
/// Serialized length of the ECDSA signatures Eddy makes: DER with 32-byte r and s (Eddy grinds
/// the nonce until both are full length, so sizes are exact) plus the sighash byte.
pub const ECDSA_SIG_LEN: usize = 71;

impl Htlc {
    /// Builds the HTLC described by `params`.
    pub fn new(params: HtlcParams) -> Result<Htlc, HtlcError> {
        match params.kind {
            HtlcKind::P2trOut | HtlcKind::P2trIn => TaprootHtlc::new(params).map(|t| Htlc::Taproot(Box::new(t))),
            HtlcKind::P2wsh => {
                let claim = full_key(params.claim_key, "claim", params.kind)?;
                let refund = full_key(params.refund_key, "refund", params.kind)?;
                if params.timeout == 0 || params.timeout >= 500_000_000 {
                    return Err(HtlcError::Timeout {
                        timeout: params.timeout,
                        kind: params.kind,
                    });
                }
                let witness_script = Builder::new()
                    .push_opcode(OP_SIZE)
                    .push_int(32)
                    .push_opcode(OP_EQUAL)
                    .push_opcode(OP_IF)
                    .push_opcode(OP_HASH160)
                    .push_slice(params.payment_hash.ripemd160())
                    .push_opcode(OP_EQUALVERIFY)
                    .push_slice(claim.serialize())
                    .push_opcode(OP_ELSE)
                    .push_opcode(OP_DROP)
                    .push_int(i64::from(params.timeout))
                    .push_opcode(OP_CLTV)
                    .push_opcode(OP_DROP)
                    .push_slice(refund.serialize())
                    .push_opcode(OP_ENDIF)
                    .push_opcode(OP_CHECKSIG)
                    .into_script();
                Ok(Htlc::Wsh(WshHtlc { params, witness_script }))
            }
            HtlcKind::Seed => {
                // BIP68 relative block lock: 16 bits of blocks.
                if params.timeout == 0 || params.timeout > 0xffff {
                    return Err(HtlcError::Timeout {
                        timeout: params.timeout,
                        kind: params.kind,
                    });
                }
                let witness_script = Builder::new()
                    .push_opcode(OP_SHA256)
                    .push_slice(params.payment_hash.to_byte_array())
                    .push_opcode(OP_EQUAL)
                    .push_opcode(OP_IF)
                    .push_opcode(OP_DUP)
                    .push_opcode(OP_HASH160)
                    .push_slice(params.claim_key.pubkey_hash().to_byte_array())
                    .push_opcode(OP_ELSE)
                    .push_int(i64::from(params.timeout))
                    .push_opcode(OP_CSV)
                    .push_opcode(OP_DROP)
                    .push_opcode(OP_DUP)
                    .push_opcode(OP_HASH160)
                    .push_slice(params.refund_key.pubkey_hash().to_byte_array())
                    .push_opcode(OP_ENDIF)
                    .push_opcode(OP_EQUALVERIFY)
                    .push_opcode(OP_CHECKSIG)
                    .into_script();
                Ok(Htlc::Wsh(WshHtlc { params, witness_script }))
            }
        }
    }

    /// The parameters it was built from.
    pub fn params(&self) -> &HtlcParams {
        match self {
            Htlc::Taproot(t) => &t.params,
            Htlc::Wsh(w) => &w.params,
        }
    }

    /// The output script to fund.
    pub fn script_pubkey(&self) -> ScriptBuf {
        match self {
            Htlc::Taproot(t) => ScriptBuf::new_p2tr_tweaked(t.spend_info.output_key()),
            Htlc::Wsh(w) => ScriptBuf::new_p2wsh(&w.witness_script.wscript_hash()),
        }
    }

    /// The address on `network`.
    pub fn address(&self, network: Network) -> Address {
        match self {
            Htlc::Taproot(t) => Address::p2tr_tweaked(t.spend_info.output_key(), network),
            Htlc::Wsh(w) => Address::p2wsh(&w.witness_script, network),
        }
    }

    /// The spend paths this HTLC offers.
    pub fn paths(&self) -> &'static [SpendPathKind] {
        match self {
            Htlc::Taproot(_) => &[SpendPathKind::Claim, SpendPathKind::Refund, SpendPathKind::Cooperative],
            Htlc::Wsh(_) => &[SpendPathKind::Claim, SpendPathKind::Refund],
        }
    }

    /// Exact witness weight (weight units = bytes) of spending this HTLC by `path`, with the
    /// signatures Eddy makes. `None` if the path does not exist for this kind.
    pub fn witness_weight(&self, path: SpendPathKind) -> Option<u64> {
        match (self, path) {
            (Htlc::Taproot(_), SpendPathKind::Cooperative) => Some(witness_weight(&[SCHNORR_SIG_LEN])),
            (Htlc::Taproot(t), SpendPathKind::Claim) => Some(witness_weight(&[
                SCHNORR_SIG_LEN,
                32,
                t.claim_script.len(),
                t.control_block_len(),
            ])),
            (Htlc::Taproot(t), SpendPathKind::Refund) => Some(witness_weight(&[
                SCHNORR_SIG_LEN,
                t.refund_script.len(),
                t.control_block_len(),
            ])),
            (Htlc::Wsh(w), SpendPathKind::Claim) => Some(match w.params.kind {
                HtlcKind::Seed => witness_weight(&[ECDSA_SIG_LEN, 33, 32, w.witness_script.len()]),
                _ => witness_weight(&[ECDSA_SIG_LEN, 32, w.witness_script.len()]),
            }),
            (Htlc::Wsh(w), SpendPathKind::Refund) => Some(match w.params.kind {
                HtlcKind::Seed => witness_weight(&[ECDSA_SIG_LEN, 33, 0, w.witness_script.len()]),
                _ => witness_weight(&[ECDSA_SIG_LEN, 0, w.witness_script.len()]),
            }),
            (Htlc::Wsh(_), SpendPathKind::Cooperative) => None,
        }
    }

    /// Rebuilds the HTLC from our own data and checks that `address` (sent by the other party)
    /// is exactly it, on the swap's network.
    pub fn check_address(&self, address: &str, network: Network) -> Result<(), HtlcError> {
        let unchecked = Address::from_str(address).map_err(|_| HtlcError::BadAddress(address.to_owned()))?;
        let checked = unchecked
            .require_network(network)
            .map_err(|_| HtlcError::WrongNetwork {
                address: address.to_owned(),
                network,
            })?;
        if checked.script_pubkey() != self.script_pubkey() {
            return Err(HtlcError::AddressMismatch {
                expected: self.address(network).to_string(),
                got: address.to_owned(),
            });
        }
        Ok(())
    }
}

impl TaprootHtlc {
    fn new(params: HtlcParams) -> Result<TaprootHtlc, HtlcError> {
        let claim = full_key(params.claim_key, "claim", params.kind)?;
        let refund = full_key(params.refund_key, "refund", params.kind)?;
        if params.timeout == 0 || params.timeout >= 500_000_000 {
            return Err(HtlcError::Timeout {
                timeout: params.timeout,
                kind: params.kind,
            });
        }
        let direction = if params.kind == HtlcKind::P2trOut {
            SwapDirection::LoopOut
        } else {
            SwapDirection::LoopIn
        };
        let (server_key, client_key) = match direction {
            SwapDirection::LoopOut => (refund, claim),
            SwapDirection::LoopIn => (claim, refund),
        };
        let hash160 = params.payment_hash.ripemd160();
        let mut claim_builder = Builder::new();
        if direction == SwapDirection::LoopOut {
            claim_builder = claim_builder
                .push_opcode(OP_SIZE)
                .push_int(32)
                .push_opcode(OP_EQUALVERIFY);
        }
        let claim_script = claim_builder
            .push_opcode(OP_HASH160)
            .push_slice(hash160)
            .push_opcode(OP_EQUALVERIFY)
            .push_x_only_key(&claim.x_only_public_key().0)
            .push_opcode(OP_CHECKSIG)
            .into_script();
        let refund_script = Builder::new()
            .push_x_only_key(&refund.x_only_public_key().0)
            .push_opcode(OP_CHECKSIGVERIFY)
            .push_int(i64::from(params.timeout))
            .push_opcode(OP_CLTV)
            .into_script();
        let internal = keyagg::aggregate_untweaked(&server_key, &client_key).map_err(HtlcError::KeyAggregation)?;
        let secp = Secp256k1::verification_only();
        let spend_info = TaprootBuilder::new()
            .add_leaf(1, claim_script.clone())
            .and_then(|b| b.add_leaf(1, refund_script.clone()))
            .map_err(|e| HtlcError::KeyAggregation(e.to_string()))?
            .finalize(&secp, internal)
            .map_err(|_| HtlcError::KeyAggregation("incomplete taproot tree".into()))?;
        Ok(TaprootHtlc {
            params,
            server_key,
            client_key,
            claim_script,
            refund_script,
            internal_key: internal,
            spend_info,
        })
    }

    /// Length of a control block for either leaf (both sit at depth one).
    pub fn control_block_len(&self) -> usize {
        33 + 32
    }

    /// The control block for a leaf script of this tree.
    pub fn control_block(&self, script: &ScriptBuf) -> Option<bitcoin::taproot::ControlBlock> {
        self.spend_info.control_block(&(script.clone(), LeafVersion::TapScript))
    }

    /// The taproot merkle root (tweak input for MuSig2).
    pub fn merkle_root(&self) -> Option<[u8; 32]> {
        self.spend_info.merkle_root().map(|r| r.to_byte_array())
    }
}

/// Derives a secp256k1 public key (convenience for tests and the CLI).
pub fn public_key(secret: &secp256k1::SecretKey) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::signing_only(), secret)
}
/// The scriptPubKeys an HTLC with `base`'s hash, keys and kind would have for every expiry in
/// `expiries`, mapped back to the expiry.
///
/// A loop-out client whose server can only fix `E` once the client's payment is held (an
/// embedded-LDK server cannot choose its hold invoice's final CLTV delta, so it adapts `E` to
/// the accepted HTLC's deadline) watches all of these: whichever output appears names `E`, and
/// the client checks it against its window before revealing anything. Nothing is trusted from
/// the server: every candidate is rebuilt from the client's own hash and key.
pub fn candidates(
    base: &HtlcParams,
    expiries: std::ops::RangeInclusive<u32>,
) -> Result<std::collections::HashMap<ScriptBuf, u32>, HtlcError> {
    expiries
        .map(|timeout| {
            let params = HtlcParams { timeout, ..*base };
            Htlc::new(params).map(|h| (h.script_pubkey(), timeout))
        })
        .collect()
}
