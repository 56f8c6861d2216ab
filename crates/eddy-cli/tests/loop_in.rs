//! Loop-in end to end with both engines on the devnet and real LDK nodes: the client funds the
//! HTLC from its node's wallet, the server pays the client's invoice and claims; and when the
//! server's payment fails, the client's cooperative refund confirms in the very next block.
//! Exact money in both.

use bitcoin::Amount;
use eddy::demo::{in_process, swapnet, Swapnet};
use eddy_backends::LightningNode;
use eddy_client::loop_in::{LoopInClient, LoopInOptions};
use eddy_core::sm::loop_in_client::State;
use eddy_core::sm::loop_in_server::{RefundReason, State as ServerState};
use eddy_core::types::SwapId;

fn loop_in_client(net: &Swapnet) -> LoopInClient {
    let api = in_process()(net.server.clone(), net.server_ln.clone());
    net.rt
        .block_on(LoopInClient::new(
            eddy::demo::client_config(),
            net.client_ln.clone(),
            net.chain.clone(),
            net.client_store.clone(),
            api,
            eddy_store::SeedKeys::load_or_create(&net.dir, eddy_client::SEED_FILE).expect("seed"),
        ))
        .expect("loop-in client")
}

/// Gives the client node 300,000 sat on-chain.
fn fund_client(net: &Swapnet) -> u64 {
    let addr = net.rt.block_on(net.client_ln.new_address()).expect("address");
    net.lab.chain.fund(&addr, Amount::from_sat(300_000)).expect("fund");
    net.mine(1).expect("mine");
    eddy_lab::wait_until("client wallet funded", eddy_lab::WAIT, || {
        let _ = net.client_ln.ldk().sync_wallets();
        net.client_ln.ldk().list_balances().spendable_onchain_balance_sats > 0
    })
    .expect("funded");
    net.client_ln.ldk().list_balances().total_onchain_balance_sats
}

/// A transaction's miner fee (the lab finds it however deep, without `-txindex`).
fn fee_of(net: &Swapnet, txid: &bitcoin::Txid) -> u64 {
    net.lab.chain.fee(txid).expect("fee").to_sat()
}

/// The server just gave up paying: the client's next pass broadcasts its cooperative refund of
/// `amount` (MuSig2 key path), which confirms in the very next block. Returns its fee.
fn refund_in_next_block(net: &Swapnet, client: &LoopInClient, id: &SwapId, amount: Amount) -> u64 {
    let failed_at = net.lab.chain.tip().expect("tip").0;
    net.rt.block_on(client.tick()).expect("client tick");
    let (_, rec) = net.rt.block_on(client.swap(id)).expect("swap");
    let State::Refunding {
        refund_txid: Some(refund_txid),
        ..
    } = rec.state
    else {
        panic!("refund broadcast at once: {:?}", rec.state)
    };
    net.mine(1).expect("mine");
    let refund = net
        .rt
        .block_on(net.chain.transaction(&refund_txid))
        .expect("rpc")
        .expect("refund");
    assert_eq!(
        refund.block.map(|b| b.height),
        Some(failed_at + 1),
        "confirmed in the next block"
    );
    assert_eq!(refund.tx.input[0].witness.len(), 1, "MuSig2 key path");
    amount.to_sat() - refund.tx.output[0].value.to_sat()
}

fn onchain(net: &Swapnet) -> u64 {
    let _ = net.client_ln.ldk().sync_wallets();
    net.client_ln.ldk().list_balances().total_onchain_balance_sats
}

