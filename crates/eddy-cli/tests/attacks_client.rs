//! The standing attacker against the swap CLIENT (issue 12): a hostile server, written for the
//! tests, against the real client engines (`LoopOutClient`, `LoopInClient`) on the devnet with
//! real LDK nodes. The hostile server is [`Hostile`]: it speaks to the real server engine over
//! its real HTTP API (`HttpSwapServer`) and tampers with chosen answers on the way back
//! (forged invoices signed by another key, a fee above the amount, claims of the wrong output,
//! calls that hang, co-signatures refused); where the attack is on-chain (a daemon down across
//! `E`, the address paid twice) the test plays it with the devnet. Every test names its attack
//! and asserts exact money on both sides.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::{Amount, OutPoint, Transaction};
use eddy::demo::{swapnet, Swapnet};
use eddy_backends::LightningNode;
use eddy_client::loop_in::{LoopInClient, LoopInOptions};
use eddy_client::{
    ApiCallError, ClaimToSign, ClientError, HttpSwapServer, LoopInApi, LoopOutApi, LoopOutClient, SwapOptions,
    SwapServerApi, SwapState,
};
use eddy_core::constants::PREIMAGE_REVEAL_CUTOFF;
use eddy_core::musig::{PartialSigBytes, PubNonceBytes};
use eddy_core::sm::loop_in_client::State as InState;
use eddy_core::sm::loop_in_server::State as ServerInState;
use eddy_core::sm::loop_out_client::State as OutState;
use eddy_core::types::{Preimage, SwapId};
use eddy_core::validate::{LoopInCreate, LoopInOffer, LoopOutCreate, LoopOutOffer};

/// What the hostile server does besides answering like the real one.
#[derive(Default)]
struct Knobs {
    /// Answer loop-out offers with both invoices re-signed by another node key, the swap
    /// invoice carrying a route hint of this many CLTV blocks.
    route_hint_cltv: Option<u16>,
    /// Answer loop-out offers with the swap invoice asking this much more (msat), re-signed.
    extra_swap_msat: Option<u64>,
    /// Quote this loop-in fee instead of the real one.
    loop_in_fee: Option<Amount>,
    /// Ask the client to co-sign a claim of this output instead of the real one.
    claim_outpoint: Option<OutPoint>,
    /// Ask the client to co-sign its real input of a claim batch that also spends this output
    /// (another of its HTLC's) in a second input, its prevout named as a stranger's would be.
    claim_rider: Option<OutPoint>,
    /// Refuse to co-sign loop-out claims while set.
    refuse_claim_cosign: Arc<AtomicBool>,
    /// Calls about this swap never answer (a server that hangs).
    hang: Option<SwapId>,
    /// Answer loop-out co-signing with a partial signature that does not verify.
    garbage_partial: bool,
    /// The same, only for this input of a batched claim (several inputs).
    garbage_partial_index: Option<usize>,
    /// Report this state for every swap instead of the real one.
    fake_state: Option<&'static str>,
    /// Refuse every loop-in refund co-signing.
    refuse_refund_cosign: bool,
}

/// The hostile server: the real server over HTTP, with [`Knobs`] applied.
struct Hostile {
    real: HttpSwapServer,
    knobs: Knobs,
    /// Partial signatures the client handed over for claims of `claim_outpoint`.
    wrong_cosigns: AtomicU32,
    /// The loop-in claim we asked the client to co-sign.
    asked: Mutex<Option<Transaction>>,
}

impl Hostile {
    fn new(net: &Swapnet, knobs: Knobs) -> Arc<Hostile> {
        let url = net.http.as_ref().expect("the server's HTTP API").url();
        Arc::new(Hostile {
            real: HttpSwapServer::new(&url, keys(net)).expect("http client"),
            knobs,
            wrong_cosigns: AtomicU32::new(0),
            asked: Mutex::new(None),
        })
    }

    async fn hang_if(&self, id: &SwapId) {
        if self.knobs.hang == Some(*id) {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
        }
    }
}

/// `invoice` re-signed by a key the server does not own, asking `extra_msat` more and carrying
/// a one-hop route hint of `hint_cltv` blocks if given.
fn forge(invoice: &str, extra_msat: u64, hint_cltv: Option<u16>) -> Result<String, String> {
    use lightning_invoice::{Bolt11Invoice, InvoiceBuilder, RouteHint, RouteHintHop, RoutingFees};
    let inv: Bolt11Invoice = invoice.parse().map_err(|_| "parse")?;
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let key = bitcoin::secp256k1::SecretKey::from_slice(&[0x42; 32]).map_err(|e| e.to_string())?;
    let mut b = InvoiceBuilder::new(inv.currency())
        .description("hostile".into())
        .payment_hash(*inv.payment_hash())
        .payment_secret(*inv.payment_secret())
        .current_timestamp()
        .min_final_cltv_expiry_delta(inv.min_final_cltv_expiry_delta())
        .amount_milli_satoshis(inv.amount_milli_satoshis().unwrap_or(0) + extra_msat)
        .expiry_time(Duration::from_secs(3_600));
    if let Some(cltv) = hint_cltv {
        b = b.private_route(RouteHint(vec![RouteHintHop {
            src_node_id: bitcoin::secp256k1::PublicKey::from_secret_key(
                &secp,
                &bitcoin::secp256k1::SecretKey::from_slice(&[0x43; 32]).map_err(|e| e.to_string())?,
            ),
            short_channel_id: 42,
            fees: RoutingFees {
                base_msat: 0,
                proportional_millionths: 0,
            },
            cltv_expiry_delta: cltv,
            htlc_minimum_msat: None,
            htlc_maximum_msat: None,
        }]));
    }
    b.build_signed(|m| secp.sign_ecdsa_recoverable(m, &key))
        .map(|i| i.to_string())
        .map_err(|e| e.to_string())
}

#[async_trait]
impl LoopOutApi for Hostile {
    async fn loop_out(&self, req: &LoopOutCreate) -> Result<LoopOutOffer, ApiCallError> {
        let mut offer = self.real.loop_out(req).await?;
        if self.knobs.route_hint_cltv.is_some() || self.knobs.extra_swap_msat.is_some() {
            offer.swap_invoice = forge(
                &offer.swap_invoice,
                self.knobs.extra_swap_msat.unwrap_or(0),
                self.knobs.route_hint_cltv,
            )
            .map_err(ApiCallError::Failed)?;
            let prepay = offer.prepay_invoice.as_deref().unwrap_or_default();
            offer.prepay_invoice = Some(forge(prepay, 0, None).map_err(ApiCallError::Failed)?);
        }
        Ok(offer)
    }

    async fn push_preimage(&self, preimage: &Preimage) -> Result<(), ApiCallError> {
        self.hang_if(&SwapId::from(preimage.payment_hash())).await;
        self.real.push_preimage(preimage).await
    }

    async fn cosign_claim(
        &self,
        id: &SwapId,
        preimage: &Preimage,
        nonce: &PubNonceBytes,
        tx: &Transaction,
        index: usize,
        prevouts: &[bitcoin::TxOut],
    ) -> Result<(PubNonceBytes, PartialSigBytes), ApiCallError> {
        self.hang_if(id).await;
        if self.knobs.refuse_claim_cosign.load(Ordering::SeqCst) {
            return Err(ApiCallError::Failed("not co-signing now".into()));
        }
        let (n, mut partial) = self.real.cosign_claim(id, preimage, nonce, tx, index, prevouts).await?;
        if self.knobs.garbage_partial || (tx.input.len() > 1 && self.knobs.garbage_partial_index == Some(index)) {
            partial[31] ^= 1;
        }
        Ok((n, partial))
    }

    fn batches_claims(&self) -> bool {
        self.real.batches_claims()
    }
}

#[async_trait]
impl LoopInApi for Hostile {
    async fn loop_in_fee(&self, amount: Amount) -> Result<Amount, ApiCallError> {
        match self.knobs.loop_in_fee {
            Some(f) => Ok(f),
            None => self.real.loop_in_fee(amount).await,
        }
    }

    async fn loop_in(&self, req: &LoopInCreate) -> Result<LoopInOffer, ApiCallError> {
        self.real.loop_in(req).await
    }

    async fn swap_state(&self, id: &SwapId) -> Result<SwapState, ApiCallError> {
        self.hang_if(id).await;
        if let Some(s) = self.knobs.fake_state {
            return Ok(SwapState::from_name(s));
        }
        self.real.swap_state(id).await
    }

    async fn claim_request(&self, id: &SwapId) -> Result<(PubNonceBytes, ClaimToSign), ApiCallError> {
        let (
            nonce,
            ClaimToSign::Transaction {
                mut tx,
                index,
                prevouts,
            },
        ) = self.real.claim_request(id).await?
        else {
            return Err(ApiCallError::Failed(
                "the in-process server offers claims as transactions".into(),
            ));
        };
        if let Some(o) = self.knobs.claim_outpoint {
            tx.input[index].previous_output = o;
        }
        let mut prevouts = prevouts;
        if let Some(o) = self.knobs.claim_rider {
            tx.input.push(bitcoin::TxIn {
                previous_output: o,
                ..tx.input[index].clone()
            });
            if let Some(p) = prevouts.as_mut() {
                p.push(bitcoin::TxOut {
                    value: Amount::from_sat(25_000),
                    script_pubkey: bitcoin::ScriptBuf::new_op_return([0u8; 4]),
                });
            }
        }
        *self.asked.lock().expect("lock") = Some(tx.clone());
        Ok((nonce, ClaimToSign::Transaction { tx, index, prevouts }))
    }

