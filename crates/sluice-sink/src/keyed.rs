//! Applying change rows by key (Databricks' AUTO CDC, formerly APPLY
//! CHANGES): the merge itself, in memory, over the rows of the table that
//! a batch of changes touches.
//!
//! A change is a row of the table's columns with a key, a sequence (which
//! orders changes to one key: a commit position, a timestamp) and whether
//! it deletes the key. A batch is applied by key:
//!
//! - **SCD type 1**: the table holds the current row per key. The change of
//!   a key with the highest sequence in the batch wins; it replaces the
//!   stored row, or removes it if it is a delete, unless the stored row (or
//!   the key's delete, kept as a tombstone) is as new or newer: a late
//!   change never overwrites a newer one, and a batch applied twice changes
//!   nothing the second time.
//! - **SCD type 2**: the table holds every version of a key, each with
//!   `__START_AT` (the sequence of the change that made it) and `__END_AT`
//!   (the sequence of the change that ended it; null for the current one).
//!   A change is put in its place in the key's history, wherever its
//!   sequence falls; a delete ends the current version without starting
//!   another.
//!
//! Keys and sequences are compared in arrow's row format, so any column
//! types arrow can order work. A null key or sequence is an error naming
//! the row: the change could not be placed.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, new_null_array};
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::interleave::interleave;

use crate::error::{Error, Result};

/// SCD type 2's column: the sequence of the change that made the version.
pub const START_AT: &str = "__START_AT";
/// SCD type 2's column: the sequence of the change that ended the version;
/// null for a key's current version.
pub const END_AT: &str = "__END_AT";

/// How a table keeps the changes applied to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scd {
    /// The current row per key.
    One,
    /// Every version per key, with [`START_AT`] and [`END_AT`].
    Two,
}

/// What applying by key needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedApply {
    /// The columns that identify a row.
    pub keys: Vec<String>,
    /// The column that orders the changes of one key.
    pub sequence: String,
    /// How the table keeps them.
    pub scd: Scd,
    /// Which input rows are deletes (`APPLY AS DELETE WHEN`); none if
    /// `None`.
    pub delete_when: Option<DeleteWhen>,
    /// Input columns the table does not keep (`COLUMNS * EXCEPT (...)`).
    pub except: Vec<String>,
    /// Which input rows empty the table (`APPLY AS TRUNCATE WHEN`): a
    /// source's TRUNCATE.
    pub truncate_when: Option<DeleteWhen>,
    /// The input column (a list of column names) naming, per change, the
    /// columns whose values it did not carry (a database's TOASTed value
    /// that did not change): they keep the key's value from before the
    /// change. The table does not keep the column; input without it carried
    /// all its values.
    pub unchanged_column: Option<String>,
}

/// `APPLY AS DELETE WHEN column = 'value'` (or `IN ('a', 'b')`): a row is
/// a delete when its column, as text, is one of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteWhen {
    /// The column.
    pub column: String,
    /// The values that mark a delete.
    pub values: Vec<String>,
}

/// A batch of changes: rows of the table's columns (SCD type 2's own
/// columns aside) and, per row, whether it deletes its key.
#[derive(Debug, Clone)]
pub struct Changes {
    /// The change rows.
    pub rows: RecordBatch,
    /// Whether each row is a delete.
    pub deletes: BooleanArray,
    /// The batch emptied the table (a truncate) before these rows: they
    /// apply to an empty table (SCD type 1).
    pub truncated: bool,
    /// SCD type 2: the rows that are truncates (their own columns null),
    /// which end every key's current version at their sequence.
    pub truncates: Vec<usize>,
    /// Per change row that did not carry some values, those columns (of
    /// `rows`): they keep the key's values from before the change.
    pub unchanged: HashMap<usize, Vec<usize>>,
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeCounts {
    /// Keys inserted or updated (SCD 2: versions started).
    pub upserted: u64,
    /// Keys deleted (SCD 2: current versions ended by a delete).
    pub deleted: u64,
    /// Changes left out: older than what the table holds for their key,
    /// superseded in their batch, or already applied.
    pub ignored: u64,
}

/// The outcome of a merge.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The rows that replace `existing`: what it kept, and what the changes
    /// made.
    pub rows: RecordBatch,
    /// SCD type 1's deletes still remembered, as [`KeyedApply::tombstones`]
    /// rows: the keys deleted and the sequence of their delete.
    pub tombstones: RecordBatch,
    /// What it did.
    pub counts: MergeCounts,
}

