//! Boltz API v2's submarine swaps (`/v2/swap/submarine/...`): a Boltz wallet locks coins on
//! chain and the server pays the wallet's invoice — anyone's invoice, not only the wallet's own
//! node — through Eddy's loop-in engine ([`crate::loop_in`]), with the loop-in's safety rules:
//! the lockup must be exactly the expected amount and confirmed before the server pays
//! (`acceptZeroConf` is always false), the payment's CLTV stays inside the HTLC's timeout, and
//! a cooperative refund is co-signed only while no payment for the hash exists (after it the
//! server never pays). The wallet learns the preimage from the cooperative claim's details and
//! co-signs the server's key-path claim; without it the server claims by the script path.
//!
//! Every refusal is Boltz's `{"error": …}`; unknown ids are 404 before any other work.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::hex::DisplayHex;
use bitcoin::OutPoint;
use eddy_core::boltz::submarine::{self as wire, Lockup, SubmarineFor};
use eddy_core::boltz::BoltzError;
use eddy_core::constants::{
    LOOP_IN_UNFUNDED_OFFER_BLOCKS, UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT, UNFUNDED_LOOP_IN_OFFERS_PER_SLOT,
};
use eddy_core::htlc::Htlc;
use eddy_core::sm::loop_in_server::State as InState;
use eddy_core::types::{PaymentHash, SwapId};
use eddy_core::validate::LoopInOffer;
use eddy_store::SwapKind;
use serde_json::{json, Value};

use super::boltz::{
    boltz_swap, cosigned, engine_refusal, keep_meta, meta, meta_key, not_found, refused, refused_creation,
};
use super::boltz_doc::{self, BoltzIdPath};
use super::{ApiError, AppState};
use crate::loop_in::{Reservation, ServerLoopIn};
use crate::server_core::ServerError;
use eddy_backends::WatchStatus;
use eddy_core::api::ErrorBody;

/// The submarine routes.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v2/swap/submarine", get(pairs).post(create))
        .route("/v2/swap/submarine/{id}/invoice", post(set_invoice))
        .route("/v2/swap/submarine/{id}/transaction", get(lockup_transaction))
        .route("/v2/swap/submarine/{id}/claim", get(claim_details).post(claim))
        .route("/v2/swap/submarine/{id}/refund", post(refund))
        .route("/v2/swap/submarine/{id}/preimage", get(preimage))
}

/// `GET /v2/swap/submarine`: the BTC/BTC submarine pair.
#[utoipa::path(get, path = "/v2/swap/submarine", tag = "boltz-v2", responses(
    (status = 200, description = "The BTC/BTC submarine pair", body = boltz_doc::SubmarinePairs),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn pairs(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(wire::submarine_pairs_body(&wire::submarine_pair(
        &st.server.core().cfg.fees,
    )))
}