    async fn claim_cosign(
        &self,
        id: &SwapId,
        nonce: &PubNonceBytes,
        partial: &PartialSigBytes,
    ) -> Result<(), ApiCallError> {
        if self.knobs.claim_outpoint.is_some() || self.knobs.claim_rider.is_some() {
            self.wrong_cosigns.fetch_add(1, Ordering::SeqCst);
        }
        self.real.claim_cosign(id, nonce, partial).await
    }

    async fn cosign_refund(
        &self,
        id: &SwapId,
        nonce: &PubNonceBytes,
        tx: &Transaction,
    ) -> Result<(PubNonceBytes, PartialSigBytes), ApiCallError> {
        self.hang_if(id).await;
        if self.knobs.refuse_refund_cosign {
            return Err(ApiCallError::Failed("no refund for you".into()));
        }
        self.real.cosign_refund(id, nonce, tx).await
    }
}

fn keys(net: &Swapnet) -> eddy_store::SeedKeys {
    eddy_store::SeedKeys::load_or_create(&net.dir, eddy_client::SEED_FILE).expect("seed")
}

fn out_client(net: &Swapnet, api: Arc<dyn SwapServerApi>) -> LoopOutClient {
    net.rt
        .block_on(LoopOutClient::new(
            eddy::demo::client_config(),
            net.client_ln.clone(),
            net.chain.clone(),
            net.client_store.clone(),
            api,
            keys(net),
        ))
        .expect("loop-out client")
}

fn in_client(net: &Swapnet, api: Arc<dyn SwapServerApi>) -> LoopInClient {
    net.rt
        .block_on(LoopInClient::new(
            eddy::demo::client_config(),
            net.client_ln.clone(),
            net.chain.clone(),
            net.client_store.clone(),
            api,
            keys(net),
        ))
        .expect("loop-in client")
}

fn lightning(net: &Swapnet) -> u64 {
    net.client_ln.ldk().list_balances().total_lightning_balance_sats
}

/// Lightning payments the client's node has made or tried (on-chain ones aside).
fn lightning_payments(net: &Swapnet) -> usize {
    net.client_ln
        .ldk()
        .list_payments()
        .iter()
        .filter(|p| !matches!(p.kind, ldk_node::payment::PaymentKind::Onchain { .. }))
        .count()
}

fn onchain(net: &Swapnet) -> u64 {
    let _ = net.client_ln.ldk().sync_wallets();
    net.client_ln.ldk().list_balances().total_onchain_balance_sats
}

/// Gives the client node 300,000 sat on-chain; returns its on-chain balance.
fn fund_client(net: &Swapnet) -> u64 {
    let addr = net.rt.block_on(net.client_ln.new_address()).expect("address");
    net.lab.chain.fund(&addr, Amount::from_sat(300_000)).expect("fund");
    net.mine(1).expect("mine");
    eddy_lab::wait_until("client wallet funded", eddy_lab::WAIT, || {
        let _ = net.client_ln.ldk().sync_wallets();
        net.client_ln.ldk().list_balances().spendable_onchain_balance_sats > 0
    })
    .expect("funded");
    onchain(net)
}

fn tx(net: &Swapnet, txid: &bitcoin::Txid) -> eddy_backends::TxStatus {
    net.rt
        .block_on(net.chain.transaction(txid))
        .expect("rpc")
        .expect("known transaction")
}

/// A transaction's miner fee (the lab finds it however deep, without `-txindex`).
fn fee_of(net: &Swapnet, txid: &bitcoin::Txid) -> u64 {
    net.lab.chain.fee(txid).expect("fee").to_sat()
}

fn tip(net: &Swapnet) -> u32 {
    net.lab.chain.tip().expect("tip").0
}

/// Mines up to height `h` (both nodes synced).
fn mine_to(net: &Swapnet, h: u32) {
    let t = tip(net);
    if h > t {
        net.mine(h - t).expect("mine");
    }
}

fn in_mempool(net: &Swapnet, txid: &bitcoin::Txid) -> bool {
    net.lab
        .chain
        .rpc::<serde_json::Value>("getmempoolentry", serde_json::json!([txid.to_string()]))
        .is_ok()
}

