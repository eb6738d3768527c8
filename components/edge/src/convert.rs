//! Pushed records → one Arrow record batch → Arrow IPC (stream format).
//!
//! Pure logic, with no I/O, so it runs (and is tested) natively too.

use std::io::Cursor;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde_json::Value;
use serde_json::value::RawValue;

/// How the pushed body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One JSON object or a top-level array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// CSV with a header line.
    Csv,
}

impl Encoding {
    /// The encoding a `Content-Type` names, if it is one this function takes.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Some(Encoding::Json),
            "application/x-ndjson" | "application/jsonl" => Some(Encoding::Ndjson),
            "text/csv" => Some(Encoding::Csv),
            _ => None,
        }
    }
}

/// Why a pushed batch was refused: an HTTP status and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 400, 413, 415 or 422.
    pub status: u16,
    /// What is wrong, for the caller.
    pub message: String,
}

impl Rejection {
    fn bad(message: impl Into<String>) -> Self {
        Rejection {
            status: 400,
            message: message.into(),
        }
    }

    fn unprocessable(message: impl Into<String>) -> Self {
        Rejection {
            status: 422,
            message: message.into(),
        }
    }
}

/// What the batch must satisfy.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Fields every record must have, not null.
    pub required: Vec<String>,
    /// Most records one push may hold.
    pub max_records: usize,
}

/// A validated batch.
#[derive(Debug)]
pub struct Converted {
    /// The batch, one row per record.
    pub batch: RecordBatch,
}

impl Converted {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The batch in the Arrow IPC stream format.
    pub fn to_ipc(&self) -> Result<Vec<u8>, Rejection> {
        let internal = |e: arrow_schema::ArrowError| Rejection {
            status: 500,
            message: format!("encoding Arrow IPC: {e}"),
        };
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &self.batch.schema())
            .map_err(internal)?;
        writer.write(&self.batch).map_err(internal)?;
        writer.finish().map_err(internal)?;
        writer.into_inner().map_err(internal)
    }

    /// The batch as newline-delimited JSON (for a landing prefix that a
    /// JSON stream pipeline reads).
    pub fn to_ndjson(&self) -> Result<Vec<u8>, Rejection> {
        let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
        writer
            .write(&self.batch)
            .and_then(|_| writer.finish())
            .map_err(|e| Rejection {
                status: 500,
                message: format!("encoding JSON: {e}"),
            })?;
        Ok(writer.into_inner())
    }
}

/// Parses, validates and converts `body`.
pub fn convert(encoding: Encoding, body: &[u8], rules: &Rules) -> Result<Converted, Rejection> {
    let text = std::str::from_utf8(body)
        .map_err(|e| Rejection::bad(format!("the body is not UTF-8: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(Rejection::bad("the body holds no records"));
    }
    let batch = match encoding {
        Encoding::Json | Encoding::Ndjson => {
            let records = json_records(encoding, text, rules)?;
            check_required(&records, &rules.required)?;
            json_batch(&records)?
        }
        Encoding::Csv => {
            let batch = csv_batch(text)?;
            check_count(batch.num_rows(), rules)?;
            check_required_columns(&batch, &rules.required)?;
            batch
        }
    };
    Ok(Converted { batch })
}

fn check_count(n: usize, rules: &Rules) -> Result<(), Rejection> {
    if rules.max_records > 0 && n > rules.max_records {
        return Err(Rejection {
            status: 413,
            message: format!(
                "{n} records in one push; send at most {} (split the batch)",
                rules.max_records
            ),
        });
    }
    Ok(())
}

/// The records of a JSON body: objects, numbered from 1 in errors. Too
/// many records are refused before any is parsed into values, which costs
/// far more memory than the text.
fn json_records(encoding: Encoding, text: &str, rules: &Rules) -> Result<Vec<Value>, Rejection> {
    let not_json = |e: serde_json::Error| {
        Rejection::bad(format!(
            "the body is not JSON ({e}); send an object, an array of objects, or application/x-ndjson"
        ))
    };
    let values: Vec<Value> = if encoding == Encoding::Json {
        let raw: Vec<&RawValue> = if text.trim_start().starts_with('[') {
            serde_json::from_str(text).map_err(not_json)?
        } else {
            vec![serde_json::from_str(text).map_err(not_json)?]
        };
        check_count(raw.len(), rules)?;
        raw.into_iter()
            .map(|r| serde_json::from_str(r.get()).map_err(not_json))
            .collect::<Result<_, _>>()?
    } else {
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .collect();
        check_count(lines.len(), rules)?;
        lines
            .into_iter()
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| Rejection::bad(format!("line {}: not JSON: {e}", i + 1)))
            })
            .collect::<Result<_, _>>()?
    };
    if values.is_empty() {
        return Err(Rejection::bad("the body holds no records"));
    }
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_object()) {
        return Err(Rejection::bad(format!(
            "record {} is {}, not a JSON object",
            i + 1,
            kind(v)
        )));
    }
    Ok(values)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_required(records: &[Value], required: &[String]) -> Result<(), Rejection> {
    for (i, r) in records.iter().enumerate() {
        for f in required {
            if r.get(f).is_none_or(Value::is_null) {
                return Err(Rejection::unprocessable(format!(
                    "record {} lacks required field '{f}'",
                    i + 1
                )));
            }
        }
    }
    Ok(())
}

