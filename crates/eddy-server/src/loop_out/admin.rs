//! The swap wallet, for its operator (issue 14): what it holds and what of it is promised,
//! withdrawals that never touch what paid swaps are promised, and a rescan from a height (a
//! deposit made before the server first ran). Served on the server's admin listener only.

use bitcoin::{Amount, FeeRate, ScriptBuf, TxOut, Txid};

use super::{backend, LoopOutServer, ServerError, State, META_WALLET_SCAN_FROM};
use crate::wallet::SwapWallet;

/// What one HTLC publication may weigh, for the fee kept for each promised swap: a key-path
/// input (58 vB), the P2TR HTLC output (43 vB), a change output (43 vB) and the transaction's
/// own bytes (11 vB).
const PUBLICATION_VBYTES: u64 = 58 + 43 + 43 + 11;

/// The swap wallet as its operator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalletReport {
    /// Confirmed coins and our own change.
    pub spendable: Amount,
    /// Deposits waiting for a confirmation.
    pub unconfirmed: Amount,
    /// Promised to paid loop-outs whose HTLC is not yet published.
    pub promised: Amount,
    /// The configured reserve never locked into HTLCs.
    pub reserve: Amount,
    /// What a withdrawal may take (before its miner fee): spendable less promised.
    pub withdrawable: Amount,
}

/// A withdrawal made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Withdrawal {
    /// Its transaction.
    pub txid: Txid,
    /// Paid to the destination.
    pub amount: Amount,
    /// Its miner fee.
    pub fee: Amount,
}

/// The largest single payment to `to` whose amount and miner fee together fit in `free`
/// (the confirmed coins not promised): tried at `free`, then at `free` less each try's fee
/// (or shortfall) until one fits — a withdrawal with change back for the promised coins
/// pays more fee than one without, so no one guess fits every wallet.
fn pay_all_free(
    wallet: &SwapWallet,
    seen: &eddy_backends::WatchStatus,
    to: &ScriptBuf,
    free: Amount,
    promised: Amount,
    rate: FeeRate,
) -> Result<bitcoin::Transaction, ServerError> {
    let nothing = || {
        ServerError::Unavailable(format!(
            "nothing to withdraw: {} sat confirmed and free of {} sat promised to paid swaps",
            free.to_sat(),
            promised.to_sat()
        ))
    };
    let mut target = free;
    for _ in 0..6 {
        if target < Amount::from_sat(330) {
            return Err(nothing());
        }
        let outputs = [TxOut {
            value: target,
            script_pubkey: to.clone(),
        }];
        match wallet.pay_confirmed(seen, &outputs, rate) {
            Ok(tx) => {
                let fee = wallet.fee_of(seen, &tx).unwrap_or(Amount::MAX_MONEY);
                if target.checked_add(fee).is_some_and(|t| t <= free) {
                    return Ok(tx);
                }
                wallet.forget(&tx.compute_txid());
                let next = free.checked_sub(fee).ok_or_else(nothing)?;
                // The fee grew with a smaller amount (another shape): step below it.
                target = if next < target {
                    next
                } else {
                    target - Amount::from_sat(1)
                };
            }
            Err(crate::wallet::WalletError::Insufficient { available, needed }) => {
                let short = Amount::from_sat(needed.saturating_sub(available).max(1));
                target = target.checked_sub(short).ok_or_else(nothing)?;
            }
            Err(e) => return Err(ServerError::Unavailable(e.to_string())),
        }
    }
    Err(ServerError::Unavailable(
        "no withdrawal of everything free fits with its fee: withdraw an amount".into(),
    ))
}

/// Whether the swap wallet owes `r` its HTLC: paid, not yet published, and no publication of
/// it stored (a stored one holds its own coins: they are kept as its inputs, not counted again).
fn owed(r: &super::LoopOutRecord) -> bool {
    r.is_paid() && matches!(r.state, State::Created { .. } | State::Publishing { .. }) && r.htlc_tx.is_none()
}

impl LoopOutServer {
    /// The swap wallet's balance and what of it is promised (as of the last chain sync).
    pub async fn wallet_report(&self) -> Result<WalletReport, ServerError> {
        let b = self.wallet_balance().await;
        let promised = self.promised().await?;
        Ok(WalletReport {
            spendable: b.spendable,
            unconfirmed: b.unconfirmed_deposits,
            promised,
            reserve: self.cfg.onchain_reserve,
            withdrawable: b.spendable.checked_sub(promised).unwrap_or(Amount::ZERO),
        })
    }

    /// Every paid loop-out's HTLC amount not yet published: the wallet owes it.
    async fn promised(&self) -> Result<Amount, ServerError> {
        Ok(Self::active(&*self.store)
            .await?
            .iter()
            .filter(|(_, _, r)| owed(r))
            .map(|(_, _, r)| r.amount)
            .sum())
    }