/// `POST /v2/swap/submarine`: a loop-in paying the request's invoice, with the Boltz swap tree;
/// or, for a `preimageHash`, the swap's HTLC reserved for an invoice set later
/// ([`set_invoice`]).
#[utoipa::path(post, path = "/v2/swap/submarine", request_body = boltz_doc::SubmarineCreate, tag = "boltz-v2", responses(
    (status = 201, description = "The submarine swap: the HTLC to lock the expected amount in (for a preimageHash: the HTLC, its amount to come with the invoice)", body = boltz_doc::SubmarineCreated),
    (status = 400, description = "Malformed request, not BTC/BTC, both or neither of invoice and preimageHash, a bad invoice (network, amount, lifetime, final CLTV, this server's own), out of the limits, a stale pair hash, or a field Eddy does not serve", body = ErrorBody),
    (status = 409, description = "A swap with this invoice (or hash) exists", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than the per-minute requests from this client (malformed ones count too), its live unpaid offers or open swaps without an invoice, or co-signing calls for this swap in a minute", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "The server cannot take this swap now (its liquidity, capacity, swaps in flight or open swaps without an invoice), a backend failed, or the request outlived the server's request deadline", body = ErrorBody),
))]
async fn create(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = st.admit(peer, &headers, body, |b| Ok(b.to_vec()))?;
    let refuse = |e: BoltzError| refused_creation(&st, e);
    let req = wire::parse_submarine_request(&body).map_err(refuse)?;
    check_pair(&st, req.pair_hash.as_deref()).map_err(refuse)?;
    let client = st.client(peer, &headers);
    let invoice = match req.made_for {
        SubmarineFor::Invoice(invoice) => invoice,
        SubmarineFor::Hash(hash) => return reserve(&st, client, hash, req.refund_key).await,
    };
    let (boltz_id, rec, offer) = make(&st, client, &invoice, req.refund_key, None).await?;
    let built = Htlc::new(rec.htlc).map_err(|e| ServerError::Backend(e.to_string()))?;
    let address = built.address(st.server.network());
    let Htlc::Taproot(htlc) = &built else {
        return Err(ServerError::Backend("a submarine swap's HTLC is P2TR".into()).into());
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": boltz_id,
            "address": offer.htlc_address,
            "bip21": wire::bip21(&address, rec.terms.amount),
            "swapTree": eddy_core::boltz::swap_tree(htlc),
            "claimPublicKey": offer.server_key.serialize().to_lower_hex_string(),
            "timeoutBlockHeight": offer.expiry,
            "expectedAmount": rec.terms.amount.to_sat(),
            "acceptZeroConf": false,
        })),
    ))
}

/// A stale pair hash (the client read other terms) is refused.
fn check_pair(st: &AppState, pair_hash: Option<&str>) -> Result<(), BoltzError> {
    let policy = st.server.core().cfg.fees;
    if pair_hash.is_some_and(|h| h != wire::submarine_pair(&policy).hash) {
        return Err(BoltzError::PairHash);
    }
    Ok(())
}

/// Makes the loop-in paying `invoice` (under the client's unfunded-offer budget), under a new
/// Boltz id or, for a `reserved` HTLC, under its id: the id, the swap and the offer.
async fn make(
    st: &AppState,
    client: std::net::IpAddr,
    invoice: &str,
    refund_key: bitcoin::secp256k1::PublicKey,
    reserved: Option<(&str, &Reservation)>,
) -> Result<(String, ServerLoopIn, LoopInOffer), ApiError> {
    let policy = st.server.core().cfg.fees;
    // The unfunded-offer budget per client, as for `/v1/loop-in` (the swap id is the invoice's
    // hash; the engine checks the invoice itself).
    let id = eddy_core::validate::decode_invoice("invoice", invoice, st.server.network(), 0, 0)
        .ok()
        .map(|f| SwapId::from(f.payment_hash));
    let place = st.in_offers.reserve(&st.server, client).await?.for_swap(id);
    let made = st
        .server
        .create_paying_loop_in(
            invoice,
            refund_key,
            |amount| wire::submarine_quote(&policy, amount).map_err(|e| ServerError::Invalid(e.to_string())),
            reserved.map(|(_, r)| r),
        )
        .await;
    place.hold(made.is_ok().then_some(id).flatten());
    let offer = made
        .inspect_err(|e| st.count_refusal(e))
        .map_err(|e| engine_refusal(e, "invoice"))?;
    let Some(id) = id else {
        return Err(ServerError::Backend("a made swap's invoice decodes".into()).into());
    };
    let boltz_id = reserved.map_or_else(eddy_core::boltz::new_swap_id, |(b, _)| b.to_string());
    keep_meta(st, &meta_key(&boltz_id), &id.to_string()).await?;
    let (_, rec) = st.server.loop_in.swap(&id).await?;
    Ok((boltz_id, rec, offer))
}

/// The meta key of a reservation made under `boltz_id`.
fn reserved_key(boltz_id: &str) -> String {
    format!("boltz-reserved:{boltz_id}")
}

/// The reservation made under `boltz_id`, if any (whether or not its invoice came since).
pub(super) async fn reserved(st: &AppState, boltz_id: &str) -> Result<Option<Reservation>, ApiError> {
    let stored = meta(st, &reserved_key(boltz_id)).await?;
    Ok(stored.and_then(|v| serde_json::from_str(&v).ok()))
}

