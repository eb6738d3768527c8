//! Uploads: raw files into a volume, and files or Arrow IPC streams into a
//! table. A file is staged under the state root and loaded by the engine
//! as a batch load; an Arrow stream is decoded batch by batch as it
//! arrives and committed once ([`crate::engine::BatchWriter`]). Either
//! way a failed upload commits nothing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use serde_json::{Value, json};
use sluice_pipeline::pipeline::TableFormatName;
use sluice_pipeline::{Format, LoadMode};
use sluice_sink::Location;
use tokio::io::AsyncWriteExt;

use super::App;
use super::api::{audited, broke_off, check_name, check_table, principal};
use super::auth::{ApiError, Principal};
use crate::engine::UploadedFile;
use crate::engine::failure::Failure;
use crate::engine::redact::Redactor;

type ApiResult<T = Response> = Result<T, ApiError>;

/// Streams `body` to `path`, at most `limit` bytes; on any failure the
/// upload is aborted and nothing appears at `path`.
async fn stream_to(
    app: &App,
    store: Arc<dyn object_store::ObjectStore>,
    path: &Path,
    body: Body,
    limit: u64,
) -> ApiResult<u64> {
    let mut writer = BufWriter::new(store, path.clone());
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    let failed = loop {
        let chunk = match stream.next().await {
            None => break None,
            Some(Ok(c)) => c,
            Some(Err(e)) => break Some(broke_off(size, e)),
        };
        size += chunk.len() as u64;
        if size > limit {
            break Some(too_large(&mut stream, size, limit).await);
        }
        if let Err(e) = writer.write_all(&chunk).await {
            break Some(ApiError::internal(format!("storing the upload: {e}")));
        }
    };
    if let Some(e) = failed {
        let _ = writer.abort().await;
        return Err(e);
    }
    writer
        .shutdown()
        .await
        .map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
    app.metrics.uploaded_bytes.inc_by(size);
    Ok(size)
}

/// The 413 for a body past `limit` bytes (`size` read so far). A bounded
/// rest of the body is read and dropped first, so that the client, still
/// sending, gets the 413 rather than a reset.
async fn too_large(stream: &mut axum::body::BodyDataStream, size: u64, limit: u64) -> ApiError {
    let mut drained = size;
    while drained < limit.saturating_mul(4)
        && let Some(Ok(c)) = stream.next().await
    {
        drained += c.len() as u64;
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the upload is larger than {} MiB", limit >> 20),
    )
}

/// `PUT /volumes/{volume}/{path}`: stores the raw file in the volume.
pub(super) async fn upload_to_volume(
    State(app): State<Arc<App>>,
    UrlPath((volume, path)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    let target = format!("{volume}/{}", path.escape_debug());
    let result = async {
        let root = granted_volume(&app, &who, &volume)?;
        // The one way a caller's name becomes a place: checked segments
        // appended under the volume, never a string parsed again.
        let location = root
            .child(&path)
            .map_err(|e| ApiError::bad_request(format!("path {e}")))?;
        let (store, object) = location.store().map_err(ApiError::internal)?;
        let size = stream_to(&app, store, &object, body, app.config.max_upload_mib << 20).await?;
        Ok((location.url().to_string(), size))
    }
    .await;
    let (url, size) = audited(
        &app,
        &who,
        "volume.upload",
        &target,
        result,
        |(url, size)| (target.clone(), json!({"bytes": size, "url": url})),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"url": url, "bytes": size})),
    )
        .into_response())
}

/// Volume `name`, if `who` is granted it and it is configured.
fn granted_volume<'a>(app: &'a App, who: &Principal, name: &str) -> ApiResult<&'a Location> {
    who.volume(name)?;
    app.volumes.get(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "no volume '{}' (configure it under [volumes])",
            name.escape_debug()
        ))
    })
}

/// `GET /volumes`: the volumes the caller may upload to, by name.
pub(super) async fn list_volumes(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    let who = principal(&app, &headers)?;
    let names: Vec<Value> = app
        .volumes
        .keys()
        .filter(|v| who.volume(v).is_ok())
        .map(|v| json!({"name": v}))
        .collect();
    Ok(Json(names).into_response())
}

/// Most files `GET /volumes/{volume}` lists.
const MAX_LISTED: usize = 10_000;

