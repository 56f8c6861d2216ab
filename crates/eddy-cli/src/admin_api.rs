//! The swap server's admin API (issue 14): its node's operator routes ([`crate::node_api`]) and
//! the swap wallet's — balance (spendable, unconfirmed, promised to paid swaps), deposit
//! address, withdrawal, rescan from a height. It listens on its own address (loopback by
//! default, never the public API's port) and takes its own token (`admin.token` in the
//! server's data dir, mode 0600); `GET /v1/openapi.json` describes it without the token.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::Amount;
use eddy_core::api::ErrorBody;
use eddy_server::{ServerError, SwapServer};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::node_api::{NodeApi, NodeError};

/// The admin token's file in the server's data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Default admin address (loopback).
pub const DEFAULT_ADMIN_LISTEN: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8283);

fn error(status: StatusCode, msg: impl Into<String>) -> NodeError {
    NodeError(status, msg.into())
}

fn server_error(e: ServerError) -> NodeError {
    let status = match &e {
        ServerError::Invalid(_) => StatusCode::BAD_REQUEST,
        ServerError::Unavailable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ServerError::NotFound(_) => StatusCode::NOT_FOUND,
        ServerError::Duplicate(_) => StatusCode::CONFLICT,
        ServerError::Backend(_) | ServerError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    NodeError(status, e.to_string())
}

/// Checks `Authorization: Bearer <token>` (constant time); 401 otherwise.
async fn require_token(State(token): State<Arc<String>>, req: Request, next: Next) -> Response {
    if !crate::node_api::bearer_matches(req.headers(), &token) {
        return error(
            StatusCode::UNAUTHORIZED,
            format!("missing or wrong token (Authorization: Bearer <contents of {ADMIN_TOKEN_FILE}>)"),
        )
        .into_response();
    }
    next.run(req).await
}

/// The admin router: node routes, wallet routes, behind `token`; the document without it.
pub fn router(engine: Arc<SwapServer>, node: Arc<NodeApi>, token: String) -> Router {
    Router::new()
        .route("/v1/wallet", get(wallet))
        .route("/v1/wallet/withdraw", post(withdraw))
        .route("/v1/wallet/rescan", post(rescan).get(rescan_progress))
        .with_state(engine)
        .merge(crate::node_api::router(node))
        .route_layer(axum::middleware::from_fn_with_state(Arc::new(token), require_token))
        .route("/v1/openapi.json", get(|| async { Json(document()) }))
}

/// The admin API's OpenAPI document.
pub fn document() -> serde_json::Value {
    let mut api = AdminApiDoc::openapi();
    api.merge(crate::node_api::NodeApiDoc::openapi());
    serde_json::to_value(api).unwrap_or_default()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Eddy server admin",
        version = "1",
        description = "The swap server's operator API (its own loopback listener and token): the node and the swap wallet."
    ),
    paths(wallet, withdraw, rescan, rescan_progress),
    components(schemas(RescanView, WalletView, WithdrawBody, Withdrawn, RescanBody, ErrorBody))
)]
struct AdminApiDoc;

/// `GET /v1/wallet` answer.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct WalletView {
    /// Deposit address: fund HTLCs from here.
    pub address: String,
    /// Confirmed coins and our own change, sat.
    pub spendable_sat: u64,
    /// Deposits waiting for a confirmation, sat.
    pub unconfirmed_sat: u64,
    /// Promised to paid loop-outs whose HTLC is not yet published, sat.
    pub promised_sat: u64,
    /// The configured reserve new swaps never take, sat.
    pub reserve_sat: u64,
    /// What a withdrawal may take before its fee, sat.
    pub withdrawable_sat: u64,
}

#[utoipa::path(get, path = "/v1/wallet", responses(
    (status = 200, description = "The swap wallet", body = WalletView),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 503, description = "The store failed", body = ErrorBody),
))]
async fn wallet(State(engine): State<Arc<SwapServer>>) -> Result<Json<WalletView>, NodeError> {
    let r = engine.wallet_report().await.map_err(server_error)?;
    Ok(Json(WalletView {
        address: engine.wallet_address().to_string(),
        spendable_sat: r.spendable.to_sat(),
        unconfirmed_sat: r.unconfirmed.to_sat(),
        promised_sat: r.promised.to_sat(),
        reserve_sat: r.reserve.to_sat(),
        withdrawable_sat: r.withdrawable.to_sat(),
    }))
}