/// The meta key marking the reservation under `boltz_id` closed: a refund of its HTLC was
/// co-signed, so its invoice can never be set.
fn closed_key(boltz_id: &str) -> String {
    format!("boltz-closed:{boltz_id}")
}

/// Whether the reservation under `boltz_id` can no longer become a swap at `tip`: marked
/// closed, or its invoice window past.
async fn reservation_closed(st: &AppState, boltz_id: &str, r: &Reservation, tip: u32) -> Result<bool, ApiError> {
    Ok(!r.open_at(tip) || meta(st, &closed_key(boltz_id)).await?.is_some())
}

/// The status of a reservation whose invoice was not set: `swap.created` while it may come,
/// `swap.expired` (final) once it cannot.
pub(super) async fn reservation_status(st: &AppState, boltz_id: &str, r: &Reservation) -> Result<Value, ApiError> {
    let id = SwapId::from(r.payment_hash);
    // A swap holds the hash: made with this very HTLC (another creation for the hash and the
    // key in the same block), that swap's status; otherwise this one can never be a swap.
    if st
        .server
        .core()
        .store
        .get(&id)
        .await
        .map_err(ServerError::from)?
        .is_some()
    {
        if let Ok((_, rec)) = st.server.loop_in.swap(&id).await {
            if rec.htlc == st.server.loop_in.reserved_htlc(r) && !rec.is_tombstone() {
                return status(st, &id).await;
            }
        }
        return Ok(json!({"status": "swap.expired", "failureReason": "the invoice was not set in time"}));
    }
    let tip = st.server.core().tip().await?;
    Ok(if reservation_closed(st, boltz_id, r, tip).await? {
        json!({"status": "swap.expired", "failureReason": "the invoice was not set in time"})
    } else {
        json!({"status": "swap.created"})
    })
}

/// Submarine swaps made for a `preimageHash` whose invoice may still come, per client and in
/// all. The engine stores nothing for them (no slot, no liquidity held): the door bounds how
/// many are open, like live unfunded offers ([`UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT`] per client,
/// [`UNFUNDED_LOOP_IN_OFFERS_PER_SLOT`] per slot in all). Setting an invoice and co-signing a
/// reservation's refund take [`Reservations::one_at_a_time`] in turn, so a reservation is
/// never both made a swap and refunded.
#[derive(Default)]
pub(super) struct Reservations {
    open: std::sync::Mutex<std::collections::VecDeque<(u32, std::net::IpAddr, String)>>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reservations {
    /// Whether `client` may make one more reservation at `tip` (429 for the client's share,
    /// 503 for everyone's); only made ones are counted ([`Reservations::add`]).
    fn check(&self, client: std::net::IpAddr, tip: u32, slots: usize) -> Result<(), ApiError> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|(h, _, _)| tip < h.saturating_add(LOOP_IN_UNFUNDED_OFFER_BLOCKS));
        if open.len() >= slots.saturating_mul(UNFUNDED_LOOP_IN_OFFERS_PER_SLOT) {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{} swaps without an invoice are open; retry later", open.len()),
            ));
        }
        let mine = open.iter().filter(|(_, c, _)| *c == client).count();
        if mine >= UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT {
            return Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                format!("{mine} swaps without an invoice from this client are open, the most it may hold: set their invoices, or wait {LOOP_IN_UNFUNDED_OFFER_BLOCKS} blocks"),
            ));
        }
        Ok(())
    }

    /// Counts reservation `boltz_id` made by `client` at `tip`.
    fn add(&self, client: std::net::IpAddr, tip: u32, boltz_id: &str) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.push_back((tip, client, boltz_id.to_string()));
    }

    /// Counts reservation `boltz_id` no more (its invoice was set).
    fn remove(&self, boltz_id: &str) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|(_, _, b)| b != boltz_id);
    }
}

