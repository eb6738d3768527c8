//! The `host` interface a connector imports: logging, counters, and
//! object-store access checked against the pipeline's grants (the
//! `network` interface is [`crate::wasm::network`]). Every line a
//! component logs, and every denial the host logs for it, passes through
//! the run's [`Redactor`] first.
//!
//! Host calls run on the component's own (blocking) thread and drive
//! object-store futures on the tokio runtime through its handle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta as StoreMeta, ObjectStoreExt};

use crate::engine::redact::Redactor;
use crate::wasm::bindings::{ConnectorError, Host, Level, ObjectMeta, TypesHost};
use crate::wasm::grants::Grants;
use crate::wasm::network::Network;

/// The most bytes one `get-range` may return: bounds host-side allocation.
pub const MAX_RANGE: u64 = 256 << 20;
/// The most objects one `list-objects` page may hold.
pub const MAX_PAGE: u32 = 10_000;

/// Counters a run accumulates across its components.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes returned by `get-range`.
    pub bytes_read: AtomicU64,
    /// Bytes components read from network connections.
    pub network_bytes_in: AtomicU64,
    /// Bytes components wrote to network connections.
    pub network_bytes_out: AtomicU64,
    /// Named counters reported by components (`rows-dropped`, ...).
    pub named: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    /// Every named counter and its value, with the network bytes in and
    /// out where a component used the network.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .named
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        for (name, counter) in [
            ("network-bytes-in", &self.network_bytes_in),
            ("network-bytes-out", &self.network_bytes_out),
        ] {
            let n = counter.load(Ordering::Relaxed);
            if n > 0 {
                all.push((name.to_string(), n));
            }
        }
        all
    }

    /// Whether a component has counted `name`.
    pub fn has(&self, name: &str) -> bool {
        self.named.lock().is_ok_and(|m| m.contains_key(name))
    }

    /// The value of counter `name`.
    pub fn get(&self, name: &str) -> u64 {
        self.named
            .lock()
            .map(|m| m.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// What one component instance may do.
pub struct HostState {
    grants: Grants,
    /// The connections it may open.
    pub network: Network,
    runtime: tokio::runtime::Handle,
    counters: Arc<Counters>,
    component: String,
    redactor: Redactor,
}

impl HostState {
    /// Capabilities for `component` (a name for log lines).
    pub fn new(
        component: impl Into<String>,
        grants: Grants,
        runtime: tokio::runtime::Handle,
        counters: Arc<Counters>,
    ) -> Self {
        let component = component.into();
        HostState {
            network: Network::new(
                &component,
                grants.network(),
                counters.clone(),
                Redactor::default(),
            ),
            grants,
            runtime,
            counters,
            component,
            redactor: Redactor::default(),
        }
    }

    /// These capabilities, with log lines and denials redacted by
    /// `redactor`.
    pub fn redacting(mut self, redactor: Redactor) -> Self {
        self.network = self.network.redacting(redactor.clone());
        self.redactor = redactor;
        self
    }

    fn denied(&self, e: crate::wasm::grants::Denied) -> ConnectorError {
        let message = self.redactor.text(&e.to_string());
        tracing::warn!(target: "sluice::audit", "denied: {message}");
        ConnectorError::Auth(message)
    }

    fn meta(like: &url::Url, m: StoreMeta) -> ObjectMeta {
        ObjectMeta {
            location: Grants::url_of(like, &m.location),
            size: m.size,
            last_modified_ms: m.last_modified.timestamp_millis(),
            etag: m.e_tag,
        }
    }
}

fn store_error(location: &str, e: object_store::Error) -> ConnectorError {
    match e {
        object_store::Error::NotFound { .. } => {
            ConnectorError::Io(format!("{location}: no such object"))
        }
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            ConnectorError::Auth(format!("{location}: {e}"))
        }
        e => ConnectorError::Io(format!("{location}: {e}")),
    }
}

/// The file a granted `file:` URL names, where it is read here rather than
/// through the store: the store hands each read to a thread of the async
/// runtime's blocking pool and back, two thread switches per call, which
/// were most of the system time of loading 10,000 small files (the
/// connector's own thread is already one that may block).
fn local_file(url: &url::Url) -> Option<std::path::PathBuf> {
    (url.scheme() == "file").then(|| url.to_file_path().ok())?
}

/// Bytes `start..end` of the local file `path` (fewer at its end), as the
/// store reads a range: a range that starts at or past the end, or a path
/// that is not a file, is an error.
fn read_local(path: &std::path::Path, start: u64, end: u64) -> Result<Vec<u8>, LocalError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::from(std::io::ErrorKind::NotFound).into());
    }
    if start >= meta.len() {
        return Err(LocalError::StartTooLarge { len: meta.len() });
    }
    let mut buf = vec![0; (end.min(meta.len()) - start) as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// Why [`read_local`] failed.
#[derive(Debug, thiserror::Error)]
enum LocalError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the range starts past the end of its {len} bytes")]
    StartTooLarge { len: u64 },
}

