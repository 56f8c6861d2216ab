//! Property tests of the two CLIENT state machines against an adversary (issue 12): random
//! event sequences — blocks with big downtime gaps across `E` and past the old give-up heights,
//! reorgs (confirmations going back down, unconfirmed transactions disappearing), strangers
//! paying the HTLC address, a hostile server acting in any order — over a model of the chain
//! the test keeps itself. The machines' actions are carried out on that model (funding, refunds,
//! claims), as the daemons would. Invariants checked after every step:
//!
//! - never terminal with a spendable output of the client's own unspent (loop-in: every output
//!   worth a refund, but the one the server paid for once we are paid; loop-out: the HTLC once
//!   the preimage is out);
//! - the preimage is never revealed against an unconfirmed or short output, nor with fewer
//!   than `PREIMAGE_REVEAL_CUTOFF` blocks left;
//! - never both paid and refunded: once our invoice is settled the client never refunds the
//!   output the server paid for;
//! - the client never ends with less than it is owed: after the adversary stops and blocks come,
//!   every output of the client's is back in its wallet (or, paid, all but the server's).
//!
//! Reorgs are at most 2 blocks deep (below `SWEEP_FINAL_CONFS`, the depth at which the
//! machines take a spend as final). Not modelled: a server that, once paid (it then holds the
//! preimage), claims *extra* outputs paying the address by the script path before `E` — the
//! HTLC lets it, no client rule can stop it, and a client pays the address once.

use bitcoin::hashes::Hash;
use bitcoin::{Amount, OutPoint, Txid};
use eddy_core::constants::REORG_SAFETY_DEPTH;
use eddy_core::constants::{LOOP_IN_MIN_REFUND_SAT, PREIMAGE_REVEAL_CUTOFF};
use eddy_core::fees::DontClaim;
use eddy_core::sm::loop_in_client as li;
use eddy_core::sm::loop_in_server as ls;
use eddy_core::sm::loop_out_client as lo;
use eddy_core::sm::SWEEP_FINAL_CONFS;
use proptest::prelude::*;

const AMOUNT: u64 = 100_000;
const START: u32 = 1_000;
const EXPIRY: u32 = START + 144;

fn txid(n: u32) -> Txid {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_le_bytes());
    b[31] = 0xee;
    Txid::from_byte_array(b)
}

/// A transaction in the model: confirmed at `height`, or in the mempool.
#[derive(Clone, Copy, Debug)]
struct ModelTx {
    txid: Txid,
    height: Option<u32>,
}

impl ModelTx {
    fn confs(&self, tip: u32) -> u32 {
        self.height.map_or(0, |h| tip.saturating_sub(h) + 1)
    }

    /// Final in the model: [`SWEEP_FINAL_CONFS`] deep at the highest tip ever (reorgs never go
    /// deeper than that, so it stays).
    fn is_final(&self, max_tip: u32) -> bool {
        self.height.is_some_and(|h| h + SWEEP_FINAL_CONFS - 1 <= max_tip)
    }
}

/// An output paying the HTLC: its funding transaction, value, and spend (transaction, ours).
type ModelOutput = (ModelTx, Amount, Option<(ModelTx, bool)>);

/// What the loop-out client sees of its HTLC: outpoint, value, confirmations, spend (txid,
/// confirmations, ours).
type HtlcView = (OutPoint, Amount, u32, Option<(Txid, u32, bool)>);

/// The chain as far as one swap's HTLC goes.
#[derive(Clone, Debug, Default)]
struct Model {
    tip: u32,
    /// The highest tip ever: no reorg goes deeper than 2 blocks below it.
    max_tip: u32,
    next: u32,
    /// Outputs paying the HTLC: (funding tx, value, spend (tx, ours)).
    outputs: Vec<ModelOutput>,
    /// Outputs the client's view misses until the tip reaches the height given (a transaction
    /// mined between the watcher's chain and mempool reads, a funding a reorg dropped that is
    /// re-mined later): they exist, the client just does not see them for a while.
    hidden: Vec<(OutPoint, u32)>,
}

