//! [`LightningNode`] on an embedded ldk-node 0.7 node: keys and state in Eddy's data dir, a
//! listening address, bitcoind RPC (or Esplora) as chain source.
//!
//! How the trait maps onto ldk-node (see docs/measured.md and shared/docs/ldk-node-notes.md):
//! - Hold invoices are `receive_for_hash` / `claim_for_hash` / `fail_for_hash`. ldk-node cannot
//!   set the invoice's `min_final_cltv_expiry_delta` (always 42, so payers give the holder only
//!   ~3 blocks plus their random shadow offset). The backend re-issues the invoice with the
//!   requested delta, signed with the node's own key (re-derived from its seed and checked
//!   against the node id; without it the invoice keeps 42). [`HoldInvoice`] reports what the
//!   invoice says, and every held HTLC's expiry and settle deadline are exposed in
//!   [`HoldInvoiceState::Accepted`] so the swap server checks them against its on-chain expiry.
//! - States are re-derived from ldk-node's persisted payment store plus `list_balances()` (held
//!   HTLCs), because `PaymentClaimable` is not replayed after a restart. After a restart the
//!   held amount is known to the satoshi (msat precision only from the live event).
//! - LDK fails a held HTLC back at its claim deadline without any event, and `claim_for_hash`
//!   still returns `Ok` afterwards: a pending invoice whose deadline has passed is reported
//!   `Canceled`, and only ldk-node's `PaymentReceived` (status Succeeded) counts as settled.
//! - Own-preimage invoices are hold invoices the backend settles itself on `PaymentClaimable`;
//!   their preimages are kept in `eddy-own-preimages.json` (0600) in the node's data dir so a
//!   restart can still settle them.
//! - Not offered by ldk-node 0.7, hence [`LnError::Unsupported`]: restricting a payment to one
//!   outgoing channel or to one last hop, and paying several on-chain outputs in one transaction. A payment's
//!   timeout is ldk-node's own retry timeout, not `PayParams::timeout`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::bip32::{ChildNumber, Xpriv};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Address, Amount, FeeRate, Network, ScriptBuf, Transaction};
use eddy_core::types::{PaymentHash, Preimage};
use ldk_node::config::Config;
use ldk_node::lightning::ln::channelmanager::PaymentId;
use ldk_node::lightning::ln::msgs::SocketAddress;
use ldk_node::lightning::ln::types::ChannelId;
use ldk_node::lightning::routing::router::RouteParametersConfig;
use ldk_node::lightning_invoice::{
    Bolt11Invoice, Bolt11InvoiceDescription, Bolt11InvoiceDescriptionRef, Description, InvoiceBuilder,
};
use ldk_node::lightning_types::payment::{PaymentHash as LdkHash, PaymentPreimage};
use ldk_node::logger::LogLevel;
use ldk_node::payment::{PaymentDirection, PaymentKind, PaymentStatus as LdkStatus};
use ldk_node::{Builder, Event, LightningBalance, Node};
use tokio::sync::broadcast;

use crate::chain::ChainSource;
use crate::lightning::{
    ChannelInfo, HeldHtlc, HoldInvoice, HoldInvoiceRequest, HoldInvoiceState, LightningNode, LnError, LnEvent,
    NodeInfo, PayParams, PaymentStatus, WalletBalance,
};

/// ldk-node's log records, into Eddy's log (`tracing`, target `ldk`). LDK logs preimages at
/// debug level ("Claiming inbound HTLC … with preimage …") and Eddy never logs preimages, so
/// debug, trace and gossip records are dropped; info goes to `debug` (visible with
/// `EDDY_LOG=ldk=debug`), warnings and errors as such. Writing cannot fail or panic.
struct NodeLog;

impl ldk_node::logger::LogWriter for NodeLog {
    fn log(&self, r: ldk_node::logger::LogRecord<'_>) {
        match r.level {
            LogLevel::Gossip | LogLevel::Trace | LogLevel::Debug => {}
            LogLevel::Info => tracing::debug!(target: "ldk", module = r.module_path, line = r.line, "{}", r.args),
            LogLevel::Warn => tracing::warn!(target: "ldk", module = r.module_path, line = r.line, "{}", r.args),
            LogLevel::Error => tracing::error!(target: "ldk", module = r.module_path, line = r.line, "{}", r.args),
        }
    }
}

/// LDK fails a held HTLC back this many blocks before its CLTV expiry (its claim deadline is
/// `expiry − 39`; measured, see ldk-node-notes).
pub const LDK_CLAIM_DEADLINE_BEFORE_EXPIRY: u32 = 39;

const OWN_PREIMAGES_FILE: &str = "eddy-own-preimages.json";

