//! Soak with faults (issue 13): many loop-outs and loop-ins, `concurrency` at a time, through one
//! real `eddy server` process and several real `eddy daemon` processes (each with its embedded
//! LDK node) on the devnet, while the server and the daemons are killed with SIGKILL at random
//! moments (and restarted), and the chain is reorganised 1–3 blocks deep every `reorg_every`
//! blocks. Everything goes through the daemons' HTTP APIs, as a user's tools would.
//!
//! At the end every process is stopped, every node is opened again in this process, the chain is
//! mined until nothing is pending, and the money is counted from the outside:
//! `start − end − miner fees − anchors left = unaccounted`, where `start` and `end` are the sum
//! of every node's Lightning and on-chain balance plus the server's swap wallet (read from the
//! chain, not from the server), `miner fees` the fees of every transaction mined after the start
//! (the devnet reports each one), and `anchors left` the 330-sat anchor outputs of force-closed
//! channels nobody has swept. Each open channel holds what its commitment keeps for fees and
//! anchors outside both balances (the same for every channel: same capacity and fee rate, no
//! HTLC), counted at the start and at the end for the channels then open. A sum over all parties
//! cannot see one party paid by another for nothing, so each swap's two records (the client
//! daemon's and the server's store) must also agree on whether it succeeded.
//!
//! Prints one JSON line: swaps asked for, started, succeeded, refunded, stuck (must be 0),
//! unaccounted sats (must be 0), swaps whose sides disagree (must be 0), p50/p99 swap time,
//! kill rounds, reorgs, channels force-closed and reopened, server RSS and store size at the
//! end. A client left without a channel (ldk-node force-closes channels after some kills) is
//! stopped, its node opens a new channel to the server, and it is started again.
//!
//! `cargo bench -p eddy --bench soak` runs 1,000 swaps, 50 at a time, 4 client daemons, 10 kill
//! rounds; under `cargo test` a small version (12 swaps, 4 at a time, 2 clients, 3 kill rounds)
//! runs and asserts the zeros. `EDDY_SOAK_SWAPS`, `EDDY_SOAK_CONCURRENCY`, `EDDY_SOAK_CLIENTS`,
//! `EDDY_SOAK_KILLS` override; `EDDY_TEST_KEEP=1` keeps the data dirs and logs.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bitcoin::secp256k1::rand::{self, Rng};
use bitcoin::{Amount, Network, ScriptBuf, Transaction};
use eddy_backends::ldk::{LdkChainSource, LdkConfig, LdkNode};
use eddy_backends::LightningNode;
use eddy_lab::{Lab, LabConfig, WAIT};
use serde_json::{json, Value};

/// How big a run is.
#[derive(Clone, Copy, Debug)]
struct Plan {
    swaps: usize,
    concurrency: usize,
    clients: usize,
    kills: usize,
    reorg_every: u32,
    /// Seconds between blocks.
    block_secs: f64,
    /// Whether reorgs may land while a killed process is down (the full run; the small run
    /// under `cargo test` keeps them apart, see `main`).
    reorg_while_down: bool,
}

impl Plan {
    fn new(bench: bool) -> Plan {
        let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
        let base = if bench {
            Plan {
                swaps: 1_000,
                concurrency: 50,
                clients: 4,
                kills: 10,
                reorg_every: 50,
                block_secs: 2.0,
                reorg_while_down: true,
            }
        } else {
            Plan {
                swaps: 12,
                concurrency: 4,
                clients: 2,
                kills: 3,
                reorg_every: 4,
                block_secs: 1.0,
                reorg_while_down: false,
            }
        };
        Plan {
            swaps: env("EDDY_SOAK_SWAPS", base.swaps),
            concurrency: env("EDDY_SOAK_CONCURRENCY", base.concurrency),
            clients: env("EDDY_SOAK_CLIENTS", base.clients),
            kills: env("EDDY_SOAK_KILLS", base.kills),
            ..base
        }
    }
}

/// Channel server → each client: capacity and what is pushed to the client.
const CHANNEL_SAT: u64 = 4_000_000;
/// The server's fee policy in this run (its `server.toml`).
const SERVER_BASE_FEE_SAT: u64 = 1000;
const SERVER_FEE_PPM: u64 = 5000;
const SERVER_PREPAY_SAT: u64 = 1000;
const PUSH_SAT: u64 = 2_000_000;
/// Swap amounts are drawn from this range (sat).
const AMOUNTS: std::ops::Range<u64> = 20_000..60_000;

fn eddy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
}

/// A running `eddy server` or `eddy daemon`; SIGKILLed when dropped.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `eddy <what> --config <config>` and waits for its "listening on" line.
    fn start(what: &str, config: &Path, log: &Path, env: &[(String, String)]) -> anyhow::Result<Proc> {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut child = eddy()
            .arg(what)
            .arg("--config")
            .arg(config)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        let mut p = Proc { child };
        if rx.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = p.child.kill();
            bail!("eddy {what} did not start; see {}", log.display());
        }
        Ok(p)
    }

    /// SIGTERM, then wait for the exit.
    fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    }
}

/// One process the run owns: how to start it again after a kill.
struct Daemon {
    what: &'static str,
    config: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    proc: Mutex<Option<Proc>>,
    /// Its API base URL.
    url: String,
    /// Its bearer token (daemons).
    token: Mutex<Option<String>>,
    data_dir: PathBuf,
    /// Held while the process is being killed or its node is reopening a channel.
    maint: Mutex<()>,
}

impl Daemon {
    fn start(&self) -> anyhow::Result<()> {
        let p = Proc::start(self.what, &self.config, &self.log, &self.env)?;
        *lock(&self.proc) = Some(p);
        if self.what == "daemon" {
            let t = std::fs::read_to_string(self.data_dir.join("api.token"))?;
            *lock(&self.token) = Some(t.trim().to_string());
        }
        Ok(())
    }

    fn kill9(&self) {
        if let Some(p) = lock(&self.proc).take() {
            drop(p);
        }
    }

