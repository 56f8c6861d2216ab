//! Issue 14: the README's walk-through ("Running a server and a client"), step by step, through
//! the `eddy` binary only: `eddy devnet`, `eddy server` and `eddy daemon` as separate processes
//! configured by two TOML files, then nothing but `eddy` commands — `devnet-mine` and
//! `devnet-fund` for the chain, `node` and `wallet` to fund the nodes and the swap wallet and
//! open a channel, `out` and `in` for the swaps, `node send` and `wallet withdraw` to take the
//! coins out. Ports and directories are free ones instead of the README's defaults. Every
//! balance is asserted to the sat; the miner fees are read from the devnet's blocks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{eddy, test_dir, Proc};

/// Runs `eddy ARGS`, asserting success; its stdout.
fn eddy_ok(args: &[&str]) -> String {
    let out = eddy().args(args).output().expect("run eddy");
    assert!(
        out.status.success(),
        "eddy {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// `eddy ARGS --json`.
fn eddy_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&eddy_ok(&a)).expect("json")
}

struct Walk {
    devnet: Vec<String>,
    admin: Vec<String>,
    client: Vec<String>,
}

impl Walk {
    fn mine(&self, n: u32) -> u32 {
        let mut a = vec!["devnet-mine".to_string(), n.to_string()];
        a.extend(self.devnet.iter().cloned());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        eddy_ok(&a).trim().parse().expect("height")
    }

    fn fund(&self, address: &str, sat: u64) -> String {
        let mut a = vec!["devnet-fund".to_string(), address.to_string(), sat.to_string()];
        a.extend(self.devnet.iter().cloned());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        eddy_ok(&a).trim().to_string()
    }

    /// `eddy ARGS --json` against the server's admin API.
    fn server(&self, args: &[&str]) -> Value {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(self.admin.iter().map(String::as_str));
        eddy_json(&a)
    }

    /// `eddy ARGS --json` against the client daemon.
    fn client(&self, args: &[&str]) -> Value {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(self.client.iter().map(String::as_str));
        eddy_json(&a)
    }

    /// Mines `n` blocks and waits until both nodes have processed them (`eddy node info`).
    fn mine_synced(&self, n: u32) {
        let height = self.mine(n);
        self.wait(&format!("both nodes at height {height}"), || {
            self.server(&["node", "info"])["block_height"] == height
                && self.client(&["node", "info"])["block_height"] == height
        });
    }