/// Attack (finding 7): the server's swap invoice carries a route hint with `cltv_expiry_delta`
/// 1,000, which would lock the client's payment (and channel liquidity) ~1,000 blocks. The
/// client refuses the offer before anything is paid: no payment, no stored swap, both nodes'
/// channel balances as before.
#[test]
fn attack_route_hint_with_huge_cltv_is_refused_before_paying() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let hostile = Hostile::new(
        &net,
        Knobs {
            route_hint_cltv: Some(1_000),
            ..Knobs::default()
        },
    );
    let client = out_client(&net, hostile);
    let (c0, s0) = (
        lightning(&net),
        net.server_ln.ldk().list_balances().total_lightning_balance_sats,
    );
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("addr")
        .script_pubkey();
    let res = net.rt.block_on(client.loop_out(Amount::from_sat(100_000), dest));
    match res {
        Err(ClientError::OfferRefused(m)) => assert!(m.contains("route hints"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(lightning_payments(&net), 0, "nothing paid");
    assert_eq!(lightning(&net), c0);
    assert_eq!(net.server_ln.ldk().list_balances().total_lightning_balance_sats, s0);
    assert!(net
        .rt
        .block_on(net.client_store.list(eddy_store::ListFilter::All))
        .expect("list")
        .is_empty());
    net.stop().expect("stop");
}

/// Attack (finding 10 and hostile quotes): a loop-in quote whose fee exceeds the amount (the
/// client's `amount − fee` would wrap around), a loop-in fee above the client's limit, and a
/// loop-out swap invoice asking 10,000 sat more than the amount plus the fee limit allow. Each
/// is refused before anything is created, funded or paid: balances unchanged to the satoshi.
#[test]
fn attack_hostile_quotes_are_refused_before_anything_moves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let chain0 = fund_client(&net);
    let ln0 = lightning(&net);
    let amount = Amount::from_sat(50_000);
    for (fee, want) in [
        (Amount::from_sat(50_001), "leaves nothing"),
        (Amount::from_sat(50_000), "leaves nothing"),
        (Amount::from_sat(5_001), "exceeds the limit"),
    ] {
        let hostile = Hostile::new(
            &net,
            Knobs {
                loop_in_fee: Some(fee),
                ..Knobs::default()
            },
        );
        let client = in_client(&net, hostile);
        match net.rt.block_on(client.loop_in(amount, LoopInOptions::default())) {
            Err(ClientError::OfferRefused(m)) => assert!(m.contains(want), "{fee}: {m}"),
            other => panic!("{fee}: expected a refusal, got {other:?}"),
        }
    }
    let hostile = Hostile::new(
        &net,
        Knobs {
            extra_swap_msat: Some(10_000_000),
            ..Knobs::default()
        },
    );
    let client = out_client(&net, hostile);
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("addr")
        .script_pubkey();
    match net.rt.block_on(client.loop_out(Amount::from_sat(100_000), dest)) {
        Err(ClientError::OfferRefused(m)) => assert!(m.contains("fee"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(lightning_payments(&net), 0, "nothing paid");
    assert!(net
        .rt
        .block_on(net.client_store.list(eddy_store::ListFilter::All))
        .expect("list")
        .is_empty());
    assert_eq!(lightning(&net), ln0);
    assert_eq!(onchain(&net), chain0, "nothing funded");
    net.stop().expect("stop");
}

/// Attack (finding 3, loop-in): the server takes the funding and never pays; the client's
/// daemon is down from just after the funding confirmed until far past `E` and the old give-up
/// height (`E + 24`). Back up, it refunds by the timeout path at once — it used to end the swap
/// `Failed(TimedOut)` with the coins left in the HTLC. Exact money: the client's wallet is short
/// of exactly the two miner fees, its channel balance untouched; the server gained nothing.
#[test]
fn attack_loop_in_client_down_across_expiry_still_refunds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let hostile = Hostile::new(&net, Knobs::default());
    let client = in_client(&net, hostile.clone());
    let chain0 = fund_client(&net);
    let ln0 = lightning(&net);
    let server_wallet0 = net.rt.block_on(net.server.wallet_balance()).spendable;
    let amount = Amount::from_sat(80_000);
    let id = net
        .rt
        .block_on(client.loop_in(amount, LoopInOptions::default()))
        .expect("loop-in");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    let InState::Funding { txid: funding } = rec.state else {
        panic!("{:?}", rec.state)
    };
    net.mine(1).expect("mine");
    net.rt.block_on(client.tick()).expect("tick");
    assert!(matches!(
        net.rt.block_on(client.swap(&id)).expect("swap").1.state,
        InState::Funded { .. }
    ));
    // The daemon goes down; the server's engine never pays.
    drop(client);
    let expiry = rec.terms.expiry;
    mine_to(&net, rec.terms.give_up_height() + 10);
    let client = in_client(&net, hostile);
    net.rt.block_on(client.tick()).expect("tick");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    let InState::Refunding {
        refund_txid: Some(refund),
        ..
    } = rec.state
    else {
        panic!("refund broadcast at once after the downtime: {:?}", rec.state)
    };
    assert_eq!(
        tx(&net, &refund).tx.lock_time.to_consensus_u32(),
        expiry,
        "timeout path"
    );
    let start = std::time::Instant::now();
    while !matches!(
        net.rt.block_on(client.swap(&id)).expect("swap").1.state,
        InState::Refunded { .. }
    ) {
        net.mine(1).expect("mine");
        net.rt.block_on(client.tick()).expect("tick");
        assert!(start.elapsed() < eddy_lab::WAIT);
    }
    let refund_fee = fee_of(&net, &refund);
    let funding_fee = fee_of(&net, &funding);
    eddy_lab::wait_until("client on-chain", eddy_lab::WAIT, || {
        onchain(&net) == chain0 - funding_fee - refund_fee
    })
    .expect("everything back but the two miner fees");
    assert_eq!(lightning(&net), ln0);
    net.rt.block_on(net.server.tick()).expect("server tick");
    assert_eq!(net.rt.block_on(net.server.wallet_balance()).spendable, server_wallet0);
    net.stop().expect("stop");
}

/// Attack (finding 4): the HTLC address is paid twice — the amount, and 25,000 sat more in a
/// second output — and the hostile server asks the client to co-sign a key-path "claim" of
/// the extra output instead of the one it paid for. The client refuses (no partial signature
/// leaves it for that output), the server claims its own output by the script path, and the
/// client refunds the extra output by the timeout path at `E`; the swap ends only then.
/// Exact money: the client receives `amount − fee` over Lightning and the extra output less
/// its refund fee; the server's wallet gains the amount less its claim fee.
#[test]
fn attack_address_paid_twice_extra_refunded_and_wrong_claim_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let hostile = paid_twice_with(&net, |extra_out| Knobs {
        claim_outpoint: Some(extra_out),
        ..Knobs::default()
    });
    assert!(hostile.asked.lock().expect("lock").is_some(), "the server asked");
    assert_eq!(
        hostile.wrong_cosigns.load(Ordering::SeqCst),
        0,
        "never co-signed the extra"
    );
    net.stop().expect("stop");
}

/// The loop-in of `attack_address_paid_twice_extra_refunded_and_wrong_claim_refused` through
/// a hostile server with `knobs` (given the extra output), driven to its end with its exact
/// money checked; the hostile server.
fn paid_twice_with(net: &Swapnet, knobs: impl FnOnce(OutPoint) -> Knobs) -> Arc<Hostile> {
    let ln0 = lightning(net);
    let wallet0 = net.rt.block_on(net.server.wallet_balance()).spendable;
    let amount = Amount::from_sat(60_000);
    let extra = Amount::from_sat(25_000);
    // Find the extra output first (the test plays the payer), then the hostile server.
    let probe = in_client(net, Hostile::new(net, Knobs::default()));
    let external = LoopInOptions {
        external: true,
        ..LoopInOptions::default()
    };
    let id = net.rt.block_on(probe.loop_in(amount, external)).expect("loop-in");
    drop(probe);
    let (_, rec) = net.rt.block_on(net.client_in.swap(&id)).expect("swap");
    let address: bitcoin::Address = rec
        .offer
        .htlc_address
        .parse::<bitcoin::Address<_>>()
        .expect("address")
        .assume_checked();
    let (exact, extra_out) = fund_twice(net, &address, amount, extra);
    let hostile = Hostile::new(net, knobs(extra_out));
    let client = in_client(net, hostile.clone());
    // 60,000 − (1,000 + 300) = 58,700 over Lightning.
    paid_twice_extra_refunded_at_expiry(
        net,
        &client,
        id,
        (exact, extra_out),
        (amount, extra),
        (ln0 + 58_700, wallet0),
    );
    hostile
}

/// **A hostile server slips the client's other output into its claim batch** (issue 17):
/// the client's address was paid twice (the exact amount and 25,000 sat more); the server
/// offers a claim batch whose input at the index named is the output it paid for, with a
/// second input spending the extra output (its prevout misnamed as a stranger's). The client
/// never co-signs it; it refunds the extra by the timeout path at `E`. Exact money as in the
/// test above.
#[test]
fn attack_claim_batch_riding_the_clients_other_output_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let hostile = paid_twice_with(&net, |extra_out| Knobs {
        claim_rider: Some(extra_out),
        ..Knobs::default()
    });
    let asked = hostile.asked.lock().expect("lock").clone().expect("the server asked");
    assert_eq!(asked.input.len(), 2, "the batch offered rode the extra output");
    assert_eq!(
        hostile.wrong_cosigns.load(Ordering::SeqCst),
        0,
        "never co-signed a batch spending the extra"
    );
    net.stop().expect("stop");
}

/// Pays `address` twice from the lab: `amount` and `extra` in a second output; answers the
/// first's txid and the extra output.
fn fund_twice(net: &Swapnet, address: &bitcoin::Address, amount: Amount, extra: Amount) -> (bitcoin::Txid, OutPoint) {
    let exact = net.lab.chain.fund(address, amount).expect("fund");
    let extra_tx = net.lab.chain.fund(address, extra).expect("fund extra");
    let vout = tx(net, &extra_tx)
        .tx
        .output
        .iter()
        .position(|o| o.value == extra && o.script_pubkey == address.script_pubkey())
        .expect("extra output") as u32;
    (exact, OutPoint { txid: extra_tx, vout })
}

/// Loop-in `id`'s address paid twice (`exact`'s output of the amount, and `extra_out`): the
/// server pays for the exact output and, given no co-signature, claims it by the script path;
/// nothing moves before `E`; at `E` the client refunds the extra output, and the swap ends
/// only then. Exact money: the client's Lightning balance ends at `ln_after`, its wallet gains
/// the extra less its refund fee; the server's swap wallet (`wallet0` before) gains the amount
/// less its claim fee.
fn paid_twice_extra_refunded_at_expiry(
    net: &Swapnet,
    client: &LoopInClient,
    id: SwapId,
    (exact, extra_out): (bitcoin::Txid, OutPoint),
    (amount, extra): (Amount, Amount),
    (ln_after, wallet0): (u64, Amount),
) {
    net.mine(1).expect("mine");
    let chain0 = onchain(net);
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(client.tick()).expect("client tick");
        let c = net.rt.block_on(client.swap(&id)).expect("c").1.state;
        let (_, srec) = net.rt.block_on(net.server.loop_in.swap(&id)).expect("s");
        if srec.state == ServerInState::Succeeded {
            assert_eq!(c, InState::Paid, "the extra output keeps the swap open");
            break;
        }
        assert!(!c.is_terminal(), "{c:?}");
        // Blocks once the client had its chance to co-sign (it refused: the server then claims
        // by the script path).
        if matches!(srec.state, ServerInState::Claiming { .. }) && (srec.claim.is_some() || c == InState::Paid) {
            net.mine(1).expect("mine");
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "client {c:?} server {:?}", srec.state);
    }
    let (_, srec) = net.rt.block_on(net.server.loop_in.swap(&id)).expect("s");
    let claim = srec
        .claim
        .expect("claim")
        .all
        .iter()
        .map(|t| tx(net, t))
        .find(|t| t.block.is_some())
        .expect("confirmed claim");
    assert_eq!(claim.tx.input[0].previous_output.txid, exact, "the server's own output");
    assert!(claim.tx.input[0].witness.len() > 1, "script path");
    // Nothing moves before E; at E the extra output is refunded.
    let expiry = net.rt.block_on(client.swap(&id)).expect("c").1.terms.expiry;
    mine_to(net, expiry - 1);
    net.rt.block_on(client.tick()).expect("tick");
    assert_eq!(net.rt.block_on(client.swap(&id)).expect("c").1.state, InState::Paid);
    let start = std::time::Instant::now();
    while net.rt.block_on(client.swap(&id)).expect("c").1.state != InState::Succeeded {
        net.mine(1).expect("mine");
        net.rt.block_on(client.tick()).expect("tick");
        assert!(start.elapsed() < eddy_lab::WAIT);
    }
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("c");
    assert_eq!(rec.refunds.len(), 1);
    assert_eq!(rec.refunds[0].outpoint, Some(extra_out));
    let refund = rec.refunds[0]
        .all
        .iter()
        .map(|t| tx(net, t))
        .find(|t| t.block.is_some())
        .expect("confirmed refund");
    let refund_fee = extra - refund.tx.output[0].value;
    eddy_lab::wait_until("client balances", eddy_lab::WAIT, || {
        lightning(net) == ln_after && onchain(net) == chain0 + (extra - refund_fee).to_sat()
    })
    .expect("exact client balances");
    let claim_fee = amount - claim.tx.output[0].value;
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(
        net.rt.block_on(net.server.wallet_balance()).spendable,
        wallet0 + amount - claim_fee
    );
}

