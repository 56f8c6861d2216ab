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

/// Where a running devnet is, for `eddy devnet-fund` and `eddy devnet-mine`.
#[derive(Debug, Args)]
pub struct DevnetConn {
    /// The devnet's data directory (its `.cookie` is read).
    #[arg(long, env = "EDDY_DEVNET_DATADIR")]
    pub datadir: PathBuf,
    /// Its RPC port on 127.0.0.1.
    #[arg(long, default_value_t = 18443)]
    pub rpc_port: u16,
}

impl DevnetConn {
    fn attach(&self) -> anyhow::Result<eddy_lab::LabChain> {
        let cookie = self.datadir.join(".cookie");
        let text = std::fs::read_to_string(&cookie)
            .with_context(|| format!("reading {} (is `eddy devnet` running there?)", cookie.display()))?;
        let (user, password) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("{} is not user:password", cookie.display()))?;
        eddy_lab::LabChain::attach(&format!("http://127.0.0.1:{}", self.rpc_port), user, password)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// `eddy devnet-fund ADDRESS AMOUNT`: sends exactly AMOUNT sat from the devnet's faucet (the
/// anyone-can-spend coins its blocks are mined to) to ADDRESS, unconfirmed; prints the txid.
pub fn fund(conn: &DevnetConn, address: &str, amount: u64) -> anyhow::Result<()> {
    let chain = conn.attach()?;
    let address = address
        .parse::<bitcoin::Address<_>>()
        .map_err(|_| anyhow::anyhow!("{address:?} is not a bitcoin address"))?
        .require_network(bitcoin::Network::Regtest)
        .map_err(|_| anyhow::anyhow!("{address} is not a regtest address"))?;
    let coins = chain.discover_faucet().map_err(|e| anyhow::anyhow!("{e}"))?;
    let txid = chain.fund(&address, bitcoin::Amount::from_sat(amount)).map_err(|e| {
        let height = chain.tip().map(|t| t.0).unwrap_or(0);
        anyhow::anyhow!("{e}: {coins} faucet coins unspent at height {height} (a coinbase matures after 100 blocks: `eddy devnet-mine 101` on a new devnet)")
    })?;
    println!("{txid}");
    Ok(())
}

/// `eddy devnet-mine N`: mines N blocks (to the faucet); prints the new height.
pub fn mine(conn: &DevnetConn, blocks: u32) -> anyhow::Result<()> {
    let chain = conn.attach()?;
    chain.mine(blocks).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (height, _) = chain.tip().map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{height}");
    Ok(())
}
