//! An Iceberg table for the people looking at it ([`crate::inspect`]):
//! its current snapshot's files, its snapshots, and its data files to
//! sample.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use object_store::path::Path;

use super::{IcebergTable, schema};
use crate::error::{Error, Result};
use crate::inspect::{TableInfo, Version, size_buckets};
use sluice_location::Location;

/// The table as it is now, or `None` if the catalog has no such table.
pub async fn describe(table: &IcebergTable) -> Result<Option<TableInfo>> {
    let Some(t) = table.load().await? else {
        return Ok(None);
    };
    let files = live_files(table, &t).await?;
    let metadata = t.metadata();
    Ok(Some(TableInfo {
        format: "iceberg",
        location: table.location.display(),
        version: metadata.current_snapshot().map(|s| s.sequence_number()),
        schema: current_schema(&t)?,
        partition_columns: metadata
            .default_partition_spec()
            .fields()
            .iter()
            .map(|f| f.name.clone())
            .collect(),
        files: files.len(),
        bytes: files.iter().map(|f| f.1).sum(),
        rows: Some(files.iter().map(|f| f.2).sum()),
        file_sizes: size_buckets(files.iter().map(|f| f.1)),
        properties: metadata
            .properties()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }))
}

/// The table's latest `limit` snapshots, newest first.
pub async fn history(table: &IcebergTable, limit: usize) -> Result<Vec<Version>> {
    let Some(t) = table.load().await? else {
        return Err(Error::InvalidInput(format!(
            "there is no Iceberg table {}",
            table.display()
        )));
    };
    let mut snapshots: Vec<_> = t.metadata().snapshots().collect();
    snapshots.sort_by_key(|s| std::cmp::Reverse((s.sequence_number(), s.timestamp_ms())));
    let count =
        |s: &BTreeMap<String, String>, key: &str| -> Option<u64> { s.get(key)?.parse().ok() };
    Ok(snapshots
        .into_iter()
        .take(limit)
        .map(|s| {
            let summary: BTreeMap<String, String> = s
                .summary()
                .additional_properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Version {
                version: s.sequence_number(),
                snapshot_id: Some(s.snapshot_id()),
                timestamp_ms: Some(s.timestamp_ms()),
                operation: s.summary().operation.as_str().to_string(),
                rows_added: count(&summary, "added-records"),
                files_added: count(&summary, "added-data-files").unwrap_or(0),
                files_removed: count(&summary, "deleted-data-files").unwrap_or(0),
                bytes_added: count(&summary, "added-files-size").unwrap_or(0),
                parameters: summary
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect(),
            }
        })
        .collect())
}

/// The table's current schema and live data files (path, bytes), or
/// `None` if there is no table.
pub async fn data_files(table: &IcebergTable) -> Result<Option<(SchemaRef, Vec<(Path, u64)>)>> {
    let Some(t) = table.load().await? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (file, size, _) in live_files(table, &t).await? {
        let path = Location::parse(&file, table.location.options().clone())?.path()?;
        out.push((path, size));
    }
    Ok(Some((current_schema(&t)?, out)))
}

fn current_schema(t: &iceberg::table::Table) -> Result<SchemaRef> {
    let fields = t
        .metadata()
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| schema::arrow_field(f))
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// The current snapshot's live data files: path, bytes, rows.
async fn live_files(
    table: &IcebergTable,
    t: &iceberg::table::Table,
) -> Result<Vec<(String, u64, u64)>> {
    let fail = |e: iceberg::Error| Error::iceberg(&table.display(), e);
    let Some(current) = t.metadata().current_snapshot() else {
        return Ok(vec![]);
    };
    let io = t.file_io();
    let list = t.manifest_list_reader(current).load().await.map_err(fail)?;
    let mut out = Vec::new();
    for m in list.entries() {
        let manifest = m.load_manifest(io).await.map_err(fail)?;
        for e in manifest.entries().iter().filter(|e| e.is_alive()) {
            let f = e.data_file();
            out.push((
                f.file_path().to_string(),
                f.file_size_in_bytes(),
                f.record_count(),
            ));
        }
    }
    Ok(out)
}
