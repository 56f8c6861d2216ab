//! The `LightningNode` conformance suite, run against the embedded LDK backend and against the
//! LND backend (through the LND gRPC emulator serving an LDK node) on the lab's chain, with a
//! real ldk-node peer (the payer/payee on the other end of a real channel).
//! Every step asserts states and exact amounts; restarts happen in the middle of a held
//! invoice and of an outgoing payment.

use std::str::FromStr;

use base64::Engine;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{Amount, FeeRate, Network, ScriptBuf};
use eddy_backends::bitcoind::{BitcoindAuth, BitcoindSource};
use eddy_backends::ldk::{LdkChainSource, LdkConfig, LdkNode, LDK_CLAIM_DEADLINE_BEFORE_EXPIRY};
use eddy_backends::lightning::{HoldInvoiceRequest, LnEvent};
use eddy_backends::lnd::{LndConfig, LndNode};
use eddy_backends::{ChainSource, HoldInvoiceState, LightningNode, LnError, PayParams, PaymentStatus};
use eddy_core::types::{PaymentHash, Preimage};
use eddy_lab::{Lab, LabConfig, LabNode, WAIT};
use eddy_lnd_emu::LndEmulator;
use ldk_node::lightning::ln::msgs::SocketAddress;
use ldk_node::lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescription, Description};
use ldk_node::lightning_types::payment::{PaymentHash as LdkHash, PaymentPreimage};
use ldk_node::Event;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

struct Ctx {
    rt: tokio::runtime::Runtime,
    lab: Lab,
    chain: Arc<dyn ChainSource>,
    config: LdkConfig,
}

/// A backend under test: the trait object, and the LDK node that ends the payer's channel
/// (the embedded node itself, or the node behind the LND emulator).
#[allow(clippy::large_enum_variant)] // one per test, never moved in a hot path
enum Backend {
    Ldk(Arc<LdkNode>),
    Lnd {
        node: Arc<LdkNode>,
        emulator: LndEmulator,
        client: LndNode,
    },
}

impl Backend {
    fn ln(&self) -> &dyn LightningNode {
        match self {
            Backend::Ldk(n) => n.as_ref(),
            Backend::Lnd { client, .. } => client,
        }
    }

    fn ldk(&self) -> &Arc<ldk_node::Node> {
        match self {
            Backend::Ldk(n) | Backend::Lnd { node: n, .. } => n.ldk(),
        }
    }

    /// Blocks before the HTLC expiry at which the node stops settling.
    fn deadline_delta(&self) -> u32 {
        match self {
            Backend::Ldk(_) => LDK_CLAIM_DEADLINE_BEFORE_EXPIRY,
            Backend::Lnd { client, .. } => client.hold_expiry_delta(),
        }
    }
}

impl Ctx {
    fn start_ldk(&self) -> Arc<LdkNode> {
        Arc::new(
            self.rt
                .block_on(LdkNode::start(self.config.clone(), self.chain.clone()))
                .expect("backend"),
        )
    }

