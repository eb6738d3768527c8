//! Arrow IPC from untrusted hands: uploads pushed over HTTP and batches an
//! uploaded connector sends. The decoder of the `arrow-ipc` crate trusts
//! what a message claims (a schema's type widths, a buffer's offset, a
//! column's length): crafted claims make it panic, or make later code
//! allocate terabytes and abort the process. So every message is framed and
//! vetted here before the decoder sees it:
//!
//! - a message's metadata is at most [`MAX_METADATA`] bytes and its body at
//!   most [`MAX_BODY`], and the body is buffered only as it arrives;
//! - only types Sluice can store, with valid parameters (an `Int` is 8, 16,
//!   32 or 64 bits wide, a decimal's precision fits its width, ...), no
//!   unions, views or run-end encoding, no compression, at most
//!   [`MAX_DEPTH`] levels and [`MAX_FIELDS`] fields;
//! - in each record batch, every column's length and null count are within
//!   [`MAX_ROWS`], every buffer lies inside the body, and a column with
//!   nulls has a validity bitmap as long as the column;
//! - dictionaries only where the caller allows them (a connector's
//!   transport encoding), never replacing or extending one;
//!
//! and the decoder runs under `catch_unwind` all the same, so a panic left
//! in it fails the input, not the service.
//!
//! ```
//! let bytes = b"not arrow at all";
//! let mut decoder = sluice_ipc::Decoder::new(false);
//! assert!(decoder.push(bytes).is_err());
//! ```

use std::collections::HashMap;

use arrow_array::RecordBatch;
use arrow_buffer::{Buffer, MutableBuffer};
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::{DateUnit, MessageHeader, Precision, TimeUnit, Type};
use arrow_schema::SchemaRef;

/// The most bytes of one message's metadata (a schema or batch of 100,000
/// columns takes a few megabytes).
pub const MAX_METADATA: usize = 16 << 20;
/// The most bytes of one message's body (one record batch).
pub const MAX_BODY: usize = 512 << 20;
/// The most rows of a batch, and values of any one column in it.
pub const MAX_ROWS: i64 = 1 << 26;
/// The deepest nesting of fields.
pub const MAX_DEPTH: usize = 64;
/// The most fields of a schema, nested ones included.
pub const MAX_FIELDS: usize = 100_000;

/// Why a stream was refused.
#[derive(Debug, thiserror::Error)]
#[error("not an Arrow IPC stream Sluice accepts: {0}")]
pub struct Refused(pub String);

/// Why decoding failed: the stream was refused before decoding, or the
/// decoder found it malformed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A claim of the stream was refused.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The decoder found the stream malformed.
    #[error("malformed Arrow IPC: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a column's buffers look like, to walk a batch's nodes and buffers
/// in the order the decoder reads them.
#[derive(Debug)]
enum Shape {
    /// Validity and one buffer of values (or of dictionary keys), each
    /// this many bytes wide (0: one bit, booleans).
    Fixed(usize),
    /// Validity, offsets (8 bytes each when large, else 4) and data.
    Var { large: bool },
    /// Validity only.
    Null,
    /// Validity, offsets (8 bytes each when large, else 4), then the
    /// child.
    List { large: bool, child: Box<Shape> },
    /// Validity, then the child.
    FixedList(Box<Shape>),
    /// Validity, then each child.
    Struct(Vec<Shape>),
}

/// Frames an IPC stream into whole messages and vets each one.
#[derive(Debug)]
pub struct Guard {
    /// Bytes of messages not yet whole, in memory aligned as Arrow wants
    /// it (message bodies are then aligned too: see [`Guard::frame`]).
    pending: MutableBuffer,
    /// The length (framing, metadata and body) of the message at the front
    /// of `pending`, once its metadata is vetted.
    vetted: Option<usize>,
    columns: Option<Vec<Shape>>,
    /// Dictionary id → the shape of its values, where dictionaries are
    /// allowed.
    dictionaries: Option<HashMap<i64, Shape>>,
    ended: bool,
}

fn refuse(why: impl Into<String>) -> Refused {
    Refused(why.into())
}

