//! The emulator's router: LND's rules for `SendPaymentV2` requests and the status LND derives
//! for a payment from its HTLC attempts, as pure logic (replayed against LND's own
//! `router_backend_test.go` and `payment_status_test.go` cases in `tests/lnd_vectors.rs`).
//!
//! What each rule follows (LND source; our own code):
//! - `lnrpc/routerrpc/router_backend.go` `extractIntentFromSendRequest`: `timeout_seconds` must
//!   be set (up to 0.18; later defaulted); `fee_limit_sat` and `fee_limit_msat` are exclusive
//!   (a limit of 0 allows only fee-free routes); `outgoing_chan_id` and `outgoing_chan_ids` are
//!   exclusive; `last_hop_pubkey` must be a 33-byte key; `ValidateCLTVLimit`: 0 means the
//!   node's `--max-cltv-expiry` (default 2016), more than it is refused.
//! - `routing/router.go` `ValidateCLTVLimit(limit, finalDelta, includePad)`, called at the end
//!   of the same function: the limit must exceed the invoice's final CLTV delta plus LND's
//!   `BlockPadding` of 3 blocks, else the payment is refused before anything is sent (a plain
//!   error: gRPC `Unknown`, no payment record).
//! - `channeldb/payment_status.go` (`payments/db` in newer versions) `decidePaymentStatus`.
//! - `routerrpc/router_server.go`: a hash in flight or already paid is refused with
//!   `AlreadyExists`; tracking an unknown hash answers `NotFound` "payment isn't initiated".

use serde::{Deserialize, Serialize};
use tonic::Code;

use super::registry::RpcError;

/// LND's default `--max-cltv-expiry` (`htlcswitch.DefaultMaxOutgoingCltvExpiry`).
pub const DEFAULT_MAX_CLTV_EXPIRY: u32 = 2016;

/// LND adds this many blocks to the final hop's expiry (`routing.BlockPadding`), so a route
/// limit must exceed the final CLTV delta by more than it.
pub const BLOCK_PADDING: u32 = 3;

/// The fields of a `SendPaymentV2` request the rules look at.
#[derive(Clone, Debug, Default)]
pub struct SendRequest {
    /// `timeout_seconds`.
    pub timeout_seconds: i32,
    /// `fee_limit_sat`.
    pub fee_limit_sat: i64,
    /// `fee_limit_msat`.
    pub fee_limit_msat: i64,
    /// `cltv_limit`.
    pub cltv_limit: i32,
    /// `outgoing_chan_id` (deprecated single form).
    pub outgoing_chan_id: u64,
    /// `outgoing_chan_ids`.
    pub outgoing_chan_ids: Vec<u64>,
    /// `last_hop_pubkey` bytes.
    pub last_hop_pubkey: Vec<u8>,
    /// The invoice's final CLTV delta (decoded from `payment_request`).
    pub final_cltv_delta: u32,
}

/// A request that passed the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendIntent {
    /// The route's total CLTV limit (0 in the request replaced by the node's maximum).
    pub cltv_limit: u32,
    /// The fee limit in millisatoshis.
    pub fee_limit_msat: u64,
    /// Outgoing channels allowed (empty: any).
    pub outgoing_chan_ids: Vec<u64>,
}

/// `ValidateCLTVLimit`.
pub fn validate_cltv_limit(limit: u32, max: u32) -> Result<u32, RpcError> {
    if limit > max {
        return Err(RpcError::plain(format!(
            "total time lock of {limit} exceeds max allowed {max}"
        )));
    }
    Ok(if limit == 0 { max } else { limit })
}