/// A submarine swap for the hash of an invoice to come: its HTLC fixed and followed, kept
/// under a new Boltz id; no amount yet.
async fn reserve(
    st: &AppState,
    client: std::net::IpAddr,
    hash: PaymentHash,
    refund_key: bitcoin::secp256k1::PublicKey,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tip = st.server.core().tip().await?;
    st.reservations
        .check(client, tip, st.server.core().config().max_active_swaps)?;
    let (reservation, server_key) = st
        .server
        .reserve_paying_loop_in(hash, refund_key)
        .await
        .inspect_err(|e| st.count_refusal(e))
        .map_err(|e| engine_refusal(e, "preimage hash"))?;
    let boltz_id = eddy_core::boltz::new_swap_id();
    let stored = serde_json::to_string(&reservation).map_err(|e| ServerError::Backend(e.to_string()))?;
    keep_meta(st, &reserved_key(&boltz_id), &stored).await?;
    st.reservations.add(client, tip, &boltz_id);
    let built = Htlc::new(reservation.htlc(server_key)).map_err(|e| ServerError::Backend(e.to_string()))?;
    let Htlc::Taproot(htlc) = &built else {
        return Err(ServerError::Backend("a submarine swap's HTLC is P2TR".into()).into());
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": boltz_id,
            "address": built.address(st.server.network()).to_string(),
            "swapTree": eddy_core::boltz::swap_tree(htlc),
            "claimPublicKey": server_key.serialize().to_lower_hex_string(),
            "timeoutBlockHeight": reservation.expiry,
            "expectedAmount": 0,
            "acceptZeroConf": false,
        })),
    ))
}

/// `POST /v2/swap/submarine/{id}/invoice`: the invoice of a swap made for its `preimageHash`.
/// The invoice must pay to that hash and come within [`LOOP_IN_UNFUNDED_OFFER_BLOCKS`] of the
/// creation; it passes every check of a submarine swap's invoice, and the swap is made then,
/// with the HTLC given at creation (the same address, timeout and keys).
#[utoipa::path(post, path = "/v2/swap/submarine/{id}/invoice", params(BoltzIdPath), request_body = boltz_doc::SubmarineInvoice, tag = "boltz-v2", responses(
    (status = 200, description = "The swap is made: the amount to lock", body = boltz_doc::SubmarineInvoiceSet),
    (status = 400, description = "Malformed request, an invoice for another hash, a bad invoice (network, amount, lifetime, final CLTV, this server's own), out of the limits, a stale pair hash, an invoice set already, or too late (the swap's creation is more than 6 blocks old)", body = ErrorBody),
    (status = 404, description = "No swap made for a preimage hash under this id", body = ErrorBody),
    (status = 409, description = "A swap for this hash exists", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than the per-minute requests from this client (malformed ones count too), or its live unpaid offers", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "The server cannot take this swap now (its liquidity, capacity or swaps in flight), a backend failed, or the request outlived the server's request deadline", body = ErrorBody),
))]
async fn set_invoice(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    boltz_id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = st.admit(peer, &headers, body, |b| Ok(b.to_vec()))?;
    let Path(boltz_id) = boltz_id.map_err(|_| not_found("?"))?;
    if !eddy_core::boltz::is_swap_id(&boltz_id) {
        return Err(not_found(&boltz_id));
    }
    let Some(reservation) = reserved(&st, &boltz_id).await? else {
        return Err(not_found(&boltz_id));
    };
    let refuse = |e: BoltzError| refused_creation(&st, e);
    let req = wire::parse_set_invoice(&body).map_err(refuse)?;
    check_pair(&st, req.pair_hash.as_deref()).map_err(refuse)?;
    // In turn with a refund of the reservation: never both.
    let _one = st.reservations.one_at_a_time.lock().await;
    if meta(&st, &closed_key(&boltz_id)).await?.is_some() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("swap {boltz_id} was refunded: make a new swap"),
        ));
    }
    if meta(&st, &meta_key(&boltz_id)).await?.is_some() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("swap {boltz_id} has its invoice already"),
        ));
    }
    let client = st.client(peer, &headers);
    let (_, rec, _) = make(
        &st,
        client,
        &req.invoice,
        reservation.refund_key,
        Some((&boltz_id, &reservation)),
    )
    .await?;
    st.reservations.remove(&boltz_id);
    let address = Htlc::new(rec.htlc)
        .map_err(|e| ServerError::Backend(e.to_string()))?
        .address(st.server.network());
    Ok(Json(json!({
        "bip21": wire::bip21(&address, rec.terms.amount),
        "expectedAmount": rec.terms.amount.to_sat(),
        "acceptZeroConf": false,
    })))
}

