//! Loop-in, client side.
//!
//! ```text
//!  Created ──offer ok (stored)──▶ Persisted ──funding broadcast──▶ Funding ──an output confirmed──▶ Funded
//!     │ offer bad                   │ abandon (nothing paid in) /                                  │ swap failed,
//!     ▼                             ▼ E passed, nothing paid in                                   │ abandon, or tip ≥ E
//!   Failed ◀────────────────────────┘                                                             ▼
//!                                                                   Refunded ◀──every output── Refunding (cooperative
//!                                                                               refunded (3)     before E, timeout path
//!       invoice settled / the server claimed (from Funding, Funded, Refunding)                   from E on)
//!   ──────────────────────────────────────────────────────▶ Paid ──every other output spent (3)──▶ Succeeded
//!                                                   (other outputs refunded by the timeout path from E on)
//! ```
//!
//! The machine sees the chain on every call: [`Chain`] lists every output paying the swap's HTLC
//! script (anyone can pay the address, any number of times) and how each is spent. Rules:
//! - the offer is persisted before funding (a crash between "persisted" and "funding broadcast"
//!   never funds twice: the daemon looks for an existing funding output first);
//! - every output paying the HTLC is the client's money, except the one the server paid for
//!   ([`server_output`]: a confirmed output of exactly the amount) once our invoice is settled;
//! - **a swap is never terminal while an output of the client's is unspent** (or its spend is
//!   not [`SWEEP_FINAL_CONFS`] deep): no give-up height applies once anything was paid in; from
//!   `E` on the client refunds every output of its own by the timeout path, at once after any
//!   downtime;
//! - once the invoice is settled the client never refunds the output the server paid for;
//! - a refund asks the server to co-sign first (before `E`), and falls back to the timeout
//!   path at `E`.

use bitcoin::{Amount, OutPoint, Txid};
use serde::{Deserialize, Serialize};

use crate::constants::{LOOP_IN_MIN_REFUND_SAT, REORG_SAFETY_DEPTH, SPEND_CONFIRM_BUDGET};
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
    /// Past this height a swap that never got an output paying its HTLC gives up waiting
    /// (before the offer was stored, or a funding broadcast that never showed up on the chain).
    /// It never ends a swap that holds coins.
    pub fn give_up_height(&self) -> BlockHeight {
        self.expiry + SPEND_CONFIRM_BUDGET + REORG_SAFETY_DEPTH + 2 * REORG_SAFETY_DEPTH
    }
}

/// How an output paying the HTLC is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputSpend {
    /// The spending transaction.
    pub txid: Txid,
    /// Its confirmations (0: in the mempool).
    pub confs: u32,
    /// One of our refunds.
    pub ours: bool,
}

/// One output paying the swap's HTLC script, as the chain shows it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HtlcOutput {
    /// The output.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
    /// Its confirmations (0: in the mempool).
    pub confs: u32,
    /// Its spend, if any is seen (mempool or chain).
    pub spend: Option<OutputSpend>,
}

impl HtlcOutput {
    /// Worth a refund (at least [`LOOP_IN_MIN_REFUND_SAT`]): smaller outputs are a stranger's
    /// dust, neither refunded nor waited for.
    pub fn refundable(&self) -> bool {
        self.value.to_sat() >= LOOP_IN_MIN_REFUND_SAT
    }

    /// Spent by a transaction [`SWEEP_FINAL_CONFS`] deep.
    pub fn spent_final(&self) -> bool {
        self.spend.is_some_and(|s| s.confs >= SWEEP_FINAL_CONFS)
    }

    /// Spent in a block by someone else (the server, with the preimage our node released).
    pub fn claimed_by_other(&self) -> bool {
        self.spend.is_some_and(|s| !s.ours && s.confs >= 1)
    }
}

/// What the chain shows of the swap at the current tip.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// The tip.
    pub height: BlockHeight,
    /// Every output paying the HTLC script (confirmed or in the mempool).
    pub outputs: Vec<HtlcOutput>,
    /// Outputs worth a refund that paid the HTLC but are not in the view now, gone for fewer
    /// than [`REORG_SAFETY_DEPTH`] blocks (see [`observe`]): a transaction mined between two
    /// reads of the chain, or a funding a reorg dropped, may come back. No terminal state is
    /// taken while this is not empty.
    pub missing: Vec<OutPoint>,
}

