//! The batch ingest job: plan files, discover the schema, read in parallel
//! lanes ([`crate::engine::read`]), and commit once. Nothing is committed unless
//! every lane finished cleanly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sluice_pipeline::{FileRef, Format, Projection, Source, plan_files};
use sluice_sink::{Committed, Target, WriteMode};

use crate::engine::read::{Configured, Reading};
use crate::engine::redact::Redactor;
use crate::wasm::capability::Counters;
use crate::wasm::grants::Grants;
use crate::wasm::outbound::AllowList;
use crate::wasm::runtime::{Loaded, Runtime};
use crate::wasm::session::Stream;
use sluice_files_contract::Config as FilesConfig;

/// What to read.
#[derive(Debug, Clone)]
pub enum Input {
    /// Files, through the built-in files connector.
    Files {
        /// A file, directory or glob.
        source: String,
        /// Input format.
        format: Format,
        /// Reader options.
        options: std::collections::BTreeMap<String, String>,
    },
    /// Any connector, with its own config and explicit grants.
    Connector {
        /// The connector's config JSON.
        config: String,
        /// The stream to read; the first one when `None`.
        stream: Option<String>,
        /// URL prefixes the connector may read.
        grants: Vec<String>,
        /// Hosts it may connect to (`grants.network`).
        network: Vec<String>,
        /// TLS settings for those connections (`None`: the public roots).
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

/// A run's outcome.
#[derive(Debug)]
pub struct Summary {
    /// Input files.
    pub files: usize,
    /// Input bytes.
    pub input_bytes: u64,
    /// What the commit added.
    pub committed: Committed,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Counters components reported (`rows-dropped`, ...).
    pub counters: Vec<(String, u64)>,
    /// Time spent in connector calls (parsing, encoding IPC), summed over lanes.
    pub connector_time: Duration,
    /// CPU time of those calls, summed over lanes.
    pub connector_cpu: Duration,
    /// CPU time spent decoding IPC on the host, summed over lanes.
    pub decode_cpu: Duration,
}

/// Everything a run needs.
pub struct Job {
    /// The runtime.
    pub runtime: Runtime,
    /// The connector.
    pub connector: Loaded,
    /// What to read.
    pub input: Input,
    /// Where to write.
    pub target: Target,
    /// Overwrite or append.
    pub mode: WriteMode,
    /// Parallel lanes.
    pub parallelism: usize,
    /// Large plain CSV / NDJSON files are read in byte ranges of about this
    /// size, in parallel; 0 never splits.
    pub split_bytes: u64,
    /// Object-store options for sources.
    pub storage_options: HashMap<String, String>,
    /// Shared counters (the progress bar reads `bytes_read`).
    pub counters: Arc<Counters>,
    /// The select list, if any (`CREATE TABLE ... AS SELECT`).
    pub projection: Option<Projection>,
    /// Redacts the secrets the connector was given from its log lines.
    pub redactor: Redactor,
}

impl Job {
    /// Plans the input: the files to read and how to read them.
    pub(crate) async fn plan(&self) -> Result<(Vec<FileRef>, Reading)> {
        let reading = |grants, config, stream| Reading {
            runtime: self.runtime.clone(),
            connector: self.connector.clone(),
            grants,
            config,
            stream,
            state: None,
            parallelism: self.parallelism,
            split_bytes: self.split_bytes,
            storage_options: self.storage_options.clone(),
            counters: self.counters.clone(),
            projection: self.projection.clone().map(Arc::new),
            redactor: self.redactor.clone(),
        };
        match &self.input {
            Input::Files {
                source,
                format,
                options,
            } => {
                let src = Source::parse(source, self.storage_options.clone())?;
                let files = plan_files(&src).await?;
                let grants = Grants::new(&[src.grant()], self.storage_options.clone())?;
                let config = Configured::Files(FilesConfig {
                    options: options.clone(),
                    ..FilesConfig::new(*format)
                });
                Ok((files, reading(grants, config, Some("files".into()))))
            }
            Input::Connector {
                config,
                stream,
                grants,
                network,
                tls,
            } => {
                let config = serde_json::from_str(config).context("--config must be JSON")?;
                let grants = Grants::new(grants, self.storage_options.clone())?
                    .with_network(AllowList::network(network)?, tls.clone());
                Ok((
                    vec![],
                    reading(grants, Configured::Connector(config), stream.clone()),
                ))
            }
        }
    }

    /// The stream the run would read, and the total input size.
    pub async fn discover(&self) -> Result<(Stream, u64)> {
        let (files, reading) = self.plan().await?;
        let bytes = files.iter().map(|f| f.size).sum();
        Ok((reading.discover(&files).await?, bytes))
    }

    /// The stream's schema and its first `limit` rows; nothing is written.
    pub async fn preview(&self, limit: usize) -> Result<(Stream, Vec<arrow_array::RecordBatch>)> {
        let (files, reading) = self.plan().await?;
        let stream = reading.discover(&files).await?;
        let batches = reading.preview(&files, &stream, limit).await?;
        Ok((stream, batches))
    }

    /// Runs the job: nothing is committed unless every lane succeeds.
    pub async fn run(self, on_planned: impl FnOnce(u64)) -> Result<Summary> {
        let started = Instant::now();
        let (files, reading) = self.plan().await?;
        let input_bytes: u64 = files.iter().map(|f| f.size).sum();
        on_planned(input_bytes);
        let stream = reading.discover(&files).await?;
        let wrote = reading
            .write(&files, &stream, &self.target)
            .await
            .map_err(|e| e.context("nothing was committed"))?;
        let committed = self
            .target
            .commit(
                &*reading.table_schema(&stream, &self.target)?,
                wrote.written,
                self.mode,
                None,
            )
            .await
            .context("committing the table")?;
        Ok(Summary {
            files: files.len(),
            input_bytes,
            committed,
            elapsed: started.elapsed(),
            counters: self.counters.snapshot(),
            connector_time: wrote.connector_time,
            connector_cpu: wrote.connector_cpu,
            decode_cpu: wrote.decode_cpu,
        })
    }
}
