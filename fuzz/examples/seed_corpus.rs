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
    let timeout = if kind == HtlcKind::Seed {
        eddy_core::constants::SEED_CSV_DELAY
    } else {
        EXPIRY
    };
    let h = htlc(kind, hash(), timeout).expect("fixture HTLC");
    let dest = ScriptBuf::new_p2wpkh(
        &bitcoin::PublicKey::new(pubkey(CLIENT))
            .wpubkey_hash()
            .expect("compressed"),
    );
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
        (
            "regtest-prepay",
            spec(3, Some(300_000), HashChoice::Other([9; 32]), vec![]),
        ),
        (
            "regtest-hints",
            spec(3, Some(5_000_000), HashChoice::Ours, vec![vec![40, 72], vec![144]]),
        ),
        ("bitcoin-no-amount", spec(0, None, HashChoice::Ours, vec![])),
        ("testnet", spec(1, Some(1), HashChoice::Ours, vec![])),
        (
            "signet",
            spec(2, Some(21_000_000_000), HashChoice::Ours, vec![vec![18]]),
        ),
    ];
    for (name, s) in invoices {
        let text = s.build(network(0), 0).expect("invoice builds");
        write("invoice", name, text.as_bytes())?;
        write("invoice", &format!("{name}-upper"), text.to_uppercase().as_bytes())?;
    }
    // Transactions a counterparty hands over or broadcasts.
    let txs = [
        (
            "coop-claim-unsigned",
            spend(HtlcKind::P2trOut, 0, SpendPath::Cooperative, None),
        ),
        (
            "claim-p2tr-out",
            spend(HtlcKind::P2trOut, 0, SpendPath::Claim(preimage()), Some(CLIENT)),
        ),
        (
            "refund-p2tr-out",
            spend(HtlcKind::P2trOut, 0, SpendPath::Refund, Some(SERVER)),
        ),
        (
            "coop-claim-in",
            spend(HtlcKind::P2trIn, 1, SpendPath::Cooperative, None),
        ),
        (
            "claim-p2tr-in",
            spend(HtlcKind::P2trIn, 1, SpendPath::Claim(preimage()), Some(SERVER)),
        ),
        (
            "coop-claim-in-wrong-output",
            spend(HtlcKind::P2trIn, 5, SpendPath::Cooperative, None),
        ),
        (
            "claim-p2wsh",
            spend(HtlcKind::P2wsh, 2, SpendPath::Claim(preimage()), Some(CLIENT)),
        ),
        (
            "refund-p2wsh",
            spend(HtlcKind::P2wsh, 2, SpendPath::Refund, Some(SERVER)),
        ),
        (
            "claim-seed",
            spend(HtlcKind::Seed, 3, SpendPath::Claim(preimage()), Some(CLIENT)),
        ),
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
    // Signed auth headers: selector byte, clock offset, header, newline, body.
    let id = eddy_core::types::SwapId([7; 32]);
    for (sel, path, body) in [
        (
            0u8,
            format!("/v1/swaps/{id}/cosign"),
            &b"{\"nonce\":\"00\",\"tx\":\"00\"}"[..],
        ),
        (5, format!("/v1/swaps/{id}"), &b""[..]),
        (8, format!("/v1/swaps/{id}/claim-cosign"), &b"{}"[..]),
    ] {
        let method = ["POST", "GET", "post", "PUT"][usize::from(sel % 4)];
        let header = eddy_core::auth::sign(&key(CLIENT), &id, NOW, method, &path, body);
        let mut input = vec![sel, 0, 0];
        input.extend_from_slice(header.as_bytes());
        input.push(b'\n');
        input.extend_from_slice(body);
        write("auth", &format!("signed-{sel}"), &input)?;
        let stale = eddy_core::auth::sign(&key(CLIENT), &id, NOW - 1_000, method, &path, body);
        let mut input = vec![sel, 0x18, 0xfc];
        input.extend_from_slice(stale.as_bytes());
        input.push(b'\n');
        input.extend_from_slice(body);
        write("auth", &format!("stale-{sel}"), &input)?;
    }
    // API request bodies as a client sends them.
    let key_hex = pubkey(CLIENT).to_string();
    let h = hash().to_string();
    write(
        "api_loop_out_create",
        "body",
        format!("{{\"amount\":100000,\"payment_hash\":\"{h}\",\"claim_key\":\"{key_hex}\"}}").as_bytes(),
    )?;
    write(
        "api_loop_out_create",
        "float-amount",
        format!("{{\"amount\":5e4,\"payment_hash\":\"{h}\",\"claim_key\":\"{key_hex}\"}}").as_bytes(),
    )?;
    let loop_in_invoice = InvoiceSpec {
        network: Some(3),
        amount: AmountPick::Raw(Some(99_500_000)),
        hash: HashChoice::Ours,
        age_secs: 0,
        expiry_secs: 7_200 ^ 3_600,
        min_final_cltv: 18,
        hints: vec![],
        by_stranger: false,
    }
    .build(network(3), 0)
    .expect("invoice");
    write(
        "api_loop_in_create",
        "body",
        format!("{{\"amount\":100000,\"invoice\":\"{loop_in_invoice}\",\"refund_key\":\"{key_hex}\"}}").as_bytes(),
    )?;
    write(
        "api_loop_in_create",
        "last-hop",
        format!(
            "{{\"amount\":100000.0,\"invoice\":\"{loop_in_invoice}\",\"refund_key\":\"{key_hex}\",\"last_hop\":\"{}\"}}",
            pubkey(SERVER)
        )
        .as_bytes(),
    )?;
    write(
        "api_preimage",
        "body",
        format!("{{\"preimage\":\"{}\"}}", preimage().expose_hex()).as_bytes(),
    )?;
    write(
        "api_preimage",
        "bare-string",
        format!("\"{}\"", preimage().expose_hex()).as_bytes(),
    )?;
    let client_nonce = {
        let Some(eddy_core::htlc::Htlc::Taproot(t)) = htlc(HtlcKind::P2trOut, hash(), EXPIRY) else {
            panic!("fixture")
        };
        eddy_core::musig::Signer::new(&t, &key(CLIENT), [1; 32], b"seed")
            .expect("session")
            .public_nonce()
    };
    let nonce_hex: String = client_nonce.iter().map(|b| format!("{b:02x}")).collect();
    let coop = spend(HtlcKind::P2trOut, 0, SpendPath::Cooperative, None);
    let coop_hex: String = coop.iter().map(|b| format!("{b:02x}")).collect();
    write(
        "api_cosign_request",
        "body",
        format!("{{\"nonce\":\"{nonce_hex}\",\"tx\":\"{coop_hex}\"}}").as_bytes(),
    )?;
    write(
        "api_claim_cosign",
        "body",
        format!("{{\"nonce\":\"{nonce_hex}\",\"partial_sig\":\"{}\"}}", "5a".repeat(32)).as_bytes(),
    )?;
    let claim_address =
        bitcoin::Address::p2wpkh(&bitcoin::CompressedPublicKey(pubkey(CLIENT)), bitcoin::Network::Regtest);
    write(
        "api_seed_loop_out",
        "body",
        format!("{{\"htlcClaimAddress\":\"{claim_address}\",\"hash\":\"{h}\",\"loopOutSats\":250000}}").as_bytes(),
    )?;
    write("api_query_and_id", "amount", b"amount=100000")?;
    write("api_query_and_id", "amount-float", b"amount=1.5e5")?;
    write("api_query_and_id", "id", h.as_bytes())?;
    write(
        "api_responses",
        "terms",
        br#"{"network":"regtest","min_amount_sat":10000,"max_amount_sat":1000000,"base_fee_sat":1000,"fee_ppm":5000,"prepay_sat":1000,"expiry_delta":80}"#,
    )?;
    write(
        "api_responses",
        "loop-in-offer",
        format!(
            "{{\"server_key\":\"{}\",\"expiry\":900144,\"htlc_address\":\"{}\",\"swap_fee\":1500}}",
            pubkey(SERVER),
            htlc(HtlcKind::P2trIn, hash(), EXPIRY)
                .expect("htlc")
                .address(bitcoin::Network::Regtest)
        )
        .as_bytes(),
    )?;
    write(
        "api_responses",
        "status",
        format!("{{\"id\":\"{h}\",\"state\":\"htlc_published\",\"terminal\":false,\"expiry\":900100,\"htlc_outpoint\":\"{}\"}}", funding(0)).as_bytes(),
    )?;
    write(
        "api_responses",
        "cosign",
        format!("{{\"nonce\":\"{nonce_hex}\",\"partial_sig\":\"{}\"}}", "5a".repeat(32)).as_bytes(),
    )?;
    Ok(())
}
