//! Pipelines the service knows, their runs, the metrics they feed, and the
//! scheduler (cron schedules, and the periodic listing that backs up event
//! notifications for stream pipelines).
//!
//! Runs of one pipeline never overlap: each pipeline has a lock. A trigger
//! that finds a run in progress starts one run behind it; triggers that find
//! that run still waiting join it (their notified objects too).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use sluice_pipeline::{LoadMode, Pipeline};

use super::App;
use crate::failure::Fault;
use crate::pipeline::RunReport;

/// A run's record, as `GET /runs/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub id: String,
    /// The pipeline.
    pub pipeline: String,
    /// `http`, `webhook`, `schedule`, `backstop` or `upload`.
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

/// Parses a cron schedule (five fields, or six with seconds; no year).
pub fn parse_cron(schedule: &str) -> Result<croner::Cron> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|e| {
            anyhow::Error::new(sluice_pipeline::Error::Invalid(format!(
                "schedule '{schedule}': {e}"
            )))
        })
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
        map.insert(
            name.to_string(),
            Arc::new(Entry {
                pipeline,
                lock,
                queued,
                cron,
            }),
        );
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

/// The service's Prometheus metrics.
pub struct Metrics {
    registry: Registry,
    rows: Family<Vec<(String, String)>, Counter>,
    files: Family<Vec<(String, String)>, Counter>,
    bytes: Family<Vec<(String, String)>, Counter>,
    runs: Family<Vec<(String, String)>, Counter>,
    last_success: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>,
    /// HTTP requests by status class.
    pub requests: Family<Vec<(String, String)>, Counter>,
    /// Uploaded bytes.
    pub uploaded_bytes: Counter,
    function_requests: Family<Vec<(String, String)>, Counter>,
    function_seconds: Histograms,
}

/// Histograms by label set, each made by [`latency_histogram`].
type Histograms = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let rows = Family::<Vec<(String, String)>, Counter>::default();
        let files = Family::<Vec<(String, String)>, Counter>::default();
        let bytes = Family::<Vec<(String, String)>, Counter>::default();
        let runs = Family::<Vec<(String, String)>, Counter>::default();
        let last_success = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
        let requests = Family::<Vec<(String, String)>, Counter>::default();
        let uploaded_bytes = Counter::default();
        let function_requests = Family::<Vec<(String, String)>, Counter>::default();
        let function_seconds = Histograms::new_with_constructor(latency_histogram);
        let mut registry = Registry::with_prefix("sluice");
        registry.register("rows", "Rows committed", rows.clone());
        registry.register("files", "Input files loaded", files.clone());
        registry.register("input_bytes", "Input bytes loaded", bytes.clone());
        registry.register("runs", "Pipeline runs by outcome", runs.clone());
        registry.register(
            "last_success_timestamp_seconds",
            "When each pipeline last ran successfully (lag = now - this)",
            last_success.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by status class",
            requests.clone(),
        );
        registry.register(
            "uploaded_bytes",
            "Bytes received by uploads",
            uploaded_bytes.clone(),
        );
        registry.register(
            "function_requests",
            "Requests to hosted functions by function and status",
            function_requests.clone(),
        );
        registry.register(
            "function_seconds",
            "Time to answer a request to a hosted function (instantiation included)",
            function_seconds.clone(),
        );
        Metrics {
            registry,
            rows,
            files,
            bytes,
            runs,
            last_success,
            requests,
            uploaded_bytes,
            function_requests,
            function_seconds,
        }
    }
}

impl Metrics {
    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a request to function `name` that ended with `status`.
    pub fn function_call(&self, name: &str, status: &str, took: std::time::Duration) {
        let function = ("function".to_string(), name.to_string());
        self.function_requests
            .get_or_create(&vec![function.clone(), ("status".into(), status.into())])
            .inc();
        self.function_seconds
            .get_or_create(&vec![function])
            .observe(took.as_secs_f64());
    }

    /// The metrics whose every label passes `shown(label, value)`.
    pub fn render_for(&self, shown: impl Fn(&str, &str) -> bool) -> String {
        self.render()
            .lines()
            .filter(|line| labels(line).all(|(k, v)| shown(k, v)))
            .fold(String::new(), |mut out, line| {
                out.push_str(line);
                out.push('\n');
                out
            })
    }

