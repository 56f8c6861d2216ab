//! The plan of a batched sweep: several swaps' HTLC outputs swept by one transaction, each
//! swap paying a share of its fee (issue 17: a client's claims). [`plan_batch`] is pure, like
//! [`crate::sweep::next_sweep`] which it extends from one output to many:
//!
//! - **Rate**: the highest any member's own schedule asks ([`next_sweep_fee_rate`] from its
//!   previous rate, estimate and deadline) — the most urgent member sets it; nobody is slowed.
//! - **Fee**: at least the rate on the whole transaction, and — when it replaces earlier
//!   versions — at least the fees of every transaction it conflicts with plus the incremental
//!   relay fee for its own size (BIP125 rules 3 and 4; a batch can replace several: each
//!   member's newest, counted once per distinct transaction).
//! - **Shares**: the fee split by the weight each member adds (its input, and an equal part of
//!   the transaction's own bytes and outputs) times the rate its own schedule asks (the urgent
//!   member carries most of the urgency); a share never exceeds its member's budget
//!   ([`sweep_budget`]) — a capped share's rest is carried by the members with room, in the same
//!   proportions. The shares add up to the fee exactly.
//! - **Nobody is stranded**: members are grouped by their newest transaction (a member never
//!   swept is a group alone); when the budgets cannot pay the fee, a whole group leaves the batch
//!   (the poorest first: least budget per weight) and its newest transaction is broadcast again
//!   as it is. A batch never replaces a transaction while leaving one of its swaps out.
//! - **One build per block**: when every member was last built in this block and none is new,
//!   or nothing would change (one transaction, same rate), the newest is broadcast again.

use bitcoin::{Amount, FeeRate, Txid, Weight};

use crate::fees::{max_rate_within, next_sweep_fee_rate, sweep_budget, SweepStep, INCREMENTAL_RELAY_FEE_RATE};
use crate::sweep::{Sweep, SweepInputs};
use crate::tx::fee_for_weight;

/// The most HTLC outputs one batch sweeps. A taproot script-path input weighs under 450 WU, so
/// a full batch stays far below the 400,000 WU standardness limit; a co-signer computes each
/// input's sighash over every prevout (linear in the inputs), and a member that fails to
/// co-sign costs the batch one more round — bounded by this.
pub const MAX_BATCH_INPUTS: usize = 100;

/// One swap's output in a batch.
#[derive(Clone, Copy, Debug)]
pub struct BatchMember<'a> {
    /// Its sweep so far (`None`: never swept).
    pub previous: Option<&'a Sweep>,
    /// Its sweep as if alone: estimate, tip, deadline, value, budget, dust, and the weight of a
    /// one-input sweep on each path offered (its rate's cap and budget are reckoned on it).
    pub alone: SweepInputs,
    /// The weight its input adds to the batch on the path it takes (outpoint, sequence, script
    /// and witness).
    pub input_weight: Weight,
}

impl BatchMember<'_> {
    fn newest(&self) -> Option<Txid> {
        self.previous.and_then(Sweep::last)
    }

    fn step(&self) -> SweepStep {
        let alone = match (self.alone.script_weight, self.alone.cooperative_weight) {
            (Some(s), Some(c)) => s.max(c),
            (Some(w), None) | (None, Some(w)) => w,
            (None, None) => self.input_weight,
        };
        let mut step = SweepStep {
            estimate: self.alone.estimate,
            previous: None,
            blocks_left: self.alone.blocks_left,
            weight: alone,
            value: self.alone.value,
            max_fee: self.alone.max_fee,
            dust: self.alone.dust,
        };
        step.previous = match self.previous.filter(|p| p.fee_rate_kwu > 0) {
            Some(p) if p.last().is_some() => Some(p.rate()),
            // Every version gone (refused for its fee, or evicted): the next outbids the
            // newest's rate — a batch's, set by its most urgent member — but never above what
            // this member's own budget allows (nothing is left to replace), or a member much
            // smaller than the rest could never be priced again.
            Some(p) => Some(p.rate().min(max_rate_within(sweep_budget(&step), step.weight))),
            None => None,
        };
        step
    }

    fn budget(&self) -> Amount {
        sweep_budget(&self.step())
    }

    /// What its newest transaction is known to have paid (a version of unknown fee: its last
    /// rate on the one-input weight, as built).
    fn newest_fee(&self) -> Amount {
        let Some(p) = self.previous else {
            return Amount::ZERO;
        };
        let Some(t) = p.last() else {
            return Amount::ZERO;
        };
        p.fee_of(&t)
            .or_else(|| fee_for_weight(p.rate(), self.step().weight))
            .unwrap_or(Amount::ZERO)
    }
}