impl Guard {
    /// A guard for a stream that may (`dictionaries`) or may not hold
    /// dictionary-encoded columns.
    pub fn new(dictionaries: bool) -> Self {
        Guard {
            pending: MutableBuffer::new(0),
            vetted: None,
            columns: None,
            dictionaries: dictionaries.then(HashMap::new),
            ended: false,
        }
    }

    /// Takes the next bytes of the stream; returns the whole messages they
    /// complete, each vetted, ready for the decoder (slices of one buffer:
    /// a message is copied once, when it arrives).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Buffer>, Refused> {
        self.pending.extend_from_slice(chunk);
        self.take_whole()
    }

    /// [`Guard::push`] for bytes the caller gives up: when nothing is
    /// pending they become the buffer the messages are sliced from, not
    /// copied into it.
    pub fn push_owned(&mut self, bytes: Vec<u8>) -> Result<Vec<Buffer>, Refused> {
        if self.pending.is_empty() {
            self.pending = MutableBuffer::from(bytes);
        } else {
            self.pending.extend_from_slice(&bytes);
        }
        self.take_whole()
    }

    /// The whole messages at the front of what is pending, vetted.
    fn take_whole(&mut self) -> Result<Vec<Buffer>, Refused> {
        // The lengths of the whole messages at the front of `pending`.
        let mut whole = Vec::new();
        let mut at = 0;
        loop {
            if self.ended {
                if at < self.pending.len() {
                    return Err(refuse("bytes after the end of the stream"));
                }
                break;
            }
            let length = match self.vetted {
                Some(length) => length,
                None => match self.frame(at)? {
                    Some(length) => length,
                    None => break,
                },
            };
            if self.pending.len() - at < length {
                self.vetted = Some(length);
                break;
            }
            self.vetted = None;
            whole.push(length);
            at += length;
        }
        if whole.is_empty() {
            return Ok(Vec::new());
        }
        let mut rest = MutableBuffer::new(self.pending.len() - at);
        rest.extend_from_slice(&self.pending[at..]);
        let all = Buffer::from(std::mem::replace(&mut self.pending, rest));
        let mut start = 0;
        Ok(whole
            .into_iter()
            .map(|length| {
                let message = all.slice_with_length(start, length);
                start += length;
                message
            })
            .collect())
    }

    /// Reads and vets the framing and metadata of the message at `at` of
    /// `pending`; returns its whole length, or `None` until its metadata
    /// has arrived.
    fn frame(&mut self, at: usize) -> Result<Option<usize>, Refused> {
        let p = &self.pending[at..];
        if p.len() < 4 {
            return Ok(None);
        }
        let (prefix, len) = if p[..4] == [0xff; 4] {
            if p.len() < 8 {
                return Ok(None);
            }
            (8, u32::from_le_bytes([p[4], p[5], p[6], p[7]]) as usize)
        } else {
            // The legacy framing without the continuation marker.
            (4, u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize)
        };
        if len == 0 {
            self.ended = true;
            return Ok(Some(prefix));
        }
        if len > MAX_METADATA {
            return Err(refuse(format!(
                "a message's metadata claims {len} bytes (at most {MAX_METADATA})"
            )));
        }
        if (prefix + len) % 8 != 0 {
            return Err(refuse(
                "a message's metadata is not padded to 8 bytes, as Arrow IPC aligns bodies",
            ));
        }
        if p.len() < prefix + len {
            return Ok(None);
        }
        let metadata = p[prefix..prefix + len].to_vec();
        let body = self.vet(&metadata)?;
        Ok(Some(prefix + len + body))
    }

    /// Checks that the stream ended with whole messages.
    pub fn finish(&self) -> Result<(), Refused> {
        if !self.pending.is_empty() {
            return Err(refuse("the stream ends inside a message"));
        }
        if self.columns.is_none() {
            return Err(refuse("the stream holds no schema"));
        }
        Ok(())
    }

    /// Vets one message's metadata; returns its body's length.
    fn vet(&mut self, metadata: &[u8]) -> Result<usize, Refused> {
        let message = arrow_ipc::root_as_message(metadata)
            .map_err(|e| refuse(format!("a message is not an Arrow IPC message: {e}")))?;
        let body = usize::try_from(message.bodyLength())
            .ok()
            .filter(|b| *b <= MAX_BODY && b % 8 == 0)
            .ok_or_else(|| {
                refuse(format!(
                    "a message's body claims {} bytes (at most {MAX_BODY}, padded to 8)",
                    message.bodyLength()
                ))
            })?;
        match message.header_type() {
            MessageHeader::Schema if self.columns.is_none() => {
                let schema = message
                    .header_as_schema()
                    .ok_or_else(|| refuse("a schema message without a schema"))?;
                if schema.endianness() != arrow_ipc::Endianness::Little {
                    return Err(refuse("big-endian streams are not accepted"));
                }
                let fields = schema
                    .fields()
                    .ok_or_else(|| refuse("a schema without fields"))?;
                let mut count = 0;
                let mut columns = Vec::new();
                for f in fields.iter() {
                    columns.push(self.shape(f, 0, &mut count)?);
                }
                self.columns = Some(columns);
            }
            MessageHeader::Schema => return Err(refuse("a second schema")),
            MessageHeader::RecordBatch => {
                let columns = self
                    .columns
                    .as_deref()
                    .ok_or_else(|| refuse("a record batch before the schema"))?;
                let batch = message
                    .header_as_record_batch()
                    .ok_or_else(|| refuse("a record batch message without a batch"))?;
                check_batch(batch, body, columns)?;
            }
            MessageHeader::DictionaryBatch => {
                let Some(dictionaries) = &mut self.dictionaries else {
                    return Err(refuse("dictionary-encoded columns are not accepted here"));
                };
                let batch = message
                    .header_as_dictionary_batch()
                    .ok_or_else(|| refuse("a dictionary message without a batch"))?;
                if batch.isDelta() {
                    return Err(refuse("delta dictionaries are not accepted"));
                }
                // Each dictionary is sent once: a replacement would let a
                // stream grow without bound.
                let values = dictionaries.remove(&batch.id()).ok_or_else(|| {
                    refuse(format!(
                        "dictionary {} is unknown or sent twice",
                        batch.id()
                    ))
                })?;
                let data = batch
                    .data()
                    .ok_or_else(|| refuse("a dictionary message without values"))?;
                check_batch(data, body, std::slice::from_ref(&values))?;
            }
            other => return Err(refuse(format!("{other:?} messages are not accepted"))),
        }
        Ok(body)
    }

    fn shape(
        &mut self,
        f: arrow_ipc::Field,
        depth: usize,
        count: &mut usize,
    ) -> Result<Shape, Refused> {
        *count += 1;
        if depth > MAX_DEPTH {
            return Err(refuse(format!(
                "fields nest deeper than {MAX_DEPTH} levels"
            )));
        }
        if *count > MAX_FIELDS {
            return Err(refuse(format!("more than {MAX_FIELDS} fields")));
        }
        if let Some(encoding) = f.dictionary() {
            let width = encoding.indexType().map(|t| t.bitWidth());
            if !matches!(width, Some(8 | 16 | 32 | 64)) {
                return Err(refuse(
                    "a dictionary's keys must be 8, 16, 32 or 64-bit integers",
                ));
            }
            let values = self.value_shape(f, depth, count)?;
            let Some(dictionaries) = &mut self.dictionaries else {
                return Err(refuse("dictionary-encoded columns are not accepted here"));
            };
            if dictionaries.insert(encoding.id(), values).is_some() {
                return Err(refuse(format!(
                    "dictionary {} is used twice",
                    encoding.id()
                )));
            }
            return Ok(Shape::Fixed(width.unwrap_or(8) as usize / 8));
        }
        self.value_shape(f, depth, count)
    }

    /// The shape of `f`'s values (for a dictionary-encoded field: of its
    /// dictionary).
    fn value_shape(
        &mut self,
        f: arrow_ipc::Field,
        depth: usize,
        count: &mut usize,
    ) -> Result<Shape, Refused> {
        let params = |what: &str| refuse(format!("a {what} field without its parameters"));
        let bad = |what: &str| Err(refuse(format!("unsupported {what}")));
        let children: Vec<arrow_ipc::Field> =
            f.children().map(|c| c.iter().collect()).unwrap_or_default();
        Ok(match f.type_type() {
            Type::Null => Shape::Null,
            Type::Bool => Shape::Fixed(0),
            Type::Int => {
                let i = f.type_as_int().ok_or_else(|| params("Int"))?;
                if !matches!(i.bitWidth(), 8 | 16 | 32 | 64) {
                    return bad(&format!("Int bit width {}", i.bitWidth()));
                }
                Shape::Fixed(i.bitWidth() as usize / 8)
            }
            Type::FloatingPoint => {
                let p = f
                    .type_as_floating_point()
                    .ok_or_else(|| params("FloatingPoint"))?;
                if ![Precision::HALF, Precision::SINGLE, Precision::DOUBLE].contains(&p.precision())
                {
                    return bad("floating point precision");
                }
                Shape::Fixed(match p.precision() {
                    Precision::HALF => 2,
                    Precision::SINGLE => 4,
                    _ => 8,
                })
            }
            Type::Decimal => {
                let d = f.type_as_decimal().ok_or_else(|| params("Decimal"))?;
                let fits = matches!(
                    (d.bitWidth(), d.precision()),
                    (32, 1..=9) | (64, 1..=18) | (128, 1..=38) | (256, 1..=76)
                );
                if !fits || !(-128..=127).contains(&d.scale()) {
                    return bad("decimal width, precision or scale");
                }
                Shape::Fixed(d.bitWidth() as usize / 8)
            }
            Type::Date => {
                let u = f.type_as_date().ok_or_else(|| params("Date"))?.unit();
                if u != DateUnit::DAY && u != DateUnit::MILLISECOND {
                    return bad("date unit");
                }
                Shape::Fixed(if u == DateUnit::DAY { 4 } else { 8 })
            }
            Type::Time => {
                let t = f.type_as_time().ok_or_else(|| params("Time"))?;
                let fits = matches!(
                    (t.unit(), t.bitWidth()),
                    (TimeUnit::SECOND | TimeUnit::MILLISECOND, 32)
                        | (TimeUnit::MICROSECOND | TimeUnit::NANOSECOND, 64)
                );
                if !fits {
                    return bad("time unit or width");
                }
                Shape::Fixed(t.bitWidth() as usize / 8)
            }
            Type::Timestamp => {
                let t = f.type_as_timestamp().ok_or_else(|| params("Timestamp"))?;
                if !(0..=3).contains(&t.unit().0) {
                    return bad("timestamp unit");
                }
                Shape::Fixed(8)
            }
            Type::Duration => {
                let d = f.type_as_duration().ok_or_else(|| params("Duration"))?;
                if !(0..=3).contains(&d.unit().0) {
                    return bad("duration unit");
                }
                Shape::Fixed(8)
            }
            Type::Interval => {
                let i = f.type_as_interval().ok_or_else(|| params("Interval"))?;
                if !(0..=2).contains(&i.unit().0) {
                    return bad("interval unit");
                }
                // Year-month, day-time, month-day-nano.
                Shape::Fixed([4, 8, 16][i.unit().0 as usize])
            }
            Type::FixedSizeBinary => {
                let w = f
                    .type_as_fixed_size_binary()
                    .ok_or_else(|| params("FixedSizeBinary"))?;
                if !(1..=1 << 20).contains(&w.byteWidth()) {
                    return bad("fixed-size binary width");
                }
                Shape::Fixed(w.byteWidth() as usize)
            }
            Type::Utf8 | Type::Binary => Shape::Var { large: false },
            Type::LargeUtf8 | Type::LargeBinary => Shape::Var { large: true },
            Type::List | Type::LargeList | Type::Map => {
                let large = f.type_type() == Type::LargeList;
                let [child] = &children[..] else {
                    return Err(refuse("a list or map field needs exactly one child"));
                };
                let child = self.shape(*child, depth + 1, count)?;
                if f.type_type() == Type::Map && !matches!(&child, Shape::Struct(c) if c.len() == 2)
                {
                    return Err(refuse("a map's child must be a struct of key and value"));
                }
                Shape::List {
                    large,
                    child: Box::new(child),
                }
            }
            Type::FixedSizeList => {
                let size = f
                    .type_as_fixed_size_list()
                    .ok_or_else(|| params("FixedSizeList"))?
                    .listSize();
                if !(1..=1 << 16).contains(&size) {
                    return bad("fixed-size list size");
                }
                let [child] = &children[..] else {
                    return Err(refuse("a fixed-size list needs exactly one child"));
                };
                Shape::FixedList(Box::new(self.shape(*child, depth + 1, count)?))
            }
            Type::Struct_ => Shape::Struct(
                children
                    .into_iter()
                    .map(|c| self.shape(c, depth + 1, count))
                    .collect::<Result<_, _>>()?,
            ),
            other => return bad(&format!("column type {other:?}")),
        })
    }
}

