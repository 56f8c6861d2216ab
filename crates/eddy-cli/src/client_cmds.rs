//! The CLI commands that talk to a running `eddy daemon` over its local API: `terms`,
//! `quote out`, `out`, `list`, `swapinfo`, `monitor`. Each prints a readable summary, or with
//! `--json` the daemon's JSON answer unchanged (for scripts). The token comes from the daemon's
//! data dir (`api.token`, readable only by its owner).
//!
//! Where the API is and which token it takes: `--daemon` (the client daemon) or `--admin` (the
//! server's admin API) and `--token-file` (or `--data-dir`) when given; else the process's own
//! configuration file (`--config`, the same TOML file the daemon or the server runs with: its
//! `listen` or `admin_listen`, and its `data_dir`); else the defaults. [`Api`] says which of
//! the two processes a command talks to. A URL meant for the daemon never gets the server's
//! admin token, and no token goes over plain HTTP to another host unless asked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::daemon::{OptionsBody, SwapView, TOKEN_FILE};

/// Where the daemon is and how to authenticate.
#[derive(Clone, Debug, Args)]
pub struct DaemonConn {
    /// The daemon's (or the server's) TOML configuration file, the one it runs with: the CLI
    /// takes the API's address (`listen`; the server's `admin_listen`) and the token's
    /// directory (`data_dir`) from it.
    #[arg(long, env = "EDDY_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// The client daemon's local API (default: from `--config`, else http://127.0.0.1:8281).
    #[arg(long, env = "EDDY_DAEMON_URL", global = true)]
    pub daemon: Option<String>,
    /// The swap server's admin API, for `eddy wallet` and the server's `eddy node` (default:
    /// `admin_listen` from `--config`, else http://127.0.0.1:8283). Never `--daemon`: a URL
    /// meant for the daemon never receives the server's admin token.
    #[arg(long, env = "EDDY_ADMIN_URL", global = true)]
    pub admin: Option<String>,
    /// Send the token over plain HTTP to a host other than this one (refused otherwise: use
    /// HTTPS or an SSH tunnel).
    #[arg(long, env = "EDDY_ALLOW_REMOTE_HTTP", global = true)]
    pub allow_remote_http: bool,
    /// The token file (default: `api.token` — the server's `admin.token` — in the data dir).
    #[arg(long, env = "EDDY_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// The daemon's (or the server's) data dir, to find its token (default: from `--config`,
    /// else `~/.eddy/client` — `~/.eddy/server` for the server).
    #[arg(long, env = "EDDY_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Print the daemon's JSON instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `eddy quote …`.
#[derive(Clone, Debug, Subcommand)]
pub enum QuoteKind {
    /// What a loop-out of AMOUNT sat costs.
    Out {
        /// HTLC amount, sat.
        amount: u64,
    },
    /// What a loop-in of AMOUNT sat costs.
    In {
        /// HTLC amount (what you pay on-chain), sat.
        amount: u64,
    },
}

/// `eddy in` arguments.
#[derive(Clone, Debug, Args)]
pub struct InArgs {
    /// Amount to move into your channels (the on-chain HTLC value), sat.
    pub amount: u64,
    /// Fund the HTLC yourself from any wallet: prints the address, a BIP21 URI and a QR code.
    #[arg(long)]
    pub external: bool,
    /// Most the server's fee may be, sat.
    #[arg(long = "max-swap-fee")]
    pub max_swap_fee: Option<u64>,
    /// Confirmation target of the funding transaction.
    #[arg(long)]
    pub conf_target: Option<u16>,
    /// Most the funding transaction's miner fee may be (estimated before the swap starts), sat.
    #[arg(long = "max-miner-fee")]
    pub max_miner_fee: Option<u64>,
    /// The channel peer (node public key) the payment must arrive through, to fill that channel.
    #[arg(long = "last-hop")]
    pub last_hop: Option<bitcoin::secp256k1::PublicKey>,
}

/// `eddy out` arguments.
#[derive(Clone, Debug, Args)]
pub struct OutArgs {
    /// Amount to move on-chain, sat.
    pub amount: u64,
    /// Claim to this address (default: a new address of the node's wallet).
    #[arg(long)]
    pub addr: Option<String>,
    /// Limits for this swap.
    #[command(flatten)]
    pub options: OptionsBody,
}

/// Which process's API a command talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// The client daemon's local API: the swap commands.
    Daemon,
    /// The server's admin API: `eddy wallet`.
    Admin,
    /// Either (`eddy node`): the daemon's, unless `--config` is the server's file.
    Node,
}

