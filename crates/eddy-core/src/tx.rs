//! Claim, refund and cooperative (MuSig2 key-path) spends of Eddy HTLCs, one or many inputs
//! into one output (batching), with the signed weight predicted exactly before signing.
//!
//! Flow: [`build_spend`] makes an [`UnsignedSpend`] whose fee already matches the final
//! size; each input is then signed with [`UnsignedSpend::sign`] (script paths, our own key) or
//! given the aggregated MuSig2 signature with [`UnsignedSpend::set_cooperative_signature`];
//! [`UnsignedSpend::finalize`] checks that the signed transaction's weight is exactly the
//! predicted one.
//!
//! Locktimes: refunds of absolute-timeout HTLCs set `nLockTime` to the largest expiry among
//! them (so the transaction can be mined at `E + 1` at the earliest, and never before); every
//! input signals RBF with a non-final sequence; seed-kind refunds use the CSV delay as their
//! relative-lock sequence.

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode::VarInt;
use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, Secp256k1};
use bitcoin::secp256k1::{ecdsa, schnorr, Message, PublicKey, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{LeafVersion, TapLeafHash};
use bitcoin::transaction::Version;
use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Weight, Witness};

use crate::htlc::{Htlc, HtlcKey, HtlcKind, SpendPathKind};
use crate::types::Preimage;

/// Errors building or signing a spend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// Nothing to spend.
    #[error("a spend needs at least one input")]
    NoInputs,
    /// The path does not exist for this HTLC kind (e.g. cooperative on P2WSH).
    #[error("input {index}: the {path:?} path does not exist for a {kind} HTLC")]
    PathUnavailable {
        /// Input index.
        index: usize,
        /// The requested path.
        path: SpendPathKind,
        /// The HTLC's kind.
        kind: HtlcKind,
    },
    /// A claim's preimage does not match the HTLC's payment hash.
    #[error("input {index}: the preimage does not match the HTLC's payment hash")]
    PreimageMismatch {
        /// Input index.
        index: usize,
    },
    /// The fee would consume the inputs or leave a dust output.
    #[error("output of {value} after a fee of {fee} is below the dust limit {dust}")]
    Dust {
        /// What would be left.
        value: i64,
        /// The fee.
        fee: Amount,
        /// The output's dust limit.
        dust: Amount,
    },
    /// The signing key is not the key this path requires.
    #[error("input {index}: the key given is not the {path:?} key of the HTLC")]
    WrongKey {
        /// Input index.
        index: usize,
        /// The path being signed.
        path: SpendPathKind,
    },
    /// Index out of range or input still unsigned at finalize.
    #[error("input {index}: {what}")]
    Input {
        /// Input index.
        index: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// Sighash computation failed.
    #[error("sighash: {0}")]
    Sighash(String),
    /// The signed weight differs from the prediction (a bug; never broadcast such a spend).
    #[error("signed weight {actual} differs from predicted {predicted}")]
    WeightMismatch {
        /// Predicted weight.
        predicted: u64,
        /// Actual weight.
        actual: u64,
    },
    /// Amount overflow.
    #[error("amount overflow")]
    Overflow,
}

/// How one HTLC input is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpendPath {
    /// Script path with the preimage.
    Claim(Preimage),
    /// Script path after the timeout.
    Refund,
    /// MuSig2 key path (P2TR only).
    Cooperative,
}

impl SpendPath {
    /// The path's kind.
    pub fn kind(&self) -> SpendPathKind {
        match self {
            SpendPath::Claim(_) => SpendPathKind::Claim,
            SpendPath::Refund => SpendPathKind::Refund,
            SpendPath::Cooperative => SpendPathKind::Cooperative,
        }
    }
}

/// One HTLC output to spend.
#[derive(Clone, Debug)]
pub struct HtlcInput {
    /// The HTLC's outpoint.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
    /// The HTLC it pays to.
    pub htlc: Htlc,
    /// How to spend it.
    pub path: SpendPath,
}

