//! On-chain cost per swap (issue 17), on the devnet through one server, in vbytes:
//!
//! - **loop-out, unbatched**: N swaps one at a time — an HTLC transaction (one HTLC and the
//!   change) and a claim each;
//! - **loop-out, batched**: N swaps started together — the server publishes their HTLCs in one
//!   transaction and the client claims them in one (each input co-signed on the key path, one
//!   output to its wallet);
//! - **loop-in**: N swaps one at a time — the client's funding and the server's claim (the
//!   server's claims are not batched yet: the same figure either way).
//!
//! Prints one JSON object. `cargo bench`: N = 10; `cargo test` (the bench run as a test): N = 3.

use std::collections::BTreeSet;

use bitcoin::{Amount, Txid};
use eddy::demo::{in_process, swapnet, Swapnet};
use eddy_backends::LightningNode;
use eddy_core::sm::loop_out_client::State;
use eddy_core::sm::loop_out_server::State as ServerState;

fn vsize(net: &Swapnet, txid: &Txid) -> anyhow::Result<u64> {
    let s = net
        .rt
        .block_on(net.chain.transaction(txid))?
        .ok_or_else(|| anyhow::anyhow!("transaction {txid} unknown"))?;
    Ok(s.tx.vsize() as u64)
}

/// N loop-outs started together, driven to the end: (HTLC transactions' vbytes, claims'
/// vbytes, number of HTLC transactions, number of claims).
fn batched_loop_outs(net: &Swapnet, n: usize, amount: Amount) -> anyhow::Result<(u64, u64, usize, usize)> {
    let mut ids = vec![];
    for _ in 0..n {
        let dest = net.rt.block_on(net.client_ln.new_address())?.script_pubkey();
        let options = eddy_client::SwapOptions {
            wallet_destination: true,
            ..Default::default()
        };
        ids.push(net.rt.block_on(net.client.loop_out_with(amount, dest, options))?);
    }
    net.wait_held(&ids)?;
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick())?;
        net.rt.block_on(net.client.tick())?;
        let mut states = vec![];
        for id in &ids {
            let c = net.rt.block_on(net.client.swap(id))?.1.state;
            let s = net.rt.block_on(net.server.loop_out.swap(id))?.1.state;
            states.push((c, s));
        }
        if states
            .iter()
            .all(|(c, s)| matches!(c, State::Succeeded { .. }) && *s == ServerState::Succeeded)
        {
            break;
        }
        anyhow::ensure!(
            !states.iter().any(|(c, _)| matches!(c, State::Failed(_))),
            "a swap failed: {states:?}"
        );
        if states
            .iter()
            .any(|(c, _)| matches!(c, State::HtlcConfirming { .. } | State::Claiming { .. }))
        {
            net.mine(1)?;
        }
        anyhow::ensure!(start.elapsed() < eddy_lab::WAIT, "not done: {states:?}");
    }
    let mut htlc_txs = BTreeSet::new();
    let mut claims = BTreeSet::new();
    for id in &ids {
        let (_, s) = net.rt.block_on(net.server.loop_out.swap(id))?;
        htlc_txs.insert(s.funding.ok_or_else(|| anyhow::anyhow!("no funding"))?.txid);
        let (_, c) = net.rt.block_on(net.client.swap(id))?;
        claims.insert(c.confirmed_claim().ok_or_else(|| anyhow::anyhow!("no claim"))?.0);
    }
    let htlc_vb = htlc_txs.iter().map(|t| vsize(net, t)).sum::<anyhow::Result<u64>>()?;
    let claim_vb = claims.iter().map(|t| vsize(net, t)).sum::<anyhow::Result<u64>>()?;
    Ok((htlc_vb, claim_vb, htlc_txs.len(), claims.len()))
}

fn main() -> anyhow::Result<()> {
    let n = if std::env::args().any(|a| a == "--bench") {
        10
    } else {
        3
    };
    let amount = Amount::from_sat(20_000);
    let dir = tempfile::tempdir()?;
    let net = swapnet(dir.path(), Some(in_process()), &|_| {})?;
    let run = || -> anyhow::Result<String> {
        let (mut out_htlc, mut out_claim) = (0u64, 0u64);
        for _ in 0..n {
            let r = net.loop_out(amount, &|_| {})?;
            out_htlc += r.htlc_tx_vsize;
            out_claim += r.claim_vsize;
        }
        let (b_htlc, b_claim, b_htlc_txs, b_claims) = batched_loop_outs(&net, n, amount)?;
        net.fund_client_wallet()?;
        let (mut in_funding, mut in_claim) = (0u64, 0u64);
        for _ in 0..n {
            let r = net.loop_in(amount)?;
            in_funding += vsize(&net, &r.funding.0)?;
            in_claim += vsize(&net, &r.claim.0)?;
        }
        let per = |v: u64| v as f64 / n as f64;
        Ok(format!(
            "{{\"bench\":\"onchain_cost\",\"swaps\":{n},\
             \"loop_out_unbatched\":{{\"htlc_vb_per_swap\":{:.1},\"claim_vb_per_swap\":{:.1},\"total_vb_per_swap\":{:.1}}},\
             \"loop_out_batched\":{{\"htlc_txs\":{b_htlc_txs},\"claim_txs\":{b_claims},\"htlc_vb_per_swap\":{:.1},\"claim_vb_per_swap\":{:.1},\"total_vb_per_swap\":{:.1}}},\
             \"loop_in\":{{\"funding_vb_per_swap\":{:.1},\"server_claim_vb_per_swap\":{:.1},\"total_vb_per_swap\":{:.1},\"server_claims_batched\":false}}}}",
            per(out_htlc),
            per(out_claim),
            per(out_htlc + out_claim),
            per(b_htlc),
            per(b_claim),
            per(b_htlc + b_claim),
            per(in_funding),
            per(in_claim),
            per(in_funding + in_claim),
        ))
    };
    let result = run();
    if let Err(e) = &result {
        eprintln!("onchain_cost bench: {e:#}");
    }
    net.stop()?;
    println!("{}", result?);
    Ok(())
}
