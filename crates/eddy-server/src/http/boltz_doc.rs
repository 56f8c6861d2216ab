//! The OpenAPI description of Boltz API v2's front door (`/v2`): the shapes of its bodies as
//! schemas (the handlers build them with `serde_json`, from `eddy_core::boltz`; a test checks
//! the fields they send are the ones described), and the `/v2` operations, merged into the
//! server's document at `GET /v1/openapi.json` so that the API fuzz test covers them too.

#![allow(dead_code)]

use utoipa::{IntoParams, OpenApi, ToSchema};

/// A Boltz swap id in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct BoltzIdPath {
    /// The id the creation answered: 12 letters and digits.
    #[param(pattern = "^[0-9a-zA-Z]{12}$")]
    id: String,
}

/// A txid in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct TxidPath {
    /// The txid, 32 bytes hex.
    #[param(pattern = "^[0-9a-fA-F]{64}$")]
    id: String,
}

/// One Lightning node.
#[derive(ToSchema)]
pub(super) struct Node {
    /// Its id, compressed public key hex.
    #[schema(rename = "publicKey", pattern = "^0[23][0-9a-f]{64}$")]
    public_key: String,
    /// Where it listens (none announced).
    uris: Vec<String>,
}

/// `GET /v2/nodes`: the server's node by asset and implementation (`LDK` or `LND`).
#[derive(ToSchema)]
pub(super) struct Nodes {
    #[schema(rename = "BTC")]
    btc: std::collections::BTreeMap<String, Node>,
}

/// `POST /v2/chain/BTC/transaction`.
#[derive(ToSchema)]
pub(super) struct BroadcastRequest {
    /// The transaction, hex.
    #[schema(pattern = "^([0-9a-fA-F]{2})+$")]
    hex: String,
}

/// `POST /v2/chain/BTC/transaction`'s answer.
#[derive(ToSchema)]
pub(super) struct BroadcastAnswer {
    /// Its txid.
    id: String,
}

/// `GET /v2/chain/BTC/transaction/{id}`.
#[derive(ToSchema)]
pub(super) struct ChainTransaction {
    /// The transaction, hex.
    hex: String,
    /// Confirmations, once confirmed.
    confirmations: Option<u32>,
}

/// Amount limits of a pair, on the invoice amount (sat).
#[derive(ToSchema)]
pub(super) struct ReverseLimits {
    /// Largest invoice amount.
    maximal: u64,
    /// Smallest invoice amount.
    minimal: u64,
}

/// A reverse pair's fixed fees (sat).
#[derive(ToSchema)]
pub(super) struct ReverseMinerFees {
    /// What the client's key-path claim costs at the estimate (its own to pay).
    claim: u64,
    /// The server's fixed fee.
    lockup: u64,
}

/// A reverse pair's fees.
#[derive(ToSchema)]
pub(super) struct ReverseFees {
    /// The proportional fee, in percent of the invoice amount.
    percentage: f64,
    /// Fixed fees.
    #[schema(rename = "minerFees")]
    miner_fees: ReverseMinerFees,
}

/// The BTC/BTC reverse pair.
#[derive(ToSchema)]
pub(super) struct ReversePair {
    /// SHA-256 of the pair's terms; a creation naming another is refused.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    hash: String,
    /// Always 1.
    rate: u64,
    /// Limits.
    limits: ReverseLimits,
    /// Fees.
    fees: ReverseFees,
}

/// Reverse pairs by receiving asset.
#[derive(ToSchema)]
pub(super) struct ReversePairsTo {
    #[schema(rename = "BTC")]
    btc: ReversePair,
}

/// `GET /v2/swap/reverse`: pairs by sending asset.
#[derive(ToSchema)]
pub(super) struct ReversePairs {
    #[schema(rename = "BTC")]
    btc: ReversePairsTo,
}

