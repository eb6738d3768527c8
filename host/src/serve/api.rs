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
use serde_json::{Value, json};
use sluice_pipeline::Pipeline;
use sluice_pipeline::pipeline::is_builtin_connector;

use super::App;
use super::auth::{ApiError, Principal};
use super::{runs, state, tables, uploads};

type ApiResult<T = Response> = Result<T, ApiError>;

/// The service's routes.
pub fn router(app: Arc<App>) -> anyhow::Result<Router> {
    let body_idle = crate::engine::parse_interval(&app.config.body_idle_timeout)
        .context("body_idle_timeout")?
        .context("body_idle_timeout must be more than 0s")?;
    // A function that fails (traps, runs out of time) may leave much of a
    // large body unread.
    let function = any(call_function).layer(middleware::from_fn(|req: Request, next: Next| {
        drain_unread(req, next, FUNCTION_DRAIN_BYTES)
    }));
    Ok(Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route(
            "/volumes/{volume}/{*path}",
            put(uploads::upload_to_volume).layer(middleware::from_fn(
                |req: Request, next: Next| drain_unread(req, next, DRAIN_BYTES),
            )),
        )
        .route(
            "/tables/{table}/upload",
            post(uploads::upload_to_table).layer(middleware::from_fn(
                |req: Request, next: Next| drain_unread(req, next, DRAIN_BYTES),
            )),
        )
        .route("/whoami", get(whoami))
        .route("/functions", get(list_functions))
        .route("/openapi.json", get(openapi))
        .route("/volumes", get(uploads::list_volumes))
        .route("/volumes/{volume}", get(uploads::list_volume))
        .route("/tables", get(tables::list))
        .route("/tables/{table}", get(tables::describe))
        .route("/tables/{table}/history", get(tables::history))
        .route("/tables/{table}/sample", get(tables::sample))
        .route("/tables/{table}/files", get(tables::files))
        .route("/connectors", get(list_connectors).post(upload_connector))
        .route("/pipelines", get(list_pipelines))
        .route("/pipelines/{name}", put(put_pipeline).get(get_pipeline))
        .route("/pipelines/{name}/runs", post(trigger).get(list_runs))
        .route("/pipelines/{name}/events", post(webhook))
        .route("/runs/{id}", get(get_run))
        .route("/audit", get(audit))
        .route("/events", get(events))
        .route("/fn/{name}", function.clone())
        .route("/fn/{name}/", function.clone())
        .route("/fn/{name}/{*rest}", function)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(app.clone(), public_errors))
        .layer(middleware::from_fn_with_state(app.clone(), count))
        // A body that sends nothing for a while fails its request.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_idle))
        .with_state(app))
}

