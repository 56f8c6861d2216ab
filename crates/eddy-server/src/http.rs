//! The server's HTTP API (JSON): terms, loop-out creation, swap status, preimage push. Every
//! error is a JSON body `{"error": "..."}` with a 4xx status for bad input (malformed JSON,
//! out-of-range amounts, unknown swap ids, replays) and 5xx only for backend failures; a
//! rejected request changes nothing. Backend and database error text never reaches a caller:
//! it is logged with an error id, and the caller gets a generic message with that id.
//! Preimages are accepted but never echoed or logged, and swap status never includes secrets.
//!
//! Calls on one swap (`GET /v1/swaps/{id}` and every `/v1/swaps/{id}/…` but the preimage push,
//! which authorizes itself by hashing to the id) must carry the swap counterparty's signature
//! ([`eddy_core::auth`], header `x-eddy-swap-auth`, with the key it gave at creation): the swap
//! is looked up first (unknown → 404, no other work), then the signature checked (missing or
//! bad → 401, nothing changed), and only then the body is read and the engine asked.
//!
//! The Prometheus metrics (they show the swap wallet's balance) are not on this router: see
//! [`metrics_router`], served on its own (loopback by default) address.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::hashes::Hash;
use eddy_core::types::{Preimage, SwapId};
use eddy_core::validate::LoopOutCreate;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::loop_out::{LoopOutServer, ServerError};

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
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct PreimageBody {
    /// The preimage, 32 bytes hex.
    preimage: String,
}

/// Body of `POST /v1/swaps/{id}/cosign`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CosignRequest {
    /// The client's MuSig2 public nonce (hex).
    pub nonce: String,
    /// The unsigned claim transaction (hex).
    pub tx: String,
}

/// Answer of `POST /v1/swaps/{id}/cosign`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CosignResponse {
    /// The server's public nonce (hex).
    pub nonce: String,
    /// The server's partial signature (hex).
    pub partial_sig: String,
}

/// The loop-out request as it travels (schema of `eddy_core::validate::LoopOutCreate`; a test
/// checks the field names match what the type serializes).
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

/// The server's offer (schema of `eddy_core::validate::LoopOutOffer`).
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

/// Every error body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// What was wrong.
    error: String,
}

/// The OpenAPI document of this API (served at `GET /v1/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Eddy swap server",
        version = "1",
        description = "Non-custodial Lightning ⇄ chain swaps: loop-out."
    ),
    paths(
        terms,
        quote,
        quote_in,
        loop_out,
        loop_in,
        refund_cosign,
        claim_offer,
        claim_cosign,
        seed_loop_out,
        status,
        events,
        push_preimage,
        cosign
    ),
    components(schemas(
        Terms,
        Quote,
        QuoteIn,
        ClaimOffer,
        ClaimCosign,
        LoopInCreateDoc,
        LoopInOfferDoc,
        SeedLoopOutRequest,
        SeedLoopOutResponse,
        SwapStatus,
        PreimageBody,
        CosignRequest,
        CosignResponse,
        LoopOutCreateDoc,
        LoopOutOfferDoc,
        ErrorBody
    ))
)]
pub struct ApiDoc;

/// An API error.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        let status = match &e {
            ServerError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServerError::Duplicate(_) => StatusCode::CONFLICT,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::Unavailable(_) | ServerError::Backend(_) | ServerError::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        match e {
            // Backend and database text (node errors, SQL, paths) stays in the log; the caller
            // gets an id to quote.
            ServerError::Backend(_) | ServerError::Store(_) => {
                let error_id = error_id();
                tracing::warn!(%error_id, error = %e, "request failed");
                ApiError(
                    status,
                    format!("internal error (id {error_id}); retry later or quote the id to the operator"),
                )
            }
            e => ApiError(status, e.to_string()),
        }
    }
}

