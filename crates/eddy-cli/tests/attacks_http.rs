//! Attacks on the swap server's HTTP layer (issue 12, independent review #4, #5, #11, #14): a
//! hostile client (`attacks_server/hostile.rs`) floods offers from one address or one IPv6
//! /64, asks for co-signatures in a loop, opens event streams without end, and probes for work
//! the server does before looking a swap up. Real server engine and HTTP on the devnet with real
//! LDK nodes; each test asserts the money of both sides to the satoshi.

#[path = "attacks_server/hostile.rs"]
mod hostile;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bitcoin::{Amount, OutPoint, Transaction};
use eddy::demo::{swapnet, Swapnet};
use eddy_backends::lightning::HoldInvoiceRequest;
use eddy_backends::LightningNode;
use eddy_core::constants::{
    LOOP_IN_UNFUNDED_OFFER_BLOCKS, UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT, UNFUNDED_LOOP_IN_OFFERS_PER_SLOT,
    UNPAID_OFFERS_PER_CLIENT,
};
use eddy_core::sm::loop_in_server::State as InState;
use eddy_core::sm::loop_out_server::State as OutState;
use eddy_core::types::{PaymentHash, Preimage, SwapId};
use hostile::*;
use serde_json::{json, Value};

fn net(dir: &std::path::Path) -> Swapnet {
    swapnet(dir, None, &|_| {}).expect("swapnet")
}

/// The swap invoice's amount (sat) of a loop-out offer.
fn offer_invoice_sat(offer: &Value) -> u64 {
    let inv: ldk_node::lightning_invoice::Bolt11Invoice = offer["swap_invoice"]
        .as_str()
        .expect("invoice")
        .parse()
        .expect("bolt11");
    inv.amount_milli_satoshis().expect("amount") / 1000
}

/// Behind the trusted proxy (127.0.0.1): the request comes from `ip`, as the proxy writes it.
fn from(ip: &str) -> Vec<(&'static str, String)> {
    vec![("x-forwarded-for", ip.to_string())]
}

fn behind_proxy(per_minute: usize) -> eddy_server::http::Limits {
    eddy_server::http::Limits {
        trusted_proxy: Some("127.0.0.1".parse().expect("ip")),
        ..eddy_server::http::Limits::new(per_minute)
    }
}

/// A loop-out creation body for a fresh hash.
fn out_body(n: u16, amount: u64) -> String {
    let mut b = [0x11; 32];
    b[..2].copy_from_slice(&n.to_be_bytes());
    let p = Preimage::from_bytes(b);
    json!({"amount": amount, "payment_hash": p.payment_hash().to_string(), "claim_key": key(0x51).1.to_string()})
        .to_string()
}

