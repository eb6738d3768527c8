//! Kafka record batches (every compression Kafka uses) into Arrow rows, as
//! Spark's Kafka source gives them: `key`, `value`, `topic`, `partition`,
//! `offset`, `timestamp`, `timestampType`, and `headers` when asked.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, StructBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bytes::{Buf, Bytes};
use kafka_protocol::compression::{Decompressor, Gzip, Snappy, Zstd};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, TimestampType};
use sluice_connector_sdk::Error;

use crate::options::{Options, ValueFormat};

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, true),
    ])
}

/// The rows' schema for `options`.
pub fn schema(options: &Options) -> SchemaRef {
    let value = match options.value_format {
        ValueFormat::Raw => DataType::Binary,
        ValueFormat::Text => DataType::Utf8,
    };
    let mut fields = vec![
        Field::new("key", DataType::Binary, true),
        Field::new("value", value, true),
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("timestampType", DataType::Int32, false),
    ];
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
    Arc::new(Schema::new(fields))
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
pub fn decode(mut records: Bytes) -> Result<Vec<Record>, Error> {
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
    rows: usize,
}

impl Rows {
    /// Empty rows for `options`.
    pub fn new(options: &Options) -> Self {
        Rows {
            schema: schema(options),
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
            rows: 0,
        }
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Adds `record` of `topic` / `partition`.
    pub fn push(&mut self, topic: &str, partition: i32, r: &Record) -> Result<(), Error> {
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
        let value: ArrayRef = match self.format {
            ValueFormat::Raw => Arc::new(self.value_raw.finish()),
            ValueFormat::Text => Arc::new(self.value_text.finish()),
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.key.finish()),
            value,
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.timestamp_type.finish()),
        ];
        if let Some(h) = &mut self.headers {
            columns.push(Arc::new(h.finish()));
        }
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}