/// Checks a record batch's claims against its body and its columns' shapes.
fn check_batch(
    batch: arrow_ipc::RecordBatch,
    body: usize,
    columns: &[Shape],
) -> Result<(), Refused> {
    if batch.compression().is_some() {
        return Err(refuse("compressed bodies are not accepted"));
    }
    if batch.variadicBufferCounts().is_some_and(|v| !v.is_empty()) {
        return Err(refuse("variadic buffers are not accepted"));
    }
    if !(0..=MAX_ROWS).contains(&batch.length()) {
        return Err(refuse(format!(
            "a batch claims {} rows (at most {MAX_ROWS})",
            batch.length()
        )));
    }
    let nodes = batch
        .nodes()
        .ok_or_else(|| refuse("a batch without field nodes"))?;
    let buffers = batch
        .buffers()
        .ok_or_else(|| refuse("a batch without buffers"))?;
    for b in buffers.iter() {
        let end = u64::try_from(b.offset())
            .ok()
            .zip(u64::try_from(b.length()).ok())
            .and_then(|(o, l)| o.checked_add(l));
        if end.is_none_or(|e| e > body as u64) {
            return Err(refuse("a buffer lies outside the message body"));
        }
        if b.offset() % 8 != 0 {
            return Err(refuse(
                "a buffer is not aligned to 8 bytes in its message body",
            ));
        }
    }
    let (mut nodes, mut buffers) = (nodes.iter(), buffers.iter());
    for shape in columns {
        walk(shape, &mut nodes, &mut buffers)?;
    }
    Ok(())
}