/// The loop-in made through this door under `boltz_id` (404 otherwise, before other work).
async fn submarine_swap(
    st: &AppState,
    boltz_id: Result<Path<String>, PathRejection>,
) -> Result<(SwapId, ServerLoopIn), ApiError> {
    let (boltz_id, id, kind) = boltz_swap(st, boltz_id).await?;
    if kind != SwapKind::LoopInServer {
        return Err(not_found(&boltz_id));
    }
    let (_, rec) = st.server.loop_in.swap(&id).await.map_err(|e| match e {
        ServerError::NotFound(_) => not_found(&boltz_id),
        e => e.into(),
    })?;
    Ok((id, rec))
}

/// The lockup output as far as a status goes, in what the watcher `seen` of the swap's HTLC:
/// the one the swap recorded, else the first seen.
fn lockup_of(seen: &WatchStatus, rec: &ServerLoopIn) -> Option<(OutPoint, Lockup)> {
    let found = seen
        .fundings
        .iter()
        .find(|f| Some(f.outpoint) == rec.funding)
        .or_else(|| seen.fundings.first());
    found.map(|f| {
        let lockup = if f.height.is_some() {
            Lockup::Confirmed
        } else {
            Lockup::Mempool
        };
        (f.outpoint, lockup)
    })
}

/// The transaction `txid` as hex, if the chain still has it.
async fn tx_hex(st: &AppState, txid: &bitcoin::Txid) -> Result<Option<String>, ApiError> {
    let found = {
        let _one = st.boltz.lookups.lock().await;
        st.server.core().chain.transaction(txid).await
    }
    .map_err(|e| ServerError::Backend(e.to_string()))?;
    Ok(found.map(|t| bitcoin::consensus::encode::serialize_hex(&t.tx)))
}

/// `GET /v2/swap/{id}` for a submarine swap: Boltz's status name, the lockup transaction while
/// it is in the mempool or confirmed, and why a wrong lockup failed.
pub(super) async fn status(st: &AppState, id: &SwapId) -> Result<Value, ApiError> {
    let (_, rec) = st.server.loop_in.swap(id).await?;
    // One read of what the watcher saw: the lockup, the claim and a wrong lockup's amount.
    let seen = st.server.core().htlc_status(id, &rec.htlc).await?;
    let lockup = lockup_of(&seen, &rec);
    let claim_confirmed = rec.claim.as_ref().is_some_and(|claim| {
        seen.spends
            .iter()
            .any(|s| s.height.is_some() && claim.all.contains(&s.txid))
    });
    let (status, reason) = wire::submarine_status(&rec.state, lockup.map_or(Lockup::None, |l| l.1), claim_confirmed);
    let mut body = json!({ "status": status });
    if let (Some((outpoint, _)), "transaction.mempool" | "transaction.confirmed") = (lockup, status) {
        // The hex once the engine kept it (a status call never makes the node search).
        body["transaction"] = json!({"id": outpoint.txid.to_string()});
        if let Some(hex) = rec.funding_tx.as_ref().filter(|_| rec.funding == Some(outpoint)) {
            body["transaction"]["hex"] = json!(hex);
        }
    }
    if status == "transaction.lockupFailed" {
        let expected = rec.terms.amount.to_sat();
        if let Some(f) = seen.fundings.iter().find(|f| Some(f.outpoint) == rec.funding) {
            let actual = f.value.to_sat();
            let word = if actual < expected { "less" } else { "more" };
            body["failureReason"] = json!(format!("locked {actual} is {word} than expected {expected}"));
            body["failureDetails"] = json!({"expected": expected, "actual": actual});
        }
    } else if let Some(r) = reason {
        body["failureReason"] = json!(r);
    }
    Ok(body)
}

