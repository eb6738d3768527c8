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
//! What the crate cannot do yet fails with an error that says so: replacing
//! a table's data (it has no overwrite action), keyed apply, compaction.

mod schema;
mod storage;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use iceberg::spec::{DataContentType, DataFileBuilder, DataFileFormat, Datum, PrimitiveType};
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog as _, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalog, SqlCatalogBuilder};
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
        if !(uri.starts_with("sqlite:") || uri.starts_with("postgres")) {
            return Err(Error::Unsupported(format!(
                "catalog {uri}: Sluice's Iceberg catalogs are SQL catalogs (sqlite:///path/catalog.db or postgres://user@host/db); the REST catalog is not supported yet"
            )));
        }
        Ok(Catalog {
            name: DEFAULT_CATALOG.to_string(),
            uri: uri.to_string(),
            warehouse: warehouse.clone(),
        })
    }

    async fn connect(&self) -> Result<SqlCatalog> {
        let (uri, style) = if self.uri.starts_with("sqlite:") {
            // Create the database file on first use.
            let sep = if self.uri.contains('?') { '&' } else { '?' };
            (format!("{}{sep}mode=rwc", self.uri), SqlBindStyle::QMark)
        } else {
            (self.uri.clone(), SqlBindStyle::DollarNumeric)
        };
        if let Some(dir) = uri
            .strip_prefix("sqlite://")
            .and_then(|p| std::path::Path::new(p.split('?').next()?).parent())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::InvalidInput(format!("catalog {}: {e}", self.uri)))?;
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
            .map_err(|e| Error::iceberg(&self.uri, e))
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
    if mode == WriteMode::Overwrite
        && existing
            .as_ref()
            .is_some_and(|t| t.metadata().current_snapshot().is_some())
    {
        return Err(Error::Unsupported(format!(
            "Iceberg table {name} has data, and replacing it is not supported yet (the iceberg crate has no overwrite action); append to it, or drop it first"
        )));
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
        .properties([(
            "write.parquet.compression-codec".to_string(),
            "zstd".to_string(),
        )])
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

/// Expires the snapshots of `table` older than `older_than_ms` (keeping
/// the current one and at least `retain_last`), and returns how many went.
pub async fn expire_snapshots(
    table: &IcebergTable,
    older_than_ms: i64,
    retain_last: usize,
) -> Result<usize> {
    let name = table.display();
    let catalog = table.catalog.connect().await?;
    let Some(t) = table.load_in(&catalog).await? else {
        return Err(Error::InvalidInput(format!(
            "there is no Iceberg table {name}"
        )));
    };
    let before = t.metadata().snapshots().len();
    let tx = Transaction::new(&t);
    let tx = tx
        .expire_snapshots()
        .expire_older_than_ms(older_than_ms)
        .retain_last(retain_last.max(1))
        .apply(tx)
        .map_err(|e| Error::iceberg(&name, e))?;
    let after = tx
        .commit(&catalog)
        .await
        .map_err(|e| Error::iceberg(&name, e))?;
    Ok(before.saturating_sub(after.metadata().snapshots().len()))
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
        let target = Target::new(t.location.clone(), TableFormat::Iceberg, Default::default())
            .in_catalog(t.clone());
        let txn = |version| Txn {
            app_id: "sluice-test".into(),
            version,
        };
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
}
