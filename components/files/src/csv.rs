//! CSV: tokenized by `csv-core`, converted column-wise to Arrow.
//!
//! Records of a batch are tokenized into one buffer; each column is then built
//! as strings and cast in one vectorized step. A value that does not cast
//! shows up as a null where the input was not null, which is how malformed
//! values are found without a per-value error path.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, builder::BinaryBuilder,
    builder::StringBuilder,
};
use arrow_cast::cast::{CastOptions, cast_with_options};
use arrow_schema::{DataType, Field, TimeUnit};
use serde_json::Value;
use sluice_connector_sdk::{Error, host};

use crate::input::{first_record_at, io_error, open, open_at};
use crate::options::{FileRef, Mode, Options};
use crate::shape::{Rescue, Shape};

/// Streams records out of a reader with `csv-core`, a batch at a time.
pub struct Tokenizer {
    input: Box<dyn Read>,
    core: csv_core::Reader,
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
    /// Per record: (index of its first end in `ends`, field count, line,
    /// byte offset of its first byte in the object).
    records: Vec<(usize, usize, u64, u64)>,
    /// Object offset of the first input byte, and input bytes consumed.
    base: u64,
    consumed: u64,
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
        }
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
    pub fn field(&self, r: usize, i: usize) -> Option<&[u8]> {
        let (first, n, _, _) = self.records[r];
        if i >= n {
            return None;
        }
        let start = if i == 0 {
            if first == 0 { 0 } else { self.ends[first - 1] }
        } else {
            self.ends[first + i - 1]
        };
        Some(&self.data[start..self.ends[first + i]])
    }

    /// Number of fields of record `r`.
    pub fn width(&self, r: usize) -> usize {
        self.records[r].1
    }

    /// Object byte offset where record `r` starts.
    pub fn start(&self, r: usize) -> u64 {
        self.records[r].3
    }

    /// Drops the last record read.
    pub fn pop(&mut self) {
        if let Some((first_end, _, _, _)) = self.records.pop() {
            self.data_len = if first_end == 0 {
                0
            } else {
                self.ends[first_end - 1]
            };
            self.ends.truncate(first_end);
        }
    }

    /// Line on which record `r` ends (1-based).
    pub fn line(&self, r: usize) -> u64 {
        self.records[r].2
    }

    /// Reads one more record into the batch; `false` at the end of input.
    pub fn read_record(&mut self) -> std::io::Result<bool> {
        let record_start = self.data_len;
        let first_end = self.ends.len();
        let mut nends = 0usize;
        let mut offset = self.base + self.consumed;
        loop {
            if self.in_pos == self.in_len && !self.eof {
                self.in_len = read_full(&mut self.input, &mut self.inbuf)?;
                self.in_pos = 0;
                self.eof = self.in_len == 0;
            }
            if self.data.len() - self.data_len < 1024 {
                let grow = self.data.len();
                self.data.resize(self.data.len() + grow, 0);
            }
            let (res, nin, nout, nend) = self.core.read_record(
                &self.inbuf[self.in_pos..self.in_len],
                &mut self.data[self.data_len..],
                &mut self.scratch_ends[nends..],
            );
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
                        offset = self.base + self.consumed;
                        continue;
                    }
                    self.ends
                        .extend(self.scratch_ends[..nends].iter().map(|e| record_start + e));
                    let line = self.core.line().saturating_sub(1).max(1);
                    self.records.push((first_end, nends, line, offset));
                    return Ok(true);
                }
                End => return Ok(false),
            }
        }
    }
}

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

/// Column names from a header record, made unique and non-empty.
fn header_names(tok: &Tokenizer) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for i in 0..tok.width(0) {
        let raw = tok.field(0, i).unwrap_or_default();
        let name = std::str::from_utf8(raw)
            .map_err(|_| "the header is not valid UTF-8".to_string())?
            .trim()
            .to_string();
        let mut name = if name.is_empty() {
            format!("_c{i}")
        } else {
            name
        };
        if names.contains(&name) {
            name = format!("{name}_{i}");
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
        let mut tok = Tokenizer::new(open(file)?, opts);
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
            Tokenizer::new(open(&file)?, opts)
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
        let columns = shape
            .data
            .iter()
            .map(|f| names.iter().position(|n| n == f.name()))
            .collect();
        let extra = names
            .iter()
            .enumerate()
            .filter(|(_, n)| !shape.data.iter().any(|f| f.name() == *n))
            .map(|(i, n)| (i, n.clone()))
            .collect();
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

        for (r, bad) in bad.iter_mut().enumerate() {
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
            let strings = self.strings(i, opts, &mut bad);
            let typed = if field.data_type() == &DataType::Utf8 {
                Arc::new(strings.clone()) as ArrayRef
            } else {
                let options = CastOptions {
                    safe: true,
                    ..Default::default()
                };
                cast_with_options(&strings, field.data_type(), &options)?
            };
            if typed.null_count() != strings.null_count() {
                for (r, bad) in bad.iter_mut().enumerate() {
                    if typed.is_null(r) && strings.is_valid(r) {
                        let raw = strings.value(r);
                        match rescue.as_mut() {
                            Some(rescue) => {
                                rescue.put(r, field.name(), Value::String(raw.to_string()))
                            }
                            None => {
                                if bad.is_none() {
                                    *bad = Some(format!(
                                        "cannot parse '{raw}' as {} for column '{}'",
                                        type_name(field.data_type()),
                                        field.name()
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            columns.push(typed);
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

    /// Column `i` of the batch as strings; nulls where the value is the null
    /// value or the field is missing.
    fn strings(&self, i: usize, opts: &Options, bad: &mut [Option<String>]) -> StringArray {
        let tok = &self.tok;
        let rows = tok.len();
        let null = opts.null_value.as_bytes();
        // Fast path: gather the column's bytes and validate UTF-8 once over
        // the whole buffer rather than field by field.
        let mut bin = BinaryBuilder::with_capacity(rows, rows * 8);
        for r in 0..rows {
            match tok.field(r, i) {
                Some(raw) if raw != null => bin.append_value(raw),
                _ => bin.append_null(),
            }
        }
        if let Ok(strings) = StringArray::try_from_binary(bin.finish()) {
            return strings;
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
