//! The command line: one module per command, sharing the global options and
//! the environment they resolve to.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sluice::engine::{Engine, Limits};
use sluice_location::Location;

pub mod connector;
pub mod console;
pub mod copy_into;
pub mod ingest;
pub mod run;
pub mod serve;
pub mod signals;
pub mod sql;
pub mod stream;
pub mod upkeep;

/// Options every command takes.
#[derive(clap::Args)]
pub struct Global {
    /// Directory for compiled components [default: the user cache directory].
    #[arg(long, global = true, env = "SLUICE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Wall-clock limit for one call into a connector, in seconds.
    #[arg(long, global = true, default_value_t = 600.0)]
    component_timeout: f64,
    /// Memory limit of a connector instance, in MiB.
    #[arg(long, global = true, default_value_t = 1024)]
    component_memory: usize,
    /// Object-store option for sources and tables, as key=value (repeatable);
    /// AWS_*, GOOGLE_* and AZURE_* environment variables are read too.
    #[arg(long = "storage-option", global = true, value_name = "KEY=VALUE")]
    storage_options: Vec<String>,
    /// Where tables named without a path live (SQL `CREATE TABLE events ...`).
    #[arg(
        long,
        global = true,
        env = "SLUICE_WAREHOUSE",
        default_value = "warehouse"
    )]
    warehouse: String,
    /// The Iceberg catalog: a SQL database (sqlite:///path/catalog.db or
    /// postgres://user@host/db). Default: catalog.db at the root of a local
    /// warehouse.
    #[arg(long, global = true, env = "SLUICE_CATALOG")]
    catalog: Option<String>,
}

/// What the global options and the environment resolve to.
#[derive(Clone)]
pub struct Env {
    /// Object-store options.
    pub storage: HashMap<String, String>,
    /// The component cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Component limits.
    pub limits: Limits,
    /// The warehouse root for bare table names.
    pub warehouse: String,
    /// The Iceberg catalog's URI, if not the default.
    pub catalog: Option<String>,
}

impl Env {
    /// Reads the environment (credentials, cache location) and checks the
    /// global options.
    pub fn read(g: &Global) -> Result<Self> {
        let mut storage: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
            })
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        for pair in &g.storage_options {
            let (k, v) = pair
                .split_once('=')
                .with_context(|| format!("--storage-option '{pair}' must be key=value"))?;
            storage.insert(k.to_string(), v.to_string());
        }
        let cache_dir = g.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("sluice"))
        });
        if !g.component_timeout.is_finite() || g.component_timeout <= 0.0 {
            bail!("--component-timeout must be a positive number of seconds");
        }
        let limits = Limits {
            memory_bytes: g
                .component_memory
                .checked_mul(1 << 20)
                .context("--component-memory is too large")?,
            call_timeout: Duration::from_secs_f64(g.component_timeout),
            ..Limits::default()
        };
        Ok(Env {
            storage,
            cache_dir,
            limits,
            warehouse: g.warehouse.clone(),
            catalog: g.catalog.clone(),
        })
    }

    /// The engine, tuned by `tuning`.
    pub fn engine(&self, tuning: &ingest::Tuning) -> Result<Engine> {
        let mut engine = Engine::new(
            self.cache_dir.clone(),
            self.limits.clone(),
            self.storage.clone(),
            &self.warehouse,
        )?;
        engine.catalog = self.catalog.clone();
        engine.parallelism = tuning.lanes()?;
        engine.split_bytes = tuning.split_bytes;
        engine.write = tuning.write_options()?;
        Ok(engine)
    }

    /// A table or checkpoint location.
    pub fn location(&self, text: &str) -> Result<Location> {
        Ok(Location::parse(text, self.storage.clone())?)
    }
}

/// Parses `key=value` options, refusing malformed and repeated pairs.
pub fn key_values(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    Ok(sluice_pipeline::Ingest::parse_options(pairs)?)
}

/// The number of cores, the default parallelism.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2)
}

/// Bytes for people: `1.2 MB`.
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / 1e9),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1 << 10 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} bytes"),
    }
}
