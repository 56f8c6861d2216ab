//! The two daemons as an operator runs them: the real `eddy server` and `eddy daemon`
//! processes, configured by TOML files, environment and flags, each with its embedded LDK node,
//! on the devnet; the CLI (`eddy terms/quote/out/list/swapinfo/monitor`) talking to the daemon
//! with its token. The loop-out survives `kill -9` of each process after each persisted state
//! and ends with exact balances on both nodes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::{Amount, FeeRate, Network};
use eddy_backends::bitcoind::{BitcoindAuth, BitcoindSource};
use eddy_backends::ldk::{LdkChainSource, LdkConfig, LdkNode};
use eddy_backends::{ChainSource, LightningNode};
use eddy_lab::{Lab, LabConfig, WAIT};
use serde_json::Value;

mod common;
use common::{eddy, rt, test_dir, Proc};

struct Net {
    lab: Lab,
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
    chain: Arc<dyn ChainSource>,
    server_port: u16,
    client_port: u16,
    server_api: u16,
    /// The server's metrics address (its own, not the API's).
    server_metrics: u16,
    client_api: u16,
    /// (channel, on-chain) sat of server and client before the swap.
    before: [(u64, u64); 2],
}

impl Net {
    fn ldk_config(&self, who: &str, port: u16) -> LdkConfig {
        let (host, rpc_port, user, password) = self.lab.chain.rpc_credentials();
        LdkConfig {
            data_dir: self.dir.join(who).join("ldk"),
            network: Network::Regtest,
            listen: Some(format!("127.0.0.1:{port}").parse().expect("addr")),
            chain: LdkChainSource::BitcoindRpc {
                host,
                port: rpc_port,
                user,
                password,
            },
        }
    }

    fn start_node(&self, who: &str, port: u16) -> Arc<LdkNode> {
        Arc::new(
            self.rt
                .block_on(LdkNode::start(self.ldk_config(who, port), self.chain.clone()))
                .expect("node"),
        )
    }

    /// (channel sat, on-chain sat) of a node's stored state, read by starting it in-process
    /// after its daemon stopped.
    fn balances(&self, who: &str, port: u16) -> (u64, u64) {
        let n = self.start_node(who, port);
        eddy_lab::wait_synced(n.ldk(), self.lab.chain.tip().expect("tip"), WAIT).expect("synced");
        let _ = n.ldk().sync_wallets();
        let b = n.ldk().list_balances();
        self.rt.block_on(n.stop()).expect("stop");
        (b.total_lightning_balance_sats, b.total_onchain_balance_sats)
    }

    /// Writes both daemons' TOML files; returns where everything of the two processes is.
    fn files(&self) -> Files {
        let (server_toml, client_toml) = self.write_configs();
        Files {
            server_toml,
            client_toml,
            server_log: self.dir.join("server.log"),
            client_log: self.dir.join("client.log"),
            client_dir: self.dir.join("client"),
        }
    }

    fn write_configs(&self) -> (PathBuf, PathBuf) {
        let (_, _, user, password) = self.lab.chain.rpc_credentials();
        let common = |who: &str, api: u16, ldk: u16| {
            [
                "network = \"regtest\"".to_string(),
                format!("data_dir = \"{}\"", self.dir.join(who).display()),
                format!("listen = \"127.0.0.1:{api}\""),
                format!("bitcoind_url = \"{}\"", self.lab.chain.url()),
                format!("bitcoind_user = \"{user}\""),
                format!("bitcoind_password = \"{password}\""),
                format!("ldk_listen = \"127.0.0.1:{ldk}\""),
            ]
            .join("\n")
        };
        let server = self.dir.join("server.toml");
        let text = common("server", self.server_api, self.server_port)
            + "\nlog_format = \"json\"\nbase_fee_sat = 1000\nfee_ppm = 5000\nprepay_sat = 1000\nexpiry_delta = 80\n"
            + &format!(
                "metrics_listen = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:0\"\n",
                self.server_metrics
            );
        std::fs::write(&server, text).expect("server.toml");
        let client = self.dir.join("client.toml");
        let text =
            common("client", self.client_api, self.client_port) + "\nmax_swap_fee_sat = 5000\nmax_prepay_sat = 2000\n";
        std::fs::write(&client, text).expect("client.toml");
        (server, client)
    }
}

