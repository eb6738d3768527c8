//! Bearer tokens, roles and the JSON errors every endpoint returns.
//!
//! Tokens are never stored in the configuration: it names an environment
//! variable that holds one, or the token's sha256. A request's token is
//! hashed and looked up; the principal it maps to says what it may do.

use std::collections::HashMap;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::failure::{Failure, Fault, describe};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: upload connectors, define pipelines and grant
    /// capabilities, and all a writer does.
    Admin,
    /// Upload files to the volumes and tables it is granted, and trigger
    /// runs of the pipelines it is granted.
    Writer,
}

/// A token as the configuration describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (for the audit log).
    pub name: String,
    /// Environment variable that holds the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Or the hex sha256 of the token.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// Its role.
    pub role: Role,
    /// Pipelines a writer may trigger (`*`: all).
    #[serde(default)]
    pub pipelines: Vec<String>,
    /// Volumes a writer may upload to (`*`: all).
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Tables a writer may upload to (`*`: all).
    #[serde(default)]
    pub tables: Vec<String>,
    /// Functions (not public ones) a writer may call (`*`: all).
    #[serde(default)]
    pub functions: Vec<String>,
}

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    pipelines: Vec<String>,
    volumes: Vec<String>,
    tables: Vec<String>,
    functions: Vec<String>,
}

fn allows(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == "*" || x == item)
}

impl Principal {
    /// Fails unless the principal is an admin.
    pub fn admin(&self, what: &str) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{what} needs the admin role; token '{}' is a writer",
                self.name
            )))
        }
    }

    fn grant(&self, list: &[String], kind: &str, item: &str) -> Result<(), ApiError> {
        if self.role == Role::Admin || allows(list, item) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "token '{}' is not granted {kind} '{item}'",
                self.name
            )))
        }
    }

    /// Fails unless the principal may run pipeline `name`.
    pub fn pipeline(&self, name: &str) -> Result<(), ApiError> {
        self.grant(&self.pipelines, "pipeline", name)
    }

    /// Fails unless the principal may upload to volume `name`.
    pub fn volume(&self, name: &str) -> Result<(), ApiError> {
        self.grant(&self.volumes, "volume", name)
    }

    /// Fails unless the principal may upload to table `name`.
    pub fn table(&self, name: &str) -> Result<(), ApiError> {
        self.grant(&self.tables, "table", name)
    }

    /// What the principal may do, as `GET /whoami` tells it.
    pub fn grants(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "role": self.role,
            "pipelines": self.pipelines,
            "volumes": self.volumes,
            "tables": self.tables,
            "functions": self.functions,
        })
    }

    /// Fails unless the principal may call function `name`.
    pub fn function(&self, name: &str) -> Result<(), ApiError> {
        self.grant(&self.functions, "function", name)
    }
}

/// Tokens by the sha256 of their value.
#[derive(Debug, Default)]
pub struct Tokens(HashMap<String, Principal>);

impl Tokens {
    /// Resolves the configured tokens; a token whose variable is unset is
    /// an error (a server that silently drops a token locks its user out).
    pub fn new(configs: &[TokenConfig]) -> anyhow::Result<Self> {
        let mut map = HashMap::new();
        for c in configs {
            let hash = match (&c.token_env, &c.token_sha256) {
                (Some(var), None) => {
                    let value = std::env::var(var).map_err(|_| {
                        anyhow::anyhow!("token '{}': environment variable {var} is not set", c.name)
                    })?;
                    if value.len() < 16 {
                        anyhow::bail!("token '{}': use at least 16 characters", c.name);
                    }
                    hash(&value)
                }
                (None, Some(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    h.to_ascii_lowercase()
                }
                (None, Some(_)) => {
                    anyhow::bail!("token '{}': token_sha256 must be 64 hex digits", c.name)
                }
                _ => anyhow::bail!(
                    "token '{}': give exactly one of token_env and token_sha256",
                    c.name
                ),
            };
            let p = Principal {
                name: c.name.clone(),
                role: c.role,
                pipelines: c.pipelines.clone(),
                volumes: c.volumes.clone(),
                tables: c.tables.clone(),
                functions: c.functions.clone(),
            };
            if map.insert(hash, p).is_some() {
                anyhow::bail!("token '{}' is configured twice", c.name);
            }
        }
        Ok(Tokens(map))
    }

    /// Whether any token is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The principal behind a request's `Authorization: Bearer` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("Authorization must be Bearer <token>"))?;
        self.0
            .get(&hash(token.trim()))
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("unknown token"))
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// An error as the API returns it: a status and a JSON body
/// `{"error": "...", "status": N}`.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, and what to do about it.
    pub message: String,
}

impl ApiError {
    /// A status with a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }

    /// 401.
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, m)
    }

    /// 403.
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, m)
    }

    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }

    /// 409: the request does not fit the resource's state.
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, m)
    }

    /// 500: our fault, not the caller's.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl ApiError {
    /// The status a fault answers with: the one place a fault becomes a
    /// status. 422 when the data is at fault (it does not parse, does not
    /// fit the table), 400 when the request is, 503 when the service is
    /// (storage, a commit that kept losing to other writers, no connector
    /// slot or memory free: retry), and 500 for an error nobody classified.
    pub fn status_of(fault: Option<Fault>) -> StatusCode {
        match fault {
            Some(Fault::Data) => StatusCode::UNPROCESSABLE_ENTITY,
            Some(Fault::Invalid) => StatusCode::BAD_REQUEST,
            Some(Fault::Busy | Fault::Storage | Fault::Conflict) => StatusCode::SERVICE_UNAVAILABLE,
            None => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The answer to a failed load or run.
    pub fn from_failure(f: &Failure) -> Self {
        ApiError::new(Self::status_of(Some(f.fault)), f.message.clone())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::new(Self::status_of(Fault::find(&e)), describe(&e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.message,
            "status": self.status.as_u16(),
        });
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // The service is busy or its storage failed: try again soon.
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        res
    }
}
