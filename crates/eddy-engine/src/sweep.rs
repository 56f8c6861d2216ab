//! The one sweep path of every engine: the client's loop-out claim, the server's loop-out
//! refund, the server's loop-in claim and the client's loop-in refund all go through
//! [`sweep`] — plan ([`eddy_core::sweep::next_sweep`]), build, sign (the script path with the
//! party's key, or the cooperative key path with the other side's MuSig2 partial signature,
//! falling back to the script path when it is offered), record the transaction in the swap's
//! [`Sweep`] and **persist it before it is broadcast** (its confirmations are recognised after
//! a crash, and a claim's preimage is never out before the record of it), then broadcast.
//! Broadcasting the newest again when there is nothing to bump is part of the plan: mempools
//! forget.

use async_trait::async_trait;
use bitcoin::secp256k1::SecretKey;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use eddy_backends::ChainSource;
use eddy_core::htlc::Htlc;
use eddy_core::musig::{PartialSigBytes, PubNonceBytes, Signer};
use eddy_core::sweep::{next_sweep, Sweep, SweepInputs, SweepPlan};
use eddy_core::tx::{build_spend, FeeSpec, HtlcInput, SignedSpend, SpendPath};
use eddy_core::types::SwapId;
use serde_json::json;

use crate::runner::{self, Effects, Record};

/// The other side of a cooperative (key-path) sweep: its MuSig2 nonce and partial signature
/// for our nonce and the unsigned sweep. An error means "not now": the script path follows
/// when offered, else the next block asks again.
#[async_trait]
pub trait Cosigner: Send + Sync {
    /// Co-signs input `index` of `tx` (the sweep; input 0 of a sweep of one output) given our
    /// public nonce; `prevouts` are every input's (in input order).
    async fn cosign(
        &self,
        nonce: &PubNonceBytes,
        tx: &Transaction,
        index: usize,
        prevouts: &[TxOut],
    ) -> Result<(PubNonceBytes, PartialSigBytes), String>;

    /// Whether it co-signs one input of a batch (a transaction of several inputs).
    fn batches(&self) -> bool {
        false
    }
}

/// What one sweep spends, how, and within what.
pub struct SweepJob<'a> {
    /// What the event log calls it: `claim` or `refund` (`claim_built`, `refund_built`).
    pub label: &'static str,
    /// The HTLC output.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
    /// The HTLC.
    pub htlc: &'a Htlc,
    /// The script path (`None`: the cooperative path only — a refund before the timeout).
    pub script_path: Option<SpendPath>,
    /// The other side, for the key path (tried first when given).
    pub cosigner: Option<&'a dyn Cosigner>,
    /// Our key: it signs the script path and is our MuSig2 share.
    pub key: SecretKey,
    /// Where the sweep pays.
    pub dest: ScriptBuf,
    /// The chain's fee estimate for the sweep's confirmation target.
    pub estimate: bitcoin::FeeRate,
    /// Blocks left before the sweep's deadline (`u32::MAX`: none).
    pub blocks_left: u32,
    /// The most it may pay in fees (the budget: [`eddy_core::fees::sweep_budget`]).
    pub max_fee: Amount,
    /// The tip now.
    pub tip: u32,
    /// Whether a broadcast refused as not final yet (a refund before its timeout) is fine.
    pub may_be_early: bool,
    /// The transactions the chain watcher shows spending the output now, in a block or in the
    /// node's mempool (the watcher drops what left the mempool at every sync): the newest among
    /// them needs no broadcast again.
    pub seen: Vec<Txid>,
}

/// A sweep failed to be built, signed or broadcast (the next pass tries again).
#[derive(Debug, thiserror::Error)]
#[error("sweep: {0}")]
pub struct SweepError(pub String);

fn err(e: impl std::fmt::Display) -> SweepError {
    SweepError(e.to_string())
}

/// What a sweep's next pass did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swept {
    /// Nothing new: the newest was broadcast again (or nothing could be done now).
    Unchanged,
    /// A new transaction was recorded, persisted and broadcast (or found spent already).
    New {
        /// Its txid.
        txid: Txid,
        /// Whether it took the cooperative key path.
        cooperative: bool,
    },
}

