//! CSV: tokenized by `csv-core`, converted column-wise to Arrow.
//!
//! Records of a batch are tokenized into one buffer; each column is then built
//! as strings and cast in one vectorized step. A value that does not cast
//! shows up as a null where the input was not null, which is how malformed
//! values are found without a per-value error path.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use arrow_array::builder::{BooleanBufferBuilder, BooleanBuilder, PrimitiveBuilder, StringBuilder};
use arrow_array::types::{
    ArrowTimestampType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, BooleanArray, PrimitiveArray, RecordBatch, StringArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_cast::cast::{CastOptions, cast_with_options};
use arrow_schema::{DataType, Field, TimeUnit};
use serde_json::Value;
use sluice_connector_sdk::{Error, host};

use crate::input::{first_record_at, io_error, open, open_at};
use crate::options::{FileRef, Mode, Options};
use crate::shape::{Rescue, Shape};

/// Streams records out of a reader, a batch at a time.
///
/// Lines without a quote or a lone carriage return, which are most lines of
/// most files, are split with `memchr` (SIMD) and copied in one piece; any
/// other record goes through `csv-core`, which handles quoting, escapes,
/// multi-line fields and a byte-order mark. Both paths meet at record
/// boundaries, where `csv-core` holds no state but its line count, which this
/// type keeps itself.
pub struct Tokenizer {
    input: Box<dyn Read>,
    core: csv_core::Reader,
    /// The plain-line fast path is safe with these options.
    fast: bool,
    quote: u8,
    comment: Option<u8>,
    delimiter: u8,
    inbuf: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    eof: bool,
    /// Field bytes of the records in the batch.
    data: Vec<u8>,
    data_len: usize,
    /// Absolute end offset in `data` of every field.
    ends: Vec<usize>,
    scratch_ends: Vec<usize>,
    records: Vec<RecordSpan>,
    /// Object offset of the first input byte, and input bytes consumed.
    base: u64,
    consumed: u64,
    /// Line feeds consumed so far.
    lines: u64,
    /// The last record ended at a carriage return.
    pending_lf: bool,
    /// The CSV syntax, for [`QuoteCheck`].
    escape: Option<u8>,
}

/// Where a record's fields are.
#[derive(Debug, Clone, Copy)]
struct RecordSpan {
    /// Index of its first field end in `ends`.
    first_end: usize,
    /// Field count.
    width: usize,
    /// Offset in `data` of its first field.
    start: usize,
    /// Bytes between one field's end and the next one's start: 0 where
    /// `csv-core` wrote the fields back to back, 1 where a plain line was
    /// copied with its delimiters.
    gap: usize,
    /// Line on which the record ends (1-based).
    line: u64,
    /// Object byte offset of its first byte.
    offset: u64,
    /// How its quoting is broken, if it is (csv-core reads on regardless).
    fault: Option<QuoteFault>,
}

/// A record whose quoting csv-core reads past without a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteFault {
    /// A quoted field opened on this line is never closed: csv-core would
    /// take the rest of the file as its value.
    Unterminated {
        /// The line the quote opened on.
        line: u64,
    },
    /// Text follows a closing quote on this line: csv-core would merge it
    /// into the value.
    TextAfterQuote {
        /// The line.
        line: u64,
    },
}

impl std::fmt::Display for QuoteFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuoteFault::Unterminated { line } => write!(
                f,
                "the quoted field opened on line {line} is never closed (the rest of the file would become one value)"
            ),
            QuoteFault::TextAfterQuote { line } => write!(
                f,
                "line {line}: text follows the closing quote of a field (quote the whole field, or double the quotes inside it)"
            ),
        }
    }
}

/// Where a quote-aware reading of a record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// At the start of a field (`record`: of a record, too).
    FieldStart { record: bool },
    /// In an unquoted field.
    Unquoted,
    /// In a quoted field.
    Quoted,
    /// After the escape character in a quoted field.
    Escaped,
    /// After a quote in a quoted field: it closes the field, or (doubled)
    /// stands for itself.
    QuoteInQuoted,
    /// In a comment line.
    Comment,
}

/// Mirrors csv-core's reading of one record's bytes to notice what csv-core
/// forgives: an unterminated quoted field and text after a closing quote.
/// It sees only records that hold a quote (or a carriage return); plain
/// lines never get here.
struct QuoteCheck {
    state: Quoting,
    quote: u8,
    delimiter: u8,
    escape: Option<u8>,
    comment: Option<u8>,
    /// The line of the byte being read, and where the open quote began.
    line: u64,
    opened: u64,
    fault: Option<QuoteFault>,
}

impl QuoteCheck {
    fn new(tok: &Tokenizer) -> Self {
        QuoteCheck {
            state: Quoting::FieldStart { record: true },
            quote: tok.quote,
            delimiter: tok.delimiter,
            escape: tok.escape,
            comment: tok.comment,
            line: tok.lines + 1,
            opened: 0,
            fault: None,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let end = b == b'\n' || b == b'\r';
            self.state = match self.state {
                Quoting::FieldStart { record: true } if Some(b) == self.comment => Quoting::Comment,
                Quoting::FieldStart { .. } if b == self.quote => {
                    self.opened = self.line;
                    Quoting::Quoted
                }
                Quoting::FieldStart { .. } | Quoting::Unquoted if end => {
                    Quoting::FieldStart { record: true }
                }
                Quoting::FieldStart { .. } | Quoting::Unquoted if b == self.delimiter => {
                    Quoting::FieldStart { record: false }
                }
                Quoting::FieldStart { .. } | Quoting::Unquoted => Quoting::Unquoted,
                Quoting::Comment if b == b'\n' => Quoting::FieldStart { record: true },
                Quoting::Comment => Quoting::Comment,
                Quoting::Quoted if Some(b) == self.escape => Quoting::Escaped,
                Quoting::Quoted if b == self.quote => Quoting::QuoteInQuoted,
                Quoting::Quoted => Quoting::Quoted,
                Quoting::Escaped => Quoting::Quoted,
                Quoting::QuoteInQuoted if b == self.quote && self.escape.is_none() => {
                    Quoting::Quoted
                }
                Quoting::QuoteInQuoted if end => Quoting::FieldStart { record: true },
                Quoting::QuoteInQuoted if b == self.delimiter => {
                    Quoting::FieldStart { record: false }
                }
                Quoting::QuoteInQuoted => {
                    self.fault
                        .get_or_insert(QuoteFault::TextAfterQuote { line: self.line });
                    Quoting::Unquoted
                }
            };
            if b == b'\n' {
                self.line += 1;
            }
        }
    }