/// **Review #4: one address exhausting the unpaid-offer budget.** A server taking 3 swaps at a
/// time has a global budget of 12 live unpaid offers. One IPv4 address (generous per-minute
/// limit: it could be a busy NAT) makes loop-out offers it never pays, then seed-protocol
/// offers; one IPv6 /64 does the same from ten different addresses of its network. Each gets
/// exactly `UNPAID_OFFERS_PER_CLIENT` offers, then 429 — before the fix the first address alone
/// took all 12 and an honest client got 503. An honest client at another address still gets
/// an offer and completes its swap. Server: channel + invoice + prepay, wallet − amount −
/// publication fee; honest client: channel − invoice − prepay, on-chain + amount − claim fee.
#[test]
fn attack_offer_flood_from_one_address_leaves_room_for_an_honest_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let cfg = eddy_server::ServerConfig {
        max_active_swaps: 3,
        ..eddy::demo::server_config()
    };
    let own = own_server(&net, "flooded", cfg, behind_proxy(100), None, None, &[400_000]);
    let h = Hostile::new(&own.http.url());
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    let chain0 = onchain(&net.client_ln);
    let flood = |who: &dyn Fn(u16) -> String, first: u16| -> (usize, usize) {
        let (mut made, mut refused) = (0, 0);
        for n in first..first + 10 {
            let (s, v) = h.call(&net, "POST", "/v1/loop-out", &from(&who(n)), Some(out_body(n, 100_000)));
            match s {
                201 => made += 1,
                429 => {
                    assert!(
                        v["error"]
                            .as_str()
                            .unwrap_or("")
                            .contains("live unpaid loop-out offers"),
                        "{v}"
                    );
                    refused += 1
                }
                _ => panic!("{s}: {v}"),
            }
        }
        (made, refused)
    };
    assert_eq!(
        flood(&|_| "10.0.0.66".into(), 0),
        (UNPAID_OFFERS_PER_CLIENT, 10 - UNPAID_OFFERS_PER_CLIENT),
        "one IPv4 address"
    );
    // Its seed-protocol offers count against the same per-client budget.
    let seed_claim = bitcoin::Address::p2wpkh(&bitcoin::CompressedPublicKey(key(0x52).1), bitcoin::Network::Regtest);
    let seed = json!({"htlcClaimAddress": seed_claim.to_string(), "hash": Preimage::from_bytes([0x12; 32]).payment_hash().to_string(), "loopOutSats": 100_000});
    let (s, v) = h.call(
        &net,
        "POST",
        "/api/loop/out",
        &from("10.0.0.66"),
        Some(seed.to_string()),
    );
    assert_eq!(s, 429, "{v}");
    assert_eq!(
        flood(&|n| format!("2001:db8:0:7::{n:x}"), 100),
        (UNPAID_OFFERS_PER_CLIENT, 10 - UNPAID_OFFERS_PER_CLIENT),
        "one IPv6 /64, many addresses"
    );
    // The honest client, another address behind the proxy.
    let p = Preimage::from_bytes([0x2a; 32]);
    let (k, pk) = key(0x3b);
    let amount = Amount::from_sat(100_000);
    let body =
        json!({"amount": amount.to_sat(), "payment_hash": p.payment_hash().to_string(), "claim_key": pk.to_string()});
    let (s, offer) = h.call(&net, "POST", "/v1/loop-out", &from("192.0.2.1"), Some(body.to_string()));
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
    let invoice_sat = offer_invoice_sat(&offer);
    wait_channels(&net, server_ln0 + invoice_sat + 1_000, client_ln0 - invoice_sat - 1_000);
    assert_eq!(wallet(&net, &own.server), wallet0 - amount - publish_fee);
    eddy_lab::wait_until("claim", eddy_lab::WAIT, || {
        onchain(&net.client_ln) == chain0 + (amount - claim_fee).to_sat()
    })
    .expect("the honest client got the HTLC less its claim fee");
    net.stop().expect("stop");
}

/// A loop-in creation body: `amount`, a hold invoice of the attacker's node for a fresh hash.
fn in_body(
    net: &Swapnet,
    server: &eddy_server::SwapServer,
    n: u8,
    amount: u64,
    refund: &bitcoin::secp256k1::PublicKey,
) -> String {
    let quote = server.loop_in.quote(Amount::from_sat(amount)).expect("quote");
    let hash = Preimage::from_bytes([0x60 ^ n; 32]).payment_hash();
    let invoice = net
        .rt
        .block_on(net.client_ln.create_hold_invoice(&HoldInvoiceRequest {
            payment_hash: hash,
            amount_msat: quote.invoice_amount.to_sat() * 1000,
            expiry_secs: 7_200,
            min_final_cltv_delta: 42,
            description: "attacker".into(),
        }))
        .expect("hold invoice")
        .bolt11;
    serde_json::to_string(&eddy_core::validate::LoopInCreate {
        amount: Amount::from_sat(amount),
        invoice,
        refund_key: *refund,
        last_hop: None,
    })
    .expect("json")
}

