//! Iceberg tables through the `iceberg` crate and its SQL catalog.
//!
//! A table is named in a catalog (`namespace.table`); the catalog is a SQL
//! database (a SQLite file by default, PostgreSQL too) holding each table's
//! current metadata file, the layout pyiceberg's and Java's SQL catalogs
//! share. Lanes stream Parquet data files (with field ids and statistics)
//! under the table's `data/`; nothing is visible until [`commit`] appends
//! them all in one snapshot with the crate's fast-append transaction, which
//! the catalog swaps in atomically. An incremental batch's identity goes
//! into the snapshot's summary and the table's properties in that same
//! commit, and a replay checks it first, as Delta's `txn` does.
//!
//! Replacing a table's data (`CREATE OR REPLACE`) is a snapshot too: the
//! crate has no overwrite transaction, so [`replace`] writes the manifest,
//! manifest list and metadata file with the crate's writers and swaps the
//! catalog's pointer with the compare-and-set every SQL catalog uses. What
//! neither can do yet fails with an error that says so: keyed apply,
//! compaction.

mod compact;
mod inspect;
mod schema;
mod storage;

pub use compact::{optimize, optimize_when};
pub use inspect::{data_files, describe, history};

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use iceberg::spec::{DataContentType, DataFileBuilder, DataFileFormat, Datum, PrimitiveType};
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog as _, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalog, SqlCatalogBuilder};
use object_store::ObjectStoreExt;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

pub use schema::{Planned, plan, storable};
pub use storage::{ObjectStorage, ObjectStorageFactory};

use crate::dataset::{DataFile, ParquetLane};
use crate::delta::{Outcome, SchemaChange, Txn};
use crate::error::{Error, Result};
use crate::{WriteMode, WriteOptions};
use sluice_location::Location;

/// The snapshot-summary and table-property key prefix holding the last
/// batch an application committed: `sluice.batch.<app id>`.
pub const BATCH_KEY: &str = "sluice.batch.";

/// A SQL catalog of Iceberg tables.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Its name: the first part of `catalog.namespace.table`, and the
    /// `catalog_name` its rows carry (readers must open it by this name).
    pub name: String,
    /// The database: `sqlite:///abs/path/catalog.db` or
    /// `postgres://user@host/db`.
    pub uri: String,
    /// Where its tables' files live, and the options to reach them.
    pub warehouse: Location,
}

/// The name Sluice's catalogs go by unless told otherwise.
pub const DEFAULT_CATALOG: &str = "sluice";

