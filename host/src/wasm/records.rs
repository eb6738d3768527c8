//! JSON records into Arrow: what the host does for a connector that exports
//! `sluice:connector/records` (WIT 0.3.0), written where no Arrow library
//! runs. A stream's columns come from its JSON Schema, or are inferred from
//! its first batch; each batch of newline-delimited JSON objects is decoded
//! by the code that reads JSON files and Kafka values
//! ([`sluice_formats::objects`]), so a record means the same wherever it
//! came from.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::Value;
use sluice_formats::objects::{Mode, Record, decode_objects, decode_whole, infer_fields};

/// The columns a stream's JSON Schema declares (see the WIT's
/// `records.stream.json-schema`), in the order of its `properties`.
pub fn declared(json_schema: &str) -> Result<SchemaRef, String> {
    let root: Node = serde_json::from_str(json_schema)
        .map_err(|e| format!("its json-schema is not a JSON Schema object: {e}"))?;
    if !root.is(&["object"]) && root.kind().is_some() {
        return Err("its json-schema must describe an object (\"type\": \"object\")".into());
    }
    let properties = root
        .properties
        .filter(|p| !p.0.is_empty())
        .ok_or("its json-schema declares no properties (give them, or no json-schema at all to have the columns inferred)")?;
    Ok(Arc::new(Schema::new(fields(properties)?)))
}

/// Columns inferred from the records of a first batch, as a JSON file's are
/// inferred from a sample.
pub fn inferred(records: &str) -> Result<SchemaRef, Bad> {
    let values = lines(records)
        .map(|(line, text)| parse(text).map_err(|reason| Bad { line, reason }))
        .collect::<Result<Vec<_>, _>>()?;
    let fields = infer_fields(&values, true).map_err(|e| Bad {
        line: 1,
        reason: e.to_string(),
    })?;
    Ok(Arc::new(Schema::new(fields)))
}

/// A record that could not be read: its line in the batch, and why.
#[derive(Debug, PartialEq)]
pub struct Bad {
    /// 1-based.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Decodes a batch of newline-delimited JSON objects into `schema`'s
/// columns. A string column takes any value (a number, an object) as its
/// JSON text; a key `schema` lacks, a value of the wrong type or a line
/// that is not an object fails the batch.
pub fn decode(records: &str, schema: &SchemaRef) -> Result<RecordBatch, Bad> {
    // The files connector's fast path first: the whole batch in one pass of
    // arrow-json's decoder, checked strictly; anything it will not take
    // (a key the columns lack, a value as text, a bad line) is read record
    // by record below, which says what and where.
    let values: Vec<Option<&[u8]>> = lines(records).map(|(_, l)| Some(l.as_bytes())).collect();
    if let Some(batch) = decode_whole(schema, false, &values) {
        return Ok(batch);
    }
    let names: HashSet<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut rows = Vec::new();
    let mut at = Vec::new();
    for (line, text) in lines(records) {
        let mut value = parse(text).map_err(|reason| Bad { line, reason })?;
        if let Some(key) = value
            .as_object()
            .and_then(|o| o.keys().find(|k| !names.contains(k.as_str())))
        {
            return Err(Bad {
                line,
                reason: format!(
                    "the record has a key '{key}' the stream's columns lack; declare it in the stream's json-schema"
                ),
            });
        }
        as_text(&mut value, &DataType::Struct(schema.fields().clone()));
        rows.push(Record {
            value: Ok(value),
            text: String::new(),
        });
        at.push(line);
    }
    let decoded = decode_objects(schema, false, false, Mode::FailFast, rows).map_err(|e| Bad {
        line: at.first().copied().unwrap_or(1),
        reason: e.to_string(),
    })?;
    if let Some((i, reason)) = decoded
        .bad
        .into_iter()
        .enumerate()
        .find_map(|(i, b)| b.map(|b| (i, b)))
    {
        return Err(Bad {
            line: at[i],
            reason,
        });
    }
    Ok(decoded.data)
}

/// The non-blank lines of `records`, numbered from 1.
fn lines(records: &str) -> impl Iterator<Item = (usize, &str)> {
    records
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
}

/// One record: a JSON object.
fn parse(text: &str) -> Result<Value, String> {
    match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("a record must be a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// Replaces each value that `ty` says is a string, but is not one, by its
/// JSON text.
fn as_text(value: &mut Value, ty: &DataType) {
    match (value, ty) {
        (Value::Null | Value::String(_), _) => {}
        (v, DataType::Utf8) => *v = Value::String(v.to_string()),
        (Value::Object(map), DataType::Struct(fields)) => {
            for f in fields {
                if let Some(v) = map.get_mut(f.name()) {
                    as_text(v, f.data_type());
                }
            }
        }
        (Value::Array(items), DataType::List(item)) => {
            for v in items {
                as_text(v, item.data_type());
            }
        }
        _ => {}
    }
}

/// The part of a JSON Schema that decides a column's type.
#[derive(Deserialize)]
struct Node {
    #[serde(rename = "type")]
    ty: Option<Types>,
    format: Option<String>,
    properties: Option<Ordered>,
    items: Option<Box<Node>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Types {
    One(String),
    Many(Vec<String>),
}

impl Node {
    /// Its one type other than `null`, if it has exactly one.
    fn kind(&self) -> Option<&str> {
        let mut kinds: Vec<&str> = match &self.ty {
            Some(Types::One(t)) => vec![t.as_str()],
            Some(Types::Many(ts)) => ts.iter().map(String::as_str).collect(),
            None => vec![],
        };
        kinds.retain(|k| *k != "null");
        match kinds.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    fn is(&self, kinds: &[&str]) -> bool {
        self.kind().is_some_and(|k| kinds.contains(&k))
    }

    fn data_type(self) -> Result<DataType, String> {
        Ok(match (self.kind(), self.format.as_deref()) {
            (Some("integer"), _) => DataType::Int64,
            (Some("number"), _) => DataType::Float64,
            (Some("boolean"), _) => DataType::Boolean,
            (Some("string"), Some("date-time")) => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            (Some("string"), Some("date")) => DataType::Date32,
            (Some("array"), _) => {
                let item = match self.items {
                    Some(item) => item.data_type()?,
                    None => DataType::Utf8,
                };
                DataType::List(Arc::new(Field::new("item", item, true)))
            }
            (Some("object"), _) => match self.properties {
                Some(p) if !p.0.is_empty() => DataType::Struct(Fields::from(fields(p)?)),
                _ => DataType::Utf8,
            },
            _ => DataType::Utf8,
        })
    }
}

fn fields(properties: Ordered) -> Result<Vec<Field>, String> {
    properties
        .0
        .into_iter()
        .map(|(name, node)| {
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(format!(
                    "its json-schema has a property named {name:?}, which cannot name a column"
                ));
            }
            Ok(Field::new(name, node.data_type()?, true))
        })
        .collect()
}

/// A JSON object's entries in the order they are written (what a schema's
/// `properties` is, when its order is the columns').
struct Ordered(Vec<(String, Node)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of property schemas")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};

    use super::*;

    const SCHEMA: &str = r#"{"type": "object", "properties": {
        "id": {"type": "integer"},
        "message": {"type": ["null", "string"]},
        "at": {"type": "string", "format": "date-time"},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "extra": {}
    }}"#;

    #[test]
    fn a_json_schema_declares_the_columns_in_its_order() {
        let schema = declared(SCHEMA).unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "message", "at", "score", "tags", "extra"]);
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        assert!(matches!(
            schema.field(2).data_type(),
            DataType::Timestamp(TimeUnit::Microsecond, Some(_))
        ));
        assert!(matches!(schema.field(4).data_type(), DataType::List(_)));
        assert_eq!(schema.field(5).data_type(), &DataType::Utf8);
    }

