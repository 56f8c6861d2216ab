//! `eddy demo`: a loop-out on a bare machine. Starts Eddy's devnet (blocks validated by
//! libbitcoinkernel; or a real regtest bitcoind when `BITCOIND_EXE` / `BITCOIND_RPC_URL` is set,
//! see `eddy_lab`, and the demo says which), two embedded LDK nodes (the swap server's and the client's) with a
//! channel from the server to the client, the server engine with its HTTP API on 127.0.0.1 and
//! the client engine talking to it, both with SQLite stores, runs one loop-out, mining blocks as soon as the swap needs them, and reports
//! what happened with the real numbers. [`run_loop_out`] returns the numbers so tests can
//! assert them exactly. `EDDY_DEMO_TRACE=1` prints each state change with its time;
//! `EDDY_DEMO_DIR=<dir>` keeps the nodes' logs and the stores there.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use bitcoin::{Amount, FeeRate, Network, Txid};
use eddy_backends::bitcoind::{BitcoindAuth, BitcoindSource};
use eddy_backends::ldk::{LdkChainSource, LdkConfig, LdkNode};
use eddy_backends::{ChainSource, HoldInvoiceState, LightningNode};
use eddy_client::loop_in::{LoopInClient, LoopInOptions};
use eddy_client::{
    ApiCallError, ClientConfig, HttpSwapServer, LoopInApi, LoopOutApi, LoopOutClient, SwapServerApi, SwapState,
};
use eddy_core::fees::FeePolicy;
use eddy_core::sm::{loop_out_client, loop_out_server};
use eddy_core::types::{Preimage, SwapId};
use eddy_core::validate::{LoopOutCreate, LoopOutLimits, LoopOutOffer};
use eddy_lab::{Lab, LabConfig, WAIT};
use eddy_server::http::HttpServer;
use eddy_server::{SeedKeys, ServerConfig, SwapServer};
use eddy_store::{SqliteStore, SwapStore};

/// The server engine reached in-process (the daemons speak HTTP; the demo keeps one process).
struct InProcess(Arc<SwapServer>);

/// A server engine's refusal as the HTTP API would answer it (the same status for each kind).
fn refused(e: eddy_server::ServerError) -> ApiCallError {
    use eddy_server::ServerError as E;
    let (code, status) = match &e {
        E::Invalid(_) => (400, "400 Bad Request"),
        E::NotFound(_) => (404, "404 Not Found"),
        E::Duplicate(_) => (409, "409 Conflict"),
        E::Unavailable(_) | E::Backend(_) | E::Store(_) => (503, "503 Service Unavailable"),
    };
    ApiCallError::Answered {
        kind: eddy_client::ErrorKind::of_status(code),
        status: status.into(),
        message: e.to_string(),
    }
}

#[async_trait]
impl LoopOutApi for InProcess {
    async fn loop_out(&self, req: &LoopOutCreate) -> Result<LoopOutOffer, ApiCallError> {
        self.0.loop_out.create(req).await.map_err(refused)
    }

    async fn push_preimage(&self, preimage: &Preimage) -> Result<(), ApiCallError> {
        self.0.loop_out.push_preimage(preimage).await.map_err(refused)
    }

    async fn cosign_claim(
        &self,
        id: &SwapId,
        _preimage: &Preimage,
        nonce: &eddy_core::musig::PubNonceBytes,
        tx: &bitcoin::Transaction,
        index: usize,
        prevouts: &[bitcoin::TxOut],
    ) -> Result<(eddy_core::musig::PubNonceBytes, eddy_core::musig::PartialSigBytes), ApiCallError> {
        let prevouts = (tx.input.len() > 1).then_some(prevouts);
        self.0
            .loop_out
            .cosign_claim(id, nonce, tx, index, prevouts)
            .await
            .map_err(refused)
    }

    fn batches_claims(&self) -> bool {
        true
    }
}

#[async_trait]
impl LoopInApi for InProcess {
    async fn loop_in_fee(&self, amount: Amount) -> Result<Amount, ApiCallError> {
        self.0.loop_in.quote(amount).map(|q| q.swap_fee).map_err(refused)
    }

    async fn loop_in(
        &self,
        req: &eddy_core::validate::LoopInCreate,
    ) -> Result<eddy_core::validate::LoopInOffer, ApiCallError> {
        self.0.create_loop_in(req).await.map_err(refused)
    }

    async fn swap_state(&self, id: &SwapId) -> Result<SwapState, ApiCallError> {
        let name = match self.0.loop_out.swap(id).await {
            Ok((_, r)) => eddy_store::state_name(&r.state),
            Err(_) => self
                .0
                .loop_in
                .swap(id)
                .await
                .map(|(_, r)| eddy_store::state_name(&r.state))
                .map_err(refused)?,
        };
        Ok(SwapState::from_name(&name))
    }

