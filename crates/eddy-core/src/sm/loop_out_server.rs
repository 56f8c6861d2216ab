//! Loop-out, server side.
//!
//! ```text
//!  Created ──both HTLCs accepted, checks ok──▶ Publishing ──HTLC broadcast──▶ Published
//!     │ deadline passed / checks fail                                          │    │ tip ≥ E
//!     ▼                                                                        │    ▼
//!  Canceled (both invoices canceled)                         preimage learned  │  Refunding ──refund final──▶ Refunded
//!                                                                              ▼    │ preimage learned        (swap invoice canceled)
//!                                            Succeeded ◀──settled── PreimageKnown ◀─┘
//!                                                                  │ swap invoice gone (failed back)
//!                                                                  ▼
//!                          Refunded ◀──refund final── Reclaiming ──client's claim buried──▶ ClaimedUnsettled
//! ```
//! Rules: publish only after *both* invoices' HTLCs are accepted and the swap HTLC's claim
//! deadline leaves `SERVER_SETTLE_MARGIN` over `E` (free-option protection), and only while
//! [`Terms::may_publish`] (at least `MIN_BLOCKS_LEFT_AT_PUBLICATION` blocks before `E`) — checked
//! at acceptance *and* again at broadcast ([`Event::NoHtlcOnChain`]: the engine asks right
//! before building a new HTLC transaction, after adopting any output already paying the
//! script); settle the prepay only for an HTLC broadcast inside that window (an HTLC adopted
//! later releases the prepay); settle the swap invoice as soon as the preimage is known before
//! `E` (after `E`, only once the client's claim is confirmed: a late push does not stop the
//! refund), and from then on never refund — unless the invoice can no longer be settled
//! ([`Event::SwapInvoiceGone`]), then keep refunding (`Reclaiming`); cancel the swap invoice
//! only after the refund is final. Settling and canceling the swap invoice are mutually
//! exclusive.
//!
//! **Never terminal while the server can spend an output**: the give-up height only cancels a
//! swap that never published (`Created`); a published HTLC ends when it is spent — by the
//! client's claim (preimage → settle) or by the server's refund buried `REORG_SAFETY_DEPTH`
//! deep. `TimedOut` is kept for old records only; no transition enters it.

use bitcoin::Txid;
use serde::{Deserialize, Serialize};

use crate::constants::{
    LOOP_OUT_PUBLICATION_DEADLINE, MIN_BLOCKS_LEFT_AT_PUBLICATION, REORG_SAFETY_DEPTH, SERVER_SETTLE_MARGIN,
    SETTLE_LATENCY, SPEND_CONFIRM_BUDGET,
};
use crate::types::{BlockHeight, Preimage};
use crate::validate::check_accepted_htlc;

/// The swap's fixed data the machine needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// Expected swap invoice amount (msat).
    pub swap_invoice_msat: u64,
    /// Expected prepay amount (msat).
    pub prepay_msat: u64,
    /// HTLC expiry `E`.
    pub expiry: BlockHeight,
    /// Height at which the swap was created.
    pub created_height: BlockHeight,
    /// For an HTLC whose refund is *relative* (seed 000's BIP199 script: `OP_CSV`), the delay
    /// in blocks after the HTLC's confirmation before the refund can confirm. Such a swap is
    /// published only until [`Terms::publication_deadline`] (the expiry's derivation assumes
    /// it, see `SEED_LOOP_OUT_EXPIRY_DELTA`) and refunds only from the later of `E` and the
    /// HTLC's confirmation height plus this delay. `None`: an absolute refund at `E`.
    #[serde(default)]
    pub relative_refund: Option<u32>,
}

impl Terms {
    /// Past this height the machine gives up.
    pub fn give_up_height(&self) -> BlockHeight {
        self.expiry + SERVER_SETTLE_MARGIN + SPEND_CONFIRM_BUDGET + REORG_SAFETY_DEPTH
    }

    /// If the client has not paid by this height, cancel.
    pub fn publication_deadline(&self) -> BlockHeight {
        self.created_height + LOOP_OUT_PUBLICATION_DEADLINE
    }

    /// Whether an HTLC may be (and a prepay earned by one) broadcast at `tip`: at least
    /// [`MIN_BLOCKS_LEFT_AT_PUBLICATION`] blocks before `E`, so that it confirms and reaches the
    /// client's confirmations while the client can still claim.
    ///
    /// A relative-refund (seed) HTLC may be published only before
    /// [`Terms::publication_deadline`]: its refund becomes valid only `relative_refund` blocks
    /// after it confirms, and `SEED_LOOP_OUT_EXPIRY_DELTA` is derived from that deadline.
    pub fn may_publish(&self, tip: BlockHeight) -> bool {
        let relative_ok = self.relative_refund.is_none() || tip < self.publication_deadline();
        relative_ok && self.expiry.saturating_sub(tip) >= MIN_BLOCKS_LEFT_AT_PUBLICATION
    }

