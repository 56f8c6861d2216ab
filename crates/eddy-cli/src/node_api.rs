//! The node's operator API (issue 14): what `eddy node …` calls — the node's identity, height
//! and balances, a deposit address, peers, channels, on-chain sends, and an invoice or a payment
//! for a quick check. The client daemon serves it on its local API (its token); the server on
//! its admin listener (own loopback address, own token — never on the public API port). One
//! module for both, so a fix lands once.
//!
//! With the embedded LDK node every command works. With LND as the node, `info`, `channels`,
//! `address`, `invoice` and `pay` go through the same backend calls the swap engines use; peers,
//! channel opens and closes and on-chain sends answer 501 and name LND's own tool for them —
//! no half-working commands.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::{Address, Amount, FeeRate, Network};
use eddy_backends::health::ChainFollow;
use eddy_backends::ldk::admin::{parse_peer, SendAmount};
use eddy_backends::ldk::LdkNode;
use eddy_backends::lightning::{LnError, PayParams, PaymentStatus};
use eddy_backends::{ChainSource, LightningNode};
use eddy_core::api::ErrorBody;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{OpenApi, ToSchema};

/// What the node routes work on.
pub struct NodeApi {
    /// The node, as the engines see it.
    pub ln: Arc<dyn LightningNode>,
    /// The same node when it is the embedded LDK one (`None`: LND).
    pub ldk: Option<Arc<LdkNode>>,
    /// The network addresses must be of.
    pub network: Network,
    /// The daemon's watchdog, when it runs one.
    pub follow: Option<Arc<ChainFollow>>,
    /// The process's chain source: a send is answered once it has the transaction.
    pub chain: Arc<dyn ChainSource>,
}

/// How long a send waits for the chain source to have its transaction before answering
/// without (ldk-node hands its transactions to a broadcast queue and returns at once).
const SEND_SEEN_WAIT: Duration = Duration::from_secs(5);

/// An error answer: `{"error": "…"}` with its status.
pub struct NodeError(pub StatusCode, pub String);

impl IntoResponse for NodeError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> NodeError {
    NodeError(StatusCode::BAD_REQUEST, msg.into())
}

impl From<LnError> for NodeError {
    fn from(e: LnError) -> Self {
        let status = match &e {
            LnError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            LnError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            LnError::Unknown(_) => StatusCode::NOT_FOUND,
            LnError::Unavailable(_) | LnError::NotSent(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        NodeError(status, e.to_string())
    }
}

/// The embedded node, or 501 naming LND's own command for `what`.
fn embedded<'a>(api: &'a NodeApi, lncli: &str) -> Result<&'a Arc<LdkNode>, NodeError> {
    api.ldk.as_ref().ok_or_else(|| {
        NodeError(
            StatusCode::NOT_IMPLEMENTED,
            format!("this node is LND: use LND's own tool for this (`lncli {lncli}`)"),
        )
    })
}

pub(crate) fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, NodeError> {
    b.map(|Json(t)| t)
        .map_err(|r| bad(format!("malformed request: {}", r.body_text())))
}

/// Parses an address and checks its network.
pub(crate) fn address(s: &str, network: Network) -> Result<Address, NodeError> {
    Address::from_str(s.trim())
        .map_err(|_| bad(format!("{s:?} is not a bitcoin address")))?
        .require_network(network)
        .map_err(|_| bad(format!("{s} is not an address for the {network} network")))
}

/// `amount_sat` or `all` of a send or a withdrawal: `Some(amount)`, or `None` for everything.
pub(crate) fn amount_or_all(amount_sat: Option<u64>, all: bool) -> Result<Option<Amount>, NodeError> {
    match (amount_sat, all) {
        (Some(0), false) => Err(bad("amount_sat must be above 0")),
        (Some(a), false) => Ok(Some(Amount::from_sat(a))),
        (None, true) => Ok(None),
        _ => Err(bad("give either amount_sat or all")),
    }
}

