//! The swap server's HTTP API on the wire: every request and answer body, query and error body
//! of `eddy-server`'s public API (with their OpenAPI schemas), and one pure parser per request
//! — `bytes/str → Result<domain type, ApiParseError>` — doing exactly what the server's handler
//! does before it asks the engine. It lives here, away from axum and the engine, so the parsers
//! of untrusted input can be fuzzed and tested alone, and so a client can share the types.
//!
//! The parsers never echo a preimage, and every [`ApiParseError`] is a client error (the server
//! answers it with 400 and changes nothing). What needs the server's state (amount ranges from
//! its terms, whether a swap exists, signatures) is checked by the server after parsing.

use core::str::FromStr;

use bitcoin::hashes::Hash;
use bitcoin::hex::{DisplayHex, FromHex};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::musig::{PartialSigBytes, PubNonceBytes, PUB_NONCE_LEN};
use crate::types::{Network, PaymentHash, Preimage, SwapId};
use crate::validate::{LoopInCreate, LoopOutCreate};

/// Why a request was refused before anything was asked of the engine (always a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiParseError {
    /// The body is not JSON, or not of the request's shape.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The query string is not of the endpoint's shape.
    #[error("malformed query: {0}")]
    MalformedQuery(String),
    /// The path's id is not a swap id (64 hex characters).
    #[error("not a swap id: {0:?}")]
    NotASwapId(String),
    /// A preimage that is not 32 bytes of hex (never echoed).
    #[error("preimage must be 32 bytes of hex")]
    Preimage,
    /// A MuSig2 public nonce that is not 66 bytes of hex.
    #[error("nonce must be 66 bytes of hex")]
    Nonce,
    /// A partial signature that is not 32 bytes of hex.
    #[error("partial_sig must be 32 bytes of hex")]
    PartialSig,
    /// A transaction that does not decode.
    #[error("tx is not a transaction")]
    Tx,
    /// Seed 000's `htlcClaimAddress` that does not parse.
    #[error("htlcClaimAddress is not an address: {0}")]
    SeedAddress(String),
    /// Seed 000's `htlcClaimAddress` of another network.
    #[error("htlcClaimAddress is not a {0} address")]
    SeedNetwork(Network),
    /// Seed 000's `htlcClaimAddress` that is not P2WPKH.
    #[error("htlcClaimAddress must be a P2WPKH address")]
    SeedNotP2wpkh,
    /// Seed 000's `hash` that is not 32 bytes of hex.
    #[error("hash must be 32 bytes of hex")]
    SeedHash,
    /// A payment hash that is not 32 bytes of hex.
    #[error("{0} must be 32 bytes of hex")]
    Hash(&'static str),
    /// A public key that is not a compressed point (66 hex characters starting `02` or `03`,
    /// on the curve).
    #[error("{0} must be a compressed public key (66 hex characters, 02… or 03…, on the curve)")]
    Key(&'static str),
    /// A batch co-signing request whose input index or prevouts do not fit its transaction.
    #[error("{0}")]
    Batch(&'static str),
}

impl ApiParseError {
    /// Whether the request was malformed (not JSON, not the shape) rather than well-formed
    /// but invalid (the server counts the two apart).
    pub fn is_malformed(&self) -> bool {
        matches!(self, ApiParseError::Malformed(_) | ApiParseError::MalformedQuery(_))
    }
}

/// `pattern` of a swap id or a payment hash: 32 bytes of hex.
pub const HEX32_PATTERN: &str = "^[0-9a-fA-F]{64}$";
/// `pattern` of a compressed public key: 33 bytes of hex starting `02` or `03`.
pub const KEY_PATTERN: &str = "^0[23][0-9a-fA-F]{64}$";
/// `pattern` of a MuSig2 public nonce: 66 bytes of hex.
pub const NONCE_PATTERN: &str = "^[0-9a-fA-F]{132}$";
/// `pattern` of a serialized transaction: bytes of hex.
pub const TX_PATTERN: &str = "^([0-9a-fA-F]{2})+$";
/// `pattern` of an outpoint: `txid:vout`.
pub const OUTPOINT_PATTERN: &str = "^[0-9a-f]{64}:[0-9]+$";

/// Satoshi amounts as the API reads them: a JSON integer, or a JSON number with no fractional
/// part (`50000.0`, `5e4`: JSON Schema's `integer` admits them, and so does the API; a string
/// is not a number), or, in a query string, the same written out. Negative, fractional, non-finite and larger than
/// 2^53 − 1 (past which a float is no longer exact; far above 21 million BTC) are refused.
pub mod sat {
    use core::fmt;

    /// The largest amount a float may carry exactly (2^53 − 1).
    pub const MAX_FLOAT_EXACT: u64 = (1 << 53) - 1;

    /// An amount from a float, if it is a whole, non-negative, exact number of satoshis.
    pub fn from_f64(f: f64) -> Option<u64> {
        (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= MAX_FLOAT_EXACT as f64).then_some(f as u64)
    }

    /// An amount from text: digits, or a decimal or exponent number with no fractional part.
    pub fn from_str(s: &str) -> Option<u64> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().ok();
        }
        // Only what JSON would write (no `inf`, `nan`, `+`, hex).
        let json_like = s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-'));
        if !json_like || s.starts_with('-') {
            return None;
        }
        s.parse::<f64>().ok().and_then(from_f64)
    }

    /// `#[serde(deserialize_with = "eddy_core::api::sat::deserialize")]` on a `u64` of sats.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(Sats)
    }

    struct Sats;

    const EXPECTED: &str = "a whole, non-negative number of satoshis";

    impl serde::de::Visitor<'_> for Sats {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTED)
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &EXPECTED))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u64, E> {
            from_f64(v).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Float(v), &EXPECTED))
        }
    }
}

/// What `GET /v1/terms` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Terms {
    /// Network name.
    #[schema(pattern = "^(bitcoin|testnet|testnet4|signet|regtest)$")]
    pub network: String,
    /// Smallest loop-out.
    pub min_amount_sat: u64,
    /// Largest loop-out.
    pub max_amount_sat: u64,
    /// Fixed fee.
    pub base_fee_sat: u64,
    /// Proportional fee (ppm).
    pub fee_ppm: u32,
    /// Prepay.
    pub prepay_sat: u64,
    /// `E − tip` at creation.
    pub expiry_delta: u32,
}

