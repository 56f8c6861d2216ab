//! The hostile client of the server attack matrix: raw HTTP (reqwest) against the real server
//! API, its own keys and preimages, the swapnet's client LDK node as its Lightning node, the
//! devnet faucet as its on-chain wallet. Nothing here is trusted by the server: every call goes
//! through the public API (or, where a test says so, the engine's own entry points).

#![allow(dead_code)]

use std::sync::Arc;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction};
use eddy::demo::Swapnet;
use eddy_backends::{LightningNode, PayParams};
use eddy_core::htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams};
use eddy_core::musig::Signer;
use eddy_core::tx::{build_spend, FeeSpec, HtlcInput, SpendPath};
use eddy_core::types::{PaymentHash, Preimage, SwapId};
use eddy_server::http::HttpServer;
use eddy_server::SwapServer;
use eddy_store::SwapStore;
use serde_json::{json, Value};

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A key pair from one byte.
pub fn key(n: u8) -> (SecretKey, PublicKey) {
    let sk = SecretKey::from_slice(&[n; 32]).expect("key");
    (sk, PublicKey::from_secret_key(&Secp256k1::new(), &sk))
}

/// Channel balance of a node, sat.
pub fn ln(n: &eddy_backends::ldk::LdkNode) -> u64 {
    n.ldk().list_balances().total_lightning_balance_sats
}

/// On-chain balance of a node (after a wallet sync), sat.
pub fn onchain(n: &eddy_backends::ldk::LdkNode) -> u64 {
    let _ = n.ldk().sync_wallets();
    n.ldk().list_balances().total_onchain_balance_sats
}

/// The attacker speaking HTTP to one server.
pub struct Hostile {
    pub url: String,
    http: reqwest::Client,
}

impl Hostile {
    pub fn new(url: &str) -> Hostile {
        Hostile {
            url: url.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// Any request; `headers` as given; answer status and JSON (Null if none).
    pub fn call(
        &self,
        net: &Swapnet,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<String>,
    ) -> (u16, Value) {
        net.rt.block_on(async {
            let mut req = match method {
                "GET" => self.http.get(format!("{}{path}", self.url)),
                _ => self.http.post(format!("{}{path}", self.url)),
            };
            for (k, v) in headers {
                req = req.header(*k, v.clone());
            }
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b);
            }
            let resp = req.send().await.expect("send");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        })
    }

