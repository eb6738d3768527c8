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
    filled: Vec<bool>,
    /// Where the change columns are, if the schema has them:
    /// [`CHANGE_TYPE`], [`COMMIT_LSN`], [`COMMIT_TIMESTAMP`], [`CHANGE_SEQ`],
    /// [`UNCHANGED`].
    meta: [Option<usize>; 5],
    /// The columns the row being built did not carry.
    unchanged: Vec<usize>,
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
        let own = schema
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
        Ok(Rows {
            meta,
            table: table.to_string(),
            filled: vec![false; columns.len()],
            schema,
            columns,
            by_name,
            own,
            unchanged: Vec::new(),
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

    /// Column `at` is set, if `pushed` is not an error, which is said of
    /// the column.
    fn record(&mut self, at: usize, pushed: Result<(), String>) -> Result<(), String> {
        pushed.map_err(|e| {
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
        })?;
        self.filled[at] = true;
        Ok(())
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
        for i in (0..self.columns.len()).filter(|&i| self.own[i]) {
            if !std::mem::replace(&mut self.filled[i], false) {
                self.columns[i].push_null();
            }
        }
        let [change_type, lsn, timestamp, sequence, unchanged] = self.meta;
        if let Some(i) = unchanged {
            let names: Vec<&str> = self
                .unchanged
                .iter()
                .map(|&c| self.schema.field(c).name().as_str())
                .collect();
            self.columns[i].push_names((!names.is_empty()).then_some(&names))?;
        }
        self.unchanged.clear();
        if let Some(i) = change_type {
            self.columns[i].push(Some(change.as_str()))?;
        }
        let numbers = [
            (lsn, Some(commit.lsn as i64)),
            (timestamp, commit.micros),
            (sequence, Some(seq)),
        ];
        for (at, value) in numbers {
            if let Some(i) = at {
                self.columns[i].push_number(value)?;
            }
        }
        Ok(())
    }

    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// The rows so far as a batch; empty after.
    pub fn finish(&mut self) -> Result<RecordBatch, String> {
        let arrays = self.columns.iter_mut().map(Column::finish).collect();
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| e.to_string())
    }
}