/// A swap's state as the server's API names it ([`SwapStatus::state`]): the state names of the
/// server's two machines (loop-out: `created` … `claimed_unsettled`; loop-in: `created`,
/// `paying`, `claiming`, `refundable`, …). A test pins every machine state to its name here, so
/// renaming a state can never silently change what clients read; a name an older client does
/// not know reads as [`SwapState::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SwapState {
    /// Loop-out: offered, invoices not (all) paid. Loop-in: offered, not (yet) funded.
    Created,
    /// Loop-out: paid; the HTLC is being published.
    Publishing,
    /// Loop-out: the HTLC is published.
    Published,
    /// Loop-out: past the timeout, the server refunds the HTLC.
    Refunding,
    /// Loop-out: the server knows the preimage and settles.
    PreimageKnown,
    /// Loop-out: the preimage came too late to be paid for; the server refunds.
    Reclaiming,
    /// Loop-out: claimed on chain, the swap invoice no longer settleable.
    ClaimedUnsettled,
    /// Loop-out: no publication inside its window.
    TimedOut,
    /// Loop-out: canceled before publication (invoices returned).
    Canceled,
    /// Loop-in: funded; the server pays the client's invoice.
    Paying,
    /// Loop-in: paid; the server claims the HTLC (a cooperative claim is offered).
    Claiming,
    /// Loop-in: failed; the server co-signs the client's refund.
    Refundable,
    /// Loop-in: the client never funded in time.
    Expired,
    /// Done: both sides paid.
    Succeeded,
    /// Done: the HTLC went back.
    Refunded,
    /// A state this client does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl SwapState {
    /// The state named `name` (a server machine's state name).
    pub fn from_name(name: &str) -> SwapState {
        serde_json::from_value(serde_json::Value::String(name.to_string())).unwrap_or(SwapState::Unknown)
    }
}

/// How a server refused a call, from the status it answered: the wire's one taxonomy of
/// refusals (the body says what in words: [`ErrorBody`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is wrong (malformed, out of range, not allowed now).
    BadRequest,
    /// 401: missing or bad per-swap signature, or no such swap (a stranger cannot tell).
    Unauthorized,
    /// 404: no such swap or route.
    NotFound,
    /// 409: a swap for this payment hash exists.
    Conflict,
    /// 413: the body is larger than the server reads.
    TooLarge,
    /// 429: over a per-client limit; retry after a minute.
    TooManyRequests,
    /// 503: the server cannot take it now, or a backend failed; retry later.
    Unavailable,
    /// Any other status.
    Other(u16),
}

impl ErrorKind {
    /// The kind of an answer with HTTP status `status`.
    pub fn of_status(status: u16) -> ErrorKind {
        match status {
            400 => ErrorKind::BadRequest,
            401 => ErrorKind::Unauthorized,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            413 => ErrorKind::TooLarge,
            429 => ErrorKind::TooManyRequests,
            503 => ErrorKind::Unavailable,
            other => ErrorKind::Other(other),
        }
    }
}

/// What a client's call to the server got instead of its answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiCallError {
    /// The server answered an error status (`status` is its line: "400 Bad Request").
    #[error("server answered {status}: {message}")]
    Answered {
        /// The refusal's kind.
        kind: ErrorKind,
        /// The status line.
        status: String,
        /// The body's `error`.
        message: String,
    },
    /// No connection (refused, DNS, TLS).
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// No answer in time.
    #[error("server did not answer in time: {0}")]
    Timeout(String),
    /// The request failed otherwise.
    #[error("server request failed: {0}")]
    Failed(String),
    /// An answer that is not of the endpoint's shape.
    #[error("unreadable answer: {0}")]
    Unreadable(String),
    /// The server does not offer this call (an adapter without it).
    #[error("not offered by this server: {0}")]
    NotOffered(&'static str),
    /// This client refused what the server answered (or cannot put the request to it): an
    /// answer that contradicts the request, or terms under which no exact amount exists.
    #[error("refused by this client: {0}")]
    Refused(String),
}

impl ApiCallError {
    /// The HTTP status the server answered, if it answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiCallError::Answered { status, .. } => status.get(..3).and_then(|c| c.parse().ok()),
            _ => None,
        }
    }
}

/// What `GET /v1/swaps/{id}` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SwapStatus {
    /// The swap id.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub id: String,
    /// The state.
    pub state: SwapState,
    /// Whether it is final.
    pub terminal: bool,
    /// HTLC expiry height.
    pub expiry: u32,
    /// The HTLC output (`txid:vout`), once published.
    #[schema(pattern = "^[0-9a-f]{64}:[0-9]+$")]
    pub htlc_outpoint: Option<String>,
}

/// Body of `POST /v1/swaps/{id}/preimage`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PreimageBody {
    /// The preimage, 32 bytes hex.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub preimage: String,
}

/// Body of `POST /v1/swaps/{id}/cosign` and `POST /v1/swaps/{id}/refund-cosign`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CosignRequest {
    /// The client's MuSig2 public nonce, 66 bytes hex.
    #[schema(pattern = "^[0-9a-fA-F]{132}$")]
    pub nonce: String,
    /// The unsigned claim (or refund) transaction, hex.
    #[schema(pattern = "^([0-9a-fA-F]{2})+$")]
    pub tx: String,
    /// The input to co-sign (`/cosign` only; default 0): a client's batched claim spends
    /// several swaps' HTLCs and asks for each input in turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 99)]
    pub index: Option<u32>,
    /// Every input's prevout, in input order (`/cosign` only): required when `tx` has more than
    /// one input (the taproot message commits to them all); the server checks its own HTLC's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100)]
    pub prevouts: Option<Vec<Prevout>>,
}

/// An output a transaction's input spends.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Prevout {
    /// Its value in satoshis.
    pub value_sat: u64,
    /// Its script, hex (at most 100 bytes).
    #[schema(pattern = "^([0-9a-fA-F]{2}){1,100}$")]
    pub script_pubkey: String,
}

impl From<&bitcoin::TxOut> for Prevout {
    fn from(o: &bitcoin::TxOut) -> Self {
        Prevout {
            value_sat: o.value.to_sat(),
            script_pubkey: o.script_pubkey.to_hex_string(),
        }
    }
}

/// A co-signing request for one input of a (possibly batched) transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignAsk {
    /// The asker's MuSig2 public nonce.
    pub nonce: PubNonceBytes,
    /// The unsigned transaction.
    pub tx: bitcoin::Transaction,
    /// The input to co-sign.
    pub index: usize,
    /// Every input's prevout (`None`: a one-input transaction; the server knows its own).
    pub prevouts: Option<Vec<bitcoin::TxOut>>,
}

