//! The [`LightningNode`] trait: what Eddy's swap server and client need from a Lightning node,
//! with a contract every implementation (embedded LDK, LND) is tested against by the same
//! conformance suite (`tests/lightning_conformance.rs`).
//!
//! Contract:
//! - **Hold invoices** go Open → Accepted → Settled | Canceled. `Accepted` carries the amount
//!   and, for each held HTLC, its CLTV expiry height and the height by which the node must
//!   settle it (after that the node fails it back by itself — LDK does so silently). A server
//!   checks these against the on-chain expiry before acting.
//! - Only [`HoldInvoiceState::Settled`] proves the money arrived: `settle_hold_invoice`
//!   returning `Ok` means "settle issued", not "settled". Settling and canceling are
//!   idempotent for the same outcome (settle twice = Ok), and refuse the other outcome.
//! - **States survive restarts**: `hold_invoice_state` and `payment_status` are derived from the
//!   node's own persisted records, so a restarted caller re-reads them instead of relying on
//!   events it may have missed. A node may delete canceled invoices (LND's
//!   `gc-canceled-invoices-on-the-fly` / `-on-startup`, `DeleteCanceledInvoice`), and only
//!   those: an invoice the caller created that the node no longer knows is reported
//!   [`HoldInvoiceState::Canceled`] (settling it is refused, canceling it is `Ok`). Callers ask
//!   only about invoices they created. The event stream ([`LightningNode::subscribe`]) is a hint to
//!   re-read promptly; it is not replayed.
//! - **Payments are idempotent per payment hash**: paying a hash that is in flight or already
//!   succeeded returns `Ok` without sending again; the outcome is learnt from
//!   `payment_status`, also after a restart. `pay_invoice` returning
//!   [`LnError::Refused`] means nothing was sent for this call (the node refused it, or its
//!   payment record shows no payment); [`LnError::NotSent`] that nothing was sent because the
//!   node could not be reached (transient); [`LnError::Unavailable`] means it may or may not
//!   have been sent: `payment_status` decides, once the node had time to register it.
//! - **Errors**: [`LnError::Refused`] is permanent for that request (retrying it unchanged
//!   fails again); [`LnError::Unavailable`] is transient.

use std::time::Duration;

use async_trait::async_trait;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Address, Amount, FeeRate, Network, ScriptBuf, Transaction};
use eddy_core::types::{PaymentHash, Preimage};

/// Errors of a Lightning backend.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LnError {
    /// The node cannot be reached or is not running; retry later. From `pay_invoice`: the
    /// request may have reached the node — the payment may or may not be made.
    #[error("lightning node unavailable: {0}")]
    Unavailable(String),
    /// From `pay_invoice`: the node could not be reached before the payment request left (no
    /// connection, or an earlier step failed): nothing was sent; retry later.
    #[error("lightning node unreachable, nothing sent: {0}")]
    NotSent(String),
    /// The request is invalid for the node (bad invoice, wrong network, amount, state).
    #[error("refused by the lightning node: {0}")]
    Refused(String),
    /// This backend cannot do what was asked (e.g. a restriction LDK does not offer).
    #[error("not supported by this backend: {0}")]
    Unsupported(String),
    /// No such invoice or payment.
    #[error("unknown payment hash {0}")]
    Unknown(PaymentHash),
}

/// Node identity and sync state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's public key.
    pub pubkey: PublicKey,
    /// Its network.
    pub network: Network,
    /// The best block height it has processed.
    pub block_height: u32,
}

/// A request for a hold invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldInvoiceRequest {
    /// The payment hash (the preimage stays with the caller until it settles).
    pub payment_hash: PaymentHash,
    /// Amount in millisatoshis.
    pub amount_msat: u64,
    /// Seconds until the invoice expires.
    pub expiry_secs: u32,
    /// The `min_final_cltv_expiry_delta` the invoice should carry. LND honours it; LDK
    /// always uses 42 (see [`HoldInvoice::min_final_cltv_delta`] for what the invoice says).
    pub min_final_cltv_delta: u16,
    /// Description shown to the payer.
    pub description: String,
}

/// A created invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldInvoice {
    /// BOLT11 string.
    pub bolt11: String,
    /// The `min_final_cltv_expiry_delta` the invoice actually carries.
    pub min_final_cltv_delta: u64,
}

/// One HTLC held for an accepted invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldHtlc {
    /// Amount in millisatoshis.
    pub amount_msat: u64,
    /// The HTLC's CLTV expiry height.
    pub expiry_height: u32,
    /// The node settles this HTLC only before this height; at it, the node fails it back.
    pub settle_deadline: u32,
}

/// The state of a hold invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldInvoiceState {
    /// Not paid (yet).
    Open,
    /// Paid and held.
    Accepted {
        /// Total held, in millisatoshis.
        amount_msat: u64,
        /// The HTLCs (one per part of a multi-part payment).
        htlcs: Vec<HeldHtlc>,
    },
    /// Settled with the preimage; the money is ours.
    Settled {
        /// Amount received, in millisatoshis.
        amount_msat: u64,
    },
    /// Canceled (by us, or expired); nothing was received.
    Canceled,
}

impl HoldInvoiceState {
    /// The earliest settle deadline of an accepted invoice.
    pub fn settle_deadline(&self) -> Option<u32> {
        match self {
            HoldInvoiceState::Accepted { htlcs, .. } => htlcs.iter().map(|h| h.settle_deadline).min(),
            _ => None,
        }
    }
}

