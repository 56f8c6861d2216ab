//! One record and one plan for every sweep of an HTLC output — the client's loop-out claim, the
//! server's loop-out refund, the server's loop-in claim, the client's loop-in refund: a sweep is
//! built, persisted, broadcast, then bumped once per block (RBF) until it confirms; a bump can
//! lose to its predecessor, so every transaction of a sweep is remembered ([`Sweep`]).
//!
//! [`next_sweep`] decides the next broadcast from the previous one and the chain's estimate: the
//! fee rate of [`next_sweep_fee_rate`] and, for each path offered (the script path, the
//! cooperative key path), the fee a replacement needs to be accepted in place of every earlier
//! version (BIP125 rules 3 and 4: a key-path spend is smaller than a script-path one and at the
//! same rate would pay less in total), within the sweep's budget. Nothing to bump — built in
//! this block already, the same rate, or no replacement within the budget — means broadcasting
//! the newest again as it is (mempools forget). The engines run the plan in one place
//! (`eddy_engine::sweep`).

use bitcoin::{Amount, FeeRate, OutPoint, Txid, Weight};
use serde::{Deserialize, Serialize};

use crate::fees::{next_sweep_fee_rate, replacement_fee, sweep_budget, SweepStep};

/// Every transaction broadcast to sweep one HTLC output, oldest first.
///
/// Stored in the engines' records (as `claim`, `refund` or one of `refunds`): it reads what the
/// earlier per-engine records wrote (their `txid` is the newest of `all`; the client loop-out
/// claim's `fee` is kept as read for records written before `fees`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    /// The output swept (absent in records written before sweeps named it: the swap's one
    /// output of its state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outpoint: Option<OutPoint>,
    /// Every transaction broadcast, oldest first; the last is the newest. Any may confirm.
    pub all: Vec<Txid>,
    /// The fee of each of `all`, in the same order (`None`: not known — records written before
    /// fees were kept; shorter than `all` in such records until they are written again).
    #[serde(default)]
    pub fees: Vec<Option<Amount>>,
    /// This swap's share of each of `all`'s fee, in the same order, where one was a batch that
    /// swept other swaps' outputs too (`None`: it swept this output alone, its whole fee is
    /// this swap's). Empty in records written before batches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<Option<Amount>>,
    /// The newest one's fee rate (sat/kWU).
    pub fee_rate_kwu: u64,
    /// The tip when the newest was built (one build per block).
    #[serde(default)]
    pub height: u32,
    /// Records written before this one: the newest's txid and (client loop-out claims) its fee,
    /// as read; folded into `fees` when the record is written again, never written.
    #[serde(default, rename = "txid", skip_serializing)]
    legacy_txid: Option<Txid>,
    #[serde(default, rename = "fee", skip_serializing)]
    legacy_fee: Option<Amount>,
}

impl Sweep {
    /// A sweep of `outpoint` with nothing broadcast yet.
    pub fn of(outpoint: OutPoint) -> Sweep {
        Sweep {
            outpoint: Some(outpoint),
            ..Sweep::default()
        }
    }

    /// The newest transaction.
    pub fn last(&self) -> Option<Txid> {
        self.all.last().copied()
    }

    /// Whether `txid` is one of this sweep's transactions.
    pub fn contains(&self, txid: &Txid) -> bool {
        self.all.contains(txid)
    }

    /// The newest one's fee rate.
    pub fn rate(&self) -> FeeRate {
        FeeRate::from_sat_per_kwu(self.fee_rate_kwu)
    }

    /// The fee of `txid`, one of [`Self::all`].
    pub fn fee_of(&self, txid: &Txid) -> Option<Amount> {
        let i = self.all.iter().position(|t| t == txid)?;
        self.fee_at(i)
    }

