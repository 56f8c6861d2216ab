//! The server's HTTP API (JSON, bodies the wire types of [`eddy_core::api`]): terms, quotes,
//! loop-out and loop-in creation, swap status and its event stream, preimage push, MuSig2
//! co-signing (loop-out claims, loop-in refunds, loop-in cooperative claims), and seed 000's
//! `POST /api/loop/out`; Boltz API v2's reverse swaps under `/v2` (the `boltz` module: a second front door to the same engines).
//! Every
//! error is a JSON body `{"error": "..."}` with a 4xx status for bad input (malformed JSON,
//! out-of-range amounts, unknown swap ids, replays) and 5xx only for backend failures; a
//! rejected request changes nothing. Backend and database error text never reaches a caller:
//! it is logged with an error id, and the caller gets a generic message with that id.
//! Preimages are accepted but never echoed or logged, and swap status never includes secrets.
//!
//! Calls on one swap (`GET /v1/swaps/{id}` and every `/v1/swaps/{id}/…` but the preimage push,
//! which authorizes itself by hashing to the id) must carry the swap counterparty's signature
//! ([`eddy_core::auth`], header `x-eddy-swap-auth`, with the key it gave at creation): the swap
//! is looked up first (one store read, no other work), then the signature checked (missing or
//! bad → 401, nothing changed), and only then the body is read and the engine asked. An unknown
//! id answers exactly what a known one with a bad signature answers (401, same text): a
//! stranger learns nothing about which swaps exist.
//!
//! Abuse limits, all per client (an IPv4 address or an IPv6 /64; behind a configured trusted
//! proxy, the right-most `X-Forwarded-For` entry): swap creations per minute; live unpaid
//! loop-out offers ([`eddy_core::constants::UNPAID_OFFERS_PER_CLIENT`]) and unfunded loop-in
//! offers ([`eddy_core::constants::UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT`]) on top of the engine's
//! global budgets; open event streams ([`MAX_EVENT_STREAMS_PER_CLIENT`], [`MAX_EVENT_STREAMS`]
//! in all); and per swap, co-signing calls ([`COSIGN_CALLS_PER_SWAP_PER_MINUTE`]). Refusals
//! that say why the server cannot take a swap (its liquidity, capacity, swaps in flight) reach
//! the caller only as a generic message with an error id; the details are in the log.
//!
//! The Prometheus metrics (they show the swap wallet's balance) are not on this router: see
//! [`metrics_router`], served on its own (loopback by default) address.

mod boltz;
mod boltz_doc;
mod boltz_ws;
mod submarine;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eddy_core::api::{ApiParseError, AuthHeader, QuoteQuery, SwapIdPath};
use eddy_core::types::SwapId;
use serde::Serialize;
use serde_json::json;
use tokio::sync::oneshot;
use utoipa::OpenApi;

/// The wire types of this API live in [`eddy_core::api`] (with their pure parsers); they are
/// re-exported here for the server's callers.
pub use eddy_core::api::{
    ClaimCosign, ClaimOffer, CosignRequest, CosignResponse, ErrorBody, LoopInCreateDoc, LoopInOfferDoc,
    LoopOutCreateDoc, LoopOutOfferDoc, PreimageBody, Quote, QuoteIn, SeedLoopOutRequest, SeedLoopOutResponse,
    SwapState, SwapStatus, Terms,
};

use crate::server_core::ServerError;
use crate::SwapServer;

/// The OpenAPI document of this API (served at `GET /v1/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Eddy swap server",
        version = "1",
        description = "Non-custodial Lightning ⇄ chain swaps: loop-out (Lightning to chain) and loop-in (chain to Lightning), with MuSig2 cooperative claims and refunds."
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
        SwapState,
        PreimageBody,
        CosignRequest,
        CosignResponse,
        LoopOutCreateDoc,
        LoopOutOfferDoc,
        ErrorBody
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document this server serves: [`ApiDoc`] with the amount ranges of its `terms`
/// (every amount a request carries: the loop-out and loop-in amounts, the seed protocol's
/// `loopOutSats`, the quotes' `amount`), so the document is exact for this server.
pub fn openapi_document(terms: &Terms) -> serde_json::Value {
    let mut api = ApiDoc::openapi();
    api.merge(boltz_doc::BoltzDoc::openapi());
    let mut doc = serde_json::to_value(api).unwrap_or_default();
    let range = |v: Option<&mut serde_json::Value>| {
        if let Some(o) = v.and_then(|v| v.as_object_mut()) {
            o.insert("minimum".into(), json!(terms.min_amount_sat));
            o.insert("maximum".into(), json!(terms.max_amount_sat));
        }
    };
    for schema in [
        "LoopOutCreate/properties/amount",
        "LoopInCreate/properties/amount",
        "SeedLoopOutRequest/properties/loopOutSats",
    ] {
        range(doc.pointer_mut(&format!("/components/schemas/{schema}")));
    }
    for path in ["~1v1~1quote~1loop-out", "~1v1~1quote~1loop-in"] {
        let params = doc
            .pointer_mut(&format!("/paths/{path}/get/parameters"))
            .and_then(|p| p.as_array_mut());
        for p in params.into_iter().flatten() {
            if p["name"] == "amount" {
                range(p.get_mut("schema"));
            }
        }
    }
    doc
}

/// An API error.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({"error": self.1}))).into_response();
        // Every request limit is per minute: a refused caller may try again within one.
        if self.0 == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        r
    }
}

impl From<ApiParseError> for ApiError {
    fn from(e: ApiParseError) -> Self {
        ApiError(StatusCode::BAD_REQUEST, e.to_string())
    }
}

