//! The demo is Eddy's main job on the embedded default: a loop-out between two embedded LDK
//! nodes on the devnet, server and client engines persisting to SQLite. These tests run it and
//! assert the money to the satoshi, then run the README's command itself.

use std::process::Command;

use bitcoin::Amount;

#[test]
fn demo_loop_out_moves_exact_amounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let amount = Amount::from_sat(250_000);
    let r = eddy::demo::run_loop_out(dir.path(), amount, false).expect("demo loop-out");
    // Fees: 1,000 base + 0.5 % = 2,250; 1,000 of it as prepay.
    assert_eq!(r.prepay, Amount::from_sat(1_000));
    assert_eq!(r.swap_invoice, Amount::from_sat(251_250));
    let paid = 252_250;
    assert_eq!(
        r.client_ln.0 - r.client_ln.1,
        paid,
        "client's channel paid swap + prepay, no routing fee"
    );
    assert_eq!(r.server_ln.1 - r.server_ln.0, paid);
    // The claim: the server co-signs a MuSig2 key-path claim to the wallet's P2WPKH address,
    // 99 vB at 2 sat/vB (the script path would be 140 vB).
    assert_eq!(r.claim_vsize, 99);
    assert_eq!(r.claim_fee, Amount::from_sat(198));
    // On-chain footprint per swap: the server's HTLC transaction from its swap wallet (one P2TR
    // key-path input, the HTLC, P2TR change: 154 vB) + the claim.
    assert_eq!(r.htlc_tx_vsize, 154);
    assert_eq!(r.htlc_tx_vsize + r.claim_vsize, 154 + 99);
    // Published at the 2 sat/vB fallback estimate on the exact weight (615 WU → 307.5 → 308).
    assert_eq!(r.publish_fee, Amount::from_sat(308));
    assert_eq!(r.client_chain.1 - r.client_chain.0, (amount - r.claim_fee).to_sat());
    assert_eq!(r.server_chain.0 - r.server_chain.1, (amount + r.publish_fee).to_sat());
    assert!(r.publish_fee > Amount::ZERO && r.publish_fee < Amount::from_sat(1_000));
    assert!(r.blocks <= 5, "{} blocks", r.blocks);
}

#[test]
fn readme_demo_command_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("demo")
        .output()
        .expect("run eddy demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("succeeded in"), "{stdout}");
    assert!(stdout.contains("client on-chain"), "{stdout}");
    // It says which chain it runs on (scripts/test-bitcoind.sh runs this with BITCOIND_EXE).
    let chain = match std::env::var_os("BITCOIND_EXE").filter(|v| !v.is_empty()) {
        Some(exe) => format!("on a regtest bitcoind ({})", std::path::Path::new(&exe).display()),
        None if std::env::var_os("BITCOIND_RPC_URL").is_some() => "on the regtest bitcoind at".to_string(),
        None => "on the embedded devnet".to_string(),
    };
    assert!(
        stdout.contains(&format!("one loop-out of 250000 sat {chain}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(if chain.contains("devnet") {
            "chain: embedded devnet, regtest"
        } else {
            "chain: bitcoind /Satoshi:"
        }),
        "{stdout}"
    );
    // Both directions: the loop-in after the loop-out, with its exact invoice amount.
    assert_eq!(stdout.matches("succeeded in").count(), 2, "{stdout}");
    assert!(stdout.contains("one loop-in of 90000 sat"), "{stdout}");
    assert!(
        stdout.contains("client received      88550 sat over Lightning"),
        "{stdout}"
    );
}