/// The process a configuration file belongs to, and what the CLI needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProcessConfig {
    /// The server's file (its admin API), or the daemon's.
    server: bool,
    /// The API's address as the process binds it.
    listen: SocketAddr,
    /// Its data dir as configured (the process's default otherwise).
    data_dir: Option<PathBuf>,
}

impl ProcessConfig {
    /// Reads `path` as the daemon's configuration, or the server's (`want` says which is
    /// expected: `eddy wallet` takes only the server's, the swap commands only the daemon's).
    /// A file both could run with is the daemon's for `eddy node`, unless its data dir holds
    /// the server's admin token and not the daemon's token.
    fn read(path: &Path, want: Api) -> anyhow::Result<ProcessConfig> {
        use crate::admin_api::{ADMIN_TOKEN_FILE, DEFAULT_ADMIN_LISTEN};
        use crate::daemon::{DaemonArgs, DEFAULT_LISTEN};
        use crate::server::ServerArgs;
        let daemon = crate::config::layered(&DaemonArgs::default(), Some(path));
        let server = crate::config::layered(&ServerArgs::default(), Some(path));
        let as_daemon = |a: DaemonArgs| ProcessConfig {
            server: false,
            listen: a.listen.unwrap_or(DEFAULT_LISTEN),
            data_dir: a.common.data_dir,
        };
        let as_server = |a: ServerArgs| ProcessConfig {
            server: true,
            listen: a.admin_listen.unwrap_or(DEFAULT_ADMIN_LISTEN),
            data_dir: a.common.data_dir,
        };
        let shown = path.display();
        let has = |dir: &Option<PathBuf>, name: &str| dir.as_ref().is_some_and(|d| d.join(name).exists());
        match (want, daemon, server) {
            (Api::Daemon, Ok(d), _) if has(&d.common.data_dir, ADMIN_TOKEN_FILE) => Err(anyhow!(
                "{shown} names a server's data dir (it holds {ADMIN_TOKEN_FILE}); swap commands talk to a client daemon: give its file"
            )),
            (Api::Daemon, Ok(d), _) => Ok(as_daemon(d)),
            (Api::Daemon, Err(e), Ok(_)) => Err(anyhow!(
                "{shown} is the server's configuration; swap commands talk to a client daemon: give its file ({e})"
            )),
            (Api::Admin, _, Ok(s)) => Ok(as_server(s)),
            (Api::Admin, Ok(_), Err(e)) => Err(anyhow!(
                "{shown} is a client daemon's configuration; `eddy wallet` talks to the server's admin API: give the server's file ({e})"
            )),
            (Api::Node, Ok(d), Ok(s)) => {
                if has(&s.common.data_dir, ADMIN_TOKEN_FILE) && !has(&d.common.data_dir, TOKEN_FILE) {
                    Ok(as_server(s))
                } else {
                    Ok(as_daemon(d))
                }
            }
            (Api::Node, Ok(d), Err(_)) => Ok(as_daemon(d)),
            (Api::Node, Err(_), Ok(s)) => Ok(as_server(s)),
            (_, Err(e), Err(_)) => Err(e.context(format!("{shown} is neither a daemon's nor a server's configuration"))),
        }
    }

    /// The URL to reach what binds `listen`: an unspecified address (all interfaces) is
    /// reached on loopback.
    fn url(&self) -> String {
        let reach = match self.listen.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.listen.port())
            }
            IpAddr::V6(v6) if v6.is_unspecified() => {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), self.listen.port())
            }
            _ => self.listen,
        };
        format!("http://{reach}")
    }
}

