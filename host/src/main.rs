//! `sluice`: ingest files and connector streams into lakehouse tables.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use sluice::capability::Counters;
use sluice::grants::Grants;
use sluice::ingest::{Input, Job, Summary};
use sluice::runtime::{Limits, Loaded, Runtime};
use sluice::session::Session;
use sluice::{builtin, capability::HostState};
use sluice_pipeline::{Format, Ingest};
use sluice_sink::{Location, TableFormat, Target, WriteMode, WriteOptions};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Bring data into lakehouse tables with WebAssembly connectors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
}

#[derive(Subcommand)]
enum Command {
    /// Load files (or a connector's stream) into a table, replacing it by default.
    Ingest(IngestArgs),
    /// List the built-in connectors and their specs.
    Connectors {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the schema a source would produce.
    Discover {
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
    },
}

#[derive(clap::Args)]
struct IngestArgs {
    /// A file, directory or glob: a local path or s3://, gs://, az:// URL.
    source: Option<String>,
    /// Input format (for the built-in files connector).
    #[arg(long, short)]
    format: Option<Format>,
    /// Target table: a local path or object-store URL.
    #[arg(long, short)]
    table: String,
    /// Replace the table (create or replace) or append to it.
    #[arg(long, value_enum, default_value_t = ModeArg::Overwrite)]
    mode: ModeArg,
    /// Table format.
    #[arg(long, value_enum, default_value_t = FormatArg::Delta)]
    table_format: FormatArg,
    /// Reader option as key=value (repeatable), Auto Loader names: header,
    /// delimiter, inferColumnTypes, schemaHints, mode, rescuedDataColumn, ...
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Run this connector component (.wasm) instead of the files connector.
    #[arg(long, value_name = "FILE.wasm")]
    connector: Option<PathBuf>,
    /// The connector's config (JSON), with --connector.
    #[arg(long, value_name = "JSON")]
    config: Option<String>,
    /// The stream to read, with --connector [default: the first].
    #[arg(long)]
    stream: Option<String>,
    /// A URL prefix the connector may read (repeatable), with --connector.
    #[arg(long = "grant", value_name = "PREFIX")]
    grants: Vec<String>,
    /// Parallel lanes (connector instance + file writer each) [default: cores].
    #[arg(long)]
    parallelism: Option<usize>,
    /// Target size of a data file, in MiB.
    #[arg(long, default_value_t = 128)]
    target_file_mib: u64,
    /// Read large plain CSV / NDJSON files in parallel byte ranges of this
    /// many bytes (0: never split; -o multiLine=true also reads files whole).
    #[arg(long, default_value_t = sluice::split::DEFAULT_SPLIT_BYTES)]
    split_bytes: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Overwrite,
    Append,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Delta,
    Parquet,
}

fn mode_name(m: &sluice::bindings::SyncMode) -> &'static str {
    use sluice::bindings::SyncMode;
    match m {
        SyncMode::FullRefresh => "full-refresh",
        SyncMode::Incremental => "incremental",
        SyncMode::Streaming => "streaming",
    }
}

fn storage_options(cli: &Cli) -> Result<HashMap<String, String>> {
    let mut out: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    for pair in &cli.storage_options {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--storage-option '{pair}' must be key=value"))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn cache_dir(cli: &Cli) -> Option<PathBuf> {
    cli.cache_dir.clone().or_else(|| {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("sluice"))
    })
}

fn runtime(cli: &Cli) -> Result<Runtime> {
    if !cli.component_timeout.is_finite() || cli.component_timeout <= 0.0 {
        bail!("--component-timeout must be a positive number of seconds");
    }
    let limits = Limits {
        memory_bytes: cli
            .component_memory
            .checked_mul(1 << 20)
            .context("--component-memory is too large")?,
        call_timeout: Duration::from_secs_f64(cli.component_timeout),
    };
    Runtime::new(cache_dir(cli), limits)
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Connectors { json } => connectors(&cli, *json).await,
        Command::Discover {
            source,
            format,
            options,
            json,
        } => discover(&cli, source, *format, options, *json).await,
        Command::Ingest(args) => ingest(&cli, args).await,
    }
}