/// **Review #5: free unbounded loop-in offers.** Unfunded loop-in offers cost their maker
/// nothing but are stored, watched and scanned every pass: one address gets
/// `UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT`, then 429; many addresses together get the global
/// budget (`max_active_swaps × UNFUNDED_LOOP_IN_OFFERS_PER_SLOT`), then a generic 503 (no
/// counts in it) — before the fix every request made an offer. Once the offers are
/// `LOOP_IN_UNFUNDED_OFFER_BLOCKS` old and still unfunded they no longer count: an honest
/// client gets an offer again. No money moves: both channels and the swap wallet unchanged.
#[test]
fn attack_loop_in_offer_flood_is_budgeted_per_client_and_in_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let cfg = eddy_server::ServerConfig {
        max_active_swaps: 2,
        ..eddy::demo::server_config()
    };
    let own = own_server(&net, "in-flood", cfg, behind_proxy(100), None, None, &[200_000]);
    let h = Hostile::new(&own.http.url());
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    let amount = 50_000;
    let mut n = 0u8;
    let mut create = |ip: &str| {
        n += 1;
        let body = in_body(&net, &own.server, n, amount, &key(0x53).1);
        h.call(&net, "POST", "/v1/loop-in", &from(ip), Some(body))
    };
    for i in 0..UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT + 2 {
        let (s, v) = create("10.0.0.66");
        let want = if i < UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT {
            201
        } else {
            429
        };
        assert_eq!(s, want, "offer {i}: {v}");
    }
    let global = 2 * UNFUNDED_LOOP_IN_OFFERS_PER_SLOT;
    let mut made = UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT;
    let mut ip = 0;
    while made < global {
        ip += 1;
        let (s, v) = create(&format!("10.0.1.{ip}"));
        assert_eq!(s, 201, "{v}");
        made += 1;
    }
    let (s, v) = create("10.0.2.1");
    assert_eq!(s, 503, "global budget: {v}");
    let e = v["error"].as_str().unwrap_or_default();
    assert!(e.starts_with("the server cannot take this swap now (id "), "{v}");
    assert!(!e.contains("offers") && !e.contains("unfunded"), "{v}");
    // Old unfunded offers stop counting.
    net.mine(LOOP_IN_UNFUNDED_OFFER_BLOCKS).expect("mine");
    net.rt.block_on(own.server.tick()).expect("tick");
    let (s, v) = create("10.0.2.1");
    assert_eq!(s, 201, "{v}");
    let (s, v) = create("10.0.0.66");
    assert_eq!(s, 201, "the flooding address's old offers no longer count: {v}");
    assert_eq!(ln(&net.server_ln), server_ln0);
    assert_eq!(ln(&net.client_ln), client_ln0);
    assert_eq!(wallet(&net, &own.server), wallet0);
    net.stop().expect("stop");
}

/// **Review #11: an authenticated client hammering co-sign calls.** Every co-signing call
/// costs the server store reads, node queries or a chain sync; a swap gets
/// `COSIGN_CALLS_PER_SWAP_PER_MINUTE` a minute, then 429. A stranger's calls (401) do not use
/// the swap's quota up. Nothing changes; no money moves.
#[test]
fn attack_cosign_calls_are_limited_per_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let url = net.http.as_ref().expect("http").url();
    let h = Hostile::new(&url);
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &net.server);
    let p = Preimage::from_bytes([0x31; 32]);
    let (k, pk) = key(0x32);
    let (s, v) = h.loop_out(&net, 60_000, p.payment_hash(), &pk);
    assert_eq!(s, 201, "{v}");
    let id = SwapId::from(p.payment_hash());
    let path = format!("/v1/swaps/{id}/cosign");
    let body = json!({"nonce": "02".repeat(66), "tx": "00"}).to_string();
    let (stranger, _) = key(0x33);
    for _ in 0..40 {
        let (s, v) = h.signed(&net, &stranger, &id, "POST", &path, Some(body.clone()));
        assert_eq!(s, 401, "{v}");
    }
    let per_minute = eddy_server::http::COSIGN_CALLS_PER_SWAP_PER_MINUTE;
    for i in 0..per_minute {
        let (s, v) = h.signed(&net, &k, &id, "POST", &path, Some(body.clone()));
        assert_eq!(s, 400, "call {i} is served (malformed tx): {v}");
    }
    for p in ["cosign", "refund-cosign", "claim-cosign"] {
        let path = format!("/v1/swaps/{id}/{p}");
        let (s, v) = h.signed(&net, &k, &id, "POST", &path, Some(body.clone()));
        assert_eq!(s, 429, "{p}: {v}");
    }
    let (s, v) = h.signed(&net, &k, &id, "GET", &format!("/v1/swaps/{id}/claim"), None);
    assert_eq!(s, 429, "{v}");
    // Status reads are not co-signing calls.
    let (s, v) = h.signed(&net, &k, &id, "GET", &format!("/v1/swaps/{id}"), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(out_state(&net, &net.server, &id), OutState::new());
    assert_eq!(ln(&net.server_ln), server_ln0);
    assert_eq!(ln(&net.client_ln), client_ln0);
    assert_eq!(wallet(&net, &net.server), wallet0);
    net.stop().expect("stop");
}