    fn terminate(&self) {
        if let Some(p) = lock(&self.proc).take() {
            p.terminate();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ldk_config(lab: &Lab, dir: &Path, who: &str, port: u16) -> anyhow::Result<LdkConfig> {
    let (host, rpc_port, user, password) = lab.chain.rpc_credentials();
    Ok(LdkConfig {
        data_dir: dir.join(who).join("ldk"),
        network: Network::Regtest,
        listen: Some(format!("127.0.0.1:{port}").parse()?),
        chain: LdkChainSource::BitcoindRpc {
            host,
            port: rpc_port,
            user,
            password,
        },
    })
}

/// One swap as the run saw it.
#[derive(Clone, Debug)]
struct Seen {
    client: usize,
    kind: &'static str,
    took: Option<Duration>,
}

/// The counters a run prints.
#[derive(Default)]
struct Counts {
    asked: AtomicUsize,
    refused: AtomicUsize,
    kills: AtomicUsize,
    reorgs: AtomicUsize,
    blocks: AtomicUsize,
    reopened: AtomicUsize,
    /// Processes killed and not yet started again.
    down: AtomicUsize,
    /// 1 while the reopener runs its own node.
    reopening: AtomicUsize,
    /// Sat pushed to the server by each client's reopened channels (a transfer between parties
    /// the per-party accounting must see).
    pushed: Mutex<HashMap<usize, u64>>,
}

/// Wall-clock limit of the small run under `cargo test` (it takes ~30 s).
const SMALL_RUN_LIMIT_SECS: u64 = 600;

fn main() -> anyhow::Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let plan = Plan::new(bench);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    if std::env::var_os("EDDY_TEST_KEEP").is_some() {
        eprintln!("soak: data dirs and logs in {}", dir.display());
        std::mem::forget(tmp);
    }
    if !bench {
        // The small run is part of the test command: fail, never hang (a panic in an LDK
        // thread of the harness's own nodes once left it waiting).
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(SMALL_RUN_LIMIT_SECS));
            eprintln!("soak: the small run took more than {SMALL_RUN_LIMIT_SECS} s");
            std::process::exit(2);
        });
    }
    let out = run(&plan, &dir)?;
    println!("{out}");
    if !bench {
        // The figures that must be zero, also in the small run `cargo test` makes.
        if out["stuck"] != 0
            || out["unaccounted_sat"] != 0
            || out["parties_unaccounted"] != 0
            || out["unattributed_txs"] != 0
            || out["swaps_value_wrong"] != 0
            || out["sides_disagree"] != 0
            || out["started"] == 0
        {
            bail!("soak failed: {out}");
        }
    }
    Ok(())
}

