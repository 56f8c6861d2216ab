//! The parts every swap kind of the server shares ([`ServerCore`]): its settings, the store,
//! the Lightning node, the chain source and the one chain watcher that follows every swap's
//! HTLC and the swap wallet, the wallet itself (and the lock that makes its publications one at
//! a time), the node watchdog and the metrics. The engines of the two swap kinds
//! (`LoopOutEngine`, `LoopInEngine`) each hold it; neither knows the other, and this module
//! knows neither. `SwapServer` puts them together.

use std::sync::Arc;

use bitcoin::{Amount, Network, ScriptBuf};
use eddy_backends::{swap_watch_id, ChainSource, ChainWatcher, LightningNode, WatchId, WatchStatus};
use eddy_core::fees::FeePolicy;
use eddy_core::htlc::{Htlc, HtlcParams};
use eddy_core::types::{PaymentHash, SwapId};
use eddy_store::{StoreError, SwapStore};

use tokio::sync::Mutex;

use eddy_store::SeedKeys;

use crate::metrics::Metrics;

use crate::wallet::{SwapWallet, WALLET_WATCH_ID};

/// Store meta key: the height from which the swap wallet's coins must be rescanned. Set to the
/// tip at the first start (deposits made before it are found only by setting this lower, e.g.
/// `eddy server --wallet-rescan-from`), then kept at the oldest unspent coin's height.
pub const META_WALLET_SCAN_FROM: &str = "swap_wallet.scan_from";

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
    /// How long a held loop-out waits for others to share its HTLC transaction (zero: published
    /// at once). Never past the publication rules: see [`crate::publisher::publication_due`].
    pub publish_batch_window: std::time::Duration,
    /// How long a paid loop-in's claim waits for others to share one claim transaction (zero:
    /// claimed in the pass). Never near `E`: see
    /// [`eddy_core::constants::LOOP_IN_CLAIM_WINDOW_FORCE_BLOCKS`].
    pub claim_batch_window: std::time::Duration,
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

impl From<eddy_engine::sweep::SweepError> for ServerError {
    fn from(e: eddy_engine::sweep::SweepError) -> Self {
        backend(e)
    }
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

pub(crate) fn backend(e: impl std::fmt::Display) -> ServerError {
    ServerError::Backend(e.to_string())
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the server's swap kinds share.
pub struct ServerCore {
    pub(crate) cfg: ServerConfig,
    pub(crate) ln: Arc<dyn LightningNode>,
    pub(crate) chain: Arc<dyn ChainSource>,
    pub(crate) store: Arc<dyn SwapStore>,
    pub(crate) keys: SeedKeys,
    pub(crate) watcher: Mutex<ChainWatcher>,
    /// The watchdog: since when the Lightning node has not followed the chain (and the grace).
    pub(crate) follow: Arc<eddy_backends::health::ChainFollow>,
    pub(crate) node_lag_grace: std::sync::Mutex<std::time::Duration>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) wallet: SwapWallet,
    /// The publisher's list of swaps to publish, and the one-payment-at-a-time lock of the
    /// swap wallet (see `crate::publisher`).
    pub(crate) publisher: Publisher,
    /// Deposits logged (outpoint, confirmed): each is logged once seen and once confirmed.
    pub(crate) logged_deposits: std::sync::Mutex<std::collections::HashSet<(bitcoin::OutPoint, bool)>>,
    /// Last persisted rescan height of the wallet.
    pub(crate) wallet_scan_from: std::sync::Mutex<Option<u32>>,
}

impl ServerCore {
    /// The fee-rate estimate for publishing from the swap wallet (HTLCs, withdrawals).
    pub(crate) async fn publish_rate(&self) -> Result<bitcoin::FeeRate, ServerError> {
        self.chain.fee_rate(self.cfg.publish_conf_target).await.map_err(backend)
    }

    /// A chain watcher following everything the server must see: the swap wallet (from
    /// `wallet_from`, or the tip) and every active swap's HTLC in `swaps` (each from the height
    /// it was created at).
    pub(crate) async fn watcher_for(
        chain: &Arc<dyn ChainSource>,
        wallet_spk: &ScriptBuf,
        wallet_from: Option<u32>,
        tip: u32,
        swaps: &[(WatchId, u32, ScriptBuf)],
    ) -> Result<ChainWatcher, ServerError> {
        let from = swaps
            .iter()
            .map(|(_, created, _)| created.saturating_sub(1))
            .chain(wallet_from)
            .min()
            .unwrap_or(tip)
            .min(tip);
        let mut watcher = ChainWatcher::starting_after(chain.clone(), from)
            .await
            .map_err(backend)?;
        watcher.index_mut().watch_script(WALLET_WATCH_ID, wallet_spk.clone());
        for (id, _, spk) in swaps {
            watcher.index_mut().watch_script(*id, spk.clone());
        }
        Ok(watcher)
    }

    /// The kind of swap `id`, if the store has it (a failed read counts as unknown).
    pub(crate) async fn kind_of(&self, id: &SwapId) -> Option<eddy_store::SwapKind> {
        self.store.get(id).await.ok().flatten().map(|r| r.kind)
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

    /// The swap wallet's balance as of the last chain sync (each pass of the server syncs).
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

    /// The watchdog's check, each pass: are the Lightning node and the chain source in step
    /// ([`eddy_backends::health`])?
    pub(crate) async fn check_node(&self, tip: u32) {
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

/// What the server's publisher holds: the swaps handed over for publication and the lock that
/// lets one payment from the swap wallet be made at a time.
#[derive(Default)]
pub struct Publisher {
    /// One publication (one batch transaction, a replacement, a withdrawal) at a time.
    lock: Mutex<()>,
    /// Swaps handed over by their machine's `Action::PublishHtlc`, not yet taken.
    wanted: std::sync::Mutex<std::collections::BTreeSet<SwapId>>,
}

impl Publisher {
    /// Hands swap `id` over for the next publication.
    pub fn want(&self, id: SwapId) {
        self.wanted.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
    }

    /// The swaps handed over and not yet taken.
    pub fn wanted(&self) -> std::collections::BTreeSet<SwapId> {
        self.wanted.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes `ids` off the list (a publication looked at each of them).
    pub(crate) fn taken(&self, ids: &std::collections::BTreeSet<SwapId>) {
        self.wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id| !ids.contains(id));
    }

    /// The wallet's one-payment-at-a-time lock.
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }
}