    fn start_backend(&self, lnd: bool) -> Backend {
        let node = self.start_ldk();
        if !lnd {
            return Backend::Ldk(node);
        }
        let dir = self.config.data_dir.join("lnd-emulator");
        let emulator = self
            .rt
            .block_on(LndEmulator::start(node.clone(), self.chain.clone(), &dir))
            .expect("emulator");
        // Connect the way a user would paste it: an lndconnect:// URI carrying the certificate
        // (DER, base64url) and the macaroon.
        let pem = std::fs::read_to_string(emulator.cert_path()).expect("cert");
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64).expect("pem body");
        let macaroon = std::fs::read(emulator.macaroon_path()).expect("macaroon");
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let uri = format!(
            "lndconnect://{}?cert={}&macaroon={}",
            emulator.address().trim_start_matches("https://"),
            url.encode(der),
            url.encode(macaroon)
        );
        let config = LndConfig::from_lndconnect(&uri, &self.config.data_dir.join("lnd-client")).expect("lndconnect");
        assert_eq!(config.address, emulator.address());
        assert_eq!(
            std::fs::read(&config.macaroon_path).expect("written"),
            std::fs::read(emulator.macaroon_path()).expect("m")
        );
        let client = self.rt.block_on(LndNode::connect(&config)).expect("lnd client");
        Backend::Lnd { node, emulator, client }
    }

    fn stop(&self, backend: Backend) {
        let node = match backend {
            Backend::Ldk(n) => n,
            Backend::Lnd { node, emulator, client } => {
                drop(client);
                drop(emulator);
                node
            }
        };
        self.rt.block_on(node.stop()).expect("stop");
    }

    /// Restarts the backend; the payer reconnects at once (the channel was opened by the payer,
    /// so only it knows the backend's address; ldk-node would retry only after 60 s).
    fn restart(&self, backend: Backend) -> Backend {
        let lnd = matches!(backend, Backend::Lnd { .. });
        self.stop(backend);
        // Give the emulator's server task a moment to let go of its node handle.
        std::thread::sleep(Duration::from_millis(100));
        let backend = self.start_backend(lnd);
        let addr = self.config.listen.expect("listen");
        let addr = SocketAddress::from_str(&addr.to_string()).expect("addr");
        self.payer()
            .node()
            .connect(backend.ldk().node_id(), addr, true)
            .expect("reconnect");
        backend
    }

    fn payer(&self) -> &LabNode {
        self.lab.node(0)
    }

    /// Polls `f` until it returns `Some`.
    fn eventually<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn state(&self, ln: &dyn LightningNode, h: &PaymentHash) -> HoldInvoiceState {
        self.rt.block_on(ln.hold_invoice_state(h)).expect("state")
    }

    fn accepted(&self, ln: &dyn LightningNode, h: &PaymentHash) -> HoldInvoiceState {
        self.eventually("accepted", || {
            let s = self.state(ln, h);
            matches!(s, HoldInvoiceState::Accepted { .. }).then_some(s)
        })
    }

    fn hold(&self, ln: &dyn LightningNode, preimage: &Preimage, sat: u64) -> String {
        let inv = self
            .rt
            .block_on(ln.create_hold_invoice(&HoldInvoiceRequest {
                payment_hash: preimage.payment_hash(),
                amount_msat: sat * 1000,
                expiry_secs: 3600,
                min_final_cltv_delta: 80,
                description: "conformance".into(),
            }))
            .expect("hold invoice");
        let decoded: Bolt11Invoice = inv.bolt11.parse().expect("invoice");
        assert_eq!(
            inv.min_final_cltv_delta,
            decoded.min_final_cltv_expiry_delta(),
            "reported as the invoice says"
        );
        assert_eq!(inv.min_final_cltv_delta, 80, "the requested final CLTV delta");
        let node_id = self.rt.block_on(ln.info()).expect("info").pubkey;
        assert_eq!(decoded.recover_payee_pub_key(), node_id, "signed by the node");
        inv.bolt11
    }

    fn payer_pays(&self, bolt11: &str) {
        let inv: Bolt11Invoice = bolt11.parse().expect("invoice");
        self.payer()
            .node()
            .bolt11_payment()
            .send(&inv, None)
            .expect("payer sends");
    }

    fn payer_outcome(&self, h: &PaymentHash) -> Result<Option<[u8; 32]>, ()> {
        self.payer()
            .wait_event("payer outcome", WAIT, |e| match e {
                Event::PaymentSuccessful {
                    payment_hash,
                    payment_preimage,
                    ..
                } if payment_hash.0 == h.0 => Some(Ok(payment_preimage.map(|p| p.0))),
                Event::PaymentFailed { payment_hash, .. } if payment_hash.map(|x| x.0) == Some(h.0) => Some(Err(())),
                _ => None,
            })
            .expect("payer event")
    }

    /// Waits until the payer can send `sat` more (HTLCs of earlier steps fully removed).
    fn payer_can_send(&self, sat: u64) {
        self.eventually("payer capacity", || {
            self.payer()
                .node()
                .list_channels()
                .iter()
                .any(|c| c.next_outbound_htlc_limit_msat >= sat * 1000)
                .then_some(())
        });
    }
}

#[test]
fn ldk_backend_conformance() {
    conformance(false);
}

