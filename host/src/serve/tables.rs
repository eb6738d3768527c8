//! `GET /tables...`: the tables a caller may see, each with its schema,
//! files, history, first rows and the file state of the loads that keep a
//! checkpoint (COPY INTO, streams). Authorised as uploads are: a writer
//! sees only the tables it is granted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_schema::{DataType, Field};
use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sluice_pipeline::pipeline::TableFormatName;

use super::App;
use super::api::{check_table, principal};
use super::auth::{ApiError, Principal};
use crate::engine::Named;

type ApiResult<T = Response> = Result<T, ApiError>;

/// Most rows `GET /tables/{t}/sample` answers with.
const MAX_SAMPLE: usize = 1000;

/// `GET /tables`: the tables under the warehouse and in the catalog, and
/// those the pipelines name, that the caller may see, by name:
/// `[{"name", "format", "exists", "pipelines"}]`.
pub(super) async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    let who = principal(&app, &headers)?;
    let mut found: BTreeMap<String, (TableFormatName, bool, Vec<String>)> = BTreeMap::new();
    for t in app.engine.tables().await? {
        found.insert(t.name, (t.format, true, vec![]));
    }
    for (pipeline, table, format) in pipeline_tables(&app)? {
        found
            .entry(table)
            .or_insert((format, false, vec![]))
            .2
            .push(pipeline);
    }
    let out: Vec<Value> = found
        .into_iter()
        .filter(|(name, _)| who.table(name).is_ok())
        .map(|(name, (format, exists, pipelines))| {
            json!({"name": name, "format": format, "exists": exists, "pipelines": pipelines})
        })
        .collect();
    Ok(Json(out).into_response())
}

/// The tables the stored pipelines write that are named (not paths):
/// (pipeline, table, format).
fn pipeline_tables(app: &App) -> ApiResult<Vec<(String, String, TableFormatName)>> {
    let pipelines = app
        .runs
        .pipelines
        .lock()
        .map_err(|_| ApiError::internal("poisoned"))?;
    Ok(pipelines
        .iter()
        .filter(|(_, e)| check_table(&e.pipeline.table).is_ok())
        .map(|(name, e)| {
            (
                name.clone(),
                e.pipeline.table.clone(),
                e.pipeline.table_format,
            )
        })
        .collect())
}

/// The table `name` the caller asked about, if granted: in the format
/// asked for, else the one its pipeline names, else the one it was written
/// in.
fn named<'a>(
    app: &App,
    who: &Principal,
    name: &'a str,
    query: &HashMap<String, String>,
) -> ApiResult<Named<'a>> {
    check_table(name)?;
    who.table(name)?;
    let format = match query.get("format").map(String::as_str) {
        None => None,
        Some("delta") => Some(TableFormatName::Delta),
        Some("iceberg") => Some(TableFormatName::Iceberg),
        Some("parquet") => Some(TableFormatName::Parquet),
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "format={f}: use delta, iceberg or parquet"
            )));
        }
    };
    let configured = pipeline_tables(app)?
        .into_iter()
        .find(|(_, t, _)| t == name)
        .map(|(_, _, f)| f);
    Ok(Named {
        name,
        format: format.or(configured),
    })
}

fn no_table(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "there is no table '{name}' (GET /tables lists the tables you may see)"
    ))
}

fn limit(query: &HashMap<String, String>, default: usize, max: usize) -> ApiResult<usize> {
    match query.get("limit") {
        None => Ok(default),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit={l}: give a number from 1 to {max}"))
            }),
    }
}

