//! The loop-out engine on the devnet with real LDK nodes: the server's embedded LDK node
//! receives the client's hold-invoice payments from a real ldk-node client, publishes the HTLC
//! from its wallet, settles the prepay, learns the preimage from the client's script-path claim
//! in the mempool and settles the swap. Every amount is asserted exactly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Amount, FeeRate, Network, ScriptBuf};
use eddy_backends::bitcoind::{BitcoindAuth, BitcoindSource};
use eddy_backends::ldk::{LdkChainSource, LdkConfig, LdkNode};
use eddy_backends::{ChainSource, LightningNode};
use eddy_core::fees::FeePolicy;
use eddy_core::htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams};
use eddy_core::sm::loop_out_server::State;
use eddy_core::tx::{build_spend, FeeSpec, HtlcInput, SpendPath};
use eddy_core::types::{PaymentHash, Preimage, SwapId};
use eddy_lab::{Lab, LabConfig, WAIT};
use eddy_server::{LoopOutRequest, SeedKeys, ServerConfig, ServerError, SwapServer};
use eddy_store::{SqliteStore, SwapStore};
use ldk_node::lightning::ln::msgs::SocketAddress;
use ldk_node::lightning_invoice::Bolt11Invoice;
use ldk_node::Event;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn fees() -> FeePolicy {
    FeePolicy {
        base_fee: Amount::from_sat(1_000),
        fee_ppm: 5_000,
        min_amount: Amount::from_sat(10_000),
        max_amount: Amount::from_sat(1_000_000),
        prepay: Amount::from_sat(1_000),
    }
}

struct Env {
    dir: tempfile::TempDir,
    lab: Lab,
    rt: tokio::runtime::Runtime,
    chain: Arc<dyn ChainSource>,
    server_ln: Arc<LdkNode>,
    store: Arc<dyn SwapStore>,
    server: SwapServer,
}

/// Devnet, a client ldk-node, the server's embedded LDK node with 2M on chain and a 1M channel
/// to the client (500k pushed), the SQLite store and the engine.
fn setup() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(LabConfig::new(dir.path(), 1)).expect("lab");
    let rt = runtime();
    let (host, port, user, password) = lab.chain.rpc_credentials();
    let chain: Arc<dyn ChainSource> = Arc::new(
        rt.block_on(BitcoindSource::connect(
            &lab.chain.url(),
            &BitcoindAuth::UserPass(user.clone(), password.clone()),
            FeeRate::from_sat_per_kwu(500),
        ))
        .expect("chain"),
    );
    let listen = eddy_lab::LabChain::free_port_pub().expect("port");
    let server_ln = Arc::new(
        rt.block_on(LdkNode::start(
            LdkConfig {
                data_dir: dir.path().join("server-ldk"),
                network: Network::Regtest,
                listen: Some(format!("127.0.0.1:{listen}").parse().expect("addr")),
                chain: LdkChainSource::BitcoindRpc {
                    host,
                    port,
                    user,
                    password,
                },
            },
            chain.clone(),
        ))
        .expect("server node"),
    );
    let client = lab.node(0);

    // Server: 2M on chain, opens 1M to the client pushing 500k (the client's spendable side).
    let addr = rt.block_on(server_ln.new_address()).expect("address");
    lab.chain.fund(&addr, Amount::from_sat(2_000_000)).expect("fund server");
    lab.mine(1).expect("mine");
    eddy_lab::wait_synced(server_ln.ldk(), lab.chain.tip().expect("tip"), WAIT).expect("sync");
    let _ = SocketAddress::TcpIpV4 {
        addr: [127, 0, 0, 1],
        port: listen,
    };
    lab.open_channel_between(
        server_ln.ldk(),
        client.node(),
        client.address(),
        Amount::from_sat(1_000_000),
        500_000_000,
    )
    .expect("channel");

    let store: Arc<dyn SwapStore> = Arc::new(
        rt.block_on(SqliteStore::open(&dir.path().join("server.sqlite")))
            .expect("store"),
    );
    let keys = SeedKeys::load_or_create(&dir.path().join("server-keys"), eddy_server::SEED_FILE).expect("keys");
    let cfg = ServerConfig {
        network: Network::Regtest,
        fees: fees(),
        expiry_delta: 80,
        publish_conf_target: 6,
        max_active_swaps: 10,
        onchain_reserve: Amount::from_sat(10_000),
        publish_batch_window: std::time::Duration::ZERO,
        claim_batch_window: std::time::Duration::ZERO,
    };
    let server = rt
        .block_on(SwapServer::new(
            cfg,
            server_ln.clone(),
            chain.clone(),
            store.clone(),
            keys,
        ))
        .expect("server");
    // The swap wallet the server funds HTLCs from.
    lab.chain
        .fund(server.wallet_address(), Amount::from_sat(500_000))
        .expect("fund swap wallet");
    lab.mine(1).expect("mine");
    rt.block_on(server.tick()).expect("tick");
    assert_eq!(
        rt.block_on(server.wallet_balance()).spendable,
        Amount::from_sat(500_000)
    );

    Env {
        dir,
        lab,
        rt,
        chain,
        server_ln,
        store,
        server,
    }
}

