//! The attack matrix against the swap server (issue 12): a hostile client written for the tests
//! (`attacks_server/mod.rs`) speaks the real HTTP API to the real server engine on the devnet,
//! with real LDK nodes on both sides. Each test names the attack in its doc comment and asserts
//! the money of both sides to the satoshi: server channel and swap wallet, attacker channel and
//! on-chain coins.
//!
//! One attack needs LND (a restart past the loop-in payment deadline: LND reads a CLTV limit
//! of 0 as "no limit"); LND itself cannot run here, so that test puts the LND gRPC emulator
//! (`eddy_lnd_emu`, LND's own protos, served from the server's LDK node) between the
//! server engine and its node.

#[path = "attacks_server/hostile.rs"]
mod hostile;

use std::str::FromStr;
use std::sync::Arc;

use bitcoin::Amount;
use eddy::demo::{swapnet, Swapnet};
use eddy_backends::lightning::HoldInvoiceRequest;
use eddy_backends::{HoldInvoiceState, LightningNode, PaymentStatus};
use eddy_core::sm::loop_in_server::{RefundReason, State as InState};
use eddy_core::sm::loop_out_server::{CancelReason, State as OutState};
use eddy_core::tx::{build_spend, FeeSpec, HtlcInput, SpendPath};
use eddy_core::types::{PaymentHash, Preimage, SwapId};
use hostile::*;
use serde_json::{json, Value};

fn net(dir: &std::path::Path) -> Swapnet {
    swapnet(dir, None, &|_| {}).expect("swapnet")
}

fn url(net: &Swapnet) -> String {
    net.http.as_ref().expect("http").url()
}

fn payment(net: &Swapnet, hash: &PaymentHash) -> PaymentStatus {
    net.rt.block_on(net.server_ln.payment_status(hash)).expect("status")
}

/// A hold invoice on the attacker's node for any hash (it need not know the preimage).
fn hold_invoice(net: &Swapnet, hash: PaymentHash, amount_msat: u64) -> String {
    net.rt
        .block_on(net.client_ln.create_hold_invoice(&HoldInvoiceRequest {
            payment_hash: hash,
            amount_msat,
            expiry_secs: 7_200,
            min_final_cltv_delta: 42,
            description: "attacker".into(),
        }))
        .expect("hold invoice")
        .bolt11
}

fn invoice(net: &Swapnet, p: &Preimage, amount_msat: u64) -> String {
    net.rt
        .block_on(net.client_ln.create_invoice(p, amount_msat, 7_200, "attacker"))
        .expect("invoice")
        .bolt11
}

/// **F1: theft through colliding watch ids.** The attacker opens loop-in L1 with a hold
/// invoice for H1 and loop-in L2 with an ordinary invoice for H2, where H1 shares its first 8
/// bytes with H2 (the old watch key), funds only L1 and waits: the server must pay nothing for
/// L2 (its watch sees only outputs paying L2's own script), L1 proceeds on its own funding; the
/// attacker then fails L1's payment and takes its cooperative refund. Server: channel and
/// wallet unchanged; attacker: its funding back less the refund fee, nothing over Lightning.
#[test]
fn attack_f1_hash_prefix_collision_pays_only_the_funded_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let amount = Amount::from_sat(90_000);
    let invoice_msat = net.server.loop_in.quote(amount).expect("quote").invoice_amount.to_sat() * 1000;
    let p2 = Preimage::from_bytes([0x21; 32]);
    let h2 = p2.payment_hash();
    let mut b1 = h2.0;
    b1[8..].fill(0xa5);
    let h1 = PaymentHash(b1);
    assert_eq!(h1.0[..8], h2.0[..8]);
    let (k1, pk1) = key(0x31);
    let (_, pk2) = key(0x32);
    let (s, offer1) = h.loop_in(&net, amount.to_sat(), &hold_invoice(&net, h1, invoice_msat), &pk1);
    assert_eq!(s, 201, "{offer1}");
    let (s, offer2) = h.loop_in(&net, amount.to_sat(), &invoice(&net, &p2, invoice_msat), &pk2);
    assert_eq!(s, 201, "{offer2}");
    let (id1, id2) = (SwapId::from(h1), SwapId::from(h2));
    let htlc1 = in_htlc(&offer1, h1, &pk1);
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let chain0 = onchain(&net.client_ln);
    let op1 = fund(&net, &htlc1, amount);
    net.mine(1).expect("mine");
    // The server pays L1's invoice; the attacker holds the payment.
    drive(
        &net,
        &net.server,
        || false,
        || {
            matches!(
                net.rt.block_on(net.client_ln.hold_invoice_state(&h1)),
                Ok(HoldInvoiceState::Accepted { .. })
            )
        },
    );
    for _ in 0..5 {
        net.rt.block_on(net.server.tick()).expect("tick");
    }
    assert!(matches!(in_state(&net, &net.server, &id1), InState::Paying { .. }));
    assert_eq!(in_state(&net, &net.server, &id2), InState::Created, "L2 unfunded");
    assert_eq!(payment(&net, &h2), PaymentStatus::Unknown, "nothing paid for L2");
    // The attacker fails L1's payment (every retry) and asks for its refund.
    drive(
        &net,
        &net.server,
        || {
            let _ = net.rt.block_on(net.client_ln.cancel_hold_invoice(&h1));
            false
        },
        || matches!(in_state(&net, &net.server, &id1), InState::Refundable(_)),
    );
    let (refund, fee) = cooperative_refund(&net, &h, &k1, &id1, &htlc1, op1, amount).expect("co-signed");
    net.mine(1).expect("mine");
    drive(
        &net,
        &net.server,
        || false,
        || in_state(&net, &net.server, &id1) == InState::Refunded,
    );
    assert_eq!(refund.input[0].previous_output, op1);
    assert_eq!(in_state(&net, &net.server, &id2), InState::Created);
    assert_eq!(payment(&net, &h2), PaymentStatus::Unknown, "nothing paid for L2, ever");
    wait_channels(&net, server_ln0, client_ln0);
    assert_eq!(wallet(&net, &net.server), wallet0, "server wallet untouched");
    eddy_lab::wait_until("attacker refunded", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 + (amount - fee).to_sat()
    })
    .expect("the attacker got exactly its one funding back less the refund fee");
    net.stop().expect("stop");
}

/// **F2: a loop-in server paying too late after a restart (LND).** The server stores `Paying`,
/// cannot send (its LND is down), crashes, and restarts after the last payment height: it must
/// never send (no CLTV limit of 0 reaches LND, no payment at or after the deadline); the swap
/// becomes refundable and the client refunds cooperatively. Server channel unchanged, client
/// gets its funding back less the refund fee. LND cannot run here: the LND emulator stands in.
#[test]
fn attack_f2_restart_past_the_payment_deadline_never_pays() {
    use eddy_backends::lnd::{LndConfig, LndNode};
    use eddy_lnd_emu::LndEmulator;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let connect = |n: u32| {
        let emulator = net
            .rt
            .block_on(LndEmulator::start(
                net.server_ln.clone(),
                net.chain.clone(),
                &dir.path().join(format!("lnd-{n}")),
            ))
            .expect("emulator");
        let lnd: Arc<dyn LightningNode> = Arc::new(
            net.rt
                .block_on(LndNode::connect(&LndConfig::new(
                    emulator.address(),
                    emulator.cert_path().to_path_buf(),
                    emulator.macaroon_path().to_path_buf(),
                )))
                .expect("lnd client"),
        );
        (emulator, lnd)
    };
    let server_dir = dir.path().join("lnd-server");
    std::fs::create_dir_all(&server_dir).expect("dir");
    let store: Arc<dyn eddy_store::SwapStore> = Arc::new(
        net.rt
            .block_on(eddy_store::SqliteStore::open(&server_dir.join("server.sqlite")))
            .expect("store"),
    );
    let start = |lnd: Arc<dyn LightningNode>| {
        let server = Arc::new(
            net.rt
                .block_on(eddy_server::SwapServer::new(
                    eddy::demo::server_config(),
                    lnd,
                    net.chain.clone(),
                    store.clone(),
                    eddy_store::SeedKeys::load_or_create(&server_dir, eddy_server::SEED_FILE).expect("seed"),
                ))
                .expect("server"),
        );
        let http = net
            .rt
            .block_on(eddy_server::http::HttpServer::start(
                eddy_server::http::router(server.clone(), eddy::demo::terms(), 20),
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ))
            .expect("http");
        (server, http)
    };
    let (emulator, lnd) = connect(1);
    let (server, http) = start(lnd);
    let h = Hostile::new(&http.url());
    let amount = Amount::from_sat(60_000);
    let quote = server.loop_in.quote(amount).expect("quote");
    let p = Preimage::from_bytes([0x22; 32]);
    let (k, pk) = key(0x33);
    let (s, offer) = h.loop_in(
        &net,
        amount.to_sat(),
        &invoice(&net, &p, quote.invoice_amount.to_sat() * 1000),
        &pk,
    );
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = in_htlc(&offer, p.payment_hash(), &pk);
    let expiry = offer["expiry"].as_u64().expect("expiry") as u32;
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let chain0 = onchain(&net.client_ln);
    let op = fund(&net, &htlc, amount);
    net.mine(1).expect("mine");
    // LND goes away: the server persists `Paying` and cannot send.
    drop(emulator);
    let _ = net.rt.block_on(server.tick());
    assert!(matches!(in_state(&net, &server, &id), InState::Paying { .. }));
    // The server crashes and stays down until past the last payment height.
    drop(http);
    drop(server);
    let last = eddy_core::constants::loop_in_last_payment_height(expiry);
    let tip = net.lab.chain.tip().expect("tip").0;
    net.mine(last + 1 - tip).expect("mine");
    let (_emulator, lnd) = connect(2);
    let (server, http) = start(lnd);
    let h = Hostile::new(&http.url());
    for _ in 0..3 {
        net.rt.block_on(server.tick()).expect("tick");
    }
    assert_eq!(in_state(&net, &server, &id), InState::Refundable(RefundReason::TooLate));
    assert_eq!(payment(&net, &p.payment_hash()), PaymentStatus::Unknown, "never sent");
    let (_, fee) = cooperative_refund(&net, &h, &k, &id, &htlc, op, amount).expect("co-signed");
    net.mine(1).expect("mine");
    drive(
        &net,
        &server,
        || false,
        || in_state(&net, &server, &id) == InState::Refunded,
    );
    wait_channels(&net, server_ln0, client_ln0);
    eddy_lab::wait_until("refund", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 + (amount - fee).to_sat()
    })
    .expect("the client got its funding back less the refund fee");
    net.stop().expect("stop");
}

/// **F3: give-up heights abandoning the server's coins.** The attacker pays a loop-out and never
/// claims; the server is down across `E` and past the old give-up height (`E + 27`). Restarted,
/// it refunds its HTLC at once and cancels the swap invoice once the refund is buried. Server:
/// wallet less the publication and refund fees, channel plus the prepay; attacker: channel
/// less the prepay.
#[test]
fn attack_f3_server_down_across_expiry_still_refunds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let p = Preimage::from_bytes([0x23; 32]);
    let (_, pk) = key(0x34);
    let amount = 100_000;
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let (s, offer) = h.loop_out(&net, amount, p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let expiry = offer["expiry"].as_u64().expect("expiry") as u32;
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &net.server,
        || false,
        || matches!(out_state(&net, &net.server, &id), OutState::Published { .. }),
    );
    let funding = net
        .rt
        .block_on(net.server.loop_out.swap(&id))
        .expect("swap")
        .1
        .funding
        .expect("funding");
    let publish_fee = fee_of(&net, &funding.txid);
    // The server goes down; the chain moves past E and past the old give-up height.
    drop(net.http.take());
    let tip = net.lab.chain.tip().expect("tip").0;
    let target = expiry + eddy_core::constants::SERVER_SETTLE_MARGIN + 12 + 1;
    while net.lab.chain.tip().expect("tip").0 < target {
        net.mine(4.min(target - net.lab.chain.tip().expect("tip").0).max(1))
            .expect("mine");
    }
    assert!(net.lab.chain.tip().expect("tip").0 > tip + 80);
    net.restart_engines().expect("restart");
    net.rt.block_on(net.server.tick()).expect("tick");
    assert!(matches!(out_state(&net, &net.server, &id), OutState::Refunding { .. }));
    drive(
        &net,
        &net.server,
        || true,
        || out_state(&net, &net.server, &id) == OutState::Refunded,
    );
    let rec = net.rt.block_on(net.server.loop_out.swap(&id)).expect("swap").1;
    // The confirmed one of the (bumped) refunds.
    let refund_tx = rec
        .refund
        .expect("refund")
        .all
        .iter()
        .filter_map(|t| net.rt.block_on(net.chain.transaction(t)).expect("rpc"))
        .find(|t| t.block.is_some())
        .expect("a refund confirmed")
        .tx;
    let refund_fee = Amount::from_sat(amount) - refund_tx.output[0].value;
    assert_eq!(refund_tx.input[0].previous_output, funding);
    assert_eq!(
        wallet(&net, &net.server),
        wallet0 - publish_fee - refund_fee,
        "the HTLC came back less the two fees"
    );
    let prepay = 1_000;
    wait_channels(&net, server_ln0 + prepay, client_ln0 - prepay);
    net.stop().expect("stop");
}

/// **Batched refunds (issue 17).** The attacker pays two loop-outs and claims neither: at `E`
/// the server refunds both HTLCs in **one** transaction into its swap wallet (two script-path
/// inputs, one output), each swap's record holding its share of the one fee. Server: wallet less
/// the publication fees and the one refund fee, channel plus both prepays; attacker: channel
/// less both prepays.
#[test]
fn two_unclaimed_loop_outs_are_refunded_in_one_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let mut swaps = vec![];
    for (n, amount) in [(0x51u8, 60_000u64), (0x52, 70_000)] {
        let p = Preimage::from_bytes([n; 32]);
        let (_, pk) = key(n + 0x10);
        let (s, offer) = h.loop_out(&net, amount, p.payment_hash(), &pk);
        assert_eq!(s, 201, "{offer}");
        pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
        pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
        let expiry = offer["expiry"].as_u64().expect("expiry") as u32;
        swaps.push((SwapId::from(p.payment_hash()), amount, expiry));
    }
    drive(
        &net,
        &net.server,
        || false,
        || {
            swaps
                .iter()
                .all(|(id, ..)| matches!(out_state(&net, &net.server, id), OutState::Published { .. }))
        },
    );
    let fundings: std::collections::BTreeSet<bitcoin::Txid> = swaps
        .iter()
        .map(|(id, ..)| {
            let rec = net.rt.block_on(net.server.loop_out.swap(id)).expect("swap").1;
            rec.funding.expect("funding").txid
        })
        .collect();
    let publish_fees: Amount = fundings.iter().map(|t| fee_of(&net, t)).sum();
    drive(
        &net,
        &net.server,
        || true,
        || {
            swaps
                .iter()
                .all(|(id, ..)| out_state(&net, &net.server, id) == OutState::Refunded)
        },
    );
    let recs: Vec<_> = swaps
        .iter()
        .map(|(id, ..)| net.rt.block_on(net.server.loop_out.swap(id)).expect("swap").1)
        .collect();
    let confirmed = |rec: &eddy_server::loop_out::ServerLoopOut| {
        rec.refund
            .as_ref()
            .expect("refund")
            .all
            .iter()
            .filter_map(|t| net.rt.block_on(net.chain.transaction(t)).expect("rpc"))
            .find(|t| t.block.is_some())
            .expect("a refund confirmed")
            .tx
    };
    let refund = confirmed(&recs[0]);
    let txid = refund.compute_txid();
    assert_eq!(confirmed(&recs[1]).compute_txid(), txid, "one refund for both");
    assert_eq!((refund.input.len(), refund.output.len()), (2, 1), "{refund:?}");
    let total = Amount::from_sat(swaps.iter().map(|s| s.1).sum());
    let refund_fee = total - refund.output[0].value;
    let shares: Amount = recs
        .iter()
        .map(|r| r.refund.as_ref().and_then(|s| s.share_of(&txid)).expect("share"))
        .sum();
    assert_eq!(shares, refund_fee, "the shares add up to the fee");
    assert_eq!(
        wallet(&net, &net.server),
        wallet0 - publish_fees - refund_fee,
        "both HTLCs came back less the publication fees and one refund fee"
    );
    let prepays = 2 * 1_000;
    wait_channels(&net, server_ln0 + prepays, client_ln0 - prepays);
    net.stop().expect("stop");
}

