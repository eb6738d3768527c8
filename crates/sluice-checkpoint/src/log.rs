//! The checkpoint of one pipeline: its batch log on object storage.
//!
//! Layout under the checkpoint location:
//!
//! ```text
//! metadata.json            the pipeline's id (its Delta txn appId comes from it)
//! offsets/<N>.json         batch N's plan, written before any data (create-only)
//! commits/<N>.json         batch N committed to the table
//! state/<N>.json           every file's state through batch N (compaction)
//! cleaned.json             batches whose source files cleanSource handled
//! ```
//!
//! Invariants: a plan is written once and never changed, so a batch redone
//! after a crash reads exactly the same files; at most one batch is pending
//! (planned, not committed) at a time, and nothing is planned until it is
//! settled; a commit record is written only after the table commit.

use serde::{Deserialize, Serialize};
use sluice_location::Location;

use crate::error::{Error, Result};
use crate::state::{BatchKind, Commit, FileState, Plan, SourceFile, State};
use crate::store::{Dir, name};

/// Batches between compactions of the file state.
const COMPACT_EVERY: u64 = 100;
/// Plans and commits kept from before the last compaction, for inspection.
const RETAIN: u64 = 100;
/// Format version of the records this crate writes.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    version: u32,
    id: String,
    created_ms: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snapshot {
    version: u32,
    next_batch: u64,
    last_commit: Option<Commit>,
    files: Vec<FileState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_position: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cleaned {
    version: u32,
    through_batch: u64,
}

/// A pipeline's checkpoint.
#[derive(Clone)]
pub struct Checkpoint {
    dir: Dir,
    id: String,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("location", &self.dir.location)
            .field("id", &self.id)
            .finish()
    }
}

impl Checkpoint {
    /// Opens the checkpoint at `location`, creating it (with a new id) if
    /// there is none.
    pub async fn open(location: &Location, now_ms: i64) -> Result<Self> {
        let (store, root) = location.store()?;
        let dir = Dir {
            store,
            root,
            location: location.display(),
        };
        let id = match dir.read::<Metadata>("metadata.json").await? {
            Some(m) => m.id,
            None => {
                let fresh = Metadata {
                    version: FORMAT,
                    id: uuid::Uuid::new_v4().to_string(),
                    created_ms: now_ms,
                };
                if dir.write("metadata.json", &fresh, true).await? {
                    fresh.id
                } else {
                    // Another run created it first: use theirs.
                    dir.read::<Metadata>("metadata.json")
                        .await?
                        .ok_or_else(|| Error::Corrupt {
                            path: format!("{}/metadata.json", dir.location),
                            reason: "vanished after it was created".into(),
                        })?
                        .id
                }
            }
        };
        Ok(Checkpoint { dir, id })
    }

    /// The pipeline's id, stable for the checkpoint's life.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The checkpoint's URL.
    pub fn location(&self) -> &str {
        &self.dir.location
    }

    /// Replays the checkpoint: the last compaction, then the plans and
    /// commits after it.
    pub async fn load(&self) -> Result<State> {
        let snapshots = self.dir.child("state");
        let mut state = State::default();
        let after = match snapshots.numbers(None).await?.last() {
            Some(&n) => {
                let s: Snapshot =
                    snapshots
                        .read(&name(n))
                        .await?
                        .ok_or_else(|| Error::Corrupt {
                            path: format!("{}/{}", snapshots.location, name(n)),
                            reason: "vanished while loading".into(),
                        })?;
                state.next_batch = s.next_batch;
                state.files = s
                    .files
                    .into_iter()
                    .map(|f| (f.file.location.clone(), f))
                    .collect();
                if let Some(c) = s.last_commit {
                    state.last_compacted_commit = Some(c);
                }
                state.last_position = s.last_position;
                Some(n)
            }
            None => None,
        };
        let (offsets, commits) = (self.dir.child("offsets"), self.dir.child("commits"));
        for n in offsets.numbers(after).await? {
            if let Some(plan) = offsets.read::<Plan>(&name(n)).await? {
                state.apply_plan(&plan);
            }
        }
        for n in commits.numbers(after).await? {
            if let Some(commit) = commits.read::<Commit>(&name(n)).await? {
                state.apply_commit(&commit);
            }
        }
        let uncommitted: Vec<u64> = state
            .batches
            .iter()
            .filter(|(_, (_, c))| c.is_none())
            .map(|(n, _)| *n)
            .collect();
        if uncommitted.len() > 1 {
            return Err(Error::Corrupt {
                path: format!("{}/offsets", self.dir.location),
                reason: format!(
                    "batches {uncommitted:?} are all planned but not committed; only the last one may be"
                ),
            });
        }
        Ok(state)
    }

