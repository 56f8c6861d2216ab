//! An LND stand-in for tests — a test-support crate, never linked into Eddy's binaries — held to
//! LND's own rules: a gRPC server built from LND's proto
//! definitions (the message types fedimint-tonic-lnd generates from them) that serves the calls
//! Eddy's `eddy_backends::lnd::LndNode` makes, over TLS, with a macaroon whose permissions are checked
//! on every call, in front of any [`LightningNode`] (in the tests: an embedded LDK node on the
//! devnet) and a [`ChainSource`].
//!
//! LND cannot run where Eddy is built, so this emulator is where Eddy's LND client meets LND's
//! behaviour. It keeps LND's own state rather than passing the node's through: an invoice
//! registry ([`registry`]: states, HTLC records, LND's accept checks, its expiry watcher — open
//! invoices canceled at their time expiry, accepted hold invoices canceled once
//! `height + holdexpirydelta >=` their smallest HTLC expiry — and optional garbage collection of
//! canceled invoices), a router ([`router`]: `SendPaymentV2` validation including the CLTV-limit
//! rules, `decidePaymentStatus`), and macaroon permissions ([`macaroons`]). Refusals carry LND's
//! messages with LND's gRPC codes (mostly `Unknown`: LND's handlers return plain errors). Each
//! rule cites the LND file it was read from. Versions differ: [`LndProfile`] selects LND ≤ 0.20
//! (hold expiry delta 12), ≥ 0.21 (18) or a custom delta.
//!
//! What it cannot show, because the node behind it is LDK:
//! - LDK fails a held HTLC back by itself at `expiry − 39`, before any LND profile would cancel
//!   it; the emulator then reports the invoice canceled (as LND would report a canceled invoice).
//!   LND's own cancellation at `expiry − delta` is therefore observable with real payments only
//!   for deltas of 40 and more; for the profiles' 12 and 18 the tests record held HTLCs in the
//!   registry directly ([`LndEmulator::record_held_htlc`]) and mine to the edge with them.
//! - Restricting a payment's last hop or outgoing channel (LDK cannot; answered `Unimplemented`),
//!   multi-output sends, LND's finer payment failure reasons and its pathfinding.
//! - Invoices are issued by the node behind and re-signed by the emulator with that node's key
//!   ([`EmulatorOptions::invoice_key`]) to carry the final CLTV delta LND would write and hop
//!   hints only when `private` is set (LND's `PopulateHopHints`; the hints themselves are the
//!   node's choice). Without the key the node's invoice is served as issued.

// gRPC handlers return tonic's `Status` by contract; boxing it would only add conversions.
#![allow(clippy::result_large_err)]
#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod macaroons;
pub mod registry;
pub mod router;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::consensus::encode::serialize;
use bitcoin::hex::DisplayHex;
use bitcoin::secp256k1::SecretKey;
use bitcoin::{Amount, FeeRate, ScriptBuf};
use eddy_core::types::{PaymentHash, Preimage};
use fedimint_tonic_lnd::{invoicesrpc, lnrpc, routerrpc, walletrpc};
use ldk_node::lightning_invoice::Bolt11Invoice;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::codec::ProstCodec;
use tonic::server::{Grpc, NamedService};
use tonic::{Code, Request, Response, Status};

use eddy_backends::chain::ChainSource;
use eddy_backends::lightning::{
    HoldInvoiceRequest, HoldInvoiceState, LightningNode, LnError, PayParams, PaymentStatus,
};
use macaroons::Permissions;
use registry::{HtlcOutcome, InvoiceState, NewInvoice, Registry, RpcError, Rules};
use router::{Attempt, FailureReason};

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type PayStream = ReceiverStream<Result<lnrpc::Payment, Status>>;
type InvStream = ReceiverStream<Result<lnrpc::Invoice, Status>>;

/// The LND version and settings the emulator behaves as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LndProfile {
    /// What `GetInfo.version` answers.
    pub version: String,
    /// The registry's rules (hold expiry delta, reject delta, minimum final CLTV, GC).
    pub rules: Rules,
    /// `--max-cltv-expiry` (`htlcswitch.DefaultMaxOutgoingCltvExpiry`, 2016).
    pub max_cltv_expiry: u32,
    /// Whether `GetDebugInfo` is served (LND ≥ 0.18).
    pub debug_info: bool,
}

impl LndProfile {
    /// LND v0.20.x with default settings: hold expiry delta 12.
    pub fn lnd_0_20() -> LndProfile {
        LndProfile {
            version: "0.20.1-beta commit=v0.20.1-beta".into(),
            rules: Rules::LND_0_20,
            max_cltv_expiry: router::DEFAULT_MAX_CLTV_EXPIRY,
            debug_info: true,
        }
    }

    /// LND v0.21.x with default settings: hold expiry delta 18.
    pub fn lnd_0_21() -> LndProfile {
        LndProfile {
            version: "0.21.2-beta commit=v0.21.2-beta".into(),
            rules: Rules::LND_0_21,
            max_cltv_expiry: router::DEFAULT_MAX_CLTV_EXPIRY,
            debug_info: true,
        }
    }

    /// This profile with `--invoices.holdexpirydelta=delta`.
    pub fn with_hold_expiry_delta(mut self, delta: u32) -> LndProfile {
        self.rules.hold_expiry_delta = delta;
        self
    }

    /// This profile with `--gc-canceled-invoices-on-the-fly`.
    pub fn with_gc_canceled_on_the_fly(mut self) -> LndProfile {
        self.rules.gc_canceled_on_the_fly = true;
        self
    }

    /// This profile without `GetDebugInfo` (LND before 0.18).
    pub fn without_debug_info(mut self) -> LndProfile {
        self.debug_info = false;
        self
    }
}