/// How the fee is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeeSpec {
    /// `rate × vsize`, vsize being the exact signed size.
    Rate(FeeRate),
    /// A fixed fee.
    Absolute(Amount),
}

/// The fee for `weight` at `rate`: `ceil(rate_sat_per_kwu × weight / 1000)`, which is
/// exactly `sat/vB × vsize` for whole sat/vB rates.
pub fn fee_for_weight(rate: FeeRate, weight: Weight) -> Option<Amount> {
    let vsize_weight = weight.to_vbytes_ceil().checked_mul(4)?;
    let num = rate.to_sat_per_kwu().checked_mul(vsize_weight)?;
    Some(Amount::from_sat(num.div_ceil(1000)))
}

/// A spend whose inputs still need signatures.
#[derive(Clone, Debug)]
pub struct UnsignedSpend {
    /// The transaction; witnesses fill in as inputs are signed.
    pub tx: Transaction,
    /// The outputs being spent, in input order (needed for taproot sighashes).
    pub prevouts: Vec<TxOut>,
    /// The inputs as given.
    pub inputs: Vec<HtlcInput>,
    /// The exact weight the signed transaction will have.
    pub predicted_weight: Weight,
    /// The fee it pays.
    pub fee: Amount,
}

/// A fully signed spend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedSpend {
    /// The transaction to broadcast.
    pub tx: Transaction,
    /// Its fee.
    pub fee: Amount,
    /// Its weight (equal to the prediction).
    pub weight: Weight,
}

impl SignedSpend {
    /// Virtual size in vbytes.
    pub fn vsize(&self) -> u64 {
        self.weight.to_vbytes_ceil()
    }
}

/// Predicts the signed weight of spending `inputs` to one output with `destination`.
pub fn predict_weight(inputs: &[HtlcInput], destination: &ScriptBuf) -> Result<Weight, TxError> {
    let tx = skeleton(inputs, destination, Amount::ZERO)?;
    weight_of(&tx, inputs)
}

/// The signed weight of `tx` (unsigned, its inputs `inputs`): its base size, the segwit marker
/// and flag, and each input's witness on its path.
fn weight_of(tx: &Transaction, inputs: &[HtlcInput]) -> Result<Weight, TxError> {
    let mut wu = tx.base_size() as u64 * 4 + 2; // segwit marker and flag
    for (index, input) in inputs.iter().enumerate() {
        wu += input
            .htlc
            .witness_weight(input.path.kind())
            .ok_or(TxError::PathUnavailable {
                index,
                path: input.path.kind(),
                kind: input.htlc.params().kind,
            })?;
    }
    Ok(Weight::from_wu(wu))
}

/// The outputs `inputs` spend, in order (what taproot sighashes commit to).
fn prevouts_of(inputs: &[HtlcInput]) -> Vec<TxOut> {
    inputs
        .iter()
        .map(|i| TxOut {
            value: i.value,
            script_pubkey: i.htlc.script_pubkey(),
        })
        .collect()
}

fn skeleton(inputs: &[HtlcInput], destination: &ScriptBuf, value: Amount) -> Result<Transaction, TxError> {
    skeleton_to(
        inputs,
        vec![TxOut {
            value,
            script_pubkey: destination.clone(),
        }],
    )
}

fn skeleton_to(inputs: &[HtlcInput], output: Vec<TxOut>) -> Result<Transaction, TxError> {
    if inputs.is_empty() {
        return Err(TxError::NoInputs);
    }
    let mut lock_height = 0u32;
    let mut txins = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.iter().enumerate() {
        let params = input.htlc.params();
        if input.htlc.witness_weight(input.path.kind()).is_none() {
            return Err(TxError::PathUnavailable {
                index,
                path: input.path.kind(),
                kind: params.kind,
            });
        }
        if let SpendPath::Claim(p) = input.path {
            if !params.payment_hash.matches(&p) {
                return Err(TxError::PreimageMismatch { index });
            }
        }
        let sequence = match (input.path, params.kind) {
            (SpendPath::Refund, HtlcKind::Seed) => Sequence::from_height(params.timeout as u16),
            (SpendPath::Refund, _) => {
                lock_height = lock_height.max(params.timeout);
                Sequence::ENABLE_RBF_NO_LOCKTIME
            }
            _ => Sequence::ENABLE_RBF_NO_LOCKTIME,
        };
        txins.push(TxIn {
            previous_output: input.outpoint,
            script_sig: ScriptBuf::new(),
            sequence,
            witness: Witness::new(),
        });
    }
    let lock_time = LockTime::from_height(lock_height).map_err(|_| TxError::Input {
        index: 0,
        what: "expiry is not a block height",
    })?;
    Ok(Transaction {
        version: Version::TWO,
        lock_time,
        input: txins,
        output,
    })
}

