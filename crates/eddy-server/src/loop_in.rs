//! The loop-in engine (server side): [`LoopInEngine`] over the parts every swap kind shares
//! ([`ServerCore`]: store, chain watcher, keys, swap wallet). The client funds a P2TR HTLC (server claims with the preimage, client refunds
//! after `E`); once the funding is exactly the amount and confirmed, the server pays the client's
//! invoice with a CLTV limit that leaves [`eddy_core::constants::LOOP_IN_CLAIM_MARGIN`] before
//! `E`, learns the preimage from the payment and claims the HTLC into its swap wallet — with
//! every other paid loop-in, in one transaction co-signed by their clients, bumped every block
//! ([`crate::loop_in_claims`]). When the swap fails (under- or over-payment, too late, the
//! payment failed, or the client asks first) the server co-signs the client's cooperative
//! refund at once — never while a payment for the hash is in flight or settled, and never pays
//! after co-signing one.

use bitcoin::{Amount, OutPoint, ScriptBuf};
use eddy_backends::{LnError, PayParams, PaymentStatus, WatchStatus};
use eddy_core::constants::{
    BOLTZ_SLOT_SHARE_PERCENT, DEFAULT_LOOP_IN_EXPIRY_DELTA, LOOP_IN_SEND_OUTCOME_GRACE_SECS,
    LOOP_IN_UNFUNDED_OFFER_BLOCKS, PAYING_LOOP_IN_EXPIRY_DELTA, UNFUNDED_LOOP_IN_OFFERS_PER_SLOT,
};
use eddy_core::htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams};
use eddy_core::musig::{cosign, PartialSigBytes, PubNonceBytes};
use eddy_core::sm::loop_in_server::{Action, Event, LoopInServerMachine, State, Terms};
use eddy_core::sweep::Sweep;
use eddy_core::tx::SpendPath;
use eddy_core::types::SwapId;
use eddy_core::validate::{validate_loop_in_request, LoopInOffer};
use eddy_engine::runner;
use eddy_engine::sweep::{sweep, SweepJob};
use eddy_store::{state_name, StoreError, SwapKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

use std::sync::Arc;

use crate::server_core::{unix_now, ServerCore, ServerError};

/// Key purpose of the server's loop-in claim keys.
pub(crate) const KEY_PURPOSE: eddy_store::KeyPurpose = eddy_store::KeyPurpose::ServerLoopIn;
/// Confirmations of the funding before the server pays: the shared rule's
/// [`eddy_core::constants::LOOP_IN_SERVER_FUNDING_CONFS`] (one constant for both sides).
pub const LOOP_IN_FUNDING_CONFS: u32 = eddy_core::constants::LOOP_IN_SERVER_FUNDING_CONFS;
/// Confirmation target of the claim while far from `E` (nearer, `sweep_conf_target` tightens it).
const CLAIM_CONF_TARGET: u16 = 6;
/// The largest funding transaction kept in a record (`ServerLoopIn::funding_tx`), serialized:
/// a standard wallet's lockup is a few hundred bytes; a bloated one is read from the node when
/// asked (rate limited) rather than parsed with the record at every status read.
const MAX_KEPT_FUNDING_TX_BYTES: usize = 10_000;
/// Share of the swap fee the server spends on routing the client's invoice, at most.
const ROUTING_FEE_SHARE_PPM: u64 = 500_000;

/// A loop-in request (the wire body of `POST /v1/loop-in`).
pub use eddy_core::validate::LoopInCreate;

/// One server loop-in as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLoopIn {
    /// The HTLC.
    pub htlc: HtlcParams,
    /// The client's invoice.
    pub invoice: String,
    /// The state machine's terms.
    pub terms: Terms,
    /// The server's fee.
    pub swap_fee: Amount,
    /// Height at creation (rescans start here).
    pub created_height: u32,
    /// The funding output, once seen.
    pub funding: Option<OutPoint>,
    /// The claim (every version: script path and cooperative).
    pub claim: Option<Sweep>,
    /// Records written before the cooperative claim's block was the machine's
    /// (`State::Claiming { cooperative_until }`): folded into the state at the next step,
    /// never written again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coop_wait_until: Option<u32>,
    /// The node the payment must arrive through, as the client asked.
    #[serde(default)]
    pub last_hop: Option<bitcoin::secp256k1::PublicKey>,
    /// Records written before the retries were the machine's (`State::Paying { attempt,
    /// retry_at }`): attempts after the first. Folded into the state at the next step, never
    /// written again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pay_retries: u32,
    /// Records written before: when the next attempt was due (folded like `pay_retries`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<u64>,
    /// After a send whose outcome is unknown (the node may have received it): until when (unix
    /// seconds) the node's payment record is not read as "nothing sent"
    /// ([`LOOP_IN_SEND_OUTCOME_GRACE_SECS`]).
    #[serde(default)]
    pub send_outcome_unknown_until: Option<u64>,
    /// The transaction of `funding`, hex, kept when the funding is recorded: Boltz wallets
    /// read it to refund (`GET /v2/swap/submarine/{id}/transaction`), long after the chain
    /// source's recent blocks, and an open call must never make the node search for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funding_tx: Option<String>,
    /// Made through Boltz's submarine door (paying anyone's invoice): such swaps hold at most
    /// their share of the slots ([`eddy_core::constants::BOLTZ_SLOT_SHARE_PERCENT`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub boltz: bool,
    /// The state machine's state.
    pub state: State,
}

impl ServerLoopIn {
    /// Whether this record only closes a refunded reservation's hash
    /// (`LoopInEngine::close_reservation`): no invoice, never a swap.
    pub fn is_tombstone(&self) -> bool {
        self.invoice.is_empty()
    }

    /// Whether this is a live unfunded offer at `tip`: no funding seen yet, made fewer than
    /// [`LOOP_IN_UNFUNDED_OFFER_BLOCKS`] blocks ago. Such offers count against the unfunded-offer
    /// budgets (global: `create_loop_in`; per client: the HTTP layer).
    pub fn is_live_offer(&self, tip: u32) -> bool {
        self.state == State::Created
            && self.funding.is_none()
            && tip < self.created_height.saturating_add(LOOP_IN_UNFUNDED_OFFER_BLOCKS)
    }
}

