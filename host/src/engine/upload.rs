//! Uploads: Arrow record batches pushed over HTTP or at the edge, committed
//! as one table version, and uploaded files loaded as a batch load whose
//! rows carry no `_metadata`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use sluice_pipeline::pipeline::TableFormatName;
use sluice_pipeline::{Format, Load, LoadMode, Pipeline, Projection};
use sluice_sink::{TableFormat, Target, WriteMode};

use super::failure::Failure;
use super::{Engine, RunReport, Stop, Trigger};

/// The first `limit` rows of `batches` as JSON objects.
pub fn json_rows(batches: &[RecordBatch], limit: usize) -> Result<Vec<serde_json::Value>> {
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    let mut left = limit;
    for b in batches {
        if left == 0 {
            break;
        }
        let n = left.min(b.num_rows());
        writer.write(&b.slice(0, n))?;
        left -= n;
    }
    writer.finish()?;
    let out = writer.into_inner();
    Ok(if out.is_empty() {
        vec![]
    } else {
        serde_json::from_slice(&out)?
    })
}

/// Record batches on their way into one table commit
/// ([`Engine::batch_writer`]).
pub struct BatchWriter {
    target: Target,
    schema: SchemaRef,
    mode: WriteMode,
    lane: sluice_sink::Lane,
    started: Instant,
}

impl BatchWriter {
    /// Writes `batch` (into data files no reader sees before the commit).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.lane.write(conform(batch, &self.schema)?).await?;
        Ok(())
    }

    /// Commits everything written, as one table version.
    pub async fn commit(self) -> Result<RunReport> {
        let written = self.lane.finish().await?;
        let committed = self
            .target
            .commit(&self.schema, vec![written], self.mode, None)
            .await?;
        Ok(RunReport {
            files: 0,
            rows: committed.rows,
            bytes: committed.bytes,
            batches: 1,
            version: committed.version,
            seconds: self.started.elapsed().as_secs_f64(),
            ..RunReport::default()
        })
    }
}

/// `batch` with the columns of `schema`, matched by name and cast.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema() == *schema {
        return Ok(batch);
    }
    let given = batch.schema();
    if let Some(extra) = given
        .fields()
        .iter()
        .find(|f| schema.field_with_name(f.name()).is_err())
    {
        bail!(
            "column '{}' is not in the table (its columns: {})",
            extra.name(),
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            // Unsafe casts fail on a value that does not convert, rather
            // than turning it into a null.
            Some(c) => arrow_cast::cast_with_options(
                c,
                f.data_type(),
                &arrow_cast::CastOptions {
                    safe: false,
                    ..Default::default()
                },
            )
            .with_context(|| {
                format!(
                    "column '{}' is {} in the upload and {} in the table",
                    f.name(),
                    c.data_type(),
                    f.data_type()
                )
            }),
            None => Ok(arrow_array::new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns)
        .context("the upload does not fit the table (a column the table requires is null?)")
}

impl Engine {
    /// Writes Arrow record batches (an Arrow IPC upload, a batch pushed at
    /// the edge) into Delta table `name` as one commit; see
    /// [`Engine::batch_writer`].
    pub async fn write_batches(
        &self,
        name: &str,
        batches: Vec<RecordBatch>,
        mode: LoadMode,
    ) -> Result<RunReport> {
        let first = batches
            .first()
            .context("the upload holds no record batch")?;
        let mut writer = self.batch_writer(name, first.schema(), mode).await?;
        for b in batches {
            writer.write(b).await?;
        }
        writer.commit().await
    }

    /// A writer of record batches of `schema` into Delta table `name`, all
    /// committed at once by [`BatchWriter::commit`] (nothing is visible
    /// before). An append conforms them to the table's schema: columns match
    /// by name and are cast, a column the batches lack is null, a column the
    /// table lacks is an error that names it.
    pub async fn batch_writer(
        &self,
        name: &str,
        schema: SchemaRef,
        mode: LoadMode,
    ) -> Result<BatchWriter> {
        let started = Instant::now();
        let target = Target::new(self.table(name)?, TableFormat::Delta, self.write.clone());
        let (schema, mode) = match mode {
            LoadMode::Replace => (target.storable(&schema)?, WriteMode::Overwrite),
            LoadMode::Append => match target.schema().await? {
                Some(existing) => (Arc::new(existing), WriteMode::Append),
                None => (target.storable(&schema)?, WriteMode::Append),
            },
            other => bail!("an Arrow upload is appended or replaces the table, not {other:?}"),
        };
        let lane = target.lane(schema.clone())?;
        Ok(BatchWriter {
            target,
            schema,
            mode,
            lane,
            started,
        })
    }

    /// Loads an uploaded file into table `name` (append or replace). Its
    /// rows carry no `_metadata`: the staging path means nothing to a
    /// reader, and so the table takes uploads and Arrow batches pushed at
    /// the edge alike.
    pub async fn load_upload(
        &self,
        name: &str,
        file: &UploadedFile,
        mode: LoadMode,
        table_format: TableFormatName,
    ) -> Result<RunReport, Failure> {
        let pipeline = Pipeline {
            mode,
            table_format,
            ..file.pipeline(name)
        };
        let load = Load {
            projection: Some(file.projection()),
            ..Load::named(&format!("upload-{name}"), pipeline)
        };
        self.run(&load, &Trigger::AvailableNow, &mut (), &Stop::new())
            .await
    }
}

/// An uploaded file, staged, and how to read it.
#[derive(Debug, Clone)]
pub struct UploadedFile {
    /// Where it is staged.
    pub source: String,
    /// Its format.
    pub format: Format,
    /// Reader options.
    pub options: BTreeMap<String, String>,
    /// What the table keeps of it (columns renamed, cast); `None`: every
    /// column as read.
    pub select: Option<Projection>,
}

impl UploadedFile {
    /// A pipeline reading the file into `table`.
    pub(crate) fn pipeline(&self, table: &str) -> Pipeline {
        Pipeline {
            source: Some(self.source.clone()),
            format: Some(self.format),
            options: self.options.clone(),
            ..Pipeline::new(table)
        }
    }

    /// The select list applied to its rows (never `_metadata` unless
    /// named).
    pub(crate) fn projection(&self) -> Projection {
        self.select.clone().unwrap_or_else(Projection::all)
    }
}
