//! The CLI commands that talk to a running `eddy daemon` over its local API: `terms`,
//! `quote out`, `out`, `list`, `swapinfo`, `monitor`. Each prints a readable summary, or with
//! `--json` the daemon's JSON answer unchanged (for scripts). The token comes from the daemon's
//! data dir (`api.token`, readable only by its owner).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::daemon::{OptionsBody, SwapView, TOKEN_FILE};

/// Where the daemon is and how to authenticate.
#[derive(Clone, Debug, Args)]
pub struct DaemonConn {
    /// The daemon's local API.
    #[arg(
        long,
        env = "EDDY_DAEMON_URL",
        default_value = "http://127.0.0.1:8281",
        global = true
    )]
    pub daemon: String,
    /// The daemon's token file (default: `api.token` in `--data-dir`, or `~/.eddy/client`).
    #[arg(long, env = "EDDY_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// The daemon's data dir (to find its token).
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

pub(crate) struct Conn {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Conn {
    pub(crate) fn new(c: &DaemonConn) -> anyhow::Result<Conn> {
        let path = match (&c.token_file, &c.data_dir) {
            (Some(f), _) => f.clone(),
            (None, Some(d)) => d.join(TOKEN_FILE),
            (None, None) => {
                let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set; give --token-file"))?;
                PathBuf::from(home).join(".eddy/client").join(TOKEN_FILE)
            }
        };
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the daemon's token {} (is the daemon running?)", path.display()))?
            .trim()
            .to_string();
        Ok(Conn {
            base: c.daemon.trim_end_matches('/').to_string(),
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
    match (&s.failure, &s.claim_txid) {
        (Some(f), _) => format!("{} ({f})", s.state),
        (None, Some(t)) => format!("{} (claim {t}, {} sat fee)", s.state, s.claim_fee_sat.unwrap_or(0)),
        (None, None) => s.state.clone(),
    }
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
                "following every swap of the daemon at {} (Ctrl-C to stop); waiting for changes…",
                conn.base
            );
        }
        let mut buf = String::new();
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
                    println!("{}  {:>9} sat  {}", s.id, s.amount_sat, line_state(&s));
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
