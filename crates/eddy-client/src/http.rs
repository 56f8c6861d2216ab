//! [`crate::SwapServerApi`] over the server's HTTP API, its bodies the wire types of
//! [`eddy_core::api`] on both sides (no JSON built or read by hand). Every call on one swap (`/v1/swaps/{id}…`,
//! but the preimage push, which authorizes itself) is signed with that swap's key — the key
//! the client gave at creation (loop-out: its claim key, loop-in: its refund key), derived from
//! the client's [`SeedKeys`] — in the [`eddy_core::auth::HEADER`] header: a stranger who knows
//! a payment hash can neither read the swap nor act on it.

use async_trait::async_trait;
use bitcoin::hex::{DisplayHex, FromHex};
use eddy_core::api::{
    ApiCallError, ClaimCosign, ClaimOffer, CosignRequest, CosignResponse, ErrorBody, ErrorKind, PreimageBody, Prevout,
    Quote, QuoteIn, SwapState, SwapStatus, Terms,
};
use eddy_core::musig::{PartialSigBytes, PubNonceBytes, PUB_NONCE_LEN};
use eddy_core::types::{Preimage, SwapId};
use eddy_core::validate::{LoopInCreate, LoopInOffer, LoopOutCreate, LoopOutOffer};
use eddy_store::SeedKeys;

use crate::{ClaimToSign, LoopInApi, LoopOutApi};

/// The swap server at a base URL.
pub struct HttpSwapServer {
    base: String,
    http: reqwest::Client,
    keys: SeedKeys,
}

/// Which of the client's swap keys signs a call (the one the swap was created with).
#[derive(Clone, Copy)]
enum Side {
    LoopOut,
    LoopIn,
}

