//! The loop-out client engine. A swap is one [`ClientLoopOut`] record: the preimage (the only
//! secret that matters — revealed only against a confirmed, sufficient HTLC with enough blocks
//! left), the validated offer, the HTLC rebuilt from the client's own data, and the state.
//! [`LoopOutClient::tick`] feeds the state machine what the chain and the Lightning node show,
//! persists each transition, then acts (pay, reveal and claim, bump).

use std::sync::Arc;

use bitcoin::{Amount, OutPoint, ScriptBuf, Txid};
use eddy_backends::{ChainSource, LightningNode, PayParams, PaymentStatus, WatchStatus};
use eddy_core::constants::{loop_out_max_payment_cltv, loop_out_max_payment_cltv_delta, MAX_HTLC_CONFS};
use eddy_core::fees::{claim_decision, sweep_conf_target};
use eddy_core::htlc::{Htlc, HtlcKind, HtlcParams};
use eddy_core::sm::loop_out_client::{
    htlc_output, pays_at, Action, Event, FailReason, LoopOutClientMachine, State, Terms,
};
use eddy_core::sweep::Sweep;
use eddy_core::tx::{build_spend, FeeSpec, HtlcInput, SpendPath};
use eddy_core::types::{PaymentHash, Preimage, SwapId};
use eddy_core::validate::{validate_loop_out_offer, LoopOutCreate, LoopOutLimits, LoopOutOffer, LoopOutRequest};
use eddy_engine::runner::{self, Effects as _};
use eddy_engine::sweep::{sweep, SweepJob, Swept};
use eddy_store::{SeedKeys, SwapKind, SwapStore};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{backend, ClientConfig, ClientError, LoopOutApi};

/// Key purpose of the loop-out claim keys (they also sign this swap's calls to the server).
pub const KEY_PURPOSE: eddy_store::KeyPurpose = eddy_store::KeyPurpose::ClientLoopOutClaim;

/// How often [`LoopOutClient::run`] asks the chain for a new tip.
pub const TIP_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// How often [`LoopOutClient::run`] ticks when nothing happens.
pub const IDLE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Per-swap limits and settings (the CLI's `--max-*`, `--conf-target`, `--htlc-confs`,
/// `--channel`); anything not given comes from [`ClientConfig`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapOptions {
    /// Most the server's fee may be, prepay included (sat).
    pub max_swap_fee: Option<u64>,
    /// Most the prepay may be (sat).
    pub max_prepay: Option<u64>,
    /// Most the claim may pay in miner fees (sat).
    pub max_miner_fee: Option<u64>,
    /// Most both payments may pay in routing fees (sat).
    pub max_routing_fee: Option<u64>,
    /// Confirmation target of the claim.
    pub conf_target: Option<u16>,
    /// HTLC confirmations before revealing the preimage.
    pub htlc_confs: Option<u32>,
    /// Pay through this first-hop channel (short channel id).
    pub channel: Option<u64>,
    /// The destination is a fresh address of the node's own wallet (no address was asked
    /// for): a batched claim pays every such swap into one output (at one of their addresses)
    /// instead of one output each.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wallet_destination: bool,
    /// Ask the server to publish the HTLC at once, not waiting for its publication window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fast: bool,
}

/// The settings one swap runs with: its options over the engine's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effective {
    /// Offer limits.
    pub limits: LoopOutLimits,
    /// Claim miner fee cap.
    pub max_miner_fee: Amount,
    /// Routing fee cap.
    pub max_routing_fee: Amount,
    /// Claim confirmation target.
    pub conf_target: u16,
    /// HTLC confirmations before the reveal.
    pub htlc_confs: u32,
    /// First-hop channel.
    pub channel: Option<u64>,
}

