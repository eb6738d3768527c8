//! JSON objects into Arrow rows, record by record: schema inference from a
//! sample, and decoding that rescues (or reports) what does not fit rather
//! than failing the batch. The files connector's careful JSON path and the
//! Kafka connector's `valueFormat=json` share it, so a record means the
//! same whether it came from a file's line or a message's value.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_json::reader::{ReaderBuilder, infer_json_schema_from_iterator};
use arrow_schema::{ArrowError, DataType, Field, Fields, SchemaRef};
use serde_json::{Map, Value};

/// What to do with a record that does not parse or does not fit the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fail the read, naming the record and reason.
    FailFast,
    /// Keep the record; what does not fit goes to the rescued data column.
    Permissive,
    /// Drop the record and count it.
    DropMalformed,
}

impl Mode {
    /// Parses option `key`'s `value` (any case).
    pub fn parse(key: &str, value: &str) -> Result<Mode, String> {
        match value.to_ascii_uppercase().as_str() {
            "FAILFAST" => Ok(Mode::FailFast),
            "PERMISSIVE" => Ok(Mode::Permissive),
            "DROPMALFORMED" => Ok(Mode::DropMalformed),
            _ => Err(format!(
                "option '{key}' must be FAILFAST, PERMISSIVE or DROPMALFORMED, got '{value}'"
            )),
        }
    }
}

/// What a FAILFAST error adds: how to load past such records.
pub const FAILFAST_ADVICE: &str = "mode=FAILFAST; use mode=PERMISSIVE to rescue such values or mode=DROPMALFORMED to drop such rows";

/// The key under which a malformed record's text is rescued.
pub const MALFORMED_RECORD: &str = "_malformed_record";

/// Collects per-row rescued values and turns them into the rescued column.
#[derive(Default)]
pub struct Rescue {
    rows: Vec<Option<Map<String, Value>>>,
    count: u64,
}

impl Rescue {
    /// Starts a column of `rows` rows, all null.
    pub fn new(rows: usize) -> Self {
        Rescue {
            rows: vec![None; rows],
            count: 0,
        }
    }

    /// Records `value` of `column` for `row`.
    pub fn put(&mut self, row: usize, column: &str, value: Value) {
        let entry = self.rows[row].get_or_insert_with(|| {
            self.count += 1;
            Map::new()
        });
        entry.insert(column.to_string(), value);
    }

    /// Rows with something rescued.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The rescued column: each row's rescued values as one JSON object, to
    /// which `source` adds where the row came from (a file, an offset).
    pub fn finish(self, mut source: impl FnMut(usize, &mut Map<String, Value>)) -> ArrayRef {
        let values = self.rows.into_iter().enumerate().map(|(r, row)| {
            row.map(|mut m| {
                source(r, &mut m);
                Value::Object(m).to_string()
            })
        });
        Arc::new(StringArray::from_iter(values))
    }
}

/// Infers data columns from sampled records; types Delta cannot store
/// (all-null columns) become strings, and without `infer_types` every leaf
/// does.
pub fn infer_fields(values: &[Value], infer_types: bool) -> Result<Vec<Field>, ArrowError> {
    let schema = infer_json_schema_from_iterator(values.iter().map(|v| Ok(v.clone())))?;
    Ok(schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), settle(f.data_type(), infer_types), true))
        .collect())
}

fn settle(t: &DataType, infer: bool) -> DataType {
    match t {
        DataType::Null => DataType::Utf8,
        DataType::Struct(fields) => DataType::Struct(Fields::from(
            fields
                .iter()
                .map(|f| Field::new(f.name(), settle(f.data_type(), infer), true))
                .collect::<Vec<_>>(),
        )),
        DataType::List(item) => DataType::List(Arc::new(Field::new(
            item.name(),
            settle(item.data_type(), infer),
            true,
        ))),
        _ if !infer => DataType::Utf8,
        other => other.clone(),
    }
}

/// A key of `v` (nested too) that cannot name a column: empty, or holding a
/// control character.
pub fn unnamable_key(v: &Value) -> Option<&str> {
    match v {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.is_empty() || k.chars().any(char::is_control) {
                Some(k.as_str())
            } else {
                unnamable_key(v)
            }
        }),
        Value::Array(items) => items.iter().find_map(unnamable_key),
        _ => None,
    }
}

/// How deeply objects and arrays nest in `v` (a scalar: 0).
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// One record to decode.
pub struct Record {
    /// The parsed value, or why the record could not be parsed (the whole
    /// reason, e.g. "invalid JSON: ...").
    pub value: Result<Value, String>,
    /// Its text, kept for the rescued column if it is malformed.
    pub text: String,
}