    /// The verdict once the record ended (`eof`: at the end of the input).
    fn finish(&self, eof: bool) -> Option<QuoteFault> {
        if eof && matches!(self.state, Quoting::Quoted | Quoting::Escaped) {
            return Some(QuoteFault::Unterminated { line: self.opened });
        }
        self.fault
    }
}

impl Tokenizer {
    /// Tokenizes `input` with the CSV options.
    pub fn new(input: Box<dyn Read>, opts: &Options) -> Self {
        Self::at(input, opts, 0)
    }

    /// Tokenizes `input`, which starts at byte `base` of its object.
    pub fn at(input: Box<dyn Read>, opts: &Options, base: u64) -> Self {
        let core = csv_core::ReaderBuilder::new()
            .delimiter(opts.delimiter)
            .quote(opts.quote)
            .escape(opts.escape)
            .double_quote(opts.escape.is_none())
            .comment(opts.comment)
            .build();
        Tokenizer {
            input,
            core,
            fast: opts.delimiter != b'\r' && opts.delimiter != b'\n',
            quote: opts.quote,
            comment: opts.comment,
            delimiter: opts.delimiter,
            inbuf: vec![0; 1 << 20],
            in_pos: 0,
            in_len: 0,
            eof: false,
            data: vec![0; 1 << 20],
            data_len: 0,
            ends: Vec::new(),
            scratch_ends: vec![0; 256],
            records: Vec::new(),
            base,
            consumed: 0,
            lines: 0,
            pending_lf: false,
            escape: opts.escape,
        }
    }

    /// A small input buffer, and the fast path on or off, to test that both
    /// paths agree wherever a buffer boundary falls.
    #[cfg(test)]
    fn with_limits(mut self, buffer: usize, fast: bool) -> Self {
        self.inbuf = vec![0; buffer];
        self.fast = fast;
        self
    }

    /// Records held in the current batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Drops the batch's records, keeping buffers.
    pub fn clear(&mut self) {
        self.data_len = 0;
        self.ends.clear();
        self.records.clear();
    }

    /// Field `i` of record `r`, if the record has that many fields.
    #[inline(always)]
    pub fn field(&self, r: usize, i: usize) -> Option<&[u8]> {
        let rec = &self.records[r];
        if i >= rec.width {
            return None;
        }
        let start = if i == 0 {
            rec.start
        } else {
            self.ends[rec.first_end + i - 1] + rec.gap
        };
        Some(&self.data[start..self.ends[rec.first_end + i]])
    }

    /// Number of fields of record `r`.
    pub fn width(&self, r: usize) -> usize {
        self.records[r].width
    }

    /// Object byte offset where record `r` starts.
    pub fn start(&self, r: usize) -> u64 {
        self.records[r].offset
    }

    /// Drops the last record read.
    pub fn pop(&mut self) {
        if let Some(rec) = self.records.pop() {
            self.data_len = rec.start;
            self.ends.truncate(rec.first_end);
        }
    }

    /// Line on which record `r` ends (1-based).
    pub fn line(&self, r: usize) -> u64 {
        self.records[r].line
    }

    /// How record `r`'s quoting is broken, if it is.
    pub fn fault(&self, r: usize) -> Option<QuoteFault> {
        self.records[r].fault
    }

    /// Reads one more record into the batch; `false` at the end of input.
    pub fn read_record(&mut self) -> std::io::Result<bool> {
        if self.consumed == 0 && self.base == 0 {
            self.skip_bom()?;
        }
        loop {
            // A record csv-core ended at a carriage return still owns the
            // line feed after it.
            if std::mem::take(&mut self.pending_lf)
                && self.fill()?
                && self.inbuf[self.in_pos] == b'\n'
            {
                self.advance(1, 1);
            }
            let (len, feed) = match self.next_line()? {
                Line::End => return Ok(false),
                Line::TooLong => return self.core_record(),
                Line::Found { len, feed } => (len, feed),
            };
            let line = &self.inbuf[self.in_pos..self.in_pos + len];
            let body = line.strip_suffix(b"\r").unwrap_or(line);
            if body.is_empty() || self.comment.is_some_and(|c| body[0] == c) {
                // Blank lines and comments are no records (as in Spark).
                self.advance(len + usize::from(feed), u64::from(feed));
                continue;
            }
            if !self.fast || memchr::memchr2(self.quote, b'\r', body).is_some() {
                return self.core_record();
            }
            self.plain_record(body.len(), len + usize::from(feed), feed);
            return Ok(true);
        }
    }

    /// Skips a UTF-8 byte-order mark at the start of the input.
    fn skip_bom(&mut self) -> std::io::Result<()> {
        while self.in_len - self.in_pos < 3 && self.more()? {}
        if self.inbuf[self.in_pos..self.in_len].starts_with(b"\xEF\xBB\xBF") {
            self.advance(3, 0);
        }
        Ok(())
    }

    /// Consumes `bytes` input bytes holding `feeds` line feeds.
    fn advance(&mut self, bytes: usize, feeds: u64) {
        self.in_pos += bytes;
        self.consumed += bytes as u64;
        self.lines += feeds;
    }

    /// Finds the end of the line at the read position, reading more input
    /// as needed (up to [`MAX_LINE`] bytes).
    fn next_line(&mut self) -> std::io::Result<Line> {
        let mut searched = 0;
        loop {
            let rest = &self.inbuf[self.in_pos..self.in_len];
            if let Some(i) = memchr::memchr(b'\n', &rest[searched..]) {
                return Ok(Line::Found {
                    len: searched + i,
                    feed: true,
                });
            }
            searched = rest.len();
            if rest.len() >= MAX_LINE {
                return Ok(Line::TooLong);
            }
            if !self.more()? {
                let len = self.in_len - self.in_pos;
                return Ok(if len == 0 {
                    Line::End
                } else {
                    Line::Found { len, feed: false }
                });
            }
        }
    }

