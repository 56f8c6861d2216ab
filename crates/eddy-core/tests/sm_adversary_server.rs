//! Property tests: the two server state machines driven by random adversarial worlds. Each
//! world models the chain (the HTLC output, its confirmations, reorgs and evictions, the spends
//! of either side, in the next block; for loop-in several outputs paying the HTLC script: the
//! client's, of any amount, and strangers' confirmed or never confirmed), the Lightning side
//! (held invoices that fail back at their deadline, payments in flight that the payee settles
//! or fails when it likes) and the server's own availability (long downtime gaps across `E`
//! and past the old give-up heights, during which it sees nothing). A small engine feeds each machine exactly what a real engine would
//! read from that world and performs its actions on it. The money invariants are checked after
//! every step and once the world has gone quiet:
//!
//! - loop-in: never a payment at or after the last payment height, never with a CLTV budget of
//!   0, never two at once; never a payment after co-signing a refund, never a co-signature with
//!   a payment in flight or made; paid only against one confirmed exact output, claims that
//!   one; never terminal while the output it paid for is unspent (a refund of another output
//!   ends nothing); a server that paid and stayed up gets its claim.
//! - loop-out: publication and prepay settlement only inside the publication window, the
//!   prepay settled only before its held HTLC's deadline (less `SETTLE_LATENCY`); never
//!   settled and canceled, never settled and refunded; never terminal while its published HTLC
//!   is unspent and not paid for; never `TimedOut`; a client claim confirmed while the invoice
//!   can still be settled is paid for.

use std::num::NonZeroU32;

use bitcoin::hashes::Hash;
use bitcoin::{Amount, OutPoint, Txid};
use eddy_core::constants::{
    loop_in_last_payment_height, loop_in_max_payment_cltv, REORG_SAFETY_DEPTH, SERVER_SETTLE_MARGIN, SETTLE_LATENCY,
};
use eddy_core::sm::{loop_in_server as lis, loop_out_server as los};
use eddy_core::types::Preimage;
use proptest::prelude::*;

const CREATED: u32 = 1_000;