/// The answer to a request body that broke off after `size` bytes: 408
/// when it went silent past `body_idle_timeout`, 400 otherwise.
pub(super) fn broke_off(size: u64, e: axum::Error) -> ApiError {
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

pub(super) fn principal(app: &App, headers: &HeaderMap) -> ApiResult<Principal> {
    app.tokens.check(headers)
}

/// A name usable as a path segment: letters, digits, `_`, `-`, `.`, not
/// starting with `.`, at most 255 bytes.
pub(super) fn check_name(kind: &str, name: &str) -> ApiResult<()> {
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
pub(super) fn check_table(table: &str) -> ApiResult<()> {
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
pub(super) async fn audited<T>(
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

/// The console: one page, its script and styles inline, on the same
/// endpoints scripts use.
async fn page() -> Html<&'static str> {
    Html(include_str!("console.html"))
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
    let (body, relay) = relay(body, app.config.max_upload_mib << 20);
    let outcome = app
        .functions
        .call(&f, axum::http::Request::from_parts(parts, body))
        .await;
    if outcome.is_err() {
        // The component stopped reading (it trapped, or ran out of time):
        // read what the client still sends, so it gets the answer below
        // rather than a reset.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), relay).await;
    }
    let status = match &outcome {
        Ok(r) => r.status().as_u16().to_string(),
        Err(_) => "error".to_string(),
    };
    app.metrics.function_call(&name, &status, started.elapsed());
    outcome.map_err(|e| {
        let status = match e {
            crate::wasm::functions::Failure::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            crate::wasm::functions::Failure::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
            crate::wasm::functions::Failure::Failed(..) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    })
}

/// The most bytes of an upload a refusal reads and drops.
const DRAIN_BYTES: u64 = 1 << 20;
/// The most bytes of a request a failed function call reads and drops: a
/// function that traps while reading a large body has left more unread.
const FUNCTION_DRAIN_BYTES: u64 = 16 << 20;
/// How long a refusal waits for them.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and drops what a handler that failed left unread of the body (a
/// refusal answers before reading it; a function may trap halfway), at
/// most `limit` bytes for at most [`DRAIN_TIME`], before the answer goes
/// out: the client, still sending, then reads the answer on a connection it
/// can use again instead of meeting a closed one (and a broken pipe).
async fn drain_unread(req: Request, next: Next, limit: u64) -> Response {
    let (parts, body) = req.into_parts();
    let (body, reader) = relay(body, limit);
    let res = next.run(Request::from_parts(parts, body)).await;
    if !res.status().is_success() {
        let _ = tokio::time::timeout(DRAIN_TIME, reader).await;
    }
    res
}

/// `body`, read by a task that hands it on to the body returned; once the
/// reader of that body stops early (drops it), the task reads and drops
/// what the client still sends, at most `limit` bytes, and ends.
fn relay(body: Body, limit: u64) -> (Body, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, axum::Error>>(4);
    let task = tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut handing_on = true;
        let mut drained = 0u64;
        while let Some(chunk) = stream.next().await {
            if handing_on {
                handing_on = tx.send(chunk).await.is_ok();
                continue;
            }
            match chunk {
                Ok(c) if drained <= limit => drained += c.len() as u64,
                _ => break,
            }
        }
    });
    let handed_on = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (Body::from_stream(handed_on), task)
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
            .engine
            .connectors
            .as_ref()
            .ok_or_else(|| ApiError::internal("no connector store"))?;
        Ok(store.add(&app.engine.runtime, bytes).await?)
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

/// `GET /whoami`: the caller's token name, role and grants (what the
/// console shows and hides by).
async fn whoami(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    Ok(Json(principal(&app, &headers)?.grants()).into_response())
}

/// `GET /functions`: the hosted functions the caller may call (public
/// ones to everyone), with what they are granted.
async fn list_functions(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    let who = principal(&app, &headers)?;
    let out: Vec<Value> = app
        .config
        .functions
        .iter()
        .filter(|(name, f)| f.public || who.function(name).is_ok())
        .map(|(name, f)| {
            json!({
                "name": name,
                "path": format!("/fn/{name}"),
                "public": f.public,
                "component": f.component.file_name().map(|n| n.to_string_lossy()),
                "allowed_outbound_hosts": f.allowed_outbound_hosts,
                "secrets": f.secrets,
                "memory_mib": f.memory_mib,
                "timeout": f.timeout,
            })
        })
        .collect();
    Ok(Json(out).into_response())
}

/// `GET /openapi.json`: the API's description (OpenAPI 3.1).
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// When `e`'s schedule fires next, RFC 3339; `None` without one.
fn next_run(e: &runs::Entry) -> Option<String> {
    let cron = e.cron.as_ref()?;
    let next = cron.find_next_occurrence(&chrono::Utc::now(), false).ok()?;
    Some(next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

async fn list_connectors(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    principal(&app, &headers)?;
    let mut out = Vec::new();
    for info in app.engine.builtin_connectors().await? {
        out.push(json!({"builtin": true, "connector": info}));
    }
    if let Some(store) = &app.engine.connectors {
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
        if let Some(c) = &pipeline.connector
            && !is_builtin_connector(&c.id)
        {
            let store = app
                .engine
                .connectors
                .as_ref()
                .ok_or_else(|| ApiError::internal("no connector store"))?;
            store
                .load(&app.engine.runtime, &c.id)
                .await
                .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        }
        state::store_pipeline(&app, &name, pipeline.clone()).await?;
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
    let last = state::history(&app, &name, 1).await?;
    // The definition as people write it (TOML), for the console to edit.
    let definition = toml::to_string(&e.pipeline)
        .unwrap_or_else(|_| serde_json::to_string_pretty(&e.pipeline).unwrap_or_default());
    Ok(Json(json!({
        "name": name,
        "pipeline": e.pipeline,
        "definition": definition,
        "last_run": last.first(),
        "next_run": next_run(&e),
        "running": e.lock.try_lock().is_err(),
    }))
    .into_response())
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
        let recent = state::history(&app, &name, 20).await?;
        let done: Vec<_> = recent.iter().filter_map(|r| r.report.as_ref()).collect();
        let rows: u64 = done.iter().map(|r| r.rows).sum();
        let secs: f64 = done.iter().map(|r| r.seconds).sum();
        out.push(json!({
            "name": name,
            "mode": e.pipeline.mode,
            "table": e.pipeline.table,
            "schedule": e.pipeline.schedule,
            "trigger": e.pipeline.trigger,
            "last_run": recent.first(),
            "next_run": next_run(&e),
            "running": e.lock.try_lock().is_err(),
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
    if let Some(t) = e
        .pipeline
        .trigger
        .as_ref()
        .filter(|t| t.runs_until_stopped())
    {
        return Err(ApiError::conflict(format!(
            "pipeline '{name}' has trigger = \"{t}\": the service keeps it running and it reads new input by itself; its runs are at GET /pipelines/{name}/runs"
        )));
    }
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
    Ok(Json(state::history(&app, &name, limit).await?).into_response())
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
    let objects = sluice_pipeline::notify::event_objects(&value)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let base = e
        .pipeline
        .source
        .as_deref()
        .and_then(|s| sluice_pipeline::Source::parse(s, app.engine.storage.clone()).ok())
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