    /// Moves the unread bytes to the front of the buffer and reads more
    /// after them, growing the buffer when it is full; `false` at the end.
    fn more(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let rest = self.in_len - self.in_pos;
        self.inbuf.copy_within(self.in_pos..self.in_len, 0);
        self.in_pos = 0;
        self.in_len = rest;
        if rest == self.inbuf.len() {
            self.inbuf.resize(self.inbuf.len() * 2, 0);
        }
        let n = read_full(&mut self.input, &mut self.inbuf[rest..])?;
        self.in_len += n;
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// Takes the line at the read position, `body` bytes without its
    /// terminator and `taken` bytes with it (`feed`: ending in a line feed),
    /// as a record: it holds no quote and no carriage return, so its fields
    /// are what lies between the delimiters. The line is copied in one
    /// piece, delimiters included.
    fn plain_record(&mut self, body: usize, taken: usize, feed: bool) {
        let offset = self.base + self.consumed;
        let line = self.lines + 1;
        if self.data.len() - self.data_len < body {
            let grow = self.data.len().max(body);
            self.data.resize(self.data.len() + grow, 0);
        }
        let start = self.data_len;
        let end = start + body;
        self.data[start..end].copy_from_slice(&self.inbuf[self.in_pos..self.in_pos + body]);
        let first_end = self.ends.len();
        self.ends
            .extend(memchr::memchr_iter(self.delimiter, &self.data[start..end]).map(|d| start + d));
        self.ends.push(end);
        self.data_len = end;
        self.advance(taken, u64::from(feed));
        self.records.push(RecordSpan {
            first_end,
            width: self.ends.len() - first_end,
            start,
            gap: 1,
            line,
            offset,
            fault: None,
        });
    }

    /// Refills the input buffer once it is used up; `false` at the end.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.in_pos == self.in_len && !self.eof {
            self.in_len = read_full(&mut self.input, &mut self.inbuf)?;
            self.in_pos = 0;
            self.eof = self.in_len == 0;
        }
        Ok(self.in_pos < self.in_len)
    }

    /// Reads one record with csv-core.
    fn core_record(&mut self) -> std::io::Result<bool> {
        let record_start = self.data_len;
        let first_end = self.ends.len();
        let mut nends = 0usize;
        let mut offset = self.base + self.consumed;
        // Line feeds consumed by this record, and its last byte.
        let mut feeds = 0u64;
        let mut last = None;
        let mut check = QuoteCheck::new(self);
        loop {
            self.fill()?;
            if self.data.len() - self.data_len < 1024 {
                let grow = self.data.len();
                self.data.resize(self.data.len() + grow, 0);
            }
            let (res, nin, nout, nend) = self.core.read_record(
                &self.inbuf[self.in_pos..self.in_len],
                &mut self.data[self.data_len..],
                &mut self.scratch_ends[nends..],
            );
            if nin > 0 {
                let taken = &self.inbuf[self.in_pos..self.in_pos + nin];
                feeds += memchr::memchr_iter(b'\n', taken).count() as u64;
                last = taken.last().copied();
                check.feed(taken);
            }
            self.in_pos += nin;
            self.consumed += nin as u64;
            self.data_len += nout;
            nends += nend;
            use csv_core::ReadRecordResult::*;
            match res {
                InputEmpty | OutputFull => continue,
                OutputEndsFull => {
                    let len = self.scratch_ends.len();
                    self.scratch_ends.resize(len * 2, 0);
                }
                Record => {
                    if nends == 1 && self.data_len == record_start {
                        // A blank line is no record (as in Spark).
                        nends = 0;
                        check = QuoteCheck::new(self);
                        check.line += feeds;
                        offset = self.base + self.consumed;
                        if last == Some(b'\r') && self.inbuf.get(self.in_pos) == Some(&b'\n') {
                            offset += 1;
                        }
                        continue;
                    }
                    self.ends
                        .extend(self.scratch_ends[..nends].iter().map(|e| record_start + e));
                    // The record ends on the line its terminator closes; a
                    // record ended by a carriage return or by the end of the
                    // input ends on the line after the last feed.
                    let before = self.lines;
                    self.lines += feeds;
                    self.pending_lf = last == Some(b'\r');
                    let line = if last == Some(b'\n') {
                        self.lines
                    } else {
                        self.lines + 1
                    };
                    debug_assert!(line > before);
                    self.records.push(RecordSpan {
                        first_end,
                        width: nends,
                        start: record_start,
                        gap: 0,
                        line,
                        offset,
                        fault: check.finish(self.eof && self.in_pos == self.in_len),
                    });
                    return Ok(true);
                }
                End => return Ok(false),
            }
        }
    }
}

/// Where the line at the read position ends.
enum Line {
    /// It has `len` bytes before its line feed (or before the end of the
    /// input, when `feed` is false).
    Found { len: usize, feed: bool },
    /// It is longer than [`MAX_LINE`]: csv-core streams it.
    TooLong,
    /// There is no more input.
    End,
}

/// The longest line [`Tokenizer::next_line`] buffers to look at whole.
const MAX_LINE: usize = 16 << 20;

fn read_full(input: &mut Box<dyn Read>, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Column names from a header record, made unique (ignoring case, as
/// Delta compares names; Spark appends the position) and non-empty. A name
/// holding a control character is refused.
fn header_names(tok: &Tokenizer) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::with_capacity(tok.width(0));
    let mut seen = std::collections::HashSet::new();
    for i in 0..tok.width(0) {
        let raw = tok.field(0, i).unwrap_or_default();
        let name = std::str::from_utf8(raw)
            .map_err(|_| "the header is not valid UTF-8".to_string())?
            .trim()
            .to_string();
        if name.chars().any(char::is_control) {
            return Err(format!(
                "line {}: the name of column {} ('{}') holds a control character; fix the header, or read with header=false (columns _c0, _c1, ...)",
                tok.line(0),
                i + 1,
                name.escape_debug()
            ));
        }
        let mut name = if name.is_empty() {
            format!("_c{i}")
        } else {
            name
        };
        if !seen.insert(name.to_lowercase()) {
            name = format!("{name}_{i}");
            seen.insert(name.to_lowercase());
        }
        names.push(name);
    }
    Ok(names)
}

fn positional_names(width: usize) -> Vec<String> {
    (0..width).map(|i| format!("_c{i}")).collect()
}

/// The type lattice of inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Int,
    Float,
    Bool,
    Date,
    Timestamp,
    Text,
}

fn classify(s: &str) -> Kind {
    if s.parse::<i64>().is_ok() {
        Kind::Int
    } else if s.parse::<f64>().is_ok() && s.bytes().any(|b| b.is_ascii_digit()) {
        Kind::Float
    } else if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
        Kind::Bool
    } else if s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() {
        Kind::Date
    } else if s.len() >= 16
        && s.as_bytes()[4] == b'-'
        && arrow_cast::parse::string_to_timestamp_nanos(s).is_ok()
    {
        Kind::Timestamp
    } else {
        Kind::Text
    }
}

fn merge(a: Kind, b: Kind) -> Kind {
    match (a, b) {
        (x, y) if x == y => x,
        (Kind::Null, y) => y,
        (x, Kind::Null) => x,
        (Kind::Int, Kind::Float) | (Kind::Float, Kind::Int) => Kind::Float,
        (Kind::Date, Kind::Timestamp) | (Kind::Timestamp, Kind::Date) => Kind::Timestamp,
        _ => Kind::Text,
    }
}

