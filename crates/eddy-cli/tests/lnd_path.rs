//! The swap server on LND (issue 18): the real server engine and HTTP API, with Eddy's LND
//! client in front of the LND emulator (`eddy_lnd_emu`, held to LND's rules) serving
//! the server's LDK node on the devnet; the client side is a real LDK node speaking the real
//! HTTP API. LND itself cannot run here (no binary in any registry this machine reaches): the
//! emulator's profile says which LND it behaves as.
//!
//! - A whole loop-out on LND 0.21 (hold expiry delta 18): the server asks invoices whose hold
//!   outlives `E + SERVER_SETTLE_MARGIN` by the node's *real* delta, read from the node.
//! - A loop-in whose sends LND refuses (a late funding leaves a CLTV budget at or below the
//!   invoice's final delta + 3): nothing is ever paid, through `E − 20` and past `E`; the client
//!   refunds.

#[path = "attacks_server/hostile.rs"]
mod hostile;

use std::sync::Arc;

use bitcoin::Amount;
use eddy::demo::{swapnet, Swapnet};
use eddy_backends::lnd::{LndConfig, LndNode};
use eddy_backends::{LightningNode, PaymentStatus};
use eddy_core::constants::{loop_in_last_payment_height, SERVER_SETTLE_MARGIN};
use eddy_core::sm::loop_in_server::{RefundReason, State as InState};
use eddy_core::sm::loop_out_server::State as OutState;
use eddy_core::types::{Preimage, SwapId};
use eddy_lnd_emu::{EmulatorOptions, LndEmulator, LndProfile};
use hostile::*;
use ldk_node::lightning_invoice::Bolt11Invoice;

fn net(dir: &std::path::Path) -> Swapnet {
    swapnet(dir, None, &|_| {}).expect("swapnet")
}

/// The emulator (as `profile`) in front of the server's node, and Eddy's LND client on it.
fn lnd(net: &Swapnet, profile: LndProfile, name: &str) -> (LndEmulator, Arc<LndNode>) {
    let emulator = net
        .rt
        .block_on(LndEmulator::start_with(
            net.server_ln.clone(),
            net.chain.clone(),
            &net.dir.join(name),
            EmulatorOptions::new(profile).invoice_key(net.server_ln.invoice_signing_key()),
        ))
        .expect("emulator");
    let client = net
        .rt
        .block_on(LndNode::connect(&LndConfig::new(
            emulator.address(),
            emulator.cert_path().to_path_buf(),
            emulator.macaroon_path().to_path_buf(),
        )))
        .expect("lnd client");
    (emulator, Arc::new(client))
}

/// A loop-out through LND 0.21: the swap invoice's final CLTV delta is `(E − tip) + 15 + 18 + 3`
/// (the delta read from the node, not assumed), the client pays both invoices, the server
/// publishes, the client claims, the server settles over LND. Server: channel + invoice +
/// prepay, wallet − amount − publication fee; client: channel − invoice − prepay, on-chain +
/// amount − claim fee.
#[test]
fn loop_out_on_lnd_0_21_settles_with_the_nodes_own_hold_delta() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let (_emulator, lnd_client) = lnd(&net, LndProfile::lnd_0_21(), "lnd-0.21");
    assert_eq!(lnd_client.settle_deadline_delta(), 18, "read from the node");
    let own = own_server_on(
        &net,
        "lnd-server",
        lnd_client.clone(),
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(20),
        None,
        None,
        &[400_000],
    );
    let h = Hostile::new(&own.http.url());
    let p = Preimage::from_bytes([0x61; 32]);
    let (k, pk) = key(0x62);
    let amount = Amount::from_sat(70_000);
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    let chain0 = onchain(&net.client_ln);
    let tip = net.lab.chain.tip().expect("tip").0;
    let (s, offer) = h.loop_out(&net, amount.to_sat(), p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = out_htlc(&offer, p.payment_hash(), &pk);
    let expiry = offer["expiry"].as_u64().expect("expiry") as u32;
    let swap_invoice: Bolt11Invoice = offer["swap_invoice"]
        .as_str()
        .expect("invoice")
        .parse()
        .expect("bolt11");
    assert_eq!(
        swap_invoice.min_final_cltv_expiry_delta(),
        u64::from((expiry - tip) + SERVER_SETTLE_MARGIN + 18 + 3),
        "the hold outlives E + margin by LND 0.21's delta"
    );
    pay(&net, offer["prepay_invoice"].as_str().expect("prepay"));
    pay(&net, offer["swap_invoice"].as_str().expect("invoice"));
    drive(
        &net,
        &own.server,
        || false,
        || {
            matches!(
                net.rt.block_on(own.server.loop_out.swap(&id)).expect("swap").1.state,
                OutState::Published { .. }
            )
        },
    );
    // The held HTLC's settle deadline, as the server reads it through LND, is expiry − 18.
    let held = net
        .rt
        .block_on(lnd_client.hold_invoice_state(&p.payment_hash()))
        .expect("state");
    let deadline = held.settle_deadline().expect("accepted");
    assert!(deadline >= expiry + SERVER_SETTLE_MARGIN, "{deadline} vs E {expiry}");
    let funding = net
        .rt
        .block_on(own.server.loop_out.swap(&id))
        .expect("swap")
        .1
        .funding
        .expect("funding");
    net.mine(1).expect("mine");
    let (_, claim_fee) = claim_out(&net, &k, &htlc, funding, amount, p);
    drive(
        &net,
        &own.server,
        || true,
        || net.rt.block_on(own.server.loop_out.swap(&id)).expect("swap").1.state == OutState::Succeeded,
    );
    let publish_fee = fee_of(&net, &funding.txid);
    let invoice_sat = swap_invoice.amount_milli_satoshis().expect("amount") / 1000;
    wait_channels(&net, server_ln0 + invoice_sat + 1_000, client_ln0 - invoice_sat - 1_000);
    assert_eq!(wallet(&net, &own.server), wallet0 - amount - publish_fee);
    eddy_lab::wait_until("claim", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 + (amount - claim_fee).to_sat()
    })
    .expect("the client got the HTLC less its claim fee");
    net.stop().expect("stop");
}

