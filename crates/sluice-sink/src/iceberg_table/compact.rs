//! Compaction of an Iceberg table: its small data files rewritten as
//! files of about the target size, in one `replace` snapshot that changes
//! no data.
//!
//! The crate has no rewrite action, so the snapshot is made by hand
//! ([`NewSnapshot`]): the manifests that hold no compacted file are kept
//! as they are, those that do are rewritten with their other files as
//! existing entries (or dropped, when they held only compacted files), and
//! one new manifest adds the compacted files. An
//! append that commits meanwhile only adds manifests: the commit loses the
//! catalog's compare-and-set, finds the table's new manifests, checks that
//! every manifest it built on is still there, and commits again with them
//! (never losing the append). A replace or another compaction meanwhile
//! fails it, saying to run it again.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_schema::Schema;
use iceberg::spec::{ManifestEntryRef, ManifestFile, Operation};

use super::{IcebergTable, NewSnapshot, data_file, schema};
use crate::WriteOptions;
use crate::dataset::ParquetLane;
use crate::delta::{by_name, parquet_batches};
use crate::error::{Error, Result};
use crate::upkeep::{Optimized, bins};
use sluice_location::Location;

/// How many times a compaction rebases onto appends that beat it.
const ATTEMPTS: usize = 10;

/// [`optimize`] of `table` with `options`' target file size, if its current
/// snapshot lists `min_files` data files or more (the snapshot summary
/// tells, without reading a manifest); `None` when it did nothing.
pub async fn optimize_when(
    table: &IcebergTable,
    min_files: usize,
    options: &WriteOptions,
) -> Result<Option<Optimized>> {
    let Some(t) = table.load().await? else {
        return Ok(None);
    };
    let files = t
        .metadata()
        .current_snapshot()
        .and_then(|s| {
            s.summary()
                .additional_properties
                .get("total-data-files")
                .cloned()
        })
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    if files < min_files {
        return Ok(None);
    }
    let done = optimize(table, options.target_file_bytes, options).await?;
    Ok(done.version.is_some().then_some(done))
}

