//! HTLC-accepted → HTLC-broadcast latency of the swap server, with 1 and 50 concurrent
//! loop-outs on the devnet with real LDK nodes. The server engine runs its event-driven loop
//! ([`eddy_server::SwapServer::run`]); the latency is measured inside it from the moment its
//! node reports the client's HTLC accepted (held) to the moment the chain source shows the HTLC
//! transaction (`eddy_server::metrics`). Prints one JSON line per concurrency level.
//! `cargo bench` runs 20 sequential swaps and 50 concurrent ones; under `cargo test` 2 and 5.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use bitcoin::Amount;
use eddy::demo::{in_process, swapnet, Swapnet};
use eddy_backends::LightningNode;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// Adds `n` channels of 1,000,000 sat server → client (500,000 pushed): each channel holds at
/// most 50 HTLCs a side (LDK's default), and every swap holds two until it is published.
fn more_channels(net: &Swapnet, n: usize) -> anyhow::Result<()> {
    let addr = net.rt.block_on(net.server_ln.new_address())?;
    net.lab.chain.fund(&addr, Amount::from_sat(1_100_000 * n as u64))?;
    // The accepting side of an anchor channel must hold an on-chain reserve (25,000 sat each).
    let addr = net.rt.block_on(net.client_ln.new_address())?;
    net.lab.chain.fund(&addr, Amount::from_sat(30_000 * (n as u64 + 1)))?;
    net.mine(1)?;
    for node in [&net.server_ln, &net.client_ln] {
        let _ = node.ldk().sync_wallets();
    }
    let client_addr = net
        .client_ln
        .ldk()
        .listening_addresses()
        .and_then(|a| a.first().cloned())
        .ok_or_else(|| anyhow!("no listening address"))?;
    for _ in 0..n {
        net.lab.open_channel_between(
            net.server_ln.ldk(),
            net.client_ln.ldk(),
            client_addr.clone(),
            Amount::from_sat(1_000_000),
            500_000_000,
        )?;
    }
    Ok(())
}

/// Runs `rounds` rounds of `concurrent` simultaneous loop-outs and returns the latencies.
fn measure(concurrent: usize, rounds: usize, extra_channels: usize) -> anyhow::Result<Vec<Duration>> {
    let tmp = tempfile::tempdir()?;
    // EDDY_BENCH_DIR keeps the nodes' logs.
    let dir = match std::env::var_os("EDDY_BENCH_DIR") {
        Some(d) => std::path::PathBuf::from(d).join(format!("c{concurrent}")),
        None => tmp.path().to_path_buf(),
    };
    let net = swapnet(&dir, Some(in_process()), &|_| {})?;
    let result = rounds_on(&net, concurrent, rounds, extra_channels);
    if let Err(e) = &result {
        eprintln!("{concurrent} concurrent: {e:#}");
    }
    let _ = net.rt.block_on(net.server_ln.stop());
    let _ = net.rt.block_on(net.client_ln.stop());
    result
}

fn rounds_on(net: &Swapnet, concurrent: usize, rounds: usize, extra_channels: usize) -> anyhow::Result<Vec<Duration>> {
    more_channels(net, extra_channels)?;
    // Fund the server's swap wallet for every HTLC.
    let need = 20_000 * (concurrent * rounds) as u64;
    net.lab
        .chain
        .fund(net.server.wallet_address(), Amount::from_sat(need + 100_000))?;
    net.mine(1)?;
    net.rt.block_on(net.server.tick())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runner = net.rt.spawn(net.server.clone().run(stop_rx));
    let mut all = vec![];
    for _ in 0..rounds {
        let before = net.server.metrics().publish_latencies().len();
        let dests: Vec<_> = (0..concurrent)
            .map(|_| net.rt.block_on(net.client_ln.new_address()).map(|a| a.script_pubkey()))
            .collect::<Result<_, _>>()?;
        let c = &net.client;
        net.rt.block_on(async move {
            let swaps = dests
                .into_iter()
                .map(|d| async move { c.loop_out(Amount::from_sat(10_000), d).await })
                .collect::<Vec<_>>();
            for r in futures::future::join_all(swaps).await {
                r?;
            }
            anyhow::Ok(())
        })?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while net.server.metrics().publish_latencies().len() < before + concurrent {
            // The client engine retries what it must (as its daemon would).
            net.rt.block_on(net.client.tick())?;
            if Instant::now() > deadline {
                let mut states = std::collections::BTreeMap::<String, usize>::new();
                for (r, _) in net.rt.block_on(net.client.list())? {
                    *states.entry(r.state_name).or_default() += 1;
                }
                return Err(anyhow!(
                    "only {} of {concurrent} HTLCs published; client swaps: {states:?}",
                    net.server.metrics().publish_latencies().len() - before
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        all.extend(net.server.metrics().publish_latencies()[before..].iter().copied());
        // Confirm this round's HTLCs so the wallet has confirmed change for the next one.
        net.mine(1)?;
    }
    let _ = stop_tx.send(true);
    let _ = net.rt.block_on(runner);
    Ok(all)
}

fn main() -> anyhow::Result<()> {
    // RUST_LOG=eddy_server=info shows the engine's decisions.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let bench = std::env::args().any(|a| a == "--bench");
    let mut plans: Vec<(usize, usize, usize)> = if bench {
        vec![(1, 20, 0), (50, 1, 2)]
    } else {
        vec![(1, 2, 0), (5, 1, 0)]
    };
    // EDDY_BENCH_CONCURRENT=N runs only N concurrent swaps (one round).
    if let Some(n) = std::env::var("EDDY_BENCH_CONCURRENT").ok().and_then(|v| v.parse().ok()) {
        plans = vec![(n, 1, n / 25)];
    }
    for (concurrent, rounds, extra) in plans {
        let mut l = match measure(concurrent, rounds, extra) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{concurrent} concurrent: {e:#}");
                return Err(e);
            }
        };
        l.sort();
        println!(
            "{{\"bench\":\"htlc_publish_latency\",\"concurrent\":{concurrent},\"samples\":{},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
            l.len(),
            percentile(&l, 0.50),
            percentile(&l, 0.99),
            percentile(&l, 1.0)
        );
    }
    Ok(())
}