async fn connectors(cli: &Cli, json: bool) -> Result<()> {
    let runtime = runtime(cli)?;
    let mut specs = Vec::new();
    for (name, wasm) in builtin::all() {
        let loaded = runtime
            .load(wasm)
            .with_context(|| format!("loading built-in connector '{name}'"))?;
        let (r, l) = (runtime.clone(), loaded.clone());
        let spec = tokio::task::spawn_blocking(move || {
            let host = HostState::new(
                "spec",
                Grants::default(),
                tokio::runtime::Handle::current(),
                Default::default(),
            );
            Session::new(&r, &l, host)?.spec()
        });
        let spec = spec.await??;
        specs.push((spec, loaded.sha256));
    }
    if json {
        let out: Vec<_> = specs
            .iter()
            .map(|(s, sha)| {
                serde_json::json!({
                    "name": s.name, "version": s.version, "description": s.description,
                    "modes": s.modes.iter().map(mode_name).collect::<Vec<_>>(),
                    "config_schema": serde_json::from_str::<serde_json::Value>(&s.config_schema).unwrap_or_default(),
                    "sha256": sha,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (s, sha) in &specs {
            let modes: Vec<&str> = s.modes.iter().map(mode_name).collect();
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

fn job(
    cli: &Cli,
    input: Input,
    loaded: Loaded,
    runtime: Runtime,
    target: Target,
    mode: WriteMode,
    parallelism: usize,
) -> Result<Job> {
    Ok(Job {
        runtime,
        connector: loaded,
        input,
        target,
        mode,
        parallelism,
        split_bytes: sluice::split::DEFAULT_SPLIT_BYTES,
        storage_options: storage_options(cli)?,
        counters: Arc::new(Counters::default()),
    })
}

async fn discover(
    cli: &Cli,
    source: &str,
    format: Format,
    options: &[String],
    json: bool,
) -> Result<()> {
    let runtime = runtime(cli)?;
    let loaded = runtime.load(builtin::FILES)?;
    let input = Input::Files {
        source: source.to_string(),
        format,
        options: Ingest::parse_options(options)?,
    };
    // Discover needs no table; any location will do for the unused target.
    let target = Target::new(
        Location::parse(".", HashMap::new())?,
        TableFormat::Delta,
        WriteOptions::default(),
    );
    let job = job(cli, input, loaded, runtime, target, WriteMode::Append, 1)?;
    let (stream, bytes) = job.discover().await?;
    let schema = sluice::session::stored_schema(&stream.schema);
    if json {
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

async fn ingest(cli: &Cli, args: &IngestArgs) -> Result<()> {
    let runtime = runtime(cli)?;
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
            let options = Ingest::parse_options(&args.options)?;
            (
                Input::Files {
                    source: source.clone(),
                    format,
                    options,
                },
                builtin::FILES.to_vec(),
            )
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
    let loaded = runtime.load(&wasm)?;
    let location = Location::parse(&args.table, storage_options(cli)?)?;
    let table_format = match args.table_format {
        FormatArg::Delta => TableFormat::Delta,
        FormatArg::Parquet => TableFormat::Parquet,
    };
    if args.target_file_mib == 0 {
        bail!("--target-file-mib must be at least 1");
    }
    let write = WriteOptions {
        target_file_bytes: args.target_file_mib << 20,
        ..WriteOptions::default()
    };
    let target = Target::new(location.clone(), table_format, write);
    let mode = match args.mode {
        ModeArg::Overwrite => WriteMode::Overwrite,
        ModeArg::Append => WriteMode::Append,
    };
    let parallelism = args.parallelism.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(2)
    });
    if parallelism == 0 {
        bail!("--parallelism must be at least 1");
    }
    let mut job = job(cli, input, loaded, runtime, target, mode, parallelism)?;
    job.split_bytes = args.split_bytes;
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
    print_summary(&summary, &location);
    Ok(())
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
