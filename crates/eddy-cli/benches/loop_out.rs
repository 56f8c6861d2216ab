//! Loop-out on the devnet, blocks mined as soon as the swap needs one: wall time from the
//! client's request to both sides done (client claim 3 deep, server settled), and on-chain
//! vbytes per swap (HTLC transaction + claim). Prints JSON. `cargo bench` runs 5 swaps (fresh
//! devnet each), `cargo test` one.

use bitcoin::Amount;

fn main() -> anyhow::Result<()> {
    let runs = if std::env::args().any(|a| a == "--bench") { 5 } else { 1 };
    let mut times = vec![];
    let mut vbytes = vec![];
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let r = eddy::demo::run_loop_out(dir.path(), Amount::from_sat(250_000), false)?;
        times.push(r.elapsed.as_secs_f64());
        vbytes.push((r.htlc_tx_vsize, r.claim_vsize, r.blocks));
    }
    times.sort_by(f64::total_cmp);
    let (htlc, claim, blocks) = vbytes[0];
    println!(
        "{{\"bench\":\"loop_out\",\"runs\":{runs},\"wall_s_min\":{:.3},\"wall_s_median\":{:.3},\"wall_s_max\":{:.3},\
         \"blocks_mined\":{blocks},\"htlc_tx_vbytes\":{htlc},\"claim_vbytes\":{claim},\"onchain_vbytes_per_swap\":{}}}",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1],
        htlc + claim
    );
    Ok(())
}