/// Records decoded into data columns.
pub struct Decoded {
    /// The data columns, one row per record (a malformed one all null).
    pub data: RecordBatch,
    /// What was rescued, when rescue is on: keys the schema lacks, values
    /// of the wrong type, and in PERMISSIVE mode malformed records' text.
    pub rescue: Option<Rescue>,
    /// Per row, why it is malformed (not an object, invalid JSON, or with
    /// no rescued column a value of the wrong type).
    pub bad: Vec<Option<String>>,
    /// Rows with keys the schema lacks.
    pub with_new_columns: usize,
}

fn decode_rows(
    schema: &SchemaRef,
    coerce: bool,
    rows: &[Map<String, Value>],
) -> Result<RecordBatch, ArrowError> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .with_coerce_primitive(coerce)
        .build_decoder()?;
    decoder.serialize(rows)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

/// Decodes JSON `values` (one object each) into the data columns `schema`
/// in one pass of arrow-json's tape decoder, checked strictly
/// ([`crate::json::Checker`]) on the way: the fast path for a batch where
/// nothing needs handling. `None` when anything would: a value that is
/// missing, malformed, not an object or spread over lines, a key the
/// schema lacks, a value of the wrong type, a surrogate escape (which
/// arrow-json 59 decodes wrongly); [`decode_objects`] then reads the batch
/// record by record and says what and where. `coerce` as there.
pub fn decode_whole(
    schema: &SchemaRef,
    coerce: bool,
    values: &[Option<&[u8]>],
) -> Option<RecordBatch> {
    let size: usize = values.iter().map(|v| v.map_or(0, <[u8]>::len) + 1).sum();
    let mut buf = Vec::with_capacity(size);
    for v in values {
        let v = (*v).filter(|v| !v.is_empty())?;
        if memchr::memchr2(b'\n', b'\r', v).is_some() {
            return None;
        }
        buf.extend_from_slice(v);
        buf.push(b'\n');
    }
    if crate::json::surrogate_escape(&buf) {
        return None;
    }
    let mut check = crate::json::Checker::default();
    check.feed(&buf).and_then(|()| check.finish()).ok()?;
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(values.len().max(1))
        .with_strict_mode(true)
        .with_coerce_primitive(coerce)
        .build_decoder()
        .ok()?;
    if decoder.decode(&buf).ok()? != buf.len() {
        return None;
    }
    let data = decoder.flush().ok()??;
    (data.num_rows() == values.len()).then_some(data)
}

