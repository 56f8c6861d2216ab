//! # eddy-client
//!
//! The swap client's engine: [`loop_out::LoopOutClient`] runs the `eddy-core` client state
//! machine against a Lightning node, a chain source and a swap server reached through
//! [`SwapServerApi`] (HTTP in the daemon; in-process in tests and the demo), persisting every
//! transition before acting on it.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod boltz;
pub mod config;
pub mod http;
pub mod loop_in;
pub mod loop_out;

use async_trait::async_trait;
pub use eddy_core::api::{ApiCallError, ErrorKind, SwapState};
use eddy_core::musig::{PartialSigBytes, PubNonceBytes};
use eddy_core::types::{Preimage, SwapId};
use eddy_core::validate::{LoopInCreate, LoopInOffer, LoopOutCreate, LoopOutOffer};

/// The client's seed file in its data dir.
pub const SEED_FILE: &str = "client-seed";

/// How many swaps' steps a pass runs at once (each waits mostly on the server, the chain or
/// the node; a bound keeps a node with thousands of swaps from opening thousands of requests).
pub const CONCURRENT_STEPS: usize = 16;

/// A call to the swap server, given up after
/// [`eddy_core::constants::SERVER_CALL_TIMEOUT_SECS`]: every server call is best effort and
/// retried at the next pass, so a slow server never holds up a pass for longer.
pub(crate) async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, ApiCallError>>,
) -> Result<T, ApiCallError> {
    let limit = eddy_core::constants::SERVER_CALL_TIMEOUT_SECS;
    tokio::time::timeout(std::time::Duration::from_secs(limit), call)
        .await
        .unwrap_or_else(|_| Err(ApiCallError::Timeout(format!("no answer within {limit} s"))))
}