/// An optional fee rate in sat/vB, 1 to 10,000.
pub(crate) fn fee_rate(sat_per_vb: Option<u64>) -> Result<Option<FeeRate>, NodeError> {
    match sat_per_vb {
        None => Ok(None),
        Some(r @ 1..=10_000) => Ok(FeeRate::from_sat_per_vb(r)),
        Some(r) => Err(bad(format!("fee rate {r} sat/vB is out of range (1 to 10000)"))),
    }
}

/// Whether a request carries `Authorization: Bearer <token>` (compared in constant time): the
/// daemon's local API and the server's admin API.
pub(crate) fn bearer_matches(headers: &axum::http::HeaderMap, token: &str) -> bool {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    ct_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Equal bytes, in time that depends on the length only.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The node routes, for a router of any state.
pub fn router<S: Clone + Send + Sync + 'static>(api: Arc<NodeApi>) -> Router<S> {
    Router::new()
        .route("/v1/node", get(node))
        .route("/v1/node/channels", get(channels))
        .route("/v1/node/address", post(new_address))
        .route("/v1/node/connect", post(connect))
        .route("/v1/node/open", post(open))
        .route("/v1/node/close", post(close))
        .route("/v1/node/send", post(send))
        .route("/v1/node/invoice", post(invoice))
        .route("/v1/node/pay", post(pay))
        .with_state(api)
}

/// The node routes' document, merged into the daemon's and the admin API's.
#[derive(OpenApi)]
#[openapi(
    paths(node, channels, new_address, connect, open, close, send, invoice, pay),
    components(schemas(
        NodeView,
        ChannelView,
        AddressView,
        ConnectBody,
        OpenBody,
        Opened,
        CloseBody,
        SendBody,
        Sent,
        InvoiceBody,
        InvoiceView,
        PayBody,
        Paid,
        ErrorBody
    ))
)]
pub struct NodeApiDoc;

/// `GET /v1/node` answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NodeView {
    /// The node id.
    #[schema(pattern = "^0[23][0-9a-f]{64}$")]
    node_id: String,
    /// `bitcoin`, `testnet`, `signet` or `regtest`.
    network: String,
    /// The best block it has processed.
    block_height: u32,
    /// Whether it followed the chain source at the watchdog's last check (no new swap starts
    /// once it has not for the grace; always true where no watchdog runs).
    following_chain: bool,
    /// How many blocks behind the chain source's tip it was then (null: no answer, no check
    /// yet, or no watchdog).
    blocks_behind: Option<u32>,
    /// Where it listens for peers (`HOST:PORT`; empty for LND, whose own tools say).
    listening: Vec<String>,
    /// On-chain balance, sat.
    onchain_sat: u64,
    /// Of which spendable now, sat.
    onchain_spendable_sat: u64,
    /// What its open channels would pay it if closed now, sat.
    lightning_sat: u64,
    /// What closed channels still owe it until their outputs confirm or are swept, sat (a
    /// cooperative close's output may show here and on-chain at once for six blocks; 0 for LND).
    closing_sat: u64,
    /// Its channels.
    channels: Vec<ChannelView>,
}

/// One channel of the node.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ChannelView {
    /// The node's id for it (32 hex), set at opening and never changed: what `open` returned
    /// and `close` takes. Empty for LND.
    #[schema(pattern = "^([0-9a-f]{32})?$")]
    id: String,
    /// The channel id (64 hex; a temporary one until the funding is negotiated). Empty for
    /// LND.
    channel_id: String,
    /// Short channel id, once confirmed.
    short_channel_id: Option<u64>,
    /// The peer's node id.
    #[schema(pattern = "^0[23][0-9a-f]{64}$")]
    peer: String,
    /// Capacity, sat.
    capacity_sat: u64,
    /// What this node can send now, msat.
    local_msat: u64,
    /// What it can receive now, msat.
    remote_msat: u64,
    /// Whether it can route now.
    usable: bool,
    /// Its funding output (`txid:vout`), once known (embedded node only).
    funding: Option<String>,
}