    async fn claim_request(
        &self,
        id: &SwapId,
    ) -> Result<(eddy_core::musig::PubNonceBytes, eddy_client::ClaimToSign), ApiCallError> {
        let ask = self.0.loop_in.claim_session(id).await.map_err(refused)?;
        Ok((
            ask.nonce,
            eddy_client::ClaimToSign::Transaction {
                tx: ask.tx,
                index: ask.index,
                prevouts: Some(ask.prevouts),
            },
        ))
    }

    async fn claim_cosign(
        &self,
        id: &SwapId,
        nonce: &eddy_core::musig::PubNonceBytes,
        partial: &eddy_core::musig::PartialSigBytes,
    ) -> Result<(), ApiCallError> {
        self.0
            .loop_in
            .claim_cosigned(id, nonce, partial)
            .await
            .map(|_| ())
            .map_err(refused)
    }

    async fn cosign_refund(
        &self,
        id: &SwapId,
        nonce: &eddy_core::musig::PubNonceBytes,
        tx: &bitcoin::Transaction,
    ) -> Result<(eddy_core::musig::PubNonceBytes, eddy_core::musig::PartialSigBytes), ApiCallError> {
        self.0.loop_in.cosign_refund(id, nonce, tx).await.map_err(refused)
    }
}

/// What a demo loop-out did.
#[derive(Clone, Debug)]
pub struct LoopOutReport {
    /// The swap.
    pub swap_id: SwapId,
    /// HTLC value.
    pub amount: Amount,
    /// Swap invoice amount paid by the client.
    pub swap_invoice: Amount,
    /// Prepay paid by the client.
    pub prepay: Amount,
    /// HTLC expiry height.
    pub expiry: u32,
    /// The HTLC transaction.
    pub htlc_txid: Txid,
    /// The server's fee for publishing it.
    pub publish_fee: Amount,
    /// The client's claim.
    pub claim_txid: Txid,
    /// Its fee.
    pub claim_fee: Amount,
    /// Client channel balance (sat) before / after.
    pub client_ln: (u64, u64),
    /// Client on-chain balance (sat) before / after.
    pub client_chain: (u64, u64),
    /// Server channel balance (sat) before / after.
    pub server_ln: (u64, u64),
    /// Server swap wallet balance (sat) before / after.
    pub server_chain: (u64, u64),
    /// Blocks mined during the swap.
    pub blocks: u32,
    /// Virtual size of the HTLC transaction (the server's wallet transaction, change included).
    pub htlc_tx_vsize: u64,
    /// Virtual size of the claim.
    pub claim_vsize: u64,
    /// Wall time from request to the client's claim confirmed and the server settled.
    pub elapsed: Duration,
}

/// The demo server's fees: 1,000 sat + 0.5 %.
pub fn fees() -> FeePolicy {
    FeePolicy {
        base_fee: Amount::from_sat(1_000),
        fee_ppm: 5_000,
        min_amount: Amount::from_sat(10_000),
        max_amount: Amount::from_sat(1_000_000),
        prepay: Amount::from_sat(1_000),
    }
}

/// The runtime the engines and LDK nodes share, and the chain source on `lab`'s RPC (estimates
/// falling back to 2 sat/vB).
pub fn runtime_and_chain(lab: &Lab) -> anyhow::Result<(tokio::runtime::Runtime, Arc<dyn ChainSource>)> {
    // ldk-node's background tasks share this runtime with the engines: 2 workers starve it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    let (_, _, user, password) = lab.chain.rpc_credentials();
    let chain: Arc<dyn ChainSource> = Arc::new(rt.block_on(BitcoindSource::connect(
        &lab.chain.url(),
        &BitcoindAuth::UserPass(user, password),
        FeeRate::from_sat_per_kwu(500),
    ))?);
    Ok((rt, chain))
}

pub(crate) async fn start_node(lab: &Lab, dir: &Path, chain: Arc<dyn ChainSource>) -> anyhow::Result<Arc<LdkNode>> {
    let (host, port, user, password) = lab.chain.rpc_credentials();
    let listen = eddy_lab::LabChain::free_port_pub()?;
    Ok(Arc::new(
        LdkNode::start(
            LdkConfig {
                data_dir: dir.to_path_buf(),
                network: Network::Regtest,
                listen: Some(format!("127.0.0.1:{listen}").parse()?),
                chain: LdkChainSource::BitcoindRpc {
                    host,
                    port,
                    user,
                    password,
                },
            },
            chain,
        )
        .await?,
    ))
}

fn balances(n: &LdkNode) -> (u64, u64) {
    let b = n.ldk().list_balances();
    (b.total_lightning_balance_sats, b.total_onchain_balance_sats)
}