/// `POST /v2/swap/reverse`.
#[derive(ToSchema)]
pub(super) struct ReverseCreate {
    /// `BTC`.
    from: String,
    /// `BTC`.
    to: String,
    /// SHA-256 of the client's preimage, 32 bytes hex.
    #[schema(rename = "preimageHash", pattern = "^[0-9a-fA-F]{64}$")]
    preimage_hash: String,
    /// The client's claim key, compressed public key hex.
    #[schema(rename = "claimPublicKey", pattern = "^0[23][0-9a-fA-F]{64}$")]
    claim_public_key: String,
    /// The invoice amount (sat); exactly one of it and `onchainAmount`.
    #[schema(rename = "invoiceAmount")]
    invoice_amount: Option<u64>,
    /// The amount locked on chain (sat).
    #[schema(rename = "onchainAmount")]
    onchain_amount: Option<u64>,
    /// The pair's `hash` as read.
    #[schema(rename = "pairHash")]
    pair_hash: Option<String>,
    /// The invoice's description (at most 256 bytes, no control characters).
    description: Option<String>,
    /// Ignored.
    #[schema(rename = "referralId")]
    referral_id: Option<String>,
}

/// One leaf of a swap tree.
#[derive(ToSchema)]
pub(super) struct TreeLeaf {
    /// Tapscript leaf version (192).
    version: u8,
    /// The leaf's script, hex.
    #[schema(pattern = "^[0-9a-f]+$")]
    output: String,
}

/// A swap tree.
#[derive(ToSchema)]
pub(super) struct SwapTree {
    /// The claim leaf.
    #[schema(rename = "claimLeaf")]
    claim_leaf: TreeLeaf,
    /// The refund leaf.
    #[schema(rename = "refundLeaf")]
    refund_leaf: TreeLeaf,
}

/// `POST /v2/swap/reverse`'s answer.
#[derive(ToSchema)]
pub(super) struct ReverseCreated {
    /// The swap's id on this door.
    #[schema(pattern = "^[0-9a-zA-Z]{12}$")]
    id: String,
    /// The hold invoice to pay (BOLT11).
    invoice: String,
    /// The HTLC's tree.
    #[schema(rename = "swapTree")]
    swap_tree: SwapTree,
    /// The HTLC's address.
    #[schema(rename = "lockupAddress")]
    lockup_address: String,
    /// The server's key, compressed public key hex.
    #[schema(rename = "refundPublicKey", pattern = "^0[23][0-9a-f]{64}$")]
    refund_public_key: String,
    /// The HTLC's timeout height.
    #[schema(rename = "timeoutBlockHeight")]
    timeout_block_height: u32,
    /// The amount locked on chain, when the request named the invoice amount.
    #[schema(rename = "onchainAmount")]
    onchain_amount: Option<u64>,
}

/// A transaction in a status.
#[derive(ToSchema)]
pub(super) struct StatusTransaction {
    /// Its txid.
    id: String,
    /// The transaction, hex (a submarine swap's: once the server recorded the lockup).
    hex: Option<String>,
}

/// What a failed lockup held.
#[derive(ToSchema)]
pub(super) struct FailureDetails {
    /// The amount expected (sat).
    expected: u64,
    /// The amount locked (sat).
    actual: u64,
}

/// `GET /v2/swap/{id}`.
#[derive(ToSchema)]
pub(super) struct BoltzStatus {
    /// Boltz's status name (`swap.created`, `invoice.set`, `transaction.mempool`, …).
    status: String,
    /// The lockup transaction, while in the mempool or confirmed.
    transaction: Option<StatusTransaction>,
    /// Why a failed swap failed.
    #[schema(rename = "failureReason")]
    failure_reason: Option<String>,
    /// A wrong lockup's amounts.
    #[schema(rename = "failureDetails")]
    failure_details: Option<FailureDetails>,
}

/// A lockup transaction.
#[derive(ToSchema)]
pub(super) struct LockupTransaction {
    /// Its txid.
    id: String,
    /// The transaction, hex.
    hex: String,
    /// The HTLC's timeout height.
    #[schema(rename = "timeoutBlockHeight")]
    timeout_block_height: u32,
}

/// `POST /v2/swap/reverse/{id}/claim`.
#[derive(ToSchema)]
pub(super) struct ReverseClaim {
    /// The swap's preimage, 32 bytes hex.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    preimage: String,
    /// With `transaction` and `index`: the client's MuSig2 nonce, 66 bytes hex.
    #[schema(rename = "pubNonce", pattern = "^[0-9a-fA-F]{132}$")]
    pub_nonce: Option<String>,
    /// The one-input key-path claim to co-sign, hex.
    #[schema(pattern = "^([0-9a-fA-F]{2})+$")]
    transaction: Option<String>,
    /// The HTLC's input in it: 0.
    index: Option<u64>,
}

