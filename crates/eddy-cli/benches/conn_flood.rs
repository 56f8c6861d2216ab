//! The swap server under a flood of connections that never finish their headers (issue 13):
//! one address (127.0.0.2) opens half-open connections as fast as it can while an honest client
//! (127.0.0.1) asks `GET /v1/terms` over and over and the chain moves on. Real server engine,
//! HTTP listener with its default connection limits, devnet, LDK nodes. Prints one JSON line:
//! flood connections opened and refused, the honest client's latencies (p50/p99/max), the
//! server process's open file handles at the end, and how long the server's Lightning node took
//! to follow 3 blocks mined during the flood. `cargo bench` floods 10,000 connections; under
//! `cargo test` 500.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use eddy::demo::swapnet;
use eddy_backends::LightningNode;
use tokio::io::AsyncWriteExt;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let flood_total: usize = if bench { 10_000 } else { 500 };
    let tmp = tempfile::tempdir()?;
    let net = swapnet(tmp.path(), None, &|_| {})?;
    let http = net.http.as_ref().ok_or_else(|| anyhow::anyhow!("no http"))?;
    let to = http.addr();
    let url = format!("{}/v1/terms", http.url());
    let fds_before = open_fds();
    // The flood: half a request line per connection, kept open on our side (at most 2,000 at
    // once: the flooder shares this process's file handles).
    let flood = net.rt.spawn(async move {
        let mut held = std::collections::VecDeque::new();
        let mut opened = 0usize;
        while opened < flood_total {
            let Ok(s) = tokio::net::TcpSocket::new_v4() else {
                break;
            };
            if s.bind("127.0.0.2:0".parse().expect("addr")).is_err() {
                break;
            }
            if let Ok(mut c) = s.connect(to).await {
                let _ = c.write_all(b"GET /v1/terms HTTP/1.1\r\nHo").await;
                held.push_back(c);
                opened += 1;
            }
            if held.len() > 2_000 {
                held.pop_front();
            }
        }
        opened
    });
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let sample = |n: usize| -> anyhow::Result<Vec<Duration>> {
        net.rt.block_on(async {
            let mut v = vec![];
            for _ in 0..n {
                let t = Instant::now();
                let r = client.get(&url).send().await?;
                anyhow::ensure!(r.status() == 200, "terms answered {}", r.status());
                v.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(v)
        })
    };
    let mut latencies = sample(20)?;
    // The chain moves on during the flood: does the server's node follow?
    let target = net.lab.chain.tip()?.0 + 3;
    net.lab.chain.mine(3)?;
    let mined_at = Instant::now();
    let mut caught_up = None;
    while !flood.is_finished() || caught_up.is_none() {
        latencies.extend(sample(5)?);
        if caught_up.is_none() && net.rt.block_on(net.server_ln.info())?.block_height >= target {
            caught_up = Some(mined_at.elapsed());
        }
        anyhow::ensure!(
            mined_at.elapsed() < Duration::from_secs(300),
            "the node did not follow the chain"
        );
    }
    let opened = net.rt.block_on(flood)?;
    let caught_up = caught_up.unwrap_or_default();
    let mut sorted = latencies.clone();
    sorted.sort();
    let stats = http.stats();
    println!(
        "{}",
        serde_json::json!({
            "bench": "conn_flood",
            "flood_connections": opened,
            "refused": stats.refused.load(Ordering::Relaxed),
            "admitted": stats.admitted.load(Ordering::Relaxed),
            "timed_out": stats.timed_out.load(Ordering::Relaxed),
            "accept_errors": stats.accept_errors.load(Ordering::Relaxed),
            "terms_requests": sorted.len(),
            "terms_p50_ms": percentile(&sorted, 0.50),
            "terms_p99_ms": percentile(&sorted, 0.99),
            "terms_max_ms": sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            "node_followed_3_blocks_ms": caught_up.as_secs_f64() * 1000.0,
            "open_fds_before": fds_before,
            "open_fds_after": open_fds(),
        })
    );
    net.stop()?;
    Ok(())
}