/// `Retry-After` of a 429: the limits count requests per minute.
const RETRY_AFTER_SECS: &str = "60";

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
            // Why the server cannot take a swap (its wallet balance, channel capacity, swaps or
            // offers in flight) is the operator's business: logged, not answered.
            ServerError::Unavailable(_) => {
                let error_id = error_id();
                tracing::info!(%error_id, error = %e, "swap refused");
                ApiError(
                    status,
                    format!("the server cannot take this swap now (id {error_id}); retry later"),
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

/// Looks swap `id` up (one store read, before any other work), then checks the request's
/// [`eddy_core::auth::HEADER`] against the key the swap's client gave at creation (401). An
/// unknown id (or a seed-protocol swap) is checked against a key nobody holds, so it answers the
/// very 401 a wrong signature gets.
async fn authorize(
    st: &AppState,
    id: &SwapId,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    // An unknown id, or a seed-protocol swap (no per-swap calls), is checked against a key
    // nobody holds: the caller gets exactly the 401 a wrong signature gets, and no other work
    // is done.
    let key = match st.server.swap_auth_key(id).await {
        Ok(Some(key)) => key,
        Ok(None) | Err(ServerError::NotFound(_)) => st.nobody_key,
        Err(e) => return Err(e.into()),
    };
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

/// A request body as read: too large a body is refused (413) as JSON like every other error.
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| ApiError(r.status(), format!("malformed request: {}", r.body_text())))
}

/// Whether the request says its body is JSON (`application/json` or `application/…+json`),
/// as swap-creation and preimage requests must.
fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let mime = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json = mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::BAD_REQUEST,
            "malformed request: Expected request with `Content-Type: application/json`".into(),
        ))
    }
}

struct AppState {
    server: Arc<SwapServer>,
    terms: Terms,
    limiter: RateLimiter,
    /// Seed-protocol creations (no prepay) per client, tighter.
    seed_limiter: RateLimiter,
    /// Seed-protocol creations from everyone together.
    seed_total: RateLimiter,
    trusted_proxy: Option<IpAddr>,
    /// Live unpaid loop-out offers (normal and seed) per client.
    out_offers: OfferBudget,
    /// Live unfunded loop-in offers per client.
    in_offers: OfferBudget,
    /// Co-signing calls per swap.
    cosign_limiter: RateLimiter<SwapId>,
    /// Open event streams.
    streams: Arc<StreamSlots>,
    /// A key whose secret nobody holds: unknown ids are "authorized" against it (always 401).
    nobody_key: bitcoin::secp256k1::PublicKey,
    /// The chain figures the open `/v2` calls show.
    boltz: boltz::ChainFigures,
    /// Submarine swaps made for a hash whose invoice may still come.
    reservations: submarine::Reservations,
}

/// Most open `GET /v1/swaps/{id}/events` streams from one client (each polls the store): a
/// client follows its own few swaps; more is refused with 429.
pub const MAX_EVENT_STREAMS_PER_CLIENT: usize = 4;
/// Most open event streams from all clients together (503 beyond).
pub const MAX_EVENT_STREAMS: usize = 256;
/// Co-signing calls (`refund-cosign`, `claim`, `claim-cosign`, `cosign`) one swap may make per
/// minute (429 beyond; counted after the signature check, so a stranger cannot use up a
/// client's calls). An honest client needs one or two per block; each call costs the server
/// store reads, a node query or a chain sync.
pub const COSIGN_CALLS_PER_SWAP_PER_MINUTE: usize = 30;

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
    /// read from `X-Forwarded-For`: only the right-most entry, which the proxy wrote (one naming
    /// the proxy itself is passed over); if it does not parse, the peer (see `client_ip`).
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
    /// The client a request comes from, as limits count it ([`client_bucket`]).
    fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        client_bucket(client_ip(self.trusted_proxy, peer, headers))
    }

    /// Counts a request in the caller's per-minute limit (429 beyond it): [`AppState::admit`]
    /// without a body, for calls that cost the node work.
    fn allow(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.limiter.allow(self.client(peer, headers)) {
            return Ok(());
        }
        self.server.metrics().refused("rate_limited");
        Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("more than {} swap requests in a minute", self.limiter.per_minute),
        ))
    }

    /// Admits a swap-creation request: the caller's per-minute limit first, then its JSON
    /// body, parsed by `parse`; each refusal is counted by reason.
    fn admit<T>(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
        parse: impl FnOnce(&[u8]) -> Result<T, ApiParseError>,
    ) -> Result<T, ApiError> {
        self.allow(peer, headers)?;
        let counted = |e: ApiError| {
            self.server.metrics().refused("malformed");
            e
        };
        let body = body_bytes(body).map_err(counted)?;
        json_content_type(headers).map_err(counted)?;
        parse(&body).map_err(|e| {
            self.server
                .metrics()
                .refused(if e.is_malformed() { "malformed" } else { "invalid" });
            ApiError::from(e)
        })
    }

    /// The client of a creation without a prepay (seed protocol, Boltz reverse swaps), if it
    /// may make one now: such an unpaid offer costs its maker nothing, so before anything is
    /// created their own tight limits apply (per client and from everyone together; 429
    /// beyond, naming `what`).
    fn no_prepay_allowed(&self, peer: SocketAddr, headers: &HeaderMap, what: &str) -> Result<IpAddr, ApiError> {
        let ip = self.client(peer, headers);
        if !self.seed_limiter.allow(ip) || !self.seed_total.allow(IpAddr::from([0, 0, 0, 0])) {
            self.server.metrics().refused("rate_limited");
            return Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{what} have no prepay: at most {} a minute per client and {} in all",
                    self.seed_limiter.per_minute, self.seed_total.per_minute
                ),
            ));
        }
        Ok(ip)
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

/// The client a request comes from: the peer, or — only when the peer is the configured
/// trusted proxy — the right-most entry of the last `X-Forwarded-For` header, which the proxy
/// wrote (an entry naming the proxy itself is passed over). Entries left of it were written by
/// the client and prove nothing, so they are never read: if the right-most entry does not parse
/// (as an address, or an `ip:port` / `[ipv6]:port`), the peer is the client.
fn client_ip(trusted_proxy: Option<IpAddr>, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let ip = peer.ip();
    if trusted_proxy != Some(ip) {
        return ip;
    }
    let Some(value) = headers.get_all("x-forwarded-for").iter().next_back() else {
        return ip;
    };
    let Ok(value) = value.to_str() else {
        return ip;
    };
    let parse = |e: &str| {
        let e = e.trim();
        e.parse::<IpAddr>()
            .ok()
            .or_else(|| e.parse::<SocketAddr>().ok().map(|a| a.ip()))
    };
    let mut entries = value.rsplit(',');
    match entries.next().map(parse) {
        Some(Some(e)) if Some(e) == trusted_proxy => entries.next().and_then(parse).unwrap_or(ip),
        Some(Some(e)) => e,
        _ => ip,
    }
}

