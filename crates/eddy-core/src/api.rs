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
}

impl ApiParseError {
    /// Whether the request was malformed (not JSON, not the shape) rather than well-formed
    /// but invalid (the server counts the two apart).
    pub fn is_malformed(&self) -> bool {
        matches!(self, ApiParseError::Malformed(_) | ApiParseError::MalformedQuery(_))
    }
}

/// What `GET /v1/terms` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Terms {
    /// Network name (`regtest`, `bitcoin`, …).
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

/// What `GET /v1/swaps/{id}` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SwapStatus {
    /// The swap id.
    pub id: String,
    /// The state name.
    pub state: String,
    /// Whether it is final.
    pub terminal: bool,
    /// HTLC expiry.
    pub expiry: u32,
    /// The HTLC output, once published.
    pub htlc_outpoint: Option<String>,
}

/// Body of `POST /v1/swaps/{id}/preimage`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PreimageBody {
    /// The preimage, 32 bytes hex.
    pub preimage: String,
}

/// Body of `POST /v1/swaps/{id}/cosign` and `POST /v1/swaps/{id}/refund-cosign`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CosignRequest {
    /// The client's MuSig2 public nonce (hex).
    pub nonce: String,
    /// The unsigned claim transaction (hex).
    pub tx: String,
}

/// Answer of `POST /v1/swaps/{id}/cosign` and `POST /v1/swaps/{id}/refund-cosign`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CosignResponse {
    /// The server's public nonce (hex).
    pub nonce: String,
    /// The server's partial signature (hex).
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
    /// The server's MuSig2 public nonce (hex).
    pub nonce: String,
    /// The unsigned key-path claim (hex).
    pub tx: String,
}

/// Body of `POST /v1/swaps/{id}/claim-cosign`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimCosign {
    /// The client's MuSig2 public nonce (hex).
    pub nonce: String,
    /// The client's partial signature (hex).
    pub partial_sig: String,
}

/// The loop-out request as it travels (schema of [`LoopOutCreate`]; a test checks the field
/// names match what the type serializes).
#[derive(ToSchema)]
#[schema(as = LoopOutCreate)]
#[allow(dead_code)]
pub struct LoopOutCreateDoc {
    /// HTLC amount in satoshis.
    amount: u64,
    /// sha256 of the client's preimage, hex.
    payment_hash: String,
    /// The client's claim key, compressed public key hex.
    claim_key: String,
}

/// The server's offer (schema of [`crate::validate::LoopOutOffer`]).
#[derive(ToSchema)]
#[schema(as = LoopOutOffer)]
#[allow(dead_code)]
pub struct LoopOutOfferDoc {
    /// Hold invoice for the swap amount (BOLT11).
    swap_invoice: String,
    /// Hold invoice for the prepay (BOLT11).
    prepay_invoice: String,
    /// The server's HTLC key, compressed public key hex.
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
    /// HTLC amount the client funds, sat.
    amount: u64,
    /// The client's BOLT11 invoice for amount − fee.
    invoice: String,
    /// The client's refund key, compressed public key hex.
    refund_key: String,
    /// Optional: the node the payment must arrive through (compressed public key hex); refused
    /// with 400 by a server whose Lightning node cannot restrict the last hop.
    last_hop: Option<String>,
}

/// The server's loop-in answer (schema of [`crate::validate::LoopInOffer`]).
#[derive(ToSchema)]
#[schema(as = LoopInOffer)]
#[allow(dead_code)]
pub struct LoopInOfferDoc {
    /// The server's claim key, compressed public key hex.
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
    /// HTLC amount, sat (a whole number of satoshis).
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
    /// sha256 of the client's preimage, hex.
    pub hash: String,
    /// HTLC amount, sat.
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

/// A JSON body of type `T`.
fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiParseError> {
    serde_json::from_slice(body).map_err(|e| ApiParseError::Malformed(e.to_string()))
}

/// The swap id of a path (`/v1/swaps/{id}/…`): 64 hex characters.
pub fn parse_id(s: &str) -> Result<SwapId, ApiParseError> {
    SwapId::from_str(s).map_err(|_| ApiParseError::NotASwapId(s.to_owned()))
}

/// `POST /v1/loop-out`'s body.
pub fn parse_loop_out_create(body: &[u8]) -> Result<LoopOutCreate, ApiParseError> {
    json(body)
}

/// `POST /v1/loop-in`'s body.
pub fn parse_loop_in_create(body: &[u8]) -> Result<LoopInCreate, ApiParseError> {
    json(body)
}

/// The query of `GET /v1/quote/loop-out` and `GET /v1/quote/loop-in` (the part after `?`, none
/// is an empty one): the amount asked about.
pub fn parse_quote_query(query: &str) -> Result<bitcoin::Amount, ApiParseError> {
    let q: QuoteQuery = serde_urlencoded::from_str(query).map_err(|e| ApiParseError::MalformedQuery(e.to_string()))?;
    Ok(bitcoin::Amount::from_sat(q.amount))
}

/// `POST /v1/swaps/{id}/preimage`'s body: the preimage (whether it is the swap's is the
/// server's to check).
pub fn parse_preimage(body: &[u8]) -> Result<Preimage, ApiParseError> {
    let b: PreimageBody = json(body)?;
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

    #[test]
    fn quote_queries_name_one_amount() {
        assert_eq!(parse_quote_query("amount=50000"), Ok(bitcoin::Amount::from_sat(50_000)));
        for bad in ["", "amount=", "amount=-1", "amount=x", "amt=5"] {
            let e = parse_quote_query(bad).err();
            assert!(e.as_ref().is_some_and(ApiParseError::is_malformed), "{bad}: {e:?}");
        }
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
