//! `eddy daemon`: the swap client as a long-running process. Opens the configured backends,
//! runs both client engines ([`eddy_client::LoopOutClient::run`],
//! [`eddy_client::loop_in::LoopInClient::run`]) against the swap server's HTTP API, and serves a local API for the CLI on loopback. Every local request needs
//! `Authorization: Bearer <token>`, the token being the contents of `<data dir>/api.token`
//! (created 0600 at first start): only who can read the data dir can spend through the daemon.
//!
//! Local API (JSON, errors as `{"error": …}` with a 4xx status for bad input):
//! `GET /v1/terms`, `GET /v1/quote/out?amount=`, `POST /v1/loop-out`, `GET /v1/quote/in?amount=`,
//! `POST /v1/loop-in`, `GET /v1/swaps`, `GET /v1/swaps/{id}`, `POST /v1/swaps/{id}/abandon`,
//! `GET /v1/monitor` (server-sent events, one per swap change), `GET /v1/node` (node id and
//! balances). Its OpenAPI document ([`DaemonApiDoc`]) is served without a token at
//! `GET /v1/openapi.json`: every route, its bearer authentication, every status it can answer.
//! An id that is no swap of this daemon answers 404 on every route that takes one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::{Address, Amount, Network};
use clap::Args;
use eddy_backends::{ChainSource, LightningNode};
use eddy_client::loop_in::{ClientLoopIn, LoopInClient, LoopInOptions};
use eddy_client::loop_out::ClientLoopOut;
use eddy_client::{ClientConfig, ClientError, HttpSwapServer, LoopOutClient, SwapOptions};
use eddy_core::api::{ErrorBody, QuoteQuery, SwapIdPath, Terms};
use eddy_core::sm::loop_out_client::State as ClientState;
use eddy_core::types::SwapId;
use eddy_core::validate::LoopOutLimits;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{OpenApi, ToSchema};

use crate::config::{layered, Common};

/// Default local API address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8281);
/// How often the daemon's watchdog compares its node's best block with the chain source's tip.
const WATCHDOG_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// Most `GET /v1/monitor` streams open at once (each holds a store subscription and a task);
/// the API is local and token-protected, so one budget for all (503 beyond). Half the
/// listener's per-address connection cap (every local caller is one address): open streams
/// never take the connections the CLI's calls need.
pub const MAX_MONITOR_STREAMS: usize = 16;
/// The token file in the data dir.
pub const TOKEN_FILE: &str = "api.token";

/// `eddy daemon` options (also `EDDY_<NAME>` or `name = value` in the `--config` TOML file).
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct DaemonArgs {
    /// TOML configuration file.
    #[arg(long, env = "EDDY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Shared options.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Local API address (default 127.0.0.1:8281; loopback only unless you mean it).
    #[arg(long, env = "EDDY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The swap server's base URL.
    #[arg(long, env = "EDDY_SERVER_URL")]
    pub server_url: Option<String>,
    /// The protocol the swap server speaks: `eddy` (its `/v1` API, the default) or `boltz`
    /// (Boltz API v2: any Boltz-compatible provider, an Eddy server's `/v2` among them).
    #[arg(long, env = "EDDY_PROVIDER")]
    pub provider: Option<String>,
    /// Default cap on the server's fee, prepay included, sat (default 5000).
    #[arg(long, env = "EDDY_MAX_SWAP_FEE_SAT")]
    pub max_swap_fee_sat: Option<u64>,
    /// Default cap on the prepay, sat (default 2000).
    #[arg(long, env = "EDDY_MAX_PREPAY_SAT")]
    pub max_prepay_sat: Option<u64>,
    /// Default cap on the claim's miner fee, sat (default 5000).
    #[arg(long, env = "EDDY_MAX_MINER_FEE_SAT")]
    pub max_miner_fee_sat: Option<u64>,
    /// Default cap on routing fees, sat (default 100).
    #[arg(long, env = "EDDY_MAX_ROUTING_FEE_SAT")]
    pub max_routing_fee_sat: Option<u64>,
    /// Default claim confirmation target (default 6).
    #[arg(long, env = "EDDY_CONF_TARGET")]
    pub conf_target: Option<u16>,
    /// Default HTLC confirmations before revealing the preimage (default 1).
    #[arg(long, env = "EDDY_HTLC_CONFS")]
    pub htlc_confs: Option<u32>,
    /// Watchdog: seconds the Lightning node may not follow the chain before new swaps are
    /// refused (default 60, `eddy_core::constants::NODE_LAG_GRACE_SECS`).
    #[arg(long, env = "EDDY_NODE_LAG_GRACE_SECS")]
    pub node_lag_grace_secs: Option<u64>,
    /// Watchdog: seconds it may stay so before the daemon exits non-zero for its supervisor to
    /// restart it, node included (default 600, `eddy_core::constants::NODE_LAG_EXIT_SECS`).
    #[arg(long, env = "EDDY_NODE_LAG_EXIT_SECS")]
    pub node_lag_exit_secs: Option<u64>,
}

impl DaemonArgs {
    /// The engine's settings.
    pub fn engine(&self) -> anyhow::Result<ClientConfig> {
        Ok(ClientConfig {
            network: self.common.network()?,
            limits: LoopOutLimits::with_fees(
                Amount::from_sat(self.max_swap_fee_sat.unwrap_or(5_000)),
                Amount::from_sat(self.max_prepay_sat.unwrap_or(2_000)),
            ),
            max_miner_fee: Amount::from_sat(self.max_miner_fee_sat.unwrap_or(5_000)),
            max_routing_fee: Amount::from_sat(self.max_routing_fee_sat.unwrap_or(100)),
            conf_target: self.conf_target.unwrap_or(6).max(1),
            htlc_confs: self.htlc_confs.unwrap_or(1).max(1),
        })
    }
}

/// Reads the token, or creates it (32 random bytes, hex, mode 0600).
pub fn load_or_create_token(dir: &Path) -> anyhow::Result<String> {
    load_or_create_token_file(dir, TOKEN_FILE)
}

/// Reads the token in `dir/name`, or creates it (32 random bytes, hex, mode 0600).
pub fn load_or_create_token_file(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if t.len() == 64 {
            return Ok(t);
        }
    }
    let token = eddy_core::types::Preimage::random().expose_hex();
    let tmp = dir.join(format!("{name}.tmp"));
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(token.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}

struct Daemon {
    /// The watchdog's view of the embedded (or remote) Lightning node: does it follow the chain?
    follow: Arc<eddy_backends::health::ChainFollow>,
    /// How long it may not before new swaps are refused.
    lag_grace: std::time::Duration,
    /// `GET /v1/monitor` streams open now.
    monitors: Arc<std::sync::atomic::AtomicUsize>,
    /// The chain source's best height as the watchdog last read it: each change makes the
    /// monitor streams send the running swaps' progress again.
    tip: tokio::sync::watch::Sender<u32>,
    client: Arc<LoopOutClient>,
    client_in: Arc<LoopInClient>,
    /// The swap server, over the protocol `--provider` names.
    server: Arc<dyn eddy_client::SwapServerApi>,
    ln: Arc<dyn LightningNode>,
    chain: Arc<dyn ChainSource>,
    store: Arc<dyn eddy_store::SwapStore>,
    /// The same store, announcing each write (for `monitor`).
    changes: Arc<eddy_store::NotifyingStore>,
    cfg: ClientConfig,
    token: String,
    /// The server's amount range for the document, asked at most once a minute: the document
    /// needs no token, and each fetch must not make the daemon call the server.
    doc_range: tokio::sync::Mutex<Option<DocRange>>,
}

