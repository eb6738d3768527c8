//! Where a component may connect, and connecting there: the outbound
//! policy `sluice serve` applies to hosted functions' HTTP and connectors'
//! network grants share.
//!
//! Invariants:
//! - a connection goes out only to a `scheme://host:port` an allow-list
//!   entry names (`*.domain` and port `*` allowed);
//! - the host is resolved here, and every address it resolves to is
//!   checked: loopback, private, link-local and other non-public addresses
//!   are reached only when the entry names that very address; cloud
//!   metadata and unspecified (`0.0.0.0`, `::`) addresses never are;
//! - the connection goes to the address that was checked, for TLS too
//!   ([`send_pinned`], and the network capability: the certificate is
//!   verified for the name, the socket is opened to the checked address),
//!   so a second lookup cannot rebind the name elsewhere.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use anyhow::Result;
use axum::http::{self, Uri};
use http_body_util::BodyExt;
use sluice_pipeline::pipeline::NETWORK_SCHEMES;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// Where a component may connect.
#[derive(Debug)]
pub struct AllowList {
    rules: Vec<Rule>,
    /// What grants the rules, for messages.
    setting: &'static str,
}

#[derive(Debug, PartialEq)]
struct Rule {
    /// `http`, `https` or `*` for HTTP; `*` for TCP, whatever protocol
    /// the entry names.
    scheme: String,
    host: HostPattern,
    /// `None`: any port.
    port: Option<u16>,
}

#[derive(Debug, PartialEq)]
enum HostPattern {
    /// This name or address.
    Exact(String),
    /// Any subdomain of this name (`*.example.com` → `.example.com`).
    Subdomains(String),
}

/// A connection the allow-list refuses: why, and the reason the host logs.
#[derive(Debug)]
pub struct Refusal {
    /// Why.
    pub kind: Refused,
    /// What the host logs.
    pub reason: String,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The address has no host or port.
    Invalid,
    /// No entry names the scheme, host and port.
    NotAllowed,
    /// The name does not resolve (the resolver's words).
    Unresolved(String),
    /// The name resolves to no address.
    NoAddress,
    /// The name resolves to an address only a literal entry reaches, or
    /// none does.
    Prohibited,
}

impl Refusal {
    /// The `wasi:http` error a hosted function is told.
    pub fn http_code(&self) -> HttpError {
        match &self.kind {
            Refused::Invalid => HttpError::HttpRequestUriInvalid,
            Refused::NotAllowed => HttpError::HttpRequestDenied,
            Refused::Unresolved(e) => HttpError::DnsError {
                rcode: Some(e.clone()),
                info_code: None,
            },
            Refused::NoAddress => HttpError::DestinationNotFound,
            Refused::Prohibited => HttpError::DestinationIpProhibited,
        }
    }
}

fn http_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl Default for AllowList {
    /// No network grants: nowhere.
    fn default() -> Self {
        AllowList {
            rules: Vec::new(),
            setting: "grants.network",
        }
    }
}

impl AllowList {
    /// A hosted function's `allowed_outbound_hosts`: entries such as
    /// `https://api.example.com`, `http://127.0.0.1:8080`,
    /// `https://*.example.com:*`.
    pub fn parse(entries: &[String]) -> Result<Self> {
        Self::parse_as(entries, "allowed_outbound_hosts", |scheme| {
            ["http", "https", "*"]
                .contains(&scheme)
                .then(|| (scheme.to_string(), http_port(scheme)))
                .ok_or("the scheme must be http, https or *")
        })
    }

    /// A connector's network grants: entries such as
    /// `kafka://broker-1:9092`, `tcp://*.brokers.example.com:9092`,
    /// `postgres://10.0.0.5` (TCP, whatever the protocol named).
    pub fn network(entries: &[String]) -> Result<Self> {
        Self::parse_as(entries, "grants.network", |scheme| {
            NETWORK_SCHEMES
                .iter()
                .find(|(s, _)| *s == scheme)
                .map(|(_, port)| ("*".to_string(), *port))
                .ok_or("the scheme must be tcp, tls, kafka, postgres or mysql")
        })
    }