#[test]
fn loop_in_funds_gets_paid_and_the_server_claims() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let client = loop_in_client(&net);
    let chain0 = fund_client(&net);
    let ln0 = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let wallet0 = net.rt.block_on(net.server.wallet_balance()).spendable;
    // 90,000 on-chain; fee 1,000 + 0.5 % = 1,450; the client's invoice asks 88,550.
    let amount = Amount::from_sat(90_000);
    let id = net
        .rt
        .block_on(client.loop_in(amount, LoopInOptions::default()))
        .expect("loop-in");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    let State::Funding { txid: funding_txid } = rec.state else {
        panic!("funded at once: {:?}", rec.state)
    };
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(client.tick()).expect("client tick");
        let c = net.rt.block_on(client.swap(&id)).expect("c").1.state;
        let (_, srec) = net.rt.block_on(net.server.loop_in.swap(&id)).expect("s");
        let s = srec.state;
        if c == State::Succeeded && s == ServerState::Succeeded {
            break;
        }
        assert!(!matches!(c, State::Refunding { .. } | State::Failed(_)), "{c:?}");
        // Blocks come only when something waits on one: the funding's confirmation, or the
        // claim once broadcast (the server gives the client a block to co-sign; no block is
        // mined before the client had its chance).
        if matches!(c, State::Funding { .. }) || (matches!(s, ServerState::Claiming { .. }) && srec.claim.is_some()) {
            net.mine(1).expect("mine");
        } else {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "client {c:?} server {s:?}");
    }
    let funding_fee = fee_of(&net, &funding_txid);
    let funding_tx = net
        .rt
        .block_on(net.chain.transaction(&funding_txid))
        .expect("rpc")
        .expect("funding")
        .tx;
    // The funding's size is what the client's `--max-miner-fee` check estimates (one wallet
    // input, the HTLC output and change).
    assert_eq!((funding_tx.input.len(), funding_tx.output.len()), (1, 2));
    assert_eq!(
        funding_tx.vsize() as u64,
        eddy_client::loop_in::FUNDING_VBYTES_ONE_INPUT
    );
    let (_, srec) = net.rt.block_on(net.server.loop_in.swap(&id)).expect("s");
    let claim = net
        .rt
        .block_on(
            net.chain
                .transaction(&srec.claim.expect("claim").last().expect("sweep broadcast")),
        )
        .expect("rpc")
        .expect("claim")
        .tx;
    let claim_fee = amount - claim.output[0].value;
    // The client co-signed: a MuSig2 key-path claim (one signature, no preimage on chain).
    assert_eq!(claim.input[0].witness.len(), 1, "cooperative key-path claim");
    assert_eq!(claim.vsize(), 111, "key-path claim to the P2TR swap wallet");
    eddy_lab::wait_until("client balances", eddy_lab::WAIT, || {
        net.client_ln.ldk().list_balances().total_lightning_balance_sats == ln0 + 88_550
            && onchain(&net) == chain0 - 90_000 - funding_fee
    })
    .expect("the client paid exactly the HTLC and its funding fee and received amount − fee");
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(
        net.rt.block_on(net.server.wallet_balance()).spendable,
        wallet0 + amount - claim_fee
    );
    net.stop().expect("stop");
}

#[test]
fn failed_loop_in_is_refunded_cooperatively_in_the_next_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let client = loop_in_client(&net);
    let chain0 = fund_client(&net);
    let ln0 = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    // 150,000: the server's payment of 148,250 cannot reach the client (the client accepted
    // the channel: LDK lets at most 10 % of it, 100,000, be in flight towards it).
    let amount = Amount::from_sat(150_000);
    let id: SwapId = net
        .rt
        .block_on(client.loop_in(amount, LoopInOptions::default()))
        .expect("loop-in");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    let State::Funding { txid: funding_txid } = rec.state else {
        panic!("{:?}", rec.state)
    };
    net.mine(1).expect("mine");
    // The server sees the funding, tries to pay, fails; it then co-signs at once.
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        if net.rt.block_on(net.server.loop_in.swap(&id)).expect("s").1.state
            == ServerState::Refundable(RefundReason::PaymentFailed)
        {
            break;
        }
        assert!(start.elapsed() < eddy_lab::WAIT);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The server tried the payment LOOP_IN_PAY_ATTEMPTS times before giving up.
    let events = net.rt.block_on(net.server_store.events(&id)).expect("events");
    let retries = events.iter().filter(|e| e.event["event"] == "payment_retry").count() as u32;
    assert_eq!(retries, eddy_core::constants::LOOP_IN_PAY_ATTEMPTS - 1);
    let refund_fee = refund_in_next_block(&net, &client, &id, amount);
    // Final after a few confirmations.
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(client.tick()).expect("client tick");
        net.rt.block_on(net.server.tick()).expect("server tick");
        let c = net.rt.block_on(client.swap(&id)).expect("c").1.state;
        if matches!(c, State::Refunded { .. }) {
            break;
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "{c:?}");
        net.mine(1).expect("mine");
    }
    assert_eq!(
        net.rt.block_on(net.server.loop_in.swap(&id)).expect("s").1.state,
        ServerState::Refunded
    );
    let funding_fee = fee_of(&net, &funding_txid);
    eddy_lab::wait_until("client on-chain", eddy_lab::WAIT, || {
        onchain(&net) == chain0 - funding_fee - refund_fee
    })
    .expect("back but for the two fees");
    assert_eq!(net.client_ln.ldk().list_balances().total_lightning_balance_sats, ln0);
    net.stop().expect("stop");
}

