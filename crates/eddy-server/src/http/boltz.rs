//! Boltz API v2's front door (`/v2/...`), beside Eddy's own `/v1` API: the same engines, store
//! and safety rules behind the shapes Boltz wallets speak (`eddy_core::boltz`,
//! `docs/boltz-api.md`). Served so far: reverse swaps (Lightning → chain: Eddy's loop-outs),
//! their status, lockup transaction and cooperative claim, and the chain's height and fee.
//!
//! A reverse swap has no prepay, so its maker risks nothing: creations share the seed
//! protocol's tight limits (per client and from everyone together), count in the client's
//! offer budget and in the engine's budget of no-prepay offers. Swaps are named by a random
//! 12-character id (stored as `boltz:<id>` → swap id), never by the payment hash every node on
//! the payment's route sees; only swaps made through this door are answered here. Every
//! refusal is Boltz's `{"error": "…"}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::hex::DisplayHex;
use bitcoin::{Amount, FeeRate};
use eddy_core::boltz::{self as wire, BoltzError, ReverseAmount};
use eddy_core::htlc::Htlc;
use eddy_core::types::SwapId;
use serde_json::{json, Value};

use super::boltz_doc::{self, BoltzIdPath, TxidPath};
use super::{ApiError, AppState};
use crate::loop_out::ServerLoopOut;
use crate::server_core::ServerError;
use eddy_core::api::ErrorBody;
use eddy_store::SwapKind;

/// Confirmation target of the claim estimate the pair shows (`minerFees.claim`).
const CLAIM_ESTIMATE_TARGET: u16 = 6;
/// The smallest output a P2TR claim may create (bitcoind's dust limit for P2TR is 330 sat).
const P2TR_DUST: Amount = Amount::from_sat(330);

/// The `/v2` routes.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v2/swap/reverse", get(reverse_pairs).post(create_reverse))
        .route("/v2/swap/reverse/{id}/transaction", get(reverse_transaction))
        .route("/v2/swap/reverse/{id}/claim", post(reverse_claim))
        .route("/v2/swap/{id}", get(swap_status))
        .route("/v2/chain/BTC/height", get(height))
        .route("/v2/chain/BTC/fee", get(fee))
        .route("/v2/chain/BTC/transaction", post(broadcast))
        .route("/v2/chain/BTC/transaction/{id}", get(chain_transaction))
        .route("/v2/nodes", get(nodes))
        .route("/v2/ws", get(super::boltz_ws::upgrade))
        .merge(super::submarine::routes())
}

pub(super) fn refused(e: BoltzError) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, e.to_string())
}

/// A creation's request refused: counted by reason (malformed or invalid), answered 400.
pub(super) fn refused_creation(st: &AppState, e: BoltzError) -> ApiError {
    let malformed = matches!(&e, BoltzError::Parse(p) if p.is_malformed());
    st.server
        .metrics()
        .refused(if malformed { "malformed" } else { "invalid" });
    refused(e)
}

/// An engine's refusal in Boltz's words: the reason without Eddy's "invalid request:" prefix,
/// a second swap for a hash as Boltz says it (`what`: "invoice" or "preimage hash"); the rest
/// as on `/v1` (backend failures generic, with an error id).
pub(super) fn engine_refusal(e: ServerError, what: &str) -> ApiError {
    match e {
        ServerError::Invalid(m) => ApiError(StatusCode::BAD_REQUEST, m),
        ServerError::Duplicate(_) => ApiError(StatusCode::CONFLICT, format!("a swap with this {what} exists already")),
        e => e.into(),
    }
}

/// 404 for `id`, named only when it has a swap id's shape (the caller's text is not echoed).
pub(super) fn not_found(id: &str) -> ApiError {
    let named = if wire::is_swap_id(id) { id } else { "(not a swap id)" };
    ApiError(StatusCode::NOT_FOUND, format!("could not find swap with id: {named}"))
}

/// How long the chain figures the open calls show are kept.
const FIGURES_FOR: Duration = Duration::from_secs(5);

/// What the open `/v2` calls (no signature, no body) read of the chain, kept for
/// [`FIGURES_FOR`] and fetched by one caller at a time: a flood of them costs the node at most
/// three calls every few seconds, never the engine's own calls.
#[derive(Default)]
pub(super) struct ChainFigures {
    kept: tokio::sync::Mutex<Option<(Instant, Figures)>>,
    /// The node's id, asked once.
    node: tokio::sync::OnceCell<bitcoin::secp256k1::PublicKey>,
    /// The WebSocket's connections.
    pub(super) sockets: super::boltz_ws::Sockets,
    /// Held by each transaction lookup an open call makes: one at a time, whatever the number
    /// of callers (a lookup may cost the node a scan of its recent blocks).
    pub(super) lookups: tokio::sync::Mutex<()>,
}