/// Attack (finding 4, two parts): the user pays the address in two parts (40,000 + 20,000 for
/// a 60,000 loop-in, as an external wallet might). Neither is the amount, the server never
/// pays; the client refunds BOTH outputs cooperatively, one refund each, and ends only when
/// both are final. Exact money: both parts back less exactly the two refund fees.
#[test]
fn attack_two_part_funding_both_parts_refunded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let ln0 = lightning(&net);
    let client = in_client(&net, Hostile::new(&net, Knobs::default()));
    let amount = Amount::from_sat(60_000);
    let external = LoopInOptions {
        external: true,
        ..LoopInOptions::default()
    };
    let id = net.rt.block_on(client.loop_in(amount, external)).expect("loop-in");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    let address: bitcoin::Address = rec
        .offer
        .htlc_address
        .parse::<bitcoin::Address<_>>()
        .expect("address")
        .assume_checked();
    net.lab.chain.fund(&address, Amount::from_sat(40_000)).expect("part 1");
    net.lab.chain.fund(&address, Amount::from_sat(20_000)).expect("part 2");
    net.mine(1).expect("mine");
    let chain0 = onchain(&net);
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(client.tick()).expect("client tick");
        let (_, c) = net.rt.block_on(client.swap(&id)).expect("c");
        if matches!(c.state, InState::Refunded { .. }) {
            break;
        }
        if c.refunds.len() == 2 {
            net.mine(1).expect("mine");
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "{:?}", c.state);
    }
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("c");
    let mut back = 0;
    for r in &rec.refunds {
        let t = r
            .all
            .iter()
            .map(|t| tx(&net, t))
            .find(|t| t.block.is_some())
            .expect("confirmed refund");
        assert_eq!(t.tx.input.len(), 1);
        assert_eq!(t.tx.input[0].witness.len(), 1, "cooperative key path");
        back += t.tx.output[0].value.to_sat();
    }
    let fees = 60_000 - back;
    assert!(fees > 0 && fees < 1_000, "two refund fees: {fees}");
    eddy_lab::wait_until("client on-chain", eddy_lab::WAIT, || onchain(&net) == chain0 + back)
        .expect("both parts back less the two refund fees");
    assert_eq!(lightning(&net), ln0, "nothing paid over Lightning");
    net.stop().expect("stop");
}

/// Drives a loop-out through the server and `client` until the client has broadcast its first
/// claim (mining while the HTLC confirms).
fn until_first_claim(net: &Swapnet, client: &LoopOutClient, id: &SwapId) -> bitcoin::Txid {
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(client.tick()).expect("client tick");
        let c = net.rt.block_on(client.swap(id)).expect("swap").1;
        match c.state {
            OutState::Claiming {
                claim_txid: Some(t), ..
            } => return t,
            OutState::HtlcConfirming { .. } => net.mine(1).expect("mine"),
            OutState::Failed(r) => panic!("{r:?}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "{:?}", c.state);
    }
}

/// Attack (finding 10, BIP125 rule 3): the server refuses to co-sign at first, so the client's
/// first claim goes by the script path (140 vB); a block later the server co-signs and the
/// client's bump is a key-path claim (99 vB). At the bumped rate on fewer vbytes it would pay
/// less in total than the claim it replaces and the mempool would refuse it; it must pay at
/// least the first claim's fee plus 1 sat/vB for its own size. It replaces the first, confirms,
/// and the client receives exactly the amount less that fee.
#[test]
fn attack_key_path_replacement_pays_more_than_the_script_path_claim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let refuse = Arc::new(AtomicBool::new(true));
    let hostile = Hostile::new(
        &net,
        Knobs {
            refuse_claim_cosign: refuse.clone(),
            ..Knobs::default()
        },
    );
    let client = out_client(&net, hostile);
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("addr")
        .script_pubkey();
    let amount = Amount::from_sat(90_000);
    let id = net
        .rt
        .block_on(client.loop_out(amount, dest.clone()))
        .expect("loop-out");
    let first = until_first_claim(&net, &client, &id);
    let first_tx = tx(&net, &first).tx;
    assert!(first_tx.input[0].witness.len() > 1, "script path first");
    let first_fee = fee_of(&net, &first);
    // A block without the claim; now the server co-signs.
    refuse.store(false, Ordering::SeqCst);
    let faucet = net.lab.chain.faucet_address().expect("addr").to_string();
    let _: serde_json::Value = net
        .lab
        .chain
        .rpc("generateblock", serde_json::json!([faucet, []]))
        .expect("empty block");
    let t = net.lab.chain.tip().expect("tip");
    for n in [&net.server_ln, &net.client_ln] {
        eddy_lab::wait_synced(n.ldk(), t, eddy_lab::WAIT).expect("sync");
    }
    net.rt.block_on(net.server.tick()).expect("server tick");
    net.rt.block_on(client.tick()).expect("client tick");
    let c = net.rt.block_on(client.swap(&id)).expect("swap").1;
    let claim = c.claim.clone().expect("claim");
    assert_eq!(claim.all.len(), 2, "one bump");
    let second = claim.last().expect("sweep broadcast");
    let second_tx = tx(&net, &second).tx;
    assert_eq!(second_tx.input[0].witness.len(), 1, "key path");
    assert!(in_mempool(&net, &second), "the mempool took the replacement");
    assert!(!in_mempool(&net, &first), "it replaced the script-path claim");
    assert!(
        claim.fee().expect("sweep fee").to_sat() >= first_fee + second_tx.vsize() as u64,
        "rule 3 + 4: {} ≥ {first_fee} + {}",
        claim.fee().expect("sweep fee"),
        second_tx.vsize()
    );
    let start = std::time::Instant::now();
    loop {
        net.mine(1).expect("mine");
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(client.tick()).expect("client tick");
        if let OutState::Succeeded { claim_txid } = net.rt.block_on(client.swap(&id)).expect("swap").1.state {
            assert_eq!(claim_txid, second);
            break;
        }
        assert!(start.elapsed() < eddy_lab::WAIT);
    }
    assert_eq!(second_tx.output[0].script_pubkey, dest);
    assert_eq!(second_tx.output[0].value, amount - claim.fee().expect("sweep fee"));
    net.stop().expect("stop");
}

/// Attack (finding 3, loop-out): the client revealed its preimage (its claim is in the
/// mempool, the server settled) and then its daemon is down while miners leave the claim out
/// until far past `E` and past the old give-up height. Back up, it keeps claiming — a bump at
/// the urgent rate — instead of ending `Failed(TimedOut)` with the coins in the HTLC. Exact
/// money: the client receives the amount less its last claim's fee; its channel paid exactly
/// the swap and prepay invoices.
#[test]
fn attack_loop_out_client_down_after_reveal_still_claims() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let ln0 = lightning(&net);
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("addr")
        .script_pubkey();
    let amount = Amount::from_sat(100_000);
    let id = net
        .rt
        .block_on(net.client.loop_out(amount, dest.clone()))
        .expect("loop-out");
    let first = until_first_claim(&net, &net.client, &id);
    // The server learns the preimage and settles.
    let start = std::time::Instant::now();
    while net.rt.block_on(net.server.loop_out.swap(&id)).expect("s").1.state
        != eddy_core::sm::loop_out_server::State::Succeeded
    {
        net.rt.block_on(net.server.tick()).expect("server tick");
        assert!(start.elapsed() < eddy_lab::WAIT);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, rec) = net.rt.block_on(net.client.swap(&id)).expect("swap");
    let old_give_up = rec.offer.expiry.max(tip(&net) + 95 + 159) + 12;
    let target = old_give_up.max(rec.terms.give_up_height()) + 5;
    // The daemon is down; blocks come without the claim.
    let now = tip(&net);
    let _ = net
        .lab
        .chain
        .reorg(1, target - now, &[], &[])
        .expect("blocks without the claim");
    assert!(in_mempool(&net, &first), "the claim waits in the mempool");
    let t = net.lab.chain.tip().expect("tip");
    for n in [&net.server_ln, &net.client_ln] {
        eddy_lab::wait_synced(n.ldk(), t, eddy_lab::WAIT).expect("sync");
    }
    net.restart_engines().expect("restart");
    net.rt.block_on(net.client.tick()).expect("client tick");
    let c = net.rt.block_on(net.client.swap(&id)).expect("swap").1;
    assert!(matches!(c.state, OutState::Claiming { .. }), "{:?}", c.state);
    let claim = c.claim.clone().expect("claim");
    assert!(claim.all.len() >= 2, "bumped at once");
    let start = std::time::Instant::now();
    let claim_txid = loop {
        net.mine(1).expect("mine");
        net.rt.block_on(net.client.tick()).expect("client tick");
        if let OutState::Succeeded { claim_txid } = net.rt.block_on(net.client.swap(&id)).expect("swap").1.state {
            break claim_txid;
        }
        assert!(start.elapsed() < eddy_lab::WAIT);
    };
    let (_, c) = net.rt.block_on(net.client.swap(&id)).expect("swap");
    let (_, fee) = c.confirmed_claim().expect("confirmed claim");
    let claim_tx = tx(&net, &claim_txid).tx;
    assert_eq!(claim_tx.output[0].script_pubkey, dest);
    assert_eq!(claim_tx.output[0].value, amount - fee);
    let (_, s) = net.rt.block_on(net.server.loop_out.swap(&id)).expect("s");
    let paid = (s.terms.swap_invoice_msat + s.terms.prepay_msat) / 1000;
    eddy_lab::wait_until("client channel", eddy_lab::WAIT, || lightning(&net) == ln0 - paid)
        .expect("paid exactly the two invoices");
    net.stop().expect("stop");
}

