//! Seed 000's exchange against Eddy's server, unchanged: a client written the way the seed's
//! walkthrough writes it — P2WPKH claim address, `POST /api/loop/out` with `htlcClaimAddress`,
//! `hash`, `loopOutSats`, its own copy of the BIP199 script with a 40-block CSV, pay the
//! invoice, find the HTLC output, claim with `[sig, pubkey, preimage, script]` — on the devnet
//! with real LDK nodes. The server publishes exactly `loopOutSats`, learns the preimage from the
//! claim and settles; every satoshi is accounted for. Then malformed and hostile requests, and
//! the seed HTLC's relative refund timing (refunded only once its CSV allows, not at `E`).

use bitcoin::blockdata::opcodes::all::*;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::script::Builder;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    absolute, transaction, Address, Amount, CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Witness,
};
use eddy::demo::swapnet;
use eddy_backends::LightningNode;
use eddy_core::sm::loop_out_server::State as ServerState;
use eddy_core::types::SwapId;
use serde_json::{json, Value};

fn post(url: &str, body: &str) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    })
}

/// The seed client's HTLC script, built from its own parameters.
fn seed_script(hash: &[u8; 32], claim_pkh: &[u8; 20], refund_pkh: &[u8; 20]) -> ScriptBuf {
    Builder::new()
        .push_opcode(OP_SHA256)
        .push_slice(hash)
        .push_opcode(OP_EQUAL)
        .push_opcode(OP_IF)
        .push_opcode(OP_DUP)
        .push_opcode(OP_HASH160)
        .push_slice(claim_pkh)
        .push_opcode(OP_ELSE)
        .push_int(40)
        .push_opcode(OP_CSV)
        .push_opcode(OP_DROP)
        .push_opcode(OP_DUP)
        .push_opcode(OP_HASH160)
        .push_slice(refund_pkh)
        .push_opcode(OP_ENDIF)
        .push_opcode(OP_EQUALVERIFY)
        .push_opcode(OP_CHECKSIG)
        .into_script()
}

fn pkh_of(address: &Address) -> [u8; 20] {
    let p = address.witness_program().expect("segwit");
    assert!(p.is_p2wpkh(), "P2WPKH");
    p.program().as_bytes().try_into().expect("20 bytes")
}

