//! Named pipelines ([`sluice_pipeline::Pipeline`]) run to completion once:
//! what `sluice run FILE` does, and what `sluice serve` does for each
//! trigger (HTTP, webhook, schedule).
//!
//! [`Services`] is what every run shares: the runtime, object-store
//! options, the warehouse root, uploaded connectors and secrets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};
use sluice_pipeline::pipeline::{TableFormatName, resolve_secrets};
use sluice_pipeline::{
    CleanSource, Format, LoadMode, Pipeline, Projection, Source, StreamOptions, TableRef,
};
use sluice_sink::{Location, TableFormat, Target, WriteMode, WriteOptions};

use crate::builtin;
use crate::capability::Counters;
use crate::connectors::ConnectorStore;
use crate::failure::Failure;
use crate::incremental::{BatchReport, Config, Kind, Runner};
use crate::ingest::{Input, Job};
use crate::redact::Redactor;
use crate::runtime::Runtime;

/// Secrets, by name: from `SLUICE_SECRET_<NAME>` variables, or a file of
/// `NAME=value` lines. Never logged, never written anywhere.
#[derive(Clone, Default)]
pub struct Secrets {
    file: Arc<HashMap<String, String>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} from a file)", self.file.len())
    }
}

impl Secrets {
    /// Reads a secrets file of `NAME=value` lines (`#` comments).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the secrets file {}", path.display()))?;
        let mut file = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                bail!(
                    "secrets file {} line {}: expected NAME=value",
                    path.display(),
                    i + 1
                );
            };
            file.insert(k.trim().to_string(), v.to_string());
        }
        Ok(Secrets {
            file: Arc::new(file),
        })
    }

    /// The value of secret `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        std::env::var(format!(
            "SLUICE_SECRET_{}",
            sluice_pipeline::pipeline::env_name(name)
        ))
        .ok()
        .or_else(|| self.file.get(name).cloned())
    }
}

/// What every run shares.
#[derive(Clone)]
pub struct Services {
    /// The wasmtime runtime.
    pub runtime: Runtime,
    /// Object-store options for sources, tables and checkpoints.
    pub storage: HashMap<String, String>,
    /// Where tables named without a path live.
    pub warehouse: String,
    /// Parallel lanes per run.
    pub parallelism: usize,
    /// Byte-range size for large files (0: whole files).
    pub split_bytes: u64,
    /// How data files are written.
    pub write: WriteOptions,
    /// Uploaded connectors, where there is a store for them.
    pub connectors: Option<ConnectorStore>,
    /// Secrets pipelines may reference.
    pub secrets: Secrets,
}

/// What one pipeline run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReport {
    /// Files read.
    pub files: usize,
    /// Rows committed.
    pub rows: u64,
    /// Input bytes.
    pub bytes: u64,
    /// Batches committed (incremental modes).
    pub batches: usize,
    /// The table version the run ended at, where it committed one.
    pub version: Option<u64>,
    /// Columns the run added to the table.
    pub added_columns: Vec<String>,
    /// Files COPY INTO skipped because they were loaded before.
    pub skipped_files: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl RunReport {
    fn add(&mut self, r: &BatchReport) {
        if r.skipped || r.replayed {
            return;
        }
        self.batches += 1;
        self.files += r.files;
        self.rows += r.rows;
        self.bytes += r.bytes;
        if r.version.is_some() {
            self.version = r.version;
        }
        self.added_columns.extend(r.added_columns.iter().cloned());
    }
}

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
/// ([`Services::batch_writer`]).
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

/// Parses an interval such as `5m` or `30s`; zero means never.
pub fn parse_interval(text: &str) -> Result<Option<std::time::Duration>> {
    let d = sluice_pipeline::incremental::parse_duration(text).map_err(anyhow::Error::msg)?;
    Ok((!d.is_zero()).then_some(d))
}

/// COPY INTO's FORMAT_OPTIONS are reader options, not Auto Loader's
/// stream options.
const STREAM_ONLY: &[&str] = &[
    "schemaLocation",
    "schemaEvolutionMode",
    "includeExistingFiles",
    "maxFilesPerTrigger",
    "maxBytesPerTrigger",
    "allowOverwrites",
    "cleanSource",
    "cleanSource.retentionDuration",
    "cleanSource.moveDestination",
];

