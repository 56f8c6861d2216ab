//! Loop-in, server side.
//!
//! ```text
//!  Created ──funding exact, confs ok, in time──▶ Paying ──payment succeeded (preimage)──▶ Claiming ──claim final──▶ Succeeded
//!     │ under/over-paid, too late                  │ payment failed
//!     ▼                                            ▼
//!  Refundable (co-signs cooperative refunds) ◀─────┘ ──HTLC refunded──▶ Refunded
//!     │ E passed, never funded
//!     ▼
//!  Expired
//! ```
//! Rules:
//! - pay only an exactly funded, sufficiently confirmed HTLC;
//! - **no payment is ever sent at or after `loop_in_last_payment_height(E)`, on any path**
//!   (first send, retry, restart with the payment unknown to the node): the engine sends only
//!   what an [`Action::PayInvoice`] says, and that action comes only from this machine, which
//!   emits it only below the last payment height, with a CLTV limit of
//!   `loop_in_max_payment_cltv(E)` and a route CLTV budget ([`Action::PayInvoice`]'s
//!   `max_total_cltv_delta`) of at least 1 — a budget of 0 means "no limit" to LND, so it is
//!   unrepresentable ([`NonZeroU32`]). The engine asks ([`Event::SendPayment`]) after a restart
//!   and re-checks [`Terms::may_send`] right before the send;
//! - a failed attempt ([`Event::AttemptFailed`]) is retried by the machine:
//!   [`LOOP_IN_PAY_ATTEMPTS`] attempts in all, the next due [`LOOP_IN_PAY_RETRY_SECS`] after a
//!   failure (`Paying { attempt, retry_at }`), each only while a payment may still be sent;
//!   then the swap is refundable;
//! - after the payment the client is first given one block to co-sign the cooperative claim
//!   (`Claiming { cooperative_until }`, set by the first block): [`Action::Claim`] (the
//!   script-path claim and its bumps) only from that height on;
//! - co-sign a cooperative refund only while no payment for the hash is in flight or settled
//!   (i.e. in `Created` or `Refundable`, never in `Paying` or after);
//! - **never terminal while the server can still spend an output**: the give-up height ends only
//!   waiting for the client off-chain (`Created`, `Refundable`); `Paying` (a payment may be in
//!   flight) waits for the node's verdict, and `Claiming` claims until the HTLC is spent — by
//!   its claim (`Succeeded`) or, after `E`, by the client's timeout refund buried
//!   [`REORG_SAFETY_DEPTH`] deep (`Refunded`).

use std::num::NonZeroU32;

use bitcoin::{Amount, OutPoint};
use serde::{Deserialize, Serialize};

use crate::constants::{
    loop_in_last_payment_height, loop_in_max_payment_cltv, LOOP_IN_PAY_ATTEMPTS, LOOP_IN_PAY_RETRY_SECS,
    REORG_SAFETY_DEPTH, SPEND_CONFIRM_BUDGET,
};
use crate::sm::SWEEP_FINAL_CONFS;
use crate::types::{BlockHeight, Preimage};
use crate::validate::{check_funding, FundingCheck};

/// The swap's fixed data the machine needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// HTLC amount.
    pub amount: Amount,
    /// HTLC expiry `E`.
    pub expiry: BlockHeight,
    /// Confirmations required before paying.
    pub funding_confs: u32,
}

impl Terms {
    /// Past this height the machine stops waiting for the client off-chain (`Created`,
    /// `Refundable` become `Expired`). It never ends a swap with a payment possibly in flight
    /// or a claim to make.
    pub fn give_up_height(&self) -> BlockHeight {
        self.expiry + SPEND_CONFIRM_BUDGET + 3 * REORG_SAFETY_DEPTH
    }

    /// The first height at which no payment may be sent any more:
    /// [`loop_in_last_payment_height`]`(E)`.
    pub fn last_payment_height(&self) -> BlockHeight {
        loop_in_last_payment_height(self.expiry)
    }

