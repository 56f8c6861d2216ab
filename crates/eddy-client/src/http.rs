//! [`SwapServerApi`] over the server's HTTP API.

use async_trait::async_trait;
use eddy_core::types::Preimage;
use eddy_core::validate::{LoopOutCreate, LoopOutOffer};
use serde_json::{json, Value};

use crate::SwapServerApi;

/// The swap server at a base URL.
pub struct HttpSwapServer {
    base: String,
    http: reqwest::Client,
}

impl HttpSwapServer {
    /// A client for `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Result<HttpSwapServer, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpSwapServer {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
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
        let resp = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        resp.json().await.map_err(|e| format!("unreadable answer: {e}"))
    }

    /// Posts a co-signing request (our nonce, the unsigned transaction) and reads the server's
    /// nonce and partial signature.
    async fn post_cosign(
        &self,
        url: &str,
        nonce: &eddy_core::musig::PubNonceBytes,
        tx: &bitcoin::Transaction,
    ) -> Result<(eddy_core::musig::PubNonceBytes, eddy_core::musig::PartialSigBytes), String> {
        use bitcoin::hex::{DisplayHex, FromHex};
        let resp = self
            .http
            .post(url)
            .json(&json!({"nonce": nonce.to_lower_hex_string(), "tx": bitcoin::consensus::encode::serialize_hex(tx)}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
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
        format!("server answered {status}: {msg}")
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
            .map_err(|e| e.to_string())?;
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
            .map_err(|e| e.to_string())?;
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
        self.post_cosign(&format!("{}/v1/swaps/{id}/cosign", self.base), nonce, tx)
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
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        resp.json().await.map_err(|e| format!("unreadable offer: {e}"))
    }

    async fn swap_state(&self, id: &eddy_core::types::SwapId) -> Result<String, String> {
        let v = self.get_json(&format!("{}/v1/swaps/{id}", self.base)).await?;
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
        self.post_cosign(&format!("{}/v1/swaps/{id}/refund-cosign", self.base), nonce, tx)
            .await
    }

    async fn claim_request(
        &self,
        id: &eddy_core::types::SwapId,
    ) -> Result<(eddy_core::musig::PubNonceBytes, bitcoin::Transaction), String> {
        use bitcoin::hex::FromHex;
        let v = self.get_json(&format!("{}/v1/swaps/{id}/claim", self.base)).await?;
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
        let resp = self
            .http
            .post(format!("{}/v1/swaps/{id}/claim-cosign", self.base))
            .json(&json!({"nonce": nonce.to_lower_hex_string(), "partial_sig": partial.to_lower_hex_string()}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        Ok(())
    }
}
