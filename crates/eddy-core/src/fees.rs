//! Fee math: the server's swap fee (base + proportional), quotes for both directions, the
//! client's sweep fee-rate schedule (conf target from blocks left, never decreasing across
//! bumps, a hard cap that lifts only when the swap would otherwise be lost), and the "not worth
//! claiming" rule that keeps a client from revealing its preimage when it cannot afford to claim.
//!
//! Rounding: the proportional fee is rounded *up* to a whole satoshi (the server never charges
//! less than its advertised rate, and the quote states the exact figure the client then checks
//! against its own limit — the limit is compared with the exact amount, never a rounded one).

use bitcoin::{Amount, FeeRate, Weight};
use serde::{Deserialize, Serialize};

use crate::constants::{CLAIM_URGENCY_BLOCKS, PREIMAGE_REVEAL_CUTOFF, URGENT_CONF_TARGET};
use crate::tx::fee_for_weight;

/// The lowest fee rate Eddy ever uses (bitcoind's default min relay fee, 1 sat/vB).
pub const MIN_RELAY_FEE_RATE: FeeRate = FeeRate::from_sat_per_kwu(250);
/// BIP125 rule 4: a replacement must pay at least this rate more (bitcoind's incremental relay fee).
pub const INCREMENTAL_RELAY_FEE_RATE: FeeRate = FeeRate::from_sat_per_kwu(250);
/// Each RBF bump raises the rate by at least this factor (in percent) over the previous one.
pub const BUMP_PERCENT: u64 = 120;

/// A server's pricing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeePolicy {
    /// Fixed part of the swap fee.
    pub base_fee: Amount,
    /// Proportional part, in parts per million of the swap amount.
    pub fee_ppm: u32,
    /// Smallest swap amount accepted.
    pub min_amount: Amount,
    /// Largest swap amount accepted.
    pub max_amount: Amount,
    /// Loop-out prepay (anti-DoS), paid as a separate hold invoice and part of the swap fee.
    pub prepay: Amount,
}

/// Errors of fee computations (amounts in satoshis, as the APIs take them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    /// The amount is outside the server's limits.
    #[error(
        "amount {} sat is outside the allowed range {}..={} sat",
        amount.to_sat(),
        min.to_sat(),
        max.to_sat()
    )]
    AmountOutOfRange {
        /// Requested amount.
        amount: Amount,
        /// Minimum.
        min: Amount,
        /// Maximum.
        max: Amount,
    },
    /// The fee would eat the whole swap.
    #[error("fee {} sat is not below the swap amount {} sat", fee.to_sat(), amount.to_sat())]
    FeeExceedsAmount {
        /// Fee.
        fee: Amount,
        /// Amount.
        amount: Amount,
    },
    /// Arithmetic overflow.
    #[error("amount overflow")]
    Overflow,
}

impl FeePolicy {
    /// Checks `amount` against the limits.
    pub fn check_amount(&self, amount: Amount) -> Result<(), FeeError> {
        if amount < self.min_amount || amount > self.max_amount {
            return Err(FeeError::AmountOutOfRange {
                amount,
                min: self.min_amount,
                max: self.max_amount,
            });
        }
        Ok(())
    }

    /// `base + ceil(amount × ppm / 1e6)`.
    pub fn swap_fee(&self, amount: Amount) -> Result<Amount, FeeError> {
        let prop = (u128::from(amount.to_sat()) * u128::from(self.fee_ppm)).div_ceil(1_000_000);
        let prop = u64::try_from(prop).map_err(|_| FeeError::Overflow)?;
        self.base_fee
            .checked_add(Amount::from_sat(prop))
            .ok_or(FeeError::Overflow)
    }

