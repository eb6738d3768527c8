//! What the service keeps under its state root: pipeline definitions and
//! run records (the layout is in [`super`]'s documentation), and the
//! markers that tell a new process which runs the last one left unfinished.

use anyhow::{Context, Result};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use sluice_pipeline::Pipeline;

use super::App;
use super::runs::{RunRecord, now};
use super::scheduler::parse_cron;

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
pub(super) async fn store_record(app: &App, record: &RunRecord, in_progress: bool) {
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