    /// The first height at which the refund of an HTLC confirmed at `confirmed_at` can be
    /// broadcast and mined: `E` for an absolute refund, the later of `E` and
    /// `confirmed_at + relative_refund` for a relative one (`None` while the HTLC is
    /// unconfirmed: a relative refund cannot start before the HTLC confirms).
    pub fn refund_height(&self, confirmed_at: Option<BlockHeight>) -> Option<BlockHeight> {
        match self.relative_refund {
            None => Some(self.expiry),
            Some(csv) => confirmed_at.map(|h| self.expiry.max(h + csv)),
        }
    }
}

/// Why the server canceled before publishing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum CancelReason {
    /// The client did not pay in time.
    PublicationDeadline,
    /// Our HTLC publication can no longer confirm (its inputs were spent by a confirmed
    /// conflicting transaction) and no new one may be made (outside the window, or already
    /// refunding): the swap invoice is canceled (the client's payment returns); nothing of
    /// ours is on chain to refund.
    PublicationLost,
    /// The accepted HTLC failed `check_accepted_htlc`.
    HtlcRejected,
    /// The held prepay could no longer be settled (its deadline less [`SETTLE_LATENCY`]) by
    /// the time the HTLC could be published (e.g. the swap wallet was short): nothing
    /// published, both invoices canceled — publishing then would give the client a free
    /// option.
    PrepayExpired,
    /// No HTLC was on chain or in the mempool when the publication window
    /// ([`Terms::may_publish`]) had closed (e.g. the server was down): nothing published,
    /// both invoices canceled.
    PublicationWindowMissed,
}

/// Server loop-out states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    /// Invoices created; waiting for the client's HTLCs.
    Created {
        /// Swap HTLC accepted: (amount msat, claim deadline).
        swap_accepted: Option<(u64, BlockHeight)>,
        /// Prepay HTLC accepted (amount msat).
        prepay_accepted: Option<u64>,
        /// The accepted prepay's settle deadline (the node fails it back at this height);
        /// `None` in records older than the field (re-read from the node while `Created`).
        #[serde(default)]
        prepay_deadline: Option<BlockHeight>,
    },
    /// Checks passed; broadcasting the HTLC.
    Publishing {
        /// The accepted prepay's settle deadline: no publication from
        /// `prepay_deadline - SETTLE_LATENCY` on (the prepay could no longer be settled, a free
        /// option). `None`: no prepay, or a record older than the field.
        #[serde(default)]
        prepay_deadline: Option<BlockHeight>,
    },
    /// HTLC broadcast; waiting for the preimage.
    Published {
        /// The HTLC transaction.
        txid: Txid,
    },
    /// Past `E` without the preimage: sweeping the refund path.
    Refunding {
        /// The HTLC transaction.
        txid: Txid,
    },
    /// Preimage known: settling the swap invoice.
    PreimageKnown {
        /// The preimage (stored so settlement can be retried after a restart).
        preimage: Preimage,
    },
    /// Terminal: swap invoice settled.
    Succeeded,
    /// Terminal: refund final and swap invoice canceled.
    Refunded,
    /// Terminal: canceled before publishing.
    Canceled(CancelReason),
    /// Terminal (old records only; never entered now): the give-up height passed.
    TimedOut,
    /// The preimage is known but the swap invoice can no longer be settled (its HTLC was
    /// failed back): the server refunds its HTLC as in `Refunding` (from `E` on).
    Reclaiming,
    /// Terminal: the client's claim took the HTLC (buried) but the swap invoice could no
    /// longer be settled.
    ClaimedUnsettled,
}

impl State {
    /// The initial state.
    pub fn new() -> State {
        State::Created {
            swap_accepted: None,
            prepay_accepted: None,
            prepay_deadline: None,
        }
    }