/// Refuses a plain-HTTP URL to a host other than this one: the bearer token would cross the
/// network in the clear.
fn refuse_remote_http(url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
    let host = parsed.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if parsed.scheme() == "http" && !local {
        bail!(
            "refusing to send the token over plain HTTP to {url}: use https, or an SSH tunnel to a local port (or --allow-remote-http)"
        );
    }
    Ok(())
}

/// Where the API is and which token file it takes (see the module docs for the order).
fn resolve(c: &DaemonConn, api: Api) -> anyhow::Result<(String, PathBuf)> {
    use crate::admin_api::{ADMIN_TOKEN_FILE, DEFAULT_ADMIN_LISTEN};
    let file = match &c.config {
        Some(path) => Some(ProcessConfig::read(path, api)?),
        None => None,
    };
    // The server's admin API: by its file, by `--admin`, or for `eddy wallet`.
    let server = match (&file, api) {
        (Some(f), _) => f.server,
        (None, Api::Admin) => true,
        (None, Api::Node) => match (&c.daemon, &c.admin) {
            // Which node would spend is the point: never a guess.
            (Some(_), Some(_)) => bail!(
                "both --daemon (EDDY_DAEMON_URL) and --admin (EDDY_ADMIN_URL) are set: give only the one whose node `eddy node` is for"
            ),
            (_, admin) => admin.is_some(),
        },
        (None, Api::Daemon) => false,
    };
    let base = if server {
        match (&c.admin, &file, &c.daemon) {
            (Some(url), _, _) => url.clone(),
            (None, Some(f), _) => f.url(),
            (None, None, Some(_)) => bail!(
                "the server's admin API is given by --admin URL (or EDDY_ADMIN_URL, or the server's --config); --daemon (EDDY_DAEMON_URL) names the client daemon"
            ),
            (None, None, None) => format!("http://{DEFAULT_ADMIN_LISTEN}"),
        }
    } else {
        match (&c.daemon, &file) {
            (Some(url), _) => url.clone(),
            (None, Some(f)) => f.url(),
            (None, None) => format!("http://{}", crate::daemon::DEFAULT_LISTEN),
        }
    };
    if !c.allow_remote_http {
        refuse_remote_http(&base)?;
    }
    let (token_name, home_dir) = if server {
        (ADMIN_TOKEN_FILE, ".eddy/server")
    } else {
        (TOKEN_FILE, ".eddy/client")
    };
    let token = match (
        &c.token_file,
        &c.data_dir,
        file.as_ref().and_then(|f| f.data_dir.as_ref()),
    ) {
        (Some(f), _, _) => f.clone(),
        (None, Some(d), _) | (None, None, Some(d)) => d.join(token_name),
        (None, None, None) => {
            let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set; give --token-file"))?;
            PathBuf::from(home).join(home_dir).join(token_name)
        }
    };
    Ok((base.trim_end_matches('/').to_string(), token))
}

pub(crate) struct Conn {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Conn {
    /// A connection to the client daemon (the swap commands).
    pub(crate) fn new(c: &DaemonConn) -> anyhow::Result<Conn> {
        Conn::to(c, Api::Daemon)
    }

    /// A connection to `api`.
    pub(crate) fn to(c: &DaemonConn, api: Api) -> anyhow::Result<Conn> {
        let (base, path) = resolve(c, api)?;
        let token = std::fs::read_to_string(&path)
            .with_context(|| {
                format!(
                    "reading the token {} (is the process running? give its --config, --data-dir or --token-file)",
                    path.display()
                )
            })?
            .trim()
            .to_string();
        Ok(Conn {
            base,
            token,
            http: reqwest::Client::builder().build()?,
        })
    }