/// An output worth a refund once seen paying the HTLC (stored with the swap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenOutput {
    /// The output.
    pub outpoint: OutPoint,
    /// The tip at which it was first found missing from the view, while it is.
    pub missing_since: Option<BlockHeight>,
}

/// Updates `seen` (the swap's stored memory of its outputs) with what `chain` shows now and
/// fills `chain.missing`: every output seen before, absent now, and gone for fewer than
/// [`REORG_SAFETY_DEPTH`] blocks. Returns whether `seen` changed (the caller persists it).
pub fn observe(seen: &mut Vec<SeenOutput>, chain: &mut Chain) -> bool {
    let mut changed = false;
    for o in chain.outputs.iter().filter(|o| o.refundable()) {
        match seen.iter_mut().find(|s| s.outpoint == o.outpoint) {
            None => {
                seen.push(SeenOutput {
                    outpoint: o.outpoint,
                    missing_since: None,
                });
                changed = true;
            }
            Some(s) if s.missing_since.is_some() => {
                s.missing_since = None;
                changed = true;
            }
            Some(_) => {}
        }
    }
    chain.missing.clear();
    for s in seen.iter_mut() {
        if chain.outputs.iter().any(|o| o.outpoint == s.outpoint) {
            continue;
        }
        let since = *s.missing_since.get_or_insert_with(|| {
            changed = true;
            chain.height
        });
        if chain.height < since.saturating_add(REORG_SAFETY_DEPTH) {
            chain.missing.push(s.outpoint);
        }
    }
    changed
}

/// The output the server paid for, once our invoice is settled: the one both sides pick by
/// the shared rule [`crate::validate::loop_in_server_output`] (exactly the amount, confirmed,
/// the earliest confirmed, the lowest outpoint on a tie). The only output the client co-signs a
/// claim of, and the only one it leaves to the server; every other output is the client's.
pub fn server_output(terms: &Terms, outputs: &[HtlcOutput]) -> Option<OutPoint> {
    crate::validate::loop_in_server_output(
        outputs.iter().map(|o| (o.outpoint, o.value, o.confs)),
        terms.amount,
        crate::constants::LOOP_IN_SERVER_FUNDING_CONFS,
    )
}

/// Why the client will not co-sign a claim the server asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRequestError {
    /// The claim names no input of ours, or spends another output of our HTLC too (or is
    /// larger than any batch).
    #[error("the claim must spend exactly one output of our HTLC, at the input named")]
    Inputs,
    /// No output the server may claim: none confirmed of exactly the amount.
    #[error("no confirmed output of exactly the amount pays our HTLC")]
    NoServerOutput,
    /// The claim spends another output than the one the server paid for.
    #[error("the claim spends {spends}, not the output the server paid for ({paid})")]
    WrongOutput {
        /// What the claim spends.
        spends: OutPoint,
        /// The output the server paid for.
        paid: OutPoint,
    },
}

/// The client's check of the claim the server asks it to co-sign (a transaction the server
/// built, input `index` the one to sign): that input must spend the output the server paid for
/// ([`server_output`]: confirmed, exactly the amount), and no other input may spend an output
/// of our HTLC. Every other output paying the address is the client's, and a co-signed
/// key-path spend of it would hand it to the server. The other inputs of a batch (other swaps'
/// HTLCs the server claims in the same transaction) are none of the client's business: the
/// key-path signature commits to this input's index and to every prevout, so it spends nothing
/// else, and a prevout the server misstates only makes the signature invalid.
pub fn check_claim_request(
    terms: &Terms,
    chain: &Chain,
    tx: &bitcoin::Transaction,
    index: usize,
) -> Result<OutPoint, ClaimRequestError> {
    let Some(input) = tx.input.get(index) else {
        return Err(ClaimRequestError::Inputs);
    };
    if tx.input.len() > crate::batch::MAX_BATCH_INPUTS {
        return Err(ClaimRequestError::Inputs);
    }
    let paid = server_output(terms, &chain.outputs).ok_or(ClaimRequestError::NoServerOutput)?;
    if input.previous_output != paid {
        return Err(ClaimRequestError::WrongOutput {
            spends: input.previous_output,
            paid,
        });
    }
    let ours = |o: &OutPoint| chain.outputs.iter().any(|x| x.outpoint == *o);
    if tx
        .input
        .iter()
        .enumerate()
        .any(|(i, x)| i != index && (x.previous_output == paid || ours(&x.previous_output)))
    {
        return Err(ClaimRequestError::Inputs);
    }
    Ok(paid)
}

