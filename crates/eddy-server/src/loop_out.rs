//! The loop-out engine (server side). Each swap is one [`LoopOutRecord`] in the store, holding
//! the `eddy-core` state machine's state plus what the actions need. [`LoopOutServer::tick`]
//! gathers what happened (hold-invoice states, the chain watcher's fundings and spends, the new
//! tip), feeds it to the state machine, **persists every transition before acting on it**, then
//! performs the actions — each idempotent, so a crash anywhere repeats at most a harmless step:
//! - publishing the HTLC first syncs the watcher and looks for an existing output paying the
//!   HTLC script (the watcher rescans from the swap's creation), on every path (engine pass or
//!   Lightning event), so a crash or store error between broadcast and persistence never
//!   publishes twice; a publication is made only inside the window the state machine allows
//!   (checked again at broadcast), and re-broadcast every pass until it confirms;
//! - unpaid offers hold no slot and reserve no liquidity (their invoices expire in
//!   `LOOP_OUT_OFFER_EXPIRY_SECS`); a published HTLC is never given up: it ends when spent;
//! - settling and canceling invoices are idempotent in the backends;
//! - the refund is rebuilt deterministically and re-broadcast (RBF-bumped) every block.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::{Amount, Network, OutPoint, ScriptBuf, Txid};
use eddy_backends::lightning::HoldInvoiceRequest;
use eddy_backends::{
    swap_watch_id, ChainSource, ChainWatcher, Funding, HoldInvoiceState, LightningNode, LnEvent, WatchId, WatchStatus,
};
use eddy_core::constants::{
    HTLC_PUBLICATION_BUMP_BLOCKS, MIN_BLOCKS_LEFT_AT_PUBLICATION, SEED_CSV_DELAY, SEED_LOOP_OUT_EXPIRY_DELTA,
    SERVER_SETTLE_MARGIN, SETTLE_LATENCY,
};
use eddy_core::fees::{next_sweep_fee_rate, FeePolicy, SweepStep};
use eddy_core::htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams};
use eddy_core::musig::{cosign, PartialSigBytes, PubNonceBytes};
use eddy_core::sm::loop_out_server::{Action, Event, LoopOutServerMachine, State, Terms};
use eddy_core::spend::find_preimage;
use eddy_core::tx::{build_spend, FeeSpec, HtlcInput, SpendPath};
use eddy_core::types::{PaymentHash, Preimage, SwapId};
use eddy_core::validate::LoopOutOffer;
use eddy_store::runner;
use eddy_store::{state_name, NewSwap, StoreError, SwapKind, SwapStore};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use eddy_store::SeedKeys;

use crate::metrics::Metrics;

pub mod admin;
use crate::wallet::{SwapWallet, WALLET_WATCH_ID};

/// Store meta key: the height from which the swap wallet's coins must be rescanned. Set to the
/// tip at the first start (deposits made before it are found only by setting this lower, e.g.
/// `eddy server --wallet-rescan-from`), then kept at the oldest unspent coin's height.
pub const META_WALLET_SCAN_FROM: &str = "swap_wallet.scan_from";

/// Key purpose for loop-out HTLC keys.
const KEY_PURPOSE: eddy_store::KeyPurpose = eddy_store::KeyPurpose::ServerLoopOut;
/// Blocks of slack added to the swap invoice's final CLTV delta on top of what the hold needs.
const FINAL_CLTV_SLACK: u32 = eddy_core::constants::LOOP_OUT_FINAL_CLTV_SLACK;
/// Invoice lifetime of an offer (unpaid offers reserve nothing; they must expire soon).
const INVOICE_EXPIRY_SECS: u32 = eddy_core::constants::LOOP_OUT_OFFER_EXPIRY_SECS;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The network swaps run on.
    pub network: Network,
    /// Fees and limits.
    pub fees: FeePolicy,
    /// `E − tip` at creation.
    pub expiry_delta: u32,
    /// Confirmation target for publishing HTLCs.
    pub publish_conf_target: u16,
    /// Most swaps in flight at once.
    pub max_active_swaps: usize,
    /// On-chain funds kept out of swaps (for fees, refunds, channel reserves).
    pub onchain_reserve: Amount,
}

/// A loop-out request as the server receives it.
pub use eddy_core::validate::LoopOutCreate as LoopOutRequest;

/// The refund sweep, once started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundInfo {
    /// Last broadcast.
    pub txid: Txid,
    /// Its fee rate (sat/kWU).
    pub fee_rate_kwu: u64,
    /// Every refund txid broadcast (a bumped one may lose to an earlier one).
    pub all: Vec<Txid>,
}

/// One swap as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopOutRecord {
    /// The HTLC.
    pub htlc: HtlcParams,
    /// HTLC value.
    pub amount: Amount,
    /// The state machine's terms.
    pub terms: Terms,
    /// Swap hold invoice.
    pub swap_invoice: String,
    /// Prepay hold invoice.
    pub prepay_invoice: String,
    /// The prepay's preimage (the server's own).
    pub prepay_preimage: Preimage,
    /// The HTLC output, once published.
    pub funding: Option<OutPoint>,
    /// Where refunds go (an address of the server's wallet), fixed before first use.
    pub sweep_spk: Option<ScriptBuf>,
    /// The refund sweep.
    pub refund: Option<RefundInfo>,
    /// The tip when the HTLC was broadcast (or an existing output adopted): the prepay is
    /// earned only for a publication inside the window (`Terms::may_publish`). `None` in
    /// records written before it existed.
    #[serde(default)]
    pub published_height: Option<u32>,
    /// The HTLC (batch) transaction as broadcast, consensus hex: re-broadcast every block until
    /// it confirms (an evicted publication must not leave the swap waiting for nothing).
    #[serde(default)]
    pub htlc_tx: Option<String>,
    /// Every HTLC transaction of ours for this swap (the batch and its replacements), written
    /// **before** each is broadcast: the only transactions whose output `funding.vout` the
    /// server takes for its publication — never a stranger's output, even of the exact amount.
    #[serde(default)]
    pub htlc_txids: Vec<Txid>,
    /// Unix time of creation (the offer's invoices expire `INVOICE_EXPIRY_SECS` later).
    #[serde(default)]
    pub created_unix: Option<u64>,
    /// The state machine's state.
    pub state: State,
}

/// Engine errors.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The request is not acceptable (amount, key, network…).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The server cannot take the swap now (capacity or liquidity); nothing was created.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A swap for this payment hash exists (replay).
    #[error("a swap for payment hash {0} exists")]
    Duplicate(PaymentHash),
    /// Unknown swap.
    #[error("unknown swap {0}")]
    NotFound(SwapId),
    /// A backend failed; retry.
    #[error("backend: {0}")]
    Backend(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Refuses a Lightning node that fails held HTLCs back too early for loop-out clients: the
/// swap invoice would ask a final CLTV no client accepts
/// ([`eddy_core::constants::MAX_SETTLE_DEADLINE_DELTA`]).
pub fn check_settle_deadline_delta(delta: u32) -> Result<(), ServerError> {
    let max = eddy_core::constants::MAX_SETTLE_DEADLINE_DELTA;
    if delta > max {
        return Err(ServerError::Invalid(format!(
            "the Lightning node fails held HTLCs back {delta} blocks before their expiry (LND: \
             invoices.holdexpirydelta); loop-out clients accept swap invoices only for a delta up to {max}: \
             lower it on the node"
        )));
    }
    Ok(())
}

fn backend(e: impl std::fmt::Display) -> ServerError {
    ServerError::Backend(e.to_string())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl LoopOutRecord {
    /// Whether the client has paid anything yet (a swap or prepay HTLC held, or further):
    /// only such swaps hold a slot and reserve on-chain liquidity.
    pub fn is_paid(&self) -> bool {
        !matches!(
            self.state,
            State::Created {
                swap_accepted: None,
                prepay_accepted: None,
                ..
            }
        )
    }

    /// The txids of our own publications: those recorded, and (records written before they
    /// were) the funding's own txid.
    fn our_txids(&self) -> Vec<Txid> {
        let mut ids = self.htlc_txids.clone();
        if let Some(f) = self.funding {
            if !ids.contains(&f.txid) {
                ids.push(f.txid);
            }
        }
        ids
    }

    /// Our HTLC output as the watcher shows it (`status` already restricted to the swap's
    /// script): output `funding.vout` of one of our own transactions, the confirmed one first.
    fn our_funding<'a>(&self, status: &'a WatchStatus) -> Option<&'a Funding> {
        let vout = self.funding?.vout;
        let ours = self.our_txids();
        status
            .fundings
            .iter()
            .filter(|f| f.outpoint.vout == vout && ours.contains(&f.outpoint.txid) && f.value == self.amount)
            .max_by_key(|f| (f.height.is_some(), std::cmp::Reverse(f.height)))
    }

    /// The stored publication, decoded.
    /// Whether its HTLC was published (and the swap goes on): the states in which an earned
    /// prepay is settled and the publication is followed.
    fn is_published(&self) -> bool {
        matches!(
            self.state,
            State::Published { .. } | State::Refunding { .. } | State::PreimageKnown { .. } | State::Reclaiming
        )
    }

    fn stored_tx(&self) -> Option<bitcoin::Transaction> {
        self.htlc_tx
            .as_deref()
            .and_then(|h| bitcoin::consensus::encode::deserialize_hex(h).ok())
    }

    /// An unpaid offer whose invoices can still be paid at unix time `now`.
    fn is_live_offer(&self, now: u64) -> bool {
        !self.is_paid()
            && self
                .created_unix
                .is_none_or(|t| now < t + u64::from(INVOICE_EXPIRY_SECS))
    }
}

