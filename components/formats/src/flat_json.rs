//! Flat newline-delimited JSON records straight into Arrow columns, in one
//! pass over each line that also checks it as strictly as
//! [`crate::json::Checker`] does.
//!
//! Where every column is a nullable string, 64-bit integer, double or
//! boolean, a line is parsed once and its values appended to the columns:
//! the values arrow-json's decoder gives for the same schema, without its
//! tape, its second walk and the separate strict check. Whatever this
//! decoder is not sure of it declines, leaving the columns as they were
//! before the line: a nested value, a key with an escape or seen twice in
//! one record, a string in a number column, an integer that does not fit,
//! a lone surrogate escape, text that breaks the grammar. The caller reads
//! from that line with the general path (arrow-json behind the strict
//! check), which decodes the line or names its fault.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Fields};

use crate::json::{HIGH, ONES, blank, ends_plain_run, specials};

/// A line this decoder leaves to the general path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declined;

type Step<T = usize> = Result<T, Declined>;

enum Values {
    Utf8 { offsets: Vec<i32>, bytes: Vec<u8> },
    Int64(Vec<i64>),
    Float64(Vec<f64>),
    Boolean(BooleanBufferBuilder),
}

struct Column {
    /// The name as a JSON key, in its quotes, and the colon after it.
    key: Box<[u8]>,
    values: Values,
    /// One entry per row decoded, and one for the current record once it
    /// has given this column a value.
    nulls: NullBufferBuilder,
}

impl Column {
    fn append_null(&mut self) {
        self.nulls.append_null();
        match &mut self.values {
            Values::Utf8 { offsets, bytes } => offsets.push(bytes.len() as i32),
            Values::Int64(v) => v.push(0),
            Values::Float64(v) => v.push(0.0),
            Values::Boolean(v) => v.append(false),
        }
    }

    /// Drops what the rows from `rows` on appended.
    fn truncate(&mut self, rows: usize) {
        self.nulls.truncate(rows);
        match &mut self.values {
            Values::Utf8 { offsets, bytes } => {
                offsets.truncate(rows + 1);
                bytes.truncate(offsets[rows] as usize);
            }
            Values::Int64(v) => v.truncate(rows),
            Values::Float64(v) => v.truncate(rows),
            Values::Boolean(v) => v.truncate(rows),
        }
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let nulls = self.nulls.finish();
        Ok(match &mut self.values {
            Values::Utf8 { offsets, bytes } => {
                // The next batch likely needs as much room as this one.
                let mut next = Vec::with_capacity(offsets.len());
                next.push(0);
                let offsets = std::mem::replace(offsets, next);
                let bytes = std::mem::replace(bytes, Vec::with_capacity(bytes.len()));
                // Validates the UTF-8 again (one pass over the bytes): the
                // safe constructor, kept although every string was checked.
                Arc::new(StringArray::try_new(
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    Buffer::from_vec(bytes),
                    nulls,
                )?)
            }
            Values::Int64(v) => Arc::new(Int64Array::new(again(v).into(), nulls)),
            Values::Float64(v) => Arc::new(Float64Array::new(again(v).into(), nulls)),
            Values::Boolean(v) => Arc::new(BooleanArray::new(v.finish(), nulls)),
        })
    }
}

/// What `v` holds, leaving it empty with room for as much.
fn again<T>(v: &mut Vec<T>) -> Vec<T> {
    std::mem::replace(v, Vec::with_capacity(v.len()))
}

/// A number's token, read by the strict grammar.
struct Number {
    /// Past its last byte.
    end: usize,
    negative: bool,
    /// Its digits, integer and fraction, as one integer (when `digits` ≤ 19).
    mantissa: u64,
    digits: u32,
    /// Whether it has a fraction or an exponent.
    integral: bool,
    /// The power of ten to scale `mantissa` by.
    scale: i64,
}

/// Decodes flat NDJSON records into columns; see the module's doc.
pub struct FlatJson {
    columns: Vec<Column>,
    by_name: HashMap<Box<[u8]>, usize>,
    /// Numbers and booleans in string columns as their text, as arrow-json's
    /// `coerce_primitive` does; otherwise they are declined.
    coerce: bool,
    rows: usize,
    /// The column the n-th key of the last record named (`None`: no column),
    /// the guess for the next record's n-th key.
    order: Vec<Option<usize>>,
}

