//! PostgreSQL values into Arrow columns: as the server writes them in
//! text (pgoutput, and `COPY` for types whose binary format is not simple),
//! with the session's ISO dates, UTC and hex bytea, one parser per type;
//! and as `COPY`'s binary format has the simple ones (numbers, dates,
//! timestamps, text, bytes).

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::ListArray;
use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer};
use arrow_schema::{DataType, Field, FieldRef, TimeUnit};

/// The Arrow type a column of PostgreSQL type `oid` (with `typmod`, and for
/// an array its element type `elem`) is kept as. A type without a column
/// type of its own (uuid, json, interval, ...) is kept as its text.
pub fn arrow_type(oid: u32, typmod: i32, elem: u32) -> DataType {
    match oid {
        16 => DataType::Boolean,
        21 => DataType::Int16,
        23 => DataType::Int32,
        20 | 26 => DataType::Int64,
        700 => DataType::Float32,
        701 => DataType::Float64,
        1700 => decimal(typmod),
        17 => DataType::Binary,
        1082 => DataType::Date32,
        1114 => DataType::Timestamp(TimeUnit::Microsecond, None),
        1184 => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        // An array of things kept as text is a list of their texts.
        _ if elem != 0 => DataType::List(Arc::new(Field::new(
            "element",
            arrow_type(elem, typmod, 0),
            true,
        ))),
        _ => DataType::Utf8,
    }
}

/// The name of the common type `oid`, as `format_type` says it; else its
/// number.
pub fn type_name(oid: u32) -> String {
    let name = match oid {
        16 => "boolean",
        17 => "bytea",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        25 => "text",
        26 => "oid",
        114 => "json",
        700 => "real",
        701 => "double precision",
        1042 => "character",
        1043 => "character varying",
        1082 => "date",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1186 => "interval",
        1700 => "numeric",
        2950 => "uuid",
        3802 => "jsonb",
        _ => return format!("with oid {oid}"),
    };
    name.to_string()
}

/// Whether `COPY`'s binary format of a value of type `oid`, kept as
/// `data_type`, is read as the server sends it: fixed-width numbers, dates
/// and timestamps, text and bytes, and `numeric` kept as a decimal. Values
/// of other types are copied as their text (`column::text`), read by the
/// same parsers as text is.
pub fn binary_as_is(oid: u32, data_type: &DataType) -> bool {
    match oid {
        1700 => matches!(data_type, DataType::Decimal128(..)),
        _ => matches!(
            oid,
            16 | 21 | 23 | 20 | 700 | 701 | 17 | 1082 | 1114 | 1184 | 25 | 1043 | 1042 | 19
        ),
    }
}

/// Days from 1970-01-01 to 2000-01-01, where PostgreSQL's binary dates
/// and timestamps count from.
const PG_EPOCH_DAYS: i32 = 10_957;

/// `numeric(p, s)` as a decimal when Arrow's can hold it; unconstrained
/// `numeric` (any scale) as its exact text.
fn decimal(typmod: i32) -> DataType {
    if typmod < 4 {
        return DataType::Utf8;
    }
    let m = typmod - 4;
    let precision = (m >> 16) & 0xffff;
    // The scale is an 11-bit signed number (negative scales since 15).
    let scale = ((m & 0x7ff) ^ 0x400) - 0x400;
    if (1..=38).contains(&precision) && (0..=precision).contains(&scale) {
        DataType::Decimal128(precision as u8, scale as i8)
    } else {
        DataType::Utf8
    }
}

/// One column being built.
pub enum Column {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Text(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, Option<Arc<str>>),
    List {
        field: FieldRef,
        inner: Box<Column>,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
    },
}

