//! # eddy-lab
//!
//! The Lightning lab that Eddy's integration tests and demo run on: a regtest chain — the
//! embedded devnet by default, or a real bitcoind when `BITCOIND_EXE` (a binary to start) or
//! `BITCOIND_RPC_URL` (+ `BITCOIND_RPC_USER`/`BITCOIND_RPC_PASSWORD`, or `BITCOIND_RPC_COOKIE`)
//! is set — and N ldk-node nodes using it through bitcoind's RPC, with helpers to mine, fund
//! exact amounts, open channels and wait until they are usable. The chain is driven only
//! through the RPC, so the same harness and tests run against the devnet and against bitcoind.
//!
//! Blocking API: ldk-node's own calls block, and tests read best as straight-line code. The
//! lab owns a tokio runtime for the devnet server and the RPC client; each ldk-node node runs
//! its own runtime, as ldk-node does when started outside one.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

mod chain;
mod faucet;
mod node;

pub use chain::{ChainBackend, LabChain};
pub use node::{wait_synced, LabNode, NodeOptions};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bitcoin::{Address, Amount, BlockHash, Txid};
use ldk_node::lightning::ln::msgs::SocketAddress;
use ldk_node::{Node, UserChannelId};

/// Errors of the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The chain backend failed.
    #[error("chain: {0}")]
    Chain(String),
    /// An ldk-node call failed.
    #[error("node {node}: {detail}")]
    Node {
        /// Which node.
        node: String,
        /// What failed.
        detail: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {secs:.1} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        secs: f64,
    },
    /// Local I/O.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// What to start.
#[derive(Clone, Debug)]
pub struct LabConfig {
    /// Number of ldk-node nodes.
    pub nodes: usize,
    /// The chain backend.
    pub backend: ChainBackend,
    /// Where everything keeps its data.
    pub dir: PathBuf,
}

impl LabConfig {
    /// `nodes` nodes in `dir` on the backend the environment selects ([`ChainBackend::from_env`]).
    pub fn new(dir: &Path, nodes: usize) -> LabConfig {
        LabConfig {
            nodes,
            backend: ChainBackend::from_env(),
            dir: dir.to_path_buf(),
        }
    }
}

/// A running lab; [`Lab::stop`] (or drop) tears everything down.
pub struct Lab {
    /// The chain.
    pub chain: LabChain,
    /// The Lightning nodes.
    pub nodes: Vec<LabNode>,
}

/// How long the lab waits for nodes to see blocks, channels to open, events to arrive.
pub const WAIT: Duration = Duration::from_secs(60);

impl Lab {
    /// Starts the chain (with mature faucet coins) and `config.nodes` nodes synced to it.
    pub fn start(config: LabConfig) -> Result<Lab, LabError> {
        std::fs::create_dir_all(&config.dir)?;
        let chain = LabChain::start(&config.backend, &config.dir.join("chain"))?;
        let mut lab = Lab { chain, nodes: vec![] };
        for i in 0..config.nodes {
            let node = LabNode::start(&lab.chain, &config.dir.join(format!("node{i}")), &NodeOptions::named(i))?;
            lab.nodes.push(node);
        }
        lab.sync()?;
        Ok(lab)
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &LabNode {
        &self.nodes[i]
    }

    /// Mines `n` blocks and waits until every node has seen them.
    pub fn mine(&self, n: u32) -> Result<Vec<BlockHash>, LabError> {
        let hashes = self.chain.mine(n)?;
        self.sync()?;
        Ok(hashes)
    }

    /// Waits until every running node's best block is the chain tip.
    pub fn sync(&self) -> Result<(), LabError> {
        let tip = self.chain.tip()?;
        for n in &self.nodes {
            n.wait_synced(tip, WAIT)?;
        }
        Ok(())
    }

    /// Sends exactly `amount` from the faucet to node `i`'s on-chain wallet, confirms it and
    /// waits until the node's spendable balance includes it.
    pub fn fund_node(&self, i: usize, amount: Amount) -> Result<Txid, LabError> {
        let node = &self.nodes[i];
        let before = node.node().list_balances().spendable_onchain_balance_sats;
        let addr = node.new_address()?;
        let txid = self.chain.fund(&addr, amount)?;
        self.mine(1)?;
        let want = before + amount.to_sat();
        wait_until(&format!("{} to see {amount}", node.name()), WAIT, || {
            let _ = node.node().sync_wallets();
            node.node().list_balances().spendable_onchain_balance_sats >= want
        })?;
        Ok(txid)
    }

    /// Opens a channel of `capacity` from node `a` to node `b`, pushing `push_msat` to `b`,
    /// confirms it and waits until both sides report it usable.
    pub fn open_channel(
        &self,
        a: usize,
        b: usize,
        capacity: Amount,
        push_msat: u64,
    ) -> Result<UserChannelId, LabError> {
        let (na, nb) = (&self.nodes[a], &self.nodes[b]);
        self.open_channel_between(na.node(), nb.node(), nb.address(), capacity, push_msat)
    }

    /// Opens a channel from any running ldk-node `a` (a lab node, or one embedded in a backend
    /// under test) to `b` listening at `b_addr`, confirms it and waits until both sides report it
    /// usable. Polls channel lists instead of consuming events, so a backend's own event loop is
    /// left alone.
    pub fn open_channel_between(
        &self,
        a: &Node,
        b: &Node,
        b_addr: SocketAddress,
        capacity: Amount,
        push_msat: u64,
    ) -> Result<UserChannelId, LabError> {
        let err = |d: String| LabError::Node {
            node: a.node_id().to_string(),
            detail: d,
        };
        let id = a
            .open_channel(b.node_id(), b_addr, capacity.to_sat(), Some(push_msat), None)
            .map_err(|e| err(format!("open_channel: {e:?}")))?;
        let mut funding = None;
        wait_until("the funding transaction", WAIT, || {
            funding = a
                .list_channels()
                .iter()
                .find(|c| c.user_channel_id == id)
                .and_then(|c| c.funding_txo)
                .map(|o| o.txid);
            funding.is_some()
        })?;
        let funding = funding.ok_or_else(|| err("no funding".into()))?;
        self.chain.wait_in_mempool(&funding, WAIT)?;
        self.chain.mine(6)?;
        let tip = self.chain.tip()?;
        for n in [a, b] {
            wait_synced(n, tip, WAIT)?;
        }
        self.sync()?;
        wait_until("channel usable on both sides", WAIT, || {
            [a, b].iter().all(|n| {
                n.list_channels()
                    .iter()
                    .any(|c| c.funding_txo.map(|o| o.txid) == Some(funding) && c.is_usable)
            })
        })?;
        Ok(id)
    }

    /// A fresh regtest address of node `i`'s wallet.
    pub fn address(&self, i: usize) -> Result<Address, LabError> {
        self.nodes[i].new_address()
    }

    /// Stops every node, then the chain.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        for n in self.nodes.drain(..) {
            n.stop();
        }
        self.chain.shutdown();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<(), LabError> {
    let start = Instant::now();
    loop {
        if cond() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(LabError::Timeout {
                what: what.to_string(),
                secs: timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