    /// Parses `entries` of `setting`; `scheme` gives the scheme a rule
    /// matches and the port it defaults to, or why the scheme is refused.
    fn parse_as(
        entries: &[String],
        setting: &'static str,
        scheme: impl Fn(&str) -> Result<(String, Option<u16>), &'static str>,
    ) -> Result<Self> {
        let mut rules = Vec::new();
        for e in entries {
            let bad = |why: &str| {
                anyhow::anyhow!(
                    "{setting} entry '{e}': {why} (write scheme://host[:port], e.g. {})",
                    if setting == "grants.network" {
                        "kafka://broker-1:9092 or tcp://*.example.com:5432"
                    } else {
                        "https://api.example.com or http://127.0.0.1:8080"
                    }
                )
            };
            let (written, rest) = e.split_once("://").ok_or_else(|| bad("no scheme"))?;
            let (matched, default_port) = scheme(&written.to_ascii_lowercase()).map_err(bad)?;
            let rest = rest.trim_end_matches('/');
            if rest.contains('/') || rest.contains('@') {
                return Err(bad("give only a host and port, no path or user"));
            }
            let (host, port) = split_host_port(rest).ok_or_else(|| bad("bad host or port"))?;
            let port = match port {
                Some("*") => None,
                Some(p) => Some(p.parse::<u16>().map_err(|_| bad("bad port"))?),
                None => Some(default_port.ok_or_else(|| bad("give a port, or * for any"))?),
            };
            let host = host.to_ascii_lowercase();
            if host
                .parse::<IpAddr>()
                .is_ok_and(|ip| restricted(ip) == Some(Restricted::Unspecified))
            {
                return Err(bad(
                    "an unspecified address (0.0.0.0, ::) reaches this host itself; name the address to reach",
                ));
            }
            let host = match host.strip_prefix("*.") {
                Some(domain) if !domain.is_empty() && !domain.contains('*') => {
                    HostPattern::Subdomains(format!(".{domain}"))
                }
                _ if host.contains('*') || host.is_empty() => {
                    return Err(bad("a host may only start with '*.'"));
                }
                _ => HostPattern::Exact(host),
            };
            rules.push(Rule {
                scheme: matched,
                host,
                port,
            });
        }
        Ok(AllowList { rules, setting })
    }

    /// Adds a rule admitting exactly `host`:`port` (a name or address the
    /// user typed, as the CLI grants a connector's bootstrap servers).
    pub fn admit_exactly(&mut self, host: &str, port: u16) {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        self.rules.push(Rule {
            scheme: "*".into(),
            host: HostPattern::Exact(host),
            port: Some(port),
        });
    }

    /// Whether no rule admits anything.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn rule_for(&self, scheme: &str, host: &str, port: u16) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            (r.scheme == "*" || r.scheme == scheme)
                && r.port.is_none_or(|p| p == port)
                && match &r.host {
                    HostPattern::Exact(h) => h == host,
                    HostPattern::Subdomains(suffix) => host.ends_with(suffix.as_str()),
                }
        })
    }

    /// Checks `uri` against the rules, resolves its host and checks every
    /// address; returns the address to connect to.
    pub async fn admit(&self, uri: &Uri) -> Result<SocketAddr, Refusal> {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let invalid = |why: &str| Refusal {
            kind: Refused::Invalid,
            reason: why.into(),
        };
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let port = uri
            .port_u16()
            .or_else(|| http_port(&scheme))
            .ok_or_else(|| invalid("no port"))?;
        self.admit_host(&scheme, host, port).await
    }

    /// Checks `scheme://host:port` against the rules, resolves the host and
    /// checks every address; returns the address to connect to.
    pub async fn admit_host(
        &self,
        scheme: &str,
        host: &str,
        port: u16,
    ) -> Result<SocketAddr, Refusal> {
        let refuse = |kind, reason: String| Refusal { kind, reason };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(refuse(Refused::Invalid, "no host".into()));
        }
        let setting = self.setting;
        let rule = self.rule_for(scheme, &host, port).ok_or_else(|| {
            refuse(
                Refused::NotAllowed,
                format!("{scheme}://{host}:{port} is not in {setting}"),
            )
        })?;
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| {
                    refuse(
                        Refused::Unresolved(e.to_string()),
                        format!("resolving {host}: {e}"),
                    )
                })?
                .collect(),
        };
        let Some(first) = addrs.first().copied() else {
            return Err(refuse(Refused::NoAddress, format!("{host} has no address")));
        };
        // Every address must pass, so a name that resolves to one public
        // and one private address cannot be used to reach the private one.
        for a in &addrs {
            if let Some(kind) = restricted(a.ip()) {
                let named = matches!(&rule.host, HostPattern::Exact(h) if h.parse::<IpAddr>().ok() == Some(a.ip()));
                if !named || kind.never() {
                    return Err(refuse(
                        Refused::Prohibited,
                        format!(
                            "{host} resolves to {} ({kind}); only a {setting} entry naming that address itself reaches it{}",
                            a.ip(),
                            if kind.never() {
                                ", and metadata and unspecified addresses never"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            }
        }
        Ok(first)
    }
}

fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p))),
        Some(_) => None,
        None => Some((text, None)),
    }
}