/// Where the embedded node gets the chain from.
#[derive(Clone, Debug)]
pub enum LdkChainSource {
    /// bitcoind JSON-RPC.
    BitcoindRpc {
        /// Host (127.0.0.1).
        host: String,
        /// Port.
        port: u16,
        /// RPC user.
        user: String,
        /// RPC password.
        password: String,
    },
    /// An Esplora HTTP API.
    Esplora(String),
}

/// Settings of the embedded node.
#[derive(Clone, Debug)]
pub struct LdkConfig {
    /// Keys, channel state and payment store live here.
    pub data_dir: PathBuf,
    /// Network.
    pub network: Network,
    /// Lightning P2P listening address.
    pub listen: Option<SocketAddr>,
    /// Chain source.
    pub chain: LdkChainSource,
}

#[derive(Clone, Copy, Debug)]
struct Claimable {
    amount_msat: u64,
    deadline: Option<u32>,
}

pub mod admin;

struct Shared {
    node: Arc<Node>,
    /// The node's signing key, re-derived from its seed (see [`node_secret`]), used only to
    /// re-issue hold invoices with the final CLTV delta the caller asked for.
    node_secret: Option<SecretKey>,
    events: broadcast::Sender<LnEvent>,
    claimable: Mutex<HashMap<[u8; 32], Claimable>>,
    /// The HTLCs held for each claimable payment, read once from the node's balances (which
    /// walks every channel monitor: up to milliseconds with many channels, and hold-invoice
    /// states are read on every swap step). A claimable payment's HTLCs do not change until it
    /// is claimed or failed, when the entry goes with its `claimable` one.
    held: Mutex<HashMap<[u8; 32], Vec<HeldHtlc>>>,
    own: Mutex<HashMap<[u8; 32], Preimage>>,
    own_path: PathBuf,
}

/// The embedded LDK node.
pub struct LdkNode {
    shared: Arc<Shared>,
    network: Network,
    chain: Arc<dyn ChainSource>,
    event_task: tokio::task::JoinHandle<()>,
    reconnect_task: tokio::task::JoinHandle<()>,
    /// Serializes wallet spends. It does not make quick successive spends safe: ldk-node 0.7
    /// neither locks the coins it spends nor adds its own transaction to its wallet, and its
    /// bitcoind mempool sync skips a transaction whose entry time (whole seconds) equals the
    /// latest one it saw — so a second spend in the same second picks the same coin and is
    /// rejected as a double spend until a block confirms the first. The swap server therefore
    /// funds HTLCs from its own swap wallet (`eddy_server::wallet`), not through this method.
    send_lock: tokio::sync::Mutex<()>,
}

/// Resends of a payment whose first attempt failed before anything was sent.
const SEND_RETRIES: u32 = 30;
/// Pause between them.
const SEND_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How often disconnected channel peers are reconnected.
const RECONNECT_EVERY: Duration = Duration::from_secs(2);

fn unavailable(e: impl std::fmt::Debug) -> LnError {
    LnError::Unavailable(format!("{e:?}"))
}

fn refused(e: impl std::fmt::Debug) -> LnError {
    LnError::Refused(format!("{e:?}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, LnError> {
    tokio::task::spawn_blocking(f).await.map_err(unavailable)
}

fn load_own(path: &Path) -> Result<HashMap<[u8; 32], Preimage>, LnError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(unavailable(e)),
    };
    let list: Vec<Preimage> = serde_json::from_str(&text).map_err(unavailable)?;
    Ok(list.into_iter().map(|p| (p.payment_hash().0, p)).collect())
}

fn save_own(path: &Path, own: &HashMap<[u8; 32], Preimage>) -> Result<(), LnError> {
    use std::io::Write;
    let list: Vec<&Preimage> = own.values().collect();
    let text = serde_json::to_string(&list).map_err(unavailable)?;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(unavailable)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(unavailable)?;
    std::fs::rename(&tmp, path).map_err(unavailable)
}

impl Shared {
    fn height(&self) -> u32 {
        self.node.status().current_best_block.height
    }