/// Everything a loop-out needs, running: the lab's chain (the devnet, or a real bitcoind), the
/// server's and the client's embedded LDK nodes (server → client channel of 1,000,000 sat,
/// 500,000 pushed to the client), both engines with their SQLite stores. Tests build it with
/// their own server adapter.
///
/// Teardown order matters, also when a failing test unwinds through it: the nodes are stopped
/// while the runtime they run on is alive (ldk-node's `Node::stop` on a dropped runtime hits a
/// debug assertion, which aborts the whole test binary and hides the tests after it), then the
/// runtime and the RPC clients go, and the chain last (fields drop in declaration order).
pub struct Swapnet {
    /// The server's HTTP API, when the client talks to it over HTTP.
    pub http: Option<HttpServer>,
    /// The server engine.
    pub server: Arc<SwapServer>,
    /// The client's loop-out engine.
    pub client: LoopOutClient,
    /// The client's loop-in engine.
    pub client_in: LoopInClient,
    /// The server's node.
    pub server_ln: Arc<LdkNode>,
    /// The client's node.
    pub client_ln: Arc<LdkNode>,
    /// Chain source (bitcoind RPC against the lab's chain).
    pub chain: Arc<dyn ChainSource>,
    /// The client's store.
    pub client_store: Arc<dyn SwapStore>,
    /// The server's store.
    pub server_store: Arc<dyn SwapStore>,
    /// The runtime the nodes and engines run on.
    pub rt: tokio::runtime::Runtime,
    /// The chain.
    pub lab: Lab,
    /// Where everything lives.
    pub dir: std::path::PathBuf,
}

impl Drop for Swapnet {
    fn drop(&mut self) {
        // After `stop` these find the nodes stopped already and change nothing.
        drop(self.http.take());
        let _ = self.rt.block_on(self.server_ln.stop());
        let _ = self.rt.block_on(self.client_ln.stop());
    }
}

/// The demo server's settings: [`fees`], loop-out expiry 80 blocks, publication target 6, at
/// most 50 swaps in flight, 50,000 sat kept on-chain.
pub fn server_config() -> ServerConfig {
    ServerConfig {
        network: Network::Regtest,
        fees: fees(),
        expiry_delta: 80,
        publish_conf_target: 6,
        publish_batch_window: std::time::Duration::ZERO,
        claim_batch_window: std::time::Duration::ZERO,
        max_active_swaps: 50,
        onchain_reserve: Amount::from_sat(50_000),
    }
}

fn make_server(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    ln: &Arc<LdkNode>,
    chain: &Arc<dyn ChainSource>,
    store: &Arc<dyn SwapStore>,
) -> anyhow::Result<Arc<SwapServer>> {
    Ok(Arc::new(rt.block_on(SwapServer::new(
        server_config(),
        ln.clone(),
        chain.clone(),
        store.clone(),
        SeedKeys::load_or_create(dir, eddy_server::SEED_FILE)?,
    ))?))
}

/// The demo client's limits: swap fee ≤ 5,000 sat (prepay ≤ 2,000), miner fee ≤ 5,000,
/// routing ≤ 100, conf target 6, one HTLC confirmation.
pub fn client_config() -> ClientConfig {
    ClientConfig {
        network: Network::Regtest,
        limits: LoopOutLimits::with_fees(Amount::from_sat(5_000), Amount::from_sat(2_000)),
        max_miner_fee: Amount::from_sat(5_000),
        max_routing_fee: Amount::from_sat(100),
        conf_target: 6,
        htlc_confs: 1,
    }
}

fn make_client(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    ln: &Arc<LdkNode>,
    chain: &Arc<dyn ChainSource>,
    store: &Arc<dyn SwapStore>,
    api: Arc<dyn SwapServerApi>,
) -> anyhow::Result<(LoopOutClient, LoopInClient)> {
    let keys = SeedKeys::load_or_create(dir, eddy_client::SEED_FILE)?;
    let out = rt.block_on(LoopOutClient::new(
        client_config(),
        ln.clone(),
        chain.clone(),
        store.clone(),
        api.clone(),
        keys,
    ))?;
    let inn = rt.block_on(LoopInClient::new(
        client_config(),
        ln.clone(),
        chain.clone(),
        store.clone(),
        api,
        SeedKeys::load_or_create(dir, eddy_client::SEED_FILE)?,
    ))?;
    Ok((out, inn))
}

/// Serves the server's API on a free loopback port; the client's HTTP API signs its per-swap
/// calls with the client's keys from `dir`.
fn start_http(
    rt: &tokio::runtime::Runtime,
    server: &Arc<SwapServer>,
    dir: &Path,
) -> anyhow::Result<(Arc<dyn SwapServerApi>, HttpServer)> {
    let http = rt.block_on(HttpServer::start(
        eddy_server::http::router(server.clone(), terms(), RATE_LIMIT_PER_MINUTE),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    ))?;
    let client = HttpSwapServer::new(&http.url(), SeedKeys::load_or_create(dir, eddy_client::SEED_FILE)?)
        .map_err(|e| anyhow!(e))?;
    Ok((Arc::new(client), http))
}

