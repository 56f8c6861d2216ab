//! The swap wallet: the on-chain funds the server locks into HTLCs, held under one P2TR key
//! (BIP86-style key path, derived from the server seed) and spent only by Eddy.
//!
//! Why not the Lightning node's wallet: ldk-node 0.7 neither locks the coins it spends nor adds
//! its own transactions to its wallet, and its mempool sync skips a transaction whose entry time
//! equals the latest one it saw (whole seconds) — two HTLC publications in one second pick the
//! same coin and the second is a rejected double spend until a block arrives. It also pays one
//! output per transaction, so no batching. Owning the key fixes both: every HTLC waiting for
//! publication goes into **one** transaction, and the next one knows at once what the last spent.
//!
//! The coin set is derived, never stored: the outputs paying the wallet's script that the
//! engine's chain watcher has seen (blocks and mempool, reorgs undone by the watcher), minus
//! those spent (seen by the watcher, or by our own transactions not yet seen), plus the change
//! of our own transactions not yet seen. Deposits count once confirmed; our own unconfirmed
//! change is spendable at once, up to [`MAX_UNCONFIRMED_CHAIN`] transactions deep (the mempool's
//! ancestor limit is 25). The store keeps only the height from which to rescan
//! ([`SwapWallet::scan_from`]).

use std::collections::{HashMap, HashSet};

use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak, TweakedKeypair};
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::{
    absolute, transaction, Address, Amount, FeeRate, Network, OutPoint, ScriptBuf, Sequence, TapSighashType,
    Transaction, TxIn, TxOut, Txid, Weight, Witness,
};
use eddy_backends::WatchStatus;
use eddy_core::types::SwapId;
use eddy_store::SeedKeys;

/// Watch id of the wallet's script in the engine's chain watcher: a variant of its own, so no
/// swap (whose id a client chooses) can share the wallet's watch.
pub const WALLET_WATCH_ID: eddy_backends::WatchId = eddy_backends::WatchId::Wallet;
/// Key purpose of the wallet key.
const KEY_PURPOSE: eddy_store::KeyPurpose = eddy_store::KeyPurpose::SwapWallet;
/// Longest chain of our own unconfirmed transactions we build on (mempool ancestor limit 25).
pub const MAX_UNCONFIRMED_CHAIN: usize = 20;
/// Smallest change output kept (P2TR dust limit 330 sat); less goes to the miner.
const MIN_CHANGE: Amount = Amount::from_sat(330);

/// Wallet errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WalletError {
    /// Not enough spendable funds.
    #[error("swap wallet has {available} sat spendable, {needed} sat needed")]
    Insufficient {
        /// Spendable now.
        available: u64,
        /// Needed (outputs + fee).
        needed: u64,
    },
    /// Signing failed (should not happen).
    #[error("signing: {0}")]
    Signing(String),
    /// A transaction cannot be replaced (see [`SwapWallet::bump`]).
    #[error("cannot replace {txid}: {why}")]
    NoBump {
        /// The transaction.
        txid: Txid,
        /// Why.
        why: String,
    },
}

/// A spendable coin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coin {
    /// The output.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
    /// Confirmation height, `None` for our own unconfirmed change.
    pub height: Option<u32>,
    /// How many of our unconfirmed transactions it sits on (0 when confirmed).
    pub depth: usize,
}

/// Balances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WalletBalance {
    /// Spendable now: confirmed coins and our own change.
    pub spendable: Amount,
    /// Deposits waiting for a confirmation.
    pub unconfirmed_deposits: Amount,
}

/// The swap wallet.
pub struct SwapWallet {
    keypair: TweakedKeypair,
    spk: ScriptBuf,
    address: Address,
    /// Our broadcast transactions the watcher may not have seen yet.
    pending: std::sync::Mutex<Vec<Transaction>>,
}