/// When the server's amount range was asked, and its answer (None: it did not answer).
type DocRange = (std::time::Instant, Option<(u64, u64)>);

/// How long the amount range the daemon's document shows is reused.
const DOC_RANGE_SECS: u64 = 60;

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0 == StatusCode::TOO_MANY_REQUESTS {
            // A server's 429, passed through: its limits count per minute.
            return (
                self.0,
                [(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECS)],
                Json(json!({"error": self.1})),
            )
                .into_response();
        }
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

/// `Retry-After` of a 429 the daemon passes through (the server's limits count per minute).
const RETRY_AFTER_SECS: &str = "60";

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        let status = match &e {
            ClientError::OfferRefused(_)
            | ClientError::NoCapacity(_)
            | ClientError::NoInbound(_)
            | ClientError::NoFunds(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ClientError::NotFound(_) => StatusCode::NOT_FOUND,
            ClientError::Server(e) => return server_error(e.clone(), CREATION_PASSES),
            ClientError::Backend(_) | ClientError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

/// A failed call to the swap server, as the daemon answers it: the server's 4xx among `passes`
/// (the statuses the route's document lists as passed through) passes through with the server's
/// message — the request was wrong, and a typo must not look like an outage. Anything else is
/// 502 with the server named: unreachable, slow, failing, or answering what the route cannot
/// mean (a 404 on `/v1/terms` is a wrong server URL; a server's 401/403 must not look like the
/// daemon's own token check).
fn server_error(e: eddy_client::ApiCallError, passes: &[u16]) -> ApiError {
    // This daemon's own refusal of the server's answer: nothing was paid. On a creation that
    // is an offer refused (422); on a quote, the amount asked (400); else the server's terms
    // are what is wrong (502).
    if let eddy_client::ApiCallError::Refused(_) = e {
        let status = if passes.contains(&422) {
            StatusCode::UNPROCESSABLE_ENTITY
        } else if passes.contains(&400) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::BAD_GATEWAY
        };
        return ApiError(status, e.to_string());
    }
    match e
        .status()
        .filter(|s| passes.contains(s))
        .and_then(|s| StatusCode::from_u16(s).ok())
    {
        Some(status) => ApiError(status, e.to_string()),
        None => ApiError(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// What `POST /v1/loop-out` and `/v1/loop-in` pass through from the server (the engines'
/// errors, converted with `?`).
const CREATION_PASSES: &[u16] = &[400, 409, 422, 429];
/// `GET /v1/quote/out` and `/v1/quote/in`: an amount refused, or too many requests.
const QUOTE_PASSES: &[u16] = &[400, 429];
/// `GET /v1/terms`: too many requests.
const TERMS_PASSES: &[u16] = &[429];

/// The swap id of a path: 400 (JSON, like every error) when it is not one.
fn path_id(p: Result<UrlPath<String>, PathRejection>) -> Result<SwapId, ApiError> {
    let UrlPath(id) = p.map_err(|r| bad(format!("not a swap id: {}", r.body_text())))?;
    SwapId::from_str(&id).map_err(|_| bad(format!("not a swap id: {id:?}")))
}

async fn auth(State(d): State<Arc<Daemon>>, req: Request, next: Next) -> Response {
    if !crate::node_api::bearer_matches(req.headers(), &d.token) {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            format!("missing or wrong token (Authorization: Bearer <contents of {TOKEN_FILE}>)"),
        )
        .into_response();
    }
    next.run(req).await
}

/// `POST /v1/loop-out` body.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoopOutBody {
    /// HTLC amount, sat (a number with no fractional part; the server's terms give the range).
    #[serde(deserialize_with = "eddy_core::api::sat::deserialize")]
    pub amount_sat: u64,
    /// Claim destination (default: a new address of the node's wallet).
    #[serde(default)]
    pub addr: Option<String>,
    /// The swap's limits and settings.
    #[serde(default, flatten)]
    #[schema(inline)]
    pub options: OptionsBody,
}

/// Per-swap limits as the local API and the CLI name them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, Args, ToSchema)]
pub struct OptionsBody {
    /// First-hop channel (short channel id, as a number or `BLOCKxTXxOUT`).
    #[arg(long)]
    #[serde(default)]
    pub channel: Option<u64>,
    /// Most the server's fee may be, prepay included, sat.
    #[arg(long = "max-swap-fee")]
    #[serde(default)]
    pub max_swap_fee_sat: Option<u64>,
    /// Most the prepay may be, sat.
    #[arg(long = "max-prepay")]
    #[serde(default)]
    pub max_prepay_sat: Option<u64>,
    /// Most the payments may pay in routing fees, sat.
    #[arg(long = "max-routing-fee")]
    #[serde(default)]
    pub max_routing_fee_sat: Option<u64>,
    /// Most the claim may pay in miner fees, sat.
    #[arg(long = "max-miner-fee")]
    #[serde(default)]
    pub max_miner_fee_sat: Option<u64>,
    /// Claim confirmation target, blocks.
    #[arg(long)]
    #[serde(default)]
    pub conf_target: Option<u16>,
    /// HTLC confirmations before revealing the preimage.
    #[arg(long)]
    #[serde(default)]
    pub htlc_confs: Option<u32>,
    /// Ask the server to publish the HTLC at once, not waiting for its publication window.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fast: bool,
}

impl From<OptionsBody> for SwapOptions {
    fn from(o: OptionsBody) -> Self {
        SwapOptions {
            max_swap_fee: o.max_swap_fee_sat,
            max_prepay: o.max_prepay_sat,
            max_miner_fee: o.max_miner_fee_sat,
            max_routing_fee: o.max_routing_fee_sat,
            conf_target: o.conf_target,
            htlc_confs: o.htlc_confs,
            channel: o.channel,
            wallet_destination: false,
            fast: o.fast,
        }
    }
}

/// Parses a destination address and checks its network.
pub fn parse_address(s: &str, network: Network) -> Result<Address, String> {
    let a = Address::from_str(s.trim()).map_err(|e| format!("not a bitcoin address ({s:?}): {e}"))?;
    a.require_network(network)
        .map_err(|_| format!("{s} is not an address for the {network} network"))
}

/// What the local API says about one swap (never the preimage).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SwapView {
    /// Swap id (the payment hash).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub id: String,
    /// `loop_out` or `loop_in`.
    #[serde(default)]
    #[schema(pattern = "^(loop_out|loop_in)$")]
    pub kind: String,
    /// State name.
    pub state: String,
    /// Whether it is final.
    pub terminal: bool,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// HTLC amount, sat.
    pub amount_sat: u64,
    /// Swap invoice, sat.
    pub swap_invoice_sat: u64,
    /// Prepay, sat.
    pub prepay_sat: u64,
    /// HTLC expiry height.
    pub expiry: u32,
    /// HTLC address.
    pub htlc_address: String,
    /// The HTLC output, once seen.
    pub htlc_outpoint: Option<String>,
    /// The claim: the confirmed one once succeeded, else the latest broadcast.
    pub claim_txid: Option<String>,
    /// Its miner fee, sat.
    pub claim_fee_sat: Option<u64>,
    /// Where the claim pays (loop-out) or the refund would pay (loop-in, once chosen).
    pub destination: String,
    /// Loop-in: the refund, once broadcast.
    #[serde(default)]
    pub refund_txid: Option<String>,
    /// Loop-in: the funding transaction, once broadcast (before it confirms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funding_txid: Option<String>,
    /// Loop-in: the channel peer the payment must arrive through, when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hop: Option<String>,
    /// Store version (one per transition).
    pub version: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Where a running swap stands on the chain (absent once it is final, or while the chain
    /// source does not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// A running swap's place on the chain, as of the chain source's best block when the view was
/// made: `GET /v1/monitor` sends the views of running swaps again at every new block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// The chain source's best height.
    pub tip_height: u32,
    /// Blocks until the HTLC's expiry height (negative once it has passed): from that height on,
    /// the HTLC's timeout path is open to the server (loop-out) or to this client (loop-in).
    pub blocks_to_expiry: i64,
    /// Confirmations of the transaction that made the HTLC (0 while in the mempool); absent
    /// before this daemon has seen it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub htlc_confirmations: Option<u32>,
    /// Confirmations of the latest claim (loop-out) or refund (loop-in) broadcast (0 while in
    /// the mempool); absent before one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_confirmations: Option<u32>,
}

fn invoice_sat(bolt11: &str, network: Network) -> u64 {
    eddy_core::validate::decode_invoice("invoice", bolt11, network, 0, 0)
        .ok()
        .and_then(|f| f.amount_msat)
        .map_or(0, |m| m.0 / 1000)
}

fn view(r: &eddy_store::SwapRecord, rec: &ClientLoopOut, network: Network) -> SwapView {
    let outpoint = match &rec.state {
        ClientState::HtlcConfirming { outpoint, .. } | ClientState::Claiming { outpoint, .. } => Some(*outpoint),
        _ => None,
    };
    SwapView {
        id: r.id.to_string(),
        kind: "loop_out".into(),
        refund_txid: None,
        funding_txid: None,
        last_hop: None,
        state: r.state_name.clone(),
        terminal: r.terminal,
        failure: eddy_client::loop_out::fail_reason(&rec.state).map(|f| format!("{f:?}")),
        amount_sat: rec.terms.amount.to_sat(),
        swap_invoice_sat: invoice_sat(&rec.offer.swap_invoice, network),
        prepay_sat: rec
            .offer
            .prepay_invoice
            .as_deref()
            .map_or(0, |p| invoice_sat(p, network)),
        expiry: rec.offer.expiry,
        htlc_address: rec.offer.htlc_address.clone(),
        htlc_outpoint: outpoint.map(|o| o.to_string()),
        claim_txid: rec
            .confirmed_claim()
            .map(|c| c.0)
            .or(rec.claim.as_ref().and_then(|c| c.last()))
            .map(|t| t.to_string()),
        claim_fee_sat: rec
            .confirmed_claim()
            .map(|c| c.1)
            .or(rec.claim.as_ref().and_then(|c| c.last().and_then(|t| c.share_of(&t))))
            .map(|f| f.to_sat()),
        destination: Address::from_script(&rec.destination, network)
            .map(|a| a.to_string())
            .unwrap_or_else(|_| rec.destination.to_hex_string()),
        version: r.version,
        created_at: r.created_at,
        updated_at: r.updated_at,
        progress: None,
    }
}

fn view_in(r: &eddy_store::SwapRecord, rec: &ClientLoopIn, network: Network) -> SwapView {
    use eddy_core::sm::loop_in_client::State as S;
    let outpoint = match &rec.state {
        S::Funded { outpoint, .. } | S::Refunding { outpoint, .. } => Some(outpoint.to_string()),
        _ => None,
    };
    let failure = match &rec.state {
        S::Failed(f) => Some(format!("{f:?}")),
        _ => None,
    };
    SwapView {
        id: r.id.to_string(),
        kind: "loop_in".into(),
        state: r.state_name.clone(),
        terminal: r.terminal,
        failure,
        amount_sat: rec.terms.amount.to_sat(),
        swap_invoice_sat: invoice_sat(&rec.invoice, network),
        prepay_sat: 0,
        expiry: rec.terms.expiry,
        htlc_address: rec.offer.htlc_address.clone(),
        htlc_outpoint: outpoint,
        claim_txid: None,
        claim_fee_sat: None,
        destination: rec
            .refund_to
            .as_ref()
            .and_then(|s| Address::from_script(s, network).ok())
            .map(|a| a.to_string())
            .unwrap_or_default(),
        refund_txid: rec.last_refund().map(|t| t.to_string()),
        funding_txid: match &rec.state {
            S::Funding { txid } => Some(txid.to_string()),
            _ => None,
        },
        last_hop: rec.options.last_hop.map(|k| k.to_string()),
        version: r.version,
        created_at: r.created_at,
        updated_at: r.updated_at,
        progress: None,
    }
}

/// Refuses to start a swap while the Lightning node does not follow the chain (the watchdog,
/// [`eddy_backends::health`]) — or has not been seen following since the daemon started: a node
/// that does not see blocks cannot act before the swap's
/// deadlines — a loop-out's claim, a loop-in's refund.
fn taking_swaps(d: &Daemon) -> Result<(), ApiError> {
    if !d.follow.seen_following() {
        // Just started: no check has seen the node in step yet (after a watchdog exit, the
        // restart must not reopen the gate for a grace while the node is still blind).
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the Lightning node has not yet been seen following the chain: no new swap starts until it is".into(),
        ));
    }
    if d.follow.taking_swaps(d.lag_grace) {
        return Ok(());
    }
    let how = match d.follow.blocks_behind() {
        Some(0) => "its chain source is behind it".to_string(),
        Some(n) => format!("{n} blocks behind the chain source"),
        None => "not answering".to_string(),
    };
    Err(ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the Lightning node is not following the chain ({how}): no new swap starts until it does"),
    ))
}

