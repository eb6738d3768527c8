//! Table upkeep for Delta tables: compaction and vacuum.
//!
//! A stream that commits every few seconds leaves many small files. Compaction
//! ([`optimize`]) bin-packs the files smaller than a target size into files of
//! about that size and commits the removes and adds as one version that
//! changes no data (`dataChange = false`, Delta's OPTIMIZE), so appends that
//! commit meanwhile are kept: the commit is checked against them and rebased.
//! [`vacuum`] deletes the files no version inside the retention period
//! references, through the Delta library's vacuum. Checkpoints are the
//! Delta library's own post-commit step (every `delta.checkpointInterval`
//! commits, 100 by default), taken by every commit Sluice makes.

use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use deltalake_core::DeltaTable;
use deltalake_core::kernel::Action;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::protocol::DeltaOperation;
use futures::TryStreamExt;

use crate::delta::{DeltaLane, by_name, load, parquet_batches, under};
use crate::error::{Error, Result};
use crate::{Location, WriteOptions};
use object_store::ObjectStoreExt;

/// What [`optimize`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Optimized {
    /// The version it committed; `None` when there was nothing to compact.
    pub version: Option<u64>,
    /// Data files before and after.
    pub files_before: usize,
    /// Data files after.
    pub files_after: usize,
    /// Files compacted (removed).
    pub files_removed: usize,
    /// Their bytes.
    pub bytes_removed: u64,
    /// Files written in their place.
    pub files_added: usize,
    /// Their bytes.
    pub bytes_added: u64,
    /// Rows rewritten.
    pub rows: u64,
}

/// Compacts the Delta table at `location`: its data files smaller than
/// `target_bytes` are packed into bins of about that size, and each bin of
/// two files or more is rewritten (with `options`' encoding) as files of
/// about `target_bytes`, all in one commit.
pub async fn optimize(
    location: &Location,
    target_bytes: u64,
    options: &WriteOptions,
) -> Result<Optimized> {
    let name = location.display();
    let table = load(location)
        .await?
        .ok_or_else(|| Error::InvalidInput(format!("there is no Delta table at {name}")))?;
    compact(location, &table, target_bytes, options).await
}

/// [`optimize`] to `options`' target file size, when the table holds at
/// least `min_files` files smaller than it (auto compaction after a
/// stream's commits); `None` when it does not.
pub async fn optimize_when(
    location: &Location,
    min_files: usize,
    options: &WriteOptions,
) -> Result<Option<Optimized>> {
    let name = location.display();
    let Some(table) = load(location).await? else {
        return Ok(None);
    };
    let target = options.target_file_bytes;
    let small = table
        .get_active_add_actions_by_predicate(None)
        .try_fold(0usize, |n, f| async move {
            Ok(n + usize::from(
                (f.size() as u64) < target && f.deletion_vector_descriptor().is_none(),
            ))
        })
        .await
        .map_err(|e| Error::delta(&name, e))?;
    if small < min_files {
        return Ok(None);
    }
    Ok(Some(compact(location, &table, target, options).await?))
}

