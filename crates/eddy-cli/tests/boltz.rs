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

/// `v` has exactly the fields the server's OpenAPI document gives schema `name` (at `url`):
/// every field sent is described, every required one sent (one level deep, and into objects).
fn documented(url: &str, name: &str, v: &Value) {
    let (s, doc) = get(&format!("{url}/v1/openapi.json"));
    assert_eq!(s, 200);
    fn check(doc: &Value, schema: &Value, v: &Value, at: &str) {
        let schema = match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("{r}")),
            None => schema,
        };
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let obj = v.as_object().unwrap_or_else(|| panic!("{at}: not an object: {v}"));
        for (k, field) in obj {
            let described = props.get(k).unwrap_or_else(|| panic!("{at}.{k} is not documented"));
            let inner = described
                .get("oneOf")
                .and_then(Value::as_array)
                .and_then(|o| o.iter().find(|s| s.get("type") != Some(&json!("null"))))
                .unwrap_or(described);
            if field.is_object() {
                check(doc, inner, field, &format!("{at}.{k}"));
            }
        }
        for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let r = r.as_str().expect("name");
            assert!(obj.contains_key(r), "{at}.{r} is required but not sent: {v}");
        }
    }
    let schema = doc
        .pointer(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("no schema {name}"));
    assert!(schema.get("properties").is_some(), "{name} describes its fields");
    check(&doc, schema, v, name);
}