    /// Whether a payment may be sent at `tip`: only strictly below
    /// [`Terms::last_payment_height`]. The engine checks it right before every send.
    pub fn may_send(&self, tip: BlockHeight) -> bool {
        tip < self.last_payment_height()
    }

    /// The CLTV budget of a payment sent at `tip`: `loop_in_max_payment_cltv(E) − tip`, or
    /// `None` when no payment may be sent ([`Terms::may_send`] false, or no budget left).
    pub fn payment_cltv_budget(&self, tip: BlockHeight) -> Option<NonZeroU32> {
        if !self.may_send(tip) {
            return None;
        }
        NonZeroU32::new(loop_in_max_payment_cltv(self.expiry).saturating_sub(tip))
    }

    /// The payment action for `tip`, if a payment may be sent then.
    fn pay_at(&self, tip: BlockHeight) -> Option<Action> {
        self.payment_cltv_budget(tip).map(|budget| Action::PayInvoice {
            max_cltv_expiry: loop_in_max_payment_cltv(self.expiry),
            max_total_cltv_delta: budget,
            height: tip,
        })
    }
}

/// Why the server will not pay (the client may refund cooperatively).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum RefundReason {
    /// Funding below the amount.
    Underpaid,
    /// Funding above the amount.
    Overpaid,
    /// Funding confirmed too late to pay safely before `E`.
    TooLate,
    /// The Lightning payment failed.
    PaymentFailed,
    /// The client asked for a cooperative refund before the server paid: once co-signed, the
    /// server must never pay (the client could take both).
    ClientRefund,
}

/// Server loop-in states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    /// Waiting for the funding output.
    Created,
    /// Paying the client's invoice.
    Paying {
        /// The HTLC output.
        outpoint: OutPoint,
        /// Attempts after the first (at most [`LOOP_IN_PAY_ATTEMPTS`] − 1).
        #[serde(default)]
        attempt: u32,
        /// After a failed attempt with attempts and time left: when (unix seconds) the next is
        /// due ([`LOOP_IN_PAY_RETRY_SECS`] later).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<u64>,
    },
    /// Preimage known; claiming the HTLC.
    Claiming {
        /// The HTLC output.
        outpoint: OutPoint,
        /// The preimage from the payment.
        preimage: Preimage,
        /// The client is first given a block to co-sign the smaller, private key-path claim:
        /// the script-path claim starts at this height (`None` until the first block after
        /// the payment sets it; records from before it was kept are moved in by the engine).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cooperative_until: Option<BlockHeight>,
    },
    /// The swap failed; the client may refund (cooperatively).
    Refundable(RefundReason),
    /// Terminal: claim final.
    Succeeded,
    /// Terminal: the client refunded.
    Refunded,
    /// Terminal: never funded, or the give-up height passed.
    Expired,
}

impl State {
    /// Paying against `outpoint`, the first attempt.
    pub fn paying(outpoint: OutPoint) -> State {
        State::Paying {
            outpoint,
            attempt: 0,
            retry_at: None,
        }
    }

    /// Whether no further event changes this state.
    pub fn is_terminal(&self) -> bool {
        matches!(self, State::Succeeded | State::Refunded | State::Expired)
    }

