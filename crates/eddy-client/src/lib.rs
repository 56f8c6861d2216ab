//! # eddy-client
//!
//! The swap client's engine: [`loop_out::LoopOutClient`] runs the `eddy-core` client state
//! machine against a Lightning node, a chain source and a swap server reached through
//! [`SwapServerApi`] (HTTP in the daemon; in-process in tests and the demo), persisting every
//! transition before acting on it.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod http;
pub mod loop_in;
pub mod loop_out;

use async_trait::async_trait;
use eddy_core::types::Preimage;
use eddy_core::validate::{LoopOutCreate, LoopOutOffer};

/// The client's seed file in its data dir.
pub const SEED_FILE: &str = "client-seed";

/// How many swaps' steps a pass runs at once (each waits mostly on the server, the chain or
/// the node; a bound keeps a node with thousands of swaps from opening thousands of requests).
pub const CONCURRENT_STEPS: usize = 16;

/// A call to the swap server, given up after
/// [`eddy_core::constants::SERVER_CALL_TIMEOUT_SECS`]: every server call is best effort and
/// retried at the next pass, so a slow server never holds up a pass for longer.
pub(crate) async fn bounded<T>(call: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    let limit = eddy_core::constants::SERVER_CALL_TIMEOUT_SECS;
    tokio::time::timeout(std::time::Duration::from_secs(limit), call)
        .await
        .unwrap_or_else(|_| Err(format!("the swap server did not answer within {limit} s")))
}