impl FlatJson {
    /// A decoder for `fields`, or `None` where a field is not a nullable
    /// string, `bigint`, `double` or `boolean`, two share a name, or a name
    /// holds a character JSON escapes.
    pub fn new(fields: &Fields, coerce: bool) -> Option<FlatJson> {
        let mut columns = Vec::with_capacity(fields.len());
        let mut by_name = HashMap::new();
        for (i, f) in fields.iter().enumerate() {
            let values = match f.data_type() {
                DataType::Utf8 => Values::Utf8 {
                    offsets: vec![0],
                    bytes: Vec::new(),
                },
                DataType::Int64 => Values::Int64(Vec::new()),
                DataType::Float64 => Values::Float64(Vec::new()),
                DataType::Boolean => Values::Boolean(BooleanBufferBuilder::new(0)),
                _ => return None,
            };
            let name: Box<[u8]> = f.name().as_bytes().into();
            // A name JSON must escape is never matched in place.
            let plain = !name.iter().any(|&b| ends_plain_run(b));
            if !f.is_nullable() || !plain || by_name.insert(name, i).is_some() {
                return None;
            }
            columns.push(Column {
                key: format!("\"{}\":", f.name()).into_bytes().into(),
                values,
                nulls: NullBufferBuilder::new(0),
            });
        }
        Some(FlatJson {
            columns,
            by_name,
            coerce,
            rows: 0,
            order: Vec::new(),
        })
    }

    /// Records decoded since the last [`FlatJson::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Decodes one line (without its newline): `Ok(true)` for a record,
    /// `Ok(false)` for a blank line, `Declined` with the columns unchanged.
    pub fn push_line(&mut self, line: &[u8]) -> Step<bool> {
        let i = skip_blank(line, 0);
        if i == line.len() {
            return Ok(false);
        }
        if line[i] != b'{' {
            return Err(Declined);
        }
        match self.members(line, i + 1) {
            Ok(end) if skip_blank(line, end) == line.len() => {}
            _ => {
                for c in &mut self.columns {
                    c.truncate(self.rows);
                }
                return Err(Declined);
            }
        }
        for c in &mut self.columns {
            if c.nulls.len() == self.rows {
                c.append_null();
            }
        }
        self.rows += 1;
        Ok(true)
    }

    /// The columns of the records decoded, in the fields' order; the
    /// decoder starts again empty.
    pub fn finish(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        self.rows = 0;
        self.columns.iter_mut().map(Column::finish).collect()
    }

    /// An object's members after its `{`, up to and past its `}`.
    fn members(&mut self, line: &[u8], i: usize) -> Step {
        let mut i = skip_blank(line, i);
        if line.get(i) == Some(&b'}') {
            return Ok(i + 1);
        }
        let mut n = 0;
        loop {
            let column = match self.expected(n, line, i) {
                Some((column, colon)) => {
                    i = colon + 1;
                    column
                }
                None => {
                    if line.get(i) != Some(&b'"') {
                        return Err(Declined);
                    }
                    let (end, plain) = string_end(line, i + 1)?;
                    if plain.escaped {
                        return Err(Declined);
                    }
                    let key = &line[i + 1..end];
                    let column = self.look_up(n, key);
                    // A key that names a column is that name's UTF-8.
                    if column.is_none() && !plain.ascii && std::str::from_utf8(key).is_err() {
                        return Err(Declined);
                    }
                    i = skip_blank(line, end + 1);
                    if line.get(i) != Some(&b':') {
                        return Err(Declined);
                    }
                    i += 1;
                    column
                }
            };
            i = skip_blank(line, i);
            i = match column {
                Some(c) => self.value(c, line, i)?,
                None => skip_scalar(line, i)?,
            };
            n += 1;
            i = skip_blank(line, i);
            match line.get(i) {
                Some(b',') => i = skip_blank(line, i + 1),
                Some(b'}') => return Ok(i + 1),
                _ => return Err(Declined),
            }
        }
    }

    /// Where the record's `n`-th key, at `i`, is the one the last record
    /// had there, its colon right after it (most records name the same
    /// columns in the same order): that key's column and where the colon
    /// is, matched in place without a scan.
    fn expected(&self, n: usize, line: &[u8], i: usize) -> Option<(Option<usize>, usize)> {
        let c = (*self.order.get(n)?)?;
        let key = &self.columns[c].key;
        let end = i + key.len();
        equal(line.get(i..end)?, key).then_some((Some(c), end - 1))
    }