/// `GET /v2/swap/submarine/{id}/transaction`: the lockup transaction.
#[utoipa::path(get, path = "/v2/swap/submarine/{id}/transaction", params(BoltzIdPath), tag = "boltz-v2", responses(
    (status = 200, description = "The lockup transaction", body = boltz_doc::LockupTransaction),
    (status = 400, description = "No coins were locked up yet", body = ErrorBody),
    (status = 404, description = "No swap of this kind was made through this door under this id", body = ErrorBody),
    (status = 429, description = "More than the per-minute requests from this client (a lockup not yet recorded is read from the node)", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn lockup_transaction(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    boltz_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (id, rec) = submarine_swap(&st, boltz_id).await?;
    let none = || ApiError(StatusCode::BAD_REQUEST, "no coins were locked up yet".into());
    // The recorded funding's transaction, kept by the engine: served from the store for as
    // long as the swap is (a wallet refunding at the timeout reads it days later).
    let (outpoint, hex) = match (rec.funding, &rec.funding_tx) {
        (Some(f), Some(hex)) => (f, hex.clone()),
        _ => {
            // Only seen, not yet recorded (in the mempool), or not kept (too large, or the
            // node could not be read then): asking the node costs it work, counted in the
            // caller's per-minute requests and one lookup at a time.
            let seen = st.server.core().htlc_status(&id, &rec.htlc).await?;
            let (outpoint, _) = lockup_of(&seen, &rec).ok_or_else(none)?;
            st.allow(peer, &headers)?;
            match tx_hex(&st, &outpoint.txid).await? {
                Some(hex) => (outpoint, hex),
                // Coins are locked (the watcher saw them) but the node no longer finds the
                // transaction: not "nothing locked".
                None => {
                    return Err(ServerError::Backend(format!("lockup {} not found by the node", outpoint.txid)).into())
                }
            }
        }
    };
    Ok(Json(json!({
        "id": outpoint.txid.to_string(),
        "hex": hex,
        "timeoutBlockHeight": rec.terms.expiry,
    })))
}

/// `GET /v2/swap/submarine/{id}/claim`: once the server has paid, the preimage (the wallet
/// checks it against its invoice), the server's nonce and key, and the sighash of the
/// server's key-path claim for the wallet to sign.
#[utoipa::path(get, path = "/v2/swap/submarine/{id}/claim", params(BoltzIdPath), tag = "boltz-v2", responses(
    (status = 200, description = "The claim to co-sign", body = boltz_doc::ClaimDetails),
    (status = 400, description = "Not paid yet, or no claim to co-sign now", body = ErrorBody),
    (status = 404, description = "No swap of this kind was made through this door under this id", body = ErrorBody),
    (status = 429, description = "More than the per-minute requests from this client (malformed ones count too), its live unpaid offers, or co-signing calls for this swap in a minute", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn claim_details(
    State(st): State<Arc<AppState>>,
    boltz_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (id, rec) = submarine_swap(&st, boltz_id).await?;
    let InState::Claiming { preimage, .. } = &rec.state else {
        return Err(not_eligible("claim"));
    };
    st.cosign_call(&id)?;
    let ask = st
        .server
        .loop_in
        .claim_session(&id)
        .await
        .map_err(|e| engine_refusal(e, "invoice"))?;
    let (nonce, msg) = (ask.nonce, ask.sighash);
    let key = match rec.htlc.claim_key {
        eddy_core::htlc::HtlcKey::Pubkey(k) => k,
        eddy_core::htlc::HtlcKey::Hash(_) => return Err(not_eligible("claim")),
    };
    Ok(Json(json!({
        "preimage": preimage.expose_hex(),
        "pubNonce": nonce.to_lower_hex_string(),
        "publicKey": key.serialize().to_lower_hex_string(),
        "transactionHash": msg.to_lower_hex_string(),
    })))
}

fn not_eligible(what: &str) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        format!("swap not eligible for a cooperative {what}"),
    )
}