    /// Whether no further event changes this state.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            State::Succeeded | State::Refunded | State::Canceled(_) | State::TimedOut | State::ClaimedUnsettled
        )
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The swap invoice's HTLC(s) are accepted (held).
    SwapAccepted {
        /// Total received.
        amount_msat: u64,
        /// Earliest height at which the node would fail them back.
        claim_deadline: BlockHeight,
    },
    /// The prepay invoice's HTLC(s) are accepted.
    PrepayAccepted {
        /// Total received.
        amount_msat: u64,
        /// Earliest height at which the node would fail them back.
        claim_deadline: BlockHeight,
    },
    /// A new best block.
    Block {
        /// Its height.
        height: BlockHeight,
    },
    /// The HTLC transaction was broadcast (or an output paying the script adopted) at `height`.
    HtlcBroadcast {
        /// Its txid.
        txid: Txid,
        /// The tip at broadcast (or adoption).
        height: BlockHeight,
    },
    /// The engine synced the chain and mempool right before publishing and found no output
    /// paying the HTLC script: may it publish now, at `height`?
    NoHtlcOnChain {
        /// Current tip.
        height: BlockHeight,
    },
    /// The swap invoice can no longer be settled (canceled or its HTLC failed back).
    SwapInvoiceGone,
    /// Our HTLC output is confirmed, in the block at `height` (the engine reports it every
    /// pass while the swap is published; a relative refund counts from it).
    HtlcConfirmed {
        /// Height of the block that confirmed it.
        height: BlockHeight,
    },
    /// Our HTLC publication (every transaction of ours paying it) can no longer confirm: its
    /// inputs were spent by a confirmed transaction that is not ours.
    PublicationLost,
    /// The client's claim (a spend of the HTLC revealing the preimage) was seen on chain or in
    /// the mempool, with this many confirmations.
    HtlcClaimed {
        /// The preimage its witness reveals.
        preimage: Preimage,
        /// Confirmations (0: in the mempool).
        confs: u32,
    },
    /// A preimage hashing to the swap's hash was learned (API push, mempool, block).
    PreimageLearned(Preimage),
    /// The swap invoice is settled (the node reports the payment received).
    SwapSettled,
    /// The refund has this many confirmations.
    RefundConfirmed {
        /// Confirmations.
        confs: u32,
    },
    /// The node still holds the prepay's HTLC(s) after the swap's HTLC was published (the
    /// engine reports it every pass until the prepay is settled or canceled).
    PrepayHeld {
        /// The tip when our HTLC was published (`None`: a record from before it was kept).
        published_at: Option<BlockHeight>,
    },
}

/// What the daemon must do (each idempotent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Hand the swap to the publisher: it adopts an HTLC output of ours already on chain or in
    /// the mempool (re-broadcasting a stored publication), else asks the machine once more
    /// ([`Event::NoHtlcOnChain`]) right before building a new one, then stores and broadcasts
    /// it (batched with the other swaps waiting).
    PublishHtlc,
    /// Settle the prepay invoice.
    SettlePrepay,
    /// Cancel the prepay invoice (an HTLC adopted after the publication window earns nothing).
    CancelPrepay,
    /// Settle the swap invoice with the preimage.
    SettleSwap(Preimage),
    /// Cancel both invoices (before publication).
    CancelInvoices,
    /// Cancel the swap invoice after a final refund.
    CancelSwap,
    /// Broadcast or bump the refund sweep.
    BroadcastRefund,
}

/// Whether a prepay held until `deadline` (`None`: no prepay, or unknown in an old record) can
/// still be settled when the HTLC is published at `height`: settling takes up to
/// [`SETTLE_LATENCY`] blocks, and the node fails the HTLC back at `deadline` (the same rule as
/// the swap HTLC's `SERVER_SETTLE_MARGIN`, whose last term is that latency).
pub fn prepay_settleable(deadline: Option<BlockHeight>, height: BlockHeight) -> bool {
    deadline.is_none_or(|d| height.saturating_add(SETTLE_LATENCY) <= d)
}