    /// Counts a run or an upload (`subject`: `("pipeline", name)` or
    /// `("table", name)`): its report, or a failure.
    pub fn record(&self, subject: (&str, &str), r: Option<&RunReport>) {
        let label = vec![(subject.0.to_string(), subject.1.to_string())];
        let mut status = label.clone();
        status.push((
            "status".into(),
            if r.is_some() { "succeeded" } else { "failed" }.into(),
        ));
        self.runs.get_or_create(&status).inc();
        if let Some(r) = r {
            self.rows.get_or_create(&label).inc_by(r.rows);
            self.files.get_or_create(&label).inc_by(r.files as u64);
            self.bytes.get_or_create(&label).inc_by(r.bytes);
            self.last_success
                .get_or_create(&label)
                .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        }
    }
}

/// The labels of one line of Prometheus' text format, as (name, value).
fn labels(line: &str) -> impl Iterator<Item = (&str, &str)> {
    let inner = match (line.starts_with('#'), line.find('{'), line.rfind('}')) {
        (false, Some(a), Some(b)) if a < b => &line[a + 1..b],
        _ => "",
    };
    // Label values here are names Sluice checked (no quotes or commas).
    inner.split(',').filter_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        Some((k.trim(), v.trim().trim_matches('"')))
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Loads the pipelines stored under the state root.
pub async fn load_pipelines(app: &App) -> Result<()> {
    let root = app.state_path("pipelines")?;
    let metas: Vec<_> = app.state.list(Some(&root)).try_collect().await?;
    for m in metas {
        let Some(name) = m
            .location
            .filename()
            .and_then(|f| f.strip_suffix(".json"))
            .map(str::to_string)
        else {
            continue;
        };
        let bytes = app.state.get(&m.location).await?.bytes().await?;
        let pipeline: Pipeline =
            serde_json::from_slice(&bytes).with_context(|| format!("stored pipeline {name}"))?;
        app.runs.put(&name, pipeline)?;
    }
    Ok(())
}

/// Stores and registers pipeline `name`.
pub async fn store_pipeline(app: &App, name: &str, pipeline: Pipeline) -> Result<()> {
    // Parse the schedule before anything is stored.
    pipeline.schedule.as_deref().map(parse_cron).transpose()?;
    let path = app.state_path(&format!("pipelines/{name}.json"))?;
    app.state
        .put(
            &path,
            PutPayload::from(serde_json::to_vec_pretty(&pipeline)?),
        )
        .await?;
    app.runs.put(name, pipeline)
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
        let result = if list {
            app.services.run(&name, &entry.pipeline).await
        } else {
            app.services
                .run_notified(&name, &entry.pipeline, &record.objects)
                .await
        };
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

/// A stored run record's name: its trigger time first, so that a listing
/// sorts records by when they were triggered.
fn record_name(r: &RunRecord) -> String {
    let ms = chrono::DateTime::parse_from_rfc3339(&r.triggered).map_or(0, |t| t.timestamp_millis());
    format!("{ms:013}-{}.json", r.id)
}

/// Stores `record` as `runs/<pipeline>/<record>`; a run still in progress
/// also leaves a marker under `running/`, removed once it ends, which
/// [`mark_interrupted`] finds if the service dies first. Failures are
/// logged: a run goes on whether or not its record could be written.
async fn store_record(app: &App, record: &RunRecord, in_progress: bool) {
    let result = async {
        let rel = format!("{}/{}", record.pipeline, record_name(record));
        let path = app.state_path(&format!("runs/{rel}"))?;
        let marker = app.state_path(&format!("running/{rel}"))?;
        let body = serde_json::to_vec_pretty(record)?;
        if in_progress {
            app.state.put(&marker, PutPayload::default()).await?;
        }
        app.state.put(&path, PutPayload::from(body)).await?;
        if !in_progress {
            match app.state.delete(&marker).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!("could not store run record {}: {e:#}", record.id);
    }
}

/// Marks the runs a previous process left in progress (it was killed or
/// crashed) as `interrupted`, so the history says how they ended.
pub async fn mark_interrupted(app: &App) -> Result<usize> {
    let running = app.state_path("running")?;
    let markers: Vec<_> = app.state.list(Some(&running)).try_collect().await?;
    let mut marked = 0;
    for m in markers {
        let Some(rel) = m.location.prefix_match(&running).map(|parts| {
            parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/")
        }) else {
            continue;
        };
        let path = app.state_path(&format!("runs/{rel}"))?;
        let record = match app.state.get(&path).await {
            Ok(r) => Some(serde_json::from_slice::<RunRecord>(&r.bytes().await?)?),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(mut record) = record
            && record.ended.is_none()
        {
            record.status = "interrupted".into();
            record.ended = Some(now());
            record.error = Some(
                "the service stopped before the run ended (it was killed or crashed): a replace or append run committed nothing; an incremental run kept the batches it committed and its next run goes on from there"
                    .into(),
            );
            app.state
                .put(&path, PutPayload::from(serde_json::to_vec_pretty(&record)?))
                .await?;
            marked += 1;
        }
        match app.state.delete(&m.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(marked)
}

/// The run history of `name`, newest first: the stored records, and the
/// runs of this process still in progress. Only the newest `limit` stored
/// records are read.
pub async fn history(app: &App, name: &str, limit: usize) -> Result<Vec<RunRecord>> {
    let root = app.state_path(&format!("runs/{name}"))?;
    let mut metas: Vec<_> = app.state.list(Some(&root)).try_collect().await?;
    metas.sort_by(|a, b| b.location.cmp(&a.location));
    metas.truncate(limit);
    let mut out: Vec<RunRecord> = Vec::new();
    for m in metas {
        let bytes = app.state.get(&m.location).await?.bytes().await?;
        out.push(serde_json::from_slice(&bytes)?);
    }
    if let Ok(runs) = app.runs.runs.lock() {
        for r in runs.values() {
            if r.pipeline == name && r.ended.is_none() {
                out.push(r.clone());
            }
        }
    }
    out.sort_by(|a, b| b.triggered.cmp(&a.triggered));
    out.truncate(limit);
    Ok(out)
}

/// Runs scheduled pipelines when their cron schedule says, and stream
/// pipelines every backstop interval (so an event that was lost never
/// loses a file). A pipeline already running is not started again.
pub async fn scheduler(app: Arc<App>) {
    let mut last = chrono::Utc::now();
    let mut backstop_due: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let mut next_sweep = Instant::now() + super::STAGED_MAX_AGE;
    loop {
        tick.tick().await;
        if Instant::now() >= next_sweep {
            next_sweep = Instant::now() + super::STAGED_MAX_AGE;
            app.sweep_staged(super::STAGED_MAX_AGE).await;
        }
        let now = chrono::Utc::now();
        let entries: Vec<(String, Arc<Entry>)> = match app.runs.pipelines.lock() {
            Ok(p) => p.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return,
        };
        for (name, entry) in entries {
            let busy = entry.lock.try_lock().is_err();
            let due = entry.cron.as_ref().is_some_and(|c| {
                c.find_next_occurrence(&last, false)
                    .is_ok_and(|next| next <= now)
            });
            if due && !busy {
                // The run goes on by itself; nothing here waits for it.
                let _run = start(&app, &name, entry.clone(), "schedule", "scheduler", vec![]);
                continue;
            }
            if let Some(every) = app.backstop
                && entry.pipeline.mode == LoadMode::Stream
            {
                let at = backstop_due
                    .entry(name.clone())
                    .or_insert_with(|| Instant::now() + every);
                if Instant::now() >= *at {
                    *at = Instant::now() + every;
                    if !busy {
                        let _run = start(&app, &name, entry, "backstop", "scheduler", vec![]);
                    }
                }
            }
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_takes_five_or_six_fields_never_a_year() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("0 */5 * * * *").is_ok());
        let e = parse_cron("0 0 12 * * * 2030").unwrap_err();
        assert!(e.to_string().contains("schedule"), "{e}");
    }

    #[test]
    fn metrics_show_only_what_is_granted() {
        let m = Metrics::default();
        m.record(("pipeline", "events"), Some(&RunReport::default()));
        m.record(("pipeline", "secret-ops"), None);
        m.record(("table", "uploaded"), Some(&RunReport::default()));
        let text = m.render_for(|k, v| match k {
            "pipeline" => v == "events",
            "table" => false,
            _ => true,
        });
        assert!(text.contains("pipeline=\"events\""), "{text}");
        assert!(!text.contains("secret-ops"), "{text}");
        assert!(!text.contains("table=\"uploaded\""), "{text}");
        assert!(text.contains("# HELP"), "{text}");
    }
}