impl Model {
    fn new() -> Model {
        Model {
            tip: START,
            max_tip: START,
            next: 1,
            outputs: vec![],
            hidden: vec![],
        }
    }

    fn fresh(&mut self) -> Txid {
        self.next += 1;
        txid(self.next)
    }

    fn pay(&mut self, value: Amount) -> Txid {
        let t = self.fresh();
        self.outputs.push((ModelTx { txid: t, height: None }, value, None));
        t
    }

    /// Mines `n` blocks; the first takes everything in the mempool (a spend only once its
    /// output is confirmed).
    fn mine(&mut self, n: u32) {
        for i in 0..n {
            self.tip += 1;
            self.max_tip = self.max_tip.max(self.tip);
            if i == 0 {
                for (f, _, s) in &mut self.outputs {
                    if f.height.is_none() {
                        f.height = Some(self.tip);
                    }
                    if let Some((t, _)) = s {
                        if t.height.is_none() && f.height.is_some_and(|h| h < self.tip) {
                            t.height = Some(self.tip);
                        }
                    }
                }
            }
        }
    }

    /// A reorg of `depth` blocks: what they confirmed goes back to the mempool; with `drop`,
    /// what was unconfirmed then vanishes (double-spent), spends first.
    fn reorg(&mut self, depth: u32, drop: bool) {
        let cut = self.tip.saturating_sub(depth).max(self.max_tip.saturating_sub(2));
        for (f, _, s) in &mut self.outputs {
            if f.height.is_some_and(|h| h > cut) {
                f.height = None;
            }
            if let Some((t, _)) = s {
                if t.height.is_some_and(|h| h > cut) {
                    t.height = None;
                }
            }
        }
        self.tip = cut;
        if drop {
            for (_, _, s) in &mut self.outputs {
                if s.is_some_and(|(t, _)| t.height.is_none()) {
                    *s = None;
                }
            }
            self.outputs.retain(|(f, _, _)| f.height.is_some());
        }
    }

    fn outpoint(f: &ModelTx) -> OutPoint {
        OutPoint { txid: f.txid, vout: 0 }
    }

    /// Spends `outpoint` (replacing an unconfirmed spend; a confirmed one stays).
    fn spend(&mut self, outpoint: OutPoint, ours: bool) -> Option<Txid> {
        let t = self.fresh();
        let (_, _, s) = self
            .outputs
            .iter_mut()
            .find(|(f, _, _)| Model::outpoint(f) == outpoint)?;
        if s.is_some_and(|(x, _)| x.height.is_some()) {
            return None;
        }
        *s = Some((ModelTx { txid: t, height: None }, ours));
        Some(t)
    }

    fn li_chain(&self) -> li::Chain {
        li::Chain {
            height: self.tip,
            outputs: self
                .outputs
                .iter()
                .filter(|(f, _, _)| {
                    !self
                        .hidden
                        .iter()
                        .any(|(o, until)| *o == Model::outpoint(f) && self.tip < *until)
                })
                .map(|(f, v, s)| li::HtlcOutput {
                    outpoint: Model::outpoint(f),
                    value: *v,
                    confs: f.confs(self.tip),
                    spend: s.map(|(t, ours)| li::OutputSpend {
                        txid: t.txid,
                        confs: t.confs(self.tip),
                        ours,
                    }),
                })
                .collect(),
            missing: vec![],
        }
    }
}

// ------------------------------------------------------------------------------------------
// Loop-in client

#[derive(Clone, Debug)]
enum InStep {
    /// Blocks (1 = normal; large = the daemon was down).
    Blocks(u32),
    /// A reorg of 1 or 2 blocks, maybe dropping what it unconfirmed.
    Reorg(u32, bool),
    /// Someone pays the address (the user a second time, a stranger, a dust griefer).
    Pay(u64),
    /// The server pays our invoice.
    ServerPays,
    /// The server says the swap failed.
    SwapFailed,
    /// The user abandons.
    Abandon,
    /// Whether the server co-signs refunds from now on.
    Cosigns(bool),
    /// The server (once paid) claims the output it paid for.
    ServerClaims,
    /// The client's view misses the newest output for this many blocks (fewer than
    /// `REORG_SAFETY_DEPTH`), then sees it again.
    Flicker(u32),
    /// Whether the client's wallet funding works now (a wallet error keeps a stored swap in
    /// `Persisted`; the engine retries while the funding window is open).
    WalletWorks(bool),
    /// With `--external`: the user pays the address (once), whenever before the give-up
    /// height — also after `E`, also if the machine already gave up (it must not have).
    UserFunds,
}