/// Compacts `table`: its data files smaller than `target_bytes` are packed
/// into bins of about that size and each bin of two files or more is
/// rewritten with `options`, all in one snapshot.
pub async fn optimize(
    table: &IcebergTable,
    target_bytes: u64,
    options: &WriteOptions,
) -> Result<Optimized> {
    let name = table.display();
    let fail = |e: iceberg::Error| Error::iceberg(&name, e);
    let Some(t) = table.load().await? else {
        return Err(Error::InvalidInput(format!(
            "there is no Iceberg table {name}"
        )));
    };
    let Some(current) = t.metadata().current_snapshot().cloned() else {
        return Ok(Optimized::default());
    };
    let io = t.file_io();
    let list = t
        .manifest_list_reader(&current)
        .load()
        .await
        .map_err(fail)?;
    let mut manifests: Vec<(ManifestFile, Vec<ManifestEntryRef>)> = Vec::new();
    for m in list.entries() {
        let manifest = m.load_manifest(io).await.map_err(fail)?;
        let live = manifest
            .entries()
            .iter()
            .filter(|e| e.is_alive())
            .cloned()
            .collect();
        manifests.push((m.clone(), live));
    }
    let live: Vec<&ManifestEntryRef> = manifests.iter().flat_map(|(_, es)| es).collect();
    let sizes: Vec<(usize, u64)> = live
        .iter()
        .enumerate()
        .map(|(i, e)| (i, e.data_file().file_size_in_bytes()))
        .collect();
    let packed = bins(&sizes, target_bytes);
    let mut done = Optimized {
        files_before: live.len(),
        files_after: live.len(),
        ..Optimized::default()
    };
    if packed.is_empty() {
        return Ok(done);
    }

    // Rewrite each bin as the table's current columns, by field id.
    let current_schema = t.metadata().current_schema().clone();
    let arrow = Arc::new(Schema::new(
        current_schema
            .as_struct()
            .fields()
            .iter()
            .map(|f| schema::arrow_field(f))
            .collect::<Result<Vec<_>>>()?,
    ));
    let (store, _) = table.location.store()?;
    let mut removed = HashSet::new();
    let mut written = Vec::new();
    for bin in &packed {
        let mut lane = ParquetLane::new(&table.location.child("data")?, arrow.clone(), options)?;
        for &i in bin {
            let file = live[i].data_file();
            let path =
                Location::parse(file.file_path(), table.location.options().clone())?.path()?;
            for batch in parquet_batches(&store, path, file.file_size_in_bytes()).await? {
                lane.write(by_name(&batch?, &arrow)?).await?;
            }
            removed.insert(file.file_path().to_string());
            done.files_removed += 1;
            done.bytes_removed += file.file_size_in_bytes();
            done.rows += file.record_count();
        }
        written.extend(lane.finish().await?);
    }
    let added = written
        .iter()
        .map(|f| data_file(f, &current_schema, &table.location))
        .collect::<Result<Vec<_>>>()?;
    done.files_added = added.len();
    done.bytes_added = added.iter().map(|f| f.file_size_in_bytes()).sum();

    // The manifests this compaction builds on: kept, or rewritten without
    // the compacted files.
    let mut base = Vec::new();
    let mut rebuilt = 0;
    let first = NewSnapshot::for_table(&t);
    for (m, entries) in &manifests {
        if !entries
            .iter()
            .any(|e| removed.contains(e.data_file().file_path()))
        {
            base.push(m.clone());
            continue;
        }
        let kept: Vec<&ManifestEntryRef> = entries
            .iter()
            .filter(|e| !removed.contains(e.data_file().file_path()))
            .collect();
        if kept.is_empty() {
            // Every file it listed was compacted: the manifest goes.
            continue;
        }
        let mut writer = first.writer(&t, &format!("r{rebuilt}"))?;
        rebuilt += 1;
        for e in kept {
            writer
                .add_existing_file(
                    e.data_file().clone(),
                    e.snapshot_id().unwrap_or(m.added_snapshot_id),
                    e.sequence_number().unwrap_or(m.sequence_number),
                    e.file_sequence_number,
                )
                .map_err(fail)?;
        }
        base.push(writer.write_manifest_file().await.map_err(fail)?);
    }
    let built_on: HashSet<String> = manifests
        .iter()
        .map(|(m, _)| m.manifest_path.clone())
        .collect();

    let mut t = t;
    let mut appended: Vec<ManifestFile> = Vec::new();
    for _ in 0..ATTEMPTS {
        // The same snapshot id every attempt (the rewritten manifests name
        // it), the sequence number after the table's latest.
        let snapshot = first.rebased(&t);
        let mut all = base.clone();
        all.extend(appended.iter().cloned());
        all.push(snapshot.manifest(&t, added.clone()).await?);
        // The totals carry on from the table as it is now (the next
        // append adds to them), less what was compacted, plus its files.
        let parent = t
            .metadata()
            .current_snapshot()
            .map(|s| s.summary().additional_properties.clone())
            .unwrap_or_default();
        let total = |key: &str| {
            parent
                .get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut summary: std::collections::HashMap<String, String> = [
            ("added-data-files", done.files_added as u64),
            ("deleted-data-files", done.files_removed as u64),
            ("added-files-size", done.bytes_added),
            ("removed-files-size", done.bytes_removed),
            ("added-records", done.rows),
            ("deleted-records", done.rows),
            (
                "total-data-files",
                (total("total-data-files") + done.files_added as u64)
                    .saturating_sub(done.files_removed as u64),
            ),
            (
                "total-files-size",
                (total("total-files-size") + done.bytes_added).saturating_sub(done.bytes_removed),
            ),
            ("total-records", total("total-records")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for key in [
            "total-delete-files",
            "total-position-deletes",
            "total-equality-deletes",
        ] {
            summary.insert(key.to_string(), total(key).to_string());
        }
        match snapshot
            .commit(
                &table.catalog,
                &t,
                all,
                Operation::Replace,
                summary,
                Default::default(),
            )
            .await
        {
            Ok(id) => {
                done.version = Some(id as u64);
                // As this compaction saw the table (appends meanwhile add more).
                done.files_after = done.files_before - done.files_removed + done.files_added;
                return Ok(done);
            }
            Err(e) if e.is_retryable() => {
                // Someone committed first: build on what they added, if
                // they only added.
                t = table.load().await?.ok_or_else(|| {
                    Error::InvalidInput(format!("Iceberg table {name} was dropped"))
                })?;
                let now = t.metadata().current_snapshot().cloned().ok_or_else(|| {
                    Error::InvalidInput(format!("Iceberg table {name} lost its data"))
                })?;
                let list = t.manifest_list_reader(&now).load().await.map_err(fail)?;
                let paths: HashSet<&String> =
                    list.entries().iter().map(|m| &m.manifest_path).collect();
                if !built_on.iter().all(|p| paths.contains(p)) {
                    return Err(Error::InvalidInput(format!(
                        "Iceberg table {name} was replaced or compacted while this compaction ran; nothing was committed: run it again"
                    )));
                }
                appended = list
                    .entries()
                    .iter()
                    .filter(|m| !built_on.contains(&m.manifest_path))
                    .cloned()
                    .collect();
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::InvalidInput(format!(
        "Iceberg table {name}: other writers committed first {ATTEMPTS} times; nothing was compacted: run it again"
    )))
}