/// COPY INTO's kind from its COPY_OPTIONS (`force`, `mergeSchema`).
pub fn copy_into_kind(copy_options: &BTreeMap<String, String>) -> Result<Kind> {
    let flag = |k: &str, v: &str| match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => bail!("COPY_OPTIONS {k}={v}: use true or false"),
    };
    let (mut force, mut merge_schema) = (false, false);
    for (k, v) in copy_options {
        match k.as_str() {
            "force" => force = flag(k, v)?,
            "mergeSchema" => merge_schema = flag(k, v)?,
            _ => bail!("unknown COPY_OPTIONS '{k}'; use mergeSchema or force"),
        }
    }
    Ok(Kind::CopyInto {
        force,
        merge_schema,
    })
}

/// Refuses Auto Loader stream options among COPY INTO's format options.
pub fn check_copy_format_options(options: &BTreeMap<String, String>) -> Result<()> {
    if let Some(k) = options
        .keys()
        .find(|k| STREAM_ONLY.contains(&k.trim_start_matches("cloudFiles.")))
    {
        bail!("'{k}' is an Auto Loader stream option, not a COPY INTO format option");
    }
    Ok(())
}

impl Services {
    /// A location from a path or URL.
    pub fn location(&self, text: &str) -> Result<Location> {
        Ok(Location::parse(text, self.storage.clone())?)
    }

    /// A table's location: a path or URL as given, or a name (`t`,
    /// `schema.t`) under the warehouse root ([`TableRef`]).
    pub fn table(&self, name: &str) -> Result<Location> {
        Ok(TableRef::parse(name)?.location(&self.location(&self.warehouse)?)?)
    }

    /// Where a table keeps the checkpoint of its COPY INTO loads.
    pub fn copy_into_checkpoint(&self, table: &Location) -> Result<Location> {
        Ok(table.child("_sluice/copy_into")?)
    }

    /// What hides the secrets `pipeline` is granted in whatever leaves its
    /// runs.
    fn redactor(&self, pipeline: &Pipeline) -> Redactor {
        Redactor::new(
            pipeline
                .grants
                .secrets
                .iter()
                .filter_map(|name| Some((name.as_str(), self.secrets.get(name)?))),
        )
    }

    /// An incremental load's configuration.
    #[allow(clippy::too_many_arguments, reason = "the pieces of one load")]
    pub fn incremental(
        &self,
        kind: Kind,
        source: &str,
        format: Option<Format>,
        options: StreamOptions,
        table: Location,
        table_format: TableFormat,
        checkpoint: Location,
    ) -> Result<Config> {
        let format = match (format, options.format) {
            (Some(a), Some(b)) if a != b => {
                bail!("the format {a:?} and the format option {b:?} disagree")
            }
            (Some(f), _) | (None, Some(f)) => f,
            (None, None) => bail!("give the input format (csv, json or parquet)"),
        };
        let source = Source::parse(source, self.storage.clone())?;
        if let CleanSource::Move(to) = &options.clean_source {
            let to = self.location(to)?;
            let base = source.base().as_dir();
            if to.as_dir().url().as_str().starts_with(base.url().as_str()) {
                bail!(
                    "cleanSource.moveDestination {} is inside the source {}: moved files would be found again; pick a place outside it",
                    to.display(),
                    base.display()
                );
            }
        }
        let schema_location = match &options.schema_location {
            Some(l) => self.location(l)?,
            None => checkpoint.clone(),
        };
        let connector = self.runtime.load_builtin(builtin::FILES)?;
        Ok(Config {
            kind,
            source,
            only: None,
            format,
            options,
            target: Target::new(table, table_format, self.write.clone()),
            checkpoint,
            schema_location,
            runtime: self.runtime.clone(),
            connector,
            storage_options: self.storage.clone(),
            parallelism: self.parallelism,
            split_bytes: self.split_bytes,
            projection: None,
        })
    }

    /// Runs `pipeline` once, to completion: a stream processes its backlog
    /// (available-now). `name` identifies the pipeline's default
    /// checkpoint.
    pub async fn run(&self, name: &str, pipeline: &Pipeline) -> Result<RunReport, Failure> {
        self.run_with(name, pipeline, None, None).await
    }

