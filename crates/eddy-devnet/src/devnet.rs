//! The shared devnet handle: one [`Chain`] behind a lock, a broadcast of the best tip for
//! waiters (`waitfornewblock`, the lab), and an optional timer miner. Everything that changes
//! the chain goes through [`Devnet::with_chain`] so tip watchers never miss a block.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bitcoin::blockdata::opcodes::all::OP_PUSHNUM_1;
use bitcoin::script::Builder;
use bitcoin::{BlockHash, ScriptBuf};
use tokio::sync::watch;

use crate::chain::{Chain, ChainError};

/// The best block as waiters see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tip {
    /// Its height.
    pub height: u32,
    /// Its hash.
    pub hash: BlockHash,
}

/// The witness script of the devnet's default payout: `OP_TRUE`. Anyone can spend it with an
/// empty witness but for the script itself, which makes mined coins a faucet for tests.
pub fn anyone_can_spend_script() -> ScriptBuf {
    Builder::new().push_opcode(OP_PUSHNUM_1).into_script()
}

/// The P2WSH output paying to [`anyone_can_spend_script`].
pub fn anyone_can_spend_spk() -> ScriptBuf {
    ScriptBuf::new_p2wsh(&anyone_can_spend_script().wscript_hash())
}

struct Inner {
    chain: Mutex<Chain>,
    tip: watch::Sender<Tip>,
}

/// A cloneable handle on the devnet chain.
#[derive(Clone)]
pub struct Devnet {
    inner: Arc<Inner>,
}

impl Devnet {
    /// Opens (or creates) the chain in `datadir`.
    pub fn open(datadir: &Path) -> Result<Devnet, ChainError> {
        let chain = Chain::open(datadir)?;
        let tip = Tip {
            height: chain.height(),
            hash: chain.tip_hash(),
        };
        Ok(Devnet {
            inner: Arc::new(Inner {
                chain: Mutex::new(chain),
                tip: watch::Sender::new(tip),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Chain> {
        // A panic while holding the lock leaves the chain's indices as the kernel last synced
        // them; carrying on is better than wedging every RPC client of a development node.
        self.inner.chain.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with the chain locked, then tells tip watchers if the best block changed.
    pub fn with_chain<R>(&self, f: impl FnOnce(&mut Chain) -> R) -> R {
        let mut chain = self.lock();
        let out = f(&mut chain);
        let tip = Tip {
            height: chain.height(),
            hash: chain.tip_hash(),
        };
        drop(chain);
        self.inner.tip.send_if_modified(|t| {
            let changed = *t != tip;
            *t = tip;
            changed
        });
        out
    }

    /// The best block.
    pub fn tip(&self) -> Tip {
        *self.inner.tip.borrow()
    }

    /// A receiver that wakes on every new best block.
    pub fn subscribe(&self) -> watch::Receiver<Tip> {
        self.inner.tip.subscribe()
    }

    /// Mines `n` blocks paying `payout` (default: [`anyone_can_spend_spk`]).
    pub fn mine(&self, n: u32, payout: Option<&ScriptBuf>) -> Result<Vec<BlockHash>, ChainError> {
        let default = anyone_can_spend_spk();
        let payout = payout.unwrap_or(&default);
        self.with_chain(|c| c.mine(n, payout))
    }

    /// Starts mining one block every `interval` on a background thread until the returned
    /// handle is dropped or stopped.
    pub fn start_miner(&self, interval: Duration) -> Miner {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let devnet = self.clone();
        let thread = std::thread::spawn(move || {
            let step = Duration::from_millis(50).min(interval);
            let mut waited = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(step);
                waited += step;
                if waited >= interval {
                    waited = Duration::ZERO;
                    if let Err(e) = devnet.mine(1, None) {
                        // A block the kernel rejects is a devnet bug: say so loudly and stop.
                        eprintln!("devnet miner: {e}");
                        return;
                    }
                }
            }
        });
        Miner {
            stop,
            thread: Some(thread),
        }
    }
}

/// The timer miner; stops when dropped.
pub struct Miner {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
