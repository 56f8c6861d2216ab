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

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers shared by the machines' property tests.
    use proptest::prelude::*;

    /// Heights used by the generated events: around a swap with expiry 500.
    pub fn height() -> impl Strategy<Value = u32> {
        prop_oneof![400u32..520, 0u32..2_000]
    }
}
