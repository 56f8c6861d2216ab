//! The emulator's invoice registry: LND's invoice states and the rules LND applies to them,
//! as pure logic (no I/O, heights and clock passed in), so LND's own registry and expiry-watcher
//! tests can be replayed against it (`tests/lnd_vectors.rs`).
//!
//! What each rule follows (LND source, read at v0.18.5–v0.21.x and master; our own code):
//! - `invoices/invoiceregistry.go`, `invoices/update.go`: an HTLC paying an open invoice is
//!   refused when its expiry is below `height + final CLTV delta` (`ResultExpiryTooSoon`); a
//!   hold invoice's accepted HTLCs are held until settled or canceled; a canceled invoice fails
//!   its held HTLCs back; a settled invoice cannot be canceled and a canceled one cannot be
//!   settled.
//! - `invoices/invoice_expiry_watcher.go`: an open invoice is canceled when its creation time
//!   plus its expiry has passed; an accepted *hold* invoice is canceled once
//!   `height + hold_expiry_delta >= ` the smallest expiry of its accepted HTLCs (LND's
//!   `makeHeightExpiry` takes the minimum; the watcher cancels when that height is within the
//!   delta).
//! - `invoicesrpc/addinvoice.go`: a user-chosen final CLTV delta must be at least
//!   [`Rules::min_final_cltv_delta`] and fit in 16 bits; 0 means LND's default; a hash already
//!   registered is refused.
//! - `channeldb/invoices.go` (kv store) / `sqldb` invoices: `gc-canceled-invoices-on-the-fly`
//!   deletes an invoice as it is canceled; a lookup then answers `NotFound`.

use std::collections::BTreeMap;

use eddy_core::types::{PaymentHash, Preimage};
use serde::{Deserialize, Serialize};
use tonic::Code;

/// The final CLTV delta LND puts into an invoice requested with `cltv_expiry = 0`
/// (`lncfg.DefaultFinalCltvDelta`/the chain's default time-lock delta: 80 blocks).
pub const DEFAULT_FINAL_CLTV_DELTA: u64 = 80;

/// LND's default invoice expiry when the request says 0 seconds (`invoicesrpc.DefaultInvoiceExpiry`,
/// 24 h).
pub const DEFAULT_INVOICE_EXPIRY_SECS: u64 = 86_400;

/// An RPC refusal, as LND returns it: a gRPC code (almost always `Unknown`, because LND's
/// handlers return plain Go errors) and LND's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    /// The gRPC status code a client sees.
    pub code: Code,
    /// LND's error text.
    pub message: String,
}

impl RpcError {
    /// A plain Go error from an LND handler: gRPC code `Unknown`.
    pub fn plain(message: impl Into<String>) -> RpcError {
        RpcError {
            code: Code::Unknown,
            message: message.into(),
        }
    }

    /// An error LND returns with an explicit status code.
    pub fn coded(code: Code, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

/// LND's invoice states (`lnrpc.Invoice.InvoiceState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvoiceState {
    /// OPEN (0).
    Open,
    /// SETTLED (1).
    Settled,
    /// CANCELED (2).
    Canceled,
    /// ACCEPTED (3): a hold invoice whose HTLCs are held.
    Accepted,
}

impl InvoiceState {
    /// The proto value.
    pub fn code(self) -> i32 {
        match self {
            InvoiceState::Open => 0,
            InvoiceState::Settled => 1,
            InvoiceState::Canceled => 2,
            InvoiceState::Accepted => 3,
        }
    }
}

/// LND's HTLC states (`lnrpc.InvoiceHTLCState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HtlcState {
    /// ACCEPTED (0).
    Accepted,
    /// SETTLED (1).
    Settled,
    /// CANCELED (2).
    Canceled,
}

impl HtlcState {
    /// The proto value.
    pub fn code(self) -> i32 {
        match self {
            HtlcState::Accepted => 0,
            HtlcState::Settled => 1,
            HtlcState::Canceled => 2,
        }
    }
}

