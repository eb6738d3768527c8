//! Accepting connections within limits, so that idle or slow clients
//! cannot take the service away from others.
//!
//! Invariants:
//! - a client has [`Limits::header`] to send a request's headers, counted
//!   from when the connection opens and again after every response (so a
//!   keep-alive connection idle that long is closed too);
//! - at most [`Limits::connections`] connections are open (never more than
//!   three quarters of the process's file descriptors); when a new one
//!   comes at the cap, the connection idle the longest — no request in
//!   flight — is closed to make room, and only if every connection is busy
//!   is the new one turned away. So a flood of idle connections cannot keep
//!   `/health` or anyone else out;
//! - on shutdown, idle connections close at once and busy ones finish
//!   their request, for at most [`Limits::drain`].
//!
//! (Bodies that stop arriving are the router's business: see
//! `tower_http::timeout::RequestBodyTimeoutLayer` in `api.rs`.)

use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tower::ServiceExt;

/// How the service accepts and keeps connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most.
    pub connections: usize,
    /// Time to send a request's headers (and to start the next one).
    pub header: Duration,
    /// How long an evicted connection that is mid-header may linger.
    pub evict_grace: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain: Duration,
}

impl Limits {
    /// `connections`, lowered to three quarters of the open files this
    /// process may hold (the rest is for storage, components and logs).
    pub fn capped(connections: usize, header: Duration) -> Self {
        let files = open_files_limit().unwrap_or(1024);
        Limits {
            connections: connections.min(files * 3 / 4).max(1),
            header,
            evict_grace: Duration::from_millis(200),
            drain: Duration::from_secs(30),
        }
    }
}

/// The soft limit of open files of this process, from `/proc`.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    START.elapsed().as_millis() as u64
}

/// One open connection, as the accept loop sees it.
struct Conn {
    /// When it last started or ended a request (ms since [`START`]).
    last: AtomicU64,
    /// Requests in flight (until their response body is dropped).
    busy: AtomicUsize,
    /// Asks it to close.
    evict: Notify,
}

type Conns = Mutex<HashMap<u64, Arc<Conn>>>;

/// Marks a connection busy from a request's start until its response body
/// is dropped.
struct Busy(Arc<Conn>);

impl Busy {
    fn new(c: &Arc<Conn>) -> Self {
        c.busy.fetch_add(1, Ordering::Relaxed);
        c.last.store(now_ms(), Ordering::Relaxed);
        Busy(c.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last.store(now_ms(), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its connection marked busy while it is sent.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Asks the connection idle the longest (no request in flight) to close.
/// Returns whether there was one.
fn evict_idlest(conns: &Conns) -> bool {
    let map = conns.lock().unwrap_or_else(|p| p.into_inner());
    let idlest = map
        .values()
        .filter(|c| c.busy.load(Ordering::Relaxed) == 0)
        .min_by_key(|c| c.last.load(Ordering::Relaxed));
    if let Some(c) = idlest {
        // Stored as a permit if its task is not waiting right now.
        c.evict.notify_one();
    }
    idlest.is_some()
}

/// Serves `router` on `listener` within `limits` until `signal` resolves.
pub async fn serve(
    mut listener: TcpListener,
    router: Router,
    limits: Limits,
    signal: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    let conns: Arc<Conns> = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(());
    // Every connection task holds a receiver; shutdown waits for them.
    let (done_tx, done_rx) = watch::channel(());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .max_headers(64);
    let mut signal = pin!(signal);
    let mut next_id = 0u64;
    loop {
        let (tcp, _peer) = tokio::select! {
            // axum's accept backs off on errors such as running out of
            // file descriptors.
            io = Listener::accept(&mut listener) => io,
            _ = &mut signal => break,
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the cap: make room by closing the idlest connection;
                // if every one is busy, this one is turned away.
                if !evict_idlest(&conns) {
                    continue;
                }
                match tokio::time::timeout(limits.evict_grace * 2, slots.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(p)) => p,
                    _ => continue,
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let conn = Arc::new(Conn {
            last: AtomicU64::new(now_ms()),
            busy: AtomicUsize::new(0),
            evict: Notify::new(),
        });
        conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, conn.clone());
        let (router, tracked) = (router.clone(), conn.clone());
        let service = service_fn(move |req: hyper::Request<Incoming>| {
            let busy = Busy::new(&tracked);
            let router = router.clone();
            async move {
                router
                    .oneshot(req)
                    .await
                    .map(|r| r.map(|inner| Body::new(Tracked { inner, _busy: busy })))
            }
        });
        let (mut stop, done, conns, http, grace) = (
            stop_rx.clone(),
            done_rx.clone(),
            conns.clone(),
            http.clone(),
            limits.evict_grace,
        );
        tokio::spawn(async move {
            let (_permit, _done) = (permit, done);
            let mut served = pin!(http.serve_connection(TokioIo::new(tcp), service));
            // Armed when the connection is asked to close: one still
            // sending its headers is dropped once it passes.
            let mut kill = pin!(tokio::time::sleep(Duration::from_secs(86_400 * 365)));
            let mut asked = false;
            loop {
                tokio::select! {
                    r = served.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!("connection: {e}");
                        }
                        break;
                    }
                    _ = stop.changed(), if !asked => {
                        asked = true;
                        served.as_mut().graceful_shutdown();
                    }
                    _ = conn.evict.notified(), if !asked => {
                        asked = true;
                        served.as_mut().graceful_shutdown();
                        kill.as_mut().reset(tokio::time::Instant::now() + grace);
                    }
                    _ = &mut kill, if asked => {
                        if conn.busy.load(Ordering::Relaxed) == 0 {
                            break;
                        }
                        kill.as_mut().reset(tokio::time::Instant::now() + grace);
                    }
                }
            }
            conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        });
    }
    drop(listener);
    let _ = stop_tx.send(());
    drop(done_rx);
    if tokio::time::timeout(limits.drain, done_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connections were still open {:?} after shutdown began",
            done_tx.receiver_count(),
            limits.drain
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_file_limit() {
        let l = Limits::capped(usize::MAX, Duration::from_secs(1));
        let files = open_files_limit().unwrap_or(1024);
        assert!(l.connections <= files * 3 / 4, "{l:?}");
        assert_eq!(
            Limits::capped(10, Duration::from_secs(1)).connections,
            10.min(files * 3 / 4)
        );
    }

    #[test]
    fn the_idlest_connection_with_nothing_in_flight_is_evicted() {
        let conn = |last, busy| {
            Arc::new(Conn {
                last: AtomicU64::new(last),
                busy: AtomicUsize::new(busy),
                evict: Notify::new(),
            })
        };
        let conns: Conns = Mutex::new(HashMap::from([
            (1, conn(5, 1)),
            (2, conn(10, 0)),
            (3, conn(20, 0)),
        ]));
        assert!(evict_idlest(&conns));
        let map = conns.lock().unwrap();
        // Only the idle one that waited longest holds the permit.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let got = |id: u64| {
            let c = map[&id].clone();
            rt.block_on(async move {
                tokio::time::timeout(Duration::from_millis(20), c.evict.notified())
                    .await
                    .is_ok()
            })
        };
        assert!(got(2));
        assert!(!got(1));
        assert!(!got(3));
        drop(map);
        let busy: Conns = Mutex::new(HashMap::from([(1, conn(5, 1))]));
        assert!(!evict_idlest(&busy));
    }
}
