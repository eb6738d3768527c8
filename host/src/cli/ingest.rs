//! `sluice ingest`, `sluice discover` and `sluice connectors`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use sluice::builtin;
use sluice::capability::Counters;
use sluice::ingest::{Input, Job, Summary};
use sluice::session::stored_schema;
use sluice_pipeline::Format;
use sluice_sink::{Location, TableFormat, Target, WriteMode, WriteOptions};

use super::{Env, cores, key_values};

/// `sluice ingest`.
#[derive(clap::Args)]
pub struct IngestArgs {
    /// A file, directory or glob: a local path or s3://, gs://, az:// URL.
    pub source: Option<String>,
    /// Input format (for the built-in files connector).
    #[arg(long, short)]
    pub format: Option<Format>,
    /// Target table: a local path or object-store URL.
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
    /// Run this connector component (.wasm) instead of the files connector.
    #[arg(long, value_name = "FILE.wasm")]
    pub connector: Option<PathBuf>,
    /// The connector's config (JSON), with --connector.
    #[arg(long, value_name = "JSON")]
    pub config: Option<String>,
    /// The stream to read, with --connector [default: the first].
    #[arg(long)]
    pub stream: Option<String>,
    /// A URL prefix the connector may read (repeatable), with --connector.
    #[arg(long = "grant", value_name = "PREFIX")]
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
    #[arg(long, default_value_t = sluice::split::DEFAULT_SPLIT_BYTES)]
    pub split_bytes: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            parallelism: None,
            target_file_mib: 128,
            split_bytes: sluice::split::DEFAULT_SPLIT_BYTES,
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
}

impl From<FormatArg> for TableFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Delta => TableFormat::Delta,
            FormatArg::Parquet => TableFormat::Parquet,
        }
    }
}

