//! What a table holds, for the people looking at it (the console and the
//! API behind it): its schema, files and sizes ([`Target::describe`]), its
//! versions newest first ([`Target::history`]) and its first rows
//! ([`Target::sample`]). Reading only: nothing here writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{Schema, SchemaRef};
use deltalake_core::kernel::Action;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoArrow;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::Serialize;

use crate::delta::{by_name, parquet_batches, under};
use crate::error::{Error, Result};
use crate::{Location, TableFormat, Target, iceberg_table};

/// A table as it is now.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    /// `delta`, `iceberg` or `parquet`.
    pub format: &'static str,
    /// Where its files are.
    pub location: String,
    /// Its current version (Delta), or snapshot sequence number (Iceberg);
    /// `None` for a Parquet dataset, which has no versions.
    pub version: Option<i64>,
    /// Its columns.
    #[serde(skip)]
    pub schema: SchemaRef,
    /// Columns it is partitioned by.
    pub partition_columns: Vec<String>,
    /// Live data files.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Rows, where every file's statistics say.
    pub rows: Option<u64>,
    /// The data files' sizes, counted in [`SIZE_BUCKETS`]: small files
    /// show as a large count in the first buckets.
    pub file_sizes: Vec<SizeBucket>,
    /// The table's properties (Delta configuration, Iceberg properties).
    pub properties: BTreeMap<String, String>,
}

/// How many data files are smaller than `below` bytes (and at least the
/// previous bucket's bound).
#[derive(Debug, Clone, Serialize)]
pub struct SizeBucket {
    /// Its label (`< 1 MiB`).
    pub label: &'static str,
    /// Its upper bound in bytes; `None` for the last.
    pub below: Option<u64>,
    /// Files in it.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// The buckets file sizes are counted in: small files (what `optimize`
/// packs) fall in the first ones.
pub const SIZE_BUCKETS: &[(&str, Option<u64>)] = &[
    ("< 1 MiB", Some(1 << 20)),
    ("1-16 MiB", Some(16 << 20)),
    ("16-128 MiB", Some(128 << 20)),
    (">= 128 MiB", None),
];

pub(crate) fn size_buckets(sizes: impl Iterator<Item = u64>) -> Vec<SizeBucket> {
    let mut out: Vec<SizeBucket> = SIZE_BUCKETS
        .iter()
        .map(|&(label, below)| SizeBucket {
            label,
            below,
            files: 0,
            bytes: 0,
        })
        .collect();
    for size in sizes {
        let i = SIZE_BUCKETS
            .iter()
            .position(|(_, below)| below.is_none_or(|b| size < b))
            .unwrap_or(SIZE_BUCKETS.len() - 1);
        out[i].files += 1;
        out[i].bytes += size;
    }
    out
}

/// One version of a table: what a commit (Delta) or snapshot (Iceberg)
/// did.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// The Delta version, or the Iceberg snapshot's sequence number.
    pub version: i64,
    /// The Iceberg snapshot's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<i64>,
    /// When it was committed (ms since the epoch), where recorded.
    pub timestamp_ms: Option<i64>,
    /// What it was: `WRITE`, `OPTIMIZE`, `UPDATE` (Delta); `append`,
    /// `overwrite`, `replace` (Iceberg).
    pub operation: String,
    /// The operation's parameters (Delta's `mode`, ...) or the snapshot's
    /// summary properties.
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// Rows the version's new files hold, where their statistics say.
    pub rows_added: Option<u64>,
    /// Data files it added.
    pub files_added: u64,
    /// Data files it removed.
    pub files_removed: u64,
    /// Bytes of the files it added.
    pub bytes_added: u64,
}

impl Target {
    /// The table as it is now, or `None` if there is no table.
    pub async fn describe(&self) -> Result<Option<TableInfo>> {
        match self.format() {
            TableFormat::Delta => describe_delta(self.location()).await,
            TableFormat::Iceberg => iceberg_table::describe(self.iceberg_table()?).await,
            TableFormat::Parquet => describe_parquet(self.location()).await,
        }
    }

    /// The table's latest `limit` versions, newest first (those whose
    /// records are still kept: a Delta log's cleaned commits and expired
    /// Iceberg snapshots are gone).
    pub async fn history(&self, limit: usize) -> Result<Vec<Version>> {
        match self.format() {
            TableFormat::Delta => history_delta(self.location(), limit).await,
            TableFormat::Iceberg => iceberg_table::history(self.iceberg_table()?, limit).await,
            TableFormat::Parquet => Err(Error::Unsupported(format!(
                "{}: a Parquet dataset keeps no history; write a Delta or Iceberg table to have one",
                self.location().display()
            ))),
        }
    }

