//! Change events in Debezium's JSON envelope (`valueEnvelope=debezium`):
//! a value `{"before": {...}, "after": {...}, "op": "c", "ts_ms": ...,
//! "source": {...}}` (or that as `payload` beside a `schema`, as the JSON
//! converter with schemas writes it) is read as the row it describes: the
//! fields of `after` (of `before` for a delete; none for a truncate), with
//! the event's `op` as [`OP`] and its `ts_ms` as [`TS_MS`]. Debezium's
//! tombstones (a deleted key without a value, for log compaction) are not
//! rows.

use bytes::Bytes;
use serde_json::Value;
use sluice_connector_sdk::Error;

/// The column of the event's operation: `c` (insert), `u` (update), `d`
/// (delete), `r` (a snapshot's read) or `t` (truncate).
pub const OP: &str = "__op";
/// The column of the event's time (`ts_ms`, milliseconds since the epoch).
pub const TS_MS: &str = "__ts_ms";

/// The row of the record value `value` at `place`: `None` for a tombstone
/// (no value), and an error naming `place` for a value that is not an event.
pub fn row(value: Option<&[u8]>, place: impl std::fmt::Display) -> Result<Option<Bytes>, Error> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => unwrap(v)
            .map(Some)
            .map_err(|e| Error::Data(format!("{place}: {e}"))),
    }
}

/// The row of the event `value`, as a JSON object's bytes.
fn unwrap(value: &[u8]) -> Result<Bytes, String> {
    let v: Value = serde_json::from_slice(value).map_err(|e| format!("not JSON: {e}"))?;
    let event = match v.get("payload") {
        Some(p) if p.get("op").is_some() => p,
        _ => &v,
    };
    let op = event
        .get("op")
        .and_then(Value::as_str)
        .ok_or("no \"op\": not a Debezium change event (valueEnvelope=debezium)")?;
    let mut row = match (op, event.get(if op == "d" { "before" } else { "after" })) {
        ("t", _) => serde_json::Map::new(),
        (_, Some(Value::Object(fields))) => fields.clone(),
        _ => {
            return Err(format!(
                "a change event with op '{op}' has no \"{}\" object",
                if op == "d" { "before" } else { "after" }
            ));
        }
    };
    let ts = event
        .get("ts_ms")
        .or_else(|| event.get("source").and_then(|s| s.get("ts_ms")))
        .cloned()
        .unwrap_or(Value::Null);
    row.insert(OP.into(), Value::from(op));
    row.insert(TS_MS.into(), ts);
    Ok(Bytes::from(
        serde_json::to_vec(&Value::Object(row)).expect("a JSON object"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(event: &str) -> Value {
        serde_json::from_slice(&unwrap(event.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn an_event_is_its_rows_image_with_op_and_time() {
        let update = r#"{"before": {"id": 1, "name": "a"}, "after": {"id": 1, "name": "b"}, "op": "u", "ts_ms": 7, "source": {"lsn": 1}}"#;
        assert_eq!(
            row(update),
            serde_json::json!({"id": 1, "name": "b", "__op": "u", "__ts_ms": 7})
        );
        let delete = r#"{"schema": {}, "payload": {"before": {"id": 1}, "after": null, "op": "d", "source": {"ts_ms": 9}}}"#;
        assert_eq!(
            row(delete),
            serde_json::json!({"id": 1, "__op": "d", "__ts_ms": 9})
        );
        assert_eq!(
            row(r#"{"op": "t", "ts_ms": 3}"#),
            serde_json::json!({"__op": "t", "__ts_ms": 3})
        );
        let e = unwrap(br#"{"id": 1}"#).unwrap_err();
        assert!(e.contains("not a Debezium change event"), "{e}");
        let e = unwrap(br#"{"op": "c", "after": null}"#).unwrap_err();
        assert!(e.contains("no \"after\" object"), "{e}");
    }
}
