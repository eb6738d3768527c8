//! The event log: every audit entry and every finished run, as rows of a
//! Delta table under `<state>/event_log` that any reader can query, and
//! the newest as JSON (`GET /events`).
//!
//! Events are buffered and committed together, at most a second apart (or
//! every [`FLUSH_ROWS`] events), so a burst of requests makes a few commits
//! rather than one per request; a graceful shutdown commits what is
//! buffered. The per-entry JSON objects of the audit log and the run
//! records stay the record of truth; this table can miss events (a crash
//! loses at most the last second of them, a failed commit its batch, and a
//! writer more than 16,000 events behind the newest ones), each logged,
//! never those records.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::engine::Engine;
use sluice_pipeline::LoadMode;

/// Events committed at once, at most.
const FLUSH_ROWS: usize = 1000;
/// Events kept in memory for `GET /events`.
const RECENT: usize = 1000;

/// One event.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Event {
    /// When, RFC 3339 (UTC).
    pub time: String,
    /// `audit` or `run`.
    pub kind: String,
    /// The token's name.
    pub principal: String,
    /// `table.upload`, `pipeline.run`, ... or, for a run, its trigger.
    pub action: String,
    /// The table, pipeline, volume or connector.
    pub target: String,
    /// `ok`, `succeeded`, `failed`, or the refusal.
    pub outcome: String,
    /// The run's id (runs only).
    pub run_id: Option<String>,
    /// Rows committed (runs only).
    pub rows: Option<i64>,
    /// Files read (runs only).
    pub files: Option<i64>,
    /// Input bytes (runs only).
    pub bytes: Option<i64>,
    /// Table version committed (runs only).
    pub version: Option<i64>,
    /// Wall-clock seconds (runs only).
    pub seconds: Option<f64>,
    /// Details, as JSON text; never a secret's value.
    pub detail: String,
}

fn schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let i = |n: &str| Field::new(n, DataType::Int64, true);
    Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        s("kind"),
        s("principal"),
        s("action"),
        s("target"),
        s("outcome"),
        s("run_id"),
        i("rows"),
        i("files"),
        i("bytes"),
        i("version"),
        Field::new("seconds", DataType::Float64, true),
        s("detail"),
    ]))
}

/// Where events go.
#[derive(Clone)]
pub struct EventLog {
    tx: mpsc::Sender<Event>,
    recent: Arc<Mutex<VecDeque<Event>>>,
}

/// The task that commits events.
pub struct Writer {
    rx: mpsc::Receiver<Event>,
    table: String,
}

impl EventLog {
    /// An event log committing to the Delta table at `table`.
    pub fn new(table: String) -> (EventLog, Writer) {
        let (tx, rx) = mpsc::channel(16 * FLUSH_ROWS);
        (
            EventLog {
                tx,
                recent: Arc::new(Mutex::new(VecDeque::new())),
            },
            Writer { rx, table },
        )
    }

    /// Records `event` (stamped now).
    pub async fn emit(&self, mut event: Event) {
        event.time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        // Never waits: a slow or failing commit of the event log must not
        // hold up the request or run that emits the event.
        if let Err(e) = self.tx.try_send(event) {
            tracing::warn!("an event was not committed to the event log: {e}");
        }
    }

    /// The newest `limit` events, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Event> {
        self.recent
            .lock()
            .map(|r| {
                r.iter()
                    .skip(r.len().saturating_sub(limit))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Writer {
    /// Commits events as they come, until `stop` fires; then commits what
    /// is buffered and returns.
    pub async fn run(mut self, engine: Engine, mut stop: oneshot::Receiver<()>) {
        let mut buffer = Vec::new();
        let mut stopping = false;
        while !stopping {
            let deadline = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    e = self.rx.recv() => match e {
                        Some(e) => {
                            buffer.push(e);
                            if buffer.len() >= FLUSH_ROWS {
                                break;
                            }
                        }
                        None => {
                            stopping = true;
                            break;
                        }
                    },
                    _ = &mut deadline => break,
                    _ = &mut stop, if !stopping => {
                        stopping = true;
                        while let Ok(e) = self.rx.try_recv() {
                            buffer.push(e);
                        }
                        break;
                    }
                }
            }
            while !buffer.is_empty() {
                let n = buffer.len().min(FLUSH_ROWS);
                let events: Vec<Event> = buffer.drain(..n).collect();
                if let Err(e) = self.commit(&engine, &events).await {
                    tracing::error!(
                        "could not commit {} events to the event log at {}: {e:#}",
                        events.len(),
                        self.table
                    );
                }
            }
        }
    }

    async fn commit(&self, engine: &Engine, events: &[Event]) -> anyhow::Result<()> {
        let schema = schema();
        let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
            .with_batch_size(events.len())
            .build_decoder()?;
        decoder.serialize(events)?;
        let Some(batch) = decoder.flush()? else {
            return Ok(());
        };
        engine
            .write_batches(&self.table, vec![batch], LoadMode::Append)
            .await?;
        Ok(())
    }
}