/// `POST /v1/wallet/withdraw` body.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawBody {
    /// Where to.
    pub address: String,
    /// How much, sat; absent with `all`.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub amount_sat: Option<u64>,
    /// Everything not promised to paid swaps, less the fee.
    #[serde(default)]
    pub all: bool,
    /// Fee rate, sat/vB (default: the publication estimate).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    pub fee_rate_sat_per_vb: Option<u64>,
}

/// A withdrawal.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Withdrawn {
    /// Its transaction (broadcast).
    pub txid: String,
    /// Paid to the address, sat.
    pub amount_sat: u64,
    /// Its miner fee, sat.
    pub fee_sat: u64,
}

#[utoipa::path(post, path = "/v1/wallet/withdraw", request_body = WithdrawBody, responses(
    (status = 200, description = "Sent", body = Withdrawn),
    (status = 400, description = "Malformed request, an address not of this network, neither or both of amount_sat and all, or a fee rate out of range", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 422, description = "More than the wallet's confirmed coins hold beyond what paid swaps are promised (with their publication fees), or the transaction refused by the chain source (dust, a fee below its minimum)", body = ErrorBody),
    (status = 503, description = "The chain source or the store failed, or the request outlived the request deadline (the withdrawal itself runs to its end)", body = ErrorBody),
))]
async fn withdraw(
    State(engine): State<Arc<SwapServer>>,
    b: Result<Json<WithdrawBody>, JsonRejection>,
) -> Result<Json<Withdrawn>, NodeError> {
    let b = crate::node_api::body(b)?;
    let to = crate::node_api::address(&b.address, engine.network())?;
    let amount = crate::node_api::amount_or_all(b.amount_sat, b.all)?;
    if let Some(a) = amount.filter(|a| *a > Amount::MAX_MONEY) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("amount {} sat is above 21,000,000 BTC", a.to_sat()),
        ));
    }
    let rate = crate::node_api::fee_rate(b.fee_rate_sat_per_vb)?;
    // Run to its end even if the request is cut (its deadline): a withdrawal half done — built,
    // not yet broadcast or forgotten — would leave the wallet's view of its coins wrong.
    let spk = to.script_pubkey();
    let w = tokio::spawn(async move { engine.withdraw(&spk, amount, rate).await })
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
        .map_err(server_error)?;
    Ok(Json(Withdrawn {
        txid: w.txid.to_string(),
        amount_sat: w.amount.to_sat(),
        fee_sat: w.fee.to_sat(),
    }))
}

/// `POST /v1/wallet/rescan` body.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescanBody {
    /// The first block to scan again for deposits.
    pub from_height: u32,
}

/// A rescan's progress.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RescanView {
    /// The first block scanned again.
    pub from_height: u32,
    /// Still scanning (the engine goes on with its swaps meanwhile).
    pub running: bool,
    /// Why it failed, once it did (the server is then as before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<eddy_server::admin::RescanStatus> for RescanView {
    fn from(s: eddy_server::admin::RescanStatus) -> Self {
        RescanView {
            from_height: s.from_height,
            running: s.running,
            error: s.error,
        }
    }
}

#[utoipa::path(post, path = "/v1/wallet/rescan", request_body = RescanBody, responses(
    (status = 202, description = "Started in the background (a deep rescan outlives any request); follow it with GET /v1/wallet/rescan", body = RescanView),
    (status = 400, description = "Malformed request, or a height above the tip", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 422, description = "A rescan is running already", body = ErrorBody),
    (status = 503, description = "The chain source failed (nothing started), or the request outlived the request deadline", body = ErrorBody),
))]
async fn rescan(
    State(engine): State<Arc<SwapServer>>,
    b: Result<Json<RescanBody>, JsonRejection>,
) -> Result<(StatusCode, Json<RescanView>), NodeError> {
    let b = crate::node_api::body(b)?;
    let started = engine.spawn_rescan(b.from_height).await.map_err(server_error)?;
    Ok((StatusCode::ACCEPTED, Json(started.into())))
}

#[utoipa::path(get, path = "/v1/wallet/rescan", responses(
    (status = 200, description = "The last rescan started: running, done, or failed (its error)", body = RescanView),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 404, description = "No rescan was started since the server started", body = ErrorBody),
))]
async fn rescan_progress(State(engine): State<Arc<SwapServer>>) -> Result<Json<RescanView>, NodeError> {
    engine
        .rescan_status()
        .map(|s| Json(s.into()))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no rescan was started since the server started"))
}
