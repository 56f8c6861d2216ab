//! The `eddy` command. The binary is a thin wrapper around [`run`]; each subcommand lives in its
//! own module: `server` and `daemon` are the two long-running processes (swap server, swap
//! client), `client_cmds` the CLI commands that drive a running daemon, `htlc` inspects any swap
//! address independently of any server, `devnet` runs the embedded regtest standalone, `demo`
//! runs a whole loop-out on a bare machine. `node_api` is the node's operator API both
//! processes serve (the daemon on its local API, the server on `admin_api`'s own listener with
//! the swap wallet's routes), `node_cmds` the `eddy node` and `eddy wallet` commands on it.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod admin_api;
pub mod client_cmds;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod devnet;
pub mod htlc;
pub mod many;
pub mod node_api;
pub mod node_cmds;
pub mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Eddy: non-custodial Lightning ⇄ chain swaps.
#[derive(Debug, Parser)]
#[command(name = "eddy", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an HTLC from its parameters and print its script(s), address, scriptPubKey and
    /// the witness size of each spend path.
    Htlc(htlc::HtlcArgs),
    /// Run Eddy's embedded regtest (libbitcoinkernel-validated) with a bitcoind-compatible RPC.
    Devnet(devnet::DevnetArgs),
    /// Send AMOUNT sat from a running devnet's faucet to ADDRESS (unconfirmed; then mine).
    DevnetFund {
        /// The devnet.
        #[command(flatten)]
        conn: devnet::DevnetConn,
        /// A regtest address.
        address: String,
        /// Sat.
        amount: u64,
    },
    /// Mine N blocks on a running devnet.
    DevnetMine {
        /// The devnet.
        #[command(flatten)]
        conn: devnet::DevnetConn,
        /// How many.
        blocks: u32,
    },
    /// Run the end-to-end demo on the embedded devnet.
    Demo,
    /// Run the swap server (loop service): engine + HTTP API.
    Server(server::ServerArgs),
    /// Run the swap client daemon: engine + local API for the commands below.
    Daemon(daemon::DaemonArgs),
    /// The swap server's terms (through the daemon).
    Terms {
        /// Daemon connection.
        #[command(flatten)]
        conn: client_cmds::DaemonConn,
    },
    /// What a swap would cost.
    Quote {
        /// Daemon connection.
        #[command(flatten)]
        conn: client_cmds::DaemonConn,
        /// Which swap.
        #[command(subcommand)]
        kind: client_cmds::QuoteKind,
    },
    /// Start a loop-out: move AMOUNT sat from your channels on-chain.
    Out {
        /// Daemon connection.
        #[command(flatten)]
        conn: client_cmds::DaemonConn,
        /// What to swap.
        #[command(flatten)]
        args: client_cmds::OutArgs,
    },
    /// Start a loop-in: move AMOUNT sat from the chain into your channels.
    In {
        /// Daemon connection.
        #[command(flatten)]
        conn: client_cmds::DaemonConn,
        /// What to swap.
        #[command(flatten)]
        args: client_cmds::InArgs,
    },
    /// Give up a loop-in (a funded one is refunded).
    Abandon {
        /// Daemon connection.
        #[command(flatten)]
        conn: client_cmds::DaemonConn,
        /// Swap id.
        id: String,
    },
    /// List swaps.
    List {
        /// Daemon connection.
        #[command(flatten)]
        conn: client_cmds::DaemonConn,
    },
    /// One swap in detail, with its events.
    Swapinfo {
        /// Daemon connection.
        #[command(flatten)]
        conn: client_cmds::DaemonConn,
        /// Swap id.
        id: String,
    },
    /// Follow every swap's progress live.
    Monitor {
        /// Daemon connection.
        #[command(flatten)]
        conn: client_cmds::DaemonConn,
    },
    /// Operate the node: info, address, connect, open, close, channels, send, invoice, pay
    /// (through the daemon; the server's node with `--config <server's file>`, or `--admin
    /// <admin URL> --token-file <server data dir>/admin.token`).
    Node {
        /// Daemon (or server admin API) connection.
        #[command(flatten)]
        conn: client_cmds::DaemonConn,
        /// What to do.
        #[command(subcommand)]
        cmd: node_cmds::NodeCmd,
    },
    /// The swap server's wallet: balance, address, withdraw, rescan (through its admin API:
    /// `--config <server's file>`, or `--admin http://127.0.0.1:8283 --token-file <server data
    /// dir>/admin.token`).
    Wallet {
        /// Admin API connection.
        #[command(flatten)]
        conn: client_cmds::DaemonConn,
        /// What to do.
        #[command(subcommand)]
        cmd: node_cmds::WalletCmd,
    },
}

/// Parses the command line and runs the subcommand.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Htlc(args) => htlc::run(&args).map(|out| println!("{out}")),
        Command::Devnet(args) => devnet::run(&args),
        Command::DevnetFund { conn, address, amount } => devnet::fund(&conn, &address, amount),
        Command::DevnetMine { conn, blocks } => devnet::mine(&conn, blocks),
        Command::Demo => demo::run(),
        Command::Server(args) => server::run(&args),
        Command::Daemon(args) => daemon::run(&args),
        Command::Terms { conn } => client_cmds::terms(&conn),
        Command::Quote { conn, kind } => client_cmds::quote(&conn, &kind),
        Command::Out { conn, args } => client_cmds::out(&conn, &args),
        Command::In { conn, args } => client_cmds::loop_in(&conn, &args),
        Command::Abandon { conn, id } => client_cmds::abandon(&conn, &id),
        Command::List { conn } => client_cmds::list(&conn),
        Command::Swapinfo { conn, id } => client_cmds::swapinfo(&conn, &id),
        Command::Monitor { conn } => client_cmds::monitor(&conn),
        Command::Node { conn, cmd } => node_cmds::run(&conn, &cmd),
        Command::Wallet { conn, cmd } => node_cmds::run_wallet(&conn, &cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
