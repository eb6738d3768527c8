//! Parquet, read through ranged gets: the footer first, then only the column
//! chunks of each row group, never a whole-file copy.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_cast::cast::{CastOptions, cast_with_options};
use arrow_schema::{Field, Schema};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::errors::ParquetError;
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

fn builder(
    file: &FileRef,
    opts: &Options,
) -> Result<ParquetRecordBatchReaderBuilder<Remote>, Error> {
    let remote = Remote {
        location: file.location.clone(),
        size: file.size,
    };
    ParquetRecordBatchReaderBuilder::try_new(remote)
        .map(|b| b.with_batch_size(opts.batch_size))
        .map_err(|e| {
            Error::Data(format!(
                "{}: not a readable Parquet file: {e}",
                file.location
            ))
        })
}

/// The union of the sampled files' columns; a column whose type differs
/// between files is an error that names both files.
pub fn infer(files: &[FileRef], opts: &Options) -> Result<Vec<Field>, Error> {
    let mut merged: Vec<(Field, String)> = Vec::new();
    for file in files {
        let b = builder(file, opts)?;
        for f in b.schema().fields() {
            match merged.iter().find(|(m, _)| m.name() == f.name()) {
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
                None => merged.push((
                    f.as_ref().clone().with_nullable(true),
                    file.location.clone(),
                )),
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
}

impl ParquetFile {
    /// Reads the footer of `file`.
    pub fn open(file: FileRef, opts: &Options) -> Result<Self, Error> {
        let reader = builder(&file, opts)?
            .build()
            .map_err(|e| Error::Data(format!("{}: {e}", file.location)))?;
        Ok(ParquetFile {
            file,
            reader,
            checked_new_columns: false,
        })
    }

    /// The next batch, conformed to the output shape.
    pub fn next_batch(&mut self, shape: &Shape) -> Result<Option<RecordBatch>, Error> {
        let Some(batch) = self.reader.next() else {
            return Ok(None);
        };
        let batch = batch.map_err(|e| Error::Data(format!("{}: {e}", self.file.location)))?;
        if !self.checked_new_columns {
            self.checked_new_columns = true;
            let known = |name: &str| shape.data.iter().any(|f| f.name() == name);
            if batch.schema().fields().iter().any(|f| !known(f.name())) {
                crate::shape::report_new_columns();
            }
        }
        let rows = batch.num_rows();
        let columns = conform(&batch, &shape.data, &self.file)?;
        Ok(Some(shape.assemble(columns, None, &self.file, rows)?))
    }
}

fn conform(
    batch: &RecordBatch,
    fields: &[arrow_schema::FieldRef],
    file: &FileRef,
) -> Result<Vec<ArrayRef>, Error> {
    let schema: &Schema = batch.schema_ref();
    fields
        .iter()
        .map(|f| match schema.index_of(f.name()) {
            Ok(i) => {
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
            Err(_) if f.name() == METADATA => {
                Ok(arrow_array::new_null_array(f.data_type(), batch.num_rows()))
            }
            Err(_) => Ok(
                Arc::new(arrow_array::new_null_array(f.data_type(), batch.num_rows())) as ArrayRef,
            ),
        })
        .collect()
}
