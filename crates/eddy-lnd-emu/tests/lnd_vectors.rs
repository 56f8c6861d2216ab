//! LND's own test cases, transcribed, run against the LND emulator's rules: the cases of
//! `invoices/invoice_expiry_watcher_test.go`, the hold-invoice cases of
//! `invoices/invoiceregistry_test.go`, the `decidePaymentStatus` table of
//! `payment_status_test.go` and the request checks of `routerrpc/router_backend_test.go` and
//! `routing.ValidateCLTVLimit`. Heights, deltas, amounts and outcomes are LND's (LND's test
//! constants: current height 1, HTLC expiry 5, invoice final CLTV delta 4, reject delta 4,
//! 100 000 msat invoices, one-hour expiries). The same rules are exercised through Eddy's LND
//! client over gRPC in `lnd_emulator.rs`.

use eddy_core::types::{PaymentHash, Preimage};
use eddy_lnd_emu::registry::{
    final_cltv_delta, HtlcOutcome, HtlcState, InvoiceState, NewInvoice, Registry, RpcError, Rules,
};
use eddy_lnd_emu::router::{
    decide_payment_status, may_send_again, validate_cltv_limit, validate_send, Attempt, FailureReason, SendRequest,
    Status,
};
use tonic::Code;

const CURRENT_HEIGHT: u32 = 1;
const HTLC_EXPIRY: u32 = 5;
const INVOICE_CLTV_DELTA: u64 = 4;
const AMOUNT: u64 = 100_000;
/// 2018-02-02 14:00:00 UTC, LND's `testTime`.
const TEST_TIME: u64 = 1_517_580_000;
const HOUR: u64 = 3600;

/// LND's registry test configuration: expiry watcher delta 0, reject delta 4.
fn test_rules(hold_expiry_delta: u32, gc: bool) -> Rules {
    Rules {
        hold_expiry_delta,
        final_cltv_reject_delta: 4,
        min_final_cltv_delta: 4,
        gc_canceled_on_the_fly: gc,
        mpp_hold_secs: 30,
    }
}

fn preimage(i: u8) -> Preimage {
    let mut b = [0u8; 32];
    b[0] = i;
    b[31] = 1;
    Preimage::from_bytes(b)
}

fn add(reg: &mut Registry, p: &Preimage, hold: bool, created: u64, expiry: u64) -> PaymentHash {
    let hash = p.payment_hash();
    reg.add(
        NewInvoice {
            hash,
            hold,
            preimage: (!hold).then_some(*p),
            value_msat: AMOUNT,
            expiry_secs: expiry,
            cltv_expiry: INVOICE_CLTV_DELTA,
            private: false,
            payment_request: format!("lnbcrt{}", hash),
            memo: String::new(),
        },
        created,
    )
    .expect("added");
    hash
}

fn state(reg: &Registry, h: &PaymentHash) -> InvoiceState {
    reg.lookup(h).expect("invoice").state
}

// --- invoice_expiry_watcher_test.go ---

/// `TestInvoiceExpiryWithNoInvoices`, `...WithOnlyExpiredInvoices` (whose data are all
/// pending), `...WithPendingAndExpiredInvoices` and `...WhenAddingMultipleInvoices`: five
/// invoices created a day ago with 1..5 h expiries are canceled, five created now are not.
#[test]
fn expiry_watcher_cancels_exactly_the_expired_open_invoices() {
    let mut reg = Registry::new(test_rules(0, false));
    assert!(
        reg.expire(CURRENT_HEIGHT, TEST_TIME).is_empty(),
        "no invoices, nothing canceled"
    );
    let now = TEST_TIME;
    let mut pending = vec![];
    let mut expired = vec![];
    for i in 1..=5u8 {
        pending.push(add(&mut reg, &preimage(i), false, now, u64::from(i) * HOUR));
        expired.push(add(
            &mut reg,
            &preimage(100 + i),
            false,
            now - 24 * HOUR,
            u64::from(i) * HOUR,
        ));
    }
    let mut canceled = reg.expire(CURRENT_HEIGHT, now);
    canceled.sort();
    expired.sort();
    assert_eq!(canceled, expired);
    for h in &pending {
        assert_eq!(state(&reg, h), InvoiceState::Open);
    }
    for h in &expired {
        assert_eq!(state(&reg, h), InvoiceState::Canceled);
    }
    assert!(reg.expire(CURRENT_HEIGHT, now).is_empty(), "canceled once");
}