#[utoipa::path(get, path = "/v1/node", responses(
    (status = 200, description = "The node's id, network, height, addresses, balances and channels", body = NodeView),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 503, description = "The node failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn node(State(api): State<Arc<NodeApi>>) -> Result<Json<Value>, NodeError> {
    let info = api.ln.info().await?;
    let wallet = api.ln.wallet_balance().await?;
    let channels = channel_list(&api).await?;
    let lightning = match &api.ldk {
        Some(n) => n.lightning_balance().to_sat(),
        None => channels
            .iter()
            .map(|c| c["local_msat"].as_u64().unwrap_or(0) / 1000)
            .sum(),
    };
    Ok(Json(json!({
        "node_id": info.pubkey.to_string(),
        "network": info.network.to_string(),
        "block_height": info.block_height,
        "following_chain": api.follow.as_ref().is_none_or(|f| f.lagging_for().is_none()),
        "blocks_behind": api.follow.as_ref().and_then(|f| f.blocks_behind()),
        "listening": api.ldk.as_ref().map(|n| n.listening()).unwrap_or_default(),
        "onchain_sat": wallet.total.to_sat(),
        "onchain_spendable_sat": wallet.spendable.to_sat(),
        "lightning_sat": lightning,
        "closing_sat": api.ldk.as_ref().map_or(0, |n| n.closing_balance().to_sat()),
        "channels": channels,
    })))
}

async fn channel_list(api: &NodeApi) -> Result<Vec<Value>, NodeError> {
    let row = |handle: String,
               id: String,
               scid: Option<u64>,
               peer: String,
               cap: Amount,
               local: u64,
               remote: u64,
               usable: bool,
               funding: Option<String>| {
        json!({
            "id": handle,
            "funding": funding,
            "channel_id": id,
            "short_channel_id": scid,
            "peer": peer,
            "capacity_sat": cap.to_sat(),
            "local_msat": local,
            "remote_msat": remote,
            "usable": usable,
        })
    };
    Ok(match &api.ldk {
        // The embedded node gives each channel's id too (what `close` takes).
        Some(n) => n
            .admin_channels()
            .await?
            .into_iter()
            .map(|c| {
                row(
                    c.id,
                    c.channel_id,
                    c.short_channel_id,
                    c.peer.to_string(),
                    c.capacity,
                    c.outbound_msat,
                    c.inbound_msat,
                    c.usable,
                    c.funding,
                )
            })
            .collect(),
        None => api
            .ln
            .channels()
            .await?
            .into_iter()
            .map(|c| {
                row(
                    String::new(),
                    String::new(),
                    c.short_channel_id,
                    c.peer.to_string(),
                    c.capacity,
                    c.local_msat,
                    c.remote_msat,
                    c.usable,
                    None,
                )
            })
            .collect(),
    })
}

#[utoipa::path(get, path = "/v1/node/channels", responses(
    (status = 200, description = "Every channel of the node", body = Vec<ChannelView>),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 503, description = "The node failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn channels(State(api): State<Arc<NodeApi>>) -> Result<Json<Vec<Value>>, NodeError> {
    Ok(Json(channel_list(&api).await?))
}

/// A new address.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AddressView {
    /// A fresh address of the node's on-chain wallet.
    pub address: String,
}

#[utoipa::path(post, path = "/v1/node/address", responses(
    (status = 200, description = "A fresh address of the node's wallet: send coins here to fund it", body = AddressView),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 503, description = "The node failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn new_address(State(api): State<Arc<NodeApi>>) -> Result<Json<AddressView>, NodeError> {
    let a = api.ln.new_address().await?;
    Ok(Json(AddressView { address: a.to_string() }))
}

/// `POST /v1/node/connect` body.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    /// `PUBKEY@HOST:PORT`.
    #[schema(pattern = "^0[23][0-9a-fA-F]{64}@.+:[0-9]{1,5}$")]
    pub peer: String,
}

