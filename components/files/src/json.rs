//! JSON: newline-delimited records, one top-level array per file, or (with
//! `multiLine=true`) one or more pretty-printed objects per file.
//!
//! Three paths. In FAILFAST mode without a rescued column, flat records (every
//! column a string, `bigint`, `double` or `boolean`) are decoded line by line
//! in one pass that also checks them strictly ([`FlatJson`]); a line it is not
//! sure of goes, with the rest of its batch, to the general fast path, where
//! whole chunks of lines go straight to arrow-json's decoder and every byte it
//! takes is checked strictly on the way ([`sluice_formats::json`]: the decoder
//! itself is lenient); only when a chunk fails is it re-read line by line to
//! name the line and reason. Otherwise every line is parsed on its own (by
//! serde_json), so that a bad line or a value of the wrong type can be rescued
//! or dropped while the rest of the batch loads. A chunk holding a `\u`
//! surrogate escape takes that careful path too: arrow-json 59 decodes
//! surrogate pairs above U+1FFFF wrongly.

use std::io::{BufRead, Read};
use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::{Field, Fields, Schema, SchemaRef};
use serde_json::Value;
use sluice_connector_sdk::{Error, host};

use crate::input::{Refill, first_record_at, io_error, open, open_at};
use crate::options::{FileRef, Mode, Options};
use crate::shape::Shape;
use sluice_formats::flat_json::FlatJson;
use sluice_formats::json::{Checker, blank, surrogate_escape};
use sluice_formats::objects::{
    FAILFAST_ADVICE, Record, decode_objects, infer_fields, unnamable_key,
};

/// Records sampled per file when inferring a schema.
pub const SAMPLE_RECORDS: usize = 10_000;

/// A buffered reader of a file's lines.
type Lines = Refill;

/// The buffer a file's lines are read through grows to this size.
const BUFFER: usize = 1 << 20;

/// A record longer than this is left to the general path, which streams it.
const LONGEST_FLAT_RECORD: usize = 16 << 20;

/// Opens `file`, skips a BOM and leading white space, and says whether it
/// holds its records as one value (a top-level array, or with `multiLine`
/// pretty-printed objects) and how many bytes were skipped.
fn reader_of(file: &FileRef, opts: &Options) -> Result<(Lines, bool, u64), Error> {
    let mut reader = Refill::new(open(file, opts.max_decompressed_bytes)?, BUFFER);
    let mut skipped = 0u64;
    // Skip a UTF-8 BOM and leading white space, then look at the first byte.
    let is_array = loop {
        let buf = reader.fill_buf().map_err(|e| io_error(file, e))?;
        if buf.is_empty() {
            break false;
        }
        if buf.starts_with(b"\xEF\xBB\xBF") {
            reader.consume(3);
            skipped += 3;
            continue;
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let first = buf[i];
                break first == b'[' || (first == b'{' && opts.multi_line);
            }
            None => {
                let n = buf.len();
                reader.consume(n);
                skipped += n as u64;
            }
        }
    };
    Ok((reader, is_array, skipped))
}

/// The records of a file that holds them as whole values: the elements of
/// a top-level array, or each of the (pretty-printed) objects it holds.
fn parse_values(file: &FileRef, reader: &mut Lines) -> Result<Vec<Value>, Error> {
    let mut text = Vec::new();
    reader
        .read_to_end(&mut text)
        .map_err(|e| io_error(file, e))?;
    let bad = |e: serde_json::Error, what: &str| {
        Error::Data(format!(
            "{}: line {}: not a valid JSON {what}: {e}",
            file.location,
            e.line()
        ))
    };
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    if start.is_some_and(|i| text[i] == b'[') {
        return serde_json::from_slice::<Vec<Value>>(&text).map_err(|e| bad(e, "array"));
    }
    serde_json::Deserializer::from_slice(&text)
        .into_iter::<Value>()
        .map(|v| match v {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(Error::Data(format!(
                "{}: with multiLine=true every value of the file must be an object",
                file.location
            ))),
            Err(e) => Err(bad(e, "object")),
        })
        .collect()
}

