//! Uploaded connector components, stored by content hash.
//!
//! An upload is accepted only if it is a WebAssembly component that
//! implements the `sluice:connector` world with the capabilities Sluice
//! offers: a core module, a component of another world or a malformed
//! binary is refused with a message that says which. Sluice compiles what
//! it accepts itself (one compilation at a time); compiled code is never
//! taken from outside.
//!
//! What it compiled it keeps beside the upload, so that a new instance of
//! the service (a serverless one starts with an empty disk) loads it
//! instead of compiling for seconds; the engine checks it before use and
//! a machine whose engine refuses it compiles the upload again.
//!
//! Layout under the store's root: `<sha256>.wasm` (the bytes as uploaded),
//! `<sha256>.json` (what [`ConnectorInfo`] says of it) and
//! `<sha256>-<engine>.cwasm` (its code compiled by an engine of that
//! configuration, [`Runtime::compiled_name`]).

use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_sink::Location;
use tokio::sync::Semaphore;

use crate::wasm::bindings::{ConnectorSpec, SyncMode};
use crate::wasm::capability::HostState;
use crate::wasm::grants::Grants;
use crate::wasm::runtime::{Loaded, Runtime};
use crate::wasm::session::Session;

/// What Sluice knows of an accepted connector.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnectorInfo {
    /// `sha256:<hex>`: how pipelines name it.
    pub id: String,
    /// Its name, from its spec.
    pub name: String,
    /// Its version, from its spec.
    pub version: String,
    /// What it says it does.
    pub description: String,
    /// The read modes it supports.
    pub modes: Vec<String>,
    /// The JSON schema of its config.
    pub config_schema: serde_json::Value,
    /// The interfaces it imports: the capabilities it can ask for.
    pub imports: Vec<String>,
    /// Size of the component, in bytes.
    pub size: u64,
}

/// Why an upload was refused: the uploader's fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The store of uploaded connectors.
#[derive(Clone)]
pub struct ConnectorStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    compiling: Arc<Semaphore>,
}

/// A mode's name.
pub fn mode_name(m: &SyncMode) -> &'static str {
    match m {
        SyncMode::FullRefresh => "full-refresh",
        SyncMode::Incremental => "incremental",
        SyncMode::Streaming => "streaming",
    }
}

/// The spec a loaded connector reports (it runs on a blocking thread).
pub async fn spec_of(runtime: &Runtime, loaded: &Loaded) -> Result<ConnectorSpec> {
    let (r, l) = (runtime.clone(), loaded.clone());
    tokio::task::spawn_blocking(move || {
        let host = HostState::new(
            "spec",
            Grants::default(),
            tokio::runtime::Handle::current(),
            Default::default(),
        );
        Session::new(&r, &l, host)?.spec()
    })
    .await?
}

/// Describes `loaded` for listing.
pub async fn describe(runtime: &Runtime, loaded: &Loaded, size: u64) -> Result<ConnectorInfo> {
    let spec = spec_of(runtime, loaded).await?;
    Ok(ConnectorInfo {
        id: format!("sha256:{}", loaded.sha256),
        name: spec.name,
        version: spec.version,
        description: spec.description,
        modes: spec
            .modes
            .iter()
            .map(|m| mode_name(m).to_string())
            .collect(),
        config_schema: serde_json::from_str(&spec.config_schema).unwrap_or_default(),
        imports: loaded.imports.to_vec(),
        size,
    })
}

/// Says what kind of binary `wasm` is, if it is not a component.
fn not_a_component(wasm: &[u8]) -> Option<&'static str> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Some("the upload is not WebAssembly (no \\0asm header)");
    }
    match &wasm[4..8] {
        [1, 0, 0, 0] => Some(
            "the upload is a core WebAssembly module, not a component: build for wasm32-wasip2 (or wrap it with `wasm-tools component new`)",
        ),
        [_, _, 1, 0] => None,
        _ => Some("the upload has an unknown WebAssembly version or layer"),
    }
}

impl ConnectorStore {
    /// A store rooted at `location`.
    pub fn new(location: &Location) -> Result<Self> {
        let (store, root) = location.store()?;
        Ok(ConnectorStore {
            store,
            root,
            compiling: Arc::new(Semaphore::new(1)),
        })
    }

    fn wasm_path(&self, hex: &str) -> Path {
        self.root.clone().join(format!("{hex}.wasm"))
    }

    fn info_path(&self, hex: &str) -> Path {
        self.root.clone().join(format!("{hex}.json"))
    }

    fn compiled_path(&self, runtime: &Runtime, hex: &str) -> Path {
        self.root.clone().join(runtime.compiled_name(hex))
    }

    /// Keeps the code `runtime` compiled for `loaded`, for the next
    /// instance; a failure costs that instance a compilation, no more.
    async fn keep_compiled(&self, runtime: &Runtime, loaded: &Loaded) {
        let path = self.compiled_path(runtime, &loaded.sha256);
        let (r, l) = (runtime.clone(), loaded.clone());
        let kept = async {
            let compiled = tokio::task::spawn_blocking(move || r.compiled(&l)).await??;
            self.store
                .put(&path, PutPayload::from(compiled))
                .await
                .map_err(anyhow::Error::from)
        };
        if let Err(e) = kept.await {
            tracing::warn!("could not keep the compiled connector at {path}: {e:#}");
        }
    }

