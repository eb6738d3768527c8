//! The `wasi:http` entry point: reads the request, converts, forwards.

use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use spin_sdk::http::{IncomingRequest, Method, Request, Response};
use spin_sdk::http_component;

use crate::convert::{self, Encoding, Rejection, Rules};

const DEFAULT_MAX_BODY: usize = 16 << 20;
const DEFAULT_MAX_RECORDS: usize = 100_000;

/// Where a validated batch goes.
enum Destination {
    Table(String),
    Landing { volume: String, prefix: String },
}

struct Settings {
    url: String,
    token: String,
    destination: Destination,
    rules: Rules,
    max_body: usize,
}

fn misconfigured(message: String) -> Rejection {
    Rejection {
        status: 500,
        message: format!("the edge function is misconfigured: {message}"),
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number(name: &str, default: usize) -> Result<usize, Rejection> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| misconfigured(format!("{name}={v} is not a number"))),
    }
}

fn settings() -> Result<Settings, Rejection> {
    let url = var("SLUICE_URL").ok_or_else(|| misconfigured("set SLUICE_URL".into()))?;
    let token = var("SLUICE_TOKEN").ok_or_else(|| misconfigured("set SLUICE_TOKEN".into()))?;
    let destination = match (var("SLUICE_TABLE"), var("SLUICE_VOLUME")) {
        (Some(t), None) => Destination::Table(t),
        (None, Some(volume)) => Destination::Landing {
            volume,
            prefix: var("SLUICE_PREFIX").unwrap_or_else(|| "edge".into()),
        },
        _ => {
            return Err(misconfigured(
                "set exactly one of SLUICE_TABLE and SLUICE_VOLUME".into(),
            ));
        }
    };
    let required = var("REQUIRED_FIELDS")
        .map(|v| {
            v.split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(Settings {
        url: url.trim_end_matches('/').to_string(),
        token,
        destination,
        rules: Rules {
            required,
            max_records: number("MAX_RECORDS", DEFAULT_MAX_RECORDS)?,
        },
        max_body: number("MAX_BODY_BYTES", DEFAULT_MAX_BODY)?,
    })
}

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}

#[http_component]
async fn handle(req: IncomingRequest) -> Response {
    match ingest(req).await {
        Ok(r) => r,
        Err(e) => reply(e.status, json!({"error": e.message, "status": e.status})),
    }
}

async fn ingest(req: IncomingRequest) -> Result<Response, Rejection> {
    if req.method() != Method::Post {
        return Err(Rejection {
            status: 405,
            message: "push records with POST".into(),
        });
    }
    let settings = settings()?;
    let content_type = req
        .headers()
        .get("content-type")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let encoding = Encoding::from_content_type(&content_type).ok_or_else(|| Rejection {
        status: 415,
        message: format!(
            "content type '{content_type}': send application/json, application/x-ndjson or text/csv"
        ),
    })?;
    let body = read_body(req, settings.max_body).await?;
    let batch = convert::convert(encoding, &body, &settings.rules)?;
    let rows = batch.rows();
    let (method, url, content_type, payload) = match &settings.destination {
        Destination::Table(table) => (
            Method::Post,
            format!("{}/tables/{table}/upload?mode=append", settings.url),
            "application/vnd.apache.arrow.stream",
            batch.to_ipc()?,
        ),
        Destination::Landing { volume, prefix } => {
            let data = batch.to_ndjson()?;
            let name = hex::encode(&Sha256::digest(&body)[..16]);
            (
                Method::Put,
                format!("{}/volumes/{volume}/{prefix}/{name}.json", settings.url),
                "application/x-ndjson",
                data,
            )
        }
    };
    let request = Request::builder()
        .method(method)
        .uri(&url)
        .header("authorization", format!("Bearer {}", settings.token))
        .header("content-type", content_type)
        .body(payload)
        .build();
    let response: Response = spin_sdk::http::send(request).await.map_err(|e| Rejection {
        status: 502,
        message: format!("handing the batch to Sluice failed: {e}"),
    })?;
    let status = *response.status();
    let upstream: Value = serde_json::from_slice(response.body())
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(response.body()).into_owned()));
    if !(200..300).contains(&status) {
        // The caller's fault stays the caller's fault; anything else is a
        // bad gateway.
        let status = if (400..500).contains(&status) && status != 401 && status != 403 {
            status
        } else {
            502
        };
        let detail = upstream
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| upstream.to_string());
        return Err(Rejection {
            status,
            message: format!("Sluice refused the batch: {detail}"),
        });
    }
    Ok(reply(200, json!({"rows": rows, "sluice": upstream})))
}

async fn read_body(req: IncomingRequest, limit: usize) -> Result<Vec<u8>, Rejection> {
    let mut body = Vec::new();
    let mut stream = req.into_body_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Rejection {
            status: 400,
            message: format!("reading the body: {e}"),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(Rejection {
                status: 413,
                message: format!("the body is larger than {limit} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
