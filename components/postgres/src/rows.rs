//! Change rows being built into a record batch: the table's columns (as
//! the host's schema for the stream has them) and the change columns.

use std::collections::HashMap;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::catalog::{CHANGE_SEQ, CHANGE_TYPE, COMMIT_LSN, COMMIT_TIMESTAMP, UNCHANGED};
use crate::values::Column;

/// What a change row was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Insert,
    UpdatePreimage,
    UpdatePostimage,
    Delete,
    /// The table was emptied (TRUNCATE); the row's own columns are null.
    Truncate,
}

impl ChangeType {
    fn as_str(self) -> &'static str {
        match self {
            ChangeType::Insert => "insert",
            ChangeType::UpdatePreimage => "update_preimage",
            ChangeType::UpdatePostimage => "update_postimage",
            ChangeType::Delete => "delete",
            ChangeType::Truncate => "truncate",
        }
    }
}

/// Where a change is: its transaction's commit and its place in it.
#[derive(Debug, Clone, Copy)]
pub struct Commit {
    pub lsn: u64,
    pub micros: Option<i64>,
}

/// Rows being built.
pub struct Rows {
    table: String,
    schema: SchemaRef,
    columns: Vec<Column>,
    by_name: HashMap<String, usize>,
    /// Which of the schema's fields are the table's own (a column added
    /// to the table comes after the change columns).
    own: Vec<bool>,
    /// How many of the schema's fields are the table's own.
    owned: usize,
    /// Per column, the [`Rows::row`] it was last set in.
    set_in: Vec<u64>,
    /// How many columns the row being built has set.
    set: usize,
    /// The row being built, counted from 1 over the rows' life.
    row: u64,
    /// How many rows were ended since the last batch.
    ended: usize,
    /// Where the change columns are, if the schema has them:
    /// [`CHANGE_TYPE`], [`COMMIT_LSN`], [`COMMIT_TIMESTAMP`], [`CHANGE_SEQ`],
    /// [`UNCHANGED`].
    meta: [Option<usize>; 5],
    /// The columns the row being built did not carry.
    unchanged: Vec<usize>,
    /// The ended rows whose change columns are not written yet: a run of
    /// one kind of change in one commit, of consecutive sequences, with
    /// every value carried (a snapshot is one run a batch).
    run: Option<Run>,
}

/// Rows of one kind of change in one commit, with consecutive sequences.
#[derive(Debug, Clone, Copy)]
struct Run {
    change: ChangeType,
    commit: Commit,
    first_seq: i64,
    rows: usize,
}

