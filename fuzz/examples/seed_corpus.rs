//! Writes the hand-made seeds of the fuzz corpus (`fuzz/corpus/<target>/seed-*`): real
//! invoices, real claim/refund/cooperative transactions of the fixture HTLCs, hex values,
//! configuration files and API bodies. Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus`. The structured targets
//! (built from `arbitrary` input) are seeded by the fuzzer itself (see docs/fuzzing.md).

use std::path::Path;

use bitcoin::consensus::serialize;
use bitcoin::{FeeRate, ScriptBuf};
use eddy_core::htlc::HtlcKind;
use eddy_core::tx::{build_spend, FeeSpec, HtlcInput, SpendPath};
use eddy_fuzz::*;

fn write(target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("seed-{name}")), bytes)
}

fn spend(kind: HtlcKind, vout: u32, path: SpendPath, sign_with: Option<u8>) -> Vec<u8> {
    let timeout = if kind == HtlcKind::Seed { eddy_core::constants::SEED_CSV_DELAY } else { EXPIRY };
    let h = htlc(kind, hash(), timeout).expect("fixture HTLC");
    let dest = ScriptBuf::new_p2wpkh(&bitcoin::PublicKey::new(pubkey(CLIENT)).wpubkey_hash().expect("compressed"));
    let mut s = build_spend(
        vec![HtlcInput {
            outpoint: funding(vout),
            value: HTLC_VALUE,
            htlc: h,
            path,
        }],
        dest,
        FeeSpec::Rate(FeeRate::from_sat_per_vb(2).expect("rate")),
    )
    .expect("spend builds");
    if let Some(k) = sign_with {
        s.sign(0, &key(k)).expect("signs");
        return serialize(&s.finalize().expect("finalizes").tx);
    }
    serialize(&s.tx)
}

fn main() -> std::io::Result<()> {
    // Invoices as a server or client sends them.
    let spec = |net: u8, amount_msat, hash, hints: Vec<Vec<u16>>| InvoiceSpec {
        network: Some(net),
        amount: AmountPick::Raw(amount_msat),
        hash,
        age_secs: 10,
        expiry_secs: 0,
        min_final_cltv: 95,
        hints,
        by_stranger: false,
    };
    let invoices = [
        ("regtest-swap", spec(3, Some(100_700_000), HashChoice::Ours, vec![])),
        ("regtest-prepay", spec(3, Some(300_000), HashChoice::Other([9; 32]), vec![])),
        ("regtest-hints", spec(3, Some(5_000_000), HashChoice::Ours, vec![vec![40, 72], vec![144]])),
        ("bitcoin-no-amount", spec(0, None, HashChoice::Ours, vec![])),
        ("testnet", spec(1, Some(1), HashChoice::Ours, vec![])),
        ("signet", spec(2, Some(21_000_000_000), HashChoice::Ours, vec![vec![18]])),
    ];
    for (name, s) in invoices {
        let text = s.build(network(0), 0).expect("invoice builds");
        write("invoice", name, text.as_bytes())?;
        write("invoice", &format!("{name}-upper"), text.to_uppercase().as_bytes())?;
    }
    // Transactions a counterparty hands over or broadcasts.
    let txs = [
        ("coop-claim-unsigned", spend(HtlcKind::P2trOut, 0, SpendPath::Cooperative, None)),
        ("claim-p2tr-out", spend(HtlcKind::P2trOut, 0, SpendPath::Claim(preimage()), Some(CLIENT))),
        ("refund-p2tr-out", spend(HtlcKind::P2trOut, 0, SpendPath::Refund, Some(SERVER))),
        ("coop-claim-in", spend(HtlcKind::P2trIn, 1, SpendPath::Cooperative, None)),
        ("claim-p2tr-in", spend(HtlcKind::P2trIn, 1, SpendPath::Claim(preimage()), Some(SERVER))),
        ("coop-claim-in-wrong-output", spend(HtlcKind::P2trIn, 5, SpendPath::Cooperative, None)),
        ("claim-p2wsh", spend(HtlcKind::P2wsh, 2, SpendPath::Claim(preimage()), Some(CLIENT))),
        ("refund-p2wsh", spend(HtlcKind::P2wsh, 2, SpendPath::Refund, Some(SERVER))),
        ("claim-seed", spend(HtlcKind::Seed, 3, SpendPath::Claim(preimage()), Some(CLIENT))),
        ("refund-seed", spend(HtlcKind::Seed, 3, SpendPath::Refund, Some(SERVER))),
    ];
    for (name, tx) in txs {
        write("counterparty_tx", name, &tx)?;
    }
    // Hex values.
    let h = hash().to_string();
    write("types", "hash", h.as_bytes())?;
    write("types", "hash-upper", h.to_uppercase().as_bytes())?;
    write("types", "hash-json", format!("\"{h}\"").as_bytes())?;
    write("types", "short", &h.as_bytes()[..63])?;
    Ok(())
}