    /// A per-swap call signed with `key` (right or wrong) for swap `id`.
    pub fn signed(
        &self,
        net: &Swapnet,
        key: &SecretKey,
        id: &SwapId,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> (u16, Value) {
        let bytes = body.clone().unwrap_or_default();
        let auth = eddy_core::auth::sign(key, id, now(), method, path, bytes.as_bytes());
        self.call(net, method, path, &[(eddy_core::auth::HEADER, auth)], body)
    }

    /// `POST /v1/loop-out`.
    pub fn loop_out(&self, net: &Swapnet, amount: u64, hash: PaymentHash, claim: &PublicKey) -> (u16, Value) {
        let body = json!({"amount": amount, "payment_hash": hash.to_string(), "claim_key": claim.to_string()});
        self.call(net, "POST", "/v1/loop-out", &[], Some(body.to_string()))
    }

    /// `POST /v1/loop-in`.
    pub fn loop_in(&self, net: &Swapnet, amount: u64, invoice: &str, refund: &PublicKey) -> (u16, Value) {
        let body = serde_json::to_string(&eddy_core::validate::LoopInCreate {
            amount: Amount::from_sat(amount),
            invoice: invoice.to_string(),
            refund_key: *refund,
            last_hop: None,
        })
        .expect("json");
        self.call(net, "POST", "/v1/loop-in", &[], Some(body))
    }

    /// `POST /v1/swaps/{id}/refund-cosign` for `tx`, signed with `key`: the server's nonce and
    /// partial signature, or the refusal.
    pub fn refund_cosign(
        &self,
        net: &Swapnet,
        key: &SecretKey,
        id: &SwapId,
        nonce: &eddy_core::musig::PubNonceBytes,
        tx: &Transaction,
    ) -> (u16, Value) {
        use bitcoin::hex::DisplayHex;
        let body = json!({"nonce": nonce.to_lower_hex_string(), "tx": bitcoin::consensus::encode::serialize_hex(tx)});
        self.signed(
            net,
            key,
            id,
            "POST",
            &format!("/v1/swaps/{id}/refund-cosign"),
            Some(body.to_string()),
        )
    }
}

/// The loop-in HTLC the attacker must fund, rebuilt from the server's offer.
pub fn in_htlc(offer: &Value, hash: PaymentHash, refund: &PublicKey) -> Htlc {
    let htlc = Htlc::new(HtlcParams {
        kind: HtlcKind::P2trIn,
        payment_hash: hash,
        claim_key: HtlcKey::Pubkey(offer["server_key"].as_str().expect("key").parse().expect("key")),
        refund_key: HtlcKey::Pubkey(*refund),
        timeout: offer["expiry"].as_u64().expect("expiry") as u32,
    })
    .expect("htlc");
    assert_eq!(
        offer["htlc_address"].as_str(),
        Some(htlc.address(bitcoin::Network::Regtest).to_string().as_str())
    );
    htlc
}

/// The loop-out HTLC the server must publish, rebuilt from its offer.
pub fn out_htlc(offer: &Value, hash: PaymentHash, claim: &PublicKey) -> Htlc {
    let htlc = Htlc::new(HtlcParams {
        kind: HtlcKind::P2trOut,
        payment_hash: hash,
        claim_key: HtlcKey::Pubkey(*claim),
        refund_key: HtlcKey::Pubkey(offer["server_key"].as_str().expect("key").parse().expect("key")),
        timeout: offer["expiry"].as_u64().expect("expiry") as u32,
    })
    .expect("htlc");
    assert_eq!(
        offer["htlc_address"].as_str(),
        Some(htlc.address(bitcoin::Network::Regtest).to_string().as_str())
    );
    htlc
}

/// Funds `htlc` with `value` from the faucet; the outpoint.
pub fn fund(net: &Swapnet, htlc: &Htlc, value: Amount) -> OutPoint {
    let txid = net
        .lab
        .chain
        .fund(&htlc.address(bitcoin::Network::Regtest), value)
        .expect("fund");
    let tx = net
        .rt
        .block_on(net.chain.transaction(&txid))
        .expect("rpc")
        .expect("tx")
        .tx;
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == htlc.script_pubkey())
        .expect("output");
    OutPoint {
        txid,
        vout: vout as u32,
    }
}

/// The server's swap-wallet balance, after a pass of its engine.
pub fn wallet(net: &Swapnet, server: &SwapServer) -> Amount {
    net.rt.block_on(server.tick()).expect("tick");
    net.rt.block_on(server.wallet_balance()).spendable
}

/// A loop-out's state on `server`.
pub fn out_state(net: &Swapnet, server: &SwapServer, id: &SwapId) -> eddy_core::sm::loop_out_server::State {
    net.rt.block_on(server.loop_out.swap(id)).expect("loop-out").1.state
}

/// A loop-in's state on `server`.
pub fn in_state(net: &Swapnet, server: &SwapServer, id: &SwapId) -> eddy_core::sm::loop_in_server::State {
    net.rt.block_on(server.loop_in.swap(id)).expect("loop-in").1.state
}

/// The miner fee `txid` paid.
pub fn fee_of(net: &Swapnet, txid: &bitcoin::Txid) -> Amount {
    let tx = net
        .rt
        .block_on(net.chain.transaction(txid))
        .expect("rpc")
        .expect("tx")
        .tx;
    net.rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &tx))
        .expect("fee")
}

