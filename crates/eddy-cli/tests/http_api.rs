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
    // The quote's amount is a query parameter of at least the terms' minimum (it was declared
    // a path parameter), and the event stream documents its 400 (not a swap id).
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
        assert_eq!(
            amount["schema"]["minimum"], 10_000,
            "{path}: the terms' minimum: {amount}"
        );
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
        // Written only when asked: the schema names it.
        fast: true,
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
    let version = net.rt.block_on(net.server.loop_out.swap(&id)).expect("swap").0;

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
        .block_on(net.server.loop_out.swap(&SwapId::from(big.payment_hash())))
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
    let (v2, rec) = net.rt.block_on(net.server.loop_out.swap(&id)).expect("swap");
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
        let (_, s) = net.rt.block_on(net.server.loop_out.swap(&id)).expect("swap");
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

/// The served document is exact: ids, hashes, keys, nonces, partial signatures and
/// transactions carry their hex patterns, every request amount the server's range (from its
/// terms), every operation every status it can answer (each error an `ErrorBody`, each 429 its
/// `Retry-After`); and the server keeps to it: an amount written `50000.0` (a JSON Schema
/// integer) is served like `50000`, a fractional one refused, a path that is not UTF-8 and a
/// body over the limit answered with a JSON error of a documented status.
#[test]
fn the_document_is_exact_and_the_server_keeps_to_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let url = net.http.as_ref().expect("http").url();
    let http = reqwest::Client::new();
    let send = |req: reqwest::RequestBuilder| -> (u16, String, Value) {
        net.rt.block_on(async {
            let resp = req.send().await.expect("send");
            let status = resp.status().as_u16();
            let ct = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or("").to_string())
                .unwrap_or_default();
            let v = resp.json::<Value>().await.unwrap_or(Value::Null);
            (status, ct, v)
        })
    };
    let post = |path: &str, body: String| {
        send(
            http.post(format!("{url}{path}"))
                .header("content-type", "application/json")
                .body(body),
        )
    };
    let (s, _, doc) = send(http.get(format!("{url}/v1/openapi.json")));
    assert_eq!(s, 200);
    let terms = eddy::demo::terms();
    let range = |v: &Value| (v["minimum"].clone(), v["maximum"].clone(), v["type"].clone());
    let want = (
        json!(terms.min_amount_sat),
        json!(terms.max_amount_sat),
        json!("integer"),
    );
    let schemas = &doc["components"]["schemas"];
    assert_eq!(range(&schemas["LoopOutCreate"]["properties"]["amount"]), want);
    assert_eq!(range(&schemas["LoopInCreate"]["properties"]["amount"]), want);
    assert_eq!(range(&schemas["SeedLoopOutRequest"]["properties"]["loopOutSats"]), want);
    for path in ["/v1/quote/loop-out", "/v1/quote/loop-in"] {
        let params = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let amount = params.iter().find(|p| p["name"] == "amount").expect("amount");
        assert_eq!(range(&amount["schema"]), want, "{path}");
    }
    let hex32 = json!("^[0-9a-fA-F]{64}$");
    let key = json!("^0[23][0-9a-fA-F]{64}$");
    let nonce = json!("^[0-9a-fA-F]{132}$");
    let tx = json!("^([0-9a-fA-F]{2})+$");
    for (schema, field, pattern) in [
        ("LoopOutCreate", "payment_hash", &hex32),
        ("LoopOutCreate", "claim_key", &key),
        ("LoopInCreate", "refund_key", &key),
        ("LoopInCreate", "last_hop", &key),
        ("SeedLoopOutRequest", "hash", &hex32),
        ("PreimageBody", "preimage", &hex32),
        ("CosignRequest", "nonce", &nonce),
        ("CosignRequest", "tx", &tx),
        ("ClaimCosign", "nonce", &nonce),
        ("ClaimCosign", "partial_sig", &hex32),
    ] {
        assert_eq!(
            &schemas[schema]["properties"][field]["pattern"], pattern,
            "{schema}.{field}"
        );
    }
    assert_eq!(
        schemas["LoopOutOffer"]["properties"]["server_key"]["pattern"],
        "^0[23][0-9a-f]{64}$"
    );
    assert_eq!(
        schemas["CosignResponse"]["properties"]["nonce"]["pattern"],
        "^[0-9a-f]{132}$"
    );
    assert_eq!(schemas["SeedLoopOutRequest"]["additionalProperties"], false);
    // Every operation: its statuses, exactly; errors are ErrorBody; 429s say when to retry.
    let ops: Vec<(&str, &str, Vec<&str>)> = vec![
        ("/v1/terms", "get", vec!["200", "503"]),
        ("/v1/quote/loop-out", "get", vec!["200", "400", "503"]),
        ("/v1/quote/loop-in", "get", vec!["200", "400", "503"]),
        ("/v1/loop-out", "post", vec!["201", "400", "409", "413", "429", "503"]),
        ("/v1/loop-in", "post", vec!["201", "400", "409", "413", "429", "503"]),
        ("/api/loop/out", "post", vec!["200", "400", "409", "413", "429", "503"]),
        ("/v1/swaps/{id}", "get", vec!["200", "400", "401", "503"]),
        ("/v1/swaps/{id}/events", "get", vec!["200", "400", "401", "429", "503"]),
        ("/v1/swaps/{id}/claim", "get", vec!["200", "400", "401", "429", "503"]),
        (
            "/v1/swaps/{id}/claim-cosign",
            "post",
            vec!["204", "400", "401", "413", "429", "503"],
        ),
        (
            "/v1/swaps/{id}/refund-cosign",
            "post",
            vec!["200", "400", "401", "413", "429", "503"],
        ),
        (
            "/v1/swaps/{id}/cosign",
            "post",
            vec!["200", "400", "401", "413", "429", "503"],
        ),
        (
            "/v1/swaps/{id}/preimage",
            "post",
            vec!["204", "400", "404", "413", "503"],
        ),
        // Boltz API v2's front door.
        ("/v2/swap/reverse", "get", vec!["200", "503"]),
        (
            "/v2/swap/reverse",
            "post",
            vec!["201", "400", "409", "413", "429", "503"],
        ),
        ("/v2/swap/{id}", "get", vec!["200", "404", "503"]),
        (
            "/v2/swap/reverse/{id}/transaction",
            "get",
            vec!["200", "400", "404", "503"],
        ),
        (
            "/v2/swap/reverse/{id}/claim",
            "post",
            vec!["200", "400", "404", "413", "429", "503"],
        ),
        ("/v2/chain/BTC/height", "get", vec!["200", "503"]),
        ("/v2/chain/BTC/fee", "get", vec!["200", "503"]),
        ("/v2/nodes", "get", vec!["200", "503"]),
        (
            "/v2/chain/BTC/transaction",
            "post",
            vec!["201", "400", "413", "429", "503"],
        ),
        (
            "/v2/chain/BTC/transaction/{id}",
            "get",
            vec!["200", "400", "404", "429", "503"],
        ),
        ("/v2/swap/submarine", "get", vec!["200", "503"]),
        (
            "/v2/swap/submarine",
            "post",
            vec!["201", "400", "409", "413", "429", "503"],
        ),
        (
            "/v2/swap/submarine/{id}/invoice",
            "post",
            vec!["200", "400", "404", "409", "413", "429", "503"],
        ),
        (
            "/v2/swap/submarine/{id}/transaction",
            "get",
            vec!["200", "400", "404", "429", "503"],
        ),
        (
            "/v2/swap/submarine/{id}/claim",
            "get",
            vec!["200", "400", "404", "429", "503"],
        ),
        (
            "/v2/swap/submarine/{id}/claim",
            "post",
            vec!["200", "400", "404", "413", "429", "503"],
        ),
        (
            "/v2/swap/submarine/{id}/refund",
            "post",
            vec!["200", "400", "404", "413", "429", "503"],
        ),
        (
            "/v2/swap/submarine/{id}/preimage",
            "get",
            vec!["200", "400", "404", "503"],
        ),
    ];
    let documented: usize = doc["paths"]
        .as_object()
        .map(|p| p.values().map(|m| m.as_object().map_or(0, |m| m.len())).sum())
        .unwrap_or(0);
    assert_eq!(documented, ops.len(), "every operation is checked");
    for (path, method, statuses) in ops {
        let op = &doc["paths"][path][method];
        let mut got: Vec<&str> = op["responses"]
            .as_object()
            .map(|r| r.keys().map(String::as_str).collect())
            .unwrap_or_default();
        got.sort();
        assert_eq!(got, statuses, "{method} {path}");
        for s in statuses.iter().filter(|s| s.starts_with('4') || s.starts_with('5')) {
            assert_eq!(
                op["responses"][s]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                "{method} {path} {s}"
            );
        }
        if statuses.contains(&"429") {
            assert!(
                op["responses"]["429"]["headers"].get("Retry-After").is_some(),
                "{method} {path}"
            );
        }
        if path.contains("{id}") {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let id = params.iter().find(|p| p["name"] == "id").expect("id");
            assert_eq!(id["in"], "path");
            // `/v1` swaps by payment hash, `/v2` swaps by Boltz's 12-character id, transactions
            // by txid.
            let pattern = match path {
                p if p.starts_with("/v2/chain/") => json!("^[0-9a-fA-F]{64}$"),
                p if p.starts_with("/v2/") => json!("^[0-9a-zA-Z]{12}$"),
                _ => hex32.clone(),
            };
            assert_eq!(id["schema"]["pattern"], pattern, "{method} {path}");
        }
    }

    // `50000.0` is the integer 50000, in a body and in a query; `50000.5` is refused.
    let claim_key = bitcoin::secp256k1::PublicKey::from_secret_key(
        &bitcoin::secp256k1::Secp256k1::new(),
        &bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).expect("key"),
    )
    .to_string();
    let hash = Preimage::from_bytes([0x51; 32]).payment_hash();
    let body =
        |amount: &str| format!("{{\"amount\":{amount},\"payment_hash\":\"{hash}\",\"claim_key\":\"{claim_key}\"}}");
    let (s, _, v) = post("/v1/loop-out", body("50000.5"));
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("whole, non-negative number of satoshis"),
        "{v}"
    );
    let (s, _, offer) = post("/v1/loop-out", body("50000.0"));
    assert_eq!(s, 201, "{offer}");
    let (s, _, q) = send(http.get(format!("{url}/v1/quote/loop-out?amount=50000.0")));
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["amount_sat"], 50_000);
    let (s, _, q2) = send(http.get(format!("{url}/v1/quote/loop-out?amount=50000")));
    assert_eq!((s, &q2), (200, &q));
    // The swap is the one of 50,000 sat: its invoice asks what the quote for 50,000 says.
    let (_, rec) = net
        .rt
        .block_on(net.server.loop_out.swap(&SwapId::from(hash)))
        .expect("created");
    assert_eq!(
        Some(rec.terms.swap_invoice_msat),
        q["swap_invoice_sat"].as_u64().map(|s| s * 1000)
    );
    let (s, _, q) = send(http.get(format!("{url}/v1/quote/loop-in?amount=50000.5")));
    assert_eq!(s, 400, "{q}");
    // An uncompressed key is a key, but not what the document says: refused.
    let (s, _, v) = post(
        "/v1/loop-out",
        format!(
            "{{\"amount\":50000,\"payment_hash\":\"{}\",\"claim_key\":\"{}\"}}",
            Preimage::from_bytes([0x52; 32]).payment_hash(),
            claim_key
                .parse::<bitcoin::secp256k1::PublicKey>()
                .expect("key")
                .serialize_uncompressed()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("compressed public key"),
        "{v}"
    );
    // Not UTF-8 in the id: a JSON 400, like any bad id.
    let (s, ct, v) = send(http.get(format!("{url}/v1/swaps/%FF%FE")));
    assert_eq!((s, ct.as_str()), (400, "application/json"), "{v}");
    assert!(v["error"].as_str().unwrap_or("").starts_with("not a swap id"), "{v}");
    // Over the body limit: a JSON 413, before any signature work. (The server does not read
    // the rest of such a body, so the connection is not reused: a client of its own.)
    let id = SwapId::from(hash);
    for path in [format!("/v1/swaps/{id}/cosign"), "/v1/loop-in".to_string()] {
        let (s, ct, v) = send(
            reqwest::Client::new()
                .post(format!("{url}{path}"))
                .header("content-type", "application/json")
                .body("x".repeat(3 << 20)),
        );
        assert_eq!((s, ct.as_str()), (413, "application/json"), "{path}: {v}");
    }
    // A 429 says when to retry (the seed endpoint allows 2 a minute per client).
    let seed = |n: u8| {
        json!({"htlcClaimAddress": "bcrt1qsnaz83m800prgcgp2dxvv5f9z2x4f5lasfekj9", "hash": hex::encode([n; 32]), "loopOutSats": 50_000.0})
            .to_string()
    };
    let mut last = (0, Value::Null);
    for n in 0..3u8 {
        let resp = net.rt.block_on(
            http.post(format!("{url}/api/loop/out"))
                .header("content-type", "application/json")
                .body(seed(0x60 + n))
                .send(),
        );
        let resp = resp.expect("send");
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or("").to_string());
        last = (status, json!(retry));
    }
    assert_eq!(last, (429, json!("60")));
    net.stop().expect("stop");
}

