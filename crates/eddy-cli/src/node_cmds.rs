//! `eddy node …`: the node's operator commands (issue 14) — identity and balances, a deposit
//! address, peers, channels, on-chain sends, and an invoice or a payment for a quick check.
//! They call the node API ([`crate::node_api`]) of the client daemon, or of the server's admin
//! listener when `--config` is the server's file (or `--admin <admin URL> --token-file <server
//! data dir>/admin.token`); [`crate::client_cmds`] finds either. Each prints a short summary,
//! or the JSON with `--json`.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::client_cmds::{print_json, rt, u, Api, Conn, DaemonConn};

/// `eddy node …`.
#[derive(Clone, Debug, Subcommand)]
pub enum NodeCmd {
    /// Node id, network, height, listening addresses, balances on-chain and in channels.
    Info,
    /// A fresh address of the node's on-chain wallet (fund the node here).
    Address,
    /// Connect to a peer: PUBKEY@HOST:PORT.
    Connect {
        /// PUBKEY@HOST:PORT.
        peer: String,
    },
    /// Open a channel of AMOUNT sat to PEER (PUBKEY@HOST:PORT, or PUBKEY when connected).
    Open {
        /// PUBKEY@HOST:PORT, or PUBKEY when already connected.
        peer: String,
        /// Capacity, sat.
        amount: u64,
        /// Give the peer this many sat at opening.
        #[arg(long, default_value_t = 0)]
        push: u64,
    },
    /// Close a channel (its id from `eddy node open` or `eddy node channels`).
    Close {
        /// The channel's id (32 hex) or channel id (64 hex).
        channel: String,
        /// Broadcast the latest commitment instead of negotiating (a peer that is gone).
        #[arg(long)]
        force: bool,
    },
    /// The node's channels.
    Channels,
    /// Send on-chain from the node's wallet: AMOUNT sat, or `all`.
    Send {
        /// Where to.
        address: String,
        /// Sat, or `all`.
        amount: String,
        /// Fee rate, sat/vB (default: the node's estimate).
        #[arg(long)]
        fee_rate: Option<u64>,
    },
    /// An invoice of AMOUNT sat (valid one hour).
    Invoice {
        /// Sat.
        amount: u64,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Pay a BOLT11 invoice (waits up to 8 s for the outcome).
    Pay {
        /// BOLT11.
        invoice: String,
        /// Most routing fee, sat.
        #[arg(long)]
        max_fee: Option<u64>,
    },
}

/// The body of `node send` and `wallet withdraw`: ADDRESS, AMOUNT sat or `all`, a fee rate.
fn send_body(address: &str, amount: &str, fee_rate: Option<u64>) -> anyhow::Result<Value> {
    let mut body = json!({"address": address});
    if amount == "all" {
        body["all"] = true.into();
    } else {
        let sat: u64 = amount
            .parse()
            .map_err(|_| anyhow::anyhow!("amount {amount:?} is neither a number of sat nor `all`"))?;
        body["amount_sat"] = sat.into();
    }
    if let Some(r) = fee_rate {
        body["fee_rate_sat_per_vb"] = r.into();
    }
    Ok(body)
}

/// Runs one `eddy node` command.
pub fn run(c: &DaemonConn, cmd: &NodeCmd) -> anyhow::Result<()> {
    let conn = Conn::to(c, Api::Node)?;
    let rt = rt()?;
    let v = match cmd {
        NodeCmd::Info => rt.block_on(conn.get("/v1/node"))?,
        NodeCmd::Channels => rt.block_on(conn.get("/v1/node/channels"))?,
        NodeCmd::Address => rt.block_on(conn.post("/v1/node/address", &json!({})))?,
        NodeCmd::Connect { peer } => rt.block_on(conn.post("/v1/node/connect", &json!({"peer": peer})))?,
        NodeCmd::Open { peer, amount, push } => rt.block_on(conn.post(
            "/v1/node/open",
            &json!({"peer": peer, "amount_sat": amount, "push_sat": push}),
        ))?,
        NodeCmd::Close { channel, force } => {
            rt.block_on(conn.post("/v1/node/close", &json!({"channel_id": channel, "force": force})))?
        }
        NodeCmd::Send {
            address,
            amount,
            fee_rate,
        } => {
            let body = send_body(address, amount, *fee_rate)?;
            rt.block_on(conn.post("/v1/node/send", &body))?
        }
        NodeCmd::Invoice { amount, description } => {
            let mut body = json!({"amount_sat": amount});
            if let Some(d) = description {
                body["description"] = d.clone().into();
            }
            rt.block_on(conn.post("/v1/node/invoice", &body))?
        }
        NodeCmd::Pay { invoice, max_fee } => {
            let mut body = json!({"invoice": invoice});
            if let Some(f) = max_fee {
                body["max_fee_sat"] = (*f).into();
            }
            rt.block_on(conn.post("/v1/node/pay", &body))?
        }
    };
    if c.json {
        print_json(&v);
        return Ok(());
    }
    match cmd {
        NodeCmd::Info => print_info(&v),
        NodeCmd::Channels => print_channels(&v),
        NodeCmd::Address => println!("{}", v["address"].as_str().unwrap_or("?")),
        NodeCmd::Connect { .. } => println!("connected to {}", v["peer"].as_str().unwrap_or("?")),
        NodeCmd::Open { .. } => {
            println!("channel {} opening", v["id"].as_str().unwrap_or("?"));
            println!("  usable once its funding confirms (6 blocks): eddy node channels");
        }
        NodeCmd::Close { force, .. } => println!(
            "channel {} closing{}",
            v["channel_id"].as_str().unwrap_or("?"),
            if *force {
                " (forced: the funds come back after the to-self delay)"
            } else {
                ""
            }
        ),
        NodeCmd::Send { .. } => {
            let txid = v["txid"].as_str().unwrap_or("?");
            if v["broadcast"] == true {
                println!("sent: {txid}");
            } else {
                println!("signed and queued for broadcast: {txid}");
                println!("  the chain source does not have it yet: look for it before sending again (the node's log says why)");
            }
        }
        NodeCmd::Invoice { .. } => println!("{}", v["invoice"].as_str().unwrap_or("?")),
        NodeCmd::Pay { .. } => match v["status"].as_str() {
            Some("succeeded") => println!(
                "paid {} (routing fee {} msat)",
                v["payment_hash"].as_str().unwrap_or("?"),
                u(&v, "fee_msat")
            ),
            Some("failed") => anyhow::bail!(
                "payment {} failed: {}",
                v["payment_hash"].as_str().unwrap_or("?"),
                v["reason"].as_str().unwrap_or("no reason given")
            ),
            _ => println!(
                "payment {} still in flight after 8 s: see `eddy node info`",
                v["payment_hash"].as_str().unwrap_or("?")
            ),
        },
    }
    Ok(())
}

fn print_info(v: &Value) {
    println!("node       {}", v["node_id"].as_str().unwrap_or("?"));
    println!("network    {}", v["network"].as_str().unwrap_or("?"));
    let following = if v["following_chain"] == true {
        String::new()
    } else {
        match v["blocks_behind"].as_u64() {
            Some(n) => format!("  (NOT following the chain: {n} blocks behind)"),
            None => "  (NOT following the chain)".into(),
        }
    };
    println!("height     {}{following}", u(v, "block_height"));
    let listening: Vec<&str> = v["listening"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !listening.is_empty() {
        println!("listening  {}", listening.join(", "));
    }
    println!(
        "on-chain   {} sat ({} spendable)",
        u(v, "onchain_sat"),
        u(v, "onchain_spendable_sat")
    );
    println!("channels   {} sat", u(v, "lightning_sat"));
    if u(v, "closing_sat") > 0 {
        println!(
            "closing    {} sat (closed channels, until their outputs confirm)",
            u(v, "closing_sat")
        );
    }
    print_channels(&v["channels"]);
}

fn print_channels(v: &Value) {
    let chans = v.as_array().cloned().unwrap_or_default();
    if chans.is_empty() {
        println!("no channels: open one with `eddy node open PUBKEY@HOST:PORT AMOUNT`");
    }
    for c in chans {
        println!(
            "  {}  peer {}  {} sat  local {} / remote {} sat  {}",
            c["id"].as_str().unwrap_or(""),
            c["peer"].as_str().unwrap_or("?"),
            u(&c, "capacity_sat"),
            u(&c, "local_msat") / 1000,
            u(&c, "remote_msat") / 1000,
            if c["usable"] == true {
                "usable"
            } else {
                "not usable yet"
            }
        );
    }
}

/// `eddy wallet …`: the swap server's wallet, through its admin API (`--admin <admin URL>
/// --token-file <server data dir>/admin.token`).
#[derive(Clone, Debug, Subcommand)]
pub enum WalletCmd {
    /// Balance: spendable, unconfirmed, promised to paid swaps, withdrawable.
    Balance,
    /// The deposit address (fund HTLCs from here).
    Address,
    /// Withdraw AMOUNT sat, or `all` (never what paid swaps are promised).
    Withdraw {
        /// Where to.
        address: String,
        /// Sat, or `all`.
        amount: String,
        /// Fee rate, sat/vB (default: the publication estimate).
        #[arg(long)]
        fee_rate: Option<u64>,
    },
    /// Scan the chain again for deposits from HEIGHT (this block included).
    Rescan {
        /// First block.
        from: u32,
    },
}

/// Runs one `eddy wallet` command.
pub fn run_wallet(c: &DaemonConn, cmd: &WalletCmd) -> anyhow::Result<()> {
    let conn = Conn::to(c, Api::Admin)?;
    let rt = rt()?;
    let v = match cmd {
        WalletCmd::Balance | WalletCmd::Address => rt.block_on(conn.get("/v1/wallet"))?,
        WalletCmd::Withdraw {
            address,
            amount,
            fee_rate,
        } => {
            let body = send_body(address, amount, *fee_rate)?;
            rt.block_on(conn.post("/v1/wallet/withdraw", &body))?
        }
        WalletCmd::Rescan { from } => rt.block_on(async {
            // Started in the background: followed here until it ends.
            conn.post("/v1/wallet/rescan", &json!({"from_height": from})).await?;
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let v = conn.get("/v1/wallet/rescan").await?;
                if v["running"] != true {
                    if let Some(e) = v["error"].as_str() {
                        anyhow::bail!("the rescan from block {from} failed: {e}");
                    }
                    return anyhow::Ok(v);
                }
            }
        })?,
    };
    if c.json {
        print_json(&v);
        return Ok(());
    }
    match cmd {
        WalletCmd::Address => println!("{}", v["address"].as_str().unwrap_or("?")),
        WalletCmd::Balance => {
            println!("address       {}", v["address"].as_str().unwrap_or("?"));
            println!("spendable     {} sat", u(&v, "spendable_sat"));
            println!("unconfirmed   {} sat", u(&v, "unconfirmed_sat"));
            println!(
                "promised      {} sat (paid swaps whose HTLC is not out yet)",
                u(&v, "promised_sat")
            );
            println!("withdrawable  {} sat (before the fee)", u(&v, "withdrawable_sat"));
        }
        WalletCmd::Withdraw { .. } => println!(
            "sent {} sat (fee {} sat): {}",
            u(&v, "amount_sat"),
            u(&v, "fee_sat"),
            v["txid"].as_str().unwrap_or("?")
        ),
        WalletCmd::Rescan { from } => println!("rescanned from block {from}"),
    }
    Ok(())
}