    /// The fee of the `i`th of `all`, also in records written before `fees` lined up.
    fn fee_at(&self, i: usize) -> Option<Amount> {
        if self.fees.len() == self.all.len() {
            return self.fees.get(i).copied().flatten();
        }
        let legacy = self.legacy_txid.or(self.all.last().copied());
        self.legacy_fee.filter(|_| self.all.get(i).copied() == legacy)
    }

    /// The newest one's fee.
    pub fn fee(&self) -> Option<Amount> {
        self.last().and_then(|t| self.fee_of(&t))
    }

    /// This swap's part of `txid`'s fee: its share where `txid` was a batch, else the whole fee.
    pub fn share_of(&self, txid: &Txid) -> Option<Amount> {
        let i = self.all.iter().position(|t| t == txid)?;
        match self.shares.get(i).copied().flatten() {
            Some(share) => Some(share),
            None => self.fee_at(i),
        }
    }

    /// Every known fee paid by a version of this sweep (a replacement must beat them all).
    pub fn fees_paid(&self) -> Vec<Amount> {
        (0..self.all.len()).filter_map(|i| self.fee_at(i)).collect()
    }

    /// `fees` lined up with `all` (records written before keep what they knew).
    fn line_up(&mut self) {
        if self.fees.len() != self.all.len() {
            self.fees = (0..self.all.len()).map(|i| self.fee_at(i)).collect();
        }
        if !self.shares.is_empty() {
            self.shares.resize(self.all.len(), None);
        }
        self.legacy_txid = None;
        self.legacy_fee = None;
    }

    /// Records `txid`, paying `fee`, as one of this sweep's transactions that may never have
    /// reached a mempool (a cooperative claim handed to the other side before its broadcast): it
    /// may confirm, and a replacement must beat its fee, but the newest stays the newest.
    pub fn attempted(&mut self, txid: Txid, fee: Amount) {
        if self.all.contains(&txid) {
            return;
        }
        self.line_up();
        let at = self.all.len().saturating_sub(1);
        self.fees.insert(at, Some(fee));
        if !self.shares.is_empty() {
            self.shares.insert(at, None);
        }
        self.all.insert(at, txid);
    }

    /// Records a broadcast (or one about to be: persisted first) of `txid` paying `fee` at
    /// `rate`, built at `height`; it becomes the newest.
    pub fn record(&mut self, txid: Txid, fee: Amount, rate: FeeRate, height: u32) {
        self.record_share(txid, fee, None, rate, height);
    }

    /// [`Sweep::record`] of a batch: `txid` pays `fee` in all, `share` of it for this swap's
    /// output (`None`: a sweep of this output alone).
    pub fn record_share(&mut self, txid: Txid, fee: Amount, share: Option<Amount>, rate: FeeRate, height: u32) {
        self.line_up();
        if let Some(i) = self.all.iter().position(|t| *t == txid) {
            self.all.remove(i);
            self.fees.remove(i);
            if i < self.shares.len() {
                self.shares.remove(i);
            }
        }
        if share.is_some() && self.shares.len() < self.all.len() {
            self.shares.resize(self.all.len(), None);
        }
        if share.is_some() || !self.shares.is_empty() {
            self.shares.push(share);
        }
        self.fees.push(Some(fee));
        self.all.push(txid);
        self.fee_rate_kwu = rate.to_sat_per_kwu();
        self.height = height;
    }
}

/// What the next broadcast of a sweep depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepInputs {
    /// The chain's estimate for the sweep's confirmation target.
    pub estimate: FeeRate,
    /// The tip now.
    pub tip: u32,
    /// Blocks left before the sweep's deadline (`u32::MAX`: none).
    pub blocks_left: u32,
    /// The output's value.
    pub value: Amount,
    /// The most the sweep may pay in fees (see [`sweep_budget`]).
    pub max_fee: Amount,
    /// The destination's dust limit.
    pub dust: Amount,
    /// The signed weight on the script path (`None`: not offered).
    pub script_weight: Option<Weight>,
    /// The signed weight on the cooperative key path (`None`: not offered).
    pub cooperative_weight: Option<Weight>,
}

