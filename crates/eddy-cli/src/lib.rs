//! The `eddy` command. The binary is a thin wrapper around [`run`]; each subcommand lives in its
//! own module: `htlc` inspects any swap address independently of any server, `devnet` runs the
//! embedded regtest standalone.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod demo;
pub mod devnet;
pub mod htlc;

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
    /// Run the end-to-end demo on the embedded devnet.
    Demo,
}

/// Parses the command line and runs the subcommand.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Htlc(args) => htlc::run(&args).map(|out| println!("{out}")),
        Command::Devnet(args) => devnet::run(&args),
        Command::Demo => demo::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
