//! Plain Parquet datasets: a directory of Parquet files, no log.
//!
//! Files stream to storage with multipart uploads. There is no atomic commit:
//! an overwrite writes the new files first and then deletes the old ones, so
//! a reader may briefly see both. Use Delta where that matters.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::AsyncArrowWriter;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;

use crate::error::Result;
use crate::{WriteMode, WriteOptions};
use sluice_location::Location;

/// A finished data file.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Path inside the store.
    pub path: Path,
    /// Size in bytes.
    pub bytes: u64,
    /// Rows.
    pub rows: u64,
    /// Its Parquet footer (row groups, column chunks, statistics).
    pub metadata: Option<Arc<ParquetMetaData>>,
}

/// Streams one lane's batches into Parquet files, rolling at the target size.
pub struct ParquetLane {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    schema: SchemaRef,
    props: WriterProperties,
    target: u64,
    open: Option<(AsyncArrowWriter<BufWriter>, Path, u64)>,
    done: Vec<DataFile>,
}

impl ParquetLane {
    pub(crate) fn new(
        location: &Location,
        schema: SchemaRef,
        options: &WriteOptions,
    ) -> Result<Self> {
        let (store, dir) = location.store()?;
        Ok(ParquetLane {
            store,
            dir,
            schema,
            props: crate::delta::writer_properties(options),
            target: options.target_file_bytes,
            open: None,
            done: Vec::new(),
        })
    }

    pub(crate) async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if self.open.is_none() {
            let name = format!("part-{}.zstd.parquet", uuid::Uuid::new_v4());
            let path = self.dir.clone().join(name);
            let writer = AsyncArrowWriter::try_new(
                BufWriter::new(self.store.clone(), path.clone()),
                self.schema.clone(),
                Some(self.props.clone()),
            )?;
            self.open = Some((writer, path, 0));
        }
        if let Some((writer, _, rows)) = self.open.as_mut() {
            *rows += batch.num_rows() as u64;
            writer.write(&batch).await?;
            if writer.bytes_written() as u64 + writer.in_progress_size() as u64 >= self.target {
                self.roll().await?;
            }
        }
        Ok(())
    }

    async fn roll(&mut self) -> Result<()> {
        if let Some((mut writer, path, rows)) = self.open.take() {
            let metadata = writer.finish().await?;
            let bytes = writer.bytes_written() as u64;
            self.done.push(DataFile {
                path,
                bytes,
                rows,
                metadata: Some(Arc::new(metadata)),
            });
        }
        Ok(())
    }

    pub(crate) async fn finish(mut self) -> Result<Vec<DataFile>> {
        self.roll().await?;
        Ok(self.done)
    }
}

/// Makes the new files the dataset: on overwrite, deletes every other
/// Parquet file under the dataset's directory.
pub async fn commit(location: &Location, files: &[DataFile], mode: WriteMode) -> Result<()> {
    if mode == WriteMode::Append {
        return Ok(());
    }
    let (store, dir) = location.store()?;
    let keep: std::collections::HashSet<&Path> = files.iter().map(|f| &f.path).collect();
    let old: Vec<Path> = store
        .list(Some(&dir))
        .map_ok(|m| m.location)
        .try_filter(|p| {
            let stale = p.as_ref().ends_with(".parquet") && !keep.contains(p);
            futures::future::ready(stale)
        })
        .try_collect()
        .await?;
    for path in old {
        store.delete(&path).await?;
    }
    Ok(())
}
