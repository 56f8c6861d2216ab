//! Batching on the devnet with real LDK nodes: three loop-outs whose payments the server holds
//! at the same time are published in **one** transaction from the swap wallet (three HTLC
//! outputs and the change), the client claims all three in one transaction (each input
//! co-signed by the server, each swap paying its share of the fee), and all three complete with
//! exact money.

use bitcoin::Amount;
use eddy::demo::{in_process, swapnet};
use eddy_backends::LightningNode;
use eddy_core::sm::loop_out_client::State;
use eddy_core::sm::loop_out_server::State as ServerState;

#[test]
fn htlcs_held_together_are_published_in_one_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = swapnet(dir.path(), Some(in_process()), &|_| {}).expect("swapnet");
    let wallet_before = net.rt.block_on(net.server.wallet_balance()).spendable;
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
            .expect("address")
            .script_pubkey();
        // Fresh addresses of the node's wallet (as the daemon takes when no address is given):
        // the batched claim pays them into one output.
        let options = eddy_client::SwapOptions {
            wallet_destination: true,
            ..Default::default()
        };
        ids.push(
            net.rt
                .block_on(net.client.loop_out_with(a, dest, options))
                .expect("loop-out"),
        );
    }
    // Wait until the server's node holds both HTLCs of every swap, then one engine pass.
    net.wait_held(&ids).expect("held");
    net.rt.block_on(net.server.tick()).expect("tick");
    let fundings: Vec<_> = ids
        .iter()
        .map(|id| {
            let (_, rec) = net.rt.block_on(net.server.loop_out.swap(id)).expect("swap");
            assert!(matches!(rec.state, ServerState::Published { .. }), "{:?}", rec.state);
            rec.funding.expect("funding")
        })
        .collect();
    let txid = fundings[0].txid;
    assert!(fundings.iter().all(|f| f.txid == txid), "one transaction: {fundings:?}");
    let tx = net
        .rt
        .block_on(eddy_backends::ChainSource::transaction(net.chain.as_ref(), &txid))
        .expect("rpc")
        .expect("in mempool")
        .tx;
    assert_eq!(tx.output.len(), 4, "three HTLCs and the change");
    for (f, a) in fundings.iter().zip(amounts) {
        assert_eq!(tx.output[f.vout as usize].value, a);
    }
    let publish_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &tx))
        .expect("fee");
    // 2 sat/vB on the exact weight of the batch.
    assert_eq!(publish_fee.to_sat(), (tx.weight().to_wu() * 500).div_ceil(1000));

    // All three complete.
    let start = std::time::Instant::now();
    loop {
        net.rt.block_on(net.server.tick()).expect("server tick");
        net.rt.block_on(net.client.tick()).expect("client tick");
        let states: Vec<_> = ids
            .iter()
            .map(|id| {
                (
                    net.rt.block_on(net.client.swap(id)).expect("c").1.state,
                    net.rt.block_on(net.server.loop_out.swap(id)).expect("s").1.state,
                )
            })
            .collect();
        if states
            .iter()
            .all(|(c, s)| matches!(c, State::Succeeded { .. }) && *s == ServerState::Succeeded)
        {
            break;
        }
        assert!(!states.iter().any(|(c, _)| matches!(c, State::Failed(_))), "{states:?}");
        if states
            .iter()
            .any(|(c, _)| matches!(c, State::HtlcConfirming { .. } | State::Claiming { .. }))
        {
            net.mine(1).expect("mine");
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(120), "{states:?}");
    }
    net.rt.block_on(net.server.tick()).expect("tick");
    // The client claimed all three in one transaction, each input on the key path, each swap
    // paying its share of one fee, into one output of its wallet: the three HTLCs less the
    // three shares.
    let claims: Vec<_> = ids
        .iter()
        .map(|id| net.rt.block_on(net.client.swap(id)).expect("client swap").1)
        .collect();
    let (claim_txid, _) = claims[0].confirmed_claim().expect("claimed");
    let claim = net
        .rt
        .block_on(eddy_backends::ChainSource::transaction(net.chain.as_ref(), &claim_txid))
        .expect("rpc")
        .expect("claim known")
        .tx;
    assert_eq!(claim.input.len(), 3, "one claim for three swaps: {claim:?}");
    assert!(claim.input.iter().all(|i| i.witness.len() == 1), "all key path");
    let claim_fee = net
        .rt
        .block_on(eddy_backends::fee_paid(net.chain.as_ref(), &claim))
        .expect("fee");
    let mut shares = Amount::ZERO;
    for rec in &claims {
        let (txid, share) = rec.confirmed_claim().expect("claimed");
        assert_eq!(txid, claim_txid);
        shares += share;
    }
    assert_eq!(shares, claim_fee, "the shares add up to the fee");
    assert_eq!(claim.output.len(), 1, "one output to the wallet: {claim:?}");
    let total_in: Amount = amounts.iter().copied().sum();
    assert_eq!(claim.output[0].value, total_in - shares);
    assert!(
        claims.iter().any(|c| c.destination == claim.output[0].script_pubkey),
        "at one of the swaps' own addresses"
    );
    // One transaction's overhead and output for three: 10.5 vB + 3 × 57.5 vB + 31 vB (P2WPKH)
    // = 214 vB, where three claims alone take 3 × 99 = 297 vB; at 2 sat/vB.
    assert_eq!(claim.vsize(), 214, "{claim:?}");
    assert_eq!(claim_fee, Amount::from_sat(2 * 214));
    let total: Amount = amounts.iter().copied().sum();
    assert_eq!(
        net.rt.block_on(net.server.wallet_balance()).spendable,
        wallet_before - total - publish_fee,
        "the swap wallet paid the three HTLCs and one fee"
    );
    net.stop().expect("stop");
}