impl Catalog {
    /// The SQLite catalog kept in `catalog.db` at the root of a local
    /// warehouse, so a newcomer needs no server.
    pub fn in_warehouse(warehouse: &Location) -> Result<Catalog> {
        let path = warehouse
            .url()
            .to_file_path()
            .ok()
            .filter(|_| warehouse.url().scheme() == "file")
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "Iceberg tables need a catalog: the default is a SQLite file in a local warehouse, and {} is not local; give one with --catalog (sqlite:///path/catalog.db or postgres://user@host/db)",
                    warehouse.display()
                ))
            })?;
        Ok(Catalog {
            name: DEFAULT_CATALOG.to_string(),
            uri: format!("sqlite://{}", path.join("catalog.db").display()),
            warehouse: warehouse.clone(),
        })
    }

    /// The catalog at `uri` for tables under `warehouse`.
    pub fn at(uri: &str, warehouse: &Location) -> Result<Catalog> {
        let catalog = Catalog {
            name: DEFAULT_CATALOG.to_string(),
            uri: uri.to_string(),
            warehouse: warehouse.clone(),
        };
        if !(uri.starts_with("sqlite:") || uri.starts_with("postgres")) {
            return Err(Error::Unsupported(format!(
                "catalog {}: Sluice's Iceberg catalogs are SQL catalogs (sqlite:///path/catalog.db or postgres://user@host/db); the REST catalog is not supported yet",
                catalog.shown()
            )));
        }
        Ok(catalog)
    }

    /// Moves table `ident`'s metadata pointer from `from` to `to` if it is
    /// still at `from` (the SQL catalogs' compare-and-set, as pyiceberg's,
    /// Java's and the crate's own commits do it).
    async fn swap(&self, ident: &TableIdent, from: &str, to: &str) -> Result<()> {
        let (uri, postgres) = (self.database_uri(), !self.uri.starts_with("sqlite:"));
        sqlx::any::install_default_drivers();
        let fail = |e: sqlx::Error| Error::InvalidInput(format!("catalog {}: {e}", self.shown()));
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&uri)
            .await
            .map_err(fail)?;
        let q = |n: usize| {
            if postgres {
                format!("${n}")
            } else {
                "?".into()
            }
        };
        let sql = format!(
            "UPDATE iceberg_tables SET metadata_location = {}, previous_metadata_location = {} \
             WHERE catalog_name = {} AND table_namespace = {} AND table_name = {} \
             AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = {}",
            q(1),
            q(2),
            q(3),
            q(4),
            q(5),
            q(6)
        );
        let done = sqlx::query(&sql)
            .bind(to)
            .bind(from)
            .bind(&self.name)
            .bind(ident.namespace().join("."))
            .bind(ident.name())
            .bind(from)
            .execute(&mut conn)
            .await
            .map_err(fail)?;
        if done.rows_affected() == 0 {
            return Err(Error::iceberg(
                &ident.to_string(),
                iceberg::Error::new(
                    iceberg::ErrorKind::CatalogCommitConflicts,
                    "another writer committed first; run it again",
                )
                .with_retryable(true),
            ));
        }
        Ok(())
    }

    /// Whether the catalog is there to be asked: a SQLite file that does
    /// not exist is not (asking would create it), a server always is.
    pub fn exists(&self) -> bool {
        match self.uri.strip_prefix("sqlite://") {
            Some(path) => std::path::Path::new(path.split('?').next().unwrap_or(path)).exists(),
            None => true,
        }
    }

    /// Every table in the catalog, as (namespace, name), in order.
    pub async fn tables(&self) -> Result<Vec<(String, String)>> {
        let catalog = self.connect().await?;
        let fail = |e: iceberg::Error| Error::iceberg(&self.shown(), e);
        let mut out = Vec::new();
        for ns in catalog.list_namespaces(None).await.map_err(fail)? {
            for t in catalog.list_tables(&ns).await.map_err(fail)? {
                out.push((ns.join("."), t.name().to_string()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The catalog's URI as errors tell it: without its password.
    pub fn shown(&self) -> String {
        match url::Url::parse(&self.uri) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => self.uri.clone(),
        }
    }

    /// The database URI as sqlx opens it (a SQLite file is created on
    /// first use).
    fn database_uri(&self) -> String {
        if self.uri.starts_with("sqlite:") {
            let sep = if self.uri.contains('?') { '&' } else { '?' };
            format!("{}{sep}mode=rwc", self.uri)
        } else {
            self.uri.clone()
        }
    }

    async fn connect(&self) -> Result<SqlCatalog> {
        let uri = self.database_uri();
        let style = if self.uri.starts_with("sqlite:") {
            SqlBindStyle::QMark
        } else {
            SqlBindStyle::DollarNumeric
        };
        if let Some(dir) = uri
            .strip_prefix("sqlite://")
            .and_then(|p| std::path::Path::new(p.split('?').next()?).parent())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::InvalidInput(format!("catalog {}: {e}", self.shown())))?;
        }
        let factory = ObjectStorageFactory {
            options: self.warehouse.options().clone(),
        };
        SqlCatalogBuilder::default()
            .uri(uri)
            .warehouse_location(self.warehouse.display())
            .sql_bind_style(style)
            .with_storage_factory(Arc::new(factory))
            .load(&self.name, HashMap::new())
            .await
            .map_err(|e| Error::iceberg(&self.shown(), e))
    }
}

/// An Iceberg table: its name in a catalog and where its files go.
#[derive(Debug, Clone)]
pub struct IcebergTable {
    /// The catalog holding it.
    pub catalog: Catalog,
    /// Its namespace.
    pub namespace: String,
    /// Its name in the namespace.
    pub name: String,
    /// Its root (metadata under `metadata/`, data under `data/`).
    pub location: Location,
}

impl IcebergTable {
    fn ident(&self) -> TableIdent {
        TableIdent::new(
            NamespaceIdent::new(self.namespace.clone()),
            self.name.clone(),
        )
    }

    /// `catalog.namespace.table`.
    pub fn display(&self) -> String {
        format!("{}.{}.{}", self.catalog.name, self.namespace, self.name)
    }

    /// The table as the catalog holds it now, or `None` if it has none.
    pub async fn load(&self) -> Result<Option<iceberg::table::Table>> {
        let catalog = self.catalog.connect().await?;
        self.load_in(&catalog).await
    }

    async fn load_in(&self, catalog: &SqlCatalog) -> Result<Option<iceberg::table::Table>> {
        let ident = self.ident();
        let exists = catalog
            .table_exists(&ident)
            .await
            .map_err(|e| Error::iceberg(&self.display(), e))?;
        if !exists {
            return Ok(None);
        }
        catalog
            .load_table(&ident)
            .await
            .map(Some)
            .map_err(|e| Error::iceberg(&self.display(), e))
    }

    /// The table's current schema as Arrow, or `None` if there is no table.
    pub async fn arrow_schema(&self) -> Result<Option<Schema>> {
        let Some(table) = self.load().await? else {
            return Ok(None);
        };
        let current = table.metadata().current_schema();
        let mut fields = Vec::new();
        for f in current.as_struct().fields() {
            fields.push(schema::arrow_field(f)?);
        }
        Ok(Some(Schema::new(fields)))
    }
}

/// Streams one lane's batches into Parquet data files whose columns carry
/// the table's field ids.
pub struct IcebergLane {
    table: IcebergTable,
    data: SchemaRef,
    options: WriteOptions,
    open: Option<(ParquetLane, Arc<Schema>)>,
}

/// What an Iceberg lane wrote: its files and the field ids it wrote them
/// with.
#[derive(Debug, Default)]
pub struct LaneFiles {
    pub(crate) files: Vec<DataFile>,
    pub(crate) ids: Option<Arc<Schema>>,
}

impl IcebergLane {
    pub(crate) fn new(table: &IcebergTable, data: SchemaRef, options: &WriteOptions) -> Self {
        IcebergLane {
            table: table.clone(),
            data,
            options: options.clone(),
            open: None,
        }
    }

    pub(crate) async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if self.open.is_none() {
            let table = self.table.load().await?;
            let current = table.as_ref().map(|t| {
                (
                    t.metadata().current_schema().as_ref(),
                    t.metadata().last_column_id(),
                )
            });
            let planned = plan(&self.data, current, true, &self.table.display())?;
            let lane = ParquetLane::new(
                &self.table.location.child("data")?,
                planned.arrow.clone(),
                &self.options,
            )?;
            self.open = Some((lane, planned.arrow));
        }
        let Some((lane, ids)) = self.open.as_mut() else {
            unreachable!("opened above")
        };
        lane.write(conform(batch, ids)?).await
    }

    pub(crate) async fn finish(self) -> Result<LaneFiles> {
        Ok(match self.open {
            None => LaneFiles::default(),
            Some((lane, ids)) => LaneFiles {
                files: lane.finish().await?,
                ids: Some(ids),
            },
        })
    }
}

