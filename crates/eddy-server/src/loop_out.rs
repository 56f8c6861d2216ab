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
    HTLC_PUBLICATION_BUMP_BLOCKS, MIN_BLOCKS_LEFT_AT_PUBLICATION, SEED_CSV_DELAY, SEED_LOOP_OUT_EXPIRY_DELTA,
    SERVER_SETTLE_MARGIN, SETTLE_LATENCY,
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
use eddy_store::{state_name, NewSwap, StoreError, SwapKind, SwapStore};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::server_core::{backend, unix_now, ServerCore, ServerError};

use crate::wallet::WALLET_WATCH_ID;

/// Key purpose for loop-out HTLC keys.
const KEY_PURPOSE: eddy_store::KeyPurpose = eddy_store::KeyPurpose::ServerLoopOut;
/// Confirmation target of the refund sweep (bumped once a block until it confirms).
const REFUND_CONF_TARGET: u16 = 2;
/// Blocks of slack added to the swap invoice's final CLTV delta on top of what the hold needs.
const FINAL_CLTV_SLACK: u32 = eddy_core::constants::LOOP_OUT_FINAL_CLTV_SLACK;
/// Invoice lifetime of an offer (unpaid offers reserve nothing; they must expire soon).
const INVOICE_EXPIRY_SECS: u32 = eddy_core::constants::LOOP_OUT_OFFER_EXPIRY_SECS;

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
    fn our_txids(&self) -> Vec<Txid> {
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
    fn our_funding<'a>(&self, status: &'a WatchStatus) -> Option<&'a Funding> {
        let vout = self.funding?.vout;
        let ours = self.our_txids();
        status
            .fundings
            .iter()
            .filter(|f| f.outpoint.vout == vout && ours.contains(&f.outpoint.txid) && f.value == self.amount)
            .max_by_key(|f| (f.height.is_some(), std::cmp::Reverse(f.height)))
    }

    /// The stored publication, decoded.
    /// Whether its HTLC was published (and the swap goes on): the states in which an earned
    /// prepay is settled and the publication is followed.
    fn is_published(&self) -> bool {
        matches!(
            self.state,
            State::Published { .. } | State::Refunding { .. } | State::PreimageKnown { .. } | State::Reclaiming
        )
    }

    pub(crate) fn stored_tx(&self) -> Option<bitcoin::Transaction> {
        self.htlc_tx
            .as_deref()
            .and_then(|h| bitcoin::consensus::encode::deserialize_hex(h).ok())
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
    accepted_at: std::sync::Mutex<HashMap<SwapId, Instant>>,
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
        first_err.map_or(Ok(()), Err)
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
        self.accepted_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, at);
        let rec: ServerLoopOut =
            serde_json::from_value(r.state).map_err(|_| StoreError::Corrupt(format!("swap {id}")))?;
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
        let (offer, _) = self
            .offer(
                req.amount,
                req.payment_hash,
                HtlcKey::Pubkey(req.claim_key),
                HtlcKind::P2trOut,
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
        let (offer, server_key) = self
            .offer(amount, payment_hash, HtlcKey::Hash(claim_key_hash), HtlcKind::Seed)
            .await?;
        let refund = bitcoin::Address::p2wpkh(&bitcoin::CompressedPublicKey(server_key), self.core.cfg.network);
        Ok((refund, offer.swap_invoice))
    }

    async fn offer(
        &self,
        amount: Amount,
        payment_hash: PaymentHash,
        claim_key: HtlcKey,
        kind: HtlcKind,
    ) -> Result<(LoopOutOffer, bitcoin::secp256k1::PublicKey), ServerError> {
        self.core.taking_swaps()?;
        let seed = kind == HtlcKind::Seed;
        let mut quote = self
            .core
            .cfg
            .fees
            .loop_out_quote(amount)
            .map_err(|e| ServerError::Invalid(e.to_string()))?;
        if seed {
            // No prepay in the seed exchange: the whole fee is in the swap invoice.
            quote.swap_invoice_amount += quote.prepay;
            quote.prepay = Amount::ZERO;
        }
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
        // Seed-protocol offers (no prepay: free to make) have a budget of their own, so a seed
        // flood never takes the prepaid offers' budget (per-client budgets: the HTTP layer).
        let now = unix_now();
        let offers = active
            .iter()
            .filter(|(_, _, r)| r.is_live_offer(now) && (r.htlc.kind == HtlcKind::Seed) == seed)
            .count();
        let per_slot = if seed {
            eddy_core::constants::SEED_UNPAID_OFFERS_PER_SLOT
        } else {
            eddy_core::constants::UNPAID_OFFERS_PER_SLOT
        };
        if offers >= self.core.cfg.max_active_swaps * per_slot {
            return Err(ServerError::Unavailable(format!(
                "{offers} unpaid {}offers outstanding; retry in a few minutes",
                if seed { "seed-protocol " } else { "" }
            )));
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
                amount_msat: quote.swap_invoice_amount.to_sat() * 1000,
                expiry_secs: INVOICE_EXPIRY_SECS,
                min_final_cltv_delta: u16::try_from(final_cltv).unwrap_or(u16::MAX),
                description: format!("eddy loop-out {}", amount.to_sat()),
            })
            .await
            .map_err(backend)?;
        let prepay_invoice = if seed {
            String::new()
        } else {
            self.core
                .ln
                .create_hold_invoice(&HoldInvoiceRequest {
                    payment_hash: prepay_preimage.payment_hash(),
                    amount_msat: quote.prepay.to_sat() * 1000,
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
                swap_invoice_msat: quote.swap_invoice_amount.to_sat() * 1000,
                prepay_msat: quote.prepay.to_sat() * 1000,
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
            state: State::new(),
        };
        let state = serde_json::to_value(&record).map_err(|e| ServerError::Backend(e.to_string()))?;
        self.core
            .store
            .create(&NewSwap {
                id,
                kind: SwapKind::LoopOutServer,
                state_name: state_name(&record.state),
                terminal: false,
                state,
                event: json!({"event": "created", "amount_sat": amount.to_sat(), "expiry": expiry}),
            })
            .await
            .map_err(|e| match e {
                StoreError::Duplicate(_) => ServerError::Duplicate(payment_hash),
                e => ServerError::Store(e),
            })?;
        self.core
            .watcher
            .lock()
            .await
            .index_mut()
            .watch_script(swap_watch_id(&id), built.script_pubkey());
        self.prepay_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(prepay_preimage.payment_hash(), id);
        self.core.metrics.swap_created();
        tracing::info!(swap = %id, amount_sat = amount.to_sat(), expiry, "loop-out created");
        Ok((
            LoopOutOffer {
                swap_invoice: swap_invoice.bolt11,
                prepay_invoice,
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
    /// preimage (it was pushed or seen), so giving up the refund path costs it nothing; only a
    /// one-input transaction spending this swap's HTLC; a fresh nonce for every request.
    pub async fn cosign_claim(
        &self,
        id: &SwapId,
        client_nonce: &PubNonceBytes,
        tx: &bitcoin::Transaction,
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
        if tx.input.len() != 1 || tx.input[0].previous_output != funding {
            return Err(ServerError::Invalid(
                "the claim must spend exactly this swap's HTLC".into(),
            ));
        }
        let htlc = Htlc::new(rec.htlc).map_err(backend)?;
        let Htlc::Taproot(taproot) = &htlc else {
            return Err(ServerError::Invalid("not a taproot HTLC".into()));
        };
        let msg = eddy_core::tx::cooperative_sighash(tx, &htlc, rec.amount)
            .map_err(|e| ServerError::Invalid(e.to_string()))?;
        let key = self.core.keys.secret(KEY_PURPOSE, id);
        cosign(taproot, &key, msg, &id.0, client_nonce).map_err(|e| ServerError::Invalid(e.to_string()))
    }

    /// Publishes every swap waiting in `Publishing` — all in **one** transaction from the swap
    /// wallet, outputs in swap order — after adopting any HTLC output already on chain or in the
    /// mempool (a crash between broadcast and persistence never publishes twice). Each swap is
    /// then moved on with [`Event::HtlcBroadcast`].
    pub async fn publish_pending(&self) -> Result<(), ServerError> {
        let _one = self.core.publishing.lock().await;
        // Adopt before publish, on every path (engine pass or Lightning event): the watcher
        // must have seen the chain and mempool *now*, or a publication broadcast but not
        // recorded (crash, store error) would be made a second time.
        let pending: Vec<_> = Self::active(&*self.core.store)
            .await?
            .into_iter()
            .filter(|(_, _, rec)| matches!(rec.state, State::Publishing { .. }))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        self.core.sync_chain().await?;
        let tip = self.core.chain.tip().await.map_err(backend)?.height;
        let mut batch = vec![];
        for (id, mut version, mut rec) in pending {
            let status = self.core.htlc_status(&id, &rec.htlc).await?;
            if let Some(tx) = rec.stored_tx() {
                // A publication of ours was written before its broadcast (write-ahead), and
                // maybe broadcast before a crash or an error: it is the one to follow while
                // it may confirm — never a second one beside it, never a cancel.
                if let Some(f) = rec.our_funding(&status).cloned() {
                    rec.funding = Some(f.outpoint);
                    let height = rec.published_height.unwrap_or(tip);
                    let e = Event::HtlcBroadcast {
                        txid: f.outpoint.txid,
                        height,
                    };
                    runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
                    continue;
                }
                if !self.publication_lost(&rec, &status, tip).await {
                    self.core.wallet.remember(&tx);
                    let txid = tx.compute_txid();
                    if let Err(e) = self.core.chain.broadcast(&tx).await {
                        tracing::warn!(swap = %id, %txid, error = %e, "stored HTLC publication refused; kept and bumped");
                    }
                    // Not seen before: its first broadcast may be now, so it earns the prepay
                    // only if now is inside the window.
                    let e = Event::HtlcBroadcast { txid, height: tip };
                    rec.published_height = Some(tip);
                    runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
                    continue;
                }
                // Its inputs are spent by a confirmed transaction that is not ours: it can
                // never confirm; a new publication (inside the window) is the only one.
                tracing::warn!(swap = %id, "stored HTLC publication can no longer confirm");
                forget_publication(&mut rec);
                runner::persist(self, &id, &mut version, &rec, json!({"event": "htlc_publication_lost"})).await?;
            }
            // No publication of ours: an output of a stranger (even of the exact amount, even
            // confirmed) is not ours and never taken for it. The machine decides whether a
            // publication is still in its window (else it cancels both invoices).
            runner::apply(
                self,
                id,
                &mut version,
                &mut rec,
                Event::NoHtlcOnChain { height: tip },
                &tip,
            )
            .await?;
            if matches!(rec.state, State::Publishing { .. }) {
                batch.push((id, version, rec));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mut outputs = vec![];
        for (_, _, rec) in &batch {
            let htlc = Htlc::new(rec.htlc).map_err(backend)?;
            outputs.push(bitcoin::TxOut {
                value: rec.amount,
                script_pubkey: htlc.script_pubkey(),
            });
        }
        let rate = self
            .core
            .chain
            .fee_rate(self.core.cfg.publish_conf_target)
            .await
            .map_err(backend)?;
        let seen = self.core.status_of(WALLET_WATCH_ID).await;
        // Unpaid offers reserve nothing, so paid swaps may together want more than the wallet
        // holds: publish the longest prefix (in swap order) that fits; the rest wait
        // for funds inside their publication window, then are canceled (nothing taken).
        let tx = loop {
            match self.core.wallet.pay(&seen, &outputs, rate) {
                Ok(tx) => break tx,
                Err(crate::wallet::WalletError::Insufficient { .. }) if outputs.len() > 1 => {
                    outputs.pop();
                    if let Some((id, _, _)) = batch.pop() {
                        tracing::warn!(swap = %id, "swap wallet cannot fund this HTLC now; waiting for funds");
                    }
                }
                Err(e) => return Err(ServerError::Unavailable(e.to_string())),
            }
        };
        let txid = tx.compute_txid();
        let tx_hex = bitcoin::consensus::encode::serialize_hex(&tx);
        // Write-ahead: every swap of the batch stores the signed transaction (and its output)
        // before it is broadcast, so a crash or a lost broadcast is followed by re-broadcasting
        // *this* transaction, never by a second publication or a cancel while it may confirm.
        let mut written = 0;
        let mut write_err = None;
        for (vout, (id, version, rec)) in batch.iter_mut().enumerate() {
            rec.funding = Some(OutPoint {
                txid,
                vout: vout as u32,
            });
            rec.published_height = Some(tip);
            rec.htlc_tx = Some(tx_hex.clone());
            rec.htlc_txids = vec![txid];
            let ev = json!({"event": "htlc_signed", "txid": txid.to_string()});
            if let Err(e) = runner::persist(self, id, version, rec, ev.clone()).await {
                write_err = Some(e);
                break;
            }
            written += 1;
        }
        if let Some(e) = write_err {
            // Not broadcast: take it back from the swaps that stored it (best effort; a swap
            // still holding it broadcasts it on its next pass, as after a crash).
            for (id, version, rec) in batch.iter_mut().take(written) {
                forget_publication(rec);
                let _ = runner::persist(self, id, version, rec, json!({"event": "htlc_publication_withdrawn"})).await;
            }
            self.core.wallet.forget(&txid);
            return Err(e);
        }
        eddy_store::crash_point("loop_out_server.publish.after_write");
        if let Err(e) = self.core.chain.broadcast(&tx).await {
            // Stored: the next pass broadcasts it again (or replaces it); its inputs stay ours.
            return Err(backend(e));
        }
        eddy_store::crash_point("loop_out_server.publish.after_broadcast");
        tracing::info!(%txid, htlcs = batch.len(), "HTLCs published");
        for (id, _, _) in &batch {
            let accepted = self.accepted_at.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            if let Some(t) = accepted {
                self.core.metrics.publish_latency(t.elapsed());
            }
        }
        // Record each publication and settle each prepay, all swaps at once.
        let steps = batch.into_iter().map(|(id, mut version, mut rec)| async move {
            runner::apply(
                self,
                id,
                &mut version,
                &mut rec,
                Event::HtlcBroadcast { txid, height: tip },
                &tip,
            )
            .await
        });
        futures::future::join_all(steps)
            .await
            .into_iter()
            .find(Result::is_err)
            .unwrap_or(Ok(()))
    }

    /// Keeps every unconfirmed HTLC publication on its way to a block: re-broadcast at every
    /// pass while missing from the mempool (evicted, lost); replaced (BIP125, from the swap
    /// wallet's change; one replacement covers every swap of the batch) when the node refuses it
    /// or when it waited [`HTLC_PUBLICATION_BUMP_BLOCKS`] unconfirmed (in the mempool or not)
    /// below the current estimate. Each swap
    /// of the batch then follows the replacement (or the original, whichever confirms: see the
    /// adoption in `step`).
    pub(crate) async fn keep_publications(&self, tip: u32) -> Result<(), ServerError> {
        let _one = self.core.publishing.lock().await;
        let active = Self::active(&*self.core.store).await?;
        // Each unconfirmed publication once: (tx, height it was published at, in mempool).
        let mut pubs: Vec<(bitcoin::Transaction, u32, bool)> = vec![];
        for (id, _, rec) in &active {
            let (Some(tx), true) = (rec.stored_tx(), rec.is_published()) else {
                continue;
            };
            let status = self.core.htlc_status(id, &rec.htlc).await?;
            if rec.our_funding(&status).is_some_and(|f| f.height.is_some()) {
                continue;
            }
            let txid = tx.compute_txid();
            if pubs.iter().any(|(t, _, _)| t.compute_txid() == txid) {
                continue;
            }
            // One that can never confirm is the swap's business (`step`: published again or
            // ended), not re-broadcast.
            if self.publication_lost(rec, &status, tip).await {
                continue;
            }
            let in_mempool = status.fundings.iter().any(|f| f.outpoint.txid == txid);
            pubs.push((tx, rec.published_height.unwrap_or(tip), in_mempool));
        }
        // Errors are per publication: one that fails never stops the others.
        let mut first_err = None;
        for (tx, published_at, in_mempool) in pubs {
            if let Err(e) = self.keep_publication(tx, published_at, in_mempool, tip).await {
                tracing::warn!(error = %e, "keeping an HTLC publication");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// One unconfirmed publication of [`Self::keep_publications`]: re-broadcast, replaced
    /// (write-ahead: every swap following it stores the replacement before its broadcast).
    async fn keep_publication(
        &self,
        tx: bitcoin::Transaction,
        published_at: u32,
        in_mempool: bool,
        tip: u32,
    ) -> Result<(), ServerError> {
        let txid = tx.compute_txid();
        // Ours (even after a restart): its inputs are never spent by another of our payments.
        self.core.wallet.remember(&tx);
        let target = self
            .core
            .chain
            .fee_rate(self.core.cfg.publish_conf_target)
            .await
            .map_err(backend)?;
        // The fee from the wallet's own view of its inputs (no `-txindex` needed).
        let seen = self.core.status_of(WALLET_WATCH_ID).await;
        let rate = self
            .core
            .wallet
            .fee_of(&seen, &tx)
            .map(|fee| bitcoin::FeeRate::from_sat_per_kwu(fee.to_sat() * 1000 / tx.weight().to_wu().max(1)));
        // Waited long enough below the current estimate (in the mempool or not).
        let stale = tip >= published_at + HTLC_PUBLICATION_BUMP_BLOCKS && rate.is_some_and(|r| target > r);
        let bump = if in_mempool {
            stale
        } else {
            match self.core.chain.broadcast(&tx).await {
                Ok(_) => stale,
                // Its inputs are gone: a replacement confirmed (adopted in `step`).
                Err(e) if e.is_missing_inputs() => false,
                Err(e) => {
                    tracing::warn!(%txid, error = %e, "HTLC publication refused on re-broadcast; replacing it");
                    true
                }
            }
        };
        if !bump {
            return Ok(());
        }
        let new = match self.core.wallet.bump(&seen, &tx, target) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(%txid, error = %e, "cannot replace the HTLC publication");
                return Ok(());
            }
        };
        let new_txid = new.compute_txid();
        let old_hex = bitcoin::consensus::encode::serialize_hex(&tx);
        let new_hex = bitcoin::consensus::encode::serialize_hex(&new);
        // Write-ahead: each swap following `tx` records the replacement as its own before it is
        // broadcast (a crash after the broadcast finds it ours). Only a funding that *is* the
        // replaced transaction's output is re-pointed.
        let mut following = vec![];
        for (id, mut version, mut rec) in Self::active(&*self.core.store).await? {
            if rec.htlc_tx.as_deref() != Some(old_hex.as_str()) {
                continue;
            }
            if !rec.htlc_txids.contains(&new_txid) {
                rec.htlc_txids.push(new_txid);
            }
            if let Some(f) = rec.funding.filter(|f| f.txid == txid) {
                rec.funding = Some(OutPoint {
                    txid: new_txid,
                    vout: f.vout,
                });
            }
            rec.htlc_tx = Some(new_hex.clone());
            let ev = json!({"event": "htlc_replacement_signed", "txid": new_txid.to_string()});
            runner::persist(self, &id, &mut version, &rec, ev.clone()).await?;
            following.push((id, version, rec));
        }
        if let Err(e) = self.core.chain.broadcast(&new).await {
            tracing::warn!(%txid, replacement = %new_txid, error = %e, "HTLC publication replacement refused");
            // Back to the original for the swaps that stored the replacement.
            for (id, mut version, mut rec) in following {
                if rec.funding.is_some_and(|f| f.txid == new_txid) {
                    rec.funding = rec.funding.map(|f| OutPoint { txid, vout: f.vout });
                }
                rec.htlc_tx = Some(old_hex.clone());
                let ev = json!({"event": "htlc_replacement_refused", "txid": new_txid.to_string()});
                runner::persist(self, &id, &mut version, &rec, ev.clone()).await?;
            }
            return Ok(());
        }
        self.core.wallet.replaced(&txid, &new);
        tracing::info!(%txid, replacement = %new_txid, "HTLC publication replaced at a higher fee");
        Ok(())
    }

    /// Whether our publication for `rec` can no longer confirm: an input of the stored
    /// transaction is spent by a *confirmed* transaction that is not one of ours (only then —
    /// missing from our own mempool is not enough: miners may hold it). A record written before
    /// publications were stored (no transaction to judge) counts its output lost once the
    /// watcher has not seen it for [`HTLC_PUBLICATION_BUMP_BLOCKS`] blocks after publication.
    async fn publication_lost(&self, rec: &ServerLoopOut, status: &WatchStatus, tip: u32) -> bool {
        if rec.our_funding(status).is_some_and(|f| f.height.is_some()) {
            return false;
        }
        let Some(tx) = rec.stored_tx() else {
            let old_enough = rec
                .published_height
                .is_none_or(|h| tip >= h + HTLC_PUBLICATION_BUMP_BLOCKS);
            return rec.funding.is_some() && rec.our_funding(status).is_none() && old_enough;
        };
        let ours = rec.our_txids();
        let wallet = self.core.status_of(WALLET_WATCH_ID).await;
        tx.input.iter().any(|i| {
            wallet
                .spends
                .iter()
                .any(|s| s.outpoint == i.previous_output && s.height.is_some() && !ours.contains(&s.txid))
        })
    }

    /// Applies `event`, persists, performs the actions.
    async fn step(&self, id: SwapId, mut version: i64, mut rec: ServerLoopOut, tip: u32) -> Result<(), ServerError> {
        let hash = rec.htlc.payment_hash;
        // After a publication inside the window the prepay is ours: settle it whenever it is
        // still only held (an HTLC adopted after the window released it: `CancelPrepay`) —
        // before the swap invoice's settlement can make the swap final, or a settlement lost
        // to a crash (found by the soak's per-swap accounting: the swap succeeded, the prepay
        // was failed back) is never made again.
        let published_before = rec.is_published();
        let earned = rec.published_height.is_none_or(|h| rec.terms.may_publish(h));
        if published_before && earned && rec.terms.prepay_msat > 0 {
            let prepay_hash = rec.prepay_preimage.payment_hash();
            if let Ok(HoldInvoiceState::Accepted { .. }) = self.core.ln.hold_invoice_state(&prepay_hash).await {
                self.core
                    .ln
                    .settle_hold_invoice(&rec.prepay_preimage)
                    .await
                    .map_err(backend)?;
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
                forget_publication(&mut rec);
                return runner::apply(self, id, &mut version, &mut rec, Event::PublicationLost, &tip).await;
            }
            if let Some(height) = rec.our_funding(&status).and_then(|f| f.height) {
                runner::apply(self, id, &mut version, &mut rec, Event::HtlcConfirmed { height }, &tip).await?;
            }
        }
        if let Some(funding) = rec.funding {
            for spend in status.spends.iter().filter(|s| s.outpoint == funding) {
                if let Some(p) = find_preimage(&spend.witness, &hash) {
                    // Before `E` the preimage alone settles; after it, only the claim confirmed.
                    runner::apply(self, id, &mut version, &mut rec, Event::PreimageLearned(p), &tip).await?;
                    let confs = WatchStatus::confirmations(spend.height, tip);
                    runner::apply(
                        self,
                        id,
                        &mut version,
                        &mut rec,
                        Event::HtlcClaimed { preimage: p, confs },
                        &tip,
                    )
                    .await?;
                } else if rec.refund.as_ref().is_some_and(|r| r.all.contains(&spend.txid)) {
                    let confs = WatchStatus::confirmations(spend.height, tip);
                    runner::apply(self, id, &mut version, &mut rec, Event::RefundConfirmed { confs }, &tip).await?;
                }
            }
        }
        runner::apply(self, id, &mut version, &mut rec, Event::Block { height: tip }, &tip).await
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
        let htlc = Htlc::new(rec.htlc).map_err(backend)?;
        let job = SweepJob {
            label: "refund",
            outpoint,
            value: rec.amount,
            htlc: &htlc,
            script_path: Some(SpendPath::Refund),
            cosigner: None,
            key: self.core.keys.secret(KEY_PURPOSE, &id),
            dest,
            estimate: self.core.chain.fee_rate(REFUND_CONF_TARGET).await.map_err(backend)?,
            // The refund is not racing a deadline of ours; the client may still claim until it
            // confirms, which is what the bumps (one a block) are for.
            blocks_left: u32::MAX,
            max_fee: rec.amount / 5,
            tip,
            // Not final yet: the next block tells.
            may_be_early: true,
            seen: self
                .core
                .htlc_status(&id, &rec.htlc)
                .await?
                .spends
                .iter()
                .filter(|s| s.outpoint == outpoint)
                .map(|s| s.txid)
                .collect(),
        };
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

/// Drops a publication that can never confirm (or was never broadcast) from `rec`.
fn forget_publication(rec: &mut ServerLoopOut) {
    rec.htlc_tx = None;
    rec.htlc_txids.clear();
    rec.funding = None;
    rec.published_height = None;
    rec.refund = None;
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
            // Published in a batch by `publish_pending` (the caller's pass ends with it).
            Action::PublishHtlc => Ok(()),
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
    }
}
