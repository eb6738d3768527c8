//! Pipelines the service knows and their runs: each run is a
//! [`sluice_pipeline::Load`] the engine runs; its record is kept in memory
//! and stored ([`super::state`]), and counted ([`super::metrics`]).
//!
//! Runs of one pipeline never overlap: each pipeline has a lock. A trigger
//! that finds a run in progress starts one run behind it; triggers that find
//! that run still waiting join it (their notified objects too).
//!
//! A stream whose trigger is `continuous` or `every=N` is not run by
//! triggers: the service keeps it running ([`keep_running`]) from when it
//! starts or the pipeline is stored until the pipeline is replaced or the
//! service stops, and each of its runs shows its batches as they commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde::{Deserialize, Serialize};
use sluice_pipeline::{Load, Pipeline};

use super::App;
use super::scheduler::parse_cron;
use super::state::store_record;
use crate::engine::failure::Fault;
use crate::engine::{BatchReport, Observer, RunReport, Stop, Trigger};

/// A run's record, as `GET /runs/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub id: String,
    /// The pipeline.
    pub pipeline: String,
    /// `http`, `webhook`, `schedule`, `backstop` or `upload`; for a
    /// pipeline the service keeps running, its trigger (`continuous`,
    /// `every=30s`).
    pub trigger: String,
    /// Who triggered it (a token's name, or `scheduler`).
    pub principal: String,
    /// `queued`, `running`, `succeeded`, `failed`, or `interrupted` (the
    /// service stopped before the run ended).
    pub status: String,
    /// When it was triggered, RFC 3339.
    pub triggered: String,
    /// When it ended.
    #[serde(default)]
    pub ended: Option<String>,
    /// What it did.
    #[serde(default)]
    pub report: Option<RunReport>,
    /// Why it failed (secrets redacted, the service's paths named by role).
    #[serde(default)]
    pub error: Option<String>,
    /// Who has to act on the failure: `data` and `invalid` are the
    /// caller's to fix; `busy`, `storage` and `conflict` pass on a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// The objects an event notification named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
}

/// A pipeline the service runs.
pub struct Entry {
    /// Its definition.
    pub pipeline: Pipeline,
    /// Held while a run is in progress.
    pub lock: Arc<tokio::sync::Mutex<()>>,
    /// The run waiting for its turn, if any: triggers that come while one
    /// waits join it rather than queueing another run each.
    pub queued: Arc<Mutex<Option<Queued>>>,
    /// Its cron schedule, parsed.
    pub cron: Option<croner::Cron>,
    /// Asked when the pipeline is replaced or the service stops: a run the
    /// service keeps going ends after the batch in progress commits.
    pub stop: Stop,
    /// Whether the service is keeping this pipeline running.
    pub kept: AtomicBool,
}

/// Resolves to a run's final record.
pub type Done = Shared<BoxFuture<'static, RunRecord>>;

/// A run that has not started yet.
pub struct Queued {
    record: RunRecord,
    done: Done,
    /// Whether a trigger asked for a listing of the source (HTTP, schedule,
    /// backstop); otherwise only notified objects are looked at.
    list: bool,
}

/// Notified objects a waiting run collects before it lists instead.
const MAX_NOTIFIED: usize = 10_000;

/// Finished runs kept in memory for `GET /runs/{id}`.
const KEPT_RUNS: usize = 1000;

/// Pipelines and runs.
#[derive(Default)]
pub struct Runs {
    /// Pipelines by name.
    pub pipelines: Mutex<BTreeMap<String, Arc<Entry>>>,
    /// Runs by id.
    pub runs: Mutex<HashMap<String, RunRecord>>,
}

