//! `sluice stream` (Auto Loader) and `sluice files` (its `cloud_files_state`).

use std::time::Duration;

use anyhow::Result;
use sluice::engine::{CheckpointFiles, Trigger};
use sluice_pipeline::incremental::parse_duration;
use sluice_pipeline::{Format, Load, LoadMode, Pipeline};

use super::console::{Console, version};
use super::ingest::{FormatArg, Tuning, use_connector};
use super::{Env, key_values, signals};

/// `sluice stream`.
#[derive(clap::Args)]
pub struct StreamArgs {
    /// Where files land: a directory or glob, local or s3://, gs://, az://.
    #[arg(long, required_unless_present = "connector")]
    pub source: Option<String>,
    /// Stream from this connector instead of files: a built-in one
    /// (`kafka`, configured with -o: kafka.bootstrap.servers, subscribe,
    /// startingOffsets, maxOffsetsPerTrigger, ...) or a component (.wasm,
    /// with --config) that plans its own batches.
    #[arg(long, value_name = "kafka|FILE.wasm", conflicts_with = "source")]
    pub connector: Option<std::path::PathBuf>,
    /// The connector's config (JSON), with --connector FILE.wasm.
    #[arg(long, value_name = "JSON", requires = "connector")]
    pub config: Option<String>,
    /// What the connector may reach beyond its own servers (repeatable):
    /// tcp://HOST:PORT, with `*.domain` and port `*` allowed (the brokers
    /// a Kafka cluster advertises).
    #[arg(long = "grant", value_name = "tcp://HOST:PORT", requires = "connector")]
    pub grants: Vec<String>,
    /// The table: a path or URL, or a name under the warehouse.
    #[arg(long, short)]
    pub table: String,
    /// The checkpoint: where the stream records its progress (one per
    /// stream) [default: `<table>/_sluice/streaming`].
    #[arg(long)]
    pub checkpoint: Option<String>,
    /// Input format (or -o cloudFiles.format=...).
    #[arg(long, short)]
    pub format: Option<Format>,
    /// When batches run: `available-now` (the backlog, then exit),
    /// `every=10s` (a batch per interval) or `continuous` (the next batch
    /// as soon as one commits).
    #[arg(long, default_value = "continuous")]
    pub trigger: Trigger,
    /// How often a continuous stream lists the source when it is idle.
    #[arg(long, default_value = "500ms", value_parser = duration)]
    pub poll_interval: Duration,
    /// Option as key=value (repeatable), by Auto Loader's names with or
    /// without `cloudFiles.`: maxFilesPerTrigger, maxBytesPerTrigger,
    /// schemaEvolutionMode, includeExistingFiles, cleanSource, ... and the
    /// reader options (header, schemaHints, ...).
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Table format (incremental loads need Delta).
    #[arg(long, value_enum, default_value_t = FormatArg::Delta)]
    pub table_format: FormatArg,
    #[command(flatten)]
    pub tuning: Tuning,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// `sluice stream`.
pub async fn stream(env: &Env, args: StreamArgs) -> Result<()> {
    let mut pipeline = Pipeline {
        mode: LoadMode::Stream,
        source: args.source.clone(),
        format: args.format,
        options: key_values(&args.options)?,
        table_format: args.table_format.into(),
        checkpoint: args.checkpoint.clone(),
        ..Pipeline::new(&args.table)
    };
    let component_file = match &args.connector {
        Some(c) => use_connector(&mut pipeline, c, args.config.as_deref(), None, &args.grants)?,
        None => None,
    };
    let load = Load {
        component_file,
        ..Load::new(pipeline)
    };
    let trigger = match args.trigger {
        Trigger::Continuous { .. } => Trigger::Continuous {
            poll: args.poll_interval,
        },
        t => t,
    };
    let stop = signals::listen();
    let r = env
        .engine(&args.tuning)?
        .run(&load, &trigger, &mut Console::new(), &stop)
        .await?;
    let unit = if args.connector.is_some() {
        String::new()
    } else {
        format!(", {} files", r.files)
    };
    println!(
        "stream: {} batches{unit}, {} rows in {:.2} s into {}{}{}",
        r.batches,
        r.rows,
        r.seconds,
        r.table,
        version(&r),
        if r.stopped {
            " (stopped by a signal)"
        } else {
            ""
        }
    );
    Ok(())
}

/// `sluice files`.
#[derive(clap::Args)]
pub struct FilesArgs {
    /// A checkpoint, or a table (a path or URL, or a name under the
    /// warehouse): the files its COPY INTO loads, its streaming-table
    /// refreshes and its pipelines' streams discovered.
    pub location: String,
    /// Only the stream of this pipeline (`sluice run`, `sluice serve`).
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `sluice files`.
pub async fn files(env: &Env, args: FilesArgs) -> Result<()> {
    let found = env
        .engine(&Tuning::default())?
        .files(&args.location, args.pipeline.as_deref())
        .await?;
    if args.json {
        let out: Vec<_> = found
            .iter()
            .flat_map(|cp| cp.files.iter().map(move |f| (cp, f)))
            .map(|(cp, f)| {
                serde_json::json!({
                    "path": f.path,
                    "size": f.size,
                    "modification_time": time(f.modified_ms),
                    "discovery_time": time(f.discovered_ms),
                    "commit_time": f.committed_ms.map(time),
                    "batch_id": f.batch,
                    "status": f.status,
                    "checkpoint": cp.location,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for cp in &found {
        print_checkpoint(cp);
    }
    Ok(())
}

fn print_checkpoint(cp: &CheckpointFiles) {
    println!(
        "checkpoint {} (appId sluice-{}): {} files, {} batches",
        cp.location,
        cp.id,
        cp.files.len(),
        cp.batches
    );
    for f in &cp.files {
        println!(
            "{:>6}  {:<9}  {:>10}  discovered {}  committed {}  {}",
            f.batch,
            f.status,
            f.size,
            time(f.discovered_ms),
            f.committed_ms.map(time).unwrap_or_else(|| "-".into()),
            f.path
        );
    }
    for (id, batch, reason) in &cp.schemas {
        println!("schema {id} (from batch {batch}): {reason}");
    }
}