/// Attack (finding 10): a server that never answers calls about one swap (the first loop-out)
/// must not stall the client's other swaps: every server call is bounded and the swaps' steps
/// run concurrently. The second loop-out completes while the first's calls hang; the first
/// claims by the script path without the server. Exact money on both.
#[test]
fn attack_hanging_server_calls_do_not_stall_other_swaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("addr")
        .script_pubkey();
    // The client makes the swap id: start the first swap through an honest adapter, then
    // hang every call about it.
    let honest = out_client(&net, Hostile::new(&net, Knobs::default()));
    let a = net
        .rt
        .block_on(honest.loop_out(Amount::from_sat(70_000), dest.clone()))
        .expect("loop-out a");
    drop(honest);
    let client = out_client(
        &net,
        Hostile::new(
            &net,
            Knobs {
                hang: Some(a),
                ..Knobs::default()
            },
        ),
    );
    let b = net
        .rt
        .block_on(client.loop_out(Amount::from_sat(60_000), dest.clone()))
        .expect("loop-out b");
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        let t0 = std::time::Instant::now();
        net.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), client.tick()).await })
            .expect("a pass never hangs")
            .expect("client tick");
        assert!(t0.elapsed() < Duration::from_secs(35), "pass took {:?}", t0.elapsed());
        let sa = net.rt.block_on(client.swap(&a)).expect("a").1.state;
        let sb = net.rt.block_on(client.swap(&b)).expect("b").1.state;
        if matches!(sa, OutState::Succeeded { .. }) && matches!(sb, OutState::Succeeded { .. }) {
            break;
        }
        assert!(
            !matches!(sa, OutState::Failed(_)) && !matches!(sb, OutState::Failed(_)),
            "{sa:?} {sb:?}"
        );
        if matches!(sa, OutState::HtlcConfirming { .. } | OutState::Claiming { .. })
            || matches!(sb, OutState::HtlcConfirming { .. } | OutState::Claiming { .. })
        {
            net.mine(1).expect("mine");
        }
        assert!(start.elapsed() < Duration::from_secs(400), "{sa:?} {sb:?}");
    }
    // Claimed alone or together (the server co-signs batches; the hung swap's input then takes
    // the script path): what the claims pay `dest` is each HTLC less its swap's part of the fee.
    let mut owed: std::collections::BTreeMap<bitcoin::Txid, Amount> = Default::default();
    for (id, amount) in [(a, 70_000), (b, 60_000)] {
        let (_, c) = net.rt.block_on(client.swap(&id)).expect("swap");
        let (txid, fee) = c.confirmed_claim().expect("claim");
        *owed.entry(txid).or_default() += Amount::from_sat(amount) - fee;
        if id == a {
            let htlc = c.claim.as_ref().and_then(|s| s.outpoint).expect("claimed output");
            let t = tx(&net, &txid).tx;
            let input = t.input.iter().find(|i| i.previous_output == htlc).expect("a's input");
            assert!(input.witness.len() > 1, "the hung swap claims by the script path");
        }
    }
    for (txid, owed) in owed {
        let t = tx(&net, &txid).tx;
        let paid: Amount = t
            .output
            .iter()
            .filter(|o| o.script_pubkey == dest)
            .map(|o| o.value)
            .sum();
        assert_eq!(paid, owed, "{t:?}");
        assert_eq!(Amount::from_sat(fee_of(&net, &txid)), {
            let ins: Amount = t
                .input
                .iter()
                .map(|i| tx(&net, &i.previous_output.txid).tx.output[i.previous_output.vout as usize].value)
                .sum();
            ins - paid
        });
    }
    net.stop().expect("stop");
}

/// The unspent value of `txid`'s output paying `address` (0 when spent).
fn unspent_at(net: &Swapnet, txid: &bitcoin::Txid, address: &bitcoin::Address) -> u64 {
    // It may be long mined: the lab finds it without `-txindex`.
    let t = net.lab.chain.transaction(txid).expect("transaction");
    let vout = t
        .output
        .iter()
        .position(|o| o.script_pubkey == address.script_pubkey())
        .expect("output");
    let out: serde_json::Value = net
        .lab
        .chain
        .rpc("gettxout", serde_json::json!([txid.to_string(), vout]))
        .expect("gettxout");
    out["value"].as_f64().map_or(0, |btc| (btc * 1e8).round() as u64)
}

fn htlc_address(offer_address: &str) -> bitcoin::Address {
    offer_address
        .parse::<bitcoin::Address<_>>()
        .expect("address")
        .assume_checked()
}

/// Attacks on the HTLC the server publishes, three loop-outs in one lab (the test plays the
/// server; its engine never publishes): (a) the right address but 1,000 sat short; (b) the
/// amount to the address of another script (the same swap with `E + 1`); (c) the right HTLC,
/// but published only 19 blocks before `E` (below the reveal cutoff). The client never reveals
/// a preimage, its payments fail back at the server node's deadline, and its channel balance
/// ends exactly as before, prepays included; every output the "server" paid stays unspent.
#[test]
fn attack_wrong_amount_wrong_script_or_late_htlc_is_never_claimed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let before = lightning(&net);
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("addr")
        .script_pubkey();
    let amount = Amount::from_sat(50_000);
    let ids: Vec<SwapId> = (0..3)
        .map(|_| {
            net.rt
                .block_on(net.client.loop_out(amount, dest.clone()))
                .expect("loop-out")
        })
        .collect();
    let recs: Vec<_> = ids
        .iter()
        .map(|id| net.rt.block_on(net.client.swap(id)).expect("swap").1)
        .collect();
    // (a) short.
    let a_addr = htlc_address(&recs[0].offer.htlc_address);
    let a = net
        .lab
        .chain
        .fund(&a_addr, amount - Amount::from_sat(1_000))
        .expect("fund a");
    // (b) another script: the same HTLC with another expiry.
    let other = eddy_core::htlc::Htlc::new(eddy_core::htlc::HtlcParams {
        timeout: recs[1].htlc.timeout + 1,
        ..recs[1].htlc
    })
    .expect("htlc");
    let b_addr = other.address(bitcoin::Network::Regtest);
    let b = net.lab.chain.fund(&b_addr, amount).expect("fund b");
    net.mine(1).expect("mine");
    net.rt.block_on(net.client.tick()).expect("tick");
    for id in &ids[..2] {
        assert_eq!(
            net.rt.block_on(net.client.swap(id)).expect("swap").1.state,
            OutState::Paying
        );
    }
    // (c) the right HTLC, 19 blocks before E.
    mine_to(&net, recs[2].offer.expiry - PREIMAGE_REVEAL_CUTOFF + 1);
    let c_addr = htlc_address(&recs[2].offer.htlc_address);
    let c = net.lab.chain.fund(&c_addr, amount).expect("fund c");
    net.mine(1).expect("mine");
    net.rt.block_on(net.client.tick()).expect("tick");
    assert!(matches!(
        net.rt.block_on(net.client.swap(&ids[2])).expect("swap").1.state,
        OutState::Failed(eddy_core::sm::loop_out_client::FailReason::NotClaimed(
            eddy_core::fees::DontClaim::TooLate { .. }
        ))
    ));
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.client.tick()).expect("client tick");
        let states: Vec<_> = ids
            .iter()
            .map(|id| net.rt.block_on(net.client.swap(id)).expect("swap").1)
            .collect();
        if lightning(&net) == before && states.iter().all(|r| r.state.is_terminal()) {
            for r in &states {
                assert!(r.claim.is_none(), "nothing revealed");
            }
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "balance {} before {before}",
            lightning(&net)
        );
        net.mine(5).expect("mine");
    }
    assert_eq!(unspent_at(&net, &a, &a_addr), 49_000);
    assert_eq!(unspent_at(&net, &b, &b_addr), 50_000);
    assert_eq!(unspent_at(&net, &c, &c_addr), 50_000);
    net.stop().expect("stop");
}

/// Attack: the server takes the prepay (settles it at once, as a hostile server could) and
/// never publishes the HTLC. The client loses at most the prepay — within its `max_prepay`
/// limit — and its swap payment fails back: its channel balance ends short of exactly the
/// prepay; no preimage was revealed.
#[test]
fn attack_prepay_taken_htlc_never_published_loses_only_the_prepay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let before = lightning(&net);
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("addr")
        .script_pubkey();
    let id = net
        .rt
        .block_on(net.client.loop_out(Amount::from_sat(100_000), dest))
        .expect("loop-out");
    let (_, s) = net.rt.block_on(net.server.loop_out.swap(&id)).expect("server swap");
    let prepay_sat = s.terms.prepay_msat / 1000;
    let prepay_hash = s.prepay_preimage.payment_hash();
    eddy_lab::wait_until("prepay held", eddy_lab::WAIT, || {
        matches!(
            net.rt.block_on(net.server_ln.hold_invoice_state(&prepay_hash)),
            Ok(eddy_backends::HoldInvoiceState::Accepted { .. })
        )
    })
    .expect("held");
    net.rt
        .block_on(net.server_ln.settle_hold_invoice(&s.prepay_preimage))
        .expect("the hostile server takes the prepay");
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.client.tick()).expect("client tick");
        let (_, rec) = net.rt.block_on(net.client.swap(&id)).expect("swap");
        if rec.state.is_terminal() && lightning(&net) == before - prepay_sat {
            assert_eq!(
                rec.state,
                OutState::Failed(eddy_core::sm::loop_out_client::FailReason::PaymentFailed)
            );
            assert!(rec.claim.is_none(), "nothing revealed");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{:?} {}",
            rec.state,
            lightning(&net)
        );
        net.mine(5).expect("mine");
    }
    assert!(prepay_sat <= eddy::demo::client_config().limits.max_prepay.to_sat());
    assert_eq!(prepay_sat, 1_000, "the demo server's prepay");
    net.stop().expect("stop");
}

