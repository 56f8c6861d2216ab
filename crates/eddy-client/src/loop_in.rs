//! The loop-in client engine. A swap is one [`ClientLoopIn`] record: our invoice (its preimage
//! stays in the node), the validated offer, the HTLC rebuilt from our own data, and the state.
//! The offer is persisted before the funding, and funding first looks for an existing output
//! paying the HTLC, so a crash between the two never funds twice. When the server reports the
//! swap failed, the refund is cooperative (MuSig2 key path co-signed by the server) in the next
//! block; without the server, the timeout path after `E`, bumped every block.
//!
//! Every output paying the HTLC address is the client's except the one the server paid for
//! ([`eddy_core::sm::loop_in_client::server_output`]): each is refunded (one refund transaction
//! per output, each bumped on its own), the server's claim is co-signed only for that one
//! output and only once our invoice is settled, and the swap stays active until every output of
//! ours is spent for good — whatever the height, so a daemon back from downtime refunds at once.

use std::sync::Arc;

use bitcoin::{Amount, OutPoint, ScriptBuf, Txid};
use eddy_backends::{ChainSource, HoldInvoiceState, LightningNode, WatchStatus};
use eddy_core::constants::{loop_in_last_funding_height, loop_in_max_payment_cltv, MAX_LOOP_IN_EXPIRY_DELTA};
use eddy_core::fees::sweep_conf_target;
use eddy_core::htlc::{Htlc, HtlcKind, HtlcParams};
/// Moved to eddy-core (pure, and fuzzed there); re-exported where it was.
pub use eddy_core::sm::loop_in_client::check_claim_request;
use eddy_core::sm::loop_in_client::{observe, server_output, Chain, HtlcOutput, OutputSpend, SeenOutput};
use eddy_core::sm::loop_in_client::{Action, Event, LoopInClientMachine, State, Terms};
use eddy_core::sweep::Sweep;
use eddy_core::tx::SpendPath;
use eddy_core::types::{Preimage, SwapId};
use eddy_core::validate::{validate_loop_in_offer, LoopInCreate, LoopInOffer, MIN_LOOP_IN_INVOICE_REMAINING_SECS};
use eddy_engine::runner::{self, Effects as _};
use eddy_engine::sweep::{sweep, SweepJob, Swept};
use eddy_store::{state_name, SeedKeys, SwapKind, SwapStore};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{backend, ClientConfig, ClientError, LoopInApi, SwapState};

/// Key purpose of the loop-in refund keys (they also sign this swap's calls to the server).
pub const KEY_PURPOSE: eddy_store::KeyPurpose = eddy_store::KeyPurpose::ClientLoopInRefund;

/// Per-swap settings of a loop-in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopInOptions {
    /// Most the server's fee may be (sat); default: the engine's `max_swap_fee`.
    pub max_swap_fee: Option<u64>,
    /// Confirmation target of the funding and refunds.
    pub conf_target: Option<u16>,
    /// Do not fund from the node's wallet: the user pays the HTLC address from elsewhere.
    pub external: bool,
    /// Most the funding transaction's miner fee may be, estimated before anything is created
    /// (sat); also the most a refund pays. Default: the engine's `max_miner_fee`.
    #[serde(default)]
    pub max_miner_fee: Option<u64>,
    /// The channel peer the server's payment must arrive through (`--last-hop`).
    #[serde(default)]
    pub last_hop: Option<bitcoin::secp256k1::PublicKey>,
    /// Refuse up front ([`ClientError::NoFunds`]) when the node's wallet cannot fund the
    /// amount and the estimated miner fee now — what the daemon's API asks, so a caller gets a
    /// 422 instead of a swap that fails funding on every pass. Off, the swap is stored and the
    /// runner retries the funding while there is time (a wallet about to receive coins).
    #[serde(default)]
    pub require_funds: bool,
}

/// Virtual size of a funding transaction from the node's wallet with one input: 10.5 vB of
/// version, counts, lock time and segwit marker, one P2WPKH input (41 vB + a 108-byte
/// witness / 4 = 68 vB; the wallet of ldk-node and of LND's default are P2WPKH), the P2TR HTLC
/// output (43 vB) and a P2WPKH change output (31 vB): 152.5, rounded up. The funding fee
/// check multiplies it by the fee rate; a wallet that needs more inputs pays more (68 vB each),
/// which the estimate cannot know before the wallet selects its coins.
pub const FUNDING_VBYTES_ONE_INPUT: u64 = 153;

/// The estimated miner fee of funding a loop-in from the node's wallet at `rate`.
pub fn funding_fee_estimate(rate: bitcoin::FeeRate) -> Amount {
    rate.fee_vb(FUNDING_VBYTES_ONE_INPUT).unwrap_or(Amount::MAX_MONEY)
}

