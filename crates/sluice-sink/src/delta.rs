//! Delta Lake tables through the `deltalake` crate.
//!
//! Data files are streamed to storage by `RecordBatchWriter` (one per lane),
//! which also computes per-file statistics; nothing is visible until
//! [`commit`] writes one log entry holding every file of the run:
//! create-or-replace commits protocol, metadata, removes of the old files and
//! the new adds together; append checks the schema and commits the adds.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, StructType, Transaction};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::writer::{DeltaWriter, RecordBatchWriter};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::{WriteMode, WriteOptions};

/// Streams one lane's batches into data files of the table.
pub struct DeltaLane {
    writer: RecordBatchWriter,
    table: String,
}

impl DeltaLane {
    pub(crate) fn new(
        location: &Location,
        schema: SchemaRef,
        options: &WriteOptions,
    ) -> Result<Self> {
        let table = location.display();
        let writer = RecordBatchWriter::try_new(
            location.url().as_str(),
            schema,
            None,
            Some(location.options().clone()),
        )
        .map_err(|e| Error::delta(&table, e))?
        .with_writer_properties(writer_properties(options))
        .with_target_file_size(options.target_file_bytes);
        Ok(DeltaLane { writer, table })
    }

    pub(crate) async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .await
            .map_err(|e| Error::delta(&self.table, e))
    }

    pub(crate) async fn finish(mut self) -> Result<Vec<Add>> {
        self.writer
            .flush()
            .await
            .map_err(|e| Error::delta(&self.table, e))
    }
}

pub(crate) fn writer_properties(options: &WriteOptions) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(options.compression)
        .set_max_row_group_bytes(Some(options.row_group_bytes))
        // Row-group statistics are what Delta's file stats and readers'
        // pruning use; page-level ones cost encode time for little gain here.
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
        .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Loads the table at `location`, or `None` if there is no Delta table there.
pub async fn load(location: &Location) -> Result<Option<DeltaTable>> {
    let table = location.display();
    let mut t = DeltaTableBuilder::from_url(location.url().clone())
        .map_err(|e| Error::delta(&table, e))?
        .with_storage_options(location.options().clone())
        .build()
        .map_err(|e| Error::delta(&table, e))?;
    if !t
        .log_store()
        .is_delta_table_location()
        .await
        .map_err(|e| Error::delta(&table, e))?
    {
        return Ok(None);
    }
    t.load().await.map_err(|e| Error::delta(&table, e))?;
    Ok(Some(t))
}

/// Commits `adds` as one new table version and returns it.
pub async fn commit(
    location: &Location,
    schema: &Schema,
    adds: Vec<Add>,
    mode: WriteMode,
    txn: Option<(String, i64)>,
) -> Result<u64> {
    let table = location.display();
    let mut properties = CommitProperties::default();
    if let Some((app_id, version)) = txn {
        properties = properties.with_application_transaction(Transaction::new(app_id, version));
    }
    let existing = match mode {
        WriteMode::Overwrite => None,
        WriteMode::Append => load(location).await?,
    };
    let actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
    match existing {
        Some(t) => {
            let snapshot = t.snapshot().map_err(|e| Error::delta(&table, e))?;
            check_schema(&table, snapshot.schema().as_ref(), schema)?;
            let version = CommitBuilder::from(properties)
                .with_actions(actions)
                .build(
                    Some(snapshot),
                    t.log_store(),
                    DeltaOperation::Write {
                        mode: SaveMode::Append,
                        partition_by: None,
                        predicate: None,
                    },
                )
                .await
                .map_err(|e| Error::delta(&table, e))?
                .version();
            Ok(version)
        }
        None => {
            let columns: StructType = Arc::new(schema.clone())
                .try_into_kernel()
                .map_err(Error::Arrow)?;
            let t = CreateBuilder::new()
                .with_location(location.url().as_str())
                .with_storage_options(location.options().clone())
                .with_columns(columns.fields().cloned())
                .with_save_mode(SaveMode::Overwrite)
                .with_actions(actions)
                .with_commit_properties(properties)
                .await
                .map_err(|e| Error::delta(&table, e))?;
            t.version().ok_or_else(|| {
                Error::delta(&table, DeltaTableError::generic("no version after create"))
            })
        }
    }
}

fn check_schema(table: &str, existing: &StructType, input: &Schema) -> Result<()> {
    let incoming: StructType = Arc::new(input.clone())
        .try_into_kernel()
        .map_err(Error::Arrow)?;
    let mismatch = |reason: String| Error::SchemaMismatch {
        table: table.to_string(),
        reason: format!("{reason}; load with --mode overwrite to replace the table"),
    };
    for field in incoming.fields() {
        match existing.field(field.name()) {
            None => {
                return Err(mismatch(format!(
                    "column '{}' is not in the table",
                    field.name()
                )));
            }
            Some(f) if f.data_type() != field.data_type() => {
                return Err(mismatch(format!(
                    "column '{}' is {} in the table but {} in the input",
                    field.name(),
                    f.data_type(),
                    field.data_type()
                )));
            }
            Some(_) => {}
        }
    }
    for field in existing.fields() {
        if incoming.field(field.name()).is_none() && !field.is_nullable() {
            return Err(mismatch(format!(
                "required column '{}' is missing from the input",
                field.name()
            )));
        }
    }
    if existing.fields().count() != incoming.fields().count() {
        return Err(mismatch(format!(
            "the table has columns [{}], the input [{}]",
            existing
                .fields()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", "),
            incoming
                .fields()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}