/// `GET /volumes/{volume}`: the volume's files (`path` under the volume,
/// `size`, `modified`), in path order; at most 10,000, with `truncated`.
pub(super) async fn list_volume(
    State(app): State<Arc<App>>,
    UrlPath(volume): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult {
    use futures::TryStreamExt;
    let who = principal(&app, &headers)?;
    let root = granted_volume(&app, &who, &volume)?;
    let (store, prefix) = root.store().map_err(ApiError::internal)?;
    let mut files: Vec<object_store::ObjectMeta> = store
        .list(Some(&prefix))
        .take(MAX_LISTED + 1)
        .try_collect()
        .await
        .map_err(|e| ApiError::from(anyhow::Error::from(e)))?;
    let truncated = files.len() > MAX_LISTED;
    files.truncate(MAX_LISTED);
    files.sort_by(|a, b| a.location.cmp(&b.location));
    let under = |p: &Path| {
        p.prefix_match(&prefix)
            .map(|parts| {
                parts
                    .map(|s| s.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| p.to_string())
    };
    let out: Vec<Value> = files
        .iter()
        .map(|m| json!({"path": under(&m.location), "size": m.size, "modified": m.last_modified.to_rfc3339()}))
        .collect();
    Ok(Json(json!({"volume": volume, "files": out, "truncated": truncated})).into_response())
}

/// The input format of an upload: `?format=`, the content type, or the
/// file name's extension.
fn upload_format(
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    filename: &str,
) -> ApiResult<Format> {
    if let Some(f) = query.get("format") {
        return f
            .parse()
            .map_err(|e: sluice_pipeline::UnknownFormat| ApiError::bad_request(e.to_string()));
    }
    let ct = media_type(headers);
    match ct.as_str() {
        "text/csv" => return Ok(Format::Csv),
        "application/json" | "application/x-ndjson" | "application/jsonl" => {
            return Ok(Format::Json);
        }
        "application/vnd.apache.parquet" | "application/x-parquet" => return Ok(Format::Parquet),
        _ => {}
    }
    if let Some(f) = Format::from_path(filename) {
        return Ok(f);
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "cannot tell the upload's format from content type '{ct}': send text/csv, application/x-ndjson or application/vnd.apache.parquet, or add ?format=csv|json|parquet"
        ),
    ))
}

/// `POST /tables/{table}/upload`: loads an uploaded file into a table
/// (`?mode=append|replace`, `?table_format=delta|iceberg`, reader options
/// as `?option.header=false`), or
/// with `?preview=true` returns its inferred schema and first 50 rows
/// without writing.
pub(super) async fn upload_to_table(
    State(app): State<Arc<App>>,
    UrlPath(table): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    let preview = query
        .get("preview")
        .is_some_and(|v| v == "true" || v == "1");
    let action = if preview {
        "table.preview"
    } else {
        "table.upload"
    };
    let result = load_upload(&app, &who, &table, &query, &headers, body, preview).await;
    let v = audited(&app, &who, action, &table, result, |v| {
        (table.clone(), v.get("report").cloned().unwrap_or_default())
    })
    .await?;
    Ok(Json(v).into_response())
}

async fn load_upload(
    app: &Arc<App>,
    who: &Principal,
    table: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
    preview: bool,
) -> ApiResult<Value> {
    check_table(table)?;
    who.table(table)?;
    let filename = query
        .get("filename")
        .cloned()
        .unwrap_or_else(|| "upload".into());
    check_name("file", &filename)?;
    // An Arrow IPC stream (a batch pushed at the edge) is already typed
    // record batches: the host writes it without a connector.
    let format = if is_arrow_stream(query, headers) {
        None
    } else {
        Some(upload_format(query, headers, &filename)?)
    };
    let mode = match query.get("mode").map(String::as_str) {
        None | Some("append") => LoadMode::Append,
        Some("replace") => LoadMode::Replace,
        Some(m) => {
            return Err(ApiError::bad_request(format!(
                "mode={m}: use append or replace"
            )));
        }
    };
    let table_format = match query.get("table_format").map(String::as_str) {
        None | Some("delta") => TableFormatName::Delta,
        Some("iceberg") if format.is_some() => TableFormatName::Iceberg,
        Some("iceberg") => {
            return Err(ApiError::bad_request(
                "an Arrow IPC upload into an Iceberg table is not supported yet; upload a file (CSV, JSON, Parquet, ...) or write a Delta table",
            ));
        }
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "table_format={f}: use delta or iceberg"
            )));
        }
    };
    let mut options = std::collections::BTreeMap::new();
    for (k, v) in query {
        if let Some(name) = k.strip_prefix("option.") {
            options.insert(name.to_string(), v.clone());
        } else if ![
            "format",
            "mode",
            "preview",
            "filename",
            "table_format",
            "select",
        ]
        .contains(&k.as_str())
        {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter '{k}'; reader options go as option.<name>=<value>"
            )));
        }
    }
    // A compressed upload may expand only so far.
    let bound = app.config.max_upload_decompressed_mib << 20;
    let asked = options
        .get("maxDecompressedBytes")
        .and_then(|v| v.parse::<u64>().ok());
    options.insert(
        "maxDecompressedBytes".into(),
        asked.map_or(bound, |a| a.min(bound)).to_string(),
    );
    let select = query
        .get("select")
        .map(|text| {
            sluice_sql::select_list(text).map_err(|e| ApiError::bad_request(format!("select: {e}")))
        })
        .transpose()?;
    let Some(format) = format else {
        if select.is_some() {
            return Err(ApiError::bad_request(
                "an Arrow IPC upload is written as it is sent: select columns before sending",
            ));
        }
        if options.len() > 1 {
            return Err(ApiError::bad_request(
                "an Arrow IPC upload takes no reader options",
            ));
        }
        return load_arrow(app, table, body, mode, preview).await;
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let staged_at = app
        .state_location
        .child(&format!("uploads/{id}/{filename}"))
        .map_err(|e| ApiError::bad_request(format!("filename {e}")))?;
    let staged = staged_at.path().map_err(ApiError::internal)?;
    let url = staged_at.url().to_string();
    stream_to(
        app,
        app.state.clone(),
        &staged,
        body,
        app.config.max_upload_mib << 20,
    )
    .await?;
    let file = UploadedFile {
        source: url.clone(),
        format,
        options,
        select,
    };
    let outcome = if preview {
        preview_file(app, &file).await
    } else {
        load_file(app, table, &file, mode, table_format).await
    };
    let _ = app.state.delete(&staged).await;
    // The caller knows its upload by the name it gave, not where it was
    // staged.
    outcome.map_err(|mut e| {
        e.message = e.message.replace(&url, &filename);
        e
    })
}

