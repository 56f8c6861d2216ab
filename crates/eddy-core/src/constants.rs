//! Safety constants: every timeout, margin and window a swap depends on, each derived in its
//! doc comment. They are in blocks unless the name says otherwise. Changing one changes who can
//! lose money; the tests in this module pin the relations between them.
//!
//! Notation: `E` is the on-chain HTLC's absolute expiry height; a timeout spend carries
//! `nLockTime = E` and so can be mined at height `E + 1` at the earliest; `tip` is the best
//! height the deciding party has seen.

use crate::types::BlockHeight;

/// Blocks within which a fee-bumped spend is assumed to confirm once it pays the urgent fee
/// rate (conf target [`URGENT_CONF_TARGET`]) and is re-bumped every block. Six blocks is the
/// usual "one hour" budget that Lightning implementations also allow for an on-chain sweep.
pub const SPEND_CONFIRM_BUDGET: u32 = 6;

/// Depth after which Eddy treats a transaction as final for deciding what it may do next
/// (e.g. cancel a held invoice after its refund). Six blocks is Bitcoin's customary finality
/// depth; the devnet's reorg tests use shallower reorgs than this.
pub const REORG_SAFETY_DEPTH: u32 = 6;

/// Blocks allowed between learning a preimage and the Lightning node settling with it
/// (process restart, peer reconnection, commitment round trips). LDK calls the same slack
/// `LATENCY_GRACE_PERIOD_BLOCKS` (3).
pub const SETTLE_LATENCY: u32 = 3;

/// The conf target of a claim or refund that must not miss its deadline.
pub const URGENT_CONF_TARGET: u16 = 2;

/// Default confirmations the loop-out client waits for on the server's HTLC before revealing
/// the preimage. One is the minimum: a preimage is never revealed against an unconfirmed
/// output (it could be double-spent while the preimage lets the server settle).
pub const DEFAULT_LOOP_OUT_HTLC_CONFS: u32 = 1;

/// The most confirmations a client may ask for (more would eat the claim window below).
pub const MAX_HTLC_CONFS: u32 = 6;

/// Loop-out: the client never *starts* a claim (reveals the preimage) when fewer than this many
/// blocks are left before `E`. Once the preimage is public the server can settle the Lightning
/// payment and, after `E`, also sweep its refund path, so the claim must confirm before `E + 1`.
/// Derivation: [`SPEND_CONFIRM_BUDGET`] (6) for the claim to confirm at the urgent rate, plus
/// [`REORG_SAFETY_DEPTH`] (6) so that a reorg of the claim's block still leaves time to
/// re-confirm it, plus 8 blocks of head-room for one fee spike that outbids the
/// first bumps. 6 + 6 + 8 = 20 (Lightning Loop's own `MinPreimageRevealDelta` is also 20).
pub const PREIMAGE_REVEAL_CUTOFF: u32 = SPEND_CONFIRM_BUDGET + REORG_SAFETY_DEPTH + 8;

/// Loop-out: blocks before `E` under which the client's sweep stops caring about its
/// miner-fee limit and pays whatever it takes (up to the output's value less dust): the
/// preimage is already out, so not confirming means losing the whole swap.
pub const CLAIM_URGENCY_BLOCKS: u32 = PREIMAGE_REVEAL_CUTOFF / 2;

/// Loop-out server: the accepted swap HTLC must stay claimable (the Lightning node's claim
/// deadline, i.e. the height at which it would fail the HTLC back) until at least
/// `E + SERVER_SETTLE_MARGIN`.
/// Derivation: after `E` the client can still claim until the server's refund is buried. The
/// refund is broadcast for block `E + 1`, confirms within [`SPEND_CONFIRM_BUDGET`] (6) and is
/// final after [`REORG_SAFETY_DEPTH`] (6) more; the server may therefore learn the preimage as late as
/// `E + 12` and then needs [`SETTLE_LATENCY`] (3) to settle. 6 + 6 + 3 = 15.
pub const SERVER_SETTLE_MARGIN: u32 = SPEND_CONFIRM_BUDGET + REORG_SAFETY_DEPTH + SETTLE_LATENCY;

/// Loop-out: `E - tip` the server proposes by default. It must cover the client's wait for
/// the HTLC's confirmations ([`MAX_HTLC_CONFS`]), the reveal cutoff, and a payment that takes
/// up to a few blocks to arrive; 80 blocks (~13 h) leaves 42 blocks of slack over the minimum.
pub const DEFAULT_LOOP_OUT_EXPIRY_DELTA: u32 = 80;

/// Loop-out server: it never publishes the HTLC when fewer than this many blocks are left
/// before `E`. After publication the HTLC must confirm (within [`SPEND_CONFIRM_BUDGET`]) and reach
/// the client's confirmations ([`MAX_HTLC_CONFS`]) while the client is still above
/// [`PREIMAGE_REVEAL_CUTOFF`]: 6 + 6 + 20 = 32.
pub const MIN_BLOCKS_LEFT_AT_PUBLICATION: u32 = SPEND_CONFIRM_BUDGET + MAX_HTLC_CONFS + PREIMAGE_REVEAL_CUTOFF;

/// Loop-out client: the smallest `E - tip` it accepts in an offer: what the server needs left
/// at publication plus [`SPEND_CONFIRM_BUDGET`] blocks for the payment to arrive: 32 + 6 = 38.
pub const MIN_LOOP_OUT_EXPIRY_DELTA: u32 = MIN_BLOCKS_LEFT_AT_PUBLICATION + SPEND_CONFIRM_BUDGET;

