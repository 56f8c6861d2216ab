//! An LND stand-in for tests: a gRPC server built from LND's own proto definitions (the
//! message types fedimint-tonic-lnd generates from them) that serves the calls Eddy's
//! [`crate::lnd::LndNode`] makes, over TLS with a pinned self-signed certificate and a
//! macaroon checked on every call, from any [`LightningNode`] (in the tests: the embedded LDK
//! node on the devnet) and a [`ChainSource`].
//!
//! It reproduces LND's documented behaviour where Eddy depends on it: invoice states
//! OPEN/ACCEPTED/SETTLED/CANCELED with per-HTLC expiry heights; `SettleInvoice` on an invoice
//! that is not accepted and `CancelInvoice` on a settled one fail; `SendPaymentV2` refuses a
//! payment hash in flight or paid with `AlreadyExists`; `TrackPaymentV2` answers `NotFound` for
//! an unknown hash; subscriptions stream the current state first. What it cannot reproduce,
//! because the node behind it is LDK: outgoing-channel and last-hop restrictions (the last hop
//! is decoded and checked as LND does, then refused by the LDK node: `Unimplemented`) and
//! multi-output sends, LND's own timing of auto-cancels and its finer failure reasons.
//! (`AddHoldInvoice`'s `cltv_expiry` is honoured: the LDK backend re-issues the invoice with it.)
//! Everything else LND offers answers `Unimplemented`.

// gRPC handlers return tonic's `Status` by contract; boxing it would only add conversions.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bitcoin::consensus::encode::serialize;
use bitcoin::hex::DisplayHex;
use bitcoin::{Amount, FeeRate, ScriptBuf};
use eddy_core::types::{PaymentHash, Preimage};
use fedimint_tonic_lnd::{invoicesrpc, lnrpc, routerrpc, walletrpc};
use ldk_node::lightning_invoice::Bolt11Invoice;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::codec::ProstCodec;
use tonic::server::{Grpc, NamedService};
use tonic::{Request, Response, Status};

use crate::chain::ChainSource;
use crate::lightning::{
    HoldInvoiceRequest, HoldInvoiceState, LightningNode, LnError, LnEvent, PayParams, PaymentStatus,
};

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type PayStream = ReceiverStream<Result<lnrpc::Payment, Status>>;
type InvStream = ReceiverStream<Result<lnrpc::Invoice, Status>>;

struct Inner {
    ln: Arc<dyn LightningNode>,
    chain: Arc<dyn ChainSource>,
    macaroon_hex: String,
}

/// A running emulator; stops when dropped.
pub struct LndEmulator {
    addr: SocketAddr,
    cert_path: PathBuf,
    macaroon_path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
}