    /// Plans the next batch: records its files before anything is read.
    /// Fails with [`Error::Busy`] if another run planned it first.
    pub async fn plan(
        &self,
        state: &mut State,
        kind: BatchKind,
        files: Vec<SourceFile>,
        schema_id: Option<u64>,
        now_ms: i64,
    ) -> Result<Plan> {
        self.write_plan(state, kind, files, schema_id, None, now_ms)
            .await
    }

    /// Plans the next batch of a source of positions: records `position`
    /// (the connector's plan) before anything is read.
    pub async fn plan_position(
        &self,
        state: &mut State,
        position: String,
        schema_id: Option<u64>,
        now_ms: i64,
    ) -> Result<Plan> {
        self.write_plan(
            state,
            BatchKind::Load,
            vec![],
            schema_id,
            Some(position),
            now_ms,
        )
        .await
    }

    async fn write_plan(
        &self,
        state: &mut State,
        kind: BatchKind,
        files: Vec<SourceFile>,
        schema_id: Option<u64>,
        position: Option<String>,
        now_ms: i64,
    ) -> Result<Plan> {
        if let Some(p) = state.pending() {
            return Err(Error::Corrupt {
                path: format!("{}/offsets/{}", self.dir.location, name(p.batch)),
                reason: "a batch is still pending; settle it before planning another".into(),
            });
        }
        let plan = Plan {
            version: FORMAT,
            batch: state.next_batch,
            planned_ms: now_ms,
            kind,
            files,
            schema_id,
            position,
        };
        if !self
            .dir
            .child("offsets")
            .write(&name(plan.batch), &plan, true)
            .await?
        {
            return Err(Error::Busy {
                location: self.dir.location.clone(),
                batch: plan.batch,
            });
        }
        state.apply_plan(&plan);
        Ok(plan)
    }

    /// Records that `commit.batch` is in the table (after the table commit).
    /// Compacts the file state every [`COMPACT_EVERY`] batches.
    pub async fn commit(&self, state: &mut State, commit: Commit) -> Result<()> {
        self.dir
            .child("commits")
            .write(&name(commit.batch), &commit, false)
            .await?;
        state.apply_commit(&commit);
        if (commit.batch + 1).is_multiple_of(COMPACT_EVERY) {
            self.compact(state, commit.batch).await?;
        }
        Ok(())
    }

    /// Writes the file state through `batch` in one file and drops what it
    /// makes redundant.
    async fn compact(&self, state: &State, batch: u64) -> Result<()> {
        let snapshots = self.dir.child("state");
        let snapshot = Snapshot {
            version: FORMAT,
            next_batch: state.next_batch,
            last_commit: state.last_commit().cloned(),
            files: state.files.values().cloned().collect(),
            last_position: state.last_position.clone(),
        };
        snapshots.write(&name(batch), &snapshot, false).await?;
        for old in snapshots.numbers(None).await? {
            if old < batch.saturating_sub(COMPACT_EVERY) {
                snapshots.delete(&name(old)).await?;
            }
        }
        let (offsets, commits) = (self.dir.child("offsets"), self.dir.child("commits"));
        let keep_from = batch.saturating_sub(RETAIN);
        for dir in [offsets, commits] {
            for n in dir.numbers(None).await? {
                if n >= keep_from {
                    break;
                }
                dir.delete(&name(n)).await?;
            }
        }
        Ok(())
    }

    /// The last batch whose source files `cleanSource` has handled.
    pub async fn cleaned_through(&self) -> Result<Option<u64>> {
        Ok(self
            .dir
            .read::<Cleaned>("cleaned.json")
            .await?
            .map(|c| c.through_batch))
    }

    /// Records that the source files of batches up to `batch` are handled.
    pub async fn set_cleaned_through(&self, batch: u64) -> Result<()> {
        let c = Cleaned {
            version: FORMAT,
            through_batch: batch,
        };
        self.dir.write("cleaned.json", &c, false).await?;
        Ok(())
    }
}
