//! Both HTTP APIs held to their own OpenAPI documents, live: the devnet, the real `eddy server`
//! (its swap wallet funded, so a well-formed swap request is served, not refused with 503) and
//! `eddy daemon` processes (a channel between their nodes, and one real loop-in whose id
//! schemathesis uses on the daemon's routes that take one), and schemathesis (PyPI, the version pinned in
//! `scripts/install-deps.sh`) generating requests from each served document — valid ones and
//! invalid ones — a bounded number per operation. Every answer must be no 5xx, of a documented
//! status, content type and headers, and match the documented schema; invalid data must be
//! refused with a 4xx, the daemon's token enforced; schemathesis must exit 0. The daemon's token and its unknown ids (404 on every route that takes an id) are checked
//! here directly, as schemathesis cannot know them; the server's exactness checks that need
//! its internals are in `http_api.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::sync::Arc;

use bitcoin::{Amount, FeeRate, Network};
use eddy_backends::bitcoind::{BitcoindAuth, BitcoindSource};
use eddy_backends::ldk::{LdkChainSource, LdkConfig, LdkNode};
use eddy_backends::ChainSource;
use eddy_lab::{Lab, LabConfig, WAIT};
use serde_json::Value;

mod common;
use common::{rt, test_dir, Proc};

/// Generated requests per operation and phase (the whole run stays well under 3 minutes on
/// two busy cores).
const MAX_EXAMPLES: &str = "25";

/// The schemathesis command: `EDDY_SCHEMATHESIS`, else the venv `scripts/install-deps.sh`
/// installs it into.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("EDDY_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/eddy/venv/bin/schemathesis")
        });
    assert!(
        path.exists(),
        "schemathesis not found at {}: run `bash scripts/install-deps.sh` (or set EDDY_SCHEMATHESIS)",
        path.display()
    );
    path
}

/// Runs schemathesis against the document at `url` with the checks of this test; returns its
/// exit success and its whole output.
fn run_schemathesis(dir: &Path, url: &str, extra: &[&str]) -> (bool, String) {
    run_schemathesis_with(dir, None, url, extra)
}