fn in_step() -> impl Strategy<Value = InStep> {
    prop_oneof![
        4 => prop_oneof![Just(1u32), Just(2), Just(6), 20u32..60, 140u32..400].prop_map(InStep::Blocks),
        1 => (1u32..=2, any::<bool>()).prop_map(|(d, x)| InStep::Reorg(d, x)),
        2 => prop_oneof![Just(AMOUNT), Just(AMOUNT + 1), 1u64..LOOP_IN_MIN_REFUND_SAT, 1_000u64..200_000].prop_map(InStep::Pay),
        1 => Just(InStep::ServerPays),
        1 => Just(InStep::SwapFailed),
        1 => Just(InStep::Abandon),
        1 => any::<bool>().prop_map(InStep::Cosigns),
        1 => Just(InStep::ServerClaims),
        1 => (1u32..REORG_SAFETY_DEPTH).prop_map(InStep::Flicker),
        1 => any::<bool>().prop_map(InStep::WalletWorks),
        1 => Just(InStep::UserFunds),
    ]
}

struct InRun {
    terms: li::Terms,
    state: li::State,
    model: Model,
    settled: bool,
    cosigns: bool,
    /// The output the server paid for: the real server machine's `Paying` outpoint, fed the
    /// output the shared rule (`validate::loop_in_server_output`) picks from what the server
    /// sees (which the client's view may miss for a while).
    paid_for: Option<OutPoint>,
    /// The real server machine.
    server: ls::State,
    server_terms: ls::Terms,
    /// The user funds the address from elsewhere (`--external`): the wallet never funds, the
    /// user pays whenever (even after `E`).
    external: bool,
    /// The wallet's funding works now.
    wallet_works: bool,
    /// The client's memory of its outputs (as the engine stores it).
    seen: Vec<li::SeenOutput>,
    /// The external user has paid.
    user_funded: bool,
    /// The machine saw a funding (left `Persisted` for a funded state) at some point.
    left_persisted: bool,
}

impl InRun {
    /// The client's view, with its memory of outputs missing from it (as the engine builds it).
    fn view(&mut self) -> li::Chain {
        let mut chain = self.model.li_chain();
        li::observe(&mut self.seen, &mut chain);
        chain
    }

    /// The engine's funding step for a stored, unfunded swap: fund while the window is open
    /// (and the wallet works), fail as never funded once it closed.
    fn fund(&mut self) -> Result<(), TestCaseError> {
        if self.state != li::State::Persisted || self.external {
            return Ok(());
        }
        if self.model.tip > eddy_core::constants::loop_in_last_funding_height(self.terms.expiry) {
            return self.feed(li::Event::FundingWindowClosed);
        }
        if self.wallet_works {
            // As the engine: an output already paying the HTLC is adopted, never funded twice.
            let existing = self
                .view()
                .outputs
                .iter()
                .find(|o| o.refundable())
                .map(|o| o.outpoint.txid);
            let t = existing.unwrap_or_else(|| self.model.pay(self.terms.amount));
            return self.feed(li::Event::FundingBroadcast { txid: t });
        }
        Ok(())
    }