/// Whether the upload is an Arrow IPC stream (by `?format=arrow` or its
/// content type).
fn is_arrow_stream(query: &HashMap<String, String>, headers: &HeaderMap) -> bool {
    query.get("format").is_some_and(|f| f == "arrow")
        || media_type(headers) == "application/vnd.apache.arrow.stream"
}

/// The request's media type: its content type without parameters,
/// lowercase (empty if it has none).
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Loads (or previews) an Arrow IPC stream as it arrives: each record
/// batch is decoded from the body and written on, so memory holds a batch
/// or so, never the upload; the commit comes at the end of the body.
async fn load_arrow(
    app: &Arc<App>,
    table: &str,
    body: Body,
    mode: LoadMode,
    preview: bool,
) -> ApiResult<Value> {
    let broken = |e: sluice_ipc::Error| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the body is not a whole Arrow IPC stream: {e}"),
        )
    };
    let limit = app.config.max_upload_mib << 20;
    // The body is untrusted: every message is vetted before it is decoded.
    let mut decoder = sluice_ipc::Decoder::new(false);
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    let mut shown: Vec<arrow_array::RecordBatch> = Vec::new();
    let mut shown_rows = 0;
    let mut writer: Option<crate::engine::BatchWriter> = None;
    let mut rows = 0;
    'body: while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| broke_off(size, e))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large(&mut stream, size, limit).await);
        }
        for batch in decoder.push(&chunk).map_err(broken)? {
            rows += batch.num_rows();
            if preview {
                shown_rows += batch.num_rows();
                shown.push(batch);
                if shown_rows >= 50 {
                    break 'body;
                }
                continue;
            }
            let w = match &mut writer {
                Some(w) => w,
                None => writer.insert(
                    app.engine
                        .batch_writer(table, batch.schema(), mode)
                        .await
                        .map_err(|e| load_failed(e, ""))?,
                ),
            };
            w.write(batch)
                .await
                .map_err(|e| load_failed(e, " (nothing was committed)"))?;
        }
    }
    if preview {
        let schema = decoder
            .schema()
            .ok_or_else(|| ApiError::bad_request("the body holds no Arrow IPC schema"))?;
        let rows = crate::engine::json_rows(&shown, 50).map_err(ApiError::internal)?;
        return Ok(json!({"schema": schema_json(&schema), "rows": rows}));
    }
    decoder.finish().map_err(broken)?;
    let (Some(writer), true) = (writer, rows > 0) else {
        return Err(ApiError::bad_request("the Arrow IPC stream holds no rows"));
    };
    let report = writer
        .commit()
        .await
        .map_err(|e| load_failed(e, " (nothing was committed)"))?;
    app.metrics.uploaded_bytes.inc_by(size);
    app.metrics.record(("table", table), Some(&report));
    Ok(json!({"table": table, "report": report}))
}

/// Loads the staged `file` into `table`.
async fn load_file(
    app: &Arc<App>,
    table: &str,
    file: &UploadedFile,
    mode: LoadMode,
    table_format: TableFormatName,
) -> ApiResult<Value> {
    app.engine
        .load_upload(table, file, mode, table_format)
        .await
        .map(|report| {
            app.metrics.record(("table", table), Some(&report));
            json!({"table": table, "report": report})
        })
        .map_err(|f| failed(&f, " (nothing was committed)"))
}

/// The schema and first 50 rows the staged `file` would load.
async fn preview_file(app: &Arc<App>, file: &UploadedFile) -> ApiResult<Value> {
    app.engine
        .preview(file, 50)
        .await
        .map(|(schema, rows)| {
            json!({
                "schema": schema_json(&schema),
                "rows": rows,
            })
        })
        .map_err(|e| load_failed(e, ""))
}

/// How a failed load answers: its failure, classified by who has to act
/// ([`ApiError::from_failure`]), with `suffix` told after it.
fn load_failed(e: anyhow::Error, suffix: &str) -> ApiError {
    failed(&Failure::new(&e, &Redactor::default()), suffix)
}

fn failed(f: &Failure, suffix: &str) -> ApiError {
    let mut e = ApiError::from_failure(f);
    e.message.push_str(suffix);
    e
}

/// A schema as `[{"name", "type", "nullable"}]`.
pub fn schema_json(schema: &arrow_schema::Schema) -> Value {
    Value::Array(
        schema
            .fields()
            .iter()
            .map(|f| json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
            .collect(),
    )
}