/// Walks one column's nodes and buffers, as the decoder will read them.
fn walk<'a>(
    shape: &Shape,
    nodes: &mut impl Iterator<Item = &'a arrow_ipc::FieldNode>,
    buffers: &mut impl Iterator<Item = &'a arrow_ipc::Buffer>,
) -> Result<(), Refused> {
    let node = nodes
        .next()
        .ok_or_else(|| refuse("fewer field nodes than columns"))?;
    let (len, nulls) = (node.length(), node.null_count());
    if !(0..=MAX_ROWS).contains(&len) || !(0..=len).contains(&nulls) {
        return Err(refuse(format!(
            "a column claims {len} values with {nulls} nulls"
        )));
    }
    let mut take = |n: usize| -> Result<Vec<&'a arrow_ipc::Buffer>, Refused> {
        (0..n)
            .map(|_| {
                buffers
                    .next()
                    .ok_or_else(|| refuse("fewer buffers than columns need"))
            })
            .collect()
    };
    if matches!(shape, Shape::Null) {
        // A null column has no buffers at all.
        return Ok(());
    }
    let validity = take(1)?[0];
    if nulls > 0 && validity.length().saturating_mul(8) < len {
        return Err(refuse("a validity bitmap is shorter than its column"));
    }
    // Typed buffers must hold whole values: the decoder reads them as
    // slices of the type and asserts as much.
    let whole = |b: &arrow_ipc::Buffer, width: usize| -> Result<(), Refused> {
        if width > 1 && b.length() % width as i64 != 0 {
            return Err(refuse(format!(
                "a buffer of {} bytes does not hold whole {width}-byte values",
                b.length()
            )));
        }
        Ok(())
    };
    let offsets = |large: bool| if large { 8 } else { 4 };
    match shape {
        Shape::Null => Ok(()),
        Shape::Fixed(width) => whole(take(1)?[0], *width),
        Shape::Var { large } => whole(take(2)?[0], offsets(*large)),
        Shape::List { large, child } => {
            whole(take(1)?[0], offsets(*large))?;
            walk(child, nodes, buffers)
        }
        Shape::FixedList(child) => walk(child, nodes, buffers),
        Shape::Struct(children) => children.iter().try_for_each(|c| walk(c, nodes, buffers)),
    }
}

