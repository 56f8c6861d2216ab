//! The loop-out engine (server side). Each swap is one [`ServerLoopOut`] in the store, holding
//! the `eddy-core` state machine's state plus what the actions need. `SwapServer::tick`
//! gathers what happened (hold-invoice states, the chain watcher's fundings and spends, the new
//! tip), feeds it to the state machine, **persists every transition before acting on it**, then
//! performs the actions — each idempotent, so a crash anywhere repeats at most a harmless step:
//! - publishing the HTLC first syncs the watcher and looks for an existing output paying the
//!   HTLC script (the watcher rescans from the swap's creation), on every path (engine pass or
//!   Lightning event), so a crash or store error between broadcast and persistence never
//!   publishes twice; a publication is made only inside the window the state machine allows
//!   (checked again at broadcast), and re-broadcast every pass until it confirms;
//! - unpaid offers hold no slot and reserve no liquidity (their invoices expire in
//!   `LOOP_OUT_OFFER_EXPIRY_SECS`); a published HTLC is never given up: it ends when spent;
//! - settling and canceling invoices are idempotent in the backends;
//! - the refund is rebuilt deterministically and re-broadcast (RBF-bumped) every block.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bitcoin::{Amount, OutPoint, ScriptBuf, Txid};
use eddy_backends::lightning::HoldInvoiceRequest;
use eddy_backends::{swap_watch_id, Funding, HoldInvoiceState, LnEvent, WatchId, WatchStatus};
use eddy_core::constants::{
    MIN_BLOCKS_LEFT_AT_PUBLICATION, SEED_CSV_DELAY, SEED_LOOP_OUT_EXPIRY_DELTA, SERVER_SETTLE_MARGIN, SETTLE_LATENCY,
};
use eddy_core::htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams};
use eddy_core::musig::{cosign, PartialSigBytes, PubNonceBytes};
use eddy_core::sm::loop_out_server::{Action, Event, LoopOutServerMachine, State, Terms};
use eddy_core::spend::find_preimage;
use eddy_core::sweep::Sweep;
use eddy_core::tx::SpendPath;
use eddy_core::types::{PaymentHash, Preimage, SwapId};
use eddy_core::validate::LoopOutOffer;
use eddy_engine::runner;
use eddy_engine::sweep::{sweep, SweepJob};
use eddy_store::{state_name, StoreError, SwapKind, SwapStore};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::server_core::{backend, unix_now, ServerCore, ServerError};

/// Key purpose for loop-out HTLC keys.
const KEY_PURPOSE: eddy_store::KeyPurpose = eddy_store::KeyPurpose::ServerLoopOut;
/// Confirmation target of the refund sweep (bumped once a block until it confirms).
const REFUND_CONF_TARGET: u16 = 2;
/// Blocks of slack added to the swap invoice's final CLTV delta on top of what the hold needs.
const FINAL_CLTV_SLACK: u32 = eddy_core::constants::LOOP_OUT_FINAL_CLTV_SLACK;
/// Invoice lifetime of an offer (unpaid offers reserve nothing; they must expire soon).
const INVOICE_EXPIRY_SECS: u32 = eddy_core::constants::LOOP_OUT_OFFER_EXPIRY_SECS;

/// The front door a loop-out comes through: what its maker pays up front and how long it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    /// Eddy's own `/v1` API: a prepay invoice beside the swap invoice.
    Eddy,
    /// Seed 000's exchange: one invoice, the BIP199 HTLC with its relative refund.
    Seed,
    /// Boltz API v2's reverse swap: one invoice, the P2TR HTLC.
    Boltz,
}

/// A loop-out request as the server receives it.
pub use eddy_core::validate::LoopOutCreate as LoopOutRequest;

/// One swap as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLoopOut {
    /// The HTLC.
    pub htlc: HtlcParams,
    /// HTLC value.
    pub amount: Amount,
    /// The state machine's terms.
    pub terms: Terms,
    /// Swap hold invoice.
    pub swap_invoice: String,
    /// Prepay hold invoice.
    pub prepay_invoice: String,
    /// The prepay's preimage (the server's own).
    pub prepay_preimage: Preimage,
    /// The HTLC output, once published.
    pub funding: Option<OutPoint>,
    /// Where refunds go (an address of the server's wallet), fixed before first use.
    pub sweep_spk: Option<ScriptBuf>,
    /// The refund sweep (every version broadcast).
    pub refund: Option<Sweep>,
    /// The tip when the HTLC was broadcast (or an existing output adopted): the prepay is
    /// earned only for a publication inside the window (`Terms::may_publish`). `None` in
    /// records written before it existed.
    #[serde(default)]
    pub published_height: Option<u32>,
    /// The HTLC (batch) transaction as broadcast, consensus hex: re-broadcast every block until
    /// it confirms (an evicted publication must not leave the swap waiting for nothing).
    #[serde(default)]
    pub htlc_tx: Option<String>,
    /// Every HTLC transaction of ours for this swap (the batch and its replacements), written
    /// **before** each is broadcast: the only transactions whose output `funding.vout` the
    /// server takes for its publication — never a stranger's output, even of the exact amount.
    #[serde(default)]
    pub htlc_txids: Vec<Txid>,
    /// Unix time of creation (the offer's invoices expire `INVOICE_EXPIRY_SECS` later).
    #[serde(default)]
    pub created_unix: Option<u64>,
    /// The client asked its HTLC published at once (no publication window).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fast: bool,
    /// The state machine's state.
    pub state: State,
}

