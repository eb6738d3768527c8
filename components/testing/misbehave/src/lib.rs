//! A connector that misbehaves on purpose, so tests can show the host
//! survives it. The config's `"do"` picks the misbehaviour:
//!
//! - `loop`: spins forever in `read` (stopped by the epoch deadline);
//! - `hog`: allocates without end (stopped by the memory cap);
//! - `escape`: reads `"target"`, an object outside the grant;
//! - `garbage`: returns bytes that are not Arrow IPC;
//! - `list`: lists `"target"`;
//! - `panic`: panics inside the component;
//! - `leak`: logs its whole config, asks for `"target"` (outside the grant,
//!   so the host's denial quotes it), then fails with an error quoting the
//!   config raw, JSON-escaped and percent-encoded — what redaction must
//!   catch when the config holds a secret;
//! - `connect`: connects to `"target"` (`host:port`; over TLS with
//!   `"tls": "true"`), sends `"send"` and yields one row: the length of the
//!   first line the peer answers;
//! - `follow`: connects to `"target"`, then to the `host:port` the peer
//!   answers with, as a Kafka client follows the brokers a cluster
//!   advertises;
//! - `hang`: connects to `"target"` and waits for bytes that never come.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

use sluice_connector_sdk::{
    Batch, ConnectorSpec, Error, Guest, GuestReader, Reader, StreamInfo, SyncMode,
    export_connector, host, ipc, net::Connection,
};

struct Misbehave;

fn field(config: &str, name: &str) -> Result<String, Error> {
    let v: serde_json::Value =
        serde_json::from_str(config).map_err(|e| Error::Config(e.to_string()))?;
    v.get(name)
        .and_then(|d| d.as_str())
        .map(str::to_string)
        .ok_or_else(|| Error::Config(format!("missing '{name}'")))
}

impl Guest for Misbehave {
    type Reader = Bad;

    fn spec() -> ConnectorSpec {
        ConnectorSpec {
            name: "misbehave".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "misbehaves on purpose, for sandbox tests".into(),
            config_schema: "{}".into(),
            modes: vec![SyncMode::FullRefresh],
        }
    }

    fn check(config: String) -> Result<(), Error> {
        field(&config, "do").map(|_| ())
    }

    fn discover(_config: String) -> Result<Vec<StreamInfo>, Error> {
        Ok(vec![StreamInfo {
            name: "bad".into(),
            arrow_schema: ipc::encode_schema(&schema())?,
            cursor_fields: vec![],
            primary_key: vec![],
        }])
    }

    fn read(config: String, _stream: String, _state: Option<String>) -> Result<Reader, Error> {
        Ok(Reader::new(Bad {
            config: config.clone(),
            what: field(&config, "do")?,
            target: field(&config, "target").unwrap_or_default(),
            calls: Cell::new(0),
        }))
    }
}

/// The misbehaving reader.
pub struct Bad {
    config: String,
    what: String,
    target: String,
    calls: Cell<u64>,
}

impl GuestReader for Bad {
    fn next(&self) -> Result<Option<Batch>, Error> {
        self.calls.set(self.calls.get() + 1);
        match self.what.as_str() {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "escape" => {
                let bytes = host::get_range(&self.target, 0, 1024)?;
                Err(Error::Other(format!(
                    "escaped the grant: read {} bytes",
                    bytes.len()
                )))
            }
            "list" => {
                let found = host::list_objects(&self.target, None, 10)?;
                Err(Error::Other(format!(
                    "escaped the grant: listed {} objects",
                    found.len()
                )))
            }
            "garbage" if self.calls.get() == 1 => Ok(Some(Batch {
                ipc: b"definitely not arrow ipc".to_vec(),
                checkpoint: None,
            })),
            "garbage" => Ok(None),
            "panic" => panic!("misbehave: panic on purpose"),
            "leak" => {
                host::log(host::Level::Warn, &format!("my config is {}", self.config));
                // A URL built around the secret: the host's denial quotes it.
                let token = field(&self.config, "token").unwrap_or_default();
                let denied = host::get_range(&format!("{}?token={token}", self.target), 0, 1)
                    .err()
                    .map(|e| format!("{e:?}"))
                    .unwrap_or_default();
                let encoded: String = self
                    .config
                    .bytes()
                    .map(|b| match b {
                        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            char::from(b).to_string()
                        }
                        b => format!("%{b:02X}"),
                    })
                    .collect();
                Err(Error::Data(format!(
                    "leaking {} / {} / {encoded} / {denied}",
                    self.config,
                    serde_json::to_string(&self.config).unwrap_or_default()
                )))
            }
            "connect" if self.calls.get() == 1 => {
                let tls = field(&self.config, "tls").is_ok_and(|t| t == "true");
                let send = field(&self.config, "send").unwrap_or_default();
                let answer = ask_over(&self.target, &send, tls)?;
                let x = Int64Array::from(vec![answer.len() as i64]);
                let batch = RecordBatch::try_new(schema(), vec![Arc::new(x)])?;
                Ok(Some(Batch {
                    ipc: ipc::encode_batch(&batch)?,
                    checkpoint: None,
                }))
            }
            "connect" => Ok(None),
            "follow" => {
                let next = ask(&self.target, "where to?\n")?;
                let answer = ask(&next, "hello\n")?;
                Err(Error::Other(format!(
                    "escaped the grant: {next} answered '{answer}'"
                )))
            }
            "hang" => {
                let mut c = connect(&self.target)?;
                let mut byte = [0u8; 1];
                let n = c.read(&mut byte).map_err(|e| Error::Io(e.to_string()))?;
                Err(Error::Other(format!("the peer sent {n} bytes")))
            }
            other => Err(Error::Config(format!("unknown misbehaviour '{other}'"))),
        }
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]))
}

fn connect(target: &str) -> Result<Connection, Error> {
    connect_over(target, false)
}

fn connect_over(target: &str, tls: bool) -> Result<Connection, Error> {
    let (host, port) = target
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse().ok()?)))
        .ok_or_else(|| Error::Config(format!("target '{target}' is not host:port")))?;
    Connection::open(host, port, tls)
}

/// Connects to `target`, sends `message` and returns the first line of the
/// answer.
fn ask(target: &str, message: &str) -> Result<String, Error> {
    ask_over(target, message, false)
}

/// [`ask`], over TLS when `tls`.
fn ask_over(target: &str, message: &str, tls: bool) -> Result<String, Error> {
    let io = |e: std::io::Error| Error::Io(format!("{target}: {e}"));
    let mut c = connect_over(target, tls)?;
    c.write_all(message.as_bytes()).map_err(io)?;
    c.flush().map_err(io)?;
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).map_err(io)?;
    Ok(line.trim_end().to_string())
}

export_connector!(Misbehave);