    /// The column `key`, the record's `n`-th, names, remembered as the guess
    /// for the next record's `n`-th key.
    fn look_up(&mut self, n: usize, key: &[u8]) -> Option<usize> {
        let found = self.by_name.get(key).copied();
        if n < self.order.len() {
            self.order[n] = found;
        } else if n == self.order.len() {
            self.order.push(found);
        }
        found
    }

    /// Appends the value at `i` to column `c`; past the value.
    fn value(&mut self, c: usize, line: &[u8], i: usize) -> Step {
        let rows = self.rows;
        let coerce = self.coerce;
        let col = &mut self.columns[c];
        if col.nulls.len() > rows {
            // A key seen twice: arrow-json keeps the last value.
            return Err(Declined);
        }
        let end = match (line.get(i), &mut col.values) {
            (Some(b'"'), Values::Utf8 { offsets, bytes }) => {
                let end = string_value(line, i + 1, bytes)?;
                push_offset(offsets, bytes)?;
                end
            }
            (Some(b'n'), _) => {
                let end = literal(line, i, b"null")?;
                col.append_null();
                return Ok(end);
            }
            (Some(b't'), Values::Boolean(v)) => {
                v.append(true);
                literal(line, i, b"true")?
            }
            (Some(b'f'), Values::Boolean(v)) => {
                v.append(false);
                literal(line, i, b"false")?
            }
            (Some(&b), Values::Utf8 { offsets, bytes }) if coerce && (b == b't' || b == b'f') => {
                let word: &[u8] = if b == b't' { b"true" } else { b"false" };
                let end = literal(line, i, word)?;
                bytes.extend_from_slice(word);
                push_offset(offsets, bytes)?;
                end
            }
            (Some(b'-' | b'0'..=b'9'), values) => {
                let n = number(line, i)?;
                match values {
                    Values::Int64(v) => v.push(n.to_i64().ok_or(Declined)?),
                    Values::Float64(v) => v.push(n.to_f64(&line[i..n.end]).ok_or(Declined)?),
                    Values::Utf8 { offsets, bytes } if coerce => {
                        bytes.extend_from_slice(&line[i..n.end]);
                        push_offset(offsets, bytes)?;
                    }
                    _ => return Err(Declined),
                }
                n.end
            }
            _ => return Err(Declined),
        };
        col.nulls.append_non_null();
        Ok(end)
    }
}

