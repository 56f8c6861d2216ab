//! Eddy against Boltz's own library, boltz-core (npm, run by Node from
//! `tests/boltz-core/interop.cjs`; the packages come from `tests/boltz-core/package-lock.json`,
//! installed by `scripts/install-deps.sh`), as an independent peer:
//! - the P2TR HTLCs and MuSig2 co-signing: the swap trees (claim and refund leaves, leaf
//!   version), the internal and output keys, and two-party signing sessions in both roles, so
//!   that a Boltz wallet and an Eddy server (or an Eddy client and a Boltz server) agree on every
//!   byte;
//! - the server's Boltz API v2 front door (`/v2`): a reverse swap made, paid, followed and
//!   claimed cooperatively the way a Boltz wallet does it — the tree and lockup address checked
//!   by boltz-core, the key-path claim signed by boltz-core with the server's co-signature — on
//!   the devnet with real LDK nodes, the money of both sides exact; and hostile requests.

#[path = "attacks_server/hostile.rs"]
mod hostile;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{schnorr, Message, PublicKey, Secp256k1, SecretKey, XOnlyPublicKey};
use eddy_core::htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams, TaprootHtlc};
use eddy_core::musig::{cosign, Signer};
use eddy_core::types::{PaymentHash, Preimage, SwapId};
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

/// A deterministic secret key.
fn key(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[31] = n;
    b[0] = 0x11;
    SecretKey::from_slice(&b).expect("valid key")
}

fn pubkey(n: u8) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), &key(n))
}

const SERVER: u8 = 1;
const CLIENT: u8 = 2;

fn preimage() -> Preimage {
    Preimage::from_bytes([0x42; 32])
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

/// One HTTP call to the server: (status, JSON body or `Null`).
fn call(method: reqwest::Method, url: &str, body: Option<&Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut r = reqwest::Client::new().request(method, url);
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b.to_string());
        }
        let r = r.send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    })
}

fn get(url: &str) -> (u16, Value) {
    call(reqwest::Method::GET, url, None)
}

fn post(url: &str, body: &Value) -> (u16, Value) {
    call(reqwest::Method::POST, url, Some(body))
}