/// A short random id tying a generic error answer to its log line.
fn error_id() -> String {
    use bitcoin::hex::DisplayHex;
    let mut b = [0u8; 8];
    bitcoin::secp256k1::rand::RngCore::fill_bytes(&mut bitcoin::secp256k1::rand::thread_rng(), &mut b);
    b.to_lower_hex_string()
}

/// Looks swap `id` up (404 before any other work), then checks the request's
/// [`eddy_core::auth::HEADER`] against the key the swap's client gave at creation (401).
async fn authorize(
    st: &AppState,
    id: &SwapId,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let key = st.server.swap_auth_key(id).await?.ok_or_else(|| {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "this swap was made with the seed protocol (POST /api/loop/out): it has no per-swap calls".into(),
        )
    })?;
    let header = headers
        .get(eddy_core::auth::HEADER)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    eddy_core::auth::verify(header, &key, id, method.as_str(), uri.path(), body, now).map_err(|e| {
        st.server.metrics().refused("unauthorized");
        ApiError(StatusCode::UNAUTHORIZED, format!("not authorized: {e}"))
    })
}

/// A JSON body read after [`authorize`].
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("malformed request: {e}")))
}

fn bad_json(r: JsonRejection) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, format!("malformed request: {}", r.body_text()))
}

struct AppState {
    server: Arc<LoopOutServer>,
    terms: Terms,
    limiter: RateLimiter,
    /// Seed-protocol creations (no prepay) per client, tighter.
    seed_limiter: RateLimiter,
    /// Seed-protocol creations from everyone together.
    seed_total: RateLimiter,
    trusted_proxy: Option<IpAddr>,
}

/// Request limits of the public API.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Swap-creation requests per client IP per minute (loop-out, loop-in).
    pub per_minute: usize,
    /// Seed-protocol (`POST /api/loop/out`) requests per client IP per minute: that protocol
    /// has no prepay, so an unpaid offer costs its maker nothing at all.
    pub seed_per_minute: usize,
    /// Seed-protocol requests per minute from all clients together.
    pub seed_total_per_minute: usize,
    /// The reverse proxy in front of the API, if any: only for requests from it is the client
    /// read from `X-Forwarded-For` (the right-most entry that is not the proxy itself).
    pub trusted_proxy: Option<IpAddr>,
}

impl Limits {
    /// `per_minute` swap creations per client, the seed endpoint at 2 per client and 10 in
    /// all, no proxy.
    pub fn new(per_minute: usize) -> Limits {
        Limits {
            per_minute,
            seed_per_minute: 2,
            seed_total_per_minute: 10,
            trusted_proxy: None,
        }
    }
}

impl AppState {
    /// The client a request comes from: the peer, or — only when the peer is the configured
    /// trusted proxy — the right-most `X-Forwarded-For` entry that is not the proxy (entries
    /// left of it were written by the client and prove nothing).
    fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let ip = peer.ip();
        if self.trusted_proxy != Some(ip) {
            return ip;
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|e| e.trim().parse::<IpAddr>().ok())
            .rfind(|e| Some(*e) != self.trusted_proxy)
            .unwrap_or(ip)
    }

    /// Admits a swap-creation request: the caller's per-minute limit first, then its JSON
    /// body; each refusal is counted by reason.
    fn admit<T>(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        body: Result<Json<T>, JsonRejection>,
    ) -> Result<T, ApiError> {
        let ip = self.client_ip(peer, headers);
        if !self.limiter.allow(ip) {
            self.server.metrics().refused("rate_limited");
            return Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                format!("more than {} swap requests in a minute", self.limiter.per_minute),
            ));
        }
        let Json(req) = body.map_err(|r| {
            self.server.metrics().refused("malformed");
            bad_json(r)
        })?;
        Ok(req)
    }

    /// Counts a swap the engine refused to create, by reason.
    fn count_refusal(&self, e: &ServerError) {
        self.server.metrics().refused(match e {
            ServerError::Invalid(_) => "invalid",
            ServerError::Duplicate(_) => "duplicate",
            ServerError::Unavailable(_) => "unavailable",
            _ => "backend",
        })
    }
}

