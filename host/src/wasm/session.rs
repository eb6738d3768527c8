//! One instance of a connector in its own store, driven synchronously.
//!
//! A session lives on one (blocking) thread. Every call re-arms the epoch
//! deadline; a trap fails the call with an error that says which limit was
//! hit, and the host carries on.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use arrow_array::{Array, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::engine::failure::{ConnectorFailed, Fault};
use crate::wasm::bindings::{
    ConnectorError, ConnectorSpec, Planner, Records, RecordsStream, StreamInfo,
};
use crate::wasm::capability::HostState;
use crate::wasm::network::DeadlinePassed;
use crate::wasm::records;
use crate::wasm::runtime::{Exports, Loaded, NoRoom, Runtime, StoreData};

/// A connector instance.
pub struct Session {
    store: Store<StoreData>,
    exports: Exports,
    runtime: Runtime,
    /// The open reads of a records connector: what their batches decode
    /// into.
    records: Vec<RecordsRead>,
}

/// An open read of a records connector's stream.
struct RecordsRead {
    reader: ResourceAny,
    stream: String,
    schema: SchemaRef,
    batches: u64,
}

/// What one `next` handed over.
pub enum Payload {
    /// An Arrow IPC stream, as the connector sent it (not yet vetted).
    Ipc(Vec<u8>),
    /// Records the host decoded.
    Decoded(RecordBatch),
}

impl Payload {
    /// Its record batches (an IPC stream decoded and vetted).
    pub fn batches(self) -> Result<Vec<RecordBatch>> {
        match self {
            Payload::Ipc(ipc) => decode(ipc),
            Payload::Decoded(batch) => Ok(vec![batch]),
        }
    }
}

/// A stream a connector offers, with its decoded schema.
#[derive(Debug, Clone)]
pub struct Stream {
    /// What the connector said.
    pub info: StreamInfo,
    /// The Arrow schema of its batches.
    pub schema: SchemaRef,
}