/// **Review #11: open event streams without end.** Each stream polls the store; one client
/// may hold `MAX_EVENT_STREAMS_PER_CLIENT` open, the next is refused with 429 (another client
/// is still served). No money moves.
#[test]
fn attack_event_streams_are_capped_per_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let own = own_server(
        &net,
        "streams",
        eddy::demo::server_config(),
        behind_proxy(20),
        None,
        None,
        &[200_000],
    );
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    let h = Hostile::new(&own.http.url());
    let p = Preimage::from_bytes([0x34; 32]);
    let (k, pk) = key(0x35);
    let (s, v) = h.loop_out(&net, 60_000, p.payment_hash(), &pk);
    assert_eq!(s, 201, "{v}");
    let id = SwapId::from(p.payment_hash());
    let path = format!("/v1/swaps/{id}/events");
    let http = reqwest::Client::new();
    let open = |ip: &str| {
        let auth = eddy_core::auth::sign(&k, &id, now(), "GET", &path, &[]);
        net.rt
            .block_on(
                http.get(format!("{}{path}", own.http.url()))
                    .header(eddy_core::auth::HEADER, auth)
                    .header("x-forwarded-for", ip)
                    .send(),
            )
            .expect("send")
    };
    let held: Vec<reqwest::Response> = (0..eddy_server::http::MAX_EVENT_STREAMS_PER_CLIENT)
        .map(|_| open("10.0.0.66"))
        .collect();
    assert!(held.iter().all(|r| r.status() == 200));
    assert_eq!(open("10.0.0.66").status(), 429, "one stream too many from this client");
    assert_eq!(open("2001:db8::1").status(), 200, "another client is served");
    drop(held);
    assert_eq!(ln(&net.server_ln), server_ln0);
    assert_eq!(ln(&net.client_ln), client_ln0);
    assert_eq!(wallet(&net, &own.server), wallet0);
    net.stop().expect("stop");
}

/// The real chain source, counting every call made through it.
struct Counting {
    inner: Arc<dyn eddy_backends::ChainSource>,
    calls: AtomicUsize,
}