    fn state(&self, hash: &PaymentHash) -> Result<HoldInvoiceState, LnError> {
        let details = self.node.payment(&PaymentId(hash.0)).ok_or(LnError::Unknown(*hash))?;
        if details.direction != PaymentDirection::Inbound {
            return Err(LnError::Unknown(*hash));
        }
        match details.status {
            LdkStatus::Succeeded => Ok(HoldInvoiceState::Settled {
                amount_msat: details.amount_msat.unwrap_or(0),
            }),
            LdkStatus::Failed => Ok(HoldInvoiceState::Canceled),
            LdkStatus::Pending => {
                // Accepted only once LDK has made the payment claimable (its event, or the
                // held HTLCs found at start-up): an HTLC merely committed to the channel cannot
                // be claimed or failed back by hash yet.
                let live = self
                    .claimable
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&hash.0)
                    .copied();
                let Some(live) = live else {
                    return Ok(HoldInvoiceState::Open);
                };
                let cached = self
                    .held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&hash.0)
                    .cloned();
                let htlcs = match cached {
                    Some(h) => h,
                    None => {
                        let h = self.held_htlcs(hash);
                        // Not cached while the balances do not show them yet.
                        if !h.is_empty() {
                            self.held
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(hash.0, h.clone());
                        }
                        h
                    }
                };
                let deadline = live.deadline.or_else(|| htlcs.iter().map(|h| h.settle_deadline).min());
                if let Some(d) = deadline {
                    if self.height() >= d {
                        // LDK has failed (or is failing) the HTLCs back by itself.
                        return Ok(HoldInvoiceState::Canceled);
                    }
                }
                Ok(HoldInvoiceState::Accepted {
                    amount_msat: live.amount_msat,
                    htlcs,
                })
            }
        }
    }

    /// A payment is no longer claimable (claimed or failed back).
    fn forget_claimable(&self, hash: &[u8; 32]) {
        self.claimable.lock().unwrap_or_else(|e| e.into_inner()).remove(hash);
        self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(hash);
    }

    /// The HTLCs held for `hash`, from the node's balances.
    fn held_htlcs(&self, hash: &PaymentHash) -> Vec<HeldHtlc> {
        self.node
            .list_balances()
            .lightning_balances
            .iter()
            .filter_map(|b| match b {
                LightningBalance::MaybePreimageClaimableHTLC {
                    payment_hash,
                    amount_satoshis,
                    expiry_height,
                    ..
                } if payment_hash.0 == hash.0 => Some(HeldHtlc {
                    amount_msat: amount_satoshis * 1000,
                    expiry_height: *expiry_height,
                    settle_deadline: expiry_height.saturating_sub(LDK_CLAIM_DEADLINE_BEFORE_EXPIRY),
                }),
                _ => None,
            })
            .collect()
    }

    /// After a restart LDK does not replay `PaymentClaimable`: payments whose HTLCs are held
    /// on a channel that is still open are claimable again from the balances; own-preimage ones
    /// are settled right away.
    ///
    /// HTLCs on a channel that is no longer open are not made claimable: after a crash whose
    /// ChannelManager was persisted behind its ChannelMonitors, LDK force-closes the channel at
    /// start, and an HTLC that arrived after the last manager write is in the monitor (and so in
    /// the balances) but unknown to the manager — `claim_for_hash` cannot claim it. Reported as
    /// accepted, it let the loop-out server publish its HTLC, see the client claim it, and then
    /// lose the payment (found by the soak). A payment the manager does know on a channel that
    /// closed while we were down is still settled: see `settle_hold_invoice`.
    fn restore_claimable(&self) {
        let open: HashSet<ChannelId> = self.node.list_channels().iter().map(|c| c.channel_id).collect();
        let mut held: HashMap<[u8; 32], (u64, u32)> = HashMap::new();
        for b in self.node.list_balances().lightning_balances {
            if let LightningBalance::MaybePreimageClaimableHTLC {
                channel_id,
                payment_hash,
                amount_satoshis,
                expiry_height,
                ..
            } = b
            {
                if !open.contains(&channel_id) {
                    continue;
                }
                let e = held.entry(payment_hash.0).or_insert((0, u32::MAX));
                e.0 += amount_satoshis * 1000;
                e.1 = e.1.min(expiry_height.saturating_sub(LDK_CLAIM_DEADLINE_BEFORE_EXPIRY));
            }
        }
        for (hash, (amount_msat, deadline)) in held {
            let inbound_pending = self
                .node
                .payment(&PaymentId(hash))
                .is_some_and(|d| d.direction == PaymentDirection::Inbound && d.status == LdkStatus::Pending);
            if !inbound_pending {
                continue;
            }
            self.claimable.lock().unwrap_or_else(|e| e.into_inner()).insert(
                hash,
                Claimable {
                    amount_msat,
                    deadline: Some(deadline),
                },
            );
            let own = self.own.lock().unwrap_or_else(|e| e.into_inner()).get(&hash).cloned();
            if let Some(preimage) = own {
                let _ = self.node.bolt11_payment().claim_for_hash(
                    LdkHash(hash),
                    amount_msat,
                    PaymentPreimage(*preimage.expose_bytes()),
                );
            }
        }
    }

    fn payment_status(&self, hash: &PaymentHash) -> PaymentStatus {
        let Some(d) = self.node.payment(&PaymentId(hash.0)) else {
            return PaymentStatus::Unknown;
        };
        if d.direction != PaymentDirection::Outbound {
            return PaymentStatus::Unknown;
        }
        match d.status {
            LdkStatus::Pending => PaymentStatus::InFlight,
            LdkStatus::Failed => PaymentStatus::Failed {
                reason: "payment failed".into(),
            },
            LdkStatus::Succeeded => {
                let preimage = match d.kind {
                    PaymentKind::Bolt11 { preimage, .. } | PaymentKind::Bolt11Jit { preimage, .. } => preimage,
                    _ => None,
                };
                match preimage {
                    Some(p) => PaymentStatus::Succeeded {
                        preimage: Preimage::from_bytes(p.0),
                        fee_msat: d.fee_paid_msat.unwrap_or(0),
                    },
                    None => PaymentStatus::InFlight,
                }
            }
        }
    }

    fn handle(&self, event: Event) {
        match event {
            Event::PaymentClaimable {
                payment_hash,
                claimable_amount_msat,
                claim_deadline,
                ..
            } => {
                let canceled = self
                    .node
                    .payment(&PaymentId(payment_hash.0))
                    .is_some_and(|d| d.status == LdkStatus::Failed);
                if canceled {
                    // Canceled before LDK made it claimable (ldk-node would hold it anyway):
                    // fail it back now.
                    let _ = self.node.bolt11_payment().fail_for_hash(payment_hash);
                    return;
                }
                let own = self
                    .own
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&payment_hash.0)
                    .cloned();
                if let Some(preimage) = own {
                    let _ = self.node.bolt11_payment().claim_for_hash(
                        payment_hash,
                        claimable_amount_msat,
                        PaymentPreimage(*preimage.expose_bytes()),
                    );
                    return;
                }
                self.claimable.lock().unwrap_or_else(|e| e.into_inner()).insert(
                    payment_hash.0,
                    Claimable {
                        amount_msat: claimable_amount_msat,
                        deadline: claim_deadline,
                    },
                );
                let hash = PaymentHash(payment_hash.0);
                if let Ok(state) = self.state(&hash) {
                    let _ = self.events.send(LnEvent::Invoice {
                        payment_hash: hash,
                        state,
                    });
                }
            }
            Event::PaymentReceived {
                payment_hash,
                amount_msat,
                ..
            } => {
                self.forget_claimable(&payment_hash.0);
                let _ = self.events.send(LnEvent::Invoice {
                    payment_hash: PaymentHash(payment_hash.0),
                    state: HoldInvoiceState::Settled { amount_msat },
                });
            }
            Event::PaymentSuccessful { payment_hash, .. } => {
                let hash = PaymentHash(payment_hash.0);
                let status = self.payment_status(&hash);
                let _ = self.events.send(LnEvent::Payment {
                    payment_hash: hash,
                    status,
                });
            }
            Event::PaymentFailed {
                payment_hash: Some(payment_hash),
                reason,
                ..
            } => {
                let _ = self.events.send(LnEvent::Payment {
                    payment_hash: PaymentHash(payment_hash.0),
                    status: PaymentStatus::Failed {
                        reason: format!("{reason:?}"),
                    },
                });
            }
            _ => {}
        }
    }
}

