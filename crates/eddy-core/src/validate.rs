//! Validation rules as pure functions returning typed errors: what the loop-out client checks
//! in a server's offer before paying, what the server checks in an accepted Lightning HTLC
//! before publishing, what the loop-in server checks in a client's request and what the loop-in
//! client checks in the server's answer. Every rule is here so that it is tested once and both
//! daemons apply the same one.

use core::str::FromStr;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, Network};
use lightning_invoice::{Bolt11Invoice, Currency};
use serde::{Deserialize, Serialize};

use crate::constants::*;
use crate::fees::{FeePolicy, LoopInQuote};
use crate::htlc::{Htlc, HtlcError, HtlcKey, HtlcKind, HtlcParams};
use crate::types::{AmountMsat, BlockHeight, PaymentHash};

/// A loop-out swap invoice must stay payable for at least this long when the client gets it.
pub const MIN_INVOICE_REMAINING_SECS: u64 = 60;
/// A loop-in invoice must stay payable this long: funding confirmations plus payment.
pub const MIN_LOOP_IN_INVOICE_REMAINING_SECS: u64 = 3_600;

/// The facts of a BOLT11 invoice that the swap rules look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceFacts {
    /// The payment hash.
    pub payment_hash: PaymentHash,
    /// The amount, if the invoice sets one.
    pub amount_msat: Option<AmountMsat>,
    /// Unix time after which the invoice is expired.
    pub expires_at_unix: u64,
    /// `min_final_cltv_expiry_delta`.
    pub min_final_cltv_delta: u64,
    /// The payee's node id.
    pub payee: PublicKey,
    /// The network the invoice is for.
    pub currency: String,
    /// The largest CLTV its route hints alone add: over every hint, the sum of its hops'
    /// `cltv_expiry_delta` (0 without hints). A payer's route to the payee through a hint
    /// locks the payment at least `min_final_cltv_delta` plus this.
    #[serde(default)]
    pub route_hint_cltv: u64,
}

/// Errors decoding or checking an invoice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    /// Not a BOLT11 invoice (or a bad signature).
    #[error("cannot parse the {which} invoice: {reason}")]
    Parse {
        /// Which invoice.
        which: &'static str,
        /// Why.
        reason: String,
    },
    /// For another network.
    #[error("the {which} invoice is for {got}, expected {expected}")]
    Network {
        /// Which invoice.
        which: &'static str,
        /// Its currency.
        got: String,
        /// The swap's network.
        expected: Network,
    },
    /// Expired or about to.
    #[error("the {which} invoice expires in {remaining_secs}s, need at least {needed_secs}s")]
    Expiry {
        /// Which invoice.
        which: &'static str,
        /// Seconds left.
        remaining_secs: u64,
        /// Seconds needed.
        needed_secs: u64,
    },
    /// No amount.
    #[error("the {which} invoice has no amount")]
    NoAmount {
        /// Which invoice.
        which: &'static str,
    },
}

fn currency_for(network: Network) -> Currency {
    Currency::from(network)
}

/// Decodes `invoice` and checks its network and remaining lifetime.
pub fn decode_invoice(
    which: &'static str,
    invoice: &str,
    network: Network,
    now_unix: u64,
    min_remaining_secs: u64,
) -> Result<InvoiceFacts, InvoiceError> {
    let inv = Bolt11Invoice::from_str(invoice.trim()).map_err(|e| InvoiceError::Parse {
        which,
        reason: e.to_string(),
    })?;
    if inv.currency() != currency_for(network) {
        return Err(InvoiceError::Network {
            which,
            got: inv.currency().to_string(),
            expected: network,
        });
    }
    let expires_at_unix = inv
        .duration_since_epoch()
        .as_secs()
        .saturating_add(inv.expiry_time().as_secs());
    let remaining = expires_at_unix.saturating_sub(now_unix);
    if remaining < min_remaining_secs {
        return Err(InvoiceError::Expiry {
            which,
            remaining_secs: remaining,
            needed_secs: min_remaining_secs,
        });
    }
    Ok(InvoiceFacts {
        payment_hash: PaymentHash(inv.payment_hash().to_byte_array()),
        amount_msat: inv.amount_milli_satoshis().map(AmountMsat),
        expires_at_unix,
        min_final_cltv_delta: inv.min_final_cltv_expiry_delta(),
        payee: inv.get_payee_pub_key(),
        currency: inv.currency().to_string(),
        route_hint_cltv: inv
            .route_hints()
            .iter()
            .map(|h| h.0.iter().map(|hop| u64::from(hop.cltv_expiry_delta)).sum::<u64>())
            .max()
            .unwrap_or(0),
    })
}

