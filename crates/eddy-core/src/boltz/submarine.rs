//! Boltz API v2's submarine swaps (chain → Lightning: Eddy's loop-in, paying anyone's invoice)
//! as pure data: the pair (`GET /v2/swap/submarine`), the amount a swap expects on chain for an
//! invoice (Boltz's formula: the invoice amount, the percentage of it rounded up, and the fixed
//! fee Boltz calls `minerFees`), the requests as parsed from untrusted JSON (creation, the
//! client's half of the cooperative claim, the cooperative refund), the BIP21 link, and the
//! status names a loop-in's state shows as. `docs/boltz-api.md` says where Eddy's rules differ
//! from Boltz's.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::hex::FromHex;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Address, Amount, Denomination};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{object, BoltzError, ASSET};
use crate::api::ApiParseError;
use crate::fees::{FeePolicy, LoopInQuote};
use crate::musig::{PartialSigBytes, PubNonceBytes, PUB_NONCE_LEN};
use crate::sm::loop_in_server::{RefundReason, State};
use crate::types::PaymentHash;

/// The label of the BIP21 link a creation answers (Boltz's own text).
const BIP21_LABEL: &str = "Send%20to%20BTC%20lightning";

/// The submarine pair's limits (on the invoice amount, as Boltz applies them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmarineLimits {
    /// Largest invoice amount (sat).
    pub maximal: u64,
    /// Smallest invoice amount (sat).
    pub minimal: u64,
    /// Largest amount accepted unconfirmed: always 0, Eddy never pays against an unconfirmed
    /// lockup.
    #[serde(rename = "maximalZeroConf")]
    pub maximal_zero_conf: u64,
}

/// The submarine pair's fees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmarineFees {
    /// The proportional part, in percent of the invoice amount.
    pub percentage: f64,
    /// The fixed part (sat): Boltz's name for it is the miner fee of its claim, which the
    /// server pays out of it.
    #[serde(rename = "minerFees")]
    pub miner_fees: u64,
}

/// One pair of `GET /v2/swap/submarine`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmarinePair {
    /// Hex SHA-256 of the pair's terms: a creation naming another hash is refused.
    pub hash: String,
    /// Always 1 (BTC to BTC).
    pub rate: u64,
    /// Amount limits.
    pub limits: SubmarineLimits,
    /// Fees.
    pub fees: SubmarineFees,
}

/// The submarine pair a server with `policy` offers.
pub fn submarine_pair(policy: &FeePolicy) -> SubmarinePair {
    let limits = SubmarineLimits {
        maximal: policy.max_amount.to_sat(),
        minimal: policy.min_amount.to_sat(),
        maximal_zero_conf: 0,
    };
    let fees = SubmarineFees {
        percentage: f64::from(policy.fee_ppm) / 10_000.0,
        miner_fees: policy.base_fee.to_sat(),
    };
    let hashed = json!({"rate": 1, "fees": fees, "limits": limits}).to_string();
    SubmarinePair {
        hash: sha256::Hash::hash(hashed.as_bytes()).to_string(),
        rate: 1,
        limits,
        fees,
    }
}

/// `GET /v2/swap/submarine`'s body: the pairs by sending and receiving asset.
pub fn submarine_pairs_body(pair: &SubmarinePair) -> Value {
    json!({ ASSET: { ASSET: pair } })
}

/// What a submarine swap paying an invoice of `invoice` sat costs: Boltz's `expectedAmount` =
/// `invoice + ceil(invoice × ppm / 10⁶) + base` (the percentage on the invoice amount, rounded
/// up). The limits apply to the invoice amount.
pub fn submarine_quote(policy: &FeePolicy, invoice: Amount) -> Result<LoopInQuote, BoltzError> {
    if invoice < policy.min_amount || invoice > policy.max_amount {
        return Err(BoltzError::Amount(format!(
            "invoice amount {} sat is outside the limits {}..={} sat",
            invoice.to_sat(),
            policy.min_amount.to_sat(),
            policy.max_amount.to_sat()
        )));
    }
    let overflow = || BoltzError::Amount("amount overflow".into());
    let swap_fee = super::percentage_fee(policy, invoice)
        .checked_add(policy.base_fee.to_sat())
        .map(Amount::from_sat)
        .ok_or_else(overflow)?;
    let amount = invoice.checked_add(swap_fee).ok_or_else(overflow)?;
    Ok(LoopInQuote {
        amount,
        swap_fee,
        invoice_amount: invoice,
    })
}

/// The BIP21 link a wallet pays the lockup with.
pub fn bip21(address: &Address, amount: Amount) -> String {
    format!(
        "bitcoin:{address}?amount={}&label={BIP21_LABEL}",
        amount.display_in(Denomination::Bitcoin)
    )
}

