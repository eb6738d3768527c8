//! The data columns of values parsed into columns, inferred from a sample
//! of the values a batch reads by the files connector's rules (the shared
//! `sluice_formats`): types from up to [`SAMPLE_RECORDS`] values, JSON's as
//! for JSON files, CSV's by the same lattice as CSV files, all-null columns
//! as strings, `schemaHints` over inferred types.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, FieldRef};
use bytes::Bytes;
use serde_json::Value;
use sluice_connector_sdk::Error;
use sluice_formats::hints::apply_hints;
use sluice_formats::json::MAX_DEPTH;
use sluice_formats::kinds::{Kind, classify, kind_type, merge};
use sluice_formats::objects::{FAILFAST_ADVICE, depth, infer_fields, unnamable_key};

use crate::options::{CsvValues, Mode, ValueOptions};
use crate::records::csv_cells;

/// Values sampled when inferring the columns (as the files connector
/// samples per file).
pub const SAMPLE_RECORDS: usize = 10_000;

/// A sampled value and where it is.
pub struct Sampled {
    value: Option<Bytes>,
    place: String,
}

/// Adds the values of `batch` (rows as `valueFormat=raw` gives them) to
/// `out`, as `json` reads them (Debezium's events as their rows, without
/// tombstones).
pub fn collect(
    batch: &RecordBatch,
    json: Option<&ValueOptions>,
    out: &mut Vec<Sampled>,
) -> Result<(), Error> {
    let value = batch.column(1).as_binary::<i32>();
    let topic = batch.column(2).as_string::<i32>();
    let partition = batch.column(3).as_primitive::<Int32Type>();
    let offset = batch.column(4).as_primitive::<Int64Type>();
    let debezium = json.is_some_and(|j| j.debezium);
    for r in 0..batch.num_rows() {
        let place = format!(
            "topic '{}' partition {} offset {}",
            topic.value(r),
            partition.value(r),
            offset.value(r)
        );
        let raw = value.is_valid(r).then(|| value.value(r));
        let value = if debezium {
            match crate::envelope::row(raw, &place)? {
                // A tombstone is not a row.
                None => continue,
                row => row,
            }
        } else {
            raw.map(Bytes::copy_from_slice)
        };
        out.push(Sampled { value, place });
    }
    Ok(())
}

/// The data columns of `sampled`. Under FAILFAST a value that does not
/// parse (or could not make columns) fails, naming it; otherwise it is
/// left out of the sample and judged by the read.
pub fn fields(json: &ValueOptions, sampled: &[Sampled]) -> Result<Vec<FieldRef>, Error> {
    let inferred = match &json.csv {
        None => json_fields(json, sampled)?,
        Some(csv) => csv_fields(json, csv, sampled)?,
    };
    Ok(apply_hints(inferred, &json.hints)
        .into_iter()
        .map(Arc::new)
        .collect())
}

/// Fails under FAILFAST: `s` does not parse, for reason `why`.
fn judge(json: &ValueOptions, s: &Sampled, why: String) -> Result<(), Error> {
    if json.mode == Mode::FailFast {
        return Err(Error::Data(format!(
            "{}: {why} ({FAILFAST_ADVICE})",
            s.place
        )));
    }
    Ok(())
}

/// CSV values' columns `_c0`, `_c1`, ..., as wide as the widest value.
fn csv_fields(
    json: &ValueOptions,
    csv: &CsvValues,
    sampled: &[Sampled],
) -> Result<Vec<Field>, Error> {
    let mut kinds: Vec<Kind> = Vec::new();
    for s in sampled {
        let Some(bytes) = s.value.as_ref().filter(|b| !b.is_empty()) else {
            continue;
        };
        let cells = match csv_cells(bytes, csv) {
            Ok(cells) => cells,
            Err(why) => {
                judge(json, s, why)?;
                continue;
            }
        };
        if kinds.len() < cells.len() {
            kinds.resize(cells.len(), Kind::Null);
        }
        for (kind, cell) in kinds.iter_mut().zip(cells) {
            if let Some(cell) = cell {
                *kind = merge(*kind, classify(&cell));
            }
        }
    }
    Ok(kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let ty = if json.infer_types {
                kind_type(k)
            } else {
                DataType::Utf8
            };
            Field::new(format!("_c{i}"), ty, true)
        })
        .collect())
}

/// JSON values' columns, as JSON files infer them.
fn json_fields(json: &ValueOptions, sampled: &[Sampled]) -> Result<Vec<Field>, Error> {
    let mut values = Vec::with_capacity(sampled.len());
    for s in sampled {
        let Some(bytes) = s.value.as_deref().filter(|b| !b.is_empty()) else {
            continue;
        };
        let why = match serde_json::from_slice::<Value>(bytes) {
            Err(e) => Some(format!("invalid JSON: {e}")),
            Ok(v @ Value::Object(_)) => {
                if let Some(key) = unnamable_key(&v) {
                    Some(format!(
                        "the key '{}' is empty or holds a control character, which no Delta column name may",
                        key.escape_debug()
                    ))
                } else if depth(&v) > MAX_DEPTH {
                    Some(format!("it nests deeper than {MAX_DEPTH} levels"))
                } else {
                    values.push(v);
                    None
                }
            }
            Ok(_) => Some("a JSON record must be an object".to_string()),
        };
        if let Some(why) = why {
            judge(json, s, why)?;
        }
    }
    Ok(infer_fields(&values, json.infer_types)?)
}