/// Engine passes until the swap's Boltz status is `want` (the status as last read).
fn until_status(net: &eddy::demo::Swapnet, url: &str, want: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("tick");
        let (s, v) = get(url);
        assert_eq!(s, 200, "{v}");
        if v["status"] == json!(want) {
            return v;
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "never {want}: {v}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// **A Boltz wallet's reverse swap through `/v2`.** The wallet reads the pair, creates a
/// reverse swap for an invoice of 100,000 sat (refused first with a stale pair hash and with
/// both amounts), has boltz-core rebuild the swap tree and the lockup address from its own
/// data, pays the invoice from its LDK node, follows the status (`swap.created` →
/// `transaction.mempool` → `transaction.confirmed`), fetches the lockup transaction, and claims
/// by the key path: boltz-core opens the MuSig2 session, the server co-signs through
/// `POST /v2/swap/reverse/{id}/claim` (a wrong preimage refused first), boltz-core aggregates,
/// the claim confirms and the swap ends `invoice.settled`. Money: at 0.5 % and a lockup fee of
/// 1,000 sat the HTLC holds 98,500 sat; the wallet's node pays 100,000 and its claim output is
/// 98,500 less its 200-sat fee; the server's node receives 100,000; its swap wallet pays 98,500
/// and the lockup transaction's fee. A replay of the hash is refused; unknown ids are 404.
#[test]
fn a_boltz_wallet_makes_a_reverse_swap_through_the_v2_front_door() {
    use bitcoin::key::TweakedPublicKey;
    use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
    use bitcoin::{
        absolute, transaction, Address, Amount, Network, OutPoint, Sequence, Transaction, TxIn, TxOut, Witness,
    };
    use std::str::FromStr;

    let dir = tempfile::tempdir().expect("tempdir");
    let net = eddy::demo::swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let url = net.http.as_ref().expect("http").url();
    let mut boltz = BoltzCore::start();

    // The pair: the demo server's 0.5 % and 1,000-sat fixed fee, in Boltz's terms.
    let (s, pairs) = get(&format!("{url}/v2/swap/reverse"));
    assert_eq!(s, 200, "{pairs}");
    let pair = &pairs["BTC"]["BTC"];
    assert_eq!(pair["rate"], json!(1));
    assert_eq!(pair["fees"]["percentage"], json!(0.5));
    assert_eq!(pair["fees"]["minerFees"]["lockup"], json!(1_000));
    assert!(
        pair["fees"]["minerFees"]["claim"].as_u64().is_some_and(|c| c > 0),
        "{pair}"
    );
    assert!(pair["hash"].as_str().is_some_and(|h| h.len() == 64));

    let claim_sk = key(0x61);
    let claim_pk = pubkey(0x61);
    let p = Preimage::from_bytes([0x5b; 32]);
    let hash = p.payment_hash();
    let request = json!({
        "from": "BTC", "to": "BTC",
        "preimageHash": hexs(hash.to_byte_array()),
        "claimPublicKey": hexs(claim_pk.serialize()),
        "invoiceAmount": 100_000,
        "pairHash": pair["hash"],
        "referralId": "boltz-wallet",
    });
    let reverse = format!("{url}/v2/swap/reverse");
    // A stale pair hash and both amounts at once are refused, nothing made.
    let mut stale = request.clone();
    stale["pairHash"] = json!("00".repeat(32));
    assert_eq!(post(&reverse, &stale), (400, json!({"error": "invalid pair hash"})));
    let mut both = request.clone();
    both["onchainAmount"] = json!(98_500);
    assert_eq!(
        post(&reverse, &both),
        (400, json!({"error": "invoice and onchain amount were specified"}))
    );
    let (s, made) = post(&reverse, &request);
    assert_eq!(s, 201, "{made}");
    assert_eq!(post(&reverse, &request).0, 409, "a replay of the hash");
    let id = made["id"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 12);
    assert_eq!(made["onchainAmount"], json!(98_500));
    let onchain = Amount::from_sat(98_500);
    let invoice: lightning_invoice::Bolt11Invoice = made["invoice"].as_str().expect("invoice").parse().expect("bolt11");
    assert_eq!(
        invoice.amount_milli_satoshis(),
        Some(100_000_000),
        "exactly the invoice amount asked"
    );
    assert_eq!(invoice.payment_hash().to_byte_array(), hash.to_byte_array());
    let timeout = made["timeoutBlockHeight"].as_u64().expect("timeout");
    let server_key = made["refundPublicKey"].as_str().expect("key").to_string();

    // boltz-core rebuilds the tree and the lockup address from the wallet's own data.
    // The wallet's own data, as boltz-core takes it.
    let wallet_side = json!({
        "kind": "reverse",
        "preimageHash": hexs(hash.to_byte_array()),
        "claimPublicKey": hexs(claim_pk.serialize()),
        "refundPublicKey": server_key,
        "timeoutBlockHeight": timeout,
        "serverPublicKey": server_key,
        "clientPublicKey": hexs(claim_pk.serialize()),
        "privateKey": hexs(claim_sk.secret_bytes()),
    });
    let theirs = boltz.ask(with_op(wallet_side.clone(), "tree", json!({})));
    assert_eq!(made["swapTree"]["claimLeaf"]["output"], theirs["claimLeaf"]);
    assert_eq!(made["swapTree"]["refundLeaf"]["output"], theirs["refundLeaf"]);
    assert_eq!(made["swapTree"]["claimLeaf"]["version"], json!(192));
    let output_key = XOnlyPublicKey::from_str(theirs["outputKey"].as_str().expect("key")).expect("x-only");
    let lockup = Address::p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(output_key), Network::Regtest);
    assert_eq!(made["lockupAddress"], json!(lockup.to_string()));

    let status = format!("{url}/v2/swap/{id}");
    assert_eq!(get(&status), (200, json!({"status": "swap.created"})));
    let tx_url = format!("{url}/v2/swap/reverse/{id}/transaction");
    assert_eq!(get(&tx_url), (400, json!({"error": "no coins were locked up yet"})));
    assert_eq!(get(&format!("{url}/v2/swap/AAAAAAAAAAAA")).0, 404);
    assert_eq!(
        get(&format!("{url}/v2/swap/{}", SwapId::from(hash))).0,
        404,
        "never by the payment hash"
    );

    let wallet_before = net.rt.block_on(net.server.wallet_balance()).spendable;
    let client_ln_before = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let server_ln_before = net.server_ln.ldk().list_balances().total_lightning_balance_sats;

    // The wallet pays; the server locks up.
    net.client_ln.ldk().bolt11_payment().send(&invoice, None).expect("pay");
    let seen = until_status(&net, &status, "transaction.mempool");
    let lockup_tx: Transaction =
        bitcoin::consensus::encode::deserialize_hex(seen["transaction"]["hex"].as_str().expect("hex")).expect("tx");
    let txid = lockup_tx.compute_txid();
    assert_eq!(seen["transaction"]["id"], json!(txid.to_string()));
    let vout = lockup_tx
        .output
        .iter()
        .position(|o| o.script_pubkey == lockup.script_pubkey())
        .expect("an output pays the lockup address");
    assert_eq!(lockup_tx.output[vout].value, onchain);
    assert_eq!(
        get(&tx_url),
        (
            200,
            json!({"id": txid.to_string(), "hex": seen["transaction"]["hex"], "timeoutBlockHeight": timeout})
        )
    );
    net.mine(1).expect("mine");
    until_status(&net, &status, "transaction.confirmed");

    // The key-path claim: boltz-core and the server's co-signature.
    let claim_fee = Amount::from_sat(200);
    let dest = Address::p2tr(
        &Secp256k1::new(),
        pubkey(0x62).x_only_public_key().0,
        None,
        Network::Regtest,
    );
    let mut claim = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid,
                vout: vout as u32,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: onchain - claim_fee,
            script_pubkey: dest.script_pubkey(),
        }],
    };
    let prevout = TxOut {
        value: onchain,
        script_pubkey: lockup.script_pubkey(),
    };
    let msg = SighashCache::new(&claim)
        .taproot_key_spend_signature_hash(0, &Prevouts::All(&[prevout]), TapSighashType::Default)
        .expect("sighash")
        .to_byte_array();
    let started = boltz.ask(with_op(wallet_side, "start", json!({"msg": hexs(msg)})));
    let claim_url = format!("{url}/v2/swap/reverse/{id}/claim");
    let body = |preimage: &Preimage| {
        json!({
            "preimage": preimage.expose_hex(),
            "pubNonce": started["pubNonce"],
            "transaction": bitcoin::consensus::encode::serialize_hex(&claim),
            "index": 0,
        })
    };
    assert_eq!(
        post(&claim_url, &body(&Preimage::from_bytes([0x5c; 32]))),
        (400, json!({"error": "invalid preimage"}))
    );
    let (s, cosigned) = post(&claim_url, &body(&p));
    assert_eq!(s, 200, "{cosigned}");
    let signed = boltz.ask(json!({"op": "sign", "theirNonce": cosigned["pubNonce"], "theirPublicKey": server_key}));
    assert!(signed["partialSignature"].is_string());
    let done = boltz.ask(json!({"op": "finish", "theirPartial": cosigned["partialSignature"]}));
    assert_eq!(done["theirPartialValid"], json!(true), "the server's partial signature");
    let sig: [u8; 64] = bytes(&done["signature"]);
    claim.input[0].witness = Witness::from_slice(&[sig.to_vec()]);
    net.rt
        .block_on(net.chain.broadcast(&claim))
        .expect("the co-signed claim is valid");
    net.mine(1).expect("mine");
    until_status(&net, &status, "invoice.settled");

    // Money, to the satoshi.
    let lockup_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &lockup_tx))
        .expect("fee");
    assert_eq!(
        net.rt.block_on(net.server.wallet_balance()).spendable,
        wallet_before - onchain - lockup_fee
    );
    assert_eq!(
        net.server_ln.ldk().list_balances().total_lightning_balance_sats,
        server_ln_before + 100_000
    );
    assert_eq!(
        net.client_ln.ldk().list_balances().total_lightning_balance_sats,
        client_ln_before - 100_000
    );
    let confirmed = net
        .rt
        .block_on(net.chain.transaction(&claim.compute_txid()))
        .expect("rpc")
        .expect("the claim is on chain");
    assert_eq!(confirmed.tx.output[0].value, Amount::from_sat(98_300));
    assert_eq!(confirmed.tx.output[0].script_pubkey, dest.script_pubkey());
}