/// One swap's view, read by its id (either kind).
async fn view_of(d: &Daemon, id: &SwapId) -> Result<SwapView, ApiError> {
    let r = d
        .store
        .get(id)
        .await
        .map_err(ClientError::from)?
        .ok_or(ClientError::NotFound(*id))?;
    let corrupt = || ClientError::from(eddy_store::StoreError::Corrupt(format!("swap {id}")));
    match r.kind {
        eddy_store::SwapKind::LoopOutClient => {
            let rec: ClientLoopOut = serde_json::from_value(r.state.clone()).map_err(|_| corrupt())?;
            let mut v = [view(&r, &rec, d.cfg.network)];
            with_progress(d, &mut v).await;
            let [v] = v;
            Ok(v)
        }
        eddy_store::SwapKind::LoopInClient => {
            let rec: ClientLoopIn = serde_json::from_value(r.state.clone()).map_err(|_| corrupt())?;
            let mut v = [view_in(&r, &rec, d.cfg.network)];
            with_progress(d, &mut v).await;
            let [v] = v;
            Ok(v)
        }
        _ => Err(ClientError::NotFound(*id).into()),
    }
}

/// Fills in the [`Progress`] of the running swaps among `views`: one tip read, then one
/// transaction lookup per HTLC, claim or refund (transactions the engines watch, so found
/// without a transaction index). A chain source that does not answer leaves it out.
async fn with_progress(d: &Daemon, views: &mut [SwapView]) {
    if views.iter().all(|v| v.terminal) {
        return;
    }
    let Ok(tip) = d.chain.tip().await else {
        return;
    };
    let confirmations = |txid: Option<String>| async move {
        let txid: bitcoin::Txid = txid?.parse().ok()?;
        let found = d.chain.transaction(&txid).await.ok()??;
        // Counted at `tip`, as the blocks to expiry are: a block found above it (mined since
        // the tip was read) is not one of them yet.
        Some(found.block.map_or(0, |b| {
            if b.height > tip.height {
                0
            } else {
                tip.height - b.height + 1
            }
        }))
    };
    for v in views.iter_mut().filter(|v| !v.terminal) {
        let htlc_tx = v
            .htlc_outpoint
            .as_deref()
            .and_then(|o| o.split(':').next())
            .map(String::from)
            .or_else(|| v.funding_txid.clone());
        let spend = if v.kind == "loop_in" {
            v.refund_txid.clone()
        } else {
            v.claim_txid.clone()
        };
        v.progress = Some(Progress {
            tip_height: tip.height,
            blocks_to_expiry: i64::from(v.expiry) - i64::from(tip.height),
            htlc_confirmations: confirmations(htlc_tx).await,
            spend_confirmations: confirmations(spend).await,
        });
    }
}