/// [`store_error`] for a local read.
fn local_error(location: &str, e: LocalError) -> ConnectorError {
    match e {
        LocalError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ConnectorError::Io(format!("{location}: no such object"))
        }
        LocalError::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            ConnectorError::Auth(format!("{location}: {e}"))
        }
        e => ConnectorError::Io(format!("{location}: {e}")),
    }
}

impl TypesHost for HostState {}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let c = &self.component;
        let message = self.redactor.text(&message);
        match level {
            Level::Trace => tracing::trace!(target: "sluice::component", "{c}: {message}"),
            Level::Debug => tracing::debug!(target: "sluice::component", "{c}: {message}"),
            Level::Info => tracing::info!(target: "sluice::component", "{c}: {message}"),
            Level::Warn => tracing::warn!(target: "sluice::component", "{c}: {message}"),
            Level::Error => tracing::error!(target: "sluice::component", "{c}: {message}"),
        }
    }

    fn count(&mut self, name: String, delta: u64) {
        if let Ok(mut named) = self.counters.named.lock() {
            // Bounded: a component cannot grow the map without end.
            if named.len() < 256 || named.contains_key(&name) {
                *named.entry(name).or_default() += delta;
            }
        }
    }

    fn list_objects(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<ObjectMeta>, ConnectorError> {
        let (store, path, url) = self.grants.resolve(&prefix).map_err(|e| self.denied(e))?;
        let offset = match &after {
            Some(a) => Some(self.grants.resolve(a).map_err(|e| self.denied(e))?.1),
            None => None,
        };
        let limit = limit.clamp(1, MAX_PAGE) as usize;
        self.runtime.block_on(async {
            let listing = match &offset {
                Some(o) => store.list_with_offset(Some(&path), o),
                None => store.list(Some(&path)),
            };
            let metas: Vec<StoreMeta> = listing
                .take(limit)
                .try_collect()
                .await
                .map_err(|e| store_error(&prefix, e))?;
            let mut out: Vec<ObjectMeta> = metas.into_iter().map(|m| Self::meta(&url, m)).collect();
            out.sort_by(|a, b| a.location.cmp(&b.location));
            Ok(out)
        })
    }

    fn head(&mut self, location: String) -> Result<ObjectMeta, ConnectorError> {
        let (store, path, url) = self.grants.resolve(&location).map_err(|e| self.denied(e))?;
        self.runtime.block_on(async {
            let m = store
                .head(&path)
                .await
                .map_err(|e| store_error(&location, e))?;
            Ok(Self::meta(&url, m))
        })
    }

    fn get_range(
        &mut self,
        location: String,
        start: u64,
        length: u64,
    ) -> Result<Vec<u8>, ConnectorError> {
        if length > MAX_RANGE {
            return Err(ConnectorError::Config(format!(
                "get-range of {length} bytes is above the limit of {MAX_RANGE}; read in smaller ranges"
            )));
        }
        let (store, path, url) = self.grants.resolve(&location).map_err(|e| self.denied(e))?;
        if length == 0 {
            return Ok(Vec::new());
        }
        let end = start
            .checked_add(length)
            .ok_or_else(|| ConnectorError::Config("range overflows".into()))?;
        let bytes = match local_file(&url) {
            Some(file) => read_local(&file, start, end).map_err(|e| local_error(&location, e))?,
            None => {
                let bytes = self.runtime.block_on(async {
                    store
                        .get_range(&path, start..end)
                        .await
                        .map_err(|e| store_error(&location, e))
                })?;
                // The store's buffer itself when it is the only owner, not
                // a copy of it.
                Vec::from(bytes)
            }
        };
        self.counters
            .bytes_read
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local read answers as the store's `get_range` does.
    #[test]
    fn local_reads_answer_as_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.csv");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_local(&file, 2, 5).unwrap(), b"234");
        // A range past the end is cut at the end; one that starts there fails.
        assert_eq!(read_local(&file, 8, 20).unwrap(), b"89");
        let past = local_error("file:///a.csv", read_local(&file, 10, 12).unwrap_err());
        assert!(
            matches!(&past, ConnectorError::Io(m) if m.contains("past the end of its 10 bytes")),
            "{past:?}"
        );
        // A missing file and a directory are no objects.
        for missing in [dir.path().join("b.csv"), dir.path().to_path_buf()] {
            let e = local_error("file:///b.csv", read_local(&missing, 0, 1).unwrap_err());
            assert!(
                matches!(&e, ConnectorError::Io(m) if m == "file:///b.csv: no such object"),
                "{e:?}"
            );
        }
        let url = url::Url::from_file_path(&file).unwrap();
        assert_eq!(local_file(&url), Some(file));
        assert_eq!(
            local_file(&url::Url::parse("s3://bucket/a.csv").unwrap()),
            None
        );
    }
}
