//! The native sink: Arrow record batches in, committed tables out.
//!
//! A [`Target`] is a table location and format. Batches are written through
//! one or more [`Lane`]s in parallel (each streams its own data files to
//! storage); [`Target::commit`] then makes every file of the run visible at
//! once. Until that commit nothing a run wrote is part of the table, so a
//! failed run leaves the table at its previous version; its orphaned files
//! are never referenced and are removed by vacuum.
//!
//! ```no_run
//! # async fn demo(batch: arrow_array::RecordBatch) -> sluice_sink::Result<()> {
//! use sluice_sink::{Location, TableFormat, Target, WriteMode, WriteOptions};
//!
//! let location = Location::parse("/tmp/events", Default::default())?;
//! let target = Target::new(location, TableFormat::Delta, WriteOptions::default());
//! let mut lane = target.lane(batch.schema())?;
//! lane.write(batch.clone()).await?;
//! let written = lane.finish().await?;
//! let committed = target.commit(&batch.schema(), vec![written], WriteMode::Overwrite, None).await?;
//! println!("version {:?}", committed.version);
//! # Ok(()) }
//! ```

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use deltalake_core::kernel::Add;
use parquet::basic::{Compression, ZstdLevel};

pub mod dataset;
pub mod delta;
mod error;
pub mod iceberg_table;
pub mod inspect;
pub mod keyed;
mod location;
pub mod storable;
pub mod upkeep;

pub use delta::{Outcome, SchemaChange, Txn};
pub use error::{Error, Result};
pub use location::register_object_stores;
pub use sluice_location::Location;

/// The table format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// A Delta Lake table.
    Delta,
    /// A plain directory of Parquet files.
    Parquet,
    /// An Iceberg table in a SQL catalog ([`Target::in_catalog`]).
    Iceberg,
}

/// How a run's data relates to what the table held before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Create the table, or replace its data and schema
    /// (`CREATE OR REPLACE TABLE ... AS SELECT`).
    Overwrite,
    /// Add to the table, which must have the same schema; created if absent.
    Append,
}

/// How data files are written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// A data file is finished once it reaches about this many bytes.
    pub target_file_bytes: u64,
    /// A row group is finished once it holds about this many bytes
    /// (encoded). A lane holds its open row group in memory, and about as
    /// much again while it flushes it, so this bounds a lane's memory.
    pub row_group_bytes: usize,
    /// Page compression.
    pub compression: Compression,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            target_file_bytes: 128 * 1024 * 1024,
            // Measured on the bench's 1 GiB CSV (2 lanes): 32 MiB row
            // groups peaked at 425 MiB of RSS, 8 MiB ones at ~330, for
            // files 2.6% larger and the same speed; still larger than
            // DuckDB's (122,880 rows, ~2.5 MB here).
            row_group_bytes: 8 * 1024 * 1024,
            compression: Compression::ZSTD(ZstdLevel::default()),
        }
    }
}

/// The data file size a keyed table aims at: each batch of changes
/// rewrites the files its keys may be in, so smaller files rewrite less
/// (as Delta's `tuneFileSizesForRewrites` does for tables MERGE writes).
pub const KEYED_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// A table to write into.
#[derive(Debug, Clone)]
pub struct Target {
    location: Location,
    format: TableFormat,
    options: WriteOptions,
    /// Batches are changes applied by key, not rows appended.
    keyed: Option<keyed::KeyedApply>,
    /// An Iceberg table's name in its catalog.
    iceberg: Option<iceberg_table::IcebergTable>,
}

/// What one lane wrote.
#[derive(Debug, Default)]
pub struct Written {
    adds: Vec<Add>,
    files: Vec<dataset::DataFile>,
    /// A keyed target's lane: what it staged for the commit's merge.
    staged: keyed::Staged,
    /// An Iceberg lane's data files.
    iceberg: iceberg_table::LaneFiles,
    rows: u64,
}

impl Written {
    /// Data files written.
    pub fn files(&self) -> usize {
        self.adds.len() + self.files.len() + self.iceberg.files.len()
    }

    /// Bytes of data files written.
    pub fn bytes(&self) -> u64 {
        self.adds.iter().map(|a| a.size as u64).sum::<u64>()
            + self
                .files
                .iter()
                .chain(&self.iceberg.files)
                .map(|f| f.bytes)
                .sum::<u64>()
    }

