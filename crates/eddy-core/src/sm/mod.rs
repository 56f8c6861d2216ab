//! Swap state machines: one per side and direction, each a pure function
//! `(state, event) -> (state, actions)` over explicit, persisted states with explicit terminal
//! states. The daemons persist the new state (and the event) in one store transaction *before*
//! running the actions; every action is idempotent so that after a crash re-running the actions
//! of the persisted state is safe.
//!
//! Persisted state and reason names (the serde tags) are part of the store format: never rename
//! or reuse one; add new ones.
//!
//! A swap is never terminal while an output it can spend is unspent (or its spend is not
//! [`SWEEP_FINAL_CONFS`] deep, or an output it saw went missing from the view fewer than
//! `REORG_SAFETY_DEPTH` blocks ago): coins in an HTLC are never "done". A "give-up height"
//! derived from the swap's expiry applies only to waiting for the other side off-chain
//! (a payment, a publication, a funding that never came); once anything of the party's is
//! on-chain the machine refunds or claims it — at once after any downtime — until that spend
//! is final. (The server machines follow the same rule as the server side adopts it.)

pub mod loop_in_client;
pub mod loop_in_server;
pub mod loop_out_client;
pub mod loop_out_server;

/// Confirmations after which a sweep (claim or refund) counts as final for the state machine.
pub const SWEEP_FINAL_CONFS: u32 = 3;

/// Declares a machine's unit type and its [`Machine`] implementation over the module's
/// `Terms`, `State`, `Event` and `Action` (`State::is_terminal` decides finality, the module's
/// `resume` what a restart does again):
/// `machine!(Name, View, |terms, state, view, event| transition(...))`.
macro_rules! machine {
    ($(#[$doc:meta])* $name:ident, $view:ty, |$terms:ident, $state:ident, $v:pat_param, $event:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        impl $crate::sm::Machine for $name {
            type Terms = Terms;
            type State = State;
            type Event = Event;
            type Action = Action;
            type View = $view;

            fn transition($terms: &Terms, $state: State, $v: &$view, $event: &Event) -> (State, Vec<Action>) {
                $body
            }

            fn is_terminal(state: &State) -> bool {
                state.is_terminal()
            }

            fn resume(state: &State) -> Vec<Action> {
                resume(state)
            }
        }
    };
}
pub(crate) use machine;

/// One swap state machine, as the generic runner (`eddy_engine::runner`) drives it: the four
/// machines implement it on a unit type each, so that loading, applying an event, persisting
/// the new state before any action and handing the actions to the engine's effects are written
/// once for all of them.
pub trait Machine {
    /// The swap's fixed terms.
    type Terms;
    /// The persisted state.
    type State: Clone + PartialEq + std::fmt::Debug + serde::Serialize;
    /// What can happen to the swap.
    type Event;
    /// What the engine must do (each idempotent).
    type Action;
    /// What the machine reads of the world besides the event: the chain view (client
    /// loop-in), the tip (server loop-out), or nothing (`()`).
    type View;
    /// The transition: the next state and the actions to perform once it is persisted.
    fn transition(
        terms: &Self::Terms,
        state: Self::State,
        view: &Self::View,
        event: &Self::Event,
    ) -> (Self::State, Vec<Self::Action>);
    /// Whether no further event changes `state`.
    fn is_terminal(state: &Self::State) -> bool;
    /// What an engine starting up (after a restart or a crash) does again for a swap found in
    /// `state`, before any new event: only actions the transition *into* `state` asked for
    /// (each machine's tests check it) and that need no fresh fact — never a payment, a funding
    /// or anything a deadline decides, which wait for the first pass's events. Every action
    /// is idempotent, so one already done before the crash is harmless.
    fn resume(state: &Self::State) -> Vec<Self::Action>;
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers shared by the machines' property tests.
    use proptest::prelude::*;

    /// Heights used by the generated events: around a swap with expiry 500.
    pub fn height() -> impl Strategy<Value = u32> {
        prop_oneof![400u32..520, 0u32..2_000]
    }

    /// Follows a walk for [`super::Machine::resume`]'s rule: `since` holds the actions asked
    /// for since the swap entered `next`'s kind of state; whatever a restart in `next` does
    /// again must be among them.
    pub fn resume_repeats_only<S, A: PartialEq + Clone + std::fmt::Debug>(
        before: &S,
        next: &S,
        actions: &[A],
        since: &mut Vec<A>,
        resumed: Vec<A>,
    ) -> Result<(), TestCaseError> {
        if std::mem::discriminant(before) != std::mem::discriminant(next) {
            since.clear();
        }
        since.extend(actions.iter().cloned());
        for a in resumed {
            prop_assert!(
                since.contains(&a),
                "a restart would do {:?}, which was never asked for",
                a
            );
        }
        Ok(())
    }
}