impl ServerLoopOut {
    /// Whether the client has paid anything yet (a swap or prepay HTLC held, or further):
    /// only such swaps hold a slot and reserve on-chain liquidity.
    pub fn is_paid(&self) -> bool {
        !matches!(
            self.state,
            State::Created {
                swap_accepted: None,
                prepay_accepted: None,
                ..
            }
        )
    }

    /// The txids of our own publications: those recorded, and (records written before they
    /// were) the funding's own txid.
    pub(crate) fn our_txids(&self) -> Vec<Txid> {
        let mut ids = self.htlc_txids.clone();
        if let Some(f) = self.funding {
            if !ids.contains(&f.txid) {
                ids.push(f.txid);
            }
        }
        ids
    }

    /// Our HTLC output as the watcher shows it (`status` already restricted to the swap's
    /// script): output `funding.vout` of one of our own transactions, the confirmed one first.
    pub(crate) fn our_funding<'a>(&self, status: &'a WatchStatus) -> Option<&'a Funding> {
        let vout = self.funding?.vout;
        let ours = self.our_txids();
        status
            .fundings
            .iter()
            .filter(|f| f.outpoint.vout == vout && ours.contains(&f.outpoint.txid) && f.value == self.amount)
            .max_by_key(|f| (f.height.is_some(), std::cmp::Reverse(f.height)))
    }

    /// Whether its HTLC was published (and the swap goes on): the states in which an earned
    /// prepay is settled and the publication is followed.
    pub(crate) fn is_published(&self) -> bool {
        matches!(
            self.state,
            State::Published { .. } | State::Refunding { .. } | State::PreimageKnown { .. } | State::Reclaiming
        )
    }

    /// Drops a publication that can never confirm (or was never broadcast).
    pub(crate) fn forget_publication(&mut self) {
        self.htlc_tx = None;
        self.htlc_txids.clear();
        self.funding = None;
        self.published_height = None;
        self.refund = None;
    }

    /// The stored publication, decoded.
    pub(crate) fn stored_tx(&self) -> Option<bitcoin::Transaction> {
        self.htlc_tx
            .as_deref()
            .and_then(|h| bitcoin::consensus::encode::deserialize_hex(h).ok())
    }

    /// Whether this is a Boltz API v2 reverse swap: a P2TR loop-out without a prepay invoice.
    pub(crate) fn is_boltz(&self) -> bool {
        self.htlc.kind == HtlcKind::P2trOut && self.prepay_invoice.is_empty()
    }

    /// An unpaid offer whose invoices can still be paid at unix time `now`.
    pub(crate) fn is_live_offer(&self, now: u64) -> bool {
        !self.is_paid()
            && self
                .created_unix
                .is_none_or(|t| now < t + u64::from(INVOICE_EXPIRY_SECS))
    }
}

/// The loop-out engine: the server's loop-outs over the shared [`ServerCore`].
pub struct LoopOutEngine {
    pub(crate) core: Arc<ServerCore>,
    /// Prepay payment hash → swap (the swap invoice's hash is the swap id itself).
    prepay_ids: std::sync::Mutex<HashMap<PaymentHash, SwapId>>,
    /// When the latest of a swap's HTLCs was accepted (for the publish latency metric).
    pub(crate) accepted_at: std::sync::Mutex<HashMap<SwapId, Instant>>,
    /// Swaps whose refund waits for the end of this pass, to be swept in one batch.
    refunds: eddy_engine::sweep::DueQueue,
}

impl LoopOutEngine {
    /// The loop-out engine over `core`, knowing every active swap's prepay.
    pub(crate) async fn new(core: Arc<ServerCore>) -> Result<LoopOutEngine, ServerError> {
        let mut prepay_ids = HashMap::new();
        for (id, _, r) in Self::active(&*core.store).await? {
            prepay_ids.insert(r.prepay_preimage.payment_hash(), id);
        }
        Ok(LoopOutEngine {
            core,
            prepay_ids: std::sync::Mutex::new(prepay_ids),
            accepted_at: std::sync::Mutex::default(),
            refunds: eddy_engine::sweep::DueQueue::default(),
        })
    }

    /// Every active loop-out's watch: its id, the height it was created at, its HTLC script.
    pub(crate) async fn watches_in(store: &dyn SwapStore) -> Result<Vec<(WatchId, u32, ScriptBuf)>, ServerError> {
        let mut out = vec![];
        for (id, _, r) in Self::active(store).await? {
            let spk = Htlc::new(r.htlc).map_err(backend)?.script_pubkey();
            out.push((swap_watch_id(&id), r.terms.created_height, spk));
        }
        Ok(out)
    }