/// Loop-out client: the largest `E - tip` it accepts. The client's Lightning payment must
/// outlive `E + SERVER_SETTLE_MARGIN`, and LDK payers refuse routes whose total CLTV exceeds
/// 1008 blocks; 288 blocks (2 days) + 15 + route deltas stays well inside that and bounds how long
/// the client's channel liquidity can be held by a server that never publishes.
pub const MAX_LOOP_OUT_EXPIRY_DELTA: u32 = 288;

/// Loop-out server: if the client's payments have not both arrived this many blocks after the
/// swap was created, the server cancels both invoices (publication deadline). Derived so that
/// an offer with the default expiry still has [`MIN_BLOCKS_LEFT_AT_PUBLICATION`] left:
/// 80 - 32 = 48, less 4 blocks of slack = 44.
pub const LOOP_OUT_PUBLICATION_DEADLINE: u32 = DEFAULT_LOOP_OUT_EXPIRY_DELTA - MIN_BLOCKS_LEFT_AT_PUBLICATION - 4;

/// Seed 000's loop-out exchange (`POST /api/loop/out`): the CSV delay its client builds the
/// HTLC script with, so the server must use it too for the addresses to match. The seed's logs
/// print it as `28 OP_CHECKSEQUENCEVERIFY` — hex push data: `0x28` = 40 blocks (its scripts
/// carry `01 28 b2`; `eddy-core/tests/scripts.rs` rebuilds its worked example with 40).
pub const SEED_CSV_DELAY: u32 = 40;

/// Seed exchange: blocks the server assumes its HTLC needs to confirm after publication (it
/// publishes at its normal confirmation target). With a relative timeout the refund is
/// possible only `SEED_CSV_DELAY` blocks after the HTLC *confirms*, so — unlike Eddy's own
/// absolute-timeout HTLCs — the server's protection rests on this assumption: if the HTLC
/// took longer, the client could still claim after the server's held payment expired. Eddy's
/// own protocol (`POST /v1/loop-out`, absolute `E`) has no such gap.
pub const SEED_CONF_ALLOWANCE: u32 = SPEND_CONFIRM_BUDGET;

/// Seed exchange: the absolute height `E` the server's state machine works with, counted from
/// the swap's creation — the latest publication ([`LOOP_OUT_PUBLICATION_DEADLINE`]), plus the
/// confirmation allowance, plus the CSV delay: the refund is valid by then. 44 + 6 + 40 = 90.
/// Publishing at the deadline still leaves `6 + 40 = 46 ≥` [`MIN_BLOCKS_LEFT_AT_PUBLICATION`].
pub const SEED_LOOP_OUT_EXPIRY_DELTA: u32 = LOOP_OUT_PUBLICATION_DEADLINE + SEED_CONF_ALLOWANCE + SEED_CSV_DELAY;

/// Loop-out client: the swap invoice's final CLTV delta must be at least `(E - tip) +`
/// [`SERVER_SETTLE_MARGIN`] (else the server could not settle and the swap would fail after
/// the client revealed its preimage) and at most `(E - tip) + SERVER_SETTLE_MARGIN +
/// MAX_FINAL_CLTV_SLACK`, which bounds how long a dishonest server can freeze the payment.
pub const MAX_FINAL_CLTV_SLACK: u32 = 144;

/// Loop-in: the server's default `E - tip`. One day: enough to confirm the funding
/// ([`MAX_HTLC_CONFS`]), pay over Lightning with a normal CLTV budget and claim.
pub const DEFAULT_LOOP_IN_EXPIRY_DELTA: u32 = 144;

/// Loop-in paying anyone's invoice (Boltz's submarine swap): the CLTV budget its route is
/// planned with — two hops at ldk-node's default forwarding delta (144; LND's is 80, CLN's
/// 34, so four or more hops of those), the payee's final delta included. Longer would freeze
/// the server's liquidity longer for a payee who holds the payment. A client's own invoice (`/v1`) is one channel away; a
/// stranger's may be several nodes away, and the default loop-in's budget (about 120 blocks)
/// does not cover even one ldk-node hop and a final delta.
pub const PAYING_ROUTE_CLTV_BUDGET: u32 = 2 * 144;

/// Loop-in paying anyone's invoice: `E − tip` = the funding's confirmations
/// ([`MAX_HTLC_CONFS`]) and their confirmation budget ([`SPEND_CONFIRM_BUDGET`]), the route's
/// budget ([`PAYING_ROUTE_CLTV_BUDGET`]) and [`LOOP_IN_CLAIM_MARGIN`] after the payment's last
/// HTLC expires: 6 + 6 + 288 + 20 = 320 blocks, about two days (Boltz's submarine swaps use
/// about seven). The invoice's final delta is checked against the same budget.
pub const PAYING_LOOP_IN_EXPIRY_DELTA: u32 =
    MAX_HTLC_CONFS + SPEND_CONFIRM_BUDGET + PAYING_ROUTE_CLTV_BUDGET + LOOP_IN_CLAIM_MARGIN;

/// Loop-in server: its outgoing payment's HTLCs must all expire at least this many blocks
/// before `E`. The client can hold the payment until its HTLC's expiry and only then reveal the
/// preimage; the server then needs [`PREIMAGE_REVEAL_CUTOFF`] (20) blocks to get its claim
/// confirmed and buried before the client's timeout refund becomes valid at `E + 1`.
pub const LOOP_IN_CLAIM_MARGIN: u32 = PREIMAGE_REVEAL_CUTOFF;