#[test]
fn without_the_server_the_timeout_refund_returns_the_coins_after_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let client = loop_in_client(&net);
    let chain0 = fund_client(&net);
    let amount = Amount::from_sat(80_000);
    let id = net
        .rt
        .block_on(client.loop_in(amount, LoopInOptions::default()))
        .expect("loop-in");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    let State::Funding { txid: funding_txid } = rec.state else {
        panic!("{:?}", rec.state)
    };
    let expiry = rec.terms.expiry;
    // The server is gone (its engine never runs again): nothing happens until E.
    net.mine(1).expect("mine");
    net.rt.block_on(client.tick()).expect("tick");
    assert!(matches!(
        net.rt.block_on(client.swap(&id)).expect("swap").1.state,
        State::Funded { .. }
    ));
    let tip = net.lab.chain.tip().expect("tip").0;
    net.mine(expiry - 1 - tip).expect("mine to E - 1");
    net.rt.block_on(client.tick()).expect("tick");
    assert!(
        matches!(
            net.rt.block_on(client.swap(&id)).expect("swap").1.state,
            State::Funded { .. }
        ),
        "no refund before E"
    );
    // At E the timeout path (script, CLTV E) is valid in the next block.
    net.mine(1).expect("mine to E");
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(client.tick()).expect("tick");
        let c = net.rt.block_on(client.swap(&id)).expect("swap").1;
        if matches!(c.state, State::Refunded { .. }) {
            break;
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "{:?}", c.state);
        net.mine(1).expect("mine");
    }
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    let State::Refunded { txid } = rec.state else {
        unreachable!()
    };
    let refund = net
        .rt
        .block_on(net.chain.transaction(&txid))
        .expect("rpc")
        .expect("refund");
    assert_eq!(
        refund.tx.lock_time.to_consensus_u32(),
        expiry,
        "timeout path: nLockTime = E"
    );
    assert!(refund.tx.input[0].witness.len() > 1, "script path");
    assert!(refund.block.is_some_and(|b| b.height >= expiry));
    let funding_fee = fee_of(&net, &funding_txid);
    let refund_fee = amount.to_sat() - refund.tx.output[0].value.to_sat();
    eddy_lab::wait_until("client on-chain", eddy_lab::WAIT, || {
        onchain(&net) == chain0 - funding_fee - refund_fee
    })
    .expect("back but for the two fees");
    net.stop().expect("stop");
}

#[test]
fn overpaid_external_funding_is_refunded_cooperatively_in_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let client = loop_in_client(&net);
    let ln0 = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let amount = Amount::from_sat(60_000);
    let id = net
        .rt
        .block_on(client.loop_in(
            amount,
            LoopInOptions {
                external: true,
                ..LoopInOptions::default()
            },
        ))
        .expect("loop-in");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    assert_eq!(rec.state, State::Persisted, "external: the daemon waits");
    // The user pays 1,000 sat too much from another wallet.
    let address: bitcoin::Address = rec
        .offer
        .htlc_address
        .parse::<bitcoin::Address<_>>()
        .expect("address")
        .assume_checked();
    let paid = amount + Amount::from_sat(1_000);
    net.lab.chain.fund(&address, paid).expect("fund");
    net.mine(1).expect("mine");
    net.rt.block_on(net.server.tick()).expect("server tick");
    assert_eq!(
        net.rt.block_on(net.server.loop_in.swap(&id)).expect("s").1.state,
        ServerState::Refundable(RefundReason::Overpaid),
        "the server never pays a wrong amount"
    );
    let chain0 = onchain(&net);
    let start = std::time::Instant::now();
    let refund_txid = loop {
        net.rt.block_on(client.tick()).expect("tick");
        let c = net.rt.block_on(client.swap(&id)).expect("swap").1;
        if let State::Refunding {
            refund_txid: Some(t), ..
        } = c.state
        {
            break t;
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "{:?}", c.state);
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    net.mine(1).expect("mine");
    let refund = net
        .rt
        .block_on(net.chain.transaction(&refund_txid))
        .expect("rpc")
        .expect("refund");
    assert!(refund.block.is_some(), "next block");
    assert_eq!(refund.tx.input[0].witness.len(), 1, "cooperative key path");
    let refund_fee = paid.to_sat() - refund.tx.output[0].value.to_sat();
    eddy_lab::wait_until("client on-chain", eddy_lab::WAIT, || {
        onchain(&net) == chain0 + paid.to_sat() - refund_fee
    })
    .expect("everything paid in comes back, less the refund fee");
    assert_eq!(net.client_ln.ldk().list_balances().total_lightning_balance_sats, ln0);
    net.stop().expect("stop");
}

