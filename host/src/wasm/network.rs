//! The `network` interface a connector imports: TCP connections to the
//! hosts its pipeline grants, opened, secured and metered by the host.
//!
//! Invariants:
//! - a connection is opened only to an address [`AllowList::admit_host`]
//!   checked (by name and port before resolving, every resolved address
//!   after), and to that very address;
//! - TLS runs here, with the host's roots; the component sees plaintext;
//! - a guest blocked on a read or write is released at the call's
//!   deadline, with a trap the session reports as the time limit (epochs
//!   only interrupt running wasm, not a host call that waits);
//! - every byte read or written is counted into the run's counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError,
    StreamResult,
    pipe::{AsyncReadStream, AsyncWriteStream},
};

use crate::engine::redact::Redactor;
use crate::wasm::bindings::{ConnectorError, NetworkHost, Security};
use crate::wasm::capability::Counters;
use crate::wasm::outbound::{AllowList, Refused, TLS};

/// How long opening a connection (and its TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes a write may queue before the guest waits for the socket.
const WRITE_BUDGET: usize = 64 << 10;

/// The time by which the component's current call must end, shared by the
/// session (which sets it before each call) and the streams it opened.
#[derive(Debug, Default)]
pub struct Deadline(Mutex<Option<Instant>>);

impl Deadline {
    /// The current call ends at `at`.
    pub fn set(&self, at: Instant) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    fn at(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn passed(&self) -> bool {
        self.at().is_some_and(|at| Instant::now() >= at)
    }

    /// Resolves at the deadline; never, without one.
    async fn reached(&self) {
        match self.at() {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    }
}

/// The trap a stream raises once its call's deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("the call's time limit passed while the connector waited on the network")]
pub struct DeadlinePassed;

/// What one component instance may reach over the network.
pub struct Network {
    allow: Arc<AllowList>,
    /// The pipeline's TLS settings; `None`: the public roots.
    tls: Option<Arc<rustls::ClientConfig>>,
    deadline: Arc<Deadline>,
    counters: Arc<Counters>,
    redactor: Redactor,
    component: String,
}

impl Network {
    /// Connections to what `allow` admits, for `component`; reads and
    /// writes counted into `counters`.
    pub fn new(
        component: &str,
        (allow, tls): (Arc<AllowList>, Option<Arc<rustls::ClientConfig>>),
        counters: Arc<Counters>,
        redactor: Redactor,
    ) -> Self {
        Network {
            allow,
            tls,
            deadline: Arc::default(),
            counters,
            redactor,
            component: component.to_string(),
        }
    }

    /// These connections, with refusals redacted by `redactor`.
    pub fn redacting(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// The deadline the session sets before each call.
    pub fn deadline(&self) -> &Deadline {
        &self.deadline
    }

    fn refused(&self, e: ConnectorError) -> ConnectorError {
        let redact = |m: String| self.redactor.text(&m);
        let e = match e {
            ConnectorError::Auth(m) => ConnectorError::Auth(redact(m)),
            ConnectorError::Io(m) => ConnectorError::Io(redact(m)),
            other => other,
        };
        tracing::warn!(
            target: "sluice::audit",
            "component '{}': no connection: {}",
            self.component,
            crate::wasm::session::describe(&e)
        );
        e
    }

    /// Checks, resolves and connects; TLS on top when asked.
    async fn open(
        &self,
        host: &str,
        port: u16,
        security: Security,
    ) -> Result<(DynInputStream, DynOutputStream), ConnectorError> {
        let scheme = match security {
            Security::Plaintext => "tcp",
            Security::Tls => "tls",
        };
        let (tcp, addr) = self.tcp(scheme, host, port).await?;
        let streams = self.streams(tcp, host, addr, security);
        tokio::time::timeout(CONNECT_TIMEOUT, streams)
            .await
            .map_err(|_| self.late(host, port, addr))?
    }

    /// Connects in plaintext, asks with `request`, and runs TLS when the
    /// answer is `accept` (`network.connect-upgraded`).
    async fn open_upgraded(
        &self,
        host: &str,
        port: u16,
        request: &[u8],
        accept: u8,
    ) -> Result<(u8, DynInputStream, DynOutputStream), ConnectorError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut tcp, addr) = self.tcp("tcp", host, port).await?;
        let unreachable = |e: std::io::Error| failed(host, port, addr, e);
        let upgrade = async {
            tcp.write_all(request).await.map_err(unreachable)?;
            let answer = tcp.read_u8().await.map_err(unreachable)?;
            let security = if answer == accept {
                Security::Tls
            } else {
                Security::Plaintext
            };
            let (input, output) = self.streams(tcp, host, addr, security).await?;
            Ok((answer, input, output))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, upgrade)
            .await
            .map_err(|_| self.late(host, port, addr))?
    }

    fn late(&self, host: &str, port: u16, addr: SocketAddr) -> ConnectorError {
        failed(
            host,
            port,
            addr,
            format!("no connection within {CONNECT_TIMEOUT:?}"),
        )
    }

    /// Checks `host`:`port` against the grants (as `scheme`), resolves and
    /// connects.
    async fn tcp(
        &self,
        scheme: &str,
        host: &str,
        port: u16,
    ) -> Result<(tokio::net::TcpStream, SocketAddr), ConnectorError> {
        let addr = self
            .allow
            .admit_host(scheme, host, port)
            .await
            .map_err(|r| match r.kind {
                Refused::NotAllowed | Refused::Prohibited | Refused::Invalid => {
                    ConnectorError::Auth(format!("the host denied the connection: {}", r.reason))
                }
                Refused::Unresolved(_) | Refused::NoAddress => ConnectorError::Io(r.reason),
            })?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| self.late(host, port, addr))?
            .map_err(|e| failed(host, port, addr, e))?;
        tcp.set_nodelay(true).ok();
        Ok((tcp, addr))
    }

