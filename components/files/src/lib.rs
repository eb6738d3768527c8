//! The built-in `files` connector: CSV, JSON and Parquet files from object
//! storage, read through the host's granted `get-range`.
//!
//! The host plans which files to read and passes them in the config; this
//! component infers a schema from a sample (`discover`) and turns each file
//! into Arrow batches (`read`), one file's rows per batch, each row carrying a
//! `_metadata` struct (file path, name, size and modification time).

use std::cell::RefCell;
use std::collections::VecDeque;

use sluice_connector_sdk::{
    Batch, ConnectorSpec, Error, Guest, GuestReader, Reader, StreamInfo, SyncMode, ipc,
};

mod csv;
mod input;
mod json;
mod options;
mod parquet;
mod shape;

use options::{Config, FileRef, Format, Options};
use shape::Shape;
use sluice_files_contract::RangeReport;

/// Files sampled when inferring a schema (Auto Loader samples 1000 too).
const SAMPLE_FILES: usize = 1000;

const CONFIG_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "files connector",
  "type": "object",
  "required": ["format"],
  "additionalProperties": false,
  "properties": {
    "format": {"enum": ["csv", "json", "parquet"]},
    "files": {"type": "array", "items": {"type": "object", "required": ["location", "size"],
      "properties": {"location": {"type": "string"}, "size": {"type": "integer"}, "last_modified_ms": {"type": "integer"}}}},
    "options": {"type": "object", "additionalProperties": {"type": "string"},
      "description": "header, delimiter|sep, quote, escape, comment, nullValue, inferColumnTypes|inferSchema, schemaHints, mode (FAILFAST|PERMISSIVE|DROPMALFORMED), rescuedDataColumn, encoding, multiLine, batchSize, maxDecompressedBytes"},
    "schema": {"type": "object", "description": "Arrow schema (JSON) to read with; inferred when absent"}
  }
}"#;

/// The connector.
pub struct Files;

fn parse(config: &str) -> Result<(Config, Options), Error> {
    let config: Config = serde_json::from_str(config)
        .map_err(|e| Error::Config(format!("connector config: {e}")))?;
    let options = Options::parse(&config.options)?;
    Ok((config, options))
}

fn shape_of(config: &Config, opts: &Options) -> Result<Shape, Error> {
    if let Some(schema) = &config.schema {
        return Shape::from_full(schema, opts);
    }
    if config.files.is_empty() {
        return Err(Error::Config("no files to infer a schema from".into()));
    }
    let sample = &config.files[..config.files.len().min(SAMPLE_FILES)];
    let data = match config.format {
        Format::Csv => csv::infer(sample, opts)?,
        Format::Json => json::infer(sample, opts)?,
        Format::Parquet => parquet::infer(sample, opts)?,
    };
    if data.is_empty() {
        return Err(Error::Data(format!(
            "found no columns in {} (are the files empty?)",
            sample[0].location
        )));
    }
    Shape::from_data(data, opts)
}

impl Guest for Files {
    type Reader = FilesReader;

    fn spec() -> ConnectorSpec {
        ConnectorSpec {
            name: "files".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "CSV, JSON and Parquet files (gzip/zstd by extension) from local paths or object storage".into(),
            config_schema: CONFIG_SCHEMA.into(),
            modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
        }
    }

    fn check(config: String) -> Result<(), Error> {
        parse(&config).map(|_| ())
    }

    fn discover(config: String) -> Result<Vec<StreamInfo>, Error> {
        let (config, opts) = parse(&config)?;
        let shape = shape_of(&config, &opts)?;
        Ok(vec![StreamInfo {
            name: "files".into(),
            arrow_schema: ipc::encode_schema(&shape.full)?,
            cursor_fields: vec![],
            primary_key: vec![],
        }])
    }

    fn read(config: String, stream_name: String, _state: Option<String>) -> Result<Reader, Error> {
        open(&config, &stream_name).map(Reader::new)
    }
}

/// The reader `read` returns, before it becomes a component resource (the
/// native build drives it directly: `examples/native.rs`).
pub fn open(config: &str, stream_name: &str) -> Result<FilesReader, Error> {
    if stream_name != "files" {
        return Err(Error::Config(format!(
            "unknown stream '{stream_name}'; the files connector has one stream, 'files'"
        )));
    }
    let (config, opts) = parse(config)?;
    let shape = shape_of(&config, &opts)?;
    Ok(FilesReader {
        state: RefCell::new(ReadState {
            format: config.format,
            files: config.files.into(),
            shape,
            opts,
            current: None,
        }),
    })
}

enum Open {
    Csv(Box<csv::CsvFile>),
    Json(json::JsonFile),
    Parquet(parquet::ParquetFile),
}

struct ReadState {
    format: Format,
    files: VecDeque<FileRef>,
    shape: Shape,
    opts: Options,
    current: Option<Open>,
}

/// An open read over the planned files, in order.
pub struct FilesReader {
    state: RefCell<ReadState>,
}

impl GuestReader for FilesReader {
    fn next(&self) -> Result<Option<Batch>, Error> {
        let mut s = self.state.borrow_mut();
        let s = &mut *s;
        loop {
            let Some(current) = s.current.as_mut() else {
                let Some(file) = s.files.pop_front() else {
                    return Ok(None);
                };
                s.current = Some(match s.format {
                    Format::Csv => {
                        Open::Csv(Box::new(csv::CsvFile::open(file, &s.shape, &s.opts)?))
                    }
                    Format::Json => Open::Json(json::JsonFile::open(file, &s.shape, &s.opts)?),
                    Format::Parquet => Open::Parquet(parquet::ParquetFile::open(file, &s.opts)?),
                });
                continue;
            };
            let batch = match current {
                Open::Csv(f) => f.next_batch(&s.shape, &s.opts)?,
                Open::Json(f) => f.next_batch(&s.shape, &s.opts)?,
                Open::Parquet(f) => f.next_batch(&s.shape)?,
            };
            match batch {
                Some(batch) => {
                    let started = std::time::Instant::now();
                    let ipc = ipc::encode_batch(&batch)?;
                    sluice_connector_sdk::host::count(
                        "ipc-encode-us",
                        started.elapsed().as_micros() as u64,
                    );
                    return Ok(Some(Batch {
                        ipc,
                        checkpoint: None,
                    }));
                }
                None => {
                    let report = match current {
                        Open::Csv(f) => f.report().map(|r| (f.file().clone(), r)),
                        Open::Json(f) => f.report().map(|r| (f.file().clone(), r)),
                        Open::Parquet(_) => None,
                    };
                    s.current = None;
                    if let Some((file, (first, stop))) = report {
                        // Tell the host where this range's records began and
                        // ended, so it can check adjacent ranges meet.
                        let empty = arrow_array::RecordBatch::new_empty(s.shape.full.clone());
                        let (start, end) = file.range.unwrap_or((0, file.size));
                        let checkpoint = serde_json::to_string(&RangeReport {
                            location: file.location.clone(),
                            start,
                            end,
                            first,
                            stop,
                        })
                        .map_err(|e| Error::Other(format!("range report: {e}")))?;
                        return Ok(Some(Batch {
                            ipc: ipc::encode_batch(&empty)?,
                            checkpoint: Some(checkpoint),
                        }));
                    }
                }
            }
        }
    }
}

// The component's exports, for the component only: a native build (the
// benchmark's `examples/native.rs`) links no WIT glue.
#[cfg(target_arch = "wasm32")]
sluice_connector_sdk::export_connector!(Files);