    /// Rows written.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

/// The outcome of a commit.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The new table version (Delta only).
    pub version: Option<u64>,
    /// Data files the commit added.
    pub files: usize,
    /// Bytes of those files.
    pub bytes: u64,
    /// Rows in those files.
    pub rows: u64,
}

/// The outcome of an exactly-once commit ([`Target::commit_once`]).
#[derive(Debug, Clone)]
pub struct BatchCommitted {
    /// What the commit did.
    pub outcome: Outcome,
    /// What this attempt wrote (not referenced by the table if the outcome
    /// is [`Outcome::AlreadyCommitted`]; vacuum removes such files).
    pub written: Committed,
}

/// One stream of batches into data files.
pub struct Lane {
    inner: LaneInner,
    rows: u64,
}

enum LaneInner {
    Delta(Box<delta::DeltaLane>),
    Parquet(Box<dataset::ParquetLane>),
    /// Changes, applied by key at the commit.
    Keyed(Box<keyed::KeyedLane>),
    Iceberg(Box<iceberg_table::IcebergLane>),
}

impl Lane {
    /// Writes `batch` (its schema must be the lane's).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        match &mut self.inner {
            LaneInner::Delta(l) => l.write(batch).await,
            LaneInner::Parquet(l) => l.write(batch).await,
            LaneInner::Keyed(l) => l.write(batch).await,
            LaneInner::Iceberg(l) => l.write(batch).await,
        }
    }

    /// Finishes the open file and returns what the lane wrote.
    pub async fn finish(self) -> Result<Written> {
        let rows = self.rows;
        Ok(match self.inner {
            LaneInner::Delta(l) => Written {
                adds: l.finish().await?,
                rows,
                ..Written::default()
            },
            LaneInner::Parquet(l) => Written {
                files: l.finish().await?,
                rows,
                ..Written::default()
            },
            LaneInner::Keyed(l) => Written {
                staged: l.finish().await?,
                rows,
                ..Written::default()
            },
            LaneInner::Iceberg(l) => Written {
                iceberg: l.finish().await?,
                rows,
                ..Written::default()
            },
        })
    }
}

impl Target {
    /// A table at `location` in `format`.
    pub fn new(location: Location, format: TableFormat, options: WriteOptions) -> Self {
        register_object_stores();
        Target {
            location,
            format,
            options,
            keyed: None,
            iceberg: None,
        }
    }

    /// This Iceberg target as `table` in its catalog.
    pub fn in_catalog(self, table: iceberg_table::IcebergTable) -> Self {
        Target {
            iceberg: Some(table),
            ..self
        }
    }

    /// The Iceberg table, or why there is none.
    fn iceberg_table(&self) -> Result<&iceberg_table::IcebergTable> {
        self.iceberg.as_ref().ok_or_else(|| {
            Error::InvalidInput(format!(
                "{}: an Iceberg table is named in a catalog",
                self.location.display()
            ))
        })
    }

    /// This target with its batches applied as changes by key (AUTO CDC):
    /// see [`keyed`]. Its data files are at most [`KEYED_FILE_BYTES`].
    pub fn keyed(self, spec: keyed::KeyedApply) -> Self {
        let options = WriteOptions {
            target_file_bytes: self.options.target_file_bytes.min(KEYED_FILE_BYTES),
            ..self.options
        };
        Target {
            keyed: Some(spec),
            options,
            ..self
        }
    }

    /// The table's location.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The table's format.
    pub fn format(&self) -> TableFormat {
        self.format
    }

    /// Whether batches are applied to it as changes by key.
    pub fn is_keyed(&self) -> bool {
        self.keyed.is_some()
    }

    /// The schema this table stores for data of `schema`: for Delta,
    /// widened where Delta lacks the type ([`storable::delta_schema`]), or
    /// an error naming every column it cannot store; a Parquet dataset
    /// stores any Arrow schema.
    pub fn storable(&self, schema: &Schema) -> Result<SchemaRef> {
        Ok(match self.format {
            TableFormat::Delta => std::sync::Arc::new(storable::delta_schema(schema)?),
            TableFormat::Parquet => std::sync::Arc::new(schema.clone()),
            TableFormat::Iceberg => std::sync::Arc::new(iceberg_table::storable(schema)?),
        })
    }