/// Item 1 of issue 18: a loop-in funded so late that every send's CLTV budget is at or below
/// the invoice's final delta (42, LDK's) + LND's padding of 3 — LND refuses such a send with a
/// plain error (the LND client refuses it first, nothing reaches LND; LND's own refusal through
/// the client is `lnd_emulator::lnd_refusals_statuses_and_gc_through_the_client`). The server
/// must never pay, not on any retry, not at `E − 20`, not after `E`:
/// the swap becomes refundable (payment failed) and the client refunds cooperatively. Server
/// channel unchanged and no payment record at its node; client: funding back less the refund
/// fee.
#[test]
fn loop_in_funded_too_late_for_lnds_cltv_rule_is_never_paid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let (emulator, lnd_client) = lnd(&net, LndProfile::lnd_0_21(), "lnd-0.21");
    let own = own_server_on(
        &net,
        "lnd-server",
        lnd_client.clone(),
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(20),
        None,
        None,
        &[],
    );
    let h = Hostile::new(&own.http.url());
    let amount = Amount::from_sat(60_000);
    let quote = own.server.loop_in.quote(amount).expect("quote");
    let p = Preimage::from_bytes([0x63; 32]);
    let (k, pk) = key(0x64);
    let bolt11 = net
        .rt
        .block_on(
            net.client_ln
                .create_invoice(&p, quote.invoice_amount.to_sat() * 1000, 7_200, "late funder"),
        )
        .expect("invoice")
        .bolt11;
    let final_delta = bolt11
        .parse::<Bolt11Invoice>()
        .expect("bolt11")
        .min_final_cltv_expiry_delta() as u32;
    let (s, offer) = h.loop_in(&net, amount.to_sat(), &bolt11, &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = in_htlc(&offer, p.payment_hash(), &pk);
    let expiry = offer["expiry"].as_u64().expect("expiry") as u32;
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let chain0 = onchain(&net.client_ln);
    // Fund so that the funding confirms where the budget `E − 20 − tip` is final + 3 − 1.
    let confirm_at = expiry - 20 - (final_delta + 3) + 1;
    assert!(
        confirm_at < loop_in_last_payment_height(expiry),
        "still a payment height"
    );
    let tip = net.lab.chain.tip().expect("tip").0;
    net.mine(confirm_at - 1 - tip).expect("mine");
    let op = fund(&net, &htlc, amount);
    net.mine(1).expect("mine");
    assert_eq!(net.lab.chain.tip().expect("tip").0, confirm_at);
    // Every attempt is refused; the server gives up after its attempts.
    drive(
        &net,
        &own.server,
        || false,
        || {
            matches!(
                net.rt.block_on(own.server.loop_in.swap(&id)).expect("loop-in").1.state,
                InState::Refundable(RefundReason::PaymentFailed)
            )
        },
    );
    let nothing = |what: &str| {
        assert_eq!(
            net.rt
                .block_on(lnd_client.payment_status(&p.payment_hash()))
                .expect("status"),
            PaymentStatus::Unknown,
            "{what}: LND has no payment for the hash"
        );
        assert_eq!(
            net.rt
                .block_on(net.server_ln.payment_status(&p.payment_hash()))
                .expect("status"),
            PaymentStatus::Unknown,
            "{what}: the node behind sent nothing"
        );
    };
    nothing("after the attempts");
    // Advance to E − 20, ticking: still nothing is sent.
    while net.lab.chain.tip().expect("tip").0 < expiry - 20 {
        let left = expiry - 20 - net.lab.chain.tip().expect("tip").0;
        net.mine(left.min(4)).expect("mine");
        let _ = net.rt.block_on(own.server.tick());
    }
    nothing("at E − 20");
    let (_, fee) = cooperative_refund(&net, &h, &k, &id, &htlc, op, amount).expect("co-signed");
    net.mine(1).expect("mine");
    wait_channels(&net, server_ln0, client_ln0);
    eddy_lab::wait_until("refund", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 + (amount - fee).to_sat()
    })
    .expect("the client got its funding back less the refund fee");
    // And past E: nothing, ever.
    while net.lab.chain.tip().expect("tip").0 < expiry + 2 {
        net.mine(4).expect("mine");
        let _ = net.rt.block_on(own.server.tick());
    }
    nothing("past E");
    drop(emulator);
    net.stop().expect("stop");
}