impl ClientConfig {
    /// `opts` over these defaults.
    pub fn effective(&self, opts: &SwapOptions) -> Effective {
        let mut limits = self.limits;
        if let Some(f) = opts.max_swap_fee {
            limits.max_swap_fee = Amount::from_sat(f);
        }
        if let Some(p) = opts.max_prepay {
            limits.max_prepay = Amount::from_sat(p);
        }
        Effective {
            limits,
            max_miner_fee: opts.max_miner_fee.map_or(self.max_miner_fee, Amount::from_sat),
            max_routing_fee: opts.max_routing_fee.map_or(self.max_routing_fee, Amount::from_sat),
            conf_target: opts.conf_target.unwrap_or(self.conf_target).max(1),
            // Never more than MAX_HTLC_CONFS: more would eat the claim window.
            htlc_confs: opts.htlc_confs.unwrap_or(self.htlc_confs).clamp(1, MAX_HTLC_CONFS),
            channel: opts.channel,
        }
    }
}

/// One client loop-out as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientLoopOut {
    /// The preimage (secret until the claim).
    pub preimage: Preimage,
    /// The validated offer.
    pub offer: LoopOutOffer,
    /// The HTLC, rebuilt from our data.
    pub htlc: HtlcParams,
    /// The state machine's terms.
    pub terms: Terms,
    /// Where the claim pays.
    pub destination: ScriptBuf,
    /// The swap's own limits (absent in records written before they existed).
    #[serde(default)]
    pub options: SwapOptions,
    /// The claim (every version broadcast).
    pub claim: Option<Sweep>,
    /// The state machine's state.
    pub state: State,
}

impl ClientLoopOut {
    /// The claim that confirmed and this swap's fee for it (its share where the claim was a
    /// batch), once the swap succeeded. Any of the broadcast claims may be the one: a bump can
    /// lose to its predecessor.
    pub fn confirmed_claim(&self) -> Option<(Txid, Amount)> {
        let State::Succeeded { claim_txid } = &self.state else {
            return None;
        };
        let fee = self.claim.as_ref().and_then(|c| c.share_of(claim_txid))?;
        Some((*claim_txid, fee))
    }
}

/// The client engine.
pub struct LoopOutClient {
    parts: crate::ClientParts,
    server: Arc<dyn LoopOutApi>,
    /// Swaps whose claim waits for the end of this pass, to be swept in one batch.
    batch: eddy_engine::sweep::DueQueue,
}

impl LoopOutClient {
    /// Starts the engine; the watcher rescans from the oldest active swap.
    pub async fn new(
        cfg: ClientConfig,
        ln: Arc<dyn LightningNode>,
        chain: Arc<dyn ChainSource>,
        store: Arc<dyn SwapStore>,
        server: Arc<dyn LoopOutApi>,
        keys: SeedKeys,
    ) -> Result<LoopOutClient, ClientError> {
        let delta = eddy_core::constants::MAX_LOOP_OUT_EXPIRY_DELTA;
        let parts = crate::ClientParts::start(cfg, ln, chain, store, keys, delta, |r: &ClientLoopOut| {
            (r.offer.expiry, r.htlc)
        })
        .await?;
        Ok(LoopOutClient {
            parts,
            server,
            batch: eddy_engine::sweep::DueQueue::default(),
        })
    }

    /// A stored loop-out of this client (a swap of another kind is not found).
    pub async fn swap(&self, id: &SwapId) -> Result<(i64, ClientLoopOut), ClientError> {
        self.parts.load(id).await
    }

    /// Starts a loop-out of `amount` paying the claim to `destination`: asks the server,
    /// validates every field of the offer (nothing is paid if any check fails), persists, pays.
    pub async fn loop_out(&self, amount: Amount, destination: ScriptBuf) -> Result<SwapId, ClientError> {
        self.loop_out_with(amount, destination, SwapOptions::default()).await
    }