/// Loop-in server: the smallest CLTV budget a Lightning payment needs (final CLTV delta of a
/// typical invoice, 18-40, plus per-hop deltas); the server does not start paying with less than
/// `LOOP_IN_CLAIM_MARGIN + MIN_PAYMENT_CLTV_BUDGET` blocks left.
pub const MIN_PAYMENT_CLTV_BUDGET: u32 = 40;

/// Loop-in client: the smallest `E - tip` it accepts. The funding must confirm
/// ([`SPEND_CONFIRM_BUDGET`] + [`MAX_HTLC_CONFS`]), then the server needs its payment budget
/// and claim margin: 6 + 6 + 40 + 20 = 72.
pub const MIN_LOOP_IN_EXPIRY_DELTA: u32 =
    SPEND_CONFIRM_BUDGET + MAX_HTLC_CONFS + MIN_PAYMENT_CLTV_BUDGET + LOOP_IN_CLAIM_MARGIN;

/// Loop-in client: the largest `E - tip` it accepts. The timeout refund is the fallback when the
/// server disappears; one week (1008 blocks) is the longest a user should wait for it.
pub const MAX_LOOP_IN_EXPIRY_DELTA: u32 = 1008;

/// Loop-in: the last payment height — from this height on, the server never sends (or re-sends)
/// the payment of the client's invoice, on any path: it pays only while `tip <` this. At `tip =
/// E − 60` a payment sent would have at most [`MIN_PAYMENT_CLTV_BUDGET`] blocks of route CLTV
/// before [`loop_in_max_payment_cltv`]; below that a typical route no longer fits.
pub fn loop_in_last_payment_height(expiry: BlockHeight) -> BlockHeight {
    expiry.saturating_sub(LOOP_IN_CLAIM_MARGIN + MIN_PAYMENT_CLTV_BUDGET)
}

/// Loop-in server: how many times it sends the client's payment before declaring the swap
/// failed. A send fails at once, nothing sent, when no route exists at that moment; the common
/// case is a channel that is still being re-established after either node restarted, which a
/// few attempts a few seconds apart ride out. Each attempt re-sends a hash whose previous
/// attempt failed for good, so none can pay twice, and every attempt starts before
/// [`loop_in_last_payment_height`]. The price: a swap that cannot be paid becomes refundable
/// `(LOOP_IN_PAY_ATTEMPTS − 1) ×` [`LOOP_IN_PAY_RETRY_SECS`] seconds later (no block later).
pub const LOOP_IN_PAY_ATTEMPTS: u32 = 3;

/// Loop-in server: seconds between a failed payment attempt and the next.
pub const LOOP_IN_PAY_RETRY_SECS: u64 = 3;

/// Loop-in: the highest absolute CLTV expiry the server's outgoing HTLCs may carry.
pub fn loop_in_max_payment_cltv(expiry: BlockHeight) -> BlockHeight {
    expiry.saturating_sub(LOOP_IN_CLAIM_MARGIN)
}

/// Loop-out: the last height at which the client may reveal the preimage.
pub fn loop_out_last_reveal_height(expiry: BlockHeight) -> BlockHeight {
    expiry.saturating_sub(PREIMAGE_REVEAL_CUTOFF)
}

// --- client side (issue 12) ---

/// Loop-out client: CLTV blocks allowed for the hops of the route to the server's node, on top
/// of the swap invoice's final CLTV (itself at most `(E − tip) +` [`SERVER_SETTLE_MARGIN`] `+`
/// [`MAX_FINAL_CLTV_SLACK`]). Route hints are the server's to write, so without this bound a hint
/// with a huge `cltv_expiry_delta` would lock the client's payment (and channel liquidity) far
/// past `E`. 144 blocks = 3 hops at LND's default delta of 40 plus slack (LDK's default
/// channel delta is 72: 2 such hops). LDK's router also keeps `2 × MEDIAN_HOP_CLTV_EXPIRY_DELTA`
/// (2 × 40 = 80 blocks) of the route's `max_total_cltv_expiry_delta` in reserve for the shadow
/// route it adds for privacy, so the route budget the client grants,
/// `E + 15 + 144 + 144 − tip`, leaves `144 − 80 = 64` blocks for real hops at the worst — a
/// direct channel to the server (no hop delta) or a hop or two; and the whole lock stays
/// within LDK's 1008-block route cap: 288 + 15 + 144 + 144 = 591.
pub const LOOP_OUT_ROUTE_CLTV_ALLOWANCE: u32 = 144;

/// Loop-out client: the highest absolute height any HTLC of the client's payments (swap and
/// prepay) may expire at: `E +` [`SERVER_SETTLE_MARGIN`] `+` [`MAX_FINAL_CLTV_SLACK`] `+`
/// [`LOOP_OUT_ROUTE_CLTV_ALLOWANCE`]. Every payment is sent with
/// `max_total_cltv_delta = this − tip` ([`loop_out_max_payment_cltv_delta`]), and an offer whose
/// invoice (final CLTV plus its route hints alone) exceeds it is refused before paying.
pub fn loop_out_max_payment_cltv(expiry: BlockHeight) -> BlockHeight {
    expiry
        .saturating_add(SERVER_SETTLE_MARGIN + MAX_FINAL_CLTV_SLACK)
        .saturating_add(LOOP_OUT_ROUTE_CLTV_ALLOWANCE)
}