/// One pass of swap `id`'s sweep described by `job`, whose record so far is `previous`:
/// broadcast the newest again, or build, sign, record (`store` puts the updated record into
/// `rec`), persist (through the runner) and broadcast a new one.
#[allow(clippy::too_many_arguments)]
pub async fn sweep<R, E>(
    effects: &E,
    chain: &dyn ChainSource,
    id: SwapId,
    version: &mut i64,
    rec: &mut R,
    previous: Option<Sweep>,
    store: impl FnOnce(&mut R, Sweep),
    job: SweepJob<'_>,
) -> Result<Swept, E::Error>
where
    R: Record,
    E: Effects<R> + ?Sized,
    E::Error: From<SweepError>,
{
    // A batch of ours the node no longer has (another member's output spent elsewhere, or it
    // was replaced by a batch without this output) is owed nothing: planned against what is
    // left of the history, not against the batch's whole fee.
    let planned = match &previous {
        Some(p) => Some(live_history(chain, p, &job.seen, job.tip, true, &mut Vec::new()).await),
        None => None,
    };
    let plan = plan(planned.as_ref(), &job, job.cosigner.is_some())?;
    if let Some(txid) = plan.rebroadcast {
        if job.seen.contains(&txid) {
            return Ok(Swept::Unchanged);
        }
        match chain.transaction(&txid).await {
            Ok(Some(s)) => {
                let _ = chain.broadcast(&s.tx).await;
                return Ok(Swept::Unchanged);
            }
            // Not known to the node (refused, evicted): a new one, but never twice in a block —
            // a lookup that fails or a broadcast refused again must not walk the fee up pass
            // after pass.
            Ok(None) if plan.rebuild_if_gone => {}
            Ok(None) | Err(_) => return Ok(Swept::Unchanged),
        }
    }
    let Some((signed, cooperative)) = build(id, &plan, &job).await? else {
        return Ok(Swept::Unchanged);
    };
    let txid = signed.tx.compute_txid();
    let mut updated = previous.unwrap_or_else(|| Sweep::of(job.outpoint));
    // The rate it pays (a replacement fee can be above the planned rate): the next bump starts
    // above it, as the mempool's feerate rule asks of a replacement.
    updated.record(txid, signed.fee, plan.rate.max(rate_of(&signed)), job.tip);
    store(rec, updated);
    let event = json!({
        "event": format!("{}_built", job.label),
        "txid": txid.to_string(),
        "outpoint": job.outpoint.to_string(),
        "fee_sat": signed.fee.to_sat(),
        "cooperative": cooperative,
    });
    runner::persist(effects, &id, version, rec, event).await?;
    match chain.broadcast(&signed.tx).await {
        Ok(_) => {}
        // Spent meanwhile (an earlier version of ours, or the other side): the watcher tells.
        Err(e) if e.is_missing_inputs() => {}
        Err(e) if job.may_be_early && e.is_non_final() => {}
        Err(e) => return Err(err(e).into()),
    }
    Ok(Swept::New { txid, cooperative })
}

/// The plan for `job` after `previous`: the weights of the paths offered (the key path when
/// `cooperative`, on a taproot HTLC), then [`next_sweep`].
pub fn plan(previous: Option<&Sweep>, job: &SweepJob<'_>, cooperative: bool) -> Result<SweepPlan, SweepError> {
    let inputs = inputs_of(job, cooperative)?;
    let previous = previous.filter(|p| !p.all.is_empty());
    Ok(next_sweep(previous, &inputs))
}

/// The fee rate `signed` pays (sat/kWU, rounded up).
pub fn rate_of(signed: &SignedSpend) -> bitcoin::FeeRate {
    let wu = signed.weight.to_wu().max(1);
    bitcoin::FeeRate::from_sat_per_kwu((signed.fee.to_sat() * 1000).div_ceil(wu))
}

/// `job`'s output as an input on `path`.
pub fn input(job: &SweepJob<'_>, path: SpendPath) -> HtlcInput {
    HtlcInput {
        outpoint: job.outpoint,
        value: job.value,
        htlc: job.htlc.clone(),
        path,
    }
}

/// The signed sweep of `plan`: the key path co-signed when offered and it fits, else the
/// script path when offered (at the planned replacement fee, or at the rate when none fits:
/// the first sweep, or one whose predecessor is gone). `None`: nothing can be built now.
async fn build(id: SwapId, plan: &SweepPlan, job: &SweepJob<'_>) -> Result<Option<(SignedSpend, bool)>, SweepError> {
    if let (Some(cosigner), Some(fee)) = (job.cosigner, plan.cooperative_fee) {
        match cooperative(id, job, cosigner, fee).await {
            Ok(signed) => return Ok(Some((signed, true))),
            Err(e) => tracing::info!(swap = %id, error = %e, "no cooperative {}; script path if offered", job.label),
        }
    }
    let Some(path) = job.script_path else {
        return Ok(None);
    };
    let fee = plan.script_fee.map_or(FeeSpec::Rate(plan.rate), FeeSpec::Absolute);
    let mut spend = build_spend(vec![input(job, path)], job.dest.clone(), fee).map_err(err)?;
    spend.sign(0, &job.key).map_err(err)?;
    Ok(Some((spend.finalize().map_err(err)?, false)))
}