/// Per-client (IP) limit on requests in a sliding minute. Its memory is bounded: a client's
/// entry is dropped once its minute is over (checked on every request, whole map at most once
/// a minute), and at most [`RateLimiter::MAX_CLIENTS`] clients are tracked (beyond that new
/// clients are refused until entries expire: a flood from many addresses cannot grow it).
struct RateLimiter {
    per_minute: usize,
    seen: std::sync::Mutex<(std::time::Instant, HashMap<IpAddr, VecDeque<std::time::Instant>>)>,
}

impl RateLimiter {
    /// Most clients tracked at once.
    const MAX_CLIENTS: usize = 100_000;
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

    fn new(per_minute: usize) -> RateLimiter {
        RateLimiter {
            per_minute,
            seen: std::sync::Mutex::new((std::time::Instant::now(), HashMap::new())),
        }
    }

    fn allow(&self, ip: IpAddr) -> bool {
        let now = std::time::Instant::now();
        let mut guard = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (pruned, seen) = &mut *guard;
        if now.duration_since(*pruned) > Self::WINDOW {
            seen.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) <= Self::WINDOW));
            *pruned = now;
        }
        if !seen.contains_key(&ip) && seen.len() >= Self::MAX_CLIENTS {
            return false;
        }
        let q = seen.entry(ip).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) > Self::WINDOW) {
            q.pop_front();
        }
        if q.len() >= self.per_minute {
            return false;
        }
        q.push_back(now);
        true
    }

    /// Clients tracked now (tests: the map is pruned).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).1.len()
    }
}

#[utoipa::path(get, path = "/v1/terms", responses((status = 200, description = "The server's terms", body = Terms)))]
async fn terms(State(st): State<Arc<AppState>>) -> Json<Terms> {
    Json(st.terms.clone())
}

#[utoipa::path(post, path = "/v1/loop-out", request_body = LoopOutCreateDoc, responses(
    (status = 201, description = "The offer (both hold invoices, the server key, E, the HTLC address)", body = LoopOutOfferDoc),
    (status = 400, description = "Malformed request or amount out of range", body = ErrorBody),
    (status = 409, description = "A swap for this payment hash exists", body = ErrorBody),
    (status = 429, description = "Too many requests from this client", body = ErrorBody),
    (status = 503, description = "Not enough liquidity or capacity now", body = ErrorBody),
))]
async fn loop_out(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<LoopOutCreate>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = st.admit(peer, &headers, body)?;
    let offer = st
        .server
        .create_loop_out(&req)
        .await
        .inspect_err(|e| st.count_refusal(e))?;
    Ok((StatusCode::CREATED, Json(offer)))
}

/// `GET /v1/quote/loop-out?amount=<sat>` query.
#[derive(Debug, Deserialize, ToSchema, IntoParams)]
pub struct QuoteQuery {
    /// HTLC amount, sat.
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

#[utoipa::path(get, path = "/v1/quote/loop-out", params(QuoteQuery), responses(
    (status = 200, description = "What a loop-out of this amount costs", body = Quote),
    (status = 400, description = "Amount missing or out of range", body = ErrorBody),
))]
async fn quote(
    State(st): State<Arc<AppState>>,
    q: Result<Query<QuoteQuery>, QueryRejection>,
) -> Result<Json<Quote>, ApiError> {
    let Query(q) = q.map_err(|r| ApiError(StatusCode::BAD_REQUEST, format!("malformed query: {}", r.body_text())))?;
    let quote = st.server.quote(bitcoin::Amount::from_sat(q.amount))?;
    Ok(Json(Quote {
        amount_sat: quote.amount.to_sat(),
        swap_fee_sat: quote.swap_fee.to_sat(),
        prepay_sat: quote.prepay.to_sat(),
        swap_invoice_sat: quote.swap_invoice_amount.to_sat(),
        expiry_delta: st.terms.expiry_delta,
    }))
}