/// **Publication window (issue 17).** A server with a one-hour window: two loop-outs paid one
/// after the other are held, and blocks pass without an HTLC for either while their publication
/// rules are far; the window gives way `PUBLISH_WINDOW_FORCE_BLOCKS` before a rule would refuse
/// them, and both go out in **one** transaction (two HTLC outputs of their exact amounts and the
/// change) — never canceled. A third swap asked `fast` is published at once.
#[test]
fn held_loop_outs_wait_for_the_window_and_go_out_together_before_the_rules_refuse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let cfg = eddy_server::ServerConfig {
        publish_batch_window: std::time::Duration::from_secs(3_600),
        ..eddy::demo::server_config()
    };
    let own = own_server(
        &net,
        "windowed",
        cfg,
        eddy_server::http::Limits::new(5),
        None,
        None,
        &[400_000],
    );
    let h = Hostile::new(&own.http.url());
    let mut swaps = vec![];
    for (n, amount) in [(0x61u8, 40_000u64), (0x62, 45_000)] {
        let p = Preimage::from_bytes([n; 32]);
        let (_, pk) = key(n + 0x10);
        let (s, offer) = h.loop_out(&net, amount, p.payment_hash(), &pk);
        assert_eq!(s, 201, "{offer}");
        pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
        pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
        swaps.push((SwapId::from(p.payment_hash()), amount));
    }
    let state = |id: &SwapId| out_state(&net, &own.server, id);
    drive(
        &net,
        &own.server,
        || false,
        || {
            swaps
                .iter()
                .all(|(id, _)| matches!(state(id), OutState::Publishing { .. }))
        },
    );
    let held_at = net.lab.chain.tip().expect("tip").0;
    let mut waited_blocks = 0;
    loop {
        net.rt.block_on(own.server.tick()).expect("tick");
        let states: Vec<_> = swaps.iter().map(|(id, _)| state(id)).collect();
        if states.iter().all(|s| matches!(s, OutState::Published { .. })) {
            break;
        }
        assert!(
            states.iter().all(|s| matches!(s, OutState::Publishing { .. })),
            "held until published together, never canceled: {states:?}"
        );
        net.mine(1).expect("mine");
        waited_blocks += 1;
        assert!(waited_blocks < 80, "never published");
    }
    assert!(waited_blocks >= 2, "the window held them for {waited_blocks} blocks");
    let recs: Vec<_> = swaps
        .iter()
        .map(|(id, _)| net.rt.block_on(own.server.loop_out.swap(id)).expect("swap").1)
        .collect();
    let funding = recs[0].funding.expect("funding");
    assert_eq!(recs[1].funding.expect("funding").txid, funding.txid, "one transaction");
    let tx = net
        .rt
        .block_on(net.chain.transaction(&funding.txid))
        .expect("rpc")
        .expect("known")
        .tx;
    assert_eq!(tx.output.len(), 3, "two HTLCs and the change");
    for ((_, amount), rec) in swaps.iter().zip(&recs) {
        let f = rec.funding.expect("funding");
        assert_eq!(tx.output[f.vout as usize].value, Amount::from_sat(*amount));
        // Published before either rule would have refused it.
        let published = rec.published_height.expect("published at");
        assert!(published > held_at);
        assert!(rec.terms.may_publish(published), "{published}");
        // In time for the prepay too: it was settled.
        let prepay = rec.prepay_preimage.payment_hash();
        eddy_lab::wait_until("prepay settled", eddy_lab::WAIT, || {
            matches!(
                net.rt.block_on(net.server_ln.hold_invoice_state(&prepay)),
                Ok(eddy_backends::HoldInvoiceState::Settled { .. })
            )
        })
        .expect("the prepay earned");
    }
    // A swap asked `fast` goes out at once, in the block it was held in, window or not.
    let p = Preimage::from_bytes([0x63; 32]);
    let (_, pk) = key(0x73);
    let body = json!({"amount": 30_000, "payment_hash": p.payment_hash().to_string(), "claim_key": pk.to_string(), "fast": true});
    let (s, offer) = h.call(&net, "POST", "/v1/loop-out", &[], Some(body.to_string()));
    assert_eq!(s, 201, "{offer}");
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    let fast = SwapId::from(p.payment_hash());
    let tip = net.lab.chain.tip().expect("tip").0;
    drive(
        &net,
        &own.server,
        || false,
        || matches!(state(&fast), OutState::Published { .. }),
    );
    let rec = net.rt.block_on(own.server.loop_out.swap(&fast)).expect("swap").1;
    assert!(rec.fast);
    assert_eq!(rec.published_height, Some(tip), "no block waited");
    net.stop().expect("stop");
}

/// **F8: per-swap endpoints anyone could call.** While an honest loop-in is funded (not yet
/// confirmed), a stranger who knows the payment hash asks for its status, for a cooperative
/// refund of the funding (which would stop the server from ever paying), for the claim signing
/// session, with no signature, a wrong key, and a captured signature replayed on another
/// endpoint and body: 401 every time, also for an unknown id, nothing changes; the honest swap
/// completes. Client: channel + (amount − fee), on-chain − (amount + funding fee); server:
/// wallet + (amount − claim fee), channel − (amount − fee).
#[test]
fn attack_f8_strangers_cannot_read_or_act_on_a_swap() {
    use eddy_core::sm::loop_in_client as lic;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let amount = Amount::from_sat(90_000);
    let addr = net.rt.block_on(net.client_ln.new_address()).expect("address");
    net.lab.chain.fund(&addr, Amount::from_sat(300_000)).expect("fund");
    net.mine(1).expect("mine");
    eddy_lab::wait_until("client wallet funded", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == 300_000
    })
    .expect("funded");
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let chain0 = onchain(&net.client_ln);
    let wallet0 = wallet(&net, &net.server);
    let id = net
        .rt
        .block_on(
            net.client_in
                .loop_in(amount, eddy_client::loop_in::LoopInOptions::default()),
        )
        .expect("loop-in");
    // The client funds; the funding waits unconfirmed.
    let start = std::time::Instant::now();
    let funding = loop {
        net.rt.block_on(net.client_in.tick()).expect("tick");
        let (_, c) = net.rt.block_on(net.client_in.swap(&id)).expect("swap");
        let spk = bitcoin::Address::from_str(&c.offer.htlc_address)
            .expect("address")
            .assume_checked()
            .script_pubkey();
        if let Some(op) = outputs_paying(&net, &spk, net.lab.chain.tip().expect("tip").0).first() {
            break *op;
        }
        assert!(start.elapsed() < eddy_lab::WAIT);
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(in_state(&net, &net.server, &id), InState::Created);
    let stranger = key(0x66).0;
    let base = format!("/v1/swaps/{id}");
    let refund = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: funding,
            ..Default::default()
        }],
        output: vec![bitcoin::TxOut {
            value: amount - Amount::from_sat(500),
            script_pubkey: address(&net),
        }],
    };
    let body = json!({"nonce": "02".repeat(66), "tx": bitcoin::consensus::encode::serialize_hex(&refund)}).to_string();
    let refused = |(s, v): (u16, Value)| {
        assert_eq!(s, 401, "{v}");
        assert!(v["error"].as_str().unwrap_or("").starts_with("not authorized"), "{v}");
    };
    refused(h.call(&net, "GET", &base, &[], None));
    refused(h.call(&net, "POST", &format!("{base}/refund-cosign"), &[], Some(body.clone())));
    refused(h.signed(&net, &stranger, &id, "GET", &base, None));
    refused(h.signed(
        &net,
        &stranger,
        &id,
        "POST",
        &format!("{base}/refund-cosign"),
        Some(body.clone()),
    ));
    refused(h.signed(&net, &stranger, &id, "GET", &format!("{base}/claim"), None));
    // A signature the client made for its status request, captured and replayed elsewhere.
    let client_key = eddy_store::SeedKeys::load_or_create(dir.path(), eddy_client::SEED_FILE)
        .expect("seed")
        .secret(eddy_client::loop_in::KEY_PURPOSE, &id);
    let captured = eddy_core::auth::sign(&client_key, &id, now(), "GET", &base, &[]);
    let hdr = [(eddy_core::auth::HEADER, captured.clone())];
    assert_eq!(h.call(&net, "GET", &base, &hdr, None).0, 200, "the client's own call");
    refused(h.call(&net, "GET", &format!("{base}/claim"), &hdr, None));
    refused(h.call(&net, "POST", &format!("{base}/refund-cosign"), &hdr, Some(body.clone())));
    let unknown = SwapId([0x77; 32]);
    assert_eq!(
        h.call(&net, "GET", &format!("/v1/swaps/{unknown}/refund-cosign"), &[], None)
            .0,
        405
    );
    assert_eq!(
        h.call(
            &net,
            "POST",
            &format!("/v1/swaps/{unknown}/refund-cosign"),
            &[],
            Some(body)
        )
        .0,
        401
    );
    assert_eq!(in_state(&net, &net.server, &id), InState::Created, "nothing changed");
    // The honest swap completes.
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("tick");
        net.rt.block_on(net.client_in.tick()).expect("tick");
        let (_, c) = net.rt.block_on(net.client_in.swap(&id)).expect("swap");
        let s = in_state(&net, &net.server, &id);
        match (&c.state, &s) {
            (lic::State::Succeeded, InState::Succeeded) => break,
            (lic::State::Funding { .. }, _) | (_, InState::Claiming { .. }) => net.mine(1).expect("mine"),
            (_, InState::Refundable(r)) => panic!("refundable: {r:?}"),
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "{:?} / {s:?}", c.state);
    }
    let (_, c) = net.rt.block_on(net.client_in.swap(&id)).expect("swap");
    let rec = net.rt.block_on(net.server.loop_in.swap(&id)).expect("swap").1;
    assert_eq!(rec.funding, Some(funding));
    let claim_fee = fee_of(&net, &rec.claim.expect("claim").last().expect("sweep broadcast"));
    let funding_fee = fee_of(&net, &funding.txid);
    let paid = (amount - c.offer.swap_fee).to_sat();
    wait_channels(&net, server_ln0 - paid, client_ln0 + paid);
    assert_eq!(wallet(&net, &net.server), wallet0 + amount - claim_fee);
    eddy_lab::wait_until("client chain", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 - (amount + funding_fee).to_sat()
    })
    .expect("the client paid exactly the funding and its fee");
    net.stop().expect("stop");
}

/// **The client pays the swap invoice but not the prepay.** The server never publishes; at the
/// publication deadline it cancels both invoices. Nothing moves: both channels and the swap
/// wallet as before, no output ever pays the HTLC script.
#[test]
fn attack_swap_paid_without_the_prepay_is_never_published() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let p = Preimage::from_bytes([0x24; 32]);
    let (_, pk) = key(0x35);
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let created = net.lab.chain.tip().expect("tip").0;
    let (s, offer) = h.loop_out(&net, 80_000, p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = out_htlc(&offer, p.payment_hash(), &pk);
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &net.server,
        || false,
        || {
            matches!(
                out_state(&net, &net.server, &id),
                OutState::Created {
                    swap_accepted: Some(_),
                    ..
                }
            )
        },
    );
    for _ in 0..5 {
        net.rt.block_on(net.server.tick()).expect("tick");
    }
    net.mine(eddy_core::constants::LOOP_OUT_PUBLICATION_DEADLINE)
        .expect("mine");
    drive(
        &net,
        &net.server,
        || false,
        || out_state(&net, &net.server, &id) == OutState::Canceled(CancelReason::PublicationDeadline),
    );
    assert!(
        outputs_paying(&net, &htlc.script_pubkey(), created).is_empty(),
        "never published"
    );
    wait_channels(&net, server_ln0, client_ln0);
    assert_eq!(wallet(&net, &net.server), wallet0);
    net.stop().expect("stop");
}

/// **Replays and duplicate hashes.** The attacker replays a loop-out creation, a loop-in
/// creation, and opens a loop-in on the hash of its loop-out (and the reverse): 409 each time,
/// one swap per hash, nothing reserved twice; balances untouched.
#[test]
fn attack_replayed_creations_and_duplicate_hashes_have_no_second_effect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let (_, pk) = key(0x36);
    let out = Preimage::from_bytes([0x25; 32]);
    let (s, first) = h.loop_out(&net, 70_000, out.payment_hash(), &pk);
    assert_eq!(s, 201, "{first}");
    let (s, v) = h.loop_out(&net, 70_000, out.payment_hash(), &pk);
    assert_eq!(s, 409, "{v}");
    let (s, v) = h.loop_out(&net, 90_000, out.payment_hash(), &key(0x37).1);
    assert_eq!(s, 409, "other terms, same hash: {v}");
    let in_msat = net
        .server
        .loop_in
        .quote(Amount::from_sat(90_000))
        .expect("quote")
        .invoice_amount
        .to_sat()
        * 1000;
    // A loop-in on the loop-out's hash (a hold invoice: the attacker need not know it).
    let (s, v) = h.loop_in(&net, 90_000, &hold_invoice(&net, out.payment_hash(), in_msat), &pk);
    assert_eq!(s, 409, "{v}");
    let inn = Preimage::from_bytes([0x26; 32]);
    let bolt11 = invoice(&net, &inn, in_msat);
    let (s, offer) = h.loop_in(&net, 90_000, &bolt11, &pk);
    assert_eq!(s, 201, "{offer}");
    let (s, v) = h.loop_in(&net, 90_000, &bolt11, &pk);
    assert_eq!(s, 409, "{v}");
    let (s, v) = h.loop_out(&net, 70_000, inn.payment_hash(), &pk);
    assert_eq!(s, 409, "a loop-out on the loop-in's hash: {v}");
    // The first offer's terms are the stored ones.
    let rec = net
        .rt
        .block_on(net.server.loop_out.swap(&SwapId::from(out.payment_hash())))
        .expect("swap")
        .1;
    assert_eq!(rec.amount, Amount::from_sat(70_000));
    assert_eq!(rec.swap_invoice, first["swap_invoice"].as_str().expect("invoice"));
    let all = net
        .rt
        .block_on(net.server_store.list(eddy_store::ListFilter::Active))
        .expect("list");
    assert_eq!(all.len(), 2, "one swap per hash");
    wait_channels(&net, server_ln0, client_ln0);
    assert_eq!(wallet(&net, &net.server), wallet0);
    net.stop().expect("stop");
}