/// Parameters of an outgoing payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayParams {
    /// The most routing fees may total.
    pub max_fee_msat: u64,
    /// Give up (fail the payment) after this long.
    pub timeout: Duration,
    /// Only use this first-hop channel (short channel id), when set.
    pub outgoing_channel: Option<u64>,
    /// Largest CLTV expiry delta of the whole route; `None` for the node's default.
    pub max_total_cltv_delta: Option<u32>,
    /// Only routes whose last hop (the payee's channel peer) is this node, when set: a
    /// loop-in client uses it to choose which of its channels gets the liquidity. Backends
    /// that cannot restrict it ([`LightningNode::restricts_last_hop`] false) refuse with
    /// [`LnError::Unsupported`].
    pub last_hop: Option<PublicKey>,
}

/// Where an outgoing payment stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    /// No payment for this hash.
    Unknown,
    /// Sent, outcome pending.
    InFlight,
    /// Paid.
    Succeeded {
        /// The preimage the payee revealed.
        preimage: Preimage,
        /// Routing fees paid, in millisatoshis.
        fee_msat: u64,
    },
    /// Failed for good; nothing was paid.
    Failed {
        /// Why, in the node's words.
        reason: String,
    },
}

/// A channel as the swap logic sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Short channel id, once confirmed.
    pub short_channel_id: Option<u64>,
    /// The peer.
    pub peer: PublicKey,
    /// Capacity.
    pub capacity: Amount,
    /// What we can send now, in millisatoshis: our balance less the channel reserve we must
    /// keep (and, for LND, less the commitment fee the channel's initiator pays).
    pub local_msat: u64,
    /// What we can receive now, in millisatoshis: the peer's balance less the reserve it must
    /// keep.
    pub remote_msat: u64,
    /// The reserve we must keep in the channel (already left out of `local_msat`).
    pub local_reserve: Amount,
    /// The reserve the peer must keep (already left out of `remote_msat`).
    pub remote_reserve: Amount,
    /// Not announced to the network: payers need a hop hint to reach us through it.
    pub private: bool,
    /// Whether payments can use it now.
    pub usable: bool,
}

/// On-chain wallet balances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalletBalance {
    /// Spendable now (confirmed, minus reserves the node keeps).
    pub spendable: Amount,
    /// Everything, including unconfirmed.
    pub total: Amount,
}

/// A change the node reports; a hint to re-read the state it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LnEvent {
    /// A hold invoice (or own-preimage invoice) changed state.
    Invoice {
        /// Which.
        payment_hash: PaymentHash,
        /// Its new state.
        state: HoldInvoiceState,
    },
    /// An outgoing payment changed state.
    Payment {
        /// Which.
        payment_hash: PaymentHash,
        /// Its new status.
        status: PaymentStatus,
    },
}

/// A Lightning node.
#[async_trait]
pub trait LightningNode: Send + Sync {
    /// Identity, network and height.
    async fn info(&self) -> Result<NodeInfo, LnError>;

    /// Creates a hold invoice for `req.payment_hash`.
    async fn create_hold_invoice(&self, req: &HoldInvoiceRequest) -> Result<HoldInvoice, LnError>;

    /// The current state of a hold invoice (or own-preimage invoice) the caller created; one
    /// the node deleted (it deletes only canceled ones) is `Canceled`.
    async fn hold_invoice_state(&self, payment_hash: &PaymentHash) -> Result<HoldInvoiceState, LnError>;

    /// Settles an accepted hold invoice with its preimage (idempotent).
    async fn settle_hold_invoice(&self, preimage: &Preimage) -> Result<(), LnError>;

    /// Cancels a hold invoice, failing back any held HTLCs (idempotent).
    async fn cancel_hold_invoice(&self, payment_hash: &PaymentHash) -> Result<(), LnError>;

    /// Creates an ordinary invoice for our own `preimage`; the node settles it when paid.
    async fn create_invoice(
        &self,
        preimage: &Preimage,
        amount_msat: u64,
        expiry_secs: u32,
        description: &str,
    ) -> Result<HoldInvoice, LnError>;

    /// Pays a BOLT11 invoice (idempotent per payment hash).
    async fn pay_invoice(&self, bolt11: &str, params: &PayParams) -> Result<PaymentHash, LnError>;

    /// Where the payment for `payment_hash` stands.
    async fn payment_status(&self, payment_hash: &PaymentHash) -> Result<PaymentStatus, LnError>;

    /// Open channels.
    async fn channels(&self) -> Result<Vec<ChannelInfo>, LnError>;

    /// A fresh address of the node's on-chain wallet.
    async fn new_address(&self) -> Result<Address, LnError>;

    /// The on-chain wallet's balances.
    async fn wallet_balance(&self) -> Result<WalletBalance, LnError>;

    /// Pays `outputs` from the on-chain wallet at `fee_rate`; returns the broadcast transaction.
    async fn send_outputs(&self, outputs: &[(ScriptBuf, Amount)], fee_rate: FeeRate) -> Result<Transaction, LnError>;

    /// A stream of changes (not replayed: re-read states after subscribing).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<LnEvent>;

    /// The implementation's name as Boltz API v2's `GET /v2/nodes` keys a node (`LND`,
    /// `CLN`, …; ldk-node: `LDK`).
    fn implementation(&self) -> &'static str {
        "LDK"
    }

    /// Whether [`PayParams::last_hop`] is honoured (LND: `last_hop_pubkey`; ldk-node 0.7 has no
    /// such route restriction). A server asks before it accepts a swap that needs it.
    fn restricts_last_hop(&self) -> bool {
        false
    }

    /// Blocks before a held HTLC's expiry at which this node stops settling it (LDK 39; LND its
    /// `invoices.holdexpirydelta`, read from the node or configured at start — 12 by default up
    /// to v0.20, 18 from v0.21 — never assumed): a hold invoice's final CLTV delta must cover
    /// the hold the caller needs plus this. Fixed for the node's lifetime.
    fn settle_deadline_delta(&self) -> u32;
}
