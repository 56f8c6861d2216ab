//! The loop-in server's claims, batched (issue 17). Every pass ends with
//! `LoopInEngine::claim_batch`: the HTLC outputs of every paid loop-in (`Claiming`) are
//! claimed into the swap wallet by one transaction, a **round**, planned by
//! [`eddy_core::batch::plan_batch`] over each swap's claim so far (the rate the most urgent
//! member's schedule asks, a fee beating every version it replaces, each swap's share by the
//! weight it adds). A round is offered for one block: each client fetches the same transaction
//! with its input's index and every prevout (`GET /v1/swaps/{id}/claim`) and co-signs its
//! key-path input. The round is broadcast as soon as every key-path input is co-signed, or at
//! the next block with each input still unsigned moved to its script path in the **same**
//! transaction — a taproot signature commits to the transaction, not to the other inputs'
//! witnesses — so no client can stall the others, and no round is signed twice. A client that
//! let a round pass is planned on its script path from then on (until it asks again).
//!
//! Claims wait for company for the configured window
//! ([`crate::ServerConfig::claim_batch_window`]); a bump of a claim already out never waits, a
//! claim [`LOOP_IN_CLAIM_WINDOW_FORCE_BLOCKS`] from `E` ends the window for all, and one
//! [`LOOP_IN_CLAIM_NO_WAIT_BLOCKS`] from `E` waits for nothing: its round is built on the script
//! paths and broadcast in the pass. A claim something not ours spends in a mempool (its conflict
//! must never hold the others back) or of an HTLC no longer in a block goes alone, the
//! one-output way.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use bitcoin::secp256k1::schnorr;
use bitcoin::{Amount, FeeRate, OutPoint, Transaction, TxOut, Txid};
use eddy_backends::BroadcastError;
use eddy_core::batch::{plan_batch, BatchMember};
use eddy_core::constants::{
    LOOP_IN_CLAIM_NO_WAIT_BLOCKS, LOOP_IN_CLAIM_WINDOW_FORCE_BLOCKS, LOOP_IN_COOP_CLAIMS_PER_BLOCK,
};
use eddy_core::fees::MIN_RELAY_FEE_RATE;
use eddy_core::htlc::Htlc;
use eddy_core::musig::{PartialSigBytes, PubNonceBytes, Signer};
use eddy_core::sm::loop_in_server::State;
use eddy_core::sweep::Sweep;
use eddy_core::tx::{build_batch, input_weight, overhead_weight, SpendPath, UnsignedSpend};
use eddy_core::types::{Preimage, SwapId};
use eddy_engine::runner;
use eddy_engine::sweep::{input, inputs_of, live_history, rate_of, rebroadcast};
use eddy_store::SwapKind;
use serde_json::json;

use crate::loop_in::{LoopInEngine, ServerLoopIn, KEY_PURPOSE};
use crate::server_core::ServerError;

/// What a client is asked to co-sign: the server's nonce and input `index` of `tx` (its key
/// path), with every input's prevout and the message itself (Boltz's claim hands out only the
/// message).
#[derive(Clone, Debug)]
pub struct ClaimAsk {
    /// The server's MuSig2 public nonce (a fresh session for this ask).
    pub nonce: PubNonceBytes,
    /// The unsigned round.
    pub tx: Transaction,
    /// The client's input.
    pub index: usize,
    /// Every input's prevout, in input order.
    pub prevouts: Vec<TxOut>,
    /// The BIP341 key-path message of input `index`.
    pub sighash: [u8; 32],
}

/// The claim round offered now, as an operator (or a test) sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRoundView {
    /// The tip it was built at.
    pub tip: u32,
    /// Its txid (a taproot transaction's txid does not depend on its witnesses).
    pub txid: Txid,
    /// Its members in input order: the swap, whether its input is offered on the key path, and
    /// whether its client co-signed it.
    pub members: Vec<(SwapId, bool, bool)>,
}

/// The round offered in this block.
struct ClaimRound {
    /// The tip it was built at: past it, the inputs still unsigned take their script paths.
    tip: u32,
    /// The transaction, its inputs on the paths planned.
    spend: UnsignedSpend,
    /// Its members, in input order.
    members: Vec<RoundMember>,
    /// The rate it was planned at.
    rate: FeeRate,
}

