//! The HTTP endpoints.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post, put};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use serde_json::{Value, json};
use sluice_pipeline::{Format, LoadMode, Pipeline};
use tokio::io::AsyncWriteExt;

use super::App;
use super::auth::{ApiError, Principal};
use super::runs;
use crate::failure::{Failure, Fault};
use crate::redact::Redactor;

type ApiResult<T = Response> = Result<T, ApiError>;

/// The service's routes.
pub fn router(app: Arc<App>) -> anyhow::Result<Router> {
    let body_idle = crate::pipeline::parse_interval(&app.config.body_idle_timeout)
        .context("body_idle_timeout")?
        .context("body_idle_timeout must be more than 0s")?;
    Ok(Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/volumes/{volume}/{*path}", put(upload_to_volume))
        .route("/tables/{table}/upload", post(upload_to_table))
        .route("/connectors", get(list_connectors).post(upload_connector))
        .route("/pipelines", get(list_pipelines))
        .route("/pipelines/{name}", put(put_pipeline).get(get_pipeline))
        .route("/pipelines/{name}/runs", post(trigger).get(list_runs))
        .route("/pipelines/{name}/events", post(webhook))
        .route("/runs/{id}", get(get_run))
        .route("/audit", get(audit))
        .route("/events", get(events))
        .route("/fn/{name}", any(call_function))
        .route("/fn/{name}/", any(call_function))
        .route("/fn/{name}/{*rest}", any(call_function))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(app.clone(), public_errors))
        .layer(middleware::from_fn_with_state(app.clone(), count))
        // A body that sends nothing for a while fails its request.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_idle))
        .with_state(app))
}

/// The answer to a request body that broke off after `size` bytes: 408
/// when it went silent past `body_idle_timeout`, 400 otherwise.
fn broke_off(size: u64, e: axum::Error) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut silent = false;
    while let Some(c) = cause {
        silent |= c.is::<tower_http::timeout::TimeoutError>();
        cause = c.source();
    }
    if silent {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body sent nothing for too long after {size} bytes (nothing was stored)"),
        )
    } else {
        ApiError::bad_request(format!("the upload broke off after {size} bytes: {e}"))
    }
}

/// Counts requests by status class.
async fn count(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let class = format!("{}xx", res.status().as_u16() / 100);
    app.metrics
        .requests
        .get_or_create(&vec![("status".to_string(), class)])
        .inc();
    res
}

/// Error bodies name the service's own locations by role, never by their
/// path on the server. (A hosted function's answers are its own.)
async fn public_errors(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let function = req.uri().path().starts_with("/fn/");
    let res = next.run(req).await;
    if function || !(res.status().is_client_error() || res.status().is_server_error()) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    };
    let text = app.public.text(&String::from_utf8_lossy(&bytes));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(text))
}

fn principal(app: &App, headers: &HeaderMap) -> ApiResult<Principal> {
    app.tokens.check(headers)
}

/// A name usable as a path segment: letters, digits, `_`, `-`, `.`, not
/// starting with `.`, at most 255 bytes.
fn check_name(kind: &str, name: &str) -> ApiResult<()> {
    if name.len() > sluice_location::MAX_SEGMENT_BYTES {
        return Err(ApiError::bad_request(format!(
            "a {kind} name may be at most {} bytes",
            sluice_location::MAX_SEGMENT_BYTES
        )));
    }
    if sluice_pipeline::pipeline::valid_secret_name(name) && !name.starts_with('.') {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{kind} name '{}' may hold only letters, digits, '_', '-' and '.' (not first)",
            name.escape_debug()
        )))
    }
}