/// A Boltz wallet on the server's WebSocket (`/v2/ws`): what it sends goes out in order, and
/// every message it receives is kept, in order.
struct Socket {
    out: tokio::sync::mpsc::UnboundedSender<String>,
    got: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Socket {
    fn open(net: &eddy::demo::Swapnet, url: &str) -> Socket {
        use futures::{SinkExt, StreamExt};
        let ws = url.replacen("http://", "ws://", 1) + "/v2/ws";
        let (mut stream, _) = net
            .rt
            .block_on(tokio_tungstenite::connect_async(ws))
            .expect("the WebSocket opens");
        let (out, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let got = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
        let kept = got.clone();
        net.rt.spawn(async move {
            loop {
                tokio::select! {
                    m = rx.recv() => {
                        let Some(m) = m else { return };
                        if stream.send(tokio_tungstenite::tungstenite::Message::text(m)).await.is_err() {
                            return;
                        }
                    }
                    m = stream.next() => {
                        match m {
                            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                                let v = serde_json::from_str(t.as_str()).expect("JSON");
                                kept.lock().expect("lock").push(v);
                            }
                            Some(Ok(_)) => {}
                            _ => return,
                        }
                    }
                }
            }
        });
        Socket { out, got }
    }

    fn send(&self, v: Value) {
        self.out.send(v.to_string()).expect("socket task");
    }

    /// Waits until `n` messages were received; answers them all.
    fn received(&self, n: usize) -> Vec<Value> {
        let start = std::time::Instant::now();
        loop {
            let got = self.got.lock().expect("lock").clone();
            if got.len() >= n {
                return got;
            }
            assert!(start.elapsed() < eddy_lab::WAIT, "only {got:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The statuses pushed for `id`, in order.
    fn statuses(&self, id: &str) -> Vec<String> {
        let got = self.got.lock().expect("lock").clone();
        got.iter()
            .filter(|m| m["event"] == json!("update"))
            .flat_map(|m| m["args"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["id"] == json!(id))
            .filter_map(|a| a["status"].as_str().map(str::to_string))
            .collect()
    }
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
    documented(&url, "ReversePairs", &pairs);
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
    documented(&url, "ReverseCreated", &made);
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
    documented(&url, "BoltzStatus", &seen);
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
    documented(&url, "Cosigned", &cosigned);
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
    channels_settle_to(&net, (server_ln_before + 100_000, client_ln_before - 100_000));
    let confirmed = net
        .rt
        .block_on(net.chain.transaction(&claim.compute_txid()))
        .expect("rpc")
        .expect("the claim is on chain");
    assert_eq!(confirmed.tx.output[0].value, Amount::from_sat(98_300));
    assert_eq!(confirmed.tx.output[0].script_pubkey, dest.script_pubkey());
}

/// Asserts the server's and the wallet's channel balances (sat) once the settled HTLC is off
/// both commitments: while it is on them, its output's share of the commitment fee is still
/// counted.
fn channels_settle_to(net: &eddy::demo::Swapnet, want: (u64, u64)) {
    let ln = || {
        (
            net.server_ln.ldk().list_balances().total_lightning_balance_sats,
            net.client_ln.ldk().list_balances().total_lightning_balance_sats,
        )
    };
    let _ = eddy_lab::wait_until("the HTLC off the commitments", eddy_lab::WAIT, || ln() == want);
    assert_eq!(ln(), want, "server's and wallet's channel balances");
}

/// **A reverse swap claimed by the script path, without the server.** A Boltz wallet that never
/// asks for the co-signature (or whose server does not give it) claims with boltz-core's own
/// `constructClaimTransaction`: the claim leaf, its signature and the preimage in the witness.
/// The server reads the preimage from the chain and settles: `invoice.settled`. Money: the
/// wallet's node pays 100,000; its claim output is the lockup's 98,500 less the 300-sat fee it
/// chose; the server's node receives 100,000; its swap wallet pays 98,500 and the lockup fee.
#[test]
fn a_boltz_wallet_claims_by_the_script_path_and_the_server_settles_from_the_chain() {
    use bitcoin::Amount;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = eddy::demo::swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let url = net.http.as_ref().expect("http").url();
    let mut boltz = BoltzCore::start();
    let (_, pairs) = get(&format!("{url}/v2/swap/reverse"));
    let claim_sk = key(0x65);
    let claim_pk = pubkey(0x65);
    let p = Preimage::from_bytes([0x5d; 32]);
    let hash = p.payment_hash();
    let (s, made) = post(
        &format!("{url}/v2/swap/reverse"),
        &json!({
            "from": "BTC", "to": "BTC",
            "preimageHash": hexs(hash.to_byte_array()),
            "claimPublicKey": hexs(claim_pk.serialize()),
            "invoiceAmount": 100_000,
            "pairHash": pairs["BTC"]["BTC"]["hash"],
        }),
    );
    assert_eq!(s, 201, "{made}");
    let id = made["id"].as_str().expect("id").to_string();
    let server_key = made["refundPublicKey"].as_str().expect("key").to_string();
    let timeout = made["timeoutBlockHeight"].as_u64().expect("timeout");
    let lockup: bitcoin::Address<bitcoin::address::NetworkUnchecked> = made["lockupAddress"]
        .as_str()
        .expect("address")
        .parse()
        .expect("address");
    let lockup = lockup.assume_checked();
    let wallet_before = net.rt.block_on(net.server.wallet_balance()).spendable;
    let server_ln_before = net.server_ln.ldk().list_balances().total_lightning_balance_sats;
    let client_ln_before = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let invoice: lightning_invoice::Bolt11Invoice = made["invoice"].as_str().expect("invoice").parse().expect("bolt11");
    net.client_ln.ldk().bolt11_payment().send(&invoice, None).expect("pay");
    let status = format!("{url}/v2/swap/{id}");
    until_status(&net, &status, "transaction.mempool");
    net.mine(1).expect("mine");
    let confirmed = until_status(&net, &status, "transaction.confirmed");
    // The lockup that confirmed (the server may have bumped the first one).
    let lockup_tx: bitcoin::Transaction =
        bitcoin::consensus::encode::deserialize_hex(confirmed["transaction"]["hex"].as_str().expect("hex"))
            .expect("tx");
    let vout = lockup_tx
        .output
        .iter()
        .position(|o| o.script_pubkey == lockup.script_pubkey())
        .expect("lockup output");

    let dest = bitcoin::Address::p2tr(
        &Secp256k1::new(),
        pubkey(0x66).x_only_public_key().0,
        None,
        bitcoin::Network::Regtest,
    );
    let spent = boltz.ask(json!({
        "op": "spend",
        "kind": "reverse",
        "preimageHash": hexs(hash.to_byte_array()),
        "claimPublicKey": hexs(claim_pk.serialize()),
        "refundPublicKey": server_key,
        "timeoutBlockHeight": timeout,
        "serverPublicKey": server_key,
        "clientPublicKey": hexs(claim_pk.serialize()),
        "privateKey": hexs(claim_sk.secret_bytes()),
        "transactionId": lockup_tx.compute_txid().to_string(),
        "vout": vout,
        "amount": 98_500,
        "script": hexs(lockup.script_pubkey().as_bytes()),
        "destinationScript": hexs(dest.script_pubkey().as_bytes()),
        "fee": 300,
        "preimage": p.expose_hex(),
    }));
    let claim: bitcoin::Transaction =
        bitcoin::consensus::encode::deserialize_hex(spent["hex"].as_str().expect("hex")).expect("boltz-core's claim");
    assert_eq!(
        claim.input[0].witness.len(),
        4,
        "signature, preimage, leaf, control block"
    );
    assert_eq!(
        claim.input[0].witness.nth(1).map(<[u8]>::to_vec),
        Some(<Vec<u8> as bitcoin::hex::FromHex>::from_hex(&p.expose_hex()).expect("hex")),
        "the preimage, revealed on chain"
    );
    let (s, sent) = post(
        &format!("{url}/v2/chain/BTC/transaction"),
        &json!({"hex": spent["hex"]}),
    );
    assert_eq!(s, 201, "{sent}");
    net.mine(1).expect("mine");
    until_status(&net, &status, "invoice.settled");

    let lockup_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &lockup_tx))
        .expect("fee");
    assert_eq!(
        net.rt.block_on(net.server.wallet_balance()).spendable,
        wallet_before - Amount::from_sat(98_500) - lockup_fee
    );
    channels_settle_to(&net, (server_ln_before + 100_000, client_ln_before - 100_000));
    let confirmed = net
        .rt
        .block_on(net.chain.transaction(&claim.compute_txid()))
        .expect("rpc")
        .expect("the claim is on chain");
    assert_eq!(confirmed.tx.output[0].value, Amount::from_sat(98_200));
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

/// A third node ("carol": neither the wallet's node nor the server's) with a 600,000-sat channel
/// from the server's node (an LDK node takes HTLCs of at most a tenth of a channel in flight:
/// 60,000 sat here). Carol is not reached through the wallet's node: an ldk-node without a
/// public announcement does not forward to private channels.
fn carol(net: &eddy::demo::Swapnet, dir: &std::path::Path) -> eddy_lab::LabNode {
    use bitcoin::Amount;
    let carol = eddy_lab::LabNode::start(&net.lab.chain, &dir.join("carol"), &eddy_lab::NodeOptions::named(7))
        .expect("carol starts");
    net.lab
        .open_channel_between(
            net.server_ln.ldk(),
            carol.node(),
            carol.address(),
            Amount::from_sat(600_000),
            0,
        )
        .expect("channel server → carol");
    net.mine(1).expect("mine");
    carol
}

/// The wallet's side of a submarine swap's tree, as boltz-core takes it.
fn submarine_side(hash: PaymentHash, server_key: &str, wallet: u8, timeout: u64) -> Value {
    json!({
        "kind": "submarine",
        "preimageHash": hexs(hash.to_byte_array()),
        "claimPublicKey": server_key,
        "refundPublicKey": hexs(pubkey(wallet).serialize()),
        "timeoutBlockHeight": timeout,
        "serverPublicKey": server_key,
        "clientPublicKey": hexs(pubkey(wallet).serialize()),
        "privateKey": hexs(key(wallet).secret_bytes()),
    })
}

/// Creates a submarine swap for `invoice` refunded to `wallet`'s key, checks its tree and
/// address with boltz-core, and answers (Boltz id, lockup address, expected amount, timeout,
/// server key).
fn make_submarine(
    url: &str,
    boltz: &mut BoltzCore,
    invoice: &str,
    hash: PaymentHash,
    wallet: u8,
) -> (String, bitcoin::Address, bitcoin::Amount, u64, String) {
    use bitcoin::key::TweakedPublicKey;
    use std::str::FromStr;
    let (s, pairs) = get(&format!("{url}/v2/swap/submarine"));
    assert_eq!(s, 200, "{pairs}");
    documented(url, "SubmarinePairs", &pairs);
    let pair = &pairs["BTC"]["BTC"];
    let request = json!({
        "from": "BTC", "to": "BTC",
        "invoice": invoice,
        "refundPublicKey": hexs(pubkey(wallet).serialize()),
        "pairHash": pair["hash"],
        "referralId": "boltz-wallet",
    });
    let (s, made) = post(&format!("{url}/v2/swap/submarine"), &request);
    assert_eq!(s, 201, "{made}");
    documented(url, "SubmarineCreated", &made);
    assert_eq!(made["acceptZeroConf"], json!(false));
    let id = made["id"].as_str().expect("id").to_string();
    let expected = bitcoin::Amount::from_sat(made["expectedAmount"].as_u64().expect("amount"));
    let timeout = made["timeoutBlockHeight"].as_u64().expect("timeout");
    let server_key = made["claimPublicKey"].as_str().expect("key").to_string();
    let theirs = boltz.ask(with_op(
        submarine_side(hash, &server_key, wallet, timeout),
        "tree",
        json!({}),
    ));
    assert_eq!(made["swapTree"]["claimLeaf"]["output"], theirs["claimLeaf"]);
    assert_eq!(made["swapTree"]["refundLeaf"]["output"], theirs["refundLeaf"]);
    let output_key = XOnlyPublicKey::from_str(theirs["outputKey"].as_str().expect("key")).expect("x-only");
    let lockup = bitcoin::Address::p2tr_tweaked(
        TweakedPublicKey::dangerous_assume_tweaked(output_key),
        bitcoin::Network::Regtest,
    );
    assert_eq!(made["address"], json!(lockup.to_string()));
    assert_eq!(
        made["bip21"],
        json!(format!(
            "bitcoin:{lockup}?amount={}&label=Send%20to%20BTC%20lightning",
            expected.display_in(bitcoin::Denomination::Bitcoin)
        ))
    );
    (id, lockup, expected, timeout, server_key)
}

/// **A submarine swap made for a hash, its invoice set later** (Boltz's `preimageHash`, as
/// wallets paying an LNURL do). The creation answers the HTLC — boltz-core rebuilds the same
/// tree and address from the wallet's data — without an amount (`swap.created`); the wallet
/// locks 51,250 sat there **before** setting the invoice (the server follows the address from
/// the creation on), then sets carol's invoice: `expectedAmount` 51,250, the same address in
/// the BIP21 link. Refused: an invoice for another hash, a second invoice, an unknown id, an
/// invoice more than 6 blocks after its creation. The server pays carol against the confirmed
/// lockup and, with no co-signature from the wallet, claims it by the script path:
/// `transaction.claimed`. A second swap made for a hash, 30,000 sat locked at it, its invoice
/// never set: no refund while the invoice may come, then `swap.expired` and a cooperative
/// refund at once (its invoice refused from then on). Money: carol receives exactly 50,000
/// sat; the server's swap wallet gains 51,250 less its claim fee; the second lockup comes back
/// less the wallet's 200-sat fee.
#[test]
fn a_boltz_wallet_sets_its_invoice_after_making_the_swap_for_its_hash() {
    use bitcoin::key::TweakedPublicKey;
    use bitcoin::Amount;
    use std::str::FromStr;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = eddy::demo::swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let url = net.http.as_ref().expect("http").url();
    let mut boltz = BoltzCore::start();
    let carol = carol(&net, dir.path());
    let desc = ldk_node::lightning_invoice::Bolt11InvoiceDescription::Direct(
        ldk_node::lightning_invoice::Description::new("carol".into()).expect("description"),
    );
    let invoice = carol
        .node()
        .bolt11_payment()
        .receive(50_000_000, &desc, 7_200)
        .expect("carol's invoice");
    let other = carol
        .node()
        .bolt11_payment()
        .receive(50_000_000, &desc, 7_200)
        .expect("another invoice");
    let hash = PaymentHash(invoice.payment_hash().to_byte_array());
    let submarine = format!("{url}/v2/swap/submarine");
    let reserve = |hash: &PaymentHash| {
        post(
            &submarine,
            &json!({"from": "BTC", "to": "BTC", "preimageHash": hexs(hash.0), "refundPublicKey": hexs(pubkey(0x68).serialize())}),
        )
    };
    let (s, made) = reserve(&hash);
    assert_eq!(s, 201, "{made}");
    documented(&url, "SubmarineCreated", &made);
    assert_eq!(made["expectedAmount"], json!(0));
    assert!(made.get("bip21").is_none(), "no amount yet: {made}");
    let id = made["id"].as_str().expect("id").to_string();
    let timeout = made["timeoutBlockHeight"].as_u64().expect("timeout");
    let server_key = made["claimPublicKey"].as_str().expect("key").to_string();
    let theirs = boltz.ask(with_op(
        submarine_side(hash, &server_key, 0x68, timeout),
        "tree",
        json!({}),
    ));
    assert_eq!(made["swapTree"]["claimLeaf"]["output"], theirs["claimLeaf"]);
    let output_key = XOnlyPublicKey::from_str(theirs["outputKey"].as_str().expect("key")).expect("x-only");
    let lockup = bitcoin::Address::p2tr_tweaked(
        TweakedPublicKey::dangerous_assume_tweaked(output_key),
        bitcoin::Network::Regtest,
    );
    assert_eq!(made["address"], json!(lockup.to_string()));
    let status = format!("{url}/v2/swap/{id}");
    assert_eq!(get(&status), (200, json!({"status": "swap.created"})));

    // The wallet locks first; the lockup confirms before the invoice is set.
    let lockup_txid = net.lab.chain.fund(&lockup, Amount::from_sat(51_250)).expect("lockup");
    net.mine(1).expect("mine");
    let set = |id: &str, invoice: &str| {
        post(
            &format!("{url}/v2/swap/submarine/{id}/invoice"),
            &json!({"invoice": invoice}),
        )
    };
    assert_eq!(
        set(&id, &other.to_string()),
        (400, json!({"error": "the invoice's payment hash is not the swap's"}))
    );
    assert_eq!(set("AAAAAAAAAAAA", &invoice.to_string()).0, 404);
    let (s, v) = set(&id, &invoice.to_string());
    assert_eq!(s, 200, "{v}");
    documented(&url, "SubmarineInvoiceSet", &v);
    assert_eq!(
        v,
        json!({
            "bip21": format!("bitcoin:{lockup}?amount=0.0005125&label=Send%20to%20BTC%20lightning"),
            "expectedAmount": 51_250,
            "acceptZeroConf": false,
        })
    );
    assert_eq!(
        set(&id, &invoice.to_string()),
        (400, json!({"error": format!("swap {id} has its invoice already")}))
    );
    // A second swap for another hash, 30,000 sat locked there, its invoice never set in time.
    let other_hash = PaymentHash(other.payment_hash().to_byte_array());
    let (s, late) = reserve(&other_hash);
    assert_eq!(s, 201, "{late}");
    let late_id = late["id"].as_str().expect("id").to_string();
    let late_lockup: bitcoin::Address<bitcoin::address::NetworkUnchecked> =
        late["address"].as_str().expect("address").parse().expect("address");
    let late_lockup = late_lockup.assume_checked();
    let late_txid = net
        .lab
        .chain
        .fund(&late_lockup, Amount::from_sat(30_000))
        .expect("late lockup");
    let late_out = lockup_outpoint(&net, late_txid, &late_lockup);
    let dest = bitcoin::Address::p2tr(
        &Secp256k1::new(),
        pubkey(0x69).x_only_public_key().0,
        None,
        bitcoin::Network::Regtest,
    );
    // While its invoice may still come, no refund: it may yet be paid for.
    let (s, v) = post(
        &format!("{url}/v2/swap/submarine/{late_id}/refund"),
        &json!({"pubNonce": "02".repeat(66), "transaction": bitcoin::consensus::encode::serialize_hex(
            &one_input_spend(late_out.0, Amount::from_sat(29_800), &dest)
        ), "index": 0}),
    );
    assert_eq!(
        (s, v),
        (
            400,
            json!({"error": "swap not eligible for a cooperative refund: status not eligible"})
        )
    );

    let carol_before = carol.node().list_balances().total_lightning_balance_sats;
    let wallet_before = net.rt.block_on(net.server.wallet_balance()).spendable;
    // The server pays against the lockup made before the invoice; the wallet does not co-sign:
    // the server claims by the script path.
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("tick");
        let (_, v) = get(&status);
        if v["status"] == json!("transaction.claimed") {
            break;
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "never claimed: {v}");
        if v["status"] == json!("transaction.claim.pending") {
            net.mine(1).expect("mine");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Its creation height, from its timeout; its invoice window closes 6 blocks later.
    let late_made = late["timeoutBlockHeight"].as_u64().expect("timeout")
        - u64::from(eddy_core::constants::PAYING_LOOP_IN_EXPIRY_DELTA);
    let due = late_made + u64::from(eddy_core::constants::LOOP_IN_UNFUNDED_OFFER_BLOCKS);
    let tip = u64::from(net.lab.chain.tip().expect("tip").0);
    if tip < due {
        net.mine(u32::try_from(due - tip).expect("blocks")).expect("mine");
    }
    assert_eq!(
        get(&format!("{url}/v2/swap/{late_id}")),
        (
            200,
            json!({"status": "swap.expired", "failureReason": "the invoice was not set in time"})
        )
    );
    assert_eq!(
        set(&late_id, &other.to_string()),
        (
            400,
            json!({"error": "the swap's invoice was due within 6 blocks of its creation: make a new swap"})
        )
    );
    // A "refund" spending something else is refused and changes nothing (the reservation is
    // not closed by it: its invoice is still refused only for being late).
    let (s, v) = post(
        &format!("{url}/v2/swap/submarine/{late_id}/refund"),
        &json!({"pubNonce": "02".repeat(66), "transaction": bitcoin::consensus::encode::serialize_hex(
            &one_input_spend(bitcoin::OutPoint::new(late_txid, 7), Amount::from_sat(29_800), &dest)
        ), "index": 0}),
    );
    assert_eq!(
        (s, v),
        (
            400,
            json!({"error": "swap not eligible for a cooperative refund: the refund must spend this swap's HTLC"})
        )
    );
    assert!(set(&late_id, &other.to_string()).1["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("the swap's invoice was due")));
    // Now it can never be a swap: its lockup is refunded cooperatively, at once, and its
    // invoice can no longer be set.
    let late_server_key = late["claimPublicKey"].as_str().expect("key").to_string();
    let late_timeout = late["timeoutBlockHeight"].as_u64().expect("timeout");
    let refund = refund_cooperatively(
        &net,
        &url,
        &mut boltz,
        &late_id,
        submarine_side(other_hash, &late_server_key, 0x68, late_timeout),
        &late_server_key,
        late_out,
        &dest,
    );
    assert_eq!(
        set(&late_id, &other.to_string()),
        (
            400,
            json!({"error": format!("swap {late_id} was refunded: make a new swap")})
        )
    );
    // And its hash is taken for every door: no swap can ever be paid against an HTLC whose
    // refund was co-signed (a `/v1` loop-in made 176 blocks later would rebuild it).
    assert_eq!(
        post(
            &submarine,
            &json!({"from": "BTC", "to": "BTC", "invoice": other.to_string(), "refundPublicKey": hexs(pubkey(0x68).serialize())}),
        ),
        (409, json!({"error": "a swap with this invoice exists already"}))
    );
    assert_eq!(
        get(&format!("{url}/v2/swap/{late_id}")),
        (
            200,
            json!({"status": "swap.expired", "failureReason": "the invoice was not set in time"})
        )
    );
    net.mine(1).expect("mine");
    let refunded = net
        .rt
        .block_on(net.chain.transaction(&refund.compute_txid()))
        .expect("rpc")
        .expect("the refund is on chain");
    assert!(refunded.block.is_some());
    assert_eq!(refunded.tx.output[0].value, Amount::from_sat(29_800));
    assert_eq!(refunded.tx.output[0].script_pubkey, dest.script_pubkey());
    let _ = eddy_lab::wait_until("carol paid", eddy_lab::WAIT, || {
        carol.node().list_balances().total_lightning_balance_sats == carol_before + 50_000
    });
    assert_eq!(
        carol.node().list_balances().total_lightning_balance_sats,
        carol_before + 50_000
    );
    let (_, rec) = net
        .rt
        .block_on(net.server.loop_in.swap(&SwapId::from(hash)))
        .expect("swap");
    assert_eq!(
        rec.funding.map(|o| o.txid),
        Some(lockup_txid),
        "the lockup made before the invoice"
    );
    let claim = rec
        .claim
        .expect("claim")
        .all
        .iter()
        .filter_map(|t| net.rt.block_on(net.chain.transaction(t)).expect("rpc"))
        .find(|t| t.block.is_some())
        .expect("a confirmed claim");
    assert!(claim.tx.input[0].witness.len() > 1, "script path");
    let claim_fee = Amount::from_sat(51_250) - claim.tx.output[0].value;
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(
        net.rt.block_on(net.server.wallet_balance()).spendable,
        wallet_before + Amount::from_sat(51_250) - claim_fee
    );
}

/// An unsigned one-input transaction spending `outpoint` to `dest` with `value` (the rest is
/// its fee), RBF enabled: the shape of a wallet's key-path claim or refund.
fn one_input_spend(
    outpoint: bitcoin::OutPoint,
    value: bitcoin::Amount,
    dest: &bitcoin::Address,
) -> bitcoin::Transaction {
    bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: outpoint,
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: bitcoin::Witness::new(),
        }],
        output: vec![bitcoin::TxOut {
            value,
            script_pubkey: dest.script_pubkey(),
        }],
    }
}

/// The lockup output `txid` pays to `lockup`.
fn lockup_outpoint(
    net: &eddy::demo::Swapnet,
    txid: bitcoin::Txid,
    lockup: &bitcoin::Address,
) -> (bitcoin::OutPoint, bitcoin::TxOut) {
    let tx = net
        .rt
        .block_on(net.chain.transaction(&txid))
        .expect("rpc")
        .expect("the lockup is known")
        .tx;
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == lockup.script_pubkey())
        .expect("an output pays the lockup address");
    (
        bitcoin::OutPoint {
            txid,
            vout: vout as u32,
        },
        tx.output[vout].clone(),
    )
}

/// **A Boltz wallet's submarine swap through `/v2`, paying a third node's invoice.** Carol (not
/// the wallet's node) issues an invoice of 50,000 sat; the wallet creates a submarine swap for
/// it (refused first: the server's own invoice, an invoice without an amount, a stale pair
/// hash, a `preimageHash` without an invoice), has boltz-core rebuild the tree and lockup
/// address, and locks exactly `expectedAmount` (50,000 + 0.5 % + 1,000 = 51,250 sat). The
/// status walks `invoice.set` → `transaction.mempool` → (the server pays only against a
/// confirmed lockup) → `transaction.claim.pending`; the wallet reads the claim details, checks
/// the preimage against its invoice's hash, and co-signs with boltz-core (a wrong partial
/// signature is refused and broadcasts nothing); the server's key-path claim confirms:
/// `transaction.claimed`. A cooperative refund is refused once the server has paid. Money:
/// carol receives exactly 50,000 sat and the server's node pays exactly that; the wallet's node
/// is untouched; the server's swap wallet gains 51,250 less its claim fee.
#[test]
fn a_boltz_wallet_pays_a_third_node_s_invoice_through_a_submarine_swap() {
    use bitcoin::Amount;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = eddy::demo::swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let url = net.http.as_ref().expect("http").url();
    let mut boltz = BoltzCore::start();
    let carol = carol(&net, dir.path());
    let desc = ldk_node::lightning_invoice::Bolt11InvoiceDescription::Direct(
        ldk_node::lightning_invoice::Description::new("carol".into()).expect("description"),
    );
    let invoice = carol
        .node()
        .bolt11_payment()
        .receive(50_000_000, &desc, 7_200)
        .expect("carol's invoice");
    let hash = PaymentHash(invoice.payment_hash().to_byte_array());
    let submarine = format!("{url}/v2/swap/submarine");

    // Refusals, nothing made.
    let own = net
        .server_ln
        .ldk()
        .bolt11_payment()
        .receive(100_000_000, &desc, 7_200)
        .expect("own invoice");
    let ask = |invoice: &str, extra: Value| {
        let mut b =
            json!({"from": "BTC", "to": "BTC", "invoice": invoice, "refundPublicKey": hexs(pubkey(0x63).serialize())});
        for (k, v) in extra.as_object().expect("object") {
            b[k] = v.clone();
        }
        post(&submarine, &b)
    };
    assert_eq!(
        ask(&own.to_string(), json!({})),
        (400, json!({"error": "the invoice is this server's own"}))
    );
    let no_amount = carol
        .node()
        .bolt11_payment()
        .receive_variable_amount(&desc, 7_200)
        .expect("no amount");
    assert_eq!(ask(&no_amount.to_string(), json!({})).0, 400);
    assert_eq!(
        ask(&invoice.to_string(), json!({"pairHash": "00".repeat(32)})),
        (400, json!({"error": "invalid pair hash"}))
    );
    let (s, v) = post(
        &submarine,
        &json!({"from": "BTC", "to": "BTC", "preimageHash": "zz", "refundPublicKey": hexs(pubkey(0x63).serialize())}),
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        ask(&invoice.to_string(), json!({"preimageHash": hexs(hash.0)})),
        (
            400,
            json!({"error": "malformed request: invoice and preimageHash were specified"})
        )
    );
    assert_eq!(get(&format!("{url}/v2/swap/submarine/AAAAAAAAAAAA/transaction")).0, 404);

    let (id, lockup, expected, timeout, server_key) =
        make_submarine(&url, &mut boltz, &invoice.to_string(), hash, 0x63);
    assert_eq!(expected, Amount::from_sat(51_250));
    assert_eq!(
        ask(&invoice.to_string(), json!({})),
        (409, json!({"error": "a swap with this invoice exists already"})),
        "one swap per invoice"
    );
    let status = format!("{url}/v2/swap/{id}");
    assert_eq!(get(&status), (200, json!({"status": "invoice.set"})));
    // The wallet follows it on the WebSocket too (a bad message first: answered, the
    // connection kept; an unknown id: answered once with its error).
    let socket = Socket::open(&net, &url);
    socket.send(json!({"op": "subscribe", "channel": "nothing", "args": []}));
    socket.send(json!({"op": "subscribe", "channel": "swap.update", "args": [id, "AAAAAAAAAAAA"]}));
    let first = socket.received(3);
    assert_eq!(first[0], json!({"error": "unknown channel"}));
    assert_eq!(
        first[1],
        json!({"event": "subscribe", "channel": "swap.update", "args": [id, "AAAAAAAAAAAA"]})
    );
    assert_eq!(
        first[2],
        json!({"event": "update", "channel": "swap.update", "args": [
            {"id": id, "status": "invoice.set"},
            {"id": "AAAAAAAAAAAA", "error": "could not find swap with id: AAAAAAAAAAAA"},
        ]})
    );
    let claim_url = format!("{url}/v2/swap/submarine/{id}/claim");
    assert_eq!(
        get(&claim_url),
        (400, json!({"error": "swap not eligible for a cooperative claim"}))
    );
    assert_eq!(
        get(&format!("{url}/v2/swap/submarine/{id}/preimage")),
        (400, json!({"error": "preimage not available"}))
    );

    let carol_before = carol.node().list_balances().total_lightning_balance_sats;
    let server_ln_before = net.server_ln.ldk().list_balances().total_lightning_balance_sats;
    let wallet_ln_before = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let server_wallet_before = net.rt.block_on(net.server.wallet_balance()).spendable;

    // The wallet locks exactly the expected amount; nothing is paid before it confirms.
    let txid = net.lab.chain.fund(&lockup, expected).expect("lockup");
    let seen = until_status(&net, &status, "transaction.mempool");
    documented(&url, "BoltzStatus", &seen);
    assert_eq!(seen["transaction"]["id"], json!(txid.to_string()));
    assert_eq!(
        carol.node().list_balances().total_lightning_balance_sats,
        carol_before,
        "no payment against an unconfirmed lockup"
    );
    let (s, t) = get(&format!("{url}/v2/swap/submarine/{id}/transaction"));
    documented(&url, "LockupTransaction", &t);
    assert_eq!(
        (s, &t["id"], &t["timeoutBlockHeight"]),
        (200, &json!(txid.to_string()), &json!(timeout))
    );
    let (outpoint, prevout) = lockup_outpoint(&net, txid, &lockup);
    assert_eq!(prevout.value, expected);
    net.mine(1).expect("mine");
    until_status(&net, &status, "transaction.claim.pending");

    // Paid: a cooperative refund is refused from now on.
    let refund_tx = one_input_spend(outpoint, expected - Amount::from_sat(200), &lockup);
    let (s, v) = post(
        &format!("{url}/v2/swap/submarine/{id}/refund"),
        &json!({"pubNonce": "02".repeat(66), "transaction": bitcoin::consensus::encode::serialize_hex(&refund_tx), "index": 0}),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("swap not eligible for a cooperative refund")),
        "{v}"
    );

    // The cooperative claim: details, a wrong partial signature, then the right one.
    let (s, details) = get(&claim_url);
    assert_eq!(s, 200, "{details}");
    documented(&url, "ClaimDetails", &details);
    let preimage = Preimage::from_hex(details["preimage"].as_str().expect("preimage")).expect("hex");
    assert_eq!(preimage.payment_hash(), hash, "the preimage of carol's invoice");
    assert_eq!(details["publicKey"], json!(server_key));
    assert_eq!(
        get(&format!("{url}/v2/swap/submarine/{id}/preimage")),
        (200, json!({"preimage": preimage.expose_hex()}))
    );
    let wrong = json!({"pubNonce": details["pubNonce"], "partialSignature": "11".repeat(32)});
    let (s, _) = post(&claim_url, &wrong);
    assert_eq!(s, 400, "a wrong partial signature");
    let (s, details) = get(&claim_url);
    assert_eq!(s, 200, "{details}");
    let side = submarine_side(hash, &server_key, 0x63, timeout);
    let started = boltz.ask(with_op(side, "start", json!({"msg": details["transactionHash"]})));
    let signed = boltz.ask(json!({"op": "sign", "theirNonce": details["pubNonce"], "theirPublicKey": server_key}));
    let (s, v) = post(
        &claim_url,
        &json!({"pubNonce": started["pubNonce"], "partialSignature": signed["partialSignature"]}),
    );
    assert_eq!((s, v), (200, json!({})));
    // Co-signed: the next pass (at once, in a running server) broadcasts the claim.
    net.rt.block_on(net.server.tick()).expect("tick");
    net.mine(1).expect("mine");
    until_status(&net, &status, "transaction.claimed");
    // Buried: the swap ends (the status stays).
    net.mine(eddy_core::sm::SWEEP_FINAL_CONFS).expect("mine");
    until_status(&net, &status, "transaction.claimed");
    let swap_id = SwapId::from(hash);
    let (_, rec) = net.rt.block_on(net.server.loop_in.swap(&swap_id)).expect("record");
    assert_eq!(rec.state, eddy_core::sm::loop_in_server::State::Succeeded);
    // The WebSocket pushed the changes it saw, in Boltz's order, ending with the claim.
    let start = std::time::Instant::now();
    while socket.statuses(&id).last().map(String::as_str) != Some("transaction.claimed") {
        assert!(start.elapsed() < eddy_lab::WAIT, "{:?}", socket.statuses(&id));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let order = [
        "invoice.set",
        "transaction.mempool",
        "transaction.confirmed",
        "invoice.pending",
        "transaction.claim.pending",
        "transaction.claimed",
    ];
    let pushed = socket.statuses(&id);
    let ranks: Vec<usize> = pushed
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap_or_else(|| panic!("{s}")))
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{pushed:?}");
    assert!(pushed.len() >= 3, "changes were pushed: {pushed:?}");

    // Money, to the satoshi.
    let claim_txid = *rec.claim.expect("a claim").all.last().expect("txid");
    let claim = net
        .rt
        .block_on(net.chain.transaction(&claim_txid))
        .expect("rpc")
        .expect("the claim confirmed");
    assert!(claim.block.is_some());
    assert_eq!(claim.tx.input[0].witness.len(), 1, "the key path");
    let claim_fee = expected - claim.tx.output[0].value;
    assert_eq!(
        net.rt.block_on(net.server.wallet_balance()).spendable,
        server_wallet_before + expected - claim_fee
    );
    assert_eq!(
        carol.node().list_balances().total_lightning_balance_sats,
        carol_before + 50_000
    );
    let payment = net
        .server_ln
        .ldk()
        .payment(&ldk_node::lightning::ln::channelmanager::PaymentId(hash.0))
        .expect("the server's payment");
    assert_eq!(payment.fee_paid_msat, Some(0), "carol is one channel away");
    assert_eq!(
        net.server_ln.ldk().list_balances().total_lightning_balance_sats,
        server_ln_before - 50_000
    );
    assert_eq!(
        net.client_ln.ldk().list_balances().total_lightning_balance_sats,
        wallet_ln_before,
        "the wallet's node pays nothing over Lightning"
    );
    drop(carol);
}

/// A BOLT11 invoice of `sat` for `hash` from a node nobody can reach (its key is `node`'s).
fn unreachable_invoice(hash: PaymentHash, sat: u64, node: u8) -> String {
    use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
    let secp = Secp256k1::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    InvoiceBuilder::new(Currency::Regtest)
        .description("nobody".into())
        .payment_hash(bitcoin::hashes::sha256::Hash::from_byte_array(hash.0))
        .payment_secret(PaymentSecret([9; 32]))
        .duration_since_epoch(now)
        .min_final_cltv_expiry_delta(18)
        .amount_milli_satoshis(sat * 1_000)
        .expiry_time(std::time::Duration::from_secs(7_200))
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key(node)))
        .expect("invoice builds")
        .to_string()
}