/// The key-path sweep paying `fee`, co-signed by `cosigner` (its partial signature verified by
/// the aggregation: a bad one is an error, never a broadcast).
async fn cooperative(
    id: SwapId,
    job: &SweepJob<'_>,
    cosigner: &dyn Cosigner,
    fee: Amount,
) -> Result<SignedSpend, SweepError> {
    let Htlc::Taproot(taproot) = job.htlc else {
        return Err(SweepError("not a taproot HTLC".into()));
    };
    let mut spend = build_spend(
        vec![input(job, SpendPath::Cooperative)],
        job.dest.clone(),
        FeeSpec::Absolute(fee),
    )
    .map_err(err)?;
    let msg = spend.sighash(0).map_err(err)?;
    let mut signer = Signer::new(taproot, &job.key, msg, &id.0).map_err(err)?;
    let (their_nonce, their_partial) = cosigner
        .cosign(&signer.public_nonce(), &spend.tx, 0, &spend.prevouts)
        .await
        .map_err(SweepError)?;
    let ours = signer.sign(&their_nonce).map_err(err)?;
    let sig = signer.aggregate(&their_nonce, &ours, &their_partial).map_err(err)?;
    spend.set_cooperative_signature(0, sig).map_err(err)?;
    spend.finalize().map_err(err)
}

/// One swap's output in a batched sweep ([`sweep_batch`]): the swap, its record as loaded
/// (under its lock) and what its sweep alone would be.
pub struct BatchEntry<'a, R> {
    /// The swap.
    pub id: SwapId,
    /// Its record's version.
    pub version: i64,
    /// Its record.
    pub rec: R,
    /// Its sweep so far.
    pub previous: Option<Sweep>,
    /// Its sweep as if alone (the cooperative path tried first where a co-signer is given).
    pub job: SweepJob<'a>,
}

/// The most signing rounds of one batch pass: a co-signer that refuses moves its input to the
/// script path (or out of the batch) and the batch is rebuilt and signed again; more refusals
/// than this wait for the next pass.
pub const BATCH_ROUNDS: usize = 3;