fn run(plan: &Plan, dir: &Path) -> anyhow::Result<Value> {
    let lab = Arc::new(Lab::start(LabConfig::new(dir, 0))?);
    let (rt, chain) = eddy::demo::runtime_and_chain(&lab)?;
    let (_, _, user, password) = lab.chain.rpc_credentials();
    let port = || eddy_lab::LabChain::free_port_pub().map_err(|e| anyhow!("{e}"));
    let ln_ports: Vec<u16> = (0..=plan.clients).map(|_| port()).collect::<Result<_, _>>()?;
    let api_ports: Vec<u16> = (0..=plan.clients).map(|_| port()).collect::<Result<_, _>>()?;
    let metrics_port = port()?;
    let who = |i: usize| {
        if i == 0 {
            "server".to_string()
        } else {
            format!("client{i}")
        }
    };

    // Nodes: the server's, with a channel to each client's; clients funded on-chain for loop-ins.
    let start_node = |i: usize| -> anyhow::Result<Arc<LdkNode>> {
        Ok(Arc::new(rt.block_on(LdkNode::start(
            ldk_config(&lab, dir, &who(i), ln_ports[i])?,
            chain.clone(),
        ))?))
    };
    let nodes: Vec<Arc<LdkNode>> = (0..=plan.clients).map(start_node).collect::<Result<_, _>>()?;
    let tip = || lab.chain.tip().map(|t| t.0).map_err(|e| anyhow!("{e}"));
    let sync_all = |nodes: &[Arc<LdkNode>]| -> anyhow::Result<()> {
        let t = lab.chain.tip().map_err(|e| anyhow!("{e}"))?;
        for n in nodes {
            eddy_lab::wait_synced(n.ldk(), t, WAIT).map_err(|e| anyhow!("{e}"))?;
            let _ = n.ldk().sync_wallets();
        }
        Ok(())
    };
    let server_fund = (CHANNEL_SAT + 100_000) * plan.clients as u64;
    let addr = rt.block_on(nodes[0].new_address())?;
    lab.chain
        .fund(&addr, Amount::from_sat(server_fund))
        .map_err(|e| anyhow!("{e}"))?;
    // Clients: several coins each, so that loop-ins need not wait for change to confirm.
    let client_coins = (plan.swaps / plan.clients / 2 / 4).clamp(2, 40);
    for n in &nodes[1..] {
        for _ in 0..client_coins {
            let a = rt.block_on(n.new_address())?;
            lab.chain
                .fund(&a, Amount::from_sat(300_000))
                .map_err(|e| anyhow!("{e}"))?;
        }
    }
    // The server's swap wallet (derived from the seed it will find in its data dir).
    std::fs::create_dir_all(dir.join("server"))?;
    let seed = eddy_store::SeedKeys::load_or_create(&dir.join("server"), eddy_server::SEED_FILE)?;
    let wallet = eddy_server::wallet::SwapWallet::new(&seed, Network::Regtest);
    let wallet_spk = wallet.script_pubkey().clone();
    let wallet_from = tip()? + 1;
    let wallet_coins = (plan.swaps / 2 / 5).clamp(3, 60);
    for _ in 0..wallet_coins {
        lab.chain
            .fund(wallet.address(), Amount::from_sat(1_000_000))
            .map_err(|e| anyhow!("{e}"))?;
    }
    lab.chain.mine(1).map_err(|e| anyhow!("{e}"))?;
    sync_all(&nodes)?;
    for i in 1..=plan.clients {
        let c_addr = nodes[i]
            .ldk()
            .listening_addresses()
            .and_then(|a| a.first().cloned())
            .ok_or_else(|| anyhow!("client not listening"))?;
        lab.open_channel_between(
            nodes[0].ldk(),
            nodes[i].ldk(),
            c_addr,
            Amount::from_sat(CHANNEL_SAT),
            PUSH_SAT * 1000,
        )
        .map_err(|e| anyhow!("{e}"))?;
    }
    sync_all(&nodes)?;
    let start_height = tip()?;
    let server_id = nodes[0].ldk().node_id();
    let server_addr = nodes[0]
        .ldk()
        .listening_addresses()
        .and_then(|a| a.first().cloned())
        .ok_or_else(|| anyhow!("server not listening"))?;
    let (start_nodes, start_channels) = balances(&nodes);
    let start_wallet = wallet_balance(&lab, &wallet_spk, wallet_from)?;
    // What every channel's commitment holds back for fees and anchors (identical channels).
    let held_per_channel = (CHANNEL_SAT * plan.clients as u64).saturating_sub(start_nodes.1) / plan.clients as u64;
    let start_parties = party_totals(&nodes, start_wallet, held_per_channel);
    for n in &nodes {
        rt.block_on(n.stop())?;
    }
    drop(nodes);

    // The daemons' configuration.
    let common = |i: usize| {
        [
            "network = \"regtest\"".to_string(),
            format!("data_dir = \"{}\"", dir.join(who(i)).display()),
            format!("listen = \"127.0.0.1:{}\"", api_ports[i]),
            format!("bitcoind_url = \"{}\"", lab.chain.url()),
            format!("bitcoind_user = \"{user}\""),
            format!("bitcoind_password = \"{password}\""),
            format!("ldk_listen = \"127.0.0.1:{}\"", ln_ports[i]),
        ]
        .join("\n")
    };
    let server_toml = dir.join("server.toml");
    std::fs::write(
        &server_toml,
        common(0)
            + &format!(
                "\nlog_format = \"json\"\nbase_fee_sat = {SERVER_BASE_FEE_SAT}\nfee_ppm = {SERVER_FEE_PPM}\nprepay_sat = {SERVER_PREPAY_SAT}\nexpiry_delta = 80\n"
            )
            + &format!(
                "metrics_listen = \"127.0.0.1:{metrics_port}\"\nadmin_listen = \"127.0.0.1:0\"\nrate_limit_per_minute = 100000\nmax_active_swaps = {}\n",
                plan.concurrency + 10
            ),
    )?;
    let server_url = format!("http://127.0.0.1:{}", api_ports[0]);
    let mut procs = vec![Daemon {
        what: "server",
        config: server_toml,
        log: dir.join("server.log"),
        env: vec![("EDDY_WALLET_RESCAN_FROM".into(), wallet_from.to_string())],
        proc: Mutex::new(None),
        url: server_url.clone(),
        token: Mutex::new(None),
        data_dir: dir.join("server"),
        maint: Mutex::new(()),
    }];
    for (i, api) in api_ports.iter().enumerate().skip(1) {
        let toml = dir.join(format!("{}.toml", who(i)));
        std::fs::write(&toml, common(i) + "\nmax_swap_fee_sat = 5000\nmax_prepay_sat = 2000\n")?;
        procs.push(Daemon {
            what: "daemon",
            config: toml,
            log: dir.join(format!("{}.log", who(i))),
            env: vec![("EDDY_SERVER_URL".into(), server_url.clone())],
            proc: Mutex::new(None),
            url: format!("http://127.0.0.1:{api}"),
            token: Mutex::new(None),
            data_dir: dir.join(who(i)),
            maint: Mutex::new(()),
        });
    }
    let procs = Arc::new(procs);
    for p in procs.iter() {
        p.start()?;
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
    for p in &procs[1..] {
        wait_channel_usable(&rt, &http, p)?;
    }

    let counts = Arc::new(Counts::default());
    let stop_mining = Arc::new(AtomicBool::new(false));
    let miner = {
        let (lab, counts, stop, plan) = (lab.clone(), counts.clone(), stop_mining.clone(), *plan);
        std::thread::spawn(move || {
            let mut rng = rand::thread_rng();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs_f64(plan.block_secs));
                if lab.chain.mine(1).is_err() {
                    continue;
                }
                let n = counts.blocks.fetch_add(1, Ordering::Relaxed) + 1;
                // The reopener's own node (a harness part, not Eddy's) never sees a reorg while
                // it runs; killed daemons do in the full run.
                let down = counts.down.load(Ordering::Relaxed);
                let reopening = counts.reopening.load(Ordering::Relaxed);
                if n % plan.reorg_every as usize == 0 && reopening == 0 && (plan.reorg_while_down || down == 0) {
                    let depth = rng.gen_range(1..=3u32);
                    match lab.chain.reorg(depth, 1, &[], &[]) {
                        Ok(_) => {
                            counts.reorgs.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => eprintln!("soak: reorg of {depth} failed: {e}"),
                    }
                }
            }
        })
    };

    // The swaps: `concurrency` workers take the next number until all are asked for.
    let seen: Arc<Mutex<HashMap<(usize, String), Seen>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let run_start = Instant::now();
    let workers: Vec<_> = (0..plan.concurrency)
        .map(|_| {
            let (procs, http, seen, done, next, counts, plan) = (
                procs.clone(),
                http.clone(),
                seen.clone(),
                done.clone(),
                next.clone(),
                counts.clone(),
                *plan,
            );
            rt.spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= plan.swaps {
                        return;
                    }
                    let first = 1 + n % plan.clients;
                    let kind = if (n / plan.clients) % 2 == 0 { "out" } else { "in" };
                    let amount = rand::thread_rng().gen_range(AMOUNTS);
                    counts.asked.fetch_add(1, Ordering::Relaxed);
                    match create(&http, &procs, first, kind, amount).await {
                        Some((client, id)) => {
                            let d = &procs[client];
                            let started = Instant::now();
                            lock(&seen).insert(
                                (client, id.clone()),
                                Seen {
                                    client,
                                    kind,
                                    took: None,
                                },
                            );
                            follow(&http, d, &id).await;
                            if let Some(s) = lock(&seen).get_mut(&(client, id)) {
                                s.took = Some(started.elapsed());
                            }
                        }
                        None => {
                            counts.refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // The killer: `kills` times, spread over the run (each when another share of the swaps has
    // ended, plus a random 0–5 s), the server and a random client daemon are SIGKILLed (the
    // client a random 0–2 s after the server), and each is restarted after a random 0–3 s.
    let killer = {
        let (procs, done, counts, plan) = (procs.clone(), done.clone(), counts.clone(), *plan);
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut rng = rand::thread_rng();
            for k in 0..plan.kills {
                let at = (k + 1) * plan.swaps / (plan.kills + 1);
                while done.load(Ordering::Relaxed) < at {
                    std::thread::sleep(Duration::from_millis(200));
                }
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..5_000)));
                let client = rng.gen_range(1..=plan.clients);
                let _busy = lock(&procs[client].maint);
                counts.down.fetch_add(1, Ordering::Relaxed);
                procs[0].kill9();
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..2_000)));
                procs[client].kill9();
                counts.kills.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..3_000)));
                procs[0].start()?;
                procs[client].start()?;
                counts.down.fetch_sub(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };
    // The reopener: a client daemon left without any channel (ldk-node force-closes channels
    // whose manager was persisted behind their monitors when a process is killed — measured
    // before, see docs/measured.md) is stopped, its node opens a new channel to the server
    // (pushing half, so that loop-ins have inbound), and the daemon is started again.
    let stop_reopening = Arc::new(AtomicBool::new(false));
    let reopener = {
        let (procs, counts, stop) = (procs.clone(), counts.clone(), stop_reopening.clone());
        let (lab, chain, dir, ln_ports) = (lab.clone(), chain.clone(), dir.to_path_buf(), ln_ports.clone());
        let server_addr = server_addr.clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            // A client of this thread's runtime (a pooled connection belongs to the runtime
            // that opened it).
            let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
            // A client whose reopening failed (its wallet short) is left alone for a while.
            let mut retry_after = vec![Instant::now(); procs.len()];
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(3));
                for (c, d) in procs.iter().enumerate().skip(1) {
                    if Instant::now() < retry_after[c] {
                        continue;
                    }
                    let node = rt.block_on(get(&http, d, "/v1/node"));
                    let none = node
                        .as_ref()
                        .and_then(|v| v["channels"].as_array().map(Vec::is_empty))
                        .unwrap_or(false);
                    if !none || stop.load(Ordering::Relaxed) {
                        continue;
                    }
                    let _busy = lock(&d.maint);
                    counts.reopening.store(1, Ordering::Relaxed);
                    d.terminate();
                    let n = rt.block_on(LdkNode::start(
                        ldk_config(&lab, &dir, &format!("client{c}"), ln_ports[c])?,
                        chain.clone(),
                    ))?;
                    // As large as the wallet allows (the force-closed channel's funds come
                    // back only after its delay), up to the first channels' size; any size
                    // holds the same commitment reserve (no HTLC, same fee rate).
                    let _ = n.ldk().sync_wallets();
                    let spendable = n.ldk().list_balances().spendable_onchain_balance_sats;
                    let capacity = spendable.saturating_sub(50_000).min(CHANNEL_SAT);
                    let opened = if capacity < 500_000 {
                        Err(format!("only {spendable} sat spendable"))
                    } else {
                        n.ldk()
                            .open_channel(
                                server_id,
                                server_addr.clone(),
                                capacity,
                                Some(capacity / 2 * 1000),
                                None,
                            )
                            .map_err(|e| format!("{e:?}"))
                    };

                    match opened {
                        Ok(_) => {
                            let ok = eddy_lab::wait_until("reopened channel usable", Duration::from_secs(180), || {
                                n.ldk().list_channels().iter().any(|ch| ch.is_usable)
                            });
                            if ok.is_ok() {
                                // The push happened with the channel (an open the peer dropped
                                // before funding pushes nothing).
                                *lock(&counts.pushed).entry(c).or_default() += capacity / 2;
                                counts.reopened.fetch_add(1, Ordering::Relaxed);
                            } else {
                                eprintln!("soak: client{c}: the reopened channel never became usable");
                            }
                        }
                        Err(e) => {
                            eprintln!("soak: client{c}: reopening a channel failed: {e}");
                            retry_after[c] = Instant::now() + Duration::from_secs(60);
                        }
                    }
                    rt.block_on(n.stop())?;
                    drop(n);
                    d.start()?;
                    counts.reopening.store(0, Ordering::Relaxed);
                }
            }
            Ok(())
        })
    };
    for w in workers {
        rt.block_on(w)?;
    }
    killer.join().map_err(|_| anyhow!("killer panicked"))??;
    stop_reopening.store(true, Ordering::Relaxed);
    reopener.join().map_err(|_| anyhow!("reopener panicked"))??;
    let run_secs = run_start.elapsed().as_secs_f64();

    // Every swap any daemon knows (a creation cut by a kill may exist without its answer) must
    // end; the server's must end too.
    let settle_deadline = Instant::now() + Duration::from_secs(900);
    let mut all: Vec<(usize, Value)>;
    loop {
        all = Vec::new();
        for (i, d) in procs.iter().enumerate().skip(1) {
            if let Some(list) = rt.block_on(get(&http, d, "/v1/swaps")) {
                for s in list.as_array().cloned().unwrap_or_default() {
                    all.push((i, s));
                }
            }
        }
        let open = all.iter().filter(|(_, s)| s["terminal"] != true).count();
        // Loop-outs and loop-ins: a loop-in the client counts succeeded (its invoice paid) is
        // still the server's until its claim confirms.
        let server_active = ["eddy_server_loop_out_active", "eddy_server_loop_in_active"]
            .iter()
            .map(|m| rt.block_on(metric(&http, metrics_port, m)).unwrap_or(1))
            .sum::<u64>();
        if open == 0 && server_active == 0 || Instant::now() > settle_deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let rss_kib = lock(&procs[0].proc).as_ref().map_or(0, |p| p.rss_kib());
    stop_mining.store(true, Ordering::Relaxed);
    miner.join().map_err(|_| anyhow!("miner panicked"))?;
    for p in procs.iter() {
        p.terminate();
    }
    let store_bytes: u64 = std::fs::read_dir(dir.join("server"))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("server.sqlite"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let server_all = rt.block_on(async {
        let store = eddy_store::SqliteStore::open(&dir.join("server").join("server.sqlite")).await?;
        eddy_store::SwapStore::list(&store, eddy_store::ListFilter::All).await
    })?;
    let server_open: Vec<_> = server_all.iter().filter(|r| !r.terminal).collect();
    // Per swap, the two sides must agree on whether it succeeded: a client that claimed a
    // loop-out (or got a loop-in paid) while the server did not end `succeeded`, or the other
    // way round, is one party paid without paying — a loss the sums over all parties cannot show.
    let server_succeeded: HashMap<String, bool> = server_all
        .iter()
        .map(|r| (r.id.to_string(), r.state_name == "succeeded"))
        .collect();
    let disagree: Vec<String> = all
        .iter()
        .filter_map(|(_, s)| {
            let id = s["id"].as_str()?;
            let client = s["state"] == "succeeded";
            let server = server_succeeded.get(id).copied().unwrap_or(false);
            (client != server).then(|| format!("{id}: client {} / server {}", s["state"], server))
        })
        .collect();
    for d in &disagree {
        eprintln!("soak: sides disagree: {d}");
    }

    // The money, from the outside: every node opened again here, the chain mined until nothing
    // is pending.
    let nodes: Vec<Arc<LdkNode>> = (0..=plan.clients).map(start_node).collect::<Result<_, _>>()?;
    // Until nothing is pending and every force-closed channel is resolved: its HTLCs timed out
    // or claimed and its delayed outputs swept (LDK counts an unresolved HTLC in neither
    // side's balance, or in both), at most ~500 blocks.
    let mut quiet = 0;
    for _ in 0..500 {
        sync_all(&nodes)?;
        let pending: Vec<Value> = lab.chain.rpc("getrawmempool", json!([])).map_err(|e| anyhow!("{e}"))?;
        let unresolved = nodes.iter().any(|n| {
            n.ldk()
                .list_balances()
                .lightning_balances
                .iter()
                .any(|b| !matches!(b, ldk_node::LightningBalance::ClaimableOnChannelClose { .. }))
        });
        if pending.is_empty() && !unresolved {
            quiet += 1;
            if quiet >= 3 {
                break;
            }
        } else {
            quiet = 0;
        }
        lab.chain.mine(1).map_err(|e| anyhow!("{e}"))?;
        std::thread::sleep(Duration::from_millis(if pending.is_empty() { 100 } else { 500 }));
    }
    sync_all(&nodes)?;
    let (end_nodes, end_channels) = balances(&nodes);
    let end_wallet = wallet_balance(&lab, &wallet_spk, wallet_from)?;
    let (fees, anchors_left) = chain_costs(&lab, start_height)?;
    let end_parties = party_totals(&nodes, end_wallet, held_per_channel);
    let htlc_spks: HashSet<ScriptBuf> = all
        .iter()
        .filter_map(|(_, s)| s["htlc_address"].as_str())
        .filter_map(|a| a.parse::<bitcoin::Address<_>>().ok())
        .map(|a| a.assume_checked().script_pubkey())
        .collect();
    let pushed = lock(&counts.pushed).clone();
    let parties = per_party(&lab, &nodes, start_height, &wallet_spk, &htlc_spks, &pushed)?;
    let per_party_json: Vec<Value> = parties
        .flows
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let observed = start_parties[i] - end_parties[i];
            json!({
                "party": who(i),
                "start_sat": start_parties[i],
                "end_sat": end_parties[i],
                "miner_fees_sat": f.fees,
                "onchain_locked_sat": f.escrow_out,
                "onchain_taken_sat": f.escrow_in,
                "ln_sent_sat": f.ln_out_msat / 1000,
                "ln_fees_sat": f.ln_fee_msat / 1000,
                "ln_received_sat": f.ln_in_msat / 1000,
                "pushed_sat": f.pushed_out - f.pushed_in,
                "unaccounted_sat": observed - f.explained_sat(),
            })
        })
        .collect();
    let value_wrong = rt.block_on(swap_values(dir, plan.clients, &parties))?;
    let parties_unaccounted = per_party_json.iter().filter(|p| p["unaccounted_sat"] != 0).count();
    for n in &nodes {
        rt.block_on(n.stop())?;
    }
    // Every open channel holds `held_per_channel` outside both sides' balances (its commitment's
    // fee and anchors): at the start for the channels then open, at the end for those open then
    // (a channel closed meanwhile paid it out as miner fees and anchors, counted on-chain).
    let start_total = start_nodes.0 + start_nodes.1 + start_wallet + start_channels as u64 * held_per_channel;
    let end_total = end_nodes.0 + end_nodes.1 + end_wallet + end_channels as u64 * held_per_channel;
    let reopened = counts.reopened.load(Ordering::Relaxed);
    let closed = (start_channels + reopened).saturating_sub(end_channels);
    let unaccounted = start_total as i128 - end_total as i128 - fees as i128 - anchors_left as i128;

    let mut by_state: HashMap<String, usize> = HashMap::new();
    for (_, s) in &all {
        *by_state
            .entry(s["state"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let stuck = all.iter().filter(|(_, s)| s["terminal"] != true).count() + server_open.len();
    let seen = lock(&seen).clone();
    let mut took: Vec<f64> = seen.values().filter_map(|s| s.took).map(|d| d.as_secs_f64()).collect();
    took.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if took.is_empty() {
            return 0.0;
        }
        let i = ((took.len() as f64 * p).ceil() as usize).clamp(1, took.len()) - 1;
        (took[i] * 10.0).round() / 10.0
    };
    let known: HashSet<(usize, String)> = all
        .iter()
        .map(|(i, s)| (*i, s["id"].as_str().unwrap_or_default().to_string()))
        .collect();
    let answered_not_listed = seen.keys().filter(|k| !known.contains(k)).count();
    let loop_outs = seen.values().filter(|s| s.kind == "out").count();
    let per_client: Vec<usize> = (1..=plan.clients)
        .map(|c| seen.values().filter(|s| s.client == c).count())
        .collect();
    Ok(json!({
        "bench": "soak",
        "swaps_asked": counts.asked.load(Ordering::Relaxed),
        "refused_at_creation": counts.refused.load(Ordering::Relaxed),
        "started": all.len(),
        "answered_but_not_listed": answered_not_listed,
        "loop_outs": loop_outs,
        "loop_ins": seen.len() - loop_outs,
        "per_client": per_client,
        "by_state": by_state,
        "succeeded": by_state.get("succeeded").copied().unwrap_or(0),
        "refunded": by_state.get("refunded").copied().unwrap_or(0),
        "stuck": stuck,
        "stuck_on_server": server_open.len(),
        "sides_disagree": disagree.len(),
        "unaccounted_sat": unaccounted,
        "miner_fees_sat": fees,
        "anchors_left_sat": anchors_left,
        "parties_unaccounted": parties_unaccounted,
        "unattributed_txs": parties.unattributed.len(),
        "swaps_value_wrong": value_wrong,
        "per_party": per_party_json,
        "channels_force_closed": closed,
        "channels_reopened": reopened,
        "swap_secs_p50": pct(0.5),
        "swap_secs_p99": pct(0.99),
        "run_secs": (run_secs * 10.0).round() / 10.0,
        "kill_rounds_server_and_client": counts.kills.load(Ordering::Relaxed),
        "reorgs": counts.reorgs.load(Ordering::Relaxed),
        "blocks": counts.blocks.load(Ordering::Relaxed),
        "server_rss_mib": rss_kib / 1024,
        "server_store_kib": store_bytes / 1024,
        "concurrency": plan.concurrency,
        "clients": plan.clients,
    }))
}

/// (Lightning, on-chain) sat summed over `nodes`, and their channels.
fn balances(nodes: &[Arc<LdkNode>]) -> ((u64, u64), usize) {
    let mut ln = 0;
    let mut chain = 0;
    let mut channels = 0;
    for (i, n) in nodes.iter().enumerate() {
        let (l, c, _) = node_money(n);
        ln += l;
        chain += c;
        if i > 0 {
            channels += n.ldk().list_channels().iter().filter(|c| funded(c)).count();
        }
    }
    ((chain, ln), channels)
}

/// Whether a channel's funding transaction is on the chain (a channel whose funding never
/// confirmed — its opener killed before broadcasting it — holds no money: LDK still counts
/// its balances, while the coins are still in the opener's wallet).
fn funded(c: &ldk_node::ChannelDetails) -> bool {
    c.confirmations.unwrap_or(0) > 0
}

/// A node's (Lightning, on-chain) sat, its Lightning side without channels whose funding never
/// confirmed, and how many funded channels it opened.
fn node_money(n: &LdkNode) -> (u64, u64, u64) {
    let channels = n.ldk().list_channels();
    let unfunded: HashSet<_> = channels.iter().filter(|c| !funded(c)).map(|c| c.channel_id).collect();
    let b = n.ldk().list_balances();
    let phantom: u64 = b
        .lightning_balances
        .iter()
        .map(|l| match l {
            ldk_node::LightningBalance::ClaimableOnChannelClose {
                channel_id,
                amount_satoshis,
                ..
            } if unfunded.contains(channel_id) => *amount_satoshis,
            _ => 0,
        })
        .sum();
    let opened = channels.iter().filter(|c| c.is_outbound && funded(c)).count() as u64;
    (
        b.total_lightning_balance_sats - phantom,
        b.total_onchain_balance_sats,
        opened,
    )
}

/// Each party's total (index 0 the server, then the clients): its node's Lightning and on-chain
/// balance, what each open channel it funded holds outside both balances, and for the server
/// its swap wallet.
fn party_totals(nodes: &[Arc<LdkNode>], wallet: u64, held_per_channel: u64) -> Vec<i128> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (ln, chain, opened) = node_money(n);
            let own = ln + chain + opened * held_per_channel;
            (own + if i == 0 { wallet } else { 0 }) as i128
        })
        .collect()
}