/// `POST /v2/swap/submarine/{id}/claim`: the wallet's nonce and partial signature over the
/// claim of `GET …/claim`; the server checks and aggregates it, and its claim round goes out
/// once every input is co-signed (at the latest the next block).
#[utoipa::path(post, path = "/v2/swap/submarine/{id}/claim", params(BoltzIdPath), request_body = boltz_doc::ClaimSignature, tag = "boltz-v2", responses(
    (status = 200, description = "Checked and aggregated: the claim goes out as soon as every input of its round is co-signed, at the latest the next block", body = boltz_doc::Empty),
    (status = 400, description = "Malformed request, no claim asked for, or a wrong partial signature", body = ErrorBody),
    (status = 404, description = "No swap of this kind was made through this door under this id", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than the per-minute requests from this client (malformed ones count too), its live unpaid offers, or co-signing calls for this swap in a minute", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn claim(
    State(st): State<Arc<AppState>>,
    boltz_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let (id, _) = submarine_swap(&st, boltz_id).await?;
    let body = super::body_bytes(body)?;
    super::json_content_type(&headers)?;
    let sig = wire::parse_claim_signature(&body).map_err(refused)?;
    st.cosign_call(&id)?;
    st.server
        .loop_in
        .claim_cosigned(&id, &sig.nonce, &sig.partial)
        .await
        .map_err(|e| engine_refusal(e, "invoice"))?;
    Ok(Json(json!({})))
}

/// `POST /v2/swap/submarine/{id}/refund`: the wallet's cooperative refund co-signed, once the
/// swap failed (a wrong lockup, a payment that failed, a lockup too late) and while no payment
/// for its hash exists; once co-signed, the server never pays. For a swap made for a
/// `preimageHash` whose invoice never came: once it can no longer come
/// ([`refund_reservation`]).
#[utoipa::path(post, path = "/v2/swap/submarine/{id}/refund", params(BoltzIdPath), request_body = boltz_doc::RefundRequest, tag = "boltz-v2", responses(
    (status = 200, description = "The server's nonce and partial signature", body = boltz_doc::Cosigned),
    (status = 400, description = "Malformed request, not a one-input refund of this swap's HTLC, or the swap not failed (or a payment for it exists); for a swap made for a preimageHash whose invoice was not set: while it may still be set", body = ErrorBody),
    (status = 404, description = "No swap of this kind was made through this door under this id", body = ErrorBody),
    (status = 413, description = "The body is larger than the server reads (2 MiB)", body = ErrorBody),
    (status = 429, description = "More than the per-minute requests from this client (malformed ones count too), its live unpaid offers, or co-signing calls for this swap in a minute", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds before a retry may be served (60)"))),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn refund(
    State(st): State<Arc<AppState>>,
    boltz_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(asked) = boltz_id.map_err(|_| not_found("?"))?;
    let found = submarine_swap(&st, Ok(Path(asked.clone()))).await;
    let body = super::body_bytes(body)?;
    super::json_content_type(&headers)?;
    let (id, rec) = match found {
        Ok(found) => found,
        Err(e) => {
            let Some(r) = reserved(&st, &asked)
                .await?
                .filter(|_| eddy_core::boltz::is_swap_id(&asked))
            else {
                return Err(e);
            };
            let req = wire::parse_refund_request(&body).map_err(refused)?;
            return refund_reservation(&st, &asked, &r, &req).await;
        }
    };
    let req = wire::parse_refund_request(&body).map_err(refused)?;
    // Boltz's rule on this door: only a failed swap. Its id is all a caller shows (no
    // signature, unlike `/v1`), and a co-signing request makes the server never pay: an
    // unfailed swap is not cancelled by whoever learned its id.
    if !matches!(rec.state, InState::Refundable(_)) {
        return Err(refund_refusal(ServerError::Invalid("status not eligible".into())));
    }
    one_input_refund(&req)?;
    st.cosign_call(&id)?;
    let (nonce, partial) = st
        .server
        .loop_in
        .cosign_refund(&id, &req.nonce, &req.transaction)
        .await
        .map_err(refund_refusal)?;
    Ok(cosigned(&nonce, &partial))
}