/// `batch` as the file schema `ids` has it: same columns, ids in the
/// fields' metadata, an int widened where the table's column is a long.
fn conform(batch: RecordBatch, ids: &Arc<Schema>) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(ids.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow_cast::cast(c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(ids.clone(), columns)?)
}

/// Commits the lanes' files to `table` in one snapshot: creates the table
/// if it has none; adds the data's new columns first when `change` allows;
/// with `once`, records the batch and skips it if the table already holds
/// it.
pub async fn commit(
    table: &IcebergTable,
    data: &Schema,
    written: Vec<LaneFiles>,
    mode: WriteMode,
    once: Option<&Txn>,
    change: SchemaChange,
) -> Result<Outcome> {
    let name = table.display();
    let catalog = table.catalog.connect().await?;
    let existing = table.load_in(&catalog).await?;
    if let (Some(t), Some(txn)) = (&existing, once)
        && committed_batch(t.metadata().properties(), &txn.app_id) >= Some(txn.version)
    {
        return Ok(Outcome::AlreadyCommitted {
            version: t.metadata().current_snapshot_id().map(|id| id as u64),
        });
    }
    let current = existing.as_ref().map(|t| {
        (
            t.metadata().current_schema().as_ref(),
            t.metadata().last_column_id(),
        )
    });
    let planned = plan(data, current, change == SchemaChange::AddColumns, &name)?;
    let mut table_now = match existing {
        Some(t) => t,
        None => create(&catalog, table, &planned).await?,
    };
    if !planned.added.is_empty() {
        let mut tx = Transaction::new(&table_now);
        let mut update = tx.update_schema();
        for f in &planned.added {
            update = update.add_column(iceberg::transaction::AddColumn::optional(
                f.name.clone(),
                (*f.field_type).clone(),
            ));
        }
        tx = update.apply(tx).map_err(|e| Error::iceberg(&name, e))?;
        table_now = tx
            .commit(&catalog)
            .await
            .map_err(|e| Error::iceberg(&name, e))?;
    }
    // The files were written with the ids planned when their lane opened:
    // they must be the table's now.
    let now = schema::with_ids(data, table_now.metadata().current_schema())?;
    for lane in &written {
        if let Some(ids) = &lane.ids
            && !same_ids(ids, &now)
        {
            return Err(Error::InvalidInput(format!(
                "Iceberg table {name} changed its columns while this batch was written (its field ids moved); run it again"
            )));
        }
    }
    let current_schema = table_now.metadata().current_schema().clone();
    let files = written
        .iter()
        .flat_map(|l| &l.files)
        .map(|f| data_file(f, &current_schema, &table.location))
        .collect::<Result<Vec<_>>>()?;
    let mut properties = HashMap::new();
    if let Some(txn) = once {
        properties.insert(
            format!("{BATCH_KEY}{}", txn.app_id),
            txn.version.to_string(),
        );
    }
    if mode == WriteMode::Overwrite && table_now.metadata().current_snapshot().is_some() {
        let snapshot = replace(&table.catalog, &table_now, files, properties).await?;
        return Ok(Outcome::Committed {
            version: snapshot as u64,
        });
    }
    let tx = Transaction::new(&table_now);
    // Data file names are fresh UUIDs: the crate's duplicate check would
    // only read every manifest of the table on each commit.
    let append = tx
        .fast_append()
        .with_check_duplicate(false)
        .add_data_files(files)
        .set_snapshot_properties(properties.clone());
    let mut tx = append.apply(tx).map_err(|e| Error::iceberg(&name, e))?;
    if !properties.is_empty() {
        let mut update = tx.update_table_properties();
        for (k, v) in properties {
            update = update.set(k, v);
        }
        tx = update.apply(tx).map_err(|e| Error::iceberg(&name, e))?;
    }
    let committed = tx
        .commit(&catalog)
        .await
        .map_err(|e| Error::iceberg(&name, e))?;
    drop_expired_metadata(
        committed.file_io(),
        (table_now.metadata(), table_now.metadata_location()),
        (committed.metadata(), committed.metadata_location()),
    )
    .await;
    Ok(Outcome::Committed {
        version: committed
            .metadata()
            .current_snapshot_id()
            .map_or(0, |id| id as u64),
    })
}

fn same_ids(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| {
            x.name() == y.name() && x.metadata() == y.metadata() && x.data_type() == y.data_type()
        })
}

/// The last batch of `app_id` the table's properties record.
fn committed_batch(properties: &HashMap<String, String>, app_id: &str) -> Option<i64> {
    properties
        .get(&format!("{BATCH_KEY}{app_id}"))
        .and_then(|v| v.parse().ok())
}

/// The last batch `app_id` committed to `table`, if any.
pub async fn last_batch(table: &IcebergTable, app_id: &str) -> Result<Option<i64>> {
    Ok(table
        .load()
        .await?
        .and_then(|t| committed_batch(t.metadata().properties(), app_id)))
}

