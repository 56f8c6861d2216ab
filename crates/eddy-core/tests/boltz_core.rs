//! Eddy's P2TR HTLCs and MuSig2 co-signing against Boltz's own library, boltz-core (npm, run by
//! Node from `tests/boltz-core/interop.cjs`): the swap trees (claim and refund leaves, leaf
//! version), the internal and output keys, and two-party signing sessions in both roles, so
//! that a Boltz wallet and an Eddy server (or an Eddy client and a Boltz server) agree on every
//! byte. The Node packages come from `tests/boltz-core/package-lock.json` (`npm ci`, run by
//! `scripts/install-deps.sh`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use bitcoin::secp256k1::{schnorr, Message, PublicKey, Secp256k1, SecretKey, XOnlyPublicKey};
use common::*;
use eddy_core::htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams, TaprootHtlc};
use eddy_core::musig::{cosign, Signer};
use eddy_core::types::{PaymentHash, Preimage};
use serde_json::{json, Value};

/// boltz-core in a Node process, one request per line.
struct BoltzCore {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl BoltzCore {
    fn start() -> BoltzCore {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/boltz-core");
        assert!(
            dir.join("node_modules/boltz-core").is_dir(),
            "boltz-core is not installed: run `bash scripts/install-deps.sh` (npm ci in {})",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("interop.cjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        BoltzCore { child, stdin, stdout }
    }

    fn ask(&mut self, req: Value) -> Value {
        writeln!(self.stdin, "{req}").expect("write");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read");
        let v: Value = serde_json::from_str(&line).expect("json answer");
        assert!(v.get("error").is_none(), "boltz-core: {v} (for {req})");
        v
    }
}

impl Drop for BoltzCore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hexs(b: impl AsRef<[u8]>) -> String {
    hex::encode(b.as_ref())
}

fn bytes<const N: usize>(v: &Value) -> [u8; N] {
    let s = v.as_str().expect("hex string");
    hex::decode(s).expect("hex").try_into().expect("length")
}

/// The HTLC of `kind` between `server` and `client` for `hash`, timing out at `timeout`.
fn taproot(kind: HtlcKind, hash: PaymentHash, server: &PublicKey, client: &PublicKey, timeout: u32) -> TaprootHtlc {
    let (claim, refund) = match kind {
        HtlcKind::P2trOut => (*client, *server),
        _ => (*server, *client),
    };
    let params = HtlcParams {
        kind,
        payment_hash: hash,
        claim_key: HtlcKey::Pubkey(claim),
        refund_key: HtlcKey::Pubkey(refund),
        timeout,
    };
    match Htlc::new(params).expect("valid") {
        Htlc::Taproot(t) => *t,
        Htlc::Wsh(_) => unreachable!("a P2TR kind"),
    }
}

/// The fields boltz-core builds the same tree from: a loop-out is Boltz's reverse swap (the
/// client claims), a loop-in its submarine swap (the server claims); Boltz's key (the server's)
/// is aggregated first.
fn tree_request(h: &TaprootHtlc, private_key: &SecretKey) -> Value {
    let (kind, claim, refund) = match h.params.kind {
        HtlcKind::P2trOut => ("reverse", h.client_key, h.server_key),
        _ => ("submarine", h.server_key, h.client_key),
    };
    json!({
        "kind": kind,
        "preimageHash": hexs(h.params.payment_hash.to_byte_array()),
        "claimPublicKey": hexs(claim.serialize()),
        "refundPublicKey": hexs(refund.serialize()),
        "timeoutBlockHeight": h.params.timeout,
        "serverPublicKey": hexs(h.server_key.serialize()),
        "clientPublicKey": hexs(h.client_key.serialize()),
        "privateKey": hexs(private_key.secret_bytes()),
    })
}

fn with_op(mut v: Value, op: &str, extra: Value) -> Value {
    v["op"] = json!(op);
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            m.insert(k.clone(), x.clone());
        }
    }
    v
}

fn output_key(h: &TaprootHtlc) -> XOnlyPublicKey {
    h.spend_info.output_key().to_x_only_public_key()
}

fn verify(h: &TaprootHtlc, msg: [u8; 32], sig: &[u8; 64]) -> bool {
    let sig = schnorr::Signature::from_slice(sig).expect("64 bytes");
    Secp256k1::verification_only()
        .verify_schnorr(&sig, &Message::from_digest(msg), &output_key(h))
        .is_ok()
}

/// Timeouts whose script numbers take one to four bytes, and hashes and keys that vary.
fn cases() -> Vec<(HtlcKind, PaymentHash, u32, u8, u8)> {
    let mut out = vec![];
    for (i, timeout) in [17u32, 127, 128, 500, 32_767, 32_768, 840_000, 8_388_608]
        .into_iter()
        .enumerate()
    {
        for kind in [HtlcKind::P2trOut, HtlcKind::P2trIn] {
            let hash = Preimage::from_bytes([i as u8 + 1; 32]).payment_hash();
            out.push((kind, hash, timeout, 10 + i as u8, 40 + i as u8));
        }
    }
    out
}

#[test]
fn swap_trees_and_keys_are_boltz_core_s() {
    let mut boltz = BoltzCore::start();
    for (kind, hash, timeout, s, c) in cases() {
        let h = taproot(kind, hash, &pubkey(s), &pubkey(c), timeout);
        let theirs = boltz.ask(with_op(tree_request(&h, &key(c)), "tree", json!({})));
        let what = format!("{kind:?} timeout {timeout}");
        assert_eq!(
            theirs["claimLeaf"],
            json!(hexs(h.claim_script.as_bytes())),
            "claim leaf, {what}"
        );
        assert_eq!(
            theirs["refundLeaf"],
            json!(hexs(h.refund_script.as_bytes())),
            "refund leaf, {what}"
        );
        assert_eq!(theirs["leafVersion"], json!(0xc0), "{what}");
        assert_eq!(
            theirs["internalKey"],
            json!(hexs(h.internal_key.serialize())),
            "internal key, {what}"
        );
        assert_eq!(
            theirs["outputKey"],
            json!(hexs(output_key(&h).serialize())),
            "output key, {what}"
        );
    }
    // Either key order aggregates differently: the order is part of the protocol.
    let h = taproot(
        HtlcKind::P2trOut,
        preimage().payment_hash(),
        &pubkey(SERVER),
        &pubkey(CLIENT),
        500,
    );
    let mut swapped = tree_request(&h, &key(CLIENT));
    swapped["serverPublicKey"] = json!(hexs(h.client_key.serialize()));
    swapped["clientPublicKey"] = json!(hexs(h.server_key.serialize()));
    let theirs = boltz.ask(with_op(swapped, "tree", json!({})));
    assert_ne!(theirs["internalKey"], json!(hexs(h.internal_key.serialize())));
}

/// A Boltz wallet claims a loop-out by the key path: it opens the session, Eddy's server
/// co-signs (`musig::cosign`, what `POST /v1/swaps/{id}/cosign` runs), and the signature
/// boltz-core aggregates is valid for the HTLC's output key. A partial signature of the wrong
/// key is refused by boltz-core.
#[test]
fn boltz_core_aggregates_eddy_s_server_co_signature() {
    let mut boltz = BoltzCore::start();
    for kind in [HtlcKind::P2trOut, HtlcKind::P2trIn] {
        let h = taproot(
            kind,
            preimage().payment_hash(),
            &pubkey(SERVER),
            &pubkey(CLIENT),
            800_123,
        );
        let msg = [kind as u8 ^ 0x5a; 32];
        let req = tree_request(&h, &key(CLIENT));
        let started = boltz.ask(with_op(req, "start", json!({"msg": hexs(msg)})));
        let client_nonce: [u8; 66] = bytes(&started["pubNonce"]);
        let (server_nonce, server_partial) =
            cosign(&h, &key(SERVER), msg, b"interop", &client_nonce).expect("server co-signs");
        let signed = boltz.ask(json!({
            "op": "sign",
            "theirNonce": hexs(server_nonce),
            "theirPublicKey": hexs(h.server_key.serialize()),
        }));
        assert!(signed["partialSignature"].is_string());
        // A partial signature that is not the server's is refused.
        let (_, stranger_partial) =
            cosign(&h, &key(SERVER), [0x01; 32], b"other message", &client_nonce).expect("signs");
        let refused = boltz.ask(json!({"op": "finish", "theirPartial": hexs(stranger_partial)}));
        assert_eq!(refused["theirPartialValid"], json!(false), "{kind:?}");
        let done = boltz.ask(json!({"op": "finish", "theirPartial": hexs(server_partial)}));
        assert_eq!(done["theirPartialValid"], json!(true), "{kind:?}");
        let sig: [u8; 64] = bytes(&done["signature"]);
        assert!(
            verify(&h, msg, &sig),
            "{kind:?}: the aggregate verifies for the output key"
        );
        assert!(!verify(&h, [0x02; 32], &sig));
    }
}

/// Eddy's side opens the session (the server claiming a loop-in, or an Eddy client claiming
/// from a Boltz server) and boltz-core co-signs: Eddy checks boltz-core's partial signature and
/// aggregates a valid signature; boltz-core accepts Eddy's partial signature too.
#[test]
fn eddy_aggregates_boltz_core_s_co_signature() {
    let mut boltz = BoltzCore::start();
    for (kind, ours, theirs) in [(HtlcKind::P2trIn, SERVER, CLIENT), (HtlcKind::P2trOut, CLIENT, SERVER)] {
        let h = taproot(kind, preimage().payment_hash(), &pubkey(SERVER), &pubkey(CLIENT), 432);
        let msg = [0x77; 32];
        let mut signer = Signer::new(&h, &key(ours), msg, b"interop").expect("a party");
        let started = boltz.ask(with_op(
            tree_request(&h, &key(theirs)),
            "start",
            json!({"msg": hexs(msg)}),
        ));
        let their_nonce: [u8; 66] = bytes(&started["pubNonce"]);
        let signed = boltz.ask(json!({
            "op": "sign",
            "theirNonce": hexs(signer.public_nonce()),
            "theirPublicKey": hexs(pubkey(ours).serialize()),
        }));
        let their_partial: [u8; 32] = bytes(&signed["partialSignature"]);
        let our_partial = signer.sign(&their_nonce).expect("we sign");
        let sig = signer
            .aggregate(&their_nonce, &our_partial, &their_partial)
            .expect("boltz-core's partial verifies");
        assert!(verify(&h, msg, &sig.serialize()), "{kind:?}");
        let mut bad = their_partial;
        bad[31] ^= 1;
        assert!(signer.aggregate(&their_nonce, &our_partial, &bad).is_err(), "{kind:?}");
        let done = boltz.ask(json!({"op": "finish", "theirPartial": hexs(our_partial)}));
        assert_eq!(done["theirPartialValid"], json!(true), "{kind:?}");
        assert_eq!(
            done["signature"],
            json!(hexs(sig.serialize())),
            "{kind:?}: the same signature"
        );
    }
}