fn kind_type(k: Kind) -> DataType {
    match k {
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Date => DataType::Date32,
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::Null | Kind::Text => DataType::Utf8,
    }
}

/// Records sampled per file, and files sampled, when inferring a schema.
pub const SAMPLE_RECORDS: usize = 10_000;

/// Infers data columns from up to [`SAMPLE_RECORDS`] records of each file.
pub fn infer(files: &[FileRef], opts: &Options) -> Result<Vec<Field>, Error> {
    let mut names: Vec<String> = Vec::new();
    let mut kinds: HashMap<String, Kind> = HashMap::new();
    for file in files {
        let mut tok = Tokenizer::new(open(file, opts.max_decompressed_bytes)?, opts);
        let mut file_names: Option<Vec<String>> = None;
        if opts.header {
            if !tok.read_record().map_err(|e| io_error(file, e))? {
                continue;
            }
            file_names = Some(
                header_names(&tok).map_err(|m| Error::Data(format!("{}: {m}", file.location)))?,
            );
            tok.clear();
        }
        while tok.len() < SAMPLE_RECORDS && tok.read_record().map_err(|e| io_error(file, e))? {}
        let width = (0..tok.len()).map(|r| tok.width(r)).max().unwrap_or(0);
        let file_names = file_names.unwrap_or_else(|| positional_names(width));
        for (i, name) in file_names.iter().enumerate() {
            if !kinds.contains_key(name) {
                names.push(name.clone());
                kinds.insert(name.clone(), Kind::Null);
            }
            if !opts.infer_column_types {
                continue;
            }
            let mut kind = kinds[name];
            for r in 0..tok.len() {
                if let Some(raw) = tok.field(r, i) {
                    if raw == opts.null_value.as_bytes() {
                        continue;
                    }
                    let k = match std::str::from_utf8(raw) {
                        Ok(s) => classify(s),
                        Err(_) => Kind::Text,
                    };
                    kind = merge(kind, k);
                    if kind == Kind::Text {
                        break;
                    }
                }
            }
            kinds.insert(name.clone(), kind);
        }
    }
    Ok(names
        .into_iter()
        .map(|n| {
            let ty = kind_type(kinds[&n]);
            Field::new(n, ty, true)
        })
        .collect())
}

/// Reads one CSV file, batch by batch.
pub struct CsvFile {
    file: FileRef,
    tok: Tokenizer,
    /// For each data column, its field index in the file.
    columns: Vec<Option<usize>>,
    /// File fields that are not data columns, with their names.
    extra: Vec<(usize, String)>,
    width: usize,
    done: bool,
    /// With a byte range: where its records end, where the first began, and
    /// (once done) where the first record not taken begins.
    end: Option<u64>,
    first: u64,
    stop: Option<u64>,
}