#[utoipa::path(post, path = "/v1/node/connect", request_body = ConnectBody, responses(
    (status = 200, description = "Connected (and remembered: reconnected after restarts)", body = ConnectBody),
    (status = 400, description = "Malformed request, or not PUBKEY@HOST:PORT", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 422, description = "The peer could not be reached there", body = ErrorBody),
    (status = 501, description = "The node is LND: use `lncli connect`", body = ErrorBody),
    (status = 503, description = "The node failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn connect(
    State(api): State<Arc<NodeApi>>,
    b: Result<Json<ConnectBody>, JsonRejection>,
) -> Result<Json<ConnectBody>, NodeError> {
    let b = body(b)?;
    let (key, addr) = parse_peer(&b.peer).map_err(|e| bad(strip(e)))?;
    let n = embedded(&api, "connect")?;
    n.connect_peer(key, &addr).await?;
    Ok(Json(ConnectBody {
        peer: format!("{key}@{addr}"),
    }))
}

/// The words of a refusal of the caller's input, without the backend's prefix.
fn strip(e: LnError) -> String {
    match e {
        LnError::Refused(m) => m,
        e => e.to_string(),
    }
}

/// `POST /v1/node/open` body.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    /// The peer: `PUBKEY@HOST:PORT`, or `PUBKEY` when already connected.
    #[schema(pattern = "^0[23][0-9a-fA-F]{64}(@.+:[0-9]{1,5})?$")]
    pub peer: String,
    /// Capacity, sat (from the node's on-chain wallet).
    #[schema(minimum = 1)]
    pub amount_sat: u64,
    /// Given to the peer at opening, sat (default 0).
    #[serde(default)]
    pub push_sat: u64,
}

/// A channel being opened.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Opened {
    /// The node's id for it (32 hex; `id` in `channels`): what `close` takes. Usable after its
    /// funding confirms (6 blocks).
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub id: String,
}

#[utoipa::path(post, path = "/v1/node/open", request_body = OpenBody, responses(
    (status = 201, description = "The channel, opening: its funding transaction is broadcast", body = Opened),
    (status = 400, description = "Malformed request, or a peer that is not PUBKEY[@HOST:PORT]", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 422, description = "Refused: not connected to that peer, a wallet short of the amount, a push above the amount, or the peer's refusal", body = ErrorBody),
    (status = 501, description = "The node is LND: use `lncli openchannel`", body = ErrorBody),
    (status = 503, description = "The node failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn open(
    State(api): State<Arc<NodeApi>>,
    b: Result<Json<OpenBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Opened>), NodeError> {
    let b = body(b)?;
    let (key, addr) = if b.peer.contains('@') {
        let (k, a) = parse_peer(&b.peer).map_err(|e| bad(strip(e)))?;
        (k, Some(a))
    } else {
        let k = bitcoin::secp256k1::PublicKey::from_str(b.peer.trim())
            .map_err(|_| bad(format!("{:?} is not a node public key", b.peer)))?;
        (k, None)
    };
    if b.amount_sat == 0 {
        return Err(bad("amount_sat must be above 0"));
    }
    let push_msat = b
        .push_sat
        .checked_mul(1000)
        .ok_or_else(|| bad("push_sat is out of range"))?;
    let n = embedded(&api, "openchannel")?;
    if let Some(a) = &addr {
        n.connect_peer(key, a).await?;
    }
    let id = n
        .open_channel(key, addr.as_deref(), Amount::from_sat(b.amount_sat), push_msat)
        .await?;
    Ok((StatusCode::CREATED, Json(Opened { id })))
}