impl Runs {
    /// The pipeline `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Entry>> {
        self.pipelines.lock().ok()?.get(name).cloned()
    }

    /// Adds or replaces pipeline `name`.
    pub fn put(&self, name: &str, pipeline: Pipeline) -> Result<()> {
        let cron = pipeline.schedule.as_deref().map(parse_cron).transpose()?;
        let mut map = self
            .pipelines
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let (lock, queued) = map
            .get(name)
            .map(|e| (e.lock.clone(), e.queued.clone()))
            .unwrap_or_default();
        let replaced = map.insert(
            name.to_string(),
            Arc::new(Entry {
                pipeline,
                lock,
                queued,
                cron,
                stop: Stop::new(),
                kept: AtomicBool::new(false),
            }),
        );
        if let Some(old) = replaced {
            // A stream kept running under the old definition makes way for
            // the new one after its batch in progress.
            old.stop.ask();
        }
        Ok(())
    }

    /// Records `r`. Runs in progress stay; of the finished ones the newest
    /// [`KEPT_RUNS`] or so stay in memory (all are in the stored history).
    fn set(&self, r: &RunRecord) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.insert(r.id.clone(), r.clone());
            if runs.len() > 2 * KEPT_RUNS {
                let mut finished: Vec<(String, String)> = runs
                    .values()
                    .filter(|r| r.ended.is_some())
                    .map(|r| (r.triggered.clone(), r.id.clone()))
                    .collect();
                finished.sort();
                let excess = runs.len() - KEPT_RUNS;
                for (_, id) in finished.into_iter().take(excess) {
                    runs.remove(&id);
                }
            }
        }
    }

    /// A run by id.
    pub fn run(&self, id: &str) -> Option<RunRecord> {
        self.runs.lock().ok()?.get(id).cloned()
    }
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Starts a run of `name` after any run in progress, or joins the run
/// already waiting for its turn (it will see everything this trigger
/// would); returns the run's record at once, and a future of its final
/// record.
pub fn start(
    app: &Arc<App>,
    name: &str,
    entry: Arc<Entry>,
    trigger: &str,
    principal: &str,
    objects: Vec<String>,
) -> (RunRecord, Done) {
    let slot = entry.queued.clone();
    let mut waiting = slot.lock().unwrap_or_else(|p| p.into_inner());
    // A trigger without objects asks for a listing of the source; a
    // notification names the new objects, and only those are looked up.
    let list = objects.is_empty();
    if let Some(q) = waiting.as_mut() {
        q.list |= list;
        q.record.objects.extend(objects);
        if q.record.objects.len() > MAX_NOTIFIED {
            // So many objects are cheaper to find by listing.
            q.list = true;
            q.record.objects.clear();
        }
        return (q.record.clone(), q.done.clone());
    }
    let mut record = RunRecord {
        id: uuid::Uuid::new_v4().simple().to_string(),
        pipeline: name.to_string(),
        trigger: trigger.to_string(),
        principal: principal.to_string(),
        status: "queued".into(),
        triggered: now(),
        ended: None,
        report: None,
        error: None,
        fault: None,
        objects,
    };
    app.runs.set(&record);
    let queued = record.clone();
    let app = app.clone();
    let watch_app = app.clone();
    let name = name.to_string();
    let task_slot = slot.clone();
    let handle = tokio::spawn(async move {
        // Stored at once, so that a run the service never finishes (it was
        // killed) is still in the history: the next start marks it
        // interrupted.
        store_record(&app, &record, true).await;
        let _turn = entry.lock.lock().await;
        // Running now: a later trigger must start a later run, which will
        // see files this run's listing may miss.
        let joined = task_slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        let list = match joined {
            Some(q) => {
                record.objects = q.record.objects;
                record.objects.sort();
                record.objects.dedup();
                q.list
            }
            None => true,
        };
        record.status = "running".into();
        app.runs.set(&record);
        store_record(&app, &record, true).await;
        let started = Instant::now();
        let (trigger, stop) = if !list {
            (Trigger::Notified(record.objects.clone()), Stop::new())
        } else if entry.pipeline.runs_until_stopped() {
            (
                entry
                    .pipeline
                    .trigger
                    .clone()
                    .unwrap_or(Trigger::AvailableNow),
                entry.stop.clone(),
            )
        } else {
            (Trigger::AvailableNow, Stop::new())
        };
        let load = Load::named(&name, entry.pipeline.clone());
        let mut progress = Progress {
            app: &app,
            record: record.clone(),
            report: RunReport {
                table: entry.pipeline.table.clone(),
                ..RunReport::default()
            },
            started,
        };
        let result = app.engine.run(&load, &trigger, &mut progress, &stop).await;
        match result {
            Ok(report) => {
                app.metrics.record(("pipeline", &name), Some(&report));
                record.status = "succeeded".into();
                record.report = Some(report);
            }
            Err(failure) => {
                app.metrics.record(("pipeline", &name), None);
                record.status = "failed".into();
                record.error = Some(app.public.text(&failure.message));
                record.fault = Some(failure.fault);
            }
        }
        record.ended = Some(now());
        tracing::info!(
            "run {} of {name} ({}) {} in {:.2} s",
            record.id,
            record.trigger,
            record.status,
            started.elapsed().as_secs_f64()
        );
        app.runs.set(&record);
        let report = record.report.as_ref();
        app.events
            .emit(super::events::Event {
                kind: "run".into(),
                principal: record.principal.clone(),
                action: record.trigger.clone(),
                target: name.clone(),
                outcome: record.status.clone(),
                run_id: Some(record.id.clone()),
                rows: report.map(|r| r.rows as i64),
                files: report.map(|r| r.files as i64),
                bytes: report.map(|r| r.bytes as i64),
                version: report.and_then(|r| r.version.map(|v| v as i64)),
                seconds: report.map(|r| r.seconds),
                detail: serde_json::json!({"error": record.error, "objects": record.objects})
                    .to_string(),
                ..Default::default()
            })
            .await;
        store_record(&app, &record, false).await;
        record
    });
    // A run whose task panicked is recorded as failed, not left "running".
    let failed = |record: RunRecord, e: tokio::task::JoinError| RunRecord {
        status: "failed".into(),
        error: Some(format!("the run's task ended: {e}")),
        ended: Some(now()),
        ..record
    };
    let watch_record = queued.clone();
    let watcher = tokio::spawn(async move {
        match handle.await {
            Ok(r) => r,
            Err(e) => {
                let r = failed(watch_record, e);
                watch_app.runs.set(&r);
                watch_app.metrics.record(("pipeline", &r.pipeline), None);
                r
            }
        }
    });
    let fallback = queued.clone();
    let done: Done = async move { watcher.await.unwrap_or_else(|e| failed(fallback, e)) }
        .boxed()
        .shared();
    *waiting = Some(Queued {
        record: queued.clone(),
        done: done.clone(),
        list,
    });
    (queued, done)
}

