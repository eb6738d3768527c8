//! `sluice ingest`, `sluice discover` and `sluice connectors`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use sha2::Digest;
use sluice::engine::{Engine, Stop, Trigger, WriteOptions};
use sluice_pipeline::pipeline::{
    BUILTIN_CONNECTORS, ConnectorRef, TableFormatName, is_builtin_connector, is_network_grant,
};
use sluice_pipeline::{Format, Load, LoadMode, Pipeline};

use super::console::{Console, print_ingested};
use super::{Env, cores, key_values};

/// `sluice ingest`.
#[derive(clap::Args)]
pub struct IngestArgs {
    /// A file, directory or glob: a local path or s3://, gs://, az:// URL.
    pub source: Option<String>,
    /// Input format (for the built-in files connector).
    #[arg(long, short)]
    pub format: Option<Format>,
    /// The table: a path or URL (`./events`, `s3://lake/events`), or a
    /// name under the warehouse (`events`, `sales.orders`).
    #[arg(long, short)]
    pub table: String,
    /// Replace the table (create or replace) or append to it.
    #[arg(long, value_enum, default_value_t = ModeArg::Overwrite)]
    pub mode: ModeArg,
    /// Table format.
    #[arg(long, value_enum, default_value_t = FormatArg::Delta)]
    pub table_format: FormatArg,
    /// Reader option as key=value (repeatable), Auto Loader names: header,
    /// delimiter, inferColumnTypes, schemaHints, mode, rescuedDataColumn, ...
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Run this connector instead of the files connector: a built-in one
    /// (`kafka`, configured with -o) or a component (.wasm, with --config).
    #[arg(long, value_name = "kafka|FILE.wasm")]
    pub connector: Option<PathBuf>,
    /// The connector's config (JSON), with --connector.
    #[arg(long, value_name = "JSON")]
    pub config: Option<String>,
    /// The stream to read, with --connector [default: the first].
    #[arg(long)]
    pub stream: Option<String>,
    /// What the connector may reach (repeatable), with --connector: a URL
    /// prefix to read (s3://bucket/in/), or a host to connect to
    /// (tcp://HOST:PORT, kafka://HOST:PORT, postgres://HOST; `*.domain`
    /// and port `*` allowed).
    #[arg(long = "grant", value_name = "PREFIX|tcp://HOST:PORT")]
    pub grants: Vec<String>,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// How a run uses the machine.
#[derive(clap::Args, Clone)]
pub struct Tuning {
    /// Parallel lanes (connector instance + file writer each) [default: cores].
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// Target size of a data file, in MiB.
    #[arg(long, default_value_t = 128)]
    pub target_file_mib: u64,
    /// Read large plain CSV / NDJSON files in parallel byte ranges of this
    /// many bytes (0: never split; -o multiLine=true also reads files whole).
    #[arg(long, default_value_t = sluice::engine::DEFAULT_SPLIT_BYTES)]
    pub split_bytes: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            parallelism: None,
            target_file_mib: 128,
            split_bytes: sluice::engine::DEFAULT_SPLIT_BYTES,
        }
    }
}

impl Tuning {
    /// The parallelism, checked.
    pub fn lanes(&self) -> Result<usize> {
        let n = self.parallelism.unwrap_or_else(cores);
        if n == 0 {
            bail!("--parallelism must be at least 1");
        }
        Ok(n)
    }

    /// The write options, checked.
    pub fn write_options(&self) -> Result<WriteOptions> {
        if self.target_file_mib == 0 {
            bail!("--target-file-mib must be at least 1");
        }
        Ok(WriteOptions {
            target_file_bytes: self.target_file_mib << 20,
            ..WriteOptions::default()
        })
    }
}

/// `sluice discover`.
#[derive(clap::Args)]
pub struct DiscoverArgs {
    /// A file, directory or glob: a local path or s3://, gs://, az:// URL.
    source: String,
    /// Input format.
    #[arg(long, short)]
    format: Format,
    /// Reader option as key=value (repeatable), Auto Loader names.
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Replace or append.
#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Create or replace the table.
    Overwrite,
    /// Add to the table.
    Append,
}

/// The table format.
#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// Delta Lake.
    Delta,
    /// A plain directory of Parquet files.
    Parquet,
    /// An Iceberg table, named `[namespace.]table` in the catalog.
    Iceberg,
}

impl From<FormatArg> for TableFormatName {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Delta => TableFormatName::Delta,
            FormatArg::Parquet => TableFormatName::Parquet,
            FormatArg::Iceberg => TableFormatName::Iceberg,
        }
    }
}