/// Loop-out client: the route CLTV limit of a payment sent at `tip` (see
/// [`loop_out_max_payment_cltv`]); `None` when no payment may be sent any more (never a limit of
/// 0, which some nodes read as "no limit").
pub fn loop_out_max_payment_cltv_delta(expiry: BlockHeight, tip: BlockHeight) -> Option<u32> {
    Some(loop_out_max_payment_cltv(expiry).saturating_sub(tip)).filter(|d| *d > 0)
}

/// Loop-in client: outputs paying the HTLC address below this value (sat) are neither refunded
/// nor waited for. A timeout refund of one output is about 140 vB (1 sat/vB at least) and its
/// output must stay above the destination's dust limit (330 sat for P2TR): 470 sat would be
/// all it could recover at best, so anything under 1,000 sat is a stranger's dust, which must
/// not keep a swap open forever.
pub const LOOP_IN_MIN_REFUND_SAT: u64 = 1_000;

/// Client engines: seconds any one call to the swap server may take before the engine gives up
/// on it for this pass (every server call is best effort and retried at the next pass). Swap
/// steps run concurrently, so a slow server delays only its own swap's step, and by at most
/// this long per call; the next block's pass (≈ 600 s on mainnet, never less than a few seconds
/// on the devnet) is never starved. 10 s is three times the slowest co-signing round trip
/// measured on the devnet under load.
pub const SERVER_CALL_TIMEOUT_SECS: u64 = 10;

/// Loop-in: confirmations the funding output needs before the server pays for it (and before
/// [`crate::validate::loop_in_server_output`] counts it as the server's). One: the server's
/// payment is safe against a double-spend of the funding only once it is in a block, and more
/// would spend the payment budget ([`MIN_LOOP_IN_EXPIRY_DELTA`] counts up to
/// [`MAX_HTLC_CONFS`]).
pub const LOOP_IN_SERVER_FUNDING_CONFS: u32 = 1;

/// Loop-in client: blocks before `E` under which its wallet no longer funds a stored swap. A
/// funding broadcast at tip `t` confirms by `t +` [`SPEND_CONFIRM_BUDGET`], reaches the
/// server's confirmations (at most [`MAX_HTLC_CONFS`] counted) and must then still leave the
/// server its payment budget and claim margin ([`loop_in_last_payment_height`] is
/// `E − LOOP_IN_CLAIM_MARGIN − MIN_PAYMENT_CLTV_BUDGET`): 6 + 6 + 40 + 20 = 72, the same budget
/// as [`MIN_LOOP_IN_EXPIRY_DELTA`], so any accepted offer may be funded at once, and a swap
/// stored but not funded in time (a daemon down, a wallet error) fails as never funded instead
/// of funding an HTLC the server can no longer pay for.
pub const LOOP_IN_FUNDING_CUTOFF: u32 =
    SPEND_CONFIRM_BUDGET + MAX_HTLC_CONFS + MIN_PAYMENT_CLTV_BUDGET + LOOP_IN_CLAIM_MARGIN;

/// Loop-in client: the last tip at which its wallet may fund a swap expiring at `E`
/// (`E −` [`LOOP_IN_FUNDING_CUTOFF`]).
pub fn loop_in_last_funding_height(expiry: BlockHeight) -> BlockHeight {
    expiry.saturating_sub(LOOP_IN_FUNDING_CUTOFF)
}

// --- server side (issue 12) ---

/// Loop-out server: lifetime (seconds) of an offer's hold invoices. An offer reserves no slot
/// and no on-chain liquidity until its swap invoice is paid (held), so an unpaid offer must
/// stop being payable soon: ten minutes covers a client that validates the offer and pays at
/// once (the client refuses an invoice with less than a minute left,
/// `validate::MIN_INVOICE_REMAINING_SECS`), and bounds how long a flood of unpaid offers can
/// occupy the unpaid-offer budget ([`UNPAID_OFFERS_PER_SLOT`]).
pub const LOOP_OUT_OFFER_EXPIRY_SECS: u32 = 600;

/// Loop-out server: live (not yet expired, see [`LOOP_OUT_OFFER_EXPIRY_SECS`]) unpaid offers
/// allowed per `max_active_swaps` slot. Unpaid offers hold no slot and no liquidity, but each is
/// two hold invoices on the node; four per slot leaves room for honest clients racing for the
/// same slots while bounding what a flood from many addresses can make the node keep.
pub const UNPAID_OFFERS_PER_SLOT: usize = 4;

/// Loop-out server: blocks an HTLC publication may sit unconfirmed in the mempool before it is
/// replaced (BIP125, from the swap wallet's change) at the current estimate. The publication
/// must confirm within [`SPEND_CONFIRM_BUDGET`] (6) for the client to keep its claim window
/// ([`MIN_BLOCKS_LEFT_AT_PUBLICATION`]); re-estimating every 2 blocks gives it three chances
/// inside that budget. A publication missing from the mempool (evicted, or refused for its
/// fee) is re-broadcast, and replaced at once if refused, at every pass.
pub const HTLC_PUBLICATION_BUMP_BLOCKS: u32 = 2;