    /// One pass over every active loop-out at `tip` (publication is the caller's next step:
    /// [`Self::publish_pending`]). Errors of one swap do not stop the others; the first is
    /// returned after all were tried.
    pub(crate) async fn tick(&self, tip: u32) -> Result<(), ServerError> {
        let mut first_err = None;
        let active = Self::active(&*self.core.store).await?;
        self.core.metrics.set_active(active.len());
        for (id, version, rec) in active {
            if let Err(e) = self.step(id, version, rec, tip).await {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = self.refund_batch(tip).await {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The refunds left for the end of the pass, swept together: each swap read again, those
    /// still refunding in one transaction into the swap wallet (`sweep_batch`: each member's
    /// record persisted before the broadcast); one whose HTLC something not ours spends in a
    /// mempool (the client's late claim), or a single one, goes the one-output way.
    async fn refund_batch(&self, tip: u32) -> Result<(), ServerError> {
        let ids = self.refunds.take();
        if ids.is_empty() {
            return Ok(());
        }
        let mut due = vec![];
        for id in ids {
            let (version, rec) = self.swap(&id).await?;
            if !matches!(rec.state, State::Refunding { .. } | State::Reclaiming) {
                continue;
            }
            let Some(outpoint) = rec.funding else { continue };
            let status = self.core.htlc_status(&id, &rec.htlc).await?;
            let seen: Vec<Txid> = status
                .spends
                .iter()
                .filter(|s| s.outpoint == outpoint)
                .map(|s| s.txid)
                .collect();
            if status
                .spends
                .iter()
                .any(|s| s.outpoint == outpoint && s.height.is_some())
            {
                continue;
            }
            // An HTLC not (or no longer) in a block goes alone: a batch spending it would be
            // its child, waiting for it and blocking its publication's fee bump.
            let confirmed = status
                .fundings
                .iter()
                .any(|f| f.outpoint == outpoint && f.height.is_some());
            due.push((id, version, rec, outpoint, seen, confirmed));
        }
        let htlcs = due
            .iter()
            .map(|d| Htlc::new(d.2.htlc).map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        let estimate = self.core.chain.fee_rate(REFUND_CONF_TARGET).await.map_err(backend)?;
        let mut entries = vec![];
        let mut unconfirmed = vec![];
        for (n, (id, version, rec, outpoint, seen, confirmed)) in due.into_iter().enumerate() {
            let Some(dest) = rec.sweep_spk.clone() else { continue };
            let job = self.refund_job(&id, &rec, outpoint, &htlcs[n], dest, estimate, seen, tip);
            if !confirmed {
                unconfirmed.push(id);
            }
            entries.push(eddy_engine::sweep::BatchEntry {
                id,
                version,
                previous: rec.refund.clone(),
                rec,
                job,
            });
        }
        let store = |r: &mut ServerLoopOut, s| r.refund = Some(s);
        let (_, first) =
            eddy_engine::sweep::sweep_due(self, &*self.core.chain, entries, store, |e| unconfirmed.contains(&e.id))
                .await;
        first.map_or(Ok(()), Err)
    }

    /// Loop-outs holding a slot: paid ones (see [`ServerLoopOut::is_paid`]).
    pub(crate) async fn active_count(&self) -> Result<usize, ServerError> {
        Ok(Self::active(&*self.core.store)
            .await?
            .iter()
            .filter(|(_, _, r)| r.is_paid())
            .count())
    }

    /// The swap whose swap or prepay invoice `ev` reports accepted.
    pub(crate) fn swap_of_accepted(&self, ev: &LnEvent) -> Option<SwapId> {
        let LnEvent::Invoice {
            payment_hash,
            state: HoldInvoiceState::Accepted { .. },
        } = ev
        else {
            return None;
        };
        let prepay_of = self
            .prepay_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(payment_hash)
            .copied();
        Some(prepay_of.unwrap_or_else(|| SwapId::from(*payment_hash)))
    }

    pub(crate) async fn on_accepted(&self, id: SwapId, at: Instant, tip: u32) -> Result<(), ServerError> {
        let Some(r) = self.core.store.get(&id).await? else {
            return Ok(());
        };
        if r.kind != SwapKind::LoopOutServer || r.terminal {
            return Ok(());
        }
        let rec: ServerLoopOut =
            serde_json::from_value(r.state).map_err(|_| StoreError::Corrupt(format!("swap {id}")))?;
        // The latest of its HTLCs accepted while it waits for them: an acceptance reported again
        // later (the node re-reading its invoices) never restarts the publication window.
        if matches!(rec.state, State::Created { .. }) {
            self.accepted_at
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, at);
        }
        self.step(id, r.version, rec, tip).await
    }

    pub(crate) async fn active(store: &dyn SwapStore) -> Result<Vec<(SwapId, i64, ServerLoopOut)>, ServerError> {
        Ok(runner::active(store).await?)
    }

    /// A stored loop-out (a swap of another kind is not found).
    pub async fn swap(&self, id: &SwapId) -> Result<(i64, ServerLoopOut), ServerError> {
        runner::load(&*self.core.store, id)
            .await?
            .ok_or(ServerError::NotFound(*id))
    }

    /// What a loop-out of `amount` costs (amount limits checked).
    pub fn quote(&self, amount: Amount) -> Result<eddy_core::fees::LoopOutQuote, ServerError> {
        self.core
            .cfg
            .fees
            .loop_out_quote(amount)
            .map_err(|e| ServerError::Invalid(e.to_string()))
    }

    /// Creates a loop-out: two hold invoices, the HTLC terms, persisted before answering.
    pub async fn create(&self, req: &LoopOutRequest) -> Result<LoopOutOffer, ServerError> {
        let quote = self.quote(req.amount)?;
        let description = format!("eddy loop-out {}", req.amount.to_sat());
        let claim_key = HtlcKey::Pubkey(req.claim_key);
        let (offer, _) = self
            .offer(quote, req.payment_hash, claim_key, Door::Eddy, description, req.fast)
            .await?;
        Ok(offer)
    }

    /// Creates a Boltz API v2 reverse swap (`POST /v2/swap/reverse`): a loop-out with one hold
    /// invoice of `quote.swap_invoice_amount` (no prepay) and the P2TR HTLC of `quote.amount`.
    pub async fn create_reverse(
        &self,
        quote: eddy_core::fees::LoopOutQuote,
        payment_hash: PaymentHash,
        claim_key: bitcoin::secp256k1::PublicKey,
        description: Option<String>,
    ) -> Result<LoopOutOffer, ServerError> {
        let description = description.unwrap_or_else(|| format!("eddy reverse swap {}", quote.amount.to_sat()));
        let (offer, _) = self
            .offer(
                quote,
                payment_hash,
                HtlcKey::Pubkey(claim_key),
                Door::Boltz,
                description,
                false,
            )
            .await?;
        Ok(offer)
    }

    /// Seed 000's exchange (`POST /api/loop/out`): one hold invoice for the amount plus the fee
    /// (no prepay), a BIP199 P2WSH HTLC with the client's pubkey hash and a
    /// [`SEED_CSV_DELAY`]-block relative refund to the server's key. Returns the server's refund
    /// address (P2WPKH of its HTLC key, which the seed client puts in the script as a hash) and
    /// the invoice.
    pub async fn create_seed(
        &self,
        amount: Amount,
        payment_hash: PaymentHash,
        claim_key_hash: bitcoin::PubkeyHash,
    ) -> Result<(bitcoin::Address, String), ServerError> {
        let mut quote = self.quote(amount)?;
        // No prepay in the seed exchange: the whole fee is in the swap invoice.
        quote.swap_invoice_amount += quote.prepay;
        quote.prepay = Amount::ZERO;
        let description = format!("eddy loop-out {}", amount.to_sat());
        let (offer, server_key) = self
            .offer(
                quote,
                payment_hash,
                HtlcKey::Hash(claim_key_hash),
                Door::Seed,
                description,
                false,
            )
            .await?;
        let refund = bitcoin::Address::p2wpkh(&bitcoin::CompressedPublicKey(server_key), self.core.cfg.network);
        Ok((refund, offer.swap_invoice))
    }

    /// Creates a loop-out priced by `quote` through `door`: its hold invoice(s), the HTLC terms,
    /// persisted before answering.
    async fn offer(
        &self,
        quote: eddy_core::fees::LoopOutQuote,
        payment_hash: PaymentHash,
        claim_key: HtlcKey,
        door: Door,
        description: String,
        fast: bool,
    ) -> Result<(LoopOutOffer, bitcoin::secp256k1::PublicKey), ServerError> {
        self.core.taking_swaps()?;
        let amount = quote.amount;
        let seed = door == Door::Seed;
        let kind = if seed { HtlcKind::Seed } else { HtlcKind::P2trOut };
        // Offers without a prepay (seed, Boltz) cost their maker nothing.
        let no_prepay = door != Door::Eddy;
        let id = SwapId::from(payment_hash);
        if self.core.store.get(&id).await?.is_some() {
            return Err(ServerError::Duplicate(payment_hash));
        }
        // Capacity and liquidity count *paid* swaps only: an unpaid offer costs its maker
        // nothing, so it must not be able to hold a slot or reserve our coins (it expires in
        // `INVOICE_EXPIRY_SECS`); live unpaid offers have their own, larger budget.
        let active = Self::active(&*self.core.store).await?;
        let paid = active.iter().filter(|(_, _, r)| r.is_paid()).count();
        if paid >= self.core.cfg.max_active_swaps {
            return Err(ServerError::Unavailable(format!(
                "{paid} swaps in flight, the most this server takes"
            )));
        }
        // Offers without a prepay (seed, Boltz: free to make) have a budget of their own, so a
        // flood of them never takes the prepaid offers' budget (per-client budgets: the HTTP
        // layer).
        let now = unix_now();
        let offers = active
            .iter()
            .filter(|(_, _, r)| r.is_live_offer(now) && r.prepay_invoice.is_empty() == no_prepay)
            .count();
        let per_slot = if no_prepay {
            eddy_core::constants::SEED_UNPAID_OFFERS_PER_SLOT
        } else {
            eddy_core::constants::UNPAID_OFFERS_PER_SLOT
        };
        if offers >= self.core.cfg.max_active_swaps * per_slot {
            return Err(ServerError::Unavailable(format!(
                "{offers} unpaid {}offers outstanding; retry in a few minutes",
                if no_prepay { "no-prepay " } else { "" }
            )));
        }
        // Boltz reverse swaps (no prepay), paid or live unpaid, hold at most their share of the
        // slots (`BOLTZ_SLOT_SHARE_PERCENT`).
        if door == Door::Boltz {
            let share = (self.core.cfg.max_active_swaps * eddy_core::constants::BOLTZ_SLOT_SHARE_PERCENT)
                .div_ceil(100)
                .max(1);
            let held = active
                .iter()
                .filter(|(_, _, r)| r.is_boltz() && (r.is_paid() || r.is_live_offer(now)))
                .count();
            if held >= share {
                return Err(ServerError::Unavailable(format!(
                    "{held} reverse swaps without a prepay in flight, the most this server takes; retry later"
                )));
            }
        }
        // Every paid HTLC not yet published is a promise on our wallet.
        let promised: Amount = active
            .iter()
            .filter(|(_, _, r)| r.is_paid() && matches!(r.state, State::Created { .. } | State::Publishing { .. }))
            .map(|(_, _, r)| r.amount)
            .sum();
        let spendable = self.core.wallet_balance().await.spendable;
        let needed = amount + promised + self.core.cfg.onchain_reserve;
        if spendable < needed {
            return Err(ServerError::Unavailable(format!(
                "insufficient on-chain liquidity for {} sat (available {} sat)",
                amount.to_sat(),
                spendable
                    .to_sat()
                    .saturating_sub((promised + self.core.cfg.onchain_reserve).to_sat())
            )));
        }
        let msat = |a: Amount| {
            a.to_sat()
                .checked_mul(1000)
                .ok_or_else(|| ServerError::Invalid("amount overflow".into()))
        };
        let (swap_msat, prepay_msat) = (msat(quote.swap_invoice_amount)?, msat(quote.prepay)?);
        // What the client pays covers what it gets on chain (a quote from any door).
        if quote
            .swap_invoice_amount
            .checked_add(quote.prepay)
            .is_none_or(|paid| paid < amount)
        {
            return Err(ServerError::Invalid(
                "the invoices must cover the on-chain amount".into(),
            ));
        }
        let tip = self.core.chain.tip().await.map_err(backend)?.height;
        let expiry = tip
            + if seed {
                SEED_LOOP_OUT_EXPIRY_DELTA
            } else {
                self.core.cfg.expiry_delta
            };
        let server_key = self.core.keys.public(KEY_PURPOSE, &id);
        if HtlcKey::Pubkey(server_key).pubkey_hash() == claim_key.pubkey_hash() {
            return Err(ServerError::Invalid("claim key equals the server key".into()));
        }
        let htlc = HtlcParams {
            kind,
            payment_hash,
            claim_key,
            refund_key: HtlcKey::Pubkey(server_key),
            // The seed kind's timeout is relative; its absolute bound is `expiry` below.
            timeout: if seed { SEED_CSV_DELAY } else { expiry },
        };
        let built = Htlc::new(htlc).map_err(|e| ServerError::Invalid(e.to_string()))?;
        let prepay_preimage = Preimage::random();
        // The held swap HTLC must stay settleable until E + SERVER_SETTLE_MARGIN; the node stops
        // settling `settle_deadline_delta` blocks before the HTLC's expiry.
        let final_cltv =
            (expiry - tip) + SERVER_SETTLE_MARGIN + self.core.ln.settle_deadline_delta() + FINAL_CLTV_SLACK;
        let swap_invoice = self
            .core
            .ln
            .create_hold_invoice(&HoldInvoiceRequest {
                payment_hash,
                amount_msat: swap_msat,
                expiry_secs: INVOICE_EXPIRY_SECS,
                min_final_cltv_delta: u16::try_from(final_cltv).unwrap_or(u16::MAX),
                description,
            })
            .await
            .map_err(backend)?;
        let prepay_invoice = if no_prepay {
            String::new()
        } else {
            self.core
                .ln
                .create_hold_invoice(&HoldInvoiceRequest {
                    payment_hash: prepay_preimage.payment_hash(),
                    amount_msat: prepay_msat,
                    expiry_secs: INVOICE_EXPIRY_SECS,
                    // Held until publication, which may happen as long as the window
                    // (`Terms::may_publish`) is open — until `E - MIN_BLOCKS_LEFT_AT_PUBLICATION`
                    // — and must then still be settleable (`SETTLE_LATENCY`); the machine also
                    // checks the accepted deadline and stops publishing past it (review #12).
                    min_final_cltv_delta: u16::try_from(
                        (expiry - tip).saturating_sub(MIN_BLOCKS_LEFT_AT_PUBLICATION)
                            + SETTLE_LATENCY
                            + self.core.ln.settle_deadline_delta()
                            + FINAL_CLTV_SLACK,
                    )
                    .unwrap_or(u16::MAX),
                    description: "eddy loop-out prepay".into(),
                })
                .await
                .map_err(backend)?
                .bolt11
        };
        let record = ServerLoopOut {
            htlc,
            amount,
            terms: Terms {
                swap_invoice_msat: swap_msat,
                prepay_msat,
                expiry,
                created_height: tip,
                relative_refund: seed.then_some(SEED_CSV_DELAY),
            },
            swap_invoice: swap_invoice.bolt11.clone(),
            prepay_invoice: prepay_invoice.clone(),
            prepay_preimage,
            funding: None,
            sweep_spk: None,
            refund: None,
            published_height: None,
            htlc_tx: None,
            htlc_txids: vec![],
            created_unix: Some(unix_now()),
            fast,
            state: State::new(),
        };
        runner::create(
            &*self.core.store,
            id,
            &record,
            json!({"event": "created", "amount_sat": amount.to_sat(), "expiry": expiry}),
        )
        .await
        .map_err(|e| match e {
            StoreError::Duplicate(_) => ServerError::Duplicate(payment_hash),
            e => ServerError::Store(e),
        })?;
        self.core.watch(id, built.script_pubkey()).await;
        self.prepay_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(prepay_preimage.payment_hash(), id);
        self.core.metrics.swap_created();
        tracing::info!(swap = %id, amount_sat = amount.to_sat(), expiry, "loop-out created");
        Ok((
            LoopOutOffer {
                swap_invoice: swap_invoice.bolt11,
                prepay_invoice: (!prepay_invoice.is_empty()).then_some(prepay_invoice),
                server_key,
                expiry,
                htlc_address: built.address(self.core.cfg.network).to_string(),
            },
            server_key,
        ))
    }

    /// The client pushes the preimage (before or instead of the server finding it on chain):
    /// before `E` the swap invoice is settled at once; after `E` the server keeps refunding
    /// and settles only for the client's claim confirmed on chain (see the state machine).
    /// Unknown hash → [`ServerError::NotFound`].
    pub async fn push_preimage(&self, preimage: &Preimage) -> Result<(), ServerError> {
        let id = SwapId::from(preimage.payment_hash());
        // The lookup comes before any work: an unknown hash costs no chain call.
        self.swap(&id).await?;
        let tip = self.core.chain.tip().await.map_err(backend)?.height;
        // A concurrent tick may move the swap between our read and write: re-read and retry.
        for _ in 0..3 {
            let (mut version, mut rec) = self.swap(&id).await?;
            match runner::apply(
                self,
                id,
                &mut version,
                &mut rec,
                Event::PreimageLearned(*preimage),
                &tip,
            )
            .await
            {
                Err(ServerError::Store(StoreError::Conflict { .. })) => continue,
                other => return other,
            }
        }
        Err(ServerError::Backend("swap kept changing; retry".into()))
    }

    /// Co-signs the client's key-path claim of the HTLC (MuSig2, one round trip: the client's
    /// nonce in, the server's nonce and partial signature out). Only once the server holds the
    /// preimage (it was pushed or seen), so giving up the refund path costs it nothing; only for
    /// input `index` spending this swap's HTLC (a batched claim names every input's prevout);
    /// a fresh nonce for every request.
    pub async fn cosign_claim(
        &self,
        id: &SwapId,
        client_nonce: &PubNonceBytes,
        tx: &bitcoin::Transaction,
        index: usize,
        prevouts: Option<&[bitcoin::TxOut]>,
    ) -> Result<(PubNonceBytes, PartialSigBytes), ServerError> {
        let (_, rec) = self.swap(id).await?;
        if !matches!(rec.state, State::PreimageKnown { .. } | State::Succeeded) {
            return Err(ServerError::Invalid(
                "push the preimage before asking for a cooperative claim".into(),
            ));
        }
        let funding = rec
            .funding
            .ok_or_else(|| ServerError::Invalid("the HTLC is not published".into()))?;
        // One input of the claim (a batch names it) spends this swap's HTLC, and no other
        // does: the preimage is out, so whatever else the claim spends or pays is the
        // client's business — the prevouts it names for the other inputs only make our
        // signature useless to it if they are wrong.
        let ours = tx.input.iter().filter(|i| i.previous_output == funding).count();
        if tx.input.get(index).map(|i| i.previous_output) != Some(funding) || ours != 1 {
            return Err(ServerError::Invalid(
                "the claim's input (index) must spend this swap's HTLC, once".into(),
            ));
        }
        let htlc = Htlc::new(rec.htlc).map_err(backend)?;
        let Htlc::Taproot(taproot) = &htlc else {
            return Err(ServerError::Invalid("not a taproot HTLC".into()));
        };
        let own = bitcoin::TxOut {
            value: rec.amount,
            script_pubkey: htlc.script_pubkey(),
        };
        let msg = match prevouts {
            None if tx.input.len() == 1 => eddy_core::tx::cooperative_sighash(tx, &htlc, rec.amount),
            Some(p) if p.get(index) == Some(&own) => eddy_core::tx::cooperative_sighash_at(tx, index, p),
            _ => {
                return Err(ServerError::Invalid(
                    "a batched claim names every input's prevout, this swap's HTLC output at its index".into(),
                ))
            }
        }
        .map_err(|e| ServerError::Invalid(e.to_string()))?;
        let key = self.core.keys.secret(KEY_PURPOSE, id);
        cosign(taproot, &key, msg, &id.0, client_nonce).map_err(|e| ServerError::Invalid(e.to_string()))
    }

    /// Applies `event`, persists, performs the actions.
    async fn step(&self, id: SwapId, mut version: i64, mut rec: ServerLoopOut, tip: u32) -> Result<(), ServerError> {
        let hash = rec.htlc.payment_hash;
        // A prepay the node still holds after our publication: the machine settles it if
        // earned (`Event::PrepayHeld`), else releases it — first in the pass, before the swap
        // invoice's settlement can end the swap, or a settlement lost to a crash (found by the
        // soak's per-swap accounting: the swap succeeded, the prepay was failed back) is never
        // made again.
        if rec.is_published() && rec.terms.prepay_msat > 0 {
            let prepay_hash = rec.prepay_preimage.payment_hash();
            if let Ok(HoldInvoiceState::Accepted { .. }) = self.core.ln.hold_invoice_state(&prepay_hash).await {
                let e = Event::PrepayHeld {
                    published_at: rec.published_height,
                };
                // A node refusing the prepay's settlement or release never keeps the rest of
                // the pass (the swap invoice, the chain) from this swap: retried next pass.
                if let Err(e) = runner::apply(self, id, &mut version, &mut rec, e, &tip).await {
                    tracing::warn!(swap = %id, error = %e, "settling or releasing the prepay");
                }
            }
        }
        // Lightning side.
        match &rec.state {
            State::Created { .. } => {
                let swap = self.core.ln.hold_invoice_state(&hash).await.map_err(backend)?;
                if let HoldInvoiceState::Accepted { amount_msat, .. } = &swap {
                    self.accepted_at
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(id)
                        .or_insert_with(Instant::now);
                    if let Some(deadline) = swap.settle_deadline() {
                        let e = Event::SwapAccepted {
                            amount_msat: *amount_msat,
                            claim_deadline: deadline,
                        };
                        runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
                    }
                }
                let prepay = if rec.terms.prepay_msat == 0 {
                    HoldInvoiceState::Open
                } else {
                    self.core
                        .ln
                        .hold_invoice_state(&rec.prepay_preimage.payment_hash())
                        .await
                        .map_err(backend)?
                };
                if let (HoldInvoiceState::Accepted { amount_msat, .. }, Some(claim_deadline)) =
                    (&prepay, prepay.settle_deadline())
                {
                    let e = Event::PrepayAccepted {
                        amount_msat: *amount_msat,
                        claim_deadline,
                    };
                    runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
                }
            }
            State::PreimageKnown { .. } => match self.core.ln.hold_invoice_state(&hash).await.map_err(backend)? {
                HoldInvoiceState::Settled { .. } => {
                    runner::apply(self, id, &mut version, &mut rec, Event::SwapSettled, &tip).await?;
                }
                // Failed back (expired, or canceled): the preimage can no longer be paid for,
                // so the HTLC is still the server's to refund.
                HoldInvoiceState::Canceled => {
                    runner::apply(self, id, &mut version, &mut rec, Event::SwapInvoiceGone, &tip).await?;
                }
                _ => {}
            },
            _ => {}
        }
        // `Publishing` swaps (also after a crash between persisting it and the broadcast) are
        // published together by `publish_pending`.
        let published = rec.is_published();
        // Chain side.
        let status = self.core.htlc_status(&id, &rec.htlc).await?;
        // A replacement of the publication (or the original, if it won) is the one to follow:
        // only transactions of ours, never a stranger's output of the same amount.
        if published {
            if let (Some(funding), Some(f)) = (rec.funding, rec.our_funding(&status).cloned()) {
                if f.outpoint != funding && f.height.is_some() {
                    rec.funding = Some(f.outpoint);
                    let ev = json!({"event": "htlc_adopted", "txid": f.outpoint.txid.to_string()});
                    runner::persist(self, &id, &mut version, &rec, ev.clone()).await?;
                }
            }
            if matches!(rec.state, State::Published { .. } | State::Refunding { .. })
                && self.publication_lost(&rec, &status, tip).await
            {
                // Nothing of ours can confirm: publish again inside the window, else end.
                tracing::warn!(swap = %id, "HTLC publication lost (its inputs spent by a confirmed conflict)");
                rec.forget_publication();
                return runner::apply(self, id, &mut version, &mut rec, Event::PublicationLost, &tip).await;
            }
            if let Some(height) = rec.our_funding(&status).and_then(|f| f.height) {
                runner::apply(self, id, &mut version, &mut rec, Event::HtlcConfirmed { height }, &tip).await?;
            }
        }
        let mut events = vec![];
        for spend in status.spends.iter().filter(|s| Some(s.outpoint) == rec.funding) {
            let confs = WatchStatus::confirmations(spend.height, tip);
            if let Some(p) = find_preimage(&spend.witness, &hash) {
                // Before `E` the preimage alone settles; after it, only the claim confirmed.
                events.extend([Event::PreimageLearned(p), Event::HtlcClaimed { preimage: p, confs }]);
            } else if rec.refund.as_ref().is_some_and(|r| r.all.contains(&spend.txid)) {
                events.push(Event::RefundConfirmed { confs });
            }
        }
        events.push(Event::Block { height: tip });
        runner::apply_all(self, id, &mut version, &mut rec, events, &tip).await
    }

    async fn refund(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut ServerLoopOut,
        tip: u32,
    ) -> Result<(), ServerError> {
        let Some(outpoint) = rec.funding else {
            return Ok(());
        };
        if rec.sweep_spk.is_none() {
            // Refunds go back into the swap wallet, ready for the next swaps.
            rec.sweep_spk = Some(self.core.wallet.script_pubkey().clone());
            runner::persist(self, &id, version, rec, json!({"event": "sweep_address"})).await?;
        }
        let dest = rec
            .sweep_spk
            .clone()
            .ok_or_else(|| ServerError::Backend("no sweep address".into()))?;
        // A refund final now (its timeout reached; a seed HTLC's relative one aside) waits for
        // the end of the pass: every refund due is swept in one transaction.
        if rec.htlc.kind != HtlcKind::Seed && rec.htlc.timeout <= tip {
            self.refunds.push(id);
            return Ok(());
        }
        let htlc = Htlc::new(rec.htlc).map_err(backend)?;
        let estimate = self.core.chain.fee_rate(REFUND_CONF_TARGET).await.map_err(backend)?;
        let seen = self
            .core
            .htlc_status(&id, &rec.htlc)
            .await?
            .spends
            .iter()
            .filter(|s| s.outpoint == outpoint)
            .map(|s| s.txid)
            .collect();
        let job = self.refund_job(&id, rec, outpoint, &htlc, dest, estimate, seen, tip);
        sweep(
            self,
            &*self.core.chain,
            id,
            version,
            rec,
            rec.refund.clone(),
            |r: &mut ServerLoopOut, s| r.refund = Some(s),
            job,
        )
        .await?;
        Ok(())
    }
}

impl LoopOutEngine {
    /// What a swap's refund spends and within what.
    #[allow(clippy::too_many_arguments)]
    fn refund_job<'a>(
        &self,
        id: &SwapId,
        rec: &ServerLoopOut,
        outpoint: OutPoint,
        htlc: &'a Htlc,
        dest: ScriptBuf,
        estimate: bitcoin::FeeRate,
        seen: Vec<Txid>,
        tip: u32,
    ) -> SweepJob<'a> {
        SweepJob {
            label: "refund",
            outpoint,
            value: rec.amount,
            htlc,
            script_path: Some(SpendPath::Refund),
            cosigner: None,
            key: self.core.keys.secret(KEY_PURPOSE, id),
            dest,
            estimate,
            // The refund is not racing a deadline of ours; the client may still claim until it
            // confirms, which is what the bumps (one a block) are for.
            blocks_left: u32::MAX,
            max_fee: rec.amount / 5,
            tip,
            // Not final yet: the next block tells.
            may_be_early: true,
            seen,
        }
    }
}

eddy_engine::record!(
    ServerLoopOut,
    LoopOutServerMachine,
    SwapKind::LoopOutServer,
    "loop-out transition",
    |event, _tip| event_json(event)
);

/// The loop-out's side effects on the server: settling and canceling its invoices, refunding
/// the HTLC (publication happens in batches: [`LoopOutEngine::publish_pending`]).
#[async_trait::async_trait]
impl runner::Effects<ServerLoopOut> for LoopOutEngine {
    /// The tip the pass runs at (the machine reads it too).
    type Ctx = u32;
    type Error = ServerError;

    fn store(&self) -> &dyn SwapStore {
        &*self.core.store
    }

    fn view<'a>(&self, tip: &'a u32) -> &'a u32 {
        tip
    }

