//! Loop-out failure paths on the devnet with real LDK nodes and both engines: a server whose
//! offer is wrong in any field is refused before anything is paid; a server that never
//! publishes gets nothing — the client's payments fail back, prepay included, to the satoshi.

use std::sync::Arc;

use async_trait::async_trait;
use bitcoin::{Amount, Network};
use eddy::demo::{in_process, swapnet, Swapnet};
use eddy_backends::lightning::HoldInvoiceRequest;
use eddy_backends::LightningNode;
use eddy_client::{ApiCallError, ClientError, LoopInApi, LoopOutApi, SwapServerApi};
use eddy_core::sm::loop_out_client::{FailReason, State};
use eddy_core::types::Preimage;
use eddy_core::validate::{LoopOutCreate, LoopOutOffer};
use eddy_server::SwapServer;

/// Any failure of the in-process server, as a call error.
fn fail(e: impl std::fmt::Display) -> ApiCallError {
    ApiCallError::Failed(e.to_string())
}

#[derive(Clone, Copy, Debug)]
enum Tamper {
    WrongHash,
    SmallAmount,
    OtherAddress,
    ExpiryOutsideWindow,
}

/// A server that answers with the genuine offer, altered in one field.
struct Tampering {
    server: Arc<SwapServer>,
    ln: Arc<dyn LightningNode>,
    how: Tamper,
}

#[async_trait]
impl LoopOutApi for Tampering {
    async fn loop_out(&self, req: &LoopOutCreate) -> Result<LoopOutOffer, ApiCallError> {
        let mut offer = self.server.loop_out.create(req).await.map_err(fail)?;
        let genuine: ldk_node::lightning_invoice::Bolt11Invoice = offer
            .swap_invoice
            .parse()
            .map_err(|_| ApiCallError::Unreadable("parse".into()))?;
        let msat = genuine.amount_milli_satoshis().unwrap_or(0);
        let hold = |hash, amount_msat| HoldInvoiceRequest {
            payment_hash: hash,
            amount_msat,
            expiry_secs: 3600,
            min_final_cltv_delta: 80,
            description: "tampered".into(),
        };
        match self.how {
            Tamper::WrongHash => {
                let other = Preimage::random().payment_hash();
                offer.swap_invoice = self
                    .ln
                    .create_hold_invoice(&hold(other, msat))
                    .await
                    .map_err(fail)?
                    .bolt11;
            }
            Tamper::SmallAmount => {
                // Same hash, 10,000 sat less: the invoices no longer cover the amount.
                offer.swap_invoice = self
                    .ln
                    .create_hold_invoice(&hold(req.payment_hash, msat - 10_000_000))
                    .await
                    .map_err(fail)?
                    .bolt11;
            }
            Tamper::OtherAddress => {
                offer.htlc_address =
                    bitcoin::Address::p2wsh(&bitcoin::ScriptBuf::from_bytes(vec![0x51]), Network::Regtest).to_string();
            }
            Tamper::ExpiryOutsideWindow => offer.expiry += 1_000,
        }
        Ok(offer)
    }

    async fn push_preimage(&self, preimage: &Preimage) -> Result<(), ApiCallError> {
        self.server.loop_out.push_preimage(preimage).await.map_err(fail)
    }

    async fn cosign_claim(
        &self,
        id: &eddy_core::types::SwapId,
        _preimage: &Preimage,
        nonce: &eddy_core::musig::PubNonceBytes,
        tx: &bitcoin::Transaction,
        index: usize,
        prevouts: &[bitcoin::TxOut],
    ) -> Result<(eddy_core::musig::PubNonceBytes, eddy_core::musig::PartialSigBytes), ApiCallError> {
        let prevouts = (tx.input.len() > 1).then_some(prevouts);
        self.server
            .loop_out
            .cosign_claim(id, nonce, tx, index, prevouts)
            .await
            .map_err(fail)
    }
}

#[async_trait]
impl LoopInApi for Tampering {}

