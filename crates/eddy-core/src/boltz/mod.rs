//! Boltz API v2 as pure data; here the reverse swaps (= Eddy's loop-out, [`submarine`] has the
//! other direction): the pair the server offers
//! (`GET /v2/swap/reverse`), the amounts of a swap from either its invoice or its on-chain
//! amount (Boltz's formulas: the percentage is charged on the invoice amount and rounded up, the
//! lockup fee is fixed), the creation and claim requests as parsed from untrusted JSON, the
//! swap tree as Boltz serializes it, and the status names a loop-out's state shows as. The
//! shapes and rules are Boltz's (see `docs/boltz-api.md`); the server's front door
//! (`eddy_server::http::boltz`) uses them, and so will a client speaking to a Boltz provider.

use std::str::FromStr;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::hex::DisplayHex;
use bitcoin::secp256k1::PublicKey;
use bitcoin::Amount;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::ApiParseError;
use crate::fees::{FeePolicy, LoopOutQuote};
use crate::htlc::TaprootHtlc;
use crate::musig::PubNonceBytes;
use crate::sm::loop_out_server::{CancelReason, State};
use crate::types::{PaymentHash, Preimage};

pub mod submarine;

/// The only asset Eddy swaps: Bitcoin on both sides.
pub const ASSET: &str = "BTC";
/// Longest invoice description a creation may ask for (bytes): the BOLT11 field holds 639, and
/// the invoice must stay short enough to show as a QR code.
pub const MAX_DESCRIPTION_BYTES: usize = 256;

/// Why a Boltz request is refused (the text is what the caller sees, in Boltz's
/// `{"error": …}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoltzError {
    /// A body or field that does not parse.
    #[error(transparent)]
    Parse(#[from] ApiParseError),
    /// Not the BTC/BTC pair.
    #[error("pair {0}/{1} is not supported (only BTC/BTC)")]
    Pair(String, String),
    /// Both or neither of `invoiceAmount` and `onchainAmount`.
    #[error("{0}")]
    Amounts(&'static str),
    /// The pair's terms changed since the caller read them.
    #[error("invalid pair hash")]
    PairHash,
    /// An amount outside the limits, or one that leaves nothing on chain.
    #[error("{0}")]
    Amount(String),
    /// A field Eddy does not support (said, never silently ignored).
    #[error("{0} is not supported")]
    Unsupported(&'static str),
}

/// The reverse pair's limits (on the invoice amount, as Boltz applies them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest invoice amount (sat).
    pub maximal: u64,
    /// Smallest invoice amount (sat).
    pub minimal: u64,
}

/// The reverse pair's miner fees (sat).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinerFees {
    /// What the client's claim costs at the current estimate (its own to pay).
    pub claim: u64,
    /// The fixed part of the server's fee (Boltz's lockup fee).
    pub lockup: u64,
}

/// The reverse pair's fees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fees {
    /// The proportional part of the fee, in percent of the invoice amount.
    pub percentage: f64,
    /// Fixed fees.
    #[serde(rename = "minerFees")]
    pub miner_fees: MinerFees,
}

/// One pair of `GET /v2/swap/reverse`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReversePair {
    /// Hex SHA-256 of what the server charges (rate, percentage, lockup fee, limits): a creation
    /// naming another hash is refused. The claim fee, the client's own to pay and moving with
    /// every estimate, is not part of it.
    pub hash: String,
    /// Always 1 (BTC to BTC).
    pub rate: u64,
    /// Amount limits.
    pub limits: Limits,
    /// Fees.
    pub fees: Fees,
}

/// The reverse pair a server with `policy` offers while a claim costs its client `claim_fee`.
pub fn reverse_pair(policy: &FeePolicy, claim_fee: Amount) -> ReversePair {
    let limits = Limits {
        maximal: invoice_for(policy, policy.max_amount).map_or(policy.max_amount.to_sat(), |a| a.to_sat()),
        minimal: invoice_for(policy, policy.min_amount).map_or(policy.min_amount.to_sat(), |a| a.to_sat()),
    };
    let fees = Fees {
        percentage: f64::from(policy.fee_ppm) / 10_000.0,
        miner_fees: MinerFees {
            claim: claim_fee.to_sat(),
            lockup: policy.base_fee.to_sat(),
        },
    };
    let charged = json!({"percentage": fees.percentage, "minerFees": {"lockup": fees.miner_fees.lockup}});
    let hashed = json!({"rate": 1, "fees": charged, "limits": limits}).to_string();
    ReversePair {
        hash: sha256::Hash::hash(hashed.as_bytes()).to_string(),
        rate: 1,
        limits,
        fees,
    }
}

