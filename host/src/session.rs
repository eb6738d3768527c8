//! One instance of a connector in its own store, driven synchronously.
//!
//! A session lives on one (blocking) thread. Every call re-arms the epoch
//! deadline; a trap fails the call with an error that says which limit was
//! hit, and the host carries on.

use std::io::Cursor;

use anyhow::{Context, Result, anyhow};
use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_ipc::reader::StreamReader;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::bindings::{Connector, ConnectorError, ConnectorSpec, StreamInfo};
use crate::capability::HostState;
use crate::runtime::{Loaded, Runtime, StoreData};

/// A connector instance.
pub struct Session {
    store: Store<StoreData>,
    connector: Connector,
    runtime: Runtime,
}

/// A stream a connector offers, with its decoded schema.
#[derive(Debug, Clone)]
pub struct Stream {
    /// What the connector said.
    pub info: StreamInfo,
    /// The Arrow schema of its batches.
    pub schema: SchemaRef,
}

/// Describes a connector error for a person.
pub fn describe(e: &ConnectorError) -> String {
    match e {
        ConnectorError::Config(m) => format!("invalid configuration: {m}"),
        ConnectorError::Auth(m) => format!("access denied: {m}"),
        ConnectorError::Io(m) => format!("I/O error: {m}"),
        ConnectorError::Data(m) => format!("bad data: {m}"),
        ConnectorError::Other(m) => m.clone(),
    }
}

impl Session {
    /// Instantiates `loaded` with `host` capabilities.
    pub fn new(runtime: &Runtime, loaded: &Loaded, host: HostState) -> Result<Self> {
        let mut store = runtime.store(host)?;
        let connector = loaded.instantiate(&mut store)?;
        Ok(Session {
            store,
            connector,
            runtime: runtime.clone(),
        })
    }

    fn arm(&mut self) {
        self.store.set_epoch_deadline(self.runtime.deadline_ticks());
    }

    fn trap(&self, e: wasmtime::Error, what: &str) -> anyhow::Error {
        let limits = self.runtime.limits();
        if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
            return anyhow!(
                "the connector was stopped during {what}: it ran past its time limit of {:?} for one call",
                limits.call_timeout
            );
        }
        let text = format!("{e:?}");
        if text.contains("forcing trap when growing memory")
            || text.contains("memory allocation failed")
        {
            return anyhow!(
                "the connector was stopped during {what}: it hit its memory limit of {} MiB",
                limits.memory_bytes >> 20
            );
        }
        anyhow::Error::from(e).context(format!("the connector crashed during {what}"))
    }

    /// The connector's spec.
    pub fn spec(&mut self) -> Result<ConnectorSpec> {
        self.arm();
        let source = self.connector.sluice_connector_source();
        source
            .call_spec(&mut self.store)
            .map_err(|e| self.trap(e, "spec"))
    }

    /// Validates `config`.
    pub fn check(&mut self, config: &str) -> Result<()> {
        self.arm();
        let source = self.connector.sluice_connector_source();
        source
            .call_check(&mut self.store, config)
            .map_err(|e| self.trap(e, "check"))?
            .map_err(|e| anyhow!(describe(&e)))
    }

    /// The streams `config` produces.
    pub fn discover(&mut self, config: &str) -> Result<Vec<Stream>> {
        self.arm();
        let source = self.connector.sluice_connector_source();
        let infos = source
            .call_discover(&mut self.store, config)
            .map_err(|e| self.trap(e, "discover"))?
            .map_err(|e| anyhow!(describe(&e)))?;
        infos
            .into_iter()
            .map(|info| {
                let reader =
                    decode_guarded(|| StreamReader::try_new(Cursor::new(&info.arrow_schema), None))
                        .with_context(|| {
                            format!("the schema of stream '{}' is not Arrow IPC", info.name)
                        })?;
                Ok(Stream {
                    schema: reader.schema(),
                    info,
                })
            })
            .collect()
    }

    /// Starts reading `stream`.
    pub fn read(&mut self, config: &str, stream: &str, state: Option<&str>) -> Result<ResourceAny> {
        self.arm();
        let source = self.connector.sluice_connector_source();
        source
            .call_read(&mut self.store, config, stream, state)
            .map_err(|e| self.trap(e, "read"))?
            .map_err(|e| anyhow!(describe(&e)))
    }

    /// The next batch from `reader` as the connector sent it (Arrow IPC) with
    /// the checkpoint after it; `None` at the end.
    pub fn next_ipc(&mut self, reader: ResourceAny) -> Result<Option<(Vec<u8>, Option<String>)>> {
        self.arm();
        let source = self.connector.sluice_connector_source();
        let batch = source
            .reader()
            .call_next(&mut self.store, reader)
            .map_err(|e| self.trap(e, "next"))?
            .map_err(|e| anyhow!(describe(&e)))?;
        Ok(batch.map(|b| (b.ipc, b.checkpoint)))
    }

    /// Releases `reader`.
    pub fn close(&mut self, reader: ResourceAny) -> Result<()> {
        self.arm();
        reader
            .resource_drop(&mut self.store)
            .map_err(|e| self.trap(e, "close"))
    }
}