/// **Co-sign requests for transactions that pay elsewhere, spend another outpoint or other
/// amounts; replays of the co-sign call.** After pushing its preimage (so the server co-signs
/// claims), the attacker asks the loop-out claim co-signature for a transaction spending
/// another outpoint, two inputs without their prevouts, a batch whose named input is another
/// outpoint, a batch naming a wrong value for the HTLC: refused; a batch naming the HTLC's
/// own output is co-signed over every prevout named (the partial signature verifies for that
/// message: the other inputs are the asker's business once the preimage is out); a correct
/// request is answered twice with fresh nonces (no state change). Finally the attacker claims
/// by the script path. Server: channel + invoice + prepay, wallet − amount − publication fee;
/// attacker: channel − invoice − prepay, on-chain + amount − claim fee.
#[test]
fn attack_cosign_requests_for_other_transactions_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let p = Preimage::from_bytes([0x27; 32]);
    let (k, pk) = key(0x38);
    let amount = Amount::from_sat(75_000);
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let chain0 = onchain(&net.client_ln);
    let (s, offer) = h.loop_out(&net, amount.to_sat(), p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = out_htlc(&offer, p.payment_hash(), &pk);
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &net.server,
        || false,
        || matches!(out_state(&net, &net.server, &id), OutState::Published { .. }),
    );
    net.mine(1).expect("mine");
    let funding = net
        .rt
        .block_on(net.server.loop_out.swap(&id))
        .expect("swap")
        .1
        .funding
        .expect("funding");
    let (s, v) = h.call(
        &net,
        "POST",
        &format!("/v1/swaps/{id}/preimage"),
        &[],
        Some(json!({"preimage": p.expose_hex()}).to_string()),
    );
    assert_eq!(s, 204, "{v}");
    let tx = |inputs: Vec<bitcoin::OutPoint>| bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: inputs
            .into_iter()
            .map(|o| bitcoin::TxIn {
                previous_output: o,
                ..Default::default()
            })
            .collect(),
        output: vec![bitcoin::TxOut {
            value: Amount::from_sat(70_000),
            script_pubkey: address(&net),
        }],
    };
    let taproot = match &htlc {
        eddy_core::htlc::Htlc::Taproot(t) => t.clone(),
        _ => panic!("taproot"),
    };
    let batch_cosign = |t: &bitcoin::Transaction, msg: [u8; 32], extra: Value| {
        let signer = eddy_core::musig::Signer::new(&taproot, &k, msg, &id.0).expect("signer");
        let mut body = json!({"nonce": signer.public_nonce().iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "tx": bitcoin::consensus::encode::serialize_hex(t)});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (s, v) = h.signed(
            &net,
            &k,
            &id,
            "POST",
            &format!("/v1/swaps/{id}/cosign"),
            Some(body.to_string()),
        );
        (s, v, signer)
    };
    let cosign = |t: &bitcoin::Transaction| {
        let body = json!({"nonce": eddy_core::musig::Signer::new(
            match &htlc { eddy_core::htlc::Htlc::Taproot(t) => t, _ => panic!("taproot") },
            &k,
            [0u8; 32],
            &id.0,
        ).expect("signer").public_nonce().iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "tx": bitcoin::consensus::encode::serialize_hex(t)});
        h.signed(
            &net,
            &k,
            &id,
            "POST",
            &format!("/v1/swaps/{id}/cosign"),
            Some(body.to_string()),
        )
    };
    let other = bitcoin::OutPoint {
        txid: funding.txid,
        vout: funding.vout + 1,
    };
    let (s, v) = cosign(&tx(vec![other]));
    assert_eq!(s, 400, "another outpoint: {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("must spend this swap's HTLC"),
        "{v}"
    );
    let (s, v) = cosign(&tx(vec![funding, other]));
    assert_eq!(s, 400, "two inputs, no prevouts: {v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("prevouts are required"),
        "{v}"
    );
    // A batch: the HTLC's output and a stranger's.
    use bitcoin::hex::FromHex;
    let own = bitcoin::TxOut {
        value: amount,
        script_pubkey: htlc.script_pubkey(),
    };
    let theirs = bitcoin::TxOut {
        value: Amount::from_sat(12_345),
        script_pubkey: address(&net),
    };
    let batch = tx(vec![funding, other]);
    let named = |outs: &[&bitcoin::TxOut]| {
        outs.iter()
            .map(|o| json!({"value_sat": o.value.to_sat(), "script_pubkey": o.script_pubkey.to_hex_string()}))
            .collect::<Vec<_>>()
    };
    let msg0 = eddy_core::tx::cooperative_sighash_at(&batch, 0, &[own.clone(), theirs.clone()]).expect("msg");
    let (s, v, _) = batch_cosign(&batch, msg0, json!({"index": 1, "prevouts": named(&[&own, &theirs])}));
    assert_eq!(s, 400, "the named input is not the HTLC: {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("must spend this swap's HTLC"),
        "{v}"
    );
    let mut cheaper = own.clone();
    cheaper.value = amount - Amount::from_sat(1);
    let (s, v, _) = batch_cosign(
        &batch,
        msg0,
        json!({"index": 0, "prevouts": named(&[&cheaper, &theirs])}),
    );
    assert_eq!(s, 400, "a wrong value for the HTLC: {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("names every input's prevout"),
        "{v}"
    );
    let (s, v, mut signer) = batch_cosign(&batch, msg0, json!({"index": 0, "prevouts": named(&[&own, &theirs])}));
    assert_eq!(s, 200, "the batch's HTLC input: {v}");
    let nonce = <[u8; eddy_core::musig::PUB_NONCE_LEN]>::from_hex(v["nonce"].as_str().expect("nonce")).expect("nonce");
    let partial = <[u8; 32]>::from_hex(v["partial_sig"].as_str().expect("partial")).expect("partial");
    let ours = signer.sign(&nonce).expect("sign");
    signer
        .aggregate(&nonce, &ours, &partial)
        .expect("the server's partial signature is for input 0 over both prevouts");
    let good = tx(vec![funding]);
    let (s1, a) = cosign(&good);
    let (s2, b) = cosign(&good);
    assert_eq!((s1, s2), (200, 200), "{a} {b}");
    assert_ne!(a["nonce"], b["nonce"], "a fresh nonce for every request");
    // The attacker walks away from the key path and claims by the script path.
    let (claim, claim_fee) = claim_out(&net, &k, &htlc, funding, amount, p);
    net.mine(1).expect("mine");
    drive(
        &net,
        &net.server,
        || false,
        || out_state(&net, &net.server, &id) == OutState::Succeeded,
    );
    assert_eq!(claim.input[0].previous_output, funding);
    let publish_fee = fee_of(&net, &funding.txid);
    let invoice_sat = offer_invoice_sat(&net, &offer);
    wait_channels(&net, server_ln0 + invoice_sat + 1_000, client_ln0 - invoice_sat - 1_000);
    assert_eq!(wallet(&net, &net.server), wallet0 - amount - publish_fee);
    eddy_lab::wait_until("claim", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 + (amount - claim_fee).to_sat()
    })
    .expect("the attacker got the HTLC less its claim fee");
    net.stop().expect("stop");
}

/// The swap invoice's amount (sat) of a loop-out offer.
fn offer_invoice_sat(_net: &Swapnet, offer: &Value) -> u64 {
    let inv: ldk_node::lightning_invoice::Bolt11Invoice = offer["swap_invoice"]
        .as_str()
        .expect("invoice")
        .parse()
        .expect("bolt11");
    inv.amount_milli_satoshis().expect("amount") / 1000
}

/// **A refund co-sign request while the server's payment is in flight; the client vanishes
/// mid-MuSig2.** The attacker's invoice is a hold invoice, so the server's payment sits in
/// flight: a (properly signed) cooperative refund request is refused, the swap stays `Paying`.
/// The attacker then settles (the server learns the preimage), asks for the cooperative claim
/// session and vanishes; a replayed claim-cosign with garbage is refused. The server waits its
/// one block, claims by the script path. Server: wallet + amount − claim fee, channel −
/// invoice; attacker: channel + invoice, its funding spent.
#[test]
fn attack_refund_while_paying_then_vanish_mid_musig() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let amount = Amount::from_sat(90_000);
    let invoice_sat = net.server.loop_in.quote(amount).expect("quote").invoice_amount.to_sat();
    let p = Preimage::from_bytes([0x28; 32]);
    let (k, pk) = key(0x39);
    let (s, offer) = h.loop_in(
        &net,
        amount.to_sat(),
        &hold_invoice(&net, p.payment_hash(), invoice_sat * 1000),
        &pk,
    );
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = in_htlc(&offer, p.payment_hash(), &pk);
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let op = fund(&net, &htlc, amount);
    net.mine(1).expect("mine");
    drive(
        &net,
        &net.server,
        || false,
        || {
            matches!(
                net.rt.block_on(net.client_ln.hold_invoice_state(&p.payment_hash())),
                Ok(HoldInvoiceState::Accepted { .. })
            )
        },
    );
    let e = cooperative_refund(&net, &h, &k, &id, &htlc, op, amount).expect_err("refused while paying");
    assert_eq!(e.0, 400, "{:?}", e.1);
    assert!(matches!(in_state(&net, &net.server, &id), InState::Paying { .. }));
    // The attacker takes the payment.
    net.rt.block_on(net.client_ln.settle_hold_invoice(&p)).expect("settle");
    drive(
        &net,
        &net.server,
        || false,
        || matches!(in_state(&net, &net.server, &id), InState::Claiming { .. }),
    );
    // Mid-MuSig2: the attacker opens the claim session and never completes it.
    let (s, v) = h.signed(&net, &k, &id, "GET", &format!("/v1/swaps/{id}/claim"), None);
    assert_eq!(s, 200, "{v}");
    let garbage = json!({"nonce": "02".repeat(66), "partial_sig": "11".repeat(32)}).to_string();
    let (s, v) = h.signed(
        &net,
        &k,
        &id,
        "POST",
        &format!("/v1/swaps/{id}/claim-cosign"),
        Some(garbage.clone()),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = h.signed(
        &net,
        &k,
        &id,
        "POST",
        &format!("/v1/swaps/{id}/claim-cosign"),
        Some(garbage),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("ask for the claim first"),
        "{v}"
    );
    drive(
        &net,
        &net.server,
        || true,
        || in_state(&net, &net.server, &id) == InState::Succeeded,
    );
    let rec = net.rt.block_on(net.server.loop_in.swap(&id)).expect("swap").1;
    let claim = rec.claim.expect("claim");
    let claim_tx = net
        .rt
        .block_on(net.chain.transaction(&claim.last().expect("sweep broadcast")))
        .expect("rpc")
        .expect("claim")
        .tx;
    assert_eq!(claim_tx.input[0].previous_output, op);
    assert_eq!(
        claim_tx.input[0].witness.nth(1),
        Some(&p.expose_bytes()[..]),
        "script path"
    );
    let claim_fee = amount - claim_tx.output[0].value;
    wait_channels(&net, server_ln0 - invoice_sat, client_ln0 + invoice_sat);
    assert_eq!(wallet(&net, &net.server), wallet0 + amount - claim_fee);
    net.stop().expect("stop");
}

/// **The client reveals the preimage as late as the rules allow.** The attacker waits until the
/// last reveal height `E − PREIMAGE_REVEAL_CUTOFF` and only then broadcasts its script-path
/// claim: the server reads the preimage from the mempool and settles in time. Server: channel +
/// invoice + prepay, wallet − amount − publication fee; attacker: channel − invoice − prepay,
/// on-chain + amount − claim fee.
#[test]
fn attack_preimage_revealed_at_the_cutoff_is_still_settled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let p = Preimage::from_bytes([0x29; 32]);
    let (k, pk) = key(0x3a);
    let amount = Amount::from_sat(65_000);
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let chain0 = onchain(&net.client_ln);
    let (s, offer) = h.loop_out(&net, amount.to_sat(), p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = out_htlc(&offer, p.payment_hash(), &pk);
    let expiry = offer["expiry"].as_u64().expect("expiry") as u32;
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &net.server,
        || false,
        || matches!(out_state(&net, &net.server, &id), OutState::Published { .. }),
    );
    let funding = net
        .rt
        .block_on(net.server.loop_out.swap(&id))
        .expect("swap")
        .1
        .funding
        .expect("funding");
    let last = eddy_core::constants::loop_out_last_reveal_height(expiry);
    while net.lab.chain.tip().expect("tip").0 < last {
        let left = last - net.lab.chain.tip().expect("tip").0;
        net.mine(left.min(8)).expect("mine");
        net.rt.block_on(net.server.tick()).expect("tick");
    }
    assert_eq!(net.lab.chain.tip().expect("tip").0, last);
    assert!(matches!(out_state(&net, &net.server, &id), OutState::Published { .. }));
    let (_, claim_fee) = claim_out(&net, &k, &htlc, funding, amount, p);
    drive(
        &net,
        &net.server,
        || false,
        || out_state(&net, &net.server, &id) == OutState::Succeeded,
    );
    net.mine(1).expect("mine");
    let publish_fee = fee_of(&net, &funding.txid);
    let invoice_sat = offer_invoice_sat(&net, &offer);
    wait_channels(&net, server_ln0 + invoice_sat + 1_000, client_ln0 - invoice_sat - 1_000);
    assert_eq!(wallet(&net, &net.server), wallet0 - amount - publish_fee);
    eddy_lab::wait_until("claim", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 + (amount - claim_fee).to_sat()
    })
    .expect("the attacker got the HTLC less its claim fee");
    net.stop().expect("stop");
}

