//! The swap server's HTTP API under bad and hostile input: every refusal is a 4xx with a JSON
//! `error`, and nothing changes on the server.

use eddy::demo::swapnet;
use eddy_backends::LightningNode;
use eddy_core::types::{Preimage, SwapId};
use serde_json::{json, Value};

#[test]
fn bad_requests_get_clear_json_errors_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let url = net.http.as_ref().expect("http").url();
    let http = reqwest::Client::new();
    let call = |method: &str, path: &str, body: Option<String>| -> (u16, Value) {
        net.rt.block_on(async {
            let mut req = match method {
                "GET" => http.get(format!("{url}{path}")),
                _ => http.post(format!("{url}{path}")),
            };
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b);
            }
            let resp = req.send().await.expect("send");
            let status = resp.status().as_u16();
            let v = resp.json::<Value>().await.unwrap_or(Value::Null);
            (status, v)
        })
    };
    let err = |v: &Value| v["error"].as_str().unwrap_or_default().to_string();
    // A per-swap call signed (`x-eddy-swap-auth`) with `key` for swap `id`.
    let signed = |key: &bitcoin::secp256k1::SecretKey, id: &SwapId, method: &str, path: &str, body: Option<String>| {
        net.rt.block_on(async {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs();
            let bytes = body.clone().unwrap_or_default().into_bytes();
            let auth = eddy_core::auth::sign(key, id, now, method, path, &bytes);
            let mut req = match method {
                "GET" => http.get(format!("{url}{path}")),
                _ => http.post(format!("{url}{path}")),
            };
            req = req.header(eddy_core::auth::HEADER, auth);
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b);
            }
            let resp = req.send().await.expect("send");
            let status = resp.status().as_u16();
            let v = resp.json::<Value>().await.unwrap_or(Value::Null);
            (status, v)
        })
    };
    let client_key = bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).expect("key");

    let (s, terms) = call("GET", "/v1/terms", None);
    assert_eq!(s, 200);
    assert_eq!(terms["min_amount_sat"], 10_000);
    assert_eq!(terms["network"], "regtest");

    // Malformed or incomplete JSON.
    let (s, v) = call("POST", "/v1/loop-out", Some("{not json".into()));
    assert_eq!(s, 400);
    assert!(err(&v).starts_with("malformed request"), "{v}");
    let (s, v) = call("POST", "/v1/loop-out", Some(json!({"amount": 50_000}).to_string()));
    assert_eq!(s, 400, "{v}");

    let preimage = Preimage::from_bytes([0x42; 32]);
    let claim_key = "02".to_string() + &"11".repeat(32);
    let req = |amount: u64| {
        json!({"amount": amount, "payment_hash": preimage.payment_hash().to_string(), "claim_key": claim_key})
            .to_string()
    };
    // Not a curve point.
    let (s, v) = call("POST", "/v1/loop-out", Some(req(50_000)));
    assert_eq!(s, 400, "{v}");
    let claim_key = bitcoin::secp256k1::PublicKey::from_secret_key(
        &bitcoin::secp256k1::Secp256k1::new(),
        &bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).expect("key"),
    )
    .to_string();
    let req = |amount: u64| {
        json!({"amount": amount, "payment_hash": preimage.payment_hash().to_string(), "claim_key": claim_key})
            .to_string()
    };
    // Out-of-range amounts.
    for amount in [1u64, 9_999, 1_000_001, 2_100_000_000_000_000] {
        let (s, v) = call("POST", "/v1/loop-out", Some(req(amount)));
        assert_eq!(s, 400, "{amount}: {v}");
        assert!(err(&v).contains("amount"), "{amount}: {v}");
    }
    // A good one, then its replay.
    let (s, offer) = call("POST", "/v1/loop-out", Some(req(50_000)));
    assert_eq!(s, 201, "{offer}");
    assert!(offer["swap_invoice"].as_str().is_some_and(|i| i.starts_with("lnbcrt")));
    let (s, v) = call("POST", "/v1/loop-out", Some(req(50_000)));
    assert_eq!(s, 409, "{v}");

    // The OpenAPI document lists every endpoint, and its schemas name exactly the fields the
    // real types put on the wire.
    let (s, doc) = call("GET", "/v1/openapi.json", None);
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc}");
    for path in [
        "/v1/terms",
        "/v1/loop-out",
        "/v1/swaps/{id}",
        "/v1/swaps/{id}/events",
        "/v1/swaps/{id}/preimage",
        "/v1/swaps/{id}/cosign",
        "/v1/quote/loop-in",
        "/v1/loop-in",
        "/v1/swaps/{id}/claim",
        "/v1/swaps/{id}/claim-cosign",
        "/v1/swaps/{id}/refund-cosign",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    // Every per-swap call but the preimage push documents its signature header and 401, and
    // no 404: an unknown id answers the same 401 (a stranger cannot tell which swaps exist).
    for (path, method) in [
        ("/v1/swaps/{id}", "get"),
        ("/v1/swaps/{id}/events", "get"),
        ("/v1/swaps/{id}/cosign", "post"),
        ("/v1/swaps/{id}/claim", "get"),
        ("/v1/swaps/{id}/claim-cosign", "post"),
        ("/v1/swaps/{id}/refund-cosign", "post"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op["responses"].get("401").is_some(), "{path}: 401 documented");
        assert!(op["responses"].get("404").is_none(), "{path}: no 404 documented");
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "x-eddy-swap-auth" && p["in"] == "header"),
            "{path}: header documented: {params:?}"
        );
    }
    assert!(doc["paths"]["/v1/swaps/{id}/preimage"]["post"]["responses"]
        .get("401")
        .is_none());
    // The quote's amount is a query parameter of at least 1 sat (it was declared a path
    // parameter), and the event stream documents its 400 (not a swap id).
    for path in ["/v1/quote/loop-out", "/v1/quote/loop-in"] {
        let params = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let amount = params
            .iter()
            .find(|p| p["name"] == "amount")
            .expect("amount documented");
        assert_eq!(amount["in"], "query", "{path}: {amount}");
        assert_eq!(amount["required"], true, "{path}");
        assert_eq!(amount["schema"]["minimum"], 1, "{path}: {amount}");
    }
    assert!(doc["paths"]["/v1/swaps/{id}/events"]["get"]["responses"]
        .get("400")
        .is_some());
    let fields = |schema: &str| -> Vec<String> {
        let mut f: Vec<String> = doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        f.sort();
        f
    };
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        k.sort();
        k
    };
    let real = eddy_core::validate::LoopOutCreate {
        amount: bitcoin::Amount::from_sat(50_000),
        payment_hash: preimage.payment_hash(),
        claim_key: claim_key.parse().expect("key"),
    };
    assert_eq!(
        fields("LoopOutCreate"),
        keys(&serde_json::to_value(real).expect("json"))
    );
    assert_eq!(fields("LoopOutOffer"), keys(&offer));
    // The loop-in request with every optional field set (`last_hop`).
    let real_in = eddy_core::validate::LoopInCreate {
        amount: bitcoin::Amount::from_sat(50_000),
        invoice: "lnbcrt1".into(),
        refund_key: claim_key.parse().expect("key"),
        last_hop: Some(claim_key.parse().expect("key")),
    };
    assert_eq!(
        fields("LoopInCreate"),
        keys(&serde_json::to_value(real_in).expect("json"))
    );
    assert_eq!(fields("Terms"), keys(&terms));
    let id = SwapId::from(preimage.payment_hash());
    let version = net.rt.block_on(net.server.swap(&id)).expect("swap").0;

    // Status: bad id, unknown id, known id (no secrets in it).
    let (s, _) = call("GET", "/v1/swaps/zz", None);
    assert_eq!(s, 400);
    // A known id needs the client's signature (the key it gave at creation); an unknown id
    // answers exactly the same (review #14: 404 vs 401 told strangers which swaps exist).
    let unknown = SwapId::from(Preimage::from_bytes([0x46; 32]).payment_hash());
    let (s, v) = call("GET", &format!("/v1/swaps/{id}"), None);
    assert_eq!(s, 401, "{v}");
    assert!(err(&v).contains("missing x-eddy-swap-auth"), "{v}");
    assert_eq!(call("GET", &format!("/v1/swaps/{unknown}"), None), (s, v));
    let stranger_key = bitcoin::secp256k1::SecretKey::from_slice(&[4; 32]).expect("key");
    let (s, v) = signed(&stranger_key, &id, "GET", &format!("/v1/swaps/{id}"), None);
    assert_eq!(s, 401, "{v}");
    assert_eq!(
        signed(&stranger_key, &unknown, "GET", &format!("/v1/swaps/{unknown}"), None),
        (s, v)
    );
    for path in ["cosign", "refund-cosign", "claim-cosign"] {
        let body = Some(json!({"nonce": "00", "tx": "00"}).to_string());
        let known = signed(
            &stranger_key,
            &id,
            "POST",
            &format!("/v1/swaps/{id}/{path}"),
            body.clone(),
        );
        assert_eq!(known.0, 401, "{known:?}");
        let other = signed(
            &stranger_key,
            &unknown,
            "POST",
            &format!("/v1/swaps/{unknown}/{path}"),
            body,
        );
        assert_eq!(other, known, "{path}");
    }
    let (s, v) = signed(&client_key, &id, "GET", &format!("/v1/swaps/{id}"), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "created");
    assert!(!v.to_string().contains(&preimage.expose_hex()));

    // Preimage pushes that do not fit.
    let (s, v) = call(
        "POST",
        &format!("/v1/swaps/{id}/preimage"),
        Some(json!({"preimage": "zz"}).to_string()),
    );
    assert_eq!(s, 400, "{v}");
    let wrong = Preimage::from_bytes([0x43; 32]);
    let (s, v) = call(
        "POST",
        &format!("/v1/swaps/{id}/preimage"),
        Some(json!({"preimage": wrong.expose_hex()}).to_string()),
    );
    assert_eq!(s, 400, "{v}");
    assert!(err(&v).contains("does not match"));
    let stranger = Preimage::from_bytes([0x44; 32]);
    let (s, v) = call(
        "POST",
        &format!("/v1/swaps/{}/preimage", SwapId::from(stranger.payment_hash())),
        Some(json!({"preimage": stranger.expose_hex()}).to_string()),
    );
    assert_eq!(s, 404, "{v}");

    // Co-signing: refused unsigned, on malformed input, and before the server holds the
    // preimage.
    let (s, v) = call(
        "POST",
        &format!("/v1/swaps/{id}/cosign"),
        Some(json!({"nonce": "00", "tx": "00"}).to_string()),
    );
    assert_eq!(s, 401, "{v}");
    let (s, v) = signed(
        &client_key,
        &id,
        "POST",
        &format!("/v1/swaps/{id}/cosign"),
        Some(json!({"nonce": "00", "tx": "00"}).to_string()),
    );
    assert_eq!(s, 400, "{v}");
    let nonce = "02".repeat(66);
    let tx = bitcoin::consensus::encode::serialize_hex(&bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn::default()],
        output: vec![],
    });
    let (s, v) = signed(
        &client_key,
        &id,
        "POST",
        &format!("/v1/swaps/{id}/cosign"),
        Some(json!({"nonce": nonce, "tx": tx}).to_string()),
    );
    assert_eq!(s, 400, "{v}");
    assert!(err(&v).contains("push the preimage"), "{v}");

    // More than the server's wallet can back (1,000,000 + the 50,000 reserve > what it holds):
    // refused up front, nothing created.
    let big = Preimage::from_bytes([0x45; 32]);
    let (s, v) = call(
        "POST",
        "/v1/loop-out",
        Some(
            json!({"amount": 1_000_000, "payment_hash": big.payment_hash().to_string(), "claim_key": claim_key})
                .to_string(),
        ),
    );
    assert_eq!(s, 503, "{v}");
    // Review #14: the reason (and the wallet's balance in it) stays in the server's log.
    assert!(err(&v).starts_with("the server cannot take this swap now (id "), "{v}");
    for leak in ["liquidity", "available", "sat", "950000"] {
        assert!(!err(&v).contains(leak), "{v}");
    }
    assert!(net
        .rt
        .block_on(net.server.swap(&SwapId::from(big.payment_hash())))
        .is_err());

    // Rate limit: 20 loop-out requests a minute per client; this test has made 10 so far.
    for i in 11..=20 {
        let (s, v) = call("POST", "/v1/loop-out", Some("{}".into()));
        assert_eq!(s, 400, "request {i} is still served: {v}");
    }
    let (s, v) = call("POST", "/v1/loop-out", Some(req(50_000)));
    assert_eq!(s, 429, "{v}");
    assert!(err(&v).contains("in a minute"), "{v}");

    // Nothing moved.
    let (v2, rec) = net.rt.block_on(net.server.swap(&id)).expect("swap");
    assert_eq!(v2, version);
    assert_eq!(rec.state, eddy_core::sm::loop_out_server::State::new());
    net.stop().expect("stop");
}