impl CsvFile {
    /// Opens `file` and reads its header.
    pub fn open(file: FileRef, shape: &Shape, opts: &Options) -> Result<Self, Error> {
        let start = file.range.map_or(0, |r| r.0);
        let mut tok = if start == 0 {
            Tokenizer::new(open(&file, opts.max_decompressed_bytes)?, opts)
        } else {
            // The header is at the top of the file, outside this range.
            Tokenizer::new(
                Box::new(
                    sluice_connector_sdk::storage::ObjectReader::new(
                        file.location.clone(),
                        file.size,
                    )
                    .with_chunk(64 * 1024),
                ),
                opts,
            )
        };
        let mut names = None;
        let mut done = false;
        if opts.header {
            if tok.read_record().map_err(|e| io_error(&file, e))? {
                names = Some(
                    header_names(&tok)
                        .map_err(|m| Error::Data(format!("{}: {m}", file.location)))?,
                );
            } else {
                done = true;
            }
            tok.clear();
        }
        let first = if start == 0 {
            0
        } else {
            let first = first_record_at(&file, start)?;
            tok = Tokenizer::at(open_at(&file, first), opts, first);
            done = false;
            first
        };
        let names = match names {
            Some(n) => n,
            // Without a header, columns are positional: `_c0`, `_c1`, ...
            None => positional_names(shape.data.len()),
        };
        // Looked up by name once per file (a file may have 50,000 columns).
        let position: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .rev()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let columns = shape
            .data
            .iter()
            .map(|f| position.get(f.name().as_str()).copied())
            .collect();
        let known: std::collections::HashSet<&str> =
            shape.data.iter().map(|f| f.name().as_str()).collect();
        let extra: Vec<(usize, String)> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| !known.contains(n.as_str()))
            .map(|(i, n)| (i, n.clone()))
            .collect();
        if !extra.is_empty() {
            crate::shape::report_new_columns();
        }
        Ok(CsvFile {
            tok,
            columns,
            extra,
            width: names.len(),
            done,
            end: file.range.map(|r| r.1),
            first,
            stop: None,
            file,
        })
    }

    /// The file being read.
    pub fn file(&self) -> &FileRef {
        &self.file
    }

    /// For a byte range: where its first record began and where the first
    /// record after it begins, so the host can check adjacent ranges meet.
    pub fn report(&self) -> Option<(u64, u64)> {
        self.end
            .map(|_| (self.first, self.stop.unwrap_or(self.file.size)))
    }

    /// Where record `r` is, for messages.
    fn place(&self, r: usize) -> String {
        if self.first == 0 {
            format!("line {}", self.tok.line(r))
        } else {
            format!(
                "record at byte {} (read in a byte range that starts mid-file; if quoted fields span lines, read the file whole with -o multiLine=true)",
                self.tok.start(r)
            )
        }
    }

    /// The next batch of this file, or `None` when it is exhausted.
    pub fn next_batch(
        &mut self,
        shape: &Shape,
        opts: &Options,
    ) -> Result<Option<RecordBatch>, Error> {
        loop {
            if self.done {
                return Ok(None);
            }
            self.tok.clear();
            while self.tok.len() < opts.batch_size {
                if !self
                    .tok
                    .read_record()
                    .map_err(|e| io_error(&self.file, e))?
                {
                    self.done = true;
                    break;
                }
                if let Some(end) = self.end {
                    let at = self.tok.start(self.tok.len() - 1);
                    if at >= end {
                        // This record belongs to the next range.
                        self.tok.pop();
                        self.stop = Some(at);
                        self.done = true;
                        break;
                    }
                }
            }
            if self.tok.len() == 0 {
                return Ok(None);
            }
            if let Some(batch) = self.convert(shape, opts)? {
                return Ok(Some(batch));
            }
        }
    }

    fn convert(&self, shape: &Shape, opts: &Options) -> Result<Option<RecordBatch>, Error> {
        let rows = self.tok.len();
        let tok = &self.tok;
        // Why each row is malformed, if it is.
        let mut bad: Vec<Option<String>> = vec![None; rows];
        let mut rescue = shape.rescue.as_ref().map(|_| Rescue::new(rows));

        // Records whose quoting csv-core forgave: their values are not what
        // the file meant, so none of them is loaded.
        let faulted: Vec<usize> = (0..rows).filter(|&r| tok.fault(r).is_some()).collect();
        for &r in &faulted {
            if let Some(fault) = tok.fault(r) {
                let reason = fault.to_string();
                if opts.mode == Mode::FailFast {
                    return Err(Error::Data(format!(
                        "{}: {reason} (mode=FAILFAST; use mode=PERMISSIVE to rescue such records or mode=DROPMALFORMED to drop them)",
                        self.file.location
                    )));
                }
                if let Some(rescue) = rescue.as_mut() {
                    let raw: Vec<String> = (0..tok.width(r))
                        .map(|i| {
                            String::from_utf8_lossy(tok.field(r, i).unwrap_or_default())
                                .into_owned()
                        })
                        .collect();
                    let raw = raw.join(&char::from(opts.delimiter).to_string());
                    rescue.put(r, "_malformed_record", Value::String(raw));
                }
                bad[r] = Some(reason);
            }
        }
        for (r, bad) in bad.iter_mut().enumerate() {
            if bad.is_some() {
                continue;
            }
            let w = tok.width(r);
            if w == self.width || (w < self.width && opts.mode == Mode::Permissive) {
                // Missing trailing fields are nulls in PERMISSIVE, as in Spark.
                continue;
            }
            if w > self.width
                && let Some(rescue) = rescue.as_mut()
            {
                for i in self.width..w {
                    let v = String::from_utf8_lossy(tok.field(r, i).unwrap_or_default());
                    rescue.put(r, &format!("_c{i}"), Value::String(v.into_owned()));
                }
                continue;
            }
            *bad = Some(format!("expected {} fields, found {w}", self.width));
        }
        if let Some(rescue) = rescue.as_mut() {
            for (i, name) in &self.extra {
                for r in 0..rows {
                    if let Some(raw) = tok.field(r, *i)
                        && raw != opts.null_value.as_bytes()
                    {
                        let v = String::from_utf8_lossy(raw);
                        rescue.put(r, name, Value::String(v.into_owned()));
                    }
                }
            }
        }

        let mut columns: Vec<ArrayRef> = Vec::with_capacity(shape.data.len());
        for (field, source) in shape.data.iter().zip(&self.columns) {
            let Some(i) = *source else {
                columns.push(arrow_array::new_null_array(field.data_type(), rows));
                continue;
            };
            let (typed, failed) = match field.data_type() {
                DataType::Int64 => typed(self.parse::<Int64Type>(i, opts, Int64Type::parse_bytes)),
                DataType::Int32 => typed(self.parse::<Int32Type>(i, opts, Int32Type::parse_bytes)),
                DataType::Int16 => typed(self.parse::<Int16Type>(i, opts, Int16Type::parse_bytes)),
                DataType::Int8 => typed(self.parse::<Int8Type>(i, opts, Int8Type::parse_bytes)),
                DataType::Float64 => {
                    typed(self.parse::<Float64Type>(i, opts, Float64Type::parse_bytes))
                }
                DataType::Float32 => {
                    typed(self.parse::<Float32Type>(i, opts, Float32Type::parse_bytes))
                }
                DataType::Boolean => typed(self.parse_bool(i, opts)),
                DataType::Timestamp(TimeUnit::Microsecond, tz)
                    if tz.as_deref().is_none_or(|tz| tz == "UTC") =>
                {
                    let (array, failed) =
                        self.parse::<TimestampMicrosecondType>(i, opts, parse_timestamp_micros);
                    typed((array.with_timezone_opt(tz.clone()), failed))
                }
                DataType::Utf8 => (
                    Arc::new(self.strings(i, opts, &mut bad)) as ArrayRef,
                    vec![],
                ),
                ty => {
                    let strings = self.strings(i, opts, &mut bad);
                    let options = CastOptions {
                        safe: true,
                        ..Default::default()
                    };
                    let typed = cast_with_options(&strings, ty, &options)?;
                    let failed = if typed.null_count() == strings.null_count() {
                        vec![]
                    } else {
                        (0..rows)
                            .filter(|&r| typed.is_null(r) && strings.is_valid(r))
                            .collect()
                    };
                    (typed, failed)
                }
            };
            for r in failed {
                let raw = String::from_utf8_lossy(tok.field(r, i).unwrap_or_default());
                match rescue.as_mut() {
                    Some(rescue) => rescue.put(r, field.name(), Value::String(raw.into_owned())),
                    None => {
                        if bad[r].is_none() {
                            bad[r] = Some(format!(
                                "cannot parse '{raw}' as {} for column '{}'",
                                type_name(field.data_type()),
                                field.name()
                            ));
                        }
                    }
                }
            }
            columns.push(typed);
        }

        if !faulted.is_empty() {
            let mut nulled = vec![false; rows];
            faulted.iter().for_each(|&r| nulled[r] = true);
            let drop = BooleanArray::from(nulled);
            columns = columns
                .iter()
                .map(|c| arrow_select::nullif::nullif(c, &drop))
                .collect::<Result<_, _>>()?;
        }
        let mut malformed = bad.iter().filter(|b| b.is_some()).count();
        if malformed > 0 {
            match opts.mode {
                Mode::Permissive => {
                    // Structurally broken rows are kept, with the reason rescued.
                    if let Some(rescue) = rescue.as_mut() {
                        for (r, reason) in bad.iter_mut().enumerate() {
                            if let Some(reason) = reason.take() {
                                rescue.put(r, "_malformed_reason", Value::String(reason));
                            }
                        }
                    }
                }
                Mode::FailFast => {
                    let r = bad.iter().position(|b| b.is_some()).unwrap_or(0);
                    let reason = bad[r].as_deref().unwrap_or("malformed record");
                    return Err(Error::Data(format!(
                        "{}: {}: {reason} (mode=FAILFAST; use mode=PERMISSIVE to rescue such values or mode=DROPMALFORMED to drop such rows)",
                        self.file.location,
                        self.place(r)
                    )));
                }
                Mode::DropMalformed => {}
            }
            malformed = bad.iter().filter(|b| b.is_some()).count();
        }
        let rescued = rescue.map(|r| r.finish(&self.file));
        let mut batch = shape.assemble(columns, rescued, &self.file, rows)?;
        if malformed > 0 {
            host::count("rows-dropped", malformed as u64);
            let keep = BooleanArray::from(bad.iter().map(|b| b.is_none()).collect::<Vec<_>>());
            batch = arrow_select::filter::filter_record_batch(&batch, &keep)?;
            if batch.num_rows() == 0 {
                return Ok(None);
            }
        }
        Ok(Some(batch))
    }

    /// Column `i` parsed straight from the field bytes with `parse`, which
    /// must accept exactly what a cast from strings accepts, with the same
    /// result; also the rows whose value did not parse (null there). Skips
    /// building the column as strings first.
    fn parse<T: ArrowPrimitiveType>(
        &self,
        i: usize,
        opts: &Options,
        parse: impl Fn(&[u8]) -> Option<T::Native>,
    ) -> (PrimitiveArray<T>, Vec<usize>) {
        let tok = &self.tok;
        let null = opts.null_value.as_bytes();
        let mut failed = Vec::new();
        let mut b = PrimitiveBuilder::<T>::with_capacity(tok.len());
        for r in 0..tok.len() {
            match tok.field(r, i) {
                Some(raw) if raw != null => match parse(raw) {
                    Some(v) => b.append_value(v),
                    None => {
                        b.append_null();
                        failed.push(r);
                    }
                },
                _ => b.append_null(),
            }
        }
        (b.finish(), failed)
    }

    /// Column `i` as booleans, as [`CsvFile::parse`] does for numbers.
    fn parse_bool(&self, i: usize, opts: &Options) -> (BooleanArray, Vec<usize>) {
        let tok = &self.tok;
        let null = opts.null_value.as_bytes();
        let mut failed = Vec::new();
        let mut b = BooleanBuilder::with_capacity(tok.len());
        for r in 0..tok.len() {
            match tok.field(r, i) {
                Some(raw) if raw != null => match parse_bool(raw) {
                    Some(v) => b.append_value(v),
                    None => {
                        b.append_null();
                        failed.push(r);
                    }
                },
                _ => b.append_null(),
            }
        }
        (b.finish(), failed)
    }

    /// Column `i` of the batch as strings; nulls where the value is the null
    /// value or the field is missing.
    fn strings(&self, i: usize, opts: &Options, bad: &mut [Option<String>]) -> StringArray {
        let tok = &self.tok;
        let rows = tok.len();
        let null = opts.null_value.as_bytes();
        // Fast path: gather the column's bytes and validate UTF-8 once over
        // the whole buffer rather than field by field.
        // Sized exactly: a wide file has many columns of few bytes each.
        let total: usize = (0..rows)
            .filter_map(|r| tok.field(r, i))
            .filter(|raw| *raw != null)
            .map(<[u8]>::len)
            .sum();
        let mut values: Vec<u8> = Vec::with_capacity(total + 8);
        let mut offsets: Vec<i32> = Vec::with_capacity(rows + 1);
        let mut valid = BooleanBufferBuilder::new(rows);
        offsets.push(0);
        for r in 0..rows {
            match tok.field(r, i) {
                Some(raw) if raw != null => {
                    append_short(&mut values, raw);
                    valid.append(true);
                }
                _ => valid.append(false),
            }
            offsets.push(values.len() as i32);
        }
        // Offsets are i32: a batch's column stays far below 2 GiB because
        // batches are bounded in rows and fields by the input buffer.
        if values.len() <= i32::MAX as usize {
            let nulls = NullBuffer::new(valid.finish());
            let nulls = (nulls.null_count() > 0).then_some(nulls);
            if let Ok(strings) =
                StringArray::try_new(OffsetBuffer::new(offsets.into()), values.into(), nulls)
            {
                return strings;
            }
        }
        // Some field is not UTF-8: find which, field by field.
        let mut b = StringBuilder::with_capacity(rows, rows * 8);
        for (r, bad) in bad.iter_mut().enumerate().take(rows) {
            match tok.field(r, i) {
                Some(raw) if raw != null => match std::str::from_utf8(raw) {
                    Ok(s) => b.append_value(s),
                    Err(_) => {
                        b.append_null();
                        if bad.is_none() {
                            *bad = Some(format!("field {} is not valid UTF-8", i + 1));
                        }
                    }
                },
                _ => b.append_null(),
            }
        }
        b.finish()
    }
}

