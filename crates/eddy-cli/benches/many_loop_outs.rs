//! Many loop-outs at once through one server (issue 17): `cargo bench` starts 100 (10 client
//! nodes × 10) at the same moment with a 5-s publication window; `cargo test` 4 (2 × 2) with a
//! 1-s window. Prints JSON: wall time, blocks, and how many HTLC and claim transactions carried
//! them (with their vbytes per swap).

use std::time::Duration;

use bitcoin::Amount;

fn main() -> anyhow::Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let (clients, per_client, window) = if bench { (10, 10, 5) } else { (2, 2, 1) };
    let dir = tempfile::tempdir()?;
    let r = eddy::many::many_loop_outs(
        dir.path(),
        clients,
        per_client,
        Amount::from_sat(20_000),
        Duration::from_secs(window),
    )?;
    let per = |v: u64| v as f64 / r.swaps as f64;
    println!(
        "{{\"bench\":\"many_loop_outs\",\"clients\":{},\"swaps\":{},\"publish_batch_window_s\":{window},\"wall_s\":{:.1},\"blocks\":{},\
         \"htlc_txs\":{},\"claim_txs\":{},\"htlc_vb_per_swap\":{:.1},\"claim_vb_per_swap\":{:.1},\"total_vb_per_swap\":{:.1}}}",
        r.clients,
        r.swaps,
        r.elapsed.as_secs_f64(),
        r.blocks,
        r.htlc_txs,
        r.claim_txs,
        per(r.htlc_vbytes),
        per(r.claim_vbytes),
        per(r.htlc_vbytes + r.claim_vbytes),
    );
    Ok(())
}