/// `GET /v2/swap/reverse`'s body: the pairs by sending and receiving asset.
pub fn reverse_pairs_body(pair: &ReversePair) -> Value {
    json!({ ASSET: { ASSET: pair } })
}

/// What a pair charges, as both sides compute amounts from it: the proportional part in
/// parts per million of the invoice amount (rounded up) and the fixed part. The server reads it
/// from its policy; a client from a pair's `percentage` and fixed fee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charges {
    /// Proportional fee, ppm of the invoice amount (below 10⁶).
    pub ppm: u32,
    /// Fixed fee, sat.
    pub base: u64,
}

impl Charges {
    /// A server's charges.
    pub fn of(policy: &FeePolicy) -> Charges {
        Charges {
            ppm: policy.fee_ppm,
            base: policy.base_fee.to_sat(),
        }
    }

    /// The charges of a pair announcing `percentage` (percent of the invoice) and `base`
    /// sat; none when the percentage is not a whole number of ppm in 0..100 % (a client
    /// computes amounts exactly or not at all).
    pub fn of_pair(percentage: f64, base: u64) -> Option<Charges> {
        let ppm = percentage * 10_000.0;
        let whole = ppm.round();
        if !ppm.is_finite() || !(0.0..1_000_000.0).contains(&whole) || (ppm - whole).abs() > 1e-6 {
            return None;
        }
        // In range and whole: the cast is exact.
        Some(Charges {
            ppm: whole as u32,
            base,
        })
    }

    /// The proportional fee on an invoice of `invoice` sat, rounded up.
    pub fn percentage_fee(&self, invoice: u64) -> u64 {
        let fee = (u128::from(invoice) * u128::from(self.ppm)).div_ceil(1_000_000);
        u64::try_from(fee).unwrap_or(u64::MAX)
    }

    /// A reverse swap's on-chain amount for an invoice of `invoice` sat (0 when the fees take
    /// it all).
    pub fn reverse_onchain(&self, invoice: u64) -> u64 {
        invoice
            .saturating_sub(self.percentage_fee(invoice))
            .saturating_sub(self.base)
    }

    /// The invoice amount whose reverse swap puts exactly `onchain` sat on chain: the smallest
    /// `I` with `I − ceil(I·ppm/10⁶) − base ≥ onchain` (Boltz's
    /// `ceil((onchain + base) / (1 − pct))`).
    pub fn reverse_invoice_for(&self, onchain: u64) -> Option<u64> {
        let keep = 1_000_000u128.checked_sub(u128::from(self.ppm)).filter(|k| *k > 0)?;
        let need = u128::from(onchain) + u128::from(self.base);
        u64::try_from((need * 1_000_000).div_ceil(keep)).ok()
    }

    /// A submarine swap's `expectedAmount` for an invoice of `invoice` sat:
    /// `invoice + ceil(invoice·ppm/10⁶) + base`.
    pub fn submarine_expected(&self, invoice: u64) -> Option<u64> {
        invoice
            .checked_add(self.percentage_fee(invoice))?
            .checked_add(self.base)
    }

    /// The invoice amount whose submarine swap expects exactly `expected` sat, or — when no
    /// invoice amount does (rounding skips a value about every 10⁶/ppm sat) — the nearest
    /// expected amounts below and above that one can be had.
    pub fn submarine_invoice_for(&self, expected: u64) -> Result<u64, (u64, u64)> {
        let rest = expected.saturating_sub(self.base);
        let start = u128::from(rest) * 1_000_000 / (1_000_000 + u128::from(self.ppm));
        let mut invoice = u64::try_from(start).unwrap_or(u64::MAX).saturating_sub(2);
        // The proportional fee is below one sat off `start`'s: at most a few steps.
        while self
            .submarine_expected(invoice.saturating_add(1))
            .is_some_and(|e| e <= expected)
        {
            invoice += 1;
        }
        let above = self.submarine_expected(invoice.saturating_add(1)).unwrap_or(u64::MAX);
        // An invoice of nothing is no swap: below the smallest, 0 is named.
        match self.submarine_expected(invoice).filter(|_| invoice > 0) {
            Some(e) if e == expected => Ok(invoice),
            below => Err((below.unwrap_or(0), above)),
        }
    }
}

