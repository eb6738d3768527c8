//! Delta Lake tables through the `deltalake` crate.
//!
//! Data files are streamed to storage by `RecordBatchWriter` (one per lane),
//! which also computes per-file statistics; nothing is visible until
//! [`commit`] writes one log entry holding every file of the run:
//! create-or-replace commits protocol, metadata, removes of the old files and
//! the new adds together; append checks the schema and commits the adds.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use arrow_array::{RecordBatch, new_null_array};
use arrow_schema::{Schema, SchemaRef};
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, MetadataExt, StructType, Transaction};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::writer::{DeltaWriter, RecordBatchWriter};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::{WriteMode, WriteOptions};
use sluice_location::Location;

/// How a commit may change the table's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaChange {
    /// The input must have the table's columns (nullable ones may be
    /// missing); new columns are refused.
    None,
    /// New nullable columns are added to the table in the same commit.
    AddColumns,
}

/// A batch of an application, for idempotent commits: Delta's `txn` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// The application (a pipeline): `sluice-<checkpoint id>`.
    pub app_id: String,
    /// Its batch number.
    pub version: i64,
}

/// What [`commit_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This attempt committed the batch as table `version`.
    Committed {
        /// The new table version.
        version: u64,
    },
    /// The table already held the batch (an earlier attempt committed it);
    /// nothing was added.
    AlreadyCommitted {
        /// The table version that holds it, where known.
        version: Option<u64>,
    },
}

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
        // A column with many distinct values (ids, timestamps as text,
        // URLs) gives up its dictionary once the dictionary reaches this
        // size; at parquet's default (1 MiB) each row group first interned
        // some 100,000 values in vain. Measured on the bench's events:
        // CSV ingest 15% faster, files 3-8% larger (as large as DuckDB's).
        .set_dictionary_page_size_limit(256 * 1024)
        // Row-group statistics are what Delta's file stats and readers'
        // pruning use; page-level ones cost encode time for little gain here.
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
        .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Loads the table at `location`, or `None` if there is no Delta table there.
pub async fn load(location: &Location) -> Result<Option<DeltaTable>> {
    let key = location.url().to_string();
    let cached = LOADED.lock().ok().and_then(|m| m.get(&key).cloned());
    if let Some(mut t) = cached
        && still_there(&t).await
        && t.update_incremental(None).await.is_ok()
    {
        remember(&key, &t);
        return Ok(Some(t));
    }
    let loaded = load_whole(location).await?;
    match &loaded {
        Some(t) => remember(&key, t),
        None => {
            if let Ok(mut m) = LOADED.lock() {
                m.remove(&key);
            }
        }
    }
    Ok(loaded)
}

/// Tables this process has loaded, by URL: a later [`load`] reads only the
/// commits since (a long-running service commits to the same tables again
/// and again), not the log from its last checkpoint.
static LOADED: LazyLock<Mutex<HashMap<String, DeltaTable>>> = LazyLock::new(Default::default);

fn remember(key: &str, t: &DeltaTable) {
    if let Ok(mut m) = LOADED.lock() {
        let newer = m.get(key).is_none_or(|old| old.version() <= t.version());
        if newer {
            m.insert(key.to_string(), t.clone());
        }
    }
}

/// Whether the commit a cached table ends at is still in the log: a table
/// deleted and created again at the same place starts a new log, which the
/// cached state must not be brought "up to date" with.
async fn still_there(t: &DeltaTable) -> bool {
    match t.version() {
        Some(v) => matches!(t.log_store().read_commit_entry(v).await, Ok(Some(_))),
        None => false,
    }
}