/// Whether `a` and `b`, of one length, are equal, eight bytes at a time,
/// the last eight overlapping (keys are short: a call to `memcmp` costs
/// more than the comparison).
fn equal(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// The eight bytes of `s` at `at`, as one word.
fn word(s: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(s[at..at + 8].try_into().expect("eight bytes"))
}

fn push_offset(offsets: &mut Vec<i32>, bytes: &[u8]) -> Step<()> {
    offsets.push(i32::try_from(bytes.len()).map_err(|_| Declined)?);
    Ok(())
}

/// Past the blank space at `i`.
fn skip_blank(line: &[u8], mut i: usize) -> usize {
    while line.get(i).is_some_and(|&b| blank(b)) {
        i += 1;
    }
    i
}

/// Past `word` at `i`, where `line` must hold it.
fn literal(line: &[u8], i: usize, word: &[u8]) -> Step {
    match line.get(i..i + word.len()) {
        Some(w) if w == word => Ok(i + word.len()),
        _ => Err(Declined),
    }
}

/// Past a scalar value at `i` of a key no column has, checked and dropped.
fn skip_scalar(line: &[u8], i: usize) -> Step {
    match line.get(i) {
        Some(b'"') => string_value(line, i + 1, &mut Vec::new()),
        Some(b'-' | b'0'..=b'9') => Ok(number(line, i)?.end),
        Some(b't') => literal(line, i, b"true"),
        Some(b'f') => literal(line, i, b"false"),
        Some(b'n') => literal(line, i, b"null"),
        _ => Err(Declined),
    }
}

/// What a string's bytes held.
struct Plain {
    /// No byte above 0x7F.
    ascii: bool,
    /// A backslash.
    escaped: bool,
}

/// The high bits of the bytes of `x` below its lowest special one.
fn high_before(x: u64, special: u64) -> u64 {
    x & HIGH & ((special & special.wrapping_neg()) - 1)
}

/// The length of a plain run in a line's last bytes, fewer than eight:
/// declined where the line ends inside it.
fn last_run(rest: &[u8]) -> Step<usize> {
    rest.iter().position(|&c| ends_plain_run(c)).ok_or(Declined)
}

/// Where the string whose text starts at `i` ends (its closing quote) when
/// it has no escape, or where its first escape is; a control byte or the
/// end of the line declines.
fn string_end(line: &[u8], mut i: usize) -> Step<(usize, Plain)> {
    let mut high = 0u64;
    let stop = loop {
        let Some(chunk) = line.get(i..i + 8) else {
            let rest = &line[i..];
            let at = last_run(rest)?;
            high |= rest[..at].iter().fold(0, |h, &c| h | u64::from(c & 0x80));
            break i + at;
        };
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let special = specials(x);
        if special != 0 {
            high |= high_before(x, special);
            break i + special.trailing_zeros() as usize / 8;
        }
        high |= x & HIGH;
        i += 8;
    };
    let plain = Plain {
        ascii: high == 0,
        escaped: line[stop] == b'\\',
    };
    if line[stop] < 0x20 {
        return Err(Declined);
    }
    Ok((stop, plain))
}

/// Appends the text of the string starting at `i` (after its quote) to
/// `out`, escapes decoded and UTF-8 checked; past its closing quote.
fn string_value(line: &[u8], mut i: usize, out: &mut Vec<u8>) -> Step {
    let from = out.len();
    let mut high = 0u64;
    loop {
        // Eight bytes at a time, each word copied as it is scanned (one
        // store: a call to copy a short run costs more, in wasm a trip to
        // the host); what was copied past the run is cut.
        let stop = loop {
            let Some(chunk) = line.get(i..i + 8) else {
                let rest = &line[i..];
                let at = last_run(rest)?;
                for &c in &rest[..at] {
                    high |= u64::from(c & 0x80);
                    out.push(c);
                }
                break i + at;
            };
            let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            out.extend_from_slice(&x.to_le_bytes());
            let special = specials(x);
            if special != 0 {
                let at = special.trailing_zeros() as usize / 8;
                high |= high_before(x, special);
                out.truncate(out.len() - (8 - at));
                break i + at;
            }
            high |= x & HIGH;
            i += 8;
        };
        match line[stop] {
            b'"' => {
                if high != 0 && std::str::from_utf8(&out[from..]).is_err() {
                    return Err(Declined);
                }
                return Ok(stop + 1);
            }
            b'\\' => i = escape(line, stop + 1, out)?,
            // A control byte.
            _ => return Err(Declined),
        }
    }
}

/// Decodes the escape after the backslash at `i - 1` into `out`; past it.
fn escape(line: &[u8], i: usize, out: &mut Vec<u8>) -> Step {
    let byte = match line.get(i) {
        Some(b'"') => b'"',
        Some(b'\\') => b'\\',
        Some(b'/') => b'/',
        Some(b'b') => 0x08,
        Some(b'f') => 0x0c,
        Some(b'n') => b'\n',
        Some(b'r') => b'\r',
        Some(b't') => b'\t',
        Some(b'u') => {
            let unit = hex4(line, i + 1)?;
            let (c, end) = match unit {
                0xD800..=0xDBFF => {
                    // A high surrogate must be followed by its low one.
                    if line.get(i + 5..i + 7) != Some(b"\\u") {
                        return Err(Declined);
                    }
                    let low = hex4(line, i + 7)?;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        return Err(Declined);
                    }
                    let c =
                        0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                    (c, i + 11)
                }
                _ => (u32::from(unit), i + 5),
            };
            // A lone low surrogate is no character.
            let c = char::from_u32(c).ok_or(Declined)?;
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            return Ok(end);
        }
        _ => return Err(Declined),
    };
    out.push(byte);
    Ok(i + 1)
}

/// The four hex digits at `i`.
fn hex4(line: &[u8], i: usize) -> Step<u16> {
    let digits = line.get(i..i + 4).ok_or(Declined)?;
    digits.iter().try_fold(0u16, |acc, &d| {
        let v = (d as char).to_digit(16).ok_or(Declined)?;
        Ok(acc << 4 | v as u16)
    })
}