/// The outputs the client must still get back: every output but `reserved` (the server's)
/// worth a refund that is confirmed and not spent in a block. (An output only in the mempool is waited for:
/// it may never confirm; one spent in the mempool, by our refund or anyone, is re-spent — a
/// bump, or a race the refund must win.)
pub fn outputs_to_refund(outputs: &[HtlcOutput], reserved: Option<OutPoint>) -> Vec<OutPoint> {
    outputs
        .iter()
        .filter(|o| {
            Some(o.outpoint) != reserved && o.refundable() && o.confs >= 1 && o.spend.is_none_or(|s| s.confs == 0)
        })
        .map(|o| o.outpoint)
        .collect()
}

/// Whether every output of the client's (all but `reserved`, worth a refund) is spent
/// [`SWEEP_FINAL_CONFS`] deep: the condition for any terminal state once something was paid in.
pub fn all_settled(outputs: &[HtlcOutput], reserved: Option<OutPoint>) -> bool {
    outputs
        .iter()
        .filter(|o| Some(o.outpoint) != reserved && o.refundable())
        .all(HtlcOutput::spent_final)
}

/// Why a loop-in failed without a refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum FailReason {
    /// The server's answer failed validation; nothing was funded.
    OfferRejected,
    /// The user abandoned it before funding.
    Abandoned,
    /// Never funded: the wallet's funding window closed, or nothing paid the HTLC by the
    /// give-up height.
    NeverFunded,
    /// The give-up height passed without a decision (only before the offer was stored; older
    /// records may carry it for funded swaps).
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
    /// An output paying the HTLC is confirmed.
    Funded {
        /// The first confirmed HTLC output.
        outpoint: OutPoint,
        /// Its value.
        value: Amount,
    },
    /// Getting the coins back: every output paying the HTLC.
    Refunding {
        /// The first confirmed HTLC output.
        outpoint: OutPoint,
        /// The last refund broadcast.
        refund_txid: Option<Txid>,
    },
    /// Our invoice is paid; every other output paying the HTLC (not the one the server paid
    /// for) is refunded by the timeout path from `E` on.
    Paid,
    /// Terminal: the invoice was paid and nothing else of ours is left in the HTLC.
    Succeeded,
    /// Terminal: refunded.
    Refunded {
        /// The (last) refund.
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

/// What happened (besides the chain, which every call shows).
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
    /// Our node received the payment for our invoice.
    InvoiceSettled,
    /// The server reports the swap failed (under/over-payment, payment failure).
    SwapFailed,
    /// The user gives up.
    Abandon,
    /// A pass at the current tip: the machine reads the chain.
    Block,
    /// A refund was broadcast.
    RefundBroadcast {
        /// Its txid.
        txid: Txid,
    },
    /// The client's wallet will not fund the HTLC: the tip is past
    /// [`crate::constants::loop_in_last_funding_height`] (a funding now could not confirm in
    /// time for the server to pay).
    FundingWindowClosed,
}

/// What the daemon must do (each idempotent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fund the HTLC from the wallet unless an output paying it already exists.
    FundHtlc,
    /// Cancel our invoice (so it can no longer be paid), then ask the server to co-sign a
    /// key-path refund of each of these outputs.
    RequestCooperativeRefund {
        /// The outputs.
        outpoints: Vec<OutPoint>,
    },
    /// Broadcast or bump the timeout refund of each of these outputs (valid once the tip is
    /// ≥ `E`).
    BroadcastTimeoutRefund {
        /// The outputs.
        outpoints: Vec<OutPoint>,
    },
}

