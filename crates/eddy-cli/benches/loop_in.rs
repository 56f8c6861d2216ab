//! Loop-in on the devnet with blocks mined as soon as the swap needs one: wall time from the
//! request to both sides done (client paid, server's claim confirmed), in steady state (after a
//! warm-up swap: the first one after node start waits for LDK's 2-s initial forwarding delay);
//! and, for a swap whose payment fails, the time from the funding's confirmation until the
//! server gives up paying (its `LOOP_IN_PAY_ATTEMPTS` included), then the blocks and time from
//! that failure to the client's cooperative refund confirmed. Prints JSON. `cargo bench`: 1 + 5 swaps; `cargo
//! test`: 1 + 1.

use std::time::{Duration, Instant};

use bitcoin::Amount;
use eddy::demo::{in_process, swapnet, Swapnet};
use eddy_client::loop_in::LoopInOptions;
use eddy_core::sm::loop_in_client::State;
use eddy_core::sm::loop_in_server::State as ServerState;

/// Funding confirmed → the server gives up paying (its attempts included), seconds; then
/// failure → cooperative refund confirmed: (blocks, seconds).
fn failed_refund(net: &Swapnet) -> anyhow::Result<(f64, u32, f64)> {
    // 150,000 cannot reach the client (LDK's 10 % in-flight limit on the accepting side).
    let id = net.rt.block_on(
        net.client_in
            .loop_in(Amount::from_sat(150_000), LoopInOptions::default()),
    )?;
    net.mine(1)?;
    let confirmed = Instant::now();
    loop {
        net.rt.block_on(net.server.tick())?;
        if matches!(
            net.rt.block_on(net.server.loop_in.swap(&id))?.1.state,
            ServerState::Refundable(_)
        ) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let t0 = Instant::now();
    let gave_up = confirmed.elapsed().as_secs_f64();
    let h0 = net.lab.chain.tip()?.0;
    loop {
        net.rt.block_on(net.client_in.tick())?;
        let (_, c) = net.rt.block_on(net.client_in.swap(&id))?;
        if let State::Refunding {
            refund_txid: Some(t), ..
        } = c.state
        {
            net.mine(1)?;
            if let Some(s) = net.rt.block_on(net.chain.transaction(&t))? {
                if let Some(b) = s.block {
                    return Ok((gave_up, b.height - h0, t0.elapsed().as_secs_f64()));
                }
            }
        }
        if t0.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("no refund: {:?}", c.state);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn main() -> anyhow::Result<()> {
    let runs = if std::env::args().any(|a| a == "--bench") { 5 } else { 1 };
    let dir = tempfile::tempdir()?;
    let net = swapnet(dir.path(), Some(in_process()), &|_| {})?;
    let run = || -> anyhow::Result<_> {
        net.fund_client_wallet()?;
        let first = net.loop_in(Amount::from_sat(50_000))?;
        let mut times = vec![];
        for _ in 0..runs {
            times.push(net.loop_in(Amount::from_sat(50_000))?.elapsed.as_secs_f64());
        }
        let refund = failed_refund(&net)?;
        Ok((first, times, refund))
    };
    let result = run();
    if let Err(e) = &result {
        eprintln!("loop_in bench: {e:#}");
    }
    net.stop()?;
    let (first, mut times, (gave_up_s, refund_blocks, refund_s)) = result?;
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\":\"loop_in\",\"first_swap_wall_s\":{:.3},\"steady_runs\":{runs},\"wall_s_min\":{:.3},\"wall_s_median\":{:.3},\"wall_s_max\":{:.3},\"blocks_mined\":{},\"failure_to_refund_confirmed_blocks\":{refund_blocks},\"failure_to_refund_confirmed_s\":{refund_s:.3},\"funding_confirmed_to_payment_given_up_s\":{gave_up_s:.3}}}",
        first.elapsed.as_secs_f64(),
        times[0],
        times[times.len() / 2],
        times[times.len() - 1],
        first.blocks
    );
    Ok(())
}
