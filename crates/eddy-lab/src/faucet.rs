//! The lab's faucet: coins mined to the devnet's anyone-can-spend P2WSH (`OP_TRUE`), spent
//! with a witness holding only that script, so the lab can send exact amounts on the devnet
//! and on bitcoind alike without a wallet.

use bitcoin::transaction::Version;
use bitcoin::{absolute, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use eddy_devnet::{anyone_can_spend_script, anyone_can_spend_spk};

use crate::LabError;

/// Fee rate of faucet transactions (sat/vB); above every relay minimum.
const FAUCET_SAT_PER_VB: u64 = 2;
/// Coinbase maturity.
const MATURITY: u32 = 100;

#[derive(Clone, Debug)]
struct Coin {
    outpoint: OutPoint,
    value: Amount,
    /// Height of the block for coinbase coins (maturity); `None` for change.
    coinbase_height: Option<u32>,
}

/// The faucet's coins.
#[derive(Default, Debug)]
pub(crate) struct Faucet {
    coins: Vec<Coin>,
}

impl Faucet {
    /// A coin found on the chain (a coinbase's height for maturity, `None` for change).
    pub(crate) fn add_coin(&mut self, outpoint: OutPoint, value: Amount, coinbase_height: Option<u32>) {
        if self.coins.iter().all(|c| c.outpoint != outpoint) {
            self.coins.push(Coin {
                outpoint,
                value,
                coinbase_height,
            });
        }
    }

    pub(crate) fn add_coinbase(&mut self, txid: Txid, value: Amount, height: u32) {
        self.coins.push(Coin {
            outpoint: OutPoint { txid, vout: 0 },
            value,
            coinbase_height: Some(height),
        });
    }

    /// Builds a transaction paying exactly `amount` to `spk` from one coin spendable in the
    /// block after `tip`; returns the coin and the transaction.
    pub(crate) fn build(&self, spk: ScriptBuf, amount: Amount, tip: u32) -> Result<(OutPoint, Transaction), LabError> {
        // Mature coinbases first (confirmed), then change; larger first.
        let mut usable: Vec<&Coin> = self
            .coins
            .iter()
            .filter(|c| c.coinbase_height.is_none_or(|h| tip + 1 - h >= MATURITY))
            .collect();
        usable.sort_by_key(|c| (c.coinbase_height.is_none(), std::cmp::Reverse(c.value)));
        for coin in usable {
            let mut tx = Transaction {
                version: Version::TWO,
                lock_time: absolute::LockTime::ZERO,
                input: vec![TxIn {
                    previous_output: coin.outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::from_slice(&[anyone_can_spend_script().as_bytes()]),
                }],
                output: vec![
                    TxOut {
                        value: amount,
                        script_pubkey: spk.clone(),
                    },
                    TxOut {
                        value: Amount::ZERO,
                        script_pubkey: anyone_can_spend_spk(),
                    },
                ],
            };
            let fee = Amount::from_sat(tx.vsize() as u64 * FAUCET_SAT_PER_VB);
            let Some(change) = coin.value.checked_sub(amount + fee) else {
                continue;
            };
            if change < Amount::from_sat(1_000) {
                tx.output.pop();
            } else {
                tx.output[1].value = change;
            }
            return Ok((coin.outpoint, tx));
        }
        Err(LabError::Chain(format!(
            "the faucet has no mature coin covering {amount}"
        )))
    }

    pub(crate) fn forget(&mut self, outpoint: &OutPoint) {
        self.coins.retain(|c| c.outpoint != *outpoint);
    }

    pub(crate) fn spent(&mut self, outpoint: &OutPoint, tx: &Transaction) {
        self.forget(outpoint);
        let txid = tx.compute_txid();
        if let Some(change) = tx.output.get(1) {
            self.coins.push(Coin {
                outpoint: OutPoint { txid, vout: 1 },
                value: change.value,
                coinbase_height: None,
            });
        }
    }
}