/// What moved in and out of one party during the run.
#[derive(Clone, Debug, Default)]
struct Flows {
    /// Miner fees of the transactions it made (see [`per_party`]).
    fees: i128,
    /// Sat it locked in swap HTLCs and anchors (outputs no wallet holds).
    escrow_out: i128,
    /// Sat it took out of such outputs (a claim, a refund, an anchor spent).
    escrow_in: i128,
    ln_out_msat: i128,
    ln_fee_msat: i128,
    ln_in_msat: i128,
    pushed_out: i128,
    pushed_in: i128,
}

impl Flows {
    /// What these flows say the party lost, in sat.
    fn explained_sat(&self) -> i128 {
        let ln = self.ln_out_msat + self.ln_fee_msat - self.ln_in_msat;
        self.fees + self.escrow_out - self.escrow_in + ln / 1000 + self.pushed_out - self.pushed_in
    }
}

/// The per-party flows and the transactions no party could be named for.
struct PartyFlows {
    flows: Vec<Flows>,
    unattributed: Vec<bitcoin::Txid>,
    /// Per (HTLC script, party): sat taken out of that swap's HTLCs less sat locked in them.
    htlc_net: HashMap<(ScriptBuf, usize), i128>,
    /// Per (payment hash, party): msat received less msat sent (and fees) under that hash.
    ln_net_msat: HashMap<([u8; 32], usize), i128>,
}