/// A co-signature: the server's nonce and partial signature (absent when nothing was asked).
#[derive(ToSchema)]
pub(super) struct Cosigned {
    /// The server's MuSig2 nonce, 66 bytes hex.
    #[schema(rename = "pubNonce", pattern = "^[0-9a-f]{132}$")]
    pub_nonce: Option<String>,
    /// The server's partial signature, 32 bytes hex.
    #[schema(rename = "partialSignature", pattern = "^[0-9a-f]{64}$")]
    partial_signature: Option<String>,
}

/// `GET /v2/chain/BTC/height`.
#[derive(ToSchema)]
pub(super) struct Height {
    /// The tip.
    height: u32,
}

/// `GET /v2/chain/BTC/fee`.
#[derive(ToSchema)]
pub(super) struct Fee {
    /// The estimate the server publishes at, sat/vB.
    fee: f64,
}

/// A submarine pair's limits (on the invoice amount, sat).
#[derive(ToSchema)]
pub(super) struct SubmarineLimits {
    /// Largest invoice amount.
    maximal: u64,
    /// Smallest invoice amount.
    minimal: u64,
    /// Always 0: never paid against an unconfirmed lockup.
    #[schema(rename = "maximalZeroConf")]
    maximal_zero_conf: u64,
}

/// A submarine pair's fees.
#[derive(ToSchema)]
pub(super) struct SubmarineFees {
    /// The proportional fee, in percent of the invoice amount.
    percentage: f64,
    /// The fixed fee (sat).
    #[schema(rename = "minerFees")]
    miner_fees: u64,
}

/// The BTC/BTC submarine pair.
#[derive(ToSchema)]
pub(super) struct SubmarinePair {
    /// SHA-256 of the pair's terms.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    hash: String,
    /// Always 1.
    rate: u64,
    /// Limits.
    limits: SubmarineLimits,
    /// Fees.
    fees: SubmarineFees,
}

/// Submarine pairs by receiving asset.
#[derive(ToSchema)]
pub(super) struct SubmarinePairsTo {
    #[schema(rename = "BTC")]
    btc: SubmarinePair,
}

/// `GET /v2/swap/submarine`: pairs by sending asset.
#[derive(ToSchema)]
pub(super) struct SubmarinePairs {
    #[schema(rename = "BTC")]
    btc: SubmarinePairsTo,
}

/// `POST /v2/swap/submarine`.
#[derive(ToSchema)]
pub(super) struct SubmarineCreate {
    /// `BTC`.
    from: String,
    /// `BTC`.
    to: String,
    /// The BOLT11 invoice to pay (anyone's but this server's); or, instead, `preimageHash`.
    invoice: Option<String>,
    /// The hash of an invoice set later (`POST /v2/swap/submarine/{id}/invoice`), 32 bytes
    /// hex; instead of `invoice`.
    #[schema(rename = "preimageHash", pattern = "^[0-9a-fA-F]{64}$")]
    preimage_hash: Option<String>,
    /// The client's refund key, compressed public key hex.
    #[schema(rename = "refundPublicKey", pattern = "^0[23][0-9a-fA-F]{64}$")]
    refund_public_key: String,
    /// The pair's `hash` as read.
    #[schema(rename = "pairHash")]
    pair_hash: Option<String>,
    /// Ignored.
    #[schema(rename = "referralId")]
    referral_id: Option<String>,
}

/// `POST /v2/swap/submarine/{id}/invoice`.
#[derive(ToSchema)]
pub(super) struct SubmarineInvoice {
    /// The BOLT11 invoice to pay: its hash is the swap's `preimageHash`.
    invoice: String,
    /// The pair's `hash` as read.
    #[schema(rename = "pairHash")]
    pair_hash: Option<String>,
}

/// `POST /v2/swap/submarine/{id}/invoice`'s answer.
#[derive(ToSchema)]
pub(super) struct SubmarineInvoiceSet {
    /// The HTLC's address and the amount as a BIP21 link.
    bip21: String,
    /// The amount to lock (sat).
    #[schema(rename = "expectedAmount")]
    expected_amount: u64,
    /// Always false.
    #[schema(rename = "acceptZeroConf")]
    accept_zero_conf: bool,
}