impl ClaimRound {
    fn cooperative(&self, n: usize) -> bool {
        self.spend
            .inputs
            .get(n)
            .is_some_and(|i| i.path == SpendPath::Cooperative)
    }

    /// Every key-path input co-signed.
    fn complete(&self) -> bool {
        self.members
            .iter()
            .enumerate()
            .all(|(n, m)| !self.cooperative(n) || m.sig.is_some())
    }
}

struct RoundMember {
    id: SwapId,
    outpoint: OutPoint,
    share: Amount,
    preimage: Preimage,
    /// The server's session for the client's latest ask (one nonce per ask, used once).
    session: Option<Signer>,
    /// The aggregated key-path signature, once the client co-signed.
    sig: Option<schnorr::Signature>,
}

/// The loop-in engine's claim state, in memory only: a restart loses the round (its clients'
/// signatures are useless for any other transaction; the next pass builds a new one) and the
/// window's clocks (the claims found at the first pass wait no more).
#[derive(Default)]
pub(crate) struct Claims {
    round: Mutex<Option<ClaimRound>>,
    /// When each claim waiting for company was first seen.
    waiting: Mutex<HashMap<SwapId, Instant>>,
    first_pass_done: AtomicBool,
    /// Clients that let a round pass without co-signing: planned on the script path for the
    /// rest of the swap.
    defected: Mutex<HashSet<SwapId>>,
    /// Claims whose round the node refused for something other than its fee (an input it
    /// cannot spend yet, say): each is claimed alone from then on, so one such input never
    /// holds the others back.
    isolated: Mutex<HashSet<SwapId>>,
    /// Sessions opened per swap on the round offered: (its txid, count), bounded by
    /// [`LOOP_IN_COOP_CLAIMS_PER_BLOCK`].
    attempts: Mutex<HashMap<SwapId, (Txid, u32)>>,
    /// The tip of the round on which each swap's client last opened a session.
    sessions: Mutex<HashMap<SwapId, u32>>,
    /// Told when a round is co-signed by every client: the server runs a pass at once, which
    /// broadcasts it (an HTTP request never does: a client that disconnects could cut it short).
    ready: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn backend(e: impl std::fmt::Display) -> ServerError {
    ServerError::Backend(e.to_string())
}

/// A paid loop-in whose HTLC output is still to be claimed.
struct Claimable {
    id: SwapId,
    version: i64,
    rec: ServerLoopIn,
    outpoint: OutPoint,
    value: Amount,
    preimage: Preimage,
    /// Spends of its output seen now (a block or the node's mempool).
    seen: Vec<Txid>,
    blocks_left: u32,
    /// Goes the one-output way: contested by a spend not ours, or its HTLC not in a block.
    alone: bool,
}

impl LoopInEngine {
    /// Resolves when a round has been co-signed by every client.
    pub(crate) async fn claim_ready(&self) {
        self.claims.ready.notified().await;
    }

    /// The claim round offered now, if any.
    pub fn claim_round(&self) -> Option<ClaimRoundView> {
        let round = lock(&self.claims.round);
        let r = round.as_ref()?;
        Some(ClaimRoundView {
            tip: r.tip,
            txid: r.spend.tx.compute_txid(),
            members: r
                .members
                .iter()
                .enumerate()
                .map(|(n, m)| (m.id, r.cooperative(n), m.sig.is_some()))
                .collect(),
        })
    }