/// **F9: free swap creation blocking honest users.** On a server taking 3 swaps at a time
/// behind a reverse proxy, one address floods loop-out creations it never pays: after its
/// per-minute quota it gets 429, and its unpaid offers hold no slot and reserve no coins, so an
/// honest client (another address behind the same proxy) still gets a swap and completes it.
/// Server: channel + invoice + prepay, wallet − amount − publication fee; honest client:
/// channel − invoice − prepay, on-chain + amount − claim fee.
#[test]
fn attack_f9_creation_flood_does_not_block_an_honest_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let cfg = eddy_server::ServerConfig {
        max_active_swaps: 3,
        ..eddy::demo::server_config()
    };
    let limits = eddy_server::http::Limits {
        trusted_proxy: Some("127.0.0.1".parse().expect("ip")),
        ..eddy_server::http::Limits::new(5)
    };
    let own = own_server(&net, "flooded", cfg, limits, None, None, &[400_000]);
    let h = Hostile::new(&own.http.url());
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    let chain0 = onchain(&net.client_ln);
    let from = |ip: &str| vec![("x-forwarded-for", format!("{ip}, 127.0.0.1"))];
    let mut refused = 0;
    for n in 0..8u8 {
        let p = Preimage::from_bytes([0x80 + n; 32]);
        let body = json!({"amount": 100_000, "payment_hash": p.payment_hash().to_string(), "claim_key": key(0x50 + n).1.to_string()});
        let (s, v) = h.call(&net, "POST", "/v1/loop-out", &from("10.0.0.66"), Some(body.to_string()));
        match s {
            201 => {}
            429 => refused += 1,
            _ => panic!("{s}: {v}"),
        }
    }
    assert_eq!(
        refused, 5,
        "3 live unpaid offers per client (5 a minute) for the flooding address"
    );
    // The honest client, another address behind the proxy.
    let p = Preimage::from_bytes([0x2a; 32]);
    let (k, pk) = key(0x3b);
    let amount = Amount::from_sat(100_000);
    let body =
        json!({"amount": amount.to_sat(), "payment_hash": p.payment_hash().to_string(), "claim_key": pk.to_string()});
    let (s, offer) = h.call(&net, "POST", "/v1/loop-out", &from("10.0.0.1"), Some(body.to_string()));
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = out_htlc(&offer, p.payment_hash(), &pk);
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &own.server,
        || false,
        || matches!(out_state(&net, &own.server, &id), OutState::Published { .. }),
    );
    net.mine(1).expect("mine");
    let funding = net
        .rt
        .block_on(own.server.loop_out.swap(&id))
        .expect("swap")
        .1
        .funding
        .expect("funding");
    let (_, claim_fee) = claim_out(&net, &k, &htlc, funding, amount, p);
    drive(
        &net,
        &own.server,
        || false,
        || out_state(&net, &own.server, &id) == OutState::Succeeded,
    );
    net.mine(1).expect("mine");
    let publish_fee = fee_of(&net, &funding.txid);
    let invoice_sat = offer_invoice_sat(&net, &offer);
    wait_channels(&net, server_ln0 + invoice_sat + 1_000, client_ln0 - invoice_sat - 1_000);
    assert_eq!(wallet(&net, &own.server), wallet0 - amount - publish_fee);
    eddy_lab::wait_until("claim", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 + (amount - claim_fee).to_sat()
    })
    .expect("the honest client got the HTLC less its claim fee");
    net.stop().expect("stop");
}

/// **F5: a publication that cannot happen in its window.** Two paid loop-outs race for a swap
/// wallet that can fund only one (unpaid offers reserve nothing): the first is published, the
/// second waits for funds; when its publication window has closed (fewer than
/// `MIN_BLOCKS_LEFT_AT_PUBLICATION` blocks before `E`) it is canceled — never published late,
/// its prepay never settled, the attacker's payments returned. Server: channel + the first
/// swap's invoice and prepay only, wallet − first amount − its publication fee.
#[test]
fn attack_f5_late_publication_is_canceled_and_its_prepay_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let own = own_server(
        &net,
        "short",
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(20),
        None,
        None,
        &[150_000],
    );
    let h = Hostile::new(&own.http.url());
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    let amount = 80_000;
    let (pa, pb) = (Preimage::from_bytes([0x2b; 32]), Preimage::from_bytes([0x2c; 32]));
    let (_, pk) = key(0x3c);
    let (s, a) = h.loop_out(&net, amount, pa.payment_hash(), &pk);
    assert_eq!(s, 201, "{a}");
    let (s, b) = h.loop_out(&net, amount, pb.payment_hash(), &pk);
    assert_eq!(s, 201, "{b}");
    let (ida, idb) = (SwapId::from(pa.payment_hash()), SwapId::from(pb.payment_hash()));
    let created = net.lab.chain.tip().expect("tip").0;
    pay(&net, a["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, a["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &own.server,
        || false,
        || matches!(out_state(&net, &own.server, &ida), OutState::Published { .. }),
    );
    pay(&net, b["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, b["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &own.server,
        || false,
        || matches!(out_state(&net, &own.server, &idb), OutState::Publishing { .. }),
    );
    for _ in 0..3 {
        let _ = net.rt.block_on(own.server.tick());
    }
    let waiting = out_state(&net, &own.server, &idb);
    assert!(
        matches!(waiting, OutState::Publishing { .. }),
        "no funds for B: {waiting:?}"
    );
    // A pushes its preimage (the server settles A); B's window closes.
    let (s, v) = h.call(
        &net,
        "POST",
        &format!("/v1/swaps/{ida}/preimage"),
        &[],
        Some(json!({"preimage": pa.expose_hex()}).to_string()),
    );
    assert_eq!(s, 204, "{v}");
    let expiry_b = b["expiry"].as_u64().expect("expiry") as u32;
    let close = expiry_b - eddy_core::constants::MIN_BLOCKS_LEFT_AT_PUBLICATION + 1;
    while net.lab.chain.tip().expect("tip").0 < close {
        let left = close - net.lab.chain.tip().expect("tip").0;
        net.mine(left.min(8)).expect("mine");
        let _ = net.rt.block_on(own.server.tick());
    }
    drive(
        &net,
        &own.server,
        || false,
        || out_state(&net, &own.server, &idb) == OutState::Canceled(CancelReason::PublicationWindowMissed),
    );
    let htlc_b = out_htlc(&b, pb.payment_hash(), &pk);
    assert!(
        outputs_paying(&net, &htlc_b.script_pubkey(), created).is_empty(),
        "B never published"
    );
    let funding = net
        .rt
        .block_on(own.server.loop_out.swap(&ida))
        .expect("swap")
        .1
        .funding
        .expect("funding");
    let publish_fee = fee_of(&net, &funding.txid);
    let invoice_a = offer_invoice_sat(&net, &a);
    wait_channels(&net, server_ln0 + invoice_a + 1_000, client_ln0 - invoice_a - 1_000);
    assert_eq!(
        wallet(&net, &own.server),
        wallet0 - Amount::from_sat(amount) - publish_fee
    );
    net.stop().expect("stop");
}

/// **F6: double publication after a store error.** The HTLC is broadcast, then recording it
/// fails (injected store fault); the next publication attempt comes from the Lightning-event
/// path, which used not to sync the chain first. Adopt-before-publish on every path: exactly
/// one output ever pays the HTLC script, one publication fee is paid. The attacker then claims;
/// server: wallet − amount − one publication fee, channel + invoice + prepay.
#[test]
fn attack_f6_store_error_after_broadcast_never_publishes_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let sqlite: Arc<dyn eddy_store::SwapStore> = Arc::new(
        net.rt
            .block_on(eddy_store::SqliteStore::open(&dir.path().join("faulty.sqlite")))
            .expect("store"),
    );
    let faulty: Arc<dyn eddy_store::SwapStore> = Arc::new(FailOnce {
        inner: sqlite,
        fail_state: "published".into(),
        armed: std::sync::atomic::AtomicBool::new(true),
    });
    // Two coins, so that a second publication could be funded.
    let own = own_server(
        &net,
        "faulty",
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(20),
        Some(faulty),
        None,
        &[300_000, 300_000],
    );
    let h = Hostile::new(&own.http.url());
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    let created = net.lab.chain.tip().expect("tip").0;
    let p = Preimage::from_bytes([0x2d; 32]);
    let (k, pk) = key(0x3d);
    let amount = Amount::from_sat(85_000);
    let (s, offer) = h.loop_out(&net, amount.to_sat(), p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = out_htlc(&offer, p.payment_hash(), &pk);
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    // Engine pass: both HTLCs held → `Publishing` → broadcast → recording it fails.
    drive(
        &net,
        &own.server,
        || false,
        || !outputs_paying(&net, &htlc.script_pubkey(), created).is_empty(),
    );
    let waiting = out_state(&net, &own.server, &id);
    assert!(
        matches!(waiting, OutState::Publishing { .. }),
        "the record failed: {waiting:?}"
    );
    // The Lightning-event path publishes next (no engine pass in between).
    net.rt.block_on(own.server.loop_out.publish_pending()).expect("publish");
    net.rt
        .block_on(own.server.on_ln_event(&eddy_backends::LnEvent::Invoice {
            payment_hash: p.payment_hash(),
            state: HoldInvoiceState::Accepted {
                amount_msat: 0,
                htlcs: vec![],
            },
        }))
        .expect("event");
    net.rt.block_on(own.server.loop_out.publish_pending()).expect("publish");
    assert!(matches!(out_state(&net, &own.server, &id), OutState::Published { .. }));
    let outs = outputs_paying(&net, &htlc.script_pubkey(), created);
    assert_eq!(outs.len(), 1, "exactly one output pays the HTLC script: {outs:?}");
    net.mine(1).expect("mine");
    let funding = outs[0];
    let (_, claim_fee) = claim_out(&net, &k, &htlc, funding, amount, p);
    let _ = claim_fee;
    drive(
        &net,
        &own.server,
        || false,
        || out_state(&net, &own.server, &id) == OutState::Succeeded,
    );
    net.mine(1).expect("mine");
    assert_eq!(outputs_paying(&net, &htlc.script_pubkey(), created).len(), 1);
    let publish_fee = fee_of(&net, &funding.txid);
    let invoice_sat = offer_invoice_sat(&net, &offer);
    wait_channels(&net, server_ln0 + invoice_sat + 1_000, client_ln0 - invoice_sat - 1_000);
    assert_eq!(wallet(&net, &own.server), wallet0 - amount - publish_fee);
    net.stop().expect("stop");
}

/// **F3: a preimage pushed after `E` while the refund is under way.** The attacker pays a
/// loop-out, lets `E` pass without claiming, and pushes its preimage once the server's refund
/// is in flight. The server keeps refunding (a push proves no claim on chain, and settling now
/// could take the invoice *and* the refund), the refund confirms, the swap invoice is canceled.
/// Never settled and refunded: server wallet less the publication and refund fees, channel plus
/// the prepay only; attacker channel less the prepay only.
#[test]
fn attack_f3_preimage_pushed_after_expiry_does_not_stop_the_refund() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let p = Preimage::from_bytes([0x2e; 32]);
    let (_, pk) = key(0x3e);
    let amount = 70_000;
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let (s, offer) = h.loop_out(&net, amount, p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let expiry = offer["expiry"].as_u64().expect("expiry") as u32;
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &net.server,
        || false,
        || matches!(out_state(&net, &net.server, &id), OutState::Published { .. }),
    );
    let funding = net
        .rt
        .block_on(net.server.loop_out.swap(&id))
        .expect("swap")
        .1
        .funding
        .expect("funding");
    while net.lab.chain.tip().expect("tip").0 < expiry {
        let left = expiry - net.lab.chain.tip().expect("tip").0;
        net.mine(left.min(8)).expect("mine");
        net.rt.block_on(net.server.tick()).expect("tick");
    }
    net.rt.block_on(net.server.tick()).expect("tick");
    assert!(matches!(out_state(&net, &net.server, &id), OutState::Refunding { .. }));
    net.mine(1).expect("mine");
    net.rt.block_on(net.server.tick()).expect("tick");
    // The refund is in the mempool; the attacker pushes its preimage now.
    let (s, v) = h.call(
        &net,
        "POST",
        &format!("/v1/swaps/{id}/preimage"),
        &[],
        Some(json!({"preimage": p.expose_hex()}).to_string()),
    );
    assert_eq!(s, 204, "{v}");
    assert!(
        matches!(out_state(&net, &net.server, &id), OutState::Refunding { .. }),
        "still refunding"
    );
    drive(
        &net,
        &net.server,
        || true,
        || out_state(&net, &net.server, &id) == OutState::Refunded,
    );
    assert_eq!(
        net.rt
            .block_on(net.server_ln.hold_invoice_state(&p.payment_hash()))
            .expect("state"),
        HoldInvoiceState::Canceled,
        "the swap invoice was never settled"
    );
    let rec = net.rt.block_on(net.server.loop_out.swap(&id)).expect("swap").1;
    let refund_tx = rec
        .refund
        .expect("refund")
        .all
        .iter()
        .filter_map(|t| net.rt.block_on(net.chain.transaction(t)).expect("rpc"))
        .find(|t| t.block.is_some())
        .expect("a refund confirmed")
        .tx;
    assert_eq!(refund_tx.input[0].previous_output, funding);
    let refund_fee = Amount::from_sat(amount) - refund_tx.output[0].value;
    let publish_fee = fee_of(&net, &funding.txid);
    assert_eq!(wallet(&net, &net.server), wallet0 - publish_fee - refund_fee);
    wait_channels(&net, server_ln0 + 1_000, client_ln0 - 1_000);
    net.stop().expect("stop");
}

/// **F5: a lost HTLC publication.** The server's broadcast of the HTLC is answered "accepted"
/// but never reaches the mempool (as after an eviction or a node restart). The server
/// re-broadcasts it every pass until it confirms; the attacker claims. Server: channel +
/// invoice + prepay, wallet − amount − publication fee; attacker: on-chain + amount − claim fee.
#[test]
fn attack_f5_lost_publication_is_rebroadcast_until_it_confirms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let losing = Arc::new(LosesOneBroadcast::new(net.chain.clone()));
    let own = own_server(
        &net,
        "lossy",
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(20),
        None,
        Some(losing.clone()),
        &[200_000],
    );
    let h = Hostile::new(&own.http.url());
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    let chain0 = onchain(&net.client_ln);
    let created = net.lab.chain.tip().expect("tip").0;
    let p = Preimage::from_bytes([0x2f; 32]);
    let (k, pk) = key(0x3f);
    let amount = Amount::from_sat(60_000);
    let (s, offer) = h.loop_out(&net, amount.to_sat(), p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = out_htlc(&offer, p.payment_hash(), &pk);
    *losing.lose.lock().expect("lock") = Some(htlc.script_pubkey());
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &own.server,
        || false,
        || matches!(out_state(&net, &own.server, &id), OutState::Published { .. }),
    );
    assert!(losing.lose.lock().expect("lock").is_none(), "the publication was lost");
    net.mine(2).expect("mine");
    // Re-broadcast on the next passes; confirmed in the next block.
    drive(
        &net,
        &own.server,
        || true,
        || {
            outputs_paying(&net, &htlc.script_pubkey(), created).len() == 1
                && net
                    .rt
                    .block_on(
                        net.chain.transaction(
                            &net.rt
                                .block_on(own.server.loop_out.swap(&id))
                                .expect("swap")
                                .1
                                .funding
                                .expect("funding")
                                .txid,
                        ),
                    )
                    .expect("rpc")
                    .is_some_and(|t| t.block.is_some())
        },
    );
    let funding = net
        .rt
        .block_on(own.server.loop_out.swap(&id))
        .expect("swap")
        .1
        .funding
        .expect("funding");
    let (_, claim_fee) = claim_out(&net, &k, &htlc, funding, amount, p);
    drive(
        &net,
        &own.server,
        || false,
        || out_state(&net, &own.server, &id) == OutState::Succeeded,
    );
    net.mine(1).expect("mine");
    let publish_fee = fee_of(&net, &funding.txid);
    let invoice_sat = offer_invoice_sat(&net, &offer);
    wait_channels(&net, server_ln0 + invoice_sat + 1_000, client_ln0 - invoice_sat - 1_000);
    assert_eq!(wallet(&net, &own.server), wallet0 - amount - publish_fee);
    eddy_lab::wait_until("claim", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 + (amount - claim_fee).to_sat()
    })
    .expect("the attacker got the HTLC less its claim fee");
    net.stop().expect("stop");
}

