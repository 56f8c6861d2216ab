//! The lab's chain: the embedded devnet served over RPC on 127.0.0.1, or a real bitcoind
//! (started from `BITCOIND_EXE` in regtest, or reached at `BITCOIND_RPC_URL`). Everything the
//! lab does to the chain goes through bitcoind's RPC. Reorgs with chosen transactions work on
//! both (bitcoind: `invalidateblock` + `generateblock`); the one devnet-only extra, a faked fee
//! estimate, says so when the backend cannot do it ([`LabChain::is_devnet`] lets a test skip).
//!
//! The bitcoind the lab starts runs **without `-txindex`** (production must not depend on it,
//! see `eddy_backends::bitcoind`), with `-rpcservertimeout` short so that an idle RPC connection
//! does not hold its shutdown for 30 s.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use bitcoin::hex::DisplayHex;
use bitcoin::{Address, Amount, Block, BlockHash, Network, ScriptBuf, Transaction, Txid};
use eddy_backends::bitcoind::rpc::RpcClient;
use eddy_devnet::{anyone_can_spend_spk, Auth, Devnet, RpcConfig, RpcServer};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::faucet::Faucet;
use crate::{wait_until, LabError};

/// Which chain the lab runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainBackend {
    /// Eddy's devnet (libbitcoinkernel-validated), in-process.
    Devnet,
    /// A bitcoind binary to start in regtest.
    BitcoindExe(PathBuf),
    /// A running regtest bitcoind.
    BitcoindRpc {
        /// `http://host:port`.
        url: String,
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

impl ChainBackend {
    /// `BITCOIND_EXE` → start that bitcoind; `BITCOIND_RPC_URL` (with `BITCOIND_RPC_USER` and
    /// `BITCOIND_RPC_PASSWORD`, or `BITCOIND_RPC_COOKIE`) → use that one; else the devnet.
    pub fn from_env() -> ChainBackend {
        if let Some(exe) = std::env::var_os("BITCOIND_EXE").filter(|v| !v.is_empty()) {
            return ChainBackend::BitcoindExe(PathBuf::from(exe));
        }
        if let Ok(url) = std::env::var("BITCOIND_RPC_URL") {
            let (user, password) = match std::env::var("BITCOIND_RPC_COOKIE") {
                Ok(path) => std::fs::read_to_string(path)
                    .ok()
                    .and_then(|c| c.trim().split_once(':').map(|(u, p)| (u.to_string(), p.to_string())))
                    .unwrap_or_default(),
                Err(_) => (
                    std::env::var("BITCOIND_RPC_USER").unwrap_or_default(),
                    std::env::var("BITCOIND_RPC_PASSWORD").unwrap_or_default(),
                ),
            };
            return ChainBackend::BitcoindRpc { url, user, password };
        }
        ChainBackend::Devnet
    }
}

enum Running {
    Devnet { devnet: Devnet, server: Option<RpcServer> },
    Bitcoind { child: Option<Child> },
}

/// The running chain.
pub struct LabChain {
    rt: tokio::runtime::Runtime,
    rpc: RpcClient,
    running: Running,
    host: String,
    port: u16,
    user: String,
    password: String,
    faucet: Mutex<Faucet>,
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests on one machine).
pub fn free_port() -> Result<u16, LabError> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

fn chain_err(e: impl std::fmt::Display) -> LabError {
    LabError::Chain(e.to_string())
}

/// Blocks mined at the start so the faucet holds mature coinbase coins (a coinbase can be
/// spent 100 blocks after it; 110 leaves ten 50-BTC coins).
const INITIAL_BLOCKS: u32 = 110;

/// bitcoind's `-rpcservertimeout` in the lab: an idle keep-alive connection (the lab's own RPC
/// client, ldk-node's) is closed after this long, so `stop` finishes within it instead of 30 s.
/// Long enough for every call the lab and Eddy make (`waitfornewblock` polls are shorter).
const RPC_SERVER_TIMEOUT_SECS: u32 = 5;

impl LabChain {
    /// A free TCP port on 127.0.0.1.
    pub fn free_port_pub() -> Result<u16, LabError> {
        free_port()
    }

    /// Starts (or connects to) the chain and prepares the faucet.
    pub fn start(backend: &ChainBackend, dir: &Path) -> Result<LabChain, LabError> {
        std::fs::create_dir_all(dir)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let password = rand_password();
        let (running, url, user, password) = match backend {
            ChainBackend::Devnet => {
                let devnet = Devnet::open(&dir.join("devnet")).map_err(chain_err)?;
                let server = rt.block_on(RpcServer::start(
                    devnet.clone(),
                    RpcConfig {
                        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                        auth: Auth::UserPass {
                            user: "eddy".into(),
                            password: password.clone(),
                        },
                    },
                ))?;
                let url = server.url();
                (
                    Running::Devnet {
                        devnet,
                        server: Some(server),
                    },
                    url,
                    "eddy".to_string(),
                    password,
                )
            }
            ChainBackend::BitcoindExe(exe) => {
                let port = free_port()?;
                let p2p = free_port()?;
                let datadir = dir.join("bitcoind");
                std::fs::create_dir_all(&datadir)?;
                let child = Command::new(exe)
                    .arg("-regtest")
                    .arg(format!("-datadir={}", datadir.display()))
                    .arg(format!("-rpcport={port}"))
                    .arg(format!("-port={p2p}"))
                    .arg("-rpcbind=127.0.0.1")
                    .arg("-rpcallowip=127.0.0.1")
                    .arg("-rpcuser=eddy")
                    .arg(format!("-rpcpassword={password}"))
                    .args(["-server=1", "-listen=0", "-fallbackfee=0.0002", "-printtoconsole=0"])
                    .arg(format!("-rpcservertimeout={RPC_SERVER_TIMEOUT_SECS}"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| LabError::Chain(format!("starting {}: {e}", exe.display())))?;
                (
                    Running::Bitcoind { child: Some(child) },
                    format!("http://127.0.0.1:{port}"),
                    "eddy".to_string(),
                    password,
                )
            }
            ChainBackend::BitcoindRpc { url, user, password } => (
                Running::Bitcoind { child: None },
                url.clone(),
                user.clone(),
                password.clone(),
            ),
        };
        let chain = LabChain::over(rt, running, &url, &user, &password)?;
        wait_until("the chain's RPC to answer", Duration::from_secs(60), || {
            chain.rpc::<Value>("getblockchaininfo", json!([])).is_ok()
        })?;
        chain.require_regtest("the lab needs regtest")?;
        chain.mine(INITIAL_BLOCKS)?;
        Ok(chain)
    }

    /// A chain reached over RPC at `url`, with an empty faucet.
    fn over(
        rt: tokio::runtime::Runtime,
        running: Running,
        url: &str,
        user: &str,
        password: &str,
    ) -> Result<LabChain, LabError> {
        let rpc = RpcClient::new(url, user, password).map_err(chain_err)?;
        let hostport = url.trim_start_matches("http://").trim_end_matches('/');
        let (host, port) = hostport
            .rsplit_once(':')
            .and_then(|(h, p)| p.parse().ok().map(|p| (h.to_string(), p)))
            .ok_or_else(|| LabError::Chain(format!("bad RPC url {url}")))?;
        Ok(LabChain {
            rt,
            rpc,
            running,
            host,
            port,
            user: user.to_string(),
            password: password.to_string(),
            faucet: Mutex::new(Faucet::default()),
        })
    }

    /// Refuses a node not on regtest (`why`: what needs it).
    fn require_regtest(&self, why: &str) -> Result<(), LabError> {
        let info: Value = self.rpc("getblockchaininfo", json!([]))?;
        if info["chain"] != "regtest" {
            return Err(LabError::Chain(format!("{why}, the node runs {}", info["chain"])));
        }
        Ok(())
    }

    /// Attaches to a running regtest node (`eddy devnet`, or a bitcoind) without mining: the
    /// faucet's coins are found on its chain ([`LabChain::discover_faucet`]). For the
    /// `eddy devnet-fund` and `eddy devnet-mine` commands.
    pub fn attach(url: &str, user: &str, password: &str) -> Result<LabChain, LabError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let chain = LabChain::over(rt, Running::Bitcoind { child: None }, url, user, password)?;
        chain.require_regtest("funding and mining need regtest")?;
        Ok(chain)
    }

    /// Finds the faucet's unspent coins on the chain and in the mempool: every output paying
    /// the anyone-can-spend script (coinbases and the change of earlier fundings, mined or not)
    /// that `gettxout` says is unspent.
    pub fn discover_faucet(&self) -> Result<usize, LabError> {
        let spk = anyone_can_spend_spk().to_hex_string();
        // The unspent outputs of a verbose transaction `t` that pay the faucet.
        let unspent = |t: &Value| -> Result<Vec<(bitcoin::OutPoint, Amount)>, LabError> {
            let Some(txid) = t["txid"].as_str().and_then(|s| s.parse::<Txid>().ok()) else {
                return Ok(Vec::new());
            };
            let mut coins = Vec::new();
            for (n, o) in t["vout"].as_array().cloned().unwrap_or_default().iter().enumerate() {
                if o["scriptPubKey"]["hex"].as_str() != Some(spk.as_str()) {
                    continue;
                }
                let live: Value = self.rpc("gettxout", json!([txid.to_string(), n, true]))?;
                if let Some(value) = live["value"].as_f64().and_then(|v| Amount::from_btc(v).ok()) {
                    coins.push((bitcoin::OutPoint::new(txid, n as u32), value));
                }
            }
            Ok(coins)
        };
        let (tip, _) = self.tip()?;
        let mut found = Vec::new();
        for h in 1..=tip {
            let hash: String = self.rpc("getblockhash", json!([h]))?;
            let block: Value = self.rpc("getblock", json!([hash, 2]))?;
            for (i, t) in block["tx"].as_array().cloned().unwrap_or_default().iter().enumerate() {
                let coinbase_height = (i == 0).then_some(h);
                found.extend(unspent(t)?.into_iter().map(|(o, v)| (o, v, coinbase_height)));
            }
        }
        // And the change of fundings not yet mined.
        let pool: Vec<String> = self.rpc("getrawmempool", json!([]))?;
        for txid in pool {
            let t: Value = self.rpc("getrawtransaction", json!([txid, true]))?;
            found.extend(unspent(&t)?.into_iter().map(|(o, v)| (o, v, None)));
        }
        let mut f = self.faucet_lock();
        for (outpoint, value, coinbase_height) in &found {
            f.add_coin(*outpoint, *value, *coinbase_height);
        }
        Ok(found.len())
    }

    /// Calls an RPC method (blocking).
    pub fn rpc<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, LabError> {
        self.rt.block_on(self.rpc.call(method, params)).map_err(chain_err)
    }

    /// The RPC client (for async callers on their own runtime).
    pub fn client(&self) -> Result<RpcClient, LabError> {
        RpcClient::new(&self.url(), &self.user, &self.password).map_err(chain_err)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// RPC host, port, user and password (what ldk-node's chain source takes).
    pub fn rpc_credentials(&self) -> (String, u16, String, String) {
        (self.host.clone(), self.port, self.user.clone(), self.password.clone())
    }

    /// The in-process devnet, when that is the backend.
    pub fn devnet(&self) -> Option<&Devnet> {
        match &self.running {
            Running::Devnet { devnet, .. } => Some(devnet),
            Running::Bitcoind { .. } => None,
        }
    }

    /// Whether the chain is the embedded devnet (tests skip devnet-only steps otherwise).
    pub fn is_devnet(&self) -> bool {
        self.devnet().is_some()
    }

    /// What the chain is, for people: "embedded devnet" or "bitcoind /Satoshi:…/".
    pub fn describe(&self) -> String {
        if self.is_devnet() {
            return "embedded devnet".into();
        }
        match self.rpc::<Value>("getnetworkinfo", json!([])) {
            Ok(v) => format!("bitcoind {}", v["subversion"].as_str().unwrap_or("(unknown version)")),
            Err(_) => "bitcoind".into(),
        }
    }

    /// Best block height and hash.
    pub fn tip(&self) -> Result<(u32, BlockHash), LabError> {
        let info: Value = self.rpc("getblockchaininfo", json!([]))?;
        let height = info["blocks"].as_u64().ok_or_else(|| chain_err("no height"))? as u32;
        let hash = info["bestblockhash"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| chain_err("no hash"))?;
        Ok((height, hash))
    }

    /// The faucet's address (mined coins go there).
    pub fn faucet_address(&self) -> Result<Address, LabError> {
        Address::from_script(&anyone_can_spend_spk(), Network::Regtest).map_err(chain_err)
    }

    /// Mines `n` blocks to the faucet and records their coinbase coins.
    pub fn mine(&self, n: u32) -> Result<Vec<BlockHash>, LabError> {
        let hashes: Vec<BlockHash> = self.rpc("generatetoaddress", json!([n, self.faucet_address()?.to_string()]))?;
        for h in &hashes {
            self.record_coinbase(h)?;
        }
        Ok(hashes)
    }

    /// Mines one block with exactly `txs` (raw transactions, in order; none for an empty block:
    /// the mempool stays as it is), paying the coinbase to the faucet.
    pub fn mine_with(&self, txs: &[Transaction]) -> Result<BlockHash, LabError> {
        let hash = self.generate_block(&self.faucet_address()?.to_string(), txs)?;
        self.record_coinbase(&hash)?;
        Ok(hash)
    }

    fn generate_block(&self, payout: &str, txs: &[Transaction]) -> Result<BlockHash, LabError> {
        let raw: Vec<String> = txs.iter().map(bitcoin::consensus::encode::serialize_hex).collect();
        let v: Value = self.rpc("generateblock", json!([payout, raw]))?;
        v["hash"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| chain_err("generateblock: no hash"))
    }

    fn record_coinbase(&self, hash: &BlockHash) -> Result<(), LabError> {
        let block: Value = self.rpc("getblock", json!([hash.to_string(), 2]))?;
        let height = block["height"].as_u64().unwrap_or(0) as u32;
        let cb = &block["tx"][0];
        let txid: Txid = cb["txid"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| chain_err("coinbase txid"))?;
        let value = cb["vout"][0]["value"]
            .as_f64()
            .and_then(|v| Amount::from_btc(v).ok())
            .ok_or_else(|| chain_err("coinbase value"))?;
        self.faucet_lock().add_coinbase(txid, value, height);
        Ok(())
    }

    fn faucet_lock(&self) -> std::sync::MutexGuard<'_, Faucet> {
        self.faucet.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends exactly `amount` to `address` from the faucet (unconfirmed; mine to confirm).
    pub fn fund(&self, address: &Address, amount: Amount) -> Result<Txid, LabError> {
        let (height, _) = self.tip()?;
        let mut faucet = self.faucet_lock();
        loop {
            let (coin, tx) = faucet.build(address.script_pubkey(), amount, height)?;
            // The coin may be gone (a reorg, a spend by someone else): check before using it.
            let live: Value = self.rpc("gettxout", json!([coin.txid.to_string(), coin.vout, true]))?;
            if live.is_null() {
                faucet.forget(&coin);
                continue;
            }
            let txid = self.broadcast(&tx)?;
            faucet.spent(&coin, &tx);
            return Ok(txid);
        }
    }

    /// A transaction in the mempool or anywhere in the best chain (the lab's bitcoind has no
    /// `-txindex`: its blocks are searched from the tip down, fine for a test chain's few
    /// hundred blocks). For tests; Eddy itself never needs an old transaction by txid.
    pub fn transaction(&self, txid: &Txid) -> Result<Transaction, LabError> {
        let raw = match self.rpc::<String>("getrawtransaction", json!([txid.to_string()])) {
            Ok(raw) => raw,
            Err(_) => self.find_in_blocks(txid, |block| {
                self.rpc::<String>("getrawtransaction", json!([txid.to_string(), false, block.to_string()]))
                    .ok()
            })?,
        };
        bitcoin::consensus::encode::deserialize_hex(&raw).map_err(chain_err)
    }

    /// The fee `txid` paid, from its mempool entry or from the best chain's block that holds it
    /// (`getblock <hash> 2` reports fees from undo data: no `-txindex` needed). For tests.
    pub fn fee(&self, txid: &Txid) -> Result<Amount, LabError> {
        let btc = |v: &Value| v.as_f64().and_then(|b| Amount::from_btc(b).ok());
        if let Ok(entry) = self.rpc::<Value>("getmempoolentry", json!([txid.to_string()])) {
            return btc(&entry["fees"]["base"]).ok_or_else(|| chain_err("getmempoolentry: no fee"));
        }
        let want = txid.to_string();
        let fee = self.find_in_blocks(txid, |hash| {
            let block: Value = self.rpc("getblock", json!([hash.to_string(), 2])).ok()?;
            let t = block["tx"]
                .as_array()?
                .iter()
                .find(|t| t["txid"].as_str() == Some(want.as_str()))?
                .clone();
            Some(t)
        })?;
        btc(&fee["fee"]).ok_or_else(|| chain_err(format!("getblock: no fee for {txid}")))
    }

    /// The first `Some` that `look` gives for the best chain's blocks, from the tip down.
    fn find_in_blocks<T>(&self, txid: &Txid, mut look: impl FnMut(&BlockHash) -> Option<T>) -> Result<T, LabError> {
        let (tip, _) = self.tip()?;
        for height in (0..=tip).rev() {
            let hash: BlockHash = self.rpc("getblockhash", json!([height]))?;
            if let Some(found) = look(&hash) {
                return Ok(found);
            }
        }
        Err(chain_err(format!("{txid} is neither in the mempool nor in the chain")))
    }

    /// `sendrawtransaction`.
    pub fn broadcast(&self, tx: &Transaction) -> Result<Txid, LabError> {
        self.rpc(
            "sendrawtransaction",
            json!([bitcoin::consensus::encode::serialize_hex(tx)]),
        )
    }

    /// Waits until `txid` is in the mempool (or, on the devnet, already mined; bitcoind without
    /// `-txindex` finds only mempool transactions by txid).
    pub fn wait_in_mempool(&self, txid: &Txid, timeout: Duration) -> Result<(), LabError> {
        wait_until(&format!("{txid} in the mempool"), timeout, || {
            self.rpc::<Value>("getmempoolentry", json!([txid.to_string()])).is_ok()
                || self
                    .rpc::<Value>("getrawtransaction", json!([txid.to_string()]))
                    .is_ok()
        })
    }

    /// Sets the fee rate `estimatesmartfee` answers with (devnet only).
    pub fn set_fee_estimate(&self, sat_per_vb: Option<f64>) -> Result<(), LabError> {
        self.devnet_only("set a fee estimate")?;
        self.rpc::<Value>("devnet_setfeeestimate", json!([sat_per_vb]))
            .map(|_| ())
    }

    /// Replaces the last `depth` blocks by `depth + extra` new ones (at least one more), leaving
    /// out `exclude` (and what spends them) and adding `add` to the new branch's first block;
    /// left-out transactions go back to the mempool when still valid. The devnet does it
    /// natively (`devnet_reorg`); on bitcoind the lab invalidates the first replaced block and
    /// builds the branch with `generateblock` (carried transactions placed as the devnet does).
    pub fn reorg(
        &self,
        depth: u32,
        extra: u32,
        exclude: &[Txid],
        add: &[Transaction],
    ) -> Result<Vec<BlockHash>, LabError> {
        if self.devnet().is_some() {
            let exclude: Vec<String> = exclude.iter().map(|t| t.to_string()).collect();
            let add: Vec<String> = add.iter().map(bitcoin::consensus::encode::serialize_hex).collect();
            return self.rpc("devnet_reorg", json!([depth, extra, exclude, add]));
        }
        self.reorg_bitcoind(depth, extra, exclude, add)
    }

    /// The reorg on bitcoind. The replaced blocks' transactions (but `exclude` and their
    /// descendants) are carried to the branch in their order: `invalidateblock` returns them to
    /// bitcoind's mempool where still valid at the fork, and each goes into the first branch
    /// block where the mempool takes it (a lock time or relative lock that only a later height
    /// meets waits for it); `add` goes raw into the first block. The branch pays its coinbases
    /// to a fresh address, so no branch block can equal a replaced one (an invalidated block is
    /// never accepted again) even in the same second.
    fn reorg_bitcoind(
        &self,
        depth: u32,
        extra: u32,
        exclude: &[Txid],
        add: &[Transaction],
    ) -> Result<Vec<BlockHash>, LabError> {
        let (height, _) = self.tip()?;
        if depth == 0 || depth > height {
            return Err(chain_err(format!("cannot reorg {depth} blocks at height {height}")));
        }
        let fork = height - depth;
        let mut dropped: std::collections::HashSet<Txid> = exclude.iter().copied().collect();
        let mut carried = vec![];
        for h in fork + 1..=height {
            let hash: BlockHash = self.rpc("getblockhash", json!([h]))?;
            let raw: String = self.rpc("getblock", json!([hash.to_string(), 0]))?;
            let block: Block = bitcoin::consensus::encode::deserialize_hex(&raw).map_err(chain_err)?;
            for tx in block.txdata.into_iter().skip(1) {
                let txid = tx.compute_txid();
                if dropped.contains(&txid) || tx.input.iter().any(|i| dropped.contains(&i.previous_output.txid)) {
                    dropped.insert(txid);
                } else {
                    carried.push(tx);
                }
            }
        }
        let first: BlockHash = self.rpc("getblockhash", json!([fork + 1]))?;
        self.rpc::<Value>("invalidateblock", json!([first.to_string()]))?;
        let script = ScriptBuf::builder()
            .push_slice(rand::random::<[u8; 8]>())
            .push_opcode(bitcoin::opcodes::all::OP_DROP)
            .push_opcode(bitcoin::opcodes::OP_TRUE)
            .into_script();
        let payout = Address::p2wsh(&script, Network::Regtest).to_string();
        let mut hashes = vec![];
        for i in 0..depth + extra.max(1) {
            let mut txs = vec![];
            let mut later = vec![];
            for tx in carried {
                if self.mempool_takes(&tx) {
                    txs.push(tx);
                } else {
                    later.push(tx);
                }
            }
            carried = later;
            if i == 0 {
                txs.extend(add.iter().cloned());
            }
            hashes.push(self.generate_block(&payout, &txs)?);
        }
        // What no branch block could take goes back to the mempool if it is valid there.
        for tx in &carried {
            let _ = self.mempool_takes(tx);
        }
        Ok(hashes)
    }

    /// Whether `tx` is in bitcoind's mempool, or enters it now.
    fn mempool_takes(&self, tx: &Transaction) -> bool {
        self.rpc::<Value>("getmempoolentry", json!([tx.compute_txid().to_string()]))
            .is_ok()
            || self
                .rpc::<Value>(
                    "sendrawtransaction",
                    json!([bitcoin::consensus::encode::serialize_hex(tx), 0]),
                )
                .is_ok()
    }

    fn devnet_only(&self, what: &str) -> Result<(), LabError> {
        match self.devnet() {
            Some(_) => Ok(()),
            None => Err(LabError::Chain(format!("only the devnet can {what}"))),
        }
    }

    pub(crate) fn shutdown(&mut self) {
        match &mut self.running {
            Running::Devnet { server, .. } => {
                if let Some(s) = server.take() {
                    self.rt.block_on(s.stop());
                }
            }
            Running::Bitcoind { child } => {
                if let Some(mut c) = child.take() {
                    let _ = self.rt.block_on(self.rpc.call_raw("stop", json!([])));
                    let _ = wait_until("bitcoind to stop", Duration::from_secs(30), || {
                        matches!(c.try_wait(), Ok(Some(_)))
                    });
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
    }
}

impl Drop for LabChain {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn rand_password() -> String {
    rand::random::<[u8; 16]>().to_lower_hex_string()
}