/// What a submarine swap is made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmarineFor {
    /// The invoice to pay (checked by the server: network, amount, expiry, final CLTV).
    Invoice(String),
    /// The hash of an invoice set later (`POST /v2/swap/submarine/{id}/invoice`).
    Hash(PaymentHash),
}

/// `POST /v2/swap/submarine`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmarineRequest {
    /// The invoice, or its hash.
    pub made_for: SubmarineFor,
    /// The client's refund key.
    pub refund_key: PublicKey,
    /// The pair hash the client read, if it sent one.
    pub pair_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubmarineRequestWire {
    from: String,
    to: String,
    invoice: Option<String>,
    preimage_hash: Option<String>,
    refund_public_key: Option<String>,
    pair_hash: Option<String>,
    webhook: Option<Value>,
}

/// Longest invoice a creation may carry (characters): BOLT11 invoices with many route hints
/// stay far below it.
pub const MAX_INVOICE_CHARS: usize = 4_096;

/// An invoice from a request, at most [`MAX_INVOICE_CHARS`] long.
fn bounded_invoice(invoice: String) -> Result<String, BoltzError> {
    if invoice.len() > MAX_INVOICE_CHARS {
        return Err(ApiParseError::Malformed(format!("invoice longer than {MAX_INVOICE_CHARS} characters")).into());
    }
    Ok(invoice)
}

/// Parses `POST /v2/swap/submarine`'s body: a swap for an invoice, or (Boltz's `preimageHash`)
/// for the hash of one set later; not both. Webhooks are refused by name.
pub fn parse_submarine_request(body: &[u8]) -> Result<SubmarineRequest, BoltzError> {
    let w: SubmarineRequestWire = object(body, "{from, to, invoice | preimageHash, refundPublicKey, pairHash?}")?;
    if w.from != ASSET || w.to != ASSET {
        return Err(BoltzError::Pair(w.from, w.to));
    }
    if w.webhook.is_some() {
        return Err(BoltzError::Unsupported("webhook"));
    }
    let made_for = match (w.invoice, w.preimage_hash) {
        (Some(i), None) => SubmarineFor::Invoice(bounded_invoice(i)?),
        (None, Some(h)) => SubmarineFor::Hash(PaymentHash(
            <[u8; 32]>::from_hex(&h).map_err(|_| ApiParseError::Malformed("invalid preimage hash length".into()))?,
        )),
        (Some(_), Some(_)) => {
            return Err(ApiParseError::Malformed("invoice and preimageHash were specified".into()).into())
        }
        (None, None) => return Err(ApiParseError::Malformed("undefined parameter: invoice".into()).into()),
    };
    let key = w.refund_public_key.ok_or(ApiParseError::Key("refundPublicKey"))?;
    let refund_key = crate::api::compressed_key(&key, "refundPublicKey")?;
    Ok(SubmarineRequest {
        made_for,
        refund_key,
        pair_hash: w.pair_hash,
    })
}

/// `POST /v2/swap/submarine/{id}/invoice`, parsed: the invoice and the pair hash the client
/// read, if it sent one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetInvoice {
    /// The invoice (its hash must be the swap's).
    pub invoice: String,
    /// The pair hash.
    pub pair_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetInvoiceWire {
    invoice: Option<String>,
    pair_hash: Option<String>,
}

/// Parses `POST /v2/swap/submarine/{id}/invoice`'s body.
pub fn parse_set_invoice(body: &[u8]) -> Result<SetInvoice, BoltzError> {
    let w: SetInvoiceWire = object(body, "{invoice, pairHash?}")?;
    let invoice = w
        .invoice
        .ok_or_else(|| ApiParseError::Malformed("undefined parameter: invoice".into()))?;
    Ok(SetInvoice {
        invoice: bounded_invoice(invoice)?,
        pair_hash: w.pair_hash,
    })
}

/// A MuSig2 public nonce in hex (66 bytes), as `/v1` reads one.
pub(super) fn nonce(hex: &str) -> Result<PubNonceBytes, ApiParseError> {
    <[u8; PUB_NONCE_LEN]>::from_hex(hex).map_err(|_| ApiParseError::Nonce)
}

/// The client's half of a submarine swap's cooperative claim (`POST
/// /v2/swap/submarine/{id}/claim`): its nonce and partial signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimSignature {
    /// The client's MuSig2 nonce.
    pub nonce: PubNonceBytes,
    /// The client's partial signature.
    pub partial: PartialSigBytes,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimSignatureWire {
    pub_nonce: String,
    partial_signature: String,
}

/// Parses `POST /v2/swap/submarine/{id}/claim`'s body.
pub fn parse_claim_signature(body: &[u8]) -> Result<ClaimSignature, BoltzError> {
    let w: ClaimSignatureWire = object(body, "{pubNonce, partialSignature}")?;
    let partial = <[u8; 32]>::from_hex(&w.partial_signature).map_err(|_| ApiParseError::PartialSig)?;
    Ok(ClaimSignature {
        nonce: nonce(&w.pub_nonce)?,
        partial,
    })
}