/// **F5: an evicted publication whose fee no longer gets in.** The mempool's minimum fee is
/// above what the HTLC publication pays (10 sat/vB against the 2 sat/vB estimate: it is
/// evicted at once, and every re-broadcast is dropped again); the estimate then goes to 12:
/// after `HTLC_PUBLICATION_BUMP_BLOCKS` blocks the server replaces it (BIP125, from the swap
/// wallet's change) at the estimate; the replacement confirms, the swap follows it, exactly one
/// output ever pays the HTLC script, and the server pays exactly the replacement's fee. Server:
/// channel + invoice + prepay, wallet − amount − replacement fee; attacker: on-chain + amount −
/// claim fee.
#[test]
fn attack_f5_evicted_publication_is_replaced_at_a_higher_fee() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let losing = Arc::new(LosesOneBroadcast::new(net.chain.clone()));
    let own = own_server(
        &net,
        "evicting",
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(20),
        None,
        Some(losing.clone()),
        &[200_000],
    );
    let h = Hostile::new(&own.http.url());
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    let chain0 = onchain(&net.client_ln);
    let created = net.lab.chain.tip().expect("tip").0;
    let p = Preimage::from_bytes([0x30; 32]);
    let (k, pk) = key(0x40);
    let amount = Amount::from_sat(60_000);
    let (s, offer) = h.loop_out(&net, amount.to_sat(), p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = out_htlc(&offer, p.payment_hash(), &pk);
    // The mempool floor is above what the publication will pay.
    *losing.min_fee.lock().expect("lock") = Some((htlc.script_pubkey(), bitcoin::FeeRate::from_sat_per_kwu(2_500)));
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &own.server,
        || false,
        || matches!(out_state(&net, &own.server, &id), OutState::Published { .. }),
    );
    let original = net
        .rt
        .block_on(own.server.loop_out.swap(&id))
        .expect("swap")
        .1
        .funding
        .expect("funding");
    assert!(
        outputs_paying(&net, &htlc.script_pubkey(), created).is_empty(),
        "evicted"
    );
    if !net.lab.chain.is_devnet() {
        // The rest needs the estimate to rise; only the devnet can fake that in regtest.
        eprintln!("skipping the re-publication at a higher estimate: the fee estimate is devnet-only");
        net.stop().expect("stop");
        return;
    }
    net.lab.chain.set_fee_estimate(Some(12.0)).expect("estimate");
    drive(
        &net,
        &own.server,
        || true,
        || {
            let f = net
                .rt
                .block_on(own.server.loop_out.swap(&id))
                .expect("swap")
                .1
                .funding
                .expect("funding");
            f != original && !outputs_paying(&net, &htlc.script_pubkey(), created).is_empty()
        },
    );
    net.mine(1).expect("mine");
    net.lab.chain.set_fee_estimate(None).expect("estimate");
    let funding = net
        .rt
        .block_on(own.server.loop_out.swap(&id))
        .expect("swap")
        .1
        .funding
        .expect("funding");
    assert_eq!(funding.vout, original.vout);
    let outs = outputs_paying(&net, &htlc.script_pubkey(), created);
    assert_eq!(outs, vec![funding], "exactly one output ever pays the HTLC script");
    let replacement_fee = fee_of(&net, &funding.txid);
    let tx = net
        .rt
        .block_on(net.chain.transaction(&funding.txid))
        .expect("rpc")
        .expect("tx");
    assert!(tx.block.is_some(), "the replacement confirmed");
    assert!(
        replacement_fee.to_sat() * 1000 / tx.tx.weight().to_wu() >= 2_500,
        "paid at least the mempool floor"
    );
    let (_, claim_fee) = claim_out(&net, &k, &htlc, funding, amount, p);
    drive(
        &net,
        &own.server,
        || false,
        || out_state(&net, &own.server, &id) == OutState::Succeeded,
    );
    net.mine(1).expect("mine");
    let invoice_sat = offer_invoice_sat(&net, &offer);
    wait_channels(&net, server_ln0 + invoice_sat + 1_000, client_ln0 - invoice_sat - 1_000);
    assert_eq!(wallet(&net, &own.server), wallet0 - amount - replacement_fee);
    eddy_lab::wait_until("claim", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 + (amount - claim_fee).to_sat()
    })
    .expect("the attacker got the HTLC less its claim fee");
    net.stop().expect("stop");
}

/// **Refund co-sign requests for other outpoints, and replays.** The attacker underpays a
/// loop-in (the server will not pay: refundable), then asks the server to co-sign "refunds"
/// spending another output of the funding transaction and spending the HTLC together with
/// another coin: refused. It replays a valid request: each answer is a fresh co-signature for
/// the same refund, nothing else changes; the refund confirms. Server: channel and wallet
/// unchanged, nothing paid; attacker: its funding back less the refund fee.
#[test]
fn attack_refund_cosign_for_other_outpoints_and_replays() {
    use eddy_core::htlc::Htlc;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let amount = Amount::from_sat(80_000);
    let invoice_msat = net.server.loop_in.quote(amount).expect("quote").invoice_amount.to_sat() * 1000;
    let p = Preimage::from_bytes([0x31; 32]);
    let (k, pk) = key(0x41);
    let (s, offer) = h.loop_in(&net, amount.to_sat(), &invoice(&net, &p, invoice_msat), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = in_htlc(&offer, p.payment_hash(), &pk);
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let chain0 = onchain(&net.client_ln);
    let short = amount - Amount::from_sat(1);
    let op = fund(&net, &htlc, short);
    net.mine(1).expect("mine");
    drive(
        &net,
        &net.server,
        || false,
        || in_state(&net, &net.server, &id) == InState::Refundable(RefundReason::Underpaid),
    );
    let Htlc::Taproot(_) = &htlc else { panic!("taproot") };
    let nonce = "02".repeat(66);
    let refund = |inputs: Vec<bitcoin::OutPoint>| {
        let tx = bitcoin::Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: inputs
                .into_iter()
                .map(|o| bitcoin::TxIn {
                    previous_output: o,
                    ..Default::default()
                })
                .collect(),
            output: vec![bitcoin::TxOut {
                value: Amount::from_sat(70_000),
                script_pubkey: address(&net),
            }],
        };
        let body = json!({"nonce": nonce, "tx": bitcoin::consensus::encode::serialize_hex(&tx)}).to_string();
        h.signed(
            &net,
            &k,
            &id,
            "POST",
            &format!("/v1/swaps/{id}/refund-cosign"),
            Some(body),
        )
    };
    let other = bitcoin::OutPoint {
        txid: op.txid,
        vout: op.vout ^ 1,
    };
    let (s, v) = refund(vec![other]);
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("this swap's HTLC"), "{v}");
    let (s, v) = refund(vec![op, other]);
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("exactly the HTLC"), "{v}");
    // Replays of a valid request: fresh nonces, no other effect.
    let (s1, a) = refund(vec![op]);
    let (s2, b) = refund(vec![op]);
    assert_eq!((s1, s2), (200, 200), "{a} {b}");
    assert_ne!(a["nonce"], b["nonce"]);
    assert_eq!(
        in_state(&net, &net.server, &id),
        InState::Refundable(RefundReason::Underpaid)
    );
    let (tx, fee) = cooperative_refund(&net, &h, &k, &id, &htlc, op, short).expect("co-signed");
    assert_eq!(tx.input[0].previous_output, op);
    net.mine(1).expect("mine");
    drive(
        &net,
        &net.server,
        || false,
        || in_state(&net, &net.server, &id) == InState::Refunded,
    );
    assert_eq!(payment(&net, &p.payment_hash()), PaymentStatus::Unknown, "nothing paid");
    wait_channels(&net, server_ln0, client_ln0);
    assert_eq!(wallet(&net, &net.server), wallet0);
    eddy_lab::wait_until("refund", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 + (short - fee).to_sat()
    })
    .expect("the attacker got its funding back less the refund fee");
    net.stop().expect("stop");
}

/// The attacker's own coin-and-key wallet (the server's wallet type with the attacker's seed): a
/// confirmed coin of `value` it can spend twice.
fn attacker_wallet(net: &Swapnet, value: Amount) -> (eddy_server::wallet::SwapWallet, eddy_backends::WatchStatus) {
    let dir = net.dir.join("attacker-wallet");
    std::fs::create_dir_all(&dir).expect("dir");
    let keys = eddy_store::SeedKeys::load_or_create(&dir, "attacker-seed").expect("seed");
    let w = eddy_server::wallet::SwapWallet::new(&keys, bitcoin::Network::Regtest);
    let txid = net.lab.chain.fund(w.address(), value).expect("fund");
    net.mine(1).expect("mine");
    let tx = net
        .rt
        .block_on(net.chain.transaction(&txid))
        .expect("rpc")
        .expect("tx")
        .tx;
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == *w.script_pubkey())
        .expect("output");
    let seen = eddy_backends::WatchStatus {
        fundings: vec![eddy_backends::Funding {
            outpoint: bitcoin::OutPoint {
                txid,
                vout: vout as u32,
            },
            script_pubkey: w.script_pubkey().clone(),
            value,
            height: Some(net.lab.chain.tip().expect("tip").0),
        }],
        spends: vec![],
    };
    (w, seen)
}

/// **Review #2: a decoy publication.** The attacker broadcasts its own transaction paying the
/// exact amount to the loop-out HTLC's script (unconfirmed), then pays both invoices: the old
/// engine adopted that output as its publication (no transaction of its own), the attacker
/// double-spent the decoy and the swap sat `Published`, then `Refunding` forever on an output
/// that no longer existed, holding a slot. Now the server takes only its own transaction: it
/// publishes its HTLC beside the decoy, the decoy is double-spent, the attacker claims the
/// server's output, the swap succeeds. Server: wallet less the amount and its publication fee,
/// channel plus the invoice and the prepay; attacker: channel less both; no slot held.
#[test]
fn attack_decoy_output_of_the_exact_amount_is_never_adopted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let (w, seen) = attacker_wallet(&net, Amount::from_sat(300_000));
    let p = Preimage::from_bytes([0x41; 32]);
    let (k, pk) = key(0x42);
    let amount = Amount::from_sat(95_000);
    let created = net.lab.chain.tip().expect("tip").0;
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let (s, offer) = h.loop_out(&net, amount.to_sat(), p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = out_htlc(&offer, p.payment_hash(), &pk);
    // The decoy: exactly the amount to the HTLC's script, in the mempool.
    let decoy = w
        .pay(
            &seen,
            &[bitcoin::TxOut {
                value: amount,
                script_pubkey: htlc.script_pubkey(),
            }],
            bitcoin::FeeRate::from_sat_per_vb(2).expect("rate"),
        )
        .expect("decoy");
    net.lab.chain.broadcast(&decoy).expect("decoy broadcast");
    let _ = net.rt.block_on(net.server.tick());
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &net.server,
        || false,
        || matches!(out_state(&net, &net.server, &id), OutState::Published { .. }),
    );
    let rec = net.rt.block_on(net.server.loop_out.swap(&id)).expect("swap").1;
    let funding = rec.funding.expect("funding");
    assert_ne!(
        funding.txid,
        decoy.compute_txid(),
        "the server took the attacker's decoy for its publication"
    );
    assert_eq!(rec.htlc_txids, vec![funding.txid], "its own transaction, stored");
    // The attacker double-spends its decoy (a fresh view of its coin: the same input).
    let back = eddy_server::wallet::SwapWallet::new(
        &eddy_store::SeedKeys::load_or_create(&net.dir.join("attacker-wallet"), "attacker-seed").expect("seed"),
        bitcoin::Network::Regtest,
    )
    .pay(
        &seen,
        &[bitcoin::TxOut {
            value: Amount::from_sat(150_000),
            script_pubkey: address(&net),
        }],
        bitcoin::FeeRate::from_sat_per_vb(30).expect("rate"),
    )
    .expect("double spend");
    net.lab.chain.broadcast(&back).expect("double spend broadcast");
    net.mine(1).expect("mine");
    for _ in 0..3 {
        net.rt.block_on(net.server.tick()).expect("tick");
    }
    assert_eq!(
        outputs_paying(&net, &htlc.script_pubkey(), created),
        vec![funding],
        "only the server's own output pays the script now"
    );
    assert!(matches!(out_state(&net, &net.server, &id), OutState::Published { .. }));
    claim_out(&net, &k, &htlc, funding, amount, p);
    net.mine(1).expect("mine");
    drive(
        &net,
        &net.server,
        || false,
        || out_state(&net, &net.server, &id) == OutState::Succeeded,
    );
    let publish_fee = fee_of(&net, &funding.txid);
    let invoice_sat = offer_invoice_sat(&net, &offer);
    let prepay = net.server.loop_out.quote(amount).expect("quote").prepay.to_sat();
    wait_channels(
        &net,
        server_ln0 + invoice_sat + prepay,
        client_ln0 - invoice_sat - prepay,
    );
    assert_eq!(wallet(&net, &net.server), wallet0 - amount - publish_fee);
    net.stop().expect("stop");
}

/// The attacker's half of the loop-in's cooperative claim: asks for the claim session (`GET
/// /claim`), co-signs its input of the server's claim (a batch: the input and prevouts named,
/// its own prevout checked) and posts its partial signature. The status and body of the first
/// refused call, if any.
fn cosign_claim(
    net: &Swapnet,
    h: &Hostile,
    key: &bitcoin::secp256k1::SecretKey,
    id: &SwapId,
    htlc: &eddy_core::htlc::Htlc,
    value: Amount,
) -> Result<(), (u16, Value)> {
    use bitcoin::hex::DisplayHex;
    let (s, v) = h.signed(net, key, id, "GET", &format!("/v1/swaps/{id}/claim"), None);
    if s != 200 {
        return Err((s, v));
    }
    let offer: eddy_core::api::ClaimOffer = serde_json::from_value(v).expect("offer");
    let (nonce, tx, index, prevouts) = eddy_core::api::parse_claim_offer(&offer).expect("offer");
    let ours = bitcoin::TxOut {
        value,
        script_pubkey: htlc.script_pubkey(),
    };
    let prevouts = prevouts.unwrap_or_else(|| vec![ours.clone()]);
    assert_eq!(prevouts[index], ours, "our input's prevout");
    let msg = eddy_core::tx::cooperative_sighash_at(&tx, index, &prevouts).expect("sighash");
    let eddy_core::htlc::Htlc::Taproot(t) = htlc else {
        panic!("taproot")
    };
    let (ours, partial) = eddy_core::musig::cosign(t, key, msg, &id.0, &nonce).expect("cosign");
    let body = json!({"nonce": ours.to_lower_hex_string(), "partial_sig": partial.to_lower_hex_string()}).to_string();
    let (s, v) = h.signed(
        net,
        key,
        id,
        "POST",
        &format!("/v1/swaps/{id}/claim-cosign"),
        Some(body),
    );
    if !(200..300).contains(&s) {
        return Err((s, v));
    }
    Ok(())
}

