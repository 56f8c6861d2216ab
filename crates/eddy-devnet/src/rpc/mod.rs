//! The devnet's bitcoind-compatible JSON-RPC server on 127.0.0.1: HTTP basic auth with a
//! configured user/password or a bitcoind-style `.cookie` file, JSON-RPC 1.0 (bitcoind's legacy
//! replies: HTTP 500 with the error object, 404 for an unknown method) and 2.0 (always HTTP 200),
//! and batches. Calls that touch the chain run on the blocking pool; `waitfornewblock` and
//! `waitforblockheight` wait on the tip broadcast without holding anything.

pub mod json;
pub mod methods;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use bitcoin::hex::DisplayHex;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::devnet::Devnet;
pub use methods::{code, RpcError};

/// The user name in a bitcoind cookie file.
pub const COOKIE_USER: &str = "__cookie__";

/// How clients authenticate.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Generate a random password and write `__cookie__:<password>` to this file (0600),
    /// removed when the server stops.
    Cookie(PathBuf),
    /// A fixed user and password.
    UserPass {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct RpcConfig {
    /// Address to bind; tests and the lab use `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// Authentication.
    pub auth: Auth,
}

struct AppState {
    devnet: Devnet,
    expected_auth: String,
    started: Instant,
}

/// A running RPC server; stops when dropped.
pub struct RpcServer {
    addr: SocketAddr,
    user: String,
    password: String,
    cookie: Option<PathBuf>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn write_cookie(path: &PathBuf, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

impl RpcServer {
    /// Binds and serves `devnet` on the current tokio runtime.
    pub async fn start(devnet: Devnet, config: RpcConfig) -> std::io::Result<RpcServer> {
        let (user, password, cookie) = match config.auth {
            Auth::Cookie(path) => {
                let password = rand::random::<[u8; 32]>().to_lower_hex_string();
                write_cookie(&path, &format!("{COOKIE_USER}:{password}"))?;
                (COOKIE_USER.to_string(), password, Some(path))
            }
            Auth::UserPass { user, password } => (user, password, None),
        };
        let expected_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AppState {
            devnet,
            expected_auth,
            started: Instant::now(),
        });
        let app = Router::new().fallback(handle).with_state(state);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = served.await {
                eprintln!("devnet rpc: {e}");
            }
        });
        Ok(RpcServer {
            addr,
            user,
            password,
            cookie,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Stops serving and waits until the server has let go of the devnet handle (so the data
    /// dir can be reopened).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The RPC user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The RPC password.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(c) = &self.cookie {
            let _ = std::fs::remove_file(c);
        }
    }
}

/// One JSON-RPC reply and whether it was an error (for the legacy HTTP status).
struct Reply {
    body: Value,
    error: Option<i32>,
}

fn reply(id: Value, v2: bool, result: Result<Value, RpcError>) -> Reply {
    match result {
        Ok(r) if v2 => Reply {
            body: json!({"jsonrpc": "2.0", "result": r, "id": id}),
            error: None,
        },
        Ok(r) => Reply {
            body: json!({"result": r, "error": null, "id": id}),
            error: None,
        },
        Err(e) => {
            let err = json!({"code": e.code, "message": e.message});
            let body = if v2 {
                json!({"jsonrpc": "2.0", "error": err, "id": id})
            } else {
                json!({"result": null, "error": err, "id": id})
            };
            Reply {
                body,
                error: Some(e.code),
            }
        }
    }
}

async fn call(state: &Arc<AppState>, request: Value) -> Reply {
    let Value::Object(mut req) = request else {
        return reply(
            Value::Null,
            false,
            Err(RpcError::new(code::INVALID_REQUEST, "Invalid Request object")),
        );
    };
    let id = req.remove("id").unwrap_or(Value::Null);
    let v2 = req.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let Some(method) = req.get("method").and_then(Value::as_str).map(str::to_owned) else {
        return reply(
            id,
            v2,
            Err(RpcError::new(code::INVALID_REQUEST, "Method must be a string")),
        );
    };
    let params = match methods::positional(&method, req.remove("params").unwrap_or(Value::Null)) {
        Ok(p) => p,
        Err(e) => return reply(id, v2, Err(e)),
    };
    let result = if methods::is_wait(&method) {
        wait(state, &method, &params).await
    } else {
        let st = state.clone();
        tokio::task::spawn_blocking(move || methods::dispatch(&st.devnet, st.started, &method, &params))
            .await
            .unwrap_or_else(|e| Err(RpcError::new(code::MISC, format!("internal error: {e}"))))
    };
    reply(id, v2, result)
}

async fn wait(state: &Arc<AppState>, method: &str, params: &[Value]) -> Result<Value, RpcError> {
    let (target, timeout_ms) = methods::wait_args(method, params)?;
    let mut rx = state.devnet.subscribe();
    let start = *rx.borrow_and_update();
    let done = |t: &crate::devnet::Tip| match target {
        Some(h) => t.height >= h,
        None => t.hash != start.hash,
    };
    let waiting = async {
        loop {
            if done(&rx.borrow_and_update()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    if timeout_ms == 0 {
        waiting.await;
    } else {
        let _ = tokio::time::timeout(Duration::from_millis(timeout_ms), waiting).await;
    }
    let tip = state.devnet.tip();
    Ok(json!({"hash": tip.hash.to_string(), "height": tip.height}))
}

fn respond(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

async fn handle(State(state): State<Arc<AppState>>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), state.expected_auth.as_bytes()));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"jsonrpc\"")],
            "",
        )
            .into_response();
    }
    if method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "JSONRPC server handles only POST requests",
        )
            .into_response();
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            let r = reply(Value::Null, false, Err(RpcError::new(code::PARSE_ERROR, "Parse error")));
            return respond(StatusCode::INTERNAL_SERVER_ERROR, &r.body);
        }
    };
    match request {
        Value::Array(batch) => {
            let mut out = Vec::with_capacity(batch.len());
            for r in batch {
                out.push(call(&state, r).await.body);
            }
            respond(StatusCode::OK, &Value::Array(out))
        }
        single => {
            let v2 = single.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
            let r = call(&state, single).await;
            let status = match r.error {
                None => StatusCode::OK,
                Some(_) if v2 => StatusCode::OK,
                Some(code::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
                Some(code::INVALID_REQUEST) => StatusCode::BAD_REQUEST,
                Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            respond(status, &r.body)
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