/// `sluice connectors`.
pub async fn connectors(env: &Env, json: bool) -> Result<()> {
    let runtime = env.runtime()?;
    let mut specs = Vec::new();
    for (name, wasm) in builtin::all() {
        let loaded = runtime
            .load(wasm)
            .with_context(|| format!("loading built-in connector '{name}'"))?;
        let spec = sluice::connectors::spec_of(&runtime, &loaded).await?;
        specs.push((spec, loaded.sha256));
    }
    if json {
        let out: Vec<_> = specs
            .iter()
            .map(|(s, sha)| {
                serde_json::json!({
                    "name": s.name, "version": s.version, "description": s.description,
                    "modes": s.modes.iter().map(sluice::connectors::mode_name).collect::<Vec<_>>(),
                    "config_schema": serde_json::from_str::<serde_json::Value>(&s.config_schema).unwrap_or_default(),
                    "sha256": sha,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (s, sha) in &specs {
            let modes: Vec<&str> = s.modes.iter().map(sluice::connectors::mode_name).collect();
            println!("{} {}  {}", s.name, s.version, s.description);
            println!("  modes: {}", modes.join(", "));
            println!("  sha256: {sha}");
            println!(
                "  config schema: {}",
                s.config_schema
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    Ok(())
}

/// `sluice discover`.
pub async fn discover(env: &Env, args: DiscoverArgs) -> Result<()> {
    let runtime = env.runtime()?;
    let loaded = runtime.load(builtin::FILES)?;
    let input = Input::Files {
        source: args.source.clone(),
        format: args.format,
        options: key_values(&args.options)?,
    };
    // Discover needs no table; any location will do for the unused target.
    let target = Target::new(
        Location::parse(".", Default::default())?,
        TableFormat::Delta,
        WriteOptions::default(),
    );
    let job = Job {
        runtime,
        connector: loaded,
        input,
        target,
        mode: WriteMode::Append,
        parallelism: 1,
        split_bytes: sluice::split::DEFAULT_SPLIT_BYTES,
        storage_options: env.storage.clone(),
        counters: Arc::new(Counters::default()),
        projection: None,
        redactor: Default::default(),
    };
    let (stream, bytes) = job.discover().await?;
    let schema = stored_schema(&stream.schema);
    if args.json {
        println!("{}", serde_json::to_string_pretty(schema.as_ref())?);
    } else {
        println!("stream '{}' ({} input bytes):", stream.info.name, bytes);
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

/// `sluice ingest`.
pub async fn ingest(env: &Env, args: IngestArgs) -> Result<()> {
    let runtime = env.runtime()?;
    let (input, wasm): (Input, Vec<u8>) = match &args.connector {
        None => {
            let Some(source) = &args.source else {
                bail!(
                    "give a SOURCE to read (a file, directory or glob), or --connector with --config"
                );
            };
            let Some(format) = args.format else {
                bail!("give the input --format (csv, json or parquet)");
            };
            if args.config.is_some() || !args.grants.is_empty() {
                bail!("--config and --grant go with --connector");
            }
            let input = Input::Files {
                source: source.clone(),
                format,
                options: key_values(&args.options)?,
            };
            (input, builtin::FILES.to_vec())
        }
        Some(path) => {
            let wasm = std::fs::read(path)
                .with_context(|| format!("reading connector {}", path.display()))?;
            let Some(config) = &args.config else {
                bail!("--connector needs its --config (JSON)");
            };
            let input = Input::Connector {
                config: config.clone(),
                stream: args.stream.clone(),
                grants: args.grants.clone(),
            };
            (input, wasm)
        }
    };
    let mode = match args.mode {
        ModeArg::Overwrite => WriteMode::Overwrite,
        ModeArg::Append => WriteMode::Append,
    };
    let table = env.location(&args.table)?;
    run_job(
        env,
        runtime,
        &wasm,
        input,
        table,
        args.table_format.into(),
        mode,
        None,
        &args.tuning,
    )
    .await
    .map(|_| ())
}

/// Runs a batch ingest with a progress bar and prints its summary.
#[expect(clippy::too_many_arguments, reason = "one call site per command")]
pub async fn run_job(
    env: &Env,
    runtime: sluice::runtime::Runtime,
    wasm: &[u8],
    input: Input,
    table: Location,
    format: TableFormat,
    mode: WriteMode,
    projection: Option<sluice_pipeline::Projection>,
    tuning: &Tuning,
) -> Result<Summary> {
    let loaded = runtime.load(wasm)?;
    let target = Target::new(table.clone(), format, tuning.write_options()?);
    let job = Job {
        runtime,
        connector: loaded,
        input,
        target,
        mode,
        parallelism: tuning.lanes()?,
        split_bytes: tuning.split_bytes,
        storage_options: env.storage.clone(),
        counters: Arc::new(Counters::default()),
        projection,
        redactor: Default::default(),
    };
    let counters = job.counters.clone();

    let bar = indicatif::ProgressBar::hidden();
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    }
    let ticker = {
        let (bar, counters) = (bar.clone(), counters.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(counters.bytes_read.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let b = bar.clone();
    let result = job.run(move |total| b.set_length(total)).await;
    ticker.abort();
    bar.finish_and_clear();
    let summary = result?;
    print_summary(&summary, &table);
    Ok(summary)
}

fn print_summary(s: &Summary, table: &Location) {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let version = s
        .committed
        .version
        .map(|v| format!(", version {v}"))
        .unwrap_or_default();
    // Counters for people (rows-dropped, ...) go in the summary; timings
    // (`*-us`) go to the log.
    let extra: String = s
        .counters
        .iter()
        .filter(|(k, _)| !k.ends_with("-us"))
        .map(|(k, v)| format!(", {v} {k}"))
        .collect();
    println!(
        "ingested {} files, {} rows, {} bytes in {:.2} s ({:.0} rows/s) into {}{}{}",
        s.files,
        s.committed.rows,
        s.input_bytes,
        secs,
        s.committed.rows as f64 / secs,
        table.display(),
        version,
        extra
    );
    let encode_us = s
        .counters
        .iter()
        .find(|(k, _)| k == "ipc-encode-us")
        .map_or(0, |c| c.1);
    tracing::info!(
        "timings: connector {:.3}s, ipc encode {:.3}s, ipc decode {:.3}s; wrote {} files ({} bytes)",
        s.connector_time.as_secs_f64(),
        encode_us as f64 / 1e6,
        s.decode_time.as_secs_f64(),
        s.committed.files,
        s.committed.bytes
    );
}