    async fn check(resp: reqwest::Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = v.get("error").and_then(Value::as_str).unwrap_or("no error message");
            bail!("{msg} ({status})");
        }
        Ok(v)
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("reaching the daemon at {}", self.base))?;
        Self::check(resp).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("reaching the daemon at {}", self.base))?;
        Self::check(resp).await
    }
}

pub(crate) fn rt() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

pub(crate) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub(crate) fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// `eddy terms`.
pub fn terms(c: &DaemonConn) -> anyhow::Result<()> {
    let conn = Conn::new(c)?;
    let v = rt()?.block_on(conn.get("/v1/terms"))?;
    if c.json {
        print_json(&v);
        return Ok(());
    }
    println!("network        {}", v["network"].as_str().unwrap_or("?"));
    let range = format!("{} – {} sat", u(&v, "min_amount_sat"), u(&v, "max_amount_sat"));
    let fee = format!("{} sat + {} ppm", u(&v, "base_fee_sat"), u(&v, "fee_ppm"));
    println!(
        "loop-out       {range}, fee {fee} ({} sat of it prepaid)",
        u(&v, "prepay_sat")
    );
    println!("               HTLC expiry {} blocks", u(&v, "expiry_delta"));
    println!("loop-in        {range}, fee {fee} (taken from what you receive; no prepay)");
    println!(
        "               HTLC expiry {} blocks (your refund path opens then)",
        eddy_core::constants::DEFAULT_LOOP_IN_EXPIRY_DELTA
    );
    Ok(())
}

/// `eddy quote out|in AMOUNT`.
pub fn quote(c: &DaemonConn, q: &QuoteKind) -> anyhow::Result<()> {
    let amount = match q {
        QuoteKind::Out { amount } => amount,
        QuoteKind::In { amount } => return quote_in(c, *amount),
    };
    let conn = Conn::new(c)?;
    let v = rt()?.block_on(conn.get(&format!("/v1/quote/out?amount={amount}")))?;
    if c.json {
        print_json(&v);
        return Ok(());
    }
    println!("loop-out of {} sat", u(&v, "amount_sat"));
    println!(
        "  swap fee       {:>9} sat ({} of it prepaid)",
        u(&v, "swap_fee_sat"),
        u(&v, "prepay_sat")
    );
    println!(
        "  claim fee      {:>9} sat estimated ({} vB at {} sat/vB; {} sat by the script path)",
        u(&v, "claim_fee_sat"),
        u(&v, "claim_vbytes"),
        v["fee_rate_sat_per_vb"].as_f64().unwrap_or(0.0),
        u(&v, "claim_fee_script_path_sat")
    );
    println!(
        "  you pay        {:>9} sat over Lightning, receive {} sat on-chain",
        u(&v, "swap_invoice_sat") + u(&v, "prepay_sat"),
        u(&v, "amount_sat").saturating_sub(u(&v, "claim_fee_sat"))
    );
    println!("  HTLC expiry    {:>9} blocks", u(&v, "expiry_delta"));
    Ok(())
}

/// `eddy out AMOUNT …`.
pub fn out(c: &DaemonConn, a: &OutArgs) -> anyhow::Result<()> {
    let conn = Conn::new(c)?;
    let mut body = serde_json::to_value(a.options)?;
    if let Value::Object(m) = &mut body {
        m.retain(|_, v| !v.is_null());
        m.insert("amount_sat".into(), a.amount.into());
        if let Some(addr) = &a.addr {
            m.insert("addr".into(), addr.clone().into());
        }
    }
    let v = rt()?.block_on(conn.post("/v1/loop-out", &body))?;
    if c.json {
        print_json(&v);
        return Ok(());
    }
    let s: SwapView = serde_json::from_value(v)?;
    println!("swap {} started: {}", s.id, s.state);
    println!(
        "  paying {} sat + {} sat prepay for a {} sat HTLC at {} (expiry height {})",
        s.swap_invoice_sat, s.prepay_sat, s.amount_sat, s.htlc_address, s.expiry
    );
    println!("  claim to {}", s.destination);
    println!("  follow it with: eddy monitor");
    Ok(())
}