/// `POST /v2/swap/submarine`'s answer.
#[derive(ToSchema)]
pub(super) struct SubmarineCreated {
    /// The swap's id on this door.
    #[schema(pattern = "^[0-9a-zA-Z]{12}$")]
    id: String,
    /// The HTLC's address: lock exactly `expectedAmount` there.
    address: String,
    /// The same as a BIP21 link (absent for a swap made for a `preimageHash`: its amount
    /// comes with the invoice).
    bip21: Option<String>,
    /// The HTLC's tree.
    #[schema(rename = "swapTree")]
    swap_tree: SwapTree,
    /// The server's key, compressed public key hex.
    #[schema(rename = "claimPublicKey", pattern = "^0[23][0-9a-f]{64}$")]
    claim_public_key: String,
    /// The HTLC's timeout height.
    #[schema(rename = "timeoutBlockHeight")]
    timeout_block_height: u32,
    /// The amount to lock (sat); 0 for a swap made for a `preimageHash`, until its invoice is
    /// set.
    #[schema(rename = "expectedAmount")]
    expected_amount: u64,
    /// Always false.
    #[schema(rename = "acceptZeroConf")]
    accept_zero_conf: bool,
}

/// `GET /v2/swap/submarine/{id}/claim`.
#[derive(ToSchema)]
pub(super) struct ClaimDetails {
    /// The preimage the payment revealed, 32 bytes hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    preimage: String,
    /// The server's MuSig2 nonce, 66 bytes hex.
    #[schema(rename = "pubNonce", pattern = "^[0-9a-f]{132}$")]
    pub_nonce: String,
    /// The server's key, compressed public key hex.
    #[schema(rename = "publicKey", pattern = "^0[23][0-9a-f]{64}$")]
    public_key: String,
    /// The key-path sighash of the server's claim, 32 bytes hex.
    #[schema(rename = "transactionHash", pattern = "^[0-9a-f]{64}$")]
    transaction_hash: String,
}

/// `POST /v2/swap/submarine/{id}/claim`.
#[derive(ToSchema)]
pub(super) struct ClaimSignature {
    /// The client's MuSig2 nonce, 66 bytes hex.
    #[schema(rename = "pubNonce", pattern = "^[0-9a-fA-F]{132}$")]
    pub_nonce: String,
    /// The client's partial signature, 32 bytes hex.
    #[schema(rename = "partialSignature", pattern = "^[0-9a-fA-F]{64}$")]
    partial_signature: String,
}

/// An empty object.
#[derive(ToSchema)]
pub(super) struct Empty {}

/// `POST /v2/swap/submarine/{id}/refund`.
#[derive(ToSchema)]
pub(super) struct RefundRequest {
    /// The client's MuSig2 nonce, 66 bytes hex.
    #[schema(rename = "pubNonce", pattern = "^[0-9a-fA-F]{132}$")]
    pub_nonce: String,
    /// The one-input key-path refund to co-sign, hex.
    #[schema(pattern = "^([0-9a-fA-F]{2})+$")]
    transaction: String,
    /// The HTLC's input in it: 0.
    index: u64,
}

/// `GET /v2/swap/submarine/{id}/preimage`.
#[derive(ToSchema)]
pub(super) struct PreimageAnswer {
    /// The preimage, 32 bytes hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    preimage: String,
}

/// The `/v2` operations and their schemas.
#[derive(OpenApi)]
#[openapi(
    paths(
        super::boltz::reverse_pairs,
        super::boltz::create_reverse,
        super::boltz::swap_status,
        super::boltz::reverse_transaction,
        super::boltz::reverse_claim,
        super::boltz::height,
        super::boltz::fee,
        super::boltz::nodes,
        super::boltz::broadcast,
        super::boltz::chain_transaction,
        super::submarine::pairs,
        super::submarine::create,
        super::submarine::set_invoice,
        super::submarine::lockup_transaction,
        super::submarine::claim_details,
        super::submarine::claim,
        super::submarine::refund,
        super::submarine::preimage,
    ),
    components(schemas(
        ReversePairs,
        ReverseCreate,
        ReverseCreated,
        BoltzStatus,
        LockupTransaction,
        ReverseClaim,
        Cosigned,
        Height,
        Fee,
        SubmarinePairs,
        SubmarineCreate,
        SubmarineCreated,
        SubmarineInvoice,
        SubmarineInvoiceSet,
        ClaimDetails,
        ClaimSignature,
        Empty,
        RefundRequest,
        PreimageAnswer,
        Nodes,
        BroadcastRequest,
        BroadcastAnswer,
        ChainTransaction,
    ))
)]
pub(super) struct BoltzDoc;
