//! Loop-out on the devnet, blocks mined as soon as the swap needs one: wall time from the
//! client's request to both sides done (client claim confirmed, server settled), and on-chain
//! vbytes per swap (HTLC transaction + claim). Prints JSON.
//!
//! The first swap after the Lightning nodes start waits for LDK's initial 2-second HTLC
//! forwarding delay (`lightning-background-processor`'s `INIT_FWD_DELAY`; later batches wait
//! ~50 ms), so it is reported apart from the steady state, which is what a running server sees.
//! `cargo bench` runs 1 + 8 swaps on one swapnet; `cargo test` 1 + 1.

use bitcoin::Amount;

fn main() -> anyhow::Result<()> {
    let warm_runs = if std::env::args().any(|a| a == "--bench") { 8 } else { 1 };
    let dir = tempfile::tempdir()?;
    let net = eddy::demo::swapnet(dir.path(), None, &|_| {})?;
    let run = || -> anyhow::Result<_> {
        let first = net.loop_out(Amount::from_sat(40_000), &|_| {})?;
        let mut times = vec![];
        let mut last = first.clone();
        for _ in 0..warm_runs {
            let r = net.loop_out(Amount::from_sat(40_000), &|_| {})?;
            times.push(r.elapsed.as_secs_f64());
            last = r;
        }
        Ok((first, times, last))
    };
    let result = run();
    if let Err(e) = &result {
        eprintln!("loop_out bench: {e:#}");
    }
    net.stop()?;
    let (first, mut times, last) = result?;
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\":\"loop_out\",\"first_swap_wall_s\":{:.3},\"steady_runs\":{warm_runs},\"wall_s_min\":{:.3},\"wall_s_median\":{:.3},\"wall_s_max\":{:.3},\
         \"blocks_mined\":{},\"htlc_tx_vbytes\":{},\"claim_vbytes\":{},\"onchain_vbytes_per_swap\":{}}}",
        first.elapsed.as_secs_f64(),
        times[0],
        times[times.len() / 2],
        times[times.len() - 1],
        last.blocks,
        last.htlc_tx_vsize,
        last.claim_vsize,
        last.htlc_tx_vsize + last.claim_vsize
    );
    Ok(())
}