/// Address ranges a function reaches only when named explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restricted {
    Loopback,
    Private,
    LinkLocal,
    Metadata,
    /// `0.0.0.0` or `::`: connecting to it reaches this host.
    Unspecified,
    Other,
}

impl Restricted {
    /// Whether even an allow-list entry naming the address does not reach
    /// it.
    fn never(self) -> bool {
        matches!(self, Restricted::Metadata | Restricted::Unspecified)
    }
}

impl std::fmt::Display for Restricted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Restricted::Loopback => "a loopback address",
            Restricted::Private => "a private address",
            Restricted::LinkLocal => "a link-local address",
            Restricted::Metadata => "a cloud metadata address",
            Restricted::Unspecified => "an unspecified address, which reaches this host",
            Restricted::Other => "a non-public address",
        })
    }
}

fn restricted(ip: IpAddr) -> Option<Restricted> {
    match ip {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => restricted_v4(v4),
            None => restricted_v6(v6),
        },
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<Restricted> {
    let o = ip.octets();
    if [
        Ipv4Addr::new(169, 254, 169, 254),
        Ipv4Addr::new(169, 254, 170, 2),
        Ipv4Addr::new(100, 100, 100, 200),
        Ipv4Addr::new(168, 63, 129, 16),
    ]
    .contains(&ip)
    {
        Some(Restricted::Metadata)
    } else if o[0] == 0 {
        // 0.0.0.0/8: "this network"; 0.0.0.0 itself reaches this host.
        Some(Restricted::Unspecified)
    } else if ip.is_loopback() {
        Some(Restricted::Loopback)
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        // RFC 1918 and the shared (carrier-grade NAT) range.
        Some(Restricted::Private)
    } else if ip.is_link_local() {
        Some(Restricted::LinkLocal)
    } else if ip.is_broadcast()
        || ip.is_multicast()
        || o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
    {
        Some(Restricted::Other)
    } else {
        None
    }
}

fn restricted_v6(ip: Ipv6Addr) -> Option<Restricted> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address that
    // is checked as such.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return restricted_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return restricted_v4(embedded(s[1], s[2]));
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some(Restricted::Metadata)
    } else if ip.is_unspecified() {
        Some(Restricted::Unspecified)
    } else if ip.is_loopback() {
        Some(Restricted::Loopback)
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some(Restricted::Private)
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some(Restricted::LinkLocal)
    } else if ip.is_multicast() {
        Some(Restricted::Other)
    } else {
        None
    }
}

/// Roots and protocols for outbound TLS: the Mozilla roots compiled in
/// (as the default sender uses), with the ring provider Sluice builds.
pub(crate) static TLS: LazyLock<Option<Arc<rustls::ClientConfig>>> =
    LazyLock::new(|| tls_config(None, None).ok());