    /// The table's first `limit` rows (in file order) with its schema;
    /// `None` if there is no table.
    pub async fn sample(&self, limit: usize) -> Result<Option<(SchemaRef, Vec<RecordBatch>)>> {
        let files = match self.format() {
            TableFormat::Delta => delta_files(self.location()).await?,
            TableFormat::Iceberg => iceberg_table::data_files(self.iceberg_table()?).await?,
            TableFormat::Parquet => parquet_files(self.location()).await?,
        };
        let Some((schema, files)) = files else {
            return Ok(None);
        };
        let (store, _) = self.location().store()?;
        Ok(Some((
            schema.clone(),
            first_rows(&store, &files, &schema, limit).await?,
        )))
    }
}

/// The first `limit` rows of `files` (path, size) as `schema`.
async fn first_rows(
    store: &Arc<dyn ObjectStore>,
    files: &[(Path, u64)],
    schema: &SchemaRef,
    limit: usize,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    let mut left = limit;
    for (path, size) in files {
        if left == 0 {
            break;
        }
        for batch in parquet_batches(store, path.clone(), *size).await? {
            let batch = by_name(&batch?, schema)?;
            let n = left.min(batch.num_rows());
            out.push(batch.slice(0, n));
            left -= n;
            if left == 0 {
                break;
            }
        }
    }
    Ok(out)
}

/// The rows a file's Delta statistics count.
fn stats_rows(stats: Option<&str>) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(stats?).ok()?;
    v.get("numRecords")?.as_u64()
}

async fn describe_delta(location: &Location) -> Result<Option<TableInfo>> {
    let name = location.display();
    let Some(table) = crate::delta::load(location).await? else {
        return Ok(None);
    };
    let snapshot = table.snapshot().map_err(|e| Error::delta(&name, e))?;
    let schema: Schema = snapshot.schema().as_ref().try_into_arrow()?;
    let metadata = snapshot.metadata();
    let files: Vec<_> = table
        .get_active_add_actions_by_predicate(None)
        .try_collect()
        .await
        .map_err(|e| Error::delta(&name, e))?;
    let rows = files
        .iter()
        .map(|f| stats_rows(f.stats().as_deref()))
        .sum::<Option<u64>>();
    Ok(Some(TableInfo {
        format: "delta",
        location: name,
        version: table.version().map(|v| v as i64),
        schema: Arc::new(schema),
        partition_columns: metadata.partition_columns().to_vec(),
        files: files.len(),
        bytes: files.iter().map(|f| f.size() as u64).sum(),
        rows,
        file_sizes: size_buckets(files.iter().map(|f| f.size() as u64)),
        properties: metadata
            .configuration()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }))
}

/// A Delta table's schema and live data files, or `None` without a table.
async fn delta_files(location: &Location) -> Result<Option<(SchemaRef, Vec<(Path, u64)>)>> {
    let name = location.display();
    let Some(table) = crate::delta::load(location).await? else {
        return Ok(None);
    };
    let snapshot = table.snapshot().map_err(|e| Error::delta(&name, e))?;
    let schema: Schema = snapshot.schema().as_ref().try_into_arrow()?;
    let (_, root) = location.store()?;
    let files: Vec<_> = table
        .get_active_add_actions_by_predicate(None)
        .map_ok(|f| {
            (
                under(&root, f.object_store_path().as_ref()),
                f.size() as u64,
            )
        })
        .try_collect()
        .await
        .map_err(|e| Error::delta(&name, e))?;
    Ok(Some((Arc::new(schema), files)))
}

async fn history_delta(location: &Location, limit: usize) -> Result<Vec<Version>> {
    let name = location.display();
    let Some(table) = crate::delta::load(location).await? else {
        return Err(Error::InvalidInput(format!(
            "there is no Delta table at {name}"
        )));
    };
    let Some(latest) = table.version() else {
        return Ok(vec![]);
    };
    let store = table.log_store();
    let mut out = Vec::new();
    for version in (0..=latest).rev().take(limit) {
        // Commits older than the log's retention are cleaned: the history
        // ends where they start.
        let Some(bytes) = store
            .read_commit_entry(version)
            .await
            .map_err(|e| Error::delta(&name, e))?
        else {
            break;
        };
        out.push(delta_version(version as i64, &bytes).map_err(|e| {
            Error::InvalidInput(format!("{name}: commit {version} is not valid JSON: {e}"))
        })?);
    }
    Ok(out)
}