/// The bucket limits count a client in: an IPv4 address (an IPv4-mapped IPv6 address counts
/// as its IPv4 address) or an IPv6 /64 (one subscriber's network: its 2^64 addresses are one
/// client).
fn client_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(seg))
            }
        },
    }
}

/// Most clients (or swaps) a [`RateLimiter`] or [`OfferBudget`] tracks at once.
const MAX_TRACKED: usize = 100_000;

/// Limit on requests per key (a client bucket, a swap) in a sliding minute. Its memory is
/// bounded: a key's entry is dropped once its minute is over (whole map pruned at most once a
/// minute), and at most `max_keys` keys are tracked — when full, the oldest tracked key is
/// forgotten, so a flood from many addresses can never lock out a new honest client (it only
/// makes old entries be forgotten sooner).
struct RateLimiter<K = IpAddr> {
    per_minute: usize,
    max_keys: usize,
    seen: std::sync::Mutex<Seen<K>>,
}

struct Seen<K> {
    pruned: std::time::Instant,
    map: Bounded<K, VecDeque<std::time::Instant>>,
}

/// A map of at most a given number of keys that forgets its oldest key (by when it started
/// being tracked) to make room for a new one: the bounded bookkeeping of the rate limiter and
/// the offer budget, so a flood from many addresses only makes old entries be forgotten sooner.
struct Bounded<K, V> {
    map: HashMap<K, V>,
    /// Keys in the order they started being tracked (eviction order).
    order: VecDeque<K>,
}

impl<K, V> Default for Bounded<K, V> {
    fn default() -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy, V: Default> Bounded<K, V> {
    /// `key`'s value, created (after forgetting the oldest keys while `max` are tracked) if new.
    fn entry(&mut self, key: K, max: usize) -> &mut V {
        if !self.map.contains_key(&key) {
            while self.map.len() >= max {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(key);
        }
        self.map.entry(key).or_default()
    }

    /// Keeps only the keys `keep` says to.
    fn retain(&mut self, keep: impl FnMut(&K, &mut V) -> bool) {
        self.map.retain(keep);
        let map = &self.map;
        self.order.retain(|k| map.contains_key(k));
    }

    /// Forgets `key`.
    fn remove(&mut self, key: &K) {
        if self.map.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy> RateLimiter<K> {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

    fn new(per_minute: usize) -> RateLimiter<K> {
        Self::with_max(per_minute, MAX_TRACKED)
    }

    fn with_max(per_minute: usize, max_keys: usize) -> RateLimiter<K> {
        RateLimiter {
            per_minute,
            max_keys: max_keys.max(1),
            seen: std::sync::Mutex::new(Seen {
                pruned: std::time::Instant::now(),
                map: Bounded::default(),
            }),
        }
    }

    fn allow(&self, key: K) -> bool {
        let now = std::time::Instant::now();
        let mut guard = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let seen = &mut *guard;
        if now.duration_since(seen.pruned) > Self::WINDOW {
            seen.map
                .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) <= Self::WINDOW));
            seen.pruned = now;
        }
        let q = seen.map.entry(key, self.max_keys);
        while q.front().is_some_and(|t| now.duration_since(*t) > Self::WINDOW) {
            q.pop_front();
        }
        if q.len() >= self.per_minute {
            return false;
        }
        q.push_back(now);
        true
    }

    /// Keys tracked now (tests: the map is pruned and bounded).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).map.map.len()
    }
}

/// Per-client budget of live offers (unpaid loop-outs, unfunded loop-ins): the engine's budgets
/// are global, so without this one address could fill them and keep everyone else out. A
/// client's offers are counted until the engine says they are no longer live
/// ([`SwapServer::is_live_offer`]: paid/funded, or expired); a creation in progress holds
/// its place (concurrent requests cannot overshoot). At most [`MAX_TRACKED`] clients are
/// tracked (the oldest forgotten beyond; the engine's global budget still holds).
struct OfferBudget {
    per_client: usize,
    what: &'static str,
    clients: std::sync::Mutex<ClientOffers>,
}

#[derive(Default)]
struct ClientOffers {
    next_ticket: u64,
    /// Per client: (ticket, the swap once created).
    map: Bounded<IpAddr, Vec<(u64, Option<SwapId>)>>,
}

impl OfferBudget {
    fn new(per_client: usize, what: &'static str) -> OfferBudget {
        OfferBudget {
            per_client,
            what,
            clients: std::sync::Mutex::new(ClientOffers::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClientOffers> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place in `client`'s budget for one creation (429 when its live offers fill it).
    /// [`OfferPlace::hold`] ends the place; a creation cut mid-way leaves it holding the swap id
    /// it was for, freed here once that id is not a live offer (see [`OfferPlace`]).
    async fn reserve(&self, server: &SwapServer, client: IpAddr) -> Result<OfferPlace<'_>, ApiError> {
        let ids: Vec<SwapId> = {
            let g = self.lock();
            match g.map.map.get(&client) {
                Some(v) if v.len() >= self.per_client => v.iter().filter_map(|(_, id)| *id).collect(),
                _ => vec![],
            }
        };
        // Full: forget the offers that are no longer live (one store read each, at most
        // `per_client`).
        let mut gone = vec![];
        for id in ids {
            if !server.is_live_offer(&id).await? {
                gone.push(id);
            }
        }
        let mut g = self.lock();
        let g = &mut *g;
        let v = g.map.entry(client, MAX_TRACKED);
        v.retain(|(_, id)| id.is_none_or(|id| !gone.contains(&id)));
        if v.len() >= self.per_client {
            server.metrics().refused("offer_budget");
            return Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{} live {} from this client, the most it may hold: complete or abandon one first",
                    v.len(),
                    self.what
                ),
            ));
        }
        g.next_ticket += 1;
        v.push((g.next_ticket, None));
        Ok(OfferPlace {
            budget: self,
            client,
            ticket: g.next_ticket,
            held: false,
            candidate: None,
        })
    }

    /// Ends a [`OfferBudget::reserve`]: the place now holds swap `id`, or is given back.
    fn finish(&self, client: IpAddr, ticket: u64, id: Option<SwapId>) {
        let mut g = self.lock();
        let g = &mut *g;
        let Some(v) = g.map.map.get_mut(&client) else {
            return;
        };
        match id {
            Some(id) => {
                if let Some(e) = v.iter_mut().find(|(t, _)| *t == ticket) {
                    e.1 = Some(id);
                }
            }
            None => v.retain(|(t, _)| *t != ticket),
        }
        if v.is_empty() {
            g.map.remove(&client);
        }
    }
}