/// The weight of a sweep's transaction without its inputs: version, lock time, the input and
/// output counts, the segwit marker and flag, and `outputs`. A batch of inputs weighs this
/// plus each one's [`input_weight`].
pub fn overhead_weight(outputs: &[ScriptBuf]) -> Weight {
    let out: u64 = outputs
        .iter()
        .map(|s| 8 + VarInt(s.len() as u64).size() as u64 + s.len() as u64)
        .sum();
    // Counts up to MAX_BATCH_INPUTS inputs take one byte; outputs likewise.
    let counts =
        VarInt(crate::batch::MAX_BATCH_INPUTS as u64).size() as u64 + VarInt(outputs.len() as u64).size() as u64;
    Weight::from_wu((4 + 4 + counts + out) * 4 + 2)
}

/// The weight one HTLC input adds to a sweep: outpoint, empty script, sequence, and its witness
/// on its path.
pub fn input_weight(input: &HtlcInput) -> Option<Weight> {
    let witness = input.htlc.witness_weight(input.path.kind())?;
    Some(Weight::from_wu((32 + 4 + 1 + 4) * 4 + witness))
}

/// Builds an unsigned batch spending `inputs` to `outputs` (values as given: the fee is what
/// the inputs hold beyond them). Every output must be above its dust limit.
pub fn build_batch(inputs: Vec<HtlcInput>, outputs: Vec<TxOut>) -> Result<UnsignedSpend, TxError> {
    if outputs.is_empty() {
        return Err(TxError::Input {
            index: 0,
            what: "a batch needs an output",
        });
    }
    for o in &outputs {
        let dust = o.script_pubkey.minimal_non_dust();
        if o.value < dust {
            return Err(TxError::Dust {
                value: o.value.to_sat() as i64,
                fee: Amount::ZERO,
                dust,
            });
        }
    }
    let total_in = inputs
        .iter()
        .try_fold(Amount::ZERO, |acc, i| acc.checked_add(i.value))
        .ok_or(TxError::Overflow)?;
    let total_out = outputs
        .iter()
        .try_fold(Amount::ZERO, |acc, o| acc.checked_add(o.value))
        .ok_or(TxError::Overflow)?;
    let fee = total_in.checked_sub(total_out).ok_or(TxError::Overflow)?;
    let tx = skeleton_to(&inputs, outputs)?;
    let predicted_weight = weight_of(&tx, &inputs)?;
    Ok(UnsignedSpend {
        tx,
        prevouts: prevouts_of(&inputs),
        inputs,
        predicted_weight,
        fee,
    })
}

/// Builds an unsigned spend of `inputs` to `destination` paying `fee`.
pub fn build_spend(inputs: Vec<HtlcInput>, destination: ScriptBuf, fee: FeeSpec) -> Result<UnsignedSpend, TxError> {
    let predicted_weight = predict_weight(&inputs, &destination)?;
    let fee = match fee {
        FeeSpec::Rate(rate) => fee_for_weight(rate, predicted_weight).ok_or(TxError::Overflow)?,
        FeeSpec::Absolute(a) => a,
    };
    let total = inputs
        .iter()
        .try_fold(Amount::ZERO, |acc, i| acc.checked_add(i.value))
        .ok_or(TxError::Overflow)?;
    let dust = destination.minimal_non_dust();
    let value = total.checked_sub(fee).filter(|v| *v >= dust).ok_or(TxError::Dust {
        value: total.to_sat() as i64 - fee.to_sat() as i64,
        fee,
        dust,
    })?;
    let tx = skeleton(&inputs, &destination, value)?;
    Ok(UnsignedSpend {
        tx,
        prevouts: prevouts_of(&inputs),
        inputs,
        predicted_weight,
        fee,
    })
}