/// A cooperative refund to co-sign (`POST /v2/swap/submarine/{id}/refund`): the client's
/// nonce, the refund and the index of the swap's input in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRequest {
    /// The client's MuSig2 nonce.
    pub nonce: PubNonceBytes,
    /// The refund.
    pub transaction: bitcoin::Transaction,
    /// The swap's input.
    pub index: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefundRequestWire {
    pub_nonce: String,
    transaction: String,
    index: u64,
}

/// Parses `POST /v2/swap/submarine/{id}/refund`'s body.
pub fn parse_refund_request(body: &[u8]) -> Result<RefundRequest, BoltzError> {
    let w: RefundRequestWire = object(body, "{pubNonce, transaction, index}")?;
    let transaction = bitcoin::consensus::encode::deserialize_hex(&w.transaction).map_err(|_| ApiParseError::Tx)?;
    Ok(RefundRequest {
        nonce: nonce(&w.pub_nonce)?,
        transaction,
        index: usize::try_from(w.index).map_err(|_| BoltzError::Unsupported("an index that large"))?,
    })
}

/// What the chain shows of a submarine swap's lockup, as far as its status goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lockup {
    /// No output to the lockup address seen.
    None,
    /// In the mempool.
    Mempool,
    /// Confirmed.
    Confirmed,
}