impl LndEmulator {
    /// Serves `ln` on 127.0.0.1 (a free port) with a fresh certificate and macaroon written
    /// into `dir`.
    pub async fn start(ln: Arc<dyn LightningNode>, chain: Arc<dyn ChainSource>, dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let io = |e: String| std::io::Error::other(e);
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| io(e.to_string()))?;
        let cert_pem = cert.cert.pem();
        let key_pem = cert.key_pair.serialize_pem();
        let cert_path = dir.join("tls.cert");
        std::fs::write(&cert_path, &cert_pem)?;
        let macaroon: [u8; 32] = rand_bytes();
        let macaroon_path = dir.join("admin.macaroon");
        std::fs::write(&macaroon_path, macaroon)?;
        let inner = Arc::new(Inner {
            ln,
            chain,
            macaroon_hex: macaroon.to_lower_hex_string(),
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let tls =
            tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
        let router = tonic::transport::Server::builder()
            .tls_config(tls)
            .map_err(|e| io(e.to_string()))?
            .add_service(Svc::<LIGHTNING>(inner.clone()))
            .add_service(Svc::<INVOICES>(inner.clone()))
            .add_service(Svc::<ROUTER>(inner.clone()))
            .add_service(Svc::<WALLET>(inner));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(LndEmulator {
            addr,
            cert_path,
            macaroon_path,
            shutdown: Some(tx),
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The TLS certificate (PEM) clients must pin.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The macaroon clients must present.
    pub fn macaroon_path(&self) -> &Path {
        &self.macaroon_path
    }
}

impl Drop for LndEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn rand_bytes() -> [u8; 32] {
    Preimage::random().expose_bytes().to_owned()
}

const LIGHTNING: u8 = 0;
const INVOICES: u8 = 1;
const ROUTER: u8 = 2;
const WALLET: u8 = 3;

#[derive(Clone)]
struct Svc<const K: u8>(Arc<Inner>);

impl NamedService for Svc<LIGHTNING> {
    const NAME: &'static str = "lnrpc.Lightning";
}
impl NamedService for Svc<INVOICES> {
    const NAME: &'static str = "invoicesrpc.Invoices";
}
impl NamedService for Svc<ROUTER> {
    const NAME: &'static str = "routerrpc.Router";
}
impl NamedService for Svc<WALLET> {
    const NAME: &'static str = "walletrpc.WalletKit";
}

impl<const K: u8> tower::Service<http::Request<Body>> for Svc<K> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFut<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { Ok(dispatch(inner, req).await) })
    }
}

fn lnerr(e: LnError) -> Status {
    match e {
        LnError::Unavailable(m) => Status::unavailable(m),
        LnError::Refused(m) => Status::invalid_argument(m),
        LnError::Unsupported(m) => Status::unimplemented(format!("emulator (LDK behind it): {m}")),
        LnError::Unknown(h) => Status::not_found(format!("unable to locate invoice {h}")),
    }
}

impl Inner {
    fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        match req.metadata().get("macaroon").and_then(|v| v.to_str().ok()) {
            Some(m) if m == self.macaroon_hex => Ok(()),
            Some(_) => Err(Status::unknown(
                "verification failed: signature mismatch after caveat verification",
            )),
            None => Err(Status::unknown("expected 1 macaroon, got 0")),
        }
    }
}

async fn unary<Req, Resp, F, Fut>(inner: Arc<Inner>, req: http::Request<Body>, f: F) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Arc<Inner>, Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    let mut f = Some(f);
    let svc = tower::service_fn(move |r: Request<Req>| {
        let inner = inner.clone();
        let f = f.take();
        async move {
            inner.check(&r)?;
            let f = f.ok_or_else(|| Status::internal("called twice"))?;
            f(inner, r.into_inner()).await.map(Response::new)
        }
    });
    Grpc::new(ProstCodec::<Resp, Req>::default()).unary(svc, req).await
}

async fn streaming<Req, Resp, F, Fut>(inner: Arc<Inner>, req: http::Request<Body>, f: F) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Arc<Inner>, Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<ReceiverStream<Result<Resp, Status>>, Status>> + Send + 'static,
{
    let mut f = Some(f);
    let svc = tower::service_fn(move |r: Request<Req>| {
        let inner = inner.clone();
        let f = f.take();
        async move {
            inner.check(&r)?;
            let f = f.ok_or_else(|| Status::internal("called twice"))?;
            f(inner, r.into_inner()).await.map(Response::new)
        }
    });
    Grpc::new(ProstCodec::<Resp, Req>::default())
        .server_streaming(svc, req)
        .await
}