/// One HTLC paying an invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Htlc {
    /// Amount in millisatoshis.
    pub amount_msat: u64,
    /// Its CLTV expiry height.
    pub expiry_height: u32,
    /// The height at which it was accepted.
    pub accept_height: u32,
    /// When it was accepted (unix seconds).
    #[serde(default)]
    pub accept_unix: u64,
    /// Its state.
    pub state: HtlcState,
    /// Whether the node behind the emulator holds it (`false`: recorded by a test directly,
    /// see `LndEmulator::record_held_htlc`).
    pub on_node: bool,
}

/// An invoice as the registry keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// Hold invoice (created by `AddHoldInvoice`, preimage unknown until settled).
    pub hold: bool,
    /// The preimage: known from creation for ordinary invoices, from settlement for hold ones.
    pub preimage: Option<Preimage>,
    /// Requested amount in millisatoshis.
    pub value_msat: u64,
    /// Creation time (unix seconds).
    pub created_unix: u64,
    /// Seconds after creation at which an unpaid invoice is canceled.
    pub expiry_secs: u64,
    /// The invoice's final CLTV delta.
    pub cltv_expiry: u64,
    /// Whether hop hints were asked for.
    pub private: bool,
    /// The BOLT11 string.
    pub payment_request: String,
    /// The memo.
    pub memo: String,
    /// State.
    pub state: InvoiceState,
    /// HTLCs received.
    pub htlcs: Vec<Htlc>,
    /// Settle index order (1-based, 0 while unsettled).
    pub add_index: u64,
}

impl Invoice {
    /// Millisatoshis paid: the settled HTLCs of a settled invoice, the accepted ones of an
    /// accepted invoice.
    pub fn amt_paid_msat(&self) -> u64 {
        let want = match self.state {
            InvoiceState::Settled => HtlcState::Settled,
            InvoiceState::Accepted => HtlcState::Accepted,
            _ => return 0,
        };
        self.htlcs
            .iter()
            .filter(|h| h.state == want)
            .map(|h| h.amount_msat)
            .sum()
    }

    /// The height at which LND's expiry watcher cancels this invoice: the smallest expiry of its
    /// accepted HTLCs minus the hold expiry delta (`None` unless an accepted hold invoice).
    pub fn cancel_height(&self, hold_expiry_delta: u32) -> Option<u32> {
        if !self.hold || self.state != InvoiceState::Accepted {
            return None;
        }
        self.htlcs
            .iter()
            .filter(|h| h.state == HtlcState::Accepted)
            .map(|h| h.expiry_height)
            .min()
            .map(|e| e.saturating_sub(hold_expiry_delta))
    }
}

/// A new invoice (AddInvoice / AddHoldInvoice, after the request was validated).
#[derive(Clone, Debug)]
pub struct NewInvoice {
    /// The payment hash.
    pub hash: PaymentHash,
    /// Hold invoice or not.
    pub hold: bool,
    /// Preimage of an ordinary invoice.
    pub preimage: Option<Preimage>,
    /// Amount, msat.
    pub value_msat: u64,
    /// Expiry, seconds (already defaulted).
    pub expiry_secs: u64,
    /// Final CLTV delta (already defaulted).
    pub cltv_expiry: u64,
    /// Hop hints asked for.
    pub private: bool,
    /// BOLT11.
    pub payment_request: String,
    /// Memo.
    pub memo: String,
}

/// The rules of one LND version and configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `--invoices.holdexpirydelta`: an accepted hold invoice is canceled once
    /// `height + this >= ` its smallest HTLC expiry (`lncfg.DefaultHoldInvoiceExpiryDelta` =
    /// incoming broadcast delta + 2: 12 up to v0.20, 18 from v0.21).
    pub hold_expiry_delta: u32,
    /// `FinalCltvRejectDelta` (incoming broadcast delta + 3: 13 up to v0.20, 19 from v0.21): an
    /// HTLC expiring sooner than this many blocks from the tip is failed back.
    pub final_cltv_reject_delta: u32,
    /// `routing.MinCLTVDelta`: the smallest user-chosen final CLTV delta of an invoice (18 up to
    /// v0.20, 24 from v0.21).
    pub min_final_cltv_delta: u64,
    /// `--gc-canceled-invoices-on-the-fly`: a canceled invoice is deleted at once.
    pub gc_canceled_on_the_fly: bool,
    /// `HtlcHoldDuration`: parts of an incomplete multi-part payment are failed back
    /// (`ResultMppTimeout`) after this many seconds (120 by default).
    pub mpp_hold_secs: u64,
}