/// The metrics router: `GET /metrics`, Prometheus text exposition. It shows the swap wallet's
/// balance, so it is served on its own listen address (the `metrics_listen` setting, loopback
/// by default), never on the public API's.
pub fn metrics_router(server: Arc<LoopOutServer>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let server = server.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    server.metrics().render(),
                )
            }
        }),
    )
}

/// Seed 000's loop-out request (field names as its client sends them).
#[derive(Debug, Deserialize, ToSchema)]
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

/// `POST /api/loop/out`: seed 000's exchange, unchanged. The HTLC is seed 000's BIP199 P2WSH
/// (`OP_SHA256 <hash> OP_EQUAL OP_IF OP_DUP OP_HASH160 <claim> OP_ELSE 40 OP_CSV OP_DROP OP_DUP
/// OP_HASH160 <refund> OP_ENDIF OP_EQUALVERIFY OP_CHECKSIG`), paying exactly `loopOutSats`.
#[utoipa::path(post, path = "/api/loop/out", request_body = SeedLoopOutRequest, responses(
    (status = 200, description = "The refund address and the hold invoice", body = SeedLoopOutResponse),
    (status = 400, description = "Malformed request, not a P2WPKH address of this network, bad hash, amount out of range", body = ErrorBody),
    (status = 409, description = "A swap for this hash exists", body = ErrorBody),
    (status = 429, description = "Too many requests from this client", body = ErrorBody),
    (status = 503, description = "Not enough liquidity or capacity now", body = ErrorBody),
))]
async fn seed_loop_out(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<SeedLoopOutRequest>, JsonRejection>,
) -> Result<Json<SeedLoopOutResponse>, ApiError> {
    let req = st.admit(peer, &headers, body)?;
    let invalid = |m: String| {
        st.server.metrics().refused("invalid");
        ApiError(StatusCode::BAD_REQUEST, m)
    };
    let network = st.server.network();
    let address = bitcoin::Address::from_str(req.htlc_claim_address.trim())
        .map_err(|e| invalid(format!("htlcClaimAddress is not an address: {e}")))?
        .require_network(network)
        .map_err(|_| invalid(format!("htlcClaimAddress is not a {network} address")))?;
    let pkh = match address.witness_program() {
        Some(p) if p.is_p2wpkh() => {
            let bytes: [u8; 20] = p
                .program()
                .as_bytes()
                .try_into()
                .map_err(|_| invalid("htlcClaimAddress: bad witness program".into()))?;
            bitcoin::PubkeyHash::from_byte_array(bytes)
        }
        _ => return Err(invalid("htlcClaimAddress must be a P2WPKH address".into())),
    };
    let hash = eddy_core::types::PaymentHash::from_str(&req.hash)
        .map_err(|_| invalid("hash must be 32 bytes of hex".into()))?;
    st.server
        .quote(bitcoin::Amount::from_sat(req.loop_out_sats))
        .map_err(|e| invalid(e.to_string().trim_start_matches("invalid request: ").to_string()))?;
    // No prepay in this protocol, so an unpaid offer costs its maker nothing: before anything
    // is created, its own tight limits apply (per client and from everyone together).
    let ip = st.client_ip(peer, &headers);
    if !st.seed_limiter.allow(ip) || !st.seed_total.allow(IpAddr::from([0, 0, 0, 0])) {
        st.server.metrics().refused("rate_limited");
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "seed-protocol swaps have no prepay: at most {} a minute per client and {} in all",
                st.seed_limiter.per_minute, st.seed_total.per_minute
            ),
        ));
    }
    let (refund, invoice) = st
        .server
        .create_seed_loop_out(bitcoin::Amount::from_sat(req.loop_out_sats), hash, pkh)
        .await
        .inspect_err(|e| st.count_refusal(e))?;
    Ok(Json(SeedLoopOutResponse {
        htlc_refund_address: refund.to_string(),
        payment_request: invoice,
    }))
}

