//! The generic swap runner: what every engine does with its swaps' records, written once for
//! the four of them. It loads a swap of the engine's kind, lists the active ones or all of
//! them, applies an event through the swap's state machine ([`eddy_core::sm::Machine`]),
//! persists the new state with the event (version-guarded: a write from a stale read fails)
//! *before* any action, and hands the actions to the engine's [`Effects`]. An engine is then
//! its effects — paying, publishing, sweeping, co-signing — and the events it reads from the
//! world. At start, [`resume`] runs again what a restart owes each active swap.

use async_trait::async_trait;
use eddy_core::sm::Machine;
use eddy_core::types::SwapId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use eddy_store::{ListFilter, StoreError, SwapKind, SwapRecord, SwapStore};

/// The terms of `R`'s machine.
pub type TermsOf<R> = <<R as Record>::M as Machine>::Terms;
/// The state of `R`'s machine.
pub type StateOf<R> = <<R as Record>::M as Machine>::State;
/// The events of `R`'s machine.
pub type EventOf<R> = <<R as Record>::M as Machine>::Event;
/// The actions of `R`'s machine.
pub type ActionOf<R> = <<R as Record>::M as Machine>::Action;
/// What `R`'s machine reads of the world.
pub type ViewOf<R> = <<R as Record>::M as Machine>::View;

/// An engine's stored record of one swap: its machine's terms and state, and whatever else the
/// engine keeps with them (transactions it made, options, what it saw).
pub trait Record: Serialize + DeserializeOwned + Send + Sync {
    /// The swap's state machine.
    type M: Machine;
    /// The store's kind for these records: a record of another kind is never read as this one.
    const KIND: SwapKind;
    /// What the log says of a transition ("loop-out transition").
    const TRANSITION_LOG: &'static str;
    /// The machine's terms.
    fn terms(&self) -> &TermsOf<Self>;
    /// The machine's state.
    fn state(&self) -> &StateOf<Self>;
    /// Replaces the machine's state.
    fn set_state(&mut self, state: StateOf<Self>);
    /// The event as the swap's event log keeps it, given the state it led to (never a secret:
    /// no preimage, no key).
    fn event_json(event: &EventOf<Self>, view: &ViewOf<Self>, next: &StateOf<Self>) -> serde_json::Value;
}

/// Implements [`Record`] for an engine's record type whose machine's terms and state are its
/// `terms` and `state` fields: `record!(Type, Machine, SwapKind::X, "log line", |event, view|
/// json)`, or `|event, view, next| json` for a log entry that names what the event led to.
#[macro_export]
macro_rules! record {
    ($rec:ty, $machine:ty, $kind:expr, $log:literal, |$event:ident, $view:pat_param| $json:expr) => {
        $crate::record!($rec, $machine, $kind, $log, |$event, $view, _next| $json);
    };
    ($rec:ty, $machine:ty, $kind:expr, $log:literal, |$event:ident, $view:pat_param, $next:pat_param| $json:expr) => {
        impl $crate::runner::Record for $rec {
            type M = $machine;
            const KIND: ::eddy_store::SwapKind = $kind;
            const TRANSITION_LOG: &'static str = $log;

            fn terms(&self) -> &$crate::runner::TermsOf<Self> {
                &self.terms
            }

            fn state(&self) -> &$crate::runner::StateOf<Self> {
                &self.state
            }

            fn set_state(&mut self, state: $crate::runner::StateOf<Self>) {
                self.state = state;
            }

            fn event_json(
                $event: &$crate::runner::EventOf<Self>,
                $view: &$crate::runner::ViewOf<Self>,
                $next: &$crate::runner::StateOf<Self>,
            ) -> serde_json::Value {
                $json
            }
        }
    };
}

/// What an engine does for its swaps of kind `R`: the side effects of the machine's actions,
/// and the hooks the runner calls around its writes.
#[async_trait]
pub trait Effects<R: Record>: Send + Sync {
    /// What the engine's actions need besides the record (the tip, the chain view).
    type Ctx: Send + Sync;
    /// The engine's error.
    type Error: From<StoreError> + Send;
    /// The engine's store.
    fn store(&self) -> &dyn SwapStore;
    /// The machine's view of the world within `ctx`.
    fn view<'a>(&self, ctx: &'a Self::Ctx) -> &'a ViewOf<R>;
    /// After every write of a record (a terminal one needs no more watching).
    async fn persisted(&self, _id: &SwapId, _rec: &R) {}
    /// Once, when a transition made the swap final.
    fn finished(&self, _id: &SwapId, _rec: &R) {}
    /// Performs one action of swap `id` (idempotent: after a crash it may run again).
    async fn act(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut R,
        action: ActionOf<R>,
        ctx: &Self::Ctx,
    ) -> Result<(), Self::Error>;
}

/// Swap `id` as stored, with its version: `None` when unknown or of another kind.
pub async fn load<R: Record>(store: &dyn SwapStore, id: &SwapId) -> Result<Option<(i64, R)>, StoreError> {
    let Some(r) = store.get(id).await? else {
        return Ok(None);
    };
    if r.kind != R::KIND {
        return Ok(None);
    }
    let rec = serde_json::from_value(r.state).map_err(|_| StoreError::Corrupt(format!("swap {id}")))?;
    Ok(Some((r.version, rec)))
}