/// The proportional fee on an invoice of `invoice`, rounded up.
fn percentage_fee(policy: &FeePolicy, invoice: Amount) -> u64 {
    Charges::of(policy).percentage_fee(invoice.to_sat())
}

/// The invoice amount whose swap puts exactly `onchain` on chain ([`Charges::reverse_invoice_for`]).
fn invoice_for(policy: &FeePolicy, onchain: Amount) -> Option<Amount> {
    Charges::of(policy)
        .reverse_invoice_for(onchain.to_sat())
        .map(Amount::from_sat)
}

/// The amount asked for in a creation: the invoice's or what the client receives on chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReverseAmount {
    /// `invoiceAmount`: the client pays this; the on-chain amount follows.
    Invoice(Amount),
    /// `onchainAmount`: the HTLC holds this; the invoice amount follows.
    Onchain(Amount),
}

/// A reverse swap's amounts under `policy`: the HTLC value (`amount`), the server's fee and the
/// invoice amount (no prepay). The invoice amount must be within the pair's limits and leave at
/// least `min_onchain` on chain.
pub fn reverse_quote(
    policy: &FeePolicy,
    asked: ReverseAmount,
    min_onchain: Amount,
) -> Result<LoopOutQuote, BoltzError> {
    if policy.fee_ppm >= 1_000_000 {
        return Err(BoltzError::Amount("the server's fee takes the whole amount".into()));
    }
    let (invoice, onchain) = match asked {
        ReverseAmount::Invoice(i) => {
            let fee = percentage_fee(policy, i).saturating_add(policy.base_fee.to_sat());
            (i, i.to_sat().saturating_sub(fee))
        }
        ReverseAmount::Onchain(o) => {
            let i = invoice_for(policy, o).ok_or_else(|| BoltzError::Amount("amount overflow".into()))?;
            (i, o.to_sat())
        }
    };
    let (min, max) = (
        invoice_for(policy, policy.min_amount).unwrap_or(policy.min_amount),
        invoice_for(policy, policy.max_amount).unwrap_or(policy.max_amount),
    );
    if invoice < min || invoice > max {
        return Err(BoltzError::Amount(format!(
            "invoice amount {} sat is outside the limits {}..={} sat",
            invoice.to_sat(),
            min.to_sat(),
            max.to_sat()
        )));
    }
    let onchain = Amount::from_sat(onchain);
    if onchain < min_onchain {
        return Err(BoltzError::Amount(format!(
            "on-chain amount {} sat is below {} sat",
            onchain.to_sat(),
            min_onchain.to_sat()
        )));
    }
    Ok(LoopOutQuote {
        amount: onchain,
        swap_fee: invoice - onchain,
        prepay: Amount::ZERO,
        swap_invoice_amount: invoice,
    })
}

/// `POST /v2/swap/reverse`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReverseRequest {
    /// The hash of the client's preimage.
    pub preimage_hash: PaymentHash,
    /// The client's claim key.
    pub claim_key: PublicKey,
    /// The amount asked for.
    pub amount: ReverseAmount,
    /// The pair hash the client read, if it sent one.
    pub pair_hash: Option<String>,
    /// The invoice's description, if asked for.
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReverseRequestWire {
    from: String,
    to: String,
    preimage_hash: String,
    claim_public_key: Option<String>,
    invoice_amount: Option<Value>,
    onchain_amount: Option<Value>,
    pair_hash: Option<String>,
    description: Option<String>,
    description_hash: Option<String>,
    address: Option<String>,
    address_signature: Option<String>,
    claim_covenant: Option<bool>,
    invoice_expiry: Option<Value>,
}

fn sats(v: &Value, field: &'static str) -> Result<Amount, BoltzError> {
    v.as_u64()
        .or_else(|| v.as_f64().and_then(crate::api::sat::from_f64))
        .map(Amount::from_sat)
        .ok_or(BoltzError::Amount(format!(
            "{field} must be a whole, non-negative number of satoshis"
        )))
}