async fn dispatch(inner: Arc<Inner>, req: http::Request<Body>) -> http::Response<Body> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/lnrpc.Lightning/GetInfo" => unary(inner, req, get_info).await,
        "/lnrpc.Lightning/ListChannels" => unary(inner, req, list_channels).await,
        "/lnrpc.Lightning/AddInvoice" => unary(inner, req, add_invoice).await,
        "/lnrpc.Lightning/DecodePayReq" => unary(inner, req, decode_pay_req).await,
        "/lnrpc.Lightning/NewAddress" => unary(inner, req, new_address).await,
        "/lnrpc.Lightning/WalletBalance" => unary(inner, req, wallet_balance).await,
        "/invoicesrpc.Invoices/AddHoldInvoice" => unary(inner, req, add_hold_invoice).await,
        "/invoicesrpc.Invoices/SettleInvoice" => unary(inner, req, settle_invoice).await,
        "/invoicesrpc.Invoices/CancelInvoice" => unary(inner, req, cancel_invoice).await,
        "/invoicesrpc.Invoices/LookupInvoiceV2" => unary(inner, req, lookup_invoice).await,
        "/invoicesrpc.Invoices/SubscribeSingleInvoice" => streaming(inner, req, subscribe_single_invoice).await,
        "/routerrpc.Router/SendPaymentV2" => streaming(inner, req, send_payment).await,
        "/routerrpc.Router/TrackPaymentV2" => streaming(inner, req, track_payment).await,
        "/walletrpc.WalletKit/SendOutputs" => unary(inner, req, send_outputs).await,
        "/walletrpc.WalletKit/EstimateFee" => unary(inner, req, estimate_fee).await,
        _ => Status::unimplemented(format!("{path} is not served by the emulator")).into_http(),
    }
}

fn hash_from(bytes: &[u8]) -> Result<PaymentHash, Status> {
    <[u8; 32]>::try_from(bytes)
        .map(PaymentHash)
        .map_err(|_| Status::invalid_argument("payment hash must be 32 bytes"))
}

async fn get_info(inner: Arc<Inner>, _r: lnrpc::GetInfoRequest) -> Result<lnrpc::GetInfoResponse, Status> {
    let info = inner.ln.info().await.map_err(lnerr)?;
    let network = match info.network {
        bitcoin::Network::Bitcoin => "mainnet",
        bitcoin::Network::Testnet => "testnet",
        bitcoin::Network::Signet => "signet",
        _ => "regtest",
    };
    Ok(lnrpc::GetInfoResponse {
        identity_pubkey: info.pubkey.to_string(),
        block_height: info.block_height,
        synced_to_chain: true,
        chains: vec![lnrpc::Chain {
            network: network.into(),
            ..Default::default()
        }],
        version: "0.18.0-beta eddy-emulator".into(),
        ..Default::default()
    })
}

async fn list_channels(
    inner: Arc<Inner>,
    _r: lnrpc::ListChannelsRequest,
) -> Result<lnrpc::ListChannelsResponse, Status> {
    let chans = inner.ln.channels().await.map_err(lnerr)?;
    Ok(lnrpc::ListChannelsResponse {
        channels: chans
            .into_iter()
            .map(|c| lnrpc::Channel {
                active: c.usable,
                remote_pubkey: c.peer.to_string(),
                chan_id: c.short_channel_id.unwrap_or(0),
                capacity: c.capacity.to_sat() as i64,
                local_balance: (c.local_msat / 1000) as i64,
                remote_balance: (c.remote_msat / 1000) as i64,
                ..Default::default()
            })
            .collect(),
    })
}

async fn add_invoice(inner: Arc<Inner>, r: lnrpc::Invoice) -> Result<lnrpc::AddInvoiceResponse, Status> {
    let preimage = Preimage::from_slice(&r.r_preimage)
        .ok_or_else(|| Status::invalid_argument("the emulator needs r_preimage (32 bytes)"))?;
    let inv = inner
        .ln
        .create_invoice(&preimage, r.value_msat.max(0) as u64, r.expiry.max(0) as u32, &r.memo)
        .await
        .map_err(lnerr)?;
    Ok(lnrpc::AddInvoiceResponse {
        r_hash: preimage.payment_hash().0.to_vec(),
        payment_request: inv.bolt11,
        ..Default::default()
    })
}