/// **Review #9: a client that co-signs the cooperative claim every block cannot hold the
/// claim's fee down.** Fees rose: the mempool drops anything paying the server's wallet below
/// 10 sat/vB, while the estimate stays at the devnet's default. The server paid the attacker's
/// invoice; at every block, before the server's pass, the attacker asks for the cooperative
/// claim and co-signs it (another session on the round it co-signed is refused). Each claim
/// round pays the script-path schedule's next rate — also after a round the mempool refused
/// (issue 17: a refused round's rate is what the next must outbid) — so the claim escalates
/// one bump per block through the floor and confirms well before `E` (before the fix the cooperative claim
/// paid the bare estimate and its record suppressed the server's bump: the claim never got in
/// and the attacker would refund by the timeout path at `E`). Server: wallet + amount − claim
/// fee (≥ the floor), channel − invoice; attacker: channel + invoice, its funding spent by the
/// server's claim.
#[test]
fn attack_cooperative_claim_every_block_cannot_hold_the_claim_fee_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let floor = Arc::new(LosesOneBroadcast::new(net.chain.clone()));
    let own = own_server(
        &net,
        "cosigning",
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(1_000),
        None,
        Some(floor.clone()),
        &[],
    );
    let h = Hostile::new(&own.http.url());
    let amount = Amount::from_sat(90_000);
    let invoice_sat = own.server.loop_in.quote(amount).expect("quote").invoice_amount.to_sat();
    let p = Preimage::from_bytes([0x41; 32]);
    let (k, pk) = key(0x42);
    let (s, offer) = h.loop_in(&net, amount.to_sat(), &invoice(&net, &p, invoice_sat * 1000), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = in_htlc(&offer, p.payment_hash(), &pk);
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    let floor_rate = bitcoin::FeeRate::from_sat_per_kwu(2_500);
    *floor.min_fee.lock().expect("lock") = Some((own.server.wallet_address().script_pubkey(), floor_rate));
    let op = fund(&net, &htlc, amount);
    net.mine(1).expect("mine");
    drive(
        &net,
        &own.server,
        || false,
        || matches!(in_state(&net, &own.server, &id), InState::Claiming { .. }),
    );
    let expiry = net
        .rt
        .block_on(own.server.loop_in.swap(&id))
        .expect("swap")
        .1
        .terms
        .expiry;
    let start = net.lab.chain.tip().expect("tip").0;
    let mut cosigned = 0;
    loop {
        net.rt.block_on(own.server.tick()).expect("tick");
        if in_state(&net, &own.server, &id) == InState::Succeeded {
            break;
        }
        let tip = net.lab.chain.tip().expect("tip").0;
        assert!(
            tip < start + 30 && tip < expiry,
            "the claim is still not confirmed {} blocks after the payment",
            tip - start
        );
        if cosign_claim(&net, &h, &k, &id, &htlc, amount).is_ok() {
            cosigned += 1;
        }
        // The block's claim round is co-signed: no other session in it (the round, not the
        // client, sets the fee).
        let (s, v) = h.signed(&net, &k, &id, "GET", &format!("/v1/swaps/{id}/claim"), None);
        if matches!(in_state(&net, &own.server, &id), InState::Claiming { .. }) {
            assert_eq!(s, 400, "{v}");
        }
        net.rt.block_on(own.server.tick()).expect("tick");
        net.mine(1).expect("mine");
    }
    assert!(cosigned >= 2, "the attacker co-signed every block ({cosigned})");
    let claim = net
        .rt
        .block_on(own.server.loop_in.swap(&id))
        .expect("swap")
        .1
        .claim
        .expect("claim");
    let confirmed = net
        .rt
        .block_on(net.chain.transaction(&claim.last().expect("sweep broadcast")))
        .expect("rpc")
        .expect("claim");
    assert!(confirmed.block.is_some(), "the recorded claim is the confirmed one");
    assert_eq!(confirmed.tx.input[0].previous_output, op);
    let claim_fee = fee_of(&net, &claim.last().expect("sweep broadcast"));
    assert!(
        claim_fee.to_sat() * 1000 / confirmed.tx.weight().to_wu() >= floor_rate.to_sat_per_kwu(),
        "paid at least the mempool floor"
    );
    wait_channels(&net, server_ln0 - invoice_sat, client_ln0 + invoice_sat);
    assert_eq!(wallet(&net, &own.server), wallet0 + amount - claim_fee);
    net.stop().expect("stop");
}

/// The attacker's loop-in of `sat` through the HTTP API, for an ordinary invoice of its node
/// with preimage `[seed; 32]` and refund key `key(seed + 4)`: (id, refund key, HTLC, amount,
/// invoice sat, preimage).
fn in_offer(
    net: &Swapnet,
    h: &Hostile,
    sat: u64,
    seed: u8,
) -> (
    SwapId,
    bitcoin::secp256k1::SecretKey,
    eddy_core::htlc::Htlc,
    Amount,
    u64,
    Preimage,
) {
    let amount = Amount::from_sat(sat);
    let invoice_sat = net.server.loop_in.quote(amount).expect("quote").invoice_amount.to_sat();
    let p = Preimage::from_bytes([seed; 32]);
    let (k, pk) = key(seed + 4);
    let (s, offer) = h.loop_in(net, sat, &invoice(net, &p, invoice_sat * 1000), &pk);
    assert_eq!(s, 201, "{offer}");
    let htlc = in_htlc(&offer, p.payment_hash(), &pk);
    (SwapId::from(p.payment_hash()), k, htlc, amount, invoice_sat, p)
}

/// Passes until every swap of `ids` is paid (`claiming`) and the claim round offered takes them
/// all; the round.
fn until_round(net: &Swapnet, ids: &[SwapId]) -> eddy_server::loop_in_claims::ClaimRoundView {
    drive(
        net,
        &net.server,
        || false,
        || {
            ids.iter()
                .all(|id| matches!(in_state(net, &net.server, id), InState::Claiming { .. }))
                && net
                    .server
                    .loop_in
                    .claim_round()
                    .is_some_and(|r| r.members.len() == ids.len())
        },
    );
    net.server.loop_in.claim_round().expect("round")
}

/// **Issue 17: the loop-in claims batched; a client that stalls holds up nobody.** Three
/// loop-ins funded in one block are paid in one pass; the server's pass offers one claim round
/// spending all three HTLCs on the key path. Two clients co-sign; the third opens its session
/// and vanishes. Within the round's block nothing is broadcast (the round waits for its
/// clients); at the next block the round goes out as it is: the two co-signed inputs on the key
/// path, the stalled one on its script path (the server's signature and the preimage) in the
/// **same** transaction, whose fee the three shares add up to exactly. Server: wallet + the
/// three amounts − that one fee, channel − the three invoices; clients: channel + the invoices.
#[test]
fn attack_claim_round_a_stalling_client_holds_up_nobody() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let mut swaps = vec![];
    for (n, sat) in [70_000u64, 80_000, 90_000].into_iter().enumerate() {
        let (id, k, htlc, amount, invoice_sat, p) = in_offer(&net, &h, sat, 0x70 + n as u8);
        let op = fund(&net, &htlc, amount);
        swaps.push((id, k, htlc, op, amount, invoice_sat, p));
    }
    net.mine(1).expect("mine");
    let round = until_round(&net, &swaps.iter().map(|s| s.0).collect::<Vec<_>>());
    assert!(
        round.members.iter().all(|&(_, key_path, signed)| key_path && !signed),
        "{round:?}"
    );
    for s in &swaps[..2] {
        cosign_claim(&net, &h, &s.1, &s.0, &s.2, s.4).expect("co-signed");
    }
    let stalled = &swaps[2];
    let (s, v) = h.signed(
        &net,
        &stalled.1,
        &stalled.0,
        "GET",
        &format!("/v1/swaps/{}/claim", stalled.0),
        None,
    );
    assert_eq!(s, 200, "{v}");
    // Within the round's block nothing goes out: the round waits for its third client.
    net.rt.block_on(net.server.tick()).expect("tick");
    let waiting = net.server.loop_in.claim_round().expect("still offered");
    assert_eq!((waiting.tip, waiting.txid), (round.tip, round.txid));
    assert_eq!(waiting.members.iter().filter(|m| m.2).count(), 2);
    for s in &swaps {
        assert!(net
            .rt
            .block_on(net.server.loop_in.swap(&s.0))
            .expect("swap")
            .1
            .claim
            .is_none());
    }
    // The next block: the round as it is, the stalled input on its script path.
    net.mine(1).expect("mine");
    net.rt.block_on(net.server.tick()).expect("tick");
    let tx = net
        .rt
        .block_on(net.chain.transaction(&round.txid))
        .expect("rpc")
        .expect("the round was broadcast")
        .tx;
    assert_eq!(tx.input.len(), 3);
    assert_eq!(tx.output.len(), 1, "one output to the swap wallet");
    for (n, (id, ..)) in round.members.iter().enumerate() {
        let s = swaps.iter().find(|s| s.0 == *id).expect("member");
        assert_eq!(tx.input[n].previous_output, s.3);
        if *id == stalled.0 {
            assert_eq!(tx.input[n].witness.len(), 4, "script path");
            assert_eq!(tx.input[n].witness.nth(1), Some(&stalled.6.expose_bytes()[..]));
        } else {
            assert_eq!(tx.input[n].witness.len(), 1, "key path");
        }
    }
    let fee = fee_of(&net, &round.txid);
    let mut shares = Amount::ZERO;
    for s in &swaps {
        let claim = net
            .rt
            .block_on(net.server.loop_in.swap(&s.0))
            .expect("swap")
            .1
            .claim
            .expect("claim");
        assert_eq!(claim.last(), Some(round.txid));
        shares += claim.share_of(&round.txid).expect("share");
    }
    assert_eq!(shares, fee, "the shares add up to the fee");
    let total: Amount = swaps.iter().map(|s| s.4).sum();
    assert_eq!(tx.output[0].value, total - fee);
    drive(
        &net,
        &net.server,
        || true,
        || {
            swaps
                .iter()
                .all(|s| in_state(&net, &net.server, &s.0) == InState::Succeeded)
        },
    );
    let invoices: u64 = swaps.iter().map(|s| s.5).sum();
    wait_channels(&net, server_ln0 - invoices, client_ln0 + invoices);
    assert_eq!(wallet(&net, &net.server), wallet0 + total - fee);
    net.stop().expect("stop");
}

/// **Issue 17: a client that co-signed the first claim round stalls on its bump.** Two loop-ins
/// paid together; both clients co-sign the first round, which goes to the mempool. A block
/// without it comes (its rate was low), and the server's bump is a new round replacing it; one
/// client co-signs, the other does not. Moved to its script path, the stalled input would make
/// the bump heavier than planned for the same fee — too little to replace the first round
/// (BIP125) — so at the next block the server sends, in the same pass, a round on the script
/// paths instead (never the heavier one), which replaces the first. Server: wallet + both
/// amounts − that round's fee (the first round replaced), channel − both invoices.
#[test]
fn attack_a_stall_on_a_bump_round_gets_a_script_path_round_in_the_same_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let mut swaps = vec![];
    for (n, sat) in [60_000u64, 65_000].into_iter().enumerate() {
        let (id, k, htlc, amount, invoice_sat, _) = in_offer(&net, &h, sat, 0x90 + n as u8);
        fund(&net, &htlc, amount);
        swaps.push((id, k, htlc, amount, invoice_sat));
    }
    net.mine(1).expect("mine");
    let first = until_round(&net, &swaps.iter().map(|s| s.0).collect::<Vec<_>>());
    for s in &swaps {
        cosign_claim(&net, &h, &s.1, &s.0, &s.2, s.3).expect("co-signed");
    }
    net.rt.block_on(net.server.tick()).expect("tick");
    let in_mempool = |txid: &bitcoin::Txid| {
        net.rt
            .block_on(net.chain.transaction(txid))
            .expect("rpc")
            .is_some_and(|t| t.block.is_none())
    };
    assert!(in_mempool(&first.txid), "the first round went out");
    // A block without it: the bump is a new round.
    net.lab.chain.mine_with(&[]).expect("empty block");
    drive(
        &net,
        &net.server,
        || false,
        || net.server.loop_in.claim_round().is_some_and(|r| r.txid != first.txid),
    );
    let bump = net.server.loop_in.claim_round().expect("bump round");
    assert!(
        bump.members.iter().all(|m| m.1),
        "both offered the key path again: {bump:?}"
    );
    let (staller, signer) = (&swaps[1], &swaps[0]);
    cosign_claim(&net, &h, &signer.1, &signer.0, &signer.2, signer.3).expect("co-signed");
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(
        net.server.loop_in.claim_round().map(|r| r.txid),
        Some(bump.txid),
        "waits its block"
    );
    // The next block: the bump with its stalled input on the script path would not replace the
    // first round; a round on the script paths goes instead, in this pass.
    net.lab.chain.mine_with(&[]).expect("empty block");
    net.rt.block_on(net.server.tick()).expect("tick");
    assert!(
        net.rt
            .block_on(net.chain.transaction(&bump.txid))
            .expect("rpc")
            .is_none(),
        "the heavier bump was never sent"
    );
    assert!(!in_mempool(&first.txid), "the first round was replaced");
    let recs: Vec<_> = swaps
        .iter()
        .map(|s| net.rt.block_on(net.server.loop_in.swap(&s.0)).expect("swap").1)
        .collect();
    let now = recs[0].claim.as_ref().and_then(|c| c.last()).expect("a new claim");
    assert_eq!(recs[1].claim.as_ref().and_then(|c| c.last()), Some(now));
    assert!(in_mempool(&now), "the script-path round is in the mempool");
    let tx = net
        .rt
        .block_on(net.chain.transaction(&now))
        .expect("rpc")
        .expect("tx")
        .tx;
    assert_eq!(tx.input.len(), 2);
    assert!(tx.input.iter().all(|i| i.witness.len() == 4), "both on the script path");
    let fee = fee_of(&net, &now);
    let first_fee = recs[0]
        .claim
        .as_ref()
        .and_then(|c| c.fee_of(&first.txid))
        .expect("recorded");
    assert!(fee > first_fee, "outbids the first round");
    // The staller opened no session in the bump's block: planned on its script path from now
    // on; the other client is offered the key path again.
    let (s, v) = h.signed(
        &net,
        &staller.1,
        &staller.0,
        "GET",
        &format!("/v1/swaps/{}/claim", staller.0),
        None,
    );
    assert_eq!(s, 400, "{v}");
    drive(
        &net,
        &net.server,
        || true,
        || {
            swaps
                .iter()
                .all(|s| in_state(&net, &net.server, &s.0) == InState::Succeeded)
        },
    );
    let claim = net
        .rt
        .block_on(net.server.loop_in.swap(&swaps[0].0))
        .expect("swap")
        .1
        .claim
        .expect("claim");
    let mined = claim
        .all
        .iter()
        .find(|t| {
            net.rt
                .block_on(net.chain.transaction(t))
                .expect("rpc")
                .is_some_and(|x| x.block.is_some())
        })
        .copied()
        .expect("a claim mined");
    let fee = fee_of(&net, &mined);
    let invoices = swaps[0].4 + swaps[1].4;
    wait_channels(&net, server_ln0 - invoices, client_ln0 + invoices);
    assert_eq!(wallet(&net, &net.server), wallet0 + swaps[0].3 + swaps[1].3 - fee);
    net.stop().expect("stop");
}