#[test]
fn seed_000_client_loops_out_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let url = net.http.as_ref().expect("http").url();
    let secp = Secp256k1::new();
    // The seed client's key, address, preimage and hash.
    let claim_sk = SecretKey::from_slice(&[0x33; 32]).expect("key");
    let claim_pk = CompressedPublicKey(claim_sk.public_key(&secp));
    let claim_address = Address::p2wpkh(&claim_pk, Network::Regtest);
    let preimage = [0x77u8; 32];
    let hash = sha256::Hash::hash(&preimage).to_byte_array();
    let amount = 50_000u64;
    let request = json!({
        "htlcClaimAddress": claim_address.to_string(),
        "hash": hex::encode(hash),
        "loopOutSats": amount,
    });
    let wallet_before = net.rt.block_on(net.server.wallet_balance()).spendable;
    let client_ln_before = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let server_ln_before = net.server_ln.ldk().list_balances().total_lightning_balance_sats;
    let (status, resp) = post(&format!("{url}/api/loop/out"), &request.to_string());
    assert_eq!(status, 200, "{resp}");
    let refund_address: Address = resp["htlcRefundAddress"]
        .as_str()
        .expect("refund address")
        .parse::<Address<_>>()
        .expect("address")
        .require_network(Network::Regtest)
        .expect("regtest");
    let invoice: lightning_invoice::Bolt11Invoice = resp["paymentRequest"]
        .as_str()
        .expect("invoice")
        .parse()
        .expect("bolt11");
    // 50,000 + 1,000 + 0.5 % = 51,250: the whole fee in the one invoice (no prepay).
    assert_eq!(invoice.amount_milli_satoshis(), Some(51_250_000));
    assert_eq!(invoice.payment_hash().to_byte_array(), hash);
    let script = seed_script(&hash, &pkh_of(&claim_address), &pkh_of(&refund_address));
    let spk = ScriptBuf::new_p2wsh(&script.wscript_hash());

    // A replay is refused.
    let (status, v) = post(&format!("{url}/api/loop/out"), &request.to_string());
    assert_eq!(status, 409, "{v}");

    // Pay; the server holds the payment and publishes the HTLC.
    net.client_ln.ldk().bolt11_payment().send(&invoice, None).expect("pay");
    let id = SwapId(hash);
    let start = std::time::Instant::now();
    let funding = loop {
        net.rt.block_on(net.server.tick()).expect("tick");
        let (_, rec) = net.rt.block_on(net.server.loop_out.swap(&id)).expect("swap");
        if let Some(f) = rec.funding {
            break f;
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "never published: {:?}", rec.state);
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // The seed client finds its HTLC by its own script.
    let htlc_tx = net
        .rt
        .block_on(net.chain.transaction(&funding.txid))
        .expect("rpc")
        .expect("published")
        .tx;
    let vout = htlc_tx
        .output
        .iter()
        .position(|o| o.script_pubkey == spk)
        .expect("an output pays the seed client's own script");
    assert_eq!(
        htlc_tx.output[vout].value,
        Amount::from_sat(amount),
        "exactly loopOutSats"
    );
    net.mine(1).expect("mine");

    // Claim the seed way: witness [sig, pubkey, preimage, script], 141 vB at 1 sat/vB as in its log.
    let fee = 141u64;
    let mut claim = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: funding.txid,
                vout: vout as u32,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(amount - fee),
            script_pubkey: claim_address.script_pubkey(),
        }],
    };
    let sighash = SighashCache::new(&claim)
        .p2wsh_signature_hash(0, &script, Amount::from_sat(amount), EcdsaSighashType::All)
        .expect("sighash");
    let sig = secp.sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), &claim_sk);
    let sig = bitcoin::ecdsa::Signature::sighash_all(sig);
    claim.input[0].witness = Witness::from_slice(&[
        sig.to_vec(),
        claim_pk.to_bytes().to_vec(),
        preimage.to_vec(),
        script.to_bytes(),
    ]);
    assert_eq!(claim.vsize(), 141);
    net.rt.block_on(net.chain.broadcast(&claim)).expect("claim accepted");

    // The server learns the preimage from the claim and settles.
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("tick");
        let (_, rec) = net.rt.block_on(net.server.loop_out.swap(&id)).expect("swap");
        if rec.state == ServerState::Succeeded {
            break;
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "not settled: {:?}", rec.state);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    net.mine(1).expect("mine");
    net.rt.block_on(net.server.tick()).expect("tick");
    let publish_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &htlc_tx))
        .expect("fee");
    assert_eq!(
        net.rt.block_on(net.server.wallet_balance()).spendable,
        wallet_before - Amount::from_sat(amount) - publish_fee
    );
    eddy_lab::wait_until("channel balances", eddy_lab::WAIT, || {
        net.client_ln.ldk().list_balances().total_lightning_balance_sats == client_ln_before - 51_250
            && net.server_ln.ldk().list_balances().total_lightning_balance_sats == server_ln_before + 51_250
    })
    .expect("the client paid exactly the invoice, the server received it");
    let claimed = net
        .rt
        .block_on(net.chain.transaction(&claim.compute_txid()))
        .expect("rpc")
        .expect("claim known");
    assert!(claimed.block.is_some(), "claim confirmed");
    assert_eq!(
        net.rt
            .block_on(net.client_ln.payment_status(&eddy_core::types::PaymentHash(hash)))
            .expect("status"),
        eddy_backends::PaymentStatus::Succeeded {
            preimage: eddy_core::types::Preimage::from_bytes(preimage),
            fee_msat: 0
        }
    );

    // Hostile requests: clear 4xx, nothing created.
    let cases = [
        (
            json!({"htlcClaimAddress": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "hash": hex::encode([1u8; 32]), "loopOutSats": 50_000}),
            400,
            "regtest",
        ),
        (
            json!({"htlcClaimAddress": net.rt.block_on(net.server.wallet_balance()).spendable.to_sat().to_string(), "hash": hex::encode([2u8; 32]), "loopOutSats": 50_000}),
            400,
            "not an address",
        ),
        (
            json!({"htlcClaimAddress": net.server.wallet_address().to_string(), "hash": hex::encode([3u8; 32]), "loopOutSats": 50_000}),
            400,
            "P2WPKH",
        ),
        (
            json!({"htlcClaimAddress": claim_address.to_string(), "hash": "abcd", "loopOutSats": 50_000}),
            400,
            "32 bytes",
        ),
        (
            json!({"htlcClaimAddress": claim_address.to_string(), "hash": hex::encode([4u8; 32]), "loopOutSats": 9_999}),
            400,
            "amount",
        ),
        (
            json!({"htlcClaimAddress": claim_address.to_string(), "hash": hex::encode([5u8; 32]), "loopOutSats": -5}),
            400,
            "malformed",
        ),
        (
            json!({"htlcClaimAddress": claim_address.to_string(), "hash": hex::encode([6u8; 32])}),
            400,
            "loopOutSats",
        ),
    ];
    for (body, want, text) in cases {
        let (status, v) = post(&format!("{url}/api/loop/out"), &body.to_string());
        assert_eq!(status, want, "{body} → {v}");
        let msg = v["error"].as_str().unwrap_or("");
        assert!(msg.contains(text), "{body}: {msg:?} should mention {text:?}");
    }
    let (status, _) = post(&format!("{url}/api/loop/out"), "{not json");
    assert_eq!(status, 400);
    for n in 1..=6u8 {
        assert!(
            net.rt.block_on(net.server.loop_out.swap(&SwapId([n; 32]))).is_err(),
            "nothing stored"
        );
    }
    // No prepay in this protocol: two well-formed requests a minute per client (the swap above
    // and its replay), then 429 before anything is created.
    let valid =
        json!({"htlcClaimAddress": claim_address.to_string(), "hash": hex::encode([7u8; 32]), "loopOutSats": 50_000});
    let (status, v) = post(&format!("{url}/api/loop/out"), &valid.to_string());
    assert_eq!(status, 429, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("no prepay"), "{v}");
    assert!(
        net.rt.block_on(net.server.loop_out.swap(&SwapId([7; 32]))).is_err(),
        "nothing stored"
    );
    net.stop().expect("stop");
}

