//! The network capability, end to end through the engine: a connector
//! reaches only the hosts its pipeline grants, cannot be steered elsewhere
//! by a peer, is cut off at its deadline when a peer never answers, and its
//! bytes are counted. The peers are real TCP listeners on loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::engine::{Engine, Failure, Limits, RunReport, Stop, Trigger};
use sluice_pipeline::pipeline::ConnectorRef;
use sluice_pipeline::{Format, Load, Pipeline};

static MISBEHAVE: &[u8] = include_bytes!(env!("SLUICE_MISBEHAVE_WASM"));

/// A peer on loopback that answers each connection's first line with
/// `answer` (or, with `None`, holds the connection and never answers).
fn peer(answer: Option<String>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(&mut conn).read_line(&mut line);
                match answer {
                    Some(a) => {
                        let _ = conn.write_all(format!("{a}\n").as_bytes());
                    }
                    None => std::thread::sleep(Duration::from_secs(60)),
                }
            });
        }
    });
    port
}

struct Host {
    dir: tempfile::TempDir,
    engine: Engine,
    component: PathBuf,
}

impl Host {
    fn new(call_timeout: Duration) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(
            None,
            Limits {
                call_timeout,
                ..Limits::default()
            },
            Default::default(),
            &dir.path().display().to_string(),
        )
        .unwrap();
        let component = dir.path().join("misbehave.wasm");
        std::fs::write(&component, MISBEHAVE).unwrap();
        Host {
            dir,
            engine,
            component,
        }
    }

    fn table(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    async fn run(
        &self,
        table: &str,
        config: serde_json::Value,
        network: &[String],
    ) -> Result<RunReport, Failure> {
        self.run_with_ca(table, config, network, None).await
    }

    async fn run_with_ca(
        &self,
        table: &str,
        config: serde_json::Value,
        network: &[String],
        ca: Option<String>,
    ) -> Result<RunReport, Failure> {
        let mut pipeline = Pipeline {
            connector: Some(ConnectorRef {
                id: format!("sha256:{}", "0".repeat(64)),
                config,
                stream: None,
            }),
            ..Pipeline::new(&self.table(table))
        };
        pipeline.grants.network = network.to_vec();
        pipeline.grants.network_ca = ca;
        let load = Load {
            component_file: Some(self.component.clone()),
            ..Load::new(pipeline)
        };
        self.engine
            .run(&load, &Trigger::AvailableNow, &mut (), &Stop::new())
            .await
    }

    fn committed(&self, table: &str) -> bool {
        Path::new(&self.table(table)).join("_delta_log").exists()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_reaches_only_the_hosts_its_pipeline_grants() {
    let host = Host::new(Duration::from_secs(60));
    let port = peer(Some("pong from the peer".into()));
    let target = format!("127.0.0.1:{port}");
    let ask = serde_json::json!({ "do": "connect", "target": target, "send": "ping\n" });

    // No grant: refused before any connection, the address named.
    let e = host.run("none", ask.clone(), &[]).await.unwrap_err();
    assert!(e.message.contains("access denied"), "{}", e.message);
    assert!(e.message.contains(&target), "{}", e.message);
    assert!(e.message.contains("grants.network"), "{}", e.message);
    assert!(!host.committed("none"));

    // A grant naming the host, not the address: localhost resolves to
    // loopback, which only a grant naming the address itself reaches.
    let by_name = serde_json::json!({ "do": "connect", "target": format!("localhost:{port}"), "send": "ping\n" });
    let e = host
        .run("by-name", by_name, &[format!("tcp://localhost:{port}")])
        .await
        .unwrap_err();
    assert!(e.message.contains("loopback"), "{}", e.message);

    // Another port of the granted address is not granted.
    let e = host
        .run(
            "other-port",
            ask.clone(),
            &[format!("tcp://127.0.0.1:{}", port ^ 1)],
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("access denied"), "{}", e.message);

    // Granted: the connector talks to the peer, and the bytes are counted.
    let report = host
        .run("granted", ask, &[format!("kafka://127.0.0.1:{port}")])
        .await
        .unwrap();
    assert_eq!(report.rows, 1);
    assert_eq!(report.counters.get("network-bytes-out"), Some(&5));
    assert_eq!(
        report.counters.get("network-bytes-in"),
        Some(&("pong from the peer\n".len() as u64))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_steer_a_connector_to_a_host_not_granted() {
    let host = Host::new(Duration::from_secs(60));
    // The granted peer advertises another one, as a Kafka broker
    // advertises the cluster's brokers.
    let elsewhere = peer(Some("you should not be here".into()));
    let port = peer(Some(format!("127.0.0.1:{elsewhere}")));
    let follow = serde_json::json!({ "do": "follow", "target": format!("127.0.0.1:{port}") });
    let e = host
        .run("follow", follow, &[format!("tcp://127.0.0.1:{port}")])
        .await
        .unwrap_err();
    assert!(e.message.contains("access denied"), "{}", e.message);
    assert!(
        e.message.contains(&format!("127.0.0.1:{elsewhere}")),
        "{}",
        e.message
    );
    assert!(!e.message.contains("escaped"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_is_cut_off_at_the_deadline() {
    let host = Host::new(Duration::from_secs(1));
    let port = peer(None);
    let hang = serde_json::json!({ "do": "hang", "target": format!("127.0.0.1:{port}") });
    let started = Instant::now();
    let e = host
        .run("hang", hang, &[format!("tcp://127.0.0.1:{port}")])
        .await
        .unwrap_err();
    assert!(e.message.contains("time limit"), "{}", e.message);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(!host.committed("hang"));

    // The host is unaffected: the next pipeline runs.
    let csv = host.dir.path().join("a.csv");
    std::fs::write(&csv, "x\n1\n2\n").unwrap();
    let pipeline = Pipeline {
        source: Some(csv.display().to_string()),
        format: Some(Format::Csv),
        ..Pipeline::new(&host.table("good"))
    };
    let report = host
        .engine
        .run(
            &Load::new(pipeline),
            &Trigger::AvailableNow,
            &mut (),
            &Stop::new(),
        )
        .await
        .unwrap();
    assert_eq!(report.rows, 2);
}

/// A TLS peer on loopback, its certificate for 127.0.0.1 issued by a CA of
/// its own (made with openssl), answering each connection's first line
/// with `answer`: its port and the CA (PEM).
fn tls_peer(answer: &str) -> (u16, String) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl (tests/setup installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=sluice test CA",
    ];
    openssl(&[&["req", "-x509"][..], &ec, &ca].concat());
    let peer = [
        "-keyout",
        "peer.key",
        "-out",
        "peer.csr",
        "-subj",
        "/CN=127.0.0.1",
    ];
    openssl(&[&["req"][..], &ec, &peer].concat());
    std::fs::write(
        dir.path().join("ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "peer.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "peer.pem",
        "-days",
        "1",
        "-extfile",
        "ext",
    ]);
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    let chain = CertificateDer::pem_slice_iter(&read("peer.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&read("peer.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = format!("{answer}\n");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut tcp) = conn else { return };
            let Ok(mut tls) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
            let mut line = String::new();
            if BufReader::new(&mut stream).read_line(&mut line).is_ok() {
                let _ = stream.write_all(answer.as_bytes());
                stream.conn.send_close_notify();
                let _ = stream.flush();
            }
        }
    });
    (port, String::from_utf8(read("ca.pem")).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_runs_in_the_host_against_the_pipelines_ca() {
    let host = Host::new(Duration::from_secs(60));
    let (port, ca) = tls_peer("pong over tls");
    let ask = serde_json::json!({
        "do": "connect", "target": format!("127.0.0.1:{port}"), "send": "ping\n", "tls": "true",
    });
    let grant = [format!("tls://127.0.0.1:{port}")];
    // The public roots do not vouch for the peer: the handshake fails.
    let e = host
        .run("public-roots", ask.clone(), &grant)
        .await
        .unwrap_err();
    assert!(e.message.contains("TLS with 127.0.0.1"), "{}", e.message);
    // The pipeline's CA does. The connector sees plaintext; the bytes it
    // reads and writes are counted.
    let report = host
        .run_with_ca("own-ca", ask, &grant, Some(ca))
        .await
        .unwrap();
    assert_eq!(report.rows, 1);
    assert_eq!(
        report.counters.get("network-bytes-in"),
        Some(&("pong over tls\n".len() as u64))
    );
}
