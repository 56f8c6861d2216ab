//! `eddy htlc` as a user runs it: the real binary, seed 000's parameters, text and JSON output,
//! and clear errors for bad input.

use std::process::Command;

const HASH: &str = "9a6de8835775903af1551d43a24b3e06f7a2c9a8c5f07d40505250c5cc325f5d";

fn eddy(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn seed_htlc_text_and_json() {
    let base = [
        "htlc",
        "--kind",
        "seed",
        "--hash",
        HASH,
        "--claim-key",
        "dee4fb4b76fe1e22134ac32bdbd7611257f7ec38",
        "--refund-key",
        "b5df13aa1285096a24247999c20fb1b024442a7a",
        "--timeout",
        "40",
    ];
    let (code, out, err) = eddy(&base);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("scriptPubKey:  0020d329c680878d6f1ed02c1977b792907960e83741c0a8fa710d9e8e1d1064aec8"),
        "{out}"
    );
    assert!(out.contains("claim         231 B   141 vB"), "{out}");

    let mut json_args = base.to_vec();
    json_args.push("--json");
    let (code, out, err) = eddy(&json_args);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["script_pubkey"],
        "0020d329c680878d6f1ed02c1977b792907960e83741c0a8fa710d9e8e1d1064aec8"
    );
    assert_eq!(
        v["address"],
        "bcrt1q6v5udqy834h3a5pvr9mm0y5s09swsd6pcz505ugdn68p6yry4myqsgw2dn"
    );
    assert_eq!(v["paths"][0]["path"], "claim");
    assert_eq!(v["paths"][0]["spend_vsize_p2wpkh"], 141);
}

#[test]
fn p2tr_htlc_has_three_paths_and_network_addresses() {
    let args = |network: &'static str| {
        vec![
            "htlc",
            "--kind",
            "p2tr-in",
            "--hash",
            HASH,
            "--claim-key",
            "02f916619c65ca521de4f3d0ec6084ff3a9c6260b6b2fdc147c84389f107055dc0",
            "--refund-key",
            "02bda5f9de10b11b30d4161a7b8595937468f1f246a2bacd127575a1709d3414f9",
            "--timeout",
            "800000",
            "--network",
            network,
            "--json",
        ]
    };
    let (code, out, err) = eddy(&args("bitcoin"));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(v["address"].as_str().expect("address").starts_with("bc1p"));
    let paths: Vec<&str> = v["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| p["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, ["claim", "refund", "cooperative"]);
    assert_eq!(v["paths"][2]["spend_vsize_p2wpkh"], 99);
    let (_, out, _) = eddy(&args("regtest"));
    let r: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(r["address"].as_str().expect("address").starts_with("bcrt1p"));
    assert_eq!(r["script_pubkey"], v["script_pubkey"], "same output on every network");
}

#[test]
fn bad_input_is_a_clear_error() {
    let (code, _, err) = eddy(&[
        "htlc",
        "--kind",
        "p2tr-out",
        "--hash",
        "abcd",
        "--claim-key",
        "00",
        "--refund-key",
        "00",
        "--timeout",
        "5",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("expected 64 hex characters"), "{err}");
    let (code, _, err) = eddy(&[
        "htlc",
        "--kind",
        "p2tr-out",
        "--hash",
        HASH,
        "--claim-key",
        "dee4fb4b76fe1e22134ac32bdbd7611257f7ec38",
        "--refund-key",
        "b5df13aa1285096a24247999c20fb1b024442a7a",
        "--timeout",
        "40",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("the claim key must be a public key for a p2tr-out HTLC"),
        "{err}"
    );
    let (code, _, err) = eddy(&[
        "htlc",
        "--kind",
        "p2sh",
        "--hash",
        HASH,
        "--claim-key",
        "00",
        "--refund-key",
        "00",
        "--timeout",
        "5",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown HTLC kind"), "{err}");
}
