//! Reading a connector's stream into data files of a table, in parallel
//! lanes, without committing: what batch and incremental runs share.
//!
//! Each lane is a connector instance on its own blocking thread, feeding a
//! bounded channel that a writer task drains into its own sink lane: the
//! connector parses while the sink encodes, and memory stays bounded by the
//! channel depth whatever the input size.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use sluice_pipeline::{FileRef, Projection};
use sluice_sink::{Target, Written};
use tokio::sync::mpsc;

use crate::engine::redact::Redactor;
use crate::engine::split;
use crate::wasm::capability::{Counters, HostState};
use crate::wasm::grants::Grants;
use crate::wasm::runtime::{Loaded, Runtime};
use crate::wasm::session::{Session, Stream, stored_schema, to_stored};
use sluice_files_contract::{Config as FilesConfig, RangeReport};

/// Batches in flight per lane between connector and sink.
const CHANNEL_DEPTH: usize = 2;

/// A connector, its capabilities and configuration: everything needed to
/// discover and read a stream.
#[derive(Clone)]
pub struct Reading {
    /// The runtime.
    pub runtime: Runtime,
    /// The connector.
    pub connector: Loaded,
    /// What it may access.
    pub grants: Grants,
    /// Its configuration.
    pub config: Configured,
    /// The stream to read; the first one when `None`.
    pub stream: Option<String>,
    /// The state `read` starts from: for a connector that plans its
    /// batches, the plan of the batch to read.
    pub state: Option<String>,
    /// Parallel lanes.
    pub parallelism: usize,
    /// Large plain CSV / NDJSON files are read in byte ranges of about this
    /// size, in parallel; 0 never splits.
    pub split_bytes: u64,
    /// Object-store options for sources.
    pub storage_options: HashMap<String, String>,
    /// Counters the run accumulates (the progress bar reads `bytes_read`).
    pub counters: Arc<Counters>,
    /// The select list applied to every batch, if any.
    pub projection: Option<Arc<Projection>>,
    /// Redacts the secrets the connector was given from its log lines.
    pub redactor: Redactor,
}

/// A connector instance [`Reading::held`] keeps until this is dropped.
pub struct Held {
    /// Dropped, it ends the instance's wait.
    _release: std::sync::mpsc::Sender<()>,
}

/// What a connector is configured with.
#[derive(Clone)]
pub enum Configured {
    /// The built-in files connector: its format and reader options (which
    /// also decide whether large files may be read in byte ranges); the
    /// files and the schema are set per call.
    Files(FilesConfig),
    /// Any other connector: its own config, to which the schema to read
    /// with is added as `schema`.
    Connector(serde_json::Value),
}

impl Configured {
    /// The config text for a call that reads `files` (the files
    /// connector's) with `schema`, if given.
    pub(crate) fn text(&self, files: &[FileRef], schema: Option<&SchemaRef>) -> Result<String> {
        Ok(match self {
            Configured::Files(c) => serde_json::to_string(&FilesConfig {
                files: files.to_vec(),
                schema: schema.map(|s| s.as_ref().clone()),
                ..c.clone()
            })?,
            Configured::Connector(config) => {
                let mut config = config.clone();
                if let Some(schema) = schema {
                    config["schema"] = serde_json::to_value(schema.as_ref())?;
                }
                config.to_string()
            }
        })
    }
}

/// What a read wrote.
#[derive(Debug, Default)]
pub struct Wrote {
    /// Data files, per lane.
    pub written: Vec<Written>,
    /// Time spent in connector calls (parsing, encoding IPC), summed over
    /// lanes.
    pub connector_time: Duration,
    /// CPU time of those calls (their threads' own; zero where the system
    /// does not say): what the calls cost, whatever else ran beside them.
    pub connector_cpu: Duration,
    /// CPU time spent decoding IPC on the host, summed over lanes.
    pub decode_cpu: Duration,
}

impl Reading {
    /// The configuration text calls other than a files read get.
    pub fn config_text(&self) -> Result<String> {
        self.config.text(&[], None)
    }