/// [`optimize`] of `table` as it was loaded: what other writers committed
/// since is checked against the compaction when it commits.
async fn compact(
    location: &Location,
    table: &DeltaTable,
    target_bytes: u64,
    options: &WriteOptions,
) -> Result<Optimized> {
    let name = location.display();
    let snapshot = table.snapshot().map_err(|e| Error::delta(&name, e))?;
    if !snapshot.metadata().partition_columns().is_empty() {
        return Err(Error::InvalidInput(format!(
            "{name} is partitioned; compacting partitioned tables is not supported yet"
        )));
    }
    let schema: SchemaRef = Arc::new(TryIntoArrow::<Schema>::try_into_arrow(
        snapshot.schema().as_ref(),
    )?);
    let files: Vec<_> = table
        .get_active_add_actions_by_predicate(None)
        .try_collect()
        .await
        .map_err(|e| Error::delta(&name, e))?;
    let mut done = Optimized {
        files_before: files.len(),
        files_after: files.len(),
        ..Optimized::default()
    };
    // Files with deletion vectors keep them: only whole files are packed.
    let sizes: Vec<(usize, u64)> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.deletion_vector_descriptor().is_none())
        .map(|(i, f)| (i, f.size() as u64))
        .collect();
    let bins = bins(&sizes, target_bytes);
    if bins.is_empty() {
        return Ok(done);
    }

    let (store, root) = location.store()?;
    let options = WriteOptions {
        target_file_bytes: target_bytes,
        ..options.clone()
    };
    let mut lane = DeltaLane::new(location, schema.clone(), &options)?;
    let mut removes = Vec::new();
    for bin in &bins {
        for &i in bin {
            let f = &files[i];
            let path = under(&root, f.object_store_path().as_ref());
            for b in parquet_batches(&store, path, f.size() as u64).await? {
                let b = by_name(&b?, &schema)?;
                done.rows += b.num_rows() as u64;
                lane.write(b).await?;
            }
            done.files_removed += 1;
            done.bytes_removed += f.size() as u64;
            removes.push(Action::Remove(f.remove_action(false)));
        }
    }
    let adds = lane.finish().await?;
    done.files_added = adds.len();
    done.bytes_added = adds.iter().map(|a| a.size as u64).sum();
    done.files_after = done.files_before - done.files_removed + done.files_added;
    let mut actions = removes;
    actions.extend(adds.into_iter().map(|mut a| {
        a.data_change = false;
        Action::Add(a)
    }));
    let committed = CommitBuilder::from(CommitProperties::default())
        .with_actions(actions)
        .build(
            Some(snapshot),
            table.log_store(),
            DeltaOperation::Optimize {
                predicate: None,
                target_size: target_bytes as i64,
            },
        )
        .await
        .map_err(|e| Error::delta(&name, e))?;
    done.version = Some(committed.version());
    Ok(done)
}

/// Packs files, given as (index, bytes), into bins: the files smaller than
/// `target` in order of size, each bin filled until the next file would take
/// it past `target`. Only bins of two files or more are worth rewriting.
pub(crate) fn bins(files: &[(usize, u64)], target: u64) -> Vec<Vec<usize>> {
    let mut small: Vec<(usize, u64)> = files.iter().copied().filter(|(_, s)| *s < target).collect();
    small.sort_by_key(|(i, s)| (*s, *i));
    let mut bins = Vec::new();
    let (mut bin, mut bytes) = (Vec::new(), 0u64);
    for (i, size) in small {
        if !bin.is_empty() && bytes + size > target {
            bins.push(std::mem::take(&mut bin));
            bytes = 0;
        }
        bin.push(i);
        bytes += size;
    }
    bins.push(bin);
    bins.retain(|b| b.len() > 1);
    bins
}

/// What [`vacuum`] did, or would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vacuumed {
    /// The files deleted (or, on a dry run, that would be).
    pub files: Vec<String>,
    /// Nothing was deleted.
    pub dry_run: bool,
}

/// Deletes the files of the Delta table at `location` that no version
/// committed within `retain` references (and files no version ever
/// referenced, such as a failed run's, once older than `retain`). A
/// `retain` shorter than the table's `delta.deletedFileRetentionDuration`
/// (7 days by default) is refused unless `force`: a reader or writer still
/// on an older version may need those files.
pub async fn vacuum(
    location: &Location,
    retain: std::time::Duration,
    dry_run: bool,
    force: bool,
) -> Result<Vacuumed> {
    let name = location.display();
    let table = load(location)
        .await?
        .ok_or_else(|| Error::InvalidInput(format!("there is no Delta table at {name}")))?;
    let retention = chrono::Duration::from_std(retain)
        .map_err(|_| Error::InvalidInput(format!("a retention of {retain:?} is too long")))?;
    let run = |dry_run: bool| {
        table
            .clone()
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(!force)
            .with_mode(VacuumMode::Full)
            .with_dry_run(dry_run)
    };
    // What the library would delete names files an earlier vacuum deleted
    // too (the log still holds their removes, until a checkpoint drops
    // them): only the files still there are reported, as paths in the table.
    let (_, candidates) = run(true).await.map_err(|e| {
        let text = e.to_string();
        if text.contains("retention") && !force {
            Error::InvalidInput(format!(
                "{name}: {text}; a shorter retention can delete files that readers and writers on older versions still use: pass --force to vacuum anyway"
            ))
        } else {
            Error::delta(&name, e)
        }
    })?;
    let (store, root) = location.store()?;
    let mut files = Vec::new();
    for f in candidates.files_deleted {
        let rel = in_table(location, &f);
        if store.head(&under(&root, &rel)).await.is_ok() {
            files.push(rel);
        }
    }
    files.sort();
    if !dry_run && !files.is_empty() {
        run(false).await.map_err(|e| Error::delta(&name, e))?;
    }
    Ok(Vacuumed { files, dry_run })
}