async fn create(
    catalog: &SqlCatalog,
    table: &IcebergTable,
    planned: &Planned,
) -> Result<iceberg::table::Table> {
    let name = table.display();
    let namespace = NamespaceIdent::new(table.namespace.clone());
    let has_namespace = catalog
        .namespace_exists(&namespace)
        .await
        .map_err(|e| Error::iceberg(&name, e))?;
    if !has_namespace {
        catalog
            .create_namespace(&namespace, HashMap::new())
            .await
            .map_err(|e| Error::iceberg(&name, e))?;
    }
    let creation = TableCreation::builder()
        .name(table.name.clone())
        .location(table.location.display())
        .schema(planned.schema.clone())
        .properties([
            (
                "write.parquet.compression-codec".to_string(),
                "zstd".to_string(),
            ),
            (DELETE_AFTER_COMMIT.to_string(), "true".to_string()),
        ])
        .format_version(iceberg::spec::FormatVersion::V2)
        .build();
    catalog
        .create_table(&namespace, creation)
        .await
        .map_err(|e| Error::iceberg(&name, e))
}

/// The manifest entry of a data file: its size, rows, and per-column
/// sizes, counts and (where exact) bounds from its Parquet footer.
fn data_file(
    file: &DataFile,
    schema: &iceberg::spec::Schema,
    location: &Location,
) -> Result<iceberg::spec::DataFile> {
    let path = location_of(location, &file.path)?;
    let mut builder = DataFileBuilder::default();
    builder
        .content(DataContentType::Data)
        .file_path(path.clone())
        .file_format(DataFileFormat::Parquet)
        .record_count(file.rows)
        .file_size_in_bytes(file.bytes)
        .partition_spec_id(0);
    if let Some(meta) = &file.metadata {
        let s = Stats::of(meta, schema);
        builder
            .column_sizes(s.sizes)
            .value_counts(s.values)
            .null_value_counts(s.nulls)
            .lower_bounds(s.lower)
            .upper_bounds(s.upper)
            .split_offsets(Some(s.offsets));
    }
    builder
        .build()
        .map_err(|e| Error::InvalidInput(format!("data file {path}: {e}")))
}

/// The URL of `path` (inside the store that holds `table`).
fn location_of(table: &Location, path: &object_store::path::Path) -> Result<String> {
    let mut url = table.url().clone();
    url.set_path("/");
    let rooted = url
        .join(path.as_ref())
        .map_err(|e| Error::InvalidInput(format!("{path}: {e}")))?;
    Ok(rooted.to_string())
}

#[derive(Default)]
struct Stats {
    sizes: HashMap<i32, u64>,
    values: HashMap<i32, u64>,
    nulls: HashMap<i32, u64>,
    lower: HashMap<i32, Datum>,
    upper: HashMap<i32, Datum>,
    offsets: Vec<i64>,
}

impl Stats {
    fn of(meta: &ParquetMetaData, schema: &iceberg::spec::Schema) -> Stats {
        let mut s = Stats::default();
        let mut bounds: HashMap<i32, Option<(Datum, Datum)>> = HashMap::new();
        for rg in meta.row_groups() {
            if let Some(offset) = rg.file_offset() {
                s.offsets.push(offset);
            }
            for c in rg.columns() {
                let info = c.column_descr().self_type().get_basic_info();
                if !info.has_id() {
                    continue;
                }
                let id = info.id();
                *s.sizes.entry(id).or_default() += c.compressed_size() as u64;
                *s.values.entry(id).or_default() += c.num_values() as u64;
                let stats = c.statistics();
                if let Some(n) = stats.and_then(Statistics::null_count_opt) {
                    *s.nulls.entry(id).or_default() += n;
                }
                let prim = schema
                    .field_by_id(id)
                    .and_then(|f| f.field_type.as_primitive_type().cloned());
                let this = stats.zip(prim).and_then(|(st, p)| bound(st, &p));
                let merged = match (bounds.remove(&id), this) {
                    // A row group without exact bounds makes the file's unknown.
                    (Some(None), _) | (_, None) => None,
                    (None, Some(b)) => Some(b),
                    (Some(Some((lo, hi))), Some((l, h))) => {
                        Some((if l < lo { l } else { lo }, if h > hi { h } else { hi }))
                    }
                };
                bounds.insert(id, merged);
            }
        }
        for (id, b) in bounds {
            if let Some((lo, hi)) = b {
                s.lower.insert(id, lo);
                s.upper.insert(id, hi);
            }
        }
        s
    }
}

/// A column chunk's exact bounds as Iceberg values, for the types whose
/// Parquet and Iceberg encodings are the same bytes.
fn bound(stats: &Statistics, prim: &PrimitiveType) -> Option<(Datum, Datum)> {
    if !stats.min_is_exact() || !stats.max_is_exact() {
        return None;
    }
    let fits = matches!(
        (stats, prim),
        (
            Statistics::Int32(_),
            PrimitiveType::Int | PrimitiveType::Date
        ) | (
            Statistics::Int64(_),
            PrimitiveType::Long | PrimitiveType::Timestamp | PrimitiveType::Timestamptz
        ) | (Statistics::ByteArray(_), PrimitiveType::String)
            | (Statistics::Boolean(_), PrimitiveType::Boolean)
    );
    if !fits {
        return None;
    }
    let lo = Datum::try_from_bytes(stats.min_bytes_opt()?, prim.clone()).ok()?;
    let hi = Datum::try_from_bytes(stats.max_bytes_opt()?, prim.clone()).ok()?;
    Some((lo, hi))
}