/// One client loop-in as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientLoopIn {
    /// Our invoice (amount − fee).
    pub invoice: String,
    /// The validated offer.
    pub offer: LoopInOffer,
    /// The HTLC, rebuilt from our data.
    pub htlc: HtlcParams,
    /// The state machine's terms.
    pub terms: Terms,
    /// Settings.
    pub options: LoopInOptions,
    /// Where refunds pay (fixed before first use).
    pub refund_to: Option<ScriptBuf>,
    /// Records written before per-output refunds: every refund broadcast (of the state's
    /// outpoint). Read, never written now.
    pub refund: Option<Sweep>,
    /// The refund of each output (every version broadcast; `refund` in records written before).
    #[serde(default)]
    pub refunds: Vec<Sweep>,
    /// Every output worth a refund seen paying the HTLC, and since when it is missing from the
    /// view (a swap goes terminal on a missing output only after
    /// [`eddy_core::constants::REORG_SAFETY_DEPTH`] blocks).
    #[serde(default)]
    pub seen: Vec<SeenOutput>,
    /// The state machine's state.
    pub state: State,
}

impl ClientLoopIn {
    /// The refund record of `outpoint` (for records from before per-output refunds: `refund`
    /// belongs to the state's outpoint).
    fn refund_of(&self, outpoint: OutPoint) -> Sweep {
        if let Some(r) = self.refunds.iter().find(|r| r.outpoint == Some(outpoint)) {
            return r.clone();
        }
        let legacy = match &self.state {
            State::Refunding { outpoint: o, .. } | State::Funded { outpoint: o, .. } => *o == outpoint,
            _ => false,
        };
        match (&self.refund, legacy && self.refunds.is_empty()) {
            (Some(r), true) => {
                let mut mine = r.clone();
                mine.outpoint = Some(outpoint);
                mine
            }
            _ => Sweep::of(outpoint),
        }
    }

    /// Stores `sweep` as the refund record of `outpoint`.
    fn set_refund(&mut self, outpoint: OutPoint, sweep: Sweep) {
        match self.refunds.iter_mut().find(|r| r.outpoint == Some(outpoint)) {
            Some(r) => *r = sweep,
            None => self.refunds.push(sweep),
        }
    }

    /// Whether `txid` is one of our refunds.
    pub fn is_our_refund(&self, txid: &Txid) -> bool {
        self.refund.iter().chain(&self.refunds).any(|r| r.contains(txid))
    }

    /// The newest refund broadcast, of any output.
    pub fn last_refund(&self) -> Option<Txid> {
        self.refunds
            .iter()
            .filter(|r| !r.all.is_empty())
            .max_by_key(|r| r.height)
            .or(self.refund.as_ref())
            .and_then(Sweep::last)
    }
}

/// The loop-in client engine.
pub struct LoopInClient {
    parts: crate::ClientParts,
    server: Arc<dyn LoopInApi>,
    /// When each swap's server claim may be asked for again ([`CLAIM_ASK_BACKOFF`] after the
    /// last ask): the server counts co-signing calls per minute.
    claim_asks: std::sync::Mutex<std::collections::HashMap<SwapId, std::time::Instant>>,
}

/// Time between asks for the server's claim: its claim round may change within a block (a
/// swap paid later joins it, and everyone co-signs the new one), or not be offered yet (its
/// window, its pass not run yet). 20 asks a minute stay under the server's co-signing calls
/// per minute (`COSIGN_CALLS_PER_SWAP_PER_MINUTE`, 30), and a round lasts a block.
const CLAIM_ASK_BACKOFF: std::time::Duration = std::time::Duration::from_secs(3);

impl LoopInClient {
    /// Starts the engine; the watcher rescans from the oldest active loop-in.
    pub async fn new(
        cfg: ClientConfig,
        ln: Arc<dyn LightningNode>,
        chain: Arc<dyn ChainSource>,
        store: Arc<dyn SwapStore>,
        server: Arc<dyn LoopInApi>,
        keys: SeedKeys,
    ) -> Result<LoopInClient, ClientError> {
        let delta = MAX_LOOP_IN_EXPIRY_DELTA;
        let parts = crate::ClientParts::start(cfg, ln, chain, store, keys, delta, |r: &ClientLoopIn| {
            (r.offer.expiry, r.htlc)
        })
        .await?;
        Ok(LoopInClient {
            parts,
            server,
            claim_asks: std::sync::Mutex::default(),
        })
    }

    /// A stored loop-in of this client (a swap of another kind is not found).
    pub async fn swap(&self, id: &SwapId) -> Result<(i64, ClientLoopIn), ClientError> {
        self.parts.load(id).await
    }