async fn decode_pay_req(_inner: Arc<Inner>, r: lnrpc::PayReqString) -> Result<lnrpc::PayReq, Status> {
    let inv = Bolt11Invoice::from_str(r.pay_req.trim())
        .map_err(|e| Status::invalid_argument(format!("invalid payment request: {e}")))?;
    let msat = inv.amount_milli_satoshis().unwrap_or(0);
    Ok(lnrpc::PayReq {
        destination: inv.get_payee_pub_key().to_string(),
        payment_hash: inv.payment_hash().to_string(),
        num_satoshis: (msat / 1000) as i64,
        num_msat: msat as i64,
        timestamp: inv.duration_since_epoch().as_secs() as i64,
        expiry: inv.expiry_time().as_secs() as i64,
        cltv_expiry: inv.min_final_cltv_expiry_delta() as i64,
        ..Default::default()
    })
}

async fn new_address(inner: Arc<Inner>, _r: lnrpc::NewAddressRequest) -> Result<lnrpc::NewAddressResponse, Status> {
    let a = inner.ln.new_address().await.map_err(lnerr)?;
    Ok(lnrpc::NewAddressResponse { address: a.to_string() })
}

async fn wallet_balance(
    inner: Arc<Inner>,
    _r: lnrpc::WalletBalanceRequest,
) -> Result<lnrpc::WalletBalanceResponse, Status> {
    let b = inner.ln.wallet_balance().await.map_err(lnerr)?;
    Ok(lnrpc::WalletBalanceResponse {
        total_balance: b.total.to_sat() as i64,
        confirmed_balance: b.spendable.to_sat() as i64,
        unconfirmed_balance: (b.total.to_sat().saturating_sub(b.spendable.to_sat())) as i64,
        ..Default::default()
    })
}

async fn add_hold_invoice(
    inner: Arc<Inner>,
    r: invoicesrpc::AddHoldInvoiceRequest,
) -> Result<invoicesrpc::AddHoldInvoiceResp, Status> {
    let hash = hash_from(&r.hash)?;
    let amount_msat = if r.value_msat > 0 { r.value_msat } else { r.value * 1000 };
    let inv = inner
        .ln
        .create_hold_invoice(&HoldInvoiceRequest {
            payment_hash: hash,
            amount_msat: amount_msat.max(0) as u64,
            expiry_secs: if r.expiry > 0 { r.expiry as u32 } else { 86_400 },
            min_final_cltv_delta: r.cltv_expiry.min(u64::from(u16::MAX)) as u16,
            description: r.memo,
        })
        .await
        .map_err(lnerr)?;
    Ok(invoicesrpc::AddHoldInvoiceResp {
        payment_request: inv.bolt11,
        ..Default::default()
    })
}

async fn invoice_of(inner: &Inner, hash: PaymentHash) -> Result<lnrpc::Invoice, Status> {
    let state = inner.ln.hold_invoice_state(&hash).await.map_err(lnerr)?;
    let (code, paid, htlcs) = match &state {
        HoldInvoiceState::Open => (0, 0, vec![]),
        HoldInvoiceState::Settled { amount_msat } => (1, *amount_msat, vec![]),
        HoldInvoiceState::Canceled => (2, 0, vec![]),
        HoldInvoiceState::Accepted { amount_msat, htlcs } => (
            3,
            *amount_msat,
            htlcs
                .iter()
                .map(|h| lnrpc::InvoiceHtlc {
                    amt_msat: h.amount_msat,
                    expiry_height: h.expiry_height as i32,
                    state: 0,
                    ..Default::default()
                })
                .collect(),
        ),
    };
    Ok(lnrpc::Invoice {
        r_hash: hash.0.to_vec(),
        state: code,
        amt_paid_msat: paid as i64,
        amt_paid_sat: (paid / 1000) as i64,
        htlcs,
        ..Default::default()
    })
}

async fn lookup_invoice(inner: Arc<Inner>, r: invoicesrpc::LookupInvoiceMsg) -> Result<lnrpc::Invoice, Status> {
    let hash = match r.invoice_ref {
        Some(invoicesrpc::lookup_invoice_msg::InvoiceRef::PaymentHash(h)) => hash_from(&h)?,
        _ => {
            return Err(Status::unimplemented(
                "the emulator looks invoices up by payment hash only",
            ))
        }
    };
    invoice_of(&inner, hash).await
}