/// The wallet's cooperative refund of `outpoint` (holding `value`) to `dest`, 200 sat of fee,
/// co-signed through `POST /v2/swap/submarine/{id}/refund` with boltz-core, broadcast.
#[allow(clippy::too_many_arguments)]
fn refund_cooperatively(
    net: &eddy::demo::Swapnet,
    url: &str,
    boltz: &mut BoltzCore,
    id: &str,
    side: Value,
    server_key: &str,
    (outpoint, prevout): (bitcoin::OutPoint, bitcoin::TxOut),
    dest: &bitcoin::Address,
) -> bitcoin::Transaction {
    use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
    let mut refund = one_input_spend(outpoint, prevout.value - bitcoin::Amount::from_sat(200), dest);
    let msg = SighashCache::new(&refund)
        .taproot_key_spend_signature_hash(0, &Prevouts::All(&[prevout]), TapSighashType::Default)
        .expect("sighash")
        .to_byte_array();
    let started = boltz.ask(with_op(side, "start", json!({"msg": hexs(msg)})));
    let (s, cosigned) = post(
        &format!("{url}/v2/swap/submarine/{id}/refund"),
        &json!({"pubNonce": started["pubNonce"], "transaction": bitcoin::consensus::encode::serialize_hex(&refund), "index": 0}),
    );
    assert_eq!(s, 200, "{cosigned}");
    boltz.ask(json!({"op": "sign", "theirNonce": cosigned["pubNonce"], "theirPublicKey": server_key}));
    let done = boltz.ask(json!({"op": "finish", "theirPartial": cosigned["partialSignature"]}));
    assert_eq!(done["theirPartialValid"], json!(true), "the server's partial signature");
    let sig: [u8; 64] = bytes(&done["signature"]);
    refund.input[0].witness = bitcoin::Witness::from_slice(&[sig.to_vec()]);
    // Broadcast through the server, as Boltz wallets do.
    let _ = net;
    assert_eq!(
        post(
            &format!("{url}/v2/chain/BTC/transaction"),
            &json!({"hex": bitcoin::consensus::encode::serialize_hex(&refund)})
        ),
        (201, json!({"id": refund.compute_txid().to_string()})),
        "the co-signed refund is valid"
    );
    refund
}