/// Review finding (issue 18): the last payment attempt's answer is lost (the node got the send;
/// LND registers a payment only after reading the request, and keeps paying when the caller
/// disconnects). Counting that as a failed attempt made the swap refundable while the payment
/// went out — the client paid *and* refundable, the server never claiming. Now an unknown
/// outcome is no attempt: the swap stays `Paying`, sees the payment, and claims. Server:
/// channel − invoice, wallet + amount − claim fee; client: channel + invoice.
#[test]
fn a_lost_answer_to_the_last_send_is_not_a_failed_attempt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let faulty = Arc::new(FaultyNode::new(net.server_ln.clone()));
    faulty.refusals.store(
        eddy_core::constants::LOOP_IN_PAY_ATTEMPTS - 1,
        std::sync::atomic::Ordering::SeqCst,
    );
    faulty.lose_next.store(true, std::sync::atomic::Ordering::SeqCst);
    let own = own_server_on(
        &net,
        "lost-answer",
        faulty,
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(20),
        None,
        None,
        &[],
    );
    let h = Hostile::new(&own.http.url());
    let amount = Amount::from_sat(70_000);
    let invoice_sat = own.server.loop_in.quote(amount).expect("quote").invoice_amount.to_sat();
    let p = Preimage::from_bytes([0x65; 32]);
    let (_, pk) = key(0x66);
    let bolt11 = net
        .rt
        .block_on(net.client_ln.create_invoice(&p, invoice_sat * 1000, 7_200, "client"))
        .expect("invoice")
        .bolt11;
    let (s, offer) = h.loop_in(&net, amount.to_sat(), &bolt11, &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let htlc = in_htlc(&offer, p.payment_hash(), &pk);
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    let x = fund(&net, &htlc, amount);
    net.mine(1).expect("mine");
    let state = |net: &Swapnet| net.rt.block_on(own.server.loop_in.swap(&id)).expect("loop-in").1.state;
    let mut seen = vec![];
    drive(
        &net,
        &own.server,
        || false,
        || {
            let s = state(&net);
            if !seen.contains(&format!("{s:?}")) {
                seen.push(format!("{s:?}"));
            }
            assert!(
                !matches!(s, InState::Refundable(_)),
                "refundable while the payment may go out: {seen:?}"
            );
            matches!(s, InState::Claiming { .. } | InState::Succeeded)
        },
    );
    drive(&net, &own.server, || true, || state(&net) == InState::Succeeded);
    let claim = net
        .rt
        .block_on(own.server.loop_in.swap(&id))
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
    assert_eq!(claim_tx.input[0].previous_output, x);
    let claim_fee = fee_of(&net, &claim.last().expect("sweep broadcast"));
    wait_channels(&net, server_ln0 - invoice_sat, client_ln0 + invoice_sat);
    assert_eq!(wallet(&net, &own.server), wallet0 + amount - claim_fee);
    net.stop().expect("stop");
}