/// Replaces the data of table `t` by `files`: a new snapshot (operation
/// `overwrite`) whose manifest list holds one manifest of exactly those
/// files, so the old ones leave the current state (earlier snapshots keep
/// them for time travel until they expire). `properties` go into its
/// summary and the table's properties. Returns the new snapshot's id.
async fn replace(
    catalog: &Catalog,
    t: &iceberg::table::Table,
    files: Vec<iceberg::spec::DataFile>,
    properties: HashMap<String, String>,
) -> Result<i64> {
    let snapshot = NewSnapshot::for_table(t);
    let rows: u64 = files.iter().map(|f| f.record_count()).sum();
    let bytes: u64 = files.iter().map(|f| f.file_size_in_bytes()).sum();
    let count = files.len() as u64;
    let manifest = snapshot.manifest(t, files).await?;
    let before = t
        .metadata()
        .current_snapshot()
        .map(|s| s.summary().additional_properties.clone())
        .unwrap_or_default();
    let mut summary: HashMap<String, String> = properties.clone();
    for (key, value) in [
        ("added-data-files", count),
        ("added-records", rows),
        ("added-files-size", bytes),
        ("total-data-files", count),
        ("total-records", rows),
        ("total-files-size", bytes),
        ("total-delete-files", 0),
        ("total-position-deletes", 0),
        ("total-equality-deletes", 0),
    ] {
        summary.insert(key.into(), value.to_string());
    }
    for (was, key) in [
        ("total-data-files", "deleted-data-files"),
        ("total-records", "deleted-records"),
        ("total-files-size", "removed-files-size"),
    ] {
        if let Some(v) = before.get(was) {
            summary.insert(key.into(), v.clone());
        }
    }
    snapshot
        .commit(
            catalog,
            t,
            vec![manifest],
            iceberg::spec::Operation::Overwrite,
            summary,
            properties,
        )
        .await
}

/// A snapshot being made by hand (the crate's transactions cannot replace
/// or rewrite files): its id, sequence number and files' names.
pub(crate) struct NewSnapshot {
    id: i64,
    sequence: i64,
    commit_id: uuid::Uuid,
}

impl NewSnapshot {
    /// The next snapshot of `t`.
    pub(crate) fn for_table(t: &iceberg::table::Table) -> Self {
        NewSnapshot {
            // Positive, like the ids the crate makes.
            id: (uuid::Uuid::new_v4().as_u64_pair().0 >> 1) as i64,
            sequence: t.metadata().next_sequence_number(),
            commit_id: uuid::Uuid::new_v4(),
        }
    }

    /// This snapshot (same id) on top of `t` as it is now: the sequence
    /// number after its latest.
    pub(crate) fn rebased(&self, t: &iceberg::table::Table) -> Self {
        NewSnapshot {
            id: self.id,
            sequence: t.metadata().next_sequence_number(),
            commit_id: uuid::Uuid::new_v4(),
        }
    }

    fn metadata_dir(t: &iceberg::table::Table) -> String {
        format!("{}/metadata", t.metadata().location().trim_end_matches('/'))
    }

    /// Writes a manifest of `files`, added by this snapshot.
    pub(crate) async fn manifest(
        &self,
        t: &iceberg::table::Table,
        files: Vec<iceberg::spec::DataFile>,
    ) -> Result<iceberg::spec::ManifestFile> {
        let name = t.identifier().to_string();
        let fail = |e: iceberg::Error| Error::iceberg(&name, e);
        let mut manifest = self.writer(t, "m0")?;
        for f in files {
            manifest.add_file(f, self.sequence).map_err(fail)?;
        }
        manifest.write_manifest_file().await.map_err(fail)
    }

    /// A manifest writer for this snapshot, its file named by `suffix`.
    pub(crate) fn writer(
        &self,
        t: &iceberg::table::Table,
        suffix: &str,
    ) -> Result<iceberg::spec::ManifestWriter> {
        let name = t.identifier().to_string();
        let meta = t.metadata();
        let path = format!("{}/{}-{suffix}.avro", Self::metadata_dir(t), self.commit_id);
        Ok(iceberg::spec::ManifestWriterBuilder::new(
            t.file_io()
                .new_output(path)
                .map_err(|e| Error::iceberg(&name, e))?,
            Some(self.id),
            meta.current_schema().clone(),
            meta.default_partition_spec().as_ref().clone(),
        )
        .build_v2_data())
    }

