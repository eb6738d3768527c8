//! The built-in `files` connector: CSV, JSON and Parquet files from object
//! storage, read through the host's granted `get-range`.
//!
//! The host plans which files to read and passes them in the config; this
//! component infers a schema from a sample (`discover`) and turns the files
//! into Arrow batches (`read`) of about `batchSize` rows: a large file's rows
//! in several, small files' rows together in one (a call, an IPC stream and
//! a sink write per batch, not per file). Each row carries a `_metadata`
//! struct (file path, name, size and modification time).

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
            reported: None,
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
    /// A range's report, handed over by the next call: the rows read
    /// before it went first.
    reported: Option<Batch>,
}

/// An open read over the planned files, in order.
pub struct FilesReader {
    state: RefCell<ReadState>,
}

impl GuestReader for FilesReader {
    fn next(&self) -> Result<Option<Batch>, Error> {
        let mut s = self.state.borrow_mut();
        let s = &mut *s;
        if let Some(report) = s.reported.take() {
            return Ok(Some(report));
        }
        // Rows read so far, handed over once there are a batch's worth, at
        // a range's report, or at the end.
        let mut held = Vec::new();
        let mut rows = 0;
        loop {
            let Some(current) = s.current.as_mut() else {
                let Some(file) = s.files.pop_front() else {
                    return hand_over(&s.shape, held);
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
            if let Some(batch) = batch {
                rows += batch.num_rows();
                held.push(batch);
                if rows >= s.opts.batch_size {
                    return hand_over(&s.shape, held);
                }
                continue;
            }
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
                let report = Batch {
                    ipc: ipc::encode_batch(&empty)?,
                    checkpoint: Some(checkpoint),
                };
                if held.is_empty() {
                    return Ok(Some(report));
                }
                s.reported = Some(report);
                return hand_over(&s.shape, held);
            }
        }
    }
}

/// The batches `held` as one, IPC-encoded; none when there are none.
fn hand_over(shape: &Shape, held: Vec<arrow_array::RecordBatch>) -> Result<Option<Batch>, Error> {
    let batch = match held.len() {
        0 => return Ok(None),
        1 => held.into_iter().next().expect("one"),
        _ => arrow_select::concat::concat_batches(&shape.full, &held)?,
    };
    let started = std::time::Instant::now();
    let ipc = ipc::encode_batch(&batch)?;
    sluice_connector_sdk::host::count("ipc-encode-us", started.elapsed().as_micros() as u64);
    Ok(Some(Batch {
        ipc,
        checkpoint: None,
    }))
}

// The component's exports, for the component only: a native build (the
// benchmark's `examples/native.rs`) links no WIT glue.
#[cfg(target_arch = "wasm32")]
sluice_connector_sdk::export_connector!(Files);

/// Reads through the SDK's native host functions (local files), so the
/// tests run with `--features native`.
#[cfg(all(test, feature = "native"))]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::{Array, RecordBatch, StructArray};

    use super::*;

