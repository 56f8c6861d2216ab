//! The swap wallet, for its operator (issue 14): what it holds and what of it is promised,
//! withdrawals that never touch what paid swaps are promised, and a rescan from a height (a
//! deposit made before the server first ran). Served on the server's admin listener only.

use std::collections::HashSet;

use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, TxOut, Txid};

use crate::loop_out::{LoopOutEngine, ServerLoopOut};
pub use crate::server::RescanStatus;
use crate::server::SwapServer;
use crate::server_core::{backend, ServerError, META_WALLET_SCAN_FROM};
use crate::wallet::{Coin, SwapWallet};
use eddy_core::sm::loop_out_server::State;

/// What one HTLC publication weighs besides its inputs, for the fee kept for each promised
/// swap: the P2TR HTLC output (43 vB), a change output (43 vB) and the transaction's own bytes
/// (11 vB).
const PUBLICATION_VBYTES: u64 = 43 + 43 + 11;
/// Each coin kept for the publications adds a key-path input: 58 vB.
const INPUT_VBYTES: u64 = 58;

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
    /// What `withdraw all` may take (before its miner fee): the confirmed coins not kept for
    /// the promised swaps and their publications.
    pub withdrawable: Amount,
}

/// What a withdrawal may spend (see `SwapServer::free_coins`).
struct FreeCoins {
    /// The wallet's watch.
    seen: eddy_backends::WatchStatus,
    /// Coins kept for paid swaps still to publish.
    kept: HashSet<OutPoint>,
    /// The other confirmed coins' value.
    free: Amount,
    /// The promised HTLC amounts.
    promised: Amount,
}

/// The rate the coins kept for paid swaps are reckoned at: twice the given one, so that a fee
/// rise before the publication does not leave a paid swap short (it would be canceled, its
/// invoices returned).
fn keep_rate(rate: FeeRate) -> FeeRate {
    FeeRate::from_sat_per_kwu(rate.to_sat_per_kwu().saturating_mul(2))
}

/// Blocks of history a rescan's watcher keeps: a rescan that takes a day on a slow node can
/// still step back before the swaps created meanwhile.
const RESCAN_HISTORY: usize = 2016;

/// Rounds of taking the swaps created during a rescan beside the engine before the rest is
/// done under its locks (each round reads only the blocks and mempool since the last).
const RESCAN_ROUNDS: usize = 4;

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