async fn settle_invoice(
    inner: Arc<Inner>,
    r: invoicesrpc::SettleInvoiceMsg,
) -> Result<invoicesrpc::SettleInvoiceResp, Status> {
    let preimage =
        Preimage::from_slice(&r.preimage).ok_or_else(|| Status::invalid_argument("preimage must be 32 bytes"))?;
    match inner
        .ln
        .hold_invoice_state(&preimage.payment_hash())
        .await
        .map_err(lnerr)?
    {
        HoldInvoiceState::Accepted { .. } => {}
        HoldInvoiceState::Settled { .. } => return Err(Status::already_exists("invoice already settled")),
        HoldInvoiceState::Canceled => return Err(Status::failed_precondition("invoice already canceled")),
        HoldInvoiceState::Open => return Err(Status::failed_precondition("invoice still open")),
    }
    inner.ln.settle_hold_invoice(&preimage).await.map_err(lnerr)?;
    Ok(invoicesrpc::SettleInvoiceResp {})
}

async fn cancel_invoice(
    inner: Arc<Inner>,
    r: invoicesrpc::CancelInvoiceMsg,
) -> Result<invoicesrpc::CancelInvoiceResp, Status> {
    let hash = hash_from(&r.payment_hash)?;
    if let HoldInvoiceState::Settled { .. } = inner.ln.hold_invoice_state(&hash).await.map_err(lnerr)? {
        return Err(Status::failed_precondition("invoice already settled"));
    }
    inner.ln.cancel_hold_invoice(&hash).await.map_err(lnerr)?;
    Ok(invoicesrpc::CancelInvoiceResp {})
}