    fn feed(&mut self, event: li::Event) -> Result<(), TestCaseError> {
        let chain = self.view();
        let (next, actions) = li::transition(&self.terms, self.state.clone(), &chain, &event);
        self.state = next;
        self.left_persisted |= matches!(
            self.state,
            li::State::Funding { .. } | li::State::Funded { .. } | li::State::Refunding { .. } | li::State::Paid
        );
        for a in actions {
            match &a {
                li::Action::FundHtlc => self.fund()?,
                li::Action::RequestCooperativeRefund { outpoints }
                | li::Action::BroadcastTimeoutRefund { outpoints } => {
                    let cooperative = matches!(a, li::Action::RequestCooperativeRefund { .. });
                    for o in outpoints.clone() {
                        prop_assert!(
                            !(self.settled && Some(o) == self.paid_for),
                            "refunds the output the server paid for"
                        );
                        prop_assert!(chain.outputs.iter().any(|x| x.outpoint == o && x.confs >= 1));
                        if cooperative && !self.cosigns {
                            continue;
                        }
                        if cooperative {
                            // The server co-signs: its machine never pays after that.
                            let (next, _) =
                                ls::transition(&self.server_terms, self.server.clone(), &ls::Event::RefundRequested);
                            self.server = next;
                        }
                        if !cooperative {
                            prop_assert!(chain.height >= self.terms.expiry, "timeout refund before E");
                        }
                        if let Some(t) = self.model.spend(o, true) {
                            self.feed(li::Event::RefundBroadcast { txid: t })?;
                        }
                    }
                }
            }
        }
        self.check()
    }

    /// The output that is the server's once we are paid: the one it paid for; if a reorg
    /// double-spent that one (its payer got the coins back), any one exact output paying the
    /// address instead — the swap is then still whole for the client: paid once, one
    /// amount left to the server.
    fn reserved(&self) -> Option<OutPoint> {
        if !self.settled {
            return None;
        }
        let exists = |o: OutPoint| self.model.outputs.iter().any(|(f, _, _)| Model::outpoint(f) == o);
        match self.paid_for {
            Some(o) if exists(o) => Some(o),
            _ => {
                let tip = self.model.tip;
                let all = self
                    .model
                    .outputs
                    .iter()
                    .map(|(f, v, _)| (Model::outpoint(f), *v, f.confs(tip)));
                eddy_core::validate::loop_in_server_output(all, self.terms.amount, self.server_terms.funding_confs)
            }
        }
    }

    /// Never terminal with an output of ours unspent (or its spend not final).
    fn check(&self) -> Result<(), TestCaseError> {
        if !self.state.is_terminal() || matches!(self.state, li::State::Failed(li::FailReason::OfferRejected)) {
            return Ok(());
        }
        let reserved = self.reserved();
        for (f, v, s) in &self.model.outputs {
            if Some(Model::outpoint(f)) == reserved || v.to_sat() < LOOP_IN_MIN_REFUND_SAT {
                continue;
            }
            let done = s.is_some_and(|(t, _)| t.is_final(self.model.max_tip));
            prop_assert!(done, "terminal {:?} with {:?} of ours unspent", self.state, f);
        }
        if matches!(self.state, li::State::Refunded { .. }) {
            prop_assert!(!self.settled, "both paid and refunded");
        }
        Ok(())
    }