/// Infers data columns from up to [`SAMPLE_RECORDS`] records of each file.
pub fn infer(files: &[FileRef], opts: &Options) -> Result<Vec<Field>, Error> {
    let mut values: Vec<Value> = Vec::new();
    for file in files {
        let (mut reader, whole, _) = reader_of(file, opts)?;
        if whole {
            values.extend(
                parse_values(file, &mut reader)?
                    .into_iter()
                    .take(SAMPLE_RECORDS),
            );
            continue;
        }
        let mut line = Vec::new();
        let (mut n, mut lineno) = (0, 0u64);
        while n < SAMPLE_RECORDS {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .map_err(|e| io_error(file, e))?
                == 0
            {
                break;
            }
            lineno += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // The strict check first: it says what serde_json's errors do
            // not (a record spread over lines, nesting too deep).
            let mut check = Checker::default();
            if let Err(bad) = check.feed(&line).and_then(|()| check.finish()) {
                if opts.mode == Mode::FailFast {
                    return Err(Error::Data(format!(
                        "{}: line {lineno}: invalid JSON: {}",
                        file.location, bad.reason
                    )));
                }
                // Judged by the read, under its mode; never a sample.
                continue;
            }
            match serde_json::from_slice::<Value>(&line) {
                Ok(v @ Value::Object(_)) => {
                    if let Some(key) = unnamable_key(&v) {
                        if opts.mode != Mode::FailFast {
                            // Its keys make no columns; the read rescues them.
                            continue;
                        }
                        return Err(Error::Data(format!(
                            "{}: line {lineno}: the key '{}' is empty or holds a control character, which no Delta column name may (with mode=PERMISSIVE such values are rescued)",
                            file.location,
                            key.escape_debug()
                        )));
                    }
                    values.push(v)
                }
                // Malformed lines are judged by the read, under its mode.
                _ if opts.mode != Mode::FailFast => {}
                Ok(_) => {
                    return Err(Error::Data(format!(
                        "{}: line {lineno}: a JSON record must be an object",
                        file.location
                    )));
                }
                Err(e) => {
                    return Err(Error::Data(format!(
                        "{}: line {lineno}: invalid JSON: {e}",
                        file.location
                    )));
                }
            }
            n += 1;
        }
    }
    Ok(infer_fields(&values, opts.infer_column_types)?)
}

/// Reads one JSON file, batch by batch.
pub struct JsonFile {
    file: FileRef,
    reader: Lines,
    array: Option<std::vec::IntoIter<Value>>,
    schema: SchemaRef,
    line: u64,
    done: bool,
    /// Object offset of the next unread byte.
    pos: u64,
    /// With a byte range: where its lines end, where the first began, and
    /// (once done) where the first line not taken begins.
    end: Option<u64>,
    first: u64,
    stop: Option<u64>,
    /// Columns the schema lacks were reported for this file.
    reported_new_columns: bool,
    /// The strict check of every byte the fast path decodes.
    check: Checker,
    /// The next batch takes the careful path (its bytes hold a surrogate
    /// escape).
    careful_next: bool,
    /// Flat records' decoder, where the schema and options allow it.
    flat: Option<FlatJson>,
    /// The flat decoder declined the next line: the next batch takes the
    /// general fast path.
    declined: bool,
    /// The general fast path stopped inside a line, after a record.
    mid_line: bool,
}

impl JsonFile {
    /// Opens `file`, detecting a top-level array.
    pub fn open(file: FileRef, shape: &Shape, opts: &Options) -> Result<Self, Error> {
        let start = file.range.map_or(0, |r| r.0);
        let (mut reader, is_array, first) = if start == 0 {
            reader_of(&file, opts)?
        } else {
            let first = first_record_at(&file, start)?;
            (Refill::new(open_at(&file, first), BUFFER), false, first)
        };
        let array = if is_array {
            Some(parse_values(&file, &mut reader)?.into_iter())
        } else {
            None
        };
        let schema = Arc::new(Schema::new(Fields::from(shape.data.clone())));
        let flat = (array.is_none() && shape.rescue.is_none() && opts.mode == Mode::FailFast)
            .then(|| FlatJson::new(schema.fields(), !opts.infer_column_types))
            .flatten();
        Ok(JsonFile {
            end: file.range.map(|r| r.1),
            file,
            reader,
            array,
            schema,
            line: 0,
            done: false,
            pos: first,
            first,
            stop: None,
            reported_new_columns: false,
            check: Checker::default(),
            careful_next: false,
            flat,
            declined: false,
            mid_line: false,
        })
    }

    /// The file being read.
    pub fn file(&self) -> &FileRef {
        &self.file
    }

