//! `eddy server`: the swap server as a long-running process. Opens the configured backends,
//! runs the swap server ([`eddy_server::SwapServer::run`]) and serves its HTTP API
//! (terms, quote, loop-out, status, events, co-signing, preimage push) until SIGTERM, and its
//! Prometheus metrics on a separate address (`metrics_listen`, loopback by default: they show
//! the swap wallet's balance). Everything it needs to resume after a crash is in its data dir (seed, SQLite swap
//! database, embedded node) or its PostgreSQL database: `kill -9` and start it again.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bitcoin::Amount;
use clap::Args;
use eddy_core::fees::FeePolicy;
use eddy_server::http::{metrics_router, router_with, HttpServer, Limits, Terms};
use eddy_server::{SeedKeys, ServerConfig, SwapServer};
use serde::{Deserialize, Serialize};

/// The publication window on mainnet when none is configured: three minutes gather the
/// loop-outs held meanwhile into one HTLC transaction, a small part of a block's ten minutes
/// (the height rules force publication earlier when a deadline comes near).
pub const DEFAULT_MAINNET_PUBLISH_BATCH_WINDOW_SECS: u64 = 180;

/// The loop-in claim window on mainnet when none is configured: ten minutes (a block's
/// average) gather the loop-ins paid meanwhile into one claim transaction — the server's own
/// money waits, no client does; Boltz gathers its claims for fifteen. A claim near its timeout
/// never waits ([`eddy_core::constants::LOOP_IN_CLAIM_WINDOW_FORCE_BLOCKS`]).
pub const DEFAULT_MAINNET_CLAIM_BATCH_WINDOW_SECS: u64 = 600;

use crate::config::{layered, Common};

/// Default HTTP API address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8280);

/// Default metrics address: loopback only (the metrics show the swap wallet's balance).
pub const DEFAULT_METRICS_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8289);

/// `eddy server` options. Each may also be set as `EDDY_<NAME>` in the environment or as
/// `name = value` in the `--config` TOML file; flags win over the environment over the file.
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct ServerArgs {
    /// TOML configuration file.
    #[arg(long, env = "EDDY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Shared options.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// HTTP API address (default 127.0.0.1:8280).
    #[arg(long, env = "EDDY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Fixed fee per swap, sat (default 1000).
    #[arg(long, env = "EDDY_BASE_FEE_SAT")]
    pub base_fee_sat: Option<u64>,
    /// Proportional fee, ppm (default 5000).
    #[arg(long, env = "EDDY_FEE_PPM")]
    pub fee_ppm: Option<u32>,
    /// Smallest loop-out, sat (default 10000).
    #[arg(long, env = "EDDY_MIN_AMOUNT_SAT")]
    pub min_amount_sat: Option<u64>,
    /// Largest loop-out, sat (default 1000000).
    #[arg(long, env = "EDDY_MAX_AMOUNT_SAT")]
    pub max_amount_sat: Option<u64>,
    /// Prepay, sat (default 1000; never more than the fee).
    #[arg(long, env = "EDDY_PREPAY_SAT")]
    pub prepay_sat: Option<u64>,
    /// `E − tip` given to new HTLCs, blocks (default 80).
    #[arg(long, env = "EDDY_EXPIRY_DELTA")]
    pub expiry_delta: Option<u32>,
    /// Confirmation target for publishing HTLCs (default 6).
    #[arg(long, env = "EDDY_PUBLISH_CONF_TARGET")]
    pub publish_conf_target: Option<u16>,
    /// Seconds a held loop-out waits for others to share one HTLC transaction (default 180 on
    /// mainnet, 0 elsewhere); never past the publication rules.
    #[arg(long, env = "EDDY_PUBLISH_BATCH_WINDOW_SECS")]
    pub publish_batch_window_secs: Option<u64>,
    /// Seconds a paid loop-in's claim waits for others to share one claim transaction (default
    /// 600 on mainnet, 0 elsewhere); never near the HTLC's timeout.
    #[arg(long, env = "EDDY_CLAIM_BATCH_WINDOW_SECS")]
    pub claim_batch_window_secs: Option<u64>,
    /// Most swaps in flight (default 50).
    #[arg(long, env = "EDDY_MAX_ACTIVE_SWAPS")]
    pub max_active_swaps: Option<usize>,
    /// On-chain funds never promised to swaps, sat (default 50000).
    #[arg(long, env = "EDDY_ONCHAIN_RESERVE_SAT")]
    pub onchain_reserve_sat: Option<u64>,
    /// Loop-out requests a client IP may make per minute (default 20).
    #[arg(long, env = "EDDY_RATE_LIMIT_PER_MINUTE")]
    pub rate_limit_per_minute: Option<usize>,
    /// Seed-protocol (`POST /api/loop/out`, no prepay) requests per client IP per minute, and
    /// in all per minute (default 2 and 10: an unpaid seed swap costs the server a hold
    /// invoice and a slot).
    #[arg(long, env = "EDDY_SEED_RATE_LIMIT_PER_MINUTE")]
    pub seed_rate_limit_per_minute: Option<usize>,
    /// The reverse proxy in front of the API: only requests from this address have their
    /// client read from `X-Forwarded-For` — only the entry the proxy wrote (the right-most;
    /// one naming the proxy itself is passed over), never the client's own; when that entry
    /// does not parse, the proxy's address is the client. IPv6 clients count by their /64.
    /// Unset, the header is ignored.
    #[arg(long, env = "EDDY_TRUSTED_PROXY")]
    pub trusted_proxy: Option<std::net::IpAddr>,
    /// HTTP connections the API admits at once, from everyone (default 512; more are closed as
    /// they arrive).
    #[arg(long, env = "EDDY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// HTTP connections the API admits at once from one address (an IPv6 /64 counts as one;
    /// default 32; the trusted proxy is held to the total only).
    #[arg(long, env = "EDDY_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,
    /// Prometheus metrics address (default 127.0.0.1:8289; never the public API's).
    #[arg(long, env = "EDDY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// The operator's admin API (node and swap wallet; its token in `admin.token` in the data
    /// dir): default 127.0.0.1:8283 — keep it on loopback, never the public API's address.
    #[arg(long, env = "EDDY_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Rescan the chain for swap-wallet deposits from this height, this block included (a
    /// deposit made before the server's first start is otherwise not seen).
    #[arg(long, env = "EDDY_WALLET_RESCAN_FROM")]
    pub wallet_rescan_from: Option<u32>,
}

