//! Loop-in, client side.
//!
//! ```text
//!  Created ──offer ok (stored)──▶ Persisted ──funding broadcast──▶ Funding ──confirmed──▶ Funded
//!     │ offer bad                   │ abandon / E passed unfunded                          │
//!     ▼                             ▼                                invoice settled /     │ swap failed, abandon,
//!   Failed ◀────────────────────────┘                                server claimed        │ or tip ≥ E
//!                                               Succeeded ◀─────────────────────────────────┤
//!                                                                                           ▼
//!                                               Refunded ◀──refund confirmed (3)──  Refunding (cooperative first;
//!                                                                                    timeout path once tip ≥ E)
//! ```
//! Rules: the offer is persisted before funding (so a crash between "persisted" and "funding
//! broadcast" never funds twice: the daemon looks for an existing funding transaction first);
//! once the invoice is settled the client never refunds; a refund asks the server to co-sign
//! first and falls back to the timeout path at `E`.

use bitcoin::{Amount, OutPoint, Txid};
use serde::{Deserialize, Serialize};

use crate::constants::{REORG_SAFETY_DEPTH, SPEND_CONFIRM_BUDGET};
use crate::sm::SWEEP_FINAL_CONFS;
use crate::types::BlockHeight;

/// The swap's fixed data the machine needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// HTLC amount.
    pub amount: Amount,
    /// HTLC expiry `E`.
    pub expiry: BlockHeight,
}

impl Terms {
    /// Past this height the machine gives up.
    pub fn give_up_height(&self) -> BlockHeight {
        self.expiry + SPEND_CONFIRM_BUDGET + REORG_SAFETY_DEPTH + 2 * REORG_SAFETY_DEPTH
    }
}

/// Why a loop-in failed without a refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum FailReason {
    /// The server's answer failed validation; nothing was funded.
    OfferRejected,
    /// The user abandoned it before funding.
    Abandoned,
    /// Never funded before `E`.
    NeverFunded,
    /// The give-up height passed without a decision.
    TimedOut,
}

/// Client loop-in states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    /// Invoice created; asking the server.
    Created,
    /// Offer validated and stored; about to fund (or waiting for external funding).
    Persisted,
    /// Funding broadcast.
    Funding {
        /// The funding transaction.
        txid: Txid,
    },
    /// Funding confirmed.
    Funded {
        /// The HTLC output.
        outpoint: OutPoint,
        /// Its value.
        value: Amount,
    },
    /// Getting the coins back.
    Refunding {
        /// The HTLC output.
        outpoint: OutPoint,
        /// The last refund broadcast.
        refund_txid: Option<Txid>,
    },
    /// Terminal: the invoice was paid.
    Succeeded,
    /// Terminal: refunded.
    Refunded {
        /// The refund.
        txid: Txid,
    },
    /// Terminal: failed before funding.
    Failed(FailReason),
}

impl State {
    /// Whether no further event changes this state.
    pub fn is_terminal(&self) -> bool {
        matches!(self, State::Succeeded | State::Refunded { .. } | State::Failed(_))
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The server's answer passed validation (and was stored).
    OfferValidated,
    /// It failed validation.
    OfferRejected,
    /// The funding transaction was broadcast (or found in the wallet).
    FundingBroadcast {
        /// Its txid.
        txid: Txid,
    },
    /// The funding output is confirmed.
    FundingConfirmed {
        /// The HTLC output.
        outpoint: OutPoint,
        /// Its value.
        value: Amount,
    },
    /// Our node received the payment for our invoice.
    InvoiceSettled,
    /// The server reports the swap failed (under/over-payment, payment failure).
    SwapFailed,
    /// The user gives up.
    Abandon,
    /// A new best block.
    Block {
        /// Its height.
        height: BlockHeight,
    },
    /// A refund was broadcast.
    RefundBroadcast {
        /// Its txid.
        txid: Txid,
    },
    /// The refund has confirmations.
    RefundConfirmed {
        /// Its txid.
        txid: Txid,
        /// Confirmations.
        confs: u32,
    },
    /// The server claimed the HTLC (with the preimage our node revealed).
    ServerClaimed,
}

/// What the daemon must do (each idempotent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fund the HTLC from the wallet unless a funding transaction already exists.
    FundHtlc,
    /// Cancel our invoice (so it can no longer be paid), then ask the server to co-sign a
    /// key-path refund.
    RequestCooperativeRefund,
    /// Broadcast or bump the timeout refund (valid once the tip is ≥ `E`).
    BroadcastTimeoutRefund,
}

