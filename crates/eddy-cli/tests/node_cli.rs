//! Issue 14: the embedded nodes and the swap wallet operated through the `eddy` binary only.
//! The devnet, a real `eddy server` and a real `eddy daemon` start with unfunded nodes and no
//! channel; everything after that is `eddy node …` and `eddy wallet …` (the daemon's API, the
//! server's admin API with its own token), the devnet only funding addresses the CLI printed
//! and mining. Every balance is asserted to the sat, every miner fee read from the chain.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::{Address, Amount, FeeRate, Network, Txid};
use eddy_backends::bitcoind::{BitcoindAuth, BitcoindSource};
use eddy_backends::ChainSource;
use eddy_lab::{Lab, LabConfig};
use serde_json::Value;

mod common;
use common::{eddy, rt, test_dir, Proc};

/// One `eddy` call against an API: `(success, stdout, stderr)`.
fn run(url: &str, token: &Path, args: &[&str]) -> (bool, String, String) {
    // The server's admin API by --admin, the daemon's by --daemon.
    let flag = if token.ends_with("admin.token") {
        "--admin"
    } else {
        "--daemon"
    };
    let out = eddy()
        .args(args)
        .arg(flag)
        .arg(url)
        .arg("--token-file")
        .arg(token)
        .output()
        .expect("run eddy");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `eddy … --json`, asserting success.
fn json(url: &str, token: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out, err) = run(url, token, &a);
    assert!(ok, "eddy {args:?}: {err}{out}");
    serde_json::from_str(&out).expect("json")
}

/// `eddy …` expected to fail; its stderr.
fn fails(url: &str, token: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run(url, token, args);
    assert!(!ok, "eddy {args:?} should fail: {out}");
    err
}