/// `GET /tables/{t}[?format=...]`: the table now: format, version, schema
/// (nested types as trees), partition columns, files, bytes, rows, how
/// the files' sizes fall, properties, and the pipelines that write it.
pub(super) async fn describe(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    let table = named(&app, &who, &name, &query)?;
    let info = app
        .engine
        .describe_table(table)
        .await?
        .ok_or_else(|| no_table(&name))?;
    let mut v = serde_json::to_value(&info).map_err(ApiError::internal)?;
    v["name"] = json!(name);
    v["location"] = json!(app.public.text(&info.location));
    v["schema"] = Value::Array(info.schema.fields().iter().map(|f| field_json(f)).collect());
    v["pipelines"] = json!(
        pipeline_tables(&app)?
            .into_iter()
            .filter(|(_, t, _)| *t == name)
            .map(|(p, _, _)| p)
            .collect::<Vec<_>>()
    );
    Ok(Json(v).into_response())
}

/// `GET /tables/{t}/history[?limit=N]`: its versions, newest first, each
/// with `version`, `timestamp`, `operation`, rows and files added.
pub(super) async fn history(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    let limit = limit(&query, 100, 10_000)?;
    let table = named(&app, &who, &name, &query)?;
    let versions = app
        .engine
        .table_history(table, limit)
        .await?
        .ok_or_else(|| no_table(&name))?;
    let out: Vec<Value> = versions
        .into_iter()
        .map(|v| {
            let mut j = serde_json::to_value(&v).unwrap_or_default();
            j["timestamp"] = json!(v.timestamp_ms.and_then(rfc3339));
            j
        })
        .collect();
    // A version's parameters may name where the table is.
    let text = app.public.text(&Value::Array(out).to_string());
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response())
}

/// `GET /tables/{t}/sample[?limit=N]`: its schema and first rows (20
/// unless asked, at most 1000) as JSON objects.
pub(super) async fn sample(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    let limit = limit(&query, 20, MAX_SAMPLE)?;
    let table = named(&app, &who, &name, &query)?;
    let (schema, rows) = app
        .engine
        .table_sample(table, limit)
        .await?
        .ok_or_else(|| no_table(&name))?;
    Ok(Json(json!({
        "schema": schema.fields().iter().map(|f| field_json(f)).collect::<Vec<_>>(),
        "rows": rows,
    }))
    .into_response())
}

/// `GET /tables/{t}/files`: what the loads that keep a checkpoint for the
/// table (COPY INTO, streams) recorded about each file they discovered
/// (Auto Loader's `cloud_files_state`); an empty list for a table no such
/// load wrote.
pub(super) async fn files(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let who = principal(&app, &headers)?;
    let table = named(&app, &who, &name, &query)?;
    let checkpoints = app
        .engine
        .table_files(table)
        .await?
        .ok_or_else(|| no_table(&name))?;
    let out: Vec<Value> = checkpoints
        .into_iter()
        .map(|c| {
            json!({
                "checkpoint": app.public.text(&c.location),
                "id": c.id,
                "batches": c.batches,
                "files": c.files.iter().map(|f| json!({
                    "path": app.public.text(&f.path),
                    "size": f.size,
                    "modified": rfc3339(f.modified_ms),
                    "discovered": rfc3339(f.discovered_ms),
                    "committed": f.committed_ms.and_then(rfc3339),
                    "batch": f.batch,
                    "status": f.status,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(out).into_response())
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A column as a tree: `{"name", "type", "nullable"}`, with `fields` for
/// a struct, `element` for a list and `key`/`value` for a map.
pub fn field_json(f: &Field) -> Value {
    let mut v = json!({
        "name": f.name(),
        "type": f.data_type().to_string(),
        "nullable": f.is_nullable(),
    });
    match f.data_type() {
        DataType::Struct(fields) => {
            v["type"] = json!("Struct");
            v["fields"] = Value::Array(fields.iter().map(|c| field_json(c)).collect());
        }
        DataType::List(e) | DataType::LargeList(e) | DataType::FixedSizeList(e, _) => {
            v["type"] = json!("List");
            v["element"] = field_json(e);
        }
        DataType::Map(entries, _) => {
            v["type"] = json!("Map");
            if let DataType::Struct(kv) = entries.data_type()
                && let [k, val] = kv.as_ref()
            {
                v["key"] = field_json(k);
                v["value"] = field_json(val);
            }
        }
        _ => {}
    }
    v
}