/// The number at `i`, by JSON's grammar: `-`, an integer part without a
/// leading zero, an optional fraction and exponent, each with a digit.
fn number(line: &[u8], mut i: usize) -> Step<Number> {
    let negative = line[i] == b'-';
    i += usize::from(negative);
    let (mut mantissa, mut digits) = (0u64, 0u32);
    let first = i;
    i = digit_run(line, i, &mut mantissa, &mut digits);
    if i == first || (line[first] == b'0' && i > first + 1) {
        // No digit, or a leading zero.
        return Err(Declined);
    }
    let mut scale = 0i64;
    let mut integral = true;
    if line.get(i) == Some(&b'.') {
        integral = false;
        let first = i + 1;
        i = digit_run(line, first, &mut mantissa, &mut digits);
        if i == first {
            return Err(Declined);
        }
        scale = -((i - first) as i64);
    }
    if let Some(b'e' | b'E') = line.get(i) {
        integral = false;
        i += 1;
        let minus = line.get(i) == Some(&b'-');
        if let Some(b'+' | b'-') = line.get(i) {
            i += 1;
        }
        let first = i;
        let mut exp = 0i64;
        while let Some(d) = line.get(i).filter(|d| d.is_ascii_digit()) {
            exp = (exp * 10 + i64::from(d - b'0')).min(1 << 20);
            i += 1;
        }
        if i == first {
            return Err(Declined);
        }
        scale += if minus { -exp } else { exp };
    }
    Ok(Number {
        end: i,
        negative,
        mantissa,
        digits,
        integral,
        scale,
    })
}

/// Takes the run of digits at `i` into `mantissa` (which wraps past 19
/// digits: `digits` counts them all), up to eight at a time; past the run.
fn digit_run(line: &[u8], mut i: usize, mantissa: &mut u64, digits: &mut u32) -> usize {
    const POW10: [u64; 9] = [
        1,
        10,
        100,
        1_000,
        10_000,
        100_000,
        1_000_000,
        10_000_000,
        100_000_000,
    ];
    while let Some(chunk) = line.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let values = x.wrapping_sub(ONES * u64::from(b'0'));
        // The high bit of each byte above '9' (adding 0x46 carries it
        // there) or below '0' (subtracting borrows): exact at the lowest.
        let others = (x.wrapping_add(ONES * 0x46) | values) & HIGH;
        let k = if others == 0 {
            8
        } else {
            others.trailing_zeros() as usize / 8
        };
        if k == 0 {
            return i;
        }
        // The run's digits moved to the top bytes: leading zeros below.
        let run = eight_digits(values << (8 * (8 - k)));
        *mantissa = mantissa.wrapping_mul(POW10[k]).wrapping_add(run);
        *digits += k as u32;
        i += k;
        if k < 8 {
            return i;
        }
    }
    while let Some(d) = line.get(i).filter(|d| d.is_ascii_digit()) {
        *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
        *digits += 1;
        i += 1;
    }
    i
}

/// The number eight digit values (0-9, one a byte, the first in the lowest
/// byte) write, in three multiplications.
fn eight_digits(v: u64) -> u64 {
    const PAIRS: u64 = 0x0000_00FF_0000_00FF;
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let hundreds = (v & PAIRS).wrapping_mul(100 + (1_000_000 << 32));
    let ones = ((v >> 16) & PAIRS).wrapping_mul(1 + (10_000 << 32));
    hundreds.wrapping_add(ones) >> 32
}

impl Number {
    /// The number as a `bigint`, as arrow-json reads it, where it is one
    /// that fits.
    fn to_i64(&self) -> Option<i64> {
        if !self.integral || self.digits > 19 {
            return None;
        }
        if self.negative {
            0i64.checked_sub_unsigned(self.mantissa)
        } else {
            i64::try_from(self.mantissa).ok()
        }
    }