/// One pass of a batched sweep of `entries` (two or more; the most urgent first): broadcast
/// the newest again, or build one transaction spending every entry's output that fits
/// ([`eddy_core::batch::plan_batch`]), each input on the key path where its co-signer signs
/// (else its script path), one output per destination paying its entries' values less their
/// shares of the fee; record it in every member's [`Sweep`] with its share (`store`), persist
/// every member's record (through the runner), then broadcast. Returns the members' indices
/// and the new transaction (none: nothing new).
pub async fn sweep_batch<R, E>(
    effects: &E,
    chain: &dyn ChainSource,
    entries: &mut [BatchEntry<'_, R>],
    store: impl Fn(&mut R, Sweep),
) -> Result<Option<(Vec<usize>, Txid)>, E::Error>
where
    R: Record,
    E: Effects<R> + ?Sized,
    E::Error: From<SweepError>,
{
    use eddy_core::batch::{plan_batch, BatchMember};
    use eddy_core::tx::{build_batch, input_weight, overhead_weight};
    let tip = entries.first().map_or(0, |e| e.job.tip);
    // The path each entry takes this round (`None`: out of this pass).
    let mut paths: Vec<Option<SpendPath>> = entries
        .iter()
        .map(|e| match (e.job.cosigner, e.job.htlc) {
            (Some(c), Htlc::Taproot(_)) if c.batches() => Some(SpendPath::Cooperative),
            _ => e.job.script_path,
        })
        .collect();
    // Versions the node no longer has (refused, evicted, one of their inputs spent elsewhere,
    // never broadcast after a crash) replace nothing: each member is planned against its history
    // up to the newest version still to be had (seen by any member, or known to the node) — a
    // partial write of a batch, or a refused newest with an older version still in the mempool,
    // is priced against what is really there, once. Built in this block: kept as it is.
    let seen_any: Vec<Txid> = entries.iter().flat_map(|e| e.job.seen.iter().copied()).collect();
    let mut known: Vec<(Txid, bool)> = vec![];
    let mut planned: Vec<Option<Sweep>> = Vec::with_capacity(entries.len());
    for e in entries.iter() {
        planned.push(match &e.previous {
            Some(p) => {
                // Every version gone still leaves the rate the next must outbid.
                Some(live_history(chain, p, &seen_any, tip, false, &mut known).await)
                    .filter(|p| !p.all.is_empty() || p.fee_rate_kwu > 0)
            }
            None => None,
        });
    }
    let mut force = false;
    for round in 0..BATCH_ROUNDS {
        if round + 1 == BATCH_ROUNDS {
            // The last round asks nobody: a co-signer refusing one input per round can never
            // keep the batch from being built (the script paths need no one).
            for (p, e) in paths.iter_mut().zip(entries.iter()) {
                if *p == Some(SpendPath::Cooperative) {
                    *p = e.job.script_path;
                }
            }
        }
        let mut alone = Vec::with_capacity(entries.len());
        for e in entries.iter() {
            alone.push(inputs_of(&e.job, e.job.cosigner.is_some())?);
        }
        let taking: Vec<usize> = (0..entries.len()).filter(|&i| paths[i].is_some()).collect();
        let mut members = Vec::with_capacity(taking.len());
        for &i in &taking {
            let Some(path) = paths[i] else { continue };
            let weight =
                input_weight(&input(&entries[i].job, path)).ok_or_else(|| SweepError("path unavailable".into()))?;
            members.push(BatchMember {
                previous: planned[i].as_ref(),
                alone: alone[i],
                input_weight: weight,
            });
        }
        let mut dests: Vec<ScriptBuf> = vec![];
        for &i in &taking {
            if !dests.contains(&entries[i].job.dest) {
                dests.push(entries[i].job.dest.clone());
            }
        }
        let plan = plan_batch(&members, overhead_weight(&dests), force);
        let gone = rebroadcast(chain, &plan.rebroadcast, &seen_any).await;
        if plan.shares.is_empty() {
            if gone && plan.rebuild_if_gone && !force {
                force = true;
                continue;
            }
            return Ok(None);
        }
        // The transaction: members in plan order, outputs per destination.
        let chosen: Vec<(usize, Amount)> = plan.shares.iter().map(|&(m, share)| (taking[m], share)).collect();
        let mut outputs: Vec<TxOut> = vec![];
        for &(i, share) in &chosen {
            let job = &entries[i].job;
            let keep = job
                .value
                .checked_sub(share)
                .ok_or_else(|| SweepError("share above value".into()))?;
            match outputs.iter_mut().find(|o| o.script_pubkey == job.dest) {
                Some(o) => o.value += keep,
                None => outputs.push(TxOut {
                    value: keep,
                    script_pubkey: job.dest.clone(),
                }),
            }
        }
        let inputs = chosen
            .iter()
            .map(|&(i, _)| input(&entries[i].job, paths[i].unwrap_or(SpendPath::Cooperative)))
            .collect();
        let mut spend = build_batch(inputs, outputs).map_err(err)?;
        if spend.fee != plan.fee {
            return Err(SweepError(format!("batch pays {} not the planned {}", spend.fee, plan.fee)).into());
        }
        // Sign: the script paths with our keys, the key paths with each co-signer — all asked
        // at once, so a co-signer that stalls costs one call's time limit, not one per input;
        // a refusal moves that entry to its script path (or out) and the batch is rebuilt.
        let mut asks = vec![];
        for (n, &(i, _)) in chosen.iter().enumerate() {
            let job = &entries[i].job;
            if paths[i] == Some(SpendPath::Cooperative) {
                asks.push((n, i));
            } else {
                spend.sign(n, &job.key).map_err(err)?;
            }
        }
        let answers = futures::future::join_all(
            asks.iter()
                .map(|&(n, i)| cosign_input(entries[i].id, &entries[i].job, &spend, n)),
        )
        .await;
        let mut refused = false;
        for (&(n, i), answer) in asks.iter().zip(answers) {
            match answer {
                Ok(sig) => spend.set_cooperative_signature(n, sig).map_err(err)?,
                Err(e) => {
                    let job = &entries[i].job;
                    tracing::info!(swap = %entries[i].id, error = %e, "no cooperative batch {}; script path if offered", job.label);
                    paths[i] = job.script_path;
                    refused = true;
                }
            }
        }
        if refused {
            continue;
        }
        let signed = spend.finalize().map_err(err)?;
        let txid = signed.tx.compute_txid();
        let rate = plan.rate.max(rate_of(&signed));
        let members: Vec<usize> = chosen.iter().map(|&(i, _)| i).collect();
        for &(i, share) in &chosen {
            let e = &mut entries[i];
            let mut updated = e.previous.clone().unwrap_or_else(|| Sweep::of(e.job.outpoint));
            updated.record_share(txid, signed.fee, Some(share), rate, tip);
            store(&mut e.rec, updated.clone());
            e.previous = Some(updated);
            let event = json!({
                "event": format!("{}_built", e.job.label),
                "txid": txid.to_string(),
                "outpoint": e.job.outpoint.to_string(),
                "fee_sat": signed.fee.to_sat(),
                "share_sat": share.to_sat(),
                "batch_inputs": chosen.len(),
                "cooperative": paths[i] == Some(SpendPath::Cooperative),
            });
            runner::persist(effects, &e.id, &mut e.version, &e.rec, event).await?;
        }
        match chain.broadcast(&signed.tx).await {
            Ok(_) => {}
            Err(e) if e.is_missing_inputs() => {}
            Err(e) if e.is_non_final() && chosen.iter().all(|&(i, _)| entries[i].job.may_be_early) => {}
            Err(e) => return Err(err(e).into()),
        }
        return Ok(Some((members, txid)));
    }
    Ok(None)
}

/// Broadcasts each of `txids` again that the watcher does not show (`seen`) — mempools forget —
/// and answers whether any is gone (the node no longer has it: refused, evicted, conflicted).
pub async fn rebroadcast(chain: &dyn ChainSource, txids: &[Txid], seen: &[Txid]) -> bool {
    let mut gone = false;
    for txid in txids.iter().filter(|t| !seen.contains(t)) {
        match chain.transaction(txid).await {
            Ok(Some(s)) => {
                let _ = chain.broadcast(&s.tx).await;
            }
            Ok(None) => gone = true,
            Err(_) => {}
        }
    }
    gone
}

/// `previous` less its newest versions that are gone — neither in `seen` nor known to the node
/// (`known` caches the node's answers) — back to the newest one still to be had; all of them
/// when none is: they replace nothing, so the next version owes them no fee. The rate the
/// next bump starts from stays the newest version's, gone or not. With `batches_only`, only
/// versions that were batches (a share recorded) are dropped. Nothing is dropped from a sweep
/// built in this block (never twice in a block).
pub async fn live_history(
    chain: &dyn ChainSource,
    previous: &Sweep,
    seen: &[Txid],
    tip: u32,
    batches_only: bool,
    known: &mut Vec<(Txid, bool)>,
) -> Sweep {
    let mut view = previous.clone();
    if view.height == tip {
        return view;
    }
    while let Some(t) = view.last() {
        let i = view.all.len() - 1;
        let batch = view.shares.get(i).copied().flatten().is_some();
        if (batches_only && !batch) || seen.contains(&t) {
            break;
        }
        let live = match known.iter().find(|(k, _)| *k == t) {
            Some((_, live)) => *live,
            None => {
                // A failed lookup counts as live: nothing is dropped on a guess.
                let live = !matches!(chain.transaction(&t).await, Ok(None));
                known.push((t, live));
                live
            }
        };
        if live {
            break;
        }
        view.all.pop();
        view.fees.truncate(view.all.len());
        view.shares.truncate(view.all.len());
    }
    // The rate is kept (the dropped version's): a version the mempool refused for its fee (a
    // floor above the estimate) must be outbid by the next, or the sweep would be rebuilt at
    // the same rate block after block and never get in (review #9, for batches); one evicted by
    // a conflict costs at most one bump step more.
    view
}

/// What `job`'s sweep alone depends on (the weights of a one-input sweep on each path offered).
pub fn inputs_of(job: &SweepJob<'_>, cooperative: bool) -> Result<SweepInputs, SweepError> {
    let weight = |path: SpendPath| -> Result<_, SweepError> {
        let probe = build_spend(
            vec![input(job, path)],
            job.dest.clone(),
            FeeSpec::Absolute(Amount::ZERO),
        );
        Ok(probe.map_err(err)?.predicted_weight)
    };
    let script_weight = job.script_path.map(weight).transpose()?;
    let cooperative_weight = match (cooperative, job.htlc) {
        (true, Htlc::Taproot(_)) => Some(weight(SpendPath::Cooperative)?),
        _ => None,
    };
    Ok(SweepInputs {
        estimate: job.estimate,
        tip: job.tip,
        blocks_left: job.blocks_left,
        value: job.value,
        max_fee: job.max_fee,
        dust: job.dest.minimal_non_dust(),
        script_weight,
        cooperative_weight,
    })
}

/// The aggregated key-path signature of input `index` of `spend`, co-signed by `job`'s
/// co-signer (its partial signature verified by the aggregation).
async fn cosign_input(
    id: SwapId,
    job: &SweepJob<'_>,
    spend: &eddy_core::tx::UnsignedSpend,
    index: usize,
) -> Result<bitcoin::secp256k1::schnorr::Signature, SweepError> {
    let (Some(cosigner), Htlc::Taproot(taproot)) = (job.cosigner, job.htlc) else {
        return Err(SweepError("no co-signer".into()));
    };
    let msg = spend.sighash(index).map_err(err)?;
    let mut signer = Signer::new(taproot, &job.key, msg, &id.0).map_err(err)?;
    let (their_nonce, their_partial) = cosigner
        .cosign(&signer.public_nonce(), &spend.tx, index, &spend.prevouts)
        .await
        .map_err(SweepError)?;
    let ours = signer.sign(&their_nonce).map_err(err)?;
    signer.aggregate(&their_nonce, &ours, &their_partial).map_err(err)
}

/// The swaps whose sweep waits for the end of a pass ([`sweep_due`]): each once, in the order
/// they came.
#[derive(Default)]
pub struct DueQueue(std::sync::Mutex<Vec<SwapId>>);

impl DueQueue {
    /// Queues `id` (once).
    pub fn push(&self, id: SwapId) {
        let mut due = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !due.contains(&id) {
            due.push(id);
        }
    }

    /// Takes every swap queued.
    pub fn take(&self) -> Vec<SwapId> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A swap after [`sweep_due`]: its record as persisted, and the transaction that now sweeps
/// it if a new one was made.
pub struct SweptEntry<R> {
    /// The swap.
    pub id: SwapId,
    /// Its record's version.
    pub version: i64,
    /// Its record.
    pub rec: R,
    /// The new transaction sweeping its output (`None`: nothing new this pass).
    pub txid: Option<Txid>,
}

/// Sweeps every output due in a pass, the one way both batching engines share: a sweep whose
/// output something not ours spends in a mempool (its conflict must never hold back the others),
/// one `alone` picks, or a single one left, each by itself ([`sweep`]); the rest in one
/// transaction ([`sweep_batch`]). Every entry is tried; the first error is returned with the
/// entries.
pub async fn sweep_due<'a, R, E>(
    effects: &E,
    chain: &dyn ChainSource,
    entries: Vec<BatchEntry<'a, R>>,
    store: impl Fn(&mut R, Sweep) + Copy,
    alone: impl Fn(&BatchEntry<'a, R>) -> bool,
) -> (Vec<SweptEntry<R>>, Option<E::Error>)
where
    R: Record,
    E: Effects<R> + ?Sized,
    E::Error: From<SweepError>,
{
    let contested = |e: &BatchEntry<'a, R>| {
        e.job
            .seen
            .iter()
            .any(|t| !e.previous.as_ref().is_some_and(|p| p.contains(t)))
    };
    let (mut single, mut together): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| contested(e) || alone(e));
    if together.len() == 1 {
        single.append(&mut together);
    }
    let mut out = Vec::with_capacity(single.len() + together.len());
    let mut first = None;
    for e in single {
        let BatchEntry {
            id,
            mut version,
            mut rec,
            previous,
            job,
        } = e;
        let txid = match sweep(effects, chain, id, &mut version, &mut rec, previous, store, job).await {
            Ok(Swept::New { txid, .. }) => Some(txid),
            Ok(Swept::Unchanged) => None,
            Err(err) => {
                first.get_or_insert(err);
                None
            }
        };
        out.push(SweptEntry { id, version, rec, txid });
    }
    if !together.is_empty() {
        let members = match sweep_batch(effects, chain, &mut together, store).await {
            Ok(Some((members, txid))) => members.into_iter().map(|i| (i, txid)).collect(),
            Ok(None) => vec![],
            Err(err) => {
                first.get_or_insert(err);
                vec![]
            }
        };
        for (i, e) in together.into_iter().enumerate() {
            let txid = members.iter().find(|(m, _)| *m == i).map(|(_, t)| *t);
            out.push(SweptEntry {
                id: e.id,
                version: e.version,
                rec: e.rec,
                txid,
            });
        }
    }
    (out, first)
}