/// One async lock per swap, shared by every call that acts on a swap (creating and funding or
/// paying it, abandoning it) and by the engine's step of it. Whoever holds a swap's lock
/// re-reads its record from the store before deciding anything, so no two callers ever act on
/// the same stored state: the runner cannot fund a loop-in that `loop_in()` is funding, read a
/// payment as failed while `loop_out()`'s own send is still retrying, or see a swap `abandon()`
/// is ending half-way.
#[derive(Default)]
pub struct SwapLocks {
    locks:
        std::sync::Mutex<std::collections::HashMap<eddy_core::types::SwapId, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl SwapLocks {
    /// Waits for swap `id`'s lock. Entries nobody holds or waits for are dropped on the way
    /// (only the map refers to them), so the map stays as small as the swaps in use.
    pub async fn lock(&self, id: &eddy_core::types::SwapId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.retain(|k, v| k == id || std::sync::Arc::strong_count(v) > 1);
            map.entry(*id).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Whether swap `id`'s lock is held now (by anyone).
    pub fn is_locked(&self, id: &eddy_core::types::SwapId) -> bool {
        let map = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(id).is_some_and(|l| l.try_lock().is_err())
    }
}

/// What the client needs from a swap server.
#[async_trait]
pub trait SwapServerApi: Send + Sync {
    /// Asks for a loop-out offer.
    async fn loop_out(&self, req: &LoopOutCreate) -> Result<LoopOutOffer, String>;

    /// Tells the server the preimage (so it settles at once); best effort.
    async fn push_preimage(&self, preimage: &Preimage) -> Result<(), String>;

    /// Asks the server to co-sign a key-path claim: our nonce and the unsigned claim in, the
    /// server's nonce and partial signature out.
    async fn cosign_claim(
        &self,
        id: &eddy_core::types::SwapId,
        nonce: &eddy_core::musig::PubNonceBytes,
        tx: &bitcoin::Transaction,
    ) -> Result<(eddy_core::musig::PubNonceBytes, eddy_core::musig::PartialSigBytes), String>;

    /// The server's fee for a loop-in of `amount`.
    async fn loop_in_fee(&self, _amount: bitcoin::Amount) -> Result<bitcoin::Amount, String> {
        Err("this server adapter does not do loop-in".into())
    }

    /// Asks for a loop-in: the HTLC to fund.
    async fn loop_in(
        &self,
        _req: &eddy_core::validate::LoopInCreate,
    ) -> Result<eddy_core::validate::LoopInOffer, String> {
        Err("this server adapter does not do loop-in".into())
    }

    /// The server's state name for a swap (`refundable` tells a loop-in client to refund).
    async fn swap_state(&self, _id: &eddy_core::types::SwapId) -> Result<String, String> {
        Err("this server adapter does not report swap states".into())
    }

    /// A loop-in's cooperative claim as the server offers it: its nonce and the unsigned claim.
    async fn claim_request(
        &self,
        _id: &eddy_core::types::SwapId,
    ) -> Result<(eddy_core::musig::PubNonceBytes, bitcoin::Transaction), String> {
        Err("this server adapter does not offer cooperative claims".into())
    }

    /// Our nonce and partial signature for that claim.
    async fn claim_cosign(
        &self,
        _id: &eddy_core::types::SwapId,
        _nonce: &eddy_core::musig::PubNonceBytes,
        _partial: &eddy_core::musig::PartialSigBytes,
    ) -> Result<(), String> {
        Err("this server adapter does not offer cooperative claims".into())
    }

    /// Asks the server to co-sign a loop-in's cooperative refund: our nonce and the unsigned
    /// refund in, its nonce and partial signature out.
    async fn cosign_refund(
        &self,
        _id: &eddy_core::types::SwapId,
        _nonce: &eddy_core::musig::PubNonceBytes,
        _tx: &bitcoin::Transaction,
    ) -> Result<(eddy_core::musig::PubNonceBytes, eddy_core::musig::PartialSigBytes), String> {
        Err("this server adapter does not co-sign refunds".into())
    }
}

pub use http::HttpSwapServer;
pub use loop_out::{ClientConfig, ClientError, ClientLoopOut, LoopOutClient, SwapOptions};

/// The chain watcher a client engine starts with: it rescans from the block after `from` (the
/// earliest block any active swap's HTLC could be in; the tip when there is none, never above
/// it) and watches every HTLC in `htlcs`.
pub(crate) async fn start_watcher(
    chain: std::sync::Arc<dyn eddy_backends::ChainSource>,
    from: Option<u32>,
    htlcs: impl IntoIterator<Item = (eddy_core::types::SwapId, eddy_core::htlc::HtlcParams)>,
) -> Result<eddy_backends::ChainWatcher, ClientError> {
    let err = |e: &dyn std::fmt::Display| ClientError::Backend(e.to_string());
    let tip = chain.tip().await.map_err(|e| err(&e))?.height;
    let mut watcher = eddy_backends::ChainWatcher::starting_after(chain, from.map_or(tip, |f| f.min(tip)))
        .await
        .map_err(|e| err(&e))?;
    for (id, params) in htlcs {
        let htlc = eddy_core::htlc::Htlc::new(params).map_err(|e| err(&e))?;
        watcher
            .index_mut()
            .watch_script(eddy_backends::swap_watch_id(&id), htlc.script_pubkey());
    }
    Ok(watcher)
}

/// What `watcher` has seen of swap `id`'s HTLC: only outputs paying exactly the script rebuilt
/// from the swap's stored `params` (and their spends). Every engine reads its swaps' chain state
/// through this, so no output paying another script is ever taken for the HTLC.
pub(crate) fn htlc_status(
    watcher: &eddy_backends::ChainWatcher,
    id: &eddy_core::types::SwapId,
    params: &eddy_core::htlc::HtlcParams,
) -> Result<eddy_backends::WatchStatus, ClientError> {
    let spk = eddy_core::htlc::Htlc::new(*params)
        .map_err(|e| ClientError::Backend(e.to_string()))?
        .script_pubkey();
    Ok(watcher
        .index()
        .status(eddy_backends::swap_watch_id(id))
        .map(|st| st.paying(&spk))
        .unwrap_or_default())
}

/// Drives an engine until `shutdown` turns true: `tick` runs on every new tip, on every
/// Lightning event (a payment settling or failing) and after [`loop_out::IDLE_TICK`] of quiet.
/// Errors are logged and retried on the next pass (every step is idempotent).
pub async fn drive<F, Fut>(
    ln: std::sync::Arc<dyn eddy_backends::LightningNode>,
    chain: std::sync::Arc<dyn eddy_backends::ChainSource>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    tick: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    use loop_out::{IDLE_TICK, TIP_POLL};
    let mut events = ln.subscribe();
    let mut tip = None;
    let mut poll = tokio::time::interval(TIP_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = std::time::Instant::now() - IDLE_TICK;
    loop {
        let mut now = false;
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
            ev = events.recv() => match ev {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => now = true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    events = ln.subscribe();
                    tokio::time::sleep(TIP_POLL).await;
                }
            },
            _ = poll.tick() => {
                let t = chain.tip().await.ok().map(|t| t.hash);
                if t != tip || last.elapsed() >= IDLE_TICK {
                    tip = t;
                    now = true;
                }
            }
        }
        if now {
            last = std::time::Instant::now();
            if let Err(e) = tick().await {
                tracing::warn!(error = %e, "client engine pass");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SwapLocks;
    use eddy_core::types::SwapId;

    /// Review finding 2 (lock discipline): while a call holds a swap's lock (a loop-out's own
    /// send, retrying), a step of that swap waits for it; other swaps' steps do not.
    #[tokio::test]
    async fn a_swap_lock_serialises_one_swap_only() {
        let locks = std::sync::Arc::new(SwapLocks::default());
        let (a, b) = (SwapId([1; 32]), SwapId([2; 32]));
        let held = locks.lock(&a).await;
        assert!(locks.is_locked(&a) && !locks.is_locked(&b));
        // Another swap's step runs at once.
        let other = tokio::time::timeout(std::time::Duration::from_millis(100), locks.lock(&b)).await;
        assert!(other.is_ok(), "another swap is not held up");
        drop(other);
        // This swap's step waits until the call is done.
        let waiting = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _g = locks.lock(&a).await;
                std::time::Instant::now()
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the step waited");
        let released = std::time::Instant::now();
        drop(held);
        let ran = waiting.await.expect("step");
        assert!(ran >= released);
        assert!(!locks.is_locked(&a));
    }
}
