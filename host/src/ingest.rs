//! The batch ingest job: plan files, discover the schema, read in parallel
//! lanes, write, and commit once.
//!
//! Each lane is a connector instance on its own blocking thread, feeding a
//! bounded channel that a writer task drains into its own sink lane: the
//! connector parses while the sink encodes, and memory stays bounded by the
//! channel depth whatever the input size. Nothing is committed unless every
//! lane finished cleanly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde_json::json;
use sluice_pipeline::{FileRef, Format, Source, plan_files};
use sluice_sink::{Committed, Target, WriteMode, Written};
use tokio::sync::mpsc;

use crate::capability::{Counters, HostState};
use crate::grants::Grants;
use crate::runtime::{Loaded, Runtime};
use crate::session::{Session, Stream, decode, stored_schema, to_stored};
use crate::split::{self, RangeReport, Unit};

/// Batches in flight per lane between connector and sink.
const CHANNEL_DEPTH: usize = 2;

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
    /// Time spent decoding IPC on the host, summed over lanes.
    pub decode_time: Duration,
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
}

/// Resolved input: config per lane and grants.
struct Plan {
    files: Vec<FileRef>,
    base_config: serde_json::Value,
    grants: Grants,
    stream: Option<String>,
}

impl Job {
    /// Plans the input: the files and the connector config.
    async fn plan(&self) -> Result<Plan> {
        match &self.input {
            Input::Files {
                source,
                format,
                options,
            } => {
                let src = Source::parse(source, self.storage_options.clone())?;
                let files = plan_files(&src).await?;
                let grants = Grants::new(&[src.grant()], self.storage_options.clone())?;
                Ok(Plan {
                    base_config: json!({ "format": format, "options": options }),
                    files,
                    grants,
                    stream: Some("files".into()),
                })
            }
            Input::Connector {
                config,
                stream,
                grants,
            } => Ok(Plan {
                files: vec![],
                base_config: serde_json::from_str(config).context("--config must be JSON")?,
                grants: Grants::new(grants, self.storage_options.clone())?,
                stream: stream.clone(),
            }),
        }
    }

    fn host(&self, plan: &Plan, name: &str) -> HostState {
        HostState::new(
            name,
            plan.grants.clone(),
            tokio::runtime::Handle::current(),
            self.counters.clone(),
        )
    }

    /// The total input size, once planned (for progress).
    pub async fn discover(&self) -> Result<(Stream, u64)> {
        let plan = self.plan().await?;
        let bytes = plan.files.iter().map(|f| f.size).sum();
        let (stream, _) = self.discover_planned(&plan).await?;
        Ok((stream, bytes))
    }