#[test]
fn client_refuses_tampered_offers_and_pays_nothing() {
    for how in [
        Tamper::WrongHash,
        Tamper::SmallAmount,
        Tamper::OtherAddress,
        Tamper::ExpiryOutsideWindow,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let net: Swapnet = swapnet(
            dir.path(),
            Some(Box::new(move |server, node| -> Arc<dyn SwapServerApi> {
                Arc::new(Tampering { server, ln: node, how })
            })),
            &|_| {},
        )
        .expect("swapnet");
        let before = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
        let dest = net
            .rt
            .block_on(net.client_ln.new_address())
            .expect("address")
            .script_pubkey();
        let res = net.rt.block_on(net.client.loop_out(Amount::from_sat(100_000), dest));
        let msg = match res {
            Err(ClientError::OfferRefused(m)) => m,
            other => panic!("{how:?}: expected a refusal, got {other:?}"),
        };
        match how {
            Tamper::WrongHash => assert!(msg.contains("payment hash"), "{msg}"),
            Tamper::SmallAmount => assert!(msg.contains("less than the swap amount"), "{msg}"),
            Tamper::OtherAddress => assert!(msg.contains("address"), "{msg}"),
            Tamper::ExpiryOutsideWindow => assert!(msg.contains("xpiry") || msg.contains("window"), "{msg}"),
        }
        // Nothing paid, nothing stored.
        assert!(
            net.client_ln.ldk().list_payments().is_empty(),
            "{how:?}: no payment attempted"
        );
        assert_eq!(net.client_ln.ldk().list_balances().total_lightning_balance_sats, before);
        assert!(net
            .rt
            .block_on(net.client_store.list(eddy_store::ListFilter::All))
            .expect("list")
            .is_empty());
        net.stop().expect("stop");
    }
}

/// The server's engine never publishes (its node still runs): the held HTLCs reach the node's
/// settle deadlines and fail back; the client ends `Failed(PaymentFailed)` with its channel
/// balance exactly as before, prepay included.
#[test]
fn server_never_publishes_client_gets_everything_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Over HTTP, as the daemons talk.
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let before = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("address")
        .script_pubkey();
    let id = net
        .rt
        .block_on(net.client.loop_out(Amount::from_sat(100_000), dest))
        .expect("loop-out accepted and paid");
    let start = std::time::Instant::now();
    loop {
        // Only the client's engine runs.
        net.rt.block_on(net.client.tick()).expect("client tick");
        let (_, rec) = net.rt.block_on(net.client.swap(&id)).expect("swap");
        let balance = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
        if rec.state == State::Failed(FailReason::PaymentFailed) && balance == before {
            assert!(rec.claim.is_none(), "nothing revealed");
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "state {:?}, balance {balance} (before {before})",
            rec.state
        );
        net.mine(5).expect("mine");
    }
    net.stop().expect("stop");
}

/// A server that locks less than the amount in the HTLC (here the test plays it: the engine
/// never publishes and 1,000 sat less lands on the swap address): the client never reveals its
/// preimage, its payments fail back at the server node's deadline, and its channel balance ends
/// exactly as before, prepay included. The short output stays unspent.
#[test]
fn htlc_below_the_amount_is_never_claimed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let before = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("address")
        .script_pubkey();
    let amount = Amount::from_sat(100_000);
    let id = net.rt.block_on(net.client.loop_out(amount, dest)).expect("loop-out");
    let (_, rec) = net.rt.block_on(net.client.swap(&id)).expect("swap");
    let address: bitcoin::Address = rec
        .offer
        .htlc_address
        .parse::<bitcoin::Address<_>>()
        .expect("address")
        .assume_checked();
    let short = net
        .lab
        .chain
        .fund(&address, amount - Amount::from_sat(1_000))
        .expect("fund");
    net.mine(1).expect("mine");
    net.rt.block_on(net.client.tick()).expect("client tick");
    let (_, rec) = net.rt.block_on(net.client.swap(&id)).expect("swap");
    // Ignored, not claimed: anyone can pay the address, so a short output neither counts nor
    // fails the swap (a stranger's dust must not grief it).
    assert_eq!(rec.state, State::Paying);
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.client.tick()).expect("client tick");
        let balance = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
        if balance == before {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "balance {balance} (before {before})"
        );
        net.mine(5).expect("mine");
    }
    let (_, rec) = net.rt.block_on(net.client.swap(&id)).expect("swap");
    assert!(rec.claim.is_none(), "nothing revealed");
    assert_eq!(rec.state, State::Failed(FailReason::PaymentFailed));
    // Mined long ago: the lab finds it without `-txindex`.
    let tx = net.lab.chain.transaction(&short).expect("tx");
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == address.script_pubkey())
        .expect("HTLC output");
    let out = net
        .lab
        .chain
        .rpc::<serde_json::Value>("gettxout", serde_json::json!([short.to_string(), vout]))
        .expect("gettxout");
    assert_eq!(
        out["value"],
        serde_json::json!(0.00099),
        "the short HTLC output is still unspent"
    );
    net.stop().expect("stop");
}

