//! `sluice stream` (Auto Loader) and `sluice files` (its `cloud_files_state`).

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use sluice::incremental::{BatchReport, Config, Kind, Runner};
use sluice_checkpoint::{Checkpoint, SchemaLog};
use sluice_pipeline::incremental::parse_duration;
use sluice_pipeline::{Format, StreamOptions};
use sluice_sink::Location;

use super::ingest::{FormatArg, Tuning};
use super::signals::Shutdown;
use super::{Env, human_bytes, key_values};

/// `sluice stream`.
#[derive(clap::Args)]
pub struct StreamArgs {
    /// Where files land: a directory or glob, local or s3://, gs://, az://.
    #[arg(long)]
    pub source: String,
    /// The table.
    #[arg(long, short)]
    pub table: String,
    /// The checkpoint: where the stream records its progress (one per
    /// stream).
    #[arg(long)]
    pub checkpoint: String,
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

/// When a stream runs its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Process what is there, in batches, then stop.
    AvailableNow,
    /// One batch per interval.
    Every(Duration),
    /// The next batch as soon as the previous one commits.
    Continuous,
}

impl FromStr for Trigger {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "available-now" | "availablenow" | "available_now" => Ok(Trigger::AvailableNow),
            "continuous" => Ok(Trigger::Continuous),
            other => match other.strip_prefix("every=") {
                Some(d) => {
                    let d = parse_duration(d)?;
                    if d.is_zero() {
                        return Err("every= needs an interval above zero".into());
                    }
                    Ok(Trigger::Every(d))
                }
                None => Err(format!(
                    "unknown trigger '{s}'; use available-now, every=10s or continuous"
                )),
            },
        }
    }
}

/// Prints a batch's line.
pub fn print_batch(r: &BatchReport) {
    if r.skipped {
        println!(
            "batch {}: recorded {} existing files as seen without reading them (includeExistingFiles=false)",
            r.batch, r.files
        );
        return;
    }
    if r.replayed {
        println!(
            "batch {}: already in the table ({} files; an earlier run committed it before it stopped)",
            r.batch, r.files
        );
        return;
    }
    let version = r
        .version
        .map(|v| format!(" -> version {v}"))
        .unwrap_or_default();
    let added = if r.added_columns.is_empty() {
        String::new()
    } else {
        format!(", added column(s) {}", r.added_columns.join(", "))
    };
    println!(
        "batch {}: {} files ({}), {} rows{version} in {:.2} s{added}",
        r.batch,
        r.files,
        human_bytes(r.bytes),
        r.rows,
        r.elapsed.as_secs_f64()
    );
}

/// Builds an incremental run's configuration from command-line pieces.
#[allow(clippy::too_many_arguments, reason = "shared by three commands")]
pub fn config(
    env: &Env,
    kind: Kind,
    source: &str,
    format: Option<Format>,
    options: StreamOptions,
    table: &str,
    table_format: FormatArg,
    checkpoint: Location,
    tuning: &Tuning,
) -> Result<Config> {
    let table = env.location(table)?;
    env.services(tuning)?.incremental(
        kind,
        source,
        format,
        options,
        table,
        table_format.into(),
        checkpoint,
    )
}

/// Totals over a run's batches.
#[derive(Default)]
pub struct Totals {
    batches: usize,
    files: usize,
    rows: u64,
    version: Option<u64>,
}

impl Totals {
    /// Files read.
    pub fn files(&self) -> usize {
        self.files
    }

    /// Rows committed.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The last table version committed.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// Adds a batch.
    pub fn add(&mut self, r: &BatchReport) {
        if r.skipped {
            return;
        }
        self.batches += 1;
        self.files += r.files;
        self.rows += r.rows;
        if r.version.is_some() {
            self.version = r.version;
        }
    }
}