    fn read_all(config: &serde_json::Value) -> Vec<(RecordBatch, Option<String>)> {
        let reader = open(&config.to_string(), "files").unwrap();
        let mut out = Vec::new();
        while let Some(b) = reader.next().unwrap() {
            let mut decoded =
                arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(b.ipc), None)
                    .unwrap();
            let batch = decoded.next().unwrap().unwrap();
            assert!(decoded.next().is_none(), "one batch per call");
            out.push((batch, b.checkpoint));
        }
        out
    }

    fn csv_files(dir: &std::path::Path, count: usize, rows: usize) -> Vec<serde_json::Value> {
        (0..count)
            .map(|f| {
                let path = dir.join(format!("f{f:03}.csv"));
                let body: String = std::iter::once("id,name\n".to_string())
                    .chain((0..rows).map(|r| format!("{},n{f}\n", f * rows + r)))
                    .collect();
                std::fs::write(&path, &body).unwrap();
                serde_json::json!({"location": format!("file://{}", path.display()), "size": body.len()})
            })
            .collect()
    }

    fn json_file(dir: &std::path::Path, name: &str, body: &str) -> serde_json::Value {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        serde_json::json!({"location": format!("file://{}", path.display()), "size": body.len()})
    }

    #[test]
    fn json_lines_the_flat_decoder_declines_are_read_by_the_general_path() {
        let dir = std::env::temp_dir().join(format!("sluice-json-{}", std::process::id()));
        // A repeated key (arrow-json keeps the last value) is left to the
        // general path, which reads on to the end of its batch; blank and
        // CRLF lines, escapes, and a last line with no newline.
        let body = concat!(
            "{\"id\": 1, \"name\": \"a\", \"ok\": true}\n",
            "{\"id\": 5, \"id\": 6, \"name\": \"b\"}\n",
            "{\"id\": 3, \"name\": \"c\\u00e9\", \"ok\": false}\r\n",
            "\n",
            "{\"id\": 4, \"name\": null}\n",
            "{\"id\": 7, \"name\": \"\\ud83d\\ude00\"}",
        );
        for batch in ["1", "2", "100"] {
            let config = serde_json::json!({
                "format": "json",
                "files": [json_file(&dir, "a.json", body)],
                "options": {"batchSize": batch},
            });
            let (mut ids, mut names) = (Vec::new(), Vec::new());
            for (b, _) in read_all(&config) {
                let id = b.column_by_name("id").unwrap();
                ids.extend(id.as_primitive::<arrow_array::types::Int64Type>().iter());
                let name = b.column_by_name("name").unwrap().as_string::<i32>();
                names.extend(name.iter().map(|n| n.map(str::to_string)));
            }
            assert_eq!(ids, [1, 6, 3, 4, 7].map(Some), "batchSize={batch}");
            let want = [
                Some("a"),
                Some("b"),
                Some("c\u{e9}"),
                None,
                Some("\u{1f600}"),
            ];
            assert_eq!(
                names,
                want.map(|n| n.map(str::to_string)),
                "batchSize={batch}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_record_on_a_line_fails_wherever_a_batch_ends() {
        let dir = std::env::temp_dir().join(format!("sluice-json2-{}", std::process::id()));
        // The general path's batch of one ends after the line's first record;
        // the record after it on the same line is still refused. The line is
        // past the sample the schema is inferred from.
        let sample = "{\"id\": 1}\n".repeat(10_000);
        let body = sample + "{\"id\": 2, \"id\": 3} {\"id\": 4}\n{\"id\": 5}\n";
        for batch in ["1", "7", "100000"] {
            let config = serde_json::json!({
                "format": "json",
                "files": [json_file(&dir, "b.json", &body)],
                "options": {"batchSize": batch},
            });
            let reader = open(&config.to_string(), "files").unwrap();
            let err = loop {
                match reader.next() {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("batchSize={batch}: read without error"),
                    Err(e) => break format!("{e:?}"),
                }
            };
            assert!(err.contains("line 10001"), "batchSize={batch}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn small_files_are_handed_over_together_and_large_ones_in_batches() {
        let dir = std::env::temp_dir().join(format!("sluice-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = csv_files(&dir, 40, 3);
        let config =
            serde_json::json!({"format": "csv", "files": files, "options": {"batchSize": "50"}});
        let batches = read_all(&config);
        // 120 rows of 40 files: batches of 50 or more, the last the rest.
        let rows: Vec<usize> = batches.iter().map(|(b, _)| b.num_rows()).collect();
        assert_eq!(rows, [51, 51, 18]);
        let mut ids = Vec::new();
        let mut paths = Vec::new();
        for (b, checkpoint) in &batches {
            assert!(checkpoint.is_none());
            ids.extend(
                b.column(0)
                    .as_primitive::<arrow_array::types::Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
            let meta = b
                .column_by_name("_metadata")
                .unwrap()
                .as_any()
                .downcast_ref::<StructArray>()
                .unwrap();
            let path = arrow_cast::cast(
                meta.column_by_name("file_path").unwrap(),
                &arrow_schema::DataType::Utf8,
            )
            .unwrap();
            paths.extend(
                path.as_string::<i32>()
                    .iter()
                    .map(|p| p.unwrap().to_string()),
            );
        }
        assert_eq!(ids, (0..120).collect::<Vec<i64>>());
        assert!(
            paths[..3].iter().all(|p| p.ends_with("f000.csv")),
            "{paths:?}"
        );
        assert!(
            paths[117..].iter().all(|p| p.ends_with("f039.csv")),
            "{paths:?}"
        );
        // A large file: batches of batchSize.
        std::fs::create_dir_all(dir.join("large")).unwrap();
        let large = csv_files(&dir.join("large"), 1, 120);
        let config =
            serde_json::json!({"format": "csv", "files": large, "options": {"batchSize": "50"}});
        let rows: Vec<usize> = read_all(&config)
            .iter()
            .map(|(b, _)| b.num_rows())
            .collect();
        assert_eq!(rows, [50, 50, 20]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