impl ServerArgs {
    /// The fee policy these options describe.
    pub fn fees(&self) -> FeePolicy {
        FeePolicy {
            base_fee: Amount::from_sat(self.base_fee_sat.unwrap_or(1_000)),
            fee_ppm: self.fee_ppm.unwrap_or(5_000),
            min_amount: Amount::from_sat(self.min_amount_sat.unwrap_or(10_000)),
            max_amount: Amount::from_sat(self.max_amount_sat.unwrap_or(1_000_000)),
            prepay: Amount::from_sat(self.prepay_sat.unwrap_or(1_000)),
        }
    }

    /// The engine's settings.
    pub fn engine(&self) -> anyhow::Result<ServerConfig> {
        let fees = self.fees();
        if fees.min_amount > fees.max_amount {
            anyhow::bail!(
                "min_amount_sat {} is above max_amount_sat {}",
                fees.min_amount.to_sat(),
                fees.max_amount.to_sat()
            );
        }
        let expiry_delta = self.expiry_delta.unwrap_or(80);
        let window = eddy_core::constants::MIN_LOOP_OUT_EXPIRY_DELTA..=eddy_core::constants::MAX_LOOP_OUT_EXPIRY_DELTA;
        if !window.contains(&expiry_delta) {
            anyhow::bail!("expiry_delta {expiry_delta} is outside what clients accept ({window:?})");
        }
        Ok(ServerConfig {
            network: self.common.network()?,
            fees,
            expiry_delta,
            publish_conf_target: self.publish_conf_target.unwrap_or(6).max(1),
            max_active_swaps: self.max_active_swaps.unwrap_or(50),
            onchain_reserve: Amount::from_sat(self.onchain_reserve_sat.unwrap_or(50_000)),
            publish_batch_window: std::time::Duration::from_secs(self.publish_batch_window_secs.unwrap_or(
                if self.common.network()? == bitcoin::Network::Bitcoin {
                    DEFAULT_MAINNET_PUBLISH_BATCH_WINDOW_SECS
                } else {
                    0
                },
            )),
            claim_batch_window: std::time::Duration::from_secs(self.claim_batch_window_secs.unwrap_or(
                if self.common.network()? == bitcoin::Network::Bitcoin {
                    DEFAULT_MAINNET_CLAIM_BATCH_WINDOW_SECS
                } else {
                    0
                },
            )),
        })
    }

    /// The terms `GET /v1/terms` publishes.
    pub fn terms(&self) -> anyhow::Result<Terms> {
        let cfg = self.engine()?;
        Ok(Terms {
            network: cfg.network.to_core_arg().to_string(),
            min_amount_sat: cfg.fees.min_amount.to_sat(),
            max_amount_sat: cfg.fees.max_amount.to_sat(),
            base_fee_sat: cfg.fees.base_fee.to_sat(),
            fee_ppm: cfg.fees.fee_ppm,
            prepay_sat: cfg.fees.prepay.to_sat(),
            expiry_delta: cfg.expiry_delta,
        })
    }
}

