//! `eddy devnet`: runs Eddy's embedded regtest standalone — the kernel-validated chain in
//! `--datadir`, its bitcoind-compatible RPC on 127.0.0.1 with a bitcoind-style `.cookie` file,
//! and optionally a timer miner — until interrupted. Any bitcoind RPC client (curl, LND,
//! ldk-node, Eddy's daemons) can use it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use eddy_devnet::{Auth, Devnet, RpcConfig, RpcServer};

/// Arguments of `eddy devnet`.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Data directory (chain state, blocks, `.cookie`); created when missing, reused on restart.
    #[arg(long, env = "EDDY_DEVNET_DATADIR")]
    pub datadir: PathBuf,
    /// RPC port on 127.0.0.1 (bitcoind's regtest default; 0 picks a free one).
    #[arg(long, default_value_t = 18443)]
    pub rpc_port: u16,
    /// Mine a block every this many seconds (none by default: mine with `generatetoaddress`).
    #[arg(long)]
    pub block_interval: Option<f64>,
    /// Mine this many blocks at start when the chain is empty (101 makes the first coinbase
    /// spendable).
    #[arg(long, default_value_t = 0)]
    pub initial_blocks: u32,
}

/// Runs the devnet until SIGINT/SIGTERM.
pub fn run(args: &DevnetArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: &DevnetArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.datadir).with_context(|| format!("creating {}", args.datadir.display()))?;
    let devnet = Devnet::open(&args.datadir.join("regtest")).context("opening the chain")?;
    if devnet.tip().height == 0 && args.initial_blocks > 0 {
        devnet.mine(args.initial_blocks, None)?;
    }
    let cookie = args.datadir.join(".cookie");
    let server = RpcServer::start(
        devnet.clone(),
        RpcConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, args.rpc_port)),
            auth: Auth::Cookie(cookie.clone()),
        },
    )
    .await
    .with_context(|| format!("binding 127.0.0.1:{}", args.rpc_port))?;
    let miner = match args.block_interval {
        Some(s) if s > 0.0 => Some(devnet.start_miner(Duration::from_secs_f64(s))),
        Some(_) => anyhow::bail!("--block-interval must be positive"),
        None => None,
    };
    let tip = devnet.tip();
    println!("eddy devnet: regtest at height {} ({})", tip.height, tip.hash);
    println!("rpc: {}", server.addr());
    println!("cookie: {}", cookie.display());
    println!(
        "try: curl --user \"$(cat {})\" --data-binary '{{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"getblockchaininfo\",\"params\":[]}}' http://{}/",
        cookie.display(),
        server.addr()
    );
    shutdown_signal().await;
    drop(miner);
    server.stop().await;
    println!("eddy devnet: stopped at height {}", devnet.tip().height);
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