/// Attack: a reorg takes the server's HTLC (and the client's claim, revealing the preimage)
/// out of the chain after the reveal; both return to the mempool. The client keeps its claim
/// out (re-broadcast, bumped) and still gets the coins when they are mined again. Exact money:
/// the amount less the fee of the claim that confirmed.
#[test]
fn attack_reorg_after_the_reveal_client_still_claims() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("addr")
        .script_pubkey();
    let amount = Amount::from_sat(80_000);
    let id = net
        .rt
        .block_on(net.client.loop_out(amount, dest.clone()))
        .expect("loop-out");
    let claim = until_first_claim(&net, &net.client, &id);
    let (_, s) = net.rt.block_on(net.server.loop_out.swap(&id)).expect("server swap");
    let funding = s.funding.expect("published").txid;
    net.mine(1).expect("mine the claim");
    assert!(tx(&net, &claim).block.is_some());
    // Two blocks out: the HTLC's block and the claim's; both back to the mempool.
    net.lab.chain.reorg(2, 1, &[funding, claim], &[]).expect("reorg");
    for (what, t) in [("HTLC", funding), ("claim", claim)] {
        let known = net.rt.block_on(net.chain.transaction(&t)).expect("rpc");
        assert!(
            known.as_ref().is_none_or(|k| k.block.is_none()),
            "{what} out of the chain"
        );
        eprintln!(
            "{what} after the reorg: {}",
            if known.is_some() { "in the mempool" } else { "gone" }
        );
    }
    let start = std::time::Instant::now();
    let claim_txid = loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(net.client.tick()).expect("client tick");
        if let OutState::Succeeded { claim_txid } = net.rt.block_on(net.client.swap(&id)).expect("swap").1.state {
            break claim_txid;
        }
        assert!(!net
            .rt
            .block_on(net.client.swap(&id))
            .expect("swap")
            .1
            .state
            .is_terminal());
        net.mine(1).expect("mine");
        assert!(start.elapsed() < eddy_lab::WAIT);
    };
    let (_, c) = net.rt.block_on(net.client.swap(&id)).expect("swap");
    let (_, fee) = c.confirmed_claim().expect("claim");
    let t = tx(&net, &claim_txid).tx;
    assert_eq!(t.output[0].script_pubkey, dest);
    assert_eq!(t.output[0].value, amount - fee);
    net.stop().expect("stop");
}

/// Attack: the server stops playing mid-MuSig2 — it answers the co-signing request with a
/// partial signature that does not verify. The client claims by the script path instead, and
/// the swap completes: the 140 vB script-path claim, the amount less exactly its fee.
#[test]
fn attack_bad_partial_signature_mid_musig2_falls_back_to_the_script_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let client = out_client(
        &net,
        Hostile::new(
            &net,
            Knobs {
                garbage_partial: true,
                ..Knobs::default()
            },
        ),
    );
    let ln0 = lightning(&net);
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("addr")
        .script_pubkey();
    let amount = Amount::from_sat(75_000);
    let id = net
        .rt
        .block_on(client.loop_out(amount, dest.clone()))
        .expect("loop-out");
    let first = until_first_claim(&net, &client, &id);
    assert_eq!(tx(&net, &first).tx.vsize(), 140, "script path");
    let start = std::time::Instant::now();
    let claim_txid = loop {
        net.mine(1).expect("mine");
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(client.tick()).expect("client tick");
        if let OutState::Succeeded { claim_txid } = net.rt.block_on(client.swap(&id)).expect("swap").1.state {
            break claim_txid;
        }
        assert!(start.elapsed() < eddy_lab::WAIT);
    };
    let (_, c) = net.rt.block_on(client.swap(&id)).expect("swap");
    let (_, fee) = c.confirmed_claim().expect("claim");
    let t = tx(&net, &claim_txid).tx;
    assert!(t.input[0].witness.len() > 1, "script path");
    assert_eq!(t.output[0].value, amount - fee);
    let (_, s) = net.rt.block_on(net.server.loop_out.swap(&id)).expect("s");
    let paid = (s.terms.swap_invoice_msat + s.terms.prepay_msat) / 1000;
    eddy_lab::wait_until("client channel", eddy_lab::WAIT, || lightning(&net) == ln0 - paid)
        .expect("paid exactly the two invoices");
    net.stop().expect("stop");
}

/// Attack: a server that co-signs the client's batched claim of three loop-outs but answers one
/// input with a partial signature that does not verify. The aggregation catches it, that input
/// moves to the script path, and the batch is rebuilt and co-signed again: one transaction, two
/// inputs on the key path and one on the script path, each swap paying its share of one fee,
/// each destination its HTLC's value less that share; the client's channel paid exactly the
/// invoices.
#[test]
fn attack_batched_claim_with_one_input_cosigned_wrong_claims_that_input_by_the_script_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let client = out_client(
        &net,
        Hostile::new(
            &net,
            Knobs {
                garbage_partial_index: Some(1),
                ..Knobs::default()
            },
        ),
    );
    let ln0 = lightning(&net);
    let amounts = [
        Amount::from_sat(50_000),
        Amount::from_sat(60_000),
        Amount::from_sat(70_000),
    ];
    let mut ids = vec![];
    for a in amounts {
        let dest = net
            .rt
            .block_on(net.client_ln.new_address())
            .expect("addr")
            .script_pubkey();
        ids.push(net.rt.block_on(client.loop_out(a, dest)).expect("loop-out"));
    }
    let states = |net: &Swapnet| -> Vec<OutState> {
        ids.iter()
            .map(|id| net.rt.block_on(client.swap(id)).expect("swap").1.state)
            .collect()
    };
    // Every HTLC published before a block is mined: their claims fall due together.
    let start = std::time::Instant::now();
    while !states(&net)
        .iter()
        .all(|s| matches!(s, OutState::HtlcConfirming { .. }))
    {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(client.tick()).expect("client tick");
        std::thread::sleep(Duration::from_millis(20));
        assert!(start.elapsed() < eddy_lab::WAIT, "{:?}", states(&net));
    }
    while !states(&net).iter().all(|s| matches!(s, OutState::Succeeded { .. })) {
        net.mine(1).expect("mine");
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(client.tick()).expect("client tick");
        assert!(start.elapsed() < eddy_lab::WAIT, "{:?}", states(&net));
    }
    let recs: Vec<_> = ids
        .iter()
        .map(|id| net.rt.block_on(client.swap(id)).expect("swap").1)
        .collect();
    let (claim_txid, _) = recs[0].confirmed_claim().expect("claimed");
    let claim = tx(&net, &claim_txid).tx;
    assert_eq!(claim.input.len(), 3, "one claim for the three");
    let script_inputs = claim.input.iter().filter(|i| i.witness.len() > 1).count();
    assert_eq!(
        script_inputs, 1,
        "the input co-signed wrong is claimed by the script path"
    );
    let fee = Amount::from_sat(fee_of(&net, &claim_txid));
    let mut shares = Amount::ZERO;
    for (rec, a) in recs.iter().zip(amounts) {
        let (txid, share) = rec.confirmed_claim().expect("claimed");
        assert_eq!(txid, claim_txid);
        let paid: Amount = claim
            .output
            .iter()
            .filter(|o| o.script_pubkey == rec.destination)
            .map(|o| o.value)
            .sum();
        assert_eq!(paid, a - share);
        shares += share;
    }
    assert_eq!(shares, fee);
    // 10.5 vB + 2 × 57.5 (key path) + 98.5 (script path) + 3 × 31 (P2WPKH outputs).
    assert_eq!(claim.vsize(), 317);
    let paid: u64 = ids
        .iter()
        .map(|id| {
            let (_, s) = net.rt.block_on(net.server.loop_out.swap(id)).expect("s");
            (s.terms.swap_invoice_msat + s.terms.prepay_msat) / 1000
        })
        .sum();
    eddy_lab::wait_until("client channel", eddy_lab::WAIT, || lightning(&net) == ln0 - paid)
        .expect("paid exactly the invoices");
    net.stop().expect("stop");
}