    /// Mines a block at a time until `f` holds (at most 60 blocks).
    fn mine_until(&self, what: &str, f: impl Fn() -> bool) {
        for _ in 0..60 {
            if f() {
                return;
            }
            self.mine_synced(1);
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("{what}: not after 60 blocks");
    }

    /// Waits (no mining) until `f` holds.
    fn wait(&self, what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn sat(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// One JSON-RPC call to the devnet (to read what happened; nothing is driven this way).
fn rpc(devnet: &[String], method: &str, params: Value) -> Value {
    let cookie = std::fs::read_to_string(PathBuf::from(&devnet[1]).join(".cookie")).expect("cookie");
    let url = format!("http://127.0.0.1:{}", devnet[3]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let (user, pass) = cookie.trim().split_once(':').expect("cookie");
    rt.block_on(async {
        reqwest::Client::new()
            .post(&url)
            .basic_auth(user, Some(pass))
            .json(&serde_json::json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .expect("rpc")
            .json::<Value>()
            .await
            .expect("json")["result"]
            .clone()
    })
}

/// A transaction's miner fee, from the devnet (its inputs' values from their transactions).
fn fee(devnet: &[String], txid: &str) -> u64 {
    let tx = rpc(devnet, "getrawtransaction", serde_json::json!([txid, true]));
    let value = |v: &Value| (v["value"].as_f64().expect("value") * 1e8).round() as u64;
    let out: u64 = tx["vout"].as_array().expect("vout").iter().map(value).sum();
    let inputs: u64 = tx["vin"]
        .as_array()
        .expect("vin")
        .iter()
        .map(|i| {
            let prev = rpc(devnet, "getrawtransaction", serde_json::json!([i["txid"], true]));
            value(&prev["vout"][i["vout"].as_u64().expect("vout") as usize])
        })
        .sum();
    inputs - out
}

/// The transaction spending `outpoint` (`txid:vout`): in the mempool or the last 30 blocks.
fn spender(devnet: &[String], outpoint: &str) -> Option<String> {
    let (txid, vout) = outpoint.split_once(':').expect("outpoint");
    let spends = |t: &Value| {
        t["vin"].as_array().is_some_and(|ins| {
            ins.iter()
                .any(|i| i["txid"] == txid && i["vout"].as_u64().map(|v| v.to_string()) == Some(vout.to_string()))
        })
    };
    let pool = rpc(devnet, "getrawmempool", serde_json::json!([]));
    for t in pool.as_array().cloned().unwrap_or_default() {
        let tx = rpc(devnet, "getrawtransaction", serde_json::json!([t, true]));
        if spends(&tx) {
            return t.as_str().map(String::from);
        }
    }
    let tip = rpc(devnet, "getblockcount", serde_json::json!([]))
        .as_u64()
        .expect("height");
    for h in (tip.saturating_sub(30)..=tip).rev() {
        let hash = rpc(devnet, "getblockhash", serde_json::json!([h]));
        let block = rpc(devnet, "getblock", serde_json::json!([hash, 2]));
        for tx in block["tx"].as_array().cloned().unwrap_or_default() {
            if spends(&tx) {
                return tx["txid"].as_str().map(String::from);
            }
        }
    }
    None
}

/// The HTLC outpoint a swap's events name (a loop-out's `htlc_seen`, a loop-in's `block`).
fn htlc_outpoint(events: &Value) -> String {
    events
        .as_array()
        .expect("events")
        .iter()
        .find_map(|e| {
            e["event"]["outpoint"]
                .as_str()
                .or_else(|| e["event"]["outputs"][0]["outpoint"].as_str())
        })
        .unwrap_or_else(|| panic!("no outpoint in {events}"))
        .to_string()
}

#[test]
fn the_readme_walkthrough_through_the_binary_only() {
    let (_tmp, dir) = test_dir();
    let dir: &Path = &dir;
    let port = || eddy_lab::LabChain::free_port_pub().expect("port");
    let (rpc, server_api, admin_api, metrics, daemon_api, server_ln, client_ln) =
        (port(), port(), port(), port(), port(), port(), port());
    let devnet_dir = dir.join("devnet");

    // 1. The devnet, then 101 blocks so that its faucet can pay.
    let log = std::fs::File::create(dir.join("devnet.log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["devnet", "--rpc-port", &rpc.to_string(), "--datadir"])
        .arg(&devnet_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("devnet");
    let devnet = Proc::spawned(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !devnet_dir.join(".cookie").exists() {
        assert!(Instant::now() < deadline, "devnet never wrote its cookie");
        std::thread::sleep(Duration::from_millis(100));
    }
    // 2. The two configuration files (the README's, with these ports and directories). The
    // CLI reads the same files: each command names the process by its `--config`.
    let cookie = devnet_dir.join(".cookie");
    let server_toml = dir.join("server.toml");
    let client_toml = dir.join("client.toml");
    let walk = Walk {
        devnet: vec![
            "--datadir".into(),
            devnet_dir.display().to_string(),
            "--rpc-port".into(),
            rpc.to_string(),
        ],
        admin: vec!["--config".into(), server_toml.display().to_string()],
        client: vec!["--config".into(), client_toml.display().to_string()],
    };
    assert_eq!(walk.mine(101), 101);
    std::fs::write(
        &server_toml,
        format!(
            "network = \"regtest\"\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:{server_api}\"\n\
             admin_listen = \"127.0.0.1:{admin_api}\"\nmetrics_listen = \"127.0.0.1:{metrics}\"\n\
             bitcoind_url = \"http://127.0.0.1:{rpc}\"\nbitcoind_cookie = \"{}\"\n\
             ldk_listen = \"127.0.0.1:{server_ln}\"\nbase_fee_sat = 1000\nfee_ppm = 5000\nprepay_sat = 1000\n",
            dir.join("server").display(),
            cookie.display()
        ),
    )
    .expect("server.toml");
    std::fs::write(
        &client_toml,
        format!(
            "network = \"regtest\"\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:{daemon_api}\"\n\
             server_url = \"http://127.0.0.1:{server_api}\"\nbitcoind_url = \"http://127.0.0.1:{rpc}\"\n\
             bitcoind_cookie = \"{}\"\nldk_listen = \"127.0.0.1:{client_ln}\"\n",
            dir.join("client").display(),
            cookie.display()
        ),
    )
    .expect("client.toml");

    // 3. Server and daemon, and `eddy monitor` following the daemon's swaps (its text lines).
    let server = Proc::start("server", &server_toml, &dir.join("server.log"), &[]);
    let daemon = Proc::start("daemon", &client_toml, &dir.join("client.log"), &[]);
    let mut monitor = eddy()
        .args(["monitor", "--config"])
        .arg(&client_toml)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("monitor");
    let monitor_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let out = monitor.stdout.take().expect("stdout");
        let lines = monitor_lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().expect("lock").push(line);
            }
        });
    }

    // 4. Fund the swap wallet, the server's node and the client's node.
    let wallet_addr = walk.server(&["wallet", "address"])["address"]
        .as_str()
        .expect("address")
        .to_string();
    walk.fund(&wallet_addr, 1_000_000);
    let server_addr = walk.server(&["node", "address"])["address"]
        .as_str()
        .expect("address")
        .to_string();
    walk.fund(&server_addr, 500_000);
    let client_addr = walk.client(&["node", "address"])["address"]
        .as_str()
        .expect("address")
        .to_string();
    walk.fund(&client_addr, 1_500_000);
    walk.mine_synced(1);
    walk.wait("everything funded", || {
        sat(&walk.server(&["wallet", "balance"]), "spendable_sat") == 1_000_000
            && sat(&walk.server(&["node", "info"]), "onchain_spendable_sat") == 500_000
            && sat(&walk.client(&["node", "info"]), "onchain_spendable_sat") == 1_500_000
    });

    // 5. The client opens a 1,000,000-sat channel to the server.
    let server_info = walk.server(&["node", "info"]);
    let server_peer = format!(
        "{}@{}",
        server_info["node_id"].as_str().expect("id"),
        server_info["listening"][0].as_str().expect("listening")
    );
    let opened = walk.client(&["node", "open", &server_peer, "1000000"]);
    assert_eq!(opened["id"].as_str().map(str::len), Some(32), "{opened}");
    walk.wait("funding broadcast", || {
        walk.client(&["node", "channels"])[0]["funding"].is_string()
    });
    walk.mine_synced(6);
    walk.wait("channel usable", || {
        walk.client(&["node", "channels"])[0]["usable"] == true
            && walk.server(&["node", "channels"])[0]["usable"] == true
    });
    let channels = walk.client(&["node", "channels"]);
    let funding_txid = channels[0]["funding"]
        .as_str()
        .and_then(|f| f.split(':').next())
        .expect("funding")
        .to_string();
    let open_fee = fee(&walk.devnet, &funding_txid);
    let client0 = walk.client(&["node", "info"]);
    assert_eq!(
        sat(&client0, "onchain_sat"),
        1_500_000 - 1_000_000 - open_fee,
        "{client0}"
    );
    let (client_ln0, server_ln0) = (
        sat(&client0, "lightning_sat"),
        sat(&walk.server(&["node", "info"]), "lightning_sat"),
    );
    assert_eq!(server_ln0, 0, "the client funded the channel");

    // 6. Loop out 80,000 sat: 1,000 + 0.5 % = 1,400 sat fee (1,000 of it the prepay). (The
    // server's node accepted the channel with LDK's default cap on HTLCs in flight: 10 % of it.)
    let terms = eddy_ok(&["terms", "--config", &client_toml.display().to_string()]);
    for line in [
        "network        regtest",
        "loop-out       10000 – 1000000 sat, fee 1000 sat + 5000 ppm (1000 sat of it prepaid)",
        "               HTLC expiry 80 blocks",
        "loop-in        10000 – 1000000 sat, fee 1000 sat + 5000 ppm (taken from what you receive; no prepay)",
        "               HTLC expiry 144 blocks (your refund path opens then)",
    ] {
        assert!(terms.contains(line), "{line:?} in {terms}");
    }
    let quote = walk.client(&["quote", "out", "80000"]);
    assert_eq!((sat(&quote, "swap_fee_sat"), sat(&quote, "prepay_sat")), (1_400, 1_000));
    let out = walk.client(&["out", "80000"]);
    let out_id = out["id"].as_str().expect("id").to_string();
    walk.mine_until("loop-out succeeded", || {
        walk.client(&["swapinfo", &out_id])["state"] == "succeeded"
    });
    let out_view = walk.client(&["swapinfo", &out_id]);
    let claim_fee = sat(&out_view, "claim_fee_sat");
    assert_eq!(
        claim_fee,
        fee(&walk.devnet, out_view["claim_txid"].as_str().expect("claim"))
    );
    walk.wait("loop-out money settled", || {
        sat(&walk.client(&["node", "info"]), "lightning_sat") == client_ln0 - 81_400
            && sat(&walk.server(&["node", "info"]), "lightning_sat") == server_ln0 + 81_400
    });

    // 7. Loop in 50,000 sat: the client receives 50,000 − 1,250 over Lightning (the server can
    // send what the loop-out gave it, less its channel reserve).
    let quote = walk.client(&["quote", "in", "50000"]);
    assert_eq!(sat(&quote, "swap_fee_sat"), 1_250, "{quote}");
    let inn = walk.client(&["in", "50000"]);
    let in_id = inn["id"].as_str().expect("id").to_string();
    let in_htlc = inn["htlc_address"].as_str().expect("htlc").to_string();
    walk.mine_until("loop-in succeeded", || {
        walk.client(&["swapinfo", &in_id])["state"] == "succeeded"
    });
    walk.wait("loop-in money settled", || {
        sat(&walk.client(&["node", "info"]), "lightning_sat") == client_ln0 - 81_400 + 48_750
            && sat(&walk.server(&["node", "info"]), "lightning_sat") == server_ln0 + 81_400 - 48_750
    });
    // The funding transaction: the HTLC output's, named in the swap's events.
    let in_outpoint = htlc_outpoint(&walk.client(&["swapinfo", &in_id])["events"]);
    let in_funding = in_outpoint.split(':').next().expect("txid").to_string();
    let _ = &in_htlc;
    let in_fee = fee(&walk.devnet, &in_funding);

    // 8. Take the coins out: 150,000 sat from the client's node, 100,000 from the swap wallet.
    let dest = "bcrt1qsnaz83m800prgcgp2dxvv5f9z2x4f5lasfekj9";
    let before_send = sat(&walk.client(&["node", "info"]), "onchain_sat");
    assert_eq!(
        before_send,
        1_500_000 - 1_000_000 - open_fee + 80_000 - claim_fee - 50_000 - in_fee,
        "the client's wallet: the loop-out's coins in, the loop-in's out"
    );
    let sent = walk.client(&["node", "send", dest, "150000", "--fee-rate", "2"]);
    let send_fee = fee(&walk.devnet, sent["txid"].as_str().expect("txid"));
    let wallet_before = sat(&walk.server(&["wallet", "balance"]), "spendable_sat");
    let withdrawn = walk.server(&["wallet", "withdraw", dest, "100000", "--fee-rate", "2"]);
    let w_fee = sat(&withdrawn, "fee_sat");
    assert_eq!(w_fee, fee(&walk.devnet, withdrawn["txid"].as_str().expect("txid")));
    walk.mine(1);
    // The swap wallet, exactly: its deposit, less the loop-out's HTLC and the funding's fee,
    // plus the loop-in's HTLC less the server's claim fee, less the withdrawal and its fee.
    let out_outpoint = htlc_outpoint(&walk.client(&["swapinfo", &out_id])["events"]);
    let out_funding_fee = fee(&walk.devnet, out_outpoint.split(':').next().expect("txid"));
    walk.mine_until("coins out", || {
        let in_claim = spender(&walk.devnet, &in_outpoint);
        let want =
            in_claim.map(|t| 1_000_000 - 80_000 - out_funding_fee + 50_000 - fee(&walk.devnet, &t) - 100_000 - w_fee);
        let client_chain = sat(&walk.client(&["node", "info"]), "onchain_sat");
        let wallet = sat(&walk.server(&["wallet", "balance"]), "spendable_sat");
        eprintln!(
            "coins out: client on-chain {client_chain} (want {}), swap wallet {wallet} (want {want:?})",
            before_send - 150_000 - send_fee
        );
        client_chain == before_send - 150_000 - send_fee && Some(wallet) == want
    });
    assert!(wallet_before > 0);

    // The monitor said it was waiting, then showed each swap's progress live: every line of a
    // running swap with its HTLC confirmed gives the confirmations and the blocks left to its
    // expiry, and the two add up to the same height (the tip the line was made at).
    let _ = monitor.kill();
    let _ = monitor.wait();
    let lines = monitor_lines.lock().expect("lock").clone();
    eprintln!("eddy monitor printed:\n{}", lines.join("\n"));
    assert!(
        lines.first().is_some_and(|l| l.contains("waiting for changes")),
        "{lines:?}"
    );
    for (id, outpoint) in [(&out_id, &out_outpoint), (&in_id, &in_outpoint)] {
        let view = walk.client(&["swapinfo", id]);
        assert!(view["progress"].is_null(), "a final swap has no progress: {view}");
        let expiry = sat(&view, "expiry");
        let tx = self::rpc(
            &walk.devnet,
            "getrawtransaction",
            serde_json::json!([outpoint.split(':').next(), true]),
        );
        let confirmed_at = self::rpc(&walk.devnet, "getblockheader", serde_json::json!([tx["blockhash"]]))["height"]
            .as_u64()
            .expect("height");
        let mut progress = 0;
        for l in lines.iter().filter(|l| l.contains(id.as_str())) {
            let n = |after: &str, before: &str| -> Option<u64> {
                let rest = &l[l.find(after)? + after.len()..];
                rest[..rest.find(before)?].trim().parse().ok()
            };
            let confs = if l.contains("HTLC 1 confirmation ") || l.ends_with("HTLC 1 confirmation") {
                Some(1)
            } else {
                n("HTLC ", " confirmations")
            };
            if let (Some(confs), Some(left)) = (confs, n("expiry in ", " block")) {
                assert_eq!(confirmed_at + confs - 1, expiry - left, "{l}");
                assert!(l.contains(&format!("(height {expiry})")), "{l}");
                progress += 1;
            }
        }
        assert!(progress > 0, "no progress line for {id}: {lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(id.as_str()) && l.contains(" sat  succeeded")),
            "{lines:?}"
        );
    }
    daemon.terminate();
    server.terminate();
    drop(devnet);
}