/// A transaction spending `coin` (a P2WPKH output of `key` holding `value`) to `outputs`,
/// signed: the attacker's own funding, which it can double-spend.
fn p2wpkh_spend(
    coin: bitcoin::OutPoint,
    value: Amount,
    key: &bitcoin::secp256k1::SecretKey,
    outputs: Vec<bitcoin::TxOut>,
) -> bitcoin::Transaction {
    use bitcoin::hashes::Hash;
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let pk = bitcoin::CompressedPublicKey(bitcoin::secp256k1::PublicKey::from_secret_key(&secp, key));
    let spk = bitcoin::ScriptBuf::new_p2wpkh(&pk.wpubkey_hash());
    let mut tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: coin,
            sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
            ..Default::default()
        }],
        output: outputs,
    };
    let sighash = bitcoin::sighash::SighashCache::new(&tx)
        .p2wpkh_signature_hash(0, &spk, value, bitcoin::EcdsaSighashType::All)
        .expect("sighash");
    let sig = secp.sign_ecdsa(&bitcoin::secp256k1::Message::from_digest(sighash.to_byte_array()), key);
    tx.input[0].witness = bitcoin::Witness::p2wpkh(&bitcoin::ecdsa::Signature::sighash_all(sig), &pk.0);
    tx
}

/// **Issue 17: a reorg takes one input out of the server's claim batch.** Two loop-ins, A and
/// B, funded in the same block; the server pays both and claims them in one round, co-signed
/// by both clients, mined. The attacker (B's client, with a miner) then reorgs the two blocks
/// away with B's funding double-spent in the new branch: the batch is gone with it, A's
/// funding is mined again, and A's HTLC is unspent. The server claims A again at once, by
/// itself (a new round, co-signed), at a rate above the lost batch's. Server: wallet + A − A's
/// new claim fee, channel − both invoices (B's payment is what a one-confirmation funding risks:
/// `LOOP_IN_SERVER_FUNDING_CONFS`); attackers: channel + both invoices. Left: B stays `Claiming`
/// (its output may come back in another reorg).
#[test]
fn attack_reorg_removes_one_input_of_the_claim_batch_and_the_rest_is_claimed_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let swaps: Vec<_> = [70_000u64, 80_000]
        .into_iter()
        .enumerate()
        .map(|(n, sat)| {
            let (id, k, htlc, amount, invoice_sat, _) = in_offer(&net, &h, sat, 0x80 + n as u8);
            (id, k, htlc, amount, invoice_sat)
        })
        .collect();
    let a = &swaps[0];
    let b = &swaps[1];
    let a_out = fund(&net, &a.2, a.3);
    // B is funded from a coin of the attacker's own key, which it can spend again.
    let (coin_key, coin_pk) = key(0x88);
    let coin_addr = bitcoin::Address::p2wpkh(&bitcoin::CompressedPublicKey(coin_pk), bitcoin::Network::Regtest);
    let coin_value = Amount::from_sat(100_000);
    let coin_txid = net.lab.chain.fund(&coin_addr, coin_value).expect("fund the coin");
    let coin_tx = net
        .rt
        .block_on(net.chain.transaction(&coin_txid))
        .expect("rpc")
        .expect("tx")
        .tx;
    let coin_vout = coin_tx
        .output
        .iter()
        .position(|o| o.script_pubkey == coin_addr.script_pubkey())
        .expect("coin");
    let coin = bitcoin::OutPoint::new(coin_txid, coin_vout as u32);
    net.mine(1).expect("mine the coin");
    let b_funding = p2wpkh_spend(
        coin,
        coin_value,
        &coin_key,
        vec![
            bitcoin::TxOut {
                value: b.3,
                script_pubkey: b.2.script_pubkey(),
            },
            bitcoin::TxOut {
                value: coin_value - b.3 - Amount::from_sat(1_000),
                script_pubkey: coin_addr.script_pubkey(),
            },
        ],
    );
    let double = p2wpkh_spend(
        coin,
        coin_value,
        &coin_key,
        vec![bitcoin::TxOut {
            value: coin_value - Amount::from_sat(2_000),
            script_pubkey: coin_addr.script_pubkey(),
        }],
    );
    net.rt.block_on(net.chain.broadcast(&b_funding)).expect("B funded");
    let b_out = bitcoin::OutPoint::new(b_funding.compute_txid(), 0);
    net.mine(1).expect("mine both fundings");
    let round = until_round(&net, &swaps.iter().map(|s| s.0).collect::<Vec<_>>());
    for s in &swaps {
        cosign_claim(&net, &h, &s.1, &s.0, &s.2, s.3).expect("co-signed");
    }
    // Co-signed by both: the next pass (at once, in a running server) broadcasts it.
    net.rt.block_on(net.server.tick()).expect("tick");
    let batch = net
        .rt
        .block_on(net.chain.transaction(&round.txid))
        .expect("rpc")
        .expect("broadcast")
        .tx;
    assert_eq!(batch.input.len(), 2);
    assert!(batch.input.iter().all(|i| i.witness.len() == 1), "both key path");
    let batch_rate = fee_of(&net, &round.txid).to_sat() * 1000 / batch.weight().to_wu();
    net.mine(1).expect("mine the batch");
    // Two blocks away: B's funding double-spent in the branch, the batch with it.
    net.lab
        .chain
        .reorg(2, 1, &[b_funding.compute_txid()], std::slice::from_ref(&double))
        .expect("reorg");
    assert!(
        net.rt
            .block_on(net.chain.transaction(&round.txid))
            .expect("rpc")
            .is_none(),
        "the batch is gone"
    );
    let a_funding = net
        .rt
        .block_on(net.chain.transaction(&a_out.txid))
        .expect("rpc")
        .expect("A funding");
    assert!(a_funding.block.is_some(), "A's funding mined again");
    // The server claims A again, by itself, at once: a new round for A alone.
    drive(
        &net,
        &net.server,
        || false,
        || net.server.loop_in.claim_round().is_some_and(|r| r.members.len() == 1),
    );
    let again = net.server.loop_in.claim_round().expect("round");
    assert_eq!(again.members[0].0, a.0);
    cosign_claim(&net, &h, &a.1, &a.0, &a.2, a.3).expect("co-signed");
    net.rt.block_on(net.server.tick()).expect("tick");
    let claim = net
        .rt
        .block_on(net.chain.transaction(&again.txid))
        .expect("rpc")
        .expect("broadcast")
        .tx;
    assert_eq!(claim.input.len(), 1);
    assert_eq!(claim.input[0].previous_output, a_out);
    let fee = fee_of(&net, &again.txid);
    assert!(
        fee.to_sat() * 1000 / claim.weight().to_wu() > batch_rate,
        "outbids the lost batch's rate"
    );
    drive(
        &net,
        &net.server,
        || true,
        || in_state(&net, &net.server, &a.0) == InState::Succeeded,
    );
    assert!(matches!(in_state(&net, &net.server, &b.0), InState::Claiming { .. }));
    assert!(
        net.rt
            .block_on(net.chain.transaction(&b_out.txid))
            .expect("rpc")
            .is_none(),
        "B's funding is gone"
    );
    let invoices = a.4 + b.4;
    wait_channels(&net, server_ln0 - invoices, client_ln0 + invoices);
    assert_eq!(wallet(&net, &net.server), wallet0 + a.3 - fee);
    net.stop().expect("stop");
}

/// **Review #8: a refund of another output does not end the server's claim.** The attacker
/// funds its loop-in twice: X of exactly the amount and Y (30,000 sat) — both confirmed. The
/// server pays against X (the shared rule's output) and goes down before claiming; the chain
/// passes `E`, the attacker refunds only Y by the timeout path, and the refund is 6 blocks
/// deep when the server comes back: it still claims X (before the fix any confirmed
/// non-own spend of any output ended `Claiming` as refunded, abandoning X though paid for).
/// Server: wallet + amount − claim fee, channel − invoice; attacker: channel + invoice,
/// on-chain + Y − its refund fee.
#[test]
fn attack_refund_of_another_output_does_not_end_the_claim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let amount = Amount::from_sat(80_000);
    let extra = Amount::from_sat(30_000);
    let invoice_sat = net.server.loop_in.quote(amount).expect("quote").invoice_amount.to_sat();
    let p = Preimage::from_bytes([0x43; 32]);
    let (k, pk) = key(0x44);
    let (s, offer) = h.loop_in(&net, amount.to_sat(), &invoice(&net, &p, invoice_sat * 1000), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = in_htlc(&offer, p.payment_hash(), &pk);
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let chain0 = onchain(&net.client_ln);
    let x = fund(&net, &htlc, amount);
    let y = fund(&net, &htlc, extra);
    net.mine(1).expect("mine");
    drive(
        &net,
        &net.server,
        || false,
        || matches!(in_state(&net, &net.server, &id), InState::Claiming { .. }),
    );
    let InState::Claiming { outpoint, .. } = in_state(&net, &net.server, &id) else {
        unreachable!()
    };
    assert_eq!(outpoint, x, "the server paid against the exact output");
    // The server is down; the chain passes E; the attacker refunds Y only.
    let expiry = net
        .rt
        .block_on(net.server.loop_in.swap(&id))
        .expect("swap")
        .1
        .terms
        .expiry;
    let tip = net.lab.chain.tip().expect("tip").0;
    net.mine(expiry - tip).expect("mine");
    let mut refund = build_spend(
        vec![HtlcInput {
            outpoint: y,
            value: extra,
            htlc: htlc.clone(),
            path: SpendPath::Refund,
        }],
        address(&net),
        FeeSpec::Rate(bitcoin::FeeRate::from_sat_per_kwu(500)),
    )
    .expect("spend");
    refund.sign(0, &k).expect("sign");
    let refund = refund.finalize().expect("finalize");
    net.rt
        .block_on(net.chain.broadcast(&refund.tx))
        .expect("refund broadcast");
    net.mine(7).expect("mine");
    // Back: the server claims X.
    drive(
        &net,
        &net.server,
        || true,
        || in_state(&net, &net.server, &id) == InState::Succeeded,
    );
    let claim = net
        .rt
        .block_on(net.server.loop_in.swap(&id))
        .expect("swap")
        .1
        .claim
        .expect("claim");
    let claim_tx = net
        .rt
        .block_on(net.chain.transaction(&claim.last().expect("sweep broadcast")))
        .expect("rpc")
        .expect("claim");
    assert!(claim_tx.block.is_some());
    assert_eq!(claim_tx.tx.input[0].previous_output, x);
    let claim_fee = fee_of(&net, &claim.last().expect("sweep broadcast"));
    wait_channels(&net, server_ln0 - invoice_sat, client_ln0 + invoice_sat);
    assert_eq!(wallet(&net, &net.server), wallet0 + amount - claim_fee);
    eddy_lab::wait_until("refund", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 + (extra - refund.fee).to_sat()
    })
    .expect("the attacker got Y back less its refund fee");
    net.stop().expect("stop");
}

/// **Review #15: a stranger's unconfirmed output of amount + 1 decides nothing.** The
/// attacker's exact funding X confirms; then a stranger broadcasts amount + 1 sat to the same
/// HTLC script (unconfirmed when the server looks). The server pays against X (not "overpaid"),
/// claims X, and ends `Succeeded`; the stranger's output stays the client's to refund. Server:
/// wallet + amount − claim fee, channel − invoice; attacker: channel + invoice.
#[test]
fn attack_unconfirmed_stranger_output_does_not_fail_the_loop_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let h = Hostile::new(&url(&net));
    let amount = Amount::from_sat(70_000);
    let invoice_sat = net.server.loop_in.quote(amount).expect("quote").invoice_amount.to_sat();
    let p = Preimage::from_bytes([0x45; 32]);
    let (_, pk) = key(0x46);
    let (s, offer) = h.loop_in(&net, amount.to_sat(), &invoice(&net, &p, invoice_sat * 1000), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = in_htlc(&offer, p.payment_hash(), &pk);
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let x = fund(&net, &htlc, amount);
    net.mine(1).expect("mine");
    let stranger = fund(&net, &htlc, amount + Amount::from_sat(1));
    net.rt.block_on(net.server.tick()).expect("tick");
    let state = in_state(&net, &net.server, &id);
    assert!(
        matches!(state, InState::Paying { .. } | InState::Claiming { .. }),
        "{state:?}"
    );
    drive(
        &net,
        &net.server,
        || true,
        || in_state(&net, &net.server, &id) == InState::Succeeded,
    );
    let claim = net
        .rt
        .block_on(net.server.loop_in.swap(&id))
        .expect("swap")
        .1
        .claim
        .expect("claim");
    let claim_tx = net
        .rt
        .block_on(net.chain.transaction(&claim.last().expect("sweep broadcast")))
        .expect("rpc")
        .expect("claim")
        .tx;
    assert_eq!(claim_tx.input.len(), 1);
    assert_eq!(claim_tx.input[0].previous_output, x);
    assert_ne!(claim_tx.input[0].previous_output, stranger);
    let claim_fee = fee_of(&net, &claim.last().expect("sweep broadcast"));
    wait_channels(&net, server_ln0 - invoice_sat, client_ln0 + invoice_sat);
    assert_eq!(wallet(&net, &net.server), wallet0 + amount - claim_fee);
    net.stop().expect("stop");
}

