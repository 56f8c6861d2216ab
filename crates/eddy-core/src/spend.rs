//! Spend analysis: given any transaction input that spends one of our HTLCs, tell which path
//! it took and, for a claim, extract the preimage. This is how a loop-out server learns the
//! preimage from the client's claim (in the mempool or a block) and how either side recognises
//! a refund or a cooperative spend.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{OutPoint, Transaction, Witness};

use crate::htlc::{Htlc, HtlcKind, SpendPathKind};
use crate::types::{PaymentHash, Preimage};

/// How one input spent a watched HTLC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HtlcSpend {
    /// Index of the input in the spending transaction.
    pub input_index: usize,
    /// The outpoint it spent.
    pub outpoint: OutPoint,
    /// The path it took.
    pub path: SpendPathKind,
    /// The preimage, when the claim path revealed it (always for a claim).
    pub preimage: Option<Preimage>,
}

fn preimage_at(witness: &Witness, index: usize, hash: &PaymentHash) -> Option<Preimage> {
    let item = witness.nth(index)?;
    let p = Preimage::from_slice(item)?;
    hash.matches(&p).then_some(p)
}

/// Classifies a witness spending `htlc`. `None` if the witness fits none of its paths
/// (a spend that cannot be valid).
pub fn classify(htlc: &Htlc, witness: &Witness) -> Option<(SpendPathKind, Option<Preimage>)> {
    let hash = htlc.params().payment_hash;
    match htlc {
        Htlc::Taproot(t) => {
            if witness.len() == 1 {
                return Some((SpendPathKind::Cooperative, None));
            }
            let leaf = witness.taproot_leaf_script()?;
            if leaf.version != bitcoin::taproot::LeafVersion::TapScript {
                return None;
            }
            let script = leaf.script;
            if script == t.claim_script.as_script() && witness.len() == 4 {
                let p = preimage_at(witness, 1, &hash)?;
                Some((SpendPathKind::Claim, Some(p)))
            } else if script == t.refund_script.as_script() {
                Some((SpendPathKind::Refund, None))
            } else {
                None
            }
        }
        Htlc::Wsh(w) => {
            if witness.last()? != w.witness_script.as_bytes() {
                return None;
            }
            let slot = if w.params.kind == HtlcKind::Seed { 2 } else { 1 };
            match preimage_at(witness, slot, &hash) {
                Some(p) => Some((SpendPathKind::Claim, Some(p))),
                None => Some((SpendPathKind::Refund, None)),
            }
        }
    }
}

/// Every input of `tx` that spends one of `watched`, with its path and preimage.
pub fn analyze(tx: &Transaction, watched: &[(OutPoint, &Htlc)]) -> Vec<HtlcSpend> {
    tx.input
        .iter()
        .enumerate()
        .filter_map(|(input_index, txin)| {
            let (outpoint, htlc) = watched.iter().find(|(op, _)| *op == txin.previous_output)?;
            let (path, preimage) = classify(htlc, &txin.witness)?;
            Some(HtlcSpend {
                input_index,
                outpoint: *outpoint,
                path,
                preimage,
            })
        })
        .collect()
}

/// Scans a witness for any 32-byte item that hashes to `hash`: recovers the preimage from a
/// claim whatever script it used (the server's fallback when it cannot match the script).
pub fn find_preimage(witness: &Witness, hash: &PaymentHash) -> Option<Preimage> {
    witness
        .iter()
        .filter(|item| item.len() == 32)
        .find(|item| sha256::Hash::hash(item).to_byte_array() == hash.0)
        .and_then(Preimage::from_slice)
}