/// The next broadcast of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchPlan {
    /// Transactions to broadcast again as they are: the newest of every group left out of the
    /// new batch, or of all when none is built.
    pub rebroadcast: Vec<Txid>,
    /// Whether a new batch is built when one to broadcast again is gone (refused, evicted): only
    /// when no member was built in this block (never twice in a block: a refusal repeated pass
    /// after pass cannot walk the fee up).
    pub rebuild_if_gone: bool,
    /// The new batch's rate.
    pub rate: FeeRate,
    /// Its fee.
    pub fee: Amount,
    /// Its members (indices into the members given) and each one's share of `fee`, in the
    /// order given; empty: no new batch.
    pub shares: Vec<(usize, Amount)>,
}

/// The next broadcast of a batch of `members` (at most [`MAX_BATCH_INPUTS`] are taken, in the
/// order given: put the most urgent first) whose transaction weighs `overhead` without inputs
/// (version, lock time, counts, segwit marker, outputs). `force` builds even where the newest
/// would be broadcast again (it is gone).
pub fn plan_batch(members: &[BatchMember<'_>], overhead: Weight, force: bool) -> BatchPlan {
    let tip = members.first().map_or(0, |m| m.alone.tip);
    let group = groups(members);
    let newest: Vec<Txid> = distinct(members.iter().filter_map(BatchMember::newest));
    let mut plan = BatchPlan {
        rebroadcast: newest.clone(),
        rebuild_if_gone: members
            .iter()
            .all(|m| m.previous.is_none_or(|p| p.last().is_none() || p.height != tip)),
        rate: FeeRate::ZERO,
        fee: Amount::ZERO,
        shares: vec![],
    };
    // Whole groups, in the order given, up to MAX_BATCH_INPUTS members: a group cut in two
    // would have its transaction replaced without the members cut off.
    let mut set: Vec<usize> = vec![];
    let mut seen_groups: Vec<usize> = vec![];
    for i in 0..members.len() {
        if seen_groups.contains(&group[i]) {
            continue;
        }
        seen_groups.push(group[i]);
        let of: Vec<usize> = (i..members.len()).filter(|&j| group[j] == group[i]).collect();
        if set.len() + of.len() <= MAX_BATCH_INPUTS {
            set.extend(of);
        }
    }
    set.sort_unstable();
    loop {
        if set.is_empty() {
            return plan;
        }
        let rate = set
            .iter()
            .map(|&i| next_sweep_fee_rate(&members[i].step()))
            .max()
            .unwrap_or(FeeRate::ZERO);
        let all_old = set.iter().all(|&i| members[i].newest().is_some());
        // Checked again after a group left: what stays was maybe built in this block already.
        if !force && all_old {
            let groups = distinct(set.iter().filter_map(|&i| members[i].newest()));
            let built_now = set
                .iter()
                .all(|&i| members[i].previous.is_some_and(|p| p.height == tip));
            let same_rate = set
                .iter()
                .all(|&i| members[i].previous.is_some_and(|p| p.rate() == rate));
            if built_now || (groups.len() == 1 && same_rate) {
                return plan;
            }
        }
        match priced(members, &set, overhead, rate) {
            Some((fee, shares)) => {
                let kept: Vec<Txid> = distinct(set.iter().filter_map(|&i| members[i].newest()));
                plan.rebroadcast = newest.into_iter().filter(|t| !kept.contains(t)).collect();
                plan.rate = rate;
                plan.fee = fee;
                plan.shares = set.iter().copied().zip(shares).collect();
                return plan;
            }
            None => {
                // The poorest group leaves: least budget per weight.
                let group_of = |i: usize| group[i];
                let mut groups: Vec<usize> = vec![];
                for &i in &set {
                    let g = group_of(i);
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
                let worth = |g: &usize| {
                    let (budget, weight) =
                        set.iter()
                            .filter(|&&i| group_of(i) == *g)
                            .fold((0u128, 0u128), |(b, w), &i| {
                                (
                                    b + members[i].budget().to_sat() as u128,
                                    w + members[i].input_weight.to_wu() as u128,
                                )
                            });
                    // budget / weight, compared by cross-multiplication below.
                    (budget, weight.max(1))
                };
                let poorest = groups
                    .iter()
                    .min_by(|a, b| {
                        let (ba, wa) = worth(a);
                        let (bb, wb) = worth(b);
                        (ba * wb).cmp(&(bb * wa))
                    })
                    .cloned();
                set.retain(|&i| Some(group_of(i)) != poorest);
            }
        }
    }
}

/// Each member's group: members that share any transaction (any version of their sweeps, not
/// only the newest — a batch persisted for some of its members before a crash still ties them)
/// are one group; a member never swept is a group alone. Groups are named by their first member.
fn groups(members: &[BatchMember<'_>]) -> Vec<usize> {
    let mut group: Vec<usize> = (0..members.len()).collect();
    let txids = |i: usize| members[i].previous.map(|p| p.all.as_slice()).unwrap_or(&[]);
    // Merge until nothing changes (n ≤ a few hundred: quadratic is fine).
    loop {
        let mut changed = false;
        for i in 0..members.len() {
            for j in (i + 1)..members.len() {
                if group[i] != group[j] && txids(i).iter().any(|t| txids(j).contains(t)) {
                    let (from, to) = (group[i].max(group[j]), group[i].min(group[j]));
                    for g in group.iter_mut() {
                        if *g == from {
                            *g = to;
                        }
                    }
                    changed = true;
                }
            }
        }
        if !changed {
            return group;
        }
    }
}

/// The fee of a batch of `set` at `rate` and its split, or `None` when the members' budgets
/// cannot pay it.
fn priced(
    members: &[BatchMember<'_>],
    set: &[usize],
    overhead: Weight,
    rate: FeeRate,
) -> Option<(Amount, Vec<Amount>)> {
    let weight = set
        .iter()
        .try_fold(overhead, |w, &i| w.checked_add(members[i].input_weight))?;
    let mut fee = fee_for_weight(rate, weight)?;
    let replaced = distinct_fees(
        set.iter()
            .filter_map(|&i| Some((members[i].newest()?, members[i].newest_fee()))),
    );
    if let Some(paid) = replaced {
        let bip125 = paid.checked_add(fee_for_weight(INCREMENTAL_RELAY_FEE_RATE, weight)?)?;
        fee = fee.max(bip125);
    }
    let n = set.len() as u128;
    // Each member's part: n × its input weight + the overhead (an equal part of it each),
    // times the rate its own schedule asks: a calm member joined to an urgent one pays the
    // urgent rate only in part; the urgent one carries the most of it.
    let parts: Vec<u128> = set
        .iter()
        .map(|&i| {
            let own = next_sweep_fee_rate(&members[i].step()).to_sat_per_kwu().max(1) as u128;
            own * (n * members[i].input_weight.to_wu() as u128 + overhead.to_wu() as u128)
        })
        .collect();
    let budgets: Vec<u64> = set.iter().map(|&i| members[i].budget().to_sat()).collect();
    split(fee.to_sat(), &parts, &budgets).map(|s| (fee, s.into_iter().map(Amount::from_sat).collect()))
}

/// `total` split in proportion to `parts`, no share above its `cap`; what a capped share cannot
/// carry goes to the others in the same proportions. The shares add up to `total` exactly (the
/// rounding's remainder one satoshi at a time to the first with room). `None`: the caps add up
/// to less than `total`.
pub fn split(total: u64, parts: &[u128], caps: &[u64]) -> Option<Vec<u64>> {
    if caps.iter().map(|&c| c as u128).sum::<u128>() < total as u128 {
        return None;
    }
    let mut shares = vec![0u64; parts.len()];
    let mut open: Vec<usize> = (0..parts.len()).collect();
    let mut left = total;
    // Cap whoever would exceed, until the proportional shares of the rest fit.
    loop {
        let weight: u128 = open.iter().map(|&i| parts[i].max(1)).sum();
        let over: Vec<usize> = open
            .iter()
            .copied()
            .filter(|&i| (left as u128 * parts[i].max(1)) / weight.max(1) > caps[i] as u128)
            .collect();
        if over.is_empty() {
            for &i in &open {
                shares[i] = ((left as u128 * parts[i].max(1)) / weight.max(1)) as u64;
            }
            break;
        }
        for i in over {
            shares[i] = caps[i];
            left -= caps[i];
            open.retain(|&j| j != i);
        }
        if open.is_empty() {
            break;
        }
    }
    let mut rest = total - shares.iter().sum::<u64>();
    while rest > 0 {
        let before = rest;
        for i in 0..shares.len() {
            if rest > 0 && shares[i] < caps[i] {
                shares[i] += 1;
                rest -= 1;
            }
        }
        if rest == before {
            return None;
        }
    }
    Some(shares)
}

fn distinct(txids: impl Iterator<Item = Txid>) -> Vec<Txid> {
    let mut out: Vec<Txid> = vec![];
    for t in txids {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// The sum of the fees of the distinct transactions named (`None`: none named).
fn distinct_fees(items: impl Iterator<Item = (Txid, Amount)>) -> Option<Amount> {
    let mut seen: Vec<Txid> = vec![];
    let mut sum = Amount::ZERO;
    for (t, fee) in items {
        if !seen.contains(&t) {
            seen.push(t);
            sum = sum.checked_add(fee)?;
        }
    }
    (!seen.is_empty()).then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::OutPoint;
    use proptest::prelude::*;

    fn txid(n: u8) -> Txid {
        Txid::from_byte_array([n; 32])
    }

    const OVERHEAD: Weight = Weight::from_wu(4 * (4 + 4 + 1 + 1 + 31) + 2);
    const KEY_INPUT: Weight = Weight::from_wu(4 * 41 + 66);

    fn alone(tip: u32, estimate_kwu: u64, value: u64, max_fee: u64, blocks_left: u32) -> SweepInputs {
        SweepInputs {
            estimate: FeeRate::from_sat_per_kwu(estimate_kwu),
            tip,
            blocks_left,
            value: Amount::from_sat(value),
            max_fee: Amount::from_sat(max_fee),
            dust: Amount::from_sat(294),
            script_weight: None,
            cooperative_weight: Some(OVERHEAD + KEY_INPUT),
        }
    }

    fn member(previous: Option<&Sweep>, alone: SweepInputs) -> BatchMember<'_> {
        BatchMember {
            previous,
            alone,
            input_weight: KEY_INPUT,
        }
    }

    #[test]
    fn three_new_members_share_one_fee_by_weight() {
        let a = alone(10, 1_000, 100_000, 10_000, 100);
        let ms = [member(None, a), member(None, a), member(None, a)];
        let plan = plan_batch(&ms, OVERHEAD, false);
        // 3 × 230 + 166 = 856 WU = 214 vB at 4 sat/vB.
        assert_eq!(plan.fee, Amount::from_sat(856));
        assert_eq!(plan.rate, FeeRate::from_sat_per_kwu(1_000));
        let shares: Vec<u64> = plan.shares.iter().map(|s| s.1.to_sat()).collect();
        assert_eq!(shares, vec![286, 285, 285]);
        assert!(plan.rebroadcast.is_empty());
    }

    #[test]
    fn the_most_urgent_member_sets_the_rate() {
        let calm = alone(10, 1_000, 100_000, 10_000, 100);
        let mut urgent = alone(10, 1_000, 100_000, 10_000, 100);
        urgent.estimate = FeeRate::from_sat_per_kwu(5_000);
        let plan = plan_batch(&[member(None, calm), member(None, urgent)], OVERHEAD, false);
        assert_eq!(plan.rate, FeeRate::from_sat_per_kwu(5_000));
        assert_eq!(
            plan.fee,
            fee_for_weight(plan.rate, OVERHEAD + KEY_INPUT + KEY_INPUT).expect("fee")
        );
    }

    #[test]
    fn a_batch_replacing_two_claims_pays_both_and_its_own_relay() {
        let mut one = Sweep::of(OutPoint::new(txid(9), 0));
        one.record(txid(1), Amount::from_sat(500), FeeRate::from_sat_per_kwu(250), 9);
        let mut two = Sweep::of(OutPoint::new(txid(9), 1));
        two.record(txid(2), Amount::from_sat(700), FeeRate::from_sat_per_kwu(250), 9);
        let a = alone(10, 1_000, 100_000, 10_000, 100);
        let plan = plan_batch(&[member(Some(&one), a), member(Some(&two), a)], OVERHEAD, false);
        let weight = OVERHEAD + KEY_INPUT + KEY_INPUT;
        let relay = fee_for_weight(INCREMENTAL_RELAY_FEE_RATE, weight).expect("relay");
        assert_eq!(plan.fee, Amount::from_sat(1_200) + relay);
        assert_eq!(plan.shares.iter().map(|s| s.1).sum::<Amount>(), plan.fee);
        assert!(plan.rebroadcast.is_empty());
    }

    #[test]
    fn a_batch_built_in_this_block_is_broadcast_again() {
        let mut s = Sweep::of(OutPoint::new(txid(9), 0));
        s.record_share(
            txid(1),
            Amount::from_sat(300),
            Some(Amount::from_sat(150)),
            FeeRate::from_sat_per_kwu(1_000),
            10,
        );
        let a = alone(10, 4_000, 100_000, 10_000, 100);
        let plan = plan_batch(&[member(Some(&s), a), member(Some(&s), a)], OVERHEAD, false);
        assert_eq!((plan.rebroadcast.clone(), plan.shares.len()), (vec![txid(1)], 0));
        assert!(!plan.rebuild_if_gone);
        // A new member joins at once.
        let plan = plan_batch(
            &[member(Some(&s), a), member(Some(&s), a), member(None, a)],
            OVERHEAD,
            false,
        );
        assert_eq!(plan.shares.len(), 3);
        assert!(plan.rebroadcast.is_empty());
    }

    #[test]
    fn a_poor_new_member_waits_and_never_strands_the_others() {
        let mut s = Sweep::of(OutPoint::new(txid(9), 0));
        s.record_share(
            txid(1),
            Amount::from_sat(300),
            Some(Amount::from_sat(150)),
            FeeRate::from_sat_per_kwu(1_000),
            9,
        );
        let rich = alone(10, 1_000, 100_000, 10_000, 100);
        // Its budget (20 sat) pays nothing like its share; the others' budgets are spent too.
        let poor = alone(10, 1_000, 100_000, 20, 100);
        let ms = [member(Some(&s), rich), member(Some(&s), rich), member(None, poor)];
        let plan = plan_batch(&ms, OVERHEAD, false);
        let members: Vec<usize> = plan.shares.iter().map(|s| s.0).collect();
        assert!(members == vec![0, 1] || members == vec![0, 1, 2], "{plan:?}");
        // Both of the old batch's members are in the new one: nobody is left behind.
        assert!(plan.rebroadcast.is_empty(), "{plan:?}");
    }

    #[test]
    fn a_group_built_in_this_block_is_not_rebuilt_when_a_poor_member_leaves() {
        // Review finding: with the poor newcomer dropped, the rest was priced again and rebuilt
        // pass after pass in one block, each a bump above the last.
        let mut s = Sweep::of(OutPoint::new(txid(9), 0));
        s.record_share(
            txid(1),
            Amount::from_sat(6_260),
            Some(Amount::from_sat(3_130)),
            FeeRate::from_sat_per_kwu(10_000),
            10,
        );
        let rich = alone(10, 10_000, 1_000_000, 4_800, 100);
        let poor = alone(10, 10_000, 1_000_000, 500, 100);
        let ms = [member(Some(&s), rich), member(Some(&s), rich), member(None, poor)];
        let plan = plan_batch(&ms, OVERHEAD, false);
        assert!(plan.shares.is_empty(), "{plan:?}");
        assert_eq!(plan.rebroadcast, vec![txid(1)]);
    }

    #[test]
    fn members_tied_by_any_version_stay_one_group() {
        // A crash persisted the new batch (2) for the first member only: both still share 1.
        let mut a = Sweep::of(OutPoint::new(txid(9), 0));
        a.record_share(
            txid(1),
            Amount::from_sat(300),
            Some(Amount::from_sat(150)),
            FeeRate::from_sat_per_kwu(1_000),
            9,
        );
        let mut b = a.clone();
        a.record_share(
            txid(2),
            Amount::from_sat(400),
            Some(Amount::from_sat(200)),
            FeeRate::from_sat_per_kwu(1_250),
            9,
        );
        b.outpoint = Some(OutPoint::new(txid(9), 1));
        let x = alone(10, 1_000, 100_000, 10_000, 100);
        let ms = [member(Some(&a), x), member(Some(&b), x)];
        assert_eq!(groups(&ms), vec![0, 0]);
        let plan = plan_batch(&ms, OVERHEAD, false);
        assert_eq!(plan.shares.len(), 2, "{plan:?}");
    }

    #[test]
    fn a_group_that_cannot_pay_keeps_its_transaction() {
        let mut s = Sweep::of(OutPoint::new(txid(9), 0));
        s.record_share(
            txid(1),
            Amount::from_sat(900),
            Some(Amount::from_sat(450)),
            FeeRate::from_sat_per_kwu(4_000),
            9,
        );
        // Budgets of 460 sat each cannot pay a bump from 4,000 sat/kWU; the fresh member's
        // budget pays its own claim, not theirs.
        let a = alone(10, 5_000, 100_000, 460, 100);
        let fresh = alone(10, 1_000, 100_000, 500, 100);
        let ms = [member(Some(&s), a), member(Some(&s), a), member(None, fresh)];
        let plan = plan_batch(&ms, OVERHEAD, false);
        assert_eq!(plan.rebroadcast, vec![txid(1)]);
        assert_eq!(plan.shares.iter().map(|s| s.0).collect::<Vec<_>>(), vec![2]);
    }

    proptest! {
        #[test]
        fn shares_add_up_within_budgets_and_strand_nobody(
            specs in proptest::collection::vec(
                (proptest::option::of((0u8..3, 250u64..20_000, 100u64..20_000, 5u32..12)), 250u64..50_000, 1_000u64..5_000_000, 0u64..50_000, 1u32..300),
                1..12,
            ),
            force in any::<bool>(),
        ) {
            let tip = 11;
            let sweeps: Vec<Option<Sweep>> = specs.iter().enumerate().map(|(i, (prev, ..))| prev.map(|(group, rate, fee, height)| {
                let mut s = Sweep::of(OutPoint::new(txid(99), i as u32));
                // Members of one group share their newest (its fee the same for all).
                s.record_share(txid(group), Amount::from_sat(fee + u64::from(group) * 1_000), Some(Amount::from_sat(1)), FeeRate::from_sat_per_kwu(rate), height.min(tip));
                s
            })).collect();
            let members: Vec<BatchMember<'_>> = specs.iter().zip(&sweeps).map(|((_, est, value, max_fee, left), s)| {
                member(s.as_ref(), alone(tip, *est, *value, *max_fee, *left))
            }).collect();
            let plan = plan_batch(&members, OVERHEAD, force);
            if !plan.shares.is_empty() {
                let total: Amount = plan.shares.iter().map(|s| s.1).sum();
                prop_assert_eq!(total, plan.fee);
                for &(i, share) in &plan.shares {
                    prop_assert!(share <= members[i].budget(), "share {} over budget {}", share, members[i].budget());
                    prop_assert!(plan.rate >= next_sweep_fee_rate(&members[i].step()));
                }
                let weight = plan.shares.iter().fold(OVERHEAD, |w, s| w + members[s.0].input_weight);
                prop_assert!(plan.fee >= fee_for_weight(plan.rate, weight).expect("fee"));
                let inside: Vec<Txid> = distinct(plan.shares.iter().filter_map(|s| members[s.0].newest()));
                if let Some(paid) = distinct_fees(inside.iter().map(|t| {
                    let m = members.iter().find(|m| m.newest() == Some(*t)).expect("member");
                    (*t, m.newest_fee())
                })) {
                    prop_assert!(plan.fee >= paid + fee_for_weight(INCREMENTAL_RELAY_FEE_RATE, weight).expect("relay"));
                }
                // Nobody stranded: a transaction the batch replaces has all its members inside.
                for (i, m) in members.iter().enumerate() {
                    if let Some(t) = m.newest() {
                        if inside.contains(&t) {
                            prop_assert!(plan.shares.iter().any(|s| s.0 == i), "member {} left out of the replacement of {}", i, t);
                        } else {
                            prop_assert!(plan.rebroadcast.contains(&t));
                        }
                    }
                }
            } else {
                for m in &members {
                    if let Some(t) = m.newest() {
                        prop_assert!(plan.rebroadcast.contains(&t));
                    }
                }
            }
        }

        #[test]
        fn split_is_exact_and_capped(
            total in 0u64..1_000_000,
            parts in proptest::collection::vec((1u128..10_000, 0u64..400_000), 1..20),
        ) {
            let (p, c): (Vec<u128>, Vec<u64>) = parts.into_iter().unzip();
            match split(total, &p, &c) {
                Some(s) => {
                    prop_assert_eq!(s.iter().sum::<u64>(), total);
                    for (share, cap) in s.iter().zip(&c) {
                        prop_assert!(share <= cap);
                    }
                }
                None => prop_assert!(c.iter().sum::<u64>() < total),
            }
        }
    }
}