    /// Starts a loop-in of `amount` (the on-chain value): asks the fee, creates our invoice for
    /// `amount − fee`, asks the server, validates its answer (fee, expiry window, the HTLC
    /// address rebuilt from our data), persists, then funds from the node's wallet unless
    /// `options.external`.
    pub async fn loop_in(&self, amount: Amount, options: LoopInOptions) -> Result<SwapId, ClientError> {
        let max_fee = options
            .max_swap_fee
            .map_or(self.parts.cfg.limits.max_swap_fee, Amount::from_sat);
        let fee = crate::bounded(self.server.loop_in_fee(amount))
            .await
            .map_err(ClientError::Server)?;
        // A hostile quote may ask more than the amount: refuse it, never wrap around.
        let receive = amount.checked_sub(fee).filter(|r| *r > Amount::ZERO).ok_or_else(|| {
            ClientError::OfferRefused(format!(
                "swap fee {} sat leaves nothing of the amount {} sat",
                fee.to_sat(),
                amount.to_sat()
            ))
        })?;
        if fee > max_fee {
            return Err(ClientError::OfferRefused(format!(
                "swap fee {} sat exceeds the limit {} sat",
                fee.to_sat(),
                max_fee.to_sat()
            )));
        }
        let mut funding_estimate = None;
        if !options.external {
            let max_miner = options
                .max_miner_fee
                .map_or(self.parts.cfg.max_miner_fee, Amount::from_sat);
            let rate = self
                .parts
                .chain
                .fee_rate(options.conf_target.unwrap_or(self.parts.cfg.conf_target))
                .await
                .map_err(backend)?;
            let estimate = funding_fee_estimate(rate);
            if estimate > max_miner {
                return Err(ClientError::OfferRefused(format!(
                    "the funding transaction's miner fee is estimated at {} sat ({} sat/vB), above the limit {} sat",
                    estimate.to_sat(),
                    rate.to_sat_per_vb_ceil(),
                    max_miner.to_sat()
                )));
            }
            funding_estimate = Some(estimate);
        }
        // Our channels (with the last hop, if one is asked) must be able to receive the
        // payment now: else the server's payment would fail after we funded, and the refund
        // would cost a second miner fee.
        let channels = self.parts.ln.channels().await.map_err(backend)?;
        let usable: Vec<_> = channels
            .iter()
            .filter(|c| c.usable && options.last_hop.is_none_or(|h| c.peer == h))
            .collect();
        if let (Some(hop), true) = (options.last_hop, usable.is_empty()) {
            return Err(ClientError::NoInbound(format!(
                "no usable channel with the last hop {hop}"
            )));
        }
        let can = usable.iter().map(|c| c.remote_msat).sum::<u64>() / 1000;
        let receive = receive.to_sat();
        if can < receive {
            let next = if usable.is_empty() {
                "no usable channel: open one with `eddy node open PUBKEY@HOST:PORT AMOUNT --push N` (or ask a peer to open one to you)"
            } else {
                "a smaller swap, or more inbound capacity (a loop-out makes some)"
            };
            return Err(ClientError::NoInbound(format!(
                "{receive} sat to receive, usable channels can receive {can} sat now; {next}"
            )));
        }
        // The node's wallet must be able to fund it now: else the swap would be created (a
        // server slot, an invoice) only to fail funding on every pass.
        if let (Some(estimate), true) = (funding_estimate, options.require_funds) {
            let have = self.parts.ln.wallet_balance().await.map_err(backend)?.spendable;
            let need = amount + estimate;
            if have < need {
                return Err(ClientError::NoFunds(format!(
                    "{} sat needed (the amount and the estimated miner fee), the wallet can spend {} sat now; fund it at `eddy node address`, or pay the HTLC yourself with `eddy in --external`",
                    need.to_sat(),
                    have.to_sat()
                )));
            }
        }
        let preimage = Preimage::random();
        let hash = preimage.payment_hash();
        let id = SwapId::from(hash);
        // Held until the funding is broadcast and recorded: no pass funds this swap meanwhile.
        let _guard = self.parts.locks.lock(&id).await;
        let invoice = self
            .parts
            .ln
            .create_invoice(
                &preimage,
                receive.saturating_mul(1000),
                u32::try_from(2 * MIN_LOOP_IN_INVOICE_REMAINING_SECS).unwrap_or(u32::MAX),
                "eddy loop-in",
            )
            .await
            .map_err(backend)?;
        let refund_key = self.parts.keys.public(KEY_PURPOSE, &id);
        let offer = crate::bounded(self.server.loop_in(&LoopInCreate {
            amount,
            invoice: invoice.bolt11.clone(),
            refund_key,
            last_hop: options.last_hop,
        }))
        .await
        .map_err(ClientError::Server)?;
        // The offer must charge the fee our invoice was made for (else the server takes more
        // than it quoted: it pays `amount − quoted fee` for an HTLC of `amount`, fine, but a
        // different figure means its quote and its offer disagree).
        if offer.swap_fee != fee {
            return Err(ClientError::OfferRefused(format!(
                "the offer's fee {} sat is not the quoted {} sat",
                offer.swap_fee.to_sat(),
                fee.to_sat()
            )));
        }
        let tip = self.parts.chain.tip().await.map_err(backend)?.height;
        let htlc = validate_loop_in_offer(
            HtlcKind::P2trIn,
            hash,
            refund_key,
            max_fee,
            self.parts.cfg.network,
            &offer,
            tip,
        )
        .map_err(|e| ClientError::OfferRefused(e.to_string()))?;
        let mut rec = ClientLoopIn {
            invoice: invoice.bolt11,
            terms: Terms {
                amount,
                expiry: offer.expiry,
            },
            offer,
            htlc: *htlc.params(),
            options,
            refund_to: None,
            refund: None,
            refunds: vec![],
            seen: vec![],
            state: State::Created,
        };
        let mut version = runner::create(
            &*self.parts.store,
            id,
            &rec,
            json!({"event": "created", "amount_sat": amount.to_sat(), "expiry": rec.terms.expiry}),
        )
        .await?;
        self.parts.watch(id, htlc.script_pubkey()).await;
        tracing::info!(swap = %id, amount_sat = amount.to_sat(), expiry = rec.terms.expiry, "loop-in offer validated");
        let chain = Chain {
            height: tip,
            outputs: vec![],
            missing: vec![],
        };
        match runner::apply(self, id, &mut version, &mut rec, Event::OfferValidated, &chain).await {
            Ok(()) => {}
            // The swap is stored: the runner retries the funding while there is time for it
            // (see `loop_in_last_funding_height`), else it fails as never funded. Report the
            // swap (its state says it is not funded yet), never an error the caller might
            // answer by creating a second swap.
            Err(ClientError::Backend(e)) => {
                tracing::warn!(swap = %id, error = %e, "funding failed; the next pass retries while there is time");
            }
            Err(e) => return Err(e),
        }
        Ok(id)
    }