    /// Pays `amount` (`None`: everything not promised) from the swap wallet to `to` at `rate`
    /// (default: the publication estimate), from confirmed coins only. Holds the publication
    /// lock, so no HTLC is being funded meanwhile; every stored HTLC publication is remembered
    /// as ours first (one the mempool dropped keeps its coins); never spends what paid
    /// loop-outs are promised, with their publication fees (it may take the reserve: it is the
    /// operator's). Broadcast before it returns; logged.
    pub async fn withdraw(
        &self,
        to: &ScriptBuf,
        amount: Option<Amount>,
        rate: Option<FeeRate>,
    ) -> Result<Withdrawal, ServerError> {
        let _one = self.publishing.lock().await;
        self.sync_chain().await?;
        let rate = match rate {
            Some(r) => r,
            None => self
                .chain
                .fee_rate(self.cfg.publish_conf_target)
                .await
                .map_err(backend)?,
        };
        // A publication the mempool dropped must keep its inputs (it is broadcast again).
        for (_, _, r) in Self::active(&*self.store).await? {
            if let Some(tx) = r.stored_tx() {
                self.wallet.remember(&tx);
            }
        }
        let promised = self.promised_with_fees(rate).await?;
        let seen = self.status_of(crate::wallet::WALLET_WATCH_ID).await;
        let confirmed: Amount = self
            .wallet
            .coins(&seen)
            .iter()
            .filter(|c| c.height.is_some())
            .map(|c| c.value)
            .sum();
        let free = confirmed.checked_sub(promised).unwrap_or(Amount::ZERO);
        let one_output = |target: Amount| {
            [TxOut {
                value: target,
                script_pubkey: to.clone(),
            }]
        };
        let tx = match amount {
            Some(a) if a == Amount::ZERO => return Err(ServerError::Invalid("amount must be above 0".into())),
            Some(a) if a > Amount::MAX_MONEY => {
                return Err(ServerError::Invalid("amount is above 21,000,000 BTC".into()))
            }
            Some(a) => self
                .wallet
                .pay_confirmed(&seen, &one_output(a), rate)
                .map_err(|e| ServerError::Unavailable(e.to_string()))?,
            None => pay_all_free(&self.wallet, &seen, to, free, promised, rate)?,
        };
        let txid = tx.compute_txid();
        let target = tx.output.first().map_or(Amount::ZERO, |o| o.value);
        let fee = self.wallet.fee_of(&seen, &tx).unwrap_or(Amount::ZERO);
        if target + fee > free {
            self.wallet.forget(&txid);
            return Err(ServerError::Unavailable(format!(
                "{} sat and a {} sat fee is more than the {} sat confirmed and not promised to paid swaps",
                target.to_sat(),
                fee.to_sat(),
                free.to_sat()
            )));
        }
        if let Err(e) = self.chain.broadcast(&tx).await {
            self.wallet.forget(&txid);
            // Refused by the node (dust, a fee below its minimum): the request's fault.
            return Err(ServerError::Unavailable(format!("the transaction was refused: {e}")));
        }
        tracing::info!(%txid, amount_sat = target.to_sat(), fee_sat = fee.to_sat(), "swap wallet withdrawal");
        Ok(Withdrawal {
            txid,
            amount: target,
            fee,
        })
    }

    /// What paid loop-outs not yet published are owed: their HTLC amounts and, at `rate`, a
    /// publication's fee each (one input and one output, with a change share).
    async fn promised_with_fees(&self, rate: FeeRate) -> Result<Amount, ServerError> {
        let active = Self::active(&*self.store).await?;
        let owed: Vec<Amount> = active
            .iter()
            .filter(|(_, _, r)| owed(r))
            .map(|(_, _, r)| r.amount)
            .collect();
        let per_fee = rate.fee_vb(PUBLICATION_VBYTES).unwrap_or(Amount::MAX_MONEY);
        Ok(owed.iter().copied().sum::<Amount>() + per_fee * owed.len() as u64)
    }

