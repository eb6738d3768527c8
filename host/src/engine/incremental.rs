//! Incremental loads, exactly once: Auto Loader streams (`sluice stream`)
//! and COPY INTO (`sluice copy-into`) share this runner.
//!
//! Per batch N (the protocol of `sluice_checkpoint`):
//! 1. plan: choose the batch's files and write `offsets/N` before any data;
//! 2. read them through the files connector into data files;
//! 3. commit one table version holding the files and `txn(appId, N)`,
//!    checking the table's txn version first and settling an unknown
//!    outcome from the log ([`Target::commit_once`]);
//! 4. record `commits/N`.
//!
//! [`Runner::open`] settles a batch left pending by a crash before anything
//! else: if the table holds it, step 4 is redone, otherwise the batch is
//! redone from its plan, with the same files and schema. A crash at any
//! point therefore loses no file and loads none twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow_schema::{FieldRef, Schema, SchemaRef};
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use sluice_checkpoint::{BatchKind, Checkpoint, Commit, Plan, SourceFile, State};
use sluice_pipeline::schema::drift;
use sluice_pipeline::{
    CleanSource, Evolution, FileRef, Format, Projection, Source, StreamOptions, list_files,
    notified_files,
};
use sluice_sink::{Location, Outcome, SchemaChange, Target, Txn, Written};

use crate::engine::read::{Configured, Reading};
use crate::engine::schemas::{Evolved, Schemas, split_schema};
use crate::wasm::capability::Counters;
use crate::wasm::grants::Grants;
use crate::wasm::runtime::{Loaded, Runtime};
use crate::wasm::session::Stream;
use sluice_files_contract::Config as FilesConfig;

/// Which incremental load this is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Auto Loader: new files, batch after batch.
    Stream,
    /// COPY INTO: every file not loaded before, in one batch.
    CopyInto {
        /// `force=true`: load files again even if they were loaded.
        force: bool,
        /// `mergeSchema=true`: add the files' new columns to the table.
        merge_schema: bool,
    },
}

/// Everything an incremental load needs.
pub struct Config {
    /// Stream or COPY INTO.
    pub kind: Kind,
    /// Where the files are.
    pub source: Source,
    /// COPY INTO's `FILES = (...)`: only these files (URLs).
    pub only: Option<Vec<String>>,
    /// The input format.
    pub format: Format,
    /// Incremental and reader options.
    pub options: StreamOptions,
    /// The table.
    pub target: Target,
    /// The checkpoint.
    pub checkpoint: Location,
    /// Where the schema history is kept.
    pub schema_location: Location,
    /// Object-store options for the source.
    pub storage_options: HashMap<String, String>,
    /// Parallel lanes per batch.
    pub parallelism: usize,
    /// Byte-range size for large files (0: whole files).
    pub split_bytes: u64,
    /// The select list, if any (`CREATE OR REFRESH STREAMING TABLE ... AS SELECT`).
    pub projection: Option<Projection>,
}

impl Config {
    /// The schema evolution mode: as the options say, else Auto Loader's
    /// default for a stream (add new columns) and COPY INTO's (refuse them
    /// unless `mergeSchema`).
    pub fn evolution(&self) -> Evolution {
        self.options.evolution.unwrap_or(match self.kind {
            Kind::Stream => Evolution::AddNewColumns,
            Kind::CopyInto {
                merge_schema: true, ..
            } => Evolution::AddNewColumns,
            // Without mergeSchema, COPY INTO refuses columns the table lacks.
            Kind::CopyInto { .. } => Evolution::FailOnNewColumns,
        })
    }

    /// The files connector's reader options: as given, and, as Auto Loader
    /// does for a stream whose mode rescues, `rescuedDataColumn =
    /// _rescued_data` (what does not fit an inferred schema is rescued
    /// rather than lost).
    pub fn reader_options(&self) -> BTreeMap<String, String> {
        let mut options = self.options.reader.clone();
        if matches!(self.kind, Kind::Stream)
            && self.evolution().rescues()
            && !options
                .keys()
                .any(|k| k.trim_start_matches("cloudFiles.") == "rescuedDataColumn")
        {
            options.insert("rescuedDataColumn".into(), "_rescued_data".into());
        }
        options
    }