    /// Whether a cooperative refund may be co-signed now.
    pub fn may_cosign_refund(&self) -> bool {
        matches!(self, State::Created | State::Refundable(_))
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The funding output with its confirmations at the current tip.
    FundingSeen {
        /// The HTLC output.
        outpoint: OutPoint,
        /// Its value.
        value: Amount,
        /// Confirmations.
        confs: u32,
        /// Current tip.
        height: BlockHeight,
    },
    /// The payment succeeded.
    PaymentSucceeded(Preimage),
    /// The payment failed for good (no HTLC in flight): the swap fails, whatever attempts are
    /// left (what the engine reports for a payment the node can never make).
    PaymentFailed,
    /// An attempt failed (the node has nothing in flight or made for the hash): the machine
    /// schedules the next attempt, sends it once due, or fails the swap when attempts or time
    /// ran out.
    AttemptFailed {
        /// Current tip.
        height: BlockHeight,
        /// Unix time now (seconds).
        now: u64,
        /// Confirmations of the funding output now.
        funding_confs: u32,
        /// Why it failed (for the log).
        reason: String,
    },
    /// The client asks for a cooperative refund.
    RefundRequested,
    /// The claim has confirmations.
    ClaimConfirmed {
        /// Confirmations.
        confs: u32,
    },
    /// The HTLC was spent by a refund (cooperative or timeout), with this many confirmations.
    HtlcRefunded {
        /// Confirmations of the refund.
        confs: u32,
    },
    /// The node has no payment for the hash in flight or made (nothing sent yet after a
    /// restart, or a failed attempt with attempts left): may the engine send now, at `height`?
    SendPayment {
        /// Current tip.
        height: BlockHeight,
        /// Confirmations of the funding output now (a reorg may have taken some away: a
        /// retry never pays against a funding that is no longer confirmed enough).
        funding_confs: u32,
    },
    /// A new best block.
    Block {
        /// Its height.
        height: BlockHeight,
    },
}

/// What the daemon must do (each idempotent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Pay the client's invoice (idempotent per hash) with this CLTV limit. Emitted only below
    /// the last payment height; the engine sends nothing else and re-checks
    /// [`Terms::may_send`] right before sending.
    PayInvoice {
        /// Highest absolute CLTV expiry the payment's HTLCs may carry.
        max_cltv_expiry: BlockHeight,
        /// The route's CLTV budget (`max_cltv_expiry − height`), never 0.
        max_total_cltv_delta: NonZeroU32,
        /// The tip the budget was computed at.
        height: BlockHeight,
    },
    /// Claim the HTLC (cooperatively if the client helps, else script path), or bump the claim:
    /// the engine's claim round, built at every pass for every `Claiming` swap, finishes an
    /// input its client did not co-sign on the script path only from this height on.
    Claim {
        /// The HTLC output.
        outpoint: OutPoint,
    },
    /// Co-sign the client's key-path refund.
    CosignRefund,
    /// Tell the client the swap failed so it refunds.
    NotifyFailed(RefundReason),
}

/// Nothing in flight (the node says so): send now from `paying` if still in time, else the swap
/// is refundable — never a payment at or after the last payment height; a funding that lost
/// confirmations (reorg) is waited for while there is time.
fn send(terms: &Terms, paying: State, height: BlockHeight, funding_confs: u32) -> (State, Vec<Action>) {
    match terms.pay_at(height) {
        Some(_) if funding_confs < terms.funding_confs.max(1) => (paying, vec![]),
        Some(pay) => (paying, vec![pay]),
        None => (
            State::Refundable(RefundReason::TooLate),
            vec![Action::NotifyFailed(RefundReason::TooLate)],
        ),
    }
}

