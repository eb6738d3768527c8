//! The strict JSON check of the files connector's fast path against
//! serde_json: whatever the bytes, it accepts them exactly when every
//! non-blank line is one JSON object serde_json accepts (nested at most
//! `MAX_DEPTH` levels), whatever chunks they arrive in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_formats::json::{Checker, MAX_DEPTH};

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = {
        let mut c = Checker::default();
        c.feed(data).and_then(|()| c.finish()).is_ok()
    };
    // The check leaves UTF-8 to the decoder and numbers' range to the
    // column's type; serde_json judges both: compare where they agree.
    let comparable = std::str::from_utf8(data).is_ok();
    let mut out_of_range = false;
    let serde = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')))
        .all(|l| match serde_json::from_slice::<serde_json::Value>(l) {
            Ok(v) => v.is_object() && depth(&v) <= MAX_DEPTH,
            Err(e) => {
                out_of_range |= e.to_string().contains("number out of range");
                false
            }
        });
    if comparable && !out_of_range {
        assert_eq!(whole, serde, "{:?}", String::from_utf8_lossy(data));
    }
    // Cut in two anywhere: the same verdict.
    let cut = data.len() / 2;
    let mut c = Checker::default();
    let split = c
        .feed(&data[..cut])
        .and_then(|()| c.feed(&data[cut..]))
        .and_then(|()| c.finish())
        .is_ok();
    assert_eq!(whole, split);
});