    /// The number as a `double`, correctly rounded as arrow-json's parser
    /// (lexical) and Rust's both round: exactly where the digits and the
    /// power of ten are exact doubles (one rounding, Clinger's fast path),
    /// otherwise by Rust's parser. Declines what overflows.
    fn to_f64(&self, text: &[u8]) -> Option<f64> {
        const POW10: [f64; 23] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
            1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
        ];
        let exact = self.digits <= 19 && self.mantissa <= 1 << 53;
        let v = match self.scale {
            0..=22 if exact => self.mantissa as f64 * POW10[self.scale as usize],
            -22..=-1 if exact => self.mantissa as f64 / POW10[-self.scale as usize],
            _ => {
                let v: f64 = std::str::from_utf8(text).ok()?.parse().ok()?;
                return v.is_finite().then_some(v);
            }
        };
        Some(if self.negative { -v } else { v })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::RecordBatch;
    use arrow_schema::{Field, Schema};
    use proptest::prelude::*;

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("i", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
        ])
    }

    /// What the general path makes of `text`: arrow-json's decoding behind
    /// the strict check, `None` where either refuses it. Where the text
    /// holds a surrogate escape, which arrow-json 59 decodes wrongly above
    /// U+1FFFF (the connector reads such text with serde_json), the strings
    /// are serde_json's.
    fn reference(fields: &Fields, coerce: bool, text: &str) -> Option<RecordBatch> {
        use arrow_array::Array;
        use arrow_array::cast::AsArray;
        let mut check = crate::json::Checker::default();
        check.feed(text.as_bytes()).ok()?;
        check.finish().ok()?;
        let schema = Arc::new(Schema::new(fields.clone()));
        let mut d = arrow_json::ReaderBuilder::new(schema.clone())
            .with_coerce_primitive(coerce)
            .build_decoder()
            .ok()?;
        d.decode(text.as_bytes()).ok()?;
        let batch = d
            .flush()
            .ok()?
            .unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
        if !crate::json::surrogate_escape(text.as_bytes()) {
            return Some(batch);
        }
        let records: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            // serde_json refuses numbers past the doubles, which no string
            // column here holds.
            .map(|l| serde_json::from_str(l).unwrap_or_default())
            .collect();
        let columns = fields
            .iter()
            .zip(batch.columns())
            .map(|(f, column)| {
                if f.data_type() != &DataType::Utf8 {
                    return column.clone();
                }
                let decoded = column.as_string::<i32>();
                let strings = records.iter().enumerate().map(|(r, v)| match &v[f.name()] {
                    serde_json::Value::String(s) => Some(s.clone()),
                    _ => decoded.is_valid(r).then(|| decoded.value(r).to_string()),
                });
                Arc::new(StringArray::from_iter(strings)) as ArrayRef
            })
            .collect();
        RecordBatch::try_new(schema, columns).ok()
    }

    /// What this decoder makes of `text`, or `None` where it declines a line.
    fn decoded(fields: &Fields, coerce: bool, text: &str) -> Option<RecordBatch> {
        let mut d = FlatJson::new(fields, coerce).unwrap();
        for line in text.split('\n') {
            d.push_line(line.as_bytes()).ok()?;
        }
        let schema = Arc::new(Schema::new(fields.clone()));
        Some(RecordBatch::try_new(schema, d.finish().unwrap()).unwrap())
    }

    #[test]
    fn records_decode_as_arrow_json_decodes_them() {
        let text = concat!(
            "{\"s\": \"a\", \"i\": 1, \"f\": 1.5, \"b\": true}\n",
            "{\"b\":false,\"f\":-0.25e2,\"i\":-9223372036854775808,\"s\":\"\\u00e9\\\"\\n\\ud83d\\ude00 é\"}\n",
            "\n  \r\n",
            "{\"s\": null, \"other\": [1], \"i\": null}\n",
            "{\"x\": \"ignored\", \"s\": \"\", \"f\": 12345678901234567890, \"i\": 0}\n",
            "{}\n",
            "{\"f\": 0.1, \"i\": 9223372036854775807, \"s\": \"\\/\\b\\f\\r\\t\\\\\"}\n",
            "{\"f\": 1e-7, \"other\": {\"deep\": 1}}\n",
            "{\"f\": 2.2250738585072014e-308, \"g\": -0, \"i\": -0}\n",
            "{\"f\": -0, \"s\": \"x\"}\t\r",
        );
        // Lines with nested values for keys no column has are declined; the
        // rest must decode.
        let plain: String = text
            .lines()
            .filter(|l| !l.contains("other"))
            .map(|l| format!("{l}\n"))
            .collect();
        let want = reference(&fields(), false, &plain).unwrap();
        let got = decoded(&fields(), false, &plain).unwrap();
        assert_eq!(got, want);
        assert_eq!(got.num_rows(), 7);
    }

    #[test]
    fn numbers_and_booleans_become_text_where_coerced() {
        let f = Fields::from(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        let text = "{\"a\": 1.50, \"b\": true}\n{\"a\": -0e3, \"b\": \"s\"}\n{\"b\": false}\n";
        assert_eq!(decoded(&f, true, text), reference(&f, true, text));
        assert!(decoded(&f, false, text).is_none());
        assert!(reference(&f, false, text).is_none());
    }

    #[test]
    fn what_the_strict_check_refuses_is_declined() {
        for bad in [
            "{\"i\":[1,,2]}",
            "{\"i\":1,}",
            "{,\"i\":1}",
            "{\"i\":012}",
            "{\"i\":-01}",
            "{\"f\":1.}",
            "{\"f\":.5}",
            "{\"f\":+1}",
            "{\"f\":1e}",
            "{\"f\":0.1.2}",
            "{\"i\":1} {\"i\":3}",
            "{\"i\":1}{\"i\":2}",
            "[1,2]",
            "\"text\"",
            "{\"b\":tru}",
            "{\"s\":nul}",
            "{\"s\":\"tab\there\"}",
            "{\"s\":\"\\x\"}",
            "{\"s\":\"\\u12g4\"}",
            "{\"i\" 1}",
            "{\"i\":1",
            "{\"i\":1}}",
            "{\"s\":\"open",
            "{\"x\":\"\\ud800\"}",
            "{\"s\":\"\\udc00\"}",
            "{\"s\":\"\\ud800\\u0041\"}",
        ] {
            let mut d = FlatJson::new(&fields(), true).unwrap();
            assert_eq!(d.push_line(bad.as_bytes()), Err(Declined), "{bad:?}");
        }
    }

    #[test]
    fn what_it_is_unsure_of_is_declined_and_leaves_the_columns_as_they_were() {
        let mut d = FlatJson::new(&fields(), false).unwrap();
        assert_eq!(d.push_line(b"{\"s\": \"kept\", \"i\": 7}"), Ok(true));
        for unsure in [
            // arrow-json parses strings in number columns and keeps the last
            // of a repeated key; both are left to it.
            "{\"s\": \"x\", \"i\": \"12\"}",
            "{\"s\": \"x\", \"s\": \"y\"}",
            "{\"s\": \"x\", \"i\": 1.5}",
            "{\"s\": \"x\", \"i\": 9223372036854775808}",
            "{\"s\": \"x\", \"f\": 1e400}",
            "{\"s\": \"x\", \"b\": 1}",
            "{\"s\": 1}",
            "{\"s\": \"x\", \"i\": {\"a\": 1}}",
            "{\"s\": \"x\", \"k\\u0065y\": 1}",
            "{\"s\": \"\u{80}\u{7ff}x\", \"bad\": \"\\u0041\\ud801\"}",
        ] {
            assert_eq!(d.push_line(unsure.as_bytes()), Err(Declined), "{unsure:?}");
        }
        let bad_utf8 = b"{\"s\": \"\xff\"}";
        assert_eq!(d.push_line(bad_utf8), Err(Declined));
        let bad_key = b"{\"\xc3\": 1}";
        assert_eq!(d.push_line(bad_key), Err(Declined));
        assert_eq!(d.push_line(b"{\"i\": 8}"), Ok(true));
        let want = reference(
            &fields(),
            false,
            "{\"s\": \"kept\", \"i\": 7}\n{\"i\": 8}\n",
        );
        let schema = Arc::new(Schema::new(fields()));
        assert_eq!(
            Some(RecordBatch::try_new(schema, d.finish().unwrap()).unwrap()),
            want
        );
        assert_eq!(d.rows(), 0);
    }

    #[test]
    fn digit_runs_read_as_digit_by_digit() {
        let digits = b"9081726354453627181920";
        for start in 0..digits.len() {
            for len in 0..=digits.len() - start {
                for after in [&b""[..], b".", b"x", b"/", b":", b"\xff"] {
                    let text = [&digits[start..start + len], after, b"0000000000"].concat();
                    let (mut mantissa, mut count) = (0, 0);
                    let end = digit_run(&text, 0, &mut mantissa, &mut count);
                    let want = text.iter().take_while(|d| d.is_ascii_digit()).count();
                    assert_eq!(end, want, "{text:?}");
                    assert_eq!(count as usize, want);
                    let scalar = text[..want].iter().fold(0u64, |m, d| {
                        m.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
                    });
                    assert_eq!(mantissa, scalar, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn only_flat_nullable_schemas_of_four_types_are_taken() {
        let nested = Fields::from(vec![Field::new(
            "l",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        )]);
        assert!(FlatJson::new(&nested, false).is_none());
        let required = Fields::from(vec![Field::new("a", DataType::Int64, false)]);
        assert!(FlatJson::new(&required, false).is_none());
        let twice = Fields::from(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("a", DataType::Utf8, true),
        ]);
        assert!(FlatJson::new(&twice, false).is_none());
        let quoted = Fields::from(vec![Field::new("say \"hi\"", DataType::Utf8, true)]);
        assert!(FlatJson::new(&quoted, false).is_none());
    }

    /// A JSON number's text: integers of every size, fractions with many
    /// digits, exponents near the edges of the doubles.
    fn number_text() -> impl proptest::strategy::Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            any::<f64>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(|v| format!("{v:e}")),
            any::<f64>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(|v| format!("{v}")),
            "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?",
        ]
    }

    /// A value of any kind, as JSON text.
    fn value_text() -> impl proptest::strategy::Strategy<Value = String> {
        prop_oneof![
            number_text(),
            Just("true".to_string()),
            Just("false".to_string()),
            Just("null".to_string()),
            string_text(),
        ]
    }

    /// A string, as JSON text: as serde_json writes it, or escaped to ASCII
    /// (surrogate pairs and all).
    fn string_text() -> impl proptest::strategy::Strategy<Value = String> {
        prop_oneof![
            ".{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            ".{0,6}".prop_map(|s| {
                s.chars()
                    .flat_map(|c| {
                        let mut units = [0u16; 2];
                        c.encode_utf16(&mut units)
                            .iter()
                            .map(|u| format!("\\u{u:04x}"))
                            .collect::<Vec<_>>()
                    })
                    .fold("\"".to_string(), |acc, u| acc + &u)
                    + "\""
            }),
        ]
    }

    /// The text of a record with `members`, blank space around each.
    fn record(members: &[(String, String, String)]) -> String {
        let inner: Vec<String> = members
            .iter()
            .map(|(k, v, sp)| format!("{sp}\"{k}\"{sp}:{sp}{v}{sp}"))
            .collect();
        format!("{{{}}}", inner.join(","))
    }

    proptest::proptest! {
        /// Records of any keys and values, in any order: every line this
        /// decoder takes decodes as arrow-json decodes it.
        #[test]
        fn what_it_takes_decodes_as_arrow_json_does(
            records in proptest::collection::vec(
                proptest::collection::vec(
                    (proptest::sample::select(vec!["s", "i", "f", "b", "x"]).prop_map(String::from),
                     value_text(), "[ \t]{0,2}"),
                    0..6,
                ),
                1..6,
            ),
            coerce in proptest::bool::ANY,
        ) {
            let mut d = FlatJson::new(&fields(), coerce).unwrap();
            let mut taken = String::new();
            for line in records.iter().map(|m| record(m)) {
                if d.push_line(line.as_bytes()).is_ok() {
                    taken.push_str(&line);
                    taken.push('\n');
                }
            }
            let schema = Arc::new(Schema::new(fields()));
            let got = RecordBatch::try_new(schema, d.finish().unwrap()).unwrap();
            proptest::prop_assert_eq!(Some(got), reference(&fields(), coerce, &taken), "{}", taken);
        }

        /// Records whose values fit their columns, each key once, in any
        /// order: none is declined.
        #[test]
        fn records_that_fit_are_all_taken(
            records in proptest::collection::vec(
                (
                    proptest::option::of(string_text()),
                    proptest::option::of(proptest::num::i64::ANY.prop_map(|v| v.to_string())),
                    proptest::option::of(number_text()),
                    proptest::option::of(proptest::bool::ANY.prop_map(|v| v.to_string())),
                    proptest::option::of(value_text()),
                    proptest::collection::vec("[ \t]{0,2}", 5),
                    proptest::sample::subsequence(vec![0usize, 1, 2, 3, 4], 0..=5).prop_shuffle(),
                ),
                1..6,
            ),
        ) {
            let mut d = FlatJson::new(&fields(), false).unwrap();
            for (s, i, f, b, x, blank, order) in &records {
                let values = [s, i, f, b, x];
                let members: Vec<(String, String, String)> = order
                    .iter()
                    .map(|&k| {
                        let value = values[k].clone().unwrap_or_else(|| "null".to_string());
                        (["s", "i", "f", "b", "x"][k].to_string(), value, blank[k].clone())
                    })
                    .collect();
                let line = record(&members);
                let overflows = f.as_ref().is_some_and(|f| !f.parse::<f64>().unwrap().is_finite());
                if !overflows {
                    proptest::prop_assert_eq!(d.push_line(line.as_bytes()), Ok(true), "{}", line);
                }
            }
        }
    }
}
