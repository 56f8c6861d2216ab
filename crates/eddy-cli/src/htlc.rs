//! `eddy htlc`: rebuilds an HTLC from its public parameters (kind, payment hash, the two keys,
//! the timeout, the network) and prints everything needed to check a swap address
//! independently: scripts, address, scriptPubKey, and the witness size of each spend path.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use bitcoin::Network;
use clap::Args;
use eddy_core::htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams, SpendPathKind};
use eddy_core::types::PaymentHash;
use serde::Serialize;

/// Arguments of `eddy htlc`.
#[derive(Debug, Args)]
pub struct HtlcArgs {
    /// HTLC kind: p2tr-out (loop-out tree), p2tr-in (loop-in tree), p2wsh, or seed.
    #[arg(long, env = "EDDY_HTLC_KIND")]
    pub kind: HtlcKind,
    /// Payment hash (64 hex characters).
    #[arg(long)]
    pub hash: PaymentHash,
    /// Key of the party that claims with the preimage: compressed public key (66 hex), or for
    /// the seed kind its hash160 (40 hex).
    #[arg(long)]
    pub claim_key: HtlcKey,
    /// Key of the party that refunds after the timeout (same forms).
    #[arg(long)]
    pub refund_key: HtlcKey,
    /// Absolute expiry height, or for the seed kind the relative CSV delay in blocks.
    #[arg(long)]
    pub timeout: u32,
    /// bitcoin, testnet, signet or regtest.
    #[arg(long, default_value = "regtest", env = "EDDY_NETWORK")]
    pub network: Network,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One spend path's size.
#[derive(Debug, Serialize)]
pub struct PathReport {
    /// claim, refund or cooperative.
    pub path: SpendPathKind,
    /// Witness size in bytes (= weight units).
    pub witness_bytes: u64,
    /// vsize of a one-input, one-P2WPKH-output spend by this path.
    pub spend_vsize_p2wpkh: u64,
}

/// Everything `eddy htlc` prints.
#[derive(Debug, Serialize)]
pub struct HtlcReport {
    /// The parameters as given.
    pub params: HtlcParams,
    /// The network.
    pub network: Network,
    /// The address.
    pub address: String,
    /// The output script (hex).
    pub script_pubkey: String,
    /// P2WSH: the witness script (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness_script: Option<String>,
    /// P2WSH: the witness script disassembled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness_script_asm: Option<String>,
    /// P2TR: the MuSig2 internal key (x-only hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_key: Option<String>,
    /// P2TR: the claim leaf (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_leaf: Option<String>,
    /// P2TR: the claim leaf disassembled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_leaf_asm: Option<String>,
    /// P2TR: the refund leaf (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_leaf: Option<String>,
    /// P2TR: the refund leaf disassembled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_leaf_asm: Option<String>,
    /// The spend paths and their sizes.
    pub paths: Vec<PathReport>,
}

/// Builds the report for `args`.
pub fn report(args: &HtlcArgs) -> Result<HtlcReport> {
    let params = HtlcParams {
        kind: args.kind,
        payment_hash: args.hash,
        claim_key: args.claim_key,
        refund_key: args.refund_key,
        timeout: args.timeout,
    };
    let htlc = Htlc::new(params).context("cannot build the HTLC")?;
    // One input spending the HTLC into one P2WPKH output: 10 bytes of version/counts/locktime,
    // 41 bytes of input, 31 of output, ×4, plus the 2-byte segwit marker.
    const BASE_WU: u64 = (4 + 1 + 41 + 1 + 31 + 4) * 4 + 2;
    let paths = htlc
        .paths()
        .iter()
        .filter_map(|p| {
            htlc.witness_weight(*p).map(|w| PathReport {
                path: *p,
                witness_bytes: w,
                spend_vsize_p2wpkh: (BASE_WU + w).div_ceil(4),
            })
        })
        .collect();
    let mut r = HtlcReport {
        params,
        network: args.network,
        address: htlc.address(args.network).to_string(),
        script_pubkey: htlc.script_pubkey().to_hex_string(),
        witness_script: None,
        witness_script_asm: None,
        internal_key: None,
        claim_leaf: None,
        claim_leaf_asm: None,
        refund_leaf: None,
        refund_leaf_asm: None,
        paths,
    };
    match &htlc {
        Htlc::Wsh(w) => {
            r.witness_script = Some(w.witness_script.to_hex_string());
            r.witness_script_asm = Some(w.witness_script.to_asm_string());
        }
        Htlc::Taproot(t) => {
            r.internal_key = Some(t.internal_key.to_string());
            r.claim_leaf = Some(t.claim_script.to_hex_string());
            r.claim_leaf_asm = Some(t.claim_script.to_asm_string());
            r.refund_leaf = Some(t.refund_script.to_hex_string());
            r.refund_leaf_asm = Some(t.refund_script.to_asm_string());
        }
    }
    Ok(r)
}

/// Runs `eddy htlc` and returns what to print.
pub fn run(args: &HtlcArgs) -> Result<String> {
    let r = report(args)?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&r)?);
    }
    let mut out = String::new();
    let timeout = if args.kind.absolute_timeout() {
        format!("expires at height {}", args.timeout)
    } else {
        format!("refundable {} blocks after confirmation (CSV)", args.timeout)
    };
    writeln!(out, "kind:          {} ({timeout})", args.kind)?;
    writeln!(out, "network:       {}", args.network)?;
    writeln!(out, "address:       {}", r.address)?;
    writeln!(out, "scriptPubKey:  {}", r.script_pubkey)?;
    for (label, v) in [
        ("witness script", &r.witness_script_asm),
        ("internal key", &r.internal_key),
        ("claim leaf", &r.claim_leaf_asm),
        ("refund leaf", &r.refund_leaf_asm),
    ] {
        if let Some(v) = v {
            writeln!(out, "{label:<14} {v}")?;
        }
    }
    writeln!(out, "spend paths (witness bytes, vsize of a 1-in/1-out P2WPKH spend):")?;
    for p in &r.paths {
        writeln!(
            out,
            "  {:<12} {:>4} B  {:>4} vB",
            format!("{:?}", p.path).to_lowercase(),
            p.witness_bytes,
            p.spend_vsize_p2wpkh
        )?;
    }
    Ok(out.trim_end().to_owned())
}