/// Runs `eddy server` until SIGTERM.
pub fn run(args: &ServerArgs) -> anyhow::Result<()> {
    let args: ServerArgs = layered(args, args.config.as_deref())?;
    args.common.init_logging()?;
    let cfg = args.engine()?;
    let terms = args.terms()?;
    let dir = args.common.data_dir("server")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let b = args.common.open_backends(&dir, "server.sqlite").await?;
        let keys = SeedKeys::load_or_create(&dir, eddy_server::SEED_FILE).context("server seed")?;
        if let Some(h) = args.wallet_rescan_from {
            // The stored height is the block the watcher starts *after*: a deposit in block `h`
            // itself must be seen, so store the one before it.
            b.store
                .set_meta(
                    eddy_server::server_core::META_WALLET_SCAN_FROM,
                    &h.saturating_sub(1).to_string(),
                )
                .await?;
        }
        let engine = Arc::new(SwapServer::new(cfg, b.ln.clone(), b.chain.clone(), b.store.clone(), keys).await?);
        if let Err(e) = engine.tick().await {
            tracing::warn!(error = %e, "first engine pass");
        }
        let balance = engine.wallet_balance().await;
        tracing::info!(
            address = %engine.wallet_address(),
            spendable_sat = balance.spendable.to_sat(),
            unconfirmed_sat = balance.unconfirmed_deposits.to_sat(),
            "swap wallet (deposit here the funds HTLCs are paid from)"
        );
        println!(
            "eddy server: swap wallet {} holds {} sat",
            engine.wallet_address(),
            balance.spendable.to_sat()
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let runner = tokio::spawn(engine.clone().run(stop_rx));
        let listen = args.listen.unwrap_or(DEFAULT_LISTEN);
        let limits = Limits {
            per_minute: args.rate_limit_per_minute.unwrap_or(20),
            seed_per_minute: args.seed_rate_limit_per_minute.unwrap_or(2),
            seed_total_per_minute: args.seed_rate_limit_per_minute.map_or(10, |n| n * 5),
            trusted_proxy: args.trusted_proxy,
        };
        // The proxy every client comes through is not held to one address's connection cap.
        let defaults = eddy_server::listener::ConnLimits::default();
        let conn_limits = eddy_server::listener::ConnLimits {
            exempt: args.trusted_proxy,
            max_connections: args.max_connections.unwrap_or(defaults.max_connections).max(1),
            max_per_address: args
                .max_connections_per_address
                .unwrap_or(defaults.max_per_address)
                .max(1),
            ..defaults
        };
        let http = HttpServer::start_with(router_with(engine.clone(), terms, limits), listen, conn_limits)
            .await
            .with_context(|| format!("binding the HTTP API to {listen}"))?;
        let metrics_listen = args.metrics_listen.unwrap_or(DEFAULT_METRICS_LISTEN);
        let metrics = HttpServer::start(metrics_router(engine.clone()), metrics_listen)
            .await
            .with_context(|| format!("binding the metrics endpoint to {metrics_listen}"))?;
        println!("eddy server: metrics on {}/metrics", metrics.url());
        let admin_token = crate::daemon::load_or_create_token_file(&dir, crate::admin_api::ADMIN_TOKEN_FILE)?;
        let node_api = Arc::new(crate::node_api::NodeApi {
            ln: b.ln.clone(),
            ldk: b.ldk.clone(),
            network: engine.network(),
            follow: Some(engine.chain_follow()),
            chain: b.chain.clone(),
        });
        let admin_listen = args.admin_listen.unwrap_or(crate::admin_api::DEFAULT_ADMIN_LISTEN);
        crate::config::warn_if_exposed("the admin API", admin_listen);
        let admin = HttpServer::start(crate::admin_api::router(engine.clone(), node_api, admin_token), admin_listen)
            .await
            .with_context(|| format!("binding the admin API to {admin_listen}"))?;
        println!(
            "eddy server: admin API on {} (token in {})",
            admin.url(),
            dir.join(crate::admin_api::ADMIN_TOKEN_FILE).display()
        );
        tracing::info!(api = %http.url(), node = %b.ln.info().await.map(|i| i.pubkey.to_string()).unwrap_or_default(), "eddy server ready");
        // The line scripts and tests wait for.
        println!("eddy server: listening on {}", http.url());
        // The watchdog's last resort: a node that has not followed the chain for
        // NODE_LAG_EXIT_SECS gets a restart from the supervisor (exit non-zero). The engine's
        // passes run the checks.
        let limit = std::time::Duration::from_secs(eddy_core::constants::NODE_LAG_EXIT_SECS);
        let lagging = crate::config::until_stopped(std::time::Duration::from_secs(5), || {
            let engine = engine.clone();
            async move { engine.node_lagging_for().is_some_and(|d| d >= limit) }
        })
        .await;
        drop(http);
        drop(metrics);
        drop(admin);
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(crate::config::STOP_BOUND, runner).await;
        crate::config::stop_node(b.ldk.as_ref()).await?;
        if lagging {
            anyhow::bail!("the Lightning node stopped following the chain");
        }
        anyhow::Ok(())
    })?;
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    Ok(())
}