/// The transition function. `tip` is the current best height.
pub fn transition(terms: &Terms, state: State, event: &Event, tip: BlockHeight) -> (State, Vec<Action>) {
    use State as S;
    if state.is_terminal() {
        return (state, vec![]);
    }
    if let Event::Block { height } = event {
        // Give up only waiting for the client's payment: a published HTLC ends when spent.
        if *height >= terms.give_up_height() && matches!(state, S::Created { .. }) {
            return (
                S::Canceled(CancelReason::PublicationDeadline),
                vec![Action::CancelInvoices],
            );
        }
    }
    match (state, event) {
        (
            S::Created {
                swap_accepted,
                prepay_accepted,
                prepay_deadline,
            },
            e @ (Event::SwapAccepted { .. } | Event::PrepayAccepted { .. }),
        ) => {
            let (swap, prepay, prepay_deadline) = match e {
                Event::SwapAccepted {
                    amount_msat,
                    claim_deadline,
                } => (Some((*amount_msat, *claim_deadline)), prepay_accepted, prepay_deadline),
                Event::PrepayAccepted {
                    amount_msat,
                    claim_deadline,
                } => (swap_accepted, Some(*amount_msat), Some(*claim_deadline)),
                _ => (swap_accepted, prepay_accepted, prepay_deadline),
            };
            // A swap without a prepay (seed 000's exchange) waits for the swap HTLC only.
            let prepay = prepay.or((terms.prepay_msat == 0).then_some(0));
            let prepay_deadline = prepay_deadline.filter(|_| terms.prepay_msat > 0);
            match (swap, prepay) {
                (Some((amount, deadline)), Some(prepay_amount)) => {
                    // Like the swap HTLC's, the prepay's deadline is checked at acceptance: it
                    // must still be settleable if the HTLC is published now.
                    let ok = prepay_amount >= terms.prepay_msat
                        && prepay_settleable(prepay_deadline, tip)
                        && check_accepted_htlc(amount, terms.swap_invoice_msat, deadline, terms.expiry, tip).is_ok();
                    if ok {
                        (S::Publishing { prepay_deadline }, vec![Action::PublishHtlc])
                    } else {
                        (S::Canceled(CancelReason::HtlcRejected), vec![Action::CancelInvoices])
                    }
                }
                _ => (
                    S::Created {
                        swap_accepted: swap,
                        prepay_accepted: prepay,
                        prepay_deadline,
                    },
                    vec![],
                ),
            }
        }
        (S::Created { .. }, Event::Block { height }) if *height >= terms.publication_deadline() => (
            S::Canceled(CancelReason::PublicationDeadline),
            vec![Action::CancelInvoices],
        ),
        // The window is judged at the later of the event's height and the tip the caller
        // passes: a stale height (an event built before a block arrived) never reopens it.
        // The prepay must also still be settleable: a swap the wallet could not fund in time
        // ends once the prepay would expire before it is earned (review #12).
        (S::Publishing { prepay_deadline }, Event::NoHtlcOnChain { height })
            if terms.may_publish((*height).max(tip)) =>
        {
            if prepay_settleable(prepay_deadline, (*height).max(tip)) {
                (S::Publishing { prepay_deadline }, vec![Action::PublishHtlc])
            } else {
                (S::Canceled(CancelReason::PrepayExpired), vec![Action::CancelInvoices])
            }
        }
        (S::Publishing { .. }, Event::NoHtlcOnChain { .. }) => (
            S::Canceled(CancelReason::PublicationWindowMissed),
            vec![Action::CancelInvoices],
        ),
        // Until the publisher has broadcast (or adopted) ours, every block hands the swap to it
        // again (a wallet short of funds, a failed write, a restart): a *new* transaction is
        // still made only after `NoHtlcOnChain` inside the window.
        (s @ S::Publishing { .. }, Event::Block { .. }) => (s, vec![Action::PublishHtlc]),
        // After a publication inside the window the prepay is ours: settle it whenever the node
        // still holds it (until its deadline: the HTLC is out, the option is gone), before the
        // swap invoice's settlement can end the swap, or a settlement lost to a crash is never
        // made again; one adopted after the window is released (as at the broadcast).
        (
            s @ (S::Published { .. } | S::Refunding { .. } | S::PreimageKnown { .. } | S::Reclaiming),
            Event::PrepayHeld { published_at },
        ) if terms.prepay_msat > 0 => {
            if published_at.is_none_or(|h| terms.may_publish(h)) {
                (s, vec![Action::SettlePrepay])
            } else {
                (s, vec![Action::CancelPrepay])
            }
        }
        (S::Publishing { prepay_deadline }, Event::HtlcBroadcast { txid, height })
            if terms.may_publish((*height).max(tip)) && prepay_settleable(prepay_deadline, (*height).max(tip)) =>
        {
            (S::Published { txid: *txid }, vec![Action::SettlePrepay])
        }
        (S::Publishing { .. }, Event::HtlcBroadcast { txid, .. }) => {
            (S::Published { txid: *txid }, vec![Action::CancelPrepay])
        }
        (S::Published { txid }, Event::Block { height })
            if terms.relative_refund.is_none() && *height >= terms.expiry =>
        {
            (S::Refunding { txid }, vec![Action::BroadcastRefund])
        }
        // A relative refund is valid only `relative_refund` blocks after the HTLC confirmed:
        // until then the server keeps settling on any preimage (no refund of ours can win).
        (S::Published { txid }, Event::HtlcConfirmed { height })
            if terms
                .refund_height(Some(*height))
                .is_some_and(|r| (*height).max(tip) >= r) =>
        {
            (S::Refunding { txid }, vec![Action::BroadcastRefund])
        }
        // Our publication can no longer confirm: publish again inside the window, else end
        // (the client's payment returns; nothing of ours is on chain).
        // (The prepay was settled or released at the first publication: no deadline left.)
        (S::Published { .. }, Event::PublicationLost) if terms.may_publish(tip) => {
            (S::Publishing { prepay_deadline: None }, vec![Action::PublishHtlc])
        }
        (S::Published { .. } | S::Refunding { .. }, Event::PublicationLost) => {
            (S::Canceled(CancelReason::PublicationLost), vec![Action::CancelSwap])
        }
        (S::Refunding { txid }, Event::Block { .. }) => (S::Refunding { txid }, vec![Action::BroadcastRefund]),
        // Before `E` no refund can confirm: settle on any preimage (pushed or seen).
        (S::Published { .. }, Event::PreimageLearned(p) | Event::HtlcClaimed { preimage: p, .. }) => {
            (S::PreimageKnown { preimage: *p }, vec![Action::SettleSwap(*p)])
        }
        // After `E` the server's refund is in flight: a preimage pushed late does not stop it
        // (settling then could take the invoice *and* the refund); only the client's claim
        // confirmed on chain — the HTLC is then spent, no refund can confirm — is paid for.
        (S::Refunding { .. }, Event::HtlcClaimed { preimage, confs }) if *confs >= 1 => (
            S::PreimageKnown { preimage: *preimage },
            vec![Action::SettleSwap(*preimage)],
        ),
        (S::PreimageKnown { preimage }, Event::Block { .. }) => {
            (S::PreimageKnown { preimage }, vec![Action::SettleSwap(preimage)])
        }
        (S::PreimageKnown { .. }, Event::SwapSettled) => (S::Succeeded, vec![]),
        // The preimage came too late to be paid for: the HTLC is still ours to refund.
        (S::PreimageKnown { .. }, Event::SwapInvoiceGone) => (S::Reclaiming, vec![Action::BroadcastRefund]),
        (S::Reclaiming, Event::Block { height }) if *height >= terms.expiry => {
            (S::Reclaiming, vec![Action::BroadcastRefund])
        }
        (S::Reclaiming, Event::RefundConfirmed { confs }) if *confs >= REORG_SAFETY_DEPTH => {
            (S::Refunded, vec![Action::CancelSwap])
        }
        (S::Reclaiming, Event::HtlcClaimed { confs, .. }) if *confs >= REORG_SAFETY_DEPTH => {
            (S::ClaimedUnsettled, vec![])
        }
        (S::Refunding { .. }, Event::RefundConfirmed { confs }) if *confs >= REORG_SAFETY_DEPTH => {
            (S::Refunded, vec![Action::CancelSwap])
        }
        (s, _) => (s, vec![]),
    }
}

