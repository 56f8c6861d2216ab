//! What both client engines share besides the swap server's API ([`crate::LoopOutApi`],
//! [`crate::LoopInApi`]): their settings ([`ClientConfig`]) and their error ([`ClientError`]).

use bitcoin::{Amount, Network};
use eddy_core::api::ApiCallError;
use eddy_core::types::SwapId;
use eddy_core::validate::LoopOutLimits;
use eddy_engine::sweep::SweepError;
use eddy_store::StoreError;

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Network.
    pub network: Network,
    /// Fee limits and the expiry window accepted.
    pub limits: LoopOutLimits,
    /// Most the claim transaction may pay in miner fees.
    pub max_miner_fee: Amount,
    /// Most the Lightning payments may pay in routing fees.
    pub max_routing_fee: Amount,
    /// Confirmation target of the claim.
    pub conf_target: u16,
    /// HTLC confirmations required before revealing the preimage.
    pub htlc_confs: u32,
}

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server's offer failed validation; nothing was paid.
    #[error("offer refused: {0}")]
    OfferRefused(String),
    /// The server refused, or could not be asked.
    #[error("server: {0}")]
    Server(ApiCallError),
    /// Our channels cannot send this much now; nothing was paid.
    #[error("cannot pay: {0}")]
    NoCapacity(String),
    /// Our channels cannot receive this much now (loop-in); nothing was created.
    #[error("cannot receive: {0}")]
    NoInbound(String),
    /// The node's wallet cannot fund this loop-in now; nothing was created.
    #[error("cannot fund: {0}")]
    NoFunds(String),
    /// A backend failed; retry.
    #[error("backend: {0}")]
    Backend(String),
    /// Unknown swap.
    #[error("unknown swap {0}")]
    NotFound(SwapId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SweepError> for ClientError {
    fn from(e: SweepError) -> Self {
        backend(e)
    }
}

/// Any backend failure, as a client error (the next pass retries).
pub(crate) fn backend(e: impl std::fmt::Display) -> ClientError {
    ClientError::Backend(e.to_string())
}