impl Counting {
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl eddy_backends::ChainSource for Counting {
    fn network(&self) -> bitcoin::Network {
        self.inner.network()
    }
    async fn tip(&self) -> Result<eddy_backends::BlockRef, eddy_backends::ChainSourceError> {
        self.count();
        self.inner.tip().await
    }
    async fn block_hash(&self, height: u32) -> Result<Option<bitcoin::BlockHash>, eddy_backends::ChainSourceError> {
        self.count();
        self.inner.block_hash(height).await
    }
    async fn block(
        &self,
        hash: &bitcoin::BlockHash,
    ) -> Result<Option<(bitcoin::Block, u32)>, eddy_backends::ChainSourceError> {
        self.count();
        self.inner.block(hash).await
    }
    async fn transaction(
        &self,
        txid: &bitcoin::Txid,
    ) -> Result<Option<eddy_backends::TxStatus>, eddy_backends::ChainSourceError> {
        self.count();
        self.inner.transaction(txid).await
    }
    async fn tx_fee(&self, tx: &Transaction) -> Result<bitcoin::Amount, eddy_backends::ChainSourceError> {
        self.count();
        self.inner.tx_fee(tx).await
    }
    async fn broadcast(&self, tx: &Transaction) -> Result<bitcoin::Txid, eddy_backends::BroadcastError> {
        self.count();
        self.inner.broadcast(tx).await
    }
    async fn fee_rate(&self, conf_target: u16) -> Result<bitcoin::FeeRate, eddy_backends::ChainSourceError> {
        self.count();
        self.inner.fee_rate(conf_target).await
    }
    async fn mempool_txids(&self) -> Result<Vec<bitcoin::Txid>, eddy_backends::ChainSourceError> {
        self.count();
        self.inner.mempool_txids().await
    }
    async fn mempool_spender(
        &self,
        outpoint: &OutPoint,
    ) -> Result<Option<bitcoin::Txid>, eddy_backends::ChainSourceError> {
        self.count();
        self.inner.mempool_spender(outpoint).await
    }
    async fn wait_for_block(
        &self,
        current: &bitcoin::BlockHash,
        timeout: std::time::Duration,
    ) -> Result<eddy_backends::BlockRef, eddy_backends::ChainSourceError> {
        self.count();
        self.inner.wait_for_block(current, timeout).await
    }
}

/// **Review #11: work before the lookup.** The unauthenticated preimage push for an unknown
/// hash, a refund co-sign request for an unknown id, and a (properly signed) refund co-sign
/// request for a loop-in that can no longer be refunded cooperatively (expired) are refused
/// without a single chain call — before the fix the push asked the chain for its tip and the
/// refund co-sign synced the whole watcher (getrawmempool under the watcher's lock) first.
/// No money moves.
#[test]
fn attack_requests_for_unknown_or_finished_swaps_cost_no_chain_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let counting = Arc::new(Counting {
        inner: net.chain.clone(),
        calls: AtomicUsize::new(0),
    });
    let own = own_server(
        &net,
        "counted",
        eddy::demo::server_config(),
        eddy_server::http::Limits::new(20),
        None,
        Some(counting.clone() as Arc<dyn eddy_backends::ChainSource>),
        &[200_000],
    );
    let h = Hostile::new(&own.http.url());
    let (server_ln0, client_ln0) = (ln(&net.server_ln), ln(&net.client_ln));
    let wallet0 = wallet(&net, &own.server);
    let calls = || counting.calls.load(Ordering::SeqCst);

    let before = calls();
    let stranger = Preimage::from_bytes([0x36; 32]);
    let (s, v) = h.call(
        &net,
        "POST",
        &format!("/v1/swaps/{}/preimage", SwapId::from(stranger.payment_hash())),
        &[],
        Some(json!({"preimage": stranger.expose_hex()}).to_string()),
    );
    assert_eq!(s, 404, "{v}");
    assert_eq!(calls(), before, "no chain call for an unknown preimage push");

    // A loop-in the attacker never funds, left to expire.
    let (k, pk) = key(0x37);
    let body = in_body(&net, &own.server, 0x37, 50_000, &pk);
    let (s, v) = h.call(&net, "POST", "/v1/loop-in", &[], Some(body));
    assert_eq!(s, 201, "{v}");
    let hash: PaymentHash = Preimage::from_bytes([0x60 ^ 0x37; 32]).payment_hash();
    let id = SwapId::from(hash);
    net.mine(eddy_core::constants::DEFAULT_LOOP_IN_EXPIRY_DELTA)
        .expect("mine");
    drive(
        &net,
        &own.server,
        || false,
        || in_state(&net, &own.server, &id) == InState::Expired,
    );
    let refund = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn::default()],
        output: vec![],
    };
    let nonce = [2u8; eddy_core::musig::PUB_NONCE_LEN];
    let before = calls();
    let (s, v) = h.refund_cosign(&net, &k, &id, &nonce, &refund);
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("no cooperative refund"),
        "{v}"
    );
    let unknown = SwapId::from(stranger.payment_hash());
    let (s, v) = h.refund_cosign(&net, &k, &unknown, &nonce, &refund);
    assert_eq!(s, 401, "{v}");
    assert_eq!(calls(), before, "no chain call before the lookup and the state check");
    assert_eq!(ln(&net.server_ln), server_ln0);
    assert_eq!(ln(&net.client_ln), client_ln0);
    assert_eq!(wallet(&net, &own.server), wallet0);
    net.stop().expect("stop");
}

/// A connection from `from` (a loopback address of its own, e.g. 127.0.0.2) to `to`.
async fn connect_from(from: &str, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind(format!("{from}:0").parse().expect("addr")).expect("bind");
    s.connect(to).await.expect("connect")
}

