//! The swap server ("loop service"): [`SwapServer`] puts the shared parts ([`ServerCore`]) and
//! the engine of each swap kind ([`LoopOutEngine`], [`LoopInEngine`]) together, drives them
//! ([`SwapServer::run`]: Lightning events and new blocks) and answers what spans both kinds —
//! which key authorizes a swap's calls, whether an id is a live offer, the slots in use.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::ScriptBuf;
use eddy_backends::{ChainSource, LightningNode, LnEvent, WatchId};
use eddy_core::htlc::{HtlcKey, HtlcParams};
use eddy_core::types::SwapId;
use eddy_engine::runner;
use eddy_store::{SeedKeys, StoreError, SwapKind, SwapStore};
use tokio::sync::Mutex;

use crate::loop_in::{LoopInCreate, LoopInEngine, ServerLoopIn};
use crate::loop_out::{LoopOutEngine, ServerLoopOut};
use crate::metrics::Metrics;
use crate::server_core::{
    backend, check_settle_deadline_delta, unix_now, ServerConfig, ServerCore, ServerError, META_WALLET_SCAN_FROM,
};
use crate::wallet::{SwapWallet, WALLET_WATCH_ID};

/// How often [`SwapServer::run`] asks the chain for a new tip.
pub const TIP_POLL: Duration = Duration::from_millis(100);
/// How often [`SwapServer::run`] ticks when nothing happens (retries failed actions).
pub const IDLE_TICK: Duration = Duration::from_secs(2);

/// A background rescan's progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RescanStatus {
    /// The first block scanned again.
    pub from_height: u32,
    /// Still scanning.
    pub running: bool,
    /// Why it failed, once it did (the server is then as before it).
    pub error: Option<String>,
}

/// The swap server: the shared parts and one engine per swap kind.
pub struct SwapServer {
    pub(crate) core: Arc<ServerCore>,
    /// The loop-outs.
    pub loop_out: LoopOutEngine,
    /// The loop-ins.
    pub loop_in: LoopInEngine,
    /// One wallet rescan at a time (it runs beside the engines' passes; see `rescan_wallet`).
    pub(crate) rescanning: Mutex<()>,
    /// The last background rescan (`spawn_rescan`).
    pub(crate) rescan_status: std::sync::Mutex<Option<RescanStatus>>,
}

impl SwapServer {
    /// Starts the server: the chain watcher rescans from the oldest active swap's creation (or
    /// the swap wallet's scan height), and every active swap's HTLC is watched again.
    pub async fn new(
        cfg: ServerConfig,
        ln: Arc<dyn LightningNode>,
        chain: Arc<dyn ChainSource>,
        store: Arc<dyn SwapStore>,
        keys: SeedKeys,
    ) -> Result<SwapServer, ServerError> {
        check_settle_deadline_delta(ln.settle_deadline_delta())?;
        let tip = chain.tip().await.map_err(backend)?;
        let wallet_from = store
            .get_meta(META_WALLET_SCAN_FROM)
            .await?
            .and_then(|v| v.parse::<u32>().ok());
        if wallet_from.is_none() {
            store.set_meta(META_WALLET_SCAN_FROM, &tip.height.to_string()).await?;
        }
        let wallet = SwapWallet::new(&keys, cfg.network);
        let swaps = Self::watches_in(&*store).await?;
        let watcher = ServerCore::watcher_for(&chain, wallet.script_pubkey(), wallet_from, tip.height, &swaps).await?;
        let core = Arc::new(ServerCore {
            cfg,
            ln,
            chain,
            store,
            keys,
            watcher: Mutex::new(watcher),
            follow: Arc::new(eddy_backends::health::ChainFollow::new()),
            node_lag_grace: std::sync::Mutex::new(Duration::from_secs(eddy_core::constants::NODE_LAG_GRACE_SECS)),
            metrics: Arc::new(Metrics::new()),
            wallet,
            publisher: Default::default(),
            logged_deposits: std::sync::Mutex::new(Default::default()),
            wallet_scan_from: std::sync::Mutex::new(wallet_from),
        });
        Ok(SwapServer {
            loop_out: LoopOutEngine::new(core.clone()).await?,
            loop_in: LoopInEngine::new(core.clone()),
            core,
            rescanning: Mutex::new(()),
            rescan_status: std::sync::Mutex::new(None),
        })
    }

    /// The shared parts.
    pub fn core(&self) -> &ServerCore {
        &self.core
    }

    /// Every active swap's watch (both kinds): its id, the height it was created at, its HTLC
    /// script.
    pub(crate) async fn watches_in(store: &dyn SwapStore) -> Result<Vec<(WatchId, u32, ScriptBuf)>, ServerError> {
        let mut out = LoopOutEngine::watches_in(store).await?;
        out.extend(LoopInEngine::watches_in(store).await?);
        Ok(out)
    }