/// A place taken in a client's [`OfferBudget`] by a creation in progress. [`OfferPlace::hold`]
/// ends it: holding the created swap, or given back when nothing was created. Dropped without
/// that (the client went away while the handler awaited the engine, and its future was
/// dropped), the creation may or may not have stored its swap: the place then holds the swap id
/// the creation was for ([`OfferPlace::for_swap`]), and [`OfferBudget::reserve`] frees it once
/// that id is not a live offer — at once when no record was stored. Giving it back outright
/// would let a client that cuts its creations after the store write hold more live offers than
/// its budget.
struct OfferPlace<'a> {
    budget: &'a OfferBudget,
    client: IpAddr,
    ticket: u64,
    held: bool,
    candidate: Option<SwapId>,
}

impl OfferPlace<'_> {
    /// The swap id the creation is for (known before it starts).
    fn for_swap(mut self, id: Option<SwapId>) -> Self {
        self.candidate = id;
        self
    }

    /// The creation ended: `Some(id)`, the place holds swap `id` while it is a live offer;
    /// `None`, nothing was created and the place is given back.
    fn hold(mut self, id: Option<SwapId>) {
        self.held = true;
        self.budget.finish(self.client, self.ticket, id);
    }
}

impl Drop for OfferPlace<'_> {
    fn drop(&mut self) {
        if !self.held {
            self.budget.finish(self.client, self.ticket, self.candidate);
        }
    }
}

/// Open event streams, total and per client; a [`StreamSlot`] gives its place back when the
/// stream ends or the client goes away.
#[derive(Default)]
struct StreamSlots {
    open: std::sync::Mutex<(usize, HashMap<IpAddr, usize>)>,
}

struct StreamSlot {
    slots: Arc<StreamSlots>,
    client: IpAddr,
}

impl StreamSlots {
    fn open(self: &Arc<Self>, client: IpAddr) -> Result<StreamSlot, ApiError> {
        let mut g = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *g;
        if *total >= MAX_EVENT_STREAMS {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many event streams open on this server; poll GET /v1/swaps/{id} or retry later".into(),
            ));
        }
        let mine = per.entry(client).or_default();
        if *mine >= MAX_EVENT_STREAMS_PER_CLIENT {
            return Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                format!("at most {MAX_EVENT_STREAMS_PER_CLIENT} event streams open per client"),
            ));
        }
        *mine += 1;
        *total += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            client,
        })
    }

    #[cfg(test)]
    fn total(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut g = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *g;
        *total = total.saturating_sub(1);
        if let Some(n) = per.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&self.client);
            }
        }
    }
}

impl AppState {
    /// Counts a co-signing call of swap `id` (after its signature was checked).
    fn cosign_call(&self, id: &SwapId) -> Result<(), ApiError> {
        if self.cosign_limiter.allow(*id) {
            return Ok(());
        }
        self.server.metrics().refused("rate_limited");
        Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("more than {COSIGN_CALLS_PER_SWAP_PER_MINUTE} co-signing calls for this swap in a minute"),
        ))
    }
}

#[utoipa::path(get, path = "/v1/terms", responses(
    (status = 200, description = "The server's terms", body = Terms),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn terms(State(st): State<Arc<AppState>>) -> Json<Terms> {
    Json(st.terms.clone())
}

#[utoipa::path(post, path = "/v1/loop-out", request_body = LoopOutCreateDoc, responses(
    (status = 201, description = "The offer (both hold invoices, the server key, E, the HTLC address)", body = LoopOutOfferDoc),
    (status = 400, description = "Malformed request (not JSON, no JSON content type, bad hex, not a compressed key, amount not a whole number of sats) or amount out of the terms' range", body = ErrorBody),
    (status = 409, description = "A swap for this payment hash exists", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than the per-minute swap requests from this client (malformed ones count too), or as many live unpaid (unfunded) offers as one client may hold", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "The server cannot take this swap now (its liquidity, capacity or swaps in flight), a backend failed, or the request outlived the server's request deadline (a generic message with an error id; the reason is in the server's log)", body = ErrorBody),
))]
async fn loop_out(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = st.admit(peer, &headers, body, eddy_core::api::parse_loop_out_create)?;
    let client = st.client(peer, &headers);
    let id = SwapId::from(req.payment_hash);
    let place = st.out_offers.reserve(&st.server, client).await?.for_swap(Some(id));
    let made = st.server.loop_out.create(&req).await;
    place.hold(made.is_ok().then_some(id));
    let offer = made.inspect_err(|e| st.count_refusal(e))?;
    Ok((StatusCode::CREATED, Json(offer)))
}