    /// For a byte range: where its first line began and where the first
    /// line after it begins.
    pub fn report(&self) -> Option<(u64, u64)> {
        self.end
            .map(|_| (self.first, self.stop.unwrap_or(self.file.size)))
    }

    /// Appends the next line of this file (or range) to `buf`; 0 at the end.
    fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<usize, Error> {
        if let Some(end) = self.end
            && self.pos >= end
        {
            self.stop = Some(self.pos);
            self.done = true;
            return Ok(0);
        }
        let n = self
            .reader
            .read_until(b'\n', buf)
            .map_err(|e| io_error(&self.file, e))?;
        self.pos += n as u64;
        if n == 0 {
            self.done = true;
        }
        Ok(n)
    }

    /// Where line `n` (counted from the start of the file or range) is.
    fn place(&self, n: u64) -> String {
        if self.first == 0 {
            format!("line {n}")
        } else {
            format!("line {n} after byte {}", self.first)
        }
    }

    fn decoder(&self, opts: &Options) -> Result<Decoder, Error> {
        Ok(ReaderBuilder::new(self.schema.clone())
            .with_batch_size(opts.batch_size.max(1))
            .with_coerce_primitive(!opts.infer_column_types)
            .build_decoder()?)
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
            let careful = self.array.is_some()
                || shape.rescue.is_some()
                || opts.mode != Mode::FailFast
                || std::mem::take(&mut self.careful_next);
            let batch = if careful {
                self.careful_batch(shape, opts)?
            } else if self.flat.is_some() && !std::mem::take(&mut self.declined) {
                self.flat_batch(shape, opts)?
            } else {
                self.fast_batch(shape, opts)?
            };
            if batch.is_some() || self.done {
                return Ok(batch);
            }
        }
    }

    /// Decodes a batch of flat records line by line from the reader's
    /// buffer, each line in one pass ([`FlatJson`]). Where the decoder
    /// declines a line, the batch ends before it and the next one is read
    /// from it by the general fast path, which decodes it or names the
    /// fault.
    fn flat_batch(&mut self, shape: &Shape, opts: &Options) -> Result<Option<RecordBatch>, Error> {
        let mut flat = self.flat.take().expect("the flat decoder");
        let read = self.flat_lines(&mut flat, opts.batch_size.max(1));
        let columns = flat.finish();
        self.flat = Some(flat);
        let rows = read?;
        if rows == 0 {
            return Ok(None);
        }
        Ok(Some(shape.assemble(columns?, None, &self.file, rows)?))
    }

    /// Feeds whole lines to `flat` until it holds `batch` records, the
    /// file (or range) ends, or it declines a line; the records it holds.
    fn flat_lines(&mut self, flat: &mut FlatJson, batch: usize) -> Result<usize, Error> {
        if self.mid_line {
            // The general path stopped after a record, inside its line:
            // the rest of the line must be blank.
            let buf = self
                .reader
                .fill_buf()
                .map_err(|e| io_error(&self.file, e))?;
            match memchr::memchr(b'\n', buf) {
                Some(n) if buf[..n].iter().all(|&b| blank(b)) => {
                    self.reader.consume(n + 1);
                    self.pos += n as u64 + 1;
                    self.line += 1;
                    self.mid_line = false;
                }
                _ => {
                    self.declined = true;
                    return Ok(0);
                }
            }
        }
        // The strict check of the general path starts again at a line.
        self.check = Checker::default();
        loop {
            let buf = self
                .reader
                .fill_buf()
                .map_err(|e| io_error(&self.file, e))?;
            let mut taken = 0;
            while flat.rows() < batch {
                // In a byte range, the last line taken is the one holding
                // the range's last byte.
                if let Some(end) = self.end
                    && self.pos + taken as u64 >= end
                {
                    self.stop = Some(self.pos + taken as u64);
                    self.done = true;
                    break;
                }
                let Some(n) = memchr::memchr(b'\n', &buf[taken..]) else {
                    break;
                };
                if flat.push_line(&buf[taken..taken + n]).is_err() {
                    self.declined = true;
                    break;
                }
                taken += n + 1;
                self.line += 1;
            }
            let stop = self.done || self.declined || flat.rows() == batch;
            let rest = buf.len() - taken;
            self.reader.consume(taken);
            self.pos += taken as u64;
            if stop {
                return Ok(flat.rows());
            }
            // What is left is part of a line: read on for the rest of it.
            if rest >= LONGEST_FLAT_RECORD {
                self.declined = true;
                return Ok(flat.rows());
            }
            let more = self
                .reader
                .fill_more()
                .map_err(|e| io_error(&self.file, e))?;
            if !more {
                // The end of the input: what is left is the last line, with
                // no newline after it.
                let last = self.reader.buffer();
                let past_range = self.end.is_some_and(|end| self.pos >= end);
                if past_range {
                    self.stop = Some(self.pos);
                } else if !last.is_empty() {
                    if flat.push_line(last).is_err() {
                        self.declined = true;
                        return Ok(flat.rows());
                    }
                    let n = last.len();
                    self.reader.consume(n);
                    self.pos += n as u64;
                    self.line += 1;
                }
                self.done = true;
                return Ok(flat.rows());
            }
        }
    }

    /// Decodes a batch straight from the reader's buffer: whole chunks go to
    /// arrow-json's streaming decoder, which stops once the batch is full,
    /// and nothing is copied line by line. A chunk that fails is read again
    /// to name the line and the reason.
    fn fast_batch(&mut self, shape: &Shape, opts: &Options) -> Result<Option<RecordBatch>, Error> {
        let (first_line, start) = (self.line + 1, self.pos);
        let mut decoder = self.decoder(opts)?;
        // Whether the bytes consumed so far end with a whole line.
        let mut whole = !self.mid_line;
        loop {
            if let Some(end) = self.end
                && self.pos >= end
                && whole
            {
                self.stop = Some(self.pos);
                self.done = true;
                break;
            }
            let buf = self
                .reader
                .fill_buf()
                .map_err(|e| io_error(&self.file, e))?;
            if buf.is_empty() {
                if let Err(bad) = self.check.finish() {
                    let failed = self.pos - start;
                    return Err(self.locate_error_at(start, failed, first_line, opts, bad.reason));
                }
                self.done = true;
                break;
            }
            // In a byte range, the last line taken is the one holding the
            // range's last byte.
            let mut usable = buf.len();
            if let Some(end) = self.end {
                let last = end.saturating_sub(self.pos + 1) as usize;
                if let Some(i) = buf.get(last..).and_then(|b| memchr::memchr(b'\n', b)) {
                    usable = last + i + 1;
                }
            }
            if surrogate_escape(&buf[..usable]) {
                // arrow-json would decode it wrongly: this batch ends here,
                // and the next one is parsed record by record.
                self.careful_next = true;
                break;
            }
            let taken = match decoder.decode(&buf[..usable]) {
                Ok(n) => n,
                Err(_) => {
                    let failed = self.pos - start + usable as u64;
                    return Err(self.locate_error_at(
                        start,
                        failed,
                        first_line,
                        opts,
                        "malformed JSON",
                    ));
                }
            };
            if let Err(bad) = self.check.feed(&buf[..taken]) {
                let failed = self.pos - start + taken as u64;
                return Err(self.locate_error_at(start, failed, first_line, opts, bad.reason));
            }
            self.line += memchr::memchr_iter(b'\n', &buf[..taken]).count() as u64;
            if taken > 0 {
                whole = buf[taken - 1] == b'\n';
            }
            self.reader.consume(taken);
            self.pos += taken as u64;
            if taken < usable {
                // The batch is full.
                break;
            }
        }
        self.mid_line = !whole;
        let data = match decoder.flush() {
            Ok(Some(batch)) => batch,
            Ok(None) => return Ok(None),
            Err(_) => {
                let failed = self.pos - start;
                return Err(self.locate_error_at(
                    start,
                    failed,
                    first_line,
                    opts,
                    "malformed JSON",
                ));
            }
        };
        let rows = data.num_rows();
        Ok(Some(shape.assemble(
            data.columns().to_vec(),
            None,
            &self.file,
            rows,
        )?))
    }

    /// Reads `len` bytes from offset `at` of the file (or of its
    /// decompressed stream) again, to find the line that failed in them
    /// and why (`reason` when serde_json finds no fault: a rule of Sluice's
    /// own, such as the nesting limit).
    fn locate_error_at(
        &self,
        at: u64,
        len: u64,
        first_line: u64,
        opts: &Options,
        reason: &str,
    ) -> Error {
        let reread = || -> std::io::Result<Vec<u8>> {
            let input = if self.end.is_some() {
                open_at(&self.file, at)
            } else {
                let mut input = open(&self.file, opts.max_decompressed_bytes)
                    .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
                std::io::copy(&mut (&mut input).take(at), &mut std::io::sink())?;
                input
            };
            let mut buf = Vec::new();
            input.take(len).read_to_end(&mut buf)?;
            Ok(buf)
        };
        match reread() {
            Ok(buf) => self.locate_error(&buf, first_line, opts, reason),
            Err(e) => io_error(&self.file, e),
        }
    }

    /// Finds the first line of `buf` that fails, and says why.
    fn locate_error(&self, buf: &[u8], first_line: u64, opts: &Options, fallback: &str) -> Error {
        for (i, line) in buf.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let lineno = first_line + i as u64;
            let mut check = Checker::default();
            let strict = check.feed(line).and_then(|()| check.finish());
            let reason = match serde_json::from_slice::<Value>(line) {
                Err(e) => format!("invalid JSON: {e}"),
                Ok(_) if strict.is_err() => {
                    format!("invalid JSON: {}", strict.err().map_or("", |b| b.reason))
                }
                Ok(Value::Object(_)) => {
                    let failed = self
                        .decoder(opts)
                        .and_then(|mut d| Ok(d.decode(line).and_then(|_| d.flush())?));
                    match failed {
                        Ok(_) => continue,
                        Err(e) => e.to_string(),
                    }
                }
                Ok(_) => "a JSON record must be an object".to_string(),
            };
            return Error::Data(format!(
                "{}: {}: {reason} ({FAILFAST_ADVICE})",
                self.file.location,
                self.place(lineno)
            ));
        }
        Error::Data(format!(
            "{}: {fallback} near {}",
            self.file.location,
            self.place(first_line)
        ))
    }

    /// Reads up to a batch of records one by one, with per-record handling.
    fn careful_batch(
        &mut self,
        shape: &Shape,
        opts: &Options,
    ) -> Result<Option<RecordBatch>, Error> {
        let mut records: Vec<Record> = Vec::new();
        let mut where_: Vec<String> = Vec::new();
        let mut line = Vec::new();
        while records.len() < opts.batch_size {
            let record = if let Some(array) = self.array.as_mut() {
                match array.next() {
                    Some(v) => {
                        self.line += 1;
                        where_.push(format!("element {}", self.line));
                        Record {
                            text: v.to_string(),
                            value: Ok(v),
                        }
                    }
                    None => {
                        self.done = true;
                        break;
                    }
                }
            } else {
                line.clear();
                if self.read_line(&mut line)? == 0 {
                    break;
                }
                self.line += 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                where_.push(self.place(self.line));
                Record {
                    value: serde_json::from_slice::<Value>(&line)
                        .map_err(|e| format!("invalid JSON: {e}")),
                    text: String::from_utf8_lossy(&line).trim_end().to_string(),
                }
            };
            records.push(record);
        }
        if records.is_empty() {
            return Ok(None);
        }
        let decoded = decode_objects(
            &self.schema,
            !opts.infer_column_types,
            shape.rescue.is_some(),
            opts.mode,
            records,
        )?;
        if decoded.with_new_columns > 0 && !self.reported_new_columns {
            self.reported_new_columns = true;
            crate::shape::report_new_columns();
        }
        let (data, bad) = (decoded.data, decoded.bad);
        let n = data.num_rows();
        let malformed = bad.iter().filter(|b| b.is_some()).count();
        if malformed > 0 && opts.mode == Mode::FailFast {
            let r = bad.iter().position(|b| b.is_some()).unwrap_or(0);
            return Err(Error::Data(format!(
                "{}: {}: {} ({FAILFAST_ADVICE})",
                self.file.location,
                where_[r],
                bad[r].as_deref().unwrap_or("malformed record")
            )));
        }
        let rescued = decoded.rescue.map(|r| crate::shape::rescued(r, &self.file));
        let mut batch = shape.assemble(data.columns().to_vec(), rescued, &self.file, n)?;
        if malformed > 0 && opts.mode == Mode::DropMalformed {
            host::count("rows-dropped", malformed as u64);
            let keep = BooleanArray::from(bad.iter().map(|b| b.is_none()).collect::<Vec<_>>());
            batch = arrow_select::filter::filter_record_batch(&batch, &keep)?;
        }
        Ok((batch.num_rows() > 0).then_some(batch))
    }
}