/// The transition function.
pub fn transition(terms: &Terms, state: State, event: &Event) -> (State, Vec<Action>) {
    use State as S;
    if state.is_terminal() {
        return (state, vec![]);
    }
    if let Event::Block { height } = event {
        if *height >= terms.give_up_height() {
            return (S::Failed(FailReason::TimedOut), vec![]);
        }
    }
    match (state, event) {
        (S::Created, Event::OfferValidated) => (S::Persisted, vec![Action::FundHtlc]),
        (S::Created, Event::OfferRejected) => (S::Failed(FailReason::OfferRejected), vec![]),
        (S::Created | S::Persisted, Event::Abandon) => (S::Failed(FailReason::Abandoned), vec![]),
        (S::Persisted, Event::FundingBroadcast { txid }) => (S::Funding { txid: *txid }, vec![]),
        (S::Persisted | S::Funding { .. }, Event::FundingConfirmed { outpoint, value }) => (
            S::Funded {
                outpoint: *outpoint,
                value: *value,
            },
            vec![],
        ),
        (S::Persisted, Event::Block { height }) if *height >= terms.expiry => {
            (S::Failed(FailReason::NeverFunded), vec![])
        }
        (S::Funding { .. } | S::Funded { .. } | S::Refunding { .. }, Event::InvoiceSettled | Event::ServerClaimed) => {
            (S::Succeeded, vec![])
        }
        (S::Funded { outpoint, .. }, Event::SwapFailed | Event::Abandon) => (
            S::Refunding {
                outpoint,
                refund_txid: None,
            },
            vec![Action::RequestCooperativeRefund],
        ),
        (S::Funded { outpoint, .. }, Event::Block { height }) if *height >= terms.expiry => (
            S::Refunding {
                outpoint,
                refund_txid: None,
            },
            vec![Action::BroadcastTimeoutRefund],
        ),
        (S::Refunding { outpoint, refund_txid }, Event::Block { height }) => {
            let action = if *height >= terms.expiry {
                Action::BroadcastTimeoutRefund
            } else {
                Action::RequestCooperativeRefund
            };
            (S::Refunding { outpoint, refund_txid }, vec![action])
        }
        (S::Refunding { outpoint, .. }, Event::RefundBroadcast { txid }) => (
            S::Refunding {
                outpoint,
                refund_txid: Some(*txid),
            },
            vec![],
        ),
        (S::Refunding { .. }, Event::RefundConfirmed { txid, confs }) if *confs >= SWEEP_FINAL_CONFS => {
            (S::Refunded { txid: *txid }, vec![])
        }
        (s, _) => (s, vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sm::testing::height;
    use bitcoin::hashes::Hash;
    use proptest::prelude::*;

    fn terms() -> Terms {
        Terms {
            amount: Amount::from_sat(100_000),
            expiry: 500,
        }
    }

    fn op() -> OutPoint {
        OutPoint {
            txid: Txid::all_zeros(),
            vout: 1,
        }
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::OfferValidated),
            Just(Event::OfferRejected),
            Just(Event::FundingBroadcast {
                txid: Txid::all_zeros()
            }),
            Just(Event::FundingConfirmed {
                outpoint: op(),
                value: Amount::from_sat(100_000)
            }),
            Just(Event::InvoiceSettled),
            Just(Event::SwapFailed),
            Just(Event::Abandon),
            height().prop_map(|height| Event::Block { height }),
            Just(Event::RefundBroadcast {
                txid: Txid::all_zeros()
            }),
            (0u32..5).prop_map(|confs| Event::RefundConfirmed {
                txid: Txid::all_zeros(),
                confs
            }),
            Just(Event::ServerClaimed),
        ]
    }

    #[test]
    fn cooperative_refund_then_timeout_fallback() {
        let t = terms();
        let s = State::Funded {
            outpoint: op(),
            value: t.amount,
        };
        let (s, a) = transition(&t, s, &Event::SwapFailed);
        assert_eq!(a, vec![Action::RequestCooperativeRefund]);
        let (s, a) = transition(&t, s, &Event::Block { height: 499 });
        assert_eq!(a, vec![Action::RequestCooperativeRefund]);
        let (s, a) = transition(&t, s, &Event::Block { height: 500 });
        assert_eq!(a, vec![Action::BroadcastTimeoutRefund]);
        let (s, _) = transition(
            &t,
            s,
            &Event::RefundConfirmed {
                txid: Txid::all_zeros(),
                confs: 3,
            },
        );
        assert_eq!(
            s,
            State::Refunded {
                txid: Txid::all_zeros()
            }
        );
    }

    proptest! {
        #[test]
        fn ends_on_timeout_and_never_refunds_after_payment(events in proptest::collection::vec(event(), 0..40)) {
            let t = terms();
            let mut s = State::Created;
            let mut paid = false;
            let mut funds = 0;
            for e in events.iter().chain([Event::Block { height: t.give_up_height() }].iter()) {
                let was_succeeded = s == State::Succeeded;
                let (next, actions) = transition(&t, s, e);
                paid |= next == State::Succeeded && !was_succeeded;
                for a in &actions {
                    match a {
                        Action::FundHtlc => funds += 1,
                        Action::RequestCooperativeRefund | Action::BroadcastTimeoutRefund => prop_assert!(!paid),
                    }
                }
                s = next;
            }
            prop_assert!(s.is_terminal());
            prop_assert!(funds <= 1, "funded twice");
        }
    }
}