/// `eddy list`.
pub fn list(c: &DaemonConn) -> anyhow::Result<()> {
    let conn = Conn::new(c)?;
    let v = rt()?.block_on(conn.get("/v1/swaps"))?;
    if c.json {
        print_json(&v);
        return Ok(());
    }
    let swaps: Vec<SwapView> = serde_json::from_value(v)?;
    if swaps.is_empty() {
        println!("no swaps");
    }
    for s in swaps {
        println!("{}  {:>9} sat  {}", s.id, s.amount_sat, line_state(&s));
    }
    Ok(())
}

fn line_state(s: &SwapView) -> String {
    let state = match (&s.failure, &s.claim_txid) {
        (Some(f), _) => format!("{} ({f})", s.state),
        (None, Some(t)) => format!("{} (claim {t}, {} sat fee)", s.state, s.claim_fee_sat.unwrap_or(0)),
        (None, None) => s.state.clone(),
    };
    match progress_text(s) {
        Some(p) => format!("{state} · {p}"),
        None => state,
    }
}

/// A running swap's place on the chain, for people: confirmations of its HTLC and of its claim
/// or refund, and the blocks left before the HTLC's timeout path opens.
pub(crate) fn progress_text(s: &SwapView) -> Option<String> {
    let p = s.progress.as_ref()?;
    let conf = |n: u32| match n {
        0 => "in the mempool".to_string(),
        1 => "1 confirmation".to_string(),
        n => format!("{n} confirmations"),
    };
    let mut parts = vec![];
    if let Some(n) = p.htlc_confirmations {
        parts.push(format!("HTLC {}", conf(n)));
    }
    if let Some(n) = p.spend_confirmations {
        let what = if s.kind == "loop_in" { "refund" } else { "claim" };
        parts.push(format!("{what} {}", conf(n)));
    }
    parts.push(match p.blocks_to_expiry {
        1 => format!("expiry in 1 block (height {})", s.expiry),
        n if n > 1 => format!("expiry in {n} blocks (height {})", s.expiry),
        0 => format!(
            "at its expiry height {}: the timeout path opens with the next block",
            s.expiry
        ),
        n => format!("{} blocks past its expiry height {}", -n, s.expiry),
    });
    Some(parts.join(" · "))
}

/// The time of day, UTC, as HH:MM:SS (the monitor's lines).
fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `eddy swapinfo ID`.
pub fn swapinfo(c: &DaemonConn, id: &str) -> anyhow::Result<()> {
    let conn = Conn::new(c)?;
    let v = rt()?.block_on(conn.get(&format!("/v1/swaps/{id}")))?;
    if c.json {
        print_json(&v);
        return Ok(());
    }
    let events = v.get("events").cloned().unwrap_or(Value::Null);
    let s: SwapView = serde_json::from_value(v)?;
    println!("swap {}", s.id);
    println!("  state          {}", line_state(&s));
    println!("  amount         {} sat", s.amount_sat);
    println!(
        "  paid           {} sat + {} sat prepay",
        s.swap_invoice_sat, s.prepay_sat
    );
    println!("  HTLC           {} (expiry height {})", s.htlc_address, s.expiry);
    if let Some(o) = &s.htlc_outpoint {
        println!("  HTLC output    {o}");
    }
    println!("  destination    {}", s.destination);
    for e in events.as_array().into_iter().flatten() {
        println!(
            "  #{:<3} {}",
            e["seq"].as_i64().unwrap_or(0),
            serde_json::to_string(&e["event"]).unwrap_or_default()
        );
    }
    Ok(())
}