/// Attack: a loop-in server that says the swap failed ("refundable") but never co-signs the
/// refund, and never pays. The client never co-signs anything of the server's (it asks for no
/// claim before being paid), keeps asking for the cooperative refund, and refunds by the
/// timeout path at `E`. Exact money: its wallet short of exactly the two miner fees, its
/// channel untouched.
#[test]
fn attack_loop_in_refund_never_cosigned_timeout_refund_at_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let hostile = Hostile::new(
        &net,
        Knobs {
            fake_state: Some("refundable"),
            refuse_refund_cosign: true,
            ..Knobs::default()
        },
    );
    let client = in_client(&net, hostile.clone());
    let chain0 = fund_client(&net);
    let ln0 = lightning(&net);
    let amount = Amount::from_sat(70_000);
    let id = net
        .rt
        .block_on(client.loop_in(amount, LoopInOptions::default()))
        .expect("loop-in");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    let InState::Funding { txid: funding } = rec.state else {
        panic!("{:?}", rec.state)
    };
    net.mine(1).expect("mine");
    net.rt.block_on(client.tick()).expect("tick");
    net.rt.block_on(client.tick()).expect("tick");
    let (_, c) = net.rt.block_on(client.swap(&id)).expect("swap");
    assert!(
        matches!(c.state, InState::Refunding { refund_txid: None, .. }),
        "asks, is refused: {:?}",
        c.state
    );
    mine_to(&net, rec.terms.expiry - 1);
    net.rt.block_on(client.tick()).expect("tick");
    assert!(
        net.rt.block_on(client.swap(&id)).expect("swap").1.refund.is_none(),
        "nothing before E"
    );
    net.mine(1).expect("mine to E");
    let start = std::time::Instant::now();
    let refund = loop {
        net.rt.block_on(client.tick()).expect("tick");
        let (_, c) = net.rt.block_on(client.swap(&id)).expect("swap");
        if let InState::Refunded { txid } = c.state {
            break txid;
        }
        net.mine(1).expect("mine");
        assert!(start.elapsed() < eddy_lab::WAIT, "{:?}", c.state);
    };
    let refund_tx = tx(&net, &refund).tx;
    assert_eq!(refund_tx.lock_time.to_consensus_u32(), rec.terms.expiry, "timeout path");
    assert!(
        hostile.asked.lock().expect("lock").is_none(),
        "no claim co-signing was even asked for"
    );
    let refund_fee = fee_of(&net, &refund);
    let funding_fee = fee_of(&net, &funding);
    eddy_lab::wait_until("client on-chain", eddy_lab::WAIT, || {
        onchain(&net) == chain0 - funding_fee - refund_fee
    })
    .expect("back but for the two fees");
    assert_eq!(lightning(&net), ln0);
    net.stop().expect("stop");
}

/// Attack (finding 10): a request for more HTLC confirmations than `MAX_HTLC_CONFS` (a
/// confused or hostile front end) is refused before the server is even asked: nothing paid,
/// nothing stored.
#[test]
fn attack_htlc_confs_above_the_cap_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let before = lightning(&net);
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("addr")
        .script_pubkey();
    let opts = eddy_client::SwapOptions {
        htlc_confs: Some(eddy_core::constants::MAX_HTLC_CONFS + 1),
        ..eddy_client::SwapOptions::default()
    };
    match net
        .rt
        .block_on(net.client.loop_out_with(Amount::from_sat(100_000), dest, opts))
    {
        Err(ClientError::OfferRefused(m)) => assert!(m.contains("confirmations"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(lightning_payments(&net), 0);
    assert_eq!(lightning(&net), before);
    let eff = eddy::demo::client_config().effective(&eddy_client::SwapOptions {
        htlc_confs: Some(60),
        ..eddy_client::SwapOptions::default()
    });
    assert_eq!(
        eff.htlc_confs,
        eddy_core::constants::MAX_HTLC_CONFS,
        "capped everywhere"
    );
    net.stop().expect("stop");
}

/// Attack (review finding 6): a stranger pays the loop-out HTLC's address 200,000 sat — more
/// than the swap — in a transaction that stays unconfirmed, right when the server's HTLC
/// confirms. The client used to take the largest output paying the script, the stranger's
/// unconfirmed one, and wait in `HtlcConfirming` on it (until too late to reveal). It takes the
/// confirmed HTLC of the amount, reveals at once and claims it: the client receives exactly the
/// amount less its claim's fee; the stranger's output is left alone.
#[test]
fn attack_strangers_large_unconfirmed_output_does_not_hold_the_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("addr")
        .script_pubkey();
    let amount = Amount::from_sat(80_000);
    let id = net
        .rt
        .block_on(net.client.loop_out(amount, dest.clone()))
        .expect("loop-out");
    // Until the server's HTLC is in the mempool and the client has seen it.
    let start = std::time::Instant::now();
    let htlc = loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(net.client.tick()).expect("client tick");
        let c = net.rt.block_on(net.client.swap(&id)).expect("swap").1;
        if let OutState::HtlcConfirming { outpoint, .. } = c.state {
            break outpoint;
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "{:?}", c.state);
        std::thread::sleep(Duration::from_millis(20));
    };
    let (_, c) = net.rt.block_on(net.client.swap(&id)).expect("swap");
    let address = htlc_address(&c.offer.htlc_address);
    let stranger = net
        .lab
        .chain
        .fund(&address, Amount::from_sat(200_000))
        .expect("stranger pays");
    assert!(in_mempool(&net, &stranger));
    // A block with the HTLC but not the stranger's transaction (the devnet builds it from the
    // transactions given, the rest stays in the mempool).
    let htlc_tx = tx(&net, &htlc.txid).tx;
    net.lab
        .chain
        .reorg(1, 1, &[], &[htlc_tx])
        .expect("block with the HTLC only");
    assert!(tx(&net, &htlc.txid).block.is_some(), "HTLC confirmed");
    assert!(in_mempool(&net, &stranger), "the stranger's output unconfirmed");
    net.rt.block_on(net.client.tick()).expect("client tick");
    let (_, c) = net.rt.block_on(net.client.swap(&id)).expect("swap");
    assert!(
        matches!(c.state, OutState::Claiming { outpoint, .. } if outpoint == htlc),
        "claims the confirmed HTLC at once: {:?}",
        c.state
    );
    let start = std::time::Instant::now();
    let claim_txid = loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(net.client.tick()).expect("client tick");
        let c = net.rt.block_on(net.client.swap(&id)).expect("swap").1;
        if let OutState::Succeeded { claim_txid } = c.state {
            break claim_txid;
        }
        assert!(!c.state.is_terminal(), "{:?}", c.state);
        net.mine(1).expect("mine");
        assert!(start.elapsed() < eddy_lab::WAIT);
    };
    let (_, c) = net.rt.block_on(net.client.swap(&id)).expect("swap");
    let (_, fee) = c.confirmed_claim().expect("claim");
    let t = tx(&net, &claim_txid).tx;
    assert_eq!(t.input.len(), 1);
    assert_eq!(
        t.input[0].previous_output, htlc,
        "the server's HTLC, not the stranger's output"
    );
    assert_eq!(t.output[0].script_pubkey, dest);
    assert_eq!(t.output[0].value, amount - fee);
    net.stop().expect("stop");
}

/// Review finding 4: a loop-out whose payment attempt errors every time (here: the node
/// cannot restrict the outgoing channel the swap asks for) used to stay stored forever — the
/// error returned before the block check — and would pay whenever the error went away, however
/// late. It is never paid with fewer than `MIN_LOOP_OUT_EXPIRY_DELTA` blocks left: then it fails
/// `TooLateToPay`. Exact money: no payment ever left the client's node, its channel balance is
/// unchanged to the satoshi.
#[test]
fn attack_loop_out_that_cannot_pay_ends_without_paying() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let ln0 = lightning(&net);
    let payments0 = lightning_payments(&net);
    let scid = net
        .rt
        .block_on(net.client_ln.channels())
        .expect("channels")
        .iter()
        .find_map(|c| c.short_channel_id)
        .expect("a channel");
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("addr")
        .script_pubkey();
    let opts = SwapOptions {
        channel: Some(scid),
        ..SwapOptions::default()
    };
    let id = net
        .rt
        .block_on(net.client.loop_out_with(Amount::from_sat(50_000), dest, opts))
        .expect("stored; paying failed");
    let (_, c) = net.rt.block_on(net.client.swap(&id)).expect("swap");
    assert_eq!(c.state, OutState::OfferAccepted);
    let expiry = c.terms.expiry;
    // Every pass retries and errors while there is time.
    for _ in 0..2 {
        let _ = net.rt.block_on(net.client.tick());
        net.mine(1).expect("mine");
    }
    assert_eq!(
        net.rt.block_on(net.client.swap(&id)).expect("swap").1.state,
        OutState::OfferAccepted
    );
    mine_to(&net, expiry - eddy_core::constants::MIN_LOOP_OUT_EXPIRY_DELTA + 1);
    let _ = net.rt.block_on(net.client.tick());
    let (_, c) = net.rt.block_on(net.client.swap(&id)).expect("swap");
    assert_eq!(
        c.state,
        OutState::Failed(eddy_core::sm::loop_out_client::FailReason::TooLateToPay)
    );
    assert_eq!(lightning_payments(&net), payments0, "nothing was sent");
    assert_eq!(lightning(&net), ln0);
    net.stop().expect("stop");
}

/// How a hostile Boltz provider rewrites the real `/v2` answers: given `"METHOD /path"` and
/// the real answer's JSON, it edits the JSON in place, or answers raw bytes instead.
type Rewrite = Arc<dyn Fn(&str, &mut serde_json::Value) -> Option<Vec<u8>> + Send + Sync>;