impl Changes {
    /// Whether change row `i` deletes its key.
    pub fn is_delete(&self, i: usize) -> bool {
        self.deletes.is_valid(i) && self.deletes.value(i)
    }
}

impl KeyedApply {
    /// The changes in input `rows`: which are deletes, and the columns the
    /// table keeps.
    pub fn changes(&self, rows: &RecordBatch) -> Result<Changes> {
        let schema = rows.schema();
        for c in self
            .except
            .iter()
            .chain(self.delete_when.iter().map(|d| &d.column))
            .chain(self.truncate_when.iter().map(|d| &d.column))
        {
            if schema.field_with_name(c).is_err() {
                return Err(Error::InvalidInput(format!(
                    "the input has no column '{c}' (its columns: {})",
                    names(&schema)
                )));
            }
        }
        let matches = |d: &DeleteWhen| -> Result<BooleanArray> {
            let column = rows.column_by_name(&d.column).expect("checked");
            let text = arrow_cast::cast(column, &DataType::Utf8)?;
            let text = text
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .expect("cast to Utf8");
            Ok(text
                .iter()
                .map(|v| Some(v.is_some_and(|v| d.values.iter().any(|x| x == v))))
                .collect())
        };
        let deletes = match &self.delete_when {
            None => BooleanArray::from(vec![false; rows.num_rows()]),
            Some(d) => matches(d)?,
        };
        let truncates: Vec<usize> = match &self.truncate_when {
            None => vec![],
            Some(t) => matches(t)?
                .iter()
                .enumerate()
                .filter(|(_, v)| *v == Some(true))
                .map(|(i, _)| i)
                .collect(),
        };
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| {
                let name = schema.field(i).name();
                !self.except.contains(name) && self.unchanged_column.as_ref() != Some(name)
            })
            .collect();
        let unchanged = self.unchanged(&rows.project(&keep)?.schema(), rows)?;
        let rows = rows.project(&keep)?;
        Ok(match self.scd {
            // After the last truncate, the rest applies to an empty table.
            Scd::One => {
                let from = truncates.last().map_or(0, |i| i + 1);
                Changes {
                    rows: rows.slice(from, rows.num_rows() - from),
                    deletes: deletes.slice(from, deletes.len() - from),
                    truncated: !truncates.is_empty(),
                    truncates: vec![],
                    unchanged: unchanged
                        .into_iter()
                        .filter(|(i, _)| *i >= from)
                        .map(|(i, c)| (i - from, c))
                        .collect(),
                }
            }
            Scd::Two => Changes {
                rows,
                deletes,
                truncated: false,
                truncates,
                unchanged,
            },
        })
    }

    /// The columns (of `kept`) each input row of `rows` did not carry, as
    /// its [`KeyedApply::unchanged_column`] names them.
    fn unchanged(&self, kept: &Schema, rows: &RecordBatch) -> Result<HashMap<usize, Vec<usize>>> {
        let mut out = HashMap::new();
        let Some((name, column)) = self
            .unchanged_column
            .as_ref()
            .and_then(|n| Some((n, rows.column_by_name(n)?)))
        else {
            return Ok(out);
        };
        let Some(lists) = column.as_any().downcast_ref::<arrow_array::ListArray>() else {
            return Err(Error::InvalidInput(format!(
                "column '{name}' names the columns a change did not carry, as a list of names; it is {}",
                column.data_type()
            )));
        };
        for i in (0..lists.len()).filter(|&i| lists.is_valid(i)) {
            let names = lists.value(i);
            let names = arrow_cast::cast(&names, &DataType::Utf8)?;
            let names = names
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .expect("cast to Utf8");
            let mut columns = Vec::new();
            for n in names.iter().flatten() {
                let at = kept.index_of(n).map_err(|_| {
                    Error::InvalidInput(format!(
                        "change {} did not carry column '{n}', which the table does not have",
                        i + 1
                    ))
                })?;
                if self.keys.iter().chain([&self.sequence]).any(|k| k == n) {
                    return Err(Error::InvalidInput(format!(
                        "change {} did not carry its {}: every change needs its key and sequence",
                        i + 1,
                        n
                    )));
                }
                columns.push(at);
            }
            if !columns.is_empty() {
                out.insert(i, columns);
            }
        }
        Ok(out)
    }

    /// SCD type 2's truncates as deletes: each ends the current version of
    /// every key that `existing` (every row of the table) or the changes
    /// before it hold, at the truncate's sequence.
    pub(crate) fn truncates_as_deletes(
        &self,
        existing: &RecordBatch,
        changes: &Changes,
    ) -> Result<Changes> {
        let schema = changes.rows.schema();
        let data = data_columns(existing, schema.fields().len());
        let stored_keys = columns_named(&data, &self.keys);
        let converter = row_converter(&stored_keys)?;
        let stored = converter.convert_columns(&stored_keys)?;
        let changed = converter.convert_columns(&columns_named(&changes.rows, &self.keys))?;
        // Every key known so far, by a row of it.
        let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        let mut known: Vec<(usize, usize)> = (0..data.num_rows())
            .filter(|&j| seen.insert(stored.row(j).data()))
            .map(|j| (0, j))
            .collect();
        let truncates: std::collections::HashSet<usize> =
            changes.truncates.iter().copied().collect();
        // Per row made: where it comes from, whose sequence it has, and
        // whether it deletes.
        let (mut rows, mut sequences, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
        let mut unchanged = HashMap::new();
        for i in 0..changes.rows.num_rows() {
            if let Some(columns) = changes.unchanged.get(&i) {
                unchanged.insert(rows.len(), columns.clone());
            }
            if truncates.contains(&i) {
                rows.extend_from_slice(&known);
                sequences.extend(std::iter::repeat_n(i as u32, known.len()));
                deletes.extend(std::iter::repeat_n(true, known.len()));
                continue;
            }
            if seen.insert(changed.row(i).data()) {
                known.push((1, i));
            }
            rows.push((1, i));
            sequences.push(i as u32);
            deletes.push(changes.is_delete(i));
        }
        let made = take_rows(&schema, &[&data, &changes.rows], &rows)?;
        let at = schema.index_of(&self.sequence)?;
        let mut columns = made.columns().to_vec();
        columns[at] = arrow_select::take::take(
            changes.rows.column(at),
            &arrow_array::UInt32Array::from(sequences),
            None,
        )?;
        Ok(Changes {
            rows: RecordBatch::try_new(schema, columns)?,
            deletes: BooleanArray::from(deletes),
            truncated: false,
            truncates: vec![],
            unchanged,
        })
    }

    /// The schema of a table these changes are applied to: the changes'
    /// columns, and for SCD type 2 [`START_AT`] and [`END_AT`] typed like
    /// the sequence.
    pub fn table_schema(&self, changes: &Schema) -> Result<SchemaRef> {
        self.check(changes)?;
        let mut fields: Vec<Field> = changes
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        if self.scd == Scd::Two {
            let sequence = changes.field_with_name(&self.sequence)?.data_type().clone();
            fields.push(Field::new(START_AT, sequence.clone(), true));
            fields.push(Field::new(END_AT, sequence, true));
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// The schema of SCD type 1's tombstones: the keys, and `__SEQUENCE`.
    pub fn tombstones(&self, changes: &Schema) -> Result<SchemaRef> {
        let mut fields = Vec::new();
        for k in &self.keys {
            fields.push(changes.field_with_name(k)?.clone());
        }
        let sequence = changes.field_with_name(&self.sequence)?.data_type().clone();
        fields.push(Field::new(TOMBSTONE_SEQUENCE, sequence, false));
        Ok(Arc::new(Schema::new(fields)))
    }

    fn check(&self, changes: &Schema) -> Result<()> {
        let invalid = |reason: String| Error::InvalidInput(reason);
        if self.keys.is_empty() {
            return Err(invalid(
                "applying changes by key needs at least one key column (KEYS (...))".into(),
            ));
        }
        for c in self.keys.iter().chain([&self.sequence]) {
            if changes.field_with_name(c).is_err() {
                return Err(invalid(format!(
                    "the changes have no column '{c}' (their columns: {})",
                    names(changes)
                )));
            }
        }
        if self.keys.contains(&self.sequence) {
            return Err(invalid(format!(
                "'{}' cannot be both a key and the sequence",
                self.sequence
            )));
        }
        if self.scd == Scd::Two {
            for c in [START_AT, END_AT] {
                if changes.field_with_name(c).is_ok() {
                    return Err(invalid(format!(
                        "the changes have a column '{c}', which SCD type 2 keeps itself: rename or drop it"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Applies `changes` to `existing`, rows of the table (of
    /// [`KeyedApply::table_schema`]) that hold every stored row of the keys
    /// the changes name, and possibly others, which are kept as they are.
    /// `tombstones` are the deletes SCD type 1 remembers (of
    /// [`KeyedApply::tombstones`]).
    pub fn merge(
        &self,
        existing: &RecordBatch,
        changes: &Changes,
        tombstones: &RecordBatch,
    ) -> Result<Merged> {
        let schema = changes.rows.schema();
        let table = self.table_schema(&schema)?;
        if existing.schema().fields() != table.fields() {
            return Err(Error::SchemaMismatch {
                table: String::new(),
                reason: format!(
                    "the table has columns [{}], the changes make [{}]",
                    names(&existing.schema()),
                    names(&table)
                ),
            });
        }
        let merge = Merge {
            spec: self,
            data: data_columns(existing, schema.fields().len()),
            k: Keys::new(self, &schema, existing, changes, tombstones)?,
            table,
            existing,
            changes,
            tombstones,
        };
        match self.scd {
            Scd::One => merge.one(),
            Scd::Two => merge.two(),
        }
    }
}

/// One merge's inputs.
struct Merge<'a> {
    spec: &'a KeyedApply,
    /// The table's schema.
    table: SchemaRef,
    /// `existing` without SCD type 2's columns.
    data: RecordBatch,
    existing: &'a RecordBatch,
    changes: &'a Changes,
    tombstones: &'a RecordBatch,
    k: Keys,
}

impl Merge<'_> {
    fn one(&self) -> Result<Merged> {
        let Merge {
            spec,
            table,
            data,
            existing,
            changes,
            tombstones,
            k,
        } = self;
        let mut counts = MergeCounts::default();
        // The winning change of each key in the batch.
        let mut winners: HashMap<&[u8], usize> = HashMap::new();
        for i in 0..changes.rows.num_rows() {
            let key = k.changes.row(i);
            match winners.entry(key.data()) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(i);
                }
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    counts.ignored += 1;
                    if k.change_seq.row(i) >= k.change_seq.row(*o.get()) {
                        o.insert(i);
                    }
                }
            }
        }
        // What the table holds of those keys: its newest row and tombstone.
        let mut stored: HashMap<&[u8], (Option<usize>, Option<usize>)> = HashMap::new();
        for j in 0..existing.num_rows() {
            let key = k.existing.row(j).data();
            if winners.contains_key(key) {
                let e = stored.entry(key).or_default();
                if e.0
                    .is_none_or(|o| k.existing_seq.row(j) > k.existing_seq.row(o))
                {
                    e.0 = Some(j);
                }
            }
        }
        for t in 0..tombstones.num_rows() {
            let key = k.tombstones.row(t).data();
            if winners.contains_key(key) {
                stored.entry(key).or_default().1 = Some(t);
            }
        }
        // Keys whose stored rows go (every stored row of such a key: there
        // is one, unless the table was written by something else).
        let mut goes: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        let mut forgotten = vec![false; tombstones.num_rows()];
        let mut added = Vec::new();
        let mut deleted = Vec::new();
        for (key, &i) in &winners {
            let (row, tomb) = stored.get(key).copied().unwrap_or_default();
            let seq = k.change_seq.row(i);
            let newest = [
                row.map(|j| k.existing_seq.row(j)),
                tomb.map(|t| k.tombstone_seq.row(t)),
            ]
            .into_iter()
            .flatten()
            .max();
            if newest.is_some_and(|n| seq <= n) {
                counts.ignored += 1;
                continue;
            }
            if row.is_some() {
                goes.insert(key);
            }
            if let Some(t) = tomb {
                forgotten[t] = true;
            }
            if changes.is_delete(i) {
                counts.deleted += u64::from(row.is_some());
                deleted.push(i);
            } else {
                counts.upserted += 1;
                added.push(i);
            }
        }
        added.sort_unstable();
        deleted.sort_unstable();
        let indices: Vec<(usize, usize)> = (0..existing.num_rows())
            .filter(|&j| !goes.contains(k.existing.row(j).data()))
            .map(|j| (0, j))
            .chain(added.iter().map(|&i| (1, i)))
            .collect();
        // Values a winning change did not carry: from the key's changes
        // before it, or its stored row.
        let mut carried = Vec::new();
        let in_batch = self.carried_in_batch();
        let first = indices.len() - added.len();
        for (n, &i) in added.iter().enumerate() {
            for &c in changes.unchanged.get(&i).into_iter().flatten() {
                let row = stored.get(k.changes.row(i).data()).and_then(|s| s.0);
                let from = in_batch
                    .get(&(i, c))
                    .copied()
                    .unwrap_or(row.map(|j| (0, j)));
                carried.push((first + n, c, from));
            }
        }
        let rows = take_rows_carrying(table, &[data, &changes.rows], &indices, &carried)?;
        // Tombstones: the ones kept, and the new deletes.
        let tomb_schema = tombstones.schema();
        let new_tombs = tomb_rows(spec, &tomb_schema, &changes.rows)?;
        let indices: Vec<(usize, usize)> = (0..tombstones.num_rows())
            .filter(|&t| !forgotten[t])
            .map(|t| (0, t))
            .chain(deleted.iter().map(|&i| (1, i)))
            .collect();
        let tombstones = take_rows(&tomb_schema, &[tombstones, &new_tombs], &indices)?;
        Ok(Merged {
            rows,
            tombstones,
            counts,
        })
    }

    /// Each changed key's changes, in the order they apply: by sequence,
    /// then as they came.
    fn chains(&self) -> HashMap<&[u8], Vec<usize>> {
        let k = &self.k;
        let mut chains: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for i in 0..self.changes.rows.num_rows() {
            chains.entry(k.changes.row(i).data()).or_default().push(i);
        }
        for chain in chains.values_mut() {
            chain.sort_by(|a, b| {
                k.change_seq
                    .row(*a)
                    .cmp(&k.change_seq.row(*b))
                    .then(a.cmp(b))
            });
        }
        chains
    }

    /// Where the values changes did not carry are among the batch's
    /// earlier changes of their key (in the order they apply): by (change,
    /// column), the last change that carried it, or `None` after a delete
    /// (nothing says). A value not found here is the table's: the stored
    /// row's, or the version's before the change. (A value the source did
    /// not send is the one the key's version before had, so the latest
    /// known is it.)
    fn carried_in_batch(&self) -> HashMap<(usize, usize), Option<Source>> {
        let changes = self.changes;
        let mut out = HashMap::new();
        if changes.unchanged.is_empty() {
            return out;
        }
        let columns = changes.rows.num_columns();
        for chain in self.chains().values() {
            if !chain.iter().any(|i| changes.unchanged.contains_key(i)) {
                continue;
            }
            // Per column, where the key's value is so far in the batch.
            let mut known: HashMap<usize, Option<Source>> = HashMap::new();
            for &i in chain {
                if changes.is_delete(i) {
                    known = (0..columns).map(|c| (c, None)).collect();
                    continue;
                }
                let unchanged = changes.unchanged.get(&i);
                for &c in unchanged.into_iter().flatten() {
                    if let Some(from) = known.get(&c) {
                        out.insert((i, c), *from);
                    }
                }
                for c in 0..columns {
                    if !unchanged.is_some_and(|u| u.contains(&c)) {
                        known.insert(c, Some((1, i)));
                    }
                }
            }
        }
        out
    }

    fn two(&self) -> Result<Merged> {
        let Merge {
            spec,
            table,
            data,
            existing,
            changes,
            tombstones,
            k,
        } = self;
        let mut counts = MergeCounts::default();
        let n = existing.num_rows();
        let changed: std::collections::HashSet<&[u8]> = (0..changes.rows.num_rows())
            .map(|i| k.changes.row(i).data())
            .collect();
        // Per changed key, its events: the stored versions (each an upsert
        // at its start, and a delete at its end when no version starts
        // there) and the changes.
        let mut events: HashMap<&[u8], Vec<Event>> = HashMap::new();
        let mut replaced = vec![false; n];
        let start = existing.column(existing.num_columns() - 2);
        let end = existing.column(existing.num_columns() - 1);
        for (j, r) in replaced.iter_mut().enumerate() {
            let key = k.existing.row(j).data();
            if changed.contains(key) {
                *r = true;
                let e = events.entry(key).or_default();
                e.push(Event::stored_upsert(j));
                if end.is_valid(j) {
                    e.push(Event::stored_delete(j));
                }
            }
        }
        for i in 0..changes.rows.num_rows() {
            let delete = changes.is_delete(i);
            events
                .entry(k.changes.row(i).data())
                .or_default()
                .push(Event::change(i, delete));
        }
        // Rows: (data source, start source, end source); sources index
        // [existing, changes] for data, [existing start, change sequence,
        // existing end, null] for the sequences.
        let mut out: Vec<Version> = (0..n)
            .filter(|&j| !replaced[j])
            .map(|j| ((0, j), (0, j), (2, j), 0))
            .collect();
        let in_batch = self.carried_in_batch();
        // Per version, the values it carries from the one before it (the
        // columns its change did not carry); the first: none.
        let mut carried_by: Vec<Vec<(usize, Option<Source>)>> = vec![vec![]];
        for (_, mut evs) in events {
            let seq = |e: &Event| match e.at {
                At::StoredStart(j) => k.existing_seq.row(j),
                At::StoredEnd(j) => k.existing_end.row(j),
                At::Change(i) => k.change_seq.row(i),
            };
            // Stored events first among equals (a change at the same
            // sequence was applied before), then batch order.
            evs.sort_by(|a, b| seq(a).cmp(&seq(b)).then(a.rank().cmp(&b.rank())));
            // One event per sequence: a stored version's start outranks the
            // stored end at the same point (the end was that start).
            let mut kept: Vec<Event> = Vec::with_capacity(evs.len());
            for e in evs {
                match kept.last() {
                    Some(last) if seq(last) == seq(&e) => {
                        let stored_start = matches!(last.at, At::StoredStart(_));
                        let both_changes =
                            matches!((last.at, e.at), (At::Change(_), At::Change(_)));
                        if both_changes {
                            // The later of one batch's changes at a sequence wins.
                            counts.ignored += 1;
                            *kept.last_mut().expect("checked") = e;
                        } else if matches!(e.at, At::StoredStart(_)) && !stored_start {
                            *kept.last_mut().expect("checked") = e;
                        } else if matches!(e.at, At::Change(_)) {
                            counts.ignored += 1;
                        }
                    }
                    _ => kept.push(e),
                }
            }
            // The key's history, rebuilt.
            let mut open: Option<(Source, Source, usize)> = None;
            let source = |e: &Event| match e.at {
                At::StoredStart(j) => (0, j),
                At::StoredEnd(j) => (2, j),
                At::Change(i) => (1, i),
            };
            for e in &kept {
                let before = open.take();
                if let Some((row, started, carried)) = before {
                    out.push((row, started, source(e), carried));
                }
                match (e.at, e.delete) {
                    (At::Change(_), true) => counts.deleted += u64::from(before.is_some()),
                    (At::Change(i), false) => {
                        counts.upserted += 1;
                        let carried = match changes.unchanged.get(&i) {
                            None => 0,
                            Some(columns) => {
                                let from = |c: usize| {
                                    if let Some(from) = in_batch.get(&(i, c)) {
                                        return *from;
                                    }
                                    let (row, _, carried) = before?;
                                    match carried_by[carried].iter().find(|x| x.0 == c) {
                                        Some(x) => x.1,
                                        None => Some(row),
                                    }
                                };
                                carried_by.push(columns.iter().map(|&c| (c, from(c))).collect());
                                carried_by.len() - 1
                            }
                        };
                        open = Some(((1, i), (1, i), carried));
                    }
                    (At::StoredStart(j), _) => open = Some(((0, j), (0, j), 0)),
                    (At::StoredEnd(_), _) => {}
                }
            }
            if let Some((row, started, carried)) = open {
                out.push((row, started, (3, 0), carried));
            }
        }
        out.sort_unstable();
        let data_rows: Vec<(usize, usize)> = out.iter().map(|o| o.0).collect();
        let carried: Vec<(usize, usize, Option<Source>)> = out
            .iter()
            .enumerate()
            .flat_map(|(at, o)| carried_by[o.3].iter().map(move |&(c, from)| (at, c, from)))
            .collect();
        let data_schema = changes.rows.schema();
        let rows = take_rows_carrying(&data_schema, &[data, &changes.rows], &data_rows, &carried)?;
        let sequence = changes
            .rows
            .column_by_name(&spec.sequence)
            .expect("checked");
        let null = new_null_array(sequence.data_type(), 1);
        let starts: Vec<(usize, usize)> = out.iter().map(|o| o.1).collect();
        let ends: Vec<(usize, usize)> = out.iter().map(|o| o.2).collect();
        let sources = [
            start.as_ref(),
            sequence.as_ref(),
            end.as_ref(),
            null.as_ref(),
        ];
        let mut columns = rows.columns().to_vec();
        columns.push(interleave(&sources, &starts)?);
        columns.push(interleave(&sources, &ends)?);
        Ok(Merged {
            rows: RecordBatch::try_new(table.clone(), columns)?,
            tombstones: (*tombstones).clone(),
            counts,
        })
    }
}

/// A row of the sources: (source, row).
type Source = (usize, usize);

/// An SCD type 2 row to write: where its data, start and end come from,
/// and which values it carries from the version before it (an index of
/// `carried_by` in [`Merge::two`]).
type Version = (Source, Source, Source, usize);

/// SCD type 1's tombstone column: the sequence of the key's delete.
pub const TOMBSTONE_SEQUENCE: &str = "__SEQUENCE";

#[derive(Debug, Clone, Copy)]
enum At {
    StoredStart(usize),
    StoredEnd(usize),
    Change(usize),
}

#[derive(Debug, Clone, Copy)]
struct Event {
    at: At,
    delete: bool,
}

impl Event {
    fn stored_upsert(j: usize) -> Self {
        Event {
            at: At::StoredStart(j),
            delete: false,
        }
    }
    fn stored_delete(j: usize) -> Self {
        Event {
            at: At::StoredEnd(j),
            delete: true,
        }
    }
    fn change(i: usize, delete: bool) -> Self {
        Event {
            at: At::Change(i),
            delete,
        }
    }
    fn rank(&self) -> (u8, usize) {
        match self.at {
            At::StoredStart(j) => (0, j),
            At::StoredEnd(j) => (1, j),
            At::Change(i) => (2, i),
        }
    }
}

/// Keys and sequences of everything a merge compares, in arrow's row
/// format (comparable as bytes).
struct Keys {
    existing: Rows,
    changes: Rows,
    tombstones: Rows,
    existing_seq: Rows,
    existing_end: Rows,
    change_seq: Rows,
    tombstone_seq: Rows,
}

impl Keys {
    fn new(
        spec: &KeyedApply,
        schema: &Schema,
        existing: &RecordBatch,
        changes: &Changes,
        tombstones: &RecordBatch,
    ) -> Result<Self> {
        let fields = spec
            .keys
            .iter()
            .map(|k| {
                Ok(SortField::new(
                    schema.field_with_name(k)?.data_type().clone(),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let keys = RowConverter::new(fields)?;
        let sequence_type = schema.field_with_name(&spec.sequence)?.data_type().clone();
        let seqs = RowConverter::new(vec![SortField::new(sequence_type)])?;
        let columns = |b: &RecordBatch, names: &[String]| columns_named(b, names);
        let change_keys = columns(&changes.rows, &spec.keys);
        let change_seq = columns(&changes.rows, std::slice::from_ref(&spec.sequence));
        for (name, c) in spec
            .keys
            .iter()
            .zip(&change_keys)
            .chain([(&spec.sequence, &change_seq[0])])
        {
            if let Some(i) = (0..c.len()).find(|&i| c.is_null(i)) {
                return Err(Error::InvalidInput(format!(
                    "change {} has no value for '{name}': every change needs its key and sequence",
                    i + 1
                )));
            }
        }
        let (existing_seq, existing_end) = match spec.scd {
            Scd::One => {
                let s = columns(existing, std::slice::from_ref(&spec.sequence));
                (s.clone(), s)
            }
            Scd::Two => (
                vec![existing.column(existing.num_columns() - 2).clone()],
                vec![existing.column(existing.num_columns() - 1).clone()],
            ),
        };
        let tomb_keys = columns(tombstones, &spec.keys);
        let tomb_seq = columns(tombstones, &[TOMBSTONE_SEQUENCE.to_string()]);
        Ok(Keys {
            existing: keys.convert_columns(&columns(existing, &spec.keys))?,
            changes: keys.convert_columns(&change_keys)?,
            tombstones: keys.convert_columns(&tomb_keys)?,
            existing_seq: seqs.convert_columns(&existing_seq)?,
            existing_end: seqs.convert_columns(&existing_end)?,
            change_seq: seqs.convert_columns(&change_seq)?,
            tombstone_seq: seqs.convert_columns(&tomb_seq)?,
        })
    }
}

/// The columns of `batch` named `names` (checked to be there).
fn columns_named(batch: &RecordBatch, names: &[String]) -> Vec<ArrayRef> {
    names
        .iter()
        .map(|n| batch.column_by_name(n).expect("checked").clone())
        .collect()
}

/// A converter of columns of the types `columns` have into arrow's row
/// format, where keys compare as bytes.
fn row_converter(columns: &[ArrayRef]) -> Result<RowConverter> {
    Ok(RowConverter::new(
        columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?)
}

/// `batch`'s first `n` columns (SCD type 2's own columns follow them).
fn data_columns(batch: &RecordBatch, n: usize) -> RecordBatch {
    batch
        .project(&(0..n).collect::<Vec<_>>())
        .expect("n columns")
}

/// The rows at `indices` ((source, row)) of `sources`, as `schema`.
fn take_rows(
    schema: &SchemaRef,
    sources: &[&RecordBatch],
    indices: &[(usize, usize)],
) -> Result<RecordBatch> {
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = sources.iter().map(|s| s.column(c).as_ref()).collect();
            interleave(&arrays, indices)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(indices.len()));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}

/// [`take_rows`], with some values taken from elsewhere: `carried` is
/// (row of the result, column, where its value comes from; `None`: null).
fn take_rows_carrying(
    schema: &SchemaRef,
    sources: &[&RecordBatch],
    indices: &[(usize, usize)],
    carried: &[(usize, usize, Option<Source>)],
) -> Result<RecordBatch> {
    let rows = take_rows(schema, sources, indices)?;
    if carried.is_empty() {
        return Ok(rows);
    }
    let mut columns = rows.columns().to_vec();
    for (c, column) in columns.iter_mut().enumerate() {
        let mut patched = indices.to_vec();
        let mut any = false;
        for &(row, _, from) in carried.iter().filter(|x| x.1 == c) {
            // A null: the row after the sources, in a one-row null array.
            patched[row] = from.unwrap_or((sources.len(), 0));
            any = true;
        }
        if any {
            let null = new_null_array(schema.field(c).data_type(), 1);
            let mut arrays: Vec<&dyn Array> =
                sources.iter().map(|s| s.column(c).as_ref()).collect();
            arrays.push(null.as_ref());
            *column = interleave(&arrays, &patched)?;
        }
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The tombstone columns of change rows `rows`.
fn tomb_rows(spec: &KeyedApply, schema: &SchemaRef, rows: &RecordBatch) -> Result<RecordBatch> {
    let columns = spec
        .keys
        .iter()
        .chain([&spec.sequence])
        .map(|c| rows.column_by_name(c).expect("checked").clone())
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// `batches` as one batch of `schema`.
fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    Ok(arrow_select::concat::concat_batches(schema, batches)?)
}

fn names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `t` is a type a sequence can have: any type arrow orders in
/// its row format.
pub fn orderable(t: &DataType) -> bool {
    RowConverter::supports_fields(&[SortField::new(t.clone())])
}

mod delta;
mod lane;
#[cfg(test)]
mod tests;

pub use delta::{Applied, apply};
pub use lane::{KeyedLane, Staged, apply_staged};