/// The running (not final) swaps' views, with their progress.
async fn running_views(d: &Daemon) -> Result<Vec<SwapView>, ApiError> {
    use eddy_store::{records_of, ListFilter, SwapKind};
    let store = &*d.store;
    let mut v: Vec<SwapView> = records_of::<ClientLoopOut>(store, ListFilter::Active, SwapKind::LoopOutClient)
        .await
        .map_err(ClientError::from)?
        .iter()
        .map(|(r, rec)| view(r, rec, d.cfg.network))
        .collect();
    v.extend(
        records_of::<ClientLoopIn>(store, ListFilter::Active, SwapKind::LoopInClient)
            .await
            .map_err(ClientError::from)?
            .iter()
            .map(|(r, rec)| view_in(r, rec, d.cfg.network)),
    );
    with_progress(d, &mut v).await;
    Ok(v)
}

async fn all_views(d: &Daemon) -> Result<Vec<SwapView>, ApiError> {
    let mut v: Vec<SwapView> = d
        .client
        .list()
        .await?
        .iter()
        .map(|(r, rec)| view(r, rec, d.cfg.network))
        .collect();
    v.extend(
        d.client_in
            .list()
            .await?
            .iter()
            .map(|(r, rec)| view_in(r, rec, d.cfg.network)),
    );
    v.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    with_progress(d, &mut v).await;
    Ok(v)
}

/// `POST /v1/loop-in` body.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoopInBody {
    /// HTLC amount, sat (a number with no fractional part; the server's terms give the range).
    #[serde(deserialize_with = "eddy_core::api::sat::deserialize")]
    pub amount_sat: u64,
    /// Fund from elsewhere: the daemon only waits for the HTLC output.
    #[serde(default)]
    pub external: bool,
    /// Most the server's fee may be, sat.
    #[serde(default)]
    pub max_swap_fee_sat: Option<u64>,
    /// Confirmation target of the funding.
    #[serde(default)]
    pub conf_target: Option<u16>,
    /// Most the funding's miner fee may be (estimated before anything is created), sat.
    #[serde(default)]
    pub max_miner_fee_sat: Option<u64>,
    /// The channel peer the payment must arrive through, compressed public key hex.
    #[serde(default)]
    #[schema(pattern = "^0[23][0-9a-fA-F]{64}$")]
    pub last_hop: Option<String>,
}

#[utoipa::path(get, path = "/v1/quote/in", params(QuoteQuery), responses(
    (status = 200, description = "What a loop-in of this amount costs: the server's fee and the funding's miner fee at the current estimate", body = DaemonQuoteIn),
    (status = 400, description = "Amount missing or not a whole number of sats, or the server's refusal (amount out of range) passed through", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 429, description = "The swap server refused: too many requests (its message passed through)", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 502, description = "The swap server could not be reached or failed (it is named in the message)", body = ErrorBody),
    (status = 503, description = "A backend of this daemon (its node, chain source or store) failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn quote_in(State(d): State<Arc<Daemon>>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let amount = eddy_core::api::parse_quote_query(q.as_deref().unwrap_or("")).map_err(|e| bad(e.to_string()))?;
    let fee = d
        .server
        .loop_in_fee(amount)
        .await
        .map_err(|m| server_error(m, QUOTE_PASSES))?;
    let rate = d
        .chain
        .fee_rate(d.cfg.conf_target)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(json!({
        "amount_sat": amount.to_sat(),
        "swap_fee_sat": fee.to_sat(),
        "invoice_sat": amount.to_sat().saturating_sub(fee.to_sat()),
        "funding_vbytes": eddy_client::loop_in::FUNDING_VBYTES_ONE_INPUT,
        "funding_fee_estimate_sat": eddy_client::loop_in::funding_fee_estimate(rate).to_sat(),
        "fee_rate_sat_per_vb": rate.to_sat_per_kwu() as f64 * 4.0 / 1000.0,
    })))
}

