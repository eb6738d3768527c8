//! CSV: tokenized by `csv-core`, converted column-wise to Arrow.
//!
//! Records of a batch are tokenized into one buffer; each column is then built
//! as strings and cast in one vectorized step. A value that does not cast
//! shows up as a null where the input was not null, which is how malformed
//! values are found without a per-value error path.

use std::collections::HashMap;

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

use sluice_formats::csv::Tokenizer;
use sluice_formats::kinds::{Kind, classify, kind_type, merge};

use crate::input::{first_record_at, io_error, open, open_at};
use crate::options::{FileRef, Mode, Options};
use crate::shape::{Rescue, Shape};

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

/// Records sampled per file, and files sampled, when inferring a schema.
pub const SAMPLE_RECORDS: usize = 10_000;

/// Infers data columns from up to [`SAMPLE_RECORDS`] records of each file.
pub fn infer(files: &[FileRef], opts: &Options) -> Result<Vec<Field>, Error> {
    let mut names: Vec<String> = Vec::new();
    let mut kinds: HashMap<String, Kind> = HashMap::new();
    for file in files {
        let mut tok = Tokenizer::new(open(file, opts.max_decompressed_bytes)?, &opts.syntax());
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
            Tokenizer::new(open(&file, opts.max_decompressed_bytes)?, &opts.syntax())
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
                &opts.syntax(),
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
            tok = Tokenizer::at(open_at(&file, first), &opts.syntax(), first);
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
            if self.tok.is_empty() {
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
        let rescued = rescue.map(|r| crate::shape::rescued(r, &self.file));
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
}