/// **Failed submarine swaps are refunded cooperatively at once.** (1) An invoice of a node
/// nobody can reach: the wallet locks 51,250 sat (50,000 + 0.5 % + 1,000), the server's
/// payment attempts fail (`invoice.failedToPay`), and the wallet's key-path refund, co-signed by
/// the server through `/v2/swap/submarine/{id}/refund` and aggregated by boltz-core, confirms in
/// the next block — no waiting for the timeout: `transaction.refunded`, the wallet's output
/// exactly the lockup less its 200-sat fee. (2) A lockup one satoshi short and (3) one
/// satoshi over: `transaction.lockupFailed` with Boltz's failure reason and details, nothing
/// paid, refunded the same way. The server's node and swap wallet end where they began. The refunds are
/// broadcast through `POST /v2/chain/BTC/transaction` and read back through `GET
/// /v2/chain/BTC/transaction/{id}`; `GET /v2/nodes` names the server's node.
#[test]
fn failed_submarine_swaps_are_refunded_cooperatively_at_once() {
    use bitcoin::Amount;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = eddy::demo::swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let url = net.http.as_ref().expect("http").url();
    let mut boltz = BoltzCore::start();
    let server_ln_before = net.server_ln.ldk().list_balances().total_lightning_balance_sats;
    let server_wallet_before = net.rt.block_on(net.server.wallet_balance()).spendable;
    let dest = bitcoin::Address::p2tr(
        &Secp256k1::new(),
        pubkey(0x66).x_only_public_key().0,
        None,
        bitcoin::Network::Regtest,
    );

    // The chain helpers and the node, and what they refuse.
    let (s, nodes) = get(&format!("{url}/v2/nodes"));
    assert_eq!(s, 200, "{nodes}");
    documented(&url, "Nodes", &nodes);
    assert_eq!(
        nodes["BTC"]["LDK"]["publicKey"],
        json!(net.server_ln.ldk().node_id().to_string())
    );
    let chain_tx = format!("{url}/v2/chain/BTC/transaction");
    assert_eq!(post(&chain_tx, &json!({"hex": "00"})).0, 400, "not a transaction");
    assert_eq!(get(&format!("{chain_tx}/nothex")).0, 400);
    assert_eq!(
        get(&format!("{chain_tx}/{}", "ab".repeat(32))),
        (404, json!({"error": "transaction not found"}))
    );

    // Locked: exactly, one satoshi short, one satoshi over.
    for (n, off) in [(0x64u8, 0i64), (0x65u8, -1), (0x67u8, 1)] {
        let hash = Preimage::from_bytes([n; 32]).payment_hash();
        let invoice = unreachable_invoice(hash, 50_000, 0x70);
        let (id, lockup, expected, timeout, server_key) = make_submarine(&url, &mut boltz, &invoice, hash, n);
        assert_eq!(expected, Amount::from_sat(51_250));
        let status = format!("{url}/v2/swap/{id}");
        let locked = Amount::from_sat(expected.to_sat().checked_add_signed(off).expect("amount"));
        let txid = net.lab.chain.fund(&lockup, locked).expect("lockup");
        until_status(&net, &status, "transaction.mempool");
        let lockup_out = lockup_outpoint(&net, txid, &lockup);
        if off == 0 {
            // Not failed yet: whoever knows the id cannot cancel the swap by asking for a
            // refund (on this door the id is all a caller shows).
            let (s, v) = post(
                &format!("{url}/v2/swap/submarine/{id}/refund"),
                &json!({"pubNonce": "02".repeat(66), "transaction": bitcoin::consensus::encode::serialize_hex(
                    &one_input_spend(lockup_out.0, locked - Amount::from_sat(200), &dest)
                ), "index": 0}),
            );
            assert_eq!(
                (s, v),
                (
                    400,
                    json!({"error": "swap not eligible for a cooperative refund: status not eligible"})
                )
            );
        }
        net.mine(1).expect("mine");
        if off != 0 {
            // Boltz's words and details; an overpayment is refused like an underpayment (the
            // server cannot pay the excess on to anyone: docs/boltz-api.md).
            let v = until_status(&net, &status, "transaction.lockupFailed");
            documented(&url, "BoltzStatus", &v);
            let actual = locked.to_sat();
            let word = if off < 0 { "less" } else { "more" };
            assert_eq!(
                v,
                json!({
                    "status": "transaction.lockupFailed",
                    "failureReason": format!("locked {actual} is {word} than expected 51250"),
                    "failureDetails": {"expected": 51_250, "actual": actual},
                })
            );
        } else {
            until_status(&net, &status, "invoice.failedToPay");
        }
        let side = submarine_side(hash, &server_key, n, timeout);
        let refund = refund_cooperatively(&net, &url, &mut boltz, &id, side, &server_key, lockup_out, &dest);
        let tip = net.rt.block_on(net.chain.tip()).expect("tip").height;
        assert!(u64::from(tip) + 1 < timeout, "long before the timeout");
        net.mine(1).expect("mine");
        until_status(&net, &status, "transaction.refunded");
        let (s, v) = get(&format!("{url}/v2/chain/BTC/transaction/{}", refund.compute_txid()));
        assert_eq!(s, 200, "{v}");
        documented(&url, "ChainTransaction", &v);
        assert_eq!(v["confirmations"], json!(1));
        assert_eq!(v["hex"], json!(bitcoin::consensus::encode::serialize_hex(&refund)));
        // Finished and no longer watched, the lockup is still served (from the store): a wallet
        // refunding at the timeout reads it days after the lockup.
        let (s, t) = get(&format!("{url}/v2/swap/submarine/{id}/transaction"));
        assert_eq!((s, &t["id"]), (200, &json!(txid.to_string())), "{t}");
        let confirmed = net
            .rt
            .block_on(net.chain.transaction(&refund.compute_txid()))
            .expect("rpc")
            .expect("the refund is on chain");
        assert!(confirmed.block.is_some());
        assert_eq!(confirmed.tx.output[0].value, locked - Amount::from_sat(200));
        assert_eq!(confirmed.tx.output[0].script_pubkey, dest.script_pubkey());
    }
    assert_eq!(
        net.server_ln.ldk().list_balances().total_lightning_balance_sats,
        server_ln_before,
        "nothing paid"
    );
    assert_eq!(
        net.rt.block_on(net.server.wallet_balance()).spendable,
        server_wallet_before,
        "nothing claimed"
    );
}