    async fn persisted(&self, id: &SwapId, rec: &ServerLoopOut) {
        if rec.state.is_terminal() {
            self.core.unwatch(id).await;
        }
    }

    fn finished(&self, id: &SwapId, rec: &ServerLoopOut) {
        self.core.metrics.swap_finished(&state_name(&rec.state));
        self.accepted_at.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    async fn act(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut ServerLoopOut,
        action: Action,
        tip: &u32,
    ) -> Result<(), ServerError> {
        match action {
            // Handed to the publisher: published in one batch with every swap waiting, by
            // `publish_pending` (run after each Lightning event batch and each pass).
            Action::PublishHtlc => {
                self.core.publisher.want(id);
                Ok(())
            }
            Action::SettlePrepay if rec.terms.prepay_msat == 0 => Ok(()),
            Action::SettlePrepay => self
                .core
                .ln
                .settle_hold_invoice(&rec.prepay_preimage)
                .await
                .map_err(backend),
            Action::CancelPrepay if rec.terms.prepay_msat == 0 => Ok(()),
            Action::CancelPrepay => self
                .core
                .ln
                .cancel_hold_invoice(&rec.prepay_preimage.payment_hash())
                .await
                .map_err(backend),
            Action::SettleSwap(p) => self.core.ln.settle_hold_invoice(&p).await.map_err(backend),
            Action::CancelInvoices => {
                let a = self.core.ln.cancel_hold_invoice(&rec.htlc.payment_hash).await;
                if rec.terms.prepay_msat == 0 {
                    return a.map_err(backend);
                }
                let b = self
                    .core
                    .ln
                    .cancel_hold_invoice(&rec.prepay_preimage.payment_hash())
                    .await;
                a.and(b).map_err(backend)
            }
            Action::CancelSwap => self
                .core
                .ln
                .cancel_hold_invoice(&rec.htlc.payment_hash)
                .await
                .map_err(backend),
            Action::BroadcastRefund => self.refund(id, version, rec, *tip).await,
        }
    }
}

fn event_json(e: &Event) -> serde_json::Value {
    match e {
        Event::SwapAccepted {
            amount_msat,
            claim_deadline,
        } => json!({"event": "swap_accepted", "amount_msat": amount_msat, "claim_deadline": claim_deadline}),
        Event::PrepayAccepted {
            amount_msat,
            claim_deadline,
        } => json!({"event": "prepay_accepted", "amount_msat": amount_msat, "claim_deadline": claim_deadline}),
        Event::Block { height } => json!({"event": "block", "height": height}),
        Event::HtlcBroadcast { txid, height } => {
            json!({"event": "htlc_broadcast", "txid": txid.to_string(), "height": height})
        }
        Event::NoHtlcOnChain { height } => json!({"event": "no_htlc_on_chain", "height": height}),
        Event::SwapInvoiceGone => json!({"event": "swap_invoice_gone"}),
        Event::HtlcConfirmed { height } => json!({"event": "htlc_confirmed", "height": height}),
        Event::PublicationLost => json!({"event": "publication_lost"}),
        // Never the preimage itself.
        Event::HtlcClaimed { confs, .. } => json!({"event": "htlc_claimed", "confs": confs}),
        // Never the preimage itself.
        Event::PreimageLearned(_) => json!({"event": "preimage_learned"}),
        Event::SwapSettled => json!({"event": "swap_settled"}),
        Event::RefundConfirmed { confs } => json!({"event": "refund_confirmed", "confs": confs}),
        Event::PrepayHeld { published_at, .. } => json!({"event": "prepay_held", "published_at": published_at}),
    }
}
