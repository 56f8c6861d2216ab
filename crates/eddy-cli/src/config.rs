//! What the two long-running processes (`eddy server`, `eddy daemon`) share: layered
//! configuration (command-line flags over `EDDY_*` environment variables over a TOML file over
//! defaults), structured logging (text or JSON lines via `tracing`), and opening the backends
//! the configuration names — the bitcoind-compatible chain source, the Lightning node (embedded
//! LDK or LND over gRPC) and the swap store (SQLite in the data dir, or PostgreSQL).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use bitcoin::{FeeRate, Network};
use clap::Args;
use eddy_backends::bitcoind::{BitcoindAuth, BitcoindSource};
use eddy_backends::ldk::{LdkChainSource, LdkConfig, LdkNode};
use eddy_backends::lnd::{LndConfig, LndNode};
use eddy_backends::{ChainSource, LightningNode};
use eddy_store::{PgStore, SqliteStore, SwapStore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Fee rate used when the chain source has no estimate yet (regtest at start): 2 sat/vB.
const FALLBACK_FEE: FeeRate = FeeRate::from_sat_per_kwu(500);

/// Options both processes take: network, data dir, chain, Lightning node, store, logging.
/// Every field is optional here; [`Common::network`] and friends apply the defaults.
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct Common {
    /// Network: bitcoin, testnet, signet or regtest.
    #[arg(long, env = "EDDY_NETWORK")]
    pub network: Option<String>,
    /// Where keys, the swap database and the embedded node live.
    #[arg(long, env = "EDDY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// bitcoind (or `eddy devnet`) JSON-RPC URL, e.g. http://127.0.0.1:18443.
    #[arg(long, env = "EDDY_BITCOIND_URL")]
    pub bitcoind_url: Option<String>,
    /// bitcoind cookie file (instead of user/password).
    #[arg(long, env = "EDDY_BITCOIND_COOKIE")]
    pub bitcoind_cookie: Option<PathBuf>,
    /// bitcoind RPC user.
    #[arg(long, env = "EDDY_BITCOIND_USER")]
    pub bitcoind_user: Option<String>,
    /// bitcoind RPC password.
    #[arg(long, env = "EDDY_BITCOIND_PASSWORD")]
    pub bitcoind_password: Option<String>,
    /// Lightning backend: `ldk` (embedded node, the default) or `lnd`.
    #[arg(long, env = "EDDY_LN")]
    pub ln: Option<String>,
    /// Embedded node's Lightning P2P listening address.
    #[arg(long, env = "EDDY_LDK_LISTEN")]
    pub ldk_listen: Option<SocketAddr>,
    /// LND: an lndconnect:// URI (host, macaroon, and optionally LND's TLS certificate; without
    /// one, LND's certificate must verify against the system's CA roots, `SSL_CERT_FILE`
    /// honoured).
    #[arg(long, env = "EDDY_LND_CONNECT")]
    pub lnd_connect: Option<String>,
    /// LND: a certificate file to trust instead of the URI's: LND's own tls.cert (re-read when
    /// the connection fails, so LND's certificate renewal is followed) or the CA that issued it.
    #[arg(long, env = "EDDY_LND_TLS_CERT")]
    pub lnd_tls_cert: Option<PathBuf>,
    /// LND: the node's `invoices.holdexpirydelta` (blocks before a held HTLC's expiry at which
    /// LND cancels the invoice; LND's default is 12 up to v0.20, 18 from v0.21). Read from the
    /// node at start when its macaroon allows GetDebugInfo (LND >= 0.18), and then must match;
    /// required otherwise.
    #[arg(long, env = "EDDY_LND_HOLD_EXPIRY_DELTA")]
    pub lnd_hold_expiry_delta: Option<u32>,
    /// Swap database: a postgres:// URL; default SQLite in the data dir.
    #[arg(long, env = "EDDY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Log format: `text` or `json` (one JSON object per line).
    #[arg(long, env = "EDDY_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter (tracing env-filter syntax), default `info`.
    #[arg(long, env = "EDDY_LOG")]
    pub log: Option<String>,
}

/// Reads `file` (TOML) when given and lays `cli` (flags and environment, already merged by
/// clap) over it: a value set on the command line or in the environment wins, then the file.
/// A key the options do not know is an error (a typo must not silently fall back to a default).
/// The layering itself is [`eddy_config::layer`] (pure, fuzzed in `fuzz/`).
pub fn layered<T: Serialize + DeserializeOwned + Default>(cli: &T, file: Option<&Path>) -> anyhow::Result<T> {
    let text = match file {
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?),
        None => None,
    };
    let name = file.map(|p| p.display().to_string()).unwrap_or_default();
    Ok(eddy_config::layer(cli, text.as_deref().map(|t| (name.as_str(), t)))?)
}