/// Signs `msg` with ECDSA, grinding the nonce until r and s both serialize to 32 bytes, so
/// the DER signature is exactly 70 bytes (71 with the sighash byte) and sizes are exact.
pub fn sign_ecdsa_fixed_len(msg: &Message, key: &SecretKey) -> ecdsa::Signature {
    let secp = Secp256k1::signing_only();
    let mut counter = 0u32;
    loop {
        let mut extra = [0u8; 32];
        extra[..4].copy_from_slice(&counter.to_le_bytes());
        let sig = if counter == 0 {
            secp.sign_ecdsa(msg, key)
        } else {
            secp.sign_ecdsa_with_noncedata(msg, key, &extra)
        };
        if sig.serialize_der().len() == 70 {
            return sig;
        }
        counter += 1;
    }
}

/// A signature for one input, before it is placed in a witness.
#[derive(Clone, Copy, Debug)]
pub enum InputSignature {
    /// For P2TR paths.
    Schnorr(schnorr::Signature),
    /// For P2WSH paths (with `SIGHASH_ALL`).
    Ecdsa(ecdsa::Signature),
}

impl UnsignedSpend {
    fn input(&self, index: usize) -> Result<&HtlcInput, TxError> {
        self.inputs.get(index).ok_or(TxError::Input {
            index,
            what: "no such input",
        })
    }

    /// The message to sign for input `index` (BIP341 for P2TR paths, BIP143 `SIGHASH_ALL` for
    /// P2WSH).
    pub fn sighash(&self, index: usize) -> Result<[u8; 32], TxError> {
        let input = self.input(index)?;
        let mut cache = SighashCache::new(&self.tx);
        let err = |e: &dyn std::fmt::Display| TxError::Sighash(e.to_string());
        match (&input.htlc, input.path) {
            (Htlc::Taproot(_), SpendPath::Cooperative) => cache
                .taproot_key_spend_signature_hash(index, &Prevouts::All(&self.prevouts), TapSighashType::Default)
                .map(|h| h.to_byte_array())
                .map_err(|e| err(&e)),
            (Htlc::Taproot(t), path) => {
                let script = if matches!(path, SpendPath::Claim(_)) {
                    &t.claim_script
                } else {
                    &t.refund_script
                };
                let leaf = TapLeafHash::from_script(script, LeafVersion::TapScript);
                cache
                    .taproot_script_spend_signature_hash(
                        index,
                        &Prevouts::All(&self.prevouts),
                        leaf,
                        TapSighashType::Default,
                    )
                    .map(|h| h.to_byte_array())
                    .map_err(|e| err(&e))
            }
            (Htlc::Wsh(w), _) => cache
                .p2wsh_signature_hash(index, &w.witness_script, input.value, EcdsaSighashType::All)
                .map(|h| h.to_byte_array())
                .map_err(|e| err(&e)),
        }
    }

    /// The key that must sign input `index` on its script path.
    fn required_key(&self, index: usize) -> Result<HtlcKey, TxError> {
        let input = self.input(index)?;
        let params = input.htlc.params();
        match input.path {
            SpendPath::Claim(_) => Ok(params.claim_key),
            SpendPath::Refund => Ok(params.refund_key),
            SpendPath::Cooperative => Err(TxError::Input {
                index,
                what: "a cooperative input takes a MuSig2 signature",
            }),
        }
    }