/// Re-derives the node's key the way ldk-node 0.7 and LDK do (wallet master from the
/// `keys_seed` file → its private key is LDK's seed → LDK master → m/0'), and returns it only if
/// it is the running node's key, so a change in either library's derivation disables the
/// feature instead of producing invoices nobody can pay.
fn node_secret(data_dir: &Path, network: Network, node_id: &PublicKey) -> Option<SecretKey> {
    let seed = std::fs::read(data_dir.join("keys_seed")).ok()?;
    let wallet_master = Xpriv::new_master(network, &seed).ok()?;
    let ldk_seed = wallet_master.private_key.secret_bytes();
    let ldk_master = Xpriv::new_master(Network::Testnet, &ldk_seed).ok()?;
    let secp = Secp256k1::new();
    let key = ldk_master
        .derive_priv(&secp, &[ChildNumber::from_hardened_idx(0).ok()?])
        .ok()?
        .private_key;
    (PublicKey::from_secret_key(&secp, &key) == *node_id).then_some(key)
}

/// `inv` re-issued with `min_final_cltv_expiry_delta = delta`: same hash, payment secret,
/// amount, description, timestamp, expiry and route hints, signed by the node's key. LDK
/// verifies inbound payments from the payment secret (and only requires *at least* its default
/// final CLTV), so it accepts HTLCs paid against this invoice; payers add `delta` blocks, which
/// is what gives the holder of the invoice its hold budget.
fn with_final_cltv(inv: &Bolt11Invoice, delta: u64, key: &SecretKey) -> Result<Bolt11Invoice, LnError> {
    reissue_invoice(inv, delta, true, key)
}