/// `eddy monitor`: prints each swap change as it happens, until interrupted.
pub fn monitor(c: &DaemonConn) -> anyhow::Result<()> {
    let conn = Conn::new(c)?;
    rt()?.block_on(async {
        let mut resp = conn
            .http
            .get(format!("{}/v1/monitor", conn.base))
            .bearer_auth(&conn.token)
            .send()
            .await
            .with_context(|| format!("reaching the daemon at {}", conn.base))?;
        if !resp.status().is_success() {
            return Conn::check(resp).await.map(|_| ());
        }
        if !c.json {
            println!(
                "following every swap of the daemon at {} (Ctrl-C to stop; times UTC): the running ones again at each block; waiting for changes…",
                conn.base
            );
        }
        let mut buf = String::new();
        // The last line shown of each swap: a change the summary does not show (a re-broadcast
        // of the same claim) prints nothing new.
        let mut shown: std::collections::HashMap<String, String> = Default::default();
        while let Some(chunk) = resp.chunk().await? {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                if c.json {
                    println!("{data}");
                } else if let Ok(s) = serde_json::from_str::<SwapView>(&data) {
                    let line = format!("{}  {:>9} sat  {}", s.id, s.amount_sat, line_state(&s));
                    if shown.get(&s.id) != Some(&line) {
                        println!("{}  {line}", clock());
                        shown.insert(s.id, line);
                    }
                }
                use std::io::Write;
                let _ = std::io::stdout().flush();
            }
        }
        anyhow::Ok(())
    })
}

fn quote_in(c: &DaemonConn, amount: u64) -> anyhow::Result<()> {
    let conn = Conn::new(c)?;
    let v = rt()?.block_on(conn.get(&format!("/v1/quote/in?amount={amount}")))?;
    if c.json {
        print_json(&v);
        return Ok(());
    }
    println!("loop-in of {} sat", u(&v, "amount_sat"));
    println!("  swap fee       {:>9} sat", u(&v, "swap_fee_sat"));
    println!(
        "  funding fee    {:>9} sat estimated ({} vB at {} sat/vB, one wallet input)",
        u(&v, "funding_fee_estimate_sat"),
        u(&v, "funding_vbytes"),
        v["fee_rate_sat_per_vb"].as_f64().unwrap_or(0.0)
    );
    println!("  you receive    {:>9} sat in your channels", u(&v, "invoice_sat"));
    Ok(())
}

/// `eddy in AMOUNT …`.
pub fn loop_in(c: &DaemonConn, a: &InArgs) -> anyhow::Result<()> {
    let conn = Conn::new(c)?;
    let mut body = serde_json::json!({"amount_sat": a.amount, "external": a.external});
    if let Some(f) = a.max_swap_fee {
        body["max_swap_fee_sat"] = f.into();
    }
    if let Some(t) = a.conf_target {
        body["conf_target"] = t.into();
    }
    if let Some(f) = a.max_miner_fee {
        body["max_miner_fee_sat"] = f.into();
    }
    if let Some(k) = a.last_hop {
        body["last_hop"] = k.to_string().into();
    }
    let v = rt()?.block_on(conn.post("/v1/loop-in", &body))?;
    if c.json {
        print_json(&v);
        return Ok(());
    }
    let bip21 = v["bip21"].as_str().unwrap_or("").to_string();
    let s: SwapView = serde_json::from_value(v)?;
    println!("swap {} started: {}", s.id, s.state);
    println!(
        "  HTLC {} sat at {} (expiry height {}); you receive {} sat",
        s.amount_sat, s.htlc_address, s.expiry, s.swap_invoice_sat
    );
    if a.external {
        println!("  pay exactly {} sat to {}", s.amount_sat, s.htlc_address);
        println!("  {bip21}");
        if let Ok(code) = qrcode::QrCode::new(bip21.to_uppercase().as_bytes()) {
            println!(
                "{}",
                code.render::<qrcode::render::unicode::Dense1x2>()
                    .quiet_zone(true)
                    .build()
            );
        }
    }
    println!("  follow it with: eddy monitor");
    Ok(())
}

