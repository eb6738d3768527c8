//! Kafka record batches (every compression Kafka uses) into Arrow rows, as
//! Spark's Kafka source gives them: `key`, `value`, `topic`, `partition`,
//! `offset`, `timestamp`, `timestampType`, and `headers` when asked.
//!
//! With `valueFormat=json` each value's keys become the data columns (as
//! the files connector reads a JSON line, by the same code), and with
//! `valueFormat=csv` each value's fields (`_c0`, `_c1`, ...); the rescued
//! data column and a `_metadata` struct of the record's other fields (key,
//! topic, partition, offset, timestamp, ...) follow.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, StructBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{
    ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, StringArray, StructArray,
};
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use bytes::{Buf, Bytes};
use kafka_protocol::compression::{Decompressor, Gzip, Snappy, Zstd};
use kafka_protocol::records::{Compression, Record as Message, RecordBatchDecoder, TimestampType};
use serde_json::Value;
use sluice_connector_sdk::{Error, host};
use sluice_formats::csv::Tokenizer;
use sluice_formats::kinds::{Kind, classify};
use sluice_formats::objects::{FAILFAST_ADVICE, Record, decode_objects, decode_whole};

use crate::options::{CsvValues, Mode, Options, ValueFormat, ValueOptions};

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, true),
    ])
}

/// Name of the struct of the record's own fields when values are parsed
/// into columns.
pub const METADATA: &str = "_metadata";

/// The record's own fields: `key`, then the value's column when `value` is
/// given (Spark's layout), then the rest.
fn record_fields(options: &Options, value: Option<DataType>) -> Vec<Field> {
    let mut fields = vec![Field::new("key", DataType::Binary, true)];
    if let Some(value) = value {
        fields.push(Field::new("value", value, true));
    }
    fields.extend([
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("timestampType", DataType::Int32, false),
    ]);
    if options.include_headers {
        fields.push(Field::new(
            "headers",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(header_fields()),
                false,
            ))),
            true,
        ));
    }
    fields
}

/// The rows' schema for `options`; with values parsed into columns, `data`
/// are the value's columns.
pub fn schema(options: &Options, data: &[FieldRef]) -> Result<SchemaRef, Error> {
    let value = match options.value_format {
        ValueFormat::Raw => DataType::Binary,
        ValueFormat::Text => DataType::Utf8,
        ValueFormat::Json | ValueFormat::Csv => return parsed_schema(options, data),
    };
    Ok(Arc::new(Schema::new(record_fields(options, Some(value)))))
}

/// The data columns, the rescued data column and `_metadata` (unless the
/// data has a column of that name), with the appended ones marked as the
/// host's schema log expects.
fn parsed_schema(options: &Options, data: &[FieldRef]) -> Result<SchemaRef, Error> {
    let json = options
        .values
        .as_ref()
        .expect("value options with valueFormat json or csv");
    if data.iter().any(|f| f.name() == &json.rescue) {
        return Err(Error::Config(format!(
            "the values have a key '{}', the rescued data column's name: pick another with rescuedDataColumn",
            json.rescue
        )));
    }
    let mut fields: Vec<FieldRef> = data.to_vec();
    fields.push(Arc::new(Field::new(&json.rescue, DataType::Utf8, true)));
    let mut appended = vec![json.rescue.as_str()];
    if !data.iter().any(|f| f.name() == METADATA) {
        fields.push(Arc::new(Field::new(
            METADATA,
            DataType::Struct(Fields::from(record_fields(options, None))),
            false,
        )));
        appended.push(METADATA);
    }
    let metadata = [(
        sluice_files_contract::APPENDED.to_string(),
        appended.join(","),
    )]
    .into();
    Ok(Arc::new(Schema::new_with_metadata(fields, metadata)))
}

/// Decompresses one batch's records: Kafka's LZ4 is the LZ4 frame format
/// (read in pure Rust here), the rest the codec's own.
fn decompress(buf: &mut Bytes, compression: Compression) -> anyhow::Result<Bytes> {
    let all = |b: &mut Bytes| Ok(std::mem::take(b));
    match compression {
        Compression::None => Ok(std::mem::take(buf)),
        Compression::Gzip => Gzip::decompress(buf, all),
        Compression::Snappy => Snappy::decompress(buf, all),
        Compression::Zstd => Zstd::decompress(buf, all),
        Compression::Lz4 => {
            let mut out = Vec::new();
            std::io::copy(
                &mut lz4_flex::frame::FrameDecoder::new(buf.clone().reader()),
                &mut out,
            )?;
            buf.advance(buf.len());
            Ok(Bytes::from(out))
        }
    }
}