/// What a restart does again (see [`crate::sm::Machine::resume`]): hand a swap still
/// `Publishing` to the publisher (which adopts a publication of ours before making any), settle
/// the swap invoice for a known preimage, carry on a refund past `E`. A held prepay waits for
/// the first pass ([`Event::PrepayHeld`] needs the node's word), and so does `Reclaiming` (its
/// refund waits for `E`, which only a block tells).
pub fn resume(state: &State) -> Vec<Action> {
    match state {
        State::Publishing { .. } => vec![Action::PublishHtlc],
        State::PreimageKnown { preimage } => vec![Action::SettleSwap(*preimage)],
        State::Refunding { .. } => vec![Action::BroadcastRefund],
        _ => vec![],
    }
}

crate::sm::machine!(
    /// This machine — a loop-out, server side (its view: the tip) — for the generic runner.
    LoopOutServerMachine,
    BlockHeight,
    |terms, state, tip, event| transition(terms, state, event, *tip)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sm::testing::height;
    use bitcoin::hashes::Hash;
    use proptest::prelude::*;

    fn terms() -> Terms {
        Terms {
            swap_invoice_msat: 100_000_000,
            prepay_msat: 1_000_000,
            expiry: 500,
            created_height: 420,
            relative_refund: None,
        }
    }

    fn seed_terms() -> Terms {
        Terms {
            prepay_msat: 0,
            expiry: 420 + crate::constants::SEED_LOOP_OUT_EXPIRY_DELTA,
            relative_refund: Some(crate::constants::SEED_CSV_DELAY),
            ..terms()
        }
    }

    /// Review #1: a seed HTLC is published only before created + LOOP_OUT_PUBLICATION_DEADLINE
    /// (not until E − MIN_BLOCKS_LEFT_AT_PUBLICATION); its refund starts at the HTLC's
    /// confirmation + SEED_CSV_DELAY, not at E, and until then any preimage settles.
    #[test]
    fn seed_publishes_by_the_deadline_and_refunds_after_the_csv() {
        let t = seed_terms();
        let last = t.publication_deadline() - 1;
        assert!(t.may_publish(last));
        assert!(!t.may_publish(last + 1));
        assert_eq!(
            transition(
                &t,
                State::Publishing { prepay_deadline: None },
                &Event::NoHtlcOnChain { height: last + 1 },
                last + 1
            )
            .0,
            State::Canceled(CancelReason::PublicationWindowMissed)
        );
        // Published at the last height, confirmed 10 blocks later: refund only from conf + CSV.
        let s = State::Published {
            txid: Txid::all_zeros(),
        };
        let conf = last + 10;
        let refund_at = conf + crate::constants::SEED_CSV_DELAY;
        assert!(refund_at > t.expiry, "the attack needs a refund later than E");
        let (s, a) = transition(&t, s, &Event::Block { height: t.expiry }, t.expiry);
        assert!(matches!(s, State::Published { .. }) && a.is_empty(), "{s:?}");
        let (s2, a) = transition(&t, s.clone(), &Event::HtlcConfirmed { height: conf }, refund_at - 1);
        assert!(matches!(s2, State::Published { .. }) && a.is_empty(), "{s2:?}");
        // Past E, before the refund is valid: a pushed preimage is still settled.
        let p = Preimage::from_bytes([1; 32]);
        assert_eq!(
            transition(&t, s.clone(), &Event::PreimageLearned(p), refund_at - 1),
            (State::PreimageKnown { preimage: p }, vec![Action::SettleSwap(p)])
        );
        let (s3, a) = transition(&t, s, &Event::HtlcConfirmed { height: conf }, refund_at);
        assert!(matches!(s3, State::Refunding { .. }), "{s3:?}");
        assert_eq!(a, vec![Action::BroadcastRefund]);
    }

    /// Review #2/#3: a publication of ours that can no longer confirm is made again inside
    /// the window; outside it (or when refunding) the swap ends, its invoice canceled.
    #[test]
    fn lost_publication_republishes_or_ends() {
        let t = terms();
        let s = State::Published {
            txid: Txid::all_zeros(),
        };
        assert_eq!(
            transition(&t, s.clone(), &Event::PublicationLost, 440),
            (State::Publishing { prepay_deadline: None }, vec![Action::PublishHtlc])
        );
        assert_eq!(
            transition(&t, s, &Event::PublicationLost, 480),
            (State::Canceled(CancelReason::PublicationLost), vec![Action::CancelSwap])
        );
        let r = State::Refunding {
            txid: Txid::all_zeros(),
        };
        assert_eq!(
            transition(&t, r, &Event::PublicationLost, 501),
            (State::Canceled(CancelReason::PublicationLost), vec![Action::CancelSwap])
        );
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (99_000_000u64..101_000_000, height()).prop_map(|(amount_msat, claim_deadline)| Event::SwapAccepted {
                amount_msat,
                claim_deadline
            }),
            (0u64..2_000_000, height()).prop_map(|(amount_msat, claim_deadline)| Event::PrepayAccepted {
                amount_msat,
                claim_deadline
            }),
            height().prop_map(|height| Event::Block { height }),
            height().prop_map(|height| Event::HtlcBroadcast {
                txid: Txid::all_zeros(),
                height
            }),
            height().prop_map(|height| Event::NoHtlcOnChain { height }),
            Just(Event::SwapInvoiceGone),
            height().prop_map(|height| Event::HtlcConfirmed { height }),
            Just(Event::PublicationLost),
            (0u32..8).prop_map(|confs| Event::HtlcClaimed {
                preimage: Preimage::from_bytes([1; 32]),
                confs
            }),
            Just(Event::PreimageLearned(Preimage::from_bytes([1; 32]))),
            Just(Event::SwapSettled),
            (0u32..8).prop_map(|confs| Event::RefundConfirmed { confs }),
            proptest::option::of(height()).prop_map(|published_at| Event::PrepayHeld { published_at }),
        ]
    }

    #[test]
    fn publishes_only_with_margin() {
        let t = terms();
        let s = State::new();
        let prepay = Event::PrepayAccepted {
            amount_msat: 1_000_000,
            claim_deadline: 480,
        };
        let (s, a) = transition(&t, s, &prepay, 421);
        assert!(a.is_empty());
        let short = Event::SwapAccepted {
            amount_msat: 100_000_000,
            claim_deadline: 514,
        };
        assert_eq!(
            transition(&t, s.clone(), &short, 421),
            (
                State::Canceled(CancelReason::HtlcRejected),
                vec![Action::CancelInvoices]
            )
        );
        let ok = Event::SwapAccepted {
            amount_msat: 100_000_000,
            claim_deadline: 515,
        };
        assert_eq!(
            transition(&t, s, &ok, 421),
            (
                State::Publishing {
                    prepay_deadline: Some(480)
                },
                vec![Action::PublishHtlc]
            )
        );
    }

    /// Review #12: the prepay's held HTLC deadline is checked at acceptance, and a swap waiting
    /// in `Publishing` (wallet short) ends — nothing published, both invoices canceled — once
    /// the prepay could no longer be settled before its deadline; a late broadcast of ours
    /// releases the prepay instead of settling it.
    #[test]
    fn prepay_deadline_bounds_the_publication() {
        let t = terms();
        let swap = Event::SwapAccepted {
            amount_msat: t.swap_invoice_msat,
            claim_deadline: t.expiry + SERVER_SETTLE_MARGIN,
        };
        let prepay = |claim_deadline| Event::PrepayAccepted {
            amount_msat: t.prepay_msat,
            claim_deadline,
        };
        // At acceptance: a prepay that cannot be settled now is refused like a short swap HTLC.
        let (s, _) = transition(&t, State::new(), &swap, 430);
        assert_eq!(
            transition(&t, s.clone(), &prepay(430 + SETTLE_LATENCY - 1), 430),
            (
                State::Canceled(CancelReason::HtlcRejected),
                vec![Action::CancelInvoices]
            )
        );
        let deadline = 430 + SETTLE_LATENCY + 10;
        let (s, a) = transition(&t, s, &prepay(deadline), 430);
        assert_eq!(
            (s.clone(), a),
            (
                State::Publishing {
                    prepay_deadline: Some(deadline)
                },
                vec![Action::PublishHtlc]
            )
        );
        // Waiting for funds: publish while the prepay can be settled, then stop.
        let last = deadline - SETTLE_LATENCY;
        assert!(t.may_publish(last + 1), "the swap's own window is still open");
        assert_eq!(
            transition(&t, s.clone(), &Event::NoHtlcOnChain { height: last }, last),
            (s.clone(), vec![Action::PublishHtlc])
        );
        assert_eq!(
            transition(&t, s.clone(), &Event::NoHtlcOnChain { height: last + 1 }, last + 1),
            (
                State::Canceled(CancelReason::PrepayExpired),
                vec![Action::CancelInvoices]
            )
        );
        // A stale event height never reopens it.
        assert_eq!(
            transition(&t, s.clone(), &Event::NoHtlcOnChain { height: last }, last + 1).0,
            State::Canceled(CancelReason::PrepayExpired)
        );
        // Our own publication found (written before a crash) after that: followed, prepay released.
        let txid = Txid::all_zeros();
        assert_eq!(
            transition(
                &t,
                s.clone(),
                &Event::HtlcBroadcast { txid, height: last + 1 },
                last + 1
            ),
            (State::Published { txid }, vec![Action::CancelPrepay])
        );
        assert_eq!(
            transition(&t, s, &Event::HtlcBroadcast { txid, height: last }, last),
            (State::Published { txid }, vec![Action::SettlePrepay])
        );
    }

    /// Records written before the prepay deadline existed still load (store format).
    #[test]
    fn old_records_without_the_prepay_deadline_load() {
        let s: State = serde_json::from_str(r#"{"state":"publishing"}"#).expect("old publishing");
        assert_eq!(s, State::Publishing { prepay_deadline: None });
        let s: State = serde_json::from_str(r#"{"state":"created","swap_accepted":null,"prepay_accepted":5}"#)
            .expect("old created");
        assert_eq!(
            s,
            State::Created {
                swap_accepted: None,
                prepay_accepted: Some(5),
                prepay_deadline: None
            }
        );
    }

    #[test]
    fn refunds_after_expiry_then_cancels() {
        let t = terms();
        let s = State::Published {
            txid: Txid::all_zeros(),
        };
        let (s, a) = transition(&t, s, &Event::Block { height: 499 }, 499);
        assert!(a.is_empty());
        let (s, a) = transition(&t, s, &Event::Block { height: 500 }, 500);
        assert_eq!(a, vec![Action::BroadcastRefund]);
        let (s, a) = transition(&t, s, &Event::RefundConfirmed { confs: 6 }, 506);
        assert_eq!((s, a), (State::Refunded, vec![Action::CancelSwap]));
    }

    proptest! {
        #[test]
        fn never_abandons_a_published_htlc_and_never_settles_and_cancels(events in proptest::collection::vec(event(), 0..40)) {
            let t = terms();
            let mut s = State::new();
            let mut tip = 420;
            let mut all = vec![];
            let mut prepay_deadline = None;
            let mut since = vec![];
            for e in events.iter().chain([Event::Block { height: t.give_up_height() }].iter()) {
                if let Event::Block { height } = e { tip = *height; }
                if let (State::Created { .. }, Event::PrepayAccepted { claim_deadline, .. }) = (&s, e) {
                    prepay_deadline = Some(*claim_deadline);
                }
                let published_before = matches!(s, State::Published { .. } | State::Refunding { .. } | State::PreimageKnown { .. });
                let was_published = published_before || s == State::Reclaiming;
                let before = s.clone();
                let (next, actions) = transition(&t, s, e, tip);
                crate::sm::testing::resume_repeats_only(&before, &next, &actions, &mut since, resume(&next))?;
                for a in &actions {
                    if matches!(a, Action::PublishHtlc) {
                        // Published again only once the earlier publication is lost.
                        prop_assert!(!published_before || *e == Event::PublicationLost);
                        // A block only hands a swap still `Publishing` back to the publisher:
                        // whatever it may newly broadcast is asked for with `NoHtlcOnChain`.
                        if !matches!(e, Event::Block { .. }) {
                            prop_assert!(t.may_publish(tip), "publication outside the window at {}", tip);
                        }
                    }
                    // At the publication the prepay is settled only before its deadline (less the
                    // settle latency); a prepay still held afterwards only for a publication
                    // inside the window (the node holds it until its deadline).
                    if matches!(a, Action::SettlePrepay) {
                        if let Event::PrepayHeld { published_at } = e {
                            prop_assert!(was_published);
                            prop_assert!(published_at.is_none_or(|h| t.may_publish(h)));
                        } else {
                            let d = prepay_deadline.expect("a prepay settled was accepted");
                            prop_assert!(tip + SETTLE_LATENCY <= d, "prepay settled at {} past {}", tip, d);
                        }
                    }
                }
                all.extend(actions);
                s = next;
            }
            // Past the give-up height only a published HTLC (still to be spent) keeps a swap open.
            prop_assert!(
                s.is_terminal()
                    || matches!(s, State::Publishing { .. } | State::Published { .. } | State::Refunding { .. } | State::PreimageKnown { .. } | State::Reclaiming),
                "{:?}", s
            );
            prop_assert!(s != State::TimedOut);
            // Once the node says the swap invoice is gone, a settle attempt paid nothing.
            let gone = events.iter().any(|e| matches!(e, Event::SwapInvoiceGone));
            let settled = !gone && all.iter().any(|a| matches!(a, Action::SettleSwap(_)));
            let canceled = all.iter().any(|a| matches!(a, Action::CancelSwap | Action::CancelInvoices));
            prop_assert!(!(settled && canceled), "settled and canceled: {:?}", all);
            // Never a refund after the preimage was used to settle.
            if let Some(i) = all.iter().position(|a| matches!(a, Action::SettleSwap(_))).filter(|_| !gone) {
                prop_assert!(!all[i..].iter().any(|a| matches!(a, Action::BroadcastRefund)));
            }
        }
    }

    /// A prepay still held after the publication: settled for a publication inside the window
    /// while it can still be settled, released otherwise; a swap still `Publishing` is handed to
    /// the publisher every block and after a restart.
    #[test]
    fn held_prepay_is_settled_only_when_earned_and_publishing_is_resumed() {
        let t = terms();
        let published = State::Published {
            txid: Txid::all_zeros(),
        };
        let held = |published_at| Event::PrepayHeld { published_at };
        let inside = t.expiry - MIN_BLOCKS_LEFT_AT_PUBLICATION;
        // Earned: settled at any later tip the node still holds it (also a record without the
        // publication height).
        for h in [Some(inside), None] {
            let (_, a) = transition(&t, published.clone(), &held(h), inside + 30);
            assert_eq!(a, vec![Action::SettlePrepay]);
        }
        let (_, a) = transition(&t, published.clone(), &held(Some(inside + 1)), inside + 1);
        assert_eq!(a, vec![Action::CancelPrepay]);
        // Not a published swap: nothing.
        let (_, a) = transition(&t, State::new(), &held(Some(inside)), inside);
        assert!(a.is_empty());
        assert!(resume(&State::Reclaiming).is_empty());
        let publishing = State::Publishing { prepay_deadline: None };
        for h in [inside, inside + 1] {
            let (s, a) = transition(&t, publishing.clone(), &Event::Block { height: h }, h);
            assert_eq!((s, a), (publishing.clone(), vec![Action::PublishHtlc]));
        }
        assert_eq!(resume(&publishing), vec![Action::PublishHtlc]);
        assert!(resume(&published).is_empty());
    }

    #[test]
    fn without_a_prepay_the_swap_htlc_alone_publishes() {
        let t = Terms {
            prepay_msat: 0,
            ..terms()
        };
        let (s, a) = transition(
            &t,
            State::new(),
            &Event::SwapAccepted {
                amount_msat: t.swap_invoice_msat,
                claim_deadline: t.expiry + SERVER_SETTLE_MARGIN,
            },
            t.created_height + 1,
        );
        assert_eq!(s, State::Publishing { prepay_deadline: None });
        assert_eq!(a, vec![Action::PublishHtlc]);
        // With a prepay, the same event only records the swap HTLC.
        let (s, a) = transition(
            &terms(),
            State::new(),
            &Event::SwapAccepted {
                amount_msat: t.swap_invoice_msat,
                claim_deadline: t.expiry + SERVER_SETTLE_MARGIN,
            },
            t.created_height + 1,
        );
        assert!(
            matches!(
                s,
                State::Created {
                    prepay_accepted: None,
                    ..
                }
            ),
            "{s:?}"
        );
        assert!(a.is_empty());
    }
}