#[derive(Clone, Copy)]
struct Figures {
    tip: u32,
    claim_rate: FeeRate,
    publish_rate: FeeRate,
}

impl ChainFigures {
    async fn now(&self, st: &AppState) -> Result<Figures, ApiError> {
        let mut kept = self.kept.lock().await;
        if let Some((at, f)) = *kept {
            if at.elapsed() < FIGURES_FOR {
                return Ok(f);
            }
        }
        let core = st.server.core();
        let backend = |e: eddy_backends::ChainSourceError| ApiError::from(ServerError::Backend(e.to_string()));
        let f = Figures {
            tip: core.tip().await?,
            claim_rate: core.chain.fee_rate(CLAIM_ESTIMATE_TARGET).await.map_err(backend)?,
            publish_rate: core.publish_rate().await?,
        };
        *kept = Some((Instant::now(), f));
        Ok(f)
    }
}

/// What a claim costs the client at the estimate (the key path, as Boltz's figure).
async fn claim_fee(st: &AppState) -> Result<Amount, ApiError> {
    let rate = st.boltz.now(st).await?.claim_rate;
    let (key_path, _) = eddy_core::tx::loop_out_claim_vbytes();
    Ok(rate.fee_vb(key_path).unwrap_or(Amount::MAX_MONEY))
}

async fn pair(st: &AppState) -> Result<(wire::ReversePair, Amount), ApiError> {
    let claim = claim_fee(st).await?;
    Ok((wire::reverse_pair(&st.server.core().cfg.fees, claim), claim))
}

/// `GET /v2/swap/reverse`: the BTC/BTC reverse pair.
#[utoipa::path(get, path = "/v2/swap/reverse", tag = "boltz-v2", responses(
    (status = 200, description = "The BTC/BTC reverse pair", body = boltz_doc::ReversePairs),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn reverse_pairs(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let (pair, _) = pair(&st).await?;
    Ok(Json(wire::reverse_pairs_body(&pair)))
}