/// Whether the server closed `s` within `within` (EOF or reset on read).
async fn closed_within(s: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// **Issue 13: connections that never finish their headers.** One address opens 200
/// connections and sends half a request line on each (the flood that used to exhaust the
/// server's file handles); another dribbles a header one byte at a time; a third keeps an idle
/// keep-alive connection. The listener admits 8 per address and closes the rest as they arrive,
/// cuts the admitted half-open ones at the header deadline, the slow one too, and the idle one at
/// the idle deadline — and an honest client from another address is answered throughout. No
/// swap is created: the server's wallet and channel are unchanged.
#[test]
fn attack_half_open_connection_flood_leaves_others_served() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let wallet0 = wallet(&net, &net.server);
    let ln0 = ln(&net.server_ln);
    let limits = eddy_server::listener::ConnLimits {
        max_connections: 64,
        max_per_address: 8,
        header_read_timeout: std::time::Duration::from_secs(2),
        idle_timeout: std::time::Duration::from_secs(3),
        request_timeout: std::time::Duration::from_secs(10),
        exempt: None,
    };
    let http = net
        .rt
        .block_on(eddy_server::http::HttpServer::start_with(
            eddy_server::http::router(net.server.clone(), eddy::demo::terms(), 600),
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            limits,
        ))
        .expect("http");
    let to = http.addr();
    let honest = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("client");
    let terms = || {
        let url = format!("{}/v1/terms", http.url());
        let r = net
            .rt
            .block_on(async { honest.get(url).send().await })
            .expect("terms answered");
        assert_eq!(r.status(), 200);
    };
    // The flood: 200 half-open connections from 127.0.0.2.
    let mut flood = net.rt.block_on(async {
        let mut v = vec![];
        for _ in 0..200 {
            let mut s = connect_from("127.0.0.2", to).await;
            let _ = s.write_all(b"GET /v1/terms HTTP/1.1\r\nHo").await;
            v.push(s);
        }
        v
    });
    terms();
    // Within 300 ms of the flood (the header deadline is 2 s): only the refused ones are closed.
    let closed_at_once = net.rt.block_on(async {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut n = 0;
        for s in flood.iter_mut() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if closed_within(s, left.max(std::time::Duration::from_millis(1))).await {
                n += 1;
            }
        }
        n
    });
    assert!(
        closed_at_once >= 192,
        "all but 8 closed as they arrived: {closed_at_once}"
    );
    assert_eq!(
        http.stats().refused.load(std::sync::atomic::Ordering::Relaxed),
        192,
        "exactly 8 admitted from the flooding address"
    );
    // A connection that sends nothing, and one that speaks HTTP/2 (not served: its streams and
    // pings would get around the deadlines), each from an address of its own.
    let (mut silent, mut h2) = net.rt.block_on(async {
        let silent = connect_from("127.0.0.5", to).await;
        let mut h2 = connect_from("127.0.0.6", to).await;
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("preface");
        (silent, h2)
    });
    // A slow-header client and an idle keep-alive one, from other addresses.
    let (mut slow, mut idle) = net.rt.block_on(async {
        let slow = connect_from("127.0.0.3", to).await;
        let mut idle = connect_from("127.0.0.4", to).await;
        idle.write_all(b"GET /v1/terms HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        (slow, idle)
    });
    let started = std::time::Instant::now();
    let slow_closed = net.rt.block_on(async {
        let header = b"GET /v1/terms HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for b in header.iter() {
            if slow.write_all(&[*b]).await.is_err() {
                return true;
            }
            if closed_within(&mut slow, std::time::Duration::from_millis(200)).await {
                return true;
            }
        }
        false
    });
    assert!(slow_closed, "the slow header is cut off");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    terms();
    // The 8 admitted half-open ones are past their header deadline; the idle one past its idle
    // deadline (it got its answer first).
    let (half_open_closed, idle_closed) = net.rt.block_on(async {
        let mut n = 0;
        for s in flood.iter_mut() {
            if closed_within(s, std::time::Duration::from_secs(4)).await {
                n += 1;
            }
        }
        (n, closed_within(&mut idle, std::time::Duration::from_secs(5)).await)
    });
    assert_eq!(half_open_closed, 200, "every flood connection is closed");
    let (silent_closed, h2_closed) = net.rt.block_on(async {
        (
            closed_within(&mut silent, std::time::Duration::from_secs(4)).await,
            closed_within(&mut h2, std::time::Duration::from_secs(4)).await,
        )
    });
    assert!(
        silent_closed,
        "a connection that sends nothing is cut at the header deadline"
    );
    assert!(h2_closed, "HTTP/2 is not served");
    assert!(idle_closed, "the idle keep-alive connection is closed");
    assert!(http.stats().timed_out.load(std::sync::atomic::Ordering::Relaxed) >= 9);
    terms();
    // Nothing happened to the money.
    assert_eq!(wallet(&net, &net.server), wallet0);
    assert_eq!(ln(&net.server_ln), ln0);
    net.stop().expect("stop");
}

