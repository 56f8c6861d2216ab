//! Loop-out, client side.
//!
//! ```text
//!  Created ──offer ok──▶ OfferAccepted ──payments sent──▶ Paying ──HTLC seen──▶ HtlcConfirming
//!     │ offer bad             │ payment failed              │                     │ confs ≥ required
//!     ▼                       ▼                             ▼                     │ and claim worth it
//!   Failed ◀──────────────────┴─────────────────────────────┴──── too late ──────┤
//!                                                                                  ▼
//!                          Succeeded ◀──claim confirmed (3)── Claiming (preimage revealed; bump every block)
//!                                                                 │ HTLC refunded by server
//!                                                                 ▼
//!                                                              Failed
//! ```
//! Rules: the preimage is revealed (action [`Action::RevealAndClaim`]) only against an HTLC with
//! the required confirmations (at least 1, at most [`MAX_HTLC_CONFS`]), value ≥ amount, and at
//! least `PREIMAGE_REVEAL_CUTOFF` blocks before `E`; once revealed, the claim is re-broadcast
//! and bumped every block **for as long as the HTLC is unspent** — no give-up height ends a
//! `Claiming` swap (a daemon that was down across `E` comes back and claims at once): it ends
//! only when our claim, or the server's refund, is [`SWEEP_FINAL_CONFS`] deep, or when the HTLC
//! vanished from the chain altogether (its funding double-spent) past the give-up height. If
//! the claimed output vanishes while another output pays the HTLC script, the client claims
//! that one (the preimage is public: anything paying the script is the client's to take). The
//! give-up height applies only while waiting for the server off-chain (before the reveal).

use bitcoin::{Amount, OutPoint, Txid};
use serde::{Deserialize, Serialize};

use crate::constants::{
    MAX_HTLC_CONFS, MIN_LOOP_OUT_EXPIRY_DELTA, PREIMAGE_REVEAL_CUTOFF, REORG_SAFETY_DEPTH, SPEND_CONFIRM_BUDGET,
};
use crate::fees::DontClaim;
use crate::sm::SWEEP_FINAL_CONFS;
use crate::types::BlockHeight;

/// The swap's fixed data the machine needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// HTLC amount.
    pub amount: Amount,
    /// HTLC expiry `E`.
    pub expiry: BlockHeight,
    /// Confirmations required before revealing.
    pub htlc_confs: u32,
    /// Height by which the client's Lightning payment has surely resolved (its HTLC CLTV).
    pub payment_timeout: BlockHeight,
}

impl Terms {
    /// Past this height a swap that has not revealed its preimage gives up waiting for the
    /// server (its payment has surely failed back by then). A revealed swap never gives up
    /// while its HTLC exists.
    pub fn give_up_height(&self) -> BlockHeight {
        self.expiry.max(self.payment_timeout) + SPEND_CONFIRM_BUDGET + REORG_SAFETY_DEPTH
    }

    /// The confirmations required before the reveal: `htlc_confs` within 1..=[`MAX_HTLC_CONFS`].
    pub fn required_confs(&self) -> u32 {
        self.htlc_confs.clamp(1, MAX_HTLC_CONFS)
    }
}

/// Why a loop-out failed (client view).
///
/// Stored as [`FailReasonRepr`]: `NotClaimed` nests its [`DontClaim`] under its own key. (It
/// used to be flattened beside the `reason` tag, and `DontClaim`'s own `reason` tag overwrote
/// it — `{"state":"failed","reason":"too_late","blocks_left":19}` — a record no one could read
/// back; those records read again as `NotClaimed`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "FailReasonRepr", into = "FailReasonRepr")]
pub enum FailReason {
    /// The offer failed validation; nothing was paid.
    OfferRejected,
    /// The Lightning payment failed (no route, or failed back by the server).
    PaymentFailed,
    /// The server's HTLC pays less than the amount; not claimed. (No longer produced: a short
    /// output is ignored while the client waits for one that pays the amount; kept so stored
    /// records still read.)
    HtlcUnderpaid,
    /// The claim would not be worth it (or came too late); the preimage stays secret and the
    /// payment fails back.
    NotClaimed(DontClaim),
    /// The server swept its refund path: the claim did not confirm in time.
    ServerRefunded,
    /// The give-up height passed without a decision.
    TimedOut,
    /// Not paid before too few blocks were left for the swap to complete (a daemon down, a
    /// payment that kept erroring); nothing was paid.
    TooLateToPay,
}