    #[test]
    fn records_decode_into_the_declared_columns() {
        let schema = declared(SCHEMA).unwrap();
        let batch = decode(
            "{\"id\": 1, \"message\": \"hi\", \"at\": \"2026-01-02T03:04:05Z\", \"score\": 0.5, \"tags\": [\"a\"], \"extra\": {\"k\": [1]}}\n\n{\"id\": 2}\n",
            &schema,
        )
        .unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(
            batch.column(0).as_primitive::<Int64Type>().values(),
            &[1, 2]
        );
        assert_eq!(
            batch
                .column(2)
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            1_767_323_045_000_000
        );
        assert_eq!(batch.column(3).as_primitive::<Float64Type>().value(0), 0.5);
        assert_eq!(batch.column(5).as_string::<i32>().value(0), r#"{"k":[1]}"#);
        assert!(batch.column(1).is_null(1));
    }

    #[test]
    fn what_does_not_fit_fails_naming_the_line() {
        let schema = declared(SCHEMA).unwrap();
        let bad = decode("{\"id\": 1}\n{\"id\": \"two\"}\n", &schema).unwrap_err();
        assert_eq!(bad.line, 2);
        assert!(bad.reason.contains("id"), "{bad}");
        let bad = decode("{\"id\": 1}\n{\"id\": 2, \"new\": 3}\n", &schema).unwrap_err();
        assert_eq!(bad.line, 2);
        assert!(bad.reason.contains("'new'"), "{bad}");
        let bad = decode("{\"id\": 1}\n[1]\n", &schema).unwrap_err();
        assert!(bad.reason.contains("JSON object"), "{bad}");
        let bad = decode("{\"id\": 1,}\n", &schema).unwrap_err();
        assert!(bad.reason.contains("invalid JSON"), "{bad}");
    }

    #[test]
    fn columns_are_inferred_from_a_first_batch() {
        let schema = inferred("{\"id\": 1, \"name\": \"a\"}\n{\"id\": 2, \"ok\": true}\n").unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "name", "ok"]);
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(2).data_type(), &DataType::Boolean);
    }

    #[test]
    fn a_schema_that_declares_nothing_is_refused() {
        assert!(
            declared(r#"{"type": "array"}"#)
                .unwrap_err()
                .contains("object")
        );
        assert!(
            declared(r#"{"type": "object"}"#)
                .unwrap_err()
                .contains("no properties")
        );
        assert!(declared("[1]").is_err());
    }
}