/// `TestExpiredHodlInv`: an open hold invoice created a day ago with a one-hour expiry is
/// canceled by time.
#[test]
fn expired_open_hold_invoice_is_canceled() {
    let mut reg = Registry::new(test_rules(0, false));
    let h = add(&mut reg, &preimage(1), true, TEST_TIME - 24 * HOUR, HOUR);
    assert_eq!(reg.expire(CURRENT_HEIGHT, TEST_TIME), vec![h]);
    assert_eq!(state(&reg, &h), InvoiceState::Canceled);
}

/// `TestAcceptedHodlNotExpired`: an accepted hold invoice is not canceled by its time expiry
/// (one nanosecond — here one second — after it), only by height.
#[test]
fn accepted_hold_invoice_is_not_canceled_by_time() {
    let mut reg = Registry::new(test_rules(0, false));
    let h = add(&mut reg, &preimage(1), true, TEST_TIME, HOUR);
    assert_eq!(
        reg.htlc_arrived(&h, AMOUNT, 100, CURRENT_HEIGHT, TEST_TIME, false),
        HtlcOutcome::Accepted
    );
    assert_eq!(state(&reg, &h), InvoiceState::Accepted);
    // At the expiry instant itself nothing happens (LND cancels strictly after), nor after it.
    assert!(reg.expire(CURRENT_HEIGHT, TEST_TIME + HOUR).is_empty());
    assert!(reg.expire(CURRENT_HEIGHT, TEST_TIME + HOUR + 1).is_empty());
    assert_eq!(state(&reg, &h), InvoiceState::Accepted);
}

/// `TestHeightAlreadyExpired`: an accepted hold invoice whose HTLC expires at the current
/// height is canceled at once (delta 0: `1 + 0 >= 1`).
#[test]
fn height_already_expired_cancels_at_once() {
    // The HTLC is recorded at height 1 with expiry 5, then the chain is at 5 when the watcher
    // looks (LND's test inserts the entry with expiry = current height directly).
    let mut reg = Registry::new(test_rules(0, false));
    let h = add(&mut reg, &preimage(1), true, TEST_TIME, HOUR);
    reg.htlc_arrived(&h, AMOUNT, HTLC_EXPIRY, CURRENT_HEIGHT, TEST_TIME, false);
    assert_eq!(reg.expire(HTLC_EXPIRY, TEST_TIME), vec![h]);
    let inv = reg.lookup(&h).expect("invoice");
    assert_eq!(inv.state, InvoiceState::Canceled);
    assert_eq!(inv.htlcs[0].state, HtlcState::Canceled, "held HTLCs fail back");
}

/// `TestExpiryHeightArrives`: delta 1; HTLCs expiring at 11 and at 7: the lowest counts, and
/// the invoice is canceled at block 6 (`6 + 1 >= 7`), not at block 2, and not by time.
#[test]
fn expiry_height_arrives_at_the_lowest_htlc_minus_delta() {
    let mut reg = Registry::new(test_rules(1, false));
    let h = add(&mut reg, &preimage(1), true, TEST_TIME, 2 * HOUR);
    reg.htlc_arrived(&h, AMOUNT / 2, 11, CURRENT_HEIGHT, TEST_TIME, false);
    assert_eq!(state(&reg, &h), InvoiceState::Open, "half the amount: still open");
    reg.htlc_arrived(&h, AMOUNT / 2, 7, 2, TEST_TIME, false);
    assert_eq!(state(&reg, &h), InvoiceState::Accepted);
    assert_eq!(reg.lookup(&h).expect("inv").cancel_height(1), Some(6));
    assert!(
        reg.expire(2, TEST_TIME + 2 * HOUR + 1).is_empty(),
        "block 2, time expiry passed"
    );
    assert!(reg.expire(5, TEST_TIME).is_empty(), "block 5: 5 + 1 < 7");
    assert_eq!(reg.expire(6, TEST_TIME), vec![h], "block 6: 6 + 1 >= 7");
}

// --- invoiceregistry_test.go (hold invoices) ---