/// Answer of `POST /v1/swaps/{id}/cosign` and `POST /v1/swaps/{id}/refund-cosign`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CosignResponse {
    /// The server's public nonce, 66 bytes hex.
    #[schema(pattern = "^[0-9a-f]{132}$")]
    pub nonce: String,
    /// The server's partial signature, 32 bytes hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub partial_sig: String,
}

impl From<(PubNonceBytes, PartialSigBytes)> for CosignResponse {
    fn from((nonce, partial): (PubNonceBytes, PartialSigBytes)) -> Self {
        CosignResponse {
            nonce: nonce.to_lower_hex_string(),
            partial_sig: partial.to_lower_hex_string(),
        }
    }
}

/// `GET /v1/swaps/{id}/claim` answer: the cooperative claim offered to a loop-in client.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimOffer {
    /// The server's MuSig2 public nonce, 66 bytes hex.
    #[schema(pattern = "^[0-9a-f]{132}$")]
    pub nonce: String,
    /// The unsigned claim, hex: the server's claim of several loop-ins at once (issue 17),
    /// this swap's HTLC spent on the key path by input `index`.
    #[schema(pattern = "^([0-9a-f]{2})+$")]
    pub tx: String,
    /// The input to co-sign (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 99)]
    pub index: Option<u32>,
    /// Every input's prevout, in input order (the taproot message commits to them all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100)]
    pub prevouts: Option<Vec<Prevout>>,
}

/// A claim offer as read by a loop-in client: the server's nonce, the transaction, the input to
/// co-sign and every input's prevout (`None`: a one-input claim offered without them).
pub type ClaimOfferParts = (PubNonceBytes, bitcoin::Transaction, usize, Option<Vec<bitcoin::TxOut>>);

/// `GET /v1/swaps/{id}/claim`'s answer as a client reads it: the same shape rules as a
/// co-signing request's transaction, input and prevouts ([`cosign_ask`]).
pub fn parse_claim_offer(offer: &ClaimOffer) -> Result<ClaimOfferParts, ApiParseError> {
    let nonce = <[u8; PUB_NONCE_LEN]>::from_hex(&offer.nonce).map_err(|_| ApiParseError::Nonce)?;
    let tx: bitcoin::Transaction =
        bitcoin::consensus::encode::deserialize_hex(&offer.tx).map_err(|_| ApiParseError::Tx)?;
    let (index, prevouts) = batch_input(&tx, offer.index, offer.prevouts.clone())?;
    Ok((nonce, tx, index, prevouts))
}

/// Body of `POST /v1/swaps/{id}/claim-cosign`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimCosign {
    /// The client's MuSig2 public nonce, 66 bytes hex.
    #[schema(pattern = "^[0-9a-fA-F]{132}$")]
    pub nonce: String,
    /// The client's partial signature, 32 bytes hex.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub partial_sig: String,
}

/// The loop-out request as it travels (schema of [`LoopOutCreate`]; a test checks the field
/// names match what the type serializes).
#[derive(ToSchema)]
#[schema(as = LoopOutCreate)]
#[allow(dead_code)]
pub struct LoopOutCreateDoc {
    /// HTLC amount in satoshis (a number with no fractional part; range: the server's terms).
    amount: u64,
    /// sha256 of the client's preimage, 32 bytes hex.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    payment_hash: String,
    /// The client's claim key, compressed public key hex.
    #[schema(pattern = "^0[23][0-9a-fA-F]{64}$")]
    claim_key: String,
    /// Publish this swap's HTLC at once, not waiting for the server's publication window
    /// (default false).
    fast: Option<bool>,
}

/// The server's offer (schema of [`crate::validate::LoopOutOffer`]).
#[derive(ToSchema)]
#[schema(as = LoopOutOffer)]
#[allow(dead_code)]
pub struct LoopOutOfferDoc {
    /// Hold invoice for the swap amount (BOLT11).
    #[schema(pattern = "^ln[a-z0-9]+$")]
    swap_invoice: String,
    /// Hold invoice for the prepay (BOLT11).
    #[schema(pattern = "^ln[a-z0-9]+$")]
    prepay_invoice: String,
    /// The server's HTLC key, compressed public key hex.
    #[schema(pattern = "^0[23][0-9a-f]{64}$")]
    server_key: String,
    /// Absolute expiry height of the HTLC.
    expiry: u32,
    /// The P2TR HTLC address.
    htlc_address: String,
}

/// The loop-in request (schema of [`LoopInCreate`]).
#[derive(ToSchema)]
#[schema(as = LoopInCreate)]
#[allow(dead_code)]
pub struct LoopInCreateDoc {
    /// HTLC amount the client funds, sat (a number with no fractional part; range: the
    /// server's terms).
    amount: u64,
    /// The client's BOLT11 invoice for amount − fee.
    invoice: String,
    /// The client's refund key, compressed public key hex.
    #[schema(pattern = "^0[23][0-9a-fA-F]{64}$")]
    refund_key: String,
    /// Optional: the node the payment must arrive through (compressed public key hex); refused
    /// with 400 by a server whose Lightning node cannot restrict the last hop.
    #[schema(pattern = "^0[23][0-9a-fA-F]{64}$")]
    last_hop: Option<String>,
}

/// The server's loop-in answer (schema of [`crate::validate::LoopInOffer`]).
#[derive(ToSchema)]
#[schema(as = LoopInOffer)]
#[allow(dead_code)]
pub struct LoopInOfferDoc {
    /// The server's claim key, compressed public key hex.
    #[schema(pattern = "^0[23][0-9a-f]{64}$")]
    server_key: String,
    /// Absolute expiry height `E`.
    expiry: u32,
    /// The P2TR HTLC address to fund with exactly the amount.
    htlc_address: String,
    /// The server's fee, sat.
    swap_fee: u64,
}

/// Every error body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What was wrong.
    pub error: String,
}

/// `GET /v1/quote/loop-out?amount=<sat>` and `GET /v1/quote/loop-in?amount=<sat>` query.
#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuoteQuery {
    /// HTLC amount, sat (a whole number of satoshis; range: the server's terms).
    #[param(minimum = 1, example = 100000)]
    pub amount: u64,
}

