//! The iceberg crate's file IO over `object_store`, so Iceberg metadata,
//! manifests and data reach the same stores (local files, S3, GCS, Azure)
//! with the same options as every other table Sluice writes.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sluice_location::Location;

/// Builds [`ObjectStorage`] with the object-store options of the warehouse.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObjectStorageFactory {
    /// Credentials, endpoint and the like, as `object_store` names them.
    pub options: HashMap<String, String>,
}

#[typetag::serde]
impl StorageFactory for ObjectStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(ObjectStorage {
            options: self.options.clone(),
        }))
    }
}

/// Files named by URL (`file:///...`, `s3://bucket/...`), reached through
/// `object_store`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectStorage {
    options: HashMap<String, String>,
}

fn io_error(path: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unexpected, format!("{path}: {e}"))
}

impl ObjectStorage {
    fn open(&self, path: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
        Location::parse(path, self.options.clone())
            .and_then(|l| l.store())
            .map_err(|e| io_error(path, e))
    }
}

#[async_trait]
#[typetag::serde]
impl Storage for ObjectStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        let (store, p) = self.open(path)?;
        match store.head(&p).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io_error(path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let (store, p) = self.open(path)?;
        let meta = store.head(&p).await.map_err(|e| io_error(path, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let (store, p) = self.open(path)?;
        let got = store.get(&p).await.map_err(|e| io_error(path, e))?;
        got.bytes().await.map_err(|e| io_error(path, e))
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        let (store, p) = self.open(path)?;
        Ok(Box::new(Reader { store, path: p }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let (store, p) = self.open(path)?;
        store
            .put(&p, PutPayload::from_bytes(bs))
            .await
            .map_err(|e| io_error(path, e))?;
        Ok(())
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let (store, p) = self.open(path)?;
        Ok(Box::new(Writer {
            store,
            path: p,
            parts: Vec::new(),
            closed: false,
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (store, p) = self.open(path)?;
        match store.delete(&p).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let (store, p) = self.open(path)?;
        let mut listed = store.list(Some(&p));
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|e| io_error(path, e))?;
            store
                .delete(&meta.location)
                .await
                .map_err(|e| io_error(path, e))?;
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

struct Reader {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

#[async_trait]
impl FileRead for Reader {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.store
            .get_range(&self.path, range)
            .await
            .map_err(|e| io_error(self.path.as_ref(), e))
    }
}

/// Metadata and manifest files are small: they are put whole on close, so
/// a file is never seen half-written.
struct Writer {
    store: Arc<dyn ObjectStore>,
    path: Path,
    parts: Vec<Bytes>,
    closed: bool,
}

#[async_trait]
impl FileWrite for Writer {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        self.parts.push(bs);
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Err(io_error(self.path.as_ref(), "closed twice"));
        }
        self.closed = true;
        let payload = PutPayload::from_iter(std::mem::take(&mut self.parts));
        self.store
            .put(&self.path, payload)
            .await
            .map_err(|e| io_error(self.path.as_ref(), e))?;
        Ok(())
    }
}