/// The stored form of [`FailReason`] (serde tags are store format: never rename one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum FailReasonRepr {
    /// [`FailReason::OfferRejected`].
    OfferRejected,
    /// [`FailReason::PaymentFailed`].
    PaymentFailed,
    /// [`FailReason::HtlcUnderpaid`].
    HtlcUnderpaid,
    /// [`FailReason::NotClaimed`].
    NotClaimed {
        /// Why.
        not_claimed: DontClaim,
    },
    /// [`FailReason::ServerRefunded`].
    ServerRefunded,
    /// [`FailReason::TimedOut`].
    TimedOut,
    /// [`FailReason::TooLateToPay`].
    TooLateToPay,
    /// A `NotClaimed(TooLate)` written before (its tag overwrote ours).
    TooLate {
        /// Blocks left.
        blocks_left: u32,
    },
    /// A `NotClaimed(FeeAboveLimit)` written before.
    FeeAboveLimit {
        /// The fee needed.
        fee: Amount,
        /// The limit.
        max_fee: Amount,
    },
    /// A `NotClaimed(NotWorthIt)` written before.
    NotWorthIt {
        /// The HTLC value.
        value: Amount,
        /// The fee needed.
        fee: Amount,
    },
}

impl From<FailReasonRepr> for FailReason {
    fn from(r: FailReasonRepr) -> FailReason {
        use FailReasonRepr as R;
        match r {
            R::OfferRejected => FailReason::OfferRejected,
            R::PaymentFailed => FailReason::PaymentFailed,
            R::HtlcUnderpaid => FailReason::HtlcUnderpaid,
            R::NotClaimed { not_claimed } => FailReason::NotClaimed(not_claimed),
            R::ServerRefunded => FailReason::ServerRefunded,
            R::TimedOut => FailReason::TimedOut,
            R::TooLateToPay => FailReason::TooLateToPay,
            R::TooLate { blocks_left } => FailReason::NotClaimed(DontClaim::TooLate { blocks_left }),
            R::FeeAboveLimit { fee, max_fee } => FailReason::NotClaimed(DontClaim::FeeAboveLimit { fee, max_fee }),
            R::NotWorthIt { value, fee } => FailReason::NotClaimed(DontClaim::NotWorthIt { value, fee }),
        }
    }
}

impl From<FailReason> for FailReasonRepr {
    fn from(r: FailReason) -> FailReasonRepr {
        use FailReasonRepr as R;
        match r {
            FailReason::OfferRejected => R::OfferRejected,
            FailReason::PaymentFailed => R::PaymentFailed,
            FailReason::HtlcUnderpaid => R::HtlcUnderpaid,
            FailReason::NotClaimed(not_claimed) => R::NotClaimed { not_claimed },
            FailReason::ServerRefunded => R::ServerRefunded,
            FailReason::TimedOut => R::TimedOut,
            FailReason::TooLateToPay => R::TooLateToPay,
        }
    }
}

/// Client loop-out states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    /// Preimage and key stored; asking the server.
    Created,
    /// Offer validated and stored; paying.
    OfferAccepted,
    /// Payments handed to the Lightning node.
    Paying,
    /// The server's HTLC is seen; waiting for confirmations.
    HtlcConfirming {
        /// The HTLC.
        outpoint: OutPoint,
        /// Its value.
        value: Amount,
    },
    /// Preimage revealed; claim broadcast and bumped until confirmed.
    Claiming {
        /// The HTLC.
        outpoint: OutPoint,
        /// Its value.
        value: Amount,
        /// The last claim broadcast.
        claim_txid: Option<Txid>,
    },
    /// Terminal: the claim is confirmed.
    Succeeded {
        /// The claim.
        claim_txid: Txid,
    },
    /// Terminal: failed.
    Failed(FailReason),
}