/// `inv` re-issued with `min_final_cltv_expiry_delta = delta`, with or without its route hints,
/// signed with `key` (the node's). The LND emulator uses it to issue invoices as LND would (LND
/// adds hop hints only when asked: `private`).
pub fn reissue_invoice(
    inv: &Bolt11Invoice,
    delta: u64,
    route_hints: bool,
    key: &SecretKey,
) -> Result<Bolt11Invoice, LnError> {
    let amount = inv
        .amount_milli_satoshis()
        .ok_or_else(|| LnError::Refused("hold invoices need an amount".into()))?;
    let description = match inv.description() {
        Bolt11InvoiceDescriptionRef::Direct(d) => d.as_inner().0.clone(),
        Bolt11InvoiceDescriptionRef::Hash(_) => {
            return Err(LnError::Unsupported("description hashes are not re-issued".into()))
        }
    };
    let mut builder = InvoiceBuilder::new(inv.currency())
        .description(description)
        .payment_hash(*inv.payment_hash())
        .payment_secret(*inv.payment_secret())
        .duration_since_epoch(inv.duration_since_epoch())
        .min_final_cltv_expiry_delta(delta)
        .expiry_time(inv.expiry_time())
        .amount_milli_satoshis(amount)
        .basic_mpp();
    if route_hints {
        for hint in inv.private_routes() {
            builder = builder.private_route(hint.clone().into_inner());
        }
    }
    let secp = Secp256k1::new();
    builder
        .build_signed(|msg| secp.sign_ecdsa_recoverable(msg, key))
        .map_err(|e| LnError::Refused(format!("re-issuing the invoice: {e}")))
}