#[utoipa::path(post, path = "/v1/loop-in", request_body = LoopInBody, responses(
    (status = 201, description = "The swap, created (funded unless external), with a BIP21 URI of the HTLC", body = LoopInCreated),
    (status = 400, description = "Malformed request, a last hop that is not a node key, or the server's refusal passed through", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 409, description = "The server already has a swap for this payment hash (passed through)", body = ErrorBody),
    (status = 422, description = "The offer failed this daemon's checks, or the channels cannot receive the amount; nothing was funded", body = ErrorBody),
    (status = 429, description = "The swap server refused: too many requests (its message passed through)", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 502, description = "The swap server could not be reached or failed (it is named in the message)", body = ErrorBody),
    (status = 503, description = "A backend of this daemon (its node, chain source or store) failed, the Lightning node is not following the chain (the watchdog: no new swap starts), or the request outlived the request deadline", body = ErrorBody),
))]
async fn loop_in_route(
    State(d): State<Arc<Daemon>>,
    body: Result<Json<LoopInBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(b) = body.map_err(|r| bad(format!("malformed request: {}", r.body_text())))?;
    taking_swaps(&d)?;
    let last_hop = match &b.last_hop {
        None => None,
        Some(k) => Some(
            bitcoin::secp256k1::PublicKey::from_str(k.trim())
                .map_err(|_| bad(format!("last_hop is not a node public key: {k:?}")))?,
        ),
    };
    let opts = LoopInOptions {
        max_swap_fee: b.max_swap_fee_sat,
        conf_target: b.conf_target,
        external: b.external,
        max_miner_fee: b.max_miner_fee_sat,
        last_hop,
        require_funds: true,
    };
    let id = d.client_in.loop_in(Amount::from_sat(b.amount_sat), opts).await?;
    let found = view_of(&d, &id).await?;
    let bip21 = format!(
        "bitcoin:{}?amount={}",
        found.htlc_address,
        bitcoin::Amount::from_sat(b.amount_sat).to_btc()
    );
    let mut v = serde_json::to_value(found).map_err(|e| bad(e.to_string()))?;
    if let Value::Object(m) = &mut v {
        m.insert("bip21".into(), json!(bip21));
    }
    Ok((StatusCode::CREATED, Json(v)))
}

#[utoipa::path(post, path = "/v1/swaps/{id}/abandon", params(SwapIdPath), responses(
    (status = 200, description = "The loop-in, given up (a funded one is refunded)", body = Abandoned),
    (status = 400, description = "Not a swap id (64 hex characters)", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 404, description = "No swap of this daemon has this id", body = ErrorBody),
    (status = 422, description = "A loop-out (only a loop-in can be abandoned), a swap already final, or a funding not yet confirmed", body = ErrorBody),
    (status = 503, description = "A backend of this daemon (its node, chain source or store) failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn abandon(
    State(d): State<Arc<Daemon>>,
    id: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(id)?;
    // Unknown → 404 (below); a loop-out is known but cannot be abandoned.
    if view_of(&d, &id).await?.kind == "loop_out" {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("swap {id} is a loop-out: only a loop-in can be abandoned"),
        ));
    }
    d.client_in.abandon(&id).await?;
    let (_, rec) = d.client_in.swap(&id).await?;
    Ok(Json(
        json!({"id": id.to_string(), "state": eddy_store::state_name(&rec.state)}),
    ))
}

#[utoipa::path(get, path = "/v1/terms", responses(
    (status = 200, description = "The swap server's terms", body = Terms),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 429, description = "The swap server refused: too many requests (its message passed through)", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 502, description = "The swap server could not be reached or failed (it is named in the message)", body = ErrorBody),
    (status = 503, description = "A backend of this daemon (its node, chain source or store) failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn terms(State(d): State<Arc<Daemon>>) -> Result<Json<Terms>, ApiError> {
    d.server
        .terms()
        .await
        .map(Json)
        .map_err(|m| server_error(m, TERMS_PASSES))
}

#[utoipa::path(get, path = "/v1/quote/out", params(QuoteQuery), responses(
    (status = 200, description = "What a loop-out of this amount costs: the server's quote and the claim's miner fee at the current estimate", body = DaemonQuoteOut),
    (status = 400, description = "Amount missing or not a whole number of sats, or the server's refusal (amount out of range) passed through", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 429, description = "The swap server refused: too many requests (its message passed through)", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 502, description = "The swap server could not be reached or failed (it is named in the message)", body = ErrorBody),
    (status = 503, description = "A backend of this daemon (its node, chain source or store) failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn quote(State(d): State<Arc<Daemon>>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let amount = eddy_core::api::parse_quote_query(q.as_deref().unwrap_or("")).map_err(|e| bad(e.to_string()))?;
    let quote = d
        .server
        .quote_loop_out(amount)
        .await
        .map_err(|m| server_error(m, QUOTE_PASSES))?;
    let mut v = serde_json::to_value(quote).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // The client's own cost: the claim's miner fee at the current estimate.
    let rate = d
        .chain
        .fee_rate(d.cfg.conf_target)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let (coop, script) = eddy_core::tx::loop_out_claim_vbytes();
    if let Value::Object(m) = &mut v {
        m.insert(
            "fee_rate_sat_per_vb".into(),
            json!(rate.to_sat_per_kwu() as f64 * 4.0 / 1000.0),
        );
        m.insert("claim_vbytes".into(), json!(coop));
        m.insert(
            "claim_fee_sat".into(),
            json!(rate.fee_vb(coop).map_or(0, |a| a.to_sat())),
        );
        m.insert(
            "claim_fee_script_path_sat".into(),
            json!(rate.fee_vb(script).map_or(0, |a| a.to_sat())),
        );
    }
    Ok(Json(v))
}

#[utoipa::path(post, path = "/v1/loop-out", request_body = LoopOutBody, responses(
    (status = 201, description = "The swap, created (its payments under way)", body = SwapView),
    (status = 400, description = "Malformed request, an address not of this network, or the server's refusal passed through", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 409, description = "The server already has a swap for this payment hash (passed through)", body = ErrorBody),
    (status = 422, description = "The offer failed this daemon's checks, or the channels cannot send the amount; nothing was paid", body = ErrorBody),
    (status = 429, description = "The swap server refused: too many requests (its message passed through)", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 502, description = "The swap server could not be reached or failed (it is named in the message)", body = ErrorBody),
    (status = 503, description = "A backend of this daemon (its node, chain source or store) failed, the Lightning node is not following the chain (the watchdog: no new swap starts), or the request outlived the request deadline", body = ErrorBody),
))]
async fn loop_out(
    State(d): State<Arc<Daemon>>,
    body: Result<Json<LoopOutBody>, JsonRejection>,
) -> Result<(StatusCode, Json<SwapView>), ApiError> {
    let Json(b) = body.map_err(|r| bad(format!("malformed request: {}", r.body_text())))?;
    taking_swaps(&d)?;
    let destination = match &b.addr {
        Some(a) => parse_address(a, d.cfg.network).map_err(bad)?.script_pubkey(),
        None => {
            // A swap that is refused creates no wallet address: the amount against the
            // server's range and the channels' capacity first (the engine checks both again).
            d.server
                .quote_loop_out(Amount::from_sat(b.amount_sat))
                .await
                .map_err(|m| server_error(m, QUOTE_PASSES))?;
            d.client
                .check_capacity(Amount::from_sat(b.amount_sat), b.options.channel)
                .await?;
            d.ln.new_address()
                .await
                .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
                .script_pubkey()
        }
    };
    let mut options: SwapOptions = b.options.into();
    options.wallet_destination = b.addr.is_none();
    let id = d
        .client
        .loop_out_with(Amount::from_sat(b.amount_sat), destination, options)
        .await?;
    Ok((StatusCode::CREATED, Json(view_of(&d, &id).await?)))
}