/// Both engines are thrown away and rebuilt from their stores after every step of a loop-out
/// (every persisted state is followed by a "crash"): the swap still completes, nothing is paid
/// or published twice, and the money adds up exactly.
#[test]
fn engines_restarted_after_every_step_complete_the_swap() {
    use eddy_core::sm::loop_out_server::State as ServerState;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let client_before = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let server_chain_before = net.rt.block_on(net.server.wallet_balance()).spendable.to_sat();
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("address")
        .script_pubkey();
    let amount = Amount::from_sat(120_000);
    let id = net.rt.block_on(net.client.loop_out(amount, dest)).expect("loop-out");
    let mut restarts = 0;
    let start = std::time::Instant::now();
    loop {
        net.restart_engines().expect("restart");
        restarts += 1;
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.restart_engines().expect("restart");
        restarts += 1;
        net.rt.block_on(net.client.tick()).expect("client tick");
        let (_, c) = net.rt.block_on(net.client.swap(&id)).expect("client swap");
        let (_, s) = net.rt.block_on(net.server.loop_out.swap(&id)).expect("server swap");
        match (&c.state, &s.state) {
            (State::Succeeded { .. }, ServerState::Succeeded) => break,
            (State::Failed(r), _) => panic!("client failed: {r:?}"),
            (State::HtlcConfirming { .. } | State::Claiming { .. }, _) => net.mine(1).expect("mine"),
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "client {:?} server {:?}",
            c.state,
            s.state
        );
    }
    assert!(restarts >= 8, "{restarts} restarts");
    // Exactly one HTLC publication and one payment of each invoice.
    let (_, s) = net.rt.block_on(net.server.loop_out.swap(&id)).expect("server swap");
    let (_, c) = net.rt.block_on(net.client.swap(&id)).expect("client swap");
    let funding = s.funding.expect("funding");
    let funding_tx = net
        .rt
        .block_on(net.chain.transaction(&funding.txid))
        .expect("tx")
        .expect("known")
        .tx;
    let publish_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &funding_tx))
        .expect("publish fee");
    let paid = (s.terms.swap_invoice_msat + s.terms.prepay_msat) / 1000;
    let tip = net.lab.chain.tip().expect("tip");
    for n in [&net.server_ln, &net.client_ln] {
        eddy_lab::wait_synced(n.ldk(), tip, eddy_lab::WAIT).expect("synced");
    }
    eddy_lab::wait_until("balances", eddy_lab::WAIT, || {
        net.client_ln.ldk().list_balances().total_lightning_balance_sats == client_before - paid
    })
    .expect("exact balances: one payment");
    // A fresh engine (rebuilt from the store, rescanning the chain) sees the swap wallet short of
    // exactly one HTLC and its fee: one publication.
    net.restart_engines().expect("restart");
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(
        net.rt.block_on(net.server.wallet_balance()).spendable.to_sat(),
        server_chain_before - (amount + publish_fee).to_sat(),
        "one publication"
    );
    assert_eq!(
        c.claim.as_ref().map(|cl| cl.all.len()),
        Some(1),
        "one claim, never re-revealed differently"
    );
    net.stop().expect("stop");
}

/// A server that will not co-sign: the client claims by the script path, and the swap still
/// completes with exact amounts (the claim is 140 vB instead of 99).
#[test]
fn server_refusing_to_cosign_client_claims_by_script_path() {
    struct NoCosign(Arc<SwapServer>);
    #[async_trait]
    impl LoopOutApi for NoCosign {
        async fn loop_out(&self, req: &LoopOutCreate) -> Result<LoopOutOffer, ApiCallError> {
            self.0.loop_out.create(req).await.map_err(fail)
        }
        async fn push_preimage(&self, preimage: &Preimage) -> Result<(), ApiCallError> {
            self.0.loop_out.push_preimage(preimage).await.map_err(fail)
        }
        async fn cosign_claim(
            &self,
            _id: &eddy_core::types::SwapId,
            _preimage: &Preimage,
            _nonce: &eddy_core::musig::PubNonceBytes,
            _tx: &bitcoin::Transaction,
            _index: usize,
            _prevouts: &[bitcoin::TxOut],
        ) -> Result<(eddy_core::musig::PubNonceBytes, eddy_core::musig::PartialSigBytes), ApiCallError> {
            Err(ApiCallError::Failed("no co-signing today".into()))
        }
    }
    #[async_trait]
    impl LoopInApi for NoCosign {}
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(
        dir.path(),
        Some(Box::new(|server, _node| -> Arc<dyn SwapServerApi> {
            Arc::new(NoCosign(server))
        })),
        &|_| {},
    )
    .expect("swapnet");
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("address")
        .script_pubkey();
    let amount = Amount::from_sat(80_000);
    let id = net.rt.block_on(net.client.loop_out(amount, dest)).expect("loop-out");
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(net.client.tick()).expect("client tick");
        let (_, c) = net.rt.block_on(net.client.swap(&id)).expect("client swap");
        match &c.state {
            State::Succeeded { claim_txid } => {
                let tx = net
                    .rt
                    .block_on(net.chain.transaction(claim_txid))
                    .expect("tx")
                    .expect("known")
                    .tx;
                assert_eq!(tx.vsize(), 140, "script-path claim");
                assert_eq!(tx.output[0].value, amount - Amount::from_sat(280));
                break;
            }
            State::Failed(r) => panic!("failed: {r:?}"),
            State::HtlcConfirming { .. } | State::Claiming { .. } => net.mine(1).expect("mine"),
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "{:?}", c.state);
    }
    net.stop().expect("stop");
}