    /// The files connector, configured for this load, as its reader.
    pub fn files_reader(&self, runtime: Runtime, connector: Loaded) -> Result<Reading> {
        Ok(Reading {
            runtime,
            connector,
            grants: Grants::new(&[self.source.grant()], self.storage_options.clone())?,
            config: Configured::Files(FilesConfig {
                options: self.reader_options(),
                ..FilesConfig::new(self.format)
            }),
            stream: Some("files".into()),
            state: None,
            parallelism: self.parallelism,
            split_bytes: self.split_bytes,
            storage_options: self.storage_options.clone(),
            counters: Arc::new(Counters::default()),
            projection: self.projection.clone().map(Arc::new),
            // The files connector is given no secrets.
            redactor: Default::default(),
        })
    }
}

/// What the runner reads a batch's files with: the files connector
/// ([`Reading`]) in every run, an in-memory reader in the runner's tests,
/// so the exactly-once protocol is tested without wasmtime.
pub trait FileReader: Send + Sync {
    /// The schema of `files` as the reader infers it: their data columns,
    /// and those it appends (listed under
    /// [`sluice_files_contract::APPENDED`]).
    fn infer<'a>(&'a self, files: &'a [FileRef]) -> BoxFuture<'a, Result<SchemaRef>>;

    /// Reads `files` with `schema` into data files of `target` that no
    /// reader sees before the commit.
    fn write<'a>(
        &'a self,
        files: &'a [FileRef],
        schema: &'a SchemaRef,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<BatchRead>>;

    /// The schema `target` gets from a read with `schema`.
    fn table_schema(&self, schema: &SchemaRef, target: &Target) -> Result<SchemaRef>;
}

/// What one read of a batch wrote, and what the reader counted
/// (`files-with-new-columns`, `rows-rescued`, ...).
pub struct BatchRead {
    /// The data files, per lane.
    pub written: Vec<Written>,
    /// The reader's counters.
    pub counters: Arc<Counters>,
}

/// The files connector's stream named `files`, read with `schema`.
fn files_stream(schema: &SchemaRef) -> Stream {
    Stream {
        info: crate::wasm::bindings::StreamInfo {
            name: "files".into(),
            arrow_schema: vec![],
            cursor_fields: vec![],
            primary_key: vec![],
        },
        schema: schema.clone(),
    }
}

impl FileReader for Reading {
    fn infer<'a>(&'a self, files: &'a [FileRef]) -> BoxFuture<'a, Result<SchemaRef>> {
        Box::pin(async move { Ok(self.discover(files).await?.schema) })
    }

    fn write<'a>(
        &'a self,
        files: &'a [FileRef],
        schema: &'a SchemaRef,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<BatchRead>> {
        Box::pin(async move {
            let counters = Arc::new(Counters::default());
            let reading = Reading {
                counters: counters.clone(),
                ..self.clone()
            };
            let wrote = reading.write(files, &files_stream(schema), target).await?;
            Ok(BatchRead {
                written: wrote.written,
                counters,
            })
        })
    }

    fn table_schema(&self, schema: &SchemaRef, target: &Target) -> Result<SchemaRef> {
        Reading::table_schema(self, &files_stream(schema), target)
    }
}

/// What one batch did.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// The batch number.
    pub batch: u64,
    /// Files it read.
    pub files: usize,
    /// Bytes of those files.
    pub bytes: u64,
    /// Rows it committed.
    pub rows: u64,
    /// The table version that holds it, where known.
    pub version: Option<u64>,
    /// An earlier, interrupted run had already committed it.
    pub replayed: bool,
    /// Existing files recorded as seen without reading them.
    pub skipped: bool,
    /// Columns this batch added to the schema.
    pub added_columns: Vec<String>,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// A running incremental load.
pub struct Runner {
    config: Config,
    reader: Box<dyn FileReader>,
    checkpoint: Checkpoint,
    schemas: Schemas,
    state: State,
    app_id: String,
    /// Listed files not yet planned, in order.
    queue: VecDeque<FileRef>,
    /// Files seen in the source but left alone (already loaded).
    pub already_loaded: usize,
}