    async fn streams(
        &self,
        tcp: tokio::net::TcpStream,
        host: &str,
        addr: SocketAddr,
        security: Security,
    ) -> Result<(DynInputStream, DynOutputStream), ConnectorError> {
        let (input, output): (DynInputStream, DynOutputStream) = match security {
            Security::Plaintext => {
                let (r, w) = tcp.into_split();
                (
                    Box::new(AsyncReadStream::new(r)),
                    Box::new(AsyncWriteStream::new(WRITE_BUDGET, w)),
                )
            }
            Security::Tls => {
                let config = self.tls.clone().or_else(|| TLS.clone()).ok_or_else(|| {
                    ConnectorError::Other("this host has no TLS configuration".into())
                })?;
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| ConnectorError::Config(format!("'{host}' as a TLS name: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| ConnectorError::Io(format!("TLS with {host} ({addr}): {e}")))?;
                let (r, w) = tokio::io::split(tls);
                (
                    Box::new(AsyncReadStream::new(r)),
                    Box::new(AsyncWriteStream::new(WRITE_BUDGET, w)),
                )
            }
        };
        Ok((
            Box::new(self.metered(input)),
            Box::new(self.metered(output)),
        ))
    }

    fn metered<S>(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            deadline: self.deadline.clone(),
            counters: self.counters.clone(),
        }
    }
}

/// What the `network` functions see: the capability and the store's
/// resource table, where the streams go.
pub struct NetworkView<'a> {
    /// The component's network capability.
    pub network: &'a mut Network,
    /// The store's resources.
    pub table: &'a mut ResourceTable,
}

/// Marks [`NetworkView`] as the data the `network` functions get.
pub struct HasNetwork;

impl HasData for HasNetwork {
    type Data<'a> = NetworkView<'a>;
}

impl NetworkView<'_> {
    /// Puts a connection's streams in the store's table.
    #[allow(clippy::type_complexity)]
    fn push(
        &mut self,
        input: DynInputStream,
        output: DynOutputStream,
    ) -> Result<(Resource<DynInputStream>, Resource<DynOutputStream>), ConnectorError> {
        let table_full = |e: wasmtime::component::ResourceTableError| {
            ConnectorError::Other(format!("no room for another connection: {e}"))
        };
        let input = self.table.push(input).map_err(table_full)?;
        let output = self.table.push(output).map_err(table_full)?;
        Ok((input, output))
    }
}

impl NetworkHost for NetworkView<'_> {
    fn connect(
        &mut self,
        host: String,
        port: u16,
        security: Security,
    ) -> Result<(Resource<DynInputStream>, Resource<DynOutputStream>), ConnectorError> {
        let opened = wasmtime_wasi::runtime::in_tokio(self.network.open(&host, port, security));
        let (input, output) = opened.map_err(|e| self.network.refused(e))?;
        self.push(input, output)
    }

    fn connect_upgraded(
        &mut self,
        host: String,
        port: u16,
        request: Vec<u8>,
        accept: u8,
    ) -> Result<(u8, Resource<DynInputStream>, Resource<DynOutputStream>), ConnectorError> {
        let opened = wasmtime_wasi::runtime::in_tokio(
            self.network.open_upgraded(&host, port, &request, accept),
        );
        let (answer, input, output) = opened.map_err(|e| self.network.refused(e))?;
        let (input, output) = self.push(input, output)?;
        Ok((answer, input, output))
    }
}

/// A stream that counts its bytes and gives up at the call's deadline.
struct Metered<S> {
    inner: S,
    deadline: Arc<Deadline>,
    counters: Arc<Counters>,
}

impl<S> Metered<S> {
    fn check(&self) -> StreamResult<()> {
        if self.deadline.passed() {
            return Err(StreamError::Trap(DeadlinePassed.into()));
        }
        Ok(())
    }

    fn count(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl<S: Pollable> Pollable for Metered<S> {
    async fn ready(&mut self) {
        tokio::select! {
            () = self.inner.ready() => {}
            () = self.deadline.reached() => {}
        }
    }
}

#[async_trait::async_trait]
impl InputStream for Metered<DynInputStream> {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        self.check()?;
        let bytes = self.inner.read(size)?;
        Self::count(&self.counters.network_bytes_in, bytes.len());
        Ok(bytes)
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[async_trait::async_trait]
impl OutputStream for Metered<DynOutputStream> {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.check()?;
        let n = bytes.len();
        self.inner.write(bytes)?;
        Self::count(&self.counters.network_bytes_out, n);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.check()?;
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.check()?;
        self.inner.check_write()
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

/// A connection to `host:port` that failed with `e`, naming the address
/// it resolved to when that is another (a name, not an address).
fn failed(host: &str, port: u16, addr: SocketAddr, e: impl std::fmt::Display) -> ConnectorError {
    let named = format!("{host}:{port}");
    if addr.to_string() == named {
        ConnectorError::Io(format!("{named}: {e}"))
    } else {
        ConnectorError::Io(format!("{named} ({addr}): {e}"))
    }
}