async fn subscribe_single_invoice(
    inner: Arc<Inner>,
    r: invoicesrpc::SubscribeSingleInvoiceRequest,
) -> Result<InvStream, Status> {
    let hash = hash_from(&r.r_hash)?;
    let mut events = inner.ln.subscribe();
    let first = invoice_of(&inner, hash).await?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut last = first.state;
        let final_state = |s: i32| s == 1 || s == 2;
        if tx.send(Ok(first)).await.is_err() || final_state(last) {
            return;
        }
        loop {
            // Re-read on every event for this hash (and every second, in case one was missed).
            let wake = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
            if let Ok(Ok(LnEvent::Invoice { payment_hash, .. })) = &wake {
                if *payment_hash != hash {
                    continue;
                }
            }
            let Ok(inv) = invoice_of(&inner, hash).await else {
                return;
            };
            if inv.state != last {
                last = inv.state;
                if tx.send(Ok(inv)).await.is_err() || final_state(last) {
                    return;
                }
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

fn payment_msg(hash: PaymentHash, status: &PaymentStatus) -> lnrpc::Payment {
    let (code, preimage, fee, reason) = match status {
        PaymentStatus::Unknown => (0, String::new(), 0, 0),
        PaymentStatus::InFlight => (1, String::new(), 0, 0),
        PaymentStatus::Succeeded { preimage, fee_msat } => (2, preimage.expose_hex(), *fee_msat as i64, 0),
        // FAILURE_REASON_ERROR: the emulator does not know LND's finer reasons.
        PaymentStatus::Failed { .. } => (
            3,
            String::new(),
            0,
            lnrpc::PaymentFailureReason::FailureReasonError as i32,
        ),
    };
    lnrpc::Payment {
        payment_hash: hash.to_string(),
        status: code,
        payment_preimage: preimage,
        fee_msat: fee,
        fee_sat: fee / 1000,
        failure_reason: reason,
        ..Default::default()
    }
}

/// Streams a payment's status until it is final.
fn payment_stream(inner: Arc<Inner>, hash: PaymentHash, first: PaymentStatus) -> PayStream {
    let mut events = inner.ln.subscribe();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut last = first;
        if tx.send(Ok(payment_msg(hash, &last))).await.is_err() {
            return;
        }
        while matches!(last, PaymentStatus::InFlight) {
            let _ = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
            let Ok(now) = inner.ln.payment_status(&hash).await else {
                return;
            };
            if now != last {
                last = now;
                if tx.send(Ok(payment_msg(hash, &last))).await.is_err() {
                    return;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

async fn send_payment(inner: Arc<Inner>, r: routerrpc::SendPaymentRequest) -> Result<PayStream, Status> {
    let inv = Bolt11Invoice::from_str(r.payment_request.trim())
        .map_err(|e| Status::invalid_argument(format!("invalid payment request: {e}")))?;
    let hash = PaymentHash(*inv.payment_hash().as_ref());
    match inner.ln.payment_status(&hash).await.map_err(lnerr)? {
        PaymentStatus::InFlight => return Err(Status::already_exists("payment is in transition")),
        PaymentStatus::Succeeded { .. } => return Err(Status::already_exists("invoice is already paid")),
        PaymentStatus::Unknown | PaymentStatus::Failed { .. } => {}
    }
    // LND: an empty `last_hop_pubkey` means no restriction; anything else must be a key.
    let last_hop = if r.last_hop_pubkey.is_empty() {
        None
    } else {
        Some(
            bitcoin::secp256k1::PublicKey::from_slice(&r.last_hop_pubkey)
                .map_err(|e| Status::invalid_argument(format!("invalid last hop pubkey: {e}")))?,
        )
    };
    let params = PayParams {
        max_fee_msat: r.fee_limit_msat.max(0) as u64,
        timeout: Duration::from_secs(r.timeout_seconds.max(1) as u64),
        outgoing_channel: r.outgoing_chan_ids.first().copied(),
        max_total_cltv_delta: (r.cltv_limit > 0).then_some(r.cltv_limit as u32),
        last_hop,
    };
    inner.ln.pay_invoice(&r.payment_request, &params).await.map_err(lnerr)?;
    let first = inner.ln.payment_status(&hash).await.map_err(lnerr)?;
    Ok(payment_stream(inner, hash, first))
}

async fn track_payment(inner: Arc<Inner>, r: routerrpc::TrackPaymentRequest) -> Result<PayStream, Status> {
    let hash = hash_from(&r.payment_hash)?;
    let first = inner.ln.payment_status(&hash).await.map_err(lnerr)?;
    if first == PaymentStatus::Unknown {
        return Err(Status::not_found("payment isn't initiated"));
    }
    Ok(payment_stream(inner, hash, first))
}

async fn send_outputs(
    inner: Arc<Inner>,
    r: walletrpc::SendOutputsRequest,
) -> Result<walletrpc::SendOutputsResponse, Status> {
    let outputs: Vec<(ScriptBuf, Amount)> = r
        .outputs
        .iter()
        .map(|o| {
            (
                ScriptBuf::from_bytes(o.pk_script.clone()),
                Amount::from_sat(o.value.max(0) as u64),
            )
        })
        .collect();
    let tx = inner
        .ln
        .send_outputs(&outputs, FeeRate::from_sat_per_kwu(r.sat_per_kw.max(0) as u64))
        .await
        .map_err(lnerr)?;
    Ok(walletrpc::SendOutputsResponse { raw_tx: serialize(&tx) })
}

async fn estimate_fee(
    inner: Arc<Inner>,
    r: walletrpc::EstimateFeeRequest,
) -> Result<walletrpc::EstimateFeeResponse, Status> {
    let rate = inner
        .chain
        .fee_rate(r.conf_target.clamp(1, 1008) as u16)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    Ok(walletrpc::EstimateFeeResponse {
        sat_per_kw: rate.to_sat_per_kwu() as i64,
        min_relay_fee_sat_per_kw: 253,
    })
}
