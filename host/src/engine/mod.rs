//! The engine: one load path. Every face — the command line's flags, a SQL
//! statement, a pipeline file, an HTTP trigger, an upload — describes a
//! [`Load`]; [`Engine::run`] runs it under a [`Trigger`] and tells an
//! [`Observer`] what each batch did. A new source or table format is added
//! here, once, and every face has it.
//!
//! - batch loads (replace, append) read in parallel lanes and commit once
//!   ([`ingest`], [`read`], [`split`]);
//! - COPY INTO and streams load exactly once through a checkpoint
//!   ([`incremental`] for files, [`positions`] for connectors that plan
//!   their batches), with a schema history that evolves ([`schemas`]);
//! - uploads commit Arrow batches or an uploaded file (`upload`);
//! - a failure is typed by who has to act and told with secrets redacted
//!   ([`failure`], [`redact`]);
//! - a connector's conformance to the contract is checked call by call
//!   ([`conformance`], `sluice connector test`).

mod checkpoints;
mod compact;
pub mod conformance;
pub mod failure;
pub mod incremental;
pub mod ingest;
pub mod positions;
pub mod read;
pub mod redact;
pub mod schemas;
mod secrets;
pub mod split;
mod stop;
mod tables;
mod upload;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};
use sluice_pipeline::pipeline::{PipelineGrants, TableFormatName, resolve_secrets, secret_refs};
use sluice_pipeline::{
    CleanSource, Evolution, Load, LoadMode, Pipeline, Source, StreamOptions, TableRef,
    table::DEFAULT_SCHEMA,
};
use sluice_sink::iceberg_table::IcebergTable;
use sluice_sink::{Location, TableFormat, Target, WriteMode};

use crate::engine::compact::AutoCompact;
use crate::engine::incremental::{Config, Kind, Runner};
use crate::engine::ingest::{Input, Job};
use crate::engine::positions::Positions;
use crate::engine::redact::Redactor;
use crate::wasm::builtin;
use crate::wasm::capability::Counters;
use crate::wasm::connectors::ConnectorStore;
use crate::wasm::runtime::Runtime;

pub use crate::wasm::connectors::ConnectorInfo;
pub use crate::wasm::runtime::Limits;
pub use checkpoints::{CheckpointFiles, FileStatus};
pub use failure::{Failure, Fault};
pub use incremental::BatchReport;
pub use secrets::Secrets;
pub use sluice_pipeline::Trigger;
pub use sluice_sink::WriteOptions;
pub use sluice_sink::upkeep::{Optimized, Vacuumed};
pub use split::DEFAULT_SPLIT_BYTES;
pub use stop::Stop;
pub use tables::{Named, SizeBucket, TableEntry, TableInfo, Version};
pub use upload::{BatchWriter, UploadedFile, json_rows};

/// What every run shares: the runtime, storage, the warehouse, tuning,
/// uploaded connectors and secrets.
#[derive(Clone)]
pub struct Engine {
    /// The wasmtime runtime.
    pub runtime: Runtime,
    /// Object-store options for sources, tables and checkpoints.
    pub storage: HashMap<String, String>,
    /// Where tables named without a path live ([`TableRef`]).
    pub warehouse: String,
    /// The Iceberg catalog's database URI; `None` for the SQLite file at
    /// the root of a local warehouse.
    pub catalog: Option<String>,
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

/// What a run tells as it goes: the command line prints it, `sluice serve`
/// records it. Every method has a default that ignores it, and `()` ignores
/// everything.
pub trait Observer: Send {
    /// A batch load planned `bytes` of input; `progress` counts what its
    /// lanes have read so far.
    fn reading(&mut self, _bytes: u64, _progress: &Progress) {}

    /// An incremental batch settled: committed, replayed (an earlier run
    /// committed it before it stopped) or recorded as skipped.
    fn batch(&mut self, _report: &BatchReport) {}

    /// A planned stream looked for input (with or without a batch after):
    /// its source was `bytes` ahead of it, as its connector says.
    fn source_lag(&mut self, _stream: &str, _bytes: u64) {}
}

impl Observer for () {}

/// An observer several runs at once tell, one at a time.
struct Shared<'a, 'o>(&'a std::sync::Mutex<&'o mut dyn Observer>);

impl Observer for Shared<'_, '_> {
    fn reading(&mut self, bytes: u64, progress: &Progress) {
        if let Ok(mut o) = self.0.lock() {
            o.reading(bytes, progress);
        }
    }