    /// Scans the chain again for the swap wallet's coins from block `from` (inclusive): a new
    /// watcher replaces the current one, following the wallet from there and every active
    /// swap as before. The height is stored, so a restart keeps it.
    ///
    /// The long part — reading every block from `from` — runs while the engine goes on with
    /// its swaps on the current watcher (a deep rescan must not stall a swap near its
    /// deadline). Then, under the engine's locks, the new watcher takes the swaps created
    /// meanwhile: it steps back before the first of them was created, as a reorg would, and
    /// reads those blocks again with their watches; it catches up to the tip and replaces the
    /// current one.
    pub async fn rescan_wallet(&self, from: u32) -> Result<(), ServerError> {
        let tip = self.chain.tip().await.map_err(backend)?.height;
        if from > tip {
            return Err(ServerError::Invalid(format!("height {from} is above the tip {tip}")));
        }
        // Never later than the scan already follows: that would hide older coins.
        let current = *self.wallet_scan_from.lock().unwrap_or_else(|e| e.into_inner());
        let after = from.saturating_sub(1).min(current.unwrap_or(u32::MAX));
        let _one_rescan = self.rescanning.lock().await;
        let watched = self.active_watch_ids().await?;
        let mut fresh =
            Self::watcher_for(&self.chain, &*self.store, self.wallet.script_pubkey(), Some(after), tip).await?;
        let found = fresh.sync().await.map_err(backend)?;
        super::log_deposits(&fresh, &found);
        // Swap creations take the watcher's lock after storing the swap: holding it while the
        // store is read again, a swap is either read here or adds its watch to the new watcher.
        let _no_publication = self.publishing.lock().await;
        let mut w = self.watcher.lock().await;
        let now = self.active_watch_ids().await?;
        let created: Vec<_> = now
            .iter()
            .filter(|(id, ..)| !watched.iter().any(|(w, ..)| w == id))
            .collect();
        if let Some(first) = created.iter().map(|(_, height, _)| *height).min() {
            fresh.rewind_to(first.saturating_sub(1).max(after)).map_err(backend)?;
            for (id, _, spk) in &created {
                fresh.index_mut().watch_script(*id, spk.clone());
            }
        }
        for (id, ..) in watched.iter().filter(|(id, ..)| !now.iter().any(|(n, ..)| n == id)) {
            fresh.index_mut().unwatch(*id);
        }
        let found = fresh.sync().await.map_err(backend)?;
        super::log_deposits(&fresh, &found);
        *w = fresh;
        drop(w);
        // Stored once it worked, so a failed rescan leaves the server as it was.
        self.store.set_meta(META_WALLET_SCAN_FROM, &after.to_string()).await?;
        *self.wallet_scan_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(after);
        tracing::info!(from = after + 1, "swap wallet rescanned");
        Ok(())
    }

    /// Every active swap's watch: its id, the height it was created at, its HTLC script.
    async fn active_watch_ids(&self) -> Result<Vec<(eddy_backends::WatchId, u32, ScriptBuf)>, ServerError> {
        let htlc_spk = |p| {
            eddy_core::htlc::Htlc::new(p)
                .map(|h| h.script_pubkey())
                .map_err(|e| ServerError::Backend(e.to_string()))
        };
        let mut out = vec![];
        for (id, _, r) in Self::active(&*self.store).await? {
            out.push((
                eddy_backends::watch::swap_watch_id(&id),
                r.terms.created_height,
                htlc_spk(r.htlc)?,
            ));
        }
        for (id, _, r) in crate::loop_in::active_in_of(&*self.store).await? {
            out.push((
                eddy_backends::watch::swap_watch_id(&id),
                r.created_height,
                htlc_spk(r.htlc)?,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use eddy_backends::watch::Funding;
    use eddy_backends::WatchStatus;

    #[test]
    fn withdrawing_everything_free_pays_exactly_it_with_or_without_change() {
        let dir = tempfile::tempdir().expect("tmp");
        let keys = eddy_store::SeedKeys::load_or_create(dir.path(), "seed").expect("seed");
        let w = SwapWallet::new(&keys, bitcoin::Network::Regtest);
        let mut seen = WatchStatus::default();
        for (n, v) in [(1u8, 150_000u64), (2, 90_000)] {
            seen.fundings.push(Funding {
                script_pubkey: w.script_pubkey().clone(),
                outpoint: bitcoin::OutPoint {
                    txid: Txid::from_byte_array([n; 32]),
                    vout: 0,
                },
                value: Amount::from_sat(v),
                height: Some(101),
            });
        }
        let to = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([7; 20]));
        let rate = FeeRate::from_sat_per_vb(2).expect("rate");
        // 60,000 + a publication's fee promised to a paid swap: change comes back for it, and
        // the destination gets everything else less this transaction's own fee, to the sat.
        let promised = Amount::from_sat(60_000) + rate.fee_vb(PUBLICATION_VBYTES).expect("fee");
        let free = Amount::from_sat(240_000) - promised;
        let tx = pay_all_free(&w, &seen, &to, free, promised, rate).expect("withdraw");
        let fee = w.fee_of(&seen, &tx).expect("fee");
        assert_eq!(tx.output[0].value + fee, free, "{tx:?}");
        assert_eq!(tx.output.len(), 2, "change for the promise");
        assert_eq!(tx.output[1].value, promised, "the change is exactly what is promised");
        w.forget(&tx.compute_txid());
        // Nothing promised: every coin, no change.
        let tx = pay_all_free(&w, &seen, &to, Amount::from_sat(240_000), Amount::ZERO, rate).expect("all");
        let fee = w.fee_of(&seen, &tx).expect("fee");
        assert_eq!(tx.output.len(), 1);
        assert_eq!(tx.output[0].value + fee, Amount::from_sat(240_000));
        w.forget(&tx.compute_txid());
        // Free coins below the dust limit once the fee is paid: nothing to withdraw.
        let e = pay_all_free(&w, &seen, &to, Amount::from_sat(400), Amount::from_sat(239_600), rate).expect_err("dust");
        assert!(e.to_string().contains("nothing to withdraw"), "{e}");
    }
}