/// `POST /v2/swap/reverse`: a loop-out with one hold invoice and the Boltz swap tree.
#[utoipa::path(post, path = "/v2/swap/reverse", request_body = boltz_doc::ReverseCreate, tag = "boltz-v2", responses(
    (status = 201, description = "The reverse swap: the invoice to pay and the HTLC", body = boltz_doc::ReverseCreated),
    (status = 400, description = "Malformed request, not BTC/BTC, both or neither amount, out of the limits, a stale pair hash, or a field Eddy does not serve", body = ErrorBody),
    (status = 409, description = "A swap for this preimage hash exists", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than the per-minute requests from this client (malformed ones count too), its live unpaid offers, or co-signing calls for this swap in a minute", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "The server cannot take this swap now (its liquidity, its reverse swaps' share of the slots, swaps in flight), a backend failed, or the request outlived the server's request deadline", body = ErrorBody),
))]
async fn create_reverse(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = st.admit(peer, &headers, body, |b| Ok(b.to_vec()))?;
    let req = wire::parse_reverse_request(&body).map_err(|e| refused_creation(&st, e))?;
    let (pair, claim) = pair(&st).await?;
    if req.pair_hash.as_ref().is_some_and(|h| *h != pair.hash) {
        st.server.metrics().refused("invalid");
        return Err(refused(BoltzError::PairHash));
    }
    // What reaches the chain must pay for its own claim and stay above dust.
    let quote = wire::reverse_quote(&st.server.core().cfg.fees, req.amount, claim + P2TR_DUST).map_err(|e| {
        st.server.metrics().refused("invalid");
        refused(e)
    })?;
    // No prepay: the seed protocol's limits, per client and from everyone together.
    let ip = st.no_prepay_allowed(peer, &headers, "reverse swaps")?;
    let id = SwapId::from(req.preimage_hash);
    let place = st.out_offers.reserve(&st.server, ip).await?.for_swap(Some(id));
    let made = st
        .server
        .loop_out
        .create_reverse(quote, req.preimage_hash, req.claim_key, req.description)
        .await;
    place.hold(made.is_ok().then_some(id));
    let offer = made
        .inspect_err(|e| st.count_refusal(e))
        .map_err(|e| engine_refusal(e, "preimage hash"))?;
    let boltz_id = wire::new_swap_id();
    keep_meta(&st, &meta_key(&boltz_id), &id.to_string()).await?;
    let (_, rec) = st.server.loop_out.swap(&id).await?;
    let Htlc::Taproot(htlc) = Htlc::new(rec.htlc).map_err(|e| ServerError::Backend(e.to_string()))? else {
        return Err(ServerError::Backend("a reverse swap's HTLC is P2TR".into()).into());
    };
    let mut answer = json!({
        "id": boltz_id,
        "invoice": offer.swap_invoice,
        "swapTree": wire::swap_tree(&htlc),
        "lockupAddress": offer.htlc_address,
        "refundPublicKey": offer.server_key.serialize().to_lower_hex_string(),
        "timeoutBlockHeight": offer.expiry,
    });
    if let ReverseAmount::Invoice(_) = req.amount {
        answer["onchainAmount"] = json!(quote.amount.to_sat());
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

pub(super) fn meta_key(boltz_id: &str) -> String {
    format!("boltz:{boltz_id}")
}

/// The store's meta row `key` (this door's ids, reservations and their marks).
pub(super) async fn meta(st: &AppState, key: &str) -> Result<Option<String>, ApiError> {
    Ok(st.server.core().store.get_meta(key).await.map_err(ServerError::from)?)
}

/// Writes the store's meta row `key`.
pub(super) async fn keep_meta(st: &AppState, key: &str, value: &str) -> Result<(), ApiError> {
    Ok(st
        .server
        .core()
        .store
        .set_meta(key, value)
        .await
        .map_err(ServerError::from)?)
}

/// A co-signature answered in Boltz's shape: the server's nonce and partial signature.
pub(super) fn cosigned(
    nonce: &eddy_core::musig::PubNonceBytes,
    partial: &eddy_core::musig::PartialSigBytes,
) -> Json<Value> {
    Json(json!({
        "pubNonce": nonce.to_lower_hex_string(),
        "partialSignature": partial.to_lower_hex_string(),
    }))
}

/// The swap made through this door under `boltz_id`, and its kind (404 otherwise, before any
/// other work).
pub(super) async fn boltz_swap(
    st: &AppState,
    boltz_id: Result<Path<String>, PathRejection>,
) -> Result<(String, SwapId, SwapKind), ApiError> {
    let Path(boltz_id) = boltz_id.map_err(|_| not_found("?"))?;
    if !wire::is_swap_id(&boltz_id) {
        return Err(not_found(&boltz_id));
    }
    let Some(id) = meta(st, &meta_key(&boltz_id))
        .await?
        .and_then(|v| v.parse::<SwapId>().ok())
    else {
        return Err(not_found(&boltz_id));
    };
    let kind = st
        .server
        .core()
        .kind_of(&id)
        .await
        .ok_or_else(|| not_found(&boltz_id))?;
    Ok((boltz_id, id, kind))
}

/// The loop-out made through this door under `boltz_id` (404 otherwise, before any other work).
async fn reverse_swap(
    st: &AppState,
    boltz_id: Result<Path<String>, PathRejection>,
) -> Result<(String, SwapId, ServerLoopOut), ApiError> {
    let (boltz_id, id, kind) = boltz_swap(st, boltz_id).await?;
    if kind != SwapKind::LoopOutServer {
        return Err(not_found(&boltz_id));
    }
    let (_, rec) = st.server.loop_out.swap(&id).await.map_err(|e| match e {
        ServerError::NotFound(_) => not_found(&boltz_id),
        e => e.into(),
    })?;
    Ok((boltz_id, id, rec))
}

/// `GET /v2/swap/{id}`: the swap's status in Boltz's names, with the lockup transaction once
/// it is out.
#[utoipa::path(get, path = "/v2/swap/{id}", params(BoltzIdPath), tag = "boltz-v2", responses(
    (status = 200, description = "The swap's status", body = boltz_doc::BoltzStatus),
    (status = 404, description = "No swap of this kind was made through this door under this id", body = ErrorBody),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn swap_status(
    State(st): State<Arc<AppState>>,
    boltz_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(status_of(&st, boltz_id).await?))
}

/// The status body of the swap under `boltz_id` (`GET /v2/swap/{id}`, and the WebSocket's
/// updates).
pub(super) async fn status_of(st: &AppState, boltz_id: Result<Path<String>, PathRejection>) -> Result<Value, ApiError> {
    let Path(asked) = boltz_id.map_err(|_| not_found("?"))?;
    let (boltz_id, id, kind) = match boltz_swap(st, Ok(Path(asked.clone()))).await {
        Ok(found) => found,
        // Made for a hash, its invoice not set: created, or expired once it cannot come.
        Err(e) => {
            if wire::is_swap_id(&asked) {
                if let Some(r) = super::submarine::reserved(st, &asked).await? {
                    return super::submarine::reservation_status(st, &asked, &r).await;
                }
            }
            return Err(e);
        }
    };
    if kind == SwapKind::LoopInServer {
        return super::submarine::status(st, &id).await;
    }
    let (_, id, rec) = reverse_swap(st, Ok(Path(boltz_id))).await?;
    let seen = st.server.core().htlc_status(&id, &rec.htlc).await?;
    let confirmed = rec.our_funding(&seen).is_some_and(|f| f.height.is_some());
    let (status, reason) = wire::reverse_status(&rec.state, confirmed);
    let mut body = json!({ "status": status });
    if status.starts_with("transaction.") && status != "transaction.refunded" && status != "transaction.failed" {
        if let (Some(f), Some(hex)) = (rec.funding, rec.htlc_tx.as_ref()) {
            body["transaction"] = json!({"id": f.txid.to_string(), "hex": hex});
        }
    }
    if let Some(r) = reason {
        body["failureReason"] = json!(r);
    }
    Ok(body)
}

/// `GET /v2/swap/reverse/{id}/transaction`: the lockup transaction.
#[utoipa::path(get, path = "/v2/swap/reverse/{id}/transaction", params(BoltzIdPath), tag = "boltz-v2", responses(
    (status = 200, description = "The lockup transaction", body = boltz_doc::LockupTransaction),
    (status = 400, description = "No coins were locked up yet", body = ErrorBody),
    (status = 404, description = "No swap of this kind was made through this door under this id", body = ErrorBody),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn reverse_transaction(
    State(st): State<Arc<AppState>>,
    boltz_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (_, _, rec) = reverse_swap(&st, boltz_id).await?;
    match (rec.funding, rec.htlc_tx.as_ref(), rec.is_published()) {
        (Some(f), Some(hex), true) => Ok(Json(json!({
            "id": f.txid.to_string(),
            "hex": hex,
            "timeoutBlockHeight": rec.terms.expiry,
        }))),
        _ => Err(ApiError(StatusCode::BAD_REQUEST, "no coins were locked up yet".into())),
    }
}

/// `POST /v2/swap/reverse/{id}/claim`: the preimage (the invoice is settled with it, as a push
/// to `/v1/swaps/{id}/preimage` would), and the key-path claim co-signed if one is sent — a
/// one-input transaction spending this swap's HTLC, as the `/v1` co-signing takes.
#[utoipa::path(post, path = "/v2/swap/reverse/{id}/claim", params(BoltzIdPath), request_body = boltz_doc::ReverseClaim, tag = "boltz-v2", responses(
    (status = 200, description = "The preimage taken; the claim co-signed if one was sent", body = boltz_doc::Cosigned),
    (status = 400, description = "Malformed request, a wrong preimage, or a claim that cannot be co-signed", body = ErrorBody),
    (status = 404, description = "No swap of this kind was made through this door under this id", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than the per-minute requests from this client (malformed ones count too), its live unpaid offers, or co-signing calls for this swap in a minute", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn reverse_claim(
    State(st): State<Arc<AppState>>,
    boltz_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let (_, id, rec) = reverse_swap(&st, boltz_id).await?;
    let body = super::body_bytes(body)?;
    super::json_content_type(&headers)?;
    let req = wire::parse_reverse_claim(&body).map_err(refused)?;
    if req.preimage.payment_hash() != rec.htlc.payment_hash {
        return Err(ApiError(StatusCode::BAD_REQUEST, "invalid preimage".into()));
    }
    if !st.cosign_limiter.allow(id) {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "more than {} co-signing calls for this swap in a minute",
                super::COSIGN_CALLS_PER_SWAP_PER_MINUTE
            ),
        ));
    }
    st.server.loop_out.push_preimage(&req.preimage).await?;
    let Some((nonce, tx, index)) = req.cosign else {
        return Ok(Json(json!({})));
    };
    if index != 0 || tx.input.len() != 1 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "only a one-input claim (index 0) is co-signed".into(),
        ));
    }
    let (server_nonce, partial) = st.server.loop_out.cosign_claim(&id, &nonce, &tx, 0, None).await?;
    Ok(cosigned(&server_nonce, &partial))
}