/// Loop-in server: cooperative (key-path) claim sessions a client may open per swap and block
/// (`GET /v1/swaps/{id}/claim`). Each co-signed claim is a replacement paying at least the
/// script-path schedule's next rate (`fees::next_sweep_fee_rate` from the previous claim), so
/// co-signing can only make the claim escalate faster; the bound keeps one client from making
/// the server build, sign and broadcast replacements without end inside one block. Two allow a
/// retry after a lost answer.
pub const LOOP_IN_COOP_CLAIMS_PER_BLOCK: u32 = 2;

/// Loop-in server: a claim with this many blocks or fewer left before `E` waits for nothing —
/// no batch window, no block for the clients' co-signatures: its batch is built on the script
/// paths and broadcast in the pass. [`LOOP_IN_CLAIM_MARGIN`] is the whole budget a claim has to
/// confirm and be buried before the client's timeout refund (a client may settle its payment
/// as late as `E −` that margin); the one block more is the co-signing block a batch above it
/// may wait, so no wait ever reaches into the margin: 20 + 1 = 21.
pub const LOOP_IN_CLAIM_NO_WAIT_BLOCKS: u32 = LOOP_IN_CLAIM_MARGIN + 1;

/// Loop-in server: the claim batch window ends for every claim waiting in it once one of them
/// has this many blocks or fewer left before `E`: the batch then built still has its co-signing
/// block before [`LOOP_IN_CLAIM_NO_WAIT_BLOCKS`]: 21 + 1 = 22.
pub const LOOP_IN_CLAIM_WINDOW_FORCE_BLOCKS: u32 = LOOP_IN_CLAIM_NO_WAIT_BLOCKS + 1;

// --- server HTTP side (issue 12, review) ---

/// Loop-out server: live unpaid offers (normal and seed protocol together) one client (an IPv4
/// address, an IPv6 /64) may hold at once, on top of the global budget
/// ([`UNPAID_OFFERS_PER_SLOT`]). An honest client makes one offer and pays it at once (a retry
/// after a failed payment is a second): three leaves room for that and a parallel swap, while
/// one address can take at most this many of the global budget for
/// [`LOOP_OUT_OFFER_EXPIRY_SECS`] — fewer than even a one-slot server's budget.
pub const UNPAID_OFFERS_PER_CLIENT: usize = 3;

/// Loop-out server: live unpaid seed-protocol offers allowed per `max_active_swaps` slot, a
/// budget of their own (they do not count against [`UNPAID_OFFERS_PER_SLOT`]): that protocol
/// has no prepay, so its offers cost their makers nothing at all; one per slot keeps a seed
/// flood from ever touching the budget of prepaid offers.
pub const SEED_UNPAID_OFFERS_PER_SLOT: usize = 1;

/// Loop-out server: the share (percent, rounded up, at least one) of `max_active_swaps` that
/// Boltz API v2 reverse swaps may hold, paid or live unpaid together. They have no prepay, so a
/// maker who pays and never claims costs the server a lockup and a refund fee and holds a slot
/// until `E` for nothing; counting the live unpaid ones too bounds the paid ones strictly (a
/// creation needs room), so a flood of them never takes the slots of prepaid swaps. Boltz
/// submarine swaps (loop-ins paying anyone's invoice) hold at most the same share, funded or
/// live unfunded: their payee can hold the payment for the whole route budget.
pub const BOLTZ_SLOT_SHARE_PERCENT: usize = 25;

/// Loop-in server: blocks an unfunded loop-in offer counts as live against the unfunded-offer
/// budgets ([`UNFUNDED_LOOP_IN_OFFERS_PER_SLOT`], [`UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT`]). An
/// honest client funds the HTLC as soon as it has the offer (its funding is in the mempool
/// within seconds); six blocks (about an hour, [`SPEND_CONFIRM_BUDGET`]) covers a client whose
/// funding transaction waits for its own wallet. Older unfunded offers no longer count, so a
/// flood holds the budget for at most this long.
pub const LOOP_IN_UNFUNDED_OFFER_BLOCKS: u32 = SPEND_CONFIRM_BUDGET;

/// Loop-in server: live unfunded loop-in offers (see [`LOOP_IN_UNFUNDED_OFFER_BLOCKS`]) per
/// `max_active_swaps` slot. An unfunded offer holds no slot (it costs its maker nothing), but it
/// is a stored, watched swap scanned every pass: four per slot, like [`UNPAID_OFFERS_PER_SLOT`].
pub const UNFUNDED_LOOP_IN_OFFERS_PER_SLOT: usize = 4;

/// Loop-in server: live unfunded loop-in offers one client (an IPv4 address, an IPv6 /64) may
/// hold at once, like [`UNPAID_OFFERS_PER_CLIENT`].
pub const UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT: usize = 3;

// --- LND (issue 18) ---

/// Loop-out server: blocks of slack its hold invoices' final CLTV delta carries on top of what
/// the hold needs (`(E − tip) +` [`SERVER_SETTLE_MARGIN`] `+` the node's settle deadline delta
/// for the swap invoice): a payer's route may deliver the HTLC a block or two after the tip the
/// server counted from.
pub const LOOP_OUT_FINAL_CLTV_SLACK: u32 = 3;