/// A loop-in its door checked: what [`LoopInEngine::open`] makes a swap of.
struct LoopInAsk<'a> {
    invoice: &'a str,
    payment_hash: eddy_core::types::PaymentHash,
    amount: Amount,
    swap_fee: Amount,
    invoice_amount: Amount,
    refund_key: bitcoin::secp256k1::PublicKey,
    last_hop: Option<bitcoin::secp256k1::PublicKey>,
    /// `E − tip`.
    expiry_delta: u32,
    /// `E` and the creation height, fixed already by a [`Reservation`] (else `tip +
    /// expiry_delta` and `tip`): the chain is read for the swap from its reservation on.
    reserved: Option<(u32, u32)>,
    /// Made through Boltz's submarine door.
    boltz: bool,
}

/// A submarine swap made before its invoice (Boltz's creation with a `preimageHash`): its HTLC
/// is fixed — hash, the client's refund key, the server's key (derived from the hash) and `E`
/// — and the invoice must follow within [`LOOP_IN_UNFUNDED_OFFER_BLOCKS`]; only then is the
/// swap made, with every check of a creation (`LoopInEngine::create_paying`). A reservation
/// holds no slot and no liquidity; what was locked at its address before the invoice is judged
/// like any lockup once the swap exists (exactly the amount, confirmed, or refunded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The invoice's hash to come.
    pub payment_hash: eddy_core::types::PaymentHash,
    /// The client's refund key.
    pub refund_key: bitcoin::secp256k1::PublicKey,
    /// `E`.
    pub expiry: u32,
    /// The tip when it was made.
    pub created_height: u32,
}

impl Reservation {
    /// Whether its invoice may still be set at `tip`.
    pub fn open_at(&self, tip: u32) -> bool {
        tip < self.created_height.saturating_add(LOOP_IN_UNFUNDED_OFFER_BLOCKS)
    }

    /// Its HTLC, with the server's key `server_key`.
    pub fn htlc(&self, server_key: bitcoin::secp256k1::PublicKey) -> HtlcParams {
        HtlcParams {
            kind: HtlcKind::P2trIn,
            payment_hash: self.payment_hash,
            claim_key: HtlcKey::Pubkey(server_key),
            refund_key: HtlcKey::Pubkey(self.refund_key),
            timeout: self.expiry,
        }
    }
}

/// The loop-in engine: the server's loop-ins over the shared [`ServerCore`].
pub struct LoopInEngine {
    pub(crate) core: Arc<ServerCore>,
    /// The claims' rounds (`crate::loop_in_claims`).
    pub(crate) claims: crate::loop_in_claims::Claims,
}

impl LoopInEngine {
    /// The loop-in engine over `core`.
    pub(crate) fn new(core: Arc<ServerCore>) -> LoopInEngine {
        LoopInEngine {
            core,
            claims: crate::loop_in_claims::Claims::default(),
        }
    }

    /// How many Boltz submarine swaps may pay (or be live offers) at once:
    /// [`BOLTZ_SLOT_SHARE_PERCENT`] of the slots, rounded up, at least one.
    fn boltz_share(&self) -> usize {
        (self.core.config().max_active_swaps * BOLTZ_SLOT_SHARE_PERCENT)
            .div_ceil(100)
            .max(1)
    }

    /// Whether Boltz submarine swaps other than `id` fill their share of payments.
    async fn boltz_payments_full(&self, id: &SwapId) -> Result<bool, ServerError> {
        let paying = Self::active(&**self.core.store())
            .await?
            .iter()
            .filter(|(other, _, r)| other != id && r.boltz && matches!(r.state, State::Paying { .. }))
            .count();
        Ok(paying >= self.boltz_share())
    }

    /// The active loop-ins in `store`.
    pub(crate) async fn active(
        store: &dyn eddy_store::SwapStore,
    ) -> Result<Vec<(SwapId, i64, ServerLoopIn)>, ServerError> {
        Ok(runner::active(store).await?)
    }

    /// Every active loop-in's watch: its id, the height it was created at, its HTLC script.
    pub(crate) async fn watches_in(
        store: &dyn eddy_store::SwapStore,
    ) -> Result<Vec<(eddy_backends::WatchId, u32, ScriptBuf)>, ServerError> {
        let mut out = vec![];
        for (id, _, r) in Self::active(store).await? {
            let spk = Htlc::new(r.htlc).map_err(backend)?.script_pubkey();
            out.push((eddy_backends::swap_watch_id(&id), r.created_height, spk));
        }
        Ok(out)
    }

    /// A stored loop-in.
    pub async fn swap(&self, id: &SwapId) -> Result<(i64, ServerLoopIn), ServerError> {
        runner::load(&**self.core.store(), id)
            .await?
            .ok_or(ServerError::NotFound(*id))
    }

    /// What a loop-in of `amount` costs (amount limits checked).
    pub fn quote(&self, amount: Amount) -> Result<eddy_core::fees::LoopInQuote, ServerError> {
        self.core
            .config()
            .fees
            .loop_in_quote(amount)
            .map_err(|e| ServerError::Invalid(e.to_string()))
    }

    /// Creates a loop-in: checks the invoice (amount = swap amount − fee, network, lifetime,
    /// final CLTV within the payment budget), fixes `E`, persists, answers the HTLC to fund.
    pub(crate) async fn create(&self, req: &LoopInCreate, loop_outs: usize) -> Result<LoopInOffer, ServerError> {
        self.core.taking_swaps()?;
        let valid = validate_loop_in_request(
            &req.invoice,
            req.amount,
            &self.core.config().fees,
            self.core.network(),
            DEFAULT_LOOP_IN_EXPIRY_DELTA,
            unix_now(),
        )
        .map_err(|e| ServerError::Invalid(e.to_string()))?;
        let ask = LoopInAsk {
            invoice: &req.invoice,
            payment_hash: valid.invoice.payment_hash,
            amount: req.amount,
            swap_fee: valid.quote.swap_fee,
            invoice_amount: valid.quote.invoice_amount,
            refund_key: req.refund_key,
            last_hop: req.last_hop,
            expiry_delta: DEFAULT_LOOP_IN_EXPIRY_DELTA,
            reserved: None,
            boltz: false,
        };
        self.open(ask, loop_outs).await
    }