impl Column {
    /// An empty column of `data_type` (one [`arrow_type`] makes; anything
    /// else is refused).
    pub fn new(data_type: &DataType) -> Result<Column, String> {
        Ok(match data_type {
            DataType::Boolean => Column::Bool(BooleanBuilder::new()),
            DataType::Int16 => Column::I16(Int16Builder::new()),
            DataType::Int32 => Column::I32(Int32Builder::new()),
            DataType::Int64 => Column::I64(Int64Builder::new()),
            DataType::Float32 => Column::F32(Float32Builder::new()),
            DataType::Float64 => Column::F64(Float64Builder::new()),
            DataType::Decimal128(p, s) => Column::Decimal(
                Decimal128Builder::new()
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| e.to_string())?,
                *p,
                *s,
            ),
            DataType::Utf8 => Column::Text(StringBuilder::new()),
            DataType::Binary => Column::Binary(BinaryBuilder::new()),
            DataType::Date32 => Column::Date(Date32Builder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => Column::Timestamp(
                TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone()),
                tz.clone(),
            ),
            DataType::List(field) => Column::List {
                field: field.clone(),
                inner: Box::new(Column::new(field.data_type())?),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(0),
            },
            other => return Err(format!("no PostgreSQL value is read as {other}")),
        })
    }

    /// Appends the value whose text is `text` (none: null).
    pub fn push(&mut self, text: Option<&str>) -> Result<(), String> {
        let Some(t) = text else {
            self.push_null();
            return Ok(());
        };
        match self {
            Column::Bool(b) => b.append_value(match t {
                "t" | "true" => true,
                "f" | "false" => false,
                _ => return Err(not_a(t, "boolean")),
            }),
            Column::I16(b) => b.append_value(t.parse().map_err(|_| not_a(t, "smallint"))?),
            Column::I32(b) => b.append_value(t.parse().map_err(|_| not_a(t, "integer"))?),
            Column::I64(b) => b.append_value(t.parse().map_err(|_| not_a(t, "bigint"))?),
            Column::F32(b) => b.append_value(t.parse().map_err(|_| not_a(t, "real"))?),
            Column::F64(b) => b.append_value(t.parse().map_err(|_| not_a(t, "double precision"))?),
            Column::Decimal(b, p, s) => b.append_value(parse_decimal(t, *p, *s)?),
            Column::Text(b) => b.append_value(t),
            Column::Binary(b) => b.append_value(parse_bytea(t)?),
            Column::Date(b) => b.append_value(parse_date(t)?),
            Column::Timestamp(b, tz) => b.append_value(parse_timestamp(t, tz.is_some())?),
            Column::List {
                inner,
                offsets,
                nulls,
                ..
            } => {
                let elements = split_array(t)?;
                for e in &elements {
                    inner.push(e.as_deref())?;
                }
                let last = *offsets.last().unwrap_or(&0);
                offsets.push(last + elements.len() as i32);
                nulls.append_non_null();
            }
        }
        Ok(())
    }

    /// Appends a value in `COPY`'s binary format, of a type
    /// [`binary_as_is`] reads (none: null).
    pub fn push_binary(&mut self, value: Option<&[u8]>) -> Result<(), String> {
        let Some(v) = value else {
            self.push_null();
            return Ok(());
        };
        fn fixed<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N], String> {
            v.try_into()
                .map_err(|_| format!("a binary {what} of {} bytes, not {N}", v.len()))
        }
        match self {
            Column::Bool(b) => b.append_value(fixed::<1>(v, "boolean")?[0] != 0),
            Column::I16(b) => b.append_value(i16::from_be_bytes(fixed(v, "smallint")?)),
            Column::I32(b) => b.append_value(i32::from_be_bytes(fixed(v, "integer")?)),
            Column::I64(b) => b.append_value(i64::from_be_bytes(fixed(v, "bigint")?)),
            Column::F32(b) => b.append_value(f32::from_be_bytes(fixed(v, "real")?)),
            Column::F64(b) => b.append_value(f64::from_be_bytes(fixed(v, "double")?)),
            Column::Text(b) => {
                b.append_value(std::str::from_utf8(v).map_err(|e| format!("not UTF-8: {e}"))?)
            }
            Column::Binary(b) => b.append_value(v),
            // Infinities are the extremes, here as in the text parsers.
            Column::Date(b) => b.append_value(match i32::from_be_bytes(fixed(v, "date")?) {
                d @ (i32::MIN | i32::MAX) => d,
                d => d
                    .checked_add(PG_EPOCH_DAYS)
                    .ok_or_else(|| format!("date {d} is out of range"))?,
            }),
            Column::Timestamp(b, _) => {
                b.append_value(match i64::from_be_bytes(fixed(v, "timestamp")?) {
                    t @ (i64::MIN | i64::MAX) => t,
                    t => t
                        .checked_add(PG_EPOCH_DAYS as i64 * 86_400_000_000)
                        .ok_or_else(|| format!("timestamp {t} is out of range"))?,
                })
            }
            Column::Decimal(b, p, s) => b.append_value(binary_decimal(v, *p, *s)?),
            Column::List { .. } => {
                return Err("a binary value of a type that is copied as text".into());
            }
        }
        Ok(())
    }

    /// Appends a list of `names` (none: null) to a list of text column.
    pub fn push_names(&mut self, names: Option<&Vec<&str>>) -> Result<(), String> {
        let Column::List {
            inner,
            offsets,
            nulls,
            ..
        } = self
        else {
            return Err("a change column of the wrong type".into());
        };
        let Some(names) = names else {
            self.push_null();
            return Ok(());
        };
        for n in names {
            inner.push(Some(n))?;
        }
        let last = *offsets.last().unwrap_or(&0);
        offsets.push(last + names.len() as i32);
        nulls.append_non_null();
        Ok(())
    }

    /// Appends `text` `n` times to a text column.
    pub fn push_text_n(&mut self, text: &str, n: usize) -> Result<(), String> {
        let Column::Text(b) = self else {
            return Err("a change column of the wrong type".into());
        };
        for _ in 0..n {
            b.append_value(text);
        }
        Ok(())
    }

    /// Appends `value` (none: null) `n` times to a bigint or timestamp
    /// column.
    pub fn push_number_n(&mut self, value: Option<i64>, n: usize) -> Result<(), String> {
        match (self, value) {
            (Column::I64(b), Some(v)) => b.append_value_n(v, n),
            (Column::Timestamp(b, _), Some(v)) => b.append_value_n(v, n),
            (Column::I64(b), None) => b.append_nulls(n),
            (Column::Timestamp(b, _), None) => b.append_nulls(n),
            _ => return Err("a change column of the wrong type".into()),
        }
        Ok(())
    }

    /// Appends `n` consecutive numbers from `first` to a bigint column.
    pub fn push_sequence(&mut self, first: i64, n: usize) -> Result<(), String> {
        let Column::I64(b) = self else {
            return Err("a change column of the wrong type".into());
        };
        for i in 0..n as i64 {
            b.append_value(first + i);
        }
        Ok(())
    }

    /// Appends `n` nulls.
    pub fn push_nulls(&mut self, n: usize) {
        for _ in 0..n {
            self.push_null();
        }
    }

    /// Appends a null.
    pub fn push_null(&mut self) {
        match self {
            Column::Bool(b) => b.append_null(),
            Column::I16(b) => b.append_null(),
            Column::I32(b) => b.append_null(),
            Column::I64(b) => b.append_null(),
            Column::F32(b) => b.append_null(),
            Column::F64(b) => b.append_null(),
            Column::Decimal(b, ..) => b.append_null(),
            Column::Text(b) => b.append_null(),
            Column::Binary(b) => b.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Timestamp(b, _) => b.append_null(),
            Column::List { offsets, nulls, .. } => {
                let last = *offsets.last().unwrap_or(&0);
                offsets.push(last);
                nulls.append_null();
            }
        }
    }

    /// The values so far, as an array; the column is empty after, with
    /// room for as many: the next batch is likely as large (grown a
    /// doubling at a time, each value was moved about once more).
    pub fn finish(&mut self) -> ArrayRef {
        fn next<B: ArrayBuilder>(b: &mut B, fresh: impl FnOnce(usize) -> B) -> ArrayRef {
            let room = fresh(b.len());
            std::mem::replace(b, room).finish()
        }
        match self {
            Column::Bool(b) => next(b, BooleanBuilder::with_capacity),
            Column::I16(b) => next(b, Int16Builder::with_capacity),
            Column::I32(b) => next(b, Int32Builder::with_capacity),
            Column::I64(b) => next(b, Int64Builder::with_capacity),
            Column::F32(b) => next(b, Float32Builder::with_capacity),
            Column::F64(b) => next(b, Float64Builder::with_capacity),
            Column::Decimal(b, p, s) => {
                let data_type = DataType::Decimal128(*p, *s);
                next(b, |n| {
                    Decimal128Builder::with_capacity(n).with_data_type(data_type)
                })
            }
            Column::Text(b) => {
                let bytes = b.values_slice().len();
                next(b, |n| StringBuilder::with_capacity(n, bytes))
            }
            Column::Binary(b) => {
                let bytes = b.values_slice().len();
                next(b, |n| BinaryBuilder::with_capacity(n, bytes))
            }
            Column::Date(b) => next(b, Date32Builder::with_capacity),
            Column::Timestamp(b, tz) => next(b, |n| {
                TimestampMicrosecondBuilder::with_capacity(n).with_timezone_opt(tz.clone())
            }),
            Column::List {
                field,
                inner,
                offsets,
                nulls,
            } => {
                let values = inner.finish();
                let mut room = Vec::with_capacity(offsets.len());
                room.push(0);
                let taken = std::mem::replace(offsets, room);
                Arc::new(ListArray::new(
                    field.clone(),
                    OffsetBuffer::<i32>::new(taken.into()),
                    values,
                    nulls.finish(),
                ))
            }
        }
    }
}