/// What a loop-out of `amount_sat` costs off-chain.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Quote {
    /// The on-chain HTLC value, sat.
    pub amount_sat: u64,
    /// The server's fee, sat (prepay included).
    pub swap_fee_sat: u64,
    /// Paid up front (non-refundable once the HTLC is published), sat.
    pub prepay_sat: u64,
    /// The swap invoice's amount, sat.
    pub swap_invoice_sat: u64,
    /// `E − tip` the HTLC would get.
    pub expiry_delta: u32,
}

/// `GET /v1/quote/loop-in?amount=<sat>` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct QuoteIn {
    /// The on-chain HTLC value the client funds, sat.
    pub amount_sat: u64,
    /// The server's fee, sat.
    pub swap_fee_sat: u64,
    /// What the client's invoice must ask: amount − fee, sat.
    pub invoice_sat: u64,
    /// `E − tip` the HTLC gets.
    pub expiry_delta: u32,
}

/// Seed 000's loop-out request (field names as its client sends them).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedLoopOutRequest {
    /// The client's P2WPKH claim address (the HTLC commits to its pubkey hash).
    pub htlc_claim_address: String,
    /// sha256 of the client's preimage, 32 bytes hex.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub hash: String,
    /// HTLC amount, sat (a number with no fractional part; range: the server's terms).
    #[serde(deserialize_with = "sat::deserialize")]
    pub loop_out_sats: u64,
}

/// Seed 000's loop-out answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeedLoopOutResponse {
    /// The server's P2WPKH refund address (the HTLC commits to its pubkey hash).
    pub htlc_refund_address: String,
    /// The hold invoice: amount plus the server's fee.
    pub payment_request: String,
}

/// A seed 000 loop-out request, parsed: what the server needs to create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedLoopOut {
    /// The HTLC amount (its range is the server's to check).
    pub amount: bitcoin::Amount,
    /// The payment hash.
    pub hash: PaymentHash,
    /// The client's claim pubkey hash (from its P2WPKH address).
    pub claim_pkh: bitcoin::PubkeyHash,
}

/// The per-swap authorization header (documented on every per-swap endpoint).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct AuthHeader {
    /// `<unix seconds>:<BIP340 signature hex>` by the key the client gave at creation
    /// (loop-out: claim key, loop-in: refund key) over the swap id, time, method, path and
    /// body (see [`crate::auth`]).
    #[param(rename = "x-eddy-swap-auth")]
    x_eddy_swap_auth: String,
}

/// The swap id in a per-swap path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SwapIdPath {
    /// The swap id: its payment hash, 32 bytes hex.
    #[param(pattern = "^[0-9a-fA-F]{64}$")]
    id: String,
}

/// `POST /v1/loop-out`'s body as read: amounts as [`sat`] reads them, hex checked before it
/// is decoded.
#[derive(Deserialize)]
struct LoopOutCreateWire {
    #[serde(deserialize_with = "sat::deserialize")]
    amount: u64,
    payment_hash: String,
    claim_key: String,
    #[serde(default)]
    fast: Option<bool>,
}

/// `POST /v1/loop-in`'s body as read.
#[derive(Deserialize)]
struct LoopInCreateWire {
    #[serde(deserialize_with = "sat::deserialize")]
    amount: u64,
    invoice: String,
    refund_key: String,
    #[serde(default)]
    last_hop: Option<String>,
}

/// A compressed public key: exactly 66 hex characters starting `02`/`03`, on the curve (an
/// uncompressed key, which the curve library would also take, is refused).
pub(crate) fn compressed_key(s: &str, field: &'static str) -> Result<bitcoin::secp256k1::PublicKey, ApiParseError> {
    let shaped = s.len() == 66 && (s.starts_with("02") || s.starts_with("03"));
    if !shaped {
        return Err(ApiParseError::Key(field));
    }
    bitcoin::secp256k1::PublicKey::from_str(s).map_err(|_| ApiParseError::Key(field))
}

/// A JSON body of type `T`: an object, as the document says (serde's derive would also take
/// the fields as an array, `["…", "…"]`: found by fuzzing).
fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiParseError> {
    object_body(body)?;
    serde_json::from_slice(body).map_err(|e| ApiParseError::Malformed(e.to_string()))
}

/// Refuses a body that is not a JSON object (before serde reads it).
fn object_body(body: &[u8]) -> Result<(), ApiParseError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(ApiParseError::Malformed("the body must be a JSON object".into())),
    }
}

/// The swap id of a path (`/v1/swaps/{id}/…`): 64 hex characters.
pub fn parse_id(s: &str) -> Result<SwapId, ApiParseError> {
    SwapId::from_str(s).map_err(|_| ApiParseError::NotASwapId(s.to_owned()))
}

/// `POST /v1/loop-out`'s body (its amount's range is the server's to check).
pub fn parse_loop_out_create(body: &[u8]) -> Result<LoopOutCreate, ApiParseError> {
    let w: LoopOutCreateWire = json(body)?;
    Ok(LoopOutCreate {
        amount: bitcoin::Amount::from_sat(w.amount),
        payment_hash: PaymentHash::from_str(&w.payment_hash).map_err(|_| ApiParseError::Hash("payment_hash"))?,
        claim_key: compressed_key(&w.claim_key, "claim_key")?,
        fast: w.fast.unwrap_or(false),
    })
}

/// `POST /v1/loop-in`'s body (the invoice and the amount's range are the server's to check).
pub fn parse_loop_in_create(body: &[u8]) -> Result<LoopInCreate, ApiParseError> {
    let w: LoopInCreateWire = json(body)?;
    Ok(LoopInCreate {
        amount: bitcoin::Amount::from_sat(w.amount),
        invoice: w.invoice,
        refund_key: compressed_key(&w.refund_key, "refund_key")?,
        last_hop: w.last_hop.map(|k| compressed_key(&k, "last_hop")).transpose()?,
    })
}

/// The query of `GET /v1/quote/loop-out` and `GET /v1/quote/loop-in` (the part after `?`, none
/// is an empty one): the amount asked about.
pub fn parse_quote_query(query: &str) -> Result<bitcoin::Amount, ApiParseError> {
    #[derive(Deserialize)]
    struct Wire {
        amount: String,
    }
    let q: Wire = serde_urlencoded::from_str(query).map_err(|e| ApiParseError::MalformedQuery(e.to_string()))?;
    let amount = sat::from_str(&q.amount).ok_or_else(|| {
        ApiParseError::MalformedQuery(format!(
            "amount: {:?} is not a whole, non-negative number of satoshis",
            q.amount
        ))
    })?;
    Ok(bitcoin::Amount::from_sat(amount))
}

