//! A well-behaved connector for tests of connector uploads: its one stream,
//! `numbers`, holds `count` rows (`id` from `start`) and a `label` column
//! with the config's `label` (so a test can see a resolved secret arrive).

use std::cell::Cell;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use sluice_connector_sdk::{
    Batch, ConnectorSpec, Error, Guest, GuestReader, Reader, StreamInfo, SyncMode,
    export_connector, ipc,
};

struct Sequence;

struct Config {
    start: i64,
    count: i64,
    label: String,
}

fn config(text: &str) -> Result<Config, Error> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::Config(format!("config: {e}")))?;
    let count = v
        .get("count")
        .and_then(|c| c.as_i64())
        .filter(|c| *c >= 0)
        .ok_or_else(|| Error::Config("give \"count\", a number of rows >= 0".into()))?;
    Ok(Config {
        start: v.get("start").and_then(|s| s.as_i64()).unwrap_or(0),
        count,
        label: v
            .get("label")
            .and_then(|l| l.as_str())
            .unwrap_or("")
            .to_string(),
    })
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("label", DataType::Utf8, false),
    ]))
}

/// Rows per batch.
const BATCH: i64 = 10_000;

impl Guest for Sequence {
    type Reader = Numbers;

    fn spec() -> ConnectorSpec {
        ConnectorSpec {
            name: "sequence".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "emits count numbered rows, for tests".into(),
            config_schema: r#"{"type":"object","required":["count"],"properties":{"count":{"type":"integer"},"start":{"type":"integer"},"label":{"type":"string"}}}"#.into(),
            modes: vec![SyncMode::FullRefresh],
        }
    }

    fn check(config_text: String) -> Result<(), Error> {
        config(&config_text).map(|_| ())
    }

    fn discover(_config: String) -> Result<Vec<StreamInfo>, Error> {
        Ok(vec![StreamInfo {
            name: "numbers".into(),
            arrow_schema: ipc::encode_schema(&schema()).map_err(|e| Error::Other(e.to_string()))?,
            cursor_fields: vec![],
            primary_key: vec!["id".into()],
        }])
    }

    fn read(config_text: String, _stream: String, _state: Option<String>) -> Result<Reader, Error> {
        let c = config(&config_text)?;
        Ok(Reader::new(Numbers {
            next: Cell::new(c.start),
            end: c.start + c.count,
            label: c.label,
        }))
    }
}

/// The reader.
pub struct Numbers {
    next: Cell<i64>,
    end: i64,
    label: String,
}

impl GuestReader for Numbers {
    fn next(&self) -> Result<Option<Batch>, Error> {
        let from = self.next.get();
        if from >= self.end {
            return Ok(None);
        }
        let to = (from + BATCH).min(self.end);
        self.next.set(to);
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(from..to));
        let labels: ArrayRef = Arc::new(StringArray::from_iter_values(
            (from..to).map(|_| self.label.as_str()),
        ));
        let batch = RecordBatch::try_new(schema(), vec![ids, labels])
            .map_err(|e| Error::Other(e.to_string()))?;
        Ok(Some(Batch {
            ipc: ipc::encode_batch(&batch).map_err(|e| Error::Other(e.to_string()))?,
            checkpoint: None,
        }))
    }
}

export_connector!(Sequence);