impl SwapWallet {
    /// The wallet of `keys` on `network`.
    pub fn new(keys: &SeedKeys, network: Network) -> SwapWallet {
        let secp = Secp256k1::new();
        let sk = keys.secret(KEY_PURPOSE, &SwapId([0; 32]));
        let keypair = Keypair::from_secret_key(&secp, &sk);
        let (internal, _) = keypair.x_only_public_key();
        let address = Address::p2tr(&secp, internal, None, network);
        SwapWallet {
            keypair: keypair.tap_tweak(&secp, None),
            spk: address.script_pubkey(),
            address,
            pending: std::sync::Mutex::new(vec![]),
        }
    }

    /// Where to deposit funds for swaps.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The wallet's script.
    pub fn script_pubkey(&self) -> &ScriptBuf {
        &self.spk
    }

    /// The coins spendable now, given what the watcher saw of the wallet's script.
    pub fn coins(&self, seen: &WatchStatus) -> Vec<Coin> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Forget our transactions once the watcher shows each of their inputs spent by them
        // (seeing only their outputs is not enough: the inputs would look unspent).
        let seen_spends: HashSet<(OutPoint, Txid)> = seen.spends.iter().map(|s| (s.outpoint, s.txid)).collect();
        pending.retain(|tx| {
            let txid = tx.compute_txid();
            !tx.input
                .iter()
                .all(|i| seen_spends.contains(&(i.previous_output, txid)))
        });
        // ... and once an input is spent by another *confirmed* transaction: it can never
        // confirm, its change must not count.
        pending.retain(|tx| {
            let txid = tx.compute_txid();
            !tx.input.iter().any(|i| {
                seen.spends
                    .iter()
                    .any(|s| s.outpoint == i.previous_output && s.txid != txid && s.height.is_some())
            })
        });
        // Our transactions: spenders of wallet coins (seen or pending).
        let mut ours: HashMap<Txid, Vec<OutPoint>> = HashMap::new();
        for s in &seen.spends {
            ours.entry(s.txid).or_default().push(s.outpoint);
        }
        // Only outputs paying the wallet's own script are its coins, whatever the watch saw.
        let mut outputs: Vec<(OutPoint, Amount, Option<u32>)> = seen
            .fundings
            .iter()
            .filter(|f| f.script_pubkey == self.spk)
            .map(|f| (f.outpoint, f.value, f.height))
            .collect();
        for tx in pending.iter() {
            let txid = tx.compute_txid();
            ours.insert(txid, tx.input.iter().map(|i| i.previous_output).collect());
            for (vout, o) in tx.output.iter().enumerate() {
                if o.script_pubkey == self.spk {
                    outputs.push((
                        OutPoint {
                            txid,
                            vout: vout as u32,
                        },
                        o.value,
                        None,
                    ));
                }
            }
        }
        let spent: HashSet<OutPoint> = ours.values().flatten().copied().collect();
        let heights: HashMap<OutPoint, Option<u32>> = outputs.iter().map(|(o, _, h)| (*o, *h)).collect();
        // Unconfirmed depth of our transaction `txid`.
        fn depth(
            txid: &Txid,
            ours: &HashMap<Txid, Vec<OutPoint>>,
            heights: &HashMap<OutPoint, Option<u32>>,
            guard: usize,
        ) -> usize {
            if guard == 0 {
                return usize::MAX / 2;
            }
            let parents = ours.get(txid).map(Vec::as_slice).unwrap_or(&[]);
            1 + parents
                .iter()
                .filter(|p| matches!(heights.get(p), Some(None)))
                .map(|p| depth(&p.txid, ours, heights, guard - 1))
                .max()
                .unwrap_or(0)
        }
        outputs
            .into_iter()
            .filter(|(o, _, _)| !spent.contains(o))
            .filter_map(|(outpoint, value, height)| match height {
                Some(_) => Some(Coin {
                    outpoint,
                    value,
                    height,
                    depth: 0,
                }),
                // Unconfirmed: only our own change, not too deep.
                None if ours.contains_key(&outpoint.txid) => {
                    let d = depth(&outpoint.txid, &ours, &heights, MAX_UNCONFIRMED_CHAIN + 2);
                    (d < MAX_UNCONFIRMED_CHAIN).then_some(Coin {
                        outpoint,
                        value,
                        height,
                        depth: d,
                    })
                }
                None => None,
            })
            .collect()
    }

    /// Balances, given what the watcher saw.
    pub fn balance(&self, seen: &WatchStatus) -> WalletBalance {
        let coins = self.coins(seen);
        let spendable = coins.iter().map(|c| c.value).sum();
        let listed: HashSet<OutPoint> = coins.iter().map(|c| c.outpoint).collect();
        let spent: HashSet<OutPoint> = seen.spends.iter().map(|s| s.outpoint).collect();
        let ours: HashSet<Txid> = seen.spends.iter().map(|s| s.txid).collect();
        let unconfirmed_deposits = seen
            .fundings
            .iter()
            .filter(|f| {
                f.script_pubkey == self.spk
                    && f.height.is_none()
                    && !listed.contains(&f.outpoint)
                    && !spent.contains(&f.outpoint)
                    && !ours.contains(&f.outpoint.txid)
            })
            .map(|f| f.value)
            .sum();
        WalletBalance {
            spendable,
            unconfirmed_deposits,
        }
    }

    /// Height from which the watcher must rescan to see every unspent coin again.
    pub fn scan_from(&self, seen: &WatchStatus, tip: u32) -> u32 {
        let spent: HashSet<OutPoint> = seen.spends.iter().map(|s| s.outpoint).collect();
        seen.fundings
            .iter()
            .filter(|f| !spent.contains(&f.outpoint))
            .filter_map(|f| f.height)
            .min()
            .unwrap_or(tip)
            .min(tip)
            .saturating_sub(1)
    }

    /// Builds and signs one transaction paying `outputs` (in order, from index 0) with change
    /// back to the wallet last, at `rate`. Coins: confirmed first, largest first. The
    /// transaction is remembered as ours at once (call [`SwapWallet::forget`] if it could not
    /// be broadcast).
    pub fn pay(&self, seen: &WatchStatus, outputs: &[TxOut], rate: FeeRate) -> Result<Transaction, WalletError> {
        self.pay_from(seen, outputs, rate, false, &HashSet::new(), true)
    }

    /// [`SwapWallet::pay`] from confirmed coins only: a withdrawal never spends the change of
    /// an unconfirmed HTLC publication (that would block the publication's fee bumps).
    pub fn pay_confirmed(
        &self,
        seen: &WatchStatus,
        outputs: &[TxOut],
        rate: FeeRate,
    ) -> Result<Transaction, WalletError> {
        self.pay_from(seen, outputs, rate, true, &HashSet::new(), true)
    }

    /// [`SwapWallet::pay_confirmed`] from confirmed coins other than `kept` (those stay for
    /// what the wallet owes: a withdrawal never leaves a paid swap's publication to spend its
    /// unconfirmed change), for a withdrawal: it ends without a change output as soon as the
    /// coins cover the outputs and that smaller fee (a publication keeps its change whenever
    /// it can: without one it could not be replaced at a higher fee).
    pub fn pay_confirmed_except(
        &self,
        seen: &WatchStatus,
        outputs: &[TxOut],
        rate: FeeRate,
        kept: &HashSet<OutPoint>,
    ) -> Result<Transaction, WalletError> {
        self.pay_from(seen, outputs, rate, true, kept, false)
    }

    fn pay_from(
        &self,
        seen: &WatchStatus,
        outputs: &[TxOut],
        rate: FeeRate,
        confirmed_only: bool,
        kept: &HashSet<OutPoint>,
        keep_change: bool,
    ) -> Result<Transaction, WalletError> {
        let mut coins = self.coins(seen);
        if confirmed_only {
            coins.retain(|c| c.height.is_some());
        }
        coins.retain(|c| !kept.contains(&c.outpoint));
        coins.sort_by(|a, b| a.depth.cmp(&b.depth).then(b.value.cmp(&a.value)));
        let target: Amount = outputs.iter().map(|o| o.value).sum();
        let mut chosen: Vec<Coin> = vec![];
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![],
            output: outputs.to_vec(),
        };
        tx.output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: self.spk.clone(),
        });
        let available: Amount = coins.iter().map(|c| c.value).sum();
        let fee_of = |tx: &Transaction| {
            // Key-path witness: one 64-byte signature (1 count + 1 length + 64), plus the
            // segwit marker and flag.
            let w = tx.weight() + Weight::from_wu(2 + 66 * tx.input.len() as u64);
            rate.fee_wu(w).unwrap_or(Amount::MAX_MONEY)
        };
        let mut coins = coins.into_iter();
        loop {
            let total: Amount = chosen.iter().map(|c| c.value).sum();
            let fee = fee_of(&tx);
            if total >= target + fee && !chosen.is_empty() {
                let change = total - target - fee;
                if change >= MIN_CHANGE {
                    let idx = tx.output.len() - 1;
                    tx.output[idx].value = change;
                    break;
                }
                if keep_change {
                    // Below the dust limit: it goes to the fee (another coin would not help
                    // a publication enough to be worth its input).
                    tx.output.pop();
                    break;
                }
            }
            // Without a change output: funded when the coins cover the outputs and the smaller
            // fee; what is left over (less than a change output would be worth) goes to the fee.
            if !chosen.is_empty() && !keep_change {
                let mut bare = tx.clone();
                bare.output.pop();
                if total >= target + fee_of(&bare) {
                    tx = bare;
                    break;
                }
            }
            match coins.next() {
                Some(c) => {
                    tx.input.push(TxIn {
                        previous_output: c.outpoint,
                        script_sig: ScriptBuf::new(),
                        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                        witness: Witness::new(),
                    });
                    chosen.push(c);
                }
                None => {
                    return Err(WalletError::Insufficient {
                        available: available.to_sat(),
                        needed: (target + fee).to_sat(),
                    })
                }
            }
        }
        let prevouts: Vec<TxOut> = chosen
            .iter()
            .map(|c| TxOut {
                value: c.value,
                script_pubkey: self.spk.clone(),
            })
            .collect();
        self.sign_all(&mut tx, &prevouts)?;
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(tx.clone());
        Ok(tx)
    }

    /// Signs every input of `tx` (all ours, key path) against `prevouts`.
    fn sign_all(&self, tx: &mut Transaction, prevouts: &[TxOut]) -> Result<(), WalletError> {
        let secp = Secp256k1::new();
        let mut sigs = vec![];
        {
            let mut cache = SighashCache::new(&*tx);
            for i in 0..tx.input.len() {
                let h = cache
                    .taproot_key_spend_signature_hash(i, &Prevouts::All(prevouts), TapSighashType::Default)
                    .map_err(|e| WalletError::Signing(e.to_string()))?;
                let msg = Message::from_digest(h.to_byte_array());
                sigs.push(secp.sign_schnorr_no_aux_rand(&msg, &self.keypair.to_keypair()));
            }
        }
        for (input, sig) in tx.input.iter_mut().zip(sigs) {
            input.witness = Witness::from_slice(&[sig.as_ref()]);
        }
        Ok(())
    }

    /// A replacement (BIP125) of our unconfirmed `tx`: the same inputs and the same payment
    /// outputs, the change (our last output) lowered so that the whole pays `rate`. Refused when
    /// `tx` has no change of ours, when its change is spent already (replacing it would evict
    /// that child), when an input's value is unknown, when `rate` would not raise the fee, or when
    /// the change would fall below dust. Call [`SwapWallet::replaced`] once the replacement is
    /// broadcast.
    pub fn bump(&self, seen: &WatchStatus, tx: &Transaction, rate: FeeRate) -> Result<Transaction, WalletError> {
        let txid = tx.compute_txid();
        let no = |why: &str| WalletError::NoBump {
            txid,
            why: why.to_string(),
        };
        let change = tx
            .output
            .iter()
            .rposition(|o| o.script_pubkey == self.spk)
            .filter(|i| *i == tx.output.len() - 1)
            .ok_or_else(|| no("no change output to take the fee from"))?;
        let change_op = OutPoint {
            txid,
            vout: change as u32,
        };
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let spent_by_child = seen.spends.iter().any(|s| s.outpoint == change_op)
            || pending
                .iter()
                .any(|t| t.input.iter().any(|i| i.previous_output == change_op));
        if spent_by_child {
            return Err(no("its change is spent by a later transaction"));
        }
        let values = self.input_values(seen);
        let mut prevouts = vec![];
        for i in &tx.input {
            let value = values
                .get(&i.previous_output)
                .copied()
                .ok_or_else(|| no("an input's value is unknown"))?;
            prevouts.push(TxOut {
                value,
                script_pubkey: self.spk.clone(),
            });
        }
        let total_in: Amount = prevouts.iter().map(|p| p.value).sum();
        let total_out: Amount = tx.output.iter().map(|o| o.value).sum();
        let old_fee = total_in
            .checked_sub(total_out)
            .ok_or_else(|| no("outputs exceed inputs"))?;
        let mut new = tx.clone();
        for i in &mut new.input {
            i.witness = Witness::new();
        }
        // Key-path witnesses (one 64-byte signature each) plus the segwit marker and flag.
        let weight = new.weight() + Weight::from_wu(2 + 66 * new.input.len() as u64);
        let fee = rate.fee_wu(weight).unwrap_or(Amount::MAX_MONEY);
        // BIP125 rules 3 and 4: a higher absolute fee, by at least the relay fee of its size.
        let min_fee = old_fee
            + FeeRate::from_sat_per_kwu(250)
                .fee_wu(weight)
                .unwrap_or(Amount::MAX_MONEY);
        let fee = fee.max(min_fee);
        let others: Amount = total_out - tx.output[change].value;
        let new_change = total_in
            .checked_sub(others + fee)
            .filter(|c| *c >= MIN_CHANGE)
            .ok_or_else(|| no("the change cannot pay the higher fee"))?;
        new.output[change].value = new_change;
        self.sign_all(&mut new, &prevouts)?;
        Ok(new)
    }

    /// Values of the outputs the wallet knows: its coins as seen, and our own pending
    /// transactions' outputs (no node index needed: `-txindex` is not required).
    fn input_values(&self, seen: &WatchStatus) -> HashMap<OutPoint, Amount> {
        let mut values: HashMap<OutPoint, Amount> = seen
            .fundings
            .iter()
            .filter(|f| f.script_pubkey == self.spk)
            .map(|f| (f.outpoint, f.value))
            .collect();
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for t in pending.iter() {
            let t_id = t.compute_txid();
            for (vout, o) in t.output.iter().enumerate() {
                values.insert(
                    OutPoint {
                        txid: t_id,
                        vout: vout as u32,
                    },
                    o.value,
                );
            }
        }
        values
    }

    /// The fee `tx` (one of ours, spending wallet coins) pays, from the wallet's own view of
    /// its inputs' values; `None` when an input's value is unknown to the wallet.
    pub fn fee_of(&self, seen: &WatchStatus, tx: &Transaction) -> Option<Amount> {
        let values = self.input_values(seen);
        let mut total_in = Amount::ZERO;
        for i in &tx.input {
            total_in += *values.get(&i.previous_output)?;
        }
        let total_out: Amount = tx.output.iter().map(|o| o.value).sum();
        total_in.checked_sub(total_out)
    }

    /// Remembers `tx` (a stored publication of ours, e.g. after a restart) as ours, so that
    /// its inputs are never spent again by another transaction while it may confirm.
    pub fn remember(&self, tx: &Transaction) {
        let txid = tx.compute_txid();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !p.iter().any(|t| t.compute_txid() == txid) {
            p.push(tx.clone());
        }
    }

    /// Remembers `new` (broadcast) as ours instead of the transaction it replaced.
    pub fn replaced(&self, old: &Txid, new: &Transaction) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let new_txid = new.compute_txid();
        // Never twice (a concurrent `remember` of the stored replacement).
        p.retain(|t| {
            let t = t.compute_txid();
            t != *old && t != new_txid
        });
        p.push(new.clone());
    }

    /// Drops a transaction from the pending set (it was never broadcast).
    pub fn forget(&self, txid: &Txid) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|t| t.compute_txid() != *txid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_backends::watch::{Funding, Spend};

    fn wallet() -> SwapWallet {
        let dir = tempfile::tempdir().expect("tmp");
        let keys = SeedKeys::load_or_create(dir.path(), "seed").expect("seed");
        SwapWallet::new(&keys, Network::Regtest)
    }

    fn op(n: u8) -> OutPoint {
        OutPoint {
            txid: Txid::from_byte_array([n; 32]),
            vout: 0,
        }
    }

    fn htlc_out(v: u64) -> TxOut {
        TxOut {
            value: Amount::from_sat(v),
            script_pubkey: ScriptBuf::new_op_return([1u8; 4]),
        }
    }

    #[test]
    fn a_publication_is_replaced_from_its_change_unless_a_child_spends_it() {
        let w = wallet();
        let mut seen = WatchStatus::default();
        seen.fundings.push(Funding {
            script_pubkey: w.script_pubkey().clone(),
            outpoint: op(1),
            value: Amount::from_sat(100_000),
            height: Some(101),
        });
        let low = FeeRate::from_sat_per_kwu(500);
        let tx = w.pay(&seen, &[htlc_out(10_000), htlc_out(20_000)], low).expect("pay");
        let old_fee = 100_000 - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
        let high = FeeRate::from_sat_per_kwu(3_000);
        let new = w.bump(&seen, &tx, high).expect("bump");
        assert_eq!(new.input, {
            let mut i = tx.input.clone();
            i[0].witness = new.input[0].witness.clone();
            i
        });
        assert_eq!(new.output[..2], tx.output[..2], "the HTLCs unchanged");
        let new_fee = 100_000 - new.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
        assert_eq!(
            new_fee,
            high.fee_wu(new.weight()).expect("fee").to_sat(),
            "exact at the new rate"
        );
        assert!(
            new_fee >= old_fee + new.vsize() as u64,
            "BIP125: higher by at least the relay fee"
        );
        // A rate below the original still pays the original fee plus the relay fee.
        let same = w.bump(&seen, &tx, low).expect("bump");
        let same_fee = 100_000 - same.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
        assert!(same_fee >= old_fee + same.vsize() as u64);
        // A later payment spent the change: replacing would evict it.
        w.replaced(&tx.compute_txid(), &tx);
        let child = w.pay(&seen, &[htlc_out(5_000)], low).expect("child");
        assert_eq!(child.input[0].previous_output.txid, tx.compute_txid());
        assert!(matches!(w.bump(&seen, &tx, high), Err(WalletError::NoBump { .. })));
    }

    #[test]
    fn batches_spend_change_at_once_and_never_reuse_a_coin() {
        let w = wallet();
        let mut seen = WatchStatus::default();
        seen.fundings.push(Funding {
            script_pubkey: w.script_pubkey().clone(),
            outpoint: op(1),
            value: Amount::from_sat(100_000),
            height: Some(101),
        });
        // An unconfirmed deposit is not spendable yet.
        seen.fundings.push(Funding {
            script_pubkey: w.script_pubkey().clone(),
            outpoint: op(2),
            value: Amount::from_sat(50_000),
            height: None,
        });
        let b = w.balance(&seen);
        assert_eq!(b.spendable, Amount::from_sat(100_000));
        assert_eq!(b.unconfirmed_deposits, Amount::from_sat(50_000));
        let rate = FeeRate::from_sat_per_kwu(500);
        let tx1 = w.pay(&seen, &[htlc_out(10_000), htlc_out(20_000)], rate).expect("pay");
        assert_eq!(tx1.input.len(), 1);
        assert_eq!(tx1.input[0].previous_output, op(1));
        assert_eq!(tx1.output.len(), 3, "two HTLCs and change");
        let fee = 100_000 - tx1.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
        assert_eq!(
            fee,
            rate.fee_wu(tx1.weight()).expect("fee").to_sat(),
            "fee is exact for the real weight"
        );
        // Right away (before the watcher saw tx1), the next payment spends tx1's change.
        let tx2 = w.pay(&seen, &[htlc_out(5_000)], rate).expect("pay");
        assert_eq!(
            tx2.input[0].previous_output,
            OutPoint {
                txid: tx1.compute_txid(),
                vout: 2
            }
        );
        // Once the watcher shows tx1 (spend of op(1), its change funding), nothing changes.
        seen.spends.push(Spend {
            outpoint: op(1),
            txid: tx1.compute_txid(),
            input: 0,
            witness: Witness::new(),
            height: None,
        });
        seen.fundings.push(Funding {
            script_pubkey: w.script_pubkey().clone(),
            outpoint: OutPoint {
                txid: tx1.compute_txid(),
                vout: 2,
            },
            value: tx1.output[2].value,
            height: None,
        });
        let coins = w.coins(&seen);
        assert_eq!(coins.len(), 1);
        assert_eq!(coins[0].outpoint.txid, tx2.compute_txid());
        assert_eq!(coins[0].depth, 2);
        // Too much: a clear error.
        let e = w.pay(&seen, &[htlc_out(1_000_000)], rate).expect_err("insufficient");
        assert!(matches!(e, WalletError::Insufficient { .. }), "{e}");
    }

    #[test]
    fn signatures_verify_against_the_wallet_key() {
        let w = wallet();
        let mut seen = WatchStatus::default();
        seen.fundings.push(Funding {
            script_pubkey: w.script_pubkey().clone(),
            outpoint: op(3),
            value: Amount::from_sat(60_000),
            height: Some(5),
        });
        seen.fundings.push(Funding {
            script_pubkey: w.script_pubkey().clone(),
            outpoint: op(4),
            value: Amount::from_sat(60_000),
            height: Some(6),
        });
        let tx = w
            .pay(&seen, &[htlc_out(100_000)], FeeRate::from_sat_per_kwu(250))
            .expect("pay");
        assert_eq!(tx.input.len(), 2);
        let prevouts = vec![
            TxOut {
                value: Amount::from_sat(60_000),
                script_pubkey: w.script_pubkey().clone()
            };
            2
        ];
        let secp = Secp256k1::verification_only();
        let key = bitcoin::XOnlyPublicKey::from_slice(&w.script_pubkey().as_bytes()[2..]).expect("key");
        let mut cache = SighashCache::new(&tx);
        for i in 0..2 {
            let h = cache
                .taproot_key_spend_signature_hash(i, &Prevouts::All(&prevouts), TapSighashType::Default)
                .expect("sighash");
            let sig = bitcoin::secp256k1::schnorr::Signature::from_slice(&tx.input[i].witness[0]).expect("sig");
            secp.verify_schnorr(&sig, &Message::from_digest(h.to_byte_array()), &key)
                .expect("valid");
        }
        assert_eq!(w.scan_from(&seen, 100), 4);
    }
}
