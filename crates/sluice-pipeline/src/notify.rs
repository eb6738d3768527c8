//! Object-store event notifications (file notification mode): which objects
//! an S3 event notification or a CloudEvent names, as the URLs a listing
//! would give them, so a notified run looks up exactly those
//! ([`crate::notified_files`]).

use serde_json::Value;

use crate::error::{Error, Result};

/// The object URLs an event notification names: S3 event notifications
/// (`Records[].s3`), and CloudEvents (structured, one or a batch) with
/// `data.bucket` + `data.name`/`data.key`, or `data.url`.
pub fn event_objects(body: &Value) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(records) = body.get("Records").and_then(Value::as_array) {
        for r in records {
            let bucket = r.pointer("/s3/bucket/name").and_then(Value::as_str);
            let key = r.pointer("/s3/object/key").and_then(Value::as_str);
            match (bucket, key) {
                (Some(b), Some(k)) => {
                    // S3 event keys are URL-encoded, spaces as '+'.
                    let k = k.replace('+', " ");
                    let k = url::form_urlencoded::parse(
                        format!("k={}", k.replace('&', "%26")).as_bytes(),
                    )
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or(k);
                    out.push(object_url("s3", b, &k)?);
                }
                _ => {
                    return Err(Error::Invalid(
                        "an S3 event record lacks s3.bucket.name or s3.object.key".into(),
                    ));
                }
            }
        }
        return Ok(out);
    }
    let events: Vec<&Value> = match body {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    for e in events {
        if e.get("specversion").is_none() {
            return Err(Error::Invalid(
                "not an S3 event notification (Records) nor a CloudEvent (specversion)".into(),
            ));
        }
        let data = e.get("data").unwrap_or(&Value::Null);
        let s = |k: &str| data.get(k).and_then(Value::as_str);
        if let Some(url) = s("url") {
            out.push(url.to_string());
        } else if let (Some(b), Some(k)) = (s("bucket"), s("name").or(s("key"))) {
            let scheme = if e
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.starts_with("google."))
            {
                "gs"
            } else {
                "s3"
            };
            out.push(object_url(scheme, b, k)?);
        } else {
            return Err(Error::Invalid("a CloudEvent's data names no object (data.url, or data.bucket with data.name or data.key)".into()));
        }
    }
    Ok(out)
}

/// The URL of object `key` (decoded) in `bucket`, each segment
/// percent-encoded as object-store URLs are, so a key holding `#`, `?` or
/// `%` names that object and no other.
fn object_url(scheme: &str, bucket: &str, key: &str) -> Result<String> {
    let mut url = url::Url::parse(&format!("{scheme}://{bucket}/"))
        .map_err(|e| Error::Invalid(format!("bucket '{bucket}': {e}")))?;
    url.path_segments_mut()
        .map_err(|()| Error::Invalid(format!("bucket '{bucket}' makes no URL with a path")))?
        .clear()
        .extend(key.split('/'));
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn object_keys_become_urls_that_name_only_them() {
        assert_eq!(
            object_url("s3", "lake", "in/a b#1?.csv").unwrap(),
            "s3://lake/in/a%20b%231%3F.csv"
        );
        assert_eq!(
            object_url("gs", "lake", "100%.csv").unwrap(),
            "gs://lake/100%25.csv"
        );
    }

    #[test]
    fn s3_and_cloud_events_name_their_objects() {
        let s3 = json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "lake"}, "object": {"key": "in/a+b%2Cc.csv", "size": 3}}}]});
        assert_eq!(event_objects(&s3).unwrap(), ["s3://lake/in/a%20b,c.csv"]);
        let ce = json!({"specversion": "1.0", "type": "google.cloud.storage.object.v1.finalized", "source": "x", "id": "1", "data": {"bucket": "b", "name": "in/x.json"}});
        assert_eq!(event_objects(&ce).unwrap(), ["gs://b/in/x.json"]);
        let batch = json!([{"specversion": "1.0", "data": {"url": "s3://b/k"}}]);
        assert_eq!(event_objects(&batch).unwrap(), ["s3://b/k"]);
        assert!(event_objects(&json!({"hello": 1})).is_err());
        assert!(event_objects(&json!({"specversion": "1.0", "data": {}})).is_err());
    }
}