    /// A loop-out quote for `amount` (the on-chain HTLC value).
    pub fn loop_out_quote(&self, amount: Amount) -> Result<LoopOutQuote, FeeError> {
        self.check_amount(amount)?;
        let swap_fee = self.swap_fee(amount)?;
        let prepay = self.prepay.min(swap_fee);
        let total = amount.checked_add(swap_fee).ok_or(FeeError::Overflow)?;
        let swap_invoice = total.checked_sub(prepay).ok_or(FeeError::Overflow)?;
        Ok(LoopOutQuote {
            amount,
            swap_fee,
            prepay,
            swap_invoice_amount: swap_invoice,
        })
    }

    /// A loop-in quote for `amount` (the on-chain HTLC value).
    pub fn loop_in_quote(&self, amount: Amount) -> Result<LoopInQuote, FeeError> {
        self.check_amount(amount)?;
        let swap_fee = self.swap_fee(amount)?;
        let invoice_amount = amount
            .checked_sub(swap_fee)
            .filter(|a| *a > Amount::ZERO)
            .ok_or(FeeError::FeeExceedsAmount { fee: swap_fee, amount })?;
        Ok(LoopInQuote {
            amount,
            swap_fee,
            invoice_amount,
        })
    }
}

/// What a loop-out costs the client off-chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopOutQuote {
    /// The HTLC value the server publishes.
    pub amount: Amount,
    /// The server's fee, prepay included.
    pub swap_fee: Amount,
    /// The part of the fee paid up front through the prepay invoice.
    pub prepay: Amount,
    /// `amount + swap_fee - prepay`: the swap invoice's amount.
    pub swap_invoice_amount: Amount,
}

/// What a loop-in pays the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopInQuote {
    /// The HTLC value the client funds.
    pub amount: Amount,
    /// The server's fee.
    pub swap_fee: Amount,
    /// `amount - swap_fee`: the client's invoice amount.
    pub invoice_amount: Amount,
}

/// The conf target a claim (or refund) sweep aims for with `blocks_left` before its deadline
/// (`E` for a loop-out claim): the user's target while there is time, then
/// [`URGENT_CONF_TARGET`], then 1 inside [`CLAIM_URGENCY_BLOCKS`].
pub fn sweep_conf_target(blocks_left: u32, user_target: u16) -> u16 {
    let user = user_target.max(1);
    if blocks_left <= CLAIM_URGENCY_BLOCKS {
        1
    } else if blocks_left <= PREIMAGE_REVEAL_CUTOFF {
        URGENT_CONF_TARGET.min(user)
    } else {
        let room = u16::try_from(blocks_left - PREIMAGE_REVEAL_CUTOFF).unwrap_or(u16::MAX);
        user.min(room).max(URGENT_CONF_TARGET.min(user))
    }
}

/// Inputs of one step of the sweep schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepStep {
    /// The chain's estimate for [`sweep_conf_target`]'s target.
    pub estimate: FeeRate,
    /// The rate of the previous broadcast of this sweep, if any.
    pub previous: Option<FeeRate>,
    /// Blocks left before the deadline.
    pub blocks_left: u32,
    /// The sweep's signed weight.
    pub weight: Weight,
    /// The value being swept (sum of HTLC inputs).
    pub value: Amount,
    /// The user's miner-fee limit for this sweep.
    pub max_fee: Amount,
    /// The destination's dust limit.
    pub dust: Amount,
}

/// The next fee rate of a sweep: at least the estimate and the min relay rate; on a bump, at
/// least [`BUMP_PERCENT`] of the previous rate and the previous rate plus the incremental relay
/// rate (BIP125); never below the previous rate; capped so the fee stays within `max_fee` —
/// except within [`CLAIM_URGENCY_BLOCKS`] of the deadline, where the cap becomes everything but
/// dust (not confirming then loses the whole swap).
pub fn next_sweep_fee_rate(step: &SweepStep) -> FeeRate {
    let mut kwu = step.estimate.to_sat_per_kwu().max(MIN_RELAY_FEE_RATE.to_sat_per_kwu());
    if let Some(prev) = step.previous {
        let prev = prev.to_sat_per_kwu();
        kwu = kwu
            .max((prev * BUMP_PERCENT).div_ceil(100))
            .max(prev + INCREMENTAL_RELAY_FEE_RATE.to_sat_per_kwu());
    }
    let cap = max_rate_within(sweep_budget(step), step.weight);
    let floor = step.previous.map_or(0, |p| p.to_sat_per_kwu());
    FeeRate::from_sat_per_kwu(kwu.min(cap.to_sat_per_kwu()).max(floor))
}