    /// [`Self::loop_out`] with per-swap limits.
    pub async fn loop_out_with(
        &self,
        amount: Amount,
        destination: ScriptBuf,
        options: SwapOptions,
    ) -> Result<SwapId, ClientError> {
        let eff = self.parts.cfg.effective(&options);
        if let Some(n) = options.htlc_confs.filter(|n| *n > MAX_HTLC_CONFS) {
            return Err(ClientError::OfferRefused(format!(
                "{n} HTLC confirmations asked, at most {MAX_HTLC_CONFS} leave time to claim"
            )));
        }
        // Before bothering the server: can our channels send at least the amount?
        self.check_capacity(amount, eff.channel).await?;
        let preimage = Preimage::random();
        let hash = preimage.payment_hash();
        let id = SwapId::from(hash);
        // Held until the payments are handed to the node: no pass reads their status (a
        // failed attempt between the node's send retries) before our own send is done.
        let _guard = self.parts.locks.lock(&id).await;
        let claim_key = self.parts.keys.public(KEY_PURPOSE, &id);
        let offer = crate::bounded(self.server.loop_out(&LoopOutCreate {
            amount,
            payment_hash: hash,
            claim_key,
            fast: options.fast,
        }))
        .await
        .map_err(ClientError::Server)?;
        let tip = self.parts.chain.tip().await.map_err(backend)?.height;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let req = LoopOutRequest {
            amount,
            payment_hash: hash,
            claim_key,
            kind: HtlcKind::P2trOut,
            network: self.parts.cfg.network,
            limits: eff.limits,
        };
        let validated =
            validate_loop_out_offer(&req, &offer, tip, now).map_err(|e| ClientError::OfferRefused(e.to_string()))?;
        let htlc = *validated.htlc.params();
        let to_pay = std::iter::once(&validated.swap_invoice)
            .chain(validated.prepay_invoice.as_ref())
            .map(|f| f.amount_msat.map_or(0, |m| m.0))
            .sum::<u64>()
            / 1000;
        self.check_capacity(Amount::from_sat(to_pay) + eff.max_routing_fee, eff.channel)
            .await?;
        let terms = Terms {
            amount,
            expiry: offer.expiry,
            htlc_confs: eff.htlc_confs,
            // Our payments' HTLCs cannot outlive this: every payment is sent with the route
            // CLTV bounded by it.
            payment_timeout: loop_out_max_payment_cltv(offer.expiry),
        };
        let mut rec = ClientLoopOut {
            preimage,
            offer,
            htlc,
            terms,
            destination,
            options,
            claim: None,
            state: State::Created,
        };
        let mut version = runner::create(
            &*self.parts.store,
            id,
            &rec,
            json!({"event": "created", "amount_sat": amount.to_sat(), "expiry": rec.offer.expiry}),
        )
        .await?;
        tracing::info!(swap = %id, amount_sat = amount.to_sat(), expiry = rec.offer.expiry, "loop-out offer validated");
        self.parts.watch(id, validated.htlc.script_pubkey()).await;
        match runner::apply(self, id, &mut version, &mut rec, Event::OfferValidated, &tip).await {
            Ok(()) => {}
            // The swap is stored and the payment is retried by every tick (the node may still
            // be reconnecting its channels): the swap exists, so report it.
            Err(ClientError::Backend(e)) => {
                tracing::warn!(swap = %id, error = %e, "paying failed; the next pass retries or, if the node failed the payment, fails the swap");
            }
            Err(e) => return Err(e),
        }
        Ok(id)
    }

