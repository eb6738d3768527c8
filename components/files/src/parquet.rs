//! Parquet, read through ranged gets: the footer first, then only the column
//! chunks of each row group, never a whole-file copy.
//!
//! Invariants:
//! - a file yields exactly the rows its row groups hold, or the read fails
//!   saying so: the footer's own row count is not trusted (some writers
//!   leave it 0), and rows read are counted against the row groups;
//! - INT96 timestamps (Spark's and Impala's legacy encoding) are read at
//!   microsecond precision as UTC instants, as Spark does, so years outside
//!   1677-2262 keep their value instead of wrapping in nanoseconds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_cast::cast::{CastOptions, cast_with_options};
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::errors::ParquetError;
use parquet::file::metadata::{FileMetaData, ParquetMetaData};
use parquet::file::reader::{ChunkReader, Length};
use sluice_connector_sdk::storage::ObjectReader;
use sluice_connector_sdk::{Error, host};

use crate::options::{FileRef, Options};
use crate::shape::{METADATA, Shape};

/// A Parquet file behind the host's `get-range`.
struct Remote {
    location: String,
    size: u64,
}

impl Length for Remote {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for Remote {
    type T = ObjectReader;

    fn get_read(&self, start: u64) -> parquet::errors::Result<ObjectReader> {
        Ok(ObjectReader::with_range(
            self.location.clone(),
            start,
            self.size,
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        host::get_range(&self.location, start, length as u64)
            .map(Bytes::from)
            .map_err(|e| ParquetError::External(Box::new(e)))
    }
}

/// A reader of `file` and the rows its row groups hold.
fn builder(
    file: &FileRef,
    opts: &Options,
) -> Result<(ParquetRecordBatchReaderBuilder<Remote>, u64), Error> {
    let remote = Remote {
        location: file.location.clone(),
        size: file.size,
    };
    let unreadable = |e: ParquetError| {
        Error::Data(format!(
            "{}: not a readable Parquet file: {e}",
            file.location
        ))
    };
    let loaded =
        ArrowReaderMetadata::load(&remote, ArrowReaderOptions::new()).map_err(unreadable)?;
    let rows: i64 = loaded
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .sum();
    let rows = u64::try_from(rows).map_err(|_| {
        Error::Data(format!(
            "{}: its row groups claim {rows} rows",
            file.location
        ))
    })?;
    // The reader sizes its batches by the footer's row count: a footer that
    // says 0 while its row groups hold rows would read as empty.
    let mut metadata = loaded.metadata().clone();
    let f = metadata.file_metadata();
    if f.num_rows() != rows as i64 {
        let fixed = FileMetaData::new(
            f.version(),
            rows as i64,
            f.created_by().map(str::to_string),
            f.key_value_metadata().cloned(),
            f.schema_descr_ptr(),
            f.column_orders().cloned(),
        );
        metadata = Arc::new(ParquetMetaData::new(fixed, metadata.row_groups().to_vec()));
    }
    let mut options = ArrowReaderOptions::new();
    if let Some(schema) = int96_as_micros(&metadata, loaded.schema()) {
        options = options.with_schema(Arc::new(schema));
    }
    let loaded = ArrowReaderMetadata::try_new(metadata, options).map_err(unreadable)?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(remote, loaded)
        .with_batch_size(opts.batch_size);
    Ok((builder, rows))
}

/// `schema` with its INT96 columns (top level or inside structs) read as
/// microsecond timestamps in UTC rather than nanoseconds without a zone,
/// if it has any.
fn int96_as_micros(metadata: &ParquetMetaData, schema: &Schema) -> Option<Schema> {
    let int96: Vec<Vec<String>> = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .filter(|c| c.physical_type() == parquet::basic::Type::INT96)
        .map(|c| c.path().parts().to_vec())
        .collect();
    if int96.is_empty() {
        return None;
    }
    fn rewrite(f: &Field, prefix: &[String], int96: &[Vec<String>]) -> Field {
        let mut path = prefix.to_vec();
        path.push(f.name().clone());
        match f.data_type() {
            DataType::Timestamp(TimeUnit::Nanosecond, None) if int96.contains(&path) => {
                f.clone().with_data_type(DataType::Timestamp(
                    TimeUnit::Microsecond,
                    Some("UTC".into()),
                ))
            }
            DataType::Struct(children) => f.clone().with_data_type(DataType::Struct(Fields::from(
                children
                    .iter()
                    .map(|c| rewrite(c, &path, int96))
                    .collect::<Vec<_>>(),
            ))),
            _ => f.clone(),
        }
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| rewrite(f, &[], &int96))
        .collect();
    Some(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The union of the sampled files' columns; a column whose type differs
/// between files is an error that names both files.
pub fn infer(files: &[FileRef], opts: &Options) -> Result<Vec<Field>, Error> {
    let mut merged: Vec<(Field, String)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for file in files {
        let (b, _) = builder(file, opts)?;
        for f in b.schema().fields() {
            if f.name().is_empty() || f.name().chars().any(char::is_control) {
                return Err(Error::Data(format!(
                    "{}: column '{}' has an empty name or one holding a control character, which no Delta reader accepts",
                    file.location,
                    f.name().escape_debug()
                )));
            }
            match index.get(f.name()).map(|&i| &merged[i]) {
                Some((m, from)) if m.data_type() != f.data_type() => {
                    return Err(Error::Data(format!(
                        "column '{}' is {} in {from} but {} in {}; give its type with schemaHints",
                        f.name(),
                        m.data_type(),
                        f.data_type(),
                        file.location
                    )));
                }
                Some(_) => {}
                None => {
                    index.insert(f.name().clone(), merged.len());
                    merged.push((
                        f.as_ref().clone().with_nullable(true),
                        file.location.clone(),
                    ));
                }
            }
        }
    }
    Ok(merged.into_iter().map(|(f, _)| f).collect())
}

/// Reads one Parquet file, a row-group batch at a time.
pub struct ParquetFile {
    file: FileRef,
    reader: ParquetRecordBatchReader,
    /// Columns the schema lacks were looked for in this file.
    checked_new_columns: bool,
    /// Rows its row groups hold, and rows read so far.
    expected: u64,
    read: u64,
    /// For each output data column, its column in the file's batches
    /// (found once per file: a file may have 50,000 columns).
    mapping: Option<Vec<Option<usize>>>,
}

impl ParquetFile {
    /// Reads the footer of `file`.
    pub fn open(file: FileRef, opts: &Options) -> Result<Self, Error> {
        let (builder, expected) = builder(&file, opts)?;
        let reader = builder
            .build()
            .map_err(|e| Error::Data(format!("{}: {e}", file.location)))?;
        Ok(ParquetFile {
            file,
            reader,
            checked_new_columns: false,
            expected,
            read: 0,
            mapping: None,
        })
    }

    /// The next batch, conformed to the output shape.
    pub fn next_batch(&mut self, shape: &Shape) -> Result<Option<RecordBatch>, Error> {
        let Some(batch) = self.reader.next() else {
            if self.read != self.expected {
                return Err(Error::Data(format!(
                    "{}: read {} rows, but its row groups hold {}: the file is damaged or uses a layout the Parquet reader misreads (nothing of it was loaded)",
                    self.file.location, self.read, self.expected
                )));
            }
            return Ok(None);
        };
        let batch = batch.map_err(|e| Error::Data(format!("{}: {e}", self.file.location)))?;
        self.read += batch.num_rows() as u64;
        if !self.checked_new_columns {
            self.checked_new_columns = true;
            let known: HashSet<&str> = shape.data.iter().map(|f| f.name().as_str()).collect();
            if batch
                .schema()
                .fields()
                .iter()
                .any(|f| !known.contains(f.name().as_str()))
            {
                crate::shape::report_new_columns();
            }
        }
        let rows = batch.num_rows();
        let mapping = self.mapping.get_or_insert_with(|| {
            let position: HashMap<&str, usize> = batch
                .schema_ref()
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name().as_str(), i))
                .collect();
            shape
                .data
                .iter()
                .map(|f| position.get(f.name().as_str()).copied())
                .collect()
        });
        let columns = conform(&batch, &shape.data, mapping, &self.file)?;
        Ok(Some(shape.assemble(columns, None, &self.file, rows)?))
    }
}

fn conform(
    batch: &RecordBatch,
    fields: &[arrow_schema::FieldRef],
    mapping: &[Option<usize>],
    file: &FileRef,
) -> Result<Vec<ArrayRef>, Error> {
    fields
        .iter()
        .zip(mapping)
        .map(|(f, at)| match at {
            Some(i) => {
                let i = *i;
                let col = batch.column(i);
                if col.data_type() == f.data_type() {
                    Ok(col.clone())
                } else {
                    let options = CastOptions {
                        safe: false,
                        ..Default::default()
                    };
                    cast_with_options(col, f.data_type(), &options).map_err(|e| {
                        Error::Data(format!(
                            "{}: column '{}' of type {} cannot be read as {}: {e}",
                            file.location,
                            f.name(),
                            col.data_type(),
                            f.data_type()
                        ))
                    })
                }
            }
            None if f.name() == METADATA => {
                Ok(arrow_array::new_null_array(f.data_type(), batch.num_rows()))
            }
            None => Ok(
                Arc::new(arrow_array::new_null_array(f.data_type(), batch.num_rows())) as ArrayRef,
            ),
        })
        .collect()
}