/// The loop-out engine.
pub struct LoopOutServer {
    cfg: ServerConfig,
    ln: Arc<dyn LightningNode>,
    chain: Arc<dyn ChainSource>,
    store: Arc<dyn SwapStore>,
    keys: SeedKeys,
    watcher: Mutex<ChainWatcher>,
    /// Prepay payment hash → swap (the swap invoice's hash is the swap id itself).
    prepay_ids: std::sync::Mutex<HashMap<PaymentHash, SwapId>>,
    /// When the latest of a swap's HTLCs was accepted (for the publish latency metric).
    accepted_at: std::sync::Mutex<HashMap<SwapId, Instant>>,
    /// The watchdog: since when the Lightning node has not followed the chain (and the grace).
    follow: Arc<eddy_backends::health::ChainFollow>,
    node_lag_grace: std::sync::Mutex<std::time::Duration>,
    metrics: Arc<Metrics>,
    wallet: SwapWallet,
    /// One publication (one batch transaction) at a time.
    publishing: Mutex<()>,
    /// One wallet rescan at a time (it runs beside the engine's passes; see `rescan_wallet`).
    rescanning: Mutex<()>,
    /// The last background rescan (`spawn_rescan`).
    rescan_status: std::sync::Mutex<Option<admin::RescanStatus>>,
    /// Deposits logged (outpoint, confirmed): each is logged once seen and once confirmed.
    logged_deposits: std::sync::Mutex<std::collections::HashSet<(bitcoin::OutPoint, bool)>>,
    /// Last persisted rescan height of the wallet.
    wallet_scan_from: std::sync::Mutex<Option<u32>>,
    /// Loop-in cooperative claims waiting for the client's partial signature.
    pub(crate) in_claims: std::sync::Mutex<HashMap<SwapId, crate::loop_in::ClaimSession>>,
    /// Loop-in cooperative claim sessions opened per swap in the current block: (tip, count),
    /// bounded by `LOOP_IN_COOP_CLAIMS_PER_BLOCK`.
    pub(crate) in_claim_attempts: std::sync::Mutex<HashMap<SwapId, (u32, u32)>>,
}

/// How often [`LoopOutServer::run`] asks the chain for a new tip.
pub const TIP_POLL: Duration = Duration::from_millis(100);
/// How often [`LoopOutServer::run`] ticks when nothing happens (retries failed actions).
pub const IDLE_TICK: Duration = Duration::from_secs(2);

impl LoopOutServer {
    /// Starts the engine: the chain watcher rescans from the oldest active swap's creation, and
    /// every active swap's HTLC is watched again.
    pub async fn new(
        cfg: ServerConfig,
        ln: Arc<dyn LightningNode>,
        chain: Arc<dyn ChainSource>,
        store: Arc<dyn SwapStore>,
        keys: SeedKeys,
    ) -> Result<LoopOutServer, ServerError> {
        check_settle_deadline_delta(ln.settle_deadline_delta())?;
        let tip = chain.tip().await.map_err(backend)?;
        let active = Self::active(&*store).await?;
        let wallet_from = store
            .get_meta(META_WALLET_SCAN_FROM)
            .await?
            .and_then(|v| v.parse::<u32>().ok());
        if wallet_from.is_none() {
            store.set_meta(META_WALLET_SCAN_FROM, &tip.height.to_string()).await?;
        }
        let wallet = SwapWallet::new(&keys, cfg.network);
        let watcher = Self::watcher_for(&chain, &*store, wallet.script_pubkey(), wallet_from, tip.height).await?;
        let mut prepay_ids = HashMap::new();
        for (id, _, r) in &active {
            prepay_ids.insert(r.prepay_preimage.payment_hash(), *id);
        }
        Ok(LoopOutServer {
            cfg,
            ln,
            chain,
            store,
            keys,
            watcher: Mutex::new(watcher),
            prepay_ids: std::sync::Mutex::new(prepay_ids),
            accepted_at: std::sync::Mutex::default(),
            follow: Arc::new(eddy_backends::health::ChainFollow::new()),
            node_lag_grace: std::sync::Mutex::new(std::time::Duration::from_secs(
                eddy_core::constants::NODE_LAG_GRACE_SECS,
            )),
            metrics: Arc::new(Metrics::new()),
            wallet,
            publishing: Mutex::new(()),
            rescanning: Mutex::new(()),
            rescan_status: std::sync::Mutex::new(None),
            logged_deposits: std::sync::Mutex::new(Default::default()),
            wallet_scan_from: std::sync::Mutex::new(wallet_from),
            in_claims: std::sync::Mutex::default(),
            in_claim_attempts: std::sync::Mutex::default(),
        })
    }

    /// A chain watcher following everything the server must see: the swap wallet (from
    /// `wallet_from`, or the tip) and every active swap's HTLC (from its creation).
    pub(crate) async fn watcher_for(
        chain: &Arc<dyn ChainSource>,
        store: &dyn SwapStore,
        wallet_spk: &ScriptBuf,
        wallet_from: Option<u32>,
        tip: u32,
    ) -> Result<ChainWatcher, ServerError> {
        let active = Self::active(store).await?;
        let active_in = crate::loop_in::active_in_of(store).await?;
        let from = active
            .iter()
            .map(|(_, _, r)| r.terms.created_height.saturating_sub(1))
            .chain(active_in.iter().map(|(_, _, r)| r.created_height.saturating_sub(1)))
            .chain(wallet_from)
            .min()
            .unwrap_or(tip)
            .min(tip);
        let mut watcher = ChainWatcher::starting_after(chain.clone(), from)
            .await
            .map_err(backend)?;
        watcher.index_mut().watch_script(WALLET_WATCH_ID, wallet_spk.clone());
        for (id, _, r) in &active_in {
            let htlc = Htlc::new(r.htlc).map_err(|e| ServerError::Backend(e.to_string()))?;
            watcher
                .index_mut()
                .watch_script(swap_watch_id(id), htlc.script_pubkey());
        }
        for (id, _, r) in &active {
            let htlc = Htlc::new(r.htlc).map_err(|e| ServerError::Backend(e.to_string()))?;
            watcher
                .index_mut()
                .watch_script(swap_watch_id(id), htlc.script_pubkey());
        }
        Ok(watcher)
    }

    /// The network swaps run on.
    pub fn network(&self) -> Network {
        self.cfg.network
    }

    pub(crate) fn store(&self) -> &Arc<dyn SwapStore> {
        &self.store
    }

    pub(crate) fn ln(&self) -> &Arc<dyn LightningNode> {
        &self.ln
    }

    pub(crate) fn chain(&self) -> &Arc<dyn ChainSource> {
        &self.chain
    }

    pub(crate) fn keys(&self) -> &SeedKeys {
        &self.keys
    }

    pub(crate) fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    pub(crate) async fn tip(&self) -> Result<u32, ServerError> {
        Ok(self.chain.tip().await.map_err(backend)?.height)
    }

    pub(crate) fn wallet_script(&self) -> ScriptBuf {
        self.wallet.script_pubkey().clone()
    }

    /// Loop-outs holding a slot: paid ones (see [`LoopOutRecord::is_paid`]).
    pub(crate) async fn active_count(&self) -> Result<usize, ServerError> {
        Ok(Self::active(&*self.store)
            .await?
            .iter()
            .filter(|(_, _, r)| r.is_paid())
            .count())
    }

    /// Brings the chain watcher up to the tip and mempool.
    pub(crate) async fn sync_chain(&self) -> Result<(), ServerError> {
        {
            let mut w = self.watcher.lock().await;
            let events = w.sync().await.map_err(backend)?;
            self.log_deposits(&w, &events);
        }
        Ok(())
    }

    /// Starts watching a swap's HTLC script.
    pub(crate) async fn watch(&self, id: SwapId, spk: ScriptBuf) {
        self.watcher
            .lock()
            .await
            .index_mut()
            .watch_script(swap_watch_id(&id), spk);
    }

    /// Number of chain watches (the swap wallet's and every active swap's).
    pub async fn watch_count(&self) -> usize {
        self.watcher.lock().await.index().len()
    }

