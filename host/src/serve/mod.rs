//! `sluice serve`: uploads, connector uploads, pipelines and their
//! triggers (HTTP, object-store event webhooks, cron schedules), reports
//! and governance, over HTTP (axum on tokio).
//!
//! The service keeps its state on object storage under one root (`state`
//! in the configuration), so a new process picks up where another stopped:
//!
//! ```text
//! <state>/pipelines/<name>.json     pipeline definitions
//! <state>/connectors/<sha256>.wasm  uploaded components (+ .json description)
//! <state>/runs/<name>/<id>.json     run records
//! <state>/audit/<ms>-<id>.json      the audit log, one object per entry
//! <state>/uploads/<id>/<file>       upload staging (removed after the load)
//! <state>/event_log/                the event log, a Delta table
//! ```
//!
//! It also hosts `wasi:http` components (edge functions, see
//! [`crate::functions`]) at `/fn/{name}`.

mod api;
mod audit;
pub mod auth;
mod events;
mod runs;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use object_store::ObjectStore;
use object_store::path::Path;
use serde::Deserialize;

use crate::connectors::ConnectorStore;
use crate::functions::{FunctionConfig, Functions};
use crate::pipeline::{Secrets, Services};

pub use auth::{Role, TokenConfig};

/// The service's configuration (`sluice.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the service keeps its state (a path or URL).
    #[serde(default = "default_state")]
    pub state: String,
    /// Where tables named without a path live [default: the CLI's].
    #[serde(default)]
    pub warehouse: Option<String>,
    /// A file of `NAME=value` secrets.
    #[serde(default)]
    pub secrets_file: Option<PathBuf>,
    /// Largest upload body, in MiB.
    #[serde(default = "default_max_upload")]
    pub max_upload_mib: u64,
    /// Largest connector component, in MiB.
    #[serde(default = "default_max_connector")]
    pub max_connector_mib: u64,
    /// How often stream pipelines list their source as a backstop to
    /// event notifications (`5m`, `30s`; `0s`: never).
    #[serde(default = "default_backstop")]
    pub backstop_interval: String,
    /// Volumes: name → object-store prefix uploads go to.
    #[serde(default)]
    pub volumes: BTreeMap<String, String>,
    /// Bearer tokens.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Hosted `wasi:http` components, served at `/fn/{name}`.
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionConfig>,
    /// Most function requests that run at once (instance slots reserved
    /// by the pooling allocator).
    #[serde(default = "default_max_concurrent_functions")]
    pub max_concurrent_functions: u32,
    /// Connector instances that may exist at once (slots the pooling
    /// allocator reserves: each run or upload uses one per lane).
    #[serde(default = "default_connector_slots")]
    pub connector_slots: u32,
    /// The directory relative paths in the file are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_state() -> String {
    "sluice-state".into()
}
fn default_max_upload() -> u64 {
    1024
}
fn default_max_connector() -> u64 {
    64
}
fn default_max_concurrent_functions() -> u32 {
    64
}
fn default_connector_slots() -> u32 {
    256
}
fn default_backstop() -> String {
    "5m".into()
}

impl ServeConfig {
    /// Reads a TOML configuration file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: ServeConfig =
            toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        config.base_dir = path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        Ok(config)
    }

    /// The configuration without a file: loopback, local state, no tokens.
    pub fn local() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// Everything a request handler shares.
pub struct App {
    services: Services,
    config: ServeConfig,
    tokens: auth::Tokens,
    state: Arc<dyn ObjectStore>,
    state_root: Path,
    state_url: String,
    runs: runs::Runs,
    audit: audit::Audit,
    metrics: runs::Metrics,
    backstop: Option<Duration>,
    functions: Functions,
    events: events::EventLog,
}

/// Starts the service and serves until Ctrl-C or SIGTERM; `ready` gets
/// the bound address.
pub async fn serve(
    mut services: Services,
    config: ServeConfig,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<()> {
    let tokens = auth::Tokens::new(&config.tokens)?;
    if tokens.is_empty() {
        anyhow::bail!(
            "configure at least one token ([[tokens]] with token_env or token_sha256): every endpoint but /health needs one"
        );
    }
    for (name, prefix) in &config.volumes {
        if !sluice_pipeline::pipeline::valid_secret_name(name) {
            anyhow::bail!("volume name '{name}' may hold only letters, digits, '_', '-' and '.'");
        }
        services
            .location(prefix)
            .with_context(|| format!("volume '{name}'"))?;
    }
    let backstop =
        crate::pipeline::parse_interval(&config.backstop_interval).context("backstop_interval")?;
    let state_url = config.state.trim_end_matches('/').to_string();
    let state_location = services.location(&state_url)?;
    let (state, state_root) = state_location.store()?;
    services.connectors = Some(ConnectorStore::new(
        &services.location(&format!("{state_url}/connectors"))?,
    )?);
    if let Some(f) = &config.secrets_file {
        services.secrets = Secrets::from_file(f)?;
    }
    let functions = Functions::load(
        &config.functions,
        &config.base_dir,
        services.runtime.cache_dir(),
        &services.secrets,
        config.max_concurrent_functions,
    )?;
    let (events, event_writer) = events::EventLog::new(format!("{state_url}/event_log"));
    let (stop_events, events_stopped) = tokio::sync::oneshot::channel();
    let event_writer = tokio::spawn(event_writer.run(services.clone(), events_stopped));
    let audit = audit::Audit::new(
        state.clone(),
        state_root.clone().join("audit"),
        events.clone(),
    );
    let app = Arc::new(App {
        services,
        tokens,
        runs: runs::Runs::default(),
        metrics: runs::Metrics::default(),
        audit,
        state,
        state_root,
        state_url,
        backstop,
        functions,
        events,
        config,
    });
    runs::load_pipelines(&app).await?;
    let listener = tokio::net::TcpListener::bind(&app.config.listen)
        .await
        .with_context(|| format!("listening on {}", app.config.listen))?;
    ready(listener.local_addr()?);
    let scheduler = tokio::spawn(runs::scheduler(app.clone()));
    let router = api::router(app.clone());
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    scheduler.abort();
    // Commit the buffered events before the process ends.
    let _ = stop_events.send(());
    if tokio::time::timeout(Duration::from_secs(30), event_writer)
        .await
        .is_err()
    {
        tracing::warn!("the event log did not finish committing within 30 s");
    }
    result.context("serving HTTP")
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