/// Builds what the client talks to from the server engine and the server's node (tests use
/// this to put a tampering server in between).
pub type ApiFactory = Box<dyn FnOnce(Arc<SwapServer>, Arc<LdkNode>) -> Arc<dyn SwapServerApi>>;

/// What the demo puts in the server's swap wallet.
pub const SWAP_WALLET_FUNDS: u64 = 1_000_000;

/// Loop-out requests a client may make per minute.
pub const RATE_LIMIT_PER_MINUTE: usize = 20;

/// The terms the demo server publishes.
pub fn terms() -> eddy_server::http::Terms {
    let f = fees();
    eddy_server::http::Terms {
        network: "regtest".into(),
        min_amount_sat: f.min_amount.to_sat(),
        max_amount_sat: f.max_amount.to_sat(),
        base_fee_sat: f.base_fee.to_sat(),
        fee_ppm: f.fee_ppm,
        prepay_sat: f.prepay.to_sat(),
        expiry_delta: 80,
    }
}

/// Starts a [`Swapnet`] in `dir`. The client reaches the server over its HTTP API on
/// 127.0.0.1, unless `api` supplies something else (tests put a tampering server in between).
pub fn swapnet(dir: &Path, api: Option<ApiFactory>, say: &dyn Fn(String)) -> anyhow::Result<Swapnet> {
    let t0 = Instant::now();
    let lab = Lab::start(LabConfig::new(dir, 0)).context("starting the chain")?;
    say(format!(
        "chain: {}, regtest at height {}, RPC {} ({:.1} s)",
        lab.chain.describe(),
        lab.chain.tip()?.0,
        lab.chain.url(),
        t0.elapsed().as_secs_f64()
    ));
    let (rt, chain) = runtime_and_chain(&lab)?;
    let server_ln = rt.block_on(start_node(&lab, &dir.join("server-ldk"), chain.clone()))?;
    let client_ln = rt.block_on(start_node(&lab, &dir.join("client-ldk"), chain.clone()))?;
    let addr = rt.block_on(server_ln.new_address())?;
    lab.chain.fund(&addr, Amount::from_sat(2_000_000))?;
    lab.mine(1)?;
    eddy_lab::wait_synced(server_ln.ldk(), lab.chain.tip()?, WAIT)?;
    let client_addr = client_ln
        .ldk()
        .listening_addresses()
        .and_then(|a| a.first().cloned())
        .ok_or_else(|| anyhow!("client node has no listening address"))?;
    lab.open_channel_between(
        server_ln.ldk(),
        client_ln.ldk(),
        client_addr,
        Amount::from_sat(1_000_000),
        500_000_000,
    )?;
    say(format!(
        "lightning: server {} → client {}, channel 1,000,000 sat (500,000 pushed to the client) ({:.1} s)",
        server_ln.ldk().node_id(),
        client_ln.ldk().node_id(),
        t0.elapsed().as_secs_f64()
    ));
    let server_store: Arc<dyn SwapStore> = Arc::new(rt.block_on(SqliteStore::open(&dir.join("server.sqlite")))?);
    let client_store: Arc<dyn SwapStore> = Arc::new(rt.block_on(SqliteStore::open(&dir.join("client.sqlite")))?);
    let server = make_server(&rt, dir, &server_ln, &chain, &server_store)?;
    let (client_api, http): (Arc<dyn SwapServerApi>, Option<HttpServer>) = match api {
        Some(make) => (make(server.clone(), server_ln.clone()), None),
        None => {
            let (api, http) = start_http(&rt, &server, dir)?;
            say(format!("swap server API: {}", http.url()));
            (api, Some(http))
        }
    };
    let (client, client_in) = make_client(&rt, dir, &client_ln, &chain, &client_store, client_api)?;
    // The server funds HTLCs from its own swap wallet.
    lab.chain
        .fund(server.wallet_address(), Amount::from_sat(SWAP_WALLET_FUNDS))?;
    mine_synced(&lab, &[&server_ln, &client_ln], 1)?;
    rt.block_on(server.tick())?;
    say(format!(
        "swap wallet: {} with {} sat",
        server.wallet_address(),
        rt.block_on(server.wallet_balance()).spendable.to_sat()
    ));
    Ok(Swapnet {
        lab,
        rt,
        chain,
        server_ln,
        client_ln,
        server,
        client,
        client_in,
        client_store,
        http,
        server_store,
        dir: dir.to_path_buf(),
    })
}