/// The largest single payment to `to` whose amount and miner fee together fit in `free` (the
/// confirmed coins not `kept` for paid swaps): tried at `free`, then at `free` less each
/// try's fee (or shortfall) until one fits, then once more at the fee it really needs (a first
/// guess that reckoned with a change output would overpay).
fn pay_all_free(
    wallet: &SwapWallet,
    seen: &eddy_backends::WatchStatus,
    to: &ScriptBuf,
    free: Amount,
    promised: Amount,
    rate: FeeRate,
    kept: &HashSet<OutPoint>,
) -> Result<bitcoin::Transaction, ServerError> {
    let nothing = || {
        ServerError::Unavailable(format!(
            "nothing to withdraw: {} sat confirmed and free of the coins kept for {} sat promised to paid swaps",
            free.to_sat(),
            promised.to_sat()
        ))
    };
    let pay = |target: Amount| {
        let outputs = [TxOut {
            value: target,
            script_pubkey: to.clone(),
        }];
        wallet.pay_confirmed_except(seen, &outputs, rate, kept)
    };
    let fits = |target: Amount, fee: Amount| target.checked_add(fee).is_some_and(|t| t <= free);
    let mut target = free;
    for _ in 0..6 {
        if target < Amount::from_sat(330) {
            return Err(nothing());
        }
        match pay(target) {
            Ok(tx) => {
                let fee = wallet.fee_of(seen, &tx).unwrap_or(Amount::MAX_MONEY);
                if fits(target, fee) {
                    // One output and more fee than its weight needs: that much more to `to`.
                    let needed = rate.fee_wu(tx.weight()).unwrap_or(fee);
                    if tx.output.len() == 1 && fee > needed {
                        wallet.forget(&tx.compute_txid());
                        let better = target + (fee - needed);
                        if let Ok(tx2) = pay(better) {
                            let fee2 = wallet.fee_of(seen, &tx2).unwrap_or(Amount::MAX_MONEY);
                            if fits(better, fee2) && tx2.output.len() == 1 {
                                return Ok(tx2);
                            }
                            wallet.forget(&tx2.compute_txid());
                        }
                        return pay(target).map_err(|e| ServerError::Unavailable(e.to_string()));
                    }
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

/// The unconfirmed transactions `watcher` saw paying or spending `swaps`' HTLCs.
fn unconfirmed_of(
    watcher: &eddy_backends::ChainWatcher,
    swaps: &[(eddy_backends::WatchId, u32, ScriptBuf)],
) -> Vec<Txid> {
    let mut txids = vec![];
    for (id, ..) in swaps {
        if let Some(st) = watcher.index().status(*id) {
            txids.extend(
                st.fundings
                    .iter()
                    .filter(|f| f.height.is_none())
                    .map(|f| f.outpoint.txid),
            );
            txids.extend(st.spends.iter().filter(|s| s.height.is_none()).map(|s| s.txid));
        }
    }
    txids
}

/// The confirmed coins a withdrawal leaves for the paid swaps still to publish (`owed`: their
/// HTLC amounts): the largest first, until they cover every promised HTLC and, at `rate`, the
/// publication of each with one input per coin kept — all of them when they do not suffice.
/// Kept whole, never spent into a withdrawal's change: a publication then never waits on an
/// unconfirmed, cheaper parent.
fn kept_for(coins: &[Coin], owed: &[Amount], rate: FeeRate) -> HashSet<OutPoint> {
    let mut kept = HashSet::new();
    if owed.is_empty() {
        return kept;
    }
    let mut confirmed: Vec<&Coin> = coins.iter().filter(|c| c.height.is_some()).collect();
    confirmed.sort_by_key(|c| std::cmp::Reverse(c.value));
    let fee = |vb: u64| rate.fee_vb(vb).unwrap_or(Amount::MAX_MONEY);
    let base = owed.iter().copied().sum::<Amount>() + fee(PUBLICATION_VBYTES * owed.len() as u64);
    let mut total = Amount::ZERO;
    for c in confirmed {
        if !kept.is_empty() && total >= base + fee(INPUT_VBYTES * kept.len() as u64) {
            break;
        }
        kept.insert(c.outpoint);
        total += c.value;
    }
    kept
}

/// Whether the swap wallet owes `r` its HTLC: paid and not yet published. (A publication
/// stored but not broadcast keeps its own inputs too: counted twice until it is, which errs on
/// the side of the swap — and a stored one whose inputs another transaction took is still owed.)
fn owed(r: &ServerLoopOut) -> bool {
    r.is_paid() && matches!(r.state, State::Created { .. } | State::Publishing { .. })
}

impl SwapServer {
    /// The swap wallet's balance and what of it is promised (as of the last chain sync);
    /// `withdrawable` is what `withdraw all` could take before its fee, at the publication
    /// estimate.
    pub async fn wallet_report(&self) -> Result<WalletReport, ServerError> {
        let estimate = self.core.publish_rate().await?;
        // `free_coins` remembers the stored publications as ours: never beside a publication
        // being stored, broadcast or replaced.
        let _no_publication = self.core.publisher.lock().await;
        let b = self.wallet_balance().await;
        let free = self.free_coins(keep_rate(estimate)).await?;
        Ok(WalletReport {
            spendable: b.spendable,
            unconfirmed: b.unconfirmed_deposits,
            promised: free.promised,
            reserve: self.core.cfg.onchain_reserve,
            withdrawable: free.free,
        })
    }

    /// What a withdrawal may spend: every stored publication remembered as ours first (one the
    /// mempool dropped keeps its coins: it is broadcast again), the coins kept for the paid
    /// swaps still to publish at `rate` ([`kept_for`]), and the rest of the confirmed coins.
    async fn free_coins(&self, rate: FeeRate) -> Result<FreeCoins, ServerError> {
        let active = LoopOutEngine::active(&*self.core.store).await?;
        for (_, _, r) in &active {
            if let Some(tx) = r.stored_tx() {
                self.core.wallet.remember(&tx);
            }
        }
        let owed: Vec<Amount> = active
            .iter()
            .filter(|(_, _, r)| owed(r))
            .map(|(_, _, r)| r.amount)
            .collect();
        let seen = self.core.status_of(crate::wallet::WALLET_WATCH_ID).await;
        let coins = self.core.wallet.coins(&seen);
        let kept = kept_for(&coins, &owed, rate);
        let free = coins
            .iter()
            .filter(|c| c.height.is_some() && !kept.contains(&c.outpoint))
            .map(|c| c.value)
            .sum();
        Ok(FreeCoins {
            seen,
            kept,
            free,
            promised: owed.iter().copied().sum(),
        })
    }

    /// Pays `amount` (`None`: everything free) from the swap wallet to `to` at `rate` (default:
    /// the publication estimate), from confirmed coins only, never the coins kept for paid
    /// loop-outs still to publish (reckoned at the higher of `rate` and the publication
    /// estimate; it may take the reserve: it is the operator's). Holds the publication lock, so
    /// no HTLC is being funded meanwhile. Broadcast before it returns; logged.
    pub async fn withdraw(
        &self,
        to: &ScriptBuf,
        amount: Option<Amount>,
        rate: Option<FeeRate>,
    ) -> Result<Withdrawal, ServerError> {
        let _one = self.core.publisher.lock().await;
        self.core.sync_chain().await?;
        let estimate = self.core.publish_rate().await?;
        let rate = rate.unwrap_or(estimate);
        let FreeCoins {
            seen,
            kept,
            free,
            promised,
        } = self.free_coins(keep_rate(rate.max(estimate))).await?;
        let tx = match amount {
            Some(a) if a == Amount::ZERO => return Err(ServerError::Invalid("amount must be above 0".into())),
            Some(a) if a > Amount::MAX_MONEY => {
                return Err(ServerError::Invalid("amount is above 21,000,000 BTC".into()))
            }
            Some(a) => {
                let outputs = [TxOut {
                    value: a,
                    script_pubkey: to.clone(),
                }];
                self.core.wallet
                    .pay_confirmed_except(&seen, &outputs, rate, &kept)
                    .map_err(|e| match e {
                        crate::wallet::WalletError::Insufficient { available, needed } => {
                            ServerError::Unavailable(format!(
                                "swap wallet has {available} sat spendable and free of the coins kept for {} sat promised to paid swaps, {needed} sat needed",
                                promised.to_sat()
                            ))
                        }
                        e => ServerError::Unavailable(e.to_string()),
                    })?
            }
            None => pay_all_free(&self.core.wallet, &seen, to, free, promised, rate, &kept)?,
        };
        let txid = tx.compute_txid();
        let target = tx.output.first().map_or(Amount::ZERO, |o| o.value);
        let fee = self.core.wallet.fee_of(&seen, &tx).unwrap_or(Amount::ZERO);
        if target + fee > free || tx.input.iter().any(|i| kept.contains(&i.previous_output)) {
            self.core.wallet.forget(&txid);
            return Err(ServerError::Unavailable(format!(
                "{} sat and a {} sat fee is more than the {} sat confirmed and not promised to paid swaps",
                target.to_sat(),
                fee.to_sat(),
                free.to_sat()
            )));
        }
        if let Err(e) = self.core.chain.broadcast(&tx).await {
            self.core.wallet.forget(&txid);
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

    /// Scans the chain again for the swap wallet's coins from block `from` (inclusive): a new
    /// watcher replaces the current one, following the wallet from there and every active
    /// swap as before. The height is stored, so a restart keeps it. One rescan at a time.
    ///
    /// The long part — reading every block from `from` — runs while the engine goes on with
    /// its swaps on the current watcher (a deep rescan must not stall a swap near its
    /// deadline), and so does taking the swaps created meanwhile: the new watcher steps back
    /// before the first of them was created, as a reorg would, reads those blocks again with
    /// their watches and takes their unconfirmed transactions from the engine's watcher —
    /// round after round until a round finds no new swap. Only the last moment is under the
    /// engine's locks: the engine's watcher brought up to date, the swaps created in the last
    /// round (their few blocks read again), the unconfirmed transactions of every swap created
    /// during the rescan taken once more, a catch-up to the tip, and the swap of watchers.
    pub async fn rescan_wallet(&self, from: u32) -> Result<(), ServerError> {
        use eddy_backends::{ChainWatcher, WatchId};
        let _one_rescan = self.rescanning.lock().await;
        let tip = self.core.chain.tip().await.map_err(backend)?.height;
        if from > tip {
            return Err(ServerError::Invalid(format!("height {from} is above the tip {tip}")));
        }
        // Never later than the scan already follows: that would hide older coins.
        let current = *self.core.wallet_scan_from.lock().unwrap_or_else(|e| e.into_inner());
        let after = from.saturating_sub(1).min(current.unwrap_or(u32::MAX));
        let mut watched = Self::watches_in(&*self.core.store).await?;
        let start = watched
            .iter()
            .map(|(_, h, _)| h.saturating_sub(1))
            .chain([after])
            .min()
            .unwrap_or(after)
            .min(tip);
        let start_hash = self
            .core
            .chain
            .block_hash(start)
            .await
            .map_err(backend)?
            .ok_or_else(|| ServerError::Backend(format!("no block at {start}")))?;
        let mut fresh = ChainWatcher::new(
            self.core.chain.clone(),
            eddy_backends::BlockRef {
                height: start,
                hash: start_hash,
            },
            RESCAN_HISTORY,
        );
        fresh
            .index_mut()
            .watch_script(crate::wallet::WALLET_WATCH_ID, self.core.wallet.script_pubkey().clone());
        for (id, _, spk) in &watched {
            fresh.index_mut().watch_script(*id, spk.clone());
        }
        // The swaps created during the rescan (their unconfirmed transactions are taken from the
        // engine's watcher once more at the end, when it has seen the latest mempool).
        let mut taken: Vec<WatchId> = vec![];
        let new_since = |now: &[(WatchId, u32, ScriptBuf)], before: &[(WatchId, u32, ScriptBuf)]| {
            now.iter()
                .filter(|(id, ..)| !before.iter().any(|(b, ..)| b == id))
                .cloned()
                .collect::<Vec<_>>()
        };
        // Beside the engine, round after round.
        for _ in 0..RESCAN_ROUNDS {
            let found = fresh.sync().await.map_err(backend)?;
            self.core.log_deposits(&fresh, &found);
            let now = Self::watches_in(&*self.core.store).await?;
            let created = new_since(&now, &watched);
            if created.is_empty() {
                break;
            }
            let first = created.iter().map(|(_, h, _)| *h).min().unwrap_or(tip);
            fresh.rewind_to(first.saturating_sub(1).max(start)).map_err(backend)?;
            for (id, _, spk) in &created {
                fresh.index_mut().watch_script(*id, spk.clone());
            }
            let unconfirmed = unconfirmed_of(&*self.core.watcher.lock().await, &created);
            self.apply_unconfirmed(&mut fresh, unconfirmed).await;
            taken.extend(created.iter().map(|(id, ..)| *id));
            watched.extend(created);
        }
        // Under the engine's locks: swap creations take the watcher's lock after storing the
        // swap, so a swap is either read here or adds its watch to the new watcher.
        let _no_publication = self.core.publisher.lock().await;
        let mut w = self.core.watcher.lock().await;
        // The engine's watcher, up to date: what it knows of the mempool is what the new one
        // takes for the swaps created during the rescan.
        let events = w.sync().await.map_err(backend)?;
        self.core.log_deposits(&w, &events);
        let now = Self::watches_in(&*self.core.store).await?;
        let created = new_since(&now, &watched);
        if let Some(first) = created.iter().map(|(_, h, _)| *h).min() {
            // Created in the last round: few blocks to read again.
            fresh.rewind_to(first.saturating_sub(1).max(start)).map_err(backend)?;
            for (id, _, spk) in &created {
                fresh.index_mut().watch_script(*id, spk.clone());
            }
        }
        taken.extend(created.iter().map(|(id, ..)| *id));
        let all_taken: Vec<_> = now.iter().filter(|(id, ..)| taken.contains(id)).cloned().collect();
        let unconfirmed = unconfirmed_of(&w, &all_taken);
        self.apply_unconfirmed(&mut fresh, unconfirmed).await;
        // Swaps that ended meanwhile are not followed any more.
        for (id, ..) in watched.iter().filter(|(id, ..)| !now.iter().any(|(n, ..)| n == id)) {
            fresh.index_mut().unwatch(*id);
        }
        let found = fresh.sync().await.map_err(backend)?;
        self.core.log_deposits(&fresh, &found);
        *w = fresh;
        drop(w);
        // Stored once it worked, so a failed rescan leaves the server as it was.
        self.core
            .store
            .set_meta(META_WALLET_SCAN_FROM, &after.to_string())
            .await?;
        *self.core.wallet_scan_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(after);
        tracing::info!(from = after + 1, "swap wallet rescanned");
        Ok(())
    }

    /// Starts [`SwapServer::rescan_wallet`] in the background (a deep one outlives any HTTP
    /// request); [`SwapServer::rescan_status`] says how it went. Refused while one runs.
    pub async fn spawn_rescan(self: &std::sync::Arc<Self>, from: u32) -> Result<RescanStatus, ServerError> {
        let tip = self.core.chain.tip().await.map_err(backend)?.height;
        if from > tip {
            return Err(ServerError::Invalid(format!("height {from} is above the tip {tip}")));
        }
        let status = RescanStatus {
            from_height: from,
            running: true,
            error: None,
        };
        {
            let mut st = self.rescan_status.lock().unwrap_or_else(|e| e.into_inner());
            if st.as_ref().is_some_and(|s| s.running) {
                return Err(ServerError::Unavailable(
                    "a rescan is running: see its progress (GET /v1/wallet/rescan), then ask again".into(),
                ));
            }
            *st = Some(status.clone());
        }
        let me = self.clone();
        tokio::spawn(async move {
            // In a task of its own: a panic is recorded as a failure, not a rescan "running"
            // forever.
            let scan = me.clone();
            let result = match tokio::spawn(async move { scan.rescan_wallet(from).await }).await {
                Ok(r) => r,
                Err(e) => Err(ServerError::Backend(format!("the rescan stopped: {e}"))),
            };
            if let Err(e) = &result {
                tracing::warn!(from, error = %e, "swap wallet rescan failed");
            }
            *me.rescan_status.lock().unwrap_or_else(|e| e.into_inner()) = Some(RescanStatus {
                from_height: from,
                running: false,
                error: result.err().map(|e| e.to_string()),
            });
        });
        Ok(status)
    }

    /// The last rescan started through [`SwapServer::spawn_rescan`], if any.
    pub fn rescan_status(&self) -> Option<RescanStatus> {
        self.rescan_status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Applies the transactions `txids` that are still in the mempool to `fresh`'s index.
    async fn apply_unconfirmed(&self, fresh: &mut eddy_backends::ChainWatcher, txids: Vec<Txid>) {
        for txid in txids {
            if let Ok(Some(t)) = self.core.chain.transaction(&txid).await {
                if t.block.is_none() {
                    fresh.index_mut().apply_tx(&t.tx, None, &mut vec![]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use eddy_backends::watch::Funding;
    use eddy_backends::WatchStatus;

    fn coin(n: u8, sat: u64) -> (Funding, Coin) {
        let outpoint = bitcoin::OutPoint {
            txid: Txid::from_byte_array([n; 32]),
            vout: 0,
        };
        let value = Amount::from_sat(sat);
        let f = |spk: ScriptBuf| Funding {
            script_pubkey: spk,
            outpoint,
            value,
            height: Some(101),
        };
        (
            f(ScriptBuf::new()),
            Coin {
                outpoint,
                value,
                height: Some(101),
                depth: 0,
            },
        )
    }

    #[test]
    fn withdrawing_everything_free_never_touches_the_coins_kept_for_paid_swaps() {
        let dir = tempfile::tempdir().expect("tmp");
        let keys = eddy_store::SeedKeys::load_or_create(dir.path(), "seed").expect("seed");
        let w = SwapWallet::new(&keys, bitcoin::Network::Regtest);
        let mut seen = WatchStatus::default();
        let mut coins = vec![];
        for (n, v) in [(1u8, 150_000u64), (2, 90_000), (3, 20_000)] {
            let (mut f, c) = coin(n, v);
            f.script_pubkey = w.script_pubkey().clone();
            seen.fundings.push(f);
            coins.push(c);
        }
        let to = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([7; 20]));
        let rate = FeeRate::from_sat_per_vb(2).expect("rate");
        // 60,000 promised: the largest coin alone covers it and its publication (97 + 58 vB at
        // 2 sat/vB = 310 sat); the two others are free.
        let kept = kept_for(&coins, &[Amount::from_sat(60_000)], rate);
        assert_eq!(kept, HashSet::from([coins[0].outpoint]));
        // 149,800 promised: the largest is 110 sat short of 149,800 + 194 + 116: the next
        // one is kept too.
        let kept2 = kept_for(&coins, &[Amount::from_sat(149_800)], rate);
        assert_eq!(kept2, HashSet::from([coins[0].outpoint, coins[1].outpoint]));
        // More than everything: all kept, nothing free.
        assert_eq!(kept_for(&coins, &[Amount::from_sat(400_000)], rate).len(), 3);
        assert!(kept_for(&coins, &[], rate).is_empty());
        // `all` takes the free coins whole, no change, and pays exactly the fee its weight needs.
        let free = Amount::from_sat(110_000);
        let tx = pay_all_free(&w, &seen, &to, free, Amount::from_sat(60_000), rate, &kept).expect("withdraw");
        let fee = w.fee_of(&seen, &tx).expect("fee");
        assert!(tx.input.iter().all(|i| !kept.contains(&i.previous_output)), "{tx:?}");
        assert_eq!(tx.input.len(), 2);
        assert_eq!(tx.output.len(), 1, "no change");
        assert_eq!(tx.output[0].value + fee, free);
        assert_eq!(fee, rate.fee_wu(tx.weight()).expect("fee"), "no overpaid fee");
        w.forget(&tx.compute_txid());
        // Nothing promised: every coin.
        let all = Amount::from_sat(260_000);
        let tx = pay_all_free(&w, &seen, &to, all, Amount::ZERO, rate, &HashSet::new()).expect("all");
        let fee = w.fee_of(&seen, &tx).expect("fee");
        assert_eq!((tx.input.len(), tx.output.len()), (3, 1));
        assert_eq!(tx.output[0].value + fee, all);
        assert_eq!(fee, rate.fee_wu(tx.weight()).expect("fee"));
        w.forget(&tx.compute_txid());
        // Free coins below the dust limit once the fee is paid: nothing to withdraw.
        let only_small = HashSet::from([coins[0].outpoint, coins[1].outpoint]);
        let small = FeeRate::from_sat_per_vb(200).expect("rate");
        let e = pay_all_free(
            &w,
            &seen,
            &to,
            Amount::from_sat(20_000),
            Amount::ZERO,
            small,
            &only_small,
        )
        .expect_err("dust");
        assert!(e.to_string().contains("nothing to withdraw"), "{e}");
    }
}