impl State {
    /// Whether no further event changes this state.
    pub fn is_terminal(&self) -> bool {
        matches!(self, State::Succeeded { .. } | State::Failed(_))
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The offer passed validation (and was stored).
    OfferValidated,
    /// The offer failed validation.
    OfferRejected,
    /// Both payments were handed to the node.
    PaymentsSent,
    /// The payments were not sent and the node has none in flight or made for either hash,
    /// at this tip: the machine fails the swap if too few blocks are left to pay (see
    /// [`pays_at`]).
    NotPaid {
        /// Current tip.
        height: BlockHeight,
    },
    /// A payment failed for good.
    PaymentFailed,
    /// The HTLC output was seen with this many confirmations (0 = mempool), and the
    /// "not worth claiming" rule's verdict at the current fee estimate.
    HtlcSeen {
        /// The HTLC.
        outpoint: OutPoint,
        /// Its value.
        value: Amount,
        /// Confirmations.
        confs: u32,
        /// Current tip.
        height: BlockHeight,
        /// `claim_decision`'s verdict.
        decision: Result<(), DontClaim>,
    },
    /// A new best block.
    Block {
        /// Its height.
        height: BlockHeight,
    },
    /// A claim was broadcast.
    ClaimBroadcast {
        /// Its txid.
        txid: Txid,
    },
    /// The claim confirmed.
    ClaimConfirmed {
        /// Its txid.
        txid: Txid,
        /// Confirmations.
        confs: u32,
    },
    /// The HTLC was spent by the server's refund, with this many confirmations.
    HtlcRefunded {
        /// Confirmations of the refund.
        confs: u32,
    },
    /// The HTLC being claimed is neither on the chain nor in the mempool (its funding was
    /// double-spent in a reorg).
    HtlcVanished {
        /// Current tip.
        height: BlockHeight,
        /// Another output of at least the amount paying the HTLC script now, if any (the one
        /// [`htlc_output`] picks): with the preimage out, the client claims it instead.
        replacement: Option<(OutPoint, Amount)>,
    },
}

/// What the daemon must do (each idempotent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Pay the swap and prepay invoices (idempotent per payment hash).
    PayInvoices,
    /// Reveal the preimage: push it to the server, claim cooperatively, else by script path.
    RevealAndClaim {
        /// The HTLC.
        outpoint: OutPoint,
    },
    /// Re-broadcast the claim, bumped by the fee schedule.
    BumpClaim {
        /// The HTLC.
        outpoint: OutPoint,
    },
}

/// The output the client takes for the swap's HTLC among those paying its script
/// (`(outpoint, value, confirmations)`): one of at least the amount (a smaller one is a
/// stranger's or a short HTLC, never claimed), the most confirmed, the lowest outpoint on a
/// tie. A stranger's unconfirmed output, however large, never displaces a confirmed HTLC.
pub fn htlc_output(
    outputs: impl IntoIterator<Item = (OutPoint, Amount, u32)>,
    amount: Amount,
) -> Option<(OutPoint, Amount, u32)> {
    outputs
        .into_iter()
        .filter(|(_, value, _)| *value >= amount)
        .max_by(|a, b| a.2.cmp(&b.2).then(b.0.cmp(&a.0)))
}

/// Whether the client may still send its payments at tip `height`: only with at least
/// [`MIN_LOOP_OUT_EXPIRY_DELTA`] blocks left before `E` (what the server needs at publication
/// plus the payment's arrival); paying later buys a swap that cannot complete.
pub fn pays_at(terms: &Terms, height: BlockHeight) -> bool {
    terms.expiry.saturating_sub(height) >= MIN_LOOP_OUT_EXPIRY_DELTA
}