impl Rules {
    /// LND up to v0.20.x with default settings (`DefaultIncomingBroadcastDelta` 10).
    pub const LND_0_20: Rules = Rules {
        hold_expiry_delta: 12,
        final_cltv_reject_delta: 13,
        min_final_cltv_delta: 18,
        gc_canceled_on_the_fly: false,
        mpp_hold_secs: 120,
    };

    /// LND v0.21 with default settings (PR #10331 raised the incoming broadcast delta to 16).
    pub const LND_0_21: Rules = Rules {
        hold_expiry_delta: 18,
        final_cltv_reject_delta: 19,
        min_final_cltv_delta: 24,
        gc_canceled_on_the_fly: false,
        mpp_hold_secs: 120,
    };
}

/// The final CLTV delta an AddInvoice/AddHoldInvoice request gets (0 ⇒ LND's default), or
/// LND's refusal (`invoicesrpc/addinvoice.go`); `min` is [`Rules::min_final_cltv_delta`].
pub fn final_cltv_delta(requested: u64, min: u64) -> Result<u64, RpcError> {
    if requested > u64::from(u16::MAX) {
        return Err(RpcError::plain(format!(
            "CLTV delta of {requested} is too large, max accepted is: {}",
            u16::MAX
        )));
    }
    if requested == 0 {
        return Ok(DEFAULT_FINAL_CLTV_DELTA);
    }
    if requested < min {
        return Err(RpcError::plain(format!(
            "CLTV delta of {requested} must be greater than minimum of {min}"
        )));
    }
    Ok(requested)
}

/// What happened to an HTLC offered to the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HtlcOutcome {
    /// Held (hold invoice) or settled (ordinary invoice with its preimage).
    Accepted,
    /// Failed back: its expiry is too soon for the invoice's final CLTV delta.
    ExpiryTooSoon,
    /// Failed back: the invoice is canceled, settled, or unknown.
    InvoiceNotOpen,
}

/// The registry.
#[derive(Clone, Debug)]
pub struct Registry {
    /// The node's rules.
    pub rules: Rules,
    invoices: BTreeMap<PaymentHash, Invoice>,
    next_index: u64,
}

impl Registry {
    /// An empty registry.
    pub fn new(rules: Rules) -> Registry {
        Registry {
            rules,
            invoices: BTreeMap::new(),
            next_index: 1,
        }
    }

    /// Registers a new invoice created at `now_unix`.
    pub fn add(&mut self, new: NewInvoice, now_unix: u64) -> Result<&Invoice, RpcError> {
        if self.invoices.contains_key(&new.hash) {
            // `invoices.ErrDuplicateInvoice`, returned as a plain error by both AddInvoice and
            // AddHoldInvoice.
            return Err(RpcError::plain("invoice with payment hash already exists"));
        }
        let index = self.next_index;
        self.next_index += 1;
        let inv = Invoice {
            hold: new.hold,
            preimage: new.preimage,
            value_msat: new.value_msat,
            created_unix: now_unix,
            expiry_secs: new.expiry_secs,
            cltv_expiry: new.cltv_expiry,
            private: new.private,
            payment_request: new.payment_request,
            memo: new.memo,
            state: InvoiceState::Open,
            htlcs: vec![],
            add_index: index,
        };
        Ok(self.invoices.entry(new.hash).or_insert(inv))
    }

    /// What LND keeps in its database: the invoices and the next add index.
    pub fn export(&self) -> (BTreeMap<PaymentHash, Invoice>, u64) {
        (self.invoices.clone(), self.next_index)
    }

    /// A registry over a database [`Registry::export`]ed before (LND restarted).
    pub fn import(rules: Rules, invoices: BTreeMap<PaymentHash, Invoice>, next_index: u64) -> Registry {
        Registry {
            rules,
            invoices,
            next_index: next_index.max(1),
        }
    }