/// `GET /v2/chain/BTC/height`: the chain's tip.
#[utoipa::path(get, path = "/v2/chain/BTC/height", tag = "boltz-v2", responses(
    (status = 200, description = "The tip", body = boltz_doc::Height),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn height(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let tip = st.boltz.now(&st).await?.tip;
    Ok(Json(json!({ "height": tip })))
}

/// `GET /v2/chain/BTC/fee`: the fee estimate the server publishes at, in sat/vB.
#[utoipa::path(get, path = "/v2/chain/BTC/fee", tag = "boltz-v2", responses(
    (status = 200, description = "The estimate, sat/vB", body = boltz_doc::Fee),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn fee(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let rate = st.boltz.now(&st).await?.publish_rate;
    Ok(Json(json!({ "fee": rate.to_sat_per_kwu() as f64 * 4.0 / 1000.0 })))
}

#[utoipa::path(get, path = "/v2/nodes", tag = "boltz-v2", responses(
    (status = 200, description = "The server's Lightning node, keyed by asset and implementation", body = boltz_doc::Nodes),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
/// `GET /v2/nodes`: the server's Lightning node, keyed by asset and implementation as Boltz
/// keys its own (`{"BTC": {"LDK": {"publicKey", "uris"}}}`). No URIs are announced: a wallet
/// that wants a channel asks the operator.
async fn nodes(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let ln = st.server.core().ln();
    let key = st
        .boltz
        .node
        .get_or_try_init(|| async {
            ln.info()
                .await
                .map(|i| i.pubkey)
                .map_err(|e| ApiError::from(ServerError::Backend(e.to_string())))
        })
        .await?;
    let mut by_kind = serde_json::Map::new();
    by_kind.insert(
        ln.implementation().to_string(),
        json!({"publicKey": key.serialize().to_lower_hex_string(), "uris": []}),
    );
    Ok(Json(json!({ wire::ASSET: by_kind })))
}