/// The record batches in `records` (a fetch's bytes for one partition).
/// A batch the broker cut short at the end is left out: it is fetched
/// again from its first offset.
pub fn decode(mut records: Bytes) -> Result<Vec<Message>, Error> {
    let mut out = Vec::new();
    // Base offset (8) and batch length (4) lead every batch.
    while records.len() >= 12 {
        let length = i32::from_be_bytes(records[8..12].try_into().expect("4 bytes"));
        if length < 0 || records.len() < 12 + length as usize {
            break;
        }
        let set =
            RecordBatchDecoder::decode_with_custom_compression(&mut records, Some(decompress))
                .map_err(|e| Error::Data(format!("an undecodable record batch: {e}")))?;
        out.extend(set.records);
    }
    Ok(out)
}

/// Rows of one batch, built as records arrive.
pub struct Rows {
    schema: SchemaRef,
    key: BinaryBuilder,
    value_raw: BinaryBuilder,
    value_text: StringBuilder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: TimestampMicrosecondBuilder,
    timestamp_type: Int32Builder,
    headers: Option<ListBuilder<StructBuilder>>,
    format: ValueFormat,
    /// With values parsed into columns: the values, where each came from,
    /// and the data columns they are decoded into.
    values: Vec<(Option<Bytes>, Place)>,
    json: Option<(ValueOptions, SchemaRef)>,
    rows: usize,
}

/// Where a record is: topic, partition and offset.
#[derive(Debug, Clone)]
pub struct Place {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topic '{}' partition {} offset {}",
            self.topic, self.partition, self.offset
        )
    }
}