/// Waits until the server's and the client's channel balances are exactly these (sat).
pub fn wait_channels(net: &Swapnet, server: u64, client: u64) {
    eddy_lab::wait_until("channel balances", eddy_lab::WAIT, || {
        ln(&net.server_ln) == server && ln(&net.client_ln) == client
    })
    .unwrap_or_else(|_| {
        panic!(
            "channels: server {} (want {server}), client {} (want {client})",
            ln(&net.server_ln),
            ln(&net.client_ln)
        )
    });
}

/// Pays `bolt11` from the attacker's node (direct channel: no routing fee).
pub fn pay(net: &Swapnet, bolt11: &str) {
    net.rt
        .block_on(net.client_ln.pay_invoice(
            bolt11,
            &PayParams {
                max_fee_msat: 0,
                timeout: std::time::Duration::from_secs(60),
                outgoing_channel: None,
                max_total_cltv_delta: None,
                last_hop: None,
            },
        ))
        .expect("pay");
}

/// A fresh address of the attacker's node.
pub fn address(net: &Swapnet) -> ScriptBuf {
    net.rt
        .block_on(net.client_ln.new_address())
        .expect("address")
        .script_pubkey()
}

/// The attacker's cooperative refund of `outpoint` (a loop-in HTLC) to its node, co-signed by
/// the server over HTTP: (signed tx, fee), or the server's refusal.
pub fn cooperative_refund(
    net: &Swapnet,
    h: &Hostile,
    key: &SecretKey,
    id: &SwapId,
    htlc: &Htlc,
    outpoint: OutPoint,
    value: Amount,
) -> Result<(Transaction, Amount), (u16, Value)> {
    use bitcoin::hex::FromHex;
    let mut spend = build_spend(
        vec![HtlcInput {
            outpoint,
            value,
            htlc: htlc.clone(),
            path: SpendPath::Cooperative,
        }],
        address(net),
        FeeSpec::Rate(bitcoin::FeeRate::from_sat_per_kwu(500)),
    )
    .expect("spend");
    let msg = spend.sighash(0).expect("sighash");
    let Htlc::Taproot(t) = htlc else { panic!("taproot") };
    let mut signer = Signer::new(t, key, msg, &id.0).expect("signer");
    let (s, v) = h.refund_cosign(net, key, id, &signer.public_nonce(), &spend.tx);
    if s != 200 {
        return Err((s, v));
    }
    let their_nonce =
        <[u8; eddy_core::musig::PUB_NONCE_LEN]>::from_hex(v["nonce"].as_str().expect("nonce")).expect("nonce");
    let their_partial = <[u8; 32]>::from_hex(v["partial_sig"].as_str().expect("sig")).expect("sig");
    let ours = signer.sign(&their_nonce).expect("sign");
    let sig = signer
        .aggregate(&their_nonce, &ours, &their_partial)
        .expect("aggregate");
    spend.set_cooperative_signature(0, sig).expect("set");
    let signed = spend.finalize().expect("finalize");
    net.rt
        .block_on(net.chain.broadcast(&signed.tx))
        .expect("refund broadcast");
    Ok((signed.tx, signed.fee))
}

/// The attacker's script-path claim of a loop-out HTLC with its preimage (broadcast): (tx, fee).
pub fn claim_out(
    net: &Swapnet,
    key: &SecretKey,
    htlc: &Htlc,
    outpoint: OutPoint,
    value: Amount,
    p: Preimage,
) -> (Transaction, Amount) {
    let mut spend = build_spend(
        vec![HtlcInput {
            outpoint,
            value,
            htlc: htlc.clone(),
            path: SpendPath::Claim(p),
        }],
        address(net),
        FeeSpec::Rate(bitcoin::FeeRate::from_sat_per_kwu(500)),
    )
    .expect("spend");
    spend.sign(0, key).expect("sign");
    let signed = spend.finalize().expect("finalize");
    net.rt
        .block_on(net.chain.broadcast(&signed.tx))
        .expect("claim broadcast");
    (signed.tx, signed.fee)
}