    /// Creates a loop-in that pays anyone's invoice (Boltz's submarine swap): the invoice passes
    /// the checks of every loop-in invoice ([`eddy_core::validate::loop_in_invoice`]) and is
    /// not this server's own; `quote` prices it from its amount (the door's pricing). Its HTLC
    /// expires [`PAYING_LOOP_IN_EXPIRY_DELTA`] blocks away: a stranger's invoice may be several
    /// hops away. With a `reserved` HTLC ([`Reservation`]), the invoice must pay to its hash and
    /// come while the reservation is open; the swap then takes its key and `E`.
    pub(crate) async fn create_paying(
        &self,
        invoice: &str,
        refund_key: bitcoin::secp256k1::PublicKey,
        quote: impl FnOnce(Amount) -> Result<eddy_core::fees::LoopInQuote, ServerError>,
        loop_outs: usize,
        reserved: Option<&Reservation>,
    ) -> Result<LoopInOffer, ServerError> {
        self.core.taking_swaps()?;
        // The blocks the HTLC has left: a reserved one's timeout was fixed up to
        // `LOOP_IN_UNFUNDED_OFFER_BLOCKS` ago, so its invoice's final CLTV gets that much less
        // room in the route budget.
        let (delta, tip) = match reserved {
            Some(r) => {
                let tip = self.core.tip().await?;
                (r.expiry.saturating_sub(tip), Some(tip))
            }
            None => (PAYING_LOOP_IN_EXPIRY_DELTA, None),
        };
        let facts = eddy_core::validate::loop_in_invoice(invoice, self.core.network(), delta, unix_now())
            .map_err(|e| ServerError::Invalid(e.to_string()))?;
        if let (Some(r), Some(tip)) = (reserved, tip) {
            if facts.payment_hash != r.payment_hash || refund_key != r.refund_key {
                return Err(ServerError::Invalid(
                    "the invoice's payment hash is not the swap's".into(),
                ));
            }
            if !r.open_at(tip) {
                return Err(ServerError::Invalid(format!(
                    "the swap's invoice was due within {LOOP_IN_UNFUNDED_OFFER_BLOCKS} blocks of its creation: make a new swap"
                )));
            }
        }
        let msat = facts.amount_msat.map_or(0, |a| a.0);
        if msat % 1000 != 0 {
            return Err(ServerError::Invalid(
                "the invoice's amount must be a whole number of satoshis".into(),
            ));
        }
        let quote = quote(Amount::from_sat(msat / 1000))?;
        // Paying our own node's invoice would move nothing and tie the swap's hash to a
        // payment that cannot route.
        if facts.payee == self.core.ln().info().await.map_err(backend)?.pubkey {
            return Err(ServerError::Invalid("the invoice is this server's own".into()));
        }
        let ask = LoopInAsk {
            invoice,
            payment_hash: facts.payment_hash,
            amount: quote.amount,
            swap_fee: quote.swap_fee,
            invoice_amount: quote.invoice_amount,
            refund_key,
            last_hop: None,
            expiry_delta: PAYING_LOOP_IN_EXPIRY_DELTA,
            reserved: reserved.map(|r| (r.expiry, r.created_height)),
            boltz: true,
        };
        self.open(ask, loop_outs).await
    }

    /// Reservation `r`'s HTLC, with this server's key for its hash.
    pub(crate) fn reserved_htlc(&self, r: &Reservation) -> HtlcParams {
        r.htlc(self.core.keys().public(KEY_PURPOSE, &SwapId::from(r.payment_hash)))
    }

    /// Reserves a submarine swap's HTLC for an invoice of `payment_hash` to come
    /// ([`Reservation`]): nothing is stored by the engine (the door keeps the reservation), no
    /// slot is held. Refused like a creation when the server takes no swaps, when a swap for the
    /// hash exists, or when the refund key is the server's.
    pub(crate) async fn reserve_paying(
        &self,
        payment_hash: eddy_core::types::PaymentHash,
        refund_key: bitcoin::secp256k1::PublicKey,
    ) -> Result<(Reservation, bitcoin::secp256k1::PublicKey), ServerError> {
        self.core.taking_swaps()?;
        let id = SwapId::from(payment_hash);
        if self.core.store().get(&id).await?.is_some() {
            return Err(ServerError::Duplicate(payment_hash));
        }
        let server_key = self.core.keys().public(KEY_PURPOSE, &id);
        if server_key == refund_key {
            return Err(ServerError::Invalid("refund key equals the server key".into()));
        }
        let tip = self.core.tip().await?;
        let reservation = Reservation {
            payment_hash,
            refund_key,
            expiry: tip + PAYING_LOOP_IN_EXPIRY_DELTA,
            created_height: tip,
        };
        // Followed from now, before its address leaves the server: a lockup made before the
        // invoice is seen when the swap is made. (Across a restart before the invoice, a
        // lockup made meanwhile is not: the swap never pays it, and the wallet refunds it at
        // the timeout.)
        let spk = Htlc::new(reservation.htlc(server_key))
            .map_err(|e| ServerError::Invalid(e.to_string()))?
            .script_pubkey();
        self.core.watch(id, spk).await;
        Ok((reservation, server_key))
    }

    /// The value of the output a refund `tx` of reservation `r`'s HTLC spends: it must spend
    /// exactly one output, paying the HTLC's script — read from the watcher, else from the
    /// chain. Checked before anything about the reservation changes.
    pub(crate) async fn reservation_output_value(
        &self,
        r: &Reservation,
        tx: &bitcoin::Transaction,
    ) -> Result<Amount, ServerError> {
        let id = SwapId::from(r.payment_hash);
        let params = self.reserved_htlc(r);
        let [input] = tx.input.as_slice() else {
            return Err(ServerError::Invalid("the refund must spend exactly the HTLC".into()));
        };
        let spk = Htlc::new(params).map_err(backend)?.script_pubkey();
        let watched = self
            .core
            .htlc_status(&id, &params)
            .await?
            .fundings
            .iter()
            .find(|f| f.outpoint == input.previous_output)
            .map(|f| f.value);
        if let Some(v) = watched {
            return Ok(v);
        }
        self.core
            .chain()
            .transaction(&input.previous_output.txid)
            .await
            .map_err(backend)?
            .and_then(|t| {
                usize::try_from(input.previous_output.vout)
                    .ok()
                    .and_then(|i| t.tx.output.get(i).cloned())
            })
            .filter(|o| o.script_pubkey == spk)
            .map(|o| o.value)
            .ok_or_else(|| ServerError::Invalid("the refund must spend this swap's HTLC".into()))
    }