/// A server of its own on the swapnet's node taking 4 swaps at a time (a Boltz share of one).
fn four_slots(net: &eddy::demo::Swapnet, name: &str) -> hostile::OwnServer {
    let cfg = eddy_server::ServerConfig {
        max_active_swaps: 4,
        ..eddy::demo::server_config()
    };
    hostile::own_server(
        net,
        name,
        cfg,
        eddy_server::http::Limits::new(100),
        None,
        None,
        &[400_000],
    )
}

/// **Submarine swaps hold at most their share of the slots.** Their payee may be anyone's node,
/// which can hold the payment for the whole route budget. On a server taking 4 swaps at a time,
/// submarine swaps (funded or live unfunded) hold at most one (`BOLTZ_SLOT_SHARE_PERCENT` of 4,
/// rounded up): a second one is refused with 503 while the first is live, nothing made.
#[test]
fn submarine_swaps_hold_at_most_their_share_of_the_slots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = eddy::demo::swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let own = four_slots(&net, "submarine-share");
    let url = own.http.url();
    let create = |n: u8| {
        let hash = Preimage::from_bytes([n; 32]).payment_hash();
        post(
            &format!("{url}/v2/swap/submarine"),
            &json!({"from": "BTC", "to": "BTC", "invoice": unreachable_invoice(hash, 50_000, 0x70), "refundPublicKey": hexs(pubkey(0x63).serialize())}),
        )
    };
    let (s, first) = create(0x81);
    assert_eq!(s, 201, "{first}");
    let (s, second) = create(0x82);
    assert_eq!(s, 503, "{second}");
    let second_id = SwapId::from(Preimage::from_bytes([0x82; 32]).payment_hash());
    assert!(
        net.rt.block_on(own.server.loop_in.swap(&second_id)).is_err(),
        "nothing was made"
    );
}

