//! [`SwapServerApi`] over the server's HTTP API. Every call on one swap (`/v1/swaps/{id}…`,
//! but the preimage push, which authorizes itself) is signed with that swap's key — the key
//! the client gave at creation (loop-out: its claim key, loop-in: its refund key), derived from
//! the client's [`SeedKeys`] — in the [`eddy_core::auth::HEADER`] header: a stranger who knows
//! a payment hash can neither read the swap nor act on it.

use async_trait::async_trait;
use eddy_core::types::{Preimage, SwapId};
use eddy_core::validate::{LoopOutCreate, LoopOutOffer};
use eddy_store::SeedKeys;
use serde_json::{json, Value};

use crate::SwapServerApi;

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
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpSwapServer {
            base: base.trim_end_matches('/').to_string(),
            http,
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

    /// A signed GET on swap `id`, answer as JSON.
    async fn get_signed(&self, side: Side, id: &SwapId, path: &str) -> Result<Value, String> {
        let resp = self
            .signed(reqwest::Method::GET, side, id, path, vec![])
            .send()
            .await
            .map_err(send_error)?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        resp.json().await.map_err(|e| format!("unreadable answer: {e}"))
    }

    /// `GET /v1/terms`, as the server answers it.
    pub async fn terms(&self) -> Result<Value, String> {
        self.get_json(&format!("{}/v1/terms", self.base)).await
    }

    /// `GET /v1/quote/loop-out?amount=…`, as the server answers it.
    pub async fn quote_loop_out(&self, amount: bitcoin::Amount) -> Result<Value, String> {
        self.get_json(&format!("{}/v1/quote/loop-out?amount={}", self.base, amount.to_sat()))
            .await
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let resp = self.http.get(url).send().await.map_err(send_error)?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        resp.json().await.map_err(|e| format!("unreadable answer: {e}"))
    }

    /// Posts a co-signing request (our nonce, the unsigned transaction) and reads the server's
    /// nonce and partial signature.
    async fn post_cosign(
        &self,
        side: Side,
        id: &SwapId,
        path: &str,
        nonce: &eddy_core::musig::PubNonceBytes,
        tx: &bitcoin::Transaction,
    ) -> Result<(eddy_core::musig::PubNonceBytes, eddy_core::musig::PartialSigBytes), String> {
        use bitcoin::hex::{DisplayHex, FromHex};
        let body = serde_json::to_vec(
            &json!({"nonce": nonce.to_lower_hex_string(), "tx": bitcoin::consensus::encode::serialize_hex(tx)}),
        )
        .map_err(|e| e.to_string())?;
        let resp = self
            .signed(reqwest::Method::POST, side, id, path, body)
            .send()
            .await
            .map_err(send_error)?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        let n = v["nonce"]
            .as_str()
            .and_then(|s| <[u8; eddy_core::musig::PUB_NONCE_LEN]>::from_hex(s).ok());
        let p = v["partial_sig"].as_str().and_then(|s| <[u8; 32]>::from_hex(s).ok());
        match (n, p) {
            (Some(n), Some(p)) => Ok((n, p)),
            _ => Err("unreadable co-signature".into()),
        }
    }

    async fn error_of(resp: reqwest::Response) -> String {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let msg = body.get("error").and_then(Value::as_str).unwrap_or("no error message");
        format!("{ANSWERED}{status}: {msg}")
    }
}

/// How an error answered by the server starts (then its status code, reason and message).
const ANSWERED: &str = "server answered ";