    /// Stops watching a swap that became terminal: the same view a restart gives (only active
    /// swaps are watched at start), so the index does not grow with every swap ever made.
    pub(crate) async fn unwatch(&self, id: &SwapId) {
        self.watcher.lock().await.index_mut().unwatch(swap_watch_id(id));
    }

    /// Logs each deposit to the swap wallet among a watcher's `events` — once when seen in the
    /// mempool, once when confirmed: an output paying the wallet from a transaction that
    /// spends none of the wallet's coins (its publications' and withdrawals' change is no
    /// deposit) and no active swap's HTLC (a loop-in claim, a loop-out refund). Never a secret:
    /// outpoint, value, height.
    pub(crate) fn log_deposits(&self, watcher: &ChainWatcher, events: &[eddy_backends::WatchEvent]) {
        let mut logged = self.logged_deposits.lock().unwrap_or_else(|e| e.into_inner());
        for e in events {
            let eddy_backends::WatchEvent::Funded { id, funding } = e else {
                continue;
            };
            let txid = funding.outpoint.txid;
            let ours = watcher.index().touched_by(&txid).iter().any(|w| *w != WALLET_WATCH_ID)
                || watcher
                    .index()
                    .status(WALLET_WATCH_ID)
                    .is_some_and(|s| s.spends.iter().any(|sp| sp.txid == txid));
            if *id != WALLET_WATCH_ID || ours || !logged.insert((funding.outpoint, funding.height.is_some())) {
                continue;
            }
            match funding.height {
                Some(height) => tracing::info!(
                    outpoint = %funding.outpoint,
                    value_sat = funding.value.to_sat(),
                    height,
                    "swap wallet deposit confirmed"
                ),
                None => tracing::info!(
                    outpoint = %funding.outpoint,
                    value_sat = funding.value.to_sat(),
                    "swap wallet deposit seen in the mempool"
                ),
            }
        }
    }

    /// Where to deposit the on-chain funds the server locks into HTLCs.
    pub fn wallet_address(&self) -> &bitcoin::Address {
        self.wallet.address()
    }

    /// The swap wallet's balance as of the last chain sync ([`Self::tick`] syncs).
    pub async fn wallet_balance(&self) -> crate::wallet::WalletBalance {
        let seen = self.status_of(WALLET_WATCH_ID).await;
        self.wallet.balance(&seen)
    }

    pub(crate) async fn status_of(&self, watch: WatchId) -> WatchStatus {
        self.watcher
            .lock()
            .await
            .index()
            .status(watch)
            .cloned()
            .unwrap_or_default()
    }

    /// What the chain shows of swap `id`'s HTLC: only outputs paying exactly the script rebuilt
    /// from the swap's stored `htlc` terms (and their spends), whatever else its watch saw.
    pub(crate) async fn htlc_status(&self, id: &SwapId, htlc: &HtlcParams) -> Result<WatchStatus, ServerError> {
        let spk = Htlc::new(*htlc).map_err(backend)?.script_pubkey();
        Ok(self.status_of(swap_watch_id(id)).await.paying(&spk))
    }

