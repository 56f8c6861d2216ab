//! One ldk-node node of the lab: built against the lab chain's bitcoind RPC, listening on
//! 127.0.0.1, with an event buffer so a test can wait for one kind of event without losing
//! the others.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Address, BlockHash, Network};
use ldk_node::config::Config;
use ldk_node::lightning::ln::msgs::SocketAddress;
use ldk_node::{Builder, Event, Node};

use crate::chain::{free_port, LabChain};
use crate::LabError;

/// Per-node settings.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Name used in errors and logs.
    pub name: String,
}

impl NodeOptions {
    /// Options for node number `i`.
    pub fn named(i: usize) -> NodeOptions {
        NodeOptions {
            name: format!("node{i}"),
        }
    }
}

/// A running ldk-node node.
pub struct LabNode {
    node: Option<Node>,
    name: String,
    address: SocketAddress,
    dir: PathBuf,
    events: Mutex<VecDeque<Event>>,
}

impl LabNode {
    /// Builds and starts a node storing its state in `dir` (an existing `dir` restarts it with
    /// its keys and channels).
    pub fn start(chain: &LabChain, dir: &Path, opts: &NodeOptions) -> Result<LabNode, LabError> {
        std::fs::create_dir_all(dir)?;
        let err = |d: String| LabError::Node {
            node: opts.name.clone(),
            detail: d,
        };
        // Keep the port across restarts so peers find the node again.
        let port_file = dir.join("lab-port");
        let port = match std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            Some(p) => p,
            None => {
                let p = free_port()?;
                std::fs::write(&port_file, p.to_string())?;
                p
            }
        };
        let address = SocketAddress::from_str(&format!("127.0.0.1:{port}")).map_err(|e| err(format!("{e:?}")))?;
        let config = Config {
            network: Network::Regtest,
            storage_dir_path: dir.display().to_string(),
            listening_addresses: Some(vec![address.clone()]),
            ..Config::default()
        };
        let mut builder = Builder::from_config(config);
        let (host, rpc_port, user, password) = chain.rpc_credentials();
        builder.set_chain_source_bitcoind_rpc(host, rpc_port, user, password);
        let node = builder.build().map_err(|e| err(format!("build: {e:?}")))?;
        node.start().map_err(|e| err(format!("start: {e:?}")))?;
        Ok(LabNode {
            node: Some(node),
            name: opts.name.clone(),
            address,
            dir: dir.to_path_buf(),
            events: Mutex::new(VecDeque::new()),
        })
    }

    /// The ldk-node handle.
    ///
    /// # Panics
    /// Never while the node is running: the handle is only taken by [`LabNode::stop`], which
    /// consumes the node.
    #[allow(clippy::expect_used)]
    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("node is running until stop() consumes it")
    }

    /// The node's name in the lab.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its public key.
    pub fn node_id(&self) -> PublicKey {
        self.node().node_id()
    }

    /// Its listening address.
    pub fn address(&self) -> SocketAddress {
        self.address.clone()
    }

    pub(crate) fn error(&self, detail: String) -> LabError {
        LabError::Node {
            node: self.name.clone(),
            detail,
        }
    }

    /// A fresh on-chain address.
    pub fn new_address(&self) -> Result<Address, LabError> {
        self.node()
            .onchain_payment()
            .new_address()
            .map_err(|e| self.error(format!("new_address: {e:?}")))
    }

    /// Waits until the node's best block is `tip` (polling the chain source right away
    /// instead of waiting for its 2-second timer).
    pub fn wait_synced(&self, tip: (u32, BlockHash), timeout: Duration) -> Result<(), LabError> {
        wait_synced(self.node(), tip, timeout)
    }

    /// Waits for the first event (buffered or new) that `f` maps to `Some`, removes it from the
    /// buffer and returns the value; other events stay buffered for later waits.
    pub fn wait_event<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T, LabError> {
        let start = Instant::now();
        loop {
            {
                let mut buf = self.events.lock().unwrap_or_else(|e| e.into_inner());
                while let Some(e) = self.node().next_event() {
                    buf.push_back(e);
                    let _ = self.node().event_handled();
                }
                if let Some((i, v)) = buf.iter().enumerate().find_map(|(i, e)| f(e).map(|v| (i, v))) {
                    buf.remove(i);
                    return Ok(v);
                }
            }
            if start.elapsed() > timeout {
                let seen: Vec<String> = self
                    .events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|e| format!("{e:?}"))
                    .collect();
                return Err(LabError::Timeout {
                    what: format!("{what} on {} (buffered: {seen:?})", self.name),
                    secs: timeout.as_secs_f64(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the node.
    pub fn stop(mut self) {
        if let Some(n) = self.node.take() {
            let _ = n.stop();
        }
    }
}

impl Drop for LabNode {
    fn drop(&mut self) {
        if let Some(n) = self.node.take() {
            let _ = n.stop();
        }
    }
}

/// Waits until any running ldk-node node's best block is `tip`, asking it to poll its chain
/// source right away instead of waiting for its 2-second timer.
pub fn wait_synced(node: &Node, tip: (u32, BlockHash), timeout: Duration) -> Result<(), LabError> {
    let start = Instant::now();
    loop {
        let best = node.status().current_best_block;
        if best.block_hash == tip.1 {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(LabError::Timeout {
                what: format!("{} to reach block {} (at {})", node.node_id(), tip.0, best.height),
                secs: timeout.as_secs_f64(),
            });
        }
        let _ = node.sync_wallets();
        std::thread::sleep(Duration::from_millis(20));
    }
}