    /// Commits this snapshot of `manifests` on top of `t`'s current one:
    /// writes its manifest list and the table's next metadata file (with
    /// `properties` set), then moves the catalog's pointer from `t`'s
    /// metadata file to it if no other commit moved it first (the SQL
    /// catalogs' compare-and-set). Returns the snapshot's id.
    pub(crate) async fn commit(
        &self,
        catalog: &Catalog,
        t: &iceberg::table::Table,
        manifests: Vec<iceberg::spec::ManifestFile>,
        operation: iceberg::spec::Operation,
        summary: HashMap<String, String>,
        properties: HashMap<String, String>,
    ) -> Result<i64> {
        use iceberg::spec::{ManifestListWriter, Snapshot, Summary, TableMetadataBuilder};
        let name = t.identifier().to_string();
        let fail = |e: iceberg::Error| Error::iceberg(&name, e);
        let (meta, io) = (t.metadata(), t.file_io());
        let previous = t.metadata_location().ok_or_else(|| {
            Error::InvalidInput(format!("Iceberg table {name} has no metadata file"))
        })?;
        let list_path = format!(
            "{}/snap-{}-1-{}.avro",
            Self::metadata_dir(t),
            self.id,
            self.commit_id
        );
        let mut list = ManifestListWriter::v2(
            io.new_output(&list_path)
                .map_err(fail)?
                .writer()
                .await
                .map_err(fail)?,
            self.id,
            meta.current_snapshot_id(),
            self.sequence,
        );
        list.add_manifests(manifests.into_iter()).map_err(fail)?;
        list.close().await.map_err(fail)?;
        let snapshot = Snapshot::builder()
            .with_snapshot_id(self.id)
            .with_parent_snapshot_id(meta.current_snapshot_id())
            .with_sequence_number(self.sequence)
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
            .with_manifest_list(list_path)
            .with_summary(Summary {
                operation,
                additional_properties: summary,
            })
            .with_schema_id(meta.current_schema_id())
            .build();
        let mut builder =
            TableMetadataBuilder::new_from_metadata(meta.clone(), Some(previous.into()))
                .set_branch_snapshot(snapshot, iceberg::spec::MAIN_BRANCH)
                .map_err(fail)?;
        if !properties.is_empty() {
            builder = builder.set_properties(properties).map_err(fail)?;
        }
        let next = builder.build().map_err(fail)?.metadata;
        let location = iceberg::MetadataLocation::from_str(previous)
            .map_err(fail)?
            .with_next_version();
        next.write_to(io, &location).await.map_err(fail)?;
        let location = location.to_string();
        catalog.swap(t.identifier(), previous, &location).await?;
        drop_expired_metadata(io, (meta, Some(previous)), (&next, Some(&location))).await;
        Ok(self.id)
    }
}

/// The table property that has a commit delete the metadata files that
/// fell out of the metadata log (`write.metadata.previous-versions-max`,
/// 100 by default), as Iceberg's Java library does. Sluice's tables are
/// created with it on: a stream commits often, and each metadata file
/// holds every snapshot.
pub const DELETE_AFTER_COMMIT: &str = "write.metadata.delete-after-commit.enabled";

/// The metadata files `meta` (at `location`) keeps: its log and itself.
fn metadata_files(
    meta: &iceberg::spec::TableMetadata,
    location: Option<&str>,
) -> std::collections::HashSet<String> {
    meta.metadata_log()
        .iter()
        .map(|l| l.metadata_file.clone())
        .chain(location.map(str::to_string))
        .collect()
}

/// After a commit from `before` to `after`: deletes the metadata files
/// `before` kept and `after` does not, when the table asks for it
/// ([`DELETE_AFTER_COMMIT`]). The commit has happened: a file that cannot
/// be deleted now is left for vacuum, which deletes metadata files outside
/// the log too.
async fn drop_expired_metadata(
    io: &iceberg::io::FileIO,
    before: (&iceberg::spec::TableMetadata, Option<&str>),
    after: (&iceberg::spec::TableMetadata, Option<&str>),
) {
    if after
        .0
        .properties()
        .get(DELETE_AFTER_COMMIT)
        .map(String::as_str)
        != Some("true")
    {
        return;
    }
    let kept = metadata_files(after.0, after.1);
    for f in metadata_files(before.0, before.1) {
        if !kept.contains(&f) {
            let _ = io.delete(&f).await;
        }
    }
}

/// What [`expire_snapshots`] did.
#[derive(Debug, Clone, Default)]
pub struct Expired {
    /// Snapshots expired.
    pub snapshots: usize,
    /// Files deleted (or, on a dry run, that would be): data files,
    /// manifests and manifest lists no remaining snapshot uses, each older
    /// than the cutoff. Paths relative to the table.
    pub files: Vec<String>,
}