/// `POST /v1/node/close` body.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// The channel: its `id` (32 hex) or its `channel_id` (64 hex), from `channels`.
    #[schema(pattern = "^([0-9a-fA-F]{32}|[0-9a-fA-F]{64})$")]
    pub channel_id: String,
    /// Broadcast the latest commitment instead of negotiating (funds come back after the
    /// to-self delay; for a peer that is gone).
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(post, path = "/v1/node/close", request_body = CloseBody, responses(
    (status = 200, description = "Closing", body = CloseBody),
    (status = 400, description = "Malformed request, or neither a channel's id (32 hex characters) nor a channel id (64)", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 422, description = "No such channel, or the node refused", body = ErrorBody),
    (status = 501, description = "The node is LND: use `lncli closechannel`", body = ErrorBody),
    (status = 503, description = "The node failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn close(
    State(api): State<Arc<NodeApi>>,
    b: Result<Json<CloseBody>, JsonRejection>,
) -> Result<Json<CloseBody>, NodeError> {
    let b = body(b)?;
    // LND names its channels otherwise (short channel id, funding outpoint): its own tool first.
    let n = embedded(&api, "closechannel")?;
    let id = b.channel_id.trim().to_ascii_lowercase();
    if !matches!(id.len(), 32 | 64) || !id.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "{:?} is neither a channel's id (32 hex characters) nor a channel id (64)",
            b.channel_id
        )));
    }
    n.close_channel(&id, b.force).await?;
    Ok(Json(CloseBody {
        channel_id: id,
        force: b.force,
    }))
}

/// `POST /v1/node/send` body.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// Where to.
    pub address: String,
    /// How much, sat; absent with `all`.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub amount_sat: Option<u64>,
    /// Send everything spendable (less what ldk-node keeps for its anchor channels' closes).
    #[serde(default)]
    pub all: bool,
    /// Fee rate, sat/vB (default: the node's estimate).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    pub fee_rate_sat_per_vb: Option<u64>,
}

/// A transaction sent.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Sent {
    /// Its id.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub txid: String,
    /// Whether the chain source had it (in its mempool or a block) when answered: the node
    /// broadcasts through a queue, so `false` means not yet seen after 5 s — look for it before
    /// sending again (the node's log says why a broadcast failed).
    pub broadcast: bool,
}

#[utoipa::path(post, path = "/v1/node/send", request_body = SendBody, responses(
    (status = 200, description = "Sent: the node signed it and queued it for broadcast; `broadcast` says whether the chain source has it", body = Sent),
    (status = 400, description = "Malformed request, an address not of this network, neither or both of amount_sat and all, or a fee rate out of range", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 422, description = "The wallet cannot pay it", body = ErrorBody),
    (status = 501, description = "The node is LND: use `lncli sendcoins`", body = ErrorBody),
    (status = 503, description = "The node failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn send(
    State(api): State<Arc<NodeApi>>,
    b: Result<Json<SendBody>, JsonRejection>,
) -> Result<Json<Sent>, NodeError> {
    let b = body(b)?;
    let to = address(&b.address, api.network)?;
    let amount = amount_or_all(b.amount_sat, b.all)?.map_or(SendAmount::All, SendAmount::Exactly);
    let rate = fee_rate(b.fee_rate_sat_per_vb)?;
    let n = embedded(&api, "sendcoins")?;
    let txid = n.send_onchain(&to, amount, rate).await?;
    let deadline = tokio::time::Instant::now() + SEND_SEEN_WAIT;
    let broadcast = loop {
        // Bounded by what is left of the wait: a hung chain source does not hold the answer.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Ok(Ok(Some(_))) = tokio::time::timeout(left, api.chain.transaction(&txid)).await {
            break true;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(%txid, "node send: the chain source does not have the transaction yet");
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    Ok(Json(Sent {
        txid: txid.to_string(),
        broadcast,
    }))
}

/// `POST /v1/node/invoice` body.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceBody {
    /// Amount, sat.
    #[schema(minimum = 1, maximum = 4294967)]
    pub amount_sat: u64,
    /// Description (default "eddy").
    #[serde(default)]
    #[schema(max_length = 200)]
    pub description: Option<String>,
}

/// An invoice.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct InvoiceView {
    /// BOLT11.
    pub invoice: String,
    /// Its payment hash.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub payment_hash: String,
}

