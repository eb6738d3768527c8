//! Keyed apply on a Delta table: a batch of changes rewrites only the data
//! files whose key statistics overlap the batch's keys, and commits their
//! removes, the rewritten files and the batch's `txn` as one version.
//!
//! SCD type 1's tombstones live beside the data, under
//! `_sluice_keyed/tombstones/` in the table's directory (Delta readers and
//! vacuum leave paths starting with `_` alone), one file per batch, named
//! by the application and the batch, and written before the commit: the
//! batch's file is the one to read once the table holds the batch.

use std::sync::Arc;

use std::collections::HashSet;

use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_row::RowConverter;
use arrow_schema::{DataType, Schema, SchemaRef};
use arrow_select::filter::filter_record_batch;
use deltalake_core::kernel::Action;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::{FilterOp, FilterValue, conjunction_to_kernel_predicate};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;

use super::{Changes, KeyedApply, MergeCounts, Scd, columns_named, concat, row_converter};
use crate::WriteOptions;
use crate::delta::{
    DeltaLane, Outcome, SchemaChange, Txn, by_name, commit_actions_once, load, parquet_batches,
    txn_of, under,
};
use crate::error::{Error, Result};
use sluice_location::Location;

/// What [`apply`] did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Whether the batch was committed now or already was.
    pub outcome: Outcome,
    /// What the merge did (zero when the batch already was committed).
    pub counts: MergeCounts,
    /// Data files rewritten (removed and written again with the changes).
    pub files_rewritten: usize,
    /// Data files the commit added.
    pub files_added: usize,
    /// Rows in the files the commit added.
    pub rows_written: u64,
    /// Bytes of the files the commit added.
    pub bytes_added: u64,
}

