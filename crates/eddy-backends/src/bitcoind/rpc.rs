//! A small async bitcoind JSON-RPC client (reqwest, basic auth from user/password or a cookie
//! file, JSON-RPC 1.0 envelopes so every bitcoind version answers). Eddy's bitcoind chain
//! source is built on it, and the lab drives the devnet and a real bitcoind through it alike.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// An error object a bitcoind answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    /// bitcoind's error code (e.g. -5 not found, -25/-26/-27 for rejected transactions).
    pub code: i32,
    /// The message.
    pub message: String,
}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an RPC error.
    #[error("RPC error {}: {}", .0.code, .0.message)]
    Rpc(RpcError),
    /// The server could not be reached or answered something that is not JSON-RPC.
    #[error("transport: {0}")]
    Transport(String),
    /// The result did not have the expected shape.
    #[error("unexpected result for {method}: {detail}")]
    Shape {
        /// The method called.
        method: String,
        /// What did not fit.
        detail: String,
    },
}

/// A bitcoind RPC client.
#[derive(Debug)]
pub struct RpcClient {
    http: reqwest::Client,
    url: String,
    auth: String,
    id: AtomicU64,
}

/// The `User-Agent` of Eddy's bitcoind RPC calls.
pub const USER_AGENT: &str = concat!("eddy/", env!("CARGO_PKG_VERSION"));

impl RpcClient {
    /// A client for `url` (`http://127.0.0.1:18443`) with a user and password.
    pub fn new(url: &str, user: &str, password: &str) -> Result<RpcClient, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            // Names Eddy's engine in bitcoind's logs and to a proxy in front of it (ldk-node's
            // own RPC client, on the same bitcoind, sends none).
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(RpcClient {
            http,
            url: url.trim_end_matches('/').to_string(),
            auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            id: AtomicU64::new(0),
        })
    }

    /// A client authenticating with a bitcoind `.cookie` file.
    pub fn with_cookie(url: &str, cookie: &Path) -> Result<RpcClient, ClientError> {
        let contents = std::fs::read_to_string(cookie)
            .map_err(|e| ClientError::Transport(format!("reading {}: {e}", cookie.display())))?;
        let (user, password) = contents
            .trim()
            .split_once(':')
            .ok_or_else(|| ClientError::Transport(format!("{} is not a cookie file", cookie.display())))?;
        RpcClient::new(url, user, password)
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with positional `params` and returns the raw result.
    pub async fn call_raw(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params});
        let resp = self
            .http
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, &self.auth)
            .json(&body)
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| ClientError::Transport(e.to_string()))?;
        let mut v: Value = serde_json::from_str(&text).map_err(|_| {
            ClientError::Transport(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()))
        })?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(ClientError::Rpc(RpcError::new(
                err.get("code").and_then(Value::as_i64).unwrap_or(-1) as i32,
                err.get("message").and_then(Value::as_str).unwrap_or("unknown error"),
            )));
        }
        Ok(v.get_mut("result").map(Value::take).unwrap_or(Value::Null))
    }

    /// Calls `method` and deserializes the result.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, ClientError> {
        let v = self.call_raw(method, params).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Shape {
            method: method.to_string(),
            detail: e.to_string(),
        })
    }
}
