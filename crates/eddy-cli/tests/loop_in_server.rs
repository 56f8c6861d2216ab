//! The server's loop-in engine on the devnet with real LDK nodes, driven by a hand-written
//! client (the test): happy path (fund exactly → the server pays the client's invoice, claims
//! into its swap wallet), underpayment → no payment and an instant cooperative refund co-signed
//! by the server, and a refund co-signed before the funding confirmed → the server never pays.
//! Every case asserts the money.

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Amount, OutPoint};
use eddy::demo::{in_process, swapnet, Swapnet};
use eddy_backends::{LightningNode, PaymentStatus};
use eddy_core::htlc::{Htlc, HtlcKey, HtlcKind, HtlcParams};
use eddy_core::musig::Signer;
use eddy_core::sm::loop_in_server::{RefundReason, State};
use eddy_core::tx::{build_spend, FeeSpec, HtlcInput, SpendPath};
use eddy_core::types::{Preimage, SwapId};
use eddy_server::loop_in::LoopInCreate;

struct Client {
    key: SecretKey,
    pubkey: PublicKey,
    preimage: Preimage,
}

fn client(n: u8) -> Client {
    let key = SecretKey::from_slice(&[n; 32]).expect("key");
    Client {
        key,
        pubkey: PublicKey::from_secret_key(&Secp256k1::new(), &key),
        preimage: Preimage::from_bytes([n ^ 0x5a; 32]),
    }
}

/// Creates a loop-in of `amount` for `c`; returns the swap id and its HTLC (rebuilt by the
/// client from its own data and checked against the server's address).
fn create(net: &Swapnet, c: &Client, amount: Amount) -> (SwapId, Htlc) {
    let quote = net.server.loop_in.quote(amount).expect("quote");
    let invoice = net
        .rt
        .block_on(net.client_ln.create_invoice(
            &c.preimage,
            quote.invoice_amount.to_sat() * 1000,
            2 * eddy_core::validate::MIN_LOOP_IN_INVOICE_REMAINING_SECS as u32,
            "eddy loop-in",
        ))
        .expect("invoice");
    let offer = net
        .rt
        .block_on(net.server.create_loop_in(&LoopInCreate {
            amount,
            invoice: invoice.bolt11,
            refund_key: c.pubkey,
            last_hop: None,
        }))
        .expect("offer");
    let htlc = Htlc::new(HtlcParams {
        kind: HtlcKind::P2trIn,
        payment_hash: c.preimage.payment_hash(),
        claim_key: HtlcKey::Pubkey(offer.server_key),
        refund_key: HtlcKey::Pubkey(c.pubkey),
        timeout: offer.expiry,
    })
    .expect("htlc");
    assert_eq!(offer.htlc_address, htlc.address(bitcoin::Network::Regtest).to_string());
    assert_eq!(offer.swap_fee, quote.swap_fee);
    (SwapId::from(c.preimage.payment_hash()), htlc)
}

/// Funds `htlc` with `value` from the faucet; returns the outpoint.
fn fund(net: &Swapnet, htlc: &Htlc, value: Amount) -> OutPoint {
    let addr = htlc.address(bitcoin::Network::Regtest);
    let txid = net.lab.chain.fund(&addr, value).expect("fund");
    let tx = net
        .rt
        .block_on(net.chain.transaction(&txid))
        .expect("rpc")
        .expect("tx")
        .tx;
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == htlc.script_pubkey())
        .expect("output");
    OutPoint {
        txid,
        vout: vout as u32,
    }
}

fn state(net: &Swapnet, id: &SwapId) -> State {
    net.rt.block_on(net.server.loop_in.swap(id)).expect("swap").1.state
}