/// A TLS client configuration: the roots in `ca` (PEM, a pipeline's
/// `network_ca`) or the public ones, and a client certificate (`chain`
/// and `key`, PEM) when it has one.
pub fn tls_config(
    ca: Option<&[u8]>,
    client: Option<(&[u8], &[u8])>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let roots = match ca {
        None => rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(cert.context("network_ca: not a PEM certificate")?)
                    .context("network_ca")?;
            }
            anyhow::ensure!(!roots.is_empty(), "network_ca holds no certificate");
            roots
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain)
                .collect::<Result<Vec<_>, _>>()
                .context("network_client_cert: not a PEM certificate chain")?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .context("network_client_key: not a PEM private key")?;
            builder
                .with_client_auth_cert(chain, key)
                .context("network_client_cert and network_client_key")?
        }
    };
    Ok(Arc::new(config))
}

/// The response of an outbound request and the future that drives its
/// connection, as `wasi:http`'s sender hands them back.
pub type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
);

/// Sends `req` over TLS to `addr` (already checked against the allow-list)
/// and verifies the server's certificate for `host`, honouring the
/// request's connect, first-byte and between-bytes timeouts.
pub async fn send_pinned(
    mut req: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    addr: SocketAddr,
    host: &str,
) -> wasmtime_wasi_http::Result<Sent> {
    let limit = |d: Option<Duration>| d.unwrap_or(Duration::from_secs(600));
    let connect = limit(options.and_then(|o| o.connect_timeout));
    let first = limit(options.and_then(|o| o.first_byte_timeout));
    let between = limit(options.and_then(|o| o.between_bytes_timeout)).max(Duration::from_nanos(1));
    let tls = TLS
        .clone()
        .ok_or_else(|| HttpError::InternalError(Some("no TLS configuration".into())))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let (mut sender, conn) = tokio::time::timeout(connect, async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(HttpError::Connect)?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(HttpError::Tls)?;
        hyper::client::conn::http1::handshake::<_, WasiBody>(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(HttpError::from)
    })
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // Drives the connection's I/O; it ends once the sender and the body
    // are dropped, and is cancelled with the request's task.
    let conn = AbortOnDrop(tokio::spawn(conn));
    // The request line names only the path: the Host header has the name.
    let target: Uri = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    *req.uri_mut() = target;
    let response = tokio::time::timeout(first, sender.send_request(req))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)?
        .map_err(HttpError::from)?;
    let response = response.map(|inner| {
        Paced {
            inner,
            between,
            sleep: Box::pin(tokio::time::sleep(between)),
        }
        .boxed_unsync()
    });
    let driver = async move {
        match conn.wait().await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.is_timeout() => Err(HttpError::HttpResponseTimeout),
            Ok(Err(e)) => Err(HttpError::from(e)),
            Err(_) => Err(HttpError::ConnectionTerminated),
        }
    };
    Ok((response, Box::new(driver)))
}