    async fn discover_planned(&self, plan: &Plan) -> Result<(Stream, serde_json::Value)> {
        let mut config = plan.base_config.clone();
        if !plan.files.is_empty() {
            config["files"] = serde_json::to_value(&plan.files)?;
        }
        let text = config.to_string();
        let (runtime, loaded, host) = (
            self.runtime.clone(),
            self.connector.clone(),
            self.host(plan, "discover"),
        );
        let wanted = plan.stream.clone();
        let streams = tokio::task::spawn_blocking(move || -> Result<Vec<Stream>> {
            let mut session = Session::new(&runtime, &loaded, host)?;
            session.check(&text)?;
            session.discover(&text)
        })
        .await??;
        let stream = match wanted {
            Some(name) => streams
                .into_iter()
                .find(|s| s.info.name == name)
                .ok_or_else(|| anyhow!("the connector offers no stream named '{name}'"))?,
            None => streams
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("the connector offers no streams"))?,
        };
        Ok((stream, config))
    }

    /// Runs the job: nothing is committed unless every lane succeeds.
    pub async fn run(self, on_planned: impl FnOnce(u64)) -> Result<Summary> {
        let started = Instant::now();
        let plan = self.plan().await?;
        let input_bytes: u64 = plan.files.iter().map(|f| f.size).sum();
        on_planned(input_bytes);
        let (stream, mut config) = self.discover_planned(&plan).await?;
        config["schema"] = serde_json::to_value(stream.schema.as_ref())?;
        let table_schema = stored_schema(&stream.schema);

        // Work units (files, or byte ranges of large files), spread across
        // lanes largest first onto the least-loaded lane.
        let lanes_wanted = self.parallelism.max(1);
        let units: Vec<Unit> = match &self.input {
            Input::Files {
                format, options, ..
            } => {
                split::units(
                    &plan.files,
                    *format,
                    options,
                    self.split_bytes,
                    lanes_wanted,
                    &self.storage_options,
                )
                .await?
            }
            Input::Connector { .. } => vec![],
        };
        let lanes = if units.is_empty() {
            1
        } else {
            lanes_wanted.min(units.len())
        };
        let mut groups: Vec<(u64, Vec<Unit>)> = vec![(0, Vec::new()); lanes];
        let mut by_size = units.clone();
        by_size.sort_by_key(|u| std::cmp::Reverse(u.bytes()));
        for u in by_size {
            if let Some(g) = groups.iter_mut().min_by_key(|g| g.0) {
                g.0 += u.bytes();
                g.1.push(u);
            }
        }
        for g in &mut groups {
            g.1.sort_by(|a, b| (&a.file.location, a.range).cmp(&(&b.file.location, b.range)));
        }

        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for (i, (_, files)) in groups.into_iter().enumerate() {
            let mut lane_config = config.clone();
            if !plan.files.is_empty() {
                lane_config["files"] = serde_json::to_value(&files)?;
            }
            let (tx, rx) = mpsc::channel::<RecordBatch>(CHANNEL_DEPTH);
            let host = self.host(&plan, &format!("lane {i}"));
            let (runtime, loaded) = (self.runtime.clone(), self.connector.clone());
            let (name, sent, stored) = (
                stream.info.name.clone(),
                stream.schema.clone(),
                table_schema.clone(),
            );
            readers.push(tokio::task::spawn_blocking(move || {
                read_lane(
                    &runtime,
                    &loaded,
                    host,
                    &lane_config.to_string(),
                    &name,
                    (&sent, &stored),
                    tx,
                )
            }));
            let lane = self.target.lane(table_schema.clone())?;
            writers.push(tokio::spawn(write_lane(lane, rx)));
        }

        let mut first_error: Option<anyhow::Error> = None;
        let (mut connector_time, mut decode_time) = (Duration::ZERO, Duration::ZERO);
        let mut reports = Vec::new();
        for r in readers {
            match r.await.map_err(anyhow::Error::from).and_then(|r| r) {
                Ok(lane) => {
                    connector_time += lane.in_connector;
                    decode_time += lane.decoding;
                    reports.extend(lane.reports);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let mut written: Vec<Written> = Vec::new();
        for w in writers {
            match w.await.map_err(anyhow::Error::from).and_then(|r| r) {
                Ok(w) => written.push(w),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if first_error.is_none()
            && let Err(e) = split::verify(&units, &reports)
        {
            first_error = Some(e);
        }
        if let Some(e) = first_error {
            return Err(e.context("nothing was committed"));
        }
        let committed = self
            .target
            .commit(&table_schema, written, self.mode, None)
            .await
            .context("committing the table")?;
        let counters = self
            .counters
            .named
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        Ok(Summary {
            files: plan.files.len(),
            input_bytes,
            committed,
            elapsed: started.elapsed(),
            counters,
            connector_time,
            decode_time,
        })
    }
}

/// What a lane's reader did.
struct LaneOutcome {
    /// Time in connector calls (parsing, IPC encoding).
    in_connector: Duration,
    /// Time decoding IPC on the host.
    decoding: Duration,
    /// End-of-range reports, for [`split::verify`].
    reports: Vec<RangeReport>,
}

/// Reads one lane's stream, sending batches to the writer: `schemas` are
/// the one the connector discovered and the one the table stores.
fn read_lane(
    runtime: &Runtime,
    loaded: &Loaded,
    host: HostState,
    config: &str,
    stream: &str,
    (schema, stored): (&SchemaRef, &SchemaRef),
    tx: mpsc::Sender<RecordBatch>,
) -> Result<LaneOutcome> {
    let mut session = Session::new(runtime, loaded, host)?;
    let reader = session.read(config, stream, None)?;
    let mut out = LaneOutcome {
        in_connector: Duration::ZERO,
        decoding: Duration::ZERO,
        reports: Vec::new(),
    };
    loop {
        let t = Instant::now();
        let next = session.next_ipc(reader)?;
        out.in_connector += t.elapsed();
        let Some((ipc, checkpoint)) = next else {
            break;
        };
        if let Some(report) = checkpoint
            .as_deref()
            .and_then(|c| serde_json::from_str::<RangeReport>(c).ok())
        {
            out.reports.push(report);
        }
        let t = Instant::now();
        let batches = decode(&ipc)?;
        out.decoding += t.elapsed();
        for batch in batches {
            if batch.schema_ref().fields() != schema.fields() {
                bail!(
                    "the connector sent a batch whose schema differs from the one it discovered:\n  discovered: {schema:?}\n  sent: {:?}",
                    batch.schema()
                );
            }
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = to_stored(&batch, stored)?;
            if tx.blocking_send(batch).is_err() {
                // The writer failed; its error is the one to report.
                session.close(reader)?;
                return Ok(out);
            }
        }
    }
    session.close(reader)?;
    Ok(out)
}

async fn write_lane(
    mut lane: sluice_sink::Lane,
    mut rx: mpsc::Receiver<RecordBatch>,
) -> Result<Written> {
    while let Some(batch) = rx.recv().await {
        lane.write(batch).await.context("writing data files")?;
    }
    Ok(lane.finish().await?)
}
