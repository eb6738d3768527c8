//! `rust-hello`: a complete Sluice connector in Rust, the template to start
//! yours from. It generates its rows (no storage, no network), so it shows
//! the contract and nothing else:
//!
//! - `spec` says what the connector is and the JSON Schema of its config;
//! - `check` validates a config and says what to fix (`Error::Config`);
//! - `discover` lists the streams with their Arrow schemas;
//! - `read` opens a reader that yields Arrow IPC batches, each with the
//!   checkpoint after it; `read` with that checkpoint resumes after it.
//!
//! Config: `{"rows": 2500, "batch_rows": 1000, "greeting": "hello"}`.

use std::cell::Cell;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;
use sluice_connector_sdk::{
    Batch, ConnectorSpec, Error, Guest, GuestReader, Level, Reader, StreamInfo, SyncMode,
    export_connector, ipc, log,
};

/// 2026-01-01T00:00:00Z, in microseconds: row `id` is `id` seconds later.
const BASE_MICROS: i64 = 1_767_225_600_000_000;

struct Hello;

/// The config, validated.
struct Config {
    rows: u64,
    batch_rows: u64,
    greeting: String,
}

fn config(text: &str) -> Result<Config, Error> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::Config(format!("the config is not JSON: {e}")))?;
    let rows = v.get("rows").and_then(Value::as_u64).ok_or_else(|| {
        Error::Config("give \"rows\", the number of rows to generate (>= 0)".into())
    })?;
    let batch_rows = match v.get("batch_rows") {
        None => 1000,
        Some(b) => b
            .as_u64()
            .filter(|b| *b >= 1)
            .ok_or_else(|| Error::Config("\"batch_rows\" must be an integer >= 1".into()))?,
    };
    let greeting = v
        .get("greeting")
        .and_then(Value::as_str)
        .unwrap_or("hello")
        .to_string();
    Ok(Config {
        rows,
        batch_rows,
        greeting,
    })
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("message", DataType::Utf8, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("score", DataType::Float64, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]))
}

impl Guest for Hello {
    type Reader = Greetings;

    fn spec() -> ConnectorSpec {
        ConnectorSpec {
            name: "rust-hello".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Generates greetings: the template of a Rust connector".into(),
            config_schema: r#"{"type": "object", "required": ["rows"], "properties": {
                "rows": {"type": "integer", "minimum": 0},
                "batch_rows": {"type": "integer", "minimum": 1, "default": 1000},
                "greeting": {"type": "string", "default": "hello"}}}"#
                .into(),
            modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
        }
    }

    fn check(config_text: String) -> Result<(), Error> {
        config(&config_text).map(|_| ())
    }

    fn discover(_config: String) -> Result<Vec<StreamInfo>, Error> {
        Ok(vec![StreamInfo {
            name: "greetings".into(),
            arrow_schema: ipc::encode_schema(&schema())?,
            cursor_fields: vec!["id".into()],
            primary_key: vec!["id".into()],
        }])
    }

    fn read(config_text: String, stream: String, state: Option<String>) -> Result<Reader, Error> {
        let c = config(&config_text)?;
        if stream != "greetings" {
            return Err(Error::Config(format!(
                "no stream named '{stream}' (there is 'greetings')"
            )));
        }
        // The state is the checkpoint of the last batch read: {"next": id}.
        let next = match state {
            None => 0,
            Some(s) => serde_json::from_str::<Value>(&s)
                .ok()
                .and_then(|v| v.get("next").and_then(Value::as_u64))
                .ok_or_else(|| Error::Config(format!("state {s} is not this connector's")))?,
        };
        log(Level::Info, &format!("reading greetings from id {next}"));
        Ok(Reader::new(Greetings {
            next: Cell::new(next),
            config: c,
        }))
    }
}

/// An open read: the next id to generate.
pub struct Greetings {
    next: Cell<u64>,
    config: Config,
}

impl GuestReader for Greetings {
    fn next(&self) -> Result<Option<Batch>, Error> {
        let from = self.next.get();
        let to = (from + self.config.batch_rows).min(self.config.rows);
        if from >= to {
            return Ok(None);
        }
        let ids = from as i64..to as i64;
        let mut tags = ListBuilder::new(StringBuilder::new());
        for id in ids.clone() {
            tags.values()
                .append_value(if id % 2 == 0 { "even" } else { "odd" });
            tags.append(true);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.clone()
                    .map(|id| format!("{} #{id}", self.config.greeting)),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    ids.clone().map(|id| BASE_MICROS + id * 1_000_000),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter_values(
                ids.map(|id| id as f64 * 0.5),
            )),
            Arc::new(tags.finish()),
        ];
        let batch = RecordBatch::try_new(schema(), columns)?;
        self.next.set(to);
        Ok(Some(Batch {
            ipc: ipc::encode_batch(&batch)?,
            checkpoint: Some(format!("{{\"next\": {to}}}")),
        }))
    }
}

export_connector!(Hello);