/// Polls `eddy node info --json` until `f` holds.
fn wait_info(url: &str, token: &Path, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = json(url, token, &["node", "info"]);
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn sat(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn nodes_and_swap_wallet_are_operated_through_the_cli() {
    let (_tmp, dir) = test_dir();
    let dir: &Path = &dir;
    let lab = Lab::start(LabConfig::new(dir, 0)).expect("lab");
    let rt = rt();
    let (_, _, user, password) = lab.chain.rpc_credentials();
    let chain: Arc<dyn ChainSource> = Arc::new(
        rt.block_on(BitcoindSource::connect(
            &lab.chain.url(),
            &BitcoindAuth::UserPass(user.clone(), password.clone()),
            FeeRate::from_sat_per_kwu(500),
        ))
        .expect("chain"),
    );
    let fee_of = |txid: &str| -> u64 {
        let txid: Txid = txid.parse().expect("txid");
        let tx = rt.block_on(chain.transaction(&txid)).expect("rpc").expect("tx").tx;
        rt.block_on(eddy_backends::fee_paid(chain.as_ref(), &tx))
            .expect("fee")
            .to_sat()
    };
    let port = || eddy_lab::LabChain::free_port_pub().expect("port");
    let (server_ln, client_ln) = (port(), port());
    let common = |who: &str, api: u16, ldk: u16| {
        [
            "network = \"regtest\"".to_string(),
            format!("data_dir = \"{}\"", dir.join(who).display()),
            format!("listen = \"127.0.0.1:{api}\""),
            format!("bitcoind_url = \"{}\"", lab.chain.url()),
            format!("bitcoind_user = \"{user}\""),
            format!("bitcoind_password = \"{password}\""),
            format!("ldk_listen = \"127.0.0.1:{ldk}\""),
        ]
        .join("\n")
    };
    // A deposit to the swap wallet made before the server ever ran: found only by a rescan.
    std::fs::create_dir_all(dir.join("server")).expect("dir");
    let seed = eddy_store::SeedKeys::load_or_create(&dir.join("server"), eddy_server::SEED_FILE).expect("seed");
    let swap_wallet = eddy_server::wallet::SwapWallet::new(&seed, Network::Regtest);
    lab.chain
        .fund(swap_wallet.address(), Amount::from_sat(300_000))
        .expect("fund");
    lab.chain.mine(1).expect("mine");
    let early_deposit_height = lab.chain.tip().expect("tip").0;
    lab.chain.mine(2).expect("mine");

    let server_toml = dir.join("server.toml");
    std::fs::write(
        &server_toml,
        common("server", port(), server_ln)
            + &format!(
                "\nmetrics_listen = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\n",
                port(),
                port()
            ),
    )
    .expect("server.toml");
    let server = Proc::start("server", &server_toml, &dir.join("server.log"), &[]);
    let admin = server
        .printed("admin API on ")
        .and_then(|l| {
            l.split("admin API on ")
                .nth(1)
                .map(|s| s.split(' ').next().unwrap_or("").to_string())
        })
        .expect("admin URL printed");
    let admin_token: PathBuf = dir.join("server").join("admin.token");
    let client_toml = dir.join("client.toml");
    std::fs::write(&client_toml, common("client", port(), client_ln)).expect("client.toml");
    let daemon = Proc::start(
        "daemon",
        &client_toml,
        &dir.join("client.log"),
        &[("EDDY_SERVER_URL", server.url.as_str())],
    );
    let (s, st) = (admin.as_str(), admin_token.as_path());
    let client_token = dir.join("client").join("api.token");
    let (c, ct) = (daemon.url.as_str(), client_token.as_path());

    // The admin API wants its own token: the daemon's is refused, as is none.
    let err = fails(s, ct, &["node", "info"]);
    assert!(
        err.contains("missing or wrong token") && err.contains("admin.token"),
        "{err}"
    );
    // Not on the public API either.
    let (ok, _, err) = run(&server.url, st, &["node", "info"]);
    assert!(
        !ok && err.contains("404"),
        "the node routes are not on the public API: {err}"
    );

    // Fund both nodes at addresses the CLI printed.
    let server_info = json(s, st, &["node", "info"]);
    let client_info = json(c, ct, &["node", "info"]);
    assert_eq!(server_info["network"], "regtest");
    assert_eq!(sat(&server_info, "onchain_sat"), 0);
    assert_eq!(server_info["channels"], serde_json::json!([]));
    let server_id = server_info["node_id"].as_str().expect("id").to_string();
    let client_id = client_info["node_id"].as_str().expect("id").to_string();
    let client_listen = client_info["listening"][0].as_str().expect("listening").to_string();
    assert_eq!(client_listen, format!("127.0.0.1:{client_ln}"));
    let addr = |url: &str, token: &Path| -> Address {
        json(url, token, &["node", "address"])["address"]
            .as_str()
            .expect("address")
            .parse::<Address<_>>()
            .expect("parse")
            .require_network(Network::Regtest)
            .expect("regtest")
    };
    lab.chain.fund(&addr(s, st), Amount::from_sat(2_000_000)).expect("fund");
    lab.chain.fund(&addr(c, ct), Amount::from_sat(1_000_000)).expect("fund");
    lab.chain.mine(1).expect("mine");
    wait_info(s, st, "server funded", |v| sat(v, "onchain_spendable_sat") == 2_000_000);
    wait_info(c, ct, "client funded", |v| sat(v, "onchain_spendable_sat") == 1_000_000);

    // Refusals with what to do, nothing spent.
    let err = fails(
        c,
        ct,
        &["node", "send", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "1000"],
    );
    assert!(err.contains("is not an address for the regtest network"), "{err}");
    let err = fails(s, st, &["node", "open", &client_id, "5000000"]);
    assert!(err.contains("not connected to") || err.contains("can spend"), "{err}");
    let err = fails(
        s,
        st,
        &["node", "open", &format!("{client_id}@{client_listen}"), "5000000"],
    );
    assert!(
        err.contains("the wallet can spend 2000000 sat, less than the 5000000 sat channel"),
        "{err}"
    );
    let err = fails(s, st, &["node", "connect", "02ab@127.0.0.1:1"]);
    assert!(err.contains("is not a node public key"), "{err}");

    // Connect, open 1,000,000 sat pushing 500,000, confirm.
    let connected = json(s, st, &["node", "connect", &format!("{client_id}@{client_listen}")]);
    assert_eq!(connected["peer"], format!("{client_id}@{client_listen}"));
    // To the client the server is an inbound peer, known only by the port it connected from:
    // a channel by bare PUBKEY would be remembered there and never reconnected. Refused.
    let err = fails(c, ct, &["node", "open", &server_id, "100000"]);
    assert!(
        err.contains("connected to this node from") && err.contains("give the address it listens on"),
        "{err}"
    );
    assert_eq!(
        sat(&json(c, ct, &["node", "info"]), "onchain_sat"),
        1_000_000,
        "nothing spent"
    );
    let opened = json(s, st, &["node", "open", &client_id, "1000000", "--push", "500000"]);
    let channel_id = opened["id"].as_str().expect("channel's id").to_string();
    assert_eq!(channel_id.len(), 32, "{opened}");
    // Its funding transaction, once the peers exchanged signatures and the node broadcast it.
    let funding_txid = wait_info(s, st, "funding known", |v| v["channels"][0]["funding"].is_string())["channels"][0]
        ["funding"]
        .as_str()
        .and_then(|f| f.split(':').next())
        .expect("funding outpoint")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pool: Vec<String> = lab.chain.rpc("getrawmempool", serde_json::json!([])).expect("mempool");
        if pool.contains(&funding_txid) {
            break;
        }
        assert!(Instant::now() < deadline, "the funding transaction was never broadcast");
        std::thread::sleep(Duration::from_millis(200));
    }
    lab.chain.mine(6).expect("mine");
    let server_open = wait_info(s, st, "channel usable (server)", |v| v["channels"][0]["usable"] == true);
    let client_open = wait_info(c, ct, "channel usable (client)", |v| v["channels"][0]["usable"] == true);
    assert_eq!(server_open["channels"][0]["id"], channel_id.as_str());
    assert_eq!(server_open["channels"][0]["peer"], client_id.as_str());
    assert_eq!(client_open["channels"][0]["peer"], server_id.as_str());
    assert_eq!(sat(&client_open, "lightning_sat"), 500_000, "the push: {client_open}");
    let channels = json(s, st, &["node", "channels"]);
    assert_eq!(channels[0]["capacity_sat"], 1_000_000);
    // The funding transaction: the server's wallet paid the capacity and its fee, exactly.
    assert_eq!(
        channels[0]["funding"].as_str().and_then(|f| f.split(':').next()),
        Some(funding_txid.as_str())
    );
    let open_fee = fee_of(&funding_txid);
    assert_eq!(
        sat(&server_open, "onchain_sat"),
        2_000_000 - 1_000_000 - open_fee,
        "{server_open}"
    );
    let server_ln0 = sat(&server_open, "lightning_sat");

    // A quick payment: client invoice, server pays; exactly 10,000 sat moves.
    let inv = json(c, ct, &["node", "invoice", "10000", "--description", "check"]);
    let bolt11 = inv["invoice"].as_str().expect("invoice").to_string();
    let err = fails(c, ct, &["node", "pay", &bolt11]);
    assert!(err.contains("this invoice is this node's own"), "{err}");
    let paid = json(s, st, &["node", "pay", &bolt11]);
    assert_eq!(paid["status"], "succeeded", "{paid}");
    assert_eq!(paid["fee_msat"], 0, "direct channel: no routing fee");
    assert_eq!(paid["payment_hash"], inv["payment_hash"]);
    let client_paid = wait_info(c, ct, "payment received", |v| sat(v, "lightning_sat") == 510_000);
    let server_paid = wait_info(s, st, "payment sent", |v| {
        sat(v, "lightning_sat") == server_ln0 - 10_000
    });
    let _ = (client_paid, server_paid);

    // On-chain send from the client node: exactly the amount and the fee leave its wallet.
    let dest = lab.chain.faucet_address().expect("address");
    let sent = json(c, ct, &["node", "send", &dest.to_string(), "100000", "--fee-rate", "2"]);
    let send_txid = sent["txid"].as_str().expect("txid").to_string();
    assert_eq!(sent["broadcast"], true, "answered once the chain has it: {sent}");
    lab.chain.mine(1).expect("mine");
    let send_fee = fee_of(&send_txid);
    wait_info(c, ct, "send confirmed", |v| {
        sat(v, "onchain_sat") == 1_000_000 - 100_000 - send_fee
    });

    // The swap wallet: the early deposit is not seen until a rescan from its block.
    let w = json(s, st, &["wallet", "balance"]);
    assert_eq!(w["address"], swap_wallet.address().to_string());
    assert_eq!(sat(&w, "spendable_sat"), 0, "{w}");
    let err = fails(s, st, &["wallet", "withdraw", &dest.to_string(), "1000"]);
    assert!(err.contains("(422"), "{err}");
    let rescanned = json(s, st, &["wallet", "rescan", &early_deposit_height.to_string()]);
    assert_eq!(rescanned["from_height"], early_deposit_height);
    let w = json(s, st, &["wallet", "balance"]);
    assert_eq!(
        (
            sat(&w, "spendable_sat"),
            sat(&w, "promised_sat"),
            sat(&w, "withdrawable_sat")
        ),
        (300_000, 0, 300_000),
        "{w}"
    );
    // A deposit through the address the CLI prints, then a withdrawal of exactly 100,000.
    let deposit_to: Address = json(s, st, &["wallet", "address"])["address"]
        .as_str()
        .expect("address")
        .parse::<Address<_>>()
        .expect("parse")
        .assume_checked();
    lab.chain.fund(&deposit_to, Amount::from_sat(200_000)).expect("fund");
    lab.chain.mine(1).expect("mine");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sat(&json(s, st, &["wallet", "balance"]), "spendable_sat") != 500_000 {
        assert!(Instant::now() < deadline, "deposit never seen");
        std::thread::sleep(Duration::from_millis(250));
    }
    let err = fails(s, st, &["wallet", "withdraw", &dest.to_string(), "600000"]);
    assert!(err.contains("swap wallet has 500000 sat spendable"), "{err}");
    let out = json(
        s,
        st,
        &["wallet", "withdraw", &dest.to_string(), "100000", "--fee-rate", "3"],
    );
    assert_eq!(out["amount_sat"], 100_000);
    let w_fee = sat(&out, "fee_sat");
    assert_eq!(
        w_fee,
        fee_of(out["txid"].as_str().expect("txid")),
        "the fee it reports is the fee paid"
    );
    lab.chain.mine(1).expect("mine");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sat(&json(s, st, &["wallet", "balance"]), "spendable_sat") != 500_000 - 100_000 - w_fee {
        assert!(Instant::now() < deadline, "withdrawal never settled");
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = std::fs::read_to_string(dir.join("server.log")).expect("log");
    assert!(log.contains("swap wallet withdrawal"), "logged");
    // Every deposit is logged, confirmed (the early one found by the rescan): the two deposits
    // and nothing else — the withdrawal's change is no deposit.
    let deposits: Vec<&str> = log.lines().filter(|l| l.contains("swap wallet deposit")).collect();
    let confirmed: Vec<u64> = deposits
        .iter()
        .filter(|l| l.contains("swap wallet deposit confirmed"))
        .filter_map(|l| l.split("value_sat=").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        confirmed.contains(&300_000) && confirmed.contains(&200_000),
        "{deposits:#?}"
    );
    assert!(
        deposits
            .iter()
            .all(|l| l.contains("value_sat=300000") || l.contains("value_sat=200000")),
        "only deposits: {deposits:#?}"
    );
    // Everything else: `all` takes every confirmed coin, exactly its value less the fee.
    let left = 500_000 - 100_000 - w_fee;
    let all = json(
        s,
        st,
        &["wallet", "withdraw", &dest.to_string(), "all", "--fee-rate", "2"],
    );
    assert_eq!(sat(&all, "amount_sat") + sat(&all, "fee_sat"), left, "{all}");
    assert_eq!(sat(&all, "fee_sat"), fee_of(all["txid"].as_str().expect("txid")));
    lab.chain.mine(1).expect("mine");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sat(&json(s, st, &["wallet", "balance"]), "spendable_sat") != 0 {
        assert!(Instant::now() < deadline, "`all` left coins");
        std::thread::sleep(Duration::from_millis(250));
    }
    let err = fails(s, st, &["wallet", "withdraw", &dest.to_string(), "all"]);
    assert!(err.contains("nothing to withdraw"), "{err}");

    // A cooperative close from the client: it gets its 510,000 sat on-chain exactly (the
    // funder pays the close); the server its side less the close fee.
    let before_close = json(s, st, &["node", "info"]);
    let server_chain0 = sat(&before_close, "onchain_sat");
    let client_chain0 = 1_000_000 - 100_000 - send_fee;
    // The client names it by the channel id both peers share (its own `id` differs).
    let bolt_id = json(c, ct, &["node", "channels"])[0]["channel_id"]
        .as_str()
        .expect("channel id")
        .to_string();
    assert_eq!(bolt_id.len(), 64);
    let closed = json(c, ct, &["node", "close", &bolt_id]);
    assert_eq!(closed["channel_id"], bolt_id.as_str());
    let deadline = Instant::now() + Duration::from_secs(90);
    // The close: the transaction in the mempool spending the channel's funding output.
    let funding_outpoint: bitcoin::OutPoint = format!("{funding_txid}:0").parse().expect("outpoint");
    let close_txid = loop {
        let pool: Vec<String> = lab.chain.rpc("getrawmempool", serde_json::json!([])).expect("mempool");
        let spender = pool.iter().find(|t| {
            let tx = rt.block_on(chain.transaction(&t.parse().expect("txid"))).ok().flatten();
            tx.is_some_and(|t| {
                t.tx.input
                    .iter()
                    .any(|i| i.previous_output.txid == funding_outpoint.txid)
            })
        });
        if let Some(t) = spender {
            break t.clone();
        }
        assert!(Instant::now() < deadline, "no close broadcast");
        std::thread::sleep(Duration::from_millis(200));
    };
    lab.chain.mine(1).expect("mine");
    let close_fee = fee_of(&close_txid);
    // The node's wallet may see the close confirmed a moment before its channel monitor does:
    // wait for both (the closed channel then counts nowhere but on-chain).
    let client_closed = wait_info(c, ct, "client paid out", |v| {
        v["channels"] == serde_json::json!([])
            && sat(v, "onchain_sat") == client_chain0 + 510_000
            && sat(v, "lightning_sat") == 0
    });
    assert_eq!(sat(&client_closed, "lightning_sat"), 0);
    wait_info(s, st, "server paid out", |v| {
        v["channels"] == serde_json::json!([])
            && sat(v, "onchain_sat") == server_chain0 + (1_000_000 - 510_000) - close_fee
    });
    let err = fails(c, ct, &["node", "close", &bolt_id]);
    assert!(err.contains("no channel"), "{err}");
    let err = fails(s, st, &["node", "close", &channel_id]);
    assert!(err.contains("no channel"), "{err}");
    // Until the close is buried (LDK's six blocks), the channel is still being resolved: its
    // 510,000 sat show as `closing_sat` too, and emptying the wallet is refused (a close's
    // claims may need the wallet's coins for their fees); nothing is sent.
    wait_info(c, ct, "the close awaiting its confirmations", |v| {
        sat(v, "closing_sat") == 510_000
    });
    let err = fails(c, ct, &["node", "send", &dest.to_string(), "all"]);
    assert!(err.contains("still being resolved on-chain"), "{err}");
    lab.chain.mine(6).expect("mine");
    let settled = wait_info(c, ct, "close buried", |v| sat(v, "closing_sat") == 0);
    assert_eq!(sat(&settled, "onchain_sat"), client_chain0 + 510_000);
    // Then `all` empties it: every sat but the fee reaches the destination.
    let all = json(c, ct, &["node", "send", &dest.to_string(), "all", "--fee-rate", "2"]);
    assert_eq!(all["broadcast"], true, "{all}");
    let all_txid = all["txid"].as_str().expect("txid").to_string();
    let all_fee = fee_of(&all_txid);
    let all_tx = rt
        .block_on(chain.transaction(&all_txid.parse().expect("txid")))
        .expect("rpc")
        .expect("tx")
        .tx;
    assert_eq!(all_tx.output.len(), 1, "no change");
    assert_eq!(all_tx.output[0].value.to_sat() + all_fee, client_chain0 + 510_000);
    lab.chain.mine(1).expect("mine");
    wait_info(c, ct, "wallet emptied", |v| sat(v, "onchain_sat") == 0);
    daemon.terminate();
    server.terminate();
}
