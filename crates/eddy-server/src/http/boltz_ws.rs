//! Boltz API v2's WebSocket (`GET /v2/ws`): a wallet subscribes to its swaps' updates
//! (`{"op": "subscribe", "channel": "swap.update", "args": [ids]}`), is answered with the
//! subscription and at once with each swap's status, then with every change
//! (`{"event": "update", "channel": "swap.update", "args": [{id, status, …}]}`, the body of
//! `GET /v2/swap/{id}` with its `id`); `unsubscribe` answers the ids still subscribed.
//!
//! The statuses are read the way `GET /v2/swap/{id}` reads them, every [`POLL`] for the
//! subscribed swaps, and sent when they change. Every limit is fixed: at most [`MAX_SOCKETS`]
//! connections (503 to the upgrade beyond) and [`MAX_SOCKETS_PER_CLIENT`] per client (429),
//! [`MAX_SUBSCRIPTIONS`] swaps per connection, messages of [`MAX_MESSAGE_BYTES`], and a
//! connection that sends no request for [`IDLE`] is closed (answering pings, or garbage, is not
//! a request), every connection after [`MAX_LIFETIME`], and one that does not take a message
//! within [`SEND_TIMEOUT`]; the server pings every [`PING_EVERY`]. A swap whose final status
//! was sent is read no more. A message that is not a request is answered with
//! `{"error": …}` and the connection stays open.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::{ApiError, AppState};

/// Most WebSocket connections open at once.
pub const MAX_SOCKETS: usize = 64;
/// Most swaps one connection follows.
pub const MAX_SUBSCRIPTIONS: usize = 50;
/// Largest message (and frame) read.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// How often the subscribed swaps' statuses are read.
pub const POLL: Duration = Duration::from_secs(1);
/// How often the server pings.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// A connection that sends no request this long is closed.
pub const IDLE: Duration = Duration::from_secs(600);
/// A connection is closed after this long whatever it does (wallets reconnect).
pub const MAX_LIFETIME: Duration = Duration::from_secs(3_600);
/// A message the client does not take within this long closes the connection (a client that
/// stops reading cannot hold it).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Statuses after which a swap changes no more: it is followed no longer once one was sent.
/// (`swap.expired` and `invoice.failedToPay` are not: a refund may follow them.)
const FINAL_STATUSES: [&str; 5] = [
    "invoice.settled",
    "transaction.claimed",
    "transaction.refunded",
    "invoice.expired",
    "transaction.failed",
];

/// Most WebSocket connections one client (IP address, or its /64) keeps open.
pub const MAX_SOCKETS_PER_CLIENT: usize = 4;

/// The open connections' budget, in all and per client.
pub(super) struct Sockets {
    open: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Default for Sockets {
    fn default() -> Self {
        Sockets {
            open: Arc::new(Semaphore::new(MAX_SOCKETS)),
            per_client: Arc::default(),
        }
    }
}

/// One client's open connection, counted until dropped.
struct ClientSocket {
    client: IpAddr,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Sockets {
    /// A connection for `client`, if it may open another.
    fn admit(&self, client: IpAddr) -> Option<ClientSocket> {
        let mut per = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let n = per.entry(client).or_default();
        if *n >= MAX_SOCKETS_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ClientSocket {
            client,
            per_client: self.per_client.clone(),
        })
    }
}

impl Drop for ClientSocket {
    fn drop(&mut self) {
        let mut per = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&self.client);
            }
        }
    }
}

/// `GET /v2/ws`: the upgrade, within the connections' budget.
pub(super) async fn upgrade(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return ApiError(StatusCode::BAD_REQUEST, "a WebSocket upgrade is expected".into()).into_response();
    };
    let Some(mine) = st.boltz.sockets.admit(st.client(peer, &headers)) else {
        return ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_SOCKETS_PER_CLIENT} WebSocket connections open from this client, the most it may keep"),
        )
        .into_response();
    };
    let Ok(permit) = st.boltz.sockets.open.clone().try_acquire_owned() else {
        return ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_SOCKETS} WebSocket connections open, the most this server keeps; retry later"),
        )
        .into_response();
    };
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            serve(st, socket).await;
            drop((permit, mine));
        })
}

#[derive(Deserialize)]
struct Request {
    op: String,
    channel: String,
    args: Vec<Value>,
}

/// One connection's subscriptions and the statuses last sent.
#[derive(Default)]
struct Followed {
    ids: Vec<String>,
    sent: HashMap<String, Value>,
}

/// Sends `m`, within [`SEND_TIMEOUT`].
async fn send(socket: &mut WebSocket, m: Message) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, socket.send(m)).await, Ok(Ok(())))
}