    fn step(&mut self, s: &InStep) -> Result<(), TestCaseError> {
        match s {
            InStep::Blocks(n) => self.model.mine(*n),
            InStep::Reorg(d, x) => self.model.reorg(*d, *x),
            InStep::Pay(v) => {
                // Payments after the swap ended are not modelled (the daemon stops watching a
                // terminal swap's address); before it ends, at any height (late external
                // funding included).
                if !matches!(self.state, li::State::Created) && !self.state.is_terminal() {
                    self.model.pay(Amount::from_sat(*v));
                }
            }
            InStep::ServerPays => {
                // The server as its machine decides: it sees every output (the client's view
                // may miss some), takes the one the shared rule picks, and pays once its
                // machine says `Paying` — never after co-signing a refund of it.
                if !self.settled && !self.state.is_terminal() {
                    let tip = self.model.tip;
                    let all: Vec<_> = self
                        .model
                        .outputs
                        .iter()
                        .filter(|(_, _, s)| s.is_none_or(|(_, ours)| !ours))
                        .map(|(f, v, _)| (Model::outpoint(f), *v, f.confs(tip)))
                        .collect();
                    let pick = eddy_core::validate::loop_in_server_output(
                        all.iter().copied(),
                        self.terms.amount,
                        self.server_terms.funding_confs,
                    );
                    if let Some((o, v, confs)) = pick.and_then(|p| all.iter().copied().find(|x| x.0 == p)) {
                        let e = ls::Event::FundingSeen {
                            outpoint: o,
                            value: v,
                            confs,
                            height: tip,
                        };
                        let (next, actions) = ls::transition(&self.server_terms, self.server.clone(), &e);
                        self.server = next;
                        if actions.iter().any(|a| matches!(a, ls::Action::PayInvoice { .. })) {
                            self.settled = true;
                            self.paid_for = Some(o);
                            return self.feed(li::Event::InvoiceSettled);
                        }
                    }
                }
            }
            InStep::Flicker(n) => {
                // One gap at a time (back-to-back gaps would add up to a long absence, which
                // the client may take as final: the model keeps each absence short).
                let tip = self.model.tip;
                let hiding = self.model.hidden.iter().any(|(_, until)| tip < *until);
                if let (Some((f, _, _)), false) = (self.model.outputs.last(), hiding) {
                    self.model.hidden.push((Model::outpoint(f), tip + n));
                }
            }
            InStep::UserFunds => {
                // Only while the swap waits for its funding (or after it gave up waiting: it
                // must not have before the give-up height) — not after it saw a funding, was
                // abandoned or paid for: paying then is the user's mistake. "Before the give-up
                // height" is the highest tip seen: a reorg that lowers the tip after the swap gave
                // up does not make it wait again (the user was told it failed).
                let waiting = self.state == li::State::Persisted
                    || (self.state == li::State::Failed(li::FailReason::NeverFunded) && !self.left_persisted);
                if self.external && waiting && !self.user_funded && self.model.max_tip < self.terms.give_up_height() {
                    self.user_funded = true;
                    self.model.pay(self.terms.amount);
                }
            }
            InStep::WalletWorks(w) => {
                self.wallet_works = *w;
                self.fund()?;
            }
            InStep::ServerClaims => {
                if let (true, Some(o)) = (self.settled, self.paid_for) {
                    self.model.spend(o, false);
                }
            }
            InStep::SwapFailed => return self.feed(li::Event::SwapFailed),
            InStep::Abandon => return self.feed(li::Event::Abandon),
            InStep::Cosigns(c) => self.cosigns = *c,
        }
        self.pass()
    }