impl Rows {
    /// Rows of `schema` (the stream's, as the host keeps it) for `table`.
    pub fn new(table: &str, schema: SchemaRef) -> Result<Rows, String> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column::new(f.data_type()).map_err(|e| format!("column '{}': {e}", f.name())))
            .collect::<Result<Vec<_>, _>>()?;
        let by_name = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().clone(), i))
            .collect();
        let own: Vec<bool> = schema
            .fields()
            .iter()
            .map(|f| {
                ![
                    CHANGE_TYPE,
                    COMMIT_LSN,
                    COMMIT_TIMESTAMP,
                    CHANGE_SEQ,
                    UNCHANGED,
                ]
                .contains(&f.name().as_str())
            })
            .collect();
        let at = |name: &str| schema.index_of(name).ok();
        let meta = [
            at(CHANGE_TYPE),
            at(COMMIT_LSN),
            at(COMMIT_TIMESTAMP),
            at(CHANGE_SEQ),
            at(UNCHANGED),
        ];
        let owned = own.iter().filter(|&&o| o).count();
        Ok(Rows {
            meta,
            table: table.to_string(),
            set_in: vec![0; columns.len()],
            set: 0,
            row: 1,
            ended: 0,
            schema,
            columns,
            by_name,
            own,
            owned,
            unchanged: Vec::new(),
            run: None,
        })
    }

    /// Where the column `name` is, if the schema has it.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied().filter(|&i| self.own[i])
    }

    /// The type of column `at`.
    pub fn data_type(&self, at: usize) -> &arrow_schema::DataType {
        self.schema.field(at).data_type()
    }

    /// Sets column `at` of the row being built from its text.
    pub fn set(&mut self, at: usize, text: Option<&str>) -> Result<(), String> {
        let pushed = self.columns[at].push(text);
        self.record(at, pushed)
    }

    /// Sets column `at` of the row being built from its value in `COPY`'s
    /// binary format ([`crate::values::binary_as_is`]).
    pub fn set_binary(&mut self, at: usize, value: Option<&[u8]>) -> Result<(), String> {
        let pushed = self.columns[at].push_binary(value);
        self.record(at, pushed)
    }

    /// Column `at` of the row is set, if `pushed` is not an error, which
    /// is then said of the column.
    fn record(&mut self, at: usize, pushed: Result<(), String>) -> Result<(), String> {
        match pushed {
            Ok(()) => {
                if std::mem::replace(&mut self.set_in[at], self.row) != self.row {
                    self.set += 1;
                }
                Ok(())
            }
            Err(e) => Err(self.cannot_hold(at, e)),
        }
    }

    /// The error `e` of a value of column `at`, said of the column.
    #[cold]
    fn cannot_hold(&self, at: usize, e: String) -> String {
        let field = self.schema.field(at);
        let pg = field
            .metadata()
            .get("postgres.type")
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        format!(
            "{}.{}{pg}: {e}, which the table's column of type {} cannot hold",
            self.table,
            field.name(),
            field.data_type()
        )
    }

    /// Whether the rows can say which columns a change did not carry (the
    /// stream's schema has [`UNCHANGED`]).
    pub fn say_unchanged(&self) -> bool {
        self.meta[4].is_some()
    }

    /// Column `at` of the row being built is a value the change did not
    /// carry: null, and named in [`UNCHANGED`].
    pub fn unchanged(&mut self, at: usize) {
        self.unchanged.push(at);
    }

    /// Ends the row: the columns not set are null, the change columns
    /// say what and where it was.
    pub fn end(&mut self, change: ChangeType, commit: Commit, seq: i64) -> Result<(), String> {
        if self.set < self.owned {
            for i in 0..self.columns.len() {
                if self.own[i] && self.set_in[i] != self.row {
                    self.columns[i].push_null();
                }
            }
        }
        self.set = 0;
        self.row += 1;
        self.ended += 1;
        if let Some(run) = &mut self.run
            && run.change == change
            && run.commit.lsn == commit.lsn
            && run.commit.micros == commit.micros
            && run.first_seq.checked_add(run.rows as i64) == Some(seq)
            && self.unchanged.is_empty()
        {
            run.rows += 1;
            return Ok(());
        }
        self.end_run()?;
        if self.unchanged.is_empty() {
            self.run = Some(Run {
                change,
                commit,
                first_seq: seq,
                rows: 1,
            });
            return Ok(());
        }
        if let Some(i) = self.meta[4] {
            let names: Vec<&str> = self
                .unchanged
                .iter()
                .map(|&c| self.schema.field(c).name().as_str())
                .collect();
            self.columns[i].push_names(Some(&names))?;
        }
        self.unchanged.clear();
        self.push_change(change, commit, seq, 1)
    }

    /// Writes the change columns of the run of rows ended so far.
    fn end_run(&mut self) -> Result<(), String> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        if let Some(i) = self.meta[4] {
            self.columns[i].push_nulls(run.rows);
        }
        self.push_change(run.change, run.commit, run.first_seq, run.rows)
    }

    /// Writes the change columns but [`UNCHANGED`] of `rows` rows of
    /// `change` in `commit`, of sequences from `first_seq` on.
    fn push_change(
        &mut self,
        change: ChangeType,
        commit: Commit,
        first_seq: i64,
        rows: usize,
    ) -> Result<(), String> {
        let [change_type, lsn, timestamp, sequence, _] = self.meta;
        if let Some(i) = change_type {
            self.columns[i].push_text_n(change.as_str(), rows)?;
        }
        for (at, value) in [(lsn, Some(commit.lsn as i64)), (timestamp, commit.micros)] {
            if let Some(i) = at {
                self.columns[i].push_number_n(value, rows)?;
            }
        }
        if let Some(i) = sequence {
            self.columns[i].push_sequence(first_seq, rows)?;
        }
        Ok(())
    }

    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.ended
    }

    /// The rows so far as a batch; empty after.
    pub fn finish(&mut self) -> Result<RecordBatch, String> {
        self.end_run()?;
        self.ended = 0;
        let arrays = self.columns.iter_mut().map(Column::finish).collect();
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use arrow_array::{Array, ListArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn change_columns_of_a_run_are_written_together_and_in_order() {
        let mut fields = vec![
            Field::new("id", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
        ];
        fields.extend(crate::catalog::change_fields());
        let schema = Arc::new(Schema::new(fields));
        let mut rows = Rows::new("t", schema).unwrap();
        let first = Commit {
            lsn: 7,
            micros: Some(70),
        };
        let second = Commit {
            lsn: 9,
            micros: None,
        };
        // Three inserts of one commit (the second without a note), an
        // update that did not carry the note, a delete of another commit.
        for (seq, note) in [(0, Some("a")), (1, None), (2, Some("c"))] {
            rows.set(0, Some(&seq.to_string())).unwrap();
            if note.is_some() {
                rows.set(1, note).unwrap();
            }
            rows.end(ChangeType::Insert, first, seq).unwrap();
        }
        rows.set(0, Some("1")).unwrap();
        rows.unchanged(1);
        rows.end(ChangeType::UpdatePostimage, first, 3).unwrap();
        rows.set(0, Some("2")).unwrap();
        rows.end(ChangeType::Delete, second, 0).unwrap();
        assert_eq!(rows.len(), 5);
        let b = rows.finish().unwrap();
        assert_eq!(rows.len(), 0);
        let kinds: Vec<_> = b.column(2).as_string::<i32>().iter().flatten().collect();
        assert_eq!(
            kinds,
            ["insert", "insert", "insert", "update_postimage", "delete"]
        );
        let lsn = b.column(3).as_primitive::<Int64Type>();
        assert_eq!(lsn.values().as_ref(), &[7, 7, 7, 7, 9]);
        let at = b.column(4).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(
            at.iter().collect::<Vec<_>>(),
            [Some(70); 4]
                .iter()
                .copied()
                .chain([None])
                .collect::<Vec<_>>()
        );
        let seq = b.column(5).as_primitive::<Int64Type>();
        assert_eq!(seq.values().as_ref(), &[0, 1, 2, 3, 0]);
        let notes = b.column(1).as_string::<i32>();
        assert_eq!(
            notes.iter().collect::<Vec<_>>(),
            [Some("a"), None, Some("c"), None, None]
        );
        let unchanged = b.column(6).as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(unchanged.null_count(), 4);
        assert_eq!(unchanged.value(3).as_string::<i32>().value(0), "note");
    }
}