/// `sluice connectors`.
pub async fn connectors(env: &Env, json: bool) -> Result<()> {
    let specs = env.engine(&Tuning::default())?.builtin_connectors().await?;
    if json {
        let out: Vec<_> = specs
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name, "version": s.version, "description": s.description,
                    "modes": s.modes, "config_schema": s.config_schema,
                    "sha256": s.id.trim_start_matches("sha256:"),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for s in &specs {
            println!("{} {}  {}", s.name, s.version, s.description);
            println!("  modes: {}", s.modes.join(", "));
            println!("  sha256: {}", s.id.trim_start_matches("sha256:"));
            println!("  config schema: {}", s.config_schema);
        }
    }
    Ok(())
}

/// `sluice discover`.
pub async fn discover(env: &Env, args: DiscoverArgs) -> Result<()> {
    let pipeline = Pipeline {
        source: Some(args.source.clone()),
        format: Some(args.format),
        options: key_values(&args.options)?,
        ..Pipeline::new(".")
    };
    let (stream, schema, bytes) = env.engine(&Tuning::default())?.discover(&pipeline).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(schema.as_ref())?);
    } else {
        println!("stream '{stream}' ({bytes} input bytes):");
        for f in schema.fields() {
            println!(
                "  {}: {}{}",
                f.name(),
                f.data_type(),
                if f.is_nullable() { "" } else { " not null" }
            );
        }
    }
    Ok(())
}

/// `sluice ingest`: its flags as a [`Load`].
fn load(args: &IngestArgs) -> Result<Load> {
    let mut pipeline = Pipeline {
        mode: match args.mode {
            ModeArg::Overwrite => LoadMode::Replace,
            ModeArg::Append => LoadMode::Append,
        },
        source: args.source.clone(),
        format: args.format,
        options: key_values(&args.options)?,
        table_format: args.table_format.into(),
        ..Pipeline::new(&args.table)
    };
    let Some(path) = &args.connector else {
        if args.source.is_none() {
            bail!(
                "give a SOURCE to read (a file, directory or glob), or --connector with --config"
            );
        }
        if args.format.is_none() {
            bail!("give the input --format (csv, json or parquet)");
        }
        if args.config.is_some() || !args.grants.is_empty() {
            bail!("--config and --grant go with --connector");
        }
        return Ok(Load::new(pipeline));
    };
    let component_file = use_connector(
        &mut pipeline,
        path,
        args.config.as_deref(),
        args.stream.clone(),
        &args.grants,
    )?;
    Ok(Load {
        component_file,
        ..Load::new(pipeline)
    })
}

/// Makes `pipeline` run `connector` — a built-in connector's name (`kafka`,
/// configured by the options) or a component file (configured by
/// `config`) — with `grants`; the component file to load, if any.
pub fn use_connector(
    pipeline: &mut Pipeline,
    connector: &std::path::Path,
    config: Option<&str>,
    stream: Option<String>,
    grants: &[String],
) -> Result<Option<PathBuf>> {
    let config = config
        .map(|c| serde_json::from_str(c).context("--config must be JSON"))
        .transpose()?;
    let name = connector.to_str().unwrap_or_default();
    let (id, config, file) = if is_builtin_connector(name) && !connector.exists() {
        let config = config.unwrap_or_else(|| serde_json::json!({}));
        (name.to_string(), config, None)
    } else {
        let wasm = std::fs::read(connector).with_context(|| {
            format!(
                "reading connector {} (a .wasm component, or a built-in connector: {})",
                connector.display(),
                BUILTIN_CONNECTORS.join(", ")
            )
        })?;
        let Some(config) = config else {
            bail!("--connector FILE.wasm needs its --config (JSON)");
        };
        let id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&wasm)));
        (id, config, Some(connector.to_path_buf()))
    };
    pipeline.connector = Some(ConnectorRef { id, config, stream });
    (pipeline.grants.network, pipeline.grants.read) =
        grants.iter().cloned().partition(|g| is_network_grant(g));
    Ok(file)
}

/// `sluice ingest`.
pub async fn ingest(env: &Env, args: IngestArgs) -> Result<()> {
    let load = load(&args)?;
    run_batch(&env.engine(&args.tuning)?, &load).await
}

/// Runs a batch load with a progress bar and prints its summary.
pub async fn run_batch(engine: &Engine, load: &Load) -> Result<()> {
    let report = engine
        .run(
            load,
            &Trigger::AvailableNow,
            &mut Console::new(),
            &Stop::new(),
        )
        .await?;
    print_ingested(&report);
    Ok(())
}