#[utoipa::path(post, path = "/v1/node/invoice", request_body = InvoiceBody, responses(
    (status = 200, description = "An invoice of the node, valid one hour", body = InvoiceView),
    (status = 400, description = "Malformed request, or an amount or description out of range", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 422, description = "The node refused", body = ErrorBody),
    (status = 503, description = "The node failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn invoice(
    State(api): State<Arc<NodeApi>>,
    b: Result<Json<InvoiceBody>, JsonRejection>,
) -> Result<Json<InvoiceView>, NodeError> {
    let b = body(b)?;
    // Capped where BOLT11's amount field and every node's sanity limits agree (~0.043 BTC).
    if b.amount_sat == 0 || b.amount_sat > 4_294_967 {
        return Err(bad(format!(
            "amount {} sat is out of range (1 to 4294967 sat)",
            b.amount_sat
        )));
    }
    let description = b.description.unwrap_or_else(|| "eddy".into());
    if description.len() > 200 {
        return Err(bad("the description is longer than 200 bytes"));
    }
    let preimage = eddy_core::types::Preimage::random();
    let inv = api
        .ln
        .create_invoice(&preimage, b.amount_sat * 1000, 3600, &description)
        .await?;
    Ok(Json(InvoiceView {
        invoice: inv.bolt11,
        payment_hash: preimage.payment_hash().to_string(),
    }))
}

/// How long `pay` waits for the outcome before answering `pending` (well inside any HTTP
/// client's read timeout; the payment goes on).
const PAY_WAIT: Duration = Duration::from_secs(8);

/// `POST /v1/node/pay` body.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayBody {
    /// BOLT11 with an amount.
    pub invoice: String,
    /// Most routing fee, sat (default 1% of the amount, at least 10).
    #[serde(default)]
    pub max_fee_sat: Option<u64>,
}

/// A payment's outcome.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Paid {
    /// Its payment hash.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub payment_hash: String,
    /// `succeeded`, `failed` or `pending` (still in flight after 8 s).
    #[schema(pattern = "^(succeeded|failed|pending)$")]
    pub status: String,
    /// Routing fee paid, msat (succeeded only).
    pub fee_msat: Option<u64>,
    /// Why it failed.
    pub reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/node/pay", request_body = PayBody, responses(
    (status = 200, description = "The payment's outcome (or `pending` after 8 s)", body = Paid),
    (status = 400, description = "Malformed request, or not a BOLT11 invoice with an amount of this network", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 422, description = "The node refused to send it, or the invoice is the node's own", body = ErrorBody),
    (status = 503, description = "The node failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn pay(
    State(api): State<Arc<NodeApi>>,
    b: Result<Json<PayBody>, JsonRejection>,
) -> Result<Json<Paid>, NodeError> {
    let b = body(b)?;
    let facts = eddy_core::validate::decode_invoice("invoice", &b.invoice, api.network, 0, 0)
        .map_err(|e| bad(e.to_string()))?;
    // One's own invoice — a loop-in's, say — paid by oneself would look paid to the swap
    // engine while nobody else paid anything.
    if facts.payee == api.ln.info().await?.pubkey {
        return Err(NodeError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this invoice is this node's own: it cannot pay itself".into(),
        ));
    }
    let amount_msat = facts
        .amount_msat
        .map(|m| m.0)
        .filter(|m| *m > 0)
        .ok_or_else(|| bad("the invoice has no amount"))?;
    let max_fee_msat = b
        .max_fee_sat
        .map_or((amount_msat / 100).max(10_000), |s| s.saturating_mul(1000));
    let params = PayParams {
        max_fee_msat,
        timeout: Duration::from_secs(60),
        outgoing_channel: None,
        max_total_cltv_delta: None,
        last_hop: None,
    };
    let hash = api.ln.pay_invoice(b.invoice.trim(), &params).await?;
    let deadline = tokio::time::Instant::now() + PAY_WAIT;
    loop {
        let (status, fee_msat, reason) = match api.ln.payment_status(&hash).await? {
            PaymentStatus::Succeeded { fee_msat, .. } => ("succeeded", Some(fee_msat), None),
            PaymentStatus::Failed { reason } => ("failed", None, Some(reason)),
            PaymentStatus::InFlight | PaymentStatus::Unknown if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            PaymentStatus::InFlight | PaymentStatus::Unknown => ("pending", None, None),
        };
        return Ok(Json(Paid {
            payment_hash: hash.to_string(),
            status: status.into(),
            fee_msat,
            reason,
        }));
    }
}