/// `sluice stream`.
pub async fn stream(env: &Env, args: StreamArgs) -> Result<()> {
    let options = StreamOptions::parse(&key_values(&args.options)?)?;
    let checkpoint = env.location(&args.checkpoint)?;
    let config = config(
        env,
        Kind::Stream,
        &args.source,
        args.format,
        options,
        &args.table,
        args.table_format,
        checkpoint,
        &args.tuning,
    )?;
    let table = config.target.location().display();
    let shutdown = Shutdown::listen();
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut on_batch = |r: &BatchReport| {
        print_batch(r);
        totals.add(r);
    };
    let mut runner = Runner::open(config, &mut on_batch).await?;
    run_trigger(
        &mut runner,
        args.trigger,
        args.poll_interval,
        &shutdown,
        &mut on_batch,
    )
    .await?;
    let stopped = if shutdown.asked() {
        " (stopped by a signal)"
    } else {
        ""
    };
    let version = totals
        .version
        .map(|v| format!(", version {v}"))
        .unwrap_or_default();
    println!(
        "stream: {} batches, {} files, {} rows in {:.2} s into {table}{version}{stopped}",
        totals.batches,
        totals.files,
        totals.rows,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs batches as `trigger` says until the backlog is done
/// (available-now) or a stop is asked for.
pub async fn run_trigger(
    runner: &mut Runner,
    trigger: Trigger,
    poll: Duration,
    shutdown: &Shutdown,
    on_batch: &mut impl FnMut(&BatchReport),
) -> Result<()> {
    match trigger {
        Trigger::AvailableNow => {
            // One listing: what is there when the run starts.
            runner.list(on_batch).await?;
            while !shutdown.asked() {
                let Some(r) = runner.next().await? else { break };
                on_batch(&r);
                runner.clean_source().await?;
            }
        }
        Trigger::Every(interval) => {
            while !shutdown.asked() {
                let tick = Instant::now();
                runner.list(on_batch).await?;
                if let Some(r) = runner.next().await? {
                    on_batch(&r);
                }
                runner.clean_source().await?;
                shutdown
                    .sleep(interval.saturating_sub(tick.elapsed()))
                    .await;
            }
        }
        Trigger::Continuous => {
            while !shutdown.asked() {
                if runner.backlog() == 0 {
                    runner.list(on_batch).await?;
                }
                match runner.next().await? {
                    Some(r) => {
                        on_batch(&r);
                        runner.clean_source().await?;
                    }
                    None => {
                        runner.clean_source().await?;
                        shutdown.sleep(poll).await;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `sluice files`.
#[derive(clap::Args)]
pub struct FilesArgs {
    /// A stream's checkpoint, or a table (for the files COPY INTO loaded).
    pub location: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where a table keeps the checkpoint of its COPY INTO loads.
pub fn copy_into_checkpoint(env: &Env, table: &Location) -> Result<Location> {
    env.services(&Tuning::default())?
        .copy_into_checkpoint(table)
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `sluice files`.
pub async fn files(env: &Env, args: FilesArgs) -> Result<()> {
    let mut location = env.location(&args.location)?;
    let (store, root) = location.store()?;
    use object_store::ObjectStoreExt;
    if store
        .head(&root.clone().join("metadata.json"))
        .await
        .is_err()
    {
        let copy = copy_into_checkpoint(env, &location)?;
        let (store, root) = copy.store()?;
        if store.head(&root.join("metadata.json")).await.is_err() {
            bail!(
                "{} is neither a checkpoint nor a table loaded by COPY INTO",
                location.display()
            );
        }
        location = copy;
    }
    let cp = Checkpoint::open(&location, 0).await?;
    let state = cp.load().await?;
    let cleaned = cp.cleaned_through().await?;
    let schemas = SchemaLog::open(&location)?.all().await.unwrap_or_default();
    let mut files: Vec<_> = state.files.values().collect();
    files.sort_by(|a, b| (a.batch, &a.file.location).cmp(&(b.batch, &b.file.location)));
    let status = |f: &sluice_checkpoint::FileState| {
        if f.skipped {
            "skipped"
        } else if f.committed_ms.is_none() {
            "pending"
        } else if cleaned.is_some_and(|c| f.batch <= c) {
            "cleaned"
        } else {
            "committed"
        }
    };
    if args.json {
        let out: Vec<_> = files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.file.location,
                    "size": f.file.size,
                    "modification_time": time(f.file.last_modified_ms),
                    "discovery_time": time(f.discovered_ms),
                    "commit_time": f.committed_ms.map(time),
                    "batch_id": f.batch,
                    "status": status(f),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "checkpoint {} (appId sluice-{}): {} files, {} batches",
        cp.location(),
        cp.id(),
        files.len(),
        state.next_batch
    );
    for f in files {
        println!(
            "{:>6}  {:<9}  {:>10}  discovered {}  committed {}  {}",
            f.batch,
            status(f),
            f.file.size,
            time(f.discovered_ms),
            f.committed_ms.map(time).unwrap_or_else(|| "-".into()),
            f.file.location
        );
    }
    for s in schemas {
        println!("schema {} (from batch {}): {}", s.id, s.batch, s.reason);
    }
    Ok(())
}