#[test]
fn funding_reorged_out_and_mined_again_still_completes_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let client = loop_in_client(&net);
    let chain0 = fund_client(&net);
    let ln0 = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let wallet0 = net.rt.block_on(net.server.wallet_balance()).spendable;
    let amount = Amount::from_sat(70_000);
    let id = net
        .rt
        .block_on(client.loop_in(amount, LoopInOptions::default()))
        .expect("loop-in");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    let State::Funding { txid: funding_txid } = rec.state else {
        panic!("{:?}", rec.state)
    };
    net.mine(1).expect("mine");
    // The server sees one confirmation and pays.
    let start = std::time::Instant::now();
    while !matches!(
        net.rt.block_on(net.server.loop_in.swap(&id)).expect("s").1.state,
        ServerState::Claiming { .. }
    ) {
        net.rt.block_on(net.server.tick()).expect("tick");
        assert!(start.elapsed() < eddy_lab::WAIT);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A one-block reorg takes the funding out (back to the mempool, with the server's claim).
    net.lab.chain.reorg(1, 1, &[funding_txid], &[]).expect("reorg");
    let in_block = net
        .rt
        .block_on(net.chain.transaction(&funding_txid))
        .expect("rpc")
        .expect("known")
        .block;
    assert!(in_block.is_none(), "the funding is unconfirmed again");
    // Both engines carry on; the next block mines it again.
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(client.tick()).expect("client tick");
        let c = net.rt.block_on(client.swap(&id)).expect("c").1.state;
        let s = net.rt.block_on(net.server.loop_in.swap(&id)).expect("s").1.state;
        if c == State::Succeeded && s == ServerState::Succeeded {
            break;
        }
        assert!(!matches!(c, State::Refunding { .. } | State::Failed(_)), "{c:?}");
        assert!(start.elapsed() < eddy_lab::WAIT, "client {c:?} server {s:?}");
        net.mine(1).expect("mine");
    }
    let funding = net
        .rt
        .block_on(net.chain.transaction(&funding_txid))
        .expect("rpc")
        .expect("funding");
    assert!(funding.block.is_some(), "mined again");
    let funding_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &funding.tx))
        .expect("fee")
        .to_sat();
    let (_, srec) = net.rt.block_on(net.server.loop_in.swap(&id)).expect("s");
    // Any of the claims broadcast may be the one that confirmed (the reorg sent the first back
    // to the mempool and the server built another).
    let claim = srec
        .claim
        .expect("claim")
        .all
        .iter()
        .filter_map(|t| net.rt.block_on(net.chain.transaction(t)).expect("rpc"))
        .find(|t| t.block.is_some())
        .expect("a confirmed claim");
    let claim_fee = amount - claim.tx.output[0].value;
    // Fee 1,000 + 0.5 % of 70,000 = 1,350: the client receives 68,650, once.
    eddy_lab::wait_until("client balances", eddy_lab::WAIT, || {
        net.client_ln.ldk().list_balances().total_lightning_balance_sats == ln0 + 68_650
            && onchain(&net) == chain0 - 70_000 - funding_fee
    })
    .expect("exact client balances");
    net.rt.block_on(net.server.tick()).expect("tick");
    assert_eq!(
        net.rt.block_on(net.server.wallet_balance()).spendable,
        wallet0 + amount - claim_fee
    );
    net.stop().expect("stop");
}