/// Decodes an untrusted stream as it arrives: each pushed chunk yields the
/// record batches it completes.
pub struct Decoder {
    guard: Guard,
    decoder: StreamDecoder,
}

impl Decoder {
    /// A decoder for a stream that may (`dictionaries`) or may not hold
    /// dictionary-encoded columns.
    pub fn new(dictionaries: bool) -> Self {
        Decoder {
            guard: Guard::new(dictionaries),
            decoder: StreamDecoder::new(),
        }
    }

    /// Takes the next bytes; returns the batches they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<RecordBatch>> {
        let messages = self.guard.push(chunk)?;
        self.decode(messages)
    }

    /// [`Decoder::push`] for bytes the caller gives up (a whole stream
    /// lifted out of a connector's memory): not copied again.
    pub fn push_owned(&mut self, bytes: Vec<u8>) -> Result<Vec<RecordBatch>> {
        let messages = self.guard.push_owned(bytes)?;
        self.decode(messages)
    }

    fn decode(&mut self, messages: Vec<Buffer>) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for mut message in messages {
            while !message.is_empty() {
                let decoder = &mut self.decoder;
                let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    decoder.decode(&mut message)
                }))
                .map_err(|_| refuse("the decoder rejected a message (it panicked)"))?;
                if let Some(batch) = decoded? {
                    out.push(batch);
                }
            }
        }
        Ok(out)
    }

    /// The stream's schema, once its first message has been pushed.
    pub fn schema(&self) -> Option<SchemaRef> {
        self.decoder.schema()
    }

    /// Checks that the stream ended cleanly.
    pub fn finish(mut self) -> Result<()> {
        self.guard.finish()?;
        self.decoder.finish()?;
        Ok(())
    }
}