    /// Drives the engine until `shutdown` turns true: a Lightning event (an HTLC accepted on
    /// one of our invoices) steps that swap at once — publication latency is what the client's
    /// payment waits for — a new tip or [`IDLE_TICK`] of quiet runs a full [`Self::tick`].
    /// Errors are logged and retried on the next pass; every step is idempotent.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        // A forwarding task stamps each Lightning event as it arrives, so the publish latency
        // counts the time an event waits behind others too.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<(Instant, LnEvent)>>();
        let ln = self.core.ln.clone();
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
        if let Err(e) = self.resume().await {
            tracing::warn!(error = %e, "resuming the swaps");
        }
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
                // A claim round co-signed by every client: a pass now broadcasts it.
                _ = self.loop_in.claim_ready() => {
                    last_tick = Instant::now() - IDLE_TICK;
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
                        if let Some(id) = self.loop_out.swap_of_accepted(&ev) {
                            let e = swaps.entry(id).or_insert(at);
                            *e = (*e).max(at);
                        }
                    }
                    let tip_now = self.core.chain.tip().await.ok().map(|t| t.height);
                    if let Some(tip_now) = tip_now {
                        let steps = swaps.into_iter().map(|(id, at)| self.loop_out.on_accepted(id, at, tip_now));
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
                    if let Err(e) = self.loop_out.publish_pending().await {
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
                    let now_tip = self.core.chain.tip().await.ok().map(|t| t.hash);
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

    /// One pass over every active swap of both kinds, then the publications and the swap
    /// wallet's scan height. Errors of one swap do not stop the others; the first is returned
    /// after all were tried. One pass at a time: [`SwapServer::run`] never starts a second
    /// while one runs (the loop-in claim rounds are changed by passes only), and a caller that
    /// drives passes itself (a test, a tool) must not run them beside `run`.
    pub async fn tick(&self) -> Result<(), ServerError> {
        let core = &self.core;
        // The watchdog first: a failing chain watcher must not keep it from noticing a node
        // that stopped.
        let tip = core.tip().await?;
        core.check_node(tip).await;
        core.sync_chain().await?;
        let tip = core.tip().await?;
        let mut first_err = None;
        if let Err(e) = self.loop_out.tick(tip).await {
            first_err.get_or_insert(e);
        }
        if let Err(e) = self.loop_in.tick(tip).await {
            first_err.get_or_insert(e);
        }
        if let Err(e) = self.loop_out.publish_pending().await {
            first_err.get_or_insert(e);
        }
        if let Err(e) = self.loop_out.keep_publications(tip).await {
            first_err.get_or_insert(e);
        }
        let seen = core.status_of(WALLET_WATCH_ID).await;
        let scan_from = core.wallet.scan_from(&seen, tip);
        let changed = *core.wallet_scan_from.lock().unwrap_or_else(|e| e.into_inner()) != Some(scan_from);
        if changed {
            core.store
                .set_meta(META_WALLET_SCAN_FROM, &scan_from.to_string())
                .await?;
            *core.wallet_scan_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(scan_from);
        }
        core.metrics
            .set_wallet_balance(core.wallet.balance(&seen).spendable.to_sat());
        first_err.map_or(Ok(()), Err)
    }

    /// What a restart owes every active swap before the first pass ([`runner::resume`]: the
    /// machines' `resume`), then the publications it handed over.
    pub async fn resume(&self) -> Result<(), ServerError> {
        let tip = self.core.tip().await?;
        // The wallet learns every stored publication first: a new batch never spends coins an
        // evicted one of ours still spends.
        self.loop_out.remember_publications().await?;
        let out = runner::resume::<ServerLoopOut, _>(&self.loop_out, &tip).await;
        let inn = runner::resume::<ServerLoopIn, _>(&self.loop_in, &tip).await;
        let published = self.loop_out.publish_pending().await;
        out.and(inn).and(published)
    }

    /// Reacts to one Lightning event: an HTLC accepted on a swap's or prepay's hold invoice
    /// steps that swap now (publication follows with [`LoopOutEngine::publish_pending`]).
    pub async fn on_ln_event(&self, ev: &LnEvent) -> Result<(), ServerError> {
        let Some(id) = self.loop_out.swap_of_accepted(ev) else {
            return Ok(());
        };
        let tip = self.core.tip().await?;
        self.loop_out.on_accepted(id, Instant::now(), tip).await
    }

    /// Creates a loop-in (the loop-in engine checks it), counting the slots the loop-outs hold too.
    pub async fn create_loop_in(&self, req: &LoopInCreate) -> Result<eddy_core::validate::LoopInOffer, ServerError> {
        let loop_outs = self.loop_out.active_count().await?;
        self.loop_in.create(req, loop_outs).await
    }

    /// Creates a loop-in paying anyone's `invoice` (Boltz's submarine swap), priced by `quote`
    /// from the invoice's amount; the same checks and slots as [`SwapServer::create_loop_in`];
    /// with a `reserved` HTLC, for its hash and with its key and `E`.
    pub async fn create_paying_loop_in(
        &self,
        invoice: &str,
        refund_key: bitcoin::secp256k1::PublicKey,
        quote: impl FnOnce(bitcoin::Amount) -> Result<eddy_core::fees::LoopInQuote, ServerError>,
        reserved: Option<&crate::loop_in::Reservation>,
    ) -> Result<eddy_core::validate::LoopInOffer, ServerError> {
        let loop_outs = self.loop_out.active_count().await?;
        self.loop_in
            .create_paying(invoice, refund_key, quote, loop_outs, reserved)
            .await
    }

    /// Reserves a submarine swap's HTLC for an invoice of `payment_hash` to come
    /// ([`crate::loop_in::Reservation`]); also the server's key for it.
    pub async fn reserve_paying_loop_in(
        &self,
        payment_hash: eddy_core::types::PaymentHash,
        refund_key: bitcoin::secp256k1::PublicKey,
    ) -> Result<(crate::loop_in::Reservation, bitcoin::secp256k1::PublicKey), ServerError> {
        self.loop_in.reserve_paying(payment_hash, refund_key).await
    }

    /// The key that authorizes calls on swap `id` ([`eddy_core::auth`]): the key its client gave
    /// at creation — a loop-out's claim key, a loop-in's refund key. `None` for a seed-protocol
    /// swap (its client gave only a key hash; that protocol has no per-swap calls). One store
    /// read, nothing else: unknown ids answer [`ServerError::NotFound`] before any work.
    pub async fn swap_auth_key(&self, id: &SwapId) -> Result<Option<bitcoin::secp256k1::PublicKey>, ServerError> {
        let r = self.core.store.get(id).await?.ok_or(ServerError::NotFound(*id))?;
        let htlc: HtlcParams = match r.kind {
            SwapKind::LoopOutServer => {
                let rec: ServerLoopOut =
                    serde_json::from_value(r.state).map_err(|_| StoreError::Corrupt(format!("swap {id}")))?;
                return Ok(match rec.htlc.claim_key {
                    HtlcKey::Pubkey(k) => Some(k),
                    HtlcKey::Hash(_) => None,
                });
            }
            SwapKind::LoopInServer => {
                serde_json::from_value::<ServerLoopIn>(r.state)
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

    /// Whether swap `id` is still a live unpaid offer — a loop-out whose invoices are unpaid
    /// and not expired, or a loop-in unfunded for fewer than
    /// [`eddy_core::constants::LOOP_IN_UNFUNDED_OFFER_BLOCKS`] — i.e. whether it still counts
    /// against its client's offer budget (the HTTP layer's). Unknown ids are not live.
    pub async fn is_live_offer(&self, id: &SwapId) -> Result<bool, ServerError> {
        let Some(r) = self.core.store.get(id).await? else {
            return Ok(false);
        };
        match r.kind {
            SwapKind::LoopOutServer => {
                let rec: ServerLoopOut =
                    serde_json::from_value(r.state).map_err(|_| StoreError::Corrupt(format!("swap {id}")))?;
                Ok(rec.is_live_offer(unix_now()))
            }
            SwapKind::LoopInServer => {
                let rec: ServerLoopIn =
                    serde_json::from_value(r.state).map_err(|_| StoreError::Corrupt(format!("swap {id}")))?;
                Ok(rec.is_live_offer(self.core.tip().await?))
            }
            _ => Ok(false),
        }
    }

    /// The network swaps run on.
    pub fn network(&self) -> bitcoin::Network {
        self.core.network()
    }

    /// Where to deposit the on-chain funds the server locks into HTLCs.
    pub fn wallet_address(&self) -> &bitcoin::Address {
        self.core.wallet_address()
    }

    /// The swap wallet's balance as of the last chain sync ([`Self::tick`] syncs).
    pub async fn wallet_balance(&self) -> crate::wallet::WalletBalance {
        self.core.wallet_balance().await
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.core.metrics()
    }

    /// Number of chain watches (the swap wallet's and every active swap's).
    pub async fn watch_count(&self) -> usize {
        self.core.watch_count().await
    }

    /// How long the Lightning node has not followed the chain (`None`: it does).
    pub fn node_lagging_for(&self) -> Option<Duration> {
        self.core.node_lagging_for()
    }

    /// The watchdog's state (for the admin API's `node info`).
    pub fn chain_follow(&self) -> Arc<eddy_backends::health::ChainFollow> {
        self.core.chain_follow()
    }

    /// Sets how long the node may lag before new swaps are refused (default
    /// [`eddy_core::constants::NODE_LAG_GRACE_SECS`]).
    pub fn set_node_lag_grace(&self, grace: Duration) {
        self.core.set_node_lag_grace(grace)
    }
}