/// The most a sweep may pay in fees: the user's limit (never more than the value less dust),
/// except within [`CLAIM_URGENCY_BLOCKS`] of the deadline, where it is everything but dust.
pub fn sweep_budget(step: &SweepStep) -> Amount {
    let all_but_dust = step.value.checked_sub(step.dust).unwrap_or(Amount::ZERO);
    if step.blocks_left <= CLAIM_URGENCY_BLOCKS {
        all_but_dust
    } else {
        step.max_fee.min(all_but_dust)
    }
}

/// The fee of a replacement of `weight` at `rate` that the mempool accepts in place of any of
/// the earlier versions (paying `previous_fees`): BIP125 rule 3 (at least the absolute fee of
/// what it replaces) and rule 4 (plus [`INCREMENTAL_RELAY_FEE_RATE`] for its own size). A smaller
/// replacement (a key-path claim after a script-path one) needs this: the same rate on fewer
/// vbytes pays less in total and would be refused. `None` on overflow.
pub fn replacement_fee(rate: FeeRate, weight: Weight, previous_fees: &[Amount]) -> Option<Amount> {
    let at_rate = fee_for_weight(rate, weight)?;
    let Some(prev) = previous_fees.iter().max() else {
        return Some(at_rate);
    };
    let increment = fee_for_weight(INCREMENTAL_RELAY_FEE_RATE, weight)?;
    Some(at_rate.max(prev.checked_add(increment)?))
}

/// The highest rate whose fee for `weight` does not exceed `budget`.
pub fn max_rate_within(budget: Amount, weight: Weight) -> FeeRate {
    let vsize = weight.to_vbytes_ceil().max(1);
    // fee = ceil(kwu * vsize * 4 / 1000) <= budget  <=>  kwu * vsize * 4 <= budget * 1000
    let kwu = budget.to_sat().saturating_mul(1000) / (vsize * 4);
    FeeRate::from_sat_per_kwu(kwu)
}

/// Why a client will not reveal its preimage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum DontClaim {
    /// Fewer than [`PREIMAGE_REVEAL_CUTOFF`] blocks before `E`.
    #[error(
        "only {blocks_left} blocks left before the HTLC expires; revealing the preimage now risks losing the swap"
    )]
    TooLate {
        /// Blocks left.
        blocks_left: u32,
    },
    /// The claim at the needed rate would cost more than the user's limit.
    #[error("claim fee {fee} at the needed rate exceeds the miner-fee limit {max_fee}")]
    FeeAboveLimit {
        /// The fee needed.
        fee: Amount,
        /// The limit.
        max_fee: Amount,
    },
    /// What would be left after the fee is dust.
    #[error("the HTLC value {value} does not cover the claim fee {fee} plus dust")]
    NotWorthIt {
        /// The HTLC value.
        value: Amount,
        /// The fee needed.
        fee: Amount,
    },
}