    fn batch(&mut self, report: &BatchReport) {
        if let Ok(mut o) = self.0.lock() {
            o.batch(report);
        }
    }

    fn source_lag(&mut self, stream: &str, bytes: u64) {
        if let Ok(mut o) = self.0.lock() {
            o.source_lag(stream, bytes);
        }
    }
}

/// How far a batch load's lanes have read.
#[derive(Clone)]
pub struct Progress(Arc<Counters>);

impl Progress {
    /// Input bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.0.bytes_read.load(Ordering::Relaxed)
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReport {
    /// The table, for people.
    #[serde(default)]
    pub table: String,
    /// Files read.
    pub files: usize,
    /// Rows committed.
    pub rows: u64,
    /// Input bytes.
    pub bytes: u64,
    /// Batches settled (one for a batch load).
    pub batches: usize,
    /// The table version the run ended at, where it committed one.
    pub version: Option<u64>,
    /// Columns the run added to the table.
    pub added_columns: Vec<String>,
    /// Files COPY INTO skipped because they were loaded before.
    pub skipped_files: usize,
    /// Counters connectors reported (`rows-dropped`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Whether the run ended because a stop was asked for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// How far the source was ahead of the stream when it last planned (a
    /// replication slot's WAL bytes; for several tables, the most), where
    /// the connector says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_lag_bytes: Option<u64>,
}

impl RunReport {
    /// Adds an incremental batch. A replayed batch counts (the run finished
    /// what an earlier one left), with the rows it committed then not
    /// counted again; a batch of skipped files does not.
    pub fn add(&mut self, r: &BatchReport) {
        if r.skipped {
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

/// Parses an interval such as `5m` or `30s`; zero means never.
pub fn parse_interval(text: &str) -> Result<Option<Duration>> {
    let d = sluice_pipeline::incremental::parse_duration(text).map_err(anyhow::Error::msg)?;
    Ok((!d.is_zero()).then_some(d))
}

/// The sink's keyed apply for a pipeline's `[apply]` (AUTO CDC).
fn keyed_apply(a: &sluice_pipeline::ApplyChanges) -> Result<sluice_sink::keyed::KeyedApply> {
    use sluice_sink::keyed::{DeleteWhen, KeyedApply, Scd};
    Ok(KeyedApply {
        keys: a.keys.clone(),
        sequence: a.sequence_by.clone(),
        scd: if a.scd_type == 2 { Scd::Two } else { Scd::One },
        delete_when: a
            .delete_condition()?
            .map(|(column, values)| DeleteWhen { column, values }),
        except: a.except_columns.clone(),
        truncate_when: a
            .truncate_condition()?
            .map(|(column, values)| DeleteWhen { column, values }),
        unchanged_column: a.unchanged_columns.clone(),
    })
}

impl Engine {
    /// An engine whose connectors run under `limits`, compiled once into
    /// `cache_dir`; one lane per core, whole files, default write options,
    /// no uploaded connectors and no secrets until they are given.
    pub fn new(
        cache_dir: Option<std::path::PathBuf>,
        limits: Limits,
        storage: HashMap<String, String>,
        warehouse: &str,
    ) -> Result<Self> {
        Ok(Engine {
            runtime: Runtime::new(cache_dir, limits)?,
            storage,
            warehouse: warehouse.to_string(),
            catalog: None,
            parallelism: std::thread::available_parallelism().map_or(2, usize::from),
            split_bytes: split::DEFAULT_SPLIT_BYTES,
            write: WriteOptions::default(),
            connectors: None,
            secrets: Secrets::default(),
        })
    }

    /// A location from a path or URL.
    pub fn location(&self, text: &str) -> Result<Location> {
        Ok(Location::parse(text, self.storage.clone())?)
    }

    /// A table's location by the one rule every face shares
    /// ([`TableRef`]): a path or URL as given, a name (`t`, `schema.t`)
    /// under the warehouse root.
    pub fn table(&self, name: &str) -> Result<Location> {
        Ok(TableRef::parse(name)?.location(&self.location(&self.warehouse)?)?)
    }

    /// The sink's target for table `name` in `format`, by the one rule
    /// every face shares: Delta and Parquet tables at [`Engine::table`]'s
    /// location; an Iceberg table named `[catalog.]namespace.table` (or
    /// `table`, in namespace `default`) in the engine's catalog, its files
    /// where that rule puts a table of that name.
    pub fn target(&self, name: &str, format: TableFormatName) -> Result<Target> {
        let write = self.write.clone();
        Ok(match format {
            TableFormatName::Delta => Target::new(self.table(name)?, TableFormat::Delta, write),
            TableFormatName::Parquet => Target::new(self.table(name)?, TableFormat::Parquet, write),
            TableFormatName::Iceberg => {
                let table = self.iceberg_table(name)?;
                Target::new(table.location.clone(), TableFormat::Iceberg, write).in_catalog(table)
            }
        })
    }

    /// The Iceberg table `name` ([`Engine::target`]).
    pub fn iceberg_table(&self, name: &str) -> Result<IcebergTable> {
        let warehouse = self.location(&self.warehouse)?;
        let catalog = self.catalog()?;
        let (named, table) = TableRef::parse_iceberg(name)?;
        if let Some(other) = named.filter(|n| *n != catalog.name) {
            bail!(
                "Iceberg table '{name}': there is no catalog '{other}'; the catalog is '{}'",
                catalog.name
            );
        }
        let TableRef::Name { schema, table: t } = &table else {
            unreachable!("an Iceberg table is always a name")
        };
        Ok(IcebergTable {
            namespace: schema.clone().unwrap_or_else(|| DEFAULT_SCHEMA.to_string()),
            name: t.clone(),
            location: table.location(&warehouse)?,
            catalog,
        })
    }

    /// Compacts the Delta table `name` ([`Engine::table`]'s rule): its data
    /// files smaller than `target_bytes` are rewritten as files of about
    /// that size, in one commit that changes no data; appends committed
    /// meanwhile are kept.
    pub async fn optimize(&self, name: &str, target_bytes: u64) -> Result<Optimized> {
        Ok(sluice_sink::upkeep::optimize(&self.table(name)?, target_bytes, &self.write).await?)
    }

    /// Compacts the Iceberg table `name` ([`Engine::iceberg_table`]) as
    /// [`Engine::optimize`] does a Delta table, in one `replace` snapshot
    /// ([`sluice_sink::iceberg_table::optimize`]).
    pub async fn optimize_iceberg(&self, name: &str, target_bytes: u64) -> Result<Optimized> {
        let table = self.iceberg_table(name)?;
        Ok(sluice_sink::iceberg_table::optimize(&table, target_bytes, &self.write).await?)
    }

    /// Deletes the files of the Delta table `name` that no version inside
    /// `retain` references (see [`sluice_sink::upkeep::vacuum`]).
    pub async fn vacuum(
        &self,
        name: &str,
        retain: Duration,
        dry_run: bool,
        force: bool,
    ) -> Result<Vacuumed> {
        Ok(sluice_sink::upkeep::vacuum(&self.table(name)?, retain, dry_run, force).await?)
    }

    /// Expires the snapshots of the Iceberg table `name` older than
    /// `retain` (the current one always stays) and deletes the files only
    /// they used ([`sluice_sink::iceberg_table::expire_snapshots`]).
    pub async fn expire_snapshots(
        &self,
        name: &str,
        retain: Duration,
        dry_run: bool,
    ) -> Result<sluice_sink::iceberg_table::Expired> {
        let cutoff = chrono::Utc::now().timestamp_millis()
            - i64::try_from(retain.as_millis()).unwrap_or(i64::MAX);
        let table = self.iceberg_table(name)?;
        Ok(sluice_sink::iceberg_table::expire_snapshots(&table, cutoff, dry_run).await?)
    }

    /// Uses the uploaded connectors of the service state at `state` (under
    /// `<state>/connectors`, as `sluice serve` keeps them).
    pub fn keep_state(&mut self, state: &Location) -> Result<()> {
        self.connectors = Some(ConnectorStore::new(&state.child("connectors")?)?);
        Ok(())
    }

    /// Whether `pipeline`'s table is there: a Delta log, or any file of a
    /// Parquet table.
    pub async fn table_exists(&self, pipeline: &Pipeline) -> Result<bool> {
        Ok(match pipeline.table_format {
            TableFormatName::Delta => {
                let location = self.table(&pipeline.table)?;
                sluice_sink::delta::load(&location).await?.is_some()
            }
            TableFormatName::Parquet => {
                use futures::StreamExt;
                let location = self.table(&pipeline.table)?;
                let (store, root) = location.store()?;
                store.list(Some(&root)).next().await.is_some()
            }
            TableFormatName::Iceberg => {
                self.iceberg_table(&pipeline.table)?.load().await?.is_some()
            }
        })
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

    /// The TLS settings `grants` give the connector's connections: its CA
    /// (a PEM file, or PEM text) and client certificate (secrets
    /// resolved); `None` for the public roots and no certificate.
    fn network_tls(&self, grants: &PipelineGrants) -> Result<Option<Arc<rustls::ClientConfig>>> {
        let resolve = |text: &str| -> Result<String> {
            let v = resolve_secrets(
                &serde_json::Value::String(text.to_string()),
                &grants.secrets,
                &|n| self.secrets.get(n),
            )?;
            Ok(v.as_str().unwrap_or_default().to_string())
        };
        let ca = match &grants.network_ca {
            None => None,
            Some(pem) if pem.trim_start().starts_with("-----BEGIN") => {
                Some(pem.clone().into_bytes())
            }
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("network_ca: reading {path}"))?)
            }
        };
        let client = match (&grants.network_client_cert, &grants.network_client_key) {
            (None, None) => None,
            (Some(chain), Some(key)) => Some((resolve(chain)?, resolve(key)?)),
            _ => bail!("give network_client_cert and network_client_key together"),
        };
        if ca.is_none() && client.is_none() {
            return Ok(None);
        }
        let client = client.as_ref().map(|(c, k)| (c.as_bytes(), k.as_bytes()));
        Ok(Some(crate::wasm::outbound::tls_config(
            ca.as_deref(),
            client,
        )?))
    }

    /// Runs `load` under `trigger`, telling `observer` what each batch did,
    /// until it is done or `stop` is asked for. How it failed, if it did, is
    /// told with the pipeline's secrets redacted.
    pub async fn run(
        &self,
        load: &Load,
        trigger: &Trigger,
        observer: &mut dyn Observer,
        stop: &Stop,
    ) -> Result<RunReport, Failure> {
        let redactor = self.redactor(&load.pipeline);
        self.run_redacted(load, trigger, observer, stop, &redactor)
            .await
            .map_err(|e| Failure::new(&e, &redactor))
    }

    async fn run_redacted(
        &self,
        load: &Load,
        trigger: &Trigger,
        observer: &mut dyn Observer,
        stop: &Stop,
        redactor: &Redactor,
    ) -> Result<RunReport> {
        let p = &load.pipeline;
        p.validate()?;
        if p.mode == LoadMode::Cdc {
            return self.cdc(load, trigger, observer, stop, redactor).await;
        }
        let started = Instant::now();
        let mut target = self.target(&p.table, p.table_format)?;
        let table = target.location().clone();
        if let Some(a) = &p.apply {
            target = target.keyed(keyed_apply(a)?);
        }
        let mut report = match p.mode {
            LoadMode::Replace | LoadMode::Append => {
                self.batch(load, target, observer, redactor).await?
            }
            LoadMode::CopyInto => self.copy_into(load, target, observer).await?,
            LoadMode::Stream if p.connector.is_some() => {
                self.stream_positions(load, target, trigger, observer, stop, redactor)
                    .await?
            }
            LoadMode::Stream => self.stream(load, target, trigger, observer, stop).await?,
            LoadMode::Cdc => unreachable!("a cdc pipeline runs as its streams"),
        };
        report.table = table.display();
        report.seconds = started.elapsed().as_secs_f64();
        report.stopped = stop.asked();
        Ok(report)
    }

    /// A `cdc` pipeline: the connector lists the source tables (with their
    /// keys), and each runs as a stream of its own, applied by key to its
    /// own table under the pipeline's, all at once under `trigger`. The
    /// report is their sum; the first to fail stops the others between
    /// batches.
    async fn cdc(
        &self,
        load: &Load,
        trigger: &Trigger,
        observer: &mut dyn Observer,
        stop: &Stop,
        redactor: &Redactor,
    ) -> Result<RunReport> {
        let p = &load.pipeline;
        let started = Instant::now();
        let discovery = Load::new(p.cdc_discovery());
        let (_, reading) = self
            .discovery_job(&discovery, redactor)
            .await?
            .plan()
            .await?;
        let mut loads = Vec::new();
        for s in reading.streams(&[]).await? {
            loads.push(Load {
                name: load.name.clone(),
                pipeline: p.cdc_stream(&s.info.name, &s.info.primary_key)?,
                projection: None,
                component_file: load.component_file.clone(),
            });
        }
        let shared = std::sync::Mutex::new(observer);
        // Asked when the run is asked to stop, or when one table fails.
        let inner = Stop::new();
        let runs = loads.iter().map(|l| {
            let (shared, inner) = (&shared, &inner);
            async move {
                let mut observer = Shared(shared);
                let run = Box::pin(self.run_redacted(l, trigger, &mut observer, inner, redactor));
                let table = l.pipeline.connector.as_ref().and_then(|c| c.stream.clone());
                run.await
                    .inspect_err(|_| {
                        inner.ask();
                    })
                    .with_context(|| format!("source table {}", table.unwrap_or_default()))
            }
        });
        let all = futures::future::try_join_all(runs);
        let forward = async {
            while !stop.asked() {
                stop.sleep(Duration::from_secs(60)).await;
            }
            inner.ask();
        };
        tokio::pin!(all, forward);
        let reports = tokio::select! {
            r = &mut all => r?,
            () = &mut forward => all.await?,
        };
        let mut report = RunReport {
            table: self.table(&p.table)?.display(),
            ..RunReport::default()
        };
        for r in reports {
            report.rows += r.rows;
            report.batches += r.batches;
            report.bytes += r.bytes;
            report.added_columns.extend(r.added_columns);
            report.source_lag_bytes = report.source_lag_bytes.max(r.source_lag_bytes);
            for (k, v) in r.counters {
                *report.counters.entry(k).or_default() += v;
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        report.stopped = stop.asked();
        Ok(report)
    }

    /// [`Engine::job`] for what only discovers streams: its target is
    /// never written.
    async fn discovery_job(&self, load: &Load, redactor: &Redactor) -> Result<Job> {
        let nowhere = Target::new(self.location(".")?, TableFormat::Delta, self.write.clone());
        self.job(load, nowhere, redactor).await
    }

    /// A batch load's job: the files connector on the pipeline's source, or
    /// its connector component.
    async fn job(&self, load: &Load, target: Target, redactor: &Redactor) -> Result<Job> {
        let p = &load.pipeline;
        let (connector, input) = match &p.connector {
            None => (
                self.runtime.load_builtin(&builtin::FILES)?,
                Input::Files {
                    source: p.source.clone().context("the pipeline has no source")?,
                    format: p
                        .format
                        .context("give the input format (csv, json or parquet)")?,
                    options: p.options.clone(),
                },
            ),
            Some(c) => {
                let builtin = builtin::named(&c.id);
                let loaded = match (&load.component_file, builtin) {
                    (_, Some(b)) => self.runtime.load_builtin(b)?,
                    (Some(path), None) => {
                        let wasm = std::fs::read(path)
                            .with_context(|| format!("reading connector {}", path.display()))?;
                        self.runtime.load(&wasm)?
                    }
                    (None, None) => {
                        let store = self
                            .connectors
                            .as_ref()
                            .context("this process has no store of uploaded connectors")?;
                        store.load(&self.runtime, &c.id).await?
                    }
                };
                let mut config = c.config.clone();
                let mut network = p.grants.network.clone();
                if builtin.is_some() {
                    // A built-in connector's config is the pipeline's
                    // options, and the servers they name are its source.
                    let object = config
                        .as_object_mut()
                        .context("the connector config must be a JSON object")?;
                    for (k, v) in &p.options {
                        if sluice_pipeline::incremental::AUTO_COMPACT.contains(&k.as_str()) {
                            continue;
                        }
                        object.insert(k.clone(), serde_json::Value::String(v.clone()));
                    }
                    network.extend(builtin::implicit_network(&c.id, &config));
                }
                // A built-in connector is the binary's own code: the secrets
                // the pipeline names in its options are granted by naming
                // them there.
                let mut secrets = p.grants.secrets.clone();
                if builtin.is_some() {
                    secrets.extend(secret_refs(&config));
                }
                let config = resolve_secrets(&config, &secrets, &|n| self.secrets.get(n))?;
                let mut grants = p.grants.read.clone();
                grants.extend(p.source.iter().cloned());
                (
                    loaded,
                    Input::Connector {
                        config: config.to_string(),
                        stream: c.stream.clone(),
                        grants,
                        network,
                        tls: self.network_tls(&p.grants)?,
                    },
                )
            }
        };
        Ok(Job {
            runtime: self.runtime.clone(),
            connector,
            input,
            target,
            mode: if p.mode == LoadMode::Append {
                WriteMode::Append
            } else {
                WriteMode::Overwrite
            },
            parallelism: self.parallelism,
            split_bytes: self.split_bytes,
            storage_options: self.storage.clone(),
            counters: Arc::new(Counters::default()),
            projection: load.projection.clone(),
            redactor: redactor.clone(),
        })
    }

    async fn batch(
        &self,
        load: &Load,
        target: Target,
        observer: &mut dyn Observer,
        redactor: &Redactor,
    ) -> Result<RunReport> {
        let job = self.job(load, target, redactor).await?;
        let progress = Progress(job.counters.clone());
        let s = job.run(|bytes| observer.reading(bytes, &progress)).await?;
        // The guest counts its own IPC encoding (`ipc-encode-us`); the
        // benchmark reads this line for the component boundary's share.
        let encode_us = s
            .counters
            .iter()
            .find(|(k, _)| k == "ipc-encode-us")
            .map_or(0, |c| c.1);
        tracing::info!(
            "timings: connector {:.3}s, ipc encode {:.3}s; connector cpu {:.3}s, ipc decode cpu {:.3}s; wrote {} files ({} bytes)",
            s.connector_time.as_secs_f64(),
            encode_us as f64 / 1e6,
            s.connector_cpu.as_secs_f64(),
            s.decode_cpu.as_secs_f64(),
            s.committed.files,
            s.committed.bytes
        );
        Ok(RunReport {
            files: s.files,
            rows: s.committed.rows,
            bytes: s.input_bytes,
            batches: 1,
            version: s.committed.version,
            counters: s.counters.into_iter().collect(),
            ..RunReport::default()
        })
    }

    async fn copy_into(
        &self,
        load: &Load,
        target: Target,
        observer: &mut dyn Observer,
    ) -> Result<RunReport> {
        let p = &load.pipeline;
        let (copy, format_options): (BTreeMap<_, _>, BTreeMap<_, _>) = p
            .options
            .clone()
            .into_iter()
            .partition(|(k, _)| k == "force" || k == "mergeSchema");
        check_copy_format_options(&format_options)?;
        let mut config = self.incremental(
            load,
            copy_into_kind(&copy)?,
            StreamOptions::parse(&format_options)?,
            target,
        )?;
        if !p.files.is_empty() {
            let base = config.source.base().as_dir();
            let mut only = Vec::new();
            for f in &p.files {
                let url = base
                    .url()
                    .join(f.trim_start_matches('/'))
                    .map_err(|e| anyhow::anyhow!("FILES entry '{f}': {e}"))?;
                only.push(url.to_string());
            }
            config.only = Some(only);
        }
        self.run_incremental(config, &Trigger::AvailableNow, observer, &Stop::new(), None)
            .await
    }

    async fn stream(
        &self,
        load: &Load,
        target: Target,
        trigger: &Trigger,
        observer: &mut dyn Observer,
        stop: &Stop,
    ) -> Result<RunReport> {
        let options = StreamOptions::parse(&load.pipeline.options)?;
        let compact = AutoCompact::new(&load.pipeline.options, &target)?;
        let config = self.incremental(load, Kind::Stream, options, target)?;
        self.run_incremental(config, trigger, observer, stop, compact)
            .await
    }

    /// A stream from a connector that plans its own batches (a message
    /// bus, a change log): exactly once through the checkpoint as files
    /// are ([`positions`]).
    async fn stream_positions(
        &self,
        load: &Load,
        target: Target,
        trigger: &Trigger,
        observer: &mut dyn Observer,
        stop: &Stop,
        redactor: &Redactor,
    ) -> Result<RunReport> {
        let checkpoint = load
            .checkpoint(target.location())?
            .context("this load keeps no checkpoint")?;
        let job = self.job(load, target.clone(), redactor).await?;
        if !job.connector.plans() {
            bail!(
                "this connector cannot stream: it does not plan its own batches (it exports no sluice:connector/planner); load it as a batch (append or replace)"
            );
        }
        let (_, reading) = job.plan().await?;
        let mut compact = AutoCompact::new(&load.pipeline.options, &target)?;
        let mut report = RunReport::default();
        // After each look for input: its batch, if any, and the lag.
        let mut looked = |r: Option<&BatchReport>, lag: Option<(&str, u64)>| {
            if let Some(r) = r {
                observer.batch(r);
                report.add(r);
                if let Some(c) = compact.as_mut().filter(|_| r.version.is_some()) {
                    c.committed();
                }
            }
            if let Some((stream, bytes)) = lag {
                observer.source_lag(stream, bytes);
            }
        };
        // The schema history sits beside the offsets, as a files stream's
        // does by default; its mode is Auto Loader's option.
        let evolution = match load.pipeline.options.get("schemaEvolutionMode") {
            Some(mode) => mode.parse()?,
            None => Evolution::AddNewColumns,
        };
        let mut positions = Positions::open(
            reading,
            target,
            (&checkpoint, &checkpoint),
            evolution,
            &mut |r: &BatchReport| looked(Some(r), None),
        )
        .await?;
        match trigger {
            Trigger::AvailableNow => {
                positions.bound().await?;
                while !stop.asked() {
                    let r = positions.next().await?;
                    looked(r.as_ref(), positions.source_lag());
                    if r.is_none() {
                        break;
                    }
                }
            }
            Trigger::Every(interval) => {
                while !stop.asked() {
                    let tick = Instant::now();
                    let r = positions.next().await?;
                    looked(r.as_ref(), positions.source_lag());
                    stop.sleep(interval.saturating_sub(tick.elapsed())).await;
                }
            }
            Trigger::Continuous { poll } => {
                while !stop.asked() {
                    let r = positions.next().await?;
                    looked(r.as_ref(), positions.source_lag());
                    if r.is_none() {
                        stop.sleep(*poll).await;
                    }
                }
            }
            Trigger::Notified(_) => bail!(
                "a connector's stream is not started by object notifications; run it available-now, every N or continuously"
            ),
        }
        report.source_lag_bytes = positions.source_lag().map(|(_, bytes)| bytes);
        drop(positions);
        if let Some(c) = compact {
            c.finish().await;
        }
        Ok(report)
    }

    /// Opens the exactly-once runner on `config` — it first finishes a
    /// batch an earlier run left half-done, which counts — and runs its
    /// batches: COPY INTO lists once and loads everything new in one batch;
    /// a stream follows `trigger` until its backlog is done or `stop` is
    /// asked for.
    async fn run_incremental(
        &self,
        config: Config,
        trigger: &Trigger,
        observer: &mut dyn Observer,
        stop: &Stop,
        mut compact: Option<AutoCompact>,
    ) -> Result<RunReport> {
        let copy_into = matches!(config.kind, Kind::CopyInto { .. });
        let reader = Box::new(self.files_reader(&config)?);
        let mut report = RunReport::default();
        let mut on_batch = |r: &BatchReport| {
            observer.batch(r);
            report.add(r);
            if let Some(c) = compact.as_mut().filter(|_| r.version.is_some()) {
                c.committed();
            }
        };
        let mut runner = Runner::open(config, reader, &mut on_batch).await?;
        if copy_into {
            runner.list(&mut |_: &BatchReport| {}).await?;
            if let Some(r) = runner.next().await? {
                on_batch(&r);
            }
            report.skipped_files = runner.already_loaded;
        } else {
            run_trigger(&mut runner, trigger, stop, &mut on_batch).await?;
        }
        if let Some(c) = compact {
            c.finish().await;
        }
        Ok(report)
    }

    /// An incremental load's configuration: its source, format, checkpoint
    /// (where the load says, else by [`Load::checkpoint`]'s convention) and
    /// target.
    fn incremental(
        &self,
        load: &Load,
        kind: Kind,
        options: StreamOptions,
        target: Target,
    ) -> Result<Config> {
        let p = &load.pipeline;
        let format = match (p.format, options.format) {
            (Some(a), Some(b)) if a != b => {
                bail!("the format {a:?} and the format option {b:?} disagree")
            }
            (Some(f), _) | (None, Some(f)) => f,
            (None, None) => bail!("give the input format (csv, json or parquet)"),
        };
        let source = Source::parse(
            p.source.as_deref().context("the pipeline has no source")?,
            self.storage.clone(),
        )?;
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
        let checkpoint = load
            .checkpoint(target.location())?
            .context("this load keeps no checkpoint")?;
        let schema_location = match &options.schema_location {
            Some(l) => self.location(l)?,
            None => checkpoint.clone(),
        };
        Ok(Config {
            kind,
            source,
            only: None,
            format,
            options,
            target,
            checkpoint,
            schema_location,
            storage_options: self.storage.clone(),
            parallelism: self.parallelism,
            split_bytes: self.split_bytes,
            projection: load.projection.clone(),
        })
    }

    /// The files connector, as an incremental load's reader.
    fn files_reader(&self, config: &Config) -> Result<read::Reading> {
        config.files_reader(
            self.runtime.clone(),
            self.runtime.load_builtin(&builtin::FILES)?,
        )
    }

    /// The stream `pipeline`'s source would produce (its name and schema as
    /// a table would store it) and the input's size; nothing is written.
    pub async fn discover(&self, pipeline: &Pipeline) -> Result<(String, SchemaRef, u64)> {
        let load = Load::new(pipeline.clone());
        let job = self.discovery_job(&load, &self.redactor(pipeline)).await?;
        let (stream, bytes) = job.discover().await?;
        Ok((
            stream.info.name.clone(),
            crate::wasm::session::stored_schema(&stream.schema),
            bytes,
        ))
    }

    /// Checks that `load`'s connector keeps the contract, call by call
    /// (`sluice connector test`); nothing is written.
    pub async fn test_connector(&self, load: &Load) -> Result<conformance::Conformance> {
        let job = self
            .discovery_job(load, &self.redactor(&load.pipeline))
            .await?;
        let (_, reading) = job.plan().await?;
        conformance::run(&reading).await
    }

    /// The built-in connectors, described as uploaded ones are.
    pub async fn builtin_connectors(&self) -> Result<Vec<ConnectorInfo>> {
        let mut out = Vec::new();
        for b in builtin::all() {
            let loaded = self
                .runtime
                .load_builtin(b)
                .with_context(|| format!("loading built-in connector '{}'", b.name))?;
            let mut info =
                crate::wasm::connectors::describe(&self.runtime, &loaded, b.wasm.len() as u64)
                    .await?;
            info.name = b.name.to_string();
            out.push(info);
        }
        Ok(out)
    }

    /// The schema an uploaded file would get and its first `limit` rows,
    /// as JSON objects; nothing is written.
    pub async fn preview(
        &self,
        file: &UploadedFile,
        limit: usize,
    ) -> Result<(SchemaRef, Vec<serde_json::Value>)> {
        // Never written: preview reads only, in one lane.
        let target = Target::new(
            self.location(&file.source)?,
            TableFormat::Delta,
            self.write.clone(),
        );
        let mut job = self
            .job(
                &Load::new(file.pipeline(&file.source)),
                target,
                &Redactor::default(),
            )
            .await?;
        job.parallelism = 1;
        job.split_bytes = 0;
        let (stream, batches) = job.preview(limit).await?;
        // What an upload would load: its columns (renamed, cast), without
        // `_metadata` unless selected.
        let select = file.projection();
        let sent = select.schema(&stream.schema)?;
        let batches = batches
            .iter()
            .map(|b| select.apply(b, &select.schema(b.schema_ref())?))
            .collect::<sluice_pipeline::Result<Vec<_>>>()?;
        // As the table would store it (types Delta lacks widened).
        let schema =
            sluice_sink::storable::delta_schema(&crate::wasm::session::stored_schema(&sent))?;
        Ok((Arc::new(schema), json_rows(&batches, limit)?))
    }
}

/// Runs `runner`'s batches as `trigger` says until the backlog is done
/// (available-now, notified) or `stop` is asked for.
async fn run_trigger(
    runner: &mut Runner,
    trigger: &Trigger,
    stop: &Stop,
    on_batch: &mut impl FnMut(&BatchReport),
) -> Result<()> {
    match trigger {
        Trigger::AvailableNow | Trigger::Notified(_) => {
            // One look: what is there when the run starts.
            match trigger {
                Trigger::Notified(objects) => runner.notified(objects, on_batch).await?,
                _ => runner.list(on_batch).await?,
            };
            while !stop.asked() {
                let Some(r) = runner.next().await? else { break };
                on_batch(&r);
                runner.clean_source().await?;
            }
        }
        Trigger::Every(interval) => {
            while !stop.asked() {
                let tick = Instant::now();
                runner.list(on_batch).await?;
                if let Some(r) = runner.next().await? {
                    on_batch(&r);
                }
                runner.clean_source().await?;
                stop.sleep(interval.saturating_sub(tick.elapsed())).await;
            }
        }
        Trigger::Continuous { poll } => {
            while !stop.asked() {
                if runner.backlog() == 0 {
                    runner.list(on_batch).await?;
                }
                match runner.next().await? {
                    Some(r) => {
                        on_batch(&r);
                        runner.clean_source().await?;
                    }
                    None => {
                        runner.clean_source().await?;
                        stop.sleep(*poll).await;
                    }
                }
            }
        }
    }
    Ok(())
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
fn copy_into_kind(copy_options: &BTreeMap<String, String>) -> Result<Kind> {
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
fn check_copy_format_options(options: &BTreeMap<String, String>) -> Result<()> {
    if let Some(k) = options
        .keys()
        .find(|k| STREAM_ONLY.contains(&k.trim_start_matches("cloudFiles.")))
    {
        bail!("'{k}' is an Auto Loader stream option, not a COPY INTO format option");
    }
    Ok(())
}