/// The transition function.
pub fn transition(terms: &Terms, state: State, event: &Event) -> (State, Vec<Action>) {
    use State as S;
    if state.is_terminal() {
        return (state, vec![]);
    }
    if let Event::Block { height } = event {
        // Give up only waiting for the client: never with a payment possibly in flight
        // (`Paying`) or a claim to make (`Claiming`).
        if *height >= terms.give_up_height() && matches!(state, S::Created | S::Refundable(_)) {
            return (S::Expired, vec![]);
        }
    }
    match (state, event) {
        (
            S::Created,
            Event::FundingSeen {
                outpoint,
                value,
                confs,
                height,
            },
        ) => match check_funding(*value, terms.amount) {
            FundingCheck::Under => (
                S::Refundable(RefundReason::Underpaid),
                vec![Action::NotifyFailed(RefundReason::Underpaid)],
            ),
            FundingCheck::Over => (
                S::Refundable(RefundReason::Overpaid),
                vec![Action::NotifyFailed(RefundReason::Overpaid)],
            ),
            FundingCheck::Exact if *confs < terms.funding_confs.max(1) => (S::Created, vec![]),
            FundingCheck::Exact => match terms.pay_at(*height) {
                Some(pay) => (S::paying(*outpoint), vec![pay]),
                None => (
                    S::Refundable(RefundReason::TooLate),
                    vec![Action::NotifyFailed(RefundReason::TooLate)],
                ),
            },
        },
        (S::Created, Event::Block { height }) if *height >= terms.expiry => (S::Expired, vec![]),
        // Co-signing a refund gives the client its coins back by the key path at any time, so
        // from then on the swap is over for the server: never pay after it.
        (S::Created, Event::RefundRequested) => (S::Refundable(RefundReason::ClientRefund), vec![Action::CosignRefund]),
        (s @ S::Refundable(_), Event::RefundRequested) => (s, vec![Action::CosignRefund]),
        (S::Created | S::Refundable(_), Event::HtlcRefunded { confs }) if *confs >= 1 => (S::Refunded, vec![]),
        // A retry is pending: only its due time sends (`AttemptFailed`), never this.
        (paying @ S::Paying { retry_at: Some(_), .. }, Event::SendPayment { .. }) => (paying, vec![]),
        (paying @ S::Paying { .. }, Event::SendPayment { height, funding_confs }) => {
            send(terms, paying, *height, *funding_confs)
        }
        (
            S::Paying {
                outpoint,
                attempt,
                retry_at,
            },
            Event::AttemptFailed {
                height,
                now,
                funding_confs,
                ..
            },
        ) => {
            if attempt + 1 >= LOOP_IN_PAY_ATTEMPTS || !terms.may_send(*height) {
                return (
                    S::Refundable(RefundReason::PaymentFailed),
                    vec![Action::NotifyFailed(RefundReason::PaymentFailed)],
                );
            }
            match retry_at {
                None => {
                    let retry_at = Some(now.saturating_add(LOOP_IN_PAY_RETRY_SECS));
                    (
                        S::Paying {
                            outpoint,
                            attempt,
                            retry_at,
                        },
                        vec![],
                    )
                }
                Some(at) if *now >= at => {
                    let next = S::Paying {
                        outpoint,
                        attempt: attempt + 1,
                        retry_at: None,
                    };
                    send(terms, next, *height, *funding_confs)
                }
                Some(_) => (
                    S::Paying {
                        outpoint,
                        attempt,
                        retry_at,
                    },
                    vec![],
                ),
            }
        }
        (S::Paying { outpoint, .. }, Event::PaymentSucceeded(p)) => {
            let claiming = S::Claiming {
                outpoint,
                preimage: *p,
                cooperative_until: None,
            };
            (claiming, vec![])
        }
        (S::Paying { .. }, Event::PaymentFailed) => (
            S::Refundable(RefundReason::PaymentFailed),
            vec![Action::NotifyFailed(RefundReason::PaymentFailed)],
        ),
        // The first block after the payment offers the cooperative claim for one block; from
        // then on every block claims (or bumps the claim) on the script path.
        (
            S::Claiming {
                outpoint,
                preimage,
                cooperative_until: None,
            },
            Event::Block { height },
        ) => {
            let waiting = S::Claiming {
                outpoint,
                preimage,
                cooperative_until: Some(height.saturating_add(1)),
            };
            (waiting, vec![])
        }
        (
            s @ S::Claiming {
                outpoint,
                cooperative_until: Some(until),
                ..
            },
            Event::Block { height },
        ) => {
            let claim = if *height >= until {
                vec![Action::Claim { outpoint }]
            } else {
                vec![]
            };
            (s, claim)
        }
        (S::Claiming { .. }, Event::ClaimConfirmed { confs }) if *confs >= SWEEP_FINAL_CONFS => (S::Succeeded, vec![]),
        // The client's timeout refund won the race for the HTLC (after `E`): once it is buried
        // nothing is left for the server to spend.
        (S::Claiming { .. }, Event::HtlcRefunded { confs }) if *confs >= REORG_SAFETY_DEPTH => (S::Refunded, vec![]),
        (s, _) => (s, vec![]),
    }
}