/// Refuses a target without a log to record each batch in (exactly once):
/// a plain Parquet dataset.
pub(crate) fn require_log(target: &Target) -> Result<()> {
    if target.format() == sluice_sink::TableFormat::Parquet {
        bail!(
            "incremental loads into {} need a Delta or Iceberg table (exactly-once commits record each batch in its log); use --table-format delta",
            target.location().display()
        );
    }
    Ok(())
}

/// Opens (or creates) the checkpoint at `location` and replays it: the
/// checkpoint, its state, and the txn appId its batches commit with.
pub(crate) async fn open_checkpoint(location: &Location) -> Result<(Checkpoint, State, String)> {
    let checkpoint = Checkpoint::open(location, now_ms()).await?;
    let state = checkpoint.load().await?;
    let app_id = format!("sluice-{}", checkpoint.id());
    Ok((checkpoint, state, app_id))
}

/// Whether `target` already holds batch `plan` of `app_id` (its txn version
/// has reached the batch): how a pending batch is settled after a crash.
pub(crate) async fn in_table(target: &Target, app_id: &str, plan: &Plan) -> Result<bool> {
    Ok(target
        .last_batch(app_id)
        .await?
        .is_some_and(|v| v >= plan.batch as i64))
}

/// What committing a batch did.
pub(crate) struct Committed {
    /// The table held the batch already (an earlier attempt committed it).
    pub replayed: bool,
    /// Rows this commit added (none when replayed).
    pub rows: u64,
    /// Bytes of data files written.
    pub bytes: u64,
    /// The table version that holds the batch, where known.
    pub version: Option<u64>,
}

/// Commits the data files `written` as batch `plan` of `app_id` (step 3),
/// with `txn(app_id, batch)` in the same commit, so that a table that holds
/// the batch already is left as it is.
pub(crate) async fn commit(
    target: &Target,
    schema: &Schema,
    written: Vec<Written>,
    app_id: &str,
    plan: &Plan,
    change: SchemaChange,
) -> Result<Committed> {
    let txn = Txn {
        app_id: app_id.to_string(),
        version: plan.batch as i64,
    };
    phase("commit", plan.batch);
    let done = target
        .commit_once(schema, written, &txn, change)
        .await
        .with_context(|| format!("committing batch {}", plan.batch))?;
    let replayed = matches!(done.outcome, Outcome::AlreadyCommitted { .. });
    Ok(Committed {
        replayed,
        rows: if replayed { 0 } else { done.written.rows },
        bytes: done.written.bytes,
        version: done.written.version,
    })
}

/// Records in `checkpoint` that `plan` is in the table (step 4): with
/// `version` of it, `rows` and `bytes` written.
pub(crate) async fn record(
    checkpoint: &Checkpoint,
    state: &mut State,
    plan: &Plan,
    version: Option<u64>,
    rows: u64,
    bytes: u64,
) -> Result<()> {
    phase("mark", plan.batch);
    let commit = Commit {
        version: 1,
        batch: plan.batch,
        committed_ms: now_ms(),
        table_version: version,
        rows,
        bytes,
    };
    checkpoint.commit(state, commit).await?;
    phase("done", plan.batch);
    Ok(())
}

