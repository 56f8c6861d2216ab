//! On-chain cost per swap (issue 17), on the devnet through one server, in vbytes:
//!
//! - **loop-out, unbatched**: N swaps one at a time — an HTLC transaction (one HTLC and the
//!   change) and a claim each;
//! - **loop-out, batched**: N swaps started together — the server publishes their HTLCs in one
//!   transaction and the client claims them in one (each input co-signed on the key path, one
//!   output to its wallet);
//! - **loop-in, unbatched**: N swaps one at a time — the client's funding and the server's
//!   claim (a round of one input, co-signed on the key path);
//! - **loop-in, batched**: N swaps started together — the server claims them in one
//!   transaction, each input co-signed by its client on the key path;
//! - **refunds, batched**: N loop-outs the client pays and never claims — the server refunds
//!   them all at `E` in one transaction (each input on its timeout path: nobody co-signs).
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

/// N loop-ins started together, driven to the end: (the server's confirmed claims' vbytes,
/// their number, how many inputs took the key path).
fn batched_loop_ins(net: &Swapnet, n: usize, amount: Amount) -> anyhow::Result<(u64, usize, usize)> {
    use eddy_core::sm::loop_in_client::State as In;
    use eddy_core::sm::loop_in_server::State as ServerIn;
    // Funded from the lab's wallet (ldk-node's wallet sends one transaction at a time and
    // reuses a coin its last send spent before it syncs): the claims are what is measured.
    let mut ids = vec![];
    for _ in 0..n {
        let options = eddy_client::loop_in::LoopInOptions {
            external: true,
            ..Default::default()
        };
        let id = net.rt.block_on(net.client_in.loop_in(amount, options))?;
        let (_, rec) = net.rt.block_on(net.client_in.swap(&id))?;
        let address = rec.offer.htlc_address.parse::<bitcoin::Address<_>>()?.assume_checked();
        net.lab.chain.fund(&address, amount)?;
        ids.push(id);
    }
    // Every funding in one block: the server pays them all in one pass.
    net.mine(1)?;
    let start = std::time::Instant::now();
    let mut signing_since = None;
    loop {
        net.rt.block_on(net.server.tick())?;
        net.rt.block_on(net.client_in.tick())?;
        let mut states = vec![];
        let mut claimed = true;
        for id in &ids {
            let c = net.rt.block_on(net.client_in.swap(id))?.1.state;
            let s = net.rt.block_on(net.server.loop_in.swap(id))?.1;
            claimed &= s.claim.is_some();
            states.push((c, s.state));
        }
        if states
            .iter()
            .all(|(c, s)| *c == In::Succeeded && *s == ServerIn::Succeeded)
        {
            break;
        }
        anyhow::ensure!(
            !states
                .iter()
                .any(|(c, _)| matches!(c, In::Refunding { .. } | In::Refunded { .. } | In::Failed(_))),
            "a loop-in failed: {states:?}"
        );
        // The claims wait for every swap to be paid (one round for all).
        let all_paid = states
            .iter()
            .all(|(_, s)| matches!(s, ServerIn::Claiming { .. } | ServerIn::Succeeded));
        // A round the clients are still co-signing gets their time (up to 10 s, well within a
        // block on a real chain).
        let signing = net
            .server
            .loop_in
            .claim_round()
            .is_some_and(|r| r.members.iter().any(|&(_, key_path, signed)| key_path && !signed));
        let signing = signing
            && signing_since.get_or_insert_with(std::time::Instant::now).elapsed() < std::time::Duration::from_secs(10);
        if !signing {
            signing_since = None;
        }
        if all_paid && claimed && !signing {
            net.mine(1)?;
        } else {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        anyhow::ensure!(start.elapsed() < eddy_lab::WAIT, "not done: {states:?}");
    }
    let mut claims = BTreeSet::new();
    for id in &ids {
        let (_, s) = net.rt.block_on(net.server.loop_in.swap(id))?;
        let claim = s.claim.ok_or_else(|| anyhow::anyhow!("no claim"))?;
        let mut confirmed = None;
        for t in claim.all.iter().rev() {
            if let Some(found) = net.rt.block_on(net.chain.transaction(t))? {
                if found.block.is_some() {
                    confirmed = Some((*t, found.tx));
                    break;
                }
            }
        }
        let (txid, tx) = confirmed.ok_or_else(|| anyhow::anyhow!("no confirmed claim"))?;
        claims.insert((txid, tx.input.iter().filter(|i| i.witness.len() == 1).count()));
    }
    let claim_vb = claims.iter().map(|(t, _)| vsize(net, t)).sum::<anyhow::Result<u64>>()?;
    let key_path = claims.iter().map(|(_, k)| k).sum();
    Ok((claim_vb, claims.len(), key_path))
}

/// N loop-outs paid and never claimed (the client engine is not run after paying), driven until
/// the server refunded them all: (the confirmed refunds' vbytes, their number).
fn batched_refunds(net: &Swapnet, n: usize, amount: Amount) -> anyhow::Result<(u64, usize)> {
    let mut ids = vec![];
    for _ in 0..n {
        let dest = net.rt.block_on(net.client_ln.new_address())?.script_pubkey();
        ids.push(net.rt.block_on(net.client.loop_out(amount, dest))?);
    }
    net.wait_held(&ids)?;
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick())?;
        let mut done = true;
        for id in &ids {
            done &= net.rt.block_on(net.server.loop_out.swap(id))?.1.state == ServerState::Refunded;
        }
        if done {
            break;
        }
        net.mine(1)?;
        anyhow::ensure!(start.elapsed() < 3 * eddy_lab::WAIT, "not refunded");
    }
    let mut refunds = BTreeSet::new();
    for id in &ids {
        let (_, s) = net.rt.block_on(net.server.loop_out.swap(id))?;
        let refund = s.refund.ok_or_else(|| anyhow::anyhow!("no refund"))?;
        for t in refund.all.iter().rev() {
            if net
                .rt
                .block_on(net.chain.transaction(t))?
                .is_some_and(|f| f.block.is_some())
            {
                refunds.insert(*t);
                break;
            }
        }
    }
    let vb = refunds.iter().map(|t| vsize(net, t)).sum::<anyhow::Result<u64>>()?;
    Ok((vb, refunds.len()))
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
        let (b_in_claim, b_in_claims, b_in_key_path) = batched_loop_ins(&net, n, amount)?;
        let (refund_vb, refund_txs) = batched_refunds(&net, n, amount)?;
        let per = |v: u64| v as f64 / n as f64;
        Ok(format!(
            "{{\"bench\":\"onchain_cost\",\"swaps\":{n},\
             \"loop_out_unbatched\":{{\"htlc_vb_per_swap\":{:.1},\"claim_vb_per_swap\":{:.1},\"total_vb_per_swap\":{:.1}}},\
             \"loop_out_batched\":{{\"htlc_txs\":{b_htlc_txs},\"claim_txs\":{b_claims},\"htlc_vb_per_swap\":{:.1},\"claim_vb_per_swap\":{:.1},\"total_vb_per_swap\":{:.1}}},\
             \"loop_in_unbatched\":{{\"funding_vb_per_swap\":{:.1},\"server_claim_vb_per_swap\":{:.1},\"total_vb_per_swap\":{:.1}}},\
             \"loop_in_batched\":{{\"server_claim_txs\":{b_in_claims},\"key_path_inputs\":{b_in_key_path},\"server_claim_vb_per_swap\":{:.1}}},\
             \"loop_out_refunds_batched\":{{\"refund_txs\":{refund_txs},\"refund_vb_per_swap\":{:.1}}}}}",
            per(out_htlc),
            per(out_claim),
            per(out_htlc + out_claim),
            per(b_htlc),
            per(b_claim),
            per(b_htlc + b_claim),
            per(in_funding),
            per(in_claim),
            per(in_funding + in_claim),
            per(b_in_claim),
            per(refund_vb),
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