/// Decodes a whole untrusted stream: its schema and its batches. A `Vec`
/// is decoded where it lies (the batches' buffers are slices of it).
pub fn decode(
    bytes: impl Into<Vec<u8>>,
    dictionaries: bool,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut decoder = Decoder::new(dictionaries);
    let batches = decoder.push_owned(bytes.into())?;
    let schema = decoder
        .schema()
        .ok_or_else(|| refuse("the stream holds no schema"))?;
    decoder.finish()?;
    Ok((schema, batches))
}

/// The schema of a stream that holds only one (a connector's `discover`).
pub fn decode_schema(bytes: &[u8]) -> Result<SchemaRef> {
    let mut decoder = Decoder::new(true);
    decoder.push(bytes)?;
    let schema = decoder
        .schema()
        .ok_or_else(|| refuse("the stream holds no schema"))?;
    Ok(schema)
}

/// A schema and batches as one IPC stream (tests and tools).
#[cfg(test)]
fn encode(batches: &[RecordBatch]) -> Vec<u8> {
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.into_inner().unwrap()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, DictionaryArray, Int8Array, Int32Array, StringArray};
    use arrow_schema::{DataType, Field};

    use super::*;

    fn sample() -> RecordBatch {
        let dict: ArrayRef = Arc::new(DictionaryArray::new(
            Int32Array::from(vec![0, 0, 1]),
            Arc::new(StringArray::from(vec!["a", "b"])),
        ));
        RecordBatch::try_from_iter([
            (
                "i",
                Arc::new(Int8Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec!["x", "yy", "zzz"])) as ArrayRef,
            ),
            ("d", dict),
        ])
        .unwrap()
    }

    #[test]
    fn whole_and_chunked_streams_decode_alike() {
        let bytes = encode(&[sample(), sample()]);
        let (schema, batches) = decode(bytes.as_slice(), true).unwrap();
        assert_eq!(schema.fields().len(), 3);
        assert_eq!(batches, vec![sample(), sample()]);
        let mut d = Decoder::new(true);
        let mut got = Vec::new();
        for chunk in bytes.chunks(7) {
            got.extend(d.push(chunk).unwrap());
        }
        d.finish().unwrap();
        assert_eq!(got, vec![sample(), sample()]);
        assert_eq!(
            sample().schema().field(2).data_type(),
            &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
        );
        let e = decode(bytes.as_slice(), false).unwrap_err();
        assert!(e.to_string().contains("dictionary"), "{e}");
    }

    /// The position of the `i64` equal to `value` inside `bytes`, searched
    /// from `from`.
    fn find_i64(bytes: &[u8], from: usize, value: i64) -> usize {
        bytes[from..]
            .windows(8)
            .position(|w| w == value.to_le_bytes())
            .map(|p| p + from)
            .unwrap()
    }

    #[test]
    fn crafted_claims_are_refused_not_obeyed() {
        let plain = RecordBatch::try_from_iter([(
            "i",
            Arc::new(Int8Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
        )])
        .unwrap();
        let bytes = encode(&[plain]);
        // An Int of bit width 7 in the schema: the spot holding 8 whose
        // change the schema's Int reads back.
        let schema_len = 8 + u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let seven = (8..schema_len - 4)
            .filter(|&at| bytes[at..at + 4] == 8i32.to_le_bytes())
            .map(|at| {
                let mut b = bytes.clone();
                b[at..at + 4].copy_from_slice(&7i32.to_le_bytes());
                b
            })
            .find(|b| {
                arrow_ipc::root_as_message(&b[8..schema_len])
                    .ok()
                    .and_then(|m| m.header_as_schema())
                    .and_then(|s| s.fields())
                    .and_then(|f| f.get(0).type_as_int())
                    .is_some_and(|i| i.bitWidth() == 7)
            })
            .unwrap();
        let e = decode(seven.as_slice(), false).unwrap_err();
        assert!(e.to_string().contains("Int bit width 7"), "{e}");
        // The batch message: its node length (3) and its null count (1).
        for (value, forged) in [(3i64, 1i64 << 40), (3, -5), (1, 1 << 40)] {
            let mut crafted = bytes.clone();
            let at = find_i64(&crafted, schema_len, value);
            crafted[at..at + 8].copy_from_slice(&forged.to_le_bytes());
            let e = decode(crafted.as_slice(), false).unwrap_err();
            assert!(matches!(e, Error::Refused(_)), "{forged}: {e}");
        }
        // A body that claims 2^40 bytes.
        let mut huge = bytes.clone();
        let meta_len =
            u32::from_le_bytes(huge[schema_len + 4..schema_len + 8].try_into().unwrap()) as usize;
        let meta = &huge[schema_len + 8..schema_len + 8 + meta_len];
        let body = arrow_ipc::root_as_message(meta).unwrap().bodyLength();
        let at = find_i64(&huge, schema_len + 8, body);
        huge[at..at + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
        let e = decode(huge.as_slice(), false).unwrap_err();
        assert!(e.to_string().contains("body claims"), "{e}");
        // Truncated anywhere: an error, never a batch from half a message.
        for cut in 1..bytes.len() {
            let _ = decode(&bytes[..cut], false);
        }
    }

    #[test]
    fn unsupported_types_are_named() {
        let f = Field::new("u", DataType::Utf8View, true);
        let batch = RecordBatch::try_new(
            Arc::new(arrow_schema::Schema::new(vec![f])),
            vec![Arc::new(arrow_array::StringViewArray::from(vec!["a"]))],
        )
        .unwrap();
        let e = decode(encode(&[batch]), true).unwrap_err();
        assert!(e.to_string().contains("Utf8View"), "{e}");
    }
}