async fn serve(st: Arc<AppState>, mut socket: WebSocket) {
    let mut followed = Followed::default();
    let mut poll = tokio::time::interval(POLL);
    let mut ping = tokio::time::interval(PING_EVERY);
    let idle = tokio::time::sleep(IDLE);
    tokio::pin!(idle);
    let end = tokio::time::sleep(MAX_LIFETIME);
    tokio::pin!(end);
    loop {
        let out = tokio::select! {
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { return };
                match msg {
                    // Only requests keep a connection: pongs (answered by any client's
                    // transport) do not, so no one holds a connection for nothing.
                    Message::Text(text) => {
                        let (answers, request) = handle(&st, text.as_str(), &mut followed).await;
                        if request {
                            idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
                        }
                        answers
                    }
                    Message::Binary(_) => vec![json!({"error": "could not parse request"})],
                    Message::Close(_) => return,
                    // Pongs are the transport's.
                    Message::Ping(_) | Message::Pong(_) => vec![],
                }
            }
            _ = poll.tick() => {
                let changed = updates(&st, &mut followed, false).await;
                if changed.is_empty() {
                    vec![]
                } else {
                    vec![json!({"event": "update", "channel": "swap.update", "args": changed})]
                }
            }
            _ = ping.tick() => {
                if !send(&mut socket, Message::Ping(Default::default())).await {
                    return;
                }
                vec![]
            }
            () = &mut idle => {
                send(&mut socket, Message::Close(None)).await;
                return;
            }
            () = &mut end => {
                send(&mut socket, Message::Close(None)).await;
                return;
            }
        };
        for m in out {
            if !send(&mut socket, Message::Text(m.to_string().into())).await {
                return;
            }
        }
    }
}

/// The answers to one message, and whether it was a request (only requests keep a
/// connection open: [`IDLE`]).
async fn handle(st: &AppState, text: &str, followed: &mut Followed) -> (Vec<Value>, bool) {
    let refuse = |e: &str| (vec![json!({ "error": e })], false);
    let Ok(req) = serde_json::from_str::<Request>(text) else {
        return refuse("could not parse request");
    };
    if req.channel != "swap.update" {
        return refuse("unknown channel");
    }
    let Some(mut ids) = req
        .args
        .iter()
        .map(|a| a.as_str().map(str::to_string))
        .collect::<Option<Vec<String>>>()
    else {
        return refuse("args must be swap ids");
    };
    // Each id once, in the order asked.
    let mut seen = std::collections::HashSet::new();
    ids.retain(|i| seen.insert(i.clone()));
    match req.op.as_str() {
        "subscribe" => {
            let new = ids.iter().filter(|i| !followed.ids.contains(i)).count();
            if followed.ids.len() + new > MAX_SUBSCRIPTIONS {
                return refuse(&format!("at most {MAX_SUBSCRIPTIONS} swaps per connection"));
            }
            for i in &ids {
                // Asked again: its status is sent again.
                followed.sent.remove(i);
                if !followed.ids.contains(i) {
                    followed.ids.push(i.clone());
                }
            }
            let first = updates(st, followed, true).await;
            let mut out = vec![json!({"event": "subscribe", "channel": "swap.update", "args": ids})];
            if !first.is_empty() {
                out.push(json!({"event": "update", "channel": "swap.update", "args": first}));
            }
            (out, true)
        }
        "unsubscribe" => {
            followed.ids.retain(|i| !ids.contains(i));
            followed.sent.retain(|i, _| !ids.contains(i));
            (
                vec![json!({"event": "unsubscribe", "channel": "swap.update", "args": followed.ids})],
                true,
            )
        }
        _ => refuse("unknown operation"),
    }
}

/// The followed swaps whose status changed since last sent (`fresh`: only those never sent —
/// a subscription's first answer). An unknown id is answered once with its error and
/// followed no more; a swap whose final status was sent is read no more; a backend failure
/// sends nothing (the next poll reads it again).
async fn updates(st: &AppState, followed: &mut Followed, fresh: bool) -> Vec<Value> {
    let mut out = vec![];
    let mut unknown = vec![];
    for id in &followed.ids {
        let done = |b: &Value| FINAL_STATUSES.iter().any(|f| b["status"] == json!(f));
        if followed.sent.get(id).is_some_and(|b| fresh || done(b)) {
            continue;
        }
        let read: Result<Path<String>, PathRejection> = Ok(Path(id.clone()));
        match super::boltz::status_of(st, read).await {
            Ok(mut body) => {
                body["id"] = json!(id);
                if followed.sent.get(id) != Some(&body) {
                    followed.sent.insert(id.clone(), body.clone());
                    out.push(body);
                }
            }
            Err(ApiError(StatusCode::NOT_FOUND, e)) => {
                unknown.push(id.clone());
                out.push(json!({"id": id, "error": e}));
            }
            Err(_) => {}
        }
    }
    followed.ids.retain(|i| !unknown.contains(i));
    out
}