    /// Fails with [`ClientError::NoCapacity`] unless the usable channels (or `channel`) can
    /// send `amount` now.
    /// Whether the usable channels (`channel` only, when given) can send `amount` now; the
    /// refusal says what to do. [`LoopOutClient::loop_out_with`] checks it too.
    pub async fn check_capacity(&self, amount: Amount, channel: Option<u64>) -> Result<(), ClientError> {
        let channels = self.parts.ln.channels().await.map_err(backend)?;
        let usable: Vec<_> = channels
            .iter()
            .filter(|c| c.usable && channel.is_none_or(|id| c.short_channel_id == Some(id)))
            .collect();
        if let Some(id) = channel {
            if usable.is_empty() {
                return Err(ClientError::NoCapacity(format!(
                    "channel {id} is unknown or not usable now"
                )));
            }
        }
        let can = usable.iter().map(|c| c.local_msat).sum::<u64>() / 1000;
        if can < amount.to_sat() {
            let next = if usable.is_empty() && channels.is_empty() {
                "no channel: open one with `eddy node open PUBKEY@HOST:PORT AMOUNT`"
            } else if usable.is_empty() {
                "no channel is usable now (peer offline or funding unconfirmed): see `eddy node channels`"
            } else {
                "a smaller swap, or more outbound capacity (`eddy node open …`)"
            };
            return Err(ClientError::NoCapacity(format!(
                "{} sat needed, usable channels can send {can} sat now; {next}",
                amount.to_sat()
            )));
        }
        Ok(())
    }

    /// A swap's recorded events, oldest first.
    pub async fn events(&self, id: &SwapId) -> Result<Vec<eddy_store::EventRecord>, ClientError> {
        Ok(self.parts.store.events(id).await?)
    }

    /// Every loop-out this client made, newest first.
    pub async fn list(&self) -> Result<Vec<(eddy_store::SwapRecord, ClientLoopOut)>, ClientError> {
        Ok(runner::all(&*self.parts.store).await?)
    }