/// A hostile Boltz provider for `eddy daemon --provider boltz`'s adapter: the real server's
/// Boltz API v2 behind a proxy on loopback that rewrites chosen answers on the way back.
fn lying_provider(net: &Swapnet, rewrite: Rewrite) -> Arc<dyn SwapServerApi> {
    use axum::response::IntoResponse;
    let real = net.http.as_ref().expect("the server's HTTP API").url();
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, body: axum::body::Bytes| {
            let (real, http, rewrite) = (real.clone(), http.clone(), rewrite.clone());
            async move {
                let target = format!("{real}{}", uri.path_and_query().map_or("", |p| p.as_str()));
                let m = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("method");
                let mut req = http.request(m, target);
                if !body.is_empty() {
                    req = req.header("content-type", "application/json").body(body.to_vec());
                }
                let resp = req.send().await.expect("the real server answers");
                let code = axum::http::StatusCode::from_u16(resp.status().as_u16()).expect("status");
                let mut v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
                match rewrite(&format!("{method} {}", uri.path()), &mut v) {
                    Some(raw) => (code, raw).into_response(),
                    None => (code, axum::Json(v)).into_response(),
                }
            }
        },
    );
    let listener = net
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    net.rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Arc::new(
        eddy_client::boltz::BoltzProvider::new(
            &format!("http://{addr}"),
            net.client_store.clone(),
            bitcoin::Network::Regtest,
        )
        .expect("provider"),
    )
}

/// The client's loop-out through a hostile Boltz provider fails with `what` in its error;
/// nothing is paid or stored and the client's channel balance is unchanged.
fn refused_through(net: &Swapnet, rewrite: Rewrite, what: &str) {
    let client = out_client(net, lying_provider(net, rewrite));
    let (ln0, payments0) = (lightning(net), lightning_payments(net));
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("address")
        .script_pubkey();
    let err = net
        .rt
        .block_on(client.loop_out(Amount::from_sat(100_000), dest))
        .expect_err("refused");
    assert!(err.to_string().contains(what), "{err}");
    assert_eq!(
        (lightning(net), lightning_payments(net)),
        (ln0, payments0),
        "nothing paid"
    );
    assert!(
        net.rt.block_on(client.list()).expect("list").is_empty(),
        "nothing stored"
    );
}

/// Attack: a Boltz provider (1) announces a fee of 0.1 % in its pair and invoices 0.5 % — the
/// invoice is under the client's fee cap, so only the price check stands between; (2) answers
/// the pair with 2 MiB (a daemon that read it whole could be made to run out of memory, and
/// with a loop-out in flight, restart into the same answer until the timeout); (3) names its
/// swap `../../v1/terms` (an id that would steer this client's later calls elsewhere). Each is
/// refused before anything is paid or stored.
#[test]
fn attack_boltz_provider_misprices_floods_or_forges_an_id_and_gets_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    refused_through(
        &net,
        Arc::new(|what: &str, v: &mut serde_json::Value| {
            if what == "GET /v2/swap/reverse" {
                v["BTC"]["BTC"]["fees"]["percentage"] = serde_json::json!(0.1);
            }
            None
        }),
        "the pair's price of 100000 sat on chain",
    );
    refused_through(
        &net,
        Arc::new(|what: &str, _: &mut serde_json::Value| {
            (what == "GET /v2/swap/reverse").then(|| vec![b' '; 2 * 1024 * 1024])
        }),
        &format!("an answer of more than {} bytes", eddy_client::http::MAX_ANSWER_BYTES),
    );
    refused_through(
        &net,
        Arc::new(|what: &str, v: &mut serde_json::Value| {
            if what == "POST /v2/swap/reverse" {
                v["id"] = serde_json::json!("../../v1/terms");
            }
            None
        }),
        "is not a plain token",
    );
    net.stop().expect("stop");
}

/// Attack: a Boltz provider sets the timeout 2,000 blocks further out than the client's window
/// (boltz-client takes any), locking the client's payment for two weeks if it never locks up.
/// Refused before the address is even checked; nothing paid or stored. (A swapnet of its own:
/// reverse swaps, without a prepay, are limited to two a minute per client.)
#[test]
fn attack_boltz_provider_stretches_the_timeout_and_gets_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    refused_through(
        &net,
        Arc::new(|what: &str, v: &mut serde_json::Value| {
            if what == "POST /v2/swap/reverse" {
                v["timeoutBlockHeight"] = serde_json::json!(v["timeoutBlockHeight"].as_u64().unwrap_or(0) + 2_000);
            }
            None
        }),
        "outside the accepted",
    );
    net.stop().expect("stop");
}

/// Attack (finding 4, the Boltz way): a Boltz provider offers a submarine claim only as a
/// sighash the client cannot check (here 32 bytes of its choosing), while the HTLC address
/// holds a second output of the client's (25,000 sat beside the 60,000 paid for). A signature
/// over a sighash of the provider's choosing could spend that output; the client gives none
/// (no `POST …/claim` reaches the provider), the server claims its own output by the script
/// path, and the client refunds the extra output at `E`. Exact money: 58,706 sat over
/// Lightning (60,000 = 58,706 + ceil(0.5 % of it) + 1,000), the extra back less its refund
/// fee; the server's wallet gains 60,000 less its claim fee.
#[test]
fn attack_boltz_provider_asks_a_blind_cosignature_while_the_address_holds_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let ln0 = lightning(&net);
    let wallet0 = net.rt.block_on(net.server.wallet_balance()).spendable;
    let (amount, extra) = (Amount::from_sat(60_000), Amount::from_sat(25_000));
    let cosigns = Arc::new(AtomicU32::new(0));
    let seen = cosigns.clone();
    let provider = lying_provider(
        &net,
        Arc::new(move |what: &str, v: &mut serde_json::Value| {
            if what.starts_with("GET /v2/swap/submarine/") && what.ends_with("/claim") {
                v["transactionHash"] = serde_json::json!("42".repeat(32));
            }
            if what.starts_with("POST /v2/swap/submarine/") && what.ends_with("/claim") {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            None
        }),
    );
    let client = in_client(&net, provider);
    let external = LoopInOptions {
        external: true,
        ..LoopInOptions::default()
    };
    let id = net.rt.block_on(client.loop_in(amount, external)).expect("loop-in");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    assert_eq!(rec.offer.swap_fee, Amount::from_sat(1_294));
    let address = htlc_address(&rec.offer.htlc_address);
    let (exact, extra_out) = fund_twice(&net, &address, amount, extra);
    // 60,000 = 58,706 + ceil(0.5 % of it) + 1,000: 58,706 over Lightning.
    paid_twice_extra_refunded_at_expiry(
        &net,
        &client,
        id,
        (exact, extra_out),
        (amount, extra),
        (ln0 + 58_706, wallet0),
    );
    assert_eq!(
        cosigns.load(Ordering::SeqCst),
        0,
        "no partial signature left the client"
    );
    net.stop().expect("stop");
}

/// A loop-in through a Boltz provider whose lockup is wrong (here one satoshi short, as a
/// payer's slip or a wallet's rounding would make it): the provider reports
/// `transaction.lockupFailed`, pays nothing, and co-signs the client's key-path refund through
/// `POST /v2/swap/submarine/{id}/refund` at once — no waiting for the timeout. Exact money:
/// nothing over Lightning; the client's wallet gets the 59,999 sat back less the refund's fee;
/// the server's node and swap wallet are untouched.
#[test]
fn a_wrong_lockup_through_a_boltz_provider_is_refunded_cooperatively_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), None, &|_| {}).expect("swapnet");
    let (ln0, wallet0) = (lightning(&net), net.rt.block_on(net.server.wallet_balance()).spendable);
    let url = net.http.as_ref().expect("http").url();
    let provider: Arc<dyn SwapServerApi> = Arc::new(
        eddy_client::boltz::BoltzProvider::new(&url, net.client_store.clone(), bitcoin::Network::Regtest)
            .expect("provider"),
    );
    let client = in_client(&net, provider);
    let external = LoopInOptions {
        external: true,
        ..LoopInOptions::default()
    };
    let id = net
        .rt
        .block_on(client.loop_in(Amount::from_sat(60_000), external))
        .expect("loop-in");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    let address = htlc_address(&rec.offer.htlc_address);
    net.lab.chain.fund(&address, Amount::from_sat(59_999)).expect("fund");
    net.mine(1).expect("mine");
    let chain0 = onchain(&net);
    let start = std::time::Instant::now();
    while !matches!(
        net.rt.block_on(client.swap(&id)).expect("c").1.state,
        InState::Refunded { .. }
    ) {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(client.tick()).expect("client tick");
        let (_, rec) = net.rt.block_on(client.swap(&id)).expect("c");
        if !rec.refunds.is_empty() {
            net.mine(1).expect("mine");
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(start.elapsed() < eddy_lab::WAIT, "{:?}", rec.state);
    }
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("c");
    let refund = rec.refunds[0]
        .all
        .iter()
        .map(|t| tx(&net, t))
        .find(|t| t.block.is_some())
        .expect("confirmed refund");
    assert_eq!(refund.tx.input[0].witness.len(), 1, "key path: co-signed over /v2");
    assert!(tip(&net) < rec.terms.expiry, "long before the timeout");
    let refund_fee = 59_999 - refund.tx.output[0].value.to_sat();
    eddy_lab::wait_until("client on-chain", eddy_lab::WAIT, || {
        onchain(&net) == chain0 + 59_999 - refund_fee
    })
    .expect("the lockup back less the refund fee");
    assert_eq!(lightning(&net), ln0, "nothing over Lightning");
    assert_eq!(net.rt.block_on(net.server.wallet_balance()).spendable, wallet0);
    net.stop().expect("stop");
}