async fn load_whole(location: &Location) -> Result<Option<DeltaTable>> {
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

/// The Arrow schema of the Delta table at `location`, or `None` if there is
/// no table there.
pub async fn table_schema(location: &Location) -> Result<Option<Schema>> {
    use deltalake_core::kernel::engine::arrow_conversion::TryIntoArrow;
    let name = location.display();
    let Some(table) = load(location).await? else {
        return Ok(None);
    };
    let snapshot = table.snapshot().map_err(|e| Error::delta(&name, e))?;
    let schema: Schema = snapshot.schema().as_ref().try_into_arrow()?;
    Ok(Some(schema))
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
    // A batch of an application's transaction must not be committed twice:
    // such a commit is never retried here.
    let attempts = if txn.is_some() { 1 } else { 5 };
    let mut properties = CommitProperties::default();
    if let Some((app_id, version)) = txn {
        properties = properties.with_application_transaction(Transaction::new(app_id, version));
    }
    let existing = match mode {
        WriteMode::Overwrite => None,
        WriteMode::Append => load(location).await?,
    };
    let actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
    if let Some(t) = existing {
        return append(location, t, schema, actions, properties, attempts).await;
    }
    let columns: StructType = Arc::new(schema.clone())
        .try_into_kernel()
        .map_err(Error::Arrow)?;
    let save_mode = match mode {
        WriteMode::Overwrite => SaveMode::Overwrite,
        // Never replace a table another writer created meanwhile.
        WriteMode::Append => SaveMode::ErrorIfExists,
    };
    let created = CreateBuilder::new()
        .with_location(location.url().as_str())
        .with_storage_options(location.options().clone())
        .with_columns(columns.fields().cloned())
        .with_save_mode(save_mode)
        .with_actions(actions.clone())
        // No retry at a later version: a create that lost the race must not
        // replace the winner's metadata, it appends below instead.
        .with_commit_properties(properties.clone().with_max_retries(0))
        .await
        .map_err(|e| Error::delta(&table, e));
    match created {
        Ok(t) => t.version().ok_or_else(|| {
            Error::delta(&table, DeltaTableError::generic("no version after create"))
        }),
        // Two first appends raced to create the table: the loser appends
        // to the table the winner created.
        Err(e) if mode == WriteMode::Append => match load(location).await? {
            Some(t) => append(location, t, schema, actions, properties, attempts).await,
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Commits `actions` as an append to `t`. When another writer's commit
/// cannot be reconciled with this one (it changed the table's metadata, or
/// created the table under this one), the table is loaded again, the schema
/// checked against it again, and the append retried (up to `attempts`
/// commits in all).
async fn append(
    location: &Location,
    t: DeltaTable,
    schema: &Schema,
    actions: Vec<Action>,
    properties: CommitProperties,
    attempts: usize,
) -> Result<u64> {
    let table = location.display();
    let mut t = t;
    let mut attempt = 1;
    loop {
        let snapshot = t.snapshot().map_err(|e| Error::delta(&table, e))?;
        check_schema(&table, snapshot.schema().as_ref(), schema)?;
        let committed = CommitBuilder::from(properties.clone())
            .with_actions(actions.clone())
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
            .map_err(|e| Error::delta(&table, e));
        match committed {
            Ok(c) => return Ok(c.version()),
            Err(e) if attempt < attempts && lost_a_race(&e) => {
                attempt += 1;
                t = load(location).await?.ok_or_else(|| {
                    Error::delta(&table, DeltaTableError::generic("the table vanished"))
                })?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a failed commit lost to another writer's commit, so that the
/// same commit may be tried again on the newer table. Anything else (an
/// append-only table, an unsupported feature, an ambiguous store error that
/// may have committed) is not retried.
fn lost_a_race(e: &Error) -> bool {
    use deltalake_core::kernel::transaction::TransactionError;
    matches!(
        e,
        Error::CommitConflict {
            source: DeltaTableError::VersionAlreadyExists(_)
                | DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(_)
                        | TransactionError::VersionAlreadyExists(_)
                        | TransactionError::MaxCommitAttempts(_)
                },
            ..
        }
    )
}

fn check_schema(table: &str, existing: &StructType, input: &Schema) -> Result<()> {
    let incoming: StructType = Arc::new(input.clone())
        .try_into_kernel()
        .map_err(Error::Arrow)?;
    let mismatch = |reason: String| Error::SchemaMismatch {
        table: table.to_string(),
        reason: format!(
            "{reason}; to replace the table, load with --mode overwrite (or ?mode=replace over HTTP)"
        ),
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

/// The latest batch application `app_id` committed to the table at
/// `location` (its `txn` version), or `None` (also without a table).
pub async fn txn_version(location: &Location, app_id: &str) -> Result<Option<i64>> {
    match load(location).await? {
        Some(table) => txn_of(&table, &location.display(), app_id).await,
        None => Ok(None),
    }
}

pub(crate) async fn txn_of(table: &DeltaTable, name: &str, app_id: &str) -> Result<Option<i64>> {
    table
        .snapshot()
        .map_err(|e| Error::delta(name, e))?
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| Error::delta(name, e))
}

/// The schema a commit gives the table: the table's own columns, then the
/// input's new ones. Fails if a column changed type, if a required column
/// is missing from the input, or if there are new columns and `change`
/// does not allow them.
fn evolved_schema(
    table: &str,
    existing: &StructType,
    input: &Schema,
    change: SchemaChange,
) -> Result<Option<StructType>> {
    let incoming: StructType = Arc::new(input.clone())
        .try_into_kernel()
        .map_err(Error::Arrow)?;
    let mismatch = |reason: String| Error::SchemaMismatch {
        table: table.to_string(),
        reason,
    };
    for field in existing.fields() {
        match incoming.field(field.name()) {
            None if !field.is_nullable() => {
                return Err(mismatch(format!(
                    "required column '{}' is missing from the input",
                    field.name()
                )));
            }
            Some(f) if f.data_type() != field.data_type() => {
                return Err(mismatch(format!(
                    "column '{}' is {} in the table but {} in the input",
                    field.name(),
                    field.data_type(),
                    f.data_type()
                )));
            }
            _ => {}
        }
    }
    let new: Vec<_> = incoming
        .fields()
        .filter(|f| existing.field(f.name()).is_none())
        .cloned()
        .collect();
    if new.is_empty() {
        return Ok(None);
    }
    if change == SchemaChange::None {
        let names: Vec<&str> = new.iter().map(|f| f.name().as_str()).collect();
        return Err(mismatch(format!(
            "column(s) {} are not in the table; allow schema evolution (mergeSchema=true) to add them",
            names.join(", ")
        )));
    }
    let fields = existing.fields().cloned().chain(new);
    Ok(Some(
        StructType::try_new(fields).map_err(|e| mismatch(e.to_string()))?,
    ))
}

/// Commits `adds` as batch `txn.version` of application `txn.app_id`,
/// exactly once (the incremental protocol's commit step):
///
/// - if the table's txn version for the application already is at least
///   the batch, nothing is committed: an earlier attempt did it;
/// - otherwise one version holds the adds, the txn and (with
///   [`SchemaChange::AddColumns`]) the new columns;
/// - if the outcome is unknown (an error after the log entry may have been
///   written, or a concurrent commit of the same application), the log is
///   read again to settle it, never committed twice.
///
/// The table is created if it does not exist.
pub async fn commit_once(
    location: &Location,
    schema: &Schema,
    adds: Vec<Add>,
    txn: &Txn,
    change: SchemaChange,
) -> Result<Outcome> {
    let actions = adds.into_iter().map(Action::Add).collect();
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    batch_once(location, schema, actions, txn, change, operation).await
}

/// [`commit_once`] of a keyed apply's `actions` (removes of rewritten
/// files and their replacements), recorded in the log as an update.
pub(crate) async fn commit_actions_once(
    location: &Location,
    schema: &Schema,
    actions: Vec<Action>,
    txn: &Txn,
    change: SchemaChange,
) -> Result<Outcome> {
    let operation = DeltaOperation::Update {
        predicate: Some("keyed apply".to_string()),
    };
    batch_once(location, schema, actions, txn, change, operation).await
}

async fn batch_once(
    location: &Location,
    schema: &Schema,
    mut actions: Vec<Action>,
    txn: &Txn,
    change: SchemaChange,
    operation: DeltaOperation,
) -> Result<Outcome> {
    let name = location.display();
    let table = match load(location).await? {
        Some(table) => table,
        None => match create_once(location, schema, actions.clone(), txn).await {
            Ok(version) => return Ok(Outcome::Committed { version }),
            // Another writer created the table first: append to it.
            Err(e) => match load(location).await? {
                Some(table) => table,
                None => return Err(e),
            },
        },
    };
    if txn_of(&table, &name, &txn.app_id)
        .await?
        .is_some_and(|v| v >= txn.version)
    {
        return Ok(Outcome::AlreadyCommitted { version: None });
    }
    let snapshot = table.snapshot().map_err(|e| Error::delta(&name, e))?;
    let read_version = snapshot.version();
    if let Some(evolved) = evolved_schema(&name, snapshot.schema().as_ref(), schema, change)? {
        let metadata = MetadataExt::with_schema(snapshot.metadata().clone(), &evolved)
            .map_err(|e| Error::delta(&name, e.into()))?;
        actions.insert(0, Action::Metadata(metadata));
    }
    let commit_id = uuid::Uuid::new_v4().to_string();
    let properties = CommitProperties::default()
        .with_application_transaction(Transaction::new(txn.app_id.clone(), txn.version))
        .with_metadata([(COMMIT_ID.to_string(), serde_json::json!(commit_id))]);
    let result = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await;
    match result {
        Ok(done) => Ok(Outcome::Committed {
            version: done.version(),
        }),
        Err(e) => settle(location, txn, read_version, &commit_id, e).await,
    }
}

/// Creates the table with `adds` as version 0, carrying `txn`. Fails (and
/// commits nothing) if another writer creates it first: the commit is not
/// retried at a later version, where it would replace the other writer's
/// metadata.
async fn create_once(
    location: &Location,
    schema: &Schema,
    actions: Vec<Action>,
    txn: &Txn,
) -> Result<u64> {
    let name = location.display();
    let columns: StructType = Arc::new(schema.clone())
        .try_into_kernel()
        .map_err(Error::Arrow)?;
    let properties = CommitProperties::default()
        .with_application_transaction(Transaction::new(txn.app_id.clone(), txn.version))
        .with_max_retries(0);
    let t = CreateBuilder::new()
        .with_location(location.url().as_str())
        .with_storage_options(location.options().clone())
        .with_columns(columns.fields().cloned())
        .with_save_mode(SaveMode::ErrorIfExists)
        .with_actions(actions)
        .with_commit_properties(properties)
        .await
        .map_err(|e| Error::delta(&name, e))?;
    t.version()
        .ok_or_else(|| Error::delta(&name, DeltaTableError::generic("no version after create")))
}

/// Key of Sluice's commit id in a commit's `commitInfo`.
const COMMIT_ID: &str = "sluiceCommitId";

/// Decides what an attempt whose commit call failed did, from the log.
async fn settle(
    location: &Location,
    txn: &Txn,
    read_version: u64,
    commit_id: &str,
    error: DeltaTableError,
) -> Result<Outcome> {
    let name = location.display();
    let Some(table) = load(location).await? else {
        return Err(Error::delta(&name, error));
    };
    if txn_of(&table, &name, &txn.app_id)
        .await?
        .is_none_or(|v| v < txn.version)
    {
        // The batch is not in the table: the error stands, and the batch
        // may be tried again.
        return Err(Error::delta(&name, error));
    }
    // The batch is in the table: find whether this attempt wrote it.
    let log = table.log_store();
    let latest = table.version().unwrap_or_default();
    for v in (read_version + 1..=latest).rev() {
        let Ok(Some(bytes)) = log.read_commit_entry(v).await else {
            continue;
        };
        let ours = deltalake_core::logstore::get_actions(v, &bytes)
            .unwrap_or_default()
            .iter()
            .any(|a| matches!(a, Action::CommitInfo(ci) if ci.info.get(COMMIT_ID) == Some(&serde_json::json!(commit_id))));
        if ours {
            return Ok(Outcome::Committed { version: v });
        }
    }
    Ok(Outcome::AlreadyCommitted { version: None })
}

/// `rel` under `root`.
pub(crate) fn under(root: &Path, rel: &str) -> Path {
    if root.as_ref().is_empty() {
        Path::from(rel)
    } else {
        Path::from(format!("{}/{rel}", root.as_ref()))
    }
}

/// `batch` (read from a data file) as `schema`: its columns by name, and
/// nulls for those it does not have (added to the table after it was
/// written).
pub(crate) fn by_name(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The batches of the Parquet file at `path` (of `size` bytes, as the
/// table's log says), decoded as they are taken.
pub(crate) async fn parquet_batches(
    store: &Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
) -> Result<ParquetRecordBatchReader> {
    let bytes = store.get(&path).await?.bytes().await?;
    if bytes.len() as u64 != size {
        return Err(Error::InvalidInput(format!(
            "data file {path} holds {} bytes, the table's log says {size}",
            bytes.len()
        )));
    }
    Ok(ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?)
}