/// Only a one-input refund (index 0) is co-signed.
fn one_input_refund(req: &wire::RefundRequest) -> Result<(), ApiError> {
    if req.index != 0 || req.transaction.input.len() != 1 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "only a one-input refund (index 0) is co-signed".into(),
        ));
    }
    Ok(())
}

/// Why a refund is not co-signed, in Boltz's words; a backend's failure as itself.
fn refund_refusal(e: ServerError) -> ApiError {
    match e {
        ServerError::Invalid(m) => ApiError(
            StatusCode::BAD_REQUEST,
            format!("swap not eligible for a cooperative refund: {m}"),
        ),
        e => e.into(),
    }
}

/// A refund co-signed for an output locked at reservation `boltz_id`'s HTLC, once the
/// reservation can no longer become a swap (its invoice window past, or its hash another
/// swap's): the reservation is marked closed first, in turn with `set_invoice`, so its invoice
/// can never be set afterwards and the server never pays against that HTLC.
async fn refund_reservation(
    st: &AppState,
    boltz_id: &str,
    r: &Reservation,
    req: &wire::RefundRequest,
) -> Result<Json<Value>, ApiError> {
    one_input_refund(req)?;
    let id = SwapId::from(r.payment_hash);
    st.cosign_call(&id)?;
    // What it spends, checked before anything about the reservation changes (a transaction
    // that spends nothing of it must not close it); a chain lookup runs one at a time, as the
    // open lookups do.
    let value = {
        let _lookup = st.boltz.lookups.lock().await;
        st.server
            .loop_in
            .reservation_output_value(r, &req.transaction)
            .await
            .map_err(refund_refusal)?
    };
    let _one = st.reservations.one_at_a_time.lock().await;
    let made = meta(st, &meta_key(boltz_id)).await?;
    let tip = st.server.core().tip().await?;
    let hash_taken = st
        .server
        .core()
        .store
        .get(&id)
        .await
        .map_err(ServerError::from)?
        .is_some();
    if made.is_some() || !(hash_taken || reservation_closed(st, boltz_id, r, tip).await?) {
        return Err(refund_refusal(ServerError::Invalid("status not eligible".into())));
    }
    // Closed for good before anything is signed: this id's invoice is refused from now on,
    // and the hash is taken for every door (a tombstone record, when no swap holds it).
    keep_meta(st, &closed_key(boltz_id), "refunded").await?;
    st.server.loop_in.close_reservation(r).await?;
    let (nonce, partial) = st
        .server
        .loop_in
        .cosign_reservation_refund(r, &req.nonce, &req.transaction, value)
        .await
        .map_err(refund_refusal)?;
    Ok(cosigned(&nonce, &partial))
}

/// `GET /v2/swap/submarine/{id}/preimage`: the preimage, once the server's payment succeeded.
#[utoipa::path(get, path = "/v2/swap/submarine/{id}/preimage", params(BoltzIdPath), tag = "boltz-v2", responses(
    (status = 200, description = "The preimage", body = boltz_doc::PreimageAnswer),
    (status = 400, description = "Not paid yet", body = ErrorBody),
    (status = 404, description = "No swap of this kind was made through this door under this id", body = ErrorBody),
    (status = 503, description = "A backend (node, chain, store) failed, or the request outlived the server's request deadline (a generic message, with an error id where one is logged)", body = ErrorBody),
))]
async fn preimage(
    State(st): State<Arc<AppState>>,
    boltz_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (_, rec) = submarine_swap(&st, boltz_id).await?;
    let known = match &rec.state {
        InState::Claiming { preimage, .. } => Some(*preimage),
        InState::Succeeded => match st.server.core().ln().payment_status(&rec.htlc.payment_hash).await {
            Ok(eddy_backends::PaymentStatus::Succeeded { preimage, .. }) => Some(preimage),
            _ => None,
        },
        _ => None,
    };
    let p = known.ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "preimage not available".into()))?;
    Ok(Json(json!({ "preimage": p.expose_hex() })))
}