/// The same suite through LND's gRPC API (the LND client against the proto-faithful emulator).
#[test]
fn lnd_backend_conformance() {
    conformance(true);
}

fn conformance(lnd: bool) {
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
        .expect("chain source"),
    );
    let listen_port = eddy_lab::LabChain::free_port_pub().expect("port");
    let config = LdkConfig {
        data_dir: dir.path().join("backend"),
        network: Network::Regtest,
        listen: Some(format!("127.0.0.1:{listen_port}").parse().expect("addr")),
        chain: LdkChainSource::BitcoindRpc {
            host,
            port,
            user,
            password,
        },
    };
    let ctx = Ctx { rt, lab, chain, config };
    let mut backend = ctx.start_backend(lnd);

    // Info.
    let info = ctx.rt.block_on(backend.ln().info()).expect("info");
    assert_eq!(info.pubkey, backend.ldk().node_id());
    assert_eq!(info.network, Network::Regtest);
    assert_eq!(info.network, Network::Regtest);

    // Payer funds and opens 500k to the backend, pushing 200k so the backend can pay too.
    ctx.lab.fund_node(0, Amount::from_sat(1_000_000)).expect("fund payer");
    let addr = SocketAddress::TcpIpV4 {
        addr: [127, 0, 0, 1],
        port: listen_port,
    };
    ctx.lab
        .open_channel_between(
            ctx.payer().node(),
            backend.ldk(),
            addr,
            Amount::from_sat(500_000),
            200_000_000,
        )
        .expect("channel");
    let tip = ctx.lab.chain.tip().expect("tip").0;
    assert_eq!(ctx.rt.block_on(backend.ln().info()).expect("info").block_height, tip);
    let chans = ctx.rt.block_on(backend.ln().channels()).expect("channels");
    assert_eq!(chans.len(), 1);
    assert_eq!(chans[0].capacity, Amount::from_sat(500_000));
    assert!(chans[0].usable);
    assert_eq!(chans[0].peer, ctx.payer().node_id());
    // The backend's 200k minus its channel reserve (1% of capacity) is what it can send.
    assert_eq!(chans[0].local_msat, 200_000_000 - 5_000_000);

    if let Backend::Lnd { client, .. } = &backend {
        // walletrpc EstimateFee: the node's estimate (here the chain source's fallback, 500 sat/kWU).
        assert_eq!(
            ctx.rt.block_on(client.estimate_fee(6)).expect("estimate"),
            FeeRate::from_sat_per_kwu(500)
        );
    }
    let mut events = backend.ln().subscribe();

    // 1. Hold invoice accepted → settled (idempotently); the payer learns the preimage.
    let p1 = Preimage::from_bytes([1; 32]);
    let h1 = p1.payment_hash();
    let inv = ctx.hold(backend.ln(), &p1, 30_000);
    assert_eq!(ctx.state(backend.ln(), &h1), HoldInvoiceState::Open);
    assert!(
        matches!(
            ctx.rt.block_on(backend.ln().settle_hold_invoice(&p1)),
            Err(LnError::Refused(_))
        ),
        "cannot settle an unpaid invoice"
    );
    ctx.payer_pays(&inv);
    let acc = ctx.accepted(backend.ln(), &h1);
    let height = ctx.lab.chain.tip().expect("tip").0;
    let HoldInvoiceState::Accepted { amount_msat, htlcs } = &acc else {
        unreachable!()
    };
    assert_eq!(*amount_msat, 30_000_000);
    assert_eq!(htlcs.len(), 1);
    assert_eq!(htlcs[0].amount_msat, 30_000_000);
    assert!(
        htlcs[0].expiry_height >= height + 80,
        "expiry {} at height {height}",
        htlcs[0].expiry_height
    );
    assert_eq!(
        htlcs[0].settle_deadline,
        htlcs[0].expiry_height - backend.deadline_delta()
    );
    // The stream tells about the acceptance (other updates, e.g. LND's initial OPEN, may come first).
    let accepted_event = ctx.rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.recv().await {
                    Ok(LnEvent::Invoice {
                        payment_hash,
                        state: HoldInvoiceState::Accepted { amount_msat, .. },
                    }) if payment_hash == h1 => return Some(amount_msat),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        })
        .await
    });
    assert_eq!(accepted_event, Ok(Some(30_000_000)));
    ctx.rt.block_on(backend.ln().settle_hold_invoice(&p1)).expect("settle");
    assert_eq!(ctx.payer_outcome(&h1), Ok(Some([1; 32])));
    let settled = ctx.eventually("settled", || match ctx.state(backend.ln(), &h1) {
        s @ HoldInvoiceState::Settled { .. } => Some(s),
        _ => None,
    });
    assert_eq!(
        settled,
        HoldInvoiceState::Settled {
            amount_msat: 30_000_000
        }
    );
    ctx.rt
        .block_on(backend.ln().settle_hold_invoice(&p1))
        .expect("settle again is Ok");
    assert!(matches!(
        ctx.rt.block_on(backend.ln().cancel_hold_invoice(&h1)),
        Err(LnError::Refused(_))
    ));

    // 2. Hold invoice accepted → canceled: the payer's payment fails, nothing moves.
    ctx.payer_can_send(30_000);
    let p2 = Preimage::from_bytes([2; 32]);
    let h2 = p2.payment_hash();
    let inv = ctx.hold(backend.ln(), &p2, 30_000);
    ctx.payer_pays(&inv);
    ctx.accepted(backend.ln(), &h2);
    ctx.rt.block_on(backend.ln().cancel_hold_invoice(&h2)).expect("cancel");
    assert_eq!(ctx.payer_outcome(&h2), Err(()));
    assert_eq!(ctx.state(backend.ln(), &h2), HoldInvoiceState::Canceled);
    ctx.rt
        .block_on(backend.ln().cancel_hold_invoice(&h2))
        .expect("cancel again is Ok");
    assert!(matches!(
        ctx.rt.block_on(backend.ln().settle_hold_invoice(&p2)),
        Err(LnError::Refused(_))
    ));
    // An invoice the node does not know: LDK says so; LND deletes only canceled invoices
    // (garbage collection), so the LND backend reads a missing one as canceled.
    let unknown = PaymentHash([9; 32]);
    assert_eq!(
        ctx.rt.block_on(backend.ln().hold_invoice_state(&unknown)),
        if lnd {
            Ok(HoldInvoiceState::Canceled)
        } else {
            Err(LnError::Unknown(unknown))
        }
    );

    // 3. Own-preimage invoice: settled by the backend itself.
    ctx.payer_can_send(25_000);
    let p3 = Preimage::from_bytes([3; 32]);
    let inv = ctx
        .rt
        .block_on(backend.ln().create_invoice(&p3, 25_000_000, 3600, "own"))
        .expect("invoice");
    ctx.payer_pays(&inv.bolt11);
    assert_eq!(ctx.payer_outcome(&p3.payment_hash()), Ok(Some([3; 32])));
    let st = ctx.eventually("own settled", || match ctx.state(backend.ln(), &p3.payment_hash()) {
        s @ HoldInvoiceState::Settled { .. } => Some(s),
        _ => None,
    });
    assert_eq!(
        st,
        HoldInvoiceState::Settled {
            amount_msat: 25_000_000
        }
    );

    // 4. Paying: exactly once per hash, outcome with the preimage and the fee.
    // Measure once no HTLC of earlier steps is pending on the payee's side.
    ctx.eventually("payee without pending HTLCs", || {
        ctx.payer()
            .node()
            .list_balances()
            .lightning_balances
            .iter()
            .all(|b| matches!(b, ldk_node::LightningBalance::ClaimableOnChannelClose { .. }))
            .then_some(())
    });
    let payee_before = ctx.payer().node().list_balances().total_lightning_balance_sats;
    let p4 = [4u8; 32];
    let h4 = LdkHash(sha256::Hash::hash(&p4).to_byte_array());
    let desc = Bolt11InvoiceDescription::Direct(Description::new("pay me".into()).expect("desc"));
    let payee_inv = ctx
        .payer()
        .node()
        .bolt11_payment()
        .receive_for_hash(40_000_000, &desc, 3600, h4)
        .expect("payee invoice");
    let params = PayParams {
        max_fee_msat: 1_000,
        timeout: Duration::from_secs(60),
        outgoing_channel: None,
        max_total_cltv_delta: None,
        last_hop: None,
    };
    let hash4 = PaymentHash(h4.0);
    assert_eq!(
        ctx.rt.block_on(backend.ln().payment_status(&hash4)),
        Ok(PaymentStatus::Unknown)
    );
    assert_eq!(
        ctx.rt
            .block_on(backend.ln().pay_invoice(&payee_inv.to_string(), &params)),
        Ok(hash4)
    );
    assert_eq!(
        ctx.rt.block_on(backend.ln().payment_status(&hash4)),
        Ok(PaymentStatus::InFlight)
    );
    // The payee holds the payment while the backend restarts: the payment survives.
    let claim = ctx
        .payer()
        .wait_event("payee claimable", WAIT, |e| match e {
            Event::PaymentClaimable {
                payment_hash,
                claimable_amount_msat,
                ..
            } if *payment_hash == h4 => Some(*claimable_amount_msat),
            _ => None,
        })
        .expect("claimable");
    assert_eq!(claim, 40_000_000);
    backend = ctx.restart(backend);
    assert_eq!(
        ctx.rt.block_on(backend.ln().payment_status(&hash4)),
        Ok(PaymentStatus::InFlight)
    );
    assert_eq!(
        ctx.rt
            .block_on(backend.ln().pay_invoice(&payee_inv.to_string(), &params)),
        Ok(hash4),
        "paying a hash in flight is a no-op"
    );
    ctx.eventually("peer reconnected", || {
        ctx.payer()
            .node()
            .list_channels()
            .iter()
            .any(|c| c.is_usable)
            .then_some(())
    });
    ctx.payer()
        .node()
        .bolt11_payment()
        .claim_for_hash(h4, 40_000_000, PaymentPreimage(p4))
        .expect("payee claims");
    let done = ctx.eventually("payment succeeded", || {
        match ctx.rt.block_on(backend.ln().payment_status(&hash4)) {
            Ok(s @ PaymentStatus::Succeeded { .. }) => Some(s),
            _ => None,
        }
    });
    assert_eq!(
        done,
        PaymentStatus::Succeeded {
            preimage: Preimage::from_bytes(p4),
            fee_msat: 0
        }
    );
    assert_eq!(
        ctx.rt
            .block_on(backend.ln().pay_invoice(&payee_inv.to_string(), &params)),
        Ok(hash4),
        "paying a paid hash is a no-op"
    );
    ctx.eventually("payee credited once", || {
        (ctx.payer().node().list_balances().total_lightning_balance_sats == payee_before + 40_000).then_some(())
    });
    let with_channel = PayParams {
        outgoing_channel: Some(1),
        ..params.clone()
    };
    // Restricting the outgoing channel: ldk-node cannot (and neither can the LDK node behind the
    // LND emulator; a real LND would route through the channel). Nothing is sent.
    let h6 = LdkHash(sha256::Hash::hash(&[6u8; 32]).to_byte_array());
    let fresh = ctx
        .payer()
        .node()
        .bolt11_payment()
        .receive_for_hash(10_000_000, &desc, 3600, h6)
        .expect("payee invoice");
    assert!(matches!(
        ctx.rt
            .block_on(backend.ln().pay_invoice(&fresh.to_string(), &with_channel)),
        Err(LnError::Unsupported(_))
    ));
    assert_eq!(
        ctx.rt.block_on(backend.ln().payment_status(&PaymentHash(h6.0))),
        Ok(PaymentStatus::Unknown)
    );
    // Restricting the last hop: LND takes `last_hop_pubkey` (the backend says so); the LND
    // client sends the key, the emulator decodes it and hands it to the LDK node behind it,
    // which cannot route by it. ldk-node refuses up front. Nothing is sent either way.
    assert_eq!(backend.ln().restricts_last_hop(), lnd);
    let via = PayParams {
        last_hop: Some(ctx.payer().node().node_id()),
        ..params.clone()
    };
    match ctx.rt.block_on(backend.ln().pay_invoice(&fresh.to_string(), &via)) {
        Err(LnError::Unsupported(m)) => assert!(m.contains("last hop"), "{m}"),
        other => panic!("last hop: {other:?}"),
    }
    assert_eq!(
        ctx.rt.block_on(backend.ln().payment_status(&PaymentHash(h6.0))),
        Ok(PaymentStatus::Unknown)
    );
    assert!(matches!(
        ctx.rt.block_on(backend.ln().pay_invoice("lnbc1garbage", &params)),
        Err(LnError::Refused(_))
    ));

    // 5. Restart in the middle of a held invoice: still Accepted afterwards, then settles.
    ctx.payer_can_send(20_000);
    let p5 = Preimage::from_bytes([5; 32]);
    let h5 = p5.payment_hash();
    let inv = ctx.hold(backend.ln(), &p5, 20_000);
    ctx.payer_pays(&inv);
    let before = ctx.accepted(backend.ln(), &h5);
    backend = ctx.restart(backend);
    let after = ctx.accepted(backend.ln(), &h5);
    let (HoldInvoiceState::Accepted { htlcs: b, .. }, HoldInvoiceState::Accepted { htlcs: a, amount_msat }) =
        (&before, &after)
    else {
        unreachable!()
    };
    assert_eq!(a, b, "same HTLC, same expiry after restart");
    assert_eq!(*amount_msat, 20_000_000);
    ctx.eventually("peer reconnected", || {
        backend.ldk().list_peers().iter().any(|p| p.is_connected).then_some(())
    });
    ctx.rt
        .block_on(backend.ln().settle_hold_invoice(&p5))
        .expect("settle after restart");
    assert_eq!(ctx.payer_outcome(&h5), Ok(Some([5; 32])));
    ctx.eventually("settled after restart", || {
        matches!(
            ctx.state(backend.ln(), &h5),
            HoldInvoiceState::Settled {
                amount_msat: 20_000_000
            }
        )
        .then_some(())
    });

    // 6. On-chain wallet: exact funding, exact send, exact change.
    let addr = ctx.rt.block_on(backend.ln().new_address()).expect("address");
    ctx.lab
        .chain
        .fund(&addr, Amount::from_sat(300_000))
        .expect("fund backend");
    ctx.lab.mine(1).expect("mine");
    eddy_lab::wait_synced(backend.ldk(), ctx.lab.chain.tip().expect("tip"), WAIT).expect("synced");
    let bal = ctx.eventually("wallet funded", || {
        let b = ctx.rt.block_on(backend.ln().wallet_balance()).expect("balance");
        (b.total == Amount::from_sat(300_000)).then_some(b)
    });
    assert_eq!(bal.total, Amount::from_sat(300_000));
    let dest = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([7; 32]));
    let tx = ctx
        .rt
        .block_on(backend.ln().send_outputs(
            &[(dest.clone(), Amount::from_sat(50_000))],
            FeeRate::from_sat_per_kwu(500),
        ))
        .expect("send");
    assert!(tx
        .output
        .iter()
        .any(|o| o.script_pubkey == dest && o.value == Amount::from_sat(50_000)));
    let change: Amount = tx
        .output
        .iter()
        .filter(|o| o.script_pubkey != dest)
        .map(|o| o.value)
        .sum();
    let fee = Amount::from_sat(300_000) - Amount::from_sat(50_000) - change;
    assert!(fee > Amount::ZERO && fee < Amount::from_sat(1_000), "fee {fee}");
    ctx.lab.mine(1).expect("mine");
    eddy_lab::wait_synced(backend.ldk(), ctx.lab.chain.tip().expect("tip"), WAIT).expect("synced");
    ctx.eventually("change confirmed", || {
        let b = ctx.rt.block_on(backend.ln().wallet_balance()).expect("balance");
        (b.total == change).then_some(())
    });
    assert!(matches!(
        ctx.rt.block_on(backend.ln().send_outputs(
            &[(dest.clone(), Amount::from_sat(1_000)), (dest, Amount::from_sat(1_000))],
            FeeRate::from_sat_per_kwu(500)
        )),
        Err(LnError::Unsupported(_))
    ));
    ctx.stop(backend);
}