    /// The invoice for `hash`, or LND's `NotFound` (`invoicesrpc` maps `ErrInvoiceNotFound`).
    pub fn lookup(&self, hash: &PaymentHash) -> Result<&Invoice, RpcError> {
        self.invoices
            .get(hash)
            .ok_or_else(|| RpcError::coded(Code::NotFound, "unable to locate invoice"))
    }

    /// All invoices.
    pub fn iter(&self) -> impl Iterator<Item = (&PaymentHash, &Invoice)> {
        self.invoices.iter()
    }

    /// An HTLC of `amount_msat` expiring at `expiry_height` arrives for `hash` at `height`.
    /// A hold invoice holds it (state Accepted once the amount is covered); an ordinary one
    /// settles. (LND: `NotifyExitHopHtlc` → `updateInvoice`.)
    pub fn htlc_arrived(
        &mut self,
        hash: &PaymentHash,
        amount_msat: u64,
        expiry_height: u32,
        height: u32,
        now_unix: u64,
        on_node: bool,
    ) -> HtlcOutcome {
        let Some(inv) = self.invoices.get_mut(hash) else {
            return HtlcOutcome::InvoiceNotOpen;
        };
        // `update.go`, in its order: a settled or canceled invoice takes nothing; then the
        // expiry checks; then an invoice that is no longer open (accepted: its set is complete)
        // takes nothing more (`ResultInvoiceNotOpen`).
        if matches!(inv.state, InvoiceState::Settled | InvoiceState::Canceled) {
            return HtlcOutcome::InvoiceNotOpen;
        }
        // `update.go`: too soon when `expiry < height + FinalCltvRejectDelta (13)` or
        // `expiry < height + invoice.FinalCltvDelta` (strict: equality is accepted).
        let floor = u64::from(height) + inv.cltv_expiry.max(u64::from(self.rules.final_cltv_reject_delta));
        if u64::from(expiry_height) < floor {
            return HtlcOutcome::ExpiryTooSoon;
        }
        if inv.state != InvoiceState::Open {
            return HtlcOutcome::InvoiceNotOpen;
        }
        let held: u64 = inv
            .htlcs
            .iter()
            .filter(|h| h.state == HtlcState::Accepted)
            .map(|h| h.amount_msat)
            .sum();
        // Parts of a multi-part payment are held (invoice still open) until they cover the
        // amount; then a hold invoice is accepted, an ordinary one settled.
        inv.htlcs.push(Htlc {
            amount_msat,
            expiry_height,
            accept_height: height,
            accept_unix: now_unix,
            state: HtlcState::Accepted,
            on_node,
        });
        let total = held + amount_msat;
        if total >= inv.value_msat {
            if inv.hold {
                inv.state = InvoiceState::Accepted;
            } else {
                inv.state = InvoiceState::Settled;
                for h in &mut inv.htlcs {
                    h.state = HtlcState::Settled;
                }
            }
        }
        HtlcOutcome::Accepted
    }

    /// The node behind the emulator failed the held HTLCs of `hash` back by itself (LDK does so
    /// at `expiry − 39`, before any LND profile would): the invoice is canceled.
    pub fn node_failed_back(&mut self, hash: &PaymentHash) {
        self.cancel_unchecked(hash);
    }

    /// HTLCs the node behind held for an open invoice were failed back (LND refused part of the
    /// set): they are canceled, the invoice stays open.
    pub fn node_released(&mut self, hash: &PaymentHash) {
        if let Some(inv) = self.invoices.get_mut(hash) {
            if inv.state == InvoiceState::Open {
                for h in &mut inv.htlcs {
                    if h.on_node && h.state == HtlcState::Accepted {
                        h.state = HtlcState::Canceled;
                    }
                }
            }
        }
    }

    /// The node behind settled an ordinary invoice of ours by itself (it knows the preimage):
    /// `amount_msat` arrived at `height`.
    pub fn node_settled(&mut self, hash: &PaymentHash, amount_msat: u64, height: u32) {
        let Some(inv) = self.invoices.get_mut(hash) else {
            return;
        };
        if inv.hold || inv.state != InvoiceState::Open {
            return;
        }
        inv.htlcs.push(Htlc {
            amount_msat,
            expiry_height: 0,
            accept_height: height,
            accept_unix: 0,
            state: HtlcState::Settled,
            on_node: true,
        });
        inv.state = InvoiceState::Settled;
    }

