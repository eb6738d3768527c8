//! The tables Sluice has written, as people look at them: found under the
//! warehouse (Delta logs) and in the Iceberg catalog, each named as every
//! face names it, with its schema, history and first rows from the sink
//! ([`sluice_sink::inspect`]).

use anyhow::Result;
use arrow_schema::SchemaRef;
use object_store::path::Path;
use serde::Serialize;
use sluice_pipeline::pipeline::TableFormatName;
use sluice_sink::Target;
use sluice_sink::iceberg_table::Catalog;
pub use sluice_sink::inspect::{SizeBucket, TableInfo, Version};

use super::{CheckpointFiles, Engine, json_rows};

/// A table found under the warehouse or in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableEntry {
    /// Its name as every face takes it (`t`, `schema.t`).
    pub name: String,
    /// Its format.
    pub format: TableFormatName,
}

impl Engine {
    /// The engine's Iceberg catalog: the one configured, else the SQLite
    /// file of a local warehouse.
    pub fn catalog(&self) -> Result<Catalog> {
        let warehouse = self.location(&self.warehouse)?;
        Ok(match &self.catalog {
            Some(uri) => Catalog::at(uri, &warehouse)?,
            None => Catalog::in_warehouse(&warehouse)?,
        })
    }

    /// Every table under the warehouse: the Delta tables named `t`
    /// (`<warehouse>/t`) and `schema.t` (`<warehouse>/schema.db/t`), and
    /// the Iceberg tables of the catalog (when there is one: asking never
    /// creates it). In name order.
    pub async fn tables(&self) -> Result<Vec<TableEntry>> {
        let warehouse = self.location(&self.warehouse)?;
        let (store, root) = warehouse.store()?;
        let mut out = Vec::new();
        for dir in folders(&store, &root).await? {
            let Some(name) = dir.filename().map(str::to_string) else {
                continue;
            };
            if let Some(schema) = name.strip_suffix(".db") {
                for table in folders(&store, &dir).await? {
                    if let Some(t) = table.filename()
                        && is_delta(&store, &table).await?
                    {
                        out.push(TableEntry {
                            name: format!("{schema}.{t}"),
                            format: TableFormatName::Delta,
                        });
                    }
                }
            } else if is_delta(&store, &dir).await? {
                out.push(TableEntry {
                    name,
                    format: TableFormatName::Delta,
                });
            }
        }
        if let Ok(catalog) = self.catalog()
            && catalog.exists()
        {
            for (namespace, name) in catalog.tables().await? {
                out.push(TableEntry {
                    name: format!("{namespace}.{name}"),
                    format: TableFormatName::Iceberg,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The target of the table called `name`, in `format` or, without
    /// one, in the format it was written in: a Delta log at
    /// [`Engine::table`]'s place, else a table of that name in the
    /// Iceberg catalog. `None` if there is no such table.
    pub async fn find_table(
        &self,
        name: &str,
        format: Option<TableFormatName>,
    ) -> Result<Option<Target>> {
        if let Some(format) = format {
            return Ok(Some(self.target(name, format)?));
        }
        let location = self.table(name)?;
        let (store, root) = location.store()?;
        if is_delta(&store, &root).await? {
            return Ok(Some(self.target(name, TableFormatName::Delta)?));
        }
        if let Ok(catalog) = self.catalog()
            && catalog.exists()
            && sluice_pipeline::TableRef::parse_iceberg(name).is_ok()
        {
            // The catalog's entry is enough: describing would read every
            // manifest only for the caller to read them again.
            if self.iceberg_table(name)?.load().await?.is_some() {
                return Ok(Some(self.target(name, TableFormatName::Iceberg)?));
            }
        }
        Ok(None)
    }
}

/// A table as a face names it: by name, in the format given (else the one
/// it was written in).
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    /// Its name (`t`, `schema.t`).
    pub name: &'a str,
    /// Its format, if the caller knows it.
    pub format: Option<TableFormatName>,
}

impl Engine {
    async fn named(&self, t: Named<'_>) -> Result<Option<Target>> {
        self.find_table(t.name, t.format).await
    }

    /// The table now ([`Target::describe`]); `None` if there is none.
    pub async fn describe_table(&self, t: Named<'_>) -> Result<Option<TableInfo>> {
        match self.named(t).await? {
            Some(target) => Ok(target.describe().await?),
            None => Ok(None),
        }
    }

    /// Its latest `limit` versions, newest first ([`Target::history`]);
    /// `None` if there is no table.
    pub async fn table_history(&self, t: Named<'_>, limit: usize) -> Result<Option<Vec<Version>>> {
        match self.named(t).await? {
            Some(target) => Ok(Some(target.history(limit).await?)),
            None => Ok(None),
        }
    }

    /// Its schema and first `limit` rows as JSON objects; `None` if there
    /// is no table.
    pub async fn table_sample(
        &self,
        t: Named<'_>,
        limit: usize,
    ) -> Result<Option<(SchemaRef, Vec<serde_json::Value>)>> {
        let Some(target) = self.named(t).await? else {
            return Ok(None);
        };
        match target.sample(limit).await? {
            Some((schema, batches)) => Ok(Some((schema, json_rows(&batches, limit)?))),
            None => Ok(None),
        }
    }

    /// The file state of the loads that keep a checkpoint with the table
    /// (COPY INTO, streams); `None` if there is no table.
    pub async fn table_files(&self, t: Named<'_>) -> Result<Option<Vec<CheckpointFiles>>> {
        match self.named(t).await? {
            Some(target) => Ok(Some(self.checkpoints_of(target.location(), None).await?)),
            None => Ok(None),
        }
    }
}

/// The folders right under `dir`.
async fn folders(
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    dir: &Path,
) -> Result<Vec<Path>> {
    match store.list_with_delimiter(Some(dir)).await {
        Ok(l) => Ok(l.common_prefixes),
        Err(object_store::Error::NotFound { .. }) => Ok(vec![]),
        Err(e) => Err(e.into()),
    }
}

/// Whether `dir` holds a Delta log.
async fn is_delta(
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    dir: &Path,
) -> Result<bool> {
    let log = dir.clone().join("_delta_log");
    match store.list_with_delimiter(Some(&log)).await {
        Ok(l) => Ok(!l.objects.is_empty()),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
