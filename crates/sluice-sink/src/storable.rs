//! What a Delta table can store, decided before any data file is written.
//!
//! Arrow has types Delta has not. Those that widen without loss are widened,
//! as Spark reads them (`uint8` → `short`, `uint16` → `int`, `uint32` →
//! `long`, `uint64` → `decimal(20,0)`, `float16` → `float`, a timestamp of
//! any unit → microseconds, in UTC if it had a zone, fixed-size binary →
//! binary, decimals of 32, 64 or 256 bits that fit → `decimal(p,s)`, null →
//! string); the rest are refused, each naming its column and what to cast it
//! to. Column names must be non-empty, free of control characters, and
//! unique among their siblings ignoring case (Delta resolves names so).
//! Every problem is reported at once.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, FieldRef, Fields, Schema, TimeUnit};

use crate::error::{Error, Result};

/// The schema a Delta table stores for data of `schema`, or every reason it
/// cannot store it.
pub fn delta_schema(schema: &Schema) -> Result<Schema> {
    let mut problems = Vec::new();
    let fields = fields(schema.fields(), "", &mut problems);
    if !problems.is_empty() {
        return Err(Error::Unstorable(problems));
    }
    Ok(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn fields(fields: &Fields, parent: &str, problems: &mut Vec<String>) -> Vec<FieldRef> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    fields
        .iter()
        .map(|f| {
            let path = if parent.is_empty() {
                f.name().clone()
            } else {
                format!("{parent}.{}", f.name())
            };
            let name = f.name();
            if name.is_empty() {
                problems.push(format!(
                    "a column of '{}' has an empty name; name it",
                    if parent.is_empty() { "the table" } else { parent }
                ));
            } else if name.chars().any(char::is_control) {
                problems.push(format!(
                    "column '{}' has a control character in its name, which no Delta reader accepts; rename it",
                    path.escape_debug()
                ));
            }
            if let Some(other) = seen.insert(name.to_lowercase(), name) {
                problems.push(format!(
                    "columns '{other}' and '{name}'{} differ only in case, and Delta's column names ignore case; rename one",
                    if parent.is_empty() { String::new() } else { format!(" of '{parent}'") }
                ));
            }
            let ty = data_type(f.data_type(), &path, problems);
            Arc::new(f.as_ref().clone().with_data_type(ty))
        })
        .collect()
}

fn child(f: &FieldRef, path: &str, problems: &mut Vec<String>) -> FieldRef {
    let ty = data_type(f.data_type(), path, problems);
    Arc::new(f.as_ref().clone().with_data_type(ty))
}

fn data_type(t: &DataType, path: &str, problems: &mut Vec<String>) -> DataType {
    let refuse = |problems: &mut Vec<String>, what: &str, hint: &str| {
        problems.push(format!(
            "column '{}' is {what}, which Delta cannot store; {hint}",
            path.escape_debug()
        ));
        t.clone()
    };
    let cast_hint = |to: &str| {
        format!("read it as {to} (with the files connector: -o schemaHints='`{path}` {to}')")
    };
    match t {
        DataType::Null => DataType::Utf8,
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 => DataType::Int64,
        DataType::UInt64 => DataType::Decimal128(20, 0),
        DataType::Float16 => DataType::Float32,
        DataType::Date64 => DataType::Date32,
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView | DataType::FixedSizeBinary(_) => DataType::Binary,
        DataType::Timestamp(_, None) => DataType::Timestamp(TimeUnit::Microsecond, None),
        DataType::Timestamp(_, Some(_)) => {
            // An Arrow timestamp with a zone is an instant: stored in UTC.
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => decimal(*p, *s, path, problems),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => decimal(*p, *s, path, problems),
        DataType::Dictionary(_, values) => data_type(values, path, problems),
        DataType::List(f) | DataType::FixedSizeList(f, _) => {
            DataType::List(child(f, &format!("{path}[]"), problems))
        }
        DataType::LargeList(f) => DataType::LargeList(child(f, &format!("{path}[]"), problems)),
        DataType::Struct(children) if children.is_empty() => refuse(
            problems,
            "a struct without fields",
            "leave it out of the data, or give it a field",
        ),
        DataType::Struct(children) => {
            DataType::Struct(Fields::from(fields(children, path, problems)))
        }
        DataType::Map(entries, sorted) => DataType::Map(child(entries, path, problems), *sorted),
        DataType::Time32(_) | DataType::Time64(_) => {
            refuse(problems, "a time of day", &cast_hint("string"))
        }
        DataType::Duration(_) => refuse(problems, "a duration", &cast_hint("bigint")),
        DataType::Interval(_) => refuse(problems, "an interval", &cast_hint("string")),
        DataType::Union(..) => refuse(problems, "a union", "send one type per column"),
        DataType::RunEndEncoded(..) | DataType::ListView(_) | DataType::LargeListView(_) => refuse(
            problems,
            &format!("{t}"),
            "send it as plain values or a list",
        ),
        other => other.clone(),
    }
}

fn decimal(p: u8, s: i8, path: &str, problems: &mut Vec<String>) -> DataType {
    if p == 0 || p > 38 || s < 0 || s as u8 > p {
        problems.push(format!(
            "column '{}' is decimal({p},{s}), and Delta stores decimals of precision 1 to 38 with a scale from 0 to the precision; read it as double or string (with the files connector: -o schemaHints='`{path}` double')",
            path.escape_debug()
        ));
        return DataType::Decimal128(p.clamp(1, 38), s.max(0));
    }
    DataType::Decimal128(p, s)
}

#[cfg(test)]
mod tests {
    use arrow_schema::Field;

    use super::*;

    fn one(t: DataType) -> Result<DataType> {
        let s = Schema::new(vec![Field::new("c", t, true)]);
        delta_schema(&s).map(|s| s.field(0).data_type().clone())
    }

    #[test]
    fn lossless_widenings_follow_spark() {
        assert_eq!(one(DataType::UInt8).unwrap(), DataType::Int16);
        assert_eq!(one(DataType::UInt16).unwrap(), DataType::Int32);
        assert_eq!(one(DataType::UInt32).unwrap(), DataType::Int64);
        assert_eq!(one(DataType::UInt64).unwrap(), DataType::Decimal128(20, 0));
        assert_eq!(one(DataType::Float16).unwrap(), DataType::Float32);
        assert_eq!(
            one(DataType::Timestamp(
                TimeUnit::Nanosecond,
                Some("+01:00".into())
            ))
            .unwrap(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(
            one(DataType::Decimal256(20, 2)).unwrap(),
            DataType::Decimal128(20, 2)
        );
        let nested = DataType::Struct(Fields::from(vec![Field::new("u", DataType::UInt8, true)]));
        assert_eq!(
            one(nested).unwrap(),
            DataType::Struct(Fields::from(vec![Field::new("u", DataType::Int16, true)]))
        );
    }

    #[test]
    fn what_cannot_be_stored_is_named_with_a_cast() {
        let s = Schema::new(vec![
            Field::new("t", DataType::Time64(TimeUnit::Microsecond), true),
            Field::new("d", DataType::Decimal256(50, 2), true),
            Field::new("ok", DataType::Int64, true),
            Field::new("ID", DataType::Int64, true),
            Field::new("id", DataType::Int64, true),
            Field::new("bad\0name", DataType::Int64, true),
        ]);
        let Err(Error::Unstorable(problems)) = delta_schema(&s) else {
            panic!("stored");
        };
        let text = problems.join("\n");
        assert!(text.contains("column 't' is a time of day"), "{text}");
        assert!(text.contains("schemaHints='`t` string'"), "{text}");
        assert!(text.contains("decimal(50,2)"), "{text}");
        assert!(text.contains("'ID' and 'id'"), "{text}");
        assert!(text.contains("bad\\0name"), "{text}");
        assert_eq!(problems.len(), 4, "{text}");
    }
}
