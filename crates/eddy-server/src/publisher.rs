//! The publisher: HTLC publication from the swap wallet, one of the server's shared parts
//! ([`crate::server_core::Publisher`], held by the server's core). A loop-out's machine asks for its HTLC with
//! `Action::PublishHtlc` — on entering `Publishing`, at every block while there, and after a
//! restart (`resume`) — and the engine's action hands the swap over ([`crate::server_core::Publisher::want`]).
//! [`LoopOutEngine::publish_pending`], run after every batch of Lightning events and every
//! pass, then adopts a publication of ours already seen or re-broadcasts the stored one, asks
//! the machine once more right before making a new one (`Event::NoHtlcOnChain`: still inside
//! the window?) and publishes every swap left in **one** transaction, written to each swap
//! before its broadcast. `LoopOutEngine::keep_publications` keeps every unconfirmed
//! publication on its way to a block (re-broadcast, replaced by fee). The same lock serialises
//! every payment from the swap wallet (the operator's withdrawals too), so two never spend the
//! same coins.

use bitcoin::OutPoint;
use eddy_backends::WatchStatus;
use eddy_core::constants::HTLC_PUBLICATION_BUMP_BLOCKS;
use eddy_core::htlc::Htlc;
use eddy_core::sm::loop_out_server::{Event, State};
use eddy_engine::runner;
use serde_json::json;

use crate::loop_out::{LoopOutEngine, ServerLoopOut};

/// Blocks before a held loop-out's publication would be refused (too few blocks left before `E`,
/// or its prepay no longer settleable) at which the publication window gives way: two blocks can
/// come within any window of minutes, and the machine refuses — cancels the swap — once the
/// rules are passed, so the window closes this far ahead of them.
pub const PUBLISH_WINDOW_FORCE_BLOCKS: u32 = 2;

/// The last height `rec` may be published at (its rules: blocks left before `E`, the prepay's
/// settle deadline, a seed swap's deadline), for ordering a batch by urgency.
fn last_publication_height(rec: &ServerLoopOut) -> u32 {
    let mut last = rec
        .terms
        .expiry
        .saturating_sub(eddy_core::constants::MIN_BLOCKS_LEFT_AT_PUBLICATION);
    if rec.terms.relative_refund.is_some() {
        last = last.min(rec.terms.publication_deadline().saturating_sub(1));
    }
    if let State::Publishing {
        prepay_deadline: Some(d),
    } = rec.state
    {
        last = last.min(d.saturating_sub(eddy_core::constants::SETTLE_LATENCY));
    }
    last
}

/// Whether a held loop-out in `state` is due for publication now (one asked `fast` always is):
/// the window is zero, or it has
/// waited the window (`waited`: since its payment was held; `None`: not known — after a restart
/// — publish), or its publication rules end within [`PUBLISH_WINDOW_FORCE_BLOCKS`] blocks. A
/// due swap takes every held one with it: one transaction.
pub fn publication_due(
    terms: &eddy_core::sm::loop_out_server::Terms,
    state: &State,
    tip: u32,
    waited: Option<std::time::Duration>,
    window: std::time::Duration,
) -> bool {
    if window.is_zero() || waited.is_none_or(|w| w >= window) {
        return true;
    }
    // Due when a rule would refuse the publication PUBLISH_WINDOW_FORCE_BLOCKS + 1 blocks from
    // now: that many blocks may still pass before it is out, for every rule alike.
    let probe = tip.saturating_add(PUBLISH_WINDOW_FORCE_BLOCKS + 1);
    let prepay_deadline = match state {
        State::Publishing { prepay_deadline } => *prepay_deadline,
        _ => None,
    };
    !terms.may_publish(probe) || !eddy_core::sm::loop_out_server::prepay_settleable(prepay_deadline, probe)
}
use crate::server_core::{backend, ServerError};
use crate::wallet::WALLET_WATCH_ID;

impl LoopOutEngine {
    /// Tells the swap wallet every stored publication of an active swap (at start: their
    /// inputs are ours, never spent again by a new batch or a withdrawal).
    pub(crate) async fn remember_publications(&self) -> Result<(), ServerError> {
        for (_, _, rec) in Self::active(&*self.core.store).await? {
            if let Some(tx) = rec.stored_tx() {
                self.core.wallet.remember(&tx);
            }
        }
        Ok(())
    }