    /// Co-signs the refund `tx` of an output of `value` ([`Self::reservation_output_value`])
    /// locked at a closed [`Reservation`]'s HTLC: one that will never be a swap — its invoice
    /// window past, or its hash taken by a swap with another HTLC — and no swap with this HTLC
    /// exists, so the server never pays against it. The caller makes sure the reservation's
    /// invoice can no longer be set (the door marks it closed and takes its hash first, under
    /// the lock `set_invoice` takes).
    pub(crate) async fn cosign_reservation_refund(
        &self,
        r: &Reservation,
        client_nonce: &PubNonceBytes,
        tx: &bitcoin::Transaction,
        value: Amount,
    ) -> Result<(PubNonceBytes, PartialSigBytes), ServerError> {
        let id = SwapId::from(r.payment_hash);
        let params = self.reserved_htlc(r);
        let taken = match runner::load::<ServerLoopIn>(&**self.core.store(), &id).await? {
            Some((_, rec)) if rec.htlc == params && !rec.is_tombstone() => {
                return Err(ServerError::Invalid(
                    "the swap was made: it is refunded as a swap".into(),
                ))
            }
            Some(_) => true,
            // Another kind of swap holds the hash (a loop-out): this HTLC is never a swap.
            None => self.core.store().get(&id).await?.is_some(),
        };
        if !taken && r.open_at(self.core.tip().await?) {
            return Err(ServerError::Invalid("its invoice may still be set".into()));
        }
        let htlc = Htlc::new(params).map_err(backend)?;
        let Htlc::Taproot(taproot) = &htlc else {
            return Err(ServerError::Invalid("not a taproot HTLC".into()));
        };
        let msg =
            eddy_core::tx::cooperative_sighash(tx, &htlc, value).map_err(|e| ServerError::Invalid(e.to_string()))?;
        let key = self.core.keys().secret(KEY_PURPOSE, &id);
        cosign(taproot, &key, msg, &id.0, client_nonce).map_err(|e| ServerError::Invalid(e.to_string()))
    }