/// Malformed creation requests count against the client's per-minute limit like well-formed
/// ones, so a flood of junk is cut off (429) like a flood of creations — and only for that
/// client: another one is still served. And a creation cut mid-way (the client went away while
/// the server awaited its engine) gives its place in the client's offer budget back: the same
/// client can still hold `UNPAID_OFFERS_PER_CLIENT` live offers.
#[test]
fn junk_is_rate_limited_and_a_cut_creation_gives_its_offer_place_back() {
    use eddy_core::constants::UNPAID_OFFERS_PER_CLIENT;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let url = net.http.as_ref().expect("http").url();
    // Clients on different loopback addresses are different clients to the server.
    let from = |last: u8, timeout: std::time::Duration| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .timeout(timeout)
            .build()
            .expect("client")
    };
    let long = std::time::Duration::from_secs(60);
    let claim_key = bitcoin::secp256k1::PublicKey::from_secret_key(
        &bitcoin::secp256k1::Secp256k1::new(),
        &bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).expect("key"),
    )
    .to_string();
    let offer = |n: u8| {
        json!({"amount": 50_000, "payment_hash": Preimage::from_bytes([n; 32]).payment_hash().to_string(), "claim_key": claim_key})
            .to_string()
    };
    let post = |c: &reqwest::Client, body: String| -> Result<(u16, Value), reqwest::Error> {
        net.rt.block_on(async {
            let resp = c
                .post(format!("{url}/v1/loop-out"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let status = resp.status().as_u16();
            Ok((status, resp.json::<Value>().await.unwrap_or(Value::Null)))
        })
    };

    // A creation the engine cannot finish for now: the chain is locked (the engine asks its
    // tip) for 4 s, and the client gives up after 1 s, closing its connection. Only the
    // in-process devnet's chain can be held like that.
    if let Some(devnet) = net.lab.chain.devnet() {
        let cut = std::thread::scope(|s| {
            let held = s.spawn(|| devnet.with_chain(|_| std::thread::sleep(std::time::Duration::from_secs(4))));
            std::thread::sleep(std::time::Duration::from_millis(200));
            let cut = post(&from(1, std::time::Duration::from_secs(1)), offer(0x70));
            held.join().expect("chain lock thread");
            cut
        });
        assert!(cut.as_ref().is_err_and(|e| e.is_timeout()), "{cut:?}");
        // Nothing was created for it, and its place is free again.
        let cut_id = SwapId::from(Preimage::from_bytes([0x70; 32]).payment_hash());
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(
            net.rt.block_on(net.server.loop_out.swap(&cut_id)).is_err(),
            "the cut creation made nothing"
        );
    } else {
        eprintln!("skipping the cut creation: holding the chain's lock needs the in-process devnet");
    }
    let a = from(1, long);
    for n in 0..UNPAID_OFFERS_PER_CLIENT as u8 {
        let (s, v) = post(&a, offer(0x71 + n)).expect("send");
        assert_eq!(s, 201, "offer {n}: {v}");
    }
    let (s, v) = post(&a, offer(0x7f)).expect("send");
    assert_eq!(s, 429, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("live unpaid loop-out offers"),
        "{v}"
    );

    // Junk from client B: served (400) up to the per-minute limit, then cut off (429), and
    // then B's well-formed request is refused too.
    let b = from(2, long);
    for i in 0..eddy::demo::RATE_LIMIT_PER_MINUTE {
        let (s, v) = post(&b, "{not json".into()).expect("send");
        assert_eq!(s, 400, "junk {i}: {v}");
    }
    let (s, v) = post(&b, "{not json".into()).expect("send");
    assert_eq!(s, 429, "{v}");
    let (s, v) = post(&b, offer(0x90)).expect("send");
    assert_eq!(s, 429, "{v}");
    // Client C is served.
    let (s, v) = post(&from(3, long), offer(0x91)).expect("send");
    assert_eq!(s, 201, "{v}");
    net.stop().expect("stop");
}