#[utoipa::path(get, path = "/v1/quote/loop-out", params(QuoteQuery), responses(
    (status = 200, description = "What a loop-out of this amount costs", body = Quote),
    (status = 400, description = "Amount missing, not a whole number of sats, or out of the terms' range", body = ErrorBody),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn quote(State(st): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Result<Json<Quote>, ApiError> {
    let amount = eddy_core::api::parse_quote_query(q.as_deref().unwrap_or(""))?;
    let quote = st.server.loop_out.quote(amount)?;
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
pub fn metrics_router(server: Arc<SwapServer>) -> Router {
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

/// `POST /api/loop/out`: seed 000's exchange, unchanged. The HTLC is seed 000's BIP199 P2WSH
/// (`OP_SHA256 <hash> OP_EQUAL OP_IF OP_DUP OP_HASH160 <claim> OP_ELSE 40 OP_CSV OP_DROP OP_DUP
/// OP_HASH160 <refund> OP_ENDIF OP_EQUALVERIFY OP_CHECKSIG`), paying exactly `loopOutSats`.
#[utoipa::path(post, path = "/api/loop/out", request_body = SeedLoopOutRequest, responses(
    (status = 200, description = "The refund address and the hold invoice", body = SeedLoopOutResponse),
    (status = 400, description = "Malformed request, not a P2WPKH address of this network, bad hash, amount out of range", body = ErrorBody),
    (status = 409, description = "A swap for this hash exists", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than the per-minute swap requests from this client (malformed ones count too), more seed-protocol swaps a minute than this client or all clients may make, or as many live unpaid offers as one client may hold", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "The server cannot take this swap now (its liquidity, capacity or swaps in flight), a backend failed, or the request outlived the server's request deadline (a generic message with an error id; the reason is in the server's log)", body = ErrorBody),
))]
async fn seed_loop_out(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SeedLoopOutResponse>, ApiError> {
    let network = st.server.network();
    let req = st.admit(peer, &headers, body, |b| {
        eddy_core::api::parse_seed_loop_out(b, network)
    })?;
    st.server.loop_out.quote(req.amount).map_err(|e| {
        st.server.metrics().refused("invalid");
        ApiError(
            StatusCode::BAD_REQUEST,
            e.to_string().trim_start_matches("invalid request: ").to_string(),
        )
    })?;
    let ip = st.no_prepay_allowed(peer, &headers, "seed-protocol swaps")?;
    // Seed offers count against the client's offer budget like prepaid ones (and against a
    // global budget of their own in the engine).
    let id = SwapId::from(req.hash);
    let place = st.out_offers.reserve(&st.server, ip).await?.for_swap(Some(id));
    let made = st
        .server
        .loop_out
        .create_seed(req.amount, req.hash, req.claim_pkh)
        .await;
    place.hold(made.is_ok().then_some(id));
    let (refund, invoice) = made.inspect_err(|e| st.count_refusal(e))?;
    Ok(Json(SeedLoopOutResponse {
        htlc_refund_address: refund.to_string(),
        payment_request: invoice,
    }))
}

/// An engine error of a call on a swap the caller proved is theirs: "not found" there means the
/// swap is of the other kind (a loop-in's id on a loop-out call), which is the caller's
/// mistake (400), not an unknown swap.
fn of_kind(kind: &'static str) -> impl Fn(ServerError) -> ApiError {
    move |e| match e {
        ServerError::NotFound(id) => ApiError(StatusCode::BAD_REQUEST, format!("swap {id} is not a {kind}")),
        e => e.into(),
    }
}

/// The swap id of a path (400 when it is not one, as JSON like every error: the path's own
/// rejection, e.g. for bytes that are not UTF-8, included).
fn path_id(p: Result<Path<String>, PathRejection>) -> Result<SwapId, ApiError> {
    let Path(id) = p.map_err(|r| ApiError(StatusCode::BAD_REQUEST, format!("not a swap id: {}", r.body_text())))?;
    Ok(eddy_core::api::parse_id(&id)?)
}

#[utoipa::path(get, path = "/v1/swaps/{id}", params(SwapIdPath, AuthHeader), responses(
    (status = 200, description = "The swap's status (never any secret)", body = SwapStatus),
    (status = 400, description = "Not a swap id (64 hex characters)", body = ErrorBody),
    (status = 401, description = "Missing or bad x-eddy-swap-auth signature, or no such swap (the same answer: a stranger cannot tell)", body = ErrorBody),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn status(
    State(st): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<SwapStatus>, ApiError> {
    let id = path_id(id)?;
    authorize(&st, &id, &method, &uri, &headers, &[]).await?;
    Ok(Json(any_status(&st, &id).await?))
}

async fn any_status(st: &AppState, id: &SwapId) -> Result<SwapStatus, ServerError> {
    match st.server.loop_out.swap(id).await {
        Ok((_, rec)) => Ok(status_of(id, &rec)),
        Err(ServerError::NotFound(_)) => {
            let (_, rec) = st.server.loop_in.swap(id).await?;
            Ok(in_status_of(id, &rec))
        }
        Err(e) => Err(e),
    }
}

#[utoipa::path(get, path = "/v1/quote/loop-in", params(QuoteQuery), responses(
    (status = 200, description = "What a loop-in of this amount costs", body = QuoteIn),
    (status = 400, description = "Amount missing, not a whole number of sats, or out of the terms' range", body = ErrorBody),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn quote_in(State(st): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Result<Json<QuoteIn>, ApiError> {
    let amount = eddy_core::api::parse_quote_query(q.as_deref().unwrap_or(""))?;
    let quote = st.server.loop_in.quote(amount)?;
    Ok(Json(QuoteIn {
        amount_sat: quote.amount.to_sat(),
        swap_fee_sat: quote.swap_fee.to_sat(),
        invoice_sat: quote.invoice_amount.to_sat(),
        expiry_delta: eddy_core::constants::DEFAULT_LOOP_IN_EXPIRY_DELTA,
    }))
}

#[utoipa::path(post, path = "/v1/loop-in", request_body = LoopInCreateDoc, responses(
    (status = 201, description = "The HTLC to fund", body = LoopInOfferDoc),
    (status = 400, description = "Malformed request, amount out of range, bad invoice (amount ≠ amount − fee, network, lifetime, final CLTV), or a last hop this server cannot restrict", body = ErrorBody),
    (status = 409, description = "A swap for this payment hash exists", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than the per-minute swap requests from this client (malformed ones count too), or as many live unpaid (unfunded) offers as one client may hold", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "The server cannot take this swap now (its liquidity, capacity or swaps in flight), a backend failed, or the request outlived the server's request deadline (a generic message with an error id; the reason is in the server's log)", body = ErrorBody),
))]
async fn loop_in(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = st.admit(peer, &headers, body, eddy_core::api::parse_loop_in_create)?;
    let client = st.client(peer, &headers);
    // The swap id is the invoice's payment hash (the engine checks the invoice the same way).
    let id = eddy_core::validate::decode_invoice("invoice", &req.invoice, st.server.network(), 0, 0)
        .ok()
        .map(|f| SwapId::from(f.payment_hash));
    let place = st.in_offers.reserve(&st.server, client).await?.for_swap(id);
    let made = st.server.create_loop_in(&req).await;
    place.hold(made.is_ok().then_some(id).flatten());
    let offer = made.inspect_err(|e| st.count_refusal(e))?;
    Ok((StatusCode::CREATED, Json(offer)))
}