/// The server's half of a cooperative sweep of swap `1`: the key-path claim of a loop-out, the
/// key-path refund of a loop-in (each call bounded by `SERVER_CALL_TIMEOUT_SECS`).
pub(crate) enum ServerCosigns<'a> {
    /// A loop-out's claim (the preimage travels with it to a provider that asks for it).
    Claim(&'a dyn LoopOutApi, SwapId, Preimage),
    /// A loop-in's refund.
    Refund(&'a dyn LoopInApi, SwapId),
}

#[async_trait]
impl eddy_engine::sweep::Cosigner for ServerCosigns<'_> {
    async fn cosign(
        &self,
        nonce: &eddy_core::musig::PubNonceBytes,
        tx: &bitcoin::Transaction,
        index: usize,
        prevouts: &[bitcoin::TxOut],
    ) -> Result<(PubNonceBytes, PartialSigBytes), String> {
        match self {
            ServerCosigns::Claim(server, id, preimage) => {
                bounded(server.cosign_claim(id, preimage, nonce, tx, index, prevouts)).await
            }
            ServerCosigns::Refund(_, _) if index != 0 || tx.input.len() != 1 => {
                return Err("a refund is co-signed alone".into())
            }
            ServerCosigns::Refund(server, id) => bounded(server.cosign_refund(id, nonce, tx)).await,
        }
        .map_err(|e| e.to_string())
    }

    fn batches(&self) -> bool {
        match self {
            ServerCosigns::Claim(server, ..) => server.batches_claims(),
            ServerCosigns::Refund(..) => false,
        }
    }
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

/// The loop-out half of a swap server, as the loop-out engine calls it. Errors are the wire's
/// ([`ApiCallError`]): the server's refusal with its kind, or no answer.
#[async_trait]
pub trait LoopOutApi: Send + Sync {
    /// The server's terms (an adapter that cannot tell keeps the default:
    /// [`ApiCallError::NotOffered`]).
    async fn terms(&self) -> Result<eddy_core::api::Terms, ApiCallError> {
        Err(ApiCallError::NotOffered("terms"))
    }

    /// What a loop-out of `amount` (the HTLC value) costs off-chain.
    async fn quote_loop_out(&self, _amount: bitcoin::Amount) -> Result<eddy_core::api::Quote, ApiCallError> {
        Err(ApiCallError::NotOffered("quotes"))
    }

    /// Asks for a loop-out offer.
    async fn loop_out(&self, req: &LoopOutCreate) -> Result<LoopOutOffer, ApiCallError>;

    /// Tells the server the preimage (so it settles at once); best effort.
    async fn push_preimage(&self, preimage: &Preimage) -> Result<(), ApiCallError>;

    /// Asks the server to co-sign a key-path claim: our nonce and the unsigned claim in (with
    /// the preimage, which a Boltz provider asks for in the same request), the server's nonce
    /// and partial signature out.
    async fn cosign_claim(
        &self,
        id: &SwapId,
        preimage: &Preimage,
        nonce: &PubNonceBytes,
        tx: &bitcoin::Transaction,
        index: usize,
        prevouts: &[bitcoin::TxOut],
    ) -> Result<(PubNonceBytes, PartialSigBytes), ApiCallError>;

    /// Whether [`LoopOutApi::cosign_claim`] co-signs one input of a batched claim (several
    /// swaps' HTLCs in one transaction; `index` and `prevouts` name the input and every
    /// output spent). Without it, each claim is its own transaction.
    fn batches_claims(&self) -> bool {
        false
    }
}

/// The cooperative claim of a loop-in that a server asks the client to co-sign.
#[derive(Clone, Debug)]
pub enum ClaimToSign {
    /// The claim itself (Eddy's `/v1`): the client checks which output it spends.
    Transaction {
        /// The unsigned claim (a batch: the server claims several loop-ins at once).
        tx: bitcoin::Transaction,
        /// The input to co-sign.
        index: usize,
        /// Every input's prevout, in input order (`None`: a claim of one input offered
        /// without them).
        prevouts: Option<Vec<bitcoin::TxOut>>,
    },
    /// Only the key-path sighash of its one input, with the preimage (Boltz API v2's
    /// submarine claim): the client cannot see what it spends, so it signs only while the
    /// HTLC's address holds nothing but the output the server paid for.
    Sighash {
        /// The preimage the server learned by paying.
        preimage: Preimage,
        /// The BIP-341 key-path sighash.
        sighash: [u8; 32],
    },
}

/// The loop-in half of a swap server, as the loop-in engine calls it (an adapter that does not
/// serve loop-ins keeps the defaults: [`ApiCallError::NotOffered`]).
#[async_trait]
pub trait LoopInApi: Send + Sync {
    /// The server's fee for a loop-in of `amount`.
    async fn loop_in_fee(&self, _amount: bitcoin::Amount) -> Result<bitcoin::Amount, ApiCallError> {
        Err(ApiCallError::NotOffered("loop-in"))
    }

    /// Asks for a loop-in: the HTLC to fund.
    async fn loop_in(&self, _req: &LoopInCreate) -> Result<LoopInOffer, ApiCallError> {
        Err(ApiCallError::NotOffered("loop-in"))
    }

    /// The server's state of a swap ([`SwapState::Refundable`] tells a loop-in client to refund).
    async fn swap_state(&self, _id: &SwapId) -> Result<SwapState, ApiCallError> {
        Err(ApiCallError::NotOffered("swap states"))
    }

    /// A loop-in's cooperative claim as the server offers it: its nonce and what to sign.
    async fn claim_request(&self, _id: &SwapId) -> Result<(PubNonceBytes, ClaimToSign), ApiCallError> {
        Err(ApiCallError::NotOffered("cooperative claims"))
    }

    /// Our nonce and partial signature for that claim.
    async fn claim_cosign(
        &self,
        _id: &SwapId,
        _nonce: &PubNonceBytes,
        _partial: &PartialSigBytes,
    ) -> Result<(), ApiCallError> {
        Err(ApiCallError::NotOffered("cooperative claims"))
    }

    /// Asks the server to co-sign a loop-in's cooperative refund: our nonce and the unsigned
    /// refund in, its nonce and partial signature out.
    async fn cosign_refund(
        &self,
        _id: &SwapId,
        _nonce: &PubNonceBytes,
        _tx: &bitcoin::Transaction,
    ) -> Result<(PubNonceBytes, PartialSigBytes), ApiCallError> {
        Err(ApiCallError::NotOffered("cooperative refunds"))
    }
}

/// A whole swap server: both halves (what the daemon's HTTP client is).
pub trait SwapServerApi: LoopOutApi + LoopInApi {}

impl<T: LoopOutApi + LoopInApi + ?Sized> SwapServerApi for T {}

/// What a client engine runs on besides its half of the swap server's API: its settings, the
/// Lightning node, the chain source, the store, the swap keys, a chain watcher of its own
/// swaps' HTLCs and its per-swap locks.
pub(crate) struct ClientParts {
    /// Settings.
    pub(crate) cfg: ClientConfig,
    /// The Lightning node.
    pub(crate) ln: std::sync::Arc<dyn eddy_backends::LightningNode>,
    /// The chain source.
    pub(crate) chain: std::sync::Arc<dyn eddy_backends::ChainSource>,
    /// The store.
    pub(crate) store: std::sync::Arc<dyn eddy_store::SwapStore>,
    /// The swap keys.
    pub(crate) keys: eddy_store::SeedKeys,
    /// The chain watcher of this engine's swaps.
    pub(crate) watcher: tokio::sync::Mutex<eddy_backends::ChainWatcher>,
    /// One lock per swap ([`SwapLocks`]).
    pub(crate) locks: SwapLocks,
}

impl ClientParts {
    /// The parts of an engine of `R`'s records, its chain watcher following every active
    /// swap's HTLC from the earliest block any of them could be in: `max_delta` blocks before
    /// the earliest expiry (`htlc_of` gives a record's expiry and HTLC).
    pub(crate) async fn start<R: eddy_engine::runner::Record>(
        cfg: ClientConfig,
        ln: std::sync::Arc<dyn eddy_backends::LightningNode>,
        chain: std::sync::Arc<dyn eddy_backends::ChainSource>,
        store: std::sync::Arc<dyn eddy_store::SwapStore>,
        keys: eddy_store::SeedKeys,
        max_delta: u32,
        htlc_of: impl Fn(&R) -> (u32, eddy_core::htlc::HtlcParams),
    ) -> Result<ClientParts, ClientError> {
        let active = eddy_engine::runner::active::<R>(&*store).await?;
        let htlcs: Vec<_> = active.iter().map(|(id, _, r)| (*id, htlc_of(r))).collect();
        let from = htlcs.iter().map(|(_, (e, _))| e.saturating_sub(max_delta + 1)).min();
        let watcher = start_watcher(chain.clone(), from, htlcs.into_iter().map(|(id, (_, h))| (id, h))).await?;
        Ok(ClientParts {
            cfg,
            ln,
            chain,
            store,
            keys,
            watcher: tokio::sync::Mutex::new(watcher),
            locks: SwapLocks::default(),
        })
    }

    /// Has the chain watcher follow swap `id`'s HTLC script from now on.
    pub(crate) async fn watch(&self, id: SwapId, script: bitcoin::ScriptBuf) {
        self.watcher
            .lock()
            .await
            .index_mut()
            .watch_script(eddy_backends::swap_watch_id(&id), script);
    }

    /// Swap `id` of `R`'s kind as stored, with its version (of another kind: not found).
    pub(crate) async fn load<R: eddy_engine::runner::Record>(&self, id: &SwapId) -> Result<(i64, R), ClientError> {
        eddy_engine::runner::load(&*self.store, id)
            .await?
            .ok_or(ClientError::NotFound(*id))
    }
}

/// What one pass of a client engine needs, so that the pass is written once for both engines
/// ([`pass`]): its parts and the step of one swap.
#[async_trait]
pub(crate) trait ClientEngine: eddy_engine::runner::Effects<Self::Rec, Error = ClientError> {
    /// The engine's records.
    type Rec: eddy_engine::runner::Record + 'static;
    /// What the engine runs on.
    fn parts(&self) -> &ClientParts;
    /// Steps swap `id` (stored as `rec` at `version`) at `tip`, its lock held.
    async fn step_one(&self, id: SwapId, version: i64, rec: Self::Rec, tip: u32) -> Result<(), ClientError>;

    /// After every swap's step of a pass: what waits for all of them (a batched claim).
    async fn after_pass(&self, _tip: u32) -> Result<(), ClientError> {
        Ok(())
    }
}

/// One pass over every active swap of `engine`'s kind. The swaps' steps run concurrently: a
/// slow answer from the server (each call bounded by `SERVER_CALL_TIMEOUT_SECS`) holds up only
/// its own swap.
pub(crate) async fn pass<E: ClientEngine>(engine: &E) -> Result<(), ClientError> {
    use futures::StreamExt;
    let parts = engine.parts();
    parts.watcher.lock().await.sync().await.map_err(backend)?;
    let tip = parts.chain.tip().await.map_err(backend)?.height;
    let active = eddy_engine::runner::active::<E::Rec>(engine.store()).await?;
    let results: Vec<Result<(), ClientError>> = futures::stream::iter(active)
        .map(|(id, _, _)| step_locked(engine, id, tip))
        .buffer_unordered(CONCURRENT_STEPS)
        .collect()
        .await;
    let after = engine.after_pass(tip).await;
    results.into_iter().collect::<Result<(), _>>().and(after)
}

/// The step of swap `id` under its lock, on its record as stored now (a call — `loop_out()`,
/// `loop_in()`, `abandon()` — may have moved it since the pass listed it).
async fn step_locked<E: ClientEngine>(engine: &E, id: SwapId, tip: u32) -> Result<(), ClientError> {
    use eddy_core::sm::Machine;
    use eddy_engine::runner::Record;
    let _guard = engine.parts().locks.lock(&id).await;
    let (version, rec) = engine.parts().load::<E::Rec>(&id).await?;
    if <<E::Rec as Record>::M as Machine>::is_terminal(rec.state()) {
        return Ok(());
    }
    engine.step_one(id, version, rec, tip).await
}

pub(crate) use config::backend;
pub use config::{ClientConfig, ClientError};
pub use http::HttpSwapServer;
pub use loop_out::{ClientLoopOut, LoopOutClient, SwapOptions};

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