/// Waits until neither node has updated a channel for a while, so that a `kill -9` lands on
/// quiet Lightning nodes. ldk-node persists each ChannelMonitor update at once but writes its
/// ChannelManager a moment later, from its background processor; a process killed in between
/// restarts with a stale manager and LDK force-closes the channel (docs/measured.md) — its
/// funds then come back through LDK's on-chain recovery, which is LDK's to test, not Eddy's.
/// Under load (two CI cores, four nodes) that moment stretched past half a second, so the test
/// watches the nodes' own logs ("Applying update to monitor", one line per channel update)
/// until they have been still for 1.5 s.
fn lightning_quiet(dir: &Path) {
    let logs = [
        dir.join("server").join("ldk").join("ldk_node.log"),
        dir.join("client").join("ldk").join("ldk_node.log"),
    ];
    let updates = || {
        logs.iter()
            .map(|l| {
                std::fs::read_to_string(l)
                    .unwrap_or_default()
                    .matches("Applying update to monitor")
                    .count()
            })
            .sum::<usize>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = updates();
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_millis(1_500) {
        assert!(Instant::now() < deadline, "the Lightning nodes never went quiet");
        std::thread::sleep(Duration::from_millis(100));
        let now = updates();
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
}

/// The two daemons' configuration files, logs and the client's data dir.
struct Files {
    server_toml: PathBuf,
    client_toml: PathBuf,
    server_log: PathBuf,
    client_log: PathBuf,
    client_dir: PathBuf,
}

/// Devnet, two nodes with a 1,000,000-sat channel server → client (500,000 pushed) and
/// `client_onchain` sat in the client's wallet, both nodes stopped again so the daemons can
/// own them.
fn setup(dir: &Path, client_onchain: u64) -> Net {
    let lab = Lab::start(LabConfig::new(dir, 0)).expect("lab");
    let rt = rt();
    let (_, _, user, password) = lab.chain.rpc_credentials();
    let chain: Arc<dyn ChainSource> = Arc::new(
        rt.block_on(BitcoindSource::connect(
            &lab.chain.url(),
            &BitcoindAuth::UserPass(user, password),
            FeeRate::from_sat_per_kwu(500),
        ))
        .expect("chain"),
    );
    let net = Net {
        lab,
        dir: dir.to_path_buf(),
        rt,
        chain,
        server_port: eddy_lab::LabChain::free_port_pub().expect("port"),
        client_port: eddy_lab::LabChain::free_port_pub().expect("port"),
        server_api: eddy_lab::LabChain::free_port_pub().expect("port"),
        server_metrics: eddy_lab::LabChain::free_port_pub().expect("port"),
        client_api: eddy_lab::LabChain::free_port_pub().expect("port"),
        before: [(0, 0); 2],
    };
    let s = net.start_node("server", net.server_port);
    let c = net.start_node("client", net.client_port);
    let addr = net.rt.block_on(s.new_address()).expect("address");
    net.lab.chain.fund(&addr, Amount::from_sat(2_000_000)).expect("fund");
    net.lab.mine(1).expect("mine");
    eddy_lab::wait_synced(s.ldk(), net.lab.chain.tip().expect("tip"), WAIT).expect("synced");
    let c_addr = c
        .ldk()
        .listening_addresses()
        .and_then(|a| a.first().cloned())
        .expect("listening");
    net.lab
        .open_channel_between(s.ldk(), c.ldk(), c_addr, Amount::from_sat(1_000_000), 500_000_000)
        .expect("channel");
    if client_onchain > 0 {
        let addr = net.rt.block_on(c.new_address()).expect("address");
        net.lab
            .chain
            .fund(&addr, Amount::from_sat(client_onchain))
            .expect("fund");
        net.lab.mine(1).expect("mine");
        eddy_lab::wait_synced(c.ldk(), net.lab.chain.tip().expect("tip"), WAIT).expect("synced");
        eddy_lab::wait_until("client wallet funded", WAIT, || {
            let _ = c.ldk().sync_wallets();
            c.ldk().list_balances().spendable_onchain_balance_sats > 0
        })
        .expect("funded");
    }
    let bal = |n: &LdkNode| {
        let b = n.ldk().list_balances();
        (b.total_lightning_balance_sats, b.total_onchain_balance_sats)
    };
    let mut net = net;
    net.before = [bal(&s), bal(&c)];
    net.rt.block_on(s.stop()).expect("stop");
    net.rt.block_on(c.stop()).expect("stop");
    net
}

/// Runs the CLI against the daemon; returns stdout (asserting success).
fn cli(client_dir: &Path, daemon_url: &str, args: &[&str]) -> String {
    let out = eddy()
        .args(args)
        .arg("--daemon")
        .arg(daemon_url)
        .arg("--data-dir")
        .arg(client_dir)
        .output()
        .expect("run eddy");
    assert!(
        out.status.success(),
        "eddy {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// Runs the CLI expecting it to fail; its output (stdout and stderr).
fn cli_fails(client_dir: &Path, daemon_url: &str, args: &[&str]) -> String {
    let out = eddy()
        .args(args)
        .arg("--daemon")
        .arg(daemon_url)
        .arg("--data-dir")
        .arg(client_dir)
        .output()
        .expect("run eddy");
    assert!(!out.status.success(), "eddy {args:?} should have failed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn cli_json(client_dir: &Path, daemon_url: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&cli(client_dir, daemon_url, &a)).expect("json output")
}

/// GET `url` as JSON (Null when unreachable: a process may be restarting).
fn http_get(url: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        match reqwest::get(url).await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    })
}

/// The daemon's `GET /v1/node` (with its token), Null while unreachable.
fn node_info(client_dir: &Path, url: &str) -> Value {
    let token = std::fs::read_to_string(client_dir.join("api.token")).expect("token");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{url}/v1/node"))
            .bearer_auth(token.trim())
            .send()
            .await;
        match r {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    })
}

/// Waits until the client's channel is usable (after a start, the peers reconnect first).
fn wait_channel_usable(client_dir: &Path, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while node_info(client_dir, url)["channels"][0]["usable"] != true {
        assert!(Instant::now() < deadline, "client channel never usable");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET /v1/swaps/{id}` as the client's daemon would ask it: signed with the swap's key (its
/// loop-out claim key or loop-in refund key, from the client's seed in `client_dir`).
fn server_status(client_dir: &Path, url: &str, id: &str) -> Value {
    let id: eddy_core::types::SwapId = id.parse().expect("swap id");
    let path = format!("/v1/swaps/{id}");
    let keys = eddy_store::SeedKeys::load_or_create(client_dir, eddy_client::SEED_FILE).expect("seed");
    for purpose in [eddy_client::loop_out::KEY_PURPOSE, eddy_client::loop_in::KEY_PURPOSE] {
        let v = signed_get(&keys.secret(purpose, &id), &id, url, &path);
        if v.get("state").is_some() {
            return v;
        }
    }
    Value::Null
}

/// A GET on swap `id` signed with `key` (`x-eddy-swap-auth`).
fn signed_get(key: &bitcoin::secp256k1::SecretKey, id: &eddy_core::types::SwapId, url: &str, path: &str) -> Value {
    let auth = eddy_core::auth::sign(key, id, unix_now(), "GET", path, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        match reqwest::Client::new()
            .get(format!("{url}{path}"))
            .header(eddy_core::auth::HEADER, auth)
            .send()
            .await
        {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
fn loop_out_through_the_daemons_survives_kill_9_after_every_state() {
    let (_tmp, dir) = test_dir();
    let dir = &dir;
    let net = setup(dir, 0);
    let Files {
        server_toml,
        client_toml,
        server_log,
        client_log,
        client_dir,
    } = net.files();
    // The environment overrides the file (prepay 1000 in the file → 900 here).
    // The server's swap wallet, derived from the seed it will find in its data dir.
    let seed = eddy_store::SeedKeys::load_or_create(&dir.join("server"), eddy_server::SEED_FILE).expect("seed");
    let wallet = eddy_server::wallet::SwapWallet::new(&seed, Network::Regtest);
    net.lab
        .chain
        .fund(wallet.address(), Amount::from_sat(600_000))
        .expect("fund");
    net.lab.mine(1).expect("mine");
    // It was funded before the server's first start: tell it where to look.
    // From the deposit's own block: the flag names the first block scanned (the soak found a
    // deposit in exactly that block missed when the flag was read as "after").
    let rescan = net.lab.chain.tip().expect("tip").0.to_string();
    let server_env = [("EDDY_PREPAY_SAT", "900"), ("EDDY_WALLET_RESCAN_FROM", rescan.as_str())];
    let mut server = Proc::start("server", &server_toml, &server_log, &server_env);
    let server_url = server.url.clone();
    assert_eq!(server_url, format!("http://127.0.0.1:{}", net.server_api));
    let start_client = || Proc::start("daemon", &client_toml, &client_log, &[("EDDY_SERVER_URL", &server_url)]);
    // The first client process dies between storing its first swap and paying (crash point).
    let mut client = Proc::start(
        "daemon",
        &client_toml,
        &client_log,
        &[
            ("EDDY_SERVER_URL", &server_url),
            ("EDDY_CRASH_AT", "loop_out.pay.before_send"),
        ],
    );

    // The token file is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(client_dir.join("api.token"))
            .expect("token")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let terms = cli_json(&client_dir, &client.url, &["terms"]);
    assert_eq!(terms["prepay_sat"], 900, "EDDY_PREPAY_SAT over the file: {terms}");
    assert_eq!(terms["base_fee_sat"], 1000);
    let quote = cli_json(&client_dir, &client.url, &["quote", "out", "100000"]);
    // 1000 + 100000 × 5000 ppm = 1500 fee, 900 of it prepaid.
    assert_eq!(quote["swap_fee_sat"], 1500, "{quote}");
    assert_eq!(quote["prepay_sat"], 900);
    assert_eq!(quote["swap_invoice_sat"], 100_600);
    let (coop, script) = eddy_core::tx::loop_out_claim_vbytes();
    assert_eq!(quote["claim_vbytes"], coop);
    assert!(coop < script, "key path {coop} vB < script path {script} vB");
    let text = cli(&client_dir, &client.url, &["quote", "out", "100000"]);
    assert!(
        text.contains("swap fee            1500 sat (900 of it prepaid)"),
        "{text}"
    );

    // Right after start the node is still re-establishing its channel: `out` refuses clearly
    // (nothing is created) until it can pay. Wait for the channel through the daemon.
    wait_channel_usable(&client_dir, &client.url);
    let too_much = eddy()
        .args(["out", "900000", "--daemon", &client.url, "--data-dir"])
        .arg(&client_dir)
        .output()
        .expect("run");
    assert!(!too_much.status.success());
    let err = String::from_utf8_lossy(&too_much.stderr);
    assert!(err.contains("cannot pay: 900000 sat needed"), "{err}");
    let bad_addr = eddy()
        .args([
            "out",
            "100000",
            "--addr",
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            "--daemon",
            &client.url,
            "--data-dir",
        ])
        .arg(&client_dir)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&bad_addr.stderr);
    assert!(err.contains("is not an address for the regtest network"), "{err}");
    assert_eq!(
        cli_json(&client_dir, &client.url, &["list"]),
        serde_json::json!([]),
        "refusals create nothing"
    );

    // The client validates and stores the offer, then dies before paying: the CLI's request
    // dies with it. Restarted, the daemon finds the swap and pays.
    let out = eddy()
        .args(["out", "100000", "--json", "--daemon", &client.url, "--data-dir"])
        .arg(&client_dir)
        .output()
        .expect("run");
    assert!(!out.status.success(), "the daemon died while answering");
    let mut kills = vec![format!(
        "client crashed before paying ({})",
        client.wait_crash("client")
    )];
    client = start_client();
    let list = cli_json(&client_dir, &client.url, &["list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let swap = &list[0];
    let id = swap["id"].as_str().expect("id").to_string();
    assert_eq!(swap["amount_sat"], 100_000);
    assert_eq!(swap["swap_invoice_sat"], 100_600);
    assert_eq!(swap["prepay_sat"], 900);

    let client_state = |url: &str| {
        cli_json(&client_dir, url, &["swapinfo", &id])["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let wait_for = |what: &str, mut f: Box<dyn FnMut() -> bool + '_>| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // kill -9 both daemons (the client first, then the server) at three points of the swap,
    // restarting each on its data dir.
    let kill_both = |kills: &mut Vec<String>, client: Proc, server: Proc| -> (Proc, Proc) {
        lightning_quiet(dir);
        kills.push(format!("client at {}", client_state(&client.url)));
        client.kill9();
        kills.push(format!(
            "server at {}",
            server_status(&client_dir, &server.url, &id)["state"]
                .as_str()
                .unwrap_or("")
        ));
        server.kill9();
        let server = Proc::start("server", &server_toml, &server_log, &server_env);
        (start_client(), server)
    };
    // 1. Just after creation: the client has stored the offer and sent its payments.
    (client, server) = kill_both(&mut kills, client, server);
    // 2. The HTLC is published (and the prepay settled).
    wait_for(
        "the HTLC",
        Box::new(|| !server_status(&client_dir, &server.url, &id)["htlc_outpoint"].is_null()),
    );
    (client, server) = kill_both(&mut kills, client, server);
    // 3. One confirmation: the client reveals the preimage and broadcasts its claim.
    net.lab.mine(1).expect("mine");
    wait_for("the claim", Box::new(|| client_state(&client.url) == "claiming"));
    (client, server) = kill_both(&mut kills, client, server);
    // `eddy monitor --json` follows the rest live.
    let mut monitor = eddy()
        .args(["monitor", "--json", "--daemon", &client.url, "--data-dir"])
        .arg(&client_dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("monitor");
    let monitor_out = monitor.stdout.take().expect("stdout");
    let (mtx, mrx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(monitor_out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = mtx.send(v);
            }
        }
    });
    // 5. Mine until both are done.
    wait_for(
        "both sides to succeed",
        Box::new(|| {
            let c = client_state(&client.url);
            if c == "claiming" || c == "htlc_confirming" {
                let _ = net.lab.mine(1);
                // Give both engines the block before deciding whether another is needed.
                std::thread::sleep(Duration::from_millis(500));
            }
            c == "succeeded" && server_status(&client_dir, &server.url, &id)["state"] == "succeeded"
        }),
    );
    eprintln!("kill -9 points: {kills:?}");
    assert_eq!(kills.len(), 7);
    assert!(kills[0].starts_with("client crashed before paying"), "{kills:?}");
    assert!(
        matches!(
            kills[1].as_str(),
            "client at offer_accepted" | "client at paying" | "client at htlc_confirming"
        ),
        "{kills:?}"
    );
    assert!(kills[3].starts_with("client at "), "{kills:?}");
    assert_eq!(kills[4], "server at published", "{kills:?}");
    assert_eq!(kills[5], "client at claiming", "{kills:?}");
    assert!(
        matches!(kills[6].as_str(), "server at preimage_known" | "server at succeeded"),
        "{kills:?}"
    );
    let mut seen = vec![];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|s: &String| s == "succeeded") && Instant::now() < deadline {
        if let Ok(v) = mrx.recv_timeout(Duration::from_millis(200)) {
            assert_eq!(v["id"], id.as_str());
            seen.push(v["state"].as_str().unwrap_or("").to_string());
        }
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    assert_eq!(seen.first().map(String::as_str), Some("claiming"), "monitor: {seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("succeeded"), "monitor: {seen:?}");

    let info = cli_json(&client_dir, &client.url, &["swapinfo", &id]);
    let claim_fee = info["claim_fee_sat"].as_u64().expect("claim fee");
    let list = cli_json(&client_dir, &client.url, &["list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["state"], "succeeded");
    let text = cli(&client_dir, &client.url, &["swapinfo", &id]);
    assert!(text.contains("succeeded (claim "), "{text}");
    // Not a single event carries the preimage.
    let preimage_free = !info.to_string().contains("preimage\":\"");
    assert!(preimage_free);

    // The daemon's node endpoint needs the token.
    assert!(node_info(&client_dir, &client.url)["node_id"].is_string());
    let unauth = http_get(&format!("{}/v1/node", client.url));
    assert_eq!(
        unauth["error"].as_str().map(|e| e.contains("token")),
        Some(true),
        "{unauth}"
    );

    // And back: a loop-in through the daemons, from the coins the loop-out brought on-chain.
    // The client daemon restarted last (kill -9 above): let its channel come back before the
    // server pays over it.
    wait_channel_usable(&client_dir, &client.url);
    // A wrong request reaches the user as the server's refusal (its 400 and words, amounts in
    // sats), not as an outage (502).
    let wrong = cli_fails(&client_dir, &client.url, &["quote", "in", "1"]);
    assert!(
        wrong.contains("(400 Bad Request)") && wrong.contains("amount 1 sat is outside the allowed range"),
        "{wrong}"
    );
    let q = cli_json(&client_dir, &client.url, &["quote", "in", "50000"]);
    // 1,000 + 50,000 × 5,000 ppm = 1,250.
    assert_eq!(q["swap_fee_sat"], 1_250, "{q}");
    assert_eq!(q["invoice_sat"], 48_750, "{q}");
    let lin = cli_json(&client_dir, &client.url, &["in", "50000"]);
    let in_id = lin["id"].as_str().expect("id").to_string();
    assert_eq!(lin["kind"], "loop_in");
    assert_eq!(lin["swap_invoice_sat"], 48_750);
    assert!(
        lin["bip21"]
            .as_str()
            .is_some_and(|b| b.starts_with("bitcoin:bcrt1p") && b.ends_with("amount=0.0005")),
        "{lin}"
    );
    wait_for(
        "the loop-in to succeed on both sides",
        Box::new(|| {
            let c = cli_json(&client_dir, &client.url, &["swapinfo", &in_id])["state"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let s = server_status(&client_dir, &server.url, &in_id)["state"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if c == "funding" || s == "claiming" {
                let _ = net.lab.mine(1);
                std::thread::sleep(Duration::from_millis(500));
            }
            c == "succeeded" && s == "succeeded"
        }),
    );
    let list = cli_json(&client_dir, &client.url, &["list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let in_funding: bitcoin::OutPoint = server_status(&client_dir, &server.url, &in_id)["htlc_outpoint"]
        .as_str()
        .expect("funding")
        .parse()
        .expect("outpoint");
    let funding_tx = net
        .rt
        .block_on(net.chain.transaction(&in_funding.txid))
        .expect("rpc")
        .expect("funding tx")
        .tx;
    let funding_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &funding_tx))
        .expect("fee")
        .to_sat();
    // The server's claim: the transaction spending the funding, in one of the last blocks.
    let in_claim_fee = {
        let tip = net.lab.chain.tip().expect("tip").0;
        let mut fee = None;
        for h in (tip.saturating_sub(20)..=tip).rev() {
            let hash = net.rt.block_on(net.chain.block_hash(h)).expect("rpc").expect("hash");
            let (block, _) = net.rt.block_on(net.chain.block(&hash)).expect("rpc").expect("block");
            if let Some(t) = block
                .txdata
                .iter()
                .find(|t| t.input.iter().any(|i| i.previous_output == in_funding))
            {
                fee = Some(50_000 - t.output.iter().map(|o| o.value.to_sat()).sum::<u64>());
            }
        }
        fee.expect("the server's claim is in a block")
    };
    // Let the server's gauge see the claim's block.
    std::thread::sleep(Duration::from_millis(2_500));

    // Server metrics: on their own address only (they show the swap wallet's balance).
    let public = net.rt.block_on(async {
        ::reqwest::get(format!("{}/metrics", server.url))
            .await
            .expect("public metrics")
            .status()
    });
    assert_eq!(public.as_u16(), 404, "no metrics on the public API port");
    let metrics = net.rt.block_on(async {
        ::reqwest::get(format!("http://127.0.0.1:{}/metrics", net.server_metrics))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    });
    // Counters are the running process's: the last server process counted the loop-out only
    // if it finished it (it may have found it finished already), and the loop-in.
    let out_line = "eddy_server_loop_out_finished_total{outcome=\"succeeded\"} 1";
    assert_eq!(
        metrics.contains(out_line),
        kills[6] != "server at succeeded",
        "{metrics}"
    );
    assert!(
        metrics.contains("eddy_server_loop_out_finished_total{outcome=\"in_succeeded\"} 1"),
        "{metrics}"
    );
    let wallet_after = metrics
        .lines()
        .find_map(|l| l.strip_prefix("eddy_server_swap_wallet_spendable_sat "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no wallet gauge in {metrics}"));

    let s_final = server_status(&client_dir, &server.url, &id);
    server.terminate();
    client.terminate();
    // Structured logs: one JSON object per line, none with a preimage.
    let slog = std::fs::read_to_string(&server_log).expect("server log");
    let json_lines = slog.lines().filter(|l| l.starts_with('{')).count();
    assert!(json_lines > 5, "JSON log lines: {json_lines}");
    assert!(slog.contains("\"loop-out transition\""), "transitions are logged");

    // Exact money, read from the nodes' own stores.
    let htlc_txid: bitcoin::Txid = s_final["htlc_outpoint"]
        .as_str()
        .and_then(|s| s.split(':').next())
        .map(|s| s.parse().expect("txid"))
        .unwrap_or_else(|| panic!("no HTLC outpoint in {s_final}"));
    let htlc_tx = net
        .rt
        .block_on(net.chain.transaction(&htlc_txid))
        .expect("rpc")
        .expect("HTLC tx")
        .tx;
    let publish_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &htlc_tx))
        .expect("fee")
        .to_sat();
    let [(s_ln0, _), (c_ln0, c_chain0)] = net.before;
    let (c_ln, c_chain) = net.balances("client", net.client_port);
    let (s_ln, _) = net.balances("server", net.server_port);
    // Loop-out: paid 100,600 + 900 once; loop-in: received 48,750 once.
    assert_eq!(c_ln, c_ln0 - 100_600 - 900 + 48_750, "client channel");
    assert_eq!(s_ln, s_ln0 + 100_600 + 900 - 48_750, "server channel");
    assert_eq!(
        c_chain,
        c_chain0 + 100_000 - claim_fee - 50_000 - funding_fee,
        "client on-chain: one claim, one funding"
    );
    assert_eq!(
        wallet_after,
        600_000 - 100_000 - publish_fee + 50_000 - in_claim_fee,
        "server swap wallet: one HTLC out, one claimed in"
    );
    net.lab.stop();
}

/// Starts `eddy <what>` expecting it to die at its crash point (possibly before it listens);
/// returns how it ended.
fn run_until_crash(what: &str, config: &Path, log: &Path, env: &[(&str, &str)]) -> String {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let child = eddy()
        .arg(what)
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("spawn");
    Proc::spawned(child).wait_crash(what)
}

/// Every output paying `script` in the blocks above `from`, as (txid, sat).
fn outputs_paying(net: &Net, script: &bitcoin::ScriptBuf, from: u32) -> Vec<(bitcoin::Txid, u64)> {
    let tip = net.lab.chain.tip().expect("tip").0;
    let mut found = vec![];
    for h in from + 1..=tip {
        let hash = net.rt.block_on(net.chain.block_hash(h)).expect("rpc").expect("hash");
        let (block, _) = net.rt.block_on(net.chain.block(&hash)).expect("rpc").expect("block");
        for tx in &block.txdata {
            for o in tx.output.iter().filter(|o| &o.script_pubkey == script) {
                found.push((tx.compute_txid(), o.value.to_sat()));
            }
        }
    }
    found
}

/// A loop-in through the daemons with each process dying after each persisted state. Crash
/// points (`EDDY_CRASH_AT`: the process aborts on the spot, as `kill -9` would at that instant)
/// hit the moments no outside observer can aim at: the client between storing the offer and
/// broadcasting the funding, and between broadcasting it and recording it; the server between
/// storing "paying" and sending the payment. `kill -9` takes the states one can wait for
/// (client funding/funded/succeeded, server created/claiming). The swap funds
/// once, pays once and ends with exact balances on both nodes; `--max-miner-fee` and
/// `--last-hop` refusals create nothing; the server's event stream follows the loop-in.
#[test]
fn loop_in_through_the_daemons_survives_a_crash_after_every_state() {
    let (_tmp, dir) = test_dir();
    let dir = &dir;
    let net = setup(dir, 300_000);
    let Files {
        server_toml,
        client_toml,
        server_log,
        client_log,
        client_dir,
    } = net.files();
    let start_server = |crash: &str| Proc::start("server", &server_toml, &server_log, &[("EDDY_CRASH_AT", crash)]);
    let mut server = start_server("");
    let server_url = server.url.clone();
    let client_env = |crash: &'static str| {
        [
            ("EDDY_SERVER_URL", server_url.clone()),
            ("EDDY_CRASH_AT", crash.to_string()),
        ]
    };
    let start_client = |crash: &'static str| {
        let env = client_env(crash);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Proc::start("daemon", &client_toml, &client_log, &env)
    };
    let mut client = start_client("loop_in.fund.before_broadcast");
    wait_channel_usable(&client_dir, &client.url);
    let server_node = node_info(&client_dir, &client.url)["channels"][0]["peer"]
        .as_str()
        .expect("peer")
        .to_string();
    let start_height = net.lab.chain.tip().expect("tip").0;

    // Refusals, before anything is created or funded.
    let refused = |url: &str, args: &[&str]| -> String {
        let out = eddy()
            .args(args)
            .args(["--daemon", url, "--data-dir"])
            .arg(&client_dir)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} must be refused");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = refused(&client.url, &["in", "50000", "--max-miner-fee", "10"]);
    assert!(e.contains("miner fee is estimated at"), "{e}");
    // The server's node is LDK: it cannot restrict the last hop, and says so up front.
    let e = refused(&client.url, &["in", "50000", "--last-hop", &server_node]);
    assert!(e.contains("cannot restrict a payment's last hop"), "{e}");
    let stranger = bitcoin::secp256k1::PublicKey::from_secret_key(
        &bitcoin::secp256k1::Secp256k1::new(),
        &bitcoin::secp256k1::SecretKey::from_slice(&[7; 32]).expect("key"),
    )
    .to_string();
    let e = refused(&client.url, &["in", "50000", "--last-hop", &stranger]);
    assert!(e.contains("no usable channel with the last hop"), "{e}");
    // The client's channel can receive ~500,000 sat: 700,000 − (1,000 + 3,500) is too much.
    let e = refused(&client.url, &["in", "700000"]);
    assert!(
        e.contains("cannot receive: 695500 sat to receive, usable channels can receive"),
        "{e}"
    );
    // The wallet holds 300,000 sat: a loop-in of 400,000 cannot be funded, and is refused
    // before anything is created (it used to be created, then fail funding on every pass).
    let e = refused(&client.url, &["in", "400000"]);
    assert!(e.contains("cannot fund: 400"), "{e}");
    assert!(e.contains("the wallet can spend 300000 sat now"), "{e}");
    let e = refused(&client.url, &["in", "50000", "--last-hop", "02abcd"]);
    assert!(e.contains("--last-hop"), "{e}");
    assert_eq!(
        cli_json(&client_dir, &client.url, &["list"]),
        serde_json::json!([]),
        "refusals create nothing"
    );

    let mut points: Vec<String> = vec![];
    // 1. The client stores the validated offer, then dies before broadcasting the funding:
    //    the CLI's request dies with it.
    let out = eddy()
        .args(["in", "50000", "--json", "--daemon", &client.url, "--data-dir"])
        .arg(&client_dir)
        .output()
        .expect("run");
    assert!(!out.status.success(), "the daemon died while answering");
    points.push(format!(
        "client crashed before the funding broadcast ({})",
        client.wait_crash("client")
    ));
    // 2. Restarted, it funds — and dies before recording that it did.
    points.push(format!(
        "client crashed after the funding broadcast ({})",
        run_until_crash(
            "daemon",
            &client_toml,
            &client_log,
            &[
                ("EDDY_SERVER_URL", server_url.as_str()),
                ("EDDY_CRASH_AT", "loop_in.fund.after_broadcast")
            ]
        )
    ));
    // 3. Restarted again: it finds its funding in the mempool and adopts it.
    client = start_client("");
    let list = cli_json(&client_dir, &client.url, &["list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let id = list[0]["id"].as_str().expect("id").to_string();
    let htlc_script = list[0]["htlc_address"]
        .as_str()
        .expect("address")
        .parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
        .expect("address")
        .require_network(Network::Regtest)
        .expect("regtest")
        .script_pubkey();
    let client_state = |url: &str| {
        cli_json(&client_dir, url, &["swapinfo", &id])["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let wait_for = |what: &str, mut f: Box<dyn FnMut() -> bool + '_>| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(
        "the adopted funding",
        Box::new(|| client_state(&client.url) == "funding"),
    );
    let info = cli_json(&client_dir, &client.url, &["swapinfo", &id]);
    let funding_txid = info["funding_txid"].as_str().expect("funding txid").to_string();
    let broadcasts = info["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"]["event"] == "funding_broadcast")
        .count();
    assert_eq!(broadcasts, 1, "one funding recorded: {info}");
    // 4. kill -9 both: the client at `funding`, the server at `created`; the server comes back
    //    set to die between storing `paying` and sending the payment.
    lightning_quiet(dir);
    points.push(format!("client at {}", client_state(&client.url)));
    client.kill9();
    points.push(format!(
        "server at {}",
        server_status(&client_dir, &server.url, &id)["state"]
            .as_str()
            .unwrap_or("")
    ));
    server.kill9();
    server = start_server("loop_in_server.pay.before_send");
    client = start_client("");
    net.lab.mine(1).expect("mine");
    points.push(format!(
        "server crashed before sending the payment ({})",
        server.wait_crash("server")
    ));
    wait_for(
        "the client to see the funding confirmed",
        Box::new(|| client_state(&client.url) == "funded"),
    );
    // 5. kill -9 the client at `funded`. Both back: the server finds `paying` with no payment
    //    in its node and sends it (retrying while the channel is re-established), then claims.
    //    (No crash point right after the send: with ldk-node a process killed in the moment
    //    between a channel update and the node's next ChannelManager write force-closes the
    //    channel on restart — measured, docs/measured.md. Funds stay safe, but that is LDK's
    //    recovery on-chain, not a state of the swap.)
    lightning_quiet(dir);
    points.push(format!("client at {}", client_state(&client.url)));
    client.kill9();
    client = start_client("");
    server = start_server("");
    wait_for(
        "the server to claim",
        Box::new(|| server_status(&client_dir, &server.url, &id)["state"] == "claiming"),
    );
    // The payment just crossed the channel: let both nodes write their channel state.
    lightning_quiet(dir);
    points.push(format!("client at {}", client_state(&client.url)));
    client.kill9();
    points.push(format!(
        "server at {}",
        server_status(&client_dir, &server.url, &id)["state"]
            .as_str()
            .unwrap_or("")
    ));
    server.kill9();
    server = start_server("");
    client = start_client("");
    // The server's event stream follows the loop-in to its end (asked as the client: signed
    // with the swap's refund key).
    let stream_path = format!("/v1/swaps/{id}/events");
    let stream_url = format!("{}{stream_path}", server.url);
    let swap_id: eddy_core::types::SwapId = id.parse().expect("id");
    let stream_auth = eddy_core::auth::sign(
        &eddy_store::SeedKeys::load_or_create(&client_dir, eddy_client::SEED_FILE)
            .expect("seed")
            .secret(eddy_client::loop_in::KEY_PURPOSE, &swap_id),
        &swap_id,
        unix_now(),
        "GET",
        &stream_path,
        &[],
    );
    let (stx, srx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            let Ok(mut resp) = reqwest::Client::new()
                .get(stream_url)
                .header(eddy_core::auth::HEADER, stream_auth)
                .send()
                .await
            else {
                return;
            };
            let mut text = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
            let _ = stx.send(text);
        });
    });
    wait_for(
        "both sides to succeed",
        Box::new(|| {
            let s = server_status(&client_dir, &server.url, &id)["state"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if s == "claiming" {
                let _ = net.lab.mine(1);
                std::thread::sleep(Duration::from_millis(500));
            }
            s == "succeeded" && client_state(&client.url) == "succeeded"
        }),
    );
    let stream = srx.recv_timeout(Duration::from_secs(10)).expect("the stream ends");
    let states: Vec<String> = stream
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .map(|v| v["state"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(states.first().map(String::as_str), Some("claiming"), "{stream}");
    assert_eq!(states.last().map(String::as_str), Some("succeeded"), "{stream}");

    eprintln!("crash points: {points:?}");
    assert_eq!(points.len(), 8, "{points:?}");
    assert_eq!(points[2], "client at funding", "{points:?}");
    assert_eq!(points[3], "server at created", "{points:?}");
    assert_eq!(points[5], "client at funded", "{points:?}");
    assert_eq!(points[7], "server at claiming", "{points:?}");

    // One funding output, the one the client recorded; the server claimed it.
    let fundings = outputs_paying(&net, &htlc_script, start_height);
    assert_eq!(fundings.len(), 1, "funded exactly once: {fundings:?}");
    assert_eq!(fundings[0], (funding_txid.parse().expect("txid"), 50_000));
    let funding_tx = net
        .rt
        .block_on(net.chain.transaction(&fundings[0].0))
        .expect("rpc")
        .expect("funding tx")
        .tx;
    let funding_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &funding_tx))
        .expect("fee")
        .to_sat();
    std::thread::sleep(Duration::from_millis(2_500));
    let metrics = net.rt.block_on(async {
        ::reqwest::get(format!("http://127.0.0.1:{}/metrics", net.server_metrics))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    });
    let wallet_after = metrics
        .lines()
        .find_map(|l| l.strip_prefix("eddy_server_swap_wallet_spendable_sat "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no wallet gauge in {metrics}"));
    server.terminate();
    client.terminate();
    // The server's store: this one loop-in, succeeded, claimed once.
    let store = net
        .rt
        .block_on(eddy_store::SqliteStore::open(&dir.join("server").join("server.sqlite")))
        .expect("server store");
    let swaps = net
        .rt
        .block_on(eddy_store::SwapStore::list(&store, eddy_store::ListFilter::All))
        .expect("list");
    assert_eq!(swaps.len(), 1);
    assert_eq!(swaps[0].state_name, "succeeded");
    // Of the claims it broadcast (key path co-signed, or script path, or bumped), one confirmed.
    let confirmed: Vec<bitcoin::Transaction> = swaps[0].state["claim"]["all"]
        .as_array()
        .expect("claims")
        .iter()
        .filter_map(|t| t.as_str().and_then(|t| t.parse::<bitcoin::Txid>().ok()))
        .filter_map(|t| net.rt.block_on(net.chain.transaction(&t)).expect("rpc"))
        .filter(|t| t.block.is_some())
        .map(|t| t.tx)
        .collect();
    assert_eq!(confirmed.len(), 1, "one claim confirmed");
    let claim_fee = 50_000 - confirmed[0].output.iter().map(|o| o.value.to_sat()).sum::<u64>();

    // Exact money, read from the nodes' own stores: one payment of amount − fee (50,000 −
    // 1,250), one funding of 50,000 plus its fee, one claim into the swap wallet.
    let [(s_ln0, _), (c_ln0, c_chain0)] = net.before;
    let (c_ln, c_chain) = net.balances("client", net.client_port);
    let (s_ln, _) = net.balances("server", net.server_port);
    assert_eq!(c_ln, c_ln0 + 48_750, "client channel: paid once");
    assert_eq!(s_ln, s_ln0 - 48_750, "server channel: paid once");
    assert_eq!(c_chain, c_chain0 - 50_000 - funding_fee, "client on-chain: funded once");
    assert_eq!(
        wallet_after,
        50_000 - claim_fee,
        "server swap wallet: the HTLC less the claim fee"
    );
    net.lab.stop();
}

/// A relay in front of the devnet's RPC, for one daemon: Eddy's own calls (its `User-Agent`)
/// always pass; while `frozen`, ldk-node's (it sends none) are refused — the daemon's embedded
/// node then stops following the chain while its chain source is fine, as when ldk-node's
/// sync died under a file-handle flood (issue 13).
struct RpcRelay {
    url: String,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

fn rpc_relay(net: &Net) -> RpcRelay {
    use axum::body::Bytes;
    use axum::http::{header, HeaderMap, StatusCode};
    use std::sync::atomic::{AtomicBool, Ordering};
    let frozen = Arc::new(AtomicBool::new(false));
    let upstream = net.lab.chain.url();
    let http = reqwest::Client::new();
    let state = (upstream, frozen.clone(), http);
    let app = axum::Router::new()
        .fallback(
            |axum::extract::State((up, frozen, http)): axum::extract::State<(
                String,
                Arc<AtomicBool>,
                reqwest::Client,
            )>,
             headers: HeaderMap,
             body: Bytes| async move {
                let eddy = headers
                    .get(header::USER_AGENT)
                    .is_some_and(|v| v.as_bytes().starts_with(b"eddy/"));
                let json = [(header::CONTENT_TYPE, "application/json")];
                if frozen.load(Ordering::SeqCst) && !eddy {
                    return (StatusCode::SERVICE_UNAVAILABLE, json, Bytes::new());
                }
                let mut req = http.post(&up).body(body);
                if let Some(a) = headers.get(header::AUTHORIZATION) {
                    req = req.header(header::AUTHORIZATION, a.clone());
                }
                match req.send().await {
                    Ok(r) => {
                        let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                        (status, json, r.bytes().await.unwrap_or_default())
                    }
                    Err(_) => (StatusCode::BAD_GATEWAY, json, Bytes::new()),
                }
            },
        )
        .with_state(state);
    let listener = net
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind relay");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    net.rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    RpcRelay { url, frozen }
}

/// **Issue 13: a daemon whose Lightning node stopped following the chain starts no swap, and
/// exits for its supervisor when it stays so** (and first: its monitor streams are capped).
/// The client daemon's embedded node loses its
/// chain sync (its RPC calls refused by a relay; the daemon's own chain source still works);
/// the chain moves on 3 blocks. The watchdog sees the node 3 blocks behind: `GET /v1/node`
/// says so, `eddy out` and `eddy in` are refused (503, saying why) and create nothing — no
/// swap, channel and wallet to the sat as before. The node catches up: the gate opens again
/// (the next refusal is the server's, about the amount). Frozen again for longer than
/// `node_lag_exit_secs`, the daemon exits non-zero; restarted still blind, it refuses swaps
/// at once (no grace after a start); restarted with its sync back, its node follows and holds
/// the same balances.
#[test]
fn daemon_whose_node_stops_following_the_chain_starts_no_swap() {
    use std::sync::atomic::Ordering;
    let (_tmp, dir) = test_dir();
    let dir = &dir;
    let net = setup(dir, 300_000);
    let Files {
        server_toml,
        client_toml,
        server_log,
        client_log,
        client_dir,
    } = net.files();
    let relay = rpc_relay(&net);
    let text = std::fs::read_to_string(&client_toml)
        .expect("client.toml")
        .replace(&net.lab.chain.url(), &relay.url)
        + "node_lag_grace_secs = 0\nnode_lag_exit_secs = 20\n";
    std::fs::write(&client_toml, text).expect("client.toml");
    let server = Proc::start("server", &server_toml, &server_log, &[]);
    let env = [("EDDY_SERVER_URL", server.url.as_str())];
    let client = Proc::start("daemon", &client_toml, &client_log, &env);
    wait_channel_usable(&client_dir, &client.url);
    let wait_for = |url: &str, what: &str, f: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = node_info(&client_dir, url);
            if f(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let before = wait_for(&client.url, "following at the start", &|v| v["following_chain"] == true);

    // The monitor streams have a budget of their own: the one past it is refused (503, saying
    // what to do) and a closed stream gives its place back.
    let token = std::fs::read_to_string(client_dir.join("api.token")).expect("token");
    let http = reqwest::Client::new();
    let open_monitor = || {
        net.rt
            .block_on(
                http.get(format!("{}/v1/monitor", client.url))
                    .bearer_auth(token.trim())
                    .send(),
            )
            .expect("monitor")
    };
    let mut held: Vec<reqwest::Response> = (0..eddy::daemon::MAX_MONITOR_STREAMS).map(|_| open_monitor()).collect();
    assert!(held.iter().all(|r| r.status() == 200));
    let refused = open_monitor();
    assert_eq!(refused.status(), 503);
    let body = net.rt.block_on(refused.text()).expect("body");
    assert!(
        body.contains("16 monitor streams already open on this daemon"),
        "{body}"
    );
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = open_monitor();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "a closed stream never gave its place back");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(held);
    let money = |v: &Value| (v["onchain_sat"].clone(), v["channels"][0]["local_msat"].clone());
    let (onchain0, local0) = money(&before);
    assert_eq!(onchain0, 300_000, "{before}");

    // The node's sync dies; the chain moves on.
    relay.frozen.store(true, Ordering::SeqCst);
    let stuck_at = net.lab.chain.tip().expect("tip").0;
    net.lab.mine(3).expect("mine");
    let lagging = wait_for(&client.url, "the watchdog sees the node behind", &|v| {
        v["blocks_behind"] == 3
    });
    assert_eq!(lagging["following_chain"], false, "{lagging}");
    assert_eq!(lagging["block_height"], stuck_at, "{lagging}");
    let err = cli_fails(&client_dir, &client.url, &["out", "100000"]);
    assert!(
        err.contains("the Lightning node is not following the chain (3 blocks behind the chain source)"),
        "{err}"
    );
    let err = cli_fails(&client_dir, &client.url, &["in", "100000"]);
    assert!(err.contains("not following the chain"), "{err}");
    assert_eq!(
        cli_json(&client_dir, &client.url, &["list"]),
        serde_json::json!([]),
        "refusals create nothing"
    );
    assert_eq!(
        money(&node_info(&client_dir, &client.url)),
        (onchain0.clone(), local0.clone())
    );

    // The sync is back: the node catches up and the gate opens (what refuses 1 sat now is the
    // server's amount check, after the gate).
    relay.frozen.store(false, Ordering::SeqCst);
    // "Following" allows one block of lag (a node a block behind is in step): wait for the
    // node at the tip itself, which a CI run once read a block early.
    let caught_up = wait_for(&client.url, "caught up", &|v| {
        v["following_chain"] == true && v["block_height"] == stuck_at + 3
    });
    assert_eq!(caught_up["block_height"], stuck_at + 3, "{caught_up}");
    let err = cli_fails(&client_dir, &client.url, &["out", "1"]);
    assert!(!err.contains("not following the chain"), "{err}");
    assert_eq!(cli_json(&client_dir, &client.url, &["list"]), serde_json::json!([]));

    // Frozen for longer than node_lag_exit_secs: the daemon exits non-zero, saying why.
    relay.frozen.store(true, Ordering::SeqCst);
    net.lab.mine(3).expect("mine");
    let status = client.wait_crash_within("client", Duration::from_secs(90));
    let log = std::fs::read_to_string(&client_log).expect("log");
    assert!(
        log.contains("the Lightning node has not followed the chain for too long: exiting for a restart"),
        "{status}: {log}"
    );
    // Its supervisor restarts it while the sync is still broken: the gate is closed from the
    // start (no grace after a restart), and nothing is created.
    let client = Proc::start("daemon", &client_toml, &client_log, &env);
    let err = cli_fails(&client_dir, &client.url, &["out", "100000"]);
    assert!(
        err.contains("the Lightning node has not yet been seen following the chain"),
        "{err}"
    );
    assert_eq!(cli_json(&client_dir, &client.url, &["list"]), serde_json::json!([]));
    client.kill9();
    // Restarted with the sync back: it follows, with the same money.
    relay.frozen.store(false, Ordering::SeqCst);
    let client = Proc::start("daemon", &client_toml, &client_log, &env);
    let tip = net.lab.chain.tip().expect("tip").0;
    let v = wait_for(&client.url, "following after the restart", &|v| {
        v["following_chain"] == true && v["block_height"] == tip && v["channels"][0]["usable"] == true
    });
    assert_eq!(money(&v), (onchain0, local0));
    client.terminate();
    server.terminate();
}

/// Whether a transaction in the mempool spends `outpoint`.
fn in_mempool_spending(net: &Net, outpoint: bitcoin::OutPoint) -> bool {
    let txids: Vec<String> = net
        .lab
        .chain
        .rpc("getrawmempool", serde_json::json!([]))
        .unwrap_or_default();
    txids.iter().any(|t| {
        net.lab
            .chain
            .rpc::<String>("getrawtransaction", serde_json::json!([t]))
            .ok()
            .and_then(|hex| bitcoin::consensus::encode::deserialize_hex::<bitcoin::Transaction>(&hex).ok())
            .is_some_and(|tx| tx.input.iter().any(|i| i.previous_output == outpoint))
    })
}

/// The transaction spending `outpoint` in one of the last 30 blocks.
fn spender_of(net: &Net, outpoint: bitcoin::OutPoint) -> Option<bitcoin::Transaction> {
    let tip = net.lab.chain.tip().expect("tip").0;
    (tip.saturating_sub(30)..=tip).rev().find_map(|h| {
        let hash = net.rt.block_on(net.chain.block_hash(h)).expect("rpc").expect("hash");
        let (block, _) = net.rt.block_on(net.chain.block(&hash)).expect("rpc").expect("block");
        block
            .txdata
            .into_iter()
            .find(|t| t.input.iter().any(|i| i.previous_output == outpoint))
    })
}

/// `eddy daemon --provider boltz` against an Eddy server's Boltz API v2 front door, both
/// directions, as two processes with the CLI: the daemon runs its loop-out as a reverse swap
/// and its loop-in as a submarine swap paying its own invoice, with every check it makes
/// against `/v1` (the address rebuilt from its own data, the invoice's hash and amount, the fee
/// against its limit, the timeout inside its window). The terms and quotes are Boltz's pairs
/// read as Eddy's (0.5 % of the invoice + 1,000 sat; no prepay). Loop-out: 100,000 sat on chain
/// for an invoice of 101,508 sat (100,000 + 1,000 over 99.5 %, rounded up), claimed by the key
/// path with the server's co-signature (one witness element). Loop-in: 50,000 sat locked for
/// an invoice of 48,756 sat (48,756 + ceil(0.5 % of it) + 1,000 = 50,000); the server claims by
/// the key path with the client's co-signature of the sighash it offered. Exact money on both
/// nodes and the server's swap wallet.
#[test]
fn a_boltz_provider_daemon_swaps_both_ways_with_an_eddy_server_s_v2_front_door() {
    let (_tmp, dir) = test_dir();
    let dir = &dir;
    let net = setup(dir, 0);
    let Files {
        server_toml,
        client_toml,
        server_log,
        client_log,
        client_dir,
    } = net.files();
    let seed = eddy_store::SeedKeys::load_or_create(&dir.join("server"), eddy_server::SEED_FILE).expect("seed");
    let wallet = eddy_server::wallet::SwapWallet::new(&seed, Network::Regtest);
    net.lab
        .chain
        .fund(wallet.address(), Amount::from_sat(600_000))
        .expect("fund");
    net.lab.mine(1).expect("mine");
    let rescan = net.lab.chain.tip().expect("tip").0.to_string();
    let server = Proc::start(
        "server",
        &server_toml,
        &server_log,
        &[("EDDY_WALLET_RESCAN_FROM", rescan.as_str())],
    );
    // `--provider` on the command line over the file and environment.
    let client = Proc::start_with_args(
        "daemon",
        &client_toml,
        &client_log,
        &[("EDDY_SERVER_URL", &server.url)],
        &["--provider", "boltz"],
    );
    let terms = cli_json(&client_dir, &client.url, &["terms"]);
    assert_eq!(
        (&terms["prepay_sat"], &terms["base_fee_sat"], &terms["fee_ppm"]),
        (&Value::from(0), &Value::from(1_000), &Value::from(5_000)),
        "{terms}"
    );
    let quote = cli_json(&client_dir, &client.url, &["quote", "out", "100000"]);
    assert_eq!(
        (&quote["swap_fee_sat"], &quote["swap_invoice_sat"], &quote["prepay_sat"]),
        (&Value::from(1_508), &Value::from(101_508), &Value::from(0)),
        "{quote}"
    );
    let quote_in = cli_json(&client_dir, &client.url, &["quote", "in", "50000"]);
    assert_eq!(
        (&quote_in["swap_fee_sat"], &quote_in["invoice_sat"]),
        (&Value::from(1_244), &Value::from(48_756)),
        "{quote_in}"
    );
    // 49,844 sat has no invoice amount: 0.5 % rounds past it (49,843 or 49,845 can be had).
    let skipped = cli_fails(&client_dir, &client.url, &["quote", "in", "49844"]);
    assert!(
        skipped.contains("no invoice makes the provider ask exactly 49844 sat") && skipped.contains("49843 or 49845"),
        "{skipped}"
    );

    wait_channel_usable(&client_dir, &client.url);
    let out = cli_json(&client_dir, &client.url, &["out", "100000"]);
    let id = out["id"].as_str().expect("id").to_string();
    assert_eq!(
        (&out["swap_invoice_sat"], &out["prepay_sat"]),
        (&Value::from(101_508), &Value::from(0)),
        "{out}"
    );
    let state = |id: &str| {
        cli_json(&client_dir, &client.url, &["swapinfo", id])["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let mine_until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            let _ = net.lab.mine(1);
            std::thread::sleep(Duration::from_millis(700));
        }
    };
    mine_until("the loop-out", &|| state(&id) == "succeeded");
    let info = cli_json(&client_dir, &client.url, &["swapinfo", &id]);
    let claim_fee = info["claim_fee_sat"].as_u64().expect("claim fee");
    let claim_txid: bitcoin::Txid = info["claim_txid"].as_str().expect("claim").parse().expect("txid");
    let claim = net
        .rt
        .block_on(net.chain.transaction(&claim_txid))
        .expect("rpc")
        .expect("claim tx")
        .tx;
    assert_eq!(claim.input[0].witness.len(), 1, "a key-path claim, co-signed over /v2");
    let htlc = claim.input[0].previous_output;
    let htlc_tx = net
        .rt
        .block_on(net.chain.transaction(&htlc.txid))
        .expect("rpc")
        .expect("HTLC tx")
        .tx;
    let publish_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &htlc_tx))
        .expect("fee")
        .to_sat();

    wait_channel_usable(&client_dir, &client.url);
    let from = net.lab.chain.tip().expect("tip").0;
    let lin = cli_json(&client_dir, &client.url, &["in", "50000"]);
    let in_id = lin["id"].as_str().expect("id").to_string();
    assert_eq!(lin["swap_invoice_sat"], 48_756, "{lin}");
    let address: bitcoin::Address<bitcoin::address::NetworkUnchecked> =
        lin["htlc_address"].as_str().expect("address").parse().expect("address");
    let script = address.assume_checked().script_pubkey();
    // Blocks until the daemon's funding is confirmed (the server pays at one confirmation);
    // then none: after paying, the server gives the daemon one block to co-sign its claim, and
    // a test mining blocks faster than a loaded machine runs the daemon's passes would make
    // it claim by the script path.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = state(&in_id);
        if s == "paid" || s == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the loop-in never paid: {s}");
        if s != "funded" {
            let _ = net.lab.mine(1);
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    let fundings = outputs_paying(&net, &script, from);
    assert_eq!(fundings.len(), 1, "funded once: {fundings:?}");
    let (funding_txid, value) = fundings[0];
    assert_eq!(value, 50_000);
    let funding_tx = net
        .rt
        .block_on(net.chain.transaction(&funding_txid))
        .expect("rpc")
        .expect("funding tx")
        .tx;
    let vout = funding_tx
        .output
        .iter()
        .position(|o| o.script_pubkey == script)
        .expect("HTLC output");
    let funding_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &funding_tx))
        .expect("fee")
        .to_sat();
    let lockup = bitcoin::OutPoint::new(funding_txid, u32::try_from(vout).expect("vout"));
    // The key-path claim reaches the mempool without another block; then it confirms.
    eddy_lab::wait_until("the server's co-signed claim in the mempool", eddy_lab::WAIT, || {
        in_mempool_spending(&net, lockup)
    })
    .expect("a claim of the lockup");
    mine_until("the loop-in", &|| state(&in_id) == "succeeded");
    mine_until("the server's claim", &|| spender_of(&net, lockup).is_some());
    let in_claim = spender_of(&net, lockup).expect("server's claim");
    assert_eq!(
        in_claim.input[0].witness.len(),
        1,
        "the server claimed by the key path with the daemon's co-signature of its sighash"
    );
    let in_claim_fee = 50_000 - in_claim.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
    // The server's swap wallet, after both: one HTLC out, one lockup claimed in.
    let wallet_balance = || {
        let metrics = net.rt.block_on(async {
            ::reqwest::get(format!("http://127.0.0.1:{}/metrics", net.server_metrics))
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text")
        });
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("eddy_server_swap_wallet_spendable_sat "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let expected_wallet = 600_000 - 100_000 - publish_fee + 50_000 - in_claim_fee;
    let deadline = Instant::now() + Duration::from_secs(30);
    while wallet_balance() != Some(expected_wallet) {
        assert!(
            Instant::now() < deadline,
            "server swap wallet {:?}, expected {expected_wallet}",
            wallet_balance()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.terminate();
    client.terminate();
    let [(s_ln0, _), (c_ln0, c_chain0)] = net.before;
    let (c_ln, c_chain) = net.balances("client", net.client_port);
    let (s_ln, _) = net.balances("server", net.server_port);
    assert_eq!(c_ln, c_ln0 - 101_508 + 48_756, "client channel");
    assert_eq!(s_ln, s_ln0 + 101_508 - 48_756, "server channel");
    assert_eq!(
        c_chain,
        c_chain0 + 100_000 - claim_fee - 50_000 - funding_fee,
        "client on-chain: one claim in, one funding out"
    );
    net.lab.stop();
}