/// The client's limits for one loop-out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopOutLimits {
    /// Most the client pays the server, prepay included.
    pub max_swap_fee: Amount,
    /// Most it pays up front.
    pub max_prepay: Amount,
    /// Smallest `E - tip` accepted.
    pub min_expiry_delta: u32,
    /// Largest `E - tip` accepted.
    pub max_expiry_delta: u32,
}

impl LoopOutLimits {
    /// The given fee limits with the default expiry window.
    pub fn with_fees(max_swap_fee: Amount, max_prepay: Amount) -> Self {
        LoopOutLimits {
            max_swap_fee,
            max_prepay,
            min_expiry_delta: MIN_LOOP_OUT_EXPIRY_DELTA,
            max_expiry_delta: MAX_LOOP_OUT_EXPIRY_DELTA,
        }
    }
}

/// What the client asked for, from its own records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopOutRequest {
    /// HTLC amount.
    pub amount: Amount,
    /// `sha256` of the client's preimage.
    pub payment_hash: PaymentHash,
    /// The client's claim key.
    pub claim_key: PublicKey,
    /// The HTLC kind the client asked for.
    pub kind: HtlcKind,
    /// The swap's network.
    pub network: Network,
    /// The client's limits.
    pub limits: LoopOutLimits,
}

/// What a client sends the server to start a loop-out (the wire request; the client keeps its
/// limits to itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopOutCreate {
    /// HTLC amount.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub amount: Amount,
    /// `sha256` of the client's preimage.
    pub payment_hash: PaymentHash,
    /// The client's claim key.
    pub claim_key: PublicKey,
    /// Publish this swap's HTLC at once, not waiting for the server's publication window
    /// (`eddy out --fast`; left out of the request when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fast: bool,
}

/// The server's answer to a loop-out request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopOutOffer {
    /// Hold invoice for the swap (hash = the client's).
    pub swap_invoice: String,
    /// Hold invoice for the prepay (the server's own hash); none from a provider that asks no
    /// prepay (a Boltz API v2 reverse swap: one invoice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepay_invoice: Option<String>,
    /// The server's refund key.
    pub server_key: PublicKey,
    /// Absolute expiry `E`.
    pub expiry: BlockHeight,
    /// The HTLC address the server will pay.
    pub htlc_address: String,
}

/// Why a client refuses an offer (before paying anything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// An invoice problem.
    #[error(transparent)]
    Invoice(#[from] InvoiceError),
    /// The swap invoice does not pay to our hash.
    #[error("swap invoice payment hash {got} is not ours ({expected})")]
    WrongHash {
        /// Ours.
        expected: PaymentHash,
        /// In the invoice.
        got: PaymentHash,
    },
    /// The prepay invoice reuses the swap hash.
    #[error("the prepay invoice must not use the swap's payment hash")]
    PrepayReusesHash,
    /// The invoices ask for more than the amount plus the fee limit.
    #[error("the server's fee {fee_msat} msat exceeds the limit {max_msat} msat")]
    FeeTooHigh {
        /// Asked.
        fee_msat: u64,
        /// Limit.
        max_msat: u64,
    },
    /// The prepay exceeds its limit.
    #[error("prepay {prepay_msat} msat exceeds the limit {max_msat} msat")]
    PrepayTooHigh {
        /// Asked.
        prepay_msat: u64,
        /// Limit.
        max_msat: u64,
    },
    /// The invoices ask for less than the amount: a server that cannot count.
    #[error("the invoices total {total_msat} msat, less than the swap amount {amount_msat} msat")]
    InvoicesBelowAmount {
        /// Invoices' total.
        total_msat: u64,
        /// Swap amount.
        amount_msat: u64,
    },
    /// The two invoices are for different nodes.
    #[error("the swap and prepay invoices are for different nodes")]
    PayeeMismatch,
    /// `E - tip` is outside the accepted window.
    #[error("HTLC expiry {expiry} is {delta} blocks away, outside the accepted {min}..={max}")]
    ExpiryWindow {
        /// `E`.
        expiry: BlockHeight,
        /// `E - tip` (negative as 0).
        delta: u32,
        /// Window minimum.
        min: u32,
        /// Window maximum.
        max: u32,
    },
    /// The swap invoice's final CLTV would hold the client's payment too long.
    #[error("swap invoice final CLTV delta {got} exceeds the allowed {max}")]
    FinalCltvTooLong {
        /// In the invoice.
        got: u64,
        /// Allowed.
        max: u64,
    },
    /// The HTLC address is not the one rebuilt from the swap's data.
    #[error(transparent)]
    Htlc(#[from] HtlcError),
    /// An invoice's final CLTV plus its route hints would lock the client's payment past
    /// [`loop_out_max_payment_cltv`].
    #[error(
        "the {which} invoice's final CLTV and route hints lock a payment {got} blocks, more than the allowed {max}"
    )]
    RouteCltvTooLong {
        /// Which invoice.
        which: &'static str,
        /// `min_final_cltv_delta` + the largest hint's CLTV.
        got: u64,
        /// `loop_out_max_payment_cltv(E) − tip`.
        max: u64,
    },
}