/// The transition function.
pub fn transition(terms: &Terms, state: State, event: &Event) -> (State, Vec<Action>) {
    use State as S;
    if state.is_terminal() {
        return (state, vec![]);
    }
    if let Event::Block { height } = event {
        // Only while the preimage is secret: a revealed swap claims while it can.
        if *height >= terms.give_up_height() && !matches!(state, S::Claiming { .. }) {
            return (S::Failed(FailReason::TimedOut), vec![]);
        }
    }
    match (state, event) {
        (S::Created, Event::OfferValidated) => (S::OfferAccepted, vec![Action::PayInvoices]),
        (S::Created, Event::OfferRejected) => (S::Failed(FailReason::OfferRejected), vec![]),
        (S::OfferAccepted, Event::PaymentsSent) => (S::Paying, vec![]),
        (S::OfferAccepted, Event::NotPaid { height }) if !pays_at(terms, *height) => {
            (S::Failed(FailReason::TooLateToPay), vec![])
        }
        (S::OfferAccepted | S::Paying | S::HtlcConfirming { .. }, Event::PaymentFailed) => {
            (S::Failed(FailReason::PaymentFailed), vec![])
        }
        (
            state @ (S::OfferAccepted | S::Paying | S::HtlcConfirming { .. }),
            Event::HtlcSeen {
                outpoint,
                value,
                confs,
                height,
                decision,
            },
        ) => {
            if *value < terms.amount {
                // Never claimed. Not a failure either: anyone can pay the address, and failing
                // on a stranger's dust would let them grief the swap. Wait for an output that
                // pays the amount; without one the payments fail back.
                return (state, vec![]);
            }
            let confirming = S::HtlcConfirming {
                outpoint: *outpoint,
                value: *value,
            };
            let blocks_left = terms.expiry.saturating_sub(*height);
            if blocks_left < PREIMAGE_REVEAL_CUTOFF {
                return (
                    S::Failed(FailReason::NotClaimed(DontClaim::TooLate { blocks_left })),
                    vec![],
                );
            }
            if *confs < terms.required_confs() {
                return (confirming, vec![]);
            }
            match decision {
                Ok(()) => (
                    S::Claiming {
                        outpoint: *outpoint,
                        value: *value,
                        claim_txid: None,
                    },
                    vec![Action::RevealAndClaim { outpoint: *outpoint }],
                ),
                // A fee spike may pass: wait and re-evaluate at the next block.
                Err(DontClaim::FeeAboveLimit { .. }) => (confirming, vec![]),
                Err(d) => (S::Failed(FailReason::NotClaimed(*d)), vec![]),
            }
        }
        (S::Claiming { outpoint, value, .. }, Event::ClaimBroadcast { txid }) => (
            S::Claiming {
                outpoint,
                value,
                claim_txid: Some(*txid),
            },
            vec![],
        ),
        (s @ S::Claiming { .. }, Event::Block { .. }) => {
            let S::Claiming { outpoint, .. } = s else {
                unreachable!("matched above")
            };
            (s, vec![Action::BumpClaim { outpoint }])
        }
        (S::Claiming { .. }, Event::ClaimConfirmed { txid, confs }) if *confs >= SWEEP_FINAL_CONFS => {
            (S::Succeeded { claim_txid: *txid }, vec![])
        }
        // The server's refund ends the swap only once it is final: a reorg could undo it and
        // our claim (the preimage is out) must then still win.
        (S::Claiming { .. }, Event::HtlcRefunded { confs }) if *confs >= SWEEP_FINAL_CONFS => {
            (S::Failed(FailReason::ServerRefunded), vec![])
        }
        // The preimage is out: whatever pays the HTLC script now is ours to claim, at once (a
        // server that double-spent its HTLC in a reorg and paid the address again).
        (
            S::Claiming { .. },
            Event::HtlcVanished {
                replacement: Some((outpoint, value)),
                ..
            },
        ) if *value >= terms.amount => (
            S::Claiming {
                outpoint: *outpoint,
                value: *value,
                claim_txid: None,
            },
            vec![Action::BumpClaim { outpoint: *outpoint }],
        ),
        (S::Claiming { .. }, Event::HtlcVanished { height, replacement })
            if replacement.is_none_or(|(_, v)| v < terms.amount) && *height >= terms.give_up_height() =>
        {
            (S::Failed(FailReason::TimedOut), vec![])
        }
        (s, _) => (s, vec![]),
    }
}

/// What a restart does again (see [`crate::sm::Machine::resume`]): nothing before the first
/// pass. Paying needs a usable channel and the payment deadline's tip, a claim the HTLC's
/// confirmations (before the reveal) or the block's fee view (its bumps, asked for by every
/// [`Event::Block`] while `Claiming`).
pub fn resume(_state: &State) -> Vec<Action> {
    vec![]
}