/// A JSON object body of type `T`; `shape` names its fields in the error (serde's own messages
/// quote the values they refuse, and a body may carry a preimage: never echoed).
fn object<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, BoltzError> {
    let malformed = || {
        BoltzError::from(ApiParseError::Malformed(format!(
            "the body must be a JSON object {shape}"
        )))
    };
    // JSON is UTF-8 throughout: serde skips an unknown field's string without checking it, so
    // the whole body is checked first (found by fuzzing).
    if std::str::from_utf8(body).is_err() {
        return Err(malformed());
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        _ => return Err(malformed()),
    }
    serde_json::from_slice(body).map_err(|_| malformed())
}

/// Parses `POST /v2/swap/reverse`'s body. Fields Boltz defines that Eddy does not serve (a
/// description hash, a BIP21 address with its signature, a covenant claim, a custom invoice
/// expiry) are refused by name rather than ignored.
pub fn parse_reverse_request(body: &[u8]) -> Result<ReverseRequest, BoltzError> {
    let w: ReverseRequestWire = object(
        body,
        "{from, to, preimageHash, claimPublicKey, invoiceAmount | onchainAmount, pairHash?, description?}",
    )?;
    if w.from != ASSET || w.to != ASSET {
        return Err(BoltzError::Pair(w.from, w.to));
    }
    let preimage_hash = PaymentHash::from_str(&w.preimage_hash).map_err(|_| ApiParseError::Hash("preimageHash"))?;
    let key = w.claim_public_key.ok_or(ApiParseError::Key("claimPublicKey"))?;
    let claim_key = crate::api::compressed_key(&key, "claimPublicKey")?;
    let amount = match (&w.invoice_amount, &w.onchain_amount) {
        (Some(i), None) => ReverseAmount::Invoice(sats(i, "invoiceAmount")?),
        (None, Some(o)) => ReverseAmount::Onchain(sats(o, "onchainAmount")?),
        (Some(_), Some(_)) => return Err(BoltzError::Amounts("invoice and onchain amount were specified")),
        (None, None) => return Err(BoltzError::Amounts("no amount was specified")),
    };
    if w.description_hash.is_some() {
        return Err(BoltzError::Unsupported("descriptionHash"));
    }
    if w.address.is_some() || w.address_signature.is_some() {
        return Err(BoltzError::Unsupported("address (a BIP21 routing hint)"));
    }
    if w.claim_covenant == Some(true) {
        return Err(BoltzError::Unsupported("claimCovenant"));
    }
    if w.invoice_expiry.is_some() {
        return Err(BoltzError::Unsupported("invoiceExpiry"));
    }
    if let Some(d) = &w.description {
        if d.len() > MAX_DESCRIPTION_BYTES || d.chars().any(char::is_control) {
            return Err(BoltzError::Amount(format!(
                "description must be at most {MAX_DESCRIPTION_BYTES} bytes without control characters"
            )));
        }
    }
    Ok(ReverseRequest {
        preimage_hash,
        claim_key,
        amount,
        pair_hash: w.pair_hash,
        description: w.description,
    })
}

/// `POST /v2/swap/reverse/{id}/claim`, parsed: the preimage, and the cooperative claim to
/// co-sign if the client sent one (its nonce, the transaction and the input's index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReverseClaimRequest {
    /// The swap's preimage (checked against the swap by the server).
    pub preimage: Preimage,
    /// The key-path claim to co-sign.
    pub cosign: Option<(PubNonceBytes, bitcoin::Transaction, usize)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReverseClaimWire {
    preimage: String,
    pub_nonce: Option<String>,
    transaction: Option<String>,
    index: Option<u64>,
}

/// Parses `POST /v2/swap/reverse/{id}/claim`'s body (`pubNonce`, `transaction` and `index`
/// come together or not at all).
pub fn parse_reverse_claim(body: &[u8]) -> Result<ReverseClaimRequest, BoltzError> {
    let w: ReverseClaimWire = object(body, "{preimage, pubNonce?, transaction?, index?}")?;
    let preimage = Preimage::from_hex(&w.preimage).map_err(|_| ApiParseError::Preimage)?;
    let cosign = match (w.pub_nonce, w.transaction, w.index) {
        (None, None, None) => None,
        (Some(n), Some(t), Some(i)) => {
            let nonce = submarine::nonce(&n)?;
            let tx = bitcoin::consensus::encode::deserialize_hex(&t).map_err(|_| ApiParseError::Tx)?;
            let index = usize::try_from(i).map_err(|_| BoltzError::Unsupported("an index that large"))?;
            Some((nonce, tx, index))
        }
        _ => {
            return Err(ApiParseError::Malformed("pubNonce, transaction and index go together".into()).into());
        }
    };
    Ok(ReverseClaimRequest { preimage, cosign })
}