impl Swapnet {
    /// Throws both engines (and the HTTP API) away and builds them again from their stores,
    /// seeds and nodes — what a daemon restart after a crash does. Nothing in memory survives.
    pub fn restart_engines(&mut self) -> anyhow::Result<()> {
        drop(self.http.take());
        self.server = make_server(&self.rt, &self.dir, &self.server_ln, &self.chain, &self.server_store)?;
        let (api, http) = start_http(&self.rt, &self.server, &self.dir)?;
        self.http = Some(http);
        (self.client, self.client_in) = make_client(
            &self.rt,
            &self.dir,
            &self.client_ln,
            &self.chain,
            &self.client_store,
            api,
        )?;
        Ok(())
    }

    /// Waits until the server's node holds both HTLCs (swap and prepay) of every loop-out in
    /// `ids`.
    pub fn wait_held(&self, ids: &[SwapId]) -> anyhow::Result<()> {
        eddy_lab::wait_until("all payments held", WAIT, || {
            ids.iter().all(|id| {
                let Ok((_, rec)) = self.rt.block_on(self.server.loop_out.swap(id)) else {
                    return false;
                };
                [rec.htlc.payment_hash, rec.prepay_preimage.payment_hash()]
                    .iter()
                    .all(|h| {
                        matches!(
                            self.rt.block_on(self.server_ln.hold_invoice_state(h)),
                            Ok(HoldInvoiceState::Accepted { .. })
                        )
                    })
            })
        })?;
        Ok(())
    }

    /// Funds the client node's wallet with 1,000,000 sat (one block mined) and waits until it
    /// can spend them.
    pub fn fund_client_wallet(&self) -> anyhow::Result<()> {
        let addr = self.rt.block_on(self.client_ln.new_address())?;
        self.lab.chain.fund(&addr, Amount::from_sat(1_000_000))?;
        self.mine(1)?;
        eddy_lab::wait_until("client wallet funded", WAIT, || {
            let _ = self.client_ln.ldk().sync_wallets();
            self.client_ln.ldk().list_balances().spendable_onchain_balance_sats > 0
        })?;
        Ok(())
    }

    /// Mines `n` blocks and waits until both Lightning nodes have processed them (their own
    /// chain polling runs only every 2 s).
    pub fn mine(&self, n: u32) -> anyhow::Result<()> {
        mine_synced(&self.lab, &[&self.server_ln, &self.client_ln], n)
    }

    /// Stops both nodes, then (dropping the rest) the chain.
    pub fn stop(mut self) -> anyhow::Result<()> {
        drop(self.http.take());
        self.rt.block_on(self.server_ln.stop())?;
        self.rt.block_on(self.client_ln.stop())?;
        Ok(())
    }
}

pub(crate) fn mine_synced(lab: &Lab, nodes: &[&Arc<LdkNode>], n: u32) -> anyhow::Result<()> {
    lab.mine(n)?;
    let tip = lab.chain.tip()?;
    for node in nodes {
        eddy_lab::wait_synced(node.ldk(), tip, WAIT)?;
    }
    Ok(())
}

/// The in-process server adapter.
pub fn in_process() -> ApiFactory {
    Box::new(|server, _node| Arc::new(InProcess(server)))
}

/// Runs the whole demo in `dir` and returns the report (prints progress when `verbose`).
pub fn run_loop_out(dir: &Path, amount: Amount, verbose: bool) -> anyhow::Result<LoopOutReport> {
    let say = |s: String| {
        if verbose {
            println!("{s}");
        }
    };
    let net = swapnet(dir, None, &say)?;
    let report = net.loop_out(amount, &say)?;
    net.stop()?;
    Ok(report)
}

/// What a demo loop-in did.
#[derive(Clone, Debug)]
pub struct LoopInReport {
    /// The swap.
    pub swap_id: SwapId,
    /// HTLC value the client funded.
    pub amount: Amount,
    /// The server's fee.
    pub swap_fee: Amount,
    /// The funding transaction and its fee (paid by the client's wallet).
    pub funding: (Txid, Amount),
    /// The server's claim and its fee.
    pub claim: (Txid, Amount),
    /// Client channel balance (sat) before / after.
    pub client_ln: (u64, u64),
    /// Client on-chain balance (sat) before / after.
    pub client_chain: (u64, u64),
    /// Server swap wallet (sat) before / after.
    pub server_chain: (u64, u64),
    /// Blocks mined.
    pub blocks: u32,
    /// Wall time from the request to both sides done.
    pub elapsed: Duration,
}