    /// Drives the engine until `shutdown` turns true: a full [`Self::tick`] on every new tip,
    /// on every Lightning event (a payment settling or failing) and after [`IDLE_TICK`] of
    /// quiet. Errors are logged and retried on the next pass.
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let (ln, chain) = (self.parts.ln.clone(), self.parts.chain.clone());
        crate::drive(ln, chain, shutdown, move || {
            let me = self.clone();
            async move { me.tick().await.map_err(|e| e.to_string()) }
        })
        .await
    }

    /// One pass over every active swap: the steps run concurrently, each under its swap's lock
    /// on the record as stored then (a slow answer from the server holds up only its own swap).
    pub async fn tick(&self) -> Result<(), ClientError> {
        crate::pass(self).await
    }

    /// Whether swap `id`'s lock is held now (a call or a step is acting on it).
    pub fn is_busy(&self, id: &SwapId) -> bool {
        self.parts.locks.is_locked(id)
    }

    fn claim_input(rec: &ClientLoopOut, outpoint: OutPoint, value: Amount) -> Result<HtlcInput, ClientError> {
        Ok(HtlcInput {
            outpoint,
            value,
            htlc: Htlc::new(rec.htlc).map_err(backend)?,
            path: SpendPath::Claim(rec.preimage),
        })
    }

    async fn step(&self, id: SwapId, mut version: i64, mut rec: ClientLoopOut, tip: u32) -> Result<(), ClientError> {
        // Payments.
        if matches!(
            rec.state,
            State::OfferAccepted | State::Paying | State::HtlcConfirming { .. }
        ) {
            let prepay_hash = self.prepay_hash(&rec);
            let mut failed = false;
            for h in std::iter::once(rec.htlc.payment_hash).chain(prepay_hash) {
                if let Ok(PaymentStatus::Failed { .. }) = self.parts.ln.payment_status(&h).await {
                    failed = true;
                }
            }
            if failed {
                runner::apply(self, id, &mut version, &mut rec, Event::PaymentFailed, &tip).await?;
            }
        }
        // A crash between persisting OfferAccepted and paying: pay (idempotent per hash) — once
        // a channel is usable again. Right after a restart the peers are still reconnecting; a
        // payment started then fails at once and would fail the swap. The server's publication
        // deadline bounds the wait (it cancels the invoices; the swap then fails, nothing paid).
        let mut pay_error = None;
        if rec.state == State::OfferAccepted && !pays_at(&rec.terms, tip) {
            // Too late to pay: unless a send of ours is already out (a crash after sending,
            // before recording it), the swap fails without paying.
            let prepay_hash = self.prepay_hash(&rec);
            let mut sent = false;
            for h in std::iter::once(rec.htlc.payment_hash).chain(prepay_hash) {
                match self.parts.ln.payment_status(&h).await.map_err(backend)? {
                    PaymentStatus::InFlight | PaymentStatus::Succeeded { .. } => sent = true,
                    _ => {}
                }
            }
            let e = if sent {
                Event::PaymentsSent
            } else {
                Event::NotPaid { height: tip }
            };
            runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
        }
        if rec.state == State::OfferAccepted {
            let channel = self.parts.cfg.effective(&rec.options).channel;
            let ready = self
                .parts
                .ln
                .channels()
                .await
                .map_err(backend)?
                .iter()
                .any(|c| c.usable && channel.is_none_or(|id| c.short_channel_id == Some(id)));
            if ready {
                // A failed send does not skip the block check below (the give-up height).
                if let Err(e) = self.act(id, &mut version, &mut rec, Action::PayInvoices, &tip).await {
                    tracing::warn!(swap = %id, error = %e, "paying");
                    pay_error = Some(e);
                }
            } else {
                tracing::debug!(swap = %id, "waiting for a usable channel to pay");
            }
        }
        let status = crate::htlc_status(&*self.parts.watcher.lock().await, &id, &rec.htlc)?;
        // The HTLC.
        if matches!(
            rec.state,
            State::OfferAccepted | State::Paying | State::HtlcConfirming { .. }
        ) {
            let outputs = status
                .fundings
                .iter()
                .map(|f| (f.outpoint, f.value, WatchStatus::confirmations(f.height, tip)));
            if let Some((outpoint, value, confs)) = htlc_output(outputs, rec.terms.amount) {
                let input = Self::claim_input(&rec, outpoint, value)?;
                let probe = build_spend(vec![input], rec.destination.clone(), FeeSpec::Absolute(Amount::ZERO))
                    .map_err(backend)?;
                let blocks_left = rec.terms.expiry.saturating_sub(tip);
                let eff = self.parts.cfg.effective(&rec.options);
                let needed = self
                    .parts
                    .chain
                    .fee_rate(sweep_conf_target(blocks_left, eff.conf_target))
                    .await
                    .map_err(backend)?;
                let decision = claim_decision(
                    value,
                    probe.predicted_weight,
                    needed,
                    eff.max_miner_fee,
                    rec.destination.minimal_non_dust(),
                    blocks_left,
                )
                .map(|_| ());
                let e = Event::HtlcSeen {
                    outpoint,
                    value,
                    confs,
                    height: tip,
                    decision,
                };
                runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
            }
        }
        // The claim.
        if let State::Claiming { outpoint, .. } = rec.state {
            for s in status.spends.iter().filter(|s| s.outpoint == outpoint) {
                let ours = rec.claim.as_ref().is_some_and(|c| c.all.contains(&s.txid));
                let confs = WatchStatus::confirmations(s.height, tip);
                if ours {
                    let e = Event::ClaimConfirmed { txid: s.txid, confs };
                    runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
                } else if s.height.is_some() {
                    runner::apply(self, id, &mut version, &mut rec, Event::HtlcRefunded { confs }, &tip).await?;
                }
            }
            if !status.fundings.iter().any(|f| f.outpoint == outpoint) {
                let outputs = status
                    .fundings
                    .iter()
                    .map(|f| (f.outpoint, f.value, WatchStatus::confirmations(f.height, tip)));
                let replacement = htlc_output(outputs, rec.terms.amount).map(|(o, v, _)| (o, v));
                let e = Event::HtlcVanished {
                    height: tip,
                    replacement,
                };
                runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
            }
        }
        runner::apply(self, id, &mut version, &mut rec, Event::Block { height: tip }, &tip).await?;
        pay_error.map_or(Ok(()), Err)
    }

    async fn claim(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut ClientLoopOut,
        outpoint: OutPoint,
        tip: u32,
    ) -> Result<(), ClientError> {
        let State::Claiming { value, .. } = rec.state else {
            return Ok(());
        };
        // Once a claim of ours (or anything else) has spent the HTLC in a block there is
        // nothing to bump: the watcher reports the confirmations.
        let status = crate::htlc_status(&*self.parts.watcher.lock().await, &id, &rec.htlc)?;
        let spends: Vec<_> = status.spends.iter().filter(|s| s.outpoint == outpoint).collect();
        if spends.iter().any(|s| s.height.is_some()) {
            return Ok(());
        }
        // Reveal to the server first (so it can settle and co-sign), then claim by the key path
        // with its co-signature — smaller and indistinguishable from any taproot spend — and fall
        // back to the script path on any failure.
        if rec.claim.is_none() {
            let _ = crate::bounded(self.server.push_preimage(&rec.preimage)).await;
        }
        // A server that co-signs one input of a batch: the claim waits for the end of the pass
        // (`claim_batch`), where every claim due is swept in one transaction.
        if self.server.batches_claims() {
            self.batch.push(id);
            return Ok(());
        }
        let htlc = Htlc::new(rec.htlc).map_err(backend)?;
        let cosigner = crate::ServerCosigns::Claim(&*self.server, id, rec.preimage);
        let job = self
            .claim_job(id, rec, outpoint, value, &htlc, &cosigner, &spends, tip)
            .await?;
        match sweep(
            self,
            &*self.parts.chain,
            id,
            version,
            rec,
            rec.claim.clone(),
            |r: &mut ClientLoopOut, s| r.claim = Some(s),
            job,
        )
        .await?
        {
            Swept::New { txid, .. } => {
                runner::apply(self, id, version, rec, Event::ClaimBroadcast { txid }, &tip).await
            }
            Swept::Unchanged => Ok(()),
        }
    }

    /// What a swap's claim spends and within what.
    #[allow(clippy::too_many_arguments)]
    async fn claim_job<'a>(
        &self,
        id: SwapId,
        rec: &ClientLoopOut,
        outpoint: OutPoint,
        value: Amount,
        htlc: &'a Htlc,
        cosigner: &'a crate::ServerCosigns<'a>,
        spends: &[&eddy_backends::watch::Spend],
        tip: u32,
    ) -> Result<SweepJob<'a>, ClientError> {
        let blocks_left = rec.terms.expiry.saturating_sub(tip);
        let eff = self.parts.cfg.effective(&rec.options);
        let estimate = self
            .parts
            .chain
            .fee_rate(sweep_conf_target(blocks_left, eff.conf_target))
            .await
            .map_err(backend)?;
        Ok(SweepJob {
            label: "claim",
            outpoint,
            value,
            htlc,
            script_path: Some(SpendPath::Claim(rec.preimage)),
            cosigner: Some(cosigner),
            key: self.parts.keys.secret(KEY_PURPOSE, &id),
            dest: rec.destination.clone(),
            estimate,
            blocks_left,
            max_fee: eff.max_miner_fee,
            tip,
            may_be_early: false,
            seen: spends.iter().map(|s| s.txid).collect(),
        })
    }

    /// The claims left for the end of the pass, swept together: each swap locked (in id
    /// order) and read again, those still to claim in one batch (the most urgent first), each
    /// member's claim recorded and persisted before the broadcast (`sweep_batch`). A single
    /// claim due goes the one-output way.
    async fn claim_batch(&self, tip: u32) -> Result<(), ClientError> {
        let mut ids = self.batch.take();
        if ids.is_empty() {
            return Ok(());
        }
        ids.sort();
        let mut guards = Vec::with_capacity(ids.len());
        for id in &ids {
            guards.push(self.parts.locks.lock(id).await);
        }
        // (swap, version, record, outpoint, value, spends seen)
        let mut due = vec![];
        {
            let watcher = self.parts.watcher.lock().await;
            for id in ids {
                let (version, rec) = self.parts.load::<ClientLoopOut>(&id).await?;
                let State::Claiming { outpoint, value, .. } = rec.state else {
                    continue;
                };
                let status = crate::htlc_status(&watcher, &id, &rec.htlc)?;
                let spends: Vec<_> = status.spends.into_iter().filter(|s| s.outpoint == outpoint).collect();
                if spends.iter().any(|s| s.height.is_some()) {
                    continue;
                }
                due.push((id, version, rec, outpoint, value, spends));
            }
        }
        due.sort_by_key(|d| d.2.terms.expiry);
        let htlcs = due
            .iter()
            .map(|d| Htlc::new(d.2.htlc).map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        let cosigners: Vec<_> = due
            .iter()
            .map(|d| crate::ServerCosigns::Claim(&*self.server, d.0, d.2.preimage))
            .collect();
        let mut entries = Vec::with_capacity(due.len());
        for (n, (id, version, rec, outpoint, value, spends)) in due.into_iter().enumerate() {
            let seen: Vec<_> = spends.iter().collect();
            let job = self
                .claim_job(id, &rec, outpoint, value, &htlcs[n], &cosigners[n], &seen, tip)
                .await?;
            entries.push(eddy_engine::sweep::BatchEntry {
                id,
                version,
                previous: rec.claim.clone(),
                rec,
                job,
            });
        }
        // Every swap paying a fresh address of the node's wallet is paid into one output, at
        // the first such swap's address (the most urgent); a destination asked for is kept.
        let wallet = entries
            .iter()
            .find(|e| e.rec.options.wallet_destination)
            .map(|e| e.rec.destination.clone());
        if let Some(wallet) = wallet {
            for e in entries.iter_mut().filter(|e| e.rec.options.wallet_destination) {
                e.job.dest = wallet.clone();
            }
        }
        let store = |r: &mut ClientLoopOut, s| r.claim = Some(s);
        let chain = &*self.parts.chain;
        let (swept, mut first) = eddy_engine::sweep::sweep_due(self, chain, entries, store, |_| false).await;
        for mut e in swept {
            let Some(txid) = e.txid else { continue };
            let ev = Event::ClaimBroadcast { txid };
            if let Err(err) = runner::apply(self, e.id, &mut e.version, &mut e.rec, ev, &tip).await {
                first.get_or_insert(err);
            }
        }
        drop(guards);
        first.map_or(Ok(()), Err)
    }

    /// The payment hash of a swap's prepay invoice (none asked: none).
    pub fn prepay_hash(&self, rec: &ClientLoopOut) -> Option<PaymentHash> {
        let prepay = rec.offer.prepay_invoice.as_deref()?;
        eddy_core::validate::decode_invoice("prepay", prepay, self.parts.cfg.network, 0, 0)
            .map(|f| f.payment_hash)
            .ok()
    }
}