fn refund_actions(terms: &Terms, chain: &Chain, reserved: Option<OutPoint>, cooperative: bool) -> Vec<Action> {
    let outpoints = outputs_to_refund(&chain.outputs, reserved);
    if outpoints.is_empty() {
        vec![]
    } else if chain.height >= terms.expiry {
        vec![Action::BroadcastTimeoutRefund { outpoints }]
    } else if cooperative {
        vec![Action::RequestCooperativeRefund { outpoints }]
    } else {
        vec![]
    }
}

/// No output worth a refund pays the HTLC (not even in the mempool), and none did in the last
/// [`REORG_SAFETY_DEPTH`] blocks.
fn nothing_paid_in(chain: &Chain) -> bool {
    !chain.outputs.iter().any(HtlcOutput::refundable) && chain.missing.is_empty()
}

/// The first confirmed output (most confirmations, lowest outpoint on a tie).
fn first_confirmed(chain: &Chain) -> Option<&HtlcOutput> {
    chain
        .outputs
        .iter()
        .filter(|o| o.confs >= 1 && o.refundable())
        .max_by(|a, b| a.confs.cmp(&b.confs).then(b.outpoint.cmp(&a.outpoint)))
}

/// Paid: done once every other output is spent for good; from `E` on, refund them.
fn paid(terms: &Terms, chain: &Chain) -> (State, Vec<Action>) {
    let reserved = server_output(terms, &chain.outputs);
    if all_settled(&chain.outputs, reserved) && chain.missing.is_empty() {
        return (State::Succeeded, vec![]);
    }
    (State::Paid, refund_actions(terms, chain, reserved, false))
}

/// Refunding: done once every output is spent for good (all by us); a confirmed spend by
/// anyone else means the server claimed with the preimage, so our invoice was paid.
fn refunding(terms: &Terms, chain: &Chain, outpoint: OutPoint, refund_txid: Option<Txid>) -> (State, Vec<Action>) {
    if chain.outputs.iter().any(HtlcOutput::claimed_by_other) {
        return paid(terms, chain);
    }
    if all_settled(&chain.outputs, None) && chain.missing.is_empty() {
        let last = chain
            .outputs
            .iter()
            .filter_map(|o| o.spend)
            .max_by_key(|s| std::cmp::Reverse(s.confs))
            .map(|s| s.txid)
            .or(refund_txid);
        return match last {
            Some(txid) => (State::Refunded { txid }, vec![]),
            // Nothing of ours left and nothing refunded: the outputs vanished (their funding
            // double-spent after a reorg), the coins never left the payer's wallet.
            None => (State::Failed(FailReason::NeverFunded), vec![]),
        };
    }
    (
        State::Refunding { outpoint, refund_txid },
        refund_actions(terms, chain, None, true),
    )
}

