//! Uploaded connector components, stored by content hash.
//!
//! An upload is accepted only if it is a WebAssembly component that
//! implements the `sluice:connector` world with the capabilities Sluice
//! offers: a core module, a component of another world or a malformed
//! binary is refused with a message that says which. Sluice compiles what
//! it accepts itself (one compilation at a time) and caches the compiled
//! form; precompiled artifacts are never taken from outside.
//!
//! Layout under the store's root: `<sha256>.wasm` (the bytes as uploaded)
//! and `<sha256>.json` (what [`ConnectorInfo`] says of it).

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

    /// Loads connector `id` (`sha256:<hex>`), compiled from the cache.
    pub async fn load(&self, runtime: &Runtime, id: &str) -> Result<Loaded> {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        let wasm = match self.store.get(&self.wasm_path(hex)).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                anyhow::bail!("no uploaded connector {id}; upload it with POST /connectors")
            }
            Err(e) => return Err(e.into()),
        };
        let r = runtime.clone();
        tokio::task::spawn_blocking(move || r.load(&wasm)).await?
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
