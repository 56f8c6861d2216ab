//! The swap wallet, for its operator (issue 14): what it holds and what of it is promised,
//! withdrawals that never touch what paid swaps are promised, and a rescan from a height (a
//! deposit made before the server first ran). Served on the server's admin listener only.

use bitcoin::{Amount, FeeRate, ScriptBuf, TxOut, Txid};

use super::{backend, LoopOutServer, ServerError, State, META_WALLET_SCAN_FROM};

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
    /// (default: the publication estimate). Holds the publication lock, so no HTLC is being
    /// funded meanwhile; never spends what paid loop-outs are promised (it may take the
    /// reserve: it is the operator's). Broadcast before it returns; logged.
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
        let promised = self.promised().await?;
        let seen = self.status_of(crate::wallet::WALLET_WATCH_ID).await;
        let spendable = self.wallet.balance(&seen).spendable;
        let free = spendable.checked_sub(promised).unwrap_or(Amount::ZERO);
        let target = match amount {
            Some(a) if a == Amount::ZERO => return Err(ServerError::Invalid("amount must be above 0".into())),
            Some(a) => a,
            None => {
                // Everything free, less the fee of spending every coin to one output.
                let inputs = self.wallet.coins(&seen).len() as u64;
                let vbytes = 11 + 43 + 58 * inputs;
                let fee = rate.fee_vb(vbytes).unwrap_or(Amount::MAX_MONEY);
                free.checked_sub(fee)
                    .filter(|a| *a >= Amount::from_sat(330))
                    .ok_or_else(|| {
                        ServerError::Unavailable(format!(
                            "nothing to withdraw: {} sat free of {} sat promised to paid swaps, {} sat fee",
                            free.to_sat(),
                            promised.to_sat(),
                            fee.to_sat()
                        ))
                    })?
            }
        };
        let tx = self
            .wallet
            .pay(
                &seen,
                &[TxOut {
                    value: target,
                    script_pubkey: to.clone(),
                }],
                rate,
            )
            .map_err(|e| ServerError::Unavailable(e.to_string()))?;
        let txid = tx.compute_txid();
        let fee = self.wallet.fee_of(&seen, &tx).unwrap_or(Amount::ZERO);
        if target + fee > free {
            self.wallet.forget(&txid);
            return Err(ServerError::Unavailable(format!(
                "{} sat and a {} sat fee is more than the {} sat not promised to paid swaps",
                target.to_sat(),
                fee.to_sat(),
                free.to_sat()
            )));
        }
        if let Err(e) = self.chain.broadcast(&tx).await {
            self.wallet.forget(&txid);
            return Err(backend(e));
        }
        tracing::info!(%txid, amount_sat = target.to_sat(), fee_sat = fee.to_sat(), "swap wallet withdrawal");
        Ok(Withdrawal {
            txid,
            amount: target,
            fee,
        })
    }

    /// Scans the chain again for the swap wallet's coins from block `from` (inclusive): a new
    /// watcher replaces the current one, following the wallet from there and every active
    /// swap as before. The height is stored, so a restart keeps it.
    pub async fn rescan_wallet(&self, from: u32) -> Result<(), ServerError> {
        let tip = self.chain.tip().await.map_err(backend)?.height;
        if from > tip {
            return Err(ServerError::Invalid(format!("height {from} is above the tip {tip}")));
        }
        let _one = self.publishing.lock().await;
        let after = from.saturating_sub(1);
        self.store.set_meta(META_WALLET_SCAN_FROM, &after.to_string()).await?;
        let fresh = Self::watcher_for(&self.chain, &*self.store, self.wallet.script_pubkey(), Some(after), tip).await?;
        let mut w = self.watcher.lock().await;
        *w = fresh;
        w.sync().await.map_err(backend)?;
        drop(w);
        *self.wallet_scan_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(after);
        tracing::info!(from, "swap wallet rescanned");
        Ok(())
    }
}