#[async_trait::async_trait]
impl crate::ClientEngine for LoopOutClient {
    type Rec = ClientLoopOut;

    fn parts(&self) -> &crate::ClientParts {
        &self.parts
    }

    async fn step_one(&self, id: SwapId, version: i64, rec: ClientLoopOut, tip: u32) -> Result<(), ClientError> {
        self.step(id, version, rec, tip).await
    }

    async fn after_pass(&self, tip: u32) -> Result<(), ClientError> {
        self.claim_batch(tip).await
    }
}

eddy_engine::record!(
    ClientLoopOut,
    LoopOutClientMachine,
    SwapKind::LoopOutClient,
    "loop-out transition",
    |event, _view| event_json(event)
);

/// The loop-out's side effects: paying, claiming and bumping the claim.
#[async_trait::async_trait]
impl runner::Effects<ClientLoopOut> for LoopOutClient {
    /// The tip the pass runs at.
    type Ctx = u32;
    type Error = ClientError;

    fn store(&self) -> &dyn SwapStore {
        &*self.parts.store
    }

    fn view<'a>(&self, _tip: &'a u32) -> &'a () {
        &()
    }

    async fn act(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut ClientLoopOut,
        action: Action,
        tip: &u32,
    ) -> Result<(), ClientError> {
        let tip = *tip;
        match action {
            Action::PayInvoices => {
                // Never pay a swap that can no longer complete (see `pays_at`): the step fails
                // it without paying.
                if !pays_at(&rec.terms, tip) {
                    return Ok(());
                }
                let eff = self.parts.cfg.effective(&rec.options);
                // Both payments (swap and prepay) are bounded by the offer: no HTLC of ours may
                // outlive `loop_out_max_payment_cltv(E)`, whatever the route hints say.
                let Some(max_cltv) = loop_out_max_payment_cltv_delta(rec.offer.expiry, tip) else {
                    return Err(ClientError::Backend(format!(
                        "too late to pay: tip {tip} is past the payment CLTV bound of expiry {}",
                        rec.offer.expiry
                    )));
                };
                let params = PayParams {
                    last_hop: None,
                    max_fee_msat: eff.max_routing_fee.to_sat() * 1000,
                    timeout: std::time::Duration::from_secs(60),
                    outgoing_channel: eff.channel,
                    max_total_cltv_delta: Some(max_cltv),
                };
                eddy_store::crash_point("loop_out.pay.before_send");
                if let Some(prepay) = &rec.offer.prepay_invoice {
                    self.parts.ln.pay_invoice(prepay, &params).await.map_err(backend)?;
                }
                self.parts
                    .ln
                    .pay_invoice(&rec.offer.swap_invoice, &params)
                    .await
                    .map_err(backend)?;
                runner::apply(self, id, version, rec, Event::PaymentsSent, &tip).await
            }
            Action::RevealAndClaim { outpoint } | Action::BumpClaim { outpoint } => {
                self.claim(id, version, rec, outpoint, tip).await
            }
        }
    }
}