impl Swapnet {
    /// Runs one loop-in of `amount` from the client node's wallet, mining blocks as soon as the
    /// swap needs one, and reports what happened.
    pub fn loop_in(&self, amount: Amount) -> anyhow::Result<LoopInReport> {
        use eddy_core::sm::{loop_in_client as lic, loop_in_server as lis};
        let bal = |n: &LdkNode| {
            let _ = n.ldk().sync_wallets();
            balances(n)
        };
        let (ln0, chain0) = bal(&self.client_ln);
        let wallet0 = self.rt.block_on(self.server.wallet_balance()).spendable.to_sat();
        let t0 = Instant::now();
        let id = self
            .rt
            .block_on(self.client_in.loop_in(amount, LoopInOptions::default()))?;
        let mut blocks = 0;
        loop {
            self.rt.block_on(self.server.tick())?;
            self.rt.block_on(self.client_in.tick())?;
            // A claim round every client co-signed: the server's run loop runs a pass at once
            // (woken by the last co-signature), which broadcasts it; so does this harness.
            if self
                .server
                .loop_in
                .claim_round()
                .is_some_and(|r| r.members.iter().all(|&(_, key_path, signed)| !key_path || signed))
            {
                self.rt.block_on(self.server.tick())?;
            }
            let (_, c) = self.rt.block_on(self.client_in.swap(&id))?;
            let (_, s) = self.rt.block_on(self.server.loop_in.swap(&id))?;
            match (&c.state, &s.state) {
                (lic::State::Succeeded, lis::State::Succeeded) => break,
                (lic::State::Refunding { .. } | lic::State::Refunded { .. } | lic::State::Failed(_), _) => {
                    return Err(anyhow!("the loop-in failed: {:?}", c.state))
                }
                (lic::State::Funding { .. }, _) | (_, lis::State::Claiming { .. }) => {
                    self.mine(1)?;
                    blocks += 1;
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
            if t0.elapsed() > Duration::from_secs(120) {
                return Err(anyhow!("the loop-in did not finish: {:?} / {:?}", c.state, s.state));
            }
        }
        let elapsed = t0.elapsed();
        let (_, c) = self.rt.block_on(self.client_in.swap(&id))?;
        let (_, s) = self.rt.block_on(self.server.loop_in.swap(&id))?;
        let funding_out = s.funding.ok_or_else(|| anyhow!("no funding recorded"))?;
        let funding_tx = self
            .rt
            .block_on(self.chain.transaction(&funding_out.txid))?
            .ok_or_else(|| anyhow!("funding unknown"))?
            .tx;
        let funding_fee = self
            .rt
            .block_on(eddy_backends::fee_paid(self.chain.as_ref(), &funding_tx))?;
        let claim_txid = s
            .claim
            .as_ref()
            .and_then(|c| c.last())
            .ok_or_else(|| anyhow!("no claim"))?;
        let claim_tx = self
            .rt
            .block_on(self.chain.transaction(&claim_txid))?
            .ok_or_else(|| anyhow!("claim unknown"))?
            .tx;
        let claim_fee = amount - claim_tx.output.iter().map(|o| o.value).sum::<Amount>();
        let invoice = amount - c.offer.swap_fee;
        eddy_lab::wait_until("client balances", WAIT, || {
            let (ln, chain) = bal(&self.client_ln);
            ln == ln0 + invoice.to_sat() && chain == chain0 - (amount + funding_fee).to_sat()
        })?;
        self.rt.block_on(self.server.tick())?;
        let wallet1 = self.rt.block_on(self.server.wallet_balance()).spendable.to_sat();
        let (ln1, chain1) = bal(&self.client_ln);
        Ok(LoopInReport {
            swap_id: id,
            amount,
            swap_fee: c.offer.swap_fee,
            funding: (funding_out.txid, funding_fee),
            claim: (claim_txid, claim_fee),
            client_ln: (ln0, ln1),
            client_chain: (chain0, chain1),
            server_chain: (wallet0, wallet1),
            blocks,
            elapsed,
        })
    }
}

impl Swapnet {
    /// Runs one loop-out of `amount` on this swapnet, mining blocks as soon as the swap needs
    /// one, and reports what happened (`say` gets progress lines).
    pub fn loop_out(&self, amount: Amount, say: &dyn Fn(String)) -> anyhow::Result<LoopOutReport> {
        loop_out_on(self, amount, say)
    }
}

fn loop_out_on(net: &Swapnet, amount: Amount, say: &dyn Fn(String)) -> anyhow::Result<LoopOutReport> {
    let Swapnet {
        lab,
        rt,
        chain,
        server_ln,
        client_ln,
        server,
        client,
        ..
    } = net;
    let (client_ln0, client_chain0) = balances(client_ln);
    let server_ln0 = balances(server_ln).0;
    let server_chain0 = rt.block_on(server.wallet_balance()).spendable.to_sat();
    let dest = rt.block_on(client_ln.new_address())?.script_pubkey();
    let start_height = lab.chain.tip()?.0;
    let t_swap = Instant::now();
    if std::env::var_os("EDDY_DEMO_TRACE").is_some() {
        let mut events = server_ln.subscribe();
        rt.spawn(async move {
            while let Ok(e) = events.recv().await {
                let what = match e {
                    eddy_backends::LnEvent::Invoice { payment_hash, state } => {
                        format!("invoice {payment_hash:.8}… {}", state_tag_ln(&state))
                    }
                    eddy_backends::LnEvent::Payment { payment_hash, .. } => format!("payment {payment_hash:.8}…"),
                };
                eprintln!("{:>6.3} s  server node event: {what}", t_swap.elapsed().as_secs_f64());
            }
        });
    }
    let id = rt.block_on(client.loop_out(amount, dest))?;
    let (_, rec) = rt.block_on(client.swap(&id))?;
    say(format!(
        "loop-out {}: {} sat, HTLC expiry at height {} (now {}), address {}",
        id,
        amount.to_sat(),
        rec.offer.expiry,
        start_height,
        rec.offer.htlc_address
    ));
    // Drive both engines; mine a block whenever something waits for one.
    let mut blocks = 0u32;
    let deadline = Instant::now() + Duration::from_secs(120);
    let trace = std::env::var_os("EDDY_DEMO_TRACE").is_some();
    let mut last = String::new();
    loop {
        rt.block_on(server.tick())?;
        rt.block_on(client.tick())?;
        let (_, c) = rt.block_on(client.swap(&id))?;
        let (_, s) = rt.block_on(server.loop_out.swap(&id))?;
        if trace {
            let now = format!("{} | {:?}", eddy_store::state_name(&c.state), s.state);
            if now != last {
                eprintln!("{:>6.3} s  client {now}", t_swap.elapsed().as_secs_f64());
                last = now;
            }
        }
        match (&c.state, &s.state) {
            (loop_out_client::State::Succeeded { .. }, loop_out_server::State::Succeeded) => break,
            (loop_out_client::State::Failed(r), _) => return Err(anyhow!("the client's swap failed: {r:?}")),
            (_, loop_out_server::State::Canceled(r)) => return Err(anyhow!("the server canceled: {r:?}")),
            (loop_out_client::State::HtlcConfirming { .. }, _) | (loop_out_client::State::Claiming { .. }, _) => {
                mine_synced(lab, &[server_ln, client_ln], 1)?;
                blocks += 1;
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "the swap did not finish: client {:?}, server {:?}",
                c.state,
                s.state
            ));
        }
    }
    let elapsed = t_swap.elapsed();
    let (_, c) = rt.block_on(client.swap(&id))?;
    let (_, s) = rt.block_on(server.loop_out.swap(&id))?;
    let (claim_txid, claim_fee) = c
        .confirmed_claim()
        .ok_or_else(|| anyhow!("no confirmed claim recorded"))?;
    let funding = s.funding.ok_or_else(|| anyhow!("no HTLC recorded"))?;
    let funding_tx = rt
        .block_on(chain.transaction(&funding.txid))?
        .ok_or_else(|| anyhow!("HTLC tx unknown"))?
        .tx;
    let publish_fee = rt.block_on(eddy_backends::fee_paid(chain.as_ref(), &funding_tx))?;
    // Let both wallets see the final block, then wait until the channel has settled.
    for n in [&server_ln, &client_ln] {
        eddy_lab::wait_synced(n.ldk(), lab.chain.tip()?, WAIT)?;
    }
    let swap_invoice = Amount::from_sat(s.terms.swap_invoice_msat / 1000);
    let prepay = Amount::from_sat(s.terms.prepay_msat / 1000);
    let paid = (swap_invoice + prepay).to_sat();
    eddy_lab::wait_until("channel balances to settle", WAIT, || {
        balances(client_ln).0 == client_ln0 - paid && balances(server_ln).0 == server_ln0 + paid
    })?;
    eddy_lab::wait_until("wallets to see the claim", WAIT, || {
        let _ = client_ln.ldk().sync_wallets();
        let _ = server_ln.ldk().sync_wallets();
        balances(client_ln).1 == client_chain0 + (amount - claim_fee).to_sat()
    })?;
    rt.block_on(server.tick())?;
    let server_chain1 = rt.block_on(server.wallet_balance()).spendable.to_sat();
    let report = LoopOutReport {
        swap_id: id,
        amount,
        swap_invoice,
        prepay,
        expiry: c.offer.expiry,
        htlc_txid: funding.txid,
        publish_fee,
        claim_txid,
        claim_fee,
        client_ln: (client_ln0, balances(client_ln).0),
        client_chain: (client_chain0, balances(client_ln).1),
        server_ln: (server_ln0, balances(server_ln).0),
        server_chain: (server_chain0, server_chain1),
        blocks,
        elapsed,
        htlc_tx_vsize: funding_tx.vsize() as u64,
        claim_vsize: rt
            .block_on(chain.transaction(&claim_txid))?
            .map(|t| t.tx.vsize() as u64)
            .unwrap_or(0),
    };
    Ok(report)
}

fn state_tag_ln(s: &eddy_backends::HoldInvoiceState) -> &'static str {
    match s {
        eddy_backends::HoldInvoiceState::Open => "open",
        eddy_backends::HoldInvoiceState::Accepted { .. } => "accepted",
        eddy_backends::HoldInvoiceState::Settled { .. } => "settled",
        eddy_backends::HoldInvoiceState::Canceled => "canceled",
    }
}