/// What a restart does again (see [`crate::sm::Machine::resume`]): nothing before the first
/// pass. A payment is sent only on the node's word that none is out (never blind), and the
/// claim waits for the tip (the cooperative block, then its bumps).
pub fn resume(_state: &State) -> Vec<Action> {
    vec![]
}

crate::sm::machine!(
    /// This machine — a loop-in, server side — for the generic runner.
    LoopInServerMachine,
    (),
    |terms, state, _view, event| transition(terms, state, event)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sm::testing::height;
    use bitcoin::hashes::Hash;
    use bitcoin::Txid;
    use proptest::prelude::*;

    fn terms() -> Terms {
        Terms {
            amount: Amount::from_sat(100_000),
            expiry: 500,
            funding_confs: 1,
        }
    }

    /// The cooperative claim's block: nothing is claimed on the script path in the block the
    /// payment succeeded in, the next block claims, and every block after it bumps.
    #[test]
    fn the_client_gets_one_block_to_cosign_the_claim() {
        let t = terms();
        let p = Preimage::from_bytes([7; 32]);
        let (s, a) = transition(&t, State::paying(op()), &Event::PaymentSucceeded(p));
        assert!(a.is_empty());
        let (s, a) = transition(&t, s, &Event::Block { height: 450 });
        assert!(a.is_empty());
        let until = State::Claiming {
            outpoint: op(),
            preimage: p,
            cooperative_until: Some(451),
        };
        assert_eq!(s, until);
        assert_eq!(
            transition(&t, s.clone(), &Event::Block { height: 450 }),
            (until.clone(), vec![])
        );
        for h in [451, 452] {
            let claim = vec![Action::Claim { outpoint: op() }];
            assert_eq!(
                transition(&t, s.clone(), &Event::Block { height: h }),
                (until.clone(), claim)
            );
        }
        // Stored without the field (older records) it reads as not yet offered.
        let old = serde_json::json!({"state": "claiming", "outpoint": op().to_string(), "preimage": p});
        let read: State = serde_json::from_value(old).expect("reads");
        assert!(matches!(
            read,
            State::Claiming {
                cooperative_until: None,
                ..
            }
        ));
        assert!(resume(&until).is_empty());
    }

    fn op() -> OutPoint {
        OutPoint {
            txid: Txid::all_zeros(),
            vout: 0,
        }
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (99_999u64..100_002, 0u32..3, height()).prop_map(|(v, confs, height)| Event::FundingSeen {
                outpoint: op(),
                value: Amount::from_sat(v),
                confs,
                height
            }),
            Just(Event::PaymentSucceeded(Preimage::from_bytes([2; 32]))),
            Just(Event::PaymentFailed),
            Just(Event::RefundRequested),
            (0u32..5).prop_map(|confs| Event::ClaimConfirmed { confs }),
            (0u32..8).prop_map(|confs| Event::HtlcRefunded { confs }),
            (height(), 0u32..3).prop_map(|(height, funding_confs)| Event::SendPayment { height, funding_confs }),
            (height(), 0u64..20, 0u32..3).prop_map(|(height, now, funding_confs)| Event::AttemptFailed {
                height,
                now,
                funding_confs,
                reason: String::new(),
            }),
            height().prop_map(|height| Event::Block { height }),
        ]
    }

    #[test]
    fn pays_with_cltv_limit_and_refuses_late_funding() {
        let t = terms();
        let seen = |height| Event::FundingSeen {
            outpoint: op(),
            value: t.amount,
            confs: 1,
            height,
        };
        assert_eq!(
            transition(&t, State::Created, &seen(439)),
            (
                State::paying(op()),
                vec![Action::PayInvoice {
                    max_cltv_expiry: 480,
                    max_total_cltv_delta: NonZeroU32::new(41).expect("41"),
                    height: 439
                }]
            )
        );
        // At the last payment height (E − 60 = 440) nothing is sent any more.
        assert_eq!(
            transition(&t, State::Created, &seen(440)).0,
            State::Refundable(RefundReason::TooLate)
        );
        // The restart path asks the machine too: past the deadline it never pays.
        let paying = State::paying(op());
        assert_eq!(
            transition(
                &t,
                paying.clone(),
                &Event::SendPayment {
                    height: 440,
                    funding_confs: 1
                }
            ),
            (
                State::Refundable(RefundReason::TooLate),
                vec![Action::NotifyFailed(RefundReason::TooLate)]
            )
        );
        assert!(matches!(
            transition(
                &t,
                paying.clone(),
                &Event::SendPayment {
                    height: 400,
                    funding_confs: 1
                }
            )
            .1[..],
            [Action::PayInvoice { height: 400, .. }]
        ));
        // A funding reorged back to unconfirmed is not paid against.
        assert_eq!(
            transition(
                &t,
                paying.clone(),
                &Event::SendPayment {
                    height: 400,
                    funding_confs: 0
                }
            ),
            (paying, vec![])
        );
        assert_eq!(transition(&t, State::paying(op()), &Event::RefundRequested).1, vec![]);
    }

    #[test]
    fn failed_attempts_are_retried_once_due_then_the_swap_fails() {
        let t = terms();
        let failed = |height, now| Event::AttemptFailed {
            height,
            now,
            funding_confs: 1,
            reason: "no route".into(),
        };
        // First failure: the next attempt is due LOOP_IN_PAY_RETRY_SECS later, nothing sent now.
        let (s, a) = transition(&t, State::paying(op()), &failed(400, 100));
        assert_eq!(a, vec![]);
        let due = 100 + LOOP_IN_PAY_RETRY_SECS;
        assert_eq!(
            s,
            State::Paying {
                outpoint: op(),
                attempt: 0,
                retry_at: Some(due)
            }
        );
        // Not yet due: nothing.
        assert_eq!(transition(&t, s.clone(), &failed(400, due - 1)), (s.clone(), vec![]));
        // Due: the second attempt, with the machine's CLTV limit.
        let (s, a) = transition(&t, s, &failed(400, due));
        assert_eq!(
            s,
            State::Paying {
                outpoint: op(),
                attempt: 1,
                retry_at: None
            }
        );
        assert!(
            matches!(a.as_slice(), [Action::PayInvoice { height: 400, .. }]),
            "{a:?}"
        );
        // Due but past the last payment height: refundable, nothing sent.
        let late = State::Paying {
            outpoint: op(),
            attempt: 1,
            retry_at: Some(due),
        };
        let (s2, a) = transition(&t, late, &failed(t.last_payment_height(), due));
        assert_eq!(s2, State::Refundable(RefundReason::PaymentFailed));
        assert_eq!(a, vec![Action::NotifyFailed(RefundReason::PaymentFailed)]);
        // The second attempt failed: a third is scheduled, not a refund.
        let second = State::Paying {
            outpoint: op(),
            attempt: 1,
            retry_at: None,
        };
        let (s4, a) = transition(&t, second, &failed(400, due));
        assert_eq!(a, vec![]);
        assert_eq!(
            s4,
            State::Paying {
                outpoint: op(),
                attempt: 1,
                retry_at: Some(due + LOOP_IN_PAY_RETRY_SECS)
            }
        );
        // While a retry is pending, "nothing in flight" sends nothing before it is due.
        let (s5, a) = transition(
            &t,
            s4.clone(),
            &Event::SendPayment {
                height: 400,
                funding_confs: 1,
            },
        );
        assert_eq!((s5, a), (s4, vec![]));
        // The last attempt failed: refundable.
        let last = State::Paying {
            outpoint: op(),
            attempt: LOOP_IN_PAY_ATTEMPTS - 1,
            retry_at: None,
        };
        let (s3, _) = transition(&t, last, &failed(400, due));
        assert_eq!(s3, State::Refundable(RefundReason::PaymentFailed));
        // Records written before the attempt was part of the state read as the first attempt.
        let old: State = serde_json::from_value(serde_json::json!({"state": "paying", "outpoint": op().to_string()}))
            .expect("old state");
        assert_eq!(old, State::paying(op()));
    }

    proptest! {
        #[test]
        fn gives_up_only_off_chain_and_never_cosigns_while_paying(events in proptest::collection::vec(event(), 0..40)) {
            let t = terms();
            let mut s = State::Created;
            let mut in_flight_or_settled = false;
            let mut cosigned = false;
            for e in events.iter().chain([Event::Block { height: t.give_up_height() }].iter()) {
                // `SendPayment` and `AttemptFailed` are the node saying nothing is in flight.
                if matches!(e, Event::SendPayment { .. } | Event::AttemptFailed { .. }) && matches!(s, State::Paying { .. }) {
                    in_flight_or_settled = false;
                }
                let before = s.clone();
                let (next, actions) = transition(&t, s, e);
                // A retry is sent only once due (never by another event while one is pending),
                // and never beyond the attempts.
                let sent = actions.iter().any(|a| matches!(a, Action::PayInvoice { .. }));
                if let State::Paying { attempt, retry_at, .. } = &before {
                    match e {
                        Event::AttemptFailed { now, .. } => {
                            prop_assert!(!sent || retry_at.is_some_and(|at| *now >= at), "retried before it was due");
                            prop_assert!(!sent || attempt + 2 <= LOOP_IN_PAY_ATTEMPTS, "more than the attempts");
                        }
                        _ => prop_assert!(!sent || retry_at.is_none(), "sent while a retry was pending"),
                    }
                }
                if let State::Paying { attempt, .. } = &next {
                    prop_assert!(*attempt < LOOP_IN_PAY_ATTEMPTS, "attempt {} of {}", attempt + 1, LOOP_IN_PAY_ATTEMPTS);
                }
                for a in &actions {
                    match a {
                        Action::PayInvoice { max_cltv_expiry, max_total_cltv_delta, height } => {
                            prop_assert!(!in_flight_or_settled, "paid twice");
                            prop_assert!(*height < t.last_payment_height(), "paid at or after the last payment height");
                            prop_assert_eq!(max_total_cltv_delta.get(), *max_cltv_expiry - *height);
                            prop_assert!(!cosigned, "paid after co-signing a refund");
                            prop_assert!(*max_cltv_expiry + crate::constants::LOOP_IN_CLAIM_MARGIN <= t.expiry);
                            in_flight_or_settled = true;
                        }
                        Action::CosignRefund => {
                            prop_assert!(!in_flight_or_settled, "co-signed a refund with a payment in flight or settled");
                            cosigned = true;
                        }
                        // The script-path claim only once the cooperative block is over.
                        Action::Claim { .. } => {
                            let (State::Claiming { cooperative_until: Some(until), .. }, Event::Block { height }) = (&before, e) else {
                                return Err(TestCaseError::fail(format!("claimed on {e:?} in {before:?}")));
                            };
                            prop_assert!(height >= until, "claimed at {} before {}", height, until);
                        }
                        _ => {}
                    }
                }
                if matches!(e, Event::PaymentFailed | Event::AttemptFailed { .. }) && matches!(next, State::Refundable(RefundReason::PaymentFailed)) {
                    in_flight_or_settled = false;
                }
                s = next;
            }
            // Only a payment possibly in flight or a claim to make outlives the give-up height.
            prop_assert!(s.is_terminal() || matches!(s, State::Paying { .. } | State::Claiming { .. }), "{:?}", s);
        }
    }
}