/// `POST /v1/swaps/{id}/preimage`'s body: the preimage (whether it is the swap's is the
/// server's to check).
pub fn parse_preimage(body: &[u8]) -> Result<Preimage, ApiParseError> {
    // Not `json`: serde's messages quote the value they refuse (`invalid type: string "…"`), so
    // a preimage sent in the wrong shape (a bare string, an array) came back in the error
    // (found by fuzz/api_preimage). Only where the body went wrong is told.
    object_body(body)?;
    let b: PreimageBody = serde_json::from_slice(body).map_err(|e| {
        ApiParseError::Malformed(format!(
            "expected {{\"preimage\": \"<64 hex characters>\"}} (line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    Preimage::from_hex(&b.preimage).map_err(|_| ApiParseError::Preimage)
}

/// The client's nonce and unsigned transaction of a co-signing request (`POST
/// /v1/swaps/{id}/cosign`, `POST /v1/swaps/{id}/refund-cosign`).
pub fn cosign_request(body: &[u8]) -> Result<(PubNonceBytes, bitcoin::Transaction), ApiParseError> {
    let b: CosignRequest = json(body)?;
    let nonce = <[u8; PUB_NONCE_LEN]>::from_hex(&b.nonce).map_err(|_| ApiParseError::Nonce)?;
    let tx = bitcoin::consensus::encode::deserialize_hex(&b.tx).map_err(|_| ApiParseError::Tx)?;
    Ok((nonce, tx))
}

/// A co-signing request of `POST /v1/swaps/{id}/cosign`: one input (`index`) of a transaction
/// of at most [`crate::batch::MAX_BATCH_INPUTS`] inputs, with every prevout when it has more
/// than one.
pub fn cosign_ask(body: &[u8]) -> Result<CosignAsk, ApiParseError> {
    let b: CosignRequest = json(body)?;
    let nonce = <[u8; PUB_NONCE_LEN]>::from_hex(&b.nonce).map_err(|_| ApiParseError::Nonce)?;
    let tx: bitcoin::Transaction = bitcoin::consensus::encode::deserialize_hex(&b.tx).map_err(|_| ApiParseError::Tx)?;
    let (index, prevouts) = batch_input(&tx, b.index, b.prevouts)?;
    Ok(CosignAsk {
        nonce,
        tx,
        index,
        prevouts,
    })
}

/// The input named of `tx` (a transaction of 1 to [`crate::batch::MAX_BATCH_INPUTS`] inputs)
/// and its prevouts, checked: one per input, each a script of 1 to 100 bytes and a value of
/// at most 21 million bitcoin; required when `tx` has several inputs.
fn batch_input(
    tx: &bitcoin::Transaction,
    index: Option<u32>,
    prevouts: Option<Vec<Prevout>>,
) -> Result<(usize, Option<Vec<bitcoin::TxOut>>), ApiParseError> {
    if tx.input.is_empty() || tx.input.len() > crate::batch::MAX_BATCH_INPUTS {
        return Err(ApiParseError::Batch("tx must have between 1 and 100 inputs"));
    }
    let index = index.unwrap_or(0) as usize;
    if index >= tx.input.len() {
        return Err(ApiParseError::Batch("index is not an input of tx"));
    }
    let prevouts = match prevouts {
        None if tx.input.len() > 1 => {
            return Err(ApiParseError::Batch("prevouts are required for a tx of several inputs"))
        }
        None => None,
        Some(p) if p.len() != tx.input.len() => {
            return Err(ApiParseError::Batch("prevouts must list one output per input of tx"))
        }
        Some(p) => Some(
            p.into_iter()
                .map(|o| {
                    let script = Vec::<u8>::from_hex(&o.script_pubkey)
                        .ok()
                        .filter(|s| !s.is_empty() && s.len() <= 100)
                        .ok_or(ApiParseError::Batch(
                            "a prevout's script_pubkey must be 1 to 100 bytes of hex",
                        ))?;
                    let value = bitcoin::Amount::from_sat(o.value_sat);
                    if value > bitcoin::Amount::MAX_MONEY {
                        return Err(ApiParseError::Batch("a prevout's value is above 21 million bitcoin"));
                    }
                    Ok(bitcoin::TxOut {
                        value,
                        script_pubkey: bitcoin::ScriptBuf::from_bytes(script),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok((index, prevouts))
}

/// The client's nonce and partial signature of `POST /v1/swaps/{id}/claim-cosign`.
pub fn parse_claim_cosign(body: &[u8]) -> Result<(PubNonceBytes, PartialSigBytes), ApiParseError> {
    let b: ClaimCosign = json(body)?;
    let nonce = <[u8; PUB_NONCE_LEN]>::from_hex(&b.nonce).map_err(|_| ApiParseError::Nonce)?;
    let partial = <[u8; 32]>::from_hex(&b.partial_sig).map_err(|_| ApiParseError::PartialSig)?;
    Ok((nonce, partial))
}

/// Seed 000's `POST /api/loop/out` body on `network`: the claim address must be a P2WPKH
/// address of that network, the hash 32 bytes of hex.
pub fn parse_seed_loop_out(body: &[u8], network: Network) -> Result<SeedLoopOut, ApiParseError> {
    let req: SeedLoopOutRequest = json(body)?;
    let address = bitcoin::Address::from_str(req.htlc_claim_address.trim())
        .map_err(|e| ApiParseError::SeedAddress(e.to_string()))?
        .require_network(network)
        .map_err(|_| ApiParseError::SeedNetwork(network))?;
    let claim_pkh = match address.witness_program() {
        Some(p) if p.is_p2wpkh() => {
            let bytes: [u8; 20] = p
                .program()
                .as_bytes()
                .try_into()
                .map_err(|_| ApiParseError::SeedNotP2wpkh)?;
            bitcoin::PubkeyHash::from_byte_array(bytes)
        }
        _ => return Err(ApiParseError::SeedNotP2wpkh),
    };
    let hash = PaymentHash::from_str(&req.hash).map_err(|_| ApiParseError::SeedHash)?;
    Ok(SeedLoopOut {
        amount: bitcoin::Amount::from_sat(req.loop_out_sats),
        hash,
        claim_pkh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_state_has_its_wire_name() {
        use crate::sm::{loop_in_server as li, loop_out_server as lo};
        use bitcoin::hashes::Hash;
        let name = |v: serde_json::Value| v["state"].as_str().map(str::to_owned).expect("state name");
        let txid = bitcoin::Txid::all_zeros();
        let p = Preimage::from_bytes([1; 32]);
        let o = bitcoin::OutPoint::null();
        let out = [
            (lo::State::new(), SwapState::Created),
            (lo::State::Publishing { prepay_deadline: None }, SwapState::Publishing),
            (lo::State::Published { txid }, SwapState::Published),
            (lo::State::Refunding { txid }, SwapState::Refunding),
            (lo::State::PreimageKnown { preimage: p }, SwapState::PreimageKnown),
            (lo::State::Succeeded, SwapState::Succeeded),
            (lo::State::Refunded, SwapState::Refunded),
            (
                lo::State::Canceled(lo::CancelReason::PublicationLost),
                SwapState::Canceled,
            ),
            (lo::State::TimedOut, SwapState::TimedOut),
            (lo::State::Reclaiming, SwapState::Reclaiming),
            (lo::State::ClaimedUnsettled, SwapState::ClaimedUnsettled),
        ];
        for (state, wire) in out {
            let n = name(serde_json::to_value(&state).expect("json"));
            assert_eq!(SwapState::from_name(&n), wire, "loop-out {n}");
            assert_eq!(serde_json::to_value(wire).expect("json"), serde_json::json!(n));
        }
        let inn = [
            (li::State::Created, SwapState::Created),
            (li::State::paying(o), SwapState::Paying),
            (
                li::State::Claiming {
                    outpoint: o,
                    preimage: p,
                    cooperative_until: None,
                },
                SwapState::Claiming,
            ),
            (
                li::State::Refundable(li::RefundReason::PaymentFailed),
                SwapState::Refundable,
            ),
            (li::State::Succeeded, SwapState::Succeeded),
            (li::State::Refunded, SwapState::Refunded),
            (li::State::Expired, SwapState::Expired),
        ];
        for (state, wire) in inn {
            let n = name(serde_json::to_value(&state).expect("json"));
            assert_eq!(SwapState::from_name(&n), wire, "loop-in {n}");
        }
        assert_eq!(SwapState::from_name("something_new"), SwapState::Unknown);
        let e = ApiCallError::Answered {
            kind: ErrorKind::of_status(429),
            status: "429 Too Many Requests".into(),
            message: "x".into(),
        };
        assert_eq!(
            (e.status(), e.to_string().as_str()),
            (Some(429), "server answered 429 Too Many Requests: x")
        );
        assert_eq!(ApiCallError::Unreachable("refused".into()).status(), None);
    }

    #[test]
    fn amounts_are_whole_satoshis_written_as_integers_or_integral_numbers() {
        let body = |amount: &str| {
            format!(
                "{{\"amount\":{amount},\"payment_hash\":\"{}\",\"claim_key\":\"{}\"}}",
                "11".repeat(32),
                key_hex()
            )
        };
        for (amount, want) in [
            ("10000", 10_000u64),
            ("10000.0", 10_000),
            ("1e4", 10_000),
            ("1.0E4", 10_000),
            ("0", 0),
            ("9007199254740991", 9_007_199_254_740_991),
            ("18446744073709551615", u64::MAX),
        ] {
            let got = parse_loop_out_create(body(amount).as_bytes()).map(|r| r.amount.to_sat());
            assert_eq!(got, Ok(want), "{amount}");
        }
        for amount in [
            "10000.5",
            "-1",
            "-0.5",
            "1e300",
            "9007199254740992.0",
            "\"10000\"",
            "null",
            "18446744073709551616",
        ] {
            let got = parse_loop_out_create(body(amount).as_bytes());
            assert!(
                got.as_ref().err().is_some_and(ApiParseError::is_malformed),
                "{amount}: {got:?}"
            );
        }
        // The query string reads the same.
        assert_eq!(
            parse_quote_query("amount=10000.0"),
            Ok(bitcoin::Amount::from_sat(10_000))
        );
        assert_eq!(parse_quote_query("amount=1e4"), Ok(bitcoin::Amount::from_sat(10_000)));
        for bad in [
            "amount=10000.5",
            "amount=inf",
            "amount=NaN",
            "amount=%2B5",
            "amount=0x10",
            "amount=-0",
        ] {
            assert!(parse_quote_query(bad).is_err(), "{bad}");
        }
    }

    fn key_hex() -> String {
        bitcoin::secp256k1::PublicKey::from_secret_key(
            &bitcoin::secp256k1::Secp256k1::new(),
            &bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).expect("key"),
        )
        .to_string()
    }

    #[test]
    fn keys_are_compressed_points_and_hashes_32_bytes() {
        let key = bitcoin::secp256k1::PublicKey::from_secret_key(
            &bitcoin::secp256k1::Secp256k1::new(),
            &bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).expect("key"),
        );
        let body =
            |hash: &str, k: &str| format!("{{\"amount\":50000,\"payment_hash\":\"{hash}\",\"claim_key\":\"{k}\"}}");
        let hash = "11".repeat(32);
        let ok = parse_loop_out_create(body(&hash, &key.to_string()).as_bytes());
        assert_eq!(
            ok,
            Ok(LoopOutCreate {
                amount: bitcoin::Amount::from_sat(50_000),
                payment_hash: PaymentHash([0x11; 32]),
                claim_key: key,
                fast: false,
            })
        );
        let uncompressed = key.serialize_uncompressed().to_lower_hex_string();
        let off_curve = "02".to_owned() + &"11".repeat(32);
        for k in [
            uncompressed.as_str(),
            off_curve.as_str(),
            "",
            "02",
            &("04".to_owned() + &"11".repeat(32)),
        ] {
            assert_eq!(
                parse_loop_out_create(body(&hash, k).as_bytes()),
                Err(ApiParseError::Key("claim_key")),
                "{k}"
            );
        }
        assert_eq!(
            parse_loop_out_create(body("abcd", &key.to_string()).as_bytes()),
            Err(ApiParseError::Hash("payment_hash"))
        );
        let in_body =
            |last_hop: &str| format!("{{\"amount\":50000,\"invoice\":\"lnbcrt1\",\"refund_key\":\"{key}\"{last_hop}}}");
        let ok = parse_loop_in_create(in_body("").as_bytes());
        assert_eq!(
            ok,
            Ok(LoopInCreate {
                amount: bitcoin::Amount::from_sat(50_000),
                invoice: "lnbcrt1".into(),
                refund_key: key,
                last_hop: None,
            })
        );
        assert_eq!(
            parse_loop_in_create(in_body(",\"last_hop\":null").as_bytes()).map(|r| r.last_hop),
            Ok(None)
        );
        assert_eq!(
            parse_loop_in_create(in_body(&format!(",\"last_hop\":\"{key}\"")).as_bytes()).map(|r| r.last_hop),
            Ok(Some(key))
        );
        assert_eq!(
            parse_loop_in_create(in_body(&format!(",\"last_hop\":\"{uncompressed}\"")).as_bytes()),
            Err(ApiParseError::Key("last_hop"))
        );
    }

    /// The patterns the schemas declare are these constants (the derive attributes take only
    /// literals, so the two are held together here).
    #[test]
    fn schema_patterns_are_the_constants() {
        fn props<T: utoipa::PartialSchema>() -> serde_json::Value {
            serde_json::to_value(T::schema()).expect("json")["properties"].clone()
        }
        let lower = |p: &str| p.replace("a-fA-F", "a-f");
        let out = props::<LoopOutCreateDoc>();
        assert_eq!(out["payment_hash"]["pattern"], HEX32_PATTERN);
        assert_eq!(out["claim_key"]["pattern"], KEY_PATTERN);
        let inn = props::<LoopInCreateDoc>();
        assert_eq!(inn["refund_key"]["pattern"], KEY_PATTERN);
        assert_eq!(inn["last_hop"]["pattern"], KEY_PATTERN);
        assert_eq!(props::<PreimageBody>()["preimage"]["pattern"], HEX32_PATTERN);
        assert_eq!(props::<SeedLoopOutRequest>()["hash"]["pattern"], HEX32_PATTERN);
        let c = props::<CosignRequest>();
        assert_eq!(c["nonce"]["pattern"], NONCE_PATTERN);
        assert_eq!(c["tx"]["pattern"], TX_PATTERN);
        let c = props::<ClaimCosign>();
        assert_eq!(c["nonce"]["pattern"], NONCE_PATTERN);
        assert_eq!(c["partial_sig"]["pattern"], HEX32_PATTERN);
        // What the server writes is lower-case hex.
        let r = props::<CosignResponse>();
        assert_eq!(r["nonce"]["pattern"], lower(NONCE_PATTERN));
        assert_eq!(r["partial_sig"]["pattern"], lower(HEX32_PATTERN));
        let o = props::<ClaimOffer>();
        assert_eq!(o["nonce"]["pattern"], lower(NONCE_PATTERN));
        assert_eq!(o["tx"]["pattern"], lower(TX_PATTERN));
        assert_eq!(props::<LoopOutOfferDoc>()["server_key"]["pattern"], lower(KEY_PATTERN));
        assert_eq!(props::<LoopInOfferDoc>()["server_key"]["pattern"], lower(KEY_PATTERN));
        let st = props::<SwapStatus>();
        assert_eq!(st["id"]["pattern"], lower(HEX32_PATTERN));
        assert_eq!(st["htlc_outpoint"]["pattern"], OUTPOINT_PATTERN);
    }

    #[test]
    fn ids_are_64_hex_characters() {
        assert_eq!(parse_id(&"ab".repeat(32)), Ok(SwapId([0xab; 32])));
        for bad in ["", "ab", &"ab".repeat(33), &"zz".repeat(32)] {
            assert_eq!(parse_id(bad), Err(ApiParseError::NotASwapId(bad.to_owned())));
        }
    }

    #[test]
    fn a_bad_preimage_is_never_echoed() {
        let secret = "5e".repeat(31) + "zz";
        let e = parse_preimage(format!("{{\"preimage\":\"{secret}\"}}").as_bytes()).err();
        assert_eq!(e, Some(ApiParseError::Preimage));
        assert_eq!(
            e.map(|e| e.to_string()),
            Some("preimage must be 32 bytes of hex".to_owned())
        );
        let p = Preimage::from_bytes([7; 32]);
        let ok = parse_preimage(format!("{{\"preimage\":\"{}\"}}", p.expose_hex()).as_bytes());
        assert_eq!(ok, Ok(p));
    }

    /// Regression (fuzz/api_preimage): a preimage in a body of the wrong shape was echoed by
    /// serde's message.
    #[test]
    fn bodies_must_be_json_objects() {
        let hash = "ab".repeat(32);
        let key = format!(
            "02{}",
            "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
        );
        let arrays = [
            format!("[\"{hash}\"]"),
            format!(" \n[50000, \"{hash}\", \"{key}\"]"),
            "\"x\"".to_string(),
            "50000".to_string(),
            String::new(),
        ];
        for body in &arrays {
            assert!(
                parse_preimage(body.as_bytes()).is_err_and(|e| e.is_malformed()),
                "{body}"
            );
            let e = parse_loop_out_create(body.as_bytes()).expect_err("not an object");
            assert!(e.to_string().contains("must be a JSON object"), "{body}: {e}");
        }
        // The same fields as an object are taken.
        let ok = format!(" {{\"amount\": 50000, \"payment_hash\": \"{hash}\", \"claim_key\": \"{key}\"}}");
        assert_eq!(
            parse_loop_out_create(ok.as_bytes()).map(|c| c.amount.to_sat()),
            Ok(50_000)
        );
    }

    #[test]
    fn a_preimage_in_the_wrong_shape_is_never_echoed() {
        let secret = "42".repeat(32);
        for body in [
            format!("\"{secret}\""),
            format!("[[\"{secret}\"]]"),
            format!("{{\"preimage\":[\"{secret}\"]}}"),
            format!("{{\"preimage\":\"{secret}\""),
        ] {
            let e = parse_preimage(body.as_bytes()).expect_err("wrong shape");
            assert!(e.is_malformed(), "{body}: {e:?}");
            assert!(!e.to_string().contains(&secret), "{body}: {e}");
        }
        assert_eq!(
            parse_preimage(format!("\"{secret}\"").as_bytes()).map_err(|e| e.to_string()),
            Err("malformed request: the body must be a JSON object".to_owned())
        );
    }

    #[test]
    fn quote_queries_name_one_amount() {
        assert_eq!(parse_quote_query("amount=50000"), Ok(bitcoin::Amount::from_sat(50_000)));
        for bad in ["", "amount=", "amount=-1", "amount=x", "amt=5"] {
            let e = parse_quote_query(bad).err();
            assert!(e.as_ref().is_some_and(ApiParseError::is_malformed), "{bad}: {e:?}");
        }
    }

    #[test]
    fn a_batch_cosign_request_names_an_input_and_every_prevout() {
        use bitcoin::hashes::Hash;
        let nonce = "02".repeat(66);
        let input = |n: u8| bitcoin::TxIn {
            previous_output: bitcoin::OutPoint::new(bitcoin::Txid::from_byte_array([n; 32]), 0),
            ..Default::default()
        };
        let tx = |inputs: usize| bitcoin::Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: (0..inputs).map(|n| input(n as u8)).collect(),
            output: vec![],
        };
        let hex = |t: &bitcoin::Transaction| bitcoin::consensus::encode::serialize_hex(t);
        let prevout = serde_json::json!({"value_sat": 1000, "script_pubkey": "51"});
        let ask = |body: serde_json::Value| cosign_ask(body.to_string().as_bytes());
        // One input: no prevouts needed, index 0.
        let one = ask(serde_json::json!({"nonce": nonce, "tx": hex(&tx(1))})).expect("one input");
        assert_eq!((one.index, one.prevouts), (0, None));
        // Two inputs: the prevouts, one per input, and an index inside.
        let two =
            ask(serde_json::json!({"nonce": nonce, "tx": hex(&tx(2)), "index": 1, "prevouts": [prevout, prevout]}))
                .expect("two inputs");
        assert_eq!(two.index, 1);
        assert_eq!(two.prevouts.map(|p| p.len()), Some(2));
        let refused = [
            serde_json::json!({"nonce": nonce, "tx": hex(&tx(2))}),
            serde_json::json!({"nonce": nonce, "tx": hex(&tx(2)), "prevouts": [prevout]}),
            serde_json::json!({"nonce": nonce, "tx": hex(&tx(2)), "index": 2, "prevouts": [prevout, prevout]}),
            serde_json::json!({"nonce": nonce, "tx": hex(&tx(1)), "prevouts": [{"value_sat": 1, "script_pubkey": ""}]}),
            serde_json::json!({"nonce": nonce, "tx": hex(&tx(1)), "prevouts": [{"value_sat": 2_100_000_000_000_001u64, "script_pubkey": "51"}]}),
            serde_json::json!({"nonce": nonce, "tx": hex(&tx(crate::batch::MAX_BATCH_INPUTS + 1))}),
        ];
        for body in refused {
            assert!(matches!(ask(body.clone()), Err(ApiParseError::Batch(_))), "{body}");
        }
        assert_eq!(
            crate::batch::MAX_BATCH_INPUTS,
            100,
            "the messages and the schema say 100"
        );
    }

    #[test]
    fn cosign_requests_need_a_66_byte_nonce_and_a_transaction() {
        let nonce = "02".repeat(66);
        let e = cosign_request(format!("{{\"nonce\":\"{}\",\"tx\":\"00\"}}", "02".repeat(65)).as_bytes());
        assert_eq!(e.err(), Some(ApiParseError::Nonce));
        let e = cosign_request(format!("{{\"nonce\":\"{nonce}\",\"tx\":\"00\"}}").as_bytes());
        assert_eq!(e.err(), Some(ApiParseError::Tx));
        let e = cosign_request(b"{\"nonce\":1}");
        assert!(e.err().is_some_and(|e| e.is_malformed()));
        let e = parse_claim_cosign(format!("{{\"nonce\":\"{nonce}\",\"partial_sig\":\"00\"}}").as_bytes());
        assert_eq!(e.err(), Some(ApiParseError::PartialSig));
        let e =
            parse_claim_cosign(format!("{{\"nonce\":\"{nonce}\",\"partial_sig\":\"{}\"}}", "01".repeat(32)).as_bytes());
        assert_eq!(e, Ok(([2; 66], [1; 32])));
    }

    #[test]
    fn seed_requests_need_a_p2wpkh_address_of_the_network() {
        let regtest = bitcoin::Address::p2wpkh(
            &bitcoin::CompressedPublicKey::from_slice(
                &bitcoin::secp256k1::PublicKey::from_secret_key(
                    &bitcoin::secp256k1::Secp256k1::new(),
                    &bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).expect("key"),
                )
                .serialize(),
            )
            .expect("key"),
            Network::Regtest,
        );
        let body = |addr: &str, hash: &str| {
            format!("{{\"htlcClaimAddress\":\"{addr}\",\"hash\":\"{hash}\",\"loopOutSats\":50000}}")
        };
        let hash = "11".repeat(32);
        let ok = parse_seed_loop_out(body(&regtest.to_string(), &hash).as_bytes(), Network::Regtest).expect("ok");
        assert_eq!(ok.amount, bitcoin::Amount::from_sat(50_000));
        assert_eq!(ok.hash, PaymentHash([0x11; 32]));
        assert_eq!(
            ok.claim_pkh.to_byte_array().as_slice(),
            regtest.witness_program().expect("wp").program().as_bytes()
        );
        assert_eq!(
            parse_seed_loop_out(body(&regtest.to_string(), &hash).as_bytes(), Network::Bitcoin).err(),
            Some(ApiParseError::SeedNetwork(Network::Bitcoin))
        );
        assert_eq!(
            parse_seed_loop_out(body(&regtest.to_string(), "abcd").as_bytes(), Network::Regtest).err(),
            Some(ApiParseError::SeedHash)
        );
        let p2wsh = bitcoin::Address::p2wsh(&bitcoin::ScriptBuf::new(), Network::Regtest);
        assert_eq!(
            parse_seed_loop_out(body(&p2wsh.to_string(), &hash).as_bytes(), Network::Regtest).err(),
            Some(ApiParseError::SeedNotP2wpkh)
        );
        assert!(matches!(
            parse_seed_loop_out(body("nope", &hash).as_bytes(), Network::Regtest),
            Err(ApiParseError::SeedAddress(_))
        ));
        let e = parse_seed_loop_out(b"{\"htlcClaimAddress\":\"x\",\"hash\":\"y\"}", Network::Regtest).err();
        assert!(
            e.as_ref().is_some_and(|e| e.to_string().contains("loopOutSats")),
            "{e:?}"
        );
    }
}