/// The next broadcast of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepPlan {
    /// Broadcast the newest again, as it is, instead of building one — when it can still be
    /// had (built in this block already, nothing to bump, or no replacement fits the budget).
    pub rebroadcast: Option<Txid>,
    /// Whether a new one is built when the newest to broadcast again is gone (refused or
    /// evicted): only in a later block than it was built in — never twice in a block, so a
    /// refusal repeated pass after pass cannot walk the fee up.
    pub rebuild_if_gone: bool,
    /// The fee rate of a new one.
    pub rate: FeeRate,
    /// Its fee on the script path, if offered: `Some` when it replaces every earlier version
    /// within the budget; `None` when the path is not offered or no such fee exists.
    pub script_fee: Option<Amount>,
    /// Its fee on the cooperative key path, the same way.
    pub cooperative_fee: Option<Amount>,
    /// The most it may pay ([`sweep_budget`]).
    pub budget: Amount,
}

impl SweepPlan {
    /// Whether a new transaction may be built on some path.
    pub fn may_build(&self) -> bool {
        self.script_fee.is_some() || self.cooperative_fee.is_some()
    }
}

/// The next broadcast of a sweep whose previous broadcasts are `previous`.
pub fn next_sweep(previous: Option<&Sweep>, inputs: &SweepInputs) -> SweepPlan {
    let last = previous.and_then(Sweep::last);
    // The budget and the rate's cap are reckoned on the larger path offered.
    let weight = match (inputs.script_weight, inputs.cooperative_weight) {
        (Some(s), Some(c)) => s.max(c),
        (Some(w), None) | (None, Some(w)) => w,
        (None, None) => Weight::ZERO,
    };
    let step = SweepStep {
        estimate: inputs.estimate,
        previous: last.and(previous.map(Sweep::rate)),
        blocks_left: inputs.blocks_left,
        weight,
        value: inputs.value,
        max_fee: inputs.max_fee,
        dust: inputs.dust,
    };
    let rate = next_sweep_fee_rate(&step);
    let budget = sweep_budget(&step);
    let mut paid = match (last, previous) {
        (Some(_), Some(p)) => p.fees_paid(),
        _ => vec![],
    };
    if let Some(p) = previous.filter(|p| p.fees_paid().len() < p.all.len()) {
        // Versions of unknown fee (records written before fees were kept): at least the last
        // rate on the larger path, as they were built.
        paid.extend(crate::tx::fee_for_weight(p.rate(), weight));
    }
    let fee_for = |w: Option<Weight>| w.and_then(|w| replacement_fee(rate, w, &paid)).filter(|f| *f <= budget);
    let mut plan = SweepPlan {
        rebroadcast: None,
        rebuild_if_gone: previous.is_none_or(|p| p.height != inputs.tip),
        rate,
        script_fee: fee_for(inputs.script_weight),
        cooperative_fee: fee_for(inputs.cooperative_weight),
        budget,
    };
    if let (Some(txid), Some(p)) = (last, previous) {
        if p.height == inputs.tip || p.rate() == rate || !plan.may_build() {
            plan.rebroadcast = Some(txid);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn txid(n: u8) -> Txid {
        Txid::from_byte_array([n; 32])
    }

    fn inputs(tip: u32, estimate_kwu: u64) -> SweepInputs {
        SweepInputs {
            estimate: FeeRate::from_sat_per_kwu(estimate_kwu),
            tip,
            blocks_left: 100,
            value: Amount::from_sat(100_000),
            max_fee: Amount::from_sat(10_000),
            dust: Amount::from_sat(294),
            script_weight: Some(Weight::from_wu(600)),
            cooperative_weight: Some(Weight::from_wu(448)),
        }
    }

    #[test]
    fn reads_every_record_the_engines_wrote_before() {
        // Client loop-out claim (with `fee`, before and after `fees`), server loop-out refund,
        // server loop-in claim, client loop-in refund and per-output refund.
        let t1 = txid(1).to_string();
        let t2 = txid(2).to_string();
        let old_claim = format!(r#"{{"txid":"{t2}","fee_rate_kwu":500,"fee":300,"all":["{t1}","{t2}"],"height":7}}"#);
        let s: Sweep = serde_json::from_str(&old_claim).expect("old claim");
        assert_eq!(s.last(), Some(txid(2)));
        assert_eq!(s.fee(), Some(Amount::from_sat(300)));
        assert_eq!(s.fee_of(&txid(1)), None);
        let claim = format!(
            r#"{{"txid":"{t2}","fee_rate_kwu":500,"fee":300,"all":["{t1}","{t2}"],"fees":[200,300],"height":7}}"#
        );
        let s: Sweep = serde_json::from_str(&claim).expect("claim");
        assert_eq!(s.fee_of(&txid(1)), Some(Amount::from_sat(200)));
        assert_eq!(s.fee(), Some(Amount::from_sat(300)));
        let refund = format!(r#"{{"txid":"{t1}","fee_rate_kwu":250,"all":["{t1}"]}}"#);
        let s: Sweep = serde_json::from_str(&refund).expect("server refund");
        assert_eq!((s.last(), s.height, s.fee()), (Some(txid(1)), 0, None));
        let in_refund = format!(r#"{{"all":["{t1}"],"fees":[150],"fee_rate_kwu":250,"height":9}}"#);
        let s: Sweep = serde_json::from_str(&in_refund).expect("client refund");
        assert_eq!((s.last(), s.fee()), (Some(txid(1)), Some(Amount::from_sat(150))));
        let per_output = format!(r#"{{"outpoint":"{t2}:1","all":["{t1}"],"fee_rate_kwu":250,"height":9}}"#);
        let s: Sweep = serde_json::from_str(&per_output).expect("per-output refund");
        assert_eq!(s.outpoint, Some(OutPoint::new(txid(2), 1)));
        // Written again, it reads the same.
        let again: Sweep = serde_json::from_value(serde_json::to_value(&s).expect("json")).expect("read");
        assert_eq!(again, s);
    }

    #[test]
    fn recording_keeps_the_newest_last_and_the_fees_in_line() {
        let mut s = Sweep::of(OutPoint::new(txid(9), 0));
        s.record(txid(1), Amount::from_sat(100), FeeRate::from_sat_per_kwu(250), 5);
        s.record(txid(2), Amount::from_sat(200), FeeRate::from_sat_per_kwu(500), 6);
        // The first built again (a bump lost): it is the newest now, its fee with it.
        s.record(txid(1), Amount::from_sat(100), FeeRate::from_sat_per_kwu(250), 7);
        assert_eq!(s.all, vec![txid(2), txid(1)]);
        assert_eq!(s.fees, vec![Some(Amount::from_sat(200)), Some(Amount::from_sat(100))]);
        assert_eq!(
            (s.last(), s.fee(), s.height),
            (Some(txid(1)), Some(Amount::from_sat(100)), 7)
        );
        // A record from before `fees` keeps the fee it knew and adds the next.
        let mut old: Sweep = serde_json::from_str(&format!(
            r#"{{"fee_rate_kwu":250,"fee":100,"all":["{}"],"height":1}}"#,
            txid(1)
        ))
        .expect("old");
        old.record(txid(2), Amount::from_sat(300), FeeRate::from_sat_per_kwu(600), 2);
        assert_eq!(old.fee_of(&txid(2)), Some(Amount::from_sat(300)));
        assert_eq!(old.fee_of(&txid(1)), Some(Amount::from_sat(100)));
        assert_eq!(old.fees_paid(), vec![Amount::from_sat(100), Amount::from_sat(300)]);
        // A server refund from before (no fees at all): unknown stays unknown.
        let mut refund: Sweep = serde_json::from_str(&format!(
            r#"{{"txid":"{}","fee_rate_kwu":250,"all":["{}"]}}"#,
            txid(1),
            txid(1)
        ))
        .expect("refund");
        refund.record(txid(2), Amount::from_sat(300), FeeRate::from_sat_per_kwu(600), 2);
        assert_eq!(refund.fees, vec![None, Some(Amount::from_sat(300))]);
        let written = serde_json::to_value(&refund).expect("json");
        assert!(
            written.get("txid").is_none() && written.get("fee").is_none(),
            "{written}"
        );
    }

    #[test]
    fn the_first_sweep_pays_the_estimate_on_each_path() {
        let plan = next_sweep(None, &inputs(10, 1_000));
        assert_eq!(plan.rebroadcast, None);
        assert_eq!(plan.rate, FeeRate::from_sat_per_kwu(1_000));
        assert_eq!(plan.script_fee, Some(Amount::from_sat(600)));
        assert_eq!(plan.cooperative_fee, Some(Amount::from_sat(448)));
    }

    #[test]
    fn a_bump_beats_every_earlier_fee_and_waits_a_block() {
        let mut prev = Sweep::of(OutPoint::new(txid(9), 0));
        prev.record(txid(1), Amount::from_sat(600), FeeRate::from_sat_per_kwu(1_000), 10);
        // Same block: the newest again, and nothing new even if it is gone.
        let same = next_sweep(Some(&prev), &inputs(10, 5_000));
        assert_eq!((same.rebroadcast, same.rebuild_if_gone), (Some(txid(1)), false));
        // Next block: at least BUMP_PERCENT and the incremental rate above; the smaller
        // key-path replacement pays the script path's fee plus its own relay increment.
        let plan = next_sweep(Some(&prev), &inputs(11, 1_000));
        assert_eq!(plan.rebroadcast, None);
        assert_eq!(plan.rate, FeeRate::from_sat_per_kwu(1_250));
        assert_eq!(plan.script_fee, Some(Amount::from_sat(750)));
        // 448 WU at 1,250 = 560 < 600 + 112 (the increment for 448 WU).
        assert_eq!(plan.cooperative_fee, Some(Amount::from_sat(712)));
    }

    #[test]
    fn no_replacement_within_the_budget_broadcasts_the_newest_again() {
        let mut prev = Sweep::of(OutPoint::new(txid(9), 0));
        prev.record(txid(1), Amount::from_sat(9_990), FeeRate::from_sat_per_kwu(16_650), 10);
        let plan = next_sweep(Some(&prev), &inputs(11, 20_000));
        assert!(!plan.may_build());
        assert_eq!(plan.rebroadcast, Some(txid(1)));
        // Gone (refused, evicted) in a later block: one new version, at the capped rate.
        assert!(plan.rebuild_if_gone);
    }

    #[test]
    fn versions_of_unknown_fee_count_at_the_last_rate() {
        // A server loop-in claim stored before fees were kept: the key-path replacement must
        // still beat the script-path claim it replaces (600 WU at 1,000 sat/kWU = 600 sat).
        let prev: Sweep = serde_json::from_str(&format!(
            r#"{{"txid":"{}","fee_rate_kwu":1000,"all":["{}"],"height":10}}"#,
            txid(1),
            txid(1)
        ))
        .expect("old claim");
        let plan = next_sweep(Some(&prev), &inputs(11, 1_000));
        assert_eq!(plan.cooperative_fee, Some(Amount::from_sat(712)));
    }

    #[test]
    fn a_cooperative_only_sweep_plans_the_key_path_alone() {
        let mut i = inputs(10, 1_000);
        i.script_weight = None;
        let plan = next_sweep(None, &i);
        assert_eq!(
            (plan.script_fee, plan.cooperative_fee),
            (None, Some(Amount::from_sat(448)))
        );
    }
}