/// Warns when a listener meant for this machine only (the daemon's local API, the server's
/// admin API or its metrics) is bound beyond loopback: its token is then all that stands
/// between the network and the node's funds. Allowed — behind a firewall or a tunnel it may be
/// meant — but never silent.
pub fn warn_if_exposed(what: &str, addr: SocketAddr) {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "{what} listens beyond loopback: anyone who can reach {addr} can try its token; bind 127.0.0.1 unless you mean it");
        eprintln!("warning: {what} listens on {addr}, beyond loopback (bind 127.0.0.1 unless you mean it)");
    }
}

/// The running backends of one process.
pub struct Backends {
    /// The chain.
    pub chain: Arc<dyn ChainSource>,
    /// The Lightning node.
    pub ln: Arc<dyn LightningNode>,
    /// The embedded node, when that is the backend (to stop it cleanly).
    pub ldk: Option<Arc<LdkNode>>,
    /// The swap store.
    pub store: Arc<dyn SwapStore>,
}

impl Common {
    /// The network (default regtest).
    pub fn network(&self) -> anyhow::Result<Network> {
        let n = self.network.as_deref().unwrap_or("regtest");
        Network::from_core_arg(n)
            .or_else(|_| n.parse::<Network>())
            .map_err(|_| anyhow!("unknown network {n:?} (bitcoin, testnet, signet or regtest)"))
    }

    /// The data dir (default `~/.eddy/<name>`), created 0700.
    pub fn data_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => {
                let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set; give --data-dir"))?;
                PathBuf::from(home).join(".eddy").join(name)
            }
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(dir)
    }

    /// Starts logging to stderr in the configured format.
    pub fn init_logging(&self) -> anyhow::Result<()> {
        let filter = tracing_subscriber::EnvFilter::try_new(self.log.as_deref().unwrap_or("info"))
            .map_err(|e| anyhow!("log filter: {e}"))?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
        let r = match self.log_format.as_deref().unwrap_or("text") {
            "json" => builder.json().flatten_event(true).try_init(),
            "text" => builder.try_init(),
            other => bail!("unknown log format {other:?} (text or json)"),
        };
        // A second init in one process (tests) keeps the first subscriber.
        let _ = r;
        Ok(())
    }

    fn bitcoind_auth(&self) -> anyhow::Result<BitcoindAuth> {
        match (&self.bitcoind_cookie, &self.bitcoind_user, &self.bitcoind_password) {
            (Some(c), None, None) => Ok(BitcoindAuth::Cookie(c.clone())),
            (None, Some(u), Some(p)) => Ok(BitcoindAuth::UserPass(u.clone(), p.clone())),
            (None, None, None) => {
                bail!("bitcoind credentials missing: give --bitcoind-cookie or --bitcoind-user and --bitcoind-password")
            }
            _ => bail!("give either --bitcoind-cookie or --bitcoind-user with --bitcoind-password, not both"),
        }
    }

    /// Connects the chain source, starts or connects the Lightning node, opens the store.
    pub async fn open_backends(&self, dir: &Path, store_file: &str) -> anyhow::Result<Backends> {
        let network = self.network()?;
        let url = self
            .bitcoind_url
            .clone()
            .ok_or_else(|| anyhow!("--bitcoind-url is required"))?;
        let auth = self.bitcoind_auth()?;
        let chain: Arc<dyn ChainSource> = Arc::new(
            BitcoindSource::connect(&url, &auth, FALLBACK_FEE)
                .await
                .with_context(|| format!("connecting to bitcoind at {url}"))?,
        );
        let (ln, ldk): (Arc<dyn LightningNode>, Option<Arc<LdkNode>>) = match self.ln.as_deref().unwrap_or("ldk") {
            "ldk" => {
                let (user, password) = match &auth {
                    BitcoindAuth::UserPass(u, p) => (u.clone(), p.clone()),
                    BitcoindAuth::Cookie(path) => {
                        let c = std::fs::read_to_string(path)
                            .with_context(|| format!("reading the cookie {}", path.display()))?;
                        let (u, p) = c
                            .trim()
                            .split_once(':')
                            .ok_or_else(|| anyhow!("cookie file {} is not user:password", path.display()))?;
                        (u.to_string(), p.to_string())
                    }
                };
                let parsed = reqwest::Url::parse(&url).with_context(|| format!("bitcoind URL {url}"))?;
                let host = parsed.host_str().unwrap_or("127.0.0.1").to_string();
                let port = parsed.port_or_known_default().unwrap_or(8332);
                let node = Arc::new(
                    LdkNode::start(
                        LdkConfig {
                            data_dir: dir.join("ldk"),
                            network,
                            listen: self.ldk_listen,
                            chain: LdkChainSource::BitcoindRpc {
                                host,
                                port,
                                user,
                                password,
                            },
                        },
                        chain.clone(),
                    )
                    .await
                    .context("starting the embedded Lightning node")?,
                );
                (node.clone(), Some(node))
            }
            "lnd" => {
                let uri = self
                    .lnd_connect
                    .as_deref()
                    .ok_or_else(|| anyhow!("--ln lnd needs --lnd-connect lndconnect://…"))?;
                let cfg = self.lnd_config(uri, dir)?;
                (
                    Arc::new(LndNode::connect(&cfg).await.context("connecting to LND")?),
                    None,
                )
            }
            other => bail!("unknown Lightning backend {other:?} (ldk or lnd)"),
        };
        let store: Arc<dyn SwapStore> = match &self.database_url {
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Arc::new(PgStore::connect(u).await.context("connecting to PostgreSQL")?)
            }
            Some(u) => bail!("database URL {u:?} is not postgres://…; leave it out for SQLite"),
            None => Arc::new(
                SqliteStore::open(&dir.join(store_file))
                    .await
                    .context("opening the swap database")?,
            ),
        };
        Ok(Backends { chain, ln, ldk, store })
    }
}