impl Side {
    fn purpose(self) -> eddy_store::KeyPurpose {
        match self {
            Side::LoopOut => crate::loop_out::KEY_PURPOSE,
            Side::LoopIn => crate::loop_in::KEY_PURPOSE,
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl HttpSwapServer {
    /// A client for `base` (`http://127.0.0.1:PORT`) signing its per-swap calls with the swap
    /// keys of `keys` (the client engines' seed).
    pub fn new(base: &str, keys: SeedKeys) -> Result<HttpSwapServer, String> {
        Ok(HttpSwapServer {
            base: base.trim_end_matches('/').to_string(),
            http: client()?,
            keys,
        })
    }

    /// A request on swap `id` at `path` (from `/v1/…`), signed with the swap's key.
    fn signed(
        &self,
        method: reqwest::Method,
        side: Side,
        id: &SwapId,
        path: &str,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let key = self.keys.secret(side.purpose(), id);
        let auth = eddy_core::auth::sign(&key, id, unix_now(), method.as_str(), path, &body);
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(eddy_core::auth::HEADER, auth);
        if !body.is_empty() {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        req
    }

    /// Sends `req` and reads its answer as `T` (an error status: the server's refusal).
    pub(crate) async fn call<T: serde::de::DeserializeOwned>(req: reqwest::RequestBuilder) -> Result<T, ApiCallError> {
        let resp = Self::send(req).await?;
        let body = capped_body(resp).await?;
        serde_json::from_slice(&body).map_err(|e| ApiCallError::Unreadable(e.to_string()))
    }

    /// Sends `req`; an error status is the server's refusal.
    pub(crate) async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiCallError> {
        let resp = req.send().await.map_err(send_error)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let message = match capped_body(resp).await {
            Ok(body) => {
                serde_json::from_slice::<ErrorBody>(&body).map_or_else(|_| "no error message".to_string(), |b| b.error)
            }
            Err(e) => e.to_string(),
        };
        Err(ApiCallError::Answered {
            kind: ErrorKind::of_status(status.as_u16()),
            status: status.to_string(),
            message,
        })
    }

    /// Posts a co-signing request (our nonce, the unsigned transaction) and reads the server's
    /// nonce and partial signature.
    #[allow(clippy::too_many_arguments)]
    async fn post_cosign(
        &self,
        side: Side,
        id: &SwapId,
        path: &str,
        nonce: &PubNonceBytes,
        tx: &bitcoin::Transaction,
        index: usize,
        prevouts: &[bitcoin::TxOut],
    ) -> Result<(PubNonceBytes, PartialSigBytes), ApiCallError> {
        // A one-input transaction is asked as before batches (no index, no prevouts): servers
        // from before read it.
        let batch = tx.input.len() > 1;
        let body = CosignRequest {
            nonce: nonce.to_lower_hex_string(),
            tx: bitcoin::consensus::encode::serialize_hex(tx),
            index: batch.then_some(index as u32),
            prevouts: batch.then(|| prevouts.iter().map(Prevout::from).collect()),
        };
        let body = serde_json::to_vec(&body).map_err(|e| ApiCallError::Failed(e.to_string()))?;
        let answer: CosignResponse = Self::call(self.signed(reqwest::Method::POST, side, id, path, body)).await?;
        cosignature(&answer.nonce, &answer.partial_sig)
    }
}

/// A server's co-signature from its hex (its public nonce and partial signature), in either
/// protocol's answer.
pub(crate) fn cosignature(nonce: &str, partial: &str) -> Result<(PubNonceBytes, PartialSigBytes), ApiCallError> {
    match (<[u8; PUB_NONCE_LEN]>::from_hex(nonce), <[u8; 32]>::from_hex(partial)) {
        (Ok(n), Ok(p)) => Ok((n, p)),
        _ => Err(ApiCallError::Unreadable("not a co-signature".into())),
    }
}

/// The HTTP client of either protocol: every request given up after 30 s.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

/// The most of an answer's body this client reads: every answer of either protocol is a few
/// KiB (the largest, a Boltz status with its lockup transaction, is bounded by the transaction
/// size the server keeps); a server sending more is cut off before it can exhaust the
/// daemon's memory — and with it the claim a restart would retry.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// `resp`'s body, read chunk by chunk up to [`MAX_ANSWER_BYTES`].
async fn capped_body(mut resp: reqwest::Response) -> Result<Vec<u8>, ApiCallError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(send_error)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ApiCallError::Unreadable(format!(
                "an answer of more than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A request that got no answer: the server is named unreachable (connection refused, DNS,
/// TLS) or slow (timeout), never confused with an answer.
fn send_error(e: reqwest::Error) -> ApiCallError {
    if e.is_connect() {
        ApiCallError::Unreachable(e.to_string())
    } else if e.is_timeout() {
        ApiCallError::Timeout(e.to_string())
    } else {
        ApiCallError::Failed(e.to_string())
    }
}

#[async_trait]
impl LoopOutApi for HttpSwapServer {
    /// `GET /v1/terms`, as the server answers it.
    async fn terms(&self) -> Result<Terms, ApiCallError> {
        Self::call(self.http.get(format!("{}/v1/terms", self.base))).await
    }

    /// `GET /v1/quote/loop-out?amount=…`, as the server answers it.
    async fn quote_loop_out(&self, amount: bitcoin::Amount) -> Result<Quote, ApiCallError> {
        let url = format!("{}/v1/quote/loop-out?amount={}", self.base, amount.to_sat());
        Self::call(self.http.get(url)).await
    }

    async fn loop_out(&self, req: &LoopOutCreate) -> Result<LoopOutOffer, ApiCallError> {
        Self::call(self.http.post(format!("{}/v1/loop-out", self.base)).json(req)).await
    }

    async fn push_preimage(&self, preimage: &Preimage) -> Result<(), ApiCallError> {
        let id = preimage.payment_hash();
        let body = PreimageBody {
            preimage: preimage.expose_hex(),
        };
        Self::send(
            self.http
                .post(format!("{}/v1/swaps/{id}/preimage", self.base))
                .json(&body),
        )
        .await?;
        Ok(())
    }

    async fn cosign_claim(
        &self,
        id: &SwapId,
        _preimage: &Preimage,
        nonce: &PubNonceBytes,
        tx: &bitcoin::Transaction,
        index: usize,
        prevouts: &[bitcoin::TxOut],
    ) -> Result<(PubNonceBytes, PartialSigBytes), ApiCallError> {
        // The server has the preimage already (pushed first; it settles on it).
        let path = format!("/v1/swaps/{id}/cosign");
        self.post_cosign(Side::LoopOut, id, &path, nonce, tx, index, prevouts)
            .await
    }

    fn batches_claims(&self) -> bool {
        true
    }
}

#[async_trait]
impl LoopInApi for HttpSwapServer {
    async fn loop_in_fee(&self, amount: bitcoin::Amount) -> Result<bitcoin::Amount, ApiCallError> {
        let url = format!("{}/v1/quote/loop-in?amount={}", self.base, amount.to_sat());
        let quote: QuoteIn = Self::call(self.http.get(url)).await?;
        Ok(bitcoin::Amount::from_sat(quote.swap_fee_sat))
    }

    async fn loop_in(&self, req: &LoopInCreate) -> Result<LoopInOffer, ApiCallError> {
        Self::call(self.http.post(format!("{}/v1/loop-in", self.base)).json(req)).await
    }

    async fn swap_state(&self, id: &SwapId) -> Result<SwapState, ApiCallError> {
        let path = format!("/v1/swaps/{id}");
        let status: SwapStatus = Self::call(self.signed(reqwest::Method::GET, Side::LoopIn, id, &path, vec![])).await?;
        Ok(status.state)
    }

    async fn cosign_refund(
        &self,
        id: &SwapId,
        nonce: &PubNonceBytes,
        tx: &bitcoin::Transaction,
    ) -> Result<(PubNonceBytes, PartialSigBytes), ApiCallError> {
        self.post_cosign(
            Side::LoopIn,
            id,
            &format!("/v1/swaps/{id}/refund-cosign"),
            nonce,
            tx,
            0,
            &[],
        )
        .await
    }

    async fn claim_request(&self, id: &SwapId) -> Result<(PubNonceBytes, ClaimToSign), ApiCallError> {
        let path = format!("/v1/swaps/{id}/claim");
        let offer: ClaimOffer = Self::call(self.signed(reqwest::Method::GET, Side::LoopIn, id, &path, vec![])).await?;
        let (nonce, tx, index, prevouts) = eddy_core::api::parse_claim_offer(&offer)
            .map_err(|e| ApiCallError::Unreadable(format!("not a claim offer: {e}")))?;
        Ok((nonce, ClaimToSign::Transaction { tx, index, prevouts }))
    }

    async fn claim_cosign(
        &self,
        id: &SwapId,
        nonce: &PubNonceBytes,
        partial: &PartialSigBytes,
    ) -> Result<(), ApiCallError> {
        let body = ClaimCosign {
            nonce: nonce.to_lower_hex_string(),
            partial_sig: partial.to_lower_hex_string(),
        };
        let body = serde_json::to_vec(&body).map_err(|e| ApiCallError::Failed(e.to_string()))?;
        let path = format!("/v1/swaps/{id}/claim-cosign");
        Self::send(self.signed(reqwest::Method::POST, Side::LoopIn, id, &path, body)).await?;
        Ok(())
    }
}