    /// The cooperative claim offered to the client of loop-in `id`: its input of this block's
    /// round and a fresh server nonce. Only once the server was paid the preimage (state
    /// `Claiming`), so co-signing costs the client nothing; the round's fee comes from the
    /// claim's own schedule, so a client that co-signs every block can only make the claim
    /// escalate, never hold it at the estimate (review #9). At most
    /// [`LOOP_IN_COOP_CLAIMS_PER_BLOCK`] sessions per swap and block.
    pub async fn claim_session(&self, id: &SwapId) -> Result<ClaimAsk, ServerError> {
        let (_, rec) = match self.swap(id).await {
            // A loop-out exists under this id: say what is wrong, not "unknown swap".
            Err(ServerError::NotFound(_)) if self.core.kind_of(id).await == Some(SwapKind::LoopOutServer) => {
                return Err(ServerError::Invalid(format!(
                    "swap {id} is a loop-out: only a loop-in's claim is co-signed here"
                )))
            }
            other => other?,
        };
        if !matches!(rec.state, State::Claiming { .. }) {
            return Err(ServerError::Invalid("no claim to co-sign now".into()));
        }
        let key = self.core.keys().secret(KEY_PURPOSE, id);
        let mut round = lock(&self.claims.round);
        let offered = round.as_ref().and_then(|r| {
            r.members
                .iter()
                .position(|m| m.id == *id)
                .map(|n| (n, r.cooperative(n)))
        });
        let Some((n, true)) = offered else {
            if lock(&self.claims.defected).contains(id) {
                return Err(ServerError::Invalid(
                    "this claim takes the script path: a round offered passed without its co-signature".into(),
                ));
            }
            return Err(ServerError::Invalid(
                "no claim to co-sign now; ask again after the next pass".into(),
            ));
        };
        let Some(r) = round.as_mut() else {
            return Err(ServerError::Invalid("no claim to co-sign now".into()));
        };
        if r.members[n].sig.is_some() {
            return Err(ServerError::Invalid("this round's claim is co-signed already".into()));
        }
        // Sessions opened on this round (not asks refused) count.
        {
            let txid = r.spend.tx.compute_txid();
            let mut attempts = lock(&self.claims.attempts);
            attempts.retain(|_, (t, _)| *t == txid);
            let entry = attempts.entry(*id).or_insert((txid, 0));
            if entry.1 >= LOOP_IN_COOP_CLAIMS_PER_BLOCK {
                return Err(ServerError::Invalid(
                    "too many cooperative claim requests on this round; ask again for the next".into(),
                ));
            }
            entry.1 += 1;
            lock(&self.claims.sessions).insert(*id, r.tip);
        }
        let Htlc::Taproot(taproot) = &r.spend.inputs[n].htlc else {
            return Err(ServerError::Invalid("not a taproot HTLC".into()));
        };
        let sighash = r.spend.sighash(n).map_err(backend)?;
        let signer = Signer::new(taproot, &key, sighash, &id.0).map_err(backend)?;
        let nonce = signer.public_nonce();
        r.members[n].session = Some(signer);
        Ok(ClaimAsk {
            nonce,
            tx: r.spend.tx.clone(),
            index: n,
            prevouts: r.spend.prevouts.clone(),
            sighash,
        })
    }

    /// Completes the client's input of the round with its nonce and partial signature (checked
    /// by the aggregation: a bad one is refused, and the session is spent either way). The
    /// last co-signature of a round has the server run a pass at once, which broadcasts it
    /// (every member's record persisted first); otherwise it goes out when the others co-signed
    /// or at the next block. Returns the round's txid.
    pub async fn claim_cosigned(
        &self,
        id: &SwapId,
        client_nonce: &PubNonceBytes,
        client_partial: &PartialSigBytes,
    ) -> Result<Txid, ServerError> {
        let (txid, complete) = {
            let mut round = lock(&self.claims.round);
            let first = || ServerError::Invalid("ask for the claim first".into());
            let r = round.as_mut().ok_or_else(first)?;
            let n = r.members.iter().position(|m| m.id == *id).ok_or_else(first)?;
            let mut signer = r.members[n].session.take().ok_or_else(first)?;
            let ours = signer
                .sign(client_nonce)
                .map_err(|e| ServerError::Invalid(e.to_string()))?;
            let sig = signer
                .aggregate(client_nonce, &ours, client_partial)
                .map_err(|e| ServerError::Invalid(e.to_string()))?;
            r.members[n].sig = Some(sig);
            (r.spend.tx.compute_txid(), r.complete())
        };
        if complete {
            self.claims.ready.notify_one();
        }
        Ok(txid)
    }