fn event_json(e: &Event) -> serde_json::Value {
    match e {
        Event::OfferValidated => json!({"event": "offer_validated"}),
        Event::OfferRejected => json!({"event": "offer_rejected"}),
        Event::PaymentsSent => json!({"event": "payments_sent"}),
        Event::NotPaid { height } => json!({"event": "not_paid", "height": height}),
        Event::PaymentFailed => json!({"event": "payment_failed"}),
        Event::HtlcSeen {
            outpoint,
            value,
            confs,
            height,
            decision,
        } => json!({
            "event": "htlc_seen", "outpoint": outpoint.to_string(), "value_sat": value.to_sat(),
            "confs": confs, "height": height, "claim_ok": decision.is_ok(),
        }),
        Event::Block { height } => json!({"event": "block", "height": height}),
        Event::ClaimBroadcast { txid } => json!({"event": "claim_broadcast", "txid": txid.to_string()}),
        Event::ClaimConfirmed { txid, confs } => {
            json!({"event": "claim_confirmed", "txid": txid.to_string(), "confs": confs})
        }
        Event::HtlcRefunded { confs } => json!({"event": "htlc_refunded", "confs": confs}),
        Event::HtlcVanished { height, replacement } => json!({
            "event": "htlc_vanished", "height": height,
            "replacement": replacement.map(|(o, _)| o.to_string()),
        }),
    }
}

/// Why a failed swap failed, for reports.
pub fn fail_reason(state: &State) -> Option<FailReason> {
    match state {
        State::Failed(r) => Some(*r),
        _ => None,
    }
}
