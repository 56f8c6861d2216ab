//! Time from nothing to a usable Lightning channel: start the chain (devnet, or bitcoind when
//! `BITCOIND_EXE`/`BITCOIND_RPC_URL` is set) with mature faucet coins, start two ldk-node
//! nodes, fund one with an exact amount, open a 500k-sat channel and wait until both sides
//! can use it. Prints each phase and the total as JSON (target ≤ 15 s on the devnet). Runs
//! once under `cargo test`, three times under `cargo bench`.

use std::time::Instant;

use bitcoin::Amount;
use eddy_lab::{Lab, LabConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs = if std::env::args().any(|a| a == "--bench") { 3 } else { 1 };
    for run in 0..runs {
        let dir = tempfile::tempdir()?;
        let config = LabConfig::new(dir.path(), 2);
        let backend = format!("{:?}", config.backend);
        let t0 = Instant::now();
        let lab = Lab::start(config)?;
        let started = t0.elapsed();
        lab.fund_node(0, Amount::from_sat(1_000_000))?;
        let funded = t0.elapsed();
        lab.open_channel(0, 1, Amount::from_sat(500_000), 0)?;
        let usable = t0.elapsed();
        lab.stop();
        println!(
            "{{\"bench\":\"lab_start\",\"run\":{run},\"backend\":{backend:?},\"chain_and_2_nodes_s\":{:.2},\
             \"funded_s\":{:.2},\"channel_usable_s\":{:.2}}}",
            started.as_secs_f64(),
            funded.as_secs_f64(),
            usable.as_secs_f64()
        );
    }
    Ok(())
}