/// Expires the snapshots of `table` committed before `older_than_ms`
/// (the current one always stays), then deletes the files under the table
/// that no remaining snapshot uses (nor the metadata log) and that were
/// written before the cutoff, so a writer's files not yet committed are
/// left alone. With `dry_run`, nothing is
/// expired or deleted: the files those snapshots alone use are listed.
pub async fn expire_snapshots(
    table: &IcebergTable,
    older_than_ms: i64,
    dry_run: bool,
) -> Result<Expired> {
    let name = table.display();
    let fail = |e: iceberg::Error| Error::iceberg(&name, e);
    let catalog = table.catalog.connect().await?;
    let Some(t) = table.load_in(&catalog).await? else {
        return Err(Error::InvalidInput(format!(
            "there is no Iceberg table {name}"
        )));
    };
    let current = t.metadata().current_snapshot_id();
    let expiring: Vec<i64> = t
        .metadata()
        .snapshots()
        .filter(|s| s.timestamp_ms() < older_than_ms && Some(s.snapshot_id()) != current)
        .map(|s| s.snapshot_id())
        .collect();
    let kept = if dry_run || expiring.is_empty() {
        t.clone()
    } else {
        let tx = Transaction::new(&t);
        let tx = tx
            .expire_snapshots()
            .expire_snapshot_ids(expiring.clone())
            .apply(tx)
            .map_err(fail)?;
        tx.commit(&catalog).await.map_err(fail)?
    };
    let mut used = metadata_files(kept.metadata(), kept.metadata_location());
    for s in kept.metadata().snapshots() {
        if dry_run && expiring.contains(&s.snapshot_id()) {
            continue;
        }
        used.insert(s.manifest_list().to_string());
        let list = kept.manifest_list_reader(s).load().await.map_err(fail)?;
        for m in list.entries() {
            used.insert(m.manifest_path.clone());
            let manifest = m.load_manifest(kept.file_io()).await.map_err(fail)?;
            for e in manifest.entries() {
                used.insert(e.data_file().file_path().to_string());
            }
        }
    }
    let (store, root) = table.location.store()?;
    let mut listed = store.list(Some(&root));
    let mut stale = Vec::new();
    while let Some(meta) = futures::StreamExt::next(&mut listed).await {
        let meta = meta?;
        let url = location_of(&table.location, &meta.location)?;
        let old = meta.last_modified.timestamp_millis() < older_than_ms;
        if old && !used.contains(&url) {
            stale.push(meta.location);
        }
    }
    let mut files = Vec::new();
    for path in stale {
        if !dry_run {
            store.delete(&path).await?;
        }
        let relative = path
            .as_ref()
            .strip_prefix(root.as_ref())
            .unwrap_or(path.as_ref())
            .trim_start_matches('/')
            .to_string();
        files.push(relative);
    }
    files.sort();
    Ok(Expired {
        snapshots: expiring.len(),
        files,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Fields, Schema};
    use iceberg::spec::Datum;

    use super::*;
    use crate::{TableFormat, Target};

    fn table(dir: &std::path::Path) -> IcebergTable {
        let warehouse = Location::parse(dir.to_str().unwrap(), HashMap::new()).unwrap();
        IcebergTable {
            catalog: Catalog::in_warehouse(&warehouse).unwrap(),
            namespace: "shop".into(),
            name: "orders".into(),
            location: warehouse.child("shop.db/orders").unwrap(),
        }
    }

    /// `id`, `name` and a struct `point {x, y}`: creation numbers the
    /// struct's fields after every top-level column.
    fn batch(ids: &[i64]) -> RecordBatch {
        let xy = Fields::from(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("y", DataType::Float64, true),
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("point", DataType::Struct(xy.clone()), true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        let coords: Vec<f64> = ids.iter().map(|i| *i as f64).collect();
        let point = StructArray::new(
            xy,
            vec![
                Arc::new(Float64Array::from(coords.clone())),
                Arc::new(Float64Array::from(coords)),
            ],
            None,
        );
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(point),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    /// A target writing `t` with default options.
    fn target(t: &IcebergTable) -> Target {
        Target::new(t.location.clone(), TableFormat::Iceberg, Default::default())
            .in_catalog(t.clone())
    }

    /// Batch `version` of the tests' application.
    fn txn(version: i64) -> Txn {
        Txn {
            app_id: "sluice-test".into(),
            version,
        }
    }

    async fn write(target: &Target, ids: &[i64], txn: &Txn) -> Outcome {
        let b = batch(ids);
        let schema = target.storable(&b.schema()).unwrap();
        let mut lane = target.lane(schema.clone()).unwrap();
        lane.write(b).await.unwrap();
        let written = lane.finish().await.unwrap();
        target
            .commit_once(&schema, vec![written], txn, SchemaChange::AddColumns)
            .await
            .unwrap()
            .outcome
    }

    #[tokio::test]
    async fn a_batch_commits_once_with_bounds_and_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        let target = target(&t);
        assert!(matches!(
            write(&target, &[3, 1, 2], &txn(0)).await,
            Outcome::Committed { .. }
        ));
        // A replay of batch 0 (after a crash) adds nothing.
        assert!(matches!(
            write(&target, &[3, 1, 2], &txn(0)).await,
            Outcome::AlreadyCommitted { .. }
        ));
        assert!(matches!(
            write(&target, &[7], &txn(1)).await,
            Outcome::Committed { .. }
        ));
        assert_eq!(target.last_batch("sluice-test").await.unwrap(), Some(1));
        assert_eq!(target.last_batch("other").await.unwrap(), None);

        let loaded = t.load().await.unwrap().unwrap();
        let meta = loaded.metadata();
        assert_eq!(meta.snapshots().len(), 2);
        let current = meta.current_snapshot().unwrap().clone();
        let summary = &current.summary().additional_properties;
        assert_eq!(summary["sluice.batch.sluice-test"], "1");
        let manifests = loaded.manifest_list_reader(&current).load().await.unwrap();
        let mut bounds = Vec::new();
        for m in manifests.entries() {
            let manifest = m.load_manifest(loaded.file_io()).await.unwrap();
            for e in manifest.entries() {
                let f = e.data_file();
                bounds.push((
                    f.record_count(),
                    f.lower_bounds()[&1].clone(),
                    f.upper_bounds()[&1].clone(),
                ));
                assert!(f.file_path().starts_with("file:///"), "{}", f.file_path());
                // name is field 3; point's x and y are 4 and 5.
                assert_eq!(f.null_value_counts()[&3], 0);
                assert_eq!(f.value_counts()[&5], f.record_count());
            }
        }
        bounds.sort_by_key(|b| b.0);
        assert_eq!(
            bounds,
            [
                (1, Datum::long(7), Datum::long(7)),
                (3, Datum::long(1), Datum::long(3))
            ]
        );
        let schema = target.schema().await.unwrap().unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "point", "name"]);
    }

    /// The data files the current snapshot lists.
    async fn current_files(t: &IcebergTable) -> Vec<String> {
        let loaded = t.load().await.unwrap().unwrap();
        let current = loaded.metadata().current_snapshot().unwrap().clone();
        let list = loaded.manifest_list_reader(&current).load().await.unwrap();
        let mut files = Vec::new();
        for m in list.entries() {
            let manifest = m.load_manifest(loaded.file_io()).await.unwrap();
            files.extend(
                manifest
                    .entries()
                    .iter()
                    .map(|e| e.data_file().file_path().to_string()),
            );
        }
        files
    }

    #[tokio::test]
    async fn a_replace_is_a_snapshot_of_only_its_files_and_vacuum_deletes_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        let target = target(&t);
        write(&target, &[1, 2], &txn(0)).await;
        write(&target, &[3], &txn(1)).await;
        let old = current_files(&t).await;
        assert_eq!(old.len(), 2);

        let b = batch(&[9]);
        let schema = target.storable(&b.schema()).unwrap();
        let mut lane = target.lane(schema.clone()).unwrap();
        lane.write(b).await.unwrap();
        let written = lane.finish().await.unwrap();
        target
            .commit(&schema, vec![written], WriteMode::Overwrite, None)
            .await
            .unwrap();
        let now = current_files(&t).await;
        assert_eq!(now.len(), 1);
        assert!(!old.contains(&now[0]));
        let loaded = t.load().await.unwrap().unwrap();
        let meta = loaded.metadata();
        assert_eq!(meta.snapshots().len(), 3);
        let summary = meta.current_snapshot().unwrap().summary();
        assert_eq!(summary.operation, iceberg::spec::Operation::Overwrite);
        assert_eq!(summary.additional_properties["deleted-records"], "3");
        assert_eq!(summary.additional_properties["total-records"], "1");
        // The batches the appends recorded survive the replace.
        assert_eq!(target.last_batch("sluice-test").await.unwrap(), Some(1));

        let cutoff = chrono::Utc::now().timestamp_millis() + 1;
        let dry = expire_snapshots(&t, cutoff, true).await.unwrap();
        assert_eq!(dry.snapshots, 2);
        assert_eq!(
            t.load()
                .await
                .unwrap()
                .unwrap()
                .metadata()
                .snapshots()
                .len(),
            3
        );
        let done = expire_snapshots(&t, cutoff, false).await.unwrap();
        assert_eq!(done.files, dry.files);
        let data: Vec<&String> = done
            .files
            .iter()
            .filter(|f| f.starts_with("data/"))
            .collect();
        assert_eq!(data.len(), 2, "{:?}", done.files);
        for f in &old {
            assert!(!std::path::Path::new(f.trim_start_matches("file://")).exists());
        }
        assert!(std::path::Path::new(now[0].trim_start_matches("file://")).exists());
        assert_eq!(
            t.load()
                .await
                .unwrap()
                .unwrap()
                .metadata()
                .snapshots()
                .len(),
            1
        );
        assert_eq!(current_files(&t).await, now);
    }

    #[tokio::test]
    async fn commits_delete_the_metadata_files_that_left_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        let target = target(&t);
        write(&target, &[1], &txn(0)).await;
        // Keep one previous metadata file in the log.
        let catalog = t.catalog.connect().await.unwrap();
        let loaded = t.load().await.unwrap().unwrap();
        let tx = Transaction::new(&loaded);
        let tx = tx
            .update_table_properties()
            .set("write.metadata.previous-versions-max".into(), "1".into())
            .apply(tx)
            .unwrap();
        tx.commit(&catalog).await.unwrap();
        for v in 1..5 {
            write(&target, &[v + 1], &txn(v)).await;
        }
        let metadata_json = || {
            let mut names: Vec<String> =
                std::fs::read_dir(dir.path().join("shop.db/orders/metadata"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".metadata.json"))
                    .collect();
            names.sort();
            names
        };
        // Sluice's commits deleted each file that left the log; the first
        // left it in the crate's own commit above, which deletes nothing:
        // vacuum does.
        let names = metadata_json();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names[0].starts_with("00000-"), "{names:?}");
        let cutoff = chrono::Utc::now().timestamp_millis() + 1;
        let done = expire_snapshots(&t, cutoff, false).await.unwrap();
        assert!(
            done.files.contains(&format!("metadata/{}", names[0])),
            "{:?}",
            done.files
        );
        assert_eq!(
            metadata_json().len(),
            2,
            "the current file and the one its log keeps"
        );
        assert_eq!(target.last_batch("sluice-test").await.unwrap(), Some(4));
    }

    #[tokio::test]
    async fn optimize_packs_small_files_into_one_replace_snapshot_that_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        let target = target(&t);
        for v in 0..5 {
            write(&target, &[v * 10, v * 10 + 1], &txn(v)).await;
        }
        assert_eq!(current_files(&t).await.len(), 5);
        let done = optimize(&t, 128 << 20, &Default::default()).await.unwrap();
        assert_eq!(
            (done.files_before, done.files_removed, done.files_added),
            (5, 5, 1)
        );
        assert_eq!(done.rows, 10);
        assert_eq!(current_files(&t).await.len(), 1);
        let loaded = t.load().await.unwrap().unwrap();
        let current = loaded.metadata().current_snapshot().unwrap();
        // The five one-file manifests went with their files.
        let list = loaded.manifest_list_reader(current).load().await.unwrap();
        assert_eq!(list.entries().len(), 1);
        assert_eq!(
            current.summary().operation,
            iceberg::spec::Operation::Replace
        );
        assert_eq!(
            current.summary().additional_properties["deleted-data-files"],
            "5"
        );
        // Totals carry on, so the next append and auto compaction count
        // the table's files right.
        assert_eq!(
            current.summary().additional_properties["total-data-files"],
            "1"
        );
        assert_eq!(
            current.summary().additional_properties["total-records"],
            "10"
        );
        // Nothing left to pack: a second run commits nothing.
        let again = optimize(&t, 128 << 20, &Default::default()).await.unwrap();
        assert_eq!((again.version, again.files_before), (None, 1));
        // The batches recorded by the appends are still known.
        assert_eq!(target.last_batch("sluice-test").await.unwrap(), Some(4));
    }
}