/// Shows a run's batches in its record as they settle, so that a long run
/// (a stream the service keeps going, a large backlog) says how far it got.
struct Progress<'a> {
    app: &'a App,
    record: RunRecord,
    report: RunReport,
    started: Instant,
}

impl Observer for Progress<'_> {
    fn source_lag(&mut self, stream: &str, bytes: u64) {
        self.app
            .metrics
            .source_lag(&self.record.pipeline, stream, bytes);
    }

    fn batch(&mut self, batch: &BatchReport) {
        self.report.add(batch);
        self.report.seconds = self.started.elapsed().as_secs_f64();
        self.record.report = Some(self.report.clone());
        self.app.runs.set(&self.record);
    }
}

/// Keeps pipeline `name`, a stream whose trigger runs until stopped,
/// running: one run after another, each starting where the last one's
/// checkpoint ends, until the pipeline is replaced or the service stops
/// ([`Entry::stop`]). A run that fails is followed by the next after a
/// pause that doubles up to a minute, so a broker or store that is down is
/// not hammered.
pub async fn keep_running(app: Arc<App>, name: String, entry: Arc<Entry>) {
    const FIRST_PAUSE: Duration = Duration::from_secs(1);
    const LONGEST_PAUSE: Duration = Duration::from_secs(60);
    let label = entry
        .pipeline
        .trigger
        .as_ref()
        .map_or_else(|| "continuous".to_string(), ToString::to_string);
    let mut pause = FIRST_PAUSE;
    while !entry.stop.asked() {
        let (_, done) = start(&app, &name, entry.clone(), &label, "service", vec![]);
        let record = done.await;
        if entry.stop.asked() {
            break;
        }
        if record.status == "failed" {
            tracing::warn!(
                "pipeline {name} stopped: {}; starting it again in {} s",
                record.error.as_deref().unwrap_or("(no error)"),
                pause.as_secs()
            );
            entry.stop.sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        } else {
            pause = FIRST_PAUSE;
            entry.stop.sleep(pause).await;
        }
    }
}

/// Asks every stream the service keeps running to stop after its batch in
/// progress, and waits for the runs to end, for at most `wait`.
pub async fn stop_kept(app: &App, wait: Duration) {
    let entries: Vec<(String, Arc<Entry>)> = match app.runs.pipelines.lock() {
        Ok(p) => p.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Err(_) => return,
    };
    let kept: Vec<_> = entries
        .into_iter()
        .filter(|(_, e)| e.kept.load(Ordering::SeqCst))
        .collect();
    for (_, e) in &kept {
        e.stop.ask();
    }
    let ended = async {
        for (_, e) in &kept {
            let _turn = e.lock.lock().await;
        }
    };
    if tokio::time::timeout(wait, ended).await.is_err() {
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        tracing::warn!(
            "streams still running after {} s: {}; their batches in progress are redone when the service starts again",
            wait.as_secs(),
            names.join(", ")
        );
    }
}