/// The client's cooperative refund of `outpoint` to a fresh address of its node, co-signed by
/// the server; returns (txid, fee) once broadcast.
fn cooperative_refund(
    net: &Swapnet,
    c: &Client,
    id: &SwapId,
    htlc: &Htlc,
    outpoint: OutPoint,
    value: Amount,
) -> Result<(bitcoin::Txid, Amount), String> {
    let dest = net
        .rt
        .block_on(net.client_ln.new_address())
        .expect("address")
        .script_pubkey();
    let mut spend = build_spend(
        vec![HtlcInput {
            outpoint,
            value,
            htlc: htlc.clone(),
            path: SpendPath::Cooperative,
        }],
        dest,
        FeeSpec::Rate(bitcoin::FeeRate::from_sat_per_kwu(500)),
    )
    .expect("spend");
    let msg = spend.sighash(0).expect("sighash");
    let Htlc::Taproot(t) = htlc else { panic!("taproot") };
    let mut signer = Signer::new(t, &c.key, msg, &id.0).expect("signer");
    let (their_nonce, their_partial) = net
        .rt
        .block_on(net.server.loop_in.cosign_refund(id, &signer.public_nonce(), &spend.tx))
        .map_err(|e| e.to_string())?;
    let ours = signer.sign(&their_nonce).expect("sign");
    let sig = signer
        .aggregate(&their_nonce, &ours, &their_partial)
        .expect("aggregate");
    spend.set_cooperative_signature(0, sig).expect("set");
    let signed = spend.finalize().expect("finalize");
    let txid = net
        .rt
        .block_on(net.chain.broadcast(&signed.tx))
        .map_err(|e| e.to_string())?;
    Ok((txid, signed.fee))
}

#[test]
fn loop_in_pays_the_invoice_and_claims_the_htlc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let c = client(1);
    // The client accepted the channel, so it takes at most 10 % of it in flight (LDK's default
    // for the accepting side, docs/measured.md): 90,000 fits.
    let amount = Amount::from_sat(90_000);
    // Fee: 1,000 + 0.5 % = 1,450; the invoice asks 88,550.
    let (id, htlc) = create(&net, &c, amount);
    let client_ln0 = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let server_ln0 = net.server_ln.ldk().list_balances().total_lightning_balance_sats;
    let wallet0 = net.rt.block_on(net.server.wallet_balance()).spendable;
    let watches = net.rt.block_on(net.server.watch_count());
    let outpoint = fund(&net, &htlc, amount);
    // Unconfirmed funding: the server waits.
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(state(&net, &id), State::Created);
    net.mine(1).expect("mine");
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("tick");
        match state(&net, &id) {
            State::Succeeded => break,
            State::Claiming { .. } => net.mine(1).expect("mine"),
            State::Refundable(r) => panic!("refundable: {r:?}"),
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "{:?}", state(&net, &id));
    }
    // A finished swap is no longer watched (as after a restart): the index does not grow.
    assert_eq!(net.rt.block_on(net.server.watch_count()), watches - 1);
    let (_, rec) = net.rt.block_on(net.server.loop_in.swap(&id)).expect("swap");
    assert_eq!(rec.funding, Some(outpoint));
    let claim = rec.claim.expect("claim");
    let claim_tx = net
        .rt
        .block_on(net.chain.transaction(&claim.last().expect("sweep broadcast")))
        .expect("rpc")
        .expect("claim")
        .tx;
    // The claim pays the swap wallet; the script path shows the preimage.
    let claim_fee = amount - claim_tx.output[0].value;
    assert_eq!(claim_tx.input[0].previous_output, outpoint);
    assert_eq!(claim_tx.input[0].witness.nth(1), Some(&c.preimage.expose_bytes()[..]));
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(
        net.rt.block_on(net.server.wallet_balance()).spendable,
        wallet0 + amount - claim_fee,
        "swap wallet: the HTLC less the claim fee"
    );
    eddy_lab::wait_until("channel balances", eddy_lab::WAIT, || {
        net.client_ln.ldk().list_balances().total_lightning_balance_sats == client_ln0 + 88_550
            && net.server_ln.ldk().list_balances().total_lightning_balance_sats == server_ln0 - 88_550
    })
    .expect("the client received exactly amount − fee over its channel");
    assert!(matches!(
        net.rt
            .block_on(net.server_ln.payment_status(&c.preimage.payment_hash())),
        Ok(PaymentStatus::Succeeded { fee_msat: 0, .. })
    ));
    // After the payment no cooperative refund is ever co-signed.
    let e = cooperative_refund(&net, &c, &id, &htlc, outpoint, amount).expect_err("refused");
    assert!(e.contains("no cooperative refund"), "{e}");
    net.stop().expect("stop");
}