fn parse_id(s: &str) -> Result<SwapId, ApiError> {
    SwapId::from_str(s).map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("not a swap id: {s:?}")))
}

#[utoipa::path(get, path = "/v1/swaps/{id}", params(("id" = String, Path, description = "swap id: the payment hash, hex"), AuthHeader), responses(
    (status = 200, description = "The swap's status (never any secret)", body = SwapStatus),
    (status = 400, description = "Not a swap id", body = ErrorBody),
    (status = 401, description = "Missing or bad x-eddy-swap-auth signature", body = ErrorBody),
    (status = 404, description = "Unknown swap", body = ErrorBody),
))]
async fn status(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<SwapStatus>, ApiError> {
    let id = parse_id(&id)?;
    authorize(&st, &id, &method, &uri, &headers, &[]).await?;
    Ok(Json(any_status(&st, &id).await?))
}

/// The per-swap authorization header (documented on every per-swap endpoint).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct AuthHeader {
    /// `<unix seconds>:<BIP340 signature hex>` by the key the client gave at creation
    /// (loop-out: claim key, loop-in: refund key) over the swap id, time, method, path and
    /// body (see `eddy_core::auth`).
    #[param(rename = "x-eddy-swap-auth")]
    x_eddy_swap_auth: String,
}

async fn any_status(st: &AppState, id: &SwapId) -> Result<SwapStatus, ServerError> {
    match st.server.swap(id).await {
        Ok((_, rec)) => Ok(status_of(id, &rec)),
        Err(ServerError::NotFound(_)) => {
            let (_, rec) = st.server.loop_in(id).await?;
            Ok(in_status_of(id, &rec))
        }
        Err(e) => Err(e),
    }
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

#[utoipa::path(get, path = "/v1/quote/loop-in", params(QuoteQuery), responses(
    (status = 200, description = "What a loop-in of this amount costs", body = QuoteIn),
    (status = 400, description = "Amount missing or out of range", body = ErrorBody),
))]
async fn quote_in(
    State(st): State<Arc<AppState>>,
    q: Result<Query<QuoteQuery>, QueryRejection>,
) -> Result<Json<QuoteIn>, ApiError> {
    let Query(q) = q.map_err(|r| ApiError(StatusCode::BAD_REQUEST, format!("malformed query: {}", r.body_text())))?;
    let quote = st.server.quote_in(bitcoin::Amount::from_sat(q.amount))?;
    Ok(Json(QuoteIn {
        amount_sat: quote.amount.to_sat(),
        swap_fee_sat: quote.swap_fee.to_sat(),
        invoice_sat: quote.invoice_amount.to_sat(),
        expiry_delta: eddy_core::constants::DEFAULT_LOOP_IN_EXPIRY_DELTA,
    }))
}

/// The loop-in request (schema of `eddy_server::loop_in::LoopInCreate`).
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

/// The server's loop-in answer (schema of `eddy_core::validate::LoopInOffer`).
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