/// The live status stream (server-sent events) follows a swap from creation to success and
/// ends there; an unknown id is refused with a JSON 401, as a stranger is.
#[test]
fn status_stream_follows_a_swap_to_the_end() {
    use eddy_core::sm::loop_out_client::State;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let url = net.http.as_ref().expect("http").url();
    let unknown = net.rt.block_on(async {
        reqwest::get(format!("{url}/v1/swaps/{}/events", "cd".repeat(32)))
            .await
            .expect("get")
            .status()
    });
    assert_eq!(unknown.as_u16(), 401);
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("address")
        .script_pubkey();
    let id = net
        .rt
        .block_on(net.client.loop_out(bitcoin::Amount::from_sat(70_000), dest))
        .expect("loop-out");
    let path = format!("/v1/swaps/{id}/events");
    let stream_url = format!("{url}{path}");
    // Signed with the client's claim key for this swap, as its HTTP client signs.
    let key = eddy_store::SeedKeys::load_or_create(dir.path(), eddy_client::SEED_FILE)
        .expect("seed")
        .secret(eddy_client::loop_out::KEY_PURPOSE, &id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let auth = eddy_core::auth::sign(&key, &id, now, "GET", &path, &[]);
    let reader = net.rt.spawn(async move {
        let mut resp = reqwest::Client::new()
            .get(stream_url)
            .header(eddy_core::auth::HEADER, auth)
            .send()
            .await
            .expect("stream");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut text = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    });
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(net.client.tick()).expect("client tick");
        let (_, c) = net.rt.block_on(net.client.swap(&id)).expect("swap");
        let (_, s) = net.rt.block_on(net.server.swap(&id)).expect("swap");
        if matches!(c.state, State::Succeeded { .. }) && s.state == eddy_core::sm::loop_out_server::State::Succeeded {
            break;
        }
        if matches!(c.state, State::HtlcConfirming { .. } | State::Claiming { .. }) {
            net.mine(1).expect("mine");
        } else {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
    }
    let text = net
        .rt
        .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(10), reader).await })
        .expect("stream ended")
        .expect("reader");
    let states: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).expect("json event"))
        .collect();
    let names: Vec<&str> = states.iter().filter_map(|v| v["state"].as_str()).collect();
    assert_eq!(names.first(), Some(&"created"), "{names:?}");
    assert!(names.contains(&"published"), "{names:?}");
    assert_eq!(names.last(), Some(&"succeeded"), "{names:?}");
    assert_eq!(states.last().map(|v| v["terminal"].clone()), Some(Value::Bool(true)));
    net.stop().expect("stop");
}