/// [`run_schemathesis`] with a schemathesis configuration file (parameter values).
fn run_schemathesis_with(dir: &Path, config: Option<&Path>, url: &str, extra: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(schemathesis());
    cmd.current_dir(dir);
    if let Some(c) = config {
        cmd.arg("--config-file").arg(c);
    }
    cmd.arg("run")
        .arg(format!("{url}/v1/openapi.json"))
        .args([
            // Every check but "a schema-valid request is accepted": JSON Schema cannot say
            // that a key is on the curve, an invoice valid, a preimage the swap's, nor the
            // daemon's document the range of a server it has not asked yet — those are 400s by
            // design. Among the checks: no 5xx, documented statuses, content types, headers
            // and schemas, invalid data refused with a 4xx, the token enforced.
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            MAX_EXAMPLES,
            "--request-timeout",
            "30",
            "--no-color",
        ])
        .args(extra)
        .env("NO_COLOR", "1");
    if let Ok(seed) = std::env::var("EDDY_SCHEMATHESIS_SEED") {
        cmd.args(["--seed", &seed]);
    }
    let out = cmd.output().expect("schemathesis runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn block_on_get(url: &str, token: Option<&str>) -> (u16, String, Value) {
    call("GET", url, token)
}

fn call(method: &str, url: &str, token: Option<&str>) -> (u16, String, Value) {
    rt().block_on(async {
        let http = reqwest::Client::new();
        let mut req = match method {
            "GET" => http.get(url),
            "POST" => http.post(url).header("content-type", "application/json").body("{}"),
            m => panic!("method {m}"),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let v = if ct.starts_with("application/json") {
            resp.json::<Value>().await.unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        (status, ct, v)
    })
}

/// Opens a 1,000,000-sat channel from the server's node to the client's (nothing pushed: the
/// client can receive, so a loop-in can be created) with the nodes the daemons will own,
/// started in-process and stopped again; `ldk_ports` are their P2P ports.
fn open_channel(lab: &Lab, dir: &Path, ldk_ports: (u16, u16)) {
    let rt = rt();
    let (host, rpc_port, user, password) = lab.chain.rpc_credentials();
    let chain: Arc<dyn ChainSource> = Arc::new(
        rt.block_on(BitcoindSource::connect(
            &lab.chain.url(),
            &BitcoindAuth::UserPass(user.clone(), password.clone()),
            FeeRate::from_sat_per_kwu(500),
        ))
        .expect("chain"),
    );
    let node = |who: &str, port: u16| {
        let config = LdkConfig {
            data_dir: dir.join(who).join("ldk"),
            network: Network::Regtest,
            listen: Some(format!("127.0.0.1:{port}").parse().expect("addr")),
            chain: LdkChainSource::BitcoindRpc {
                host: host.clone(),
                port: rpc_port,
                user: user.clone(),
                password: password.clone(),
            },
        };
        rt.block_on(LdkNode::start(config, chain.clone())).expect("node")
    };
    let s = node("server", ldk_ports.0);
    let c = node("client", ldk_ports.1);
    let addr = rt
        .block_on(eddy_backends::LightningNode::new_address(&s))
        .expect("address");
    lab.chain.fund(&addr, Amount::from_sat(2_000_000)).expect("fund");
    lab.mine(1).expect("mine");
    eddy_lab::wait_synced(s.ldk(), lab.chain.tip().expect("tip"), WAIT).expect("synced");
    let c_addr = c
        .ldk()
        .listening_addresses()
        .and_then(|a| a.first().cloned())
        .expect("listening");
    lab.open_channel_between(s.ldk(), c.ldk(), c_addr, Amount::from_sat(1_000_000), 0)
        .expect("channel");
    rt.block_on(s.stop()).expect("stop");
    rt.block_on(c.stop()).expect("stop");
}

#[test]
fn both_apis_keep_to_their_documents_under_schemathesis() {
    let started = Instant::now();
    let st = schemathesis();
    let version = Command::new(&st)
        .arg("--version")
        .output()
        .expect("schemathesis --version");
    eprintln!("{}", String::from_utf8_lossy(&version.stdout).trim());
    let (_keep, dir) = test_dir();
    let lab = Lab::start(LabConfig::new(&dir, 0)).expect("lab");
    let port = || eddy_lab::LabChain::free_port_pub().expect("port");
    let (_, _, user, password) = lab.chain.rpc_credentials();
    let ldk_ports = (port(), port());
    open_channel(&lab, &dir, ldk_ports);
    let common = |who: &str, ldk: u16| {
        [
            "network = \"regtest\"".to_string(),
            format!("data_dir = \"{}\"", dir.join(who).display()),
            format!("listen = \"127.0.0.1:{}\"", port()),
            format!("bitcoind_url = \"{}\"", lab.chain.url()),
            format!("bitcoind_user = \"{user}\""),
            format!("bitcoind_password = \"{password}\""),
            format!("ldk_listen = \"127.0.0.1:{ldk}\""),
        ]
        .join("\n")
    };
    let metrics_port = port();
    // A generous creation limit: schemathesis is one client, and should reach the creation
    // logic rather than the limiter (the limiter's 429 is tested in http_api.rs).
    let server_toml = dir.join("server.toml");
    std::fs::write(
        &server_toml,
        common("server", ldk_ports.0)
            + &format!("\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\nadmin_listen = \"127.0.0.1:0\"\nrate_limit_per_minute = 100000\n"),
    )
    .expect("server.toml");
    let server = Proc::start("server", &server_toml, &dir.join("server.log"), &[]);
    // Fund the swap wallet (it prints its address at start) well above the largest swap.
    let line = server
        .printed("swap wallet")
        .expect("the server prints its swap wallet");
    let address = line
        .split_whitespace()
        .find(|w| w.starts_with("bcrt1p"))
        .expect("an address")
        .parse::<bitcoin::Address<_>>()
        .expect("address")
        .assume_checked();
    lab.chain.fund(&address, Amount::from_sat(5_000_000)).expect("fund");
    lab.mine(1).expect("mine");
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = rt().block_on(async {
            reqwest::get(&metrics)
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text")
        });
        let spendable = text
            .lines()
            .find_map(|l| l.strip_prefix("eddy_server_swap_wallet_spendable_sat "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        if spendable == Some(5_000_000) {
            break;
        }
        assert!(Instant::now() < deadline, "swap wallet never funded: {spendable:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let client_toml = dir.join("client.toml");
    std::fs::write(
        &client_toml,
        common("client", ldk_ports.1) + &format!("\nserver_url = \"{}\"\n", server.url),
    )
    .expect("client.toml");
    let daemon = Proc::start("daemon", &client_toml, &dir.join("client.log"), &[]);
    let token = std::fs::read_to_string(dir.join("client").join("api.token")).expect("token");
    let token = token.trim();

    // The daemon's document: served without the token, bearer authentication declared, every
    // route in it with its 401.
    let (s, _, doc) = block_on_get(&format!("{}/v1/openapi.json", daemon.url), None);
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["type"], "http",
        "{}",
        doc["components"]
    );
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
    // Its amounts are bounded by the server's terms, asked when the document is fetched.
    let (s, _, terms) = block_on_get(&format!("{}/v1/terms", server.url), None);
    assert_eq!(s, 200);
    for path in ["/v1/quote/out", "/v1/quote/in"] {
        let params = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let amount = params.iter().find(|p| p["name"] == "amount").expect("amount");
        assert_eq!(amount["schema"]["minimum"], terms["min_amount_sat"], "{path}");
        assert_eq!(amount["schema"]["maximum"], terms["max_amount_sat"], "{path}");
    }
    let mut routes: Vec<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .expect("ops")
                .keys()
                .map(|m| (m.to_uppercase(), p.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    routes.sort();
    let want: Vec<(String, String)> = [
        ("GET", "/v1/monitor"),
        ("GET", "/v1/node"),
        ("GET", "/v1/node/channels"),
        ("GET", "/v1/quote/in"),
        ("GET", "/v1/quote/out"),
        ("GET", "/v1/swaps"),
        ("GET", "/v1/swaps/{id}"),
        ("GET", "/v1/terms"),
        ("POST", "/v1/loop-in"),
        ("POST", "/v1/loop-out"),
        ("POST", "/v1/node/address"),
        ("POST", "/v1/node/close"),
        ("POST", "/v1/node/connect"),
        ("POST", "/v1/node/invoice"),
        ("POST", "/v1/node/open"),
        ("POST", "/v1/node/pay"),
        ("POST", "/v1/node/send"),
        ("POST", "/v1/swaps/{id}/abandon"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(routes, want);
    let unknown = "ab".repeat(32);
    for (method, path) in &routes {
        let op = &doc["paths"][path][method.to_lowercase()];
        assert!(op["responses"].get("401").is_some(), "{method} {path}: 401 documented");
        let url = format!("{}{}", daemon.url, path.replace("{id}", &unknown));
        // Without the token, and with a wrong one: 401, as JSON.
        for t in [None, Some("0".repeat(64))] {
            let (s, ct, v) = call(method, &url, t.as_deref());
            assert_eq!((s, ct.as_str()), (401, "application/json"), "{method} {path}: {v}");
            assert!(v["error"].as_str().unwrap_or("").contains("token"), "{v}");
        }
        if path.contains("{id}") {
            // Unknown ids: 404, documented; not ids: 400, documented, as JSON.
            let (s, _, v) = call(method, &url, Some(token));
            assert_eq!(s, 404, "{method} {path}: {v}");
            assert_eq!(v["error"], format!("unknown swap {unknown}"), "{method} {path}");
            assert!(op["responses"].get("404").is_some(), "{method} {path}: 404 documented");
            for bad in ["zz", "%FF%FE", &"ab".repeat(33)] {
                let (s, ct, v) = call(
                    method,
                    &format!("{}{}", daemon.url, path.replace("{id}", bad)),
                    Some(token),
                );
                assert_eq!(
                    (s, ct.as_str()),
                    (400, "application/json"),
                    "{method} {path} {bad}: {v}"
                );
                assert!(v["error"].as_str().unwrap_or("").starts_with("not a swap id"), "{v}");
            }
            assert!(op["responses"].get("400").is_some(), "{method} {path}: 400 documented");
        }
    }
    // Amounts as the server reads them: 50000.0 is 50000.
    let (s, _, q) = block_on_get(&format!("{}/v1/quote/out?amount=50000.0", daemon.url), Some(token));
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["amount_sat"], 50_000);
    assert_eq!(q["swap_invoice_sat"], 50_000 + 1_250 - 1_000, "{q}");

    // A real swap for the routes that take an id: an external loop-in (nothing is funded).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, _, node) = block_on_get(&format!("{}/v1/node", daemon.url), Some(token));
        if node["channels"][0]["usable"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the channel never became usable: {node}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let created = rt().block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/loop-in", daemon.url))
            .bearer_auth(token)
            .json(&serde_json::json!({"amount_sat": 50_000, "external": true}))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), 201);
        resp.json::<Value>().await.expect("json")
    });
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["kind"], "loop_in");
    assert_eq!(created["amount_sat"], 50_000);
    assert!(
        created["bip21"]
            .as_str()
            .is_some_and(|b| b.starts_with("bitcoin:bcrt1p")),
        "{created}"
    );
    // schemathesis uses it as the `id` of every route that takes one.
    std::fs::write(
        dir.join("daemon-ids.toml"),
        format!("[parameters]\n\"path.id\" = \"{id}\"\n"),
    )
    .expect("config");

    // schemathesis, live, against both.
    let (ok, out) = run_schemathesis(&dir, &server.url, &[]);
    eprintln!("{out}");
    assert!(ok, "schemathesis found the server off its document:\n{out}");
    // The 13 `/v1` operations and the 17 of Boltz API v2's front door.
    assert!(out.contains("31 selected / 31 total"), "every server operation tested");
    assert!(!out.contains("failure"), "{out}");
    let auth = format!("Authorization: Bearer {token}");
    // The monitor is an endless event stream (checked above): nothing to wait for.
    let (ok, out) = run_schemathesis_with(
        &dir,
        Some(&dir.join("daemon-ids.toml")),
        &daemon.url,
        &["-H", &auth, "--exclude-path", "/v1/monitor"],
    );
    eprintln!("{out}");
    assert!(ok, "schemathesis found the daemon off its document:\n{out}");
    assert!(
        out.contains("17 selected / 18 total"),
        "every daemon operation but the monitor tested"
    );
    assert!(!out.contains("failure"), "{out}");

    daemon.terminate();
    server.terminate();
    eprintln!("took {:?}", started.elapsed());
}