impl Common {
    /// The LND connection settings: the lndconnect URI's, with `--lnd-tls-cert` replacing its
    /// certificate and `--lnd-hold-expiry-delta` added.
    fn lnd_config(&self, uri: &str, dir: &Path) -> anyhow::Result<LndConfig> {
        let mut cfg = LndConfig::from_lndconnect(uri, dir).context("lndconnect URI")?;
        if let Some(cert) = &self.lnd_tls_cert {
            cfg.cert_path = Some(cert.clone());
        }
        cfg.hold_expiry_delta = self.lnd_hold_expiry_delta;
        Ok(cfg)
    }
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs a daemon's watchdog until SIGTERM or Ctrl-C: `pass` runs every `every` and answers
/// whether the Lightning node has not followed the chain for too long. Returns `true` (logged)
/// when it has — the caller then stops and exits non-zero, for its supervisor to restart it and
/// its node — and `false` on a signal.
pub async fn until_stopped<F, Fut>(every: std::time::Duration, mut pass: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let watchdog = async {
        loop {
            tokio::time::sleep(every).await;
            if pass().await {
                return;
            }
        }
    };
    let blind = tokio::select! {
        _ = shutdown_signal() => false,
        _ = watchdog => true,
    };
    if blind {
        tracing::error!("the Lightning node has not followed the chain for too long: exiting for a restart");
    }
    tracing::info!("stopping");
    blind
}

/// How long a stopping daemon waits for each of its parts (an engine's runner, the embedded
/// node): a wedged one may never stop, and the process must exit for its supervisor.
pub const STOP_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

/// Stops the embedded node, if any, waiting at most [`STOP_BOUND`].
pub async fn stop_node(ldk: Option<&Arc<LdkNode>>) -> anyhow::Result<()> {
    if let Some(n) = ldk {
        match tokio::time::timeout(STOP_BOUND, n.stop()).await {
            Ok(r) => r?,
            Err(_) => tracing::error!("the Lightning node did not stop within {} s", STOP_BOUND.as_secs()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnd_options_complete_the_lndconnect_uri() {
        let dir = tempfile::tempdir().expect("tmp");
        let uri = "lndconnect://127.0.0.1:10009?cert=MIIB&macaroon=qqqq";
        let plain = Common::default().lnd_config(uri, dir.path()).expect("uri only");
        assert_eq!(plain.cert_path, Some(dir.path().join("lnd-tls.cert")));
        assert_eq!(plain.hold_expiry_delta, None);
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "lnd_tls_cert = \"/var/lib/lnd/tls.cert\"\nlnd_hold_expiry_delta = 18\n",
        )
        .expect("write");
        let common: Common = layered(&Common::default(), Some(&file)).expect("layered");
        let cfg = common.lnd_config(uri, dir.path()).expect("with options");
        assert_eq!(cfg.cert_path, Some(PathBuf::from("/var/lib/lnd/tls.cert")));
        assert_eq!(cfg.hold_expiry_delta, Some(18));
        assert_eq!(cfg.address, "https://127.0.0.1:10009");
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    struct T {
        a: Option<u32>,
        b: Option<String>,
        c: Option<u32>,
    }

    #[test]
    fn flags_over_file_over_defaults() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "a = 1\nb = \"file\"\n").expect("write");
        let cli = T {
            a: None,
            b: Some("flag".into()),
            c: None,
        };
        let t: T = layered(&cli, Some(&f)).expect("layered");
        assert_eq!(
            t,
            T {
                a: Some(1),
                b: Some("flag".into()),
                c: None
            }
        );
        std::fs::write(&f, "a = 1\nd = 2\n").expect("write");
        let e = layered(&cli, Some(&f)).expect_err("unknown key");
        assert!(e.to_string().contains("unknown setting \"d\""), "{e}");
        let e = layered(&cli, Some(&dir.path().join("missing.toml"))).expect_err("missing file");
        assert!(e.to_string().contains("missing.toml"), "{e}");
        std::fs::write(&f, "a = \"one\"\n").expect("write");
        let e = layered(&cli, Some(&f)).expect_err("wrong type");
        assert!(e.to_string().contains("configuration"), "{e}");
    }
}