/// `file`, as vacuum names it (relative, or a whole path or URL under the
/// table), relative to the table.
fn in_table(location: &Location, file: &str) -> String {
    let url = location.url();
    let path = url.path();
    [url.as_str(), path]
        .iter()
        .find_map(|root| file.strip_prefix(root.trim_end_matches('/')))
        .map(|rest| rest.trim_start_matches('/').to_string())
        .unwrap_or_else(|| file.to_string())
}

#[cfg(test)]
mod tests {
    use arrow_array::{Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field};

    use super::*;
    use crate::{TableFormat, Target, WriteMode};

    async fn append(target: &Target, ids: std::ops::Range<i64>) {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(ids))],
        )
        .unwrap();
        let mut lane = target.lane(schema.clone()).unwrap();
        lane.write(batch).await.unwrap();
        let written = lane.finish().await.unwrap();
        target
            .commit(&schema, vec![written], WriteMode::Append, None)
            .await
            .unwrap();
    }

    async fn ids(location: &Location) -> Vec<i64> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::Int64Type;
        let table = load(location).await.unwrap().unwrap();
        let (store, root) = location.store().unwrap();
        let files: Vec<_> = table
            .get_active_add_actions_by_predicate(None)
            .try_collect()
            .await
            .unwrap();
        let mut ids = Vec::new();
        for f in files {
            let path = under(&root, f.object_store_path().as_ref());
            for b in parquet_batches(&store, path, f.size() as u64)
                .await
                .unwrap()
            {
                ids.extend(
                    b.unwrap()
                        .column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter(),
                );
            }
        }
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn an_append_committed_during_a_compaction_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::parse(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let target = Target::new(
            location.clone(),
            TableFormat::Delta,
            WriteOptions::default(),
        );
        for k in 0..3 {
            append(&target, k * 10..k * 10 + 10).await;
        }
        // The compaction reads the table as it is now; another writer
        // appends before it commits.
        let seen = load(&location).await.unwrap().unwrap();
        append(&target, 100..110).await;
        let done = compact(&location, &seen, 1 << 20, &WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(
            (done.files_removed, done.files_added, done.rows),
            (3, 1, 30)
        );
        let mut want: Vec<i64> = (0..30).collect();
        want.extend(100..110);
        assert_eq!(ids(&location).await, want);
        let files = load(&location)
            .await
            .unwrap()
            .unwrap()
            .get_active_add_actions_by_predicate(None)
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len();
        assert_eq!(files, 2, "the compacted file and the append's");
    }

    #[test]
    fn small_files_are_packed_into_bins_of_the_target_size() {
        let files = [
            (0, 40),
            (1, 10),
            (2, 200),
            (3, 30),
            (4, 50),
            (5, 90),
            (6, 60),
        ];
        // 10+30+40 = 80; +50 would pass 100; 50 alone then +60 passes; 60+90 passes...
        assert_eq!(bins(&files, 100), vec![vec![1, 3, 0]]);
        assert_eq!(bins(&files, 120), vec![vec![1, 3, 0], vec![4, 6]]);
        // Nothing small enough, or only one small file: nothing to do.
        assert!(bins(&[(0, 500), (1, 10)], 100).is_empty());
        assert!(bins(&[], 100).is_empty());
    }
}