    /// Opens a lane that writes batches of `schema`.
    pub fn lane(&self, schema: SchemaRef) -> Result<Lane> {
        let inner = match (&self.keyed, self.format) {
            (Some(spec), TableFormat::Delta) => LaneInner::Keyed(Box::new(keyed::KeyedLane::new(
                spec.clone(),
                self.location.clone(),
                self.options.clone(),
            ))),
            (Some(_), TableFormat::Parquet | TableFormat::Iceberg) => {
                return Err(self.needs_delta());
            }
            (None, TableFormat::Iceberg) => LaneInner::Iceberg(Box::new(
                iceberg_table::IcebergLane::new(self.iceberg_table()?, schema, &self.options),
            )),
            (None, TableFormat::Delta) => LaneInner::Delta(Box::new(delta::DeltaLane::new(
                &self.location,
                schema,
                &self.options,
            )?)),
            (None, TableFormat::Parquet) => LaneInner::Parquet(Box::new(
                dataset::ParquetLane::new(&self.location.as_dir(), schema, &self.options)?,
            )),
        };
        Ok(Lane { inner, rows: 0 })
    }

    /// Commits what the lanes wrote as batch `txn` of an incremental
    /// pipeline, exactly once (see [`delta::commit_once`]). Appends to the
    /// table, creating it if needed; `change` says whether new columns may be
    /// added. Only Delta tables can do this: a plain Parquet dataset has no
    /// log to record the batch in.
    pub async fn commit_once(
        &self,
        schema: &Schema,
        written: Vec<Written>,
        txn: &Txn,
        change: SchemaChange,
    ) -> Result<BatchCommitted> {
        if self.format == TableFormat::Iceberg && self.keyed.is_none() {
            return self
                .commit_iceberg(schema, written, WriteMode::Append, Some(txn), change)
                .await;
        }
        if self.format != TableFormat::Delta {
            return Err(self.needs_delta());
        }
        if let Some(spec) = &self.keyed {
            return self.apply_once(spec, schema, written, txn, change).await;
        }
        let stats = Committed {
            version: None,
            files: written.iter().map(Written::files).sum(),
            bytes: written.iter().map(Written::bytes).sum(),
            rows: written.iter().map(Written::rows).sum(),
        };
        let adds = written.into_iter().flat_map(|w| w.adds).collect();
        let outcome = delta::commit_once(&self.location, schema, adds, txn, change).await?;
        let version = match outcome {
            Outcome::Committed { version } => Some(version),
            Outcome::AlreadyCommitted { version } => version,
        };
        Ok(BatchCommitted {
            outcome,
            written: Committed { version, ..stats },
        })
    }

    /// Why a target cannot take what is asked: incremental loads need a
    /// table with a log (Delta or Iceberg), keyed apply a Delta table.
    fn needs_delta(&self) -> Error {
        if self.keyed.is_some() {
            return Error::Unsupported(format!(
                "changes applied by key (AUTO CDC) into {} need a Delta table; use --table-format delta",
                self.location.display()
            ));
        }
        Error::Unsupported(format!(
            "incremental loads into {} need a Delta or Iceberg table (exactly-once commits record each batch in its log); use --table-format delta",
            self.location.display()
        ))
    }

    /// Commits the lanes' files to the Iceberg table in one snapshot.
    async fn commit_iceberg(
        &self,
        schema: &Schema,
        written: Vec<Written>,
        mode: WriteMode,
        txn: Option<&Txn>,
        change: SchemaChange,
    ) -> Result<BatchCommitted> {
        let stats = Committed {
            version: None,
            files: written.iter().map(Written::files).sum(),
            bytes: written.iter().map(Written::bytes).sum(),
            rows: written.iter().map(Written::rows).sum(),
        };
        let files = written.into_iter().map(|w| w.iceberg).collect();
        let outcome =
            iceberg_table::commit(self.iceberg_table()?, schema, files, mode, txn, change).await?;
        let version = match outcome {
            Outcome::Committed { version } => Some(version),
            Outcome::AlreadyCommitted { version } => version,
        };
        Ok(BatchCommitted {
            outcome,
            written: Committed { version, ..stats },
        })
    }