/// Blocks the world moves on: mostly single blocks, sometimes a long downtime gap.
fn gap() -> impl Strategy<Value = (u32, bool)> {
    prop_oneof![
        6 => (1u32..3).prop_map(|n| (n, false)),
        1 => (20u32..260).prop_map(|n| (n, true)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Loop-in.

#[derive(Clone, Debug)]
enum InAdv {
    /// Blocks pass (`true`: the server is down throughout and sees none of them, nor what
    /// happens next until blocks pass with it up again).
    Blocks(u32, bool),
    /// The client funds the HTLC (one more output) with amount + delta sat.
    Fund(i8),
    /// A stranger pays the HTLC script amount + delta sat (`confirms`: mined in the next block,
    /// else it stays in the mempool for ever).
    StrangerFunds(i8, bool),
    /// One output paying the HTLC (by index) is reorged out (back to the mempool, unconfirmed).
    ReorgFunding(u8),
    /// The client asks for a cooperative refund.
    AskRefund,
    /// The payee (the client's node) settles the server's payment, revealing the preimage.
    PayeeSettles,
    /// The payee fails the server's payment.
    PayeeFails,
    /// The client spends one of its outputs (by index) back: key path if co-signed, else the
    /// timeout path after E.
    ClientRefunds(u8),
}

fn in_adv() -> impl Strategy<Value = InAdv> {
    prop_oneof![
        4 => gap().prop_map(|(n, down)| InAdv::Blocks(n, down)),
        2 => prop_oneof![Just(0i8), Just(0), Just(-1), Just(1)].prop_map(InAdv::Fund),
        1 => (prop_oneof![Just(0i8), Just(1), Just(-1)], any::<bool>()).prop_map(|(d, c)| InAdv::StrangerFunds(d, c)),
        1 => any::<u8>().prop_map(InAdv::ReorgFunding),
        1 => Just(InAdv::AskRefund),
        2 => Just(InAdv::PayeeSettles),
        1 => Just(InAdv::PayeeFails),
        1 => any::<u8>().prop_map(InAdv::ClientRefunds),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pay {
    None,
    InFlight { cltv: u32 },
    Succeeded,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spent {
    Unspent,
    ClaimPending,
    Claimed(u32),
    RefundPending,
    Refunded(u32),
}

/// One output paying the loop-in HTLC's script.
#[derive(Clone, Copy, Debug)]
struct Output {
    outpoint: OutPoint,
    value: Amount,
    /// Confirmation height.
    height: Option<u32>,
    /// A stranger's output (nobody the swap knows can spend it).
    stranger: bool,
    /// Confirms in the next block (a stranger's may stay in the mempool for ever).
    confirms: bool,
    spent: Spent,
}

struct InWorld {
    terms: lis::Terms,
    state: lis::State,
    tip: u32,
    /// Every output paying the HTLC script, in the order they appeared.
    outputs: Vec<Output>,
    /// The output the engine recorded as the swap's funding.
    funding: Option<OutPoint>,
    /// The output the server paid against (its payment left for it).
    paid_for: Option<OutPoint>,
    pay: Pay,
    payments_sent: u32,
    /// Unix time (ten minutes a block).
    now: u64,
    cosigned: bool,
    /// The server was down at some point after its payment left.
    down_after_paying: bool,
    /// The server is down now (since the last downtime gap): it sees nothing until blocks pass
    /// with it up.
    down: bool,
    preimage: Preimage,
}

impl InWorld {
    fn new() -> InWorld {
        InWorld {
            terms: lis::Terms {
                amount: Amount::from_sat(100_000),
                expiry: CREATED + eddy_core::constants::DEFAULT_LOOP_IN_EXPIRY_DELTA,
                funding_confs: 1,
            },
            state: lis::State::Created,
            tip: CREATED,
            outputs: vec![],
            funding: None,
            paid_for: None,
            pay: Pay::None,
            payments_sent: 0,
            now: 1_700_000_000,
            cosigned: false,
            down_after_paying: false,
            down: false,
            preimage: Preimage::from_bytes([7; 32]),
        }
    }

    fn output(&self, outpoint: OutPoint) -> Option<&Output> {
        self.outputs.iter().find(|o| o.outpoint == outpoint)
    }

    fn confs(&self, o: &Output) -> u32 {
        o.height.map_or(0, |h| self.tip + 1 - h)
    }

    fn add_output(&mut self, delta: i8, stranger: bool, confirms: bool) {
        if self.outputs.len() < 4 {
            let v = (self.terms.amount.to_sat() as i64 + i64::from(delta)) as u64;
            self.outputs.push(Output {
                outpoint: OutPoint {
                    txid: Txid::all_zeros(),
                    vout: self.outputs.len() as u32,
                },
                value: Amount::from_sat(v),
                height: None,
                stranger,
                confirms,
                spent: Spent::Unspent,
            });
        }
    }

    /// The chain moves one block: pending outputs and spends confirm.
    fn block(&mut self) {
        self.tip += 1;
        self.now += 600;
        let tip = self.tip;
        for o in &mut self.outputs {
            if o.height.is_none() && o.confirms {
                o.height = Some(tip);
            }
            o.spent = match o.spent {
                Spent::ClaimPending => Spent::Claimed(tip),
                Spent::RefundPending => Spent::Refunded(tip),
                s => s,
            };
        }
        // A payment whose HTLCs expired fails back.
        if let Pay::InFlight { cltv } = self.pay {
            if self.tip >= cltv {
                self.pay = Pay::Failed;
            }
        }
    }

    fn adversary(&mut self, a: &InAdv) -> Result<(), TestCaseError> {
        match a {
            InAdv::Blocks(n, down) => {
                self.down = *down;
                for _ in 0..*n {
                    self.block();
                    if *down {
                        if self.pay != Pay::None {
                            self.down_after_paying = true;
                        }
                    } else {
                        self.engine()?;
                    }
                }
                return Ok(());
            }
            InAdv::Fund(d) => self.add_output(*d, false, true),
            InAdv::StrangerFunds(d, confirms) => self.add_output(*d, true, *confirms),
            InAdv::ReorgFunding(i) => {
                if !self.outputs.is_empty() {
                    let n = self.outputs.len();
                    let o = &mut self.outputs[usize::from(*i) % n];
                    if o.height.is_some() && o.spent == Spent::Unspent {
                        o.height = None;
                    }
                }
            }
            InAdv::AskRefund => {
                // The HTTP handler asks the machine (persisting first).
                if !self.down {
                    self.event(lis::Event::RefundRequested)?;
                }
            }
            InAdv::PayeeSettles => {
                if let Pay::InFlight { cltv } = self.pay {
                    if self.tip < cltv {
                        self.pay = Pay::Succeeded;
                    }
                }
            }
            InAdv::PayeeFails => {
                if let Pay::InFlight { .. } = self.pay {
                    self.pay = Pay::Failed;
                }
            }
            InAdv::ClientRefunds(i) => {
                let (cosigned, late) = (self.cosigned, self.tip > self.terms.expiry);
                let mine: Vec<usize> = (0..self.outputs.len()).filter(|j| !self.outputs[*j].stranger).collect();
                if !mine.is_empty() {
                    let o = &mut self.outputs[mine[usize::from(*i) % mine.len()]];
                    if o.height.is_some() && o.spent == Spent::Unspent && (cosigned || late) {
                        o.spent = Spent::RefundPending;
                    }
                }
            }
        }
        if self.down {
            return Ok(());
        }
        self.engine()
    }

    fn funding_confs(&self) -> u32 {
        self.funding.and_then(|f| self.output(f)).map_or(0, |o| self.confs(o))
    }

    /// One engine pass: what a real engine reads from the world, fed to the machine.
    fn engine(&mut self) -> Result<(), TestCaseError> {
        if self.state == lis::State::Created {
            // The shared rule; else a confirmed wrong amount (the earliest) still reports.
            let chosen = eddy_core::validate::loop_in_server_output(
                self.outputs.iter().map(|o| (o.outpoint, o.value, self.confs(o))),
                self.terms.amount,
                self.terms.funding_confs,
            )
            .or_else(|| {
                self.outputs
                    .iter()
                    .filter(|o| o.height.is_some())
                    .max_by_key(|o| (o.height.map(std::cmp::Reverse), o.outpoint))
                    .map(|o| o.outpoint)
            });
            if let Some(o) = chosen.and_then(|c| self.output(c)).copied() {
                self.funding = Some(o.outpoint);
                let confs = self.confs(&o);
                self.event(lis::Event::FundingSeen {
                    outpoint: o.outpoint,
                    value: o.value,
                    confs,
                    height: self.tip,
                })?;
            }
        }
        if let lis::State::Paying { .. } = self.state {
            match self.pay {
                Pay::Succeeded => self.event(lis::Event::PaymentSucceeded(self.preimage))?,
                Pay::Failed => {
                    // The node's record says the attempt failed: the machine schedules the
                    // next attempt, sends it once due, or fails the swap.
                    let funding_confs = self.funding_confs();
                    self.event(lis::Event::AttemptFailed {
                        height: self.tip,
                        now: self.now,
                        funding_confs,
                        reason: "payee failed it".into(),
                    })?;
                }
                Pay::None => {
                    let funding_confs = self.funding_confs();
                    self.event(lis::Event::SendPayment {
                        height: self.tip,
                        funding_confs,
                    })?
                }
                Pay::InFlight { .. } => {}
            }
        }
        // Spends: once paying or claiming, only those of the recorded funding count.
        let watched: Vec<Output> = match (&self.state, self.funding) {
            (lis::State::Claiming { .. } | lis::State::Paying { .. }, Some(f)) => {
                self.output(f).copied().into_iter().collect()
            }
            _ => self.outputs.clone(),
        };
        for o in watched {
            match o.spent {
                Spent::Claimed(h) => self.event(lis::Event::ClaimConfirmed {
                    confs: self.tip + 1 - h,
                })?,
                Spent::Refunded(h) => self.event(lis::Event::HtlcRefunded {
                    confs: self.tip + 1 - h,
                })?,
                _ => {}
            }
        }
        self.event(lis::Event::Block { height: self.tip })
    }

    fn event(&mut self, e: lis::Event) -> Result<(), TestCaseError> {
        let (next, actions) = lis::transition(&self.terms, self.state.clone(), &e);
        for a in actions {
            match a {
                lis::Action::PayInvoice {
                    max_cltv_expiry,
                    max_total_cltv_delta,
                    height,
                } => {
                    prop_assert!(
                        self.tip < loop_in_last_payment_height(self.terms.expiry),
                        "paid at {} ≥ last payment height",
                        self.tip
                    );
                    prop_assert_eq!(height, self.tip);
                    prop_assert!(max_total_cltv_delta >= NonZeroU32::MIN);
                    prop_assert_eq!(max_cltv_expiry, loop_in_max_payment_cltv(self.terms.expiry));
                    prop_assert_eq!(max_total_cltv_delta.get(), max_cltv_expiry - self.tip);
                    prop_assert!(!self.cosigned, "paid after co-signing a refund");
                    prop_assert!(
                        !matches!(self.pay, Pay::InFlight { .. } | Pay::Succeeded),
                        "a second payment while one is in flight or made"
                    );
                    // Paid only against one confirmed output of exactly the amount, and always
                    // the same one.
                    let lis::State::Paying { outpoint, .. } = next else {
                        return Err(TestCaseError::fail(format!("paid in {next:?}")));
                    };
                    let o = self.output(outpoint).copied();
                    prop_assert!(
                        o.is_some_and(|o| o.value == self.terms.amount
                            && o.height.is_some()
                            && o.spent == Spent::Unspent),
                        "paid against {:?}",
                        o
                    );
                    prop_assert!(self.paid_for.is_none_or(|p| p == outpoint), "paid for two outputs");
                    self.paid_for = Some(outpoint);
                    self.pay = Pay::InFlight { cltv: max_cltv_expiry };
                    self.payments_sent += 1;
                    prop_assert!(
                        self.payments_sent <= eddy_core::constants::LOOP_IN_PAY_ATTEMPTS,
                        "attempt {} of {}",
                        self.payments_sent,
                        eddy_core::constants::LOOP_IN_PAY_ATTEMPTS
                    );
                }
                lis::Action::CosignRefund => {
                    prop_assert!(
                        !matches!(self.pay, Pay::InFlight { .. } | Pay::Succeeded),
                        "co-signed a refund with a payment in flight or made"
                    );
                    self.cosigned = true;
                }
                lis::Action::Claim { .. } => {
                    prop_assert_eq!(self.pay, Pay::Succeeded);
                    let lis::State::Claiming { outpoint, .. } = next else {
                        return Err(TestCaseError::fail(format!("claim in {next:?}")));
                    };
                    prop_assert_eq!(Some(outpoint), self.paid_for, "claims the output it paid for");
                    if let Some(o) = self.outputs.iter_mut().find(|o| o.outpoint == outpoint) {
                        if o.spent == Spent::Unspent && o.height.is_some() {
                            o.spent = Spent::ClaimPending;
                        }
                    }
                }
                lis::Action::NotifyFailed(_) => {}
            }
        }
        self.state = next;
        self.check()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        if self.state.is_terminal() && self.pay == Pay::Succeeded {
            // The server holds the preimage only after its payment succeeded: then the output
            // it paid for is its money until spent — a spend of another output ends nothing.
            let o = self.paid_for.and_then(|p| self.output(p));
            prop_assert!(
                o.is_some_and(|o| matches!(o.spent, Spent::Claimed(_) | Spent::Refunded(_))),
                "terminal {:?} with the output it paid for unspent ({:?})",
                self.state,
                o
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn loop_in_server_survives_adversarial_worlds(adv in proptest::collection::vec(in_adv(), 0..40)) {
        run_in(&adv)?;
    }
}

/// Plays `adv`, lets the world go quiet, checks the end invariants; returns the world.
fn run_in(adv: &[InAdv]) -> Result<InWorld, TestCaseError> {
    let mut w = InWorld::new();
    for a in adv {
        w.adversary(a)?;
    }
    // The world goes quiet; the server comes back up and stays up until well past every
    // height that matters.
    w.down = false;
    w.engine()?;
    let end = w.tip.max(w.terms.give_up_height()) + 50;
    while w.tip < end && !w.state.is_terminal() {
        w.block();
        w.engine()?;
    }
    if w.pay == Pay::Succeeded && !w.down_after_paying {
        let o = w.paid_for.and_then(|p| w.output(p)).copied();
        prop_assert_eq!(
            &w.state,
            &lis::State::Succeeded,
            "paid and up, yet not claimed ({:?})",
            o
        );
    }
    prop_assert!(
        !(matches!(w.pay, Pay::Succeeded) && w.cosigned),
        "paid and co-signed a refund"
    );
    // Past the give-up height only a payment the node never resolved can keep it open.
    prop_assert!(
        w.state.is_terminal() || matches!(w.pay, Pay::InFlight { .. }),
        "{:?}",
        w.state
    );
    Ok(w)
}

/// Review #8 in the world: the client funds X (exact) and Y (+1 sat), a stranger leaves an
/// exact output unconfirmed; the server pays against X and is down until well after `E`, while
/// the payee settles and the client refunds Y by its timeout path (buried). Back up, the
/// server still claims X: the refund of another output ends nothing.
#[test]
fn loop_in_refund_of_another_output_does_not_end_the_claim() {
    use InAdv::*;
    let adv = [
        Fund(0),
        Fund(1),
        StrangerFunds(0, false),
        Blocks(1, false),
        Blocks(1, true),
        PayeeSettles,
        Blocks(150, true),
        ClientRefunds(1),
        Blocks(10, true),
        Blocks(1, false),
    ];
    let w = run_in(&adv).expect("invariants hold");
    let x = w.output(w.paid_for.expect("paid")).expect("X");
    assert_eq!((x.outpoint.vout, x.value), (0, w.terms.amount), "paid against X");
    assert!(matches!(x.spent, Spent::Claimed(_)), "X claimed: {:?}", x.spent);
    assert!(
        matches!(w.outputs[1].spent, Spent::Refunded(_)),
        "Y refunded by the client"
    );
    assert_eq!(w.state, lis::State::Succeeded);
}

// ---------------------------------------------------------------------------------------------
// Loop-out.

#[derive(Clone, Debug)]
enum OutAdv {
    Blocks(u32, bool),
    /// The client pays the swap invoice (held until `claim_deadline`; `short`: less than the
    /// margin the server requires).
    PaySwap {
        short: bool,
    },
    /// The client pays the prepay (`under`: less than asked), held for `hold` blocks from the
    /// tip (a short hold expires before the publication window closes: review #12).
    PayPrepay {
        under: bool,
        hold: u32,
    },
    /// The client pushes its preimage over the API.
    PushPreimage,
    /// The client claims the HTLC on chain (confirms in the next block, unless spent first).
    Claim,
    /// The HTLC transaction disappears from the mempool (evicted) or its block is reorged out.
    LoseHtlcTx,
    /// The swap wallet can(not) fund a publication now.
    Wallet(bool),
}

fn out_adv() -> impl Strategy<Value = OutAdv> {
    prop_oneof![
        5 => gap().prop_map(|(n, down)| OutAdv::Blocks(n, down)),
        2 => Just(OutAdv::PaySwap { short: false }),
        1 => Just(OutAdv::PaySwap { short: true }),
        2 => (0u32..70).prop_map(|hold| OutAdv::PayPrepay { under: false, hold }),
        1 => (0u32..70).prop_map(|hold| OutAdv::PayPrepay { under: true, hold }),
        1 => Just(OutAdv::PushPreimage),
        2 => Just(OutAdv::Claim),
        1 => Just(OutAdv::LoseHtlcTx),
        1 => any::<bool>().prop_map(OutAdv::Wallet),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inv {
    Open,
    Held { deadline: u32 },
    Settled,
    Gone,
}

struct OutWorld {
    terms: los::Terms,
    state: los::State,
    tip: u32,
    swap: Inv,
    prepay: Inv,
    prepay_amount: u64,
    wallet_ok: bool,
    /// The HTLC: (published at, confirmed at).
    htlc: Option<(u32, Option<u32>)>,
    in_mempool: bool,
    spent: Spent,
    refund_broadcast: bool,
    down_after_claim: bool,
    preimage: Preimage,
    settle_calls: Vec<u32>,
    cancels: u32,
}

impl OutWorld {
    fn new() -> OutWorld {
        OutWorld {
            terms: los::Terms {
                swap_invoice_msat: 100_000_000,
                prepay_msat: 1_000_000,
                expiry: CREATED + 80,
                created_height: CREATED,
                relative_refund: None,
            },
            state: los::State::new(),
            tip: CREATED,
            swap: Inv::Open,
            prepay: Inv::Open,
            prepay_amount: 0,
            wallet_ok: true,
            htlc: None,
            in_mempool: false,
            spent: Spent::Unspent,
            refund_broadcast: false,
            down_after_claim: false,
            preimage: Preimage::from_bytes([9; 32]),
            settle_calls: vec![],
            cancels: 0,
        }
    }

    fn block(&mut self) {
        self.tip += 1;
        if let Some((p, None)) = self.htlc {
            if self.in_mempool {
                self.htlc = Some((p, Some(self.tip)));
                self.in_mempool = false;
            }
        }
        self.spent = match self.spent {
            Spent::ClaimPending => Spent::Claimed(self.tip),
            Spent::RefundPending => Spent::Refunded(self.tip),
            s => s,
        };
        // The node fails a held HTLC back at its deadline.
        for inv in [&mut self.swap, &mut self.prepay] {
            if let Inv::Held { deadline } = *inv {
                if self.tip >= deadline {
                    *inv = Inv::Gone;
                }
            }
        }
    }

    fn confirmed(&self) -> bool {
        matches!(self.htlc, Some((_, Some(_))))
    }

    fn adversary(&mut self, a: &OutAdv) -> Result<(), TestCaseError> {
        match a {
            OutAdv::Blocks(n, down) => {
                for _ in 0..*n {
                    self.block();
                    if *down {
                        if matches!(self.spent, Spent::ClaimPending | Spent::Claimed(_)) {
                            self.down_after_claim = true;
                        }
                    } else {
                        self.engine()?;
                    }
                }
                return Ok(());
            }
            OutAdv::PaySwap { short } => {
                if self.swap == Inv::Open {
                    let margin = if *short {
                        SERVER_SETTLE_MARGIN - 1
                    } else {
                        SERVER_SETTLE_MARGIN + 3
                    };
                    self.swap = Inv::Held {
                        deadline: self.terms.expiry + margin,
                    };
                }
            }
            OutAdv::PayPrepay { under, hold } => {
                if self.prepay == Inv::Open {
                    self.prepay_amount = if *under {
                        self.terms.prepay_msat - 1
                    } else {
                        self.terms.prepay_msat
                    };
                    self.prepay = Inv::Held {
                        deadline: self.tip + *hold,
                    };
                }
            }
            OutAdv::PushPreimage => {
                self.event(los::Event::PreimageLearned(self.preimage))?;
            }
            OutAdv::Claim => {
                if self.confirmed() && self.spent == Spent::Unspent && self.tip <= self.terms.expiry + 40 {
                    self.spent = Spent::ClaimPending;
                }
            }
            OutAdv::LoseHtlcTx => {
                if let Some((p, c)) = self.htlc {
                    if self.spent == Spent::Unspent {
                        if c.is_some() {
                            self.htlc = Some((p, None));
                        }
                        self.in_mempool = false;
                    }
                }
            }
            OutAdv::Wallet(ok) => self.wallet_ok = *ok,
        }
        self.engine()
    }

    fn engine(&mut self) -> Result<(), TestCaseError> {
        if let los::State::Created { .. } = self.state {
            if let Inv::Held { deadline } = self.swap {
                self.event(los::Event::SwapAccepted {
                    amount_msat: self.terms.swap_invoice_msat,
                    claim_deadline: deadline,
                })?;
            }
            if let Inv::Held { deadline } = self.prepay {
                self.event(los::Event::PrepayAccepted {
                    amount_msat: self.prepay_amount,
                    claim_deadline: deadline,
                })?;
            }
        }
        if matches!(self.state, los::State::Publishing { .. }) {
            // Adopt before publish: the engine synced the chain and mempool.
            match self.htlc {
                Some((p, _)) => self.event(los::Event::HtlcBroadcast {
                    txid: Txid::all_zeros(),
                    height: p,
                })?,
                None => self.event(los::Event::NoHtlcOnChain { height: self.tip })?,
            }
        }
        let published = matches!(
            self.state,
            los::State::Published { .. }
                | los::State::Refunding { .. }
                | los::State::PreimageKnown { .. }
                | los::State::Reclaiming
        );
        if published && self.htlc.is_some() && !self.confirmed() {
            // Re-broadcast until it confirms.
            self.in_mempool = true;
        }
        if let los::State::PreimageKnown { .. } = self.state {
            match self.swap {
                Inv::Settled => self.event(los::Event::SwapSettled)?,
                Inv::Gone => self.event(los::Event::SwapInvoiceGone)?,
                _ => {}
            }
        }
        match self.spent {
            Spent::ClaimPending => self.event(los::Event::HtlcClaimed {
                preimage: self.preimage,
                confs: 0,
            })?,
            Spent::Claimed(h) => self.event(los::Event::HtlcClaimed {
                preimage: self.preimage,
                confs: self.tip + 1 - h,
            })?,
            Spent::Refunded(h) => self.event(los::Event::RefundConfirmed {
                confs: self.tip + 1 - h,
            })?,
            _ => {}
        }
        self.event(los::Event::Block { height: self.tip })
    }

    fn event(&mut self, e: los::Event) -> Result<(), TestCaseError> {
        let published_before = self.htlc.is_some();
        let (next, actions) = los::transition(&self.terms, self.state.clone(), &e, self.tip);
        for a in actions {
            match a {
                los::Action::PublishHtlc => {
                    prop_assert!(
                        self.terms.may_publish(self.tip),
                        "published outside the window at {}",
                        self.tip
                    );
                    prop_assert!(!published_before || self.htlc.is_none(), "published twice");
                    if self.wallet_ok && self.htlc.is_none() {
                        self.htlc = Some((self.tip, None));
                        self.in_mempool = true;
                        // The engine records the broadcast next.
                        self.state = next.clone();
                        return self.event(los::Event::HtlcBroadcast {
                            txid: Txid::all_zeros(),
                            height: self.tip,
                        });
                    }
                }
                los::Action::SettlePrepay => {
                    let (p, _) = self.htlc.expect("settled a prepay without an HTLC");
                    prop_assert!(
                        self.terms.may_publish(p),
                        "prepay settled for a late publication at {}",
                        p
                    );
                    if let Inv::Held { deadline } = self.prepay {
                        // The prepay is settled only before its deadline (review #12).
                        prop_assert!(
                            self.tip + SETTLE_LATENCY <= deadline,
                            "prepay settled at {} past its deadline {}",
                            self.tip,
                            deadline
                        );
                        self.prepay = Inv::Settled;
                    }
                }
                los::Action::CancelPrepay => {
                    prop_assert!(self.prepay != Inv::Settled);
                    self.prepay = Inv::Gone;
                }
                los::Action::SettleSwap(p) => {
                    prop_assert_eq!(p, self.preimage);
                    prop_assert!(
                        !matches!(self.spent, Spent::Refunded(_) | Spent::RefundPending),
                        "settling a swap whose refund is confirmed or in flight"
                    );
                    self.settle_calls.push(self.tip);
                    if let Inv::Held { .. } = self.swap {
                        self.swap = Inv::Settled;
                    }
                }
                los::Action::CancelInvoices | los::Action::CancelSwap => {
                    prop_assert!(self.swap != Inv::Settled, "canceled a settled swap invoice");
                    self.cancels += 1;
                    self.swap = Inv::Gone;
                    if matches!(a, los::Action::CancelInvoices) && self.prepay != Inv::Settled {
                        self.prepay = Inv::Gone;
                    }
                }
                los::Action::BroadcastRefund => {
                    prop_assert!(self.swap != Inv::Settled, "refunding a paid-for HTLC");
                    if self.tip >= self.terms.expiry && self.confirmed() && self.spent == Spent::Unspent {
                        self.spent = Spent::RefundPending;
                        self.refund_broadcast = true;
                    }
                }
            }
        }
        self.state = next;
        self.check()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        prop_assert!(self.state != los::State::TimedOut);
        prop_assert!(
            !(self.swap == Inv::Settled && matches!(self.spent, Spent::Refunded(_))),
            "settled and refunded"
        );
        if self.state.is_terminal() && self.htlc.is_some() {
            // A published HTLC is done only when spent, or paid for (then it is the client's).
            prop_assert!(
                matches!(self.spent, Spent::Claimed(_) | Spent::Refunded(_)) || self.swap == Inv::Settled,
                "terminal {:?} with its HTLC unspent and unpaid ({:?})",
                self.state,
                self.spent
            );
        }
        if self.htlc.is_none() {
            prop_assert!(self.prepay != Inv::Settled, "prepay taken without a publication");
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn loop_out_server_survives_adversarial_worlds(adv in proptest::collection::vec(out_adv(), 0..40)) {
        let mut w = OutWorld::new();
        for a in &adv {
            w.adversary(a)?;
        }
        w.wallet_ok = true;
        w.engine()?;
        let end = w.tip.max(w.terms.expiry) + 400;
        while w.tip < end && !w.state.is_terminal() {
            w.block();
            w.engine()?;
        }
        prop_assert!(w.state.is_terminal(), "never ends: {:?}", w.state);
        // A claim confirmed while the invoice could still be settled is paid for.
        if let Spent::Claimed(h) = w.spent {
            if !w.down_after_claim && h + SETTLE_LATENCY <= w.terms.expiry + SERVER_SETTLE_MARGIN && w.cancels == 0 {
                prop_assert_eq!(&w.state, &los::State::Succeeded, "claimed at {} yet not paid", h);
            }
        }
        if let Spent::Refunded(_) = w.spent {
            prop_assert!(w.swap != Inv::Settled);
            prop_assert!(w.tip >= w.terms.expiry + REORG_SAFETY_DEPTH);
        }
    }
}