/// A parsed column as an [`ArrayRef`], with its failed rows.
fn typed<A: Array + 'static>((array, failed): (A, Vec<usize>)) -> (ArrayRef, Vec<usize>) {
    (Arc::new(array), failed)
}

/// `arrow_cast`'s boolean rule, without its per-value allocation for the
/// common spellings; anything else goes to `arrow_cast` itself.
fn parse_bool(raw: &[u8]) -> Option<bool> {
    const TRUE: [&[u8]; 9] = [
        b"t", b"tr", b"tru", b"true", b"y", b"ye", b"yes", b"on", b"1",
    ];
    const FALSE: [&[u8]; 10] = [
        b"f", b"fa", b"fal", b"fals", b"false", b"n", b"no", b"of", b"off", b"0",
    ];
    if raw.len() <= 5 && raw.iter().all(u8::is_ascii_alphanumeric) {
        if TRUE.iter().any(|t| raw.eq_ignore_ascii_case(t)) {
            return Some(true);
        }
        if FALSE.iter().any(|f| raw.eq_ignore_ascii_case(f)) {
            return Some(false);
        }
        return None;
    }
    arrow_cast::cast::cast_single_string_to_boolean_default(std::str::from_utf8(raw).ok()?)
}

/// A timestamp in UTC as microseconds, as a cast from strings computes it.
/// `YYYY-MM-DD[ T]HH:MM:SS[.fraction][Z]` is parsed here; anything else goes
/// to `arrow_cast`'s parser.
fn parse_timestamp_micros(raw: &[u8]) -> Option<i64> {
    fast_timestamp_micros(raw).or_else(|| {
        let s = std::str::from_utf8(raw).ok()?;
        let naive = arrow_cast::parse::string_to_datetime(&chrono::Utc, s)
            .ok()?
            .naive_utc();
        TimestampMicrosecondType::from_naive_datetime(naive, None)
    })
}

