//! What a checkpoint records: planned batches, their commits, and the state
//! of every file the pipeline discovered.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// A file as listed: what identifies one version of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Full URL.
    pub location: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, in milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    /// Entity tag, where the store has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// What a batch does with its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchKind {
    /// Reads the files into the table.
    Load,
    /// Records the files as seen without reading them (files that existed
    /// when a stream started with `includeExistingFiles=false`).
    Skip,
}

/// A planned batch (`offsets/N`): written before any data is, so a crashed
/// batch is redone with exactly the same input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Format version of this record.
    pub version: u32,
    /// The batch number, counting from 0.
    pub batch: u64,
    /// When it was planned, in milliseconds since the Unix epoch.
    pub planned_ms: i64,
    /// Load or skip.
    pub kind: BatchKind,
    /// The files, in reading order.
    pub files: Vec<SourceFile>,
    /// The schema (in the schema history) the batch reads with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<u64>,
    /// For a source of positions rather than files (a message bus, a change
    /// log): the input the connector planned, in its own words (offset
    /// ranges per partition, a log range), handed back to it to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
}

/// A committed batch (`commits/N`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    /// Format version of this record.
    pub version: u32,
    /// The batch number.
    pub batch: u64,
    /// When the table commit was recorded, in milliseconds since the epoch.
    pub committed_ms: i64,
    /// The table version that holds the batch, where known (a batch found
    /// already committed after a crash records `None`).
    #[serde(default)]
    pub table_version: Option<u64>,
    /// Rows written.
    pub rows: u64,
    /// Bytes of data files written.
    pub bytes: u64,
}

/// The state of one discovered file (`cloud_files_state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// The file as listed when it was planned.
    #[serde(flatten)]
    pub file: SourceFile,
    /// The batch that planned it.
    pub batch: u64,
    /// When it was planned, in milliseconds since the epoch.
    pub discovered_ms: i64,
    /// When its batch committed; `None` while pending.
    pub committed_ms: Option<i64>,
    /// Recorded as seen without being read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// Everything a checkpoint knows, replayed from its files.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Files by location: the latest version planned of each.
    pub files: HashMap<String, FileState>,
    /// Recent batches (those since the last compaction at least).
    pub batches: BTreeMap<u64, (Plan, Option<Commit>)>,
    /// The number the next planned batch gets.
    pub next_batch: u64,
    /// The last commit before the loaded compaction.
    pub(crate) last_compacted_commit: Option<Commit>,
    /// The position of the latest batch that planned one.
    pub last_position: Option<String>,
}

impl State {
    /// Folds a plan into the state.
    pub(crate) fn apply_plan(&mut self, plan: &Plan) {
        for f in &plan.files {
            self.files.insert(
                f.location.clone(),
                FileState {
                    file: f.clone(),
                    batch: plan.batch,
                    discovered_ms: plan.planned_ms,
                    committed_ms: None,
                    skipped: plan.kind == BatchKind::Skip,
                },
            );
        }
        self.next_batch = self.next_batch.max(plan.batch + 1);
        if plan.position.is_some() {
            self.last_position = plan.position.clone();
        }
        self.batches.insert(plan.batch, (plan.clone(), None));
    }

    /// Folds a commit into the state.
    pub(crate) fn apply_commit(&mut self, commit: &Commit) {
        if let Some((plan, c)) = self.batches.get_mut(&commit.batch) {
            for f in &plan.files {
                if let Some(s) = self.files.get_mut(&f.location)
                    && s.batch == commit.batch
                {
                    s.committed_ms = Some(commit.committed_ms);
                }
            }
            *c = Some(commit.clone());
        }
    }

    /// The planned batch that has not committed, if any: it must be redone
    /// (or found committed) before anything else is planned.
    pub fn pending(&self) -> Option<&Plan> {
        self.batches
            .values()
            .find(|(_, c)| c.is_none())
            .map(|(p, _)| p)
    }

    /// The last committed batch.
    pub fn last_commit(&self) -> Option<&Commit> {
        self.batches
            .values()
            .rev()
            .find_map(|(_, c)| c.as_ref())
            .or(self.last_compacted_commit.as_ref())
    }

    /// Whether `file` (this version of it) was planned before. With
    /// `by_version`, a file whose size or modification time changed since
    /// counts as new (`allowOverwrites`); otherwise its path alone decides
    /// (`COPY INTO` and Auto Loader's default).
    pub fn seen(&self, file: &SourceFile, by_version: bool) -> bool {
        match self.files.get(&file.location) {
            None => false,
            Some(s) if by_version => {
                s.file.size == file.size && s.file.last_modified_ms == file.last_modified_ms
            }
            Some(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64) -> SourceFile {
        SourceFile {
            location: format!("file:///in/{name}"),
            size,
            last_modified_ms: 1,
            etag: None,
        }
    }

    fn plan(batch: u64, files: Vec<SourceFile>) -> Plan {
        Plan {
            version: 1,
            batch,
            planned_ms: 100 + batch as i64,
            kind: BatchKind::Load,
            files,
            schema_id: None,
            position: None,
        }
    }

    #[test]
    fn plans_and_commits_replay_into_file_state() {
        let mut s = State::default();
        s.apply_plan(&plan(0, vec![file("a", 1), file("b", 2)]));
        assert_eq!(s.pending().map(|p| p.batch), Some(0));
        s.apply_commit(&Commit {
            version: 1,
            batch: 0,
            committed_ms: 500,
            table_version: Some(3),
            rows: 10,
            bytes: 20,
        });
        assert!(s.pending().is_none());
        assert_eq!(s.next_batch, 1);
        assert_eq!(s.files["file:///in/a"].committed_ms, Some(500));
        assert!(s.seen(&file("a", 1), true));
        assert!(
            s.seen(&file("a", 9), false),
            "by path, a changed file is seen"
        );
        assert!(!s.seen(&file("a", 9), true), "by version, it is new");
        assert!(!s.seen(&file("c", 1), false));

        // A new version of `a` in batch 1 takes over its state.
        s.apply_plan(&plan(1, vec![file("a", 9)]));
        assert_eq!(s.files["file:///in/a"].batch, 1);
        assert_eq!(s.files["file:///in/a"].committed_ms, None);
        assert_eq!(s.last_commit().map(|c| c.batch), Some(0));
    }
}