/// The "not worth claiming" rule, checked before the preimage is revealed: returns the fee
/// rate to claim at, or why not to claim. `needed` is the estimate for the claim's conf target.
pub fn claim_decision(
    value: Amount,
    weight: Weight,
    needed: FeeRate,
    max_fee: Amount,
    dust: Amount,
    blocks_left: u32,
) -> Result<FeeRate, DontClaim> {
    if blocks_left < PREIMAGE_REVEAL_CUTOFF {
        return Err(DontClaim::TooLate { blocks_left });
    }
    let rate = FeeRate::from_sat_per_kwu(needed.to_sat_per_kwu().max(MIN_RELAY_FEE_RATE.to_sat_per_kwu()));
    let fee = fee_for_weight(rate, weight).unwrap_or(Amount::MAX);
    if fee > max_fee {
        return Err(DontClaim::FeeAboveLimit { fee, max_fee });
    }
    if value.checked_sub(fee).is_none_or(|left| left < dust) {
        return Err(DontClaim::NotWorthIt { value, fee });
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(base: u64, ppm: u32) -> FeePolicy {
        FeePolicy {
            base_fee: Amount::from_sat(base),
            fee_ppm: ppm,
            min_amount: Amount::from_sat(10_000),
            max_amount: Amount::from_sat(100_000_000),
            prepay: Amount::from_sat(1_000),
        }
    }

    /// Finding 10: a key-path claim (99 vB) replacing a script-path claim (140 vB) at a higher
    /// rate still pays more in total, by the incremental relay fee for its own size.
    #[test]
    fn a_smaller_replacement_pays_more_in_total() {
        let script_path = Weight::from_vb_unchecked(140);
        let key_path = Weight::from_vb_unchecked(99);
        let first = fee_for_weight(FeeRate::from_sat_per_kwu(2 * 250), script_path).expect("fee");
        assert_eq!(first, Amount::from_sat(280));
        let rate = FeeRate::from_sat_per_kwu(3 * 250);
        assert_eq!(fee_for_weight(rate, key_path), Some(Amount::from_sat(297)));
        // 297 ≥ 280 but the bump must also pay 1 sat/vB for its 99 vB: 280 + 99 = 379.
        assert_eq!(replacement_fee(rate, key_path, &[first]), Some(Amount::from_sat(379)));
        assert_eq!(replacement_fee(rate, key_path, &[]), Some(Amount::from_sat(297)));
        let high = FeeRate::from_sat_per_kwu(10 * 250);
        assert_eq!(replacement_fee(high, key_path, &[first]), Some(Amount::from_sat(990)));
    }

    #[test]
    fn fee_rounds_up() {
        let p = policy(100, 1_500);
        assert_eq!(
            p.swap_fee(Amount::from_sat(1_000_001)).expect("fee"),
            Amount::from_sat(100 + 1_501)
        );
        assert_eq!(
            p.swap_fee(Amount::from_sat(1_000_000)).expect("fee"),
            Amount::from_sat(1_600)
        );
        let q = p.loop_out_quote(Amount::from_sat(250_000)).expect("quote");
        assert_eq!(q.swap_fee, Amount::from_sat(475));
        assert_eq!(q.prepay, Amount::from_sat(475), "prepay never exceeds the fee");
        assert_eq!(q.swap_invoice_amount, Amount::from_sat(250_000));
        assert!(matches!(
            p.loop_out_quote(Amount::from_sat(9_999)),
            Err(FeeError::AmountOutOfRange { .. })
        ));
    }

    #[test]
    fn conf_targets_tighten_near_expiry() {
        assert_eq!(sweep_conf_target(200, 6), 6);
        assert_eq!(sweep_conf_target(23, 6), 3);
        assert_eq!(sweep_conf_target(20, 6), 2);
        assert_eq!(sweep_conf_target(10, 6), 1);
        assert_eq!(sweep_conf_target(0, 6), 1);
    }

    #[test]
    fn claim_decision_rules() {
        let w = Weight::from_vb_unchecked(111);
        let dust = Amount::from_sat(294);
        let r = FeeRate::from_sat_per_vb_u32(10);
        assert_eq!(
            claim_decision(Amount::from_sat(100_000), w, r, Amount::from_sat(5_000), dust, 40),
            Ok(r)
        );
        assert_eq!(
            claim_decision(Amount::from_sat(100_000), w, r, Amount::from_sat(1_000), dust, 40),
            Err(DontClaim::FeeAboveLimit {
                fee: Amount::from_sat(1_110),
                max_fee: Amount::from_sat(1_000)
            })
        );
        assert_eq!(
            claim_decision(Amount::from_sat(1_300), w, r, Amount::from_sat(5_000), dust, 40),
            Err(DontClaim::NotWorthIt {
                value: Amount::from_sat(1_300),
                fee: Amount::from_sat(1_110)
            })
        );
        assert_eq!(
            claim_decision(Amount::from_sat(100_000), w, r, Amount::from_sat(5_000), dust, 19),
            Err(DontClaim::TooLate { blocks_left: 19 })
        );
    }

    proptest! {
        #[test]
        fn swap_fee_is_exact_ceiling(base in 0u64..100_000, ppm in 0u32..100_000, amount in 1u64..2_100_000_000_000_000) {
            let p = policy(base, ppm);
            let fee = p.swap_fee(Amount::from_sat(amount)).expect("no overflow").to_sat();
            let exact_times_1e6 = u128::from(base) * 1_000_000 + u128::from(amount) * u128::from(ppm);
            // Never less than the advertised rate, and less than one satoshi more.
            prop_assert!(u128::from(fee) * 1_000_000 >= exact_times_1e6);
            prop_assert!(u128::from(fee) * 1_000_000 < exact_times_1e6 + 1_000_000);
        }

        #[test]
        fn quotes_add_up(base in 0u64..10_000, ppm in 0u32..50_000, amount in 10_000u64..100_000_000) {
            let p = policy(base, ppm);
            let out = p.loop_out_quote(Amount::from_sat(amount)).expect("in range");
            prop_assert_eq!(out.swap_invoice_amount + out.prepay, out.amount + out.swap_fee);
            prop_assert!(out.prepay <= out.swap_fee);
            if let Ok(q) = p.loop_in_quote(Amount::from_sat(amount)) {
                prop_assert_eq!(q.invoice_amount + q.swap_fee, q.amount);
                prop_assert!(q.invoice_amount < q.amount || q.swap_fee == Amount::ZERO);
            }
        }

        #[test]
        fn sweep_never_overpays_and_never_decreases(
            estimate in 1u64..5_000,
            prev in proptest::option::of(250u64..500_000),
            blocks_left in 0u32..300,
            vb in 100u64..2_000,
            value in 300u64..10_000_000,
            max_fee in 0u64..1_000_000,
        ) {
            let step = SweepStep {
                estimate: FeeRate::from_sat_per_kwu(estimate * 250),
                previous: prev.map(FeeRate::from_sat_per_kwu),
                blocks_left,
                weight: Weight::from_vb_unchecked(vb),
                value: Amount::from_sat(value),
                max_fee: Amount::from_sat(max_fee),
                dust: Amount::from_sat(294),
            };
            let rate = next_sweep_fee_rate(&step);
            if let Some(p) = prev {
                prop_assert!(rate.to_sat_per_kwu() >= p, "rate decreased");
            }
            let fee = fee_for_weight(rate, step.weight).expect("fee");
            // Either within budget, or the previous broadcast was already above it and we hold.
            let within = if blocks_left <= CLAIM_URGENCY_BLOCKS {
                fee.to_sat() + 294 <= value
            } else {
                fee.to_sat() <= max_fee && fee.to_sat() + 294 <= value
            };
            prop_assert!(within || prev.is_some_and(|p| rate.to_sat_per_kwu() == p), "fee {} over budget", fee);
        }

        #[test]
        fn claim_decision_respects_limit(value in 0u64..1_000_000, vb in 100u64..1_000, rate in 0u64..1_000, max_fee in 0u64..200_000, left in 0u32..200) {
            let w = Weight::from_vb_unchecked(vb);
            if let Ok(r) = claim_decision(Amount::from_sat(value), w, FeeRate::from_sat_per_kwu(rate * 250), Amount::from_sat(max_fee), Amount::from_sat(294), left) {
                let fee = fee_for_weight(r, w).expect("fee");
                prop_assert!(fee.to_sat() <= max_fee);
                prop_assert!(fee.to_sat() + 294 <= value);
                prop_assert!(left >= PREIMAGE_REVEAL_CUTOFF);
            }
        }
    }
}
