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
//! [`crate::wasm::functions`]) at `/fn/{name}`.

mod api;
mod audit;
pub(crate) mod auth;
mod events;
mod listen;
mod metrics;
mod runs;
mod scheduler;
mod state;
mod tables;
mod uploads;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use object_store::ObjectStore;
use object_store::path::Path;
use serde::Deserialize;

use crate::engine::redact::Replace;
use crate::engine::{Engine, Secrets};
use crate::wasm::functions::{FunctionConfig, Functions};
use sluice_sink::Location;

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
    /// Most bytes a compressed upload may decompress to, in MiB.
    #[serde(default = "default_max_decompressed")]
    pub max_upload_decompressed_mib: u64,
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
    /// How long a run or upload waits for a free connector slot before it
    /// fails as busy (503, retry).
    #[serde(default = "default_slot_wait")]
    pub connector_slot_wait: String,
    /// Linear memory all connector instances together may hold, in MiB:
    /// past it, growing instances wait, then fail their run or upload as
    /// busy (503, retry).
    #[serde(default = "default_memory_budget")]
    pub connector_memory_budget_mib: u64,
    /// Open connections at most; past it the longest-idle connection is
    /// closed to make room (at most three quarters of the process's file
    /// descriptor limit).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Time a client has to send a request's headers (`10s`); a connection
    /// idle that long between requests is closed too.
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout: String,
    /// Time a request body may go without sending a byte (`30s`).
    #[serde(default = "default_body_idle")]
    pub body_idle_timeout: String,
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
fn default_slot_wait() -> String {
    "60s".into()
}
fn default_max_decompressed() -> u64 {
    4096
}
fn default_memory_budget() -> u64 {
    2048
}
fn default_max_connections() -> u32 {
    1024
}
fn default_header_timeout() -> String {
    "10s".into()
}
fn default_body_idle() -> String {
    "30s".into()
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
    engine: Engine,
    config: ServeConfig,
    tokens: auth::Tokens,
    state: Arc<dyn ObjectStore>,
    /// Where the state lives; every object under it is named through
    /// [`App::state_path`].
    state_location: Location,
    /// The volumes, by name.
    volumes: BTreeMap<String, Location>,
    /// Hides the service's own locations in what it tells callers.
    public: Public,
    runs: runs::Runs,
    audit: audit::Audit,
    metrics: metrics::Metrics,
    backstop: Option<Duration>,
    functions: Functions,
    events: events::EventLog,
}