/// The active (not terminal) swaps of `R`'s kind, with their versions.
pub async fn active<R: Record>(store: &dyn SwapStore) -> Result<Vec<(SwapId, i64, R)>, StoreError> {
    let recs = eddy_store::records_of(store, ListFilter::Active, R::KIND).await?;
    Ok(recs.into_iter().map(|(r, rec)| (r.id, r.version, rec)).collect())
}

/// Every swap of `R`'s kind, newest first.
pub async fn all<R: Record>(store: &dyn SwapStore) -> Result<Vec<(SwapRecord, R)>, StoreError> {
    let mut all = eddy_store::records_of(store, ListFilter::All, R::KIND).await?;
    all.sort_by_key(|r| std::cmp::Reverse(r.0.created_at));
    Ok(all)
}

/// Writes `rec` with `event` over `version` (which it advances), then the engine's
/// [`Effects::persisted`] hook.
pub async fn persist<R: Record, E: Effects<R> + ?Sized>(
    effects: &E,
    id: &SwapId,
    version: &mut i64,
    rec: &R,
    event: serde_json::Value,
) -> Result<(), E::Error> {
    let state = rec.state();
    eddy_store::save(
        effects.store(),
        id,
        version,
        eddy_store::state_name(state),
        <R::M as Machine>::is_terminal(state),
        rec,
        event,
    )
    .await?;
    effects.persisted(id, rec).await;
    Ok(())
}

/// Applies `event` to swap `id`: the machine's transition; a changed state is persisted with
/// the event before anything is done (a repeated action in an unchanged state — settle again,
/// bump, re-broadcast — was persisted when the state was entered); then each action, in order.
pub async fn apply<R: Record, E: Effects<R> + ?Sized>(
    effects: &E,
    id: SwapId,
    version: &mut i64,
    rec: &mut R,
    event: EventOf<R>,
    ctx: &E::Ctx,
) -> Result<(), E::Error> {
    let view = effects.view(ctx);
    let (next, actions) = <R::M as Machine>::transition(rec.terms(), rec.state().clone(), view, &event);
    if &next == rec.state() && actions.is_empty() {
        return Ok(());
    }
    let changed = &next != rec.state();
    rec.set_state(next);
    if changed {
        let ev = R::event_json(&event, view, rec.state());
        let kind = ev["event"].clone();
        persist(effects, &id, version, rec, ev).await?;
        tracing::info!(swap = %id, state = eddy_store::state_name(rec.state()), event = %kind, "{}", R::TRANSITION_LOG);
        if <R::M as Machine>::is_terminal(rec.state()) {
            effects.finished(&id, rec);
        }
    }
    for action in actions {
        effects.act(id, version, rec, action, ctx).await?;
    }
    Ok(())
}

/// Runs, for every active swap of `R`'s kind, what its machine does again after a restart
/// ([`Machine::resume`]) — before the first pass, which brings the fresh facts everything else
/// waits for — within one context for all of them (the server's engines: the tip). One swap's
/// error does not stop the others; the first is returned after all were tried. (The client
/// machines owe nothing at a restart — each one's `resume` says why — so the client engines
/// start with their first pass.)
pub async fn resume<R: Record, E: Effects<R> + ?Sized>(effects: &E, ctx: &E::Ctx) -> Result<(), E::Error> {
    let mut first_err = None;
    for (id, mut version, mut rec) in active::<R>(effects.store()).await? {
        for action in <R::M as Machine>::resume(rec.state()) {
            if let Err(e) = effects.act(id, &mut version, &mut rec, action, ctx).await {
                first_err.get_or_insert(e);
                break;
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// [`apply`]s each of `events` in turn (what an engine read of the world in one pass, in the
/// order it must be heard).
pub async fn apply_all<R: Record, E: Effects<R> + ?Sized>(
    effects: &E,
    id: SwapId,
    version: &mut i64,
    rec: &mut R,
    events: impl IntoIterator<Item = EventOf<R>> + Send,
    ctx: &E::Ctx,
) -> Result<(), E::Error> {
    for event in events {
        apply(effects, id, version, rec, event, ctx).await?;
    }
    Ok(())
}

/// Stores a new swap `id` of `R`'s kind as `rec`, with the event that created it; its version.
/// An id already stored (of any kind) is [`StoreError::Duplicate`].
pub async fn create<R: Record>(
    store: &dyn SwapStore,
    id: SwapId,
    rec: &R,
    event: serde_json::Value,
) -> Result<i64, StoreError> {
    let state = rec.state();
    let new = eddy_store::NewSwap {
        id,
        kind: R::KIND,
        state_name: eddy_store::state_name(state),
        terminal: <R::M as Machine>::is_terminal(state),
        state: serde_json::to_value(rec)
            .map_err(|_| StoreError::Corrupt(format!("swap {id}: state does not encode")))?,
        event,
    };
    Ok(store.create(&new).await?.version)
}