/// A fee spike after the claim is out and miners that leave it out: the client re-signs a
/// bumped claim in every block (BIP125: more per vbyte and in total), never above its miner-fee
/// limit, and the last one confirms; the client gets the HTLC minus exactly that claim's fee.
#[test]
fn fee_spike_claim_is_bumped_every_block_until_confirmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("address")
        .script_pubkey();
    let amount = Amount::from_sat(90_000);
    let id = net
        .rt
        .block_on(net.client.loop_out(amount, dest.clone()))
        .expect("loop-out");
    let tick = |net: &eddy::demo::Swapnet| {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(net.client.tick()).expect("client tick");
        net.rt.block_on(net.client.swap(&id)).expect("swap").1
    };
    // Up to the first claim.
    let start = std::time::Instant::now();
    loop {
        let c = tick(&net);
        match c.state {
            State::Claiming {
                claim_txid: Some(_), ..
            } => break,
            State::HtlcConfirming { .. } => net.mine(1).expect("mine"),
            State::Failed(r) => panic!("{r:?}"),
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
    }
    if !net.lab.chain.is_devnet() {
        // A regtest bitcoind has no estimate to spike; only the devnet can fake one.
        eprintln!("skipping the fee spike: the fee estimate is devnet-only");
        net.stop().expect("stop");
        return;
    }
    // Fees spike to 20 sat/vB; three blocks come without the claim.
    net.lab.chain.set_fee_estimate(Some(20.0)).expect("spike");
    let faucet = net.lab.chain.faucet_address().expect("addr").to_string();
    let mut fees = vec![];
    for _ in 0..3 {
        let c = tick(&net);
        let claim = c.claim.clone().expect("claim");
        fees.push((claim.last().expect("sweep broadcast"), claim.fee().expect("sweep fee")));
        let _: serde_json::Value = net
            .lab
            .chain
            .rpc("generateblock", serde_json::json!([faucet, []]))
            .expect("empty block");
        let tip = net.lab.chain.tip().expect("tip");
        for n in [&net.server_ln, &net.client_ln] {
            eddy_lab::wait_synced(n.ldk(), tip, eddy_lab::WAIT).expect("sync");
        }
    }
    let c = tick(&net);
    let last = c.claim.clone().expect("claim");
    fees.push((last.last().expect("sweep broadcast"), last.fee().expect("sweep fee")));
    for w in fees.windows(2) {
        assert!(w[1].1 > w[0].1, "each block's claim pays more: {fees:?}");
        assert_ne!(w[1].0, w[0].0);
    }
    assert!(
        last.fee().expect("sweep fee") <= Amount::from_sat(5_000),
        "never above the client's miner-fee limit"
    );
    assert!(last.all.len() >= 4);
    // Miners include it now.
    let start = std::time::Instant::now();
    let claim_txid = loop {
        net.mine(1).expect("mine");
        let c = tick(&net);
        if let State::Succeeded { claim_txid } = c.state {
            break claim_txid;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "{:?}", c.state);
    };
    assert_eq!(
        claim_txid,
        last.last().expect("sweep broadcast"),
        "the highest bump confirmed"
    );
    let tx = net
        .rt
        .block_on(net.chain.transaction(&claim_txid))
        .expect("tx")
        .expect("known")
        .tx;
    assert_eq!(tx.output[0].script_pubkey, dest);
    assert_eq!(tx.output[0].value, amount - last.fee().expect("sweep fee"));
    net.stop().expect("stop");
}