/// A checked loop-out offer: what to pay and what to watch.
#[derive(Clone, Debug)]
pub struct ValidatedLoopOut {
    /// The HTLC the server will fund, rebuilt from our data.
    pub htlc: Htlc,
    /// Swap invoice facts.
    pub swap_invoice: InvoiceFacts,
    /// Prepay invoice facts (none asked).
    pub prepay_invoice: Option<InvoiceFacts>,
    /// The server's total fee in msat (invoices' total minus the amount).
    pub swap_fee_msat: u64,
}

fn amount_of(which: &'static str, f: &InvoiceFacts) -> Result<u64, InvoiceError> {
    f.amount_msat.map(|a| a.0).ok_or(InvoiceError::NoAmount { which })
}

/// Everything the loop-out client checks before paying: both invoices (or the swap invoice
/// alone, when no prepay is asked) decode, are for our network and not about to expire, the
/// swap invoice pays to our hash and the prepay does not, both go to the same node, the fee and prepay are within our limits, `E` is inside our
/// window, the swap invoice's final CLTV does not lock our payment beyond
/// `(E - tip) + SERVER_SETTLE_MARGIN + MAX_FINAL_CLTV_SLACK`, neither invoice's final CLTV plus
/// route hints reaches past [`loop_out_max_payment_cltv`] (the bound every payment is then sent
/// with), and the HTLC address is exactly the one rebuilt from our hash, our key, the server's
/// key and `E`.
pub fn validate_loop_out_offer(
    req: &LoopOutRequest,
    offer: &LoopOutOffer,
    tip: BlockHeight,
    now_unix: u64,
) -> Result<ValidatedLoopOut, OfferError> {
    let swap = decode_invoice(
        "swap",
        &offer.swap_invoice,
        req.network,
        now_unix,
        MIN_INVOICE_REMAINING_SECS,
    )?;
    let prepay = offer
        .prepay_invoice
        .as_deref()
        .map(|p| decode_invoice("prepay", p, req.network, now_unix, MIN_INVOICE_REMAINING_SECS))
        .transpose()?;
    if swap.payment_hash != req.payment_hash {
        return Err(OfferError::WrongHash {
            expected: req.payment_hash,
            got: swap.payment_hash,
        });
    }
    if let Some(prepay) = &prepay {
        if prepay.payment_hash == req.payment_hash {
            return Err(OfferError::PrepayReusesHash);
        }
        if swap.payee != prepay.payee {
            return Err(OfferError::PayeeMismatch);
        }
    }
    let swap_msat = amount_of("swap", &swap)?;
    let prepay_msat = prepay
        .as_ref()
        .map(|p| amount_of("prepay", p))
        .transpose()?
        .unwrap_or(0);
    let total = swap_msat.saturating_add(prepay_msat);
    let amount_msat = req.amount.to_sat().saturating_mul(1000);
    if total < amount_msat {
        return Err(OfferError::InvoicesBelowAmount {
            total_msat: total,
            amount_msat,
        });
    }
    let fee_msat = total - amount_msat;
    let max_fee_msat = req.limits.max_swap_fee.to_sat().saturating_mul(1000);
    if fee_msat > max_fee_msat {
        return Err(OfferError::FeeTooHigh {
            fee_msat,
            max_msat: max_fee_msat,
        });
    }
    let max_prepay_msat = req.limits.max_prepay.to_sat().saturating_mul(1000);
    if prepay_msat > max_prepay_msat {
        return Err(OfferError::PrepayTooHigh {
            prepay_msat,
            max_msat: max_prepay_msat,
        });
    }
    let delta = offer.expiry.saturating_sub(tip);
    if delta < req.limits.min_expiry_delta || delta > req.limits.max_expiry_delta {
        return Err(OfferError::ExpiryWindow {
            expiry: offer.expiry,
            delta,
            min: req.limits.min_expiry_delta,
            max: req.limits.max_expiry_delta,
        });
    }
    let max_final = u64::from(delta + SERVER_SETTLE_MARGIN + MAX_FINAL_CLTV_SLACK);
    if swap.min_final_cltv_delta > max_final {
        return Err(OfferError::FinalCltvTooLong {
            got: swap.min_final_cltv_delta,
            max: max_final,
        });
    }
    let max_route = u64::from(loop_out_max_payment_cltv(offer.expiry).saturating_sub(tip));
    for (which, f) in std::iter::once(("swap", &swap)).chain(prepay.iter().map(|p| ("prepay", p))) {
        let got = f.min_final_cltv_delta.saturating_add(f.route_hint_cltv);
        if got > max_route {
            return Err(OfferError::RouteCltvTooLong {
                which,
                got,
                max: max_route,
            });
        }
    }
    let htlc = Htlc::new(HtlcParams {
        kind: req.kind,
        payment_hash: req.payment_hash,
        claim_key: HtlcKey::Pubkey(req.claim_key),
        refund_key: HtlcKey::Pubkey(offer.server_key),
        timeout: offer.expiry,
    })?;
    htlc.check_address(&offer.htlc_address, req.network)?;
    Ok(ValidatedLoopOut {
        htlc,
        swap_invoice: swap,
        prepay_invoice: prepay,
        swap_fee_msat: fee_msat,
    })
}