    /// One engine pass: fund a stored swap (or close its window), read the invoice (settled
    /// is fed on every pass while the machine can take it, as the engine does), then the block.
    fn pass(&mut self) -> Result<(), TestCaseError> {
        self.fund()?;
        if self.settled
            && matches!(
                self.state,
                li::State::Persisted
                    | li::State::Funding { .. }
                    | li::State::Funded { .. }
                    | li::State::Refunding { .. }
            )
        {
            self.feed(li::Event::InvoiceSettled)?;
        }
        self.feed(li::Event::Block)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn loop_in_client_keeps_every_coin_of_its_own(
        steps in proptest::collection::vec(in_step(), 0..40),
        external in any::<bool>(),
        wallet_works in any::<bool>(),
    ) {
        let mut run = InRun {
            terms: li::Terms { amount: Amount::from_sat(AMOUNT), expiry: EXPIRY },
            state: li::State::Created,
            model: Model::new(),
            settled: false,
            cosigns: false,
            paid_for: None,
            server: ls::State::Created,
            server_terms: ls::Terms {
                amount: Amount::from_sat(AMOUNT),
                expiry: EXPIRY,
                funding_confs: eddy_core::constants::LOOP_IN_SERVER_FUNDING_CONFS,
            },
            external,
            wallet_works,
            seen: vec![],
            user_funded: false,
            left_persisted: false,
        };
        run.feed(li::Event::OfferValidated)?;
        for s in &steps {
            run.step(s)?;
        }
        // The adversary stops; blocks come (one at a time, everything mined) until well after
        // E: the swap ends and the client has every coin it is owed.
        let mut guard = 0;
        while !run.state.is_terminal() && guard < 400 {
            run.model.mine(1);
            run.pass()?;
            guard += 1;
        }
        prop_assert!(run.state.is_terminal(), "never ends: {:?} at {}", run.state, run.model.tip);
        let reserved = run.reserved();
        for (f, v, s) in &run.model.outputs {
            if Some(Model::outpoint(f)) == reserved || v.to_sat() < LOOP_IN_MIN_REFUND_SAT {
                continue;
            }
            prop_assert!(s.is_some_and(|(_, ours)| ours), "output {f:?} not refunded to us (state {:?})", run.state);
        }
        if run.settled {
            prop_assert!(matches!(run.state, li::State::Succeeded), "{:?}", run.state);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Loop-out client

#[derive(Clone, Debug)]
enum OutStep {
    Blocks(u32),
    Reorg(u32, bool),
    /// The server publishes an HTLC of this value.
    Publish(u64),
    /// The client's node reports the payments sent / one failed.
    PaymentsSent,
    PaymentFailed,
    /// The server sweeps its refund path (valid from `E`; replaces our claim in the mempool).
    ServerRefunds,
    /// The fee estimate makes the claim not worth it / too costly at this moment.
    Fees(u8),
}

fn out_step() -> impl Strategy<Value = OutStep> {
    prop_oneof![
        4 => prop_oneof![Just(1u32), Just(2), Just(6), 20u32..60, 100u32..500].prop_map(OutStep::Blocks),
        1 => (1u32..=2, any::<bool>()).prop_map(|(d, x)| OutStep::Reorg(d, x)),
        2 => prop_oneof![Just(AMOUNT), Just(AMOUNT - 1), Just(AMOUNT + 5)].prop_map(OutStep::Publish),
        2 => Just(OutStep::PaymentsSent),
        1 => Just(OutStep::PaymentFailed),
        1 => Just(OutStep::ServerRefunds),
        1 => (0u8..3).prop_map(OutStep::Fees),
    ]
}

struct OutRun {
    terms: lo::Terms,
    state: lo::State,
    model: Model,
    revealed: bool,
    paid: bool,
    decision: Result<(), DontClaim>,
    /// A reorg double-spent the HTLC after the reveal (the server, with the preimage, then
    /// owes nothing on-chain: what pays the address afterwards is all the client can take).
    double_spent_after_reveal: bool,
}

impl OutRun {
    fn htlc(&self) -> Option<HtlcView> {
        let tip = self.model.tip;
        // The output the client looks at: the engine's rule (at least the amount, the most
        // confirmed, the lowest outpoint on a tie).
        let outputs = self
            .model
            .outputs
            .iter()
            .map(|(f, v, _)| (Model::outpoint(f), *v, f.confs(tip)));
        let (o, ..) = lo::htlc_output(outputs, self.terms.amount)?;
        self.model
            .outputs
            .iter()
            .find(|(f, _, _)| Model::outpoint(f) == o)
            .map(|(f, v, s)| {
                (
                    Model::outpoint(f),
                    *v,
                    f.confs(tip),
                    s.map(|(t, o)| (t.txid, t.confs(tip), o)),
                )
            })
    }

    /// The HTLC's spend is final in the model (or there is no HTLC): every output of at least
    /// the amount paying the script is spent for good. (A shorter one is never the client's to
    /// claim, even with the preimage out — a stranger's dust must not keep a swap open — so it
    /// only counts when nothing of the amount pays the script.)
    fn htlc_spent_final(&self) -> bool {
        let max_tip = self.model.max_tip;
        self.model
            .outputs
            .iter()
            .filter(|(_, v, _)| *v >= self.terms.amount)
            .all(|(_, _, s)| s.is_some_and(|(t, _)| t.is_final(max_tip)))
    }

    fn feed(&mut self, e: lo::Event) -> Result<(), TestCaseError> {
        let (next, actions) = lo::transition(&self.terms, self.state.clone(), &e);
        self.state = next;
        for a in actions {
            match a {
                lo::Action::PayInvoices => self.paid = true,
                lo::Action::RevealAndClaim { outpoint } | lo::Action::BumpClaim { outpoint } => {
                    if let lo::Action::RevealAndClaim { .. } = a {
                        let lo::Event::HtlcSeen {
                            value, confs, height, ..
                        } = &e
                        else {
                            return Err(TestCaseError::fail("reveal without an HTLC event"));
                        };
                        prop_assert!(*confs >= 1, "revealed against an unconfirmed output");
                        prop_assert!(*value >= self.terms.amount, "revealed against a short output");
                        prop_assert!(
                            self.terms.expiry.saturating_sub(*height) >= PREIMAGE_REVEAL_CUTOFF,
                            "revealed too late"
                        );
                        self.revealed = true;
                    }
                    prop_assert!(self.revealed, "claim without a reveal");
                    if let Some(t) = self.model.spend(outpoint, true) {
                        self.feed(lo::Event::ClaimBroadcast { txid: t })?;
                    }
                }
            }
        }
        self.check()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        if !self.revealed || !self.state.is_terminal() {
            return Ok(());
        }
        // Revealed and terminal: a spend of the HTLC is final (our claim, or the server's
        // refund), or the HTLC is gone.
        prop_assert!(
            self.htlc_spent_final(),
            "terminal {:?} with the HTLC unspent or its spend not final: {:?} at {}",
            self.state,
            self.htlc(),
            self.model.tip
        );
        Ok(())
    }

    fn observe(&mut self) -> Result<(), TestCaseError> {
        let tip = self.model.tip;
        if let Some((outpoint, value, confs, spend)) = self.htlc() {
            if matches!(
                self.state,
                lo::State::OfferAccepted | lo::State::Paying | lo::State::HtlcConfirming { .. }
            ) {
                self.feed(lo::Event::HtlcSeen {
                    outpoint,
                    value,
                    confs,
                    height: tip,
                    decision: self.decision,
                })?;
            }
            if let (lo::State::Claiming { outpoint: o, .. }, Some((txid, sconfs, ours))) = (&self.state, spend) {
                if *o == outpoint {
                    if ours {
                        self.feed(lo::Event::ClaimConfirmed { txid, confs: sconfs })?;
                    } else if sconfs >= 1 {
                        self.feed(lo::Event::HtlcRefunded { confs: sconfs })?;
                    }
                }
            }
        }
        if let lo::State::Claiming { outpoint, .. } = self.state {
            if !self
                .model
                .outputs
                .iter()
                .any(|(f, _, _)| Model::outpoint(f) == outpoint)
            {
                let replacement = self.htlc().map(|(o, v, _, _)| (o, v));
                self.feed(lo::Event::HtlcVanished {
                    height: tip,
                    replacement,
                })?;
            }
        }
        self.feed(lo::Event::Block { height: tip })
    }

    fn step(&mut self, s: &OutStep) -> Result<(), TestCaseError> {
        match s {
            OutStep::Blocks(n) => self.model.mine(*n),
            OutStep::Reorg(d, x) => {
                let before = self.model.outputs.len();
                self.model.reorg(*d, *x);
                if self.revealed && self.model.outputs.len() < before {
                    self.double_spent_after_reveal = true;
                }
            }
            OutStep::Publish(v) => {
                // Payments after the swap ended are not modelled (the daemon stops watching).
                if self.model.outputs.is_empty() && !self.state.is_terminal() {
                    self.model.pay(Amount::from_sat(*v));
                }
            }
            OutStep::PaymentsSent => return self.feed(lo::Event::PaymentsSent),
            OutStep::PaymentFailed => {
                // A payment fails back only while the preimage is secret (the server cannot
                // settle without it, and once it is out the server settles).
                if !self.revealed {
                    self.feed(lo::Event::PaymentFailed)?;
                }
            }
            OutStep::ServerRefunds => {
                if self.model.tip >= self.terms.expiry {
                    if let Some((o, ..)) = self.htlc() {
                        self.model.spend(o, false);
                    }
                }
            }
            OutStep::Fees(k) => {
                self.decision = match k {
                    0 => Ok(()),
                    1 => Err(DontClaim::FeeAboveLimit {
                        fee: Amount::from_sat(6_000),
                        max_fee: Amount::from_sat(5_000),
                    }),
                    _ => Err(DontClaim::NotWorthIt {
                        value: Amount::from_sat(AMOUNT),
                        fee: Amount::from_sat(AMOUNT),
                    }),
                }
            }
        }
        self.observe()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn loop_out_client_claims_while_it_can_and_reveals_only_safely(steps in proptest::collection::vec(out_step(), 0..40)) {
        let expiry = START + 80;
        let mut run = OutRun {
            terms: lo::Terms {
                amount: Amount::from_sat(AMOUNT),
                expiry,
                htlc_confs: 1,
                payment_timeout: eddy_core::constants::loop_out_max_payment_cltv(expiry),
            },
            state: lo::State::Created,
            model: Model::new(),
            revealed: false,
            paid: false,
            decision: Ok(()),
            double_spent_after_reveal: false,
        };
        run.feed(lo::Event::OfferValidated)?;
        prop_assert!(run.paid);
        for s in &steps {
            run.step(s)?;
        }
        // The adversary stops; blocks come with everything mined: the swap ends, and once the
        // preimage is out the client either holds the HTLC's coins or the server's refund beat
        // its claim only after E (its claim was out since before the cutoff).
        let mut guard = 0;
        while !run.state.is_terminal() && guard < 800 {
            run.model.mine(1);
            run.observe()?;
            guard += 1;
        }
        prop_assert!(run.state.is_terminal(), "never ends: {:?} at {}", run.state, run.model.tip);
        if run.revealed {
            match &run.state {
                lo::State::Succeeded { .. } => {
                    let max_tip = run.model.max_tip;
                    // At least the amount, unless a reorg double-spent the HTLC after the reveal
                    // (the risk `htlc_confs` bounds): then whatever paid the address again.
                    let claimed = run.model.outputs.iter().any(|(_, v, s)| {
                        (*v >= run.terms.amount || run.double_spent_after_reveal)
                            && s.is_some_and(|(t, ours)| ours && t.is_final(max_tip))
                    });
                    prop_assert!(claimed, "succeeded without a final claim of ours");
                }
                lo::State::Failed(lo::FailReason::ServerRefunded) => {
                    // The server's refund is valid only from E: our claim lost a fee race there.
                }
                lo::State::Failed(lo::FailReason::TimedOut) => {
                    prop_assert!(run.htlc_spent_final(), "gave up a claim it could still make");
                }
                other => prop_assert!(false, "revealed, then {other:?}"),
            }
        }
    }
}

/// Finding 3 (loop-out), deterministic: revealed, then the daemon is down until far past
/// `E` and every give-up height: the next block still bumps the claim.
#[test]
fn loop_out_claiming_survives_any_downtime() {
    let t = lo::Terms {
        amount: Amount::from_sat(AMOUNT),
        expiry: EXPIRY,
        htlc_confs: 1,
        payment_timeout: EXPIRY + 303,
    };
    let o = OutPoint { txid: txid(1), vout: 0 };
    let s = lo::State::Claiming {
        outpoint: o,
        value: t.amount,
        claim_txid: Some(txid(2)),
    };
    let (s, a) = lo::transition(
        &t,
        s,
        &lo::Event::Block {
            height: t.give_up_height() + 1_000,
        },
    );
    assert!(matches!(s, lo::State::Claiming { .. }));
    assert_eq!(a, vec![lo::Action::BumpClaim { outpoint: o }]);
    // A server refund one block deep is not the end (a reorg may undo it).
    let (s, _) = lo::transition(&t, s, &lo::Event::HtlcRefunded { confs: 1 });
    assert!(matches!(s, lo::State::Claiming { .. }));
    let (s, _) = lo::transition(&t, s, &lo::Event::HtlcRefunded { confs: 3 });
    assert_eq!(s, lo::State::Failed(lo::FailReason::ServerRefunded));
    // htlc_confs above the cap is capped.
    let t = lo::Terms { htlc_confs: 50, ..t };
    assert_eq!(t.required_confs(), eddy_core::constants::MAX_HTLC_CONFS);
}