impl LdkNode {
    /// Builds and starts the node (must be called inside a multi-thread tokio runtime).
    /// `chain` is used to return the transactions the wallet broadcasts.
    pub async fn start(config: LdkConfig, chain: Arc<dyn ChainSource>) -> Result<LdkNode, LnError> {
        std::fs::create_dir_all(&config.data_dir).map_err(unavailable)?;
        let own_path = config.data_dir.join(OWN_PREIMAGES_FILE);
        let own = load_own(&own_path)?;
        let cfg = config.clone();
        let node = blocking(move || -> Result<Node, LnError> {
            let listen = match cfg.listen {
                Some(a) => Some(vec![SocketAddress::from_str(&a.to_string()).map_err(refused)?]),
                None => None,
            };
            let ldk_config = Config {
                network: cfg.network,
                storage_dir_path: cfg.data_dir.display().to_string(),
                listening_addresses: listen,
                ..Config::default()
            };
            let mut builder = Builder::from_config(ldk_config);
            // The node logs into Eddy's log (see `NodeLog`): no file of its own to open, so no
            // log write can fail or panic (ldk-node's file logger panics when it cannot open its
            // file, e.g. out of file handles — and with it the node's chain sync stopped).
            builder.set_custom_logger(Arc::new(NodeLog));
            match &cfg.chain {
                LdkChainSource::BitcoindRpc {
                    host,
                    port,
                    user,
                    password,
                } => {
                    builder.set_chain_source_bitcoind_rpc(host.clone(), *port, user.clone(), password.clone());
                }
                LdkChainSource::Esplora(url) => {
                    builder.set_chain_source_esplora(url.clone(), None);
                }
            }
            let node = builder.build().map_err(unavailable)?;
            node.start().map_err(unavailable)?;
            // ldk-node retries peers only on a 60-s timer: reconnect channel peers now.
            for p in node.list_peers() {
                if !p.is_connected {
                    let _ = node.connect(p.node_id, p.address.clone(), true);
                }
            }
            Ok(node)
        })
        .await??;
        let (events, _) = broadcast::channel(1024);
        let node_secret = node_secret(&config.data_dir, config.network, &node.node_id());
        let shared = Arc::new(Shared {
            node: Arc::new(node),
            node_secret,
            events,
            claimable: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            own: Mutex::new(own),
            own_path,
        });
        let restore = shared.clone();
        blocking(move || restore.restore_claimable()).await?;
        let s = shared.clone();
        let event_task = tokio::spawn(async move {
            loop {
                let event = s.node.next_event_async().await;
                let s2 = s.clone();
                // ldk-node calls may block: handle off the async workers.
                let _ = tokio::task::spawn_blocking(move || {
                    s2.handle(event);
                    let _ = s2.node.event_handled();
                })
                .await;
            }
        });
        // ldk-node retries disconnected peers only every 60 s: after either side of a channel
        // restarts, its payments (held swap HTLCs included) would wait that long. Reconnect
        // channel peers we know an address for every few seconds instead.
        let s = shared.clone();
        let reconnect_task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RECONNECT_EVERY).await;
                let s2 = s.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let channel_peers: std::collections::HashSet<_> =
                        s2.node.list_channels().iter().map(|c| c.counterparty_node_id).collect();
                    for p in s2.node.list_peers() {
                        if !p.is_connected && channel_peers.contains(&p.node_id) {
                            let _ = s2.node.connect(p.node_id, p.address.clone(), true);
                        }
                    }
                })
                .await;
            }
        });
        Ok(LdkNode {
            shared,
            network: config.network,
            chain,
            event_task,
            reconnect_task,
            send_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The node's signing key (re-derived from its seed; `None` when it could not be), for the
    /// LND emulator, which signs the invoices it re-issues with the key of the node behind it,
    /// as LND signs its own. Never logged.
    pub fn invoice_signing_key(&self) -> Option<SecretKey> {
        self.shared.node_secret
    }

    /// The ldk-node handle (for setup such as connecting peers and opening channels).
    pub fn ldk(&self) -> &Arc<Node> {
        &self.shared.node
    }

    /// Stops the node (other handles on it then see it not running).
    pub async fn stop(&self) -> Result<(), LnError> {
        self.event_task.abort();
        self.reconnect_task.abort();
        let node = self.shared.node.clone();
        blocking(move || node.stop().map_err(unavailable)).await?
    }
}

fn parse_invoice(s: &str) -> Result<Bolt11Invoice, LnError> {
    Bolt11Invoice::from_str(s.trim()).map_err(|e| LnError::Refused(format!("invalid invoice: {e}")))
}

fn description(s: &str) -> Result<Bolt11InvoiceDescription, LnError> {
    Ok(Bolt11InvoiceDescription::Direct(
        Description::new(s.to_string()).map_err(refused)?,
    ))
}

#[async_trait]
impl LightningNode for LdkNode {
    async fn info(&self) -> Result<NodeInfo, LnError> {
        Ok(NodeInfo {
            pubkey: self.shared.node.node_id(),
            network: self.network,
            block_height: self.shared.height(),
        })
    }

    async fn create_hold_invoice(&self, req: &HoldInvoiceRequest) -> Result<HoldInvoice, LnError> {
        let s = self.shared.clone();
        let req = req.clone();
        let inv = blocking(move || {
            s.node
                .bolt11_payment()
                .receive_for_hash(
                    req.amount_msat,
                    &description(&req.description)?,
                    req.expiry_secs,
                    LdkHash(req.payment_hash.0),
                )
                .map_err(refused)
        })
        .await??;
        // ldk-node always issues 42; ask payers for more when the caller needs a longer hold.
        let wanted = u64::from(req.min_final_cltv_delta);
        let inv = match &self.shared.node_secret {
            Some(key) if wanted > inv.min_final_cltv_expiry_delta() => with_final_cltv(&inv, wanted, key)?,
            _ => inv,
        };
        Ok(HoldInvoice {
            bolt11: inv.to_string(),
            min_final_cltv_delta: inv.min_final_cltv_expiry_delta(),
        })
    }

    async fn hold_invoice_state(&self, payment_hash: &PaymentHash) -> Result<HoldInvoiceState, LnError> {
        let s = self.shared.clone();
        let h = *payment_hash;
        blocking(move || s.state(&h)).await?
    }

    async fn settle_hold_invoice(&self, preimage: &Preimage) -> Result<(), LnError> {
        let s = self.shared.clone();
        let preimage = *preimage;
        blocking(move || {
            let hash = preimage.payment_hash();
            let claimable_msat = match s.state(&hash)? {
                HoldInvoiceState::Settled { .. } => return Ok(()),
                HoldInvoiceState::Canceled => return Err(LnError::Refused("invoice is canceled".into())),
                HoldInvoiceState::Open => {
                    // HTLCs held on a channel that closed while we were down are not restored
                    // as accepted (see `restore_claimable`), but if LDK's manager knows the
                    // payment, a claim still takes them on-chain: try it (LDK ignores a hash it
                    // cannot claim, and the state stays open).
                    let held: u64 = s.held_htlcs(&hash).iter().map(|h| h.amount_msat).sum();
                    if held == 0 {
                        return Err(LnError::Refused("invoice is not paid".into()));
                    }
                    held
                }
                HoldInvoiceState::Accepted { amount_msat, .. } => amount_msat,
            };
            let invoice_amount = s
                .node
                .payment(&PaymentId(hash.0))
                .and_then(|d| d.amount_msat)
                .unwrap_or(0);
            s.node
                .bolt11_payment()
                .claim_for_hash(
                    LdkHash(hash.0),
                    claimable_msat.max(invoice_amount),
                    PaymentPreimage(*preimage.expose_bytes()),
                )
                .map_err(refused)
        })
        .await?
    }

    async fn cancel_hold_invoice(&self, payment_hash: &PaymentHash) -> Result<(), LnError> {
        let s = self.shared.clone();
        let hash = *payment_hash;
        blocking(move || match s.state(&hash)? {
            HoldInvoiceState::Canceled => Ok(()),
            HoldInvoiceState::Settled { .. } => Err(LnError::Refused("invoice is settled".into())),
            _ => {
                s.node
                    .bolt11_payment()
                    .fail_for_hash(LdkHash(hash.0))
                    .map_err(refused)?;
                s.forget_claimable(&hash.0);
                let _ = s.events.send(LnEvent::Invoice {
                    payment_hash: hash,
                    state: HoldInvoiceState::Canceled,
                });
                Ok(())
            }
        })
        .await?
    }

    async fn create_invoice(
        &self,
        preimage: &Preimage,
        amount_msat: u64,
        expiry_secs: u32,
        description_text: &str,
    ) -> Result<HoldInvoice, LnError> {
        let s = self.shared.clone();
        let preimage = *preimage;
        let text = description_text.to_string();
        let inv = blocking(move || -> Result<Bolt11Invoice, LnError> {
            let hash = preimage.payment_hash();
            {
                // Persist the preimage before the invoice exists: a payment may arrive at once.
                let mut own = s.own.lock().unwrap_or_else(|e| e.into_inner());
                own.insert(hash.0, preimage);
                save_own(&s.own_path, &own)?;
            }
            s.node
                .bolt11_payment()
                .receive_for_hash(amount_msat, &description(&text)?, expiry_secs, LdkHash(hash.0))
                .map_err(refused)
        })
        .await??;
        Ok(HoldInvoice {
            bolt11: inv.to_string(),
            min_final_cltv_delta: inv.min_final_cltv_expiry_delta(),
        })
    }

    async fn pay_invoice(&self, bolt11: &str, params: &PayParams) -> Result<PaymentHash, LnError> {
        let invoice = parse_invoice(bolt11)?;
        if invoice.network() != self.network {
            return Err(LnError::Refused(format!("invoice is for {}", invoice.network())));
        }
        if params.outgoing_channel.is_some() {
            return Err(LnError::Unsupported(
                "ldk-node 0.7 cannot restrict the outgoing channel".into(),
            ));
        }
        if params.last_hop.is_some() {
            return Err(LnError::Unsupported("ldk-node 0.7 cannot restrict the last hop".into()));
        }
        if let Some(max) = params.max_total_cltv_delta {
            // The router bounds the route it builds by `max_total_cltv_expiry_delta`; refuse up
            // front what cannot fit at all (the final CLTV plus a route hint the payee chose), and
            // a limit of 0, which is never meant as "no limit".
            let hints = invoice
                .route_hints()
                .iter()
                .map(|h| h.0.iter().map(|hop| u64::from(hop.cltv_expiry_delta)).sum::<u64>())
                .max()
                .unwrap_or(0);
            let needed = invoice.min_final_cltv_expiry_delta().saturating_add(hints);
            if max == 0 || needed > u64::from(max) {
                return Err(LnError::Refused(format!(
                    "the invoice's final CLTV and route hints need {needed} blocks, above the limit {max}"
                )));
            }
        }
        let hash = PaymentHash(*invoice.payment_hash().as_ref());
        let s = self.shared.clone();
        let params = params.clone();
        blocking(move || {
            match s.payment_status(&hash) {
                PaymentStatus::InFlight | PaymentStatus::Succeeded { .. } => return Ok(hash),
                PaymentStatus::Unknown | PaymentStatus::Failed { .. } => {}
            }
            let mut route = RouteParametersConfig {
                max_total_routing_fee_msat: Some(params.max_fee_msat),
                ..RouteParametersConfig::default()
            };
            if let Some(d) = params.max_total_cltv_delta {
                route.max_total_cltv_expiry_delta = d;
            }
            // A send that fails before any HTLC leaves (no route now: with many payments
            // started at once LDK's router picks a first hop that others just filled) is safe
            // to resend; try again for a few seconds before reporting it.
            let mut attempt = 0;
            loop {
                match s.node.bolt11_payment().send(&invoice, Some(route)) {
                    Ok(_) => return Ok(hash),
                    // The node already has a payment for this hash under way (its payment
                    // store and its channel manager can disagree after a restart): that payment
                    // is the caller's; its outcome comes from `payment_status`.
                    Err(ldk_node::NodeError::DuplicatePayment) => return Ok(hash),
                    Err(ldk_node::NodeError::PaymentSendingFailed) if attempt < SEND_RETRIES => {
                        attempt += 1;
                        std::thread::sleep(SEND_RETRY_PAUSE);
                    }
                    Err(e) => return Err(refused(e)),
                }
            }
        })
        .await?
    }

    async fn payment_status(&self, payment_hash: &PaymentHash) -> Result<PaymentStatus, LnError> {
        let s = self.shared.clone();
        let h = *payment_hash;
        blocking(move || s.payment_status(&h)).await
    }

    async fn channels(&self) -> Result<Vec<ChannelInfo>, LnError> {
        let s = self.shared.clone();
        blocking(move || {
            s.node
                .list_channels()
                .into_iter()
                .map(|c| ChannelInfo {
                    short_channel_id: c.short_channel_id,
                    peer: c.counterparty_node_id,
                    capacity: Amount::from_sat(c.channel_value_sats),
                    local_msat: c.outbound_capacity_msat,
                    remote_msat: c.inbound_capacity_msat,
                    local_reserve: Amount::from_sat(c.unspendable_punishment_reserve.unwrap_or(0)),
                    remote_reserve: Amount::from_sat(c.counterparty_unspendable_punishment_reserve),
                    private: !c.is_announced,
                    usable: c.is_usable,
                })
                .collect()
        })
        .await
    }

    async fn new_address(&self) -> Result<Address, LnError> {
        let s = self.shared.clone();
        blocking(move || s.node.onchain_payment().new_address().map_err(unavailable)).await?
    }

    async fn wallet_balance(&self) -> Result<WalletBalance, LnError> {
        let s = self.shared.clone();
        blocking(move || {
            let b = s.node.list_balances();
            WalletBalance {
                spendable: Amount::from_sat(b.spendable_onchain_balance_sats),
                total: Amount::from_sat(b.total_onchain_balance_sats),
            }
        })
        .await
    }

    async fn send_outputs(&self, outputs: &[(ScriptBuf, Amount)], fee_rate: FeeRate) -> Result<Transaction, LnError> {
        let [(spk, amount)] = outputs else {
            return Err(LnError::Unsupported(
                "ldk-node 0.7 pays one address per transaction".into(),
            ));
        };
        let address = Address::from_script(spk, self.network).map_err(refused)?;
        let _one_at_a_time = self.send_lock.lock().await;
        let s = self.shared.clone();
        let sats = amount.to_sat();
        let txid = blocking(move || {
            s.node
                .onchain_payment()
                .send_to_address(&address, sats, Some(fee_rate))
                .map_err(refused)
        })
        .await??;
        // ldk-node returns the txid and broadcasts from a background task; the transaction
        // itself comes from the chain source once it is there (polled tightly at first: the
        // HTLC publication latency is what a client's payment waits for).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut pause = Duration::from_millis(1);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.chain.transaction(&txid).await {
                return Ok(status.tx);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        Err(LnError::Unavailable(format!(
            "{txid} was sent but the chain source does not show it"
        )))
    }

    fn subscribe(&self) -> broadcast::Receiver<LnEvent> {
        self.shared.events.subscribe()
    }

    fn settle_deadline_delta(&self) -> u32 {
        LDK_CLAIM_DEADLINE_BEFORE_EXPIRY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test subscriber writes into.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn node_log_drops_debug_records_and_forwards_the_rest() {
        use ldk_node::logger::{LogRecord, LogWriter};
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let secret = "0101010101010101010101010101010101010101010101010101010101010101";
            for level in [LogLevel::Gossip, LogLevel::Trace, LogLevel::Debug] {
                NodeLog.log(LogRecord {
                    level,
                    args: format_args!("Claiming inbound HTLC with preimage {secret}"),
                    module_path: "lightning::ln::channelmanager",
                    line: 1,
                });
            }
            for (level, what) in [
                (LogLevel::Info, "node info"),
                (LogLevel::Warn, "node warning"),
                (LogLevel::Error, "node error"),
            ] {
                NodeLog.log(LogRecord {
                    level,
                    args: format_args!("{what}"),
                    module_path: "ldk_node",
                    line: 2,
                });
            }
        });
        let text = String::from_utf8(out.0.lock().unwrap_or_else(|e| e.into_inner()).clone()).expect("utf8");
        assert!(!text.contains("preimage"), "{text}");
        for what in ["node info", "node warning", "node error"] {
            assert!(text.contains(what), "{what}: {text}");
        }
        assert!(
            text.contains("DEBUG") && text.contains("WARN") && text.contains("ERROR"),
            "{text}"
        );
    }
}