/// Loop-out server: the largest settle deadline delta its Lightning node may have (blocks
/// before a held HTLC's expiry at which the node fails it back: LDK's 39; LND's
/// `invoices.holdexpirydelta`, 12 up to v0.20, 18 from v0.21, or whatever lnd.conf sets).
/// The server asks the swap invoice's final CLTV `(E − tip) + SERVER_SETTLE_MARGIN + delta +`
/// [`LOOP_OUT_FINAL_CLTV_SLACK`]; the client refuses more than `(E − tip) + SERVER_SETTLE_MARGIN
/// +` [`MAX_FINAL_CLTV_SLACK`] (`validate::validate_loop_out_offer`), so `delta + 3 ≤ 144`:
/// 141. The client's other bounds are looser: the route bound ([`loop_out_max_payment_cltv`],
/// `(E − tip) + 15 + 144 + 144`) admits the swap invoice up to `delta ≤ 285` (less its route
/// hints) and the prepay (final `(E − tip) −` [`MIN_BLOCKS_LEFT_AT_PUBLICATION`] `+`
/// [`SETTLE_LATENCY`] `+ delta + 3`) up to `delta ≤ 329`. A node with a larger delta would have
/// every offer refused by every client: the server refuses to start on it instead.
pub const MAX_SETTLE_DEADLINE_DELTA: u32 = MAX_FINAL_CLTV_SLACK - LOOP_OUT_FINAL_CLTV_SLACK;

/// LND's default `--max-cltv-expiry` (`htlcswitch.DefaultMaxOutgoingCltvExpiry`): the largest
/// `cltv_limit` LND accepts for a payment ("total time lock of … exceeds max allowed …"). A
/// payment's limit is clamped to the node's value, or to this when the node does not tell:
/// a smaller limit is always safe.
pub const LND_DEFAULT_MAX_CLTV_EXPIRY: u32 = 2016;

/// LND's `routing.BlockPadding` (`routing/router.go`): LND refuses a payment whose
/// `cltv_limit` is not above the invoice's final CLTV delta plus this ("cltv limit … should be
/// greater than …"), so such a payment is refused before it is sent.
pub const LND_BLOCK_PADDING: u32 = 3;

/// LND client: seconds between two rebuilds of the gRPC connection (which re-read the TLS
/// certificate and macaroon files) after calls that could not connect. LND replaces its
/// certificate only when it restarts; one rebuild per 5 s follows that at once while a node
/// that is simply down is not hammered with file reads and handshakes by every caller.
pub const LND_RECONNECT_MIN_INTERVAL_SECS: u64 = 5;

/// LND client: seconds `SendPaymentV2` may take to answer a started payment with its first
/// update before the client stops waiting and lets the node's payment record
/// (`TrackPaymentV2`) decide. LND sends the current state as soon as the payment is
/// registered; 10 s equals [`SERVER_CALL_TIMEOUT_SECS`], so a slow node delays one swap step
/// by at most that long, and nothing is lost by giving up (the record is re-read every pass).
pub const LND_SEND_FIRST_UPDATE_SECS: u64 = SERVER_CALL_TIMEOUT_SECS;

/// LND client: the longest any single call to LND may take (a unary call, or the response
/// headers of a streaming one) before it is abandoned as transient. Without it one half-open
/// connection would stall every swap the engine steps in turn, including refunds and claims
/// that do not need LND; 30 s is far above LND's answer times and far below a block.
pub const LND_CALL_TIMEOUT_SECS: u64 = 30;

/// LND client: HTTP/2 keep-alive ping interval (and timeout) on the gRPC connection, so a
/// connection that died silently (NAT timeout, host gone) is noticed within 40 s and rebuilt.
pub const LND_KEEPALIVE_SECS: u64 = 30;

/// LND client: seconds between two re-reads of the node's settings (`GetDebugInfo`: the hold
/// expiry delta and `max-cltv-expiry`; `GetInfo`: the version). An LND upgrade (0.20 → 0.21
/// moves the default delta from 12 to 18) or an edited `lnd.conf` needs a restart of LND, which
/// Eddy rides out without restarting itself: it must not keep a stale delta for longer than a
/// minute (a block takes ten).
pub const LND_SETTINGS_REFRESH_SECS: u64 = 60;

/// LND's `DefaultIncomingBroadcastDelta` up to v0.20 (`lncfg/config.go`): from
/// `expiry − this` on, settling an incoming HTLC makes LND go on-chain for it.
pub const LND_INCOMING_BROADCAST_DELTA_BEFORE_0_21: u32 = 10;

/// LND's `DefaultIncomingBroadcastDelta` from v0.21 (PR #10331 raised it to 16).
pub const LND_INCOMING_BROADCAST_DELTA_FROM_0_21: u32 = 16;

/// LND client: Eddy settles a held HTLC no later than `expiry − (incoming broadcast delta +
/// this)` even when the node's `invoices.holdexpirydelta` is set lower — LND's own default keeps
/// the same 2 blocks (`DefaultHoldInvoiceExpiryDelta = incoming broadcast delta + 2`); settling
/// later would make LND force-close and claim on-chain with almost no blocks left.
pub const LND_HOLD_SETTLE_MIN_MARGIN: u32 = 2;

/// Server watchdog: the Lightning node counts as not following the chain when its best block
/// is at least this many blocks behind the chain source's tip. A node is routinely one block
/// behind for a moment after a block arrives; two is a node that stopped.
pub const NODE_LAG_BLOCKS: u32 = 2;

/// Server watchdog: how long the node may lag ([`NODE_LAG_BLOCKS`]) or be unreachable before
/// the server stops taking new swaps (a node catching up after a burst of blocks takes
/// seconds; a minute is far inside any swap's margins, which count blocks).
pub const NODE_LAG_GRACE_SECS: u64 = 60;

