//! A keyed target's lane, and the commit of what its lanes staged.
//!
//! Changes are applied by key when the batch commits, so a lane could only
//! keep them in memory until then. But the first batch of a new table (a
//! database's snapshot, the start of a change feed) is mostly rows that
//! insert keys new to each other, which the merge would only copy. So
//! while the table does not exist, a lane writes rows that are not deletes
//! straight to data files, as an append lane does, and keeps a hash of
//! each key; from the first batch that holds another kind of change (a
//! delete, a truncate, a value not carried, a null key or sequence) it
//! keeps the rest in memory for the merge.
//!
//! The commit ([`apply_staged`]) takes the files as they are when every
//! row of the batch went ahead, no key went ahead twice (in any lane) and
//! the table still does not exist; otherwise it reads them back as changes
//! in front of the rest, which the merge then applies as one batch.

use std::hash::Hasher;

use arrow_array::{Array, BooleanArray, RecordBatch, new_null_array};
use arrow_row::RowConverter;
use arrow_schema::SchemaRef;
use deltalake_core::kernel::{Action, Add};

use super::delta::{Applied, apply, read_parquet};
use super::{
    Changes, KeyedApply, MergeCounts, Scd, columns_named, concat, data_columns, row_converter,
};
use crate::WriteOptions;
use crate::delta::under;
use crate::delta::{DeltaLane, SchemaChange, commit_actions_once, load};
use crate::error::Result;
use sluice_location::Location;

/// What a keyed lane staged for the commit.
#[derive(Debug, Default)]
pub struct Staged {
    /// Data files of rows written ahead, in the table's shape.
    ahead: Vec<Add>,
    /// How many rows they hold.
    ahead_rows: u64,
    /// The hashes of their keys' row-format bytes ([`key_hash`]).
    keys: Vec<u64>,
    /// The change rows kept for the merge, as they came.
    pending: Vec<RecordBatch>,
}

/// Whether a lane writes rows ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not known until the first batch: only while the table is absent.
    Undecided,
    Ahead,
    Merge,
}

/// One stream of change rows into a keyed table: see the module's doc.
pub struct KeyedLane {
    spec: KeyedApply,
    location: Location,
    options: WriteOptions,
    mode: Mode,
    writer: Option<Ahead>,
    staged: Staged,
}

/// A lane's writer of rows ahead, made by its first such batch.
struct Ahead {
    lane: DeltaLane,
    /// The table's schema, which the rows take.
    table: SchemaRef,
    /// The key columns into arrow's row format.
    keys: RowConverter,
}

impl KeyedLane {
    /// A lane into the keyed table at `location`.
    pub(crate) fn new(spec: KeyedApply, location: Location, options: WriteOptions) -> Self {
        KeyedLane {
            spec,
            location,
            options,
            mode: Mode::Undecided,
            writer: None,
            staged: Staged::default(),
        }
    }

    /// Takes the change rows `batch`.
    pub(crate) async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if self.mode == Mode::Undecided {
            self.mode = match load(&self.location).await? {
                None => Mode::Ahead,
                Some(_) => Mode::Merge,
            };
        }
        if self.mode == Mode::Ahead {
            if let Some(rows) = self.insertable(&batch)? {
                self.staged.ahead_rows += rows.num_rows() as u64;
                let ahead = self.writer.as_mut().expect("made by insertable");
                return ahead.lane.write(rows).await;
            }
            self.mode = Mode::Merge;
        }
        self.staged.pending.push(batch);
        Ok(())
    }

    /// Finishes the open data file and returns what the lane staged.
    pub(crate) async fn finish(mut self) -> Result<Staged> {
        if let Some(ahead) = self.writer {
            self.staged.ahead = ahead.lane.finish().await?;
        }
        Ok(self.staged)
    }

    /// `batch` as table rows, if no row of it is a delete or a truncate,
    /// each carries all its values and has its key and sequence; `None`
    /// otherwise.
    fn insertable(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let changes = self.spec.changes(batch)?;
        if changes.truncated
            || !changes.truncates.is_empty()
            || !changes.unchanged.is_empty()
            || changes.deletes.true_count() > 0
        {
            return Ok(None);
        }
        let rows = changes.rows;
        // Names the key or sequence column the rows lack.
        let table = self.spec.table_schema(&rows.schema())?;
        let keys = columns_named(&rows, &self.spec.keys);
        let sequence = rows
            .column_by_name(&self.spec.sequence)
            .expect("checked")
            .clone();
        // A change the merge cannot place is refused by it, naming the row.
        if sequence.null_count() > 0 || keys.iter().any(|k| k.null_count() > 0) {
            return Ok(None);
        }
        if self.writer.is_none() {
            self.writer = Some(Ahead {
                lane: DeltaLane::new(&self.location, table.clone(), &self.options)?,
                table,
                keys: row_converter(&keys)?,
            });
        }
        let ahead = self.writer.as_ref().expect("made above");
        let converted = ahead.keys.convert_columns(&keys)?;
        self.staged
            .keys
            .extend(converted.iter().map(|row| key_hash(row.data())));
        let rows = match self.spec.scd {
            Scd::One => rows,
            Scd::Two => {
                let mut columns = rows.columns().to_vec();
                columns.push(sequence.clone());
                columns.push(new_null_array(sequence.data_type(), rows.num_rows()));
                RecordBatch::try_new(ahead.table.clone(), columns)?
            }
        };
        Ok(Some(rows))
    }
}