/// Starts the service and serves until Ctrl-C or SIGTERM; `ready` gets
/// the bound address.
pub async fn serve(
    mut engine: Engine,
    config: ServeConfig,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<()> {
    let tokens = auth::Tokens::new(&config.tokens)?;
    if tokens.is_empty() {
        anyhow::bail!(
            "configure at least one token ([[tokens]] with token_env or token_sha256): every endpoint but /health needs one"
        );
    }
    let mut volumes = BTreeMap::new();
    for (name, prefix) in &config.volumes {
        if !sluice_pipeline::pipeline::valid_secret_name(name) {
            anyhow::bail!("volume name '{name}' may hold only letters, digits, '_', '-' and '.'");
        }
        let location = engine
            .location(prefix)
            .with_context(|| format!("volume '{name}'"))?;
        volumes.insert(name.clone(), location);
    }
    let backstop =
        crate::engine::parse_interval(&config.backstop_interval).context("backstop_interval")?;
    let state_location = engine.location(config.state.trim_end_matches('/'))?;
    let (state, _) = state_location.store()?;
    engine.keep_state(&state_location)?;
    if let Some(f) = &config.secrets_file {
        engine.secrets = Secrets::from_file(f)?;
    }
    let functions = Functions::load(
        &config.functions,
        &config.base_dir,
        engine.runtime.cache_dir(),
        &engine.secrets,
        config.max_concurrent_functions,
    )?;
    let (events, event_writer) =
        events::EventLog::new(state_location.child("event_log")?.url().to_string());
    let (stop_events, events_stopped) = tokio::sync::oneshot::channel();
    let event_writer = tokio::spawn(event_writer.run(engine.clone(), events_stopped));
    let audit = audit::Audit::new(
        state.clone(),
        state_path(&state_location, "audit")?,
        events.clone(),
    );
    let public = Public::new(&engine, &state_location, &volumes)?;
    let app = Arc::new(App {
        engine,
        tokens,
        runs: runs::Runs::default(),
        metrics: metrics::Metrics::default(),
        audit,
        state,
        state_location,
        volumes,
        public,
        backstop,
        functions,
        events,
        config,
    });
    state::load_pipelines(&app).await?;
    let interrupted = state::mark_interrupted(&app).await?;
    if interrupted > 0 {
        tracing::warn!(
            "{interrupted} runs were left in progress by a process that stopped; marked interrupted"
        );
    }
    app.sweep_staged(STAGED_MAX_AGE).await;
    let header_timeout = crate::engine::parse_interval(&app.config.header_read_timeout)
        .context("header_read_timeout")?
        .context("header_read_timeout must be more than 0s")?;
    let limits = listen::Limits::capped(app.config.max_connections as usize, header_timeout);
    let listener = tokio::net::TcpListener::bind(&app.config.listen)
        .await
        .with_context(|| format!("listening on {}", app.config.listen))?;
    ready(listener.local_addr()?);
    let scheduler = tokio::spawn(scheduler::scheduler(app.clone()));
    let router = api::router(app.clone())?;
    listen::serve(listener, router, limits, shutdown_signal()).await;
    scheduler.abort();
    runs::stop_kept(&app, Duration::from_secs(60)).await;
    // Commit the buffered events before the process ends.
    let _ = stop_events.send(());
    if tokio::time::timeout(Duration::from_secs(30), event_writer)
        .await
        .is_err()
    {
        tracing::warn!("the event log did not finish committing within 30 s");
    }
    Ok(())
}

/// The path in the state store of `name` under the state root.
fn state_path(state: &Location, name: &str) -> Result<Path> {
    Ok(state.child(name)?.path()?)
}

/// Staged uploads older than this belong to no upload in progress (the
/// process that staged them stopped): they are swept.
const STAGED_MAX_AGE: Duration = Duration::from_secs(3600);

impl App {
    /// The path in the state store of `name` (relative, `/`-separated,
    /// every segment checked) under the state root.
    pub fn state_path(&self, name: &str) -> Result<Path> {
        state_path(&self.state_location, name)
    }

    /// Deletes staged uploads older than `age` (an upload deletes its own
    /// when it ends; a killed process leaves them). Failures are logged.
    pub async fn sweep_staged(&self, age: Duration) {
        use futures::TryStreamExt;
        use object_store::ObjectStoreExt;
        let result = async {
            let root = self.state_path("uploads")?;
            let cutoff = chrono::Utc::now() - chrono::Duration::from_std(age)?;
            let old: Vec<Path> = self
                .state
                .list(Some(&root))
                .try_filter(|m| std::future::ready(m.last_modified < cutoff))
                .map_ok(|m| m.location)
                .try_collect()
                .await?;
            for path in &old {
                match self.state.delete(path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            anyhow::Ok(old.len())
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!("swept {n} staged uploads left by stopped uploads"),
            Err(e) => tracing::warn!("sweeping staged uploads: {e:#}"),
        }
    }
}

/// Says the service's own locations by their role (`<state>`,
/// `<warehouse>`, `<volume:NAME>`) in messages to callers, so that an error
/// never shows a path on the server.
#[derive(Debug, Default)]
pub struct Public(Replace);

impl Public {
    fn new(
        engine: &Engine,
        state: &Location,
        volumes: &BTreeMap<String, Location>,
    ) -> Result<Self> {
        let mut places = vec![
            ("<state>".to_string(), state.clone()),
            (
                "<warehouse>".to_string(),
                engine.location(&engine.warehouse)?,
            ),
        ];
        for (name, l) in volumes {
            places.push((format!("<volume:{name}>"), l.clone()));
        }
        if let Ok(dir) = std::env::current_dir()
            && let Ok(l) = engine.location(&dir.to_string_lossy())
        {
            places.push(("<cwd>".to_string(), l));
        }
        let mut names = Vec::new();
        for (role, l) in places {
            names.push((l.display(), role.clone()));
            if let Ok(path) = l.url().to_file_path() {
                names.push((
                    path.to_string_lossy().trim_end_matches('/').to_string(),
                    role,
                ));
            }
        }
        // The file system's root (a state at `/`) names nothing.
        names.retain(|(find, _)| find.len() > 1);
        Ok(Public(Replace::new(names)))
    }

    /// `text` with the service's locations named by role.
    pub fn text(&self, text: &str) -> String {
        self.0.text(text)
    }
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