    /// The witness for input `index` given its signature (no check that the signature is
    /// valid: the chain decides; [`UnsignedSpend::sign`] checks the key first).
    pub fn witness_for(&self, index: usize, sig: InputSignature, signer: &PublicKey) -> Result<Witness, TxError> {
        let input = self.input(index)?;
        let mut w = Witness::new();
        match (&input.htlc, input.path, sig) {
            (Htlc::Taproot(_), SpendPath::Cooperative, InputSignature::Schnorr(s)) => {
                w.push(s.serialize());
            }
            (Htlc::Taproot(t), path, InputSignature::Schnorr(s)) => {
                let script = if let SpendPath::Claim(_) = path {
                    &t.claim_script
                } else {
                    &t.refund_script
                };
                let cb = t.control_block(script).ok_or(TxError::Input {
                    index,
                    what: "leaf not in tree",
                })?;
                w.push(s.serialize());
                if let SpendPath::Claim(p) = path {
                    w.push(p.expose_bytes());
                }
                w.push(script.as_bytes());
                w.push(cb.serialize());
            }
            (Htlc::Wsh(wsh), path, InputSignature::Ecdsa(s)) => {
                let sig = bitcoin::ecdsa::Signature {
                    signature: s,
                    sighash_type: EcdsaSighashType::All,
                };
                w.push(sig.serialize());
                if wsh.params.kind == HtlcKind::Seed {
                    w.push(signer.serialize());
                }
                match path {
                    SpendPath::Claim(p) => w.push(p.expose_bytes()),
                    _ => w.push([]),
                }
                w.push(wsh.witness_script.as_bytes());
            }
            _ => {
                return Err(TxError::Input {
                    index,
                    what: "signature type does not fit the HTLC kind",
                })
            }
        }
        Ok(w)
    }

    /// Signs input `index` on its script path with `key`, which must be the HTLC's claim key
    /// (claims) or refund key (refunds).
    pub fn sign(&mut self, index: usize, key: &SecretKey) -> Result<(), TxError> {
        let required = self.required_key(index)?;
        let secp = Secp256k1::signing_only();
        let public = PublicKey::from_secret_key(&secp, key);
        let path = self.input(index)?.path.kind();
        let ok = match required {
            HtlcKey::Pubkey(pk) => pk == public,
            HtlcKey::Hash(h) => HtlcKey::Pubkey(public).pubkey_hash() == h,
        };
        if !ok {
            return Err(TxError::WrongKey { index, path });
        }
        let msg = Message::from_digest(self.sighash(index)?);
        let sig = match self.input(index)?.htlc {
            Htlc::Taproot(_) => {
                let keypair = Keypair::from_secret_key(&secp, key);
                InputSignature::Schnorr(secp.sign_schnorr(&msg, &keypair))
            }
            Htlc::Wsh(_) => InputSignature::Ecdsa(sign_ecdsa_fixed_len(&msg, key)),
        };
        let witness = self.witness_for(index, sig, &public)?;
        self.tx.input[index].witness = witness;
        Ok(())
    }

    /// Places the aggregated MuSig2 signature on cooperative input `index`.
    pub fn set_cooperative_signature(&mut self, index: usize, sig: schnorr::Signature) -> Result<(), TxError> {
        if self.input(index)?.path != SpendPath::Cooperative {
            return Err(TxError::Input {
                index,
                what: "not a cooperative input",
            });
        }
        let mut w = Witness::new();
        w.push(sig.serialize());
        self.tx.input[index].witness = w;
        Ok(())
    }

    /// Moves input `index` to `path` (a key-path input whose co-signer did not sign, to its
    /// script path): the transaction is unchanged — a taproot signature commits to the
    /// transaction, not to the other inputs' witnesses, so every signature made for the other
    /// inputs stays valid — and the predicted weight follows the new witness. Its witness is
    /// cleared (sign it again on the new path).
    pub fn set_path(&mut self, index: usize, path: SpendPath) -> Result<(), TxError> {
        let input = self.input(index)?;
        let weight = |p: SpendPath| {
            input.htlc.witness_weight(p.kind()).ok_or(TxError::PathUnavailable {
                index,
                path: p.kind(),
                kind: input.htlc.params().kind,
            })
        };
        let (old, new) = (weight(input.path)?, weight(path)?);
        self.predicted_weight = Weight::from_wu(self.predicted_weight.to_wu() - old + new);
        if let Some(i) = self.inputs.get_mut(index) {
            i.path = path;
        }
        if let Some(i) = self.tx.input.get_mut(index) {
            i.witness = Witness::new();
        }
        Ok(())
    }