/// The Boltz status a server loop-in in `state` shows, with a failure reason for the failed
/// ones (a lockup of the wrong amount is named by the caller, which knows both amounts).
/// `claim_confirmed`: one of the server's claims has a confirmation — Boltz's
/// `transaction.claimed`, although Eddy's swap ends only once the claim is buried
/// ([`crate::sm::SWEEP_FINAL_CONFS`]).
pub fn submarine_status(state: &State, lockup: Lockup, claim_confirmed: bool) -> (&'static str, Option<&'static str>) {
    match state {
        State::Created => match lockup {
            Lockup::None => ("invoice.set", None),
            Lockup::Mempool => ("transaction.mempool", None),
            Lockup::Confirmed => ("transaction.confirmed", None),
        },
        State::Paying { .. } => ("invoice.pending", None),
        // Paid: the client is asked to co-sign the claim (and the script path follows).
        State::Claiming { .. } if claim_confirmed => ("transaction.claimed", None),
        State::Claiming { .. } => ("transaction.claim.pending", None),
        State::Succeeded => ("transaction.claimed", None),
        State::Refundable(RefundReason::PaymentFailed) => ("invoice.failedToPay", Some("invoice could not be paid")),
        State::Refundable(RefundReason::Underpaid | RefundReason::Overpaid) => ("transaction.lockupFailed", None),
        State::Refundable(RefundReason::TooLate) => ("swap.expired", Some("lockup confirmed too late to pay")),
        State::Refundable(RefundReason::ClientRefund) => ("swap.expired", Some("refund requested by the client")),
        State::Refunded => ("transaction.refunded", None),
        State::Expired => ("swap.expired", Some("onchain HTLC timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::boltz::tests::policy;

    /// Boltz's formula: 100,000 sat at 0.5 % plus 1,000 expects 101,500 on chain; the
    /// percentage rounds up; the limits are on the invoice amount.
    #[test]
    fn the_expected_amount_is_boltz_s() {
        let p = policy();
        let q = submarine_quote(&p, Amount::from_sat(100_000)).expect("quote");
        assert_eq!(
            (q.amount.to_sat(), q.swap_fee.to_sat(), q.invoice_amount.to_sat()),
            (101_500, 1_500, 100_000)
        );
        let odd = submarine_quote(&p, Amount::from_sat(10_001)).expect("odd");
        assert_eq!(odd.swap_fee.to_sat(), 1_000 + 51, "ceil(50.005)");
        assert!(submarine_quote(&p, Amount::from_sat(1_000_000)).is_ok());
        assert!(submarine_quote(&p, Amount::from_sat(1_000_001)).is_err());
        assert!(submarine_quote(&p, Amount::from_sat(9_999)).is_err());
        let pair = submarine_pair(&p);
        assert_eq!(pair.limits.maximal_zero_conf, 0);
        let body = submarine_pairs_body(&pair);
        assert_eq!(body["BTC"]["BTC"]["fees"]["minerFees"], json!(1_000));
        assert_eq!(body["BTC"]["BTC"]["fees"]["percentage"], json!(0.5));
        assert_ne!(pair.hash, submarine_pair(&FeePolicy { fee_ppm: 5_001, ..p }).hash);
    }

    #[test]
    fn requests_are_parsed_strictly() {
        let key = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5";
        let ok =
            json!({"from": "BTC", "to": "BTC", "invoice": "lnbcrt1...", "refundPublicKey": key, "referralId": "x"});
        let r = parse_submarine_request(ok.to_string().as_bytes()).expect("parses");
        assert_eq!(r.made_for, SubmarineFor::Invoice("lnbcrt1...".into()));
        let with = |k: &str, v: Value| {
            let mut b = ok.clone();
            b[k] = v;
            parse_submarine_request(b.to_string().as_bytes())
        };
        assert!(matches!(with("from", json!("L-BTC")), Err(BoltzError::Pair(..))));
        assert!(matches!(
            with("webhook", json!({"url": "https://x"})),
            Err(BoltzError::Unsupported(_))
        ));
        assert!(with("refundPublicKey", json!(&key[..64])).is_err());
        assert!(with("invoice", json!("l".repeat(MAX_INVOICE_CHARS + 1))).is_err());
        let mut only_hash = ok.clone();
        only_hash.as_object_mut().expect("object").remove("invoice");
        only_hash["preimageHash"] = json!("aa".repeat(32));
        assert_eq!(
            parse_submarine_request(only_hash.to_string().as_bytes()).map(|r| r.made_for),
            Ok(SubmarineFor::Hash(PaymentHash([0xaa; 32])))
        );
        only_hash["preimageHash"] = json!("aa".repeat(31));
        assert!(parse_submarine_request(only_hash.to_string().as_bytes()).is_err());
        assert!(with("preimageHash", json!("aa".repeat(32))).is_err(), "both");
        let set = json!({"invoice": "lnbcrt1...", "pairHash": "00"});
        assert_eq!(
            parse_set_invoice(set.to_string().as_bytes()),
            Ok(SetInvoice {
                invoice: "lnbcrt1...".into(),
                pair_hash: Some("00".into())
            })
        );
        assert!(parse_set_invoice(b"{}").is_err());
        assert!(parse_set_invoice(
            json!({"invoice": "l".repeat(MAX_INVOICE_CHARS + 1)})
                .to_string()
                .as_bytes()
        )
        .is_err());
        assert!(parse_submarine_request(b"{\"from\":\"BTC\"").is_err());
        let sig = json!({"pubNonce": "02".repeat(66), "partialSignature": "11".repeat(32)});
        assert!(parse_claim_signature(sig.to_string().as_bytes()).is_ok());
        let short = json!({"pubNonce": "02".repeat(65), "partialSignature": "11".repeat(32)});
        assert!(parse_claim_signature(short.to_string().as_bytes()).is_err());
        let refund = json!({"pubNonce": "02".repeat(66), "transaction": "00", "index": 0});
        assert!(
            parse_refund_request(refund.to_string().as_bytes()).is_err(),
            "not a transaction"
        );
    }

    #[test]
    fn statuses_are_boltz_s_names() {
        use std::str::FromStr;
        let outpoint = bitcoin::OutPoint::null();
        assert_eq!(submarine_status(&State::Created, Lockup::None, false).0, "invoice.set");
        assert_eq!(
            submarine_status(&State::Created, Lockup::Mempool, false).0,
            "transaction.mempool"
        );
        assert_eq!(
            submarine_status(&State::Created, Lockup::Confirmed, false).0,
            "transaction.confirmed"
        );
        assert_eq!(
            submarine_status(&State::paying(outpoint), Lockup::Confirmed, false).0,
            "invoice.pending"
        );
        let claiming = State::Claiming {
            outpoint,
            preimage: crate::types::Preimage::from_bytes([1; 32]),
            cooperative_until: None,
        };
        assert_eq!(
            submarine_status(&claiming, Lockup::Confirmed, false).0,
            "transaction.claim.pending"
        );
        assert_eq!(
            submarine_status(&claiming, Lockup::Confirmed, true).0,
            "transaction.claimed"
        );
        assert_eq!(
            submarine_status(&State::Succeeded, Lockup::Confirmed, false).0,
            "transaction.claimed"
        );
        assert_eq!(
            submarine_status(
                &State::Refundable(RefundReason::PaymentFailed),
                Lockup::Confirmed,
                false
            )
            .0,
            "invoice.failedToPay"
        );
        assert_eq!(
            submarine_status(&State::Refundable(RefundReason::Underpaid), Lockup::Confirmed, false).0,
            "transaction.lockupFailed"
        );
        assert_eq!(submarine_status(&State::Expired, Lockup::None, false).0, "swap.expired");
        let addr = Address::from_str("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080")
            .expect("addr")
            .assume_checked();
        assert_eq!(
            bip21(&addr, Amount::from_sat(101_500)),
            format!("bitcoin:{addr}?amount=0.001015&label=Send%20to%20BTC%20lightning")
        );
    }
}