/// A connector's error as the host reports it: described for a person,
/// with the [`Fault`] its kind stands for.
pub fn failed(e: ConnectorError) -> anyhow::Error {
    let (fault, variant) = match &e {
        ConnectorError::Config(_) => (Fault::Invalid, "config"),
        ConnectorError::Auth(_) => (Fault::Invalid, "auth"),
        ConnectorError::Io(_) => (Fault::Storage, "io"),
        ConnectorError::Data(_) => (Fault::Data, "data"),
        ConnectorError::Other(_) => (Fault::Data, "other"),
    };
    anyhow::Error::new(ConnectorFailed {
        fault,
        variant,
        message: describe(&e),
    })
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
        let exports = loaded.instantiate(&mut store)?;
        Ok(Session {
            store,
            exports,
            runtime: runtime.clone(),
            records: Vec::new(),
        })
    }

    fn arm(&mut self) {
        self.store.set_epoch_deadline(self.runtime.deadline_ticks());
        let limit = self.runtime.limits().call_timeout;
        self.store
            .data()
            .host
            .network
            .deadline()
            .set(Instant::now() + limit);
    }

    fn trap(&self, e: wasmtime::Error, what: &str) -> anyhow::Error {
        let limits = self.runtime.limits();
        if matches!(e.downcast_ref(), Some(wasmtime::Trap::Interrupt))
            || e.downcast_ref::<DeadlinePassed>().is_some()
        {
            return anyhow!(
                "the connector was stopped during {what}: it ran past its time limit of {:?} for one call",
                limits.call_timeout
            );
        }
        if let Some(no_room) = e.downcast_ref::<NoRoom>() {
            return anyhow::Error::new(no_room.clone())
                .context(format!("the connector was stopped during {what}"));
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
        match &self.exports {
            Exports::Arrow(source, ..) => source.call_spec(&mut self.store),
            Exports::Records(records) => records.call_spec(&mut self.store),
        }
        .map_err(|e| self.trap(e, "spec"))
    }

    /// Validates `config`.
    pub fn check(&mut self, config: &str) -> Result<()> {
        self.arm();
        match &self.exports {
            Exports::Arrow(source, ..) => source.call_check(&mut self.store, config),
            Exports::Records(records) => records.call_check(&mut self.store, config),
        }
        .map_err(|e| self.trap(e, "check"))?
        .map_err(failed)
    }

    /// The streams `config` produces. A records connector's columns are
    /// its streams' JSON Schemas, or inferred from each stream's first
    /// batch (read and put back).
    pub fn discover(&mut self, config: &str) -> Result<Vec<Stream>> {
        self.arm();
        let infos = match &self.exports {
            Exports::Arrow(source, ..) => source.call_discover(&mut self.store, config),
            Exports::Records(records) => {
                let streams = records
                    .call_discover(&mut self.store, config)
                    .map_err(|e| self.trap(e, "discover"))?
                    .map_err(failed)?;
                return streams
                    .into_iter()
                    .map(|s| self.records_stream(config, s))
                    .collect();
            }
        }
        .map_err(|e| self.trap(e, "discover"))?
        .map_err(failed)?;
        infos
            .into_iter()
            .map(|info| {
                let schema = sluice_ipc::decode_schema(&info.arrow_schema).with_context(|| {
                    format!("the schema of stream '{}' is not Arrow IPC", info.name)
                })?;
                Ok(Stream { schema, info })
            })
            .collect()
    }

    /// A records connector's stream as the host sees every stream.
    fn records_stream(&mut self, config: &str, s: RecordsStream) -> Result<Stream> {
        let schema = match &s.json_schema {
            Some(text) => records::declared(text)
                .map_err(|e| failed(ConnectorError::Config(format!("stream '{}': {e}", s.name))))?,
            None => self.infer(config, &s.name)?,
        };
        let mut arrow_schema = Vec::new();
        arrow_ipc::writer::StreamWriter::try_new(&mut arrow_schema, &schema)?.finish()?;
        Ok(Stream {
            info: StreamInfo {
                name: s.name,
                arrow_schema,
                cursor_fields: s.cursor_fields,
                primary_key: s.primary_key,
            },
            schema,
        })
    }

    /// The columns of records stream `stream` as its discover gives them
    /// (only that stream's are inferred, if it declares none).
    fn records_schema(&mut self, guest: &Records, config: &str, stream: &str) -> Result<SchemaRef> {
        self.arm();
        let listed = guest
            .call_discover(&mut self.store, config)
            .map_err(|e| self.trap(e, "discover"))?
            .map_err(failed)?;
        let s = listed
            .into_iter()
            .find(|s| s.name == stream)
            .ok_or_else(|| {
                failed(ConnectorError::Config(format!(
                    "the connector read stream '{stream}', which its discover does not list"
                )))
            })?;
        Ok(self.records_stream(config, s)?.schema)
    }

    /// The columns of a records stream that declares none: inferred from
    /// its first batch.
    fn infer(&mut self, config: &str, stream: &str) -> Result<SchemaRef> {
        let Exports::Records(records) = &self.exports else {
            bail!("only a records connector's columns are inferred");
        };
        let guest = records.clone();
        self.arm();
        let reader = guest
            .call_read(&mut self.store, config, stream, None)
            .map_err(|e| self.trap(e, "read"))?
            .map_err(failed)?;
        self.arm();
        let first = guest
            .reader()
            .call_next(&mut self.store, reader)
            .map_err(|e| self.trap(e, "next"))?
            .map_err(failed)?;
        self.close(reader)?;
        let bad = |e: records::Bad| {
            failed(ConnectorError::Data(format!(
                "stream '{stream}', first batch, {e}"
            )))
        };
        match first {
            Some(b) if !b.records.trim().is_empty() => records::inferred(&b.records).map_err(bad),
            _ => Err(failed(ConnectorError::Config(format!(
                "stream '{stream}' declares no json-schema and its first batch holds no records to infer its columns from: give it a json-schema"
            )))),
        }
    }

    /// Starts reading `stream`. A records connector's batches decode into
    /// the `schema` the config carries (the table's, which the host adds),
    /// else into the stream's discovered columns; the connector gets its
    /// config without it.
    pub fn read(&mut self, config: &str, stream: &str, state: Option<&str>) -> Result<ResourceAny> {
        self.arm();
        let guest = match &self.exports {
            Exports::Arrow(source, ..) => {
                return source
                    .call_read(&mut self.store, config, stream, state)
                    .map_err(|e| self.trap(e, "read"))?
                    .map_err(failed);
            }
            Exports::Records(records) => records.clone(),
        };
        let mut own: serde_json::Value =
            serde_json::from_str(config).context("the connector's config is not JSON")?;
        let given = own
            .as_object_mut()
            .and_then(|o| o.remove("schema"))
            .map(serde_json::from_value::<Schema>)
            .transpose()
            .context("the config's `schema` is not an Arrow schema")?;
        let config = own.to_string();
        // The connector's own answer first (an unknown stream is its to
        // refuse), then the columns its batches decode into.
        let reader = guest
            .call_read(&mut self.store, &config, stream, state)
            .map_err(|e| self.trap(e, "read"))?
            .map_err(failed)?;
        let schema = match given {
            Some(schema) => Arc::new(schema),
            None => match self.records_schema(&guest, &config, stream) {
                Ok(schema) => schema,
                Err(e) => {
                    self.close(reader)?;
                    return Err(e);
                }
            },
        };
        self.records.push(RecordsRead {
            reader,
            stream: stream.to_string(),
            schema,
            batches: 0,
        });
        Ok(reader)
    }

    /// The next batch from `reader` with the checkpoint after it; `None` at
    /// the end.
    pub fn next(&mut self, reader: ResourceAny) -> Result<Option<(Payload, Option<String>)>> {
        self.arm();
        let guest = match &self.exports {
            Exports::Arrow(source, ..) => {
                let batch = source
                    .reader()
                    .call_next(&mut self.store, reader)
                    .map_err(|e| self.trap(e, "next"))?
                    .map_err(failed)?;
                return Ok(batch.map(|b| (Payload::Ipc(b.ipc), b.checkpoint)));
            }
            Exports::Records(records) => records.clone(),
        };
        let batch = guest
            .reader()
            .call_next(&mut self.store, reader)
            .map_err(|e| self.trap(e, "next"))?
            .map_err(failed)?;
        let Some(batch) = batch else {
            return Ok(None);
        };
        let read = self
            .records
            .iter_mut()
            .find(|r| r.reader == reader)
            .context("a records reader this session did not open")?;
        read.batches += 1;
        let data = records::decode(&batch.records, &read.schema).map_err(|e| {
            failed(ConnectorError::Data(format!(
                "stream '{}', batch {}, {e}",
                read.stream, read.batches
            )))
        })?;
        Ok(Some((Payload::Decoded(data), batch.checkpoint)))
    }

    fn planner(&self) -> Result<&Planner> {
        match &self.exports {
            Exports::Arrow(_, Some(planner), _) => Ok(planner),
            _ => bail!(
                "the connector does not plan its own batches (it exports no sluice:connector/planner)"
            ),
        }
    }

    /// Where `stream`'s input ends now, as the connector puts it.
    pub fn latest(&mut self, config: &str, stream: &str) -> Result<String> {
        self.arm();
        let planner = self.planner()?.clone();
        planner
            .call_latest(&mut self.store, config, stream)
            .map_err(|e| self.trap(e, "latest"))?
            .map_err(failed)
    }

    /// The plan of the batch after `after`, up to `until`; `None` when
    /// there is nothing new.
    pub fn plan(
        &mut self,
        config: &str,
        stream: &str,
        after: Option<&str>,
        until: Option<&str>,
    ) -> Result<Option<String>> {
        self.arm();
        let planner = self.planner()?.clone();
        planner
            .call_plan(&mut self.store, config, stream, after, until)
            .map_err(|e| self.trap(e, "plan"))?
            .map_err(failed)
    }

    /// The batch `plan` as at most `parts` parts to read at once (each a
    /// `read` state); the plan alone when the connector does not split.
    /// The parts may need this instance to stay until their readers are
    /// open.
    pub fn split(
        &mut self,
        config: &str,
        stream: &str,
        plan: &str,
        parts: u32,
    ) -> Result<Vec<String>> {
        let Exports::Arrow(_, Some(_), Some(splitter)) = &self.exports else {
            return Ok(vec![plan.to_string()]);
        };
        let splitter = splitter.clone();
        self.arm();
        let split = splitter
            .call_split(&mut self.store, config, stream, plan, parts)
            .map_err(|e| self.trap(e, "split"))?
            .map_err(failed)?;
        if split.is_empty() || split.len() > parts.max(1) as usize {
            bail!(
                "the connector split a batch into {} parts, where 1 to {parts} were asked for",
                split.len()
            );
        }
        Ok(split)
    }

    /// Tells the connector that the batch `plan` is committed.
    pub fn committed(&mut self, config: &str, stream: &str, plan: &str) -> Result<()> {
        self.arm();
        let planner = self.planner()?.clone();
        planner
            .call_committed(&mut self.store, config, stream, plan)
            .map_err(|e| self.trap(e, "committed"))?
            .map_err(failed)
    }

    /// The linear memory the instance holds (the most it has held).
    pub fn memory_bytes(&self) -> usize {
        self.store.data().memory_bytes()
    }

    /// Releases `reader`.
    pub fn close(&mut self, reader: ResourceAny) -> Result<()> {
        self.records.retain(|r| r.reader != reader);
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

/// The most bytes the dictionary-encoded columns of one batch may expand
/// to: a dictionary lets a small batch stand for a huge one.
const MAX_EXPANDED: usize = 2 << 30;

/// What expanding the dictionaries in `a` would allocate, about.
fn expansion(a: &dyn Array) -> usize {
    use arrow_array::cast::AsArray;
    fn lengths<O: arrow_array::OffsetSizeTrait>(offsets: &[O], keys: &[usize]) -> usize {
        keys.iter()
            .map(|k| match (offsets.get(*k), offsets.get(k + 1)) {
                (Some(s), Some(e)) => (*e - *s).as_usize(),
                _ => 0,
            })
            .sum()
    }
    if let Some(d) = a.as_any_dictionary_opt() {
        let (values, keys) = (d.values(), d.normalized_keys());
        return match values.data_type() {
            DataType::Utf8 => lengths(values.as_string::<i32>().value_offsets(), &keys),
            DataType::LargeUtf8 => lengths(values.as_string::<i64>().value_offsets(), &keys),
            DataType::Binary => lengths(values.as_binary::<i32>().value_offsets(), &keys),
            DataType::LargeBinary => lengths(values.as_binary::<i64>().value_offsets(), &keys),
            _ => keys
                .len()
                .saturating_mul(values.get_array_memory_size() / values.len().max(1)),
        };
    }
    match a.data_type() {
        DataType::Struct(_) => a
            .as_struct()
            .columns()
            .iter()
            .map(|c| expansion(c.as_ref()))
            .sum(),
        DataType::List(_) => expansion(a.as_list::<i32>().values().as_ref()),
        DataType::LargeList(_) => expansion(a.as_list::<i64>().values().as_ref()),
        _ => 0,
    }
}

/// `batch` in the `stored` schema (the same columns): dictionary-encoded
/// columns expanded to their values (refused if they would expand past
/// [`MAX_EXPANDED`] bytes), and types the table's format lacks widened. A
/// value that does not convert fails the batch; it never becomes a null.
pub fn to_stored(batch: &RecordBatch, stored: &SchemaRef) -> Result<RecordBatch> {
    let expanded: usize = batch
        .columns()
        .iter()
        .zip(stored.fields())
        .filter(|(c, f)| c.data_type() != f.data_type())
        .map(|(c, _)| expansion(c.as_ref()))
        .sum();
    if expanded > MAX_EXPANDED {
        bail!(
            "the connector sent a batch whose dictionary-encoded columns expand to {expanded} bytes (at most {MAX_EXPANDED}); send smaller batches"
        );
    }
    let columns = batch
        .columns()
        .iter()
        .zip(stored.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow_cast::cast_with_options(
                    c,
                    f.data_type(),
                    &arrow_cast::CastOptions {
                        safe: false,
                        ..Default::default()
                    },
                )
                .with_context(|| {
                    format!(
                        "column '{}' of type {} cannot be stored as {}",
                        f.name(),
                        c.data_type(),
                        f.data_type()
                    )
                })
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

/// Decodes an IPC stream from a connector, vetted as untrusted bytes
/// (`sluice_ipc`); dictionaries are the connector's transport encoding.
pub fn decode(ipc: impl Into<Vec<u8>>) -> Result<Vec<RecordBatch>> {
    let (_, batches) = sluice_ipc::decode(ipc, true)
        .context("the connector sent a batch that is not valid Arrow IPC")?;
    Ok(batches)
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