/// The transition function: `chain` is what the chain shows at the tip now.
pub fn transition(terms: &Terms, state: State, chain: &Chain, event: &Event) -> (State, Vec<Action>) {
    use State as S;
    if state.is_terminal() {
        return (state, vec![]);
    }
    let h = chain.height;
    match (state, event) {
        (S::Created, Event::OfferValidated) => (S::Persisted, vec![Action::FundHtlc]),
        (S::Created, Event::OfferRejected) => (S::Failed(FailReason::OfferRejected), vec![]),
        (S::Created, Event::Abandon) if nothing_paid_in(chain) => (S::Failed(FailReason::Abandoned), vec![]),
        (S::Created, Event::Block) if h >= terms.give_up_height() && nothing_paid_in(chain) => {
            (S::Failed(FailReason::TimedOut), vec![])
        }
        // Abandoning ends a swap only while nothing pays its HTLC (not even in the mempool).
        (S::Persisted, Event::Abandon) if nothing_paid_in(chain) => (S::Failed(FailReason::Abandoned), vec![]),
        (S::Persisted, Event::FundingBroadcast { txid }) => (S::Funding { txid: *txid }, vec![]),
        // The wallet will not fund any more (too late for the server to pay); nothing was
        // paid in, so nothing is owed.
        (S::Persisted, Event::FundingWindowClosed) if nothing_paid_in(chain) => {
            (S::Failed(FailReason::NeverFunded), vec![])
        }
        (s @ (S::Persisted | S::Funding { .. }), Event::Block) => {
            if let Some(first) = first_confirmed(chain) {
                let funded = S::Funded {
                    outpoint: first.outpoint,
                    value: first.value,
                };
                let (next, actions) = transition(terms, funded.clone(), chain, &Event::Block);
                return (next, actions);
            }
            // External funding may come late (a funding confirmed after `E` is refunded at once
            // by the timeout path, above): both wait until the give-up height.
            if nothing_paid_in(chain) && h >= terms.give_up_height() {
                (S::Failed(FailReason::NeverFunded), vec![])
            } else {
                (s, vec![])
            }
        }
        // Paid: whatever state we were in (even `Persisted`: an external funding the view has
        // not shown us yet, or a daemon back after downtime that has not read the chain).
        (S::Persisted | S::Funding { .. } | S::Funded { .. } | S::Refunding { .. }, Event::InvoiceSettled) => {
            paid(terms, chain)
        }
        (S::Funded { outpoint, .. }, Event::SwapFailed | Event::Abandon) => refunding(terms, chain, outpoint, None),
        (s @ S::Funded { outpoint, .. }, Event::Block) => {
            if chain.outputs.iter().any(HtlcOutput::claimed_by_other) {
                paid(terms, chain)
            } else if h >= terms.expiry {
                refunding(terms, chain, outpoint, None)
            } else {
                (s, vec![])
            }
        }
        (S::Refunding { outpoint, refund_txid }, Event::Block) => refunding(terms, chain, outpoint, refund_txid),
        (S::Refunding { outpoint, .. }, Event::RefundBroadcast { txid }) => (
            S::Refunding {
                outpoint,
                refund_txid: Some(*txid),
            },
            vec![],
        ),
        (S::Paid, Event::Block) => paid(terms, chain),
        (s, _) => (s, vec![]),
    }
}

/// What a restart does again (see [`crate::sm::Machine::resume`]): nothing before the first
/// pass. Funding needs the funding window's tip, a refund the chain view (which path, which
/// outputs), and an invoice settled must be read before any refund.
pub fn resume(_state: &State) -> Vec<Action> {
    vec![]
}

