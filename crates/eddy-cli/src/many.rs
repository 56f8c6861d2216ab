//! Many clients at once through one server on the devnet (issue 17's measurement): `clients`
//! LDK client nodes, each with its own channel to the server's node, its own store and its own
//! loop-out engine (in process, the server's real engine behind them), start `per_client`
//! loop-outs each at the same moment; the server publishes with a publication window; every
//! block is mined as soon as a swap needs one. Reports the wall time and how many HTLC and
//! claim transactions carried them — the `many_loop_outs` bench prints it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use bitcoin::Amount;
use eddy_backends::ldk::LdkNode;
use eddy_backends::LightningNode;
use eddy_client::{LoopOutClient, SwapOptions};
use eddy_core::sm::loop_out_client::State;
use eddy_lab::{Lab, LabConfig, WAIT};
use eddy_server::{SeedKeys, SwapServer};
use eddy_store::{SqliteStore, SwapStore};

use crate::demo::{client_config, in_process, mine_synced, runtime_and_chain, server_config, start_node};

/// What a run of many loop-outs did.
#[derive(Clone, Debug)]
pub struct ManyReport {
    /// Loop-outs started (all succeeded, or the run is an error).
    pub swaps: usize,
    /// Client nodes.
    pub clients: usize,
    /// From the first request to the last swap done on both sides.
    pub elapsed: Duration,
    /// Distinct HTLC transactions that published them.
    pub htlc_txs: usize,
    /// Distinct claim transactions that claimed them.
    pub claim_txs: usize,
    /// Their vbytes: HTLC transactions, claims.
    pub htlc_vbytes: u64,
    /// The claims' vbytes.
    pub claim_vbytes: u64,
    /// Blocks mined from the first request to the end.
    pub blocks: u32,
}