    /// The engine's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Drives the engine until `shutdown` turns true: a Lightning event (an HTLC accepted on
    /// one of our invoices) steps that swap at once — publication latency is what the client's
    /// payment waits for — a new tip or [`IDLE_TICK`] of quiet runs a full [`Self::tick`].
    /// Errors are logged and retried on the next pass; every step is idempotent.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        // A forwarding task stamps each Lightning event as it arrives, so the publish latency
        // counts the time an event waits behind others too.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<(Instant, LnEvent)>>();
        let ln = self.ln.clone();
        let forward = tokio::spawn(async move {
            let mut events = ln.subscribe();
            loop {
                let msg = match events.recv().await {
                    Ok(ev) => Some((Instant::now(), ev)),
                    // Missed events: `None` asks for a full pass.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep(TIP_POLL).await;
                        events = ln.subscribe();
                        None
                    }
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        let mut tip = None;
        let mut poll = tokio::time::interval(TIP_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_tick = Instant::now() - IDLE_TICK;
        let mut ticking: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        forward.abort();
                        if let Some(t) = ticking {
                            let _ = t.await;
                        }
                        return;
                    }
                }
                Some(first) = rx.recv() => {
                    // Take every event already queued: step each swap once (concurrently), then
                    // publish them all in one transaction.
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    if batch.iter().any(Option::is_none) {
                        tracing::warn!("Lightning events lagged; ticking");
                        last_tick = Instant::now() - IDLE_TICK;
                    }
                    let mut swaps: HashMap<SwapId, Instant> = HashMap::new();
                    for (at, ev) in batch.into_iter().flatten() {
                        if let Some(id) = self.swap_of_accepted(&ev) {
                            let e = swaps.entry(id).or_insert(at);
                            *e = (*e).max(at);
                        }
                    }
                    let tip_now = self.chain.tip().await.ok().map(|t| t.height);
                    if let Some(tip_now) = tip_now {
                        let steps = swaps.into_iter().map(|(id, at)| self.on_accepted(id, at, tip_now));
                        for r in futures::future::join_all(steps).await {
                            match r {
                                Ok(()) => {}
                                Err(ServerError::Store(StoreError::Conflict { .. })) => {
                                    tracing::debug!("event raced an engine pass; retried next pass");
                                }
                                Err(e) => tracing::warn!(error = %e, "handling a Lightning event"),
                            }
                        }
                    }
                    if let Err(e) = self.publish_pending().await {
                        tracing::warn!(error = %e, "publishing HTLCs");
                    }
                }
                _ = poll.tick() => {
                    // A full pass runs beside event handling (it can take a while with many
                    // swaps); both persist with version checks, so a swap stepped by both is
                    // written once and the other retries on its next pass.
                    if ticking.as_ref().is_some_and(|h| !h.is_finished()) {
                        continue;
                    }
                    let now_tip = self.chain.tip().await.ok().map(|t| t.hash);
                    if now_tip != tip || last_tick.elapsed() >= IDLE_TICK {
                        tip = now_tip;
                        last_tick = Instant::now();
                        let me = self.clone();
                        ticking = Some(tokio::spawn(async move {
                            match me.tick().await {
                                Ok(()) => {}
                                Err(ServerError::Store(StoreError::Conflict { .. })) => {
                                    tracing::debug!("engine pass raced an event; retried next pass");
                                }
                                Err(e) => tracing::warn!(error = %e, "engine pass"),
                            }
                        }));
                    }
                }
            }
        }
    }

    /// The swap whose swap or prepay invoice `ev` reports accepted.
    fn swap_of_accepted(&self, ev: &LnEvent) -> Option<SwapId> {
        let LnEvent::Invoice {
            payment_hash,
            state: HoldInvoiceState::Accepted { .. },
        } = ev
        else {
            return None;
        };
        let prepay_of = self
            .prepay_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(payment_hash)
            .copied();
        Some(prepay_of.unwrap_or_else(|| SwapId::from(*payment_hash)))
    }

    /// Reacts to one Lightning event: an HTLC accepted on a swap's or prepay's hold invoice
    /// steps that swap now (publication follows with [`Self::publish_pending`]).
    pub async fn on_ln_event(&self, ev: &LnEvent) -> Result<(), ServerError> {
        let Some(id) = self.swap_of_accepted(ev) else {
            return Ok(());
        };
        let tip = self.chain.tip().await.map_err(backend)?.height;
        self.on_accepted(id, Instant::now(), tip).await
    }

    async fn on_accepted(&self, id: SwapId, at: Instant, tip: u32) -> Result<(), ServerError> {
        let Some(r) = self.store.get(&id).await? else {
            return Ok(());
        };
        if r.kind != SwapKind::LoopOutServer || r.terminal {
            return Ok(());
        }
        self.accepted_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, at);
        let rec: LoopOutRecord =
            serde_json::from_value(r.state).map_err(|_| StoreError::Corrupt(format!("swap {id}")))?;
        self.step(id, r.version, rec, tip).await
    }

    async fn active(store: &dyn SwapStore) -> Result<Vec<(SwapId, i64, LoopOutRecord)>, ServerError> {
        Ok(runner::active(store).await?)
    }

    /// A stored loop-out (a swap of another kind is not found).
    pub async fn swap(&self, id: &SwapId) -> Result<(i64, LoopOutRecord), ServerError> {
        runner::load(&*self.store, id).await?.ok_or(ServerError::NotFound(*id))
    }

    /// The key that authorizes calls on swap `id` ([`eddy_core::auth`]): the key its client gave
    /// at creation — a loop-out's claim key, a loop-in's refund key. `None` for a seed-protocol
    /// swap (its client gave only a key hash; that protocol has no per-swap calls). One store
    /// read, nothing else: unknown ids answer [`ServerError::NotFound`] before any work.
    pub async fn swap_auth_key(&self, id: &SwapId) -> Result<Option<bitcoin::secp256k1::PublicKey>, ServerError> {
        let r = self.store.get(id).await?.ok_or(ServerError::NotFound(*id))?;
        let htlc: HtlcParams = match r.kind {
            SwapKind::LoopOutServer => {
                let rec: LoopOutRecord =
                    serde_json::from_value(r.state).map_err(|_| StoreError::Corrupt(format!("swap {id}")))?;
                return Ok(match rec.htlc.claim_key {
                    HtlcKey::Pubkey(k) => Some(k),
                    HtlcKey::Hash(_) => None,
                });
            }
            SwapKind::LoopInServer => {
                serde_json::from_value::<crate::loop_in::LoopInRecord>(r.state)
                    .map_err(|_| StoreError::Corrupt(format!("swap {id}")))?
                    .htlc
            }
            _ => return Err(ServerError::NotFound(*id)),
        };
        Ok(match htlc.refund_key {
            HtlcKey::Pubkey(k) => Some(k),
            HtlcKey::Hash(_) => None,
        })
    }

    /// The watchdog's check, each pass: are the Lightning node and the chain source in step
    /// ([`eddy_backends::health`])?
    async fn check_node(&self, tip: u32) {
        self.follow.check(&*self.ln, tip).await;
        self.metrics
            .set_node_health(self.follow.blocks_behind(), self.taking_swaps().is_ok());
    }

    /// How long the Lightning node has not followed the chain (`None`: it does).
    pub fn node_lagging_for(&self) -> Option<std::time::Duration> {
        self.follow.lagging_for()
    }

    /// The watchdog's state (for the admin API's `node info`).
    pub fn chain_follow(&self) -> Arc<eddy_backends::health::ChainFollow> {
        self.follow.clone()
    }

    /// Sets how long the node may lag before new swaps are refused (default
    /// [`eddy_core::constants::NODE_LAG_GRACE_SECS`]).
    pub fn set_node_lag_grace(&self, grace: std::time::Duration) {
        *self.node_lag_grace.lock().unwrap_or_else(|e| e.into_inner()) = grace;
    }

    /// Whether new swaps are taken: not while the Lightning node has not followed the chain
    /// for longer than the grace (a node that does not see blocks cannot act before HTLC
    /// deadlines: never take swaps blind).
    pub(crate) fn taking_swaps(&self) -> Result<(), ServerError> {
        let grace = *self.node_lag_grace.lock().unwrap_or_else(|e| e.into_inner());
        if self.follow.taking_swaps(grace) {
            Ok(())
        } else {
            Err(ServerError::Unavailable(
                "the Lightning node is not following the chain: not taking new swaps".into(),
            ))
        }
    }

    /// What a loop-out of `amount` costs (amount limits checked).
    pub fn quote(&self, amount: Amount) -> Result<eddy_core::fees::LoopOutQuote, ServerError> {
        self.cfg
            .fees
            .loop_out_quote(amount)
            .map_err(|e| ServerError::Invalid(e.to_string()))
    }

    /// Creates a loop-out: two hold invoices, the HTLC terms, persisted before answering.
    pub async fn create_loop_out(&self, req: &LoopOutRequest) -> Result<LoopOutOffer, ServerError> {
        let (offer, _) = self
            .create(
                req.amount,
                req.payment_hash,
                HtlcKey::Pubkey(req.claim_key),
                HtlcKind::P2trOut,
            )
            .await?;
        Ok(offer)
    }

    /// Seed 000's exchange (`POST /api/loop/out`): one hold invoice for the amount plus the fee
    /// (no prepay), a BIP199 P2WSH HTLC with the client's pubkey hash and a
    /// [`SEED_CSV_DELAY`]-block relative refund to the server's key. Returns the server's refund
    /// address (P2WPKH of its HTLC key, which the seed client puts in the script as a hash) and
    /// the invoice.
    pub async fn create_seed_loop_out(
        &self,
        amount: Amount,
        payment_hash: PaymentHash,
        claim_key_hash: bitcoin::PubkeyHash,
    ) -> Result<(bitcoin::Address, String), ServerError> {
        let (offer, server_key) = self
            .create(amount, payment_hash, HtlcKey::Hash(claim_key_hash), HtlcKind::Seed)
            .await?;
        let refund = bitcoin::Address::p2wpkh(&bitcoin::CompressedPublicKey(server_key), self.cfg.network);
        Ok((refund, offer.swap_invoice))
    }

    async fn create(
        &self,
        amount: Amount,
        payment_hash: PaymentHash,
        claim_key: HtlcKey,
        kind: HtlcKind,
    ) -> Result<(LoopOutOffer, bitcoin::secp256k1::PublicKey), ServerError> {
        self.taking_swaps()?;
        let seed = kind == HtlcKind::Seed;
        let mut quote = self
            .cfg
            .fees
            .loop_out_quote(amount)
            .map_err(|e| ServerError::Invalid(e.to_string()))?;
        if seed {
            // No prepay in the seed exchange: the whole fee is in the swap invoice.
            quote.swap_invoice_amount += quote.prepay;
            quote.prepay = Amount::ZERO;
        }
        let id = SwapId::from(payment_hash);
        if self.store.get(&id).await?.is_some() {
            return Err(ServerError::Duplicate(payment_hash));
        }
        // Capacity and liquidity count *paid* swaps only: an unpaid offer costs its maker
        // nothing, so it must not be able to hold a slot or reserve our coins (it expires in
        // `INVOICE_EXPIRY_SECS`); live unpaid offers have their own, larger budget.
        let active = Self::active(&*self.store).await?;
        let paid = active.iter().filter(|(_, _, r)| r.is_paid()).count();
        if paid >= self.cfg.max_active_swaps {
            return Err(ServerError::Unavailable(format!(
                "{paid} swaps in flight, the most this server takes"
            )));
        }
        // Seed-protocol offers (no prepay: free to make) have a budget of their own, so a seed
        // flood never takes the prepaid offers' budget (per-client budgets: the HTTP layer).
        let now = unix_now();
        let offers = active
            .iter()
            .filter(|(_, _, r)| r.is_live_offer(now) && (r.htlc.kind == HtlcKind::Seed) == seed)
            .count();
        let per_slot = if seed {
            eddy_core::constants::SEED_UNPAID_OFFERS_PER_SLOT
        } else {
            eddy_core::constants::UNPAID_OFFERS_PER_SLOT
        };
        if offers >= self.cfg.max_active_swaps * per_slot {
            return Err(ServerError::Unavailable(format!(
                "{offers} unpaid {}offers outstanding; retry in a few minutes",
                if seed { "seed-protocol " } else { "" }
            )));
        }
        // Every paid HTLC not yet published is a promise on our wallet.
        let promised: Amount = active
            .iter()
            .filter(|(_, _, r)| r.is_paid() && matches!(r.state, State::Created { .. } | State::Publishing { .. }))
            .map(|(_, _, r)| r.amount)
            .sum();
        let spendable = self.wallet_balance().await.spendable;
        let needed = amount + promised + self.cfg.onchain_reserve;
        if spendable < needed {
            return Err(ServerError::Unavailable(format!(
                "insufficient on-chain liquidity for {} sat (available {} sat)",
                amount.to_sat(),
                spendable
                    .to_sat()
                    .saturating_sub((promised + self.cfg.onchain_reserve).to_sat())
            )));
        }
        let tip = self.chain.tip().await.map_err(backend)?.height;
        let expiry = tip
            + if seed {
                SEED_LOOP_OUT_EXPIRY_DELTA
            } else {
                self.cfg.expiry_delta
            };
        let server_key = self.keys.public(KEY_PURPOSE, &id);
        if HtlcKey::Pubkey(server_key).pubkey_hash() == claim_key.pubkey_hash() {
            return Err(ServerError::Invalid("claim key equals the server key".into()));
        }
        let htlc = HtlcParams {
            kind,
            payment_hash,
            claim_key,
            refund_key: HtlcKey::Pubkey(server_key),
            // The seed kind's timeout is relative; its absolute bound is `expiry` below.
            timeout: if seed { SEED_CSV_DELAY } else { expiry },
        };
        let built = Htlc::new(htlc).map_err(|e| ServerError::Invalid(e.to_string()))?;
        let prepay_preimage = Preimage::random();
        // The held swap HTLC must stay settleable until E + SERVER_SETTLE_MARGIN; the node stops
        // settling `settle_deadline_delta` blocks before the HTLC's expiry.
        let final_cltv = (expiry - tip) + SERVER_SETTLE_MARGIN + self.ln.settle_deadline_delta() + FINAL_CLTV_SLACK;
        let swap_invoice = self
            .ln
            .create_hold_invoice(&HoldInvoiceRequest {
                payment_hash,
                amount_msat: quote.swap_invoice_amount.to_sat() * 1000,
                expiry_secs: INVOICE_EXPIRY_SECS,
                min_final_cltv_delta: u16::try_from(final_cltv).unwrap_or(u16::MAX),
                description: format!("eddy loop-out {}", amount.to_sat()),
            })
            .await
            .map_err(backend)?;
        let prepay_invoice = if seed {
            String::new()
        } else {
            self.ln
                .create_hold_invoice(&HoldInvoiceRequest {
                    payment_hash: prepay_preimage.payment_hash(),
                    amount_msat: quote.prepay.to_sat() * 1000,
                    expiry_secs: INVOICE_EXPIRY_SECS,
                    // Held until publication, which may happen as long as the window
                    // (`Terms::may_publish`) is open — until `E - MIN_BLOCKS_LEFT_AT_PUBLICATION`
                    // — and must then still be settleable (`SETTLE_LATENCY`); the machine also
                    // checks the accepted deadline and stops publishing past it (review #12).
                    min_final_cltv_delta: u16::try_from(
                        (expiry - tip).saturating_sub(MIN_BLOCKS_LEFT_AT_PUBLICATION)
                            + SETTLE_LATENCY
                            + self.ln.settle_deadline_delta()
                            + FINAL_CLTV_SLACK,
                    )
                    .unwrap_or(u16::MAX),
                    description: "eddy loop-out prepay".into(),
                })
                .await
                .map_err(backend)?
                .bolt11
        };
        let record = LoopOutRecord {
            htlc,
            amount,
            terms: Terms {
                swap_invoice_msat: quote.swap_invoice_amount.to_sat() * 1000,
                prepay_msat: quote.prepay.to_sat() * 1000,
                expiry,
                created_height: tip,
                relative_refund: seed.then_some(SEED_CSV_DELAY),
            },
            swap_invoice: swap_invoice.bolt11.clone(),
            prepay_invoice: prepay_invoice.clone(),
            prepay_preimage,
            funding: None,
            sweep_spk: None,
            refund: None,
            published_height: None,
            htlc_tx: None,
            htlc_txids: vec![],
            created_unix: Some(unix_now()),
            state: State::new(),
        };
        let state = serde_json::to_value(&record).map_err(|e| ServerError::Backend(e.to_string()))?;
        self.store
            .create(&NewSwap {
                id,
                kind: SwapKind::LoopOutServer,
                state_name: state_name(&record.state),
                terminal: false,
                state,
                event: json!({"event": "created", "amount_sat": amount.to_sat(), "expiry": expiry}),
            })
            .await
            .map_err(|e| match e {
                StoreError::Duplicate(_) => ServerError::Duplicate(payment_hash),
                e => ServerError::Store(e),
            })?;
        self.watcher
            .lock()
            .await
            .index_mut()
            .watch_script(swap_watch_id(&id), built.script_pubkey());
        self.prepay_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(prepay_preimage.payment_hash(), id);
        self.metrics.swap_created();
        tracing::info!(swap = %id, amount_sat = amount.to_sat(), expiry, "loop-out created");
        Ok((
            LoopOutOffer {
                swap_invoice: swap_invoice.bolt11,
                prepay_invoice,
                server_key,
                expiry,
                htlc_address: built.address(self.cfg.network).to_string(),
            },
            server_key,
        ))
    }

    /// Whether swap `id` is still a live unpaid offer — a loop-out whose invoices are unpaid
    /// and not expired, or a loop-in unfunded for fewer than
    /// [`eddy_core::constants::LOOP_IN_UNFUNDED_OFFER_BLOCKS`] — i.e. whether it still counts
    /// against its client's offer budget (the HTTP layer's). Unknown ids are not live.
    pub async fn is_live_offer(&self, id: &SwapId) -> Result<bool, ServerError> {
        let Some(r) = self.store.get(id).await? else {
            return Ok(false);
        };
        match r.kind {
            SwapKind::LoopOutServer => {
                let rec: LoopOutRecord =
                    serde_json::from_value(r.state).map_err(|_| StoreError::Corrupt(format!("swap {id}")))?;
                Ok(rec.is_live_offer(unix_now()))
            }
            SwapKind::LoopInServer => {
                let rec: crate::loop_in::LoopInRecord =
                    serde_json::from_value(r.state).map_err(|_| StoreError::Corrupt(format!("swap {id}")))?;
                Ok(rec.is_live_offer(self.tip().await?))
            }
            _ => Ok(false),
        }
    }

    /// The client pushes the preimage (before or instead of the server finding it on chain):
    /// before `E` the swap invoice is settled at once; after `E` the server keeps refunding
    /// and settles only for the client's claim confirmed on chain (see the state machine).
    /// Unknown hash → [`ServerError::NotFound`].
    pub async fn push_preimage(&self, preimage: &Preimage) -> Result<(), ServerError> {
        let id = SwapId::from(preimage.payment_hash());
        // The lookup comes before any work: an unknown hash costs no chain call.
        self.swap(&id).await?;
        let tip = self.chain.tip().await.map_err(backend)?.height;
        // A concurrent tick may move the swap between our read and write: re-read and retry.
        for _ in 0..3 {
            let (mut version, mut rec) = self.swap(&id).await?;
            match runner::apply(
                self,
                id,
                &mut version,
                &mut rec,
                Event::PreimageLearned(*preimage),
                &tip,
            )
            .await
            {
                Err(ServerError::Store(StoreError::Conflict { .. })) => continue,
                other => return other,
            }
        }
        Err(ServerError::Backend("swap kept changing; retry".into()))
    }

    /// Co-signs the client's key-path claim of the HTLC (MuSig2, one round trip: the client's
    /// nonce in, the server's nonce and partial signature out). Only once the server holds the
    /// preimage (it was pushed or seen), so giving up the refund path costs it nothing; only a
    /// one-input transaction spending this swap's HTLC; a fresh nonce for every request.
    pub async fn cosign_claim(
        &self,
        id: &SwapId,
        client_nonce: &PubNonceBytes,
        tx: &bitcoin::Transaction,
    ) -> Result<(PubNonceBytes, PartialSigBytes), ServerError> {
        let (_, rec) = self.swap(id).await?;
        if !matches!(rec.state, State::PreimageKnown { .. } | State::Succeeded) {
            return Err(ServerError::Invalid(
                "push the preimage before asking for a cooperative claim".into(),
            ));
        }
        let funding = rec
            .funding
            .ok_or_else(|| ServerError::Invalid("the HTLC is not published".into()))?;
        if tx.input.len() != 1 || tx.input[0].previous_output != funding {
            return Err(ServerError::Invalid(
                "the claim must spend exactly this swap's HTLC".into(),
            ));
        }
        let htlc = Htlc::new(rec.htlc).map_err(backend)?;
        let Htlc::Taproot(taproot) = &htlc else {
            return Err(ServerError::Invalid("not a taproot HTLC".into()));
        };
        let msg = eddy_core::tx::cooperative_sighash(tx, &htlc, rec.amount)
            .map_err(|e| ServerError::Invalid(e.to_string()))?;
        let key = self.keys.secret(KEY_PURPOSE, id);
        cosign(taproot, &key, msg, &id.0, client_nonce).map_err(|e| ServerError::Invalid(e.to_string()))
    }

    /// One pass over every active swap. Errors of one swap do not stop the others; the first
    /// is returned after all were tried.
    pub async fn tick(&self) -> Result<(), ServerError> {
        // The watchdog first: a failing chain watcher must not keep it from noticing a node
        // that stopped.
        let tip = self.chain.tip().await.map_err(backend)?.height;
        self.check_node(tip).await;
        {
            let mut w = self.watcher.lock().await;
            let events = w.sync().await.map_err(backend)?;
            self.log_deposits(&w, &events);
        }
        let tip = self.chain.tip().await.map_err(backend)?.height;
        let mut first_err = None;
        let active = Self::active(&*self.store).await?;
        self.metrics.set_active(active.len());
        for (id, version, rec) in active {
            if let Err(e) = self.step(id, version, rec, tip).await {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = self.tick_in(tip).await {
            first_err.get_or_insert(e);
        }
        if let Err(e) = self.publish_pending().await {
            first_err.get_or_insert(e);
        }
        if let Err(e) = self.keep_publications(tip).await {
            first_err.get_or_insert(e);
        }
        let seen = self.status_of(WALLET_WATCH_ID).await;
        let scan_from = self.wallet.scan_from(&seen, tip);
        let changed = *self.wallet_scan_from.lock().unwrap_or_else(|e| e.into_inner()) != Some(scan_from);
        if changed {
            self.store
                .set_meta(META_WALLET_SCAN_FROM, &scan_from.to_string())
                .await?;
            *self.wallet_scan_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(scan_from);
        }
        self.metrics
            .set_wallet_balance(self.wallet.balance(&seen).spendable.to_sat());
        first_err.map_or(Ok(()), Err)
    }

    /// Publishes every swap waiting in `Publishing` — all in **one** transaction from the swap
    /// wallet, outputs in swap order — after adopting any HTLC output already on chain or in the
    /// mempool (a crash between broadcast and persistence never publishes twice). Each swap is
    /// then moved on with [`Event::HtlcBroadcast`].
    pub async fn publish_pending(&self) -> Result<(), ServerError> {
        let _one = self.publishing.lock().await;
        // Adopt before publish, on every path (engine pass or Lightning event): the watcher
        // must have seen the chain and mempool *now*, or a publication broadcast but not
        // recorded (crash, store error) would be made a second time.
        let pending: Vec<_> = Self::active(&*self.store)
            .await?
            .into_iter()
            .filter(|(_, _, rec)| matches!(rec.state, State::Publishing { .. }))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        self.sync_chain().await?;
        let tip = self.chain.tip().await.map_err(backend)?.height;
        let mut batch = vec![];
        for (id, mut version, mut rec) in pending {
            let status = self.htlc_status(&id, &rec.htlc).await?;
            if let Some(tx) = rec.stored_tx() {
                // A publication of ours was written before its broadcast (write-ahead), and
                // maybe broadcast before a crash or an error: it is the one to follow while
                // it may confirm — never a second one beside it, never a cancel.
                if let Some(f) = rec.our_funding(&status).cloned() {
                    rec.funding = Some(f.outpoint);
                    let height = rec.published_height.unwrap_or(tip);
                    let e = Event::HtlcBroadcast {
                        txid: f.outpoint.txid,
                        height,
                    };
                    runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
                    continue;
                }
                if !self.publication_lost(&rec, &status, tip).await {
                    self.wallet.remember(&tx);
                    let txid = tx.compute_txid();
                    if let Err(e) = self.chain.broadcast(&tx).await {
                        tracing::warn!(swap = %id, %txid, error = %e, "stored HTLC publication refused; kept and bumped");
                    }
                    // Not seen before: its first broadcast may be now, so it earns the prepay
                    // only if now is inside the window.
                    let e = Event::HtlcBroadcast { txid, height: tip };
                    rec.published_height = Some(tip);
                    runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
                    continue;
                }
                // Its inputs are spent by a confirmed transaction that is not ours: it can
                // never confirm; a new publication (inside the window) is the only one.
                tracing::warn!(swap = %id, "stored HTLC publication can no longer confirm");
                forget_publication(&mut rec);
                runner::persist(self, &id, &mut version, &rec, json!({"event": "htlc_publication_lost"})).await?;
            }
            // No publication of ours: an output of a stranger (even of the exact amount, even
            // confirmed) is not ours and never taken for it. The machine decides whether a
            // publication is still in its window (else it cancels both invoices).
            runner::apply(
                self,
                id,
                &mut version,
                &mut rec,
                Event::NoHtlcOnChain { height: tip },
                &tip,
            )
            .await?;
            if matches!(rec.state, State::Publishing { .. }) {
                batch.push((id, version, rec));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mut outputs = vec![];
        for (_, _, rec) in &batch {
            let htlc = Htlc::new(rec.htlc).map_err(backend)?;
            outputs.push(bitcoin::TxOut {
                value: rec.amount,
                script_pubkey: htlc.script_pubkey(),
            });
        }
        let rate = self
            .chain
            .fee_rate(self.cfg.publish_conf_target)
            .await
            .map_err(backend)?;
        let seen = self.status_of(WALLET_WATCH_ID).await;
        // Unpaid offers reserve nothing, so paid swaps may together want more than the wallet
        // holds: publish the longest prefix (in swap order) that fits; the rest wait
        // for funds inside their publication window, then are canceled (nothing taken).
        let tx = loop {
            match self.wallet.pay(&seen, &outputs, rate) {
                Ok(tx) => break tx,
                Err(crate::wallet::WalletError::Insufficient { .. }) if outputs.len() > 1 => {
                    outputs.pop();
                    if let Some((id, _, _)) = batch.pop() {
                        tracing::warn!(swap = %id, "swap wallet cannot fund this HTLC now; waiting for funds");
                    }
                }
                Err(e) => return Err(ServerError::Unavailable(e.to_string())),
            }
        };
        let txid = tx.compute_txid();
        let tx_hex = bitcoin::consensus::encode::serialize_hex(&tx);
        // Write-ahead: every swap of the batch stores the signed transaction (and its output)
        // before it is broadcast, so a crash or a lost broadcast is followed by re-broadcasting
        // *this* transaction, never by a second publication or a cancel while it may confirm.
        let mut written = 0;
        let mut write_err = None;
        for (vout, (id, version, rec)) in batch.iter_mut().enumerate() {
            rec.funding = Some(OutPoint {
                txid,
                vout: vout as u32,
            });
            rec.published_height = Some(tip);
            rec.htlc_tx = Some(tx_hex.clone());
            rec.htlc_txids = vec![txid];
            let ev = json!({"event": "htlc_signed", "txid": txid.to_string()});
            if let Err(e) = runner::persist(self, id, version, rec, ev.clone()).await {
                write_err = Some(e);
                break;
            }
            written += 1;
        }
        if let Some(e) = write_err {
            // Not broadcast: take it back from the swaps that stored it (best effort; a swap
            // still holding it broadcasts it on its next pass, as after a crash).
            for (id, version, rec) in batch.iter_mut().take(written) {
                forget_publication(rec);
                let _ = runner::persist(self, id, version, rec, json!({"event": "htlc_publication_withdrawn"})).await;
            }
            self.wallet.forget(&txid);
            return Err(e);
        }
        eddy_store::crash_point("loop_out_server.publish.after_write");
        if let Err(e) = self.chain.broadcast(&tx).await {
            // Stored: the next pass broadcasts it again (or replaces it); its inputs stay ours.
            return Err(backend(e));
        }
        eddy_store::crash_point("loop_out_server.publish.after_broadcast");
        tracing::info!(%txid, htlcs = batch.len(), "HTLCs published");
        for (id, _, _) in &batch {
            let accepted = self.accepted_at.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            if let Some(t) = accepted {
                self.metrics.publish_latency(t.elapsed());
            }
        }
        // Record each publication and settle each prepay, all swaps at once.
        let steps = batch.into_iter().map(|(id, mut version, mut rec)| async move {
            runner::apply(
                self,
                id,
                &mut version,
                &mut rec,
                Event::HtlcBroadcast { txid, height: tip },
                &tip,
            )
            .await
        });
        futures::future::join_all(steps)
            .await
            .into_iter()
            .find(Result::is_err)
            .unwrap_or(Ok(()))
    }

    /// Keeps every unconfirmed HTLC publication on its way to a block: re-broadcast at every
    /// pass while missing from the mempool (evicted, lost); replaced (BIP125, from the swap
    /// wallet's change; one replacement covers every swap of the batch) when the node refuses it
    /// or when it waited [`HTLC_PUBLICATION_BUMP_BLOCKS`] unconfirmed (in the mempool or not)
    /// below the current estimate. Each swap
    /// of the batch then follows the replacement (or the original, whichever confirms: see the
    /// adoption in `step`).
    async fn keep_publications(&self, tip: u32) -> Result<(), ServerError> {
        let _one = self.publishing.lock().await;
        let active = Self::active(&*self.store).await?;
        // Each unconfirmed publication once: (tx, height it was published at, in mempool).
        let mut pubs: Vec<(bitcoin::Transaction, u32, bool)> = vec![];
        for (id, _, rec) in &active {
            let (Some(tx), true) = (rec.stored_tx(), rec.is_published()) else {
                continue;
            };
            let status = self.htlc_status(id, &rec.htlc).await?;
            if rec.our_funding(&status).is_some_and(|f| f.height.is_some()) {
                continue;
            }
            let txid = tx.compute_txid();
            if pubs.iter().any(|(t, _, _)| t.compute_txid() == txid) {
                continue;
            }
            // One that can never confirm is the swap's business (`step`: published again or
            // ended), not re-broadcast.
            if self.publication_lost(rec, &status, tip).await {
                continue;
            }
            let in_mempool = status.fundings.iter().any(|f| f.outpoint.txid == txid);
            pubs.push((tx, rec.published_height.unwrap_or(tip), in_mempool));
        }
        // Errors are per publication: one that fails never stops the others.
        let mut first_err = None;
        for (tx, published_at, in_mempool) in pubs {
            if let Err(e) = self.keep_publication(tx, published_at, in_mempool, tip).await {
                tracing::warn!(error = %e, "keeping an HTLC publication");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// One unconfirmed publication of [`Self::keep_publications`]: re-broadcast, replaced
    /// (write-ahead: every swap following it stores the replacement before its broadcast).
    async fn keep_publication(
        &self,
        tx: bitcoin::Transaction,
        published_at: u32,
        in_mempool: bool,
        tip: u32,
    ) -> Result<(), ServerError> {
        let txid = tx.compute_txid();
        // Ours (even after a restart): its inputs are never spent by another of our payments.
        self.wallet.remember(&tx);
        let target = self
            .chain
            .fee_rate(self.cfg.publish_conf_target)
            .await
            .map_err(backend)?;
        // The fee from the wallet's own view of its inputs (no `-txindex` needed).
        let seen = self.status_of(WALLET_WATCH_ID).await;
        let rate = self
            .wallet
            .fee_of(&seen, &tx)
            .map(|fee| bitcoin::FeeRate::from_sat_per_kwu(fee.to_sat() * 1000 / tx.weight().to_wu().max(1)));
        // Waited long enough below the current estimate (in the mempool or not).
        let stale = tip >= published_at + HTLC_PUBLICATION_BUMP_BLOCKS && rate.is_some_and(|r| target > r);
        let bump = if in_mempool {
            stale
        } else {
            match self.chain.broadcast(&tx).await {
                Ok(_) => stale,
                // Its inputs are gone: a replacement confirmed (adopted in `step`).
                Err(e) if e.is_missing_inputs() => false,
                Err(e) => {
                    tracing::warn!(%txid, error = %e, "HTLC publication refused on re-broadcast; replacing it");
                    true
                }
            }
        };
        if !bump {
            return Ok(());
        }
        let new = match self.wallet.bump(&seen, &tx, target) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(%txid, error = %e, "cannot replace the HTLC publication");
                return Ok(());
            }
        };
        let new_txid = new.compute_txid();
        let old_hex = bitcoin::consensus::encode::serialize_hex(&tx);
        let new_hex = bitcoin::consensus::encode::serialize_hex(&new);
        // Write-ahead: each swap following `tx` records the replacement as its own before it is
        // broadcast (a crash after the broadcast finds it ours). Only a funding that *is* the
        // replaced transaction's output is re-pointed.
        let mut following = vec![];
        for (id, mut version, mut rec) in Self::active(&*self.store).await? {
            if rec.htlc_tx.as_deref() != Some(old_hex.as_str()) {
                continue;
            }
            if !rec.htlc_txids.contains(&new_txid) {
                rec.htlc_txids.push(new_txid);
            }
            if let Some(f) = rec.funding.filter(|f| f.txid == txid) {
                rec.funding = Some(OutPoint {
                    txid: new_txid,
                    vout: f.vout,
                });
            }
            rec.htlc_tx = Some(new_hex.clone());
            let ev = json!({"event": "htlc_replacement_signed", "txid": new_txid.to_string()});
            runner::persist(self, &id, &mut version, &rec, ev.clone()).await?;
            following.push((id, version, rec));
        }
        if let Err(e) = self.chain.broadcast(&new).await {
            tracing::warn!(%txid, replacement = %new_txid, error = %e, "HTLC publication replacement refused");
            // Back to the original for the swaps that stored the replacement.
            for (id, mut version, mut rec) in following {
                if rec.funding.is_some_and(|f| f.txid == new_txid) {
                    rec.funding = rec.funding.map(|f| OutPoint { txid, vout: f.vout });
                }
                rec.htlc_tx = Some(old_hex.clone());
                let ev = json!({"event": "htlc_replacement_refused", "txid": new_txid.to_string()});
                runner::persist(self, &id, &mut version, &rec, ev.clone()).await?;
            }
            return Ok(());
        }
        self.wallet.replaced(&txid, &new);
        tracing::info!(%txid, replacement = %new_txid, "HTLC publication replaced at a higher fee");
        Ok(())
    }

    /// Whether our publication for `rec` can no longer confirm: an input of the stored
    /// transaction is spent by a *confirmed* transaction that is not one of ours (only then —
    /// missing from our own mempool is not enough: miners may hold it). A record written before
    /// publications were stored (no transaction to judge) counts its output lost once the
    /// watcher has not seen it for [`HTLC_PUBLICATION_BUMP_BLOCKS`] blocks after publication.
    async fn publication_lost(&self, rec: &LoopOutRecord, status: &WatchStatus, tip: u32) -> bool {
        if rec.our_funding(status).is_some_and(|f| f.height.is_some()) {
            return false;
        }
        let Some(tx) = rec.stored_tx() else {
            let old_enough = rec
                .published_height
                .is_none_or(|h| tip >= h + HTLC_PUBLICATION_BUMP_BLOCKS);
            return rec.funding.is_some() && rec.our_funding(status).is_none() && old_enough;
        };
        let ours = rec.our_txids();
        let wallet = self.status_of(WALLET_WATCH_ID).await;
        tx.input.iter().any(|i| {
            wallet
                .spends
                .iter()
                .any(|s| s.outpoint == i.previous_output && s.height.is_some() && !ours.contains(&s.txid))
        })
    }

    /// Applies `event`, persists, performs the actions.
    async fn step(&self, id: SwapId, mut version: i64, mut rec: LoopOutRecord, tip: u32) -> Result<(), ServerError> {
        let hash = rec.htlc.payment_hash;
        // After a publication inside the window the prepay is ours: settle it whenever it is
        // still only held (an HTLC adopted after the window released it: `CancelPrepay`) —
        // before the swap invoice's settlement can make the swap final, or a settlement lost
        // to a crash (found by the soak's per-swap accounting: the swap succeeded, the prepay
        // was failed back) is never made again.
        let published_before = rec.is_published();
        let earned = rec.published_height.is_none_or(|h| rec.terms.may_publish(h));
        if published_before && earned && rec.terms.prepay_msat > 0 {
            let prepay_hash = rec.prepay_preimage.payment_hash();
            if let Ok(HoldInvoiceState::Accepted { .. }) = self.ln.hold_invoice_state(&prepay_hash).await {
                self.ln
                    .settle_hold_invoice(&rec.prepay_preimage)
                    .await
                    .map_err(backend)?;
            }
        }
        // Lightning side.
        match &rec.state {
            State::Created { .. } => {
                let swap = self.ln.hold_invoice_state(&hash).await.map_err(backend)?;
                if let HoldInvoiceState::Accepted { amount_msat, .. } = &swap {
                    self.accepted_at
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(id)
                        .or_insert_with(Instant::now);
                    if let Some(deadline) = swap.settle_deadline() {
                        let e = Event::SwapAccepted {
                            amount_msat: *amount_msat,
                            claim_deadline: deadline,
                        };
                        runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
                    }
                }
                let prepay = if rec.terms.prepay_msat == 0 {
                    HoldInvoiceState::Open
                } else {
                    self.ln
                        .hold_invoice_state(&rec.prepay_preimage.payment_hash())
                        .await
                        .map_err(backend)?
                };
                if let (HoldInvoiceState::Accepted { amount_msat, .. }, Some(claim_deadline)) =
                    (&prepay, prepay.settle_deadline())
                {
                    let e = Event::PrepayAccepted {
                        amount_msat: *amount_msat,
                        claim_deadline,
                    };
                    runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
                }
            }
            State::PreimageKnown { .. } => match self.ln.hold_invoice_state(&hash).await.map_err(backend)? {
                HoldInvoiceState::Settled { .. } => {
                    runner::apply(self, id, &mut version, &mut rec, Event::SwapSettled, &tip).await?;
                }
                // Failed back (expired, or canceled): the preimage can no longer be paid for,
                // so the HTLC is still the server's to refund.
                HoldInvoiceState::Canceled => {
                    runner::apply(self, id, &mut version, &mut rec, Event::SwapInvoiceGone, &tip).await?;
                }
                _ => {}
            },
            _ => {}
        }
        // `Publishing` swaps (also after a crash between persisting it and the broadcast) are
        // published together by `publish_pending`.
        let published = rec.is_published();
        // Chain side.
        let status = self.htlc_status(&id, &rec.htlc).await?;
        // A replacement of the publication (or the original, if it won) is the one to follow:
        // only transactions of ours, never a stranger's output of the same amount.
        if published {
            if let (Some(funding), Some(f)) = (rec.funding, rec.our_funding(&status).cloned()) {
                if f.outpoint != funding && f.height.is_some() {
                    rec.funding = Some(f.outpoint);
                    let ev = json!({"event": "htlc_adopted", "txid": f.outpoint.txid.to_string()});
                    runner::persist(self, &id, &mut version, &rec, ev.clone()).await?;
                }
            }
            if matches!(rec.state, State::Published { .. } | State::Refunding { .. })
                && self.publication_lost(&rec, &status, tip).await
            {
                // Nothing of ours can confirm: publish again inside the window, else end.
                tracing::warn!(swap = %id, "HTLC publication lost (its inputs spent by a confirmed conflict)");
                forget_publication(&mut rec);
                return runner::apply(self, id, &mut version, &mut rec, Event::PublicationLost, &tip).await;
            }
            if let Some(height) = rec.our_funding(&status).and_then(|f| f.height) {
                runner::apply(self, id, &mut version, &mut rec, Event::HtlcConfirmed { height }, &tip).await?;
            }
        }
        if let Some(funding) = rec.funding {
            for spend in status.spends.iter().filter(|s| s.outpoint == funding) {
                if let Some(p) = find_preimage(&spend.witness, &hash) {
                    // Before `E` the preimage alone settles; after it, only the claim confirmed.
                    runner::apply(self, id, &mut version, &mut rec, Event::PreimageLearned(p), &tip).await?;
                    let confs = WatchStatus::confirmations(spend.height, tip);
                    runner::apply(
                        self,
                        id,
                        &mut version,
                        &mut rec,
                        Event::HtlcClaimed { preimage: p, confs },
                        &tip,
                    )
                    .await?;
                } else if rec.refund.as_ref().is_some_and(|r| r.all.contains(&spend.txid)) {
                    let confs = WatchStatus::confirmations(spend.height, tip);
                    runner::apply(self, id, &mut version, &mut rec, Event::RefundConfirmed { confs }, &tip).await?;
                }
            }
        }
        runner::apply(self, id, &mut version, &mut rec, Event::Block { height: tip }, &tip).await
    }

    async fn refund(&self, id: SwapId, version: &mut i64, rec: &mut LoopOutRecord) -> Result<(), ServerError> {
        let Some(outpoint) = rec.funding else {
            return Ok(());
        };
        if rec.sweep_spk.is_none() {
            // Refunds go back into the swap wallet, ready for the next swaps.
            rec.sweep_spk = Some(self.wallet.script_pubkey().clone());
            runner::persist(self, &id, version, rec, json!({"event": "sweep_address"})).await?;
        }
        let dest = rec
            .sweep_spk
            .clone()
            .ok_or_else(|| ServerError::Backend("no sweep address".into()))?;
        let htlc = Htlc::new(rec.htlc).map_err(backend)?;
        let input = HtlcInput {
            outpoint,
            value: rec.amount,
            htlc: htlc.clone(),
            path: SpendPath::Refund,
        };
        let probe = build_spend(vec![input.clone()], dest.clone(), FeeSpec::Absolute(Amount::ZERO)).map_err(backend)?;
        let estimate = self.chain.fee_rate(2).await.map_err(backend)?;
        let rate = next_sweep_fee_rate(&SweepStep {
            estimate,
            previous: rec
                .refund
                .as_ref()
                .map(|r| bitcoin::FeeRate::from_sat_per_kwu(r.fee_rate_kwu)),
            // The refund is not racing a deadline of ours; the client may still claim until it
            // confirms, which is what the bumps are for.
            blocks_left: u32::MAX,
            weight: probe.predicted_weight,
            value: rec.amount,
            max_fee: rec.amount / 5,
            dust: dest.minimal_non_dust(),
        });
        let mut spend = build_spend(vec![input], dest, FeeSpec::Rate(rate)).map_err(backend)?;
        let key = self.keys.secret(KEY_PURPOSE, &id);
        spend.sign(0, &key).map_err(backend)?;
        let signed = spend.finalize().map_err(backend)?;
        let txid = signed.tx.compute_txid();
        let mut info = rec.refund.clone().unwrap_or(RefundInfo {
            txid,
            fee_rate_kwu: 0,
            all: vec![],
        });
        if info.all.last() != Some(&txid) {
            info.txid = txid;
            info.fee_rate_kwu = rate.to_sat_per_kwu();
            if !info.all.contains(&txid) {
                info.all.push(txid);
            }
            rec.refund = Some(info);
            // Persist the refund before broadcasting it, so its confirmations are recognised
            // after a crash.
            runner::persist(
                self,
                &id,
                version,
                rec,
                json!({"event": "refund_built", "txid": txid.to_string()}),
            )
            .await?;
        }
        match self.chain.broadcast(&signed.tx).await {
            Ok(_) => Ok(()),
            // Not final yet, or a claim already spent the HTLC: the next block tells.
            Err(e) if e.is_non_final() || e.is_missing_inputs() => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }
}

/// Drops a publication that can never confirm (or was never broadcast) from `rec`.
fn forget_publication(rec: &mut LoopOutRecord) {
    rec.htlc_tx = None;
    rec.htlc_txids.clear();
    rec.funding = None;
    rec.published_height = None;
    rec.refund = None;
}

eddy_store::record!(
    LoopOutRecord,
    LoopOutServerMachine,
    SwapKind::LoopOutServer,
    "loop-out transition",
    |event, _tip| event_json(event)
);

/// The loop-out's side effects on the server: settling and canceling its invoices, refunding
/// the HTLC (publication happens in batches: [`LoopOutServer::publish_pending`]).
#[async_trait::async_trait]
impl runner::Effects<LoopOutRecord> for LoopOutServer {
    /// The tip the pass runs at (the machine reads it too).
    type Ctx = u32;
    type Error = ServerError;

    fn store(&self) -> &dyn SwapStore {
        &*self.store
    }

    fn view<'a>(&self, tip: &'a u32) -> &'a u32 {
        tip
    }

    async fn persisted(&self, id: &SwapId, rec: &LoopOutRecord) {
        if rec.state.is_terminal() {
            self.unwatch(id).await;
        }
    }

    fn finished(&self, id: &SwapId, rec: &LoopOutRecord) {
        self.metrics.swap_finished(&state_name(&rec.state));
        self.accepted_at.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    async fn act(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut LoopOutRecord,
        action: Action,
        _tip: &u32,
    ) -> Result<(), ServerError> {
        match action {
            // Published in a batch by `publish_pending` (the caller's pass ends with it).
            Action::PublishHtlc => Ok(()),
            Action::SettlePrepay if rec.terms.prepay_msat == 0 => Ok(()),
            Action::SettlePrepay => self.ln.settle_hold_invoice(&rec.prepay_preimage).await.map_err(backend),
            Action::CancelPrepay if rec.terms.prepay_msat == 0 => Ok(()),
            Action::CancelPrepay => self
                .ln
                .cancel_hold_invoice(&rec.prepay_preimage.payment_hash())
                .await
                .map_err(backend),
            Action::SettleSwap(p) => self.ln.settle_hold_invoice(&p).await.map_err(backend),
            Action::CancelInvoices => {
                let a = self.ln.cancel_hold_invoice(&rec.htlc.payment_hash).await;
                if rec.terms.prepay_msat == 0 {
                    return a.map_err(backend);
                }
                let b = self.ln.cancel_hold_invoice(&rec.prepay_preimage.payment_hash()).await;
                a.and(b).map_err(backend)
            }
            Action::CancelSwap => self
                .ln
                .cancel_hold_invoice(&rec.htlc.payment_hash)
                .await
                .map_err(backend),
            Action::BroadcastRefund => self.refund(id, version, rec).await,
        }
    }
}

fn event_json(e: &Event) -> serde_json::Value {
    match e {
        Event::SwapAccepted {
            amount_msat,
            claim_deadline,
        } => json!({"event": "swap_accepted", "amount_msat": amount_msat, "claim_deadline": claim_deadline}),
        Event::PrepayAccepted {
            amount_msat,
            claim_deadline,
        } => json!({"event": "prepay_accepted", "amount_msat": amount_msat, "claim_deadline": claim_deadline}),
        Event::Block { height } => json!({"event": "block", "height": height}),
        Event::HtlcBroadcast { txid, height } => {
            json!({"event": "htlc_broadcast", "txid": txid.to_string(), "height": height})
        }
        Event::NoHtlcOnChain { height } => json!({"event": "no_htlc_on_chain", "height": height}),
        Event::SwapInvoiceGone => json!({"event": "swap_invoice_gone"}),
        Event::HtlcConfirmed { height } => json!({"event": "htlc_confirmed", "height": height}),
        Event::PublicationLost => json!({"event": "publication_lost"}),
        // Never the preimage itself.
        Event::HtlcClaimed { confs, .. } => json!({"event": "htlc_claimed", "confs": confs}),
        // Never the preimage itself.
        Event::PreimageLearned(_) => json!({"event": "preimage_learned"}),
        Event::SwapSettled => json!({"event": "swap_settled"}),
        Event::RefundConfirmed { confs } => json!({"event": "refund_confirmed", "confs": confs}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_failing_held_htlcs_back_too_early_refuses_to_start() {
        // LND <= 0.20 (12), LND >= 0.21 (18), LDK (39), the bound itself: fine.
        for delta in [0, 12, 18, 39, eddy_core::constants::MAX_SETTLE_DEADLINE_DELTA] {
            assert!(check_settle_deadline_delta(delta).is_ok(), "{delta}");
        }
        let e = check_settle_deadline_delta(eddy_core::constants::MAX_SETTLE_DEADLINE_DELTA + 1).expect_err("too big");
        assert!(
            matches!(&e, ServerError::Invalid(m) if m.contains("142") && m.contains("141") && m.contains("holdexpirydelta")),
            "{e}"
        );
    }
}