/// Why a loop-out server refuses to publish against an accepted Lightning HTLC (it then fails
/// the HTLC back).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptedHtlcError {
    /// Less than the invoice asked for.
    #[error("accepted {got_msat} msat, invoice asks {expected_msat} msat")]
    Underpaid {
        /// Received.
        got_msat: u64,
        /// Expected.
        expected_msat: u64,
    },
    /// The HTLC would be failed back before the server can settle after `E`.
    #[error("HTLC claim deadline {claim_deadline} is below expiry {expiry} + margin {margin}")]
    DeadlineTooEarly {
        /// When the node would fail it back.
        claim_deadline: BlockHeight,
        /// `E`.
        expiry: BlockHeight,
        /// [`SERVER_SETTLE_MARGIN`].
        margin: u32,
    },
    /// Too close to `E` to publish.
    #[error("only {blocks_left} blocks left before expiry, need {needed} to publish")]
    TooLateToPublish {
        /// `E - tip`.
        blocks_left: u32,
        /// [`MIN_BLOCKS_LEFT_AT_PUBLICATION`].
        needed: u32,
    },
}

/// The loop-out server's check of the accepted swap HTLC(s) before it publishes:
/// the amount, that the node's claim deadline (the height at which it would fail the held
/// HTLC back; the earliest over all parts) is at least `E + SERVER_SETTLE_MARGIN`, and that
/// `E` is still at least [`MIN_BLOCKS_LEFT_AT_PUBLICATION`] away.
pub fn check_accepted_htlc(
    received_msat: u64,
    expected_msat: u64,
    claim_deadline: BlockHeight,
    expiry: BlockHeight,
    tip: BlockHeight,
) -> Result<(), AcceptedHtlcError> {
    if received_msat < expected_msat {
        return Err(AcceptedHtlcError::Underpaid {
            got_msat: received_msat,
            expected_msat,
        });
    }
    if claim_deadline < expiry.saturating_add(SERVER_SETTLE_MARGIN) {
        return Err(AcceptedHtlcError::DeadlineTooEarly {
            claim_deadline,
            expiry,
            margin: SERVER_SETTLE_MARGIN,
        });
    }
    let blocks_left = expiry.saturating_sub(tip);
    if blocks_left < MIN_BLOCKS_LEFT_AT_PUBLICATION {
        return Err(AcceptedHtlcError::TooLateToPublish {
            blocks_left,
            needed: MIN_BLOCKS_LEFT_AT_PUBLICATION,
        });
    }
    Ok(())
}