/// A spawned task cancelled when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn wait(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response body that fails when the server sends nothing for `between`.
struct Paced {
    inner: hyper::body::Incoming,
    between: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Paced {
    type Data = bytes::Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let at = tokio::time::Instant::now() + this.between;
                this.sleep.as_mut().reset(at);
                Poll::Ready(frame.map(|r| {
                    r.map_err(|e| {
                        if e.is_timeout() {
                            HttpError::HttpResponseTimeout
                        } else {
                            HttpError::from(e)
                        }
                    })
                }))
            }
            Poll::Pending => {
                ready!(this.sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn the_allow_list_admits_only_what_it_names() {
        let l = list(&[
            "http://127.0.0.1:8080",
            "https://*.example.com",
            "http://localhost:*",
        ]);
        assert_eq!(
            l.admit(&uri("http://127.0.0.1:8080/tables/t/upload"))
                .await
                .unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        let denied = l.admit(&uri("http://127.0.0.1:9090/")).await.unwrap_err();
        assert_eq!(denied.kind, Refused::NotAllowed);
        let denied = l.admit(&uri("https://example.com/")).await.unwrap_err();
        assert_eq!(denied.kind, Refused::NotAllowed);
        // A name is checked after resolution: localhost is loopback, and
        // the entry names a host, not that address.
        let refused = l.admit(&uri("http://localhost:8080/")).await.unwrap_err();
        assert_eq!(refused.kind, Refused::Prohibited, "{}", refused.reason);
    }

    #[tokio::test]
    async fn metadata_addresses_are_never_reached() {
        let l = list(&["http://169.254.169.254", "http://10.0.0.1:*"]);
        let refused = l
            .admit(&uri("http://169.254.169.254/latest/meta-data"))
            .await
            .unwrap_err();
        assert!(refused.reason.contains("metadata"), "{}", refused.reason);
        assert!(l.admit(&uri("http://10.0.0.1:5000/")).await.is_ok());
    }

    #[test]
    fn address_ranges() {
        let r = |s: &str| restricted(s.parse().unwrap());
        assert_eq!(r("10.1.2.3"), Some(Restricted::Private));
        assert_eq!(r("172.16.0.1"), Some(Restricted::Private));
        assert_eq!(r("192.168.1.1"), Some(Restricted::Private));
        assert_eq!(r("100.64.0.1"), Some(Restricted::Private));
        assert_eq!(r("169.254.1.1"), Some(Restricted::LinkLocal));
        assert_eq!(r("169.254.169.254"), Some(Restricted::Metadata));
        assert_eq!(r("::ffff:127.0.0.1"), Some(Restricted::Loopback));
        assert_eq!(r("fd12::1"), Some(Restricted::Private));
        assert_eq!(r("fe80::1"), Some(Restricted::LinkLocal));
        assert_eq!(r("0.0.0.0"), Some(Restricted::Unspecified));
        assert_eq!(r("0.1.2.3"), Some(Restricted::Unspecified));
        assert_eq!(r("::"), Some(Restricted::Unspecified));
        assert_eq!(r("::ffff:0.0.0.0"), Some(Restricted::Unspecified));
        assert_eq!(r("8.8.8.8"), None);
        assert_eq!(r("2606:4700::1111"), None);
        assert_eq!(r("64:ff9b::10.0.0.1"), Some(Restricted::Private));
        assert_eq!(r("2002:7f00:1::"), Some(Restricted::Loopback));
        assert_eq!(r("168.63.129.16"), Some(Restricted::Metadata));
    }

    #[test]
    fn bad_entries_say_how_to_write_one() {
        for bad in [
            "example.com",
            "ftp://x",
            "https://a/b",
            "https://*",
            "*://x",
            "http://x:port",
            "http://0.0.0.0:8080",
            "http://[::]:8080",
        ] {
            let e = AllowList::parse(&[bad.to_string()])
                .unwrap_err()
                .to_string();
            assert!(e.contains("scheme://host"), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn network_grants_admit_tcp_by_name_and_port_whatever_the_protocol() {
        let l = AllowList::network(&[
            "kafka://127.0.0.1".to_string(),
            "tcp://*.brokers.example.com:*".to_string(),
            "postgres://localhost:5433".to_string(),
        ])
        .unwrap();
        // kafka:// defaults to port 9092; any grant admits any protocol.
        assert!(l.admit_host("tcp", "127.0.0.1", 9092).await.is_ok());
        let denied = l.admit_host("tcp", "127.0.0.1", 9093).await.unwrap_err();
        assert_eq!(denied.kind, Refused::NotAllowed);
        assert!(
            denied.reason.contains("grants.network"),
            "{}",
            denied.reason
        );
        // A granted name that resolves to loopback is refused: only a
        // grant naming the address reaches it.
        let refused = l.admit_host("tcp", "localhost", 5433).await.unwrap_err();
        assert_eq!(refused.kind, Refused::Prohibited, "{}", refused.reason);
        for bad in ["http://x:1", "tcp://x", "tcp://x/y", "tcp://0.0.0.0:1"] {
            let e = AllowList::network(&[bad.to_string()])
                .unwrap_err()
                .to_string();
            assert!(e.contains("grants.network"), "{bad}: {e}");
        }
    }
}