/// Checks that `table` names a table under the warehouse (`t` or
/// `schema.t`): over HTTP a table is never a path.
fn check_table(table: &str) -> ApiResult<()> {
    match sluice_pipeline::TableRef::parse(table) {
        Ok(sluice_pipeline::TableRef::Name { .. }) => Ok(()),
        Ok(sluice_pipeline::TableRef::Path(_)) => Err(ApiError::bad_request(format!(
            "table '{}': name a table (`table` or `schema.table`), not a path",
            table.escape_debug()
        ))),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

async fn audit_ok(
    app: &App,
    who: &Principal,
    action: &str,
    target: &str,
    detail: Value,
) -> ApiResult<()> {
    app.audit
        .record(&who.name, action, target, "ok", detail)
        .await
        .map_err(|e| ApiError::internal(format!("recording the audit entry: {e:#}")))
}

async fn audit_refusal(app: &App, who: &str, action: &str, target: &str, e: &ApiError) {
    let _ = app
        .audit
        .record(
            who,
            action,
            target,
            &app.public.text(&e.message),
            json!({"status": e.status.as_u16()}),
        )
        .await;
}

/// Records how an action ended in the audit log: on success, the target
/// and detail `ok` gives; otherwise the refusal, against `refused_target`.
async fn audited<T>(
    app: &App,
    who: &Principal,
    action: &str,
    refused_target: &str,
    result: ApiResult<T>,
    ok: impl FnOnce(&T) -> (String, Value),
) -> ApiResult<T> {
    match result {
        Ok(v) => {
            let (target, detail) = ok(&v);
            audit_ok(app, who, action, &target, detail).await?;
            Ok(v)
        }
        Err(e) => {
            audit_refusal(app, &who.name, action, refused_target, &e).await;
            Err(e)
        }
    }
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /metrics`: what the token may see — a writer sees the series of
/// the pipelines, tables and functions it is granted, and the service-wide
/// ones.
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    let who = principal(&app, &headers)?;
    let text = app.metrics.render_for(|label, value| match label {
        "pipeline" => who.pipeline(value).is_ok(),
        "table" => who.table(value).is_ok(),
        "function" => who.function(value).is_ok(),
        _ => true,
    });
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

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
async fn upload_to_volume(
    State(app): State<Arc<App>>,
    UrlPath((volume, path)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    let target = format!("{volume}/{}", path.escape_debug());
    let result = async {
        who.volume(&volume)?;
        let root = app.volumes.get(&volume).ok_or_else(|| {
            ApiError::not_found(format!(
                "no volume '{}' (configure it under [volumes])",
                volume.escape_debug()
            ))
        })?;
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
            .map_err(|e: sluice_pipeline::Error| ApiError::bad_request(e.to_string()));
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
/// (`?mode=append|replace`, reader options as `?option.header=false`), or
/// with `?preview=true` returns its inferred schema and first 50 rows
/// without writing.
async fn upload_to_table(
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
    let mut options = std::collections::BTreeMap::new();
    for (k, v) in query {
        if let Some(name) = k.strip_prefix("option.") {
            options.insert(name.to_string(), v.clone());
        } else if !["format", "mode", "preview", "filename"].contains(&k.as_str()) {
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
    let Some(format) = format else {
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
    let outcome = load_file(app, table, &url, format, options, mode, preview).await;
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
    let mut writer: Option<crate::pipeline::BatchWriter> = None;
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
                    app.services
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
        let rows = crate::pipeline::json_rows(&shown, 50).map_err(ApiError::internal)?;
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

/// Loads (or previews) a staged CSV, JSON or Parquet file with the files
/// connector.
async fn load_file(
    app: &Arc<App>,
    table: &str,
    url: &str,
    format: Format,
    options: std::collections::BTreeMap<String, String>,
    mode: LoadMode,
    preview: bool,
) -> ApiResult<Value> {
    if preview {
        app.services
            .preview(url, format, options, 50)
            .await
            .map(|(schema, rows)| {
                json!({
                    "schema": schema_json(&schema),
                    "rows": rows,
                })
            })
            .map_err(|e| load_failed(e, ""))
    } else {
        app.services
            .load_upload(table, url, format, options, mode)
            .await
            .map(|report| {
                app.metrics.record(("table", table), Some(&report));
                json!({"table": table, "report": report})
            })
            .map_err(|f| failed(&f, " (nothing was committed)"))
    }
}

/// How a failed load answers: 422 when the data is at fault (it does not
/// parse, does not fit the table), 400 when the request is, 503 when the
/// service is (storage, a commit that kept losing to other writers, no
/// connector slot or memory free), so that a client knows whether to fix
/// its data or to retry.
fn load_failed(e: anyhow::Error, suffix: &str) -> ApiError {
    failed(&Failure::new(&e, &Redactor::default()), suffix)
}

/// The answer to a [`Failure`]: the one place a fault becomes a status.
fn failed(f: &Failure, suffix: &str) -> ApiError {
    let status = match f.fault {
        Fault::Data => StatusCode::UNPROCESSABLE_ENTITY,
        Fault::Invalid => StatusCode::BAD_REQUEST,
        Fault::Busy | Fault::Storage | Fault::Conflict => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, format!("{}{suffix}", f.message))
}

/// `ANY /fn/{name}/{rest}`: a request to a hosted `wasi:http` component,
/// which sees it at `/{rest}`.
async fn call_function(
    State(app): State<Arc<App>>,
    UrlPath(params): UrlPath<HashMap<String, String>>,
    req: Request,
) -> ApiResult {
    let name = params.get("name").cloned().unwrap_or_default();
    let f = app.functions.get(&name);
    // Any function but a public one needs a token, and so does telling
    // whether a function exists.
    let caller = match &f {
        Some(f) if f.public => None,
        _ => Some(principal(&app, req.headers())?),
    };
    let f = f.ok_or_else(|| {
        ApiError::not_found(format!(
            "no function '{name}' (configure it under [functions])"
        ))
    })?;
    if let Some(who) = &caller {
        who.function(&name)?;
    }
    let (mut parts, body) = req.into_parts();
    // A Sluice token is for Sluice, not for the component (a public
    // function gets the header only when it is not one of ours).
    if caller.is_some() || app.tokens.check(&parts.headers).is_ok() {
        parts.headers.remove(header::AUTHORIZATION);
    }
    // The path as sent (still percent-encoded), below /fn/{name}.
    let raw = parts.uri.path();
    let rest = raw
        .strip_prefix("/fn/")
        .and_then(|p| p.split_once('/').map(|(_, rest)| rest))
        .unwrap_or("");
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    parts.uri = format!("http://{host}{path_and_query}")
        .parse()
        .map_err(|e| ApiError::bad_request(format!("request URI: {e}")))?;
    let started = std::time::Instant::now();
    let outcome = app
        .functions
        .call(&f, axum::http::Request::from_parts(parts, body))
        .await;
    let status = match &outcome {
        Ok(r) => r.status().as_u16().to_string(),
        Err(_) => "error".to_string(),
    };
    app.metrics.function_call(&name, &status, started.elapsed());
    outcome.map_err(|e| {
        let status = match e {
            crate::functions::Failure::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            crate::functions::Failure::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
            crate::functions::Failure::Failed(..) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    })
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

/// `POST /connectors`: a `.wasm` component, validated, compiled and stored.
async fn upload_connector(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    let result = async {
        who.admin("uploading a connector")?;
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.is_empty()
            && !ct.starts_with("application/wasm")
            && !ct.starts_with("application/octet-stream")
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("send the component as application/wasm, not {ct}"),
            ));
        }
        let limit = (app.config.max_connector_mib << 20) as usize;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "a connector may be at most {} MiB",
                    app.config.max_connector_mib
                ),
            )
        })?;
        let store = app
            .services
            .connectors
            .as_ref()
            .ok_or_else(|| ApiError::internal("no connector store"))?;
        Ok(store.add(&app.services.runtime, bytes).await?)
    }
    .await;
    let info = audited(&app, &who, "connector.upload", "-", result, |info| {
        (
            info.id.clone(),
            json!({"name": info.name, "imports": info.imports, "bytes": info.size}),
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn list_connectors(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    principal(&app, &headers)?;
    let mut out = Vec::new();
    for (name, wasm) in crate::builtin::all() {
        let loaded = app.services.runtime.load(wasm)?;
        let mut info =
            crate::connectors::describe(&app.services.runtime, &loaded, wasm.len() as u64).await?;
        info.name = name.to_string();
        out.push(json!({"builtin": true, "connector": info}));
    }
    if let Some(store) = &app.services.connectors {
        for info in store.list().await? {
            out.push(json!({"builtin": false, "connector": info}));
        }
    }
    Ok(Json(out).into_response())
}

/// `PUT /pipelines/{name}`: TOML or JSON, as `sluice run` takes.
async fn put_pipeline(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: String,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    let result = async {
        who.admin("defining a pipeline")?;
        check_name("pipeline", &name)?;
        let pipeline = Pipeline::parse(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if let Some(c) = &pipeline.connector {
            let store = app
                .services
                .connectors
                .as_ref()
                .ok_or_else(|| ApiError::internal("no connector store"))?;
            store
                .load(&app.services.runtime, &c.id)
                .await
                .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        }
        runs::store_pipeline(&app, &name, pipeline.clone()).await?;
        Ok(pipeline)
    }
    .await;
    let p = audited(&app, &who, "pipeline.put", &name, result, |p| {
        // The capabilities it grants are what an auditor looks for.
        let detail = json!({
            "mode": p.mode, "table": p.table, "source": p.source,
            "connector": p.connector.as_ref().map(|c| &c.id),
            "grants": {"read": p.grants.read, "secrets": p.grants.secrets},
            "schedule": p.schedule,
        });
        (name.clone(), detail)
    })
    .await?;
    Ok((StatusCode::OK, Json(json!({"name": name, "pipeline": p}))).into_response())
}

fn entry(app: &App, name: &str) -> ApiResult<Arc<runs::Entry>> {
    app.runs.get(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "no pipeline '{name}'; define it with PUT /pipelines/{name}"
        ))
    })
}

async fn get_pipeline(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    who.pipeline(&name)?;
    let e = entry(&app, &name)?;
    let last = runs::history(&app, &name, 1).await?;
    Ok(
        Json(json!({"name": name, "pipeline": e.pipeline, "last_run": last.first()}))
            .into_response(),
    )
}

async fn list_pipelines(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    let who = principal(&app, &headers)?;
    let names: Vec<String> = app
        .runs
        .pipelines
        .lock()
        .map_err(|_| ApiError::internal("poisoned"))?
        .keys()
        .filter(|n| who.pipeline(n).is_ok())
        .cloned()
        .collect();
    let mut out = Vec::new();
    for name in names {
        let Some(e) = app.runs.get(&name) else {
            continue;
        };
        let recent = runs::history(&app, &name, 20).await?;
        let done: Vec<_> = recent.iter().filter_map(|r| r.report.as_ref()).collect();
        let rows: u64 = done.iter().map(|r| r.rows).sum();
        let secs: f64 = done.iter().map(|r| r.seconds).sum();
        out.push(json!({
            "name": name,
            "mode": e.pipeline.mode,
            "table": e.pipeline.table,
            "schedule": e.pipeline.schedule,
            "last_run": recent.first(),
            "recent_rows_per_second": if secs > 0.0 { rows as f64 / secs } else { 0.0 },
        }));
    }
    Ok(Json(out).into_response())
}

async fn run_now(
    app: &Arc<App>,
    who: &Principal,
    name: &str,
    trigger: &str,
    objects: Vec<String>,
    wait: bool,
) -> ApiResult {
    let e = entry(app, name)?;
    let (queued, handle) = runs::start(app, name, e, trigger, &who.name, objects.clone());
    audit_ok(
        app,
        who,
        "pipeline.run",
        name,
        json!({"run": queued.id, "trigger": trigger, "objects": objects}),
    )
    .await?;
    if wait {
        let done = handle.await;
        let status = if done.status == "succeeded" {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        return Ok((status, Json(done)).into_response());
    }
    Ok((StatusCode::ACCEPTED, Json(queued)).into_response())
}

/// `POST /pipelines/{name}/runs[?wait=true]`: the HTTP trigger.
async fn trigger(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    if let Err(e) = who.pipeline(&name) {
        audit_refusal(&app, &who.name, "pipeline.run", &name, &e).await;
        return Err(e);
    }
    let wait = query.get("wait").is_some_and(|v| v == "true" || v == "1");
    run_now(&app, &who, &name, "http", vec![], wait).await
}

async fn list_runs(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    who.pipeline(&name)?;
    entry(&app, &name)?;
    let limit = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    Ok(Json(runs::history(&app, &name, limit).await?).into_response())
}

async fn get_run(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    let run = app
        .runs
        .run(&id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no run '{id}' among this process's recent runs (the whole history: GET /pipelines/{{name}}/runs)"
            ))
        })?;
    who.pipeline(&run.pipeline)?;
    Ok(Json(run).into_response())
}

/// The object URLs an event notification names: S3 event notifications
/// (`Records[].s3`), and CloudEvents (structured, one or a batch) with
/// `data.bucket` + `data.name`/`data.key`, or `data.url`.
pub fn event_objects(body: &Value) -> Result<Vec<String>, String> {
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
                _ => return Err("an S3 event record lacks s3.bucket.name or s3.object.key".into()),
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
            return Err(
                "not an S3 event notification (Records) nor a CloudEvent (specversion)".into(),
            );
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
            return Err("a CloudEvent's data names no object (data.url, or data.bucket with data.name or data.key)".into());
        }
    }
    Ok(out)
}

/// The URL of object `key` (decoded) in `bucket`, each segment
/// percent-encoded as object-store URLs are, so a key holding `#`, `?` or
/// `%` names that object and no other.
fn object_url(scheme: &str, bucket: &str, key: &str) -> Result<String, String> {
    let mut url = url::Url::parse(&format!("{scheme}://{bucket}/"))
        .map_err(|e| format!("bucket '{bucket}': {e}"))?;
    url.path_segments_mut()
        .map_err(|()| format!("bucket '{bucket}' makes no URL with a path"))?
        .clear()
        .extend(key.split('/'));
    Ok(url.to_string())
}

/// `POST /pipelines/{name}/events`: object-store event notifications.
/// Objects under the pipeline's source trigger a run that looks up those
/// objects only (file notification mode); the periodic backstop listing
/// finds the objects of a notification that was lost.
async fn webhook(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: String,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    if let Err(e) = who.pipeline(&name) {
        audit_refusal(&app, &who.name, "pipeline.run", &name, &e).await;
        return Err(e);
    }
    let e = entry(&app, &name)?;
    let value: Value = serde_json::from_str(&body)
        .map_err(|err| ApiError::bad_request(format!("the event is not JSON: {err}")))?;
    let objects = event_objects(&value).map_err(ApiError::bad_request)?;
    let base = e
        .pipeline
        .source
        .as_deref()
        .and_then(|s| sluice_pipeline::Source::parse(s, app.services.storage.clone()).ok())
        .map(|s| s.base().as_dir().url().to_string());
    let relevant: Vec<String> = objects
        .into_iter()
        .filter(|o| base.as_deref().is_none_or(|b| o.starts_with(b)))
        .collect();
    if relevant.is_empty() {
        return Ok(Json(json!({"ignored": true, "reason": "no object of the event is under the pipeline's source"})).into_response());
    }
    run_now(&app, &who, &name, "webhook", relevant, false).await
}

async fn audit(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    who.admin("reading the audit log")?;
    let limit = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(200);
    Ok(Json(app.audit.tail(limit).await?).into_response())
}

/// `GET /events[?limit=N]`: the newest events of the event log (audit
/// entries and finished runs) as JSON; the whole log is the Delta table
/// `<state>/event_log`.
async fn events(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    who.admin("reading the event log")?;
    let limit = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(200);
    Ok(Json(app.events.recent(limit)).into_response())
}

#[cfg(test)]
mod tests {
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