/// **Issue 13: a server whose Lightning node stopped following the chain takes no swaps.** The
/// node's best block freezes (as when ldk-node's sync died); the chain moves on 3 blocks: the
/// watchdog sees the node behind and the server refuses new loop-outs and loop-ins (503; the
/// metrics say why) — a node that does not see blocks cannot act before HTLC deadlines. When the node
/// catches up, swaps are taken again. The refused requests cost nothing: wallet and channel
/// unchanged until the one swap accepted afterwards is created (unpaid, it moves no money).
#[test]
fn attack_blind_node_takes_no_swaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let node = Arc::new(FaultyNode::new(net.server_ln.clone()));
    let own = own_server_on(
        &net,
        "blind",
        node.clone(),
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(20),
        None,
        None,
        &[400_000],
    );
    own.server.set_node_lag_grace(std::time::Duration::ZERO);
    let h = Hostile::new(&own.http.url());
    let wallet0 = net.rt.block_on(own.server.wallet_balance()).spendable;
    let ln0 = ln(&net.server_ln);
    let (_, pk) = key(0x81);
    // Following the chain: a loop-out is taken.
    let (s, v) = h.loop_out(&net, 60_000, Preimage::from_bytes([0x82; 32]).payment_hash(), &pk);
    assert_eq!(s, 201, "{v}");
    // The node freezes; the chain moves on.
    *node.frozen.lock().expect("lock") = Some(net.lab.chain.tip().expect("tip").0);
    net.mine(3).expect("mine");
    net.rt.block_on(own.server.tick()).expect("tick");
    assert!(own.server.node_lagging_for().is_some());
    let (s, v) = h.loop_out(&net, 60_000, Preimage::from_bytes([0x83; 32]).payment_hash(), &pk);
    assert_eq!(s, 503, "{v}");
    // Said so in the metrics (the refusal text stays generic, as every 503's).
    let m = own.server.metrics().render();
    assert!(m.contains("eddy_server_taking_swaps 0"), "{m}");
    assert!(m.contains("eddy_server_node_blocks_behind 3"), "{m}");
    let p = Preimage::from_bytes([0x84; 32]);
    let quote = own.server.loop_in.quote(Amount::from_sat(60_000)).expect("quote");
    let (s, v) = h.loop_in(
        &net,
        60_000,
        &invoice(&net, &p, quote.invoice_amount.to_sat() * 1000),
        &pk,
    );
    assert_eq!(s, 503, "{v}");
    // Caught up: taken again.
    *node.frozen.lock().expect("lock") = None;
    net.rt.block_on(own.server.tick()).expect("tick");
    assert!(own.server.node_lagging_for().is_none());
    assert!(own.server.metrics().render().contains("eddy_server_taking_swaps 1"));
    // The other way round: the chain source stops (the node is 3 blocks ahead of it).
    let tip = net.lab.chain.tip().expect("tip").0;
    *node.frozen.lock().expect("lock") = Some(tip + 3);
    net.rt.block_on(own.server.tick()).expect("tick");
    let (s, v) = h.loop_out(&net, 60_000, Preimage::from_bytes([0x86; 32]).payment_hash(), &pk);
    assert_eq!(s, 503, "{v}");
    *node.frozen.lock().expect("lock") = None;
    net.rt.block_on(own.server.tick()).expect("tick");
    assert!(own.server.node_lagging_for().is_none());
    let (s, v) = h.loop_out(&net, 60_000, Preimage::from_bytes([0x85; 32]).payment_hash(), &pk);
    assert_eq!(s, 201, "{v}");
    assert_eq!(wallet(&net, &own.server), wallet0);
    assert_eq!(ln(&net.server_ln), ln0);
    net.stop().expect("stop");
}

/// **Issue 13, found by the soak's per-swap accounting: a prepay settlement lost is made again
/// before the swap ends.** The server's node acknowledges the prepay's settlement at the HTLC
/// publication and does not make it (as when the server is killed before its node persisted
/// the claim). The client claims and the server settles the swap invoice; the swap must not
/// end `succeeded` with the prepay still only held (it would go back to the client when the
/// hold expired): the server settles it first. Its channel balance rises by exactly the
/// swap's fee and amount — prepay included.
#[test]
fn a_lost_prepay_settlement_is_made_again_before_the_swap_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let node = Arc::new(FaultyNode::new(net.server_ln.clone()));
    node.drop_settles.store(1, std::sync::atomic::Ordering::SeqCst);
    let own = own_server_on(
        &net,
        "lost-prepay",
        node.clone(),
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(20),
        None,
        None,
        &[400_000],
    );
    let seed = || eddy_store::SeedKeys::load_or_create(&net.dir, eddy_client::SEED_FILE).expect("seed");
    let api: Arc<dyn eddy_client::SwapServerApi> =
        Arc::new(eddy_client::HttpSwapServer::new(&own.http.url(), seed()).expect("api"));
    let client = net
        .rt
        .block_on(eddy_client::LoopOutClient::new(
            eddy::demo::client_config(),
            net.client_ln.clone(),
            net.chain.clone(),
            net.client_store.clone(),
            api,
            seed(),
        ))
        .expect("client");
    let amount = Amount::from_sat(100_000);
    let quote = own.server.loop_out.quote(amount).expect("quote");
    assert!(quote.prepay > Amount::ZERO);
    let server_ln0 = ln(&net.server_ln);
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("address")
        .script_pubkey();
    let id = net.rt.block_on(client.loop_out(amount, dest)).expect("loop-out");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let _ = net.rt.block_on(client.tick());
        let _ = net.rt.block_on(own.server.tick());
        let server_done = net.rt.block_on(own.server.loop_out.swap(&id)).expect("swap").1.state == OutState::Succeeded;
        let client_done = matches!(
            net.rt.block_on(client.swap(&id)).expect("swap").1.state,
            eddy_core::sm::loop_out_client::State::Succeeded { .. }
        );
        if server_done && client_done {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the swap never ended");
        net.mine(1).expect("mine");
    }
    assert_eq!(
        node.drop_settles.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a settlement was dropped"
    );
    wait_until_ln(&net, server_ln0 + (amount + quote.swap_fee).to_sat());
    assert_eq!(
        ln(&net.server_ln),
        server_ln0 + (amount + quote.swap_fee).to_sat(),
        "the swap invoice and the prepay"
    );
    net.stop().expect("stop");
}

/// Waits until the server's channel balance is `want` sat (a settlement takes a moment).
fn wait_until_ln(net: &Swapnet, want: u64) {
    let _ = eddy_lab::wait_until("server channel balance", eddy_lab::WAIT, || ln(&net.server_ln) == want);
}

/// A destination outside every wallet of the test (the operator's cold storage).
fn cold_storage() -> bitcoin::ScriptBuf {
    let (_, pk) = key(0x5c);
    bitcoin::ScriptBuf::new_p2wpkh(&bitcoin::CompressedPublicKey(pk).wpubkey_hash())
}

/// **Operator: `withdraw all` while a paid swap's publication is lost.** The server published
/// the HTLC of a paid loop-out and the mempool forgot it (it is broadcast again on the next
/// passes); the operator then withdraws everything. The withdrawal must take only the coins no
/// publication spends — the new 150,000-sat deposit, exactly, less nothing — or the
/// re-broadcast would be a double spend and the paid swap would fail after its prepay was
/// earned. Then the publication confirms and the swap succeeds. Server: swap wallet − HTLC −
/// publication fee (the deposit in, the withdrawal of exactly it out), channel + invoice +
/// prepay; the withdrawal: 150,000 sat to the destination and its fee, to the sat.
#[test]
fn operator_withdrawal_of_everything_never_takes_a_lost_publications_coins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let losing = Arc::new(LosesOneBroadcast::new(net.chain.clone()));
    let own = own_server(
        &net,
        "withdraw-race",
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(20),
        None,
        Some(losing.clone()),
        &[200_000],
    );
    let h = Hostile::new(&own.http.url());
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    assert_eq!(wallet0, Amount::from_sat(200_000));
    let created = net.lab.chain.tip().expect("tip").0;
    let p = Preimage::from_bytes([0x5a; 32]);
    let (k, pk) = key(0x5b);
    let amount = Amount::from_sat(60_000);
    let (s, offer) = h.loop_out(&net, amount.to_sat(), p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = out_htlc(&offer, p.payment_hash(), &pk);
    // Every broadcast of the publication is lost until the operator's withdrawal is made.
    losing.keep_losing.store(true, std::sync::atomic::Ordering::SeqCst);
    *losing.lose.lock().expect("lock") = Some(htlc.script_pubkey());
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &own.server,
        || false,
        || matches!(out_state(&net, &own.server, &id), OutState::Published { .. }),
    );
    let funding = net
        .rt
        .block_on(own.server.loop_out.swap(&id))
        .expect("swap")
        .1
        .funding
        .expect("funding");
    // A deposit arrives and confirms; the lost publication is not in the block.
    net.lab
        .chain
        .fund(own.server.wallet_address(), Amount::from_sat(150_000))
        .expect("fund");
    net.mine(1).expect("mine");
    assert!(outputs_paying(&net, &htlc.script_pubkey(), created).is_empty());
    // Everything: exactly the deposit (its value = amount + fee), never the 200,000-sat coin
    // the lost publication spends.
    let rate = bitcoin::FeeRate::from_sat_per_vb(2).expect("rate");
    let w = net
        .rt
        .block_on(own.server.withdraw(&cold_storage(), None, Some(rate)))
        .expect("withdraw all");
    assert_eq!(w.amount + w.fee, Amount::from_sat(150_000), "{w:?}");
    let wtx = net
        .rt
        .block_on(net.chain.transaction(&w.txid))
        .expect("rpc")
        .expect("in the mempool")
        .tx;
    let publication = net.rt.block_on(own.server.loop_out.swap(&id)).expect("swap").1;
    let pub_inputs: Vec<bitcoin::OutPoint> = publication
        .htlc_tx
        .as_deref()
        .map(|h| bitcoin::consensus::encode::deserialize_hex::<bitcoin::Transaction>(h).expect("tx"))
        .expect("stored publication")
        .input
        .iter()
        .map(|i| i.previous_output)
        .collect();
    assert!(
        wtx.input.iter().all(|i| !pub_inputs.contains(&i.previous_output)),
        "the withdrawal spent the publication's coin"
    );
    assert_eq!(fee_of(&net, &w.txid), w.fee);
    // Nothing more: a second `all` finds nothing free.
    let again = net.rt.block_on(own.server.withdraw(&cold_storage(), None, Some(rate)));
    assert!(
        matches!(&again, Err(e) if e.to_string().contains("nothing to withdraw")),
        "{again:?}"
    );
    // The publication is broadcast again and confirms; the client claims; the swap succeeds.
    *losing.lose.lock().expect("lock") = None;
    drive(
        &net,
        &own.server,
        || true,
        || outputs_paying(&net, &htlc.script_pubkey(), created) == vec![funding],
    );
    claim_out(&net, &k, &htlc, funding, amount, p);
    net.mine(1).expect("mine");
    drive(
        &net,
        &own.server,
        || false,
        || out_state(&net, &own.server, &id) == OutState::Succeeded,
    );
    let publish_fee = fee_of(&net, &funding.txid);
    let invoice_sat = offer_invoice_sat(&net, &offer);
    wait_channels(&net, server_ln0 + invoice_sat + 1_000, client_ln0 - invoice_sat - 1_000);
    assert_eq!(wallet(&net, &own.server), wallet0 - amount - publish_fee);
    net.stop().expect("stop");
}

/// **Operator: a deep wallet rescan while swaps run.** The rescan reads old blocks slowly (a
/// remote node); meanwhile a client starts a loop-out, pays, and the server publishes and
/// confirms its HTLC — the engine is not held by the rescan. The rescan then ends and replaces
/// the chain watcher: the swap created during it is still watched, so the client's claim is
/// seen and the swap succeeds; the deposit made before the server first ran is found. Server:
/// swap wallet = that deposit + funding − HTLC − publication fee; channel + invoice + prepay.
#[test]
fn operator_rescan_runs_beside_the_swaps_and_keeps_the_ones_made_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let slow = Arc::new(LosesOneBroadcast::new(net.chain.clone()));
    // A deposit to the swap wallet before the server ever ran (its address from its seed).
    let name = "rescan-beside";
    let keys = eddy_store::SeedKeys::load_or_create(&net.dir.join(name), eddy_server::SEED_FILE).expect("seed");
    let early = eddy_server::wallet::SwapWallet::new(&keys, bitcoin::Network::Regtest);
    net.lab
        .chain
        .fund(early.address(), Amount::from_sat(25_000))
        .expect("fund");
    net.mine(1).expect("mine");
    let deposit_height = net.lab.chain.tip().expect("tip").0;
    net.mine(3).expect("mine");
    let own = own_server(
        &net,
        name,
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(20),
        None,
        Some(slow.clone()),
        &[200_000],
    );
    let wallet0 = wallet(&net, &own.server);
    assert_eq!(wallet0, Amount::from_sat(200_000), "the early deposit is not seen yet");
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    // The rescan: every block up to the current tip reads slowly until released.
    let tip0 = net.lab.chain.tip().expect("tip").0;
    *slow.hold_blocks_upto.lock().expect("lock") = Some(tip0);
    let rescan = {
        let server = own.server.clone();
        net.rt.spawn(async move { server.rescan_wallet(deposit_height).await })
    };
    eddy_lab::wait_until("the rescan reading old blocks", eddy_lab::WAIT, || {
        slow.held.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .expect("rescan started");
    // A loop-out runs meanwhile: created, paid, published (its HTLC in the mempool).
    let h = Hostile::new(&own.http.url());
    let created = net.lab.chain.tip().expect("tip").0;
    let p = Preimage::from_bytes([0x5d; 32]);
    let (k, pk) = key(0x5e);
    let amount = Amount::from_sat(70_000);
    let (s, offer) = h.loop_out(&net, amount.to_sat(), p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = out_htlc(&offer, p.payment_hash(), &pk);
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &own.server,
        || false,
        || matches!(out_state(&net, &own.server, &id), OutState::Published { .. }),
    );
    let funding = net
        .rt
        .block_on(own.server.loop_out.swap(&id))
        .expect("swap")
        .1
        .funding
        .expect("funding");
    assert_eq!(outputs_paying(&net, &htlc.script_pubkey(), created), vec![funding]);
    assert!(!rescan.is_finished(), "the rescan ended before the test released it");
    // Released: the rescan reads the mempool (the HTLC's publication among it) before it
    // knows the swap; it then takes the swap, reading the mempool again with its watch, and
    // replaces the watcher.
    *slow.hold_blocks_upto.lock().expect("lock") = None;
    net.rt.block_on(rescan).expect("join").expect("rescan");
    // The claim, in the mempool like the HTLC, is seen through the new watcher without a
    // block: the swap succeeds.
    claim_out(&net, &k, &htlc, funding, amount, p);
    drive(
        &net,
        &own.server,
        || false,
        || out_state(&net, &own.server, &id) == OutState::Succeeded,
    );
    net.mine(1).expect("mine");
    let publish_fee = fee_of(&net, &funding.txid);
    let invoice_sat = offer_invoice_sat(&net, &offer);
    wait_channels(&net, server_ln0 + invoice_sat + 1_000, client_ln0 - invoice_sat - 1_000);
    assert_eq!(
        wallet(&net, &own.server),
        wallet0 + Amount::from_sat(25_000) - amount - publish_fee,
        "the early deposit found, the swap's coins spent once"
    );
    net.stop().expect("stop");
}