/// LND's checks of a `SendPaymentV2` request, in LND's order. `timeout_required`: LND up to
/// 0.18 refuses a request without `timeout_seconds`; later versions default it.
pub fn validate_send(r: &SendRequest, max_cltv_expiry: u32, timeout_required: bool) -> Result<SendIntent, RpcError> {
    if r.timeout_seconds == 0 && timeout_required {
        return Err(RpcError::plain("timeout_seconds must be specified"));
    }
    if r.fee_limit_sat != 0 && r.fee_limit_msat != 0 {
        return Err(RpcError::plain("sat and msat arguments are mutually exclusive"));
    }
    let fee_limit_msat = if r.fee_limit_msat != 0 {
        r.fee_limit_msat
    } else {
        r.fee_limit_sat.saturating_mul(1000)
    };
    if fee_limit_msat < 0 {
        return Err(RpcError::plain("amount cannot be negative"));
    }
    let limit = u32::try_from(r.cltv_limit).map_err(|_| RpcError::plain("cltv limit must not be negative"))?;
    let cltv_limit = validate_cltv_limit(limit, max_cltv_expiry)?;
    if r.outgoing_chan_id != 0 && !r.outgoing_chan_ids.is_empty() {
        return Err(RpcError::plain(
            "outgoing_chan_id and outgoing_chan_ids are mutually exclusive",
        ));
    }
    let mut outgoing_chan_ids = r.outgoing_chan_ids.clone();
    if r.outgoing_chan_id != 0 {
        outgoing_chan_ids.push(r.outgoing_chan_id);
    }
    if !r.last_hop_pubkey.is_empty() && bitcoin::secp256k1::PublicKey::from_slice(&r.last_hop_pubkey).is_err() {
        return Err(RpcError::plain(format!(
            "invalid vertex length of {}, want 33",
            r.last_hop_pubkey.len()
        )));
    }
    // `routing.ValidateCLTVLimit(limit, finalDelta, includePad)`: the route must fit the final
    // hop's delta plus LND's padding under the limit.
    let floor = r.final_cltv_delta.saturating_add(BLOCK_PADDING);
    if cltv_limit <= floor {
        return Err(RpcError::plain(format!(
            "cltv limit {cltv_limit} should be greater than {floor}"
        )));
    }
    Ok(SendIntent {
        cltv_limit,
        fee_limit_msat: fee_limit_msat as u64,
        outgoing_chan_ids,
    })
}

/// An HTLC attempt of a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attempt {
    /// Sent, unresolved.
    InFlight,
    /// Settled (the preimage came back).
    Settled,
    /// Failed.
    Failed,
}

/// LND's payment statuses (`lnrpc.Payment.PaymentStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// INITIATED (4): created, no attempt resolved or in flight.
    Initiated,
    /// IN_FLIGHT (1).
    InFlight,
    /// SUCCEEDED (2).
    Succeeded,
    /// FAILED (3).
    Failed,
}

impl Status {
    /// The proto value.
    pub fn code(self) -> i32 {
        match self {
            Status::InFlight => 1,
            Status::Succeeded => 2,
            Status::Failed => 3,
            Status::Initiated => 4,
        }
    }
}

/// LND's payment failure reasons (`lnrpc.PaymentFailureReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureReason {
    /// FAILURE_REASON_TIMEOUT (1).
    Timeout,
    /// FAILURE_REASON_NO_ROUTE (2).
    NoRoute,
    /// FAILURE_REASON_ERROR (3).
    Error,
    /// FAILURE_REASON_INCORRECT_PAYMENT_DETAILS (4).
    IncorrectPaymentDetails,
    /// FAILURE_REASON_INSUFFICIENT_BALANCE (5).
    InsufficientBalance,
    /// FAILURE_REASON_CANCELED (6).
    Canceled,
}

impl FailureReason {
    /// The proto value.
    pub fn code(self) -> i32 {
        match self {
            FailureReason::Timeout => 1,
            FailureReason::NoRoute => 2,
            FailureReason::Error => 3,
            FailureReason::IncorrectPaymentDetails => 4,
            FailureReason::InsufficientBalance => 5,
            FailureReason::Canceled => 6,
        }
    }
}

/// `decidePaymentStatus` (the newer form, with its conflict error): a payment with a settled
/// attempt *and* a failure reason is an error; in-flight attempts keep a payment in flight;
/// otherwise a settled attempt makes it succeeded; otherwise a failure reason makes it failed;
/// failed attempts without a reason leave it in flight (the router may still try again); no
/// attempt at all is initiated.
pub fn decide_payment_status(attempts: &[Attempt], reason: Option<FailureReason>) -> Result<Status, RpcError> {
    let has = |a: Attempt| attempts.contains(&a);
    if has(Attempt::Settled) && reason.is_some() {
        return Err(RpcError::plain("payment is failed and settled"));
    }
    Ok(if has(Attempt::InFlight) {
        Status::InFlight
    } else if has(Attempt::Settled) {
        Status::Succeeded
    } else if reason.is_some() {
        Status::Failed
    } else if has(Attempt::Failed) {
        Status::InFlight
    } else {
        Status::Initiated
    })
}

/// `SendPaymentV2` of a hash that already has a payment (`routerrpc/router_server.go`): in
/// flight or succeeded is refused with `AlreadyExists`; a failed one may be paid again.
pub fn may_send_again(current: Status) -> Result<(), RpcError> {
    match current {
        Status::InFlight | Status::Initiated => Err(RpcError::coded(Code::AlreadyExists, "payment is in transition")),
        Status::Succeeded => Err(RpcError::coded(Code::AlreadyExists, "invoice is already paid")),
        Status::Failed => Ok(()),
    }
}