/// A crash between persisting the offer and recording the funding: the restarted engine finds
/// the output already paying the HTLC and adopts it — it never funds a second time.
#[test]
fn restart_after_persist_adopts_the_existing_funding_and_never_funds_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let client = loop_in_client(&net);
    let ln0 = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let amount = Amount::from_sat(60_000);
    // The node's wallet is empty: the offer is persisted, the funding attempt fails. The swap
    // is reported (never an error a caller would answer with a second swap); the runner
    // retries the funding while there is time.
    let id = net
        .rt
        .block_on(client.loop_in(amount, LoopInOptions::default()))
        .expect("stored, funding retried by the runner");
    let (r, rec) = net
        .rt
        .block_on(client.list())
        .expect("list")
        .into_iter()
        .next()
        .expect("persisted");
    assert_eq!((r.id, &rec.state), (id, &State::Persisted));
    drop(client);
    // As if the funding had gone out just before the crash.
    let address: bitcoin::Address = rec
        .offer
        .htlc_address
        .parse::<bitcoin::Address<_>>()
        .expect("address")
        .assume_checked();
    let funding_txid = net.lab.chain.fund(&address, amount).expect("fund");
    // Now the wallet has coins: a second funding would be possible.
    let chain0 = fund_client(&net);
    let client = loop_in_client(&net);
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(client.tick()).expect("client tick");
        net.rt.block_on(net.server.tick()).expect("server tick");
        let c = net.rt.block_on(client.swap(&r.id)).expect("c").1.state;
        let s = net.rt.block_on(net.server.loop_in.swap(&r.id)).expect("s").1.state;
        if c == State::Succeeded && s == ServerState::Succeeded {
            break;
        }
        assert!(start.elapsed() < eddy_lab::WAIT, "client {c:?} server {s:?}");
        net.mine(1).expect("mine");
    }
    let (_, srec) = net.rt.block_on(net.server.loop_in.swap(&r.id)).expect("s");
    assert_eq!(srec.funding.map(|o| o.txid), Some(funding_txid), "the adopted funding");
    // 60,000 − (1,000 + 300) = 58,700 received; the wallet never paid a funding.
    eddy_lab::wait_until("balances", eddy_lab::WAIT, || {
        net.client_ln.ldk().list_balances().total_lightning_balance_sats == ln0 + 58_700 && onchain(&net) == chain0
    })
    .expect("paid once, funded once");
    net.stop().expect("stop");
}

#[test]
fn abandon_ends_an_unfunded_loop_in_and_refuses_while_coins_are_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let client = loop_in_client(&net);
    let external = LoopInOptions {
        external: true,
        ..LoopInOptions::default()
    };
    // Never funded: abandoning simply ends it.
    let a = net
        .rt
        .block_on(client.loop_in(Amount::from_sat(40_000), external))
        .expect("loop-in");
    net.rt.block_on(client.abandon(&a)).expect("abandon");
    assert_eq!(
        net.rt.block_on(client.swap(&a)).expect("swap").1.state,
        State::Failed(eddy_core::sm::loop_in_client::FailReason::Abandoned)
    );
    // Funded but unconfirmed: the coins must come back by a refund, so abandon waits.
    let b = net
        .rt
        .block_on(client.loop_in(Amount::from_sat(40_000), external))
        .expect("loop-in");
    let (_, rec) = net.rt.block_on(client.swap(&b)).expect("swap");
    let address: bitcoin::Address = rec
        .offer
        .htlc_address
        .parse::<bitcoin::Address<_>>()
        .expect("address")
        .assume_checked();
    net.lab.chain.fund(&address, Amount::from_sat(40_000)).expect("fund");
    let e = net.rt.block_on(client.abandon(&b)).expect_err("funded");
    assert!(e.to_string().contains("abandon again once it confirms"), "{e}");
    // Confirmed (the server has not looked yet): abandon asks for a cooperative refund, and the
    // server, which has not paid, co-signs — and from then on never pays.
    net.mine(1).expect("mine");
    net.rt.block_on(client.tick()).expect("client tick");
    assert!(matches!(
        net.rt.block_on(client.swap(&b)).expect("swap").1.state,
        State::Funded { .. }
    ));
    net.rt.block_on(client.abandon(&b)).expect("abandon");
    net.rt.block_on(client.tick()).expect("client tick");
    assert!(
        matches!(
            net.rt.block_on(client.swap(&b)).expect("swap").1.state,
            State::Refunding {
                refund_txid: Some(_),
                ..
            }
        ),
        "refund broadcast"
    );
    net.rt.block_on(net.server.tick()).expect("server tick");
    assert_eq!(
        net.rt.block_on(net.server.loop_in.swap(&b)).expect("s").1.state,
        ServerState::Refundable(RefundReason::ClientRefund)
    );
    net.stop().expect("stop");
}