impl Rows {
    /// Empty rows for `options`; with values parsed into columns, decoded
    /// into the data columns the host gave.
    pub fn new(options: &Options) -> Result<Self, Error> {
        let data: Vec<FieldRef> = match &options.values {
            None => vec![],
            Some(j) => j.data.clone().ok_or_else(|| {
                Error::Config(
                    "values parsed into columns are read with the schema discover gave, which the host passes as `schema`"
                        .into(),
                )
            })?,
        };
        Ok(Rows {
            schema: schema(options, &data)?,
            key: BinaryBuilder::new(),
            value_raw: BinaryBuilder::new(),
            value_text: StringBuilder::new(),
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            timestamp: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            timestamp_type: Int32Builder::new(),
            headers: options.include_headers.then(|| {
                ListBuilder::new(StructBuilder::from_fields(header_fields(), 0)).with_field(
                    Arc::new(Field::new("item", DataType::Struct(header_fields()), false)),
                )
            }),
            format: options.value_format,
            values: Vec::new(),
            json: options
                .values
                .clone()
                .map(|j| (j, Arc::new(Schema::new(data)))),
            rows: 0,
        })
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Adds `record` of `topic` / `partition`.
    pub fn push(&mut self, topic: &str, partition: i32, r: &Message) -> Result<(), Error> {
        let mut value = r.value.clone();
        if self.json.as_ref().is_some_and(|(j, _)| j.debezium) {
            // Where the record is, written only into an error.
            let place = format_args!("topic '{topic}' partition {partition} offset {}", r.offset);
            value = crate::envelope::row(r.value.as_deref(), place)?;
            // A tombstone is not a row.
            if value.is_none() {
                return Ok(());
            }
        }
        self.key.append_option(r.key.as_deref());
        match self.format {
            ValueFormat::Raw => self.value_raw.append_option(r.value.as_deref()),
            ValueFormat::Text => match r.value.as_deref().map(std::str::from_utf8) {
                None => self.value_text.append_null(),
                Some(Ok(s)) => self.value_text.append_value(s),
                Some(Err(_)) => {
                    return Err(Error::Data(format!(
                        "topic '{topic}' partition {partition} offset {}: the value is not UTF-8 text (valueFormat=text); read it with valueFormat=raw",
                        r.offset
                    )));
                }
            },
            ValueFormat::Json | ValueFormat::Csv => self.values.push((
                value,
                Place {
                    topic: match self.values.last() {
                        Some((_, last)) if &*last.topic == topic => last.topic.clone(),
                        _ => topic.into(),
                    },
                    partition,
                    offset: r.offset,
                },
            )),
        }
        self.topic.append_value(topic);
        self.partition.append_value(partition);
        self.offset.append_value(r.offset);
        self.timestamp
            .append_value(r.timestamp.saturating_mul(1000));
        self.timestamp_type.append_value(match r.timestamp_type {
            TimestampType::Creation => 0,
            TimestampType::LogAppend => 1,
        });
        if let Some(h) = &mut self.headers {
            let entries = h.values();
            for (k, v) in &r.headers {
                entries
                    .field_builder::<StringBuilder>(0)
                    .expect("the key builder")
                    .append_value(k.as_str());
                entries
                    .field_builder::<BinaryBuilder>(1)
                    .expect("the value builder")
                    .append_option(v.as_deref());
                entries.append(true);
            }
            h.append(true);
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows as a batch; the builders start over.
    pub fn finish(&mut self) -> Result<RecordBatch, Error> {
        let rows = std::mem::take(&mut self.rows);
        let mut record: Vec<ArrayRef> = vec![Arc::new(self.key.finish())];
        let value: Option<ArrayRef> = match self.format {
            ValueFormat::Raw => Some(Arc::new(self.value_raw.finish())),
            ValueFormat::Text => Some(Arc::new(self.value_text.finish())),
            ValueFormat::Json | ValueFormat::Csv => None,
        };
        record.extend(value);
        record.extend([
            Arc::new(self.topic.finish()) as ArrayRef,
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.timestamp_type.finish()),
        ]);
        if let Some(h) = &mut self.headers {
            record.push(Arc::new(h.finish()));
        }
        match &self.json {
            None => Ok(RecordBatch::try_new(self.schema.clone(), record)?),
            Some((json, data)) => {
                let values = std::mem::take(&mut self.values);
                decode_values(json, data, &self.schema, values, record, rows)
            }
        }
    }
}

/// Parses one value: a missing or empty value (a tombstone) is a record
/// with no keys, so its data columns are null.
fn parse_value(value: Option<&Bytes>, options: &ValueOptions) -> Record {
    let Some(bytes) = value.filter(|b| !b.is_empty()) else {
        return Record {
            value: Ok(Value::Object(Default::default())),
            text: String::new(),
        };
    };
    let text = String::from_utf8_lossy(bytes).into_owned();
    let value = match &options.csv {
        None => serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}")),
        Some(csv) => csv_cells(bytes, csv).map(|cells| {
            Value::Object(
                cells
                    .into_iter()
                    .enumerate()
                    .map(|(i, cell)| (format!("_c{i}"), cell_value(cell, options.infer_types)))
                    .collect(),
            )
        }),
    };
    Record { value, text }
}

/// The fields of a CSV value, `None` where null (`nullValue`); an error
/// says why the value is not one CSV record.
pub fn csv_cells(bytes: &Bytes, csv: &CsvValues) -> Result<Vec<Option<String>>, String> {
    let mut tok = Tokenizer::new(Box::new(std::io::Cursor::new(bytes.clone())), &csv.syntax);
    let malformed = |e: std::io::Error| format!("malformed CSV: {e}");
    if !tok.read_record().map_err(malformed)? {
        return Ok(vec![]);
    }
    if let Some(fault) = tok.fault(0) {
        return Err(format!("malformed CSV: {fault}"));
    }
    let mut cells = Vec::with_capacity(tok.width(0));
    for i in 0..tok.width(0) {
        let raw = tok.field(0, i).unwrap_or_default();
        if raw == csv.null_value.as_bytes() {
            cells.push(None);
            continue;
        }
        let cell = std::str::from_utf8(raw)
            .map_err(|_| format!("malformed CSV: field {} is not UTF-8 text", i + 1))?;
        cells.push(Some(cell.to_string()));
    }
    if tok.read_record().map_err(malformed)? {
        return Err(
            "malformed CSV: the value holds more than one record (a line break outside quotes)"
                .into(),
        );
    }
    Ok(cells)
}

/// A CSV cell as the JSON value it is decoded from: text the columns'
/// types parse (numbers, dates, times), a boolean where inference says so.
fn cell_value(cell: Option<String>, infer_types: bool) -> Value {
    match cell {
        None => Value::Null,
        Some(c) if infer_types && classify(&c) == Kind::Bool => {
            Value::Bool(c.eq_ignore_ascii_case("true"))
        }
        Some(c) => Value::String(c),
    }
}

/// Decodes the values of a batch into `data`'s columns and assembles the
/// rows of `schema`: data, rescued data, `_metadata` (the record's columns
/// `record`). FAILFAST fails on the first malformed value, naming it;
/// DROPMALFORMED drops and counts them.
fn decode_values(
    json: &ValueOptions,
    data: &SchemaRef,
    schema: &SchemaRef,
    values: Vec<(Option<Bytes>, Place)>,
    record: Vec<ArrayRef>,
    rows: usize,
) -> Result<RecordBatch, Error> {
    // CSV cells are text that the columns' types parse.
    let coerce = !json.infer_types || json.csv.is_some();
    // JSON values that need no handling decode in one pass.
    if json.csv.is_none() {
        let whole: Vec<Option<&[u8]>> = values.iter().map(|(v, _)| v.as_deref()).collect();
        if let Some(data) = decode_whole(data, coerce, &whole) {
            let rescued = Arc::new(StringArray::new_null(rows));
            return assemble(schema, data.columns().to_vec(), rescued, record, rows);
        }
    }
    let (records, places): (Vec<Record>, Vec<Place>) = values
        .into_iter()
        .map(|(v, place)| (parse_value(v.as_ref(), json), place))
        .unzip();
    let decoded = decode_objects(data, coerce, true, json.mode, records)?;
    if decoded.with_new_columns > 0 {
        host::count("records-with-new-columns", decoded.with_new_columns as u64);
    }
    let bad = decoded.bad;
    if json.mode == Mode::FailFast
        && let Some(r) = bad.iter().position(Option::is_some)
    {
        return Err(Error::Data(format!(
            "{}: {} ({FAILFAST_ADVICE})",
            places[r],
            bad[r].as_deref().unwrap_or("malformed value")
        )));
    }
    let rescue = decoded.rescue.unwrap_or_default();
    if rescue.count() > 0 {
        host::count("rows-rescued", rescue.count());
    }
    let rescued = if rescue.count() > 0 {
        rescue.finish(|r, m| {
            let p = &places[r];
            m.insert("_topic".into(), Value::from(&*p.topic));
            m.insert("_partition".into(), Value::from(p.partition));
            m.insert("_offset".into(), Value::from(p.offset));
        })
    } else {
        Arc::new(StringArray::new_null(rows))
    };
    let mut batch = assemble(
        schema,
        decoded.data.columns().to_vec(),
        rescued,
        record,
        rows,
    )?;
    let malformed = bad.iter().filter(|b| b.is_some()).count();
    if malformed > 0 && json.mode == Mode::DropMalformed {
        host::count("rows-dropped", malformed as u64);
        let keep = BooleanArray::from(bad.iter().map(|b| b.is_none()).collect::<Vec<_>>());
        batch = arrow_select::filter::filter_record_batch(&batch, &keep)?;
    }
    Ok(batch)
}

/// The rows of `schema`: the data `columns`, the `rescued` column and
/// `_metadata` (the record's own columns `record`, unless the data has a
/// column of that name).
fn assemble(
    schema: &SchemaRef,
    mut columns: Vec<ArrayRef>,
    rescued: ArrayRef,
    record: Vec<ArrayRef>,
    rows: usize,
) -> Result<RecordBatch, Error> {
    columns.push(rescued);
    if sluice_files_contract::appended(schema).contains(&METADATA) {
        let DataType::Struct(fields) = schema.field_with_name(METADATA)?.data_type() else {
            unreachable!("_metadata is a struct");
        };
        columns.push(Arc::new(StructArray::try_new(
            fields.clone(),
            record,
            None,
        )?));
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}