    /// [`Target::commit_once`] of a keyed target: the lanes' changes
    /// applied by key in one commit.
    async fn apply_once(
        &self,
        spec: &keyed::KeyedApply,
        schema: &Schema,
        written: Vec<Written>,
        txn: &Txn,
        change: SchemaChange,
    ) -> Result<BatchCommitted> {
        let schema = std::sync::Arc::new(schema.clone());
        let rows = written.iter().map(Written::rows).sum();
        let staged = written.into_iter().map(|w| w.staged).collect();
        let applied = keyed::apply_staged(
            &self.location,
            spec,
            &schema,
            staged,
            txn,
            &self.options,
            change,
        )
        .await?;
        let version = match applied.outcome {
            Outcome::Committed { version } => Some(version),
            Outcome::AlreadyCommitted { version } => version,
        };
        Ok(BatchCommitted {
            outcome: applied.outcome,
            written: Committed {
                version,
                files: applied.files_added,
                bytes: applied.bytes_added,
                rows,
            },
        })
    }

    /// Compacts the table's small files (as `sluice optimize` does) once it
    /// holds `min_files` of them (Delta) or `min_files` data files
    /// (Iceberg, by its snapshot summary); `None` when it did nothing.
    pub async fn optimize_when(&self, min_files: usize) -> Result<Option<upkeep::Optimized>> {
        match self.format {
            TableFormat::Delta => {
                upkeep::optimize_when(&self.location, min_files, &self.options).await
            }
            TableFormat::Iceberg => {
                iceberg_table::optimize_when(self.iceberg_table()?, min_files, &self.options).await
            }
            TableFormat::Parquet => Err(Error::Unsupported(format!(
                "{}: a Parquet dataset is not compacted",
                self.location.display()
            ))),
        }
    }

    /// The last batch application `app_id` committed to the table (its
    /// Delta `txn` version, or the batch an Iceberg snapshot recorded).
    pub async fn last_batch(&self, app_id: &str) -> Result<Option<i64>> {
        match self.format {
            TableFormat::Iceberg => iceberg_table::last_batch(self.iceberg_table()?, app_id).await,
            TableFormat::Delta | TableFormat::Parquet => {
                delta::txn_version(&self.location, app_id).await
            }
        }
    }

    /// The table's schema, or `None` if there is no table yet.
    pub async fn schema(&self) -> Result<Option<Schema>> {
        match self.format {
            TableFormat::Delta => delta::table_schema(&self.location).await,
            TableFormat::Parquet => Ok(None),
            TableFormat::Iceberg => self.iceberg_table()?.arrow_schema().await,
        }
    }

    /// Makes everything the lanes wrote visible at once.
    ///
    /// With `txn = Some((app_id, n))` the Delta commit also records that
    /// application `app_id` committed its batch `n`.
    pub async fn commit(
        &self,
        schema: &Schema,
        written: Vec<Written>,
        mode: WriteMode,
        txn: Option<(String, i64)>,
    ) -> Result<Committed> {
        if self.format == TableFormat::Iceberg {
            // A batch's table version is its snapshot; the change is the
            // caller's: a replace creates, an append adds columns.
            let txn = txn.map(|(app_id, version)| Txn { app_id, version });
            let change = if mode == WriteMode::Append {
                SchemaChange::None
            } else {
                SchemaChange::AddColumns
            };
            return Ok(self
                .commit_iceberg(schema, written, mode, txn.as_ref(), change)
                .await?
                .written);
        }
        let files = written.iter().map(Written::files).sum();
        let bytes = written.iter().map(Written::bytes).sum();
        let rows = written.iter().map(Written::rows).sum();
        let version = match self.format {
            TableFormat::Delta => {
                let adds = written.into_iter().flat_map(|w| w.adds).collect();
                Some(delta::commit(&self.location, schema, adds, mode, txn).await?)
            }
            TableFormat::Parquet => {
                let all: Vec<_> = written.into_iter().flat_map(|w| w.files).collect();
                dataset::commit(&self.location.as_dir(), &all, mode).await?;
                None
            }
            TableFormat::Iceberg => unreachable!("committed above"),
        };
        Ok(Committed {
            version,
            files,
            bytes,
            rows,
        })
    }
}