/// `--last-hop` on a server whose node is LND (here: Eddy's LND client against the LND gRPC
/// emulator, whose node behind is the server's LDK node). The server takes the swap (LND can
/// restrict the last hop) and hands the key to LND in `SendPaymentV2`'s `last_hop_pubkey`; the
/// LDK node behind the emulator cannot route by it and refuses, nothing sent — the one part a
/// real LND would do differently (it would pay through that peer). What this proves: the key
/// travels from the CLI option to the wire, and a payment the node refuses is retried
/// (`LOOP_IN_PAY_ATTEMPTS`), then the swap fails safely: cooperative refund in the next block,
/// the client's coins back but for the two miner fees, nothing paid over Lightning.
#[test]
fn last_hop_reaches_lnd_and_a_refused_payment_ends_in_a_cooperative_refund() {
    use eddy_backends::lnd::{LndConfig, LndNode};
    use eddy_lnd_emu::LndEmulator;
    use eddy_store::{SqliteStore, SwapStore};
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let emulator = net
        .rt
        .block_on(LndEmulator::start(
            net.server_ln.clone(),
            net.chain.clone(),
            &dir.path().join("lnd-emulator"),
        ))
        .expect("emulator");
    let lnd: std::sync::Arc<dyn LightningNode> = std::sync::Arc::new(
        net.rt
            .block_on(LndNode::connect(&LndConfig::new(
                emulator.address(),
                emulator.cert_path().to_path_buf(),
                emulator.macaroon_path().to_path_buf(),
            )))
            .expect("lnd client"),
    );
    assert!(lnd.restricts_last_hop());
    let store = |name: &str| -> std::sync::Arc<dyn SwapStore> {
        std::sync::Arc::new(
            net.rt
                .block_on(SqliteStore::open(&dir.path().join(name)))
                .expect("store"),
        )
    };
    let server_store = store("lnd-server.sqlite");
    let server_dir = dir.path().join("lnd-server");
    std::fs::create_dir_all(&server_dir).expect("dir");
    let server = std::sync::Arc::new(
        net.rt
            .block_on(eddy_server::SwapServer::new(
                eddy::demo::server_config(),
                lnd,
                net.chain.clone(),
                server_store.clone(),
                eddy_store::SeedKeys::load_or_create(&server_dir, eddy_server::SEED_FILE).expect("seed"),
            ))
            .expect("server"),
    );
    let client_dir = dir.path().join("lnd-client");
    std::fs::create_dir_all(&client_dir).expect("dir");
    let client = net
        .rt
        .block_on(LoopInClient::new(
            eddy::demo::client_config(),
            net.client_ln.clone(),
            net.chain.clone(),
            store("lnd-client.sqlite"),
            in_process()(server.clone(), net.server_ln.clone()),
            eddy_store::SeedKeys::load_or_create(&client_dir, eddy_client::SEED_FILE).expect("seed"),
        ))
        .expect("client");
    let chain0 = fund_client(&net);
    let ln0 = net.client_ln.ldk().list_balances().total_lightning_balance_sats;
    let server_node = net.server_ln.ldk().node_id();
    let id = net
        .rt
        .block_on(client.loop_in(
            Amount::from_sat(50_000),
            LoopInOptions {
                last_hop: Some(server_node),
                ..LoopInOptions::default()
            },
        ))
        .expect("loop-in");
    let (_, srec) = net.rt.block_on(server.loop_in.swap(&id)).expect("server swap");
    assert_eq!(srec.last_hop, Some(server_node), "the server stored the last hop");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    let State::Funding { txid: funding_txid } = rec.state else {
        panic!("{:?}", rec.state)
    };
    net.mine(1).expect("mine");
    let start = std::time::Instant::now();
    while net.rt.block_on(server.loop_in.swap(&id)).expect("s").1.state
        != ServerState::Refundable(RefundReason::PaymentFailed)
    {
        net.rt.block_on(server.tick()).expect("server tick");
        assert!(start.elapsed() < eddy_lab::WAIT);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let events = net.rt.block_on(server_store.events(&id)).expect("events");
    let failures: Vec<String> = events
        .iter()
        .filter(|e| e.event["event"] == "payment_attempt_failed")
        .map(|e| e.event["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        failures.len() as u32,
        eddy_core::constants::LOOP_IN_PAY_ATTEMPTS - 1,
        "{failures:?}"
    );
    assert!(failures.iter().all(|r| r.contains("last hop")), "{failures:?}");
    let refund_fee = refund_in_next_block(&net, &client, &id, Amount::from_sat(50_000));
    let funding_fee = fee_of(&net, &funding_txid);
    eddy_lab::wait_until("client on-chain", eddy_lab::WAIT, || {
        onchain(&net) == chain0 - funding_fee - refund_fee
    })
    .expect("back but for the two fees");
    assert_eq!(net.client_ln.ldk().list_balances().total_lightning_balance_sats, ln0);
    drop(emulator);
    net.stop().expect("stop");
}

/// Review finding 1: the runner's pass and `loop_in()` used to fund the same swap each (the
/// daemon runs both at once; "does something pay the HTLC already?" ran before the first
/// funding reached the mempool). Here a pass runs in a tight loop on another task while the
/// swap is created and funded: exactly one output ever pays the HTLC script, and the wallet
/// paid exactly one funding (amount + its fee).
#[test]
fn runner_and_loop_in_racing_fund_the_htlc_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let client = std::sync::Arc::new(loop_in_client(&net));
    // Two coins in the wallet: a second funding would not conflict with the first.
    fund_client(&net);
    let chain0 = fund_client(&net);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runner = {
        let (client, stop) = (client.clone(), stop.clone());
        net.rt.spawn(async move {
            let mut passes = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client.tick().await;
                passes += 1;
                tokio::task::yield_now().await;
            }
            passes
        })
    };
    let amount = Amount::from_sat(70_000);
    let id = net
        .rt
        .block_on(client.loop_in(amount, LoopInOptions::default()))
        .expect("loop-in");
    // Let the runner pass over the stored swap a while longer.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let passes = net.rt.block_on(runner).expect("runner");
    assert!(passes > 1, "the runner ran ({passes} passes)");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    let State::Funding { txid: funding_txid } = rec.state else {
        panic!("funded: {:?}", rec.state)
    };
    net.mine(1).expect("mine");
    net.rt.block_on(client.tick()).expect("tick");
    let tip = net.lab.chain.tip().expect("tip").0;
    let view = net.rt.block_on(client.chain_view(&id, &rec, tip)).expect("view");
    let outputs: Vec<_> = view
        .outputs
        .iter()
        .map(|o| (o.outpoint.txid, o.value.to_sat()))
        .collect();
    assert_eq!(
        outputs,
        vec![(funding_txid, 70_000)],
        "exactly one output pays the HTLC"
    );
    let fee = fee_of(&net, &funding_txid);
    eddy_lab::wait_until("one funding paid", eddy_lab::WAIT, || {
        onchain(&net) == chain0 - 70_000 - fee
    })
    .expect("the wallet paid exactly one funding");
    net.stop().expect("stop");
}