#[utoipa::path(post, path = "/v2/chain/BTC/transaction", request_body = boltz_doc::BroadcastRequest, tag = "boltz-v2", responses(
    (status = 201, description = "Broadcast", body = boltz_doc::BroadcastAnswer),
    (status = 400, description = "Malformed request, not a transaction, or refused by the node's mempool (its reason)", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than the per-minute requests from this client", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
/// `POST /v2/chain/BTC/transaction`: broadcasts a wallet's transaction (its claim or refund),
/// counted in the caller's per-minute requests like a creation.
async fn broadcast(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = st.admit(peer, &headers, body, |b| Ok(b.to_vec()))?;
    let tx = wire::parse_broadcast(&body).map_err(refused)?;
    match st.server.core().chain.broadcast(&tx).await {
        Ok(txid) => Ok((StatusCode::CREATED, Json(json!({ "id": txid.to_string() })))),
        // The transaction's own refusals (verify, rejected, already in the chain); anything
        // else is the node's trouble, answered generically.
        Err(eddy_backends::BroadcastError::Rejected {
            code: -27..=-25,
            reason,
        }) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("transaction refused: {reason}"),
        )),
        Err(e) => Err(ServerError::Backend(e.to_string()).into()),
    }
}

#[utoipa::path(get, path = "/v2/chain/BTC/transaction/{id}", params(TxidPath), tag = "boltz-v2", responses(
    (status = 200, description = "The transaction, and its confirmations once confirmed", body = boltz_doc::ChainTransaction),
    (status = 400, description = "Not a txid", body = ErrorBody),
    (status = 404, description = "Neither in the mempool nor in the blocks the server reads", body = ErrorBody),
    (status = 429, description = "More than the per-minute requests from this client", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
/// `GET /v2/chain/BTC/transaction/{id}`: a transaction from the mempool or the chain (without
/// `-txindex`, the node's recent blocks). A lookup may cost the node several calls, so it
/// counts in the caller's per-minute requests like a creation.
async fn chain_transaction(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    txid: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Ok(Path(txid)) = txid else {
        return Err(ApiError(StatusCode::BAD_REQUEST, "not a txid".into()));
    };
    let txid = wire::parse_txid(&txid).map_err(refused)?;
    st.allow(peer, &headers)?;
    let core = st.server.core();
    let found = {
        let _one = st.boltz.lookups.lock().await;
        core.chain.transaction(&txid).await
    }
    .map_err(|e| ServerError::Backend(e.to_string()))?
    .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "transaction not found".into()))?;
    let mut body = json!({ "hex": bitcoin::consensus::encode::serialize_hex(&found.tx) });
    if let Some(block) = found.block {
        let tip = core.tip().await?;
        body["confirmations"] = json!(tip.saturating_sub(block.height) + 1);
    }
    Ok(Json(body))
}