/// `eddy demo`.
pub fn run() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    // EDDY_DEMO_DIR keeps everything (node logs, stores) for inspection.
    let dir = match std::env::var_os("EDDY_DEMO_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => tmp.path().to_path_buf(),
    };
    let amount = Amount::from_sat(250_000);
    let chain = match eddy_lab::ChainBackend::from_env() {
        eddy_lab::ChainBackend::Devnet => "the embedded devnet".to_string(),
        eddy_lab::ChainBackend::BitcoindExe(exe) => format!("a regtest bitcoind ({})", exe.display()),
        eddy_lab::ChainBackend::BitcoindRpc { url, .. } => format!("the regtest bitcoind at {url}"),
    };
    println!("Eddy demo: one loop-out of {} sat on {chain}\n", amount.to_sat());
    let say = |s: String| println!("{s}");
    let net = swapnet(&dir, None, &say)?;
    let result = demo_both(&net, amount);
    net.stop()?;
    result
}

fn demo_both(net: &Swapnet, amount: Amount) -> anyhow::Result<()> {
    let say = |s: String| println!("{s}");
    let r = net.loop_out(amount, &say)?;
    println!();
    println!(
        "swap {} succeeded in {:.2} s ({} blocks mined)",
        r.swap_id,
        r.elapsed.as_secs_f64(),
        r.blocks
    );
    println!(
        "  client paid      {:>9} sat swap invoice + {} sat prepay over Lightning",
        r.swap_invoice.to_sat(),
        r.prepay.to_sat()
    );
    println!(
        "  server fee       {:>9} sat (swap invoice + prepay − HTLC value)",
        (r.swap_invoice + r.prepay - r.amount).to_sat()
    );
    println!(
        "  HTLC             {:>9} sat in {} (server paid {} sat miner fee), expiry height {}",
        r.amount.to_sat(),
        r.htlc_txid,
        r.publish_fee.to_sat(),
        r.expiry
    );
    println!(
        "  claim            {:>9} sat to the client's wallet in {} ({} sat miner fee, {} vB, {})",
        (r.amount - r.claim_fee).to_sat(),
        r.claim_txid,
        r.claim_fee.to_sat(),
        r.claim_vsize,
        if r.claim_vsize < 140 {
            "MuSig2 key path co-signed by the server"
        } else {
            "script path"
        }
    );
    println!(
        "  on-chain         {:>9} vB per swap (HTLC transaction {} vB + claim {} vB)",
        r.htlc_tx_vsize + r.claim_vsize,
        r.htlc_tx_vsize,
        r.claim_vsize
    );
    println!("  client channel   {:>9} → {} sat", r.client_ln.0, r.client_ln.1);
    println!("  client on-chain  {:>9} → {} sat", r.client_chain.0, r.client_chain.1);
    println!("  server channel   {:>9} → {} sat", r.server_ln.0, r.server_ln.1);
    println!(
        "  server swap wallet {:>7} → {} sat",
        r.server_chain.0, r.server_chain.1
    );
    // And back: a loop-in from the coins the loop-out brought on-chain.
    let amount_in = Amount::from_sat(90_000);
    println!(
        "\nEddy demo: one loop-in of {} sat from the client's on-chain wallet\n",
        amount_in.to_sat()
    );
    let i = net.loop_in(amount_in)?;
    println!(
        "swap {} succeeded in {:.2} s ({} blocks mined)",
        i.swap_id,
        i.elapsed.as_secs_f64(),
        i.blocks
    );
    println!(
        "  client funded    {:>9} sat HTLC in {} ({} sat miner fee)",
        i.amount.to_sat(),
        i.funding.0,
        i.funding.1.to_sat()
    );
    println!("  server fee       {:>9} sat", i.swap_fee.to_sat());
    println!(
        "  client received  {:>9} sat over Lightning (its invoice: amount − fee)",
        (i.amount - i.swap_fee).to_sat()
    );
    println!(
        "  server claimed   {:>9} sat into its swap wallet in {} ({} sat miner fee)",
        (i.amount - i.claim.1).to_sat(),
        i.claim.0,
        i.claim.1.to_sat()
    );
    println!("  client channel   {:>9} → {} sat", i.client_ln.0, i.client_ln.1);
    println!("  client on-chain  {:>9} → {} sat", i.client_chain.0, i.client_chain.1);
    println!(
        "  server swap wallet {:>7} → {} sat",
        i.server_chain.0, i.server_chain.1
    );
    Ok(())
}