/// Marks a step of the protocol in the log (target `sluice::phase`, debug
/// level): what the crash tests kill the process at.
pub(crate) fn phase(step: &str, batch: u64) {
    tracing::debug!(target: "sluice::phase", "phase={step} batch={batch}");
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn to_source(f: &FileRef) -> SourceFile {
    SourceFile {
        location: f.location.clone(),
        size: f.size,
        last_modified_ms: f.last_modified_ms,
        etag: None,
    }
}

fn to_file(f: &SourceFile) -> FileRef {
    FileRef::whole(&f.location, f.size, f.last_modified_ms)
}

impl Runner {
    /// Opens the checkpoint and settles a batch an earlier run left pending.
    pub async fn open(
        config: Config,
        reader: Box<dyn FileReader>,
        on_batch: &mut impl FnMut(&BatchReport),
    ) -> Result<Self> {
        require_log(&config.target)?;
        let evolution = config.evolution();
        if evolution == Evolution::AddNewColumnsWithTypeWidening {
            // Checked when a column widens; everything else works as in
            // addNewColumns.
            tracing::info!(
                "schemaEvolutionMode=addNewColumnsWithTypeWidening: new columns are added; a widening type fails the batch (see the error)"
            );
        }
        let (checkpoint, state, app_id) = open_checkpoint(&config.checkpoint).await?;
        let schemas = Schemas::open(&config.schema_location, evolution)?;
        let mut runner = Runner {
            config,
            reader,
            checkpoint,
            schemas,
            state,
            app_id,
            queue: VecDeque::new(),
            already_loaded: 0,
        };
        if let Some(plan) = runner.state.pending().cloned() {
            let report = runner.settle(plan).await?;
            on_batch(&report);
        }
        Ok(runner)
    }

    /// The checkpoint's state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The pipeline's id in the table's transaction log.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Files listed and waiting for a batch.
    pub fn backlog(&self) -> usize {
        self.queue.len()
    }

    /// Lists the source and queues the files not planned before. On a
    /// stream's first run with `includeExistingFiles=false`, the files there
    /// are recorded as seen (a batch that reads nothing) instead.
    pub async fn list(&mut self, on_batch: &mut impl FnMut(&BatchReport)) -> Result<usize> {
        let listed = list_files(&self.config.source).await?;
        let first_run = self.state.next_batch == 0;
        self.enqueue(listed);
        if let Some(only) = &self.config.only {
            let missing: Vec<&String> = only
                .iter()
                .filter(|o| !self.queue.iter().any(|f| &f.location == *o))
                .filter(|o| !self.state.files.contains_key(*o))
                .collect();
            if !missing.is_empty() {
                bail!(
                    "FILES names files that do not exist: {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        if first_run
            && matches!(self.config.kind, Kind::Stream)
            && !self.config.options.include_existing
            && !self.queue.is_empty()
        {
            let files: Vec<SourceFile> = self.queue.drain(..).map(|f| to_source(&f)).collect();
            let report = self.skip(files).await?;
            on_batch(&report);
        }
        Ok(self.queue.len())
    }

    /// Queues the notified `objects` not planned before, looking each one
    /// up instead of listing the source (file notification mode). A first
    /// run lists instead: which files existed before the stream began is
    /// something only a listing can tell.
    pub async fn notified(
        &mut self,
        objects: &[String],
        on_batch: &mut impl FnMut(&BatchReport),
    ) -> Result<usize> {
        if self.state.next_batch == 0 {
            return self.list(on_batch).await;
        }
        let files = notified_files(&self.config.source, objects).await?;
        self.enqueue(files);
        Ok(self.queue.len())
    }

    /// Queues (in place of what was queued) the `files` the options want
    /// and COPY INTO's `FILES` names, but not those planned before (unless
    /// COPY INTO forces them), which it counts as already loaded.
    fn enqueue(&mut self, files: Vec<FileRef>) {
        let by_version = self.config.options.allow_overwrites;
        let force = matches!(self.config.kind, Kind::CopyInto { force: true, .. });
        self.already_loaded = 0;
        self.queue.clear();
        for f in files {
            if !self.config.options.wants(&f) {
                continue;
            }
            if let Some(only) = &self.config.only
                && !only.contains(&f.location)
            {
                continue;
            }
            if !force && self.state.seen(&to_source(&f), by_version) {
                self.already_loaded += 1;
                continue;
            }
            self.queue.push_back(f);
        }
    }

    /// Records `files` as seen without reading them.
    async fn skip(&mut self, files: Vec<SourceFile>) -> Result<BatchReport> {
        let started = Instant::now();
        let plan = self
            .checkpoint
            .plan(&mut self.state, BatchKind::Skip, files, None, now_ms())
            .await?;
        self.record(&plan, None, 0, 0).await?;
        Ok(BatchReport {
            batch: plan.batch,
            files: plan.files.len(),
            bytes: plan.files.iter().map(|f| f.size).sum(),
            rows: 0,
            version: None,
            replayed: false,
            skipped: true,
            added_columns: vec![],
            elapsed: started.elapsed(),
        })
    }

    /// Plans and runs the next batch from the queue; `None` if the queue is
    /// empty. COPY INTO takes every queued file in one batch.
    pub async fn next(&mut self) -> Result<Option<BatchReport>> {
        let files = match self.config.kind {
            Kind::Stream => self.config.options.next_batch(&mut self.queue),
            Kind::CopyInto { .. } => self.queue.drain(..).collect(),
        };
        if files.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        phase("plan", self.state.next_batch);
        let schema_id = self.schema_for(&files).await?;
        let plan = self
            .checkpoint
            .plan(
                &mut self.state,
                BatchKind::Load,
                files.iter().map(to_source).collect(),
                Some(schema_id),
                now_ms(),
            )
            .await?;
        let mut report = self.execute(&plan, false).await?;
        report.elapsed = started.elapsed();
        Ok(Some(report))
    }

    /// Settles a pending batch: found in the table, or redone.
    async fn settle(&mut self, plan: Plan) -> Result<BatchReport> {
        let started = Instant::now();
        if plan.kind == BatchKind::Skip {
            self.record(&plan, None, 0, 0).await?;
        } else {
            if !in_table(&self.config.target, &self.app_id, &plan).await? {
                let mut report = self.execute(&plan, true).await?;
                report.elapsed = started.elapsed();
                return Ok(report);
            }
            self.record(&plan, None, 0, 0).await?;
        }
        Ok(BatchReport {
            batch: plan.batch,
            files: plan.files.len(),
            bytes: plan.files.iter().map(|f| f.size).sum(),
            rows: 0,
            version: None,
            replayed: plan.kind == BatchKind::Load,
            skipped: plan.kind == BatchKind::Skip,
            added_columns: vec![],
            elapsed: started.elapsed(),
        })
    }

    /// Reads a planned batch and commits it exactly once. A batch redone
    /// after a crash (`redo`) reads its files as they are now.
    async fn execute(&mut self, plan: &Plan, redo: bool) -> Result<BatchReport> {
        plan.schema_id.context("a load batch has no schema")?;
        // The current schema: the plan's, or a later one an interrupted
        // attempt of this batch evolved to.
        let mut schema: SchemaRef = Arc::new(
            self.schemas
                .latest()
                .await?
                .context("a load batch was planned without a schema")?
                .schema,
        );
        let files: Vec<FileRef> = if redo {
            self.current(plan).await?
        } else {
            plan.files.iter().map(to_file).collect()
        };
        let mut added = Vec::new();
        let wrote = loop {
            phase("write", plan.batch);
            let read = self
                .reader
                .write(&files, &schema, &self.config.target)
                .await
                .with_context(|| format!("batch {} was not committed", plan.batch))?;
            // The connector reports files with columns the schema lacks;
            // only then are the batch's files inferred and, if the mode
            // evolves the schema, read again with the new one (the data
            // files of the first read are never committed).
            let counters = &read.counters;
            let suspect = self.schemas.suspect(
                counters.get("files-with-new-columns"),
                counters.get("rows-rescued"),
            );
            if added.is_empty()
                && suspect
                && let Some((evolved, names)) = self.evolve_for(&files, &schema, plan.batch).await?
            {
                schema = Arc::new(evolved);
                added = names;
                continue;
            }
            break read;
        };
        let change = self.schemas.change();
        let table_schema = self.reader.table_schema(&schema, &self.config.target)?;
        let done = commit(
            &self.config.target,
            &table_schema,
            wrote.written,
            &self.app_id,
            plan,
            change,
        )
        .await?;
        self.record(plan, done.version, done.rows, done.bytes)
            .await?;
        Ok(BatchReport {
            batch: plan.batch,
            files: plan.files.len(),
            bytes: plan.files.iter().map(|f| f.size).sum(),
            rows: done.rows,
            version: done.version,
            replayed: done.replayed,
            skipped: false,
            added_columns: added,
            elapsed: Duration::ZERO,
        })
    }

    /// The files of a batch being redone, as they are now: a file changed
    /// since it was planned is read as it is (with a warning), a file that
    /// is gone fails the batch unless `ignoreMissingFiles` is set.
    async fn current(&self, plan: &Plan) -> Result<Vec<FileRef>> {
        let mut out = Vec::with_capacity(plan.files.len());
        for f in &plan.files {
            let location = Location::parse(&f.location, self.config.storage_options.clone())?;
            let (store, path) = location.store()?;
            match store.head(&path).await {
                Ok(m) => {
                    let now =
                        FileRef::whole(&f.location, m.size, m.last_modified.timestamp_millis());
                    if now.size != f.size || now.last_modified_ms != f.last_modified_ms {
                        tracing::warn!(
                            "{} changed after batch {} planned it; reading it as it is now",
                            f.location,
                            plan.batch
                        );
                    }
                    out.push(now);
                }
                Err(object_store::Error::NotFound { .. }) if self.config.options.ignore_missing => {
                    tracing::warn!(
                        "{} of batch {} is gone; leaving it out (ignoreMissingFiles=true)",
                        f.location,
                        plan.batch
                    );
                }
                Err(object_store::Error::NotFound { .. }) => bail!(
                    "{} was planned in batch {} but is gone; restore it, or set ignoreMissingFiles=true to leave it out",
                    f.location,
                    plan.batch
                ),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Records that `plan` is done (step 4).
    async fn record(
        &mut self,
        plan: &Plan,
        version: Option<u64>,
        rows: u64,
        bytes: u64,
    ) -> Result<()> {
        record(
            &self.checkpoint,
            &mut self.state,
            plan,
            version,
            rows,
            bytes,
        )
        .await
    }

    /// The schema a batch of `files` is planned with: the current one, or,
    /// for the first batch, the files' inferred schema (aligned with the
    /// table if it exists).
    async fn schema_for(&mut self, files: &[FileRef]) -> Result<u64> {
        if let Some(current) = self.schemas.latest().await? {
            return Ok(current.id);
        }
        let inferred = self.reader.infer(files).await?;
        let batch = self.state.next_batch;
        let advice = self.how_to_add_columns();
        let v = self
            .schemas
            .first(&inferred, &self.config.target, batch, ("the files", advice))
            .await?;
        Ok(v.id)
    }

    /// Evolves `current` for a batch of `files` that has columns it lacks
    /// (or, with type widening, values it could not read), as the mode
    /// says: the evolved schema and the columns it adds, or `None` if the
    /// files bring nothing new after all.
    async fn evolve_for(
        &mut self,
        files: &[FileRef],
        current: &Schema,
        batch: u64,
    ) -> Result<Option<(Schema, Vec<String>)>> {
        let inferred = self.reader.infer(files).await?;
        match self.schemas.evolve(&inferred, current, batch).await? {
            Evolved::Same => Ok(None),
            Evolved::Added(schema, names) => Ok(Some((schema, names))),
            Evolved::Refused(d) => {
                let (stored_data, _) = split_schema(current);
                let culprits = self.files_with_new_columns(files, &stored_data).await;
                bail!(
                    "new column(s) {} in {}: nothing was committed; {}",
                    d.added_names(),
                    culprits,
                    self.how_to_add_columns()
                )
            }
        }
    }

    /// What to do about new columns the mode refuses.
    fn how_to_add_columns(&self) -> &'static str {
        match self.config.kind {
            Kind::CopyInto { .. } => {
                "set COPY_OPTIONS ('mergeSchema' = 'true') (--copy-option mergeSchema=true) to add them to the table"
            }
            Kind::Stream => {
                "schemaEvolutionMode=failOnNewColumns stops here: change the mode (addNewColumns adds them), or remove the file(s)"
            }
        }
    }

    /// Which of `files` bring columns `stored` lacks, for the message of
    /// failOnNewColumns (each file inferred on its own; at most 20).
    async fn files_with_new_columns(&self, files: &[FileRef], stored: &[FieldRef]) -> String {
        let mut found = Vec::new();
        for f in files.iter().take(20) {
            if let Ok(s) = self.reader.infer(std::slice::from_ref(f)).await {
                let (data, _) = split_schema(&s);
                let d = drift(stored, &data);
                if !d.added.is_empty() {
                    found.push(format!("{} ({})", f.location, d.added_names()));
                }
            }
        }
        if found.is_empty() {
            format!("{} files", files.len())
        } else {
            found.join(", ")
        }
    }

    /// Deletes or moves the source files of batches committed longer than
    /// the retention ago (`cleanSource`). Files recorded as existing when
    /// the stream started were never read and are left alone.
    pub async fn clean_source(&mut self) -> Result<usize> {
        let (action, retention) = (
            self.config.options.clean_source.clone(),
            self.config.options.clean_retention,
        );
        if action == CleanSource::Off {
            return Ok(0);
        }
        let cutoff = now_ms() - retention.as_millis() as i64;
        let done = self.checkpoint.cleaned_through().await?;
        let through = self
            .state
            .files
            .values()
            .filter(|f| f.committed_ms.is_some_and(|t| t <= cutoff))
            .map(|f| f.batch)
            .max();
        let Some(through) = through.filter(|t| done.is_none_or(|d| *t > d)) else {
            return Ok(0);
        };
        // Every batch up to `through` committed before the cutoff: commits
        // are in batch order.
        let mut due: Vec<&SourceFile> = self
            .state
            .files
            .values()
            .filter(|f| !f.skipped && f.batch <= through && done.is_none_or(|d| f.batch > d))
            .map(|f| &f.file)
            .collect();
        due.sort_by(|a, b| a.location.cmp(&b.location));
        let (store, _) = self.config.source.base().store()?;
        let base_url = self.config.source.base().url().to_string();
        let mut cleaned = 0;
        for f in due {
            let url = url::Url::parse(&f.location)?;
            let path = object_store::path::Path::from_url_path(url.path())?;
            if let CleanSource::Move(to) = &action {
                let relative = f
                    .location
                    .strip_prefix(base_url.trim_end_matches('/'))
                    .unwrap_or(&f.location)
                    .trim_start_matches('/');
                let dest = Location::parse(
                    &format!("{}/{relative}", to.trim_end_matches('/')),
                    self.config.storage_options.clone(),
                )?;
                let (dest_store, dest_path) = dest.store()?;
                let same_store = dest.url().scheme() == url.scheme()
                    && dest.url().authority() == url.authority();
                let copied = if same_store {
                    store.copy(&path, &dest_path).await
                } else {
                    match store.get(&path).await {
                        Ok(got) => dest_store
                            .put(&dest_path, got.bytes().await?.into())
                            .await
                            .map(|_| ()),
                        Err(e) => Err(e),
                    }
                };
                match copied {
                    Ok(()) => {}
                    // Cleaned by an earlier run that stopped before
                    // recording it.
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => cleaned += 1,
                Err(e) => return Err(e.into()),
            }
        }
        self.checkpoint.set_cleaned_through(through).await?;
        Ok(cleaned)
    }
}

#[cfg(test)]
mod tests {
    //! The exactly-once protocol without wasmtime: the files are text files
    //! of one integer per line, read by an in-memory reader in place of the
    //! files connector; the checkpoint and the Delta table are real.

    use std::sync::atomic::{AtomicBool, Ordering};

    use arrow_array::{Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field};
    use sluice_sink::{TableFormat, WriteOptions};

    use super::*;

    /// Reads `ids` files; fails every write while `broken` is set.
    #[derive(Default)]
    struct Memory {
        broken: AtomicBool,
    }

    fn ids_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]))
    }

    impl FileReader for Memory {
        fn infer<'a>(&'a self, _files: &'a [FileRef]) -> BoxFuture<'a, Result<SchemaRef>> {
            Box::pin(async { Ok(ids_schema()) })
        }

        fn write<'a>(
            &'a self,
            files: &'a [FileRef],
            schema: &'a SchemaRef,
            target: &'a Target,
        ) -> BoxFuture<'a, Result<BatchRead>> {
            Box::pin(async move {
                if self.broken.load(Ordering::SeqCst) {
                    bail!("the reader broke");
                }
                let mut lane = target.lane(self.table_schema(schema, target)?)?;
                for f in files {
                    let path = url::Url::parse(&f.location)?
                        .to_file_path()
                        .map_err(|()| anyhow::anyhow!("not a file"))?;
                    let ids: Vec<i64> = std::fs::read_to_string(path)?
                        .lines()
                        .map(str::parse)
                        .collect::<Result<_, _>>()?;
                    let batch =
                        RecordBatch::try_new(ids_schema(), vec![Arc::new(Int64Array::from(ids))])?;
                    lane.write(batch).await?;
                }
                Ok(BatchRead {
                    written: vec![lane.finish().await?],
                    counters: Arc::default(),
                })
            })
        }

        fn table_schema(&self, schema: &SchemaRef, target: &Target) -> Result<SchemaRef> {
            Ok(target.storable(schema)?)
        }
    }

    struct Place {
        dir: tempfile::TempDir,
    }

    impl Place {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("in")).unwrap();
            Place { dir }
        }

        fn file(&self, name: &str, ids: &str) {
            std::fs::write(self.dir.path().join("in").join(name), ids).unwrap();
        }

        fn location(&self, rel: &str) -> Location {
            Location::parse(
                &self.dir.path().join(rel).display().to_string(),
                Default::default(),
            )
            .unwrap()
        }

        fn config(&self) -> Config {
            Config {
                kind: Kind::Stream,
                source: Source::parse(
                    &self.dir.path().join("in").display().to_string(),
                    Default::default(),
                )
                .unwrap(),
                only: None,
                format: Format::Csv,
                options: StreamOptions::parse(&Default::default()).unwrap(),
                target: Target::new(
                    self.location("t"),
                    TableFormat::Delta,
                    WriteOptions::default(),
                ),
                checkpoint: self.location("cp"),
                schema_location: self.location("cp"),
                storage_options: Default::default(),
                parallelism: 1,
                split_bytes: 0,
                projection: None,
            }
        }

        /// Opens a runner with `reader`, and loads the backlog: every
        /// settled batch's report.
        async fn run(&self, reader: Memory) -> Result<Vec<BatchReport>> {
            let mut reports = Vec::new();
            let mut on_batch = |r: &BatchReport| reports.push(r.clone());
            let mut runner = Runner::open(self.config(), Box::new(reader), &mut on_batch).await?;
            runner.list(&mut on_batch).await?;
            while let Some(r) = runner.next().await? {
                on_batch(&r);
            }
            Ok(reports)
        }

        async fn table_version(&self) -> Option<String> {
            sluice_sink::delta::load(&self.location("t"))
                .await
                .unwrap()
                .and_then(|t| t.version().map(|v| format!("{v:?}")))
        }
    }

    fn rows(reports: &[BatchReport]) -> u64 {
        reports.iter().map(|r| r.rows).sum()
    }

    #[tokio::test]
    async fn each_file_loads_once_across_runs() {
        let p = Place::new();
        p.file("a", "1\n2\n");
        p.file("b", "3\n");
        let first = p.run(Memory::default()).await.unwrap();
        assert_eq!(rows(&first), 3);
        assert!(first.iter().all(|r| !r.replayed));
        assert!(p.run(Memory::default()).await.unwrap().is_empty());
        p.file("c", "4\n");
        let third = p.run(Memory::default()).await.unwrap();
        assert_eq!((third.len(), rows(&third)), (1, 1));
        assert_eq!(third[0].files, 1);
    }

    #[tokio::test]
    async fn a_batch_committed_but_not_recorded_is_settled_not_loaded_again() {
        let p = Place::new();
        p.file("a", "1\n2\n");
        let first = p.run(Memory::default()).await.unwrap();
        assert_eq!(first.len(), 1);
        let version = p.table_version().await;
        // As if the process died between the table commit and the record.
        std::fs::remove_file(
            p.dir
                .path()
                .join("cp/commits")
                .join(format!("{:020}.json", 0)),
        )
        .unwrap();
        let settled = p.run(Memory::default()).await.unwrap();
        assert_eq!(settled.len(), 1);
        assert!(settled[0].replayed, "{:?}", settled[0]);
        assert_eq!(settled[0].rows, 0);
        assert_eq!(p.table_version().await, version, "nothing committed twice");
        assert!(p.run(Memory::default()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_read_commits_nothing_and_the_next_run_redoes_its_plan() {
        let p = Place::new();
        p.file("a", "1\n2\n");
        p.file("b", "3\n");
        let broken = Memory::default();
        broken.broken.store(true, Ordering::SeqCst);
        let e = p.run(broken).await.unwrap_err();
        assert!(
            format!("{e:#}").contains("batch 0 was not committed"),
            "{e:#}"
        );
        assert_eq!(p.table_version().await, None);
        // A file that lands meanwhile waits for the next batch: the batch
        // planned before the failure is redone with exactly its files.
        p.file("c", "4\n");
        let redone = p.run(Memory::default()).await.unwrap();
        assert_eq!(redone[0].batch, 0);
        assert_eq!((redone[0].files, redone[0].rows), (2, 3));
        assert!(!redone[0].replayed);
        assert_eq!(rows(&redone), 4);
    }
}