/// Decodes `records` into the data columns `schema`, record by record: keys
/// the schema lacks and values that do not fit are rescued (with `rescue`)
/// or left out, and a record that is not a JSON object is marked bad (and
/// in PERMISSIVE mode its text rescued). `coerce` reads every scalar as
/// text (no type inference). The caller applies FAILFAST and DROPMALFORMED
/// to the bad rows, since it knows where each record came from.
pub fn decode_objects(
    schema: &SchemaRef,
    coerce: bool,
    rescue: bool,
    mode: Mode,
    records: Vec<Record>,
) -> Result<Decoded, ArrowError> {
    let names: HashSet<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut rows = Vec::with_capacity(records.len());
    let mut bad = Vec::with_capacity(records.len());
    let mut texts = Vec::with_capacity(records.len());
    for r in records {
        let (map, reason) = match r.value {
            Ok(Value::Object(map)) => (map, None),
            Ok(_) => (
                Map::new(),
                Some("a JSON record must be an object".to_string()),
            ),
            Err(e) => (Map::new(), Some(e)),
        };
        texts.push(reason.as_ref().map(|_| r.text));
        bad.push(reason);
        rows.push(map);
    }
    let mut rescued = rescue.then(|| Rescue::new(rows.len()));

    // Fields not in the schema are rescued (or ignored without rescue).
    let mut with_new_columns = 0;
    for (r, row) in rows.iter_mut().enumerate() {
        let unknown: Vec<String> = row
            .keys()
            .filter(|k| !names.contains(k.as_str()))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            with_new_columns += 1;
        }
        for k in unknown {
            if let Some(v) = row.remove(&k)
                && let Some(rescued) = rescued.as_mut()
            {
                rescued.put(r, &k, v);
            }
        }
    }

    let data = match decode_rows(schema, coerce, &rows) {
        Ok(data) => data,
        Err(_) => {
            // Find, per row and then per field, what does not fit the schema.
            for (r, row) in rows.iter_mut().enumerate() {
                if decode_rows(schema, coerce, std::slice::from_ref(row)).is_ok() {
                    continue;
                }
                let keys: Vec<String> = row.keys().cloned().collect();
                for k in keys {
                    let mut one = Map::new();
                    one.insert(k.clone(), row[&k].clone());
                    if let Err(e) = decode_rows(schema, coerce, &[one]) {
                        let v = row.remove(&k).unwrap_or(Value::Null);
                        match rescued.as_mut() {
                            Some(rescued) => rescued.put(r, &k, v),
                            None => {
                                if bad[r].is_none() {
                                    bad[r] = Some(format!("column '{k}': {e}"));
                                }
                            }
                        }
                    }
                }
            }
            decode_rows(schema, coerce, &rows)?
        }
    };
    if mode == Mode::Permissive
        && let Some(rescued) = rescued.as_mut()
    {
        for (r, text) in texts.into_iter().enumerate() {
            if let Some(text) = text {
                rescued.put(r, MALFORMED_RECORD, Value::String(text));
            }
        }
    }
    Ok(Decoded {
        data,
        rescue: rescued,
        bad,
        with_new_columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_schema::Schema;

    fn record(text: &str) -> Record {
        Record {
            value: serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}")),
            text: text.to_string(),
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]))
    }

    #[test]
    fn new_keys_and_wrong_types_are_rescued_and_malformed_records_kept() {
        let records = vec![
            record(r#"{"a": 1}"#),
            record(r#"{"a": "x", "b": true}"#),
            record("{nope"),
            record("[1]"),
        ];
        let d = decode_objects(&schema(), false, true, Mode::Permissive, records).unwrap();
        assert_eq!(d.data.num_rows(), 4);
        assert_eq!(d.with_new_columns, 1);
        assert!(d.bad[0].is_none() && d.bad[1].is_none());
        assert!(d.bad[2].as_deref().unwrap().starts_with("invalid JSON"));
        assert_eq!(d.bad[3].as_deref(), Some("a JSON record must be an object"));
        let rescued = d.rescue.unwrap().finish(|r, m| {
            m.insert("_row".into(), Value::from(r));
        });
        let rescued = rescued.as_any().downcast_ref::<StringArray>().unwrap();
        assert!(rescued.is_null(0));
        let one: Value = serde_json::from_str(rescued.value(1)).unwrap();
        assert_eq!(one, serde_json::json!({"a": "x", "b": true, "_row": 1}));
        let two: Value = serde_json::from_str(rescued.value(2)).unwrap();
        assert_eq!(two[MALFORMED_RECORD], "{nope");
    }

    #[test]
    fn the_whole_batch_decodes_at_once_only_when_nothing_needs_handling() {
        let whole = |values: &[Option<&str>]| {
            let values: Vec<Option<&[u8]>> = values.iter().map(|v| v.map(str::as_bytes)).collect();
            decode_whole(&schema(), false, &values)
        };
        let data = whole(&[Some(r#"{"a": 1}"#), Some(r#"{"a": null}"#)]).unwrap();
        assert_eq!(data.num_rows(), 2);
        for bad in [
            r#"{"a": 1, "b": 2}"#,
            r#"{"a": "x"}"#,
            r#"{"a": 01}"#,
            "[1]",
            "{\"a\":\n1}",
            r#"{"a": 1} {"a": 2}"#,
            "",
        ] {
            assert!(whole(&[Some(r#"{"a": 1}"#), Some(bad)]).is_none(), "{bad}");
        }
        assert!(whole(&[Some(r#"{"a": 1}"#), None]).is_none());
    }

    #[test]
    fn without_rescue_a_wrong_type_marks_the_row_bad() {
        let d = decode_objects(
            &schema(),
            false,
            false,
            Mode::FailFast,
            vec![record(r#"{"a": 1}"#), record(r#"{"a": "x"}"#)],
        )
        .unwrap();
        assert!(d.bad[0].is_none());
        assert!(d.bad[1].as_deref().unwrap().starts_with("column 'a'"));
        assert!(d.rescue.is_none());
    }

    #[test]
    fn inference_settles_nulls_and_measures_depth() {
        let values: Vec<Value> = [r#"{"a": null, "b": {"c": [1]}}"#]
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        let fields = infer_fields(&values, true).unwrap();
        assert_eq!(fields[0].data_type(), &DataType::Utf8);
        assert_eq!(depth(&values[0]), 3);
        assert_eq!(unnamable_key(&serde_json::json!({"x": {"": 1}})), Some(""));
    }

    #[test]
    fn doubles_read_record_by_record_round_as_the_fast_paths_do() {
        // serde_json without float_roundtrip read this one ulp off.
        let text = "1.511352695567566e189";
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v.as_f64(), Some(text.parse::<f64>().unwrap()));
    }
}