fn fast_timestamp_micros(raw: &[u8]) -> Option<i64> {
    let b = raw.strip_suffix(b"Z").unwrap_or(raw);
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b' ' && b[10] != b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let digit = |i: usize| -> Option<u32> {
        let d = b[i].wrapping_sub(b'0');
        (d <= 9).then_some(u32::from(d))
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    let year = two(0)? * 100 + two(2)?;
    let (month, day) = (two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    let mut nanos = 0;
    if b.len() > 19 {
        let fraction = &b[20..];
        if b[19] != b'.' || fraction.is_empty() || fraction.len() > 9 {
            return None;
        }
        for k in 0..9 {
            nanos = nanos * 10
                + if k < fraction.len() {
                    digit(20 + k)?
                } else {
                    0
                };
        }
    }
    if second > 59 {
        return None;
    }
    let at = chrono::NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_hms_nano_opt(hour, minute, second, nanos)?;
    Some(at.and_utc().timestamp_micros())
}

/// Appends `raw` to `values`. Fields are mostly short, and wasm32 turns a
/// `memcpy` into a call out of the sandbox that costs more than a short
/// loop; longer fields take the bulk copy.
#[inline(always)]
fn append_short(values: &mut Vec<u8>, raw: &[u8]) {
    values.extend_from_slice(raw);
}

/// Parsing a CSV field's bytes into a number with the semantics of
/// `arrow_cast`'s string parsers (so a value parses here if and only if a
/// cast from its string would succeed), without validating UTF-8 first: a
/// field that is not UTF-8 never parses as a number anyway.
trait ParseBytes: ArrowPrimitiveType {
    fn parse_bytes(raw: &[u8]) -> Option<Self::Native>;
}

/// `arrow_cast`'s integer rule: digits with an optional sign, surrounding
/// ASCII white space allowed, overflow is a failure. Up to 18 digits cannot
/// overflow an `i64`, so the common case needs no checked multiply (which
/// wasm32 lowers to a 128-bit software multiply).
macro_rules! parse_int {
    ($($t:ty),*) => {$(
        impl ParseBytes for $t {
            fn parse_bytes(raw: &[u8]) -> Option<Self::Native> {
                let raw = raw.trim_ascii();
                let (negative, digits) = match raw.split_first()? {
                    (b'-', rest) => (true, rest),
                    (b'+', rest) => (false, rest),
                    _ => (false, raw),
                };
                if digits.is_empty() {
                    return None;
                }
                let n: i64 = if digits.len() <= 18 {
                    let mut m: i64 = 0;
                    for &d in digits {
                        let d = d.wrapping_sub(b'0');
                        if d > 9 {
                            return None;
                        }
                        m = m * 10 + i64::from(d);
                    }
                    if negative { -m } else { m }
                } else {
                    let mut m: i64 = 0;
                    for &d in digits {
                        let d = d.wrapping_sub(b'0');
                        if d > 9 {
                            return None;
                        }
                        m = m.checked_mul(10)?;
                        m = if negative {
                            m.checked_sub(i64::from(d))?
                        } else {
                            m.checked_add(i64::from(d))?
                        };
                    }
                    m
                };
                Self::Native::try_from(n).ok()
            }
        }
    )*};
}
parse_int!(Int8Type, Int16Type, Int32Type, Int64Type);

/// `arrow_cast`'s float rule: `lexical_core`, then again without
/// surrounding white space.
macro_rules! parse_float {
    ($($t:ty),*) => {$(
        impl ParseBytes for $t {
            fn parse_bytes(raw: &[u8]) -> Option<Self::Native> {
                lexical_core::parse(raw)
                    .or_else(|_| lexical_core::parse(raw.trim_ascii()))
                    .ok()
            }
        }
    )*};
}
parse_float!(Float32Type, Float64Type);

/// The SQL name of an Arrow type, as users write it in `schemaHints`.
pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::Int64 => "bigint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Float64 => "double".into(),
        DataType::Float32 => "float".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp".into(),
        DataType::Timestamp(_, None) => "timestamp_ntz".into(),
        DataType::Utf8 => "string".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(text: &str, opts: &Options) -> Tokenizer {
        let bytes = text.as_bytes().to_vec();
        Tokenizer::new(Box::new(std::io::Cursor::new(bytes)), opts)
    }

    fn default_opts() -> Options {
        Options::parse(&Default::default()).unwrap()
    }

    #[test]
    fn tokenizer_handles_quotes_multiline_comments_and_bom() {
        let mut o = default_opts();
        o.comment = Some(b'#');
        let mut t = tok(
            "\u{feff}a,b\n# skipped\n1,\"x\ny\"\n2,\"he said \"\"hi\"\"\"\n",
            &o,
        );
        while t.read_record().unwrap() {}
        assert_eq!(t.len(), 3);
        assert_eq!(t.field(0, 0), Some(&b"a"[..]));
        assert_eq!(t.field(1, 1), Some(&b"x\ny"[..]));
        assert_eq!(t.field(2, 1), Some(&b"he said \"hi\""[..]));
        assert_eq!(t.line(0), 1);
        assert_eq!(t.line(2), 5);
    }

    fn faults(text: &str, opts: &Options) -> Vec<Option<QuoteFault>> {
        let mut t = tok(text, opts);
        while t.read_record().unwrap() {}
        (0..t.len()).map(|r| t.fault(r)).collect()
    }

    proptest::proptest! {
        /// Records written by the `csv` crate read back field for field,
        /// by the fast path and by csv-core alike, with no quote fault.
        #[test]
        fn records_a_reference_writer_wrote_read_back_equal(
            records in proptest::collection::vec(
                proptest::collection::vec("[a-z0-9 ,;\"\r\né#]{0,6}", 1..5),
                1..20,
            ),
            buffer in 16usize..64,
        ) {
            // A record of one empty field is a blank line to Spark and to
            // Sluice: leave those out.
            let records: Vec<Vec<String>> = records
                .into_iter()
                .filter(|r| !(r.len() == 1 && r[0].is_empty()))
                .collect();
            let mut w = ::csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
            for r in &records {
                w.write_record(r).unwrap();
            }
            let text = w.into_inner().unwrap();
            for fast in [true, false] {
                let mut t = Tokenizer::new(
                    Box::new(std::io::Cursor::new(text.clone())),
                    &default_opts(),
                )
                .with_limits(buffer, fast);
                while t.read_record().unwrap() {}
                proptest::prop_assert_eq!(t.len(), records.len());
                for (i, r) in records.iter().enumerate() {
                    let got: Vec<&[u8]> = (0..t.width(i)).map(|f| t.field(i, f).unwrap()).collect();
                    let want: Vec<&[u8]> = r.iter().map(|f| f.as_bytes()).collect();
                    proptest::prop_assert_eq!(got, want);
                    proptest::prop_assert_eq!(t.fault(i), None);
                }
            }
        }
    }

    #[test]
    fn broken_quoting_is_noticed_where_csv_core_reads_on() {
        let o = default_opts();
        // Unterminated: the rest of the file would be one value.
        assert_eq!(
            faults("a,b\n1,2\n3,\"x\n4,5\n6,7\n", &o),
            [None, None, Some(QuoteFault::Unterminated { line: 3 })]
        );
        // Text after the closing quote would be merged in.
        assert_eq!(
            faults("a,b\n1,\"x\"y\n2,3\n", &o),
            [None, Some(QuoteFault::TextAfterQuote { line: 2 }), None]
        );
        // What is well quoted passes: doubled quotes, quoted newlines,
        // quotes inside unquoted fields, CRLF.
        assert_eq!(
            faults(
                "a,b\r\n\"x\"\"y\",\"1\n2\"\r\nsay \"hi\",3\r\n\"z\"\r\n",
                &o
            ),
            [None, None, None, None]
        );
        let mut e = default_opts();
        e.escape = Some(b'\\');
        assert_eq!(faults("a\n\"x\\\"y\"\n\"p\\\\\"\n", &e), [None, None, None]);
    }

    #[test]
    fn byte_parsers_agree_with_arrow_cast() {
        use arrow_cast::parse::Parser;
        let cases = [
            "0",
            "7",
            "-7",
            "+7",
            " 12 ",
            "12 ",
            " 12",
            "1 2",
            "",
            "-",
            "+",
            "--1",
            "1e3",
            "1.5",
            "-1.5e-3",
            "NaN",
            "inf",
            "-Infinity",
            "127",
            "128",
            "-128",
            "-129",
            "32768",
            "2147483648",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "0x10",
            "١٢",
            "1_000",
            ".5",
            "5.",
            " 3.25 ",
            "\t4\t",
        ];
        for c in cases {
            let b = c.as_bytes();
            assert_eq!(Int8Type::parse_bytes(b), Int8Type::parse(c), "i8 {c:?}");
            assert_eq!(Int16Type::parse_bytes(b), Int16Type::parse(c), "i16 {c:?}");
            assert_eq!(Int32Type::parse_bytes(b), Int32Type::parse(c), "i32 {c:?}");
            assert_eq!(Int64Type::parse_bytes(b), Int64Type::parse(c), "i64 {c:?}");
            let (x, y) = (Float64Type::parse_bytes(b), Float64Type::parse(c));
            assert!(
                x == y || x.is_some_and(f64::is_nan) && y.is_some_and(f64::is_nan),
                "f64 {c:?}: {x:?} vs {y:?}"
            );
            let (x, y) = (Float32Type::parse_bytes(b), Float32Type::parse(c));
            assert!(
                x == y || x.is_some_and(f32::is_nan) && y.is_some_and(f32::is_nan),
                "f32 {c:?}: {x:?} vs {y:?}"
            );
        }
    }

    #[test]
    fn fast_parsers_agree_with_arrow_cast() {
        use arrow_array::cast::AsArray;
        let values = [
            "2026-01-01 00:00:00",
            "2026-01-01T12:34:56",
            "2026-01-01 12:34:56.5",
            "2026-01-01 12:34:56.123456",
            "2026-01-01 12:34:56.123456789Z",
            "1969-12-31 23:59:59.999",
            "0001-01-01 00:00:00",
            "2024-02-29 01:02:03",
            "2023-02-29 01:02:03",
            "2026-13-01 00:00:00",
            "2026-01-01 24:00:00",
            "2026-01-01 23:59:60",
            "2026-01-01 00:00:00.",
            "2026-01-01 00:00:00.1234567891",
            "2026-01-01",
            "2026-01-01T00:00",
            "2026-01-01 00:00:00+02:00",
            " 2026-01-01 00:00:00",
            "garbage",
            "",
            "true",
            "TRUE",
            "t",
            "Yes",
            "on",
            "1",
            "0",
            "off",
            "OF",
            "nope",
            " true ",
            "\u{a0}true",
            "\u{b}false",
            "truex",
        ];
        let strings = StringArray::from(values.to_vec());
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let want_ts = arrow_cast::cast(&strings, &ts).unwrap();
        let want_bool = arrow_cast::cast(&strings, &DataType::Boolean).unwrap();
        let want_ts = want_ts.as_primitive::<TimestampMicrosecondType>();
        let want_bool = want_bool.as_boolean();
        for (k, v) in values.iter().enumerate() {
            let want = want_ts.is_valid(k).then(|| want_ts.value(k));
            assert_eq!(
                parse_timestamp_micros(v.as_bytes()),
                want,
                "timestamp {v:?}"
            );
            let want = want_bool.is_valid(k).then(|| want_bool.value(k));
            assert_eq!(parse_bool(v.as_bytes()), want, "bool {v:?}");
        }
    }

    /// Every record as (line, start offset, fields).
    fn all_records(t: &mut Tokenizer) -> Vec<(u64, u64, Vec<Vec<u8>>)> {
        while t.read_record().unwrap() {}
        (0..t.len())
            .map(|r| {
                let fields = (0..t.width(r)).map(|i| t.field(r, i).unwrap().to_vec());
                (t.line(r), t.start(r), fields.collect())
            })
            .collect()
    }

    #[test]
    fn plain_lines_agree_with_csv_core() {
        let mut o = default_opts();
        o.comment = Some(b'#');
        let text = "\u{feff}id,name,note\r\n1,a,plain\r\n2,\"b,c\",quoted\n\n# comment, here\n3,,\n\
                    4,\"multi\nline\",x\n5,d,\"he said \"\"hi\"\"\"\n6,e,f\rg\n7,last,row";
        let want = all_records(&mut tok(text, &o).with_limits(1 << 20, false));
        assert_eq!(want.len(), 9, "{want:?}");
        assert_eq!(want[1].0, 2, "CRLF lines count: {want:?}");
        assert_eq!(want[8].0, 11, "{want:?}");
        for buffer in 1..text.len() + 2 {
            let got = all_records(&mut tok(text, &o).with_limits(buffer, true));
            assert_eq!(got, want, "buffer of {buffer} bytes");
        }
    }

    #[test]
    fn inference_lattice() {
        assert_eq!(classify("12"), Kind::Int);
        assert_eq!(classify("1.5"), Kind::Float);
        assert_eq!(classify("TRUE"), Kind::Bool);
        assert_eq!(classify("2024-02-29"), Kind::Date);
        assert_eq!(classify("2024-02-29T10:00:00Z"), Kind::Timestamp);
        assert_eq!(classify("2024-02-29 10:00:00"), Kind::Timestamp);
        assert_eq!(classify("NaN-ish"), Kind::Text);
        assert_eq!(merge(Kind::Int, Kind::Float), Kind::Float);
        assert_eq!(merge(Kind::Int, Kind::Bool), Kind::Text);
        assert_eq!(merge(Kind::Null, Kind::Date), Kind::Date);
    }
}