/// Mines one block with no transaction in it (the mempool stays as it is): the seed HTLC
/// stays unconfirmed however many blocks pass. Both nodes see each block.
fn mine_empty(net: &eddy::demo::Swapnet) {
    net.lab.chain.mine_with(&[]).expect("empty block");
    let tip = net.lab.chain.tip().expect("tip");
    for node in [&net.server_ln, &net.client_ln] {
        eddy_lab::wait_synced(node.ldk(), tip, eddy_lab::WAIT).expect("synced");
    }
}

/// Review #1 on the devnet: a seed HTLC's refund is relative (`OP_CSV` 40), so it is valid only
/// `SEED_CSV_DELAY` blocks after the HTLC confirmed. A seed HTLC published in time but
/// confirmed late (miners leave it out until `E − 29`) is not refunded at `E`: the server stays
/// `Published` (and would settle on a preimage) until confirmation + `SEED_CSV_DELAY`, then
/// refunds — the refund confirms, the swap invoice is canceled. Exact money: the server's
/// wallet lost only the publication's and the refund's fees, no Lightning balance moved.
#[test]
fn seed_htlc_is_refunded_only_once_its_csv_allows() {
    use eddy_core::constants::{REORG_SAFETY_DEPTH, SEED_CSV_DELAY};
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let url = net.http.as_ref().expect("http").url();
    let secp = Secp256k1::new();
    let claim_sk = SecretKey::from_slice(&[0x35; 32]).expect("key");
    let claim_address = Address::p2wpkh(&CompressedPublicKey(claim_sk.public_key(&secp)), Network::Regtest);
    let hash = sha256::Hash::hash(&[0x78u8; 32]).to_byte_array();
    let amount = 50_000u64;
    let request = json!({
        "htlcClaimAddress": claim_address.to_string(),
        "hash": hex::encode(hash),
        "loopOutSats": amount,
    });
    let wallet_before = net.rt.block_on(net.server.wallet_balance()).spendable;
    let client_ln_before = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let server_ln_before = net.server_ln.ldk().list_balances().total_lightning_balance_sats;
    let (status, resp) = post(&format!("{url}/api/loop/out"), &request.to_string());
    assert_eq!(status, 200, "{resp}");
    let invoice: lightning_invoice::Bolt11Invoice = resp["paymentRequest"]
        .as_str()
        .expect("invoice")
        .parse()
        .expect("bolt11");
    net.client_ln.ldk().bolt11_payment().send(&invoice, None).expect("pay");
    let id = SwapId(hash);
    let tick = || net.rt.block_on(net.server.tick()).expect("tick");
    let rec = || net.rt.block_on(net.server.loop_out.swap(&id)).expect("swap").1;
    let start = std::time::Instant::now();
    while rec().funding.is_none() {
        tick();
        assert!(start.elapsed() < eddy_lab::WAIT, "never published: {:?}", rec().state);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let expiry = rec().terms.expiry;
    assert!(
        rec().published_height.expect("published") < rec().terms.publication_deadline(),
        "published in its window"
    );
    // Miners leave the HTLC out until E − 30; it confirms in the next block.
    while net.lab.chain.tip().expect("tip").0 < expiry - 30 {
        mine_empty(&net);
        tick();
    }
    net.mine(1).expect("mine");
    tick();
    let funding = rec().funding.expect("funding");
    let confirmed_at = net
        .rt
        .block_on(net.chain.transaction(&funding.txid))
        .expect("rpc")
        .expect("known")
        .block
        .expect("confirmed")
        .height;
    assert_eq!(confirmed_at, expiry - 29);
    let refund_at = confirmed_at + SEED_CSV_DELAY;
    assert!(refund_at > expiry, "the refund is valid only after E");
    // Through E and up to the block before the CSV allows: still published, no refund.
    while net.lab.chain.tip().expect("tip").0 < refund_at - 1 {
        net.mine(1).expect("mine");
        tick();
        let r = rec();
        assert!(
            matches!(r.state, ServerState::Published { .. }),
            "at {}: {:?}",
            net.lab.chain.tip().expect("tip").0,
            r.state
        );
        assert!(r.refund.is_none(), "no refund before its CSV allows");
    }
    // From confirmation + SEED_CSV_DELAY: refunded, the swap invoice canceled.
    net.mine(1).expect("mine");
    tick();
    assert!(
        matches!(rec().state, ServerState::Refunding { .. }),
        "{:?}",
        rec().state
    );
    let start = std::time::Instant::now();
    while rec().state != ServerState::Refunded {
        net.mine(1).expect("mine");
        tick();
        assert!(start.elapsed() < eddy_lab::WAIT, "not refunded: {:?}", rec().state);
    }
    // The refund that confirmed (a later bump may have lost to it).
    let refund = rec()
        .refund
        .expect("refund")
        .all
        .iter()
        .filter_map(|t| net.rt.block_on(net.chain.transaction(t)).expect("rpc"))
        .find(|t| t.block.is_some())
        .expect("a refund of ours confirmed");
    let refund_height = refund.block.expect("refund confirmed").height;
    assert!(refund_height > refund_at - 1 && refund_height >= confirmed_at + SEED_CSV_DELAY);
    assert!(net.lab.chain.tip().expect("tip").0 >= refund_height + REORG_SAFETY_DEPTH - 1);
    assert_eq!(refund.tx.input[0].previous_output, funding);
    let htlc_tx = net
        .rt
        .block_on(net.chain.transaction(&funding.txid))
        .expect("rpc")
        .expect("known")
        .tx;
    let publish_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &htlc_tx))
        .expect("fee");
    let refund_fee = Amount::from_sat(amount) - refund.tx.output.iter().map(|o| o.value).sum::<Amount>();
    eddy_lab::wait_until("wallet", eddy_lab::WAIT, || {
        tick();
        net.rt.block_on(net.server.wallet_balance()).spendable == wallet_before - publish_fee - refund_fee
    })
    .expect("the server lost only the publication's and the refund's fees");
    eddy_lab::wait_until("channel balances", eddy_lab::WAIT, || {
        net.client_ln.ldk().list_balances().total_lightning_balance_sats == client_ln_before
            && net.server_ln.ldk().list_balances().total_lightning_balance_sats == server_ln_before
    })
    .expect("the client's payment returned");
    net.stop().expect("stop");
}