/// **Issue 13: errors that name the problem.** An unknown swap is 404 on the preimage push
/// (whatever the body); the claim co-signing asked for a loop-out says it is a loop-out (400),
/// not "unknown swap"; an amount out of range is stated in satoshis, as the API takes it; a 429
/// carries `Retry-After`. Nothing of this costs money: the server's wallet is unchanged.
#[test]
fn attack_errors_name_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let wallet0 = wallet(&net, &net.server);
    let h = Hostile::new(&net.http.as_ref().expect("http").url());
    // Preimage push on an unknown swap: 404 for the holder of its preimage; junk gets the same
    // 400 whether the swap exists or not (a routing node that saw the hash learns nothing).
    let unknown = Preimage::from_bytes([0x71; 32]);
    let id_of = |p: &Preimage| SwapId::from(p.payment_hash());
    let push = |id: SwapId, p: &Preimage| {
        let body = json!({"preimage": p.expose_hex()}).to_string();
        h.call(&net, "POST", &format!("/v1/swaps/{id}/preimage"), &[], Some(body))
    };
    let (s, v) = push(id_of(&unknown), &unknown);
    assert_eq!(s, 404, "{v}");
    let junk = Preimage::from_bytes([0x72; 32]);
    let (s_unknown, _) = push(id_of(&unknown), &junk);
    assert_eq!(s_unknown, 400);
    // A loop-out's own client asks for a loop-in claim: 400 naming it a loop-out.
    let p = Preimage::from_bytes([0x73; 32]);
    let (k, pk) = key(0x74);
    let (s, offer) = h.loop_out(&net, 60_000, p.payment_hash(), &pk);
    assert_eq!(s, 201, "{offer}");
    let id = SwapId::from(p.payment_hash());
    let (s_known, _) = push(id, &junk);
    assert_eq!(s_known, s_unknown, "junk for a real swap answers as for no swap");
    let (s, v) = h.signed(&net, &k, &id, "GET", &format!("/v1/swaps/{id}/claim"), None);
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("is a loop-out")), "{v}");
    // Out of range: in sats.
    let (s, v) = h.call(&net, "GET", "/v1/quote/loop-out?amount=1", &[], None);
    assert_eq!(s, 400, "{v}");
    let e = v["error"].as_str().expect("error");
    assert!(e.contains("1 sat") && !e.contains("BTC"), "{e}");
    // 429 with Retry-After.
    let http = net
        .rt
        .block_on(eddy_server::http::HttpServer::start(
            eddy_server::http::router(net.server.clone(), eddy::demo::terms(), 1),
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ))
        .expect("http");
    let client = reqwest::Client::new();
    let post = |hash: PaymentHash| {
        let body = json!({"amount": 60_000, "payment_hash": hash.to_string(), "claim_key": pk.to_string()});
        let url = format!("{}/v1/loop-out", http.url());
        let client = client.clone();
        net.rt.block_on(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .expect("send")
        })
    };
    let first = post(Preimage::from_bytes([0x75; 32]).payment_hash());
    assert_eq!(first.status(), 201);
    let second = post(Preimage::from_bytes([0x76; 32]).payment_hash());
    assert_eq!(second.status(), 429);
    assert_eq!(
        second.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("60")
    );
    assert_eq!(wallet(&net, &net.server), wallet0);
    net.stop().expect("stop");
}