#[derive(Deserialize)]
struct BroadcastWire {
    hex: String,
}

/// Parses `POST /v2/chain/BTC/transaction`'s body: `{"hex": …}`, a transaction.
pub fn parse_broadcast(body: &[u8]) -> Result<bitcoin::Transaction, BoltzError> {
    let w: BroadcastWire = object(body, "{hex}")?;
    Ok(bitcoin::consensus::encode::deserialize_hex(&w.hex).map_err(|_| ApiParseError::Tx)?)
}

/// A txid from a path (64 hex characters).
pub fn parse_txid(s: &str) -> Result<bitcoin::Txid, BoltzError> {
    Ok(bitcoin::Txid::from_str(s).map_err(|_| ApiParseError::Malformed("not a txid".into()))?)
}

/// The swap tree as Boltz serializes it: each leaf's version and script (hex).
pub fn swap_tree(htlc: &TaprootHtlc) -> Value {
    let leaf = |s: &bitcoin::ScriptBuf| json!({"version": 0xc0, "output": s.as_bytes().to_lower_hex_string()});
    json!({"claimLeaf": leaf(&htlc.claim_script), "refundLeaf": leaf(&htlc.refund_script)})
}

/// The Boltz status a loop-out in `state` shows (with a failure reason for the failed ones):
/// `lockup_confirmed` says whether the HTLC output is confirmed.
pub fn reverse_status(state: &State, lockup_confirmed: bool) -> (&'static str, Option<&'static str>) {
    let lockup = if lockup_confirmed {
        "transaction.confirmed"
    } else {
        "transaction.mempool"
    };
    match state {
        // Paid or not, nothing is on chain yet (Boltz has no status in between).
        State::Created { .. } | State::Publishing { .. } => ("swap.created", None),
        // The preimage is known; the invoice is being settled.
        State::Published { .. } | State::PreimageKnown { .. } => (lockup, None),
        State::Succeeded => ("invoice.settled", None),
        State::Refunding { .. } | State::Reclaiming | State::Refunded => {
            ("transaction.refunded", Some("onchain HTLC timed out"))
        }
        State::Canceled(CancelReason::PublicationDeadline) => ("invoice.expired", None),
        State::Canceled(_) => ("transaction.failed", Some("onchain coins could not be sent")),
        State::ClaimedUnsettled => ("invoice.expired", Some("the invoice could no longer be settled")),
        State::TimedOut => ("swap.expired", Some("onchain HTLC timed out")),
    }
}