/// The server's HTTP status in an error from this client, when the server answered (a daemon
/// passes a 4xx through as the 4xx it is: the request was wrong, not the server down).
pub fn answered_status(error: &str) -> Option<u16> {
    error
        .strip_prefix(ANSWERED)
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

/// A request that got no answer: the server is named unreachable (connection refused, DNS,
/// TLS) or slow (timeout), never confused with an answer.
fn send_error(e: reqwest::Error) -> String {
    if e.is_connect() {
        format!("server unreachable: {e}")
    } else if e.is_timeout() {
        format!("server did not answer in time: {e}")
    } else {
        format!("server request failed: {e}")
    }
}

#[async_trait]
impl SwapServerApi for HttpSwapServer {
    async fn loop_out(&self, req: &LoopOutCreate) -> Result<LoopOutOffer, String> {
        let resp = self
            .http
            .post(format!("{}/v1/loop-out", self.base))
            .json(req)
            .send()
            .await
            .map_err(send_error)?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        resp.json().await.map_err(|e| format!("unreadable offer: {e}"))
    }

    async fn push_preimage(&self, preimage: &Preimage) -> Result<(), String> {
        let id = preimage.payment_hash();
        let resp = self
            .http
            .post(format!("{}/v1/swaps/{id}/preimage", self.base))
            .json(&json!({"preimage": preimage.expose_hex()}))
            .send()
            .await
            .map_err(send_error)?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        Ok(())
    }

    async fn cosign_claim(
        &self,
        id: &eddy_core::types::SwapId,
        nonce: &eddy_core::musig::PubNonceBytes,
        tx: &bitcoin::Transaction,
    ) -> Result<(eddy_core::musig::PubNonceBytes, eddy_core::musig::PartialSigBytes), String> {
        self.post_cosign(Side::LoopOut, id, &format!("/v1/swaps/{id}/cosign"), nonce, tx)
            .await
    }

    async fn loop_in_fee(&self, amount: bitcoin::Amount) -> Result<bitcoin::Amount, String> {
        let v = self
            .get_json(&format!("{}/v1/quote/loop-in?amount={}", self.base, amount.to_sat()))
            .await?;
        v["swap_fee_sat"]
            .as_u64()
            .map(bitcoin::Amount::from_sat)
            .ok_or_else(|| "unreadable quote".into())
    }

    async fn loop_in(
        &self,
        req: &eddy_core::validate::LoopInCreate,
    ) -> Result<eddy_core::validate::LoopInOffer, String> {
        let resp = self
            .http
            .post(format!("{}/v1/loop-in", self.base))
            .json(req)
            .send()
            .await
            .map_err(send_error)?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        resp.json().await.map_err(|e| format!("unreadable offer: {e}"))
    }

    async fn swap_state(&self, id: &eddy_core::types::SwapId) -> Result<String, String> {
        let v = self.get_signed(Side::LoopIn, id, &format!("/v1/swaps/{id}")).await?;
        v["state"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "unreadable status".into())
    }

    async fn cosign_refund(
        &self,
        id: &eddy_core::types::SwapId,
        nonce: &eddy_core::musig::PubNonceBytes,
        tx: &bitcoin::Transaction,
    ) -> Result<(eddy_core::musig::PubNonceBytes, eddy_core::musig::PartialSigBytes), String> {
        self.post_cosign(Side::LoopIn, id, &format!("/v1/swaps/{id}/refund-cosign"), nonce, tx)
            .await
    }

    async fn claim_request(
        &self,
        id: &eddy_core::types::SwapId,
    ) -> Result<(eddy_core::musig::PubNonceBytes, bitcoin::Transaction), String> {
        use bitcoin::hex::FromHex;
        let v = self
            .get_signed(Side::LoopIn, id, &format!("/v1/swaps/{id}/claim"))
            .await?;
        let n = v["nonce"]
            .as_str()
            .and_then(|s| <[u8; eddy_core::musig::PUB_NONCE_LEN]>::from_hex(s).ok());
        let tx = v["tx"]
            .as_str()
            .and_then(|s| bitcoin::consensus::encode::deserialize_hex(s).ok());
        match (n, tx) {
            (Some(n), Some(tx)) => Ok((n, tx)),
            _ => Err("unreadable claim offer".into()),
        }
    }

    async fn claim_cosign(
        &self,
        id: &eddy_core::types::SwapId,
        nonce: &eddy_core::musig::PubNonceBytes,
        partial: &eddy_core::musig::PartialSigBytes,
    ) -> Result<(), String> {
        use bitcoin::hex::DisplayHex;
        let body = serde_json::to_vec(
            &json!({"nonce": nonce.to_lower_hex_string(), "partial_sig": partial.to_lower_hex_string()}),
        )
        .map_err(|e| e.to_string())?;
        let resp = self
            .signed(
                reqwest::Method::POST,
                Side::LoopIn,
                id,
                &format!("/v1/swaps/{id}/claim-cosign"),
                body,
            )
            .send()
            .await
            .map_err(send_error)?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        Ok(())
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn answered_statuses_are_read_back() {
        assert_eq!(
            answered_status("server answered 400 Bad Request: amount 1 sat is outside"),
            Some(400)
        );
        assert_eq!(answered_status("server answered 429 Too Many Requests: x"), Some(429));
        assert_eq!(answered_status("server unreachable: connection refused"), None);
        assert_eq!(answered_status("server answered"), None);
    }
}
