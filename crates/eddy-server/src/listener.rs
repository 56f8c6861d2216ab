//! Connection discipline for every HTTP listener Eddy runs (the server's API, its metrics, the
//! client daemon's API): a connection is admitted only under a total cap and a per-address cap
//! (IPv6 counted by /64), must send its request headers within a deadline, is closed after a
//! stretch with no byte in either direction, and each request must be answered within a
//! deadline. A flood of connections that never finish their headers — which used to exhaust the
//! process's file handles, stop the embedded Lightning node's logger and with it its chain sync —
//! is cut off: excess connections are closed as they are accepted, the admitted ones time out,
//! and everyone else is still served. An accept error (e.g. `EMFILE`) pauses accepting briefly
//! instead of spinning.
//!
//! hyper serves each connection (HTTP/1.1 and HTTP/2); the axum router is the service, with
//! the peer address put into each request as axum's `ConnectInfo`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::ServiceExt;

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections at once, from everyone.
    pub max_connections: usize,
    /// Open connections at once from one address (an IPv6 /64 counts as one).
    pub max_per_address: usize,
    /// A request's headers must arrive within this (slow-header clients are cut off).
    pub header_read_timeout: Duration,
    /// A connection with no byte read or written for this long is closed (idle keep-alive
    /// connections, stalled uploads; event streams send keep-alives every 15 s).
    pub idle_timeout: Duration,
    /// A request must be answered (response head) within this.
    pub request_timeout: Duration,
    /// An address the per-address cap does not apply to: the reverse proxy every client comes
    /// through (`trusted_proxy`), which would otherwise put all users under one address's cap.
    pub exempt: Option<IpAddr>,
}

impl Default for ConnLimits {
    /// 512 connections in all and 32 per address (far below the file-handle limit of any
    /// sane deployment, far above what one honest client opens), 10 s for headers (also for a
    /// connection that sends nothing, and between requests on a kept-alive one), 60 s without a
    /// byte, and 120 s per request — long enough that no state-changing handler (a swap
    /// creation calling a slow Lightning node twice) is cut in the middle and a retry made to
    /// look necessary.
    fn default() -> ConnLimits {
        ConnLimits {
            max_connections: 512,
            max_per_address: 32,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            exempt: None,
        }
    }
}

/// What a listener has seen (for `/metrics` and tests).
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections admitted.
    pub admitted: AtomicU64,
    /// Connections closed at once: a cap was reached.
    pub refused: AtomicU64,
    /// Connections closed for idling or slow headers.
    pub timed_out: AtomicU64,
    /// Requests answered 503 for taking too long.
    pub request_timeouts: AtomicU64,
    /// Accept errors (e.g. out of file handles).
    pub accept_errors: AtomicU64,
}

/// The key a peer is counted under: its IPv4 address, or its IPv6 /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Default)]
struct Table {
    total: usize,
    per: HashMap<IpAddr, usize>,
}

/// A slot in the connection table, released when dropped.
struct Admitted {
    table: Arc<Mutex<Table>>,
    key: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.total = t.total.saturating_sub(1);
        if let Some(n) = t.per.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.per.remove(&self.key);
            }
        }
    }
}

fn admit(table: &Arc<Mutex<Table>>, limits: &ConnLimits, peer: IpAddr) -> Option<Admitted> {
    let key = address_key(peer);
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    let mine = t.per.get(&key).copied().unwrap_or(0);
    let capped = limits.exempt.map(address_key) != Some(key) && mine >= limits.max_per_address;
    if t.total >= limits.max_connections || capped {
        return None;
    }
    t.total += 1;
    *t.per.entry(key).or_insert(0) += 1;
    Some(Admitted {
        table: table.clone(),
        key,
    })
}

/// A stream that remembers when a byte last moved either way.
struct Tracked<S> {
    inner: S,
    last: Arc<Mutex<Instant>>,
}

impl<S> Tracked<S> {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file handles (or another transient failure): pause, then go on; the
                // connections waiting in the backlog are taken when handles are free again.
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "accepting connections failed; pausing");
                    last_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = admit(&table, &limits, peer.ip()) else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        stats.admitted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            stats.clone(),
            slot,
        ));
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    _slot: Admitted,
) {
    let last = Arc::new(Mutex::new(Instant::now()));
    let io = TokioIo::new(Tracked {
        inner: stream,
        last: last.clone(),
    });
    let timeout_stats = stats.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        let stats = timeout_stats.clone();
        async move {
            match tokio::time::timeout(limits.request_timeout, router.oneshot(req)).await {
                Ok(r) => r,
                Err(_) => {
                    stats.request_timeouts.fetch_add(1, Ordering::Relaxed);
                    Ok((
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({"error": "the request took too long; try again"})),
                    )
                        .into_response())
                }
            }
        }
    });
    // HTTP/1.1 only: no Eddy client speaks HTTP/2, whose multiplexed streams and pings would
    // get around the per-connection deadlines and multiply what one connection may hold.
    // hyper's header deadline runs from the start of the connection and between requests, so a
    // connection that sends nothing is cut at it too.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    // Upgrades: Boltz's WebSocket (`/v2/ws`). An upgraded connection leaves this loop and its
    // slot; the WebSocket's own budget and idle limit hold it (`http::boltz_ws`).
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let idle = limits.idle_timeout;
    loop {
        let since = last.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
        let wait = idle.saturating_sub(since).max(Duration::from_millis(10));
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    // hyper's header-read timeout ends the connection with an error.
                    if is_timeout(e.as_ref()) {
                        stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
                return;
            }
            _ = tokio::time::sleep(wait) => {
                if last.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= idle {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_timeout()) {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_per_ipv4_and_per_ipv6_slash_64() {
        let l = ConnLimits {
            max_connections: 3,
            max_per_address: 2,
            ..ConnLimits::default()
        };
        let t = Arc::new(Mutex::new(Table::default()));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let v6a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let s1 = admit(&t, &l, a).expect("1st");
        let _s2 = admit(&t, &l, a).expect("2nd");
        assert!(admit(&t, &l, a).is_none(), "per address");
        let _s3 = admit(&t, &l, v6a).expect("v6");
        assert!(admit(&t, &l, v6b).is_none(), "total (and same /64)");
        drop(s1);
        let _s4 = admit(&t, &l, v6b).expect("a slot is free again; the /64 has 1 of 2");
        assert!(admit(&t, &l, a).is_none(), "total");
        let t2 = Arc::new(Mutex::new(Table::default()));
        let _x = admit(&t2, &l, v6a).expect("a");
        let _y = admit(&t2, &l, v6b).expect("b: same /64, second");
        assert!(admit(&t2, &l, v6a).is_none(), "the /64 is full");
        assert_eq!(address_key("::ffff:10.0.0.1".parse().expect("ip")), a);
        // The trusted proxy is held to the total cap only.
        let proxy = ConnLimits { exempt: Some(a), ..l };
        let t3 = Arc::new(Mutex::new(Table::default()));
        let held: Vec<_> = (0..3).map(|_| admit(&t3, &proxy, a).expect("proxy")).collect();
        assert!(admit(&t3, &proxy, a).is_none(), "total");
        drop(held);
    }
}