/// A fresh swap id as Boltz gives them: 12 letters and digits, random (never derived from the
/// payment hash, which every node on the payment's route sees).
pub fn new_swap_id() -> String {
    use bitcoin::secp256k1::rand::{rngs::OsRng, Rng};
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = OsRng;
    (0..12)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// Whether `s` could be a swap id of [`new_swap_id`]'s shape (checked before any lookup).
pub fn is_swap_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The fee policy of the Boltz tests: 0.5 % and 1,000 sat, 10,000 to 1,000,000 sat.
    pub(super) fn policy() -> FeePolicy {
        FeePolicy {
            base_fee: Amount::from_sat(1_000),
            fee_ppm: 5_000,
            min_amount: Amount::from_sat(10_000),
            max_amount: Amount::from_sat(1_000_000),
            prepay: Amount::from_sat(1_000),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]
        /// A client's amounts from a pair agree with the server's: an exact submarine invoice
        /// amount is exact, and when none exists the neighbours named are the nearest that
        /// exist; a reverse invoice amount is the smallest that leaves the on-chain amount.
        #[test]
        fn charges_invert_exactly(ppm in 0u32..50_000, base in 0u64..5_000, target in 1u64..3_000_000, small in 0u64..6_000, pick_small: bool) {
            let c = Charges { ppm, base };
            // Amounts around the fixed fee too, where the smallest swaps are.
            let target = if pick_small { small.max(1) } else { target };
            match c.submarine_invoice_for(target) {
                Ok(i) => proptest::prop_assert_eq!(c.submarine_expected(i), Some(target)),
                Err((lo, hi)) => {
                    proptest::prop_assert!(lo < target && target < hi, "{lo} {target} {hi}");
                    // No invoice amount hits the target: the expected amount jumps over it.
                    let i = (0..=target).rev().find(|i| c.submarine_expected(*i).is_some_and(|e| e <= target));
                    if let Some(i) = i.filter(|i| *i > 0) {
                        proptest::prop_assert_eq!(c.submarine_expected(i), Some(lo));
                        proptest::prop_assert_eq!(c.submarine_expected(i + 1), Some(hi));
                    }
                }
            }
            let i = c.reverse_invoice_for(target).expect("below 100 %");
            proptest::prop_assert!(c.reverse_onchain(i) >= target);
            proptest::prop_assert!(i == 0 || c.reverse_onchain(i - 1) < target);
        }
    }

    #[test]
    fn pair_percentages_are_whole_ppm_or_refused() {
        assert_eq!(
            Charges::of_pair(0.5, 1_000),
            Some(Charges {
                ppm: 5_000,
                base: 1_000
            })
        );
        assert_eq!(Charges::of_pair(0.1, 0), Some(Charges { ppm: 1_000, base: 0 }));
        assert_eq!(Charges::of_pair(0.0, 7), Some(Charges { ppm: 0, base: 7 }));
        for bad in [-0.1, 100.0, 250.0, f64::NAN, f64::INFINITY, 0.00001] {
            assert_eq!(Charges::of_pair(bad, 0), None, "{bad}");
        }
    }

    /// Boltz's own worked numbers: an invoice of 100,000 at 0.5 % with a lockup fee of 1,000
    /// puts 98,500 on chain; asking for 98,500 on chain gives the same invoice back.
    #[test]
    fn amounts_follow_boltz_s_formulas_both_ways() {
        let p = policy();
        let q = reverse_quote(
            &p,
            ReverseAmount::Invoice(Amount::from_sat(100_000)),
            Amount::from_sat(330),
        )
        .expect("quote");
        assert_eq!(
            (q.amount.to_sat(), q.swap_fee.to_sat(), q.prepay),
            (98_500, 1_500, Amount::ZERO)
        );
        assert_eq!(q.swap_invoice_amount.to_sat(), 100_000);
        let back = reverse_quote(
            &p,
            ReverseAmount::Onchain(Amount::from_sat(98_500)),
            Amount::from_sat(330),
        )
        .expect("back");
        assert_eq!(back, q);
        // Rounding: the fee is never below the percentage (rounded up) plus the lockup fee, and
        // the invoice for an on-chain amount is the smallest that covers it.
        for o in [10_000u64, 12_345, 99_999, 777_777] {
            let q = reverse_quote(&p, ReverseAmount::Onchain(Amount::from_sat(o)), Amount::ZERO).expect("q");
            let i = q.swap_invoice_amount;
            assert_eq!(q.amount.to_sat(), o);
            assert!(q.swap_fee.to_sat() >= percentage_fee(&p, i) + 1_000, "{o}");
            let smaller = Amount::from_sat(i.to_sat() - 1);
            assert!(
                smaller.to_sat() - percentage_fee(&p, smaller) - 1_000 < o,
                "{o}: not the smallest"
            );
        }
        // Limits are on the invoice amount.
        let max = reverse_pair(&p, Amount::from_sat(111)).limits.maximal;
        assert!(reverse_quote(&p, ReverseAmount::Invoice(Amount::from_sat(max)), Amount::ZERO).is_ok());
        assert!(matches!(
            reverse_quote(&p, ReverseAmount::Invoice(Amount::from_sat(max + 1)), Amount::ZERO),
            Err(BoltzError::Amount(_))
        ));
    }

    #[test]
    fn the_pair_hash_changes_with_the_terms() {
        let p = policy();
        let a = reverse_pair(&p, Amount::from_sat(111));
        assert_eq!(a, reverse_pair(&p, Amount::from_sat(111)));
        // A new claim estimate keeps the hash; a new price changes it.
        assert_eq!(a.hash, reverse_pair(&p, Amount::from_sat(112)).hash);
        let dearer = FeePolicy { fee_ppm: 5_001, ..p };
        assert_ne!(a.hash, reverse_pair(&dearer, Amount::from_sat(111)).hash);
        let cheaper = FeePolicy {
            base_fee: Amount::from_sat(999),
            ..p
        };
        assert_ne!(a.hash, reverse_pair(&cheaper, Amount::from_sat(111)).hash);
        assert_eq!(a.fees.percentage, 0.5);
        let body = reverse_pairs_body(&a);
        assert_eq!(body["BTC"]["BTC"]["fees"]["minerFees"]["lockup"], json!(1_000));
        assert_eq!(body["BTC"]["BTC"]["limits"]["minimal"], json!(a.limits.minimal));
    }

    #[test]
    fn requests_are_parsed_strictly() {
        let key = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5";
        let hash = "aa".repeat(32);
        let ok = json!({"from": "BTC", "to": "BTC", "preimageHash": hash, "claimPublicKey": key, "invoiceAmount": 50_000, "referralId": "x"});
        let r = parse_reverse_request(ok.to_string().as_bytes()).expect("parses");
        assert_eq!(r.amount, ReverseAmount::Invoice(Amount::from_sat(50_000)));
        let with = |k: &str, v: Value| {
            let mut b = ok.clone();
            b[k] = v;
            parse_reverse_request(b.to_string().as_bytes())
        };
        assert!(matches!(with("to", json!("L-BTC")), Err(BoltzError::Pair(..))));
        assert!(matches!(with("onchainAmount", json!(1)), Err(BoltzError::Amounts(_))));
        assert!(with("invoiceAmount", json!(-5)).is_err());
        assert!(with("invoiceAmount", json!(1.5)).is_err());
        assert!(with("preimageHash", json!("abcd")).is_err());
        assert!(with("claimPublicKey", json!(&key[..64])).is_err());
        assert!(matches!(
            with("address", json!("bcrt1q…")),
            Err(BoltzError::Unsupported(_))
        ));
        assert!(with("description", json!("x".repeat(MAX_DESCRIPTION_BYTES + 1))).is_err());
        assert!(parse_reverse_request(b"[1,2]").is_err());
        // Invalid UTF-8, even in a field nobody reads, is not JSON (found by fuzzing): the same
        // body with a valid character there parses.
        let body = |c: &[u8]| {
            let mut b = format!(
                r#"{{"from":"BTC","to":"BTC","preimageHash":"{hash}","claimPublicKey":"{key}","invoiceAmount":50000,"dessription":""#
            )
            .into_bytes();
            b.extend_from_slice(c);
            b.extend_from_slice(br#""}"#);
            b
        };
        assert!(parse_reverse_request(&body(b"x")).is_ok());
        assert!(parse_reverse_request(&body(&[0xff])).is_err());
        let claim = json!({"preimage": "11".repeat(32)});
        let c = parse_reverse_claim(claim.to_string().as_bytes()).expect("claim");
        assert!(c.cosign.is_none());
        let half = json!({"preimage": "11".repeat(32), "pubNonce": "22".repeat(66)});
        assert!(parse_reverse_claim(half.to_string().as_bytes()).is_err());
        assert!(parse_reverse_claim(json!({"preimage": "11"}).to_string().as_bytes()).is_err());
    }

    #[test]
    fn txids_are_64_hex_characters() {
        let id = "ab".repeat(32);
        assert!(parse_txid(&id).is_ok());
        assert!(parse_txid(&id.to_ascii_uppercase()).is_ok());
        for bad in [
            &id[..63],
            &format!("{id}a"),
            &format!("{}zz", &id[..62]),
            "",
            "../../etc",
        ] {
            assert!(parse_txid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_are_boltz_s_names() {
        use bitcoin::hashes::Hash;
        let txid = bitcoin::Txid::all_zeros();
        assert_eq!(reverse_status(&State::new(), false).0, "swap.created");
        assert_eq!(
            reverse_status(&State::Published { txid }, false).0,
            "transaction.mempool"
        );
        assert_eq!(
            reverse_status(&State::Published { txid }, true).0,
            "transaction.confirmed"
        );
        assert_eq!(reverse_status(&State::Succeeded, true).0, "invoice.settled");
        assert_eq!(reverse_status(&State::Refunded, true).0, "transaction.refunded");
        assert_eq!(
            reverse_status(&State::Canceled(CancelReason::PublicationDeadline), false).0,
            "invoice.expired"
        );
        assert_eq!(
            reverse_status(&State::Canceled(CancelReason::HtlcRejected), false).0,
            "transaction.failed"
        );
        let id = new_swap_id();
        assert!(is_swap_id(&id) && id != new_swap_id());
        assert!(!is_swap_id("../../etc") && !is_swap_id(&"a".repeat(13)));
    }
}