    /// Drives the engine until `shutdown` turns true (see [`crate::drive`]).
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let (ln, chain) = (self.parts.ln.clone(), self.parts.chain.clone());
        crate::drive(ln, chain, shutdown, move || {
            let me = self.clone();
            async move { me.tick().await.map_err(|e| e.to_string()) }
        })
        .await
    }

    /// Every loop-in this client made, newest first.
    pub async fn list(&self) -> Result<Vec<(eddy_store::SwapRecord, ClientLoopIn)>, ClientError> {
        Ok(runner::all(&*self.parts.store).await?)
    }

    /// Gives a loop-in up: before funding it simply ends; once funded the coins come back
    /// (cooperatively if the server agrees, else by the timeout path after `E`). After our
    /// invoice was paid there is nothing to abandon.
    pub async fn abandon(&self, id: &SwapId) -> Result<(), ClientError> {
        // Under the swap's lock, on the record as stored now: never half-way through a funding.
        let _guard = self.parts.locks.lock(id).await;
        let (mut version, mut rec) = self.swap(id).await?;
        if rec.state.is_terminal() {
            return Err(ClientError::OfferRefused(format!(
                "the swap is already {}",
                state_name(&rec.state)
            )));
        }
        // Never end a swap whose HTLC holds coins: those come back by a refund, which needs
        // the funding confirmed.
        self.parts.watcher.lock().await.sync().await.map_err(backend)?;
        let tip = self.parts.chain.tip().await.map_err(backend)?.height;
        let chain = self.observed_view(*id, &mut version, &mut rec, tip).await?;
        let funded = chain
            .outputs
            .iter()
            .find(|o| o.refundable())
            .map(|o| o.outpoint.txid)
            .or(chain.missing.first().map(|o| o.txid));
        if let (Some(txid), State::Created | State::Persisted | State::Funding { .. }) = (funded, &rec.state) {
            return Err(ClientError::OfferRefused(format!(
                "the HTLC is funded ({txid}); abandon again once it confirms and the coins are refunded"
            )));
        }
        runner::apply(self, *id, &mut version, &mut rec, Event::Abandon, &chain).await
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

    /// [`Self::chain_view`] with the swap's memory of its outputs applied (see
    /// [`eddy_core::sm::loop_in_client::observe`]): outputs gone from the view for fewer than
    /// `REORG_SAFETY_DEPTH` blocks are listed as missing; the memory is persisted when it
    /// changes.
    async fn observed_view(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut ClientLoopIn,
        tip: u32,
    ) -> Result<Chain, ClientError> {
        let mut chain = self.chain_view(&id, rec, tip).await?;
        if observe(&mut rec.seen, &mut chain) {
            let missing: Vec<String> = chain.missing.iter().map(ToString::to_string).collect();
            runner::persist(
                self,
                &id,
                version,
                rec,
                json!({"event": "outputs_seen", "height": tip, "missing": missing}),
            )
            .await?;
        }
        Ok(chain)
    }

    /// What the chain shows of swap `id`'s HTLC at `tip`: every output paying exactly its script
    /// and how each is spent (a spend in a block wins over one in the mempool; ours are the
    /// refunds we recorded).
    pub async fn chain_view(&self, id: &SwapId, rec: &ClientLoopIn, tip: u32) -> Result<Chain, ClientError> {
        let status = crate::htlc_status(&*self.parts.watcher.lock().await, id, &rec.htlc)?;
        Ok(chain_of(&status, rec, tip))
    }

    async fn step(&self, id: SwapId, mut version: i64, mut rec: ClientLoopIn, tip: u32) -> Result<(), ClientError> {
        // Persisted but not funded (also after a crash between the two): fund, or adopt —
        // only while a funding can still confirm in time for the server to pay. A failed
        // funding does not skip the block check below.
        let mut fund_error = None;
        if rec.state == State::Persisted && !rec.options.external {
            let chain = self.observed_view(id, &mut version, &mut rec, tip).await?;
            if tip > loop_in_last_funding_height(rec.terms.expiry) {
                runner::apply(self, id, &mut version, &mut rec, Event::FundingWindowClosed, &chain).await?;
            } else if let Err(e) = self.act(id, &mut version, &mut rec, Action::FundHtlc, &chain).await {
                tracing::warn!(swap = %id, error = %e, "funding");
                fund_error = Some(e);
            }
        }
        let chain = self.observed_view(id, &mut version, &mut rec, tip).await?;
        // Our invoice first: a swap paid for must never take the refund path, and a daemon
        // back after downtime past `E` would otherwise see its funding confirmed, then `E`,
        // and refund the output the server paid for before reading the invoice.
        if matches!(
            rec.state,
            State::Persisted | State::Funding { .. } | State::Funded { .. } | State::Refunding { .. }
        ) {
            if let Ok(HoldInvoiceState::Settled { .. }) = self.parts.ln.hold_invoice_state(&rec.htlc.payment_hash).await
            {
                // We are paid: help the server claim by the key path (smaller, private). Its
                // node may learn the preimage a moment after ours released it: while it still
                // says "paying", wait for the next pass. Best effort otherwise; the server falls
                // back to the script path.
                let server_state = crate::bounded(self.server.swap_state(&id)).await.ok();
                // Never near `E`: once paid we must be out of the refund path well before it.
                let plenty_of_time = tip < eddy_core::constants::loop_in_last_payment_height(rec.terms.expiry);
                if server_state != Some(SwapState::Paying) || !plenty_of_time {
                    if server_state == Some(SwapState::Claiming) {
                        if let Err(e) = self.cosign_claim(&id, &rec, &chain).await {
                            tracing::debug!(swap = %id, error = %e, "no cooperative claim");
                        }
                    }
                    runner::apply(self, id, &mut version, &mut rec, Event::InvoiceSettled, &chain).await?;
                }
            }
        }
        if matches!(rec.state, State::Persisted | State::Funding { .. }) {
            // Confirmed funding (or nothing ever came): the machine moves on.
            runner::apply(self, id, &mut version, &mut rec, Event::Block, &chain).await?;
        }
        // Paid: the server may ask for its cooperative claim at any pass while its output is
        // not spent in a block, not only in the pass in which we saw the invoice settled (only
        // ever for the output it paid for). Its claim in a mempool may be bumped: each bump is
        // a new batch the server offers for co-signing (a signature costs us nothing now).
        let claim_pending = server_output(&rec.terms, &chain.outputs)
            .and_then(|o| chain.outputs.iter().find(|x| x.outpoint == o))
            .is_some_and(|o| o.spend.is_none_or(|s| s.confs == 0));
        if rec.state == State::Paid
            && claim_pending
            && crate::bounded(self.server.swap_state(&id)).await.ok() == Some(SwapState::Claiming)
        {
            if let Err(e) = self.cosign_claim(&id, &rec, &chain).await {
                tracing::debug!(swap = %id, error = %e, "no cooperative claim");
            }
        }
        if let State::Funded { .. } = rec.state {
            if let Ok(s) = crate::bounded(self.server.swap_state(&id)).await {
                if s == SwapState::Refundable {
                    runner::apply(self, id, &mut version, &mut rec, Event::SwapFailed, &chain).await?;
                }
            }
        }
        runner::apply(self, id, &mut version, &mut rec, Event::Block, &chain).await?;
        fund_error.map_or(Ok(()), Err)
    }

    /// Co-signs the server's key-path claim of our HTLC. Called only once our invoice is
    /// settled (we hold the payment), and only for a claim spending exactly the one output the
    /// server paid for: a confirmed output of exactly the amount ([`server_output`]). Every
    /// other output paying the address is ours, and a co-signed key-path spend of it would hand
    /// it to the server.
    ///
    /// A server that offers only the claim's sighash (a Boltz provider) gets a signature only
    /// while the address has only ever held that output, read again after the server answered:
    /// a signature commits to one input of this swap's key, and with one output there is no
    /// other it could spend. (What is left is a second output of ours that the server sees
    /// before our chain source does, in the moment between that read and the signature: the
    /// server cannot make us send one, and refusing costs it only a script-path claim.)
    async fn cosign_claim(&self, id: &SwapId, rec: &ClientLoopIn, chain: &Chain) -> Result<(), String> {
        let now = std::time::Instant::now();
        {
            let mut asks = self.claim_asks.lock().unwrap_or_else(|e| e.into_inner());
            if asks.get(id).is_some_and(|at| now < *at) {
                return Ok(());
            }
            asks.insert(*id, now + CLAIM_ASK_BACKOFF);
        }
        self.cosign_claim_now(id, rec, chain).await
    }

    async fn cosign_claim_now(&self, id: &SwapId, rec: &ClientLoopIn, chain: &Chain) -> Result<(), String> {
        let (server_nonce, asked) = crate::bounded(self.server.claim_request(id))
            .await
            .map_err(|e| e.to_string())?;
        let htlc = Htlc::new(rec.htlc).map_err(|e| e.to_string())?;
        let Htlc::Taproot(taproot) = &htlc else {
            return Err("not a taproot HTLC".into());
        };
        let msg = match asked {
            crate::ClaimToSign::Transaction { tx, index, prevouts } => {
                let paid = check_claim_request(&rec.terms, chain, &tx, index).map_err(|e| e.to_string())?;
                let Some(funding) = chain.outputs.iter().find(|o| o.outpoint == paid) else {
                    return Err("the claim does not spend our HTLC".into());
                };
                let ours = bitcoin::TxOut {
                    value: funding.value,
                    script_pubkey: htlc.script_pubkey(),
                };
                let prevouts = match prevouts {
                    Some(p) => p,
                    None if tx.input.len() == 1 => vec![ours.clone()],
                    None => return Err("a claim of several inputs must name their prevouts".into()),
                };
                // Our input's prevout exactly, and no other input said to spend our address (a
                // misstated prevout would only make the signature invalid; this says so first).
                if prevouts.get(index) != Some(&ours)
                    || prevouts
                        .iter()
                        .enumerate()
                        .any(|(i, p)| i != index && p.script_pubkey == ours.script_pubkey)
                {
                    return Err("the claim's prevouts misstate our HTLC's output".into());
                }
                eddy_core::tx::cooperative_sighash_at(&tx, index, &prevouts).map_err(|e| e.to_string())?
            }
            crate::ClaimToSign::Sighash { preimage, sighash } => {
                if preimage.payment_hash() != rec.htlc.payment_hash {
                    return Err("the server's preimage is not this swap's".into());
                }
                // The chain as it is now, after the server's answers (which it may delay to
                // see a second output of ours arrive first), and every output this swap ever
                // saw, even one gone from the view since (evicted, reorged out: it may come
                // back).
                self.parts
                    .watcher
                    .lock()
                    .await
                    .sync()
                    .await
                    .map_err(|e| e.to_string())?;
                let now = self
                    .chain_view(id, rec, chain.height)
                    .await
                    .map_err(|e| e.to_string())?;
                let paid = server_output(&rec.terms, &now.outputs);
                let other = now.outputs.iter().any(|o| Some(o.outpoint) != paid)
                    || rec.seen.iter().any(|o| Some(o.outpoint) != paid)
                    || !chain.missing.is_empty();
                if paid.is_none() || other {
                    return Err(
                        "a claim offered as a sighash is co-signed only while the HTLC has only ever held the output paid for"
                            .into(),
                    );
                }
                sighash
            }
        };
        let (nonce, partial) = eddy_core::musig::cosign(
            taproot,
            &self.parts.keys.secret(KEY_PURPOSE, id),
            msg,
            &id.0,
            &server_nonce,
        )
        .map_err(|e| e.to_string())?;
        crate::bounded(self.server.claim_cosign(id, &nonce, &partial))
            .await
            .map_err(|e| e.to_string())
    }

    /// Refunds each of `outpoints` (one transaction each); a failure on one does not keep the
    /// others from being refunded (the first error is returned after all were tried).
    async fn refund_all(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut ClientLoopIn,
        chain: &Chain,
        outpoints: &[OutPoint],
        cooperative: bool,
    ) -> Result<(), ClientError> {
        let mut first = None;
        for outpoint in outpoints {
            if let Err(e) = self.refund(id, version, rec, chain, *outpoint, cooperative).await {
                tracing::warn!(swap = %id, %outpoint, error = %e, "refund");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    async fn refund(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut ClientLoopIn,
        chain: &Chain,
        outpoint: OutPoint,
        cooperative: bool,
    ) -> Result<(), ClientError> {
        let tip = chain.height;
        let Some(out) = chain.outputs.iter().find(|o| o.outpoint == outpoint) else {
            return Ok(());
        };
        if out.spend.is_some_and(|s| s.confs >= 1) {
            return Ok(());
        }
        let value = out.value;
        if rec.refund_to.is_none() {
            rec.refund_to = Some(self.parts.ln.new_address().await.map_err(backend)?.script_pubkey());
            runner::persist(self, &id, version, rec, json!({"event": "refund_address"})).await?;
        }
        let dest = rec
            .refund_to
            .clone()
            .ok_or_else(|| ClientError::Backend("no refund address".into()))?;
        let htlc = Htlc::new(rec.htlc).map_err(backend)?;
        let blocks_left = loop_in_max_payment_cltv(rec.terms.expiry).saturating_sub(tip);
        let conf_target = rec.options.conf_target.unwrap_or(self.parts.cfg.conf_target);
        let estimate = self
            .parts
            .chain
            .fee_rate(sweep_conf_target(blocks_left, conf_target))
            .await
            .map_err(backend)?;
        let cosigner = crate::ServerCosigns::Refund(&*self.server, id);
        let job = SweepJob {
            label: "refund",
            outpoint,
            value,
            htlc: &htlc,
            // Before `E` only the server's co-signature refunds (the next block asks again if it
            // refuses); from `E` the timeout path.
            script_path: (!cooperative).then_some(SpendPath::Refund),
            cosigner: cooperative.then_some(&cosigner as &dyn eddy_engine::sweep::Cosigner),
            key: self.parts.keys.secret(KEY_PURPOSE, &id),
            dest,
            estimate,
            // Not racing a deadline of ours: the funds are ours either way.
            blocks_left: u32::MAX,
            max_fee: rec
                .options
                .max_miner_fee
                .map_or(self.parts.cfg.max_miner_fee.max(value / 20), Amount::from_sat),
            tip,
            may_be_early: true,
            seen: out.spend.map(|s| s.txid).into_iter().collect(),
        };
        match sweep(
            self,
            &*self.parts.chain,
            id,
            version,
            rec,
            Some(rec.refund_of(outpoint)),
            move |r: &mut ClientLoopIn, s| r.set_refund(outpoint, s),
            job,
        )
        .await?
        {
            Swept::New { txid, .. } => {
                runner::apply(self, id, version, rec, Event::RefundBroadcast { txid }, chain).await
            }
            Swept::Unchanged => Ok(()),
        }
    }
}

/// The machine's view of a swap's HTLC from the watcher's `status` at `tip`.
fn chain_of(status: &WatchStatus, rec: &ClientLoopIn, tip: u32) -> Chain {
    let outputs = status
        .fundings
        .iter()
        .map(|f| {
            let spends = status.spends.iter().filter(|s| s.outpoint == f.outpoint);
            // A spend in a block wins; else one in the mempool, someone else's first (a race
            // our refund must win is worth knowing about).
            let spend = spends
                .map(|s| OutputSpend {
                    txid: s.txid,
                    confs: WatchStatus::confirmations(s.height, tip),
                    ours: rec.is_our_refund(&s.txid),
                })
                .max_by_key(|s| (s.confs, !s.ours));
            HtlcOutput {
                outpoint: f.outpoint,
                value: f.value,
                confs: WatchStatus::confirmations(f.height, tip),
                spend,
            }
        })
        .collect();
    Chain {
        height: tip,
        outputs,
        missing: vec![],
    }
}

#[async_trait::async_trait]
impl crate::ClientEngine for LoopInClient {
    type Rec = ClientLoopIn;

    fn parts(&self) -> &crate::ClientParts {
        &self.parts
    }

    async fn step_one(&self, id: SwapId, version: i64, rec: ClientLoopIn, tip: u32) -> Result<(), ClientError> {
        self.step(id, version, rec, tip).await
    }

    /// Swaps done on our side (paid, every output of ours settled) whose server claim is not in
    /// a block yet: the server's claim rounds keep being co-signed — each bump, and each new
    /// round a swap paid later joins — until the output it paid for is spent in a block or `E`
    /// comes (best effort: after a restart the server falls back to its script path).
    async fn after_pass(&self, tip: u32) -> Result<(), ClientError> {
        let ids: Vec<SwapId> = self
            .claim_asks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for id in ids {
            let Ok((_, rec)) = self.swap(&id).await else {
                continue;
            };
            let done = match rec.state {
                State::Paid => false,
                State::Succeeded if tip < rec.terms.expiry => {
                    let chain = self.chain_view(&id, &rec, tip).await?;
                    let spent_in_block = server_output(&rec.terms, &chain.outputs)
                        .and_then(|o| chain.outputs.iter().find(|x| x.outpoint == o))
                        .is_none_or(|o| o.spend.is_some_and(|s| s.confs >= 1));
                    if !spent_in_block
                        && crate::bounded(self.server.swap_state(&id)).await.ok() == Some(SwapState::Claiming)
                    {
                        if let Err(e) = self.cosign_claim(&id, &rec, &chain).await {
                            tracing::debug!(swap = %id, error = %e, "no cooperative claim");
                        }
                    }
                    spent_in_block
                }
                _ => true,
            };
            if done {
                self.claim_asks.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            }
        }
        Ok(())
    }
}

eddy_engine::record!(
    ClientLoopIn,
    LoopInClientMachine,
    SwapKind::LoopInClient,
    "loop-in transition",
    |event, chain| event_json(event, chain)
);

/// The loop-in's side effects: funding the HTLC and refunding it.
#[async_trait::async_trait]
impl runner::Effects<ClientLoopIn> for LoopInClient {
    /// What the chain shows of the swap's HTLC at this pass's tip.
    type Ctx = Chain;
    type Error = ClientError;

    fn store(&self) -> &dyn SwapStore {
        &*self.parts.store
    }

    fn view<'a>(&self, chain: &'a Chain) -> &'a Chain {
        chain
    }

    async fn act(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut ClientLoopIn,
        action: Action,
        chain: &Chain,
    ) -> Result<(), ClientError> {
        match action {
            Action::FundHtlc => {
                if rec.state != State::Persisted || rec.options.external {
                    return Ok(());
                }
                // Never twice: an output paying the HTLC (ours from before a crash, or the
                // user's) is adopted.
                self.parts.watcher.lock().await.sync().await.map_err(backend)?;
                let existing = self
                    .chain_view(&id, rec, chain.height)
                    .await?
                    .outputs
                    .iter()
                    .find(|o| o.refundable())
                    .map(|o| o.outpoint.txid);
                let txid = match existing {
                    Some(t) => t,
                    None => {
                        // Only while the funding can confirm in time for the server to pay.
                        if chain.height > loop_in_last_funding_height(rec.terms.expiry) {
                            return Ok(());
                        }
                        eddy_store::crash_point("loop_in.fund.before_broadcast");
                        let htlc = Htlc::new(rec.htlc).map_err(backend)?;
                        let rate = self
                            .parts
                            .chain
                            .fee_rate(rec.options.conf_target.unwrap_or(self.parts.cfg.conf_target))
                            .await
                            .map_err(backend)?;
                        // The miner-fee limit holds at funding time too (fees may have risen
                        // since the swap was created): not now, maybe at a later pass.
                        let max_miner = rec
                            .options
                            .max_miner_fee
                            .map_or(self.parts.cfg.max_miner_fee, Amount::from_sat);
                        let estimate = funding_fee_estimate(rate);
                        if estimate > max_miner {
                            return Err(ClientError::Backend(format!(
                                "not funding now: the miner fee is estimated at {} sat, above the limit {} sat",
                                estimate.to_sat(),
                                max_miner.to_sat()
                            )));
                        }
                        self.parts
                            .ln
                            .send_outputs(&[(htlc.script_pubkey(), rec.terms.amount)], rate)
                            .await
                            .map_err(backend)?
                            .compute_txid()
                    }
                };
                eddy_store::crash_point("loop_in.fund.after_broadcast");
                runner::apply(self, id, version, rec, Event::FundingBroadcast { txid }, chain).await
            }
            Action::RequestCooperativeRefund { outpoints } => {
                // Our invoice must not be payable once we take the coins back.
                let _ = self.parts.ln.cancel_hold_invoice(&rec.htlc.payment_hash).await;
                self.refund_all(id, version, rec, chain, &outpoints, true).await
            }
            Action::BroadcastTimeoutRefund { outpoints } => {
                self.refund_all(id, version, rec, chain, &outpoints, false).await
            }
        }
    }
}

fn event_json(e: &Event, chain: &Chain) -> serde_json::Value {
    match e {
        Event::OfferValidated => json!({"event": "offer_validated"}),
        Event::OfferRejected => json!({"event": "offer_rejected"}),
        Event::FundingBroadcast { txid } => json!({"event": "funding_broadcast", "txid": txid.to_string()}),
        Event::InvoiceSettled => json!({"event": "invoice_settled"}),
        Event::SwapFailed => json!({"event": "swap_failed"}),
        Event::Abandon => json!({"event": "abandon"}),
        Event::Block => json!({
            "event": "block",
            "height": chain.height,
            "outputs": chain.outputs.iter().map(|o| json!({
                "outpoint": o.outpoint.to_string(),
                "value_sat": o.value.to_sat(),
                "confs": o.confs,
                "spent_by": o.spend.map(|s| s.txid.to_string()),
                "spend_confs": o.spend.map(|s| s.confs),
            })).collect::<Vec<_>>(),
        }),
        Event::RefundBroadcast { txid } => json!({"event": "refund_broadcast", "txid": txid.to_string()}),
        Event::FundingWindowClosed => json!({"event": "funding_window_closed", "height": chain.height}),
    }
}