#[test]
fn underpaid_loop_in_is_refunded_cooperatively_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    // More than the server's channels can send: refused before anything exists (the invoice
    // asks 600,000 − 4,000; the server's side of its one channel holds about 500,000).
    let big = client(9);
    let invoice = net
        .rt
        .block_on(net.client_ln.create_invoice(
            &big.preimage,
            596_000_000,
            2 * eddy_core::validate::MIN_LOOP_IN_INVOICE_REMAINING_SECS as u32,
            "eddy loop-in",
        ))
        .expect("invoice");
    let e = net
        .rt
        .block_on(net.server.create_loop_in(&LoopInCreate {
            amount: Amount::from_sat(600_000),
            invoice: invoice.bolt11,
            refund_key: big.pubkey,
            last_hop: None,
        }))
        .expect_err("refused");
    assert!(
        e.to_string()
            .contains("not enough outbound liquidity now: the invoice asks 596000 sat"),
        "{e}"
    );
    assert!(net
        .rt
        .block_on(net.server.loop_in.swap(&SwapId::from(big.preimage.payment_hash())))
        .is_err());
    let c = client(2);
    let amount = Amount::from_sat(150_000);
    let (id, htlc) = create(&net, &c, amount);
    let client_ln0 = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let short = amount - Amount::from_sat(1);
    let outpoint = fund(&net, &htlc, short);
    net.mine(1).expect("mine");
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(state(&net, &id), State::Refundable(RefundReason::Underpaid));
    assert_eq!(
        net.rt
            .block_on(net.server_ln.payment_status(&c.preimage.payment_hash()))
            .expect("status"),
        PaymentStatus::Unknown,
        "nothing paid"
    );
    let chain0 = {
        let _ = net.client_ln.ldk().sync_wallets();
        net.client_ln.ldk().list_balances().total_onchain_balance_sats
    };
    let (txid, fee) = cooperative_refund(&net, &c, &id, &htlc, outpoint, short).expect("co-signed at once");
    // Key path: 1 input, 1 output, ~111 vB at 2 sat/vB.
    net.mine(1).expect("mine");
    let refund = net
        .rt
        .block_on(net.chain.transaction(&txid))
        .expect("rpc")
        .expect("refund");
    assert!(refund.block.is_some(), "confirmed in the next block");
    assert_eq!(refund.tx.input[0].witness.len(), 1, "key path: one signature");
    eddy_lab::wait_until("client wallet sees the refund", eddy_lab::WAIT, || {
        let _ = net.client_ln.ldk().sync_wallets();
        net.client_ln.ldk().list_balances().total_onchain_balance_sats == chain0 + (short - fee).to_sat()
    })
    .expect("the client got its coins back less the refund fee");
    assert_eq!(
        net.client_ln.ldk().list_balances().total_lightning_balance_sats,
        client_ln0,
        "no Lightning payment"
    );
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(state(&net, &id), State::Refunded);
    net.stop().expect("stop");
}

#[test]
fn a_refund_cosigned_before_confirmation_means_the_server_never_pays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let c = client(3);
    let amount = Amount::from_sat(120_000);
    let (id, htlc) = create(&net, &c, amount);
    // Exact funding, still unconfirmed: the client changes its mind and asks for a refund.
    let outpoint = fund(&net, &htlc, amount);
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(state(&net, &id), State::Created);
    let (txid, _) = cooperative_refund(&net, &c, &id, &htlc, outpoint, amount).expect("co-signed");
    assert_eq!(state(&net, &id), State::Refundable(RefundReason::ClientRefund));
    // The funding and the refund confirm together; the server never pays.
    net.mine(1).expect("mine");
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(
        net.rt
            .block_on(net.server_ln.payment_status(&c.preimage.payment_hash()))
            .expect("status"),
        PaymentStatus::Unknown
    );
    assert_eq!(state(&net, &id), State::Refunded);
    assert!(net
        .rt
        .block_on(net.chain.transaction(&txid))
        .expect("rpc")
        .is_some_and(|t| t.block.is_some()));
    net.stop().expect("stop");
}