#[utoipa::path(get, path = "/v1/swaps", responses(
    (status = 200, description = "Every swap of this daemon, newest first", body = Vec<SwapView>),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 503, description = "A backend of this daemon (its node, chain source or store) failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn list(State(d): State<Arc<Daemon>>) -> Result<Json<Vec<SwapView>>, ApiError> {
    Ok(Json(all_views(&d).await?))
}

#[utoipa::path(get, path = "/v1/swaps/{id}", params(SwapIdPath), responses(
    (status = 200, description = "The swap and its events", body = SwapInfo),
    (status = 400, description = "Not a swap id (64 hex characters)", body = ErrorBody),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 404, description = "No swap of this daemon has this id", body = ErrorBody),
    (status = 503, description = "A backend of this daemon (its node, chain source or store) failed, or the request outlived the request deadline", body = ErrorBody),
))]
async fn swapinfo(
    State(d): State<Arc<Daemon>>,
    id: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(id)?;
    let found = view_of(&d, &id).await?;
    let events = d.client.events(&id).await?;
    let mut v = serde_json::to_value(found).map_err(|e| bad(e.to_string()))?;
    if let Value::Object(m) = &mut v {
        m.insert(
            "events".into(),
            Value::Array(
                events
                    .into_iter()
                    .map(|e| json!({"seq": e.seq, "at": e.at, "event": e.event}))
                    .collect(),
            ),
        );
    }
    Ok(Json(v))
}