/// How the emulator serves TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// A self-signed certificate, as LND generates (clients pin it).
    SelfSigned,
    /// A certificate issued by a test CA (written to [`LndEmulator::ca_cert_path`]), as behind a
    /// proxy with a public certificate: clients verify it against their CA roots.
    CaIssued,
}

/// How to start the emulator.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// The LND version and settings.
    pub profile: LndProfile,
    /// The key of the node behind (to issue invoices as LND would; see the module docs).
    pub invoice_key: Option<SecretKey>,
    /// TLS.
    pub tls: TlsMode,
}

impl EmulatorOptions {
    /// `profile`, self-signed TLS, no invoice key.
    pub fn new(profile: LndProfile) -> EmulatorOptions {
        EmulatorOptions {
            profile,
            invoice_key: None,
            tls: TlsMode::SelfSigned,
        }
    }

    /// With the node's invoice signing key.
    pub fn invoice_key(mut self, key: Option<SecretKey>) -> EmulatorOptions {
        self.invoice_key = key;
        self
    }

    /// With a TLS mode.
    pub fn tls(mut self, tls: TlsMode) -> EmulatorOptions {
        self.tls = tls;
        self
    }
}

/// A payment as the emulator's router keeps it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct PaymentRecord {
    attempts: Vec<Attempt>,
    reason: Option<FailureReason>,
    preimage: Option<Preimage>,
    fee_msat: u64,
    value_msat: u64,
    /// Sent through the node behind (its status is followed); `false`: recorded by a test.
    on_node: bool,
}

impl PaymentRecord {
    fn status(&self) -> Result<router::Status, RpcError> {
        router::decide_payment_status(&self.attempts, self.reason)
    }
}

struct State {
    registry: Registry,
    payments: BTreeMap<PaymentHash, PaymentRecord>,
    height: u32,
}

/// What LND keeps across restarts (its invoice and payment databases), as the emulator writes
/// it into its directory.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    invoices: BTreeMap<PaymentHash, registry::Invoice>,
    next_index: u64,
    payments: BTreeMap<PaymentHash, PaymentRecord>,
}

const STATE_FILE: &str = "lnd-state.json";

