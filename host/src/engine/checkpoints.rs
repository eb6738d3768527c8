//! What a load's checkpoint recorded about each file it discovered
//! (Auto Loader's `cloud_files_state`): `sluice files` asks for a
//! checkpoint, or for a table, whose checkpoints are found where
//! [`sluice_pipeline::load::default_checkpoints`] says loads keep them.

use anyhow::{Result, bail};
use object_store::ObjectStoreExt;
use sluice_checkpoint::{Checkpoint, FileState, SchemaLog};
use sluice_pipeline::LoadMode;
use sluice_pipeline::load::{default_checkpoint, default_checkpoints};
use sluice_sink::Location;

use super::Engine;

/// One checkpoint's files.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    /// Where the checkpoint is.
    pub location: String,
    /// Its id (Delta's `appId` is `sluice-<id>`).
    pub id: String,
    /// Batches planned.
    pub batches: u64,
    /// Its files, by batch and path.
    pub files: Vec<FileStatus>,
    /// Its schema versions: id, the batch it began at, and why.
    pub schemas: Vec<(u64, u64, String)>,
}

/// One file a checkpoint discovered.
#[derive(Debug, Clone)]
pub struct FileStatus {
    /// The file's URL.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last modified (ms since the epoch).
    pub modified_ms: i64,
    /// When the load discovered it.
    pub discovered_ms: i64,
    /// When its batch committed, if it did.
    pub committed_ms: Option<i64>,
    /// Its batch.
    pub batch: u64,
    /// `committed`, `pending`, `skipped` or `cleaned`.
    pub status: &'static str,
}

impl Engine {
    /// The checkpoints at `location`: a checkpoint at that path, else the
    /// table it names (by the rule every face shares), whose default
    /// checkpoints are searched
    /// (COPY INTO's, a streaming table's, and each named pipeline's; only
    /// `pipeline`'s when given).
    pub async fn files(
        &self,
        location: &str,
        pipeline: Option<&str>,
    ) -> Result<Vec<CheckpointFiles>> {
        // A checkpoint is a place, never a table name.
        if pipeline.is_none()
            && let Ok(at) = self.location(location)
            && is_checkpoint(&at).await
        {
            return Ok(vec![read(&at).await?]);
        }
        let table = self.table(location)?;
        let out = self.checkpoints_of(&table, pipeline).await?;
        if out.is_empty() {
            bail!(
                "{} is neither a checkpoint nor a table a COPY INTO, streaming table or pipeline loaded{}",
                table.display(),
                pipeline
                    .map(|p| format!(" (looked for pipeline '{p}')"))
                    .unwrap_or_default()
            );
        }
        Ok(out)
    }

    /// The checkpoints the loads of the table at `table` keep where
    /// [`default_checkpoints`] says (only `pipeline`'s when given); none
    /// for a table no such load wrote.
    pub async fn checkpoints_of(
        &self,
        table: &Location,
        pipeline: Option<&str>,
    ) -> Result<Vec<CheckpointFiles>> {
        let candidates = match pipeline {
            Some(name) => default_checkpoint(table, LoadMode::Stream, Some(name))?
                .into_iter()
                .collect(),
            None => {
                let mut found = Vec::new();
                for at in default_checkpoints(table)? {
                    if at.url().path().ends_with("/pipelines") {
                        found.extend(children(&at).await?);
                    } else {
                        found.push(at);
                    }
                }
                found
            }
        };
        let mut out = Vec::new();
        for at in candidates {
            if is_checkpoint(&at).await {
                out.push(read(&at).await?);
            }
        }
        Ok(out)
    }
}

/// Whether a checkpoint was started at `at`.
async fn is_checkpoint(at: &Location) -> bool {
    let Ok((store, root)) = at.store() else {
        return false;
    };
    store.head(&root.join("metadata.json")).await.is_ok()
}

/// The folders right under `at`.
async fn children(at: &Location) -> Result<Vec<Location>> {
    let (store, root) = at.store()?;
    let listed = match store.list_with_delimiter(Some(&root)).await {
        Ok(l) => l,
        Err(object_store::Error::NotFound { .. }) => return Ok(vec![]),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for prefix in listed.common_prefixes {
        if let Some(name) = prefix.filename() {
            out.push(at.child(name)?);
        }
    }
    Ok(out)
}

async fn read(at: &Location) -> Result<CheckpointFiles> {
    let cp = Checkpoint::open(at, 0).await?;
    let state = cp.load().await?;
    let cleaned = cp.cleaned_through().await?;
    let schemas = SchemaLog::open(at)?.all().await.unwrap_or_default();
    let status = |f: &FileState| {
        if f.skipped {
            "skipped"
        } else if f.committed_ms.is_none() {
            "pending"
        } else if cleaned.is_some_and(|c| f.batch <= c) {
            "cleaned"
        } else {
            "committed"
        }
    };
    let mut files: Vec<FileStatus> = state
        .files
        .values()
        .map(|f| FileStatus {
            path: f.file.location.clone(),
            size: f.file.size,
            modified_ms: f.file.last_modified_ms,
            discovered_ms: f.discovered_ms,
            committed_ms: f.committed_ms,
            batch: f.batch,
            status: status(f),
        })
        .collect();
    files.sort_by(|a, b| (a.batch, &a.path).cmp(&(b.batch, &b.path)));
    Ok(CheckpointFiles {
        location: cp.location().to_string(),
        id: cp.id().to_string(),
        batches: state.next_batch,
        files,
        schemas: schemas
            .into_iter()
            .map(|s| (s.id, s.batch, s.reason))
            .collect(),
    })
}