/// What an output is, for the per-party accounting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Out {
    /// A wallet coin (a node's, or anything else not below).
    Plain,
    /// The server's swap wallet.
    SwapWallet,
    /// A swap HTLC.
    Htlc,
    /// A channel's funding output (P2WSH made from wallet coins).
    Funding,
    /// A P2WSH output of a channel's closing, commitment or second-stage transaction.
    ChannelScript,
    /// A commitment's 330-sat anchor.
    Anchor,
}

/// Per-party accounting from the outside: every transaction of the active chain above `start`
/// is given to one party, who paid its miner fee —
/// 1. one spending a channel's funding output (a commitment or a close): the channel's funder;
/// 2. one spending a swap-wallet coin: the server;
/// 3. one a single node's wallet lists (ldk-node records every wallet transaction): that node;
/// 4. one paying the swap wallet: the server.
///
/// Value moves between parties only through outputs no wallet holds (swap HTLCs, anchors):
/// whoever made one locked its value, whoever spent one took it. Lightning payments are read
/// from each node's payment store (succeeded ones), and channel pushes from the reopener. A
/// party's `start − end` must equal its fees + locked − taken + sent − received + pushed.
fn per_party(
    lab: &Lab,
    nodes: &[Arc<LdkNode>],
    start: u32,
    wallet_spk: &ScriptBuf,
    htlc_spks: &HashSet<ScriptBuf>,
    pushed: &HashMap<usize, u64>,
) -> anyhow::Result<PartyFlows> {
    use ldk_node::payment::{PaymentDirection, PaymentKind, PaymentStatus};
    let mut flows = vec![Flows::default(); nodes.len()];
    let mut htlc_net: HashMap<(ScriptBuf, usize), i128> = HashMap::new();
    let mut ln_net_msat: HashMap<([u8; 32], usize), i128> = HashMap::new();
    let mut listed: HashMap<bitcoin::Txid, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for p in n.ldk().list_payments() {
            match p.kind {
                PaymentKind::Onchain { txid, .. } => listed.entry(txid).or_default().push(i),
                ref kind if p.status == PaymentStatus::Succeeded => {
                    let amount = p.amount_msat.unwrap_or(0) as i128;
                    let net = match p.direction {
                        PaymentDirection::Inbound => {
                            flows[i].ln_in_msat += amount;
                            amount
                        }
                        PaymentDirection::Outbound => {
                            let fee = p.fee_paid_msat.unwrap_or(0) as i128;
                            flows[i].ln_out_msat += amount;
                            flows[i].ln_fee_msat += fee;
                            -amount - fee
                        }
                    };
                    let hash = match kind {
                        PaymentKind::Bolt11 { hash, .. }
                        | PaymentKind::Bolt11Jit { hash, .. }
                        | PaymentKind::Spontaneous { hash, .. } => Some(hash.0),
                        _ => None,
                    };
                    if let Some(h) = hash {
                        *ln_net_msat.entry((h, i)).or_default() += net;
                    }
                }
                _ => {}
            }
        }
    }
    for (c, sat) in pushed {
        flows[*c].pushed_out += *sat as i128;
        flows[0].pushed_in += *sat as i128;
    }
    let mut outs: HashMap<bitcoin::OutPoint, (u64, Out, Option<usize>, ScriptBuf)> = HashMap::new();
    let mut unattributed = Vec::new();
    let mut txs = Vec::new();
    for_each_tx(lab, 1, |tx, fee, h| txs.push((tx.clone(), fee, h)))?;
    for (tx, fee, h) in &txs {
        let txid = tx.compute_txid();
        let ins: Vec<(u64, Out, Option<usize>, ScriptBuf)> = if tx.is_coinbase() {
            Vec::new()
        } else {
            tx.input
                .iter()
                .map(|i| {
                    outs.remove(&i.previous_output)
                        .unwrap_or((0, Out::Plain, None, ScriptBuf::new()))
                })
                .collect()
        };
        let pays_wallet = tx.output.iter().any(|o| &o.script_pubkey == wallet_spk);
        let owner = if let Some((_, _, f, _)) = ins.iter().find(|(_, c, _, _)| *c == Out::Funding) {
            *f
        } else if ins.iter().any(|(_, c, _, _)| *c == Out::SwapWallet) {
            Some(0)
        } else if let Some([one]) = listed.get(&txid).map(Vec::as_slice) {
            Some(*one)
        } else if pays_wallet && !listed.contains_key(&txid) {
            Some(0)
        } else if !ins.is_empty() && ins.iter().all(|(_, c, _, _)| *c == Out::Anchor) {
            // Anchors swept into fees by anyone (after their 16 blocks): their funder's 330 sat
            // went to the miner.
            ins.first().and_then(|(_, _, o, _)| *o)
        } else {
            None
        };
        let channel = ins
            .iter()
            .any(|(_, c, _, _)| matches!(c, Out::Funding | Out::ChannelScript));
        let counted = *h > start && !tx.is_coinbase();
        if counted {
            match owner {
                Some(o) => {
                    flows[o].fees += *fee as i128;
                    for (v, c, _, spk) in &ins {
                        if matches!(c, Out::Htlc | Out::Anchor) {
                            flows[o].escrow_in += *v as i128;
                        }
                        if *c == Out::Htlc {
                            *htlc_net.entry((spk.clone(), o)).or_default() += *v as i128;
                        }
                    }
                }
                None => {
                    eprintln!(
                        "soak: no party made {txid} (height {h}, fee {fee}): inputs {:?}, outputs {:?}, listed by {:?}",
                        ins.iter().map(|(v, c, o, _)| (*v, *c, *o)).collect::<Vec<_>>(),
                        tx.output
                            .iter()
                            .map(|o| (o.value.to_sat(), o.script_pubkey.is_p2wsh()))
                            .collect::<Vec<_>>(),
                        listed.get(&txid)
                    );
                    unattributed.push(txid)
                }
            }
        }
        for (n, o) in tx.output.iter().enumerate() {
            let v = o.value.to_sat();
            let class = if &o.script_pubkey == wallet_spk {
                Out::SwapWallet
            } else if htlc_spks.contains(&o.script_pubkey) {
                Out::Htlc
            } else if o.script_pubkey.is_p2wsh() {
                match (channel, v) {
                    (true, 330) => Out::Anchor,
                    (true, _) => Out::ChannelScript,
                    (false, _) => Out::Funding,
                }
            } else {
                Out::Plain
            };
            if counted && matches!(class, Out::Htlc | Out::Anchor) {
                if let Some(p) = owner {
                    flows[p].escrow_out += v as i128;
                    if class == Out::Htlc {
                        *htlc_net.entry((o.script_pubkey.clone(), p)).or_default() -= v as i128;
                    }
                }
            }
            outs.insert(
                bitcoin::OutPoint::new(txid, n as u32),
                (v, class, owner, o.script_pubkey.clone()),
            );
        }
    }
    Ok(PartyFlows {
        flows,
        unattributed,
        htlc_net,
        ln_net_msat,
    })
}

