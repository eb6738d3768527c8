//! The data columns of `valueFormat=json`, inferred from a sample of the
//! values a batch reads, by the files connector's rules (the shared
//! `sluice_formats::objects`): types from up to [`SAMPLE_RECORDS`] values,
//! all-null columns as strings, `schemaHints` over inferred types.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::FieldRef;
use serde_json::Value;
use sluice_connector_sdk::Error;
use sluice_formats::hints::apply_hints;
use sluice_formats::json::MAX_DEPTH;
use sluice_formats::objects::{FAILFAST_ADVICE, depth, infer_fields, unnamable_key};

use crate::options::{JsonOptions, Mode};

/// Values sampled when inferring the columns (as the files connector
/// samples per file).
pub const SAMPLE_RECORDS: usize = 10_000;

/// A sampled value and where it is.
pub struct Sampled {
    value: Option<Vec<u8>>,
    place: String,
}

/// Adds the values of `batch` (rows as `valueFormat=raw` gives them) to
/// `out`.
pub fn collect(batch: &RecordBatch, out: &mut Vec<Sampled>) {
    let value = batch.column(1).as_binary::<i32>();
    let topic = batch.column(2).as_string::<i32>();
    let partition = batch.column(3).as_primitive::<Int32Type>();
    let offset = batch.column(4).as_primitive::<Int64Type>();
    for r in 0..batch.num_rows() {
        out.push(Sampled {
            value: value.is_valid(r).then(|| value.value(r).to_vec()),
            place: format!(
                "topic '{}' partition {} offset {}",
                topic.value(r),
                partition.value(r),
                offset.value(r)
            ),
        });
    }
}

/// The data columns of `sampled`. Under FAILFAST a value that is not a
/// JSON object (or could not make columns) fails, naming it; otherwise it
/// is left out of the sample and judged by the read.
pub fn fields(json: &JsonOptions, sampled: &[Sampled]) -> Result<Vec<FieldRef>, Error> {
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
        if let Some(why) = why
            && json.mode == Mode::FailFast
        {
            return Err(Error::Data(format!(
                "{}: {why} ({FAILFAST_ADVICE})",
                s.place
            )));
        }
    }
    let inferred = infer_fields(&values, json.infer_types)?;
    Ok(apply_hints(inferred, &json.hints)
        .into_iter()
        .map(Arc::new)
        .collect())
}