/// A key's hash, the same in every lane (the lanes' keys are compared at
/// the commit).
fn key_hash(bytes: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// Applies what the lanes of a batch staged, as [`apply`] does the
/// batch's changes: the change rows had `schema`.
pub async fn apply_staged(
    location: &Location,
    spec: &KeyedApply,
    schema: &SchemaRef,
    staged: Vec<Staged>,
    txn: &crate::Txn,
    options: &WriteOptions,
    change: SchemaChange,
) -> Result<Applied> {
    let columns = spec
        .changes(&RecordBatch::new_empty(schema.clone()))?
        .rows
        .schema();
    let table = spec.table_schema(&columns)?;
    let all_ahead = staged.iter().all(|s| s.pending.is_empty());
    // Sorted, equal keys are neighbours (a hash shared by two keys only
    // costs the merge).
    let distinct = || {
        let mut keys: Vec<u64> = staged.iter().flat_map(|s| &s.keys).copied().collect();
        keys.sort_unstable();
        keys.windows(2).all(|w| w[0] != w[1])
    };
    if all_ahead && distinct() && load(location).await?.is_none() {
        let rows: u64 = staged.iter().map(|s| s.ahead_rows).sum();
        let adds: Vec<Add> = staged.into_iter().flat_map(|s| s.ahead).collect();
        let files_added = adds.len();
        let bytes_added = adds.iter().map(|a| a.size as u64).sum();
        let actions = adds.into_iter().map(Action::Add).collect();
        let outcome = commit_actions_once(location, &table, actions, txn, change).await?;
        return Ok(Applied {
            outcome,
            counts: MergeCounts {
                upserted: rows,
                ..MergeCounts::default()
            },
            files_rewritten: 0,
            files_added,
            rows_written: rows,
            bytes_added,
        });
    }
    // The rows written ahead are changes again, in front of the rest.
    let (store, root) = location.store()?;
    let mut ahead = Vec::new();
    let mut pending = Vec::new();
    for s in staged {
        for add in &s.ahead {
            let path = under(&root, &add.path);
            for b in read_parquet(&store, path, add.size as u64, &table).await? {
                ahead.push(data_columns(&b, columns.fields().len()));
            }
        }
        pending.extend(s.pending);
    }
    let pending = spec.changes(&concat(schema, &pending)?)?;
    let changes = if pending.truncated {
        pending
    } else {
        let ahead = concat(&columns, &ahead)?;
        let n = ahead.num_rows();
        let inserts = BooleanArray::from(vec![false; n]);
        Changes {
            rows: concat(&columns, &[ahead, pending.rows])?,
            deletes: arrow_select::concat::concat(&[&inserts as &dyn Array, &pending.deletes])?
                .as_any()
                .downcast_ref::<BooleanArray>()
                .expect("booleans")
                .clone(),
            truncated: false,
            truncates: pending.truncates.iter().map(|i| i + n).collect(),
            unchanged: pending
                .unchanged
                .into_iter()
                .map(|(i, c)| (i + n, c))
                .collect(),
        }
    };
    apply(location, spec, &changes, txn, options, change).await
}