    /// Runs stream pipeline `name` on the `objects` an object-store
    /// notification named, without listing its source (file notification
    /// mode; a periodic listing is the backstop for lost notifications).
    /// Other modes list as [`Services::run`] does.
    pub async fn run_notified(
        &self,
        name: &str,
        pipeline: &Pipeline,
        objects: &[String],
    ) -> Result<RunReport, Failure> {
        self.run_with(name, pipeline, Some(objects), None).await
    }

    /// Runs `pipeline`; a stream looks up only the `notified` objects if
    /// given, and a batch load keeps only the columns of `projection`. How
    /// it failed, if it did, is told with the pipeline's secrets redacted.
    async fn run_with(
        &self,
        name: &str,
        pipeline: &Pipeline,
        notified: Option<&[String]>,
        projection: Option<Projection>,
    ) -> Result<RunReport, Failure> {
        let redactor = self.redactor(pipeline);
        self.run_redacted(name, pipeline, notified, projection, &redactor)
            .await
            .map_err(|e| Failure::new(&e, &redactor))
    }

    async fn run_redacted(
        &self,
        name: &str,
        pipeline: &Pipeline,
        notified: Option<&[String]>,
        projection: Option<Projection>,
        redactor: &Redactor,
    ) -> Result<RunReport> {
        pipeline.validate()?;
        let started = Instant::now();
        let table = self.table(&pipeline.table)?;
        let table_format = match pipeline.table_format {
            TableFormatName::Delta => TableFormat::Delta,
            TableFormatName::Parquet => TableFormat::Parquet,
        };
        let mut report = match pipeline.mode {
            LoadMode::Replace | LoadMode::Append => {
                self.batch(pipeline, table, table_format, projection, redactor)
                    .await?
            }
            LoadMode::CopyInto => self.copy_into(pipeline, table, table_format).await?,
            LoadMode::Stream => {
                self.stream(name, pipeline, table, table_format, notified)
                    .await?
            }
        };
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Writes Arrow record batches (an Arrow IPC upload, a batch pushed at
    /// the edge) into Delta table `name` as one commit; see
    /// [`Services::batch_writer`].
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

    /// The schema files would get and their first `limit` rows, as JSON
    /// objects; nothing is written.
    pub async fn preview(
        &self,
        source: &str,
        format: Format,
        options: BTreeMap<String, String>,
        limit: usize,
    ) -> Result<(arrow_schema::SchemaRef, Vec<serde_json::Value>)> {
        let job = Job {
            runtime: self.runtime.clone(),
            connector: self.runtime.load_builtin(builtin::FILES)?,
            input: Input::Files {
                source: source.to_string(),
                format,
                options,
            },
            // Never written: preview reads only.
            target: Target::new(
                self.location(source)?,
                TableFormat::Delta,
                self.write.clone(),
            ),
            mode: WriteMode::Append,
            parallelism: 1,
            split_bytes: 0,
            storage_options: self.storage.clone(),
            counters: Arc::new(Counters::default()),
            projection: None,
            redactor: Redactor::default(),
        };
        let (stream, batches) = job.preview(limit).await?;
        // What an upload would load: its columns, without `_metadata`.
        let all = Projection::all();
        let sent = all.schema(&stream.schema)?;
        let batches = batches
            .iter()
            .map(|b| all.apply(b, &all.schema(b.schema_ref())?))
            .collect::<sluice_pipeline::Result<Vec<_>>>()?;
        // As the table would store it (types Delta lacks widened).
        let schema = sluice_sink::storable::delta_schema(&crate::session::stored_schema(&sent))?;
        Ok((Arc::new(schema), json_rows(&batches, limit)?))
    }

    /// Loads an uploaded file into table `name` (append or replace). Its
    /// rows carry no `_metadata`: the staging path means nothing to a
    /// reader, and so the table takes uploads and Arrow batches pushed at
    /// the edge alike.
    pub async fn load_upload(
        &self,
        name: &str,
        source: &str,
        format: Format,
        options: BTreeMap<String, String>,
        mode: LoadMode,
    ) -> Result<RunReport, Failure> {
        let pipeline = Pipeline {
            mode,
            source: Some(source.to_string()),
            format: Some(format),
            options,
            table: name.to_string(),
            table_format: Default::default(),
            checkpoint: None,
            schedule: None,
            connector: None,
            grants: Default::default(),
        };
        self.run_with(
            &format!("upload-{name}"),
            &pipeline,
            None,
            Some(Projection::all()),
        )
        .await
    }

    async fn batch(
        &self,
        p: &Pipeline,
        table: Location,
        table_format: TableFormat,
        projection: Option<Projection>,
        redactor: &Redactor,
    ) -> Result<RunReport> {
        let (connector, input) = match &p.connector {
            None => (
                self.runtime.load_builtin(builtin::FILES)?,
                Input::Files {
                    source: p.source.clone().context("the pipeline has no source")?,
                    format: p.format.context("the pipeline has no format")?,
                    options: p.options.clone(),
                },
            ),
            Some(c) => {
                let store = self
                    .connectors
                    .as_ref()
                    .context("this process has no store of uploaded connectors")?;
                let loaded = store.load(&self.runtime, &c.id).await?;
                let config =
                    resolve_secrets(&c.config, &p.grants.secrets, &|n| self.secrets.get(n))?;
                let mut grants = p.grants.read.clone();
                grants.extend(p.source.iter().cloned());
                (
                    loaded,
                    Input::Connector {
                        config: config.to_string(),
                        stream: c.stream.clone(),
                        grants,
                    },
                )
            }
        };
        let job = Job {
            runtime: self.runtime.clone(),
            connector,
            input,
            target: Target::new(table, table_format, self.write.clone()),
            mode: if p.mode == LoadMode::Append {
                WriteMode::Append
            } else {
                WriteMode::Overwrite
            },
            parallelism: self.parallelism,
            split_bytes: self.split_bytes,
            storage_options: self.storage.clone(),
            counters: Arc::new(Counters::default()),
            projection,
            redactor: redactor.clone(),
        };
        let s = job.run(|_| {}).await?;
        Ok(RunReport {
            files: s.files,
            rows: s.committed.rows,
            bytes: s.input_bytes,
            batches: 1,
            version: s.committed.version,
            ..RunReport::default()
        })
    }

    async fn copy_into(
        &self,
        p: &Pipeline,
        table: Location,
        table_format: TableFormat,
    ) -> Result<RunReport> {
        let (copy, format_options): (BTreeMap<_, _>, BTreeMap<_, _>) = p
            .options
            .clone()
            .into_iter()
            .partition(|(k, _)| k == "force" || k == "mergeSchema");
        check_copy_format_options(&format_options)?;
        let kind = copy_into_kind(&copy)?;
        let checkpoint = self.copy_into_checkpoint(&table)?;
        let config = self.incremental(
            kind,
            p.source.as_deref().context("the pipeline has no source")?,
            p.format,
            StreamOptions::parse(&format_options)?,
            table,
            table_format,
            checkpoint,
        )?;
        let mut report = RunReport::default();
        let mut runner = Runner::open(config, &mut |r: &BatchReport| report.add(r)).await?;
        runner.list(&mut |_: &BatchReport| {}).await?;
        report.skipped_files = runner.already_loaded;
        if let Some(r) = runner.next().await? {
            report.add(&r);
        }
        Ok(report)
    }

    async fn stream(
        &self,
        name: &str,
        p: &Pipeline,
        table: Location,
        table_format: TableFormat,
        notified: Option<&[String]>,
    ) -> Result<RunReport> {
        let checkpoint = match &p.checkpoint {
            Some(c) => self.location(c)?,
            None => table.child(&format!("_sluice/pipelines/{name}"))?,
        };
        let config = self.incremental(
            Kind::Stream,
            p.source.as_deref().context("the pipeline has no source")?,
            p.format,
            StreamOptions::parse(&p.options)?,
            table,
            table_format,
            checkpoint,
        )?;
        let mut report = RunReport::default();
        let mut on_batch = |r: &BatchReport| report.add(r);
        let mut runner = Runner::open(config, &mut on_batch).await?;
        match notified {
            None => runner.list(&mut on_batch).await?,
            Some(objects) => runner.notified(objects, &mut on_batch).await?,
        };
        while let Some(r) = runner.next().await? {
            on_batch(&r);
            runner.clean_source().await?;
        }
        Ok(report)
    }
}