/// Per swap, from each client daemon's store: what the server got out of it (Lightning payments
/// under its hashes, sat taken out of its HTLC less sat locked in it) must be what its terms
/// say — the swap fee when it succeeded (a loop-out's invoice and prepay less the HTLC amount, a
/// loop-in's HTLC amount less the invoice), the prepay when a loop-out failed after the client
/// paid it, nothing otherwise — and the client must have lost exactly that. Returns how many
/// swaps do not (each printed).
async fn swap_values(dir: &Path, clients: usize, parties: &PartyFlows) -> anyhow::Result<usize> {
    use eddy_store::{SwapKind, SwapStore};
    // The server's fee policy as configured for this run (server.toml), not as offered: a server
    // charging more than its terms is caught here, not only one whose money disagrees with its
    // own offer.
    // The advertised rate, rounded up to the satoshi (as `eddy_core::fees::FeePolicy` does).
    let fee = |amount: bitcoin::Amount| -> i128 {
        SERVER_BASE_FEE_SAT as i128 + (amount.to_sat() as i128 * SERVER_FEE_PPM as i128 + 999_999) / 1_000_000
    };
    let hash_of = |bolt11: &str| -> anyhow::Result<[u8; 32]> {
        let inv: lightning_invoice::Bolt11Invoice = bolt11.parse().map_err(|e| anyhow!("{e:?}"))?;
        Ok(*inv.payment_hash().as_ref())
    };
    let mut wrong = 0;
    for c in 1..=clients {
        let store = eddy_store::SqliteStore::open(&dir.join(format!("client{c}")).join("client.sqlite")).await?;
        for r in store.list(eddy_store::ListFilter::All).await? {
            let (hashes, htlc_address, expected) = match r.kind {
                SwapKind::LoopOutClient => {
                    let rec: eddy_client::loop_out::ClientLoopOut = serde_json::from_value(r.state.clone())?;
                    let sat = |i: &str| -> anyhow::Result<i128> {
                        let inv: lightning_invoice::Bolt11Invoice = i.parse().map_err(|e| anyhow!("{e:?}"))?;
                        Ok(inv.amount_milli_satoshis().unwrap_or(0) as i128 / 1000)
                    };
                    let prepay_invoice = rec.offer.prepay_invoice.as_deref().unwrap_or_default();
                    let prepay = hash_of(prepay_invoice)?;
                    let prepay_paid = parties.ln_net_msat.get(&(prepay, c)).copied().unwrap_or(0) < 0;
                    let prepay_sat = sat(prepay_invoice)?;
                    if sat(&rec.offer.swap_invoice)? + prepay_sat - rec.terms.amount.to_sat() as i128
                        != fee(rec.terms.amount)
                        || prepay_sat != SERVER_PREPAY_SAT as i128
                    {
                        eprintln!("soak: swap {} was offered at other terms than the server's", r.id);
                        wrong += 1;
                    }
                    let expected = match r.state_name.as_str() {
                        "succeeded" => fee(rec.terms.amount),
                        _ if prepay_paid => prepay_sat,
                        _ => 0,
                    };
                    let hashes = vec![hash_of(&rec.offer.swap_invoice)?, prepay];
                    (hashes, rec.offer.htlc_address.clone(), expected)
                }
                SwapKind::LoopInClient => {
                    let rec: eddy_client::loop_in::ClientLoopIn = serde_json::from_value(r.state.clone())?;
                    let inv: lightning_invoice::Bolt11Invoice = rec.invoice.parse().map_err(|e| anyhow!("{e:?}"))?;
                    if rec.terms.amount.to_sat() as i128 - inv.amount_milli_satoshis().unwrap_or(0) as i128 / 1000
                        != fee(rec.terms.amount)
                    {
                        eprintln!("soak: swap {} was offered at other terms than the server's", r.id);
                        wrong += 1;
                    }
                    let expected = match r.state_name.as_str() {
                        "succeeded" => fee(rec.terms.amount),
                        _ => 0,
                    };
                    (
                        vec![*inv.payment_hash().as_ref()],
                        rec.offer.htlc_address.clone(),
                        expected,
                    )
                }
                _ => continue,
            };
            let spk = htlc_address
                .parse::<bitcoin::Address<_>>()?
                .assume_checked()
                .script_pubkey();
            let got = |party: usize| -> i128 {
                let ln: i128 = hashes
                    .iter()
                    .map(|h| parties.ln_net_msat.get(&(*h, party)).copied().unwrap_or(0))
                    .sum();
                ln / 1000 + parties.htlc_net.get(&(spk.clone(), party)).copied().unwrap_or(0)
            };
            let (server, client) = (got(0), got(c));
            if server != expected || client != -expected {
                wrong += 1;
                eprintln!(
                    "soak: swap {} ({}) moved {server} sat to the server and {client} to client{c}; its terms say {expected}",
                    r.id, r.state_name
                );
            }
        }
    }
    Ok(wrong)
}