#[utoipa::path(get, path = "/v1/swaps/{id}/claim", params(SwapIdPath, AuthHeader), responses(
    (status = 200, description = "The loop-in claim the server asks the client to co-sign (only once the server has paid)", body = ClaimOffer),
    (status = 400, description = "Not a swap id, not a loop-in, or no claim to co-sign now", body = ErrorBody),
    (status = 401, description = "Missing or bad x-eddy-swap-auth signature, or no such swap (the same answer: a stranger cannot tell)", body = ErrorBody),
    (status = 429, description = "More than COSIGN_CALLS_PER_SWAP_PER_MINUTE co-signing calls for this swap in a minute", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn claim_offer(
    State(st): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<ClaimOffer>, ApiError> {
    use bitcoin::hex::DisplayHex;
    let id = path_id(id)?;
    // Only the client may (re)open the signing session.
    authorize(&st, &id, &method, &uri, &headers, &[]).await?;
    st.cosign_call(&id)?;
    let ask = st.server.loop_in.claim_session(&id).await?;
    Ok(Json(ClaimOffer {
        nonce: ask.nonce.to_lower_hex_string(),
        tx: bitcoin::consensus::encode::serialize_hex(&ask.tx),
        index: Some(ask.index as u32),
        prevouts: Some(ask.prevouts.iter().map(eddy_core::api::Prevout::from).collect()),
    }))
}

#[utoipa::path(post, path = "/v1/swaps/{id}/claim-cosign", params(SwapIdPath, AuthHeader), request_body = ClaimCosign, responses(
    (status = 204, description = "Checked and aggregated: the claim round goes out as soon as every client co-signed, at the latest the next block"),
    (status = 400, description = "Not a swap id, not a loop-in, bad nonce or partial signature, or no claim offered", body = ErrorBody),
    (status = 401, description = "Missing or bad x-eddy-swap-auth signature, or no such swap (the same answer: a stranger cannot tell)", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than COSIGN_CALLS_PER_SWAP_PER_MINUTE co-signing calls for this swap in a minute", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn claim_cosign(
    State(st): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(id)?;
    let body = body_bytes(body)?;
    authorize(&st, &id, &method, &uri, &headers, &body).await?;
    st.cosign_call(&id)?;
    let (nonce, partial) = eddy_core::api::parse_claim_cosign(&body)?;
    st.server.loop_in.claim_cosigned(&id, &nonce, &partial).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/swaps/{id}/refund-cosign", params(SwapIdPath, AuthHeader), request_body = CosignRequest, responses(
    (status = 200, description = "The server's MuSig2 nonce and partial signature for the client's key-path refund of a loop-in the server will not pay", body = CosignResponse),
    (status = 400, description = "Not a swap id, not a loop-in, bad nonce or transaction, the server paid or is paying, or not a refund of this HTLC", body = ErrorBody),
    (status = 401, description = "Missing or bad x-eddy-swap-auth signature, or no such swap (the same answer: a stranger cannot tell)", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than COSIGN_CALLS_PER_SWAP_PER_MINUTE co-signing calls for this swap in a minute", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn refund_cosign(
    State(st): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CosignResponse>, ApiError> {
    let id = path_id(id)?;
    let body = body_bytes(body)?;
    authorize(&st, &id, &method, &uri, &headers, &body).await?;
    st.cosign_call(&id)?;
    let (nonce, tx) = eddy_core::api::cosign_request(&body)?;
    let signed = st.server.loop_in.cosign_refund(&id, &nonce, &tx).await;
    Ok(Json(CosignResponse::from(signed.map_err(of_kind("loop-in"))?)))
}

#[utoipa::path(post, path = "/v1/swaps/{id}/preimage", params(SwapIdPath), request_body = PreimageBody, responses(
    (status = 204, description = "Learned; the swap invoice is being settled"),
    (status = 400, description = "Not a swap id, not JSON, not 32 bytes of hex, or not this swap's preimage", body = ErrorBody),
    (status = 404, description = "No loop-out with this id (told only to the holder of its preimage)", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn push_preimage(
    State(st): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(id)?;
    let body = body_bytes(body)?;
    json_content_type(&headers)?;
    let preimage = eddy_core::api::parse_preimage(&body)?;
    if SwapId::from(preimage.payment_hash()) != id {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "preimage does not match the swap".into(),
        ));
    }
    // Only the holder of the preimage learns whether the swap exists (404): anyone who saw the
    // payment hash (every routing node) gets the same 400 for junk whether it does or not.
    st.server.loop_out.push_preimage(&preimage).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/swaps/{id}/cosign", params(SwapIdPath, AuthHeader), request_body = CosignRequest, responses(
    (status = 200, description = "The server's MuSig2 nonce and partial signature for the key-path claim (of input `index` of a batched claim, over the prevouts named)", body = CosignResponse),
    (status = 400, description = "Not a swap id, not a loop-out, bad nonce or transaction, preimage not yet known to the server, not a claim of this HTLC, or a batch (several inputs) whose index or prevouts do not fit it or name another output for this HTLC", body = ErrorBody),
    (status = 401, description = "Missing or bad x-eddy-swap-auth signature, or no such swap (the same answer: a stranger cannot tell)", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than COSIGN_CALLS_PER_SWAP_PER_MINUTE co-signing calls for this swap in a minute", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn cosign(
    State(st): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CosignResponse>, ApiError> {
    let id = path_id(id)?;
    let body = body_bytes(body)?;
    authorize(&st, &id, &method, &uri, &headers, &body).await?;
    st.cosign_call(&id)?;
    let ask = eddy_core::api::cosign_ask(&body)?;
    let signed = st
        .server
        .loop_out
        .cosign_claim(&id, &ask.nonce, &ask.tx, ask.index, ask.prevouts.as_deref())
        .await;
    Ok(Json(CosignResponse::from(signed.map_err(of_kind("loop-out"))?)))
}

/// `GET /v1/swaps/{id}/events`: a server-sent event stream of the swap's status (loop-out or
/// loop-in), one event per change, ending once the swap is final.
#[utoipa::path(get, path = "/v1/swaps/{id}/events", params(SwapIdPath, AuthHeader), responses(
    (status = 200, description = "text/event-stream of `status` events, each a SwapStatus; ends at a final state", content_type = "text/event-stream", body = SwapStatus),
    (status = 400, description = "Not a swap id (64 hex characters)", body = ErrorBody),
    (status = 401, description = "Missing or bad x-eddy-swap-auth signature, or no such swap (the same answer: a stranger cannot tell)", body = ErrorBody),
    (status = 429, description = "MAX_EVENT_STREAMS_PER_CLIENT streams already open from this client", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "MAX_EVENT_STREAMS streams already open on the server, or a backend (store) failed", body = ErrorBody),
))]
async fn events(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    id: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let id = path_id(id)?;
    // Unknown ids and strangers are refused before the stream starts.
    authorize(&st, &id, &method, &uri, &headers, &[]).await?;
    // The slot travels with the stream: given back when it ends or the client goes away.
    let slot = st.streams.open(st.client(peer, &headers))?;
    let stream = futures::stream::unfold(
        (st, id, String::new(), false, slot),
        |(st, id, last, done, slot)| async move {
            if done {
                return None;
            }
            loop {
                let Ok(status) = any_status(&st, &id).await else {
                    return None;
                };
                let key = format!("{:?}:{:?}", status.state, status.htlc_outpoint);
                if key != last {
                    let terminal = status.terminal;
                    let data = serde_json::to_string(&status).unwrap_or_default();
                    return Some((
                        Ok(Event::default().event("status").data(data)),
                        (st, id, key, terminal, slot),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn status_of(id: &SwapId, rec: &crate::loop_out::ServerLoopOut) -> SwapStatus {
    swap_status(id, &rec.state, rec.state.is_terminal(), rec.terms.expiry, rec.funding)
}

fn in_status_of(id: &SwapId, rec: &crate::loop_in::ServerLoopIn) -> SwapStatus {
    swap_status(id, &rec.state, rec.state.is_terminal(), rec.terms.expiry, rec.funding)
}

fn swap_status<S: Serialize>(
    id: &SwapId,
    state: &S,
    terminal: bool,
    expiry: u32,
    funding: Option<bitcoin::OutPoint>,
) -> SwapStatus {
    SwapStatus {
        id: id.to_string(),
        state: eddy_core::api::SwapState::from_name(&eddy_store::state_name(state)),
        terminal,
        expiry,
        htlc_outpoint: funding.map(|o| o.to_string()),
    }
}

/// The router; `per_minute` limits swap-creation requests per client IP (see [`Limits::new`]).
pub fn router(server: Arc<SwapServer>, terms: Terms, per_minute: usize) -> Router {
    router_with(server, terms, Limits::new(per_minute))
}

/// The router with explicit [`Limits`].
pub fn router_with(server: Arc<SwapServer>, terms: Terms, limits: Limits) -> Router {
    Router::new()
        .route("/v1/openapi.json", {
            let doc = openapi_document(&terms);
            get(move || async move { Json(doc) })
        })
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
        .merge(boltz::routes())
        .with_state(Arc::new(AppState {
            server,
            terms,
            limiter: RateLimiter::new(limits.per_minute),
            seed_limiter: RateLimiter::new(limits.seed_per_minute),
            seed_total: RateLimiter::new(limits.seed_total_per_minute),
            trusted_proxy: limits.trusted_proxy,
            out_offers: OfferBudget::new(eddy_core::constants::UNPAID_OFFERS_PER_CLIENT, "unpaid loop-out offers"),
            in_offers: OfferBudget::new(
                eddy_core::constants::UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT,
                "unfunded loop-in offers",
            ),
            cosign_limiter: RateLimiter::new(COSIGN_CALLS_PER_SWAP_PER_MINUTE),
            streams: Arc::new(StreamSlots::default()),
            nobody_key: bitcoin::secp256k1::PublicKey::from_secret_key(
                &bitcoin::secp256k1::Secp256k1::signing_only(),
                &bitcoin::secp256k1::SecretKey::new(&mut bitcoin::secp256k1::rand::thread_rng()),
            ),
            boltz: boltz::ChainFigures::default(),
            reservations: submarine::Reservations::default(),
        }))
}

/// A running HTTP server; stops when dropped. Every connection is held to
/// [`crate::listener::ConnLimits`].
pub struct HttpServer {
    addr: SocketAddr,
    stats: Arc<crate::listener::ConnStats>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl HttpServer {
    /// Serves `router` on `bind` (tests: `127.0.0.1:0`) with the default connection limits.
    pub async fn start(router: Router, bind: SocketAddr) -> std::io::Result<HttpServer> {
        Self::start_with(router, bind, crate::listener::ConnLimits::default()).await
    }

    /// Serves `router` on `bind` with `limits`.
    pub async fn start_with(
        router: Router,
        bind: SocketAddr,
        limits: crate::listener::ConnLimits,
    ) -> std::io::Result<HttpServer> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let stats = Arc::new(crate::listener::ConnStats::default());
        tokio::spawn(crate::listener::serve(listener, router, limits, stats.clone(), rx));
        Ok(HttpServer {
            addr,
            stats,
            shutdown: Some(tx),
        })
    }

    /// What the listener has seen so far.
    pub fn stats(&self) -> &crate::listener::ConnStats {
        &self.stats
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
    fn why_the_server_cannot_take_a_swap_never_reaches_the_caller() {
        for reason in [
            "insufficient on-chain liquidity for 900000 sat (available 123456 sat)",
            "not enough outbound liquidity now: the invoice asks 596000 sat, this server's channels can send 400000 sat",
            "12 swaps in flight, the most this server takes",
            "37 unpaid offers outstanding; retry in a few minutes",
        ] {
            let ApiError(status, msg) = ApiError::from(ServerError::Unavailable(reason.into()));
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(msg.starts_with("the server cannot take this swap now (id "), "{msg}");
            assert!(!msg.chars().any(|c| c.is_ascii_digit()) || msg.contains("(id "), "{msg}");
            for leak in ["liquidity", "123456", "400000", "in flight", "offers", "sat"] {
                assert!(!msg.contains(leak), "{msg}");
            }
        }
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
            let old = std::time::Instant::now() - RateLimiter::<IpAddr>::WINDOW - std::time::Duration::from_secs(1);
            g.pruned = old;
            for q in g.map.map.values_mut() {
                for t in q.iter_mut() {
                    *t = old;
                }
            }
        }
        assert!(l.allow(IpAddr::from([10, 0, 0, 200])));
        assert_eq!(l.tracked(), 1, "expired clients pruned");
        assert_eq!(
            l.seen.lock().expect("lock").map.order.len(),
            1,
            "eviction order pruned too"
        );
    }

    /// Review #6: a full map used to refuse every new client (one /64 at a few thousand
    /// requests a second kept honest newcomers out); now the oldest tracked client is
    /// forgotten and the newcomer served, memory still bounded.
    #[test]
    fn a_full_rate_limiter_forgets_its_oldest_client_instead_of_refusing_new_ones() {
        let l = RateLimiter::with_max(1, 3);
        for i in 1..=3u8 {
            assert!(l.allow(IpAddr::from([10, 0, 0, i])));
        }
        assert!(l.allow(IpAddr::from([192, 0, 2, 1])), "a new client is served");
        assert_eq!(l.tracked(), 3, "bounded");
        assert!(!l.allow(IpAddr::from([10, 0, 0, 3])), "recent clients keep their count");
        assert!(!l.allow(IpAddr::from([192, 0, 2, 1])));
        // The oldest (10.0.0.1) was forgotten.
        assert!(l.allow(IpAddr::from([10, 0, 0, 1])));
        assert_eq!(l.tracked(), 3);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a = |s: &str| client_bucket(s.parse::<IpAddr>().expect("ip"));
        assert_eq!(a("2001:db8:1:2::1"), a("2001:db8:1:2:ffff:eeee:dddd:cccc"));
        assert_eq!(
            a("2001:db8:1:2:abcd::9"),
            a("2001:db8:1:2::").to_string().parse::<IpAddr>().expect("ip")
        );
        assert_ne!(a("2001:db8:1:2::1"), a("2001:db8:1:3::1"));
        assert_eq!(a("::ffff:192.0.2.7"), a("192.0.2.7"), "IPv4-mapped is its IPv4 address");
        assert_ne!(a("192.0.2.7"), a("192.0.2.8"));
        // A whole /64 shares one quota.
        let l = RateLimiter::new(2);
        assert!(l.allow(a("2001:db8::1")));
        assert!(l.allow(a("2001:db8::2")));
        assert!(!l.allow(a("2001:db8::3")), "third from the same /64");
        assert!(l.allow(a("2001:db8:0:1::1")), "another /64");
    }

    /// Review #6: only the right-most `X-Forwarded-For` entry (the one the trusted proxy wrote)
    /// names the client; when it does not parse, the peer does — the old code walked left to a
    /// client-written entry, letting the client choose its address.
    #[test]
    fn only_the_right_most_forwarded_entry_names_the_client() {
        let proxy: IpAddr = "127.0.0.1".parse().expect("ip");
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
        let ip = |values: &[&str], trusted: Option<IpAddr>, peer: SocketAddr| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("x-forwarded-for", v.parse().expect("header"));
            }
            client_ip(trusted, peer, &h)
        };
        let v = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(ip(&["1.2.3.4, 5.6.7.8"], Some(proxy), peer), v("5.6.7.8"));
        // The proxy writes ip:port (or garbage): never fall back to the client's own entries.
        assert_eq!(ip(&["1.2.3.4, 5.6.7.8:443"], Some(proxy), peer), v("5.6.7.8"));
        assert_eq!(ip(&["1.2.3.4, [2001:db8::7]:443"], Some(proxy), peer), v("2001:db8::7"));
        assert_eq!(
            ip(&["1.2.3.4, unknown"], Some(proxy), peer),
            proxy,
            "unparsable → the peer"
        );
        assert_eq!(ip(&["1.2.3.4, "], Some(proxy), peer), proxy);
        assert_eq!(
            ip(&["1.2.3.4", "garbage"], Some(proxy), peer),
            proxy,
            "last header only"
        );
        assert_eq!(ip(&["9.9.9.9", "1.2.3.4"], Some(proxy), peer), v("1.2.3.4"));
        // A proxy appending its own address is passed over, once.
        assert_eq!(ip(&["1.2.3.4, 5.6.7.8, 127.0.0.1"], Some(proxy), peer), v("5.6.7.8"));
        assert_eq!(ip(&["1.2.3.4, bad, 127.0.0.1"], Some(proxy), peer), proxy);
        // No header, or not from the trusted proxy: the peer.
        assert_eq!(ip(&[], Some(proxy), peer), proxy);
        assert_eq!(ip(&["1.2.3.4"], None, peer), proxy);
        let other = SocketAddr::from(([192, 0, 2, 9], 1));
        assert_eq!(ip(&["1.2.3.4"], Some(proxy), other), v("192.0.2.9"));
    }

    #[test]
    fn event_streams_are_capped_per_client_and_in_all() {
        let slots = Arc::new(StreamSlots::default());
        let a = IpAddr::from([10, 0, 0, 1]);
        let mut held: Vec<StreamSlot> = (0..MAX_EVENT_STREAMS_PER_CLIENT)
            .map(|_| slots.open(a).ok().expect("slot"))
            .collect();
        let ApiError(status, _) = slots.open(a).err().expect("full for a");
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        held.pop();
        assert!(slots.open(a).is_ok(), "a slot comes back when its stream ends");
        assert_eq!(slots.total(), MAX_EVENT_STREAMS_PER_CLIENT - 1);
        let mut n = 1u32;
        while n < 2 * MAX_EVENT_STREAMS as u32 {
            match slots.open(IpAddr::from(n.to_be_bytes())) {
                Ok(s) => held.push(s),
                Err(ApiError(status, _)) => {
                    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                    break;
                }
            }
            n += 1;
        }
        assert_eq!(slots.total(), MAX_EVENT_STREAMS);
        drop(held);
        assert_eq!(slots.total(), 0);
    }
}