/// `eddy abandon ID`: gives up a loop-in (funded ones are refunded).
pub fn abandon(c: &DaemonConn, id: &str) -> anyhow::Result<()> {
    let conn = Conn::new(c)?;
    let v = rt()?.block_on(conn.post(&format!("/v1/swaps/{id}/abandon"), &serde_json::json!({})))?;
    if c.json {
        print_json(&v);
        return Ok(());
    }
    println!("swap {id}: {}", v["state"].as_str().unwrap_or("?"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(config: Option<&Path>) -> DaemonConn {
        DaemonConn {
            config: config.map(Path::to_path_buf),
            daemon: None,
            admin: None,
            allow_remote_http: false,
            token_file: None,
            data_dir: None,
            json: false,
        }
    }

    #[test]
    fn the_cli_finds_each_process_through_its_own_config_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let client = d.join("client.toml");
        std::fs::write(
            &client,
            "network = \"regtest\"\ndata_dir = \"/srv/client\"\nlisten = \"0.0.0.0:9281\"\nserver_url = \"http://s\"\n",
        )
        .expect("write");
        let server = d.join("server.toml");
        std::fs::write(
            &server,
            "data_dir = \"/srv/server\"\nlisten = \"127.0.0.1:8280\"\nadmin_listen = \"[::]:9283\"\nbase_fee_sat = 1\n",
        )
        .expect("write");
        // The daemon's file: its listen address (all interfaces reached on loopback), its token.
        let want_client = (
            "http://127.0.0.1:9281".to_string(),
            PathBuf::from("/srv/client/api.token"),
        );
        assert_eq!(resolve(&conn(Some(&client)), Api::Daemon).expect("daemon"), want_client);
        assert_eq!(resolve(&conn(Some(&client)), Api::Node).expect("node"), want_client);
        // The server's file: the admin API, never the public `listen`, and the admin token.
        let want_server = (
            "http://[::1]:9283".to_string(),
            PathBuf::from("/srv/server/admin.token"),
        );
        assert_eq!(resolve(&conn(Some(&server)), Api::Admin).expect("admin"), want_server);
        assert_eq!(resolve(&conn(Some(&server)), Api::Node).expect("node"), want_server);
        // The wrong process's file is refused, saying which it is.
        let e = resolve(&conn(Some(&server)), Api::Daemon).expect_err("server file for a swap");
        assert!(e.to_string().contains("is the server's configuration"), "{e}");
        let e = resolve(&conn(Some(&client)), Api::Admin).expect_err("client file for the wallet");
        assert!(e.to_string().contains("is a client daemon's configuration"), "{e}");
        // Flags win over the file.
        let mut c = conn(Some(&client));
        c.daemon = Some("http://127.0.0.1:1/".into());
        c.data_dir = Some(PathBuf::from("/elsewhere"));
        assert_eq!(
            resolve(&c, Api::Daemon).expect("flags"),
            ("http://127.0.0.1:1".to_string(), PathBuf::from("/elsewhere/api.token"))
        );
        c.token_file = Some(PathBuf::from("/t"));
        assert_eq!(resolve(&c, Api::Daemon).expect("flags").1, PathBuf::from("/t"));
        // A file both could run with (only shared keys) is the daemon's, unless its data dir
        // holds the server's admin token and not the daemon's.
        let shared = d.join("shared.toml");
        let data = d.join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        std::fs::write(
            &shared,
            format!("data_dir = \"{}\"\nlisten = \"127.0.0.1:7000\"\n", data.display()),
        )
        .expect("write");
        assert_eq!(
            resolve(&conn(Some(&shared)), Api::Node).expect("node"),
            ("http://127.0.0.1:7000".to_string(), data.join("api.token"))
        );
        std::fs::write(data.join("admin.token"), "x").expect("write");
        assert_eq!(
            resolve(&conn(Some(&shared)), Api::Node).expect("node"),
            ("http://127.0.0.1:8283".to_string(), data.join("admin.token"))
        );
        // A typo in the file is an error, as for the processes themselves.
        let typo = d.join("typo.toml");
        std::fs::write(&typo, "lisen = \"127.0.0.1:1\"\n").expect("write");
        let e = resolve(&conn(Some(&typo)), Api::Node).expect_err("typo");
        assert!(format!("{e:#}").contains("unknown setting \"lisen\""), "{e:#}");
        // A URL meant for the daemon never gets the server's admin token: `eddy wallet` with
        // only --daemon (or EDDY_DAEMON_URL) is refused; --admin names the admin API.
        let mut c = conn(None);
        c.daemon = Some("http://127.0.0.1:8281".into());
        let e = resolve(&c, Api::Admin).expect_err("daemon URL for the admin token");
        assert!(e.to_string().contains("--admin URL"), "{e}");
        c.admin = Some("http://127.0.0.1:9999".into());
        assert_eq!(resolve(&c, Api::Admin).expect("admin").0, "http://127.0.0.1:9999");
        assert_eq!(resolve(&c, Api::Daemon).expect("daemon").0, "http://127.0.0.1:8281");
        // `eddy node` with both: which node spends is never guessed.
        let e = resolve(&c, Api::Node).expect_err("both");
        assert!(e.to_string().contains("give only the one"), "{e}");
        c.daemon = None;
        assert_eq!(
            resolve(&c, Api::Node).expect("server's node").0,
            "http://127.0.0.1:9999"
        );
        assert!(resolve(&c, Api::Node).expect("node").1.ends_with("admin.token"));
        // No token over plain HTTP to another host, unless asked.
        let mut c = conn(None);
        c.daemon = Some("http://203.0.113.7:8281".into());
        let e = resolve(&c, Api::Daemon).expect_err("remote http");
        assert!(e.to_string().contains("plain HTTP"), "{e}");
        c.daemon = Some("https://203.0.113.7:8281".into());
        assert!(resolve(&c, Api::Daemon).is_ok());
        c.daemon = Some("http://[::1]:8281".into());
        assert!(resolve(&c, Api::Daemon).is_ok());
        c.daemon = Some("http://203.0.113.7:8281".into());
        c.allow_remote_http = true;
        assert!(resolve(&c, Api::Daemon).is_ok());
        // A daemon-looking file whose data dir is a server's is refused for swap commands.
        let e = resolve(&conn(Some(&shared)), Api::Daemon).expect_err("server's data dir");
        assert!(e.to_string().contains("names a server's data dir"), "{e}");
        // No file: the defaults of each process.
        let (url, _) = resolve(&conn(None), Api::Admin).expect("admin default");
        assert_eq!(url, "http://127.0.0.1:8283");
        let (url, _) = resolve(&conn(None), Api::Node).expect("node default");
        assert_eq!(url, "http://127.0.0.1:8281");
    }

    #[test]
    fn progress_reads_as_confirmations_and_blocks_to_expiry() {
        let mut v: SwapView = serde_json::from_value(serde_json::json!({
            "id": "00", "kind": "loop_out", "state": "claiming", "terminal": false, "failure": null,
            "amount_sat": 1, "swap_invoice_sat": 1, "prepay_sat": 0, "expiry": 200,
            "htlc_address": "a", "htlc_outpoint": null, "claim_txid": null, "claim_fee_sat": null,
            "destination": "d", "refund_txid": null, "version": 1, "created_at": 0, "updated_at": 0,
            "progress": {"tip_height": 150, "blocks_to_expiry": 50, "htlc_confirmations": 2, "spend_confirmations": 0}
        }))
        .expect("view");
        assert_eq!(
            progress_text(&v).as_deref(),
            Some("HTLC 2 confirmations · claim in the mempool · expiry in 50 blocks (height 200)")
        );
        v.kind = "loop_in".into();
        v.progress = Some(crate::daemon::Progress {
            tip_height: 203,
            blocks_to_expiry: -3,
            htlc_confirmations: Some(1),
            spend_confirmations: None,
        });
        assert_eq!(
            progress_text(&v).as_deref(),
            Some("HTLC 1 confirmation · 3 blocks past its expiry height 200")
        );
        v.terminal = true;
        v.progress = None;
        assert_eq!(progress_text(&v), None);
    }
}