/// Server watchdog: how long the node may stay that way before the server exits non-zero for
/// its supervisor to restart it (with the embedded node, the restart restarts the node); ten
/// minutes is about one block — well inside every swap margin.
pub const NODE_LAG_EXIT_SECS: u64 = 600;

/// Loop-in server: seconds after a send whose outcome is unknown (the node may have received
/// it: a transport error, a timeout) during which the node's payment record is not taken as
/// "nothing sent". LND registers a payment as soon as it has read and checked the request
/// (`InitPayment` at the start of `SendPaymentV2`); until then `TrackPaymentV2` answers
/// `NotFound`, or shows the previous attempt's failed record. 60 s covers a slow node many
/// times over; the swap stays `Paying` meanwhile (nothing is counted as a failed attempt, no
/// refund is co-signed), and a re-send is harmless (LND refuses a second payment of a hash in
/// flight or paid).
pub const LOOP_IN_SEND_OUTCOME_GRACE_SECS: u64 = 60;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_hold() {
        assert_eq!(PREIMAGE_REVEAL_CUTOFF, 20);
        assert_eq!(SERVER_SETTLE_MARGIN, 15);
        assert_eq!(MIN_LOOP_OUT_EXPIRY_DELTA, 38);
        assert_eq!(MIN_BLOCKS_LEFT_AT_PUBLICATION, 32);
        assert_eq!(LOOP_OUT_PUBLICATION_DEADLINE, 44);
        assert_eq!(MIN_LOOP_IN_EXPIRY_DELTA, 72);
        // The default loop-out expiry is inside the client's window, with room for the
        // publication deadline to pass and still publish.
        const {
            assert!(DEFAULT_LOOP_OUT_EXPIRY_DELTA >= MIN_LOOP_OUT_EXPIRY_DELTA);
            assert!(DEFAULT_LOOP_OUT_EXPIRY_DELTA <= MAX_LOOP_OUT_EXPIRY_DELTA);
            assert!(DEFAULT_LOOP_OUT_EXPIRY_DELTA - LOOP_OUT_PUBLICATION_DEADLINE >= MIN_BLOCKS_LEFT_AT_PUBLICATION);
            // The HTLC confirms, the client waits for its confirmations, and is still above
            // the reveal cutoff.
            assert!(MIN_BLOCKS_LEFT_AT_PUBLICATION >= SPEND_CONFIRM_BUDGET + MAX_HTLC_CONFS + PREIMAGE_REVEAL_CUTOFF);
            assert!(DEFAULT_LOOP_IN_EXPIRY_DELTA >= MIN_LOOP_IN_EXPIRY_DELTA);
            assert!(DEFAULT_LOOP_IN_EXPIRY_DELTA <= MAX_LOOP_IN_EXPIRY_DELTA);
            // Urgency begins after the reveal cutoff and before E.
            assert!(CLAIM_URGENCY_BLOCKS > 0 && CLAIM_URGENCY_BLOCKS < PREIMAGE_REVEAL_CUTOFF);
            // Loop-out payment lock stays within LDK's 1008-block route CLTV cap.
            assert!(MAX_LOOP_OUT_EXPIRY_DELTA + SERVER_SETTLE_MARGIN + MAX_FINAL_CLTV_SLACK <= 1008);
        }
        assert_eq!(SEED_LOOP_OUT_EXPIRY_DELTA, 90);
        const {
            assert!(SEED_LOOP_OUT_EXPIRY_DELTA - LOOP_OUT_PUBLICATION_DEADLINE >= MIN_BLOCKS_LEFT_AT_PUBLICATION);
            assert!(SEED_LOOP_OUT_EXPIRY_DELTA <= MAX_LOOP_OUT_EXPIRY_DELTA);
        }
        assert_eq!(loop_in_max_payment_cltv(1000), 980);
        // Server HTTP side (issue 12, review): one client never holds the whole offer budget
        // of even a one-slot server, and an unfunded loop-in stops counting long before E.
        const {
            assert!(UNPAID_OFFERS_PER_CLIENT < UNPAID_OFFERS_PER_SLOT);
            assert!(UNFUNDED_LOOP_IN_OFFERS_PER_CLIENT < UNFUNDED_LOOP_IN_OFFERS_PER_SLOT);
            assert!(LOOP_IN_UNFUNDED_OFFER_BLOCKS < MIN_LOOP_IN_EXPIRY_DELTA);
        }
        assert_eq!(loop_in_last_payment_height(1000), 940);
        assert_eq!(loop_out_last_reveal_height(100), 80);
        // Client side (issue 12): the whole route of a loop-out payment stays inside LDK's
        // 1008-block cap even at the widest expiry window, and a payment can still be routed
        // through a few hops after the longest final CLTV the client accepts.
        const {
            assert!(
                MAX_LOOP_OUT_EXPIRY_DELTA + SERVER_SETTLE_MARGIN + MAX_FINAL_CLTV_SLACK + LOOP_OUT_ROUTE_CLTV_ALLOWANCE
                    <= 1008
            );
            assert!(LOOP_OUT_ROUTE_CLTV_ALLOWANCE >= 72);
            // LDK's router keeps 2 × MEDIAN_HOP_CLTV_EXPIRY_DELTA (80) of the route budget in
            // reserve; what is left still takes one hop at LND's default delta (40).
            assert!(LOOP_OUT_ROUTE_CLTV_ALLOWANCE >= 2 * 40 + 40);
            assert!(SERVER_CALL_TIMEOUT_SECS * 3 < 60);
        }
        assert_eq!(loop_out_max_payment_cltv(1000), 1303);
        assert_eq!(loop_out_max_payment_cltv_delta(1000, 1000), Some(303));
        assert_eq!(loop_out_max_payment_cltv_delta(1000, 1303), None);
        // Client side (issue 12, review): an accepted loop-in offer can be funded at once, and
        // a funding at the cutoff still confirms with the server's budget left; a loop-out
        // client pays only with MIN_LOOP_OUT_EXPIRY_DELTA blocks left (an offer accepted at the
        // minimum window can be paid at once).
        assert_eq!(LOOP_IN_FUNDING_CUTOFF, MIN_LOOP_IN_EXPIRY_DELTA);
        assert_eq!(loop_in_last_funding_height(1000), 928);
        // A paying loop-in's payment gets its whole route budget when paid at once.
        assert_eq!(PAYING_LOOP_IN_EXPIRY_DELTA, 320);
        assert_eq!(
            loop_in_max_payment_cltv(1000 + PAYING_LOOP_IN_EXPIRY_DELTA) - 1000 - MAX_HTLC_CONFS - SPEND_CONFIRM_BUDGET,
            PAYING_ROUTE_CLTV_BUDGET
        );
        const {
            assert!(
                LOOP_IN_FUNDING_CUTOFF
                    >= SPEND_CONFIRM_BUDGET + MAX_HTLC_CONFS + LOOP_IN_CLAIM_MARGIN + MIN_PAYMENT_CLTV_BUDGET
            );
            assert!(LOOP_IN_SERVER_FUNDING_CONFS >= 1 && LOOP_IN_SERVER_FUNDING_CONFS <= MAX_HTLC_CONFS);
        }
        // LND (issue 18): the largest settle deadline delta a loop-out server's node may have
        // keeps its swap invoice inside what clients accept, with LDK's (39) and LND's defaults
        // (12 up to v0.20, 18 from v0.21) well inside; the prepay and the route bound are looser.
        assert_eq!(MAX_SETTLE_DEADLINE_DELTA, 141);
        const {
            assert!(
                SERVER_SETTLE_MARGIN + MAX_SETTLE_DEADLINE_DELTA + LOOP_OUT_FINAL_CLTV_SLACK
                    <= SERVER_SETTLE_MARGIN + MAX_FINAL_CLTV_SLACK
            );
            assert!(39 <= MAX_SETTLE_DEADLINE_DELTA && 18 <= MAX_SETTLE_DEADLINE_DELTA);
            // Swap invoice under the client's route bound (E − tip cancels out).
            assert!(
                SERVER_SETTLE_MARGIN + MAX_SETTLE_DEADLINE_DELTA + LOOP_OUT_FINAL_CLTV_SLACK
                    <= SERVER_SETTLE_MARGIN + MAX_FINAL_CLTV_SLACK + LOOP_OUT_ROUTE_CLTV_ALLOWANCE
            );
            // Prepay: (E − tip) − 32 + 3 + delta + 3 under (E − tip) + 303.
            assert!(
                SETTLE_LATENCY + MAX_SETTLE_DEADLINE_DELTA + LOOP_OUT_FINAL_CLTV_SLACK
                    <= MIN_BLOCKS_LEFT_AT_PUBLICATION
                        + SERVER_SETTLE_MARGIN
                        + MAX_FINAL_CLTV_SLACK
                        + LOOP_OUT_ROUTE_CLTV_ALLOWANCE
            );
            // The whole payment lock at the widest window stays inside LDK's 1008-block cap.
            assert!(
                MAX_LOOP_OUT_EXPIRY_DELTA
                    + SERVER_SETTLE_MARGIN
                    + MAX_SETTLE_DEADLINE_DELTA
                    + LOOP_OUT_FINAL_CLTV_SLACK
                    <= 1008
            );
            assert!(LND_SEND_FIRST_UPDATE_SECS > 0 && LND_RECONNECT_MIN_INTERVAL_SECS > 0);
            // A stalled call is given up long before a block, and the settings are re-read
            // well within one.
            assert!(LND_CALL_TIMEOUT_SECS < 600 && LND_SETTINGS_REFRESH_SECS < 600);
            assert!(LND_SEND_FIRST_UPDATE_SECS <= LND_CALL_TIMEOUT_SECS);
            // LND's defaults are exactly the minimum settle margin over its broadcast delta.
            assert!(LND_INCOMING_BROADCAST_DELTA_BEFORE_0_21 + LND_HOLD_SETTLE_MIN_MARGIN == 12);
            assert!(LND_INCOMING_BROADCAST_DELTA_FROM_0_21 + LND_HOLD_SETTLE_MIN_MARGIN == 18);
            assert!(LND_INCOMING_BROADCAST_DELTA_FROM_0_21 + LND_HOLD_SETTLE_MIN_MARGIN <= MAX_SETTLE_DEADLINE_DELTA);
            // An unknown send outcome is resolved within minutes: well inside the payment
            // window (a block is ~600 s; the last payment height leaves 60 blocks).
            assert!(LOOP_IN_SEND_OUTCOME_GRACE_SECS >= 2 * LND_CALL_TIMEOUT_SECS);
            assert!(LOOP_IN_SEND_OUTCOME_GRACE_SECS < 600);
        }
    }
}