/// Why a loop-in server refuses a client's request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoopInRequestError {
    /// An invoice problem.
    #[error(transparent)]
    Invoice(#[from] InvoiceError),
    /// Amount outside limits or fee above amount.
    #[error(transparent)]
    Fee(#[from] crate::fees::FeeError),
    /// The invoice's amount is not `amount - fee`.
    #[error("invoice amount {got_msat} msat must be exactly amount minus fee = {expected_msat} msat")]
    InvoiceAmount {
        /// In the invoice.
        got_msat: u64,
        /// Expected.
        expected_msat: u64,
    },
    /// The invoice's final CLTV leaves no room to pay before `E`.
    #[error("invoice final CLTV delta {got} leaves no room before the HTLC expiry (max {max})")]
    FinalCltvTooLong {
        /// In the invoice.
        got: u64,
        /// Largest usable.
        max: u64,
    },
}

/// A checked loop-in request.
#[derive(Clone, Debug)]
pub struct ValidatedLoopIn {
    /// The invoice's facts.
    pub invoice: InvoiceFacts,
    /// The fees.
    pub quote: LoopInQuote,
}

/// The loop-in server's checks on a client's invoice: it decodes, is for our network, stays
/// payable for [`MIN_LOOP_IN_INVOICE_REMAINING_SECS`], the amount is within limits and the
/// invoice asks exactly `amount - fee`, and its final CLTV fits the payment budget before `E`.
pub fn validate_loop_in_request(
    invoice: &str,
    amount: Amount,
    policy: &FeePolicy,
    network: Network,
    expiry_delta: u32,
    now_unix: u64,
) -> Result<ValidatedLoopIn, LoopInRequestError> {
    let quote = policy.loop_in_quote(amount)?;
    let facts = loop_in_invoice(invoice, network, expiry_delta, now_unix)?;
    let got = amount_of("loop-in", &facts)?;
    // Checked: an amount over u64::MAX msat (only a server limit above 18 million BTC lets one
    // through) is an overflow, not a wrapped product (found by fuzz/loop_in_request).
    let expected = quote
        .invoice_amount
        .to_sat()
        .checked_mul(1000)
        .ok_or(crate::fees::FeeError::Overflow)?;
    if got != expected {
        return Err(LoopInRequestError::InvoiceAmount {
            got_msat: got,
            expected_msat: expected,
        });
    }
    Ok(ValidatedLoopIn { invoice: facts, quote })
}

/// The checks every invoice a loop-in server pays must pass, whoever's node issued it (the
/// client's own on `/v1`, anyone's on Boltz's submarine door): it decodes, is for `network`,
/// has an amount, stays payable for [`MIN_LOOP_IN_INVOICE_REMAINING_SECS`], and its final
/// CLTV delta fits inside the payment's CLTV budget of a swap whose HTLC expires
/// `expiry_delta` blocks from now.
pub fn loop_in_invoice(
    invoice: &str,
    network: Network,
    expiry_delta: u32,
    now_unix: u64,
) -> Result<InvoiceFacts, LoopInRequestError> {
    let facts = decode_invoice(
        "loop-in",
        invoice,
        network,
        now_unix,
        MIN_LOOP_IN_INVOICE_REMAINING_SECS,
    )?;
    amount_of("loop-in", &facts)?;
    let max = u64::from(expiry_delta.saturating_sub(LOOP_IN_CLAIM_MARGIN + SPEND_CONFIRM_BUDGET + MAX_HTLC_CONFS));
    if facts.min_final_cltv_delta > max {
        return Err(LoopInRequestError::FinalCltvTooLong {
            got: facts.min_final_cltv_delta,
            max,
        });
    }
    Ok(facts)
}

/// What a client sends the server to start a loop-in (the wire body of `POST /v1/loop-in`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopInCreate {
    /// HTLC amount the client will fund.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub amount: Amount,
    /// The client's invoice for `amount − fee` (its hash is the swap's).
    pub invoice: String,
    /// The client's refund key.
    pub refund_key: PublicKey,
    /// The node the payment must arrive through (the client's channel peer), if the client
    /// wants the liquidity in one channel; a server that cannot restrict it refuses the swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hop: Option<PublicKey>,
}