#[utoipa::path(post, path = "/v1/loop-in", request_body = LoopInCreateDoc, responses(
    (status = 201, description = "The HTLC to fund", body = LoopInOfferDoc),
    (status = 400, description = "Malformed request, bad invoice (amount ≠ amount − fee, network, lifetime, final CLTV)", body = ErrorBody),
    (status = 409, description = "A swap for this payment hash exists", body = ErrorBody),
    (status = 429, description = "Too many requests from this client", body = ErrorBody),
    (status = 503, description = "Not enough capacity now", body = ErrorBody),
))]
async fn loop_in(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<crate::loop_in::LoopInCreate>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = st.admit(peer, &headers, body)?;
    let offer = st
        .server
        .create_loop_in(&req)
        .await
        .inspect_err(|e| st.count_refusal(e))?;
    Ok((StatusCode::CREATED, Json(offer)))
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

#[utoipa::path(get, path = "/v1/swaps/{id}/claim", params(("id" = String, Path, description = "swap id"), AuthHeader), responses(
    (status = 200, description = "The loop-in claim the server asks the client to co-sign (only once the server has paid)", body = ClaimOffer),
    (status = 400, description = "No claim to co-sign now", body = ErrorBody),
    (status = 401, description = "Missing or bad x-eddy-swap-auth signature", body = ErrorBody),
    (status = 404, description = "Unknown swap", body = ErrorBody),
))]
async fn claim_offer(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<ClaimOffer>, ApiError> {
    use bitcoin::hex::DisplayHex;
    let id = parse_id(&id)?;
    // Only the client may (re)open the signing session.
    authorize(&st, &id, &method, &uri, &headers, &[]).await?;
    let (nonce, tx) = st.server.claim_request(&id).await?;
    Ok(Json(ClaimOffer {
        nonce: nonce.to_lower_hex_string(),
        tx: bitcoin::consensus::encode::serialize_hex(&tx),
    }))
}

#[utoipa::path(post, path = "/v1/swaps/{id}/claim-cosign", params(("id" = String, Path, description = "swap id"), AuthHeader), request_body = ClaimCosign, responses(
    (status = 204, description = "Aggregated and broadcast"),
    (status = 400, description = "Bad nonce or partial signature, or no claim offered", body = ErrorBody),
    (status = 401, description = "Missing or bad x-eddy-swap-auth signature", body = ErrorBody),
    (status = 404, description = "Unknown swap", body = ErrorBody),
))]
async fn claim_cosign(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    use bitcoin::hex::FromHex;
    let id = parse_id(&id)?;
    authorize(&st, &id, &method, &uri, &headers, &body).await?;
    let b: ClaimCosign = json_body(&body)?;
    let nonce = <[u8; eddy_core::musig::PUB_NONCE_LEN]>::from_hex(&b.nonce)
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "nonce must be 66 bytes of hex".into()))?;
    let partial = <[u8; 32]>::from_hex(&b.partial_sig)
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "partial_sig must be 32 bytes of hex".into()))?;
    st.server.claim_cosigned(&id, &nonce, &partial).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/swaps/{id}/refund-cosign", params(("id" = String, Path, description = "swap id"), AuthHeader), request_body = CosignRequest, responses(
    (status = 200, description = "The server's MuSig2 nonce and partial signature for the client's key-path refund of a loop-in the server will not pay", body = CosignResponse),
    (status = 400, description = "The server paid or is paying, or not a refund of this HTLC", body = ErrorBody),
    (status = 401, description = "Missing or bad x-eddy-swap-auth signature", body = ErrorBody),
    (status = 404, description = "Unknown swap", body = ErrorBody),
))]
async fn refund_cosign(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CosignResponse>, ApiError> {
    let id = parse_id(&id)?;
    authorize(&st, &id, &method, &uri, &headers, &body).await?;
    let (nonce, tx) = cosign_request(&body)?;
    Ok(Json(CosignResponse::from(
        st.server.cosign_refund(&id, &nonce, &tx).await?,
    )))
}

#[utoipa::path(post, path = "/v1/swaps/{id}/preimage", params(("id" = String, Path, description = "swap id")), request_body = PreimageBody, responses(
    (status = 204, description = "Learned; the swap invoice is being settled"),
    (status = 400, description = "Not 32 bytes of hex, or not this swap's preimage", body = ErrorBody),
    (status = 404, description = "Unknown swap", body = ErrorBody),
))]
async fn push_preimage(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<PreimageBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let Json(b) = body.map_err(bad_json)?;
    let preimage = Preimage::from_hex(&b.preimage)
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "preimage must be 32 bytes of hex".into()))?;
    if SwapId::from(preimage.payment_hash()) != id {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "preimage does not match the swap".into(),
        ));
    }
    st.server.push_preimage(&preimage).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/swaps/{id}/cosign", params(("id" = String, Path, description = "swap id"), AuthHeader), request_body = CosignRequest, responses(
    (status = 200, description = "The server's MuSig2 nonce and partial signature for the key-path claim", body = CosignResponse),
    (status = 400, description = "Preimage not yet known to the server, or not a claim of this HTLC", body = ErrorBody),
    (status = 401, description = "Missing or bad x-eddy-swap-auth signature", body = ErrorBody),
    (status = 404, description = "Unknown swap", body = ErrorBody),
))]
async fn cosign(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CosignResponse>, ApiError> {
    let id = parse_id(&id)?;
    authorize(&st, &id, &method, &uri, &headers, &body).await?;
    let (nonce, tx) = cosign_request(&body)?;
    Ok(Json(CosignResponse::from(
        st.server.cosign_claim(&id, &nonce, &tx).await?,
    )))
}

/// The client's nonce and unsigned transaction of a co-signing request, checked.
fn cosign_request(body: &[u8]) -> Result<(eddy_core::musig::PubNonceBytes, bitcoin::Transaction), ApiError> {
    use bitcoin::hex::FromHex;
    let b: CosignRequest = json_body(body)?;
    let nonce = <[u8; eddy_core::musig::PUB_NONCE_LEN]>::from_hex(&b.nonce)
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "nonce must be 66 bytes of hex".into()))?;
    let tx = bitcoin::consensus::encode::deserialize_hex(&b.tx)
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "tx is not a transaction".into()))?;
    Ok((nonce, tx))
}