/// The swap wallet's coins, read from the chain (not from the server): outputs paying `spk`
/// from height `from` on, less those spent.
fn wallet_balance(lab: &Lab, spk: &ScriptBuf, from: u32) -> anyhow::Result<u64> {
    let mut coins: HashMap<bitcoin::OutPoint, u64> = HashMap::new();
    for_each_tx(lab, from, |tx, _, _| {
        for i in &tx.input {
            coins.remove(&i.previous_output);
        }
        let txid = tx.compute_txid();
        for (n, o) in tx.output.iter().enumerate() {
            if &o.script_pubkey == spk {
                coins.insert(bitcoin::OutPoint::new(txid, n as u32), o.value.to_sat());
            }
        }
    })?;
    Ok(coins.values().sum())
}

/// Miner fees of every transaction mined above `start`, and the unspent 330-sat anchors.
fn chain_costs(lab: &Lab, start: u32) -> anyhow::Result<(u64, u64)> {
    let mut fees = 0u64;
    let mut anchors: HashMap<bitcoin::OutPoint, u64> = HashMap::new();
    for_each_tx(lab, start + 1, |tx, fee, _| {
        fees += fee;
        for i in &tx.input {
            anchors.remove(&i.previous_output);
        }
        let txid = tx.compute_txid();
        for (n, o) in tx.output.iter().enumerate() {
            if o.value.to_sat() == 330 && o.script_pubkey.is_p2wsh() {
                anchors.insert(bitcoin::OutPoint::new(txid, n as u32), 330);
            }
        }
    })?;
    Ok((fees, anchors.values().sum()))
}