    /// `SettleInvoice` (`invoicesrpc/invoices_server.go` → registry `SettleHodlInvoice`):
    /// an accepted hold invoice settles; a settled one answers success again (the RPC server
    /// ignores `ErrInvoiceAlreadySettled`); open and canceled ones are refused.
    pub fn settle(&mut self, preimage: &Preimage) -> Result<&Invoice, RpcError> {
        let hash = preimage.payment_hash();
        let Some(inv) = self.invoices.get_mut(&hash) else {
            return Err(RpcError::plain("unable to locate invoice"));
        };
        match inv.state {
            InvoiceState::Accepted => {}
            InvoiceState::Settled => return Ok(inv),
            InvoiceState::Canceled => return Err(RpcError::plain("invoice already canceled")),
            InvoiceState::Open => return Err(RpcError::plain("invoice still open")),
        }
        if !inv.hold {
            return Err(RpcError::plain(format!(
                "unable to settle hodl invoice: {hash} is not a hodl invoice"
            )));
        }
        if inv.preimage.as_ref().is_some_and(|p| p != preimage) {
            return Err(RpcError::plain("preimage does not match"));
        }
        inv.state = InvoiceState::Settled;
        inv.preimage = Some(*preimage);
        for h in &mut inv.htlcs {
            if h.state == HtlcState::Accepted {
                h.state = HtlcState::Settled;
            }
        }
        Ok(inv)
    }

    /// `CancelInvoice`: a settled invoice is refused ("invoice already settled"); canceling a
    /// canceled one answers success. Returns whether the invoice changed state (the node behind
    /// must then fail back what it holds and accept nothing more for it).
    pub fn cancel(&mut self, hash: &PaymentHash) -> Result<bool, RpcError> {
        let Some(inv) = self.invoices.get(hash) else {
            return Err(RpcError::plain("unable to locate invoice"));
        };
        match inv.state {
            InvoiceState::Settled => Err(RpcError::plain("invoice already settled")),
            InvoiceState::Canceled => Ok(false),
            _ => {
                self.cancel_unchecked(hash);
                Ok(true)
            }
        }
    }

    fn cancel_unchecked(&mut self, hash: &PaymentHash) {
        let Some(inv) = self.invoices.get_mut(hash) else {
            return;
        };
        if matches!(inv.state, InvoiceState::Settled | InvoiceState::Canceled) {
            return;
        }
        inv.state = InvoiceState::Canceled;
        for h in &mut inv.htlcs {
            if h.state == HtlcState::Accepted {
                h.state = HtlcState::Canceled;
            }
        }
        if self.rules.gc_canceled_on_the_fly {
            self.invoices.remove(hash);
        }
    }

    /// LND's expiry watcher at block `height` and time `now_unix`: cancels open invoices whose
    /// time expiry passed and accepted hold invoices within the hold expiry delta of their
    /// smallest HTLC expiry. Returns the canceled hashes (the node behind must fail back what
    /// it holds for them).
    pub fn expire(&mut self, height: u32, now_unix: u64) -> Vec<PaymentHash> {
        let due: Vec<PaymentHash> = self
            .invoices
            .iter()
            .filter(|(_, inv)| match inv.state {
                // Open invoices by time, partial parts or not (those fail back with it).
                InvoiceState::Open => now_unix > inv.created_unix.saturating_add(inv.expiry_secs),
                InvoiceState::Accepted => inv
                    .cancel_height(self.rules.hold_expiry_delta)
                    .is_some_and(|at| height >= at),
                _ => false,
            })
            .map(|(h, _)| *h)
            .collect();
        for h in &due {
            self.cancel_unchecked(h);
        }
        // Parts of incomplete sets held longer than the MPP hold duration are failed back
        // (`ResultMppTimeout`); the invoice stays open.
        let hold = self.rules.mpp_hold_secs;
        for inv in self.invoices.values_mut() {
            if inv.state == InvoiceState::Open {
                for h in &mut inv.htlcs {
                    if h.state == HtlcState::Accepted && now_unix >= h.accept_unix.saturating_add(hold) {
                        h.state = HtlcState::Canceled;
                    }
                }
            }
        }
        due
    }
}