impl From<(eddy_core::musig::PubNonceBytes, eddy_core::musig::PartialSigBytes)> for CosignResponse {
    fn from((nonce, partial): (eddy_core::musig::PubNonceBytes, eddy_core::musig::PartialSigBytes)) -> Self {
        use bitcoin::hex::DisplayHex;
        CosignResponse {
            nonce: nonce.to_lower_hex_string(),
            partial_sig: partial.to_lower_hex_string(),
        }
    }
}

/// `GET /v1/swaps/{id}/events`: a server-sent event stream of the swap's status (loop-out or
/// loop-in), one event per change, ending once the swap is final.
#[utoipa::path(get, path = "/v1/swaps/{id}/events", params(("id" = String, Path, description = "swap id"), AuthHeader), responses(
    (status = 200, description = "text/event-stream of `status` events, each a SwapStatus; ends at a final state", content_type = "text/event-stream", body = SwapStatus),
    (status = 401, description = "Missing or bad x-eddy-swap-auth signature", body = ErrorBody),
    (status = 404, description = "Unknown swap", body = ErrorBody),
))]
async fn events(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let id = parse_id(&id)?;
    // Unknown ids and strangers are refused before the stream starts.
    authorize(&st, &id, &method, &uri, &headers, &[]).await?;
    let stream = futures::stream::unfold((st, id, String::new(), false), |(st, id, last, done)| async move {
        if done {
            return None;
        }
        loop {
            let Ok(status) = any_status(&st, &id).await else {
                return None;
            };
            let key = format!("{}:{:?}", status.state, status.htlc_outpoint);
            if key != last {
                let terminal = status.terminal;
                let data = serde_json::to_string(&status).unwrap_or_default();
                return Some((Ok(Event::default().event("status").data(data)), (st, id, key, terminal)));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn status_of(id: &SwapId, rec: &crate::loop_out::LoopOutRecord) -> SwapStatus {
    SwapStatus::new(id, &rec.state, rec.state.is_terminal(), rec.terms.expiry, rec.funding)
}

fn in_status_of(id: &SwapId, rec: &crate::loop_in::LoopInRecord) -> SwapStatus {
    SwapStatus::new(id, &rec.state, rec.state.is_terminal(), rec.terms.expiry, rec.funding)
}

impl SwapStatus {
    fn new<S: Serialize>(
        id: &SwapId,
        state: &S,
        terminal: bool,
        expiry: u32,
        funding: Option<bitcoin::OutPoint>,
    ) -> SwapStatus {
        SwapStatus {
            id: id.to_string(),
            state: eddy_store::state_name(state),
            terminal,
            expiry,
            htlc_outpoint: funding.map(|o| o.to_string()),
        }
    }
}

/// The router; `per_minute` limits swap-creation requests per client IP (see [`Limits::new`]).
pub fn router(server: Arc<LoopOutServer>, terms: Terms, per_minute: usize) -> Router {
    router_with(server, terms, Limits::new(per_minute))
}

/// The router with explicit [`Limits`].
pub fn router_with(server: Arc<LoopOutServer>, terms: Terms, limits: Limits) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .route("/v1/terms", get(self::terms))
        .route("/v1/quote/loop-out", get(quote))
        .route("/v1/loop-out", post(loop_out))
        .route("/api/loop/out", post(seed_loop_out))
        .route("/v1/quote/loop-in", get(quote_in))
        .route("/v1/loop-in", post(loop_in))
        .route("/v1/swaps/{id}/refund-cosign", post(refund_cosign))
        .route("/v1/swaps/{id}/claim", get(claim_offer))
        .route("/v1/swaps/{id}/claim-cosign", post(claim_cosign))
        .route("/v1/swaps/{id}", get(status))
        .route("/v1/swaps/{id}/events", get(events))
        .route("/v1/swaps/{id}/preimage", post(push_preimage))
        .route("/v1/swaps/{id}/cosign", post(cosign))
        .with_state(Arc::new(AppState {
            server,
            terms,
            limiter: RateLimiter::new(limits.per_minute),
            seed_limiter: RateLimiter::new(limits.seed_per_minute),
            seed_total: RateLimiter::new(limits.seed_total_per_minute),
            trusted_proxy: limits.trusted_proxy,
        }))
}

/// A running HTTP server; stops when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl HttpServer {
    /// Serves `router` on `bind` (tests: `127.0.0.1:0`).
    pub async fn start(router: Router, bind: SocketAddr) -> std::io::Result<HttpServer> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(HttpServer {
            addr,
            shutdown: Some(tx),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_and_database_text_never_reaches_the_caller() {
        for e in [
            ServerError::Backend("lnd at 10.1.2.3:10009: macaroon /var/lib/lnd/admin.macaroon refused".into()),
            ServerError::Store(eddy_store::StoreError::Db(
                "sqlite /srv/eddy/server.sqlite: disk I/O error".into(),
            )),
        ] {
            let ApiError(status, msg) = ApiError::from(e);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(msg.starts_with("internal error (id "), "{msg}");
            for secret in ["10.1.2.3", "macaroon", "sqlite", "/srv", "disk"] {
                assert!(!msg.contains(secret), "{msg}");
            }
        }
        // The server's own refusals keep their clear message.
        let ApiError(status, msg) = ApiError::from(ServerError::Invalid("amount 5 below 10000".into()));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(msg.contains("amount 5 below 10000"));
    }

    #[test]
    fn the_rate_limiter_forgets_clients_whose_minute_is_over() {
        let l = RateLimiter::new(2);
        for i in 0..50u8 {
            assert!(l.allow(IpAddr::from([10, 0, 0, i])));
        }
        assert!(l.allow(IpAddr::from([10, 0, 0, 1])));
        assert!(!l.allow(IpAddr::from([10, 0, 0, 1])), "third in a minute");
        assert_eq!(l.tracked(), 50);
        // Pretend the last prune and every request were more than a minute ago.
        {
            let mut g = l.seen.lock().expect("lock");
            let old = std::time::Instant::now() - RateLimiter::WINDOW - std::time::Duration::from_secs(1);
            g.0 = old;
            for q in g.1.values_mut() {
                for t in q.iter_mut() {
                    *t = old;
                }
            }
        }
        assert!(l.allow(IpAddr::from([10, 0, 0, 200])));
        assert_eq!(l.tracked(), 1, "expired clients pruned");
    }
}