crate::sm::machine!(
    /// This machine — a loop-in, client side (its view: what the chain shows of the HTLC) — for the generic runner.
    LoopInClientMachine,
    Chain,
    |terms, state, chain, event| transition(terms, state, chain, event)
);

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn terms() -> Terms {
        Terms {
            amount: Amount::from_sat(100_000),
            expiry: 500,
        }
    }

    fn op(vout: u32) -> OutPoint {
        OutPoint {
            txid: Txid::all_zeros(),
            vout,
        }
    }

    fn out(vout: u32, value: u64, confs: u32, spend: Option<(u32, bool)>) -> HtlcOutput {
        HtlcOutput {
            outpoint: op(vout),
            value: Amount::from_sat(value),
            confs,
            spend: spend.map(|(confs, ours)| OutputSpend {
                txid: Txid::from_byte_array([vout as u8 + 1; 32]),
                confs,
                ours,
            }),
        }
    }

    fn chain(height: u32, outputs: Vec<HtlcOutput>) -> Chain {
        Chain {
            height,
            outputs,
            missing: vec![],
        }
    }

    #[test]
    fn the_client_cosigns_only_a_claim_of_the_output_the_server_paid_for() {
        let claim = |inputs: &[u32]| bitcoin::Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: inputs
                .iter()
                .map(|v| bitcoin::TxIn {
                    previous_output: op(*v),
                    ..Default::default()
                })
                .collect(),
            output: vec![],
        };
        // Output 1 is exact and the earliest confirmed: the server's. 0 is exact but later, 2 short.
        let c = chain(
            600,
            vec![
                out(0, 100_000, 1, None),
                out(1, 100_000, 4, None),
                out(2, 99_999, 9, None),
            ],
        );
        assert_eq!(check_claim_request(&terms(), &c, &claim(&[1]), 0), Ok(op(1)));
        assert_eq!(
            check_claim_request(&terms(), &c, &claim(&[0]), 0),
            Err(ClaimRequestError::WrongOutput {
                spends: op(0),
                paid: op(1)
            })
        );
        // A batch (the server claims other swaps' HTLCs in the same transaction): our input at
        // the index named, no other output of ours anywhere in it.
        assert_eq!(check_claim_request(&terms(), &c, &claim(&[7, 1, 8]), 1), Ok(op(1)));
        assert_eq!(
            check_claim_request(&terms(), &c, &claim(&[7, 1, 8]), 0),
            Err(ClaimRequestError::WrongOutput {
                spends: op(7),
                paid: op(1)
            })
        );
        assert_eq!(
            check_claim_request(&terms(), &c, &claim(&[1, 0]), 0),
            Err(ClaimRequestError::Inputs)
        );
        assert_eq!(
            check_claim_request(&terms(), &c, &claim(&[2, 1]), 1),
            Err(ClaimRequestError::Inputs),
            "our short output rides along: refused"
        );
        assert_eq!(
            check_claim_request(&terms(), &c, &claim(&[1, 1]), 0),
            Err(ClaimRequestError::Inputs)
        );
        assert_eq!(
            check_claim_request(&terms(), &c, &claim(&[1]), 1),
            Err(ClaimRequestError::Inputs)
        );
        assert_eq!(
            check_claim_request(&terms(), &c, &claim(&[]), 0),
            Err(ClaimRequestError::Inputs)
        );
        let big: Vec<u32> = (0..=crate::batch::MAX_BATCH_INPUTS as u32).map(|n| n + 1).collect();
        assert_eq!(
            check_claim_request(&terms(), &c, &claim(&big), 0),
            Err(ClaimRequestError::Inputs)
        );
        let unconfirmed = chain(600, vec![out(1, 100_000, 0, None), out(2, 99_999, 9, None)]);
        assert_eq!(
            check_claim_request(&terms(), &unconfirmed, &claim(&[1]), 0),
            Err(ClaimRequestError::NoServerOutput)
        );
    }

    #[test]
    fn cooperative_refund_then_timeout_fallback() {
        let t = terms();
        let s = State::Funded {
            outpoint: op(1),
            value: t.amount,
        };
        let c = chain(450, vec![out(1, 100_000, 3, None)]);
        let (s, a) = transition(&t, s, &c, &Event::SwapFailed);
        assert_eq!(a, vec![Action::RequestCooperativeRefund { outpoints: vec![op(1)] }]);
        let (s, a) = transition(&t, s, &chain(499, c.outputs.clone()), &Event::Block);
        assert_eq!(a, vec![Action::RequestCooperativeRefund { outpoints: vec![op(1)] }]);
        let (s, a) = transition(&t, s, &chain(500, c.outputs.clone()), &Event::Block);
        assert_eq!(a, vec![Action::BroadcastTimeoutRefund { outpoints: vec![op(1)] }]);
        let (s, _) = transition(
            &t,
            s,
            &chain(503, vec![out(1, 100_000, 6, Some((3, true)))]),
            &Event::Block,
        );
        assert_eq!(
            s,
            State::Refunded {
                txid: Txid::from_byte_array([2; 32])
            }
        );
    }

    /// Finding 3: a funded loop-in whose daemon was down far past the old give-up height
    /// refunds at once; it never ends with the coins in the HTLC.
    #[test]
    fn downtime_past_the_old_give_up_height_refunds_instead_of_timing_out() {
        let t = terms();
        let late = t.give_up_height() + 100;
        let s = State::Funding {
            txid: Txid::all_zeros(),
        };
        let (s, a) = transition(&t, s, &chain(late, vec![out(1, 100_000, 150, None)]), &Event::Block);
        assert!(matches!(s, State::Refunding { .. }), "{s:?}");
        assert_eq!(a, vec![Action::BroadcastTimeoutRefund { outpoints: vec![op(1)] }]);
    }

    /// Finding 4: two outputs pay the address; once paid, the one the server paid for is its,
    /// the other is refunded from `E` on; the swap ends only when that refund is final.
    #[test]
    fn extra_outputs_are_refunded_after_payment() {
        let t = terms();
        let s = State::Funded {
            outpoint: op(1),
            value: t.amount,
        };
        let outs = vec![out(1, 100_000, 5, None), out(2, 30_000, 4, None)];
        let (s, a) = transition(&t, s, &chain(450, outs.clone()), &Event::InvoiceSettled);
        assert_eq!((s.clone(), a), (State::Paid, vec![]));
        let (s, a) = transition(&t, s, &chain(500, outs), &Event::Block);
        assert_eq!(a, vec![Action::BroadcastTimeoutRefund { outpoints: vec![op(2)] }]);
        let outs = vec![
            out(1, 100_000, 55, Some((40, false))),
            out(2, 30_000, 54, Some((2, true))),
        ];
        let (s, _) = transition(&t, s, &chain(502, outs), &Event::Block);
        assert_eq!(s, State::Paid, "not before the refund is final");
        let outs = vec![
            out(1, 100_000, 56, Some((41, false))),
            out(2, 30_000, 55, Some((3, true))),
        ];
        let (s, _) = transition(&t, s, &chain(503, outs), &Event::Block);
        assert_eq!(s, State::Succeeded);
    }

    #[test]
    fn the_server_output_is_a_confirmed_exact_one() {
        let t = terms();
        assert_eq!(server_output(&t, &[out(1, 100_000, 0, None)]), None, "unconfirmed");
        assert_eq!(server_output(&t, &[out(1, 100_001, 3, None)]), None, "not exact");
        assert_eq!(
            server_output(&t, &[out(1, 100_000, 2, None), out(2, 100_000, 3, None)]),
            Some(op(2)),
            "the earliest"
        );
        assert_eq!(
            server_output(&t, &[out(3, 100_000, 3, None), out(2, 100_000, 3, None)]),
            Some(op(2)),
            "the lowest outpoint on a tie"
        );
    }

    /// Review finding 3: the wallet's funding window closed: a swap nothing pays fails as
    /// never funded; one something pays (even only in the mempool) does not.
    #[test]
    fn funding_window_closed_fails_only_an_unpaid_swap() {
        let t = terms();
        let late = crate::constants::loop_in_last_funding_height(t.expiry) + 1;
        let (s, _) = transition(&t, State::Persisted, &chain(late, vec![]), &Event::FundingWindowClosed);
        assert_eq!(s, State::Failed(FailReason::NeverFunded));
        let paid_in = chain(late, vec![out(1, 100_000, 0, None)]);
        let (s, _) = transition(&t, State::Persisted, &paid_in, &Event::FundingWindowClosed);
        assert_eq!(s, State::Persisted);
    }

    /// Review finding 5: an output missing from the view for fewer than `REORG_SAFETY_DEPTH`
    /// blocks keeps the swap open; `Persisted` waits past `E` until the give-up height.
    #[test]
    fn briefly_missing_outputs_keep_the_swap_open() {
        let t = terms();
        let mut seen = vec![];
        let mut c = chain(505, vec![out(1, 100_000, 3, Some((3, true)))]);
        observe(&mut seen, &mut c);
        let s = State::Refunding {
            outpoint: op(1),
            refund_txid: None,
        };
        // A second output seen in the mempool, then gone from the view.
        let mut c = chain(505, vec![out(1, 100_000, 3, Some((3, true))), out(2, 50_000, 0, None)]);
        assert!(observe(&mut seen, &mut c));
        let mut c = chain(506, vec![out(1, 100_000, 4, Some((4, true)))]);
        assert!(observe(&mut seen, &mut c));
        assert_eq!(c.missing, vec![op(2)]);
        let (s, _) = transition(&t, s, &c, &Event::Block);
        assert!(matches!(s, State::Refunding { .. }), "{s:?}");
        // Gone for REORG_SAFETY_DEPTH blocks: it is forgotten, the swap ends.
        let mut c = chain(506 + REORG_SAFETY_DEPTH, vec![out(1, 100_000, 10, Some((10, true)))]);
        observe(&mut seen, &mut c);
        assert!(c.missing.is_empty());
        let (s, _) = transition(&t, s, &c, &Event::Block);
        assert!(matches!(s, State::Refunded { .. }), "{s:?}");
        // Persisted, nothing paid: still waiting at E, failed only at the give-up height.
        let (s, _) = transition(&t, State::Persisted, &chain(t.expiry, vec![]), &Event::Block);
        assert_eq!(s, State::Persisted);
        let (s, _) = transition(&t, State::Persisted, &chain(t.give_up_height(), vec![]), &Event::Block);
        assert_eq!(s, State::Failed(FailReason::NeverFunded));
    }
}
