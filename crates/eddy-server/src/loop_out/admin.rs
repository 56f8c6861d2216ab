//! The swap wallet, for its operator (issue 14): what it holds and what of it is promised,
//! withdrawals that never touch what paid swaps are promised, and a rescan from a height (a
//! deposit made before the server first ran). Served on the server's admin listener only.

use bitcoin::{Amount, FeeRate, ScriptBuf, TxOut, Txid};

use super::{backend, LoopOutServer, ServerError, State, META_WALLET_SCAN_FROM};

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
            .filter(|(_, _, r)| r.is_paid() && matches!(r.state, State::Created { .. } | State::Publishing { .. }))
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
            None => {
                // Everything free: a first try at `free`, then at `free` less what it lacked
                // (the fee of spending every confirmed coin, with or without change).
                let first = self.wallet.pay_confirmed(&seen, &one_output(free), rate);
                let lacked = match first {
                    Ok(tx) => {
                        self.wallet.forget(&tx.compute_txid());
                        rate.fee_vb(43).unwrap_or(Amount::MAX_MONEY)
                    }
                    Err(crate::wallet::WalletError::Insufficient { available, needed }) => {
                        Amount::from_sat(needed.saturating_sub(available))
                    }
                    Err(e) => return Err(ServerError::Unavailable(e.to_string())),
                };
                let target = free
                    .checked_sub(lacked)
                    .filter(|a| *a >= Amount::from_sat(330))
                    .ok_or_else(|| {
                        ServerError::Unavailable(format!(
                            "nothing to withdraw: {} sat confirmed and free of {} sat promised to paid swaps",
                            free.to_sat(),
                            promised.to_sat()
                        ))
                    })?;
                self.wallet
                    .pay_confirmed(&seen, &one_output(target), rate)
                    .map_err(|e| ServerError::Unavailable(e.to_string()))?
            }
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
            .filter(|(_, _, r)| r.is_paid() && matches!(r.state, State::Created { .. } | State::Publishing { .. }))
            .map(|(_, _, r)| r.amount)
            .collect();
        let per_fee = rate.fee_vb(PUBLICATION_VBYTES).unwrap_or(Amount::MAX_MONEY);
        Ok(owed.iter().copied().sum::<Amount>() + per_fee * owed.len() as u64)
    }

    /// Scans the chain again for the swap wallet's coins from block `from` (inclusive): a new
    /// watcher replaces the current one, following the wallet from there and every active
    /// swap as before. The height is stored, so a restart keeps it.
    pub async fn rescan_wallet(&self, from: u32) -> Result<(), ServerError> {
        let tip = self.chain.tip().await.map_err(backend)?.height;
        if from > tip {
            return Err(ServerError::Invalid(format!("height {from} is above the tip {tip}")));
        }
        // Never later than the scan already follows: that would hide older coins.
        let current = *self.wallet_scan_from.lock().unwrap_or_else(|e| e.into_inner());
        let after = from.saturating_sub(1).min(current.unwrap_or(u32::MAX));
        let _one = self.publishing.lock().await;
        // Built and synced under the watcher's lock: a swap created meanwhile adds its watch to
        // the watcher it then finds (the new one), after this reads the store.
        let mut w = self.watcher.lock().await;
        let mut fresh =
            Self::watcher_for(&self.chain, &*self.store, self.wallet.script_pubkey(), Some(after), tip).await?;
        fresh.sync().await.map_err(backend)?;
        *w = fresh;
        drop(w);
        // Stored once it worked, so a failed rescan leaves the server as it was.
        self.store.set_meta(META_WALLET_SCAN_FROM, &after.to_string()).await?;
        *self.wallet_scan_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(after);
        tracing::info!(from = after + 1, "swap wallet rescanned");
        Ok(())
    }
}