/// `testSettleHoldInvoice`: an HTLC of 100 500 msat expiring at 5 is held; a second one
/// expiring at 1 is refused as too soon (`1 < 1 + 4`); settle works once (again: success at the
/// RPC), cancel after settle is refused.
#[test]
fn settle_hold_invoice() {
    let mut reg = Registry::new(test_rules(0, false));
    let p = preimage(1);
    let h = add(&mut reg, &p, true, TEST_TIME, HOUR);
    assert_eq!(
        reg.htlc_arrived(&h, 100_500, HTLC_EXPIRY, CURRENT_HEIGHT, TEST_TIME, false),
        HtlcOutcome::Accepted
    );
    assert_eq!(
        reg.htlc_arrived(&h, 100_500, 1, CURRENT_HEIGHT, TEST_TIME, false),
        HtlcOutcome::ExpiryTooSoon
    );
    let inv = reg.lookup(&h).expect("inv");
    assert_eq!((inv.state, inv.amt_paid_msat()), (InvoiceState::Accepted, 100_500));
    let settled = reg.settle(&p).expect("settled");
    assert_eq!(
        (settled.state, settled.amt_paid_msat()),
        (InvoiceState::Settled, 100_500)
    );
    assert_eq!(settled.htlcs[0].accept_height, CURRENT_HEIGHT);
    assert_eq!(
        reg.settle(&p).expect("settle again answers success").state,
        InvoiceState::Settled
    );
    assert_eq!(reg.cancel(&h), Err(RpcError::plain("invoice already settled")));
}

/// `testCancelHoldInvoice`: a held HTLC is failed back on cancel; the invoice stays canceled
/// (a replay cannot reopen it) and settling it is refused.
#[test]
fn cancel_hold_invoice() {
    let mut reg = Registry::new(test_rules(0, false));
    let p = preimage(1);
    let h = add(&mut reg, &p, true, TEST_TIME, HOUR);
    reg.htlc_arrived(&h, AMOUNT, HTLC_EXPIRY, CURRENT_HEIGHT, TEST_TIME, false);
    assert_eq!(reg.cancel(&h), Ok(true));
    let inv = reg.lookup(&h).expect("inv");
    assert_eq!(inv.state, InvoiceState::Canceled);
    assert_eq!(inv.htlcs[0].state, HtlcState::Canceled);
    assert_eq!(inv.htlcs[0].accept_height, CURRENT_HEIGHT, "the original accept height");
    assert_eq!(
        reg.htlc_arrived(&h, AMOUNT, HTLC_EXPIRY, 2, TEST_TIME, false),
        HtlcOutcome::InvoiceNotOpen
    );
    assert_eq!(reg.cancel(&h), Ok(false), "cancel again: success, no change");
    assert_eq!(
        reg.settle(&p).map(|_| ()),
        Err(RpcError::plain("invoice already canceled"))
    );
}

/// `testCancelInvoice` with and without `GcCanceledInvoicesOnTheFly`: deleted at once (lookup
/// NotFound, a second cancel "unable to locate invoice", a new HTLC refused) or kept canceled
/// (a second cancel succeeds).
#[test]
fn cancel_invoice_with_and_without_gc() {
    for gc in [false, true] {
        let mut reg = Registry::new(test_rules(0, gc));
        let h = add(&mut reg, &preimage(1), false, TEST_TIME, HOUR);
        assert_eq!(reg.cancel(&h), Ok(true));
        if gc {
            assert_eq!(
                reg.lookup(&h).map(|_| ()),
                Err(RpcError::coded(Code::NotFound, "unable to locate invoice"))
            );
            assert_eq!(reg.cancel(&h), Err(RpcError::plain("unable to locate invoice")));
        } else {
            assert_eq!(state(&reg, &h), InvoiceState::Canceled);
            assert_eq!(reg.cancel(&h), Ok(false));
        }
        assert_eq!(
            reg.htlc_arrived(&h, AMOUNT, HTLC_EXPIRY, CURRENT_HEIGHT, TEST_TIME, false),
            HtlcOutcome::InvoiceNotOpen
        );
    }
}

/// `testUnknownInvoice`: an HTLC for an unknown hash is failed back.
#[test]
fn unknown_invoice() {
    let mut reg = Registry::new(test_rules(0, false));
    assert_eq!(
        reg.htlc_arrived(
            &preimage(9).payment_hash(),
            AMOUNT,
            HTLC_EXPIRY,
            CURRENT_HEIGHT,
            TEST_TIME,
            false
        ),
        HtlcOutcome::InvoiceNotOpen
    );
}