    /// Checks every input is signed and the weight is exactly as predicted.
    pub fn finalize(self) -> Result<SignedSpend, TxError> {
        if let Some(index) = self.tx.input.iter().position(|i| i.witness.is_empty()) {
            return Err(TxError::Input {
                index,
                what: "not signed",
            });
        }
        let actual = self.tx.weight();
        if actual != self.predicted_weight {
            return Err(TxError::WeightMismatch {
                predicted: self.predicted_weight.to_wu(),
                actual: actual.to_wu(),
            });
        }
        Ok(SignedSpend {
            tx: self.tx,
            fee: self.fee,
            weight: actual,
        })
    }
}

/// The BIP341 key-path message of input 0 of `tx`, a transaction someone else built that spends
/// only `htlc`'s output holding `value`: what a MuSig2 co-signer signs (a loop-out server for
/// the client's claim, a loop-in server for the client's refund, a loop-in client for the
/// server's claim). The caller checks that `tx` spends that output and nothing else.
pub fn cooperative_sighash(tx: &Transaction, htlc: &Htlc, value: Amount) -> Result<[u8; 32], TxError> {
    let prevout = TxOut {
        value,
        script_pubkey: htlc.script_pubkey(),
    };
    cooperative_sighash_at(tx, 0, &[prevout])
}

/// The BIP341 key-path message of input `index` of `tx` whose inputs spend `prevouts` (in input
/// order): the co-signer's message for one input of a batch. The caller checks that input
/// `index` spends its HTLC and that `prevouts[index]` is that output; the other prevouts are the
/// asker's word — wrong ones only make the signature useless to the asker.
pub fn cooperative_sighash_at(tx: &Transaction, index: usize, prevouts: &[TxOut]) -> Result<[u8; 32], TxError> {
    if prevouts.len() != tx.input.len() || index >= tx.input.len() {
        return Err(TxError::Input {
            index,
            what: "one prevout per input, and the input must exist",
        });
    }
    SighashCache::new(tx)
        .taproot_key_spend_signature_hash(index, &Prevouts::All(prevouts), TapSighashType::Default)
        .map(|h| h.to_byte_array())
        .map_err(|e| TxError::Sighash(e.to_string()))
}

/// Virtual sizes of a loop-out claim to a P2WPKH address: (key path co-signed by the server,
/// script path with the preimage), for quotes.
pub fn loop_out_claim_vbytes() -> (u64, u64) {
    let key = |b: u8| {
        let sk = bitcoin::secp256k1::SecretKey::from_slice(&[b; 32]).ok();
        sk.map(|k| crate::htlc::public_key(&k))
    };
    let (Some(server), Some(client)) = (key(1), key(2)) else {
        return (0, 0);
    };
    let params = crate::htlc::HtlcParams {
        kind: HtlcKind::P2trOut,
        payment_hash: Preimage::from_bytes([3; 32]).payment_hash(),
        claim_key: crate::htlc::HtlcKey::Pubkey(client),
        refund_key: crate::htlc::HtlcKey::Pubkey(server),
        timeout: 1_000,
    };
    let Ok(htlc) = Htlc::new(params) else {
        return (0, 0);
    };
    let dest = ScriptBuf::new_p2wpkh(&<bitcoin::WPubkeyHash as bitcoin::hashes::Hash>::from_byte_array(
        [0; 20],
    ));
    let size = |path: SpendPath| {
        let input = HtlcInput {
            outpoint: OutPoint::null(),
            value: Amount::from_sat(100_000),
            htlc: htlc.clone(),
            path,
        };
        crate::tx::predict_weight(&[input], &dest).map_or(0, |w| w.to_vbytes_ceil())
    };
    (
        size(SpendPath::Cooperative),
        size(SpendPath::Claim(Preimage::from_bytes([3; 32]))),
    )
}