/// Every output (in blocks or the mempool) paying `spk`, as (txid, vout).
pub fn outputs_paying(net: &Swapnet, spk: &ScriptBuf, from_height: u32) -> Vec<OutPoint> {
    let mut found = vec![];
    let tip = net.lab.chain.tip().expect("tip").0;
    let mut txs: Vec<Transaction> = vec![];
    for h in from_height..=tip {
        let hash = net.rt.block_on(net.chain.block_hash(h)).expect("rpc").expect("hash");
        let (block, _) = net.rt.block_on(net.chain.block(&hash)).expect("rpc").expect("block");
        txs.extend(block.txdata);
    }
    for txid in net.rt.block_on(net.chain.mempool_txids()).expect("mempool") {
        if let Some(t) = net.rt.block_on(net.chain.transaction(&txid)).expect("rpc") {
            txs.push(t.tx);
        }
    }
    for tx in txs {
        for (i, o) in tx.output.iter().enumerate() {
            if &o.script_pubkey == spk {
                found.push(OutPoint {
                    txid: tx.compute_txid(),
                    vout: i as u32,
                });
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// A second server engine on the swapnet's server node, with its own store, seed, swap wallet
/// (funded with `coins` from the faucet, confirmed) and HTTP API: for attacks that need other
/// settings or a faulty store.
pub struct OwnServer {
    pub server: Arc<SwapServer>,
    pub store: Arc<dyn SwapStore>,
    pub http: HttpServer,
    pub dir: std::path::PathBuf,
}

/// Starts an [`OwnServer`] named `name` under the swapnet's directory.
pub fn own_server(
    net: &Swapnet,
    name: &str,
    cfg: eddy_server::ServerConfig,
    limits: eddy_server::http::Limits,
    store: Option<Arc<dyn SwapStore>>,
    chain: Option<Arc<dyn eddy_backends::ChainSource>>,
    coins: &[u64],
) -> OwnServer {
    own_server_on(net, name, net.server_ln.clone(), cfg, limits, store, chain, coins)
}

/// [`own_server`] on another Lightning backend of the server's node (the LND client in front
/// of the LND emulator).
#[allow(clippy::too_many_arguments, dead_code)] // the test's knobs, spelled out
pub fn own_server_on(
    net: &Swapnet,
    name: &str,
    ln: Arc<dyn eddy_backends::LightningNode>,
    cfg: eddy_server::ServerConfig,
    limits: eddy_server::http::Limits,
    store: Option<Arc<dyn SwapStore>>,
    chain: Option<Arc<dyn eddy_backends::ChainSource>>,
    coins: &[u64],
) -> OwnServer {
    let chain = chain.unwrap_or_else(|| net.chain.clone());
    let dir = net.dir.join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    let store: Arc<dyn SwapStore> = store.unwrap_or_else(|| {
        Arc::new(
            net.rt
                .block_on(eddy_store::SqliteStore::open(&dir.join("server.sqlite")))
                .expect("store"),
        )
    });
    let keys = eddy_store::SeedKeys::load_or_create(&dir, eddy_server::SEED_FILE).expect("seed");
    let server = Arc::new(
        net.rt
            .block_on(SwapServer::new(cfg, ln, chain, store.clone(), keys))
            .expect("server"),
    );
    for c in coins {
        net.lab
            .chain
            .fund(server.wallet_address(), Amount::from_sat(*c))
            .expect("fund");
    }
    net.mine(1).expect("mine");
    net.rt.block_on(server.tick()).expect("tick");
    let http = net
        .rt
        .block_on(HttpServer::start(
            eddy_server::http::router_with(server.clone(), eddy::demo::terms(), limits),
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ))
        .expect("http");
    OwnServer {
        server,
        store,
        http,
        dir,
    }
}

/// Ticks `server` until `done` holds (mining a block when `mine` says so), within the lab's wait.
pub fn drive(net: &Swapnet, server: &SwapServer, mut mine: impl FnMut() -> bool, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    loop {
        let _ = net.rt.block_on(server.tick());
        if done() {
            return;
        }
        if mine() {
            net.mine(1).expect("mine");
        } else {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "gave up waiting");
    }
}

/// The real store with one injected fault: the first write of state `fail_state` fails (as a
/// full disk or a dropped database connection would), after the engine already acted.
pub struct FailOnce {
    pub inner: Arc<dyn SwapStore>,
    pub fail_state: String,
    pub armed: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl SwapStore for FailOnce {
    async fn create(&self, swap: &eddy_store::NewSwap) -> Result<eddy_store::SwapRecord, eddy_store::StoreError> {
        self.inner.create(swap).await
    }
    async fn get(&self, id: &SwapId) -> Result<Option<eddy_store::SwapRecord>, eddy_store::StoreError> {
        self.inner.get(id).await
    }
    async fn transition(
        &self,
        id: &SwapId,
        expected_version: i64,
        update: &eddy_store::StateUpdate,
    ) -> Result<eddy_store::SwapRecord, eddy_store::StoreError> {
        if update.state_name == self.fail_state && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(eddy_store::StoreError::Db("injected: disk full".into()));
        }
        self.inner.transition(id, expected_version, update).await
    }
    async fn events(&self, id: &SwapId) -> Result<Vec<eddy_store::EventRecord>, eddy_store::StoreError> {
        self.inner.events(id).await
    }
    async fn list(
        &self,
        filter: eddy_store::ListFilter,
    ) -> Result<Vec<eddy_store::SwapRecord>, eddy_store::StoreError> {
        self.inner.list(filter).await
    }
    async fn get_meta(&self, key: &str) -> Result<Option<String>, eddy_store::StoreError> {
        self.inner.get_meta(key).await
    }
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), eddy_store::StoreError> {
        self.inner.set_meta(key, value).await
    }
}

/// The real chain source, except that the first broadcast of a transaction paying `lose` is
/// answered "accepted" and never reaches the node (a mempool that restarted and forgot it, or
/// evicted it: the devnet cannot evict on its own).
pub struct LosesOneBroadcast {
    pub inner: Arc<dyn eddy_backends::ChainSource>,
    pub lose: std::sync::Mutex<Option<ScriptBuf>>,
    /// A mempool minimum fee for transactions paying this script (as when a full mempool
    /// evicts the cheapest): below it, "accepted" and dropped at once.
    pub min_fee: std::sync::Mutex<Option<(ScriptBuf, bitcoin::FeeRate)>>,
    /// While set, reading a block at this height or below waits (a slow disk or a remote
    /// node: what makes a deep rescan long); `held` counts the reads waiting.
    pub hold_blocks_upto: std::sync::Mutex<Option<u32>>,
    pub held: std::sync::atomic::AtomicU32,
    /// Lose every broadcast paying `lose`, not only the first, until `lose` is cleared.
    pub keep_losing: std::sync::atomic::AtomicBool,
}

impl LosesOneBroadcast {
    /// The real chain source, nothing lost, nothing held.
    pub fn new(inner: Arc<dyn eddy_backends::ChainSource>) -> LosesOneBroadcast {
        LosesOneBroadcast {
            inner,
            lose: std::sync::Mutex::new(None),
            min_fee: std::sync::Mutex::new(None),
            hold_blocks_upto: std::sync::Mutex::new(None),
            held: std::sync::atomic::AtomicU32::new(0),
            keep_losing: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

#[async_trait::async_trait]
impl eddy_backends::ChainSource for LosesOneBroadcast {
    fn network(&self) -> bitcoin::Network {
        self.inner.network()
    }
    async fn tip(&self) -> Result<eddy_backends::BlockRef, eddy_backends::ChainSourceError> {
        self.inner.tip().await
    }
    async fn block_hash(&self, height: u32) -> Result<Option<bitcoin::BlockHash>, eddy_backends::ChainSourceError> {
        self.inner.block_hash(height).await
    }
    async fn block(
        &self,
        hash: &bitcoin::BlockHash,
    ) -> Result<Option<(bitcoin::Block, u32)>, eddy_backends::ChainSourceError> {
        let found = self.inner.block(hash).await?;
        let height = found.as_ref().map_or(0, |(_, h)| *h);
        let holding = || self.hold_blocks_upto.lock().expect("lock").is_some_and(|h| height <= h);
        if holding() {
            self.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            while holding() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            self.held.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(found)
    }
    async fn transaction(
        &self,
        txid: &bitcoin::Txid,
    ) -> Result<Option<eddy_backends::TxStatus>, eddy_backends::ChainSourceError> {
        self.inner.transaction(txid).await
    }
    async fn tx_fee(&self, tx: &Transaction) -> Result<bitcoin::Amount, eddy_backends::ChainSourceError> {
        self.inner.tx_fee(tx).await
    }
    async fn broadcast(&self, tx: &Transaction) -> Result<bitcoin::Txid, eddy_backends::BroadcastError> {
        {
            let mut lose = self.lose.lock().expect("lock");
            if lose
                .as_ref()
                .is_some_and(|spk| tx.output.iter().any(|o| &o.script_pubkey == spk))
            {
                if !self.keep_losing.load(std::sync::atomic::Ordering::SeqCst) {
                    *lose = None;
                }
                return Ok(tx.compute_txid());
            }
        }
        let floor = self.min_fee.lock().expect("lock").clone();
        if let Some((spk, min)) = floor {
            if tx.output.iter().any(|o| o.script_pubkey == spk) {
                let fee = eddy_backends::fee_paid(&*self.inner, tx).await?;
                let rate = bitcoin::FeeRate::from_sat_per_kwu(fee.to_sat() * 1000 / tx.weight().to_wu());
                if rate < min {
                    return Ok(tx.compute_txid());
                }
            }
        }
        self.inner.broadcast(tx).await
    }
    async fn fee_rate(&self, conf_target: u16) -> Result<bitcoin::FeeRate, eddy_backends::ChainSourceError> {
        self.inner.fee_rate(conf_target).await
    }
    async fn mempool_txids(&self) -> Result<Vec<bitcoin::Txid>, eddy_backends::ChainSourceError> {
        self.inner.mempool_txids().await
    }
    async fn mempool_spender(
        &self,
        outpoint: &OutPoint,
    ) -> Result<Option<bitcoin::Txid>, eddy_backends::ChainSourceError> {
        self.inner.mempool_spender(outpoint).await
    }
    async fn wait_for_block(
        &self,
        current: &bitcoin::BlockHash,
        timeout: std::time::Duration,
    ) -> Result<eddy_backends::BlockRef, eddy_backends::ChainSourceError> {
        self.inner.wait_for_block(current, timeout).await
    }
}

/// The server's real node with faults injected the way a remote node (LND) or a stuck one shows
/// them: the first `refusals` sends are refused up front (nothing sent); with `lose_next`, the
/// next send's answer is lost (a transport error: `Unavailable`) while the node receives it and
/// starts the payment 2 s later; with `frozen`, `info()` reports that best block forever (a
/// node that stopped following the chain). Everything else is the real node.
pub struct FaultyNode {
    inner: Arc<dyn LightningNode>,
    pub refusals: std::sync::atomic::AtomicU32,
    pub lose_next: std::sync::atomic::AtomicBool,
    pub frozen: std::sync::Mutex<Option<u32>>,
    /// The next this many hold-invoice settlements are acknowledged and not made (a
    /// settlement lost to a crash before the node persisted it).
    pub drop_settles: std::sync::atomic::AtomicU32,
}

#[allow(dead_code)] // each test file uses the knobs it needs
impl FaultyNode {
    pub fn new(inner: Arc<dyn LightningNode>) -> FaultyNode {
        FaultyNode {
            inner,
            refusals: std::sync::atomic::AtomicU32::new(0),
            lose_next: std::sync::atomic::AtomicBool::new(false),
            frozen: std::sync::Mutex::new(None),
            drop_settles: std::sync::atomic::AtomicU32::new(0),
        }
    }
}

#[async_trait::async_trait]
impl LightningNode for FaultyNode {
    async fn info(&self) -> Result<eddy_backends::lightning::NodeInfo, eddy_backends::LnError> {
        let mut info = self.inner.info().await?;
        if let Some(h) = *self.frozen.lock().unwrap_or_else(|e| e.into_inner()) {
            info.block_height = h;
        }
        Ok(info)
    }
    async fn create_hold_invoice(
        &self,
        req: &eddy_backends::lightning::HoldInvoiceRequest,
    ) -> Result<eddy_backends::lightning::HoldInvoice, eddy_backends::LnError> {
        self.inner.create_hold_invoice(req).await
    }
    async fn hold_invoice_state(
        &self,
        h: &PaymentHash,
    ) -> Result<eddy_backends::HoldInvoiceState, eddy_backends::LnError> {
        self.inner.hold_invoice_state(h).await
    }
    async fn settle_hold_invoice(&self, p: &eddy_core::types::Preimage) -> Result<(), eddy_backends::LnError> {
        let dropped = self
            .drop_settles
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        if dropped {
            return Ok(());
        }
        self.inner.settle_hold_invoice(p).await
    }
    async fn cancel_hold_invoice(&self, h: &PaymentHash) -> Result<(), eddy_backends::LnError> {
        self.inner.cancel_hold_invoice(h).await
    }
    async fn create_invoice(
        &self,
        p: &eddy_core::types::Preimage,
        amount_msat: u64,
        expiry_secs: u32,
        description: &str,
    ) -> Result<eddy_backends::lightning::HoldInvoice, eddy_backends::LnError> {
        self.inner
            .create_invoice(p, amount_msat, expiry_secs, description)
            .await
    }
    async fn pay_invoice(
        &self,
        bolt11: &str,
        params: &eddy_backends::PayParams,
    ) -> Result<PaymentHash, eddy_backends::LnError> {
        use std::sync::atomic::Ordering;
        if self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(eddy_backends::LnError::Refused(
                "no route (injected): nothing sent".into(),
            ));
        }
        if self.lose_next.swap(false, Ordering::SeqCst) {
            let (inner, bolt11, params, delay) = (
                self.inner.clone(),
                bolt11.to_string(),
                params.clone(),
                std::time::Duration::from_secs(2),
            );
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = inner.pay_invoice(&bolt11, &params).await;
            });
            return Err(eddy_backends::LnError::Unavailable(
                "connection reset (injected): the node may have received the send".into(),
            ));
        }
        self.inner.pay_invoice(bolt11, params).await
    }
    async fn payment_status(&self, h: &PaymentHash) -> Result<eddy_backends::PaymentStatus, eddy_backends::LnError> {
        self.inner.payment_status(h).await
    }
    async fn channels(&self) -> Result<Vec<eddy_backends::lightning::ChannelInfo>, eddy_backends::LnError> {
        self.inner.channels().await
    }
    async fn new_address(&self) -> Result<bitcoin::Address, eddy_backends::LnError> {
        self.inner.new_address().await
    }
    async fn wallet_balance(&self) -> Result<eddy_backends::lightning::WalletBalance, eddy_backends::LnError> {
        self.inner.wallet_balance().await
    }
    async fn send_outputs(
        &self,
        outputs: &[(bitcoin::ScriptBuf, Amount)],
        fee_rate: bitcoin::FeeRate,
    ) -> Result<bitcoin::Transaction, eddy_backends::LnError> {
        self.inner.send_outputs(outputs, fee_rate).await
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<eddy_backends::LnEvent> {
        self.inner.subscribe()
    }
    fn restricts_last_hop(&self) -> bool {
        self.inner.restricts_last_hop()
    }
    fn settle_deadline_delta(&self) -> u32 {
        self.inner.settle_deadline_delta()
    }
}