#[test]
fn loop_out_happy_path_script_claim() {
    let Env {
        dir: _dir,
        lab,
        rt,
        chain,
        server_ln,
        store,
        server,
    } = setup();
    let client = lab.node(0);
    // The client's secrets.
    let preimage = Preimage::from_bytes([0x5a; 32]);
    let hash = preimage.payment_hash();
    let claim_sk = SecretKey::from_slice(&[0x21; 32]).expect("key");
    let claim_pk = PublicKey::from_secret_key(&Secp256k1::new(), &claim_sk);
    let amount = Amount::from_sat(100_000);
    let tip = lab.chain.tip().expect("tip").0;
    let offer = rt
        .block_on(server.loop_out.create(&LoopOutRequest {
            amount,
            payment_hash: hash,
            claim_key: claim_pk,
            fast: false,
        }))
        .expect("offer");
    assert_eq!(offer.expiry, tip + 80);
    // The client rebuilds the address from its own data.
    let htlc = Htlc::new(HtlcParams {
        kind: HtlcKind::P2trOut,
        payment_hash: hash,
        claim_key: HtlcKey::Pubkey(claim_pk),
        refund_key: HtlcKey::Pubkey(offer.server_key),
        timeout: offer.expiry,
    })
    .expect("htlc");
    assert_eq!(offer.htlc_address, htlc.address(Network::Regtest).to_string());
    let swap_inv: Bolt11Invoice = offer.swap_invoice.parse().expect("swap invoice");
    let prepay_inv: Bolt11Invoice = offer
        .prepay_invoice
        .as_deref()
        .expect("a prepay")
        .parse()
        .expect("prepay invoice");
    // 100,000 + fee (1,000 + 0.5 % = 1,500) − prepay 1,000.
    assert_eq!(swap_inv.amount_milli_satoshis(), Some(100_500_000));
    assert_eq!(prepay_inv.amount_milli_satoshis(), Some(1_000_000));
    assert_eq!(swap_inv.payment_hash().to_byte_array(), hash.0);
    // Hold budget: (E − tip) + 15 + LDK's 39 + 3 blocks of slack.
    assert_eq!(swap_inv.min_final_cltv_expiry_delta(), 80 + 15 + 39 + 3);
    // A replayed request is refused.
    assert!(matches!(
        rt.block_on(server.loop_out.create(&LoopOutRequest { amount, payment_hash: hash, claim_key: claim_pk, fast: false })),
        Err(ServerError::Duplicate(h)) if h == hash
    ));

    let server_ln_before = server_ln.ldk().list_balances().total_lightning_balance_sats;
    let server_chain_before = rt.block_on(server.wallet_balance()).spendable.to_sat();
    client
        .node()
        .bolt11_payment()
        .send(&prepay_inv, None)
        .expect("pay prepay");
    client.node().bolt11_payment().send(&swap_inv, None).expect("pay swap");

    let id = SwapId::from(hash);
    let until = |what: &str, f: &dyn Fn(&State) -> bool| {
        let start = Instant::now();
        loop {
            rt.block_on(server.tick()).expect("tick");
            let (_, rec) = rt.block_on(server.loop_out.swap(&id)).expect("swap");
            if f(&rec.state) {
                return rec;
            }
            assert!(start.elapsed() < WAIT, "waiting for {what}; state {:?}", rec.state);
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let rec = until("publication", &|s| matches!(s, State::Published { .. }));
    let funding = rec.funding.expect("funding");
    let funding_tx = rt
        .block_on(chain.transaction(&funding.txid))
        .expect("tx")
        .expect("known")
        .tx;
    assert_eq!(funding_tx.output[funding.vout as usize].value, amount);
    assert_eq!(
        funding_tx.output[funding.vout as usize].script_pubkey,
        htlc.script_pubkey()
    );
    // The prepay is settled on publication: the client's prepay payment succeeds.
    let prepay_hash = PaymentHash(prepay_inv.payment_hash().to_byte_array());
    client
        .wait_event("prepay settled", WAIT, |e| match e {
            Event::PaymentSuccessful { payment_hash, .. } if payment_hash.0 == prepay_hash.0 => Some(()),
            _ => None,
        })
        .expect("prepay");

    // The client waits for a confirmation, then claims by the script path.
    lab.mine(1).expect("mine");
    let dest = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([0x77; 32]));
    let mut claim = build_spend(
        vec![HtlcInput {
            outpoint: funding,
            value: amount,
            htlc: htlc.clone(),
            path: SpendPath::Claim(preimage),
        }],
        dest.clone(),
        FeeSpec::Rate(FeeRate::from_sat_per_kwu(500)),
    )
    .expect("claim");
    claim.sign(0, &claim_sk).expect("sign");
    let claim = claim.finalize().expect("finalize");
    rt.block_on(chain.broadcast(&claim.tx)).expect("broadcast claim");

    let rec = until("success", &|s| *s == State::Succeeded);
    assert!(rec.refund.is_none());
    let revealed = client
        .wait_event("swap settled", WAIT, |e| match e {
            Event::PaymentSuccessful {
                payment_hash,
                payment_preimage,
                ..
            } if payment_hash.0 == hash.0 => Some(payment_preimage.map(|p| p.0)),
            _ => None,
        })
        .expect("swap payment");
    assert_eq!(revealed, Some(*preimage.expose_bytes()));

    // Money: the server received exactly swap + prepay over Lightning and paid exactly the
    // HTLC value plus the publication fee on chain; the client got the HTLC minus its claim fee.
    lab.mine(1).expect("mine");
    eddy_lab::wait_synced(server_ln.ldk(), lab.chain.tip().expect("tip"), WAIT).expect("sync");
    let start = Instant::now();
    while server_ln.ldk().list_balances().total_lightning_balance_sats != server_ln_before + 101_500 {
        assert!(start.elapsed() < WAIT, "server lightning balance");
        std::thread::sleep(Duration::from_millis(50));
    }
    let publish_fee = rt
        .block_on(eddy_backends::fee_paid(chain.as_ref(), &funding_tx))
        .expect("publish fee")
        .to_sat();
    rt.block_on(server.tick()).expect("tick");
    assert_eq!(
        rt.block_on(server.wallet_balance()).spendable.to_sat(),
        server_chain_before - 100_000 - publish_fee,
        "swap wallet: exactly the HTLC and its fee"
    );
    assert_eq!(claim.tx.output[0].script_pubkey, dest);
    assert_eq!(claim.tx.output[0].value, amount - claim.fee);
    assert_eq!(
        claim.fee.to_sat(),
        claim.tx.vsize() as u64 * 2,
        "2 sat/vB on the exact size"
    );

    // The store: terminal, with the steps recorded and never the preimage.
    let stored = rt.block_on(store.get(&id)).expect("get").expect("stored");
    assert!(stored.terminal);
    let events = rt.block_on(store.events(&id)).expect("events");
    let names: Vec<String> = events
        .iter()
        .filter_map(|e| e.event.get("event").and_then(|v| v.as_str()).map(str::to_owned))
        .collect();
    for step in [
        "created",
        "swap_accepted",
        "htlc_broadcast",
        "preimage_learned",
        "swap_settled",
    ] {
        assert!(names.iter().any(|n| n == step), "{step} in {names:?}");
    }
    let all_events = serde_json::to_string(&events.iter().map(|e| &e.event).collect::<Vec<_>>()).expect("json");
    assert!(
        !all_events.contains(&preimage.expose_hex()),
        "events never hold the preimage"
    );
    rt.block_on(server_ln.stop()).expect("stop");
}

/// The client pays but never claims: at `E` the server sweeps the refund path, and only once the
/// refund is 6 blocks deep does it cancel the swap invoice — the client's swap payment fails
/// back, the prepay stays with the server. Exact on-chain and Lightning balances.
#[test]
fn loop_out_client_never_claims_server_refunds_then_cancels() {
    let Env {
        dir: _dir,
        lab,
        rt,
        chain,
        server_ln,
        store,
        server,
    } = setup();
    let client = lab.node(0);
    let preimage = Preimage::from_bytes([0x6b; 32]);
    let hash = preimage.payment_hash();
    let claim_pk = PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[0x31; 32]).expect("key"));
    let amount = Amount::from_sat(150_000);
    let offer = rt
        .block_on(server.loop_out.create(&LoopOutRequest {
            amount,
            payment_hash: hash,
            claim_key: claim_pk,
            fast: false,
        }))
        .expect("offer");
    let swap_inv: Bolt11Invoice = offer.swap_invoice.parse().expect("swap invoice");
    let prepay_inv: Bolt11Invoice = offer
        .prepay_invoice
        .as_deref()
        .expect("a prepay")
        .parse()
        .expect("prepay invoice");
    let server_ln_before = server_ln.ldk().list_balances().total_lightning_balance_sats;
    let server_chain_before = rt.block_on(server.wallet_balance()).spendable.to_sat();
    client
        .node()
        .bolt11_payment()
        .send(&prepay_inv, None)
        .expect("pay prepay");
    client.node().bolt11_payment().send(&swap_inv, None).expect("pay swap");
    let id = SwapId::from(hash);
    let state = |rt: &tokio::runtime::Runtime| {
        rt.block_on(server.tick()).expect("tick");
        rt.block_on(server.loop_out.swap(&id)).expect("swap").1
    };
    let start = Instant::now();
    let funding = loop {
        let rec = state(&rt);
        if let State::Published { .. } = rec.state {
            break rec.funding.expect("funding");
        }
        assert!(start.elapsed() < WAIT, "publication: {:?}", rec.state);
        std::thread::sleep(Duration::from_millis(50));
    };
    let funding_tx = rt
        .block_on(chain.transaction(&funding.txid))
        .expect("tx")
        .expect("known")
        .tx;

    // Up to E − 1 nothing happens on the refund path.
    let tip = lab.chain.tip().expect("tip").0;
    lab.mine(offer.expiry - 1 - tip).expect("mine to E-1");
    let rec = state(&rt);
    assert!(matches!(rec.state, State::Published { .. }), "{:?}", rec.state);
    assert!(rec.refund.is_none());
    // At E the refund is built (nLockTime = E) and broadcast.
    lab.mine(1).expect("mine to E");
    let rec = state(&rt);
    assert!(matches!(rec.state, State::Refunding { .. }), "{:?}", rec.state);
    let refund = rec.refund.clone().expect("refund");
    let refund_txid = refund.last().expect("refund broadcast");
    // More passes in the same block broadcast it again, never bump it: one bump a block at
    // most (every pass used to bump the refund by a fifth, up to a fifth of the HTLC in fees
    // before the next block).
    for _ in 0..5 {
        let again = state(&rt).refund.expect("refund");
        assert_eq!(again.all, vec![refund_txid]);
        assert_eq!(again.fee_rate_kwu, refund.fee_rate_kwu);
    }
    let refund_tx = rt
        .block_on(chain.transaction(&refund_txid))
        .expect("tx")
        .expect("in mempool")
        .tx;
    assert_eq!(refund_tx.input[0].previous_output, funding);
    assert_eq!(refund_tx.lock_time.to_consensus_u32(), offer.expiry);
    // The swap invoice is still held while the refund is shallow.
    for _ in 0..5 {
        lab.mine(1).expect("mine");
        let rec = state(&rt);
        assert!(matches!(rec.state, State::Refunding { .. }), "{:?}", rec.state);
    }
    assert!(matches!(
        rt.block_on(server_ln.hold_invoice_state(&hash)),
        Ok(eddy_backends::HoldInvoiceState::Accepted { .. })
    ));
    // Sixth confirmation: refunded, swap invoice canceled, the client's payment fails back.
    lab.mine(1).expect("mine");
    let rec = state(&rt);
    assert_eq!(rec.state, State::Refunded);
    let failed = client.wait_event("swap payment failed", WAIT, |e| match e {
        Event::PaymentFailed {
            payment_hash: Some(h), ..
        } if h.0 == hash.0 => Some(()),
        _ => None,
    });
    assert!(failed.is_ok(), "{failed:?}");
    assert_eq!(
        rt.block_on(server_ln.hold_invoice_state(&hash)),
        Ok(eddy_backends::HoldInvoiceState::Canceled)
    );
    let refund_tx = rt
        .block_on(chain.transaction(&refund_txid))
        .expect("tx")
        .expect("mined")
        .tx;
    let refund_fee = amount.to_sat() - refund_tx.output[0].value.to_sat();
    assert_eq!(
        refund.fee(),
        Some(Amount::from_sat(refund_fee)),
        "the fee recorded is the one paid"
    );
    let publish_fee = rt
        .block_on(eddy_backends::fee_paid(chain.as_ref(), &funding_tx))
        .expect("publish fee")
        .to_sat();
    assert!(refund_fee > 0 && refund_fee < 1_000, "refund fee {refund_fee}");
    // The refund went back into the swap wallet.
    assert_eq!(
        refund_tx.output[0].script_pubkey,
        *server.wallet_address().script_pubkey().as_script()
    );
    rt.block_on(server.tick()).expect("tick");
    assert_eq!(
        rt.block_on(server.wallet_balance()).spendable.to_sat(),
        server_chain_before - publish_fee - refund_fee,
        "swap wallet: back but for the two fees"
    );
    let start = Instant::now();
    while server_ln.ldk().list_balances().total_lightning_balance_sats != server_ln_before + 1_000 {
        assert!(start.elapsed() < WAIT, "server lightning balance: only the prepay");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(rt.block_on(store.get(&id)).expect("get").expect("stored").terminal);
    rt.block_on(server_ln.stop()).expect("stop");
}