/// The server's answer to a loop-in request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopInOffer {
    /// The server's claim key.
    pub server_key: PublicKey,
    /// Absolute expiry `E`.
    pub expiry: BlockHeight,
    /// The HTLC address to fund.
    pub htlc_address: String,
    /// The server's fee.
    pub swap_fee: Amount,
}

/// Why a loop-in client refuses the server's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoopInOfferError {
    /// `E - tip` outside the accepted window.
    #[error("HTLC expiry {expiry} is {delta} blocks away, outside the accepted {min}..={max}")]
    ExpiryWindow {
        /// `E`.
        expiry: BlockHeight,
        /// `E - tip`.
        delta: u32,
        /// Minimum.
        min: u32,
        /// Maximum.
        max: u32,
    },
    /// Fee above the client's limit.
    #[error("swap fee {fee} exceeds the limit {max}")]
    FeeTooHigh {
        /// Asked.
        fee: Amount,
        /// Limit.
        max: Amount,
    },
    /// Address mismatch or wrong network.
    #[error(transparent)]
    Htlc(#[from] HtlcError),
}

/// The loop-in client's checks on the server's answer before funding: fee within the limit,
/// `E` inside [`MIN_LOOP_IN_EXPIRY_DELTA`]..=[`MAX_LOOP_IN_EXPIRY_DELTA`], and the address rebuilt
/// from our hash, our refund key, the server's claim key and `E`.
#[allow(clippy::too_many_arguments)]
pub fn validate_loop_in_offer(
    kind: HtlcKind,
    payment_hash: PaymentHash,
    client_key: PublicKey,
    max_swap_fee: Amount,
    network: Network,
    offer: &LoopInOffer,
    tip: BlockHeight,
) -> Result<Htlc, LoopInOfferError> {
    if offer.swap_fee > max_swap_fee {
        return Err(LoopInOfferError::FeeTooHigh {
            fee: offer.swap_fee,
            max: max_swap_fee,
        });
    }
    let delta = offer.expiry.saturating_sub(tip);
    if !(MIN_LOOP_IN_EXPIRY_DELTA..=MAX_LOOP_IN_EXPIRY_DELTA).contains(&delta) {
        return Err(LoopInOfferError::ExpiryWindow {
            expiry: offer.expiry,
            delta,
            min: MIN_LOOP_IN_EXPIRY_DELTA,
            max: MAX_LOOP_IN_EXPIRY_DELTA,
        });
    }
    let htlc = Htlc::new(HtlcParams {
        kind,
        payment_hash,
        claim_key: HtlcKey::Pubkey(offer.server_key),
        refund_key: HtlcKey::Pubkey(client_key),
        timeout: offer.expiry,
    })?;
    htlc.check_address(&offer.htlc_address, network)?;
    Ok(htlc)
}

/// How a funding output compares with the expected HTLC amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FundingCheck {
    /// Exactly the amount: the server pays.
    Exact,
    /// Less: the server does not pay; the client refunds.
    Under,
    /// More: the server does not pay (it cannot return the excess off-chain); the client refunds.
    Over,
}

/// Compares a loop-in funding output's value with the swap amount.
pub fn check_funding(value: Amount, expected: Amount) -> FundingCheck {
    match value.cmp(&expected) {
        core::cmp::Ordering::Equal => FundingCheck::Exact,
        core::cmp::Ordering::Less => FundingCheck::Under,
        core::cmp::Ordering::Greater => FundingCheck::Over,
    }
}

/// The one loop-in output the server pays for, by the rule both sides share (the server
/// decides what to pay against it, the client what to leave to the server and what to refund):
/// among the outputs paying the swap's HTLC script — `(outpoint, value, confirmations)` —
/// those of exactly `amount` with at least `required_confs` confirmations (never fewer than
/// one), the earliest confirmed (most confirmations), the lowest outpoint on a tie. Every other
/// output paying the HTLC is the client's to refund.
pub fn loop_in_server_output(
    fundings: impl IntoIterator<Item = (bitcoin::OutPoint, Amount, u32)>,
    amount: Amount,
    required_confs: u32,
) -> Option<bitcoin::OutPoint> {
    fundings
        .into_iter()
        .filter(|(_, value, confs)| *value == amount && *confs >= required_confs.max(1))
        .max_by(|a, b| a.2.cmp(&b.2).then(b.0.cmp(&a.0)))
        .map(|(outpoint, _, _)| outpoint)
}