    /// Publishes every swap handed over ([`crate::server_core::Publisher::want`]) and still `Publishing` — all in
    /// **one** transaction from the swap wallet, outputs in swap order — after adopting any HTLC
    /// output of ours already on chain or in the mempool (a crash between broadcast and
    /// persistence never publishes twice). Each swap is then moved on with
    /// [`Event::HtlcBroadcast`]. One still waiting afterwards (the wallet short of funds, an
    /// error) is handed over again by its machine at the next block.
    pub async fn publish_pending(&self) -> Result<(), ServerError> {
        let _one = self.core.publisher.lock().await;
        let wanted = self.core.publisher.wanted();
        if wanted.is_empty() {
            return Ok(());
        }
        // Adopt before publish, on every path (engine pass or Lightning event): the watcher
        // must have seen the chain and mempool *now*, or a publication broadcast but not
        // recorded (crash, store error) would be made a second time.
        let pending: Vec<_> = Self::active(&*self.core.store)
            .await?
            .into_iter()
            .filter(|(id, _, rec)| wanted.contains(id) && matches!(rec.state, State::Publishing { .. }))
            .collect();
        if pending.is_empty() {
            self.core.publisher.taken(&wanted);
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
                rec.forget_publication();
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
        // Taken (also what the machine asked again above): a swap the batch cannot fund is
        // handed over again at the next block.
        self.core.publisher.taken(&wanted);
        if batch.is_empty() {
            return Ok(());
        }
        // The publication window: nobody due yet, all wait (handed over again) for company.
        let window = self.core.config().publish_batch_window;
        let due = {
            let accepted = self.accepted_at.lock().unwrap_or_else(|e| e.into_inner());
            batch.iter().any(|(id, _, rec)| {
                let waited = accepted.get(id).map(|t| t.elapsed());
                rec.fast || publication_due(&rec.terms, &rec.state, tip, waited, window)
            })
        };
        if !due {
            for (id, _, _) in &batch {
                self.core.publisher.want(*id);
            }
            return Ok(());
        }
        // The most urgent first: when the wallet cannot fund them all, the ones left for the
        // next block are those with the most room.
        batch.sort_by_key(|(_, _, rec)| last_publication_height(rec));
        let mut outputs = vec![];
        for (_, _, rec) in &batch {
            let htlc = Htlc::new(rec.htlc).map_err(backend)?;
            outputs.push(bitcoin::TxOut {
                value: rec.amount,
                script_pubkey: htlc.script_pubkey(),
            });
        }
        let rate = self.core.publish_rate().await?;
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
                rec.forget_publication();
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
        let _one = self.core.publisher.lock().await;
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
        let target = self.core.publish_rate().await?;
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
    pub(crate) async fn publication_lost(&self, rec: &ServerLoopOut, status: &WatchStatus, tip: u32) -> bool {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::constants::{MIN_BLOCKS_LEFT_AT_PUBLICATION, SETTLE_LATENCY};
    use eddy_core::sm::loop_out_server::Terms;
    use std::time::Duration;

    fn terms(expiry: u32) -> Terms {
        Terms {
            swap_invoice_msat: 1,
            prepay_msat: 1,
            expiry,
            created_height: 100,
            relative_refund: None,
        }
    }

    #[test]
    fn the_window_gives_way_to_time_and_to_the_publication_rules() {
        let window = Duration::from_secs(180);
        let waiting = Some(Duration::from_secs(10));
        let calm = State::Publishing { prepay_deadline: None };
        let t = terms(180);
        // No window, the window waited, or no acceptance time known (a restart): at once.
        assert!(publication_due(&t, &calm, 101, waiting, Duration::ZERO));
        assert!(publication_due(&t, &calm, 101, Some(window), window));
        assert!(publication_due(&t, &calm, 101, None, window));
        // Inside the window, far from the rules: wait.
        assert!(!publication_due(&t, &calm, 101, waiting, window));
        // The expiry rule: publication is refused once fewer than MIN_BLOCKS_LEFT_AT_PUBLICATION
        // are left; the window closes PUBLISH_WINDOW_FORCE_BLOCKS before.
        let last_ok = 180 - MIN_BLOCKS_LEFT_AT_PUBLICATION;
        assert!(t.may_publish(last_ok) && !t.may_publish(last_ok + 1));
        let force_at = last_ok - PUBLISH_WINDOW_FORCE_BLOCKS;
        assert!(!publication_due(&t, &calm, force_at - 1, waiting, window));
        assert!(publication_due(&t, &calm, force_at, waiting, window));
        // The prepay rule: settleable while height + SETTLE_LATENCY <= deadline.
        let held = State::Publishing {
            prepay_deadline: Some(150),
        };
        let force_at = 150 - SETTLE_LATENCY - PUBLISH_WINDOW_FORCE_BLOCKS;
        assert!(!publication_due(&t, &held, force_at - 1, waiting, window));
        assert!(publication_due(&t, &held, force_at, waiting, window));
        // A relative-refund (seed) swap: its publication deadline.
        let seed = Terms {
            relative_refund: Some(40),
            ..terms(1_000)
        };
        let deadline = seed.publication_deadline();
        // Its last height is deadline - 1: forced two blocks before, as for the other rules.
        assert!(seed.may_publish(deadline - 1) && !seed.may_publish(deadline));
        let force_at = deadline - 1 - PUBLISH_WINDOW_FORCE_BLOCKS;
        assert!(!publication_due(&seed, &calm, force_at - 1, waiting, window));
        assert!(publication_due(&seed, &calm, force_at, waiting, window));
    }
}