/// Applies `changes` to the Delta table at `location` by key, as batch
/// `txn` of its application, exactly once: a batch the table already holds
/// is not applied again. The table is created (with
/// [`KeyedApply::table_schema`]) by the first batch; `change` says whether
/// a batch may add columns to it (the rows it holds have none in them).
pub async fn apply(
    location: &Location,
    spec: &KeyedApply,
    changes: &Changes,
    txn: &Txn,
    options: &WriteOptions,
    change: SchemaChange,
) -> Result<Applied> {
    let name = location.display();
    let schema = spec.table_schema(&changes.rows.schema())?;
    let tomb_schema = spec.tombstones(&changes.rows.schema())?;
    let table = load(location).await?;
    let mut committed_batch = None;
    if let Some(t) = &table {
        committed_batch = txn_of(t, &name, &txn.app_id).await?;
        if committed_batch.is_some_and(|v| v >= txn.version) {
            return Ok(Applied {
                outcome: Outcome::AlreadyCommitted { version: None },
                counts: MergeCounts::default(),
                files_rewritten: 0,
                files_added: 0,
                rows_written: 0,
                bytes_added: 0,
            });
        }
        let snapshot = t.snapshot().map_err(|e| Error::delta(&name, e))?;
        let stored: Schema = snapshot.schema().as_ref().try_into_arrow()?;
        columns_fit(&name, &stored, &schema, change)?;
    }
    let (store, root) = location.store()?;
    let mut lane = DeltaLane::new(location, schema.clone(), options)?;
    let mut rows_written = 0;
    // The stored rows of the keys the batch changes, from the files those
    // keys may be in; the other rows of those files go to the new files as
    // they are read.
    let mut removes = Vec::new();
    let mut existing = Vec::new();
    // A batch without changes touches no file (it still commits its txn);
    // a truncate removes every file, read by nobody; SCD type 2's
    // truncates end every key's version, in every file.
    if let Some(t) = table
        .as_ref()
        .filter(|_| changes.truncated || changes.rows.num_rows() > 0)
    {
        let bounds = if changes.truncated || !changes.truncates.is_empty() {
            vec![]
        } else {
            key_bounds(spec, &changes.rows)
        };
        let literals: Vec<_> = bounds
            .iter()
            .flat_map(|(k, lo, hi)| {
                [
                    (k.as_str(), FilterOp::Ge, FilterValue::Scalar(lo.as_str())),
                    (k.as_str(), FilterOp::Le, FilterValue::Scalar(hi.as_str())),
                ]
            })
            .collect();
        let columns: deltalake_core::kernel::StructType =
            schema.clone().try_into_kernel().map_err(Error::Arrow)?;
        // A predicate the kernel cannot build only costs reading every file.
        let predicate = (!literals.is_empty())
            .then(|| conjunction_to_kernel_predicate(&literals, &columns).ok())
            .flatten()
            .map(Arc::new);
        let files: Vec<_> = t
            .get_active_add_actions_by_predicate(predicate)
            .try_collect()
            .await
            .map_err(|e| Error::delta(&name, e))?;
        // The keys whose stored rows the merge takes (every row, for SCD
        // type 2's truncates; none is read after SCD type 1's).
        let changed = if changes.truncates.is_empty() && !changes.truncated {
            Some(ChangedKeys::new(spec, &changes.rows)?)
        } else {
            None
        };
        for f in &files {
            removes.push(Action::Remove(f.remove_action(true)));
            if changes.truncated {
                continue;
            }
            let path = under(&root, f.object_store_path().as_ref());
            // The file's bytes, decoded a batch at a time.
            for b in parquet_batches(&store, path, f.size() as u64).await? {
                let b = by_name(&b?, &schema)?;
                let Some(changed) = &changed else {
                    existing.push(b);
                    continue;
                };
                let (ours, others) = changed.split(&b)?;
                existing.push(filter_record_batch(&b, &ours)?);
                let rest = filter_record_batch(&b, &others)?;
                if rest.num_rows() > 0 {
                    rows_written += rest.num_rows() as u64;
                    lane.write(rest).await?;
                }
            }
        }
    }
    let existing = concat(&schema, &existing)?;
    let ended;
    let changes = if changes.truncates.is_empty() {
        changes
    } else {
        ended = spec.truncates_as_deletes(&existing, changes)?;
        &ended
    };
    let tomb_dir = under(&root, &format!("_sluice_keyed/tombstones/{}", txn.app_id));
    // After a truncate every change is newer than any delete remembered.
    let tombstones = match (spec.scd, committed_batch) {
        (Scd::One, Some(batch)) if !changes.truncated => {
            read_tombstones(&store, &tomb_dir, batch, &tomb_schema).await?
        }
        _ => RecordBatch::new_empty(tomb_schema.clone()),
    };
    let merged = spec.merge(&existing, changes, &tombstones)?;
    if spec.scd == Scd::One {
        write_parquet(
            &store,
            under(&tomb_dir, &format!("{:020}.parquet", txn.version)),
            &merged.tombstones,
        )
        .await?;
    }
    rows_written += merged.rows.num_rows() as u64;
    if merged.rows.num_rows() > 0 {
        lane.write(merged.rows).await?;
    }
    let adds = lane.finish().await?;
    let files_added = adds.len();
    let bytes_added = adds.iter().map(|a| a.size as u64).sum();
    let files_rewritten = removes.len();
    let mut actions = removes;
    actions.extend(adds.into_iter().map(Action::Add));
    let outcome = commit_actions_once(location, &schema, actions, txn, change).await?;
    Ok(Applied {
        outcome,
        counts: merged.counts,
        files_rewritten,
        files_added,
        rows_written,
        bytes_added,
    })
}

/// Whether changes that make the table's columns `schema` may be applied
/// to a table of columns `stored`: the same columns (in any order), and
/// with `change` allowing it new ones, which the commit adds.
fn columns_fit(table: &str, stored: &Schema, schema: &Schema, change: SchemaChange) -> Result<()> {
    let differ = stored.fields().iter().any(|f| {
        schema
            .field_with_name(f.name())
            .ok()
            .is_none_or(|g| g.data_type() != f.data_type())
    });
    let added: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| stored.field_with_name(f.name()).is_err())
        .map(|f| f.name().as_str())
        .collect();
    if !differ && (added.is_empty() || change == SchemaChange::AddColumns) {
        return Ok(());
    }
    let fix = if differ {
        "replace the table to change its columns".to_string()
    } else {
        format!(
            "new column(s) {}: allow schema evolution (schemaEvolutionMode = addNewColumns) to add them",
            added.join(", ")
        )
    };
    Err(Error::SchemaMismatch {
        table: table.to_string(),
        reason: format!(
            "the table has columns [{}], the changes make [{}]; {fix}",
            super::names(stored),
            super::names(schema)
        ),
    })
}