/// Runs `clients` × `per_client` loop-outs of `amount` at once through one server with a
/// publication window of `window`, in `dir`.
pub fn many_loop_outs(
    dir: &std::path::Path,
    clients: usize,
    per_client: usize,
    amount: Amount,
    window: Duration,
) -> anyhow::Result<ManyReport> {
    let lab = Lab::start(LabConfig::new(dir, 0)).context("starting the chain")?;
    let (rt, chain) = runtime_and_chain(&lab)?;
    let server_ln = rt.block_on(start_node(&lab, &dir.join("server-ldk"), chain.clone()))?;
    let capacity = Amount::from_sat(1_000_000);
    let addr = rt.block_on(server_ln.new_address())?;
    lab.chain.fund(&addr, capacity * (clients as u64 + 1))?;
    lab.mine(1)?;
    eddy_lab::wait_synced(server_ln.ldk(), lab.chain.tip()?, WAIT)?;
    let mut nodes: Vec<Arc<LdkNode>> = vec![];
    for i in 0..clients {
        let ln = rt.block_on(start_node(&lab, &dir.join(format!("client{i}-ldk")), chain.clone()))?;
        let listen = ln
            .ldk()
            .listening_addresses()
            .and_then(|a| a.first().cloned())
            .ok_or_else(|| anyhow!("client node has no listening address"))?;
        lab.open_channel_between(server_ln.ldk(), ln.ldk(), listen, capacity, 500_000_000)?;
        nodes.push(ln);
    }
    let server_store: Arc<dyn SwapStore> = Arc::new(rt.block_on(SqliteStore::open(&dir.join("server.sqlite")))?);
    let cfg = eddy_server::ServerConfig {
        max_active_swaps: clients * per_client * 2,
        publish_batch_window: window,
        claim_batch_window: std::time::Duration::ZERO,
        ..server_config()
    };
    let server = Arc::new(rt.block_on(SwapServer::new(
        cfg,
        server_ln.clone(),
        chain.clone(),
        server_store,
        SeedKeys::load_or_create(dir, eddy_server::SEED_FILE)?,
    ))?);
    let swaps = clients * per_client;
    lab.chain.fund(
        server.wallet_address(),
        amount * (swaps as u64) + Amount::from_sat(200_000),
    )?;
    let all_nodes: Vec<&Arc<LdkNode>> = std::iter::once(&server_ln).chain(nodes.iter()).collect();
    mine_synced(&lab, &all_nodes, 1)?;
    rt.block_on(server.tick())?;
    let mut engines = vec![];
    for (i, ln) in nodes.iter().enumerate() {
        let cdir = dir.join(format!("client{i}"));
        std::fs::create_dir_all(&cdir)?;
        let store: Arc<dyn SwapStore> = Arc::new(rt.block_on(SqliteStore::open(&cdir.join("client.sqlite")))?);
        let api = in_process()(server.clone(), server_ln.clone());
        engines.push(rt.block_on(LoopOutClient::new(
            client_config(),
            ln.clone(),
            chain.clone(),
            store,
            api,
            SeedKeys::load_or_create(&cdir, eddy_client::SEED_FILE)?,
        ))?);
    }
    let h0 = lab.chain.tip()?.0;
    let t0 = Instant::now();
    // Every swap asked at the same moment.
    let mut ids = vec![];
    let asks = engines.iter().zip(&nodes).flat_map(|(engine, ln)| {
        (0..per_client).map(move |_| async move {
            let dest = ln.new_address().await?.script_pubkey();
            let options = SwapOptions {
                wallet_destination: true,
                ..SwapOptions::default()
            };
            anyhow::Ok(engine.loop_out_with(amount, dest, options).await?)
        })
    });
    let started = rt.block_on(futures::future::join_all(asks));
    for (n, r) in started.into_iter().enumerate() {
        ids.push((n / per_client, r?));
    }
    loop {
        rt.block_on(server.tick())?;
        rt.block_on(futures::future::join_all(engines.iter().map(|e| e.tick())))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let mut states = vec![];
        for (c, id) in &ids {
            states.push(rt.block_on(engines[*c].swap(id))?.1.state);
        }
        if states.iter().all(|s| matches!(s, State::Succeeded { .. })) {
            break;
        }
        if let Some(f) = states.iter().find(|s| matches!(s, State::Failed(_))) {
            return Err(anyhow!("a swap failed: {f:?}"));
        }
        if states
            .iter()
            .any(|s| matches!(s, State::HtlcConfirming { .. } | State::Claiming { .. }))
        {
            mine_synced(&lab, &all_nodes, 1)?;
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
        let limit = Duration::from_secs(120 + 6 * swaps as u64);
        if t0.elapsed() > limit {
            return Err(anyhow!("not done after {} s", limit.as_secs()));
        }
    }
    let elapsed = t0.elapsed();
    let mut htlc_txs = std::collections::BTreeSet::new();
    let mut claims = std::collections::BTreeSet::new();
    for (c, id) in &ids {
        let (_, s) = rt.block_on(server.loop_out.swap(id))?;
        htlc_txs.insert(s.funding.ok_or_else(|| anyhow!("no funding"))?.txid);
        let (_, r) = rt.block_on(engines[*c].swap(id))?;
        claims.insert(r.confirmed_claim().ok_or_else(|| anyhow!("no claim"))?.0);
    }
    let vbytes = |txids: &std::collections::BTreeSet<bitcoin::Txid>| -> anyhow::Result<u64> {
        let mut sum = 0;
        for t in txids {
            let s = rt
                .block_on(chain.transaction(t))?
                .ok_or_else(|| anyhow!("transaction {t} unknown"))?;
            sum += s.tx.vsize() as u64;
        }
        Ok(sum)
    };
    let report = ManyReport {
        swaps,
        clients,
        elapsed,
        htlc_txs: htlc_txs.len(),
        claim_txs: claims.len(),
        htlc_vbytes: vbytes(&htlc_txs)?,
        claim_vbytes: vbytes(&claims)?,
        blocks: lab.chain.tip()?.0 - h0,
    };
    drop(engines);
    for ln in nodes.iter().chain(std::iter::once(&server_ln)) {
        let _ = rt.block_on(ln.stop());
    }
    Ok(report)
}