fn not_a(text: &str, what: &str) -> String {
    let shown: String = text.chars().take(60).collect();
    format!("'{shown}' is not a {what}")
}

/// 10^i for every i an `i128` holds.
const POW10: [i128; 39] = {
    let mut p = [1i128; 39];
    let mut i = 1;
    while i < p.len() {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

/// `-123.45` as the integer of a decimal with scale `s`.
fn parse_decimal(t: &str, p: u8, s: i8) -> Result<i128, String> {
    let bad = || not_a(t, &format!("decimal({p},{s})"));
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
        || fraction.len() > s as usize
    {
        return Err(bad());
    }
    let digits = whole
        .bytes()
        .chain(fraction.bytes())
        .map(|b| (b - b'0') as u64);
    let count = whole.len() + fraction.len();
    let v = scaled(digits, count, 1, s as i64 - fraction.len() as i64, p).ok_or_else(bad)?;
    Ok(if negative { -v } else { v })
}

/// A `numeric` in `COPY`'s binary format as the integer of a decimal with
/// scale `s`: the count of base-10000 digits, the weight of the first, the
/// sign, the display scale, then the digits.
fn binary_decimal(v: &[u8], p: u8, s: i8) -> Result<i128, String> {
    let word = |i: usize| u16::from_be_bytes([v[2 * i], v[2 * i + 1]]);
    if v.len() < 8 || v.len() != 8 + 2 * word(0) as usize {
        return Err(format!("a binary numeric of {} bytes", v.len()));
    }
    let (count, weight) = (word(0) as i64, word(1) as i16 as i64);
    let negative = match word(2) {
        0 => false,
        0x4000 => true,
        0xC000 => return Err(format!("NaN is not a decimal({p},{s})")),
        0xD000 => return Err(format!("Infinity is not a decimal({p},{s})")),
        0xF000 => return Err(format!("-Infinity is not a decimal({p},{s})")),
        sign => return Err(format!("a binary numeric of sign {sign:#x}")),
    };
    let digits = v[8..]
        .chunks_exact(2)
        .map(|d| u16::from_be_bytes([d[0], d[1]]) as u64);
    // The last digit's place, in the decimal's unit: 10^(4 (weight - count + 1) + s).
    let place = 4 * (weight - count + 1) + s as i64;
    let v = scaled(digits, count as usize, 4, place, p)
        .ok_or_else(|| format!("a numeric with more digits than decimal({p},{s}) holds"))?;
    Ok(if negative { -v } else { v })
}

/// The number whose `count` digits of `width` decimal figures each are
/// `digits`, times 10^`place`, if that is a whole number below 10^`p`.
/// In `u64` when it surely fits: wasm has no 64 x 64 -> 128-bit multiply,
/// so an `i128` multiply, or an overflow-checked `u64` one, is a call.
fn scaled(
    mut digits: impl Iterator<Item = u64>,
    count: usize,
    width: u32,
    place: i64,
    p: u8,
) -> Option<i128> {
    let base = 10u64.pow(width);
    let v = if count as i64 * width as i64 + place.max(0) <= 19 && place >= -19 {
        let v = digits.fold(0u64, |v, d| v * base + d);
        if place >= 0 {
            i128::from(v * 10u64.pow(place as u32))
        } else {
            let unit = 10u64.pow(place.unsigned_abs() as u32);
            (v % unit == 0).then(|| i128::from(v / unit))?
        }
    } else {
        let v = digits.try_fold(0i128, |v, d| {
            v.checked_mul(base as i128)?.checked_add(d as i128)
        })?;
        if place >= 0 {
            v.checked_mul(*POW10.get(place as usize)?)?
        } else {
            let unit = *POW10.get(place.unsigned_abs() as usize)?;
            (v % unit == 0).then_some(v / unit)?
        }
    };
    (v < POW10[p as usize]).then_some(v)
}

/// `\x0a1b...` (bytea_output = hex).
fn parse_bytea(t: &str) -> Result<Vec<u8>, String> {
    let hex = t.strip_prefix("\\x").ok_or_else(|| not_a(t, "hex bytea"))?;
    hex::decode(hex).map_err(|_| not_a(t, "hex bytea"))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's
/// algorithm); `year` is astronomical (1 BC is 0).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD[ BC]` at the start of `t`: days since the epoch and the rest.
fn date_part(t: &str) -> Option<(i64, &str)> {
    let (y, rest) = t.split_once('-')?;
    let year: i64 = y.parse().ok()?;
    let month: u32 = rest.get(0..2)?.parse().ok()?;
    let day: u32 = rest.get(3..5)?.parse().ok()?;
    if rest.as_bytes().get(2) != Some(&b'-')
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
    {
        return None;
    }
    let rest = &rest[5..];
    let bc = t.ends_with(" BC");
    let year = if bc { 1 - year } else { year };
    Some((days_from_civil(year, month, day), rest))
}

/// A date; `infinity` and `-infinity` as the largest and smallest.
fn parse_date(t: &str) -> Result<i32, String> {
    match t {
        "infinity" => return Ok(i32::MAX),
        "-infinity" => return Ok(i32::MIN),
        _ => {}
    }
    let (days, _) = date_part(t).ok_or_else(|| not_a(t, "date"))?;
    i32::try_from(days).map_err(|_| not_a(t, "date"))
}

/// A timestamp, `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]][ BC]`, as
/// microseconds since the epoch in UTC; `infinity` and `-infinity` as the
/// largest and smallest.
fn parse_timestamp(t: &str, zoned: bool) -> Result<i64, String> {
    match t {
        "infinity" => return Ok(i64::MAX),
        "-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let what = if zoned {
        "timestamp with time zone"
    } else {
        "timestamp"
    };
    let bad = || not_a(t, what);
    let (days, rest) = date_part(t).ok_or_else(bad)?;
    let rest = rest.strip_suffix(" BC").unwrap_or(rest);
    let rest = rest.strip_prefix(' ').ok_or_else(bad)?;
    let field = |s: &str, at: usize| -> Option<i64> { s.get(at..at + 2)?.parse().ok() };
    let (h, m, s) = (
        field(rest, 0).ok_or_else(bad)?,
        field(rest, 3).ok_or_else(bad)?,
        field(rest, 6).ok_or_else(bad)?,
    );
    let mut rest = rest.get(8..).ok_or_else(bad)?;
    let mut micros = 0i64;
    if let Some(f) = rest.strip_prefix('.') {
        let n = f.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 6 {
            return Err(bad());
        }
        micros = f[..n].parse::<i64>().map_err(|_| bad())? * 10i64.pow(6 - n as u32);
        rest = &f[n..];
    }
    let mut offset = 0i64;
    if !rest.is_empty() {
        let sign = match rest.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(bad()),
        };
        let parts: Vec<i64> = rest[1..]
            .split(':')
            .map(|p| p.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let seconds = parts.first().copied().unwrap_or(0) * 3600
            + parts.get(1).copied().unwrap_or(0) * 60
            + parts.get(2).copied().unwrap_or(0);
        offset = sign * seconds;
    }
    Ok(((days * 86_400 + h * 3600 + m * 60 + s - offset) * 1_000_000) + micros)
}

/// The elements of a one-dimensional array's text, `{1,NULL,"a b"}`.
fn split_array(t: &str) -> Result<Vec<Option<String>>, String> {
    // `[0:2]={...}`: bounds other than 1.. are written before the value.
    let body = match t.split_once("={") {
        Some((bounds, _)) if bounds.starts_with('[') => &t[bounds.len() + 1..],
        _ => t,
    };
    let inner = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| not_a(t, "array"))?;
    let mut out = Vec::new();
    if inner.is_empty() {
        return Ok(out);
    }
    let bytes = inner.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if bytes.get(i) == Some(&b'{') {
            return Err(format!(
                "'{}' is a multi-dimensional array, which Sluice does not read yet",
                t.chars().take(60).collect::<String>()
            ));
        }
        if bytes.get(i) == Some(&b'"') {
            let mut s = Vec::new();
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(not_a(t, "array")),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        s.push(*bytes.get(i + 1).ok_or_else(|| not_a(t, "array"))?);
                        i += 2;
                    }
                    Some(&b) => {
                        s.push(b);
                        i += 1;
                    }
                }
            }
            i += 1;
            out.push(Some(String::from_utf8(s).map_err(|_| not_a(t, "array"))?));
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != b',' {
                i += 1;
            }
            let e = inner[start..i].trim();
            out.push((!e.eq_ignore_ascii_case("NULL")).then(|| e.to_string()));
        }
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        match bytes.get(i) {
            None => return Ok(out),
            Some(b',') => i += 1,
            Some(_) => return Err(not_a(t, "array")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_count_from_2000_and_keep_their_infinities() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Date32Type, Int32Type, TimestampMicrosecondType};
        let mut date = Column::new(&DataType::Date32).unwrap();
        for v in [0i32, -1, i32::MAX] {
            date.push_binary(Some(&v.to_be_bytes())).unwrap();
        }
        let dates = date.finish();
        let dates = dates.as_primitive::<Date32Type>();
        assert_eq!(dates.values().as_ref(), &[10_957, 10_956, i32::MAX]);
        let mut ts = Column::new(&DataType::Timestamp(TimeUnit::Microsecond, None)).unwrap();
        ts.push_binary(Some(&1i64.to_be_bytes())).unwrap();
        ts.push_binary(Some(&i64::MIN.to_be_bytes())).unwrap();
        ts.push_binary(None).unwrap();
        let t = ts.finish();
        let t = t.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(
            t.value(0),
            parse_timestamp("2000-01-01 00:00:00.000001", false).unwrap()
        );
        assert_eq!(t.value(1), i64::MIN);
        assert!(arrow_array::Array::is_null(t, 2));
        let mut int = Column::new(&DataType::Int32).unwrap();
        int.push_binary(Some(&(-7i32).to_be_bytes())).unwrap();
        assert_eq!(int.finish().as_primitive::<Int32Type>().value(0), -7);
        let e = int.push_binary(Some(&[0, 1])).unwrap_err();
        assert!(e.contains("2 bytes"), "{e}");
        let mut text = Column::new(&DataType::Utf8).unwrap();
        assert!(
            text.push_binary(Some(&[0xff]))
                .unwrap_err()
                .contains("UTF-8")
        );
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("-12.5", 10, 2), Ok(-1250));
        assert_eq!(parse_decimal("0.01", 3, 2), Ok(1));
        assert!(parse_decimal("1000", 3, 0).is_err());
        assert!(parse_decimal("NaN", 10, 2).is_err());
        assert_eq!(
            parse_decimal("12345678901234567890.12", 38, 2),
            Ok(1_234_567_890_123_456_789_012)
        );
        assert_eq!(parse_decimal("-0.5", 38, 37), Ok(-5 * POW10[36]));
        assert!(parse_decimal("1", 38, 38).is_err());
        assert_eq!(decimal(((12 << 16) | 2) + 4), DataType::Decimal128(12, 2));
        assert_eq!(decimal(-1), DataType::Utf8);
    }

    /// `numeric` in `COPY`'s binary format: count, weight, sign, display
    /// scale, base-10000 digits.
    fn numeric(weight: i16, sign: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, 0] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn binary_decimals() {
        use arrow_array::cast::AsArray;
        // 12345.67, -0.05, 0, 1e20 and 1234567890123456789012.34
        assert_eq!(
            binary_decimal(&numeric(1, 0, &[1, 2345, 6700]), 12, 2),
            Ok(1_234_567)
        );
        assert_eq!(binary_decimal(&numeric(-1, 0x4000, &[500]), 12, 2), Ok(-5));
        assert_eq!(binary_decimal(&numeric(0, 0, &[]), 12, 2), Ok(0));
        assert_eq!(binary_decimal(&numeric(5, 0, &[1]), 38, 0), Ok(POW10[20]));
        assert_eq!(
            binary_decimal(
                &numeric(5, 0, &[12, 3456, 7890, 1234, 5678, 9012, 3400]),
                30,
                2
            ),
            Ok(123_456_789_012_345_678_901_234)
        );
        // Out of range, more fraction than the scale, NaN, cut short.
        assert!(binary_decimal(&numeric(3, 0, &[1]), 12, 2).is_err());
        assert!(binary_decimal(&numeric(-1, 0, &[5]), 12, 2).is_err());
        let nan = binary_decimal(&numeric(0, 0xC000, &[]), 12, 2).unwrap_err();
        assert!(nan.contains("NaN"), "{nan}");
        assert!(binary_decimal(&[0, 1, 0, 0], 12, 2).is_err());
        let mut column = Column::new(&DataType::Decimal128(12, 2)).unwrap();
        column.push_binary(Some(&numeric(0, 0, &[3]))).unwrap();
        column.push_binary(None).unwrap();
        let column = column.finish();
        let column = column.as_primitive::<arrow_array::types::Decimal128Type>();
        assert_eq!(column.value(0), 300);
        assert!(arrow_array::Array::is_null(column, 1));
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(parse_date("1970-01-02"), Ok(1));
        assert_eq!(parse_date("1969-12-31"), Ok(-1));
        assert_eq!(parse_date("2000-03-01"), Ok(11_017));
        assert_eq!(parse_date("0001-01-01 BC"), Ok(-719_528));
        assert_eq!(
            parse_timestamp("1970-01-01 00:00:01.5", false),
            Ok(1_500_000)
        );
        assert_eq!(parse_timestamp("1970-01-01 01:00:00+01", true), Ok(0));
        assert_eq!(
            parse_timestamp("1970-01-01 00:00:00-05:30", true),
            Ok(19_800_000_000)
        );
        assert!(parse_timestamp("1970-01-01", false).is_err());
    }

    #[test]
    fn arrays() {
        assert_eq!(
            split_array(r#"{1,NULL,"a \"b\"","NULL"}"#).unwrap(),
            vec![
                Some("1".into()),
                None,
                Some("a \"b\"".into()),
                Some("NULL".into())
            ]
        );
        assert_eq!(split_array("{}").unwrap(), Vec::<Option<String>>::new());
        assert_eq!(
            split_array("[0:1]={7,8}").unwrap(),
            vec![Some("7".into()), Some("8".into())]
        );
        assert!(
            split_array("{{1,2},{3,4}}")
                .unwrap_err()
                .contains("multi-dimensional")
        );
    }
}