    /// Runs `call` on a new instance of the connector, on a blocking
    /// thread: the calls around a read (a plan, the latest position).
    pub async fn call<T: Send + 'static>(
        &self,
        what: &str,
        call: impl FnOnce(&mut Session) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (runtime, loaded, host) = (
            self.runtime.clone(),
            self.connector.clone(),
            self.host(what),
        );
        tokio::task::spawn_blocking(move || call(&mut Session::new(&runtime, &loaded, host)?))
            .await?
    }

    /// Runs `call` on a new instance of the connector, as [`Reading::call`]
    /// does, and keeps the instance until the [`Held`] it returns is
    /// dropped: the one that split a batch, which the parts may need until
    /// their readers are open.
    pub async fn held<T: Send + 'static>(
        &self,
        what: &str,
        call: impl FnOnce(&mut Session) -> Result<T> + Send + 'static,
    ) -> Result<(T, Held)> {
        let (runtime, loaded, host) = (
            self.runtime.clone(),
            self.connector.clone(),
            self.host(what),
        );
        let (done, result) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let mut session = match Session::new(&runtime, &loaded, host) {
                Ok(s) => s,
                Err(e) => {
                    let _ = done.send(Err(e));
                    return;
                }
            };
            let out = call(&mut session);
            let keep = out.is_ok();
            let _ = done.send(out);
            if keep {
                // Until the `Held` is dropped.
                let _ = released.recv();
            }
        });
        let out = result
            .await
            .context("the connector's instance ended before it answered")??;
        Ok((out, Held { _release: release }))
    }

    pub(crate) fn host(&self, name: &str) -> HostState {
        HostState::new(
            name,
            self.grants.clone(),
            tokio::runtime::Handle::current(),
            self.counters.clone(),
        )
        .redacting(self.redactor.clone())
    }

    /// The schema `target` gets from `stream`: the stored schema, through
    /// the select list, as the table's format stores it (checked before
    /// any data file is written).
    pub fn table_schema(&self, stream: &Stream, target: &Target) -> Result<SchemaRef> {
        let stored = stored_schema(&stream.schema);
        let selected = match &self.projection {
            Some(p) => p.schema(&stored)?,
            None => stored,
        };
        Ok(target.storable(&selected)?)
    }

    /// Checks the configuration and discovers the stream (for the files
    /// connector: the schema of `files`, or `schema` when given).
    pub async fn discover(&self, files: &[FileRef]) -> Result<Stream> {
        let streams = self.streams(files).await?;
        match &self.stream {
            Some(name) => streams
                .into_iter()
                .find(|s| &s.info.name == name)
                .ok_or_else(|| anyhow!("the connector offers no stream named '{name}'")),
            None => streams
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("the connector offers no streams")),
        }
    }

    /// Checks the configuration and discovers every stream the connector
    /// offers.
    pub async fn streams(&self, files: &[FileRef]) -> Result<Vec<Stream>> {
        let text = self.config.text(files, None)?;
        let (runtime, loaded, host) = (
            self.runtime.clone(),
            self.connector.clone(),
            self.host("discover"),
        );
        let streams = tokio::task::spawn_blocking(move || -> Result<Vec<Stream>> {
            let mut session = Session::new(&runtime, &loaded, host)?;
            session.check(&text)?;
            session.discover(&text)
        })
        .await??;
        Ok(streams)
    }

    /// Reads the first `limit` rows of `files` as `stream`, one connector
    /// instance, nothing written: an upload's preview.
    pub async fn preview(
        &self,
        files: &[FileRef],
        stream: &Stream,
        limit: usize,
    ) -> Result<Vec<RecordBatch>> {
        let text = self.config.text(files, Some(&stream.schema))?;
        let (runtime, loaded, host) = (
            self.runtime.clone(),
            self.connector.clone(),
            self.host("preview"),
        );
        let name = stream.info.name.clone();
        let stored = stored_schema(&stream.schema);
        tokio::task::spawn_blocking(move || -> Result<Vec<RecordBatch>> {
            let mut session = Session::new(&runtime, &loaded, host)?;
            let reader = session.read(&text, &name, None)?;
            let mut out = Vec::new();
            let mut rows = 0;
            while rows < limit {
                let Some((payload, _)) = session.next(reader)? else {
                    break;
                };
                for batch in payload.batches()? {
                    let take = batch.num_rows().min(limit - rows);
                    rows += take;
                    out.push(to_stored(&batch.slice(0, take), &stored)?);
                }
            }
            session.close(reader)?;
            Ok(out)
        })
        .await?
    }

    /// Reads `files` (ignored by other connectors) as `stream` and writes
    /// them into data files of `target`. Nothing is committed; an error in
    /// any lane fails the whole read.
    pub async fn write(
        &self,
        files: &[FileRef],
        stream: &Stream,
        target: &Target,
    ) -> Result<Wrote> {
        self.write_lanes(files, &[], stream, target).await
    }

    /// Reads the parts of a planned batch (`splitter.split`'s), all at
    /// once, each in its own lane with the part as its state, and writes
    /// them into data files of `target`, as [`Reading::write`] does.
    pub async fn write_parts(
        &self,
        parts: &[String],
        stream: &Stream,
        target: &Target,
    ) -> Result<Wrote> {
        self.write_lanes(&[], parts, stream, target).await
    }

    async fn write_lanes(
        &self,
        files: &[FileRef],
        parts: &[String],
        stream: &Stream,
        target: &Target,
    ) -> Result<Wrote> {
        let stored = stored_schema(&stream.schema);
        let table_schema = self.table_schema(stream, target)?;

        // Work units (files, or byte ranges of large files), spread across
        // lanes largest first onto the least-loaded lane.
        let lanes_wanted = self.parallelism.max(1);
        let units: Vec<FileRef> = match &self.config {
            Configured::Files(c) => {
                split::units(
                    files,
                    c.format,
                    &c.options,
                    self.split_bytes,
                    lanes_wanted,
                    &self.storage_options,
                )
                .await?
            }
            Configured::Connector(_) => vec![],
        };
        // A connector's lanes: one per part (all must open at once), or
        // one reading the whole batch.
        let states: Vec<Option<String>> = if parts.is_empty() {
            vec![self.state.clone()]
        } else {
            parts.iter().cloned().map(Some).collect()
        };
        let lanes = if !units.is_empty() {
            lanes_wanted.min(units.len())
        } else {
            states.len()
        };
        let mut groups: Vec<(u64, Vec<FileRef>)> = vec![(0, Vec::new()); lanes];
        let mut by_size = units.clone();
        by_size.sort_by_key(|u| std::cmp::Reverse(u.bytes()));
        for u in by_size {
            if let Some(g) = groups.iter_mut().min_by_key(|g| g.0) {
                g.0 += u.bytes();
                g.1.push(u);
            }
        }
        for g in &mut groups {
            g.1.sort_by(|a, b| (&a.location, a.range).cmp(&(&b.location, b.range)));
        }

        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for (i, (_, lane_units)) in groups.into_iter().enumerate() {
            let lane_config = self.config.text(&lane_units, Some(&stream.schema))?;
            let state = states.get(i).cloned().unwrap_or_else(|| self.state.clone());
            let (tx, rx) = mpsc::channel::<RecordBatch>(CHANNEL_DEPTH);
            let host = self.host(&format!("lane {i}"));
            let (runtime, loaded) = (self.runtime.clone(), self.connector.clone());
            let (name, sent, stored, table) = (
                stream.info.name.clone(),
                stream.schema.clone(),
                stored.clone(),
                table_schema.clone(),
            );
            let projection = match &self.projection {
                Some(p) => Some((p.clone(), p.schema(&stored)?)),
                None => None,
            };
            readers.push(tokio::task::spawn_blocking(move || {
                read_lane(
                    &runtime,
                    &loaded,
                    host,
                    ReadCall {
                        config: &lane_config,
                        stream: &name,
                        state: state.as_deref(),
                    },
                    Shapes {
                        sent: &sent,
                        stored: &stored,
                        projection: projection.as_ref(),
                        table: &table,
                    },
                    tx,
                )
            }));
            let lane = target.lane(table_schema.clone())?;
            writers.push(tokio::spawn(write_lane(lane, rx)));
        }

        let mut first_error: Option<anyhow::Error> = None;
        let mut wrote = Wrote::default();
        let mut reports = Vec::new();
        for r in readers {
            match r.await.map_err(anyhow::Error::from).and_then(|r| r) {
                Ok(lane) => {
                    wrote.connector_time += lane.in_connector;
                    wrote.connector_cpu += lane.connector_cpu;
                    wrote.decode_cpu += lane.decode_cpu;
                    reports.extend(lane.reports);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        for w in writers {
            match w.await.map_err(anyhow::Error::from).and_then(|r| r) {
                Ok(w) => wrote.written.push(w),
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
        match first_error {
            Some(e) => Err(e),
            None => Ok(wrote),
        }
    }
}

/// What a lane's reader did.
struct LaneOutcome {
    /// Time in connector calls (parsing, IPC encoding).
    in_connector: Duration,
    /// This thread's CPU time in them.
    connector_cpu: Duration,
    /// This thread's CPU time decoding IPC.
    decode_cpu: Duration,
    /// End-of-range reports, for [`split::verify`].
    reports: Vec<RangeReport>,
}

/// The shapes a batch takes on its way to the table.
struct Shapes<'a> {
    /// As the connector discovered it.
    sent: &'a SchemaRef,
    /// With dictionary columns expanded.
    stored: &'a SchemaRef,
    /// Through the select list, with the schema it gives.
    projection: Option<&'a (Arc<Projection>, SchemaRef)>,
    /// As the table stores it (types its format lacks widened).
    table: &'a SchemaRef,
}

/// What a lane's `read` call is given.
struct ReadCall<'a> {
    /// The config text.
    config: &'a str,
    /// The stream.
    stream: &'a str,
    /// The state to start from (a planned batch).
    state: Option<&'a str>,
}

/// Reads one lane's stream, sending batches to the writer.
fn read_lane(
    runtime: &Runtime,
    loaded: &Loaded,
    host: HostState,
    call: ReadCall<'_>,
    shapes: Shapes<'_>,
    tx: mpsc::Sender<RecordBatch>,
) -> Result<LaneOutcome> {
    let schema = shapes.sent;
    let mut session = Session::new(runtime, loaded, host)?;
    let reader = session.read(call.config, call.stream, call.state)?;
    let mut out = LaneOutcome {
        in_connector: Duration::ZERO,
        connector_cpu: Duration::ZERO,
        decode_cpu: Duration::ZERO,
        reports: Vec::new(),
    };
    loop {
        let (t, cpu) = (Instant::now(), thread_cpu());
        let next = session.next(reader)?;
        out.in_connector += t.elapsed();
        out.connector_cpu += thread_cpu().saturating_sub(cpu);
        let Some((payload, checkpoint)) = next else {
            break;
        };
        if let Some(report) = checkpoint
            .as_deref()
            .and_then(|c| serde_json::from_str::<RangeReport>(c).ok())
        {
            out.reports.push(report);
        }
        let cpu = thread_cpu();
        let batches = payload.batches()?;
        out.decode_cpu += thread_cpu().saturating_sub(cpu);
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
            let mut batch = to_stored(&batch, shapes.stored)?;
            if let Some((p, schema)) = shapes.projection {
                batch = p.apply(&batch, schema)?;
            }
            if batch.schema_ref().fields() != shapes.table.fields() {
                batch = to_stored(&batch, shapes.table)?;
            }
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

/// The CPU time the calling thread has run (`CLOCK_THREAD_CPUTIME_ID`,
/// exact to the call); zero where the system does not say.
#[cfg(target_os = "linux")]
#[expect(
    unsafe_code,
    reason = "clock_gettime writes the time it reads into a local"
)]
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the call's duration.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu() -> Duration {
    Duration::ZERO
}