/// `GET /v1/monitor`: every swap's current view first, then one `swap` event (a [`SwapView`])
/// per change of any swap, and each running swap's again at every new block (its
/// [`Progress`]), forever. Changes come from the store's announcements (one keyed read
/// each); a listener that fell behind re-reads every swap once.
#[utoipa::path(get, path = "/v1/monitor", responses(
    (status = 200, description = "text/event-stream of `swap` events, each a SwapView: every swap first, then one per change, and the running swaps' again at each new block (their progress)", content_type = "text/event-stream", body = SwapView),
    (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    (status = 503, description = "16 streams (MAX_MONITOR_STREAMS) already open on this daemon", body = ErrorBody),
))]
async fn monitor(
    State(d): State<Arc<Daemon>>,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    use tokio::sync::broadcast::error::RecvError;
    /// One open stream; its place is given back when the stream ends or its reader goes.
    struct Slot(Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for Slot {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let open = d.monitors.clone();
    let taken = open.fetch_update(
        std::sync::atomic::Ordering::SeqCst,
        std::sync::atomic::Ordering::SeqCst,
        |n| (n < MAX_MONITOR_STREAMS).then_some(n + 1),
    );
    if taken.is_err() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{MAX_MONITOR_STREAMS} monitor streams already open on this daemon: close one, or poll GET /v1/swaps"
            ),
        ));
    }
    let slot = Slot(open);
    struct Follow {
        _slot: Slot,
        d: Arc<Daemon>,
        changes: tokio::sync::broadcast::Receiver<SwapId>,
        tips: tokio::sync::watch::Receiver<u32>,
        /// A digest of what was last sent of each swap: a view goes out again only when it
        /// differs (a new state, or a running swap's progress after a block).
        seen: std::collections::HashMap<String, u64>,
        pending: std::collections::VecDeque<String>,
        relist: bool,
        /// A new block: the running swaps' views again (only theirs: final ones do not move).
        relist_running: bool,
    }
    impl Follow {
        fn offer(&mut self, v: SwapView) {
            use std::hash::{Hash, Hasher};
            let data = serde_json::to_string(&v).unwrap_or_default();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            data.hash(&mut h);
            let digest = h.finish();
            if self.seen.get(&v.id) != Some(&digest) {
                self.seen.insert(v.id, digest);
                self.pending.push_back(data);
            }
        }
    }
    // Subscribe before the first listing: nothing written in between is missed.
    let start = Follow {
        _slot: slot,
        changes: d.changes.subscribe(),
        tips: d.tip.subscribe(),
        d,
        seen: Default::default(),
        pending: Default::default(),
        relist: true,
        relist_running: false,
    };
    let stream = futures::stream::unfold(start, |mut f| async move {
        loop {
            if let Some(data) = f.pending.pop_front() {
                return Some((Ok(Event::default().event("swap").data(data)), f));
            }
            if f.relist {
                f.relist = false;
                if let Ok(all) = all_views(&f.d).await {
                    for v in all.into_iter().rev() {
                        f.offer(v);
                    }
                }
                continue;
            }
            if f.relist_running {
                f.relist_running = false;
                if let Ok(running) = running_views(&f.d).await {
                    for v in running {
                        f.offer(v);
                    }
                }
                continue;
            }
            tokio::select! {
                change = f.changes.recv() => match change {
                    Ok(id) => {
                        if let Ok(v) = view_of(&f.d, &id).await {
                            f.offer(v);
                        }
                    }
                    Err(RecvError::Lagged(_)) => f.relist = true,
                    Err(RecvError::Closed) => return None,
                },
                // A new block: the running swaps' progress moved (final ones are unchanged
                // and not sent again).
                tip = f.tips.changed() => match tip {
                    Ok(()) => f.relist_running = true,
                    Err(_) => return None,
                },
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /v1/quote/out` answer: the server's quote and the claim's cost to this client.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DaemonQuoteOut {
    /// The on-chain HTLC value, sat.
    amount_sat: u64,
    /// The server's fee, sat (prepay included).
    swap_fee_sat: u64,
    /// Paid up front, sat.
    prepay_sat: u64,
    /// The swap invoice's amount, sat.
    swap_invoice_sat: u64,
    /// `E − tip` the HTLC would get.
    expiry_delta: u32,
    /// The fee rate the claim would pay now, sat/vB.
    fee_rate_sat_per_vb: f64,
    /// The cooperative claim's size, vB.
    claim_vbytes: u64,
    /// Its miner fee at that rate, sat.
    claim_fee_sat: u64,
    /// The script-path claim's miner fee at that rate, sat.
    claim_fee_script_path_sat: u64,
}

/// `GET /v1/quote/in` answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DaemonQuoteIn {
    /// The on-chain HTLC value this client funds, sat.
    amount_sat: u64,
    /// The server's fee, sat.
    swap_fee_sat: u64,
    /// What this client receives on Lightning: amount − fee, sat.
    invoice_sat: u64,
    /// The funding transaction's size for one wallet input, vB.
    funding_vbytes: u64,
    /// Its miner fee at the current estimate, sat.
    funding_fee_estimate_sat: u64,
    /// That estimate, sat/vB.
    fee_rate_sat_per_vb: f64,
}

/// `POST /v1/loop-in` answer: the swap and where to pay it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LoopInCreated {
    /// The swap.
    #[serde(flatten)]
    view: SwapView,
    /// `bitcoin:<HTLC address>?amount=<BTC>`.
    #[schema(pattern = "^bitcoin:")]
    bip21: String,
}

/// One stored event of a swap.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EventView {
    /// The store version it produced.
    seq: i64,
    /// Unix seconds.
    at: i64,
    /// The event (as the swap's state machine names it).
    #[schema(value_type = Object)]
    event: Value,
}

/// `GET /v1/swaps/{id}` answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SwapInfo {
    /// The swap.
    #[serde(flatten)]
    view: SwapView,
    /// Its events, oldest first.
    events: Vec<EventView>,
}

/// `POST /v1/swaps/{id}/abandon` answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Abandoned {
    /// The swap id.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    id: String,
    /// Its state now.
    state: String,
}

/// Declares the bearer token every route but the document needs.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(format!("the contents of <data dir>/{TOKEN_FILE}")))
                    .build(),
            ),
        );
    }
}

/// The daemon's OpenAPI document (served at `GET /v1/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Eddy client daemon",
        version = "1",
        description = "The local API of `eddy daemon`: loop-outs and loop-ins through a swap server, for the CLI."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(terms, quote, quote_in, loop_out, loop_in_route, list, swapinfo, abandon, monitor),
    components(schemas(
        Terms,
        ErrorBody,
        LoopOutBody,
        OptionsBody,
        LoopInBody,
        SwapView,
        Progress,
        DaemonQuoteOut,
        DaemonQuoteIn,
        LoopInCreated,
        EventView,
        SwapInfo,
        Abandoned
    ))
)]
pub struct DaemonApiDoc;

/// `GET /v1/openapi.json`: [`DaemonApiDoc`], its amounts bounded by the swap server's terms
/// (asked now; without them when the server does not answer), so the document is exact for
/// the server this daemon uses.
async fn openapi(State(d): State<Arc<Daemon>>) -> Json<Value> {
    // One caller at a time asks the server, the others wait for its answer.
    let mut cached = d.doc_range.lock().await;
    let range = match *cached {
        Some((at, range)) if at.elapsed() < std::time::Duration::from_secs(DOC_RANGE_SECS) => range,
        _ => {
            let terms = d.server.terms().await.ok();
            let range = terms.as_ref().map(|t| (t.min_amount_sat, t.max_amount_sat));
            *cached = Some((std::time::Instant::now(), range));
            range
        }
    };
    drop(cached);
    Json(daemon_document(range))
}

/// [`DaemonApiDoc`] as JSON, with every request amount bounded by `range` (min, max sat).
fn daemon_document(range: Option<(u64, u64)>) -> Value {
    let mut api = DaemonApiDoc::openapi();
    api.merge(crate::node_api::NodeApiDoc::openapi());
    let mut doc = serde_json::to_value(api).unwrap_or_default();
    let Some((min, max)) = range else {
        return doc;
    };
    let bound = |v: Option<&mut Value>| {
        if let Some(o) = v.and_then(Value::as_object_mut) {
            o.insert("minimum".into(), json!(min));
            o.insert("maximum".into(), json!(max));
        }
    };
    // The amount's property, wherever the schema's composition (`allOf` with the flattened
    // options) put it.
    fn each_amount(v: &mut Value, f: &dyn Fn(Option<&mut Value>)) {
        match v {
            Value::Object(o) => {
                for (k, child) in o.iter_mut() {
                    if k == "properties" {
                        f(child.get_mut("amount_sat"));
                    } else {
                        each_amount(child, f);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|c| each_amount(c, f)),
            _ => {}
        }
    }
    for schema in ["LoopOutBody", "LoopInBody"] {
        if let Some(s) = doc.pointer_mut(&format!("/components/schemas/{schema}")) {
            each_amount(s, &bound);
        }
    }
    for path in ["~1v1~1quote~1out", "~1v1~1quote~1in"] {
        let params = doc
            .pointer_mut(&format!("/paths/{path}/get/parameters"))
            .and_then(Value::as_array_mut);
        for p in params.into_iter().flatten() {
            if p["name"] == "amount" {
                bound(p.get_mut("schema"));
            }
        }
    }
    doc
}

fn router(d: Arc<Daemon>, node: Arc<crate::node_api::NodeApi>) -> Router {
    Router::new()
        .route("/v1/terms", get(terms))
        .route("/v1/quote/out", get(quote))
        .route("/v1/loop-out", post(loop_out))
        .route("/v1/swaps", get(list))
        .route("/v1/swaps/{id}", get(swapinfo))
        .route("/v1/monitor", get(monitor))
        .route("/v1/quote/in", get(quote_in))
        .route("/v1/loop-in", post(loop_in_route))
        .route("/v1/swaps/{id}/abandon", post(abandon))
        .merge(crate::node_api::router(node))
        .route_layer(axum::middleware::from_fn_with_state(d.clone(), auth))
        // The document holds no secret: tools fetch it without the token.
        .route("/v1/openapi.json", get(openapi))
        .with_state(d)
}

/// Runs `eddy daemon` until SIGTERM.
pub fn run(args: &DaemonArgs) -> anyhow::Result<()> {
    let args: DaemonArgs = layered(args, args.config.as_deref())?;
    args.common.init_logging()?;
    let cfg = args.engine()?;
    let dir = args.common.data_dir("client")?;
    let server_url = args
        .server_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--server-url is required"))?;
    let token = load_or_create_token(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut b = args.common.open_backends(&dir, "client.sqlite").await?;
        // Both engines write through it; `monitor` follows what they write.
        let notifying = Arc::new(eddy_store::NotifyingStore::new(b.store.clone(), 1024));
        b.store = notifying.clone();
        let keys = eddy_store::SeedKeys::load_or_create(&dir, eddy_client::SEED_FILE).context("client seed")?;
        let api: Arc<dyn eddy_client::SwapServerApi> = match args.provider.as_deref().unwrap_or("eddy") {
            // Signs each per-swap call with that swap's key (the engines' keys, same seed).
            "eddy" => Arc::new(
                HttpSwapServer::new(
                    &server_url,
                    eddy_store::SeedKeys::load_or_create(&dir, eddy_client::SEED_FILE).context("client seed")?,
                )
                .map_err(|e| anyhow::anyhow!(e))?,
            ),
            // Keeps each swap's Boltz id in the store, beside the swap.
            "boltz" => Arc::new(
                eddy_client::boltz::BoltzProvider::new(&server_url, b.store.clone(), cfg.network)
                    .map_err(|e| anyhow::anyhow!(e))?,
            ),
            other => anyhow::bail!("--provider {other:?}: `eddy` or `boltz`"),
        };
        let client = Arc::new(
            LoopOutClient::new(
                cfg.clone(),
                b.ln.clone(),
                b.chain.clone(),
                b.store.clone(),
                api.clone(),
                keys,
            )
            .await?,
        );
        let keys = eddy_store::SeedKeys::load_or_create(&dir, eddy_client::SEED_FILE).context("client seed")?;
        let client_in = Arc::new(
            LoopInClient::new(
                cfg.clone(),
                b.ln.clone(),
                b.chain.clone(),
                b.store.clone(),
                api.clone(),
                keys,
            )
            .await?,
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let runner = tokio::spawn(client.clone().run(stop_rx.clone()));
        let runner_in = tokio::spawn(client_in.clone().run(stop_rx));
        let lag_grace = std::time::Duration::from_secs(
            args.node_lag_grace_secs
                .unwrap_or(eddy_core::constants::NODE_LAG_GRACE_SECS),
        );
        let lag_exit = std::time::Duration::from_secs(
            args.node_lag_exit_secs
                .unwrap_or(eddy_core::constants::NODE_LAG_EXIT_SECS),
        );
        let follow = Arc::new(eddy_backends::health::ChainFollow::new());
        let node_api = Arc::new(crate::node_api::NodeApi {
            ln: b.ln.clone(),
            ldk: b.ldk.clone(),
            network: cfg.network,
            follow: Some(follow.clone()),
            chain: b.chain.clone(),
        });
        let daemon = Arc::new(Daemon {
            follow: follow.clone(),
            lag_grace,
            monitors: Arc::default(),
            tip: tokio::sync::watch::channel(0).0,
            client,
            client_in,
            server: api,
            ln: b.ln.clone(),
            chain: b.chain.clone(),
            store: b.store.clone(),
            changes: notifying,
            cfg,
            token,
            doc_range: tokio::sync::Mutex::new(None),
        });
        // The watchdog's first check, before the API serves anything.
        if let Ok(tip) = daemon.chain.tip().await {
            daemon.follow.check(&*daemon.ln, tip.height).await;
            daemon.tip.send_replace(tip.height);
        }
        let listen = args.listen.unwrap_or(DEFAULT_LISTEN);
        crate::config::warn_if_exposed("the daemon's local API", listen);
        let http = eddy_server::http::HttpServer::start(router(daemon.clone(), node_api), listen)
            .await
            .with_context(|| format!("binding the local API to {listen}"))?;
        tracing::info!(api = %http.url(), server = %server_url, "eddy daemon ready");
        println!("eddy daemon: listening on {}", http.url());
        // The watchdog: every few seconds, the node's best block against the chain source's
        // tip; the last resort, a node that has not followed for `lag_exit`, is an exit
        // non-zero for the supervisor to restart the daemon and its node.
        let lagging = crate::config::until_stopped(WATCHDOG_EVERY, || {
            let d = daemon.clone();
            async move {
                match d.chain.tip().await {
                    Ok(tip) => {
                        d.follow.check(&*d.ln, tip.height).await;
                        d.tip
                            .send_if_modified(|h| std::mem::replace(h, tip.height) != tip.height);
                    }
                    Err(e) => tracing::warn!(error = %e, "watchdog: the chain source did not answer"),
                }
                d.follow.lagging_for().is_some_and(|l| l >= lag_exit)
            }
        })
        .await;
        drop(http);
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(crate::config::STOP_BOUND, runner).await;
        let _ = tokio::time::timeout(crate::config::STOP_BOUND, runner_in).await;
        crate::config::stop_node(b.ldk.as_ref()).await?;
        if lagging {
            anyhow::bail!("the Lightning node stopped following the chain");
        }
        anyhow::Ok(())
    })?;
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_private_and_stable() {
        let dir = tempfile::tempdir().expect("tmp");
        let t = load_or_create_token(dir.path()).expect("token");
        assert_eq!(t.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(load_or_create_token(dir.path()).expect("again"), t);
    }

    #[test]
    fn addresses_must_match_the_network() {
        let regtest = "bcrt1qsnaz83m800prgcgp2dxvv5f9z2x4f5lasfekj9";
        assert!(parse_address(regtest, Network::Regtest).is_ok());
        let e = parse_address(regtest, Network::Bitcoin).expect_err("wrong network");
        assert!(e.contains("not an address for the bitcoin network"), "{e}");
        let e = parse_address("bc1qnotanaddress", Network::Regtest).expect_err("garbage");
        assert!(e.contains("not a bitcoin address"), "{e}");
    }

    #[test]
    fn the_document_bounds_every_request_amount_by_the_servers_terms() {
        let doc = daemon_document(Some((10_000, 1_000_000)));
        let range = |v: &Value| (v["minimum"].clone(), v["maximum"].clone());
        let want = (json!(10_000), json!(1_000_000));
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            range(&schemas["LoopOutBody"]["allOf"][1]["properties"]["amount_sat"]),
            want
        );
        assert_eq!(range(&schemas["LoopInBody"]["properties"]["amount_sat"]), want);
        for path in ["/v1/quote/out", "/v1/quote/in"] {
            let params = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let amount = params.iter().find(|p| p["name"] == "amount").expect("amount");
            assert_eq!(range(&amount["schema"]), want, "{path}");
        }
        // Without the server's terms: no range but the type's.
        let doc = daemon_document(None);
        assert_eq!(
            range(&doc["components"]["schemas"]["LoopOutBody"]["allOf"][1]["properties"]["amount_sat"]),
            (json!(0), Value::Null)
        );
    }

    #[test]
    fn monitor_streams_leave_connections_for_the_cli() {
        let per_address = eddy_server::listener::ConnLimits::default().max_per_address;
        assert!(
            MAX_MONITOR_STREAMS * 2 <= per_address,
            "{MAX_MONITOR_STREAMS} of {per_address}"
        );
    }

    #[test]
    fn only_documented_server_refusals_pass_through() {
        let answered = |code: u16| eddy_client::ApiCallError::Answered {
            kind: eddy_client::ErrorKind::of_status(code),
            status: format!("{code} X"),
            message: "words".into(),
        };
        for (passes, code, want) in [
            (TERMS_PASSES, 429, 429),
            (TERMS_PASSES, 404, 502),
            (TERMS_PASSES, 400, 502),
            (QUOTE_PASSES, 400, 400),
            (QUOTE_PASSES, 409, 502),
            (CREATION_PASSES, 409, 409),
            (CREATION_PASSES, 404, 502),
            (CREATION_PASSES, 401, 502),
        ] {
            let e = server_error(answered(code), passes);
            assert_eq!(e.0.as_u16(), want, "{code} through {passes:?}");
            assert!(e.1.contains("words"), "the server's message is kept");
        }
        let unreachable = eddy_client::ApiCallError::Unreachable("refused".into());
        assert_eq!(server_error(unreachable, QUOTE_PASSES).0, 502);
    }

    #[test]
    fn a_passed_through_429_says_when_to_retry() {
        let r = ApiError(StatusCode::TOO_MANY_REQUESTS, "server answered 429: slow down".into()).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.headers()
                .get(axum::http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("60")
        );
        let r = ApiError(StatusCode::BAD_REQUEST, "no".into()).into_response();
        assert!(r.headers().get(axum::http::header::RETRY_AFTER).is_none());
    }

    #[test]
    fn constant_time_compare() {
        use crate::node_api::ct_eq;
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