/// Review finding 3: a stored loop-in whose funding failed (the wallet was empty) used to be
/// funded by any later pass, even when too late for the server to pay (and its error skipped
/// the block check). Past `loop_in_last_funding_height(E)` the wallet — now funded — never
/// funds it: the swap fails as never funded, nothing pays its HTLC, the wallet is untouched.
#[test]
fn stored_loop_in_is_not_funded_past_the_funding_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let client = loop_in_client(&net);
    let amount = Amount::from_sat(60_000);
    let id = net
        .rt
        .block_on(client.loop_in(amount, LoopInOptions::default()))
        .expect("stored");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    assert_eq!(rec.state, State::Persisted, "the empty wallet could not fund");
    let last = eddy_core::constants::loop_in_last_funding_height(rec.terms.expiry);
    let tip = net.lab.chain.tip().expect("tip").0;
    net.mine(last + 1 - tip - 1).expect("mine");
    // The wallet gets coins (one more block): the tip is now past the funding window.
    let chain0 = fund_client(&net);
    assert_eq!(net.lab.chain.tip().expect("tip").0, last + 1);
    net.rt.block_on(client.tick()).expect("client tick");
    let (_, rec) = net.rt.block_on(client.swap(&id)).expect("swap");
    assert_eq!(
        rec.state,
        State::Failed(eddy_core::sm::loop_in_client::FailReason::NeverFunded)
    );
    let tip = net.lab.chain.tip().expect("tip").0;
    let view = net.rt.block_on(client.chain_view(&id, &rec, tip)).expect("view");
    assert!(view.outputs.is_empty(), "nothing pays the HTLC: {:?}", view.outputs);
    assert_eq!(onchain(&net), chain0, "the wallet paid nothing");
    net.stop().expect("stop");
}