    /// Closes reservation `r` for good before a refund of its HTLC is co-signed: a terminal
    /// record under its hash (an expired swap with the reservation's HTLC and no invoice, a
    /// tombstone) — every door then refuses a swap for the hash (the store's ids are unique),
    /// so no swap can ever be paid against this HTLC, whatever door or timeout would rebuild
    /// it (a `/v1` loop-in made 176 blocks later has the same expiry). A record already there
    /// is left as it is: the caller's checks read it.
    pub(crate) async fn close_reservation(&self, r: &Reservation) -> Result<(), ServerError> {
        let id = SwapId::from(r.payment_hash);
        let tombstone = ServerLoopIn {
            htlc: self.reserved_htlc(r),
            invoice: String::new(),
            terms: Terms {
                amount: Amount::ZERO,
                expiry: r.expiry,
                funding_confs: LOOP_IN_FUNDING_CONFS,
            },
            swap_fee: Amount::ZERO,
            created_height: r.created_height,
            funding: None,
            claim: None,
            coop_wait_until: None,
            last_hop: None,
            pay_retries: 0,
            retry_at: None,
            send_outcome_unknown_until: None,
            funding_tx: None,
            boltz: true,
            state: State::Expired,
        };
        let event = json!({"event": "reservation_refunded", "expiry": r.expiry});
        match runner::create(&**self.core.store(), id, &tombstone, event).await {
            Ok(_) | Err(StoreError::Duplicate(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a checked loop-in: the server's limits (slots, unfunded offers, liquidity to pay
    /// the invoice), `E`, the HTLC, the record persisted and watched.
    async fn open(&self, ask: LoopInAsk<'_>, loop_outs: usize) -> Result<LoopInOffer, ServerError> {
        let hash = ask.payment_hash;
        let id = SwapId::from(hash);
        if let Some(hop) = ask.last_hop {
            // Refused before anything is funded: a swap accepted here and then paid by
            // another route would not fill the channel the client asked for.
            if !self.core.ln().restricts_last_hop() {
                return Err(ServerError::Invalid(format!(
                    "last_hop {hop}: this server's Lightning node cannot restrict a payment's last hop"
                )));
            }
        }
        if self.core.store().get(&id).await?.is_some() {
            return Err(ServerError::Duplicate(hash));
        }
        // Slots count swaps that cost their client something: funded loop-ins and paid
        // loop-outs (an unfunded offer is free to make, so it must not hold a slot).
        let active_in = Self::active(&**self.core.store()).await?;
        let funded_in = active_in
            .iter()
            .filter(|(_, _, r)| r.state != State::Created || r.funding.is_some())
            .count();
        let active = funded_in + loop_outs;
        if active >= self.core.config().max_active_swaps {
            return Err(ServerError::Unavailable(format!(
                "{active} swaps in flight, the most this server takes"
            )));
        }
        // Unfunded offers are free to make but stored, watched and scanned every pass: a
        // budget of live ones (young and unfunded; per client: the HTTP layer).
        let tip = self.core.tip().await?;
        let unfunded = active_in.iter().filter(|(_, _, r)| r.is_live_offer(tip)).count();
        if unfunded >= self.core.config().max_active_swaps * UNFUNDED_LOOP_IN_OFFERS_PER_SLOT {
            return Err(ServerError::Unavailable(format!(
                "{unfunded} unfunded loop-in offers outstanding; retry later"
            )));
        }
        // Boltz submarine swaps, paying or live unfunded, hold at most their share of the slots:
        // their payee may be anyone's node, which can hold the payment for the whole route
        // budget (`PAYING_ROUTE_CLTV_BUDGET`), freezing the slot and the liquidity that long.
        // (The payments themselves wait for the share too: `boltz_payments_full`.)
        if ask.boltz {
            let share = self.boltz_share();
            let held = active_in
                .iter()
                .filter(|(_, _, r)| r.boltz && (matches!(r.state, State::Paying { .. }) || r.is_live_offer(tip)))
                .count();
            if held >= share {
                return Err(ServerError::Unavailable(format!(
                    "{held} submarine swaps in flight, the most this server takes; retry later"
                )));
            }
        }
        // Refuse what the node cannot send now: a client would fund, the payment would fail
        // and the client would pay a second miner fee for its refund.
        let channels = self.core.ln().channels().await.map_err(backend)?;
        let can = channels.iter().filter(|c| c.usable).map(|c| c.local_msat).sum::<u64>() / 1000;
        let pay = ask.invoice_amount.to_sat();
        if can < pay {
            return Err(ServerError::Unavailable(format!(
                "not enough outbound liquidity now: the invoice asks {pay} sat, this server's channels can send {can} sat"
            )));
        }
        let (expiry, created_height) = ask.reserved.unwrap_or((tip + ask.expiry_delta, tip));
        let server_key = self.core.keys().public(KEY_PURPOSE, &id);
        if server_key == ask.refund_key {
            return Err(ServerError::Invalid("refund key equals the server key".into()));
        }
        let htlc = HtlcParams {
            kind: HtlcKind::P2trIn,
            payment_hash: hash,
            claim_key: HtlcKey::Pubkey(server_key),
            refund_key: HtlcKey::Pubkey(ask.refund_key),
            timeout: expiry,
        };
        let built = Htlc::new(htlc).map_err(|e| ServerError::Invalid(e.to_string()))?;
        let rec = ServerLoopIn {
            htlc,
            invoice: ask.invoice.trim().to_string(),
            terms: Terms {
                amount: ask.amount,
                expiry,
                funding_confs: LOOP_IN_FUNDING_CONFS,
            },
            swap_fee: ask.swap_fee,
            created_height,
            funding: None,
            claim: None,
            coop_wait_until: None,
            last_hop: ask.last_hop,
            pay_retries: 0,
            retry_at: None,
            send_outcome_unknown_until: None,
            funding_tx: None,
            boltz: ask.boltz,
            state: State::Created,
        };
        runner::create(
            &**self.core.store(),
            id,
            &rec,
            json!({"event": "created", "amount_sat": ask.amount.to_sat(), "expiry": expiry}),
        )
        .await
        .map_err(|e| match e {
            StoreError::Duplicate(_) => ServerError::Duplicate(hash),
            e => ServerError::Store(e),
        })?;
        self.core.watch(id, built.script_pubkey()).await;
        self.core.metrics().swap_created();
        tracing::info!(swap = %id, amount_sat = ask.amount.to_sat(), expiry, "loop-in created");
        Ok(LoopInOffer {
            server_key,
            expiry,
            htlc_address: built.address(self.core.network()).to_string(),
            swap_fee: ask.swap_fee,
        })
    }

    /// Co-signs the client's cooperative (key-path) refund: the client's nonce and the unsigned
    /// refund in, the server's nonce and partial signature out. Only while the server has not
    /// paid (state `Created` or `Refundable`, and the node knows no payment for the hash in
    /// flight or settled); after it, the server never pays this swap.
    pub async fn cosign_refund(
        &self,
        id: &SwapId,
        client_nonce: &PubNonceBytes,
        tx: &bitcoin::Transaction,
    ) -> Result<(PubNonceBytes, PartialSigBytes), ServerError> {
        // The lookup and the state check come before any work: an unknown id, or a swap that
        // can no longer be refunded cooperatively, costs no chain sync.
        let (_, rec) = self.swap(id).await?;
        if !rec.state.may_cosign_refund() {
            return Err(ServerError::Invalid(format!(
                "the swap is {}: no cooperative refund",
                state_name(&rec.state)
            )));
        }
        // See the funding the client refunds even between engine passes.
        self.core.sync_chain().await?;
        for _ in 0..3 {
            let (mut version, mut rec) = self.swap(id).await?;
            if !rec.state.may_cosign_refund() {
                return Err(ServerError::Invalid(format!(
                    "the swap is {}: no cooperative refund",
                    state_name(&rec.state)
                )));
            }
            match self
                .core
                .ln()
                .payment_status(&rec.htlc.payment_hash)
                .await
                .map_err(backend)?
            {
                PaymentStatus::Unknown | PaymentStatus::Failed { .. } => {}
                _ => return Err(ServerError::Invalid("a payment for this swap exists".into())),
            }
            let status = self.core.htlc_status(id, &rec.htlc).await?;
            if tx.input.len() != 1 {
                return Err(ServerError::Invalid("the refund must spend exactly the HTLC".into()));
            }
            let Some(funding) = status
                .fundings
                .iter()
                .find(|f| f.outpoint == tx.input[0].previous_output)
            else {
                return Err(ServerError::Invalid("the refund must spend this swap's HTLC".into()));
            };
            let htlc = Htlc::new(rec.htlc).map_err(backend)?;
            let Htlc::Taproot(taproot) = &htlc else {
                return Err(ServerError::Invalid("not a taproot HTLC".into()));
            };
            let msg = eddy_core::tx::cooperative_sighash(tx, &htlc, funding.value)
                .map_err(|e| ServerError::Invalid(e.to_string()))?;
            // Persist "no payment from now on" before handing out the signature.
            let tip = self.core.tip().await?;
            match runner::apply(self, *id, &mut version, &mut rec, Event::RefundRequested, &tip).await {
                Err(ServerError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            if !rec.state.may_cosign_refund() {
                return Err(ServerError::Invalid("the swap moved on".into()));
            }
            let key = self.core.keys().secret(KEY_PURPOSE, id);
            return cosign(taproot, &key, msg, &id.0, client_nonce).map_err(|e| ServerError::Invalid(e.to_string()));
        }
        Err(ServerError::Backend("swap kept changing; retry".into()))
    }

    /// One pass over the active loop-ins (called by `SwapServer::tick`).
    pub(crate) async fn tick(&self, tip: u32) -> Result<(), ServerError> {
        let mut first = None;
        let active = Self::active(&**self.core.store()).await?;
        self.core.metrics().set_active_in(active.len());
        for (id, version, rec) in active {
            if let Err(e) = self.step_in(id, version, rec, tip).await {
                first.get_or_insert(e);
            }
        }
        // Every claim of the pass in one transaction (`loop_in_claims`).
        if let Err(e) = self.claim_batch(tip).await {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    async fn step_in(&self, id: SwapId, mut version: i64, mut rec: ServerLoopIn, tip: u32) -> Result<(), ServerError> {
        if rec.pay_retries > 0 || rec.retry_at.is_some() || rec.coop_wait_until.is_some() || old_claiming(&rec) {
            // A record from before the retries and the cooperative block were the machine's:
            // its count, due time and wait go into the state (a claim already made waits no
            // more).
            match &mut rec.state {
                State::Paying { attempt, retry_at, .. } => {
                    *attempt = rec.pay_retries;
                    *retry_at = rec.retry_at;
                }
                State::Claiming { cooperative_until, .. } if cooperative_until.is_none() => {
                    *cooperative_until = rec.coop_wait_until.or(Some(0));
                }
                _ => {}
            }
            rec.pay_retries = 0;
            rec.retry_at = None;
            rec.coop_wait_until = None;
            runner::persist(self, &id, &mut version, &rec, json!({"event": "record_into_state"})).await?;
        }
        let status = self.core.htlc_status(&id, &rec.htlc).await?;
        // Funding.
        if rec.state == State::Created {
            // The one rule both sides use (review #15): an output of exactly the amount with
            // enough confirmations, the most confirmed — a stranger's unconfirmed or larger
            // output never decides the swap (nor fails it as overpaid).
            let chosen = eddy_core::validate::loop_in_server_output(
                status
                    .fundings
                    .iter()
                    .map(|f| (f.outpoint, f.value, WatchStatus::confirmations(f.height, tip))),
                rec.terms.amount,
                rec.terms.funding_confs,
            );
            // None of the exact amount: a *confirmed* wrong amount still tells the machine
            // (under/overpaid → refundable at once); an unconfirmed one decides nothing.
            let chosen = chosen.or_else(|| {
                status
                    .fundings
                    .iter()
                    .filter(|f| f.height.is_some())
                    .max_by_key(|f| (f.height.map(std::cmp::Reverse), f.outpoint))
                    .map(|f| f.outpoint)
            });
            let chosen = chosen.and_then(|o| status.fundings.iter().find(|f| f.outpoint == o));
            // A coinbase output cannot be spent before it matures: not seen before then (a
            // miner's lockup would be paid for, then hold every claim round back).
            let chosen = match chosen {
                Some(f) if self.immature_coinbase(f, tip).await => {
                    tracing::info!(swap = %id, outpoint = %f.outpoint, "funded by an immature coinbase: waiting");
                    None
                }
                other => other,
            };
            // A Boltz submarine swap's payment waits while its share of the slots is paying
            // (a payee may hold each payment for the whole route budget): the funding is not
            // recorded yet, the next pass asks again, and past the last payment height the
            // machine refuses it (`TooLate`, refunded cooperatively). Offers made long before
            // and funded together cannot get around the share this way.
            let wait_for_slot = match chosen {
                Some(f) if rec.boltz && f.value == rec.terms.amount && rec.terms.may_send(tip) => {
                    self.boltz_payments_full(&id).await?
                }
                _ => false,
            };
            if wait_for_slot {
                tracing::info!(swap = %id, "submarine swap funded; its payment waits for a slot");
            } else if let Some(f) = chosen {
                if rec.funding != Some(f.outpoint) {
                    // Just seen by the watcher: the chain source finds it at once.
                    // Kept only up to `MAX_KEPT_FUNDING_TX_BYTES`: every status read parses the record.
                    rec.funding_tx = match self.core.chain().transaction(&f.outpoint.txid).await {
                        Ok(found) => found
                            .filter(|t| bitcoin::consensus::encode::serialize(&t.tx).len() <= MAX_KEPT_FUNDING_TX_BYTES)
                            .map(|t| bitcoin::consensus::encode::serialize_hex(&t.tx)),
                        Err(e) => {
                            tracing::warn!(swap = %id, error = %e, "the funding transaction could not be read");
                            None
                        }
                    };
                }
                rec.funding = Some(f.outpoint);
                let e = Event::FundingSeen {
                    outpoint: f.outpoint,
                    value: f.value,
                    confs: WatchStatus::confirmations(f.height, tip),
                    height: tip,
                };
                runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
            }
        }
        // The payment.
        if let State::Paying { .. } = rec.state {
            // A send whose outcome is unknown: until the grace ends, only a payment in flight or
            // made counts; no record (or an earlier attempt's failed one) may just mean the node
            // has not registered it yet.
            let now = unix_now();
            let outcome_unknown = match rec.send_outcome_unknown_until {
                Some(t) if now < t => true,
                Some(_) => {
                    rec.send_outcome_unknown_until = None;
                    runner::persist(
                        self,
                        &id,
                        &mut version,
                        &rec,
                        json!({"event": "payment_outcome_grace_over"}),
                    )
                    .await?;
                    false
                }
                None => false,
            };
            match self
                .core
                .ln()
                .payment_status(&rec.htlc.payment_hash)
                .await
                .map_err(backend)?
            {
                PaymentStatus::Succeeded { preimage, .. } => {
                    runner::apply(
                        self,
                        id,
                        &mut version,
                        &mut rec,
                        Event::PaymentSucceeded(preimage),
                        &tip,
                    )
                    .await?;
                }
                PaymentStatus::Failed { .. } | PaymentStatus::Unknown if outcome_unknown => {}
                PaymentStatus::Failed { reason } => {
                    self.payment_failed(id, &mut version, &mut rec, tip, reason).await?;
                }
                // The node refused an attempt (it keeps no record of those): wait for the
                // retry, or give up.
                PaymentStatus::Unknown if matches!(rec.state, State::Paying { retry_at: Some(_), .. }) => {
                    self.payment_failed(id, &mut version, &mut rec, tip, "refused by the node".into())
                        .await?;
                }
                PaymentStatus::Unknown => {
                    // Persisted `Paying` but crashed before paying (or restarted much later):
                    // the machine decides whether a payment may still be sent now.
                    let funding_confs = funding_confs(&status, rec.funding, tip);
                    let e = Event::SendPayment {
                        height: tip,
                        funding_confs,
                    };
                    runner::apply(self, id, &mut version, &mut rec, e, &tip).await?;
                }
                _ => {}
            }
        }
        // Spends of the HTLC (any funding output of it: the client may refund one the server
        // never recorded, e.g. after co-signing before it confirmed).
        // Once the server paid against its chosen output (Claiming, or a payment possibly out
        // in Paying), only a spend of *that* output ends the swap (review #8): a refund of
        // another output of the same script says nothing about the one it claims.
        let fundings: Vec<OutPoint> = match (&rec.state, rec.funding) {
            (State::Claiming { .. } | State::Paying { .. }, Some(f)) => vec![f],
            _ => status.fundings.iter().map(|f| f.outpoint).collect(),
        };
        let spends = status.spends.iter().filter(|s| fundings.contains(&s.outpoint));
        let events = spends.filter_map(|s| {
            let confs = WatchStatus::confirmations(s.height, tip);
            if rec.claim.as_ref().is_some_and(|c| c.all.contains(&s.txid)) {
                Some(Event::ClaimConfirmed { confs })
            } else {
                s.height.map(|_| Event::HtlcRefunded { confs })
            }
        });
        let events: Vec<_> = events.chain([Event::Block { height: tip }]).collect();
        runner::apply_all(self, id, &mut version, &mut rec, events, &tip).await
    }

    /// Whether `f` may be a coinbase output that cannot be spent in the next block: within
    /// `COINBASE_MATURITY` blocks of its own, a funding whose transaction the node cannot show
    /// counts as one (nothing is paid on a guess; past maturity it no longer matters).
    async fn immature_coinbase(&self, f: &eddy_backends::Funding, tip: u32) -> bool {
        let Some(height) = f.height else {
            return false;
        };
        if tip.saturating_add(1).saturating_sub(height) >= bitcoin::blockdata::constants::COINBASE_MATURITY {
            return false;
        }
        match self.core.chain().transaction(&f.outpoint.txid).await {
            Ok(Some(t)) => t.tx.is_coinbase(),
            Ok(None) | Err(_) => true,
        }
    }

    /// A payment attempt failed for good (nothing of it in flight, the node's record says):
    /// [`Event::AttemptFailed`] — the machine sends again after
    /// [`eddy_core::constants::LOOP_IN_PAY_RETRY_SECS`] while attempts
    /// ([`eddy_core::constants::LOOP_IN_PAY_ATTEMPTS`]) and time (before the last payment height)
    /// remain; otherwise the swap fails and becomes refundable.
    async fn payment_failed(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut ServerLoopIn,
        tip: u32,
        reason: String,
    ) -> Result<(), ServerError> {
        // Whatever the send said, the node's own record decides: a payment in flight or made
        // is never a failure (the swap must not become refundable while it can still pay).
        match self
            .core
            .ln()
            .payment_status(&rec.htlc.payment_hash)
            .await
            .map_err(backend)?
        {
            PaymentStatus::InFlight | PaymentStatus::Succeeded { .. } => return Ok(()),
            PaymentStatus::Unknown | PaymentStatus::Failed { .. } => {}
        }
        // The machine schedules the next attempt, sends it once due, or fails the swap.
        if let State::Paying {
            attempt,
            retry_at: None,
            ..
        } = rec.state
        {
            tracing::info!(swap = %id, %reason, attempt = attempt + 1, "loop-in payment attempt failed");
        }
        let status = self.core.htlc_status(&id, &rec.htlc).await?;
        let e = Event::AttemptFailed {
            height: tip,
            now: unix_now(),
            funding_confs: funding_confs(&status, rec.funding, tip),
            reason,
        };
        runner::apply(self, id, version, rec, e, &tip).await
    }

    /// The claim of `outpoint` on the script path with `preimage`, into the swap wallet (`dest`),
    /// on the one schedule the cooperative claim follows too: the estimate for the blocks left
    /// before `E`, at most a fifth of the value (everything but dust near `E`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn claim_job<'a>(
        &self,
        id: &SwapId,
        rec: &ServerLoopIn,
        htlc: &'a Htlc,
        outpoint: OutPoint,
        value: Amount,
        preimage: eddy_core::types::Preimage,
        dest: ScriptBuf,
        tip: u32,
    ) -> Result<SweepJob<'a>, ServerError> {
        let blocks_left = rec.terms.expiry.saturating_sub(tip);
        let estimate = self
            .core
            .chain()
            .fee_rate(eddy_core::fees::sweep_conf_target(blocks_left, CLAIM_CONF_TARGET))
            .await
            .map_err(backend)?;
        Ok(SweepJob {
            label: "claim",
            outpoint,
            value,
            htlc,
            script_path: Some(SpendPath::Claim(preimage)),
            cosigner: None,
            key: self.core.keys().secret(KEY_PURPOSE, id),
            dest,
            estimate,
            blocks_left,
            max_fee: value / 5,
            tip,
            may_be_early: false,
            seen: vec![],
        })
    }

    /// The claim of one output by itself, on the script path (one the claim batch leaves
    /// alone: contested, or its HTLC not in a block).
    pub(crate) async fn claim_in(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut ServerLoopIn,
        outpoint: OutPoint,
        tip: u32,
    ) -> Result<(), ServerError> {
        // The machine gave the client its block to co-sign the key-path claim first.
        let State::Claiming { preimage, .. } = rec.state else {
            return Ok(());
        };
        let status = self.core.htlc_status(&id, &rec.htlc).await?;
        if status
            .spends
            .iter()
            .any(|s| s.outpoint == outpoint && s.height.is_some())
        {
            return Ok(());
        }
        let Some(value) = status.fundings.iter().find(|f| f.outpoint == outpoint).map(|f| f.value) else {
            return Ok(());
        };
        let htlc = Htlc::new(rec.htlc).map_err(backend)?;
        let dest = self.core.wallet_script();
        let mut job = self
            .claim_job(&id, rec, &htlc, outpoint, value, preimage, dest, tip)
            .await?;
        job.seen = status
            .spends
            .iter()
            .filter(|s| s.outpoint == outpoint)
            .map(|s| s.txid)
            .collect();
        sweep(
            self,
            &**self.core.chain(),
            id,
            version,
            rec,
            rec.claim.clone(),
            |r: &mut ServerLoopIn, s| r.claim = Some(s),
            job,
        )
        .await?;
        Ok(())
    }
}

/// A record `Claiming` from before the cooperative block was the machine's that already
/// claimed (no wait was kept with it): it waits no more.
fn old_claiming(rec: &ServerLoopIn) -> bool {
    matches!(
        rec.state,
        State::Claiming {
            cooperative_until: None,
            ..
        }
    ) && rec.claim.is_some()
}

/// Confirmations of the recorded funding output at `tip` (0 when unconfirmed or gone).
fn funding_confs(status: &WatchStatus, funding: Option<OutPoint>, tip: u32) -> u32 {
    status
        .fundings
        .iter()
        .find(|f| Some(f.outpoint) == funding)
        .map_or(0, |f| WatchStatus::confirmations(f.height, tip))
}

fn backend(e: impl std::fmt::Display) -> ServerError {
    ServerError::Backend(e.to_string())
}

eddy_engine::record!(
    ServerLoopIn,
    LoopInServerMachine,
    SwapKind::LoopInServer,
    "loop-in transition",
    |event, _view, next| event_json(event, next)
);

/// The loop-in's side effects on the server: paying the client's invoice, claiming the HTLC,
/// co-signing the client's refund.
#[async_trait::async_trait]
impl runner::Effects<ServerLoopIn> for LoopInEngine {
    /// The tip the pass runs at.
    type Ctx = u32;
    type Error = ServerError;

    fn store(&self) -> &dyn eddy_store::SwapStore {
        &**self.core.store()
    }

    fn view<'a>(&self, _tip: &'a u32) -> &'a () {
        &()
    }

    async fn persisted(&self, id: &SwapId, rec: &ServerLoopIn) {
        if rec.state.is_terminal() {
            self.core.unwatch(id).await;
        }
    }

    fn finished(&self, _id: &SwapId, rec: &ServerLoopIn) {
        self.core
            .metrics()
            .swap_finished(&format!("in_{}", state_name(&rec.state)));
    }

    async fn act(
        &self,
        id: SwapId,
        version: &mut i64,
        rec: &mut ServerLoopIn,
        action: Action,
        tip: &u32,
    ) -> Result<(), ServerError> {
        let tip = *tip;
        match action {
            Action::PayInvoice {
                max_cltv_expiry,
                max_total_cltv_delta,
                height,
            } => {
                // The rule of the machine, checked right before the send with the freshest tip:
                // never a payment at or after the last payment height, never a CLTV budget of 0
                // (LND reads 0 as "no limit"). A stale decision sends nothing; the next pass
                // asks the machine again ([`Event::SendPayment`]).
                let now = self.core.tip().await?.max(height).max(tip);
                let Some(budget) = rec.terms.payment_cltv_budget(now) else {
                    tracing::warn!(swap = %id, tip = now, "loop-in payment deadline passed before the send: not paying");
                    return Ok(());
                };
                let budget = budget.min(max_total_cltv_delta);
                debug_assert!(now + budget.get() <= max_cltv_expiry);
                let fee_budget = rec.swap_fee.to_sat() * ROUTING_FEE_SHARE_PPM / 1_000_000;
                let params = PayParams {
                    max_fee_msat: fee_budget * 1000,
                    timeout: std::time::Duration::from_secs(60),
                    outgoing_channel: None,
                    max_total_cltv_delta: Some(budget.get()),
                    last_hop: rec.last_hop,
                };
                eddy_store::crash_point("loop_in_server.pay.before_send");
                match self.core.ln().pay_invoice(&rec.invoice, &params).await {
                    Ok(_) => Ok(()),
                    // The node may have received the send (a transport error, a timeout): not a
                    // failed attempt — the swap must not become refundable while the payment
                    // may still go out. The record decides after the grace; a re-send before
                    // then is harmless (one payment per hash).
                    // The node could not be reached: nothing sent, no attempt; the next pass asks
                    // the machine again (and the node's record, once it answers).
                    Err(LnError::NotSent(e)) => {
                        tracing::warn!(swap = %id, error = %e, "loop-in payment not sent: node unreachable");
                        Ok(())
                    }
                    Err(LnError::Unavailable(e)) => {
                        tracing::warn!(swap = %id, error = %e, "loop-in payment outcome unknown; waiting for the node's record");
                        rec.send_outcome_unknown_until = Some(unix_now() + LOOP_IN_SEND_OUTCOME_GRACE_SECS);
                        runner::persist(self, &id, version, rec, json!({"event": "payment_outcome_unknown"})).await
                    }
                    // Whatever the node answered (refused up front, unsupported, or an error that
                    // may hide a refusal — LND reports most of its refusals as `Unknown`), its
                    // own payment record decides: in flight or made → wait; unknown or failed →
                    // a failed attempt (retried while attempts and time remain, then
                    // refundable). A node that cannot even be asked leaves `Paying` for the next
                    // pass, which asks again.
                    Err(e) => {
                        tracing::warn!(swap = %id, error = %e, "paying the loop-in invoice failed");
                        Box::pin(self.payment_failed(id, version, rec, now, e.to_string())).await
                    }
                }
            }
            // The claim batch at the end of the pass claims every `Claiming` swap: the round it
            // offers is this swap's cooperative block, its script path the fallback.
            Action::Claim { .. } => Ok(()),
            // The status API tells the client; it asks for the co-signature.
            Action::NotifyFailed(_) | Action::CosignRefund => Ok(()),
        }
    }
}

fn event_json(e: &Event, next: &State) -> serde_json::Value {
    match e {
        Event::FundingSeen {
            outpoint,
            value,
            confs,
            height,
        } => {
            json!({"event": "funding_seen", "outpoint": outpoint.to_string(), "value_sat": value.to_sat(), "confs": confs, "height": height})
        }
        // Never the preimage itself.
        Event::PaymentSucceeded(_) => json!({"event": "payment_succeeded"}),
        Event::PaymentFailed => json!({"event": "payment_failed"}),
        // What a failed attempt led to: the next one scheduled, the retry sent, or the end.
        Event::AttemptFailed { reason, .. } => match next {
            State::Paying { retry_at: Some(_), .. } => json!({"event": "payment_attempt_failed", "reason": reason}),
            State::Paying { attempt, .. } => json!({"event": "payment_retry", "attempt": attempt + 1}),
            _ => json!({"event": "payment_failed", "reason": reason}),
        },
        Event::RefundRequested => json!({"event": "refund_requested"}),
        Event::ClaimConfirmed { confs } => json!({"event": "claim_confirmed", "confs": confs}),
        Event::HtlcRefunded { confs } => json!({"event": "htlc_refunded", "confs": confs}),
        Event::SendPayment { height, funding_confs } => {
            json!({"event": "send_payment", "height": height, "funding_confs": funding_confs})
        }
        Event::Block { height } => match next {
            State::Claiming {
                cooperative_until: Some(until),
                ..
            } => json!({"event": "cooperative_claim_offered", "height": height, "until": until}),
            _ => json!({"event": "block", "height": height}),
        },
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