/// `testHeightExpiryWithRegistry` ("single shot"/"mpp", "settled before expiry"/"expires"):
/// parts expiring at 5 + i; after the time expiry nothing happens; at block 4 a settle still
/// succeeds; otherwise at block 5 (the lowest expiry, delta 0) the invoice is canceled and every
/// part fails back.
#[test]
fn height_expiry_with_registry() {
    for parts in [1u32, 2] {
        for settle in [true, false] {
            let mut reg = Registry::new(test_rules(0, false));
            let p = preimage(1);
            let h = add(&mut reg, &p, true, TEST_TIME, HOUR);
            for i in 0..parts {
                let outcome = reg.htlc_arrived(&h, AMOUNT / u64::from(parts), 5 + i, CURRENT_HEIGHT, TEST_TIME, false);
                assert_eq!(outcome, HtlcOutcome::Accepted);
            }
            assert_eq!(state(&reg, &h), InvoiceState::Accepted);
            assert!(reg.expire(CURRENT_HEIGHT, TEST_TIME + HOUR + 1).is_empty());
            assert!(reg.expire(4, TEST_TIME + HOUR + 1).is_empty());
            if settle {
                reg.settle(&p).expect("settle at block 4");
                assert!(reg.expire(5, TEST_TIME + HOUR + 1).is_empty());
                let inv = reg.lookup(&h).expect("inv");
                assert_eq!(inv.state, InvoiceState::Settled, "{parts} parts");
                assert!(inv.htlcs.iter().all(|x| x.state == HtlcState::Settled));
            } else {
                assert_eq!(reg.expire(5, TEST_TIME + HOUR + 1), vec![h], "{parts} parts");
                let inv = reg.lookup(&h).expect("inv");
                assert!(inv.htlcs.iter().all(|x| x.state == HtlcState::Canceled));
            }
        }
    }
}

/// `testMultipleSetHeightExpiry`: a lone half part expiring at 5 is released after the MPP
/// hold duration (30 s in LND's test config), so block 5 cancels nothing; a complete set of two
/// parts expiring at 10 is accepted, and block 10 cancels it — only the complete set's expiry
/// counts.
#[test]
fn multiple_set_height_expiry() {
    let mut reg = Registry::new(test_rules(0, false));
    let h = add(&mut reg, &preimage(1), true, TEST_TIME, HOUR);
    assert_eq!(
        reg.htlc_arrived(&h, AMOUNT / 2, 5, CURRENT_HEIGHT, TEST_TIME, false),
        HtlcOutcome::Accepted
    );
    assert_eq!(state(&reg, &h), InvoiceState::Open);
    assert!(reg.expire(CURRENT_HEIGHT, TEST_TIME + 29).is_empty());
    assert_eq!(
        reg.lookup(&h).expect("inv").htlcs[0].state,
        HtlcState::Accepted,
        "held 29 s"
    );
    assert!(reg.expire(CURRENT_HEIGHT, TEST_TIME + 30).is_empty());
    assert_eq!(
        reg.lookup(&h).expect("inv").htlcs[0].state,
        HtlcState::Canceled,
        "released at the MPP timeout"
    );
    assert!(
        reg.expire(5, TEST_TIME + 30).is_empty(),
        "block 5: the released part does not count"
    );
    assert_eq!(state(&reg, &h), InvoiceState::Open);
    for _ in 0..2 {
        assert_eq!(
            reg.htlc_arrived(&h, AMOUNT / 2, 10, 5, TEST_TIME + 31, false),
            HtlcOutcome::Accepted
        );
    }
    assert_eq!(state(&reg, &h), InvoiceState::Accepted);
    assert_eq!(reg.lookup(&h).expect("inv").amt_paid_msat(), AMOUNT);
    assert!(reg.expire(9, TEST_TIME + 31).is_empty());
    assert_eq!(reg.expire(10, TEST_TIME + 31), vec![h]);
    // An HTLC to the invoice once accepted is refused (`ResultInvoiceNotOpen`).
}

/// An HTLC to an invoice that is no longer open (here: accepted) is refused, as LND's
/// `update.go` answers `ResultInvoiceNotOpen`.
#[test]
fn htlc_to_an_accepted_invoice_is_refused() {
    let mut reg = Registry::new(test_rules(0, false));
    let h = add(&mut reg, &preimage(1), true, TEST_TIME, HOUR);
    reg.htlc_arrived(&h, AMOUNT, HTLC_EXPIRY, CURRENT_HEIGHT, TEST_TIME, false);
    assert_eq!(
        reg.htlc_arrived(&h, AMOUNT, HTLC_EXPIRY, CURRENT_HEIGHT, TEST_TIME, false),
        HtlcOutcome::InvoiceNotOpen
    );
    assert_eq!(reg.lookup(&h).expect("inv").htlcs.len(), 1);
}