/// Calls `f(tx, fee, height)` for every transaction of the active chain from height `from` to the tip.
fn for_each_tx(lab: &Lab, from: u32, mut f: impl FnMut(&Transaction, u64, u32)) -> anyhow::Result<()> {
    let (tip, _) = lab.chain.tip().map_err(|e| anyhow!("{e}"))?;
    for h in from..=tip {
        let hash: String = lab.chain.rpc("getblockhash", json!([h])).map_err(|e| anyhow!("{e}"))?;
        let block: Value = lab
            .chain
            .rpc("getblock", json!([hash, 2]))
            .map_err(|e| anyhow!("{e}"))?;
        for t in block["tx"].as_array().cloned().unwrap_or_default() {
            let tx: Transaction = bitcoin::consensus::encode::deserialize_hex(t["hex"].as_str().unwrap_or_default())?;
            let fee = match t.get("fee").and_then(Value::as_f64) {
                Some(btc) => Amount::from_btc(btc)?.to_sat(),
                None if tx.is_coinbase() => 0,
                None => bail!("no fee for {}", tx.compute_txid()),
            };
            f(&tx, fee, h);
        }
    }
    Ok(())
}

/// What one creation attempt got.
enum Created {
    Id(String),
    /// Busy, down or without capacity now (a kill, a rate limit, in-flight payments, a
    /// force-closed channel): try another daemon, or later.
    Again,
    /// Refused for good.
    Refused,
}

/// Creates a swap through the daemons, starting with `first`: a daemon that cannot take it now
/// passes it to the next (a client whose channel was force-closed after a kill can do no more
/// swaps); after a round of refusals, waits a second. None when refused for good or after 5
/// minutes.
async fn create(
    http: &reqwest::Client,
    procs: &[Daemon],
    first: usize,
    kind: &str,
    amount: u64,
) -> Option<(usize, String)> {
    let clients = procs.len() - 1;
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        for k in 0..clients {
            let c = 1 + (first - 1 + k) % clients;
            match create_on(http, &procs[c], kind, amount).await {
                Created::Id(id) => return Some((c, id)),
                Created::Refused => return None,
                Created::Again => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    None
}

async fn create_on(http: &reqwest::Client, d: &Daemon, kind: &str, amount: u64) -> Created {
    let path = if kind == "out" { "/v1/loop-out" } else { "/v1/loop-in" };
    let token = lock(&d.token).clone().unwrap_or_default();
    let r = match http
        .post(format!("{}{path}", d.url))
        .bearer_auth(token)
        .json(&json!({"amount_sat": amount}))
        .send()
        .await
    {
        Ok(r) => r,
        Err(_) => return Created::Again,
    };
    let status = r.status().as_u16();
    if r.status().is_success() {
        let v: Value = r.json().await.unwrap_or(Value::Null);
        return v["id"]
            .as_str()
            .map_or(Created::Again, |id| Created::Id(id.to_string()));
    }
    let text = r.text().await.unwrap_or_default();
    let again = matches!(status, 429 | 502 | 503 | 504)
        || text.contains("cannot pay")
        || text.contains("cannot receive")
        || text.contains("cannot fund")
        || text.contains("cannot take")
        || text.contains("not usable");
    if again {
        return Created::Again;
    }
    eprintln!("soak: {kind} {amount} refused: {status} {text}");
    Created::Refused
}

/// Follows swap `id` on daemon `d` until it is final (or 20 minutes pass).
async fn follow(http: &reqwest::Client, d: &Daemon, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(1_200);
    while Instant::now() < deadline {
        if let Some(v) = get(http, d, &format!("/v1/swaps/{id}")).await {
            if v["terminal"] == true {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn get(http: &reqwest::Client, d: &Daemon, path: &str) -> Option<Value> {
    let token = lock(&d.token).clone().unwrap_or_default();
    let r = http
        .get(format!("{}{path}", d.url))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

async fn metric(http: &reqwest::Client, port: u16, name: &str) -> Option<u64> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

fn wait_channel_usable(rt: &tokio::runtime::Runtime, http: &reqwest::Client, d: &Daemon) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = rt.block_on(get(http, d, "/v1/node")).unwrap_or(Value::Null);
        if v["channels"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["usable"] == true))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{}: channel never usable: {v}", d.url);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