/// **The WebSocket keeps its limits.** A client keeps at most `MAX_SOCKETS_PER_CLIENT` (4)
/// connections (the fifth upgrade is refused with 429); a connection follows at most
/// `MAX_SUBSCRIPTIONS` (50) swaps; a message that is not a request, or an unknown operation,
/// is answered with an error and the connection stays usable; an unsubscription answers what
/// is still followed.
#[test]
fn the_websocket_keeps_its_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = eddy::demo::swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let url = net.http.as_ref().expect("http").url();
    let sockets: Vec<Socket> = (0..4).map(|_| Socket::open(&net, &url)).collect();
    let fifth = net.rt.block_on(tokio_tungstenite::connect_async(
        url.replacen("http://", "ws://", 1) + "/v2/ws",
    ));
    match fifth {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 429),
        other => panic!("a fifth connection: {other:?}"),
    }
    let s = &sockets[0];
    s.send(json!("not a request"));
    s.send(json!({"op": "dance", "channel": "swap.update", "args": []}));
    let many: Vec<String> = (0..51).map(|i| format!("{i:0>12}")).collect();
    s.send(json!({"op": "subscribe", "channel": "swap.update", "args": many}));
    s.send(json!({"op": "unsubscribe", "channel": "swap.update", "args": ["000000000000"]}));
    let got = s.received(4);
    assert_eq!(
        got,
        vec![
            json!({"error": "could not parse request"}),
            json!({"error": "unknown operation"}),
            json!({"error": "at most 50 swaps per connection"}),
            json!({"event": "unsubscribe", "channel": "swap.update", "args": []}),
        ]
    );
    // Closing one frees its place.
    drop(sockets);
    let start = std::time::Instant::now();
    loop {
        let again = net.rt.block_on(tokio_tungstenite::connect_async(
            url.replacen("http://", "ws://", 1) + "/v2/ws",
        ));
        if again.is_ok() {
            break;
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "{again:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// **A submarine swap's payment waits for the share, however its offer was made.** Offers stop
/// counting against the share once they are no longer live (6 blocks), so a client could make
/// one every 6 blocks and fund them all later. On a server taking 4 swaps (share: one), two
/// offers made 6 blocks apart are both funded; carol (a third node) holds the first payment
/// (a hold invoice): the other swap's payment waits, its status `transaction.confirmed`,
/// nothing sent, until carol settles the first; then it is paid too. Money: carol receives
/// exactly both invoices.
#[test]
fn a_submarine_payment_waits_for_the_share_however_its_offer_was_made() {
    use ldk_node::lightning_types::payment::{PaymentHash as LdkHash, PaymentPreimage};
    use std::str::FromStr;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = eddy::demo::swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let carol = carol(&net, dir.path());
    let own = four_slots(&net, "submarine-waits");
    let url = own.http.url();
    let desc = ldk_node::lightning_invoice::Bolt11InvoiceDescription::Direct(
        ldk_node::lightning_invoice::Description::new("held".into()).expect("description"),
    );
    let preimages = [Preimage::from_bytes([0x91; 32]), Preimage::from_bytes([0x92; 32])];
    let invoices: Vec<String> = preimages
        .iter()
        .map(|p| {
            carol
                .node()
                .bolt11_payment()
                .receive_for_hash(20_000_000, &desc, 7_200, LdkHash(p.payment_hash().0))
                .expect("hold invoice")
                .to_string()
        })
        .collect();
    let create = |i: usize| {
        post(
            &format!("{url}/v2/swap/submarine"),
            &json!({"from": "BTC", "to": "BTC", "invoice": invoices[i], "refundPublicKey": hexs(pubkey(0x63).serialize())}),
        )
    };
    let (s, first) = create(0);
    assert_eq!(s, 201, "{first}");
    assert_eq!(create(1).0, 503, "the first offer is live");
    net.mine(eddy_core::constants::LOOP_IN_UNFUNDED_OFFER_BLOCKS)
        .expect("mine");
    let (s, second) = create(1);
    assert_eq!(s, 201, "{second}");
    let made = [first, second];
    for m in &made {
        let address = bitcoin::Address::from_str(m["address"].as_str().expect("address"))
            .expect("address")
            .assume_checked();
        let amount = bitcoin::Amount::from_sat(m["expectedAmount"].as_u64().expect("amount"));
        net.lab.chain.fund(&address, amount).expect("lockup");
    }
    net.mine(1).expect("mine");
    let status = |i: usize| get(&format!("{url}/v2/swap/{}", made[i]["id"].as_str().expect("id"))).1["status"].clone();
    let tick = || net.rt.block_on(own.server.tick()).expect("tick");
    // One is paid (carol holds it); the other waits, whatever the order.
    let start = std::time::Instant::now();
    let paid = loop {
        tick();
        let s = [status(0), status(1)];
        if let Some(i) = s.iter().position(|s| *s == json!("invoice.pending")) {
            break i;
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "{s:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let other = 1 - paid;
    for _ in 0..10 {
        tick();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(status(other), json!("transaction.confirmed"), "waits for the share");
    let other_hash = preimages[other].payment_hash();
    assert_eq!(
        net.rt
            .block_on(eddy_backends::LightningNode::payment_status(
                &*net.server_ln,
                &other_hash
            ))
            .expect("status"),
        eddy_backends::PaymentStatus::Unknown,
        "nothing sent for it"
    );
    // Carol settles the first: the other is paid in turn.
    // Carol claims a held payment once her node has it (a claim before that is a no-op).
    let claim = |i: usize| {
        let hash = LdkHash(preimages[i].payment_hash().0);
        carol
            .wait_event("the held payment", eddy_lab::WAIT, |e| match e {
                ldk_node::Event::PaymentClaimable { payment_hash, .. } if *payment_hash == hash => Some(()),
                _ => None,
            })
            .expect("carol holds it");
        carol
            .node()
            .bolt11_payment()
            .claim_for_hash(hash, 20_000_000, PaymentPreimage(*preimages[i].expose_bytes()))
            .expect("claimed");
    };
    let carol_before = carol.node().list_balances().total_lightning_balance_sats;
    claim(paid);
    let start = std::time::Instant::now();
    while status(other) != json!("invoice.pending") && status(other) != json!("transaction.claim.pending") {
        tick();
        assert!(
            start.elapsed() < eddy_lab::WAIT,
            "{:?} (the paid one: {:?})",
            status(other),
            status(paid)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    claim(other);
    let start = std::time::Instant::now();
    while carol.node().list_balances().total_lightning_balance_sats != carol_before + 40_000 {
        tick();
        assert!(
            start.elapsed() < eddy_lab::WAIT,
            "carol: {}",
            carol.node().list_balances().total_lightning_balance_sats
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