/// An open invoice holding an incomplete part is canceled by its time expiry all the same, and
/// the part fails back with it.
#[test]
fn open_invoice_with_a_partial_part_expires_by_time() {
    let mut reg = Registry::new(test_rules(0, false));
    let h = add(&mut reg, &preimage(1), true, TEST_TIME, HOUR);
    reg.htlc_arrived(&h, AMOUNT / 2, 100, CURRENT_HEIGHT, TEST_TIME + HOUR - 10, false);
    assert_eq!(reg.expire(CURRENT_HEIGHT, TEST_TIME + HOUR + 1), vec![h]);
    let inv = reg.lookup(&h).expect("inv");
    assert_eq!(inv.state, InvoiceState::Canceled);
    assert_eq!(inv.htlcs[0].state, HtlcState::Canceled);
}

/// AddInvoice's final-CLTV rules (`addinvoice.go`): 0 ⇒ 80; below the version's minimum or
/// above 65 535 refused with LND's words.
#[test]
fn final_cltv_delta_rules() {
    for (rules, min) in [(Rules::LND_0_20, 18u64), (Rules::LND_0_21, 24)] {
        assert_eq!(rules.min_final_cltv_delta, min);
        assert_eq!(final_cltv_delta(0, min), Ok(80));
        assert_eq!(final_cltv_delta(min, min), Ok(min));
        assert_eq!(
            final_cltv_delta(min - 1, min),
            Err(RpcError::plain(format!(
                "CLTV delta of {} must be greater than minimum of {min}",
                min - 1
            )))
        );
    }
    assert_eq!(
        final_cltv_delta(65_536, 18),
        Err(RpcError::plain(
            "CLTV delta of 65536 is too large, max accepted is: 65535"
        ))
    );
    assert_eq!(Rules::LND_0_20.hold_expiry_delta, 12);
    assert_eq!(Rules::LND_0_21.hold_expiry_delta, 18);
}

/// A duplicate hash is refused with LND's words and gRPC `Unknown` (not `AlreadyExists`).
#[test]
fn duplicate_invoice() {
    let mut reg = Registry::new(Rules::LND_0_21);
    let p = preimage(1);
    add(&mut reg, &p, true, TEST_TIME, HOUR);
    let again = reg
        .add(
            NewInvoice {
                hash: p.payment_hash(),
                hold: true,
                preimage: None,
                value_msat: 1,
                expiry_secs: HOUR,
                cltv_expiry: 80,
                private: false,
                payment_request: String::new(),
                memo: String::new(),
            },
            TEST_TIME,
        )
        .map(|_| ());
    assert_eq!(again, Err(RpcError::plain("invoice with payment hash already exists")));
    assert_eq!(RpcError::plain("x").code, Code::Unknown);
}

// --- payment_status_test.go (decidePaymentStatus) ---

/// One row: attempts, failure reason, the status (`None`: LND's conflict error).
type Row = (Vec<Attempt>, Option<FailureReason>, Option<Status>);

#[test]
fn decide_payment_status_table() {
    use Attempt::*;
    let r = Some(FailureReason::NoRoute);
    let rows: Vec<Row> = vec![
        // no htlcs
        (vec![], None, Some(Status::Initiated)),
        (vec![], r, Some(Status::Failed)),
        // in flight
        (vec![InFlight], None, Some(Status::InFlight)),
        (vec![InFlight], r, Some(Status::InFlight)),
        (vec![InFlight, Failed], None, Some(Status::InFlight)),
        (vec![InFlight, Failed], r, Some(Status::InFlight)),
        // settled
        (vec![Settled], None, Some(Status::Succeeded)),
        (vec![Settled, Failed], None, Some(Status::Succeeded)),
        (vec![InFlight, Settled], None, Some(Status::InFlight)),
        (vec![Settled], r, None),
        (vec![InFlight, Settled], r, None),
        // failed attempts only
        (vec![Failed], None, Some(Status::InFlight)),
        (vec![Failed], r, Some(Status::Failed)),
    ];
    for (attempts, reason, want) in rows {
        let got = decide_payment_status(&attempts, reason).ok();
        assert_eq!(got, want, "{attempts:?} {reason:?}");
    }
    assert_eq!(
        (
            Status::InFlight.code(),
            Status::Succeeded.code(),
            Status::Failed.code(),
            Status::Initiated.code()
        ),
        (1, 2, 3, 4)
    );
}