struct Inner {
    ln: Arc<dyn LightningNode>,
    state_path: PathBuf,
    chain: Arc<dyn ChainSource>,
    profile: LndProfile,
    invoice_key: Option<SecretKey>,
    macaroons: Mutex<HashMap<String, Permissions>>,
    state: Mutex<State>,
    /// Bumped on every change of an invoice or payment (streams re-read on it).
    changed: watch::Sender<u64>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Something changed: persist (LND writes its databases before it answers) and wake the
    /// streams.
    fn bump(&self) {
        {
            let st = self.state();
            let (invoices, next_index) = st.registry.export();
            let stored = Stored {
                invoices,
                next_index,
                payments: st.payments.clone(),
            };
            if let Ok(json) = serde_json::to_vec(&stored) {
                let tmp = self.state_path.with_extension("tmp");
                if std::fs::write(&tmp, json).is_ok() {
                    let _ = std::fs::rename(&tmp, &self.state_path);
                }
            }
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

struct Server {
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// A running emulator; stops when dropped.
pub struct LndEmulator {
    inner: Arc<Inner>,
    addr: SocketAddr,
    dir: PathBuf,
    cert_path: PathBuf,
    ca_cert_path: Option<PathBuf>,
    macaroon_path: PathBuf,
    tls: TlsMode,
    server: Option<Server>,
    driver: tokio::task::JoinHandle<()>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh TLS identity: (certificate chain PEM, key PEM, CA PEM when CA-issued).
fn identity(tls: TlsMode) -> std::io::Result<(String, String, Option<String>)> {
    let io = |e: rcgen::Error| std::io::Error::other(e.to_string());
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    match tls {
        TlsMode::SelfSigned => {
            let cert = rcgen::generate_simple_self_signed(names).map_err(io)?;
            Ok((cert.cert.pem(), cert.key_pair.serialize_pem(), None))
        }
        TlsMode::CaIssued => {
            let ca_key = rcgen::KeyPair::generate().map_err(io)?;
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(io)?;
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::DigitalSignature,
            ];
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "eddy test CA");
            let ca = ca_params.self_signed(&ca_key).map_err(io)?;
            let key = rcgen::KeyPair::generate().map_err(io)?;
            let leaf = rcgen::CertificateParams::new(names)
                .map_err(io)?
                .signed_by(&key, &ca, &ca_key)
                .map_err(io)?;
            Ok((
                format!("{}{}", leaf.pem(), ca.pem()),
                key.serialize_pem(),
                Some(ca.pem()),
            ))
        }
    }
}

fn serve(
    inner: Arc<Inner>,
    listener: tokio::net::TcpListener,
    cert_pem: String,
    key_pem: String,
) -> std::io::Result<Server> {
    let tls =
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
    let router = tonic::transport::Server::builder()
        .tls_config(tls)
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .add_service(Svc::<LIGHTNING>(inner.clone()))
        .add_service(Svc::<INVOICES>(inner.clone()))
        .add_service(Svc::<ROUTER>(inner.clone()))
        .add_service(Svc::<WALLET>(inner));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Server { shutdown: tx, task })
}

impl LndEmulator {
    /// Serves `ln` as LND v0.21 with default settings on 127.0.0.1 (a free port), with a fresh
    /// self-signed certificate and an admin macaroon written into `dir`.
    pub async fn start(ln: Arc<dyn LightningNode>, chain: Arc<dyn ChainSource>, dir: &Path) -> std::io::Result<Self> {
        Self::start_with(ln, chain, dir, EmulatorOptions::new(LndProfile::lnd_0_21())).await
    }

    /// Serves `ln` with `options`. A directory an emulator served before keeps its invoices and
    /// payments (LND's databases survive its restarts); certificate and macaroons are new.
    pub async fn start_with(
        ln: Arc<dyn LightningNode>,
        chain: Arc<dyn ChainSource>,
        dir: &Path,
        options: EmulatorOptions,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let height = chain.tip().await.map(|t| t.height).unwrap_or(0);
        let (changed, _) = watch::channel(0u64);
        // LND restarted on the same directory: its databases are still there.
        let state_path = dir.join(STATE_FILE);
        let (registry, payments) = match std::fs::read(&state_path) {
            Ok(bytes) => {
                let stored: Stored = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
                (
                    Registry::import(options.profile.rules, stored.invoices, stored.next_index),
                    stored.payments,
                )
            }
            Err(_) => (Registry::new(options.profile.rules), BTreeMap::new()),
        };
        let inner = Arc::new(Inner {
            ln,
            state_path,
            chain,
            profile: options.profile.clone(),
            invoice_key: options.invoice_key,
            macaroons: Mutex::new(HashMap::new()),
            state: Mutex::new(State {
                registry,
                payments,
                height,
            }),
            changed,
        });
        let macaroon_path = dir.join("admin.macaroon");
        write_macaroon(&inner, &macaroon_path, Permissions::admin())?;
        write_macaroon(&inner, &dir.join("invoice.macaroon"), Permissions::invoice())?;
        write_macaroon(&inner, &dir.join("readonly.macaroon"), Permissions::readonly())?;
        let (cert_pem, key_pem, ca_pem) = identity(options.tls)?;
        let cert_path = dir.join("tls.cert");
        std::fs::write(&cert_path, &cert_pem)?;
        let ca_cert_path = match ca_pem {
            Some(ca) => {
                let p = dir.join("ca.cert");
                std::fs::write(&p, ca)?;
                Some(p)
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let server = serve(inner.clone(), listener, cert_pem, key_pem)?;
        let driver = tokio::spawn(drive_loop(Arc::downgrade(&inner)));
        Ok(LndEmulator {
            inner,
            addr,
            dir: dir.to_path_buf(),
            cert_path,
            ca_cert_path,
            macaroon_path,
            tls: options.tls,
            server: Some(server),
            driver,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The TLS certificate (PEM) clients pin (LND's `tls.cert`).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The test CA's certificate, when serving a CA-issued certificate.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_cert_path.as_deref()
    }

    /// `admin.macaroon`. `invoice.macaroon` and `readonly.macaroon` lie beside it.
    pub fn macaroon_path(&self) -> &Path {
        &self.macaroon_path
    }

    /// Bakes a macaroon with exactly `perms` into `dir/name` (`lncli bakemacaroon`).
    pub fn bake_macaroon(&self, name: &str, perms: &[macaroons::Permission]) -> std::io::Result<PathBuf> {
        let path = self.dir.join(name);
        write_macaroon(&self.inner, &path, Permissions::of(perms))?;
        Ok(path)
    }

    /// LND restarts with a regenerated certificate (what it does when its certificate expired):
    /// the listener closes, a new certificate is written over `tls.cert`, and the same address
    /// serves again with it.
    pub async fn rotate_certificate(&mut self) -> std::io::Result<()> {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown.send(());
            let mut task = server.task;
            // Graceful shutdown waits for open streams; LND's restart does not.
            if tokio::time::timeout(Duration::from_secs(1), &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        let (cert_pem, key_pem, ca_pem) = identity(self.tls)?;
        std::fs::write(&self.cert_path, &cert_pem)?;
        if let (Some(p), Some(ca)) = (&self.ca_cert_path, ca_pem) {
            std::fs::write(p, ca)?;
        }
        let mut last = None;
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    self.server = Some(serve(self.inner.clone(), listener, cert_pem, key_pem)?);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("rebind failed")))
    }

    /// LND's `invoices.holdexpirydelta` changed (an upgrade or an edited lnd.conf; LND applies
    /// it after a restart — pair with [`LndEmulator::rotate_certificate`] to restart).
    pub fn set_hold_expiry_delta(&self, delta: u32) {
        self.inner.state().registry.rules.hold_expiry_delta = delta;
        self.inner.bump();
    }

    /// Test hook: records an HTLC held for the hold invoice `hash` as if it had arrived at the
    /// current height (the node behind does not hold it; see the module docs). Returns LND's
    /// accept outcome.
    pub fn record_held_htlc(&self, hash: PaymentHash, amount_msat: u64, expiry_height: u32) -> HtlcOutcome {
        let outcome = {
            let mut st = self.inner.state();
            let height = st.height;
            st.registry
                .htlc_arrived(&hash, amount_msat, expiry_height, height, unix_now(), false)
        };
        self.inner.bump();
        outcome
    }

    /// Test hook: records a payment with these attempts and failure reason (LND's
    /// `decidePaymentStatus` inputs), as if LND's router had made them.
    pub fn record_payment(
        &self,
        hash: PaymentHash,
        attempts: &[Attempt],
        reason: Option<FailureReason>,
        preimage: Option<Preimage>,
    ) {
        self.inner.state().payments.insert(
            hash,
            PaymentRecord {
                attempts: attempts.to_vec(),
                reason,
                preimage,
                fee_msat: 0,
                value_msat: 0,
                on_node: false,
            },
        );
        self.inner.bump();
    }

    /// The emulator's view of an invoice (state and HTLCs), `None` if it has none (or deleted it).
    pub fn invoice(&self, hash: &PaymentHash) -> Option<registry::Invoice> {
        self.inner.state().registry.lookup(hash).ok().cloned()
    }

    /// Runs the expiry watcher and the reconciliation with the node behind once, now (it also
    /// runs by itself every 200 ms).
    pub async fn sync(&self) {
        drive(&self.inner).await;
    }
}

impl Drop for LndEmulator {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown.send(());
            // LND going away closes its connections too (graceful shutdown would wait for them).
            server.task.abort();
        }
        self.driver.abort();
    }
}

fn write_macaroon(inner: &Inner, path: &Path, perms: Permissions) -> std::io::Result<()> {
    let token: [u8; 32] = *Preimage::random().expose_bytes();
    std::fs::write(path, token)?;
    inner
        .macaroons
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token.to_lower_hex_string(), perms);
    Ok(())
}

/// The driver: every 200 ms, follow the chain and the node behind and run LND's expiry watcher.
async fn drive_loop(inner: Weak<Inner>) {
    loop {
        let Some(i) = inner.upgrade() else {
            return;
        };
        drive(&i).await;
        drop(i);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn drive(inner: &Inner) {
    let mut changed = false;
    // An HTLC first seen now arrived after the previous pass: LND checks it against the height
    // at its arrival, which is at least the previous pass's height (never later: a block mined
    // in between must not turn a timely HTLC into a "too soon" one).
    let arrival_floor = inner.state().height;
    if let Ok(tip) = inner.chain.tip().await {
        let mut st = inner.state();
        if st.height != tip.height {
            st.height = tip.height;
            changed = true;
        }
    }
    // Invoices the node behind may have news about: open ones (an HTLC may have arrived) and
    // accepted ones held on the node (LDK may have failed them back).
    let pending: Vec<(PaymentHash, InvoiceState, bool)> = inner
        .state()
        .registry
        .iter()
        .filter(|(_, inv)| matches!(inv.state, InvoiceState::Open | InvoiceState::Accepted))
        .filter(|(_, inv)| inv.state == InvoiceState::Open || inv.htlcs.iter().any(|h| h.on_node))
        .map(|(h, inv)| (*h, inv.state, inv.hold))
        .collect();
    for (hash, state, hold) in pending {
        let Ok(node) = inner.ln.hold_invoice_state(&hash).await else {
            continue;
        };
        let mut fail_back = false;
        {
            let mut st = inner.state();
            let height = st.height;
            match (state, &node) {
                (InvoiceState::Open, HoldInvoiceState::Accepted { htlcs, .. }) if hold => {
                    for h in htlcs {
                        let outcome = st.registry.htlc_arrived(
                            &hash,
                            h.amount_msat,
                            h.expiry_height,
                            arrival_floor,
                            unix_now(),
                            true,
                        );
                        if outcome != HtlcOutcome::Accepted {
                            fail_back = true;
                        }
                    }
                    if fail_back {
                        st.registry.node_released(&hash);
                    }
                    changed = true;
                }
                (InvoiceState::Open, HoldInvoiceState::Settled { amount_msat }) if !hold => {
                    st.registry.node_settled(&hash, *amount_msat, height);
                    changed = true;
                }
                (InvoiceState::Accepted, HoldInvoiceState::Canceled) => {
                    st.registry.node_failed_back(&hash);
                    changed = true;
                }
                _ => {}
            }
        }
        if fail_back {
            let _ = inner.ln.cancel_hold_invoice(&hash).await;
        }
    }
    // Payments sent through the node: follow them until final.
    let flying: Vec<PaymentHash> = inner
        .state()
        .payments
        .iter()
        .filter(|(_, p)| p.on_node && p.attempts.contains(&Attempt::InFlight))
        .map(|(h, _)| *h)
        .collect();
    for hash in flying {
        let Ok(status) = inner.ln.payment_status(&hash).await else {
            continue;
        };
        let mut st = inner.state();
        if let Some(p) = st.payments.get_mut(&hash) {
            match status {
                PaymentStatus::Succeeded { preimage, fee_msat } => {
                    p.attempts = vec![Attempt::Settled];
                    p.preimage = Some(preimage);
                    p.fee_msat = fee_msat;
                    changed = true;
                }
                PaymentStatus::Failed { reason } => {
                    p.attempts = vec![Attempt::Failed];
                    p.reason = Some(failure_reason(&reason));
                    changed = true;
                }
                PaymentStatus::InFlight | PaymentStatus::Unknown => {}
            }
        }
    }
    // LND's expiry watcher.
    let expired = {
        let mut st = inner.state();
        let height = st.height;
        st.registry.expire(height, unix_now())
    };
    for hash in &expired {
        let _ = inner.ln.cancel_hold_invoice(hash).await;
        changed = true;
    }
    if changed {
        inner.bump();
    }
}

/// LND's reason for a payment the node behind failed (its words mapped onto LND's enum).
fn failure_reason(node_reason: &str) -> FailureReason {
    let r = node_reason.to_ascii_lowercase();
    if r.contains("route") {
        FailureReason::NoRoute
    } else if r.contains("timeout") || r.contains("expired") {
        FailureReason::Timeout
    } else if r.contains("recipient") || r.contains("incorrect") {
        FailureReason::IncorrectPaymentDetails
    } else {
        FailureReason::Error
    }
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
    if let Err(s) = check_macaroon(&inner, &path, req.headers()) {
        return s.into_http();
    }
    match path.as_str() {
        "/lnrpc.Lightning/GetInfo" => unary(inner, req, get_info).await,
        "/lnrpc.Lightning/GetDebugInfo" => unary(inner, req, get_debug_info).await,
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

fn status(e: RpcError) -> Status {
    Status::new(e.code, e.message)
}

/// The node behind failed; LND would answer with its own plain error.
fn lnerr(e: LnError) -> Status {
    match e {
        LnError::Unavailable(m) | LnError::NotSent(m) => Status::unavailable(m),
        LnError::Refused(m) => Status::unknown(m),
        LnError::Unsupported(m) => Status::unimplemented(format!("emulator (LDK behind it): {m}")),
        LnError::Unknown(_) => Status::unknown("unable to locate invoice"),
    }
}

/// LND's macaroon check (`macaroons/service.go`), before the handler runs.
fn check_macaroon(inner: &Inner, path: &str, headers: &http::HeaderMap) -> Result<(), Status> {
    let Some(needed) = macaroons::required(path) else {
        return Ok(());
    };
    let Some(mac) = headers.get("macaroon").and_then(|v| v.to_str().ok()) else {
        return Err(Status::unknown("expected 1 macaroon, got 0"));
    };
    let macs = inner.macaroons.lock().unwrap_or_else(|e| e.into_inner());
    match macs.get(mac) {
        None => Err(Status::unknown(
            "verification failed: signature mismatch after caveat verification",
        )),
        Some(p) if !p.allows(needed) => Err(Status::unknown(macaroons::PERMISSION_DENIED)),
        Some(_) => Ok(()),
    }
}

fn hash_from(bytes: &[u8]) -> Result<PaymentHash, Status> {
    <[u8; 32]>::try_from(bytes)
        .map(PaymentHash)
        .map_err(|_| Status::unknown(format!("invalid hash length of {}, want 32", bytes.len())))
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
        version: inner.profile.version.clone(),
        ..Default::default()
    })
}

/// `GetDebugInfo` (LND ≥ 0.18): the configuration as a flat map of lnd.conf option names
/// (`configToFlatMap`); the emulator fills the options Eddy reads.
async fn get_debug_info(
    inner: Arc<Inner>,
    _r: lnrpc::GetDebugInfoRequest,
) -> Result<lnrpc::GetDebugInfoResponse, Status> {
    if !inner.profile.debug_info {
        return Err(Status::unimplemented(
            "unknown method GetDebugInfo for service lnrpc.Lightning",
        ));
    }
    let rules = inner.state().registry.rules;
    let config = [
        ("invoices.holdexpirydelta", rules.hold_expiry_delta.to_string()),
        ("max-cltv-expiry", inner.profile.max_cltv_expiry.to_string()),
        ("bitcoin.timelockdelta", "80".to_string()),
        (
            "gc-canceled-invoices-on-the-fly",
            rules.gc_canceled_on_the_fly.to_string(),
        ),
        ("bitcoind.rpcpass", "[redacted]".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(lnrpc::GetDebugInfoResponse { config, log: vec![] })
}

/// `ListChannels` (`rpcserver.go createRPCOpenChannel`): `local_balance` / `remote_balance` are
/// the commitment's balances, reserves included; the reserves are reported apart in
/// `local_constraints` / `remote_constraints` (and the deprecated `*_chan_reserve_sat`, which
/// LND still fills).
#[allow(deprecated)]
async fn list_channels(
    inner: Arc<Inner>,
    _r: lnrpc::ListChannelsRequest,
) -> Result<lnrpc::ListChannelsResponse, Status> {
    let chans = inner.ln.channels().await.map_err(lnerr)?;
    Ok(lnrpc::ListChannelsResponse {
        channels: chans
            .into_iter()
            .map(|c| {
                let (lr, rr) = (c.local_reserve.to_sat(), c.remote_reserve.to_sat());
                lnrpc::Channel {
                    active: c.usable,
                    remote_pubkey: c.peer.to_string(),
                    chan_id: c.short_channel_id.unwrap_or(0),
                    capacity: c.capacity.to_sat() as i64,
                    local_balance: (c.local_msat / 1000 + lr) as i64,
                    remote_balance: (c.remote_msat / 1000 + rr) as i64,
                    private: c.private,
                    local_chan_reserve_sat: lr as i64,
                    remote_chan_reserve_sat: rr as i64,
                    local_constraints: Some(lnrpc::ChannelConstraints {
                        chan_reserve_sat: lr,
                        ..Default::default()
                    }),
                    remote_constraints: Some(lnrpc::ChannelConstraints {
                        chan_reserve_sat: rr,
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect(),
    })
}

/// A hash already registered is refused before the node behind is asked for an invoice
/// (`invoices.ErrDuplicateInvoice`, a plain error).
fn refuse_duplicate(inner: &Inner, hash: &PaymentHash) -> Result<(), Status> {
    match inner.state().registry.lookup(hash) {
        Ok(_) => Err(Status::unknown("invoice with payment hash already exists")),
        Err(_) => Ok(()),
    }
}

/// Registers a new invoice (now) and wakes the streams; its add index.
fn register(inner: &Inner, new: NewInvoice) -> Result<u64, Status> {
    let add_index = inner.state().registry.add(new, unix_now()).map_err(status)?.add_index;
    inner.bump();
    Ok(add_index)
}

/// `invoicesrpc/addinvoice.go` checks shared by AddInvoice and AddHoldInvoice.
fn check_new_invoice(memo: &str, value_msat: i64, expiry: i64) -> Result<u64, Status> {
    if memo.len() > 1024 {
        return Err(Status::unknown(format!(
            "memo too large: {} bytes (maxsize=1024)",
            memo.len()
        )));
    }
    if value_msat < 0 {
        return Err(Status::unknown(format!(
            "payments of negative value are not allowed, value is {value_msat}"
        )));
    }
    const MAX_EXPIRY: i64 = 365 * 24 * 3600;
    if expiry > MAX_EXPIRY {
        return Err(Status::unknown(format!(
            "expiry of {expiry} seconds greater than max expiry of {MAX_EXPIRY} seconds"
        )));
    }
    Ok(if expiry <= 0 {
        registry::DEFAULT_INVOICE_EXPIRY_SECS
    } else {
        expiry as u64
    })
}

/// The invoice as LND would write it: the node's invoice re-signed with the final CLTV delta
/// asked for and hop hints only when `private` (see the module docs).
fn as_lnd_would(inner: &Inner, bolt11: String, cltv: u64, private: bool) -> Result<String, Status> {
    let Some(key) = &inner.invoice_key else {
        return Ok(bolt11);
    };
    let inv = Bolt11Invoice::from_str(&bolt11).map_err(|e| Status::internal(e.to_string()))?;
    eddy_backends::ldk::reissue_invoice(&inv, cltv, private, key)
        .map(|i| i.to_string())
        .map_err(lnerr)
}

async fn add_invoice(inner: Arc<Inner>, r: lnrpc::Invoice) -> Result<lnrpc::AddInvoiceResponse, Status> {
    let expiry = check_new_invoice(&r.memo, r.value_msat.max(r.value.saturating_mul(1000)), r.expiry)?;
    let cltv = registry::final_cltv_delta(r.cltv_expiry, inner.profile.rules.min_final_cltv_delta).map_err(status)?;
    let preimage = if r.r_preimage.is_empty() {
        Preimage::random()
    } else {
        Preimage::from_slice(&r.r_preimage)
            .ok_or_else(|| Status::unknown(format!("invalid preimage length of {}, want 32", r.r_preimage.len())))?
    };
    let hash = preimage.payment_hash();
    refuse_duplicate(&inner, &hash)?;
    let value_msat = if r.value_msat > 0 { r.value_msat } else { r.value * 1000 } as u64;
    let inv = inner
        .ln
        .create_invoice(&preimage, value_msat, expiry as u32, &r.memo)
        .await
        .map_err(lnerr)?;
    let payment_request = as_lnd_would(&inner, inv.bolt11, cltv, r.private)?;
    let add_index = register(
        &inner,
        NewInvoice {
            hash,
            hold: false,
            preimage: Some(preimage),
            value_msat,
            expiry_secs: expiry,
            cltv_expiry: cltv,
            private: r.private,
            payment_request: payment_request.clone(),
            memo: r.memo,
        },
    )?;
    Ok(lnrpc::AddInvoiceResponse {
        r_hash: hash.0.to_vec(),
        payment_request,
        add_index,
        ..Default::default()
    })
}

async fn add_hold_invoice(
    inner: Arc<Inner>,
    r: invoicesrpc::AddHoldInvoiceRequest,
) -> Result<invoicesrpc::AddHoldInvoiceResp, Status> {
    let hash = hash_from(&r.hash)?;
    let value_msat = if r.value_msat > 0 {
        r.value_msat
    } else {
        r.value.saturating_mul(1000)
    };
    let expiry = check_new_invoice(&r.memo, value_msat, r.expiry)?;
    let cltv = registry::final_cltv_delta(r.cltv_expiry, inner.profile.rules.min_final_cltv_delta).map_err(status)?;
    refuse_duplicate(&inner, &hash)?;
    let inv = inner
        .ln
        .create_hold_invoice(&HoldInvoiceRequest {
            payment_hash: hash,
            amount_msat: value_msat.max(0) as u64,
            expiry_secs: u32::try_from(expiry).unwrap_or(u32::MAX),
            min_final_cltv_delta: u16::try_from(cltv).unwrap_or(u16::MAX),
            description: r.memo.clone(),
        })
        .await
        .map_err(lnerr)?;
    let payment_request = as_lnd_would(&inner, inv.bolt11, cltv, r.private)?;
    let add_index = register(
        &inner,
        NewInvoice {
            hash,
            hold: true,
            preimage: None,
            value_msat: value_msat.max(0) as u64,
            expiry_secs: expiry,
            cltv_expiry: cltv,
            private: r.private,
            payment_request: payment_request.clone(),
            memo: r.memo,
        },
    )?;
    Ok(invoicesrpc::AddHoldInvoiceResp {
        payment_request,
        add_index,
        ..Default::default()
    })
}

async fn decode_pay_req(_inner: Arc<Inner>, r: lnrpc::PayReqString) -> Result<lnrpc::PayReq, Status> {
    let inv = Bolt11Invoice::from_str(r.pay_req.trim()).map_err(|e| Status::unknown(e.to_string()))?;
    let msat = inv.amount_milli_satoshis().unwrap_or(0);
    Ok(lnrpc::PayReq {
        destination: inv.get_payee_pub_key().to_string(),
        payment_hash: inv.payment_hash().to_string(),
        num_satoshis: (msat / 1000) as i64,
        num_msat: msat as i64,
        timestamp: inv.duration_since_epoch().as_secs() as i64,
        expiry: inv.expiry_time().as_secs() as i64,
        cltv_expiry: inv.min_final_cltv_expiry_delta() as i64,
        route_hints: inv
            .route_hints()
            .iter()
            .map(|h| lnrpc::RouteHint {
                hop_hints: h
                    .0
                    .iter()
                    .map(|hop| lnrpc::HopHint {
                        node_id: hop.src_node_id.to_string(),
                        chan_id: hop.short_channel_id,
                        fee_base_msat: hop.fees.base_msat,
                        fee_proportional_millionths: hop.fees.proportional_millionths,
                        cltv_expiry_delta: u32::from(hop.cltv_expiry_delta),
                    })
                    .collect(),
            })
            .collect(),
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

fn invoice_msg(hash: &PaymentHash, inv: &registry::Invoice) -> lnrpc::Invoice {
    let paid = inv.amt_paid_msat();
    lnrpc::Invoice {
        memo: inv.memo.clone(),
        r_preimage: match (inv.state, &inv.preimage) {
            (InvoiceState::Settled, Some(p)) => p.expose_bytes().to_vec(),
            (_, Some(p)) if !inv.hold => p.expose_bytes().to_vec(),
            _ => vec![],
        },
        r_hash: hash.0.to_vec(),
        value: (inv.value_msat / 1000) as i64,
        value_msat: inv.value_msat as i64,
        creation_date: inv.created_unix as i64,
        payment_request: inv.payment_request.clone(),
        expiry: inv.expiry_secs as i64,
        cltv_expiry: inv.cltv_expiry,
        private: inv.private,
        add_index: inv.add_index,
        amt_paid_sat: (paid / 1000) as i64,
        amt_paid_msat: paid as i64,
        state: inv.state.code(),
        htlcs: inv
            .htlcs
            .iter()
            .map(|h| lnrpc::InvoiceHtlc {
                amt_msat: h.amount_msat,
                accept_height: h.accept_height as i32,
                expiry_height: h.expiry_height as i32,
                state: h.state.code(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// `LookupInvoiceV2` (`invoices_server.go`): a missing ref is `InvalidArgument`, an unknown (or
/// garbage-collected) invoice `NotFound` "unable to locate invoice".
async fn lookup_invoice(inner: Arc<Inner>, r: invoicesrpc::LookupInvoiceMsg) -> Result<lnrpc::Invoice, Status> {
    let hash = match r.invoice_ref {
        Some(invoicesrpc::lookup_invoice_msg::InvoiceRef::PaymentHash(h)) => {
            <[u8; 32]>::try_from(h.as_slice()).map(PaymentHash).map_err(|_| {
                Status::invalid_argument(format!("unable to parse pay hash: invalid hash length of {}", h.len()))
            })?
        }
        None => return Err(Status::invalid_argument("invoice ref must be set")),
        _ => {
            return Err(Status::unimplemented(
                "the emulator looks invoices up by payment hash only",
            ))
        }
    };
    let st = inner.state();
    let inv = st.registry.lookup(&hash).map_err(status)?;
    Ok(invoice_msg(&hash, inv))
}

/// `SettleInvoice`: the node behind is asked to settle HTLCs it holds; LND's answer follows the
/// registry (settled again = success, open / canceled refused).
async fn settle_invoice(
    inner: Arc<Inner>,
    r: invoicesrpc::SettleInvoiceMsg,
) -> Result<invoicesrpc::SettleInvoiceResp, Status> {
    let preimage = Preimage::from_slice(&r.preimage)
        .ok_or_else(|| Status::unknown(format!("invalid preimage length of {}, want 32", r.preimage.len())))?;
    let hash = preimage.payment_hash();
    // A dry run on a copy decides LND's answer before the node is touched.
    let on_node = {
        let st = inner.state();
        let mut probe = st.registry.clone();
        probe.settle(&preimage).map_err(status)?;
        st.registry
            .lookup(&hash)
            .map(|inv| inv.state == InvoiceState::Accepted && inv.htlcs.iter().any(|h| h.on_node))
            .unwrap_or(false)
    };
    if on_node {
        inner.ln.settle_hold_invoice(&preimage).await.map_err(lnerr)?;
        // The node settles asynchronously; LND reports SETTLED once the HTLCs resolve.
        let mut settled = false;
        for _ in 0..50 {
            match inner.ln.hold_invoice_state(&hash).await {
                Ok(HoldInvoiceState::Settled { .. }) => {
                    settled = true;
                    break;
                }
                Ok(HoldInvoiceState::Canceled) => {
                    inner.state().registry.node_failed_back(&hash);
                    inner.bump();
                    return Err(Status::unknown("invoice already canceled"));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        if !settled {
            return Err(Status::unavailable("the node behind did not settle within 5 s"));
        }
    }
    inner.state().registry.settle(&preimage).map_err(status)?;
    inner.bump();
    Ok(invoicesrpc::SettleInvoiceResp {})
}

async fn cancel_invoice(
    inner: Arc<Inner>,
    r: invoicesrpc::CancelInvoiceMsg,
) -> Result<invoicesrpc::CancelInvoiceResp, Status> {
    let hash = hash_from(&r.payment_hash)?;
    let changed = inner.state().registry.cancel(&hash).map_err(status)?;
    if changed {
        inner.ln.cancel_hold_invoice(&hash).await.map_err(lnerr)?;
        inner.bump();
    }
    Ok(invoicesrpc::CancelInvoiceResp {})
}

/// `SubscribeSingleInvoice`: the current state first, then every change; an unknown hash waits
/// (no error) until the invoice exists; the stream ends after a final state.
async fn subscribe_single_invoice(
    inner: Arc<Inner>,
    r: invoicesrpc::SubscribeSingleInvoiceRequest,
) -> Result<InvStream, Status> {
    let hash = hash_from(&r.r_hash)?;
    let mut changes = inner.changed.subscribe();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut last: Option<(i32, usize)> = None;
        loop {
            let msg = {
                let st = inner.state();
                st.registry.lookup(&hash).ok().map(|inv| invoice_msg(&hash, inv))
            };
            if let Some(msg) = msg {
                let key = (msg.state, msg.htlcs.len());
                if last != Some(key) {
                    last = Some(key);
                    let state = msg.state;
                    if tx.send(Ok(msg)).await.is_err() || state == 1 || state == 2 {
                        return;
                    }
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

fn payment_msg(hash: &PaymentHash, p: &PaymentRecord) -> Result<lnrpc::Payment, Status> {
    let status = p.status().map_err(self::status)?;
    let fee = p.fee_msat as i64;
    Ok(lnrpc::Payment {
        payment_hash: hash.to_string(),
        value_msat: p.value_msat as i64,
        value_sat: (p.value_msat / 1000) as i64,
        status: status.code(),
        payment_preimage: match (status, &p.preimage) {
            (router::Status::Succeeded, Some(pre)) => pre.expose_hex(),
            _ => String::new(),
        },
        fee_msat: fee,
        fee_sat: fee / 1000,
        failure_reason: p.reason.map_or(0, FailureReason::code),
        htlcs: p
            .attempts
            .iter()
            .map(|a| lnrpc::HtlcAttempt {
                status: match a {
                    Attempt::InFlight => 0,
                    Attempt::Settled => 1,
                    Attempt::Failed => 2,
                },
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// A payment's updates until it is final (first message: its current state).
fn payment_stream(inner: Arc<Inner>, hash: PaymentHash) -> PayStream {
    let mut changes = inner.changed.subscribe();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let msg = inner.state().payments.get(&hash).map(|p| payment_msg(&hash, p));
            let Some(msg) = msg else {
                return;
            };
            let done = match &msg {
                Ok(m) => m.status == 2 || m.status == 3,
                Err(_) => true,
            };
            let key = msg.as_ref().ok().map(|m| (m.status, m.htlcs.len()));
            if last != Some(key) {
                last = Some(key);
                if tx.send(msg).await.is_err() || done {
                    return;
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// `SendPaymentV2` (`router_backend.go` rules in [`router::validate_send`]; the deprecated
/// single `outgoing_chan_id` is still read by LND).
#[allow(deprecated)]
async fn send_payment(inner: Arc<Inner>, r: routerrpc::SendPaymentRequest) -> Result<PayStream, Status> {
    let inv = Bolt11Invoice::from_str(r.payment_request.trim()).map_err(|e| Status::unknown(e.to_string()))?;
    if inv.is_expired() {
        return Err(Status::unknown(format!(
            "invoice expired. Valid until {}",
            inv.expires_at().map_or(0, |d| d.as_secs())
        )));
    }
    let intent = router::validate_send(
        &router::SendRequest {
            timeout_seconds: r.timeout_seconds,
            fee_limit_sat: r.fee_limit_sat,
            fee_limit_msat: r.fee_limit_msat,
            cltv_limit: r.cltv_limit,
            outgoing_chan_id: r.outgoing_chan_id,
            outgoing_chan_ids: r.outgoing_chan_ids.clone(),
            last_hop_pubkey: r.last_hop_pubkey.clone(),
            final_cltv_delta: u32::try_from(inv.min_final_cltv_expiry_delta()).unwrap_or(u32::MAX),
        },
        inner.profile.max_cltv_expiry,
        true,
    )
    .map_err(status)?;
    let hash = PaymentHash(*inv.payment_hash().as_ref());
    if let Some(p) = inner.state().payments.get(&hash) {
        router::may_send_again(p.status().map_err(status)?).map_err(status)?;
    }
    let last_hop = if r.last_hop_pubkey.is_empty() {
        None
    } else {
        bitcoin::secp256k1::PublicKey::from_slice(&r.last_hop_pubkey).ok()
    };
    let params = PayParams {
        max_fee_msat: intent.fee_limit_msat,
        timeout: Duration::from_secs(r.timeout_seconds.max(1) as u64),
        outgoing_channel: intent.outgoing_chan_ids.first().copied(),
        max_total_cltv_delta: Some(intent.cltv_limit),
        last_hop,
    };
    let value_msat = inv.amount_milli_satoshis().unwrap_or(0);
    // LND records the payment before it looks for a route; a payment without a route fails
    // (FAILURE_REASON_NO_ROUTE) rather than erroring the call.
    let record = match inner.ln.pay_invoice(&r.payment_request, &params).await {
        Ok(_) => PaymentRecord {
            attempts: vec![Attempt::InFlight],
            reason: None,
            preimage: None,
            fee_msat: 0,
            value_msat,
            on_node: true,
        },
        Err(LnError::Refused(_)) => PaymentRecord {
            attempts: vec![],
            reason: Some(FailureReason::NoRoute),
            preimage: None,
            fee_msat: 0,
            value_msat,
            on_node: true,
        },
        // The node behind could not be asked: LND would have registered the payment and then
        // failed it (its router cannot send), so there is a record, failed.
        Err(LnError::Unavailable(_)) => PaymentRecord {
            attempts: vec![],
            reason: Some(FailureReason::Error),
            preimage: None,
            fee_msat: 0,
            value_msat,
            on_node: true,
        },
        Err(e) => return Err(lnerr(e)),
    };
    inner.state().payments.insert(hash, record);
    inner.bump();
    Ok(payment_stream(inner, hash))
}

/// `TrackPaymentV2`: an unknown hash is `NotFound` "payment isn't initiated".
async fn track_payment(inner: Arc<Inner>, r: routerrpc::TrackPaymentRequest) -> Result<PayStream, Status> {
    let hash = hash_from(&r.payment_hash)?;
    if !inner.state().payments.contains_key(&hash) {
        return Err(Status::new(Code::NotFound, "payment isn't initiated"));
    }
    Ok(payment_stream(inner, hash))
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
        .map_err(|e| match e {
            // btcwallet's words for a wallet that cannot pay (LND returns them as plain errors).
            LnError::Refused(m) if m.to_ascii_lowercase().contains("insufficient") => {
                Status::unknown(format!("insufficient funds available to construct transaction: {m}"))
            }
            e => lnerr(e),
        })?;
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