/// Per key column, the least and greatest of the changes' keys, as text:
/// the files whose statistics fall outside hold none of them. Key columns
/// of other types than integers and short strings have no bounds here.
fn key_bounds(spec: &KeyedApply, rows: &RecordBatch) -> Vec<(String, String, String)> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int8Type, Int16Type, Int32Type, Int64Type};
    fn bounds<T: Ord + ToString>(
        values: impl Iterator<Item = T> + Clone,
    ) -> Option<(String, String)> {
        Some((values.clone().min()?.to_string(), values.max()?.to_string()))
    }
    let mut out = Vec::new();
    for k in &spec.keys {
        let c = rows.column_by_name(k).expect("checked");
        let range = match c.data_type() {
            DataType::Int8 => bounds(c.as_primitive::<Int8Type>().iter().flatten()),
            DataType::Int16 => bounds(c.as_primitive::<Int16Type>().iter().flatten()),
            DataType::Int32 => bounds(c.as_primitive::<Int32Type>().iter().flatten()),
            DataType::Int64 => bounds(c.as_primitive::<Int64Type>().iter().flatten()),
            // Delta's string statistics are prefixes (32 characters): a
            // longer bound is not safe to compare with them.
            DataType::Utf8 => bounds(c.as_string::<i32>().iter().flatten())
                .filter(|(l, h)| l.chars().count() < 32 && h.chars().count() < 32),
            _ => None,
        };
        if let Some((lo, hi)) = range {
            out.push((k.clone(), lo, hi));
        }
    }
    out
}

/// The keys a batch of changes changes, in arrow's row format.
struct ChangedKeys {
    converter: RowConverter,
    keys: HashSet<Vec<u8>>,
    names: Vec<String>,
}

impl ChangedKeys {
    fn new(spec: &KeyedApply, changes: &RecordBatch) -> Result<Self> {
        let columns = columns_named(changes, &spec.keys);
        let converter = row_converter(&columns)?;
        let keys = converter
            .convert_columns(&columns)?
            .iter()
            .map(|r| r.data().to_vec())
            .collect();
        Ok(ChangedKeys {
            converter,
            keys,
            names: spec.keys.clone(),
        })
    }

    /// Which rows of `batch` (of the table) have a changed key, and which
    /// do not.
    fn split(&self, batch: &RecordBatch) -> Result<(BooleanArray, BooleanArray)> {
        let rows = self
            .converter
            .convert_columns(&columns_named(batch, &self.names))?;
        let ours: Vec<bool> = rows.iter().map(|r| self.keys.contains(r.data())).collect();
        let others: Vec<bool> = ours.iter().map(|o| !o).collect();
        Ok((ours.into(), others.into()))
    }
}

/// The rows of the Parquet file at `path`, as `schema` ([`by_name`]).
pub(super) async fn read_parquet(
    store: &Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    parquet_batches(store, path, size)
        .await?
        .map(|b| by_name(&b?, schema))
        .collect()
}

async fn write_parquet(
    store: &Arc<dyn ObjectStore>,
    path: Path,
    batch: &RecordBatch,
) -> Result<()> {
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None)?;
    writer.write(batch)?;
    writer.close()?;
    store.put(&path, PutPayload::from(bytes)).await?;
    Ok(())
}

/// The tombstones as of batch `batch`: its file, or the newest before it.
async fn read_tombstones(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    batch: i64,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let mut newest: Option<(i64, Path, u64)> = None;
    let mut listing = store.list(Some(dir));
    while let Some(meta) = listing.next().await.transpose()? {
        let Some(n) = meta
            .location
            .filename()
            .and_then(|f| f.strip_suffix(".parquet"))
            .and_then(|f| f.parse::<i64>().ok())
        else {
            continue;
        };
        if n <= batch && newest.as_ref().is_none_or(|(m, _, _)| n > *m) {
            newest = Some((n, meta.location, meta.size));
        }
    }
    match newest {
        Some((_, path, size)) => concat(schema, &read_parquet(store, path, size, schema).await?),
        None => Ok(RecordBatch::new_empty(schema.clone())),
    }
}