/// The schema a table stores for batches of `sent`: dictionary-encoded
/// columns are a transport encoding between connector and host (a constant
/// or low-cardinality column crosses the boundary once per batch rather than
/// once per row), and tables store their value type. Schema-level metadata
/// is the connector's own business and is dropped.
pub fn stored_schema(sent: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        sent.fields()
            .iter()
            .map(|f| stored_field(f))
            .collect::<Vec<_>>(),
    ))
}

fn stored_field(f: &Field) -> Field {
    f.clone().with_data_type(stored_type(f.data_type()))
}

fn stored_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, values) => stored_type(values),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| stored_field(f)).collect())
        }
        DataType::List(f) => DataType::List(Arc::new(stored_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(stored_field(f))),
        other => other.clone(),
    }
}

/// `batch` (of the schema the connector discovered) in the `stored` schema:
/// dictionary-encoded columns are expanded to their values.
pub fn to_stored(batch: &RecordBatch, stored: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(stored.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow_cast::cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        stored.clone(),
        columns,
        &rows,
    )?)
}

/// Decodes an IPC stream from a connector: validated, and a panic in the
/// decoder becomes an error rather than a crash (guest bytes are untrusted).
pub fn decode(ipc: &[u8]) -> Result<Vec<RecordBatch>> {
    let batches = decode_guarded(|| {
        let reader = StreamReader::try_new(Cursor::new(ipc), None)?;
        reader.collect::<Result<Vec<_>, _>>()
    })
    .context("the connector sent a batch that is not valid Arrow IPC")?;
    Ok(batches)
}

fn decode_guarded<T>(
    f: impl FnOnce() -> Result<T, arrow_schema::ArrowError> + std::panic::UnwindSafe,
) -> Result<T> {
    match std::panic::catch_unwind(f) {
        Ok(r) => Ok(r?),
        Err(_) => Err(anyhow!(
            "the Arrow IPC decoder rejected the bytes (it panicked)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, ArrayRef, DictionaryArray, Int32Array, StringArray, StructArray};
    use arrow_schema::Fields;

    use super::*;

    #[test]
    fn dictionary_columns_are_stored_as_their_values() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let inner = Fields::from(vec![Field::new("path", dict.clone(), false)]);
        let sent = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("_metadata", DataType::Struct(inner.clone()), false),
        ]));
        let stored = stored_schema(&sent);
        assert_eq!(
            stored.field(1).data_type(),
            &DataType::Struct(Fields::from(vec![Field::new(
                "path",
                DataType::Utf8,
                false
            )]))
        );
        let path: ArrayRef = Arc::new(DictionaryArray::new(
            Int32Array::from(vec![0, 0, 0]),
            Arc::new(StringArray::from(vec!["s3://b/x.csv"])),
        ));
        let batch = RecordBatch::try_new(
            sent,
            vec![
                Arc::new(Int32Array::from(vec![1, 2, 3])),
                Arc::new(StructArray::new(inner, vec![path], None)),
            ],
        )
        .unwrap();
        let out = to_stored(&batch, &stored).unwrap();
        let meta = out
            .column(1)
            .as_any()
            .downcast_ref::<StructArray>()
            .unwrap();
        let paths = meta
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(paths.len(), 3);
        assert!(paths.iter().all(|p| p == Some("s3://b/x.csv")));
    }
}