/// `SendPaymentV2` of a hash with a payment: in flight / initiated / succeeded refused with
/// `AlreadyExists`, failed may be sent again.
#[test]
fn duplicate_payments() {
    assert_eq!(
        may_send_again(Status::InFlight),
        Err(RpcError::coded(Code::AlreadyExists, "payment is in transition"))
    );
    assert_eq!(
        may_send_again(Status::Initiated),
        Err(RpcError::coded(Code::AlreadyExists, "payment is in transition"))
    );
    assert_eq!(
        may_send_again(Status::Succeeded),
        Err(RpcError::coded(Code::AlreadyExists, "invoice is already paid"))
    );
    assert_eq!(may_send_again(Status::Failed), Ok(()));
}

// --- router_backend_test.go / routing.ValidateCLTVLimit ---

fn send(cltv_limit: i32, final_cltv_delta: u32) -> SendRequest {
    SendRequest {
        timeout_seconds: 60,
        cltv_limit,
        final_cltv_delta,
        ..Default::default()
    }
}

#[test]
fn cltv_limit_rules() {
    // `ValidateCLTVLimit`: 0 ⇒ the maximum; above it refused.
    assert_eq!(validate_cltv_limit(0, 2016), Ok(2016));
    assert_eq!(validate_cltv_limit(2016, 2016), Ok(2016));
    assert_eq!(
        validate_cltv_limit(2017, 2016),
        Err(RpcError::plain("total time lock of 2017 exceeds max allowed 2016"))
    );
    // The limit must exceed the final delta plus the 3-block padding: 40 + 3 = 43.
    assert_eq!(
        validate_send(&send(43, 40), 2016, true).map(|_| ()),
        Err(RpcError::plain("cltv limit 43 should be greater than 43"))
    );
    assert_eq!(validate_send(&send(44, 40), 2016, true).map(|i| i.cltv_limit), Ok(44));
    // A limit of 0 is the node's maximum: never refused by the final-delta rule, never "no limit"
    // in the sense of unbounded — it is 2016 blocks.
    assert_eq!(validate_send(&send(0, 40), 2016, true).map(|i| i.cltv_limit), Ok(2016));
    assert_eq!(
        validate_send(&send(-1, 40), 2016, true).map(|_| ()),
        Err(RpcError::plain("cltv limit must not be negative"))
    );
}

#[test]
fn send_request_rules() {
    let base = send(500, 40);
    let no_timeout = SendRequest {
        timeout_seconds: 0,
        ..base.clone()
    };
    assert_eq!(
        validate_send(&no_timeout, 2016, true).map(|_| ()),
        Err(RpcError::plain("timeout_seconds must be specified"))
    );
    assert!(
        validate_send(&no_timeout, 2016, false).is_ok(),
        "newer LND defaults the timeout"
    );
    let both_fees = SendRequest {
        fee_limit_sat: 1,
        fee_limit_msat: 1000,
        ..base.clone()
    };
    assert_eq!(
        validate_send(&both_fees, 2016, true).map(|_| ()),
        Err(RpcError::plain("sat and msat arguments are mutually exclusive"))
    );
    let fee_sat = SendRequest {
        fee_limit_sat: 7,
        ..base.clone()
    };
    assert_eq!(validate_send(&fee_sat, 2016, true).map(|i| i.fee_limit_msat), Ok(7000));
    assert_eq!(
        validate_send(&base, 2016, true).map(|i| i.fee_limit_msat),
        Ok(0),
        "no fee limit given: only fee-free routes"
    );
    let both_chans = SendRequest {
        outgoing_chan_id: 1,
        outgoing_chan_ids: vec![2],
        ..base.clone()
    };
    assert_eq!(
        validate_send(&both_chans, 2016, true).map(|_| ()),
        Err(RpcError::plain(
            "outgoing_chan_id and outgoing_chan_ids are mutually exclusive"
        ))
    );
    let one_chan = SendRequest {
        outgoing_chan_id: 5,
        ..base.clone()
    };
    assert_eq!(
        validate_send(&one_chan, 2016, true).map(|i| i.outgoing_chan_ids),
        Ok(vec![5])
    );
    let bad_hop = SendRequest {
        last_hop_pubkey: vec![2; 20],
        ..base
    };
    assert_eq!(
        validate_send(&bad_hop, 2016, true).map(|_| ()),
        Err(RpcError::plain("invalid vertex length of 20, want 33"))
    );
}