fn check_required_columns(batch: &RecordBatch, required: &[String]) -> Result<(), Rejection> {
    for f in required {
        let Some(col) = batch.column_by_name(f) else {
            return Err(Rejection::unprocessable(format!(
                "the CSV header lacks required column '{f}'"
            )));
        };
        if col.null_count() > 0 {
            let row = (0..col.len()).find(|&i| col.is_null(i)).unwrap_or(0);
            return Err(Rejection::unprocessable(format!(
                "record {} has no value for required column '{f}'",
                row + 1
            )));
        }
    }
    Ok(())
}

/// Infers a schema from every record (fields in first-seen order; a field
/// null everywhere becomes a string) and decodes the records against it.
fn json_batch(values: &[Value]) -> Result<RecordBatch, Rejection> {
    let inferred = arrow_json::reader::infer_json_schema_from_iterator(values.iter().map(Ok))
        .map_err(|e| Rejection::unprocessable(format!("the records disagree on types: {e}")))?;
    let schema = Arc::new(nulls_as_strings(&inferred));
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(values.len().max(1))
        .build_decoder()
        .map_err(|e| Rejection::unprocessable(e.to_string()))?;
    decoder
        .serialize(values)
        .map_err(|e| Rejection::unprocessable(format!("the records do not fit one schema: {e}")))?;
    Ok(decoder
        .flush()
        .map_err(|e| Rejection::unprocessable(e.to_string()))?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

fn nulls_as_strings(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Null => Field::new(f.name(), DataType::Utf8, true),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new(fields)
}

fn csv_batch(text: &str) -> Result<RecordBatch, Rejection> {
    let format = arrow_csv::reader::Format::default().with_header(true);
    let (schema, _) = format
        .infer_schema(Cursor::new(text.as_bytes()), None)
        .map_err(|e| Rejection::bad(format!("the CSV does not parse: {e}")))?;
    let schema: SchemaRef = Arc::new(nulls_as_strings(&schema));
    let reader = arrow_csv::ReaderBuilder::new(schema.clone())
        .with_format(format)
        .with_batch_size(8192)
        .build(Cursor::new(text.as_bytes()))
        .map_err(|e| Rejection::bad(format!("the CSV does not parse: {e}")))?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| Rejection::bad(format!("the CSV does not parse: {e}")))?;
    concat(&schema, &batches)
}

fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, Rejection> {
    match batches {
        [] => Err(Rejection::bad("the CSV holds a header but no records")),
        [one] => Ok(one.clone()),
        many => arrow_select::concat::concat_batches(schema, many)
            .map_err(|e| Rejection::unprocessable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array, StringArray};

    fn rules() -> Rules {
        Rules {
            required: vec!["id".into()],
            max_records: 10,
        }
    }

    #[test]
    fn json_array_becomes_one_typed_batch() {
        let c = convert(
            Encoding::Json,
            br#"[{"id": 1, "name": "a", "gone": null}, {"id": 2, "name": null, "gone": null}]"#,
            &rules(),
        )
        .unwrap();
        let b = &c.batch;
        assert_eq!(b.num_rows(), 2);
        let ids = b.column_by_name("id").unwrap();
        let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values(), &[1, 2]);
        assert_eq!(
            b.schema().field_with_name("gone").unwrap().data_type(),
            &DataType::Utf8
        );
        let back = arrow_ipc::reader::StreamReader::try_new(Cursor::new(c.to_ipc().unwrap()), None)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(&back, b);
    }

    #[test]
    fn ndjson_and_csv_convert() {
        let c = convert(Encoding::Ndjson, b"{\"id\":1}\n\n{\"id\":2}\n", &rules()).unwrap();
        assert_eq!(c.rows(), 2);
        let c = convert(Encoding::Csv, b"id,name\n1,a\n2,\"b,c\"\n", &rules()).unwrap();
        let names = c.batch.column_by_name("name").unwrap();
        let names = names.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(names.value(1), "b,c");
        assert_eq!(
            String::from_utf8(c.to_ndjson().unwrap())
                .unwrap()
                .lines()
                .count(),
            2
        );
    }

    #[test]
    fn bad_batches_say_what_to_fix() {
        let r = |e, b: &[u8]| convert(e, b, &rules()).unwrap_err();
        assert_eq!(
            r(Encoding::Json, b"[1]").message,
            "record 1 is a number, not a JSON object"
        );
        assert_eq!(r(Encoding::Json, b"{").status, 400);
        let e = r(Encoding::Json, br#"[{"id": 1}, {"name": "x"}]"#);
        assert_eq!(
            (e.status, e.message.as_str()),
            (422, "record 2 lacks required field 'id'")
        );
        let e = r(Encoding::Ndjson, b"{\"id\":1}\nnope\n");
        assert!(e.message.starts_with("line 2: not JSON"), "{}", e.message);
        let e = r(Encoding::Json, br#"[{"id": 1}, {"id": "x"}]"#);
        assert_eq!(e.status, 422, "{}", e.message);
        let many: String = (0..11).map(|i| format!("{{\"id\":{i}}}\n")).collect();
        assert_eq!(r(Encoding::Ndjson, many.as_bytes()).status, 413);
        let array = format!("[{}]", vec!["{\"id\": 1}"; 11].join(","));
        assert_eq!(r(Encoding::Json, array.as_bytes()).status, 413);
        assert_eq!(r(Encoding::Csv, b"name\nx\n").status, 422);
        assert_eq!(r(Encoding::Csv, b"id\n").status, 400);
        assert_eq!(r(Encoding::Json, b"  ").status, 400);
    }
}