/// **The node commands on LND** (`eddy node …` through the node API, as the server's admin
/// API or the daemon serve it, on LND behind the emulator): `info`, `channels`, `address`,
/// `invoice` and `pay` work through the same calls the engines use, with exact money both
/// ways; `connect`, `open`, `close` and `send` answer 501 and name LND's own command — no
/// half-working command, nothing spent.
#[test]
fn node_commands_on_lnd_work_or_name_lncli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let (_emulator, lnd) = lnd(&net, LndProfile::lnd_0_21(), "node-api");
    let api = Arc::new(eddy::node_api::NodeApi {
        ln: lnd.clone(),
        ldk: None,
        network: bitcoin::Network::Regtest,
        follow: None,
        chain: net.chain.clone(),
    });
    let http = net
        .rt
        .block_on(eddy_server::http::HttpServer::start(
            eddy::node_api::router::<()>(api),
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ))
        .expect("http");
    let call = |method: &str, path: &str, body: serde_json::Value| -> (u16, serde_json::Value) {
        net.rt.block_on(async {
            let c = reqwest::Client::new();
            let url = format!("{}{path}", http.url());
            let req = if method == "GET" {
                c.get(url)
            } else {
                c.post(url).json(&body)
            };
            let resp = req.send().await.expect("call");
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(serde_json::Value::Null))
        })
    };
    let server_id = net.rt.block_on(net.server_ln.info()).expect("info").pubkey;
    let client_id = net.rt.block_on(net.client_ln.info()).expect("info").pubkey;

    // info and channels: the node behind LND, its wallet and its one channel.
    let (s, info) = call("GET", "/v1/node", serde_json::Value::Null);
    assert_eq!(s, 200, "{info}");
    assert_eq!(info["node_id"], server_id.to_string());
    assert_eq!(info["network"], "regtest");
    assert_eq!(info["onchain_sat"], onchain(&net.server_ln), "{info}");
    assert_eq!(info["channels"].as_array().map(Vec::len), Some(1), "{info}");
    let chan = &info["channels"][0];
    assert_eq!(chan["peer"], client_id.to_string());
    let ldk_chan = net.server_ln.ldk().list_channels().remove(0);
    assert_eq!(chan["capacity_sat"], ldk_chan.channel_value_sats);
    assert_eq!(
        info["lightning_sat"],
        chan["local_msat"].as_u64().expect("local") / 1000
    );
    // address: one of the node's, for this network.
    let (s, a) = call("POST", "/v1/node/address", serde_json::json!({}));
    assert_eq!(s, 200, "{a}");
    let addr: bitcoin::Address<bitcoin::address::NetworkUnchecked> =
        a["address"].as_str().expect("address").parse().expect("parse");
    assert!(addr.is_valid_for_network(bitcoin::Network::Regtest));
    // invoice: the client pays it; exactly 10,000 sat move to the server.
    let (server0, client0) = (ln(&net.server_ln), ln(&net.client_ln));
    let (s, inv) = call("POST", "/v1/node/invoice", serde_json::json!({"amount_sat": 10_000}));
    assert_eq!(s, 200, "{inv}");
    pay(&net, inv["invoice"].as_str().expect("invoice"));
    wait_channels(&net, server0 + 10_000, client0 - 10_000);
    // pay: the server pays the client's invoice of 7,000 sat over their channel (no fee).
    let client_inv = net
        .rt
        .block_on(
            net.client_ln
                .create_invoice(&Preimage::from_bytes([0x71; 32]), 7_000_000, 3_600, "check"),
        )
        .expect("invoice")
        .bolt11;
    let (s, paid) = call("POST", "/v1/node/pay", serde_json::json!({"invoice": client_inv}));
    assert_eq!(s, 200, "{paid}");
    assert_eq!(paid["status"], "succeeded", "{paid}");
    assert_eq!(paid["fee_msat"], 0);
    wait_channels(&net, server0 + 3_000, client0 - 3_000);
    // The rest is LND's own tools: 501, the command named, nothing done.
    let onchain0 = onchain(&net.server_ln);
    for (path, body, lncli) in [
        (
            "/v1/node/connect",
            serde_json::json!({"peer": format!("{client_id}@127.0.0.1:9735")}),
            "lncli connect",
        ),
        (
            "/v1/node/open",
            serde_json::json!({"peer": client_id.to_string(), "amount_sat": 100_000}),
            "lncli openchannel",
        ),
        (
            "/v1/node/close",
            serde_json::json!({"channel_id": chan["short_channel_id"].to_string()}),
            "lncli closechannel",
        ),
        (
            "/v1/node/send",
            serde_json::json!({"address": a["address"], "amount_sat": 10_000}),
            "lncli sendcoins",
        ),
    ] {
        let (s, v) = call("POST", path, body);
        assert_eq!(s, 501, "{path}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| e.contains(lncli)), "{path}: {v}");
    }
    assert_eq!(onchain(&net.server_ln), onchain0, "nothing spent");
    assert_eq!(net.server_ln.ldk().list_channels().len(), 1, "nothing opened or closed");
    net.stop().expect("stop");
}
