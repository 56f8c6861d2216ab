//! Swap state machines: one per side and direction, each a pure function
//! `(state, event) -> (state, actions)` over explicit, persisted states with explicit terminal
//! states. The daemons persist the new state (and the event) in one store transaction *before*
//! running the actions; every action is idempotent so that after a crash re-running the actions
//! of the persisted state is safe.
//!
//! Persisted state and reason names (the serde tags) are part of the store format: never rename
//! or reuse one; add new ones.
//!
//! Every machine gives up at a "give-up height" derived from the swap's expiry: a block at or
//! past it moves any non-terminal state to a terminal one, so a swap whose counterparty vanished
//! always ends (the store keeps its data for manual recovery).

pub mod loop_in_client;
pub mod loop_in_server;
pub mod loop_out_client;
pub mod loop_out_server;

/// Confirmations after which a sweep (claim or refund) counts as final for the state machine.
pub const SWEEP_FINAL_CONFS: u32 = 3;

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers shared by the machines' property tests.
    use proptest::prelude::*;

    /// Heights used by the generated events: around a swap with expiry 500.
    pub fn height() -> impl Strategy<Value = u32> {
        prop_oneof![400u32..520, 0u32..2_000]
    }
}
