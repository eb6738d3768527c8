//! The output shape every format shares: data columns, the optional rescued
//! data column and the `_metadata` struct.
//!
//! Invariant: a batch holds rows of exactly one file, so `_metadata` is
//! constant within a batch.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, DictionaryArray, Int32Array, Int64Array, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use serde_json::Value;
use sluice_connector_sdk::Error;
use sluice_formats::hints::apply_hints;
pub use sluice_formats::objects::Rescue;

use crate::options::{FileRef, Options};

/// Name of the file metadata column.
pub const METADATA: &str = "_metadata";

/// Tells the host that a file has columns the read schema lacks (they are
/// rescued where a rescued data column is set, dropped otherwise), so an
/// incremental load can evolve its schema. Once per file.
pub fn report_new_columns() {
    sluice_connector_sdk::host::count("files-with-new-columns", 1);
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The `_metadata` fields. The path and name are the same on every row of
/// a batch, so they travel dictionary-encoded (one value, all keys 0); the
/// host stores them as plain strings.
fn metadata_fields() -> Fields {
    let constant = || DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    Fields::from(vec![
        Field::new("file_path", constant(), false),
        Field::new("file_name", constant(), false),
        Field::new("file_size", DataType::Int64, false),
        Field::new("file_modification_time", utc_micros(), false),
    ])
}

/// The schema of batches a read produces, split into its parts.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Every column, in output order.
    pub full: SchemaRef,
    /// The columns parsed from the data.
    pub data: Vec<FieldRef>,
    /// Name of the rescued data column, when rescue is on.
    pub rescue: Option<String>,
    /// Whether Sluice appends `_metadata` (not when the data has one).
    pub metadata: bool,
}

impl Shape {
    /// Builds the output shape from inferred or given data columns.
    pub fn from_data(data: Vec<Field>, opts: &Options) -> Result<Self, Error> {
        let data = apply_hints(data, &opts.schema_hints);
        let mut fields: Vec<Field> = data.clone();
        if let Some(name) = &opts.rescued_data_column {
            if data.iter().any(|f| f.name() == name) {
                return Err(Error::Config(format!(
                    "rescued data column '{name}' clashes with a data column; pick another name with rescuedDataColumn"
                )));
            }
            fields.push(Field::new(name, DataType::Utf8, true));
        }
        let mut appended: Vec<&str> = opts
            .rescued_data_column
            .iter()
            .map(String::as_str)
            .collect();
        let metadata = !data.iter().any(|f| f.name() == METADATA);
        if metadata {
            fields.push(Field::new(
                METADATA,
                DataType::Struct(metadata_fields()),
                false,
            ));
            appended.push(METADATA);
        }
        let schema_metadata = [(
            sluice_files_contract::APPENDED.to_string(),
            appended.join(","),
        )]
        .into();
        Ok(Shape {
            full: Arc::new(Schema::new_with_metadata(fields, schema_metadata)),
            data: data.into_iter().map(Arc::new).collect(),
            rescue: opts.rescued_data_column.clone(),
            metadata,
        })
    }

    /// Recovers the shape from a full output schema (as `discover` gave
    /// it; a schema without Sluice's marker is all data columns).
    pub fn from_full(full: &Schema, opts: &Options) -> Result<Self, Error> {
        let appended = sluice_files_contract::appended(full);
        let data: Vec<Field> = full
            .fields()
            .iter()
            .filter(|f| !appended.contains(&f.name().as_str()))
            .map(|f| f.as_ref().clone())
            .collect();
        Self::from_data(data, opts)
    }

    /// Assembles one batch of a file's rows.
    pub fn assemble(
        &self,
        mut columns: Vec<ArrayRef>,
        rescued: Option<ArrayRef>,
        file: &FileRef,
        rows: usize,
    ) -> Result<RecordBatch, Error> {
        if self.rescue.is_some() {
            columns.push(rescued.unwrap_or_else(|| Arc::new(StringArray::new_null(rows))));
        }
        if self.metadata {
            columns.push(metadata_column(file, rows));
        }
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.full.clone(),
            columns,
            &options,
        )?)
    }
}

fn metadata_column(file: &FileRef, rows: usize) -> ArrayRef {
    let fields = metadata_fields();
    let constant = |value: &str| -> ArrayRef {
        Arc::new(DictionaryArray::new(
            Int32Array::from_value(0, rows),
            Arc::new(StringArray::from(vec![value])),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        constant(&file.location),
        constant(file.name()),
        Arc::new(Int64Array::from_value(file.size as i64, rows)),
        Arc::new(
            TimestampMicrosecondArray::from_value(file.last_modified_ms * 1000, rows)
                .with_timezone("UTC"),
        ),
    ];
    Arc::new(StructArray::new(fields, columns, None))
}

/// The rescued column of a file's rows: each rescued object also names
/// the file. Reports the rows rescued to the host's `rows-rescued` counter.
pub fn rescued(rescue: Rescue, file: &FileRef) -> ArrayRef {
    if rescue.count() > 0 {
        sluice_connector_sdk::host::count("rows-rescued", rescue.count());
    }
    rescue.finish(|_, m| {
        m.insert("_file_path".into(), Value::String(file.location.clone()));
    })
}