crate::sm::machine!(
    /// This machine — a loop-out, client side — for the generic runner.
    LoopOutClientMachine,
    (),
    |terms, state, _view, event| transition(terms, state, event)
);

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
            htlc_confs: 1,
            payment_timeout: 620,
        }
    }

    fn op() -> OutPoint {
        OutPoint {
            txid: Txid::all_zeros(),
            vout: 0,
        }
    }

    fn event() -> impl Strategy<Value = Event> {
        let dc = prop_oneof![
            Just(Ok(())),
            Just(Err(DontClaim::FeeAboveLimit {
                fee: Amount::from_sat(5),
                max_fee: Amount::ONE_SAT
            })),
            Just(Err(DontClaim::NotWorthIt {
                value: Amount::ONE_SAT,
                fee: Amount::ONE_SAT
            })),
        ];
        prop_oneof![
            Just(Event::OfferValidated),
            Just(Event::OfferRejected),
            Just(Event::PaymentsSent),
            Just(Event::PaymentFailed),
            (90_000u64..110_000, 0u32..4, height(), dc).prop_map(|(v, confs, h, decision)| Event::HtlcSeen {
                outpoint: op(),
                value: Amount::from_sat(v),
                confs,
                height: h,
                decision
            }),
            height().prop_map(|height| Event::Block { height }),
            Just(Event::ClaimBroadcast {
                txid: Txid::all_zeros()
            }),
            (0u32..5).prop_map(|confs| Event::ClaimConfirmed {
                txid: Txid::all_zeros(),
                confs
            }),
            (0u32..5).prop_map(|confs| Event::HtlcRefunded { confs }),
        ]
    }

    #[test]
    fn happy_path() {
        let t = terms();
        let mut s = State::Created;
        let steps = [
            (Event::OfferValidated, vec![Action::PayInvoices]),
            (Event::PaymentsSent, vec![]),
            (
                Event::HtlcSeen {
                    outpoint: op(),
                    value: t.amount,
                    confs: 0,
                    height: 420,
                    decision: Ok(()),
                },
                vec![],
            ),
            (
                Event::HtlcSeen {
                    outpoint: op(),
                    value: t.amount,
                    confs: 1,
                    height: 421,
                    decision: Ok(()),
                },
                vec![Action::RevealAndClaim { outpoint: op() }],
            ),
            (Event::Block { height: 422 }, vec![Action::BumpClaim { outpoint: op() }]),
            (
                Event::ClaimConfirmed {
                    txid: Txid::all_zeros(),
                    confs: 3,
                },
                vec![],
            ),
        ];
        for (e, want) in steps {
            let (next, actions) = transition(&t, s, &e);
            assert_eq!(actions, want, "after {e:?}");
            s = next;
        }
        assert_eq!(
            s,
            State::Succeeded {
                claim_txid: Txid::all_zeros()
            }
        );
    }

    /// A failed swap's state reads back, `NotClaimed` included (it used to be written with
    /// two `reason` keys, the inner one winning, and could not be read), and the records
    /// written that way read again.
    #[test]
    fn fail_reasons_round_trip_through_the_store_format() {
        for r in [
            FailReason::TimedOut,
            FailReason::PaymentFailed,
            FailReason::NotClaimed(DontClaim::TooLate { blocks_left: 19 }),
            FailReason::NotClaimed(DontClaim::NotWorthIt {
                value: Amount::from_sat(5),
                fee: Amount::from_sat(6),
            }),
        ] {
            let v = serde_json::to_value(State::Failed(r)).expect("json");
            assert_eq!(v["state"], "failed");
            assert_eq!(
                serde_json::from_value::<State>(v).expect("reads back"),
                State::Failed(r)
            );
        }
        let old = serde_json::json!({"state": "failed", "reason": "too_late", "blocks_left": 19});
        assert_eq!(
            serde_json::from_value::<State>(old).expect("old record"),
            State::Failed(FailReason::NotClaimed(DontClaim::TooLate { blocks_left: 19 }))
        );
        let old = serde_json::json!({"state": "failed", "reason": "timed_out"});
        assert_eq!(
            serde_json::from_value::<State>(old).expect("old record"),
            State::Failed(FailReason::TimedOut)
        );
    }

    #[test]
    fn refuses_underpaid_and_late_htlcs() {
        let t = terms();
        let under = Event::HtlcSeen {
            outpoint: op(),
            value: Amount::from_sat(99_999),
            confs: 6,
            height: 420,
            decision: Ok(()),
        };
        assert_eq!(transition(&t, State::Paying, &under), (State::Paying, vec![]));
        let late = Event::HtlcSeen {
            outpoint: op(),
            value: t.amount,
            confs: 6,
            height: 481,
            decision: Ok(()),
        };
        let (s, a) = transition(&t, State::Paying, &late);
        assert!(a.is_empty());
        assert_eq!(
            s,
            State::Failed(FailReason::NotClaimed(DontClaim::TooLate { blocks_left: 19 }))
        );
    }

    proptest! {
        #[test]
        fn ends_on_timeout_and_never_reveals_unsafely(events in proptest::collection::vec(event(), 0..40)) {
            let t = terms();
            let mut s = State::Created;
            let mut since = vec![];
            for e in events.iter().chain([Event::Block { height: t.give_up_height() }].iter()) {
                let (next, actions) = transition(&t, s.clone(), e);
                crate::sm::testing::resume_repeats_only(&s, &next, &actions, &mut since, resume(&next))?;
                for a in &actions {
                    if let Action::RevealAndClaim { .. } = a {
                        let Event::HtlcSeen { value, confs, height, .. } = e else {
                            return Err(TestCaseError::fail("reveal without an HTLC event"));
                        };
                        prop_assert!(*confs >= 1 && *value >= t.amount);
                        prop_assert!(t.expiry - height >= PREIMAGE_REVEAL_CUTOFF);
                    }
                }
                s = next;
            }
            // Ends by the give-up height unless the preimage is out: then it claims on.
            prop_assert!(s.is_terminal() || matches!(s, State::Claiming { .. }), "{s:?}");
        }
    }

    /// Review finding 4: a stored, unpaid loop-out is paid only while the swap can still
    /// complete; past that it fails without paying (and the give-up height still ends it).
    #[test]
    fn too_late_to_pay_fails_without_paying() {
        let t = terms();
        let last_ok = t.expiry - MIN_LOOP_OUT_EXPIRY_DELTA;
        assert!(pays_at(&t, last_ok) && !pays_at(&t, last_ok + 1));
        let (s, a) = transition(&t, State::OfferAccepted, &Event::NotPaid { height: last_ok });
        assert_eq!((s, a), (State::OfferAccepted, vec![]));
        let (s, a) = transition(&t, State::OfferAccepted, &Event::NotPaid { height: last_ok + 1 });
        assert_eq!((s.clone(), a), (State::Failed(FailReason::TooLateToPay), vec![]));
        let stored = serde_json::to_value(&s).expect("json");
        assert_eq!(
            stored,
            serde_json::json!({"state": "failed", "reason": "too_late_to_pay"})
        );
        assert_eq!(serde_json::from_value::<State>(stored).expect("reads back"), s);
        let (s, _) = transition(
            &t,
            State::OfferAccepted,
            &Event::Block {
                height: t.give_up_height(),
            },
        );
        assert_eq!(s, State::Failed(FailReason::TimedOut));
    }

    /// Review finding 6: a stranger's unconfirmed output, however large, does not displace the
    /// confirmed HTLC; short outputs are never taken; ties go to the lowest outpoint.
    #[test]
    fn the_htlc_is_the_most_confirmed_output_of_the_amount() {
        let amount = Amount::from_sat(100_000);
        let o = |vout| OutPoint {
            txid: Txid::all_zeros(),
            vout,
        };
        let a = |s| Amount::from_sat(s);
        let htlc = (o(1), a(100_000), 2);
        let stranger = (o(2), a(5_000_000), 0);
        assert_eq!(htlc_output([stranger, htlc], amount), Some(htlc));
        assert_eq!(htlc_output([htlc, stranger], amount), Some(htlc));
        assert_eq!(htlc_output([(o(3), a(99_999), 9)], amount), None, "short");
        assert_eq!(
            htlc_output([(o(5), a(100_000), 1), (o(4), a(100_001), 1)], amount),
            Some((o(4), a(100_001), 1)),
            "tie: lowest outpoint"
        );
        // Claiming: the HTLC vanished and only a short output pays the script: not a
        // replacement.
        let t = terms();
        let s = State::Claiming {
            outpoint: o(1),
            value: amount,
            claim_txid: None,
        };
        let e = Event::HtlcVanished {
            height: 510,
            replacement: Some((o(3), a(99_999))),
        };
        assert_eq!(transition(&t, s.clone(), &e), (s, vec![]));
    }
}