/// What Delta commit `version` (its log entry's bytes) did.
fn delta_version(version: i64, bytes: &[u8]) -> serde_json::Result<Version> {
    let mut v = Version {
        version,
        snapshot_id: None,
        timestamp_ms: None,
        operation: String::new(),
        parameters: BTreeMap::new(),
        rows_added: Some(0),
        files_added: 0,
        files_removed: 0,
        bytes_added: 0,
    };
    for action in serde_json::Deserializer::from_slice(bytes).into_iter::<Action>() {
        match action? {
            Action::CommitInfo(info) => {
                v.timestamp_ms = info.in_commit_timestamp.or(info.timestamp);
                v.operation = info.operation.unwrap_or_default();
                // The whole metadata and protocol a create repeats are
                // the table's description, not the operation's.
                v.parameters = info
                    .operation_parameters
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| k != "metadata" && k != "protocol")
                    .collect();
            }
            Action::Add(add) if add.data_change => {
                v.files_added += 1;
                v.bytes_added += add.size as u64;
                v.rows_added = v
                    .rows_added
                    .zip(stats_rows(add.stats.as_deref()))
                    .map(|(a, b)| a + b);
            }
            Action::Add(add) => {
                // Files a compaction rewrote: no rows are new.
                v.files_added += 1;
                v.bytes_added += add.size as u64;
            }
            Action::Remove(_) => v.files_removed += 1,
            _ => {}
        }
    }
    Ok(v)
}

async fn describe_parquet(location: &Location) -> Result<Option<TableInfo>> {
    let Some((schema, files)) = parquet_files(location).await? else {
        return Ok(None);
    };
    Ok(Some(TableInfo {
        format: "parquet",
        location: location.display(),
        version: None,
        schema,
        partition_columns: vec![],
        files: files.len(),
        bytes: files.iter().map(|(_, s)| s).sum(),
        rows: None,
        file_sizes: size_buckets(files.iter().map(|(_, s)| *s)),
        properties: BTreeMap::new(),
    }))
}

/// A Parquet dataset's files (in name order, Sluice's own folders left
/// out) and the schema of its first one; `None` if it has no file.
async fn parquet_files(location: &Location) -> Result<Option<(SchemaRef, Vec<(Path, u64)>)>> {
    let (store, root) = location.store()?;
    let mut files: Vec<(Path, u64)> = store
        .list(Some(&root))
        .try_filter(|m| {
            let p = m.location.as_ref();
            std::future::ready(p.ends_with(".parquet") && !p.contains("/_sluice/"))
        })
        .map_ok(|m| (m.location, m.size))
        .try_collect()
        .await?;
    files.sort();
    let Some((first, size)) = files.first() else {
        return Ok(None);
    };
    let reader = parquet_batches(&store, first.clone(), *size).await?;
    Ok(Some((reader.schema(), files)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sizes_fall_in_their_buckets() {
        let b = size_buckets([10, 1 << 20, (1 << 20) - 1, 200 << 20].into_iter());
        let counts: Vec<usize> = b.iter().map(|b| b.files).collect();
        assert_eq!(counts, [2, 1, 0, 1]);
        assert_eq!(b[0].bytes, 10 + (1 << 20) - 1);
    }

    #[test]
    fn a_delta_commit_says_what_it_did() {
        let log = concat!(
            r#"{"commitInfo":{"timestamp":1700000000000,"operation":"WRITE","operationParameters":{"mode":"Append"}}}"#,
            "\n",
            r#"{"add":{"path":"a.parquet","partitionValues":{},"size":100,"modificationTime":1,"dataChange":true,"stats":"{\"numRecords\":3}"}}"#,
            "\n",
            r#"{"add":{"path":"b.parquet","partitionValues":{},"size":50,"modificationTime":1,"dataChange":true,"stats":"{\"numRecords\":2}"}}"#,
            "\n",
            r#"{"remove":{"path":"c.parquet","dataChange":true,"deletionTimestamp":1}}"#,
            "\n",
        );
        let v = delta_version(7, log.as_bytes()).unwrap();
        assert_eq!(v.version, 7);
        assert_eq!(v.operation, "WRITE");
        assert_eq!(v.timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(v.parameters["mode"], "Append");
        assert_eq!((v.files_added, v.files_removed, v.bytes_added), (2, 1, 150));
        assert_eq!(v.rows_added, Some(5));
    }
}