    /// The connector whose hex sha256 is `hex` from the code a service kept,
    /// if there is some and this engine accepts it.
    async fn load_kept(&self, runtime: &Runtime, hex: &str) -> Option<Loaded> {
        let path = self.compiled_path(runtime, hex);
        let compiled = match self.store.get(&path).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        let compiled = match compiled {
            Ok(c) => c,
            Err(object_store::Error::NotFound { .. }) => return None,
            Err(e) => {
                tracing::warn!("could not read the compiled connector at {path}: {e}");
                return None;
            }
        };
        let (r, h) = (runtime.clone(), hex.to_string());
        match tokio::task::spawn_blocking(move || r.load_kept(&h, &compiled)).await {
            Ok(Ok(loaded)) => Some(loaded),
            Ok(Err(e)) => {
                tracing::warn!(
                    "compiling connector sha256:{hex}: its kept code does not fit this engine: {e:#}"
                );
                None
            }
            Err(e) => {
                tracing::warn!("loading the compiled connector at {path}: {e}");
                None
            }
        }
    }

    /// Validates, compiles and stores an upload; an upload already stored
    /// is accepted again without compiling. `Refused` errors are the
    /// uploader's to fix.
    pub async fn add(&self, runtime: &Runtime, wasm: Bytes) -> Result<ConnectorInfo> {
        if let Some(why) = not_a_component(&wasm) {
            return Err(Refused(why.into()).into());
        }
        let hex = hex::encode(Sha256::digest(&wasm));
        if let Some(info) = self.info(&hex).await? {
            return Ok(info);
        }
        let loaded = {
            let _turn = self.compiling.acquire().await?;
            let (r, w) = (runtime.clone(), wasm.clone());
            tokio::task::spawn_blocking(move || r.load(&w))
                .await?
                .map_err(|e| Refused(format!("{e:#}")))?
        };
        let info = describe(runtime, &loaded, wasm.len() as u64)
            .await
            .map_err(|e| Refused(format!("the component's spec() failed: {e:#}")))?;
        self.store
            .put(&self.wasm_path(&hex), PutPayload::from_bytes(wasm))
            .await
            .context("storing the component")?;
        self.store
            .put(
                &self.info_path(&hex),
                PutPayload::from(serde_json::to_vec_pretty(&info)?),
            )
            .await
            .context("storing the component's description")?;
        self.keep_compiled(runtime, &loaded).await;
        Ok(info)
    }

    async fn info(&self, hex: &str) -> Result<Option<ConnectorInfo>> {
        match self.store.get(&self.info_path(hex)).await {
            Ok(r) => Ok(Some(serde_json::from_slice(&r.bytes().await?)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stored connector.
    pub async fn list(&self) -> Result<Vec<ConnectorInfo>> {
        let metas: Vec<_> = self.store.list(Some(&self.root)).try_collect().await?;
        let mut out = Vec::new();
        for m in metas {
            if let Some(hex) = m.location.filename().and_then(|f| f.strip_suffix(".json"))
                && let Some(info) = self.info(hex).await?
            {
                out.push(info);
            }
        }
        out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(out)
    }

    /// Loads connector `id` (`sha256:<hex>`): from this machine's cache,
    /// else from the code the service kept, else compiled (and kept).
    pub async fn load(&self, runtime: &Runtime, id: &str) -> Result<Loaded> {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        anyhow::ensure!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "'{id}' is not a connector id: they read sha256:<64 hex digits>"
        );
        let missing =
            || anyhow::anyhow!("no uploaded connector {id}; upload it with POST /connectors");
        match self.store.head(&self.wasm_path(hex)).await {
            Err(object_store::Error::NotFound { .. }) => return Err(missing()),
            r => r?,
        };
        let (r, h) = (runtime.clone(), hex.to_string());
        if let Some(loaded) = tokio::task::spawn_blocking(move || r.load_cached(&h)).await? {
            return Ok(loaded);
        }
        if let Some(loaded) = self.load_kept(runtime, hex).await {
            return Ok(loaded);
        }
        let wasm = match self.store.get(&self.wasm_path(hex)).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Err(missing()),
            Err(e) => return Err(e.into()),
        };
        let r = runtime.clone();
        let loaded = tokio::task::spawn_blocking(move || r.load(&wasm)).await??;
        self.keep_compiled(runtime, &loaded).await;
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_told_apart() {
        assert!(
            not_a_component(b"hello")
                .unwrap()
                .contains("not WebAssembly")
        );
        assert!(
            not_a_component(b"\0asm\x01\0\0\0")
                .unwrap()
                .contains("core WebAssembly module")
        );
        assert!(not_a_component(b"\0asm\x0d\0\x01\0").is_none());
    }
}