/// **Reverse swaps hold at most their share of the slots.** They have no prepay: a wallet that
/// pays and never claims costs the server a lockup and a refund and holds a slot until `E`.
/// On a server taking 4 swaps at a time, reverse swaps (paid or live unpaid) hold at most one
/// (`BOLTZ_SLOT_SHARE_PERCENT` of 4, rounded up): a second one, from another client, is
/// refused with 503 while the first is live, and nothing is made; the prepaid `/v1` loop-out
/// still gets an offer.
#[test]
fn reverse_swaps_hold_at_most_their_share_of_the_slots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = eddy::demo::swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let cfg = eddy_server::ServerConfig {
        max_active_swaps: 4,
        ..eddy::demo::server_config()
    };
    let limits = eddy_server::http::Limits {
        trusted_proxy: Some("127.0.0.1".parse().expect("ip")),
        ..eddy_server::http::Limits::new(100)
    };
    let own = hostile::own_server(&net, "boltz-share", cfg, limits, None, None, &[400_000]);
    let url = own.http.url();
    let create = |n: u8, ip: &str| {
        let hash = Preimage::from_bytes([n; 32]).payment_hash();
        let body = json!({
            "from": "BTC", "to": "BTC",
            "preimageHash": hexs(hash.to_byte_array()),
            "claimPublicKey": hexs(pubkey(0x61).serialize()),
            "onchainAmount": 50_000,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(format!("{url}/v2/swap/reverse"))
                .header("content-type", "application/json")
                .header("x-forwarded-for", ip)
                .body(body.to_string())
                .send()
                .await
                .expect("send");
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    let (s, first) = create(0x71, "10.0.0.1");
    assert_eq!(s, 201, "{first}");
    let (s, second) = create(0x72, "10.0.0.2");
    assert_eq!(s, 503, "{second}");
    let second_id = SwapId::from(Preimage::from_bytes([0x72; 32]).payment_hash());
    assert!(
        net.rt.block_on(own.server.loop_out.swap(&second_id)).is_err(),
        "nothing was made"
    );
    let v1 = json!({
        "amount": 50_000,
        "payment_hash": Preimage::from_bytes([0x73; 32]).payment_hash().to_string(),
        "claim_key": hexs(pubkey(0x61).serialize()),
    });
    let (s, offer) = post(&format!("{url}/v1/loop-out"), &v1);
    assert_eq!(s, 201, "a prepaid loop-out still gets an offer: {offer}");
}