    /// The claims of the pass at `tip` (run after every swap's step): each contested or
    /// unconfirmed HTLC alone; the round of the last block finished (co-signed inputs on the
    /// key path, the rest on their script paths) and broadcast, or kept while its block lasts
    /// and a client has yet to sign; a new round once the window allows. The first error is
    /// returned after everything was tried.
    pub(crate) async fn claim_batch(&self, tip: u32) -> Result<(), ServerError> {
        let mut first = None;
        let claimable = self.claimable(tip).await?;
        // What is kept of swaps no longer claiming goes with them.
        for set in [&self.claims.defected, &self.claims.isolated] {
            lock(set).retain(|id| claimable.iter().any(|c| c.id == *id));
        }
        lock(&self.claims.sessions).retain(|id, _| claimable.iter().any(|c| c.id == *id));
        let (alone, together): (Vec<_>, Vec<_>) = claimable.into_iter().partition(|c| c.alone);
        for c in alone {
            let Claimable {
                id,
                mut version,
                mut rec,
                outpoint,
                ..
            } = c;
            if let Err(e) = self.claim_in(id, &mut version, &mut rec, outpoint, tip).await {
                first.get_or_insert(e);
            }
        }
        let forced = together.iter().any(|c| c.blocks_left <= LOOP_IN_CLAIM_NO_WAIT_BLOCKS);
        let due = !together.is_empty() && self.window_over(&together, forced);
        // What becomes of the round offered (decided under its lock, nothing awaited there).
        enum Pending {
            None,
            Finish(ClaimRound),
            Due,
            Rebuild(Txid),
        }
        let pending = {
            let mut round = lock(&self.claims.round);
            let decision = match round.as_ref() {
                None => Pending::None,
                Some(r) => {
                    let same = r
                        .members
                        .iter()
                        .all(|m| together.iter().any(|c| c.id == m.id && c.outpoint == m.outpoint));
                    let newcomers = together.iter().any(|c| !r.members.iter().any(|m| m.id == c.id));
                    if !same {
                        // A member claimed, refunded, contested or gone meanwhile: the round is
                        // void (its signatures fit no other transaction); a new one follows.
                        tracing::info!(tip, "claim round void: a member changed");
                        Pending::None
                    } else if r.tip < tip || r.complete() || forced {
                        Pending::Due
                    } else if newcomers && due {
                        // Swaps paid since it was built: a new round with them (the clients
                        // sign again within the block), unless it would take the same members.
                        Pending::Rebuild(r.spend.tx.compute_txid())
                    } else {
                        return first.map_or(Ok(()), Err);
                    }
                }
            };
            match decision {
                Pending::None => {
                    *round = None;
                    Pending::None
                }
                Pending::Due => round.take().map_or(Pending::None, Pending::Finish),
                other => other,
            }
        };
        if let Pending::Finish(round) = pending {
            // Finished: the members' records changed; the next pass plans against them.
            match self.finish_round(round, tip).await {
                Ok(true) => {}
                // Its fallbacks would get it refused: a round on the script paths now instead.
                Ok(false) => match self.build_round(&together, tip, true).await {
                    Ok((Some(forced), _)) => {
                        if let Err(e) = self.finish_round(forced, tip).await {
                            first.get_or_insert(e);
                        }
                    }
                    Ok((None, _)) => {}
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                },
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
            return first.map_or(Ok(()), Err);
        }
        if due {
            let built = self.build_round(&together, tip, forced).await;
            if let Ok((_, left_out)) = &built {
                for c in together.iter().filter(|c| left_out.contains(&c.id)) {
                    let (mut version, mut rec) = (c.version, c.rec.clone());
                    if let Err(e) = self.claim_in(c.id, &mut version, &mut rec, c.outpoint, tip).await {
                        first.get_or_insert(e);
                    }
                }
            }
            match built.map(|(round, _)| round) {
                Ok(Some(new)) => {
                    let ids = |r: &ClaimRound| r.members.iter().map(|m| m.id).collect::<Vec<_>>();
                    let cooperative = (0..new.members.len()).any(|n| new.cooperative(n));
                    let finish_now = {
                        let mut round = lock(&self.claims.round);
                        // The round offered stays if the new one takes the same members, or if its
                        // clients co-signed it all meanwhile (the next pass sends it).
                        let keep_old = matches!(
                            (&pending, round.as_ref()),
                            (Pending::Rebuild(old), Some(r)) if r.spend.tx.compute_txid() == *old && (ids(r) == ids(&new) || r.complete())
                        );
                        if keep_old {
                            None
                        } else if cooperative {
                            *round = Some(new);
                            None
                        } else {
                            *round = None;
                            Some(new)
                        }
                    };
                    if let Some(new) = finish_now {
                        // On the script paths only: nothing falls back, it is always sent.
                        if let Err(e) = self.finish_round(new, tip).await {
                            first.get_or_insert(e);
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Whether the claims waiting may go now: no window, a deadline near, a claim already out
    /// (its bump never waits), or one has waited the window.
    fn window_over(&self, together: &[Claimable], forced: bool) -> bool {
        let window = self.core.config().claim_batch_window;
        let now = Instant::now();
        let first_pass = !self.claims.first_pass_done.swap(true, Ordering::SeqCst);
        let mut waiting = lock(&self.claims.waiting);
        waiting.retain(|id, _| together.iter().any(|c| c.id == *id));
        for c in together {
            // After a restart the wait so far is unknown: the claims found go at once.
            let since = if first_pass {
                now.checked_sub(window).unwrap_or(now)
            } else {
                now
            };
            waiting.entry(c.id).or_insert(since);
        }
        window.is_zero()
            || forced
            || together
                .iter()
                .any(|c| c.blocks_left <= LOOP_IN_CLAIM_WINDOW_FORCE_BLOCKS)
            || together
                .iter()
                .any(|c| c.rec.claim.as_ref().is_some_and(|s| !s.all.is_empty()))
            || waiting.values().any(|t| now.duration_since(*t) >= window)
    }

    /// Every paid loop-in whose HTLC output is not spent in a block.
    async fn claimable(&self, tip: u32) -> Result<Vec<Claimable>, ServerError> {
        let mut out = vec![];
        for (id, version, rec) in Self::active(&**self.core.store()).await? {
            let State::Claiming { outpoint, preimage, .. } = rec.state else {
                continue;
            };
            let status = self.core.htlc_status(&id, &rec.htlc).await?;
            let spends: Vec<_> = status.spends.iter().filter(|s| s.outpoint == outpoint).collect();
            if spends.iter().any(|s| s.height.is_some()) {
                continue;
            }
            let Some(funding) = status.fundings.iter().find(|f| f.outpoint == outpoint) else {
                continue;
            };
            let seen: Vec<Txid> = spends.iter().map(|s| s.txid).collect();
            let ours = |t: &Txid| rec.claim.as_ref().is_some_and(|c| c.contains(t));
            let alone =
                seen.iter().any(|t| !ours(t)) || funding.height.is_none() || lock(&self.claims.isolated).contains(&id);
            out.push(Claimable {
                id,
                version,
                blocks_left: rec.terms.expiry.saturating_sub(tip),
                value: funding.value,
                rec,
                outpoint,
                preimage,
                seen,
                alone,
            });
        }
        Ok(out)
    }

    /// A new round over `together` (the most urgent first), or `None` when nothing new is
    /// to be built (the newest versions are broadcast again as they are); with the claims the
    /// plan left out that have no version out (their budget cannot carry the batch's rate):
    /// each is claimed alone, at its own. `forced`: every input on its script path.
    async fn build_round(
        &self,
        together: &[Claimable],
        tip: u32,
        forced: bool,
    ) -> Result<(Option<ClaimRound>, Vec<SwapId>), ServerError> {
        let mut order: Vec<&Claimable> = together.iter().collect();
        order.sort_by_key(|c| (c.blocks_left, c.id.0));
        let htlcs = order
            .iter()
            .map(|c| Htlc::new(c.rec.htlc).map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        let dest = self.core.wallet_script();
        let mut jobs = Vec::with_capacity(order.len());
        for (c, htlc) in order.iter().zip(&htlcs) {
            let mut job = self
                .claim_job(&c.id, &c.rec, htlc, c.outpoint, c.value, c.preimage, dest.clone(), tip)
                .await?;
            job.seen = c.seen.clone();
            jobs.push(job);
        }
        let defected = lock(&self.claims.defected).clone();
        let paths: Vec<SpendPath> = order
            .iter()
            .zip(&htlcs)
            .map(|(c, htlc)| match htlc {
                Htlc::Taproot(_) if !forced && !defected.contains(&c.id) => SpendPath::Cooperative,
                _ => SpendPath::Claim(c.preimage),
            })
            .collect();
        // Each member against its history up to the newest version still to be had.
        let chain = &**self.core.chain();
        let seen_any: Vec<Txid> = order.iter().flat_map(|c| c.seen.iter().copied()).collect();
        let mut known = vec![];
        let mut planned: Vec<Option<Sweep>> = Vec::with_capacity(order.len());
        for c in &order {
            planned.push(match &c.rec.claim {
                Some(p) => {
                    // Every version gone still leaves the rate the next must outbid.
                    Some(live_history(chain, p, &seen_any, tip, false, &mut known).await)
                        .filter(|p| !p.all.is_empty() || p.fee_rate_kwu > 0)
                }
                None => None,
            });
        }
        let mut alone = Vec::with_capacity(jobs.len());
        for (job, htlc) in jobs.iter().zip(&htlcs) {
            alone.push(inputs_of(job, matches!(htlc, Htlc::Taproot(_))).map_err(backend)?);
        }
        let mut members = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            members.push(BatchMember {
                previous: planned[i].as_ref(),
                alone: alone[i],
                input_weight: input_weight(&input(job, paths[i])).ok_or_else(|| backend("path unavailable"))?,
            });
        }
        let overhead = overhead_weight(std::slice::from_ref(&dest));
        let mut plan = plan_batch(&members, overhead, false);
        let unswept = |plan: &eddy_core::batch::BatchPlan| -> Vec<SwapId> {
            (0..order.len())
                .filter(|&i| planned[i].as_ref().is_none_or(|p| p.all.is_empty()))
                .filter(|&i| !plan.shares.iter().any(|&(m, _)| m == i))
                .map(|i| order[i].id)
                .collect()
        };
        if plan.shares.is_empty() {
            // Broadcast the newest again; one the node no longer has is replaced (once a block).
            let gone = rebroadcast(chain, &plan.rebroadcast, &seen_any).await;
            if !(gone && plan.rebuild_if_gone) {
                return Ok((None, unswept(&plan)));
            }
            plan = plan_batch(&members, overhead, true);
            if plan.shares.is_empty() {
                return Ok((None, unswept(&plan)));
            }
        }
        let left_out = unswept(&plan);
        let chosen: Vec<(usize, Amount)> = plan.shares.clone();
        let mut keep = Amount::ZERO;
        for &(i, share) in &chosen {
            keep += jobs[i]
                .value
                .checked_sub(share)
                .ok_or_else(|| backend("share above value"))?;
        }
        let inputs = chosen.iter().map(|&(i, _)| input(&jobs[i], paths[i])).collect();
        let spend = build_batch(
            inputs,
            vec![TxOut {
                value: keep,
                script_pubkey: dest,
            }],
        )
        .map_err(backend)?;
        if spend.fee != plan.fee {
            return Err(backend(format!(
                "claim round pays {} not the planned {}",
                spend.fee, plan.fee
            )));
        }
        let members = chosen
            .iter()
            .map(|&(i, share)| RoundMember {
                id: order[i].id,
                outpoint: order[i].outpoint,
                share,
                preimage: order[i].preimage,
                session: None,
                sig: None,
            })
            .collect();
        Ok((
            Some(ClaimRound {
                tip,
                spend,
                members,
                rate: plan.rate,
            }),
            left_out,
        ))
    }

    /// Signs what the clients did not (each such input moved to its script path; its client,
    /// if it opened no session in the round's block, planned on the script path from then on),
    /// records the round in every member's claim with its share, persists every member, then
    /// broadcasts. Returns `false`, with nothing recorded or sent, when an input moved to its
    /// script path would leave the round unacceptable — heavier than planned for the same fee,
    /// it may no longer outbid what it replaces (BIP125) or the relay minimum — so that the
    /// caller builds a round on the script paths instead, in the same pass.
    async fn finish_round(&self, round: ClaimRound, tip: u32) -> Result<bool, ServerError> {
        let ClaimRound {
            spend: mut tx,
            members,
            rate,
            tip: built,
        } = round;
        let mut fell_back = false;
        for (n, m) in members.iter().enumerate() {
            if tx.inputs[n].path == SpendPath::Cooperative {
                match m.sig {
                    Some(sig) => {
                        tx.set_cooperative_signature(n, sig).map_err(backend)?;
                        continue;
                    }
                    None => {
                        // Only a client that opened no session while the round's block lasted
                        // is taken for one that stalls (a round finished early for a claim near
                        // `E`, or rebuilt just before the block, blames nobody who asked).
                        let asked = lock(&self.claims.sessions).get(&m.id) == Some(&built);
                        if built < tip && !asked {
                            tracing::info!(swap = %m.id, "the client did not co-sign its claim in time: script path");
                            lock(&self.claims.defected).insert(m.id);
                        }
                        tx.set_path(n, SpendPath::Claim(m.preimage)).map_err(backend)?;
                        fell_back = true;
                    }
                }
            }
            tx.sign(n, &self.core.keys().secret(KEY_PURPOSE, &m.id))
                .map_err(backend)?;
        }
        if fell_back && self.replaces_or_under_relay(&members, &tx).await? {
            return Ok(false);
        }
        let cooperative: Vec<bool> = tx.inputs.iter().map(|i| i.path == SpendPath::Cooperative).collect();
        let signed = tx.finalize().map_err(backend)?;
        let txid = signed.tx.compute_txid();
        let rate = rate.max(rate_of(&signed));
        let batch = members.len() > 1;
        for (n, m) in members.iter().enumerate() {
            let (mut version, mut rec) = self.swap(&m.id).await?;
            if !matches!(rec.state, State::Claiming { outpoint, .. } if outpoint == m.outpoint) {
                return Err(ServerError::Backend(format!("swap {} left its claim meanwhile", m.id)));
            }
            let claim = rec.claim.get_or_insert_with(|| Sweep::of(m.outpoint));
            claim.record_share(txid, signed.fee, batch.then_some(m.share), rate, tip);
            let event = json!({
                "event": "claim_built",
                "txid": txid.to_string(),
                "outpoint": m.outpoint.to_string(),
                "fee_sat": signed.fee.to_sat(),
                "share_sat": m.share.to_sat(),
                "batch_inputs": members.len(),
                "cooperative": cooperative[n],
            });
            runner::persist(self, &m.id, &mut version, &rec, event).await?;
        }
        match self.core.chain().broadcast(&signed.tx).await {
            Ok(_) => {}
            // Spent meanwhile (an earlier version of ours): the watcher tells.
            Err(e) if e.is_missing_inputs() => {}
            // The node could not be asked: the next pass broadcasts the newest again.
            Err(BroadcastError::Source(e)) => {
                tracing::info!(%txid, error = %e, "claim round not broadcast: node unreachable");
            }
            // Refused for its fee: the version still in the mempool stands, and the next round
            // outbids this one's rate.
            Err(e) if e.is_fee_refusal() => {
                tracing::info!(%txid, error = %e, "claim round refused for its fee");
            }
            // Refused for anything else (an input the node cannot spend yet): the claims no
            // version of which the node ever took go alone from now on, so no one input holds
            // the others back (one the node holds a version of has an input it can spend).
            Err(e) => {
                tracing::warn!(%txid, error = %e, "claim round refused; its untried claims go alone");
                let chain = &**self.core.chain();
                for m in &members {
                    let (_, rec) = self.swap(&m.id).await?;
                    let mut live = false;
                    for t in rec.claim.iter().flat_map(|c| c.all.iter()).filter(|t| **t != txid) {
                        if matches!(chain.transaction(t).await, Ok(Some(_))) {
                            live = true;
                            break;
                        }
                    }
                    if !live {
                        lock(&self.claims.isolated).insert(m.id);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Whether `tx` (a round some of whose inputs moved to their script paths) may be refused
    /// for its fee: it pays under the relay minimum, or it replaces a version of a member's
    /// claim the node holds unconfirmed (its planned fee outbid that version at the planned,
    /// lighter weight only).
    async fn replaces_or_under_relay(&self, members: &[RoundMember], tx: &UnsignedSpend) -> Result<bool, ServerError> {
        let wu = tx.predicted_weight.to_wu().max(1);
        if tx.fee.to_sat() * 1000 < MIN_RELAY_FEE_RATE.to_sat_per_kwu() * wu {
            return Ok(true);
        }
        let chain = &**self.core.chain();
        for m in members {
            let (_, rec) = self.swap(&m.id).await?;
            for t in rec.claim.iter().flat_map(|c| c.all.iter()) {
                if matches!(chain.transaction(t).await, Ok(Some(s)) if s.block.is_none()) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}
